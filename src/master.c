/*
 * master.c: start-up, supervision, reload and stop (see master.h).
 *
 * Signals are never handled asynchronously here: the master blocks them and
 * takes them one at a time from sigtimedwait(), which also gives it a tick
 * for delayed respawns and the systemd watchdog. Children get a clean
 * signal state after fork.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "conf.h"
#include "housekeeper.h"
#include "leakcheck.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "privdrop.h"
#include "segtab.h"
#include "shm.h"
#include "worker.h"

#define MAX_WORKERS		256
/*
 * Room to track every retiring process. What bounds them is the signal
 * segment: each child holds up to SHM_SLOTS_PER_CHILD of its SHM_MAX_PROCS
 * process slots until it is reaped, and a new generation starts while the
 * one before it and the retirees still hold theirs; make_room() keeps the
 * sum in bounds.
 */
#define MAX_CHILDREN		(SHM_MAX_PROCS / SHM_SLOTS_PER_CHILD)
#define MAX_RETIRING		MAX_CHILDREN
/* How long SIGKILLed processes get to be reaped before the master leaves. */
#define KILL_GRACE_MS		1000
/*
 * How long a reload waits for the retirees it killed to make room: up to
 * a generation of them at once, on a loaded machine (then it goes on).
 */
#define ROOM_WAIT_MS		5000
/* A child that dies sooner than this after starting counts as a crash loop. */
#define FAST_FAIL_MS		1000
#define BACKOFF_FIRST_MS	100
#define BACKOFF_MAX_MS		10000
#define TICK_MS			250
#define STATUS_INTERVAL_MS	5000

enum child_kind {
	CHILD_WORKER,
	CHILD_HOUSEKEEPER,
};

struct child {
	pid_t		 pid;		/* 0: not running */
	enum child_kind	 kind;
	int		 generation;
	int64_t		 started_ms;
	int		 fast_fails;
	int64_t		 respawn_at_ms;	/* 0: no respawn pending */
	int		 gave_up;	/* exited with EXIT_NO_RESTART */
};

/* A process of an earlier generation, told to finish its requests. */
struct retiree {
	pid_t		 pid;
	int64_t		 deadline_ms;	/* killed if still running then */
};

struct master {
	int		 argc;
	char		**argv;
	struct conf	 conf;
	int		 listen_fd;
	struct segtab	 segs;		/* one signal segment per database */
	char		 socket_path[PATH_MAX];	/* a unix socket we created */
	dev_t		 socket_dev;		/* ... and its identity */
	ino_t		 socket_ino;
	int		 generation;
	/* current generation: slots 0..conf.workers-1, then the housekeeper */
	struct child	 slots[MAX_WORKERS + 1];
	/*
	 * Previous generations still finishing their requests. Every pid in
	 * slots[] and retiring[] is a child not yet reaped, so it cannot
	 * have been reused: reap() removes an entry the moment waitpid()
	 * returns it, and nothing else adds or keeps one.
	 */
	struct retiree	 retiring[MAX_RETIRING];
	int		 n_retiring;
	unsigned long	 restarts;
	uint64_t	 watchdog_usec;
	int64_t		 next_watchdog_ms;
	int64_t		 next_status_ms;
	int		 stopping;
};

static struct child *
housekeeper_slot(struct master *m)
{
	return &m->slots[MAX_WORKERS];
}

static int
n_running_workers(const struct master *m)
{
	int	 n = 0;

	for (int i = 0; i < m->conf.workers; i++)
		n += m->slots[i].pid > 0;
	return n;
}

static void
notify_status(struct master *m)
{
	uint64_t	 wait_us = segtab_max_wait_us(&m->segs);
	uint64_t	 timeouts = segtab_turn_timeouts(&m->segs);
	char		 faults[512] = "";
	struct metrics_service sv = {
		.workers = m->conf.workers,
		.workers_running = n_running_workers(m),
		.generation = m->generation,
		.restarts = m->restarts,
	};

	metrics_set_service(&sv);
	segtab_fault_summary(&m->segs, faults, sizeof(faults));
	sd_notifyf(0, "STATUS=serving with %d of %d workers, %lu restarts,"
	    " generation %d, longest write-queue wait %llu.%03llu ms,"
	    " %llu write-queue timeouts%s%s",
	    n_running_workers(m), m->conf.workers, m->restarts,
	    m->generation, (unsigned long long)(wait_us / 1000),
	    (unsigned long long)(wait_us % 1000),
	    (unsigned long long)timeouts, faults[0] ? "; " : "", faults);
}

/* --- children ------------------------------------------------------------- */

/*
 * Stop signals stay blocked: a SIGTERM that comes while the child is still
 * starting (a reload followed at once by a stop) waits for the worker's or
 * the housekeeper's own handling, which blocks them too and takes them in
 * its wait, instead of killing the child midway as a signal death that
 * looks like a crash in the log.
 */
static void
child_reset_signals(void)
{
	sigset_t	 stop;

	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_IGN);	/* reload is the master's business */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_SETMASK, &stop, NULL);
}

/* Every way out of a child that has set itself up. */
static void __attribute__((noreturn))
child_exit(int status)
{
	leakcheck_before_exit();
	_exit(status);
}

/* Runs in the child: never returns. */
static void
child_main(struct master *m, enum child_kind kind, pid_t master_pid)
{
	struct server	 srv;
	char		 err[1024];
	int		 rc;

	/* Leave with the master, even if it is killed outright. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid)
		_exit(0);
	child_reset_signals();
	if (kind == CHILD_HOUSEKEEPER) {
		log_settag("housekeeper");
		close(m->listen_fd);
		child_exit(housekeeper_run(&m->conf, m->segs.order));
	}
	log_settag("worker");
	if (server_init(&srv, &m->conf, m->listen_fd, m->segs.order, err,
	    sizeof(err)) != 0) {
		log_errorx("cannot start serving: %s", err);
		child_exit(EXIT_NO_RESTART);
	}
	rc = worker_run(&srv);
	server_fini(&srv);
	child_exit(rc);
}

static int
spawn(struct master *m, struct child *c, enum child_kind kind)
{
	pid_t	 master_pid = getpid(), pid;

	pid = fork();
	if (pid < 0) {
		log_warn("fork");
		c->pid = 0;
		c->respawn_at_ms = clock_mono_ms() + BACKOFF_FIRST_MS;
		return -1;
	}
	if (pid == 0)
		child_main(m, kind, master_pid);
	c->pid = pid;
	c->kind = kind;
	c->generation = m->generation;
	c->started_ms = clock_mono_ms();
	c->respawn_at_ms = 0;
	log_debug("started %s %ld", kind == CHILD_WORKER ? "worker" :
	    "housekeeper", (long)pid);
	return 0;
}

/*
 * Starts a whole generation into emptied slots. Every slot is cleared, not
 * only the new count's: after a reload to fewer workers, a slot past the
 * new count must not keep an old pid (stop would wait for it for ever) or
 * a pending respawn. Returns how many workers were forked.
 */
static int
spawn_generation(struct master *m)
{
	int	 started = 0;

	memset(m->slots, 0, sizeof(m->slots));
	for (int i = 0; i < m->conf.workers; i++)
		started += spawn(m, &m->slots[i], CHILD_WORKER) == 0;
	spawn(m, housekeeper_slot(m), CHILD_HOUSEKEEPER);
	return started;
}

/* uptime_ms < 0: not known (a process of a retired generation). */
static void
log_exit(pid_t pid, const char *what, int status, int64_t uptime_ms)
{
	char	 up[48] = "";

	if (uptime_ms >= 0)
		snprintf(up, sizeof(up), " after %lld ms", (long long)uptime_ms);
	if (WIFSIGNALED(status))
		log_warnx("%s %ld killed by signal %d%s%s", what, (long)pid,
		    WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "",
		    up);
	else if (WEXITSTATUS(status) != 0)
		log_warnx("%s %ld exited with status %d%s", what, (long)pid,
		    WEXITSTATUS(status), up);
	else
		log_debug("%s %ld exited%s", what, (long)pid, up);
}

/* Decides when a dead child of the current generation comes back. */
static void
schedule_respawn(struct child *c, int status)
{
	int64_t	 uptime = clock_mono_ms() - c->started_ms, delay;

	c->pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_NO_RESTART) {
		log_warnx("not restarting it: it failed to start");
		c->gave_up = 1;
		return;
	}
	if (uptime < FAST_FAIL_MS)
		c->fast_fails++;
	else
		c->fast_fails = 0;
	/* The first crash is replaced at once; a crash loop is slowed. */
	delay = 0;
	if (c->fast_fails > 1) {
		delay = BACKOFF_FIRST_MS << (c->fast_fails - 2 < 7 ?
		    c->fast_fails - 2 : 7);
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
		log_warnx("crash loop: %d quick exits in a row, restarting in"
		    " %lld ms", c->fast_fails, (long long)delay);
	}
	c->respawn_at_ms = clock_mono_ms() + delay;
	if (c->respawn_at_ms == 0)
		c->respawn_at_ms = 1;
}

static int
remove_retiring(struct master *m, pid_t pid)
{
	for (int i = 0; i < m->n_retiring; i++) {
		if (m->retiring[i].pid == pid) {
			m->retiring[i] = m->retiring[--m->n_retiring];
			return 1;
		}
	}
	return 0;
}

static void
reap(struct master *m)
{
	pid_t	 pid;
	int	 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child	*c = NULL;

		/* Give up its places in the write queues before anything else. */
		segtab_reaped(&m->segs, pid);
		metrics_proc_reaped(pid);

		if (remove_retiring(m, pid)) {
			log_exit(pid, "retired process", status, -1);
			continue;
		}
		for (int i = 0; i <= MAX_WORKERS; i++)
			if (m->slots[i].pid == pid)
				c = &m->slots[i];
		if (c == NULL)
			continue;
		log_exit(pid, c->kind == CHILD_WORKER ? "worker" :
		    "housekeeper", status, clock_mono_ms() - c->started_ms);
		if (m->stopping) {
			c->pid = 0;
			continue;
		}
		m->restarts++;
		schedule_respawn(c, status);
		notify_status(m);
	}
}

static void
respawn_due(struct master *m)
{
	int64_t	 now = clock_mono_ms();

	for (int i = 0; i <= MAX_WORKERS; i++) {
		struct child	*c = &m->slots[i];

		/* Only the current generation's slots are ever refilled. */
		if (i >= m->conf.workers && i != MAX_WORKERS)
			continue;
		if (c->pid == 0 && c->respawn_at_ms != 0 &&
		    c->respawn_at_ms <= now) {
			spawn(m, c, i == MAX_WORKERS ? CHILD_HOUSEKEEPER :
			    CHILD_WORKER);
			notify_status(m);
		}
	}
}

/*
 * 1 if pid is a child of ours that has not been reaped (running or a
 * zombie): the only pids the master may signal. WNOWAIT leaves it to reap().
 */
static int
is_unreaped_child(pid_t pid)
{
	siginfo_t	 si;

	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
	    0;
}

/*
 * Kills the retiring processes that outlived shutdown-timeout: a request
 * that long is stuck, and a reload must not leave old processes behind.
 */
static void
kill_overdue_retirees(struct master *m)
{
	int64_t	 now = clock_mono_ms();

	for (int i = 0; i < m->n_retiring; i++) {
		struct retiree	*r = &m->retiring[i];

		if (r->deadline_ms == 0 || r->deadline_ms > now)
			continue;
		if (is_unreaped_child(r->pid)) {
			log_warnx("retired process %ld still running %d s"
			    " after the reload (shutdown-timeout): killing it",
			    (long)r->pid, m->conf.shutdown_timeout);
			kill(r->pid, SIGKILL);
		}
		r->deadline_ms = 0;	/* killed once; reap() removes it */
	}
}

static int
all_workers_gave_up(const struct master *m)
{
	for (int i = 0; i < m->conf.workers; i++)
		if (!m->slots[i].gave_up)
			return 0;
	return 1;
}

/* --- reload ---------------------------------------------------------------- */

/* Settings bound at start-up: a reload keeps them and says so. */
static void
keep_fixed_settings(const struct conf *old, struct conf *new)
{
	static const struct {
		const char	*name;
		size_t		 offset;
	} fixed[] = {
		{ "sqlite-path", offsetof(struct conf, sqlite_path) },
		{ "listen", offsetof(struct conf, listen) },
		{ "user", offsetof(struct conf, user) },
		{ "group", offsetof(struct conf, group) },
		{ "socket-user", offsetof(struct conf, socket_user) },
		{ "socket-group", offsetof(struct conf, socket_group) },
	};

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		char	**o = (char **)((char *)old + fixed[i].offset);
		char	**n = (char **)((char *)new + fixed[i].offset);

		if ((*o == NULL) != (*n == NULL) ||
		    (*o != NULL && strcmp(*o, *n) != 0)) {
			log_warnx("reload: %s changed; it takes effect only"
			    " after a restart", fixed[i].name);
			free(*n);
			*n = *o != NULL ? strdup(*o) : NULL;
		}
	}
	/*
	 * sqlite-synchronous is not among them: it is a setting of each
	 * SQLite connection, and every worker and the housekeeper of the new
	 * generation opens its own.
	 */
	if (new->socket_mode != old->socket_mode ||
	    new->read_only != old->read_only ||
	    new->allow_root != old->allow_root)
		log_warnx("reload: socket-mode, read-only and allow-root take"
		    " effect only after a restart");
	new->socket_mode = old->socket_mode;
	new->read_only = old->read_only;
	new->allow_root = old->allow_root;
}

/* Children not yet reaped: the current generation and the retirees. */
static int
n_children(const struct master *m)
{
	int	 n = m->n_retiring;

	for (int i = 0; i <= MAX_WORKERS; i++)
		n += m->slots[i].pid > 0;
	return n;
}

/*
 * Frees process slots for `needed' new children: a child that finds no
 * slot cannot serve (and is not restarted), so when reloads come faster
 * than retirees finish, the retirees nearest their deadline (the first
 * to be killed anyway) are killed now and reaped before the new
 * generation starts. Waits for SIGCHLD only, so a stop signal that
 * arrives meanwhile stays pending for the main loop.
 */
static void
make_room(struct master *m, int needed)
{
	struct timespec	 tick = { 0, 50 * 1000000L };
	sigset_t	 chld;
	int64_t		 deadline;
	int		 excess = n_children(m) + needed - MAX_CHILDREN;

	if (excess <= 0)
		return;
	/* Retirees killed already are on their way out. */
	for (int i = 0; i < m->n_retiring; i++)
		excess -= m->retiring[i].deadline_ms == 0;
	if (excess > 0)
		log_warnx("reload: %d retiring processes leave no room for a"
		    " new generation: killing %d of them", m->n_retiring,
		    excess);
	for (; excess > 0; excess--) {
		struct retiree	*first = NULL;

		for (int i = 0; i < m->n_retiring; i++)
			if (m->retiring[i].deadline_ms != 0 && (first == NULL ||
			    m->retiring[i].deadline_ms < first->deadline_ms))
				first = &m->retiring[i];
		if (first == NULL)
			break;
		if (is_unreaped_child(first->pid))
			kill(first->pid, SIGKILL);
		first->deadline_ms = 0;
	}
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	deadline = clock_mono_ms() + ROOM_WAIT_MS;
	reap(m);
	while (n_children(m) + needed > MAX_CHILDREN &&
	    clock_mono_ms() < deadline) {
		(void)sigtimedwait(&chld, NULL, &tick);
		reap(m);
	}
}

/* Tells a process of an earlier generation to finish and tracks it. */
static void
retire(struct master *m, pid_t pid)
{
	if (m->n_retiring == MAX_RETIRING) {
		/* Reloads faster than requests finish: no room to wait. */
		log_warnx("too many retiring processes: killing %ld",
		    (long)pid);
		kill(pid, SIGKILL);
		return;
	}
	m->retiring[m->n_retiring].pid = pid;
	m->retiring[m->n_retiring].deadline_ms = clock_mono_ms() +
	    (int64_t)m->conf.shutdown_timeout * 1000;
	m->n_retiring++;
	kill(pid, SIGTERM);
}

static void
reload(struct master *m)
{
	struct conf	 fresh, running;
	struct child	 old[MAX_WORKERS + 1];
	char		 err[1024];

	/* MONOTONIC_USEC: newer systemd matches the reload by it. */
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)clock_mono_ms() * 1000);
	log_info("reloading configuration");
	if (conf_parse(m->argc, m->argv, &fresh, err, sizeof(err)) !=
	    CONF_OK) {
		log_warnx("reload failed, keeping the running configuration:"
		    " %s", err);
		sd_notify(0, "READY=1");
		return;
	}
	keep_fixed_settings(&m->conf, &fresh);
	/* Segments first: the new generation inherits them at fork. */
	if (segtab_sync(&m->segs, &fresh, err, sizeof(err)) != 0) {
		log_warnx("reload failed, keeping the running configuration:"
		    " %s", err);
		(void)segtab_sync(&m->segs, &m->conf, err, sizeof(err));
		conf_fini(&fresh);
		sd_notify(0, "READY=1");
		return;
	}
	/*
	 * The new generation starts accepting on the shared socket before
	 * the old one is told to finish, so no request finds nobody home.
	 */
	make_room(m, fresh.workers + 1);
	memcpy(old, m->slots, sizeof(old));
	running = m->conf;
	m->conf = fresh;
	m->generation++;
	if (spawn_generation(m) == 0) {
		/*
		 * Not one new worker could be forked (fork fails: a task or
		 * memory limit): retiring the old ones would leave nobody to
		 * serve, so they go on with the running configuration.
		 */
		log_warnx("reload failed, keeping the running configuration"
		    " and workers: no new worker could be started");
		for (int i = 0; i <= MAX_WORKERS; i++)
			if (m->slots[i].pid > 0)
				retire(m, m->slots[i].pid);
		memcpy(m->slots, old, sizeof(old));
		conf_fini(&m->conf);
		m->conf = running;
		/* Only finds what it has: no mapping can fail here. */
		(void)segtab_sync(&m->segs, &m->conf, err, sizeof(err));
		m->generation--;
		sd_notify(0, "READY=1");
		return;
	}
	conf_fini(&running);
	log_init("master", m->conf.log_level);
	for (int i = 0; i <= MAX_WORKERS; i++)
		if (old[i].pid > 0)
			retire(m, old[i].pid);
	log_info("reloaded: %d workers, generation %d", m->conf.workers,
	    m->generation);
	sd_notify(0, "READY=1");
	notify_status(m);
}

/* --- stop ------------------------------------------------------------------ */

/* Signals every tracked child; only pids not yet reaped are tracked. */
static void
signal_all(struct master *m, int sig)
{
	for (int i = 0; i <= MAX_WORKERS; i++)
		if (m->slots[i].pid > 0 && is_unreaped_child(m->slots[i].pid))
			kill(m->slots[i].pid, sig);
	for (int i = 0; i < m->n_retiring; i++)
		if (is_unreaped_child(m->retiring[i].pid))
			kill(m->retiring[i].pid, sig);
}

/* Reaps until no child is left or the deadline passes. */
static void
reap_until(struct master *m, const sigset_t *set, int64_t deadline)
{
	struct timespec	 tick;
	int64_t		 left;

	reap(m);
	while (n_children(m) > 0 && (left = deadline - clock_mono_ms()) > 0) {
		if (left > TICK_MS)
			left = TICK_MS;
		tick.tv_sec = 0;
		tick.tv_nsec = (long)left * 1000000L;
		(void)sigtimedwait(set, NULL, &tick);
		reap(m);
	}
}

/*
 * Lets in-flight requests finish within shutdown-timeout, then kills what
 * is left. Returns within shutdown-timeout plus KILL_GRACE_MS whatever the
 * children do: a child that even SIGKILL does not end in time (stuck in
 * the kernel) is left to exit on its own.
 */
static void
stop_children(struct master *m, const sigset_t *set)
{
	m->stopping = 1;
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	signal_all(m, SIGTERM);
	reap_until(m, set, clock_mono_ms() +
	    (int64_t)m->conf.shutdown_timeout * 1000);
	if (n_children(m) == 0)
		return;
	log_warnx("shutdown timeout: killing %d remaining processes",
	    n_children(m));
	signal_all(m, SIGKILL);
	reap_until(m, set, clock_mono_ms() + KILL_GRACE_MS);
	if (n_children(m) > 0)
		log_warnx("%d processes did not exit after SIGKILL; leaving"
		    " them", n_children(m));
}

/* --- start-up -------------------------------------------------------------- */

/* The database and its directory must be writable by whoever serves it. */
static int
check_database_access(const struct conf *c, char *errbuf, size_t errlen)
{
	char	 dir[PATH_MAX];

	if (c->read_only)
		return 0;
	snprintf(dir, sizeof(dir), "%s", c->sqlite_path);
	/* SQLite creates the -wal and -shm files beside the database. */
	if (access(dirname(dir), W_OK | X_OK) != 0) {
		snprintf(dir, sizeof(dir), "%s", c->sqlite_path);
		snprintf(errbuf, errlen, "database directory %s is not"
		    " writable by uid %ld: %s", dirname(dir), (long)getuid(),
		    strerror(errno));
		return -1;
	}
	if (access(c->sqlite_path, F_OK) == 0 &&
	    access(c->sqlite_path, R_OK | W_OK) != 0) {
		snprintf(errbuf, errlen, "database %s is not writable by uid"
		    " %ld: %s", c->sqlite_path, (long)getuid(),
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Opens and migrates once, before any child exists, then closes. The
 * databases of a configuration file are opened and migrated by whoever
 * uses one first: a host with a thousand of them starts at once.
 */
static int
prepare_database(const struct conf *c, char *errbuf, size_t errlen)
{
	struct kv_options	 opt = conf_kv_options(c);
	struct kv_db		*db;

	if (c->databases != NULL)
		return 0;
	if (check_database_access(c, errbuf, errlen) != 0)
		return -1;
	if ((db = kv_open(c->sqlite_path, &opt, errbuf, errlen)) == NULL)
		return -1;
	kv_close(db);
	return 0;
}

/*
 * Each open watch stream is a socket: take all the descriptors the hard
 * limit allows (LimitNOFILE= under systemd), not the 1024 soft default.
 */
static void
raise_fd_limit(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warn("raising the open-file limit");
	else
		log_debug("open-file limit raised to %llu",
		    (unsigned long long)rl.rlim_cur);
}

static int
setup(struct master *m, char *err, size_t errlen)
{
	struct privdrop	 pd;
	const char	*desc;
	int		 flags;

	if (privdrop_plan(&m->conf, &pd, err, errlen) != 0)
		return -1;
	raise_fd_limit();
	if ((m->listen_fd = listen_open(&m->conf, &desc, err, errlen)) < 0)
		return -1;
	if (listen_created_path() != NULL) {
		struct stat	 sb;

		snprintf(m->socket_path, sizeof(m->socket_path), "%s",
		    listen_created_path());
		if (lstat(m->socket_path, &sb) == 0) {
			m->socket_dev = sb.st_dev;
			m->socket_ino = sb.st_ino;
		}
	}
	if (privdrop_apply(&pd, err, errlen) != 0)
		return -1;
	if (pd.needed)
		log_info("running as user %s (uid %ld, gid %ld)", pd.user,
		    (long)pd.uid, (long)pd.gid);
	if (prepare_database(&m->conf, err, errlen) != 0)
		return -1;
	/* Mapped before any fork, so every child shares the same pages. */
	if (segtab_sync(&m->segs, &m->conf, err, errlen) != 0)
		return -1;
	if (shm_bell_init() != 0) {
		snprintf(err, errlen, "cannot map the doorbell: %s",
		    strerror(errno));
		return -1;
	}
	/* The counters' segment too (metrics.h). */
	if (metrics_init() != 0) {
		snprintf(err, errlen, "cannot map the metrics segment: %s",
		    strerror(errno));
		return -1;
	}
	/* Workers poll, then accept; the loser of a race must not block. */
	flags = fcntl(m->listen_fd, F_GETFL);
	if (flags < 0 || fcntl(m->listen_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl O_NONBLOCK: %s", strerror(errno));
		return -1;
	}
	if (m->conf.databases != NULL)
		log_info("serving %zu %sdatabase%s on %s with %d workers",
		    m->conf.ndatabases, m->conf.read_only ? "read-only " : "",
		    m->conf.ndatabases == 1 ? "" : "s", desc,
		    m->conf.workers);
	else
		log_info("serving %sdatabase %s on %s with %d workers",
		    m->conf.read_only ? "read-only " : "",
		    m->conf.sqlite_path, desc, m->conf.workers);
	return 0;
}

static void
watchdog_tick(struct master *m)
{
	if (m->watchdog_usec == 0 || clock_mono_ms() < m->next_watchdog_ms)
		return;
	sd_notify(0, "WATCHDOG=1");
	m->next_watchdog_ms = clock_mono_ms() +
	    (int64_t)(m->watchdog_usec / 2000);
}

static int
supervise(struct master *m)
{
	struct timespec	 tick = { 0, TICK_MS * 1000000L };
	sigset_t	 set;
	int		 sig;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (sd_watchdog_enabled(0, &m->watchdog_usec) <= 0)
		m->watchdog_usec = 0;
	spawn_generation(m);
	sd_notify(0, "READY=1");
	notify_status(m);
	for (;;) {
		sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("received %s, stopping", sig == SIGTERM ?
			    "SIGTERM" : "SIGINT");
			break;
		}
		if (sig == SIGHUP)
			reload(m);
		reap(m);
		if (all_workers_gave_up(m)) {
			log_errorx("no worker could start; giving up");
			stop_children(m, &set);
			return 1;
		}
		respawn_due(m);
		kill_overdue_retirees(m);
		/* Removed databases' segments, once no child uses them. */
		if (m->n_retiring == 0)
			segtab_release_removed(&m->segs);
		watchdog_tick(m);
		if (clock_mono_ms() >= m->next_status_ms) {
			notify_status(m);
			m->next_status_ms = clock_mono_ms() +
			    STATUS_INTERVAL_MS;
		}
	}
	stop_children(m, &set);
	return 0;
}

/*
 * Removes our socket file, unless a newer instance has already replaced
 * it with its own (same path, another inode).
 */
static void
remove_socket(const struct master *m)
{
	struct stat	 sb;

	if (m->socket_path[0] == '\0' || lstat(m->socket_path, &sb) != 0)
		return;
	if (sb.st_dev == m->socket_dev && sb.st_ino == m->socket_ino)
		(void)unlink(m->socket_path);
}

int
master_main(int argc, char **argv)
{
	static struct master	 m;	/* large: keep it off the stack */
	char			 err[1024];
	int			 rc;

	log_init("master", LOG_LVL_INFO);
	m.argc = argc;
	m.argv = argv;
	m.listen_fd = -1;
	switch (conf_parse(argc, argv, &m.conf, err, sizeof(err))) {
	case CONF_EXIT:
		return 0;
	case CONF_ERROR:
		log_errorx("%s", err);
		return EXIT_NO_RESTART;
	case CONF_OK:
		break;
	}
	log_init("master", m.conf.log_level);
	if (m.conf.check_only) {
		struct privdrop	 pd;

		/*
		 * Checked by root, a file meant for a service that starts as
		 * its own user (systemd User=) must not fail for lack of user=.
		 */
		if (m.conf.user == NULL && geteuid() == 0)
			m.conf.allow_root = 1;
		if (privdrop_plan(&m.conf, &pd, err, sizeof(err)) != 0) {
			log_errorx("%s", err);
			conf_fini(&m.conf);
			return EXIT_NO_RESTART;
		}
		fprintf(stderr, "configuration OK\n");
		conf_fini(&m.conf);
		return 0;
	}
	if (setup(&m, err, sizeof(err)) != 0) {
		log_errorx("%s", err);
		sd_notifyf(0, "STATUS=failed to start: %s", err);
		remove_socket(&m);
		conf_fini(&m.conf);
		return EXIT_NO_RESTART;
	}
	rc = supervise(&m);
	remove_socket(&m);
	log_info("stopped");
	segtab_free(&m.segs);
	conf_fini(&m.conf);
	return rc;
}
