/*
 * test_shm.c: unit tests of the signal segment (src/shm.c) across real
 * processes made with fork(), printing TAP. Focus: write tickets admitted
 * strictly in arrival order; a holder and a waiter killed with SIGKILL
 * and reaped without wedging the line; the change ring and slots telling
 * a reader about every changed key, also past a lapped ring and when keys
 * share a slot, and past a writer that died in the middle of a ring entry;
 * the record of local data versions finding every commit
 * that did not come through this segment, however many local commits
 * follow it, and costing nothing for writes that set no key; the process
 * slot limit. Waits are deadlines of seconds, never expectations of speed.
 */
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "kv.h"
#include "shm.h"
#include "testhelp.h"

#define DEADLINE_MS	10000	/* a stuck line, not a slow machine */
#define N_WRITERS	8

/* Bookkeeping the test's processes share (not part of the segment). */
struct board {
	_Atomic int	 order[N_WRITERS];
	_Atomic int	 n;
	_Atomic int	 holding;
	_Atomic int	 done;
};

static struct board *
board_new(void)
{
	struct board	*b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return b == MAP_FAILED ? NULL : b;
}

static void
sleep_ms(int ms)
{
	struct timespec	 ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Waits until pid sleeps in futex(2), which a writer does only after it
 * has taken its ticket: so its place in the line is fixed.
 */
static int
wait_in_futex(pid_t pid)
{
	char	 path[64], buf[64];
	int64_t	 end = clock_mono_ms() + DEADLINE_MS;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	while (clock_mono_ms() < end) {
		FILE	*f = fopen(path, "r");
		long	 nr = -1;

		if (f != NULL) {
			if (fgets(buf, sizeof(buf), f) != NULL)
				nr = strtol(buf, NULL, 10);
			fclose(f);
		}
		if (nr == SYS_futex)
			return 0;
		sleep_ms(1);
	}
	return -1;
}

/* waitpid with a deadline; the exit status, or -1 if it did not exit. */
static int
wait_exit(pid_t pid, int ms)
{
	int64_t	 end = clock_mono_ms() + ms;
	int	 st;

	while (clock_mono_ms() < end) {
		pid_t	 r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		if (r < 0)
			return -1;
		sleep_ms(2);
	}
	return -1;
}

/* A child that waits for its turn, notes its number, and leaves. */
static void
writer_child(struct shm_segment *seg, struct board *b, int id)
{
	int	 slot = shm_proc_claim(seg, getpid());

	if (slot < 0)
		_exit(3);
	shm_write_begin(seg, slot, -1);
	b->order[atomic_fetch_add(&b->n, 1)] = id;
	atomic_fetch_add(&b->done, 1);
	shm_write_end(seg, slot);
	_exit(0);
}

static void
test_ticket_order(void)
{
	struct shm_segment	*seg = shm_create();
	struct board		*b = board_new();
	pid_t			 pids[N_WRITERS];
	int			 me, queued = 0, in_order = 1, exited = 0;

	T_OK(seg != NULL && b != NULL, "segment and board mapped");
	if (seg == NULL || b == NULL)
		return;
	me = shm_proc_claim(seg, getpid());
	shm_write_begin(seg, me, -1);	/* hold the turn while the line forms */
	for (int i = 0; i < N_WRITERS; i++) {
		if ((pids[i] = fork()) == 0)
			writer_child(seg, b, i);
		if (pids[i] > 0 && wait_in_futex(pids[i]) == 0)
			queued++;
	}
	T_EQ(queued, N_WRITERS, "%d writers in other processes queue behind the"
	    " holder, one after the other", N_WRITERS);
	T_EQ(atomic_load(&b->n), 0, "none writes while the turn is held");
	shm_write_end(seg, me);
	for (int i = 0; i < N_WRITERS; i++)
		if (pids[i] > 0 && wait_exit(pids[i], DEADLINE_MS) == 0)
			exited++;
	T_EQ(exited, N_WRITERS, "every writer got its turn and exited");
	for (int i = 0; i < N_WRITERS; i++)
		if (atomic_load(&b->order[i]) != i)
			in_order = 0;
	T_OK(in_order && atomic_load(&b->n) == N_WRITERS,
	    "turns were given strictly in ticket order");
	shm_proc_reaped(seg, getpid());
	shm_destroy(seg);
	munmap(b, sizeof(*b));
}

static void
test_dead_holder_and_waiter(void)
{
	struct shm_segment	*seg = shm_create();
	struct board		*b = board_new();
	pid_t			 holder, waiter, last;
	int64_t			 t0, took;
	int			 me, st;

	if (seg == NULL || b == NULL) {
		T_OK(0, "segment and board mapped");
		return;
	}
	if ((holder = fork()) == 0) {
		int	 slot = shm_proc_claim(seg, getpid());

		shm_write_begin(seg, slot, -1);
		atomic_store(&b->holding, 1);
		for (;;)
			pause();
	}
	for (int64_t end = clock_mono_ms() + DEADLINE_MS;
	    !atomic_load(&b->holding) && clock_mono_ms() < end;)
		sleep_ms(1);
	T_OK(atomic_load(&b->holding), "a child holds the write turn");
	if ((waiter = fork()) == 0)
		writer_child(seg, b, 1);
	T_OK(wait_in_futex(waiter) == 0, "a second child waits behind it");
	if ((last = fork()) == 0)
		writer_child(seg, b, 2);
	T_OK(wait_in_futex(last) == 0, "a third child waits behind both");
	kill(holder, SIGKILL);
	kill(waiter, SIGKILL);
	waitpid(holder, &st, 0);
	waitpid(waiter, &st, 0);
	t0 = clock_mono_ms();
	shm_proc_reaped(seg, holder);
	shm_proc_reaped(seg, waiter);
	T_EQ(wait_exit(last, DEADLINE_MS), 0, "after the holder and the first"
	    " waiter are killed and reaped, the third writes and exits");
	took = clock_mono_ms() - t0;
	printf("# the third writer went on %lld ms after the reaping\n",
	    (long long)took);
	T_OK(took < 5000, "it went on within seconds, not at a timeout");
	T_EQ(atomic_load(&b->done), 1, "only the survivor wrote");
	me = shm_proc_claim(seg, getpid());
	t0 = clock_mono_ms();
	shm_write_begin(seg, me, -1);
	shm_write_end(seg, me);
	T_OK(clock_mono_ms() - t0 < 5000,
	    "and the line is free for the next writer");
	shm_proc_reaped(seg, getpid());
	shm_destroy(seg);
	munmap(b, sizeof(*b));
}

/* --- change notification ------------------------------------------------ */

static uint32_t
slot_of(const char *key)
{
	return shm_key_slot((const uint8_t *)key, strlen(key));
}

/*
 * What a hub does: walk the ring from its cursor, and when entries were
 * skipped compare every watched slot with the value seen before. Sets
 * learned[i] for each watched key whose change it would read again.
 */
static int
reader_learn(struct shm_segment *seg, struct shm_cursor *c, int periodic,
    const uint32_t *slots, const uint64_t *seen, int n, char *learned)
{
	uint32_t	 slot;
	int		 r, skipped = 0;

	while ((r = shm_changes_next(seg, c, periodic, &slot)) != 0) {
		if (r < 0) {
			skipped = 1;
			continue;
		}
		for (int i = 0; i < n; i++)
			if (slots[i] == slot)
				learned[i] = 1;
	}
	if (skipped)
		for (int i = 0; i < n; i++)
			if (shm_slot_version(seg, slots[i]) != seen[i])
				learned[i] = 1;
	return skipped;
}

/* Marks keys "key-<first>" .. in a child process, one commit each. */
static void
mark_in_child(struct shm_segment *seg, int first, int n, uint64_t version0)
{
	pid_t	 pid;
	char	 key[32];
	int	 st;

	if ((pid = fork()) == 0) {
		for (int i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "key-%d", first + i);
			shm_mark_changed(seg, slot_of(key), version0 + i);
			shm_record_local(seg, version0 + i);
		}
		shm_publish(seg);
		_exit(0);
	}
	waitpid(pid, &st, 0);
}

static void
test_ring(void)
{
	enum { M = SHM_CHANGE_RING + 1000 };
	struct shm_segment	*seg = shm_create();
	struct shm_cursor	 c;
	uint32_t		*slots = calloc(M, sizeof(*slots));
	uint64_t		*seen = calloc(M, sizeof(*seen));
	char			*learned = calloc(M, 1), key[32];
	int			 all = 1, skipped;
	uint32_t		 word;

	if (seg == NULL || slots == NULL || seen == NULL || learned == NULL) {
		T_OK(0, "allocations");
		return;
	}
	for (int i = 0; i < M; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		slots[i] = slot_of(key);
		seen[i] = shm_slot_version(seg, slots[i]);
	}
	/* A few changes: named by the ring, nothing skipped. */
	shm_cursor_init(seg, &c);
	word = shm_commit_word(seg);
	mark_in_child(seg, 0, 10, 1);
	T_OK(shm_commit_word(seg) != word, "publishing moves the commit word");
	T_OK(shm_commit_wait(seg, word, DEADLINE_MS) != word,
	    "a wait on the word last compared returns at once after a commit");
	skipped = reader_learn(seg, &c, 0, slots, seen, M, learned);
	T_OK(!skipped, "ten marks are read from the ring without skipping");
	for (int i = 0; i < M; i++)
		if (learned[i] != (i < 10))
			all = 0;
	T_OK(all, "exactly the ten changed keys are reported");
	for (int i = 0; i < M; i++)
		seen[i] = shm_slot_version(seg, slots[i]);
	memset(learned, 0, M);

	/* More marks than the ring holds, past a reader that was parked. */
	mark_in_child(seg, 0, M, 100);
	skipped = reader_learn(seg, &c, 0, slots, seen, M, learned);
	T_OK(skipped, "a reader %d marks behind is told it was lapped", M);
	all = 1;
	for (int i = 0; i < M; i++)
		all &= learned[i];
	T_OK(all, "and still learns of every one of the %d changed keys", M);
	T_EQ(shm_changes_next(seg, &c, 0, &word), 0,
	    "after which it is up to date");
	shm_destroy(seg);
	free(slots);
	free(seen);
	free(learned);
}

/*
 * A writer that dies between reserving a ring entry and writing it leaves
 * a hole a reader woken by commits alone would wait at for ever. To die at
 * exactly that point, the writer's own mapping of the entry's page is made
 * read-only: its slot store and reservation succeed, the entry store
 * faults. The entry is found by its layout ({ u64 pos + 1, u32 slot }).
 */
static void
die_writing_entry(int sig)
{
	(void)sig;
	_exit(99);
}

static uint8_t *
find_ring_entry0(struct shm_segment *seg, uint32_t marker)
{
	uint8_t		*base = (uint8_t *)seg;
	uint64_t	 size, one = 1;

	memcpy(&size, base + 8, sizeof(size));	/* header: magic, version, size */
	for (uint64_t off = 0; off + 12 <= size; off += 8) {
		uint32_t	 slot;

		memcpy(&slot, base + off + 8, sizeof(slot));
		if (memcmp(base + off, &one, 8) == 0 && slot == marker)
			return base + off;
	}
	return NULL;
}

static void
test_writer_dies_mid_entry(void)
{
	enum { POS = 8000, MARKER = 54321 };
	struct shm_segment	*seg = shm_create();
	struct shm_cursor	 c;
	uint8_t			*entry0;
	uint32_t		 slot, victim = slot_of("victim");
	long			 page = sysconf(_SC_PAGESIZE);
	pid_t			 pid;
	int			 st, r, first, second;

	if (seg == NULL) {
		T_OK(0, "segment mapped");
		return;
	}
	shm_mark_changed(seg, MARKER, 1);	/* ring entry 0 */
	entry0 = find_ring_entry0(seg, MARKER);
	T_OK(entry0 != NULL, "the change ring's first entry is found");
	if (entry0 == NULL)
		return;
	for (int i = 1; i < POS; i++)
		shm_mark_changed(seg, MARKER, 1);
	shm_cursor_init(seg, &c);	/* a reader at entry POS */
	if ((pid = fork()) == 0) {
		uintptr_t	 e = (uintptr_t)(entry0 + (size_t)POS * 16);

		signal(SIGSEGV, die_writing_entry);
		signal(SIGBUS, die_writing_entry);
		if (mprotect((void *)(e - e % (uintptr_t)page), (size_t)page,
		    PROT_READ) != 0)
			_exit(3);
		shm_mark_changed(seg, victim, 5);
		_exit(0);	/* not reached */
	}
	waitpid(pid, &st, 0);
	T_OK((WIFEXITED(st) && WEXITSTATUS(st) == 99) ||
	    (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV),
	    "a writer died between reserving its ring entry and writing it");
	T_EQ(shm_slot_version(seg, victim), 5, "its slot was raised first");
	shm_mark_changed(seg, MARKER, 6);	/* a later commit, entry POS + 1 */
	r = shm_changes_next(seg, &c, 0, &slot);
	T_EQ(r, 0, "woken by commits, the reader waits at the hole for its"
	    " writer");
	first = shm_changes_next(seg, &c, 1, &slot);
	second = shm_changes_next(seg, &c, 1, &slot);
	T_OK(first == 0 && second == -1, "the periodic look notes the hole,"
	    " and skips it the next time (compare all slots)");
	T_OK(shm_changes_next(seg, &c, 0, &slot) == 1 && slot == MARKER,
	    "then the entries after the hole are read again");
	T_EQ(shm_changes_next(seg, &c, 0, &slot), 0, "up to date");
	shm_destroy(seg);
}

static void
test_shared_slot(void)
{
	struct shm_segment	*seg = shm_create();
	struct shm_cursor	 c;
	char			 a[32], b[32], learned[2] = { 0, 0 };
	uint32_t		 slots[2];
	uint64_t		 seen[2];
	int			 found = 0;

	/* Two different keys that hash to one slot. */
	for (int i = 0; i < 1000000 && !found; i++) {
		snprintf(a, sizeof(a), "a-%d", i);
		for (int j = 0; j < 64 && !found; j++) {
			snprintf(b, sizeof(b), "b-%d", j);
			found = slot_of(a) == slot_of(b);
		}
	}
	T_OK(found && seg != NULL, "two keys sharing a change slot");
	if (!found || seg == NULL)
		return;
	slots[0] = slots[1] = slot_of(a);
	seen[0] = seen[1] = shm_slot_version(seg, slots[0]);
	shm_cursor_init(seg, &c);
	shm_mark_changed(seg, slots[0], 7);	/* one commit wrote both */
	shm_mark_changed(seg, slots[1], 7);
	shm_record_local(seg, 7);
	reader_learn(seg, &c, 0, slots, seen, 2, learned);
	T_OK(learned[0] && learned[1], "a commit of both keys reports both");
	/* A slot never goes back: two processes may mark out of order. */
	shm_mark_changed(seg, slots[0], 9);
	shm_mark_changed(seg, slots[0], 8);
	T_EQ(shm_slot_version(seg, slots[0]), 9,
	    "marking version 8 after 9 leaves the slot at 9");
	shm_destroy(seg);
}

static void
test_proc_limit(void)
{
	struct shm_segment	*seg = shm_create();
	struct shm_client	 cl;
	struct kv_hooks		 hooks;
	int			 all = 1;

	if (seg == NULL) {
		T_OK(0, "segment mapped");
		return;
	}
	/* Numbers no live process has: the limit is about slots, not pids. */
	for (int i = 0; i < SHM_MAX_PROCS; i++)
		if (shm_proc_claim(seg, 4000000 + i) != i)
			all = 0;
	T_OK(all, "%d processes each claim a slot", SHM_MAX_PROCS);
	T_EQ(shm_proc_claim(seg, 4100000), -1, "one more is refused with -1");
	T_EQ(shm_client_init(&cl, seg, &hooks), -1,
	    "and a storage client cannot start without a slot");
	shm_proc_reaped(seg, 4000000 + 5);
	T_EQ(shm_proc_claim(seg, getpid()), 5,
	    "once one is reaped its slot is claimed again");
	shm_destroy(seg);
}

/*
 * The master looks at every segment when it reaps a child: with many
 * databases that look must not touch the whole process table of each
 * (its pages would then stay resident, about 48 kB per database). The
 * first 256 kB of the mapping hold the header and the process table.
 */
static void
test_reap_touches_used_slots(void)
{
	struct shm_segment	*seg = shm_create();
	const size_t		 span = 256 * 1024;
	long			 page = sysconf(_SC_PAGESIZE);
	unsigned char		 vec[256 * 1024 / 4096];
	int			 resident = 0;

	if (seg == NULL || page != 4096) {
		T_OK(0, "segment mapped, 4 kB pages");
		return;
	}
	T_EQ(shm_proc_claim(seg, getpid()), 0, "a process claims slot 0");
	shm_proc_reaped(seg, 4000001);
	T_EQ(shm_watch_count(seg), 0, "no watches counted");
	if (mincore(seg, span, vec) != 0)
		T_BAIL("mincore: %s", strerror(errno));
	for (size_t i = 0; i < span / 4096; i++)
		resident += vec[i] & 1;
	T_OK(resident <= 4, "a reap and a count touch %d pages of the"
	    " process table's span (at most 4)", resident);
	shm_destroy(seg);
}

/* --- the record of local data versions, with the real storage engine ---- */

static char	 tmpdir[] = "/tmp/test_shm.XXXXXX";

static struct kv_db *
open_db(const char *path, const struct kv_hooks *hooks)
{
	struct kv_options	 opt = { .sync = KV_SYNC_NORMAL,
	    .busy_timeout_ms = 5000, .hooks = hooks };
	char			 err[256];
	struct kv_db		*db = kv_open(path, &opt, err, sizeof(err));

	if (db == NULL)
		printf("# kv_open %s: %s\n", path, err);
	return db;
}

static uint64_t
version_of(struct kv_db *db)
{
	int64_t	 v = -1;

	if (kv_current_version(db, &v) != KV_OK)
		return 0;
	return (uint64_t)v;
}

/* One atomic write: set key (if any), plus a check or an enqueue. */
static int
write_one(struct kv_db *db, const char *key, int check, int enqueue)
{
	struct arena		 a;
	struct kv_mutation	 m = { .type = KV_MUT_SET, .encoding =
	    KV_ENC_BYTES, .value = { (const uint8_t *)"v", 1 } };
	struct kv_check		 ck = { .key = { (const uint8_t *)"absent",
	    6 }, .must_be_absent = 1 };
	struct kv_enqueue	 q = { .payload = { (const uint8_t *)"p", 1 },
	    .deadline_ms = kv_now_ms() };
	struct kv_write		 w = { 0 };
	struct kv_write_result	 res;
	enum kv_err		 err;

	if (key != NULL) {
		m.key = (struct kv_bytes){ (const uint8_t *)key, strlen(key) };
		w.mutations = &m;
		w.n_mutations = 1;
	}
	if (check) {
		w.checks = &ck;
		w.n_checks = 1;
	}
	if (enqueue) {
		w.enqueues = &q;
		w.n_enqueues = 1;
	}
	arena_init(&a, 4096);
	err = kv_atomic_write(db, &w, kv_now_ms(), &a, &res);
	arena_fini(&a);
	return err == KV_OK && res.committed ? 0 : -1;
}

static void
test_foreign_versions(void)
{
	struct shm_segment	*seg = shm_create();
	struct shm_client	 cl;
	struct kv_hooks		 hooks;
	struct kv_db		*ours = NULL, *theirs = NULL;
	char			 path[PATH_MAX];
	uint64_t		 v0, vf, v;
	int			 ok = 1;

	snprintf(path, sizeof(path), "%s/kv.sqlite", tmpdir);
	if (seg == NULL || shm_client_init(&cl, seg, &hooks) != 0 ||
	    (ours = open_db(path, &hooks)) == NULL ||
	    (theirs = open_db(path, NULL)) == NULL) {
		T_OK(0, "two handles on one file, one through the segment");
		goto end;
	}
	v0 = version_of(ours);
	ok &= write_one(ours, "k1", 0, 0) == 0;
	ok &= write_one(ours, "k2", 0, 0) == 0;
	v = version_of(ours);
	T_OK(ok && v == v0 + 2, "two local commits");
	T_EQ(shm_first_unrecorded(seg, v0, v), 0,
	    "local commits are all recorded: nothing to re-read");
	v0 = v;
	ok &= write_one(ours, NULL, 1, 0) == 0;	/* only a check */
	ok &= write_one(ours, NULL, 0, 1) == 0;	/* only an enqueue */
	v = version_of(ours);
	T_OK(ok && v == v0 + 2, "a check-only and an enqueue-only commit");
	T_EQ(shm_first_unrecorded(seg, v0, v), 0,
	    "writes that set no key are recorded too: nothing to re-read");
	/*
	 * A commit that did not go through the segment: another server on
	 * the file, or one of ours killed between COMMIT and recording.
	 */
	v0 = v;
	ok &= write_one(theirs, "k1", 0, 0) == 0;
	vf = version_of(theirs);
	for (int i = 0; i < 5; i++)
		ok &= write_one(ours, "k3", 0, 0) == 0;
	v = version_of(ours);
	T_OK(ok && vf == v0 + 1 && v == vf + 5,
	    "a foreign commit, then five local ones");
	T_EQ(shm_first_unrecorded(seg, v0, v), vf,
	    "the foreign commit is found although local commits follow it");
	T_EQ(shm_first_unrecorded(seg, vf, v), 0,
	    "and nothing after it is taken for foreign");
	T_EQ(shm_first_unrecorded(seg, 0, SHM_LOCAL_VERSIONS + 10), 1,
	    "a range too long to account for counts as foreign");
end:
	kv_close(ours);
	kv_close(theirs);
	shm_destroy(seg);
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_make_dir(tmpdir);
	test_ticket_order();
	test_dead_holder_and_waiter();
	test_ring();
	test_shared_slot();
	test_writer_dies_mid_entry();
	test_proc_limit();
	test_reap_touches_used_slots();
	test_foreign_versions();
	t_remove_dir(tmpdir);
	return t_done();
}
