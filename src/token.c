/*
 * token.c: scoped access tokens (see token.h): the constant-time verdict,
 * the "token =" line of the configuration file, RFC 3339 times and fresh
 * random tokens.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kv_limits.h"
#include "token.h"

/*
 * How much a matching token allows, as a number so that the best of
 * several matches is a max(): NONE < EXPIRED < READ_ONLY < READ_WRITE.
 */
static unsigned
token_rank(const struct conf_token *t, int64_t now_ms)
{
	unsigned	 expired = t->expires_ms != 0 && now_ms >= t->expires_ms;
	unsigned	 live = t->scope == TOKEN_SCOPE_READ_WRITE ?
			    TOKEN_READ_WRITE : TOKEN_READ_ONLY;

	return expired ? TOKEN_EXPIRED : live;
}

enum token_verdict
token_authorize(const struct conf_token *tokens, size_t n,
    const uint8_t bearer_digest[SHA256_DIGEST_LEN], int64_t now_ms)
{
	unsigned	 best = TOKEN_NONE;

	/*
	 * Every token is compared and ranked, and the best kept without a
	 * branch on the comparison: a mask of all ones for a match, zero
	 * otherwise, and a max() done with masks too.
	 */
	for (size_t i = 0; i < n; i++) {
		unsigned	 match = (unsigned)sha256_digest_equal(
				    tokens[i].digest, bearer_digest);
		unsigned	 rank = token_rank(&tokens[i], now_ms) &
				    (0u - match);
		unsigned	 more = 0u - (unsigned)(rank > best);

		best = (rank & more) | (best & ~more);
	}
	return (enum token_verdict)best;
}

enum kv_err
token_verdict_err(enum token_verdict v, int writes)
{
	switch (v) {
	case TOKEN_READ_WRITE:
		return KV_OK;
	case TOKEN_READ_ONLY:
		return writes ? KV_ERR_TOKEN_READ_ONLY : KV_OK;
	case TOKEN_EXPIRED:
		return KV_ERR_TOKEN_EXPIRED;
	case TOKEN_NONE:
		break;
	}
	return KV_ERR_AUTH_INVALID;
}

/* --- RFC 3339 ------------------------------------------------------------- */

/* n decimal digits at s into *v; 0, or -1 if one is not a digit. */
static int
digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

static int
days_in_month(int y, int m)
{
	static const int	 days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
				    31, 30, 31 };
	int			 leap = (y % 4 == 0 && y % 100 != 0) ||
				    y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t	 era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
token_parse_time(const char *s, int64_t *ms)
{
	int		 y, mo, d, h, mi, sec, oh = 0, om = 0, frac = 0;
	int64_t		 t;
	size_t		 i;

	/* YYYY-MM-DDTHH:MM:SS: fixed positions. */
	if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
	    h > 23 || mi > 59 || sec > 60)
		return -1;
	i = 19;
	/* A fraction of a second: milliseconds kept, the rest dropped. */
	if (s[i] == '.') {
		int	 n = 0;

		for (i++; s[i] >= '0' && s[i] <= '9'; i++, n++)
			if (n < 3)
				frac = frac * 10 + (s[i] - '0');
		if (n == 0)
			return -1;
		for (; n < 3; n++)
			frac *= 10;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0')
		;
	else if ((s[i] == '+' || s[i] == '-') && strlen(s + i) == 6 &&
	    digits(s + i + 1, 2, &oh) == 0 && s[i + 3] == ':' &&
	    digits(s + i + 4, 2, &om) == 0 && oh <= 23 && om <= 59) {
		if (s[i] == '-') {
			oh = -oh;
			om = -om;
		}
	} else
		return -1;
	/* A leap second (:60) counts as the first second of the next minute. */
	t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
	t -= (int64_t)oh * 3600 + (int64_t)om * 60;
	t = t * 1000 + frac;
	if (t <= 0)
		return -1;
	*ms = t;
	return 0;
}

/* --- the "token =" line ---------------------------------------------------- */

static int
hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The next blank-separated word of *s: its start, its length in *n. */
static const char *
next_word(const char **s, size_t *n)
{
	const char	*w = *s + strspn(*s, " \t");

	*n = strcspn(w, " \t");
	*s = w + *n;
	return *n > 0 ? w : NULL;
}

static int
word_is(const char *w, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(w, lit, n) == 0;
}

/* SECRET: the token's text, or "sha256:" and its digest in hex. */
static int
parse_secret(const char *w, size_t n, uint8_t digest[SHA256_DIGEST_LEN],
    char *err, size_t errlen)
{
	static const char	 pfx[] = "sha256:";
	const size_t		 plen = sizeof(pfx) - 1;

	if (n >= plen && memcmp(w, pfx, plen) == 0) {
		if (n != plen + 2 * SHA256_DIGEST_LEN) {
			snprintf(err, errlen, "sha256: must be followed by"
			    " exactly %d hex digits", 2 * SHA256_DIGEST_LEN);
			return -1;
		}
		for (size_t i = 0; i < SHA256_DIGEST_LEN; i++) {
			int	 hi = hex_value(w[plen + 2 * i]);
			int	 lo = hex_value(w[plen + 2 * i + 1]);

			if (hi < 0 || lo < 0) {
				snprintf(err, errlen, "sha256: must be"
				    " followed by hex digits only");
				return -1;
			}
			digest[i] = (uint8_t)(hi << 4 | lo);
		}
		return 0;
	}
	if (n < KV_MIN_TOKEN_CHARS) {
		snprintf(err, errlen, "the token is too short: at least %d"
		    " characters (or sha256: and its hash)",
		    KV_MIN_TOKEN_CHARS);
		return -1;
	}
	sha256(w, n, digest);
	return 0;
}

int
token_parse_spec(const char *value, struct conf_token *out, char *err,
    size_t errlen)
{
	static const char	 usage[] = "expected \"read-write|read-only"
				    " SECRET [expires=TIME]\"";
	static const char	 kw[] = "expires=";
	const size_t		 plen = sizeof(kw) - 1;
	const char		*s = value, *w;
	char			 when[64];
	size_t			 n;

	memset(out, 0, sizeof(*out));
	if ((w = next_word(&s, &n)) == NULL) {
		snprintf(err, errlen, "empty token line: %s", usage);
		return -1;
	}
	if (word_is(w, n, "read-write"))
		out->scope = TOKEN_SCOPE_READ_WRITE;
	else if (word_is(w, n, "read-only"))
		out->scope = TOKEN_SCOPE_READ_ONLY;
	else {
		/* Not shown: it may be the secret, its scope left out. */
		snprintf(err, errlen, "unknown scope: %s", usage);
		return -1;
	}
	if ((w = next_word(&s, &n)) == NULL) {
		snprintf(err, errlen, "the token is missing: %s", usage);
		return -1;
	}
	if (parse_secret(w, n, out->digest, err, errlen) != 0)
		return -1;
	if ((w = next_word(&s, &n)) == NULL)
		return 0;
	/* Whatever follows is not shown: it may be a secret with a blank. */
	if (n < plen || memcmp(w, kw, plen) != 0) {
		snprintf(err, errlen, "unexpected text after the token: %s"
		    " (a token cannot contain blanks)", usage);
		return -1;
	}
	w += plen;
	n -= plen;
	if (n < sizeof(when)) {
		memcpy(when, w, n);
		when[n] = '\0';
	}
	if (n >= sizeof(when) || token_parse_time(when, &out->expires_ms) != 0) {
		snprintf(err, errlen, "expires=%.*s is not an RFC 3339 time"
		    " like 2027-06-30T00:00:00Z", n > 40 ? 40 : (int)n, w);
		return -1;
	}
	if (next_word(&s, &n) != NULL) {
		snprintf(err, errlen, "unexpected text after expires=: %s",
		    usage);
		return -1;
	}
	return 0;
}

/* --- new tokens ------------------------------------------------------------- */

int
token_new(char out[TOKEN_NEW_CHARS + 1])
{
	static const char	 b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t			 b[TOKEN_NEW_BYTES + 2] = { 0 };
	size_t			 got = 0, o = 0;
	ssize_t			 r;

	while (got < TOKEN_NEW_BYTES) {
		r = getrandom(b + got, TOKEN_NEW_BYTES - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		got += (size_t)r;
	}
	/* Three bytes to four characters; the last group has two bytes. */
	for (size_t i = 0; i < TOKEN_NEW_BYTES; i += 3) {
		uint32_t	 v = (uint32_t)b[i] << 16 |
				    (uint32_t)b[i + 1] << 8 | b[i + 2];
		size_t		 chars = TOKEN_NEW_BYTES - i >= 3 ? 4 :
				    (TOKEN_NEW_BYTES - i) + 1;

		for (size_t k = 0; k < chars; k++)
			out[o++] = b64url[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
	explicit_bzero(b, sizeof(b));
	return o == TOKEN_NEW_CHARS ? 0 : -1;
}
