/*
 * metrics.c: the counters segment and its two renderings (see metrics.h).
 *
 * Layout: one fixed struct in an anonymous shared mapping, integers only.
 * Histograms keep one counter per bucket (not cumulative, so recording is
 * one addition); the renderer adds them up. Everything is read without a
 * lock, so a scrape may see one request counted in requests_total and not
 * yet in the duration histogram: each counter is exact, a scrape is not a
 * snapshot.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "kv.h"
#include "metrics.h"

#define METRICS_MAGIC		0x444b564du	/* "DKVM" */
#define METRICS_VERSION		2
#define METRICS_MAX_PROCS	1024

/* Histogram bucket upper bounds, in microseconds (+Inf follows). */
static const uint64_t bucket_us[] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};
#define N_BUCKETS	(sizeof(bucket_us) / sizeof(bucket_us[0]))

/* Batch size bucket upper bounds, in atomic writes (+Inf follows). */
static const uint64_t batch_bound[] = { 1, 2, 4, 8, 16, 32, 64 };
#define N_BATCH_BUCKETS	(sizeof(batch_bound) / sizeof(batch_bound[0]))

/* The statuses this server answers with; anything else counts as "other". */
static const int tracked_status[] = {
	200, 400, 401, 404, 405, 413, 500, 503, 507,
};
#define N_STATUS	(sizeof(tracked_status) / sizeof(tracked_status[0]) + 1)

static const char *const endpoint_name[ME__COUNT] = {
	[ME_METADATA] = "metadata",
	[ME_SNAPSHOT_READ] = "snapshot_read",
	[ME_ATOMIC_WRITE] = "atomic_write",
	[ME_WATCH] = "watch",
	[ME_QUEUE_LEASE] = "queue_lease",
	[ME_QUEUE_FINISH] = "queue_finish",
	[ME_QUEUE_RENEW] = "queue_renew",
	[ME_HEALTH] = "health",
	[ME_METRICS] = "metrics",
	[ME_STATUS] = "status",
	[ME_OTHER] = "other",
};

/* Storage faults by kind (the label of denokv_storage_faults_total). */
enum fault_kind {
	FAULT_DISK_FULL,
	FAULT_CORRUPT,
	FAULT_IO,
	FAULT_NOT_WRITABLE,
	FAULT_OTHER,
	FAULT__COUNT
};

static const char *const fault_name[FAULT__COUNT] = {
	[FAULT_DISK_FULL] = "disk_full",
	[FAULT_CORRUPT] = "corrupt",
	[FAULT_IO] = "io",
	[FAULT_NOT_WRITABLE] = "not_writable",
	[FAULT_OTHER] = "other",
};

struct histogram {
	_Atomic uint64_t	 bucket[N_BUCKETS + 1];
	_Atomic uint64_t	 sum_us;
	_Atomic uint64_t	 count;
};

/* Group commit: atomic writes per write transaction. */
struct batch_histogram {
	_Atomic uint64_t	 bucket[N_BATCH_BUCKETS + 1];
	_Atomic uint64_t	 writes;	/* the sum */
	_Atomic uint64_t	 count;		/* batches */
};

struct metrics_proc {
	_Atomic int32_t		 pid;		/* 0: free */
	_Atomic int64_t		 watches;
};

struct metrics_segment {
	uint32_t		 magic;
	uint32_t		 version;
	uint64_t		 size;
	int64_t			 started_ms;	/* wall clock */
	int32_t			 master_pid;
	/* the master's view */
	_Atomic int32_t		 workers;
	_Atomic int32_t		 workers_running;
	_Atomic int32_t		 generation;
	_Atomic uint64_t	 restarts;
	/* requests */
	_Atomic uint64_t	 requests[ME__COUNT][N_STATUS];
	struct histogram	 duration[ME__COUNT];
	/* storage */
	_Atomic uint64_t	 commits;
	_Atomic uint64_t	 check_failures;
	struct batch_histogram	 batch;
	struct histogram	 write_wait;
	_Atomic uint64_t	 write_wait_max_us;
	_Atomic uint64_t	 write_timeouts;
	_Atomic uint64_t	 faults[FAULT__COUNT];
	/* watches */
	_Atomic uint64_t	 watch_deliveries;
	_Atomic uint64_t	 watch_reads;
	struct metrics_proc	 procs[METRICS_MAX_PROCS];
};

static struct metrics_segment	*seg;

int
metrics_init(void)
{
	struct timespec	 ts;
	void		*p;

	p = mmap(NULL, sizeof(*seg), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	seg = p;
	clock_gettime(CLOCK_REALTIME, &ts);
	seg->magic = METRICS_MAGIC;
	seg->version = METRICS_VERSION;
	seg->size = sizeof(*seg);
	seg->started_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	seg->master_pid = (int32_t)getpid();
	return 0;
}

void
metrics_fini(void)
{
	if (seg != NULL)
		munmap(seg, sizeof(*seg));
	seg = NULL;
}

void
metrics_set_service(const struct metrics_service *sv)
{
	if (seg == NULL)
		return;
	atomic_store(&seg->workers, sv->workers);
	atomic_store(&seg->workers_running, sv->workers_running);
	atomic_store(&seg->generation, sv->generation);
	atomic_store(&seg->restarts, sv->restarts);
}

void
metrics_proc_reaped(pid_t pid)
{
	if (seg == NULL)
		return;
	for (int i = 0; i < METRICS_MAX_PROCS; i++) {
		if (atomic_load(&seg->procs[i].pid) != (int32_t)pid)
			continue;
		atomic_store(&seg->procs[i].watches, 0);
		atomic_store(&seg->procs[i].pid, 0);
	}
}

/* --- counting ------------------------------------------------------------- */

static void
add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void
observe(struct histogram *h, uint64_t us)
{
	size_t	 i = 0;

	while (i < N_BUCKETS && us > bucket_us[i])
		i++;
	add(&h->bucket[i], 1);
	add(&h->sum_us, us);
	add(&h->count, 1);
}

static size_t
status_index(int status)
{
	size_t	 i;

	for (i = 0; i < N_STATUS - 1; i++)
		if (tracked_status[i] == status)
			break;
	return i;
}

void
metrics_request(enum metrics_endpoint e, int http_status, uint64_t duration_us)
{
	if (seg == NULL || e < 0 || e >= ME__COUNT)
		return;
	add(&seg->requests[e][status_index(http_status)], 1);
	observe(&seg->duration[e], duration_us);
}

void
metrics_commit(int committed)
{
	if (seg != NULL)
		add(committed ? &seg->commits : &seg->check_failures, 1);
}

void
metrics_write_batch(size_t writes)
{
	size_t	 i = 0;

	if (seg == NULL)
		return;
	while (i < N_BATCH_BUCKETS && writes > batch_bound[i])
		i++;
	add(&seg->batch.bucket[i], 1);
	add(&seg->batch.writes, writes);
	add(&seg->batch.count, 1);
}

void
metrics_write_wait(uint64_t us)
{
	uint64_t	 prev;

	if (seg == NULL)
		return;
	observe(&seg->write_wait, us);
	prev = atomic_load(&seg->write_wait_max_us);
	while (us > prev &&
	    !atomic_compare_exchange_weak(&seg->write_wait_max_us, &prev, us))
		;
}

void
metrics_write_timeout(void)
{
	if (seg != NULL)
		add(&seg->write_timeouts, 1);
}

void
metrics_fault(int code)
{
	enum fault_kind	 k;

	if (seg == NULL)
		return;
	switch (code) {
	case KV_ERR_DISK_FULL:
		k = FAULT_DISK_FULL;
		break;
	case KV_ERR_CORRUPT:
		k = FAULT_CORRUPT;
		break;
	case KV_ERR_IO:
		k = FAULT_IO;
		break;
	case KV_ERR_NOT_WRITABLE:
		k = FAULT_NOT_WRITABLE;
		break;
	default:
		k = FAULT_OTHER;
		break;
	}
	add(&seg->faults[k], 1);
}

/*
 * This process's slot for its own gauges. A process (or the first of its
 * threads to get here) claims one on first use; the master frees it.
 */
static struct metrics_proc *
my_proc(void)
{
	int32_t	 me = (int32_t)getpid(), free_pid;

	for (int i = 0; i < METRICS_MAX_PROCS; i++)
		if (atomic_load(&seg->procs[i].pid) == me)
			return &seg->procs[i];
	for (int i = 0; i < METRICS_MAX_PROCS; i++) {
		free_pid = 0;
		if (atomic_compare_exchange_strong(&seg->procs[i].pid,
		    &free_pid, me))
			return &seg->procs[i];
	}
	return NULL;
}

static void
watches_add(int64_t n)
{
	struct metrics_proc	*p;

	if (seg != NULL && (p = my_proc()) != NULL)
		atomic_fetch_add(&p->watches, n);
}

void
metrics_watch_opened(void)
{
	watches_add(1);
}

void
metrics_watch_closed(void)
{
	watches_add(-1);
}

void
metrics_watch_delivered(void)
{
	if (seg != NULL)
		add(&seg->watch_deliveries, 1);
}

void
metrics_watch_read(void)
{
	if (seg != NULL)
		add(&seg->watch_reads, 1);
}

int64_t
metrics_open_watches(void)
{
	int64_t	 n = 0;

	if (seg == NULL)
		return 0;
	for (int i = 0; i < METRICS_MAX_PROCS; i++)
		if (atomic_load(&seg->procs[i].pid) != 0)
			n += atomic_load(&seg->procs[i].watches);
	return n;
}

/* --- rendering ------------------------------------------------------------ */

struct out {
	char	*buf;
	size_t	 cap, len;
	int	 overflow;
};

static void
put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->overflow = 1;
	else
		o->len += (size_t)n;
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

/* labels: "" or 'endpoint="x",' (with the trailing comma). */
static void
histogram(struct out *o, const char *name, const char *labels,
    const struct histogram *h)
{
	uint64_t	 cum = 0;
	size_t		 ll = strlen(labels);

	for (size_t i = 0; i < N_BUCKETS; i++) {
		cum += load(&h->bucket[i]);
		put(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
		    (double)bucket_us[i] / 1e6, (unsigned long long)cum);
	}
	cum += load(&h->bucket[N_BUCKETS]);
	put(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
	    (unsigned long long)cum);
	/* Without labels the braces go; with them, the trailing comma. */
	put(o, "%s_sum%s%.*s%s %.6f\n", name, ll ? "{" : "",
	    (int)(ll ? ll - 1 : 0), labels, ll ? "}" : "",
	    (double)load(&h->sum_us) / 1e6);
	put(o, "%s_count%s%.*s%s %llu\n", name, ll ? "{" : "",
	    (int)(ll ? ll - 1 : 0), labels, ll ? "}" : "",
	    (unsigned long long)load(&h->count));
}

static void
batch_histogram(struct out *o, const char *name,
    const struct batch_histogram *h)
{
	uint64_t	 cum = 0;

	for (size_t i = 0; i < N_BATCH_BUCKETS; i++) {
		cum += load(&h->bucket[i]);
		put(o, "%s_bucket{le=\"%llu\"} %llu\n", name,
		    (unsigned long long)batch_bound[i], (unsigned long long)cum);
	}
	cum += load(&h->bucket[N_BATCH_BUCKETS]);
	put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	put(o, "%s_sum %llu\n", name, (unsigned long long)load(&h->writes));
	put(o, "%s_count %llu\n", name, (unsigned long long)load(&h->count));
}

static long long
file_size(const char *path, const char *suffix)
{
	char		 p[4096];
	struct stat	 st;

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

static void
status_label(char *out, size_t len, size_t i)
{
	if (i < N_STATUS - 1)
		snprintf(out, len, "%d", tracked_status[i]);
	else
		snprintf(out, len, "other");
}

/* The queue's state at scrape time, as `queue stats` reads it. */
static void
queue_gauges(struct out *o, const struct kv_queue_stats *q)
{
	family(o, "denokv_queue_ready", "gauge",
	    "Queue messages due and waiting for a consumer.");
	put(o, "denokv_queue_ready %lld\n", (long long)q->ready);
	family(o, "denokv_queue_delayed", "gauge",
	    "Queue messages not yet due.");
	put(o, "denokv_queue_delayed %lld\n", (long long)q->delayed);
	family(o, "denokv_queue_running", "gauge",
	    "Queue messages leased to a consumer.");
	put(o, "denokv_queue_running %lld\n", (long long)q->running);
	family(o, "denokv_queue_dead_lettered_total", "counter",
	    "Queue messages that ran out of retries, kept in the database.");
	put(o, "denokv_queue_dead_lettered_total %lld\n",
	    (long long)q->dead_lettered);
}

size_t
metrics_render(const char *db_path, const struct kv_queue_stats *q,
    char *buf, size_t cap)
{
	struct out	 o = { .buf = buf, .cap = cap };
	char		 code[16], labels[64];

	if (seg == NULL || cap == 0)
		return 0;
	family(&o, "denokv_requests_total", "counter",
	    "Requests answered, by endpoint and HTTP status.");
	for (int e = 0; e < ME__COUNT; e++)
		for (size_t s = 0; s < N_STATUS; s++) {
			uint64_t n = load(&seg->requests[e][s]);

			if (n == 0)
				continue;
			status_label(code, sizeof(code), s);
			put(&o, "denokv_requests_total{endpoint=\"%s\","
			    "code=\"%s\"} %llu\n", endpoint_name[e], code,
			    (unsigned long long)n);
		}
	family(&o, "denokv_request_duration_seconds", "histogram",
	    "Time from a request's arrival to its answer (a watch: to the"
	    " hand-off to its stream).");
	for (int e = 0; e < ME__COUNT; e++) {
		snprintf(labels, sizeof(labels), "endpoint=\"%s\",",
		    endpoint_name[e]);
		histogram(&o, "denokv_request_duration_seconds", labels,
		    &seg->duration[e]);
	}
	family(&o, "denokv_commits_total", "counter",
	    "Atomic writes committed.");
	put(&o, "denokv_commits_total %llu\n",
	    (unsigned long long)load(&seg->commits));
	family(&o, "denokv_check_failures_total", "counter",
	    "Atomic writes not committed because a check failed.");
	put(&o, "denokv_check_failures_total %llu\n",
	    (unsigned long long)load(&seg->check_failures));
	family(&o, "denokv_write_batch_size", "histogram",
	    "Atomic writes taken together into one write transaction (group"
	    " commit), per transaction, those refused included.");
	batch_histogram(&o, "denokv_write_batch_size", &seg->batch);
	family(&o, "denokv_write_queue_wait_seconds", "histogram",
	    "Time a write waited for its turn in the write queue.");
	histogram(&o, "denokv_write_queue_wait_seconds", "", &seg->write_wait);
	family(&o, "denokv_write_queue_timeouts_total", "counter",
	    "Writes that gave up waiting for their turn (answered 503).");
	put(&o, "denokv_write_queue_timeouts_total %llu\n",
	    (unsigned long long)load(&seg->write_timeouts));
	family(&o, "denokv_storage_faults_total", "counter",
	    "Storage faults by kind (the server's log says more).");
	for (int k = 0; k < FAULT__COUNT; k++)
		put(&o, "denokv_storage_faults_total{kind=\"%s\"} %llu\n",
		    fault_name[k], (unsigned long long)load(&seg->faults[k]));
	family(&o, "denokv_watch_streams", "gauge", "Open watch streams.");
	put(&o, "denokv_watch_streams %lld\n",
	    (long long)metrics_open_watches());
	family(&o, "denokv_watch_deliveries_total", "counter",
	    "Watch frames with changed entries sent to clients.");
	put(&o, "denokv_watch_deliveries_total %llu\n",
	    (unsigned long long)load(&seg->watch_deliveries));
	family(&o, "denokv_watch_reads_total", "counter",
	    "Database reads of a watch stream's keys (its first, and each"
	    " after a change signalled for them).");
	put(&o, "denokv_watch_reads_total %llu\n",
	    (unsigned long long)load(&seg->watch_reads));
	family(&o, "denokv_database_bytes", "gauge",
	    "Size of the database file.");
	put(&o, "denokv_database_bytes %lld\n", file_size(db_path, ""));
	family(&o, "denokv_wal_bytes", "gauge", "Size of the WAL file.");
	put(&o, "denokv_wal_bytes %lld\n", file_size(db_path, "-wal"));
	family(&o, "denokv_workers", "gauge", "Serving processes running.");
	put(&o, "denokv_workers %d\n", atomic_load(&seg->workers_running));
	family(&o, "denokv_generation", "gauge",
	    "Worker generation: 0 at start, one more per reload.");
	put(&o, "denokv_generation %d\n", atomic_load(&seg->generation));
	family(&o, "denokv_restarts_total", "counter",
	    "Children that died and were replaced.");
	put(&o, "denokv_restarts_total %llu\n",
	    (unsigned long long)load(&seg->restarts));
	family(&o, "denokv_start_time_seconds", "gauge",
	    "When the service started, in seconds since the Unix epoch.");
	put(&o, "denokv_start_time_seconds %.3f\n",
	    (double)seg->started_ms / 1e3);
	if (q != NULL)
		queue_gauges(&o, q);
	return o.overflow ? 0 : o.len;
}

size_t
metrics_render_status(const char *db_path, char *buf, size_t cap)
{
	struct out	 o = { .buf = buf, .cap = cap };
	struct timespec	 ts;
	uint64_t	 total = 0, waits, wait_sum, batches;
	int64_t		 now_ms;

	if (seg == NULL || cap == 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (int e = 0; e < ME__COUNT; e++)
		for (size_t s = 0; s < N_STATUS; s++)
			total += load(&seg->requests[e][s]);
	waits = load(&seg->write_wait.count);
	wait_sum = load(&seg->write_wait.sum_us);
	put(&o, "pid: %d\n", (int)seg->master_pid);
	put(&o, "uptime: %lld s\n", (long long)(now_ms - seg->started_ms) /
	    1000);
	put(&o, "generation: %d\n", atomic_load(&seg->generation));
	put(&o, "workers: %d of %d running\n",
	    atomic_load(&seg->workers_running), atomic_load(&seg->workers));
	put(&o, "restarts: %llu\n", (unsigned long long)load(&seg->restarts));
	put(&o, "requests: %llu\n", (unsigned long long)total);
	for (int e = 0; e < ME__COUNT; e++) {
		uint64_t n = load(&seg->duration[e].count);

		if (n > 0)
			put(&o, "requests %s: %llu\n", endpoint_name[e],
			    (unsigned long long)n);
	}
	put(&o, "commits: %llu\n", (unsigned long long)load(&seg->commits));
	put(&o, "check failures: %llu\n",
	    (unsigned long long)load(&seg->check_failures));
	batches = load(&seg->batch.count);
	put(&o, "write batches: %llu, mean %.2f writes\n",
	    (unsigned long long)batches, batches ? (double)load(
	    &seg->batch.writes) / batches : 0.0);
	put(&o, "write-queue waits: %llu, mean %.3f ms, longest %.3f ms\n",
	    (unsigned long long)waits, waits ? (double)wait_sum / waits / 1e3 :
	    0.0, (double)load(&seg->write_wait_max_us) / 1e3);
	put(&o, "write-queue timeouts: %llu\n",
	    (unsigned long long)load(&seg->write_timeouts));
	put(&o, "storage faults:");
	for (int k = 0; k < FAULT__COUNT; k++)
		put(&o, " %s %llu", fault_name[k],
		    (unsigned long long)load(&seg->faults[k]));
	put(&o, "\n");
	put(&o, "open watches: %lld\n", (long long)metrics_open_watches());
	put(&o, "watch deliveries: %llu\n",
	    (unsigned long long)load(&seg->watch_deliveries));
	if (db_path != NULL)
		put(&o, "database: %s, %lld bytes, WAL %lld bytes\n", db_path,
		    file_size(db_path, ""), file_size(db_path, "-wal"));
	return o.overflow ? 0 : o.len;
}
