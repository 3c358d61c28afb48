/*
 * testfault: faults the end-to-end tests inject on purpose, to prove that
 * the suites notice a worker that crashes or leaks (tests/e2e/tripwire.sh).
 *
 * Compiled in only by `configure --enable-test-faults`, and even then
 * inert unless the server's environment has DENOKV_TEST_FAULTS=1. In any
 * other build testfault_request() is an empty inline function, so a
 * release binary has no fault path at all.
 */
#ifndef DENOKV_TESTFAULT_H
#define DENOKV_TESTFAULT_H

/* Request paths that trigger a fault (any mount: matched as a suffix). */
#define TESTFAULT_CRASH_PATH	"/__test_fault/crash"	/* SIGSEGV */
#define TESTFAULT_LEAK_PATH	"/__test_fault/leak"	/* 4242 bytes lost */

#ifdef DENOKV_TEST_FAULTS
/* Called with every request path before routing; may not return. */
void	testfault_request(const char *path);
#else
static inline void
testfault_request(const char *path)
{
	(void)path;
}
#endif

#endif
