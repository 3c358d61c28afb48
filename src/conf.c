/*
 * conf.c: command line and environment (see conf.h). Options are a table
 * of name, argument and setter, so --help, parsing and validation share one
 * list.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "kv_limits.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

typedef int (*conf_setter)(struct conf *, const char *arg, char *errbuf,
    size_t errlen);

struct conf_option {
	const char	*name;
	const char	*arg;		/* NULL: a flag */
	conf_setter	 set;
	const char	*help;
};

static int
set_sqlite_path(struct conf *c, const char *arg, char *e, size_t n)
{
	(void)e;
	(void)n;
	c->sqlite_path = arg;
	return 0;
}

static int
set_access_token(struct conf *c, const char *arg, char *e, size_t n)
{
	(void)e;
	(void)n;
	c->access_token = arg;
	return 0;
}

static int
set_listen(struct conf *c, const char *arg, char *e, size_t n)
{
	(void)e;
	(void)n;
	c->listen = arg;
	return 0;
}

static int
set_read_only(struct conf *c, const char *arg, char *e, size_t n)
{
	(void)arg;
	(void)e;
	(void)n;
	c->read_only = 1;
	return 0;
}

static int
set_socket_mode(struct conf *c, const char *arg, char *e, size_t n)
{
	char		*end;
	unsigned long	 mode;

	errno = 0;
	mode = strtoul(arg, &end, 8);
	if (errno != 0 || *arg == '\0' || *end != '\0' || mode > 0777) {
		snprintf(e, n, "--socket-mode: \"%s\" is not an octal file"
		    " mode like 0660", arg);
		return -1;
	}
	c->socket_mode = (mode_t)mode;
	return 0;
}

static int
set_sync(struct conf *c, const char *arg, char *e, size_t n)
{
	if (strcasecmp(arg, "full") == 0)
		c->sync = KV_SYNC_FULL;
	else if (strcasecmp(arg, "normal") == 0)
		c->sync = KV_SYNC_NORMAL;
	else if (strcasecmp(arg, "off") == 0)
		c->sync = KV_SYNC_OFF;
	else {
		snprintf(e, n, "--sqlite-synchronous: \"%s\" is not one of"
		    " full, normal, off", arg);
		return -1;
	}
	return 0;
}

static int
set_log_level(struct conf *c, const char *arg, char *e, size_t n)
{
	if (log_parse_level(arg, &c->log_level) != 0) {
		snprintf(e, n, "--log-level: \"%s\" is not one of error,"
		    " warning, notice, info, debug", arg);
		return -1;
	}
	return 0;
}

static const struct conf_option conf_options[] = {
	{ "--sqlite-path", "PATH", set_sqlite_path,
	  "the SQLite database file (env DENO_KV_SQLITE_PATH)" },
	{ "--access-token", "TOKEN", set_access_token,
	  "the token clients must present, at least 12 characters"
	  " (env DENO_KV_ACCESS_TOKEN)" },
	{ "--listen", "ADDR", set_listen,
	  "unix:/path/to.sock or HOST:PORT; default: the socket systemd"
	  " passes, else unix:<sqlite-path>.sock" },
	{ "--addr", "ADDR", set_listen, "same as --listen (denokv's name)" },
	{ "--socket-mode", "MODE", set_socket_mode,
	  "file mode of a unix socket this server creates (default 0660)" },
	{ "--read-only", NULL, set_read_only,
	  "serve reads only; writes are refused" },
	{ "--sqlite-synchronous", "MODE", set_sync,
	  "full (default: acknowledged writes are on disk), normal, off" },
	{ "--log-level", "LEVEL", set_log_level,
	  "error, warning, notice, info (default), debug" },
};
#define N_OPTIONS	(sizeof(conf_options) / sizeof(conf_options[0]))

static void
usage(FILE *f)
{
	fprintf(f, "usage: denokv-fcgi [--sqlite-path PATH] serve"
	    " [--access-token TOKEN] [options]\n\n"
	    "Serves a Deno KV database (the KV Connect protocol) over"
	    " FastCGI.\n\noptions:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		char	 flag[64];

		snprintf(flag, sizeof(flag), "%s%s%s", conf_options[i].name,
		    conf_options[i].arg ? " " : "",
		    conf_options[i].arg ? conf_options[i].arg : "");
		fprintf(f, "  %-26s %s\n", flag, conf_options[i].help);
	}
	fprintf(f, "  %-26s %s\n  %-26s %s\n", "--help", "show this help",
	    "--version", "show the version");
}

static const struct conf_option *
find_option(const char *name, size_t namelen)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strlen(conf_options[i].name) == namelen &&
		    strncmp(conf_options[i].name, name, namelen) == 0)
			return &conf_options[i];
	return NULL;
}

static void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	c->sync = KV_SYNC_FULL;
	c->log_level = LOG_LVL_INFO;
	c->sqlite_path = getenv("DENO_KV_SQLITE_PATH");
	c->access_token = getenv("DENO_KV_ACCESS_TOKEN");
}

static enum conf_result
conf_validate(const struct conf *c, int saw_serve, char *errbuf,
    size_t errlen)
{
	if (!saw_serve) {
		snprintf(errbuf, errlen, "missing the \"serve\" command"
		    " (see --help)");
		return CONF_ERROR;
	}
	if (c->sqlite_path == NULL || *c->sqlite_path == '\0') {
		snprintf(errbuf, errlen, "no database: give --sqlite-path or"
		    " set DENO_KV_SQLITE_PATH");
		return CONF_ERROR;
	}
	if (c->access_token == NULL || *c->access_token == '\0') {
		snprintf(errbuf, errlen, "no access token: give"
		    " --access-token or set DENO_KV_ACCESS_TOKEN");
		return CONF_ERROR;
	}
	if (strlen(c->access_token) < KV_MIN_TOKEN_CHARS) {
		snprintf(errbuf, errlen, "Access token must be at minimum %d"
		    " chars long.", KV_MIN_TOKEN_CHARS);
		return CONF_ERROR;
	}
	return CONF_OK;
}

enum conf_result
conf_parse(int argc, char **argv, struct conf *c, char *errbuf, size_t errlen)
{
	const struct conf_option *o;
	const char		*arg, *eq;
	int			 saw_serve = 0;

	conf_defaults(c);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return CONF_EXIT;
		}
		if (strcmp(argv[i], "--version") == 0 ||
		    strcmp(argv[i], "-V") == 0) {
			printf("denokv-fcgi %s\n", PACKAGE_VERSION);
			return CONF_EXIT;
		}
		if (strcmp(argv[i], "serve") == 0) {
			saw_serve = 1;
			continue;
		}
		/* --name value and --name=value */
		eq = strchr(argv[i], '=');
		o = find_option(argv[i], eq ? (size_t)(eq - argv[i]) :
		    strlen(argv[i]));
		if (o == NULL) {
			snprintf(errbuf, errlen, "unknown argument \"%s\""
			    " (see --help)", argv[i]);
			return CONF_ERROR;
		}
		arg = NULL;
		if (o->arg != NULL) {
			if (eq != NULL)
				arg = eq + 1;
			else if (i + 1 < argc)
				arg = argv[++i];
			else {
				snprintf(errbuf, errlen, "%s needs a value",
				    o->name);
				return CONF_ERROR;
			}
		} else if (eq != NULL) {
			snprintf(errbuf, errlen, "%s takes no value", o->name);
			return CONF_ERROR;
		}
		if (o->set(c, arg, errbuf, errlen) != 0)
			return CONF_ERROR;
	}
	return conf_validate(c, saw_serve, errbuf, errlen);
}
