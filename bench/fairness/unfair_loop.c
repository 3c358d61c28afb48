/*
 * unfair_loop: the baseline for fair write admission. P processes x T
 * threads, each with its own SQLite connection, commit single-row
 * transactions and wait for the write lock through SQLite's busy handler
 * only (busy_timeout 5000 ms, like the server). See lock_loop.h for what is
 * measured and README.md for how to read it.
 */
#define _GNU_SOURCE
#define FAIR		0
#define LOOP_NAME	"unfair_loop"
#include "lock_loop.h"
