/*
 * kv_admin.c: whole-file operations on a database (see kv_admin.h).
 *
 * Copies use SQLite's online backup API from inside one read transaction
 * on the source. In WAL mode a reader never blocks a writer, so the
 * service keeps committing while the copy runs; and because the
 * transaction is ours, every step reads the same snapshot (left to
 * itself, the backup API starts over whenever another process commits,
 * and under steady writes it would never finish). The price is that the
 * WAL cannot be reset past our snapshot until the copy is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "kv.h"
#include "kv_admin.h"
#include "kv_internal.h"
#include "kv_limits.h"

/*
 * SQLite's unix locking protocol (os_unix.c, and the WAL file format
 * page): the wal-index (-shm) has eight lock bytes from offset 120 and a
 * "dead man switch" byte after them, which every connection to a WAL
 * database holds a shared lock on while it is open. The database file's
 * own lock bytes start at 1 GiB (PENDING, RESERVED, then 510 SHARED).
 */
#define SHM_DMS_OFFSET		128
#define DB_LOCK_OFFSET		0x40000000
#define DB_LOCK_BYTES		512
/* How long a copy step waits on a lock before trying again. */
#define COPY_RETRY_MS		10

/* --- small helpers -------------------------------------------------------- */

static void
sleep_ms(int ms)
{
	struct timespec	 ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
say_sqlite(sqlite3 *db, const char *what, char *errbuf, size_t errlen)
{
	snprintf(errbuf, errlen, "%s: %s", what, db != NULL ?
	    sqlite3_errmsg(db) : "out of memory");
	return -1;
}

static int
exec(sqlite3 *db, const char *sql, char *errbuf, size_t errlen)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return say_sqlite(db, sql, errbuf, errlen);
	return 0;
}

/*
 * Opens an existing file (never creates one). Read-write so that SQLite
 * can use the WAL and its index as usual; nothing here writes to a
 * source. A file we may not write is opened read-only.
 */
static sqlite3 *
open_existing(const char *path, char *errbuf, size_t errlen)
{
	sqlite3	*db = NULL;
	int	 rc;

	if (access(path, F_OK) != 0) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc != SQLITE_OK && (rc & 0xff) == SQLITE_READONLY) {
		sqlite3_close(db);
		db = NULL;
		rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	}
	if (rc != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s: %s", path, db != NULL ?
		    sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, KV_BUSY_TIMEOUT_MS);
	return db;
}

/* The data version, read inside the caller's transaction if one is open. */
static int
read_version(sqlite3 *db, const char *path, int64_t *version, char *errbuf,
    size_t errlen)
{
	int64_t	 schema = 0;
	int	 found;

	if (kv_sqlite_query_int(db, "select version from migration_state"
	    " where k = 0", &schema, &found) != 0 || !found) {
		snprintf(errbuf, errlen, "%s: not a Deno KV database (%s)",
		    path, found ? sqlite3_errmsg(db) : "no migration state");
		return -1;
	}
	if (kv_sqlite_query_int(db, "select version from data_version"
	    " where k = 0", version, &found) != 0 || !found) {
		snprintf(errbuf, errlen, "%s: not a Deno KV database (no data"
		    " version)", path);
		return -1;
	}
	return 0;
}

static int
fsync_path(const char *path, int flags)
{
	int	 fd, rc;

	if ((fd = open(path, flags | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
fsync_dir_of(const char *path)
{
	char	 dir[PATH_MAX];
	char	*slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	return fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

/* --- who has the file open ------------------------------------------------ */

/* 1: a write lock on [start, start+len) would conflict (pid in *holder). */
static int
lock_holder(int fd, off_t start, off_t len, pid_t *holder)
{
	struct flock	 fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = start,
		.l_len = len,
	};

	if (fcntl(fd, F_GETLK, &fl) == -1)
		return -1;
	if (fl.l_type == F_UNLCK)
		return 0;
	*holder = fl.l_pid;
	return 1;
}

int
kv_file_holder(const char *path, pid_t *holder, char *errbuf, size_t errlen)
{
	const struct {
		const char	*suffix;
		off_t		 start, len;
	} probes[] = {
		{ "-shm", SHM_DMS_OFFSET, 1 },
		{ "", DB_LOCK_OFFSET, DB_LOCK_BYTES },
	};
	char	 p[PATH_MAX];
	int	 fd, r;

	*holder = 0;
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, probes[i].suffix);
		if ((fd = open(p, O_RDONLY | O_CLOEXEC)) == -1) {
			if (errno == ENOENT)
				continue;
			snprintf(errbuf, errlen, "%s: %s", p, strerror(errno));
			return -1;
		}
		r = lock_holder(fd, probes[i].start, probes[i].len, holder);
		close(fd);
		if (r != 0) {
			if (r < 0)
				snprintf(errbuf, errlen, "%s: cannot test its"
				    " locks: %s", p, strerror(errno));
			return r;
		}
	}
	return 0;
}

/* --- copies --------------------------------------------------------------- */

/*
 * Copies src (whose read transaction the caller holds) into the new file
 * tmp, step by step, and reopens the copy for the caller in *out.
 *
 * The copy is scratch until seal_copy() names it, so it is written without
 * a journal; instead each step's pages are synced before the next step.
 * That keeps the dirty data small: on a journaling file system, a
 * writer's fsync would otherwise have to push out the copy's backlog
 * with its own commit, stalling it for as long as that takes.
 */
static int
copy_into(sqlite3 *src, const char *tmp, sqlite3 **out,
    struct kv_copy_info *info, char *errbuf, size_t errlen)
{
	sqlite3_backup	*b;
	sqlite3		*dst = NULL;
	int		 fd, rc;

	*out = NULL;
	/* Claim the name first: never write over someone's file. */
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) ==
	    -1) {
		snprintf(errbuf, errlen, "%s: %s%s", tmp, strerror(errno),
		    errno == EEXIST ? " (left by an interrupted run? remove"
		    " it)" : "");
		return -1;
	}
	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		say_sqlite(dst, tmp, errbuf, errlen);
		goto fail;
	}
	sqlite3_extended_result_codes(dst, 1);
	if (exec(dst, "pragma journal_mode = off; pragma synchronous = off",
	    errbuf, errlen) != 0)
		goto fail;
	if ((b = sqlite3_backup_init(dst, "main", src, "main")) == NULL) {
		say_sqlite(dst, "starting the copy", errbuf, errlen);
		goto fail;
	}
	do {
		rc = sqlite3_backup_step(b, KV_BACKUP_STEP_PAGES);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			sleep_ms(COPY_RETRY_MS);
		else if (fdatasync(fd) != 0) {
			snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
			sqlite3_backup_finish(b);
			goto fail;
		}
	} while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
	info->pages = sqlite3_backup_pagecount(b);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		snprintf(errbuf, errlen, "copying: %s", sqlite3_errstr(rc));
		goto fail;
	}
	/* Reopened, the copy is in the source's journal mode (WAL) again. */
	sqlite3_close(dst);
	close(fd);
	if ((*out = open_existing(tmp, errbuf, errlen)) == NULL) {
		unlink(tmp);
		return -1;
	}
	return 0;
fail:
	sqlite3_close(dst);
	close(fd);
	unlink(tmp);
	return -1;
}

/*
 * Renames from to to unless to exists, with no window in which another
 * file at to could be replaced: renameat2(RENAME_NOREPLACE), else (a file
 * system without it) link() and unlink(). A file system with neither
 * (FAT, some network shares) gets a check and a rename.
 */
static int
move_no_clobber(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		return -1;
	if (link(from, to) == 0)
		return unlink(from);
	if (errno != EPERM && errno != ENOTSUP)
		return -1;
	if (access(to, F_OK) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* Closes the finished copy, syncs it and gives it its final name. */
static int
seal_copy(sqlite3 *dst, const char *tmp, const char *dest,
    struct kv_copy_info *info, char *errbuf, size_t errlen)
{
	struct stat	 st;

	/*
	 * One self-contained file: out of WAL mode, a copy is read without
	 * creating -wal and -shm files, so it can be restored or opened from
	 * read-only media. Whoever serves it turns WAL mode on again.
	 */
	if (exec(dst, "pragma journal_mode = delete", errbuf, errlen) != 0) {
		sqlite3_close(dst);
		goto fail;
	}
	if (sqlite3_close(dst) != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s: cannot close", tmp);
		goto fail;
	}
	if (fsync_path(tmp, O_RDONLY) != 0 || stat(tmp, &st) != 0) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	info->bytes = st.st_size;
	if (move_no_clobber(tmp, dest) != 0) {
		snprintf(errbuf, errlen, "%s: %s", dest, strerror(errno));
		goto fail;
	}
	if (fsync_dir_of(dest) != 0) {
		snprintf(errbuf, errlen, "syncing the directory of %s: %s",
		    dest, strerror(errno));
		return -1;
	}
	return 0;
fail:
	unlink(tmp);
	return -1;
}

int
kv_backup(const char *src_path, const char *dest, struct kv_copy_info *info,
    char *errbuf, size_t errlen)
{
	sqlite3_stmt	*st = NULL;
	sqlite3		*src, *dst = NULL;
	char		 tmp[PATH_MAX];
	int		 in_txn = 0;

	memset(info, 0, sizeof(*info));
	if (access(dest, F_OK) == 0) {
		snprintf(errbuf, errlen, "%s exists; a backup never replaces a"
		    " file", dest);
		return -1;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial", dest) >=
	    sizeof(tmp)) {
		snprintf(errbuf, errlen, "%s: path too long", dest);
		return -1;
	}
	if ((src = open_existing(src_path, errbuf, errlen)) == NULL)
		return -1;
	/* The snapshot starts with the first read after BEGIN. */
	if (exec(src, "begin", errbuf, errlen) != 0)
		goto fail;
	in_txn = 1;
	if (read_version(src, src_path, &info->version, errbuf, errlen) != 0 ||
	    copy_into(src, tmp, &dst, info, errbuf, errlen) != 0)
		goto fail;
	(void)sqlite3_exec(src, "commit", NULL, NULL, NULL);
	in_txn = 0;
	if (exec(dst, "create table " KV_BACKUP_TABLE " (\n"
	    "  k integer primary key,\n"
	    "  version integer not null,\n"
	    "  taken_at_ms integer not null\n"
	    ")", errbuf, errlen) != 0)
		goto fail_dst;
	if (sqlite3_prepare_v2(dst, "insert into " KV_BACKUP_TABLE
	    " (k, version, taken_at_ms) values (0, ?1, ?2)", -1, &st, NULL) !=
	    SQLITE_OK) {
		say_sqlite(dst, "recording the version", errbuf, errlen);
		goto fail_dst;
	}
	sqlite3_bind_int64(st, 1, info->version);
	sqlite3_bind_int64(st, 2, kv_now_ms());
	if (sqlite3_step(st) != SQLITE_DONE) {
		say_sqlite(dst, "recording the version", errbuf, errlen);
		goto fail_dst;
	}
	sqlite3_finalize(st);
	st = NULL;
	sqlite3_close(src);
	return seal_copy(dst, tmp, dest, info, errbuf, errlen);
fail_dst:
	sqlite3_finalize(st);
	sqlite3_close(dst);
	unlink(tmp);
fail:
	if (in_txn)
		(void)sqlite3_exec(src, "rollback", NULL, NULL, NULL);
	sqlite3_close(src);
	return -1;
}

int
kv_file_version(const char *path, int64_t *version, char *errbuf,
    size_t errlen)
{
	sqlite3	*db;
	int	 rc;

	if ((db = open_existing(path, errbuf, errlen)) == NULL)
		return -1;
	rc = read_version(db, path, version, errbuf, errlen);
	sqlite3_close(db);
	return rc;
}

int
kv_restore_copy(const char *src_path, const char *dest, int64_t new_version,
    struct kv_copy_info *info, char *errbuf, size_t errlen)
{
	sqlite3		*src, *dst = NULL;
	char		 tmp[PATH_MAX], sql[160];

	memset(info, 0, sizeof(*info));
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial", dest) >=
	    sizeof(tmp)) {
		snprintf(errbuf, errlen, "%s: path too long", dest);
		return -1;
	}
	if (access(dest, F_OK) == 0) {
		snprintf(errbuf, errlen, "%s exists (left by an interrupted"
		    " restore? remove it)", dest);
		return -1;
	}
	if ((src = open_existing(src_path, errbuf, errlen)) == NULL)
		return -1;
	if (exec(src, "begin", errbuf, errlen) != 0 ||
	    read_version(src, src_path, &info->version, errbuf, errlen) != 0 ||
	    copy_into(src, tmp, &dst, info, errbuf, errlen) != 0) {
		(void)sqlite3_exec(src, "rollback", NULL, NULL, NULL);
		sqlite3_close(src);
		return -1;
	}
	(void)sqlite3_exec(src, "commit", NULL, NULL, NULL);
	sqlite3_close(src);
	snprintf(sql, sizeof(sql), "begin immediate;"
	    " update data_version set version = %lld where k = 0;"
	    " drop table if exists " KV_BACKUP_TABLE "; commit",
	    (long long)new_version);
	if (exec(dst, sql, errbuf, errlen) != 0) {
		sqlite3_close(dst);
		unlink(tmp);
		return -1;
	}
	return seal_copy(dst, tmp, dest, info, errbuf, errlen);
}

/* --- check ---------------------------------------------------------------- */

struct checker {
	sqlite3		*db;
	kv_say_fn	 say;
	void		*ctx;
	int		 problems;
};

static void
sayf(struct checker *c, int problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sayf(struct checker *c, int problem, const char *fmt, ...)
{
	char	 line[1024];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->problems += problem != 0;
	c->say(c->ctx, problem, line);
}

/* SQLite's own check of every page, index and constraint. */
static void
check_integrity(struct checker *c)
{
	sqlite3_stmt	*st;
	int		 rc, rows = 0, faults = 0;

	if (sqlite3_prepare_v2(c->db, "pragma integrity_check(100)", -1, &st,
	    NULL) != SQLITE_OK) {
		sayf(c, 1, "integrity check could not run: %s",
		    sqlite3_errmsg(c->db));
		return;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *row = (const char *)sqlite3_column_text(st, 0);

		rows++;
		if (row != NULL && strcmp(row, "ok") == 0)
			continue;
		faults++;
		sayf(c, 1, "integrity: %s", row != NULL ? row : "(null)");
	}
	if (rc != SQLITE_DONE)
		sayf(c, 1, "integrity check stopped: %s",
		    sqlite3_errmsg(c->db));
	else if (faults == 0 && rows > 0)
		sayf(c, 0, "integrity check: ok");
	sqlite3_finalize(st);
}

/* Every column denokv's migrations create, read by a query that must prepare. */
static const struct {
	const char	*table;
	const char	*sql;
} kv_tables[] = {
	{ "kv", "select k, v, v_encoding, version, seq, expiration_ms"
	  " from kv limit 0" },
	{ "data_version", "select k, version, seq from data_version limit 0" },
	{ "queue", "select ts, id, data, backoff_schedule, keys_if_undelivered"
	  " from queue limit 0" },
	{ "queue_running", "select deadline, id, data, backoff_schedule,"
	  " keys_if_undelivered from queue_running limit 0" },
};

static void
check_schema(struct checker *c)
{
	sqlite3_stmt	*st;
	int64_t		 migration = 0, version = 0, n;
	int		 found, ok = 1;

	if (kv_sqlite_query_int(c->db, "select version from migration_state"
	    " where k = 0", &migration, &found) != 0 || !found) {
		sayf(c, 1, "schema: no migration state: this is not a Deno KV"
		    " database");
		return;
	}
	if (migration != KV_SCHEMA_VERSION) {
		sayf(c, 1, "schema: at migration %lld; this server knows %d"
		    "%s", (long long)migration, KV_SCHEMA_VERSION,
		    migration < KV_SCHEMA_VERSION ? " (serving it once"
		    " read-write migrates it)" : " (made by a newer program)");
		ok = 0;
	}
	for (size_t i = 0; i < sizeof(kv_tables) / sizeof(kv_tables[0]); i++) {
		if (sqlite3_prepare_v2(c->db, kv_tables[i].sql, -1, &st,
		    NULL) != SQLITE_OK) {
			sayf(c, 1, "schema: table %s is missing or lacks"
			    " columns: %s", kv_tables[i].table,
			    sqlite3_errmsg(c->db));
			ok = 0;
		}
		sqlite3_finalize(st);
	}
	if (!ok)
		return;
	sayf(c, 0, "schema: denokv's, at migration %lld of %d: ok",
	    (long long)migration, KV_SCHEMA_VERSION);
	if (kv_sqlite_query_int(c->db, "select version from data_version"
	    " where k = 0", &version, &found) != 0 || !found) {
		sayf(c, 1, "data version: missing");
		return;
	}
	/* Versionstamps would repeat if an entry were newer than the counter. */
	if (kv_sqlite_query_int(c->db, "select count(*) from kv where"
	    " version > (select version from data_version where k = 0)", &n,
	    &found) != 0) {
		sayf(c, 1, "entries: cannot be read: %s", sqlite3_errmsg(c->db));
		return;
	}
	if (n > 0)
		sayf(c, 1, "versions: %lld entries are newer than the data"
		    " version %lld", (long long)n, (long long)version);
	if (kv_sqlite_query_int(c->db, "select count(*) from kv", &n,
	    &found) == 0)
		sayf(c, 0, "data version %lld (versionstamp %016llx0000),"
		    " %lld entries", (long long)version,
		    (unsigned long long)version, (long long)n);
}

static void
check_backup_note(struct checker *c)
{
	struct tm	 tm;
	time_t		 t;
	int64_t		 version, taken;
	int		 found;
	char		 when[32];

	if (kv_sqlite_query_int(c->db, "select version from " KV_BACKUP_TABLE
	    " where k = 0", &version, &found) != 0 || !found ||
	    kv_sqlite_query_int(c->db, "select taken_at_ms from "
	    KV_BACKUP_TABLE " where k = 0", &taken, &found) != 0 || !found)
		return;
	t = (time_t)(taken / 1000);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	sayf(c, 0, "backup: taken at data version %lld (versionstamp"
	    " %016llx0000) at %s", (long long)version,
	    (unsigned long long)version, when);
}

int
kv_check(const char *path, kv_say_fn say, void *ctx, int *problems,
    char *errbuf, size_t errlen)
{
	struct checker	 c = { .say = say, .ctx = ctx };
	int64_t		 n;
	int		 found;

	*problems = 0;
	if ((c.db = open_existing(path, errbuf, errlen)) == NULL)
		return -1;
	/* One snapshot for every check, even while a service writes. */
	if (sqlite3_exec(c.db, "begin", NULL, NULL, NULL) != SQLITE_OK ||
	    kv_sqlite_query_int(c.db, "select count(*) from sqlite_master", &n,
	    &found) != 0) {
		sayf(&c, 1, "not readable as an SQLite database: %s",
		    sqlite3_errmsg(c.db));
		goto out;
	}
	check_integrity(&c);
	check_schema(&c);
	check_backup_note(&c);
out:
	(void)sqlite3_exec(c.db, "rollback", NULL, NULL, NULL);
	sqlite3_close(c.db);
	*problems = c.problems;
	return 0;
}
