/*
 * metrics: the service's counters, for the metrics endpoint (Prometheus
 * text format 0.0.4), the health endpoint and the status verb.
 *
 * They live in a second shared segment that the master maps before it
 * forks, beside the signal segment and apart from it: every worker adds
 * to the same counters with relaxed atomic additions (no lock on the hot
 * path, none a dying process could leave held), and the counts outlive
 * the worker that made them. Gauges that belong to one process (its open
 * watch streams) are kept in that process's slot, which the master clears
 * when it reaps the process.
 *
 * The segment is one of the globals STYLE allows (a shared mapping): the
 * counting calls below take no handle and do nothing in a process that
 * has no segment (unit tests, the command-line verbs).
 */
#ifndef DENOKV_METRICS_H
#define DENOKV_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum metrics_endpoint {
	ME_METADATA,
	ME_SNAPSHOT_READ,
	ME_ATOMIC_WRITE,
	ME_WATCH,
	ME_QUEUE_LEASE,
	ME_QUEUE_FINISH,
	ME_QUEUE_RENEW,
	ME_HEALTH,
	ME_METRICS,
	ME_STATUS,
	ME_OTHER,		/* not found, refused before routing */
	ME__COUNT
};

/* The master's view, published for the status verb and the endpoint. */
struct metrics_service {
	int		 workers;		/* configured */
	int		 workers_running;
	int		 generation;
	unsigned long	 restarts;
};

/* Master, before fork: maps the segment. -1 if it cannot. */
int	metrics_init(void);
void	metrics_fini(void);
/* Master: after a change of its children, and on its status tick. */
void	metrics_set_service(const struct metrics_service *);
/* Master: a child was reaped; its per-process gauges are dropped. */
void	metrics_proc_reaped(pid_t);

/* --- counting (any process; no-ops without a segment) -------------------- */

void	metrics_request(enum metrics_endpoint, int http_status,
	    uint64_t duration_us);
void	metrics_commit(int committed);	/* 0: a check failed */
void	metrics_watch_opened(void);
void	metrics_watch_closed(void);
void	metrics_watch_delivered(void);
/* A watch stream's keys were read from the database. */
void	metrics_watch_read(void);
/* How long one write waited for its turn in the write queue. */
void	metrics_write_wait(uint64_t us);
/* A write gave up waiting for its turn (503). */
void	metrics_write_timeout(void);
/* A storage fault (an enum kv_err for which kv_err_is_fault is true). */
void	metrics_fault(int code);

/* --- reading --------------------------------------------------------------- */

struct kv_queue_stats;

/*
 * Writes the Prometheus text exposition into buf (cap bytes); the
 * database's and its WAL's sizes are read from db_path, the queue gauges
 * from q (read from the database by the caller; NULL leaves them out).
 * Returns the length, or 0 if it did not fit or there is no segment.
 */
size_t	metrics_render(const char *db_path, const struct kv_queue_stats *q,
	    char *buf, size_t cap);

/* The status verb's answer: "name: value" lines. Same contract. */
size_t	metrics_render_status(const char *db_path, char *buf, size_t cap);

/* Open watch streams over all processes (the health endpoint). */
int64_t	metrics_open_watches(void);

#endif
