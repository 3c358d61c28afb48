/*
 * segtab.c: the master's signal segments by database (see segtab.h).
 *
 * Memory: a segment is about 1.4 MB of address space, but a fresh
 * anonymous shared mapping costs nothing until a page is touched, and
 * shm_create touches only its first page. A database that is never
 * written to thus costs a page or two in the master and in each child
 * that opens it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbreg.h"
#include "segtab.h"

static struct segtab_entry *
find(struct segtab *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].name, name) == 0)
			return &t->e[i];
	return NULL;
}

/* Adds a freshly mapped segment for name; NULL on failure. */
static struct segtab_entry *
add(struct segtab *t, const char *name)
{
	struct segtab_entry	*grown, *e;

	if ((grown = realloc(t->e, (t->n + 1) * sizeof(*t->e))) == NULL)
		return NULL;
	t->e = grown;
	e = &t->e[t->n];
	memset(e, 0, sizeof(*e));
	if ((e->name = strdup(name)) == NULL)
		return NULL;
	if ((e->seg = shm_create()) == NULL) {
		free(e->name);
		return NULL;
	}
	t->n++;
	return e;
}

int
segtab_sync(struct segtab *t, const struct conf *c, char *errbuf,
    size_t errlen)
{
	size_t			 n = dbreg_conf_count(c);
	struct shm_segment	**order;
	struct segtab_entry	*e;

	if ((order = calloc(n, sizeof(*order))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char	*name = dbreg_conf_name(c, i);

		if ((e = find(t, name)) == NULL && (e = add(t, name)) == NULL) {
			snprintf(errbuf, errlen, "cannot map the signal"
			    " segment of database %s: %s", name,
			    strerror(errno));
			free(order);
			return -1;
		}
		order[i] = e->seg;
	}
	/* Every entry in order is live; the rest is set aside. */
	for (size_t j = 0; j < t->n; j++) {
		t->e[j].removed = 1;
		for (size_t i = 0; i < n; i++)
			if (order[i] == t->e[j].seg)
				t->e[j].removed = 0;
	}
	free(t->order);
	t->order = order;
	t->norder = n;
	return 0;
}

void
segtab_release_removed(struct segtab *t)
{
	size_t	 kept = 0;

	for (size_t i = 0; i < t->n; i++) {
		if (t->e[i].removed) {
			shm_destroy(t->e[i].seg);
			free(t->e[i].name);
		} else
			t->e[kept++] = t->e[i];
	}
	t->n = kept;
}

void
segtab_reaped(struct segtab *t, pid_t pid)
{
	for (size_t i = 0; i < t->n; i++)
		shm_proc_reaped(t->e[i].seg, pid);
}

void
segtab_free(struct segtab *t)
{
	for (size_t i = 0; i < t->n; i++) {
		shm_destroy(t->e[i].seg);
		free(t->e[i].name);
	}
	free(t->e);
	free(t->order);
	memset(t, 0, sizeof(*t));
}

uint64_t
segtab_max_wait_us(const struct segtab *t)
{
	uint64_t	 most = 0, w;

	for (size_t i = 0; i < t->n; i++)
		if ((w = shm_max_wait_us(t->e[i].seg)) > most)
			most = w;
	return most;
}

uint64_t
segtab_turn_timeouts(const struct segtab *t)
{
	uint64_t	 sum = 0;

	for (size_t i = 0; i < t->n; i++)
		sum += shm_turn_timeouts(t->e[i].seg);
	return sum;
}

void
segtab_fault_summary(const struct segtab *t, char *buf, size_t len)
{
	if (len > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < t->n && (len == 0 || buf[0] == '\0'); i++)
		shm_fault_summary(t->e[i].seg, buf, len);
}
