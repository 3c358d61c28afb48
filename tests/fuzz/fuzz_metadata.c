/*
 * fuzz_metadata.c: libFuzzer target for the metadata exchange's JSON
 * request body ({"supportedVersions": [...]}), the one body a client may
 * send before it has a data-path token. Any crash, leak or sanitizer report
 * is a bug; so is an accepted body that yields a version other than 2 or 3,
 * or a queue-extension answer other than 0 or 1.
 * Build and run: tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int	 version = 0, queues = -1;

	if (codec_decode_metadata_request(data, size, &version, &queues) ==
	    KV_OK && ((version != 2 && version != 3) ||
	    (queues != 0 && queues != 1)))
		__builtin_trap();
	return 0;
}
