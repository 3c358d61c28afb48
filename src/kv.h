/*
 * kv: the storage engine of one Deno KV database on one SQLite file.
 *
 * No HTTP or protobuf types cross this interface: the codec turns requests
 * into the structs below, and handlers turn results into responses. One
 * struct kv_db is one open database with its own SQLite connection and
 * prepared statements; a process may hold several (one per hosted
 * database), and several processes may open the same file: SQLite's locks
 * make the versionstamp counter and check-and-set correct across them.
 *
 * The file format is denokv's (tables data_version, kv, queue,
 * queue_running, migration_state and its three migrations), so files move
 * freely between this server, denokv and the Deno CLI's local KV.
 *
 * Ownership: inputs are borrowed for the duration of a call. Results are
 * allocated in the caller's arena and live until it is reset.
 */
#ifndef DENOKV_KV_H
#define DENOKV_KV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "arena.h"
#include "err.h"

#define KV_VERSIONSTAMP_BYTES	10
/* denokv's schema: the number of its migrations (migration_state.version). */
#define KV_SCHEMA_VERSION	3

/* Value encodings, as stored in kv.v_encoding and sent on the wire. */
enum kv_encoding {
	KV_ENC_V8 = 1,		/* V8 value serialization */
	KV_ENC_LE64 = 2,	/* KvU64: 8 bytes little endian */
	KV_ENC_BYTES = 3,	/* Uint8Array: raw bytes */
};

enum kv_sync {
	KV_SYNC_FULL = 0,	/* default: an acknowledged write is on disk */
	KV_SYNC_NORMAL,		/* WAL-safe but may lose the last commits on power loss */
	KV_SYNC_OFF,
};

struct kv_bytes;

/*
 * Optional callbacks around writes, so the storage engine needs to know
 * nothing of how processes coordinate: write_begin/write_end bracket every
 * write transaction (fair admission; write_begin returns non-zero if no
 * turn came within timeout_ms, and then write_end is not called). After a
 * transaction committed, and before write_end, changed is called for each
 * key it wrote and then committed once with its data version (also when it
 * wrote no key); after write_end, published once (watchers). A watcher that
 * finds a data version without its committed call treats it as a commit by
 * someone else, so committed comes last. fault is called for each storage
 * fault (a full disk, a damaged file, an I/O error), for the service's
 * status.
 */
struct kv_hooks {
	void	*ctx;
	int	(*write_begin)(void *ctx, int timeout_ms);
	void	(*write_end)(void *ctx);
	void	(*changed)(void *ctx, const uint8_t *key, size_t len,
		    int64_t version);
	void	(*committed)(void *ctx, int64_t version);
	void	(*published)(void *ctx);
	void	(*fault)(void *ctx, enum kv_err code);
	/* A committed transaction put messages into the queue table. */
	void	(*queued)(void *ctx);
};

struct kv_options {
	int			 read_only;
	enum kv_sync		 sync;
	/*
	 * The longest a write waits for its turn (write_begin, then SQLite's
	 * lock, which another process may hold), and a read for a locked
	 * database, in milliseconds; then KV_ERR_WRITE_TIMEOUT or
	 * KV_ERR_BUSY. 0: KV_BUSY_TIMEOUT_MS.
	 */
	int			 busy_timeout_ms;
	/* Mode of a database file kv_open creates (exactly, not by umask);
	 * SQLite gives its -wal and -shm files the same. 0: SQLite's 0644. */
	mode_t			 file_mode;
	/*
	 * 1: never checkpoint on commit (SQLite's wal_autocheckpoint); a
	 * replicator that reads the WAL (Litestream) checkpoints instead.
	 */
	int			 external_checkpoints;
	/*
	 * Largest size the file may grow to, in bytes (SQLite's
	 * max_page_count, rounded down to whole pages); a write past it is
	 * rolled back and answered KV_ERR_SIZE_LIMIT. 0: no limit.
	 */
	int64_t			 max_size_bytes;
	const struct kv_hooks	*hooks;		/* NULL: none */
};

struct kv_bytes {
	const uint8_t	*p;
	size_t		 len;
};

struct kv_entry {
	struct kv_bytes	 key;
	struct kv_bytes	 value;
	enum kv_encoding encoding;
	uint8_t		 versionstamp[KV_VERSIONSTAMP_BYTES];
	int64_t		 expire_at_ms;	/* 0: never */
};

struct kv_range {
	struct kv_bytes	 start;		/* inclusive */
	struct kv_bytes	 end;		/* exclusive */
	uint32_t	 limit;		/* >= 1 */
	int		 reverse;
};

struct kv_range_result {
	struct kv_entry	*entries;
	size_t		 n;
};

enum kv_mutation_type {
	KV_MUT_SET = 1,
	KV_MUT_DELETE = 2,
	KV_MUT_SUM = 3,
	KV_MUT_MAX = 4,
	KV_MUT_MIN = 5,
	KV_MUT_SET_VERSIONSTAMPED_KEY = 9,
};

struct kv_mutation {
	enum kv_mutation_type	 type;
	struct kv_bytes		 key;
	struct kv_bytes		 value;		/* unused for delete */
	enum kv_encoding	 encoding;
	int64_t			 expire_at_ms;	/* 0: never */
	struct kv_bytes		 sum_min;	/* V8; empty: unbounded */
	struct kv_bytes		 sum_max;
	int			 sum_clamp;
};

struct kv_check {
	struct kv_bytes	 key;
	int		 must_be_absent;
	uint8_t		 versionstamp[KV_VERSIONSTAMP_BYTES];
};

struct kv_enqueue {
	struct kv_bytes		 payload;
	int64_t			 deadline_ms;
	const struct kv_bytes	*undelivered_keys;
	size_t			 n_undelivered_keys;
	const uint32_t		*backoff;	/* NULL: the default schedule */
	size_t			 n_backoff;
};

struct kv_write {
	const struct kv_check	*checks;
	size_t			 n_checks;
	const struct kv_mutation *mutations;
	size_t			 n_mutations;
	const struct kv_enqueue	*enqueues;
	size_t			 n_enqueues;
};

struct kv_write_result {
	int		 committed;	/* 0: a check failed, nothing written */
	uint8_t		 versionstamp[KV_VERSIONSTAMP_BYTES];
	uint32_t	*failed_checks;	/* indexes into kv_write.checks */
	size_t		 n_failed_checks;
};

struct kv_db;

/*
 * Opens (creating if needed, unless read-only) and migrates the database.
 * On failure returns NULL and writes a one-line reason to errbuf.
 */
struct kv_db	*kv_open(const char *path, const struct kv_options *,
		    char *errbuf, size_t errlen);
void		 kv_close(struct kv_db *);
int		 kv_is_read_only(const struct kv_db *);

/*
 * The synchronous level in force on this connection, read back from
 * SQLite ("off", "normal", "full", "extra"), or "unknown" if it cannot be
 * read. Static storage.
 */
const char	*kv_synchronous(struct kv_db *);

/*
 * Reads all ranges in one read transaction (one consistent snapshot).
 * Entries whose expire time is at or before now_ms are not returned.
 * results must have room for n elements.
 */
enum kv_err	 kv_snapshot_read(struct kv_db *, const struct kv_range *ranges,
		    size_t n, int64_t now_ms, struct arena *,
		    struct kv_range_result *results);

/*
 * Applies one atomic write: all checks, then all mutations and enqueues,
 * under one new versionstamp, all or nothing. A failed check is not an
 * error: result->committed is 0 and failed_checks lists them. A failing
 * mutation (sum on a string, say) is an error and nothing is written.
 */
enum kv_err	 kv_atomic_write(struct kv_db *, const struct kv_write *,
		    int64_t now_ms, struct arena *, struct kv_write_result *);

/*
 * Group commit: applies n atomic writes in one write turn and one SQLite
 * transaction, so that they share one COMMIT and one fsync. Each write is
 * applied as kv_atomic_write would apply it at that point, in order: in
 * its own savepoint, under its own data version (the committed writes'
 * versionstamps strictly increase in batch order), its checks evaluated
 * on the state that includes the batch's earlier writes.
 *
 * results and errs must have room for n. Per write: errs[i] KV_OK and
 * results[i].committed 1 (written), or committed 0 with failed_checks (a
 * check failed, nothing written); or errs[i] the error of a write that
 * failed outright (a sum on a string, say), rolled back to its savepoint
 * alone while the others go on. No write is ever partly applied.
 *
 * The return value is the batch's error (no turn in time, busy, read-only,
 * a COMMIT that failed, a storage fault that lost the transaction): then
 * nothing of the batch is written or acknowledged, and every errs[i] is
 * that error. With n == 1 this is kv_atomic_write.
 *
 * Watch hooks: each committed write is reported (changed keys, then its
 * version) in version order once the COMMIT is durable, and published
 * once after the turn; queued once if a committed write enqueued.
 */
enum kv_err	 kv_atomic_write_batch(struct kv_db *,
		    const struct kv_write *const *writes, size_t n,
		    int64_t now_ms, struct arena *,
		    struct kv_write_result *results, enum kv_err *errs);

/*
 * Whether writes wait for SQLite's write lock held by another process (the
 * default, up to the busy timeout) or give up at once with KV_ERR_BUSY, so
 * that a caller serving other requests can retry later instead of
 * sleeping. The wait for this server's own write turn is not affected.
 */
void		 kv_set_lock_wait(struct kv_db *, int wait);

/*
 * Deletes up to `batch` entries that expired at or before now_ms, in one
 * write transaction that bumps the data version (as denokv does, so that
 * watchers are told); stores how many in *deleted.
 */
enum kv_err	 kv_delete_expired(struct kv_db *, int64_t now_ms, int batch,
		    int *deleted);

/*
 * Checkpoints the WAL into the database file. truncate: wait for readers
 * (within the busy timeout) and reset the WAL file to zero bytes, so it
 * cannot grow without bound under steady load. *wal_frames gets the WAL's
 * size in frames before the checkpoint, *done how many were copied.
 */
enum kv_err	 kv_checkpoint(struct kv_db *, int truncate, int *wal_frames,
		    int *done);

/* The current data version (the first 8 bytes of the latest versionstamp). */
enum kv_err	 kv_current_version(struct kv_db *, int64_t *version);

/*
 * How an SQLite result code (extended codes too) and the errno behind it
 * (sqlite3_system_errno) map to ours: the one place that decides which
 * failures are transient (503), a full disk (507) or need the operator
 * (500). Exposed for the unit tests.
 */
enum kv_err	 kv_err_for_sqlite(int rc, int sys_errno);

/* --- queues (kv_queue.c; semantics in docs/queues.md) --------------------- */

/* Deno's retry delays for a message enqueued without its own schedule. */
#define KV_QUEUE_DEFAULT_BACKOFF_STEPS	5
#define KV_QUEUE_ID_MAX			64	/* a message id, text */

/* A leased message. The payload lives in the caller's arena. */
struct kv_queue_msg {
	char		 id[KV_QUEUE_ID_MAX + 1];
	struct kv_bytes	 payload;
	int64_t		 due_ms;
	int64_t		 lease_until_ms;	/* with id, names the lease */
	int		 attempt;		/* 1 first; 0 unknown */
};

/* What kv_queue_next_events found; 0 where there is nothing. */
struct kv_queue_events {
	int64_t		 next_due_ms;		/* earliest ts in queue */
	int64_t		 next_lease_end_ms;	/* earliest running deadline */
};

struct kv_queue_stats {
	int64_t		 ready;		/* due now, waiting */
	int64_t		 delayed;	/* due later */
	int64_t		 running;	/* leased */
	int64_t		 expired;	/* leased, lease over, not yet returned */
	int64_t		 oldest_due_age_ms;	/* of the ready ones; 0 none */
	int64_t		 dead_lettered;	/* out of retries, ever, in this file */
};

/*
 * Returns leases that ran out (retry or dead letter, as a failure), then
 * moves up to max messages due at now_ms into queue_running, leased until
 * now_ms + lease_ms, earliest due first. out must have room for max.
 */
enum kv_err	 kv_queue_lease(struct kv_db *, int64_t now_ms, size_t max,
		    int64_t lease_ms, struct arena *, struct kv_queue_msg *out,
		    size_t *n);

/*
 * Ends the lease (id, lease_until_ms): success deletes the message,
 * failure schedules its next attempt or dead-letters it. A lease that is
 * not held is KV_ERR_QUEUE_LEASE_NOT_HELD; one whose time ran out,
 * KV_ERR_QUEUE_LEASE_EXPIRED. Either way nothing changes.
 */
enum kv_err	 kv_queue_finish(struct kv_db *, const char *id,
		    int64_t lease_until_ms, int success, int64_t now_ms);

/* One outcome of a batch; result is set by kv_queue_finish_many. */
struct kv_queue_outcome {
	const char	*id;
	int64_t		 lease_until_ms;
	int		 success;
	enum kv_err	 result;	/* KV_OK, or why this lease was refused */
};

/*
 * Finishes several leases in one transaction (one commit for all). Each
 * outcome gets its own result, as kv_queue_finish would return it; the
 * call itself fails only when storage does, and then nothing changed.
 */
enum kv_err	 kv_queue_finish_many(struct kv_db *, struct kv_queue_outcome *,
		    size_t n, int64_t now_ms);

/*
 * Extends a held lease to now_ms + lease_ms (never earlier than it ended
 * before, so names stay unique); *new_until names it then.
 */
enum kv_err	 kv_queue_renew(struct kv_db *, const char *id,
		    int64_t lease_until_ms, int64_t lease_ms, int64_t now_ms,
		    int64_t *new_until);

/* Returns up to batch leases that ran out by now_ms; *n gets how many. */
enum kv_err	 kv_queue_return_expired(struct kv_db *, int64_t now_ms,
		    int batch, int *n);

enum kv_err	 kv_queue_next_events(struct kv_db *, struct kv_queue_events *);
enum kv_err	 kv_queue_stats(struct kv_db *, int64_t now_ms,
		    struct kv_queue_stats *);

/*
 * Calls fn for up to limit messages, waiting ones by due time then leased
 * ones by lease end; lease_until_ms is 0 for a waiting one. For `queue list`.
 */
enum kv_err	 kv_queue_list(struct kv_db *, size_t limit,
		    void (*fn)(void *ctx, const struct kv_queue_msg *,
		    const char *backoff_json, const char *keys_json), void *ctx);

/* Milliseconds since the Unix epoch, from the real-time clock. */
int64_t		 kv_now_ms(void);

#endif
