/*
 * cmd_status.c: `denokv-fcgi [--sqlite-path P | --listen ADDR] status`
 * asks the running service how it is doing: workers, generation, uptime,
 * requests, write-queue wait, watches (the counters of metrics.c).
 *
 * It speaks FastCGI to the service's own socket, like a web server does,
 * with one parameter no web server sends (OPS_STATUS_PARAM, h_ops.c), so
 * whoever may connect to the socket may ask, and no HTTP client can. The
 * socket is --listen's, else the one next to the database; a service
 * started by systemd's socket unit needs --listen with that unit's path.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"
#include "handlers.h"

#define FCGI_VERSION		1
#define FCGI_BEGIN_REQUEST	1
#define FCGI_END_REQUEST	3
#define FCGI_PARAMS		4
#define FCGI_STDIN		5
#define FCGI_STDOUT		6
#define FCGI_RESPONDER		1
#define STATUS_TIMEOUT_S	10
#define STATUS_MAX_REPLY	(256 * 1024)

struct buf {
	uint8_t	 b[4096];
	size_t	 len;
};

static void
record(struct buf *o, int type, const void *body, size_t len)
{
	uint8_t	*h = o->b + o->len;

	h[0] = FCGI_VERSION;
	h[1] = (uint8_t)type;
	h[2] = 0;
	h[3] = 1;			/* request id 1 */
	h[4] = (uint8_t)(len >> 8);
	h[5] = (uint8_t)len;
	h[6] = h[7] = 0;
	if (len > 0)
		memcpy(h + 8, body, len);
	o->len += 8 + len;
}

/* One name-value pair; both are short here (under 128 bytes). */
static size_t
pair(uint8_t *p, const char *name, const char *value)
{
	size_t	 nl = strlen(name), vl = strlen(value);

	p[0] = (uint8_t)nl;
	p[1] = (uint8_t)vl;
	memcpy(p + 2, name, nl);
	memcpy(p + 2 + nl, value, vl);
	return 2 + nl + vl;
}

static void
build_request(struct buf *o)
{
	static const uint8_t	 begin[8] = { 0, FCGI_RESPONDER, 0 };
	static const char *const params[][2] = {
		{ "GATEWAY_INTERFACE", "CGI/1.1" },
		{ "REQUEST_METHOD", "GET" },
		{ "REQUEST_URI", "/" },
		{ "SCRIPT_NAME", "/" },
		{ "SERVER_PROTOCOL", "HTTP/1.1" },
		{ "CONTENT_LENGTH", "0" },
		{ OPS_STATUS_PARAM, "1" },
	};
	uint8_t			 p[1024];
	size_t			 n = 0;

	o->len = 0;
	record(o, FCGI_BEGIN_REQUEST, begin, sizeof(begin));
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
		n += pair(p + n, params[i][0], params[i][1]);
	record(o, FCGI_PARAMS, p, n);
	record(o, FCGI_PARAMS, NULL, 0);
	record(o, FCGI_STDIN, NULL, 0);
}

static int
connect_unix(const char *path, char *err, size_t len)
{
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	int			 fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, len, "socket path too long: %s", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(err, len, "cannot connect to unix:%s: %s", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

static int
connect_tcp(const char *addr, char *err, size_t len)
{
	struct addrinfo	 hints = { .ai_socktype = SOCK_STREAM }, *res;
	char		 host[256];
	const char	*port = strrchr(addr, ':');
	size_t		 hl;
	int		 fd, rc;

	if (port == NULL || (hl = (size_t)(port - addr)) == 0 ||
	    hl >= sizeof(host)) {
		snprintf(err, len, "cannot parse the address %s", addr);
		return -1;
	}
	/* [v6]:port */
	if (addr[0] == '[' && addr[hl - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)hl - 2, addr + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)hl, addr);
	if ((rc = getaddrinfo(host, port + 1, &hints, &res)) != 0) {
		snprintf(err, len, "%s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
		snprintf(err, len, "cannot connect to %s: %s", addr,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int
read_full(int fd, uint8_t *p, size_t n)
{
	ssize_t	 r;

	while (n > 0) {
		if ((r = read(fd, p, n)) <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads STDOUT records until END_REQUEST; the reply in *out (malloc'd). */
static int
read_reply(int fd, char **out, size_t *outlen, char *err, size_t len)
{
	uint8_t	 h[8], body[65536 + 256];
	char	*reply = NULL, *grown;
	size_t	 n = 0, clen;

	for (;;) {
		if (read_full(fd, h, 8) != 0) {
			snprintf(err, len, "the service closed the connection"
			    " without an answer");
			goto fail;
		}
		clen = ((size_t)h[4] << 8 | h[5]) + h[6];
		if (read_full(fd, body, clen) != 0) {
			snprintf(err, len, "the answer was cut short");
			goto fail;
		}
		if (h[1] == FCGI_END_REQUEST)
			break;
		if (h[1] != FCGI_STDOUT)
			continue;
		clen -= h[6];
		if (n + clen > STATUS_MAX_REPLY ||
		    (grown = realloc(reply, n + clen + 1)) == NULL) {
			snprintf(err, len, "the answer is too large");
			goto fail;
		}
		reply = grown;
		memcpy(reply + n, body, clen);
		n += clen;
	}
	if (reply == NULL && (reply = calloc(1, 1)) == NULL)
		goto fail;
	reply[n] = '\0';
	*out = reply;
	*outlen = n;
	return 0;
fail:
	free(reply);
	return -1;
}

static int
ask(const struct conf *c, char *err, size_t len)
{
	struct timeval	 tv = { STATUS_TIMEOUT_S, 0 };
	struct buf	 req;
	char		 path[4096], *reply = NULL, *body;
	size_t		 n;
	int		 fd, rc = -1;

	if (c->listen != NULL && strncmp(c->listen, "unix:", 5) == 0)
		fd = connect_unix(c->listen + 5, err, len);
	else if (c->listen != NULL)
		fd = connect_tcp(c->listen, err, len);
	else if (c->sqlite_path == NULL) {
		snprintf(err, len, "a file with [database] sections names no"
		    " socket: set listen =");
		return -1;
	} else {
		snprintf(path, sizeof(path), "%s.sock", c->sqlite_path);
		fd = connect_unix(path, err, len);
	}
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	build_request(&req);
	/* send, not write: a service that hangs up must not kill us (SIGPIPE). */
	if (send(fd, req.b, req.len, MSG_NOSIGNAL) != (ssize_t)req.len) {
		snprintf(err, len, "sending the request: %s", strerror(errno));
		goto out;
	}
	if (read_reply(fd, &reply, &n, err, len) != 0)
		goto out;
	if (strncmp(reply, "Status: 200", 11) != 0 ||
	    (body = strstr(reply, "\r\n\r\n")) == NULL) {
		snprintf(err, len, "the service answered: %.*s", (int)strcspn(
		    reply, "\r\n"), reply);
		goto out;
	}
	fputs(body + 4, stdout);
	rc = 0;
out:
	free(reply);
	close(fd);
	return rc;
}

int
cmd_status_main(int argc, char **argv)
{
	struct conf_words	 w;
	struct conf		 c;
	char			 err[8192];
	int			 rc;

	if ((rc = cmd_parse(argc, argv, "denokv-fcgi [--sqlite-path PATH |"
	    " --listen ADDR] status", 0, &c, &w)) != 0)
		return CMD_STATUS(rc);
	rc = ask(&c, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "denokv-fcgi: status: %s (is the service"
		    " running? give --listen with its socket)\n", err);
	conf_fini(&c);
	return rc == 0 ? 0 : 1;
}
