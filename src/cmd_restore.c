/*
 * cmd_restore.c: `denokv-fcgi --sqlite-path P restore SRC` puts the
 * backup SRC in place of the database P of a stopped service.
 *
 * - It refuses while any process has P open (the service, the Deno CLI,
 *   a sqlite3 shell): replacing a file under a live connection would let
 *   it keep writing to the old one. It asks again just before the swap.
 * - The old file is kept beside the new one as P.before-restore-TIME.
 * - Versionstamps keep increasing: a client may hold versionstamps up to
 *   the old file's data version, and the restored file's entries carry
 *   older ones. The restored data version becomes max(old, backup) plus
 *   RESTORE_VERSION_GAP, so every later commit is newer than anything a
 *   client saw, and a cached versionstamp can never name a different value.
 * - The new file takes the old one's owner and mode (with no old file,
 *   its directory's owner), so a service that runs as its own user can
 *   open it.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"
#include "kv_admin.h"

/*
 * Added to the data version on restore. With the old file at hand,
 * max(old, backup) alone would do; the gap also covers commits that file
 * does not show (a lost WAL, a damaged or missing file, another copy that
 * was served meanwhile): a million commits, far beyond what a service
 * commits between its last good state and a restore, and at 64 bits never
 * close to running out.
 */
#define RESTORE_VERSION_GAP	1000000

struct restore {
	const char	*path;
	const char	*src;
	char		 staged[PATH_MAX];	/* path.restoring */
	char		 aside[PATH_MAX];	/* path.before-restore-TIME */
	int		 had_old;
	struct stat	 old_st;
	int64_t		 old_version;		/* -1: unknown */
};

/* 0: no one has the file open; else prints why the restore stops. */
static int
refuse_if_open(const char *path)
{
	char	 err[1024];
	pid_t	 pid;

	switch (kv_file_holder(path, &pid, err, sizeof(err))) {
	case 0:
		return 0;
	case 1:
		fprintf(stderr, "denokv-fcgi: restore refused: %s is open in"
		    " process %ld; stop the service (and anything else using"
		    " the file) first\n", path, (long)pid);
		return -1;
	default:
		fprintf(stderr, "denokv-fcgi: restore refused: cannot tell"
		    " whether %s is in use: %s\n", path, err);
		return -1;
	}
}

/* Moves the old file (and a WAL it may still have) aside. */
static int
move_old_aside(struct restore *r)
{
	char	 from[PATH_MAX + 8], to[PATH_MAX + 8];

	if (!r->had_old)
		return 0;
	if (rename(r->path, r->aside) != 0) {
		fprintf(stderr, "denokv-fcgi: cannot move %s aside: %s\n",
		    r->path, strerror(errno));
		return -1;
	}
	snprintf(from, sizeof(from), "%s-wal", r->path);
	snprintf(to, sizeof(to), "%s-wal", r->aside);
	if (rename(from, to) != 0 && errno != ENOENT)
		fprintf(stderr, "denokv-fcgi: warning: %s: %s\n", from,
		    strerror(errno));
	/* The wal-index is rebuilt from the WAL; a stale one must not stay. */
	snprintf(from, sizeof(from), "%s-shm", r->path);
	if (unlink(from) != 0 && errno != ENOENT)
		fprintf(stderr, "denokv-fcgi: warning: %s: %s\n", from,
		    strerror(errno));
	return 0;
}

/*
 * The new file gets the old one's owner and mode, or with no old file the
 * owner of its directory (a service's state directory is its own), so
 * that the service, which may run as its own user, can open it.
 */
static void
take_old_owner(struct restore *r)
{
	char	 dir[PATH_MAX], *slash;

	if (!r->had_old) {
		snprintf(dir, sizeof(dir), "%s", r->path);
		if ((slash = strrchr(dir, '/')) == NULL)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &r->old_st) != 0)
			return;
		r->old_st.st_mode = 0600;
	}
	if (chown(r->path, r->old_st.st_uid, r->old_st.st_gid) != 0 &&
	    (r->old_st.st_uid != geteuid() || r->old_st.st_gid != getegid()))
		fprintf(stderr, "denokv-fcgi: warning: cannot give %s the"
		    " previous owner %ld:%ld: %s\n", r->path,
		    (long)r->old_st.st_uid, (long)r->old_st.st_gid,
		    strerror(errno));
	if (chmod(r->path, r->old_st.st_mode & 07777) != 0)
		fprintf(stderr, "denokv-fcgi: warning: cannot set the mode of"
		    " %s: %s\n", r->path, strerror(errno));
}

static int
prepare(struct restore *r, int64_t *backup_version, char *err, size_t len)
{
	char		 stamp[32];
	struct tm	 tm;
	time_t		 now = time(NULL);

	if (kv_file_version(r->src, backup_version, err, len) != 0)
		return -1;
	r->old_version = -1;
	r->had_old = stat(r->path, &r->old_st) == 0;
	if (r->had_old && kv_file_version(r->path, &r->old_version, err,
	    len) != 0) {
		fprintf(stderr, "denokv-fcgi: warning: the current database"
		    " cannot be read (%s); versionstamps continue from the"
		    " backup's\n", err);
		r->old_version = -1;
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	if ((size_t)snprintf(r->staged, sizeof(r->staged), "%s.restoring",
	    r->path) >= sizeof(r->staged) ||
	    (size_t)snprintf(r->aside, sizeof(r->aside), "%s.before-restore-%s",
	    r->path, stamp) >= sizeof(r->aside)) {
		snprintf(err, len, "%s: path too long", r->path);
		return -1;
	}
	if (r->had_old && access(r->aside, F_OK) == 0) {
		snprintf(err, len, "%s exists; try again in a second",
		    r->aside);
		return -1;
	}
	return 0;
}

static int
restore(struct restore *r)
{
	struct kv_copy_info	 info;
	int64_t			 backup_version, base, next;
	char			 err[2 * PATH_MAX], old[32];

	if (refuse_if_open(r->path) != 0)
		return 1;
	if (prepare(r, &backup_version, err, sizeof(err)) != 0) {
		fprintf(stderr, "denokv-fcgi: restore failed: %s\n", err);
		return 1;
	}
	base = r->old_version > backup_version ? r->old_version :
	    backup_version;
	next = base + RESTORE_VERSION_GAP;
	if (kv_restore_copy(r->src, r->staged, next, &info, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "denokv-fcgi: restore failed: %s\n", err);
		return 1;
	}
	/* Someone may have opened the file while we copied. */
	if (refuse_if_open(r->path) != 0 || move_old_aside(r) != 0) {
		unlink(r->staged);
		return 1;
	}
	if (rename(r->staged, r->path) != 0) {
		fprintf(stderr, "denokv-fcgi: cannot move %s into place: %s;"
		    " the previous database is %s\n", r->staged,
		    strerror(errno), r->had_old ? r->aside : "(none)");
		return 1;
	}
	take_old_owner(r);
	if (r->old_version < 0)
		snprintf(old, sizeof(old), "unknown");
	else
		snprintf(old, sizeof(old), "%lld", (long long)r->old_version);
	printf("restored %s from %s: backup at data version %lld, previous"
	    " database at %s; data version now %lld (versionstamp"
	    " %016llx0000)\n", r->path, r->src, (long long)backup_version,
	    old, (long long)next, (unsigned long long)next);
	if (r->had_old)
		printf("previous database kept as %s\n", r->aside);
	return 0;
}

int
cmd_restore_main(int argc, char **argv)
{
	struct conf_words	 w;
	struct restore		 r;
	struct conf		 c;
	int			 rc;

	if ((rc = cmd_parse(argc, argv, "denokv-fcgi --sqlite-path PATH"
	    " restore SRC", 1, &c, &w)) != 0)
		return CMD_STATUS(rc);
	memset(&r, 0, sizeof(r));
	r.path = c.sqlite_path;
	r.src = w.w[1];
	rc = restore(&r);
	conf_fini(&c);
	return rc;
}
