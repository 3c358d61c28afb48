/*
 * fuzz_codec.c: libFuzzer target for everything that parses an untrusted
 * request body: the three protobuf decoders with their limit checks, and
 * the V8 scalar decoder that sum mutations use. Any crash, leak or
 * sanitizer report is a bug, and so is a V8 scalar that does not survive
 * decode -> encode -> decode unchanged. Build and run: tests/fuzz/run.sh.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "codec.h"
#include "v8scalar.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
same_scalar(const struct v8s_value *a, const struct v8s_value *b)
{
	if (a->kind != b->kind)
		return 0;
	if (a->kind == V8S_NUMBER)
		return (isnan(a->num) && isnan(b->num)) ||
		    memcmp(&a->num, &b->num, sizeof(a->num)) == 0;
	return a->neg == b->neg && a->ndigits == b->ndigits &&
	    (a->ndigits == 0 || memcmp(a->digits, b->digits,
	    a->ndigits * sizeof(a->digits[0])) == 0);
}

/* What decodes must encode, and decode again to the same value. */
static void
v8_round_trip(const uint8_t *data, size_t size)
{
	struct v8s_value	 v, again;
	uint8_t			*out;
	size_t			 cap, len;

	if (v8s_decode(data, size, &v) != V8S_OK)
		return;
	cap = v8s_encoded_max(&v);
	if ((out = malloc(cap)) == NULL)
		abort();
	if (v8s_encode(&v, out, cap, &len) != V8S_OK || len > cap)
		__builtin_trap();
	if (v8s_decode(out, len, &again) != V8S_OK)
		__builtin_trap();
	if (!same_scalar(&v, &again))
		__builtin_trap();
	v8s_fini(&again);
	v8s_fini(&v);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena		 a;
	struct kv_range		*ranges;
	struct kv_write		 w;
	struct kv_bytes		*keys;
	size_t			 n;

	arena_init(&a, 4096);
	(void)codec_decode_snapshot_read(data, size, &a, &ranges, &n);
	arena_reset(&a);
	(void)codec_decode_atomic_write(data, size, 1700000000000LL, &a, &w);
	arena_reset(&a);
	(void)codec_decode_watch(data, size, &a, &keys, &n);
	arena_fini(&a);
	v8_round_trip(data, size);
	return 0;
}
