/*
 * kv_limits.h: every fixed limit of the server, in one place. (Not named
 * limits.h: that would shadow the system header through gcc's own.)
 *
 * The protocol limits are those of the reference server (denokv's
 * proto/limits.rs), so that a program that works against denokv or Deno
 * Deploy works here, with one deliberate difference noted below. They are
 * enforced on the decoded request before any storage work is done.
 */
#ifndef DENOKV_KV_LIMITS_H
#define DENOKV_KV_LIMITS_H

/* A key in a mutation, a watch or a dead-letter list. */
#define KV_MAX_WRITE_KEY_BYTES		2048
/*
 * Read bounds, and check keys, may be one byte longer: the client appends
 * 0x00 to a prefix to make a range bound (denokv uses this limit for both).
 */
#define KV_MAX_READ_KEY_BYTES		(KV_MAX_WRITE_KEY_BYTES + 1)
/* A stored value or a queue payload. */
#define KV_MAX_VALUE_BYTES		65536
/* Ranges in one snapshot read. */
#define KV_MAX_READ_RANGES		10
/* Entries across all ranges of one snapshot read (sum of the limits). */
#define KV_MAX_READ_ENTRIES		1000
/*
 * Checks in one atomic write. denokv refuses more than 10, but the Deno 2.x
 * client lets programs send up to 100; accept what the client sends.
 */
#define KV_MAX_CHECKS			100
/* Mutations plus enqueues in one atomic write. */
#define KV_MAX_MUTATIONS		1000
/* Keys, values, payloads and backoff steps of one atomic write, in bytes. */
#define KV_MAX_TOTAL_MUTATION_BYTES	819200
/* How far in the future an enqueue may be scheduled: 30 days. */
#define KV_MAX_QUEUE_DELAY_MS		(30LL * 24 * 60 * 60 * 1000)
/* Dead-letter keys of one queue message. */
#define KV_MAX_QUEUE_UNDELIVERED_KEYS	10
/* Steps in one backoff schedule, and the longest step: one hour. */
#define KV_MAX_QUEUE_BACKOFF_INTERVALS	10
#define KV_MAX_QUEUE_BACKOFF_MS		3600000U
/* Keys in one watch request. */
#define KV_MAX_WATCHED_KEYS		10

/* Open watch streams one worker holds at most; more get 503. */
#define KV_MAX_WATCHES_PER_WORKER	20000
/* A watch stream's unsent output past this means the client is gone or stuck. */
#define KV_MAX_WATCH_BACKLOG_BYTES	(4 * 1024 * 1024)
/*
 * All watch streams of one worker together hold at most this much unsent
 * output by default (setting watch-output-budget); past it the streams
 * furthest behind are dropped. 64 streams at their own limit fill it.
 */
#define KV_WATCH_OUTPUT_BUDGET_MIB	256
/* Idle watch streams get an empty frame this often, so proxies and clients
 * keep them open and vanished clients are found. */
#define KV_WATCH_KEEPALIVE_MS		5000

/*
 * The largest request body read. The biggest legal atomic write carries
 * 800 KiB of keys and values plus per-field protobuf framing (about 30 bytes
 * for each of 1000 mutations) and 100 check keys of 2 KiB: 1 MiB covers it
 * with room. A larger body is refused with 413 before it is read.
 */
#define KV_MAX_BODY_BYTES		(1024 * 1024)
/* The metadata exchange body is a small JSON document. */
#define KV_MAX_METADATA_BODY_BYTES	(16 * 1024)

/* Access tokens shorter than this are refused at start-up, as denokv does. */
#define KV_MIN_TOKEN_CHARS		12
/* Metadata stays valid this long; the client refreshes before it expires. */
#define KV_METADATA_TTL_SECONDS		(24 * 60 * 60)

/*
 * The default of busy-timeout: the longest a write waits for its turn
 * (behind this server's other writers, then for SQLite's lock, which any
 * other process may hold) before it is answered 503, which KV Connect
 * clients retry. A transaction that found the database busy before that
 * is tried again at most this many times within the same time.
 */
#define KV_BUSY_TIMEOUT_MS		5000
#define KV_BUSY_RETRIES			3
/*
 * A truncating checkpoint holds off new writers while it waits for readers
 * to leave the WAL, so it waits only this long; a later pass tries again.
 */
#define KV_TRUNCATE_WAIT_MS		20

/*
 * The health endpoint reports a full disk below this much free space: the
 * largest atomic write (800 KiB of mutations) needs about this much WAL.
 */
#define KV_HEALTH_MIN_FREE_BYTES	(1024 * 1024)

/*
 * A storage fault (a full disk, a damaged file, an I/O error) is logged at
 * most once per this interval per database connection, with a count of
 * those since: a full disk fails every write, and the log must stay usable.
 */
#define KV_FAULT_LOG_INTERVAL_MS	10000

/* Expired entries are deleted in batches of this many rows per transaction. */
#define KV_EXPIRY_BATCH			1000

#endif
