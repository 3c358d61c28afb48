/*
 * test_admin.c: unit tests of the whole-file operations (src/kv_admin.c)
 * and of the checkpoint's behaviour next to a long reader, printing TAP.
 * Focus: telling whether another process has a database open, a backup
 * taken from one snapshot while another connection writes, the copy a
 * restore puts in place, the check on good and damaged files, and a
 * truncating checkpoint that gives up quickly instead of holding writers
 * off while a backup reads.
 */
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "kv.h"
#include "kv_admin.h"
#include "testhelp.h"

static char	 tmpdir[] = "/tmp/test_admin.XXXXXX";

static void
path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

/* A Deno KV database with n entries (versions 1..n) at data version n. */
static void
make_db(const char *path, int n)
{
	struct kv_options	 opt = { 0 };
	struct kv_db		*db;
	sqlite3			*raw;
	char			 err[256], sql[512];

	db = kv_open(path, &opt, err, sizeof(err));
	if (db == NULL) {
		printf("Bail out! kv_open: %s\n", err);
		exit(1);
	}
	kv_close(db);
	sqlite3_open(path, &raw);
	snprintf(sql, sizeof(sql), "begin; with recursive n(i) as (select 1"
	    " union all select i + 1 from n where i < %d) insert into kv"
	    " (k, v, v_encoding, version) select cast(printf('k%%06d', i) as"
	    " blob), randomblob(300), 3, i from n; update data_version set"
	    " version = %d; commit", n, n);
	if (sqlite3_exec(raw, sql, NULL, NULL, NULL) != SQLITE_OK) {
		printf("Bail out! filling %s: %s\n", path, sqlite3_errmsg(raw));
		exit(1);
	}
	sqlite3_close(raw);
}

static int64_t
query(const char *path, const char *sql)
{
	sqlite3_stmt	*st;
	sqlite3		*raw;
	int64_t		 v = -1;

	sqlite3_open(path, &raw);
	if (sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(raw);
	return v;
}

/* The file format's read/write version bytes: 1 rollback journal, 2 WAL. */
static int
header_mode(const char *path)
{
	unsigned char	 b[2] = { 0, 0 };
	int		 fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, b, 2, 18) != 2)
		b[0] = 0;
	if (fd >= 0)
		close(fd);
	return b[0] == b[1] ? b[0] : -1;
}

static void
test_holder(void)
{
	struct kv_options	 opt = { 0 };
	struct kv_db		*db;
	char			 p[PATH_MAX], err[256], c;
	int			 go[2], ready[2];
	pid_t			 child, holder = -1;

	path_of(p, sizeof(p), "holder.sqlite");
	make_db(p, 10);
	T_EQ(kv_file_holder(p, &holder, err, sizeof(err)), 0,
	    "no process has a closed database open");

	if (pipe(go) != 0 || pipe(ready) != 0)
		return;
	if ((child = fork()) == 0) {
		db = kv_open(p, &opt, err, sizeof(err));
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &c, 1);
		kv_close(db);
		_exit(0);
	}
	(void)!read(ready[0], &c, 1);
	T_EQ(kv_file_holder(p, &holder, err, sizeof(err)), 1,
	    "a process with an open connection is seen");
	T_EQ(holder, child, "... and named by its pid");
	(void)!write(go[1], "g", 1);
	waitpid(child, NULL, 0);
	T_EQ(kv_file_holder(p, &holder, err, sizeof(err)), 0,
	    "once it closed the database, no one is seen");

	/* A process that died without closing leaves no lock behind. */
	if ((child = fork()) == 0) {
		db = kv_open(p, &opt, err, sizeof(err));
		(void)!write(ready[1], "r", 1);
		pause();
		_exit(0);
	}
	(void)!read(ready[0], &c, 1);
	T_EQ(kv_file_holder(p, &holder, err, sizeof(err)), 1,
	    "a second holder is seen");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	T_EQ(kv_file_holder(p, &holder, err, sizeof(err)), 0,
	    "a killed holder is not seen any more");
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
}

static void
test_backup(void)
{
	struct kv_copy_info	 info;
	sqlite3			*writer;
	char			 src[PATH_MAX], dest[PATH_MAX], err[512] = "";

	path_of(src, sizeof(src), "src.sqlite");
	path_of(dest, sizeof(dest), "backup.sqlite");
	make_db(src, 500);
	/* A writer's transaction open meanwhile: the backup is not held up. */
	sqlite3_open(src, &writer);
	sqlite3_busy_timeout(writer, 5000);
	sqlite3_exec(writer, "begin immediate; update data_version set"
	    " version = version + 1", NULL, NULL, NULL);
	T_EQ(kv_backup(src, dest, &info, err, sizeof(err)), 0,
	    "a backup is taken while a write transaction is open (%s)", err);
	sqlite3_exec(writer, "commit", NULL, NULL, NULL);
	sqlite3_close(writer);
	T_EQ(info.version, 500, "it records the committed data version");
	T_EQ(query(dest, "select count(*) from kv"), 500,
	    "the copy has every entry");
	T_EQ(query(dest, "select version from " KV_BACKUP_TABLE), 500,
	    "the copy records the version in its own table");
	T_EQ(query(dest, "select version from migration_state"),
	    KV_SCHEMA_VERSION, "the copy has denokv's schema");
	T_OK(access(dest, F_OK) == 0 && info.bytes > 500 * 300,
	    "the copy is in place, %lld bytes", (long long)info.bytes);
	T_EQ(header_mode(src), 2, "the source is a WAL database");
	T_EQ(header_mode(dest), 1, "the copy is one file, without WAL mode");
	T_EQ(kv_backup(src, dest, &info, err, sizeof(err)), -1,
	    "a second backup to the same name is refused");
	T_OK(strstr(err, "exists") != NULL, "... saying the file exists");
	path_of(dest, sizeof(dest), "backup.sqlite.partial");
	T_OK(access(dest, F_OK) != 0, "no partial file is left");
	path_of(dest, sizeof(dest), "nothing.sqlite");
	T_EQ(kv_backup(dest, src, &info, err, sizeof(err)), -1,
	    "a backup of a missing file fails");
}

static void
test_restore_copy(void)
{
	struct kv_copy_info	 info;
	char			 src[PATH_MAX], dest[PATH_MAX], err[512] = "";
	int64_t			 v;

	path_of(src, sizeof(src), "backup.sqlite");
	path_of(dest, sizeof(dest), "restored.sqlite");
	T_EQ(kv_restore_copy(src, dest, 9999, &info, err, sizeof(err)), 0,
	    "a restore copy is made (%s)", err);
	T_EQ(kv_file_version(dest, &v, err, sizeof(err)), 0,
	    "its data version reads");
	T_EQ(v, 9999, "it is the version asked for");
	T_EQ(query(dest, "select count(*) from sqlite_master where name = '"
	    KV_BACKUP_TABLE "'"), 0, "the backup table is gone");
	T_EQ(query(dest, "select count(*) from kv"), 500, "every entry is there");
	T_EQ(kv_restore_copy(src, dest, 1, &info, err, sizeof(err)), -1,
	    "it never replaces an existing file");
}

struct seen {
	int	 lines;
	int	 problems;
};

static void
count_line(void *ctx, int problem, const char *line)
{
	struct seen	*s = ctx;

	(void)line;
	s->lines++;
	s->problems += problem != 0;
}

static void
test_check(void)
{
	struct seen	 s = { 0 };
	char		 p[PATH_MAX], bad[PATH_MAX], err[512] = "", junk[4096];
	int		 problems = -1, fd;

	path_of(p, sizeof(p), "src.sqlite");
	T_EQ(kv_check(p, count_line, &s, &problems, err, sizeof(err)), 0,
	    "a good file is checked");
	T_EQ(problems, 0, "... and has no problem");
	T_OK(s.lines >= 3, "... and says what it checked (%d lines)", s.lines);

	path_of(bad, sizeof(bad), "bad.sqlite");
	kv_backup(p, bad, &(struct kv_copy_info){ 0 }, err, sizeof(err));
	memset(junk, 0x5a, sizeof(junk));
	fd = open(bad, O_WRONLY);
	for (int page = 10; page < 14; page++)
		(void)!pwrite(fd, junk, sizeof(junk), (off_t)page * 4096);
	close(fd);
	memset(&s, 0, sizeof(s));
	T_EQ(kv_check(bad, count_line, &s, &problems, err, sizeof(err)), 0,
	    "a damaged file is checked");
	T_OK(problems > 0 && s.problems == problems,
	    "... and its faults are reported (%d)", problems);

	path_of(p, sizeof(p), "missing.sqlite");
	T_EQ(kv_check(p, count_line, &s, &problems, err, sizeof(err)), -1,
	    "a missing file cannot be checked");
	T_OK(access(p, F_OK) != 0, "... and is not created");
}

/*
 * A reader on an old snapshot (a backup) keeps the WAL from being reset.
 * The truncating checkpoint then gives up within moments; waiting the
 * whole busy timeout would hold off every writer meanwhile.
 */
static void
test_truncate_next_to_reader(void)
{
	struct kv_options	 opt = { 0 };
	struct kv_db		*db;
	sqlite3			*reader, *writer;
	char			 p[PATH_MAX], err[256];
	int			 frames, done;
	int64_t			 t0, took;
	enum kv_err		 e;

	path_of(p, sizeof(p), "truncate.sqlite");
	make_db(p, 100);
	db = kv_open(p, &opt, err, sizeof(err));
	sqlite3_open(p, &reader);
	sqlite3_open(p, &writer);
	sqlite3_exec(reader, "begin; select count(*) from kv", NULL, NULL,
	    NULL);
	sqlite3_exec(writer, "update kv set v = randomblob(300)", NULL, NULL,
	    NULL);
	t0 = clock_mono_ms();
	e = kv_checkpoint(db, 1, &frames, &done);
	took = clock_mono_ms() - t0;
	T_EQ(e, KV_ERR_BUSY, "a truncating checkpoint next to a reader is busy");
	T_OK(took < 2500, "... and gives up in %lld ms, well before the"
	    " %d ms busy timeout", (long long)took, 5000);
	sqlite3_exec(reader, "commit", NULL, NULL, NULL);
	T_EQ(kv_checkpoint(db, 1, &frames, &done), KV_OK,
	    "once the reader is gone it truncates");
	sqlite3_close(reader);
	sqlite3_close(writer);
	kv_close(db);
}

int
main(void)
{
	t_make_dir(tmpdir);
	test_holder();
	test_backup();
	test_restore_copy();
	test_check();
	test_truncate_next_to_reader();
	t_remove_dir(tmpdir);
	return t_done();
}
