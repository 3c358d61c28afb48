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
 *   fcgi_trivial -s /path/to.sock [-n processes] [-b backlog]
 *
 * SIGTERM or SIGINT stops the children and removes the socket.
 */
#define _GNU_SOURCE
#include <errno.h>
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
	    "usage: fcgi_trivial -s socket-path [-n processes] [-b backlog]\n");
	exit(2);
}

static int
serve(int sock)
{
	FCGX_Request req;
	char buf[16384];

	if (FCGX_InitRequest(&req, sock, 0) != 0) {
		fprintf(stderr, "fcgi_trivial: FCGX_InitRequest failed\n");
		return 1;
	}
	while (FCGX_Accept_r(&req) >= 0) {
		/* Read and discard the body, up to the end of FCGI_STDIN. */
		while (FCGX_GetStr(buf, sizeof buf, req.in) > 0)
			;
		FCGX_PutStr(head, (int)sizeof head - 1, req.out);
		FCGX_PutStr(body, (int)sizeof body, req.out);
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

	while ((c = getopt(argc, argv, "s:n:b:h")) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'n': nproc = atoi(optarg); break;
		case 'b': backlog = atoi(optarg); break;
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
