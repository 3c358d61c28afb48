/*
 * test_codec.c: unit tests of the KV Connect protobuf codec (src/codec.c)
 * and of request routing (route_path, database_id_for in src/worker.c),
 * printing TAP. Focus: every protocol limit of kv_limits.h at its boundary
 * and one past it, field validation, malformed and truncated bodies, and
 * the encoded responses. Request bodies are built with the protobuf-c
 * generated structs and packed, as a client would send them; responses
 * are unpacked again and compared field by field.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "codec.h"
#include "datapath.pb-c.h"
#include "kv_limits.h"
#include "worker.h"
#include "testhelp.h"
#include "testkv.h"

typedef Com__Deno__Kv__Datapath__SnapshotRead		PbSnapshotRead;
typedef Com__Deno__Kv__Datapath__SnapshotReadOutput	PbSnapshotReadOutput;
typedef Com__Deno__Kv__Datapath__ReadRange		PbReadRange;
typedef Com__Deno__Kv__Datapath__AtomicWrite		PbAtomicWrite;
typedef Com__Deno__Kv__Datapath__AtomicWriteOutput	PbAtomicWriteOutput;
typedef Com__Deno__Kv__Datapath__Check			PbCheck;
typedef Com__Deno__Kv__Datapath__Mutation		PbMutation;
typedef Com__Deno__Kv__Datapath__KvValue		PbKvValue;
typedef Com__Deno__Kv__Datapath__Enqueue		PbEnqueue;
typedef Com__Deno__Kv__Datapath__Watch			PbWatch;
typedef Com__Deno__Kv__Datapath__WatchKey		PbWatchKey;

#define M_SET		COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET
#define M_DELETE	COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_DELETE
#define M_SUM		COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SUM
#define M_MAX		COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_MAX
#define M_MIN		COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_MIN
#define M_VSKEY	\
	COM__DENO__KV__DATAPATH__MUTATION_TYPE__M_SET_SUFFIX_VERSIONSTAMPED_KEY
#define VE_V8		COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_V8
#define VE_LE64		COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_LE64
#define VE_BYTES	COM__DENO__KV__DATAPATH__VALUE_ENCODING__VE_BYTES
#define NO_VALUE	(-1)

/* A fixed "now" for enqueue deadlines. */
#define NOW		1700000000000LL
#define MAXM		1100	/* mutations in one built write */
#define MAXC		110	/* checks */
#define MAXQ		1100	/* enqueues */
#define MAXK		12	/* dead-letter keys or backoff steps */
#define MAXR		16	/* read ranges or watched keys */
#define FILL_BYTES	(KV_MAX_VALUE_BYTES + 16)

/* The request body and its decoding; reset per call. */
static struct arena	 A;
/* The bytes of every key and value. */
static uint8_t		 fill[FILL_BYTES];

static ProtobufCBinaryData
bin(size_t len)
{
	return (ProtobufCBinaryData){ len, len ? fill : NULL };
}

/* Packs a message into the arena (after resetting it). */
static uint8_t *
pack_msg(const ProtobufCMessage *m, size_t *len)
{
	uint8_t	*p;

	arena_reset(&A);
	*len = protobuf_c_message_get_packed_size(m);
	if ((p = arena_alloc(&A, *len)) == NULL)
		return NULL;
	if (protobuf_c_message_pack(m, p) != *len)
		return NULL;
	return p;
}

/* Packs a message into a malloc'd buffer that outlives arena resets. */
static uint8_t *
packed_copy(const ProtobufCMessage *m, size_t *len)
{
	uint8_t	*p;

	*len = protobuf_c_message_get_packed_size(m);
	if ((p = malloc(*len > 0 ? *len : 1)) == NULL)
		return NULL;
	if (protobuf_c_message_pack(m, p) != *len) {
		free(p);
		return NULL;
	}
	return p;
}

/* --- building an AtomicWrite ---------------------------------------------- */

static struct {
	PbAtomicWrite		 msg;
	PbCheck			 c[MAXC];
	PbCheck			*cp[MAXC];
	PbMutation		 m[MAXM];
	PbMutation		*mp[MAXM];
	PbKvValue		 v[MAXM];
	PbEnqueue		 q[MAXQ];
	PbEnqueue		*qp[MAXQ];
	ProtobufCBinaryData	 dl[MAXQ][MAXK];
	uint32_t		 backoff[MAXQ][MAXK];
} aw;

static void
aw_reset(void)
{
	com__deno__kv__datapath__atomic_write__init(&aw.msg);
	aw.msg.checks = aw.cp;
	aw.msg.mutations = aw.mp;
	aw.msg.enqueues = aw.qp;
}

static PbCheck *
aw_check(size_t klen, size_t vslen)
{
	PbCheck	*c = &aw.c[aw.msg.n_checks];

	com__deno__kv__datapath__check__init(c);
	c->key = bin(klen);
	c->versionstamp = bin(vslen);
	aw.cp[aw.msg.n_checks++] = c;
	return c;
}

/* A mutation with a klen-byte key and, unless enc is NO_VALUE, a value. */
static PbMutation *
aw_mut(int type, size_t klen, size_t vlen, int enc)
{
	size_t		 i = aw.msg.n_mutations;
	PbMutation	*m = &aw.m[i];

	com__deno__kv__datapath__mutation__init(m);
	m->key = bin(klen);
	m->mutation_type = (Com__Deno__Kv__Datapath__MutationType)type;
	if (enc != NO_VALUE) {
		com__deno__kv__datapath__kv_value__init(&aw.v[i]);
		aw.v[i].data = bin(vlen);
		aw.v[i].encoding = (Com__Deno__Kv__Datapath__ValueEncoding)enc;
		m->value = &aw.v[i];
	}
	aw.mp[aw.msg.n_mutations++] = m;
	return m;
}

static PbEnqueue *
aw_enqueue(size_t plen, int64_t deadline_ms)
{
	size_t		 i = aw.msg.n_enqueues;
	PbEnqueue	*q = &aw.q[i];

	com__deno__kv__datapath__enqueue__init(q);
	q->payload = bin(plen);
	q->deadline_ms = deadline_ms;
	q->keys_if_undelivered = aw.dl[i];
	q->backoff_schedule = aw.backoff[i];
	aw.qp[aw.msg.n_enqueues++] = q;
	return q;
}

static void
q_deadletter(PbEnqueue *q, size_t n, size_t klen)
{
	for (size_t i = 0; i < n; i++)
		q->keys_if_undelivered[i] = bin(klen);
	q->n_keys_if_undelivered = n;
}

static void
q_backoff(PbEnqueue *q, size_t n, uint32_t ms)
{
	for (size_t i = 0; i < n; i++)
		q->backoff_schedule[i] = ms;
	q->n_backoff_schedule = n;
}

static enum kv_err
aw_decode(struct kv_write *w)
{
	uint8_t	*p;
	size_t	 len;

	if ((p = pack_msg(&aw.msg.base, &len)) == NULL)
		return KV_ERR_INTERNAL;
	return codec_decode_atomic_write(p, len, NOW, &A, w);
}

/* Decodes a write of one mutation. */
static enum kv_err
mut_decode(int type, size_t klen, size_t vlen, int enc, struct kv_write *w)
{
	aw_reset();
	aw_mut(type, klen, vlen, enc);
	return aw_decode(w);
}

/* --- building a SnapshotRead and a Watch ---------------------------------- */

static struct {
	PbSnapshotRead	 msg;
	PbReadRange	 r[MAXR];
	PbReadRange	*rp[MAXR];
} sr;

static void
sr_reset(void)
{
	com__deno__kv__datapath__snapshot_read__init(&sr.msg);
	sr.msg.ranges = sr.rp;
}

static PbReadRange *
sr_range(size_t slen, size_t elen, int32_t limit)
{
	PbReadRange	*r = &sr.r[sr.msg.n_ranges];

	com__deno__kv__datapath__read_range__init(r);
	r->start = bin(slen);
	r->end = bin(elen);
	r->limit = limit;
	sr.rp[sr.msg.n_ranges++] = r;
	return r;
}

static enum kv_err
sr_decode(struct kv_range **ranges, size_t *n)
{
	uint8_t	*p;
	size_t	 len;

	*n = 0;
	if ((p = pack_msg(&sr.msg.base, &len)) == NULL)
		return KV_ERR_INTERNAL;
	return codec_decode_snapshot_read(p, len, &A, ranges, n);
}

/* A read of n ranges, each with the given limit and key lengths. */
static enum kv_err
sr_decode_n(size_t n, size_t klen, int32_t limit)
{
	struct kv_range	*r;
	size_t		 nr;

	sr_reset();
	for (size_t i = 0; i < n; i++)
		sr_range(klen, klen, limit);
	return sr_decode(&r, &nr);
}

static enum kv_err
watch_decode(size_t n, size_t klen, size_t *nkeys)
{
	PbWatch		 msg = COM__DENO__KV__DATAPATH__WATCH__INIT;
	PbWatchKey	 k[MAXR], *kp[MAXR];
	struct kv_bytes	*keys;
	uint8_t		*p;
	size_t		 len;

	for (size_t i = 0; i < n; i++) {
		com__deno__kv__datapath__watch_key__init(&k[i]);
		k[i].key = bin(klen);
		kp[i] = &k[i];
	}
	msg.n_keys = n;
	msg.keys = kp;
	*nkeys = 0;
	if ((p = pack_msg(&msg.base, &len)) == NULL)
		return KV_ERR_INTERNAL;
	return codec_decode_watch(p, len, &A, &keys, nkeys);
}

/* --- snapshot read limits ------------------------------------------------- */

static void
test_read_limits(void)
{
	struct kv_range	*r = NULL;
	size_t		 n = 0;

	sr_reset();
	sr_range(KV_MAX_READ_KEY_BYTES, KV_MAX_READ_KEY_BYTES, 7)->reverse = 1;
	T_OK(t_err_is(sr_decode(&r, &n), KV_OK) && n == 1,
	    "read keys of 2049 bytes are accepted");
	T_OK(n == 1 && r[0].start.len == 2049 && r[0].end.len == 2049 &&
	    r[0].limit == 7 && r[0].reverse == 1 &&
	    memcmp(r[0].start.p, fill, 2049) == 0,
	    "the range decodes with its bounds, limit and direction");

	sr_reset();
	sr_range(KV_MAX_READ_KEY_BYTES + 1, 1, 1);
	T_OK(t_err_is(sr_decode(&r, &n), KV_ERR_KEY_TOO_LONG),
	    "read start of 2050 bytes is KV_ERR_KEY_TOO_LONG");
	sr_reset();
	sr_range(1, KV_MAX_READ_KEY_BYTES + 1, 1);
	T_OK(t_err_is(sr_decode(&r, &n), KV_ERR_KEY_TOO_LONG),
	    "read end of 2050 bytes is KV_ERR_KEY_TOO_LONG");

	T_OK(t_err_is(sr_decode_n(KV_MAX_READ_RANGES, 1, 1), KV_OK),
	    "10 ranges are accepted");
	T_OK(t_err_is(sr_decode_n(KV_MAX_READ_RANGES + 1, 1, 1),
	    KV_ERR_TOO_MANY_RANGES), "11 ranges are KV_ERR_TOO_MANY_RANGES");

	T_OK(t_err_is(sr_decode_n(1, 1, KV_MAX_READ_ENTRIES), KV_OK),
	    "one range with limit 1000 is accepted");
	T_OK(t_err_is(sr_decode_n(1, 1, KV_MAX_READ_ENTRIES + 1),
	    KV_ERR_READ_RANGE_TOO_LARGE),
	    "one range with limit 1001 is KV_ERR_READ_RANGE_TOO_LARGE");
	T_OK(t_err_is(sr_decode_n(10, 1, 100), KV_OK),
	    "ten ranges with limits summing to 1000 are accepted");
	sr_reset();
	sr_range(1, 1, 500);
	sr_range(1, 1, 501);
	T_OK(t_err_is(sr_decode(&r, &n), KV_ERR_READ_RANGE_TOO_LARGE),
	    "limits 500 + 501 are KV_ERR_READ_RANGE_TOO_LARGE");

	T_OK(t_err_is(sr_decode_n(1, 1, 0), KV_ERR_INVALID_LIMIT),
	    "limit 0 is KV_ERR_INVALID_LIMIT");
	T_OK(t_err_is(sr_decode_n(1, 1, -1), KV_ERR_INVALID_LIMIT),
	    "limit -1 is KV_ERR_INVALID_LIMIT");
	T_OK(t_err_is(sr_decode_n(1, 1, INT32_MIN), KV_ERR_INVALID_LIMIT),
	    "limit INT32_MIN is KV_ERR_INVALID_LIMIT");
	sr_reset();
	sr_range(1, 1, 5);
	sr_range(1, 1, 0);
	T_OK(t_err_is(sr_decode(&r, &n), KV_ERR_INVALID_LIMIT),
	    "a zero limit in the second range is KV_ERR_INVALID_LIMIT");

	sr_reset();
	sr_range(0, 0, 1);
	T_OK(t_err_is(sr_decode(&r, &n), KV_OK) && n == 1 &&
	    r[0].start.len == 0 && r[0].end.len == 0 && r[0].reverse == 0,
	    "empty bounds decode as empty keys");
	T_OK(t_err_is(codec_decode_snapshot_read((const uint8_t *)"", 0, &A, &r,
	    &n), KV_OK) && n == 0, "an empty body is a read of no ranges");
}

/* --- atomic write limits -------------------------------------------------- */

static void
test_write_limits(void)
{
	struct kv_write	 w;
	PbEnqueue	*q;

	T_OK(t_err_is(mut_decode(M_SET, KV_MAX_WRITE_KEY_BYTES, 3, VE_BYTES,
	    &w), KV_OK), "mutation key of 2048 bytes is accepted");
	T_OK(w.n_mutations == 1 && w.mutations[0].type == KV_MUT_SET &&
	    w.mutations[0].key.len == 2048 && w.mutations[0].value.len == 3 &&
	    w.mutations[0].encoding == KV_ENC_BYTES &&
	    memcmp(w.mutations[0].key.p, fill, 2048) == 0 &&
	    w.mutations[0].expire_at_ms == 0,
	    "the set decodes with its key, value and encoding");
	T_OK(t_err_is(mut_decode(M_SET, KV_MAX_WRITE_KEY_BYTES + 1, 3, VE_BYTES,
	    &w), KV_ERR_KEY_TOO_LONG),
	    "mutation key of 2049 bytes is KV_ERR_KEY_TOO_LONG");
	T_OK(t_err_is(mut_decode(M_DELETE, KV_MAX_WRITE_KEY_BYTES + 1, 0,
	    NO_VALUE, &w), KV_ERR_KEY_TOO_LONG),
	    "delete key of 2049 bytes is KV_ERR_KEY_TOO_LONG");
	T_OK(t_err_is(mut_decode(M_SET, 1, KV_MAX_VALUE_BYTES, VE_V8, &w),
	    KV_OK) && w.mutations[0].value.len == 65536,
	    "value of 65536 bytes is accepted");
	T_OK(t_err_is(mut_decode(M_SET, 1, KV_MAX_VALUE_BYTES + 1, VE_V8, &w),
	    KV_ERR_VALUE_TOO_LONG),
	    "value of 65537 bytes is KV_ERR_VALUE_TOO_LONG");

	aw_reset();
	for (int i = 0; i < KV_MAX_CHECKS; i++)
		aw_check(1, 0);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.n_checks == 100,
	    "100 checks are accepted");
	aw_check(1, 0);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_CHECKS),
	    "101 checks are KV_ERR_TOO_MANY_CHECKS");

	aw_reset();
	for (int i = 0; i < KV_MAX_MUTATIONS; i++)
		aw_mut(M_DELETE, 1, 0, NO_VALUE);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.n_mutations == 1000,
	    "1000 mutations are accepted");
	aw_mut(M_DELETE, 1, 0, NO_VALUE);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_MUTATIONS),
	    "1001 mutations are KV_ERR_TOO_MANY_MUTATIONS");
	aw_reset();
	for (int i = 0; i < 600; i++)
		aw_mut(M_DELETE, 1, 0, NO_VALUE);
	for (int i = 0; i < 400; i++)
		aw_enqueue(1, NOW);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.n_mutations == 600 &&
	    w.n_enqueues == 400, "600 mutations + 400 enqueues are accepted");
	aw_enqueue(1, NOW);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_MUTATIONS),
	    "600 mutations + 401 enqueues are KV_ERR_TOO_MANY_MUTATIONS");
	aw_reset();
	for (int i = 0; i < KV_MAX_MUTATIONS + 1; i++)
		aw_enqueue(0, NOW);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_MUTATIONS),
	    "1001 enqueues are KV_ERR_TOO_MANY_MUTATIONS");

	aw_reset();
	q = aw_enqueue(KV_MAX_VALUE_BYTES, NOW);
	T_OK(t_err_is(aw_decode(&w), KV_OK),
	    "payload of 65536 bytes is accepted");
	q->payload = bin(KV_MAX_VALUE_BYTES + 1);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_VALUE_TOO_LONG),
	    "payload of 65537 bytes is KV_ERR_VALUE_TOO_LONG");
}

/*
 * 818200 bytes of mutation keys and values, 1000 short of the total limit:
 * twelve 1-byte keys with 65536-byte values and one with 31755.
 */
static void
aw_base_total(void)
{
	aw_reset();
	for (int i = 0; i < 12; i++)
		aw_mut(M_SET, 1, KV_MAX_VALUE_BYTES, VE_BYTES);
	aw_mut(M_SET, 1, 31755, VE_BYTES);
}

static void
test_total_bytes(void)
{
	struct kv_write	 w;
	PbEnqueue	*q;

	for (int extra = 0; extra < 2; extra++) {
		const char *what = extra ? "819201 bytes are" :
		    "819200 bytes are accepted";
		enum kv_err want = extra ? KV_ERR_WRITE_TOO_LARGE : KV_OK;

		aw_base_total();
		aw_mut(M_SET, 500, 500 + extra, VE_BYTES);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (mutation keys and"
		    " values)", what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");

		aw_base_total();
		aw_check(1000 + extra, 10);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (with a check key)",
		    what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");

		aw_base_total();
		aw_enqueue(1000 + extra, NOW);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (with a payload)",
		    what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");

		aw_base_total();
		q = aw_enqueue(0, NOW);
		q_deadletter(q, 1, 1000 + extra);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (with a dead-letter"
		    " key)", what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");

		aw_base_total();
		q = aw_enqueue(996 + extra, NOW);
		q_backoff(q, 1, 1000);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (a backoff step"
		    " counts 4)", what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");

		aw_base_total();
		q = aw_enqueue(960 + extra, NOW);
		q_backoff(q, 10, 1000);
		T_OK(t_err_is(aw_decode(&w), want), "%s%s (10 backoff steps"
		    " count 40)", what, extra ? " KV_ERR_WRITE_TOO_LARGE" : "");
	}
}

/* --- enqueue limits ------------------------------------------------------- */

static void
test_queue_limits(void)
{
	struct kv_write	 w;
	PbEnqueue	*q;

	aw_reset();
	q = aw_enqueue(3, NOW + 5);
	q_deadletter(q, KV_MAX_QUEUE_UNDELIVERED_KEYS, 2);
	q_backoff(q, KV_MAX_QUEUE_BACKOFF_INTERVALS, 250);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.n_enqueues == 1,
	    "10 dead-letter keys and 10 backoff steps are accepted");
	T_OK(w.n_enqueues == 1 && w.enqueues[0].payload.len == 3 &&
	    w.enqueues[0].deadline_ms == NOW + 5 &&
	    w.enqueues[0].n_undelivered_keys == 10 &&
	    w.enqueues[0].undelivered_keys[9].len == 2 &&
	    w.enqueues[0].n_backoff == 10 && w.enqueues[0].backoff != NULL &&
	    w.enqueues[0].backoff[0] == 250 && w.enqueues[0].backoff[9] == 250,
	    "the enqueue decodes with payload, deadline, keys and schedule");
	q_deadletter(q, KV_MAX_QUEUE_UNDELIVERED_KEYS + 1, 2);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_UNDELIVERED_KEYS),
	    "11 dead-letter keys are KV_ERR_TOO_MANY_UNDELIVERED_KEYS");
	q_deadletter(q, 1, KV_MAX_WRITE_KEY_BYTES);
	T_OK(t_err_is(aw_decode(&w), KV_OK), "dead-letter key of 2048 bytes"
	    " is accepted");
	q_deadletter(q, 1, KV_MAX_WRITE_KEY_BYTES + 1);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_KEY_TOO_LONG),
	    "dead-letter key of 2049 bytes is KV_ERR_KEY_TOO_LONG");
	q_deadletter(q, 0, 0);

	q_backoff(q, KV_MAX_QUEUE_BACKOFF_INTERVALS + 1, 250);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_TOO_MANY_BACKOFF_INTERVALS),
	    "11 backoff steps are KV_ERR_TOO_MANY_BACKOFF_INTERVALS");
	q_backoff(q, 1, KV_MAX_QUEUE_BACKOFF_MS);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.enqueues[0].backoff[0] ==
	    3600000, "backoff step of 3600000 ms is accepted");
	q_backoff(q, 1, KV_MAX_QUEUE_BACKOFF_MS + 1);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_BACKOFF_TOO_LARGE),
	    "backoff step of 3600001 ms is KV_ERR_BACKOFF_TOO_LARGE");
	q_backoff(q, 0, 0);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.enqueues[0].backoff == NULL &&
	    w.enqueues[0].n_backoff == 0,
	    "no backoff steps decode as the default schedule (NULL)");

	q->deadline_ms = -1;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_DEADLINE),
	    "deadline -1 is KV_ERR_INVALID_DEADLINE");
	q->deadline_ms = INT64_MIN;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_DEADLINE),
	    "deadline INT64_MIN is KV_ERR_INVALID_DEADLINE");
	q->deadline_ms = 0;
	T_OK(t_err_is(aw_decode(&w), KV_OK), "deadline 0 (the past) is accepted");
	q->deadline_ms = NOW + KV_MAX_QUEUE_DELAY_MS;
	T_OK(t_err_is(aw_decode(&w), KV_OK) &&
	    w.enqueues[0].deadline_ms == NOW + 2592000000LL,
	    "deadline now + 30 days is accepted");
	q->deadline_ms = NOW + KV_MAX_QUEUE_DELAY_MS + 1;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_DEADLINE),
	    "deadline now + 30 days + 1 ms is KV_ERR_INVALID_DEADLINE");
	q->deadline_ms = INT64_MAX;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_DEADLINE),
	    "deadline INT64_MAX is KV_ERR_INVALID_DEADLINE");
}

/* --- mutation and check validation ---------------------------------------- */

static void
test_mutations(void)
{
	static const int	 bad_types[] = { 0, 6, 7, 8, 99 };
	static const struct {
		int			 pb;
		enum kv_mutation_type	 kv;
		const char		*name;
	} types[] = {
		{ M_SUM, KV_MUT_SUM, "sum" },
		{ M_MIN, KV_MUT_MIN, "min" },
		{ M_MAX, KV_MUT_MAX, "max" },
		{ M_VSKEY, KV_MUT_SET_VERSIONSTAMPED_KEY,
		    "set versionstamped key" },
	};
	struct kv_write		 w;
	PbMutation		*m;
	PbCheck			*c;

	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++)
		T_OK(t_err_is(mut_decode(bad_types[i], 1, 8, VE_LE64, &w),
		    KV_ERR_INVALID_MUTATION),
		    "mutation type %d is KV_ERR_INVALID_MUTATION",
		    bad_types[i]);
	T_OK(t_err_is(mut_decode(M_SET, 1, 0, NO_VALUE, &w),
	    KV_ERR_INVALID_MUTATION), "set without a value is"
	    " KV_ERR_INVALID_MUTATION");
	T_OK(t_err_is(mut_decode(M_SUM, 1, 0, NO_VALUE, &w),
	    KV_ERR_INVALID_MUTATION), "sum without a value is"
	    " KV_ERR_INVALID_MUTATION");
	T_OK(t_err_is(mut_decode(M_DELETE, 1, 0, NO_VALUE, &w), KV_OK) &&
	    w.mutations[0].type == KV_MUT_DELETE, "delete needs no value");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		T_OK(t_err_is(mut_decode(types[i].pb, 4, 8, VE_LE64, &w),
		    KV_OK) && w.mutations[0].type == types[i].kv &&
		    w.mutations[0].encoding == KV_ENC_LE64 &&
		    w.mutations[0].value.len == 8,
		    "%s decodes to its kv mutation type", types[i].name);

	T_OK(t_err_is(mut_decode(M_SET, 1, 3, 0, &w), KV_ERR_UNKNOWN_ENCODING),
	    "value encoding 0 is KV_ERR_UNKNOWN_ENCODING");
	T_OK(t_err_is(mut_decode(M_SET, 1, 3, 4, &w), KV_ERR_UNKNOWN_ENCODING),
	    "value encoding 4 is KV_ERR_UNKNOWN_ENCODING");
	T_OK(t_err_is(mut_decode(M_SET, 1, 3, VE_V8, &w), KV_OK) &&
	    w.mutations[0].encoding == KV_ENC_V8, "value encoding V8");
	T_OK(t_err_is(mut_decode(M_SET, 1, 8, VE_LE64, &w), KV_OK),
	    "KvU64 value of 8 bytes is accepted");
	T_OK(t_err_is(mut_decode(M_SET, 1, 7, VE_LE64, &w),
	    KV_ERR_INVALID_VALUE), "KvU64 value of 7 bytes is"
	    " KV_ERR_INVALID_VALUE");
	T_OK(t_err_is(mut_decode(M_SUM, 1, 9, VE_LE64, &w),
	    KV_ERR_INVALID_VALUE), "KvU64 sum operand of 9 bytes is"
	    " KV_ERR_INVALID_VALUE");
	T_OK(t_err_is(mut_decode(M_SET, 1, 0, VE_LE64, &w),
	    KV_ERR_INVALID_VALUE), "empty KvU64 value is"
	    " KV_ERR_INVALID_VALUE");

	aw_reset();
	m = aw_mut(M_SET, 1, 3, VE_BYTES);
	m->expire_at_ms = -2;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_EXPIRE_AT),
	    "expire_at_ms -2 is KV_ERR_INVALID_EXPIRE_AT");
	m->expire_at_ms = INT64_MIN;
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_EXPIRE_AT),
	    "expire_at_ms INT64_MIN is KV_ERR_INVALID_EXPIRE_AT");
	m->expire_at_ms = -1;
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.mutations[0].expire_at_ms == 0,
	    "expire_at_ms -1 means no expiry (0)");
	m->expire_at_ms = 0;
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.mutations[0].expire_at_ms == 0,
	    "expire_at_ms 0 means no expiry (0)");
	m->expire_at_ms = NOW + 60000;
	T_OK(t_err_is(aw_decode(&w), KV_OK) &&
	    w.mutations[0].expire_at_ms == NOW + 60000,
	    "a positive expire_at_ms is kept");

	aw_reset();
	m = aw_mut(M_SUM, 1, 11, VE_V8);
	m->sum_min = bin(5);
	m->sum_max = bin(6);
	m->sum_clamp = 1;
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.mutations[0].sum_min.len == 5 &&
	    w.mutations[0].sum_max.len == 6 && w.mutations[0].sum_clamp == 1,
	    "sum bounds and clamp are decoded");

	/* As in denokv, a check key may be as long as a read key. */
	aw_reset();
	aw_check(KV_MAX_READ_KEY_BYTES, 0);
	T_OK(t_err_is(aw_decode(&w), KV_OK), "check key of 2049 bytes is"
	    " accepted");
	aw.c[0].key = bin(KV_MAX_READ_KEY_BYTES + 1);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_KEY_TOO_LONG),
	    "check key of 2050 bytes is KV_ERR_KEY_TOO_LONG");

	aw_reset();
	c = aw_check(3, 0);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.n_checks == 1 &&
	    w.checks[0].must_be_absent == 1 && w.checks[0].key.len == 3,
	    "check with an empty versionstamp means must_be_absent");
	c->versionstamp = bin(KV_VERSIONSTAMP_BYTES);
	T_OK(t_err_is(aw_decode(&w), KV_OK) && w.checks[0].must_be_absent == 0 &&
	    memcmp(w.checks[0].versionstamp, fill, 10) == 0,
	    "check with a 10-byte versionstamp keeps it");
	c->versionstamp = bin(1);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_VERSIONSTAMP),
	    "check versionstamp of 1 byte is KV_ERR_INVALID_VERSIONSTAMP");
	c->versionstamp = bin(9);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_VERSIONSTAMP),
	    "check versionstamp of 9 bytes is KV_ERR_INVALID_VERSIONSTAMP");
	c->versionstamp = bin(11);
	T_OK(t_err_is(aw_decode(&w), KV_ERR_INVALID_VERSIONSTAMP),
	    "check versionstamp of 11 bytes is KV_ERR_INVALID_VERSIONSTAMP");

	T_OK(t_err_is(codec_decode_atomic_write((const uint8_t *)"", 0, NOW, &A,
	    &w), KV_OK) && w.n_checks == 0 && w.n_mutations == 0 &&
	    w.n_enqueues == 0, "an empty body is an empty atomic write");
}

/* --- watch ---------------------------------------------------------------- */

static void
test_watch(void)
{
	size_t	 n;

	T_OK(t_err_is(watch_decode(KV_MAX_WATCHED_KEYS, 4, &n), KV_OK) &&
	    n == 10, "10 watched keys are accepted");
	T_OK(t_err_is(watch_decode(KV_MAX_WATCHED_KEYS + 1, 4, &n),
	    KV_ERR_TOO_MANY_WATCHED_KEYS),
	    "11 watched keys are KV_ERR_TOO_MANY_WATCHED_KEYS");
	T_OK(t_err_is(watch_decode(1, KV_MAX_WRITE_KEY_BYTES, &n), KV_OK) &&
	    n == 1, "watched key of 2048 bytes is accepted");
	T_OK(t_err_is(watch_decode(1, KV_MAX_READ_KEY_BYTES, &n),
	    KV_ERR_KEY_TOO_LONG),
	    "watched key of 2049 bytes is KV_ERR_KEY_TOO_LONG");
}

/* --- malformed input ------------------------------------------------------ */

enum which { DEC_SR, DEC_AW, DEC_WATCH };

/*
 * Decodes a copy of body in a buffer of exactly len bytes, so that a read
 * past the end shows under valgrind and ASan. Returns the code, and in
 * *nfields the number of top-level entries decoded.
 */
static enum kv_err
decode_exact(enum which which, const uint8_t *body, size_t len,
    size_t *nfields)
{
	struct kv_range	*r;
	struct kv_bytes	*keys;
	struct kv_write	 w;
	uint8_t		*copy;
	enum kv_err	 err;

	*nfields = 0;
	if ((copy = malloc(len > 0 ? len : 1)) == NULL)
		return KV_ERR_NOMEM;
	if (len > 0)
		memcpy(copy, body, len);
	arena_reset(&A);
	switch (which) {
	case DEC_SR:
		err = codec_decode_snapshot_read(copy, len, &A, &r, nfields);
		break;
	case DEC_AW:
		err = codec_decode_atomic_write(copy, len, NOW, &A, &w);
		if (err == KV_OK)
			*nfields = w.n_checks + w.n_mutations + w.n_enqueues;
		break;
	default:
		err = codec_decode_watch(copy, len, &A, &keys, nfields);
		break;
	}
	free(copy);
	return err;
}

static int
is_bad_for_all(const uint8_t *body, size_t len)
{
	size_t	 n;
	int	 ok = 1;

	for (int i = DEC_SR; i <= DEC_WATCH; i++)
		if (!t_err_is(decode_exact((enum which)i, body, len, &n),
		    KV_ERR_BAD_PROTOBUF))
			ok = 0;
	return ok;
}

/* protobuf-c's own verdict: 1 if body unpacks, with its entries in *n. */
static int
pb_unpacks(enum which which, const uint8_t *body, size_t len, size_t *n)
{
	PbSnapshotRead	*sr_msg;
	PbAtomicWrite	*aw_msg;
	PbWatch		*w_msg;

	*n = 0;
	switch (which) {
	case DEC_SR:
		sr_msg = com__deno__kv__datapath__snapshot_read__unpack(NULL,
		    len, body);
		if (sr_msg == NULL)
			return 0;
		*n = sr_msg->n_ranges;
		com__deno__kv__datapath__snapshot_read__free_unpacked(sr_msg,
		    NULL);
		return 1;
	case DEC_AW:
		aw_msg = com__deno__kv__datapath__atomic_write__unpack(NULL,
		    len, body);
		if (aw_msg == NULL)
			return 0;
		*n = aw_msg->n_checks + aw_msg->n_mutations +
		    aw_msg->n_enqueues;
		com__deno__kv__datapath__atomic_write__free_unpacked(aw_msg,
		    NULL);
		return 1;
	default:
		w_msg = com__deno__kv__datapath__watch__unpack(NULL, len, body);
		if (w_msg == NULL)
			return 0;
		*n = w_msg->n_keys;
		com__deno__kv__datapath__watch__free_unpacked(w_msg, NULL);
		return 1;
	}
}

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Reads a base-128 varint; returns its length or 0. */
static size_t
varint(const uint8_t *p, size_t len, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < len && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0)
			return i + 1;
	}
	return 0;
}

/*
 * Every prefix of a valid body: exactly the prefixes that end between
 * top-level fields (all length-delimited here) decode, with as many
 * entries as fields; every other one is KV_ERR_BAD_PROTOBUF.
 */
static int
truncations_ok(enum which which, const uint8_t *body, size_t len,
    size_t *nbad)
{
	size_t	 next = 0, fields = 0, n, tl, ll;
	uint64_t tag, flen;
	int	 ok = 1;
	enum kv_err err;

	*nbad = 0;
	for (size_t cut = 0; cut <= len; cut++) {
		if (cut > next && next < len) {
			/* Find where the field starting at next ends. */
			tl = varint(body + next, len - next, &tag);
			ll = varint(body + next + tl, len - next - tl, &flen);
			if (tl == 0 || ll == 0 || (tag & 7) != 2)
				return 0;
			next += tl + ll + flen;
			fields++;
		}
		err = decode_exact(which, body, cut, &n);
		if (cut == next || cut == 0) {
			if (err != KV_OK || n != (cut == 0 ? 0 : fields)) {
				printf("#   prefix %zu: %s, %zu fields, want"
				    " OK, %zu\n", cut, kv_err_name(err), n,
				    cut == 0 ? 0 : fields);
				ok = 0;
			}
		} else if (err != KV_ERR_BAD_PROTOBUF) {
			printf("#   prefix %zu of %zu: %s\n", cut, len,
			    kv_err_name(err));
			ok = 0;
		} else
			(*nbad)++;
	}
	return ok;
}

static void
test_malformed(void)
{
	static const uint8_t	 ff[16] = {
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	};
	static const uint8_t	 over[] = { 0x0A, 0x10, 0x01 };
	static const uint8_t	 huge[] = { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF,
	    0x0F, 0x01 };
	static const uint8_t	 inner[] = { 0x0A, 0x03, 0x0A, 0x05, 0x01 };
	static const uint8_t	 badwire[] = { 0x0F, 0x01 };
	static const uint8_t	 endgroup[] = { 0x0C };
	uint8_t			 buf[64], *body;
	uint64_t		 seed = 0x9E3779B97F4A7C15ULL;
	size_t			 len, n, nbad, want, nrand_bad = 0;
	size_t			 nrand_good = 0;
	int			 clean = 1;
	PbEnqueue		*q;
	PbMutation		*m;
	enum kv_err		 err;

	T_OK(is_bad_for_all(ff, sizeof(ff)),
	    "16 bytes of 0xFF are KV_ERR_BAD_PROTOBUF for every message");
	T_OK(is_bad_for_all(over, sizeof(over)),
	    "a length prefix of 16 with 1 byte present is KV_ERR_BAD_PROTOBUF");
	T_OK(is_bad_for_all(huge, sizeof(huge)),
	    "a 4 GiB length prefix is KV_ERR_BAD_PROTOBUF");
	T_OK(is_bad_for_all(inner, sizeof(inner)), "a nested length prefix"
	    " past its message is KV_ERR_BAD_PROTOBUF");
	T_OK(is_bad_for_all(badwire, sizeof(badwire)),
	    "wire type 7 is KV_ERR_BAD_PROTOBUF");
	T_OK(is_bad_for_all(endgroup, sizeof(endgroup)),
	    "a lone end-group tag is KV_ERR_BAD_PROTOBUF");

	/*
	 * Random bodies, judged against protobuf-c's own unpack: what it
	 * cannot parse must be KV_ERR_BAD_PROTOBUF; what it parses must
	 * decode with as many entries, or be refused by a limit check (a
	 * 400 other than KV_ERR_BAD_PROTOBUF), never a 5xx.
	 */
	for (int i = 0; i < 3000; i++) {
		len = (size_t)(xorshift(&seed) % sizeof(buf));
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)xorshift(&seed);
		for (int k = DEC_SR; k <= DEC_WATCH; k++) {
			int	 parses = pb_unpacks((enum which)k, buf, len,
			    &want);

			err = decode_exact((enum which)k, buf, len, &n);
			if (!parses)
				nrand_bad++;
			else
				nrand_good++;
			if (parses ? (err == KV_OK ? n != want :
			    err == KV_ERR_BAD_PROTOBUF ||
			    kv_err_status(err) != 400) :
			    err != KV_ERR_BAD_PROTOBUF) {
				printf("#   random body %d as message %d:"
				    " %s with %zu entries; protobuf-c: %s,"
				    " %zu entries\n", i, k, kv_err_name(err),
				    n, parses ? "parses" : "cannot parse",
				    want);
				clean = 0;
			}
		}
	}
	T_OK(clean, "3000 random bodies x 3 messages: every verdict agrees"
	    " with protobuf-c's unpack (%zu parse, %zu do not)", nrand_good,
	    nrand_bad);
	T_OK(nrand_good > 0 && nrand_bad > 0,
	    "the random bodies include both kinds");

	/* A write with every kind of field, cut at every length. */
	aw_reset();
	aw_check(5, 10);
	aw_check(3, 0);
	aw_mut(M_SET, 4, 20, VE_V8)->expire_at_ms = NOW;
	m = aw_mut(M_SUM, 2, 11, VE_V8);
	m->sum_max = bin(11);
	m->sum_clamp = 1;
	aw_mut(M_DELETE, 3, 0, NO_VALUE);
	q = aw_enqueue(30, NOW + 1000);
	q_deadletter(q, 2, 6);
	q_backoff(q, 3, 1000);
	aw_enqueue(0, NOW);
	body = packed_copy(&aw.msg.base, &len);
	T_OK(body != NULL && truncations_ok(DEC_AW, body, len, &nbad) &&
	    nbad + 8 == len + 1, "every prefix of a %zu-byte AtomicWrite is"
	    " KV_ERR_BAD_PROTOBUF except the 8 at field boundaries", len);
	free(body);

	sr_reset();
	sr_range(3, 4, 10);
	sr_range(0, 1, 1)->reverse = 1;
	sr_range(2049, 2049, 300);
	body = packed_copy(&sr.msg.base, &len);
	T_OK(body != NULL && truncations_ok(DEC_SR, body, len, &nbad) &&
	    nbad + 4 == len + 1, "every prefix of a %zu-byte SnapshotRead is"
	    " KV_ERR_BAD_PROTOBUF except the 4 at field boundaries", len);
	free(body);
}

/* --- encoding responses --------------------------------------------------- */

static void
test_encode(void)
{
	struct kv_entry		 e[2];
	struct kv_range_result	 rr[2];
	struct kv_write_result	 wr;
	struct codec_out	 out;
	PbSnapshotReadOutput	*so;
	PbAtomicWriteOutput	*ao;
	uint32_t		 failed[2] = { 1, 3 };
	static const uint8_t	 vs[2][KV_VERSIONSTAMP_BYTES] = {
		{ 0, 0, 0, 0, 0, 0, 0, 7, 0, 0 },
		{ 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
	};
	int			 ok;

	memset(e, 0, sizeof(e));
	e[0].key = (struct kv_bytes){ (const uint8_t *)"\x02" "a\x00", 3 };
	e[0].value = (struct kv_bytes){ fill, 300 };
	e[0].encoding = KV_ENC_V8;
	memcpy(e[0].versionstamp, vs[0], KV_VERSIONSTAMP_BYTES);
	e[1].key = (struct kv_bytes){ (const uint8_t *)"b", 1 };
	e[1].value = (struct kv_bytes){ (const uint8_t *)"\x01\0\0\0\0\0\0\0",
	    8 };
	e[1].encoding = KV_ENC_LE64;
	memcpy(e[1].versionstamp, vs[1], KV_VERSIONSTAMP_BYTES);
	rr[0] = (struct kv_range_result){ e, 2 };
	rr[1] = (struct kv_range_result){ NULL, 0 };

	arena_reset(&A);
	T_OK(t_err_is(codec_encode_snapshot_read(rr, 2, &A, &out), KV_OK),
	    "encode a snapshot read output");
	so = com__deno__kv__datapath__snapshot_read_output__unpack(NULL,
	    out.len, out.p);
	T_OK(so != NULL, "the output unpacks");
	if (so != NULL) {
		T_EQ(so->read_is_strongly_consistent, 1,
		    "read_is_strongly_consistent is set");
		T_EQ(so->status, 1, "status is SR_SUCCESS (1)");
		T_EQ(so->read_disabled, 0, "read_disabled is not set");
		T_OK(so->n_ranges == 2 && so->ranges[0]->n_values == 2 &&
		    so->ranges[1]->n_values == 0,
		    "two ranges with two and zero entries");
		ok = so->n_ranges == 2 && so->ranges[0]->n_values == 2;
		for (int i = 0; ok && i < 2; i++) {
			const Com__Deno__Kv__Datapath__KvEntry *p =
			    so->ranges[0]->values[i];

			ok = p->key.len == e[i].key.len &&
			    memcmp(p->key.data, e[i].key.p,
			    e[i].key.len) == 0 &&
			    p->value.len == e[i].value.len &&
			    memcmp(p->value.data, e[i].value.p,
			    e[i].value.len) == 0 &&
			    (int)p->encoding == (int)e[i].encoding &&
			    p->versionstamp.len == KV_VERSIONSTAMP_BYTES &&
			    memcmp(p->versionstamp.data, vs[i],
			    KV_VERSIONSTAMP_BYTES) == 0;
		}
		T_OK(ok, "entries round-trip: key, value, encoding,"
		    " versionstamp");
		com__deno__kv__datapath__snapshot_read_output__free_unpacked(so,
		    NULL);
	}

	arena_reset(&A);
	so = NULL;
	T_OK(t_err_is(codec_encode_snapshot_read(rr, 0, &A, &out), KV_OK) &&
	    (so = com__deno__kv__datapath__snapshot_read_output__unpack(NULL,
	    out.len, out.p)) != NULL && so->n_ranges == 0 && so->status == 1 &&
	    so->read_is_strongly_consistent == 1,
	    "a read of no ranges encodes a successful empty output");
	if (so != NULL)
		com__deno__kv__datapath__snapshot_read_output__free_unpacked(so,
		    NULL);

	memset(&wr, 0, sizeof(wr));
	wr.committed = 1;
	memcpy(wr.versionstamp, vs[1], KV_VERSIONSTAMP_BYTES);
	arena_reset(&A);
	T_OK(t_err_is(codec_encode_atomic_write(&wr, &A, &out), KV_OK),
	    "encode a committed atomic write");
	ao = com__deno__kv__datapath__atomic_write_output__unpack(NULL,
	    out.len, out.p);
	T_OK(ao != NULL, "the output unpacks");
	if (ao != NULL) {
		T_EQ(ao->status, 1, "status is AW_SUCCESS (1)");
		T_OK(ao->versionstamp.len == KV_VERSIONSTAMP_BYTES &&
		    memcmp(ao->versionstamp.data, vs[1],
		    KV_VERSIONSTAMP_BYTES) == 0,
		    "versionstamp is the 10 committed bytes");
		T_EQ(ao->n_failed_checks, 0, "no failed checks");
		com__deno__kv__datapath__atomic_write_output__free_unpacked(ao,
		    NULL);
	}

	memset(&wr, 0, sizeof(wr));
	wr.committed = 0;
	wr.failed_checks = failed;
	wr.n_failed_checks = 2;
	arena_reset(&A);
	T_OK(t_err_is(codec_encode_atomic_write(&wr, &A, &out), KV_OK),
	    "encode a failed atomic write");
	ao = com__deno__kv__datapath__atomic_write_output__unpack(NULL,
	    out.len, out.p);
	T_OK(ao != NULL, "the output unpacks");
	if (ao != NULL) {
		T_EQ(ao->status, 2, "status is AW_CHECK_FAILURE (2)");
		T_OK(ao->n_failed_checks == 2 && ao->failed_checks[0] == 1 &&
		    ao->failed_checks[1] == 3, "failed_checks are 1 and 3");
		T_EQ(ao->versionstamp.len, 0, "no versionstamp");
		com__deno__kv__datapath__atomic_write_output__free_unpacked(ao,
		    NULL);
	}
}

/* --- routing -------------------------------------------------------------- */

static int
route_is(const char *path, enum route want, size_t want_base)
{
	size_t		 base = 999;
	const char	*name = NULL;
	enum route	 got = route_path(path, &base, &name);

	if (got != want || base != want_base || name == NULL) {
		printf("#   %s: route %d base %zu, want %d base %zu\n", path,
		    (int)got, base, (int)want, want_base);
		return 0;
	}
	return 1;
}

static void
test_route(void)
{
	char	 id1[DATABASE_ID_LEN + 1], id2[DATABASE_ID_LEN + 1];
	char	 id3[DATABASE_ID_LEN + 1];

	T_OK(route_is("/", ROUTE_METADATA, 0), "\"/\" is metadata, base \"\"");
	T_OK(route_is("/kv/", ROUTE_METADATA, 3),
	    "\"/kv/\" is metadata, base \"/kv\"");
	T_OK(route_is("/kv", ROUTE_METADATA, 3),
	    "\"/kv\" is metadata, base \"/kv\"");
	T_OK(route_is("/v2/snapshot_read", ROUTE_SNAPSHOT_READ, 0),
	    "\"/v2/snapshot_read\" is snapshot read, base \"\"");
	T_OK(route_is("/v2/atomic_write", ROUTE_ATOMIC_WRITE, 0),
	    "\"/v2/atomic_write\" is atomic write, base \"\"");
	T_OK(route_is("/kv/v2/atomic_write", ROUTE_ATOMIC_WRITE, 3),
	    "\"/kv/v2/atomic_write\" is atomic write, base \"/kv\"");
	T_OK(route_is("/v2/watch", ROUTE_WATCH, 0),
	    "\"/v2/watch\" is watch, base \"\"");
	T_OK(route_is("/a/b/v2/snapshot_read", ROUTE_SNAPSHOT_READ, 4),
	    "\"/a/b/v2/snapshot_read\" has base \"/a/b\"");
	/* A mount may contain /v2/ (issue 7, defect 10). */
	T_OK(route_is("/app/v2/kv/", ROUTE_METADATA, 10),
	    "\"/app/v2/kv/\" is a mount (metadata), base \"/app/v2/kv\"");
	T_OK(route_is("/v2/kv", ROUTE_METADATA, 6),
	    "\"/v2/kv\" is a mount (metadata), base \"/v2/kv\"");
	T_OK(route_is("/app/v2/kv/v2/snapshot_read", ROUTE_SNAPSHOT_READ, 10),
	    "\"/app/v2/kv/v2/snapshot_read\" is snapshot read, base"
	    " \"/app/v2/kv\"");
	T_OK(route_is("/v2/v2/watch", ROUTE_WATCH, 3),
	    "\"/v2/v2/watch\" is watch under the mount \"/v2\"");
	T_OK(route_is("/x/v2/atomic_write_x", ROUTE_METADATA, 20),
	    "\"/x/v2/atomic_write_x\" is no endpoint: a mount");

	memset(id1, 'x', sizeof(id1));
	database_id_for("/var/lib/denokv/a.sqlite3", id1);
	database_id_for("/var/lib/denokv/a.sqlite3", id2);
	database_id_for("/var/lib/denokv/b.sqlite3", id3);
	T_OK(t_is_uuid(id1), "database id is UUID-shaped (%s)", id1);
	T_OK(strcmp(id1, id2) == 0, "database id is stable for a path");
	T_OK(t_is_uuid(id3) && strcmp(id1, id3) != 0,
	    "another path has another database id (%s)", id3);
	database_id_for("/", id2);
	T_OK(t_is_uuid(id2) && strcmp(id1, id2) != 0,
	    "the root path has its own UUID-shaped id");
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(fill); i++)
		fill[i] = (uint8_t)('a' + i % 26);
	arena_init(&A, 64 * 1024);
	test_read_limits();
	test_write_limits();
	test_total_bytes();
	test_queue_limits();
	test_mutations();
	test_watch();
	test_malformed();
	test_encode();
	test_route();
	arena_fini(&A);
	return t_done();
}
