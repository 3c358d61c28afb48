/*
 * h_ops.c: the operator's endpoints, answered before KV Connect routing.
 *
 * - health (GET health-path, no token): 200 "ok" when this worker took
 *   the request and the database answers a read (the data version and
 *   the first entry, so a damaged table shows); 503 with the reason when
 *   the disk under the database is full or the database cannot be read.
 *   Cheap enough for a load balancer to poll every second.
 * - metrics (GET metrics-path, Authorization: Bearer metrics-token): the
 *   counters in Prometheus text format 0.0.4 (metrics.c).
 * - status: what `denokv-fcgi status` asks for over the FastCGI socket
 *   (cmd_status.c). It is recognised by a FastCGI parameter, not by a
 *   path: a web server passes only the parameters its configuration
 *   names, and turns every client header into HTTP_*, so no HTTP client
 *   can ask for it.
 */
#include <sys/statvfs.h>

#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "http.h"
#include "kv_limits.h"
#include "log.h"
#include "metrics.h"

#define TEXT_PLAIN	"text/plain; charset=utf-8"
#define NO_STORE	"Cache-Control: no-store\r\n"
/* Room for the rendered metrics; they are about 20 KiB. */
#define OPS_RENDER_BYTES	(256 * 1024)

static int
reply_text(struct request *rq, int status, const char *extra,
    const char *text, size_t len)
{
	rq->status = status;
	return http_reply(rq->conn, status, TEXT_PLAIN, extra, text, len);
}

static int
is_get(struct request *rq)
{
	const char	*m = http_param(rq->conn, "REQUEST_METHOD");

	if (m != NULL && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0))
		return 1;
	reply_text(rq, 405, "Allow: GET, HEAD\r\n", "Use GET.\n", 9);
	return 0;
}

/*
 * The database the operator's endpoints look at: the only one, or the
 * first configured (the others are probed by their own clients' 5xx).
 */
static struct dbreg_db *
ops_database(struct request *rq)
{
	return &rq->srv->reg.dbs[0];
}

/* The data version and one entry: touches the kv table's root and a leaf. */
static enum kv_err
read_probe(struct request *rq)
{
	struct kv_db		*db;
	static const uint8_t	 all_end[] = { 0xff };
	struct kv_range		 r = {
		.start = { all_end, 0 },
		.end = { all_end, sizeof(all_end) },
		.limit = 1,
	};
	struct kv_range_result	 res;
	int64_t			 version;
	enum kv_err		 e;

	if ((e = dbreg_open(&rq->srv->reg, ops_database(rq), &db)) != KV_OK)
		return e;
	if ((e = kv_current_version(db, &version)) != KV_OK)
		return e;
	return kv_snapshot_read(db, &r, 1, kv_now_ms(), rq->arena,
	    &res);
}

static void
h_health(struct request *rq)
{
	struct statvfs	 vfs;
	char		 why[256];
	enum kv_err	 e;
	unsigned long long free_bytes;
	int		 n;

	if (!is_get(rq))
		return;
	if (statvfs(ops_database(rq)->path, &vfs) == 0) {
		free_bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
		if (free_bytes < KV_HEALTH_MIN_FREE_BYTES) {
			n = snprintf(why, sizeof(why), "disk full: %llu bytes"
			    " free where the database is\n", free_bytes);
			reply_text(rq, 503, NO_STORE, why, (size_t)n);
			return;
		}
	}
	if ((e = read_probe(rq)) != KV_OK) {
		n = snprintf(why, sizeof(why), "database unreadable: %s\n",
		    kv_err_message(e));
		reply_text(rq, 503, NO_STORE, why, (size_t)n);
		return;
	}
	reply_text(rq, 200, NO_STORE, "ok\n", 3);
}

static void
h_metrics(struct request *rq)
{
	struct kv_queue_stats	 qs;
	struct kv_db		*db;
	enum kv_err		 e;
	char			*buf;
	size_t			 n;

	if (!is_get(rq))
		return;
	if ((e = http_check_bearer(rq->conn,
	    rq->srv->metrics_token_digest)) != KV_OK) {
		rq->status = kv_err_status(e);
		http_reply_error(rq->conn, e);
		return;
	}
	/* Unreadable now (a storage fault): the other families still go. */
	if ((e = dbreg_open(&rq->srv->reg, ops_database(rq), &db)) == KV_OK)
		e = kv_queue_stats(db, kv_now_ms(), &qs);
	if (e != KV_OK)
		log_warnx("metrics: queue stats: %s", kv_err_message(e));
	if ((buf = arena_alloc(rq->arena, OPS_RENDER_BYTES)) == NULL ||
	    (n = metrics_render(ops_database(rq)->path,
	    e == KV_OK ? &qs : NULL, buf, OPS_RENDER_BYTES)) == 0) {
		reply_text(rq, 503, NO_STORE, "metrics unavailable\n", 20);
		return;
	}
	rq->status = 200;
	http_reply(rq->conn, 200, "text/plain; version=0.0.4; charset=utf-8",
	    NO_STORE, buf, n);
}

static void
h_status(struct request *rq)
{
	char	*buf;
	size_t	 n;

	if ((buf = arena_alloc(rq->arena, OPS_RENDER_BYTES)) == NULL ||
	    (n = metrics_render_status(ops_database(rq)->path, buf,
	    OPS_RENDER_BYTES)) == 0) {
		reply_text(rq, 503, NO_STORE, "status unavailable\n", 19);
		return;
	}
	reply_text(rq, 200, NO_STORE, buf, n);
}

int
ops_dispatch(struct request *rq, const char *path)
{
	const struct conf	*c = rq->srv->conf;

	if (http_param(rq->conn, OPS_STATUS_PARAM) != NULL) {
		rq->counted_as = ME_STATUS;
		h_status(rq);
	} else if (c->health_path != NULL && strcmp(path, c->health_path) == 0) {
		rq->counted_as = ME_HEALTH;
		h_health(rq);
	} else if (c->metrics_path != NULL &&
	    strcmp(path, c->metrics_path) == 0) {
		rq->counted_as = ME_METRICS;
		h_metrics(rq);
	} else
		return 0;
	return 1;
}
