/*
 * arena: a per-request bump allocator. Everything a request decodes, reads
 * or builds is allocated here and released at once by arena_reset() when
 * the response has been sent, so handlers never free piecemeal and a row
 * loop never calls malloc per row once the arena has warmed up.
 *
 * arena_alloc() returns NULL when out of memory; memory is 16-byte aligned.
 * arena_reset() keeps the first chunk for the next request.
 */
#ifndef DENOKV_ARENA_H
#define DENOKV_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk	*head;	/* newest chunk first */
	size_t			 chunk_size;
};

void	 arena_init(struct arena *, size_t chunk_size);
void	 arena_fini(struct arena *);
void	 arena_reset(struct arena *);
void	*arena_alloc(struct arena *, size_t n);
void	*arena_memdup(struct arena *, const void *p, size_t n);

#endif
