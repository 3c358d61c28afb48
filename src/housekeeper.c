/*
 * housekeeper.c: see housekeeper.h. One pass a second: expired entries in
 * batches of KV_EXPIRY_BATCH (each its own short write transaction, so
 * writers are never held up for long), then a passive checkpoint, and a
 * truncating one when the WAL has grown past HK_WAL_TRUNCATE_FRAMES.
 * Queue leases that ran out are returned in the same pass. With many
 * databases (docs/shared-hosting.md) a pass visits them in turn, opening
 * each through the registry, which keeps only a few open.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "dbreg.h"
#include "housekeeper.h"
#include "kv_limits.h"
#include "log.h"
#include "shm.h"

#define HK_INTERVAL_MS		1000
/* Batches per pass: a backlog is worked off over several passes. */
#define HK_MAX_BATCHES		10
/*
 * Databases visited per pass, and handles kept open between visits: with
 * more databases than that, each is visited every n / HK_VISITS_PER_PASS
 * seconds, and the housekeeper's memory and descriptors stay bounded.
 */
#define HK_VISITS_PER_PASS	64
#define HK_MAX_OPEN		8
/* About 64 MiB of 4 KiB pages. */
#define HK_WAL_TRUNCATE_FRAMES	16384

static void
sweep_expired(struct kv_db *db)
{
	int	 deleted, total = 0;

	for (int i = 0; i < HK_MAX_BATCHES; i++) {
		if (kv_delete_expired(db, kv_now_ms(), KV_EXPIRY_BATCH,
		    &deleted) != KV_OK)
			return;
		total += deleted;
		if (deleted < KV_EXPIRY_BATCH)
			break;
	}
	if (total > 0)
		log_debug("deleted %d expired entries", total);
}

/*
 * Queue leases that ran out go back to the queue (a failed attempt) or to
 * their dead-letter keys. A hub with consumers waiting does this itself
 * when the lease ends; this pass covers a database nobody listens on, so
 * queue_running stays bounded by the leases actually held.
 */
static void
return_expired_leases(struct kv_db *db)
{
	int	 n, total = 0;

	for (int i = 0; i < HK_MAX_BATCHES; i++) {
		if (kv_queue_return_expired(db, kv_now_ms(), KV_EXPIRY_BATCH,
		    &n) != KV_OK)
			return;
		total += n;
		if (n < KV_EXPIRY_BATCH)
			break;
	}
	if (total > 0)
		log_info("returned %d expired queue leases", total);
}

static void
checkpoint(struct kv_db *db)
{
	int	 frames, after, done;

	if (kv_checkpoint(db, 0, &frames, &done) != KV_OK)
		return;
	/* The truncating call reports the emptied WAL: log what it found. */
	if (frames >= HK_WAL_TRUNCATE_FRAMES &&
	    kv_checkpoint(db, 1, &after, &done) == KV_OK)
		log_info("WAL truncated after %d frames", frames);
}

/* One database's housekeeping: expiry, queue leases, checkpoint. */
static void
visit(const struct conf *c, struct dbreg *reg, struct dbreg_db *d)
{
	struct kv_db	*db;

	if (dbreg_open(reg, d, &db) != KV_OK)
		return;		/* logged; tried again on the next round */
	sweep_expired(db);
	return_expired_leases(db);
	/*
	 * checkpoint = external: a replicator (Litestream) copies the
	 * WAL and checkpoints once it has; a checkpoint of ours could
	 * move the WAL on before it copied the frames (it would then
	 * start a new snapshot) or wait on its read lock.
	 */
	if (!c->checkpoint_external)
		checkpoint(db);
}

int
housekeeper_run(const struct conf *c, struct shm_segment *const *segs)
{
	struct dbreg		 reg;
	struct timespec		 interval = {
		.tv_sec = HK_INTERVAL_MS / 1000,
		.tv_nsec = (HK_INTERVAL_MS % 1000) * 1000000L,
	};
	sigset_t		 set;
	char			 err[512];
	size_t			 next = 0;
	int			 sig;

	/*
	 * Its deletions queue fairly with the workers' writes and wake
	 * watchers: the registry claims a slot in each database's segment.
	 */
	if (dbreg_init(&reg, c, segs, HK_MAX_OPEN, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		return 1;
	}
	/* The one database is opened at once, as always: a failure shows. */
	if (c->databases == NULL && !c->read_only) {
		struct kv_db	*db;

		if (dbreg_open(&reg, &reg.dbs[0], &db) != KV_OK) {
			dbreg_fini(&reg);
			return 1;
		}
	}
	/* Sleep in sigtimedwait: a stop signal ends the wait at once. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		sig = sigtimedwait(&set, NULL, &interval);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (c->read_only)
			continue;
		/* Round robin, a bounded number per pass (see the top). */
		for (size_t i = 0; i < reg.n && i < HK_VISITS_PER_PASS; i++) {
			visit(c, &reg, &reg.dbs[next]);
			next = (next + 1) % reg.n;
		}
	}
	dbreg_fini(&reg);
	return 0;
}
