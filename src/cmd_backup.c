/*
 * cmd_backup.c: `denokv-fcgi --sqlite-path P backup DEST`, a consistent
 * copy of a database while the service keeps serving it (kv_backup). The
 * copy is a Deno KV database like the original: the Deno CLI opens it,
 * and `restore` puts it back. It records the data version it was taken
 * at, which is printed here too.
 */
#include <stdio.h>

#include "cmd.h"
#include "conf.h"
#include "kv_admin.h"

int
cmd_backup_main(int argc, char **argv)
{
	struct conf_words	 w;
	struct kv_copy_info	 info;
	struct conf		 c;
	char			 err[1024];
	int			 rc;

	if ((rc = cmd_parse(argc, argv, "denokv-fcgi --sqlite-path PATH"
	    " backup DEST", 1, &c, &w)) != 0)
		return CMD_STATUS(rc);
	if (kv_backup(c.sqlite_path, w.w[1], &info, err, sizeof(err)) != 0) {
		fprintf(stderr, "denokv-fcgi: backup failed: %s\n", err);
		conf_fini(&c);
		return 1;
	}
	printf("backup of %s written to %s: %lld bytes, data version %lld"
	    " (versionstamp %016llx0000)\n", c.sqlite_path, w.w[1],
	    (long long)info.bytes, (long long)info.version,
	    (unsigned long long)info.version);
	conf_fini(&c);
	return 0;
}
