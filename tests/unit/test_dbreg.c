/*
 * test_dbreg.c: unit tests of the database registry (src/dbreg.c) with
 * real SQLite files in a temporary directory, printing TAP. Focus: routing
 * a request path (through route_path, as the worker does) by Host and
 * mount, with nothing but "", "/" or an endpoint after the mount; the
 * one-database form answering everywhere with its path-derived id; each
 * token's verdict on its own and on another database; handles opened on
 * first use (migrated) and closed least recently used first past the
 * bound; and the per-database count of open watches across process slots
 * (max-watches), which a reaped process stops adding to; a released
 * slot (a stopped watch hub's) is free again.
 */
#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbreg.h"
#include "shm.h"
#include "testhelp.h"
#include "worker.h"

static char	tmpdir[64];

static void
token(struct conf_token *t, const char *text, enum token_scope scope,
    int64_t expires_ms)
{
	sha256(text, strlen(text), t->digest);
	t->scope = scope;
	t->expires_ms = expires_ms;
}

static struct conf_token alice_tokens[3], bob_tokens[1], carol_tokens[1],
    root_tokens[1];
static struct conf_database dbs[4];
static char paths[4][PATH_MAX];

static void
database(struct conf_database *d, char *path, const char *name,
    const char *mount, const char *host, struct conf_token *t, size_t nt)
{
	memset(d, 0, sizeof(*d));
	d->name = (char *)name;
	snprintf(path, PATH_MAX, "%s/%s.sqlite", tmpdir, name);
	d->path = path;
	d->mount = (char *)mount;
	d->host = (char *)host;
	conf_database_id_for_name(name, d->id);
	d->tokens = t;
	d->ntokens = nt;
}

/* alice, bob under /kv/; carol at / for carol.example; root at / for others */
static void
make_conf(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = 1;
	c->busy_timeout_ms = 1000;
	token(&alice_tokens[0], "alice-rw-token", TOKEN_SCOPE_READ_WRITE, 0);
	token(&alice_tokens[1], "alice-ro-token", TOKEN_SCOPE_READ_ONLY, 0);
	token(&alice_tokens[2], "alice-old-token", TOKEN_SCOPE_READ_WRITE,
	    1000);
	token(&bob_tokens[0], "bob-rw-token", TOKEN_SCOPE_READ_WRITE, 0);
	token(&carol_tokens[0], "carol-rw-token", TOKEN_SCOPE_READ_WRITE, 0);
	token(&root_tokens[0], "root-rw-token", TOKEN_SCOPE_READ_WRITE, 0);
	database(&dbs[0], paths[0], "alice", "/kv/alice", NULL, alice_tokens, 3);
	database(&dbs[1], paths[1], "bob", "/kv/bob", NULL, bob_tokens, 1);
	database(&dbs[2], paths[2], "carol", "", "carol.example", carol_tokens,
	    1);
	database(&dbs[3], paths[3], "root", "", NULL, root_tokens, 1);
	c->databases = dbs;
	c->ndatabases = 4;
	c->max_open_databases = 2;
}

/* The database a request for path (and Host) goes to, or NULL for 404. */
static const char *
routed(struct dbreg *r, const char *host, const char *path)
{
	struct dbreg_db	*d;
	const char	*name;
	size_t		 baselen;

	(void)route_path(path, &baselen, &name);
	if (dbreg_route(r, host, path, baselen, &d) != KV_OK)
		return NULL;
	return d->name;
}

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
test_routing(struct dbreg *r)
{
	static const struct {
		const char	*host, *path, *want;
	} cases[] = {
		{ "h", "/kv/alice", "alice" },
		{ "h", "/kv/alice/", "alice" },
		{ "h", "/kv/alice/v2/snapshot_read", "alice" },
		{ "h", "/kv/alice/v2/queue/lease", "alice" },
		{ "h", "/kv/bob/v2/watch", "bob" },
		{ "h", "/kv/alice/extra", NULL },
		{ "h", "/kv/alice/v2/nonsense", NULL },
		{ "h", "/kv/alicex/", NULL },
		{ "h", "/kv/", NULL },
		{ "h", "/kv/alice/bob/v2/atomic_write", NULL },
		{ "h", "/", "root" },
		{ "h", "/v2/atomic_write", "root" },
		{ "carol.example", "/", "carol" },
		{ "CAROL.example:8443", "/v2/watch", "carol" },
		{ "carol.example", "/kv/bob/", "bob" },
		{ NULL, "/", "root" },
		{ "carol.example.evil", "/", "root" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char	*got = routed(r, cases[i].host, cases[i].path);

		T_OK(same(got, cases[i].want), "Host %s, %s: %s", cases[i].host
		    != NULL ? cases[i].host : "(none)", cases[i].path,
		    cases[i].want != NULL ? cases[i].want : "404");
		if (!same(got, cases[i].want))
			printf("#   got %s\n", got != NULL ? got : "404");
	}
}

static enum kv_err
auth(struct dbreg *r, const char *name, const char *header, int writes)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->dbs[i].name, name) == 0)
			return dbreg_authorize(r, &r->dbs[i], header, writes);
	T_BAIL("no database %s", name);
}

static void
test_tokens(struct dbreg *r)
{
	T_EQ(auth(r, "alice", "Bearer alice-rw-token", 1), KV_OK,
	    "alice's read-write token writes to alice");
	T_EQ(auth(r, "alice", "Bearer alice-ro-token", 0), KV_OK,
	    "alice's read-only token reads alice");
	T_EQ(auth(r, "alice", "Bearer alice-ro-token", 1),
	    KV_ERR_TOKEN_READ_ONLY, "alice's read-only token cannot write");
	T_EQ(auth(r, "alice", "Bearer alice-old-token", 0),
	    KV_ERR_TOKEN_EXPIRED, "an expired token is refused");
	T_EQ(auth(r, "alice", "Bearer bob-rw-token", 0), KV_ERR_AUTH_INVALID,
	    "bob's token on alice: 401");
	T_EQ(auth(r, "bob", "Bearer alice-rw-token", 1), KV_ERR_AUTH_INVALID,
	    "alice's token on bob: 401");
	T_EQ(auth(r, "bob", "Bearer alice-ro-token", 0), KV_ERR_AUTH_INVALID,
	    "alice's read-only token on bob: 401");
	T_EQ(auth(r, "bob", NULL, 0), KV_ERR_AUTH_MALFORMED,
	    "no Authorization header");
	T_EQ(auth(r, "bob", "Basic Ym9iOmJvYg==", 0), KV_ERR_AUTH_INVALID,
	    "not a bearer token");
}

static int
file_exists(const char *p)
{
	struct stat	 sb;

	return stat(p, &sb) == 0;
}

static void
test_lru(struct dbreg *r)
{
	struct kv_db	*db, *a;
	struct dbreg_db	*alice = &r->dbs[0], *bob = &r->dbs[1],
			*root = &r->dbs[3];

	T_OK(!file_exists(alice->path), "nothing opened at init");
	T_EQ(dbreg_open(r, alice, &a), KV_OK, "alice opens");
	T_OK(file_exists(alice->path), "alice's file created (migrated)");
	T_EQ(dbreg_open(r, bob, &db), KV_OK, "bob opens");
	T_EQ(r->n_open, 2, "two open");
	T_EQ(dbreg_open(r, alice, &db), KV_OK, "alice again");
	T_OK(db == a, "the same handle, not reopened");
	T_EQ(dbreg_open(r, root, &db), KV_OK, "a third opens");
	T_EQ(r->n_open, 2, "still two open (max-open-databases)");
	T_OK(bob->db == NULL, "bob, the least recently used, was closed");
	T_OK(alice->db != NULL, "alice, used since, stays open");
	T_EQ(dbreg_open(r, bob, &db), KV_OK, "bob reopens");
	T_OK(alice->db == NULL && root->db != NULL, "now alice went");
	T_OK(alice->claimed && bob->claimed && root->claimed,
	    "each opened database has a process slot in its segment");
	T_OK(!r->dbs[2].claimed, "an unopened one has none");

	/* A held handle is not closed to make room; the bound gives way. */
	dbreg_hold(root);
	dbreg_hold(bob);
	T_EQ(dbreg_open(r, alice, &db), KV_OK, "alice opens past the bound");
	T_OK(root->db != NULL && bob->db != NULL, "the held handles stay open");
	T_EQ(r->n_open, 3, "three open while two are held");
	dbreg_release(root);
	dbreg_release(bob);
	T_EQ(dbreg_open(r, &r->dbs[2], &db), KV_OK, "a fourth opens");
	T_EQ(r->n_open, 2, "released, the bound holds again");
}

static void
test_single(void)
{
	struct conf	 c;
	struct dbreg	 r;
	const char	*got;
	char		 err[256], want[DBREG_ID_LEN + 1], abspath[PATH_MAX];
	char		 path[PATH_MAX];

	memset(&c, 0, sizeof(c));
	snprintf(path, sizeof(path), "%s/single.sqlite", tmpdir);
	c.sqlite_path = path;
	c.access_token = "the-one-access-token";
	if (dbreg_init(&r, &c, NULL, 1, err, sizeof(err)) != 0)
		T_BAIL("dbreg_init: %s", err);
	T_EQ(r.n, 1, "the command-line form is one database");
	got = routed(&r, NULL, "/any/path/at/all/");
	T_OK(same(got, ""), "it answers at any path");
	got = routed(&r, "x", "/kv/v2/snapshot_read");
	T_OK(same(got, ""), "and at any endpoint");
	T_EQ(dbreg_authorize(&r, &r.dbs[0], "Bearer the-one-access-token", 1),
	    KV_OK, "its access token writes");
	T_EQ(dbreg_authorize(&r, &r.dbs[0], "Bearer another-token", 0),
	    KV_ERR_AUTH_INVALID, "another token is refused");
	if (realpath(tmpdir, abspath) == NULL)
		T_BAIL("realpath");
	/* The id of the file's absolute path, as before shared hosting. */
	{
		struct kv_db	*db;
		char		 full[PATH_MAX + 16];

		T_EQ(dbreg_open(&r, &r.dbs[0], &db), KV_OK, "it opens");
		snprintf(full, sizeof(full), "%s/single.sqlite", abspath);
		dbreg_fini(&r);
		if (dbreg_init(&r, &c, NULL, 1, err, sizeof(err)) != 0)
			T_BAIL("dbreg_init: %s", err);
		database_id_for(full, want);
		T_OK(strcmp(r.dbs[0].id, want) == 0,
		    "its id is database_id_for(its absolute path)");
	}
	dbreg_fini(&r);
}

static void
test_watch_count(void)
{
	struct shm_segment	*seg = shm_create();
	int			 s1, s2;
	pid_t			 other = getpid() + 100000;

	if (seg == NULL)
		T_BAIL("shm_create");
	s1 = shm_proc_claim(seg, getpid());
	s2 = shm_proc_claim(seg, other);
	T_EQ(shm_watch_reserve(seg, s1, 2), 0, "first watch counted");
	T_EQ(shm_watch_reserve(seg, s2, 2), 0, "second, from another process");
	T_EQ(shm_watch_reserve(seg, s1, 2), -1, "a third is refused");
	T_EQ(shm_watch_reserve(seg, s2, 2), -1, "from either process");
	T_EQ(shm_watch_count(seg), 2, "two counted");
	shm_proc_reaped(seg, other);
	T_EQ(shm_watch_count(seg), 1, "a reaped process's watches stop counting");
	T_EQ(shm_watch_reserve(seg, s1, 2), 0, "so there is room again");
	shm_watch_release(seg, s1);
	shm_watch_release(seg, s1);
	T_EQ(shm_watch_count(seg), 0, "released");
	T_EQ(shm_watch_reserve(seg, s1, 0), 0, "max 0: no limit");
	{
		int	 s3 = shm_proc_claim(seg, getpid()), s4;

		shm_proc_release(seg, s3);
		s4 = shm_proc_claim(seg, getpid());
		T_EQ(s4, s3, "a released slot is claimed again");
		T_EQ(shm_watch_count(seg), 1, "releasing keeps the others'"
		    " counts");
	}
	shm_destroy(seg);
}

int
main(void)
{
	struct conf		 c;
	struct dbreg		 r;
	struct shm_segment	*segs[4];
	char			 err[256];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_dbreg.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		T_BAIL("mkdtemp");
	make_conf(&c);
	for (int i = 0; i < 4; i++)
		if ((segs[i] = shm_create()) == NULL)
			T_BAIL("shm_create");
	if (dbreg_init(&r, &c, segs, (size_t)c.max_open_databases, err,
	    sizeof(err)) != 0)
		T_BAIL("dbreg_init: %s", err);
	test_routing(&r);
	test_tokens(&r);
	test_lru(&r);
	dbreg_fini(&r);
	test_single();
	test_watch_count();
	for (int i = 0; i < 4; i++)
		shm_destroy(segs[i]);
	{
		char	 cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	return t_done();
}
