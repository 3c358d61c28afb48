/*
 * fcgi_conn: one FastCGI connection from the proxy, with a deadline on
 * every read and write.
 *
 * libfcgi reads and writes with plain blocking calls and no time limit: a
 * proxy that streams a slow client's body (caddy without request
 * buffering, nginx with fastcgi_request_buffering off) would hold a worker
 * for as long as the client likes, and a handful of such clients would
 * hold them all. Here every blocking call on the socket runs under the
 * time left to its phase:
 *
 *   - arrival: the parameters and the body must be in within body_ms of
 *     the accept (SO_RCVTIMEO is set to the time left before each read);
 *   - response: writing one response may take send_ms (SO_SNDTIMEO, the
 *     same way);
 *   - finish: a body left unread is drained only briefly, never for as
 *     long as the client keeps sending (libfcgi's own close would).
 *
 * The worker accepts connections itself and hands libfcgi an open socket,
 * so the parameters are read under the deadline too and an accept error
 * (EMFILE) reaches the worker as it is. libfcgi's one accept-time rule is
 * kept: with FCGI_WEB_SERVER_ADDRS set (comma-separated IPv4 addresses),
 * a TCP connection from any other address is closed unread.
 */
#ifndef DENOKV_FCGI_CONN_H
#define DENOKV_FCGI_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <fcgiapp.h>

/* Which deadline ran out. */
enum fcgi_phase {
	FCGI_PHASE_NONE = 0,
	FCGI_PHASE_ARRIVAL,	/* parameters or body */
	FCGI_PHASE_RESPONSE,
};

/* Result of a read or write. */
enum fcgi_io {
	FCGI_IO_OK = 0,
	FCGI_IO_EOF,		/* read: the body ended before len bytes */
	FCGI_IO_TIMEOUT,	/* the phase's deadline ran out */
	FCGI_IO_ERROR,		/* the proxy went away or broke the protocol */
};

struct fcgi_mux_conn;

/*
 * A request's connection. On the one-per-connection model it is libfcgi's
 * (req); on the multiplexed model mux is set and req holds only the
 * parameters (req.envp) and the request id: http.c reads and writes
 * through mux then (fcgi_mux.h).
 */
struct fcgi_conn {
	FCGX_Request	 req;		/* libfcgi's request; req.envp etc. */
	int		 body_ms;	/* limits, from the configuration */
	int		 send_ms;
	int64_t		 accepted_ms;	/* monotonic clock at accept */
	int64_t		 arrival_by;	/* parameters and body due by then */
	int64_t		 response_ms;	/* monotonic clock at the last response's start */
	const char	*allowed;	/* FCGI_WEB_SERVER_ADDRS, or NULL */
	enum fcgi_phase	 expired;	/* the first deadline that ran out */
	struct fcgi_mux_conn *mux;	/* NULL: the one-per-connection model */
	/* multiplexed: the last request, for a log line once its response fails */
	char		 label[160];
	/*
	 * multiplexed: when the request's write first found SQLite's write
	 * lock held by another process (0: never), and whether it is to be
	 * tried again later instead of being answered now.
	 */
	int64_t		 locked_since_ms;
	int		 retry;
};

/*
 * Prepares c for connections (FCGX_Init must have been called) and reads
 * FCGI_WEB_SERVER_ADDRS: 0 or -1.
 */
int		fcgi_conn_init(struct fcgi_conn *, int body_ms, int send_ms);
void		fcgi_conn_fini(struct fcgi_conn *);

/*
 * Accepts one connection from the non-blocking listener and reads its
 * FastCGI parameters. 0 on success; otherwise -errno of accept(2) (EAGAIN
 * when another worker took the connection, EMFILE when out of descriptors),
 * -EPERM when FCGI_WEB_SERVER_ADDRS does not list the peer, or -EPROTO
 * when the connection failed or timed out before its parameters arrived
 * (in both cases it is closed).
 */
int		fcgi_conn_accept(struct fcgi_conn *, int listen_fd);

/*
 * libfcgi's accept-time rule: 1 if a peer at ss may connect (always over
 * a unix socket or IPv6; over IPv4 when list, FCGI_WEB_SERVER_ADDRS, is
 * NULL or names its address).
 */
struct sockaddr_storage;
int		fcgi_peer_allowed(const char *list,
		    const struct sockaddr_storage *);

/*
 * Reads up to len body bytes into buf under the arrival deadline; *got
 * says how many arrived. FCGI_IO_OK: all len bytes; FCGI_IO_EOF: the body
 * ended first.
 */
enum fcgi_io	fcgi_conn_read(struct fcgi_conn *, void *buf, size_t len,
		    size_t *got);

/* Reads and drops the rest of the body (at most max bytes). */
enum fcgi_io	fcgi_conn_discard(struct fcgi_conn *, size_t max);

/* Starts a response: its deadline is send_ms from now. */
int64_t		fcgi_conn_send_deadline(struct fcgi_conn *);

/*
 * Writes len bytes of the response by the deadline `by` (buffered: the
 * last bytes go out with fcgi_conn_flush).
 */
enum fcgi_io	fcgi_conn_write(struct fcgi_conn *, const void *buf,
		    size_t len, int64_t by);
enum fcgi_io	fcgi_conn_flush(struct fcgi_conn *, int64_t by);

/*
 * Ends the request: the end-of-request record goes out under the send
 * limit, an unread body is drained for a moment at most, and the socket
 * is closed (also when the proxy asked to keep it: waiting on a kept
 * connection for the next request would pin this worker).
 */
void		fcgi_conn_finish(struct fcgi_conn *);

#endif
