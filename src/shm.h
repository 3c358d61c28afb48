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
 *    ticket when it reaps it, and a waiter that sees the line stalled for
 *    a second skips a ticket that no live process owns. A live holder
 *    that is stuck (an I/O stall, a lock held by another program) cannot
 *    hold the others for ever either: a waiter gives up after its timeout
 *    and leaves the line the way a dead process does, by abandoning its
 *    ticket, so the writers behind it keep their order.
 *
 * 2. Change notification for watchers: after a commit, for each key
 *    written, change slot hash(key) % SHM_CHANGE_SLOTS is set to the new
 *    data version; then the commit sequence is bumped and sleepers on its
 *    futex are woken. A watcher compares the slots of its keys with what
 *    it last saw and only then reads the database. Colliding slots cost a
 *    needless read, never a missed change. The changed slot numbers also
 *    go into a ring, so that a watcher holding thousands of streams looks
 *    only at the slots that changed; one that fell a whole ring behind
 *    compares all its slots instead.
 */
#ifndef DENOKV_SHM_H
#define DENOKV_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC		0x444b5653u	/* "DKVS" */
#define SHM_VERSION		1
#define SHM_MAX_PROCS		1024	/* processes that may write at once */
/*
 * Tickets given up (dead processes, writers that stopped waiting) whose
 * turn has not come yet. One per process covers a stuck holder while every
 * other process gives up once; past that, the stall repair skips them.
 */
#define SHM_ABANDONED		SHM_MAX_PROCS
#define SHM_CHANGE_SLOTS	65536
#define SHM_CHANGE_RING		16384	/* recent changed slots, newest last */

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
 * Waits until it is this slot's turn to write, at most timeout_ms
 * milliseconds (negative: no limit). Returns 0 when admitted (then call
 * shm_write_end), -1 when the time ran out: the ticket is then given up
 * and nothing is to be ended.
 */
int	shm_write_begin(struct shm_segment *, int slot, int timeout_ms);
void	shm_write_end(struct shm_segment *, int slot);

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
/* After a commit: mark each key's slot with version, then wake watchers. */
void	 shm_mark_changed(struct shm_segment *, uint32_t slot, uint64_t version);
void	 shm_publish(struct shm_segment *);
uint64_t shm_slot_version(const struct shm_segment *, uint32_t slot);
/*
 * The change ring. shm_ring_head() is the position after the newest entry.
 * shm_ring_read() gives the slot at pos: 1, or 0 if that entry is not
 * written yet (read it again after the next wake-up), or -1 if it has been
 * overwritten (the reader fell behind and must compare all its slots).
 */
uint64_t shm_ring_head(const struct shm_segment *);
int	 shm_ring_read(const struct shm_segment *, uint64_t pos, uint32_t *slot);

/* The highest data version any process of this segment has published. */
uint64_t shm_published_version(const struct shm_segment *);

/* The commit futex word: read it, check slots, then wait on that value. */
uint32_t shm_commit_word(const struct shm_segment *);
/* The address to wait on (for a hub's own futex/timeout loop). */
const uint32_t *shm_commit_futex(const struct shm_segment *);

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
