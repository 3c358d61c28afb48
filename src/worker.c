/*
 * worker.c: accept FastCGI requests, route them, reply (see worker.h).
 *
 * Per request: path, route and method are checked first, then the request
 * is routed to its database (dbreg.h: Host and mount; a path under no
 * mount is 404) and authenticated against that database's tokens (for the
 * data path also the version header and database id) before its body is
 * read, so unauthenticated
 * clients can neither make the server buffer a megabyte nor hold a worker
 * while they send it slowly. Every read and write on the connection has a
 * deadline (fcgi_conn.h); a request that runs past one is answered where
 * that is still possible and logged with its endpoint and duration. Every
 * error is answered with its status and one-line message, and the
 * per-request arena is reset afterwards.
 *
 * Accepting: a worker out of descriptors (EMFILE, ENFILE) pauses accepting
 * for a moment, as nginx does, instead of retrying at once: the pending
 * connection stays queued for a worker that can take it.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "fcgi_conn.h"
#include "http.h"
#include "kv_limits.h"
#include "log.h"
#include "testfault.h"
#include "worker.h"
#include "worker_loop.h"

#define ARENA_CHUNK			(64 * 1024)
#define ACCEPT_PAUSE_MS			WORKER_ACCEPT_PAUSE_MS
/* At most one log line per this interval about failing accepts. */
#define ACCEPT_LOG_INTERVAL_MS		10000
/*
 * A handler (storage work, no network I/O) taking longer than this is
 * logged as over its deadline: storage waits are bounded by the busy
 * timeout, so past twice that something is wrong.
 */
#define HANDLER_DEADLINE_MS		(2 * KV_BUSY_TIMEOUT_MS)

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
	const char	*name;
} endpoints[] = {
	{ "/v2/snapshot_read", ROUTE_SNAPSHOT_READ, "snapshot_read" },
	{ "/v2/atomic_write", ROUTE_ATOMIC_WRITE, "atomic_write" },
	{ "/v2/watch", ROUTE_WATCH, "watch" },
	/* queue delivery, this server's extension (docs/queues.md) */
	{ "/v2/queue/lease", ROUTE_QUEUE_LEASE, "queue_lease" },
	{ "/v2/queue/finish", ROUTE_QUEUE_FINISH, "queue_finish" },
	{ "/v2/queue/renew", ROUTE_QUEUE_RENEW, "queue_renew" },
};

static int
has_suffix(const char *s, size_t len, const char *suffix)
{
	size_t	 n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/*
 * Only the endpoint suffixes decide: a mount may have any name, "/v2/"
 * inside it included ("/app/v2/kv/"). A data-path call to an endpoint
 * that does not exist is told apart by its protobuf body
 * (is_misrouted_protobuf).
 */
enum route
route_path(const char *path, size_t *baselen, const char **name)
{
	size_t	 len = strlen(path);

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		if (has_suffix(path, len, endpoints[i].suffix)) {
			*baselen = len - strlen(endpoints[i].suffix);
			*name = endpoints[i].name;
			return endpoints[i].route;
		}
	}
	while (len > 0 && path[len - 1] == '/')
		len--;
	*baselen = len;
	*name = "metadata";
	return ROUTE_METADATA;
}

int
server_init(struct server *s, const struct conf *c, int listen_fd,
    struct shm_segment *const *segs, char *errbuf, size_t errlen)
{
	struct kv_db	*db;
	size_t		 max_open = c->databases != NULL &&
			    c->max_open_databases > 0 ?
			    (size_t)c->max_open_databases : 1;

	memset(s, 0, sizeof(*s));
	s->conf = c;
	if (c->metrics_token != NULL)
		sha256(c->metrics_token, strlen(c->metrics_token),
		    s->metrics_token_digest);
	s->listen_fd = listen_fd;
	if (dbreg_init(&s->reg, c, segs, max_open, errbuf, errlen) != 0)
		return -1;
	/*
	 * The one database is opened now, as always: a worker that cannot
	 * open it fails at start, and the master does not restart it. The
	 * configured ones open on their first request.
	 */
	if (c->databases == NULL && dbreg_open(&s->reg, &s->reg.dbs[0],
	    &db) != KV_OK) {
		snprintf(errbuf, errlen, "see the lines above");
		dbreg_fini(&s->reg);
		return -1;
	}
	/* Read back from SQLite, so the log shows what is really in force. */
	if (c->databases == NULL)
		log_debug("database open, synchronous=%s",
		    kv_synchronous(db));
	return 0;
}

void
server_fini(struct server *s)
{
	dbreg_fini(&s->reg);
}

/* Which requests write: a read-only token is refused them (403). */
static int
route_writes(enum route route)
{
	return route == ROUTE_ATOMIC_WRITE || route == ROUTE_QUEUE_LEASE ||
	    route == ROUTE_QUEUE_FINISH || route == ROUTE_QUEUE_RENEW;
}

/*
 * The routed database's token (the scope for route), and for the data
 * path the version header and database id, in denokv's order: version,
 * token, id.
 */
static enum kv_err
check_credentials(struct request *rq, enum route route)
{
	const char	*auth = http_param(rq->conn, "HTTP_AUTHORIZATION");
	const char	*v, *id;
	enum kv_err	 err;

	if (route != ROUTE_METADATA) {
		v = http_param(rq->conn, "HTTP_X_DENOKV_VERSION");
		if (v == NULL || (strcmp(v, "2") != 0 && strcmp(v, "3") != 0))
			return KV_ERR_PROTOCOL_VERSION;
	}
	if ((err = dbreg_authorize(&rq->srv->reg, rq->dbe, auth,
	    route_writes(route))) != KV_OK)
		return err;
	if (route != ROUTE_METADATA) {
		id = http_param(rq->conn, "HTTP_X_DENOKV_DATABASE_ID");
		if (id == NULL || strcasecmp(id, rq->dbe->id) != 0)
			return KV_ERR_DATABASE_ID;
	}
	return KV_OK;
}

int
reply_protobuf(struct request *rq, const uint8_t *body, size_t len)
{
	return http_reply(rq->conn, 200, "application/x-protobuf", "", body,
	    len);
}

/*
 * Any path that is not a data-path endpoint may be a mount point, so it is
 * taken as a metadata exchange. But a metadata exchange is never protobuf:
 * a protobuf body there is a data-path call to an endpoint that does not
 * exist (a typo, another protocol version), and gets 404 like any unknown
 * path would.
 */
static int
is_misrouted_protobuf(struct request *rq, enum route route)
{
	const char	*ctype = http_param(rq->conn, "CONTENT_TYPE");

	return route == ROUTE_METADATA && ctype != NULL &&
	    strncasecmp(ctype, "application/x-protobuf", 22) == 0;
}

static enum metrics_endpoint
route_endpoint(enum route route)
{
	switch (route) {
	case ROUTE_METADATA:
		return ME_METADATA;
	case ROUTE_SNAPSHOT_READ:
		return ME_SNAPSHOT_READ;
	case ROUTE_ATOMIC_WRITE:
		return ME_ATOMIC_WRITE;
	case ROUTE_WATCH:
		return ME_WATCH;
	case ROUTE_QUEUE_LEASE:
		return ME_QUEUE_LEASE;
	case ROUTE_QUEUE_FINISH:
		return ME_QUEUE_FINISH;
	case ROUTE_QUEUE_RENEW:
		return ME_QUEUE_RENEW;
	case ROUTE_ANSWERED:
		break;
	}
	return ME_OTHER;
}


/*
 * The request's route, database and credentials, from its parameters
 * alone: *cap is how much body it may bring. Shared by admit() and, on
 * the multiplexed model, by the decision what to keep of a body as it
 * arrives (worker_body_cap), so the two cannot disagree.
 */
static enum kv_err
admit_parameters(struct request *rq, char *path, enum route *route,
    size_t *cap)
{
	const char	*method = http_param(rq->conn, "REQUEST_METHOD");
	enum kv_err	 err;

	*route = route_path(path, &rq->baselen, &rq->endpoint);
	rq->counted_as = route_endpoint(*route);
	rq->base = path;
	/* Host, then mount: a path under no mount is 404 (dbreg.h). */
	if ((err = dbreg_route(&rq->srv->reg, http_param(rq->conn,
	    "HTTP_HOST"), rq->base, rq->baselen, &rq->dbe)) != KV_OK)
		return err;
	if (is_misrouted_protobuf(rq, *route))
		return KV_ERR_NOT_FOUND;
	if (method == NULL || strcmp(method, "POST") != 0)
		return KV_ERR_METHOD;
	*cap = *route == ROUTE_METADATA ? KV_MAX_METADATA_BODY_BYTES :
	    KV_MAX_BODY_BYTES;
	return check_credentials(rq, *route);
}

/* Everything up to the handler: route, method, credentials, body. */
static enum kv_err
admit(struct request *rq, enum route *route)
{
	char		*path;
	uint8_t		*body;
	size_t		 cap;
	enum kv_err	 err;

	if ((err = http_path(rq->conn, rq->arena, &path)) != KV_OK)
		return err;
	/* Operations: health, metrics, status (h_ops.c), answered there. */
	if (ops_dispatch(rq, path)) {
		*route = ROUTE_ANSWERED;
		return KV_OK;
	}
	testfault_request(path);
	if ((err = admit_parameters(rq, path, route, &cap)) != KV_OK)
		return err;
	if ((err = dbreg_open(&rq->srv->reg, rq->dbe, &rq->db)) != KV_OK)
		return err;
	if ((err = http_read_body(rq->conn, cap, rq->arena, &body,
	    &rq->bodylen)) != KV_OK)
		return err;
	rq->body = body;
	return KV_OK;
}

static enum kv_err
handle(struct request *rq, enum route route)
{
	switch (route) {
	case ROUTE_METADATA:
		return h_metadata(rq);
	case ROUTE_SNAPSHOT_READ:
		return h_snapshot_read(rq);
	case ROUTE_ATOMIC_WRITE:
		return h_atomic_write(rq);
	case ROUTE_WATCH:
		return h_watch(rq);
	case ROUTE_QUEUE_LEASE:
		return h_queue_lease(rq);
	case ROUTE_QUEUE_FINISH:
		return h_queue_finish(rq);
	case ROUTE_QUEUE_RENEW:
		return h_queue_renew(rq);
	case ROUTE_ANSWERED:
		break;
	}
	return KV_ERR_NOT_FOUND;
}

static const char *
phase_name(enum fcgi_phase p)
{
	return p == FCGI_PHASE_ARRIVAL ? "its parameters and body" :
	    "its response";
}

/* A request past a deadline: one line with its endpoint and duration. */
static void
log_overrun(struct request *rq, const char *what, int64_t ms, int limit_ms)
{
	int	 n = rq->baselen > 100 ? 100 : (int)rq->baselen;

	/* The base is a normalised path: no control characters in it. */
	log_warnx("request over its deadline: %s at \"%.*s/\": %s took %lld"
	    " ms (limit %d ms)", rq->endpoint, rq->base != NULL ? n : 0,
	    rq->base != NULL ? rq->base : "", what, (long long)ms, limit_ms);
}

/* One request from admission to its metrics line. */
struct served {
	struct request	 rq;
	enum route	 route;
	enum kv_err	 err;
	uint64_t	 started_us;
};

/* Admits the request: route, method, credentials, body (sv->err). */
static void
request_open(struct served *sv, struct server *s, struct fcgi_conn *conn,
    struct arena *a)
{
	memset(sv, 0, sizeof(*sv));
	sv->rq.conn = conn;
	sv->rq.srv = s;
	sv->rq.arena = a;
	sv->rq.endpoint = "unrouted";
	sv->rq.counted_as = ME_OTHER;
	sv->route = ROUTE_METADATA;
	sv->started_us = clock_mono_us();
	sv->err = admit(&sv->rq, &sv->route);
}

static void
request_run(struct served *sv)
{
	int64_t	 t0 = clock_mono_ms();

	sv->err = handle(&sv->rq, sv->route);
	if (clock_mono_ms() - t0 > HANDLER_DEADLINE_MS)
		log_overrun(&sv->rq, "its handler", clock_mono_ms() - t0,
		    HANDLER_DEADLINE_MS);
}

/* Answers an error, logs overruns and counts the request. */
static void
request_close(struct served *sv)
{
	struct request		*rq = &sv->rq;
	struct fcgi_conn	*conn = rq->conn;
	enum kv_err		 err = sv->err;

	if (err != KV_OK) {
		/* Storage faults are logged where they happen, rate-limited. */
		if (kv_err_status(err) >= 500 && !kv_err_is_fault(err))
			log_warnx("request failed: %s", kv_err_name(err));
		else
			log_debug("request refused: %s", kv_err_name(err));
		/* Also after the body ran out of time: the 408 may still go out. */
		http_reply_error(conn, err);
	}
	/* Each phase's duration from its own start: the arrival, the reply. */
	if (conn->expired == FCGI_PHASE_ARRIVAL)
		log_overrun(rq, phase_name(conn->expired),
		    clock_mono_ms() - conn->accepted_ms, conn->body_ms);
	else if (conn->expired == FCGI_PHASE_RESPONSE)
		log_overrun(rq, phase_name(conn->expired),
		    clock_mono_ms() - conn->response_ms, conn->send_ms);
	/* The response goes out later: say which request it was, if it fails. */
	if (conn->mux != NULL)
		snprintf(conn->label, sizeof(conn->label), "%s at \"%.*s/\"",
		    rq->endpoint, rq->base != NULL ? (rq->baselen > 100 ? 100 :
		    (int)rq->baselen) : 0, rq->base != NULL ? rq->base : "");
	metrics_request(rq->counted_as, err != KV_OK ? kv_err_status(err) :
	    rq->status != 0 ? rq->status : 200,
	    clock_mono_us() - sv->started_us);
}

static void
serve_one(struct server *s, struct fcgi_conn *conn, struct arena *a)
{
	struct served	 sv;

	request_open(&sv, s, conn, a);
	if (sv.err == KV_OK && sv.route != ROUTE_ANSWERED)
		request_run(&sv);
	request_close(&sv);
}

/*
 * The grouping point of atomic writes: every write of rqs is admitted and
 * ready; each is answered here, or errs[i] says what to answer. Writes
 * ready in the same turn of the event loop come here together and share
 * one transaction and one fsync (h_atomic_write_batch). rqs is split
 * into one batch per database, each in arrival order.
 */
static void
commit_atomic_writes(struct request *const *rqs, size_t n, enum kv_err *errs)
{
	struct request	*group[WORKER_MAX_BATCH];
	enum kv_err	 gerrs[WORKER_MAX_BATCH];
	size_t		 at[WORKER_MAX_BATCH], m;
	uint8_t		 done[WORKER_MAX_BATCH] = { 0 };

	assert(n <= WORKER_MAX_BATCH);
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		m = 0;
		for (size_t j = i; j < n; j++) {
			if (done[j] || rqs[j]->db != rqs[i]->db)
				continue;
			done[j] = 1;
			at[m] = j;
			group[m++] = rqs[j];
		}
		/* Locked by another process: retried from the loop (below). */
		kv_set_lock_wait(group[0]->db, 0);
		h_atomic_write_batch(group, m, gerrs);
		kv_set_lock_wait(group[0]->db, 1);
		for (size_t k = 0; k < m; k++)
			errs[at[k]] = gerrs[k];
	}
}

/*
 * Whether a write that found SQLite's write lock held by another process
 * may be tried again later: until busy-timeout from the first time it
 * found it so. Meanwhile the worker serves its other requests; a write
 * that waited inside SQLite would hold every connection of the worker.
 */
static int
may_wait_for_lock(struct fcgi_conn *c, int timeout_ms)
{
	int64_t	 now = clock_mono_ms();

	if (c->locked_since_ms == 0)
		c->locked_since_ms = now;
	return now - c->locked_since_ms < timeout_ms;
}

void
worker_serve_ready(struct server *s, struct fcgi_conn *const *conns,
    size_t n, struct arena *a, worker_done_fn done, void *done_arg)
{
	struct served	 sv[WORKER_MAX_BATCH];
	struct request	*writes[WORKER_MAX_BATCH];
	enum kv_err	 errs[WORKER_MAX_BATCH];
	size_t		 at[WORKER_MAX_BATCH], nw = 0;
	int64_t		 t0;

	assert(n <= WORKER_MAX_BATCH);
	for (size_t i = 0; i < n; i++) {
		request_open(&sv[i], s, conns[i], a);
		if (sv[i].err == KV_OK && sv[i].route == ROUTE_ATOMIC_WRITE) {
			/* Its handle stays open while later requests open others. */
			dbreg_hold(sv[i].rq.dbe);
			at[nw] = i;
			writes[nw++] = &sv[i].rq;
			continue;
		}
		if (sv[i].err == KV_OK && sv[i].route != ROUTE_ANSWERED)
			request_run(&sv[i]);
		request_close(&sv[i]);
		/* Out now: the proxy need not wait for the writes below. */
		done(done_arg, conns[i]);
	}
	if (nw == 0)
		return;
	t0 = clock_mono_ms();
	commit_atomic_writes(writes, nw, errs);
	if (clock_mono_ms() - t0 > HANDLER_DEADLINE_MS)
		log_overrun(writes[0], "a group of writes",
		    clock_mono_ms() - t0, HANDLER_DEADLINE_MS);
	for (size_t j = 0; j < nw; j++) {
		dbreg_release(writes[j]->dbe);
		if (errs[j] == KV_ERR_BUSY && may_wait_for_lock(conns[at[j]],
		    s->conf->busy_timeout_ms)) {
			/* Not answered: tried again in a moment (worker_done_fn). */
			conns[at[j]]->retry = 1;
			done(done_arg, conns[at[j]]);
			continue;
		}
		sv[at[j]].err = errs[j];
		request_close(&sv[at[j]]);
		done(done_arg, conns[at[j]]);
	}
}

/*
 * How much body a request may bring on the multiplexed model, decided
 * when its parameters are in, with admit()'s rules: none for a request
 * admit() refuses before reading its body (not POST, bad credentials),
 * the metadata cap for a metadata exchange, else the data path's. The
 * body is then kept, or dropped, as it arrives.
 */
size_t
worker_body_cap(void *arg, struct fcgi_conn *conn)
{
	struct request	 rq = { .conn = conn, .srv = arg };
	const char	*uri = http_param(conn, "REQUEST_URI");
	char		 small[512], *path = small;
	size_t		 n, cap = 0;
	enum route	 route;

	if (uri == NULL && (uri = http_param(conn, "DOCUMENT_URI")) == NULL)
		uri = "/";
	n = strcspn(uri, "?#");
	if (n >= sizeof(small) && (path = malloc(n + 1)) == NULL)
		return 0;
	if (http_normalise_path(uri, n, path) != KV_OK ||
	    admit_parameters(&rq, path, &route, &cap) != KV_OK)
		cap = 0;
	if (path != small)
		free(path);
	return cap;
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

/* Sleeps ms with the stop signals deliverable. */
static void
pause_accepting(int ms, const sigset_t *during)
{
	struct timespec	 ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	(void)ppoll(NULL, 0, &ts, during);
}

void
worker_note_accept_failure(struct accept_log *l, int err)
{
	int64_t	 now = clock_mono_ms();

	if (l->last_ms != 0 && now - l->last_ms < ACCEPT_LOG_INTERVAL_MS) {
		l->unlogged++;
		return;
	}
	if (l->unlogged > 0)
		log_warnx("accept failed: %s; pausing accepts (and %lu more"
		    " times since the last message)", strerror(err),
		    l->unlogged);
	else
		log_warnx("accept failed: %s; pausing accepts", strerror(err));
	l->last_ms = now;
	l->unlogged = 0;
}

/*
 * The one-per-connection model: accept a connection, serve its one
 * request under libfcgi, close it.
 */
static int
serve_one_per_connection(struct server *s, const sigset_t *stopset,
    struct arena *a)
{
	struct fcgi_conn	 conn;
	struct accept_log	 alog = { 0, 0 };
	sigset_t		 during;
	int			 rc;

	sigprocmask(SIG_SETMASK, NULL, &during);
	sigdelset(&during, SIGTERM);
	sigdelset(&during, SIGINT);
	if (fcgi_conn_init(&conn, s->conf->body_timeout * 1000,
	    s->conf->send_timeout * 1000) != 0) {
		log_warnx("FCGX_InitRequest failed");
		return 1;
	}
	while (!worker_stop) {
		wait_for_connection(s->listen_fd, &during, stopset);
		if (worker_stop)
			break;
		/*
		 * The listener is non-blocking: when another worker won the
		 * connection, accept says EAGAIN and we go back to sleep.
		 */
		rc = fcgi_conn_accept(&conn, s->listen_fd);
		if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR ||
		    rc == -ECONNABORTED)
			continue;
		if (rc == -EPROTO) {
			log_debug("a connection ended before its parameters"
			    " arrived");
			continue;
		}
		if (rc == -EPERM) {
			log_debug("a connection from an address not in"
			    " FCGI_WEB_SERVER_ADDRS was closed");
			continue;
		}
		if (rc < 0) {
			/*
			 * Out of descriptors (EMFILE, ENFILE) or memory, most
			 * likely: retrying at once would spin. Left queued,
			 * the connection goes to whoever can take it.
			 */
			worker_note_accept_failure(&alog, -rc);
			pause_accepting(ACCEPT_PAUSE_MS, &during);
			continue;
		}
		serve_one(s, &conn, a);
		fcgi_conn_finish(&conn);
		arena_reset(a);
	}
	fcgi_conn_fini(&conn);
	return 0;
}

int
worker_run(struct server *s)
{
	struct arena		 a;
	sigset_t		 stopset;
	int			 rc;

	/* Our handlers go in before FCGX_Init, which keeps existing ones. */
	install_signals(&stopset);
	if (FCGX_Init() != 0) {
		log_warnx("FCGX_Init failed");
		return 1;
	}
	arena_init(&a, ARENA_CHUNK);
	if (s->conf->request_model == REQUEST_MODEL_MULTIPLEXED)
		rc = worker_loop_run(s, &stopset, &a);
	else
		rc = serve_one_per_connection(s, &stopset, &a);
	/* Open watches end; their clients reconnect to another worker. */
	dbreg_stop_hubs(&s->reg);
	arena_fini(&a);
	log_debug("worker exiting");
	return rc;
}
