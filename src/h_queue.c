/*
 * h_queue.c: queue delivery, POST <base>/v2/queue/{lease,finish,renew}
 * (docs/queues.md). Same path as every handler: decode and validate
 * (queue.c), call storage (kv_queue.c), encode and reply. A lease that
 * finds nothing due and may wait is handed to this worker's hub, which
 * answers it when messages become due or the wait is over; the worker goes
 * straight back to accepting.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers.h"
#include "http.h"
#include "queue.h"

/* Sends a body made by queue.c and frees it. */
static enum kv_err
reply_json(struct request *rq, char *text)
{
	if (text == NULL)
		return KV_ERR_NOMEM;
	(void)http_reply(rq->conn, 200, "application/json", "", text,
	    strlen(text));
	free(text);
	return KV_OK;
}

enum kv_err
h_queue_lease(struct request *rq)
{
	struct queue_lease_req	 req;
	struct kv_queue_msg	*msgs;
	struct watch_hub	*hub;
	size_t			 n = 0, len = 0;
	enum kv_err		 err;
	int			 fd, request_id;

	if ((err = queue_decode_lease(rq->body, rq->bodylen, &req)) != KV_OK)
		return err;
	if (kv_is_read_only(rq->db))
		return KV_ERR_READ_ONLY;
	if ((msgs = arena_alloc(rq->arena, req.max * sizeof(*msgs))) == NULL)
		return KV_ERR_NOMEM;
	if ((err = kv_queue_lease(rq->db, kv_now_ms(), req.max,
	    req.lease_ms, rq->arena, msgs, &n)) != KV_OK)
		return err;
	if (n > 0 || req.wait_ms == 0)
		return reply_json(rq, queue_encode_lease(msgs, n, &len));
	/* Without a hub, a 503 makes the client back off, not spin. */
	if (dbreg_hubs_full(&rq->srv->reg) ||
	    (hub = dbreg_hub(&rq->srv->reg, rq->dbe)) == NULL ||
	    watch_hub_polls_full(hub))
		return KV_ERR_TOO_MANY_POLLS;
	if (http_detach_stream(rq->conn, "application/json", &fd,
	    &request_id) != 0)
		return KV_OK;	/* the client is gone; nothing to answer */
	if (watch_hub_adopt_poll(hub, fd, request_id, req.max,
	    req.wait_ms, req.lease_ms) != KV_OK)
		close(fd);	/* headers are out: the client polls again */
	return KV_OK;
}

enum kv_err
h_queue_finish(struct request *rq)
{
	struct queue_finish_req	 req;
	size_t			 len = 0;
	enum kv_err		 err;

	if ((err = queue_decode_finish(rq->body, rq->bodylen, rq->arena,
	    &req)) != KV_OK)
		return err;
	if ((err = kv_queue_finish_many(rq->db, req.o, req.n,
	    kv_now_ms())) != KV_OK)
		return err;
	if (req.batch)
		return reply_json(rq, queue_encode_finish(req.o, req.n, &len));
	if (req.o[0].result != KV_OK)
		return req.o[0].result;
	(void)http_reply(rq->conn, 200, "application/json", "", "{}", 2);
	return KV_OK;
}

enum kv_err
h_queue_renew(struct request *rq)
{
	struct queue_renew_req	 req;
	int64_t			 until;
	size_t			 len = 0;
	enum kv_err		 err;

	if ((err = queue_decode_renew(rq->body, rq->bodylen, rq->arena,
	    &req)) != KV_OK)
		return err;
	if ((err = kv_queue_renew(rq->db, req.id, req.until,
	    req.lease_ms, kv_now_ms(), &until)) != KV_OK)
		return err;
	return reply_json(rq, queue_encode_renew(req.id, until, &len));
}
