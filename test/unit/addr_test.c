/*
 * addr_test.c - table-driven tests of addr.c: RFC 5321 paths good and
 * bad (source routes, quoting, literals, UTF-8, limits, control bytes,
 * junk), the exact bytes consumed, the output and the error phrase, and
 * the routing tricks relay policy must see (percent hack, bang paths,
 * quoted '@').
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "test/unit/t.h"

#define OUTSZ		(ADDR_PATH_MAX + 8)
#define CANARY		'#'

struct path_case {
	const char *label;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	unsigned flags;
	int ret;		/* bytes consumed, or -1 */
	const char *out;	/* expected output when ret >= 0 */
	const char *why;	/* expected phrase when ret < 0 */
};

#define U	ADDR_UTF8
#define N	ADDR_NULL_OK
#define B	ADDR_BARE_OK
#define A	ADDR_ALONE

static const struct path_case path_cases[] = {
	/* plain */
	{ "simple", "<a@b.example>", 0, 0, 13, "a@b.example", NULL },
	{ "case kept", "<User.Name+tag@Example.COM>", 0, 0, 27,
	    "User.Name+tag@Example.COM", NULL },
	{ "all atext", "<!#$%&'*+-/=?^_`{|}~@x.example>", 0, 0, 31,
	    "!#$%&'*+-/=?^_`{|}~@x.example", NULL },
	{ "params after", "<a@b.example> SIZE=10", 0, 0, 13,
	    "a@b.example", NULL },
	{ "one-label domain", "<a@localhost>", 0, 0, 13, "a@localhost",
	    NULL },
	{ "digits and hyphen", "<a@x-y.123.example>", 0, 0, 19,
	    "a@x-y.123.example", NULL },
	/* null path and bare local parts */
	{ "null ok", "<>", 0, N, 2, "", NULL },
	{ "null with params", "<> SIZE=1", 0, N, 2, "", NULL },
	{ "null refused", "<>", 0, 0, -1, NULL,
	    "null address not allowed here" },
	{ "null refused on rcpt", "<>", 0, B, -1, NULL,
	    "null address not allowed here" },
	{ "bare ok", "<postmaster>", 0, B, 12, "postmaster", NULL },
	{ "bare root", "<root>", 0, B, 6, "root", NULL },
	{ "bare refused", "<postmaster>", 0, 0, -1, NULL, "missing domain" },
	{ "bare refused null ok", "<root>", 0, N, -1, NULL,
	    "missing domain" },
	/* source routes (§4.1.2: ignored) */
	{ "route two hops", "<@a.example,@b.example:user@c.example>", 0, 0,
	    38, "user@c.example", NULL },
	{ "route one hop", "<@a.example:user@c.example>", 0, 0, 27,
	    "user@c.example", NULL },
	{ "route no colon", "<@a.example,user@c.example>", 0, 0, -1, NULL,
	    "bad source route" },
	{ "route only", "<@a.example>", 0, 0, -1, NULL, "bad source route" },
	{ "route empty domain", "<@:a@b.example>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "route bad domain", "<@a..b:u@c.example>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "route then empty local", "<@a.example:@c.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "route literal refused", "<@[1.2.3.4]:u@c.example>", 0, 0, -1, NULL,
	    "bad domain" },
	/* quoted local parts: kept as written */
	{ "quoted at", "<\"a@b\"@c.example>", 0, 0, 17, "\"a@b\"@c.example",
	    NULL },
	{ "quoted space", "<\"a b\"@c.example>", 0, 0, 17,
	    "\"a b\"@c.example", NULL },
	{ "quoted pair", "<\"a\\\"b\"@x.example>", 0, 0, 18,
	    "\"a\\\"b\"@x.example", NULL },
	{ "quoted empty", "<\"\"@x.example>", 0, 0, 14, "\"\"@x.example",
	    NULL },
	{ "quoted unterminated", "<\"abc@x.example>", 0, 0, -1, NULL,
	    "unterminated quoted string" },
	{ "quoted pair at end", "<\"a\\", 0, 0, -1, NULL,
	    "unterminated quoted string" },
	{ "quoted then atom", "<\"a\"b@x.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "atom then quoted", "<a\"b\"@x.example>", 0, 0, -1, NULL,
	    "bad local part" },
	/* routing tricks parse; addr_has_routing() catches them */
	{ "percent hack", "<a%b@x.example>", 0, 0, 15, "a%b@x.example",
	    NULL },
	{ "bang path", "<b!a@x.example>", 0, 0, 15, "b!a@x.example", NULL },
	/* brackets and junk */
	{ "missing >", "<a@b", 0, 0, -1, NULL, "missing >" },
	{ "missing > long", "<a@b.example", 0, 0, -1, NULL, "missing >" },
	{ "only <", "<", 0, 0, -1, NULL, "missing >" },
	{ "missing <", "a@b.example>", 0, 0, -1, NULL, "missing <" },
	{ "leading space", " <a@b.example>", 0, 0, -1, NULL, "missing <" },
	{ "empty", "", 0, 0, -1, NULL, "missing <" },
	{ "junk after >", "<a@b.example>x", 0, 0, -1, NULL,
	    "junk after address" },
	{ "double >", "<a@b.example>>", 0, 0, -1, NULL, "junk after address" },
	{ "junk after null", "<>x", 0, N, -1, NULL, "junk after address" },
	/* ADDR_ALONE: an address from a file, nothing may follow */
	{ "alone", "<a@b.example>", 0, A, 13, "a@b.example", NULL },
	{ "alone null", "<>", 0, A | N, 2, "", NULL },
	{ "alone params", "<a@b.example> NOTIFY=SUCCESS", 0, A, -1, NULL,
	    "junk after address" },
	{ "alone space", "<a@b.example> ", 0, A, -1, NULL,
	    "junk after address" },
	{ "alone null params", "<> SIZE=1", 0, A | N, -1, NULL,
	    "junk after address" },
	{ "alone quoted space", "<\"a b\"@c.example>", 0, A, 17,
	    "\"a b\"@c.example", NULL },
	{ "junk in domain", "<a@b.example c>", 0, 0, -1, NULL, "bad domain" },
	{ "space in local", "<a b@c.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "display name", "<John <j@x.example>>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "two ats", "<a@b@c.example>", 0, 0, -1, NULL, "bad domain" },
	{ "comma in domain", "<a@b,c>", 0, 0, -1, NULL, "bad domain" },
	/* dot-strings: stray dots taken as Postfix takes them, kept as
	 * written (old Japanese mobile addresses) */
	{ "leading dot", "<.a@b.example>", 0, 0, 14, ".a@b.example", NULL },
	{ "trailing dot", "<a.@b.example>", 0, 0, 14, "a.@b.example", NULL },
	{ "double dot", "<a..b@c.example>", 0, 0, 16, "a..b@c.example",
	    NULL },
	{ "dots everywhere", "<..a...b..@c.example>", 0, 0, 21,
	    "..a...b..@c.example", NULL },
	{ "only a dot", "<.@c.example>", 0, 0, 13, ".@c.example", NULL },
	{ "bare dots", "<a..>", 0, B, 5, "a..", NULL },
	{ "dots alone", "<.a.>", 0, A, -1, NULL, "missing domain" },
	{ "route then dots", "<@r.example:.a..b@c.example>", 0, 0, 28,
	    ".a..b@c.example", NULL },
	{ "utf8 dots", "<\xc3\xa9..\xc3\xa9.@x.example>", 0, U, 19,
	    "\xc3\xa9..\xc3\xa9.@x.example", NULL },
	{ "dots percent hack", "<a..%b@x.example>", 0, 0, 17,
	    "a..%b@x.example", NULL },
	{ "dot then quoted", "<.\"a\"@x.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "quoted then dot", "<\"a\".@x.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "dot then space", "<a. b@x.example>", 0, 0, -1, NULL,
	    "bad local part" },
	{ "domain double dot", "<a..b@c..example>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "paren", "<a(b)@c.example>", 0, 0, -1, NULL, "bad local part" },
	/* domains */
	{ "domain leading hyphen", "<a@-b.example>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "domain trailing hyphen", "<a@b-.example>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "domain trailing dot", "<a@b.example.>", 0, 0, -1, NULL,
	    "bad domain" },
	{ "domain leading dot", "<a@.example>", 0, 0, -1, NULL, "bad domain" },
	{ "domain empty", "<a@>", 0, 0, -1, NULL, "bad domain" },
	{ "domain underscore", "<a@b_c.example>", 0, 0, -1, NULL,
	    "bad domain" },
	/* address literals */
	{ "literal v4", "<a@[192.0.2.1]>", 0, 0, 15, "a@[192.0.2.1]", NULL },
	{ "literal v6", "<a@[IPv6:2001:db8::1]>", 0, 0, 22,
	    "a@[IPv6:2001:db8::1]", NULL },
	{ "literal v6 lower tag", "<a@[ipv6:::1]>", 0, 0, 14,
	    "a@[ipv6:::1]", NULL },
	{ "literal 8-bit", "<a@[IP\x96:::1]>", 0, U, -1, NULL,
	    "bad address literal" },
	{ "literal v6 tag short", "<a@[IPv6]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal v4 256", "<a@[192.0.2.256]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal v4 short", "<a@[1.2.3]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal v4 in v6 tag", "<a@[IPv6:1.2.3.4]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal v6 untagged", "<a@[2001:db8::1]>", 0, 0, -1, NULL,
	    "unsupported address literal" },
	{ "literal general", "<a@[x400:c=us]>", 0, 0, -1, NULL,
	    "unsupported address literal" },
	{ "literal empty", "<a@[]>", 0, 0, -1, NULL, "bad address literal" },
	{ "literal empty v6", "<a@[IPv6:]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal no ]", "<a@[192.0.2.1>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal cut", "<a@[192.0.2.1", 0, 0, -1, NULL, "missing >" },
	{ "literal space", "<a@[192.0.2.1 ]>", 0, 0, -1, NULL,
	    "bad address literal" },
	{ "literal too long", "<a@[IPv6:0000:0000:0000:0000:0000:0000:0000:"
	    "0000:0000:0000]>", 0, 0, -1, NULL, "bad address literal" },
	/* UTF-8 (RFC 6531) */
	{ "utf8 greek", "<\xce\xb4\xce\xbf\xce\xba@\xcf\x80.example>", 0, U,
	    19, "\xce\xb4\xce\xbf\xce\xba@\xcf\x80.example", NULL },
	{ "utf8 without flag", "<\xce\xb4@x.example>", 0, 0, -1, NULL,
	    "8-bit address without SMTPUTF8" },
	{ "utf8 domain without flag", "<a@\xe4\xbe\x8b.example>", 0, 0, -1,
	    NULL, "8-bit address without SMTPUTF8" },
	{ "utf8 domain", "<a@\xe4\xbe\x8b.example>", 0, U, 15,
	    "a@\xe4\xbe\x8b.example", NULL },
	{ "utf8 4-byte", "<a\xf0\x9f\x98\x80@x.example>", 0, U, 17,
	    "a\xf0\x9f\x98\x80@x.example", NULL },
	{ "utf8 quoted", "<\"\xc3\xa9 x\"@x.example>", 0, U, 18,
	    "\"\xc3\xa9 x\"@x.example", NULL },
	{ "utf8 quoted without flag", "<\"\xc3\xa9\"@x.example>", 0, 0, -1,
	    NULL, "8-bit address without SMTPUTF8" },
	{ "utf8 in quoted pair", "<\"\\\xc3\xa9\"@x.example>", 0, U, -1,
	    NULL, "bad quoted pair" },
	{ "utf8 overlong 2", "<a\xc0\xaf@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 overlong 3", "<a\xe0\x80\xaf@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 overlong 4", "<a\xf0\x80\x80\xaf@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 surrogate", "<a\xed\xa0\x80@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 past 10FFFF", "<a\xf4\x90\x80\x80@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 F5", "<a\xf5\x80\x80\x80@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 lone continuation", "<a\x80@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 truncated", "<a\xc3@x.example>", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 truncated at end", "<a@b\xe4\xbe", 0, U, -1, NULL,
	    "invalid UTF-8 in address" },
	{ "utf8 max", "<a\xf4\x8f\xbf\xbf@x.example>", 0, U, 17,
	    "a\xf4\x8f\xbf\xbf@x.example", NULL },
	/* C1 controls and bidi overrides: valid UTF-8, no address's */
	{ "utf8 C1 CSI", "<a\xc2\x9b" "31m@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 C1 first", "<a\xc2\x80@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 NBSP after C1", "<a\xc2\xa0@x.example>", 0, U, 15,
	    "a\xc2\xa0@x.example", NULL },
	{ "utf8 RLO", "<a\xe2\x80\xae" "b@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 LRE", "<a\xe2\x80\xaa@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 PDI", "<a\xe2\x81\xa9@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 LRM", "<a\xe2\x80\x8e@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 LINE SEPARATOR", "<a\xe2\x80\xa8@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	/* ALM, the third bidi mark (UAX 9): was taken where LRM was not */
	{ "utf8 ALM", "<a\xd8\x9c@x.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 ALM in domain", "<a@x\xd8\x9c.example>", 0, U, -1, NULL,
	    "control character in address" },
	{ "utf8 Arabic letter kept", "<a\xd8\x9b@x.example>", 0, U, 15,
	    "a\xd8\x9b@x.example", NULL },
	{ "utf8 en dash", "<a\xe2\x80\x93@x.example>", 0, U, 16,
	    "a\xe2\x80\x93@x.example", NULL },
	/* control bytes, NUL included, anywhere */
	{ "NUL in local", "<a\0b@x.example>", 15, 0, -1, NULL,
	    "control character in address" },
	{ "NUL in domain", "<a@b\0.example>", 14, 0, -1, NULL,
	    "control character in address" },
	{ "NUL in quotes", "<\"a\0\"@x.example>", 16, 0, -1, NULL,
	    "control character in address" },
	{ "NUL in quoted pair", "<\"\\\0\"@x.example>", 16, 0, -1, NULL,
	    "control character in address" },
	{ "NUL in literal", "<a@[1.2\0.3.4]>", 14, 0, -1, NULL,
	    "control character in address" },
	{ "NUL after >", "<a@x.example>\0", 14, 0, -1, NULL,
	    "junk after address" },
	{ "NUL first", "\0<a@x.example>", 14, 0, -1, NULL, "missing <" },
	{ "NUL as local", "<\0@x.example>", 13, 0, -1, NULL,
	    "control character in address" },
	{ "tab", "<a\t@x.example>", 0, 0, -1, NULL,
	    "control character in address" },
	{ "DEL quoted", "<\"a\x7f\"@x.example>", 0, 0, -1, NULL,
	    "control character in address" },
	{ "CR", "<a@x.example\r>", 0, 0, -1, NULL,
	    "control character in address" },
	/* an explicit length shorter than the string is the whole input */
	{ "length cuts >", "<a@b.example>", 12, 0, -1, NULL, "missing >" },
	{ "length cuts params", "<a@b.example> SIZE=1", 13, 0, 13,
	    "a@b.example", NULL },
};

static int
path_check(const struct path_case *c)
{
	char out[OUTSZ];
	const char *why = "unset";
	size_t len = c->len ? c->len : strlen(c->in);
	int ret;

	memset(out, CANARY, sizeof(out));
	ret = addr_parse_path(c->in, len, c->flags, out, sizeof(out), &why);
	if (ret != c->ret) {
		fprintf(stderr, "  [%s] ret %d, want %d (why %s)\n", c->label,
		    ret, c->ret, why ? why : "(null)");
		return 1;
	}
	if (ret >= 0) {
		if (why != NULL || strcmp(out, c->out) != 0) {
			fprintf(stderr, "  [%s] out \"%s\", want \"%s\"\n",
			    c->label, out, c->out);
			return 1;
		}
		if (c->in[ret - 1] != '>') {
			fprintf(stderr, "  [%s] consumed past '>'\n", c->label);
			return 1;
		}
	} else {
		if (why == NULL || strcmp(why, c->why) != 0) {
			fprintf(stderr, "  [%s] why \"%s\", want \"%s\"\n",
			    c->label, why ? why : "(null)", c->why);
			return 1;
		}
		if (out[0] != '\0') {
			fprintf(stderr, "  [%s] output left on error\n",
			    c->label);
			return 1;
		}
	}
	return 0;
}

static int
test_path_table(void)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++)
		bad |= path_check(&path_cases[i]);
	return bad;
}

/* "<" + localn bytes of 'l' + "@" + domain + ">"; 0 if it does not fit */
static size_t
build_path(char *buf, size_t bufsz, size_t localn, const char *domain)
{
	size_t n = 0, dlen = strlen(domain);

	if (localn + dlen + 4 > bufsz)
		return 0;
	buf[n++] = '<';
	memset(buf + n, 'l', localn);
	n += localn;
	buf[n++] = '@';
	memcpy(buf + n, domain, dlen);
	n += dlen;
	buf[n++] = '>';
	buf[n] = '\0';
	return n;
}

/* A domain of total length n made of labels of at most lab bytes. */
static void
build_domain(char *buf, size_t n, size_t lab)
{
	size_t i, run = 0;

	for (i = 0; i < n; i++) {
		if (run == lab && i + 1 < n) {
			buf[i] = '.';
			run = 0;
		} else {
			buf[i] = 'd';
			run++;
		}
	}
	buf[n] = '\0';
}

/* A local part past §4.5.3.1.1's 64 octets (VERP, SRS) is taken as
 * Postfix takes it; only the path's 256 octets bound it, quoted or
 * bare. */
static int
test_local_limits(void)
{
	char in[512], out[OUTSZ];
	const char *why;
	size_t n;

	/* 256 = "<" + 244 + "@x.example>": the longest path */
	n = build_path(in, sizeof(in), 65, "x.example");
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == (int)n);
	CHECK(strlen(out) == 65 + 10);
	n = build_path(in, sizeof(in), 244, "x.example");
	CHECK(n == ADDR_PATH_MAX);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == (int)n);
	CHECK(strlen(out) == 244 + 10);
	n = build_path(in, sizeof(in), 245, "x.example");
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "path too long");

	/* bare, with the flag: the path's limit */
	memset(in, 'l', sizeof(in));
	in[0] = '<';
	in[ADDR_PATH_MAX - 1] = '>';
	CHECK(addr_parse_path(in, ADDR_PATH_MAX, B, out, sizeof(out),
	    &why) == ADDR_PATH_MAX);
	in[ADDR_PATH_MAX - 1] = 'l';
	in[ADDR_PATH_MAX] = '>';
	CHECK(addr_parse_path(in, ADDR_PATH_MAX + 1, B, out, sizeof(out),
	    &why) == -1);
	CHECK_STR(why, "path too long");

	/* quoted, 100 octets with the quotes */
	memset(in, 'q', sizeof(in));
	in[0] = '<';
	in[1] = '"';
	in[100] = '"';
	memcpy(in + 101, "@x>", 4);
	n = strlen(in);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == (int)n);
	CHECK(strlen(out) == 100 + 2);
	return 0;
}

static int
test_domain_limits(void)
{
	char in[600], dom[300], out[OUTSZ];
	const char *why;
	size_t n;

	/* label 63 ok, 64 refused */
	build_domain(dom, 63, 63);
	strcat(dom, ".example");
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == (int)n);
	build_domain(dom, 64, 64);
	strcat(dom, ".example");
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "domain label too long");
	/* the last label too */
	memcpy(dom, "x.", 2);
	build_domain(dom + 2, 64, 64);
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "domain label too long");

	/* 256 octets of domain: over §4.5.3.1.2 before the path limit */
	build_domain(dom, ADDR_DOMAIN_MAX + 1, 62);
	CHECK(strlen(dom) == ADDR_DOMAIN_MAX + 1);
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "domain too long");

	/* path exactly ADDR_PATH_MAX ok, one more refused */
	build_domain(dom, ADDR_PATH_MAX - 4, 63);
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(n == ADDR_PATH_MAX);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == (int)n);
	CHECK(strlen(out) == ADDR_PATH_MAX - 2);
	build_domain(dom, ADDR_PATH_MAX - 3, 63);
	n = build_path(in, sizeof(in), 1, dom);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "path too long");

	/* a source route counts toward the path limit */
	n = 0;
	in[n++] = '<';
	while (n < ADDR_PATH_MAX) {
		memcpy(in + n, "@r.example,", 11);
		n += 11;
	}
	memcpy(in + n - 1, ":u@x.example>", 14);
	n = strlen(in);
	CHECK(n > ADDR_PATH_MAX);
	CHECK(addr_parse_path(in, n, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "path too long");
	return 0;
}

static int
test_outsz(void)
{
	const char *in = "<a@b.example>";
	char out[32];
	const char *why;

	/* "a@b.example" needs 12 bytes with its NUL */
	memset(out, CANARY, sizeof(out));
	CHECK(addr_parse_path(in, 13, 0, out, 11, &why) == -1);
	CHECK_STR(why, "address too long");
	CHECK(out[0] == '\0');
	CHECK(out[11] == CANARY && out[12] == CANARY);
	memset(out, CANARY, sizeof(out));
	CHECK(addr_parse_path(in, 13, 0, out, 12, &why) == 13);
	CHECK_STR(out, "a@b.example");
	CHECK(out[12] == CANARY);
	/* zero-size output: never touched */
	memset(out, CANARY, sizeof(out));
	CHECK(addr_parse_path(in, 13, 0, out, 0, &why) == -1);
	CHECK(out[0] == CANARY);
	CHECK(addr_parse_path(in, 13, 0, NULL, 0, &why) == -1);
	/* the null path needs one byte */
	CHECK(addr_parse_path("<>", 2, N, out, 1, &why) == 2);
	CHECK(out[0] == '\0');
	/* why may be NULL */
	CHECK(addr_parse_path("x", 1, 0, out, sizeof(out), NULL) == -1);
	CHECK(addr_parse_path(NULL, 0, 0, out, sizeof(out), &why) == -1);
	CHECK_STR(why, "missing <");
	return 0;
}

struct domain_case {
	const char *addr;
	const char *domain;	/* NULL: none */
};

static const struct domain_case domain_cases[] = {
	{ "a@b.example", "b.example" },
	{ "\"a@b\"@c.example", "c.example" },
	{ "\"a\\\"@b\"@c.example", "c.example" },
	{ "a@[192.0.2.1]", "[192.0.2.1]" },
	{ "postmaster", NULL },
	{ "\"a@b\"", NULL },
	{ "", NULL },
	{ "a@b@c.example", "c.example" },
	{ "a@", "" },
};

static int
test_domain(void)
{
	size_t i;
	const char *d;

	for (i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++) {
		d = addr_domain(domain_cases[i].addr);
		if (domain_cases[i].domain == NULL)
			CHECK(d == NULL);
		else
			CHECK_STR(d, domain_cases[i].domain);
	}
	CHECK(addr_domain(NULL) == NULL);
	return 0;
}

struct routing_case {
	const char *addr;
	int routing;
};

static const struct routing_case routing_cases[] = {
	{ "a%b@x.example", 1 },
	{ "a%b.example@x.example", 1 },
	{ "b!a@x.example", 1 },
	{ "host!host2!user@x.example", 1 },
	{ "\"a@b\"@x.example", 1 },
	{ "\"a%b\"@x.example", 1 },
	{ "\"a!b\"@x.example", 1 },
	{ "\"a\\@b\"@x.example", 1 },
	{ "a@b@x.example", 1 },
	{ "a%b", 1 },
	{ "\"a@b\"", 1 },
	{ "a@x.example", 0 },
	{ "a.b+c-d@x.example", 0 },
	{ "a..b.@x.example", 0 },
	{ ".a%b@x.example", 1 },
	{ "b..!a@x.example", 1 },
	{ "\"a b\"@x.example", 0 },
	{ "postmaster", 0 },
	{ "", 0 },
	{ "a@[192.0.2.1]", 0 },
};

static int
test_routing(void)
{
	size_t i;

	for (i = 0; i < sizeof(routing_cases) / sizeof(routing_cases[0]);
	    i++) {
		if (!addr_has_routing(routing_cases[i].addr) !=
		    !routing_cases[i].routing) {
			fprintf(stderr, "  routing(%s) wrong\n",
			    routing_cases[i].addr);
			return 1;
		}
	}
	CHECK(addr_has_routing(NULL) == 0);
	return 0;
}

/* What relay policy sees end to end: the route is gone, the trick stays
 * visible, and the domain is the last one. */
static int
test_parse_then_policy(void)
{
	char out[OUTSZ];
	const char *why;
	const char *in1 = "<@relay.example:a%victim.example@ok.example>";
	const char *in2 = "<\"v@victim.example\"@ok.example>";

	CHECK(addr_parse_path(in1, strlen(in1), 0, out, sizeof(out), &why) ==
	    (int)strlen(in1));
	CHECK_STR(out, "a%victim.example@ok.example");
	CHECK(addr_has_routing(out));
	CHECK_STR(addr_domain(out), "ok.example");
	CHECK(addr_parse_path(in2, strlen(in2), 0, out, sizeof(out), &why) ==
	    (int)strlen(in2));
	CHECK(addr_has_routing(out));
	CHECK_STR(addr_domain(out), "ok.example");
	return 0;
}

static int
test_lower(void)
{
	char out[16];

	addr_domain_lower("ExAmple.COM", out, sizeof(out));
	CHECK_STR(out, "example.com");
	addr_domain_lower("[IPv6:2001:DB8::1]", out, sizeof(out));
	CHECK_STR(out, "[ipv6:2001:db8:");	/* cut at 15 + NUL */
	addr_domain_lower("EXAMPLE", out, 4);
	CHECK_STR(out, "exa");
	memset(out, CANARY, sizeof(out));
	addr_domain_lower("EXAMPLE", out, 0);
	CHECK(out[0] == CANARY);
	addr_domain_lower("EXAMPLE", out, 1);
	CHECK(out[0] == '\0' && out[1] == CANARY);
	addr_domain_lower("\xc3\x89.X", out, sizeof(out));
	CHECK_STR(out, "\xc3\x89.x");
	addr_domain_lower(NULL, out, sizeof(out));
	CHECK_STR(out, "");
	return 0;
}

/* addr_literal(): the address a literal domain names, canonical. */
struct literal_case {
	const char *domain;
	int family;		/* 0: no literal */
	const char *ip;
};

static const struct literal_case literal_cases[] = {
	{ "[192.0.2.1]", AF_INET, "192.0.2.1" },
	{ "[IPv6:2001:DB8::1]", AF_INET6, "2001:db8::1" },
	{ "[ipv6:2001:db8:0:0::1]", AF_INET6, "2001:db8::1" },
	{ "[IPV6:0::0:1]", AF_INET6, "::1" },
	{ "[IPv6:::]", AF_INET6, "::" },
	{ "[IPv6:::ffff:192.0.2.1]", AF_INET, "192.0.2.1" },	/* mapped */
	{ "[IPv6:::192.0.2.1]", AF_INET6, "::192.0.2.1" },	/* not */
	{ "[0.0.0.0]", AF_INET, "0.0.0.0" },
	{ "192.0.2.1", 0, NULL },		/* a name, as far as DNS goes */
	{ "[2001:db8::1]", 0, NULL },		/* no tag */
	{ "[IPv6:1.2.3.4]", 0, NULL },
	{ "[192.0.2.1", 0, NULL },
	{ "[192.0.2.1] ", 0, NULL },
	{ "[]", 0, NULL },
	{ "[", 0, NULL },
	{ "", 0, NULL },
	{ "[mx.example]", 0, NULL },
	{ "[IPv6:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]", 0,
	    NULL },
};

static int
test_literal(void)
{
	const struct literal_case *c;
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN], back[INET6_ADDRSTRLEN];
	socklen_t len;
	size_t i;

	for (i = 0; i < sizeof(literal_cases) / sizeof(literal_cases[0]);
	    i++) {
		c = &literal_cases[i];
		memset(&ss, CANARY, sizeof(ss));
		len = addr_literal(c->domain, &ss, ip);
		if (c->family == 0) {
			if (len != 0) {
				fprintf(stderr, "  literal(%s) taken\n",
				    c->domain);
				return 1;
			}
			continue;
		}
		CHECK(ss.ss_family == c->family);
		CHECK(len == (c->family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
		CHECK_STR(ip, c->ip);
		/* ss holds that address, and port 0. */
		CHECK(inet_ntop(c->family, c->family == AF_INET ?
		    (void *)&((struct sockaddr_in *)&ss)->sin_addr :
		    (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, back,
		    sizeof(back)) != NULL);
		CHECK_STR(back, c->ip);
		CHECK(((struct sockaddr_in *)&ss)->sin_port == 0);
	}
	CHECK(addr_literal(NULL, &ss, ip) == 0);
	return 0;
}

static const struct t_case cases[] = {
	{ "path table", test_path_table },
	{ "local parts past 64, up to the path's 256", test_local_limits },
	{ "domain, label and path limits", test_domain_limits },
	{ "output buffer bounds", test_outsz },
	{ "addr_domain", test_domain },
	{ "addr_has_routing", test_routing },
	{ "parse then policy", test_parse_then_policy },
	{ "addr_domain_lower", test_lower },
	{ "addr_literal", test_literal },
};

T_MAIN("addr", cases)
