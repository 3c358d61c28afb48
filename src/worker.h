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

#endif
