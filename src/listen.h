/*
 * listen: obtains the FastCGI listening socket. In order: the address given
 * with --listen (unix:/path or HOST:PORT), a socket handed over by systemd
 * (LISTEN_FDS), or a unix socket next to the database file.
 */
#ifndef DENOKV_LISTEN_H
#define DENOKV_LISTEN_H

#include <stddef.h>

#include "conf.h"

/*
 * Returns the listening descriptor, or -1 with a one-line reason in errbuf.
 * *desc is set to a printable description of what is being listened on
 * (static storage, valid until the next call).
 */
int	listen_open(const struct conf *, const char **desc, char *errbuf,
	    size_t errlen);

/* The unix socket file the last listen_open() created, or NULL. */
const char	*listen_created_path(void);

#endif
