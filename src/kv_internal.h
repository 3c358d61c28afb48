/*
 * kv_internal.h: what the parts of the SQLite storage engine share among
 * themselves (kv_sqlite.c owns the connection; kv_queue.c runs the queue
 * on it). Nothing outside the engine includes this.
 */
#ifndef DENOKV_KV_INTERNAL_H
#define DENOKV_KV_INTERNAL_H

#include <sqlite3.h>

#include "kv.h"

struct kv_queue_stmts;

sqlite3		*kv_sqlite_handle(struct kv_db *);
/* Where kv_queue.c keeps its prepared statements (NULL until first use). */
struct kv_queue_stmts **kv_queue_stmts_of(struct kv_db *);
/* Frees them; called by kv_close. */
void		 kv_queue_close(struct kv_db *);

/* Maps an SQLite result code to ours (the one place that knows BUSY). */
enum kv_err	 kv_sqlite_error(struct kv_db *, int rc, const char *what);

/*
 * Runs body inside BEGIN IMMEDIATE ... COMMIT, admitted fairly with every
 * other writer, retried a few times when SQLite says busy, rolled back on
 * any error. Refused on a read-only database.
 */
enum kv_err	 kv_write_tx(struct kv_db *,
		    enum kv_err (*body)(struct kv_db *, void *), void *ctx);

/* Inside a write transaction: the next data version, and a plain put. */
enum kv_err	 kv_bump_version(struct kv_db *, int64_t *version);
enum kv_err	 kv_put_raw(struct kv_db *, struct kv_bytes key,
		    struct kv_bytes value, int encoding, int64_t version);

/* After a commit: tell watchers these keys changed, and consumers. */
void		 kv_notify_keys(struct kv_db *, const struct kv_bytes *keys,
		    size_t n, int64_t version);
void		 kv_notify_queued(struct kv_db *);

#endif
