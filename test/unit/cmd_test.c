/*
 * cmd_test.c - table-driven tests of cmd.c: verbs in any case, the
 * argument split, refused bytes (NUL, CR, LF, TAB, DEL), HTTP requests,
 * the FROM:/TO: prefix, ESMTP parameters (SIZE overflow, duplicates,
 * unknown, too many) and the names used in logs; then one MAIL line
 * taken apart the way smtp.c will.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "cmd.h"
#include "test/unit/t.h"

struct parse_case {
	const char *label;
	const char *line;
	size_t len;		/* 0: strlen(line) */
	int rc;
	enum cmd_verb verb;
	const char *arg;	/* expected argument when rc == 0 */
};

static const struct parse_case parse_cases[] = {
	{ "EHLO", "EHLO mail.example", 0, 0, CMD_EHLO, "mail.example" },
	{ "ehlo lower", "ehlo mail.example", 0, 0, CMD_EHLO, "mail.example" },
	{ "EhLo mixed", "EhLo x", 0, 0, CMD_EHLO, "x" },
	{ "HELO bare", "HELO", 0, 0, CMD_HELO, "" },
	{ "MAIL", "MAIL FROM:<a@b.example>", 0, 0, CMD_MAIL,
	    "FROM:<a@b.example>" },
	{ "mail lower", "mail from:<a@b.example>", 0, 0, CMD_MAIL,
	    "from:<a@b.example>" },
	{ "RCPT", "RCPT TO:<a@b.example>", 0, 0, CMD_RCPT,
	    "TO:<a@b.example>" },
	{ "DATA", "DATA", 0, 0, CMD_DATA, "" },
	{ "RSET", "rset", 0, 0, CMD_RSET, "" },
	{ "NOOP arg", "NOOP hello there", 0, 0, CMD_NOOP, "hello there" },
	{ "QUIT", "QUIT", 0, 0, CMD_QUIT, "" },
	{ "QUIT trailing space", "QUIT ", 0, 0, CMD_QUIT, "" },
	{ "HELP", "HELP", 0, 0, CMD_HELP, "" },
	{ "VRFY", "VRFY root", 0, 0, CMD_VRFY, "root" },
	{ "EXPN", "EXPN list", 0, 0, CMD_EXPN, "list" },
	{ "STARTTLS", "StartTLS", 0, 0, CMD_STARTTLS, "" },
	{ "AUTH", "AUTH PLAIN AGEAYg==", 0, 0, CMD_AUTH, "PLAIN AGEAYg==" },
	{ "BDAT", "BDAT 100 LAST", 0, 0, CMD_BDAT, "100 LAST" },
	{ "ETRN", "ETRN example.org", 0, 0, CMD_ETRN, "example.org" },
	{ "two spaces keep one", "MAIL  FROM:<a>", 0, 0, CMD_MAIL,
	    " FROM:<a>" },
	{ "8-bit argument", "EHLO \xc3\xa9.example", 0, 0, CMD_EHLO,
	    "\xc3\xa9.example" },
	/* unknown verbs are not errors */
	{ "missing space", "MAILFROM:<a@b.example>", 0, 0, CMD_UNKNOWN,
	    "" },
	{ "verb prefix", "MAILX", 0, 0, CMD_UNKNOWN, "" },
	{ "verb too short", "MAI", 0, 0, CMD_UNKNOWN, "" },
	{ "leading space", " QUIT", 0, 0, CMD_UNKNOWN, "QUIT" },
	{ "empty", "", 0, 0, CMD_UNKNOWN, "" },
	{ "unknown", "XCLIENT ADDR=1.2.3.4", 0, 0, CMD_UNKNOWN,
	    "ADDR=1.2.3.4" },
	{ "binary junk", "\xff\xfe\x80\x81", 0, 0, CMD_UNKNOWN, "" },
	{ "HTTP not a verb", "HTTP", 0, 0, CMD_UNKNOWN, "" },
	{ "UNKNOWN not a verb", "UNKNOWN", 0, 0, CMD_UNKNOWN, "" },
	/* HTTP requests */
	{ "GET", "GET / HTTP/1.1", 0, 0, CMD_HTTP, "/ HTTP/1.1" },
	{ "POST", "POST /x HTTP/1.0", 0, 0, CMD_HTTP, "/x HTTP/1.0" },
	{ "HEAD", "HEAD / HTTP/1.0", 0, 0, CMD_HTTP, "/ HTTP/1.0" },
	{ "CONNECT", "CONNECT mx.example:25 HTTP/1.1", 0, 0, CMD_HTTP,
	    "mx.example:25 HTTP/1.1" },
	{ "PUT", "PUT /x", 0, 0, CMD_HTTP, "/x" },
	{ "GET alone", "GET", 0, 0, CMD_UNKNOWN, "" },
	{ "get lower", "get / HTTP/1.1", 0, 0, CMD_UNKNOWN, "/ HTTP/1.1" },
	{ "GETX", "GETX /", 0, 0, CMD_UNKNOWN, "/" },
	/* refused bytes */
	{ "NUL at end", "QUIT\0", 5, -1, CMD_UNKNOWN, NULL },
	{ "NUL in verb", "QU\0IT", 5, -1, CMD_UNKNOWN, NULL },
	{ "NUL in arg", "MAIL FROM:<a\0@b>", 16, -1, CMD_UNKNOWN, NULL },
	{ "NUL alone", "\0", 1, -1, CMD_UNKNOWN, NULL },
	{ "bare CR", "QUIT\r", 0, -1, CMD_UNKNOWN, NULL },
	{ "bare LF", "DATA\nQUIT", 0, -1, CMD_UNKNOWN, NULL },
	{ "TAB", "EHLO\tx", 0, -1, CMD_UNKNOWN, NULL },
	{ "TAB in arg", "EHLO a\tb", 0, -1, CMD_UNKNOWN, NULL },
	{ "DEL", "QUIT\x7f", 0, -1, CMD_UNKNOWN, NULL },
	{ "ESC", "\x1b[AQUIT", 0, -1, CMD_UNKNOWN, NULL },
	{ "control in HTTP", "GET /\x01", 0, -1, CMD_UNKNOWN, NULL },
	/* the length, not a NUL, ends the line */
	{ "length cuts", "QUIT now", 4, 0, CMD_QUIT, "" },
};

static int
parse_check(const struct parse_case *c)
{
	struct cmd cmd;
	size_t len = c->len ? c->len : strlen(c->line);
	int rc;

	memset(&cmd, 0xa5, sizeof(cmd));
	rc = cmd_parse(c->line, len, &cmd);
	if (rc != c->rc) {
		fprintf(stderr, "  [%s] rc %d, want %d\n", c->label, rc, c->rc);
		return 1;
	}
	if (rc < 0)
		return 0;
	if (cmd.verb != c->verb) {
		fprintf(stderr, "  [%s] verb %s, want %s\n", c->label,
		    cmd_name(cmd.verb), cmd_name(c->verb));
		return 1;
	}
	/* arg lies inside the line and ends where the line ends */
	if (cmd.arg < c->line || cmd.arg + cmd.arglen != c->line + len ||
	    cmd.arglen != strlen(c->arg) ||
	    memcmp(cmd.arg, c->arg, cmd.arglen) != 0) {
		fprintf(stderr, "  [%s] arg \"%.*s\", want \"%s\"\n", c->label,
		    (int)cmd.arglen, cmd.arg, c->arg);
		return 1;
	}
	return 0;
}

static int
test_parse_table(void)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++)
		bad |= parse_check(&parse_cases[i]);
	return bad;
}

/* Every byte below 0x20 and DEL, at the start, middle and end. */
static int
test_parse_every_control(void)
{
	char line[16];
	struct cmd cmd;
	unsigned c;
	static const size_t where[] = { 0, 4, 7 };
	size_t i;

	for (c = 0; c < 0x80; c++) {
		if (c >= 0x20 && c != 0x7f)
			continue;
		for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
			memcpy(line, "NOOP xyz", 9);
			line[where[i]] = (char)c;
			CHECK(cmd_parse(line, 8, &cmd) == -1);
		}
	}
	CHECK(cmd_parse("NOOP xyz", 8, &cmd) == 0);
	CHECK(cmd.verb == CMD_NOOP);
	return 0;
}

static int
test_parse_null(void)
{
	struct cmd cmd;

	CHECK(cmd_parse("QUIT", 4, NULL) == -1);
	CHECK(cmd_parse(NULL, 0, &cmd) == 0);
	CHECK(cmd.verb == CMD_UNKNOWN && cmd.arglen == 0 && cmd.arg != NULL);
	CHECK(cmd_parse(NULL, 3, &cmd) == -1);
	return 0;
}

struct path_case {
	const char *line;
	enum cmd_verb verb;
	int off;		/* offset into arg, or -1 */
};

static const struct path_case path_cases[] = {
	{ "MAIL FROM:<a@b.example>", CMD_MAIL, 5 },
	{ "MAIL from:<a@b.example>", CMD_MAIL, 5 },
	{ "MAIL FrOm:<a@b.example>", CMD_MAIL, 5 },
	{ "MAIL FROM: <a@b.example>", CMD_MAIL, 6 },
	{ "MAIL FROM:   <a@b.example>", CMD_MAIL, 8 },
	{ "MAIL FROM:<>", CMD_MAIL, 5 },
	{ "MAIL FROM:", CMD_MAIL, 5 },
	{ "MAIL FROM:a@b.example", CMD_MAIL, 5 },
	{ "MAIL FROM <a@b.example>", CMD_MAIL, -1 },
	{ "MAIL FROM", CMD_MAIL, -1 },
	{ "MAIL FRO", CMD_MAIL, -1 },
	{ "MAIL", CMD_MAIL, -1 },
	{ "MAIL TO:<a@b.example>", CMD_MAIL, -1 },
	{ "MAIL  FROM:<a@b.example>", CMD_MAIL, -1 },
	{ "MAIL FROMX:<a@b.example>", CMD_MAIL, -1 },
	{ "RCPT TO:<a@b.example>", CMD_RCPT, 3 },
	{ "rcpt to:<a@b.example>", CMD_RCPT, 3 },
	{ "RCPT TO: <a@b.example>", CMD_RCPT, 4 },
	{ "RCPT FROM:<a@b.example>", CMD_RCPT, -1 },
	{ "RCPT T:<a@b.example>", CMD_RCPT, -1 },
	/* asked about the wrong verb */
	{ "MAIL FROM:<a@b.example>", CMD_RCPT, -1 },
	{ "RCPT TO:<a@b.example>", CMD_MAIL, -1 },
	{ "QUIT", CMD_QUIT, -1 },
	{ "EHLO FROM:<x>", CMD_EHLO, -1 },
};

static int
test_path_offset(void)
{
	struct cmd cmd;
	size_t i;
	int off;

	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		CHECK(cmd_parse(path_cases[i].line,
		    strlen(path_cases[i].line), &cmd) == 0);
		off = cmd_path_offset(&cmd, path_cases[i].verb);
		if (off != path_cases[i].off) {
			fprintf(stderr, "  [%s] offset %d, want %d\n",
			    path_cases[i].line, off, path_cases[i].off);
			return 1;
		}
		if (off >= 0)
			CHECK((size_t)off <= cmd.arglen);
	}
	CHECK(cmd_path_offset(NULL, CMD_MAIL) == -1);
	return 0;
}

#define P_SIZE	0x1
#define P_8BIT	0x2
#define P_7BIT	0x4
#define P_UTF8	0x8
#define P_AUTH	0x10

struct param_case {
	const char *label;
	const char *s;
	size_t len;		/* 0: strlen(s) */
	enum cmd_verb which;
	int rc;
	const char *why;	/* when rc < 0 */
	unsigned set;		/* P_* expected when rc == 0 */
	uint64_t size;
};

static const struct param_case param_cases[] = {
	{ "none", "", 0, CMD_MAIL, 0, NULL, 0, 0 },
	{ "spaces only", "   ", 0, CMD_MAIL, 0, NULL, 0, 0 },
	{ "SIZE", "SIZE=1000", 0, CMD_MAIL, 0, NULL, P_SIZE, 1000 },
	{ "size lower", "size=0", 0, CMD_MAIL, 0, NULL, P_SIZE, 0 },
	{ "SIZE max", "SIZE=18446744073709551615", 0, CMD_MAIL, 0, NULL,
	    P_SIZE, UINT64_MAX },
	{ "SIZE leading zeros", "SIZE=0000000000000000000000042", 0,
	    CMD_MAIL, 0, NULL, P_SIZE, 42 },
	{ "SIZE 2^64", "SIZE=18446744073709551616", 0, CMD_MAIL, -1,
	    "SIZE too large", 0, 0 },
	{ "SIZE 2^64 * 10", "SIZE=184467440737095516150", 0, CMD_MAIL, -1,
	    "SIZE too large", 0, 0 },
	{ "SIZE huge", "SIZE=99999999999999999999999", 0, CMD_MAIL, -1,
	    "SIZE too large", 0, 0 },
	{ "SIZE empty value", "SIZE=", 0, CMD_MAIL, -1,
	    "malformed parameter", 0, 0 },
	{ "SIZE no value", "SIZE", 0, CMD_MAIL, -1, "bad SIZE", 0, 0 },
	{ "SIZE letters", "SIZE=12a", 0, CMD_MAIL, -1, "bad SIZE", 0, 0 },
	{ "SIZE negative", "SIZE=-1", 0, CMD_MAIL, -1, "bad SIZE", 0, 0 },
	{ "SIZE plus", "SIZE=+1", 0, CMD_MAIL, -1, "bad SIZE", 0, 0 },
	{ "SIZE twice", "SIZE=1 SIZE=2", 0, CMD_MAIL, -1,
	    "duplicate parameter", 0, 0 },
	{ "SIZE twice other case", "SIZE=1 size=1", 0, CMD_MAIL, -1,
	    "duplicate parameter", 0, 0 },
	{ "BODY 8BITMIME", "BODY=8BITMIME", 0, CMD_MAIL, 0, NULL, P_8BIT, 0 },
	{ "BODY 7bit lower", "body=7bit", 0, CMD_MAIL, 0, NULL, P_7BIT, 0 },
	{ "BODY BINARYMIME", "BODY=BINARYMIME", 0, CMD_MAIL, -1, "bad BODY",
	    0, 0 },
	{ "BODY 8BIT", "BODY=8BIT", 0, CMD_MAIL, -1, "bad BODY", 0, 0 },
	{ "BODY no value", "BODY", 0, CMD_MAIL, -1, "bad BODY", 0, 0 },
	{ "BODY twice", "BODY=7BIT BODY=8BITMIME", 0, CMD_MAIL, -1,
	    "duplicate parameter", 0, 0 },
	{ "SMTPUTF8", "SMTPUTF8", 0, CMD_MAIL, 0, NULL, P_UTF8, 0 },
	{ "SMTPUTF8 value", "SMTPUTF8=yes", 0, CMD_MAIL, -1,
	    "SMTPUTF8 takes no value", 0, 0 },
	{ "SMTPUTF8 twice", "SMTPUTF8 smtputf8", 0, CMD_MAIL, -1,
	    "duplicate parameter", 0, 0 },
	{ "AUTH null", "AUTH=<>", 0, CMD_MAIL, 0, NULL, P_AUTH, 0 },
	{ "AUTH xtext", "AUTH=user+40example.org", 0, CMD_MAIL, 0, NULL,
	    P_AUTH, 0 },
	{ "AUTH no value", "AUTH", 0, CMD_MAIL, -1, "AUTH needs a value",
	    0, 0 },
	{ "all four, extra spaces", "  SIZE=10  BODY=8BITMIME SMTPUTF8 "
	    "AUTH=<>  ", 0, CMD_MAIL, 0, NULL,
	    P_SIZE | P_8BIT | P_UTF8 | P_AUTH, 10 },
	{ "unknown", "FOO=bar", 0, CMD_MAIL, -1, "FOO=bar",
	    0, 0 },
	{ "unknown after good", "SIZE=1 XFORWARD", 0, CMD_MAIL, -1,
	    "XFORWARD", 0, 0 },
	{ "RET is DSN, not offered", "RET=HDRS", 0, CMD_MAIL, -1,
	    "RET=HDRS", 0, 0 },
	{ "key prefix", "SIZ=1", 0, CMD_MAIL, -1, "SIZ=1",
	    0, 0 },
	{ "key longer", "SIZES=1", 0, CMD_MAIL, -1, "SIZES=1",
	    0, 0 },
	/* The name is cut to 63 bytes. */
	{ "unknown, long", "X="
	    "1234567890123456789012345678901234567890123456789012345678901234",
	    0, CMD_MAIL, -1,
	    "X=1234567890123456789012345678901234567890123456789012345678901",
	    0, 0 },
	{ "empty key", "=x", 0, CMD_MAIL, -1, "malformed parameter", 0, 0 },
	{ "hyphen first", "-X", 0, CMD_MAIL, -1, "malformed parameter", 0,
	    0 },
	{ "bad key byte", "SI_ZE=1", 0, CMD_MAIL, -1, "malformed parameter",
	    0, 0 },
	{ "double =", "SIZE==1", 0, CMD_MAIL, -1, "malformed parameter", 0,
	    0 },
	{ "= in value", "SIZE=1=2", 0, CMD_MAIL, -1, "malformed parameter",
	    0, 0 },
	{ "8-bit value", "AUTH=\xc3\xa9", 0, CMD_MAIL, -1,
	    "malformed parameter", 0, 0 },
	{ "NUL in value", "AUTH=a\0b", 8, CMD_MAIL, -1,
	    "malformed parameter", 0, 0 },
	{ "NUL as key", "\0", 1, CMD_MAIL, -1, "malformed parameter", 0, 0 },
	{ "TAB separator", "SIZE=1\tBODY=7BIT", 0, CMD_MAIL, -1,
	    "malformed parameter", 0, 0 },
	{ "eight is the limit", "A B C D E F G H", 0, CMD_MAIL, -1,
	    "A", 0, 0 },
	{ "nine is too many", "A B C D E F G H I", 0, CMD_MAIL, -1,
	    "too many parameters", 0, 0 },
	{ "nine with spaces", " SIZE=1  B C D E F G H I ", 0, CMD_MAIL, -1,
	    "too many parameters", 0, 0 },
	{ "length cuts", "SIZE=12345", 7, CMD_MAIL, 0, NULL, P_SIZE, 12 },
	/* RCPT: nothing offered yet (no DSN) */
	{ "rcpt none", "", 0, CMD_RCPT, 0, NULL, 0, 0 },
	{ "rcpt spaces", "  ", 0, CMD_RCPT, 0, NULL, 0, 0 },
	{ "rcpt NOTIFY", "NOTIFY=NEVER", 0, CMD_RCPT, -1,
	    "NOTIFY=NEVER", 0, 0 },
	{ "rcpt SIZE", "SIZE=10", 0, CMD_RCPT, -1, "SIZE=10",
	    0, 0 },
	{ "rcpt ORCPT", "ORCPT=rfc822;a@b.example", 0, CMD_RCPT, -1,
	    "ORCPT=rfc822;a@b.example", 0, 0 },
	{ "not a path verb", "SIZE=1", 0, CMD_EHLO, -1,
	    "parameters on a command without path", 0, 0 },
};

static int
param_check(const struct param_case *c)
{
	struct cmd_params p;
	const char *why = "unset";
	size_t len = c->len ? c->len : strlen(c->s);
	unsigned set;
	int rc;

	memset(&p, 0xa5, sizeof(p));
	rc = cmd_params(c->s, len, c->which, &p, &why);
	if (rc != c->rc) {
		fprintf(stderr, "  [%s] rc %d, want %d (why %s)\n", c->label,
		    rc, c->rc, why ? why : "(null)");
		return 1;
	}
	if (rc < 0) {
		if (why == NULL || strcmp(why, c->why) != 0) {
			fprintf(stderr, "  [%s] why \"%s\", want \"%s\"\n",
			    c->label, why ? why : "(null)", c->why);
			return 1;
		}
		return 0;
	}
	set = (p.has_size ? P_SIZE : 0) | (p.body_8bit ? P_8BIT : 0) |
	    (p.body_7bit ? P_7BIT : 0) | (p.smtputf8 ? P_UTF8 : 0) |
	    (p.has_auth ? P_AUTH : 0);
	if (set != c->set || (p.has_size && p.size != c->size) ||
	    (!p.has_size && p.size != 0)) {
		fprintf(stderr, "  [%s] set %#x size %llu, want %#x %llu\n",
		    c->label, set, (unsigned long long)p.size, c->set,
		    (unsigned long long)c->size);
		return 1;
	}
	return 0;
}

static int
test_params_table(void)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]); i++)
		bad |= param_check(&param_cases[i]);
	return bad;
}

static int
test_params_null(void)
{
	struct cmd_params p;
	const char *why;

	CHECK(cmd_params(NULL, 0, CMD_MAIL, &p, &why) == 0);
	CHECK(cmd_params(NULL, 1, CMD_MAIL, &p, &why) == -1);
	CHECK(cmd_params("SIZE=1", 6, CMD_MAIL, NULL, &why) == -1);
	CHECK(cmd_params("FOO", 3, CMD_MAIL, &p, NULL) == -1);
	CHECK(cmd_params("SIZE=7", 6, CMD_MAIL, &p, NULL) == 0);
	CHECK(p.has_size && p.size == 7);
	return 0;
}

static int
test_names(void)
{
	struct cmd cmd;
	const char *name;
	int v, w;

	for (v = 0; v < CMD_COUNT; v++) {
		name = cmd_name((enum cmd_verb)v);
		CHECK(name != NULL && name[0] != '\0');
		for (w = 0; w < v; w++)
			CHECK(strcmp(name, cmd_name((enum cmd_verb)w)) != 0);
		/* every real verb parses back to itself */
		if (v != CMD_UNKNOWN && v != CMD_HTTP) {
			CHECK(cmd_parse(name, strlen(name), &cmd) == 0);
			CHECK(cmd.verb == (enum cmd_verb)v);
		}
	}
	CHECK_STR(cmd_name(CMD_EHLO), "EHLO");
	CHECK_STR(cmd_name(CMD_MAIL), "MAIL");
	CHECK_STR(cmd_name(CMD_STARTTLS), "STARTTLS");
	CHECK_STR(cmd_name(CMD_UNKNOWN), "UNKNOWN");
	CHECK_STR(cmd_name(CMD_COUNT), "UNKNOWN");
	CHECK_STR(cmd_name((enum cmd_verb)1000), "UNKNOWN");
	return 0;
}

/* One MAIL line, taken apart in the order smtp.c does it. */
static int
test_mail_line(void)
{
	const char *line = "mail from: <@r.example:User@Example.ORG> "
	    "SIZE=2048 BODY=8BITMIME";
	char addr[ADDR_PATH_MAX], dom[ADDR_DOMAIN_MAX + 1];
	struct cmd cmd;
	struct cmd_params p;
	const char *why;
	int off, used;

	CHECK(cmd_parse(line, strlen(line), &cmd) == 0);
	CHECK(cmd.verb == CMD_MAIL);
	off = cmd_path_offset(&cmd, CMD_MAIL);
	CHECK(off == 6);
	used = addr_parse_path(cmd.arg + off, cmd.arglen - (size_t)off,
	    ADDR_NULL_OK, addr, sizeof(addr), &why);
	CHECK(used == 29);
	CHECK_STR(addr, "User@Example.ORG");
	addr_domain_lower(addr_domain(addr), dom, sizeof(dom));
	CHECK_STR(dom, "example.org");
	CHECK(cmd_params(cmd.arg + off + used,
	    cmd.arglen - (size_t)off - (size_t)used, CMD_MAIL, &p, &why) == 0);
	CHECK(p.has_size && p.size == 2048 && p.body_8bit && !p.smtputf8);
	return 0;
}

static const struct t_case cases[] = {
	{ "cmd_parse table", test_parse_table },
	{ "cmd_parse refuses every control byte", test_parse_every_control },
	{ "cmd_parse NULL arguments", test_parse_null },
	{ "cmd_path_offset", test_path_offset },
	{ "cmd_params table", test_params_table },
	{ "cmd_params NULL arguments", test_params_null },
	{ "cmd_name", test_names },
	{ "a MAIL line end to end", test_mail_line },
};

T_MAIN("cmd", cases)
