/*
 * cmd_check.c: `denokv-fcgi --sqlite-path P check`: SQLite's integrity
 * check and denokv's schema, said in plain words, one finding a line.
 * Exit status 0: all is well; 1: something is wrong (each fault is a
 * line that starts with "problem:"), or the file cannot be opened.
 * It only reads, so it is safe while the service runs.
 */
#include <stdio.h>

#include "cmd.h"
#include "conf.h"
#include "kv_admin.h"

static void
print_line(void *ctx, int problem, const char *line)
{
	(void)ctx;
	printf("%s%s\n", problem ? "problem: " : "", line);
}

int
cmd_check_main(int argc, char **argv)
{
	struct conf_words	 w;
	struct conf		 c;
	char			 err[1024];
	int			 rc, problems;

	if ((rc = cmd_parse(argc, argv, "denokv-fcgi --sqlite-path PATH check",
	    0, &c, &w)) != 0)
		return CMD_STATUS(rc);
	if (kv_check(c.sqlite_path, print_line, NULL, &problems, err,
	    sizeof(err)) != 0) {
		printf("problem: cannot open the database: %s\n", err);
		printf("%s: not usable\n", c.sqlite_path);
		conf_fini(&c);
		return 1;
	}
	if (problems == 0)
		printf("%s: ok\n", c.sqlite_path);
	else
		printf("%s: %d problem%s found\n", c.sqlite_path, problems,
		    problems == 1 ? "" : "s");
	conf_fini(&c);
	return problems == 0 ? 0 : 1;
}
