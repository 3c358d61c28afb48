/*
 * housekeeper: the child process that keeps the database tidy while
 * workers serve: it deletes expired entries in bounded batches (reads hide
 * them already; this reclaims the space) and checkpoints the WAL so that
 * it does not grow without bound under steady load.
 */
#ifndef DENOKV_HOUSEKEEPER_H
#define DENOKV_HOUSEKEEPER_H

#include "conf.h"

/* Runs until SIGTERM; returns the exit status. */
struct shm_segment;

/* segs: each database's signal segment, as dbreg_init takes them. */
int	housekeeper_run(const struct conf *, struct shm_segment *const *segs);

#endif
