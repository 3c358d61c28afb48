/*
 * cmd_queue.c: `denokv-fcgi --sqlite-path P queue stats` and
 * `queue list [--limit N]`: what is waiting in a database's queue, read
 * straight from the file (read-only, so it is safe while a server or the
 * Deno CLI has the file open).
 *
 * stats prints one "name value" line each: ready (due now), delayed (due
 * later), running (leased), expired_leases (leased, lease over, not yet
 * returned), oldest_due_age_ms. list prints waiting messages by due time,
 * then leased ones by lease end, one line each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "kv.h"

#define LIST_DEFAULT	20
#define LIST_MAX	100000

struct queue_args {
	const char	*path;
	const char	*what;		/* "stats" or "list" */
	long		 limit;
};

static int
usage(const char *why)
{
	fprintf(stderr, "denokv-fcgi: %s\nusage: denokv-fcgi --sqlite-path PATH"
	    " queue stats\n       denokv-fcgi --sqlite-path PATH queue list"
	    " [--limit N]\n", why);
	return 2;
}

/* 0 ok, else the usage error already printed (2). */
static int
parse(int argc, char **argv, struct queue_args *a)
{
	int	 seen_queue = 0;
	char	*end;

	a->path = getenv("DENO_KV_SQLITE_PATH");
	a->what = NULL;
	a->limit = LIST_DEFAULT;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strncmp(arg, "--sqlite-path=", 14) == 0)
			a->path = arg + 14;
		else if (strcmp(arg, "--sqlite-path") == 0 && i + 1 < argc)
			a->path = argv[++i];
		else if (strcmp(arg, "--limit") == 0 && i + 1 < argc) {
			a->limit = strtol(argv[++i], &end, 10);
			if (*end != '\0' || a->limit < 1 || a->limit > LIST_MAX)
				return usage("--limit takes a number from 1 to"
				    " 100000");
		} else if (!seen_queue && strcmp(arg, "queue") == 0)
			seen_queue = 1;
		else if (seen_queue && a->what == NULL &&
		    (strcmp(arg, "stats") == 0 || strcmp(arg, "list") == 0))
			a->what = arg;
		else {
			fprintf(stderr, "denokv-fcgi queue: unexpected \"%s\"\n",
			    arg);
			return usage("queue takes --sqlite-path and stats or"
			    " list");
		}
	}
	if (a->path == NULL || *a->path == '\0')
		return usage("no database: give --sqlite-path or set"
		    " DENO_KV_SQLITE_PATH");
	if (a->what == NULL)
		return usage("queue needs stats or list");
	return 0;
}

static void
iso8601_ms(int64_t ms, char *buf, size_t len)
{
	time_t		 t = (time_t)(ms / 1000);
	struct tm	 tm;
	char		 base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

static void
print_row(void *ctx, const struct kv_queue_msg *m, const char *backoff,
    const char *keys)
{
	int	*first = ctx;
	char	 when[48];

	if (*first) {
		printf("%-8s %-24s %-7s %-36s %7s %s\n", "state", "due/lease-end",
		    "attempt", "id", "bytes", "backoff_left dead_letter_keys");
		*first = 0;
	}
	iso8601_ms(m->lease_until_ms ? m->lease_until_ms : m->due_ms, when,
	    sizeof(when));
	printf("%-8s %-24s %-7d %-36s %7zu %s %s\n", m->lease_until_ms ?
	    "leased" : "waiting", when, m->attempt, m->id, m->payload.len,
	    backoff, keys ? keys : "[]");
}

int
cmd_queue_main(int argc, char **argv)
{
	struct kv_options	 opt = { .read_only = 1 };
	struct kv_queue_stats	 st;
	struct queue_args	 a;
	struct kv_db		*db;
	char			 err[512];
	enum kv_err		 e;
	int			 rc, first = 1;

	if ((rc = parse(argc, argv, &a)) != 0)
		return rc;
	if ((db = kv_open(a.path, &opt, err, sizeof(err))) == NULL) {
		fprintf(stderr, "denokv-fcgi: %s: %s\n", a.path, err);
		return 1;
	}
	if (strcmp(a.what, "stats") == 0) {
		if ((e = kv_queue_stats(db, kv_now_ms(), &st)) == KV_OK)
			printf("ready %lld\ndelayed %lld\nrunning %lld\n"
			    "expired_leases %lld\noldest_due_age_ms %lld\n"
			    "dead_lettered %lld\n",
			    (long long)st.ready, (long long)st.delayed,
			    (long long)st.running, (long long)st.expired,
			    (long long)st.oldest_due_age_ms,
			    (long long)st.dead_lettered);
	} else
		e = kv_queue_list(db, (size_t)a.limit, print_row, &first);
	kv_close(db);
	if (e != KV_OK) {
		fprintf(stderr, "denokv-fcgi: %s: %s\n", a.path,
		    kv_err_message(e));
		return 1;
	}
	return 0;
}
