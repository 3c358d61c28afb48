/*
 * h_atomic_write.c: POST <base>/v2/atomic_write. Checks, mutations and
 * enqueues, applied together under one versionstamp or not at all. A
 * failed check is a normal answer (AW_CHECK_FAILURE), not an error.
 *
 * Writes are committed in batches (group commit, docs/request-model.md):
 * the atomic writes that are ready together share one transaction and
 * one fsync, and each client is answered only after that fsync. A single
 * request is a batch of one.
 */
#include <assert.h>

#include "codec.h"
#include "handlers.h"

/*
 * The largest batch this handler takes at once; a caller with more calls
 * again for the rest. Bounds the per-batch arrays on the stack.
 */
#define AW_MAX_BATCH	64

/* Answers one request from its write's outcome: KV_OK once replied. */
static enum kv_err
reply_write(struct request *rq, const struct kv_write_result *res)
{
	struct codec_out	 out;
	enum kv_err		 err;

	metrics_commit(res->committed);
	if ((err = codec_encode_atomic_write(res, rq->arena, &out)) != KV_OK)
		return err;
	reply_protobuf(rq, out.p, out.len);
	return KV_OK;
}

/* Up to AW_MAX_BATCH requests: decode, commit together, answer. */
static void
batch_chunk(struct request *const *rqs, size_t n, enum kv_err *errs)
{
	struct kv_write		 w[AW_MAX_BATCH];
	const struct kv_write	*wp[AW_MAX_BATCH];
	struct kv_write_result	 res[AW_MAX_BATCH];
	enum kv_err		 werr[AW_MAX_BATCH];
	size_t			 of[AW_MAX_BATCH], m = 0;
	int64_t			 now = kv_now_ms();

	assert(n <= AW_MAX_BATCH);
	/* A request that does not decode is left out and answered alone. */
	for (size_t i = 0; i < n; i++) {
		assert(rqs[i]->db == rqs[0]->db);
		errs[i] = codec_decode_atomic_write(rqs[i]->body,
		    rqs[i]->bodylen, now, rqs[i]->arena, &w[m]);
		if (errs[i] != KV_OK)
			continue;
		wp[m] = &w[m];
		of[m++] = i;
	}
	if (m == 0)
		return;
	metrics_write_batch(m);
	/* Results live in a request's arena, used before it is reset. */
	(void)kv_atomic_write_batch(rqs[0]->db, wp, m, now,
	    rqs[of[0]]->arena, res, werr);
	for (size_t j = 0; j < m; j++) {
		struct request	*rq = rqs[of[j]];

		errs[of[j]] = werr[j] != KV_OK ? werr[j] :
		    reply_write(rq, &res[j]);
	}
}

void
h_atomic_write_batch(struct request *const *rqs, size_t n, enum kv_err *errs)
{
	for (size_t i = 0; i < n; i += AW_MAX_BATCH)
		batch_chunk(rqs + i, n - i < AW_MAX_BATCH ? n - i :
		    AW_MAX_BATCH, errs + i);
}

enum kv_err
h_atomic_write(struct request *rq)
{
	enum kv_err	 err;

	h_atomic_write_batch(&rq, 1, &err);
	return err;
}
