/*
 * cmd: the command-line verbs beyond "serve", one file each (cmd_*.c).
 * Each takes the whole argv, runs in the foreground, prints to stdout and
 * returns the exit status: 0 done, 1 failed, 2 usage error.
 */
#ifndef DENOKV_CMD_H
#define DENOKV_CMD_H

/* denokv-fcgi --sqlite-path P queue stats | list [--limit N] */
int	cmd_queue_main(int argc, char **argv);

#endif
