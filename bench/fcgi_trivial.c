/*
 * fcgi_trivial: the transport ceiling for denokv-fcgi.
 *
 * A libfcgi responder (FCGX_* API) that does the least a KV Connect server
 * could do per request: accept the FastCGI connection, read and discard
 * the whole request body, and answer 200 with a tiny protobuf body (an
 * AtomicWriteOutput with status AW_SUCCESS and a 10-byte versionstamp).
 * Whatever denokv-fcgi reaches behind the same nginx is measured against
 * this.
 *
 * It pre-forks N processes that all accept on one unix socket, the way a
 * multi-process FastCGI server does.
 *
 * With -k it answers well enough for a real KV client (the Deno CLI) to run
 * against it, still without any storage, so that client workloads have a
 * transport ceiling too: a POST whose path ends in /snapshot_read gets one
 * fixed entry (key ["t"], value 0n, V8-encoded) for every range of the
 * request, one ending in /atomic_write the success body above, and any
 * other POST a metadata exchange answer whose data path is that path
 * followed by /v2. The answers are the same whatever the request asks for,
 * so a client must not check what it reads back.
 *
 *   fcgi_trivial -s /path/to.sock [-n processes] [-b backlog] [-k]
 *
 * SIGTERM or SIGINT stops the children and removes the socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcgiapp.h>

/* AtomicWriteOutput { status: AW_SUCCESS, versionstamp: 00..01 (10 bytes) } */
static const char body[] = {
	0x08, 0x01,
	0x12, 0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
};

static const char head[] =
	"Status: 200 OK\r\n"
	"Content-Type: application/x-protobuf\r\n"
	"Content-Length: 14\r\n"
	"\r\n";

/* -k: SnapshotReadOutput pieces. One range holding one KvEntry
 * { key ["t"], value V8 0n, encoding VE_V8, versionstamp 00..01 }, repeated
 * per requested range, then read_is_strongly_consistent and SR_SUCCESS. */
static const char read_range[] = {
	0x0a, 0x1b,                             /* ranges: 27 bytes */
	0x0a, 0x19,                             /* values: 25 bytes */
	0x0a, 0x03, 0x02, 't', 0x00,            /* key ["t"] */
	0x12, 0x04, (char)0xff, 0x0f, 0x5a, 0x00, /* value: V8 0n */
	0x18, 0x01,                             /* encoding VE_V8 */
	0x22, 0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, /* versionstamp */
};
static const char read_tail[] = { 0x20, 0x01, 0x40, 0x01 };

static int kv_mode;

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fcgi_trivial -s socket-path [-n processes] [-b backlog] [-k]\n");
	exit(2);
}

static int
ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Number of top-level field-1 (ranges) entries of a SnapshotRead; the body
 * is trusted enough for that (a malformed one ends the count early). */
static int
count_ranges(const unsigned char *p, size_t n)
{
	size_t i = 0;
	int count = 0;

	while (i < n) {
		uint64_t key = 0, len = 0;
		int shift = 0;

		while (i < n && shift < 64) {
			key |= (uint64_t)(p[i] & 0x7f) << shift;
			shift += 7;
			if ((p[i++] & 0x80) == 0)
				break;
		}
		if ((key & 7) != 2)
			break;
		shift = 0;
		while (i < n && shift < 64) {
			len |= (uint64_t)(p[i] & 0x7f) << shift;
			shift += 7;
			if ((p[i++] & 0x80) == 0)
				break;
		}
		if (len > n - i)
			break;
		if ((key >> 3) == 1)
			count++;
		i += len;
	}
	return count;
}

/* -k: answer as a KV Connect server without storage would (see the top). */
static void
answer_kv(FCGX_Request *req, const unsigned char *in, size_t inlen)
{
	const char *uri = FCGX_GetParam("DOCUMENT_URI", req->envp);
	size_t n;
	int i, ranges;

	if (uri == NULL)
		uri = "/";
	n = strcspn(uri, "?");
	if (ends_with(uri, n, "/snapshot_read")) {
		ranges = count_ranges(in, inlen);
		FCGX_FPrintF(req->out, "Status: 200 OK\r\n"
		    "Content-Type: application/x-protobuf\r\n"
		    "Content-Length: %d\r\n\r\n",
		    ranges * (int)sizeof read_range + (int)sizeof read_tail);
		for (i = 0; i < ranges; i++)
			FCGX_PutStr(read_range, (int)sizeof read_range, req->out);
		FCGX_PutStr(read_tail, (int)sizeof read_tail, req->out);
	} else if (ends_with(uri, n, "/atomic_write")) {
		FCGX_PutStr(head, (int)sizeof head - 1, req->out);
		FCGX_PutStr(body, (int)sizeof body, req->out);
	} else if (ends_with(uri, n, "/watch") || strstr(uri, "/v2/") != NULL) {
		FCGX_FPrintF(req->out, "Status: 404 Not Found\r\n"
		    "Content-Type: text/plain\r\n\r\n"
		    "fcgi_trivial answers only snapshot_read and atomic_write\n");
	} else {
		while (n > 0 && uri[n - 1] == '/')
			n--;
		FCGX_FPrintF(req->out, "Status: 200 OK\r\n"
		    "Content-Type: application/json\r\n\r\n"
		    "{\"version\":3,"
		    "\"databaseId\":\"00000000-0000-0000-0000-000000000001\","
		    "\"endpoints\":[{\"url\":\"%.*s/v2\","
		    "\"consistency\":\"strong\"}],"
		    "\"token\":\"fcgi-trivial-token\","
		    "\"expiresAt\":\"2999-01-01T00:00:00Z\"}", (int)n, uri);
	}
}

static int
serve(int sock)
{
	FCGX_Request req;
	static unsigned char buf[2 << 20];
	char scratch[16384];
	size_t len;
	int got;

	if (FCGX_InitRequest(&req, sock, 0) != 0) {
		fprintf(stderr, "fcgi_trivial: FCGX_InitRequest failed\n");
		return 1;
	}
	while (FCGX_Accept_r(&req) >= 0) {
		/* Read the body up to the end of FCGI_STDIN; keep what fits. */
		len = 0;
		while ((got = FCGX_GetStr((char *)buf + len,
		    (int)(len < sizeof buf ? sizeof buf - len : 0), req.in)) > 0)
			len += (size_t)got;
		while (len == sizeof buf &&
		    FCGX_GetStr(scratch, (int)sizeof scratch, req.in) > 0)
			;
		if (kv_mode) {
			answer_kv(&req, buf, len);
		} else {
			FCGX_PutStr(head, (int)sizeof head - 1, req.out);
			FCGX_PutStr(body, (int)sizeof body, req.out);
		}
		FCGX_Finish_r(&req);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	int nproc = 1, backlog = 1024, sock, c, i;
	pid_t *kids;
	struct sigaction sa;

	while ((c = getopt(argc, argv, "s:n:b:kh")) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'n': nproc = atoi(optarg); break;
		case 'b': backlog = atoi(optarg); break;
		case 'k': kv_mode = 1; break;
		default: usage();
		}
	}
	if (path == NULL || nproc < 1 || nproc > 1024 || backlog < 1)
		usage();

	signal(SIGPIPE, SIG_IGN);
	if (FCGX_Init() != 0) {
		fprintf(stderr, "fcgi_trivial: FCGX_Init failed\n");
		return 1;
	}
	unlink(path);
	sock = FCGX_OpenSocket(path, backlog);
	if (sock < 0) {
		fprintf(stderr, "fcgi_trivial: cannot listen on %s\n", path);
		return 1;
	}
	/* nginx workers may run as another user. */
	chmod(path, 0666);

	kids = calloc((size_t)nproc, sizeof *kids);
	if (kids == NULL)
		return 1;
	for (i = 0; i < nproc; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fcgi_trivial: fork");
			break;
		}
		if (pid == 0) {
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			_exit(serve(sock));
		}
		kids[i] = pid;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fprintf(stderr, "fcgi_trivial: %d process(es) on %s\n", nproc, path);

	/* Wait until told to stop or until every child is gone. */
	for (;;) {
		pid_t pid = wait(NULL);
		if (pid < 0 && errno == ECHILD)
			break;
		if (stopping)
			break;
		if (pid > 0)
			fprintf(stderr, "fcgi_trivial: child %d exited\n",
			    (int)pid);
	}
	for (i = 0; i < nproc; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGTERM);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	unlink(path);
	return 0;
}
