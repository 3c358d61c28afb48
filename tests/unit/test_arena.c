/*
 * test_arena.c: unit tests for the request arena (src/arena.c), printing
 * TAP: sizes that would wrap when rounded are refused, and, in an
 * AddressSanitizer build, the bytes past every allocation are poisoned,
 * so that an overflow of an arena allocation is reported as one of a
 * malloc'd block would be (the fuzz targets rely on it).
 */
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "testhelp.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN	1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

static void
test_huge_sizes(void)
{
	struct arena	 a;

	arena_init(&a, 4096);
	T_OK(arena_alloc(&a, SIZE_MAX) == NULL,
	    "arena_alloc(SIZE_MAX) is refused, not rounded to a small block");
	T_OK(arena_alloc(&a, SIZE_MAX - 15) == NULL,
	    "arena_alloc(SIZE_MAX - 15) is refused");
	T_OK(arena_alloc(&a, 100) != NULL, "the arena still allocates");
	arena_fini(&a);
}

#ifdef TEST_ASAN
/* Every byte of [p, p+n) usable and the byte after it poisoned. */
static void
check_bounds(const char *what, char *p, size_t n)
{
	T_OK(p != NULL && __asan_region_is_poisoned(p, n) == NULL &&
	    __asan_address_is_poisoned(p + n),
	    "%s: %zu bytes usable, the next one poisoned", what, n);
}

static void
test_poisoned_bounds(void)
{
	static const size_t	 sizes[] = { 1, 7, 15, 16, 17, 100, 4000 };
	struct arena		 a;
	char			*p, *big;

	arena_init(&a, 4096);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_bounds("in a chunk", arena_alloc(&a, sizes[i]),
		    sizes[i]);
	/* An oversized one goes into its own chunk behind the current one. */
	big = arena_alloc(&a, 10000);
	check_bounds("oversized", big, 10000);
	p = arena_alloc(&a, 3);
	check_bounds("after an oversized one", p, 3);
	T_OK(__asan_address_is_poisoned(arena_alloc(&a, 0)),
	    "a zero-byte allocation has no usable byte");
	arena_reset(&a);
	p = arena_alloc(&a, 33);
	check_bounds("after a reset", p, 33);
	T_OK(__asan_address_is_poisoned(p + 64),
	    "after a reset, the kept chunk's room is poisoned again");
	arena_fini(&a);
}
#endif

int
main(void)
{
	test_huge_sizes();
#ifdef TEST_ASAN
	test_poisoned_bounds();
#endif
	return t_done();
}
