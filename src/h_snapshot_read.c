/*
 * h_snapshot_read.c: POST <base>/v2/snapshot_read. Up to ten ranges, read
 * in one transaction, so every range reflects the same database state.
 */
#include "codec.h"
#include "handlers.h"

enum kv_err
h_snapshot_read(struct request *rq)
{
	struct kv_range		*ranges;
	struct kv_range_result	*results;
	struct codec_out	 out;
	size_t			 n;
	enum kv_err		 err;

	if ((err = codec_decode_snapshot_read(rq->body, rq->bodylen,
	    rq->arena, &ranges, &n)) != KV_OK)
		return err;
	if ((results = arena_alloc(rq->arena, (n + 1) * sizeof(*results))) ==
	    NULL)
		return KV_ERR_NOMEM;
	if ((err = kv_snapshot_read(rq->db, ranges, n, kv_now_ms(),
	    rq->arena, results)) != KV_OK)
		return err;
	if ((err = codec_encode_snapshot_read(results, n, rq->arena, &out)) !=
	    KV_OK)
		return err;
	reply_protobuf(rq, out.p, out.len);
	return KV_OK;
}
