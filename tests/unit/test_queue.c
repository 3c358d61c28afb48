/*
 * test_queue.c: unit tests of queue delivery in the storage engine
 * (src/kv_queue.c) through kv.h, printing TAP. Focus: leases move rows
 * between denokv's queue and queue_running tables in due order, a message
 * is never leased twice, finish/renew refuse leases that are not held or
 * ran out and then change nothing, failures follow the message's own
 * backoff schedule, dead letters are written exactly once under a new
 * version and announced, rows written by the Deno CLI are read as it
 * writes them, and the hooks tell consumers and watchers.
 */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "arena.h"
#include "kv.h"
#include "testhelp.h"
#include "testkv.h"

#define NOW	1700000000000LL
#define LEASE	30000

static char		 tmpdir[] = "/tmp/test_queue.XXXXXX";
static struct arena	 A;

/* What the hooks saw. */
static int		 n_queued, n_published, n_changed, n_committed;
static int64_t		 last_changed_version, last_committed_version;

static void
on_queued(void *ctx)
{
	(void)ctx;
	n_queued++;
}

static void
on_changed(void *ctx, const uint8_t *key, size_t len, int64_t version)
{
	(void)ctx;
	(void)key;
	(void)len;
	n_changed++;
	last_changed_version = version;
}

static void
on_committed(void *ctx, int64_t version)
{
	(void)ctx;
	n_committed++;
	last_committed_version = version;
}

static void
on_published(void *ctx)
{
	(void)ctx;
	n_published++;
}

static const struct kv_hooks hooks = {
	.changed = on_changed,
	.committed = on_committed,
	.published = on_published,
	.queued = on_queued,
};

static void
reset_hooks(void)
{
	n_queued = n_published = n_changed = n_committed = 0;
	last_changed_version = last_committed_version = 0;
}

static struct kv_db *
open_db(const char *name, int read_only, sqlite3 **raw)
{
	struct kv_options	 opt = {
		.read_only = read_only,
		.sync = KV_SYNC_FULL,
		.hooks = &hooks,
	};
	char			 path[PATH_MAX], err[256];
	struct kv_db		*db;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((db = kv_open(path, &opt, err, sizeof(err))) == NULL) {
		printf("# kv_open %s: %s\n", path, err);
		return NULL;
	}
	if (raw != NULL && sqlite3_open(path, raw) != SQLITE_OK) {
		kv_close(db);
		return NULL;
	}
	return db;
}

/* Enqueues one message through an ordinary atomic write. */
static int
enqueue(struct kv_db *db, const char *payload, int64_t due,
    const uint32_t *backoff, size_t n_backoff, const struct kv_bytes *dl,
    size_t n_dl)
{
	struct kv_enqueue	 q = {
		.payload = { (const uint8_t *)payload, strlen(payload) },
		.deadline_ms = due,
		.backoff = backoff,
		.n_backoff = n_backoff,
		.undelivered_keys = dl,
		.n_undelivered_keys = n_dl,
	};
	struct kv_write		 w = { .enqueues = &q, .n_enqueues = 1 };
	struct kv_write_result	 res;

	return kv_atomic_write(db, &w, NOW, &A, &res) == KV_OK &&
	    res.committed ? 0 : -1;
}

static size_t
lease(struct kv_db *db, int64_t now, size_t max, struct kv_queue_msg *out)
{
	size_t	 n = 0;

	if (kv_queue_lease(db, now, max, LEASE, &A, out, &n) != KV_OK)
		return (size_t)-1;
	return n;
}

static int
payload_is(const struct kv_queue_msg *m, const char *s)
{
	return m->payload.len == strlen(s) &&
	    memcmp(m->payload.p, s, m->payload.len) == 0;
}

/* --- tests -------------------------------------------------------------------- */

static void
test_lease_order_and_exclusive(void)
{
	struct kv_queue_msg	 m[8];
	struct kv_db		*db;
	sqlite3			*raw;
	char			 buf[128];

	if ((db = open_db("order.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open order.sqlite3");
		return;
	}
	reset_hooks();
	T_OK(enqueue(db, "c", NOW - 10, NULL, 0, NULL, 0) == 0 &&
	    enqueue(db, "a", NOW - 30, NULL, 0, NULL, 0) == 0 &&
	    enqueue(db, "later", NOW + 1000, NULL, 0, NULL, 0) == 0 &&
	    enqueue(db, "b", NOW - 20, NULL, 0, NULL, 0) == 0,
	    "four enqueues commit");
	T_EQ(n_queued, 4, "each commit with an enqueue calls the queued hook");
	t_sql_text(raw, "select id from queue where data = x'61'", buf,
	    sizeof(buf));
	T_OK(t_is_uuid(buf) && buf[14] == '8' && strcmp(buf + 34, "05") == 0,
	    "an id is a version-8 UUID ending in its schedule length (%s)",
	    buf);
	T_EQ(lease(db, NOW, 2, m), 2, "max 2: two messages leased");
	T_OK(payload_is(&m[0], "a") && payload_is(&m[1], "b"),
	    "in due order");
	T_EQ(m[0].attempt, 1, "first delivery is attempt 1");
	T_EQ(m[0].due_ms, NOW - 30, "due time reported");
	/* NOW is a multiple of 128; a default schedule has 5 delays left. */
	T_EQ(m[0].lease_until_ms, NOW + LEASE + (5 - LEASE % 128 + 128) % 128,
	    "lease ends now + lease, rounded up to 5 modulo 128");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 2,
	    "both moved to queue_running");
	T_EQ(t_sql_int(raw, "select count(*) from queue"), 2,
	    "two left in queue");
	T_EQ(t_sql_int(raw, "select deadline from queue_running limit 1"),
	    m[0].lease_until_ms, "queue_running.deadline is the lease end");
	T_EQ(lease(db, NOW, 8, m), 1, "next lease gets only the other due one");
	T_OK(payload_is(&m[0], "c"), "which is c");
	T_EQ(lease(db, NOW, 8, m), 0, "nothing else is due: held ones are "
	    "not leased again");
	T_EQ(lease(db, NOW + 1000, 8, m), 1, "the delayed one at its time");
	T_OK(payload_is(&m[0], "later"), "which is 'later'");
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_finish_and_renew(void)
{
	struct kv_queue_msg	 m[2];
	struct kv_db		*db;
	sqlite3			*raw;
	int64_t			 until, renewed = 0;
	int			 v0;

	if ((db = open_db("finish.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open finish.sqlite3");
		return;
	}
	enqueue(db, "x", NOW, NULL, 0, NULL, 0);
	enqueue(db, "y", NOW, NULL, 0, NULL, 0);
	if (lease(db, NOW, 2, m) != 2) {
		T_OK(0, "lease two");
		goto out;
	}
	v0 = (int)t_sql_int(raw, "select version from data_version");
	until = m[0].lease_until_ms;
	T_EQ(kv_queue_finish(db, m[0].id, until + 1, 1, NOW + 1),
	    KV_ERR_QUEUE_LEASE_NOT_HELD, "finish with a wrong lease end: 409");
	T_EQ(kv_queue_finish(db, "no-such-id", until, 1, NOW + 1),
	    KV_ERR_QUEUE_LEASE_NOT_HELD, "finish of an unknown id: 409");
	T_EQ(kv_queue_finish(db, m[0].id, until, 1, until),
	    KV_ERR_QUEUE_LEASE_EXPIRED, "finish at the lease end: expired");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 2,
	    "refusals change nothing");
	T_EQ(kv_queue_finish(db, m[0].id, until, 1, NOW + 1), KV_OK,
	    "finish(success) of a held lease");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 1,
	    "the message is gone");
	T_EQ(t_sql_int(raw, "select count(*) from queue"), 0,
	    "and not back in queue");
	T_EQ(kv_queue_finish(db, m[0].id, until, 1, NOW + 2),
	    KV_ERR_QUEUE_LEASE_NOT_HELD, "a second finish: not held");
	T_EQ(t_sql_int(raw, "select version from data_version"), v0,
	    "leases and finishes take no versionstamp");

	T_EQ(kv_queue_renew(db, m[1].id, m[1].lease_until_ms, 60000,
	    NOW + 10, &renewed), KV_OK, "renew a held lease");
	T_OK(renewed >= NOW + 10 + 60000 && renewed < NOW + 10 + 60000 + 128 &&
	    renewed % 128 == m[1].lease_until_ms % 128,
	    "new lease end is now + leaseMs, rounded up to the old residue");
	T_EQ(kv_queue_finish(db, m[1].id, m[1].lease_until_ms, 1, NOW + 11),
	    KV_ERR_QUEUE_LEASE_NOT_HELD, "the old lease name is dead");
	until = renewed;
	T_EQ(kv_queue_renew(db, m[1].id, until, 1000, NOW + 12, &renewed),
	    KV_OK, "renew with a shorter lease");
	T_OK(renewed > until && renewed <= until + 128 &&
	    renewed % 128 == until % 128, "never ends earlier than before");
	T_EQ(kv_queue_renew(db, m[1].id, until, 1000, NOW + 13, &renewed),
	    KV_ERR_QUEUE_LEASE_NOT_HELD, "and the name before it is dead");
	T_EQ(kv_queue_finish(db, m[1].id, renewed, 1, NOW + LEASE + 100),
	    KV_OK, "the new one finishes past the old lease end");
out:
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_retry_schedule(void)
{
	static const uint32_t	 sched[] = { 50, 70 };
	struct kv_queue_msg	 m[1];
	struct kv_db		*db;
	sqlite3			*raw;
	char			 buf[128];
	int64_t			 t = NOW;

	if ((db = open_db("retry.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open retry.sqlite3");
		return;
	}
	enqueue(db, "r", NOW, sched, 2, NULL, 0);
	if (lease(db, t, 1, m) != 1) {
		T_OK(0, "lease");
		goto out;
	}
	reset_hooks();
	T_EQ(kv_queue_finish(db, m[0].id, m[0].lease_until_ms, 0, t + 5),
	    KV_OK, "finish(failure)");
	T_EQ(n_queued, 1, "a retry calls the queued hook");
	T_EQ(t_sql_int(raw, "select ts from queue"), t + 5 + 50,
	    "due again after the first delay");
	T_OK(strcmp(t_sql_text(raw, "select backoff_schedule from queue", buf,
	    sizeof(buf)), "[70]") == 0, "with the rest of its schedule (%s)",
	    buf);
	T_EQ(lease(db, t + 54, 1, m), 0, "not before the delay");
	T_EQ(lease(db, t + 55, 1, m), 1, "at the delay");
	T_EQ(m[0].attempt, 2, "attempt 2");
	t += 55;
	/* A lease that runs out counts as a failure, found by a later lease. */
	T_EQ(lease(db, m[0].lease_until_ms - 1, 1, m), 0,
	    "nothing while the lease runs");
	t = m[0].lease_until_ms;
	T_EQ(lease(db, t, 1, m), 0, "expired lease returned, due after 70 ms");
	T_EQ(t_sql_int(raw, "select ts from queue"), t + 70,
	    "the expiry used the next delay");
	T_EQ(lease(db, t + 70, 1, m), 1, "leased again");
	T_EQ(m[0].attempt, 3, "attempt 3");
	T_OK(payload_is(&m[0], "r"), "payload unchanged");
	T_EQ(kv_queue_finish(db, m[0].id, m[0].lease_until_ms, 0, t + 80),
	    KV_OK, "last failure with no dead-letter keys");
	T_EQ(t_sql_int(raw, "select count(*) from queue") +
	    t_sql_int(raw, "select count(*) from queue_running"), 0,
	    "the message is gone");
out:
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_dead_letter(void)
{
	static const uint8_t	 k1[] = { 0x02, 'd', 'l', '1', 0 };
	static const uint8_t	 k2[] = { 0x02, 'd', 'l', '2', 0 };
	static const uint32_t	 none[1];
	struct kv_bytes		 dl[2] = { { k1, sizeof(k1) }, { k2, sizeof(k2) } };
	struct kv_queue_msg	 m[1];
	struct kv_queue_stats	 st;
	struct kv_db		*db;
	sqlite3			*raw;
	int64_t			 v0;
	int			 n = -1;

	if ((db = open_db("dead.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open dead.sqlite3");
		return;
	}
	T_EQ(kv_queue_stats(db, NOW, &st), KV_OK, "stats of a new file");
	T_EQ(st.dead_lettered, 0, "no dead letters (no counter table yet)");
	/* An empty schedule: the first failure is the last. */
	enqueue(db, "\xff\x0f\x22\x01x", NOW, none, 0, dl, 2);
	v0 = t_sql_int(raw, "select version from data_version");
	if (lease(db, NOW, 1, m) != 1) {
		T_OK(0, "lease");
		goto out;
	}
	T_EQ(m[0].attempt, 1, "attempt 1 of an empty schedule");
	reset_hooks();
	/* The lease runs out; the housekeeper's pass returns it. */
	T_EQ(kv_queue_return_expired(db, m[0].lease_until_ms - 1, 100, &n),
	    KV_OK, "return_expired before the lease end");
	T_EQ(n, 0, "returns nothing");
	T_EQ(kv_queue_return_expired(db, m[0].lease_until_ms, 100, &n), KV_OK,
	    "return_expired at the lease end");
	T_EQ(n, 1, "returns the lease");
	T_EQ(t_sql_int(raw, "select count(*) from kv where v_encoding = 1 and"
	    " v = x'ff0f220178'"), 2, "both dead-letter keys hold the payload"
	    " as a V8 value");
	T_EQ(t_sql_int(raw, "select version from data_version"), v0 + 1,
	    "under one new version");
	T_EQ(t_sql_int(raw, "select count(distinct version) from kv"), 1,
	    "the same version on both keys");
	T_EQ(n_changed, 2, "watchers told of both keys");
	T_EQ(last_changed_version, v0 + 1, "with the new version");
	T_OK(n_committed == 1 && last_committed_version == v0 + 1,
	    "the new version is reported as committed once");
	T_EQ(n_published, 1, "published once");
	T_EQ(t_sql_int(raw, "select count(*) from queue") +
	    t_sql_int(raw, "select count(*) from queue_running"), 0,
	    "the message is gone");
	T_EQ(kv_queue_return_expired(db, m[0].lease_until_ms + 1000, 100, &n),
	    KV_OK, "another pass");
	T_EQ(n, 0, "finds nothing: dead-lettered exactly once");
	T_EQ(t_sql_int(raw, "select version from data_version"), v0 + 1,
	    "and writes nothing");
	T_EQ(kv_queue_stats(db, NOW, &st), KV_OK, "stats");
	T_EQ(st.dead_lettered, 1, "stats count one dead letter");
	/* Out of retries without keys to write still counts. */
	enqueue(db, "y", NOW, none, 0, NULL, 0);
	if (lease(db, NOW, 1, m) != 1) {
		T_OK(0, "lease the second");
		goto out;
	}
	T_EQ(kv_queue_finish(db, m[0].id, m[0].lease_until_ms, 0, NOW + 1),
	    KV_OK, "the second fails with no retries left");
	T_EQ(kv_queue_stats(db, NOW, &st), KV_OK, "stats");
	T_EQ(st.dead_lettered, 2, "two dead letters");
	sqlite3_close(raw);
	kv_close(db);
	if ((db = open_db("dead.sqlite3", 1, &raw)) == NULL) {
		T_OK(0, "reopen dead.sqlite3");
		return;
	}
	T_EQ(kv_queue_stats(db, NOW, &st), KV_OK, "stats after reopening");
	T_EQ(st.dead_lettered, 2, "the count is kept in the file");
out:
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_deno_rows_and_events(void)
{
	struct kv_queue_msg	 m[4];
	struct kv_queue_events	 ev;
	struct kv_queue_stats	 st;
	struct kv_db		*db;
	sqlite3			*raw;

	if ((db = open_db("deno.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open deno.sqlite3");
		return;
	}
	T_EQ(kv_queue_next_events(db, &ev), KV_OK, "next events, empty");
	T_OK(ev.next_due_ms == 0 && ev.next_lease_end_ms == 0,
	    "nothing due, nothing leased");
	/* Rows as the Deno CLI writes them: v4 ids, schedule tails. */
	sqlite3_exec(raw, "insert into queue values (" "1700000000000,"
	    " '0b6c2d1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e', x'ff0f2201', "
	    "'[5000,30000,60000]', '[]');"
	    "insert into queue values (1700000000001,"
	    " '1b6c2d1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e', x'ff0f2202', '[7]',"
	    " '[]');"
	    "insert into queue values (1700000005000,"
	    " '2b6c2d1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e', x'ff0f2203', 'null',"
	    " '[]');"
	    "insert into queue_running values (1699999999000,"
	    " '3b6c2d1e-4f3a-4b5c-9d8e-7f6a5b4c3d2e', x'ff0f2204', '[]',"
	    " '[[1,2,3]]');", NULL, NULL, NULL);
	T_EQ(kv_queue_next_events(db, &ev), KV_OK, "next events");
	T_EQ(ev.next_due_ms, NOW, "earliest due");
	T_EQ(ev.next_lease_end_ms, NOW - 1000, "earliest lease end");
	T_EQ(kv_queue_stats(db, NOW + 1, &st), KV_OK, "stats");
	T_OK(st.ready == 2 && st.delayed == 1 && st.running == 1 &&
	    st.expired == 1 && st.oldest_due_age_ms == 1,
	    "ready 2, delayed 1, running 1 (expired), oldest due 1 ms ago");
	T_EQ(lease(db, NOW + 1, 4, m), 2, "two due");
	T_EQ(m[0].attempt, 3, "a default-schedule tail of 3: attempt 3");
	T_EQ(m[1].attempt, 0, "a custom schedule elsewhere: unknown (0)");
	T_EQ(t_sql_int(raw, "select count(*) from kv where k = x'010203'"), 1,
	    "the Deno CLI's expired lease was returned: dead-lettered");
	T_EQ(lease(db, NOW + 5000, 4, m), 1, "a 'null' schedule is read");
	T_EQ(kv_queue_finish(db, m[0].id, m[0].lease_until_ms, 0, NOW + 5001),
	    KV_OK, "and fails as having no retries left");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running where"
	    " id like '2b6c%'") + t_sql_int(raw, "select count(*) from queue"
	    " where id like '2b6c%'"), 0, "gone");
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_finish_many(void)
{
	struct kv_queue_msg	 m[3];
	struct kv_queue_outcome	 o[4];
	struct kv_db		*db;
	sqlite3			*raw;

	if ((db = open_db("many.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open many.sqlite3");
		return;
	}
	enqueue(db, "m0", NOW, NULL, 0, NULL, 0);
	enqueue(db, "m1", NOW + 1, NULL, 0, NULL, 0);
	enqueue(db, "m2", NOW + 2, NULL, 0, NULL, 0);
	if (lease(db, NOW + 5, 3, m) != 3) {
		T_OK(0, "lease three");
		goto out;
	}
	o[0] = (struct kv_queue_outcome){ m[0].id, m[0].lease_until_ms, 1, 0 };
	o[1] = (struct kv_queue_outcome){ m[1].id, m[1].lease_until_ms + 7, 1,
	    0 };
	o[2] = (struct kv_queue_outcome){ m[2].id, m[2].lease_until_ms, 0, 0 };
	o[3] = o[0];	/* the same lease twice in one batch */
	reset_hooks();
	T_EQ(kv_queue_finish_many(db, o, 4, NOW + 10), KV_OK,
	    "a batch of four outcomes");
	T_EQ(o[0].result, KV_OK, "held, success: done");
	T_EQ(o[1].result, KV_ERR_QUEUE_LEASE_NOT_HELD, "wrong lease: refused");
	T_EQ(o[2].result, KV_OK, "held, failure: done");
	T_EQ(o[3].result, KV_ERR_QUEUE_LEASE_NOT_HELD,
	    "the same lease again in the batch: not held any more");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 1,
	    "only the refused one is still leased");
	T_EQ(t_sql_int(raw, "select ts from queue"), NOW + 10 + 100,
	    "the failed one waits for its first retry");
	T_EQ(n_queued, 1, "consumers are told once");
out:
	sqlite3_close(raw);
	kv_close(db);
}

static void
test_read_only(void)
{
	struct kv_queue_msg	 m[1];
	struct kv_db		*rw, *ro;
	size_t			 n = 0;

	if ((rw = open_db("ro.sqlite3", 0, NULL)) == NULL) {
		T_OK(0, "open ro.sqlite3");
		return;
	}
	enqueue(rw, "z", NOW, NULL, 0, NULL, 0);
	if ((ro = open_db("ro.sqlite3", 1, NULL)) == NULL) {
		T_OK(0, "open read-only");
		kv_close(rw);
		return;
	}
	T_EQ(kv_queue_lease(ro, NOW, 1, LEASE, &A, m, &n), KV_ERR_READ_ONLY,
	    "lease on a read-only database is refused");
	T_EQ(lease(rw, NOW, 1, m), 1, "the message is still there");
	kv_close(ro);
	kv_close(rw);
}

/*
 * A lease name is (id, lease end). A message failed early under a long
 * lease and leased again under a shorter one can get the very same lease
 * end; the first lease's name must not then finish the second delivery.
 */
static void
test_lease_name_not_reused(void)
{
	struct kv_queue_msg	 m[1];
	struct kv_db		*db;
	sqlite3			*raw;
	int64_t			 first, renewed = 0;
	size_t			 n = 0;
	char			 id[KV_QUEUE_ID_MAX + 1];

	if ((db = open_db("names.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open names.sqlite3");
		return;
	}
	enqueue(db, "r", NOW, NULL, 0, NULL, 0);
	if (kv_queue_lease(db, NOW, 1, 30000, &A, m, &n) != KV_OK || n != 1) {
		T_OK(0, "lease r for 30 s");
		goto out;
	}
	snprintf(id, sizeof(id), "%s", m[0].id);
	first = m[0].lease_until_ms;
	T_OK(first >= NOW + 30000, "the lease lasts at least its 30 s");
	T_EQ(kv_queue_finish(db, id, first, 0, NOW + 1), KV_OK,
	    "failed at once: retried after 100 ms");
	/* Leased again for 10 s exactly when that ends where the first did. */
	if (kv_queue_lease(db, first - 10000, 1, 10000, &A, m, &n) != KV_OK ||
	    n != 1) {
		T_OK(0, "lease r again for 10 s");
		goto out;
	}
	T_OK(m[0].lease_until_ms >= first - 10000 + 10000,
	    "the second lease lasts at least its 10 s");
	T_OK(m[0].lease_until_ms != first,
	    "and is not named like the first");
	T_EQ(kv_queue_finish(db, id, first, 1, first - 9999),
	    KV_ERR_QUEUE_LEASE_NOT_HELD,
	    "the first lease's name, used again, is refused");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 1,
	    "the second delivery is still held");
	T_EQ(kv_queue_renew(db, id, m[0].lease_until_ms, 1000, first - 9998,
	    &renewed), KV_OK, "a short renewal of the second lease");
	T_OK(renewed > m[0].lease_until_ms && renewed != first,
	    "ends later, under a name of its own");
out:
	sqlite3_close(raw);
	kv_close(db);
}

/*
 * Rows another program wrote: a message id too long to name in a lease
 * and a delay too large to add to the clock must neither block the queue
 * nor wrap the due time round.
 */
static void
test_hostile_rows(void)
{
	struct kv_queue_msg	 m[2];
	struct kv_db		*db;
	sqlite3			*raw;
	int			 n = 0;

	if ((db = open_db("hostile.sqlite3", 0, &raw)) == NULL) {
		T_OK(0, "open hostile.sqlite3");
		return;
	}
	sqlite3_exec(raw, "insert into queue values (1699999999000,"
	    " printf('%.80c', 'x'), x'ff0f2201', '[]', '[]');"
	    "insert into queue_running values (1699999999000,"
	    " printf('%.80c', 'y'), x'ff0f2202', '[]', '[]');"
	    "insert into queue_running values (1699999999500,"
	    " 'huge-delay', x'ff0f2203', '[9223372036854775807]', '[]');",
	    NULL, NULL, NULL);
	enqueue(db, "ok", NOW, NULL, 0, NULL, 0);
	T_EQ(kv_queue_return_expired(db, NOW, 1, &n), KV_OK,
	    "return expired leases, one at a time");
	T_EQ(n, 1, "a lease with a long id does not hold up the others");
	T_OK(t_sql_int(raw, "select ts from queue where id = 'huge-delay'") >=
	    NOW, "a huge delay does not wrap the due time into the past");
	T_EQ(lease(db, NOW, 1, m), 1,
	    "a due row with a long id does not block the queue");
	T_OK(payload_is(&m[0], "ok"), "the message behind it is leased");
	sqlite3_close(raw);
	kv_close(db);
}

int
main(void)
{
	t_make_dir(tmpdir);
	arena_init(&A, 64 * 1024);
	test_lease_order_and_exclusive();
	test_finish_and_renew();
	test_retry_schedule();
	test_dead_letter();
	test_deno_rows_and_events();
	test_finish_many();
	test_read_only();
	test_lease_name_not_reused();
	test_hostile_rows();
	arena_fini(&A);
	t_remove_dir(tmpdir);
	return t_done();
}
