/*
 * worker_loop.c: the multiplexed request model's event loop (see
 * worker_loop.h and docs/request-model.md).
 *
 * One turn: wait for events (no longer than the nearest deadline), accept
 * every waiting connection, read every readable one (each read parses its
 * records: fcgi_mux.c), make the requests past their arrival deadline
 * ready (408), then serve the ready requests one at a time to completion,
 * the atomic writes among them together (worker_serve_ready), and write
 * the responses out as far as the sockets take them. An idle connection
 * costs a descriptor and a small struct: however many connections the
 * proxy keeps open, none of them pins the worker.
 *
 * Stop signals arrive on a signalfd in the same epoll: no signal ever
 * interrupts a request, and no system call per request checks for one.
 * On a stop the listener leaves the loop, requests in progress are
 * served, and the proxy is asked to drop each kept connection once it is
 * idle (fcgi_mux_goodbye), again after each request it still sends on
 * one; the worker exits when the proxy has closed them. One left idle
 * LOOP_DRAIN_MS after its goodbye is closed by the worker.
 *
 * A kept connection left idle past keepalive-timeout gets the same
 * goodbye and is closed LOOP_DRAIN_MS later (conn_goodbye): whoever can
 * reach the socket cannot hold the worker's descriptors for ever with one
 * request per connection and silence after it.
 */
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fcgi_mux.h"
#include "log.h"
#include "worker.h"
#include "worker_loop.h"

/* Events taken from one epoll_wait, and accepts per listener wakeup. */
#define LOOP_EVENTS		64
#define LOOP_ACCEPTS_PER_WAKEUP	64
/*
 * How long a kept connection may stay open after the proxy was asked to
 * drop it (fcgi_mux_goodbye), on a stop or past keepalive-timeout; nginx
 * does at its next look at it, within milliseconds. Past this it is
 * closed all the same.
 */
#define LOOP_DRAIN_MS		3000
/*
 * How soon a write that found SQLite's write lock held by another process
 * is tried again: about SQLite's own first naps, and the loop serves its
 * other connections meanwhile.
 */
#define LOOP_LOCK_RETRY_MS	5

/* A connection in the loop: the FastCGI side, and its place here. */
struct loop_conn {
	struct fcgi_mux_conn	 mc;		/* first: cast from fcgi_mux_conn */
	size_t			 slot;		/* index in loop.conns */
	uint32_t		 events;	/* registered with epoll */
	int64_t			 bye_until;	/* said goodbye: closed by then */
	int64_t			 retry_at;	/* a write waiting for a lock: served again then */
};

struct loop {
	struct server		*srv;
	struct arena		*arena;
	int			 epfd;
	int			 sigfd;
	const char		*allowed;	/* FCGI_WEB_SERVER_ADDRS */
	int64_t			 keepalive_ms;	/* idle kept connections; 0: for ever */
	int			 listening;	/* listener in the epoll set */
	int64_t			 resume_accept_ms;	/* 0: not paused */
	struct accept_log	 alog;
	int			 stop_asked;	/* a stop signal arrived this turn */
	int			 stopping;
	struct loop_conn	**conns;
	size_t			 n, cap;
	struct loop_conn	**ready;	/* requests to serve this turn */
	size_t			 nready, ready_cap;
};

/* epoll tags for the two descriptors that are no connection. */
static char	 tag_listener, tag_signal;

static void
unqueue(struct loop *l, struct loop_conn *lc)
{
	for (size_t i = 0; i < l->nready; i++) {
		if (l->ready[i] == lc) {
			l->ready[i] = l->ready[--l->nready];
			break;
		}
	}
	lc->mc.queued = 0;
}

static void
conn_close(struct loop *l, struct loop_conn *lc)
{
	struct loop_conn	*last;

	if (lc->mc.queued)
		unqueue(l, lc);
	/* Closing the descriptor takes it out of the epoll set too. */
	fcgi_mux_conn_fini(&lc->mc);
	last = l->conns[--l->n];
	last->slot = lc->slot;
	l->conns[lc->slot] = last;
	free(lc);
}

static int
conn_add(struct loop *l, int fd, int64_t now)
{
	struct loop_conn	*lc, **nc;
	struct epoll_event	 ev;
	size_t			 ncap;

	if (l->n == l->cap) {
		ncap = l->cap > 0 ? l->cap * 2 : 64;
		if ((nc = realloc(l->conns, ncap * sizeof(*nc))) == NULL)
			return -1;
		l->conns = nc;
		l->cap = ncap;
	}
	/* Zeroed: every field of the loop's own starts at "none". */
	if ((lc = calloc(1, sizeof(*lc))) == NULL)
		return -1;
	fcgi_mux_conn_init(&lc->mc, fd, l->srv->conf->body_timeout * 1000,
	    l->srv->conf->send_timeout * 1000, worker_body_cap, l->srv);
	lc->mc.epfd = l->epfd;
	/*
	 * Its first request is due as a request's parameters are: a proxy
	 * sends it at once, and a connection that never sends one must not
	 * hold a descriptor for ever (conn_unused_expired).
	 */
	lc->mc.arrival_by = now + lc->mc.fc.body_ms;
	lc->events = EPOLLIN;
	memset(&ev, 0, sizeof(ev));
	ev.events = lc->events;
	ev.data.ptr = lc;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		free(lc);
		return -1;
	}
	lc->slot = l->n;
	l->conns[l->n++] = lc;
	return 0;
}

/* Puts a ready request on this turn's list (once). */
static void
queue_if_ready(struct loop *l, struct loop_conn *lc)
{
	struct loop_conn	**nr;
	size_t			  ncap;

	if (lc->mc.state != FCGI_MUX_READY || lc->mc.queued)
		return;
	if (l->nready == l->ready_cap) {
		ncap = l->ready_cap > 0 ? l->ready_cap * 2 : 64;
		if ((nr = realloc(l->ready, ncap * sizeof(*nr))) == NULL) {
			lc->mc.broken = 1;	/* cannot even queue it */
			return;
		}
		l->ready = nr;
		l->ready_cap = ncap;
	}
	l->ready[l->nready++] = lc;
	lc->mc.queued = 1;
}

/*
 * When the idle-connection rules next act on a connection (-1: never, as
 * things stand): a goodbye said is followed by the close LOOP_DRAIN_MS
 * later; a kept connection idle (between requests, nothing to write) gets
 * its goodbye keepalive_ms after its last request ended. A connection
 * that never began a request is conn_unused_expired's.
 */
static int64_t
conn_idle_due(const struct loop *l, const struct loop_conn *lc)
{
	const struct fcgi_mux_conn	*mc = &lc->mc;

	if (mc->state != FCGI_MUX_IDLE || mc->closing || fcgi_mux_pending(mc) ||
	    fcgi_mux_lingering(mc))
		return -1;
	if (mc->said_goodbye)
		return lc->bye_until;
	if (mc->last_id == 0 || l->keepalive_ms == 0)
		return -1;
	return mc->idle_since + l->keepalive_ms;
}

/*
 * Asks the proxy to drop an idle connection (fcgi_mux_goodbye) rather
 * than closing it under a request that may be on its way, and gives it
 * LOOP_DRAIN_MS to do so. Returns fcgi_mux_flush's answer.
 */
static int
conn_goodbye(struct loop_conn *lc, int64_t now)
{
	fcgi_mux_goodbye(&lc->mc, now);
	lc->bye_until = now + LOOP_DRAIN_MS;
	return lc->mc.broken ? -1 : fcgi_mux_flush(&lc->mc, now);
}

/*
 * After anything happened on a connection: closes it if it is broken,
 * done, or idle while the worker stops; otherwise writes what it can and
 * asks epoll for writability while output is left.
 */
static void
conn_settle(struct loop *l, struct loop_conn *lc, int64_t now)
{
	struct fcgi_mux_conn	*mc = &lc->mc;
	struct epoll_event	 ev;
	int64_t			 due;
	int			 rc = 0;

	if (mc->detached) {
		/* Handed to the hub: the descriptor is no longer ours. */
		if (mc->queued)
			unqueue(l, lc);
		conn_close(l, lc);
		return;
	}
	if (!mc->broken && fcgi_mux_pending(mc))
		rc = fcgi_mux_flush(mc, now);
	if (rc < 0 && mc->fc.expired == FCGI_PHASE_RESPONSE)
		log_warnx("request over its deadline: %s: its response took"
		    " %lld ms (limit %d ms)", mc->fc.label,
		    (long long)(now - mc->fc.response_ms), mc->fc.send_ms);
	/*
	 * Stopping, or idle for too long: an idle kept connection is not
	 * closed (a request may be on its way in it) but the proxy is asked
	 * to close it, after every request it still sends (the goodbye then
	 * leaves with the answer, and nginx does not keep the connection);
	 * one left idle LOOP_DRAIN_MS after its goodbye is closed
	 * (conn_idle_due). Never a fixed time after the stop: a connection
	 * the proxy took again just before its goodbye arrived would be
	 * closed under its next request.
	 */
	if (l->stopping && mc->state == FCGI_MUX_IDLE && !mc->closing &&
	    !mc->said_goodbye)
		rc = conn_goodbye(lc, now);
	if (rc == 0 && (due = conn_idle_due(l, lc)) >= 0 && now >= due) {
		if (mc->said_goodbye)
			mc->closing = 1;
		else
			rc = conn_goodbye(lc, now);
	}
	if (mc->broken || rc < 0 || (rc == 0 && mc->closing &&
	    mc->state == FCGI_MUX_IDLE && !fcgi_mux_lingering(mc))) {
		conn_close(l, lc);
		return;
	}
	/*
	 * Between requests, the next one is not read while the last answer
	 * is still going out: a peer that sends requests without reading
	 * their answers would otherwise grow the output buffer by a response
	 * per request until the send deadline. A proxy reads an answer before
	 * it sends the next request anyway; a body still arriving, or being
	 * drained, is read all the same. A peer that goes away is still
	 * heard (EPOLLHUP).
	 */
	ev.events = rc == 1 ? EPOLLOUT : 0;
	if (rc != 1 || mc->state != FCGI_MUX_IDLE || fcgi_mux_lingering(mc))
		ev.events |= EPOLLIN;
	if (ev.events != lc->events) {
		ev.data.ptr = lc;
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, mc->fd, &ev) != 0) {
			conn_close(l, lc);
			return;
		}
		lc->events = ev.events;
	}
}

static void
listener_set(struct loop *l, int on)
{
	struct epoll_event	 ev;

	if (on == l->listening)
		return;
	memset(&ev, 0, sizeof(ev));
	/* Exclusive: a new connection wakes one worker, not all of them. */
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.ptr = &tag_listener;
	if (on && epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->srv->listen_fd,
	    &ev) != 0) {
		log_warn("epoll_ctl: listener");
		return;
	}
	if (!on)
		(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->srv->listen_fd,
		    NULL);
	l->listening = on;
}

/*
 * Accepts the waiting connections. Out of descriptors (EMFILE, ENFILE)
 * or memory, accepting pauses for a moment instead of spinning: the
 * connection stays queued for a worker that can take it.
 */
static void
accept_many(struct loop *l, int64_t now)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 fd, one = 1;

	for (int i = 0; i < LOOP_ACCEPTS_PER_WAKEUP; i++) {
		sslen = sizeof(ss);
		fd = accept4(l->srv->listen_fd, (struct sockaddr *)&ss, &sslen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0) {
			worker_note_accept_failure(&l->alog, errno);
			listener_set(l, 0);
			l->resume_accept_ms = now + WORKER_ACCEPT_PAUSE_MS;
			return;
		}
		if (!fcgi_peer_allowed(l->allowed, &ss)) {
			log_debug("a connection from an address not in"
			    " FCGI_WEB_SERVER_ADDRS was closed");
			close(fd);
			continue;
		}
		/* No replies to our writes: Nagle would only delay them. */
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
		if (conn_add(l, fd, now) != 0) {
			log_warn("cannot take a connection");
			close(fd);
		}
	}
}

static void
begin_stop(struct loop *l, int64_t now)
{
	l->stopping = 1;
	listener_set(l, 0);
	l->resume_accept_ms = 0;
	/* Idle connections are let go; the others after their request. */
	for (size_t i = l->n; i > 0; i--)
		conn_settle(l, l->conns[i - 1], now);
}

static void
read_signal(struct loop *l, int64_t now)
{
	struct signalfd_siginfo	 si;

	(void)now;
	/* Acted on after this turn's events: they may name connections. */
	while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		l->stop_asked = 1;
}

static void
on_conn_event(struct loop *l, struct loop_conn *lc, uint32_t events,
    int64_t now)
{
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		(void)fcgi_mux_read(&lc->mc, now);
	queue_if_ready(l, lc);
	/* A ready request is settled after it is served. */
	if (!lc->mc.queued)
		conn_settle(l, lc, now);
}

/*
 * 1 when a connection that has not begun a request since it was accepted
 * is past the time its first one was due (conn_add): it is closed, as the
 * earlier model closed a connection whose request did not come. Silent
 * connections would otherwise pile up until the worker is out of
 * descriptors and serves no new connection at all.
 */
static int
conn_unused_expired(const struct loop_conn *lc, int64_t now)
{
	return lc->mc.state == FCGI_MUX_IDLE && lc->mc.last_id == 0 &&
	    !lc->mc.closing && !fcgi_mux_pending(&lc->mc) &&
	    now >= lc->mc.arrival_by;
}

/*
 * Requests past their arrival deadline become ready (and get their 408);
 * output past its send deadline closes its connection. Returns the time
 * to the nearest deadline left (ms, -1: none).
 */
static int
check_deadlines(struct loop *l, int64_t now)
{
	struct loop_conn	*lc;
	int64_t			 next = -1, at, idle_due;

	for (size_t i = l->n; i > 0; i--) {
		lc = l->conns[i - 1];
		fcgi_mux_check_arrival(&lc->mc, now);
		if (lc->mc.state == FCGI_MUX_READY && !lc->mc.broken &&
		    lc->retry_at > now) {
			/* A write waiting for another process's lock. */
			if (next < 0 || lc->retry_at < next)
				next = lc->retry_at;
			continue;
		}
		if (lc->mc.state == FCGI_MUX_READY || lc->mc.broken) {
			queue_if_ready(l, lc);
			if (!lc->mc.queued)
				conn_settle(l, lc, now);
			continue;
		}
		if (conn_unused_expired(lc, now)) {
			lc->mc.closing = 1;
			conn_settle(l, lc, now);
			continue;
		}
		idle_due = conn_idle_due(l, lc);
		if ((fcgi_mux_pending(&lc->mc) && now >= lc->mc.send_by) ||
		    (!fcgi_mux_pending(&lc->mc) && lc->mc.closing &&
		    lc->mc.state == FCGI_MUX_IDLE &&
		    !fcgi_mux_lingering(&lc->mc)) ||
		    (idle_due >= 0 && now >= idle_due)) {
			conn_settle(l, lc, now);
			continue;
		}
		at = -1;
		if (lc->mc.state != FCGI_MUX_IDLE || (lc->mc.last_id == 0 &&
		    !lc->mc.closing && !fcgi_mux_pending(&lc->mc)))
			at = lc->mc.arrival_by;
		else if (fcgi_mux_lingering(&lc->mc))
			at = lc->mc.linger_until;
		if (idle_due >= 0 && (at < 0 || idle_due < at))
			at = idle_due;
		if (fcgi_mux_pending(&lc->mc) &&
		    (at < 0 || lc->mc.send_by < at))
			at = lc->mc.send_by;
		if (at >= 0 && (next < 0 || at < next))
			next = at;
	}
	if (l->resume_accept_ms != 0 &&
	    (next < 0 || l->resume_accept_ms < next))
		next = l->resume_accept_ms;
	if (next < 0)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

/*
 * A request is answered: its end goes out at once (the proxy passes the
 * answer on while the worker serves the next), and the connection is
 * settled. The last use of the connection in this turn.
 */
static void
request_done(void *arg, struct fcgi_conn *fc)
{
	struct loop		*l = arg;
	struct loop_conn	*lc = (struct loop_conn *)fc->mux;
	int64_t			 now = clock_mono_ms();

	if (fc->retry) {
		/* Still ready: check_deadlines queues it again then. */
		fc->retry = 0;
		lc->retry_at = now + LOOP_LOCK_RETRY_MS;
		return;
	}
	fc->locked_since_ms = 0;
	if (!lc->mc.detached)
		fcgi_mux_end_request(&lc->mc, 0, now);
	conn_settle(l, lc, now);
}

/* Serves this turn's ready requests; each connection is settled when done. */
static void
serve_ready(struct loop *l)
{
	struct fcgi_conn	*batch[WORKER_MAX_BATCH];
	struct loop_conn	*lcs[WORKER_MAX_BATCH];
	size_t			 n;

	while (l->nready > 0) {
		n = 0;
		while (l->nready > 0 && n < WORKER_MAX_BATCH) {
			lcs[n] = l->ready[--l->nready];
			lcs[n]->mc.queued = 0;
			if (lcs[n]->mc.state == FCGI_MUX_READY &&
			    !lcs[n]->mc.broken) {
				batch[n] = &lcs[n]->mc.fc;
				n++;
			} else
				conn_settle(l, lcs[n], clock_mono_ms());
		}
		if (n == 0)
			break;
		worker_serve_ready(l->srv, batch, n, l->arena, request_done,
		    l);
		arena_reset(l->arena);
	}
}

static int
loop_init(struct loop *l, struct server *s, const sigset_t *stopset,
    struct arena *a)
{
	struct epoll_event	 ev;

	memset(l, 0, sizeof(*l));
	l->srv = s;
	l->arena = a;
	l->sigfd = -1;
	l->keepalive_ms = (int64_t)s->conf->keepalive_timeout * 1000;
	l->allowed = getenv("FCGI_WEB_SERVER_ADDRS");
	if (l->allowed != NULL && *l->allowed == '\0')
		l->allowed = NULL;
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		log_warn("epoll_create1");
		return -1;
	}
	/* The stop signals are blocked: they arrive here, never as interrupts. */
	if ((l->sigfd = signalfd(-1, stopset, SFD_NONBLOCK | SFD_CLOEXEC)) <
	    0) {
		log_warn("signalfd");
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &tag_signal;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->sigfd, &ev) != 0) {
		log_warn("epoll_ctl: signalfd");
		return -1;
	}
	listener_set(l, 1);
	return l->listening ? 0 : -1;
}

static void
loop_fini(struct loop *l)
{
	while (l->n > 0)
		conn_close(l, l->conns[l->n - 1]);
	free(l->conns);
	free(l->ready);
	if (l->sigfd >= 0)
		close(l->sigfd);
	if (l->epfd >= 0)
		close(l->epfd);
}

int
worker_loop_run(struct server *s, const sigset_t *stopset, struct arena *a)
{
	struct epoll_event	 evs[LOOP_EVENTS];
	struct loop		 l;
	int64_t			 now;
	int			 nev, timeout;

	if (loop_init(&l, s, stopset, a) != 0) {
		loop_fini(&l);
		return 1;
	}
	timeout = -1;
	while (!l.stopping || l.n > 0) {
		nev = epoll_wait(l.epfd, evs, LOOP_EVENTS, timeout);
		if (nev < 0 && errno != EINTR) {
			log_warn("epoll_wait");
			break;
		}
		now = clock_mono_ms();
		for (int i = 0; i < nev; i++) {
			if (evs[i].data.ptr == &tag_signal)
				read_signal(&l, now);
			else if (evs[i].data.ptr == &tag_listener) {
				if (!l.stopping)
					accept_many(&l, now);
			} else
				on_conn_event(&l, evs[i].data.ptr,
				    evs[i].events, now);
		}
		if (l.stop_asked && !l.stopping)
			begin_stop(&l, now);
		if (l.resume_accept_ms != 0 && now >= l.resume_accept_ms) {
			l.resume_accept_ms = 0;
			listener_set(&l, 1);
		}
		(void)check_deadlines(&l, now);
		serve_ready(&l);
		timeout = check_deadlines(&l, clock_mono_ms());
		if (l.nready > 0)
			timeout = 0;	/* made ready just now: serve next turn */
	}
	loop_fini(&l);
	return 0;
}
