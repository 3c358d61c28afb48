/*
 * group_commit: what committing atomic writes in batches buys, measured on
 * the storage engine itself (kv_atomic_write_batch, src/kv_sqlite.c), with
 * no server and no network around it.
 *
 * For each batch size given (default 1 4 16 32) it runs batches of that
 * many single-key atomic writes (a set of a random key of -k, a value of
 * -v bytes, as bench/sqlite_commit_loop does) on a fresh database of its
 * own in -f's directory, with synchronous=FULL unless -s normal: -d
 * seconds per size in all (default 10), spread over -r rounds (default
 * 10) that take the sizes in turn. It prints atomic writes per second,
 * transactions (fsyncs) per second and the p50/p99 time of one batch,
 * then one machine-readable line per size:
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
	int		 rounds;
	int		 keys;
	int		 value_bytes;
	enum kv_sync	 sync;
	const char	*sync_name;
};

/* One batch size: its database, its writes, what it measured so far. */
struct size_run {
	int			 batch;
	char			 path[4096];
	struct kv_db		*db;
	struct arena		 a;
	struct kv_mutation	 m[MAX_BATCH];
	struct kv_write		 w[MAX_BATCH];
	const struct kv_write	*wp[MAX_BATCH];
	char			 key[MAX_BATCH][24];
	uint64_t		*lat;		/* per batch, microseconds */
	size_t			 n, cap;
	uint64_t		 writes, elapsed_us;
};

static int
size_open(const struct run_opts *o, struct size_run *r, int batch,
    const uint8_t *value)
{
	struct kv_options	 kopt = { .sync = o->sync };
	char			 errbuf[256];

	memset(r, 0, sizeof(*r));
	r->batch = batch;
	snprintf(r->path, sizeof(r->path), "%s/group_commit_b%d.sqlite3",
	    o->dir, batch);
	unlink(r->path);
	if ((r->db = kv_open(r->path, &kopt, errbuf, sizeof(errbuf))) ==
	    NULL) {
		fprintf(stderr, "kv_open %s: %s\n", r->path, errbuf);
		return -1;
	}
	arena_init(&r->a, 64 * 1024);
	for (int i = 0; i < batch; i++) {
		r->m[i].type = KV_MUT_SET;
		r->m[i].value = (struct kv_bytes){ value,
		    (size_t)o->value_bytes };
		r->m[i].encoding = KV_ENC_BYTES;
		r->w[i].mutations = &r->m[i];
		r->w[i].n_mutations = 1;
		r->wp[i] = &r->w[i];
	}
	return 0;
}

/* Runs batches for `seconds`, adding to r's counts; 0 or -1. */
static int
size_run_for(const struct run_opts *o, struct size_run *r, double seconds)
{
	struct kv_write_result	 res[MAX_BATCH];
	enum kv_err		 errs[MAX_BATCH], err;
	uint64_t		 start = now_us(), t0, now;

	do {
		for (int i = 0; i < r->batch; i++) {
			snprintf(r->key[i], sizeof(r->key[i]), "bench%d",
			    rand() % o->keys);
			r->m[i].key = (struct kv_bytes){ (uint8_t *)r->key[i],
			    strlen(r->key[i]) };
		}
		arena_reset(&r->a);
		t0 = now_us();
		err = kv_atomic_write_batch(r->db, r->wp, (size_t)r->batch,
		    kv_now_ms(), &r->a, res, errs);
		if (err != KV_OK || errs[0] != KV_OK || !res[0].committed) {
			fprintf(stderr, "batch failed: %s\n", kv_err_name(
			    err != KV_OK ? err : errs[0]));
			return -1;
		}
		now = now_us();
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 4096;
			if ((r->lat = realloc(r->lat, r->cap *
			    sizeof(*r->lat))) == NULL)
				return -1;
		}
		r->lat[r->n++] = now - t0;
		r->writes += (uint64_t)r->batch;
	} while (now - start < (uint64_t)(seconds * 1e6));
	r->elapsed_us += now - start;
	return 0;
}

static void
size_report(const struct run_opts *o, struct size_run *r)
{
	double	 secs = r->elapsed_us / 1e6;

	qsort(r->lat, r->n, sizeof(*r->lat), cmp_u64);
	printf("batch %3d: %9.0f writes/s %8.0f commits/s  batch p50 %6llu us"
	    "  p99 %6llu us\n", r->batch, r->writes / secs, r->n / secs,
	    (unsigned long long)r->lat[r->n / 2],
	    (unsigned long long)r->lat[r->n * 99 / 100]);
	printf("RESULT group_commit batch=%d sync=%s writes=%llu seconds=%.3f"
	    " writes_per_s=%.0f commits_per_s=%.0f p50_us=%llu p99_us=%llu\n",
	    r->batch, o->sync_name, (unsigned long long)r->writes, secs,
	    r->writes / secs, r->n / secs, (unsigned long long)r->lat[r->n / 2],
	    (unsigned long long)r->lat[r->n * 99 / 100]);
}

static void
size_close(struct size_run *r)
{
	free(r->lat);
	arena_fini(&r->a);
	kv_close(r->db);
	unlink(r->path);
}

/*
 * Every size gets -d seconds in all, in -r rounds that take the sizes in
 * turn, so that a change of load on a shared machine falls on all sizes
 * alike.
 */
static int
run_all(const struct run_opts *o, const int *sizes, int n)
{
	struct size_run	*runs;
	uint8_t		*value;
	int		 rc = -1, opened = 0;

	if ((runs = calloc((size_t)n, sizeof(*runs))) == NULL ||
	    (value = calloc(1, (size_t)o->value_bytes)) == NULL)
		return -1;
	for (; opened < n; opened++)
		if (size_open(o, &runs[opened], sizes[opened], value) != 0)
			goto end;
	for (int round = 0; round < o->rounds; round++)
		for (int i = 0; i < n; i++)
			if (size_run_for(o, &runs[i], o->seconds /
			    o->rounds) != 0)
				goto end;
	for (int i = 0; i < n; i++)
		size_report(o, &runs[i]);
	rc = 0;
end:
	for (int i = 0; i < opened; i++)
		size_close(&runs[i]);
	free(runs);
	free(value);
	return rc;
}

static void
usage(void)
{
	fprintf(stderr, "usage: group_commit [-f dir] [-d seconds] [-r rounds]"
	    " [-k keys] [-v value_bytes] [-s full|normal] [batch ...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const int	 def_sizes[] = { 1, 4, 16, 32 };
	struct run_opts		 o = { ".", 10, 10, 10000, 16, KV_SYNC_FULL,
	    "full" };
	int			 sizes[64], n = 0, c;

	while ((c = getopt(argc, argv, "f:d:r:k:v:s:h")) != -1) {
		switch (c) {
		case 'f':
			o.dir = optarg;
			break;
		case 'd':
			o.seconds = atof(optarg);
			break;
		case 'r':
			o.rounds = atoi(optarg);
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
	if (o.keys < 1 || o.value_bytes < 1 || o.seconds <= 0 ||
	    o.rounds < 1)
		usage();
	for (int i = optind; i < argc && n < 64; i++) {
		if ((sizes[n] = atoi(argv[i])) < 1 || sizes[n] > MAX_BATCH)
			usage();
		n++;
	}
	if (n == 0)
		for (; n < (int)(sizeof(def_sizes) / sizeof(*def_sizes)); n++)
			sizes[n] = def_sizes[n];
	srand(1);
	return run_all(&o, sizes, n) == 0 ? 0 : 1;
}
