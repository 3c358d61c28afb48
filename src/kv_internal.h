/*
 * kv_internal.h: what the parts of the SQLite storage engine share among
 * themselves (kv_sqlite.c owns the connection; kv_queue.c runs the queue
 * on it; kv_admin.c reads whole database files with its helpers).
 * Nothing else includes this.
 */
#ifndef DENOKV_KV_INTERNAL_H
#define DENOKV_KV_INTERNAL_H

#include <sqlite3.h>

#include "kv.h"

struct kv_queue_stmts;

sqlite3		*kv_sqlite_handle(struct kv_db *);
/*
 * One integer from the first row of sql on db: 0, or -1 on an SQLite
 * error; *found = 0 if there is no row.
 */
int		 kv_sqlite_query_int(sqlite3 *db, const char *sql,
		    int64_t *out, int *found);
/* Starts the busy-timeout clock of a read outside kv_write_tx. */
void		 kv_begin_read(struct kv_db *);
/* Where kv_queue.c keeps its prepared statements (NULL until first use). */
struct kv_queue_stmts **kv_queue_stmts_of(struct kv_db *);
/* Frees them; called by kv_close. */
void		 kv_queue_close(struct kv_db *);

/* Maps an SQLite result code to ours (the one place that knows BUSY). */
enum kv_err	 kv_sqlite_error(struct kv_db *, int rc, const char *what);

/*
 * Runs body inside BEGIN IMMEDIATE ... COMMIT, admitted fairly with every
 * other writer within the busy timeout (KV_ERR_WRITE_TIMEOUT past it),
 * retried a few times when SQLite says busy, rolled back on
 * any error. after_commit (may be NULL) runs once the commit is durable,
 * while the turn is still held: where a transaction that took a new data
 * version reports it (kv_notify_committed). Refused on a read-only
 * database.
 */
enum kv_err	 kv_write_tx(struct kv_db *,
		    enum kv_err (*body)(struct kv_db *, void *),
		    void (*after_commit)(struct kv_db *, void *), void *ctx);

/* Inside a write transaction: the next data version, and a plain put. */
enum kv_err	 kv_bump_version(struct kv_db *, int64_t *version);
enum kv_err	 kv_put_raw(struct kv_db *, struct kv_bytes key,
		    struct kv_bytes value, int encoding, int64_t version);

/*
 * The hooks' order (kv.h): inside the turn after a commit that took a new
 * version, kv_notify_committed with the keys it wrote; after the turn,
 * kv_notify_published, and kv_notify_queued when it added to the queue.
 */
void		 kv_notify_committed(struct kv_db *,
		    const struct kv_bytes *keys, size_t n, int64_t version);
void		 kv_notify_published(struct kv_db *);
void		 kv_notify_queued(struct kv_db *);

#endif
