/*
 * segtab: the master's table of signal segments, one per database
 * (docs/shared-hosting.md), keyed by the database's name ("" for the
 * one-database form). Segments are mapped before the children that use
 * them are forked; a reload keeps the segment of every database that stays
 * configured (its write turn and change slots go on across generations),
 * maps one for each database added, and sets aside those of databases
 * removed: the retiring children still use them, so they are unmapped
 * only once none is left (a child's own mapping stays valid whatever the
 * master does, but the master must go on releasing their process slots).
 */
#ifndef DENOKV_SEGTAB_H
#define DENOKV_SEGTAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conf.h"
#include "shm.h"

struct segtab_entry {
	char			*name;
	struct shm_segment	*seg;
	int			 removed;	/* not in the running conf */
};

struct segtab {
	struct segtab_entry	*e;
	size_t			 n;
	/*
	 * The running conf's segments in its database order, for the
	 * children to inherit (dbreg_init's segs).
	 */
	struct shm_segment	**order;
	size_t			 norder;
};

/*
 * Makes the table match the databases of c: keeps, maps or sets aside,
 * and rebuilds t->order. On failure (a mapping failed) nothing the
 * running children use is lost; returns -1 with a reason in errbuf.
 */
int		 segtab_sync(struct segtab *, const struct conf *c,
		    char *errbuf, size_t errlen);
/* Unmaps the set-aside segments: call when no retiring child is left. */
void		 segtab_release_removed(struct segtab *);
/* Releases a reaped child's process slots in every segment. */
void		 segtab_reaped(struct segtab *, pid_t);
void		 segtab_free(struct segtab *);

/* For STATUS=: over all segments. */
uint64_t	 segtab_max_wait_us(const struct segtab *);
uint64_t	 segtab_turn_timeouts(const struct segtab *);
/* The fault summary of the first segment that has faults, or "". */
void		 segtab_fault_summary(const struct segtab *, char *buf,
		    size_t len);

#endif
