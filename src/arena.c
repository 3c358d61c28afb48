/*
 * arena.c: chunked bump allocation (see arena.h). A request larger than the
 * chunk size gets a chunk of its own, so big values cost one allocation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define ARENA_ALIGN	16

/*
 * In an AddressSanitizer build the room of a chunk that no allocation has
 * been given stays poisoned, and every allocation is followed by a poisoned
 * gap: a read or write past the end of an arena allocation is reported like
 * one past a malloc'd block, which the fuzz targets and the sanitizer run
 * of the tests rely on. Elsewhere the macros do nothing and the gap is 0.
 */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN	1
#endif
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE	ARENA_ALIGN
#else
#define ASAN_POISON_MEMORY_REGION(p, n)		((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n)	((void)(p), (void)(n))
#define ARENA_REDZONE	0
#endif

struct arena_chunk {
	struct arena_chunk	*next;
	size_t			 size;	/* usable bytes after the header */
	size_t			 used;
	max_align_t		 data[];
};

void
arena_init(struct arena *a, size_t chunk_size)
{
	a->head = NULL;
	a->chunk_size = chunk_size;
}

void
arena_fini(struct arena *a)
{
	struct arena_chunk	*c, *next;

	for (c = a->head; c != NULL; c = next) {
		next = c->next;
		ASAN_UNPOISON_MEMORY_REGION(c->data, c->size);
		free(c);
	}
	a->head = NULL;
}

void
arena_reset(struct arena *a)
{
	struct arena_chunk	*c, *next, *keep = NULL;

	/* Keep one standard-sized chunk warm; oversized ones go back. */
	for (c = a->head; c != NULL; c = next) {
		next = c->next;
		if (keep == NULL && c->size == a->chunk_size) {
			keep = c;
			continue;
		}
		ASAN_UNPOISON_MEMORY_REGION(c->data, c->size);
		free(c);
	}
	if (keep != NULL) {
		keep->next = NULL;
		keep->used = 0;
		ASAN_POISON_MEMORY_REGION(keep->data, keep->size);
	}
	a->head = keep;
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk	*c = a->head;
	size_t			 want = n, size;
	void			*p;

	/* Rounding a size this close to SIZE_MAX would wrap to a small one. */
	if (n > SIZE_MAX - ARENA_ALIGN - ARENA_REDZONE)
		return NULL;
	n = (n + ARENA_REDZONE + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (n == 0)
		n = ARENA_ALIGN;
	if (c == NULL || c->size - c->used < n) {
		size = n > a->chunk_size ? n : a->chunk_size;
		if (size > SIZE_MAX - sizeof(*c))
			return NULL;
		if ((c = malloc(sizeof(*c) + size)) == NULL)
			return NULL;
		c->size = size;
		c->used = 0;
		ASAN_POISON_MEMORY_REGION(c->data, size);
		/*
		 * An oversized chunk goes behind the current one so the
		 * current one's free room stays in use.
		 */
		if (a->head != NULL && size > a->chunk_size) {
			c->next = a->head->next;
			a->head->next = c;
			c->used = n;
			ASAN_UNPOISON_MEMORY_REGION(c->data, want);
			return c->data;
		}
		c->next = a->head;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	ASAN_UNPOISON_MEMORY_REGION(p, want);
	return p;
}

void *
arena_memdup(struct arena *a, const void *p, size_t n)
{
	void	*q;

	if ((q = arena_alloc(a, n)) != NULL && n > 0)
		memcpy(q, p, n);
	return q;
}
