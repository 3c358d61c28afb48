/*
 * fcgi_mux.c: non-blocking FastCGI connections (see fcgi_mux.h).
 *
 * The input buffer holds at most one partial record between calls: every
 * complete record is consumed as soon as it is there, its body bytes
 * copied once into the request's body buffer (or dropped), so what a
 * connection holds is bounded by its request's cap plus one record.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fcgi_mux.h"
#include "http.h"

/* One read asks for this much; a wakeup reads at most a few of them. */
#define MUX_READ_CHUNK		(64 * 1024)
#define MUX_READS_PER_WAKEUP	8
/* STDOUT content per record: the protocol's maximum, rounded to 8. */
#define MUX_STDOUT_CHUNK	65528
/* The first allocation of a body without a Content-Length. */
#define MUX_BODY_START		4096
#define MUX_STR_(x)		#x
#define MUX_STR(x)		MUX_STR_(x)

struct record {
	uint8_t		 type;
	uint16_t	 id;
	const uint8_t	*content;
	size_t		 clen;
	size_t		 total;		/* header, content and padding */
};

void
fcgi_mux_conn_init(struct fcgi_mux_conn *c, int fd, int body_ms, int send_ms,
    fcgi_mux_cap_fn cap_fn, void *cap_arg)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->epfd = -1;
	c->cap_fn = cap_fn;
	c->cap_arg = cap_arg;
	c->fc.body_ms = body_ms;
	c->fc.send_ms = send_ms;
	c->fc.req.ipcFd = -1;
	c->fc.mux = c;
}

/* Forgets the current request (its parameters and body). */
static void
request_reset(struct fcgi_mux_conn *c)
{
	free(c->params);
	free(c->env);
	free(c->body);
	c->params = NULL;
	c->env = NULL;
	c->body = NULL;
	c->params_len = c->params_cap = 0;
	c->body_len = c->body_alloc = 0;
	c->state = FCGI_MUX_IDLE;
	c->id = 0;
	c->keep = 0;
	c->timed_out = 0;
	c->stdin_done = 0;
	c->too_large = 0;
	c->declared = 0;
	c->declared_len = 0;
	c->cap = 0;
	c->fc.req.envp = NULL;
	c->fc.req.requestId = 0;
	c->fc.expired = FCGI_PHASE_NONE;
}

void
fcgi_mux_conn_fini(struct fcgi_mux_conn *c)
{
	request_reset(c);
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Makes room for n more bytes in *buf (length len, capacity *cap). */
static int
reserve(uint8_t **buf, size_t *cap, size_t len, size_t n)
{
	size_t	 want, ncap;
	uint8_t	*p;

	if (n > SIZE_MAX - len)
		return -1;
	want = len + n;
	if (want <= *cap)
		return 0;
	ncap = *cap > 0 ? *cap : 1024;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	if ((p = realloc(*buf, ncap)) == NULL)
		return -1;
	*buf = p;
	*cap = ncap;
	return 0;
}

/* Appends one record (content of at most FCGI_MAX_CONTENT bytes). */
static int
put_record(struct fcgi_mux_conn *c, uint8_t type, uint16_t id,
    const void *content, size_t len, int64_t now_ms)
{
	uint8_t	*h;

	if (c->out_off == c->out_len) {
		/* Nothing pending: start over, and the send clock starts now. */
		c->out_off = c->out_len = 0;
		c->send_by = now_ms + c->fc.send_ms;
	}
	if (reserve(&c->out, &c->out_cap, c->out_len, FCGI_HEADER_LEN + len))
		return -1;
	h = c->out + c->out_len;
	h[0] = FCGI_VERSION_1;
	h[1] = type;
	h[2] = (uint8_t)(id >> 8);
	h[3] = (uint8_t)id;
	h[4] = (uint8_t)(len >> 8);
	h[5] = (uint8_t)len;
	h[6] = 0;
	h[7] = 0;
	if (len > 0)
		memcpy(h + FCGI_HEADER_LEN, content, len);
	c->out_len += FCGI_HEADER_LEN + len;
	return 0;
}

static int
put_end_request(struct fcgi_mux_conn *c, uint16_t id, uint8_t proto_status,
    int64_t now_ms)
{
	uint8_t	 b[8] = { 0, 0, 0, 0, proto_status, 0, 0, 0 };

	return put_record(c, FCGI_END_REQUEST, id, b, sizeof(b), now_ms);
}

/* A management answer, unless the peer is not reading them. */
static int
put_management(struct fcgi_mux_conn *c, uint8_t type, uint16_t id,
    const void *content, size_t len, int64_t now_ms)
{
	if (c->out_len - c->out_off > FCGI_MUX_MAX_UNREAD)
		return -1;
	if (type == FCGI_END_REQUEST)
		return put_end_request(c, id, *(const uint8_t *)content,
		    now_ms);
	return put_record(c, type, id, content, len, now_ms);
}

/*
 * Parses a record header and checks that the whole record is there:
 * 1 with *r filled, 0 if more bytes are needed, -1 if it is no record.
 */
static int
parse_record(const uint8_t *p, size_t n, struct record *r)
{
	if (n < FCGI_HEADER_LEN)
		return 0;
	if (p[0] != FCGI_VERSION_1)
		return -1;
	r->type = p[1];
	r->id = (uint16_t)(p[2] << 8 | p[3]);
	r->clen = (size_t)(p[4] << 8 | p[5]);
	r->total = FCGI_HEADER_LEN + r->clen + p[6];
	r->content = p + FCGI_HEADER_LEN;
	return n >= r->total ? 1 : 0;
}

/*
 * Reads one name-value length (1 byte, or 4 with the high bit set) at
 * *p: 0, or -1 if it does not fit before end.
 */
static int
nv_length(const uint8_t **p, const uint8_t *end, size_t *len)
{
	const uint8_t	*q = *p;

	if (q >= end)
		return -1;
	if ((q[0] & 0x80) == 0) {
		*len = q[0];
		*p = q + 1;
		return 0;
	}
	if (end - q < 4)
		return -1;
	*len = (size_t)(q[0] & 0x7f) << 24 | (size_t)q[1] << 16 |
	    (size_t)q[2] << 8 | q[3];
	*p = q + 4;
	return 0;
}

/*
 * Walks the name-value pairs of buf: calls fn for each, stops at its
 * first non-zero. -1 if the encoding is broken, else fn's last result.
 */
typedef int	(*nv_fn)(void *, const uint8_t *name, size_t nlen,
		    const uint8_t *value, size_t vlen);

static int
nv_walk(const uint8_t *buf, size_t len, nv_fn fn, void *arg)
{
	const uint8_t	*p = buf, *end;
	size_t		 nlen, vlen;
	int		 rc;

	if (len == 0)
		return 0;	/* no parameters: buf may be NULL */
	end = buf + len;
	while (p < end) {
		if (nv_length(&p, end, &nlen) != 0 ||
		    nv_length(&p, end, &vlen) != 0 ||
		    nlen > (size_t)(end - p) ||
		    vlen > (size_t)(end - p) - nlen)
			return -1;
		if ((rc = fn(arg, p, nlen, p + nlen, vlen)) != 0)
			return rc;
		p += nlen + vlen;
	}
	return 0;
}

/* The environment being built from the parameters. */
struct env_build {
	char	**env;
	char	 *text;		/* after the pointer array */
	size_t	  n;
};

static int
count_pair(void *arg, const uint8_t *name, size_t nlen, const uint8_t *value,
    size_t vlen)
{
	(void)name;
	(void)nlen;
	(void)value;
	(void)vlen;
	(*(size_t *)arg)++;
	return 0;
}

static int
add_pair(void *arg, const uint8_t *name, size_t nlen, const uint8_t *value,
    size_t vlen)
{
	struct env_build	*b = arg;

	/* A NUL inside a name or value would cut it short: refuse it. */
	if (memchr(name, '\0', nlen) != NULL ||
	    memchr(value, '\0', vlen) != NULL)
		return -1;
	b->env[b->n++] = b->text;
	memcpy(b->text, name, nlen);
	b->text[nlen] = '=';
	memcpy(b->text + nlen + 1, value, vlen);
	b->text[nlen + 1 + vlen] = '\0';
	b->text += nlen + vlen + 2;
	return 0;
}

/*
 * Decodes the parameters into one allocation: the NULL-ended pointer
 * array, then the NAME=VALUE strings (each no longer than its encoding
 * plus two bytes, so params_len + 2 per pair bounds the text).
 */
static int
decode_params(struct fcgi_mux_conn *c)
{
	struct env_build	 b;
	size_t			 n = 0, ptrs;

	if (nv_walk(c->params, c->params_len, count_pair, &n) != 0)
		return -1;
	ptrs = (n + 1) * sizeof(char *);
	if ((b.env = malloc(ptrs + c->params_len + 2 * n + 1)) == NULL)
		return -1;
	b.text = (char *)b.env + ptrs;
	b.n = 0;
	if (nv_walk(c->params, c->params_len, add_pair, &b) != 0) {
		free(b.env);
		return -1;
	}
	b.env[b.n] = NULL;
	c->env = b.env;
	c->fc.req.envp = b.env;
	free(c->params);
	c->params = NULL;
	c->params_len = c->params_cap = 0;
	return 0;
}

static void
make_ready(struct fcgi_mux_conn *c)
{
	c->state = FCGI_MUX_READY;
}

/* The parameters are in: decide what of the body to keep. */
static int
params_done(struct fcgi_mux_conn *c)
{
	if (decode_params(c) != 0)
		return -1;
	c->declared = http_parse_content_length(http_param(&c->fc,
	    "CONTENT_LENGTH"), &c->declared_len);
	c->cap = c->cap_fn != NULL ? c->cap_fn(c->cap_arg, &c->fc) : 0;
	if (c->declared < 0)
		c->cap = 0;	/* refused for its Content-Length, unread */
	else if (c->declared > 0 && c->declared_len > c->cap)
		c->too_large = 1;
	else if (c->declared > 0) {
		/* Known length: one allocation, its NUL included. */
		if ((c->body = malloc(c->declared_len + 1)) == NULL)
			return -1;
		c->body_alloc = c->declared_len + 1;
	}
	c->state = FCGI_MUX_STDIN;
	/*
	 * A request that will be refused before its body is read (not a
	 * POST, bad credentials, a bad Content-Length) is served at once,
	 * as on the other model: its client hears 401 now, not at the end
	 * of an upload nobody will read. What follows of its body is
	 * dropped, and the connection closes after the answer.
	 */
	if (c->cap == 0)
		make_ready(c);
	return 0;
}

/* Body bytes: kept up to the cap, past it dropped and the request marked. */
static int
body_bytes(struct fcgi_mux_conn *c, const uint8_t *p, size_t n)
{
	size_t	 ncap;
	uint8_t	*nb;

	if (c->too_large || c->timed_out || n == 0)
		return 0;
	if (n > c->cap - c->body_len || c->cap == 0) {
		if (c->declared >= 0)
			c->too_large = 1;
		free(c->body);
		c->body = NULL;
		c->body_len = c->body_alloc = 0;
		return 0;
	}
	if (c->body_len + n + 1 > c->body_alloc) {
		ncap = c->body_alloc > 0 ? c->body_alloc : MUX_BODY_START;
		while (ncap < c->body_len + n + 1)
			ncap *= 2;
		if (ncap > c->cap + 1)
			ncap = c->cap + 1;
		if ((nb = realloc(c->body, ncap)) == NULL)
			return -1;
		c->body = nb;
		c->body_alloc = ncap;
	}
	memcpy(c->body + c->body_len, p, n);
	c->body_len += n;
	return 0;
}

static int
begin_request(struct fcgi_mux_conn *c, const struct record *r, int64_t now_ms)
{
	uint8_t	 status;

	if (r->id == 0 || r->clen != 8)
		return -1;
	if (c->state != FCGI_MUX_IDLE) {
		/*
		 * The open request's own id again: refusing it would end that
		 * request in the proxy's eyes (an END_REQUEST of its id) with
		 * its real answer still to come. The peer broke the protocol.
		 */
		if (r->id == c->id)
			return -1;
		/* One request at a time per connection: nginx never asks more. */
		status = FCGI_CANT_MPX_CONN;
		return put_management(c, FCGI_END_REQUEST, r->id, &status, 1,
		    now_ms);
	}
	if ((r->content[0] << 8 | r->content[1]) != FCGI_RESPONDER) {
		status = FCGI_UNKNOWN_ROLE;
		return put_management(c, FCGI_END_REQUEST, r->id, &status, 1,
		    now_ms);
	}
	c->state = FCGI_MUX_PARAMS;
	c->id = r->id;
	c->last_id = r->id;
	c->said_goodbye = 0;
	c->keep = (r->content[2] & FCGI_KEEP_CONN) != 0;
	c->begun_ms = now_ms;
	c->arrival_by = now_ms + c->fc.body_ms;
	c->fc.accepted_ms = now_ms;
	c->fc.arrival_by = c->arrival_by;
	c->fc.req.requestId = r->id;
	return 0;
}

static int
answer_get_value(void *arg, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen)
{
	static const struct {
		const char	*name;
		const char	*value;
	} known[] = {
		{ "FCGI_MAX_CONNS", MUX_STR(FCGI_MUX_MAX_CONNS) },
		{ "FCGI_MAX_REQS", MUX_STR(FCGI_MUX_MAX_CONNS) },
		{ "FCGI_MPXS_CONNS", "0" },
	};
	struct env_build	*b = arg;	/* text: the answer so far */
	size_t			 vl;
	uint8_t			*o;

	(void)value;
	(void)vlen;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].name) != nlen ||
		    memcmp(known[i].name, name, nlen) != 0)
			continue;
		vl = strlen(known[i].value);
		/* Each answered name once; the content stays one record. */
		if (b->n + 2 + nlen + vl > 1024)
			return 0;
		o = (uint8_t *)b->text + b->n;
		o[0] = (uint8_t)nlen;
		o[1] = (uint8_t)vl;
		memcpy(o + 2, name, nlen);
		memcpy(o + 2 + nlen, known[i].value, vl);
		b->n += 2 + nlen + vl;
	}
	return 0;
}

/* Management records (request id 0). */
static int
management(struct fcgi_mux_conn *c, const struct record *r, int64_t now_ms)
{
	char			 answer[1024];
	struct env_build	 b = { NULL, answer, 0 };
	uint8_t			 unknown[8] = { 0 };

	if (r->type != FCGI_GET_VALUES) {
		unknown[0] = r->type;
		return put_management(c, FCGI_UNKNOWN_TYPE, 0, unknown,
		    sizeof(unknown), now_ms);
	}
	if (nv_walk(r->content, r->clen, answer_get_value, &b) != 0)
		return -1;
	return put_management(c, FCGI_GET_VALUES_RESULT, 0, answer, b.n,
	    now_ms);
}

/* One complete record: 0, or -1 when it breaks the protocol. */
static int
apply_record(struct fcgi_mux_conn *c, const struct record *r, int64_t now_ms)
{
	if (r->id == 0)
		return management(c, r, now_ms);
	if (r->type == FCGI_BEGIN_REQUEST)
		return begin_request(c, r, now_ms);
	/* Records of requests not open here are ignored (the spec says so). */
	if (c->state == FCGI_MUX_IDLE || r->id != c->id) {
		/* The end of a body drained after its answer. */
		if (c->linger_id != 0 && r->id == c->linger_id &&
		    r->type == FCGI_STDIN && r->clen == 0)
			c->linger_id = 0;
		return r->type <= FCGI_UNKNOWN_TYPE ? 0 : -1;
	}
	switch (r->type) {
	case FCGI_ABORT_REQUEST:
		/* Unserved: end it now (the proxy gave up on it). */
		fcgi_mux_end_request(c, 0, now_ms);
		return 0;
	case FCGI_PARAMS:
		if (c->state != FCGI_MUX_PARAMS)
			return -1;
		if (r->clen == 0)
			return params_done(c);
		if (c->params_len + r->clen > FCGI_MUX_MAX_PARAMS ||
		    reserve(&c->params, &c->params_cap, c->params_len,
		    r->clen) != 0)
			return -1;
		memcpy(c->params + c->params_len, r->content, r->clen);
		c->params_len += r->clen;
		return 0;
	case FCGI_STDIN:
		if (c->state == FCGI_MUX_PARAMS || c->stdin_done)
			return -1;
		if (r->clen == 0) {
			c->stdin_done = 1;
			if (c->state == FCGI_MUX_STDIN)
				make_ready(c);
			return 0;
		}
		/* Ready already (refused unread, or too late): dropped. */
		if (c->state == FCGI_MUX_READY)
			return 0;
		return body_bytes(c, r->content, r->clen);
	case FCGI_DATA:
		return 0;	/* for the filter role only */
	default:
		return -1;	/* a record only an application sends */
	}
}

int
fcgi_mux_input(struct fcgi_mux_conn *c, const void *buf, size_t len,
    int64_t now_ms)
{
	struct record	 r;
	size_t		 off = 0;
	int		 rc;

	if (c->broken)
		return -1;
	if (len > 0) {
		if (reserve(&c->in, &c->in_cap, c->in_len, len) != 0)
			goto broken;
		memcpy(c->in + c->in_len, buf, len);
		c->in_len += len;
	}
	while ((rc = parse_record(c->in + off, c->in_len - off, &r)) == 1) {
		if (apply_record(c, &r, now_ms) != 0)
			goto broken;
		off += r.total;
	}
	if (rc < 0)
		goto broken;
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return 0;
broken:
	c->broken = 1;
	return -1;
}

int
fcgi_mux_read(struct fcgi_mux_conn *c, int64_t now_ms)
{
	uint8_t		 buf[MUX_READ_CHUNK];
	ssize_t		 n;

	for (int i = 0; i < MUX_READS_PER_WAKEUP; i++) {
		n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The proxy closed (or reset) the connection. */
			c->broken = 1;
			return -1;
		}
		if (fcgi_mux_input(c, buf, (size_t)n, now_ms) != 0)
			return -1;
		/* A short read emptied the socket: no need to hear EAGAIN. */
		if ((size_t)n < sizeof(buf))
			return 0;
	}
	return 0;
}

int
fcgi_mux_lingering(const struct fcgi_mux_conn *c)
{
	return c->linger_id != 0;
}

void
fcgi_mux_check_arrival(struct fcgi_mux_conn *c, int64_t now_ms)
{
	if (c->linger_id != 0 && now_ms >= c->linger_until)
		c->linger_id = 0;
	if ((c->state == FCGI_MUX_PARAMS || c->state == FCGI_MUX_STDIN) &&
	    now_ms >= c->arrival_by) {
		if (c->state == FCGI_MUX_PARAMS && decode_params(c) != 0) {
			/* Half a parameter: nothing to answer with. */
			c->broken = 1;
			return;
		}
		c->timed_out = 1;
		c->fc.expired = FCGI_PHASE_ARRIVAL;
		make_ready(c);
	}
}

int
fcgi_mux_stdout(struct fcgi_mux_conn *c, const void *buf, size_t len,
    int64_t now_ms)
{
	const uint8_t	*p = buf;
	size_t		 n;

	c->fc.response_ms = now_ms;
	while (len > 0) {
		n = len < MUX_STDOUT_CHUNK ? len : MUX_STDOUT_CHUNK;
		if (put_record(c, FCGI_STDOUT, c->id, p, n, now_ms) != 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

void
fcgi_mux_end_request(struct fcgi_mux_conn *c, int close_after, int64_t now_ms)
{
	/*
	 * A body not read to its end (too late, or refused unread) may still
	 * be arriving: the connection cannot carry another request.
	 */
	if (!c->keep || !c->stdin_done || close_after)
		c->closing = 1;
	if (!c->stdin_done && c->state != FCGI_MUX_IDLE) {
		c->linger_id = c->id;
		c->linger_until = now_ms + FCGI_MUX_LINGER_MS;
		if (c->linger_until > c->arrival_by)
			c->linger_until = c->arrival_by;
	}
	if (put_record(c, FCGI_STDOUT, c->id, NULL, 0, now_ms) != 0 ||
	    put_end_request(c, c->id, FCGI_REQUEST_COMPLETE, now_ms) != 0)
		c->broken = 1;
	c->idle_since = now_ms;
	request_reset(c);
}

void
fcgi_mux_goodbye(struct fcgi_mux_conn *c, int64_t now_ms)
{
	/* nginx takes records of request id 1 only, the one it always uses. */
	if (put_record(c, FCGI_STDERR, c->last_id != 0 ? c->last_id : 1, NULL,
	    0, now_ms) != 0)
		c->broken = 1;
	c->said_goodbye = 1;
}

int
fcgi_mux_pending(const struct fcgi_mux_conn *c)
{
	return c->out_off < c->out_len;
}

int
fcgi_mux_flush(struct fcgi_mux_conn *c, int64_t now_ms)
{
	ssize_t	 n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		    MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (now_ms >= c->send_by) {
				c->fc.expired = FCGI_PHASE_RESPONSE;
				return -1;
			}
			return 1;
		}
		if (n <= 0)
			return -1;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	c->send_by = 0;
	return 0;
}

/* Writes the output out, waiting for the socket up to the send deadline. */
static int
flush_wait(struct fcgi_mux_conn *c)
{
	struct pollfd	 pfd = { .fd = c->fd, .events = POLLOUT };
	int64_t		 now, left;
	int		 rc;

	for (;;) {
		now = clock_mono_ms();
		if ((rc = fcgi_mux_flush(c, now)) <= 0)
			return rc;
		left = c->send_by - now;
		if (poll(&pfd, 1, left > 0 ? (int)left : 0) < 0 &&
		    errno != EINTR)
			return -1;
	}
}

int
fcgi_mux_detach(struct fcgi_mux_conn *c, int *fd, int *request_id)
{
	if (c->broken || flush_wait(c) != 0) {
		c->broken = 1;
		return -1;
	}
	/* Out of the loop before the new owner can close or reuse it. */
	if (c->epfd >= 0)
		(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	*fd = c->fd;
	*request_id = c->id;
	c->fd = -1;
	c->detached = 1;
	return 0;
}

enum kv_err
fcgi_mux_body(struct fcgi_mux_conn *c, size_t cap, uint8_t **body,
    size_t *len)
{
	*body = NULL;
	*len = 0;
	if (c->declared < 0)
		return KV_ERR_BAD_CONTENT_LENGTH;
	if (c->too_large || c->body_len > cap ||
	    (c->declared > 0 && c->declared_len > cap))
		return KV_ERR_BODY_TOO_LARGE;
	if (c->timed_out)
		return KV_ERR_BODY_TIMEOUT;
	if (c->declared > 0 && c->body_len != c->declared_len)
		return KV_ERR_BODY_READ;
	if (c->body == NULL) {
		/* No body: an empty string, as the other model gives. */
		if ((c->body = malloc(1)) == NULL)
			return KV_ERR_NOMEM;
		c->body_alloc = 1;
	}
	c->body[c->body_len] = '\0';
	*body = c->body;
	*len = c->body_len;
	return KV_OK;
}
