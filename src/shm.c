/*
 * shm.c: the signal segment (see shm.h for what and why).
 *
 * Ticket lock invariants: tickets start at 1; `serving` is the ticket that
 * may write now; a process records its ticket in its slot right after
 * taking it and clears it after its write, or when it gives up waiting
 * (then, like the master for a dead process, it notes the ticket as
 * abandoned, and the release before it passes the turn straight on). serving only ever moves from t
 * to t+1 by compare-and-swap in advance(), so a ticket is passed exactly
 * once however many processes try (the releaser, the master repairing a
 * dead holder, a waiter repairing a stall).
 *
 * Hand-off: each waiter sleeps on its own futex word and records which
 * slot holds its ticket in owners[]; advance() wakes only that slot, so a
 * release costs one wake-up, not one per waiter. A waiter not recorded yet
 * has not slept yet either: it checks `serving` before it sleeps.
 */
#include <sys/mman.h>
#include <sys/syscall.h>

#include <linux/futex.h>

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "kv.h"
#include "metrics.h"
#include "shm.h"

/* A ticket taken this long ago that nobody owns may be passed over. */
#define STALL_CHECK_MS	1000
#define WAIT_SLICE_MS	100

struct shm_proc {
	_Atomic int32_t		 pid;
	_Atomic uint64_t	 ticket;	/* 0: none */
	_Atomic uint32_t	 wake;		/* its own futex: bumped on its turn */
	_Atomic int32_t		 watches;	/* open watch streams it holds */
};

/* Who holds ticket t: lets a releaser wake exactly the next writer. */
#define SHM_TICKET_RING	(2 * SHM_MAX_PROCS)
struct shm_ticket_owner {
	_Atomic uint64_t	 ticket;
	_Atomic int32_t		 slot;
};

struct shm_segment {
	uint32_t		 magic;
	uint32_t		 version;
	uint64_t		 size;
	/* write admission */
	_Atomic uint64_t	 next_ticket;
	_Atomic uint64_t	 serving;
	_Atomic uint64_t	 max_wait_us;
	_Atomic uint64_t	 turn_timeouts;	/* writers that gave up waiting */
	/* storage faults, reported by the master in STATUS= */
	_Atomic uint64_t	 faults;	/* all of them */
	_Atomic uint64_t	 disk_full;	/* of which: disk full */
	_Atomic int32_t		 last_fault;	/* enum kv_err */
	_Atomic uint64_t	 last_fault_us;	/* CLOCK_MONOTONIC */
	struct shm_ticket_owner	 owners[SHM_TICKET_RING];
	_Atomic uint64_t	 abandoned[SHM_ABANDONED];
	_Atomic uint32_t	 n_abandoned;	/* >= the notes in abandoned[] */
	_Atomic uint64_t	 aged;		/* see aged_bound() */
	/*
	 * 1 + the highest slot ever claimed: scans of procs[] stop there, so
	 * that the master's look at every segment when it reaps a child
	 * touches only the slots in use, not all of procs[] (about 48 kB of
	 * shared memory per database, and per segment once it is touched).
	 */
	_Atomic int32_t		 procs_used;
	struct shm_proc		 procs[SHM_MAX_PROCS];
	/* change notification */
	_Atomic uint64_t	 ring_head;
	struct {
		_Atomic uint64_t seq;	/* pos + 1 once written */
		_Atomic uint32_t slot;
	}			 ring[SHM_CHANGE_RING];
	_Atomic uint32_t	 commit_futex;
	_Atomic uint64_t	 change[SHM_CHANGE_SLOTS];
	_Atomic uint64_t	 local[SHM_LOCAL_VERSIONS];	/* v at v % size */
	/* queue delivery: bumped when messages are put into the queue */
	_Atomic uint32_t	 queue_futex;
};

/*
 * The host-wide doorbell (shm.h): one word on a page of its own, mapped by
 * the master before it forks, like the segments. A process-wide mapping,
 * one of the house's allowed globals; NULL in programs that never made
 * one (the verbs, the unit tests), which then ring nothing.
 */
struct shm_bell {
	uint32_t		 magic;
	_Atomic uint32_t	 word;
};
#define SHM_BELL_MAGIC	0x444b5642u	/* "DKVB" */
static struct shm_bell	*bell;

static long
futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	/* Not FUTEX_PRIVATE: the waiters are in other processes. */
	return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

/* Sleeps on word while it still holds val, at most us microseconds. */
static void
futex_sleep(_Atomic uint32_t *word, uint32_t val, uint64_t us)
{
	struct timespec	 ts = {
		.tv_sec = (time_t)(us / 1000000),
		.tv_nsec = (long)(us % 1000000) * 1000,
	};

	(void)futex(word, FUTEX_WAIT, val, &ts);
}

struct shm_segment *
shm_create(void)
{
	struct shm_segment	*s;

	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	/*
	 * Fresh anonymous pages are zero; set what is not, which is all on
	 * the first page: the rest stays untouched (no memory) until used.
	 */
	s->magic = SHM_MAGIC;
	s->version = SHM_VERSION;
	s->size = sizeof(*s);
	atomic_store(&s->next_ticket, 1);
	atomic_store(&s->serving, 1);
	return s;
}

void
shm_destroy(struct shm_segment *s)
{
	if (s != NULL)
		munmap(s, sizeof(*s));
}

int
shm_proc_claim(struct shm_segment *s, pid_t pid)
{
	for (int i = 0; i < SHM_MAX_PROCS; i++) {
		int32_t	 free_pid = 0;

		if (atomic_compare_exchange_strong(&s->procs[i].pid, &free_pid,
		    (int32_t)pid)) {
			int32_t	 used = atomic_load(&s->procs_used);

			atomic_store(&s->procs[i].ticket, 0);
			atomic_store(&s->procs[i].watches, 0);
			/* Before the slot is used: scans then include it. */
			while (used < i + 1 && !atomic_compare_exchange_weak(
			    &s->procs_used, &used, i + 1))
				;
			return i;
		}
	}
	return -1;
}

static void
wake_all(_Atomic uint32_t *word)
{
	atomic_fetch_add(word, 1);
	futex(word, FUTEX_WAKE, INT32_MAX, NULL);
}

/*
 * Removes the note for ticket t, if there is one. n_abandoned is never
 * below the number of notes (abandon() counts before it stores), so a
 * release that reads 0 can skip the scan: an abandon() it did not see
 * finds the turn at its ticket itself and passes it on.
 */
static int
take_abandoned(struct shm_segment *s, uint64_t t)
{
	if (atomic_load(&s->n_abandoned) == 0)
		return 0;
	for (int i = 0; i < SHM_ABANDONED; i++) {
		uint64_t	 expect = t;

		if (atomic_load_explicit(&s->abandoned[i],
		    memory_order_relaxed) == t &&
		    atomic_compare_exchange_strong(&s->abandoned[i], &expect,
		    0)) {
			atomic_fetch_sub(&s->n_abandoned, 1);
			return 1;
		}
	}
	return 0;
}

/* Wakes the writer holding ticket t, if it is known yet. */
static void
wake_owner(struct shm_segment *s, uint64_t t)
{
	struct shm_ticket_owner	*o = &s->owners[t % SHM_TICKET_RING];
	int32_t			 slot;

	if (atomic_load(&o->ticket) != t)
		return;
	slot = atomic_load(&o->slot);
	if (slot < 0 || slot >= SHM_MAX_PROCS)
		return;
	atomic_fetch_add(&s->procs[slot].wake, 1);
	futex(&s->procs[slot].wake, FUTEX_WAKE, 1, NULL);
}

/* Passes the turn from t to t+1, skipping tickets nobody will use. */
static void
advance(struct shm_segment *s, uint64_t t)
{
	for (;;) {
		uint64_t	 expect = t;

		if (!atomic_compare_exchange_strong(&s->serving, &expect, t + 1))
			return;
		wake_owner(s, t + 1);
		if (!take_abandoned(s, t + 1))
			return;
		t++;
	}
}

/*
 * Notes that nobody will write with ticket t: its holder died, or gave up
 * waiting. Whoever passes the turn to t then passes it straight on.
 */
static void
abandon(struct shm_segment *s, uint64_t t)
{
	uint64_t	 zero, serving = atomic_load(&s->serving);
	int		 stored = 0;

	/* Notes below the line were passed by a stall repair: drop them. */
	for (int i = 0; i < SHM_ABANDONED; i++) {
		uint64_t	 old = atomic_load(&s->abandoned[i]);

		if (old != 0 && old < serving &&
		    atomic_compare_exchange_strong(&s->abandoned[i], &old, 0))
			atomic_fetch_sub(&s->n_abandoned, 1);
	}
	atomic_fetch_add(&s->n_abandoned, 1);
	for (int i = 0; i < SHM_ABANDONED && !stored; i++) {
		zero = 0;
		stored = atomic_load(&s->abandoned[i]) == 0 &&
		    atomic_compare_exchange_strong(&s->abandoned[i], &zero, t);
	}
	if (!stored)
		atomic_fetch_sub(&s->n_abandoned, 1);
	/*
	 * If its turn has come (or came while we recorded it), pass it on.
	 * If the table was full, the stall repair in shm_write_begin skips
	 * the ticket a second later, since no live process owns it.
	 */
	serving = atomic_load(&s->serving);
	if (serving == t) {
		if (stored)
			(void)take_abandoned(s, t);
		advance(s, t);
	} else if (serving > t && stored)
		(void)take_abandoned(s, t);
}

void
shm_proc_reaped(struct shm_segment *s, pid_t pid)
{
	int32_t	 used = atomic_load(&s->procs_used);

	for (int i = 0; i < used; i++) {
		if (atomic_load(&s->procs[i].pid) != (int32_t)pid)
			continue;
		uint64_t t = atomic_exchange(&s->procs[i].ticket, 0);

		if (t != 0)
			abandon(s, t);
		atomic_store(&s->procs[i].pid, 0);
	}
}

void
shm_proc_release(struct shm_segment *s, int slot)
{
	uint64_t	 t;

	assert(slot >= 0 && slot < SHM_MAX_PROCS);
	if ((t = atomic_exchange(&s->procs[slot].ticket, 0)) != 0)
		abandon(s, t);
	atomic_store(&s->procs[slot].watches, 0);
	atomic_store(&s->procs[slot].pid, 0);
}

/* Does any live process hold or wait with ticket t? */
static int
ticket_owned(struct shm_segment *s, uint64_t t)
{
	int32_t	 used = atomic_load(&s->procs_used);

	for (int i = 0; i < used; i++) {
		int32_t	 pid = atomic_load(&s->procs[i].pid);

		if (pid != 0 && atomic_load(&s->procs[i].ticket) == t &&
		    (kill(pid, 0) == 0 || errno == EPERM))
			return 1;
	}
	return 0;
}

/* Takes the next ticket and says who holds it, before any wait. */
static uint64_t
take_ticket(struct shm_segment *s, int slot)
{
	uint64_t		 t = atomic_fetch_add(&s->next_ticket, 1);
	struct shm_ticket_owner	*o = &s->owners[t % SHM_TICKET_RING];

	atomic_store(&s->procs[slot].ticket, t);
	atomic_store(&o->slot, slot);
	atomic_store(&o->ticket, t);
	return t;
}

/* Records how long an admitted writer waited, for STATUS= and the bench. */
static void
note_wait(struct shm_segment *s, uint64_t waited)
{
	uint64_t	 prev = atomic_load(&s->max_wait_us);

	metrics_write_wait(waited);
	while (waited > prev &&
	    !atomic_compare_exchange_weak(&s->max_wait_us, &prev, waited))
		;
}

/*
 * Leaves the line without writing. The ticket cannot simply be dropped
 * (the turn would stop at it for good), so it is given up exactly as a
 * dead process's is: cleared from the slot and noted as abandoned, so that
 * the release before it passes the turn straight on.
 */
static void
leave_line(struct shm_segment *s, int slot, uint64_t t)
{
	atomic_store(&s->procs[slot].ticket, 0);
	atomic_fetch_add(&s->turn_timeouts, 1);
	metrics_write_timeout();
	abandon(s, t);
}

/*
 * The stall repair. A ticket that no live process holds or waits with may
 * be passed over once it was taken at least a second ago: its owner had
 * that long to record it, so it died, gave up (when the table of notes was
 * full), or was skipped itself. s->aged marks which tickets are that old:
 * every ticket below its bound (low 32 bits) was taken before its time
 * (the low 32 bits of CLOCK_MONOTONIC in ms). A waiter that finds the mark
 * a second old uses it and sets a new one at the newest ticket, so every
 * ticket becomes passable a second or two after it was taken, whatever
 * the waiters' own timeouts (busy-timeout may be far below a second), and
 * at most one waiter a second scans the process slots.
 */
static uint64_t
aged_mark(uint64_t next, uint32_t now_ms)
{
	return (uint64_t)(uint32_t)next << 32 | now_ms;
}

/* The first ticket not known to be a second old; `serving` if none is. */
static uint64_t
aged_bound(struct shm_segment *s, uint64_t serving)
{
	uint64_t	 mark = atomic_load(&s->aged), next;
	uint32_t	 now = (uint32_t)(clock_mono_us() / 1000);
	int32_t		 ahead;

	if ((uint32_t)(now - (uint32_t)mark) <= STALL_CHECK_MS)
		return serving;
	/* Tickets in flight span far less than 2^31: unwrap the bound. */
	ahead = (int32_t)((uint32_t)(mark >> 32) - (uint32_t)serving);
	next = atomic_load(&s->next_ticket);
	/* The next ticket first, then the time: all below it are older. */
	(void)atomic_compare_exchange_strong(&s->aged, &mark,
	    aged_mark(next, (uint32_t)(clock_mono_us() / 1000)));
	return ahead > 0 ? serving + (uint64_t)ahead : serving;
}

/*
 * Passes the turn over every ticket from `from` on that is a second old
 * and owned by no live process, stopping at this writer's own ticket.
 */
static void
skip_unowned(struct shm_segment *s, uint64_t from, uint64_t mine)
{
	uint64_t	 t = from, bound = aged_bound(s, from);

	if (bound > mine)
		bound = mine;
	while (t < bound && !ticket_owned(s, t)) {
		advance(s, t);
		t = atomic_load(&s->serving);
	}
}

int
shm_write_begin(struct shm_segment *s, int slot, int timeout_ms)
{
	uint64_t	 t, start = clock_mono_us(), now, deadline;
	uint32_t	 word;

	assert(slot >= 0 && slot < SHM_MAX_PROCS);
	deadline = timeout_ms < 0 ? UINT64_MAX :
	    start + (uint64_t)timeout_ms * 1000;
	t = take_ticket(s, slot);
	for (;;) {
		word = atomic_load(&s->procs[slot].wake);
		uint64_t now_serving = atomic_load(&s->serving);

		if (now_serving == t)
			break;
		if (now_serving > t) {
			/* Skipped as if dead (a stall repair): queue again. */
			t = take_ticket(s, slot);
			continue;
		}
		skip_unowned(s, now_serving, t);
		if (atomic_load(&s->serving) != now_serving)
			continue;
		now = clock_mono_us();
		if (now >= deadline) {
			leave_line(s, slot, t);
			return -1;
		}
		futex_sleep(&s->procs[slot].wake, word,
		    deadline - now < WAIT_SLICE_MS * 1000 ?
		    deadline - now : WAIT_SLICE_MS * 1000);
	}
	note_wait(s, clock_mono_us() - start);
	return 0;
}

void
shm_write_end(struct shm_segment *s, int slot)
{
	uint64_t	 t = atomic_exchange(&s->procs[slot].ticket, 0);

	if (t != 0)
		advance(s, t);
}

uint64_t
shm_max_wait_us(const struct shm_segment *s)
{
	return atomic_load(&((struct shm_segment *)s)->max_wait_us);
}

uint64_t
shm_turn_timeouts(const struct shm_segment *s)
{
	return atomic_load(&((struct shm_segment *)s)->turn_timeouts);
}

/* --- open watch streams ---------------------------------------------------- */

/* Streams of live processes only: a reaped slot has pid 0. */
static int64_t
watches_total(struct shm_segment *s)
{
	int64_t	 n = 0;
	int32_t	 used = atomic_load(&s->procs_used);

	for (int i = 0; i < used; i++)
		if (atomic_load_explicit(&s->procs[i].pid,
		    memory_order_relaxed) != 0)
			n += atomic_load(&s->procs[i].watches);
	return n;
}

int
shm_watch_reserve(struct shm_segment *s, int slot, int max)
{
	assert(slot >= 0 && slot < SHM_MAX_PROCS);
	/*
	 * Count first, then look: two processes reserving the last place at
	 * once both see the other's and one of them backs off, so the sum
	 * never stays above max.
	 */
	atomic_fetch_add(&s->procs[slot].watches, 1);
	if (max > 0 && watches_total(s) > max) {
		atomic_fetch_sub(&s->procs[slot].watches, 1);
		return -1;
	}
	return 0;
}

void
shm_watch_release(struct shm_segment *s, int slot)
{
	assert(slot >= 0 && slot < SHM_MAX_PROCS);
	atomic_fetch_sub(&s->procs[slot].watches, 1);
}

int64_t
shm_watch_count(const struct shm_segment *s)
{
	return watches_total((struct shm_segment *)s);
}

/* --- storage faults ------------------------------------------------------- */

void
shm_note_fault(struct shm_segment *s, int code)
{
	atomic_store(&s->last_fault, code);
	atomic_store(&s->last_fault_us, clock_mono_us());
	metrics_fault(code);
	if (code == KV_ERR_DISK_FULL)
		atomic_fetch_add(&s->disk_full, 1);
	atomic_fetch_add(&s->faults, 1);
}

void
shm_fault_summary(const struct shm_segment *cs, char *buf, size_t len)
{
	struct shm_segment	*s = (struct shm_segment *)cs;
	uint64_t		 n = atomic_load(&s->faults);
	uint64_t		 full = atomic_load(&s->disk_full);
	uint64_t		 ago = clock_mono_us() -
	    atomic_load(&s->last_fault_us);

	if (len > 0)
		buf[0] = '\0';
	if (n == 0)
		return;
	snprintf(buf, len, "%llu database errors (%llu disk full), the last"
	    " %llu s ago: %s", (unsigned long long)n, (unsigned long long)full,
	    (unsigned long long)(ago / 1000000),
	    kv_err_message((enum kv_err)atomic_load(&s->last_fault)));
}

/* --- change notification ------------------------------------------------ */

uint32_t
shm_key_slot(const uint8_t *key, size_t len)
{
	uint64_t	 h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	return (uint32_t)(h % SHM_CHANGE_SLOTS);
}

/* Raises *word to v unless it is already there or beyond. */
static void
atomic_raise(_Atomic uint64_t *word, uint64_t v)
{
	uint64_t	 prev = atomic_load(word);

	while (v > prev && !atomic_compare_exchange_weak(word, &prev, v))
		;
}

void
shm_mark_changed(struct shm_segment *s, uint32_t slot, uint64_t version)
{
	uint64_t	 pos;

	slot %= SHM_CHANGE_SLOTS;
	/*
	 * Never lower a slot: a reader that saw version w and then read the
	 * database has every commit up to w, so only a higher value may
	 * signal something it has not read. Slot first, then its ring entry.
	 */
	atomic_raise(&s->change[slot], version);
	pos = atomic_fetch_add(&s->ring_head, 1);
	atomic_store(&s->ring[pos % SHM_CHANGE_RING].slot, slot);
	atomic_store(&s->ring[pos % SHM_CHANGE_RING].seq, pos + 1);
}

void
shm_record_local(struct shm_segment *s, uint64_t version)
{
	atomic_store(&s->local[version % SHM_LOCAL_VERSIONS], version);
}

uint64_t
shm_first_unrecorded(const struct shm_segment *cs, uint64_t from, uint64_t to)
{
	struct shm_segment	*s = (struct shm_segment *)cs;

	if (to <= from)
		return 0;
	if (to - from > SHM_LOCAL_VERSIONS)
		return from + 1;
	for (uint64_t v = from + 1; v <= to; v++)
		if (atomic_load(&s->local[v % SHM_LOCAL_VERSIONS]) != v)
			return v;
	return 0;
}

/* The entry at pos: 1 with its slot, 0 not written yet, -1 overwritten. */
static int
ring_read(struct shm_segment *s, uint64_t pos, uint32_t *slot)
{
	uint64_t	 seq = atomic_load(&s->ring[pos % SHM_CHANGE_RING].seq);

	if (seq < pos + 1)
		return 0;
	*slot = atomic_load(&s->ring[pos % SHM_CHANGE_RING].slot);
	/* Overwritten while we read it, or before: lapped. */
	if (seq != pos + 1 ||
	    atomic_load(&s->ring[pos % SHM_CHANGE_RING].seq) != pos + 1)
		return -1;
	return 1;
}

void
shm_cursor_init(const struct shm_segment *s, struct shm_cursor *c)
{
	c->next = atomic_load(&((struct shm_segment *)s)->ring_head);
	c->pending = 0;
}

int
shm_changes_next(const struct shm_segment *cs, struct shm_cursor *c,
    int periodic, uint32_t *slot)
{
	struct shm_segment	*s = (struct shm_segment *)cs;
	uint64_t		 head = atomic_load(&s->ring_head);
	int			 r;

	if (c->next >= head)
		return 0;
	if (head - c->next > SHM_CHANGE_RING ||
	    (r = ring_read(s, c->next, slot)) < 0) {
		c->next = head;
		return -1;
	}
	if (r == 0) {
		if (!periodic)
			return 0;
		if (c->pending != c->next + 1) {
			c->pending = c->next + 1;
			return 0;
		}
		/* Unwritten since the last periodic look: skip it. */
		c->pending = 0;
		c->next++;
		return -1;
	}
	c->next++;
	return 1;
}

/* After the segment's own word: a relay that sees the bell move finds it. */
static void
ring_bell(void)
{
	if (bell != NULL)
		wake_all(&bell->word);
}

void
shm_publish(struct shm_segment *s)
{
	wake_all(&s->commit_futex);
	ring_bell();
}

uint64_t
shm_slot_version(const struct shm_segment *s, uint32_t slot)
{
	return atomic_load(&((struct shm_segment *)s)->change[slot %
	    SHM_CHANGE_SLOTS]);
}

uint32_t
shm_commit_word(const struct shm_segment *s)
{
	return atomic_load(&((struct shm_segment *)s)->commit_futex);
}

uint32_t
shm_commit_wait(const struct shm_segment *cs, uint32_t seen, int timeout_ms)
{
	struct shm_segment	*s = (struct shm_segment *)cs;
	struct timespec		 ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long)(timeout_ms % 1000) * 1000000L,
	};

	/* Returns at once (EAGAIN) if the word already moved past seen. */
	(void)futex(&s->commit_futex, FUTEX_WAIT, seen, &ts);
	return atomic_load(&s->commit_futex);
}

/* --- queue wake-ups --------------------------------------------------------- */

void
shm_queue_signal(struct shm_segment *s)
{
	wake_all(&s->queue_futex);
	ring_bell();
}

uint32_t
shm_queue_word(const struct shm_segment *s)
{
	return atomic_load(&((struct shm_segment *)s)->queue_futex);
}

uint32_t
shm_queue_wait(const struct shm_segment *cs, uint32_t seen, int timeout_ms)
{
	struct shm_segment	*s = (struct shm_segment *)cs;
	struct timespec		 ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long)(timeout_ms % 1000) * 1000000L,
	};

	(void)futex(&s->queue_futex, FUTEX_WAIT, seen, &ts);
	return atomic_load(&s->queue_futex);
}

/* --- the doorbell ------------------------------------------------------------- */

int
shm_bell_init(void)
{
	struct shm_bell	*b;

	if (bell != NULL)
		return 0;
	b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return -1;
	b->magic = SHM_BELL_MAGIC;
	bell = b;
	return 0;
}

void
shm_bell_ring(void)
{
	ring_bell();
}

int
shm_bell_ready(void)
{
	return bell != NULL;
}

uint32_t
shm_bell_word(void)
{
	return bell != NULL ? atomic_load(&bell->word) : 0;
}

uint32_t
shm_bell_wait(uint32_t seen, int timeout_ms)
{
	struct timespec	 ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long)(timeout_ms % 1000) * 1000000L,
	};

	if (bell == NULL) {
		nanosleep(&ts, NULL);
		return 0;
	}
	(void)futex(&bell->word, FUTEX_WAIT, seen, &ts);
	return atomic_load(&bell->word);
}

/* --- storage hooks -------------------------------------------------------- */

static int
hook_write_begin(void *ctx, int timeout_ms)
{
	struct shm_client	*c = ctx;

	return shm_write_begin(c->seg, c->slot, timeout_ms);
}

static void
hook_write_end(void *ctx)
{
	struct shm_client	*c = ctx;

	shm_write_end(c->seg, c->slot);
}

static void
hook_fault(void *ctx, enum kv_err code)
{
	struct shm_client	*c = ctx;

	shm_note_fault(c->seg, (int)code);
}

static void
hook_changed(void *ctx, const uint8_t *key, size_t len, int64_t version)
{
	struct shm_client	*c = ctx;

	shm_mark_changed(c->seg, shm_key_slot(key, len), (uint64_t)version);
}

static void
hook_committed(void *ctx, int64_t version)
{
	struct shm_client	*c = ctx;

	shm_record_local(c->seg, (uint64_t)version);
}

static void
hook_published(void *ctx)
{
	struct shm_client	*c = ctx;

	shm_publish(c->seg);
}

static void
hook_queued(void *ctx)
{
	struct shm_client	*c = ctx;

	shm_queue_signal(c->seg);
}

int
shm_client_init(struct shm_client *c, struct shm_segment *seg,
    struct kv_hooks *h)
{
	memset(h, 0, sizeof(*h));
	c->seg = seg;
	if ((c->slot = shm_proc_claim(seg, getpid())) < 0)
		return -1;
	h->ctx = c;
	h->write_begin = hook_write_begin;
	h->write_end = hook_write_end;
	h->changed = hook_changed;
	h->committed = hook_committed;
	h->fault = hook_fault;
	h->published = hook_published;
	h->queued = hook_queued;
	return 0;
}
