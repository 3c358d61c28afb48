/*
 * dbreg: the database registry of one serving process (a worker, or the
 * housekeeper): the table of configured databases, routing a request to
 * one of them, and the open SQLite handles, opened on first use and kept
 * to a bound, least recently used closed first (docs/shared-hosting.md).
 *
 * The one-database command line (conf->databases == NULL) is a registry
 * of one database that answers at every path, with the id it always had
 * (database_id_for of its absolute path) and the access token.
 *
 * Each database has its own signal segment (shm.h), mapped by the master
 * before fork; the process claims its slot in a segment the first time it
 * opens that database, and the master releases it when it reaps the
 * process. A worker's watch hub for a database (watch.h) is started on
 * the first watch or queue long poll for it, also to a bound.
 *
 * Ownership: the registry borrows the conf and the segments (both outlive
 * it); it owns the handles and hubs, released by dbreg_fini().
 */
#ifndef DENOKV_DBREG_H
#define DENOKV_DBREG_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "err.h"
#include "kv.h"
#include "sha256.h"
#include "shm.h"
#include "token.h"

#define DBREG_ID_LEN	CONF_DATABASE_ID_LEN
/*
 * Watch hubs one worker runs at once (each is a thread, a pair of SQLite
 * connections, about 400 kB, and WATCH_HUB_FDS descriptors, which count
 * against the worker's descriptor budget for streams): an idle one is
 * stopped to make room; when all hold streams, a watch for yet another
 * database is refused (503, retried).
 */
#define DBREG_MAX_HUBS	256
/* The descriptors of an open handle: the file, its WAL and its -shm. */
#define DBREG_HANDLE_FDS	3

struct watch_hub;
struct watch_bell;

/* One configured database, as this process sees it. */
struct dbreg_db {
	const struct conf_database *conf;	/* NULL: the one-database form */
	const char		*name;		/* "" in the one-database form */
	const char		*path;
	/* "" for "/"; NULL: answers at every path (one-database form) */
	const char		*mount;
	const char		*host;		/* NULL: any Host */
	char			 id[DBREG_ID_LEN + 1];
	struct shm_segment	*seg;		/* NULL: no signal segment */
	struct shm_client	 client;	/* claimed on first open */
	int			 claimed;
	struct kv_hooks		 hooks;
	struct kv_db		*db;		/* NULL: closed */
	uint64_t		 used;		/* LRU tick of its last use */
	unsigned		 holds;		/* dbreg_hold: not to be closed */
	struct watch_hub	*hub;		/* NULL: none running */
	uint64_t		 hub_used;
};

struct dbreg {
	const struct conf	*conf;
	struct dbreg_db		*dbs;
	size_t			 n;
	size_t			 max_open, n_open;
	size_t			 n_hubs;
	struct watch_bell	*bell;		/* wakes the hubs; with the first */
	uint64_t		 tick;
	/* the one-database form: the digest of the access token */
	uint8_t			 token_digest[SHA256_DIGEST_LEN];
};

/*
 * Fills the table from the configuration; segs[i] is the signal segment
 * of the i-th database (conf->databases order, or the one database), or
 * segs is NULL for none. max_open bounds the open handles (at least 1).
 * Nothing is opened yet. 0, or -1 with a reason in errbuf.
 */
int		 dbreg_init(struct dbreg *, const struct conf *,
		    struct shm_segment *const *segs, size_t max_open,
		    char *errbuf, size_t errlen);
void		 dbreg_fini(struct dbreg *);

/*
 * The id of the one-database form: a name-based UUID of the file's
 * absolute path, stable across restarts.
 */
void		 database_id_for(const char *path, char out[DBREG_ID_LEN + 1]);

/* How many databases a configuration declares (1 for the command line). */
size_t		 dbreg_conf_count(const struct conf *);
/* The name the master keys the i-th database's segment by. */
const char	*dbreg_conf_name(const struct conf *, size_t i);

/*
 * Routes a request by its Host header (host may be NULL) and the mount
 * part of its normalised path (base, baselen: the path without its
 * endpoint suffix and trailing '/', as route_path gives it). Databases
 * with a host are tried first, then those without; the mount must equal
 * base exactly. KV_OK with *out, or KV_ERR_NO_MOUNT.
 */
enum kv_err	 dbreg_route(struct dbreg *, const char *host,
		    const char *base, size_t baselen, struct dbreg_db **out);

/*
 * What the request's Authorization header (NULL if absent) may do on the
 * database: KV_OK, or the error to answer (401 malformed, invalid or
 * expired, 403 read-only when writes is set).
 */
enum kv_err	 dbreg_authorize(struct dbreg *, struct dbreg_db *,
		    const char *authorization, int writes);

/*
 * The open handle of a database, opening (and migrating) it first if
 * need be; past max_open the least recently used other handle is
 * closed. KV_OK with *out, or a storage error (logged here).
 */
enum kv_err	 dbreg_open(struct dbreg *, struct dbreg_db *,
		    struct kv_db **out);

/*
 * Keeps a database's open handle from being closed to make room while a
 * request still to be finished uses it (an atomic write waiting for its
 * group commit while later requests of the same turn open others). The
 * bound on open handles may be passed while every handle is held.
 */
void		 dbreg_hold(struct dbreg_db *);
void		 dbreg_release(struct dbreg_db *);

/*
 * The watch hub of a database, started on first use. NULL when it cannot
 * be started or DBREG_MAX_HUBS hubs hold streams (logged here).
 */
struct watch_hub *dbreg_hub(struct dbreg *, struct dbreg_db *);
/*
 * Whether this worker's hubs together hold as many streams and long polls
 * as its descriptors allow (watch_stream_cap, less the descriptors of the
 * open handles and of the hubs themselves): then no new one is taken,
 * whichever database it is for.
 */
int		 dbreg_hubs_full(struct dbreg *);
/*
 * Stops every hub and the doorbell relay: their streams end and clients
 * reconnect elsewhere.
 */
void		 dbreg_stop_hubs(struct dbreg *);

/* The storage options of a database: the conf's, its size limit, hooks. */
struct kv_options dbreg_kv_options(const struct dbreg *,
		    const struct dbreg_db *);

#endif
