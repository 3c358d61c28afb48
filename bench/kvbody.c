/*
 * kvbody: builds and decodes KV Connect data path bodies for the benchmarks,
 * with protobuf-c code generated from proto/datapath.proto (so the bodies
 * follow the very schema the server compiles).
 *
 * Keys are [PREFIX, n] encoded as the Deno KV client encodes them: a string
 * part (0x02, UTF-8 with 0x00 escaped as 0x00 0xFF, then 0x00) and a number
 * part (0x21, then the big-endian IEEE double with the sign bit flipped for
 * n >= 0). The value of key n is VALSIZE bytes: FILL repeated, with the
 * decimal n written over its tail (e.g. "vvvvvvvvvvvvvv42").
 *
 *   kvbody read  [-b] PREFIX FIRST COUNT
 *       SnapshotRead bodies, one ReadRange each: start = key, end = key
 *       followed by 0x00, limit 1. One hex line per body, or with -b the
 *       raw bytes of the body (COUNT must then be 1).
 *   kvbody write [-b] PREFIX FIRST COUNT VALSIZE FILL
 *       AtomicWrite bodies, one M_SET mutation each, value encoding
 *       VE_BYTES. Hex lines, or raw with -b.
 *   kvbody seed  PREFIX COUNT BATCH VALSIZE FILL DIR
 *       Writes DIR/seed-0000.pb ...: AtomicWrite bodies that set keys
 *       0..COUNT-1, BATCH mutations per body. Prints the file names.
 *   kvbody decode-read  < body     SnapshotReadOutput, one line per entry
 *   kvbody decode-write < body     AtomicWriteOutput
 *   kvbody key PREFIX N            the encoded key, in hex
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath.pb-c.h"

#define MAX_KEY 256

typedef Com__Deno__Kv__Datapath__SnapshotRead SnapshotRead;
typedef Com__Deno__Kv__Datapath__ReadRange ReadRange;
typedef Com__Deno__Kv__Datapath__SnapshotReadOutput SnapshotReadOutput;
typedef Com__Deno__Kv__Datapath__AtomicWrite AtomicWrite;
typedef Com__Deno__Kv__Datapath__AtomicWriteOutput AtomicWriteOutput;
typedef Com__Deno__Kv__Datapath__Mutation Mutation;
typedef Com__Deno__Kv__Datapath__KvValue KvValue;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: kvbody read  [-b] PREFIX FIRST COUNT\n"
	    "       kvbody write [-b] PREFIX FIRST COUNT VALSIZE FILL\n"
	    "       kvbody seed  PREFIX COUNT BATCH VALSIZE FILL DIR\n"
	    "       kvbody decode-read  < body\n"
	    "       kvbody decode-write < body\n"
	    "       kvbody key PREFIX N\n");
	exit(2);
}

static long
num(const char *s, long min, long max)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "kvbody: bad number %s\n", s);
		exit(2);
	}
	return v;
}

static size_t
encode_key(uint8_t *out, const char *prefix, long n)
{
	double d = (double)n;
	uint64_t bits;
	size_t len = 0;
	const char *p;
	int i;

	out[len++] = 0x02;
	for (p = prefix; *p; p++) {
		if (len + 12 >= MAX_KEY) {
			fprintf(stderr, "kvbody: prefix too long\n");
			exit(2);
		}
		/* A C string holds no 0x00, so nothing needs escaping. */
		out[len++] = (uint8_t)*p;
	}
	out[len++] = 0x00;
	out[len++] = 0x21;
	memcpy(&bits, &d, sizeof bits);
	if (d >= 0)
		bits ^= UINT64_C(1) << 63;
	else
		bits = ~bits;
	for (i = 7; i >= 0; i--)
		out[len++] = (uint8_t)(bits >> (i * 8));
	return len;
}

static void
make_value(uint8_t *out, size_t size, char fill, long n)
{
	char digits[32];
	size_t dl = (size_t)snprintf(digits, sizeof digits, "%ld", n);

	memset(out, fill, size);
	if (dl > size)
		memcpy(out, digits + (dl - size), size);
	else
		memcpy(out + (size - dl), digits, dl);
}

static void
put_hex(FILE *f, const uint8_t *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		fputc(hx[p[i] >> 4], f);
		fputc(hx[p[i] & 15], f);
	}
}

static void
emit(const uint8_t *buf, size_t len, int raw)
{
	if (raw) {
		fwrite(buf, 1, len, stdout);
	} else {
		put_hex(stdout, buf, len);
		fputc('\n', stdout);
	}
}

static uint8_t *
pack_read(const char *prefix, long n, size_t *len)
{
	SnapshotRead sr = COM__DENO__KV__DATAPATH__SNAPSHOT_READ__INIT;
	ReadRange rr = COM__DENO__KV__DATAPATH__READ_RANGE__INIT;
	ReadRange *rrs[1] = { &rr };
	uint8_t start[MAX_KEY], end[MAX_KEY + 1], *buf;
	size_t klen = encode_key(start, prefix, n);

	memcpy(end, start, klen);
	end[klen] = 0x00;
	rr.start.data = start;
	rr.start.len = klen;
	rr.end.data = end;
	rr.end.len = klen + 1;
	rr.limit = 1;
	sr.n_ranges = 1;
	sr.ranges = rrs;
	*len = com__deno__kv__datapath__snapshot_read__get_packed_size(&sr);
	buf = malloc(*len);
	com__deno__kv__datapath__snapshot_read__pack(&sr, buf);
	return buf;
}

/* An AtomicWrite setting keys first .. first+count-1. */
static uint8_t *
pack_write(const char *prefix, long first, long count, size_t valsize,
    char fill, size_t *len)
{
	AtomicWrite aw = COM__DENO__KV__DATAPATH__ATOMIC_WRITE__INIT;
	Mutation *ms = calloc((size_t)count, sizeof *ms);
	Mutation **mp = calloc((size_t)count, sizeof *mp);
	KvValue *vs = calloc((size_t)count, sizeof *vs);
	uint8_t *keys = malloc((size_t)count * MAX_KEY);
	uint8_t *vals = malloc((size_t)count * valsize);
	uint8_t *buf;
	long i;

	if (!ms || !mp || !vs || !keys || !vals) {
		fprintf(stderr, "kvbody: out of memory\n");
		exit(1);
	}
	for (i = 0; i < count; i++) {
		Mutation m = COM__DENO__KV__DATAPATH__MUTATION__INIT;
		KvValue v = COM__DENO__KV__DATAPATH__KV_VALUE__INIT;
		uint8_t *k = keys + i * MAX_KEY, *val = vals + i * valsize;

		make_value(val, valsize, fill, first + i);
		v.data.data = val;
		v.data.len = valsize;
		v.encoding = COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_BYTES;
		vs[i] = v;
		m.key.len = encode_key(k, prefix, first + i);
		m.key.data = k;
		m.value = &vs[i];
		m.mutation_type = COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET;
		ms[i] = m;
		mp[i] = &ms[i];
	}
	aw.n_mutations = (size_t)count;
	aw.mutations = mp;
	*len = com__deno__kv__datapath__atomic_write__get_packed_size(&aw);
	buf = malloc(*len);
	com__deno__kv__datapath__atomic_write__pack(&aw, buf);
	free(ms);
	free(mp);
	free(vs);
	free(keys);
	free(vals);
	return buf;
}

static uint8_t *
slurp(size_t *len)
{
	size_t cap = 65536, n = 0, got;
	uint8_t *buf = malloc(cap);

	while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
		n += got;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	*len = n;
	return buf;
}

/* Printable bytes as text, anything else as hex. */
static void
put_bytes(const ProtobufCBinaryData *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if (b->data[i] < 0x20 || b->data[i] > 0x7e)
			break;
	if (i == b->len && b->len > 0)
		printf("\"%.*s\"", (int)b->len, (const char *)b->data);
	else
		put_hex(stdout, b->data, b->len);
}

static int
decode_read(void)
{
	size_t len, i, j, total = 0;
	uint8_t *buf = slurp(&len);
	SnapshotReadOutput *o =
	    com__deno__kv__datapath__snapshot_read_output__unpack(NULL, len,
	    buf);

	if (o == NULL) {
		fprintf(stderr, "kvbody: not a SnapshotReadOutput (%zu bytes)\n",
		    len);
		free(buf);
		return 1;
	}
	for (i = 0; i < o->n_ranges; i++)
		total += o->ranges[i]->n_values;
	printf("status=%d read_disabled=%d strongly_consistent=%d ranges=%zu "
	    "entries=%zu\n", (int)o->status, (int)o->read_disabled,
	    (int)o->read_is_strongly_consistent, o->n_ranges, total);
	for (i = 0; i < o->n_ranges; i++) {
		for (j = 0; j < o->ranges[i]->n_values; j++) {
			const Com__Deno__Kv__Datapath__KvEntry *e =
			    o->ranges[i]->values[j];
			printf("entry range=%zu key=", i);
			put_hex(stdout, e->key.data, e->key.len);
			printf(" encoding=%d value=", (int)e->encoding);
			put_bytes(&e->value);
			printf(" versionstamp=");
			put_hex(stdout, e->versionstamp.data,
			    e->versionstamp.len);
			printf("\n");
		}
	}
	com__deno__kv__datapath__snapshot_read_output__free_unpacked(o, NULL);
	free(buf);
	return 0;
}

static int
decode_write(void)
{
	size_t len, i;
	uint8_t *buf = slurp(&len);
	AtomicWriteOutput *o =
	    com__deno__kv__datapath__atomic_write_output__unpack(NULL, len,
	    buf);

	if (o == NULL) {
		fprintf(stderr, "kvbody: not an AtomicWriteOutput (%zu bytes)\n",
		    len);
		free(buf);
		return 1;
	}
	printf("status=%d versionstamp=", (int)o->status);
	put_hex(stdout, o->versionstamp.data, o->versionstamp.len);
	printf(" failed_checks=");
	for (i = 0; i < o->n_failed_checks; i++)
		printf("%s%u", i ? "," : "", o->failed_checks[i]);
	printf("\n");
	com__deno__kv__datapath__atomic_write_output__free_unpacked(o, NULL);
	free(buf);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cmd;
	int raw = 0;
	uint8_t *buf;
	size_t len;
	long i;

	if (argc < 2)
		usage();
	cmd = argv[1];
	argv += 2;
	argc -= 2;
	if (argc > 0 && strcmp(argv[0], "-b") == 0) {
		raw = 1;
		argv++;
		argc--;
	}

	if (strcmp(cmd, "read") == 0 && argc == 3) {
		long first = num(argv[1], 0, 1L << 50);
		long count = num(argv[2], 1, 100000000);
		if (raw && count != 1)
			usage();
		for (i = 0; i < count; i++) {
			buf = pack_read(argv[0], first + i, &len);
			emit(buf, len, raw);
			free(buf);
		}
	} else if (strcmp(cmd, "write") == 0 && argc == 5) {
		long first = num(argv[1], 0, 1L << 50);
		long count = num(argv[2], 1, 100000000);
		size_t valsize = (size_t)num(argv[3], 1, 65536);
		if (raw && count != 1)
			usage();
		for (i = 0; i < count; i++) {
			buf = pack_write(argv[0], first + i, 1, valsize,
			    argv[4][0] ? argv[4][0] : 'v', &len);
			emit(buf, len, raw);
			free(buf);
		}
	} else if (strcmp(cmd, "seed") == 0 && argc == 6 && !raw) {
		long count = num(argv[1], 1, 100000000);
		long batch = num(argv[2], 1, 1000);
		size_t valsize = (size_t)num(argv[3], 1, 65536);
		char path[4096];
		long part = 0;
		for (i = 0; i < count; i += batch, part++) {
			long n = count - i < batch ? count - i : batch;
			FILE *f;
			snprintf(path, sizeof path, "%s/seed-%04ld.pb", argv[5],
			    part);
			buf = pack_write(argv[0], i, n, valsize,
			    argv[4][0] ? argv[4][0] : 'v', &len);
			f = fopen(path, "wb");
			if (f == NULL || fwrite(buf, 1, len, f) != len ||
			    fclose(f) != 0) {
				perror(path);
				return 1;
			}
			printf("%s\n", path);
			free(buf);
		}
	} else if (strcmp(cmd, "decode-read") == 0 && argc == 0) {
		return decode_read();
	} else if (strcmp(cmd, "decode-write") == 0 && argc == 0) {
		return decode_write();
	} else if (strcmp(cmd, "key") == 0 && argc == 2 && !raw) {
		uint8_t k[MAX_KEY];
		len = encode_key(k, argv[0], num(argv[1], 0, 1L << 50));
		put_hex(stdout, k, len);
		printf("\n");
	} else {
		usage();
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
