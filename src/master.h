/*
 * master: the supervising process. It owns the listening socket, the
 * configuration and the privilege drop; it opens and migrates the database
 * once, forks the workers and the housekeeper, and from then on only
 * supervises them: respawn (with backoff) what dies, SIGHUP = re-read the
 * configuration and replace the workers without dropping a request,
 * SIGTERM/SIGINT = stop accepting, let in-flight requests finish (bounded
 * by shutdown-timeout), exit 0. The master never serves a request.
 */
#ifndef DENOKV_MASTER_H
#define DENOKV_MASTER_H

/* Runs the whole server; returns the process exit status. */
int	master_main(int argc, char **argv);

#endif
