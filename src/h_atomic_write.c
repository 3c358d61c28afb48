/*
 * h_atomic_write.c: POST <base>/v2/atomic_write. Checks, mutations and
 * enqueues, applied together under one versionstamp or not at all. A
 * failed check is a normal answer (AW_CHECK_FAILURE), not an error.
 */
#include "codec.h"
#include "handlers.h"

enum kv_err
h_atomic_write(struct request *rq)
{
	struct kv_write		 w;
	struct kv_write_result	 res;
	struct codec_out	 out;
	int64_t			 now = kv_now_ms();
	enum kv_err		 err;

	if ((err = codec_decode_atomic_write(rq->body, rq->bodylen, now,
	    rq->arena, &w)) != KV_OK)
		return err;
	if ((err = kv_atomic_write(rq->db, &w, now, rq->arena, &res)) !=
	    KV_OK)
		return err;
	metrics_commit(res.committed);
	if ((err = codec_encode_atomic_write(&res, rq->arena, &out)) != KV_OK)
		return err;
	reply_protobuf(rq, out.p, out.len);
	return KV_OK;
}
