/*
 * test_aw_batch.c: the handler side of group commit,
 * h_atomic_write_batch() (src/h_atomic_write.c), printing TAP. This
 * process plays the web server over real FastCGI connections on a unix
 * socket, one per request, and the storage is a real SQLite file. Focus:
 * in one batch, a request whose body does not decode is left out with its
 * 400 code and not answered; a write that commits and one whose check
 * fails (it sees the batch's earlier write) are answered 200 with their
 * AtomicWriteOutput; a write that fails outright is left to the caller
 * with its code; the batch's size is counted once in the metrics.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "datapath.pb-c.h"
#include "fcgi_conn.h"
#include "handlers.h"
#include "http.h"
#include "metrics.h"
#include "testhelp.h"

typedef Com__Deno__Kv__Datapath__AtomicWrite		PbAtomicWrite;
typedef Com__Deno__Kv__Datapath__AtomicWriteOutput	PbAtomicWriteOutput;
typedef Com__Deno__Kv__Datapath__Check			PbCheck;
typedef Com__Deno__Kv__Datapath__Mutation		PbMutation;
typedef Com__Deno__Kv__Datapath__KvValue		PbKvValue;

#define N_REQ		4
#define AW_SUCCESS	COM__DENO__KV__DATAPATH__ATOMIC_WRITE_STATUS__AW_SUCCESS
#define AW_CHECK_FAILURE \
	COM__DENO__KV__DATAPATH__ATOMIC_WRITE_STATUS__AW_CHECK_FAILURE

static char	 tmpdir[] = "/tmp/test_aw_batch.XXXXXX";
static char	 sock_path[100], db_file[128];

/* --- the web server's side ------------------------------------------------- */

static int
listener(void)
{
	struct sockaddr_un	 sa = { .sun_family = AF_UNIX };
	int			 fd;

	snprintf(sock_path, sizeof(sock_path), "%s/fcgi.sock", tmpdir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 8) != 0)
		T_BAIL("listener: %s", sock_path);
	return fd;
}

/* Connects, and sends BEGIN_REQUEST, a POST's parameters, an empty body. */
static int
web_request(void)
{
	static const char	 p[] = "\016\004REQUEST_METHODPOST";
	struct sockaddr_un	 sa = { .sun_family = AF_UNIX };
	unsigned char		 b[8] = { 0, 1 };
	int			 fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		T_BAIL("connecting to %s", sock_path);
	t_fcgi_record(fd, 1, b, sizeof(b));
	t_fcgi_record(fd, 4, p, sizeof(p) - 1);
	t_fcgi_record(fd, 4, NULL, 0);
	t_fcgi_record(fd, 5, NULL, 0);
	return fd;
}

/* 1 if the web server has bytes to read within ms. */
static int
readable(int fd, int ms)
{
	struct pollfd	 pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 1;
}

/*
 * Reads the response until the connection closes: its status and the
 * body after the headers (malloc'd in *body).
 */
static int
web_response(int fd, uint8_t **body, size_t *len)
{
	unsigned char	 h[8];
	static uint8_t	 out[65536];
	size_t		 n = 0, clen;
	char		*sep;
	int		 status = -1;

	*body = NULL;
	while (readable(fd, 5000) && read(fd, h, 8) == 8) {
		clen = ((size_t)h[4] << 8) | h[5];
		if (n + clen + h[6] > sizeof(out) ||
		    read(fd, out + n, clen + h[6]) != (ssize_t)(clen + h[6]))
			return -1;
		if (h[1] == 6)		/* FCGI_STDOUT */
			n += clen;
		if (h[1] == 3)		/* FCGI_END_REQUEST */
			break;
	}
	out[n < sizeof(out) ? n : sizeof(out) - 1] = '\0';
	if (sscanf((char *)out, "Status: %d", &status) != 1 ||
	    (sep = strstr((char *)out, "\r\n\r\n")) == NULL)
		return -1;
	*len = n - (size_t)((uint8_t *)sep + 4 - out);
	if ((*body = malloc(*len + 1)) == NULL)
		return -1;
	memcpy(*body, sep + 4, *len);
	return status;
}

/* --- request bodies ------------------------------------------------------------ */

/* An AtomicWrite: an optional check, then one mutation. */
static uint8_t *
aw_body(const char *check_key, int check_absent, int mtype, const char *key,
    const void *value, size_t vlen, int enc, size_t *len)
{
	PbAtomicWrite	 aw;
	PbCheck		 c, *cp = &c;
	PbMutation	 m, *mp = &m;
	PbKvValue	 v;
	uint8_t		*p;

	com__deno__kv__datapath__atomic_write__init(&aw);
	com__deno__kv__datapath__check__init(&c);
	com__deno__kv__datapath__mutation__init(&m);
	com__deno__kv__datapath__kv_value__init(&v);
	if (check_key != NULL) {
		c.key = (ProtobufCBinaryData){ strlen(check_key),
		    (uint8_t *)check_key };
		/* Empty: absent. Otherwise a versionstamp that never exists. */
		c.versionstamp = check_absent ? (ProtobufCBinaryData){ 0, NULL } :
		    (ProtobufCBinaryData){ 10, (uint8_t *)"\xff\xff\xff\xff"
		    "\xff\xff\xff\xff\0\0" };
		aw.checks = &cp;
		aw.n_checks = 1;
	}
	m.key = (ProtobufCBinaryData){ strlen(key), (uint8_t *)key };
	m.mutation_type = (Com__Deno__Kv__Datapath__MutationType)mtype;
	v.data = (ProtobufCBinaryData){ vlen, (uint8_t *)value };
	v.encoding = (Com__Deno__Kv__Datapath__ValueEncoding)enc;
	m.value = &v;
	aw.mutations = &mp;
	aw.n_mutations = 1;
	*len = com__deno__kv__datapath__atomic_write__get_packed_size(&aw);
	if ((p = malloc(*len)) == NULL)
		T_BAIL("out of memory");
	com__deno__kv__datapath__atomic_write__pack(&aw, p);
	return p;
}

/* --- the test ------------------------------------------------------------------ */

static void
test_batch(struct kv_db *db, int lfd)
{
	static const uint8_t	 one[] = { 0xFF, 0x0F, 'N', 0, 0, 0, 0, 0, 0,
	    0xF0, 0x3F };
	struct server		 srv = { .conf = NULL };
	struct fcgi_conn	 conn[N_REQ];
	struct arena		 arena[N_REQ];
	struct request		 rq[N_REQ], *rqs[N_REQ];
	enum kv_err		 errs[N_REQ];
	uint8_t			*body[N_REQ], *resp;
	size_t			 blen[N_REQ], rlen;
	int			 web[N_REQ], status;
	PbAtomicWriteOutput	*out;
	static char		 buf[256 * 1024];
	size_t			 n;

	/* 0: sets "a"; 1: not protobuf; 2: needs "a" absent (sees 0); 3: sum on bytes. */
	body[0] = aw_body(NULL, 0, COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET,
	    "a", "x", 1, COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_BYTES,
	    &blen[0]);
	body[1] = (uint8_t *)strdup("\xff\xff\xff not a protobuf");
	blen[1] = strlen((char *)body[1]);
	body[2] = aw_body("a", 1, COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET,
	    "b", "y", 1, COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_BYTES,
	    &blen[2]);
	body[3] = aw_body(NULL, 0, COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SUM,
	    "a", one, sizeof(one),
	    COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_V8, &blen[3]);
	for (int i = 0; i < N_REQ; i++) {
		web[i] = web_request();
		if (fcgi_conn_init(&conn[i], 5000, 5000) != 0 ||
		    fcgi_conn_accept(&conn[i], lfd) != 0)
			T_BAIL("accepting request %d", i);
		arena_init(&arena[i], 16 * 1024);
		rq[i] = (struct request){ .conn = &conn[i], .srv = &srv,
		    .arena = &arena[i], .db = db, .endpoint = "atomic_write",
		    .body = body[i], .bodylen = blen[i] };
		rqs[i] = &rq[i];
	}

	h_atomic_write_batch(rqs, N_REQ, errs);

	T_EQ(errs[0], KV_OK, "request 0 (a set) answered");
	T_EQ(errs[1], KV_ERR_BAD_PROTOBUF, "request 1 (not protobuf) left to"
	    " the caller with its 400 code");
	T_EQ(errs[2], KV_OK, "request 2 (a failed check) answered");
	T_EQ(errs[3], KV_ERR_SUM_TYPE_MISMATCH, "request 3 (a sum on bytes)"
	    " left to the caller with its own code");
	T_OK(!readable(web[1], 100) && !readable(web[3], 100),
	    "nothing was sent for requests 1 and 3");
	for (int i = 0; i < N_REQ; i++) {
		if (errs[i] != KV_OK)
			(void)http_reply_error(&conn[i], errs[i]);
		fcgi_conn_finish(&conn[i]);
	}

	status = web_response(web[0], &resp, &rlen);
	out = status == 200 ? com__deno__kv__datapath__atomic_write_output__unpack(
	    NULL, rlen, resp) : NULL;
	T_OK(out != NULL && out->status == AW_SUCCESS &&
	    out->versionstamp.len == 10, "request 0: 200, AW_SUCCESS with a"
	    " versionstamp");
	if (out != NULL)
		com__deno__kv__datapath__atomic_write_output__free_unpacked(out,
		    NULL);
	free(resp);

	status = web_response(web[2], &resp, &rlen);
	out = status == 200 ? com__deno__kv__datapath__atomic_write_output__unpack(
	    NULL, rlen, resp) : NULL;
	T_OK(out != NULL && out->status == AW_CHECK_FAILURE &&
	    out->n_failed_checks == 1 && out->failed_checks[0] == 0,
	    "request 2: 200, AW_CHECK_FAILURE naming its check (it saw"
	    " request 0's write in the same batch)");
	if (out != NULL)
		com__deno__kv__datapath__atomic_write_output__free_unpacked(out,
		    NULL);
	free(resp);

	T_EQ(web_response(web[1], &resp, &rlen), 400, "request 1: the"
	    " caller's 400");
	free(resp);
	T_EQ(web_response(web[3], &resp, &rlen), 400, "request 3: the"
	    " caller's 400");
	free(resp);

	n = metrics_render(db_file, NULL, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	T_OK(strstr(buf, "\ndenokv_write_batch_size_count 1\n") != NULL &&
	    strstr(buf, "\ndenokv_write_batch_size_sum 3\n") != NULL,
	    "metrics: one batch of the three requests that decoded");
	T_OK(strstr(buf, "\ndenokv_commits_total 1\n") != NULL &&
	    strstr(buf, "\ndenokv_check_failures_total 1\n") != NULL,
	    "metrics: one commit, one check failure");

	for (int i = 0; i < N_REQ; i++) {
		close(web[i]);
		fcgi_conn_fini(&conn[i]);
		arena_fini(&arena[i]);
		free(body[i]);
	}
}

int
main(void)
{
	struct kv_options	 opt = { .sync = KV_SYNC_FULL };
	struct kv_db		*db;
	char			 err[256] = "";
	int			 lfd;

	t_make_dir(tmpdir);
	snprintf(db_file, sizeof(db_file), "%s/db.sqlite3", tmpdir);
	if (FCGX_Init() != 0 || metrics_init() != 0)
		T_BAIL("FCGX_Init or metrics_init");
	if ((db = kv_open(db_file, &opt, err, sizeof(err))) == NULL)
		T_BAIL("kv_open: %s", err);
	lfd = listener();
	test_batch(db, lfd);
	close(lfd);
	kv_close(db);
	metrics_fini();
	t_remove_dir(tmpdir);
	return t_done();
}
