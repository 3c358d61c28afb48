/*
 * h_watch.c: POST <base>/v2/watch. The request is validated like every
 * other (at most ten keys, each a valid key), then the response headers go
 * out and the connection is handed to this worker's watch hub, which
 * streams the frames; the worker goes straight back to accepting.
 */
#include <unistd.h>

#include "codec.h"
#include "handlers.h"
#include "http.h"
#include "kv_limits.h"

enum kv_err
h_watch(struct request *rq)
{
	struct kv_bytes	*keys;
	size_t		 n;
	enum kv_err	 err;
	int		 fd, request_id;

	if ((err = codec_decode_watch(rq->body, rq->bodylen, rq->arena, &keys,
	    &n)) != KV_OK)
		return err;
	if (rq->srv->hub == NULL)
		return KV_ERR_INTERNAL;
	if (watch_hub_full(rq->srv->hub))
		return KV_ERR_TOO_MANY_WATCHES;
	if (http_detach_stream(rq->fcgi, "application/octet-stream", &fd,
	    &request_id) != 0)
		return KV_OK;	/* the client is gone; nothing to answer */
	if (watch_hub_adopt(rq->srv->hub, fd, request_id, keys, n) != KV_OK)
		close(fd);	/* headers are out: the client reconnects */
	return KV_OK;
}
