/*
 * queue.c: the JSON bodies and lease ids of queue delivery (see queue.h).
 *
 * Requests are parsed with jansson in strict mode: duplicate keys, unknown
 * keys, wrong types and values out of their documented range are all
 * KV_ERR_QUEUE_REQUEST, so a client's typo is an error and not a silently
 * ignored field.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "queue.h"

/* --- base64 (RFC 4648, standard alphabet, padded) ---------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
base64(const uint8_t *p, size_t n)
{
	size_t	 i, o = 0;
	char	*s;

	if ((s = malloc((n + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];

		s[o++] = b64[v >> 18];
		s[o++] = b64[(v >> 12) & 63];
		s[o++] = b64[(v >> 6) & 63];
		s[o++] = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 |
		    (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		s[o++] = b64[v >> 18];
		s[o++] = b64[(v >> 12) & 63];
		s[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		s[o++] = '=';
	}
	s[o] = '\0';
	return s;
}

/* --- requests ------------------------------------------------------------------ */

static json_t *
load(const uint8_t *body, size_t len)
{
	json_error_t	 jerr;
	json_t		*doc;

	doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
	    &jerr);
	if (doc != NULL && !json_is_object(doc)) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static int
in_range(json_int_t v, json_int_t lo, json_int_t hi)
{
	return v >= lo && v <= hi;
}

enum kv_err
queue_decode_lease(const uint8_t *body, size_t len,
    struct queue_lease_req *r)
{
	json_int_t	 max = QUEUE_DEFAULT_BATCH;
	json_int_t	 wait = QUEUE_DEFAULT_WAIT_MS;
	json_int_t	 lease = QUEUE_DEFAULT_LEASE_MS;
	json_error_t	 jerr;
	json_t		*doc;
	int		 rc;

	if ((doc = load(body, len)) == NULL)
		return KV_ERR_QUEUE_REQUEST;
	rc = json_unpack_ex(doc, &jerr, JSON_STRICT, "{s?I, s?I, s?I}",
	    "max", &max, "waitMs", &wait, "leaseMs", &lease);
	json_decref(doc);
	if (rc != 0 || !in_range(max, 1, QUEUE_MAX_BATCH) || wait < 0 ||
	    !in_range(lease, QUEUE_MIN_LEASE_MS, QUEUE_MAX_LEASE_MS))
		return KV_ERR_QUEUE_REQUEST;
	r->max = (size_t)max;
	/* The server caps the wait: a longer one is not an error. */
	r->wait_ms = wait > QUEUE_MAX_WAIT_MS ? QUEUE_MAX_WAIT_MS : wait;
	r->lease_ms = lease;
	return KV_OK;
}

/* {"id": "<lease id>", "success": bool} into one outcome. */
static enum kv_err
decode_outcome(json_t *obj, struct arena *a, struct kv_queue_outcome *o)
{
	json_error_t	 jerr;
	const char	*lease_id = NULL;
	int		 success = 0;

	if (json_unpack_ex(obj, &jerr, JSON_STRICT, "{s:s, s:b}", "id",
	    &lease_id, "success", &success) != 0)
		return KV_ERR_QUEUE_REQUEST;
	o->success = success;
	o->result = KV_OK;
	return queue_parse_lease_id(lease_id, a, &o->id, &o->lease_until_ms);
}

enum kv_err
queue_decode_finish(const uint8_t *body, size_t len, struct arena *a,
    struct queue_finish_req *r)
{
	json_error_t	 jerr;
	json_t		*doc, *list = NULL, *item;
	enum kv_err	 err = KV_OK;
	size_t		 i;

	if ((doc = load(body, len)) == NULL)
		return KV_ERR_QUEUE_REQUEST;
	r->batch = json_object_get(doc, "results") != NULL;
	if (r->batch && (json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:o}",
	    "results", &list) != 0 || !json_is_array(list) ||
	    json_array_size(list) < 1 ||
	    json_array_size(list) > QUEUE_MAX_BATCH)) {
		json_decref(doc);
		return KV_ERR_QUEUE_REQUEST;
	}
	r->n = r->batch ? json_array_size(list) : 1;
	if ((r->o = arena_alloc(a, r->n * sizeof(*r->o))) == NULL)
		err = KV_ERR_NOMEM;
	else if (!r->batch)
		err = decode_outcome(doc, a, &r->o[0]);
	else
		json_array_foreach(list, i, item) {
			if ((err = decode_outcome(item, a, &r->o[i])) != KV_OK)
				break;
		}
	json_decref(doc);
	return err;
}

enum kv_err
queue_decode_renew(const uint8_t *body, size_t len, struct arena *a,
    struct queue_renew_req *r)
{
	json_int_t	 lease = QUEUE_DEFAULT_LEASE_MS;
	json_error_t	 jerr;
	json_t		*doc;
	const char	*lease_id = NULL;
	enum kv_err	 err;
	int		 rc;

	if ((doc = load(body, len)) == NULL)
		return KV_ERR_QUEUE_REQUEST;
	rc = json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:s, s?I}",
	    "id", &lease_id, "leaseMs", &lease);
	if (rc != 0 || !in_range(lease, QUEUE_MIN_LEASE_MS, QUEUE_MAX_LEASE_MS))
		err = KV_ERR_QUEUE_REQUEST;
	else
		err = queue_parse_lease_id(lease_id, a, &r->id, &r->until);
	json_decref(doc);
	r->lease_ms = lease;
	return err;
}

/* --- lease ids ------------------------------------------------------------------ */

enum kv_err
queue_parse_lease_id(const char *lease_id, struct arena *a, const char **id,
    int64_t *until)
{
	const char	*colon = strrchr(lease_id, ':');
	char		*end, *copy;
	size_t		 idlen;
	long long	 v;

	if (colon == NULL || colon == lease_id)
		return KV_ERR_QUEUE_ID;
	idlen = (size_t)(colon - lease_id);
	if (idlen > KV_QUEUE_ID_MAX || colon[1] < '0' || colon[1] > '9' ||
	    strlen(colon + 1) > 18)
		return KV_ERR_QUEUE_ID;
	errno = 0;
	v = strtoll(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return KV_ERR_QUEUE_ID;
	if ((copy = arena_alloc(a, idlen + 1)) == NULL)
		return KV_ERR_NOMEM;
	memcpy(copy, lease_id, idlen);
	copy[idlen] = '\0';
	*id = copy;
	*until = v;
	return KV_OK;
}

static int
lease_id(char *buf, size_t len, const char *id, int64_t until)
{
	int	 n = snprintf(buf, len, "%s:%lld", id, (long long)until);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* --- answers ------------------------------------------------------------------ */

static char *
dump(json_t *doc, size_t *len)
{
	char	*s;

	if (doc == NULL)
		return NULL;
	s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (s != NULL)
		*len = strlen(s);
	return s;
}

/* A document {"field": []}, with *list its array; NULL if out of memory. */
static json_t *
doc_with_list(const char *field, json_t **list)
{
	json_t	*doc;

	if ((doc = json_object()) == NULL ||
	    (*list = json_array()) == NULL ||
	    json_object_set_new(doc, field, *list) != 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* dump, or NULL (and doc freed) if filling the document failed. */
static char *
dump_if(int ok, json_t *doc, size_t *len)
{
	if (!ok) {
		json_decref(doc);
		return NULL;
	}
	return dump(doc, len);
}

char *
queue_encode_lease(const struct kv_queue_msg *m, size_t n, size_t *len)
{
	json_t	*doc, *list, *item;
	char	 lid[KV_QUEUE_ID_MAX + 24];
	char	*payload;
	int	 ok = 1;

	if ((doc = doc_with_list("messages", &list)) == NULL)
		return NULL;
	for (size_t i = 0; i < n && ok; i++) {
		if (lease_id(lid, sizeof(lid), m[i].id, m[i].lease_until_ms) !=
		    0 || (payload = base64(m[i].payload.p, m[i].payload.len)) ==
		    NULL) {
			ok = 0;
			break;
		}
		item = json_pack("{s:s, s:s, s:i, s:I, s:I}", "id", lid,
		    "payload", payload, "attempt", m[i].attempt,
		    "dueAt", (json_int_t)m[i].due_ms,
		    "leaseExpiresAt", (json_int_t)m[i].lease_until_ms);
		free(payload);
		ok = item != NULL && json_array_append_new(list, item) == 0;
	}
	return dump_if(ok, doc, len);
}

char *
queue_encode_finish(const struct kv_queue_outcome *o, size_t n, size_t *len)
{
	json_t	*doc, *list, *item;
	int	 ok = 1;

	if ((doc = doc_with_list("results", &list)) == NULL)
		return NULL;
	for (size_t i = 0; i < n && ok; i++) {
		if (o[i].result == KV_OK)
			item = json_pack("{s:i}", "status", 200);
		else
			item = json_pack("{s:i, s:s}", "status",
			    kv_err_status(o[i].result), "message",
			    kv_err_message(o[i].result));
		ok = item != NULL && json_array_append_new(list, item) == 0;
	}
	return dump_if(ok, doc, len);
}

char *
queue_encode_renew(const char *id, int64_t until, size_t *len)
{
	char	 lid[KV_QUEUE_ID_MAX + 24];

	if (lease_id(lid, sizeof(lid), id, until) != 0)
		return NULL;
	return dump(json_pack("{s:s, s:I}", "id", lid, "leaseExpiresAt",
	    (json_int_t)until), len);
}
