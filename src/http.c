/*
 * http.c: FastCGI request plumbing (see http.h).
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
http_param(FCGX_Request *r, const char *name)
{
	return FCGX_GetParam(name, r->envp);
}

static void
drain(FCGX_Request *r)
{
	char	 buf[16384];
	size_t	 total = 0;
	int	 n;

	while (total < HTTP_MAX_DRAIN_BYTES &&
	    (n = FCGX_GetStr(buf, sizeof(buf), r->in)) > 0)
		total += (size_t)n;
}

/* Parses CONTENT_LENGTH: 1 if present and valid, 0 if absent, -1 if bad. */
static int
content_length(FCGX_Request *r, size_t *out)
{
	const char		*s = http_param(r, "CONTENT_LENGTH");
	char			*end;
	unsigned long long	 v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || *s == '-' || *s == '+')
		return -1;
	*out = (size_t)v;
	return (unsigned long long)*out == v ? 1 : -1;
}

enum kv_err
http_read_body(FCGX_Request *r, size_t cap, struct arena *a, uint8_t **body,
    size_t *len)
{
	size_t	 declared = 0, want, got = 0;
	int	 has, n;

	*body = NULL;
	*len = 0;
	if ((has = content_length(r, &declared)) < 0)
		return KV_ERR_BAD_CONTENT_LENGTH;
	if (has && declared > cap) {
		drain(r);
		return KV_ERR_BODY_TOO_LARGE;
	}
	/*
	 * Without a Content-Length (a streamed HTTP/2 upload) read up to one
	 * byte past the cap to tell "exactly cap" from "too large".
	 */
	want = has ? declared : cap + 1;
	if ((*body = arena_alloc(a, want + 1)) == NULL)
		return KV_ERR_NOMEM;
	while (got < want) {
		size_t chunk = want - got > (1 << 30) ? (1 << 30) : want - got;

		n = FCGX_GetStr((char *)*body + got, (int)chunk, r->in);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (has && got != declared)
		return KV_ERR_BODY_READ;
	if (!has && got > cap) {
		drain(r);
		return KV_ERR_BODY_TOO_LARGE;
	}
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
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

int
http_reply(FCGX_Request *r, int status, const char *ctype,
    const char *extra_headers, const void *body, size_t len)
{
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
	if (FCGX_PutStr(head, n, r->out) != n)
		return -1;
	if (len > 0 && FCGX_PutStr(body, (int)len, r->out) != (int)len)
		return -1;
	return 0;
}

int
http_detach_stream(FCGX_Request *r, const char *ctype, int *fd,
    int *request_id)
{
	char	 head[256];
	int	 n;

	/* X-Accel-Buffering: nginx passes each frame on as it arrives. */
	n = snprintf(head, sizeof(head), "Status: 200 OK\r\n"
	    "Content-Type: %s\r\n"
	    "Cache-Control: no-cache\r\n"
	    "X-Accel-Buffering: no\r\n\r\n", ctype);
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    FCGX_PutStr(head, n, r->out) != n || FCGX_FFlush(r->out) != 0)
		return -1;
	*fd = r->ipcFd;
	*request_id = r->requestId;
	/* Free libfcgi's streams and params but keep the socket open. */
	FCGX_Free(r, 0);
	r->ipcFd = -1;
	return 0;
}

int
http_reply_error(FCGX_Request *r, enum kv_err e)
{
	const char	*msg = kv_err_message(e);
	char		 line[512];
	int		 n;

	n = snprintf(line, sizeof(line), "%s\n", msg);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	return http_reply(r, kv_err_status(e), "text/plain; charset=utf-8",
	    e == KV_ERR_METHOD ? "Allow: POST\r\n" : "", line, (size_t)n);
}

/* Compares without an early exit, so timing does not reveal a prefix. */
static int
ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char	 diff = alen != blen;
	size_t		 n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return diff == 0;
}

enum kv_err
http_check_bearer(FCGX_Request *r, const char *token)
{
	const char	*h = http_param(r, "HTTP_AUTHORIZATION");
	const char	*sp;

	if (h == NULL || (sp = strchr(h, ' ')) == NULL)
		return KV_ERR_AUTH_MALFORMED;
	if ((size_t)(sp - h) != 6 || strncasecmp(h, "bearer", 6) != 0)
		return KV_ERR_AUTH_INVALID;
	sp++;
	if (!ct_equal(sp, strlen(sp), token, strlen(token)))
		return KV_ERR_AUTH_INVALID;
	return KV_OK;
}

char *
http_path(FCGX_Request *r, struct arena *a)
{
	const char	*uri = http_param(r, "REQUEST_URI");
	size_t		 n;
	char		*p;

	/* caddy and nginx both pass REQUEST_URI; DOCUMENT_URI is a fallback. */
	if (uri == NULL && (uri = http_param(r, "DOCUMENT_URI")) == NULL)
		uri = "/";
	n = strcspn(uri, "?#");
	if ((p = arena_alloc(a, n + 1)) == NULL)
		return NULL;
	memcpy(p, uri, n);
	p[n] = '\0';
	return p;
}
