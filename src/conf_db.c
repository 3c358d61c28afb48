/*
 * conf_db.c: the "[database NAME]" sections of the configuration file
 * (see conf_db.h and docs/shared-hosting.md). Each key is checked as it is
 * read, so its error names its line; what needs every section (required
 * keys, duplicates) is checked at the end and names the section's line.
 * No message here contains a token or its hash.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "conf_db.h"
#include "sha256.h"

/* max-size bounds: below 64 KiB SQLite cannot even hold the schema. */
#define CONF_DB_MIN_SIZE	(64LL * 1024)
#define CONF_DB_MAX_SIZE	(1LL << 50)
#define CONF_DB_MAX_WATCHES	1000000
/* Host names are at most 253 characters (RFC 1035, without the dot). */
#define CONF_DB_MAX_HOST	253

/* Fixed text hashed before a database's name into its id; never change. */
static const char id_prefix[] = "denokv-fcgi database id\n";

void
conf_database_id_for_name(const char *name, char out[CONF_DATABASE_ID_LEN + 1])
{
	char		 buf[sizeof(id_prefix) + CONF_DB_MAX_NAME];
	size_t		 plen = sizeof(id_prefix) - 1, nlen = strlen(name);
	uint8_t		 d[SHA256_DIGEST_LEN];

	/* Section names are at most CONF_DB_MAX_NAME (conf_db_begin). */
	assert(nlen <= CONF_DB_MAX_NAME);
	if (nlen > CONF_DB_MAX_NAME)
		nlen = CONF_DB_MAX_NAME;
	memcpy(buf, id_prefix, plen);
	memcpy(buf + plen, name, nlen);
	sha256(buf, plen + nlen, d);
	/* RFC 9562 version 8 (custom) and the RFC variant, as worker.c does. */
	d[6] = (uint8_t)((d[6] & 0x0f) | 0x80);
	d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
	snprintf(out, CONF_DATABASE_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1], d[2],
	    d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
	    d[13], d[14], d[15]);
}

const struct conf_database *
conf_database_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->ndatabases; i++)
		if (strcmp(c->databases[i].name, name) == 0)
			return &c->databases[i];
	return NULL;
}

static int
valid_name(const char *s)
{
	size_t	 n = strlen(s);

	if (n == 0 || n > CONF_DB_MAX_NAME)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return 0;
	return 1;
}

int
conf_db_begin(struct conf *c, const char *header, int line, char *err,
    size_t errlen)
{
	static const char	 kw[] = "database";
	struct conf_database	*grown, *db;
	const char		*name;
	char			 buf[CONF_DB_MAX_NAME + 2];
	size_t			 n;

	if (strncmp(header, kw, sizeof(kw) - 1) != 0 ||
	    (header[sizeof(kw) - 1] != ' ' && header[sizeof(kw) - 1] != '\t')) {
		snprintf(err, errlen, "unknown section [%.64s]: the only"
		    " sections are [database NAME]", header);
		return -1;
	}
	name = header + sizeof(kw) - 1;
	name += strspn(name, " \t");
	n = strcspn(name, " \t");
	if (n > CONF_DB_MAX_NAME || name[n + strspn(name + n, " \t")] != '\0') {
		snprintf(err, errlen, "[database NAME]: NAME is one word of at"
		    " most %d characters", CONF_DB_MAX_NAME);
		return -1;
	}
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (!valid_name(buf)) {
		snprintf(err, errlen, "[database %s]: a name is letters, digits,"
		    " '.', '_' and '-' only", buf);
		return -1;
	}
	if (conf_database_find(c, buf) != NULL) {
		snprintf(err, errlen, "[database %s] is declared twice", buf);
		return -1;
	}
	grown = realloc(c->databases, (c->ndatabases + 1) * sizeof(*grown));
	if (grown == NULL)
		goto nomem;
	c->databases = grown;
	db = &c->databases[c->ndatabases];
	memset(db, 0, sizeof(*db));
	if ((db->name = strdup(buf)) == NULL)
		goto nomem;
	db->line = line;
	conf_database_id_for_name(db->name, db->id);
	c->ndatabases++;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* --- the keys of a section -------------------------------------------------- */

static int
set_string(char **field, const char *v, char *err, size_t errlen)
{
	char	*copy;

	if ((copy = strdup(v)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

/*
 * A mount as the routing compares it with a normalised request path: runs
 * of '/' become one, a trailing '/' goes, "/" itself becomes "". Refused:
 * not starting with '/', a "." or ".." segment, and anything outside the
 * characters a path may hold unescaped ('%' too: request paths are
 * compared undecoded, so an escape would never match as the user meant).
 */
static int
parse_mount(const char *v, char **out, char *err, size_t errlen)
{
	static const char	 extra[] = "-._~!$&'()*+,;=:@/";
	size_t			 o = 0, seg;
	char			*m;

	if (v[0] != '/') {
		snprintf(err, errlen, "mount must start with / (like /kv/alice,"
		    " or / for the whole site)");
		return -1;
	}
	if ((m = malloc(strlen(v) + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (const char *p = v;; p++) {
		if (*p == '/' || *p == '\0') {
			seg = o;
			while (seg > 0 && m[seg - 1] != '/')
				seg--;
			if ((o - seg == 1 && m[seg] == '.') || (o - seg == 2 &&
			    m[seg] == '.' && m[seg + 1] == '.')) {
				snprintf(err, errlen, "mount must not contain"
				    " a . or .. segment");
				free(m);
				return -1;
			}
			if (*p == '\0')
				break;
			if (o > 0 && m[o - 1] == '/')
				continue;
		} else if (!isalnum((unsigned char)*p) &&
		    strchr(extra, *p) == NULL) {
			snprintf(err, errlen, "mount must hold only letters,"
			    " digits and -._~!$&'()*+,;=:@/ (no %%, blank,"
			    " ? or #)");
			free(m);
			return -1;
		}
		m[o++] = *p;
	}
	while (o > 0 && m[o - 1] == '/')
		o--;
	m[o] = '\0';
	free(*out);
	*out = m;
	return 0;
}

/* A host name, lower-cased: letters, digits, '.', '-'; no port. */
static int
parse_host(const char *v, char **out, char *err, size_t errlen)
{
	size_t	 n = strlen(v);

	if (strchr(v, ':') != NULL) {
		snprintf(err, errlen, "host is a name without a port (like"
		    " alice.example.org)");
		return -1;
	}
	if (n == 0 || n > CONF_DB_MAX_HOST || v[0] == '.' || v[0] == '-') {
		snprintf(err, errlen, "host must be a DNS name (like"
		    " alice.example.org)");
		return -1;
	}
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') {
			snprintf(err, errlen, "host must be a DNS name: letters,"
			    " digits, '.' and '-' only");
			return -1;
		}
	if (set_string(out, v, err, errlen) != 0)
		return -1;
	for (char *p = *out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* id = UUID, 8-4-4-4-12 hex digits, kept in lower case. */
static int
parse_id(const char *v, char out[CONF_DATABASE_ID_LEN + 1], char *err,
    size_t errlen)
{
	if (strlen(v) != CONF_DATABASE_ID_LEN)
		goto bad;
	for (int i = 0; i < CONF_DATABASE_ID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (v[i] != '-')
				goto bad;
		} else if (!isxdigit((unsigned char)v[i]))
			goto bad;
	}
	for (int i = 0; i <= CONF_DATABASE_ID_LEN; i++)
		out[i] = (char)tolower((unsigned char)v[i]);
	return 0;
bad:
	snprintf(err, errlen, "id must be a UUID like"
	    " 0b7f5a1e-3c2d-8e4f-9a6b-1c2d3e4f5a6b");
	return -1;
}

/* max-size: bytes, or with a K, M, G or T suffix (powers of 1024); 0: none. */
static int
parse_size(const char *v, int64_t *out, char *err, size_t errlen)
{
	static const char	 units[] = "KMGT";
	unsigned long long	 n;
	const char		*u;
	char			*end;
	int			 shift = 0;

	errno = 0;
	if (*v < '0' || *v > '9')
		goto bad;
	n = strtoull(v, &end, 10);
	if (errno != 0)
		goto bad;
	if (*end != '\0') {
		if (end[1] != '\0' ||
		    (u = strchr(units, toupper((unsigned char)*end))) == NULL)
			goto bad;
		shift = 10 * (int)(u - units + 1);
	}
	if (n > (unsigned long long)CONF_DB_MAX_SIZE >> shift)
		goto bad;
	n <<= shift;
	if (n != 0 && n < (unsigned long long)CONF_DB_MIN_SIZE)
		goto bad;
	*out = (int64_t)n;
	return 0;
bad:
	snprintf(err, errlen, "max-size must be 0 (no limit) or from 64K to"
	    " 1024T, in bytes or with a K, M, G or T suffix (like 100M)");
	return -1;
}

static int
parse_watches(const char *v, int *out, char *err, size_t errlen)
{
	char	*end;
	long	 n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *v < '0' || *v > '9' || *end != '\0' ||
	    n > CONF_DB_MAX_WATCHES) {
		snprintf(err, errlen, "max-watches must be a number from 0 (no"
		    " limit) to %d", CONF_DB_MAX_WATCHES);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int
add_token(struct conf_database *db, const char *v, char *err, size_t errlen)
{
	struct conf_token	 t, *grown;
	char			 why[256];

	if (token_parse_spec(v, &t, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "token: %s", why);
		return -1;
	}
	grown = realloc(db->tokens, (db->ntokens + 1) * sizeof(*grown));
	if (grown == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	db->tokens = grown;
	db->tokens[db->ntokens++] = t;
	return 0;
}

/* The keys of a section, in the order of the error message. */
static const char *const section_keys[] = {
	"path", "mount", "host", "id", "max-size", "max-watches", "token",
};
#define N_SECTION_KEYS	(sizeof(section_keys) / sizeof(section_keys[0]))

static int
apply_key(struct conf_database *db, int k, const char *value, char *err,
    size_t errlen)
{
	switch (k) {
	case 0:
		if (*value == '\0') {
			snprintf(err, errlen, "path must name the database's"
			    " SQLite file");
			return -1;
		}
		return set_string(&db->path, value, err, errlen);
	case 1:
		return parse_mount(value, &db->mount, err, errlen);
	case 2:
		return parse_host(value, &db->host, err, errlen);
	case 3:
		return parse_id(value, db->id, err, errlen);
	case 4:
		return parse_size(value, &db->max_size, err, errlen);
	case 5:
		return parse_watches(value, &db->max_watches, err, errlen);
	default:
		return add_token(db, value, err, errlen);
	}
}

int
conf_db_key(struct conf *c, const char *name, const char *value,
    unsigned *seen, char *err, size_t errlen)
{
	struct conf_database	*db = &c->databases[c->ndatabases - 1];

	for (int k = 0; k < (int)N_SECTION_KEYS; k++) {
		if (strcmp(name, section_keys[k]) != 0)
			continue;
		/* Each key once per section, except token. */
		if (k != (int)N_SECTION_KEYS - 1 && (*seen & 1u << k)) {
			snprintf(err, errlen, "%s is given twice in [database"
			    " %s]", name, db->name);
			return -1;
		}
		*seen |= 1u << k;
		return apply_key(db, k, value, err, errlen);
	}
	snprintf(err, errlen, "unknown key \"%.64s\" in [database %s] (known:"
	    " path, mount, host, id, max-size, max-watches, token)", name,
	    db->name);
	return -1;
}

/* --- across sections ------------------------------------------------------- */

/*
 * What identifies a database's file: its real path when it exists, else
 * its directory's real path and its name (a file yet to be created), else
 * the path as written. Two sections on one file would share its write
 * turn and its data under two ids. Returns a malloc'ed string or NULL.
 */
static char *
file_identity(const char *path)
{
	char	 real[PATH_MAX], *dir, *slash, *out;
	size_t	 n;

	if (realpath(path, real) != NULL)
		return strdup(real);
	if ((dir = strdup(path)) == NULL)
		return NULL;
	slash = strrchr(dir, '/');
	if (slash != NULL && slash[1] != '\0') {
		*slash = '\0';
		if (realpath(dir[0] != '\0' ? dir : "/", real) != NULL) {
			n = strlen(real) + strlen(slash + 1) + 2;
			if ((out = malloc(n)) != NULL)
				snprintf(out, n, "%s/%s", strcmp(real, "/") == 0 ?
				    "" : real, slash + 1);
			free(dir);
			return out;
		}
	} else if (slash == NULL && realpath(".", real) != NULL) {
		n = strlen(real) + strlen(path) + 2;
		if ((out = malloc(n)) != NULL)
			snprintf(out, n, "%s/%s", real, path);
		free(dir);
		return out;
	}
	free(dir);
	return strdup(path);
}

static int
same_host(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Each section on its own: the keys without which it cannot serve. */
static int
validate_one(const struct conf_database *db, const char *file, char *err,
    size_t errlen)
{
	const char	*missing = NULL;

	if (db->path == NULL)
		missing = "no path (path = /var/lib/denokv-fcgi/NAME.sqlite3)";
	else if (db->mount == NULL)
		missing = "no mount (mount = /kv/NAME)";
	else if (db->ntokens == 0)
		missing = "no token (token = read-write sha256:HEX; run"
		    " \"denokv-fcgi token new\" for one)";
	if (missing == NULL)
		return 0;
	snprintf(err, errlen, "%s:%d: [database %s] has %s", file, db->line,
	    db->name, missing);
	return -1;
}

int
conf_db_validate(const struct conf *c, const char *file, char *err,
    size_t errlen)
{
	const struct conf_database	*a, *b;
	char				**ident;
	int				 rc = -1;
	size_t				 i, j;

	for (i = 0; i < c->ndatabases; i++)
		if (validate_one(&c->databases[i], file, err, errlen) != 0)
			return -1;
	if ((ident = calloc(c->ndatabases + 1, sizeof(*ident))) == NULL)
		goto nomem;
	for (i = 0; i < c->ndatabases; i++)
		if ((ident[i] = file_identity(c->databases[i].path)) == NULL)
			goto nomem;
	for (i = 0; i < c->ndatabases; i++)
		for (j = 0; j < i; j++) {
			a = &c->databases[j];
			b = &c->databases[i];
			if (same_host(a->host, b->host) &&
			    strcmp(a->mount, b->mount) == 0) {
				snprintf(err, errlen, "%s:%d: [database %s] has"
				    " the mount%s of [database %s]", file,
				    b->line, b->name, b->host ? " and host" :
				    "", a->name);
				goto out;
			}
			if (strcmp(ident[i], ident[j]) == 0) {
				snprintf(err, errlen, "%s:%d: [database %s] has"
				    " the file of [database %s] (%s)", file,
				    b->line, b->name, a->name, ident[i]);
				goto out;
			}
			if (strcmp(a->id, b->id) == 0) {
				snprintf(err, errlen, "%s:%d: [database %s] has"
				    " the id of [database %s]", file, b->line,
				    b->name, a->name);
				goto out;
			}
		}
	rc = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (ident != NULL)
		for (i = 0; i < c->ndatabases; i++)
			free(ident[i]);
	free(ident);
	return rc;
}

void
conf_db_free(struct conf *c)
{
	for (size_t i = 0; i < c->ndatabases; i++) {
		struct conf_database	*db = &c->databases[i];

		free(db->name);
		free(db->path);
		free(db->mount);
		free(db->host);
		/* Digests of secrets: not left behind in freed memory. */
		if (db->tokens != NULL)
			explicit_bzero(db->tokens, db->ntokens *
			    sizeof(*db->tokens));
		free(db->tokens);
	}
	free(c->databases);
	c->databases = NULL;
	c->ndatabases = 0;
}
