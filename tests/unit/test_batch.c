/*
 * test_batch.c: unit tests of group commit, kv_atomic_write_batch()
 * (src/kv_sqlite.c), printing TAP. Focus: versionstamps strictly
 * increasing in batch order and equal to what reads return; a write's
 * checks seeing the batch's earlier writes; a failed check or a write that
 * fails outright rolled back alone while the others commit; enqueues and
 * the watch hooks (every committed version recorded with its keys, one
 * publish per batch); a COMMIT that fails (an fsync error) acknowledging
 * nothing, also after the process dies and the file is recovered; a
 * batch-level refusal (read-only, busy, no write turn) given to every
 * write; two
 * processes committing batches on one file at once (versionstamps unique
 * and ordered, no sum lost); and a
 * differential test: seeded random atomic writes applied one by one with
 * kv_atomic_write and in random batches, with the same outcomes and the
 * same final file, also under a size limit that refuses writes (507) in
 * the middle of batches. TEST_BATCH_SEED=N replays one seed.
 */
#include <sys/mman.h>
#include <sys/wait.h>

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

#define NOW		1700000000000LL
#define MAX_BATCH	16

static char		 tmpdir[] = "/tmp/test_batch.XXXXXX";
static struct arena	 A;

/* --- helpers --------------------------------------------------------------- */

static void
db_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

/* Opens tmpdir/name with opt, or bails out. */
static struct kv_db *
open_opts(const char *name, const struct kv_options *opt)
{
	struct kv_db	*db;
	char		 path[PATH_MAX], err[256] = "";

	db_path(path, sizeof(path), name);
	if ((db = kv_open(path, opt, err, sizeof(err))) == NULL)
		T_BAIL("kv_open %s: %s", path, err);
	return db;
}

static struct kv_db *
open_with(const char *name, int read_only, int busy_ms,
    const struct kv_hooks *hooks)
{
	struct kv_options	 opt = {
		.read_only = read_only,
		.sync = KV_SYNC_FULL,
		.busy_timeout_ms = busy_ms,
		.hooks = hooks,
	};

	return open_opts(name, &opt);
}

static struct kv_db *
open_rw(const char *name)
{
	return open_with(name, 0, 0, NULL);
}

static sqlite3 *
raw_open(const char *name)
{
	char	 path[PATH_MAX];

	db_path(path, sizeof(path), name);
	return t_raw_open(path);
}

static void
version_vs(uint64_t v, uint8_t vs[KV_VERSIONSTAMP_BYTES])
{
	for (int i = 7; i >= 0; i--) {
		vs[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	vs[8] = vs[9] = 0;
}

static int64_t
version_of(struct kv_db *db)
{
	int64_t	 v = -1;

	return kv_current_version(db, &v) == KV_OK ? v : -1;
}

static struct kv_mutation
set_m(const char *key, const char *value)
{
	struct kv_mutation	 m;

	memset(&m, 0, sizeof(m));
	m.type = KV_MUT_SET;
	m.key = t_str(key);
	m.value = t_str(value);
	m.encoding = KV_ENC_BYTES;
	return m;
}

/* Sums the V8 number 1 into key: fails on a key holding bytes. */
static struct kv_mutation
sum_m(const char *key)
{
	static const uint8_t	 one[] = { 0xFF, 0x0F, 'N', 0, 0, 0, 0, 0, 0,
	    0xF0, 0x3F };
	struct kv_mutation	 m;

	memset(&m, 0, sizeof(m));
	m.type = KV_MUT_SUM;
	m.key = t_str(key);
	m.value = (struct kv_bytes){ one, sizeof(one) };
	m.encoding = KV_ENC_V8;
	return m;
}

/* Reads one key: 1 and its entry (arena-owned), 0 absent, -1 error. */
static int
read_one(struct kv_db *db, const char *key, struct kv_entry *e)
{
	struct kv_range		 r = { .limit = 1 };
	struct kv_range_result	 res;
	char			 end[64];

	/* The range [key, key + "\0"): the key alone. */
	snprintf(end, sizeof(end), "%s", key);
	r.start = t_str(key);
	r.end = (struct kv_bytes){ (const uint8_t *)end, strlen(key) + 1 };
	arena_reset(&A);
	if (kv_snapshot_read(db, &r, 1, NOW, &A, &res) != KV_OK)
		return -1;
	if (res.n == 0)
		return 0;
	*e = res.entries[0];
	return 1;
}

/* Reads one key: 1 and its version in *version, 0 absent, -1 error. */
static int
get_version(struct kv_db *db, const char *key, uint64_t *version)
{
	struct kv_entry	 e;
	int		 rc = read_one(db, key, &e);

	if (rc == 1)
		*version = t_vs_version(e.versionstamp);
	return rc;
}

/* The KvU64 stored at key; -1 if there is none. */
static int64_t
get_u64(struct kv_db *db, const char *key)
{
	struct kv_entry	 e;
	uint64_t	 u = 0;

	if (read_one(db, key, &e) != 1 || e.encoding != KV_ENC_LE64 ||
	    e.value.len != 8)
		return -1;
	for (int i = 7; i >= 0; i--)
		u = (u << 8) | e.value.p[i];
	return (int64_t)u;
}

static int
absent(struct kv_db *db, const char *key)
{
	uint64_t	 v;

	return get_version(db, key, &v) == 0;
}

/* A batch of n writes, results in res/errs; the arena is reset first. */
static enum kv_err
run_batch(struct kv_db *db, const struct kv_write *w, size_t n,
    struct kv_write_result *res, enum kv_err *errs)
{
	const struct kv_write	*wp[MAX_BATCH];

	for (size_t i = 0; i < n; i++)
		wp[i] = &w[i];
	arena_reset(&A);
	return kv_atomic_write_batch(db, wp, n, NOW, &A, res, errs);
}

/* --- the hooks, recorded --------------------------------------------------- */

#define REC_MAX	64

struct recorder {
	int		 turns_open, turns;
	int		 n_changed, n_committed, published, queued;
	int		 changed_outside_turn, committed_outside_turn;
	char		 changed_key[REC_MAX][32];
	int64_t		 changed_version[REC_MAX];
	int64_t		 committed_version[REC_MAX];
};

static int
rec_write_begin(void *ctx, int timeout_ms)
{
	struct recorder	*r = ctx;

	(void)timeout_ms;
	r->turns_open++;
	r->turns++;
	return 0;
}

static void
rec_write_end(void *ctx)
{
	struct recorder	*r = ctx;

	r->turns_open--;
}

static void
rec_changed(void *ctx, const uint8_t *key, size_t len, int64_t version)
{
	struct recorder	*r = ctx;

	r->changed_outside_turn += r->turns_open != 1;
	if (r->n_changed < REC_MAX) {
		snprintf(r->changed_key[r->n_changed], 32, "%.*s",
		    (int)len, (const char *)key);
		r->changed_version[r->n_changed] = version;
	}
	r->n_changed++;
}

static void
rec_committed(void *ctx, int64_t version)
{
	struct recorder	*r = ctx;

	r->committed_outside_turn += r->turns_open != 1;
	if (r->n_committed < REC_MAX)
		r->committed_version[r->n_committed] = version;
	r->n_committed++;
}

static void
rec_published(void *ctx)
{
	((struct recorder *)ctx)->published++;
}

static void
rec_queued(void *ctx)
{
	((struct recorder *)ctx)->queued++;
}

static struct kv_hooks
recorder_hooks(struct recorder *r)
{
	struct kv_hooks	 h = {
		.ctx = r,
		.write_begin = rec_write_begin,
		.write_end = rec_write_end,
		.changed = rec_changed,
		.committed = rec_committed,
		.published = rec_published,
		.queued = rec_queued,
	};

	memset(r, 0, sizeof(*r));
	return h;
}

/* --- independent writes ------------------------------------------------------ */

static void
test_independent(void)
{
	static const char *const keys[] = { "a", "b", "c", "d", "e" };
	struct kv_mutation	 m[5];
	struct kv_write		 w[5];
	struct kv_write_result	 res[5];
	enum kv_err		 errs[5];
	struct kv_db		*db = open_rw("independent.sqlite3");
	uint64_t		 v;
	int64_t			 before = version_of(db);
	int			 ok = 1;

	memset(w, 0, sizeof(w));
	for (int i = 0; i < 5; i++) {
		m[i] = set_m(keys[i], "value");
		w[i].mutations = &m[i];
		w[i].n_mutations = 1;
	}
	T_OK(t_err_is(run_batch(db, w, 5, res, errs), KV_OK),
	    "independent: a batch of five writes succeeds");
	for (int i = 0; i < 5; i++)
		ok &= errs[i] == KV_OK && res[i].committed &&
		    t_vs_version(res[i].versionstamp) ==
		    (uint64_t)before + 1 + (uint64_t)i;
	T_OK(ok, "independent: each committed, versionstamps %lld+1.. in"
	    " batch order, one apart", (long long)before);
	for (int i = 0; ok && i < 5; i++)
		ok &= get_version(db, keys[i], &v) == 1 &&
		    v == t_vs_version(res[i].versionstamp);
	T_OK(ok, "independent: each key reads back with its write's"
	    " versionstamp");
	T_EQ(version_of(db), before + 5, "independent: the data version"
	    " moved by five");
	kv_close(db);
}

/* --- a write's checks see the batch's earlier writes ---------------------- */

static void
test_sees_earlier(void)
{
	struct kv_mutation	 m1 = set_m("a", "1"), m2 = set_m("b", "2"),
				 m3 = set_m("c", "3");
	struct kv_check		 c2 = { .key = t_str("a") },
				 c3 = { .key = t_str("a"), .must_be_absent = 1 };
	struct kv_write		 w[3] = {
		{ .mutations = &m1, .n_mutations = 1 },
		{ .checks = &c2, .n_checks = 1, .mutations = &m2,
		    .n_mutations = 1 },
		{ .checks = &c3, .n_checks = 1, .mutations = &m3,
		    .n_mutations = 1 },
	};
	struct kv_write_result	 res[3];
	enum kv_err		 errs[3];
	struct kv_db		*db = open_rw("earlier.sqlite3");
	int64_t			 before = version_of(db);

	/* Write 2 expects the versionstamp write 1 is about to get. */
	version_vs((uint64_t)before + 1, c2.versionstamp);
	T_OK(t_err_is(run_batch(db, w, 3, res, errs), KV_OK),
	    "earlier: the batch succeeds");
	T_OK(errs[0] == KV_OK && res[0].committed &&
	    t_vs_version(res[0].versionstamp) == (uint64_t)before + 1,
	    "earlier: write 1 sets a");
	T_OK(errs[1] == KV_OK && res[1].committed &&
	    t_vs_version(res[1].versionstamp) == (uint64_t)before + 2,
	    "earlier: write 2's check of a against write 1's versionstamp"
	    " passes");
	T_OK(errs[2] == KV_OK && !res[2].committed &&
	    res[2].n_failed_checks == 1 && res[2].failed_checks[0] == 0,
	    "earlier: write 3's check that a is absent fails (it sees"
	    " write 1)");
	T_OK(absent(db, "c") && !absent(db, "b"), "earlier: b written, c"
	    " not");
	kv_close(db);
}

/* --- a failed check in the middle --------------------------------------- */

static void
test_failed_check_middle(void)
{
	struct kv_mutation	 m[3] = { set_m("x1", "1"), set_m("x2", "2"),
	    set_m("x3", "3") };
	struct kv_mutation	 m2b = set_m("x2b", "2");
	struct kv_mutation	 m2[2];
	struct kv_check		 c = { .key = t_str("nowhere") };
	struct kv_write		 w[3] = {
		{ .mutations = &m[0], .n_mutations = 1 },
		{ .checks = &c, .n_checks = 1, .mutations = m2,
		    .n_mutations = 2 },
		{ .mutations = &m[2], .n_mutations = 1 },
	};
	struct kv_write_result	 res[3];
	enum kv_err		 errs[3];
	struct kv_db		*db = open_rw("check_middle.sqlite3");
	int64_t			 before = version_of(db);

	m2[0] = m[1];
	m2[1] = m2b;
	version_vs(1, c.versionstamp);	/* "nowhere" is absent: fails */
	T_OK(t_err_is(run_batch(db, w, 3, res, errs), KV_OK),
	    "check in the middle: the batch succeeds");
	T_OK(errs[1] == KV_OK && !res[1].committed &&
	    res[1].n_failed_checks == 1, "check in the middle: write 2 is"
	    " not committed, its check listed as failed");
	T_OK(res[0].committed && res[2].committed &&
	    t_vs_version(res[0].versionstamp) == (uint64_t)before + 1 &&
	    t_vs_version(res[2].versionstamp) == (uint64_t)before + 2,
	    "check in the middle: writes 1 and 3 commit with consecutive"
	    " versionstamps");
	T_OK(absent(db, "x2") && absent(db, "x2b") && !absent(db, "x1") &&
	    !absent(db, "x3"), "check in the middle: nothing of write 2,"
	    " all of 1 and 3");
	T_EQ(version_of(db), before + 2, "check in the middle: two versions"
	    " taken");
	kv_close(db);
}

/* --- a write that fails outright in the middle ---------------------------- */

static void
test_error_middle(void)
{
	struct kv_mutation	 pre = set_m("s", "a string");
	struct kv_mutation	 m1 = set_m("p1", "1"), m3 = set_m("p3", "3");
	struct kv_mutation	 m2[3];
	struct kv_write		 w0 = { .mutations = &pre, .n_mutations = 1 };
	struct kv_write		 w[3] = {
		{ .mutations = &m1, .n_mutations = 1 },
		{ .mutations = m2, .n_mutations = 3 },
		{ .mutations = &m3, .n_mutations = 1 },
	};
	struct kv_write_result	 res[3], r0;
	enum kv_err		 errs[3], e0;
	struct kv_db		*db = open_rw("error_middle.sqlite3");
	int64_t			 before;

	/* Write 2 sets two keys, then sums into a string: the sum fails. */
	m2[0] = set_m("p2", "2");
	m2[1] = set_m("s", "overwritten");
	m2[2] = sum_m("s");
	m2[1].key = t_str("p2b");
	T_OK(run_batch(db, &w0, 1, &r0, &e0) == KV_OK && e0 == KV_OK &&
	    r0.committed, "error in the middle: s holds bytes");
	before = version_of(db);
	T_OK(t_err_is(run_batch(db, w, 3, res, errs), KV_OK),
	    "error in the middle: the batch itself succeeds");
	T_OK(t_err_is(errs[1], KV_ERR_SUM_TYPE_MISMATCH) && !res[1].committed,
	    "error in the middle: write 2 fails with its own error");
	T_OK(errs[0] == KV_OK && errs[2] == KV_OK && res[0].committed &&
	    res[2].committed && t_vs_version(res[0].versionstamp) ==
	    (uint64_t)before + 1 && t_vs_version(res[2].versionstamp) ==
	    (uint64_t)before + 2, "error in the middle: writes 1 and 3"
	    " commit with consecutive versionstamps");
	T_OK(absent(db, "p2") && absent(db, "p2b") && !absent(db, "p1") &&
	    !absent(db, "p3"), "error in the middle: nothing of write 2"
	    " (its sets before the sum rolled back), all of 1 and 3");
	T_EQ(version_of(db), before + 2, "error in the middle: two versions"
	    " taken");
	kv_close(db);
}

/* --- the size limit reached in the middle of a batch ----------------------- */

#define LIMIT_VALUE	60000
#define LIMIT_SETS	8

/*
 * A database near its size limit: a write too big for the room left is
 * refused (507) alone, as it would be on its own; the batch's other writes,
 * before and after it, commit. SQLite rolls back the whole transaction on
 * SQLITE_FULL from a statement that keeps no statement journal (a one-row
 * insert), so the batch must be run again without the write that cannot fit.
 */
static void
test_size_limit_middle(void)
{
	static char		 big[LIMIT_VALUE];
	struct recorder		 rec;
	struct kv_hooks		 h = recorder_hooks(&rec);
	struct kv_options	 opt = {
		.sync = KV_SYNC_FULL,
		.max_size_bytes = 256 * 1024,
		.hooks = &h,
	};
	struct kv_mutation	 m1 = set_m("l1", "1"), m3 = set_m("l3", "3");
	struct kv_mutation	 m2[LIMIT_SETS];
	struct kv_write		 w[3] = {
		{ .mutations = &m1, .n_mutations = 1 },
		{ .mutations = m2, .n_mutations = LIMIT_SETS },
		{ .mutations = &m3, .n_mutations = 1 },
	};
	static const char *const big_keys[LIMIT_SETS] = {
		"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7",
	};
	struct kv_write_result	 res[3];
	enum kv_err		 errs[3];
	struct kv_db		*db;
	char			 path[PATH_MAX], err[256] = "";
	int64_t			 before;

	memset(big, 'x', sizeof(big));
	for (size_t i = 0; i < LIMIT_SETS; i++) {
		m2[i] = set_m(big_keys[i], "");
		m2[i].value = (struct kv_bytes){ (const uint8_t *)big,
		    sizeof(big) };
	}
	db_path(path, sizeof(path), "size_limit.sqlite3");
	if ((db = kv_open(path, &opt, err, sizeof(err))) == NULL)
		T_BAIL("kv_open %s: %s", path, err);
	before = version_of(db);
	T_OK(t_err_is(run_batch(db, w, 3, res, errs), KV_OK),
	    "size limit in the middle: the batch itself succeeds");
	T_OK(t_err_is(errs[1], KV_ERR_SIZE_LIMIT) && !res[1].committed,
	    "size limit in the middle: the write too big is refused, 507");
	T_OK(t_err_is(errs[0], KV_OK) && t_err_is(errs[2], KV_OK) &&
	    res[0].committed && res[2].committed &&
	    t_vs_version(res[0].versionstamp) == (uint64_t)before + 1 &&
	    t_vs_version(res[2].versionstamp) == (uint64_t)before + 2,
	    "size limit in the middle: the writes before and after it commit"
	    " with consecutive versionstamps");
	T_OK(!absent(db, "l1") && !absent(db, "l3") && absent(db, "b0"),
	    "size limit in the middle: all of writes 1 and 3, nothing of 2");
	T_EQ(version_of(db), before + 2, "size limit in the middle: two"
	    " versions taken");
	T_OK(rec.n_changed == 2 && strcmp(rec.changed_key[0], "l1") == 0 &&
	    strcmp(rec.changed_key[1], "l3") == 0 &&
	    rec.changed_version[0] == before + 1 &&
	    rec.changed_version[1] == before + 2 && rec.n_committed == 2 &&
	    rec.published == 1, "size limit in the middle: the watchers hear"
	    " of writes 1 and 3, once, and nothing of the refused write");
	kv_close(db);
}

/* --- enqueues and the hooks ------------------------------------------------ */

static void
test_enqueues_and_hooks(void)
{
	struct recorder		 rec;
	struct kv_hooks		 h = recorder_hooks(&rec);
	struct kv_enqueue	 q[4];
	struct kv_mutation	 m[4] = { set_m("q1", "1"), set_m("q2", "2"),
	    sum_m("q1"), set_m("q4", "4") };
	struct kv_check		 c = { .key = t_str("q1"), .must_be_absent = 1 };
	struct kv_write		 w[4] = {
		{ .mutations = &m[0], .n_mutations = 1, .enqueues = &q[0],
		    .n_enqueues = 1 },
		{ .checks = &c, .n_checks = 1, .mutations = &m[1],
		    .n_mutations = 1, .enqueues = &q[1], .n_enqueues = 1 },
		{ .mutations = &m[2], .n_mutations = 1, .enqueues = &q[2],
		    .n_enqueues = 1 },
		{ .mutations = &m[3], .n_mutations = 1, .enqueues = &q[3],
		    .n_enqueues = 1 },
	};
	struct kv_write_result	 res[4];
	enum kv_err		 errs[4];
	struct kv_db		*db = open_with("enqueue.sqlite3", 0, 0, &h);
	sqlite3			*raw = raw_open("enqueue.sqlite3");
	int64_t			 before = version_of(db);

	memset(q, 0, sizeof(q));
	q[0].payload = t_str("one");
	q[1].payload = t_str("two");
	q[2].payload = t_str("three");
	q[3].payload = t_str("four");
	for (int i = 0; i < 4; i++)
		q[i].deadline_ms = NOW + i;
	/* 1 commits; 2 fails its check (q1 exists); 3 sums into bytes. */
	T_OK(t_err_is(run_batch(db, w, 4, res, errs), KV_OK),
	    "enqueues: the batch succeeds");
	T_OK(res[0].committed && !res[1].committed && errs[2] != KV_OK &&
	    res[3].committed, "enqueues: writes 1 and 4 commit, 2 fails a"
	    " check, 3 fails");
	T_EQ(t_sql_int(raw, "select count(*) from queue"), 2,
	    "enqueues: two messages queued");
	T_EQ(t_sql_int(raw, "select count(*) from queue where data in"
	    " (x'6f6e65', x'666f7572')"), 2, "enqueues: those of writes 1"
	    " and 4");
	T_EQ(rec.turns, 1, "hooks: one write turn for the batch");
	T_EQ(rec.n_committed, 2, "hooks: committed once per committed"
	    " write");
	T_OK(rec.n_committed == 2 && rec.committed_version[0] == before + 1 &&
	    rec.committed_version[1] == before + 2, "hooks: with their"
	    " versions, in order");
	T_OK(rec.n_changed == 2 && strcmp(rec.changed_key[0], "q1") == 0 &&
	    rec.changed_version[0] == before + 1 &&
	    strcmp(rec.changed_key[1], "q4") == 0 &&
	    rec.changed_version[1] == before + 2, "hooks: each write's keys"
	    " marked with its version, nothing of the failed ones");
	T_OK(rec.changed_outside_turn == 0 && rec.committed_outside_turn == 0,
	    "hooks: recorded inside the write turn");
	T_EQ(rec.published, 1, "hooks: published once");
	T_EQ(rec.queued, 1, "hooks: the queue signalled once");

	/* A batch in which nothing commits publishes nothing. */
	rec.published = rec.queued = rec.n_committed = 0;
	T_OK(run_batch(db, &w[1], 2, res, errs) == KV_OK && !res[0].committed &&
	    errs[1] != KV_OK, "nothing committed: the batch succeeds");
	T_OK(rec.published == 0 && rec.queued == 0 && rec.n_committed == 0,
	    "nothing committed: no version recorded, nothing published");
	T_EQ(version_of(db), before + 2, "nothing committed: the data version"
	    " stays");
	sqlite3_close(raw);
	kv_close(db);
}

/* --- batch-level refusals ---------------------------------------------------- */

/* A write turn that never comes (the writer ahead is stuck). */
static int
no_turn(void *ctx, int timeout_ms)
{
	(void)ctx;
	(void)timeout_ms;
	return -1;
}

static void
test_refusals(void)
{
	struct kv_mutation	 m[2] = { set_m("r1", "1"), set_m("r2", "2") };
	struct kv_write		 w[2] = {
		{ .mutations = &m[0], .n_mutations = 1 },
		{ .mutations = &m[1], .n_mutations = 1 },
	};
	struct kv_write_result	 res[2];
	enum kv_err		 errs[2];
	struct kv_db		*db = open_rw("refusals.sqlite3"), *ro;
	struct kv_hooks		 stuck = { .write_begin = no_turn };
	sqlite3			*raw;

	kv_close(db);
	ro = open_with("refusals.sqlite3", 1, 0, NULL);
	T_OK(t_err_is(run_batch(ro, w, 2, res, errs), KV_ERR_READ_ONLY) &&
	    errs[0] == KV_ERR_READ_ONLY && errs[1] == KV_ERR_READ_ONLY &&
	    !res[0].committed && !res[1].committed,
	    "read-only: the batch and each write refused");
	kv_close(ro);

	db = open_with("refusals.sqlite3", 0, 200, NULL);
	raw = raw_open("refusals.sqlite3");
	if (sqlite3_exec(raw, "begin immediate", NULL, NULL, NULL) !=
	    SQLITE_OK)
		T_BAIL("another connection takes the write lock");
	T_OK(t_err_is(run_batch(db, w, 2, res, errs), KV_ERR_BUSY) &&
	    errs[0] == KV_ERR_BUSY && errs[1] == KV_ERR_BUSY &&
	    !res[0].committed && !res[1].committed,
	    "busy: the batch and each write answered busy");
	sqlite3_exec(raw, "rollback", NULL, NULL, NULL);
	T_OK(absent(db, "r1") && absent(db, "r2"), "busy: nothing written");
	T_OK(run_batch(db, w, 2, res, errs) == KV_OK && res[0].committed &&
	    res[1].committed, "busy: once the lock is free the batch"
	    " commits");
	sqlite3_close(raw);
	kv_close(db);

	db = open_with("refusals.sqlite3", 0, 200, &stuck);
	T_OK(t_err_is(run_batch(db, w, 2, res, errs), KV_ERR_WRITE_TIMEOUT) &&
	    errs[0] == KV_ERR_WRITE_TIMEOUT &&
	    errs[1] == KV_ERR_WRITE_TIMEOUT && !res[0].committed &&
	    !res[1].committed, "no turn: the batch and each write time out");
	kv_close(db);
}

/* --- a COMMIT that fails ----------------------------------------------------- */

/*
 * A VFS over the default one whose xSync fails while fail_syncs > 0, as
 * a disk that reports an I/O error at fsync does. With synchronous=FULL a
 * WAL commit syncs the WAL after writing its frames and before it records
 * them in the wal-index: the COMMIT fails with its frames in the file.
 */
static sqlite3_vfs		 shim_vfs;
static const sqlite3_io_methods	*shim_base;
static sqlite3_io_methods	 shim_methods;
static int			 fail_syncs;

static int
shim_sync(sqlite3_file *f, int flags)
{
	if (fail_syncs > 0) {
		fail_syncs--;
		return SQLITE_IOERR_FSYNC;
	}
	return shim_base->xSync(f, flags);
}

static int
shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *out)
{
	sqlite3_vfs	*base = vfs->pAppData;
	int		 rc = base->xOpen(base, name, f, flags, out);

	if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) &&
	    f->pMethods != NULL) {
		if (shim_base == NULL) {
			shim_base = f->pMethods;
			shim_methods = *f->pMethods;
			shim_methods.xSync = shim_sync;
		}
		if (f->pMethods == shim_base)
			f->pMethods = &shim_methods;
	}
	return rc;
}

static int
shim_register(void)
{
	return t_vfs_wrap_default(&shim_vfs, "test-fsync-fails", shim_open);
}

/* What the child saw, in a shared page. */
struct commit_fail_out {
	int		 ran;
	enum kv_err	 err;
	enum kv_err	 errs[3];
	int		 committed[3];
	int		 visible[3];
	int		 hooks_committed, hooks_published;
};

/*
 * The child commits one write (acknowledged), then a batch of three whose
 * COMMIT fails at fsync, and dies without closing (nothing written after
 * the failed batch that could cover its frames in the WAL). Nothing of the failed batch may be seen then or after
 * recovery: its clients were told it failed and will retry.
 */
static void
commit_fail_child(struct commit_fail_out *out)
{
	static const char *const keys[] = { "f1", "f2", "f3" };
	struct recorder		 rec;
	struct kv_hooks		 h = recorder_hooks(&rec);
	struct kv_mutation	 m[3], ok = set_m("before", "1");
	struct kv_write		 w[3], w0 = { .mutations = &ok,
	    .n_mutations = 1 };
	struct kv_write_result	 res[3];
	enum kv_err		 errs[3];
	struct kv_db		*db;
	uint64_t		 v;

	if (shim_register() != 0)
		_exit(2);
	db = open_with("commit_fail.sqlite3", 0, 0, &h);
	if (run_batch(db, &w0, 1, res, errs) != KV_OK || !res[0].committed)
		_exit(3);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 3; i++) {
		m[i] = set_m(keys[i], "lost");
		w[i].mutations = &m[i];
		w[i].n_mutations = 1;
	}
	rec.n_committed = rec.published = 0;
	fail_syncs = 1;
	out->err = run_batch(db, w, 3, res, errs);
	fail_syncs = 0;
	out->hooks_committed = rec.n_committed;
	out->hooks_published = rec.published;
	for (int i = 0; i < 3; i++) {
		out->errs[i] = errs[i];
		out->committed[i] = res[i].committed;
		out->visible[i] = get_version(db, keys[i], &v) != 0;
	}
	out->ran = 1;
	_exit(0);	/* no close: the process dies */
}

static void
test_commit_failure(void)
{
	struct commit_fail_out	*out;
	struct kv_mutation	 m = set_m("after", "1");
	struct kv_write		 w0 = { .mutations = &m, .n_mutations = 1 };
	struct kv_write_result	 res[1];
	enum kv_err		 errs[1];
	struct kv_db		*db;
	pid_t			 pid;
	int			 status;

	out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED)
		T_BAIL("a shared page");
	memset(out, 0, sizeof(*out));
	fflush(stdout);
	if ((pid = fork()) == 0)
		commit_fail_child(out);
	T_OK(pid > 0 && waitpid(pid, &status, 0) == pid &&
	    WIFEXITED(status) && WEXITSTATUS(status) == 0 && out->ran,
	    "failed COMMIT: the writer ran and died");
	T_OK(t_err_is(out->err, KV_ERR_IO), "failed COMMIT: the batch fails"
	    " with the I/O error");
	T_OK(out->errs[0] == KV_ERR_IO && out->errs[1] == KV_ERR_IO &&
	    out->errs[2] == KV_ERR_IO, "failed COMMIT: so does each write");
	T_OK(!out->committed[0] && !out->committed[1] && !out->committed[2],
	    "failed COMMIT: no write acknowledged");
	T_OK(!out->visible[0] && !out->visible[1] && !out->visible[2],
	    "failed COMMIT: none visible afterwards");
	T_OK(out->hooks_committed == 0 && out->hooks_published == 0,
	    "failed COMMIT: no version recorded for watchers");
	db = open_rw("commit_fail.sqlite3");
	T_OK(absent(db, "f1") && absent(db, "f2") && absent(db, "f3"),
	    "failed COMMIT: after the crash and recovery still none of the"
	    " batch (else the clients' retries apply it twice)");
	T_OK(!absent(db, "before"), "failed COMMIT: the acknowledged write"
	    " before it is there");
	T_OK(run_batch(db, &w0, 1, res, errs) == KV_OK && errs[0] == KV_OK &&
	    res[0].committed, "failed COMMIT: the next batch commits");
	kv_close(db);
	munmap(out, sizeof(*out));
}

/* --- two processes committing batches at once ------------------------------ */

#define PROCS		2
#define PROC_BATCHES	50
#define PROC_BATCH	4

/* What each writer process committed, in a shared page. */
struct procs_out {
	int		 ok[PROCS];
	uint64_t	 version[PROCS][PROC_BATCHES * PROC_BATCH];
};

/*
 * Each write adds 1 to a shared KvU64 counter and sets a key of its own,
 * in batches of PROC_BATCH, on its own connection: the two processes meet
 * only at SQLite's write lock.
 */
static void
procs_child(int p, struct procs_out *out)
{
	static const uint8_t	 one[8] = { 1 };
	struct kv_mutation	 m[PROC_BATCH][2];
	struct kv_write		 w[PROC_BATCH];
	struct kv_write_result	 res[PROC_BATCH];
	enum kv_err		 errs[PROC_BATCH];
	char			 key[PROC_BATCH][32];
	struct kv_db		*db = open_with("procs.sqlite3", 0, 10000,
				    NULL);
	int			 n = 0;

	memset(w, 0, sizeof(w));
	for (int b = 0; b < PROC_BATCHES; b++) {
		for (int i = 0; i < PROC_BATCH; i++) {
			snprintf(key[i], sizeof(key[i]), "p%d-%03d", p, n + i);
			memset(m[i], 0, sizeof(m[i]));
			m[i][0].type = KV_MUT_SUM;
			m[i][0].key = t_str("counter");
			m[i][0].value = (struct kv_bytes){ one, 8 };
			m[i][0].encoding = KV_ENC_LE64;
			m[i][1] = set_m(key[i], "v");
			w[i].mutations = m[i];
			w[i].n_mutations = 2;
		}
		if (run_batch(db, w, PROC_BATCH, res, errs) != KV_OK)
			_exit(1);
		for (int i = 0; i < PROC_BATCH; i++, n++) {
			if (errs[i] != KV_OK || !res[i].committed)
				_exit(1);
			out->version[p][n] = t_vs_version(res[i].versionstamp);
		}
	}
	out->ok[p] = 1;
	kv_close(db);
	_exit(0);
}

static void
test_two_processes(void)
{
	enum { N = PROC_BATCHES * PROC_BATCH };
	struct procs_out	*out;
	struct kv_db		*db = open_rw("procs.sqlite3");
	sqlite3			*raw;
	pid_t			 pid[PROCS];
	static uint64_t		 all[PROCS * N];
	uint64_t		 v;
	int			 status, ordered = 1, distinct = 1, found = 1;
	char			 key[32];

	out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED)
		T_BAIL("a shared page");
	memset(out, 0, sizeof(*out));
	fflush(stdout);
	for (int p = 0; p < PROCS; p++)
		if ((pid[p] = fork()) == 0)
			procs_child(p, out);
	for (int p = 0; p < PROCS; p++)
		T_OK(pid[p] > 0 && waitpid(pid[p], &status, 0) == pid[p] &&
		    WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		    out->ok[p], "two processes: writer %d committed its %d"
		    " batches", p, PROC_BATCHES);
	for (int p = 0; p < PROCS; p++)
		for (int i = 0; i < N; i++) {
			all[p * N + i] = out->version[p][i];
			ordered &= i == 0 ||
			    out->version[p][i] > out->version[p][i - 1];
			snprintf(key, sizeof(key), "p%d-%03d", p, i);
			found &= get_version(db, key, &v) == 1 &&
			    v == out->version[p][i];
		}
	T_OK(ordered, "two processes: each one's versionstamps strictly"
	    " increase");
	for (int i = 0; i < PROCS * N; i++)
		for (int j = i + 1; j < PROCS * N; j++)
			distinct &= all[i] != all[j];
	T_OK(distinct, "two processes: no versionstamp given twice");
	T_OK(found, "two processes: every key reads back with its write's"
	    " versionstamp");
	T_EQ(get_u64(db, "counter"), PROCS * N, "two processes: the shared"
	    " counter counts every write (no sum lost between them)");
	kv_close(db);
	raw = raw_open("procs.sqlite3");
	T_EQ(t_sql_int(raw, "select version from data_version"), PROCS * N,
	    "two processes: the data version moved once per write");
	sqlite3_close(raw);
	munmap(out, sizeof(*out));
}

/* --- differential: one by one against batches ------------------------------ */

#define DIFF_WRITES	400
#define DIFF_KEYS	6

static const char *const diff_keys[DIFF_KEYS] = {
	"k0", "k1", "k2", "k3", "k4", "k5",
};

/*
 * With a size limit: some byte values this large, so that the files reach
 * the limit and writes are refused (507) now and then, also mid-batch.
 */
#define DIFF_BIG_VALUE	30000
#define DIFF_MAX_SIZE	(64 * 1024)
static int		 diff_limited;
static uint8_t		 diff_big[DIFF_BIG_VALUE];

/* One generated write, with the storage its parts point into. */
struct gen_write {
	struct kv_write		 w;
	struct kv_check		 c[2];
	struct kv_mutation	 m[3];
	struct kv_enqueue	 q;
	uint8_t			 val[3][11];
	char			 payload[16];
};

struct outcome {
	enum kv_err	 err;
	int		 committed;
	uint64_t	 version;
	unsigned	 failed;	/* bit per failed check */
};

static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t
pick(uint64_t *s, size_t n)
{
	return (size_t)(rnd(s) % n);
}

static void
gen_mutation(uint64_t *s, struct kv_mutation *m, uint8_t val[11])
{
	uint64_t	 u = rnd(s) % 1000;
	double		 d = (double)(rnd(s) % 100);

	memset(m, 0, sizeof(*m));
	m->key = t_str(diff_keys[pick(s, DIFF_KEYS)]);
	switch (pick(s, 8)) {
	case 0:		/* bytes */
		m->type = KV_MUT_SET;
		snprintf((char *)val, 11, "b%llu", (unsigned long long)u);
		m->value = (struct kv_bytes){ val, strlen((char *)val) };
		if (diff_limited && u % 2 == 0)
			m->value = (struct kv_bytes){ diff_big,
			    sizeof(diff_big) };
		m->encoding = KV_ENC_BYTES;
		return;
	case 1:		/* a KvU64 */
	case 2:		/* sum, or max, of KvU64s */
		m->type = pick(s, 3) == 0 ? KV_MUT_SET :
		    pick(s, 2) ? KV_MUT_SUM : KV_MUT_MAX;
		for (int i = 0; i < 8; i++)
			val[i] = (uint8_t)(u >> (8 * i));
		m->value = (struct kv_bytes){ val, 8 };
		m->encoding = KV_ENC_LE64;
		return;
	case 3:		/* a V8 number, set */
	case 4:		/* or summed */
		m->type = pick(s, 2) ? KV_MUT_SET : KV_MUT_SUM;
		val[0] = 0xFF;
		val[1] = 0x0F;
		val[2] = 'N';
		memcpy(val + 3, &d, 8);
		m->value = (struct kv_bytes){ val, 11 };
		m->encoding = KV_ENC_V8;
		return;
	case 5:
	case 6:
		m->type = KV_MUT_DELETE;
		return;
	default:
		m->type = KV_MUT_SET_VERSIONSTAMPED_KEY;
		m->value = t_str("vk");
		m->encoding = KV_ENC_BYTES;
		return;
	}
}

/*
 * A random write. A versionstamp check names the version the key has in
 * db (the one-by-one run, just before this write) or one off it, so that
 * about half pass; the batched run must reach the same verdict.
 */
static void
gen_write(uint64_t *s, size_t index, struct kv_db *db, struct gen_write *g)
{
	uint64_t	 v;

	memset(g, 0, sizeof(*g));
	g->w.n_checks = pick(s, 3) == 0 ? 1 + pick(s, 2) : 0;
	for (size_t i = 0; i < g->w.n_checks; i++) {
		g->c[i].key = t_str(diff_keys[pick(s, DIFF_KEYS)]);
		g->c[i].must_be_absent = pick(s, 2) == 0;
		if (get_version(db, (const char *)g->c[i].key.p, &v) != 1)
			v = index;
		version_vs(v + pick(s, 2), g->c[i].versionstamp);
	}
	g->w.n_mutations = 1 + pick(s, 3);
	for (size_t i = 0; i < g->w.n_mutations; i++)
		gen_mutation(s, &g->m[i], g->val[i]);
	if (pick(s, 5) == 0) {
		snprintf(g->payload, sizeof(g->payload), "msg%zu", index);
		g->q.payload = t_str(g->payload);
		g->q.deadline_ms = NOW + (int64_t)index;
		g->w.enqueues = &g->q;
		g->w.n_enqueues = 1;
	}
	g->w.checks = g->c;
	g->w.mutations = g->m;
}

static void
record(struct outcome *o, enum kv_err err, const struct kv_write_result *r)
{
	memset(o, 0, sizeof(*o));
	o->err = err;
	o->committed = r->committed;
	o->version = r->committed ? t_vs_version(r->versionstamp) : 0;
	for (size_t i = 0; i < r->n_failed_checks; i++)
		o->failed |= 1u << r->failed_checks[i];
}

/* The kv and queue tables as one text, for comparing two files. */
static char *
dump(const char *name)
{
	static const char *const sql[] = {
		"select group_concat(hex(k) || ':' || hex(v) || ':' ||"
		" v_encoding || ':' || version || ':' || expiration_ms, ';')"
		" from (select * from kv order by k)",
		"select group_concat(ts || ':' || hex(data) || ':' ||"
		" backoff_schedule, ';') from (select * from queue"
		" order by ts, data)",
		"select 'version ' || version from data_version",
	};
	sqlite3		*db = raw_open(name);
	sqlite3_stmt	*st;
	size_t		 len = 0;
	char		*out = NULL, *p;

	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		const char	*t = "";

		if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) != SQLITE_OK)
			T_BAIL("dump: %s", sqlite3_errmsg(db));
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_text(st, 0) != NULL)
			t = (const char *)sqlite3_column_text(st, 0);
		if ((p = realloc(out, len + strlen(t) + 2)) == NULL)
			T_BAIL("out of memory");
		out = p;
		memcpy(out + len, t, strlen(t));
		len += strlen(t);
		out[len++] = '\n';
		out[len] = '\0';
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out;
}

static struct kv_db *
open_diff(const char *name)
{
	struct kv_options	 opt = {
		.sync = KV_SYNC_FULL,
		.max_size_bytes = diff_limited ? DIFF_MAX_SIZE : 0,
	};

	return open_opts(name, &opt);
}

static void
differential(uint64_t seed)
{
	static struct gen_write	 g[DIFF_WRITES];
	static struct outcome	 one[DIFF_WRITES], many[DIFF_WRITES];
	const struct kv_write	*wp[MAX_BATCH];
	struct kv_write_result	 res[MAX_BATCH];
	enum kv_err		 errs[MAX_BATCH];
	struct kv_db		*a, *b;
	char			 na[64], nb[64], *da, *db;
	uint64_t		 s = seed, t = seed * 7 + 1;
	size_t			 batches = 0, bad = 0, largest = 0;
	int			 n_commit = 0, n_check = 0, n_err = 0;
	int			 n_vs_pass = 0, n_full = 0;
	enum kv_err		 err = KV_OK;

	snprintf(na, sizeof(na), "diff%llu%s_one.sqlite3",
	    (unsigned long long)seed, diff_limited ? "_limited" : "");
	snprintf(nb, sizeof(nb), "diff%llu%s_batch.sqlite3",
	    (unsigned long long)seed, diff_limited ? "_limited" : "");
	a = open_diff(na);
	b = open_diff(nb);
	for (size_t i = 0; i < DIFF_WRITES; i++) {
		gen_write(&s, i, a, &g[i]);
		arena_reset(&A);
		err = kv_atomic_write(a, &g[i].w, NOW, &A, &res[0]);
		record(&one[i], err, &res[0]);
		n_commit += one[i].committed;
		for (size_t j = 0; one[i].committed && j < g[i].w.n_checks;
		    j++)
			n_vs_pass += !g[i].c[j].must_be_absent;
		n_check += err == KV_OK && !one[i].committed;
		n_err += err != KV_OK;
		n_full += err == KV_ERR_SIZE_LIMIT;
	}
	for (size_t i = 0, n; i < DIFF_WRITES; i += n) {
		n = 1 + pick(&t, 12);

		if (n > DIFF_WRITES - i)
			n = DIFF_WRITES - i;
		for (size_t j = 0; j < n; j++)
			wp[j] = &g[i + j].w;
		arena_reset(&A);
		/* A batch of one has its write's error for its own. */
		err = kv_atomic_write_batch(b, wp, n, NOW, &A, res, errs);
		if (err != KV_OK && n > 1)
			break;
		err = KV_OK;
		for (size_t j = 0; j < n; j++)
			record(&many[i + j], errs[j], &res[j]);
		batches++;
		largest = n > largest ? n : largest;
	}
	T_OK(t_err_is(err, KV_OK), "differential %llu: every batch ran (%zu"
	    " batches, up to %zu writes)", (unsigned long long)seed, batches,
	    largest);
	T_OK(n_commit > 0 && n_check > 0 && n_err > 0 && n_vs_pass > 0,
	    "differential %llu: the sequence has commits (%d; %d"
	    " versionstamp checks passed), failed checks (%d) and errors"
	    " (%d)", (unsigned long long)seed, n_commit, n_vs_pass, n_check,
	    n_err);
	for (size_t i = 0; i < DIFF_WRITES; i++) {
		if (memcmp(&one[i], &many[i], sizeof(one[i])) == 0)
			continue;
		if (bad++ < 5)
			printf("#   write %zu: one by one %s committed %d"
			    " version %llu failed %#x; batched %s committed"
			    " %d version %llu failed %#x\n", i,
			    kv_err_name(one[i].err), one[i].committed,
			    (unsigned long long)one[i].version, one[i].failed,
			    kv_err_name(many[i].err), many[i].committed,
			    (unsigned long long)many[i].version,
			    many[i].failed);
	}
	if (diff_limited)
		T_OK(n_full > 0, "differential %llu: the size limit refused"
		    " writes (%d)", (unsigned long long)seed, n_full);
	T_EQ(bad, 0, "differential %llu: every write has the same outcome"
	    " (error, committed, versionstamp, failed checks)",
	    (unsigned long long)seed);
	kv_close(a);
	kv_close(b);
	da = dump(na);
	db = dump(nb);
	T_OK(strcmp(da, db) == 0, "differential %llu: the two files hold the"
	    " same entries, queue and data version",
	    (unsigned long long)seed);
	free(da);
	free(db);
}

static void
test_differential(void)
{
	const char	*env = getenv("TEST_BATCH_SEED");

	if (env != NULL) {
		differential(strtoull(env, NULL, 10));
		return;
	}
	for (uint64_t seed = 1; seed <= 3; seed++)
		differential(seed * 2654435761u);
	/* The same under a size limit small enough to be reached often. */
	memset(diff_big, 'z', sizeof(diff_big));
	diff_limited = 1;
	for (uint64_t seed = 4; seed <= 5; seed++)
		differential(seed * 2654435761u);
	diff_limited = 0;
}

int
main(void)
{
	t_make_dir(tmpdir);
	arena_init(&A, 64 * 1024);
	test_independent();
	test_sees_earlier();
	test_failed_check_middle();
	test_error_middle();
	test_size_limit_middle();
	test_enqueues_and_hooks();
	test_refusals();
	test_commit_failure();
	test_two_processes();
	test_differential();
	arena_fini(&A);
	t_remove_dir(tmpdir);
	return t_done();
}
