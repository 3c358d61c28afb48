/*
 * codec: KV Connect protobuf bodies to and from the storage structs of
 * kv.h, with every protocol limit of limits.h checked on the way in, and
 * the JSON body of the metadata exchange.
 *
 * Decoding unpacks into the caller's arena (protobuf-c is given an arena
 * allocator), and the kv structs point into that unpacked message, so a
 * request is never copied. Encoded responses are arena-allocated too.
 * Everything lives until the arena is reset.
 */
#ifndef DENOKV_CODEC_H
#define DENOKV_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "err.h"
#include "kv.h"

struct codec_out {
	uint8_t	*p;
	size_t	 len;
};

enum kv_err	codec_decode_snapshot_read(const uint8_t *body, size_t len,
		    struct arena *, struct kv_range **ranges, size_t *n);
enum kv_err	codec_encode_snapshot_read(const struct kv_range_result *,
		    size_t n, struct arena *, struct codec_out *);

/* now_ms bounds enqueue deadlines (at most KV_MAX_QUEUE_DELAY_MS ahead). */
enum kv_err	codec_decode_atomic_write(const uint8_t *body, size_t len,
		    int64_t now_ms, struct arena *, struct kv_write *);
enum kv_err	codec_encode_atomic_write(const struct kv_write_result *,
		    struct arena *, struct codec_out *);

enum kv_err	codec_decode_watch(const uint8_t *body, size_t len,
		    struct arena *, struct kv_bytes **keys, size_t *n);

/*
 * A WatchOutput frame: every key marked changed, with its entry or none
 * (entries[i] NULL: the key is absent), prefixed by its length as a
 * 32-bit little-endian integer, as the watch stream carries it.
 */
enum kv_err	codec_encode_watch_frame(const struct kv_entry *const *entries,
		    size_t n, struct arena *, struct codec_out *);

/*
 * The metadata exchange's request body, {"supportedVersions": [...]}:
 * the highest protocol version offered that this server speaks (3, else
 * 2) in *version, or why not: KV_ERR_MIN_PROTOCOL_VERSION for no body (a
 * client from before version 2), KV_ERR_METADATA_BODY for anything but an
 * object with an array of integers there, KV_ERR_NO_PROTOCOL_VERSION if
 * neither 2 nor 3 is offered. *queues is 1 when the client asks for the
 * queue extension ("denokvFcgiQueues": 1, docs/queues.md), else 0.
 */
enum kv_err	codec_decode_metadata_request(const uint8_t *body, size_t len,
		    int *version, int *queues);

#endif
