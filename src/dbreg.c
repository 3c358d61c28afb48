/*
 * dbreg.c: the database registry (see dbreg.h).
 *
 * Routing is an exact match of the request's mount part against each
 * database's mount: route_path has already taken the endpoint suffix and
 * trailing slashes off, so "the longest mount that is a prefix at a '/'
 * boundary, followed by nothing, '/' or an endpoint" is the same as "the
 * mount equal to what is left". Anything else under a mount (a typo, an
 * unknown endpoint) thus finds no database: 404.
 *
 * Handles are closed least recently used first: a tick counts uses, and
 * the open handle with the lowest tick goes. The scan is linear over the
 * configured databases, which is nothing next to opening a database.
 *
 * Watch hubs: one per database with streams or long polls in this worker,
 * all woken by one doorbell relay thread (watch.h), which pokes a hub only
 * when its own database's words moved.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dbreg.h"
#include "http.h"
#include "log.h"
#include "watch.h"

/*
 * A name-based UUID (RFC 9562 version 8 layout) from two FNV-1a hashes of
 * the absolute path: stable across restarts, different per database. The
 * one-database form keeps it so that deployments keep their id.
 */
void
database_id_for(const char *path, char out[DBREG_ID_LEN + 1])
{
	uint64_t	 h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
	uint8_t		 b[16];

	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		h1 = (h1 ^ *p) * 0x100000001b3ULL;
		h2 = (h2 ^ *p) * 0x100000001b3ULL;
		h2 ^= h2 >> 29;
	}
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(h1 >> (56 - 8 * i));
		b[8 + i] = (uint8_t)(h2 >> (56 - 8 * i));
	}
	b[6] = (b[6] & 0x0f) | 0x80;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, DBREG_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
	    b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	    b[15]);
}

size_t
dbreg_conf_count(const struct conf *c)
{
	return c->databases != NULL ? c->ndatabases : 1;
}

const char *
dbreg_conf_name(const struct conf *c, size_t i)
{
	return c->databases != NULL ? c->databases[i].name : "";
}

static void
fill_single(struct dbreg_db *d, const struct conf *c)
{
	char	 abspath[PATH_MAX];

	d->name = "";
	d->path = c->sqlite_path;
	d->mount = NULL;
	d->host = NULL;
	if (realpath(c->sqlite_path, abspath) == NULL)
		snprintf(abspath, sizeof(abspath), "%s", c->sqlite_path);
	database_id_for(abspath, d->id);
}

static void
fill_configured(struct dbreg_db *d, const struct conf_database *cd)
{
	d->conf = cd;
	d->name = cd->name;
	d->path = cd->path;
	d->mount = cd->mount;
	d->host = cd->host;
	snprintf(d->id, sizeof(d->id), "%s", cd->id);
}

int
dbreg_init(struct dbreg *r, const struct conf *c,
    struct shm_segment *const *segs, size_t max_open, char *errbuf,
    size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->conf = c;
	r->n = dbreg_conf_count(c);
	r->max_open = max_open > 0 ? max_open : 1;
	if ((r->dbs = calloc(r->n, sizeof(*r->dbs))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < r->n; i++) {
		if (c->databases != NULL)
			fill_configured(&r->dbs[i], &c->databases[i]);
		else
			fill_single(&r->dbs[i], c);
		r->dbs[i].seg = segs != NULL ? segs[i] : NULL;
	}
	if (c->databases == NULL && c->access_token != NULL)
		sha256(c->access_token, strlen(c->access_token),
		    r->token_digest);
	return 0;
}

static void
close_db(struct dbreg *r, struct dbreg_db *d)
{
	if (d->db == NULL)
		return;
	kv_close(d->db);
	d->db = NULL;
	r->n_open--;
}

void
dbreg_stop_hubs(struct dbreg *r)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->dbs[i].hub == NULL)
			continue;
		watch_hub_stop(r->dbs[i].hub);
		r->dbs[i].hub = NULL;
		r->n_hubs--;
	}
	watch_bell_stop(r->bell);
	r->bell = NULL;
}

void
dbreg_fini(struct dbreg *r)
{
	if (r->dbs == NULL)
		return;
	dbreg_stop_hubs(r);
	for (size_t i = 0; i < r->n; i++)
		close_db(r, &r->dbs[i]);
	free(r->dbs);
	r->dbs = NULL;
}

/* Host without its port, compared without case; NULL host: no match. */
static int
host_matches(const char *want, const char *host)
{
	size_t	 n;

	if (host == NULL)
		return 0;
	n = strcspn(host, ":");
	return strlen(want) == n && strncasecmp(want, host, n) == 0;
}

static int
mount_matches(const struct dbreg_db *d, const char *base, size_t baselen)
{
	return strlen(d->mount) == baselen &&
	    memcmp(d->mount, base, baselen) == 0;
}

enum kv_err
dbreg_route(struct dbreg *r, const char *host, const char *base,
    size_t baselen, struct dbreg_db **out)
{
	if (r->n == 1 && r->dbs[0].mount == NULL) {
		*out = &r->dbs[0];
		return KV_OK;
	}
	/* Sections for this Host first, then those for any Host. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->n; i++) {
			struct dbreg_db	*d = &r->dbs[i];

			int		 wanted = pass == 0 ?
			    d->host != NULL && host_matches(d->host, host) :
			    d->host == NULL;

			if (!wanted)
				continue;
			if (mount_matches(d, base, baselen)) {
				*out = d;
				return KV_OK;
			}
		}
	}
	return KV_ERR_NO_MOUNT;
}

enum kv_err
dbreg_authorize(struct dbreg *r, struct dbreg_db *d, const char *auth,
    int writes)
{
	uint8_t		 digest[SHA256_DIGEST_LEN];
	enum kv_err	 err;

	if (d->conf == NULL)
		return http_bearer_matches(auth, r->token_digest);
	if ((err = http_bearer_digest(auth, digest)) != KV_OK)
		return err;
	return token_verdict_err(token_authorize(d->conf->tokens,
	    d->conf->ntokens, digest, kv_now_ms()), writes);
}

struct kv_options
dbreg_kv_options(const struct dbreg *r, const struct dbreg_db *d)
{
	struct kv_options	 opt = conf_kv_options(r->conf);

	if (d->conf != NULL)
		opt.max_size_bytes = d->conf->max_size;
	if (d->claimed)
		opt.hooks = &d->hooks;
	return opt;
}

/* The process slot in the database's segment, claimed once per process. */
static enum kv_err
claim_slot(struct dbreg_db *d)
{
	if (d->seg == NULL || d->claimed)
		return KV_OK;
	if (shm_client_init(&d->client, d->seg, &d->hooks) != 0) {
		log_warnx("database %s: no free process slot in its signal"
		    " segment", d->name);
		return KV_ERR_INTERNAL;
	}
	d->claimed = 1;
	return KV_OK;
}

/*
 * Closes the least recently used open handle other than keep that nobody
 * holds; 0 if there is none.
 */
static int
close_lru(struct dbreg *r, const struct dbreg_db *keep)
{
	struct dbreg_db	*lru = NULL;

	for (size_t i = 0; i < r->n; i++) {
		struct dbreg_db	*d = &r->dbs[i];

		if (d->db != NULL && d != keep && d->holds == 0 &&
		    (lru == NULL || d->used < lru->used))
			lru = d;
	}
	if (lru == NULL)
		return 0;
	log_debug("closing database %s (least recently used)", lru->name);
	close_db(r, lru);
	return 1;
}

void
dbreg_hold(struct dbreg_db *d)
{
	d->holds++;
}

void
dbreg_release(struct dbreg_db *d)
{
	d->holds--;
}

enum kv_err
dbreg_open(struct dbreg *r, struct dbreg_db *d, struct kv_db **out)
{
	struct kv_options	 opt;
	char			 err[512];
	enum kv_err		 e;

	d->used = ++r->tick;
	if (d->db != NULL) {
		*out = d->db;
		return KV_OK;
	}
	if ((e = claim_slot(d)) != KV_OK)
		return e;
	while (r->n_open >= r->max_open && close_lru(r, d))
		;
	opt = dbreg_kv_options(r, d);
	if ((d->db = kv_open(d->path, &opt, err, sizeof(err))) == NULL) {
		log_warnx("cannot open database %s (%s): %s", d->name,
		    d->path, err);
		return KV_ERR_STORAGE;
	}
	r->n_open++;
	/* The one database's is logged by the worker that opens it at start. */
	if (d->conf != NULL)
		log_debug("database %s open, synchronous=%s", d->name,
		    kv_synchronous(d->db));
	*out = d->db;
	return KV_OK;
}

/*
 * The descriptors this worker holds that grow with its databases: its open
 * handles', its hubs' own, and their streams'.
 */
static size_t
hub_fds(struct dbreg *r)
{
	size_t	 held = r->n_open * DBREG_HANDLE_FDS +
			    r->n_hubs * WATCH_HUB_FDS;

	for (size_t i = 0; i < r->n; i++)
		if (r->dbs[i].hub != NULL)
			held += watch_hub_count(r->dbs[i].hub) +
			    watch_hub_poll_count(r->dbs[i].hub);
	return held;
}

int
dbreg_hubs_full(struct dbreg *r)
{
	return hub_fds(r) >= watch_stream_cap();
}

/* Whether one more hub fits: under DBREG_MAX_HUBS and the descriptors. */
static int
hub_room(struct dbreg *r)
{
	return r->n_hubs < DBREG_MAX_HUBS &&
	    hub_fds(r) + WATCH_HUB_FDS < watch_stream_cap();
}

/* Stops the least recently used hub that holds nothing; 0 if none. */
static int
stop_idle_hub(struct dbreg *r)
{
	struct dbreg_db	*lru = NULL;

	for (size_t i = 0; i < r->n; i++) {
		struct dbreg_db	*d = &r->dbs[i];

		if (d->hub != NULL && watch_hub_count(d->hub) == 0 &&
		    watch_hub_poll_count(d->hub) == 0 &&
		    (lru == NULL || d->hub_used < lru->hub_used))
			lru = d;
	}
	if (lru == NULL)
		return 0;
	watch_hub_stop(lru->hub);
	lru->hub = NULL;
	r->n_hubs--;
	return 1;
}

struct watch_hub *
dbreg_hub(struct dbreg *r, struct dbreg_db *d)
{
	struct watch_hub_options ho;
	char			 err[512];

	d->hub_used = ++r->tick;
	if (d->hub != NULL)
		return d->hub;
	if (d->seg == NULL || claim_slot(d) != KV_OK)
		return NULL;
	while (!hub_room(r))
		if (!stop_idle_hub(r)) {
			log_warnx("watch for database %s refused: %zu databases"
			    " have open watches in this worker", d->name,
			    r->n_hubs);
			return NULL;
		}
	if (r->bell == NULL &&
	    (r->bell = watch_bell_start(err, sizeof(err))) == NULL) {
		log_warnx("watch streams disabled: %s", err);
		return NULL;
	}
	memset(&ho, 0, sizeof(ho));
	ho.bell = r->bell;
	ho.name = d->name;
	ho.path = d->path;
	ho.seg = d->seg;
	ho.count_slot = d->client.slot;
	ho.max_watches = d->conf != NULL ? d->conf->max_watches : 0;
	ho.max_size_bytes = d->conf != NULL ? d->conf->max_size : 0;
	if ((d->hub = watch_hub_start(r->conf, &ho, err, sizeof(err))) ==
	    NULL) {
		log_warnx("database %s: watch streams disabled: %s", d->name,
		    err);
		return NULL;
	}
	r->n_hubs++;
	return d->hub;
}
