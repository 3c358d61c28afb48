/*
 * test_write_turn.c: unit tests of fair write admission with a bounded
 * wait (shm_write_begin's timeout in src/shm.c), across real processes
 * made with fork(), printing TAP. Focus: a writer stuck holding its turn
 * makes a waiter give up after its timeout rather than wait for ever; a
 * waiter that gave up leaves the line consistent, so the writers behind it
 * are admitted in order as soon as the holder releases (through the
 * abandoned-ticket note, not the one-second stall repair); mutual
 * exclusion and progress survive many waiters timing out at random
 * moments, and the give-ups are counted for STATUS=.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "shm.h"
#include "testhelp.h"

/* State the test's processes share, beside the signal segment. */
struct board {
	_Atomic int	 holding;	/* the holder has its turn */
	_Atomic int	 release;	/* the holder may release it */
	_Atomic int	 inside;	/* writers in the critical section */
	_Atomic int	 overlaps;	/* times two were inside at once */
	_Atomic int	 n_admitted;
	_Atomic int	 admitted[16];	/* ids, in order of admission */
	_Atomic int64_t	 admitted_ms[16];
	_Atomic int	 gave_up[16];
	_Atomic int	 waiting[16];	/* has taken its ticket (roughly) */
};

static struct board	*B;

static void
nap_ms(int ms)
{
	struct timespec	 ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Polls cond every millisecond for at most ms; returns whether it held. */
#define WAIT_FOR(cond, ms) ({						\
	int64_t _end = clock_mono_ms() + (ms);				\
	while (!(cond) && clock_mono_ms() < _end)			\
		nap_ms(1);						\
	(cond);								\
})

static void
enter(int id)
{
	if (atomic_fetch_add(&B->inside, 1) != 0)
		atomic_fetch_add(&B->overlaps, 1);
	int n = atomic_fetch_add(&B->n_admitted, 1);
	if (n < 16) {
		atomic_store(&B->admitted[n], id);
		atomic_store(&B->admitted_ms[n], clock_mono_ms());
	}
}

static void
leave(void)
{
	atomic_fetch_sub(&B->inside, 1);
}

/* Child: take the turn, say so, hold it until told to release. */
static pid_t
spawn_holder(struct shm_segment *seg)
{
	pid_t	 pid = fork();
	int	 slot;

	if (pid != 0)
		return pid;
	slot = shm_proc_claim(seg, getpid());
	if (slot < 0 || shm_write_begin(seg, slot, -1) != 0)
		_exit(3);
	enter(0);
	atomic_store(&B->holding, 1);
	while (!atomic_load(&B->release))
		nap_ms(1);
	leave();
	shm_write_end(seg, slot);
	_exit(0);
}

/* Child: one write with this timeout; records admission or giving up. */
static pid_t
spawn_waiter(struct shm_segment *seg, int id, int timeout_ms)
{
	pid_t	 pid = fork();
	int	 slot;

	if (pid != 0)
		return pid;
	slot = shm_proc_claim(seg, getpid());
	if (slot < 0)
		_exit(3);
	atomic_store(&B->waiting[id], 1);
	if (shm_write_begin(seg, slot, timeout_ms) != 0) {
		atomic_store(&B->gave_up[id], 1);
		_exit(0);
	}
	enter(id);
	nap_ms(2);
	leave();
	shm_write_end(seg, slot);
	_exit(0);
}

/* Waits for a child and releases its process slot, as the master does. */
static int
reap(struct shm_segment *seg, pid_t pid)
{
	int	 status = -1;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	shm_proc_reaped(seg, pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void
reset_board(void)
{
	memset(B, 0, sizeof(*B));
}

/* A writer stuck in its turn: the next one gives up after its timeout. */
static void
test_stuck_holder(void)
{
	struct shm_segment	*seg = shm_create();
	pid_t			 holder;
	int64_t			 t0, waited;
	int			 slot, rc;

	reset_board();
	T_OK(seg != NULL, "stuck holder: a signal segment");
	if (seg == NULL)
		return;
	slot = shm_proc_claim(seg, getpid());
	holder = spawn_holder(seg);
	T_OK(WAIT_FOR(atomic_load(&B->holding), 10000),
	    "stuck holder: another process holds the turn");
	t0 = clock_mono_ms();
	rc = shm_write_begin(seg, slot, 300);
	waited = clock_mono_ms() - t0;
	T_EQ(rc, -1, "a writer behind it gives up (-1) instead of waiting"
	    " for ever");
	T_OK(waited >= 290 && waited < 10000, "after its 300 ms timeout"
	    " (waited %lld ms)", (long long)waited);
	T_EQ(shm_turn_timeouts(seg), 1, "the give-up is counted");
	atomic_store(&B->release, 1);
	T_EQ(reap(seg, holder), 0, "the holder releases and exits");
	t0 = clock_mono_ms();
	rc = shm_write_begin(seg, slot, 10000);
	T_EQ(rc, 0, "the writer that gave up is admitted on its next"
	    " attempt");
	T_OK(clock_mono_ms() - t0 < 10000, "promptly (%lld ms)",
	    (long long)(clock_mono_ms() - t0));
	if (rc == 0)
		shm_write_end(seg, slot);
	shm_destroy(seg);
}

/*
 * Holder H; behind it A (gives up after 300 ms), then C (no limit), then
 * D (gives up), then E (no limit). When H releases after A and D gave up,
 * C and E are admitted in that order at once: the turn passes over the
 * abandoned tickets through their notes, well before the stall repair
 * (which waits a second) could have skipped them.
 */
static void
test_line_behind_a_giver_up(void)
{
	struct shm_segment	*seg = shm_create();
	pid_t			 h, w[5];
	int64_t			 released;
	int			 ok, ids[] = { 1, 2, 3, 4 };
	int			 timeouts[] = { 300, -1, 300, -1 };

	reset_board();
	T_OK(seg != NULL, "line: a signal segment");
	if (seg == NULL)
		return;
	h = spawn_holder(seg);
	T_OK(WAIT_FOR(atomic_load(&B->holding), 10000),
	    "line: the holder has the turn");
	/* One at a time, so that their tickets are in this order. */
	for (int i = 0; i < 4; i++) {
		w[i] = spawn_waiter(seg, ids[i], timeouts[i]);
		WAIT_FOR(atomic_load(&B->waiting[ids[i]]), 10000);
		nap_ms(20);
	}
	ok = WAIT_FOR(atomic_load(&B->gave_up[1]) &&
	    atomic_load(&B->gave_up[3]), 10000);
	T_OK(ok, "line: both limited waiters gave up while the holder held"
	    " the turn");
	T_EQ(atomic_load(&B->n_admitted), 1,
	    "line: nobody was admitted meanwhile");
	released = clock_mono_ms();
	atomic_store(&B->release, 1);
	T_EQ(reap(seg, h), 0, "line: the holder releases");
	for (int i = 0; i < 4; i++)
		(void)reap(seg, w[i]);
	T_EQ(atomic_load(&B->n_admitted), 3,
	    "line: the two unlimited waiters were admitted");
	T_OK(atomic_load(&B->admitted[1]) == 2 &&
	    atomic_load(&B->admitted[2]) == 4,
	    "line: in ticket order (got %d then %d)",
	    atomic_load(&B->admitted[1]), atomic_load(&B->admitted[2]));
	T_OK(atomic_load(&B->admitted_ms[1]) - released < 900,
	    "line: the first of them right after the release (%lld ms),"
	    " not after the stall repair's second",
	    (long long)(atomic_load(&B->admitted_ms[1]) - released));
	T_EQ(atomic_load(&B->overlaps), 0, "line: never two writers at once");
	T_EQ(shm_turn_timeouts(seg), 2, "line: two give-ups counted");
	shm_destroy(seg);
}

/*
 * Many processes writing with tiny timeouts, so that giving up races with
 * the turn arriving: still one writer at a time, and the line never
 * wedges (a last unlimited writer gets in).
 */
static void
test_giving_up_races(void)
{
	enum { PROCS = 6, ROUNDS = 300 };
	struct shm_segment	*seg = shm_create();
	pid_t			 pids[PROCS];
	int			 slot, rc, bad = 0;
	int64_t			 t0;

	reset_board();
	T_OK(seg != NULL, "races: a signal segment");
	if (seg == NULL)
		return;
	for (int p = 0; p < PROCS; p++) {
		if ((pids[p] = fork()) != 0)
			continue;
		int	 my = shm_proc_claim(seg, getpid());
		unsigned seed = (unsigned)getpid();

		if (my < 0)
			_exit(3);
		for (int i = 0; i < ROUNDS; i++) {
			if (shm_write_begin(seg, my, (int)(rand_r(&seed) % 3))
			    != 0)
				continue;
			if (atomic_fetch_add(&B->inside, 1) != 0)
				atomic_fetch_add(&B->overlaps, 1);
			if (rand_r(&seed) % 4 == 0)
				nap_ms(1);
			atomic_fetch_sub(&B->inside, 1);
			shm_write_end(seg, my);
		}
		_exit(0);
	}
	for (int p = 0; p < PROCS; p++)
		bad |= reap(seg, pids[p]) != 0;
	T_OK(!bad, "races: %d processes x %d writes with 0-2 ms timeouts"
	    " ran to the end", PROCS, ROUNDS);
	T_EQ(atomic_load(&B->overlaps), 0, "races: never two writers at once");
	T_OK(shm_turn_timeouts(seg) > 0, "races: some waiters did give up"
	    " (%llu)", (unsigned long long)shm_turn_timeouts(seg));
	slot = shm_proc_claim(seg, getpid());
	t0 = clock_mono_ms();
	rc = shm_write_begin(seg, slot, 10000);
	T_EQ(rc, 0, "races: afterwards a writer is admitted (%lld ms): the"
	    " line is not wedged", (long long)(clock_mono_ms() - t0));
	if (rc == 0)
		shm_write_end(seg, slot);
	shm_destroy(seg);
}

/*
 * A holder stuck while writers give up again and again (each timed-out
 * request takes a new ticket and abandons it) leaves more abandoned
 * tickets than the table of notes holds. Once the holder releases, the
 * next writer must not wait a second per ticket beyond the table (the
 * stall repair's pace): it is admitted after one stall check.
 */
static void
test_give_ups_past_the_table(void)
{
	enum { BEYOND = 60 };
	struct shm_segment	*seg = shm_create();
	pid_t			 h;
	int64_t			 t0, waited;
	int			 slot, rc, refused = 0;

	reset_board();
	T_OK(seg != NULL, "past the table: a signal segment");
	if (seg == NULL)
		return;
	slot = shm_proc_claim(seg, getpid());
	h = spawn_holder(seg);
	T_OK(WAIT_FOR(atomic_load(&B->holding), 10000),
	    "past the table: the holder has the turn");
	for (int i = 0; i < SHM_ABANDONED + BEYOND; i++)
		refused += shm_write_begin(seg, slot, 0) != 0;
	T_EQ(refused, SHM_ABANDONED + BEYOND, "past the table: %d writes"
	    " gave up behind the holder", SHM_ABANDONED + BEYOND);
	atomic_store(&B->release, 1);
	T_EQ(reap(seg, h), 0, "past the table: the holder releases");
	t0 = clock_mono_ms();
	rc = shm_write_begin(seg, slot, 20000);
	waited = clock_mono_ms() - t0;
	T_EQ(rc, 0, "past the table: the next writer is admitted (after"
	    " %lld ms)", (long long)waited);
	T_OK(waited < 10000, "past the table: within 10 s, not a second per"
	    " ticket the table could not note (%d of them)", BEYOND);
	if (rc == 0)
		shm_write_end(seg, slot);
	shm_destroy(seg);
}

/*
 * The same with short timeouts (busy-timeout below the stall repair's
 * second): no writer ever waits a whole second, so a repair that counts
 * from each writer's own start never runs and the line would stay stuck
 * at the first ticket the table could not note, for good. Writers that
 * each wait 50 ms must get in again soon after the holder releases.
 */
static void
test_short_timeouts_past_the_table(void)
{
	enum { BEYOND = 60 };
	struct shm_segment	*seg = shm_create();
	pid_t			 h;
	int64_t			 t0;
	int			 slot, rc = -1, attempts = 0;

	reset_board();
	T_OK(seg != NULL, "short timeouts: a signal segment");
	if (seg == NULL)
		return;
	slot = shm_proc_claim(seg, getpid());
	h = spawn_holder(seg);
	T_OK(WAIT_FOR(atomic_load(&B->holding), 10000),
	    "short timeouts: the holder has the turn");
	for (int i = 0; i < SHM_ABANDONED + BEYOND; i++)
		(void)shm_write_begin(seg, slot, 0);
	atomic_store(&B->release, 1);
	T_EQ(reap(seg, h), 0, "short timeouts: the holder releases");
	t0 = clock_mono_ms();
	while (rc != 0 && clock_mono_ms() - t0 < 15000) {
		rc = shm_write_begin(seg, slot, 50);
		attempts++;
	}
	T_EQ(rc, 0, "short timeouts: a writer waiting 50 ms at a time gets in"
	    " again (after %d attempts, %lld ms)", attempts,
	    (long long)(clock_mono_ms() - t0));
	T_OK(clock_mono_ms() - t0 < 10000, "short timeouts: within 10 s");
	if (rc == 0)
		shm_write_end(seg, slot);
	shm_destroy(seg);
}

int
main(void)
{
	B = mmap(NULL, sizeof(*B), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (B == MAP_FAILED) {
		printf("Bail out! mmap failed\n");
		return 99;
	}
	test_stuck_holder();
	test_line_behind_a_giver_up();
	test_giving_up_races();
	test_give_ups_past_the_table();
	test_short_timeouts_past_the_table();
	return t_done();
}
