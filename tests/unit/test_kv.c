/*
 * test_kv.c: unit tests of the storage engine (src/kv_sqlite.c) through
 * kv.h, printing TAP. Focus: denokv's on-disk schema and WAL mode,
 * versionstamps, range reads, checks and all-or-nothing writes, KvU64 and
 * V8 sum/min/max, versionstamped keys, expiry, the queue table, two
 * connections on one file, and byte-exact value round trips. Every
 * database is a fresh file under a mkdtemp directory removed at the end;
 * the SQLite files are also inspected directly with sqlite3.
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
#include "v8scalar.h"
#include "testhelp.h"

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

static void
remove_tmpdir(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX];

	if ((d = opendir(tmpdir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		db_path(path, sizeof(path), de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
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
		printf("# kv_open %s: %s\n", path, err);
	return db;
}

static sqlite3 *
raw_open(const char *path)
{
	sqlite3	*db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		printf("# sqlite3_open %s failed\n", path);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* The first column of the first row as an integer; -999 if no row. */
static int64_t
sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;
	int64_t		 v = -999;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		printf("# prepare \"%s\": %s\n", sql, sqlite3_errmsg(db));
		return -998;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The first column of the first row as text; "" if no row. */
static void
sql_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
	sqlite3_stmt		*st;
	const unsigned char	*t;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		printf("# prepare \"%s\": %s\n", sql, sqlite3_errmsg(db));
		return;
	}
	if (sqlite3_step(st) == SQLITE_ROW &&
	    (t = sqlite3_column_text(st, 0)) != NULL)
		snprintf(out, len, "%s", (const char *)t);
	sqlite3_finalize(st);
}

/* --- helpers: values ------------------------------------------------------ */

static struct kv_bytes
str(const char *s)
{
	return (struct kv_bytes){ (const uint8_t *)s, strlen(s) };
}

static int
err_is(enum kv_err got, enum kv_err want)
{
	if (got != want)
		printf("#   got %s, want %s\n", kv_err_name(got),
		    kv_err_name(want));
	return got == want;
}

static uint64_t
vs_version(const uint8_t vs[KV_VERSIONSTAMP_BYTES])
{
	uint64_t	 v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | vs[i];
	return v;
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
	m.key = str(key);
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
	return get_key(db, str(key), now_ms, e);
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
	return (struct kv_range){ str(start), str(end), limit, reverse };
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
	char			 path[PATH_MAX], sql[256], text[64];

	db_path(path, sizeof(path), "schema.sqlite3");
	db = open_rw(path);
	T_OK(db != NULL, "kv_open creates a new database");
	if (db == NULL)
		return;
	T_OK(access(path, F_OK) == 0, "the database file exists");
	T_OK(!kv_is_read_only(db), "a read-write handle is not read-only");
	if ((raw = raw_open(path)) == NULL) {
		kv_close(db);
		return;
	}
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "select count(*) from sqlite_master"
		    " where type = 'table' and name = '%s'", tables[i]);
		T_EQ(sql_int(raw, sql), 1, "schema has table %s", tables[i]);
	}
	T_EQ(sql_int(raw, "select count(*) from pragma_table_info('kv') where"
	    " name in ('k', 'v', 'v_encoding', 'version', 'seq',"
	    " 'expiration_ms')"), 6, "kv has denokv's six columns");
	T_EQ(sql_int(raw, "select count(*) from sqlite_master where"
	    " type = 'index' and name = 'kv_expiration_ms_idx'"), 1,
	    "kv has the expiration index");
	T_EQ(sql_int(raw, "select version from migration_state where k = 0"),
	    3, "migration_state.version is 3");
	T_EQ(sql_int(raw, "select version from data_version where k = 0"), 0,
	    "a new database starts at data version 0");
	sql_text(raw, "pragma journal_mode", text, sizeof(text));
	T_OK(str_is(text, "wal"), "journal_mode is wal");

	T_OK(err_is(set_bytes(db, "keep", "me", &res), KV_OK) &&
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
	T_EQ(sql_int(raw, "select count(*) from migration_state"), 1,
	    "migration_state still has one row after reopening");
	T_EQ(sql_int(raw, "select version from migration_state where k = 0"),
	    3, "migration_state.version still 3 after reopening");
	T_EQ(sql_int(raw, "select count(*) from data_version"), 1,
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
	if ((db = open_rw(path)) == NULL)
		return;
	T_OK(err_is(set_bytes(db, "k", "v", &res), KV_OK) && res.committed,
	    "write before opening read-only");
	kv_close(db);
	db = open_db(path, 1, 0, err, sizeof(err));
	T_OK(db != NULL, "read-only open of a KV database (%s)", err);
	if (db == NULL)
		return;
	T_OK(kv_is_read_only(db), "kv_is_read_only is set");
	T_EQ(get_at(db, "k", NOW, &e), 1, "read-only handle reads data");
	T_OK(err_is(set_bytes(db, "k2", "v", &res), KV_ERR_READ_ONLY),
	    "read-only handle refuses a write with KV_ERR_READ_ONLY");
	T_EQ(res.committed, 0, "refused write is not committed");
	T_EQ(get_at(db, "k2", NOW, &e), 0, "refused write stored nothing");
	T_EQ(version_of(db), 1, "refused write left the data version");
	kv_close(db);

	/* Another process holds the file exclusively: say so. */
	if ((raw = raw_open(path)) == NULL)
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
	if ((db = open_rw(path)) == NULL)
		return;
	T_OK(err_is(set_bytes(db, "a", "1", &res), KV_OK) && res.committed,
	    "first write commits");
	memcpy(vs1, res.versionstamp, sizeof(vs1));
	T_OK(vs1[8] == 0 && vs1[9] == 0, "versionstamp ends in two zero bytes");
	T_EQ(vs_version(vs1), version_of(db),
	    "versionstamp starts with the big-endian data version");
	T_EQ(vs_version(vs1), 1, "first versionstamp is version 1");
	T_OK(get_at(db, "a", NOW, &e) == 1 &&
	    memcmp(e.versionstamp, vs1, sizeof(vs1)) == 0,
	    "read returns the write's versionstamp");

	T_OK(err_is(set_bytes(db, "a", "2", &res), KV_OK) && res.committed,
	    "second write commits");
	T_OK(memcmp(res.versionstamp, vs1, sizeof(vs1)) > 0,
	    "second versionstamp is greater");
	T_OK(res.versionstamp[8] == 0 && res.versionstamp[9] == 0,
	    "second versionstamp ends in two zero bytes");
	memcpy(vs1, res.versionstamp, sizeof(vs1));

	m[0] = mut(KV_MUT_SET, "x", "1", 1, KV_ENC_BYTES);
	m[1] = mut(KV_MUT_SET, "y", "2", 1, KV_ENC_BYTES);
	m[2] = mut(KV_MUT_SET, "z", "3", 1, KV_ENC_BYTES);
	T_OK(err_is(write_muts(db, m, 3, &res), KV_OK) && res.committed,
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
	if ((db = open_rw(path)) == NULL)
		return;
	for (int i = 0; i < 5; i++)
		m[i] = mut(KV_MUT_SET, k[i], v[i], 2, KV_ENC_BYTES);
	T_OK(err_is(write_muts(db, m, 5, &res), KV_OK) && res.committed,
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
	if ((db = open_rw(path)) == NULL)
		return;
	T_OK(err_is(set_bytes(db, "d1", "x", &res), KV_OK), "set d1");
	T_OK(err_is(set_bytes(db, "d2", "y", &res), KV_OK), "set d2");
	T_OK(err_is(write1(db, mut(KV_MUT_DELETE, "d1", NULL, 0, 0), &res),
	    KV_OK) && res.committed, "delete d1 commits");
	T_EQ(get_at(db, "d1", NOW, &e), 0, "deleted key is gone");
	T_EQ(get_at(db, "d2", NOW, &e), 1, "other key remains");
	T_OK(err_is(write1(db, mut(KV_MUT_DELETE, "nope", NULL, 0, 0), &res),
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
	if ((db = open_rw(path)) == NULL)
		return;
	T_OK(err_is(set_bytes(db, "c1", "x", &res), KV_OK), "set c1");
	memcpy(vs1, res.versionstamp, sizeof(vs1));
	memset(c, 0, sizeof(c));

	c[0].key = str("nope");
	c[0].must_be_absent = 1;
	m = mut(KV_MUT_SET, "w1", "1", 1, KV_ENC_BYTES);
	T_OK(err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "must_be_absent on a missing key passes");
	T_EQ(get_at(db, "w1", NOW, &e), 1, "and the write is applied");

	v0 = version_of(db);
	c[0].key = str("c1");
	m = mut(KV_MUT_SET, "w2", "1", 1, KV_ENC_BYTES);
	T_OK(err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK),
	    "a failed check is not an error");
	T_EQ(res.committed, 0, "must_be_absent on an existing key fails");
	T_OK(res.n_failed_checks == 1 && res.failed_checks[0] == 0,
	    "failed_checks lists index 0");
	T_EQ(get_at(db, "w2", NOW, &e), 0, "the write is not applied");
	T_EQ(version_of(db), v0, "the data version is unchanged");

	c[0].must_be_absent = 0;
	memcpy(c[0].versionstamp, vs1, sizeof(vs1));
	m = mut(KV_MUT_SET, "w3", "1", 1, KV_ENC_BYTES);
	T_OK(err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "versionstamp check passes when equal");
	T_EQ(get_at(db, "w3", NOW, &e), 1, "and the write is applied");

	v0 = version_of(db);
	c[0].versionstamp[7] ^= 0x01;
	m = mut(KV_MUT_SET, "w4", "1", 1, KV_ENC_BYTES);
	T_OK(err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "versionstamp check fails when different");
	T_EQ(get_at(db, "w4", NOW, &e), 0, "and the write is not applied");

	memcpy(c[0].versionstamp, vs1, sizeof(vs1));
	c[0].key = str("nope");
	T_OK(err_is(write_full(db, c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "versionstamp check on a missing key fails");
	T_EQ(version_of(db), v0, "failed checks left the data version");

	/* Five checks, three failing: all three are reported. */
	memset(c, 0, sizeof(c));
	c[0].key = str("nope");
	c[0].must_be_absent = 1;			/* passes */
	c[1].key = str("c1");
	c[1].must_be_absent = 1;			/* fails */
	c[2].key = str("c1");
	memcpy(c[2].versionstamp, vs1, sizeof(vs1));	/* passes */
	c[3].key = str("c1");				/* fails: zero vs */
	c[4].key = str("w1");
	c[4].must_be_absent = 1;			/* fails */
	m = mut(KV_MUT_SET, "w5", "1", 1, KV_ENC_BYTES);
	if ((raw = raw_open(path)) == NULL) {
		kv_close(db);
		return;
	}
	T_OK(err_is(write_full(db, c, 5, &m, 1, &q, 1, &res), KV_OK) &&
	    !res.committed, "write with three failing checks of five fails");
	T_EQ(res.n_failed_checks, 3, "three failed checks are reported");
	T_OK(res.n_failed_checks == 3 && res.failed_checks[0] == 1 &&
	    res.failed_checks[1] == 3 && res.failed_checks[2] == 4,
	    "failed_checks are indexes 1, 3, 4");
	T_EQ(get_at(db, "w5", NOW, &e), 0, "its mutation is not applied");
	T_EQ(sql_int(raw, "select count(*) from queue"), 0,
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
	if ((db = open_rw(path)) == NULL)
		return;
	T_OK(err_is(le64_op(db, KV_MUT_SUM, "s", 5), KV_OK),
	    "sum on a missing key");
	T_OK(u64_is(db, "s", 5), "stores the operand");
	T_OK(err_is(le64_op(db, KV_MUT_SUM, "s", 3), KV_OK) &&
	    u64_is(db, "s", 8), "sum 5 + 3 = 8");
	T_OK(err_is(le64_op(db, KV_MUT_SUM, "wrap", UINT64_MAX), KV_OK) &&
	    err_is(le64_op(db, KV_MUT_SUM, "wrap", 2), KV_OK) &&
	    u64_is(db, "wrap", 1), "sum 0xFFFFFFFFFFFFFFFF + 2 wraps to 1");

	T_OK(err_is(le64_op(db, KV_MUT_MIN, "min", 10), KV_OK) &&
	    u64_is(db, "min", 10), "min on a missing key stores the operand");
	T_OK(err_is(le64_op(db, KV_MUT_MIN, "min", 4), KV_OK) &&
	    u64_is(db, "min", 4), "min(10, 4) = 4");
	T_OK(err_is(le64_op(db, KV_MUT_MIN, "min", 9), KV_OK) &&
	    u64_is(db, "min", 4), "min(4, 9) = 4");
	T_OK(err_is(le64_op(db, KV_MUT_MAX, "max", 3), KV_OK) &&
	    u64_is(db, "max", 3), "max on a missing key stores the operand");
	T_OK(err_is(le64_op(db, KV_MUT_MAX, "max", 7), KV_OK) &&
	    u64_is(db, "max", 7), "max(3, 7) = 7");
	T_OK(err_is(le64_op(db, KV_MUT_MAX, "max", 1), KV_OK) &&
	    u64_is(db, "max", 7), "max(7, 1) = 7");
	T_OK(err_is(le64_op(db, KV_MUT_MAX, "maxbig", UINT64_MAX), KV_OK) &&
	    err_is(le64_op(db, KV_MUT_MAX, "maxbig", 1), KV_OK) &&
	    u64_is(db, "maxbig", UINT64_MAX), "max compares unsigned");

	T_OK(err_is(write1(db, mut(KV_MUT_SET, "v8", num, v8_num(1, num),
	    KV_ENC_V8), &res), KV_OK), "set a V8 value");
	T_OK(err_is(set_bytes(db, "bytes", "abc", &res), KV_OK),
	    "set a bytes value");
	v0 = version_of(db);
	le64(1, one);
	m[0] = mut(KV_MUT_SET, "side", "x", 1, KV_ENC_BYTES);
	m[1] = mut(KV_MUT_SUM, "v8", one, 8, KV_ENC_LE64);
	T_OK(err_is(write_muts(db, m, 2, &res), KV_ERR_LE64_TARGET),
	    "KvU64 sum on a V8 value is KV_ERR_LE64_TARGET");
	T_EQ(res.committed, 0, "and is not committed");
	T_EQ(get_at(db, "side", NOW, &e), 0,
	    "an earlier set in the same write is not applied");
	T_OK(v8_is_num(db, "v8", 1), "the V8 value is unchanged");
	T_EQ(version_of(db), v0, "the data version is unchanged");
	m[1] = mut(KV_MUT_MAX, "bytes", one, 8, KV_ENC_LE64);
	T_OK(err_is(write_muts(db, m, 2, &res), KV_ERR_LE64_TARGET),
	    "KvU64 max on a bytes value is KV_ERR_LE64_TARGET");
	T_EQ(get_at(db, "side", NOW, &e), 0, "and nothing is written");

	T_OK(err_is(write1(db, mut(KV_MUT_MIN, "min", num, 11, KV_ENC_V8),
	    &res), KV_ERR_LE64_OPERAND),
	    "min with a V8 operand is KV_ERR_LE64_OPERAND");
	T_OK(err_is(write1(db, mut(KV_MUT_MAX, "max", "12345678", 8,
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
	if ((db = open_rw(path)) == NULL)
		return;
	o = big_op(5, 0);
	T_OK(o.oplen == sizeof(five) && memcmp(o.op, five, sizeof(five)) == 0,
	    "test helper encodes 5n as FF 0F 5A 10 05 00..");

	o = num_op(5);
	T_OK(err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", 5),
	    "number sum on a missing key stores the operand");
	o = num_op(2.5);
	T_OK(err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", 7.5),
	    "number 5 + 2.5 = 7.5");
	o = num_op(-10);
	T_OK(err_is(v8_sum(db, "n", &o), KV_OK) && v8_is_num(db, "n", -2.5),
	    "number 7.5 + -10 = -2.5");

	o = big_op(5, 0);
	T_OK(err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 0, 5, 0),
	    "bigint sum on a missing key stores the operand");
	o = big_op(7, 0);
	T_OK(err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 0, 12, 0), "bigint 5n + 7n = 12n");
	o = big_op(20, 1);
	T_OK(err_is(v8_sum(db, "b", &o), KV_OK) &&
	    v8_is_bigint(db, "b", 1, 8, 0), "bigint 12n + -20n = -8n");
	o = big_op(UINT64_MAX, 0);
	T_OK(err_is(v8_sum(db, "carry", &o), KV_OK), "set bigint 2^64-1");
	o = big_op(1, 0);
	T_OK(err_is(v8_sum(db, "carry", &o), KV_OK) &&
	    v8_is_bigint(db, "carry", 0, 0, 1),
	    "bigint (2^64-1)n + 1n = 2^64n (no wrap)");

	v0 = version_of(db);
	o = big_op(1, 0);
	T_OK(err_is(v8_sum(db, "n", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "number + bigint is KV_ERR_SUM_TYPE_MISMATCH");
	T_OK(v8_is_num(db, "n", -2.5), "and the number is unchanged");
	o = num_op(1);
	T_OK(err_is(v8_sum(db, "b", &o), KV_ERR_SUM_TYPE_MISMATCH),
	    "bigint + number is KV_ERR_SUM_TYPE_MISMATCH");
	T_EQ(version_of(db), v0, "mismatched sums left the data version");

	/* Bounds on numbers. */
	o = num_op(10);
	T_OK(err_is(v8_sum(db, "nb", &o), KV_OK), "set number 10");
	v0 = version_of(db);
	o = num_op(5);
	o.hilen = v8_num(12, o.hi);
	T_OK(err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_OUT_OF_RANGE),
	    "10 + 5 over max 12 without clamp is KV_ERR_SUM_OUT_OF_RANGE");
	T_OK(v8_is_num(db, "nb", 10), "and the value is unchanged");
	T_EQ(version_of(db), v0, "and the data version is unchanged");
	o.clamp = 1;
	T_OK(err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 12),
	    "10 + 5 with max 12 and clamp = 12");
	o = num_op(-20);
	o.lolen = v8_num(0, o.lo);
	T_OK(err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_OUT_OF_RANGE) &&
	    v8_is_num(db, "nb", 12),
	    "12 - 20 under min 0 without clamp is refused");
	o.clamp = 1;
	T_OK(err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 0),
	    "12 - 20 with min 0 and clamp = 0");
	o = num_op(3);
	o.lolen = v8_num(0, o.lo);
	o.hilen = v8_num(100, o.hi);
	T_OK(err_is(v8_sum(db, "nb", &o), KV_OK) && v8_is_num(db, "nb", 3),
	    "0 + 3 within [0, 100] = 3");

	/* Bounds on bigints. */
	o = big_op(10, 0);
	o.hilen = v8_bigint(15, 0, o.hi);
	o.clamp = 1;
	T_OK(err_is(v8_sum(db, "bb", &o), KV_OK), "set bigint 10n");
	T_OK(err_is(v8_sum(db, "bb", &o), KV_OK) &&
	    v8_is_bigint(db, "bb", 0, 15, 0),
	    "10n + 10n with max 15n and clamp = 15n");
	o.clamp = 0;
	T_OK(err_is(v8_sum(db, "bb", &o), KV_ERR_SUM_OUT_OF_RANGE) &&
	    v8_is_bigint(db, "bb", 0, 15, 0),
	    "15n + 10n over max 15n without clamp is refused");

	/* Bounds of another type than the operand. */
	v0 = version_of(db);
	o = num_op(1);
	o.hilen = v8_bigint(100, 0, o.hi);
	T_OK(err_is(v8_sum(db, "nb", &o), KV_ERR_SUM_MINMAX_TYPE),
	    "number operand with bigint max is KV_ERR_SUM_MINMAX_TYPE");
	o = big_op(1, 0);
	o.lolen = v8_num(0, o.lo);
	T_OK(err_is(v8_sum(db, "bb", &o), KV_ERR_SUM_MINMAX_TYPE),
	    "bigint operand with number min is KV_ERR_SUM_MINMAX_TYPE");
	T_OK(v8_is_num(db, "nb", 3) && v8_is_bigint(db, "bb", 0, 15, 0),
	    "refused sums left the values");
	T_EQ(version_of(db), v0, "refused sums left the data version");

	/* A KvU64 plus a small bigint stays a KvU64. */
	le64(7, buf);
	T_OK(err_is(write1(db, mut(KV_MUT_SET, "u", buf, 8, KV_ENC_LE64),
	    &res), KV_OK), "set KvU64 7");
	o = big_op(5, 0);
	T_OK(err_is(v8_sum(db, "u", &o), KV_OK) && u64_is(db, "u", 12),
	    "KvU64 7 + bigint 5n = KvU64 12");
	T_OK(get_at(db, "u", NOW, &e) == 1 && e.encoding == KV_ENC_LE64 &&
	    e.value.len == 8, "the result is stored as KvU64");
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
	if ((db = open_rw(path)) == NULL)
		return;
	for (int w = 0; w < 2; w++) {
		T_OK(err_is(write1(db, mut(KV_MUT_SET_VERSIONSTAMPED_KEY, "vk",
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
	T_OK(err_is(err, KV_OK) && out.n == 2, "two versionstamped keys");
	if (err != KV_OK || out.n != 2) {
		kv_close(db);
		return;
	}
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
	if ((db = open_rw(path)) == NULL)
		return;
	if ((raw = raw_open(path)) == NULL) {
		kv_close(db);
		return;
	}
	T_OK(err_is(set_expiring(db, "e_past", "p", 1, KV_ENC_BYTES,
	    NOW - 1000), KV_OK), "set e_past expiring before now");
	T_OK(err_is(set_expiring(db, "e_now", "n", 1, KV_ENC_BYTES, NOW),
	    KV_OK), "set e_now expiring at now");
	T_OK(err_is(set_expiring(db, "e_future", "f", 1, KV_ENC_BYTES,
	    NOW + 1000), KV_OK), "set e_future expiring after now");
	T_OK(err_is(set_expiring(db, "e_never", "v", 1, KV_ENC_BYTES, 0),
	    KV_OK), "set e_never without expiry");
	T_EQ(sql_int(raw, "select expiration_ms from kv"
	    " where k = cast('e_future' as blob)"),
	    NOW + 1000, "expiration_ms is stored");
	T_EQ(sql_int(raw, "select expiration_ms from kv"
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
	c.key = str("e_past");
	c.must_be_absent = 1;
	m = mut(KV_MUT_SET, "chk", "1", 1, KV_ENC_BYTES);
	T_OK(err_is(write_full(db, &c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    res.committed, "must_be_absent passes on an expired key");
	c.key = str("e_future");
	T_OK(err_is(write_full(db, &c, 1, &m, 1, NULL, 0, &res), KV_OK) &&
	    !res.committed, "must_be_absent fails on a not yet expired key");

	le64(100, buf);
	T_OK(err_is(set_expiring(db, "e_sum", buf, 8, KV_ENC_LE64, NOW - 1),
	    KV_OK), "set an expired KvU64 100");
	T_OK(err_is(le64_op(db, KV_MUT_SUM, "e_sum", 5), KV_OK) &&
	    u64_is(db, "e_sum", 5),
	    "KvU64 sum treats an expired key as missing");
	T_OK(err_is(set_expiring(db, "e_v8", buf, v8_num(100, buf), KV_ENC_V8,
	    NOW - 1), KV_OK), "set an expired V8 number 100");
	o = num_op(1);
	T_OK(err_is(v8_sum(db, "e_v8", &o), KV_OK) && v8_is_num(db, "e_v8", 1),
	    "V8 sum treats an expired key as missing");
	T_OK(err_is(set_expiring(db, "e_str", "s", 1, KV_ENC_BYTES, NOW - 1),
	    KV_OK), "set an expired bytes value");
	T_OK(err_is(le64_op(db, KV_MUT_SUM, "e_str", 2), KV_OK) &&
	    u64_is(db, "e_str", 2),
	    "KvU64 sum on an expired bytes value is not a type error");

	rows = sql_int(raw, "select count(*) from kv");
	T_OK(err_is(kv_delete_expired(db, NOW, 1000, &deleted), KV_OK),
	    "kv_delete_expired succeeds");
	T_EQ(deleted, 2, "it deletes the two expired rows");
	T_EQ(sql_int(raw, "select count(*) from kv"), rows - 2,
	    "the rows are gone from the file");
	T_EQ(sql_int(raw, "select count(*) from kv where k in"
	    " (cast('e_past' as blob), cast('e_now' as blob))"), 0,
	    "the expired ones are gone");
	T_OK(str_is(read1(db, range("e_", "e`", 10, 0), NOW - 2000),
	    "e_future,e_never,e_str,e_sum,e_v8"), "the others remain");

	T_OK(err_is(set_expiring(db, "x1", "1", 1, KV_ENC_BYTES, NOW - 5),
	    KV_OK) && err_is(set_expiring(db, "x2", "2", 1, KV_ENC_BYTES,
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
	if ((db = open_rw(path)) == NULL)
		return;
	if ((raw = raw_open(path)) == NULL) {
		kv_close(db);
		return;
	}
	memset(q, 0, sizeof(q));
	q[0].payload = str("hello");
	q[0].deadline_ms = NOW + 5000;
	q[1].payload = (struct kv_bytes){ NULL, 0 };
	q[1].deadline_ms = NOW + 10;
	q[1].undelivered_keys = dl;
	q[1].n_undelivered_keys = 2;
	q[1].backoff = backoff;
	q[1].n_backoff = 3;
	T_OK(err_is(write_full(db, NULL, 0, NULL, 0, q, 2, &res), KV_OK) &&
	    res.committed, "write with two enqueues commits");
	T_EQ(sql_int(raw, "select count(*) from queue"), 2,
	    "two rows in queue");
	T_EQ(sql_int(raw, "select count(*) from queue_running"), 0,
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

/* --- two connections ------------------------------------------------------ */

static void
test_concurrency(void)
{
	struct kv_write_result	 res;
	struct kv_entry		 e;
	struct kv_db		*db[2];
	sqlite3			*raw;
	uint8_t			 prev[KV_VERSIONSTAMP_BYTES];
	char			 path[PATH_MAX], err[256], val[16];
	int			 increasing = 1, committed = 1;

	db_path(path, sizeof(path), "conc.sqlite3");
	db[0] = open_db(path, 0, 50, err, sizeof(err));
	db[1] = open_db(path, 0, 50, err, sizeof(err));
	T_OK(db[0] != NULL && db[1] != NULL,
	    "two handles on one file (%s)", err);
	if (db[0] == NULL || db[1] == NULL)
		goto out;
	memset(prev, 0, sizeof(prev));
	for (int i = 0; i < 20; i++) {
		snprintf(val, sizeof(val), "%d", i);
		if (set_bytes(db[i % 2], "c", val, &res) != KV_OK ||
		    !res.committed)
			committed = 0;
		if (memcmp(res.versionstamp, prev, sizeof(prev)) <= 0)
			increasing = 0;
		memcpy(prev, res.versionstamp, sizeof(prev));
	}
	T_OK(committed, "20 interleaved writes from two handles commit");
	T_OK(increasing, "their versionstamps are strictly increasing");
	T_EQ(vs_version(prev), 20, "the last is version 20");
	T_OK(get_at(db[0], "c", NOW, &e) == 1 && e.value.len == 2 &&
	    memcmp(e.value.p, "19", 2) == 0 &&
	    memcmp(e.versionstamp, prev, sizeof(prev)) == 0,
	    "each handle sees the other's last write");

	if ((raw = raw_open(path)) == NULL)
		goto out;
	T_EQ(sqlite3_exec(raw, "begin immediate", NULL, NULL, NULL), SQLITE_OK,
	    "another connection takes the write lock");
	T_OK(err_is(set_bytes(db[0], "c", "busy", &res), KV_ERR_BUSY),
	    "a write while it is held is KV_ERR_BUSY");
	T_EQ(res.committed, 0, "and is not committed");
	T_OK(get_at(db[1], "c", NOW, &e) == 1 && e.value.len == 2 &&
	    memcmp(e.value.p, "19", 2) == 0,
	    "reads still work while the write lock is held");
	T_EQ(sqlite3_exec(raw, "commit", NULL, NULL, NULL), SQLITE_OK,
	    "the other connection commits");
	T_OK(err_is(set_bytes(db[0], "c", "free", &res), KV_OK) &&
	    res.committed, "then the write succeeds");
	T_OK(memcmp(res.versionstamp, prev, sizeof(prev)) > 0,
	    "with a greater versionstamp");
	T_OK(get_at(db[1], "c", NOW, &e) == 1 && e.value.len == 4 &&
	    memcmp(e.value.p, "free", 4) == 0, "visible to the other handle");
	sqlite3_close(raw);
out:
	kv_close(db[0]);
	kv_close(db[1]);
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
	if ((big = malloc(BIG_VALUE)) == NULL || (key = malloc(2048)) == NULL) {
		free(big);
		return;
	}
	for (size_t i = 0; i < BIG_VALUE; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	if ((db = open_rw(path)) == NULL || (raw = raw_open(path)) == NULL) {
		kv_close(db);
		free(big);
		free(key);
		return;
	}
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
			sql_text(raw, sql, t, sizeof(t));
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

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		printf("Bail out! cannot create a temporary directory\n");
		return 99;
	}
	arena_init(&A, 64 * 1024);
	test_schema();
	test_read_only();
	test_versionstamps();
	test_ranges();
	test_delete();
	test_checks();
	test_le64();
	test_v8_sum();
	test_versionstamped_key();
	test_expiry();
	test_enqueue();
	test_concurrency();
	test_values();
	arena_fini(&A);
	remove_tmpdir();
	return t_done();
}
