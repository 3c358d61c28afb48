/*
 * http.c: the HTTP side of a FastCGI request (see http.h). What parses a
 * parameter's text is a pure function of that text
 * (http_parse_content_length, http_bearer_matches, http_path_of), so the
 * fuzz target reaches it without a FastCGI connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "log.h"

/* Past this, a refused body is not drained: the connection is dropped. */
#define HTTP_MAX_DRAIN_BYTES	(64 * 1024 * 1024)

const char *
http_param(struct fcgi_conn *c, const char *name)
{
	return FCGX_GetParam(name, c->req.envp);
}

int
http_parse_content_length(const char *s, size_t *out)
{
	char			*end;
	unsigned long long	 v;

	if (s == NULL || *s == '\0')
		return 0;
	/* Digits only: strtoull would also take blanks and a sign first. */
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = (size_t)v;
	return (unsigned long long)*out == v ? 1 : -1;
}

/* A body over the cap: drained (by the deadline) so the 413 reaches the client. */
static enum kv_err
too_large(struct fcgi_conn *c)
{
	(void)fcgi_conn_discard(c, HTTP_MAX_DRAIN_BYTES);
	return KV_ERR_BODY_TOO_LARGE;
}

enum kv_err
http_read_body(struct fcgi_conn *c, size_t cap, struct arena *a,
    uint8_t **body, size_t *len)
{
	size_t		 declared = 0, want, got = 0;
	enum fcgi_io	 io;
	int		 has;

	*body = NULL;
	*len = 0;
	if ((has = http_parse_content_length(http_param(c, "CONTENT_LENGTH"),
	    &declared)) < 0)
		return KV_ERR_BAD_CONTENT_LENGTH;
	if (has && declared > cap)
		return too_large(c);
	/*
	 * Without a Content-Length (a streamed HTTP/2 upload) read up to one
	 * byte past the cap to tell "exactly cap" from "too large".
	 */
	want = has ? declared : cap + 1;
	if ((*body = arena_alloc(a, want + 1)) == NULL)
		return KV_ERR_NOMEM;
	io = fcgi_conn_read(c, *body, want, &got);
	if (io == FCGI_IO_TIMEOUT)
		return KV_ERR_BODY_TIMEOUT;
	if (io == FCGI_IO_ERROR || (has && got != declared))
		return KV_ERR_BODY_READ;
	if (!has && got > cap)
		return too_large(c);
	(*body)[got] = '\0';
	*len = got;
	return KV_OK;
}

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

int
http_reply(struct fcgi_conn *c, int status, const char *ctype,
    const char *extra_headers, const void *body, size_t len)
{
	int64_t	 by = fcgi_conn_send_deadline(c);
	char	 head[512];
	int	 n;

	/* snprintf, not FCGX_FPrintF: libfcgi's formatter lacks %zu. */
	n = snprintf(head, sizeof(head), "Status: %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s\r\n", status, status_text(status), ctype, len,
	    extra_headers);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	if (fcgi_conn_write(c, head, (size_t)n, by) != FCGI_IO_OK ||
	    fcgi_conn_write(c, body, len, by) != FCGI_IO_OK ||
	    fcgi_conn_flush(c, by) != FCGI_IO_OK)
		return -1;
	return 0;
}

int
http_detach_stream(struct fcgi_conn *c, const char *ctype, int *fd,
    int *request_id)
{
	int64_t	 by = fcgi_conn_send_deadline(c);
	char	 head[256];
	int	 n;

	/* X-Accel-Buffering: nginx passes each frame on as it arrives. */
	n = snprintf(head, sizeof(head), "Status: 200 OK\r\n"
	    "Content-Type: %s\r\n"
	    "Cache-Control: no-cache\r\n"
	    "X-Accel-Buffering: no\r\n\r\n", ctype);
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    fcgi_conn_write(c, head, (size_t)n, by) != FCGI_IO_OK ||
	    fcgi_conn_flush(c, by) != FCGI_IO_OK)
		return -1;
	*fd = c->req.ipcFd;
	*request_id = c->req.requestId;
	/* Free libfcgi's streams and params but keep the socket open. */
	FCGX_Free(&c->req, 0);
	c->req.ipcFd = -1;
	return 0;
}

int
http_reply_error(struct fcgi_conn *c, enum kv_err e)
{
	const char	*msg = kv_err_message(e);
	char		 line[512];
	int		 n;

	n = snprintf(line, sizeof(line), "%s\n", msg);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	return http_reply(c, kv_err_status(e), "text/plain; charset=utf-8",
	    e == KV_ERR_METHOD ? "Allow: POST\r\n" : "", line, (size_t)n);
}

enum kv_err
http_check_bearer(struct fcgi_conn *c,
    const uint8_t token_digest[SHA256_DIGEST_LEN])
{
	return http_bearer_matches(http_param(c, "HTTP_AUTHORIZATION"),
	    token_digest);
}

enum kv_err
http_bearer_digest(const char *h, uint8_t digest[SHA256_DIGEST_LEN])
{
	const char	*sp;

	if (h == NULL || (sp = strchr(h, ' ')) == NULL)
		return KV_ERR_AUTH_MALFORMED;
	if ((size_t)(sp - h) != 6 || strncasecmp(h, "bearer", 6) != 0)
		return KV_ERR_AUTH_INVALID;
	sp++;
	sha256(sp, strlen(sp), digest);
	return KV_OK;
}

enum kv_err
http_bearer_matches(const char *h,
    const uint8_t token_digest[SHA256_DIGEST_LEN])
{
	uint8_t		 got[SHA256_DIGEST_LEN];
	enum kv_err	 err;

	if ((err = http_bearer_digest(h, got)) != KV_OK)
		return err;
	if (!sha256_digest_equal(got, token_digest))
		return KV_ERR_AUTH_INVALID;
	return KV_OK;
}

/* 1 if s (n bytes) starts with %XX for the byte ch, in either case. */
static int
is_escape_of(const char *s, size_t n, char ch)
{
	static const char	 hex[] = "0123456789abcdef";

	return n >= 3 && s[0] == '%' &&
	    (s[1] | 0x20) == hex[(unsigned char)ch >> 4] &&
	    (s[2] | 0x20) == hex[(unsigned char)ch & 0xf];
}

/* 1 if the segment (n bytes, no slash) is "." or "..", also as %2e. */
static int
is_dot_segment(const char *s, size_t n)
{
	int	 dots = 0;

	while (n > 0) {
		if (*s == '.') {
			s++;
			n--;
		} else if (is_escape_of(s, n, '.')) {
			s += 3;
			n -= 3;
		} else
			return 0;
		dots++;
	}
	return dots == 1 || dots == 2;
}

enum kv_err
http_normalise_path(const char *raw, size_t len, char *out)
{
	size_t	 i, o = 0, seg;

	if (len == 0 || raw[0] != '/')
		return KV_ERR_BAD_PATH;
	for (i = 0; i < len; i++) {
		unsigned char	 ch = (unsigned char)raw[i];

		if (ch == '\\' || ch < 0x20 || ch == 0x7f ||
		    is_escape_of(raw + i, len - i, '/') ||
		    is_escape_of(raw + i, len - i, '\\'))
			return KV_ERR_BAD_PATH;
		if (ch == '/') {
			/* One slash for a run of them; check the segment ended. */
			seg = o;
			while (seg > 0 && out[seg - 1] != '/')
				seg--;
			if (o > 0 && is_dot_segment(out + seg, o - seg))
				return KV_ERR_BAD_PATH;
			if (o > 0 && out[o - 1] == '/')
				continue;
		}
		out[o++] = (char)ch;
	}
	seg = o;
	while (seg > 0 && out[seg - 1] != '/')
		seg--;
	if (is_dot_segment(out + seg, o - seg))
		return KV_ERR_BAD_PATH;
	out[o] = '\0';
	return KV_OK;
}

enum kv_err
http_path(struct fcgi_conn *c, struct arena *a, char **path)
{
	const char	*uri = http_param(c, "REQUEST_URI");

	/* caddy and nginx both pass REQUEST_URI; DOCUMENT_URI is a fallback. */
	if (uri == NULL)
		uri = http_param(c, "DOCUMENT_URI");
	return http_path_of(uri, a, path);
}

enum kv_err
http_path_of(const char *uri, struct arena *a, char **path)
{
	size_t	 n;

	if (uri == NULL)
		uri = "/";
	n = strcspn(uri, "?#");
	if ((*path = arena_alloc(a, n + 1)) == NULL)
		return KV_ERR_NOMEM;
	return http_normalise_path(uri, n, *path);
}
