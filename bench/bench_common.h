/*
 * bench_common.h: what the SQLite benchmark loops share: a log-linear
 * latency histogram, percentiles from it, the key encoding of the Deno KV
 * client for ["bench", n], and denokv's table layout after its three
 * migrations. Included by sqlite_commit_loop.c and fairness/lock_loop.h;
 * everything is static.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Histogram: values below SUB exactly, then SUB linear buckets per power
 * of two (about 1.6% resolution), up to 2^64.
 */
#define SUB_BITS	6
#define SUB		(1 << SUB_BITS)
#define NBUCKETS	(SUB * 59)

static int
bench_bucket_of(uint64_t v)
{
	int	 msb, shift;

	if (v < SUB)
		return (int)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - SUB_BITS;
	if ((shift + 1) * SUB + SUB > NBUCKETS)
		return NBUCKETS - 1;
	return (shift + 1) * SUB + (int)((v >> shift) & (SUB - 1));
}

/* The smallest and the largest value a bucket holds. */
static uint64_t
bench_bucket_low(int idx)
{
	int	 shift;

	if (idx < SUB)
		return (uint64_t)idx;
	shift = idx / SUB - 1;
	return ((uint64_t)(SUB + idx % SUB)) << shift;
}

static uint64_t
bench_bucket_top(int idx)
{
	int	 shift;

	if (idx < SUB)
		return (uint64_t)idx;
	shift = idx / SUB - 1;
	return (((uint64_t)(SUB + idx % SUB) + 1) << shift) - 1;
}

/* The p-th percentile: the low or the top end of the bucket it falls in. */
static uint64_t
bench_percentile(const uint64_t *hist, uint64_t total, double p, int top)
{
	uint64_t	 want = (uint64_t)ceil((double)total * p / 100.0), seen = 0;

	if (want == 0)
		want = 1;
	for (int i = 0; i < NBUCKETS; i++) {
		seen += hist[i];
		if (seen >= want)
			return top ? bench_bucket_top(i) : bench_bucket_low(i);
	}
	return 0;
}

/* ["bench", n] as the Deno KV client encodes it: a string, then a double. */
static size_t
bench_encode_key(uint8_t *out, int n)
{
	static const char	 prefix[] = "bench";
	double			 d = (double)n;
	uint64_t		 bits;
	size_t			 len = 0;

	out[len++] = 0x02;
	memcpy(out + len, prefix, sizeof(prefix) - 1);
	len += sizeof(prefix) - 1;
	out[len++] = 0x00;
	out[len++] = 0x21;
	memcpy(&bits, &d, sizeof(bits));
	bits = d >= 0 ? bits ^ (UINT64_C(1) << 63) : ~bits;
	for (int i = 7; i >= 0; i--)
		out[len++] = (uint8_t)(bits >> (i * 8));
	return len;
}

/* denokv's tables after its three migrations, in WAL mode. */
static const char bench_schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS migration_state("
    "  k integer not null primary key, version integer not null);"
    "CREATE TABLE IF NOT EXISTS data_version ("
    "  k integer primary key, version integer not null,"
    "  seq integer not null default 0);"
    "INSERT OR IGNORE INTO data_version (k, version) VALUES (0, 0);"
    "CREATE TABLE IF NOT EXISTS kv ("
    "  k blob primary key, v blob not null,"
    "  v_encoding integer not null, version integer not null,"
    "  seq integer not null default 0,"
    "  expiration_ms integer not null default -1) without rowid;"
    "CREATE INDEX IF NOT EXISTS kv_expiration_ms_idx"
    "  ON kv (expiration_ms);"
    "REPLACE INTO migration_state (k, version) VALUES (0, 3);";

#endif
