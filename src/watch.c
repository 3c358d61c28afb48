/*
 * watch.c: the watch hub (see watch.h for the design).
 *
 * Threads: a hub serves one database (dbreg.c starts one per database
 * with streams in this worker). Its hub thread owns every stream, its own
 * SQLite connections and an epoll set (streams' sockets, a hand-off
 * eventfd, a commit and a queue eventfd). The worker's doorbell relay
 * (struct watch_bell, one thread for all its hubs) sleeps on the host-wide
 * doorbell (shm.h) and, when it rings, compares the commit and queue words
 * of each hub's database with what it last saw, writing to that hub's
 * eventfd only if they moved: a hub is never woken for another database's
 * writes. The accept thread touches nothing but the hand-off queue (under
 * a mutex) and the hand-off eventfd.
 *
 * Output: frames are wrapped in FastCGI STDOUT records and written with
 * non-blocking write(2); what does not fit waits in the stream's buffer
 * for EPOLLOUT. A backlog past KV_MAX_WATCH_BACKLOG_BYTES drops the stream,
 * and the buffers of all streams together stay within the worker's
 * budget: past it the streams furthest behind are dropped (their clients
 * reconnect and read again).
 *
 * Delivery (docs/signal-segment.md): commit wake-ups walk the change ring;
 * a periodic check accounts for every data version, so commits that never
 * signalled here (other writers on the file, a writer that died before
 * signalling) are found and every stream is read again.
 *
 * Queue long polls (docs/queues.md) are a second kind of stream in the
 * same hub: parked in arrival order, answered once with a JSON body when
 * messages are leased for them or their wait is over. The relay turns
 * queue-word moves into events; the hub leases with its
 * own read-write connection, and sleeps until the next moment the queue
 * tables say something becomes due or a lease runs out.
 */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "kv_limits.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "shm.h"
#include "watch.h"

#define FCGI_VERSION_1		1
#define FCGI_END_REQUEST	3
#define FCGI_STDOUT		6
#define FCGI_MAX_CONTENT	65535
#define HUB_EVENTS		256
#define HUB_ARENA_CHUNK		(64 * 1024)
/* How often the hub looks for commits by writers outside this server. */
#define HUB_FOREIGN_CHECK_MS	1000
/*
 * A data version not recorded as ours is looked at again after this long
 * before every stream is re-read: one of our writers may be between its
 * COMMIT and recording the version (microseconds).
 */
#define HUB_GAP_GRACE_MS	20
/* An output buffer emptied above this size is given back. */
#define HUB_OUT_KEEP_BYTES	4096
/*
 * Long polls answered per round of the hub's loop: with a backlog, the rest
 * wait one turn of the loop so watch streams are served in between.
 */
#define HUB_POLLS_PER_ROUND	16
/* How soon leasing for polls is tried again while their answers drain. */
#define HUB_POLL_DRAIN_MS	100
/* Descriptors a worker keeps for itself besides its watch streams. */
#define HUB_RESERVED_FDS	64

struct watch_stream;

/* A parked queue long poll; its stream has no keys. */
struct queue_poll {
	struct watch_stream	*stream;
	struct queue_poll	*prev, *next;	/* on its list, oldest first */
	size_t			 max;
	int64_t			 lease_ms;
	int64_t			 until_mono;	/* answered empty then */
	int			 answered;	/* body queued; dropped once sent */
};

struct watch_key {
	struct watch_stream *owner;
	struct watch_key *slot_next;	/* other keys in the same change slot */
	struct watch_key **slot_prev;
	uint8_t		*key;
	size_t		 len;
	uint32_t	 slot;		/* change slot in the signal segment */
	uint64_t	 seen;		/* slot version when last read */
	int		 present;	/* last sent: present, with vs */
	uint8_t		 vs[KV_VERSIONSTAMP_BYTES];
};

struct watch_stream {
	int		 fd;
	uint16_t	 request_id;
	int		 sent_initial;
	int		 want_out;	/* EPOLLOUT armed */
	uint8_t		*out;		/* unsent bytes */
	size_t		 out_len, out_cap;
	int64_t		 expiry_ms;	/* earliest expire among entries; 0 none */
	size_t		 index;		/* position in hub->streams */
	int		 dead;		/* dropped; freed after this epoll batch */
	struct watch_stream *next_dead;
	int		 dirty;		/* a slot of its keys changed */
	struct watch_stream *next_dirty;
	struct queue_poll *poll;	/* a queue long poll, not a watch */
	size_t		 n;
	struct watch_key keys[];
};

/* A stream waiting for the hub to take it over. */
struct handoff {
	struct handoff		*next;
	struct watch_stream	*stream;
};

struct watch_hub {
	const struct conf	*conf;
	char			*name;		/* the database's, for logs */
	char			*path;		/* the database's file */
	int64_t			 max_size_bytes;	/* for lease writes */
	struct shm_segment	*seg;
	int			 count_slot;	/* where streams are counted */
	int			 max_watches;	/* of the database; 0: none */
	struct kv_db		*db;
	int			 epfd;
	int			 handoff_fd;	/* eventfd */
	int			 commit_fd;	/* eventfd */
	pthread_t		 hub_thread;
	/* the relay's: under bell->lock */
	struct watch_bell	*bell;
	uint32_t		 bell_commit, bell_queue;	/* last seen */
	pthread_mutex_t		 lock;
	struct handoff		*queue;
	atomic_int		 stop;
	atomic_size_t		 count;		/* adopted, not yet dropped */
	struct watch_stream	**streams;
	size_t			 n_streams, cap_streams;
	/*
	 * Dropped streams wait here until the current epoll batch is done:
	 * a later event of the same batch may still point at them.
	 */
	struct watch_stream	*graveyard;
	/* Keys by change slot, so a commit touches only its watchers. */
	struct watch_key	**by_slot;
	struct shm_cursor	 changes;	/* where we are in the change ring */
	struct watch_stream	*dirty;
	int64_t			 next_keepalive_ms;
	/*
	 * No stream has an entry expiring before this (wall clock; 0: none).
	 * Never later than the truth, so the streams are only walked for
	 * expiry when one may be due, not on every commit.
	 */
	int64_t			 next_expiry_ms;
	int64_t			 next_foreign_ms;
	/* Every data version up to this one has been accounted for. */
	uint64_t		 accounted;
	uint64_t		 gap;		/* unrecorded version, looked at once */
	size_t			 max_streams;	/* below the descriptor limit */
	size_t			 out_bytes;	/* all streams' output buffers */
	size_t			 poll_out_bytes;	/* of which long polls' */
	size_t			 out_budget;
	size_t			 budget_drops;	/* since last logged */
	size_t			 budget_freed;	/* their buffers, bytes */
	size_t			 out_peak;	/* most out_bytes since logged */
	struct arena		 arena;
	/* queue long polls */
	struct kv_db		*qdb;		/* read-write: leases */
	struct shm_client	 qclient;	/* its own turn to write */
	struct kv_hooks		 qhooks;
	int			 queue_fd;	/* eventfd */
	/*
	 * Polls waiting for messages, oldest first (h->polls), and polls
	 * answered whose answer is still being written (h->sending).
	 */
	struct poll_list {
		struct queue_poll	*head, *tail;
	}			 polls, sending;
	atomic_size_t		 n_polls;
	int64_t			 queue_next_wall;	/* 0: nothing known */
	int64_t			 queue_retry_mono;	/* after a failure */
	int64_t			 queue_version;	/* data version last served */
	int64_t			 next_queue_check_mono;
};

/* epoll tags for the eventfds; streams are tagged by pointer. */
static char	tag_handoff, tag_commit, tag_queue;

/* --- output --------------------------------------------------------------- */

static void	drop(struct watch_hub *, struct watch_stream *);
static void	out_release(struct watch_hub *, struct watch_stream *);

/*
 * A stream stops counting: in this hub and among the database's open
 * watches across workers (the segment's count for the max-watches limit).
 */
static void
count_sub(struct watch_hub *h)
{
	atomic_fetch_sub(&h->count, 1);
	shm_watch_release(h->seg, h->count_slot);
}

/* Output held for watch streams: long polls' answers are counted apart. */
static size_t
watch_out_bytes(const struct watch_hub *h)
{
	return h->out_bytes - h->poll_out_bytes;
}

/* The watch stream (not a long poll, not but) with the most unsent output. */
static struct watch_stream *
furthest_behind(struct watch_hub *h, const struct watch_stream *but)
{
	struct watch_stream	*worst = NULL;

	for (size_t i = 0; i < h->n_streams; i++) {
		struct watch_stream	*t = h->streams[i];

		if (t != but && t->poll == NULL &&
		    (worst == NULL || t->out_len > worst->out_len))
			worst = t;
	}
	return worst;
}

/* Gives back the empty buffers kept for reuse, but keep's. */
static void
release_idle(struct watch_hub *h, const struct watch_stream *keep)
{
	for (size_t i = 0; i < h->n_streams; i++) {
		struct watch_stream	*s = h->streams[i];

		if (s != keep && s->out_len == 0 && s->out_cap > 0)
			out_release(h, s);
	}
}

/*
 * Makes room in the budget for s to grow by more bytes, before it grows:
 * one commit can queue a frame for every stream at once, so waiting for
 * the end of the pass would let the worker hold a frame per stream. The
 * other streams furthest behind go first; if s itself is furthest behind,
 * it is the one to go (-1). A stream alone may hold one backlog
 * (KV_MAX_WATCH_BACKLOG_BYTES) even past a smaller budget.
 */
static int
out_make_room(struct watch_hub *h, struct watch_stream *s, size_t more)
{
	/* A poll's answer is bounded by serve_polls, not here. */
	if (s->poll != NULL || watch_out_bytes(h) + more <= h->out_budget)
		return 0;
	release_idle(h, s);
	while (watch_out_bytes(h) + more > h->out_budget) {
		struct watch_stream	*worst = furthest_behind(h, s);

		if (worst == NULL || worst->out_len == 0)
			return 0;	/* s alone: its backlog limit bounds it */
		if (s->out_len >= worst->out_len)
			return -1;
		h->budget_drops++;
		h->budget_freed += worst->out_cap;
		drop(h, worst);
	}
	return 0;
}

static int
out_reserve(struct watch_hub *h, struct watch_stream *s, size_t more)
{
	size_t	 cap;
	uint8_t	*p;

	if (s->out_len + more <= s->out_cap)
		return 0;
	/* A poll's one answer is bounded by the lease request's limits. */
	if (s->poll == NULL && s->out_len + more > KV_MAX_WATCH_BACKLOG_BYTES)
		return -1;
	cap = s->out_cap ? s->out_cap : 1024;
	while (cap < s->out_len + more)
		cap *= 2;
	if (out_make_room(h, s, cap - s->out_cap) != 0) {
		h->budget_drops++;
		h->budget_freed += s->out_cap;
		return -1;
	}
	if ((p = realloc(s->out, cap)) == NULL)
		return -1;
	h->out_bytes += cap - s->out_cap;
	if (s->poll != NULL)
		h->poll_out_bytes += cap - s->out_cap;
	if (watch_out_bytes(h) > h->out_peak)
		h->out_peak = watch_out_bytes(h);
	s->out = p;
	s->out_cap = cap;
	return 0;
}

/* Gives back an output buffer that has been sent. */
static void
out_release(struct watch_hub *h, struct watch_stream *s)
{
	h->out_bytes -= s->out_cap;
	if (s->poll != NULL)
		h->poll_out_bytes -= s->out_cap;
	free(s->out);
	s->out = NULL;
	s->out_cap = 0;
}

static void
put_header(uint8_t *h, int type, uint16_t id, size_t len)
{
	h[0] = FCGI_VERSION_1;
	h[1] = (uint8_t)type;
	h[2] = (uint8_t)(id >> 8);
	h[3] = (uint8_t)id;
	h[4] = (uint8_t)(len >> 8);
	h[5] = (uint8_t)len;
	h[6] = 0;	/* padding */
	h[7] = 0;
}

/* Queues bytes as STDOUT records (len 0: the end-of-stream record). */
static int
queue_stdout(struct watch_hub *h, struct watch_stream *s, const uint8_t *p,
    size_t len)
{
	do {
		size_t	 chunk = len > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len;

		if (out_reserve(h, s, 8 + chunk) != 0)
			return -1;
		put_header(s->out + s->out_len, FCGI_STDOUT, s->request_id,
		    chunk);
		if (chunk > 0)
			memcpy(s->out + s->out_len + 8, p, chunk);
		s->out_len += 8 + chunk;
		p += chunk;
		len -= chunk;
	} while (len > 0);
	return 0;
}

static int
queue_end_request(struct watch_hub *h, struct watch_stream *s)
{
	uint8_t	*rec;

	if (queue_stdout(h, s, NULL, 0) != 0 || out_reserve(h, s, 16) != 0)
		return -1;
	rec = s->out + s->out_len;
	put_header(rec, FCGI_END_REQUEST, s->request_id, 8);
	memset(rec + 8, 0, 8);	/* app status 0, FCGI_REQUEST_COMPLETE */
	s->out_len += 16;
	return 0;
}

static void
arm_output(struct watch_hub *h, struct watch_stream *s, int want)
{
	struct epoll_event	 ev = { .data.ptr = s };

	if (s->want_out == want)
		return;
	ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
	if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
		s->want_out = want;
}

/* Writes what it can; -1 if the peer is gone. */
static int
flush_out(struct watch_hub *h, struct watch_stream *s)
{
	size_t	 done = 0;
	ssize_t	 n;

	while (done < s->out_len) {
		n = write(s->fd, s->out + done, s->out_len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		return -1;
	}
	memmove(s->out, s->out + done, s->out_len - done);
	s->out_len -= done;
	if (s->out_len == 0 && s->out_cap > HUB_OUT_KEEP_BYTES)
		out_release(h, s);
	arm_output(h, s, s->out_len > 0);
	return 0;
}

/* --- stream life ------------------------------------------------------------ */

/* Frees a stream that holds no output buffer (see out_release). */
static void
stream_free(struct watch_stream *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->keys[i].key);
	free(s->out);
	free(s->poll);
	free(s);
}

static void poll_unlink(struct watch_hub *, struct queue_poll *);

static void
drop(struct watch_hub *h, struct watch_stream *s)
{
	struct watch_stream	*last;

	epoll_ctl(h->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	out_release(h, s);
	if (s->poll != NULL) {
		poll_unlink(h, s->poll);
		s->dead = 1;
		s->next_dead = h->graveyard;
		h->graveyard = s;
		return;
	}
	for (size_t i = 0; i < s->n; i++) {
		struct watch_key	*k = &s->keys[i];

		*k->slot_prev = k->slot_next;
		if (k->slot_next != NULL)
			k->slot_next->slot_prev = k->slot_prev;
	}
	last = h->streams[--h->n_streams];
	last->index = s->index;
	h->streams[s->index] = last;
	count_sub(h);
	metrics_watch_closed();
	s->dead = 1;
	s->next_dead = h->graveyard;
	h->graveyard = s;
}

static void
bury(struct watch_hub *h)
{
	struct watch_stream	*s;

	while ((s = h->graveyard) != NULL) {
		h->graveyard = s->next_dead;
		stream_free(s);
	}
}

/* Best effort: tell the proxy the response is complete, then drop. */
static void
finish(struct watch_hub *h, struct watch_stream *s)
{
	if (queue_end_request(h, s) == 0)
		(void)flush_out(h, s);
	drop(h, s);
}

/* --- reading and sending ------------------------------------------------------ */

/* Keeps the hub's next expiry no later than this stream's. */
static void
note_expiry(struct watch_hub *h, const struct watch_stream *s)
{
	if (s->expiry_ms != 0 && (h->next_expiry_ms == 0 ||
	    s->expiry_ms < h->next_expiry_ms))
		h->next_expiry_ms = s->expiry_ms;
}

static int
same_entry(const struct watch_key *k, const struct kv_range_result *r)
{
	if (r->n == 0)
		return !k->present;
	return k->present &&
	    memcmp(k->vs, r->entries[0].versionstamp, KV_VERSIONSTAMP_BYTES) == 0;
}

/*
 * Reads every key of the stream in one snapshot and sends a frame if any
 * entry differs from what was last sent (always, the first time).
 * Returns -1 if the stream must be dropped.
 */
static int
refresh(struct watch_hub *h, struct watch_stream *s, int64_t now_wall)
{
	struct kv_range			*ranges;
	struct kv_range_result		*res;
	const struct kv_entry		**entries;
	struct codec_out		 frame;
	uint64_t			 slot_seen[KV_MAX_WATCHED_KEYS];
	int				 changed = !s->sent_initial, rc = 0;

	metrics_watch_read();
	arena_reset(&h->arena);
	ranges = arena_alloc(&h->arena, s->n * sizeof(*ranges));
	res = arena_alloc(&h->arena, s->n * sizeof(*res));
	entries = arena_alloc(&h->arena, s->n * sizeof(*entries));
	if (ranges == NULL || res == NULL || entries == NULL)
		return -1;
	for (size_t i = 0; i < s->n; i++) {
		uint8_t	*end = arena_alloc(&h->arena, s->keys[i].len + 1);

		if (end == NULL)
			return -1;
		/* Slots before the read: a later commit is seen next time. */
		slot_seen[i] = shm_slot_version(h->seg, s->keys[i].slot);
		memcpy(end, s->keys[i].key, s->keys[i].len);
		end[s->keys[i].len] = 0x00;
		ranges[i] = (struct kv_range){
			.start = { s->keys[i].key, s->keys[i].len },
			.end = { end, s->keys[i].len + 1 },
			.limit = 1,
		};
	}
	if (kv_snapshot_read(h->db, ranges, s->n, now_wall, &h->arena, res) !=
	    KV_OK)
		return -1;
	s->expiry_ms = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct watch_key	*k = &s->keys[i];

		k->seen = slot_seen[i];
		if (!same_entry(k, &res[i]))
			changed = 1;
		k->present = res[i].n > 0;
		entries[i] = k->present ? &res[i].entries[0] : NULL;
		if (k->present) {
			int64_t exp = res[i].entries[0].expire_at_ms;

			memcpy(k->vs, res[i].entries[0].versionstamp,
			    KV_VERSIONSTAMP_BYTES);
			if (exp > 0 && (s->expiry_ms == 0 || exp < s->expiry_ms))
				s->expiry_ms = exp;
		}
	}
	note_expiry(h, s);
	if (!changed)
		return 0;
	if (codec_encode_watch_frame(entries, s->n, &h->arena, &frame) !=
	    KV_OK || queue_stdout(h, s, frame.p, frame.len) != 0)
		rc = -1;
	else {
		metrics_watch_delivered();
		rc = flush_out(h, s);
	}
	s->sent_initial = 1;
	return rc;
}

static int
slots_moved(struct watch_hub *h, const struct watch_stream *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (shm_slot_version(h->seg, s->keys[i].slot) != s->keys[i].seen)
			return 1;
	return 0;
}

/*
 * Calls visit on every open stream and drops those it fails (-1). A visit
 * may also drop other streams (the output budget). drop() moves the last
 * stream into the dropped one's place, so the walk goes from the end:
 * streams not visited yet all sit below the position being visited and
 * stay there; at worst one already visited is visited again.
 */
static void
for_each_stream(struct watch_hub *h,
    int (*visit)(struct watch_hub *, struct watch_stream *, int64_t),
    int64_t now_wall)
{
	for (size_t i = h->n_streams; i > 0;) {
		struct watch_stream	*s;

		if (--i >= h->n_streams) {
			i = h->n_streams;
			continue;
		}
		s = h->streams[i];
		if (visit(h, s, now_wall) != 0)
			drop(h, s);
	}
}

static int
refresh_if_slots_moved(struct watch_hub *h, struct watch_stream *s,
    int64_t now_wall)
{
	return slots_moved(h, s) ? refresh(h, s, now_wall) : 0;
}

/* Entries that expired since they were sent are gone now: tell clients. */
static int
refresh_if_expired(struct watch_hub *h, struct watch_stream *s,
    int64_t now_wall)
{
	if (s->expiry_ms == 0 || s->expiry_ms > now_wall) {
		note_expiry(h, s);
		return 0;
	}
	return refresh(h, s, now_wall);
}

static int
send_keepalive(struct watch_hub *h, struct watch_stream *s, int64_t now_wall)
{
	static const uint8_t	 empty_frame[4];

	(void)now_wall;
	if (queue_stdout(h, s, empty_frame, sizeof(empty_frame)) != 0)
		return -1;
	return flush_out(h, s);
}

static void
mark_dirty(struct watch_hub *h, struct watch_stream *s)
{
	if (s->dirty)
		return;
	s->dirty = 1;
	s->next_dirty = h->dirty;
	h->dirty = s;
}

/*
 * After a commit: the change ring names the slots written since we last
 * looked; re-read only the streams watching those slots. When entries had
 * to be skipped (shm_changes_next), compare every stream's slots instead.
 * periodic: also skip an entry whose writer died before writing it.
 */
static void
process_changes(struct watch_hub *h, int periodic)
{
	struct watch_stream	*s;
	uint32_t		 slot;
	int			 r, compare_all = 0;

	while ((r = shm_changes_next(h->seg, &h->changes, periodic, &slot)) !=
	    0) {
		if (r < 0) {
			compare_all = 1;
			continue;
		}
		for (struct watch_key *k = h->by_slot[slot]; k != NULL;
		    k = k->slot_next)
			mark_dirty(h, k->owner);
	}
	while ((s = h->dirty) != NULL) {
		h->dirty = s->next_dirty;
		s->dirty = 0;
		if (!s->dead && refresh(h, s, kv_now_ms()) != 0)
			drop(h, s);
	}
	if (compare_all)
		for_each_stream(h, refresh_if_slots_moved, kv_now_ms());
}

/*
 * Commits that never signalled here: by writers outside this server
 * (another instance, denokv, the Deno CLI's local KV), or by one of ours
 * that died between its COMMIT and recording its version. Every commit of
 * ours adds exactly 1 to the data version and records it after its change
 * marks, so any version up to the database's that is not recorded is such
 * a commit (docs/signal-segment.md), however many of ours follow it. Then
 * every stream is read again; only real changes are sent.
 * Returns how many milliseconds until the next look.
 */
static int64_t
check_foreign(struct watch_hub *h)
{
	int64_t		 v;
	uint64_t	 gap;

	process_changes(h, 1);	/* marks whose wake-up was lost */
	if (kv_current_version(h->db, &v) != KV_OK)
		return HUB_FOREIGN_CHECK_MS;
	if (h->n_streams == 0) {
		/* Nothing to re-read: streams adopted later read afresh. */
		h->accounted = (uint64_t)v;
		h->gap = 0;
		return HUB_FOREIGN_CHECK_MS;
	}
	gap = shm_first_unrecorded(h->seg, h->accounted, (uint64_t)v);
	if (gap == 0) {
		h->accounted = (uint64_t)v;
		h->gap = 0;
		return HUB_FOREIGN_CHECK_MS;
	}
	if (gap != h->gap) {
		/* Perhaps one of ours about to record it: look again soon. */
		h->accounted = gap - 1;
		h->gap = gap;
		return HUB_GAP_GRACE_MS;
	}
	log_debug("watch hub: data version %llu was not committed through"
	    " this server; reading %zu streams again",
	    (unsigned long long)gap, h->n_streams);
	h->accounted = (uint64_t)v;
	h->gap = 0;
	for_each_stream(h, refresh, kv_now_ms());
	return HUB_FOREIGN_CHECK_MS;
}

/*
 * Keeps the output buffers of the watch streams within the worker's
 * budget: the streams furthest behind go first (their clients reconnect
 * and read again), until a quarter of the budget is free; empty buffers
 * kept for reuse are given back before anyone is dropped. out_make_room()
 * already keeps each growth within it; this frees the headroom and logs
 * the drops of the whole pass once. Long polls' answers have a budget of
 * their own (serve_polls).
 */
static void
enforce_out_budget(struct watch_hub *h)
{
	size_t	 dropped = h->budget_drops, freed = h->budget_freed;
	size_t	 goal = h->out_budget / 4 * 3;

	h->budget_drops = h->budget_freed = 0;
	if (watch_out_bytes(h) > h->out_budget)
		release_idle(h, NULL);
	else
		goal = watch_out_bytes(h);	/* within it: nothing to drop */
	while (watch_out_bytes(h) > goal) {
		struct watch_stream	*worst = furthest_behind(h, NULL);

		if (worst == NULL || worst->out_len == 0)
			break;
		freed += worst->out_cap;
		dropped++;
		drop(h, worst);
	}
	if (dropped > 0) {
		log_warnx("watch output over its budget of %zu bytes: dropped"
		    " the %zu slowest streams (%zu bytes); their clients will"
		    " reconnect; at most %zu bytes were held", h->out_budget,
		    dropped, freed, h->out_peak);
		h->out_peak = watch_out_bytes(h);
	}
}

static int
add_stream(struct watch_hub *h, struct watch_stream *s)
{
	struct epoll_event	 ev = {
		.events = EPOLLIN | EPOLLRDHUP,
		.data.ptr = s,
	};

	if (h->n_streams == h->cap_streams) {
		size_t			 cap = h->cap_streams ? 2 * h->cap_streams : 64;
		struct watch_stream	**p = realloc(h->streams,
		    cap * sizeof(*p));

		if (p == NULL)
			return -1;
		h->streams = p;
		h->cap_streams = cap;
	}
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
		return -1;
	s->index = h->n_streams;
	h->streams[h->n_streams++] = s;
	metrics_watch_opened();
	for (size_t i = 0; i < s->n; i++) {
		struct watch_key	*k = &s->keys[i];
		struct watch_key	**head = &h->by_slot[k->slot];

		k->owner = s;
		k->slot_next = *head;
		k->slot_prev = head;
		if (*head != NULL)
			(*head)->slot_prev = &k->slot_next;
		*head = k;
	}
	return 0;
}

/* --- queue long polls ------------------------------------------------------- */

static void
poll_list_remove(struct poll_list *l, struct queue_poll *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		l->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		l->tail = p->prev;
	p->prev = p->next = NULL;
}

static void
poll_list_append(struct poll_list *l, struct queue_poll *p)
{
	p->next = NULL;
	p->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
}

/* Takes a dropped poll off whichever list holds it. */
static void
poll_unlink(struct watch_hub *h, struct queue_poll *p)
{
	if (p->answered) {
		poll_list_remove(&h->sending, p);
		return;
	}
	poll_list_remove(&h->polls, p);
	atomic_fetch_sub(&h->n_polls, 1);
}

/* A waiting poll gets its answer: it moves to the sending list. */
static void
poll_mark_answered(struct watch_hub *h, struct queue_poll *p)
{
	poll_list_remove(&h->polls, p);
	atomic_fetch_sub(&h->n_polls, 1);
	p->answered = 1;
	poll_list_append(&h->sending, p);
}

/* A poll whose answer has been written completely is done. */
static void
poll_sent(struct watch_hub *h, struct watch_stream *s)
{
	if (s->poll != NULL && s->poll->answered && s->out_len == 0)
		drop(h, s);
}

/*
 * Answers a poll with its body and ends the request. Leased messages
 * whose answer cannot be written are delivered again when their lease
 * runs out (at least once).
 */
static void
poll_answer(struct watch_hub *h, struct queue_poll *p,
    const struct kv_queue_msg *m, size_t n)
{
	struct watch_stream	*s = p->stream;
	size_t			 len = 0;
	char			*body;

	poll_mark_answered(h, p);
	body = queue_encode_lease(m, n, &len);
	if (body == NULL || queue_stdout(h, s, (const uint8_t *)body, len) !=
	    0 || queue_end_request(h, s) != 0 || flush_out(h, s) != 0) {
		if (n > 0)
			log_warnx("queue: could not answer a long poll; its %zu"
			    " messages are delivered again after their lease",
			    n);
		free(body);
		drop(h, s);
		return;
	}
	free(body);
	poll_sent(h, s);
}

/*
 * Whether a poll's client has gone (its proxy closed the connection) and
 * the hub has not handled the event yet. Leasing for it would hold its
 * messages until their lease ran out and cost each a retry.
 */
static int
poll_gone(const struct queue_poll *p)
{
	struct pollfd	 pfd = { .fd = p->stream->fd, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) > 0 &&
	    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/*
 * Leases for the waiting polls, oldest first, while messages are due; then
 * learns from the queue tables when to look again. A read comes first, so
 * hubs woken for nothing due do not queue for the write lock.
 */
static void
serve_polls(struct watch_hub *h)
{
	struct kv_queue_events	 ev;
	struct kv_queue_msg	*msgs;
	int64_t			 now;
	size_t			 n;
	enum kv_err		 err = KV_OK;
	int			 empty = 0, answered = 0;

	h->queue_next_wall = 0;
	h->queue_retry_mono = 0;
	if (h->polls.head == NULL || h->qdb == NULL)
		return;
	(void)kv_current_version(h->qdb, &h->queue_version);
	while (h->polls.head != NULL) {
		if ((err = kv_queue_next_events(h->qdb, &ev)) != KV_OK)
			break;
		now = kv_now_ms();
		if ((ev.next_due_ms == 0 || ev.next_due_ms > now) &&
		    (ev.next_lease_end_ms == 0 || ev.next_lease_end_ms > now))
			break;
		if (poll_gone(h->polls.head)) {
			drop(h, h->polls.head->stream);
			continue;
		}
		/*
		 * Answers not yet taken by slow clients hold leased messages
		 * in memory: past the budget, due messages wait in the queue
		 * (for other consumers) until those answers drain.
		 */
		if (h->poll_out_bytes >= h->out_budget) {
			h->queue_retry_mono = clock_mono_ms() +
			    HUB_POLL_DRAIN_MS;
			return;
		}
		arena_reset(&h->arena);
		msgs = arena_alloc(&h->arena, h->polls.head->max * sizeof(*msgs));
		if (msgs == NULL) {
			err = KV_ERR_NOMEM;
			break;
		}
		if ((err = kv_queue_lease(h->qdb, now, h->polls.head->max,
		    h->polls.head->lease_ms, &h->arena, msgs, &n)) != KV_OK)
			break;
		if (n == 0 && empty++ == 0)
			continue;	/* returned leases only: look again */
		if (n == 0)
			break;		/* due rows it cannot lease */
		poll_answer(h, h->polls.head, msgs, n);
		if (++answered == HUB_POLLS_PER_ROUND && h->polls.head != NULL) {
			/* next round */
			h->queue_retry_mono = clock_mono_ms();
			return;
		}
	}
	if (err != KV_OK) {
		/* Busy or failing: the polls wait, and we try again soon. */
		log_debug("queue: leasing for long polls: %s",
		    kv_err_name(err));
		h->queue_retry_mono = clock_mono_ms() + 100;
		return;
	}
	if (h->polls.head == NULL)
		return;
	h->queue_next_wall = ev.next_due_ms;
	if (ev.next_lease_end_ms != 0 && (h->queue_next_wall == 0 ||
	    ev.next_lease_end_ms < h->queue_next_wall))
		h->queue_next_wall = ev.next_lease_end_ms;
	/* Due but not leasable (a row another program wrote): not a spin. */
	if (h->queue_next_wall != 0 && h->queue_next_wall <= kv_now_ms())
		h->queue_next_wall = kv_now_ms() + HUB_FOREIGN_CHECK_MS;
}

/* Answers the polls whose wait is over with an empty list. */
static void
expire_polls(struct watch_hub *h)
{
	int64_t			 now = clock_mono_ms();
	struct queue_poll	*p, *next;

	for (p = h->polls.head; p != NULL; p = next) {
		next = p->next;
		if (p->until_mono <= now)
			poll_answer(h, p, NULL, 0);
	}
}

/*
 * Whether the queue tables name an earlier moment than the one the hub
 * sleeps until. Writers outside this server that fail a message (another
 * instance on the file, the Deno CLI) put it back into `queue` without
 * moving the data version and without waking this segment's sleepers.
 */
static int
queue_moved_earlier(struct watch_hub *h)
{
	struct kv_queue_events	 ev;
	int64_t			 next;

	if (kv_queue_next_events(h->qdb, &ev) != KV_OK)
		return 0;
	next = ev.next_due_ms;
	if (ev.next_lease_end_ms != 0 && (next == 0 ||
	    ev.next_lease_end_ms < next))
		next = ev.next_lease_end_ms;
	return next != 0 && (h->queue_next_wall == 0 ||
	    next < h->queue_next_wall);
}

/*
 * The timed parts: waits that ran out, the moment the queue tables named,
 * a retry after a failure, and changes by writers outside this server:
 * enqueues (found, like foreign commits for watches, by the data version
 * moving) and retries (found by the queue's next moment moving earlier).
 */
static void
poll_timers(struct watch_hub *h)
{
	int64_t	 v, mono = clock_mono_ms();

	expire_polls(h);
	if (h->polls.head == NULL)
		return;
	if ((h->queue_next_wall != 0 && h->queue_next_wall <= kv_now_ms()) ||
	    (h->queue_retry_mono != 0 && h->queue_retry_mono <= mono)) {
		serve_polls(h);
		return;
	}
	if (mono < h->next_queue_check_mono)
		return;
	h->next_queue_check_mono = mono + HUB_FOREIGN_CHECK_MS;
	if ((kv_current_version(h->qdb, &v) == KV_OK && v != h->queue_version)
	    || queue_moved_earlier(h))
		serve_polls(h);
}

/* Milliseconds until poll_timers has something to do; INT64_MAX: never. */
static int64_t
poll_timeout_ms(struct watch_hub *h)
{
	int64_t	 now = clock_mono_ms(), t;

	if (h->polls.head == NULL)
		return INT64_MAX;
	t = h->next_queue_check_mono - now;
	for (struct queue_poll *p = h->polls.head; p != NULL; p = p->next)
		if (p->until_mono - now < t)
			t = p->until_mono - now;
	if (h->queue_next_wall != 0 && h->queue_next_wall - kv_now_ms() < t)
		t = h->queue_next_wall - kv_now_ms();
	if (h->queue_retry_mono != 0 && h->queue_retry_mono - now < t)
		t = h->queue_retry_mono - now;
	return t;
}

static int
add_poll(struct watch_hub *h, struct watch_stream *s)
{
	struct epoll_event	 ev = {
		.events = EPOLLIN | EPOLLRDHUP,
		.data.ptr = s,
	};
	struct queue_poll	*p = s->poll;

	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
		return -1;
	poll_list_append(&h->polls, p);
	if (h->next_queue_check_mono == 0)
		h->next_queue_check_mono = clock_mono_ms() +
		    HUB_FOREIGN_CHECK_MS;
	return 0;
}

/*
 * At stop: every waiting poll gets an empty answer and polls again; answers
 * still being written are cut short (their messages come back after their
 * lease).
 */
static void
end_all_polls(struct watch_hub *h)
{
	while (h->polls.head != NULL)
		poll_answer(h, h->polls.head, NULL, 0);
	while (h->sending.head != NULL)
		drop(h, h->sending.head->stream);
}

/*
 * The hub's read-write connection for leases, with its own process slot
 * in the segment: the accept thread may be writing at the same time.
 */
static int
queue_open(struct watch_hub *h, char *errbuf, size_t errlen)
{
	struct kv_options	 opt = conf_kv_options(h->conf);

	opt.max_size_bytes = h->max_size_bytes;
	if (h->conf->read_only)
		return 0;	/* nothing to lease: polls are refused */
	if (shm_client_init(&h->qclient, h->seg, &h->qhooks) != 0) {
		snprintf(errbuf, errlen, "no free process slot in the signal"
		    " segment");
		return -1;
	}
	opt.hooks = &h->qhooks;
	if ((h->qdb = kv_open(h->path, &opt, errbuf, errlen)) == NULL)
		return -1;
	return 0;
}

static void
take_handoffs(struct watch_hub *h)
{
	struct handoff	*list, *next;
	uint64_t	 v;

	if (read(h->handoff_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("watch hub: eventfd read");
	pthread_mutex_lock(&h->lock);
	list = h->queue;
	h->queue = NULL;
	pthread_mutex_unlock(&h->lock);
	for (; list != NULL; list = next) {
		struct watch_stream	*s = list->stream;

		next = list->next;
		free(list);
		if (s->poll != NULL) {
			if (add_poll(h, s) != 0) {
				close(s->fd);
				atomic_fetch_sub(&h->n_polls, 1);
				stream_free(s);
			}
			continue;
		}
		if (add_stream(h, s) != 0) {
			close(s->fd);
			count_sub(h);
			stream_free(s);
			continue;
		}
		if (refresh(h, s, kv_now_ms()) != 0)
			drop(h, s);
	}
	/* Something may have been enqueued since the worker looked. */
	serve_polls(h);
}

/* The peer sent something or hung up; anything but EAGAIN ends it. */
static int
stream_readable(struct watch_stream *s)
{
	uint8_t	 buf[512];
	ssize_t	 n;

	for (;;) {
		n = read(s->fd, buf, sizeof(buf));
		if (n > 0)
			continue;	/* leftover request records: ignore */
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ?
		    0 : -1;
	}
}

static int
next_timeout_ms(struct watch_hub *h)
{
	int64_t	 now = clock_mono_ms(), wall = kv_now_ms();
	int64_t	 t = h->next_keepalive_ms - now;

	if (h->next_expiry_ms != 0 && h->next_expiry_ms - wall < t)
		t = h->next_expiry_ms - wall;
	if (h->next_foreign_ms - now < t)
		t = h->next_foreign_ms - now;
	if (poll_timeout_ms(h) < t)
		t = poll_timeout_ms(h);
	if (t < 0)
		t = 0;
	return t > KV_WATCH_KEEPALIVE_MS ? KV_WATCH_KEEPALIVE_MS : (int)t;
}

static void *
hub_main(void *arg)
{
	struct watch_hub	*h = arg;
	struct epoll_event	 ev[HUB_EVENTS];
	uint64_t		 v;
	int64_t			 start_version;
	int			 n;

	shm_cursor_init(h->seg, &h->changes);
	if (kv_current_version(h->db, &start_version) == KV_OK)
		h->accounted = (uint64_t)start_version;
	h->next_keepalive_ms = clock_mono_ms() + KV_WATCH_KEEPALIVE_MS;
	h->next_foreign_ms = clock_mono_ms() + HUB_FOREIGN_CHECK_MS;
	while (!atomic_load(&h->stop)) {
		n = epoll_wait(h->epfd, ev, HUB_EVENTS, next_timeout_ms(h));
		for (int i = 0; i < n; i++) {
			struct watch_stream	*s = ev[i].data.ptr;

			if (ev[i].data.ptr == &tag_handoff)
				take_handoffs(h);
			else if (ev[i].data.ptr == &tag_queue) {
				if (read(h->queue_fd, &v, sizeof(v)) < 0 &&
				    errno != EAGAIN)
					log_warn("watch hub: eventfd read");
				serve_polls(h);
			} else if (ev[i].data.ptr != &tag_commit && s->dead)
				continue;
			else if (ev[i].data.ptr == &tag_commit) {
				if (read(h->commit_fd, &v, sizeof(v)) < 0 &&
				    errno != EAGAIN)
					log_warn("watch hub: eventfd read");
				process_changes(h, 0);
			} else if ((ev[i].events & (EPOLLIN | EPOLLRDHUP |
			    EPOLLHUP | EPOLLERR)) && stream_readable(s) != 0)
				drop(h, s);
			else if ((ev[i].events & EPOLLOUT) &&
			    flush_out(h, s) != 0)
				drop(h, s);
			else
				poll_sent(h, s);
		}
		poll_timers(h);
		if (h->next_expiry_ms != 0 && h->next_expiry_ms <= kv_now_ms()) {
			/* The walk finds the next one. */
			h->next_expiry_ms = 0;
			for_each_stream(h, refresh_if_expired, kv_now_ms());
		}
		if (clock_mono_ms() >= h->next_foreign_ms)
			h->next_foreign_ms = clock_mono_ms() + check_foreign(h);
		if (clock_mono_ms() >= h->next_keepalive_ms) {
			for_each_stream(h, send_keepalive, 0);
			h->next_keepalive_ms = clock_mono_ms() +
			    KV_WATCH_KEEPALIVE_MS;
		}
		enforce_out_budget(h);
		bury(h);
	}
	while (h->n_streams > 0)
		finish(h, h->streams[h->n_streams - 1]);
	end_all_polls(h);
	bury(h);
	return NULL;
}

/* --- the doorbell relay --------------------------------------------------------- */

struct watch_bell {
	pthread_t		 thread;
	pthread_mutex_t		 lock;
	atomic_int		 stop;
	struct watch_hub	**hubs;		/* under lock */
	size_t			 n, cap;
};

static void
poke(int fd, const char *what)
{
	uint64_t	 one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("watch relay: %s eventfd write", what);
}

/* Wakes the hub for what moved on its database since it last looked. */
static void
poke_if_moved(struct watch_hub *h)
{
	uint32_t	 c = shm_commit_word(h->seg), q = shm_queue_word(h->seg);

	if (c != h->bell_commit) {
		h->bell_commit = c;
		poke(h->commit_fd, "commit");
	}
	if (q != h->bell_queue) {
		h->bell_queue = q;
		poke(h->queue_fd, "queue");
	}
}

/*
 * Reads the bell, then compares the words, then sleeps on the value read
 * first: a commit landing after the read rings the bell past that value,
 * so the wait returns at once and the next round sees it. The timeout is
 * a safety net only.
 */
static void *
bell_main(void *arg)
{
	struct watch_bell	*b = arg;
	uint32_t		 word;

	while (!atomic_load(&b->stop)) {
		word = shm_bell_word();
		pthread_mutex_lock(&b->lock);
		for (size_t i = 0; i < b->n; i++)
			poke_if_moved(b->hubs[i]);
		pthread_mutex_unlock(&b->lock);
		(void)shm_bell_wait(word, 1000);
	}
	return NULL;
}

/* Registers a hub; its words as they are now are "seen". */
static void
bell_add(struct watch_bell *b, struct watch_hub *h)
{
	struct watch_hub	**grown;

	pthread_mutex_lock(&b->lock);
	h->bell = b;
	h->bell_commit = shm_commit_word(h->seg);
	h->bell_queue = shm_queue_word(h->seg);
	if (b->n == b->cap) {
		size_t	 cap = b->cap ? 2 * b->cap : 16;

		if ((grown = realloc(b->hubs, cap * sizeof(*grown))) == NULL) {
			/* Unwoken, the hub still looks once a second. */
			pthread_mutex_unlock(&b->lock);
			log_warnx("watch relay: out of memory; database %s"
			    " is looked at once a second", h->name);
			return;
		}
		b->hubs = grown;
		b->cap = cap;
	}
	b->hubs[b->n++] = h;
	pthread_mutex_unlock(&b->lock);
	/* A commit between the hub's start and now: look once. */
	poke(h->commit_fd, "commit");
}

static void
bell_remove(struct watch_bell *b, struct watch_hub *h)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < b->n; i++)
		if (b->hubs[i] == h)
			b->hubs[i] = b->hubs[--b->n];
	pthread_mutex_unlock(&b->lock);
}

struct watch_bell *
watch_bell_start(char *errbuf, size_t errlen)
{
	struct watch_bell	*b;

	if (!shm_bell_ready()) {
		snprintf(errbuf, errlen, "no doorbell mapped");
		return NULL;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	if (pthread_create(&b->thread, NULL, bell_main, b) != 0) {
		snprintf(errbuf, errlen, "watch relay: cannot start its"
		    " thread");
		pthread_mutex_destroy(&b->lock);
		free(b);
		return NULL;
	}
	return b;
}

void
watch_bell_stop(struct watch_bell *b)
{
	if (b == NULL)
		return;
	atomic_store(&b->stop, 1);
	/* Every relay on the host looks once and finds nothing moved. */
	shm_bell_ring();
	pthread_join(b->thread, NULL);
	pthread_mutex_destroy(&b->lock);
	free(b->hubs);
	free(b);
}

/* --- public ------------------------------------------------------------------ */

static int
watch_epoll_add(int epfd, int fd, void *tag)
{
	struct epoll_event	 ev = { .events = EPOLLIN, .data.ptr = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void
hub_free(struct watch_hub *h)
{
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->handoff_fd >= 0)
		close(h->handoff_fd);
	if (h->commit_fd >= 0)
		close(h->commit_fd);
	if (h->queue_fd >= 0)
		close(h->queue_fd);
	kv_close(h->qdb);
	kv_close(h->db);
	/* Its lease writes' slot: a hub may be started again and again. */
	if (h->qclient.seg != NULL && h->qclient.slot >= 0)
		shm_proc_release(h->qclient.seg, h->qclient.slot);
	/* Streams that ended with the hub stop counting for the database. */
	while (atomic_load(&h->count) > 0)
		count_sub(h);
	arena_fini(&h->arena);
	free(h->streams);
	free(h->by_slot);
	free(h->name);
	free(h->path);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/*
 * The most streams a worker's hubs take (each hub, and all of them together,
 * dbreg_hubs_full): each holds a descriptor, so stay below the
 * descriptor limit (with room for the database, the listener and requests
 * in flight) and answer 503 rather than failing accept with EMFILE.
 */
size_t
watch_stream_cap(void)
{
	struct rlimit	 rl;
	size_t		 cap = KV_MAX_WATCHES_PER_WORKER, nofile;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return cap;
	nofile = (size_t)rl.rlim_cur;
	nofile = nofile > 2 * HUB_RESERVED_FDS ? nofile - HUB_RESERVED_FDS :
	    nofile / 2;
	return nofile < cap ? nofile : cap;
}

struct watch_hub *
watch_hub_start(const struct conf *c, const struct watch_hub_options *o,
    char *errbuf, size_t errlen)
{
	struct kv_options	 opt = conf_kv_options(c);
	struct shm_segment	*seg = o->seg;
	struct watch_hub	*h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	h->conf = c;
	h->seg = seg;
	h->count_slot = o->count_slot;
	h->max_watches = o->max_watches;
	h->max_size_bytes = o->max_size_bytes;
	if ((h->name = strdup(o->name)) == NULL ||
	    (h->path = strdup(o->path)) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	h->max_streams = watch_stream_cap();
	h->out_budget = (size_t)c->watch_output_mib * 1024 * 1024;
	h->epfd = h->handoff_fd = h->commit_fd = h->queue_fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	arena_init(&h->arena, HUB_ARENA_CHUNK);
	if ((h->by_slot = calloc(SHM_CHANGE_SLOTS, sizeof(*h->by_slot))) ==
	    NULL) {
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	h->handoff_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->commit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->queue_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->epfd < 0 || h->handoff_fd < 0 || h->commit_fd < 0 ||
	    h->queue_fd < 0 ||
	    watch_epoll_add(h->epfd, h->handoff_fd, &tag_handoff) != 0 ||
	    watch_epoll_add(h->epfd, h->commit_fd, &tag_commit) != 0 ||
	    watch_epoll_add(h->epfd, h->queue_fd, &tag_queue) != 0) {
		snprintf(errbuf, errlen, "watch hub: %s", strerror(errno));
		goto fail;
	}
	opt.read_only = 1;	/* the hub only reads */
	if ((h->db = kv_open(h->path, &opt, errbuf, errlen)) == NULL)
		goto fail;
	if (queue_open(h, errbuf, errlen) != 0)
		goto fail;
	if (pthread_create(&h->hub_thread, NULL, hub_main, h) != 0) {
		snprintf(errbuf, errlen, "watch hub: cannot start its thread");
		goto fail;
	}
	/* From now on, commits and enqueues on its database wake it. */
	bell_add(o->bell, h);
	return h;
fail:
	hub_free(h);
	return NULL;
}

void
watch_hub_stop(struct watch_hub *h)
{
	uint64_t	 one = 1;

	if (h == NULL)
		return;
	/* First off the relay: it must not poke a hub being freed. */
	bell_remove(h->bell, h);
	atomic_store(&h->stop, 1);
	if (write(h->handoff_fd, &one, sizeof(one)) < 0)
		log_warn("watch hub: eventfd write");
	pthread_join(h->hub_thread, NULL);
	/* Streams handed over after the hub stopped: close them. */
	while (h->queue != NULL) {
		struct handoff	*q = h->queue;

		h->queue = q->next;
		close(q->stream->fd);
		stream_free(q->stream);
		free(q);
	}
	hub_free(h);
}

/* Queues s (in q, which the hub frees) for the hub thread, and wakes it. */
static void
hand_off(struct watch_hub *h, struct handoff *q, struct watch_stream *s)
{
	uint64_t	 one = 1;

	q->stream = s;
	pthread_mutex_lock(&h->lock);
	q->next = h->queue;
	h->queue = q;
	pthread_mutex_unlock(&h->lock);
	if (write(h->handoff_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("watch hub: eventfd write");
}

enum kv_err
watch_hub_reserve(struct watch_hub *h)
{
	if (atomic_fetch_add(&h->count, 1) >= h->max_streams) {
		atomic_fetch_sub(&h->count, 1);
		return KV_ERR_TOO_MANY_WATCHES;
	}
	if (shm_watch_reserve(h->seg, h->count_slot, h->max_watches) != 0) {
		atomic_fetch_sub(&h->count, 1);
		return KV_ERR_WATCH_LIMIT;
	}
	return KV_OK;
}

void
watch_hub_unreserve(struct watch_hub *h)
{
	count_sub(h);
}

enum kv_err
watch_hub_adopt(struct watch_hub *h, int fd, int request_id,
    const struct kv_bytes *keys, size_t n)
{
	struct watch_stream	*s;
	struct handoff		*q;
	int			 flags;

	s = calloc(1, sizeof(*s) + n * sizeof(s->keys[0]));
	q = malloc(sizeof(*q));
	if (s == NULL || q == NULL)
		goto nomem;
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		/* malloc(0) may be NULL: keep one byte for the empty key. */
		if ((s->keys[i].key = malloc(keys[i].len + 1)) == NULL)
			goto nomem;
		if (keys[i].len > 0)
			memcpy(s->keys[i].key, keys[i].p, keys[i].len);
		s->keys[i].len = keys[i].len;
		s->keys[i].slot = shm_key_slot(keys[i].p, keys[i].len);
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		goto nomem;
	s->fd = fd;
	s->request_id = (uint16_t)request_id;
	hand_off(h, q, s);
	return KV_OK;
nomem:
	count_sub(h);
	if (s != NULL)
		stream_free(s);
	free(q);
	return KV_ERR_NOMEM;
}

size_t
watch_hub_count(struct watch_hub *h)
{
	return atomic_load(&h->count);
}

int
watch_hub_full(struct watch_hub *h)
{
	return atomic_load(&h->count) >= h->max_streams;
}

enum kv_err
watch_hub_adopt_poll(struct watch_hub *h, int fd, int request_id, size_t max,
    int64_t wait_ms, int64_t lease_ms)
{
	struct watch_stream	*s;
	struct handoff		*q;
	int			 flags;

	if (watch_hub_polls_full(h))
		return KV_ERR_TOO_MANY_POLLS;
	atomic_fetch_add(&h->n_polls, 1);
	s = calloc(1, sizeof(*s));
	q = malloc(sizeof(*q));
	if (s == NULL || q == NULL || (s->poll = calloc(1, sizeof(*s->poll))) ==
	    NULL)
		goto nomem;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		goto nomem;
	s->fd = fd;
	s->request_id = (uint16_t)request_id;
	s->poll->stream = s;
	s->poll->max = max;
	s->poll->lease_ms = lease_ms;
	s->poll->until_mono = clock_mono_ms() + wait_ms;
	hand_off(h, q, s);
	return KV_OK;
nomem:
	atomic_fetch_sub(&h->n_polls, 1);
	if (s != NULL)
		stream_free(s);
	free(q);
	return KV_ERR_NOMEM;
}

size_t
watch_hub_poll_count(struct watch_hub *h)
{
	return atomic_load(&h->n_polls);
}

int
watch_hub_polls_full(struct watch_hub *h)
{
	/* Polls and watches share the descriptors the hub may hold. */
	return h->qdb == NULL ||
	    atomic_load(&h->n_polls) + atomic_load(&h->count) >=
	    h->max_streams;
}
