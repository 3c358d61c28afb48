/*
 * test_fcgi_conn.c: the deadlines of fcgi_conn over a real unix socket,
 * with this process playing the web server: a body that stops arriving
 * times out by the arrival deadline (not before, not long after); a
 * response nobody reads times out by the send limit; a connection that
 * sends its parameters too slowly is dropped; and finishing a request
 * whose body keeps trickling in takes half a second, not as long as the
 * bytes keep coming. Also: FCGI_WEB_SERVER_ADDRS still limits who may
 * connect over TCP, as it did when libfcgi accepted. Bounds are generous:
 * only the order of magnitude is asserted.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "clock.h"
#include "fcgi_conn.h"
#include "http.h"
#include "testhelp.h"

#define BODY_MS	300
#define SEND_MS	300

static char	 sock_path[108];

static int
listener(void)
{
	struct sockaddr_un	 sa = { .sun_family = AF_UNIX };
	int			 fd;

	snprintf(sock_path, sizeof(sock_path), "/tmp/test_fcgi_conn.%ld.sock",
	    (long)getpid());
	unlink(sock_path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 8) != 0) {
		perror("listener");
		exit(1);
	}
	return fd;
}

static int
client(void)
{
	struct sockaddr_un	 sa = { .sun_family = AF_UNIX };
	int			 fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("client");
		exit(1);
	}
	return fd;
}

/* BEGIN_REQUEST (responder) and the parameters, given as name, value, ... */
static void
begin(int fd, const char *const *nv)
{
	unsigned char	 b[8] = { 0, 1 }, p[1024];
	size_t		 n = 0, kl, vl;

	t_fcgi_record(fd, 1, b, sizeof(b));
	for (; nv[0] != NULL; nv += 2) {
		kl = strlen(nv[0]);
		vl = strlen(nv[1]);
		p[n++] = (unsigned char)kl;
		p[n++] = (unsigned char)vl;
		memcpy(p + n, nv[0], kl);
		memcpy(p + n + kl, nv[1], vl);
		n += kl + vl;
	}
	t_fcgi_record(fd, 4, p, n);
	t_fcgi_record(fd, 4, NULL, 0);
}

static const char *const params[] = {
	"REQUEST_METHOD", "POST", "REQUEST_URI", "/", "CONTENT_LENGTH", "1000",
	NULL, NULL
};

static void
test_body_deadline(int lfd)
{
	struct fcgi_conn	 c;
	char			 buf[1000];
	size_t			 got = 0;
	int64_t			 t0;
	enum fcgi_io		 io;
	int			 cfd = client();

	begin(cfd, params);
	t_fcgi_record(cfd, 5, "0123456789", 10);
	T_EQ(fcgi_conn_init(&c, BODY_MS, SEND_MS), 0, "fcgi_conn_init");
	T_EQ(fcgi_conn_accept(&c, lfd), 0, "a connection with its parameters"
	    " is accepted");
	t0 = clock_mono_ms();
	io = fcgi_conn_read(&c, buf, sizeof(buf), &got);
	t0 = clock_mono_ms() - t0;
	T_EQ(io, FCGI_IO_TIMEOUT, "a body that stops arriving times out");
	T_EQ(got, 10, "with the 10 bytes that did arrive");
	T_OK(t0 >= BODY_MS - 50 && t0 < BODY_MS + 2000, "by the arrival"
	    " deadline (%lld ms, limit %d ms)", (long long)t0, BODY_MS);
	T_EQ(c.expired, FCGI_PHASE_ARRIVAL, "the arrival phase is marked"
	    " expired");
	T_EQ(http_reply_error(&c, KV_ERR_BODY_TIMEOUT), 0, "the 408 still"
	    " goes out");
	t0 = clock_mono_ms();
	fcgi_conn_finish(&c);
	t0 = clock_mono_ms() - t0;
	T_OK(t0 < 1000, "finishing takes no drain (%lld ms)", (long long)t0);
	T_OK(c.req.ipcFd < 0, "the connection is closed");
	fcgi_conn_fini(&c);
	close(cfd);
}

static void
test_send_deadline(int lfd)
{
	struct fcgi_conn	 c;
	static char		 big[4 * 1024 * 1024];
	int64_t			 t0;
	int			 rc, cfd = client();

	begin(cfd, params);
	t_fcgi_record(cfd, 5, NULL, 0);
	T_EQ(fcgi_conn_init(&c, BODY_MS, SEND_MS), 0, "fcgi_conn_init");
	T_EQ(fcgi_conn_accept(&c, lfd), 0, "accepted");
	/* The client reads nothing: the writes block once buffers fill. */
	t0 = clock_mono_ms();
	rc = http_reply(&c, 200, "application/octet-stream", "", big,
	    sizeof(big));
	t0 = clock_mono_ms() - t0;
	T_EQ(rc, -1, "a 4 MiB response nobody reads fails");
	T_OK(t0 >= SEND_MS - 50 && t0 < SEND_MS + 2000, "by the send limit"
	    " (%lld ms, limit %d ms)", (long long)t0, SEND_MS);
	T_EQ(c.expired, FCGI_PHASE_RESPONSE, "the response phase is marked"
	    " expired");
	t0 = clock_mono_ms();
	fcgi_conn_finish(&c);
	t0 = clock_mono_ms() - t0;
	T_OK(t0 < 200, "finishing does not wait out another send limit"
	    " (%lld ms)", (long long)t0);
	fcgi_conn_fini(&c);
	close(cfd);
}

static void
test_slow_parameters(int lfd)
{
	struct fcgi_conn	 c;
	unsigned char		 b[8] = { 0, 1 };
	int64_t			 t0;
	int			 rc, cfd = client();

	/* A begin record and then nothing. */
	t_fcgi_record(cfd, 1, b, sizeof(b));
	T_EQ(fcgi_conn_init(&c, BODY_MS, SEND_MS), 0, "fcgi_conn_init");
	t0 = clock_mono_ms();
	rc = fcgi_conn_accept(&c, lfd);
	t0 = clock_mono_ms() - t0;
	T_EQ(rc, -EPROTO, "parameters that do not arrive: the connection is"
	    " dropped");
	T_OK(t0 < BODY_MS + 2000, "by the arrival deadline (%lld ms)",
	    (long long)t0);
	T_OK(c.req.ipcFd < 0, "and closed");
	fcgi_conn_fini(&c);
	close(cfd);
}

/* Sends a byte of body every 100 ms until told to stop. */
struct trickle {
	int		 fd;
	volatile int	 stop;
};

static void *
trickle(void *arg)
{
	struct trickle	*t = arg;
	unsigned char	 h[9] = { 1, 5, 0, 1, 0, 1, 0, 0, 'x' };

	while (!t->stop) {
		if (write(t->fd, h, sizeof(h)) != sizeof(h))
			break;
		usleep(100 * 1000);
	}
	return NULL;
}

static void
test_trickling_body_linger(int lfd)
{
	struct fcgi_conn	 c;
	struct trickle		 t;
	pthread_t		 th;
	int64_t			 t0;
	int			 cfd = client();

	begin(cfd, params);
	/* A long arrival limit: only the linger bound can end the drain. */
	T_EQ(fcgi_conn_init(&c, 60 * 1000, SEND_MS), 0, "fcgi_conn_init");
	T_EQ(fcgi_conn_accept(&c, lfd), 0, "accepted");
	t.fd = cfd;
	t.stop = 0;
	pthread_create(&th, NULL, trickle, &t);
	/* Refused without reading the body, as a 401 would be. */
	T_EQ(http_reply_error(&c, KV_ERR_AUTH_INVALID), 0, "the refusal goes"
	    " out");
	t0 = clock_mono_ms();
	fcgi_conn_finish(&c);
	t0 = clock_mono_ms() - t0;
	T_OK(t0 >= 400 && t0 < 3000, "a body that keeps trickling in is"
	    " drained for half a second, then the connection closed"
	    " (%lld ms)", (long long)t0);
	t.stop = 1;
	pthread_join(th, NULL);
	fcgi_conn_fini(&c);
	close(cfd);
}

/* A TCP listener on 127.0.0.1 and a connected client. */
static void
tcp_pair(int *lfd, int *cfd)
{
	struct sockaddr_in	 sa = { .sin_family = AF_INET };
	socklen_t		 len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((*lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(*lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(*lfd, 8) != 0 ||
	    getsockname(*lfd, (struct sockaddr *)&sa, &len) != 0 ||
	    (*cfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(*cfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("tcp_pair");
		exit(1);
	}
}

static void
test_web_server_addrs(void)
{
	struct fcgi_conn	 c;
	char			 b;
	int			 lfd, cfd;

	setenv("FCGI_WEB_SERVER_ADDRS", "10.1.2.3", 1);
	T_EQ(fcgi_conn_init(&c, BODY_MS, SEND_MS), 0, "fcgi_conn_init");
	tcp_pair(&lfd, &cfd);
	begin(cfd, params);
	T_EQ(fcgi_conn_accept(&c, lfd), -EPERM, "FCGI_WEB_SERVER_ADDRS="
	    "10.1.2.3: a connection from 127.0.0.1 is refused");
	/* Closed with the parameters unread: a reset, or an end of file. */
	T_OK(read(cfd, &b, 1) <= 0, "and closed unread");
	close(cfd);
	close(lfd);
	fcgi_conn_fini(&c);

	setenv("FCGI_WEB_SERVER_ADDRS", "10.1.2.3,127.0.0.1", 1);
	T_EQ(fcgi_conn_init(&c, BODY_MS, SEND_MS), 0, "fcgi_conn_init");
	tcp_pair(&lfd, &cfd);
	begin(cfd, params);
	t_fcgi_record(cfd, 5, NULL, 0);
	T_EQ(fcgi_conn_accept(&c, lfd), 0, "FCGI_WEB_SERVER_ADDRS="
	    "10.1.2.3,127.0.0.1: the connection is served");
	fcgi_conn_finish(&c);
	fcgi_conn_fini(&c);
	close(cfd);
	close(lfd);
	unsetenv("FCGI_WEB_SERVER_ADDRS");
}

int
main(void)
{
	int	 lfd;

	signal(SIGPIPE, SIG_IGN);
	if (FCGX_Init() != 0) {
		printf("Bail out! FCGX_Init failed\n");
		return 1;
	}
	lfd = listener();
	test_body_deadline(lfd);
	test_send_deadline(lfd);
	test_slow_parameters(lfd);
	test_trickling_body_linger(lfd);
	test_web_server_addrs();
	close(lfd);
	unlink(sock_path);
	return t_done();
}
