/*
 * testfault.c: see testfault.h. The faults are real ones, not simulated
 * log lines: a signal that kills the worker (or that the sanitizer
 * reports), and heap memory that nothing points to any more, which only
 * LeakSanitizer can see (sanitizer builds check for leaks before a child
 * leaves, see leakcheck.h).
 */
#ifdef DENOKV_TEST_FAULTS

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "testfault.h"

#define LEAK_BYTES	4242

static int
faults_enabled(void)
{
	const char	*v = getenv("DENOKV_TEST_FAULTS");

	return v != NULL && strcmp(v, "1") == 0;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t	 n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Out of line, so the lost pointer does not linger in the caller's frame. */
static void __attribute__((noinline))
lose_memory(void)
{
	char * volatile	 p = malloc(LEAK_BYTES);

	if (p != NULL)
		memset(p, 0x5a, LEAK_BYTES);
	p = NULL;
}

void
testfault_request(const char *path)
{
	if (path == NULL || !faults_enabled())
		return;
	if (ends_with(path, TESTFAULT_CRASH_PATH)) {
		log_warnx("test fault: crashing on request");
		raise(SIGSEGV);
	} else if (ends_with(path, TESTFAULT_LEAK_PATH)) {
		log_warnx("test fault: leaking %d bytes", LEAK_BYTES);
		lose_memory();
	}
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int testfault_disabled;

#endif
