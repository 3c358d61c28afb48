/*
 * fair_loop: the same transactions as unfair_loop, but each writer first
 * takes a ticket from denokv-fcgi's own ticket lock (src/shm.c, linked from
 * src/libdenokv.a) and passes the turn on after COMMIT, as the server's
 * storage hooks do. See lock_loop.h and README.md.
 */
#define _GNU_SOURCE
#define FAIR		1
#define LOOP_NAME	"fair_loop"
#include "lock_loop.h"
