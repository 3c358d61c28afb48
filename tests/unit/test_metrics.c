/*
 * test_metrics.c: unit tests of the counters segment (src/metrics.c),
 * printing TAP. Focus: counts made in forked children land in the one
 * segment; histogram buckets are rendered cumulatively with +Inf equal to
 * the count; a child's open watches leave the gauge when it is reaped;
 * statuses outside the tracked list count as "other"; a buffer too small
 * renders nothing rather than a cut exposition; no segment, no output;
 * group-commit batch sizes in their histogram and in the status verb.
 */
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"
#include "metrics.h"
#include "testhelp.h"

static char	 buf[256 * 1024];

/* The value of the sample line that starts with name (labels included). */
static double
sample(const char *text, const char *name)
{
	size_t		 n = strlen(name);
	const char	*p = text;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

static void
render(void)
{
	size_t	 n = metrics_render("/nonexistent/db.sqlite", NULL, buf, sizeof(buf));

	buf[n] = '\0';
}

static void
test_no_segment(void)
{
	metrics_request(ME_SNAPSHOT_READ, 200, 10);
	T_EQ(metrics_render("/x", NULL, buf, sizeof(buf)), 0,
	    "without a segment nothing is rendered (and counting is a no-op)");
}

static void
test_children_count_into_one_segment(void)
{
	pid_t	 kids[3];

	for (int i = 0; i < 3; i++) {
		if ((kids[i] = fork()) == 0) {
			for (int j = 0; j < 100; j++)
				metrics_request(ME_SNAPSHOT_READ, 200, 300);
			metrics_request(ME_ATOMIC_WRITE, 200, 2000);
			metrics_commit(1);
			metrics_commit(0);
			metrics_request(ME_OTHER, 418, 1);
			_exit(0);
		}
	}
	for (int i = 0; i < 3; i++)
		waitpid(kids[i], NULL, 0);
	render();
	T_EQ(sample(buf, "denokv_requests_total{endpoint=\"snapshot_read\","
	    "code=\"200\"}"), 300, "300 reads from three processes");
	T_EQ(sample(buf, "denokv_commits_total"), 3, "3 commits");
	T_EQ(sample(buf, "denokv_check_failures_total"), 3, "3 check failures");
	T_EQ(sample(buf, "denokv_requests_total{endpoint=\"other\","
	    "code=\"other\"}"), 3, "an untracked status counts as other");
	T_EQ(sample(buf, "denokv_request_duration_seconds_bucket{endpoint="
	    "\"snapshot_read\",le=\"0.00025\"}"), -1,
	    "no bucket below the first bound");
	T_EQ(sample(buf, "denokv_request_duration_seconds_bucket{endpoint="
	    "\"snapshot_read\",le=\"0.0005\"}"), 300,
	    "300 us reads fall in the 0.5 ms bucket");
	T_EQ(sample(buf, "denokv_request_duration_seconds_bucket{endpoint="
	    "\"atomic_write\",le=\"0.001\"}"), 0,
	    "2 ms writes are not in the 1 ms bucket");
	T_EQ(sample(buf, "denokv_request_duration_seconds_bucket{endpoint="
	    "\"atomic_write\",le=\"0.0025\"}"), 3,
	    "... but in the 2.5 ms one");
	T_EQ(sample(buf, "denokv_request_duration_seconds_bucket{endpoint="
	    "\"atomic_write\",le=\"+Inf\"}"), 3, "+Inf holds every write");
	T_EQ(sample(buf, "denokv_request_duration_seconds_count{endpoint="
	    "\"atomic_write\"}"), 3, "_count agrees with +Inf");
	T_OK(sample(buf, "denokv_request_duration_seconds_sum{endpoint="
	    "\"atomic_write\"}") > 0.0059 && sample(buf,
	    "denokv_request_duration_seconds_sum{endpoint=\"atomic_write\"}") <
	    0.0061, "_sum is 6 ms");
}

static void
test_watch_gauge_and_reaping(void)
{
	int	 p[2];
	pid_t	 kid;
	char	 c;

	if (pipe(p) != 0)
		return;
	if ((kid = fork()) == 0) {
		metrics_watch_opened();
		metrics_watch_opened();
		metrics_watch_opened();
		metrics_watch_closed();
		metrics_watch_delivered();
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	(void)!read(p[0], &c, 1);
	T_EQ(metrics_open_watches(), 2, "a child's two open watches are seen");
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	T_EQ(metrics_open_watches(), 2, "a dead child's watches stay until it is reaped");
	metrics_proc_reaped(kid);
	T_EQ(metrics_open_watches(), 0, "reaped, its watches are gone");
	render();
	T_EQ(sample(buf, "denokv_watch_deliveries_total"), 1,
	    "the delivery it counted stays");
	close(p[0]);
	close(p[1]);
}

static void
test_service_and_small_buffer(void)
{
	struct metrics_service	 sv = { .workers = 4, .workers_running = 3,
	    .generation = 2, .restarts = 5 };
	char			 tiny[64];

	metrics_set_service(&sv);
	render();
	T_EQ(sample(buf, "denokv_workers"), 3, "running workers");
	T_EQ(sample(buf, "denokv_generation"), 2, "generation");
	T_EQ(sample(buf, "denokv_restarts_total"), 5, "restarts");
	T_EQ(metrics_render("/x", NULL, tiny, sizeof(tiny)), 0,
	    "a buffer too small renders nothing, not half an exposition");
	T_EQ(sample(buf, "denokv_queue_ready"), -1,
	    "no queue gauges without queue stats");
	T_OK(metrics_render_status("/x", buf, sizeof(buf)) > 0 &&
	    strstr(buf, "workers: 3 of 4 running\n") != NULL,
	    "status says 3 of 4 workers");
}

/* Group commit: batch sizes from two processes, in power-of-two buckets. */
static void
test_batch_sizes(void)
{
	pid_t	 kid;

	if ((kid = fork()) == 0) {
		metrics_write_batch(1);
		metrics_write_batch(3);
		_exit(0);
	}
	waitpid(kid, NULL, 0);
	metrics_write_batch(16);
	metrics_write_batch(100);
	render();
	T_OK(strstr(buf, "# TYPE denokv_write_batch_size histogram\n") !=
	    NULL, "batch sizes: a histogram");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"1\"}"), 1,
	    "batch sizes: one batch of 1");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"2\"}"), 1,
	    "batch sizes: none of 2");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"4\"}"), 2,
	    "batch sizes: 3 falls in the bucket up to 4");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"16\"}"), 3,
	    "batch sizes: 16 in its own bound");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"64\"}"), 3,
	    "batch sizes: 100 is past the last bound");
	T_EQ(sample(buf, "denokv_write_batch_size_bucket{le=\"+Inf\"}"), 4,
	    "batch sizes: +Inf holds all four");
	T_EQ(sample(buf, "denokv_write_batch_size_sum"), 120,
	    "batch sizes: _sum counts the writes");
	T_EQ(sample(buf, "denokv_write_batch_size_count"), 4,
	    "batch sizes: _count the batches");
	T_OK(metrics_render_status("/x", buf, sizeof(buf)) > 0 &&
	    strstr(buf, "write batches: 4, mean 30.00 writes\n") != NULL,
	    "batch sizes: the status verb gives the mean");
}

static void
test_queue_gauges(void)
{
	struct kv_queue_stats	 q = { .ready = 4, .delayed = 3, .running = 2,
	    .dead_lettered = 7 };

	T_OK(metrics_render("/x", &q, buf, sizeof(buf)) > 0, "rendered");
	T_EQ(sample(buf, "denokv_queue_ready"), 4, "queue ready");
	T_EQ(sample(buf, "denokv_queue_delayed"), 3, "queue delayed");
	T_EQ(sample(buf, "denokv_queue_running"), 2, "queue running");
	T_EQ(sample(buf, "denokv_queue_dead_lettered_total"), 7,
	    "queue dead-lettered");
	T_OK(strstr(buf, "# TYPE denokv_queue_dead_lettered_total counter\n")
	    != NULL, "the dead-letter count is a counter");
}

int
main(void)
{
	test_no_segment();
	if (metrics_init() != 0) {
		printf("Bail out! cannot map the segment\n");
		return 1;
	}
	test_children_count_into_one_segment();
	test_watch_gauge_and_reaping();
	test_batch_sizes();
	test_queue_gauges();
	test_service_and_small_buffer();
	metrics_fini();
	return t_done();
}
