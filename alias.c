/*
 * alias.c - parses the aliases file and expands addresses (see alias.h).
 * Owns the in-memory table and nothing else: smtp.c and pickup.c call
 * alias_expand() on each recipient they accept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "alias.h"
#include "textfile.h"

#define ALIAS_KEY_MAX	64	/* a local part, RFC 5321 §4.5.3.1.1 */
#define ALIAS_ADDR_MAX	512
#define ALIAS_BAD_LIST	"empty or bad address list"
/* Steps of one expansion, every alias and address met counted: a
 * duplicate adds nothing to out, and "a: b b b ..." nested
 * ALIAS_DEPTH_MAX deep was w^8 of them, a start or SIGHUP that never
 * ended. */
#define ALIAS_STEPS_MAX	(ALIAS_EXPAND_MAX * ALIAS_DEPTH_MAX * 4)

struct alias_entry {
	char key[ALIAS_KEY_MAX + 1];
	char *value;			/* the list as written, one line */
};

struct alias_table {
	size_t n, cap;
	struct alias_entry *e;
};

/* One expansion: the addresses in out, and every alias and address met
 * (ALIAS_STEPS_MAX). */
struct alias_count {
	int n, steps;
};

static int alias_add(struct alias_table *, const char *, size_t,
    const char *, size_t, const char **);
static const struct alias_entry *alias_find(const struct alias_table *,
    const char *, size_t);
static int alias_walk(const struct alias_table *, const char *,
    const char *, char (*)[512], int, struct alias_count *, int,
    const char **, const struct alias_entry *);
/* noinline: measured smaller than LTO's inlined copies. */
static void alias_err(char *, size_t, const char *, size_t, const char *)
    __attribute__((noinline));
static int alias_next(const char *, size_t, size_t *, char *, const char **);

static void
alias_err(char *err, size_t errsz, const char *name, size_t line,
    const char *what)
{
	snprintf(err, errsz, "%s:%zu: aliases: %s", name, line, what);
}

struct alias_table *
alias_parse(const char *name, const char *text, size_t len, char *err,
    size_t errsz)
{
	struct alias_table *t;
	char *logical = NULL;
	size_t pos = 0, line = 0, start_line = 0, llen = 0, n, k, i;
	const char *l, *why;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (logical = malloc(len + 1)) == NULL) {
		free(t);
		snprintf(err, errsz, "%s: out of memory", name);
		return NULL;
	}
	/* Join continuation lines into one logical line, then parse it. */
	for (;;) {
		int more = textfile_line(text, len, &pos, &l, &n);

		if (more) {
			if (n > 0 && l[n - 1] == '\r')
				n--;
			line++;
			for (i = 0; i < n; i++)
				if (l[i] == '\0' || (l[i] == '\r'))
					goto bad_byte;
			/* Comments and blank lines end nothing. */
			k = 0;
			while (k < n && (l[k] == ' ' || l[k] == '\t'))
				k++;
			if (k == n || l[k] == '#')
				continue;
			if (k > 0 && llen > 0) {
				logical[llen++] = ' ';
				memcpy(logical + llen, l + k, n - k);
				llen += n - k;
				continue;
			}
			if (k > 0) {
				alias_err(err, errsz, name, line, "continuation "
				    "line without an alias before it");
				goto fail;
			}
		}
		if (llen > 0) {
			char *colon = memchr(logical, ':', llen);
			size_t klen, v;

			if (colon == NULL) {
				alias_err(err, errsz, name, start_line,
				    "expected \"name: address, ...\"");
				goto fail;
			}
			klen = (size_t)(colon - logical);
			while (klen > 0 && (logical[klen - 1] == ' ' ||
			    logical[klen - 1] == '\t'))
				klen--;
			v = (size_t)(colon - logical) + 1;
			if (klen == 0 || klen > ALIAS_KEY_MAX) {
				alias_err(err, errsz, name, start_line,
				    "bad alias name");
				goto fail;
			}
			for (i = 0; i < klen; i++)
				if ((unsigned char)logical[i] <= ' ' ||
				    logical[i] == '@' || logical[i] == ',') {
					alias_err(err, errsz, name, start_line,
					    "bad alias name");
					goto fail;
				}
			if (alias_add(t, logical, klen, logical + v,
			    llen - v, &why) == -1) {
				alias_err(err, errsz, name, start_line,
				    errno == EEXIST ? "alias defined twice" :
				    errno == EINVAL ? why : "out of memory");
				goto fail;
			}
			llen = 0;
		}
		if (!more)
			break;
		memcpy(logical, l, n);
		llen = n;
		start_line = line;
	}
	free(logical);
	return t;
bad_byte:
	alias_err(err, errsz, name, line, "NUL or stray CR in the line");
fail:
	free(logical);
	alias_free(t);
	return NULL;
}

/*
 * The next address in a value (separated by blanks and commas), with or
 * without its angle brackets, into addr (ALIAS_ADDR_MAX).  1: one was
 * read, 0: none left, -1: a bad one.  *why is set only for a form
 * refused by name; for any other bad address the caller's stays.
 */
static int
alias_next(const char *v, size_t len, size_t *pos, char *addr,
    const char **why)
{
	char path[ALIAS_ADDR_MAX + 2];
	size_t i = *pos, j, k;
	char prev = i > 0 ? v[i - 1] : ',';	/* the last word's end */

	while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
		if (v[i++] == ',')
			prev = ',';
	for (j = i; j < len && v[j] != ' ' && v[j] != '\t' && v[j] != ',';
	    j++)
		;
	*pos = j;
	if (j == i)
		return 0;
	/* sendmail's and Postfix's |command, /file and :include: (quoted or
	 * not): "|cmd" and "/file" are valid local parts, so they would go
	 * to origin.  ferry delivers nothing locally. */
	k = i + (v[i] == '<' || v[i] == '"');
	if (k < j && (v[k] == '|' || v[k] == '/' || v[k] == ':')) {
		*why = "no local delivery (|command, /file, :include:)";
		return -1;
	}
	/* "John Doe <j@x>" would be three addresses, two of them wrong.
	 * Rather than parse RFC 5322 phrases, a <path> and a word without
	 * brackets must not share a comma-separated item; blank-separated
	 * lists of either kind still work. */
	if (prev != ',' && (v[i] == '<') != (prev == '>')) {
		*why = "no display names: one address between commas";
		return -1;
	}
	if (j - i + 3 > sizeof(path))
		return -1;
	snprintf(path, sizeof(path), v[i] == '<' ? "%.*s" : "<%.*s>",
	    (int)(j - i), v + i);
	if (addr_parse_path(path, strlen(path), ADDR_BARE_OK | ADDR_UTF8, addr,
	    ALIAS_ADDR_MAX, NULL) < 0)
		return -1;
	return 1;
}

/* Store one alias; its list is checked address by address now, so a bad
 * file fails at load, not at delivery. */
static int
alias_add(struct alias_table *t, const char *key, size_t klen,
    const char *val, size_t vlen, const char **why)
{
	struct alias_entry *e;
	char addr[ALIAS_ADDR_MAX];
	size_t i = 0, cnt = 0;
	int r;

	*why = ALIAS_BAD_LIST;
	while ((r = alias_next(val, vlen, &i, addr, why)) == 1)
		cnt++;
	if (r == -1 || cnt == 0) {
		errno = EINVAL;
		return -1;
	}
	if (alias_find(t, key, klen) != NULL) {
		errno = EEXIST;
		return -1;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;

		if ((e = realloc(t->e, cap * sizeof(*e))) == NULL)
			return -1;
		t->e = e;
		t->cap = cap;
	}
	e = &t->e[t->n];
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	if ((e->value = malloc(vlen + 1)) == NULL)
		return -1;
	memcpy(e->value, val, vlen);
	e->value[vlen] = '\0';
	t->n++;
	return 0;
}

static const struct alias_entry *
alias_find(const struct alias_table *t, const char *key, size_t klen)
{
	size_t i;

	if (t == NULL)
		return NULL;
	for (i = 0; i < t->n; i++)
		if (strlen(t->e[i].key) == klen &&
		    strncasecmp(t->e[i].key, key, klen) == 0)
			return &t->e[i];
	return NULL;
}

struct alias_table *
alias_load(const char *path, const char *origin, char *err, size_t errsz)
{
	struct alias_table *t;
	char *buf;
	char (*exp)[512];
	const char *why;
	size_t len, i;
	int rc;

	if ((rc = textfile_read(path, ALIAS_FILE_MAX, 0, &buf, &len, err,
	    errsz)) != TEXTFILE_OK) {
		if (rc == TEXTFILE_READ)	/* this file's own wording */
			snprintf(err, errsz, "%s: read error", path);
		return NULL;
	}
	t = alias_parse(path, buf, len, err, errsz);
	free(buf);
	if (t == NULL)
		return NULL;
	if ((exp = malloc(ALIAS_EXPAND_MAX * sizeof(*exp))) == NULL) {
		snprintf(err, errsz, "%s: out of memory", path);
		goto bad;
	}
	for (i = 0; i < t->n; i++)
		if (alias_expand(t, t->e[i].key, origin, exp,
		    ALIAS_EXPAND_MAX, &why) < 0) {
			snprintf(err, errsz, "%s: %s: %s", path, t->e[i].key,
			    why);
			break;
		}
	free(exp);
	if (i == t->n)
		return t;
bad:
	alias_free(t);
	return NULL;
}

void
alias_free(struct alias_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		free(t->e[i].value);
	free(t->e);
	free(t);
}

/* The alias key an address would match: its local part, if local.
 * localhost is local too, as in Postfix's default mydestination: programs
 * that mail "root@localhost" mean this box's root. */
static int
alias_local(const char *addr, const char *origin, size_t *klen)
{
	const char *d = addr_domain(addr);

	if (d == NULL) {
		*klen = strlen(addr);
		return 1;
	}
	if (addr_casecmp(d, origin) != 0 && addr_casecmp(d, "localhost") != 0)
		return 0;
	*klen = (size_t)(d - 1 - addr);
	return 1;
}

/* An address in the list of its own alias (parent) is final, as in
 * Postfix and sendmail: "root: root, admin@x" keeps root and adds a copy. */
static int
alias_walk(const struct alias_table *t, const char *addr, const char *origin,
    char (*out)[512], int max, struct alias_count *c, int depth,
    const char **why, const struct alias_entry *parent)
{
	const struct alias_entry *e;
	char one[ALIAS_ADDR_MAX];
	size_t klen, i = 0, vlen;
	int k, r;

	if (++c->steps > ALIAS_STEPS_MAX) {
		*why = "alias expands to too many addresses";
		return -1;
	}
	if (alias_local(addr, origin, &klen) &&
	    (e = alias_find(t, addr, klen)) != NULL && e != parent) {
		if (depth >= ALIAS_DEPTH_MAX) {
			*why = "alias loop or chain too long";
			return -1;
		}
		vlen = strlen(e->value);
		while ((r = alias_next(e->value, vlen, &i, one, why)) == 1)
			if (alias_walk(t, one, origin, out, max, c, depth + 1,
			    why, e) == -1)
				return -1;
		return r;
	}
	/* A final address: qualified, and once only. */
	if (c->n >= max || c->n >= ALIAS_EXPAND_MAX) {
		*why = "alias expands to too many addresses";
		return -1;
	}
	if (strlen(addr) + 1 + strlen(origin) >= sizeof(out[c->n])) {
		*why = "address too long";
		return -1;
	}
	if (addr_domain(addr) == NULL)
		snprintf(out[c->n], sizeof(out[c->n]), "%s@%s", addr, origin);
	else
		textfile_copy(out[c->n], sizeof(out[c->n]), addr);
	for (k = 0; k < c->n; k++)
		if (addr_casecmp(out[k], out[c->n]) == 0)
			return 0;
	c->n++;
	return 0;
}

int
alias_expand(const struct alias_table *t, const char *addr,
    const char *origin, char (*out)[512], int max, const char **why)
{
	struct alias_count c = { 0, 0 };

	*why = ALIAS_BAD_LIST;	/* what alias_next() leaves */
	if (alias_walk(t, addr, origin, out, max, &c, 0, why, NULL) == -1)
		return -1;
	return c.n;
}
