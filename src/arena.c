/*
 * arena.c: chunked bump allocation (see arena.h). A request larger than the
 * chunk size gets a chunk of its own, so big values cost one allocation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define ARENA_ALIGN	16

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
		free(c);
	}
	if (keep != NULL) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->head = keep;
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk	*c = a->head;
	size_t			 size;
	void			*p;

	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
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
		/*
		 * An oversized chunk goes behind the current one so the
		 * current one's free room stays in use.
		 */
		if (a->head != NULL && size > a->chunk_size) {
			c->next = a->head->next;
			a->head->next = c;
			c->used = n;
			return c->data;
		}
		c->next = a->head;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
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
