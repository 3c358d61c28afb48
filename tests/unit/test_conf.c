/*
 * test_conf.c: the configuration file's [database NAME] sections
 * (src/conf_db.c, read by src/conf.c): a full file and what each key
 * becomes (normalised mounts, hosts, sizes, ids, tokens), every refusal
 * with the file and line it names, the rules between sections and the
 * rest of the settings, and that the one-database command line is as it
 * was. Files are written to a temporary directory and read by
 * conf_parse(), as the server reads them.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "sha256.h"
#include "testhelp.h"

#define T0	1814313600000LL		/* 2027-06-30T00:00:00Z */
/* A token line that passes, for sections about something else. */
#define TOK	"token = read-write secretsecret12\n"

static char	 dir[256], file[300];

static void
write_file(const char *text)
{
	FILE	*f = fopen(file, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		T_BAIL("cannot write %s", file);
}

/* conf_parse of "--config FILE serve" plus extra words, into c and err. */
static enum conf_result
parse_with(struct conf *c, char *err, size_t errlen, const char *text,
    const char *extra1, const char *extra2)
{
	char	*argv[8];
	int	 argc = 0;

	write_file(text);
	argv[argc++] = "denokv-fcgi";
	argv[argc++] = "--config";
	argv[argc++] = file;
	argv[argc++] = "serve";
	if (extra1 != NULL)
		argv[argc++] = (char *)extra1;
	if (extra2 != NULL)
		argv[argc++] = (char *)extra2;
	argv[argc] = NULL;
	err[0] = '\0';
	return conf_parse(argc, argv, c, err, errlen);
}

/* A file that must be refused with want in the message (and "FILE:LINE:"). */
static void
refused(const char *text, int line, const char *want)
{
	struct conf	 c;
	char		 err[1024], where[400];
	enum conf_result r = parse_with(&c, err, sizeof(err), text, NULL,
			    NULL);

	snprintf(where, sizeof(where), "%s:%d: ", file, line);
	T_OK(r == CONF_ERROR && strstr(err, want) != NULL &&
	    (line == 0 || strncmp(err, where, strlen(where)) == 0),
	    "refused at line %d: %s", line, want);
	if (r != CONF_ERROR || strstr(err, want) == NULL ||
	    (line != 0 && strncmp(err, where, strlen(where)) != 0))
		printf("#   got %d: %s\n", r, err);
	if (r == CONF_OK)
		conf_fini(&c);
	T_OK(strstr(err, "secretsecret12") == NULL &&
	    strstr(err, "3fdea5289f5e") == NULL,
	    "and the message shows no token or hash");
}

static struct conf
accepted(const char *text)
{
	struct conf	 c;
	char		 err[1024];

	if (parse_with(&c, err, sizeof(err), text, NULL, NULL) != CONF_OK)
		T_BAIL("refused: %s", err);
	return c;
}

static void
test_full_file(void)
{
	struct conf			 c;
	const struct conf_database	*a, *b;
	uint8_t				 d[SHA256_DIGEST_LEN];
	char				 id[CONF_DATABASE_ID_LEN + 1];
	char				 text[2048];

	snprintf(text, sizeof(text),
	    "; shared hosting\n"
	    "max-open-databases = 10\n"
	    "workers = 3\n"
	    "\n"
	    "[database alice]\n"
	    "path = %s/alice.sqlite3\n"
	    "mount = /kv//alice/\n"
	    "host = Alice.Example.ORG\n"
	    "max-size = 100M\n"
	    "max-watches = 1000\n"
	    "token = read-write sha256:3fdea5289f5e3affc59b712ac71abd5f1b2c"
	    "0716b3e82cb071449bc4ed29b402\n"
	    "token = read-only  another-token-01 expires=2027-06-30T00:00:00Z"
	    " ; inline comment\n"
	    "\n"
	    "[database b.o_b-2]\n"
	    "path = %s/bob.sqlite3\n"
	    "mount = /\n"
	    "id = 0B7F5A1E-3C2D-8E4F-9A6B-1C2D3E4F5A6B\n"
	    "token = read-write secretsecret12\n", dir, dir);
	c = accepted(text);
	T_EQ(c.ndatabases, 2, "two databases");
	T_EQ(c.max_open_databases, 10, "max-open-databases");
	T_EQ(c.workers, 3, "top-level settings still apply");
	T_OK(c.sqlite_path == NULL && c.access_token == NULL,
	    "no single database");
	a = conf_database_find(&c, "alice");
	b = conf_database_find(&c, "b.o_b-2");
	if (a == NULL || b == NULL || a != &c.databases[0])
		T_BAIL("databases not found in file order");
	T_OK(conf_database_find(&c, "carol") == NULL, "no carol");
	T_OK(strcmp(a->name, "alice") == 0, "name");
	T_OK(strstr(a->path, "/alice.sqlite3") != NULL, "path as written");
	T_OK(strcmp(a->mount, "/kv/alice") == 0, "mount normalised: %s",
	    a->mount);
	T_OK(strcmp(b->mount, "") == 0, "the root mount is \"\"");
	T_OK(a->host != NULL && strcmp(a->host, "alice.example.org") == 0,
	    "host in lower case");
	T_OK(b->host == NULL, "no host: any");
	T_EQ(a->max_size, 100LL << 20, "max-size 100M in bytes");
	T_EQ(b->max_size, 0, "no max-size: 0");
	T_EQ(a->max_watches, 1000, "max-watches");
	T_EQ(b->max_watches, 0, "no max-watches: 0");
	T_EQ(a->ntokens, 2, "two tokens");
	sha256("secretsecret12", 14, d);
	T_OK(memcmp(a->tokens[0].digest, d, sizeof(d)) == 0,
	    "the hashed token's digest");
	T_EQ(a->tokens[0].scope, TOKEN_SCOPE_READ_WRITE, "its scope");
	T_EQ(a->tokens[0].expires_ms, 0, "no expiry");
	T_EQ(a->tokens[1].scope, TOKEN_SCOPE_READ_ONLY, "read-only");
	T_EQ(a->tokens[1].expires_ms, T0, "expiry, inline comment dropped");
	T_EQ(token_authorize(b->tokens, b->ntokens, d, T0), TOKEN_READ_WRITE,
	    "the same secret in plain form gives the same verdict");
	conf_database_id_for_name("alice", id);
	T_OK(strcmp(a->id, id) == 0, "alice's id is derived from her name");
	T_OK(strcmp(b->id, "0b7f5a1e-3c2d-8e4f-9a6b-1c2d3e4f5a6b") == 0,
	    "id = pins it, lower-cased");
	T_EQ(a->line, 5, "alice's section line");
	T_EQ(b->line, 14, "bob's");
	conf_fini(&c);
	T_OK(c.databases == NULL && c.ndatabases == 0, "conf_fini frees them");
}

static void
test_ids(void)
{
	char	 a[CONF_DATABASE_ID_LEN + 1], a2[CONF_DATABASE_ID_LEN + 1];
	char	 b[CONF_DATABASE_ID_LEN + 1];

	conf_database_id_for_name("alice", a);
	conf_database_id_for_name("alice", a2);
	conf_database_id_for_name("alicf", b);
	T_OK(t_is_uuid(a), "a UUID: %s", a);
	T_OK(strcmp(a, a2) == 0, "the same name, the same id");
	T_OK(strcmp(a, b) != 0, "another name, another id");
	T_OK(a[14] == '8', "RFC 9562 version 8");
	T_OK(strchr("89ab", a[19]) != NULL, "RFC 9562 variant");
	T_OK(strcmp(a, "00000000-0000-0000-0000-000000000000") != 0,
	    "not denokv's nil id");
}

static void
test_values(void)
{
	static const struct {
		const char	*size;
		long long	 bytes;
	} sizes[] = {
		{ "0", 0 }, { "65536", 65536 }, { "64K", 65536 },
		{ "64k", 65536 }, { "3M", 3 << 20 }, { "2G", 2LL << 30 },
		{ "1T", 1LL << 40 }, { "1024T", 1LL << 50 },
	};
	static const struct {
		const char	*in, *out;
	} mounts[] = {
		{ "/", "" }, { "//", "" }, { "/a", "/a" }, { "/a/", "/a" },
		{ "/a//b///", "/a/b" }, { "/kv/al.ice~x@y:z", "/kv/al.ice~x@y:z" },
		{ "/a/..b/c.", "/a/..b/c." },
	};
	char		 text[512];
	struct conf	 c;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(text, sizeof(text), "[database x]\npath = %s/x\n"
		    "mount = /x\nmax-size = %s\n" TOK, dir, sizes[i].size);
		c = accepted(text);
		T_EQ(c.databases[0].max_size, sizes[i].bytes, "max-size = %s",
		    sizes[i].size);
		conf_fini(&c);
	}
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		snprintf(text, sizeof(text), "[database x]\npath = %s/x\n"
		    "mount = %s\n" TOK, dir, mounts[i].in);
		c = accepted(text);
		T_OK(strcmp(c.databases[0].mount, mounts[i].out) == 0,
		    "mount = %s is \"%s\"", mounts[i].in, mounts[i].out);
		conf_fini(&c);
	}
	snprintf(text, sizeof(text), "[database x]\npath = %s/x\nmount = /x\n"
	    "max-watches = 1000000\n" TOK, dir);
	c = accepted(text);
	T_EQ(c.databases[0].max_watches, 1000000, "max-watches at its bound");
	conf_fini(&c);
}

/* The section text around one bad line (line 3), with a path and a token. */
static void
bad_key(const char *line, const char *want)
{
	char	 text[1024];

	snprintf(text, sizeof(text), "[database x]\npath = %s/x\n%s\n"
	    "mount = /x\n" TOK, dir, line);
	refused(text, 3, want);
}

static void
test_bad_keys(void)
{
	bad_key("paht = /tmp/x", "unknown key \"paht\" in [database x]");
	bad_key("sqlite-path = /tmp/x", "unknown key \"sqlite-path\"");
	bad_key("path = /tmp/y", "path is given twice");
	bad_key("max-size = 1K", "max-size must be");
	bad_key("max-size = 63K", "max-size must be");
	bad_key("max-size = 1025T", "max-size must be");
	bad_key("max-size = 12X", "max-size must be");
	bad_key("max-size = 12MB", "max-size must be");
	bad_key("max-size = -1", "max-size must be");
	bad_key("max-size = 99999999999999999999999", "max-size must be");
	bad_key("max-watches = -1", "max-watches must be");
	bad_key("max-watches = 1000001", "max-watches must be");
	bad_key("max-watches = many", "max-watches must be");
	bad_key("id = 0b7f5a1e-3c2d-8e4f-9a6b-1c2d3e4f5a6", "id must be a UUID");
	bad_key("id = 0b7f5a1e:3c2d-8e4f-9a6b-1c2d3e4f5a6b", "id must be a UUID");
	bad_key("id = 0b7f5a1g-3c2d-8e4f-9a6b-1c2d3e4f5a6b", "id must be a UUID");
	bad_key("host = alice.example.org:8443", "without a port");
	bad_key("host = alice_example.org", "must be a DNS name");
	bad_key("host = -alice.org", "must be a DNS name");
	bad_key("token = admin secretsecret12", "token: unknown scope");
	bad_key("token = read-write short", "token: the token is too short");
	bad_key("token = read-write sha256:abc", "token: sha256: must be");
	bad_key("token = read-write secretsecret12 expires=2027-02-29T00:00:00Z",
	    "token: expires=2027-02-29T00:00:00Z is not an RFC 3339 time");
	bad_key("token = read-only secretsecret12 secondword",
	    "cannot contain blanks");
}

static void
bad_mount(const char *mount, const char *want)
{
	char	 line[256];

	snprintf(line, sizeof(line), "mount = %s", mount);
	/* mount comes again after the bad line: the first error wins. */
	bad_key(line, want);
}

static void
test_bad_mounts(void)
{
	bad_mount("kv/x", "mount must start with /");
	bad_mount("/kv/../x", "a . or .. segment");
	bad_mount("/kv/./x", "a . or .. segment");
	bad_mount("/kv/..", "a . or .. segment");
	bad_mount("/kv%2fx", "mount must hold only");
	bad_mount("/kv x", "mount must hold only");
	bad_mount("/kv?x", "mount must hold only");
	bad_mount("/kv#x", "mount must hold only");
	bad_mount("/kv\\x", "mount must hold only");
}

static void
test_bad_sections(void)
{
	char	 text[1024];

	refused("[databases x]\n", 1, "unknown section [databases x]");
	refused("[other]\npath = /x\n", 1, "unknown section [other]");
	refused("[database]\n", 1, "unknown section [database]");
	refused("[database a/b]\n", 1, "letters, digits, '.', '_' and '-'");
	refused("[database a b]\n", 1, "NAME is one word");
	refused("[database  ]\n", 1, "letters, digits");
	refused("[database "
	    "a123456789a123456789a123456789a123456789a123456789a123456789abcde"
	    "]\n", 1, "at most 64");
	refused("workers = 2\n[database x]\n", 2, "[database x] has no path");
	snprintf(text, sizeof(text), "[database x]\npath = %s/x\n" TOK, dir);
	refused(text, 1, "[database x] has no mount");
	snprintf(text, sizeof(text), "\n[database x]\npath = %s/x\n"
	    "mount = /x\n", dir);
	refused(text, 2, "[database x] has no token");
	snprintf(text, sizeof(text), "[database x]\npath = %s/x\nmount = /x\n"
	    TOK "[database y]\n", dir);
	refused(text, 5, "[database y] has no path");
	snprintf(text, sizeof(text), "[database x]\npath = %s/x\nmount = /x\n"
	    TOK "\n[database x]\npath = %s/y\nmount = /y\n" TOK, dir, dir);
	refused(text, 6, "[database x] is declared twice");
}

/* Indented lines are lines like any other (not continuations). */
static void
test_indented(void)
{
	char		 text[1024];
	struct conf	 c;

	snprintf(text, sizeof(text), "\xEF\xBB\xBF  workers = 3\n"
	    "  [database x]\n\tpath = %s/x\n    mount = /x\n"
	    "    token = read-only secretsecret12\n"
	    "    token = read-write another-token-01\n", dir);
	c = accepted(text);
	T_OK(c.workers == 3 && c.ndatabases == 1 &&
	    strcmp(c.databases[0].mount, "/x") == 0 &&
	    c.databases[0].ntokens == 2 && c.databases[0].line == 2,
	    "indented sections and keys, after a byte order mark");
	conf_fini(&c);
	snprintf(text, sizeof(text), "[database x]\n  path = %s/x\n"
	    "  mount = /x\n  nope = 1\n" TOK, dir);
	refused(text, 4, "unknown key \"nope\"");
}

/* Two sections: x first (lines 1-5), then y (line 6 on). */
static void
pair(const char *x, const char *y, int ok, const char *want)
{
	char		 text[2048], err[1024];
	struct conf	 c;
	enum conf_result r;

	snprintf(text, sizeof(text), "[database x]\n%s\n" TOK
	    "[database y]\n%s\n" TOK, x, y);
	if (ok) {
		r = parse_with(&c, err, sizeof(err), text, NULL, NULL);
		T_OK(r == CONF_OK, "accepted: %s", want);
		if (r == CONF_OK)
			conf_fini(&c);
		else
			printf("#   %s\n", err);
	} else {
		const char	*end = strstr(text, "[database y]");
		int		 line = 1;

		/* Errors between sections name the second one's line. */
		for (const char *q = text; q < end; q++)
			line += *q == '\n';
		refused(text, line, want);
	}
}

static void
test_pairs(void)
{
	char	 x[512], y[512], sub[300];

	snprintf(x, sizeof(x), "path = %s/x\nmount = /kv", dir);
	snprintf(y, sizeof(y), "path = %s/y\nmount = /kv/", dir);
	pair(x, y, 0, "[database y] has the mount of [database x]");
	snprintf(x, sizeof(x), "path = %s/x\nmount = /kv\nhost = a.org", dir);
	snprintf(y, sizeof(y), "path = %s/y\nmount = /kv\nhost = A.ORG", dir);
	pair(x, y, 0, "has the mount and host of [database x]");
	snprintf(y, sizeof(y), "path = %s/y\nmount = /kv\nhost = b.org", dir);
	pair(x, y, 1, "one mount on two hosts");
	snprintf(y, sizeof(y), "path = %s/y\nmount = /kv", dir);
	pair(x, y, 1, "one mount with and without a host");
	snprintf(x, sizeof(x), "path = %s/x\nmount = /kv", dir);
	snprintf(y, sizeof(y), "path = %s/y\nmount = /kv/y", dir);
	pair(x, y, 1, "a mount under another");

	/* The same file: not yet created, written two ways. */
	snprintf(x, sizeof(x), "path = %s/same.sqlite3\nmount = /a", dir);
	snprintf(y, sizeof(y), "path = %s//./same.sqlite3\nmount = /b", dir);
	pair(x, y, 0, "[database y] has the file of [database x]");
	/* An existing file through a symbolic link to its directory. */
	snprintf(sub, sizeof(sub), "%s/link", dir);
	if (symlink(dir, sub) != 0)
		T_BAIL("symlink %s", sub);
	write_file("");
	snprintf(x, sizeof(x), "path = %s\nmount = /a", file);
	snprintf(y, sizeof(y), "path = %s/link/test.conf\nmount = /b", dir);
	pair(x, y, 0, "has the file of [database x]");
	unlink(sub);
	/* An existing file through a symbolic link to the file itself. */
	snprintf(sub, sizeof(sub), "%s/alias.sqlite3", dir);
	if (symlink(file, sub) != 0)
		T_BAIL("symlink %s", sub);
	snprintf(y, sizeof(y), "path = %s\nmount = /b", sub);
	pair(x, y, 0, "has the file of [database x]");
	unlink(sub);
	snprintf(x, sizeof(x), "path = %s/x\nmount = /a\n"
	    "id = 0b7f5a1e-3c2d-8e4f-9a6b-1c2d3e4f5a6b", dir);
	snprintf(y, sizeof(y), "path = %s/y\nmount = /b\n"
	    "id = 0B7F5A1E-3C2D-8E4F-9A6B-1C2D3E4F5A6B", dir);
	pair(x, y, 0, "[database y] has the id of [database x]");
}

static void
test_one_or_other(void)
{
	char		 text[1024], err[1024];
	struct conf	 c;
	enum conf_result r;

	snprintf(text, sizeof(text), "workers = 2\nsqlite-path = %s/one\n"
	    "[database x]\npath = %s/x\nmount = /x\n" TOK, dir, dir);
	refused(text, 2, "sqlite-path is for a file without [database]");
	snprintf(text, sizeof(text), "access-token = secretsecret12\n"
	    "[database x]\npath = %s/x\nmount = /x\n" TOK, dir);
	refused(text, 1, "access-token is for a file without [database]");

	snprintf(text, sizeof(text), "[database x]\npath = %s/x\nmount = /x\n"
	    TOK, dir);
	r = parse_with(&c, err, sizeof(err), text, "--sqlite-path", "/tmp/y");
	T_OK(r == CONF_ERROR && strstr(err, "do not apply") != NULL,
	    "serve: --sqlite-path with sections is refused");
	r = parse_with(&c, err, sizeof(err), text, "--access-token",
	    "secretsecret12");
	T_OK(r == CONF_ERROR && strstr(err, "do not apply") != NULL,
	    "serve: --access-token with sections is refused");
	setenv("DENO_KV_ACCESS_TOKEN", "secretsecret12", 1);
	r = parse_with(&c, err, sizeof(err), text, NULL, NULL);
	unsetenv("DENO_KV_ACCESS_TOKEN");
	T_OK(r == CONF_ERROR && strstr(err, "do not apply") != NULL,
	    "serve: DENO_KV_ACCESS_TOKEN with sections is refused");

	/* A verb works on one file: --sqlite-path is what it needs. */
	{
		char			*argv[] = { "denokv-fcgi", "--config",
					    file, "--sqlite-path", "/tmp/y",
					    "check", NULL };
		struct conf_words	 w;

		r = conf_parse_verb(6, argv, &c, &w, err, sizeof(err));
		T_OK(r == CONF_OK && c.ndatabases == 1 &&
		    strcmp(c.sqlite_path, "/tmp/y") == 0,
		    "a verb takes --sqlite-path beside sections");
		if (r == CONF_OK)
			conf_fini(&c);
		argv[3] = "check";
		argv[4] = NULL;
		r = conf_parse_verb(4, argv, &c, &w, err, sizeof(err));
		T_OK(r == CONF_ERROR && strstr(err, "the path of one of them"),
		    "without it, a verb says how to name one");
	}
	/* --check-config (no serve) checks the sections too. */
	{
		char	*argv[] = { "denokv-fcgi", "--config", file,
			    "--check-config", NULL };

		r = conf_parse(4, argv, &c, err, sizeof(err));
		T_OK(r == CONF_OK && c.check_only && c.ndatabases == 1,
		    "--check-config accepts a good file");
		if (r == CONF_OK)
			conf_fini(&c);
		write_file("[database x]\npath = /tmp/x\n");
		r = conf_parse(4, argv, &c, err, sizeof(err));
		T_OK(r == CONF_ERROR && strstr(err, "has no mount") != NULL,
		    "--check-config refuses a bad one");
	}
}

static void
test_single_database(void)
{
	char		*argv[] = { "denokv-fcgi", "--sqlite-path", "/tmp/one",
			    "serve", "--access-token", "secretsecret12", NULL };
	char		 err[1024];
	struct conf	 c;

	T_EQ(conf_parse(6, argv, &c, err, sizeof(err)), CONF_OK,
	    "the command line alone, as always");
	T_OK(c.databases == NULL && c.ndatabases == 0, "no sections");
	T_EQ(c.max_open_databases, 64, "max-open-databases defaults to 64");
	T_OK(strcmp(c.sqlite_path, "/tmp/one") == 0, "its database");
	conf_fini(&c);
	/* A file without sections, as before. */
	write_file("sqlite-path = /tmp/one\naccess-token = secretsecret12\n");
	{
		char	*fargv[] = { "denokv-fcgi", "--config", file, "serve",
			    NULL };

		T_EQ(conf_parse(4, fargv, &c, err, sizeof(err)), CONF_OK,
		    "a file without sections, as before");
		T_OK(c.ndatabases == 0 && c.access_token != NULL,
		    "one database and its token");
		conf_fini(&c);
	}
	refused("max-open-databases = 0\n", 1, "max-open-databases: \"0\" is"
	    " not a number from 1 to 100000");
}

int
main(void)
{
	const char	*tmp = getenv("TMPDIR");

	unsetenv("DENO_KV_SQLITE_PATH");
	unsetenv("DENO_KV_ACCESS_TOKEN");
	snprintf(dir, sizeof(dir), "%s/test_conf.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		T_BAIL("mkdtemp");
	snprintf(file, sizeof(file), "%s/test.conf", dir);
	test_full_file();
	test_ids();
	test_values();
	test_bad_keys();
	test_bad_mounts();
	test_bad_sections();
	test_indented();
	test_pairs();
	test_one_or_other();
	test_single_database();
	unlink(file);
	rmdir(dir);
	return t_done();
}
