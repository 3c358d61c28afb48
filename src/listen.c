/*
 * listen.c: the listening socket (see listen.h). The sockets are made here
 * rather than with FCGX_OpenSocket, which exits on a failed bind, takes
 * its mode from the umask and cannot parse IPv6 addresses.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "listen.h"
#include "privdrop.h"

#define LISTEN_BACKLOG	1024

static char	listen_desc[512];
static char	listen_path[PATH_MAX];

/* Resolves --socket-user and --socket-group; -1 means "leave as is". */
static int
socket_owner(const struct conf *c, uid_t *uid, gid_t *gid, char *errbuf,
    size_t errlen)
{
	gid_t	 ugid;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (c->socket_user != NULL &&
	    privdrop_lookup_user(c->socket_user, uid, &ugid) != 0) {
		snprintf(errbuf, errlen, "socket-user: unknown user \"%s\"",
		    c->socket_user);
		return -1;
	}
	if (c->socket_group != NULL &&
	    privdrop_lookup_group(c->socket_group, gid) != 0) {
		snprintf(errbuf, errlen, "socket-group: unknown group \"%s\"",
		    c->socket_group);
		return -1;
	}
	return 0;
}

/*
 * Gives the socket file we just bound its owner. Started as root, in a
 * directory the service user may be able to write, the name could be
 * swapped for a symlink or another file between bind() and here: so the
 * file is opened without following a symlink (O_PATH | O_NOFOLLOW),
 * checked to be a socket of ours with one link, and changed through that
 * descriptor, never through the path again.
 */
static int
chown_socket(const char *path, uid_t uid, gid_t gid, char *errbuf,
    size_t errlen)
{
	struct stat	 sb;
	int		 fd, rc = -1;

	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return 0;
	if ((fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		snprintf(errbuf, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		snprintf(errbuf, errlen, "stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISSOCK(sb.st_mode) || sb.st_uid != geteuid() ||
	    sb.st_nlink != 1) {
		snprintf(errbuf, errlen, "%s was replaced by another file"
		    " while the server was starting; refusing to change its"
		    " owner", path);
		goto out;
	}
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) != 0) {
		snprintf(errbuf, errlen, "chown %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/*
 * A socket file left at path: 1 if a server still listens on it, 0 if it
 * is stale (nobody listening), -1 on another error (errno set). The probe
 * does not block: a listener that has stopped accepting (a hung server,
 * its backlog full) would otherwise hold start-up for ever, and it is
 * still a listener (EAGAIN).
 */
static int
socket_in_use(const struct sockaddr_un *sun)
{
	int	 fd, rc, saved;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	saved = errno;
	close(fd);
	if (rc == 0 || saved == EAGAIN)
		return 1;
	errno = saved;
	return saved == ECONNREFUSED || saved == ENOENT ? 0 : -1;
}

/*
 * Replaces a stale socket left by an earlier run, but never another kind
 * of file (lstat and unlink act on the name itself, never on what a
 * symlink points to) and never a socket a running server accepts on.
 */
static int
remove_stale_socket(const struct sockaddr_un *sun, char *errbuf,
    size_t errlen)
{
	const char	*path = sun->sun_path;
	struct stat	 sb;

	if (lstat(path, &sb) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(errbuf, errlen, "%s exists and is not a socket", path);
		return -1;
	}
	switch (socket_in_use(sun)) {
	case 1:
		snprintf(errbuf, errlen, "%s is in use: another server is"
		    " listening on it", path);
		return -1;
	case -1:
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(errbuf, errlen, "unlink %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
listen_unix(const char *path, const struct conf *c, char *errbuf,
    size_t errlen)
{
	struct sockaddr_un	 sun;
	mode_t			 old_umask;
	uid_t			 uid;
	gid_t			 gid;
	int			 fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(errbuf, errlen, "socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if (socket_owner(c, &uid, &gid, errbuf, errlen) != 0 ||
	    remove_stale_socket(&sun, errbuf, errlen) != 0)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(errbuf, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/*
	 * The file is born with its final mode: a chmod by name afterwards
	 * could be redirected (symlink swap) or leave a moment in which the
	 * socket is open to more users than asked for.
	 */
	old_umask = umask(~c->socket_mode & 0777);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_umask);
	if (rc != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(errbuf, errlen, "listen on %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (chown_socket(path, uid, gid, errbuf, errlen) != 0) {
		close(fd);
		return -1;
	}
	snprintf(listen_desc, sizeof(listen_desc), "unix:%s", path);
	snprintf(listen_path, sizeof(listen_path), "%s", path);
	return fd;
}

static int
listen_tcp(const char *addr, char *errbuf, size_t errlen)
{
	struct addrinfo	 hints, *res = NULL;
	char		 host[256];
	const char	*port;
	size_t		 hostlen;
	int		 fd = -1, on = 1, rc;

	/* HOST:PORT, [IPV6]:PORT */
	if (addr[0] == '[') {
		const char *close_br = strchr(addr, ']');

		if (close_br == NULL || close_br[1] != ':')
			goto bad;
		hostlen = (size_t)(close_br - addr - 1);
		memcpy(host, addr + 1, hostlen < sizeof(host) ? hostlen : 0);
		port = close_br + 2;
	} else {
		if ((port = strrchr(addr, ':')) == NULL)
			goto bad;
		hostlen = (size_t)(port - addr);
		memcpy(host, addr, hostlen < sizeof(host) ? hostlen : 0);
		port++;
	}
	if (hostlen == 0 || hostlen >= sizeof(host) || *port == '\0')
		goto bad;
	host[hostlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(errbuf, errlen, "--listen %s: %s", addr,
		    gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(errbuf, errlen, "listen on %s: %s", addr,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	snprintf(listen_desc, sizeof(listen_desc), "tcp:%s", addr);
	return fd;
bad:
	snprintf(errbuf, errlen, "--listen \"%s\": expected unix:/path,"
	    " HOST:PORT or [IPV6]:PORT", addr);
	return -1;
}

/* The first socket systemd passed, checked to be a listening stream. */
static int
listen_systemd(char *errbuf, size_t errlen)
{
	int	 n, fd = SD_LISTEN_FDS_START;

	n = sd_listen_fds(1);
	if (n <= 0)
		return n == 0 ? -2 : -1;
	if (n > 1) {
		snprintf(errbuf, errlen, "systemd passed %d sockets; expected"
		    " one", n);
		return -1;
	}
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		snprintf(errbuf, errlen, "the descriptor systemd passed is"
		    " not a listening stream socket");
		return -1;
	}
	snprintf(listen_desc, sizeof(listen_desc), "systemd socket (fd %d)",
	    fd);
	return fd;
}

const char *
listen_created_path(void)
{
	return listen_path[0] != '\0' ? listen_path : NULL;
}

int
listen_open(const struct conf *c, const char **desc, char *errbuf,
    size_t errlen)
{
	char	 path[PATH_MAX];
	int	 fd;

	*desc = listen_desc;
	listen_path[0] = '\0';
	if (c->listen != NULL) {
		if (strncmp(c->listen, "unix:", 5) == 0)
			return listen_unix(c->listen + 5, c, errbuf, errlen);
		return listen_tcp(c->listen, errbuf, errlen);
	}
	if ((fd = listen_systemd(errbuf, errlen)) != -2)
		return fd;
	/* Many databases: none of them is where the socket would go. */
	if (c->sqlite_path == NULL) {
		snprintf(errbuf, errlen, "a file with [database] sections"
		    " needs listen = (or systemd's socket)");
		return -1;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s.sock", c->sqlite_path) >=
	    sizeof(path)) {
		snprintf(errbuf, errlen, "database path too long");
		return -1;
	}
	return listen_unix(path, c, errbuf, errlen);
}
