/*
 * kv_admin: operations on a whole database file, for the command-line
 * verbs (backup, restore, check): an online copy from one consistent
 * snapshot, the copy a restore puts in place, an integrity and schema
 * check, and whether some process has the file open.
 *
 * Like kv.h it knows nothing of HTTP or protobuf. Every function reports
 * failure as -1 with a one-line reason in the caller's errbuf.
 */
#ifndef DENOKV_KV_ADMIN_H
#define DENOKV_KV_ADMIN_H

#include <stdint.h>
#include <sys/types.h>

/*
 * The table a backup adds to its copy: the data version it was taken at
 * and when. denokv and the Deno CLI look only at their own tables, so the
 * copy opens in them as it is; a restore drops the table again.
 */
#define KV_BACKUP_TABLE		"denokv_fcgi_backup"

/* Pages copied per backup step (4 MiB of 4 KiB pages). */
#define KV_BACKUP_STEP_PAGES	1024

struct kv_copy_info {
	int64_t		 version;	/* data version of the snapshot copied */
	int64_t		 pages;
	int64_t		 bytes;
};

/*
 * Whether a process other than the caller has the database open: 1 (and
 * its pid in *holder), 0 (no one), -1 (cannot tell). It asks the kernel
 * for the locks SQLite holds while a connection is open: the wal-index's
 * dead-man-switch byte (every connection to a WAL database) and the
 * database file's lock bytes (a connection inside a transaction).
 * Call it before the caller opens the file itself: closing any descriptor
 * of a file drops every POSIX lock the process holds on it.
 */
int	kv_file_holder(const char *path, pid_t *holder, char *errbuf,
	    size_t errlen);

/*
 * Copies the database at src into the new file dest (refused if dest
 * exists) from one read snapshot, so that writers to src carry on
 * meanwhile (WAL readers block no writer). The copy is written under
 * dest.partial and renamed into place once complete and synced, and it
 * records the snapshot's data version in KV_BACKUP_TABLE.
 */
int	kv_backup(const char *src, const char *dest, struct kv_copy_info *,
	    char *errbuf, size_t errlen);

/*
 * Reads a database's data version without changing the file. Fails if
 * the file is missing or is no Deno KV database.
 */
int	kv_file_version(const char *path, int64_t *version, char *errbuf,
	    size_t errlen);

/*
 * The copy a restore puts in place: src (a backup) copied into the new
 * file dest, with the data version set to new_version and the backup
 * table dropped. Refused if dest exists.
 */
int	kv_restore_copy(const char *src, const char *dest, int64_t new_version,
	    struct kv_copy_info *, char *errbuf, size_t errlen);

/*
 * Checks a database: SQLite's integrity check, denokv's schema at the
 * current migration, and that no entry is newer than the data version.
 * say() gets one line per finding (problem != 0 for a fault); *problems
 * counts the faults. Returns -1 only if the file cannot be opened at all.
 */
typedef void	(*kv_say_fn)(void *ctx, int problem, const char *line);
int	kv_check(const char *path, kv_say_fn say, void *ctx, int *problems,
	    char *errbuf, size_t errlen);

#endif
