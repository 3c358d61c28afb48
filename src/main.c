/*
 * main.c: denokv-fcgi's entry point. The first word of the command line
 * that is not an option (or an option's value) names the command: the
 * verbs below run on their own; everything else, "serve" above all, goes
 * to the master (master.c), which forks the workers and the housekeeper.
 */
#include <string.h>

#include "cmd.h"
#include "conf.h"
#include "master.h"

static const struct {
	const char	*name;
	int		(*run)(int argc, char **argv);
} verbs[] = {
	{ "queue", cmd_queue_main },
	{ "backup", cmd_backup_main },
	{ "restore", cmd_restore_main },
	{ "check", cmd_check_main },
	{ "status", cmd_status_main },
	{ "token", cmd_token_main },
};

int
main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "-", 1) == 0) {
			if (conf_option_takes_value(argv[i]))
				i++;
			continue;
		}
		for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
			if (strcmp(argv[i], verbs[v].name) == 0)
				return verbs[v].run(argc, argv);
		break;
	}
	return master_main(argc, argv);
}
