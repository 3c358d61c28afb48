/*
 * watch: the watch hub of a worker, a thread that holds many open watch
 * streams so that a watch never holds the worker itself.
 *
 * The accept loop validates a watch request, sends the response headers
 * and hands the connection to the hub (watch_hub_adopt), then goes back to
 * accepting. From then on the hub owns the socket: it writes FastCGI
 * STDOUT records itself, non-blocking and through a bounded buffer per
 * stream, so a slow or vanished client is dropped without stalling the
 * others, and libfcgi's per-request buffers are already freed.
 *
 * A hub serves one database. It is woken through the doorbell relay
 * (below), which sleeps on the host-wide doorbell and pokes the hub's
 * epoll when its database's commit or queue word moved. On a wake
 * the hub compares the change slots of every stream's keys with what it
 * last saw, reads the database only for streams whose slots moved, and
 * sends a frame only when a key's entry really changed. Expiry needs no
 * commit: the hub also wakes when the earliest expire time it saw passes.
 */
#ifndef DENOKV_WATCH_H
#define DENOKV_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "err.h"
#include "kv.h"

struct watch_hub;
struct shm_segment;

/*
 * The doorbell relay of a worker: one thread that sleeps on the host-wide
 * doorbell (shm.h) and wakes only the hubs whose database's commit or
 * queue word moved. Start it before the first hub; stop it after the last
 * (watch_bell_stop). NULL with a reason when there is no doorbell.
 */
struct watch_bell;
struct watch_bell	*watch_bell_start(char *errbuf, size_t errlen);
void			 watch_bell_stop(struct watch_bell *);

/* Which database a hub serves, and where it counts its streams. */
struct watch_hub_options {
	struct watch_bell	*bell;		/* wakes it; borrowed */
	const char		*name;		/* for logs; copied */
	const char		*path;		/* the SQLite file; copied */
	struct shm_segment	*seg;		/* the database's segment */
	/*
	 * The worker's process slot in seg, where its open streams count
	 * towards max_watches (all workers together; 0: no limit).
	 */
	int			 count_slot;
	int			 max_watches;
	int64_t			 max_size_bytes;	/* kv_options' */
};

/*
 * Starts a hub for one database; NULL with a reason in errbuf on failure.
 * The conf is borrowed (the process's, read-only after fork).
 */
struct watch_hub	*watch_hub_start(const struct conf *,
			    const struct watch_hub_options *, char *errbuf,
			    size_t errlen);
/* Ends every stream (the clients reconnect elsewhere) and joins. */
void			 watch_hub_stop(struct watch_hub *);

/*
 * Takes a place for one more stream before the response headers go out:
 * KV_OK, KV_ERR_TOO_MANY_WATCHES when the hub is full, KV_ERR_WATCH_LIMIT
 * when the database has its max-watches open streams across all workers.
 * The place is used by watch_hub_adopt, or given back with
 * watch_hub_unreserve.
 */
enum kv_err		 watch_hub_reserve(struct watch_hub *);
void			 watch_hub_unreserve(struct watch_hub *);

/*
 * Hands over a FastCGI connection whose response headers have been sent:
 * fd and request id from the FCGX_Request, into a place taken with
 * watch_hub_reserve (also on error). Keys are copied. On error the caller
 * still owns fd.
 */
enum kv_err		 watch_hub_adopt(struct watch_hub *, int fd,
			    int request_id, const struct kv_bytes *keys,
			    size_t n);

/*
 * The descriptors a hub holds besides its streams: its epoll set and three
 * eventfds, and two SQLite connections (the file, its WAL and its -shm
 * each), with room to spare.
 */
#define WATCH_HUB_FDS		12

/*
 * The most streams and long polls a worker's hubs take together: below the
 * descriptor limit (each holds one), at most KV_MAX_WATCHES_PER_WORKER.
 */
size_t			 watch_stream_cap(void);

/* Streams currently open (for status and tests). */
size_t			 watch_hub_count(struct watch_hub *);
/*
 * Whether the hub holds as many streams as it takes: KV_MAX_WATCHES_PER_WORKER,
 * or fewer so that the worker's descriptors never run out first.
 */
int			 watch_hub_full(struct watch_hub *);

/*
 * Queue long polls (docs/queues.md): hands over a lease request that found
 * nothing due, after its response headers were sent. The hub answers it
 * with leased messages (up to max, each leased for lease_ms) or, after
 * wait_ms, with none. On error the caller still owns fd.
 */
enum kv_err		 watch_hub_adopt_poll(struct watch_hub *, int fd,
			    int request_id, size_t max, int64_t wait_ms,
			    int64_t lease_ms);
size_t			 watch_hub_poll_count(struct watch_hub *);
/* Whether a new poll would be refused (full, or a read-only database). */
int			 watch_hub_polls_full(struct watch_hub *);

#endif
