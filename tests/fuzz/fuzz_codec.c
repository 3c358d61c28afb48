/*
 * fuzz_codec.c: libFuzzer target for everything that parses an untrusted
 * request body: the three protobuf decoders with their limit checks, and
 * the V8 scalar decoder that sum mutations use. Any crash, leak or
 * sanitizer report is a bug. Build and run: tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "codec.h"
#include "v8scalar.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bit for bit: a NaN keeps its payload, -0 stays -0. */
static int
same_value(const struct v8s_value *a, const struct v8s_value *b)
{
	if (a->kind != b->kind)
		return 0;
	if (a->kind == V8S_NUMBER)
		return memcmp(&a->num, &b->num, sizeof(a->num)) == 0;
	return a->neg == b->neg && a->ndigits == b->ndigits &&
	    (a->ndigits == 0 || memcmp(a->digits, b->digits,
	    a->ndigits * sizeof(a->digits[0])) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena		 a;
	struct kv_range		*ranges;
	struct kv_write		 w;
	struct kv_bytes		*keys;
	struct v8s_value	 v, again;
	uint8_t			*out;
	size_t			 n, len;

	arena_init(&a, 4096);
	(void)codec_decode_snapshot_read(data, size, &a, &ranges, &n);
	arena_reset(&a);
	(void)codec_decode_atomic_write(data, size, 1700000000000LL, &a, &w);
	arena_reset(&a);
	(void)codec_decode_watch(data, size, &a, &keys, &n);
	arena_fini(&a);
	if (v8s_decode(data, size, &v) == V8S_OK) {
		/* What decodes must encode again, to the same value. */
		if ((out = malloc(v8s_encoded_max(&v))) == NULL ||
		    v8s_encode(&v, out, v8s_encoded_max(&v), &len) != V8S_OK ||
		    v8s_decode(out, len, &again) != V8S_OK ||
		    !same_value(&v, &again))
			abort();
		free(out);
		v8s_fini(&again);
		v8s_fini(&v);
	}
	return 0;
}
