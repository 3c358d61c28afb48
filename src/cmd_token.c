/*
 * cmd_token.c: `denokv-fcgi token new [--read-only] [--expires TIME]`:
 * a fresh random token for a [database] section of the configuration
 * file. stdout gets two lines: the token, for the application, and the
 * "token = ..." line holding only its SHA-256, for the file; a hint goes
 * to stderr so that scripts can read stdout as it is. Neither the token
 * nor its hash is written anywhere else.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "conf.h"
#include "kv.h"
#include "sha256.h"
#include "token.h"

static const char usage[] = "denokv-fcgi token new [--read-only]"
    " [--expires TIME]";

static int
usage_error(const char *why, const char *arg)
{
	fprintf(stderr, "denokv-fcgi: %s%s%s\nusage: %s\n", why,
	    arg != NULL ? " " : "", arg != NULL ? arg : "", usage);
	return 2;
}

int
cmd_token_main(int argc, char **argv)
{
	const char	*expires = NULL;
	char		 tok[TOKEN_NEW_CHARS + 1], hex[2 * SHA256_DIGEST_LEN + 1];
	uint8_t		 d[SHA256_DIGEST_LEN];
	int64_t		 ms;
	int		 i, read_only = 0, saw_new = 0;

	/* Server options before the verb (--config FILE) do not matter here. */
	for (i = 1; i < argc && strcmp(argv[i], "token") != 0; i++)
		if (conf_option_takes_value(argv[i]))
			i++;
	for (i++; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			printf("usage: %s\n", usage);
			return 0;
		} else if (strcmp(argv[i], "new") == 0 && !saw_new)
			saw_new = 1;
		else if (strcmp(argv[i], "--read-only") == 0)
			read_only = 1;
		else if (strncmp(argv[i], "--expires=", 10) == 0)
			expires = argv[i] + 10;
		else if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc)
			expires = argv[++i];
		else
			return usage_error("unexpected argument", argv[i]);
	}
	if (!saw_new)
		return usage_error("token needs the word new", NULL);
	if (expires != NULL && token_parse_time(expires, &ms) != 0)
		return usage_error("--expires takes an RFC 3339 time like"
		    " 2027-06-30T00:00:00Z, not", expires);
	if (expires != NULL && ms <= kv_now_ms())
		fprintf(stderr, "denokv-fcgi: note: %s has passed; the token"
		    " is refused from the start\n", expires);
	if (token_new(tok) != 0) {
		perror("denokv-fcgi: getrandom");
		return 1;
	}
	sha256(tok, strlen(tok), d);
	for (i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	printf("%s\ntoken = %s sha256:%s%s%s\n", tok,
	    read_only ? "read-only" : "read-write", hex,
	    expires != NULL ? " expires=" : "", expires != NULL ? expires : "");
	fprintf(stderr, "The first line is the token for the application"
	    " (it is shown only here); paste the second into the database's"
	    " [database NAME] section and reload.\n");
	explicit_bzero(tok, sizeof(tok));
	return fflush(stdout) == 0 ? 0 : 1;
}
