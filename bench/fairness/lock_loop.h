/*
 * lock_loop.h: the body shared by unfair_loop.c and fair_loop.c (see
 * README.md). Each includes it after defining FAIR to 0 or 1 and the
 * program name LOOP_NAME.
 *
 * P processes x T threads write to one WAL database, each writer with its
 * own SQLite connection, doing what one single-key atomic write of
 * denokv-fcgi costs in SQLite:
 *
 *   BEGIN IMMEDIATE;
 *   UPDATE data_version SET version = version + 1 WHERE k = 0 RETURNING version;
 *   INSERT OR REPLACE INTO kv (k, v, v_encoding, version, expiration_ms)
 *       VALUES (key, value, 3, version, -1);
 *   COMMIT;
 *
 * on denokv's table layout, synchronous=FULL unless -s normal, busy_timeout
 * 5000 ms (the server's KV_BUSY_TIMEOUT_MS).
 *
 *   FAIR 0 (unfair_loop): writers contend for SQLite's write lock through
 *     the busy handler alone, which sleeps 1, 2, 5, 10 ... 100 ms between
 *     attempts; whoever tries at the right moment wins.
 *   FAIR 1 (fair_loop): each writer first takes a ticket from the
 *     server's own ticket lock (src/shm.c, linked from src/libdenokv.a:
 *     shm_create before fork, shm_proc_claim per writer,
 *     shm_write_begin / shm_write_end around the transaction), exactly as
 *     the server's storage hooks do.
 *
 * Per transaction it records the WAIT: from wanting to write (before the
 * ticket, or before BEGIN IMMEDIATE) until BEGIN IMMEDIATE returned OK,
 * i.e. the time spent waiting for the write lock, and the whole transaction
 * (wait + work + commit). An SQLITE_BUSY after the full busy timeout is
 * counted and retried; the wait goes on counting.
 *
 * Output: a human-readable summary, then one line
 *   RESULT name=... fair=0|1 procs=P threads=T writers=W seconds=S
 *     commits=N commits_per_s=R wait_p50_us=... wait_p99_us=...
 *     wait_p999_us=... wait_max_us=... txn_p50_us=... txn_p99_us=...
 *     txn_max_us=... busy=N min_writer=N max_writer=N starved=N
 *     [shm_max_wait_us=...]
 * min_writer / max_writer: the fewest and most commits of one writer;
 * starved: writers that committed less than a quarter of the mean.
 */
#ifndef LOOP_NAME
#error "define LOOP_NAME and FAIR before including lock_loop.h"
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include "../bench_common.h"

#if FAIR
#include "shm.h"
#endif

/* Histogram in microseconds, log-linear: exact below 64, then 1/64 steps. */

struct wstats {
	uint64_t	 commits;
	uint64_t	 busy;
	uint64_t	 wait_max_us;
	uint64_t	 txn_max_us;
	int		 failed;
	char		 err[200];
	uint64_t	 wait_hist[NBUCKETS];
	uint64_t	 txn_hist[NBUCKETS];
};

struct shared {
	volatile int	 go;
	volatile int	 stop;
	int		 ready;
	struct wstats	 w[];
};

static struct {
	const char	*path;
	double		 seconds;
	int		 procs;
	int		 threads;
	const char	*sync;
	int		 keys;
	int		 value_bytes;
	int		 busy_ms;
} opt = { NULL, 10, 4, 1, "full", 10000, 16, 5000 };

static struct shared	*sh;
#if FAIR
static struct shm_segment *seg;
#endif

static uint64_t
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

static void
die_db(sqlite3 *db, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", LOOP_NAME, what,
	    db ? sqlite3_errmsg(db) : "out of memory");
	exit(1);
}

static sqlite3 *
open_db(void)
{
	sqlite3	*db = NULL;
	char	 sql[64];

	if (sqlite3_open_v2(opt.path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		die_db(db, "open");
	sqlite3_busy_timeout(db, opt.busy_ms);
	snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", opt.sync);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die_db(db, sql);
	return db;
}

/* denokv's layout and -k rows, so that every commit replaces a row. */
static void
setup_db(void)
{
	sqlite3		*db = open_db();
	sqlite3_stmt	*ins;
	uint8_t		 key[32], *val;
	size_t		 klen;

	if (sqlite3_exec(db, bench_schema, NULL, NULL, NULL) != SQLITE_OK)
		die_db(db, "schema");
	val = calloc(1, (size_t)opt.value_bytes + 1);
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv (k, v,"
	    " v_encoding, version) VALUES (?, ?, 3, 0)", -1, &ins, NULL) !=
	    SQLITE_OK)
		die_db(db, "prepare");
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (int i = 0; i < opt.keys; i++) {
		klen = bench_encode_key(key, i);
		sqlite3_bind_blob(ins, 1, key, (int)klen, SQLITE_STATIC);
		sqlite3_bind_blob(ins, 2, val, opt.value_bytes, SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE)
			die_db(db, "seed");
		sqlite3_reset(ins);
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		die_db(db, "seed commit");
	sqlite3_finalize(ins);
	sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	sqlite3_close(db);
	free(val);
}

static void
writer(int id)
{
	struct wstats	*ws = &sh->w[id];
	sqlite3		*db = open_db();
	sqlite3_stmt	*begin, *inc, *put, *commit, *rollback;
	uint8_t		 key[32], *val;
	unsigned int	 seed = (unsigned int)(getpid() * 7919 + id * 104729);
	int		 rc;
#if FAIR
	int		 slot;

	/* One process slot per writer (several per process is fine: a slot
	 * holds one ticket, and the pid is only used to detect death). */
	if ((slot = shm_proc_claim(seg, getpid())) < 0) {
		snprintf(ws->err, sizeof(ws->err), "no free shm process slot");
		ws->failed = 1;
		__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
		return;
	}
#endif
	val = malloc((size_t)opt.value_bytes + 1);
	memset(val, 'v', (size_t)opt.value_bytes);
	if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
	    sqlite3_prepare_v2(db, "UPDATE data_version SET version ="
	    " version + 1 WHERE k = 0 RETURNING version", -1, &inc, NULL) ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv (k, v,"
	    " v_encoding, version, expiration_ms) VALUES (?, ?, 3, ?, -1)",
	    -1, &put, NULL) ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) ||
	    sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL))
		die_db(db, "prepare");

	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while (!sh->go)
		usleep(100);

	while (!sh->stop) {
		uint64_t	 t0, t1, t2, wait, txn;
		int		 n = (int)(rand_r(&seed) % (unsigned)opt.keys);
		size_t		 klen = bench_encode_key(key, n);
		int64_t		 version;

		val[0] = (uint8_t)n;
		t0 = now_us();
#if FAIR
		shm_write_begin(seg, slot, -1);
#endif
		while ((rc = sqlite3_step(begin)) == SQLITE_BUSY) {
			/* The busy handler gave up after busy_ms: again. */
			ws->busy++;
			sqlite3_reset(begin);
		}
		sqlite3_reset(begin);
		t1 = now_us();
		if (rc != SQLITE_DONE)
			goto fail;
		rc = sqlite3_step(inc);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(inc);
			goto fail_tx;
		}
		version = sqlite3_column_int64(inc, 0);
		sqlite3_reset(inc);
		sqlite3_bind_blob(put, 1, key, (int)klen, SQLITE_STATIC);
		sqlite3_bind_blob(put, 2, val, opt.value_bytes, SQLITE_STATIC);
		sqlite3_bind_int64(put, 3, version);
		rc = sqlite3_step(put);
		sqlite3_reset(put);
		if (rc != SQLITE_DONE)
			goto fail_tx;
		rc = sqlite3_step(commit);
		sqlite3_reset(commit);
		if (rc != SQLITE_DONE)
			goto fail_tx;
#if FAIR
		shm_write_end(seg, slot);
#endif
		t2 = now_us();
		wait = t1 - t0;
		txn = t2 - t0;
		ws->wait_hist[bench_bucket_of(wait)]++;
		ws->txn_hist[bench_bucket_of(txn)]++;
		if (wait > ws->wait_max_us)
			ws->wait_max_us = wait;
		if (txn > ws->txn_max_us)
			ws->txn_max_us = txn;
		ws->commits++;
		continue;
fail_tx:
		snprintf(ws->err, sizeof(ws->err), "%s", sqlite3_errmsg(db));
		sqlite3_step(rollback);
		sqlite3_reset(rollback);
		ws->failed = 1;
		break;
fail:
		snprintf(ws->err, sizeof(ws->err), "%s", sqlite3_errmsg(db));
		ws->failed = 1;
		break;
	}
#if FAIR
	/* Give the turn back if we left the loop holding it. */
	shm_write_end(seg, slot);
#endif
	sqlite3_finalize(begin);
	sqlite3_finalize(inc);
	sqlite3_finalize(put);
	sqlite3_finalize(commit);
	sqlite3_finalize(rollback);
	sqlite3_close(db);
	free(val);
}

static void *
thread_main(void *arg)
{
	writer((int)(intptr_t)arg);
	return NULL;
}

/* One process: its threads, each a writer. */
static void
process_main(int p)
{
	pthread_t	*tids = calloc((size_t)opt.threads, sizeof(*tids));

	for (int t = 0; t < opt.threads; t++)
		if (pthread_create(&tids[t], NULL, thread_main,
		    (void *)(intptr_t)(p * opt.threads + t)) != 0) {
			perror("pthread_create");
			_exit(1);
		}
	for (int t = 0; t < opt.threads; t++)
		pthread_join(tids[t], NULL);
	_exit(0);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-f db-path] [-d seconds] [-p processes] [-t threads]\n"
	    "           [-s full|normal] [-k keys] [-v value-bytes]"
	    " [-b busy-timeout-ms]\n"
	    "  -p processes x -t threads writers, each with its own"
	    " connection (default 4 x 1).\n"
	    "  Without -f, a temporary database is created and removed.\n",
	    LOOP_NAME);
	exit(2);
}

int
main(int argc, char **argv)
{
	static uint64_t	 wait_hist[NBUCKETS], txn_hist[NBUCKETS];
	char		 tmpl[512];
	int		 c, temp = 0, failed = 0, writers;
	size_t		 shsize;
	pid_t		*pids;
	uint64_t	 t0, t1, commits = 0, busy = 0, wmax = 0, tmax = 0;
	uint64_t	 minw = UINT64_MAX, maxw = 0, starved = 0;
	double		 secs, mean;

	while ((c = getopt(argc, argv, "f:d:p:t:s:k:v:b:h")) != -1) {
		switch (c) {
		case 'f': opt.path = optarg; break;
		case 'd': opt.seconds = atof(optarg); break;
		case 'p': opt.procs = atoi(optarg); break;
		case 't': opt.threads = atoi(optarg); break;
		case 's':
			if (strcmp(optarg, "full") && strcmp(optarg, "normal"))
				usage();
			opt.sync = optarg;
			break;
		case 'k': opt.keys = atoi(optarg); break;
		case 'v': opt.value_bytes = atoi(optarg); break;
		case 'b': opt.busy_ms = atoi(optarg); break;
		default: usage();
		}
	}
	writers = opt.procs * opt.threads;
	if (opt.seconds <= 0 || opt.procs < 1 || opt.threads < 1 ||
	    writers > 512 || opt.keys < 1 || opt.value_bytes < 1 ||
	    opt.busy_ms < 0)
		usage();
	if (opt.path == NULL) {
		const char	*dir = getenv("TMPDIR");

		snprintf(tmpl, sizeof(tmpl), "%s/%s.%d.sqlite",
		    dir && *dir ? dir : "/tmp", LOOP_NAME, (int)getpid());
		opt.path = tmpl;
		temp = 1;
	}
	setup_db();

	shsize = sizeof(*sh) + (size_t)writers * sizeof(sh->w[0]);
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
#if FAIR
	/* As the master does: mapped before any fork. */
	if ((seg = shm_create()) == NULL) {
		perror("shm_create");
		return 1;
	}
#endif
	pids = calloc((size_t)opt.procs, sizeof(*pids));
	for (int p = 0; p < opt.procs; p++) {
		if ((pids[p] = fork()) < 0) {
			perror("fork");
			return 1;
		}
		if (pids[p] == 0)
			process_main(p);
	}
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < writers)
		usleep(1000);
	t0 = now_us();
	sh->go = 1;
	usleep((useconds_t)(opt.seconds * 1e6));
	sh->stop = 1;
	t1 = now_us();
	for (int p = 0; p < opt.procs; p++) {
		int	 st;

		if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			failed = 1;
	}
	secs = (double)(t1 - t0) / 1e6;
	for (int i = 0; i < writers; i++) {
		struct wstats	*ws = &sh->w[i];

		if (ws->failed) {
			fprintf(stderr, "%s: writer %d failed: %s\n", LOOP_NAME,
			    i, ws->err);
			failed = 1;
		}
		commits += ws->commits;
		busy += ws->busy;
		if (ws->wait_max_us > wmax)
			wmax = ws->wait_max_us;
		if (ws->txn_max_us > tmax)
			tmax = ws->txn_max_us;
		if (ws->commits < minw)
			minw = ws->commits;
		if (ws->commits > maxw)
			maxw = ws->commits;
		for (int b = 0; b < NBUCKETS; b++) {
			wait_hist[b] += ws->wait_hist[b];
			txn_hist[b] += ws->txn_hist[b];
		}
	}
	mean = (double)commits / writers;
	for (int i = 0; i < writers; i++)
		if ((double)sh->w[i].commits < mean / 4)
			starved++;
	if (temp) {
		char	 side[600];

		unlink(opt.path);
		snprintf(side, sizeof(side), "%s-wal", opt.path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", opt.path);
		unlink(side);
	}
	if (failed || commits == 0) {
		fprintf(stderr, "%s: FAILED (%llu commits)\n", LOOP_NAME,
		    (unsigned long long)commits);
		return 1;
	}
	printf("%s: %s admission, %d process(es) x %d thread(s) = %d"
	    " writers, synchronous=%s, %.1f s\n", LOOP_NAME,
	    FAIR ? "ticket-lock (src/shm.c)" : "busy-handler", opt.procs,
	    opt.threads, writers, opt.sync, secs);
	printf("  %llu commits, %.1f commits/s; per writer %llu..%llu"
	    " commits, %llu starved (< 1/4 of the mean), %llu busy timeouts\n",
	    (unsigned long long)commits, (double)commits / secs,
	    (unsigned long long)minw, (unsigned long long)maxw,
	    (unsigned long long)starved, (unsigned long long)busy);
	printf("  lock wait   p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms"
	    "  max %.3f ms\n",
	    bench_percentile(wait_hist, commits, 50, 1) / 1e3,
	    bench_percentile(wait_hist, commits, 99, 1) / 1e3,
	    bench_percentile(wait_hist, commits, 99.9, 1) / 1e3, wmax / 1e3);
	printf("  transaction p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
	    bench_percentile(txn_hist, commits, 50, 1) / 1e3,
	    bench_percentile(txn_hist, commits, 99, 1) / 1e3, tmax / 1e3);
	printf("RESULT name=%s fair=%d procs=%d threads=%d writers=%d"
	    " seconds=%.3f commits=%llu commits_per_s=%.1f wait_p50_us=%llu"
	    " wait_p99_us=%llu wait_p999_us=%llu wait_max_us=%llu"
	    " txn_p50_us=%llu txn_p99_us=%llu txn_max_us=%llu busy=%llu"
	    " min_writer=%llu max_writer=%llu starved=%llu", LOOP_NAME, FAIR,
	    opt.procs, opt.threads, writers, secs,
	    (unsigned long long)commits, (double)commits / secs,
	    (unsigned long long)bench_percentile(wait_hist, commits, 50, 1),
	    (unsigned long long)bench_percentile(wait_hist, commits, 99, 1),
	    (unsigned long long)bench_percentile(wait_hist, commits, 99.9, 1),
	    (unsigned long long)wmax,
	    (unsigned long long)bench_percentile(txn_hist, commits, 50, 1),
	    (unsigned long long)bench_percentile(txn_hist, commits, 99, 1),
	    (unsigned long long)tmax, (unsigned long long)busy,
	    (unsigned long long)minw, (unsigned long long)maxw,
	    (unsigned long long)starved);
#if FAIR
	printf(" shm_max_wait_us=%llu",
	    (unsigned long long)shm_max_wait_us(seg));
#endif
	printf("\n");
	return 0;
}
