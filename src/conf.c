/*
 * conf.c: settings from the command line, the environment and an INI file
 * (see conf.h). Every setting is one row of conf_options[]: its name, type,
 * bounds and help. --help, the command line, the file and validation all
 * read that one table, so a setting cannot exist in one place only. The
 * file's [database NAME] sections are conf_db.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"
#include "conf_db.h"
#include "kv_limits.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

enum conf_type {
	CT_STRING,	/* char * at offset, owned copy */
	CT_INT,		/* int at offset, within [min, max] */
	CT_FLAG,	/* int at offset set to 1; in a file: true/false */
	CT_MODE,	/* mode_t at offset, octal */
	CT_SYNC,	/* enum kv_sync */
	CT_LEVEL,	/* enum log_level */
	CT_CHECKPOINT,	/* int: 1 for "external", 0 for "internal" */
	CT_MODEL,	/* enum request_model */
};

struct conf_option {
	const char	*name;		/* without the leading "--" */
	const char	*arg;		/* metavariable for --help; NULL: a flag */
	enum conf_type	 type;
	size_t		 offset;
	long		 min, max;
	int		 cli_only;	/* not accepted in the file */
	const char	*help;
};

#define OFF(field)	offsetof(struct conf, field)

static const struct conf_option conf_options[] = {
	{ "config", "FILE", CT_STRING, OFF(config_path), 0, 0, 1,
	  "read settings from this INI file (name = value)" },
	{ "sqlite-path", "PATH", CT_STRING, OFF(sqlite_path), 0, 0, 0,
	  "the SQLite database file (env DENO_KV_SQLITE_PATH)" },
	{ "access-token", "TOKEN", CT_STRING, OFF(access_token), 0, 0, 0,
	  "the token clients present, 12 characters or more"
	  " (env DENO_KV_ACCESS_TOKEN)" },
	{ "listen", "ADDR", CT_STRING, OFF(listen), 0, 0, 0,
	  "unix:/path/to.sock or HOST:PORT; default: the socket systemd"
	  " passes, else unix:<sqlite-path>.sock" },
	{ "addr", "ADDR", CT_STRING, OFF(listen), 0, 0, 0,
	  "same as --listen (denokv's name)" },
	{ "socket-mode", "MODE", CT_MODE, OFF(socket_mode), 0, 0777, 0,
	  "file mode of a unix socket this server creates (default 0660)" },
	{ "socket-user", "USER", CT_STRING, OFF(socket_user), 0, 0, 0,
	  "owner of that socket (started as root)" },
	{ "socket-group", "GROUP", CT_STRING, OFF(socket_group), 0, 0, 0,
	  "group of that socket, e.g. www-data (started as root)" },
	{ "user", "USER", CT_STRING, OFF(user), 0, 0, 0,
	  "started as root: drop to this user before serving" },
	{ "group", "GROUP", CT_STRING, OFF(group), 0, 0, 0,
	  "and to this group (default: the user's primary group)" },
	{ "allow-root", NULL, CT_FLAG, OFF(allow_root), 0, 0, 0,
	  "let workers run as root when no --user is given" },
	{ "workers", "N", CT_INT, OFF(workers), 1, 256, 0,
	  "serving processes (default: one per CPU, at least 2)" },
	{ "shutdown-timeout", "SECONDS", CT_INT, OFF(shutdown_timeout), 0,
	  3600, 0, "on SIGTERM, how long in-flight requests may take"
	  " (default 10)" },
	{ "watch-output-budget", "MIB", CT_INT, OFF(watch_output_mib), 1,
	  65536, 0, "unsent watch output one worker holds for slow clients,"
	  " in MiB; past it the slowest streams are dropped (default 256)" },
	{ "body-timeout", "SECONDS", CT_INT, OFF(body_timeout), 1, 3600, 0,
	  "a request's parameters and body must arrive within this, else"
	  " 408 (default 5)" },
	{ "send-timeout", "SECONDS", CT_INT, OFF(send_timeout), 1, 3600, 0,
	  "writing one response may take this long, else the connection is"
	  " closed (default 30)" },
	{ "keepalive-timeout", "SECONDS", CT_INT, OFF(keepalive_timeout), 0,
	  86400, 0, "a connection kept open for the web server and idle this"
	  " long is asked to be dropped and closed; 0: never (default 120)" },
	{ "request-model", "MODEL", CT_MODEL, OFF(request_model), 0, 0, 0,
	  "multiplexed (default: each worker serves many kept-alive proxy"
	  " connections) or one-per-connection (the earlier model, kept"
	  " for comparison)" },
	{ "read-only", NULL, CT_FLAG, OFF(read_only), 0, 0, 0,
	  "serve reads only; writes are refused" },
	{ "sqlite-synchronous", "MODE", CT_SYNC, OFF(sync), 0, 0, 0,
	  "full (default: acknowledged writes are on disk), normal, off" },
	{ "checkpoint", "WHO", CT_CHECKPOINT, OFF(checkpoint_external), 0, 0,
	  0, "internal (default) or external: leave truncating WAL"
	  " checkpoints to a replicator such as Litestream" },
	{ "sqlite-file-mode", "MODE", CT_MODE, OFF(sqlite_file_mode), 0, 0777,
	  0, "file mode of a database this server creates, and of its -wal"
	  " and -shm files (default 0600)" },
	{ "busy-timeout", "MS", CT_INT, OFF(busy_timeout_ms), 10, 600000, 0,
	  "how long a write waits for its turn, then 503 (default 5000)" },
	{ "log-level", "LEVEL", CT_LEVEL, OFF(log_level), 0, 0, 0,
	  "error, warning, notice, info (default), debug" },
	{ "check-config", NULL, CT_FLAG, OFF(check_only), 0, 0, 1,
	  "validate the settings and exit" },
	{ "health-path", "PATH", CT_STRING, OFF(health_path), 0, 0, 0,
	  "answer load balancers' health checks at this path (GET, no"
	  " token; default: off)" },
	{ "metrics-path", "PATH", CT_STRING, OFF(metrics_path), 0, 0, 0,
	  "serve Prometheus metrics at this path (default: off)" },
	{ "metrics-token", "TOKEN", CT_STRING, OFF(metrics_token), 0, 0, 0,
	  "the bearer token the metrics path requires, 12 characters or"
	  " more" },
	{ "max-open-databases", "N", CT_INT, OFF(max_open_databases), 1,
	  100000, 0, "with [database] sections in the file: databases one"
	  " worker keeps open, least recently used closed first (default"
	  " 64)" },
};
#define N_OPTIONS	(sizeof(conf_options) / sizeof(conf_options[0]))

static void *
field(struct conf *c, const struct conf_option *o)
{
	return (char *)c + o->offset;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int
parse_sync(const char *v, enum kv_sync *out)
{
	if (strcasecmp(v, "full") == 0)
		*out = KV_SYNC_FULL;
	else if (strcasecmp(v, "normal") == 0)
		*out = KV_SYNC_NORMAL;
	else if (strcasecmp(v, "off") == 0)
		*out = KV_SYNC_OFF;
	else
		return -1;
	return 0;
}

/*
 * Sets one option from its text. from_file: flags take true/false there.
 * On error writes "<what>: <reason>" to e.
 */
static int
apply(struct conf *c, const struct conf_option *o, const char *v,
    int from_file, char *e, size_t n)
{
	char		*end, *copy;
	long		 l;

	switch (o->type) {
	case CT_STRING:
		if ((copy = strdup(v)) == NULL) {
			snprintf(e, n, "out of memory");
			return -1;
		}
		free(*(char **)field(c, o));
		*(char **)field(c, o) = copy;
		return 0;
	case CT_FLAG:
		if (!from_file) {
			*(int *)field(c, o) = 1;
			return 0;
		}
		if (parse_bool(v, (int *)field(c, o)) == 0)
			return 0;
		snprintf(e, n, "\"%s\" is not true or false", v);
		return -1;
	case CT_INT:
		errno = 0;
		l = strtol(v, &end, 10);
		if (errno != 0 || *v == '\0' || *end != '\0' || l < o->min ||
		    l > o->max) {
			snprintf(e, n, "\"%s\" is not a number from %ld to %ld",
			    v, o->min, o->max);
			return -1;
		}
		*(int *)field(c, o) = (int)l;
		return 0;
	case CT_MODE:
		errno = 0;
		l = strtol(v, &end, 8);
		if (errno != 0 || *v == '\0' || *end != '\0' || l < 0 ||
		    l > o->max) {
			snprintf(e, n, "\"%s\" is not an octal file mode like"
			    " 0660", v);
			return -1;
		}
		*(mode_t *)field(c, o) = (mode_t)l;
		return 0;
	case CT_SYNC:
		if (parse_sync(v, (enum kv_sync *)field(c, o)) == 0)
			return 0;
		snprintf(e, n, "\"%s\" is not one of full, normal, off", v);
		return -1;
	case CT_CHECKPOINT:
		if (strcasecmp(v, "internal") == 0 ||
		    strcasecmp(v, "external") == 0) {
			*(int *)field(c, o) = strcasecmp(v, "external") == 0;
			return 0;
		}
		snprintf(e, n, "\"%s\" is not one of internal, external", v);
		return -1;
	case CT_MODEL:
		if (strcasecmp(v, "multiplexed") == 0 ||
		    strcasecmp(v, "one-per-connection") == 0) {
			*(enum request_model *)field(c, o) =
			    strcasecmp(v, "multiplexed") == 0 ?
			    REQUEST_MODEL_MULTIPLEXED :
			    REQUEST_MODEL_ONE_PER_CONNECTION;
			return 0;
		}
		snprintf(e, n, "\"%s\" is not one of multiplexed,"
		    " one-per-connection", v);
		return -1;
	case CT_LEVEL:
		if (log_parse_level(v, (enum log_level *)field(c, o)) == 0)
			return 0;
		snprintf(e, n, "\"%s\" is not one of error, warning, notice,"
		    " info, debug", v);
		return -1;
	}
	return -1;
}

static void
usage(FILE *f)
{
	char	 flag[64];

	fprintf(f, "usage: denokv-fcgi [--sqlite-path PATH] serve"
	    " [--access-token TOKEN] [options]\n"
	    "       denokv-fcgi [--sqlite-path PATH] backup DEST\n"
	    "       denokv-fcgi [--sqlite-path PATH] restore SRC\n"
	    "       denokv-fcgi [--sqlite-path PATH] check\n"
	    "       denokv-fcgi [--sqlite-path PATH | --listen ADDR] status\n"
	    "       denokv-fcgi token new [--read-only] [--expires TIME]\n\n"
	    "Serves a Deno KV database (the KV Connect protocol) over"
	    " FastCGI.\n\n"
	    "  backup   copy the database while it is served\n"
	    "  restore  put a backup in place of a stopped service's database\n"
	    "  check    integrity and schema check (exit status 1: a problem)\n"
	    "  status   ask the running service how it is doing\n"
	    "  token    new: a random token for a [database] section of the"
	    " file\n"
	    "\noptions:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		snprintf(flag, sizeof(flag), "--%s%s%s", conf_options[i].name,
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

int
conf_option_takes_value(const char *arg)
{
	const struct conf_option	*o;

	if (strncmp(arg, "--", 2) != 0 || strchr(arg, '=') != NULL)
		return 0;
	o = find_option(arg + 2, strlen(arg + 2));
	return o != NULL && o->arg != NULL;
}

struct kv_options
conf_kv_options(const struct conf *c)
{
	struct kv_options	 opt = {
		.read_only = c->read_only,
		.sync = c->sync,
		.busy_timeout_ms = c->busy_timeout_ms,
		.file_mode = c->sqlite_file_mode,
		.external_checkpoints = c->checkpoint_external,
	};

	return opt;
}

int
conf_default_workers(void)
{
	long	 n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 2 ? 2 : (n > 64 ? 64 : (int)n);
}

static void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	c->workers = conf_default_workers();
	c->shutdown_timeout = 10;
	c->watch_output_mib = KV_WATCH_OUTPUT_BUDGET_MIB;
	c->body_timeout = 5;
	c->send_timeout = 30;
	c->keepalive_timeout = 120;
	c->request_model = REQUEST_MODEL_MULTIPLEXED;
	c->sync = KV_SYNC_FULL;
	c->busy_timeout_ms = KV_BUSY_TIMEOUT_MS;
	c->sqlite_file_mode = 0600;
	c->log_level = LOG_LVL_INFO;
	c->max_open_databases = 64;
}

void
conf_fini(struct conf *c)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (conf_options[i].type == CT_STRING) {
			free(*(char **)field(c, &conf_options[i]));
			*(char **)field(c, &conf_options[i]) = NULL;
		}
	conf_db_free(c);
}

/* --- the file ----------------------------------------------------------- */

/*
 * inih calls the handler for "name = value" lines only, so the reader
 * (which sees every line first) counts lines and takes the section
 * headers: an empty section is still seen, and each section knows its
 * line for the checks done after the whole file is read. The reader also
 * drops the blanks that start a line: inih would take an indented line
 * for the continuation of the previous value, and indented sections are
 * how people write them.
 */
struct file_ctx {
	struct conf	*c;
	FILE		*f;
	int		 line;		/* of the line being parsed */
	int		 at_line_start;	/* the next chunk starts a line */
	unsigned	 seen;		/* keys of the current section */
	char		 header[CONF_DB_MAX_NAME + 64];	/* its [text] */
	const char	*top_key;	/* a top-level sqlite-path/access-token */
	int		 top_line;
	int		 err_line;
	char		 err[512];
};

static void file_error(struct file_ctx *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static void
file_error(struct file_ctx *ctx, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	ctx->err_line = ctx->line;
}

/* A line "[text]" from its first column: a new section. */
static void
file_section(struct file_ctx *ctx, const char *line)
{
	const char	*close = strchr(line, ']');
	size_t		 n;

	/* No ']': inih reports the syntax error itself. */
	if (close == NULL)
		return;
	n = (size_t)(close - line - 1);
	if (n >= sizeof(ctx->header))
		n = sizeof(ctx->header) - 1;
	memcpy(ctx->header, line + 1, n);
	ctx->header[n] = '\0';
	ctx->seen = 0;
	if (conf_db_begin(ctx->c, ctx->header, ctx->line, ctx->err,
	    sizeof(ctx->err)) != 0)
		ctx->err_line = ctx->line;
}

static char *
file_reader(char *str, int num, void *stream)
{
	struct file_ctx	*ctx = stream;
	size_t		 skip;

	if (ctx->err[0] != '\0' || fgets(str, num, ctx->f) == NULL)
		return NULL;
	if (ctx->at_line_start) {
		ctx->line++;
		skip = ctx->line == 1 && strncmp(str, "\xEF\xBB\xBF", 3) == 0 ?
		    3 : 0;
		skip += strspn(str + skip, " \t");
		memmove(str, str + skip, strlen(str + skip) + 1);
		if (*str == '[')
			file_section(ctx, str);
	}
	ctx->at_line_start = strchr(str, '\n') != NULL;
	/* An error stops the file here: inih sees its end. */
	return ctx->err[0] != '\0' ? NULL : str;
}

static int
file_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct file_ctx			*ctx = user;
	const struct conf_option	*o;
	char				 why[400];

	if (ctx->err[0] != '\0')
		return 0;
	if (section[0] != '\0') {
		/* The reader took the header; inih must agree on it. */
		if (strcmp(section, ctx->header) != 0 ||
		    ctx->c->ndatabases == 0) {
			file_error(ctx, "cannot read the section line [%s]",
			    section);
			return 0;
		}
		if (conf_db_key(ctx->c, name, value, &ctx->seen, ctx->err,
		    sizeof(ctx->err)) != 0) {
			ctx->err_line = ctx->line;
			return 0;
		}
		return 1;
	}
	o = find_option(name, strlen(name));
	if (o == NULL || o->cli_only) {
		file_error(ctx, "unknown key \"%s\"", name);
		return 0;
	}
	if (apply(ctx->c, o, value, 1, why, sizeof(why)) != 0) {
		file_error(ctx, "%s: %s", name, why);
		return 0;
	}
	if (o->offset == OFF(sqlite_path) || o->offset == OFF(access_token)) {
		ctx->top_key = o->name;
		ctx->top_line = ctx->line;
	}
	return 1;
}

static int
load_file(struct conf *c, const char *path, char *errbuf, size_t errlen)
{
	struct file_ctx	 ctx = { .c = c, .at_line_start = 1 };
	int		 line;

	if ((ctx.f = fopen(path, "r")) == NULL) {
		snprintf(errbuf, errlen, "%s: cannot read: %s", path,
		    strerror(errno));
		return -1;
	}
	line = ini_parse_stream(file_reader, &ctx, file_handler, &ctx);
	if (line == 0 && ctx.err[0] == '\0' && ferror(ctx.f))
		line = -1;
	fclose(ctx.f);
	if (ctx.err[0] != '\0') {
		snprintf(errbuf, errlen, "%s:%d: %s", path, ctx.err_line,
		    ctx.err);
		return -1;
	}
	if (line < 0) {
		snprintf(errbuf, errlen, "%s: cannot read: %s", path,
		    strerror(errno ? errno : EIO));
		return -1;
	}
	if (line > 0) {
		snprintf(errbuf, errlen, "%s:%d: syntax error (expected"
		    " name = value)", path, line);
		return -1;
	}
	if (c->ndatabases > 0 && ctx.top_key != NULL) {
		snprintf(errbuf, errlen, "%s:%d: %s is for a file without"
		    " [database] sections; this file has them (use one or"
		    " the other)", path, ctx.top_line, ctx.top_key);
		return -1;
	}
	return conf_db_validate(c, path, errbuf, errlen);
}

/* --- the command line ----------------------------------------------------- */

/*
 * Walks argv. With apply_them == 0 only --config is taken (it must be known
 * before the file is read, and the file comes before the command line).
 */
static enum conf_result
walk_argv(int argc, char **argv, struct conf *c, int apply_them,
    int *saw_serve, struct conf_words *words, char *errbuf, size_t errlen)
{
	const struct conf_option	*o;
	const char			*arg, *eq, *name;
	char				 why[400];

	if (words != NULL)
		words->n = 0;
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
		if (words == NULL && strcmp(argv[i], "serve") == 0) {
			*saw_serve = 1;
			continue;
		}
		/* A verb's words: its name first, then its arguments. */
		if (words != NULL && strncmp(argv[i], "--", 2) != 0) {
			if (words->n == CONF_MAX_WORDS) {
				snprintf(errbuf, errlen, "unexpected argument"
				    " \"%s\" (see --help)", argv[i]);
				return CONF_ERROR;
			}
			words->w[words->n++] = argv[i];
			continue;
		}
		if (strncmp(argv[i], "--", 2) != 0) {
			snprintf(errbuf, errlen, "unknown argument \"%s\""
			    " (see --help)", argv[i]);
			return CONF_ERROR;
		}
		name = argv[i] + 2;
		eq = strchr(name, '=');
		o = find_option(name, eq ? (size_t)(eq - name) : strlen(name));
		if (o == NULL) {
			snprintf(errbuf, errlen, "unknown option \"%s\""
			    " (see --help)", argv[i]);
			return CONF_ERROR;
		}
		arg = "";
		if (o->arg != NULL) {
			if (eq != NULL)
				arg = eq + 1;
			else if (i + 1 < argc)
				arg = argv[++i];
			else {
				snprintf(errbuf, errlen, "--%s needs a value",
				    o->name);
				return CONF_ERROR;
			}
		} else if (eq != NULL) {
			snprintf(errbuf, errlen, "--%s takes no value",
			    o->name);
			return CONF_ERROR;
		}
		if (apply_them == (o->offset == OFF(config_path)))
			continue;
		if (apply(c, o, arg, 0, why, sizeof(why)) != 0) {
			snprintf(errbuf, errlen, "--%s: %s", o->name, why);
			return CONF_ERROR;
		}
	}
	return CONF_OK;
}

/* The operator endpoints: absolute paths, distinct, metrics with a token. */
static int
conf_validate_ops(const struct conf *c, char *errbuf, size_t errlen)
{
	const char	*paths[] = { c->health_path, c->metrics_path };
	const char	*names[] = { "health-path", "metrics-path" };

	for (int i = 0; i < 2; i++)
		if (paths[i] != NULL && (paths[i][0] != '/' ||
		    strpbrk(paths[i], "?#") != NULL)) {
			snprintf(errbuf, errlen, "%s must be a path that starts"
			    " with / (no query), like /healthz", names[i]);
			return -1;
		}
	if (c->health_path != NULL && c->metrics_path != NULL &&
	    strcmp(c->health_path, c->metrics_path) == 0) {
		snprintf(errbuf, errlen, "health-path and metrics-path must"
		    " differ");
		return -1;
	}
	if (c->metrics_path != NULL && (c->metrics_token == NULL ||
	    strlen(c->metrics_token) < KV_MIN_TOKEN_CHARS)) {
		snprintf(errbuf, errlen, "metrics-path needs metrics-token, at"
		    " least %d characters", KV_MIN_TOKEN_CHARS);
		return -1;
	}
	return 0;
}

static enum conf_result conf_validate_serve(const struct conf *, char *,
		    size_t);

static enum conf_result
conf_validate(const struct conf *c, int saw_serve, int verb, char *errbuf,
    size_t errlen)
{
	if (!verb && !saw_serve && !c->check_only) {
		snprintf(errbuf, errlen, "missing the \"serve\" command"
		    " (see --help)");
		return CONF_ERROR;
	}
	/*
	 * With [database] sections the file names every database and its
	 * tokens; a single database from elsewhere (the command line, the
	 * environment) would be ambiguous for serve. The verbs still take
	 * --sqlite-path: they work on one file.
	 */
	if (c->ndatabases > 0 && !verb) {
		if (c->sqlite_path != NULL || c->access_token != NULL) {
			snprintf(errbuf, errlen, "the config file has [database]"
			    " sections: --sqlite-path and --access-token (and"
			    " DENO_KV_SQLITE_PATH, DENO_KV_ACCESS_TOKEN) do not"
			    " apply; use one or the other");
			return CONF_ERROR;
		}
		return conf_validate_serve(c, errbuf, errlen);
	}
	/* status needs only the socket when --listen names it. */
	if ((c->sqlite_path == NULL || *c->sqlite_path == '\0') &&
	    !(verb && c->listen != NULL) && c->ndatabases > 0) {
		snprintf(errbuf, errlen, "no database: the config file has"
		    " [database] sections; give --sqlite-path and the path of"
		    " one of them");
		return CONF_ERROR;
	}
	if ((c->sqlite_path == NULL || *c->sqlite_path == '\0') &&
	    !(verb && c->listen != NULL)) {
		snprintf(errbuf, errlen, "no database: give --sqlite-path, set"
		    " DENO_KV_SQLITE_PATH or sqlite-path in the config file");
		return CONF_ERROR;
	}
	/* Verbs work on the file (or the running service): no token. */
	if (verb)
		return CONF_OK;
	if (c->access_token == NULL || *c->access_token == '\0') {
		snprintf(errbuf, errlen, "no access token: give"
		    " --access-token, set DENO_KV_ACCESS_TOKEN or"
		    " access-token in the config file");
		return CONF_ERROR;
	}
	if (strlen(c->access_token) < KV_MIN_TOKEN_CHARS) {
		snprintf(errbuf, errlen, "access token too short: at least %d"
		    " characters", KV_MIN_TOKEN_CHARS);
		return CONF_ERROR;
	}
	return conf_validate_serve(c, errbuf, errlen);
}

/* The settings serve needs besides its databases. */
static enum conf_result
conf_validate_serve(const struct conf *c, char *errbuf, size_t errlen)
{
	if ((c->sqlite_file_mode & 0600) != 0600) {
		snprintf(errbuf, errlen, "sqlite-file-mode: %04o does not let"
		    " the server read and write its own database (give the"
		    " owner rw, e.g. 0600)", (unsigned)c->sqlite_file_mode);
		return CONF_ERROR;
	}
	if (conf_validate_ops(c, errbuf, errlen) != 0)
		return CONF_ERROR;
	if (c->group != NULL && c->user == NULL) {
		snprintf(errbuf, errlen, "group is set but user is not");
		return CONF_ERROR;
	}
	return CONF_OK;
}

static int
apply_env(struct conf *c, const char *var, const char *name, char *errbuf,
    size_t errlen)
{
	const char	*v = getenv(var);
	char		 why[400];

	if (v == NULL || *v == '\0')
		return 0;
	if (apply(c, find_option(name, strlen(name)), v, 0, why,
	    sizeof(why)) != 0) {
		snprintf(errbuf, errlen, "%s: %s", var, why);
		return -1;
	}
	return 0;
}

static enum conf_result
parse(int argc, char **argv, struct conf *c, struct conf_words *words,
    char *errbuf, size_t errlen)
{
	enum conf_result	 r;
	int			 saw_serve = 0;

	conf_defaults(c);
	/* Precedence: file < environment < command line. */
	if ((r = walk_argv(argc, argv, c, 0, &saw_serve, words, errbuf,
	    errlen)) !=
	    CONF_OK)
		goto out;
	r = CONF_ERROR;
	if (c->config_path != NULL &&
	    load_file(c, c->config_path, errbuf, errlen) != 0)
		goto out;
	if (apply_env(c, "DENO_KV_SQLITE_PATH", "sqlite-path", errbuf,
	    errlen) != 0 ||
	    apply_env(c, "DENO_KV_ACCESS_TOKEN", "access-token", errbuf,
	    errlen) != 0)
		goto out;
	saw_serve = 0;
	if ((r = walk_argv(argc, argv, c, 1, &saw_serve, words, errbuf,
	    errlen)) != CONF_OK)
		goto out;
	r = conf_validate(c, saw_serve, words != NULL, errbuf, errlen);
out:
	if (r != CONF_OK)
		conf_fini(c);
	return r;
}

enum conf_result
conf_parse(int argc, char **argv, struct conf *c, char *errbuf, size_t errlen)
{
	return parse(argc, argv, c, NULL, errbuf, errlen);
}

enum conf_result
conf_parse_verb(int argc, char **argv, struct conf *c,
    struct conf_words *words, char *errbuf, size_t errlen)
{
	return parse(argc, argv, c, words, errbuf, errlen);
}
