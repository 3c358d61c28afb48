/*
 * http: the HTTP side of a FastCGI request: parameters, the request body
 * (read with a hard cap and by its deadline), responses (written by
 * theirs), bearer-token authentication and the request path.
 * Uses libfcgi's FCGX_* API only (never fcgi_stdio, which takes over stdio),
 * through fcgi_conn, which puts a deadline on every read and write.
 */
#ifndef DENOKV_HTTP_H
#define DENOKV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "err.h"
#include "fcgi_conn.h"
#include "sha256.h"

/* A FastCGI parameter, or NULL. */
const char	*http_param(struct fcgi_conn *, const char *name);

/*
 * Reads the whole body into the arena. A declared or actual length over
 * cap is KV_ERR_BODY_TOO_LARGE; the rest of the body is then drained (by
 * the arrival deadline) so the proxy can deliver the error instead of
 * failing on a half-read upload. A body that has not arrived by the
 * deadline is KV_ERR_BODY_TIMEOUT.
 */
enum kv_err	 http_read_body(struct fcgi_conn *, size_t cap, struct arena *,
		    uint8_t **body, size_t *len);

/*
 * Sends a complete response within the send limit: 0, or -1 if the proxy
 * went away or did not take it in time. extra_headers: "" or lines ending
 * in \r\n.
 */
int		 http_reply(struct fcgi_conn *, int status, const char *ctype,
		    const char *extra_headers, const void *body, size_t len);

/*
 * Starts a streamed 200 response (no Content-Length; proxies are told not
 * to buffer it) and detaches the connection from libfcgi: its buffers are
 * freed, the socket stays open and is returned with the FastCGI request
 * id, and the connection can accept the next request. The caller then owns
 * the socket and writes FastCGI records to it itself.
 */
int		 http_detach_stream(struct fcgi_conn *, const char *ctype,
		    int *fd, int *request_id);

/* Sends the status and one-line text message of an error code. */
int		 http_reply_error(struct fcgi_conn *, enum kv_err);

/*
 * Checks "Authorization: Bearer <token>" against the SHA-256 digest of the
 * server's token: KV_ERR_AUTH_MALFORMED or KV_ERR_AUTH_INVALID on failure.
 * Digests are compared, so the time taken depends on the length of what
 * the request presents, never on the server's token or its length.
 */
enum kv_err	 http_check_bearer(struct fcgi_conn *,
		    const uint8_t token_digest[SHA256_DIGEST_LEN]);

/*
 * The SHA-256 digest of the bearer token of an Authorization header (NULL
 * when absent), for token_authorize(): KV_OK, KV_ERR_AUTH_MALFORMED (no
 * header, or no blank in it) or KV_ERR_AUTH_INVALID (not "Bearer").
 */
enum kv_err	 http_bearer_digest(const char *header,
		    uint8_t digest[SHA256_DIGEST_LEN]);

/*
 * The request path without its query string, normalised (see
 * http_normalise_path), in the arena; KV_ERR_BAD_PATH if it is refused.
 */
enum kv_err	 http_path(struct fcgi_conn *, struct arena *, char **path);

/*
 * Normalises the first len bytes of a raw request path into out (room for
 * len + 1 bytes): runs of slashes become one. Refused with KV_ERR_BAD_PATH:
 * a path that does not start with '/', a backslash, a control character,
 * a percent-encoded slash or backslash, or a "." or ".." segment (also
 * percent-encoded). So a path accepted here, with anything appended, is
 * always a path on the same origin: clients resolve the endpoint URL the
 * server builds from it against the URL they used.
 */
enum kv_err	 http_normalise_path(const char *raw, size_t len, char *out);

/*
 * The parsing behind http_read_body, http_check_bearer and http_path, as
 * pure functions of the parameter's text (NULL when the parameter is
 * absent), free of libfcgi, for the fuzz target.
 */
/* CONTENT_LENGTH: 1 and *out if present and valid, 0 if absent, -1 if bad. */
int		 http_parse_content_length(const char *, size_t *out);
/* An Authorization header against the token's digest, as http_check_bearer. */
enum kv_err	 http_bearer_matches(const char *header,
		    const uint8_t token_digest[SHA256_DIGEST_LEN]);
/* REQUEST_URI to its normalised path, as http_path. */
enum kv_err	 http_path_of(const char *uri, struct arena *, char **path);

#endif
