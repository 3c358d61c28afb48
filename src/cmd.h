/*
 * cmd: the command-line verbs beyond "serve", one file each (cmd_*.c).
 * Each takes the whole argv, runs in the foreground, prints to stdout and
 * returns the exit status: 0 done, 1 failed, 2 usage error.
 */
#ifndef DENOKV_CMD_H
#define DENOKV_CMD_H

/* denokv-fcgi --sqlite-path P queue stats | list [--limit N] */
int	cmd_queue_main(int argc, char **argv);
/* denokv-fcgi --sqlite-path P backup DEST */
int	cmd_backup_main(int argc, char **argv);
/* denokv-fcgi --sqlite-path P restore SRC */
int	cmd_restore_main(int argc, char **argv);
/* denokv-fcgi --sqlite-path P check */
int	cmd_check_main(int argc, char **argv);
/* denokv-fcgi [--sqlite-path P | --listen ADDR] status */
int	cmd_status_main(int argc, char **argv);
/* denokv-fcgi token new [--read-only] [--expires TIME] */
int	cmd_token_main(int argc, char **argv);

/*
 * Shared by the verbs: reads the options and the file like serve does
 * (cmd_args.c) and checks that the verb got exactly n_args arguments.
 * Returns 0 to go on; else the verb returns CMD_STATUS(rc) at once: 2
 * after a usage error (printed), 0 after --help or --version.
 */
#define CMD_STATUS(rc)	((rc) < 0 ? 0 : (rc))
struct conf;
struct conf_words;
int	cmd_parse(int argc, char **argv, const char *usage, int n_args,
	    struct conf *, struct conf_words *);

#endif
