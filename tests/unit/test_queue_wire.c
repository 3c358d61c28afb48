/*
 * test_queue_wire.c: unit tests of the queue extension's JSON bodies and
 * lease ids (src/queue.c), printing TAP. Focus: every bound of the lease
 * request at its edge, strictness (unknown and duplicate fields, wrong
 * types), single and batch finishes, lease id parsing, and the encoded
 * answers (base64 payloads of every length remainder).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "queue.h"
#include "testhelp.h"

static struct arena	 A;

static enum kv_err
lease(const char *json, struct queue_lease_req *r)
{
	return queue_decode_lease((const uint8_t *)json, strlen(json), r);
}

static enum kv_err
finish(const char *json, struct queue_finish_req *r)
{
	arena_reset(&A);
	return queue_decode_finish((const uint8_t *)json, strlen(json), &A, r);
}

static void
test_lease_request(void)
{
	struct queue_lease_req	 r;

	T_EQ(lease("{}", &r), KV_OK, "empty object: defaults");
	T_OK(r.max == QUEUE_DEFAULT_BATCH && r.wait_ms == QUEUE_DEFAULT_WAIT_MS &&
	    r.lease_ms == QUEUE_DEFAULT_LEASE_MS, "defaults are 1, 30 s, 30 s");
	T_EQ(lease("{\"max\":1,\"waitMs\":0,\"leaseMs\":1000}", &r), KV_OK,
	    "lower bounds");
	T_EQ(lease("{\"max\":100,\"leaseMs\":600000}", &r), KV_OK,
	    "upper bounds");
	T_EQ(lease("{\"max\":0}", &r), KV_ERR_QUEUE_REQUEST, "max 0");
	T_EQ(lease("{\"max\":101}", &r), KV_ERR_QUEUE_REQUEST, "max 101");
	T_EQ(lease("{\"leaseMs\":999}", &r), KV_ERR_QUEUE_REQUEST,
	    "leaseMs 999");
	T_EQ(lease("{\"leaseMs\":600001}", &r), KV_ERR_QUEUE_REQUEST,
	    "leaseMs 600001");
	T_EQ(lease("{\"waitMs\":-1}", &r), KV_ERR_QUEUE_REQUEST, "waitMs -1");
	T_EQ(lease("{\"waitMs\":60001}", &r), KV_OK, "waitMs past the cap");
	T_EQ(r.wait_ms, QUEUE_MAX_WAIT_MS, "is capped at 60 s");
	T_EQ(lease("{\"max\":1.5}", &r), KV_ERR_QUEUE_REQUEST, "a fraction");
	T_EQ(lease("{\"max\":\"2\"}", &r), KV_ERR_QUEUE_REQUEST, "a string");
	T_EQ(lease("{\"mx\":2}", &r), KV_ERR_QUEUE_REQUEST, "an unknown field");
	T_EQ(lease("{\"max\":2,\"max\":3}", &r), KV_ERR_QUEUE_REQUEST,
	    "a duplicate field");
	T_EQ(lease("[]", &r), KV_ERR_QUEUE_REQUEST, "not an object");
	T_EQ(lease("", &r), KV_ERR_QUEUE_REQUEST, "empty body");
	T_EQ(lease("{\"max\":2", &r), KV_ERR_QUEUE_REQUEST, "truncated");
}

static void
test_lease_ids(void)
{
	const char	*id = NULL;
	int64_t		 until = 0;
	char		 longid[KV_QUEUE_ID_MAX + 40];

	arena_reset(&A);
	T_EQ(queue_parse_lease_id("abc:123", &A, &id, &until), KV_OK,
	    "id:until");
	T_OK(id != NULL && strcmp(id, "abc") == 0 && until == 123,
	    "split at the colon");
	T_EQ(queue_parse_lease_id("a:b:77", &A, &id, &until), KV_OK,
	    "the last colon splits");
	T_OK(strcmp(id, "a:b") == 0 && until == 77, "id keeps its colons");
	T_EQ(queue_parse_lease_id("abc", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "no colon");
	T_EQ(queue_parse_lease_id(":123", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "empty id");
	T_EQ(queue_parse_lease_id("abc:", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "empty lease end");
	T_EQ(queue_parse_lease_id("abc:-5", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "negative lease end");
	T_EQ(queue_parse_lease_id("abc:0", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "zero lease end");
	T_EQ(queue_parse_lease_id("abc:12x", &A, &id, &until), KV_ERR_QUEUE_ID,
	    "trailing garbage");
	T_EQ(queue_parse_lease_id("abc:1234567890123456789", &A, &id, &until),
	    KV_ERR_QUEUE_ID, "19 digits");
	memset(longid, 'a', KV_QUEUE_ID_MAX + 1);
	strcpy(longid + KV_QUEUE_ID_MAX + 1, ":5");
	T_EQ(queue_parse_lease_id(longid, &A, &id, &until), KV_ERR_QUEUE_ID,
	    "an id one character too long");
	strcpy(longid + KV_QUEUE_ID_MAX, ":5");
	T_EQ(queue_parse_lease_id(longid, &A, &id, &until), KV_OK,
	    "an id of the longest length");
}

static void
test_finish_request(void)
{
	struct queue_finish_req	 r;
	char			 big[8192];
	size_t			 n = 0;

	T_EQ(finish("{\"id\":\"m:5\",\"success\":true}", &r), KV_OK, "single");
	T_OK(!r.batch && r.n == 1 && r.o[0].success == 1 &&
	    strcmp(r.o[0].id, "m") == 0 && r.o[0].lease_until_ms == 5,
	    "one outcome, not a batch");
	T_EQ(finish("{\"id\":\"m:5\"}", &r), KV_ERR_QUEUE_REQUEST,
	    "success missing");
	T_EQ(finish("{\"id\":\"m:5\",\"success\":1}", &r), KV_ERR_QUEUE_REQUEST,
	    "success not a boolean");
	T_EQ(finish("{\"id\":\"m\",\"success\":true}", &r), KV_ERR_QUEUE_ID,
	    "malformed id");
	T_EQ(finish("{\"results\":[{\"id\":\"a:1\",\"success\":true},"
	    "{\"id\":\"b:2\",\"success\":false}]}", &r), KV_OK, "a batch");
	T_OK(r.batch && r.n == 2 && r.o[1].success == 0 &&
	    strcmp(r.o[1].id, "b") == 0, "two outcomes in order");
	T_EQ(finish("{\"results\":[]}", &r), KV_ERR_QUEUE_REQUEST,
	    "empty batch");
	T_EQ(finish("{\"results\":{}}", &r), KV_ERR_QUEUE_REQUEST,
	    "results not an array");
	T_EQ(finish("{\"results\":[{\"id\":\"a:1\",\"success\":true,\"x\":1}]}",
	    &r), KV_ERR_QUEUE_REQUEST, "unknown field in an outcome");
	T_EQ(finish("{\"results\":[{\"id\":\"a:1\",\"success\":true}],"
	    "\"id\":\"a:1\"}", &r), KV_ERR_QUEUE_REQUEST,
	    "batch and single forms mixed");
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"results\":[");
	for (int i = 0; i < QUEUE_MAX_BATCH + 1; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		    "%s{\"id\":\"i%d:1\",\"success\":true}", i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "]}");
	T_EQ(finish(big, &r), KV_ERR_QUEUE_REQUEST, "101 outcomes");
	n = 0;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"results\":[");
	for (int i = 0; i < QUEUE_MAX_BATCH; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		    "%s{\"id\":\"i%d:1\",\"success\":true}", i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "]}");
	T_EQ(finish(big, &r), KV_OK, "100 outcomes");
	T_EQ(r.n, QUEUE_MAX_BATCH, "all of them");
}

static void
test_answers(void)
{
	static const char *const want[] = { "", "QQ==", "QUI=", "QUJD",
	    "QUJDRA==" };
	struct kv_queue_msg	 m = { .attempt = 2, .due_ms = 10,
	    .lease_until_ms = 20 };
	struct kv_queue_outcome	 o[2] = {
		{ .result = KV_OK },
		{ .result = KV_ERR_QUEUE_LEASE_EXPIRED },
	};
	char			 expect[256];
	char			*s;
	size_t			 len;

	strcpy(m.id, "x");
	for (int n = 0; n <= 4; n++) {
		m.payload = (struct kv_bytes){ (const uint8_t *)"ABCD",
		    (size_t)n };
		s = queue_encode_lease(&m, 1, &len);
		snprintf(expect, sizeof(expect), "{\"messages\":[{\"id\":\"x:20\","
		    "\"payload\":\"%s\",\"attempt\":2,\"dueAt\":10,"
		    "\"leaseExpiresAt\":20}]}", want[n]);
		T_OK(s != NULL && strcmp(s, expect) == 0 && len == strlen(s),
		    "lease answer, %d payload bytes: %s", n, s ? s : "NULL");
		free(s);
	}
	s = queue_encode_lease(NULL, 0, &len);
	T_OK(s != NULL && strcmp(s, "{\"messages\":[]}") == 0,
	    "an empty answer");
	free(s);
	s = queue_encode_finish(o, 2, &len);
	T_OK(s != NULL && strstr(s, "{\"status\":200}") != NULL &&
	    strstr(s, "\"status\":410") != NULL && strstr(s, "expired") != NULL,
	    "batch answer: %s", s ? s : "NULL");
	free(s);
	s = queue_encode_renew("x", 99, &len);
	T_OK(s != NULL && strcmp(s, "{\"id\":\"x:99\",\"leaseExpiresAt\":99}") ==
	    0, "renew answer");
	free(s);
}

int
main(void)
{
	arena_init(&A, 16 * 1024);
	test_lease_request();
	test_lease_ids();
	test_finish_request();
	test_answers();
	arena_fini(&A);
	return t_done();
}
