/*
 * h_watch.c: POST <base>/v2/watch. The request is validated like every
 * other (at most ten keys, each a valid key), then the response headers go
 * out and the connection is handed to this worker's watch hub for the
 * database (started on its first watch, dbreg.h), which
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
	struct watch_hub *hub;
	enum kv_err	 err;
	int		 fd, request_id;

	if ((err = codec_decode_watch(rq->body, rq->bodylen, rq->arena, &keys,
	    &n)) != KV_OK)
		return err;
	/*
	 * No room in this worker, or no hub (none can start, or too many
	 * run): 503, the client retries (perhaps on another worker).
	 */
	if (dbreg_hubs_full(&rq->srv->reg) ||
	    (hub = dbreg_hub(&rq->srv->reg, rq->dbe)) == NULL)
		return KV_ERR_TOO_MANY_WATCHES;
	/* Limits are told before the headers go out, with their status. */
	if ((err = watch_hub_reserve(hub)) != KV_OK)
		return err;
	if (http_detach_stream(rq->conn, "application/octet-stream", &fd,
	    &request_id) != 0) {
		watch_hub_unreserve(hub);
		return KV_OK;	/* the client is gone; nothing to answer */
	}
	if (watch_hub_adopt(hub, fd, request_id, keys, n) != KV_OK)
		close(fd);	/* headers are out: the client reconnects */
	return KV_OK;
}
