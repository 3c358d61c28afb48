/*
 * group_commit: what committing atomic writes in batches buys, measured on
 * the storage engine itself (kv_atomic_write_batch, src/kv_sqlite.c), with
 * no server and no network around it.
 *
 * For each batch size given (default 1 4 16 32) it runs -d seconds of
 * batches of that many single-key atomic writes (a set of a random key of
 * -k, a value of -v bytes, as bench/sqlite_commit_loop does) on a fresh
 * database in -f's directory, with synchronous=FULL unless -s normal, and
 * prints atomic writes per second, transactions (fsyncs) per second and
 * the p50/p99 time of one batch, then one machine-readable line per size:
 *
 *   RESULT group_commit batch=16 sync=full writes=... seconds=...
 *       writes_per_s=... commits_per_s=... p50_us=... p99_us=...
 *
 * Built against a build tree by run.sh beside this file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "kv.h"

#define MAX_BATCH	256

static uint64_t
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	 x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct run_opts {
	const char	*dir;
	double		 seconds;
	int		 keys;
	int		 value_bytes;
	enum kv_sync	 sync;
	const char	*sync_name;
};

/* One batch size on a fresh database; returns 0 or -1. */
static int
run_size(const struct run_opts *o, int batch)
{
	struct kv_options	 kopt = { .sync = o->sync };
	struct kv_mutation	 m[MAX_BATCH];
	struct kv_write		 w[MAX_BATCH];
	const struct kv_write	*wp[MAX_BATCH];
	struct kv_write_result	 res[MAX_BATCH];
	enum kv_err		 errs[MAX_BATCH], err;
	char			 path[4096], errbuf[256], keybuf[MAX_BATCH][24];
	uint8_t			*value;
	uint64_t		*lat = NULL, start, t0, elapsed, writes = 0;
	size_t			 n = 0, cap = 0;
	struct arena		 a;
	struct kv_db		*db;

	snprintf(path, sizeof(path), "%s/group_commit_b%d.sqlite3", o->dir,
	    batch);
	unlink(path);
	if ((db = kv_open(path, &kopt, errbuf, sizeof(errbuf))) == NULL) {
		fprintf(stderr, "kv_open %s: %s\n", path, errbuf);
		return -1;
	}
	if ((value = calloc(1, (size_t)o->value_bytes)) == NULL)
		return -1;
	arena_init(&a, 64 * 1024);
	memset(m, 0, sizeof(m));
	memset(w, 0, sizeof(w));
	for (int i = 0; i < batch; i++) {
		m[i].type = KV_MUT_SET;
		m[i].value = (struct kv_bytes){ value, (size_t)o->value_bytes };
		m[i].encoding = KV_ENC_BYTES;
		w[i].mutations = &m[i];
		w[i].n_mutations = 1;
		wp[i] = &w[i];
	}
	start = now_us();
	do {
		for (int i = 0; i < batch; i++) {
			snprintf(keybuf[i], sizeof(keybuf[i]), "bench%d",
			    rand() % o->keys);
			m[i].key = (struct kv_bytes){ (uint8_t *)keybuf[i],
			    strlen(keybuf[i]) };
		}
		arena_reset(&a);
		t0 = now_us();
		err = kv_atomic_write_batch(db, wp, (size_t)batch,
		    kv_now_ms(), &a, res, errs);
		if (err != KV_OK || errs[0] != KV_OK || !res[0].committed) {
			fprintf(stderr, "batch failed: %s\n", kv_err_name(
			    err != KV_OK ? err : errs[0]));
			return -1;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			if ((lat = realloc(lat, cap * sizeof(*lat))) == NULL)
				return -1;
		}
		lat[n++] = now_us() - t0;
		writes += (uint64_t)batch;
	} while ((elapsed = now_us() - start) < (uint64_t)(o->seconds * 1e6));
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("batch %3d: %9.0f writes/s %8.0f commits/s  batch p50 %6llu us"
	    "  p99 %6llu us\n", batch, writes / (elapsed / 1e6),
	    n / (elapsed / 1e6), (unsigned long long)lat[n / 2],
	    (unsigned long long)lat[n * 99 / 100]);
	printf("RESULT group_commit batch=%d sync=%s writes=%llu seconds=%.3f"
	    " writes_per_s=%.0f commits_per_s=%.0f p50_us=%llu p99_us=%llu\n",
	    batch, o->sync_name, (unsigned long long)writes, elapsed / 1e6,
	    writes / (elapsed / 1e6), n / (elapsed / 1e6),
	    (unsigned long long)lat[n / 2],
	    (unsigned long long)lat[n * 99 / 100]);
	free(lat);
	free(value);
	arena_fini(&a);
	kv_close(db);
	unlink(path);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: group_commit [-f dir] [-d seconds] [-k keys]"
	    " [-v value_bytes] [-s full|normal] [batch ...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const int	 def_sizes[] = { 1, 4, 16, 32 };
	struct run_opts		 o = { ".", 5, 10000, 16, KV_SYNC_FULL,
	    "full" };
	int			 c;

	while ((c = getopt(argc, argv, "f:d:k:v:s:h")) != -1) {
		switch (c) {
		case 'f':
			o.dir = optarg;
			break;
		case 'd':
			o.seconds = atof(optarg);
			break;
		case 'k':
			o.keys = atoi(optarg);
			break;
		case 'v':
			o.value_bytes = atoi(optarg);
			break;
		case 's':
			if (strcmp(optarg, "normal") == 0)
				o.sync = KV_SYNC_NORMAL;
			else if (strcmp(optarg, "full") != 0)
				usage();
			o.sync_name = optarg;
			break;
		default:
			usage();
		}
	}
	if (o.keys < 1 || o.value_bytes < 1 || o.seconds <= 0)
		usage();
	srand(1);
	if (optind == argc) {
		for (size_t i = 0; i < sizeof(def_sizes) / sizeof(*def_sizes);
		    i++)
			if (run_size(&o, def_sizes[i]) != 0)
				return 1;
		return 0;
	}
	for (int i = optind; i < argc; i++) {
		int	 b = atoi(argv[i]);

		if (b < 1 || b > MAX_BATCH)
			usage();
		if (run_size(&o, b) != 0)
			return 1;
	}
	return 0;
}
