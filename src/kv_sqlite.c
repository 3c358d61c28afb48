/*
 * kv_sqlite.c: the Deno KV storage engine on SQLite (see kv.h).
 *
 * Layout: denokv's schema and migrations, byte for byte, so a file written
 * by denokv or by the Deno CLI's local KV is served as it is and a file
 * written here opens in them again.
 *
 * Versionstamps: data_version.version is bumped inside every write
 * transaction; the versionstamp is that 64-bit counter big-endian followed
 * by two zero bytes. Writes take SQLite's write lock up front (BEGIN
 * IMMEDIATE), so the counter is strictly increasing across every process
 * that has the file open, and checks see the state the write commits on.
 *
 * Group commit: kv_atomic_write_batch() puts several atomic writes in one
 * transaction, each in a savepoint with its own version bump, so that a
 * write that fails rolls back alone and the rest share one COMMIT (and
 * one fsync, the cost of a durable write). kv_atomic_write() is a batch
 * of one.
 *
 * Expiry: an entry whose expiration_ms is at or before "now" is treated as
 * absent by reads, checks and sum/min/max, whether or not it has been
 * deleted yet; kv_delete_expired() reclaims the rows.
 *
 * Waiting: every operation has one deadline, busy_timeout_ms from its
 * start. A write spends it first in the fair queue (the write_begin hook),
 * then in SQLite's busy handler (ours, so that it stops at the deadline
 * and not after a fixed number of naps), so a client hears 503 after
 * about that long whoever holds the database.
 *
 * Errors: kv_err_for_sqlite() is the one table from SQLite's codes to
 * ours. Faults the operator must see (a full disk, a damaged file, I/O
 * errors) are logged at error level at most once per
 * KV_FAULT_LOG_INTERVAL_MS per connection and reported to the fault hook.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "kv.h"
#include "kv_internal.h"
#include "kv_limits.h"
#include "log.h"
#include "v8scalar.h"

/* denokv's migrations; never edit one that has shipped, only append. */
static const char *const kv_migrations[] = {
	"create table data_version (\n"
	"  k integer primary key,\n"
	"  version integer not null\n"
	");\n"
	"insert into data_version (k, version) values (0, 0);\n"
	"create table kv (\n"
	"  k blob primary key,\n"
	"  v blob not null,\n"
	"  v_encoding integer not null,\n"
	"  version integer not null\n"
	") without rowid;\n",

	"create table queue (\n"
	"  ts integer not null,\n"
	"  id text not null,\n"
	"  data blob not null,\n"
	"  backoff_schedule text not null,\n"
	"  keys_if_undelivered blob not null,\n"
	"\n"
	"  primary key (ts, id)\n"
	");\n"
	"create table queue_running(\n"
	"  deadline integer not null,\n"
	"  id text not null,\n"
	"  data blob not null,\n"
	"  backoff_schedule text not null,\n"
	"  keys_if_undelivered blob not null,\n"
	"\n"
	"  primary key (deadline, id)\n"
	");\n",

	"alter table kv add column seq integer not null default 0;\n"
	"alter table data_version add column seq integer not null default 0;\n"
	"alter table kv add column expiration_ms integer not null default -1;\n"
	"create index kv_expiration_ms_idx on kv (expiration_ms);\n",
};
#define KV_N_MIGRATIONS	(sizeof(kv_migrations) / sizeof(kv_migrations[0]))
_Static_assert(KV_N_MIGRATIONS == KV_SCHEMA_VERSION, "kv.h names the schema");

/* The queue's default retry schedule, as denokv and Deno store it. */
static const char kv_default_backoff[] = "[100,1000,5000,30000,60000]";

/* Visible = never expires, or expires after now (?N bound to now). */
#define LIVE(n)	"(expiration_ms < 0 or expiration_ms > ?" #n ")"

enum kv_stmt {
	ST_BEGIN_READ,
	ST_BEGIN_WRITE,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_SCAN_ASC,
	ST_SCAN_DESC,
	ST_GET,
	ST_SET,
	ST_DELETE,
	ST_BUMP_VERSION,
	ST_GET_VERSION,
	ST_QUEUE_ADD,
	ST_DELETE_EXPIRED,
	ST__COUNT
};

static const char *const kv_stmt_sql[ST__COUNT] = {
	[ST_BEGIN_READ] = "begin deferred",
	[ST_BEGIN_WRITE] = "begin immediate",
	[ST_COMMIT] = "commit",
	[ST_ROLLBACK] = "rollback",
	[ST_SAVEPOINT] = "savepoint aw",
	[ST_RELEASE] = "release aw",
	[ST_ROLLBACK_TO] = "rollback to aw",
	[ST_SCAN_ASC] = "select k, v, v_encoding, version, expiration_ms from kv"
	    " where k >= ?1 and k < ?2 and " LIVE(3)
	    " order by k asc limit ?4",
	[ST_SCAN_DESC] = "select k, v, v_encoding, version, expiration_ms from kv"
	    " where k >= ?1 and k < ?2 and " LIVE(3)
	    " order by k desc limit ?4",
	[ST_GET] = "select v, v_encoding, version from kv where k = ?1 and "
	    LIVE(2),
	[ST_SET] = "insert into kv (k, v, v_encoding, version, expiration_ms)"
	    " values (?1, ?2, ?3, ?4, ?5) on conflict(k) do update set"
	    " v = excluded.v, v_encoding = excluded.v_encoding,"
	    " version = excluded.version,"
	    " expiration_ms = excluded.expiration_ms",
	[ST_DELETE] = "delete from kv where k = ?1",
	[ST_BUMP_VERSION] = "update data_version set version = version + 1"
	    " where k = 0 returning version",
	[ST_GET_VERSION] = "select version from data_version where k = 0",
	[ST_QUEUE_ADD] = "insert into queue (ts, id, data, backoff_schedule,"
	    " keys_if_undelivered) values (?1, ?2, ?3, ?4, ?5)",
	[ST_DELETE_EXPIRED] = "delete from kv where k in (select k from kv"
	    " where expiration_ms >= 0 and expiration_ms <= ?1 limit ?2)"
	    " returning k",
};

/* What each statement does, for the log. */
static const char *const kv_stmt_name[ST__COUNT] = {
	[ST_BEGIN_READ] = "begin read",
	[ST_BEGIN_WRITE] = "begin write",
	[ST_COMMIT] = "commit",
	[ST_ROLLBACK] = "rollback",
	[ST_SAVEPOINT] = "savepoint",
	[ST_RELEASE] = "release savepoint",
	[ST_ROLLBACK_TO] = "rollback to savepoint",
	[ST_SCAN_ASC] = "range read",
	[ST_SCAN_DESC] = "range read",
	[ST_GET] = "point read",
	[ST_SET] = "set",
	[ST_DELETE] = "delete",
	[ST_BUMP_VERSION] = "version bump",
	[ST_GET_VERSION] = "version read",
	[ST_QUEUE_ADD] = "enqueue",
	[ST_DELETE_EXPIRED] = "expiry sweep",
};

struct kv_db {
	sqlite3			*db;
	sqlite3_stmt		*st[ST__COUNT];
	int			 read_only;
	const struct kv_hooks	*hooks;
	int			 busy_timeout_ms;
	int			 lock_no_wait;	/* kv_set_lock_wait(k, 0) */
	uint64_t		 deadline_us;	/* of the running operation */
	uint64_t		 fault_logged_us;	/* 0: never */
	unsigned long		 faults_unlogged;
	int			 size_limited;	/* max_page_count set by us */
	struct kv_queue_stmts	*queue;		/* kv_queue.c's, lazily */
};

static const struct kv_hooks no_hooks;

/* A stored value as found by a point read. */
struct kv_found {
	int		 present;
	const uint8_t	*value;		/* valid until the statement is reset */
	size_t		 len;
	int		 encoding;
	int64_t		 version;
};

int64_t
kv_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
version_to_versionstamp(int64_t version, uint8_t vs[KV_VERSIONSTAMP_BYTES])
{
	uint64_t	 v = (uint64_t)version;

	for (int i = 7; i >= 0; i--) {
		vs[i] = v & 0xff;
		v >>= 8;
	}
	vs[8] = vs[9] = 0;
}

/* Starts the running operation's clock: see "Waiting" above. */
static void
arm_deadline(struct kv_db *k)
{
	k->deadline_us = clock_mono_us() + (uint64_t)k->busy_timeout_ms * 1000;
}

/* Milliseconds left before the running operation's deadline. */
static int
ms_left(const struct kv_db *k)
{
	uint64_t	 now = clock_mono_us();

	return now >= k->deadline_us ? 0 :
	    (int)((k->deadline_us - now + 999) / 1000);
}

/*
 * SQLite's busy handler: nap and try again until the deadline. The naps
 * grow like SQLite's own (a lock is usually held for a commit, about a
 * millisecond) and are cut short at the deadline.
 */
static int
busy_wait(void *arg, int count)
{
	static const unsigned	 nap_ms[] = { 1, 2, 5, 10, 15, 20, 25, 25, 25,
	    50, 50, 100 };
	struct kv_db		*k = arg;
	uint64_t		 now = clock_mono_us(), us;
	struct timespec		 ts;

	if (now >= k->deadline_us || k->lock_no_wait)
		return 0;
	us = (uint64_t)nap_ms[count < 12 ? count : 11] * 1000;
	if (us > k->deadline_us - now)
		us = k->deadline_us - now;
	ts.tv_sec = (time_t)(us / 1000000);
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	nanosleep(&ts, NULL);
	return 1;
}

enum kv_err
kv_err_for_sqlite(int rc, int sys_errno)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
		return KV_OK;
	/* Another connection holds a lock, or moved on meanwhile: retry. */
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
	case SQLITE_SCHEMA:
		return KV_ERR_BUSY;
	case SQLITE_NOMEM:
		return KV_ERR_NOMEM;
	case SQLITE_FULL:
		return KV_ERR_DISK_FULL;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return KV_ERR_CORRUPT;
	case SQLITE_IOERR:
		/*
		 * Some writes that find no room fail as I/O errors. A -shm
		 * that could not grow comes without an errno: a full disk
		 * (or quota) is what makes that fail.
		 */
		if (rc == SQLITE_IOERR_SHMSIZE)
			return KV_ERR_DISK_FULL;
		if (sys_errno == ENOSPC || sys_errno == EDQUOT)
			return KV_ERR_DISK_FULL;
		return KV_ERR_IO;
	case SQLITE_CANTOPEN:
		return KV_ERR_IO;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return KV_ERR_NOT_WRITABLE;
	default:
		/* SQLITE_ERROR, MISUSE, CONSTRAINT...: not expected here. */
		return KV_ERR_STORAGE;
	}
}

/*
 * Logs a storage fault at error level, at most once per interval (a full
 * disk fails every write), and tells the fault hook every time.
 */
static void
report_fault(struct kv_db *k, enum kv_err err, int rc, const char *what)
{
	uint64_t	 now = clock_mono_us();
	char		 more[64] = "";

	if (k->hooks->fault != NULL)
		k->hooks->fault(k->hooks->ctx, err);
	if (k->fault_logged_us != 0 && now - k->fault_logged_us <
	    (uint64_t)KV_FAULT_LOG_INTERVAL_MS * 1000) {
		k->faults_unlogged++;
		return;
	}
	if (k->faults_unlogged > 0)
		snprintf(more, sizeof(more), " (and %lu more since the last"
		    " report)", k->faults_unlogged);
	log_errorx("database %s: %s: %s (SQLite code %d, errno %d)%s",
	    sqlite3_db_filename(k->db, "main"), what, sqlite3_errmsg(k->db),
	    rc, sqlite3_system_errno(k->db), more);
	k->fault_logged_us = now;
	k->faults_unlogged = 0;
}

/*
 * SQLITE_FULL means either that the disk is full or that the file reached
 * max_page_count. Only the second is the database's size limit (a 507 the
 * user can act on by deleting data); it is told apart by the disk: a write
 * stopped by the page count failed in no system call, and the file system
 * still has room.
 */
static int
is_size_limit(struct kv_db *k, int rc)
{
	const char	*path;
	struct statvfs	 vfs;
	int		 sys = sqlite3_system_errno(k->db);

	if (!k->size_limited || (rc & 0xff) != SQLITE_FULL || sys == ENOSPC ||
	    sys == EDQUOT)
		return 0;
	path = sqlite3_db_filename(k->db, "main");
	if (path == NULL || statvfs(path, &vfs) != 0)
		return 0;
	return (uint64_t)vfs.f_bavail * vfs.f_frsize >=
	    KV_HEALTH_MIN_FREE_BYTES;
}

/* Maps an SQLite result code to ours (see kv_err_for_sqlite) and reports it. */
static enum kv_err
sqlite_err(struct kv_db *k, int rc, const char *what)
{
	enum kv_err	 err = kv_err_for_sqlite(rc, sqlite3_system_errno(k->db));

	if (err == KV_ERR_DISK_FULL && is_size_limit(k, rc)) {
		/* The user's doing, not a fault: no error-level log. */
		log_debug("sqlite: %s: size limit reached", what);
		return KV_ERR_SIZE_LIMIT;
	}

	if (err == KV_OK)	/* called on a path that expected no error */
		err = KV_ERR_INTERNAL;
	switch (err) {
	case KV_ERR_BUSY:
		log_debug("sqlite: %s: %s", what, sqlite3_errmsg(k->db));
		break;
	case KV_ERR_NOMEM:
		log_warnx("sqlite: %s: %s", what, sqlite3_errmsg(k->db));
		break;
	default:
		report_fault(k, err, rc, what);
		break;
	}
	return err;
}

static int
bind_bytes(sqlite3_stmt *st, int i, struct kv_bytes b)
{
	/* A zero-length blob must still be a blob, not NULL. */
	if (b.len == 0)
		return sqlite3_bind_zeroblob(st, i, 0);
	return sqlite3_bind_blob(st, i, b.p, (int)b.len, SQLITE_STATIC);
}

/* Runs a statement that returns no rows. */
static enum kv_err
exec_stmt(struct kv_db *k, enum kv_stmt s)
{
	sqlite3_stmt	*st = k->st[s];
	int		 rc;

	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sqlite_err(k, rc, kv_stmt_name[s]);
	return KV_OK;
}

static void
rollback(struct kv_db *k)
{
	if (!sqlite3_get_autocommit(k->db))
		(void)exec_stmt(k, ST_ROLLBACK);
}

static enum kv_err
point_get(struct kv_db *k, struct kv_bytes key, int64_t now_ms,
    struct kv_found *f)
{
	sqlite3_stmt	*st = k->st[ST_GET];
	int		 rc;

	memset(f, 0, sizeof(*f));
	sqlite3_reset(st);
	if (bind_bytes(st, 1, key) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, now_ms) != SQLITE_OK)
		return sqlite_err(k, sqlite3_errcode(k->db), "bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return KV_OK;
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return sqlite_err(k, rc, "point read");
	}
	f->present = 1;
	f->value = sqlite3_column_blob(st, 0);
	f->len = (size_t)sqlite3_column_bytes(st, 0);
	f->encoding = sqlite3_column_int(st, 1);
	f->version = sqlite3_column_int64(st, 2);
	return KV_OK;
}

static enum kv_err
put(struct kv_db *k, struct kv_bytes key, struct kv_bytes value, int encoding,
    int64_t version, int64_t expire_at_ms)
{
	sqlite3_stmt	*st = k->st[ST_SET];

	sqlite3_reset(st);
	if (bind_bytes(st, 1, key) != SQLITE_OK ||
	    bind_bytes(st, 2, value) != SQLITE_OK ||
	    sqlite3_bind_int(st, 3, encoding) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, version) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 5, expire_at_ms > 0 ? expire_at_ms : -1)
	    != SQLITE_OK)
		return sqlite_err(k, sqlite3_errcode(k->db), "bind");
	return exec_stmt(k, ST_SET);
}

static enum kv_err
del(struct kv_db *k, struct kv_bytes key)
{
	sqlite3_stmt	*st = k->st[ST_DELETE];

	sqlite3_reset(st);
	if (bind_bytes(st, 1, key) != SQLITE_OK)
		return sqlite_err(k, sqlite3_errcode(k->db), "bind");
	return exec_stmt(k, ST_DELETE);
}

static enum kv_err
select_version(struct kv_db *k, enum kv_stmt s, int64_t *version)
{
	sqlite3_stmt	*st = k->st[s];
	int		 rc;

	sqlite3_reset(st);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return sqlite_err(k, rc, kv_stmt_name[s]);
	}
	*version = sqlite3_column_int64(st, 0);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sqlite_err(k, rc, kv_stmt_name[s]);
	return KV_OK;
}

/* --- opening and migrating ------------------------------------------- */

static int
exec_sql(sqlite3 *db, const char *sql, char *errbuf, size_t errlen)
{
	char	*msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

int
kv_sqlite_query_int(sqlite3 *db, const char *sql, int64_t *out, int *found)
{
	sqlite3_stmt	*st;
	int		 rc;

	*found = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		*found = 1;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Brings the schema up to date in one transaction, as denokv does. */
static int
migrate(sqlite3 *db, char *errbuf, size_t errlen)
{
	int64_t		 current = 0;
	int		 found;
	char		 sql[128];

	if (exec_sql(db, "begin immediate", errbuf, errlen) != 0)
		return -1;
	if (exec_sql(db, "create table if not exists migration_state(\n"
	    "  k integer not null primary key,\n"
	    "  version integer not null\n"
	    ")", errbuf, errlen) != 0)
		goto fail;
	if (kv_sqlite_query_int(db, "select version from migration_state"
	    " where k = 0", &current, &found) != 0) {
		snprintf(errbuf, errlen, "%s", sqlite3_errmsg(db));
		goto fail;
	}
	if (current > (int64_t)KV_N_MIGRATIONS) {
		snprintf(errbuf, errlen, "database schema version %lld is newer"
		    " than this server knows (%zu)", (long long)current,
		    KV_N_MIGRATIONS);
		goto fail;
	}
	for (size_t i = (size_t)current; i < KV_N_MIGRATIONS; i++) {
		if (exec_sql(db, kv_migrations[i], errbuf, errlen) != 0)
			goto fail;
		snprintf(sql, sizeof(sql), "replace into migration_state"
		    " (k, version) values (0, %zu)", i + 1);
		if (exec_sql(db, sql, errbuf, errlen) != 0)
			goto fail;
	}
	if (exec_sql(db, "commit", errbuf, errlen) != 0)
		goto fail;
	return 0;
fail:
	(void)sqlite3_exec(db, "rollback", NULL, NULL, NULL);
	return -1;
}

static int
check_schema(sqlite3 *db, char *errbuf, size_t errlen)
{
	int64_t		 version = 0;
	int		 found;

	if (kv_sqlite_query_int(db, "select version from migration_state"
	    " where k = 0", &version, &found) != 0 &&
	    (sqlite3_errcode(db) & 0xff) != SQLITE_ERROR) {
		/* Locked, damaged, unreadable: not a schema to migrate. */
		snprintf(errbuf, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (!found || version != (int64_t)KV_N_MIGRATIONS) {
		snprintf(errbuf, errlen, "not a Deno KV database at the"
		    " current schema version (open it read-write once to"
		    " migrate it)");
		return -1;
	}
	return 0;
}

/*
 * Creates the database file with exactly this mode, if it does not exist,
 * before SQLite does (SQLite would use 0644 less the umask). SQLite then
 * gives the -wal and -shm files the database file's mode. An existing
 * file keeps the mode its owner gave it.
 */
static int
create_file(const char *path, mode_t mode, char *errbuf, size_t errlen)
{
	int	 fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(errbuf, errlen, "creating %s: %s", path,
		    strerror(errno));
		return -1;
	}
	/* open() applied the umask; the operator asked for this mode. */
	if (fchmod(fd, mode) != 0) {
		snprintf(errbuf, errlen, "setting the mode of %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Caps the file at max_bytes (whole pages) for this connection. SQLite
 * keeps the cap at least the current page count, so a file already past
 * it stays readable and can shrink by deletions (which free pages
 * in place) but not grow.
 */
static int
limit_size(struct kv_db *k, int64_t max_bytes, char *errbuf, size_t errlen)
{
	int64_t		 page_size;
	int		 found;
	char		 sql[64];

	if (kv_sqlite_query_int(k->db, "pragma page_size", &page_size,
	    &found) != 0 || !found || page_size <= 0) {
		snprintf(errbuf, errlen, "reading page_size: %s",
		    sqlite3_errmsg(k->db));
		return -1;
	}
	snprintf(sql, sizeof(sql), "pragma max_page_count = %lld",
	    (long long)(max_bytes / page_size > 0 ? max_bytes / page_size : 1));
	if (exec_sql(k->db, sql, errbuf, errlen) != 0)
		return -1;
	k->size_limited = 1;
	return 0;
}

struct kv_db *
kv_open(const char *path, const struct kv_options *opt, char *errbuf,
    size_t errlen)
{
	static const char *const sync_pragma[] = {
		[KV_SYNC_FULL] = "pragma synchronous = full",
		[KV_SYNC_NORMAL] = "pragma synchronous = normal",
		[KV_SYNC_OFF] = "pragma synchronous = off",
	};
	struct kv_db	*k;
	int		 flags;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	k->read_only = opt->read_only;
	k->hooks = opt->hooks != NULL ? opt->hooks : &no_hooks;
	k->busy_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms :
	    KV_BUSY_TIMEOUT_MS;
	if (!opt->read_only && opt->file_mode != 0 &&
	    create_file(path, opt->file_mode, errbuf, errlen) != 0)
		goto fail;
	flags = opt->read_only ? SQLITE_OPEN_READONLY :
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	/* One connection per process and per thread: no SQLite mutexes. */
	flags |= SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &k->db, flags, NULL) != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s", k->db ? sqlite3_errmsg(k->db) :
		    "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(k->db, 1);
	sqlite3_busy_handler(k->db, busy_wait, k);
	arm_deadline(k);
	if (!opt->read_only) {
		if (exec_sql(k->db, "pragma journal_mode = wal", errbuf,
		    errlen) != 0 ||
		    exec_sql(k->db, sync_pragma[opt->sync], errbuf,
		    errlen) != 0 ||
		    (opt->external_checkpoints && exec_sql(k->db,
		    "pragma wal_autocheckpoint = 0", errbuf, errlen) != 0) ||
		    migrate(k->db, errbuf, errlen) != 0)
			goto fail;
	} else if (check_schema(k->db, errbuf, errlen) != 0)
		goto fail;
	if (opt->max_size_bytes > 0 &&
	    limit_size(k, opt->max_size_bytes, errbuf, errlen) != 0)
		goto fail;
	for (int i = 0; i < ST__COUNT; i++) {
		if (sqlite3_prepare_v3(k->db, kv_stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &k->st[i], NULL) != SQLITE_OK) {
			snprintf(errbuf, errlen, "preparing \"%s\": %s",
			    kv_stmt_sql[i], sqlite3_errmsg(k->db));
			goto fail;
		}
	}
	return k;
fail:
	kv_close(k);
	return NULL;
}

void
kv_close(struct kv_db *k)
{
	if (k == NULL)
		return;
	kv_queue_close(k);
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(k->st[i]);
	sqlite3_close(k->db);
	free(k);
}

int
kv_is_read_only(const struct kv_db *k)
{
	return k->read_only;
}

const char *
kv_synchronous(struct kv_db *k)
{
	static const char *const names[] = { "off", "normal", "full", "extra" };
	int64_t		 level;
	int		 found;

	if (kv_sqlite_query_int(k->db, "pragma synchronous", &level,
	    &found) != 0 || !found || level < 0 || level > 3)
		return "unknown";
	return names[level];
}

/* --- reads -------------------------------------------------------------- */

static enum kv_err
scan_range(struct kv_db *k, const struct kv_range *r, int64_t now_ms,
    struct arena *a, struct kv_range_result *out)
{
	sqlite3_stmt	*st = k->st[r->reverse ? ST_SCAN_DESC : ST_SCAN_ASC];
	enum kv_err	 err = KV_OK;
	int		 rc;

	out->n = 0;
	out->entries = arena_alloc(a, r->limit * sizeof(*out->entries));
	if (out->entries == NULL)
		return KV_ERR_NOMEM;
	sqlite3_reset(st);
	if (bind_bytes(st, 1, r->start) != SQLITE_OK ||
	    bind_bytes(st, 2, r->end) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, r->limit) != SQLITE_OK)
		return sqlite_err(k, sqlite3_errcode(k->db), "bind");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kv_entry	*e = &out->entries[out->n];
		size_t		 klen = (size_t)sqlite3_column_bytes(st, 0);
		size_t		 vlen = (size_t)sqlite3_column_bytes(st, 1);

		assert(out->n < r->limit);
		e->key.p = arena_memdup(a, sqlite3_column_blob(st, 0), klen);
		e->key.len = klen;
		e->value.p = arena_memdup(a, sqlite3_column_blob(st, 1), vlen);
		e->value.len = vlen;
		if (e->key.p == NULL || e->value.p == NULL) {
			err = KV_ERR_NOMEM;
			break;
		}
		e->encoding = sqlite3_column_int(st, 2);
		if (e->encoding < KV_ENC_V8 || e->encoding > KV_ENC_BYTES) {
			log_warnx("stored value with unknown encoding %d",
			    (int)e->encoding);
			err = KV_ERR_STORED_VALUE;
			break;
		}
		version_to_versionstamp(sqlite3_column_int64(st, 3),
		    e->versionstamp);
		e->expire_at_ms = sqlite3_column_int64(st, 4);
		if (e->expire_at_ms < 0)
			e->expire_at_ms = 0;
		out->n++;
	}
	if (err == KV_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		err = sqlite_err(k, rc, "range read");
	sqlite3_reset(st);
	return err;
}

enum kv_err
kv_snapshot_read(struct kv_db *k, const struct kv_range *ranges, size_t n,
    int64_t now_ms, struct arena *a, struct kv_range_result *results)
{
	enum kv_err	 err;

	arm_deadline(k);
	for (int attempt = 0;; attempt++) {
		/* One read transaction: every range sees the same snapshot. */
		if ((err = exec_stmt(k, ST_BEGIN_READ)) != KV_OK)
			return err;
		for (size_t i = 0; i < n && err == KV_OK; i++)
			err = scan_range(k, &ranges[i], now_ms, a, &results[i]);
		if (err == KV_OK)
			err = exec_stmt(k, ST_COMMIT);
		if (err == KV_OK)
			return KV_OK;
		rollback(k);
		if (err != KV_ERR_BUSY || attempt >= KV_BUSY_RETRIES ||
		    ms_left(k) == 0)
			return err;
	}
}

/* --- writes ------------------------------------------------------------- */

/* Evaluates every check; any failure means the write does not happen. */
static enum kv_err
run_checks(struct kv_db *k, const struct kv_write *w, int64_t now_ms,
    struct arena *a, struct kv_write_result *res)
{
	struct kv_found	 f;
	uint8_t		 vs[KV_VERSIONSTAMP_BYTES];
	enum kv_err	 err;
	int		 ok;

	res->n_failed_checks = 0;
	res->failed_checks = NULL;
	for (size_t i = 0; i < w->n_checks; i++) {
		const struct kv_check *c = &w->checks[i];

		if ((err = point_get(k, c->key, now_ms, &f)) != KV_OK)
			return err;
		sqlite3_reset(k->st[ST_GET]);
		if (c->must_be_absent)
			ok = !f.present;
		else {
			version_to_versionstamp(f.version, vs);
			ok = f.present && memcmp(vs, c->versionstamp,
			    sizeof(vs)) == 0;
		}
		if (ok)
			continue;
		if (res->failed_checks == NULL) {
			res->failed_checks = arena_alloc(a, w->n_checks *
			    sizeof(*res->failed_checks));
			if (res->failed_checks == NULL)
				return KV_ERR_NOMEM;
		}
		res->failed_checks[res->n_failed_checks++] = (uint32_t)i;
	}
	return KV_OK;
}

static int
read_le64(const uint8_t *p, size_t len, uint64_t *out)
{
	uint64_t	 v = 0;

	if (len != 8)
		return -1;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	*out = v;
	return 0;
}

static void
write_le64(uint64_t v, uint8_t out[8])
{
	for (int i = 0; i < 8; i++) {
		out[i] = v & 0xff;
		v >>= 8;
	}
}

static uint64_t
le64_apply(enum kv_mutation_type t, uint64_t old, uint64_t operand)
{
	switch (t) {
	case KV_MUT_SUM:
		return old + operand;	/* wraps at 2^64, as specified */
	case KV_MUT_MIN:
		return old < operand ? old : operand;
	case KV_MUT_MAX:
		return old > operand ? old : operand;
	default:
		assert(!"not an LE64 mutation");
		return old;
	}
}

/* sum/min/max on KvU64 values; a missing key takes the operand. */
static enum kv_err
mutate_le64(struct kv_db *k, const struct kv_mutation *m, int64_t version,
    int64_t now_ms)
{
	struct kv_found	 f;
	uint64_t	 operand, old, result;
	uint8_t		 buf[8];
	enum kv_err	 err;

	if (m->encoding != KV_ENC_LE64 ||
	    read_le64(m->value.p, m->value.len, &operand) != 0)
		return KV_ERR_LE64_OPERAND;
	if ((err = point_get(k, m->key, now_ms, &f)) != KV_OK)
		return err;
	if (!f.present)
		result = operand;
	else if (f.encoding != KV_ENC_LE64 ||
	    read_le64(f.value, f.len, &old) != 0)
		err = KV_ERR_LE64_TARGET;
	else
		result = le64_apply(m->type, old, operand);
	sqlite3_reset(k->st[ST_GET]);
	if (err != KV_OK)
		return err;
	write_le64(result, buf);
	return put(k, m->key, (struct kv_bytes){ buf, 8 }, KV_ENC_LE64,
	    version, -1);
}

/* A sum operand: a V8 number, a V8 bigint, or a KvU64. */
struct sum_operand {
	int			 is_u64;
	uint64_t		 u64;
	struct v8s_value	 v8;
};

static enum kv_err
parse_sum_operand(const uint8_t *p, size_t len, int encoding,
    struct sum_operand *out)
{
	memset(out, 0, sizeof(*out));
	if (encoding == KV_ENC_LE64) {
		out->is_u64 = 1;
		return read_le64(p, len, &out->u64) == 0 ? KV_OK :
		    KV_ERR_SUM_INVALID_V8;
	}
	if (encoding != KV_ENC_V8)
		return KV_ERR_SUM_INVALID_V8;
	switch (v8s_decode(p, len, &out->v8)) {
	case V8S_OK:
		return KV_OK;
	case V8S_NOMEM:
		return KV_ERR_NOMEM;
	default:
		return KV_ERR_SUM_INVALID_V8;
	}
}

/*
 * The old value is a KvU64 and the operand a bigint that fits in 64 bits,
 * without bounds: add as KvU64, as Deno did before bigint sums existed.
 */
static int
bigint_fits_u64(const struct v8s_value *v, uint64_t *out)
{
	if (v->kind != V8S_BIGINT || v->neg || v->ndigits > 1)
		return 0;
	*out = v->ndigits == 0 ? 0 : v->digits[0];
	return 1;
}

/* Applies min/max to *cur: clamp, or fail when clamping is off. */
static enum kv_err
sum_bound(struct v8s_value *cur, const struct sum_operand *bound, int is_max,
    int clamp)
{
	int	 c;

	if (bound == NULL)
		return KV_OK;
	c = v8s_cmp(cur, &bound->v8);
	if ((is_max && c <= 0) || (!is_max && c >= 0))
		return KV_OK;
	if (!clamp)
		return KV_ERR_SUM_OUT_OF_RANGE;
	v8s_fini(cur);
	return v8s_copy(&bound->v8, cur) == V8S_OK ? KV_OK : KV_ERR_NOMEM;
}

static enum kv_err
store_v8(struct kv_db *k, const struct kv_mutation *m, int64_t version,
    const struct v8s_value *v, struct arena *a)
{
	size_t		 cap = v8s_encoded_max(v), len;
	uint8_t		*buf;

	if ((buf = arena_alloc(a, cap)) == NULL)
		return KV_ERR_NOMEM;
	if (v8s_encode(v, buf, cap, &len) != V8S_OK)
		return KV_ERR_INTERNAL;
	if (len > KV_MAX_VALUE_BYTES)
		return KV_ERR_SUM_OUT_OF_RANGE;
	return put(k, m->key, (struct kv_bytes){ buf, len }, KV_ENC_V8,
	    version, -1);
}

/* sum of V8 numbers or bigints, with optional bounds (denokv semantics). */
static enum kv_err
sum_v8(struct kv_db *k, const struct kv_mutation *m, int64_t version,
    int64_t now_ms, struct arena *a)
{
	struct sum_operand	 op, lo, hi, old;
	struct v8s_value	 res = { 0 };
	struct kv_found		 f;
	uint64_t		 u;
	uint8_t			 buf[8];
	enum kv_err		 err;
	int			 has_lo = m->sum_min.len > 0;
	int			 has_hi = m->sum_max.len > 0;

	memset(&lo, 0, sizeof(lo));
	memset(&hi, 0, sizeof(hi));
	memset(&old, 0, sizeof(old));
	if ((err = parse_sum_operand(m->value.p, m->value.len, m->encoding,
	    &op)) != KV_OK)
		goto end;
	if ((has_lo && (err = parse_sum_operand(m->sum_min.p, m->sum_min.len,
	    KV_ENC_V8, &lo)) != KV_OK) ||
	    (has_hi && (err = parse_sum_operand(m->sum_max.p, m->sum_max.len,
	    KV_ENC_V8, &hi)) != KV_OK))
		goto end;
	if ((has_lo && lo.v8.kind != op.v8.kind) ||
	    (has_hi && hi.v8.kind != op.v8.kind)) {
		err = KV_ERR_SUM_MINMAX_TYPE;
		goto end;
	}
	if ((err = point_get(k, m->key, now_ms, &f)) != KV_OK)
		goto end;
	if (!f.present) {
		sqlite3_reset(k->st[ST_GET]);
		err = store_v8(k, m, version, &op.v8, a);
		goto end;
	}
	err = parse_sum_operand(f.value, f.len, f.encoding, &old);
	sqlite3_reset(k->st[ST_GET]);
	if (err != KV_OK) {
		err = err == KV_ERR_NOMEM ? err : KV_ERR_SUM_TYPE_MISMATCH;
		goto end;
	}
	if (old.is_u64) {
		if (has_lo || has_hi || m->sum_clamp ||
		    !bigint_fits_u64(&op.v8, &u)) {
			err = (has_lo || has_hi) && op.v8.kind == V8S_BIGINT ?
			    KV_ERR_SUM_U64_MINMAX : KV_ERR_SUM_TYPE_MISMATCH;
			goto end;
		}
		write_le64(old.u64 + u, buf);
		err = put(k, m->key, (struct kv_bytes){ buf, 8 }, KV_ENC_LE64,
		    version, -1);
		goto end;
	}
	if (old.v8.kind != op.v8.kind) {
		err = KV_ERR_SUM_TYPE_MISMATCH;
		goto end;
	}
	if (v8s_add(&old.v8, &op.v8, &res) != V8S_OK) {
		err = KV_ERR_NOMEM;
		goto end;
	}
	if ((err = sum_bound(&res, has_lo ? &lo : NULL, 0, m->sum_clamp)) !=
	    KV_OK ||
	    (err = sum_bound(&res, has_hi ? &hi : NULL, 1, m->sum_clamp)) !=
	    KV_OK)
		goto end;
	err = store_v8(k, m, version, &res, a);
end:
	v8s_fini(&res);
	v8s_fini(&op.v8);
	v8s_fini(&lo.v8);
	v8s_fini(&hi.v8);
	v8s_fini(&old.v8);
	return err;
}

/* key + 0x02 + 20 hex digits of the versionstamp + 0x00, as denokv does. */
static enum kv_err
versionstamped_key(struct kv_bytes key, const uint8_t *vs, struct arena *a,
    struct kv_bytes *out)
{
	static const char	 hex[] = "0123456789abcdef";
	uint8_t			*p;

	if ((p = arena_alloc(a, key.len + 22)) == NULL)
		return KV_ERR_NOMEM;
	if (key.len > 0)
		memcpy(p, key.p, key.len);
	p[key.len] = 0x02;
	for (int i = 0; i < KV_VERSIONSTAMP_BYTES; i++) {
		p[key.len + 1 + 2 * i] = hex[vs[i] >> 4];
		p[key.len + 2 + 2 * i] = hex[vs[i] & 0xf];
	}
	p[key.len + 21] = 0x00;
	out->p = p;
	out->len = key.len + 22;
	return KV_OK;
}

static enum kv_err
apply_mutation(struct kv_db *k, const struct kv_mutation *m, int64_t version,
    const uint8_t *vs, int64_t now_ms, struct arena *a)
{
	struct kv_bytes	 key;
	enum kv_err	 err;

	switch (m->type) {
	case KV_MUT_SET:
		return put(k, m->key, m->value, m->encoding, version,
		    m->expire_at_ms);
	case KV_MUT_DELETE:
		return del(k, m->key);
	case KV_MUT_SUM:
		if (m->encoding == KV_ENC_LE64)
			return mutate_le64(k, m, version, now_ms);
		return sum_v8(k, m, version, now_ms, a);
	case KV_MUT_MIN:
	case KV_MUT_MAX:
		return mutate_le64(k, m, version, now_ms);
	case KV_MUT_SET_VERSIONSTAMPED_KEY:
		if ((err = versionstamped_key(m->key, vs, a, &key)) != KV_OK)
			return err;
		return put(k, key, m->value, m->encoding, version,
		    m->expire_at_ms);
	}
	return KV_ERR_INVALID_MUTATION;
}

/*
 * A queue message id: a UUID in text form, as denokv names queue rows, of
 * version 8 (free layout): random but for its last byte, which records how
 * many retry delays the message was enqueued with, so that a delivery can
 * tell its attempt number from the delays left (docs/queues.md).
 */
static int
queue_message_id(size_t n_backoff, char out[37])
{
	uint8_t	 b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -1;
	b[6] = (b[6] & 0x0f) | 0x80;
	b[8] = (b[8] & 0x3f) | 0x80;
	b[15] = (uint8_t)n_backoff;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

/* JSON text of the backoff schedule, e.g. "[100,1000]". */
static char *
backoff_json(const struct kv_enqueue *q, struct arena *a)
{
	size_t	 cap = 2 + q->n_backoff * 11 + 1, n = 0;
	char	*s;

	if (q->backoff == NULL)
		return arena_memdup(a, kv_default_backoff,
		    sizeof(kv_default_backoff));
	if ((s = arena_alloc(a, cap)) == NULL)
		return NULL;
	s[n++] = '[';
	for (size_t i = 0; i < q->n_backoff; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s%u", i ? "," : "",
		    q->backoff[i]);
	s[n++] = ']';
	s[n] = '\0';
	return s;
}

/* JSON text of the dead-letter keys: arrays of byte values, as serde writes. */
static char *
undelivered_json(const struct kv_enqueue *q, struct arena *a)
{
	size_t	 cap = 3, n = 0;
	char	*s;

	for (size_t i = 0; i < q->n_undelivered_keys; i++)
		cap += 3 + q->undelivered_keys[i].len * 4;
	if ((s = arena_alloc(a, cap)) == NULL)
		return NULL;
	s[n++] = '[';
	for (size_t i = 0; i < q->n_undelivered_keys; i++) {
		const struct kv_bytes *key = &q->undelivered_keys[i];

		if (i > 0)
			s[n++] = ',';
		s[n++] = '[';
		for (size_t j = 0; j < key->len; j++)
			n += (size_t)snprintf(s + n, cap - n, "%s%u",
			    j ? "," : "", key->p[j]);
		s[n++] = ']';
	}
	s[n++] = ']';
	s[n] = '\0';
	return s;
}

static enum kv_err
enqueue(struct kv_db *k, const struct kv_enqueue *q, struct arena *a)
{
	sqlite3_stmt	*st = k->st[ST_QUEUE_ADD];
	char		 id[37];
	char		*backoff, *keys;

	if (queue_message_id(q->backoff != NULL ? q->n_backoff :
	    KV_QUEUE_DEFAULT_BACKOFF_STEPS, id) != 0)
		return KV_ERR_INTERNAL;
	if ((backoff = backoff_json(q, a)) == NULL ||
	    (keys = undelivered_json(q, a)) == NULL)
		return KV_ERR_NOMEM;
	sqlite3_reset(st);
	/* Text, not blobs: denokv reads both columns back as strings. */
	if (sqlite3_bind_int64(st, 1, q->deadline_ms) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    bind_bytes(st, 3, q->payload) != SQLITE_OK ||
	    sqlite3_bind_text(st, 4, backoff, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 5, keys, -1, SQLITE_STATIC) != SQLITE_OK)
		return sqlite_err(k, sqlite3_errcode(k->db), "bind");
	return exec_stmt(k, ST_QUEUE_ADD);
}

/*
 * Tells the hooks which keys a committed transaction wrote, then its
 * version. Called while the write turn is still held, so that the record
 * of a version is complete before anyone can see a later one of ours.
 */
static void
notify_changed(struct kv_db *k, const struct kv_write *w, int64_t version,
    const uint8_t *vs, struct arena *a)
{
	struct kv_bytes	 key;

	for (size_t i = 0; k->hooks->changed != NULL && i < w->n_mutations;
	    i++) {
		const struct kv_mutation *m = &w->mutations[i];

		key = m->key;
		if (m->type == KV_MUT_SET_VERSIONSTAMPED_KEY &&
		    versionstamped_key(m->key, vs, a, &key) != KV_OK)
			continue;
		k->hooks->changed(k->hooks->ctx, key.p, key.len, version);
	}
	if (k->hooks->committed != NULL)
		k->hooks->committed(k->hooks->ctx, version);
}

/* After the write turn: wake the watchers. */
static void
notify_published(struct kv_db *k)
{
	if (k->hooks->published != NULL)
		k->hooks->published(k->hooks->ctx);
}

/* Waits for this process's turn to write, within the deadline. */
static enum kv_err
write_begin(struct kv_db *k)
{
	int	 left = ms_left(k);

	if (k->hooks->write_begin == NULL)
		return KV_OK;
	if (left == 0 || k->hooks->write_begin(k->hooks->ctx, left) != 0) {
		log_warnx("database %s: no turn to write within %d ms (a write"
		    " ahead is stuck)", sqlite3_db_filename(k->db, "main"),
		    k->busy_timeout_ms);
		return KV_ERR_WRITE_TIMEOUT;
	}
	return KV_OK;
}

static void
write_end(struct kv_db *k)
{
	if (k->hooks->write_end != NULL)
		k->hooks->write_end(k->hooks->ctx);
}

/*
 * A COMMIT that failed may have left its frames, commit mark included, in
 * the WAL file: SQLite writes them before it records them in the
 * wal-index, and a failure there (the -shm cannot grow on a full disk)
 * fails the COMMIT. This connection never sees them, but recovery after a
 * crash or restart would replay them, and the client, told the write
 * failed, retries it: applied twice. A small commit at once (one that
 * leaves the version row as it was) puts its frame over the first of
 * them, which breaks their checksum chain, so recovery stops before them.
 * A BUSY COMMIT wrote nothing. Best effort: where no frame could be
 * written at all, none of the failed commit's was either.
 */
static void
bury_failed_commit(struct kv_db *k)
{
	int	 rc;

	/* Up and down again: SQLite writes no page an update leaves as it was. */
	rc = sqlite3_exec(k->db, "begin immediate;"
	    " update data_version set version = version + 1 where k = 0;"
	    " update data_version set version = version - 1 where k = 0;"
	    " commit", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		log_debug("database %s: overwriting a failed commit: %s",
		    sqlite3_db_filename(k->db, "main"), sqlite3_errmsg(k->db));
		rollback(k);
	}
}

/*
 * One write of a batch, inside the open transaction: its checks against
 * the state so far (the batch's earlier writes included), then a new data
 * version, its mutations and its enqueues. A failed check is KV_OK with
 * res->committed 0, having written nothing. On an error part of the write
 * may be applied: the caller rolls back to its savepoint.
 */
static enum kv_err
write_one(struct kv_db *k, const struct kv_write *w, int64_t now_ms,
    struct arena *a, struct kv_write_result *res)
{
	int64_t		 version;
	enum kv_err	 err;

	if ((err = run_checks(k, w, now_ms, a, res)) != KV_OK)
		return err;
	if (res->n_failed_checks > 0)
		return KV_OK;
	if ((err = select_version(k, ST_BUMP_VERSION, &version)) != KV_OK)
		return err;
	version_to_versionstamp(version, res->versionstamp);
	for (size_t i = 0; i < w->n_mutations; i++)
		if ((err = apply_mutation(k, &w->mutations[i], version,
		    res->versionstamp, now_ms, a)) != KV_OK)
			return err;
	for (size_t i = 0; i < w->n_enqueues; i++)
		if ((err = enqueue(k, &w->enqueues[i], a)) != KV_OK)
			return err;
	res->committed = 1;
	return KV_OK;
}

/*
 * Runs write_one in a savepoint of its own, so that a write that fails
 * (its checks, or outright) leaves no trace while the batch goes on. The
 * write's own outcome goes to *werr. Returns an error only when the
 * transaction itself is lost or busy: then the whole batch must go.
 * A batch of one needs no savepoint: when its write fails, nothing
 * commits and the whole transaction is rolled back.
 */
static enum kv_err
write_in_savepoint(struct kv_db *k, int alone, const struct kv_write *w,
    int64_t now_ms, struct arena *a, struct kv_write_result *res,
    enum kv_err *werr)
{
	enum kv_err	 err;

	if (!alone && (err = exec_stmt(k, ST_SAVEPOINT)) != KV_OK)
		return err;
	*werr = write_one(k, w, now_ms, a, res);
	if (*werr == KV_OK && res->committed)
		return alone ? KV_OK : exec_stmt(k, ST_RELEASE);
	if (*werr != KV_OK)
		memset(res, 0, sizeof(*res));
	/*
	 * BUSY: the batch is retried as a whole. A transaction SQLite rolled
	 * back by itself (some I/O and full-disk errors do) took the
	 * batch's earlier writes with it.
	 */
	if (*werr == KV_ERR_BUSY || sqlite3_get_autocommit(k->db))
		return *werr;
	if (alone)
		return KV_OK;
	if (*werr != KV_OK &&
	    (err = exec_stmt(k, ST_ROLLBACK_TO)) != KV_OK)
		return err;
	return exec_stmt(k, ST_RELEASE);
}

/*
 * The batch's writes in the open transaction, each in its savepoint. On an
 * error that cost the transaction, *lost is the write it came from.
 */
static enum kv_err
batch_writes(struct kv_db *k, const struct kv_write *const *w, size_t n,
    int64_t now_ms, struct arena *a, struct kv_write_result *res,
    enum kv_err *errs, size_t *lost, size_t *committed)
{
	enum kv_err	 err;

	*committed = 0;
	for (size_t i = 0; i < n; i++) {
		if ((err = write_in_savepoint(k, n == 1, w[i], now_ms, a,
		    &res[i], &errs[i])) != KV_OK) {
			*lost = i;
			return err;
		}
		*committed += res[i].committed != 0;
	}
	return KV_OK;
}

static enum kv_err batch_once(struct kv_db *, const struct kv_write *const *,
    size_t, int64_t, struct arena *, struct kv_write_result *,
    enum kv_err *);

/*
 * After write `lost` cost the whole transaction by its own error (SQLite
 * rolls it all back on SQLITE_FULL from a one-row insert, the size
 * limit's error): that write keeps its error and every other write is
 * committed on its own, in batch order, still within this write turn, as
 * if the batch had never been grouped. Running the batch again without
 * the lost write instead could cost a run of the batch per such write.
 */
static void
batch_one_by_one(struct kv_db *k, const struct kv_write *const *w, size_t n,
    size_t lost, int64_t now_ms, struct arena *a,
    struct kv_write_result *res, enum kv_err *errs)
{
	enum kv_err	 err;

	for (size_t i = 0; i < n; i++) {
		if (i == lost)
			continue;
		memset(&res[i], 0, sizeof(res[i]));
		errs[i] = KV_OK;
		if ((err = batch_once(k, &w[i], 1, now_ms, a, &res[i],
		    &errs[i])) != KV_OK) {
			memset(&res[i], 0, sizeof(res[i]));
			errs[i] = err;
		}
	}
}

/*
 * One attempt at the whole batch inside BEGIN IMMEDIATE ... COMMIT: one
 * commit (one fsync) for every write that passed. A batch in which no
 * write passed is rolled back: there is nothing to make durable.
 */
static enum kv_err
batch_once(struct kv_db *k, const struct kv_write *const *w, size_t n,
    int64_t now_ms, struct arena *a, struct kv_write_result *res,
    enum kv_err *errs)
{
	size_t		 committed, lost;
	enum kv_err	 err;

	if ((err = exec_stmt(k, ST_BEGIN_WRITE)) != KV_OK)
		return err;
	if ((err = batch_writes(k, w, n, now_ms, a, res, errs, &lost,
	    &committed)) != KV_OK) {
		rollback(k);
		/* Busy, or not the write's own error: the batch's. */
		if (n == 1 || err == KV_ERR_BUSY || errs[lost] != err)
			return err;
		batch_one_by_one(k, w, n, lost, now_ms, a, res, errs);
		return KV_OK;
	}
	if (committed == 0) {
		rollback(k);
		return KV_OK;
	}
	if ((err = exec_stmt(k, ST_COMMIT)) != KV_OK) {
		rollback(k);
		if (err != KV_ERR_BUSY)
			bury_failed_commit(k);
		return err;
	}
	return KV_OK;
}

static int64_t
versionstamp_to_version(const uint8_t vs[KV_VERSIONSTAMP_BYTES])
{
	uint64_t	 v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | vs[i];
	return (int64_t)v;
}

/* Fresh outcomes before each attempt; the batch's error over all after. */
static void
batch_reset(struct kv_write_result *res, enum kv_err *errs, size_t n,
    enum kv_err err)
{
	memset(res, 0, n * sizeof(*res));
	for (size_t i = 0; i < n; i++)
		errs[i] = err;
}

enum kv_err
kv_atomic_write_batch(struct kv_db *k, const struct kv_write *const *w,
    size_t n, int64_t now_ms, struct arena *a, struct kv_write_result *res,
    enum kv_err *errs)
{
	enum kv_err	 err;
	int		 any = 0, queued = 0;

	batch_reset(res, errs, n, KV_OK);
	if (n == 0)
		return KV_OK;
	if (k->read_only) {
		batch_reset(res, errs, n, KV_ERR_READ_ONLY);
		return KV_ERR_READ_ONLY;
	}
	/*
	 * One deadline for the turn and SQLite's lock together. A BUSY that
	 * came before it (SQLite gives up at once on some lock conflicts) is
	 * tried again a few times. Then the clients retry the 503.
	 */
	arm_deadline(k);
	for (int attempt = 0;; attempt++) {
		batch_reset(res, errs, n, KV_OK);
		if ((err = write_begin(k)) != KV_OK)
			break;
		err = batch_once(k, w, n, now_ms, a, res, errs);
		/* In version order, each version complete before the next. */
		for (size_t i = 0; err == KV_OK && i < n; i++)
			if (res[i].committed)
				notify_changed(k, w[i], versionstamp_to_version(
				    res[i].versionstamp), res[i].versionstamp,
				    a);
		write_end(k);
		if (err != KV_ERR_BUSY || attempt >= KV_BUSY_RETRIES ||
		    ms_left(k) == 0)
			break;
		log_debug("database busy, retrying write");
	}
	if (err != KV_OK) {
		batch_reset(res, errs, n, err);
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		any |= res[i].committed;
		queued |= res[i].committed && w[i]->n_enqueues > 0;
	}
	if (any)
		notify_published(k);
	if (queued)
		kv_notify_queued(k);
	return KV_OK;
}

void
kv_set_lock_wait(struct kv_db *k, int wait)
{
	k->lock_no_wait = !wait;
}

enum kv_err
kv_atomic_write(struct kv_db *k, const struct kv_write *w, int64_t now_ms,
    struct arena *a, struct kv_write_result *res)
{
	enum kv_err	 err, werr;

	err = kv_atomic_write_batch(k, &w, 1, now_ms, a, res, &werr);
	return err != KV_OK ? err : werr;
}

/* A key deleted by the expiry sweep, kept until the commit is done. */
struct expired_key {
	struct expired_key	*next;
	size_t			 len;
	uint8_t			 key[];
};

/* Deletes one batch of expired rows, collecting their keys in *list. */
static enum kv_err
delete_expired_once(struct kv_db *k, int64_t now_ms, int batch,
    struct arena *a, struct expired_key **list, int64_t *version, int *deleted)
{
	sqlite3_stmt		*st = k->st[ST_DELETE_EXPIRED];
	struct expired_key	*e;
	enum kv_err		 err;
	int			 rc;

	if ((err = exec_stmt(k, ST_BEGIN_WRITE)) != KV_OK)
		return err;
	sqlite3_reset(st);
	if (sqlite3_bind_int64(st, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(st, 2, batch) != SQLITE_OK) {
		err = sqlite_err(k, sqlite3_errcode(k->db), "bind");
		goto fail;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		size_t	 len = (size_t)sqlite3_column_bytes(st, 0);

		if ((e = arena_alloc(a, sizeof(*e) + len)) == NULL) {
			sqlite3_reset(st);
			err = KV_ERR_NOMEM;
			goto fail;
		}
		e->len = len;
		if (len > 0)
			memcpy(e->key, sqlite3_column_blob(st, 0), len);
		e->next = *list;
		*list = e;
		(*deleted)++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		err = sqlite_err(k, rc, "expiry sweep");
		goto fail;
	}
	if (*deleted > 0 &&
	    (err = select_version(k, ST_BUMP_VERSION, version)) != KV_OK)
		goto fail;
	if ((err = exec_stmt(k, ST_COMMIT)) != KV_OK)
		goto fail;
	return KV_OK;
fail:
	rollback(k);
	*list = NULL;
	*deleted = 0;
	return err;
}

enum kv_err
kv_delete_expired(struct kv_db *k, int64_t now_ms, int batch, int *deleted)
{
	struct expired_key	*list = NULL;
	struct arena		 a;
	int64_t			 version = 0;
	enum kv_err		 err;

	*deleted = 0;
	if (k->read_only)
		return KV_OK;
	arena_init(&a, 64 * 1024);
	arm_deadline(k);
	if ((err = write_begin(k)) != KV_OK) {
		arena_fini(&a);
		return err;
	}
	err = delete_expired_once(k, now_ms, batch, &a, &list, &version,
	    deleted);
	/* Watchers are told only once the deletion is durable. */
	if (err == KV_OK && *deleted > 0) {
		for (struct expired_key *e = list; k->hooks->changed != NULL &&
		    e != NULL; e = e->next)
			k->hooks->changed(k->hooks->ctx, e->key, e->len,
			    version);
		if (k->hooks->committed != NULL)
			k->hooks->committed(k->hooks->ctx, version);
	}
	write_end(k);
	if (err == KV_OK && *deleted > 0)
		notify_published(k);
	arena_fini(&a);
	return err;
}

enum kv_err
kv_checkpoint(struct kv_db *k, int truncate, int *wal_frames, int *done)
{
	int	 rc;

	*wal_frames = *done = 0;
	if (k->read_only)
		return KV_OK;
	arm_deadline(k);
	/*
	 * A truncating checkpoint holds off new writers while it waits for
	 * readers to leave the WAL; a long reader (a backup, a replicator)
	 * would stall every write for the whole busy timeout. Wait briefly
	 * and leave it to a later pass instead.
	 */
	if (truncate)
		k->deadline_us = clock_mono_us() + KV_TRUNCATE_WAIT_MS * 1000;
	rc = sqlite3_wal_checkpoint_v2(k->db, NULL, truncate ?
	    SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
	    wal_frames, done);
	if (truncate && (rc & 0xff) == SQLITE_BUSY)
		return KV_ERR_BUSY;
	if (rc != SQLITE_OK)
		return sqlite_err(k, rc, "checkpoint");
	return KV_OK;
}

enum kv_err
kv_current_version(struct kv_db *k, int64_t *version)
{
	arm_deadline(k);
	return select_version(k, ST_GET_VERSION, version);
}

/* --- for the other parts of the engine (kv_internal.h) ------------------- */

void
kv_begin_read(struct kv_db *k)
{
	arm_deadline(k);
}

sqlite3 *
kv_sqlite_handle(struct kv_db *k)
{
	return k->db;
}

struct kv_queue_stmts **
kv_queue_stmts_of(struct kv_db *k)
{
	return &k->queue;
}

enum kv_err
kv_sqlite_error(struct kv_db *k, int rc, const char *what)
{
	return sqlite_err(k, rc, what);
}

enum kv_err
kv_write_tx(struct kv_db *k, enum kv_err (*body)(struct kv_db *, void *),
    void (*after_commit)(struct kv_db *, void *), void *ctx)
{
	enum kv_err	 err;

	if (k->read_only)
		return KV_ERR_READ_ONLY;
	arm_deadline(k);	/* one deadline for the turn and the lock */
	for (int attempt = 0;; attempt++) {
		if ((err = write_begin(k)) != KV_OK)
			return err;
		err = exec_stmt(k, ST_BEGIN_WRITE);
		if (err == KV_OK && (err = body(k, ctx)) == KV_OK)
			err = exec_stmt(k, ST_COMMIT);
		if (err != KV_OK)
			rollback(k);
		else if (after_commit != NULL)
			after_commit(k, ctx);
		write_end(k);
		if (err != KV_ERR_BUSY || attempt >= KV_BUSY_RETRIES ||
		    ms_left(k) == 0)
			return err;
		log_debug("database busy, retrying queue write");
	}
}

enum kv_err
kv_bump_version(struct kv_db *k, int64_t *version)
{
	return select_version(k, ST_BUMP_VERSION, version);
}

enum kv_err
kv_put_raw(struct kv_db *k, struct kv_bytes key, struct kv_bytes value,
    int encoding, int64_t version)
{
	return put(k, key, value, encoding, version, -1);
}

void
kv_notify_committed(struct kv_db *k, const struct kv_bytes *keys, size_t n,
    int64_t version)
{
	for (size_t i = 0; k->hooks->changed != NULL && i < n; i++)
		k->hooks->changed(k->hooks->ctx, keys[i].p, keys[i].len,
		    version);
	if (k->hooks->committed != NULL)
		k->hooks->committed(k->hooks->ctx, version);
}

void
kv_notify_published(struct kv_db *k)
{
	notify_published(k);
}

void
kv_notify_queued(struct kv_db *k)
{
	if (k->hooks->queued != NULL)
		k->hooks->queued(k->hooks->ctx);
}
