/*
 * shm: the signal segment, shared memory mapped by the master before it
 * forks, so every worker and the housekeeper see the same pages. Like
 * SQLite's wal-index it is transient: it carries no data that must
 * survive; the database is the truth and the segment only says "look
 * again" or "your turn". It holds integers only (no pointers), and no lock
 * that a dead process could leave held.
 *
 * Two things live here:
 *
 * 1. Fair write admission. SQLite's busy handler lets the process that
 *    just committed take the write lock again while others sleep, so
 *    single writes waited over a second with four writers. Writers here
 *    take a ticket and are admitted strictly in ticket order (a ticket
 *    lock with a futex to sleep on). A process that dies holding or
 *    waiting for a ticket cannot wedge the queue: the master abandons its
 *    ticket when it reaps it, and a waiter passes over any ticket taken
 *    over a second ago that no live process owns. A live holder
 *    that is stuck (an I/O stall, a lock held by another program) cannot
 *    hold the others for ever either: a waiter gives up after its timeout
 *    and leaves the line the way a dead process does, by abandoning its
 *    ticket, so the writers behind it keep their order.
 *
 * 2. Change notification for watchers (docs/signal-segment.md): after a
 *    commit, still holding its turn, a writer raises change slot
 *    hash(key) % SHM_CHANGE_SLOTS of each key written to the new data
 *    version, puts the slot number into the change ring, and records the
 *    version as one of this server's; then, after its turn, it bumps the
 *    commit futex word and wakes the sleepers. A watcher compares the
 *    slots of its keys with what it last saw and only then reads the
 *    database. Colliding slots cost a needless read, never a missed change.
 *    The ring lets a watcher holding thousands of streams look only at the
 *    slots that changed; one that fell a whole ring behind compares all
 *    its slots instead. The record of local versions lets a watcher tell
 *    commits of writers outside this server (which never signal here)
 *    exactly, however many local commits follow them.
 */
#ifndef DENOKV_SHM_H
#define DENOKV_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC		0x444b5653u	/* "DKVS" */
#define SHM_VERSION		4
#define SHM_MAX_PROCS		2048	/* process slots: writers, hubs */
/*
 * Slots one child may hold: a worker takes one for its request loop and
 * one for its hub, whose queue leases write in turns of their own.
 */
#define SHM_SLOTS_PER_CHILD	2
/*
 * Tickets given up (dead processes, writers that stopped waiting) whose
 * turn has not come yet. One per child process (SHM_MAX_PROCS /
 * SHM_SLOTS_PER_CHILD) covers a stuck holder while every other child gives
 * up once; past that, the stall repair skips them (all at once, a second
 * or two after they were taken).
 */
#define SHM_ABANDONED		1024
#define SHM_CHANGE_SLOTS	65536
#define SHM_CHANGE_RING		16384	/* recent changed slots, newest last */
#define SHM_LOCAL_VERSIONS	65536	/* recent data versions committed here */

struct shm_segment;

/* Creates and initialises an anonymous shared mapping (master, pre-fork). */
struct shm_segment	*shm_create(void);
void			 shm_destroy(struct shm_segment *);

/*
 * Each process that writes claims a process slot once (after fork) and
 * releases it on exit; the master releases the slot of a process it reaped.
 * shm_proc_claim returns the slot index or -1 if all are taken.
 */
int	shm_proc_claim(struct shm_segment *, pid_t);
void	shm_proc_reaped(struct shm_segment *, pid_t);
/*
 * Gives back one slot of the calling process that it no longer uses (a
 * watch hub that stopped), so that starting and stopping one again and
 * again does not use up the segment's slots.
 */
void	shm_proc_release(struct shm_segment *, int slot);

/*
 * Waits until it is this slot's turn to write, at most timeout_ms
 * milliseconds (negative: no limit). Returns 0 when admitted (then call
 * shm_write_end), -1 when the time ran out: the ticket is then given up
 * and nothing is to be ended.
 */
int	shm_write_begin(struct shm_segment *, int slot, int timeout_ms);
void	shm_write_end(struct shm_segment *, int slot);

/*
 * Open watch streams of one database (its segment), counted per process
 * slot so that a dead process's streams stop counting when it is reaped.
 * shm_watch_reserve counts one more for the slot unless that would make
 * the total exceed max (max <= 0: no limit); 0 if counted, -1 if not.
 */
int	 shm_watch_reserve(struct shm_segment *, int slot, int max);
void	 shm_watch_release(struct shm_segment *, int slot);
int64_t	 shm_watch_count(const struct shm_segment *);

/* The longest any writer waited for its turn, in microseconds (bench). */
uint64_t shm_max_wait_us(const struct shm_segment *);
/* How many writers gave up waiting for their turn. */
uint64_t shm_turn_timeouts(const struct shm_segment *);

/*
 * Storage faults (a full disk, a damaged file, I/O errors) seen by any
 * process, so that the master can report them in STATUS=. code is an enum
 * kv_err. shm_fault_summary writes "" when there were none.
 */
void	shm_note_fault(struct shm_segment *, int code);
void	shm_fault_summary(const struct shm_segment *, char *buf, size_t len);

/* --- change notification ---------------------------------------------- */

uint32_t shm_key_slot(const uint8_t *key, size_t len);
/*
 * After a commit, still holding the write turn: mark each key's slot with
 * version (slots only ever grow), then record the version as this
 * server's; after the turn, shm_publish wakes the watchers.
 */
void	 shm_mark_changed(struct shm_segment *, uint32_t slot, uint64_t version);
void	 shm_record_local(struct shm_segment *, uint64_t version);
void	 shm_publish(struct shm_segment *);
uint64_t shm_slot_version(const struct shm_segment *, uint32_t slot);
/*
 * A reader's position in the change ring, which lists the slots marked
 * since the reader last looked. shm_changes_next() returns 1 with the next
 * changed slot, 0 when the reader is up to date (an entry being written
 * comes with its own wake-up), or -1 when entries were skipped: the ring
 * lapped the reader, or (periodic set, as once a second) an entry stayed
 * reserved but unwritten since the previous periodic call, so its writer
 * died. After -1 the reader must compare all its slots (a slot is raised
 * before its ring entry is reserved, so that loses nothing) and call again
 * for the entries after the skip.
 */
struct shm_cursor {
	uint64_t	 next;		/* next ring position to read */
	uint64_t	 pending;	/* unwritten position + 1, or 0 */
};

void	 shm_cursor_init(const struct shm_segment *, struct shm_cursor *);
int	 shm_changes_next(const struct shm_segment *, struct shm_cursor *,
	    int periodic, uint32_t *slot);

/*
 * The first data version in (from, to] that no process of this segment
 * recorded with shm_record_local, or 0 if every one was. A range too long
 * to tell (more than SHM_LOCAL_VERSIONS) answers from + 1.
 */
uint64_t shm_first_unrecorded(const struct shm_segment *, uint64_t from,
	    uint64_t to);

/* The commit futex word: read it, check slots, then wait on that value. */
uint32_t shm_commit_word(const struct shm_segment *);
/*
 * Sleeps while the commit word still equals seen, at most timeout_ms, and
 * returns the word as it is then. Pass the returned value to the next
 * call, so a commit between two calls is not slept through.
 */
uint32_t shm_commit_wait(const struct shm_segment *, uint32_t seen,
	    int timeout_ms);

/*
 * --- queue delivery ------------------------------------------------------
 * The queue word is bumped, and its sleepers woken, after every commit that
 * put messages into the queue table (an enqueue, a retry). Hubs holding
 * queue long polls sleep on it like on the commit word.
 */
void	 shm_queue_signal(struct shm_segment *);
uint32_t shm_queue_word(const struct shm_segment *);
uint32_t shm_queue_wait(const struct shm_segment *, uint32_t seen,
	    int timeout_ms);

/*
 * --- the doorbell ----------------------------------------------------------
 * With many databases, each has its own segment, and a worker holding
 * watch streams or long polls for several of them would need a sleeper on
 * each one's words. Instead every shm_publish and shm_queue_signal, of any
 * segment, also rings one host-wide doorbell word, after bumping the
 * segment's own word: one thread per worker sleeps on the bell and then
 * compares the commit and queue words of only the databases it holds
 * streams for (watch.c), so a watch on one database is never woken for a
 * write to another. shm_bell_init maps it (the master, before fork; once);
 * a process without it rings nothing.
 */
int	 shm_bell_init(void);
int	 shm_bell_ready(void);
void	 shm_bell_ring(void);
uint32_t shm_bell_word(void);
/* As shm_commit_wait, on the bell (without one: sleeps timeout_ms). */
uint32_t shm_bell_wait(uint32_t seen, int timeout_ms);

/* --- glue for the storage engine's hooks (kv.h) --------------------------- */

struct kv_hooks;

/* One process's handle: the segment and its claimed process slot. */
struct shm_client {
	struct shm_segment	*seg;
	int			 slot;
};

/*
 * Claims a process slot for the calling process and fills hooks that
 * route the storage engine's writes through fair admission and its
 * commits to the change slots. Returns -1 if no slot is free.
 */
int	shm_client_init(struct shm_client *, struct shm_segment *,
	    struct kv_hooks *);

#endif
