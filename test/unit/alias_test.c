/*
 * alias_test.c - the aliases parser and expansion: formats, chains,
 * loops, limits and the errors that name file and line.
 */
#include <stdio.h>
#include <string.h>

#include "alias.h"
#include "t.h"

static struct alias_table *
parse(const char *text, char *err, size_t errsz)
{
	return alias_parse("aliases", text, strlen(text), err, errsz);
}

/* Expand and join the results with spaces. */
static const char *
expand(const struct alias_table *t, const char *addr)
{
	static char joined[4096];
	char out[ALIAS_EXPAND_MAX][512];
	const char *why;
	int n, i;

	n = alias_expand(t, addr, "box.test", out, ALIAS_EXPAND_MAX, &why);
	if (n < 0) {
		snprintf(joined, sizeof(joined), "error: %s", why);
		return joined;
	}
	joined[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i)
			strcat(joined, " ");
		strcat(joined, out[i]);
	}
	return joined;
}

static int
test_basic(void)
{
	char err[256];
	struct alias_table *t = parse("# comment\n\nroot: admin@example.org\n"
	    "postmaster: root\nops: a@x.test, b@y.test c@z.test\n", err,
	    sizeof(err));

	CHECK(t != NULL);
	CHECK_STR(expand(t, "root@box.test"), "admin@example.org");
	CHECK_STR(expand(t, "ROOT@BOX.TEST"), "admin@example.org");
	CHECK_STR(expand(t, "root"), "admin@example.org");
	CHECK_STR(expand(t, "postmaster@box.test"), "admin@example.org");
	CHECK_STR(expand(t, "ops"), "a@x.test b@y.test c@z.test");
	/* another domain is not local: untouched */
	CHECK_STR(expand(t, "root@other.test"), "root@other.test");
	CHECK_STR(expand(t, "root@LocalHost"), "admin@example.org");
	CHECK_STR(expand(t, "root@localhost.other.test"),
	    "root@localhost.other.test");
	CHECK_STR(expand(t, "nobody@localhost"), "nobody@localhost");
	CHECK_STR(expand(t, "nobody"), "nobody@box.test");
	alias_free(t);
	return 0;
}

static int
test_continuation_and_dedup(void)
{
	char err[256];
	struct alias_table *t = parse("team: a@x.test,\n  b@x.test\n"
	    "\tA@X.test\r\nall: team, b@x.test\n", err, sizeof(err));

	CHECK(t != NULL);
	CHECK_STR(expand(t, "team"), "a@x.test b@x.test");
	CHECK_STR(expand(t, "all"), "a@x.test b@x.test");
	alias_free(t);
	return 0;
}

static int
test_loops_and_limits(void)
{
	char err[256], big[8192];
	struct alias_table *t = parse("a: b\nb: a\nself: self\n"
	    "keep: keep@box.test, c@x.test\nvia: keep, self\n", err,
	    sizeof(err));
	int i;

	CHECK(t != NULL);
	CHECK(strncmp(expand(t, "a"), "error:", 6) == 0);
	/* In its own list an address is final (Postfix's virtual(5)). */
	CHECK_STR(expand(t, "self"), "self@box.test");
	CHECK_STR(expand(t, "keep"), "keep@box.test c@x.test");
	CHECK_STR(expand(t, "via"), "keep@box.test c@x.test self@box.test");
	alias_free(t);
	/* more addresses than allowed */
	strcpy(big, "many:");
	for (i = 0; i < ALIAS_EXPAND_MAX + 1; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big),
		    " u%d@x.test", i);
	strcat(big, "\n");
	CHECK((t = parse(big, err, sizeof(err))) != NULL);
	CHECK_STR(expand(t, "many"), "error: alias expands to too many "
	    "addresses");
	alias_free(t);
	return 0;
}

/* Duplicates add no address but cost a step each: "a1: a2 a2 ...",
 * w names a level, ALIAS_DEPTH_MAX levels deep, walked w^8 paths (40
 * wide: newaliases ran for ever; start-up and SIGHUP too).  Refused
 * past the step bound; one width below it still expands. */
static int
test_duplicate_fanout(void)
{
	char err[256], big[8192];
	struct alias_table *t;
	int w, i, k;

	for (w = 2; w <= 3; w++) {
		big[0] = '\0';
		for (i = 1; i < 7; i++) {
			snprintf(big + strlen(big), sizeof(big) - strlen(big),
			    "a%d:", i);
			for (k = 0; k < w; k++)
				snprintf(big + strlen(big), sizeof(big) -
				    strlen(big), " a%d", i + 1);
			strcat(big, "\n");
		}
		strcat(big, "a7: x@y.test, z@y.test\n");
		CHECK((t = parse(big, err, sizeof(err))) != NULL);
		/* 2^6 paths pass; 3^6 = 729, each with its two addresses
		 * and the aliases on the way, are past 1024 steps. */
		CHECK_STR(expand(t, "a1"), w == 2 ? "x@y.test z@y.test" :
		    "error: alias expands to too many addresses");
		alias_free(t);
	}
	return 0;
}

static int
test_errors(void)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "root admin@x.test\n", "aliases:1: aliases: expected" },
		{ "\n  cont@x.test\n", "aliases:2: aliases: continuation" },
		{ "root:\n", "aliases:1: aliases: empty or bad" },
		{ "root: <a@x.test\n", "aliases:1: aliases: empty or bad" },
		{ "root: a@@x\n", "aliases:1: aliases: empty or bad" },
		{ "ro ot: a@x.test\n", "aliases:1: aliases: bad alias name" },
		{ "a@b: a@x.test\n", "aliases:1: aliases: bad alias name" },
		{ "root: a@x.test\nroot: b@x.test\n",
		    "aliases:2: aliases: alias defined twice" },
		{ "x: a@x.test\nroot: a\rb\n", "aliases:2: aliases: NUL" },
	};
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(parse(bad[i].text, err, sizeof(err)) == NULL);
		if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0) {
			fprintf(stderr, "  case %zu: %s\n", i, err);
			return 1;
		}
	}
	/* NUL inside the text, explicit length */
	CHECK(alias_parse("aliases", "r: a\0b\n", 7, err, sizeof(err)) ==
	    NULL);
	return 0;
}

/*
 * sendmail's and Postfix's local forms - |command, /file, :include: -
 * were read as addresses: "|/usr/bin/procmail" is a valid local part
 * and went to |/usr/bin/procmail@origin.  A display name was split into
 * words, each an address: "John Doe <j@x>" mailed John and Doe at
 * origin as well as j@x.  Each is refused at load, naming the line.
 */
static int
test_local_forms_refused(void)
{
	static const char *const local[] = {
		"root: |/usr/bin/procmail\n",
		"root: \"|/usr/bin/procmail -a\"\n",
		"root: |\"/usr/bin/procmail -a\"\n",
		"x: a@x.test\nroot: /var/mail/root\n",
		"root: a@x.test, \"/var/mail/root\"\n",
		"root: :include:/etc/list\n",
		"root: :include: /etc/list\n",
		"root: <|/bin/cat>\n",
	}, *const names[] = {
		"root: John Doe <j@x.test>\n",
		"root: John <j@x.test>\n",
		"root: \"John\" <j@x.test>\n",
		"x: a@x.test\nroot: a@x.test, Doe <j@x.test>\n",
		"root: <j@x.test> John\n",
		"root: <j@x.test> <k@x.test> John\n",
		"root: John\n  <j@x.test>\n",
	};
	char err[256], want[128];
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(local) / sizeof(local[0]) +
	    sizeof(names) / sizeof(names[0]); i++) {
		const char *text = i < sizeof(local) / sizeof(local[0]) ?
		    local[i] : names[i - sizeof(local) / sizeof(local[0])];

		snprintf(want, sizeof(want), "aliases:%d: aliases: %s",
		    text[0] == 'x' ? 2 : 1,
		    i < sizeof(local) / sizeof(local[0]) ?
		    "no local delivery (|command, /file, :include:)" : "no display names");
		err[0] = '\0';
		if (parse(text, err, sizeof(err)) != NULL ||
		    strncmp(err, want, strlen(want)) != 0) {
			fprintf(stderr, "  %s  -> %s\n", text, err);
			bad = 1;
		}
	}
	return bad;
}

/* What loaded before still loads: bare names, a@b, <a@b>, lists by
 * commas and/or blanks, quoted local parts. */
static int
test_forms_kept(void)
{
	char err[256];
	struct alias_table *t = parse("k1: <a@x.test>\n"
	    "k2: <a@x.test> <b@x.test>,<c@x.test>\n"
	    "k3: <a@x.test>, b, c@x.test d\n"
	    "k4: \"john.doe\"@x.test, \"a>\"@x.test \"x|y\"@x.test\n"
	    "k5: user@[127.0.0.1] ops/x@x.test\n", err, sizeof(err));

	if (t == NULL)
		fprintf(stderr, "  %s\n", err);
	CHECK(t != NULL);
	CHECK_STR(expand(t, "k1"), "a@x.test");
	CHECK_STR(expand(t, "k2"), "a@x.test b@x.test c@x.test");
	CHECK_STR(expand(t, "k3"), "a@x.test b@box.test c@x.test d@box.test");
	CHECK_STR(expand(t, "k4"), "\"john.doe\"@x.test \"a>\"@x.test "
	    "\"x|y\"@x.test");
	CHECK_STR(expand(t, "k5"), "user@[127.0.0.1] ops/x@x.test");
	alias_free(t);
	return 0;
}

static int
test_no_table(void)
{
	CHECK_STR(expand(NULL, "root"), "root@box.test");
	CHECK_STR(expand(NULL, "x@y.test"), "x@y.test");
	return 0;
}

static const struct t_case cases[] = {
	{ "basic lookups and domains", test_basic },
	{ "continuation lines, duplicates", test_continuation_and_dedup },
	{ "loops and the expansion limit", test_loops_and_limits },
	{ "duplicates fanning out are bounded", test_duplicate_fanout },
	{ "errors name file, line and what", test_errors },
	{ "|command, /file, :include:, display names refused",
	    test_local_forms_refused },
	{ "addresses, <addresses>, lists, quoted parts load",
	    test_forms_kept },
	{ "no aliases file", test_no_table },
};

T_MAIN("alias", cases)
