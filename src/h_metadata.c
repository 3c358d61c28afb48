/*
 * h_metadata.c: the KV Connect metadata exchange, POST <base>.
 *
 * The client offers protocol versions; the server picks the highest both
 * speak (3, else 2) and answers with the database id, the data-path
 * endpoint, the token to use there and when this answer expires. The
 * endpoint is <base>/v2, computed from the path the request arrived on, so
 * a mount under /kv/ advertises /kv/v2. That path has been normalised
 * (http_normalise_path): it starts with one slash and has no dot segment
 * or backslash, so the URL is always a path on the origin the client
 * used, never "//other.host/...", to which the client would send the
 * token. The caller has routed the request to its database (whose id is
 * answered) and checked the token before reading the body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "codec.h"
#include "handlers.h"
#include "http.h"
#include "kv_limits.h"

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
	const char	*auth, *token;
	char		*text;
	json_t		*doc;
	enum kv_err	 err;
	int		 version = 0, queues = 0, rc;

	if ((err = codec_decode_metadata_request(rq->body, rq->bodylen,
	    &version, &queues)) != KV_OK)
		return err;
	/*
	 * The data path takes the token the client authenticated with here:
	 * the configuration may hold only its hash. admit() has checked the
	 * header's "Bearer " form.
	 */
	if ((auth = http_param(rq->conn, "HTTP_AUTHORIZATION")) == NULL ||
	    strlen(auth) < 7)
		return KV_ERR_AUTH_MALFORMED;
	token = auth + 7;
	if (rq->baselen + sizeof("/v2") > sizeof(url))
		return KV_ERR_NOT_FOUND;
	snprintf(url, sizeof(url), "%.*s/v2", (int)rq->baselen, rq->base);
	/* Same origin: a single leading slash (see above). */
	if (url[0] != '/' || url[1] == '/' || strchr(url, '\\') != NULL)
		return KV_ERR_BAD_PATH;
	iso8601_utc(time(NULL) + KV_METADATA_TTL_SECONDS, expires,
	    sizeof(expires));
	doc = json_pack("{s:i, s:s, s:[{s:s, s:s}], s:s, s:s}",
	    "version", version,
	    "databaseId", rq->dbe->id,
	    "endpoints", "url", url, "consistency", "strong",
	    "token", token,
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
	rc = http_reply(rq->conn, 200, "application/json", "", text,
	    strlen(text));
	free(text);
	(void)rc;	/* a client that went away is not an error here */
	return KV_OK;
}
