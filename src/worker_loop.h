/*
 * worker_loop: the event loop of the multiplexed request model
 * (docs/request-model.md): one epoll over the listener, a signalfd for
 * the stop signals and every connection the proxy holds to this worker.
 */
#ifndef DENOKV_WORKER_LOOP_H
#define DENOKV_WORKER_LOOP_H

#include <signal.h>

#include "arena.h"
#include "handlers.h"

/*
 * Serves until one of stopset's signals (blocked by the caller) arrives,
 * then finishes the requests in progress, closes the idle connections
 * and returns the exit status. The arena is reset after every turn.
 */
int	worker_loop_run(struct server *, const sigset_t *stopset,
	    struct arena *);

#endif
