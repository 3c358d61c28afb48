/*
 * conf: the server's settings, from the command line, the environment and
 * an optional configuration file, with that precedence (command line wins).
 *
 * The command line is denokv's, so users can switch:
 *   denokv-fcgi --sqlite-path PATH serve --access-token TOKEN [options]
 * with DENO_KV_SQLITE_PATH and DENO_KV_ACCESS_TOKEN as the environment.
 * The file (--config FILE) is INI: "name = value" lines whose names are
 * the long options without the dashes ("sqlite-path = /var/lib/kv.sqlite").
 *
 * Ownership: a filled struct conf owns copies of all its strings; release
 * them with conf_fini(). conf_parse() can be called again (SIGHUP) into a
 * fresh struct.
 */
#ifndef DENOKV_CONF_H
#define DENOKV_CONF_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "log.h"
#include "token.h"

/* The text of a database id: a UUID, 8-4-4-4-12 lower-case hex. */
#define CONF_DATABASE_ID_LEN	36

/*
 * One "[database NAME]" section of the file (docs/shared-hosting.md).
 * Owned by the struct conf that holds it; conf_fini() frees it.
 */
struct conf_database {
	char		*name;		/* [A-Za-z0-9._-]+, unique in the file */
	char		*path;		/* the SQLite file, as written */
	char		*mount;		/* "/a/b": starts with '/', no trailing
					   '/', no "//", "." or ".."; the root
					   mount "/" is stored as "" */
	char		*host;		/* NULL: any Host; else lower case,
					   without a port */
	char		 id[CONF_DATABASE_ID_LEN + 1];	/* databaseId */
	int64_t		 max_size;	/* bytes; 0: no limit */
	int		 max_watches;	/* open watch streams; 0: no limit */
	struct conf_token *tokens;	/* at least one */
	size_t		 ntokens;
	int		 line;		/* of its [database] line, for messages */
};

/* How a worker takes requests (docs/request-model.md). */
enum request_model {
	REQUEST_MODEL_MULTIPLEXED = 0,	/* an event loop over kept connections */
	REQUEST_MODEL_ONE_PER_CONNECTION,	/* libfcgi, a connection each */
};

struct conf {
	char		*config_path;	/* NULL: no file */
	char		*sqlite_path;
	char		*access_token;
	char		*listen;	/* NULL: systemd's socket, else next to the db */
	mode_t		 socket_mode;	/* for a unix socket we create */
	char		*socket_user;	/* owner of that socket, if set */
	char		*socket_group;
	char		*user;		/* drop to this user when started as root */
	char		*group;		/* default: the user's primary group */
	int		 allow_root;
	int		 workers;
	int		 shutdown_timeout;	/* seconds */
	int		 watch_output_mib;	/* per worker, all watch streams */
	int		 body_timeout;	/* seconds for a request to arrive */
	int		 send_timeout;	/* seconds to write one response */
	int		 keepalive_timeout;	/* seconds a kept connection may idle; 0: for ever */
	enum request_model request_model;
	int		 read_only;
	enum kv_sync	 sync;
	int		 busy_timeout_ms;	/* a write's wait for its turn */
	mode_t		 sqlite_file_mode;	/* of a database file we create */
	int		 checkpoint_external;	/* Litestream owns the WAL's size */
	enum log_level	 log_level;
	int		 check_only;	/* --check-config */
	/* operations (README "Operating it"); NULL: the endpoint is off */
	char		*health_path;
	char		*metrics_path;
	char		*metrics_token;	/* required with metrics_path */
	/*
	 * The databases of the file's [database NAME] sections, in file
	 * order; NULL (and 0) for the one-database form (sqlite_path and
	 * access_token), which then serves at every path as always.
	 */
	struct conf_database *databases;
	size_t		 ndatabases;
	int		 max_open_databases;	/* per worker, LRU closed first */
};

enum conf_result {
	CONF_OK = 0,
	CONF_EXIT = 1,		/* --help or --version was printed */
	CONF_ERROR = -1,	/* errbuf says why */
};

/* Fills c from argv, the environment and the file named by --config. */
enum conf_result conf_parse(int argc, char **argv, struct conf *c,
		    char *errbuf, size_t errlen);

/* The words of a command-line verb: its name, then its arguments. */
#define CONF_MAX_WORDS	8
struct conf_words {
	const char	*w[CONF_MAX_WORDS];	/* borrowed from argv */
	int		 n;
};

/*
 * The same for a verb other than serve (backup, check, ...): the options
 * and the file are read alike, no access token is needed, and the words
 * that are not options are returned in order in words.
 */
enum conf_result conf_parse_verb(int argc, char **argv, struct conf *c,
		    struct conf_words *words, char *errbuf, size_t errlen);
void		 conf_fini(struct conf *c);

/* How the storage engine opens the database under these settings. */
struct kv_options conf_kv_options(const struct conf *c);
/* Whether argv word arg ("--name") is an option whose value follows it. */
int		 conf_option_takes_value(const char *arg);

/* The database of that name, or NULL. */
const struct conf_database *conf_database_find(const struct conf *c,
		    const char *name);

/*
 * The id a database gets when its section has no "id =": a name-based
 * UUID (RFC 9562 version 8) of SHA-256 over a fixed prefix and the name,
 * so it stays when the file moves and differs between names. name: a
 * section's name, at most 64 characters.
 */
void		 conf_database_id_for_name(const char *name,
		    char out[CONF_DATABASE_ID_LEN + 1]);

/* The default worker count: one per CPU, at least two. */
int		 conf_default_workers(void);

#endif
