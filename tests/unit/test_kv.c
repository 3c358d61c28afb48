/*
 * test_kv.c: unit tests of the storage engine (src/kv_sqlite.c) through
 * kv.h, printing TAP. Focus: denokv's on-disk schema and WAL mode,
 * versionstamps, range reads, checks and all-or-nothing writes, KvU64 and
 * V8 sum/min/max (every refusal, bound and size case), versionstamped
 * keys, expiry, the queue table, passive and truncating checkpoints, two
 * connections on one file writing at the same time (two threads), a
 * write's bounded wait for a lock another process holds, the SQLite error
 * table, a damaged file answered as a storage fault, the mode of the files
 * kv_open creates, and byte-exact value round trips. Every database is a
 * fresh file under a mkdtemp directory removed at the end; the SQLite
 * files are also inspected directly with sqlite3. A failed setup step
 * bails out.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "arena.h"
#include "clock.h"
#include "kv.h"
#include "v8scalar.h"
#include "testhelp.h"
#include "testkv.h"

/* A fixed "now" for writes and reads, so expiry is deterministic. */
#define NOW		1700000000000LL
#define BIG_VALUE	65536

static char		 tmpdir[] = "/tmp/test_kv.XXXXXX";
static struct arena	 A;	/* one operation's results; reset per call */

/* --- helpers: files and handles ------------------------------------------- */

static void
db_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

static struct kv_db *
open_db(const char *path, int read_only, int busy_ms, char *err,
    size_t errlen)
{
	struct kv_options	 opt = {
		.read_only = read_only,
		.sync = KV_SYNC_FULL,
		.busy_timeout_ms = busy_ms,
	};

	err[0] = '\0';
	return kv_open(path, &opt, err, errlen);
}

static struct kv_db *
open_rw(const char *path)
{
	char		 err[256];
	struct kv_db	*db = open_db(path, 0, 0, err, sizeof(err));

	if (db == NULL)
		T_BAIL("kv_open %s: %s", path, err);
	return db;
}

static void
le64(uint64_t v, uint8_t out[8])
{
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

/* V8 serialization of a double: FF 0F 'N' + 8 bytes little endian. */
static size_t
v8_num(double d, uint8_t out[11])
{
	uint64_t	 bits;

	memcpy(&bits, &d, sizeof(bits));
	out[0] = 0xFF;
	out[1] = 0x0F;
	out[2] = 'N';
	le64(bits, out + 3);
	return 11;
}

/* V8 serialization of a one-digit bigint: FF 0F 'Z' bitfield + digit. */
static size_t
v8_bigint(uint64_t mag, int neg, uint8_t out[12])
{
	out[0] = 0xFF;
	out[1] = 0x0F;
	out[2] = 'Z';
	if (mag == 0) {
		out[3] = 0;
		return 4;
	}
	out[3] = (uint8_t)((8 << 1) | (neg ? 1 : 0));
	le64(mag, out + 4);
	return 12;
}

static struct kv_mutation
mut(enum kv_mutation_type type, const char *key, const void *v, size_t len,
    enum kv_encoding enc)
{
	struct kv_mutation	 m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.key = t_str(key);
	m.value = (struct kv_bytes){ v, len };
	m.encoding = enc;
	return m;
}

/* --- helpers: operations (each resets the arena first) -------------------- */

static enum kv_err
write_full(struct kv_db *db, const struct kv_check *c, size_t nc,
    const struct kv_mutation *m, size_t nm, const struct kv_enqueue *q,
    size_t nq, struct kv_write_result *res)
{
	struct kv_write	 w = {
		.checks = c, .n_checks = nc,
		.mutations = m, .n_mutations = nm,
		.enqueues = q, .n_enqueues = nq,
	};

	arena_reset(&A);
	return kv_atomic_write(db, &w, NOW, &A, res);
}

static enum kv_err
write_muts(struct kv_db *db, const struct kv_mutation *m, size_t n,
    struct kv_write_result *res)
{
	return write_full(db, NULL, 0, m, n, NULL, 0, res);
}

static enum kv_err
write1(struct kv_db *db, struct kv_mutation m, struct kv_write_result *res)
{
	return write_muts(db, &m, 1, res);
}

static enum kv_err
set_bytes(struct kv_db *db, const char *key, const char *value,
    struct kv_write_result *res)
{
	return write1(db, mut(KV_MUT_SET, key, value, strlen(value),
	    KV_ENC_BYTES), res);
}

static enum kv_err
set_expiring(struct kv_db *db, const char *key, const void *v, size_t len,
    enum kv_encoding enc, int64_t expire_at_ms)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m = mut(KV_MUT_SET, key, v, len, enc);

	m.expire_at_ms = expire_at_ms;
	return write1(db, m, &res);
}

/* Reads one key at now_ms: 1 and *e (arena-owned) if found, 0, or -1. */
static int
get_key(struct kv_db *db, struct kv_bytes key, int64_t now_ms,
    struct kv_entry *e)
{
	struct kv_range		 r = { .start = key, .limit = 1 };
	struct kv_range_result	 res;
	uint8_t			*end;
	enum kv_err		 err;

	arena_reset(&A);
	if ((end = arena_alloc(&A, key.len + 1)) == NULL)
		return -1;
	if (key.len > 0)
		memcpy(end, key.p, key.len);
	end[key.len] = 0x00;
	r.end = (struct kv_bytes){ end, key.len + 1 };
	if ((err = kv_snapshot_read(db, &r, 1, now_ms, &A, &res)) != KV_OK) {
		printf("#   read failed: %s\n", kv_err_name(err));
		return -1;
	}
	if (res.n == 0)
		return 0;
	*e = res.entries[0];
	return 1;
}

static int
get_at(struct kv_db *db, const char *key, int64_t now_ms, struct kv_entry *e)
{
	return get_key(db, t_str(key), now_ms, e);
}

/* The stored KvU64 of key; -1 if absent or not a KvU64. */
static int
get_u64(struct kv_db *db, const char *key, uint64_t *out)
{
	struct kv_entry	 e;

	if (get_at(db, key, NOW, &e) != 1 || e.encoding != KV_ENC_LE64 ||
	    e.value.len != 8)
		return -1;
	*out = 0;
	for (int i = 7; i >= 0; i--)
		*out = (*out << 8) | e.value.p[i];
	return 0;
}

/* The stored V8 scalar of key (v8s_fini it); -1 if absent or not one. */
static int
get_v8(struct kv_db *db, const char *key, struct v8s_value *out)
{
	struct kv_entry	 e;

	memset(out, 0, sizeof(*out));
	if (get_at(db, key, NOW, &e) != 1 || e.encoding != KV_ENC_V8)
		return -1;
	return v8s_decode(e.value.p, e.value.len, out) == V8S_OK ? 0 : -1;
}

static int
v8_is_num(struct kv_db *db, const char *key, double want)
{
	struct v8s_value	 v;
	int			 ok;

	if (get_v8(db, key, &v) != 0) {
		printf("#   %s: no V8 value\n", key);
		return 0;
	}
	ok = v.kind == V8S_NUMBER && v.num == want;
	if (!ok)
		printf("#   %s: kind %d num %g, want number %g\n", key,
		    (int)v.kind, v.num, want);
	v8s_fini(&v);
	return ok;
}

/* A bigint of at most two digits: lo + hi * 2^64, with a sign. */
static int
v8_is_bigint(struct kv_db *db, const char *key, int neg, uint64_t lo,
    uint64_t hi)
{
	struct v8s_value	 v;
	size_t			 want_n = hi ? 2 : lo ? 1 : 0;
	int			 ok;

	if (get_v8(db, key, &v) != 0) {
		printf("#   %s: no V8 value\n", key);
		return 0;
	}
	ok = v.kind == V8S_BIGINT && v.neg == neg && v.ndigits == want_n &&
	    (want_n < 1 || v.digits[0] == lo) &&
	    (want_n < 2 || v.digits[1] == hi);
	if (!ok)
		printf("#   %s: kind %d neg %d ndigits %zu digit0 %llu\n", key,
		    (int)v.kind, v.neg, v.ndigits, v.ndigits ?
		    (unsigned long long)v.digits[0] : 0ULL);
	v8s_fini(&v);
	return ok;
}

static int64_t
version_of(struct kv_db *db)
{
	int64_t	 v = -1;

	if (kv_current_version(db, &v) != KV_OK)
		return -1;
	return v;
}

/* Keys of one range result as "a,b,c" for comparison. */
static void
keys_of(const struct kv_range_result *r, char *out, size_t len)
{
	size_t	 n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->n && n + 1 < len; i++) {
		n += (size_t)snprintf(out + n, len - n, "%s%.*s",
		    i ? "," : "", (int)r->entries[i].key.len,
		    (const char *)r->entries[i].key.p);
		if (n >= len)
			break;
	}
}

static struct kv_range
range(const char *start, const char *end, uint32_t limit, int reverse)
{
	return (struct kv_range){ t_str(start), t_str(end), limit, reverse };
}

/* Reads ranges at now_ms; returns 0 and their keys in keys[i]. */
static int
read_keys(struct kv_db *db, const struct kv_range *r, size_t n,
    int64_t now_ms, char keys[][256])
{
	struct kv_range_result	 res[8];
	enum kv_err		 err;

	arena_reset(&A);
	if ((err = kv_snapshot_read(db, r, n, now_ms, &A, res)) != KV_OK) {
		printf("#   read failed: %s\n", kv_err_name(err));
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		keys_of(&res[i], keys[i], 256);
	return 0;
}

/* Keys of a single range read, or "ERROR". */
static const char *
read1(struct kv_db *db, struct kv_range r, int64_t now_ms)
{
	static char	 keys[1][256];

	if (read_keys(db, &r, 1, now_ms, keys) != 0)
		return "ERROR";
	return keys[0];
}

static int
str_is(const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		printf("#   got \"%s\", want \"%s\"\n", got, want);
	return strcmp(got, want) == 0;
}

/* --- schema --------------------------------------------------------------- */

static void
test_schema(void)
{
	static const char *const tables[] = {
		"data_version", "kv", "queue", "queue_running",
		"migration_state",
	};
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db, *db2;
	sqlite3			*raw;
	char			 path[PATH_MAX], sql[256], text[64], err[256];

	db_path(path, sizeof(path), "schema.sqlite3");
	db = open_db(path, 0, 0, err, sizeof(err));
	T_OK(db != NULL, "kv_open creates a new database");
	if (db == NULL)
		T_BAIL("kv_open %s: %s", path, err);
	T_OK(access(path, F_OK) == 0, "the database file exists");
	T_OK(!kv_is_read_only(db), "a read-write handle is not read-only");
	raw = t_raw_open(path);
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "select count(*) from sqlite_master"
		    " where type = 'table' and name = '%s'", tables[i]);
		T_EQ(t_sql_int(raw, sql), 1, "schema has table %s", tables[i]);
	}
	T_EQ(t_sql_int(raw, "select count(*) from pragma_table_info('kv') where"
	    " name in ('k', 'v', 'v_encoding', 'version', 'seq',"
	    " 'expiration_ms')"), 6, "kv has denokv's six columns");
	T_EQ(t_sql_int(raw, "select count(*) from sqlite_master where"
	    " type = 'index' and name = 'kv_expiration_ms_idx'"), 1,
	    "kv has the expiration index");
	T_EQ(t_sql_int(raw, "select version from migration_state where k = 0"),
	    3, "migration_state.version is 3");
	T_EQ(t_sql_int(raw, "select version from data_version where k = 0"), 0,
	    "a new database starts at data version 0");
	t_sql_text(raw, "pragma journal_mode", text, sizeof(text));
	T_OK(str_is(text, "wal"), "journal_mode is wal");

	T_OK(t_err_is(set_bytes(db, "keep", "me", &res), KV_OK) &&
	    res.committed, "write before reopening");
	db2 = open_rw(path);
	T_OK(db2 != NULL, "opening the same file a second time while open");
	kv_close(db2);
	kv_close(db);
	db = open_rw(path);
	T_OK(db != NULL, "reopening an existing database");
	if (db != NULL) {
		T_EQ(get_at(db, "keep", NOW, &e), 1,
		    "data survives reopening");
		T_EQ(version_of(db), 1, "data version survives reopening");
		kv_close(db);
	}
	T_EQ(t_sql_int(raw, "select count(*) from migration_state"), 1,
	    "migration_state still has one row after reopening");
	T_EQ(t_sql_int(raw, "select version from migration_state where k = 0"),
	    3, "migration_state.version still 3 after reopening");
	T_EQ(t_sql_int(raw, "select count(*) from data_version"), 1,
	    "data_version still has one row after reopening");
	sqlite3_close(raw);
}

/* --- read-only ------------------------------------------------------------ */

static void
test_read_only(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	sqlite3			*raw;
	FILE			*f;
	char			 path[PATH_MAX], err[256];

	db_path(path, sizeof(path), "notkv.txt");
	if ((f = fopen(path, "w")) != NULL) {
		for (int i = 0; i < 64; i++)
			fputs("this is a text file, not an SQLite database\n",
			    f);
		fclose(f);
	}
	db = open_db(path, 1, 0, err, sizeof(err));
	T_OK(db == NULL, "read-only open of a text file fails");
	T_OK(strstr(err, "not a database") != NULL &&
	    strstr(err, "migrate") == NULL,
	    "and says it is not a database, not to migrate it (%s)", err);
	kv_close(db);

	db_path(path, sizeof(path), "plain.sqlite3");
	raw = NULL;
	if (sqlite3_open(path, &raw) == SQLITE_OK)
		sqlite3_exec(raw, "create table t (x)", NULL, NULL, NULL);
	sqlite3_close(raw);
	db = open_db(path, 1, 0, err, sizeof(err));
	T_OK(db == NULL, "read-only open of a non-KV SQLite file fails");
	T_OK(err[0] != '\0', "and gives a reason (%s)", err);
	kv_close(db);

	db_path(path, sizeof(path), "missing.sqlite3");
	db = open_db(path, 1, 0, err, sizeof(err));
	T_OK(db == NULL, "read-only open of a missing file fails");
	T_OK(err[0] != '\0', "and gives a reason (%s)", err);
	T_OK(access(path, F_OK) != 0, "and does not create it");
	kv_close(db);

	db_path(path, sizeof(path), "ro.sqlite3");
	db = open_rw(path);
	T_OK(t_err_is(set_bytes(db, "k", "v", &res), KV_OK) && res.committed,
	    "write before opening read-only");
	kv_close(db);
	db = open_db(path, 1, 0, err, sizeof(err));
	T_OK(db != NULL, "read-only open of a KV database (%s)", err);
	if (db == NULL)
		T_BAIL("read-only open of %s: %s", path, err);
	T_OK(kv_is_read_only(db), "kv_is_read_only is set");
	T_EQ(get_at(db, "k", NOW, &e), 1, "read-only handle reads data");
	T_OK(t_err_is(set_bytes(db, "k2", "v", &res), KV_ERR_READ_ONLY),
	    "read-only handle refuses a write with KV_ERR_READ_ONLY");
	T_EQ(res.committed, 0, "refused write is not committed");
	T_EQ(get_at(db, "k2", NOW, &e), 0, "refused write stored nothing");
	T_EQ(version_of(db), 1, "refused write left the data version");
	kv_close(db);

	/* Another process holds the file exclusively: say so. */
	if ((raw = t_raw_open(path)) == NULL)
		return;
	sqlite3_exec(raw, "pragma locking_mode = exclusive; begin exclusive;"
	    " create table hold (x)", NULL, NULL, NULL);
	db = open_db(path, 1, 50, err, sizeof(err));
	T_OK(db == NULL, "read-only open of a locked KV database fails");
	T_OK(strstr(err, "locked") != NULL && strstr(err, "migrate") == NULL,
	    "and says it is locked, not to migrate it (%s)", err);
	kv_close(db);
	sqlite3_exec(raw, "rollback", NULL, NULL, NULL);
	sqlite3_close(raw);
}

/* --- versionstamps -------------------------------------------------------- */

static void
test_versionstamps(void)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m[3];
	struct kv_entry		 e;
	struct kv_db		*db;
	uint8_t			 vs1[KV_VERSIONSTAMP_BYTES];
	char			 path[PATH_MAX];
	int			 same = 1;

	db_path(path, sizeof(path), "vs.sqlite3");
	db = open_rw(path);
	T_OK(t_err_is(set_bytes(db, "a", "1", &res), KV_OK) && res.committed,
	    "first write commits");
	memcpy(vs1, res.versionstamp, sizeof(vs1));
	T_OK(vs1[8] == 0 && vs1[9] == 0, "versionstamp ends in two zero bytes");
	T_EQ(t_vs_version(vs1), version_of(db),
	    "versionstamp starts with the big-endian data version");
	T_EQ(t_vs_version(vs1), 1, "first versionstamp is version 1");
	T_OK(get_at(db, "a", NOW, &e) == 1 &&
	    memcmp(e.versionstamp, vs1, sizeof(vs1)) == 0,
	    "read returns the write's versionstamp");

	T_OK(t_err_is(set_bytes(db, "a", "2", &res), KV_OK) && res.committed,
	    "second write commits");
	T_OK(memcmp(res.versionstamp, vs1, sizeof(vs1)) > 0,
	    "second versionstamp is greater");
	T_OK(res.versionstamp[8] == 0 && res.versionstamp[9] == 0,
	    "second versionstamp ends in two zero bytes");
	memcpy(vs1, res.versionstamp, sizeof(vs1));

	m[0] = mut(KV_MUT_SET, "x", "1", 1, KV_ENC_BYTES);
	m[1] = mut(KV_MUT_SET, "y", "2", 1, KV_ENC_BYTES);
	m[2] = mut(KV_MUT_SET, "z", "3", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_muts(db, m, 3, &res), KV_OK) && res.committed,
	    "write with three mutations commits");
	T_OK(memcmp(res.versionstamp, vs1, sizeof(vs1)) > 0,
	    "its versionstamp is greater again");
	memcpy(vs1, res.versionstamp, sizeof(vs1));
	for (int i = 0; i < 3; i++) {
		const char *key = i == 0 ? "x" : i == 1 ? "y" : "z";

		if (get_at(db, key, NOW, &e) != 1 ||
		    memcmp(e.versionstamp, vs1, sizeof(vs1)) != 0)
			same = 0;
	}
	T_OK(same, "all mutations of one write share its versionstamp");
	T_EQ(version_of(db), 3, "three writes, data version 3");
	kv_close(db);
}

/* --- range reads ---------------------------------------------------------- */

static void
test_ranges(void)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m[5];
	struct kv_range		 r[3];
	struct kv_entry		 e;
	struct kv_db		*db;
	char			 path[PATH_MAX], keys[3][256];
	static const char *const k[] = { "a", "b", "c", "d", "e" };
	static const char *const v[] = { "va", "vb", "vc", "vd", "ve" };

	db_path(path, sizeof(path), "ranges.sqlite3");
	db = open_rw(path);
	for (int i = 0; i < 5; i++)
		m[i] = mut(KV_MUT_SET, k[i], v[i], 2, KV_ENC_BYTES);
	T_OK(t_err_is(write_muts(db, m, 5, &res), KV_OK) && res.committed,
	    "set five keys");

	T_OK(str_is(read1(db, range("a", "f", 10, 0), NOW), "a,b,c,d,e"),
	    "full range returns all keys in order");
	T_OK(str_is(read1(db, range("b", "d", 10, 0), NOW), "b,c"),
	    "start is inclusive, end exclusive");
	T_OK(str_is(read1(db, range("b", "d", 10, 1), NOW), "c,b"),
	    "reverse range returns keys in descending order");
	T_OK(str_is(read1(db, range("a", "f", 2, 0), NOW), "a,b"),
	    "limit 2 returns the first two");
	T_OK(str_is(read1(db, range("a", "f", 2, 1), NOW), "e,d"),
	    "reverse limit 2 returns the last two");
	T_OK(str_is(read1(db, range("a", "f", 1, 0), NOW), "a"),
	    "limit 1 returns one");
	T_OK(str_is(read1(db, range("bb", "cc", 10, 0), NOW), "c"),
	    "bounds between keys");
	T_OK(str_is(read1(db, range("x", "z", 10, 0), NOW), ""),
	    "range past all keys is empty");
	T_OK(str_is(read1(db, range("c", "c", 10, 0), NOW), ""),
	    "range with start == end is empty");
	T_OK(str_is(read1(db, range("d", "b", 10, 0), NOW), ""),
	    "range with start > end is empty");
	T_OK(str_is(read1(db, range("", "c", 10, 0), NOW), "a,b"),
	    "empty start bound reads from the first key");

	r[0] = range("a", "c", 10, 0);
	r[1] = range("c", "f", 2, 1);
	r[2] = range("x", "y", 10, 0);
	T_OK(read_keys(db, r, 3, NOW, keys) == 0 &&
	    str_is(keys[0], "a,b") && str_is(keys[1], "e,d") &&
	    str_is(keys[2], ""),
	    "three ranges in one read, each with its own limit and order");

	T_OK(get_at(db, "c", NOW, &e) == 1 && e.value.len == 2 &&
	    memcmp(e.value.p, "vc", 2) == 0 && e.encoding == KV_ENC_BYTES,
	    "entry has its value and encoding");
	T_OK(memcmp(e.versionstamp, res.versionstamp,
	    KV_VERSIONSTAMP_BYTES) == 0, "entry has its versionstamp");
	kv_close(db);
}

/* --- delete --------------------------------------------------------------- */

static void
test_delete(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	char			 path[PATH_MAX];

	db_path(path, sizeof(path), "delete.sqlite3");
	db = open_rw(path);
	T_OK(t_err_is(set_bytes(db, "d1", "x", &res), KV_OK), "set d1");
	T_OK(t_err_is(set_bytes(db, "d2", "y", &res), KV_OK), "set d2");
	T_OK(t_err_is(write1(db, mut(KV_MUT_DELETE, "d1", NULL, 0, 0), &res),
	    KV_OK) && res.committed, "delete d1 commits");
	T_EQ(get_at(db, "d1", NOW, &e), 0, "deleted key is gone");
	T_EQ(get_at(db, "d2", NOW, &e), 1, "other key remains");
	T_OK(t_err_is(write1(db, mut(KV_MUT_DELETE, "nope", NULL, 0, 0), &res),
	    KV_OK) && res.committed, "deleting a missing key commits");
	kv_close(db);
}

/* --- checks --------------------------------------------------------------- */

static void
test_checks(void)
{
	struct kv_write_result	 res;
	struct kv_check		 c[5];
	struct kv_mutation	 m;
	struct kv_enqueue	 q = { .payload = { (const uint8_t *)"p", 1 } };
	struct kv_entry		 e;
	struct kv_db		*db;
	sqlite3			*raw;
	uint8_t			 vs1[KV_VERSIONSTAMP_BYTES];
	char			 path[PATH_MAX];
	int64_t			 v0;

	db_path(path, sizeof(path), "checks.sqlite3");
	db = open_rw(path);
	T_OK(t_err_is(set_bytes(db, "c1", "x", &res), KV_OK), "set c1");
	memcpy(vs1, res.versionstamp, sizeof(vs1));
	memset(c, 0, sizeof(c));

	c[0].key = t_str("nope");
	c[0].must_be_absent = 1;
	m = mut(KV_MUT_SET, "w1", "1", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "must_be_absent on a missing key passes");
	T_EQ(get_at(db, "w1", NOW, &e), 1, "and the write is applied");

	v0 = version_of(db);
	c[0].key = t_str("c1");
	m = mut(KV_MUT_SET, "w2", "1", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK),
	    "a failed check is not an error");
	T_EQ(res.committed, 0, "must_be_absent on an existing key fails");
	T_OK(res.n_failed_checks == 1 && res.failed_checks[0] == 0,
	    "failed_checks lists index 0");
	T_EQ(get_at(db, "w2", NOW, &e), 0, "the write is not applied");
	T_EQ(version_of(db), v0, "the data version is unchanged");

	c[0].must_be_absent = 0;
	memcpy(c[0].versionstamp, vs1, sizeof(vs1));
	m = mut(KV_MUT_SET, "w3", "1", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "versionstamp check passes when equal");
	T_EQ(get_at(db, "w3", NOW, &e), 1, "and the write is applied");

	v0 = version_of(db);
	c[0].versionstamp[7] ^= 0x01;
	m = mut(KV_MUT_SET, "w4", "1", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "versionstamp check fails when different");
	T_EQ(get_at(db, "w4", NOW, &e), 0, "and the write is not applied");

	memcpy(c[0].versionstamp, vs1, sizeof(vs1));
	c[0].key = t_str("nope");
	T_OK(t_err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "versionstamp check on a missing key fails");
	T_EQ(version_of(db), v0, "failed checks left the data version");

	/* Five checks, three failing: all three are reported. */
	memset(c, 0, sizeof(c));
	c[0].key = t_str("nope");
	c[0].must_be_absent = 1;			/* passes */
	c[1].key = t_str("c1");
	c[1].must_be_absent = 1;			/* fails */
	c[2].key = t_str("c1");
	memcpy(c[2].versionstamp, vs1, sizeof(vs1));	/* passes */
	c[3].key = t_str("c1");				/* fails: zero vs */
	c[4].key = t_str("w1");
	c[4].must_be_absent = 1;			/* fails */
	m = mut(KV_MUT_SET, "w5", "1", 1, KV_ENC_BYTES);
	raw = t_raw_open(path);
	T_OK(t_err_is(write_full(db, c, 5, &m, 1, &q, 1, &res), KV_OK) &&
	    !res.committed, "write with three failing checks of five fails");
	T_EQ(res.n_failed_checks, 3, "three failed checks are reported");
	T_OK(res.n_failed_checks == 3 && res.failed_checks[0] == 1 &&
	    res.failed_checks[1] == 3 && res.failed_checks[2] == 4,
	    "failed_checks are indexes 1, 3, 4");
	T_EQ(get_at(db, "w5", NOW, &e), 0, "its mutation is not applied");
	T_EQ(t_sql_int(raw, "select count(*) from queue"), 0,
	    "its enqueue is not applied");
	T_EQ(version_of(db), v0, "the data version is unchanged");
	sqlite3_close(raw);
	kv_close(db);
}

/* --- KvU64 sum/min/max ---------------------------------------------------- */

static enum kv_err
le64_op(struct kv_db *db, enum kv_mutation_type t, const char *key,
    uint64_t operand)
{
	struct kv_write_result	 res;
	uint8_t			 buf[8];

	le64(operand, buf);
	return write1(db, mut(t, key, buf, 8, KV_ENC_LE64), &res);
}

static int
u64_is(struct kv_db *db, const char *key, uint64_t want)
{
	uint64_t	 v = 0;

	if (get_u64(db, key, &v) != 0) {
		printf("#   %s: no KvU64 value\n", key);
		return 0;
	}
	if (v != want)
		printf("#   %s: got %llu, want %llu\n", key,
		    (unsigned long long)v, (unsigned long long)want);
	return v == want;
}

static void
test_le64(void)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m[2];
	struct kv_entry		 e;
	struct kv_db		*db;
	uint8_t			 one[8], num[11];
	char			 path[PATH_MAX];
	int64_t			 v0;

	db_path(path, sizeof(path), "le64.sqlite3");
	db = open_rw(path);
	T_OK(t_err_is(le64_op(db, KV_MUT_SUM, "s", 5), KV_OK),
	    "sum on a missing key");
	T_OK(u64_is(db, "s", 5), "stores the operand");
	T_OK(t_err_is(le64_op(db, KV_MUT_SUM, "s", 3), KV_OK) &&
	    u64_is(db, "s", 8), "sum 5 + 3 = 8");
	T_OK(t_err_is(le64_op(db, KV_MUT_SUM, "wrap", UINT64_MAX), KV_OK) &&
	    t_err_is(le64_op(db, KV_MUT_SUM, "wrap", 2), KV_OK) &&
	    u64_is(db, "wrap", 1), "sum 0xFFFFFFFFFFFFFFFF + 2 wraps to 1");

	T_OK(t_err_is(le64_op(db, KV_MUT_MIN, "min", 10), KV_OK) &&
	    u64_is(db, "min", 10), "min on a missing key stores the operand");
	T_OK(t_err_is(le64_op(db, KV_MUT_MIN, "min", 4), KV_OK) &&
	    u64_is(db, "min", 4), "min(10, 4) = 4");
	T_OK(t_err_is(le64_op(db, KV_MUT_MIN, "min", 9), KV_OK) &&
	    u64_is(db, "min", 4), "min(4, 9) = 4");
	T_OK(t_err_is(le64_op(db, KV_MUT_MAX, "max", 3), KV_OK) &&
	    u64_is(db, "max", 3), "max on a missing key stores the operand");
	T_OK(t_err_is(le64_op(db, KV_MUT_MAX, "max", 7), KV_OK) &&
	    u64_is(db, "max", 7), "max(3, 7) = 7");
	T_OK(t_err_is(le64_op(db, KV_MUT_MAX, "max", 1), KV_OK) &&
	    u64_is(db, "max", 7), "max(7, 1) = 7");
	T_OK(t_err_is(le64_op(db, KV_MUT_MAX, "maxbig", UINT64_MAX), KV_OK) &&
	    t_err_is(le64_op(db, KV_MUT_MAX, "maxbig", 1), KV_OK) &&
	    u64_is(db, "maxbig", UINT64_MAX), "max compares unsigned");

	T_OK(t_err_is(write1(db, mut(KV_MUT_SET, "v8", num, v8_num(1, num),
	    KV_ENC_V8), &res), KV_OK), "set a V8 value");
	T_OK(t_err_is(set_bytes(db, "bytes", "abc", &res), KV_OK),
	    "set a bytes value");
	v0 = version_of(db);
	le64(1, one);
	m[0] = mut(KV_MUT_SET, "side", "x", 1, KV_ENC_BYTES);
	m[1] = mut(KV_MUT_SUM, "v8", one, 8, KV_ENC_LE64);
	T_OK(t_err_is(write_muts(db, m, 2, &res), KV_ERR_LE64_TARGET),
	    "KvU64 sum on a V8 value is KV_ERR_LE64_TARGET");
	T_EQ(res.committed, 0, "and is not committed");
	T_EQ(get_at(db, "side", NOW, &e), 0,
	    "an earlier set in the same write is not applied");
	T_OK(v8_is_num(db, "v8", 1), "the V8 value is unchanged");
	T_EQ(version_of(db), v0, "the data version is unchanged");
	m[1] = mut(KV_MUT_MAX, "bytes", one, 8, KV_ENC_LE64);
	T_OK(t_err_is(write_muts(db, m, 2, &res), KV_ERR_LE64_TARGET),
	    "KvU64 max on a bytes value is KV_ERR_LE64_TARGET");
	T_EQ(get_at(db, "side", NOW, &e), 0, "and nothing is written");

	T_OK(t_err_is(write1(db, mut(KV_MUT_MIN, "min", num, 11, KV_ENC_V8),
	    &res), KV_ERR_LE64_OPERAND),
	    "min with a V8 operand is KV_ERR_LE64_OPERAND");
	T_OK(t_err_is(write1(db, mut(KV_MUT_MAX, "max", "12345678", 8,
	    KV_ENC_BYTES), &res), KV_ERR_LE64_OPERAND),
	    "max with a bytes operand is KV_ERR_LE64_OPERAND");
	T_OK(u64_is(db, "min", 4) && u64_is(db, "max", 7),
	    "refused min/max left the values");
	T_EQ(version_of(db), v0, "refused writes left the data version");
	kv_close(db);
}

/* --- V8 sum --------------------------------------------------------------- */

struct v8op {
	uint8_t	 op[12], lo[12], hi[12];
	size_t	 oplen, lolen, hilen;
	int	 clamp;
};

static enum kv_err
v8_sum(struct kv_db *db, const char *key, const struct v8op *o)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m = mut(KV_MUT_SUM, key, o->op, o->oplen,
	    KV_ENC_V8);

	m.sum_min = (struct kv_bytes){ o->lo, o->lolen };
	m.sum_max = (struct kv_bytes){ o->hi, o->hilen };
	m.sum_clamp = o->clamp;
	return write1(db, m, &res);
}

static struct v8op
num_op(double d)
{
	struct v8op	 o;

	memset(&o, 0, sizeof(o));
	o.oplen = v8_num(d, o.op);
	return o;
}

static struct v8op
big_op(uint64_t mag, int neg)
{
	struct v8op	 o;

	memset(&o, 0, sizeof(o));
	o.oplen = v8_bigint(mag, neg, o.op);
	return o;
}

static void
test_v8_sum(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	struct v8op		 o;
	uint8_t			 buf[8];
	char			 path[PATH_MAX];
	int64_t			 v0;
	static const uint8_t	 five[] = { 0xFF, 0x0F, 0x5A, 0x10, 0x05,
	    0, 0, 0, 0, 0, 0, 0 };

	db_path(path, sizeof(path), "v8sum.sqlite3");
	db = open_rw(path);
	o = big_op(5, 0);
	T_OK(o.oplen == sizeof(five) && memcmp(o.op, five, sizeof(five)) == 0,
	    "test helper encodes 5n as FF 0F 5A 10 05 00..");

	o = num_op(5);
	T_OK(t_err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", 5),
	    "number sum on a missing key stores the operand");
	o = num_op(2.5);
	T_OK(t_err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", 7.5),
	    "number 5 + 2.5 = 7.5");
	o = num_op(-10);
	T_OK(t_err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", -2.5),
	    "number 7.5 + -10 = -2.5");

	o = big_op(5, 0);
	T_OK(t_err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 0, 5, 0),
	    "bigint sum on a missing key stores the operand");
	o = big_op(7, 0);
	T_OK(t_err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 0, 12, 0), "bigint 5n + 7n = 12n");
	o = big_op(20, 1);
	T_OK(t_err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 1, 8, 0), "bigint 12n + -20n = -8n");
	o = big_op(UINT64_MAX, 0);
	T_OK(t_err_is(v8_sum(db, "carry", &o), KV_OK), "set bigint 2^64-1");
	o = big_op(1, 0);
	T_OK(t_err_is(v8_sum(db, "carry", &o), KV_OK) &&
	    v8_is_bigint(db, "carry", 0, 0, 1),
	    "bigint (2^64-1)n + 1n = 2^64n (no wrap)");

	v0 = version_of(db);
	o = big_op(1, 0);
	T_OK(t_err_is(v8_sum(db, "n", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "number + bigint is KV_ERR_SUM_TYPE_MISMATCH");
	T_OK(v8_is_num(db, "n", -2.5), "and the number is unchanged");
	o = num_op(1);
	T_OK(t_err_is(v8_sum(db, "b", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "bigint + number is KV_ERR_SUM_TYPE_MISMATCH");
	T_EQ(version_of(db), v0, "mismatched sums left the data version");

	/* Bounds on numbers. */
	o = num_op(10);
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_OK), "set number 10");
	v0 = version_of(db);
	o = num_op(5);
	o.hilen = v8_num(12, o.hi);
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_OUT_OF_RANGE),
	    "10 + 5 over max 12 without clamp is KV_ERR_SUM_OUT_OF_RANGE");
	T_OK(v8_is_num(db, "nb", 10), "and the value is unchanged");
	T_EQ(version_of(db), v0, "and the data version is unchanged");
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 12),
	    "10 + 5 with max 12 and clamp = 12");
	o = num_op(-20);
	o.lolen = v8_num(0, o.lo);
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_OUT_OF_RANGE) &&
	    v8_is_num(db, "nb", 12),
	    "12 - 20 under min 0 without clamp is refused");
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 0),
	    "12 - 20 with min 0 and clamp = 0");
	o = num_op(3);
	o.lolen = v8_num(0, o.lo);
	o.hilen = v8_num(100, o.hi);
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 3),
	    "0 + 3 within [0, 100] = 3");

	/* Bounds on bigints. */
	o = big_op(10, 0);
	o.hilen = v8_bigint(15, 0, o.hi);
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "bb", &o), KV_OK), "set bigint 10n");
	T_OK(t_err_is(v8_sum(db, "bb", &o), KV_OK) &&
	    v8_is_bigint(db, "bb", 0, 15, 0),
	    "10n + 10n with max 15n and clamp = 15n");
	o.clamp = 0;
	T_OK(t_err_is(v8_sum(db, "bb", &o), KV_ERR_SUM_OUT_OF_RANGE) &&
	    v8_is_bigint(db, "bb", 0, 15, 0),
	    "15n + 10n over max 15n without clamp is refused");

	/* Bounds of another type than the operand. */
	v0 = version_of(db);
	o = num_op(1);
	o.hilen = v8_bigint(100, 0, o.hi);
	T_OK(t_err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_MINMAX_TYPE),
	    "number operand with bigint max is KV_ERR_SUM_MINMAX_TYPE");
	o = big_op(1, 0);
	o.lolen = v8_num(0, o.lo);
	T_OK(t_err_is(v8_sum(db, "bb", &o), KV_ERR_SUM_MINMAX_TYPE),
	    "bigint operand with number min is KV_ERR_SUM_MINMAX_TYPE");
	T_OK(v8_is_num(db, "nb", 3) && v8_is_bigint(db, "bb", 0, 15, 0),
	    "refused sums left the values");
	T_EQ(version_of(db), v0, "refused sums left the data version");

	/* A KvU64 plus a small bigint stays a KvU64. */
	le64(7, buf);
	T_OK(t_err_is(write1(db, mut(KV_MUT_SET, "u", buf, 8, KV_ENC_LE64),
	    &res), KV_OK), "set KvU64 7");
	o = big_op(5, 0);
	T_OK(t_err_is(v8_sum(db, "u", &o), KV_OK) && u64_is(db, "u", 12),
	    "KvU64 7 + bigint 5n = KvU64 12");
	T_OK(get_at(db, "u", NOW, &e) == 1 && e.encoding == KV_ENC_LE64 &&
	    e.value.len == 8, "the result is stored as KvU64");
	kv_close(db);
}

/* --- V8 sum: every refusal, odd bounds, KvU64 targets, the size limit ---- */

/* A V8 operand or bound of any size, in a caller's buffer. */
struct v8buf {
	const uint8_t	*p;
	size_t		 len;
};

#define V8_NONE		((struct v8buf){ NULL, 0 })

/*
 * One write: a set of "side" (to show the write is all or nothing), then
 * a sum of op onto key with the given encoding, bounds and clamp.
 */
static enum kv_err
v8_sum_with_side(struct kv_db *db, const char *key, struct v8buf op,
    enum kv_encoding enc, struct v8buf lo, struct v8buf hi, int clamp)
{
	struct kv_write_result	 res;
	struct kv_mutation	 m[2];

	m[0] = mut(KV_MUT_SET, "side", "x", 1, KV_ENC_BYTES);
	m[1] = mut(KV_MUT_SUM, key, op.p, op.len, enc);
	m[1].sum_min = (struct kv_bytes){ lo.p, lo.len };
	m[1].sum_max = (struct kv_bytes){ hi.p, hi.len };
	m[1].sum_clamp = clamp;
	return write_muts(db, m, 2, &res);
}

/* A V8 bigint of two 64-bit digits: lo + hi * 2^64, with a sign. */
static size_t
v8_bigint2(uint64_t lo, uint64_t hi, int neg, uint8_t out[20])
{
	out[0] = 0xFF;
	out[1] = 0x0F;
	out[2] = 'Z';
	out[3] = (uint8_t)((16 << 1) | (neg ? 1 : 0));
	le64(lo, out + 4);
	le64(hi, out + 12);
	return 20;
}

/* A V8 bigint of n digits, all ones: 2^(64n) - 1. The caller frees it. */
static uint8_t *
v8_bigint_ones(size_t n, size_t *len)
{
	uint64_t	 bitfield = (uint64_t)n * 8 * 2;
	uint8_t		*p;
	size_t		 i = 3;

	if ((p = malloc(3 + 5 + n * 8)) == NULL)
		T_BAIL("out of memory");
	p[0] = 0xFF;
	p[1] = 0x0F;
	p[2] = 'Z';
	do {
		p[i++] = (uint8_t)((bitfield & 0x7f) | (bitfield > 0x7f ?
		    0x80 : 0));
		bitfield >>= 7;
	} while (bitfield != 0);
	memset(p + i, 0xFF, n * 8);
	*len = i + n * 8;
	return p;
}

static int
v8_is_nan(struct kv_db *db, const char *key)
{
	struct v8s_value	 v;
	int			 ok;

	if (get_v8(db, key, &v) != 0)
		return 0;
	ok = v.kind == V8S_NUMBER && v.num != v.num;
	v8s_fini(&v);
	return ok;
}

/* The refused write changed nothing: no side key, same data version. */
static int
unchanged(struct kv_db *db, int64_t v0)
{
	struct kv_entry	 e;

	return get_at(db, "side", NOW, &e) == 0 && version_of(db) == v0;
}

static void
test_v8_sum_refusals(struct kv_db *db)
{
	static const uint8_t	 str_hi[] = { 0xFF, 0x0F, '"', 2, 'h', 'i' };
	static const uint8_t	 short_num[] = { 0xFF, 0x0F, 'N', 0, 0 };
	static const uint8_t	 object[] = { 0xFF, 0x0F, 'o', '{', 0 };
	struct v8op		 o;
	uint8_t			 ten[11];
	int64_t			 v0;
	struct v8buf		 s = { str_hi, sizeof(str_hi) };
	struct v8buf		 t = { short_num, sizeof(short_num) };
	struct v8buf		 obj = { object, sizeof(object) };
	struct v8buf		 num10 = { ten, v8_num(10, ten) };

	o = num_op(5);
	T_OK(t_err_is(v8_sum(db, "e", &o), KV_OK), "set number 5 for the"
	    " refusals");
	v0 = version_of(db);
	T_OK(t_err_is(v8_sum_with_side(db, "e", s, KV_ENC_V8, V8_NONE, V8_NONE,
	    0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a V8 string operand is KV_ERR_SUM_INVALID_V8, nothing written");
	T_OK(t_err_is(v8_sum_with_side(db, "e", obj, KV_ENC_V8, V8_NONE,
	    V8_NONE, 0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a V8 object operand is KV_ERR_SUM_INVALID_V8");
	T_OK(t_err_is(v8_sum_with_side(db, "e", t, KV_ENC_V8, V8_NONE, V8_NONE,
	    0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a truncated V8 double is KV_ERR_SUM_INVALID_V8");
	T_OK(t_err_is(v8_sum_with_side(db, "e", V8_NONE, KV_ENC_V8, V8_NONE,
	    V8_NONE, 0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "an empty V8 operand is KV_ERR_SUM_INVALID_V8");
	T_OK(t_err_is(v8_sum_with_side(db, "e", num10, KV_ENC_BYTES, V8_NONE,
	    V8_NONE, 0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a bytes-encoded operand is KV_ERR_SUM_INVALID_V8");
	T_OK(t_err_is(v8_sum_with_side(db, "e", num10, KV_ENC_V8, s, V8_NONE,
	    0), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a V8 string as min is KV_ERR_SUM_INVALID_V8");
	T_OK(t_err_is(v8_sum_with_side(db, "e", num10, KV_ENC_V8, V8_NONE, t,
	    1), KV_ERR_SUM_INVALID_V8) && unchanged(db, v0),
	    "a truncated V8 max is KV_ERR_SUM_INVALID_V8, also with clamp");
	T_OK(v8_is_num(db, "e", 5), "after all the refusals the value is"
	    " still 5");
}

static void
test_v8_sum_bounds(struct kv_db *db)
{
	struct v8op	 o;
	double		 nan = __builtin_nan("");

	/* min > max: min applies first, then max (denokv's order). */
	o = num_op(5);
	T_OK(t_err_is(v8_sum(db, "mm", &o), KV_OK), "set number 5");
	o = num_op(1);
	o.lolen = v8_num(10, o.lo);
	o.hilen = v8_num(0, o.hi);
	T_OK(t_err_is(v8_sum(db, "mm", &o), KV_ERR_SUM_OUT_OF_RANGE) &&
	    v8_is_num(db, "mm", 5),
	    "min 10 > max 0 without clamp: 6 is out of range, refused");
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "mm", &o), KV_OK) && v8_is_num(db, "mm", 0),
	    "min 10 > max 0 with clamp: 6 rises to 10, then falls to 0");
	o = big_op(1, 0);
	T_OK(t_err_is(v8_sum(db, "mmb", &o), KV_OK), "set bigint 1n");
	o.lolen = v8_bigint(100, 0, o.lo);
	o.hilen = v8_bigint(50, 0, o.hi);
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "mmb", &o), KV_OK) &&
	    v8_is_bigint(db, "mmb", 0, 50, 0),
	    "bigint min 100n > max 50n with clamp: 2n ends at 50n");

	/* NaN never compares, so it never bounds anything. */
	o = num_op(5);
	T_OK(t_err_is(v8_sum(db, "nan", &o), KV_OK), "set number 5");
	o = num_op(1);
	o.lolen = v8_num(nan, o.lo);
	o.hilen = v8_num(nan, o.hi);
	T_OK(t_err_is(v8_sum(db, "nan", &o), KV_OK) && v8_is_num(db, "nan", 6),
	    "NaN min and max without clamp: 5 + 1 = 6");
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "nan", &o), KV_OK) && v8_is_num(db, "nan", 7),
	    "NaN min and max with clamp: 6 + 1 = 7, not clamped to NaN");
	o = num_op(nan);
	o.hilen = v8_num(100, o.hi);
	T_OK(t_err_is(v8_sum(db, "nan", &o), KV_OK) && v8_is_nan(db, "nan"),
	    "a NaN operand with max 100 stores NaN (NaN is not above 100)");
	o = num_op(1);
	o.lolen = v8_num(0, o.lo);
	T_OK(t_err_is(v8_sum(db, "nan", &o), KV_OK) && v8_is_nan(db, "nan"),
	    "NaN + 1 with min 0 stays NaN");
	o = num_op(__builtin_inf());
	T_OK(t_err_is(v8_sum(db, "inf", &o), KV_OK) &&
	    t_err_is(v8_sum(db, "inf", &o), KV_OK) &&
	    v8_is_num(db, "inf", __builtin_inf()), "Infinity + Infinity ="
	    " Infinity");
}

static void
test_v8_sum_u64_target(struct kv_db *db)
{
	struct kv_write_result	 res;
	struct v8op		 o;
	uint8_t			 buf[8], two[20];
	int64_t			 v0;

	le64(7, buf);
	T_OK(t_err_is(write1(db, mut(KV_MUT_SET, "u7", buf, 8, KV_ENC_LE64),
	    &res), KV_OK), "set KvU64 7");
	v0 = version_of(db);
	o = big_op(1, 1);
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_ERR_SUM_TYPE_MISMATCH) &&
	    u64_is(db, "u7", 7),
	    "KvU64 + -1n is KV_ERR_SUM_TYPE_MISMATCH, value unchanged");
	T_OK(t_err_is(v8_sum_with_side(db, "u7", (struct v8buf){ two,
	    v8_bigint2(0, 1, 0, two) }, KV_ENC_V8, V8_NONE, V8_NONE, 0),
	    KV_ERR_SUM_TYPE_MISMATCH) && unchanged(db, v0),
	    "KvU64 + 2^64n is KV_ERR_SUM_TYPE_MISMATCH, nothing written");
	o = big_op(5, 0);
	o.hilen = v8_bigint(100, 0, o.hi);
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_ERR_SUM_U64_MINMAX),
	    "KvU64 + 5n with max 100n is KV_ERR_SUM_U64_MINMAX");
	o = big_op(5, 0);
	o.clamp = 1;
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "KvU64 + 5n with clamp and no bounds is KV_ERR_SUM_TYPE_MISMATCH");
	o = num_op(5);
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "KvU64 + number 5 is KV_ERR_SUM_TYPE_MISMATCH");
	T_OK(u64_is(db, "u7", 7) && version_of(db) == v0,
	    "the refusals left KvU64 7 and the data version");
	o = big_op(UINT64_MAX, 0);
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_OK) && u64_is(db, "u7", 6),
	    "KvU64 7 + (2^64-1)n wraps to KvU64 6, as KvU64 sums do");
	o = big_op(0, 0);
	T_OK(t_err_is(v8_sum(db, "u7", &o), KV_OK) && u64_is(db, "u7", 6),
	    "KvU64 6 + 0n = KvU64 6");
}

/* The stored V8 encoding may not pass the 64 KiB value limit. */
static void
test_v8_sum_size_limit(struct kv_db *db)
{
	struct kv_entry	 e;
	uint8_t		*big;
	size_t		 len, stored;
	int64_t		 v0;

	/* 8191 digits: 65528 magnitude bytes, 65534 encoded. */
	big = v8_bigint_ones(8191, &len);
	T_EQ(len, 65534, "2^524224 - 1 takes 65534 bytes as V8");
	T_OK(t_err_is(v8_sum_with_side(db, "huge", (struct v8buf){ big, len },
	    KV_ENC_V8, V8_NONE, V8_NONE, 0), KV_OK),
	    "a sum onto a missing key stores a 65534-byte bigint");
	stored = get_at(db, "huge", NOW, &e) == 1 ? e.value.len : 0;
	T_EQ(stored, 65534, "stored as 65534 bytes");
	v0 = version_of(db);
	/* Another 8191 digits: the sum needs 8192, 65542 bytes encoded. */
	T_OK(t_err_is(v8_sum_with_side(db, "huge", (struct v8buf){ big, len },
	    KV_ENC_V8, V8_NONE, V8_NONE, 0), KV_ERR_SUM_OUT_OF_RANGE),
	    "a sum whose result would take 65542 bytes is"
	    " KV_ERR_SUM_OUT_OF_RANGE (a 400, not a retryable 5xx)");
	stored = get_at(db, "huge", NOW, &e) == 1 ? e.value.len : 0;
	T_OK(stored == 65534 && version_of(db) == v0 &&
	    get_at(db, "side", NOW, &e) == 1,
	    "the value and the data version are unchanged");
	free(big);
}

static void
test_v8_sum_edges(void)
{
	struct kv_db	*db;
	char		 path[PATH_MAX];

	db_path(path, sizeof(path), "v8edges.sqlite3");
	db = open_rw(path);
	test_v8_sum_refusals(db);
	test_v8_sum_bounds(db);
	test_v8_sum_u64_target(db);
	test_v8_sum_size_limit(db);
	kv_close(db);
}

/* --- versionstamped keys -------------------------------------------------- */

static void
test_versionstamped_key(void)
{
	struct kv_write_result	 res;
	struct kv_range		 r = range("vk", "vk\xff", 10, 0);
	struct kv_range_result	 out;
	struct kv_db		*db;
	uint8_t			 want[2][24];
	char			 path[PATH_MAX], hex[3];
	enum kv_err		 err;

	db_path(path, sizeof(path), "vskey.sqlite3");
	db = open_rw(path);
	for (int w = 0; w < 2; w++) {
		T_OK(t_err_is(write1(db, mut(KV_MUT_SET_VERSIONSTAMPED_KEY, "vk",
		    "x", 1, KV_ENC_BYTES), &res), KV_OK) && res.committed,
		    "versionstamped-key set %d commits", w + 1);
		memcpy(want[w], "vk\x02", 3);
		for (int i = 0; i < KV_VERSIONSTAMP_BYTES; i++) {
			snprintf(hex, sizeof(hex), "%02x", res.versionstamp[i]);
			memcpy(want[w] + 3 + 2 * i, hex, 2);
		}
		want[w][23] = 0x00;
	}
	arena_reset(&A);
	err = kv_snapshot_read(db, &r, 1, NOW, &A, &out);
	T_OK(t_err_is(err, KV_OK) && out.n == 2, "two versionstamped keys");
	if (err != KV_OK || out.n != 2)
		T_BAIL("the versionstamped-key tests need both keys");
	T_OK(out.entries[0].key.len == 24 &&
	    memcmp(out.entries[0].key.p, want[0], 24) == 0,
	    "key = key + 0x02 + 20 lowercase hex of the versionstamp + 0x00");
	T_OK(out.entries[1].key.len == 24 &&
	    memcmp(out.entries[1].key.p, want[1], 24) == 0,
	    "second key has the second versionstamp");
	T_OK(memcmp(out.entries[1].versionstamp, res.versionstamp,
	    KV_VERSIONSTAMP_BYTES) == 0 && out.entries[1].value.len == 1 &&
	    out.entries[1].value.p[0] == 'x',
	    "entry has the value and the commit versionstamp");
	kv_close(db);
}

/* --- expiry --------------------------------------------------------------- */

static void
test_expiry(void)
{
	struct kv_write_result	 res;
	struct kv_check		 c;
	struct kv_mutation	 m;
	struct kv_db		*db;
	sqlite3			*raw;
	uint8_t			 buf[11];
	char			 path[PATH_MAX];
	struct v8op		 o;
	int			 deleted = -1;
	int64_t			 rows;

	db_path(path, sizeof(path), "expiry.sqlite3");
	db = open_rw(path);
	raw = t_raw_open(path);
	T_OK(t_err_is(set_expiring(db, "e_past", "p", 1, KV_ENC_BYTES,
	    NOW - 1000), KV_OK), "set e_past expiring before now");
	T_OK(t_err_is(set_expiring(db, "e_now", "n", 1, KV_ENC_BYTES, NOW),
	    KV_OK), "set e_now expiring at now");
	T_OK(t_err_is(set_expiring(db, "e_future", "f", 1, KV_ENC_BYTES,
	    NOW + 1000), KV_OK), "set e_future expiring after now");
	T_OK(t_err_is(set_expiring(db, "e_never", "v", 1, KV_ENC_BYTES, 0),
	    KV_OK), "set e_never without expiry");
	T_EQ(t_sql_int(raw, "select expiration_ms from kv"
	    " where k = cast('e_future' as blob)"),
	    NOW + 1000, "expiration_ms is stored");
	T_EQ(t_sql_int(raw, "select expiration_ms from kv"
	    " where k = cast('e_never' as blob)"),
	    -1, "no expiry is stored as -1, as denokv does");

	T_OK(str_is(read1(db, range("e_", "e`", 10, 0), NOW),
	    "e_future,e_never"), "expired entries are invisible to reads");
	T_OK(str_is(read1(db, range("e_", "e`", 10, 1), NOW),
	    "e_never,e_future"), "and to reverse reads");
	T_OK(str_is(read1(db, range("e_", "e`", 10, 0), NOW - 2000),
	    "e_future,e_never,e_now,e_past"),
	    "before their expiry all entries are visible");
	T_OK(str_is(read1(db, range("e_", "e`", 10, 0), NOW + 1000),
	    "e_never"), "an entry is invisible at its expiry time");

	memset(&c, 0, sizeof(c));
	c.key = t_str("e_past");
	c.must_be_absent = 1;
	m = mut(KV_MUT_SET, "chk", "1", 1, KV_ENC_BYTES);
	T_OK(t_err_is(write_full(db, &c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "must_be_absent passes on an expired key");
	c.key = t_str("e_future");
	T_OK(t_err_is(write_full(db, &c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "must_be_absent fails on a not yet expired key");

	le64(100, buf);
	T_OK(t_err_is(set_expiring(db, "e_sum", buf, 8, KV_ENC_LE64, NOW - 1),
	    KV_OK), "set an expired KvU64 100");
	T_OK(t_err_is(le64_op(db, KV_MUT_SUM, "e_sum", 5), KV_OK) &&
	    u64_is(db, "e_sum", 5),
	    "KvU64 sum treats an expired key as missing");
	T_OK(t_err_is(set_expiring(db, "e_v8", buf, v8_num(100, buf), KV_ENC_V8,
	    NOW - 1), KV_OK), "set an expired V8 number 100");
	o = num_op(1);
	T_OK(t_err_is(v8_sum(db, "e_v8", &o), KV_OK) && v8_is_num(db, "e_v8", 1),
	    "V8 sum treats an expired key as missing");
	T_OK(t_err_is(set_expiring(db, "e_str", "s", 1, KV_ENC_BYTES, NOW - 1),
	    KV_OK), "set an expired bytes value");
	T_OK(t_err_is(le64_op(db, KV_MUT_SUM, "e_str", 2), KV_OK) &&
	    u64_is(db, "e_str", 2),
	    "KvU64 sum on an expired bytes value is not a type error");

	rows = t_sql_int(raw, "select count(*) from kv");
	T_OK(t_err_is(kv_delete_expired(db, NOW, 1000, &deleted), KV_OK),
	    "kv_delete_expired succeeds");
	T_EQ(deleted, 2, "it deletes the two expired rows");
	T_EQ(t_sql_int(raw, "select count(*) from kv"), rows - 2,
	    "the rows are gone from the file");
	T_EQ(t_sql_int(raw, "select count(*) from kv where k in"
	    " (cast('e_past' as blob), cast('e_now' as blob))"), 0,
	    "the expired ones are gone");
	T_OK(str_is(read1(db, range("e_", "e`", 10, 0), NOW - 2000),
	    "e_future,e_never,e_str,e_sum,e_v8"), "the others remain");

	T_OK(t_err_is(set_expiring(db, "x1", "1", 1, KV_ENC_BYTES, NOW - 5),
	    KV_OK) && t_err_is(set_expiring(db, "x2", "2", 1, KV_ENC_BYTES,
	    NOW - 5), KV_OK), "set two more expired entries");
	T_OK(kv_delete_expired(db, NOW, 1, &deleted) == KV_OK && deleted == 1,
	    "kv_delete_expired with batch 1 deletes one");
	T_OK(kv_delete_expired(db, NOW, 1, &deleted) == KV_OK && deleted == 1,
	    "and then the other");
	T_OK(kv_delete_expired(db, NOW, 1, &deleted) == KV_OK && deleted == 0,
	    "and then none");
	sqlite3_close(raw);
	kv_close(db);
}

/* --- queue ---------------------------------------------------------------- */

struct queue_row {
	int64_t	 ts;
	char	 id[64];
	uint8_t	 data[64];
	int	 dlen;
	char	 backoff[128], keys[128], tb[16], tk[16], td[16];
};

static int
read_queue_row(sqlite3 *db, int idx, struct queue_row *r)
{
	sqlite3_stmt	*st;
	int		 rc;

	memset(r, 0, sizeof(*r));
	if (sqlite3_prepare_v2(db, "select ts, id, data, backoff_schedule,"
	    " keys_if_undelivered, typeof(backoff_schedule),"
	    " typeof(keys_if_undelivered), typeof(data) from queue"
	    " order by ts limit 1 offset ?1", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int(st, 1, idx);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r->ts = sqlite3_column_int64(st, 0);
		snprintf(r->id, sizeof(r->id), "%s",
		    (const char *)sqlite3_column_text(st, 1));
		r->dlen = sqlite3_column_bytes(st, 2);
		if (r->dlen > 0 && r->dlen <= (int)sizeof(r->data))
			memcpy(r->data, sqlite3_column_blob(st, 2),
			    (size_t)r->dlen);
		snprintf(r->backoff, sizeof(r->backoff), "%s",
		    (const char *)sqlite3_column_text(st, 3));
		snprintf(r->keys, sizeof(r->keys), "%s",
		    (const char *)sqlite3_column_text(st, 4));
		snprintf(r->tb, sizeof(r->tb), "%s",
		    (const char *)sqlite3_column_text(st, 5));
		snprintf(r->tk, sizeof(r->tk), "%s",
		    (const char *)sqlite3_column_text(st, 6));
		snprintf(r->td, sizeof(r->td), "%s",
		    (const char *)sqlite3_column_text(st, 7));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* 8-4-4-4-12 lowercase hex. */
static void
test_enqueue(void)
{
	static const uint8_t	 k1[] = { 1, 2 }, k2[] = { 0, 255 };
	static const uint32_t	 backoff[] = { 10, 20, 3600000 };
	struct kv_bytes		 dl[2] = { { k1, 2 }, { k2, 2 } };
	struct kv_enqueue	 q[2];
	struct kv_write_result	 res;
	struct queue_row	 r0, r1;
	struct kv_db		*db;
	sqlite3			*raw;
	char			 path[PATH_MAX];

	db_path(path, sizeof(path), "queue.sqlite3");
	db = open_rw(path);
	raw = t_raw_open(path);
	memset(q, 0, sizeof(q));
	q[0].payload = t_str("hello");
	q[0].deadline_ms = NOW + 5000;
	q[1].payload = (struct kv_bytes){ NULL, 0 };
	q[1].deadline_ms = NOW + 10;
	q[1].undelivered_keys = dl;
	q[1].n_undelivered_keys = 2;
	q[1].backoff = backoff;
	q[1].n_backoff = 3;
	T_OK(t_err_is(write_full(db, NULL, 0, NULL, 0, q, 2, &res), KV_OK) &&
	    res.committed, "write with two enqueues commits");
	T_EQ(t_sql_int(raw, "select count(*) from queue"), 2,
	    "two rows in queue");
	T_EQ(t_sql_int(raw, "select count(*) from queue_running"), 0,
	    "queue_running is untouched");
	if (read_queue_row(raw, 1, &r0) != 0 ||
	    read_queue_row(raw, 0, &r1) != 0) {
		T_OK(0, "read the queue rows");
		goto out;
	}
	T_EQ(r0.ts, NOW + 5000, "ts is the deadline");
	T_OK(t_is_uuid(r0.id), "id is a UUID string (%s)", r0.id);
	T_OK(r0.dlen == 5 && memcmp(r0.data, "hello", 5) == 0,
	    "data is the payload");
	T_OK(str_is(r0.backoff, "[100,1000,5000,30000,60000]"),
	    "no schedule stores the default backoff schedule");
	T_OK(str_is(r0.keys, "[]"), "no dead-letter keys stores []");
	T_OK(str_is(r0.tb, "text") && str_is(r0.tk, "text"),
	    "backoff_schedule and keys_if_undelivered are text");

	T_EQ(r1.ts, NOW + 10, "second row ts is its deadline");
	T_OK(t_is_uuid(r1.id) && strcmp(r0.id, r1.id) != 0,
	    "second id is another UUID");
	T_OK(r1.dlen == 0 && str_is(r1.td, "blob"),
	    "empty payload is an empty blob");
	T_OK(str_is(r1.backoff, "[10,20,3600000]"),
	    "given backoff schedule is stored as JSON");
	T_OK(str_is(r1.keys, "[[1,2],[0,255]]"),
	    "dead-letter keys are stored as JSON byte arrays");
	T_OK(str_is(r1.tb, "text") && str_is(r1.tk, "text"),
	    "second row's JSON columns are text");
out:
	sqlite3_close(raw);
	kv_close(db);
}

/* --- checkpoints (what the housekeeper runs) ------------------------------ */

static long long
file_size(const char *path)
{
	struct stat	 sb;

	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void
test_checkpoint(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	char			 path[PATH_MAX], wal[PATH_MAX + 4], key[16];
	int			 frames = -1, done = -1, ok = 1;

	db_path(path, sizeof(path), "ckpt.sqlite3");
	snprintf(wal, sizeof(wal), "%s-wal", path);
	db = open_rw(path);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		if (set_bytes(db, key, "value", &res) != KV_OK)
			ok = 0;
	}
	T_OK(ok && file_size(wal) > 0, "20 writes leave frames in the WAL"
	    " (%lld bytes)", file_size(wal));
	T_OK(t_err_is(kv_checkpoint(db, 0, &frames, &done), KV_OK) &&
	    frames > 0 && done == frames,
	    "a passive checkpoint copies all %d frames (%d)", frames, done);
	T_OK(file_size(wal) > 0, "and keeps the WAL file's size");
	T_OK(t_err_is(kv_checkpoint(db, 1, &frames, &done), KV_OK) &&
	    file_size(wal) == 0, "a truncating checkpoint empties the WAL"
	    " file (%lld bytes)", file_size(wal));
	T_OK(get_at(db, "k19", NOW, &e) == 1 && version_of(db) == 20,
	    "the data is all there afterwards");
	kv_close(db);
}

/* --- two connections ------------------------------------------------------ */

#define CONC_ROUNDS	25

/* One of two threads, each with its own handle, adding 1 to one KvU64. */
struct conc_writer {
	struct kv_db		*db;
	pthread_barrier_t	*round;
	struct arena		 a;		/* its own: A is not shared */
	uint64_t		 version[CONC_ROUNDS];	/* 0: that write failed */
	enum kv_err		 err;		/* the first failure */
};

/*
 * Both threads leave the barrier together every round, so their two
 * writes really contend for the write lock (BEGIN IMMEDIATE and the busy
 * timeout must sort them out), and the commits interleave by construction.
 */
static void *
conc_writer_run(void *arg)
{
	struct conc_writer	*w = arg;
	struct kv_write_result	 res;
	struct kv_mutation	 m;
	struct kv_write		 wr;
	uint8_t			 one[8];
	enum kv_err		 err;

	le64(1, one);
	m = mut(KV_MUT_SUM, "ctr", one, 8, KV_ENC_LE64);
	memset(&wr, 0, sizeof(wr));
	wr.mutations = &m;
	wr.n_mutations = 1;
	for (int i = 0; i < CONC_ROUNDS; i++) {
		pthread_barrier_wait(w->round);
		arena_reset(&w->a);
		err = kv_atomic_write(w->db, &wr, NOW, &w->a, &res);
		w->version[i] = err == KV_OK && res.committed ?
		    t_vs_version(res.versionstamp) : 0;
		if (w->version[i] == 0 && w->err == KV_OK)
			w->err = err != KV_OK ? err : KV_ERR_INTERNAL;
	}
	return NULL;
}

static void
test_concurrent_writers(const char *path)
{
	struct conc_writer	 w[2];
	pthread_barrier_t	 round;
	pthread_t		 t[2];
	uint8_t			 seen[2 * CONC_ROUNDS + 1];
	char			 err[256];
	int			 increasing = 1, each_once = 1, started = 0;

	memset(w, 0, sizeof(w));
	memset(seen, 0, sizeof(seen));
	pthread_barrier_init(&round, NULL, 2);
	for (int i = 0; i < 2; i++) {
		/* A generous busy timeout: a lost race waits, never fails. */
		if ((w[i].db = open_db(path, 0, 10000, err, sizeof(err))) == NULL)
			T_BAIL("kv_open %s: %s", path, err);
		w[i].round = &round;
		arena_init(&w[i].a, 64 * 1024);
	}
	for (int i = 0; i < 2; i++)
		started += pthread_create(&t[i], NULL, conc_writer_run,
		    &w[i]) == 0;
	if (started != 2)
		T_BAIL("pthread_create failed");
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&round);

	T_OK(t_err_is(w[0].err, KV_OK) && t_err_is(w[1].err, KV_OK),
	    "2 x %d writes from two handles, started together each round,"
	    " all commit", CONC_ROUNDS);
	for (int i = 0; i < 2; i++) {
		for (int r = 0; r < CONC_ROUNDS; r++) {
			uint64_t	 v = w[i].version[r];

			if (r > 0 && v <= w[i].version[r - 1])
				increasing = 0;
			if (v == 0 || v > 2 * CONC_ROUNDS || seen[v]++)
				each_once = 0;
		}
	}
	T_OK(increasing, "each handle's versionstamps strictly increase");
	T_OK(each_once, "together they are versions 1..%d, each exactly once",
	    2 * CONC_ROUNDS);
	T_OK(u64_is(w[0].db, "ctr", 2 * CONC_ROUNDS) &&
	    u64_is(w[1].db, "ctr", 2 * CONC_ROUNDS),
	    "the counter is %d on both handles: no increment lost",
	    2 * CONC_ROUNDS);
	for (int i = 0; i < 2; i++) {
		kv_close(w[i].db);
		arena_fini(&w[i].a);
	}
}

static void
test_concurrency(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db[2];
	sqlite3			*raw;
	uint8_t			 prev[KV_VERSIONSTAMP_BYTES];
	char			 path[PATH_MAX], err[256];

	db_path(path, sizeof(path), "conc.sqlite3");
	test_concurrent_writers(path);

	/* Short busy timeouts: the lock below is held on purpose. */
	db[0] = open_db(path, 0, 50, err, sizeof(err));
	db[1] = open_db(path, 0, 50, err, sizeof(err));
	if (db[0] == NULL || db[1] == NULL)
		T_BAIL("two handles on %s: %s", path, err);
	T_OK(t_err_is(set_bytes(db[1], "c", "19", &res), KV_OK) &&
	    res.committed, "a write before the lock is taken");
	memcpy(prev, res.versionstamp, sizeof(prev));
	raw = t_raw_open(path);
	T_EQ(sqlite3_exec(raw, "begin immediate", NULL, NULL, NULL), SQLITE_OK,
	    "another connection takes the write lock");
	T_OK(t_err_is(set_bytes(db[0], "c", "busy", &res), KV_ERR_BUSY),
	    "a write while it is held is KV_ERR_BUSY");
	T_EQ(res.committed, 0, "and is not committed");
	T_OK(get_at(db[1], "c", NOW, &e) == 1 && e.value.len == 2 &&
	    memcmp(e.value.p, "19", 2) == 0,
	    "reads still work while the write lock is held");
	T_EQ(sqlite3_exec(raw, "commit", NULL, NULL, NULL), SQLITE_OK,
	    "the other connection commits");
	T_OK(t_err_is(set_bytes(db[0], "c", "free", &res), KV_OK) &&
	    res.committed, "then the write succeeds");
	T_OK(memcmp(res.versionstamp, prev, sizeof(prev)) > 0,
	    "with a greater versionstamp");
	T_OK(get_at(db[1], "c", NOW, &e) == 1 && e.value.len == 4 &&
	    memcmp(e.value.p, "free", 4) == 0, "visible to the other handle");
	sqlite3_close(raw);
	kv_close(db[0]);
	kv_close(db[1]);
}

/* --- bounded waits, the error table, faults, file modes ------------------- */

/*
 * Another process's connection holds the write lock for longer than the
 * busy timeout: the write gives up after about the timeout, not after
 * several timeouts in a row (it used to nap the whole timeout once per
 * retry, four times over).
 */
static void
test_busy_bound(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	sqlite3			*raw;
	char			 path[PATH_MAX], err[256];
	int64_t			 t0, waited;

	db_path(path, sizeof(path), "busybound.sqlite3");
	db = open_db(path, 0, 1000, err, sizeof(err));
	T_OK(db != NULL, "busy: a handle with a 1000 ms busy timeout (%s)",
	    err);
	if (db == NULL)
		return;
	T_OK(set_bytes(db, "k", "before", &res) == KV_OK && res.committed,
	    "busy: a first write commits");
	if ((raw = t_raw_open(path)) == NULL) {
		T_OK(0, "busy: a second connection opens");
		kv_close(db);
		return;
	}
	T_EQ(sqlite3_exec(raw, "begin immediate", NULL, NULL, NULL), SQLITE_OK,
	    "busy: another connection takes the write lock and keeps it");
	t0 = clock_mono_ms();
	T_OK(t_err_is(set_bytes(db, "k", "during", &res), KV_ERR_BUSY),
	    "busy: a write meanwhile is KV_ERR_BUSY");
	waited = clock_mono_ms() - t0;
	T_EQ(kv_err_status(KV_ERR_BUSY), 503, "busy: which is a 503");
	T_OK(waited >= 990 && waited < 2500, "busy: after about the 1000 ms"
	    " timeout, not a multiple of it (%lld ms)", (long long)waited);
	T_OK(get_at(db, "k", NOW, &e) == 1 && e.value.len == 6 &&
	    memcmp(e.value.p, "before", 6) == 0,
	    "busy: reads are served while the lock is held");
	sqlite3_exec(raw, "commit", NULL, NULL, NULL);
	T_OK(set_bytes(db, "k", "after", &res) == KV_OK && res.committed,
	    "busy: the write lands once the lock is released");
	sqlite3_close(raw);
	kv_close(db);
}

/* The one table from SQLite's result codes to ours. */
static void
test_error_table(void)
{
	static const struct {
		int		 rc, sys_errno;
		enum kv_err	 want;
		int		 status;
	} cases[] = {
		{ SQLITE_BUSY, 0, KV_ERR_BUSY, 503 },
		{ SQLITE_BUSY_SNAPSHOT, 0, KV_ERR_BUSY, 503 },
		{ SQLITE_LOCKED, 0, KV_ERR_BUSY, 503 },
		{ SQLITE_PROTOCOL, 0, KV_ERR_BUSY, 503 },
		{ SQLITE_NOMEM, 0, KV_ERR_NOMEM, 503 },
		{ SQLITE_FULL, ENOSPC, KV_ERR_DISK_FULL, 507 },
		{ SQLITE_IOERR_WRITE, ENOSPC, KV_ERR_DISK_FULL, 507 },
		{ SQLITE_IOERR_SHMSIZE, EDQUOT, KV_ERR_DISK_FULL, 507 },
		/* SQLite keeps no errno for a -shm that could not grow */
		{ SQLITE_IOERR_SHMSIZE, 0, KV_ERR_DISK_FULL, 507 },
		{ SQLITE_CORRUPT, 0, KV_ERR_CORRUPT, 500 },
		{ SQLITE_NOTADB, 0, KV_ERR_CORRUPT, 500 },
		{ SQLITE_IOERR_READ, EIO, KV_ERR_IO, 500 },
		{ SQLITE_IOERR_FSYNC, EIO, KV_ERR_IO, 500 },
		{ SQLITE_CANTOPEN, EACCES, KV_ERR_IO, 500 },
		{ SQLITE_READONLY, 0, KV_ERR_NOT_WRITABLE, 500 },
		{ SQLITE_READONLY_DBMOVED, 0, KV_ERR_NOT_WRITABLE, 500 },
		{ SQLITE_ERROR, 0, KV_ERR_STORAGE, 500 },
		{ SQLITE_MISUSE, 0, KV_ERR_STORAGE, 500 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum kv_err	 got = kv_err_for_sqlite(cases[i].rc,
		    cases[i].sys_errno);

		T_OK(got == cases[i].want &&
		    kv_err_status(got) == cases[i].status,
		    "SQLite code %d (errno %d) is %s, HTTP %d (got %s, %d)",
		    cases[i].rc, cases[i].sys_errno,
		    kv_err_name(cases[i].want), cases[i].status,
		    kv_err_name(got), kv_err_status(got));
	}
	T_OK(strstr(kv_err_message(KV_ERR_DISK_FULL),
	    "database or disk is full") != NULL,
	    "the disk-full answer says \"database or disk is full\"");
}

/* Fault hook: remembers what the engine reported. */
struct fault_log {
	int		 n;
	enum kv_err	 last;
};

static void
note_fault(void *ctx, enum kv_err code)
{
	struct fault_log	*f = ctx;

	f->n++;
	f->last = code;
}

/*
 * A damaged file: the kv table's root page overwritten with garbage. A read
 * of it is KV_ERR_CORRUPT (500, not a retry-forever 503), reported to the
 * fault hook each time; the rest of the file still answers.
 */
static void
test_corrupt_fault(void)
{
	struct fault_log	 faults = { 0, KV_OK };
	struct kv_hooks		 hooks = { .ctx = &faults, .fault = note_fault };
	struct kv_options	 opt = { .sync = KV_SYNC_FULL, .hooks = &hooks };
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db;
	sqlite3			*raw;
	char			 path[PATH_MAX], err[256] = "", key[16];
	uint8_t			 junk[65536];
	int64_t			 root, pagesize, version;
	int			 fd, ok = 1;

	db_path(path, sizeof(path), "corrupt.sqlite3");
	if ((db = open_rw(path)) == NULL) {
		T_OK(0, "corrupt: a database to damage");
		return;
	}
	/* Enough rows that the table's root is an interior page. */
	for (int i = 0; i < 400 && ok; i++) {
		snprintf(key, sizeof(key), "k%04d", i);
		ok = set_bytes(db, key, "some value that takes room", &res) ==
		    KV_OK;
	}
	kv_close(db);	/* the last connection checkpoints the WAL away */
	T_OK(ok, "corrupt: 400 rows written and the file closed");
	if ((raw = t_raw_open(path)) == NULL)
		return;
	root = t_sql_int(raw, "select rootpage from sqlite_schema where"
	    " name = 'kv'");
	pagesize = t_sql_int(raw, "pragma page_size");
	sqlite3_close(raw);
	memset(junk, 0xA5, sizeof(junk));
	fd = open(path, O_WRONLY);
	T_OK(fd >= 0 && root > 1 && pagesize > 0 && pagesize <=
	    (int64_t)sizeof(junk) && pwrite(fd, junk, (size_t)pagesize,
	    (off_t)((root - 1) * pagesize)) == (ssize_t)pagesize,
	    "corrupt: the kv table's root page (%lld) overwritten",
	    (long long)root);
	if (fd >= 0)
		close(fd);
	db = kv_open(path, &opt, err, sizeof(err));
	T_OK(db != NULL, "corrupt: the file still opens (%s)", err);
	if (db == NULL)
		return;
	T_EQ(get_at(db, "k0001", NOW, &e), -1, "corrupt: a read of the"
	    " damaged table fails");
	arena_reset(&A);
	{
		struct kv_range		 r = { .start = t_str("a"),
		    .end = t_str("z"), .limit = 10 };
		struct kv_range_result	 rr;

		T_OK(t_err_is(kv_snapshot_read(db, &r, 1, NOW, &A, &rr),
		    KV_ERR_CORRUPT), "corrupt: with KV_ERR_CORRUPT");
	}
	T_EQ(kv_err_status(KV_ERR_CORRUPT), 500, "corrupt: a 500, which"
	    " clients do not mistake for busy");
	T_OK(faults.n >= 2 && faults.last == KV_ERR_CORRUPT,
	    "corrupt: each one reported to the fault hook (%d)", faults.n);
	T_OK(t_err_is(kv_current_version(db, &version), KV_OK),
	    "corrupt: the undamaged data_version table still reads");
	kv_close(db);
}

/*
 * kv_open creates the database with exactly the mode asked for, whatever
 * the umask, and SQLite gives the -wal and -shm files the same mode. An
 * existing file keeps its mode.
 */
static void
test_file_mode(void)
{
	struct kv_options	 opt = { .sync = KV_SYNC_FULL,
	    .file_mode = 0640 };
	struct kv_write_result	 res;
	struct kv_db		*db;
	struct stat		 sb;
	char			 path[PATH_MAX], side[PATH_MAX + 8];
	char			 err[256];
	mode_t			 old;

	db_path(path, sizeof(path), "mode.sqlite3");
	err[0] = '\0';
	old = umask(0077);	/* would make 0600 of a plain 0640 */
	db = kv_open(path, &opt, err, sizeof(err));
	umask(old);
	T_OK(db != NULL, "mode: kv_open with file_mode 0640 (%s)", err);
	if (db == NULL)
		return;
	T_OK(set_bytes(db, "k", "v", &res) == KV_OK, "mode: a write");
	T_OK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640,
	    "mode: the database file is 0640 (%04o)",
	    (unsigned)(sb.st_mode & 07777));
	snprintf(side, sizeof(side), "%s-wal", path);
	T_OK(stat(side, &sb) == 0 && (sb.st_mode & 07777) == 0640,
	    "mode: its -wal file too (%04o)", (unsigned)(sb.st_mode & 07777));
	snprintf(side, sizeof(side), "%s-shm", path);
	T_OK(stat(side, &sb) == 0 && (sb.st_mode & 07777) == 0640,
	    "mode: its -shm file too (%04o)", (unsigned)(sb.st_mode & 07777));
	kv_close(db);
	chmod(path, 0604);
	opt.file_mode = 0600;
	db = kv_open(path, &opt, err, sizeof(err));
	T_OK(db != NULL && stat(path, &sb) == 0 &&
	    (sb.st_mode & 07777) == 0604,
	    "mode: an existing file keeps its own mode (%04o)",
	    (unsigned)(sb.st_mode & 07777));
	kv_close(db);
}

/* --- value round trips ---------------------------------------------------- */

static void
test_values(void)
{
	static const enum kv_encoding encs[] = {
		KV_ENC_V8, KV_ENC_LE64, KV_ENC_BYTES,
	};
	static const size_t	 sizes[] = { 0, 1, 8, BIG_VALUE };
	struct kv_write_result	 res;
	struct kv_mutation	 m;
	struct kv_entry		 e;
	struct kv_db		*db;
	sqlite3			*raw;
	uint8_t			*big, *key;
	char			 path[PATH_MAX], name[32], sql[160], t[16];
	char			 want[16];
	int			 ok;

	db_path(path, sizeof(path), "values.sqlite3");
	if ((big = malloc(BIG_VALUE)) == NULL || (key = malloc(2048)) == NULL)
		T_BAIL("out of memory");
	for (size_t i = 0; i < BIG_VALUE; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	db = open_rw(path);
	raw = t_raw_open(path);
	for (size_t i = 0; i < sizeof(encs) / sizeof(encs[0]); i++) {
		for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			snprintf(name, sizeof(name), "val_%d_%zu",
			    (int)encs[i], sizes[j]);
			m = mut(KV_MUT_SET, name, big, sizes[j], encs[i]);
			ok = write1(db, m, &res) == KV_OK && res.committed &&
			    get_at(db, name, NOW, &e) == 1 &&
			    e.encoding == encs[i] && e.value.len == sizes[j] &&
			    (sizes[j] == 0 ||
			    memcmp(e.value.p, big, sizes[j]) == 0);
			T_OK(ok, "encoding %d, %zu-byte value reads back"
			    " byte-identical", (int)encs[i], sizes[j]);
			snprintf(sql, sizeof(sql), "select typeof(v) ||"
			    " v_encoding from kv where k = cast('%s' as blob)",
			    name);
			t_sql_text(raw, sql, t, sizeof(t));
			snprintf(want, sizeof(want), "blob%d", (int)encs[i]);
			T_OK(str_is(t, want), "stored as a blob with"
			    " v_encoding %d", (int)encs[i]);
		}
	}

	/* Binary keys: NUL and 0xFF bytes, and the longest write key. */
	key[0] = 0x00;
	key[1] = 0xFF;
	key[2] = 0x01;
	m = mut(KV_MUT_SET, "", "bin", 3, KV_ENC_BYTES);
	m.key = (struct kv_bytes){ key, 3 };
	T_OK(write1(db, m, &res) == KV_OK &&
	    get_key(db, m.key, NOW, &e) == 1 && e.key.len == 3 &&
	    memcmp(e.key.p, key, 3) == 0 && e.value.len == 3,
	    "a key with 0x00 and 0xFF bytes round-trips");
	memset(key, 0xAB, 2048);
	m.key = (struct kv_bytes){ key, 2048 };
	T_OK(write1(db, m, &res) == KV_OK &&
	    get_key(db, m.key, NOW, &e) == 1 && e.key.len == 2048 &&
	    memcmp(e.key.p, key, 2048) == 0, "a 2048-byte key round-trips");
	sqlite3_close(raw);
	kv_close(db);
	free(big);
	free(key);
}

/* --- a COMMIT that fails after its frames reached the WAL ----------------- */

/*
 * A VFS over the default one whose xShmMap, while armed, refuses to grow
 * the wal-index past its first region, as on a full disk: SQLite then
 * fails with SQLITE_IOERR_SHMSIZE (and no errno). It asks for the region
 * after it wrote the committing transaction's frames to the WAL, so a
 * COMMIT fails with its frames, commit mark included, in the WAL file.
 */
static sqlite3_vfs		 shim_vfs;
static const sqlite3_io_methods	*shim_base_methods;
static sqlite3_io_methods	 shim_methods;
static int			 shim_shm_full;

static int
shim_shm_map(sqlite3_file *f, int region, int size, int extend,
    void volatile **pp)
{
	if (shim_shm_full && region > 0 && extend)
		return SQLITE_IOERR_SHMSIZE;
	return shim_base_methods->xShmMap(f, region, size, extend, pp);
}

static int
shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *out)
{
	sqlite3_vfs	*base = vfs->pAppData;
	int		 rc = base->xOpen(base, name, f, flags, out);

	if (rc == SQLITE_OK && (flags & SQLITE_OPEN_MAIN_DB) &&
	    f->pMethods != NULL) {
		if (shim_base_methods == NULL) {
			shim_base_methods = f->pMethods;
			shim_methods = *f->pMethods;
			shim_methods.xShmMap = shim_shm_map;
		}
		f->pMethods = &shim_methods;
	}
	return rc;
}

/* Makes the shim the default VFS, so that kv_open uses it. */
static int
shim_register(void)
{
	return t_vfs_wrap_default(&shim_vfs, "test-shm-full", shim_open);
}

/*
 * A child process writes (a reader pins the WAL so it only grows) until a
 * write fails because the wal-index cannot grow, and then dies without
 * closing, as a crashed or killed server does. The client was told that
 * write failed (507: the disk is full) and will retry it, so recovery
 * must not bring it back: it would then be applied twice.
 */
static void
test_failed_commit_stays_failed(void)
{
	struct {
		int		 failed_at;	/* write number, -1: none */
		enum kv_err	 err;
		int		 visible_after;	/* the child still saw it */
	}			*out;
	char			 path[PATH_MAX], key[32];
	static char		 value[60000];
	struct kv_db		*db;
	struct kv_entry		 e;
	pid_t			 pid;
	int			 status;

	db_path(path, sizeof(path), "failed_commit.sqlite");
	out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED || shim_register() != 0) {
		T_OK(0, "failed commit: a shared page and the test VFS");
		return;
	}
	out->failed_at = -1;
	memset(value, 'v', sizeof(value));
	if ((pid = fork()) == 0) {
		struct kv_options	 opt = { .sync = KV_SYNC_OFF };
		struct kv_write_result	 res;
		char			 err[256];
		sqlite3			*pin;
		enum kv_err		 r = KV_OK;

		if ((db = kv_open(path, &opt, err, sizeof(err))) == NULL ||
		    (pin = t_raw_open(path)) == NULL ||
		    sqlite3_exec(pin, "begin; select count(*) from kv", NULL,
		    NULL, NULL) != SQLITE_OK)
			_exit(2);
		shim_shm_full = 1;
		for (int i = 0; i < 1000 && r == KV_OK; i++) {
			snprintf(key, sizeof(key), "big%04d", i);
			r = write1(db, mut(KV_MUT_SET, key, value,
			    sizeof(value), KV_ENC_BYTES), &res);
			if (r != KV_OK) {
				out->failed_at = i;
				out->err = r;
				out->visible_after = get_at(db, key, NOW,
				    &e) == 1;
			}
		}
		_exit(0);	/* no close: the process dies */
	}
	T_OK(pid > 0 && waitpid(pid, &status, 0) == pid &&
	    WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "failed commit: the writer ran and died");
	shim_shm_full = 0;
	T_OK(out->failed_at > 0, "failed commit: a write failed once the"
	    " wal-index could not grow (write %d)", out->failed_at);
	T_OK(out->err == KV_ERR_DISK_FULL, "failed commit: as a full disk"
	    " (%s), which the client retries", kv_err_name(out->err));
	T_EQ(out->visible_after, 0, "failed commit: the write was not visible"
	    " afterwards");
	if ((db = open_rw(path)) != NULL && out->failed_at > 0) {
		snprintf(key, sizeof(key), "big%04d", out->failed_at);
		T_EQ(get_at(db, key, NOW, &e), 0, "failed commit: after the"
		    " crash and recovery the refused write is still absent"
		    " (else the client's retry applies it twice)");
		snprintf(key, sizeof(key), "big%04d", out->failed_at - 1);
		T_EQ(get_at(db, key, NOW, &e), 1, "failed commit: the write"
		    " before it is there");
	} else
		T_OK(0, "failed commit: the file opens again");
	kv_close(db);
	sqlite3_vfs_unregister(&shim_vfs);
	munmap(out, sizeof(*out));
}

int
main(void)
{
	t_make_dir(tmpdir);
	arena_init(&A, 64 * 1024);
	test_schema();
	test_read_only();
	test_versionstamps();
	test_ranges();
	test_delete();
	test_checks();
	test_le64();
	test_v8_sum();
	test_v8_sum_edges();
	test_versionstamped_key();
	test_expiry();
	test_enqueue();
	test_checkpoint();
	test_concurrency();
	test_busy_bound();
	test_error_table();
	test_corrupt_fault();
	test_file_mode();
	test_failed_commit_stays_failed();
	test_values();
	arena_fini(&A);
	t_remove_dir(tmpdir);
	return t_done();
}
