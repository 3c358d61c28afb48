/*
 * privdrop.c: see privdrop.h. The order matters: groups first (setgroups
 * needs root), then the gid, then the uid; setuid first would leave the
 * process unable to change its gid and silently keep group root.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "privdrop.h"

static int
parse_id(const char *s, unsigned long *out)
{
	char	*end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *s != '\0' && *end == '\0' ? 0 : -1;
}

int
privdrop_lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd	*pw;
	unsigned long	 id;

	if ((pw = getpwnam(name)) == NULL && parse_id(name, &id) == 0)
		pw = getpwuid((uid_t)id);
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int
privdrop_lookup_group(const char *name, gid_t *gid)
{
	struct group	*gr;
	unsigned long	 id;

	if ((gr = getgrnam(name)) == NULL && parse_id(name, &id) == 0)
		gr = getgrgid((gid_t)id);
	if (gr == NULL)
		return -1;
	*gid = gr->gr_gid;
	return 0;
}

int
privdrop_plan(const struct conf *c, struct privdrop *p, char *errbuf,
    size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (geteuid() != 0) {
		/* Not root: nothing to drop, and --user must match us. */
		if (c->user != NULL) {
			uid_t	 uid;
			gid_t	 gid;

			if (privdrop_lookup_user(c->user, &uid, &gid) != 0 ||
			    uid != geteuid()) {
				snprintf(errbuf, errlen, "user \"%s\" is set"
				    " but the server is not started as root",
				    c->user);
				return -1;
			}
		}
		return 0;
	}
	if (c->user == NULL) {
		if (c->allow_root)
			return 0;
		snprintf(errbuf, errlen, "refusing to serve as root: set user"
		    " (--user NAME), or --allow-root to really run as root");
		return -1;
	}
	if (privdrop_lookup_user(c->user, &p->uid, &p->gid) != 0) {
		snprintf(errbuf, errlen, "unknown user \"%s\"", c->user);
		return -1;
	}
	if (c->group != NULL &&
	    privdrop_lookup_group(c->group, &p->gid) != 0) {
		snprintf(errbuf, errlen, "unknown group \"%s\"", c->group);
		return -1;
	}
	if (p->uid == 0 && !c->allow_root) {
		snprintf(errbuf, errlen, "user \"%s\" is root; use"
		    " --allow-root to really run as root", c->user);
		return -1;
	}
	snprintf(p->user, sizeof(p->user), "%s", c->user);
	p->needed = p->uid != 0;
	return 0;
}

int
privdrop_apply(const struct privdrop *p, char *errbuf, size_t errlen)
{
	struct passwd	*pw;
	uid_t		 ruid, euid, suid;
	gid_t		 rgid, egid, sgid;

	if (!p->needed)
		return 0;
	/* Supplementary groups from the group database, by the user's name. */
	pw = getpwuid(p->uid);
	if ((pw != NULL ? initgroups(pw->pw_name, p->gid) :
	    setgroups(1, &p->gid)) != 0) {
		snprintf(errbuf, errlen, "setting groups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(p->gid, p->gid, p->gid) != 0) {
		snprintf(errbuf, errlen, "setresgid: %s", strerror(errno));
		return -1;
	}
	if (setresuid(p->uid, p->uid, p->uid) != 0) {
		snprintf(errbuf, errlen, "setresuid: %s", strerror(errno));
		return -1;
	}
	if (getresuid(&ruid, &euid, &suid) != 0 ||
	    getresgid(&rgid, &egid, &sgid) != 0 ||
	    ruid != p->uid || euid != p->uid || suid != p->uid ||
	    rgid != p->gid || egid != p->gid || sgid != p->gid) {
		snprintf(errbuf, errlen, "privileges were not dropped");
		return -1;
	}
	/* The proof: root must be gone for good. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(errbuf, errlen, "could regain root after dropping"
		    " privileges");
		return -1;
	}
	return 0;
}
