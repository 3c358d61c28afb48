/*
 * fcgi_conn.c: FastCGI connections with deadlines (see fcgi_conn.h).
 *
 * A deadline is applied by setting SO_RCVTIMEO or SO_SNDTIMEO to the time
 * left just before each libfcgi call that may block, and by asking libfcgi
 * for no more than one buffer refill or flush per call. The read or write
 * that call makes then ends by the deadline. (One refill may take more
 * than one read when a record header arrives in pieces, and one flush
 * more than one write when the peer takes the buffer in pieces; each of
 * those is bounded by the time left when the call began. Proxies write
 * each record whole, so in practice the bound is the deadline.) A read or
 * write that times out fails with EAGAIN, which libfcgi records as the
 * stream's error.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fcgi_conn.h"

/*
 * After the response, a body the request did not read is drained for at
 * most this long (and never past the arrival deadline), so that a proxy
 * that buffered it sees its upload accepted, while a client still sending
 * does not hold the worker.
 */
#define FCGI_LINGER_MS		500
#define FCGI_LINGER_MAX_BYTES	(64 * 1024 * 1024)
/* Less than libfcgi's 8 KiB output buffer: at most one flush per call. */
#define FCGI_WRITE_CHUNK	4096

/* Sets SO_RCVTIMEO or SO_SNDTIMEO to ms (at least 1: 0 means "never"). */
static int
set_timeout(int fd, int opt, int64_t ms)
{
	struct timeval	 tv;

	if (ms < 1)
		ms = 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

static void
expire(struct fcgi_conn *c, enum fcgi_phase phase)
{
	if (c->expired == FCGI_PHASE_NONE)
		c->expired = phase;
}

/* Why a stream call came up short: its error, or its deadline. */
static enum fcgi_io
failure(FCGX_Stream *s, int64_t by)
{
	int	 e = FCGX_GetError(s);

	if (e == EAGAIN || e == EWOULDBLOCK || clock_mono_ms() >= by)
		return FCGI_IO_TIMEOUT;
	return FCGI_IO_ERROR;
}

int
fcgi_conn_init(struct fcgi_conn *c, int body_ms, int send_ms)
{
	memset(c, 0, sizeof(*c));
	c->body_ms = body_ms;
	c->send_ms = send_ms;
	c->allowed = getenv("FCGI_WEB_SERVER_ADDRS");
	if (c->allowed != NULL && *c->allowed == '\0')
		c->allowed = NULL;
	/* No listener: fcgi_conn_accept accepts and hands over the socket. */
	return FCGX_InitRequest(&c->req, -1, 0) == 0 ? 0 : -1;
}

void
fcgi_conn_fini(struct fcgi_conn *c)
{
	FCGX_Free(&c->req, 1);
}

int
fcgi_peer_allowed(const char *list, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)ss;
	struct in_addr			 a;
	char				 one[INET_ADDRSTRLEN];
	const char			*p, *comma;
	size_t				 n;

	if (list == NULL || ss->ss_family != AF_INET)
		return 1;
	for (p = list; *p != '\0'; p = comma != NULL ? comma + 1 : p + n) {
		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n >= sizeof(one))
			continue;
		memcpy(one, p, n);
		one[n] = '\0';
		if (inet_pton(AF_INET, one, &a) == 1 &&
		    a.s_addr == sin->sin_addr.s_addr)
			return 1;
	}
	return 0;
}

int
fcgi_conn_accept(struct fcgi_conn *c, int listen_fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);
	int			 fd, one = 1;

	if ((fd = accept4(listen_fd, (struct sockaddr *)&ss, &sslen,
	    SOCK_CLOEXEC)) < 0)
		return -errno;
	if (!fcgi_peer_allowed(c->allowed, &ss)) {
		close(fd);
		return -EPERM;
	}
	c->accepted_ms = clock_mono_ms();
	c->arrival_by = c->accepted_ms + c->body_ms;
	c->expired = FCGI_PHASE_NONE;
	/* No replies to our writes: Nagle would only delay them (TCP only). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (set_timeout(fd, SO_RCVTIMEO, c->body_ms) != 0 ||
	    set_timeout(fd, SO_SNDTIMEO, c->send_ms) != 0) {
		close(fd);
		return -EPROTO;
	}
	/*
	 * FCGX_Accept_r accepts only while ipcFd < 0, and first finishes the
	 * previous request, closing its socket unless keepConnection is set:
	 * so the open socket goes in with keepConnection (the begin record
	 * then sets it as the proxy asks). Detached, a connection that fails
	 * before its parameters are read is closed without libfcgi's drain,
	 * which lasts as long as the peer keeps sending.
	 */
	c->req.ipcFd = fd;
	c->req.keepConnection = 1;
	(void)FCGX_Detach(&c->req);
	if (FCGX_Accept_r(&c->req) == 0) {
		if (FCGX_GetError(c->req.in) == 0)
			return 0;
		/*
		 * The parameters broke off or ran out of time, which libfcgi
		 * takes for their end: drop the connection (shut down first,
		 * so that libfcgi's end records fail at once).
		 */
		(void)shutdown(c->req.ipcFd, SHUT_RDWR);
		FCGX_Finish_r(&c->req);
	}
	/* Closed by libfcgi, unless the proxy had asked to keep it. */
	if (c->req.ipcFd >= 0) {
		close(c->req.ipcFd);
		c->req.ipcFd = -1;
	}
	return -EPROTO;
}

/*
 * Reads up to len body bytes by the deadline. Asks libfcgi for what it
 * has buffered, or for a single byte when it has nothing: that is one
 * refill, hence one blocking read, under the time left.
 */
static enum fcgi_io
read_by(struct fcgi_conn *c, void *buf, size_t len, size_t *got,
    int64_t by)
{
	FCGX_Stream	*in = c->req.in;
	char		*p = buf;
	size_t		 n = 0, avail;
	int64_t		 left;
	int		 want, r;

	*got = 0;
	while (n < len) {
		avail = (size_t)(in->stop - in->rdNext);
		if (avail > 0) {
			if (avail > len - n)
				avail = len - n;
			want = avail > INT_MAX ? INT_MAX : (int)avail;
		} else {
			if ((left = by - clock_mono_ms()) <= 0)
				return FCGI_IO_TIMEOUT;
			if (set_timeout(c->req.ipcFd, SO_RCVTIMEO, left) != 0)
				return FCGI_IO_ERROR;
			want = 1;
		}
		r = FCGX_GetStr(p + n, want, in);
		n += (size_t)(r > 0 ? r : 0);
		*got = n;
		if (r < want)
			return FCGX_GetError(in) == 0 ? FCGI_IO_EOF :
			    failure(in, by);
	}
	return FCGI_IO_OK;
}

enum fcgi_io
fcgi_conn_read(struct fcgi_conn *c, void *buf, size_t len, size_t *got)
{
	enum fcgi_io	 io = read_by(c, buf, len, got, c->arrival_by);

	if (io == FCGI_IO_TIMEOUT)
		expire(c, FCGI_PHASE_ARRIVAL);
	return io;
}

/* Reads and drops the rest of the body, up to max bytes, by the deadline. */
static enum fcgi_io
discard_by(struct fcgi_conn *c, size_t max, int64_t by)
{
	char		 buf[16384];
	size_t		 total = 0, got;
	enum fcgi_io	 io;

	do {
		io = read_by(c, buf, sizeof(buf), &got, by);
		total += got;
	} while (io == FCGI_IO_OK && total < max);
	return io;
}

enum fcgi_io
fcgi_conn_discard(struct fcgi_conn *c, size_t max)
{
	enum fcgi_io	 io = discard_by(c, max, c->arrival_by);

	if (io == FCGI_IO_TIMEOUT)
		expire(c, FCGI_PHASE_ARRIVAL);
	return io;
}

int64_t
fcgi_conn_send_deadline(struct fcgi_conn *c)
{
	c->response_ms = clock_mono_ms();
	return c->response_ms + c->send_ms;
}

/* Sets the send timeout to the time left; FCGI_IO_TIMEOUT if none is. */
static enum fcgi_io
arm_send(struct fcgi_conn *c, int64_t by)
{
	int64_t	 left = by - clock_mono_ms();

	if (left <= 0) {
		expire(c, FCGI_PHASE_RESPONSE);
		return FCGI_IO_TIMEOUT;
	}
	if (set_timeout(c->req.ipcFd, SO_SNDTIMEO, left) != 0)
		return FCGI_IO_ERROR;
	return FCGI_IO_OK;
}

static enum fcgi_io
send_failure(struct fcgi_conn *c, int64_t by)
{
	enum fcgi_io	 io = failure(c->req.out, by);

	if (io == FCGI_IO_TIMEOUT)
		expire(c, FCGI_PHASE_RESPONSE);
	return io;
}

enum fcgi_io
fcgi_conn_write(struct fcgi_conn *c, const void *buf, size_t len, int64_t by)
{
	FCGX_Stream	*out = c->req.out;
	const char	*p = buf;
	enum fcgi_io	 io;
	size_t		 chunk;

	while (len > 0) {
		chunk = len < FCGI_WRITE_CHUNK ? len : FCGI_WRITE_CHUNK;
		/* Only a chunk that overflows the buffer makes libfcgi write. */
		if ((ptrdiff_t)chunk > out->stop - out->wrNext &&
		    (io = arm_send(c, by)) != FCGI_IO_OK)
			return io;
		if (FCGX_PutStr(p, (int)chunk, out) != (int)chunk)
			return send_failure(c, by);
		p += chunk;
		len -= chunk;
	}
	return FCGI_IO_OK;
}

enum fcgi_io
fcgi_conn_flush(struct fcgi_conn *c, int64_t by)
{
	enum fcgi_io	 io;

	if ((io = arm_send(c, by)) != FCGI_IO_OK)
		return io;
	if (FCGX_FFlush(c->req.out) != 0)
		return send_failure(c, by);
	return FCGI_IO_OK;
}

/*
 * After a failed or timed-out write the connection is of no more use, and
 * libfcgi would still try to write the rest of its buffer and the end
 * records: shut the socket down so those fail at once instead of waiting
 * out another send limit.
 */
static int
abandon_if_broken(struct fcgi_conn *c)
{
	if (FCGX_GetError(c->req.out) == 0)
		return 0;
	(void)shutdown(c->req.ipcFd, SHUT_RDWR);
	return 1;
}

void
fcgi_conn_finish(struct fcgi_conn *c)
{
	FCGX_Request	*r = &c->req;
	int64_t		 by;

	if (r->ipcFd >= 0 && r->in != NULL) {
		/* The end-of-request records, under the send limit. */
		if (!abandon_if_broken(c) &&
		    set_timeout(r->ipcFd, SO_SNDTIMEO, c->send_ms) == 0) {
			FCGX_FClose(r->err);
			FCGX_FClose(r->out);
		}
		/* A body left unread: drained briefly, never for long. */
		if (!abandon_if_broken(c) && FCGX_HasSeenEOF(r->in) == 0) {
			by = clock_mono_ms() + FCGI_LINGER_MS;
			if (by > c->arrival_by)
				by = c->arrival_by;
			(void)discard_by(c, FCGI_LINGER_MAX_BYTES, by);
		}
		/* libfcgi's own close would drain again, without a limit. */
		(void)FCGX_Detach(r);
	}
	FCGX_Finish_r(r);
	/* A connection the proxy asked to keep is closed all the same. */
	if (r->ipcFd >= 0) {
		close(r->ipcFd);
		r->ipcFd = -1;
	}
}
