/*
 * h_watch.c: POST <base>/v2/watch. The request is validated like every
 * other, so a client learns about a bad watch precisely; streaming change
 * notifications are not served yet, which is a clear 4xx rather than a
 * 5xx that KV Connect clients would retry for ever.
 */
#include "codec.h"
#include "handlers.h"

enum kv_err
h_watch(struct request *rq)
{
	struct kv_bytes	*keys;
	size_t		 n;
	enum kv_err	 err;

	if ((err = codec_decode_watch(rq->body, rq->bodylen, rq->arena, &keys,
	    &n)) != KV_OK)
		return err;
	return KV_ERR_WATCH_UNSUPPORTED;
}
