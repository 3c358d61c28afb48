/*
 * worker.c: accept FastCGI requests, route them, reply (see worker.h).
 *
 * Per request: method and route are checked first; data-path requests are
 * authenticated (version header, bearer token, database id) before their
 * body is read, so unauthenticated clients cannot make the server buffer a
 * megabyte. Every error is answered with its status and one-line message,
 * and the per-request arena is reset afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "kv_limits.h"
#include "log.h"
#include "testfault.h"
#include "worker.h"

#define ARENA_CHUNK			(64 * 1024)

static volatile sig_atomic_t	 worker_stop;

static void
on_stop_signal(int sig)
{
	(void)sig;
	worker_stop = 1;
}

static const struct {
	const char	*suffix;
	enum route	 route;
} endpoints[] = {
	{ "/v2/snapshot_read", ROUTE_SNAPSHOT_READ },
	{ "/v2/atomic_write", ROUTE_ATOMIC_WRITE },
	{ "/v2/watch", ROUTE_WATCH },
};

static int
has_suffix(const char *s, size_t len, const char *suffix)
{
	size_t	 n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

enum route
route_path(const char *path, size_t *baselen)
{
	size_t	 len = strlen(path);

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		if (has_suffix(path, len, endpoints[i].suffix)) {
			*baselen = len - strlen(endpoints[i].suffix);
			return endpoints[i].route;
		}
	}
	while (len > 0 && path[len - 1] == '/')
		len--;
	/* Anything else under a /v2/ data-path prefix is unknown. */
	if (has_suffix(path, len, "/v2") || strstr(path, "/v2/") != NULL)
		return ROUTE_NOT_FOUND;
	*baselen = len;
	return ROUTE_METADATA;
}

/*
 * A name-based UUID (RFC 9562 version 8 layout) from two FNV-1a hashes of
 * the absolute path: stable across restarts, different per database.
 */
void
database_id_for(const char *path, char out[DATABASE_ID_LEN + 1])
{
	uint64_t	 h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
	uint8_t		 b[16];

	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		h1 = (h1 ^ *p) * 0x100000001b3ULL;
		h2 = (h2 ^ *p) * 0x100000001b3ULL;
		h2 ^= h2 >> 29;
	}
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(h1 >> (56 - 8 * i));
		b[8 + i] = (uint8_t)(h2 >> (56 - 8 * i));
	}
	b[6] = (b[6] & 0x0f) | 0x80;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, DATABASE_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
	    b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	    b[15]);
}

int
server_init(struct server *s, const struct conf *c, int listen_fd,
    struct shm_segment *seg, char *errbuf, size_t errlen)
{
	struct kv_options	 opt = conf_kv_options(c);
	char			 abspath[PATH_MAX];

	memset(s, 0, sizeof(*s));
	s->conf = c;
	s->listen_fd = listen_fd;
	if (seg != NULL) {
		if (shm_client_init(&s->shm, seg, &s->hooks) != 0) {
			snprintf(errbuf, errlen, "no free process slot in the"
			    " signal segment");
			return -1;
		}
		opt.hooks = &s->hooks;
	}
	if ((s->db = kv_open(c->sqlite_path, &opt, errbuf, errlen)) == NULL)
		return -1;
	if (realpath(c->sqlite_path, abspath) == NULL)
		snprintf(abspath, sizeof(abspath), "%s", c->sqlite_path);
	database_id_for(abspath, s->database_id);
	return 0;
}

void
server_fini(struct server *s)
{
	kv_close(s->db);
	s->db = NULL;
}

/* x-denokv-version, bearer token, x-denokv-database-id, as denokv orders them. */
static enum kv_err
check_data_path_headers(struct request *rq)
{
	const char	*v = http_param(rq->fcgi, "HTTP_X_DENOKV_VERSION");
	const char	*id;
	enum kv_err	 err;

	if (v == NULL || (strcmp(v, "2") != 0 && strcmp(v, "3") != 0))
		return KV_ERR_PROTOCOL_VERSION;
	if ((err = http_check_bearer(rq->fcgi, rq->srv->conf->access_token))
	    != KV_OK)
		return err;
	id = http_param(rq->fcgi, "HTTP_X_DENOKV_DATABASE_ID");
	if (id == NULL || strcasecmp(id, rq->srv->database_id) != 0)
		return KV_ERR_DATABASE_ID;
	return KV_OK;
}

int
reply_protobuf(struct request *rq, const uint8_t *body, size_t len)
{
	return http_reply(rq->fcgi, 200, "application/x-protobuf", "", body,
	    len);
}

/*
 * Any path outside a /v2/ data path may be a mount point, so it is taken
 * as a metadata exchange. But a metadata exchange is never protobuf: a
 * protobuf body there is a data-path call to an endpoint that does not
 * exist (a typo, another protocol version), and gets 404 like any unknown
 * path would.
 */
static int
is_misrouted_protobuf(struct request *rq, enum route route)
{
	const char	*ctype = http_param(rq->fcgi, "CONTENT_TYPE");

	return route == ROUTE_METADATA && ctype != NULL &&
	    strncasecmp(ctype, "application/x-protobuf", 22) == 0;
}

static enum kv_err
dispatch(struct request *rq)
{
	const char	*method = http_param(rq->fcgi, "REQUEST_METHOD");
	char		*path;
	uint8_t		*body;
	size_t		 cap = KV_MAX_BODY_BYTES;
	enum route	 route;
	enum kv_err	 err;

	if ((path = http_path(rq->fcgi, rq->arena)) == NULL)
		return KV_ERR_NOMEM;
	testfault_request(path);
	route = route_path(path, &rq->baselen);
	rq->base = path;
	if (route == ROUTE_NOT_FOUND || is_misrouted_protobuf(rq, route))
		return KV_ERR_NOT_FOUND;
	if (method == NULL || strcmp(method, "POST") != 0)
		return KV_ERR_METHOD;
	if (route == ROUTE_METADATA)
		cap = KV_MAX_METADATA_BODY_BYTES;
	else if ((err = check_data_path_headers(rq)) != KV_OK)
		return err;
	if ((err = http_read_body(rq->fcgi, cap, rq->arena, &body,
	    &rq->bodylen)) != KV_OK)
		return err;
	rq->body = body;
	switch (route) {
	case ROUTE_METADATA:
		return h_metadata(rq);
	case ROUTE_SNAPSHOT_READ:
		return h_snapshot_read(rq);
	case ROUTE_ATOMIC_WRITE:
		return h_atomic_write(rq);
	case ROUTE_WATCH:
		return h_watch(rq);
	default:
		return KV_ERR_NOT_FOUND;
	}
}

static void
serve_one(struct server *s, FCGX_Request *fr, struct arena *a)
{
	struct request	 rq = { .fcgi = fr, .srv = s, .arena = a };
	enum kv_err	 err;

	err = dispatch(&rq);
	if (err != KV_OK) {
		if (kv_err_status(err) >= 500)
			log_warnx("request failed: %s", kv_err_name(err));
		else
			log_debug("request refused: %s", kv_err_name(err));
		http_reply_error(fr, err);
	}
}

static void
install_signals(sigset_t *stopset)
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/*
	 * Stop signals stay blocked except inside ppoll(), which unblocks
	 * them atomically: a signal can never slip in between checking the
	 * flag and going to sleep, and never interrupts a request midway
	 * (libfcgi does not retry interrupted reads and writes).
	 */
	sigemptyset(stopset);
	sigaddset(stopset, SIGTERM);
	sigaddset(stopset, SIGINT);
	sigprocmask(SIG_BLOCK, stopset, NULL);
}

/*
 * Sleeps until the listener is readable or a stop signal arrives. When a
 * connection is already waiting, ppoll returns at once without delivering
 * a pending signal, so a worker under steady load would never see it:
 * take a pending stop signal explicitly.
 */
static void
wait_for_connection(int fd, const sigset_t *during, const sigset_t *stopset)
{
	struct pollfd	 pfd = { .fd = fd, .events = POLLIN };
	struct timespec	 zero = { 0, 0 };

	(void)ppoll(&pfd, 1, NULL, during);
	if (sigtimedwait(stopset, NULL, &zero) > 0)
		worker_stop = 1;
}

int
worker_run(struct server *s)
{
	FCGX_Request	 fr;
	struct arena	 a;
	sigset_t	 stopset, during;
	char		 err[512];
	int		 rc;

	/* Our handlers go in before FCGX_Init, which keeps existing ones. */
	install_signals(&stopset);
	sigprocmask(SIG_SETMASK, NULL, &during);
	sigdelset(&during, SIGTERM);
	sigdelset(&during, SIGINT);
	if (FCGX_Init() != 0) {
		log_warnx("FCGX_Init failed");
		return 1;
	}
	if (FCGX_InitRequest(&fr, s->listen_fd, 0) != 0) {
		log_warnx("FCGX_InitRequest failed");
		return 1;
	}
	arena_init(&a, ARENA_CHUNK);
	if (s->shm.seg != NULL &&
	    (s->hub = watch_hub_start(s->conf, s->shm.seg, err,
	    sizeof(err))) == NULL)
		log_warnx("watch streams disabled: %s", err);
	while (!worker_stop) {
		wait_for_connection(s->listen_fd, &during, &stopset);
		if (worker_stop)
			break;
		/*
		 * The listener is non-blocking: when another worker won the
		 * connection, accept says EAGAIN and we go back to sleep.
		 */
		rc = FCGX_Accept_r(&fr);
		if (rc < 0) {
			if (rc != -EAGAIN && rc != -EWOULDBLOCK &&
			    rc != -EINTR && rc != -ECONNABORTED)
				log_warnx("accept failed: %s", strerror(-rc));
			continue;
		}
		serve_one(s, &fr, &a);
		FCGX_Finish_r(&fr);
		arena_reset(&a);
	}
	/* Open watches end; their clients reconnect to another worker. */
	watch_hub_stop(s->hub);
	s->hub = NULL;
	FCGX_Free(&fr, 1);
	arena_fini(&a);
	log_debug("worker exiting");
	return 0;
}
