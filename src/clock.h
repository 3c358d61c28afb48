/*
 * clock.h: the monotonic clock every timer of the server reads. Deadlines,
 * back-off and durations are measured on it, so that a step of the wall
 * clock neither fires nor stalls them. (The wall clock, which stored
 * expiry and queue times use, is kv_now_ms in kv.h.)
 */
#ifndef DENOKV_CLOCK_H
#define DENOKV_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock. */
static inline int64_t
clock_mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microseconds on the monotonic clock. */
static inline uint64_t
clock_mono_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#endif
