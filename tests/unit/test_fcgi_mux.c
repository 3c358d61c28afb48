/*
 * test_fcgi_mux.c: the multiplexed model's FastCGI record reader and
 * writer (fcgi_mux.c), driven from byte arrays: a request whole, in one
 * byte pieces and with padding; parameter lengths in both encodings;
 * management records (GET_VALUES, an unknown type); abort; a second
 * request on a busy connection (CANT_MPX_CONN); an unknown role; the body
 * cap (declared and streamed), the arrival deadline; responses split into
 * records and written to a real socket; and every kind of garbage, which
 * must mark the connection broken.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fcgi_mux.h"
#include "http.h"
#include "testhelp.h"

#define BODY_MS	1000
#define SEND_MS	1000

/* A growing byte string to build input in. */
struct buf {
	uint8_t	 b[400000];
	size_t	 n;
};

static size_t	 test_cap = 1024;

static size_t
cap_fn(void *arg, struct fcgi_conn *c)
{
	(void)arg;
	(void)c;
	return test_cap;
}

static void
put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->b))
		T_BAIL("test buffer too small");
	if (n > 0)
		memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void
record(struct buf *b, uint8_t type, uint16_t id, const void *c, size_t n,
    uint8_t pad)
{
	uint8_t	 h[8] = { 1, type, (uint8_t)(id >> 8), (uint8_t)id,
		    (uint8_t)(n >> 8), (uint8_t)n, pad, 0 };
	uint8_t	 zeros[255] = { 0 };

	put(b, h, 8);
	put(b, c, n);
	put(b, zeros, pad);
}

static void
begin(struct buf *b, uint16_t id, uint16_t role, int keep)
{
	uint8_t	 c[8] = { (uint8_t)(role >> 8), (uint8_t)role,
		    keep ? FCGI_KEEP_CONN : 0, 0, 0, 0, 0, 0 };

	record(b, FCGI_BEGIN_REQUEST, id, c, 8, 0);
}

static void
nv_len(struct buf *b, size_t n, int force_long)
{
	uint8_t	 l[4] = { (uint8_t)((n >> 24) | 0x80), (uint8_t)(n >> 16),
		    (uint8_t)(n >> 8), (uint8_t)n };
	uint8_t	 s = (uint8_t)n;

	if (n < 128 && !force_long)
		put(b, &s, 1);
	else
		put(b, l, 4);
}

/* One name-value pair in p (lengths in the 4-byte form if force_long). */
static void
pair(struct buf *p, const char *name, const char *value, int force_long)
{
	nv_len(p, strlen(name), force_long);
	nv_len(p, strlen(value), force_long);
	put(p, name, strlen(name));
	put(p, value, strlen(value));
}

/* A whole request: begin, the parameters, the body, the two end records. */
static void
request(struct buf *b, uint16_t id, int keep, const char *body, uint8_t pad)
{
	static struct buf	 p;
	char			 cl[32], longv[300];

	p.n = 0;
	snprintf(cl, sizeof(cl), "%zu", strlen(body));
	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	pair(&p, "REQUEST_METHOD", "POST", 0);
	pair(&p, "CONTENT_LENGTH", cl, 0);
	pair(&p, "REQUEST_URI", "/v2/snapshot_read", 1);
	pair(&p, "HTTP_X_LONG", longv, 0);
	begin(b, id, FCGI_RESPONDER, keep);
	record(b, FCGI_PARAMS, id, p.b, p.n, pad);
	record(b, FCGI_PARAMS, id, NULL, 0, pad);
	if (*body != '\0')
		record(b, FCGI_STDIN, id, body, strlen(body), pad);
	record(b, FCGI_STDIN, id, NULL, 0, pad);
}

static void
conn(struct fcgi_mux_conn *c, int fd)
{
	fcgi_mux_conn_init(c, fd, BODY_MS, SEND_MS, cap_fn, NULL);
}

/*
 * Into b (emptied first, with p): the start of a kept responder request 7
 * with the one parameter name=value, all its parameters sent, no body yet.
 */
static void
request7(struct buf *b, struct buf *p, const char *name, const char *value)
{
	b->n = p->n = 0;
	pair(p, name, value, 0);
	begin(b, 7, FCGI_RESPONDER, 1);
	record(b, FCGI_PARAMS, 7, p->b, p->n, 0);
	record(b, FCGI_PARAMS, 7, NULL, 0, 0);
}

/* The n-th record of the output (type, id, content), or -1. */
static int
out_record(struct fcgi_mux_conn *c, int n, uint8_t *type, uint16_t *id,
    const uint8_t **content, size_t *len)
{
	size_t	 off = c->out_off;

	while (off + 8 <= c->out_len) {
		const uint8_t	*h = c->out + off;
		size_t		 clen = (size_t)(h[4] << 8 | h[5]);

		if (n-- == 0) {
			*type = h[1];
			*id = (uint16_t)(h[2] << 8 | h[3]);
			*content = h + 8;
			*len = clen;
			return 0;
		}
		off += 8 + clen + h[6];
	}
	return -1;
}

static void
check_ready(struct fcgi_mux_conn *c, const char *how)
{
	uint8_t		*body;
	size_t		 len;
	const char	*v;

	T_EQ(c->state, FCGI_MUX_READY, "%s: the request is ready", how);
	T_OK(!c->broken, "%s: the connection is fine", how);
	T_EQ(c->id, 7, "%s: with its request id", how);
	v = http_param(&c->fc, "REQUEST_METHOD");
	T_OK(v != NULL && strcmp(v, "POST") == 0, "%s: short parameter", how);
	v = http_param(&c->fc, "REQUEST_URI");
	T_OK(v != NULL && strcmp(v, "/v2/snapshot_read") == 0,
	    "%s: parameter with 4-byte lengths", how);
	v = http_param(&c->fc, "HTTP_X_LONG");
	T_OK(v != NULL && strlen(v) == 299, "%s: 299-byte value", how);
	T_OK(http_param(&c->fc, "HTTP_X_NONE") == NULL,
	    "%s: absent parameter", how);
	T_EQ(fcgi_mux_body(c, 1024, &body, &len), KV_OK, "%s: body", how);
	T_OK(len == 5 && memcmp(body, "hello", 6) == 0, "%s: body bytes",
	    how);
}

static void
test_whole_and_pieces(void)
{
	static struct buf	 b;
	struct fcgi_mux_conn	 c;

	b.n = 0;
	request(&b, 7, 1, "hello", 0);
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "whole: parsed");
	check_ready(&c, "whole");
	T_EQ(c.in_len, 0, "whole: nothing left over");
	fcgi_mux_conn_fini(&c);

	conn(&c, -1);
	for (size_t i = 0; i < b.n; i++)
		if (fcgi_mux_input(&c, b.b + i, 1, 0) != 0)
			break;
	check_ready(&c, "one byte at a time");
	fcgi_mux_conn_fini(&c);

	b.n = 0;
	request(&b, 7, 1, "hello", 7);
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "padded: parsed");
	check_ready(&c, "padded records");
	fcgi_mux_conn_fini(&c);
}

static void
test_response_and_keep(void)
{
	static struct buf	 b;
	static uint8_t		 big[70000];
	struct fcgi_mux_conn	 c;
	const uint8_t		*content;
	uint8_t			 type;
	uint16_t		 id;
	size_t			 len;

	b.n = 0;
	request(&b, 7, 1, "hello", 0);
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	memset(big, 'x', sizeof(big));
	T_EQ(fcgi_mux_stdout(&c, big, sizeof(big), 0), 0, "response queued");
	fcgi_mux_end_request(&c, 0, 0);
	T_OK(out_record(&c, 0, &type, &id, &content, &len) == 0 &&
	    type == FCGI_STDOUT && id == 7 && len == 65528,
	    "first record: 65528 bytes of stdout");
	T_OK(out_record(&c, 1, &type, &id, &content, &len) == 0 &&
	    type == FCGI_STDOUT && len == sizeof(big) - 65528,
	    "second record: the rest");
	T_OK(out_record(&c, 2, &type, &id, &content, &len) == 0 &&
	    type == FCGI_STDOUT && len == 0, "then the end of stdout");
	T_OK(out_record(&c, 3, &type, &id, &content, &len) == 0 &&
	    type == FCGI_END_REQUEST && len == 8 &&
	    content[4] == FCGI_REQUEST_COMPLETE, "then END_REQUEST");
	T_EQ(c.state, FCGI_MUX_IDLE, "kept: idle for the next request");
	T_OK(!c.closing, "kept: not closing");

	/* The next request on the same connection. */
	b.n = 0;
	request(&b, 7, 0, "hello", 0);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	check_ready(&c, "second request on a kept connection");
	fcgi_mux_end_request(&c, 0, 0);
	T_OK(c.closing, "not kept: closing after the response");
	fcgi_mux_conn_fini(&c);
}

static void
test_flush_to_socket(void)
{
	static struct buf	 b;
	static uint8_t		 got[200000];
	struct fcgi_mux_conn	 c;
	int			 sv[2];
	size_t			 n = 0;
	ssize_t			 r;
	int			 rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		T_BAIL("socketpair: %s", strerror(errno));
	b.n = 0;
	request(&b, 7, 1, "hello", 0);
	conn(&c, sv[0]);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	memset(got, 'y', 150000);
	(void)fcgi_mux_stdout(&c, got, 150000, 0);
	fcgi_mux_end_request(&c, 0, 0);
	/* Alternately write what the socket takes and read the other end. */
	do {
		rc = fcgi_mux_flush(&c, 0);
		while ((r = read(sv[1], got + n, sizeof(got) - n)) > 0)
			n += (size_t)r;
	} while (rc == 1);
	T_EQ(rc, 0, "flushed without error");
	T_EQ(n, 150000 + 3 * 8 + 8 + 8 + 8, "every byte and header arrived");
	T_OK(!fcgi_mux_pending(&c), "nothing pending");
	/* A peer that reads nothing: the send deadline ends it. */
	for (int i = 0; i < 1000; i++) {
		(void)fcgi_mux_stdout(&c, got, 150000, 100);
		if ((rc = fcgi_mux_flush(&c, 100)) != 0)
			break;
	}
	T_EQ(rc, 1, "unread: left pending before the deadline");
	T_EQ(fcgi_mux_flush(&c, 100 + SEND_MS), -1,
	    "unread: an error once the send deadline passed");
	T_EQ(c.fc.expired, FCGI_PHASE_RESPONSE, "and the response phase expired");
	close(sv[1]);
	fcgi_mux_conn_fini(&c);
}

static void
test_management(void)
{
	static struct buf	 b, p;
	struct fcgi_mux_conn	 c;
	const uint8_t		*content;
	uint8_t			 type, zero8[8] = { 0 };
	uint16_t		 id;
	size_t			 len;

	b.n = p.n = 0;
	pair(&p, "FCGI_MAX_CONNS", "", 0);
	pair(&p, "FCGI_MPXS_CONNS", "", 0);
	pair(&p, "FCGI_NO_SUCH", "", 0);
	pair(&p, "FCGI_MAX_REQS", "", 1);
	record(&b, FCGI_GET_VALUES, 0, p.b, p.n, 3);
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "GET_VALUES parsed");
	T_OK(out_record(&c, 0, &type, &id, &content, &len) == 0 &&
	    type == FCGI_GET_VALUES_RESULT && id == 0,
	    "GET_VALUES_RESULT answered");
	T_OK(len == 2 + 14 + 4 + 2 + 15 + 1 + 2 + 13 + 4 &&
	    memcmp(content, "\x0e\x04" "FCGI_MAX_CONNS1000", 20) == 0 &&
	    memcmp(content + 20, "\x0f\x01" "FCGI_MPXS_CONNS0", 18) == 0 &&
	    memcmp(content + 38, "\x0d\x04" "FCGI_MAX_REQS1000", 19) == 0,
	    "with the known names only, in the asked order");
	b.n = 0;
	record(&b, 42, 0, zero8, 8, 0);
	c.out_off = c.out_len = 0;
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "unknown management type");
	T_OK(out_record(&c, 0, &type, &id, &content, &len) == 0 &&
	    type == FCGI_UNKNOWN_TYPE && len == 8 && content[0] == 42,
	    "answered with UNKNOWN_TYPE naming it");
	T_EQ(c.state, FCGI_MUX_IDLE, "no request started");
	fcgi_mux_conn_fini(&c);
	/*
	 * A second begin with the open request's own id: no END_REQUEST of
	 * that id may go out (the proxy would take it for the end of the
	 * open request); the connection is broken instead.
	 */
	b.n = 0;
	begin(&b, 7, FCGI_RESPONDER, 1);
	begin(&b, 7, FCGI_RESPONDER, 1);
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), -1,
	    "a begin reusing the open request's id breaks the protocol");
	T_OK(c.broken && out_record(&c, 0, &type, &id, &content, &len) != 0,
	    "broken, and nothing answered for the open id");
	fcgi_mux_conn_fini(&c);
}

static void
test_abort_mpx_role(void)
{
	static struct buf	 b;
	struct fcgi_mux_conn	 c;
	const uint8_t		*content;
	uint8_t			 type;
	uint16_t		 id;
	size_t			 len;

	/* A second request while the first is open. */
	b.n = 0;
	begin(&b, 7, FCGI_RESPONDER, 1);
	begin(&b, 8, FCGI_RESPONDER, 1);
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "second begin parsed");
	T_OK(out_record(&c, 0, &type, &id, &content, &len) == 0 &&
	    type == FCGI_END_REQUEST && id == 8 &&
	    content[4] == FCGI_CANT_MPX_CONN,
	    "second request refused with CANT_MPX_CONN");
	T_OK(c.state == FCGI_MUX_PARAMS && c.id == 7,
	    "the first request goes on");
	/* Records of the refused request are ignored. */
	b.n = 0;
	record(&b, FCGI_PARAMS, 8, NULL, 0, 0);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0,
	    "records of another request id ignored");
	T_EQ(c.state, FCGI_MUX_PARAMS, "and change nothing");
	/* Abort: ended unserved. */
	b.n = 0;
	record(&b, FCGI_ABORT_REQUEST, 7, NULL, 0, 0);
	c.out_off = c.out_len = 0;
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "abort parsed");
	T_EQ(c.state, FCGI_MUX_IDLE, "aborted request gone");
	T_OK(out_record(&c, 1, &type, &id, &content, &len) == 0 &&
	    type == FCGI_END_REQUEST && id == 7, "and answered END_REQUEST");
	/* Its body may still be on the way: not reused for another request. */
	T_OK(c.closing && !c.broken, "connection closes after the answer");
	/* An unknown role. */
	b.n = 0;
	begin(&b, 9, 2, 1);	/* FCGI_AUTHORIZER */
	c.out_off = c.out_len = 0;
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "authorizer role parsed");
	T_OK(out_record(&c, 0, &type, &id, &content, &len) == 0 &&
	    type == FCGI_END_REQUEST && id == 9 &&
	    content[4] == FCGI_UNKNOWN_ROLE, "refused with UNKNOWN_ROLE");
	T_EQ(c.state, FCGI_MUX_IDLE, "no request started");
	fcgi_mux_conn_fini(&c);
}

static void
test_body_cap_and_deadline(void)
{
	static struct buf	 b, p;
	static char		 big[3000];
	struct fcgi_mux_conn	 c;
	uint8_t			*body;
	size_t			 len;

	/* Streamed (no Content-Length) past the cap: dropped as it comes. */
	memset(big, 'z', sizeof(big) - 1);
	request7(&b, &p, "REQUEST_METHOD", "POST");
	record(&b, FCGI_STDIN, 7, big, 1000, 0);
	record(&b, FCGI_STDIN, 7, big, 1000, 0);
	record(&b, FCGI_STDIN, 7, NULL, 0, 0);
	test_cap = 1500;
	conn(&c, -1);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "streamed body parsed");
	T_EQ(c.state, FCGI_MUX_READY, "ready at its end");
	T_OK(c.too_large && c.body == NULL, "over the cap: nothing kept");
	T_EQ(fcgi_mux_body(&c, 1500, &body, &len), KV_ERR_BODY_TOO_LARGE,
	    "answered 413");
	fcgi_mux_conn_fini(&c);

	/* Exactly the cap: kept. */
	b.n = 0;
	begin(&b, 7, FCGI_RESPONDER, 1);
	record(&b, FCGI_PARAMS, 7, p.b, p.n, 0);
	record(&b, FCGI_PARAMS, 7, NULL, 0, 0);
	record(&b, FCGI_STDIN, 7, big, 1000, 0);
	record(&b, FCGI_STDIN, 7, big, 500, 0);
	record(&b, FCGI_STDIN, 7, NULL, 0, 0);
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_EQ(fcgi_mux_body(&c, 1500, &body, &len), KV_OK, "at the cap: kept");
	T_EQ(len, 1500, "all of it");
	T_EQ(fcgi_mux_body(&c, 1499, &body, &len), KV_ERR_BODY_TOO_LARGE,
	    "a smaller cap at admission still refuses it");
	fcgi_mux_conn_fini(&c);

	/* Declared past the cap: refused before any byte arrives. */
	request7(&b, &p, "CONTENT_LENGTH", "1501");
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_OK(c.too_large && c.body == NULL, "declared too large: marked");
	fcgi_mux_conn_fini(&c);

	/* A bad Content-Length. */
	request7(&b, &p, "CONTENT_LENGTH", "-1");
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	record(&b, FCGI_STDIN, 7, NULL, 0, 0);
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_EQ(fcgi_mux_body(&c, 1500, &body, &len), KV_ERR_BAD_CONTENT_LENGTH,
	    "bad Content-Length: 400");
	fcgi_mux_conn_fini(&c);

	/* A body shorter than declared. */
	request7(&b, &p, "CONTENT_LENGTH", "20");
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	record(&b, FCGI_STDIN, 7, NULL, 0, 0);
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_EQ(fcgi_mux_body(&c, 1500, &body, &len), KV_ERR_BODY_READ,
	    "short body: refused");
	fcgi_mux_conn_fini(&c);

	/* Refused unread (cap 0): ready once the parameters are in. */
	request7(&b, &p, "CONTENT_LENGTH", "10");
	test_cap = 0;
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_EQ(c.state, FCGI_MUX_READY, "cap 0: ready before its body");
	b.n = 0;
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0, "cap 0: its body is dropped");
	T_OK(c.body == NULL, "cap 0: nothing kept");
	fcgi_mux_end_request(&c, 0, 0);
	T_OK(c.closing, "cap 0: answered before the body ended: closing");
	T_OK(fcgi_mux_lingering(&c), "cap 0: the rest of the body is drained");
	b.n = 0;
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	record(&b, FCGI_STDIN, 7, NULL, 0, 0);
	(void)fcgi_mux_input(&c, b.b, b.n, 0);
	T_OK(!fcgi_mux_lingering(&c) && !c.broken,
	    "cap 0: drained to its end, then the connection may close");
	fcgi_mux_conn_fini(&c);
	test_cap = 1500;
	p.n = 0;
	pair(&p, "CONTENT_LENGTH", "20", 0);

	/* A body that stops arriving: ready at the deadline, 408. */
	b.n = 0;
	begin(&b, 7, FCGI_RESPONDER, 1);
	record(&b, FCGI_PARAMS, 7, p.b, p.n, 0);
	record(&b, FCGI_PARAMS, 7, NULL, 0, 0);
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	conn(&c, -1);
	(void)fcgi_mux_input(&c, b.b, b.n, 1000);
	fcgi_mux_check_arrival(&c, 1000 + BODY_MS - 1);
	T_EQ(c.state, FCGI_MUX_STDIN, "before the deadline: still arriving");
	fcgi_mux_check_arrival(&c, 1000 + BODY_MS);
	T_EQ(c.state, FCGI_MUX_READY, "at the deadline: ready");
	T_EQ(fcgi_mux_body(&c, 1500, &body, &len), KV_ERR_BODY_TIMEOUT,
	    "answered 408");
	b.n = 0;
	record(&b, FCGI_STDIN, 7, big, 10, 0);
	T_EQ(fcgi_mux_input(&c, b.b, b.n, 3000), 0,
	    "the late rest of the body is ignored");
	fcgi_mux_end_request(&c, 0, 3000);
	T_OK(c.closing, "and the connection closes after the 408");
	fcgi_mux_conn_fini(&c);
	test_cap = 1024;
}

/* Feeds bytes to a fresh connection: 1 if they break it. */
static int
breaks(const struct buf *b)
{
	struct fcgi_mux_conn	 c;
	int			 rc;

	conn(&c, -1);
	rc = fcgi_mux_input(&c, b->b, b->n, 0);
	T_EQ(rc != 0, c.broken, "result and broken flag agree");
	fcgi_mux_conn_fini(&c);
	return rc != 0;
}

static void
test_garbage(void)
{
	static struct buf	 b, p;
	static uint8_t		 chunk[60000];
	uint8_t			 h[8] = { 2, FCGI_BEGIN_REQUEST, 0, 1, 0, 8, 0, 0 };
	uint8_t			 bad_nv[] = { 0x80, 0, 0, 9, 1, 'a', 'b' };
	uint8_t			 ok8[8] = { 0, 1, 0, 0, 0, 0, 0, 0 };

	b.n = 0;
	put(&b, h, 8);
	put(&b, ok8, 8);
	T_OK(breaks(&b), "version 2: broken");
	b.n = 0;
	record(&b, FCGI_BEGIN_REQUEST, 1, ok8, 7, 0);
	T_OK(breaks(&b), "begin-request of 7 bytes: broken");
	b.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	record(&b, FCGI_STDIN, 1, "x", 1, 0);
	T_OK(breaks(&b), "stdin before the parameters ended: broken");
	b.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	record(&b, FCGI_PARAMS, 1, bad_nv, sizeof(bad_nv), 0);
	record(&b, FCGI_PARAMS, 1, NULL, 0, 0);
	T_OK(breaks(&b), "a name-value length past the end: broken");
	b.n = p.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	pair(&p, "A", "x", 0);
	p.b[3] = '\0';	/* a NUL inside the value */
	record(&b, FCGI_PARAMS, 1, p.b, p.n, 0);
	record(&b, FCGI_PARAMS, 1, NULL, 0, 0);
	T_OK(breaks(&b), "a NUL in a parameter: broken");
	b.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	record(&b, FCGI_STDOUT, 1, "x", 1, 0);
	T_OK(breaks(&b), "a record only an application sends: broken");
	b.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	for (int i = 0; i < 5; i++)
		record(&b, FCGI_PARAMS, 1, chunk, sizeof(chunk), 0);
	T_OK(breaks(&b), "parameters over %d bytes: broken",
	    FCGI_MUX_MAX_PARAMS);
	b.n = 0;
	begin(&b, 0, FCGI_RESPONDER, 0);
	/* Id 0 is the management space: an unknown type there, answered. */
	T_OK(!breaks(&b), "begin-request with id 0: no request, not broken");
	b.n = 0;
	begin(&b, 1, FCGI_RESPONDER, 0);
	record(&b, FCGI_PARAMS, 1, NULL, 0, 0);
	record(&b, FCGI_PARAMS, 1, NULL, 0, 0);
	T_OK(breaks(&b), "parameters after their end: broken");
	{
		struct fcgi_mux_conn	 c;

		b.n = 0;
		begin(&b, 1, FCGI_RESPONDER, 0);
		record(&b, FCGI_PARAMS, 1, NULL, 0, 0);
		conn(&c, -1);
		T_EQ(fcgi_mux_input(&c, b.b, b.n, 0), 0,
		    "no parameters at all: parsed");
		T_OK(c.state == FCGI_MUX_STDIN || c.state == FCGI_MUX_READY,
		    "no parameters at all: the request goes on");
		T_OK(http_param(&c.fc, "REQUEST_METHOD") == NULL,
		    "no parameters at all: none found");
		fcgi_mux_conn_fini(&c);
	}
	b.n = 0;
	record(&b, 200, 5, NULL, 0, 0);
	T_OK(breaks(&b), "unknown record type for a request: broken");
	b.n = 0;
	record(&b, FCGI_STDIN, 5, "x", 1, 0);
	T_OK(!breaks(&b), "stdin of a request not open: ignored");
}

int
main(void)
{
	test_whole_and_pieces();
	test_response_and_keep();
	test_flush_to_socket();
	test_management();
	test_abort_mpx_role();
	test_body_cap_and_deadline();
	test_garbage();
	return t_done();
}
