/*
 * worker: the FastCGI accept loop of one serving process, and request
 * routing. A worker owns one SQLite connection per database and never
 * shares it with another process.
 */
#ifndef DENOKV_WORKER_H
#define DENOKV_WORKER_H

#include "handlers.h"

/*
 * Sets up the database registry (dbreg.h); the one-database form opens
 * its database now. segs: each database's signal segment, in the order of
 * the configuration (NULL: none); with one, writes are admitted fairly
 * across processes and commits wake watchers. On failure writes a
 * one-line reason to errbuf and returns -1.
 */
int	server_init(struct server *, const struct conf *, int listen_fd,
	    struct shm_segment *const *segs, char *errbuf, size_t errlen);
void	server_fini(struct server *);

/* Serves requests until SIGTERM or SIGINT; returns the exit status. */
int	worker_run(struct server *);

/*
 * Splits a normalised request path into the mount base and the endpoint;
 * any path that is no endpoint is a mount (the metadata exchange).
 * Exposed for the unit tests.
 */
enum route {
	ROUTE_METADATA,
	ROUTE_SNAPSHOT_READ,
	ROUTE_ATOMIC_WRITE,
	ROUTE_WATCH,
	ROUTE_QUEUE_LEASE,
	ROUTE_QUEUE_FINISH,
	ROUTE_QUEUE_RENEW,
	ROUTE_ANSWERED,		/* never from route_path: an operator's endpoint */
};
/* *name: the endpoint's name for logs ("snapshot_read", "metadata"). */
enum route	route_path(const char *path, size_t *baselen,
		    const char **name);

/*
 * For the multiplexed model's event loop (worker_loop.c).
 *
 * worker_serve_ready serves n ready requests (at most WORKER_MAX_BATCH),
 * each to completion, through the same admission and handlers as the
 * one-per-connection model; the atomic writes among them are grouped
 * (commit_atomic_writes in worker.c). Their responses are in their
 * connections' output buffers (or a connection was handed to
 * the hub), and done is called with each connection as soon as its
 * request is answered, its last use here. Whatever they allocated in the
 * arena may go once it returns. An atomic write that found SQLite's write
 * lock held by another process is not answered: done is called with the
 * connection's retry set, and the request is to be served again a moment
 * later (within busy-timeout of the first try it is answered 503).
 */
#define WORKER_MAX_BATCH	64
typedef void	(*worker_done_fn)(void *arg, struct fcgi_conn *);
void	worker_serve_ready(struct server *, struct fcgi_conn *const *,
	    size_t n, struct arena *, worker_done_fn done, void *done_arg);
/* The body cap of a request whose parameters are in (fcgi_mux_cap_fn). */
size_t	worker_body_cap(void *server, struct fcgi_conn *);

/* How long accepting pauses after it failed (out of descriptors). */
#define WORKER_ACCEPT_PAUSE_MS	500
/* Counts accept failures and logs them at most once per interval. */
struct accept_log {
	int64_t		 last_ms;	/* 0: never logged */
	unsigned long	 unlogged;
};
void	worker_note_accept_failure(struct accept_log *, int err);

#endif
