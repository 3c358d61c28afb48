/*
 * testhelp.h: a minimal TAP producer for the C unit tests. Each T_OK is one
 * test point; automake's TAP driver counts them. t_done() prints the plan
 * and returns the exit status.
 */
#ifndef DENOKV_TESTHELP_H
#define DENOKV_TESTHELP_H

#include <stdio.h>

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

/* Equality of two integers, showing both on failure. */
#define T_EQ(a, b, ...) do {						\
	long long _a = (long long)(a), _b = (long long)(b);		\
	T_OK(_a == _b, __VA_ARGS__);					\
	if (_a != _b)							\
		printf("#   got %lld, want %lld\n", _a, _b);		\
} while (0)

static inline int
t_done(void)
{
	printf("1..%d\n", t_count);
	return t_failed == 0 ? 0 : 1;
}

#endif
