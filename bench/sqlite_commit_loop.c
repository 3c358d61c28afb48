/*
 * sqlite_commit_loop: the storage ceiling for denokv-fcgi's atomic writes.
 *
 * Does what one single-key atomic write costs in SQLite and nothing else:
 *
 *   BEGIN IMMEDIATE;
 *   UPDATE data_version SET version = version + 1 WHERE k = 0 RETURNING version;
 *   INSERT OR REPLACE INTO kv (k, v, v_encoding, version, expiration_ms)
 *       VALUES (key, value, 3, version, -1);
 *   COMMIT;
 *
 * on a WAL database laid out like denokv's (data_version, kv ... without
 * rowid, the expiration index), with synchronous=FULL unless -s normal, in
 * a loop for -d seconds. -c runs that many writers at once, each with its
 * own connection, as processes (-m proc, the default: like FastCGI worker
 * processes) or threads (-m thread); they contend for SQLite's one write
 * lock through busy_timeout, as the server's workers do.
 *
 * Keys are ["bench", n] in the Deno KV key encoding, n uniform over -k keys
 * (all present beforehand, so every commit replaces a row), values -v bytes.
 *
 * Prints commits/s and per-commit latency, then a machine-readable line:
 *   RESULT sqlite_loop c=1 mode=proc sync=full commits=... seconds=...
 *       commits_per_s=... p50_us=... p99_us=... busy=...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include "bench_common.h"

/* Latency histogram in microseconds, log-linear with 1/64 precision. */

struct worker_stats {
	uint64_t	commits;
	uint64_t	busy;		/* transactions retried after SQLITE_BUSY */
	int		failed;
	char		err[200];
	uint64_t	hist[NBUCKETS];
};

struct shared {
	volatile int	go;
	volatile int	stop;
	int		ready;
	struct worker_stats w[];
};

static struct {
	const char	*path;
	double		 seconds;
	int		 conc;
	int		 threads;
	const char	*sync;
	int		 keys;
	int		 value_bytes;
	int		 busy_ms;
} opt = { NULL, 10, 1, 0, "full", 10000, 16, 5000 };

static struct shared *sh;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die_db(sqlite3 *db, const char *what)
{
	fprintf(stderr, "sqlite_commit_loop: %s: %s\n", what,
	    db ? sqlite3_errmsg(db) : "out of memory");
	exit(1);
}

static sqlite3 *
open_db(void)
{
	sqlite3 *db = NULL;
	char sql[128];

	if (sqlite3_open_v2(opt.path, &db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		die_db(db, "open");
	sqlite3_busy_timeout(db, opt.busy_ms);
	snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", opt.sync);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die_db(db, sql);
	return db;
}

/* denokv's schema after its three migrations, and -k rows. */
static void
setup(void)
{
	sqlite3 *db = open_db();
	sqlite3_stmt *ins;
	uint8_t key[32], *val;
	size_t klen;
	int i;

	if (sqlite3_exec(db, bench_schema, NULL, NULL, NULL) != SQLITE_OK)
		die_db(db, "schema");
	val = calloc(1, (size_t)opt.value_bytes + 1);
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv (k, v, "
	    "v_encoding, version) VALUES (?, ?, 3, 0)", -1, &ins, NULL) !=
	    SQLITE_OK)
		die_db(db, "prepare");
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (i = 0; i < opt.keys; i++) {
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

static int
step_retry(sqlite3_stmt *st, struct worker_stats *ws, int want)
{
	int rc;

	for (;;) {
		rc = sqlite3_step(st);
		if (rc != SQLITE_BUSY)
			break;
		ws->busy++;
		sqlite3_reset(st);
	}
	if (rc != want)
		return rc;
	return SQLITE_OK;
}

static void
worker(int id)
{
	struct worker_stats *ws = &sh->w[id];
	sqlite3 *db = open_db();
	sqlite3_stmt *begin, *inc, *put, *commit, *rollback;
	uint8_t key[32], *val;
	unsigned int seed = (unsigned int)(getpid() * 7919 + id * 104729);
	int rc;

	val = malloc((size_t)opt.value_bytes + 1);
	memset(val, 'v', (size_t)opt.value_bytes);
	if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
	    sqlite3_prepare_v2(db, "UPDATE data_version SET version = "
	    "version + 1 WHERE k = 0 RETURNING version", -1, &inc, NULL) ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv (k, v, "
	    "v_encoding, version, expiration_ms) VALUES (?, ?, 3, ?, -1)",
	    -1, &put, NULL) ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) ||
	    sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL))
		die_db(db, "prepare");

	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while (!sh->go)
		usleep(100);

	while (!sh->stop) {
		uint64_t t0 = now_ns(), us;
		int n = (int)(rand_r(&seed) % (unsigned)opt.keys);
		size_t klen = bench_encode_key(key, n);
		int64_t version;

		val[0] = (uint8_t)n;
		rc = step_retry(begin, ws, SQLITE_DONE);
		sqlite3_reset(begin);
		if (rc != SQLITE_OK)
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
		rc = step_retry(commit, ws, SQLITE_DONE);
		sqlite3_reset(commit);
		if (rc != SQLITE_OK)
			goto fail_tx;
		us = (now_ns() - t0) / 1000;
		ws->hist[bench_bucket_of(us)]++;
		ws->commits++;
		continue;
fail_tx:
		snprintf(ws->err, sizeof ws->err, "%s", sqlite3_errmsg(db));
		sqlite3_step(rollback);
		sqlite3_reset(rollback);
		ws->failed = 1;
		break;
fail:
		snprintf(ws->err, sizeof ws->err, "%s", sqlite3_errmsg(db));
		ws->failed = 1;
		break;
	}
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
	worker((int)(intptr_t)arg);
	return NULL;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: sqlite_commit_loop [-f db-path] [-d seconds] [-c writers]\n"
	    "           [-m proc|thread] [-s full|normal] [-k keys]"
	    " [-v value-bytes]\n"
	    "           [-t busy-timeout-ms]\n"
	    "  Without -f, a temporary database is created and removed.\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	char tmpl[256];
	int c, i, temp = 0, failed = 0;
	size_t shsize;
	pthread_t *tids = NULL;
	pid_t *pids = NULL;
	uint64_t t0, t1, commits = 0, busy = 0;
	static uint64_t hist[NBUCKETS];
	double secs;

	while ((c = getopt(argc, argv, "f:d:c:m:s:k:v:t:h")) != -1) {
		switch (c) {
		case 'f': opt.path = optarg; break;
		case 'd': opt.seconds = atof(optarg); break;
		case 'c': opt.conc = atoi(optarg); break;
		case 'm':
			if (strcmp(optarg, "thread") == 0)
				opt.threads = 1;
			else if (strcmp(optarg, "proc") == 0)
				opt.threads = 0;
			else
				usage();
			break;
		case 's':
			if (strcmp(optarg, "full") && strcmp(optarg, "normal"))
				usage();
			opt.sync = optarg;
			break;
		case 'k': opt.keys = atoi(optarg); break;
		case 'v': opt.value_bytes = atoi(optarg); break;
		case 't': opt.busy_ms = atoi(optarg); break;
		default: usage();
		}
	}
	if (opt.seconds <= 0 || opt.conc < 1 || opt.conc > 1024 ||
	    opt.keys < 1 || opt.value_bytes < 1 || opt.busy_ms < 0)
		usage();
	if (opt.path == NULL) {
		const char *dir = getenv("TMPDIR");
		snprintf(tmpl, sizeof tmpl, "%s/sqlite_commit_loop.%d.sqlite",
		    dir && *dir ? dir : "/tmp", (int)getpid());
		opt.path = tmpl;
		temp = 1;
	}

	setup();

	shsize = sizeof *sh + (size_t)opt.conc * sizeof sh->w[0];
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (opt.threads) {
		tids = calloc((size_t)opt.conc, sizeof *tids);
		for (i = 0; i < opt.conc; i++)
			pthread_create(&tids[i], NULL, thread_main,
			    (void *)(intptr_t)i);
	} else {
		pids = calloc((size_t)opt.conc, sizeof *pids);
		for (i = 0; i < opt.conc; i++) {
			pids[i] = fork();
			if (pids[i] < 0) {
				perror("fork");
				return 1;
			}
			if (pids[i] == 0) {
				worker(i);
				_exit(0);
			}
		}
	}
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < opt.conc)
		usleep(1000);
	t0 = now_ns();
	sh->go = 1;
	usleep((useconds_t)(opt.seconds * 1e6));
	sh->stop = 1;
	t1 = now_ns();
	if (opt.threads) {
		for (i = 0; i < opt.conc; i++)
			pthread_join(tids[i], NULL);
	} else {
		for (i = 0; i < opt.conc; i++) {
			int st;
			waitpid(pids[i], &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failed = 1;
		}
	}
	secs = (double)(t1 - t0) / 1e9;

	for (i = 0; i < opt.conc; i++) {
		struct worker_stats *ws = &sh->w[i];
		int b;
		commits += ws->commits;
		busy += ws->busy;
		for (b = 0; b < NBUCKETS; b++)
			hist[b] += ws->hist[b];
		if (ws->failed) {
			fprintf(stderr, "sqlite_commit_loop: writer %d: %s\n",
			    i, ws->err);
			failed = 1;
		}
	}
	if (temp) {
		char side[300];
		unlink(opt.path);
		snprintf(side, sizeof side, "%s-wal", opt.path);
		unlink(side);
		snprintf(side, sizeof side, "%s-shm", opt.path);
		unlink(side);
	}
	printf("sqlite_commit_loop: %d writer %s, synchronous=%s, "
	    "%d keys, %d-byte values\n", opt.conc,
	    opt.threads ? "thread(s)" : "process(es)", opt.sync, opt.keys,
	    opt.value_bytes);
	printf("  %llu commits in %.2f s = %.1f commits/s, latency p50 %llu us, "
	    "p99 %llu us, busy retries %llu\n", (unsigned long long)commits,
	    secs, commits / secs,
	    (unsigned long long)bench_percentile(hist, commits, 50, 0),
	    (unsigned long long)bench_percentile(hist, commits, 99, 0),
	    (unsigned long long)busy);
	printf("RESULT sqlite_loop c=%d mode=%s sync=%s commits=%llu "
	    "seconds=%.3f commits_per_s=%.1f p50_us=%llu p99_us=%llu "
	    "busy=%llu\n", opt.conc, opt.threads ? "thread" : "proc",
	    opt.sync, (unsigned long long)commits, secs, commits / secs,
	    (unsigned long long)bench_percentile(hist, commits, 50, 0),
	    (unsigned long long)bench_percentile(hist, commits, 99, 0),
	    (unsigned long long)busy);
	return failed || commits == 0;
}
