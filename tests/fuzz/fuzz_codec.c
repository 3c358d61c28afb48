/*
 * fuzz_codec.c: libFuzzer target for everything that parses an untrusted
 * request body: the three protobuf decoders with their limit checks, and
 * the V8 scalar decoder that sum mutations use. Any crash, leak or
 * sanitizer report is a bug. Build and run: tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "codec.h"
#include "v8scalar.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena		 a;
	struct kv_range		*ranges;
	struct kv_write		 w;
	struct kv_bytes		*keys;
	struct v8s_value	 v;
	uint8_t			 out[256];
	size_t			 n, len;

	arena_init(&a, 4096);
	(void)codec_decode_snapshot_read(data, size, &a, &ranges, &n);
	arena_reset(&a);
	(void)codec_decode_atomic_write(data, size, 1700000000000LL, &a, &w);
	arena_reset(&a);
	(void)codec_decode_watch(data, size, &a, &keys, &n);
	arena_fini(&a);
	if (v8s_decode(data, size, &v) == V8S_OK) {
		/* What decodes must encode again. */
		(void)v8s_encode(&v, out, sizeof(out), &len);
		v8s_fini(&v);
	}
	return 0;
}
