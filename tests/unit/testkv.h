/*
 * testkv.h: helpers the storage-engine unit tests share: byte strings from
 * C strings, error comparisons that show both names, versionstamp decoding,
 * and one-value SQL queries on a raw SQLite handle that look behind the
 * engine's back; a default VFS that wraps the real one, for fault
 * injection. Include after testhelp.h.
 */
#ifndef DENOKV_TESTKV_H
#define DENOKV_TESTKV_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "kv.h"

/* A C string as bytes, without its terminator. */
static inline struct kv_bytes
t_str(const char *s)
{
	return (struct kv_bytes){ (const uint8_t *)s, strlen(s) };
}

/* Whether got is want; on a mismatch shows both names as a TAP comment. */
static inline int
t_err_is(enum kv_err got, enum kv_err want)
{
	if (got != want)
		printf("#   got %s, want %s\n", kv_err_name(got),
		    kv_err_name(want));
	return got == want;
}

/* The commit version in a versionstamp's first 8 bytes (big endian). */
static inline uint64_t
t_vs_version(const uint8_t vs[KV_VERSIONSTAMP_BYTES])
{
	uint64_t	 v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | vs[i];
	return v;
}

/* A read-write SQLite handle on an existing file; bails if it will not open. */
static inline sqlite3 *
t_raw_open(const char *path)
{
	sqlite3	*db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		T_BAIL("sqlite3_open %s: %s", path, sqlite3_errmsg(db));
	return db;
}

/*
 * The first column of the first row as an integer: -999 if there is no
 * row, -998 if the statement does not prepare. No count or version the
 * tests expect is negative, so either fails the comparison.
 */
static inline int64_t
t_sql_int(sqlite3 *db, const char *sql)
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

/* The first column of the first row as text in out ("" if no row); out. */
static inline const char *
t_sql_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
	sqlite3_stmt		*st;
	const unsigned char	*t;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		printf("# prepare \"%s\": %s\n", sql, sqlite3_errmsg(db));
		return out;
	}
	if (sqlite3_step(st) == SQLITE_ROW &&
	    (t = sqlite3_column_text(st, 0)) != NULL)
		snprintf(out, len, "%s", (const char *)t);
	sqlite3_finalize(st);
	return out;
}

/*
 * Registers shim as the default VFS: a copy of the current default, named
 * name, whose files are opened by x_open (which finds the wrapped VFS in
 * pAppData), so that kv_open goes through it. 0 on success, -1 if not.
 */
static inline int
t_vfs_wrap_default(sqlite3_vfs *shim, const char *name,
    __typeof__(((sqlite3_vfs *)0)->xOpen) x_open)
{
	sqlite3_vfs	*base = sqlite3_vfs_find(NULL);

	if (base == NULL)
		return -1;
	*shim = *base;
	shim->zName = name;
	shim->pAppData = base;
	shim->xOpen = x_open;
	return sqlite3_vfs_register(shim, 1) == SQLITE_OK ? 0 : -1;
}

#endif
