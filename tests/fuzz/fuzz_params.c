/*
 * fuzz_params.c: libFuzzer target for the FastCGI parameters the server
 * parses: CONTENT_LENGTH, the Authorization header and REQUEST_URI, then
 * the route chosen for that path. The input is the three values separated
 * by NUL bytes (a missing one is an absent parameter). Any crash or
 * sanitizer report is a bug, and so are these: a length accepted that is
 * not the decimal value of the text, or a plain decimal that fits refused;
 * a wrong token accepted, or the right one refused; a path with a
 * query string or longer than the URI, a route whose base is longer than
 * the path or that has no name. Build and run: tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "http.h"
#include "worker.h"

#define TOKEN	"fuzz-token-0123456789"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input at NUL bytes into up to three NUL-terminated values. */
static size_t
split(char *buf, size_t size, const char *part[3])
{
	size_t	 n = 0, start = 0;

	for (size_t i = 0; i <= size && n < 3; i++) {
		if (i == size || buf[i] == '\0') {
			buf[i] = '\0';
			part[n++] = buf + start;
			start = i + 1;
		}
	}
	return n;
}

static void
check_content_length(const char *s)
{
	size_t	 v = 0;
	int	 rc = http_parse_content_length(s, &v);

	if (rc == 1) {
		/* Accepted: only digits, and exactly that number. */
		unsigned long long	 back = 0;

		for (const char *p = s; *p; p++) {
			if (*p < '0' || *p > '9')
				__builtin_trap();
			back = back * 10 + (unsigned long long)(*p - '0');
		}
		if (back != v)
			__builtin_trap();
	} else if (rc == 0 && s != NULL && *s != '\0')
		__builtin_trap();
	else if (rc < 0 && s != NULL && *s != '\0' &&
	    s[strspn(s, "0123456789")] == '\0' &&
	    strlen(s + strspn(s, "0")) < 20)
		/* Refused: but digits worth less than 10^19 always fit. */
		__builtin_trap();
}

static void
check_bearer(const char *h)
{
	uint8_t		 digest[SHA256_DIGEST_LEN];
	enum kv_err	 e;

	sha256(TOKEN, strlen(TOKEN), digest);
	e = http_bearer_matches(h, digest);

	if (e == KV_OK && (h == NULL || strlen(h) != 7 + strlen(TOKEN) ||
	    strcmp(h + 7, TOKEN) != 0))
		__builtin_trap();
	/* And the right token, after any spelling of the scheme, is taken. */
	if (e != KV_OK && h != NULL && strlen(h) == 7 + strlen(TOKEN) &&
	    strncasecmp(h, "bearer ", 7) == 0 && strcmp(h + 7, TOKEN) == 0)
		__builtin_trap();
}

static void
check_path(const char *uri)
{
	struct arena	 a;
	char		*path;
	const char	*name = NULL;
	size_t		 baselen = 0;

	arena_init(&a, 4096);
	if (http_path_of(uri, &a, &path) != KV_OK) {
		/* Refused (or out of memory): nothing to route. */
		arena_fini(&a);
		return;
	}
	if (strpbrk(path, "?#") != NULL ||
	    (uri != NULL && strlen(path) > strlen(uri)))
		__builtin_trap();
	(void)route_path(path, &baselen, &name);
	if (baselen > strlen(path) || name == NULL)
		__builtin_trap();
	arena_fini(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*part[3] = { NULL, NULL, NULL };
	char		*buf;

	if ((buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	split(buf, size, part);
	check_content_length(part[0]);
	check_bearer(part[1]);
	check_path(part[2]);
	/* The same values as absent parameters. */
	check_content_length(NULL);
	check_bearer(NULL);
	check_path(NULL);
	free(buf);
	return 0;
}
