/*
 * codec.c: KV Connect protobuf <-> kv structs, validating every limit,
 * and the metadata exchange's JSON (see codec.h). The checks follow the reference server's order, so the
 * same bad request gets the same message, except that up to
 * KV_MAX_CHECKS (100) checks are accepted, as the Deno client sends them.
 */
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "datapath.pb-c.h"
#include "kv_limits.h"

typedef Com__Deno__Kv__Datapath__SnapshotRead		PbSnapshotRead;
typedef Com__Deno__Kv__Datapath__SnapshotReadOutput	PbSnapshotReadOutput;
typedef Com__Deno__Kv__Datapath__ReadRangeOutput	PbReadRangeOutput;
typedef Com__Deno__Kv__Datapath__KvEntry		PbKvEntry;
typedef Com__Deno__Kv__Datapath__AtomicWrite		PbAtomicWrite;
typedef Com__Deno__Kv__Datapath__AtomicWriteOutput	PbAtomicWriteOutput;
typedef Com__Deno__Kv__Datapath__Mutation		PbMutation;
typedef Com__Deno__Kv__Datapath__Enqueue		PbEnqueue;
typedef Com__Deno__Kv__Datapath__Watch			PbWatch;
typedef Com__Deno__Kv__Datapath__WatchOutput		PbWatchOutput;
typedef Com__Deno__Kv__Datapath__WatchKeyOutput		PbWatchKeyOutput;

static void *
arena_pb_alloc(void *data, size_t size)
{
	return arena_alloc(data, size);
}

static void
arena_pb_free(void *data, void *p)
{
	(void)data;
	(void)p;	/* released with the arena */
}

static ProtobufCAllocator
pb_allocator(struct arena *a)
{
	ProtobufCAllocator	 al = { arena_pb_alloc, arena_pb_free, a };

	return al;
}

static struct kv_bytes
bytes(ProtobufCBinaryData d)
{
	return (struct kv_bytes){ d.data, d.len };
}

/* Packs a message into the arena. */
static enum kv_err
pack(const ProtobufCMessage *m, struct arena *a, struct codec_out *out)
{
	size_t	 len = protobuf_c_message_get_packed_size(m);

	if ((out->p = arena_alloc(a, len)) == NULL)
		return KV_ERR_NOMEM;
	out->len = protobuf_c_message_pack(m, out->p);
	return out->len == len ? KV_OK : KV_ERR_INTERNAL;
}

/* A KvEntry that points into src (no copies). */
static void
fill_entry(PbKvEntry *e, const struct kv_entry *src)
{
	com__deno__kv__datapath__kv_entry__init(e);
	e->key.data = (uint8_t *)src->key.p;
	e->key.len = src->key.len;
	e->value.data = (uint8_t *)src->value.p;
	e->value.len = src->value.len;
	e->encoding = (Com__Deno__Kv__Datapath__ValueEncoding)src->encoding;
	e->versionstamp.data = (uint8_t *)src->versionstamp;
	e->versionstamp.len = KV_VERSIONSTAMP_BYTES;
}

/* --- snapshot read ------------------------------------------------------ */

enum kv_err
codec_decode_snapshot_read(const uint8_t *body, size_t len, struct arena *a,
    struct kv_range **ranges, size_t *n)
{
	ProtobufCAllocator	 al = pb_allocator(a);
	PbSnapshotRead		*req;
	uint64_t		 total = 0;

	req = com__deno__kv__datapath__snapshot_read__unpack(&al, len, body);
	if (req == NULL)
		return KV_ERR_BAD_PROTOBUF;
	if (req->n_ranges > KV_MAX_READ_RANGES)
		return KV_ERR_TOO_MANY_RANGES;
	*n = req->n_ranges;
	if ((*ranges = arena_alloc(a, (req->n_ranges + 1) *
	    sizeof(**ranges))) == NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < req->n_ranges; i++) {
		const Com__Deno__Kv__Datapath__ReadRange *r = req->ranges[i];
		struct kv_range *out = &(*ranges)[i];

		if (r->limit <= 0)
			return KV_ERR_INVALID_LIMIT;
		if (r->start.len > KV_MAX_READ_KEY_BYTES ||
		    r->end.len > KV_MAX_READ_KEY_BYTES)
			return KV_ERR_KEY_TOO_LONG;
		total += (uint64_t)r->limit;
		out->start = bytes(r->start);
		out->end = bytes(r->end);
		out->limit = (uint32_t)r->limit;
		out->reverse = r->reverse != 0;
	}
	if (total > KV_MAX_READ_ENTRIES)
		return KV_ERR_READ_RANGE_TOO_LARGE;
	return KV_OK;
}

enum kv_err
codec_encode_snapshot_read(const struct kv_range_result *res, size_t n,
    struct arena *a, struct codec_out *out)
{
	PbSnapshotReadOutput	 msg = COM__DENO__KV__DATAPATH__SNAPSHOT_READ_OUTPUT__INIT;
	PbReadRangeOutput	*rr, **rrp;

	rr = arena_alloc(a, (n + 1) * sizeof(*rr));
	rrp = arena_alloc(a, (n + 1) * sizeof(*rrp));
	if (rr == NULL || rrp == NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		PbKvEntry	*e, **ep;
		size_t		 m = res[i].n;

		com__deno__kv__datapath__read_range_output__init(&rr[i]);
		e = arena_alloc(a, (m + 1) * sizeof(*e));
		ep = arena_alloc(a, (m + 1) * sizeof(*ep));
		if (e == NULL || ep == NULL)
			return KV_ERR_NOMEM;
		for (size_t j = 0; j < m; j++) {
			fill_entry(&e[j], &res[i].entries[j]);
			ep[j] = &e[j];
		}
		rr[i].n_values = m;
		rr[i].values = ep;
		rrp[i] = &rr[i];
	}
	msg.n_ranges = n;
	msg.ranges = rrp;
	msg.read_disabled = 0;
	/* Every read here is a read of the primary: strongly consistent. */
	msg.read_is_strongly_consistent = 1;
	msg.status = COM__DENO__KV__DATAPATH__SNAPSHOT_READ_STATUS__SR_SUCCESS;
	return pack(&msg.base, a, out);
}

/* --- atomic write ------------------------------------------------------- */

static enum kv_err
check_value(const Com__Deno__Kv__Datapath__KvValue *v)
{
	switch (v->encoding) {
	case COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_V8:
	case COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_BYTES:
		return KV_OK;
	case COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_LE64:
		return v->data.len == 8 ? KV_OK : KV_ERR_INVALID_VALUE;
	default:
		return KV_ERR_UNKNOWN_ENCODING;
	}
}

static enum kv_err
decode_mutation(const PbMutation *pm, struct kv_mutation *m, uint64_t *total)
{
	const Com__Deno__Kv__Datapath__KvValue *v = pm->value;
	size_t		 vlen = v != NULL ? v->data.len : 0;
	enum kv_err	 err;

	if (pm->key.len > KV_MAX_WRITE_KEY_BYTES)
		return KV_ERR_KEY_TOO_LONG;
	*total += pm->key.len;
	if (vlen > KV_MAX_VALUE_BYTES)
		return KV_ERR_VALUE_TOO_LONG;
	*total += vlen;
	memset(m, 0, sizeof(*m));
	m->key = bytes(pm->key);
	switch (pm->mutation_type) {
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_DELETE:
		m->type = KV_MUT_DELETE;
		break;
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET:
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SUM:
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_MIN:
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_MAX:
	case COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET_SUFFIX_VERSIONSTAMPED_KEY:
		if (v == NULL)
			return KV_ERR_INVALID_MUTATION;
		if ((err = check_value(v)) != KV_OK)
			return err;
		m->type = (enum kv_mutation_type)pm->mutation_type;
		m->value = bytes(v->data);
		m->encoding = (enum kv_encoding)v->encoding;
		break;
	default:
		return KV_ERR_INVALID_MUTATION;
	}
	if (pm->expire_at_ms < -1)
		return KV_ERR_INVALID_EXPIRE_AT;
	m->expire_at_ms = pm->expire_at_ms > 0 ? pm->expire_at_ms : 0;
	m->sum_min = bytes(pm->sum_min);
	m->sum_max = bytes(pm->sum_max);
	m->sum_clamp = pm->sum_clamp != 0;
	return KV_OK;
}

static enum kv_err
decode_enqueue(const PbEnqueue *pq, int64_t now_ms, struct arena *a,
    struct kv_enqueue *q, uint64_t *total)
{
	struct kv_bytes	*keys;

	if (pq->payload.len > KV_MAX_VALUE_BYTES)
		return KV_ERR_VALUE_TOO_LONG;
	*total += pq->payload.len;
	if (pq->n_keys_if_undelivered > KV_MAX_QUEUE_UNDELIVERED_KEYS)
		return KV_ERR_TOO_MANY_UNDELIVERED_KEYS;
	if ((keys = arena_alloc(a, (pq->n_keys_if_undelivered + 1) *
	    sizeof(*keys))) == NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < pq->n_keys_if_undelivered; i++) {
		if (pq->keys_if_undelivered[i].len > KV_MAX_WRITE_KEY_BYTES)
			return KV_ERR_KEY_TOO_LONG;
		*total += pq->keys_if_undelivered[i].len;
		keys[i] = bytes(pq->keys_if_undelivered[i]);
	}
	if (pq->n_backoff_schedule > KV_MAX_QUEUE_BACKOFF_INTERVALS)
		return KV_ERR_TOO_MANY_BACKOFF_INTERVALS;
	for (size_t i = 0; i < pq->n_backoff_schedule; i++) {
		if (pq->backoff_schedule[i] > KV_MAX_QUEUE_BACKOFF_MS)
			return KV_ERR_BACKOFF_TOO_LARGE;
		*total += 4;
	}
	/* A deadline in the past means "now"; the future is bounded. */
	if (pq->deadline_ms < 0 ||
	    pq->deadline_ms > now_ms + KV_MAX_QUEUE_DELAY_MS)
		return KV_ERR_INVALID_DEADLINE;
	q->payload = bytes(pq->payload);
	q->deadline_ms = pq->deadline_ms;
	q->undelivered_keys = keys;
	q->n_undelivered_keys = pq->n_keys_if_undelivered;
	q->backoff = pq->n_backoff_schedule > 0 ? pq->backoff_schedule : NULL;
	q->n_backoff = pq->n_backoff_schedule;
	return KV_OK;
}

enum kv_err
codec_decode_atomic_write(const uint8_t *body, size_t len, int64_t now_ms,
    struct arena *a, struct kv_write *w)
{
	ProtobufCAllocator	 al = pb_allocator(a);
	PbAtomicWrite		*req;
	struct kv_check		*checks;
	struct kv_mutation	*muts;
	struct kv_enqueue	*enqs;
	uint64_t		 total = 0;
	enum kv_err		 err;

	memset(w, 0, sizeof(*w));
	req = com__deno__kv__datapath__atomic_write__unpack(&al, len, body);
	if (req == NULL)
		return KV_ERR_BAD_PROTOBUF;
	if (req->n_checks > KV_MAX_CHECKS)
		return KV_ERR_TOO_MANY_CHECKS;
	if (req->n_mutations + req->n_enqueues > KV_MAX_MUTATIONS)
		return KV_ERR_TOO_MANY_MUTATIONS;
	checks = arena_alloc(a, (req->n_checks + 1) * sizeof(*checks));
	muts = arena_alloc(a, (req->n_mutations + 1) * sizeof(*muts));
	enqs = arena_alloc(a, (req->n_enqueues + 1) * sizeof(*enqs));
	if (checks == NULL || muts == NULL || enqs == NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < req->n_checks; i++) {
		const Com__Deno__Kv__Datapath__Check *c = req->checks[i];

		if (c->key.len > KV_MAX_READ_KEY_BYTES)
			return KV_ERR_KEY_TOO_LONG;
		total += c->key.len;
		checks[i].key = bytes(c->key);
		if (c->versionstamp.len == 0)
			checks[i].must_be_absent = 1;
		else if (c->versionstamp.len == KV_VERSIONSTAMP_BYTES) {
			checks[i].must_be_absent = 0;
			memcpy(checks[i].versionstamp, c->versionstamp.data,
			    KV_VERSIONSTAMP_BYTES);
		} else
			return KV_ERR_INVALID_VERSIONSTAMP;
	}
	for (size_t i = 0; i < req->n_mutations; i++)
		if ((err = decode_mutation(req->mutations[i], &muts[i],
		    &total)) != KV_OK)
			return err;
	for (size_t i = 0; i < req->n_enqueues; i++)
		if ((err = decode_enqueue(req->enqueues[i], now_ms, a,
		    &enqs[i], &total)) != KV_OK)
			return err;
	if (total > KV_MAX_TOTAL_MUTATION_BYTES)
		return KV_ERR_WRITE_TOO_LARGE;
	w->checks = checks;
	w->n_checks = req->n_checks;
	w->mutations = muts;
	w->n_mutations = req->n_mutations;
	w->enqueues = enqs;
	w->n_enqueues = req->n_enqueues;
	return KV_OK;
}

enum kv_err
codec_encode_atomic_write(const struct kv_write_result *res, struct arena *a,
    struct codec_out *out)
{
	PbAtomicWriteOutput	 msg = COM__DENO__KV__DATAPATH__ATOMIC_WRITE_OUTPUT__INIT;

	if (res->committed) {
		msg.status = COM__DENO__KV__DATAPATH__ATOMIC_WRITE_STATUS__AW_SUCCESS;
		msg.versionstamp.data = (uint8_t *)res->versionstamp;
		msg.versionstamp.len = KV_VERSIONSTAMP_BYTES;
	} else {
		msg.status = COM__DENO__KV__DATAPATH__ATOMIC_WRITE_STATUS__AW_CHECK_FAILURE;
		msg.failed_checks = res->failed_checks;
		msg.n_failed_checks = res->n_failed_checks;
	}
	return pack(&msg.base, a, out);
}

/* --- watch ---------------------------------------------------------------- */

enum kv_err
codec_decode_watch(const uint8_t *body, size_t len, struct arena *a,
    struct kv_bytes **keys, size_t *n)
{
	ProtobufCAllocator	 al = pb_allocator(a);
	PbWatch			*req;

	req = com__deno__kv__datapath__watch__unpack(&al, len, body);
	if (req == NULL)
		return KV_ERR_BAD_PROTOBUF;
	if (req->n_keys > KV_MAX_WATCHED_KEYS)
		return KV_ERR_TOO_MANY_WATCHED_KEYS;
	if ((*keys = arena_alloc(a, (req->n_keys + 1) * sizeof(**keys))) ==
	    NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < req->n_keys; i++) {
		if (req->keys[i]->key.len > KV_MAX_WRITE_KEY_BYTES)
			return KV_ERR_KEY_TOO_LONG;
		(*keys)[i] = bytes(req->keys[i]->key);
	}
	*n = req->n_keys;
	return KV_OK;
}

enum kv_err
codec_encode_watch_frame(const struct kv_entry *const *entries, size_t n,
    struct arena *a, struct codec_out *out)
{
	PbWatchOutput		 msg = COM__DENO__KV__DATAPATH__WATCH_OUTPUT__INIT;
	PbWatchKeyOutput	*k, **kp;
	PbKvEntry		*e;
	size_t			 len;

	k = arena_alloc(a, (n + 1) * sizeof(*k));
	kp = arena_alloc(a, (n + 1) * sizeof(*kp));
	e = arena_alloc(a, (n + 1) * sizeof(*e));
	if (k == NULL || kp == NULL || e == NULL)
		return KV_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		com__deno__kv__datapath__watch_key_output__init(&k[i]);
		/*
		 * Every key is reported changed with its current entry: a
		 * client reads "unchanged" as "deleted" (denokv does this too).
		 */
		k[i].changed = 1;
		if (entries[i] != NULL) {
			fill_entry(&e[i], entries[i]);
			k[i].entry_if_changed = &e[i];
		}
		kp[i] = &k[i];
	}
	msg.status = COM__DENO__KV__DATAPATH__SNAPSHOT_READ_STATUS__SR_SUCCESS;
	msg.n_keys = n;
	msg.keys = kp;
	len = protobuf_c_message_get_packed_size(&msg.base);
	if (len > UINT32_MAX)
		return KV_ERR_INTERNAL;
	if ((out->p = arena_alloc(a, len + 4)) == NULL)
		return KV_ERR_NOMEM;
	for (int i = 0; i < 4; i++)
		out->p[i] = (uint8_t)(len >> (8 * i));
	out->len = 4 + protobuf_c_message_pack(&msg.base, out->p + 4);
	return out->len == len + 4 ? KV_OK : KV_ERR_INTERNAL;
}

enum kv_err
codec_decode_metadata_request(const uint8_t *body, size_t len, int *version,
    int *queues)
{
	json_t		*doc, *versions, *v;
	json_error_t	 jerr;
	size_t		 i;
	int		 has2 = 0, has3 = 0, ok = 1;

	if (len == 0)
		return KV_ERR_MIN_PROTOCOL_VERSION;
	doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
	    &jerr);
	if (doc == NULL)
		return KV_ERR_METADATA_BODY;
	versions = json_is_object(doc) ?
	    json_object_get(doc, "supportedVersions") : NULL;
	if (!json_is_array(versions)) {
		json_decref(doc);
		return KV_ERR_METADATA_BODY;
	}
	/* Only clients that ask see the extension (@deno/kv refuses extras). */
	*queues = json_integer_value(json_object_get(doc, "denokvFcgiQueues"))
	    == 1;
	json_array_foreach(versions, i, v) {
		if (!json_is_integer(v)) {
			ok = 0;
			break;
		}
		has2 |= json_integer_value(v) == 2;
		has3 |= json_integer_value(v) == 3;
	}
	json_decref(doc);
	if (!ok)
		return KV_ERR_METADATA_BODY;
	if (!has2 && !has3)
		return KV_ERR_NO_PROTOCOL_VERSION;
	*version = has3 ? 3 : 2;
	return KV_OK;
}
