/*
 * cmd_args.c: the command line of a verb (see cmd.h). Options and the
 * configuration file are the server's own (conf.c), so
 * "denokv-fcgi --config /etc/denokv-fcgi.conf backup DEST" finds the
 * database the service uses.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "conf.h"

int
cmd_parse(int argc, char **argv, const char *usage, int n_args,
    struct conf *c, struct conf_words *words)
{
	char	 err[1024];

	switch (conf_parse_verb(argc, argv, c, words, err, sizeof(err))) {
	case CONF_OK:
		break;
	case CONF_EXIT:
		return -1;		/* --help or --version: done, exit 0 */
	case CONF_ERROR:
		fprintf(stderr, "denokv-fcgi: %s\nusage: %s\n", err, usage);
		return 2;
	}
	if (c->sqlite_path == NULL && (words->n == 0 ||
	    strcmp(words->w[0], "status") != 0)) {
		fprintf(stderr, "denokv-fcgi: no database: give --sqlite-path,"
		    " set DENO_KV_SQLITE_PATH or sqlite-path in the config"
		    " file\nusage: %s\n", usage);
		conf_fini(c);
		return 2;
	}
	if (words->n != 1 + n_args) {
		fprintf(stderr, "denokv-fcgi: %s %s\nusage: %s\n", words->w[0],
		    words->n < 1 + n_args ? "needs more arguments" :
		    "takes fewer arguments", usage);
		conf_fini(c);
		return 2;
	}
	return 0;
}
