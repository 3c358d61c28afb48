/*
 * housekeeper.c: see housekeeper.h. One pass a second: expired entries in
 * batches of KV_EXPIRY_BATCH (each its own short write transaction, so
 * writers are never held up for long), then a passive checkpoint, and a
 * truncating one when the WAL has grown past HK_WAL_TRUNCATE_FRAMES.
 * Queue leases that ran out are returned in the same pass.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "housekeeper.h"
#include "kv_limits.h"
#include "log.h"
#include "shm.h"

#define HK_INTERVAL_MS		1000
/* Batches per pass: a backlog is worked off over several passes. */
#define HK_MAX_BATCHES		10
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

int
housekeeper_run(const struct conf *c, struct shm_segment *seg)
{
	struct shm_client	 client;
	struct kv_hooks		 hooks;
	struct kv_options	 opt = conf_kv_options(c);
	struct timespec		 interval = {
		.tv_sec = HK_INTERVAL_MS / 1000,
		.tv_nsec = (HK_INTERVAL_MS % 1000) * 1000000L,
	};
	struct kv_db		*db;
	sigset_t		 set;
	char			 err[512];
	int			 sig;

	/* Its deletions queue fairly with the workers' writes and wake watchers. */
	if (seg != NULL) {
		if (shm_client_init(&client, seg, &hooks) != 0) {
			log_warnx("no free process slot in the signal segment");
			return 1;
		}
		opt.hooks = &hooks;
	}
	if ((db = kv_open(c->sqlite_path, &opt, err, sizeof(err))) == NULL) {
		log_warnx("cannot open database: %s", err);
		return 1;
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
	kv_close(db);
	return 0;
}
