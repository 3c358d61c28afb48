/*
 * test_token.c: scoped access tokens (src/token.c): the verdict of
 * token_authorize over one and several tokens (scopes, expiry, a token
 * written as itself or as its hash), the "token =" line and each way it
 * can be wrong, RFC 3339 times at their edges, fresh tokens, and
 * "denokv-fcgi token new" through the real binary: its output parses
 * back to the token it printed.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "sha256.h"
#include "testhelp.h"
#include "token.h"

#define T0	1814313600000LL		/* 2027-06-30T00:00:00Z */

static struct conf_token
tok(const char *spec)
{
	struct conf_token	 t;
	char			 err[256];

	if (token_parse_spec(spec, &t, err, sizeof(err)) != 0)
		T_BAIL("token_parse_spec(%s): %s", spec, err);
	return t;
}

static enum token_verdict
verdict(const struct conf_token *ts, size_t n, const char *bearer,
    int64_t now)
{
	uint8_t	 d[SHA256_DIGEST_LEN];

	sha256(bearer, strlen(bearer), d);
	return token_authorize(ts, n, d, now);
}

static void
test_authorize(void)
{
	struct conf_token	 one[1], many[4], dup[2];

	one[0] = tok("read-write secretsecret12");
	T_EQ(verdict(one, 1, "secretsecret12", T0), TOKEN_READ_WRITE,
	    "its token: read-write");
	T_EQ(verdict(one, 1, "secretsecret13", T0), TOKEN_NONE,
	    "another token: none");
	T_EQ(verdict(one, 1, "", T0), TOKEN_NONE, "an empty token: none");
	T_EQ(verdict(one, 0, "secretsecret12", T0), TOKEN_NONE,
	    "no tokens at all: none");

	one[0] = tok("read-only secretsecret12");
	T_EQ(verdict(one, 1, "secretsecret12", T0), TOKEN_READ_ONLY,
	    "a read-only token: read-only");

	one[0] = tok("read-write secretsecret12 expires=2027-06-30T00:00:00Z");
	T_EQ(verdict(one, 1, "secretsecret12", T0 - 1), TOKEN_READ_WRITE,
	    "1 ms before its expiry: still valid");
	T_EQ(verdict(one, 1, "secretsecret12", T0), TOKEN_EXPIRED,
	    "at its expiry: expired");
	T_EQ(verdict(one, 1, "secretsecret13", T0 + 1), TOKEN_NONE,
	    "another token past that expiry: none, not expired");

	/* The plain and the hashed form are the same token. */
	one[0] = tok("read-only sha256:3fdea5289f5e3affc59b712ac71abd5f1b2c"
	    "0716b3e82cb071449bc4ed29b402");
	T_EQ(verdict(one, 1, "secretsecret12", T0), TOKEN_READ_ONLY,
	    "the sha256: form matches the token it hashes");
	one[0] = tok("read-only sha256:3FDEA5289F5E3AFFC59B712AC71ABD5F1B2C"
	    "0716B3E82CB071449BC4ED29B402");
	T_EQ(verdict(one, 1, "secretsecret12", T0), TOKEN_READ_ONLY,
	    "upper-case hex too");

	many[0] = tok("read-only first-token-0001");
	many[1] = tok("read-write second-token-002");
	many[2] = tok("read-only third-token-0003 expires=2027-01-01T00:00:00Z");
	many[3] = tok("read-write fourth-token-04");
	T_EQ(verdict(many, 4, "first-token-0001", T0), TOKEN_READ_ONLY,
	    "several: the first, read-only");
	T_EQ(verdict(many, 4, "second-token-002", T0), TOKEN_READ_WRITE,
	    "several: the second, read-write");
	T_EQ(verdict(many, 4, "third-token-0003", T0), TOKEN_EXPIRED,
	    "several: the third, expired");
	T_EQ(verdict(many, 4, "fourth-token-04", T0), TOKEN_READ_WRITE,
	    "several: the last");
	T_EQ(verdict(many, 4, "fifth-token-005", T0), TOKEN_NONE,
	    "several: none of them");

	/* One secret listed twice: what allows most wins, in any order. */
	dup[0] = tok("read-write same-secret-00");
	dup[1] = tok("read-only same-secret-00");
	T_EQ(verdict(dup, 2, "same-secret-00", T0), TOKEN_READ_WRITE,
	    "read-write and read-only: read-write");
	dup[0] = tok("read-only same-secret-00");
	dup[1] = tok("read-write same-secret-00 expires=2027-01-01T00:00:00Z");
	T_EQ(verdict(dup, 2, "same-secret-00", T0), TOKEN_READ_ONLY,
	    "live read-only and expired read-write: read-only");
}

static void
test_verdict_err(void)
{
	T_EQ(token_verdict_err(TOKEN_READ_WRITE, 1), KV_OK, "rw writes");
	T_EQ(token_verdict_err(TOKEN_READ_WRITE, 0), KV_OK, "rw reads");
	T_EQ(token_verdict_err(TOKEN_READ_ONLY, 0), KV_OK, "ro reads");
	T_EQ(token_verdict_err(TOKEN_READ_ONLY, 1), KV_ERR_TOKEN_READ_ONLY,
	    "ro writes: 403");
	T_EQ(kv_err_status(KV_ERR_TOKEN_READ_ONLY), 403, "read-only is 403");
	T_OK(strstr(kv_err_message(KV_ERR_TOKEN_READ_ONLY),
	    "this token is read-only") != NULL, "with the issue's words");
	T_EQ(token_verdict_err(TOKEN_EXPIRED, 0), KV_ERR_TOKEN_EXPIRED,
	    "expired reads: refused");
	T_EQ(kv_err_status(KV_ERR_TOKEN_EXPIRED), 401, "expired is 401");
	T_EQ(token_verdict_err(TOKEN_NONE, 0), KV_ERR_AUTH_INVALID,
	    "none: invalid token");
	T_EQ(kv_err_status(KV_ERR_SIZE_LIMIT), 507, "size limit is 507");
	T_OK(strstr(kv_err_message(KV_ERR_SIZE_LIMIT),
	    "database size limit reached") != NULL, "with the issue's words");
	T_EQ(kv_err_status(KV_ERR_WATCH_LIMIT), 429, "watch limit is 429");
	T_EQ(kv_err_status(KV_ERR_NO_MOUNT), 404, "no mount is 404");
}

/* A bad line: refused, with a reason that never shows the secret. */
static void
bad_spec(const char *spec, const char *want, const char *secret)
{
	struct conf_token	 t;
	char			 err[256] = "";
	int			 rc = token_parse_spec(spec, &t, err, sizeof(err));

	T_OK(rc == -1 && strstr(err, want) != NULL &&
	    (secret == NULL || strstr(err, secret) == NULL),
	    "token = %s: refused with \"%s\"", spec, want);
	if (rc != -1 || strstr(err, want) == NULL)
		printf("#   got rc %d, \"%s\"\n", rc, err);
}

static void
test_parse_spec(void)
{
	struct conf_token	 t;
	char			 err[256];
	uint8_t			 d[SHA256_DIGEST_LEN];

	T_EQ(token_parse_spec("read-write 123456789012", &t, err,
	    sizeof(err)), 0, "a 12-character token");
	T_EQ(t.expires_ms, 0, "without expires=: never expires");
	T_EQ(t.scope, TOKEN_SCOPE_READ_WRITE, "read-write");
	T_EQ(token_parse_spec("\tread-only \t abcdefghijkl\t "
	    "expires=2027-06-30T00:00:00Z ", &t, err, sizeof(err)), 0,
	    "tabs and runs of blanks separate words");
	sha256("abcdefghijkl", 12, d);
	T_OK(memcmp(t.digest, d, sizeof(d)) == 0, "the digest of the token");
	T_EQ(t.scope, TOKEN_SCOPE_READ_ONLY, "read-only");
	T_EQ(t.expires_ms, T0, "expires= in ms");

	bad_spec("", "empty token line", NULL);
	bad_spec("admin secretsecret12", "unknown scope", "secretsecret12");
	bad_spec("Read-Write secretsecret12", "unknown scope", NULL);
	bad_spec("secretsecret12", "unknown scope", "secretsecret12");
	bad_spec("read-write", "the token is missing", NULL);
	bad_spec("read-write 12345678901", "too short", "12345678901");
	bad_spec("read-write sha256:", "exactly 64 hex digits", NULL);
	bad_spec("read-write sha256:3fdea5289f5e3affc59b712ac71abd5f1b2c0716"
	    "b3e82cb071449bc4ed29b40", "exactly 64 hex digits", NULL);
	bad_spec("read-write sha256:3fdea5289f5e3affc59b712ac71abd5f1b2c0716"
	    "b3e82cb071449bc4ed29b4022", "exactly 64 hex digits", NULL);
	bad_spec("read-write sha256:3fdea5289f5e3affc59b712ac71abd5f1b2c0716"
	    "b3e82cb071449bc4ed29b40g", "hex digits only", NULL);
	bad_spec("read-write mysecrettoken12 more words",
	    "cannot contain blanks", "mysecrettoken12");
	bad_spec("read-write secretsecret12 expires=2027-06-30",
	    "not an RFC 3339 time", "secretsecret12");
	bad_spec("read-write secretsecret12 expires=", "not an RFC 3339 time",
	    NULL);
	bad_spec("read-write secretsecret12 expires=2027-06-30T00:00:00Z x",
	    "unexpected text after expires=", NULL);
}

static void
time_is(const char *s, int64_t want)
{
	int64_t	 ms = -1;
	int	 rc = token_parse_time(s, &ms);

	T_OK(rc == 0 && ms == want, "%s is %lld", s, (long long)want);
	if (rc != 0 || ms != want)
		printf("#   got rc %d, %lld\n", rc, (long long)ms);
}

static void
time_bad(const char *s)
{
	int64_t	 ms = 0;

	T_EQ(token_parse_time(s, &ms), -1, "%s is refused", s);
}

static void
test_rfc3339(void)
{
	time_is("2027-06-30T00:00:00Z", T0);
	time_is("2027-06-30t00:00:00z", T0);
	time_is("2027-06-30T00:00:00.5Z", T0 + 500);
	time_is("2027-06-30T00:00:00.123456789Z", T0 + 123);
	time_is("2027-06-30T00:00:00+00:00", T0);
	time_is("2027-06-30T00:00:00-00:00", T0);
	time_is("2027-06-30T00:00:00+02:00", 1814306400000LL);
	time_is("2027-06-30T00:00:00-05:30", 1814333400000LL);
	time_is("2028-02-29T12:34:56Z", 1835440496000LL);
	time_is("2000-02-29T00:00:00Z", 951782400000LL);
	time_is("2027-06-29T23:59:60Z", T0);	/* a leap second */
	time_is("1970-01-01T00:00:00.001Z", 1);
	time_bad("2027-02-29T00:00:00Z");	/* not a leap year */
	time_bad("2100-02-29T00:00:00Z");	/* a century, not /400 */
	time_bad("2027-13-01T00:00:00Z");
	time_bad("2027-00-01T00:00:00Z");
	time_bad("2027-04-31T00:00:00Z");
	time_bad("2027-06-00T00:00:00Z");
	time_bad("2027-06-30T24:00:00Z");
	time_bad("2027-06-30T23:60:00Z");
	time_bad("2027-06-30T23:59:61Z");
	time_bad("2027-06-30T00:00:00");	/* no offset */
	time_bad("2027-06-30");
	time_bad("2027-06-30 00:00:00Z");
	time_bad("2027-6-30T00:00:00Z");
	time_bad("2027-06-30T00:00:00.Z");
	time_bad("2027-06-30T00:00:00Zx");
	time_bad("2027-06-30T00:00:00+2:00");
	time_bad("2027-06-30T00:00:00+02:00x");
	time_bad("2027-06-30T00:00:00+24:00");
	time_bad("1970-01-01T00:00:00Z");	/* 0 would mean "never" */
	time_bad("1969-12-31T23:59:59Z");
	time_bad("");
}

static int
is_b64url(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static void
test_token_new(void)
{
	char			 a[TOKEN_NEW_CHARS + 1], b[TOKEN_NEW_CHARS + 1];
	char			 spec[128];
	struct conf_token	 t;

	T_EQ(token_new(a), 0, "token_new");
	T_EQ(token_new(b), 0, "token_new again");
	T_EQ(strlen(a), TOKEN_NEW_CHARS, "43 characters: 32 bytes, no padding");
	T_OK(is_b64url(a) && is_b64url(b), "base64url only");
	T_OK(strcmp(a, b) != 0, "two tokens differ");
	snprintf(spec, sizeof(spec), "read-write %s", a);
	t = tok(spec);
	T_EQ(verdict(&t, 1, a, T0), TOKEN_READ_WRITE,
	    "a new token is accepted as a token line");
}

static void
test_bearer_digest(void)
{
	uint8_t	 d[SHA256_DIGEST_LEN], want[SHA256_DIGEST_LEN];

	sha256("secretsecret12", 14, want);
	T_EQ(http_bearer_digest("Bearer secretsecret12", d), KV_OK,
	    "a bearer header");
	T_OK(memcmp(d, want, sizeof(d)) == 0, "its digest is the token's");
	T_EQ(http_bearer_digest("bearer secretsecret12", d), KV_OK,
	    "the scheme in any case");
	T_EQ(http_bearer_digest(NULL, d), KV_ERR_AUTH_MALFORMED, "no header");
	T_EQ(http_bearer_digest("Bearer", d), KV_ERR_AUTH_MALFORMED,
	    "no blank");
	T_EQ(http_bearer_digest("Basic secretsecret12", d),
	    KV_ERR_AUTH_INVALID, "another scheme");
}

/* The real binary's output: line 1 the token, line 2 its config line. */
static void
test_binary(const char *argv0)
{
	const char		*bin = getenv("DENOKV_FCGI_BIN");
	char			 path[4096], here[4096], cmd[4400];
	char			 line1[256], line2[256], *nl;
	struct conf_token	 t;
	uint8_t			 d[SHA256_DIGEST_LEN];
	char			 err[256] = "";
	FILE			*p;

	if (bin == NULL) {
		/* Run by hand: the binary beside tests/unit in the build. */
		snprintf(here, sizeof(here), "%s", argv0);
		if ((size_t)snprintf(path, sizeof(path), "%.4000s/../../src/"
		    "denokv-fcgi", dirname(here)) >= sizeof(path))
			T_BAIL("path too long");
		bin = path;
	}
	snprintf(cmd, sizeof(cmd), "'%s' token new --read-only --expires"
	    " 2027-06-30T00:00:00Z 2>/dev/null", bin);
	if ((p = popen(cmd, "r")) == NULL)
		T_BAIL("popen %s", cmd);
	if (fgets(line1, sizeof(line1), p) == NULL ||
	    fgets(line2, sizeof(line2), p) == NULL)
		T_BAIL("%s printed less than two lines", cmd);
	T_EQ(pclose(p), 0, "token new exits 0");
	if ((nl = strchr(line1, '\n')) != NULL)
		*nl = '\0';
	if ((nl = strchr(line2, '\n')) != NULL)
		*nl = '\0';
	T_OK(strlen(line1) == TOKEN_NEW_CHARS && is_b64url(line1),
	    "line 1 is a base64url token");
	T_OK(strncmp(line2, "token = ", 8) == 0, "line 2 is a token = line");
	T_OK(strstr(line2, line1) == NULL, "which does not hold the token");
	T_EQ(token_parse_spec(line2 + 8, &t, err, sizeof(err)), 0,
	    "and parses back: %s", err);
	sha256(line1, strlen(line1), d);
	T_OK(memcmp(t.digest, d, sizeof(d)) == 0, "to the token's digest");
	T_EQ(t.scope, TOKEN_SCOPE_READ_ONLY, "--read-only");
	T_EQ(t.expires_ms, T0, "--expires");

	snprintf(cmd, sizeof(cmd), "'%s' token new --expires 2027-02-29T00:00:00Z"
	    " >/dev/null 2>&1", bin);
	T_EQ(WEXITSTATUS(system(cmd)), 2, "a bad --expires is a usage error");
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_authorize();
	test_verdict_err();
	test_parse_spec();
	test_rfc3339();
	test_token_new();
	test_bearer_digest();
	test_binary(argv[0]);
	return t_done();
}
