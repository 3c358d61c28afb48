/*
 * queue: the wire side of queue delivery (docs/queues.md). Decodes and
 * validates the JSON bodies of lease, finish and renew, encodes their
 * answers, and names leases ("<message id>:<lease end ms>"). No HTTP and
 * no storage here: handlers (h_queue.c) and the hub call these.
 *
 * Ownership: decoded ids point into the caller's arena; encoded bodies are
 * malloc'd and freed by the caller with free().
 */
#ifndef DENOKV_QUEUE_H
#define DENOKV_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "err.h"
#include "kv.h"

/* Bounds of the lease request, with their defaults (docs/queues.md). */
#define QUEUE_MAX_BATCH			100
#define QUEUE_DEFAULT_BATCH		1
/* Under proxies' usual read timeouts (nginx: 60 s) with room to spare. */
#define QUEUE_MAX_WAIT_MS		60000
#define QUEUE_DEFAULT_WAIT_MS		30000
#define QUEUE_MIN_LEASE_MS		1000
#define QUEUE_MAX_LEASE_MS		600000
#define QUEUE_DEFAULT_LEASE_MS		30000

struct queue_lease_req {
	size_t		 max;
	int64_t		 wait_ms;
	int64_t		 lease_ms;
};

/*
 * One outcome ({"id", "success"}) or a batch ({"results": [...]}, at most
 * QUEUE_MAX_BATCH), finished in one transaction and answered per outcome.
 */
struct queue_finish_req {
	struct kv_queue_outcome	*o;	/* in the arena */
	size_t			 n;
	int			 batch;
};

struct queue_renew_req {
	const char	*id;
	int64_t		 until;
	int64_t		 lease_ms;
};

enum kv_err	queue_decode_lease(const uint8_t *body, size_t len,
		    struct queue_lease_req *);
enum kv_err	queue_decode_finish(const uint8_t *body, size_t len,
		    struct arena *, struct queue_finish_req *);
enum kv_err	queue_decode_renew(const uint8_t *body, size_t len,
		    struct arena *, struct queue_renew_req *);

/* {"messages":[...]} for n leased messages; NULL when out of memory. */
char		*queue_encode_lease(const struct kv_queue_msg *, size_t n,
		    size_t *len);
/* {"results":[{"status":200}, {"status":409,"message":"..."}, ...]} */
char		*queue_encode_finish(const struct kv_queue_outcome *, size_t n,
		    size_t *len);
/* {"id":"<lease id>","leaseExpiresAt":until} */
char		*queue_encode_renew(const char *id, int64_t until, size_t *len);

/*
 * Splits a lease id into its message id (in the arena) and lease end:
 * KV_ERR_QUEUE_ID when it is not of that form.
 */
enum kv_err	queue_parse_lease_id(const char *lease_id, struct arena *,
		    const char **id, int64_t *until);

#endif
