/*
 * handlers: one function per KV Connect endpoint. Each one decodes and
 * validates its request, calls the storage engine, and sends the response.
 * It returns KV_OK once it has replied; any other code means nothing was
 * sent, and the caller answers with that code's status and message.
 */
#ifndef DENOKV_HANDLERS_H
#define DENOKV_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "conf.h"
#include "dbreg.h"
#include "err.h"
#include "fcgi_conn.h"
#include "kv.h"
#include "sha256.h"
#include "metrics.h"
#include "shm.h"
#include "watch.h"

#define DATABASE_ID_LEN	DBREG_ID_LEN

/* What one serving process holds: its config and its databases. */
struct server {
	const struct conf	*conf;
	struct dbreg		 reg;
	/* of conf->metrics_token, when metrics are on */
	uint8_t			 metrics_token_digest[SHA256_DIGEST_LEN];
	int			 listen_fd;
};

struct request {
	struct fcgi_conn	*conn;
	struct server		*srv;
	struct arena		*arena;
	const char		*endpoint;	/* for logs: "metadata", ... */
	const char		*base;		/* mount path, no trailing '/' */
	size_t			 baselen;
	/* the database it was routed to, and its open handle */
	struct dbreg_db		*dbe;
	struct kv_db		*db;
	const uint8_t		*body;
	size_t			 bodylen;
	/* for the metrics: which endpoint, and a status a handler sent */
	enum metrics_endpoint	 counted_as;
	int			 status;	/* 0: 200, or the error's */
};

enum kv_err	h_metadata(struct request *);
enum kv_err	h_snapshot_read(struct request *);
enum kv_err	h_atomic_write(struct request *);
enum kv_err	h_watch(struct request *);
enum kv_err	h_queue_lease(struct request *);
enum kv_err	h_queue_finish(struct request *);
enum kv_err	h_queue_renew(struct request *);

/*
 * The operator's endpoints (h_ops.c): 1 if path or the request's
 * parameters name one, which has then been answered; 0 if not.
 */
#define OPS_STATUS_PARAM	"DENOKV_FCGI_STATUS"
int		ops_dispatch(struct request *, const char *path);

/* Sends a protobuf response body. */
int		reply_protobuf(struct request *, const uint8_t *body,
		    size_t len);

#endif
