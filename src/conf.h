/*
 * conf: the server's settings, from the command line and the environment.
 *
 * The command line is denokv's, so users can switch:
 *   denokv-fcgi --sqlite-path PATH serve --access-token TOKEN [options]
 * with DENO_KV_SQLITE_PATH and DENO_KV_ACCESS_TOKEN as fallbacks. The
 * command line wins over the environment.
 */
#ifndef DENOKV_CONF_H
#define DENOKV_CONF_H

#include <sys/types.h>

#include "kv.h"
#include "log.h"

struct conf {
	const char	*sqlite_path;
	const char	*access_token;
	const char	*listen;	/* NULL: systemd's socket, else next to the db */
	mode_t		 socket_mode;	/* for a unix socket we create */
	int		 read_only;
	enum kv_sync	 sync;
	enum log_level	 log_level;
};

enum conf_result {
	CONF_OK = 0,
	CONF_EXIT = 1,		/* --help or --version was printed */
	CONF_ERROR = -1,	/* errbuf says why */
};

/* Fills c from argv and the environment; pointers borrow from them. */
enum conf_result conf_parse(int argc, char **argv, struct conf *c,
		    char *errbuf, size_t errlen);

#endif
