/*
 * test_http.c: unit tests of the request front door: SHA-256 against the
 * FIPS 180-4 examples and the padding boundaries, bearer-token checking
 * (including that its time does not depend on the server token's length),
 * and request path normalisation (what the metadata exchange may
 * advertise). Routing itself is in test_codec.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fcgi_conn.h"
#include "http.h"
#include "sha256.h"
#include "testhelp.h"

static void
hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int
digest_is(const void *data, size_t len, const char *want)
{
	uint8_t	 d[SHA256_DIGEST_LEN];
	char	 got[2 * SHA256_DIGEST_LEN + 1];

	sha256(data, len, d);
	hex(d, sizeof(d), got);
	if (strcmp(got, want) != 0) {
		printf("#   got  %s\n#   want %s\n", got, want);
		return 0;
	}
	return 1;
}

static void
test_sha256(void)
{
	static const struct {
		size_t		 len;	/* of 'a's, unless text is set */
		const char	*text;
		const char	*digest;
	} v[] = {
		{ 0, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ 0, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ 0, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		/* Around the 56-byte boundary the length needs a second block. */
		{ 55, NULL, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
		{ 56, NULL, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
		{ 63, NULL, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
		{ 64, NULL, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
		{ 1000000, NULL, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	};
	char	*buf;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (v[i].text != NULL) {
			T_OK(digest_is(v[i].text, strlen(v[i].text),
			    v[i].digest), "sha256(\"%.12s%s\")", v[i].text,
			    strlen(v[i].text) > 12 ? "..." : "");
			continue;
		}
		if ((buf = malloc(v[i].len)) == NULL)
			abort();
		memset(buf, 'a', v[i].len);
		T_OK(digest_is(buf, v[i].len, v[i].digest),
		    "sha256 of %zu times 'a'", v[i].len);
		free(buf);
	}
}

/* A connection whose only state is its FastCGI parameters. */
static void
fake_conn(struct fcgi_conn *c, char **envp)
{
	memset(c, 0, sizeof(*c));
	c->req.envp = envp;
	c->req.ipcFd = -1;
}

static enum kv_err
check(const char *authorization, const uint8_t digest[SHA256_DIGEST_LEN])
{
	struct fcgi_conn	 c;
	char			*env[2] = { NULL, NULL };
	char			*h = NULL;
	enum kv_err		 e;

	if (authorization != NULL) {
		if (asprintf(&h, "HTTP_AUTHORIZATION=%s", authorization) < 0)
			abort();
		env[0] = h;
	}
	fake_conn(&c, env);
	e = http_check_bearer(&c, digest);
	free(h);
	return e;
}

static double
seconds(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_bearer(void)
{
	const char	*token = "unit-test-token-0123456789";
	uint8_t		 d[SHA256_DIGEST_LEN], small[SHA256_DIGEST_LEN];
	uint8_t		 big[SHA256_DIGEST_LEN];
	char		*huge, *header;
	double		 t, best_small = 1e9, best_big = 1e9;
	size_t		 hugelen = 1 << 20;

	sha256(token, strlen(token), d);
	T_EQ(check("Bearer unit-test-token-0123456789", d), KV_OK,
	    "the right token is accepted");
	T_EQ(check("bearer unit-test-token-0123456789", d), KV_OK,
	    "the scheme is case-insensitive");
	T_EQ(check("Bearer unit-test-token-012345678", d), KV_ERR_AUTH_INVALID,
	    "a prefix of the token is refused");
	T_EQ(check("Bearer unit-test-token-0123456789x", d),
	    KV_ERR_AUTH_INVALID, "the token plus a byte is refused");
	T_EQ(check("Bearer ", d), KV_ERR_AUTH_INVALID,
	    "an empty token is refused");
	T_EQ(check("Basic unit-test-token-0123456789", d), KV_ERR_AUTH_INVALID,
	    "another scheme is refused");
	T_EQ(check("Bearer", d), KV_ERR_AUTH_MALFORMED,
	    "no space after the scheme is malformed");
	T_EQ(check(NULL, d), KV_ERR_AUTH_MALFORMED,
	    "no Authorization is malformed");

	/*
	 * The time to check a 1 MiB presented token must not depend on the
	 * server token's length: a 16-byte and a 1 MiB server token take the
	 * same time (compared on the best of interleaved runs, with a wide
	 * margin; a comparison that stopped at the shorter length took
	 * tens of times longer for the long one).
	 */
	huge = malloc(hugelen + 1);
	header = malloc(hugelen + 8);
	if (huge == NULL || header == NULL)
		abort();
	memset(huge, 'x', hugelen);
	huge[hugelen] = '\0';
	sha256(huge, 16, small);
	huge[hugelen - 1] = 'y';	/* differs from the presented one at the end */
	sha256(huge, hugelen, big);
	huge[hugelen - 1] = 'x';
	snprintf(header, hugelen + 8, "Bearer %s", huge);
	for (int i = 0; i < 7; i++) {
		t = seconds();
		(void)check(header, small);
		t = seconds() - t;
		best_small = t < best_small ? t : best_small;
		t = seconds();
		(void)check(header, big);
		t = seconds() - t;
		best_big = t < best_big ? t : best_big;
	}
	T_OK(best_big < 3 * best_small && best_small < 3 * best_big,
	    "checking a 1 MiB token takes as long against a 16-byte as"
	    " against a 1 MiB server token (%.2f ms, %.2f ms)",
	    best_small * 1e3, best_big * 1e3);
	free(huge);
	free(header);
}

static int
normalises_to(const char *raw, const char *want)
{
	char		 out[256];
	enum kv_err	 e = http_normalise_path(raw, strlen(raw), out);

	if (want == NULL) {
		if (e == KV_ERR_BAD_PATH)
			return 1;
		printf("#   %s: accepted as \"%s\", want refused\n", raw,
		    e == KV_OK ? out : kv_err_name(e));
		return 0;
	}
	if (e != KV_OK || strcmp(out, want) != 0) {
		printf("#   %s: %s \"%s\", want \"%s\"\n", raw, kv_err_name(e),
		    e == KV_OK ? out : "", want);
		return 0;
	}
	return 1;
}

static void
test_paths(void)
{
	static const struct {
		const char	*raw;
		const char	*want;	/* NULL: refused */
	} v[] = {
		{ "/", "/" },
		{ "/kv/", "/kv/" },
		{ "/kv/v2/snapshot_read", "/kv/v2/snapshot_read" },
		/* Issue 7, defect 6: "//host/x" would advertise another host. */
		{ "//evil.example/x", "/evil.example/x" },
		{ "///evil.example//x//", "/evil.example/x/" },
		{ "/kv//v2///atomic_write", "/kv/v2/atomic_write" },
		{ "/a/..b/.c/...", "/a/..b/.c/..." },
		{ "/a%20b/%41", "/a%20b/%41" },
		{ "", NULL },
		{ "kv/", NULL },
		{ "http://evil.example/x", NULL },
		{ "/\\evil.example/x", NULL },
		{ "/kv\\x", NULL },
		{ "/%2f%2fevil.example/x", NULL },
		{ "/a%2Fb", NULL },
		{ "/a%5cb", NULL },
		{ "/a/./b", NULL },
		{ "/a/../b", NULL },
		{ "/..", NULL },
		{ "/a/.", NULL },
		{ "/a/..", NULL },
		{ "/a/%2e%2e/b", NULL },
		{ "/a/.%2E/", NULL },
		{ "/a/%2e", NULL },
		{ "/a\x01", NULL },
		{ "/a\x7f", NULL },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char	 shown[64];
		size_t	 o = 0;

		/* Control characters shown as \xNN in the test's name. */
		for (const char *p = v[i].raw; *p && o + 5 < sizeof(shown); p++)
			o += (size_t)snprintf(shown + o, sizeof(shown) - o,
			    (unsigned char)*p < 0x20 || *p == 0x7f ? "\\x%02x" :
			    "%c", (unsigned char)*p);
		shown[o] = '\0';
		T_OK(normalises_to(v[i].raw, v[i].want), "path \"%s\" %s%s%s",
		    shown, v[i].want ? "becomes \"" : "is refused",
		    v[i].want ? v[i].want : "", v[i].want ? "\"" : "");
	}
}

int
main(void)
{
	test_sha256();
	test_bearer();
	test_paths();
	return t_done();
}
