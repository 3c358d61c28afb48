/*
 * kv_queue.c: queue delivery on denokv's queue tables (see kv.h and
 * docs/queues.md).
 *
 * Rows move, never copy: a lease moves a row from `queue` to
 * `queue_running` (deadline = lease end), a retry moves it back (ts = now
 * + the next delay, the delays left one shorter), and success or a dead
 * letter deletes it, each inside one write transaction. A message is so
 * always in exactly one place, and a lease is named by (id, deadline):
 * the row it created. Lease ends are chosen so that an old name never
 * matches a later lease of the same message (lease_end below).
 *
 * The column formats are those of denokv and the Deno CLI: ts and
 * deadline in milliseconds since the epoch, backoff_schedule the JSON
 * array of the delays left, keys_if_undelivered a JSON array of keys, each
 * an array of byte values. Returning an expired lease is a failed attempt,
 * as the Deno CLI does on start-up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kv.h"
#include "kv_internal.h"
#include "kv_limits.h"
#include "log.h"

/* Expired leases returned per transaction. */
#define QUEUE_EXPIRED_BATCH	100
/*
 * Dead-letter keys read back from a row. The protocol allows 10 per
 * message; rows written by other programs are read with some room.
 */
#define QUEUE_MAX_STORED_KEYS	64
/* Delays read back from a row; more is an unreadable schedule. */
#define QUEUE_MAX_STORED_DELAYS	64
/*
 * Lease ends are rounded up to the delays left, modulo this (see
 * lease_end); above QUEUE_MAX_STORED_DELAYS, so no two counts share one.
 */
#define QUEUE_LEASE_GRAIN	128

#define QUEUE_STR(x)		#x
#define QUEUE_XSTR(x)		QUEUE_STR(x)
/*
 * Rows whose id is too long to name in a lease (written by another
 * program) are left alone, and must not take the place of the others in
 * a limited select.
 */
#define QUEUE_NAMEABLE		"length(cast(id as blob)) <= " \
	QUEUE_XSTR(KV_QUEUE_ID_MAX)

enum queue_stmt {
	QS_DUE,
	QS_TO_RUNNING,
	QS_DEL_READY,
	QS_RUNNING_GET,
	QS_DEL_RUNNING,
	QS_RENEW,
	QS_TO_READY,
	QS_EXPIRED,
	QS_NEXT_EVENTS,
	QS_STATS,
	QS_LIST_READY,
	QS_LIST_RUNNING,
	QS__COUNT
};

static const char *const queue_sql[QS__COUNT] = {
	[QS_DUE] = "select ts, id, data, backoff_schedule from queue"
	    " where ts <= ?1 and " QUEUE_NAMEABLE " order by ts limit ?2",
	[QS_TO_RUNNING] = "insert into queue_running (deadline, id, data,"
	    " backoff_schedule, keys_if_undelivered) select ?1, id, data,"
	    " backoff_schedule, keys_if_undelivered from queue"
	    " where ts = ?2 and id = ?3",
	[QS_DEL_READY] = "delete from queue where ts = ?1 and id = ?2",
	[QS_RUNNING_GET] = "select data, backoff_schedule, keys_if_undelivered"
	    " from queue_running where id = ?1 and deadline = ?2",
	[QS_DEL_RUNNING] = "delete from queue_running where id = ?1"
	    " and deadline = ?2",
	[QS_RENEW] = "update queue_running set deadline = ?3 where id = ?1"
	    " and deadline = ?2",
	[QS_TO_READY] = "insert into queue (ts, id, data, backoff_schedule,"
	    " keys_if_undelivered) select ?3, id, data, ?4,"
	    " keys_if_undelivered from queue_running where id = ?1"
	    " and deadline = ?2",
	[QS_EXPIRED] = "select id, deadline from queue_running"
	    " where deadline <= ?1 and " QUEUE_NAMEABLE
	    " order by deadline limit ?2",
	/* First rows in index order: no scan past the earliest nameable. */
	[QS_NEXT_EVENTS] = "select (select ts from queue where "
	    QUEUE_NAMEABLE " order by ts limit 1), (select deadline from"
	    " queue_running where " QUEUE_NAMEABLE " order by deadline"
	    " limit 1)",
	[QS_STATS] = "select (select count(*) from queue where ts <= ?1),"
	    " (select count(*) from queue where ts > ?1),"
	    " (select count(*) from queue_running),"
	    " (select count(*) from queue_running where deadline <= ?1),"
	    " (select min(ts) from queue where ts <= ?1)",
	[QS_LIST_READY] = "select ts, id, data, backoff_schedule,"
	    " keys_if_undelivered from queue order by ts, id limit ?1",
	[QS_LIST_RUNNING] = "select deadline, id, data, backoff_schedule,"
	    " keys_if_undelivered from queue_running order by deadline, id"
	    " limit ?1",
};

struct kv_queue_stmts {
	sqlite3_stmt	*st[QS__COUNT];
};

static const int64_t default_backoff[KV_QUEUE_DEFAULT_BACKOFF_STEPS] = {
	100, 1000, 5000, 30000, 60000
};

/* A key written by a dead letter, kept until the commit is done. */
struct dead_key {
	struct dead_key	*next;
	struct kv_bytes	 key;
};

/* What one transaction did that others must hear of after its commit. */
struct queue_effects {
	struct arena	*arena;
	int		 requeued;	/* put something back into `queue` */
	int64_t		 version;	/* of the dead letters; 0 none */
	struct dead_key	*dead;
	size_t		 n_dead;
};

static sqlite3_stmt *
stmt(struct kv_db *k, enum queue_stmt s)
{
	struct kv_queue_stmts	**qs = kv_queue_stmts_of(k);

	if (*qs == NULL) {
		if ((*qs = calloc(1, sizeof(**qs))) == NULL)
			return NULL;
	}
	if ((*qs)->st[s] == NULL &&
	    sqlite3_prepare_v3(kv_sqlite_handle(k), queue_sql[s], -1,
	    SQLITE_PREPARE_PERSISTENT, &(*qs)->st[s], NULL) != SQLITE_OK) {
		log_warnx("sqlite: preparing \"%s\": %s", queue_sql[s],
		    sqlite3_errmsg(kv_sqlite_handle(k)));
		return NULL;
	}
	sqlite3_reset((*qs)->st[s]);
	sqlite3_clear_bindings((*qs)->st[s]);
	return (*qs)->st[s];
}

void
kv_queue_close(struct kv_db *k)
{
	struct kv_queue_stmts	**qs = kv_queue_stmts_of(k);

	if (*qs == NULL)
		return;
	for (int i = 0; i < QS__COUNT; i++)
		sqlite3_finalize((*qs)->st[i]);
	free(*qs);
	*qs = NULL;
}

/* Steps a statement that returns no rows; *changes gets rows changed. */
static enum kv_err
run(struct kv_db *k, sqlite3_stmt *st, int *changes)
{
	int	 rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return kv_sqlite_error(k, rc, sqlite3_sql(st));
	if (changes != NULL)
		*changes = sqlite3_changes(kv_sqlite_handle(k));
	return KV_OK;
}

static enum kv_err
bind_err(struct kv_db *k)
{
	return kv_sqlite_error(k, sqlite3_errcode(kv_sqlite_handle(k)), "bind");
}

/* --- the stored JSON columns ------------------------------------------------ */

/*
 * The delays left, from backoff_schedule. Deno writes an array of
 * integers (serde also allows null: none left). Anything else is logged
 * and taken as no retries left, so a bad row cannot stall the queue.
 */
static int
parse_backoff(const char *text, int64_t *out, size_t cap, size_t *n)
{
	json_t		*doc, *v;
	json_error_t	 jerr;
	size_t		 i;
	int		 ok = 1;

	*n = 0;
	if (text == NULL || (doc = json_loads(text, JSON_DECODE_ANY, &jerr))
	    == NULL)
		return -1;
	if (json_is_null(doc)) {
		json_decref(doc);
		return 0;
	}
	if (!json_is_array(doc) || json_array_size(doc) > cap)
		ok = 0;
	json_array_foreach(doc, i, v) {
		if (!ok || !json_is_integer(v) || json_integer_value(v) < 0) {
			ok = 0;
			break;
		}
		out[(*n)++] = json_integer_value(v);
	}
	json_decref(doc);
	return ok ? 0 : -1;
}

static char *
backoff_text(const int64_t *d, size_t n, struct arena *a)
{
	size_t	 cap = 3 + n * 21, len = 0;
	char	*s;

	if ((s = arena_alloc(a, cap)) == NULL)
		return NULL;
	s[len++] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%lld",
		    i ? "," : "", (long long)d[i]);
	snprintf(s + len, cap - len, "]");
	return s;
}

/* The dead-letter keys: a JSON array of arrays of byte values. */
static int
parse_keys(const char *text, struct arena *a, struct kv_bytes *out,
    size_t cap, size_t *n)
{
	json_t		*doc, *key, *b;
	json_error_t	 jerr;
	size_t		 i, j;
	int		 ok = 1;

	*n = 0;
	if (text == NULL || (doc = json_loads(text, 0, &jerr)) == NULL)
		return -1;
	if (!json_is_array(doc) || json_array_size(doc) > cap)
		ok = 0;
	json_array_foreach(doc, i, key) {
		uint8_t	*p;

		if (!ok || !json_is_array(key) ||
		    (p = arena_alloc(a, json_array_size(key) + 1)) == NULL) {
			ok = 0;
			break;
		}
		json_array_foreach(key, j, b) {
			if (!json_is_integer(b) || json_integer_value(b) < 0 ||
			    json_integer_value(b) > 255) {
				ok = 0;
				break;
			}
			p[j] = (uint8_t)json_integer_value(b);
		}
		out[*n] = (struct kv_bytes){ p, json_array_size(key) };
		(*n)++;
	}
	json_decref(doc);
	return ok ? 0 : -1;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * 1 + the retries used: the id of a message enqueued here records how
 * many delays it started with (kv_sqlite.c); for other ids, the default
 * schedule is assumed when what is left is a tail of it. 0: unknown.
 */
static int
attempt_of(const char *id, const char *backoff_json)
{
	int64_t	 left[QUEUE_MAX_STORED_DELAYS];
	size_t	 n;
	int	 hi, lo, start;

	if (parse_backoff(backoff_json, left, QUEUE_MAX_STORED_DELAYS, &n) !=
	    0)
		return 0;
	if (strlen(id) == 36 && id[14] == '8' &&
	    (hi = hexval(id[34])) >= 0 && (lo = hexval(id[35])) >= 0) {
		start = hi * 16 + lo;
		return (size_t)start >= n ? 1 + start - (int)n : 0;
	}
	if (n > KV_QUEUE_DEFAULT_BACKOFF_STEPS)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (left[i] != default_backoff[KV_QUEUE_DEFAULT_BACKOFF_STEPS -
		    n + i])
			return 0;
	return 1 + KV_QUEUE_DEFAULT_BACKOFF_STEPS - (int)n;
}

/* --- a failed attempt: retry later, or dead-letter ---------------------------- */

/* A blob column copied into the arena (a zero-length blob is a NULL). */
static int
column_blob(sqlite3_stmt *st, int i, struct arena *a, struct kv_bytes *out)
{
	const void	*p = sqlite3_column_blob(st, i);
	size_t		 n = (size_t)sqlite3_column_bytes(st, i);
	uint8_t		*copy;

	if ((copy = arena_alloc(a, n + 1)) == NULL)
		return -1;
	if (n > 0)
		memcpy(copy, p, n);
	out->p = copy;
	out->len = n;
	return 0;
}

static const char *
column_text(sqlite3_stmt *st, int i, struct arena *a)
{
	const unsigned char	*t = sqlite3_column_text(st, i);
	size_t			 n = (size_t)sqlite3_column_bytes(st, i);
	char			*s;

	if (t == NULL || (s = arena_alloc(a, n + 1)) == NULL)
		return NULL;
	memcpy(s, t, n);
	s[n] = '\0';
	return s;
}

/*
 * denokv's schema has no place for a running total, so this server keeps
 * its own counters in a table of its own in the same file; Deno and denokv
 * ignore it. Created on first use, inside the transaction that
 * dead-letters, so the count commits (or rolls back) with the message.
 */
#define QUEUE_COUNTERS_TABLE	"denokv_fcgi_queue_counters"
#define QUEUE_COUNT_DEAD_SQL	"create table if not exists " \
	QUEUE_COUNTERS_TABLE " (name text primary key," \
	" value integer not null);" \
	" insert into " QUEUE_COUNTERS_TABLE " (name, value)" \
	" values ('dead_lettered', 1) on conflict (name)" \
	" do update set value = value + 1"
#define QUEUE_READ_DEAD_SQL	"select value from " QUEUE_COUNTERS_TABLE \
	" where name = 'dead_lettered'"

/* Inside the dead-lettering transaction: one more message out of retries. */
static enum kv_err
count_dead_letter(struct kv_db *k)
{
	int	 rc;

	rc = sqlite3_exec(kv_sqlite_handle(k), QUEUE_COUNT_DEAD_SQL, NULL,
	    NULL, NULL);
	return rc == SQLITE_OK ? KV_OK :
	    kv_sqlite_error(k, rc, "queue dead-letter count");
}

/* Messages dead-lettered so far; 0 when none ever was (no table yet). */
static enum kv_err
read_dead_lettered(struct kv_db *k, int64_t *out)
{
	sqlite3		*db = kv_sqlite_handle(k);
	sqlite3_stmt	*st;
	int		 rc;

	*out = 0;
	/* Not cached: the table appears with the first dead letter. */
	if ((rc = sqlite3_prepare_v2(db, QUEUE_READ_DEAD_SQL, -1, &st,
	    NULL)) != SQLITE_OK) {
		if (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db),
		    "no such table") != NULL)
			return KV_OK;
		return kv_sqlite_error(k, rc, "queue dead-letter count");
	}
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? KV_OK :
	    kv_sqlite_error(k, rc, "queue dead-letter count");
}

/* Writes the payload to every dead-letter key, under a new version. */
static enum kv_err
dead_letter(struct kv_db *k, const char *id, struct kv_bytes payload,
    const char *keys_json, struct queue_effects *fx)
{
	struct kv_bytes	 keys[QUEUE_MAX_STORED_KEYS];
	struct dead_key	*d;
	size_t		 n;
	enum kv_err	 err;

	if (parse_keys(keys_json, fx->arena, keys,
	    QUEUE_MAX_STORED_KEYS, &n) != 0) {
		log_warnx("queue message %s: unreadable keys_if_undelivered;"
		    " dropped without a dead letter", id);
		return KV_OK;
	}
	if (n == 0)
		return KV_OK;
	if (fx->version == 0 &&
	    (err = kv_bump_version(k, &fx->version)) != KV_OK)
		return err;
	for (size_t i = 0; i < n; i++) {
		if ((err = kv_put_raw(k, keys[i], payload, KV_ENC_V8,
		    fx->version)) != KV_OK)
			return err;
		if ((d = arena_alloc(fx->arena, sizeof(*d))) == NULL)
			return KV_ERR_NOMEM;
		d->key = keys[i];
		d->next = fx->dead;
		fx->dead = d;
		fx->n_dead++;
	}
	return KV_OK;
}

/*
 * The running row (id, deadline) failed: back into `queue` after its next
 * delay, or, with none left, dead-lettered. The row is gone either way.
 */
static enum kv_err
fail_running(struct kv_db *k, const char *id, int64_t deadline,
    int64_t now_ms, struct queue_effects *fx)
{
	int64_t		 left[QUEUE_MAX_STORED_DELAYS], delay;
	sqlite3_stmt	*st;
	struct kv_bytes	 payload;
	const char	*backoff, *keys, *rest;
	size_t		 n;
	enum kv_err	 err;
	int		 rc, changes;

	if ((st = stmt(k, QS_RUNNING_GET)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, deadline) != SQLITE_OK)
		return bind_err(k);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? KV_ERR_QUEUE_LEASE_NOT_HELD :
		    kv_sqlite_error(k, rc, "queue_running read");
	}
	rc = column_blob(st, 0, fx->arena, &payload);
	backoff = column_text(st, 1, fx->arena);
	keys = column_text(st, 2, fx->arena);
	sqlite3_reset(st);
	if (rc != 0)
		return KV_ERR_NOMEM;
	if (parse_backoff(backoff, left, QUEUE_MAX_STORED_DELAYS, &n) != 0) {
		log_warnx("queue message %s: unreadable backoff_schedule;"
		    " no retries left", id);
		n = 0;
	}
	if (n > 0) {
		/* A row from another program may hold any integer. */
		delay = left[0] < KV_MAX_QUEUE_DELAY_MS ? left[0] :
		    KV_MAX_QUEUE_DELAY_MS;
		if ((rest = backoff_text(left + 1, n - 1, fx->arena)) == NULL ||
		    (st = stmt(k, QS_TO_READY)) == NULL)
			return KV_ERR_NOMEM;
		if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) !=
		    SQLITE_OK ||
		    sqlite3_bind_int64(st, 2, deadline) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 3, now_ms + delay) != SQLITE_OK ||
		    sqlite3_bind_text(st, 4, rest, -1, SQLITE_STATIC) !=
		    SQLITE_OK)
			return bind_err(k);
		if ((err = run(k, st, NULL)) != KV_OK)
			return err;
		fx->requeued = 1;
	} else if ((err = dead_letter(k, id, payload, keys, fx)) != KV_OK ||
	    (err = count_dead_letter(k)) != KV_OK)
		return err;
	if ((st = stmt(k, QS_DEL_RUNNING)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, deadline) != SQLITE_OK)
		return bind_err(k);
	if ((err = run(k, st, &changes)) != KV_OK)
		return err;
	return changes == 1 ? KV_OK : KV_ERR_INTERNAL;
}

/* Inside a transaction: fails up to batch leases that ended by now_ms. */
static enum kv_err
return_expired(struct kv_db *k, int64_t now_ms, int batch,
    struct queue_effects *fx, int *n)
{
	struct expired {
		char	 id[KV_QUEUE_ID_MAX + 1];
		int64_t	 deadline;
	}		*list;
	sqlite3_stmt	*st;
	enum kv_err	 err = KV_OK;
	int		 rc, found = 0;

	*n = 0;
	if ((list = arena_alloc(fx->arena, (size_t)batch * sizeof(*list))) ==
	    NULL)
		return KV_ERR_NOMEM;
	if ((st = stmt(k, QS_EXPIRED)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(st, 2, batch) != SQLITE_OK)
		return bind_err(k);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && found < batch) {
		const char *id = (const char *)sqlite3_column_text(st, 0);

		if (id == NULL || strlen(id) > KV_QUEUE_ID_MAX)
			continue;	/* not ours to name; Deno's own */
		snprintf(list[found].id, sizeof(list[found].id), "%s", id);
		list[found++].deadline = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return kv_sqlite_error(k, rc, "expired leases");
	for (int i = 0; i < found && err == KV_OK; i++)
		err = fail_running(k, list[i].id, list[i].deadline, now_ms, fx);
	if (err == KV_OK)
		*n = found;
	return err;
}

/*
 * Inside the turn, once committed: a dead letter took a new version; its
 * keys and version are reported before the turn passes (kv.h).
 */
static void
report_commit(struct kv_db *k, struct queue_effects *fx)
{
	struct kv_bytes	*keys;
	size_t		 i = 0;

	if (fx->version == 0)
		return;
	keys = arena_alloc(fx->arena, fx->n_dead * sizeof(*keys) + 1);
	for (struct dead_key *d = fx->dead; keys != NULL && d != NULL;
	    d = d->next)
		keys[i++] = d->key;
	/* Without the keys, the version alone makes watchers re-read. */
	kv_notify_committed(k, keys, keys != NULL ? fx->n_dead : 0,
	    fx->version);
}

/* after_commit for kv_write_tx: every transaction context starts with fx. */
static void
after_commit(struct kv_db *k, void *ctx)
{
	report_commit(k, (struct queue_effects *)ctx);
}

/* After the turn: watchers and consumers are woken. */
static void
announce(struct kv_db *k, const struct queue_effects *fx)
{
	if (fx->version != 0)
		kv_notify_published(k);
	if (fx->requeued)
		kv_notify_queued(k);
}

static void
effects_reset(struct queue_effects *fx)
{
	fx->requeued = 0;
	fx->version = 0;
	fx->dead = NULL;
	fx->n_dead = 0;
}

/* --- lease ------------------------------------------------------------------- */

/*
 * The first moment from at_least that is congruent to residue modulo
 * QUEUE_LEASE_GRAIN. A lease of a message ends congruent to the number
 * of delays it has left, and a renewal keeps the residue. Each delivery
 * has one delay fewer than the one before (a failure or an expiry takes
 * one off), so two deliveries' lease ends differ whatever the lease
 * lengths asked for: a message failed early under a long lease and
 * leased again under a short one could otherwise get the same end, and
 * the first lease's name would finish the second delivery.
 */
static int64_t
lease_end(int64_t at_least, int64_t residue)
{
	int64_t	 r = at_least % QUEUE_LEASE_GRAIN;

	residue %= QUEUE_LEASE_GRAIN;
	return at_least + (residue - r + QUEUE_LEASE_GRAIN) %
	    QUEUE_LEASE_GRAIN;
}

/* The delays left in a stored schedule; an unreadable one has none. */
static int64_t
delays_left(const char *backoff_json)
{
	int64_t	 left[QUEUE_MAX_STORED_DELAYS];
	size_t	 n;

	if (parse_backoff(backoff_json, left, QUEUE_MAX_STORED_DELAYS, &n) !=
	    0)
		return 0;
	return (int64_t)n;
}

struct lease_tx {
	struct queue_effects	 fx;
	int64_t			 now_ms, lease_ms;
	size_t			 max;
	struct kv_queue_msg	*out;
	size_t			 n;
};

static enum kv_err
move_to_running(struct kv_db *k, const struct kv_queue_msg *m)
{
	sqlite3_stmt	*st;
	enum kv_err	 err;
	int		 changes;

	if ((st = stmt(k, QS_TO_RUNNING)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, m->lease_until_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, m->due_ms) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, m->id, -1, SQLITE_STATIC) != SQLITE_OK)
		return bind_err(k);
	if ((err = run(k, st, &changes)) != KV_OK)
		return err;
	if (changes != 1)
		return KV_ERR_INTERNAL;
	if ((st = stmt(k, QS_DEL_READY)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, m->due_ms) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, m->id, -1, SQLITE_STATIC) != SQLITE_OK)
		return bind_err(k);
	if ((err = run(k, st, &changes)) != KV_OK)
		return err;
	return changes == 1 ? KV_OK : KV_ERR_INTERNAL;
}

static enum kv_err
lease_body(struct kv_db *k, void *arg)
{
	struct lease_tx	*t = arg;
	sqlite3_stmt	*st;
	enum kv_err	 err;
	int		 rc, returned;

	effects_reset(&t->fx);
	t->n = 0;
	if ((err = return_expired(k, t->now_ms, QUEUE_EXPIRED_BATCH, &t->fx,
	    &returned)) != KV_OK)
		return err;
	if ((st = stmt(k, QS_DUE)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, t->now_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (int64_t)t->max) != SQLITE_OK)
		return bind_err(k);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && t->n < t->max) {
		struct kv_queue_msg	*m = &t->out[t->n];
		const char		*id;

		id = (const char *)sqlite3_column_text(st, 1);
		if (id == NULL || strlen(id) > KV_QUEUE_ID_MAX)
			continue;	/* cannot be named in a lease id */
		snprintf(m->id, sizeof(m->id), "%s", id);
		m->due_ms = sqlite3_column_int64(st, 0);
		if (column_blob(st, 2, t->fx.arena, &m->payload) != 0) {
			sqlite3_reset(st);
			return KV_ERR_NOMEM;
		}
		m->attempt = attempt_of(m->id,
		    (const char *)sqlite3_column_text(st, 3));
		m->lease_until_ms = lease_end(t->now_ms + t->lease_ms,
		    delays_left((const char *)sqlite3_column_text(st, 3)));
		t->n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return kv_sqlite_error(k, rc, "due messages");
	for (size_t i = 0; i < t->n; i++)
		if ((err = move_to_running(k, &t->out[i])) != KV_OK)
			return err;
	return KV_OK;
}

enum kv_err
kv_queue_lease(struct kv_db *k, int64_t now_ms, size_t max, int64_t lease_ms,
    struct arena *a, struct kv_queue_msg *out, size_t *n)
{
	struct lease_tx	 t = {
		.fx = { .arena = a },
		.now_ms = now_ms,
		.lease_ms = lease_ms,
		.max = max,
		.out = out,
	};
	struct kv_queue_events	 ev;
	enum kv_err	 err;

	*n = 0;
	if (kv_is_read_only(k))
		return KV_ERR_READ_ONLY;
	/* A read first: polls that find nothing take no write lock. */
	if ((err = kv_queue_next_events(k, &ev)) != KV_OK)
		return err;
	if ((ev.next_due_ms == 0 || ev.next_due_ms > now_ms) &&
	    (ev.next_lease_end_ms == 0 || ev.next_lease_end_ms > now_ms))
		return KV_OK;
	if ((err = kv_write_tx(k, lease_body, after_commit, &t)) != KV_OK)
		return err;
	announce(k, &t.fx);
	*n = t.n;
	return KV_OK;
}

/* --- finish, renew, expiry ---------------------------------------------------- */

/* A renewal, or one lease looked up by a finish. */
struct lease_op {
	struct queue_effects	 fx;
	const char		*id;
	int64_t			 until, now_ms, lease_ms, new_until;
};

/* Is (id, until) a lease that is held now? */
static enum kv_err
check_held(struct kv_db *k, const struct lease_op *op)
{
	sqlite3_stmt	*st;
	int		 rc;

	if ((st = stmt(k, QS_RUNNING_GET)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC) !=
	    SQLITE_OK || sqlite3_bind_int64(st, 2, op->until) != SQLITE_OK)
		return bind_err(k);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return KV_ERR_QUEUE_LEASE_NOT_HELD;
	if (rc != SQLITE_ROW)
		return kv_sqlite_error(k, rc, "queue_running read");
	return op->until <= op->now_ms ? KV_ERR_QUEUE_LEASE_EXPIRED : KV_OK;
}

/* Moves a held lease's end to now + lease_ms, under a new name. */
static enum kv_err
renew_body(struct kv_db *k, void *arg)
{
	struct lease_op	*op = arg;
	sqlite3_stmt	*st;
	enum kv_err	 err;
	int		 changes;

	effects_reset(&op->fx);
	if ((err = check_held(k, op)) != KV_OK)
		return err;
	/*
	 * Never earlier than the lease it replaces, and with its residue
	 * (lease_end): no lease of this message can take an old name.
	 */
	op->new_until = op->now_ms + op->lease_ms;
	if (op->new_until <= op->until)
		op->new_until = op->until + 1;
	op->new_until = lease_end(op->new_until, op->until);
	if ((st = stmt(k, QS_RENEW)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, op->until) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, op->new_until) != SQLITE_OK)
		return bind_err(k);
	if ((err = run(k, st, &changes)) != KV_OK)
		return err;
	return changes == 1 ? KV_OK : KV_ERR_INTERNAL;
}

/* Success: the message is done, its row goes. */
static enum kv_err
delete_running(struct kv_db *k, const char *id, int64_t until)
{
	sqlite3_stmt	*st;
	enum kv_err	 err;
	int		 changes;

	if ((st = stmt(k, QS_DEL_RUNNING)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, until) != SQLITE_OK)
		return bind_err(k);
	if ((err = run(k, st, &changes)) != KV_OK)
		return err;
	return changes == 1 ? KV_OK : KV_ERR_INTERNAL;
}

struct finish_tx {
	struct queue_effects	 fx;
	struct kv_queue_outcome	*o;
	size_t			 n;
	int64_t			 now_ms;
};

/*
 * Every outcome in one transaction, so a consumer's finishes share one
 * commit. A lease that is not held is that outcome's refusal and changes
 * nothing; the others still apply. A storage error undoes them all.
 */
static enum kv_err
finish_body(struct kv_db *k, void *arg)
{
	struct finish_tx	*t = arg;
	enum kv_err		 err;

	effects_reset(&t->fx);
	for (size_t i = 0; i < t->n; i++) {
		struct kv_queue_outcome	*o = &t->o[i];
		struct lease_op		 op = {
			.id = o->id,
			.until = o->lease_until_ms,
			.now_ms = t->now_ms,
		};

		err = check_held(k, &op);
		o->result = err;
		if (err == KV_ERR_QUEUE_LEASE_NOT_HELD ||
		    err == KV_ERR_QUEUE_LEASE_EXPIRED)
			continue;
		if (err == KV_OK)
			err = o->success ? delete_running(k, o->id,
			    o->lease_until_ms) : fail_running(k, o->id,
			    o->lease_until_ms, t->now_ms, &t->fx);
		if (err != KV_OK)
			return err;
	}
	return KV_OK;
}

enum kv_err
kv_queue_finish_many(struct kv_db *k, struct kv_queue_outcome *o, size_t n,
    int64_t now_ms)
{
	struct arena		 a;
	struct finish_tx	 t = { .o = o, .n = n, .now_ms = now_ms };
	enum kv_err		 err;

	arena_init(&a, 16 * 1024);
	t.fx.arena = &a;
	if ((err = kv_write_tx(k, finish_body, after_commit, &t)) == KV_OK)
		announce(k, &t.fx);
	arena_fini(&a);
	return err;
}

enum kv_err
kv_queue_finish(struct kv_db *k, const char *id, int64_t lease_until_ms,
    int success, int64_t now_ms)
{
	struct kv_queue_outcome	 o = {
		.id = id,
		.lease_until_ms = lease_until_ms,
		.success = success,
	};
	enum kv_err		 err;

	if ((err = kv_queue_finish_many(k, &o, 1, now_ms)) != KV_OK)
		return err;
	return o.result;
}

enum kv_err
kv_queue_renew(struct kv_db *k, const char *id, int64_t lease_until_ms,
    int64_t lease_ms, int64_t now_ms, int64_t *new_until)
{
	struct lease_op	 op = {
		.id = id,
		.until = lease_until_ms,
		.now_ms = now_ms,
		.lease_ms = lease_ms,
	};
	enum kv_err	 err;

	/* A renewal changes no queue or key: no effects to announce. */
	if ((err = kv_write_tx(k, renew_body, NULL, &op)) == KV_OK)
		*new_until = op.new_until;
	return err;
}

struct expired_tx {
	struct queue_effects	 fx;
	int64_t			 now_ms;
	int			 batch, n;
};

static enum kv_err
expired_body(struct kv_db *k, void *arg)
{
	struct expired_tx	*t = arg;

	effects_reset(&t->fx);
	return return_expired(k, t->now_ms, t->batch, &t->fx, &t->n);
}

enum kv_err
kv_queue_return_expired(struct kv_db *k, int64_t now_ms, int batch, int *n)
{
	struct arena		 a;
	struct expired_tx	 t = { .now_ms = now_ms, .batch = batch };
	struct kv_queue_events	 ev;
	enum kv_err		 err;

	*n = 0;
	if (kv_is_read_only(k))
		return KV_OK;
	/* A read first: no write lock taken when no lease has run out. */
	if ((err = kv_queue_next_events(k, &ev)) != KV_OK ||
	    ev.next_lease_end_ms == 0 || ev.next_lease_end_ms > now_ms)
		return err;
	arena_init(&a, 16 * 1024);
	t.fx.arena = &a;
	if ((err = kv_write_tx(k, expired_body, after_commit, &t)) == KV_OK) {
		announce(k, &t.fx);
		*n = t.n;
	}
	arena_fini(&a);
	return err;
}

/* --- reading ------------------------------------------------------------------- */

enum kv_err
kv_queue_next_events(struct kv_db *k, struct kv_queue_events *ev)
{
	sqlite3_stmt	*st;
	int		 rc;

	kv_begin_read(k);
	memset(ev, 0, sizeof(*ev));
	if ((st = stmt(k, QS_NEXT_EVENTS)) == NULL)
		return KV_ERR_STORAGE;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_type(st, 0) != SQLITE_NULL)
			ev->next_due_ms = sqlite3_column_int64(st, 0);
		if (sqlite3_column_type(st, 1) != SQLITE_NULL)
			ev->next_lease_end_ms = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? KV_OK :
	    kv_sqlite_error(k, rc, "queue next events");
}

enum kv_err
kv_queue_stats(struct kv_db *k, int64_t now_ms, struct kv_queue_stats *s)
{
	sqlite3_stmt	*st;
	int		 rc;

	kv_begin_read(k);
	memset(s, 0, sizeof(*s));
	if ((st = stmt(k, QS_STATS)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, now_ms) != SQLITE_OK)
		return bind_err(k);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		s->ready = sqlite3_column_int64(st, 0);
		s->delayed = sqlite3_column_int64(st, 1);
		s->running = sqlite3_column_int64(st, 2);
		s->expired = sqlite3_column_int64(st, 3);
		if (sqlite3_column_type(st, 4) != SQLITE_NULL)
			s->oldest_due_age_ms = now_ms -
			    sqlite3_column_int64(st, 4);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return kv_sqlite_error(k, rc, "queue stats");
	return read_dead_lettered(k, &s->dead_lettered);
}

static enum kv_err
list_rows(struct kv_db *k, enum queue_stmt s, size_t limit, int running,
    void (*fn)(void *, const struct kv_queue_msg *, const char *,
    const char *), void *ctx, size_t *listed)
{
	struct kv_queue_msg	 m;
	sqlite3_stmt		*st;
	int			 rc;

	if ((st = stmt(k, s)) == NULL)
		return KV_ERR_STORAGE;
	if (sqlite3_bind_int64(st, 1, (int64_t)limit) != SQLITE_OK)
		return bind_err(k);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 1);
		const char *backoff = (const char *)sqlite3_column_text(st, 3);

		memset(&m, 0, sizeof(m));
		snprintf(m.id, sizeof(m.id), "%s", id ? id : "");
		if (running)
			m.lease_until_ms = sqlite3_column_int64(st, 0);
		else
			m.due_ms = sqlite3_column_int64(st, 0);
		m.payload.p = sqlite3_column_blob(st, 2);
		m.payload.len = (size_t)sqlite3_column_bytes(st, 2);
		m.attempt = attempt_of(m.id, backoff);
		fn(ctx, &m, backoff ? backoff : "",
		    (const char *)sqlite3_column_text(st, 4));
		(*listed)++;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? KV_OK : kv_sqlite_error(k, rc, "queue list");
}

enum kv_err
kv_queue_list(struct kv_db *k, size_t limit,
    void (*fn)(void *, const struct kv_queue_msg *, const char *,
    const char *), void *ctx)
{
	size_t		 listed = 0;
	enum kv_err	 err;

	kv_begin_read(k);
	if ((err = list_rows(k, QS_LIST_READY, limit, 0, fn, ctx, &listed)) !=
	    KV_OK || listed >= limit)
		return err;
	return list_rows(k, QS_LIST_RUNNING, limit - listed, 1, fn, ctx,
	    &listed);
}
