/*
 * testhelp.h: a minimal TAP producer for the C unit tests. Each T_OK is one
 * test point; automake's TAP driver counts them. t_done() prints the plan
 * and returns the exit status.
 */
#ifndef DENOKV_TESTHELP_H
#define DENOKV_TESTHELP_H

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int	t_count, t_failed;

#define T_OK(cond, ...) do {						\
	int _ok = (cond) ? 1 : 0;					\
	t_count++;							\
	printf("%sok %d - ", _ok ? "" : "not ", t_count);		\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	if (!_ok) {							\
		t_failed++;						\
		printf("# failed at %s:%d: %s\n", __FILE__, __LINE__,	\
		    #cond);						\
	}								\
	fflush(stdout);							\
} while (0)

/*
 * A setup step the next tests depend on failed: stop the whole file with a
 * TAP bail-out, which the driver counts as an error. Returning early
 * instead would only shorten the plan, and a shorter plan passes.
 */
#define T_BAIL(...) do {						\
	printf("Bail out! ");						\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	fflush(stdout);							\
	exit(1);							\
} while (0)

/* Equality of two integers, showing both on failure. */
#define T_EQ(a, b, ...) do {						\
	long long _a = (long long)(a), _b = (long long)(b);		\
	T_OK(_a == _b, __VA_ARGS__);					\
	if (_a != _b)							\
		printf("#   got %lld, want %lld\n", _a, _b);		\
} while (0)

/* A lowercase 8-4-4-4-12 hexadecimal UUID, as the server writes them. */
static inline int
t_is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

/* Creates the test's temporary directory from its mkdtemp() template. */
static inline void
t_make_dir(char *tmpl)
{
	if (mkdtemp(tmpl) == NULL)
		T_BAIL("cannot create a temporary directory %s: %s", tmpl,
		    strerror(errno));
}

/*
 * Removes a test's temporary directory made by mkdtemp(): every entry in it
 * (the tests create only plain files and sockets there), then the directory.
 */
static inline void
t_remove_dir(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX];

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/*
 * Writes one FastCGI record (version 1, request id 1) as a web server
 * would; a short write stops the file, as nothing after it could be
 * trusted.
 */
static inline void
t_fcgi_record(int fd, int type, const void *data, size_t len)
{
	unsigned char	 h[8] = { 1, (unsigned char)type, 0, 1,
			    (unsigned char)(len >> 8), (unsigned char)len, 0, 0 };

	if (write(fd, h, 8) != 8 ||
	    (len > 0 && write(fd, data, len) != (ssize_t)len))
		T_BAIL("writing a FastCGI record");
}

static inline int
t_done(void)
{
	printf("1..%d\n", t_count);
	return t_failed == 0 ? 0 : 1;
}

#endif
