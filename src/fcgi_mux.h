/*
 * fcgi_mux: one FastCGI connection of the multiplexed request model
 * (docs/request-model.md), read and written without ever blocking.
 *
 * Bytes read from the socket go into the connection's input buffer and are
 * parsed record by record (fcgi_mux_input), whatever the pieces they
 * arrived in: a begin-request record starts a request, its parameters are
 * collected until their empty record and decoded into an environment
 * (NAME=VALUE strings, as libfcgi's envp), its body is kept as it arrives,
 * up to a cap decided once the parameters are in (past it the rest is read
 * and dropped), and the empty stdin record makes the request ready. A
 * request whose cap is 0 (it will be refused before its body is read) is
 * ready as soon as its parameters are in.
 * Management records are answered at once (FCGI_GET_VALUES), a second
 * request while one is open is refused (FCGI_CANT_MPX_CONN), an abort ends
 * the request unserved, and a record that breaks the protocol makes the
 * connection unusable (it is closed).
 *
 * Responses are FastCGI records appended to the output buffer
 * (fcgi_mux_stdout, fcgi_mux_end_request) and written as the socket takes
 * them (fcgi_mux_flush). The handlers reach all of this through the
 * struct fcgi_conn embedded here (fc.mux points back), with the same calls
 * as on the one-per-connection model (http.h).
 *
 * The caller passes the clock, and the parser can be driven from a byte
 * array (the unit tests and the fuzz target do); the event loop's epoll
 * descriptor is known here only to take a connection out of it when the
 * connection is handed over (fcgi_mux_detach).
 */
#ifndef DENOKV_FCGI_MUX_H
#define DENOKV_FCGI_MUX_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "fcgi_conn.h"

/* FastCGI 1.0 record types and constants (the specification's names). */
#define FCGI_VERSION_1		1
#define FCGI_HEADER_LEN		8
#define FCGI_MAX_CONTENT	65535
#define FCGI_BEGIN_REQUEST	1
#define FCGI_ABORT_REQUEST	2
#define FCGI_END_REQUEST	3
#define FCGI_PARAMS		4
#define FCGI_STDIN		5
#define FCGI_STDOUT		6
#define FCGI_STDERR		7
#define FCGI_DATA		8
#define FCGI_GET_VALUES		9
#define FCGI_GET_VALUES_RESULT	10
#define FCGI_UNKNOWN_TYPE	11
#define FCGI_RESPONDER		1
#define FCGI_KEEP_CONN		1
#define FCGI_REQUEST_COMPLETE	0
#define FCGI_CANT_MPX_CONN	1
#define FCGI_OVERLOADED		2
#define FCGI_UNKNOWN_ROLE	3

/*
 * The parameters of one request may take this many bytes on the wire:
 * proxies send the request headers there, and nginx refuses headers past
 * a few tens of KiB anyway. More is taken for abuse and closes the
 * connection.
 */
#define FCGI_MUX_MAX_PARAMS	(256 * 1024)
/*
 * Management answers (GET_VALUES, CANT_MPX_CONN) a peer may leave unread
 * before the connection is dropped: a peer that asks without reading
 * must not grow the output buffer for ever.
 */
#define FCGI_MUX_MAX_UNREAD	(64 * 1024)
/*
 * A request answered before its body ended (refused unread, too large)
 * has the rest of its body read and dropped for at most this long, never
 * past its arrival deadline, before the connection closes: closing with
 * unread input would reset the connection and could lose the answer on
 * its way to the proxy.
 */
#define FCGI_MUX_LINGER_MS	500
/*
 * What FCGI_GET_VALUES reports as FCGI_MAX_CONNS and FCGI_MAX_REQS (one
 * request per connection at a time): a figure for proxies that ask, not a
 * limit the worker enforces (it takes what its descriptors allow).
 */
#define FCGI_MUX_MAX_CONNS	1000

/* Where the connection's current request stands. */
enum fcgi_mux_state {
	FCGI_MUX_IDLE = 0,	/* between requests */
	FCGI_MUX_PARAMS,	/* begun: parameters arriving */
	FCGI_MUX_STDIN,		/* parameters in: body arriving */
	FCGI_MUX_READY,		/* complete (or past its deadline): serve it */
};

struct fcgi_mux_conn;

/*
 * Decides, once the parameters are in, how many body bytes the request
 * may bring (0: none is kept, e.g. the request will be refused before
 * its body is read). arg is fcgi_mux_conn_init's.
 */
typedef size_t	(*fcgi_mux_cap_fn)(void *arg, struct fcgi_conn *);

struct fcgi_mux_conn {
	struct fcgi_conn	 fc;		/* what the handlers see; fc.mux == this */
	int			 fd;		/* -1: closed or handed over */
	int			 epfd;		/* the event loop's, or -1 */
	fcgi_mux_cap_fn		 cap_fn;
	void			*cap_arg;
	int			 broken;	/* protocol or I/O error: close now */
	int			 closing;	/* close once the output is out */
	int			 detached;	/* handed to the hub with its request */
	uint16_t		 linger_id;	/* a request answered before its body ended */
	int64_t			 linger_until;	/* its body is drained until then */
	int			 said_goodbye;	/* since the last request (fcgi_mux_goodbye) */
	uint16_t		 last_id;	/* of the last request begun here */
	int64_t			 idle_since;	/* the last request ended then */

	/* input: bytes not yet parsed (a partial record at most) */
	uint8_t			*in;
	size_t			 in_len, in_cap;
	/* output: records not yet written, from out_off */
	uint8_t			*out;
	size_t			 out_off, out_len, out_cap;
	int64_t			 send_by;	/* output due by then; 0: none pending */

	/* the current request */
	enum fcgi_mux_state	 state;
	uint16_t		 id;
	int			 keep;		/* FCGI_KEEP_CONN was set */
	int64_t			 begun_ms;
	int64_t			 arrival_by;	/* parameters and body due by then */
	int			 timed_out;	/* ready because arrival_by passed */
	int			 stdin_done;	/* the empty stdin record came */
	int			 queued;	/* on the loop's ready list */
	uint8_t			*params;	/* raw name-value pairs */
	size_t			 params_len, params_cap;
	char			**env;		/* decoded: NAME=VALUE, NULL-ended */
	uint8_t			*body;		/* NUL-terminated */
	size_t			 body_len, body_alloc;
	size_t			 cap;		/* body bytes this request may keep */
	int			 declared;	/* 1: valid CONTENT_LENGTH, -1: bad */
	size_t			 declared_len;
	int			 too_large;	/* body past cap: dropped as it came */
};

/* Sets up c for socket fd (non-blocking); the limits are in milliseconds. */
void	fcgi_mux_conn_init(struct fcgi_mux_conn *, int fd, int body_ms,
	    int send_ms, fcgi_mux_cap_fn, void *cap_arg);
/* Frees the buffers; closes fd unless it was handed over. */
void	fcgi_mux_conn_fini(struct fcgi_mux_conn *);

/*
 * Reads what the socket has (up to a few buffers' worth) and parses it.
 * 0 on success (the peer may also have closed: then c->broken or
 * c->closing is set), -1 when the connection is to be closed now.
 */
int	fcgi_mux_read(struct fcgi_mux_conn *, int64_t now_ms);

/*
 * Appends len bytes as if read from the socket and parses every complete
 * record: 0, or -1 when the input broke the protocol (c->broken is set).
 */
int	fcgi_mux_input(struct fcgi_mux_conn *, const void *buf, size_t len,
	    int64_t now_ms);

/*
 * Makes a request that ran past its arrival deadline ready (timed out),
 * and ends the draining of a body past its time.
 */
void	fcgi_mux_check_arrival(struct fcgi_mux_conn *, int64_t now_ms);

/* Appends response bytes as FCGI_STDOUT records: 0, or -1 (no memory). */
int	fcgi_mux_stdout(struct fcgi_mux_conn *, const void *buf, size_t len,
	    int64_t now_ms);

/*
 * Ends the current request: the end of its output stream and its
 * end-request record go to the output buffer, and the connection is left
 * idle for the next request, or marked closing when the proxy did not ask
 * to keep it, the body ran out of time, or close_after is set.
 */
void	fcgi_mux_end_request(struct fcgi_mux_conn *, int close_after,
	    int64_t now_ms);

/*
 * Asks the proxy to stop using an idle kept connection without closing
 * it: an empty FCGI_STDERR record of the last request id. nginx drops a
 * cached connection on which anything arrives; if it has just sent a
 * request on it instead, it reads the record as an empty stderr stream
 * before the response, which it ignores. So a stopping worker never
 * closes a connection a request may be travelling on: it waits for the
 * proxy to close it.
 */
void	fcgi_mux_goodbye(struct fcgi_mux_conn *, int64_t now_ms);

/*
 * Writes what the output buffer holds, without blocking: 0 when all of it
 * is out, 1 when some is left (wait for the socket to be writable), -1 on
 * an error (the connection is to be closed).
 */
int	fcgi_mux_flush(struct fcgi_mux_conn *, int64_t now_ms);

/* 1 while the body of an answered request is still being drained. */
int	fcgi_mux_lingering(const struct fcgi_mux_conn *);

/* 1 when output waits for the socket. */
int	fcgi_mux_pending(const struct fcgi_mux_conn *);

/*
 * The body kept for the current request, as http_read_body wants it:
 * KV_OK with *body and *len, or the request's error (too large, timed
 * out, bad or short Content-Length). The body stays owned by c until the
 * request ends.
 */
enum kv_err	fcgi_mux_body(struct fcgi_mux_conn *, size_t cap,
		    uint8_t **body, size_t *len);

/*
 * Hands the connection over with its open request (a watch stream, a
 * parked queue poll): what the output buffer holds (the stream's headers)
 * is written out first, waiting for the socket up to the send deadline,
 * the socket leaves the event loop, and *fd and *request_id are the new
 * owner's. 0, or -1 (the connection stays here, broken).
 */
int	fcgi_mux_detach(struct fcgi_mux_conn *, int *fd, int *request_id);

#endif
