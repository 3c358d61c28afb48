/*
 * conf_db: the "[database NAME]" sections of the configuration file, for
 * conf.c only. conf.c reads the file; it hands each section header here
 * as it is read, then each "key = value" of the section, and at the end
 * asks for the checks that need the whole file. Results land in
 * struct conf's databases array (see conf.h), freed by conf_db_free().
 */
#ifndef DENOKV_CONF_DB_H
#define DENOKV_CONF_DB_H

#include <stddef.h>

struct conf;

/* The longest database name: it names files and log lines too. */
#define CONF_DB_MAX_NAME	64

/*
 * A section header: header is the text between the brackets, line its
 * line number. Starts a new database; 0, or -1 with the reason in err
 * (an unknown section, a bad or duplicate name).
 */
int	conf_db_begin(struct conf *c, const char *header, int line, char *err,
	    size_t errlen);

/*
 * A "name = value" line of the current section; 0, or -1 and err. seen:
 * the caller's, zeroed at each section header (which keys came already).
 */
int	conf_db_key(struct conf *c, const char *name, const char *value,
	    unsigned *seen, char *err, size_t errlen);

/*
 * The checks across sections, once the file is read: a path, a mount and
 * a token in each, no two databases on one (host, mount), one file or
 * one id. 0, or -1 with "FILE:LINE: reason" in err.
 */
int	conf_db_validate(const struct conf *c, const char *file, char *err,
	    size_t errlen);

void	conf_db_free(struct conf *c);

#endif
