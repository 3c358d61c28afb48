/*
 * privdrop: dropping root for good. The master does what needs root first
 * (binding a socket under /run, chown of that socket), then drops to the
 * configured user and group, supplementary groups included, and verifies
 * that root cannot be regained, before any child is forked.
 */
#ifndef DENOKV_PRIVDROP_H
#define DENOKV_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

#include "conf.h"

struct privdrop {
	int	 needed;	/* running as root with a user to drop to */
	uid_t	 uid;
	gid_t	 gid;
	char	 user[64];
};

/*
 * Decides what to drop to. Refuses to go on as root without a user unless
 * allow_root is set. Returns 0 or -1 with a one-line reason.
 */
int	privdrop_plan(const struct conf *, struct privdrop *, char *errbuf,
	    size_t errlen);

/* initgroups, setresgid, setresuid, then proves setuid(0) fails. */
int	privdrop_apply(const struct privdrop *, char *errbuf, size_t errlen);

/* Looks up a user or group name (or number) for chown. */
int	privdrop_lookup_user(const char *name, uid_t *uid, gid_t *gid);
int	privdrop_lookup_group(const char *name, gid_t *gid);

#endif
