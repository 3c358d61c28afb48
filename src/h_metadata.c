/*
 * h_metadata.c: the KV Connect metadata exchange, POST <base>.
 *
 * The client offers protocol versions; the server picks the highest both
 * speak (3, else 2) and answers with the database id, the data-path
 * endpoint, the token to use there and when this answer expires. The
 * endpoint is <base>/v2, computed from the path the request arrived on, so
 * a mount under /kv/ advertises /kv/v2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "handlers.h"
#include "http.h"
#include "kv_limits.h"

/* The highest version offered that this server speaks, or an error. */
static enum kv_err
negotiate(const uint8_t *body, size_t len, int *version, int *queues)
{
	json_t		*doc, *versions, *v;
	json_error_t	 jerr;
	size_t		 i;
	int		 has2 = 0, has3 = 0, ok = 1;

	/* No body means a client from before version 2. */
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

static void
iso8601_utc(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

enum kv_err
h_metadata(struct request *rq)
{
	char		 url[4096], expires[64];
	char		*text;
	json_t		*doc;
	enum kv_err	 err;
	int		 version = 0, queues = 0, rc;

	if ((err = http_check_bearer(rq->fcgi, rq->srv->conf->access_token))
	    != KV_OK)
		return err;
	if ((err = negotiate(rq->body, rq->bodylen, &version, &queues)) !=
	    KV_OK)
		return err;
	if (rq->baselen + sizeof("/v2") > sizeof(url))
		return KV_ERR_NOT_FOUND;
	snprintf(url, sizeof(url), "%.*s/v2", (int)rq->baselen, rq->base);
	iso8601_utc(time(NULL) + KV_METADATA_TTL_SECONDS, expires,
	    sizeof(expires));
	doc = json_pack("{s:i, s:s, s:[{s:s, s:s}], s:s, s:s}",
	    "version", version,
	    "databaseId", rq->srv->database_id,
	    "endpoints", "url", url, "consistency", "strong",
	    "token", rq->srv->conf->access_token,
	    "expiresAt", expires);
	/* queue delivery, this server's extension (docs/queues.md) */
	if (doc != NULL && queues && json_object_set_new(doc,
	    "denokvFcgiQueues", json_pack("{s:i, s:s+}", "version", 1, "url",
	    url, "/queue")) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	if (doc == NULL)
		return KV_ERR_NOMEM;
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (text == NULL)
		return KV_ERR_NOMEM;
	rc = http_reply(rq->fcgi, 200, "application/json", "", text,
	    strlen(text));
	free(text);
	(void)rc;	/* a client that went away is not an error here */
	return KV_OK;
}
