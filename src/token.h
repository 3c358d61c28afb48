/*
 * token: the access tokens of a database declared in the configuration
 * file (docs/shared-hosting.md). Each token is kept only as the SHA-256
 * digest of its text, with a scope and an optional expiry. A request's
 * bearer token is hashed once (http_bearer_digest) and then compared with
 * every token of the routed database here.
 *
 * Nothing in this file logs, and no error text it writes contains a
 * token or its hash.
 */
#ifndef DENOKV_TOKEN_H
#define DENOKV_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sha256.h"

enum token_scope {
	TOKEN_SCOPE_READ_WRITE,
	TOKEN_SCOPE_READ_ONLY,
};

struct conf_token {
	uint8_t		 digest[SHA256_DIGEST_LEN];	/* of the token's text */
	enum token_scope scope;
	int64_t		 expires_ms;	/* Unix time in ms; 0: never */
};

/* What a bearer token may do on one database. */
enum token_verdict {
	TOKEN_NONE,		/* not one of its tokens: 401 */
	TOKEN_EXPIRED,		/* one of its tokens, past its expiry: 401 */
	TOKEN_READ_ONLY,	/* metadata exchange, snapshot_read, watch */
	TOKEN_READ_WRITE,	/* everything */
};

/*
 * The verdict for the bearer token whose digest is given, against the n
 * tokens of a database at time now_ms (Unix ms: the wall clock, as
 * kv_now_ms() reads it, since expiry times are dates). Every token is compared,
 * in the same time whatever matches, so timing shows neither which token
 * matched nor whether one did. Should two tokens have the same digest,
 * the one that allows most wins (a live one over an expired one).
 */
enum token_verdict token_authorize(const struct conf_token *tokens, size_t n,
		    const uint8_t bearer_digest[SHA256_DIGEST_LEN],
		    int64_t now_ms);

/*
 * The answer for a verdict on a request that writes (atomic_write, queue
 * lease, finish, renew) or only reads: KV_OK, KV_ERR_AUTH_INVALID (no
 * such token), KV_ERR_TOKEN_EXPIRED or KV_ERR_TOKEN_READ_ONLY.
 */
enum kv_err	 token_verdict_err(enum token_verdict, int writes);

/*
 * Parses the value of a "token =" line: "SCOPE SECRET [expires=TIME]",
 * blank-separated. SCOPE is read-write or read-only; SECRET is the token
 * itself (at least KV_MIN_TOKEN_CHARS characters) or "sha256:" and the
 * 64 hex digits of its digest; TIME is RFC 3339 (token_parse_time).
 * 0 and *out, or -1 with a one-line reason in err (never the secret).
 */
int		 token_parse_spec(const char *value, struct conf_token *out,
		    char *err, size_t errlen);

/*
 * An RFC 3339 date-time ("2027-06-30T00:00:00Z", also with a fraction of
 * a second or a numeric offset such as +02:00) as Unix time in ms: 0 and
 * *ms, or -1 if it is not one or is not after 1970-01-01T00:00:00Z.
 */
int		 token_parse_time(const char *s, int64_t *ms);

/*
 * A new token: TOKEN_NEW_BYTES random bytes from getrandom(2) written as
 * unpadded base64url (TOKEN_NEW_CHARS characters and a NUL into out).
 * 0, or -1 with errno set.
 */
#define TOKEN_NEW_BYTES	32
#define TOKEN_NEW_CHARS	43
int		 token_new(char out[TOKEN_NEW_CHARS + 1]);

#endif
