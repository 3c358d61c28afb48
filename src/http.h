/*
 * http: the HTTP side of a FastCGI request: parameters, the request body
 * (read with a hard cap), responses, and bearer-token authentication.
 * Uses libfcgi's FCGX_* API only (never fcgi_stdio, which takes over stdio).
 */
#ifndef DENOKV_HTTP_H
#define DENOKV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <fcgiapp.h>

#include "arena.h"
#include "err.h"

/* A FastCGI parameter, or NULL. */
const char	*http_param(FCGX_Request *, const char *name);

/*
 * Reads the whole body into the arena. A declared or actual length over
 * cap is KV_ERR_BODY_TOO_LARGE; the rest of the body is then drained so the
 * proxy can deliver the error instead of failing on a half-read upload.
 */
enum kv_err	 http_read_body(FCGX_Request *, size_t cap, struct arena *,
		    uint8_t **body, size_t *len);

/* Sends a complete response. extra_headers: "" or lines ending in \r\n. */
int		 http_reply(FCGX_Request *, int status, const char *ctype,
		    const char *extra_headers, const void *body, size_t len);

/*
 * Starts a streamed 200 response (no Content-Length; proxies are told not
 * to buffer it) and detaches the connection from libfcgi: its buffers are
 * freed, the socket stays open and is returned with the FastCGI request
 * id, and the FCGX_Request can accept the next connection. The caller
 * then owns the socket and writes FastCGI records to it itself.
 */
int		 http_detach_stream(FCGX_Request *, const char *ctype, int *fd,
		    int *request_id);

/* Sends the status and one-line text message of an error code. */
int		 http_reply_error(FCGX_Request *, enum kv_err);

/*
 * Checks "Authorization: Bearer <token>" against token in constant time:
 * KV_ERR_AUTH_MALFORMED or KV_ERR_AUTH_INVALID on failure.
 */
enum kv_err	 http_check_bearer(FCGX_Request *, const char *token);

/* The request path without its query string, in the arena. */
char		*http_path(FCGX_Request *, struct arena *);

/*
 * The parsers behind the calls above, on a parameter's text (NULL: the
 * parameter is absent), free of libfcgi.
 */
/* CONTENT_LENGTH: 1 and *out if present and valid, 0 if absent, -1 if bad. */
int		 http_parse_content_length(const char *, size_t *out);
/* An Authorization header against the token, as http_check_bearer. */
enum kv_err	 http_bearer_matches(const char *header, const char *token);
/* REQUEST_URI to its path, as http_path. */
char		*http_path_of(const char *uri, struct arena *);

#endif
