/*
 * leakcheck: children of the master leave through _exit(), which skips the
 * exit handlers, LeakSanitizer's among them. A sanitizer build
 * (`configure --enable-sanitizers` defines DENOKV_SANITIZERS) runs the
 * leak check explicitly just before; on a leak LeakSanitizer prints its
 * report to stderr (the server log) and ends the process with a non-zero
 * status, which the master logs. Other builds: nothing.
 */
#ifndef DENOKV_LEAKCHECK_H
#define DENOKV_LEAKCHECK_H

#ifdef DENOKV_SANITIZERS
#include <sanitizer/lsan_interface.h>

static inline void
leakcheck_before_exit(void)
{
	__lsan_do_leak_check();
}
#else
static inline void
leakcheck_before_exit(void)
{
}
#endif

#endif
