/*
 * reply_test.c - reply.c: one SMTP reply line out of a buffer.  Every
 * refusal (short line, bad digits, first digit outside 2-5, bad
 * separator, a full buffer without LF) and every edge the delivery
 * relies on (bare LF, CRLF, a NUL inside, the head of a long line, two
 * lines in one buffer) against what deliver.c and check.c did before
 * the parser was shared; a line with another code than its reply's
 * (deliver.c's check before it moved here, for check.c and cli.c too).
 * And the way back from a refusal as it is kept (REPLY_SAID) to the
 * server's name and its bare reply; and the EHLO keywords the three
 * clients read (reply_ehlo(), deliver.c's parser before it was shared).
 */
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "t.h"

/* Big enough for a line well over REPLY_LINE_MAX and its CRLF. */
#define LONG_LEN	(3 * REPLY_LINE_MAX)

static struct reply_line r;

/* reply_take() on a C string (no NUL in it), not full. */
static enum reply_status
take(const char *s, size_t *used)
{
	memset(&r, 0x55, sizeof(r));
	return reply_take(s, strlen(s), 0, 0, &r, used);
}

static int
test_single(void)
{
	size_t used;

	CHECK(take("250 2.0.0 ok\r\n", &used) == REPLY_OK);
	CHECK(used == 14);
	CHECK(r.code == 250);
	CHECK(r.more == 0);
	CHECK(r.len == 12);
	CHECK_STR(r.line, "250 2.0.0 ok");
	CHECK(take("554 no\r\n", &used) == REPLY_OK && r.code == 554);
	return 0;
}

static int
test_continued(void)
{
	size_t used;

	CHECK(take("250-PIPELINING\r\n250 SIZE\r\n", &used) == REPLY_OK);
	CHECK(used == 16);
	CHECK(r.code == 250 && r.more == 1);
	CHECK_STR(r.line, "250-PIPELINING");
	/* "DDD-" alone continues too. */
	CHECK(take("220-\r\n", &used) == REPLY_OK && r.more == 1);
	CHECK(r.len == 4);
	return 0;
}

static int
test_code_only(void)
{
	size_t used;

	CHECK(take("354\r\n", &used) == REPLY_OK);
	CHECK(r.code == 354 && r.more == 0 && r.len == 3 && used == 5);
	CHECK_STR(r.line, "354");
	CHECK(take("250 \r\n", &used) == REPLY_OK && r.len == 4);
	return 0;
}

/* Bare LF ends a line as CRLF does: servers that send it get through. */
static int
test_bare_lf(void)
{
	size_t used;

	CHECK(take("250 ok\n", &used) == REPLY_OK);
	CHECK(used == 7 && r.len == 6);
	CHECK_STR(r.line, "250 ok");
	/* Only the one CR before the LF goes. */
	CHECK(take("250 ok\r\r\n", &used) == REPLY_OK);
	CHECK(r.len == 7 && r.line[6] == '\r' && used == 9);
	/* A CR inside stays. */
	CHECK(take("250 o\rk\r\n", &used) == REPLY_OK && r.len == 7);
	return 0;
}

static int
test_two_lines(void)
{
	const char *buf = "250-a\r\n250 b\r\n";
	size_t used, used2;

	CHECK(reply_take(buf, strlen(buf), 0, 0, &r, &used) == REPLY_OK);
	CHECK(used == 7 && r.more == 1);
	CHECK(reply_take(buf + used, strlen(buf) - used, 0, 0, &r, &used2) ==
	    REPLY_OK);
	CHECK(used2 == 7 && r.more == 0);
	CHECK_STR(r.line, "250 b");
	/* Only the length given counts, not the string. */
	CHECK(reply_take(buf, 6, 0, 0, &r, &used) == REPLY_AGAIN && used == 0);
	return 0;
}

/*
 * Lines taken as the callers take them, want the reply's code after a
 * "DDD-" line: RFC 5321 section 4.2.1 gives every line of a reply its
 * code, so one with another code is MALFORMED (and consumed).  The codes
 * each line gives, -1 for MALFORMED, 0 at the end.
 */
static int
test_mixed(void)
{
	static const struct {
		const char *in;
		int code[4];
	} c[] = {
		{ "250-a\r\n550 b\r\n", { 250, -1, 0 } },
		{ "250-a\r\n251 b\r\n", { 250, -1, 0 } },
		{ "550-5.1.1 a\r\n250-b\r\n550 c\r\n", { 550, -1, 550, 0 } },
		{ "250-a\r\n250-b\r\n250 c\r\n", { 250, 250, 250, 0 } },
		{ "354\r\n250-a\r\n250 b\r\n", { 354, 250, 250, 0 } },
		{ "250 a\r\n550 b\r\n", { 250, 550, 0 } },
		{ "250-a\r\n250b\r\n", { 250, -1, 0 } },
	};
	const char *p;
	size_t i, j, left, used;
	int want;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		p = c[i].in;
		left = strlen(p);
		for (j = 0, want = 0; c[i].code[j] != 0; j++) {
			if (reply_take(p, left, 0, want, &r, &used) !=
			    (c[i].code[j] == -1 ? REPLY_MALFORMED : REPLY_OK) ||
			    r.code != c[i].code[j] || used == 0 ||
			    p[used - 1] != '\n') {
				fprintf(stderr, "  %s: line %zu: %d\n",
				    c[i].in, j + 1, r.code);
				return 1;
			}
			want = r.code > 0 && r.more ? r.code : 0;
			p += used;
			left -= used;
		}
		CHECK(left == 0);
	}
	CHECK(reply_code("550 x", 5, 250, &want) == -1 && want == 0);
	CHECK(reply_code("250-x", 5, 250, &want) == 250 && want == 1);
	CHECK(reply_code("250 x", 5, 550, &want) == -1);
	return 0;
}

static int
test_again(void)
{
	size_t used = 99;

	CHECK(take("", &used) == REPLY_AGAIN && used == 0);
	CHECK(take("250 ok\r", &used) == REPLY_AGAIN && used == 0);
	return 0;
}

/* Each refusal is MALFORMED and still consumes its whole line. */
static int
refused(const char *const *lines, size_t n)
{
	size_t i, used;

	for (i = 0; i < n; i++)
		if (take(lines[i], &used) != REPLY_MALFORMED ||
		    used != strlen(lines[i]) || r.code != -1) {
			fprintf(stderr, "  accepted %s", lines[i]);
			return 1;
		}
	return 0;
}

#define REFUSED(a)	refused((a), sizeof(a) / sizeof((a)[0]))

static int
test_short(void)
{
	static const char *const bad[] = {
		"\r\n", "\n", "2\r\n", "25\r\n", "25\n",
	};

	return REFUSED(bad);
}

static int
test_bad_digits(void)
{
	static const char *const bad[] = {
		"2x0 ok\r\n", "25x ok\r\n", "2 0 ok\r\n", "25/ ok\r\n",
		"25: ok\r\n", "abc\r\n", " 250 ok\r\n",
		"\26250 ok\r\n",	/* 0xb2: a '2' with the high bit set */
	};

	return REFUSED(bad);
}

static int
test_first_digit(void)
{
	static const char *const bad[] = {
		"050 x\r\n", "150 x\r\n", "199 x\r\n", "600 x\r\n",
		"999 x\r\n",
	};
	size_t used;

	CHECK(take("200 x\r\n", &used) == REPLY_OK && r.code == 200);
	CHECK(take("599 x\r\n", &used) == REPLY_OK && r.code == 599);
	return REFUSED(bad);
}

static int
test_separator(void)
{
	static const char *const bad[] = {
		"250x ok\r\n", "2500\r\n", "250\tok\r\n", "250_ok\r\n",
		"250\r ok\r\n",
	};

	return REFUSED(bad);
}

/* RFC 3463 codes: class 2, 4 or 5; 1-3 digits twice; then space or end. */
static int
test_enh(void)
{
	static const char *const bad[] = {
		"", "5", "5.", "5.1", "5.1.", "5..1", "3.1.1", "6.0.0",
		"5.x junk", "5.1.x", "5.1.1x", "5.1.1.1", "5.1234.1",
		"5.1.1234", "5.99999.1234567 long", " 5.1.1", "5-1-1",
		"5.1.1\tx", "55.1.1",
	};
	const char *code;
	size_t i;

	CHECK(reply_enh("5.1.1") == 5);
	CHECK(reply_enh("2.0.0 Ok") == 5);
	CHECK(reply_enh("4.7.0 later") == 5);
	CHECK(reply_enh("5.123.456 x") == 9);
	CHECK(reply_enh("5.7.10") == 6);
	/* Of a whole reply: the first line's, of the reply's class. */
	CHECK(reply_enh_code("550 5.1.1 no", &code) == 5 &&
	    strncmp(code, "5.1.1", 5) == 0);
	CHECK(reply_enh_code("550-5.1.10 a 550 5.1.1 b", &code) == 6 &&
	    strncmp(code, "5.1.10", 6) == 0);
	CHECK(reply_enh_code("550 4.1.1 class", &code) == 0);
	CHECK(reply_enh_code("550 5.x junk", &code) == 0);
	CHECK(reply_enh_code("5.1.1 ours", &code) == 0);
	CHECK(reply_enh_code("550", &code) == 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (reply_enh(bad[i]) != 0) {
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
			CHECK(0);
		}
	return 0;
}

/* A buffer full without LF: too long; not yet full: wait. */
static int
test_too_long(void)
{
	char *buf;
	size_t used = 99;

	CHECK((buf = malloc(LONG_LEN)) != NULL);
	memset(buf, 'a', LONG_LEN);
	memcpy(buf, "250 ", 4);
	if (reply_take(buf, LONG_LEN, 1, 0, &r, &used) != REPLY_TOO_LONG ||
	    used != 0 ||
	    reply_take(buf, LONG_LEN, 0, 0, &r, &used) != REPLY_AGAIN) {
		free(buf);
		CHECK(0);
	}
	/* With an LF in it, only full matters: the line is taken. */
	buf[10] = '\n';
	if (reply_take(buf, LONG_LEN, 1, 0, &r, &used) != REPLY_OK ||
	    used != 11) {
		free(buf);
		CHECK(0);
	}
	free(buf);
	return 0;
}

/* A line longer than the struct keeps its head; all of it is used. */
static int
test_long_head(void)
{
	char *buf;
	int ok;
	size_t used;

	CHECK((buf = malloc(LONG_LEN)) != NULL);
	memset(buf, 'b', LONG_LEN);
	memcpy(buf, "451-", 4);
	buf[LONG_LEN - 2] = '\r';
	buf[LONG_LEN - 1] = '\n';
	ok = reply_take(buf, LONG_LEN, 1, 0, &r, &used) == REPLY_OK &&
	    used == LONG_LEN && r.code == 451 && r.more == 1 &&
	    r.len == REPLY_LINE_MAX - 1 && r.line[r.len] == '\0' &&
	    r.line[r.len - 1] == 'b';
	/* Exactly as long as the struct holds: all of it, CR gone. */
	buf[REPLY_LINE_MAX - 2] = '\r';
	buf[REPLY_LINE_MAX - 1] = '\n';
	ok = ok && reply_take(buf, LONG_LEN, 0, 0, &r, &used) == REPLY_OK &&
	    used == REPLY_LINE_MAX && r.len == REPLY_LINE_MAX - 2 &&
	    r.line[r.len - 1] == 'b';
	/* One over: the CR falls off the head kept, the text is whole. */
	buf[REPLY_LINE_MAX - 2] = 'b';
	buf[REPLY_LINE_MAX - 1] = '\r';
	buf[REPLY_LINE_MAX] = '\n';
	ok = ok && reply_take(buf, LONG_LEN, 0, 0, &r, &used) == REPLY_OK &&
	    used == REPLY_LINE_MAX + 1 && r.len == REPLY_LINE_MAX - 1 &&
	    r.line[r.len - 1] == 'b';
	/* A long line with a bad head is malformed, not too long. */
	buf[0] = '6';
	ok = ok && reply_take(buf, LONG_LEN, 1, 0, &r, &used) ==
	    REPLY_MALFORMED && used == REPLY_LINE_MAX + 1;
	free(buf);
	CHECK(ok);
	return 0;
}

/* A NUL ends what is kept (the callers print a C string); the line
 * still goes up to its LF. */
static int
test_nul(void)
{
	static const char ok1[] = "250 o\0k\r\n";
	static const char ok2[] = "250\0-x\r\n";
	static const char bad[] = "25\0 ok\r\n";
	static const char cr[] = "250 ok\r\0\r\n";
	size_t used;

	CHECK(reply_take(ok1, sizeof(ok1) - 1, 0, 0, &r, &used) == REPLY_OK);
	CHECK(used == sizeof(ok1) - 1 && r.len == 5);
	CHECK_STR(r.line, "250 o");
	/* The '-' after the NUL is not seen: a last line. */
	CHECK(reply_take(ok2, sizeof(ok2) - 1, 0, 0, &r, &used) == REPLY_OK);
	CHECK(r.len == 3 && r.more == 0 && used == sizeof(ok2) - 1);
	CHECK(reply_take(bad, sizeof(bad) - 1, 0, 0, &r, &used) ==
	    REPLY_MALFORMED && used == sizeof(bad) - 1);
	/* A CR before the NUL ends the kept line, so it goes too. */
	CHECK(reply_take(cr, sizeof(cr) - 1, 0, 0, &r, &used) == REPLY_OK);
	CHECK(r.len == 6);
	CHECK(reply_take("\0\r\n", 3, 0, 0, &r, &used) == REPLY_MALFORMED);
	return 0;
}

/* cli.c's entry: the line as given, its length explicit. */
static int
test_code(void)
{
	int more = 7;

	CHECK(reply_code("250-x", 5, 0, &more) == 250 && more == 1);
	CHECK(reply_code("250 x", 5, 0, &more) == 250 && more == 0);
	CHECK(reply_code("421", 3, 0, &more) == 421 && more == 0);
	CHECK(reply_code("250-x", 3, 0, &more) == 250 && more == 0);
	CHECK(reply_code("250-x", 2, 0, &more) == -1);
	CHECK(reply_code("250?x", 5, 0, &more) == -1);
	CHECK(reply_code("?50 x", 5, 0, &more) == -1);
	CHECK(reply_code("", 0, 0, &more) == -1);
	return 0;
}

/* REPLY_SAID taken apart: the name and the bare reply, the end found
 * where it was cut, and everything else (ours, an old bare reply) not
 * taken for it. */
static int
test_said(void)
{
	static const struct {
		const char *in, *name, *reply;	/* name NULL: refused */
	} rows[] = {
		{ "host mx.d[192.0.2.1] said: 550 5.1.1 <x@d>: user unknown "
		    "(in reply to RCPT TO command)", "mx.d",
		    "550 5.1.1 <x@d>: user unknown" },
		{ "host mx6[2001:db8::1] said: 451 later (in reply to end of "
		    "DATA command)", "mx6", "451 later" },
		{ "host a[1] said: 550-5.1.1 one 550 5.1.1 two (in reply to "
		    "MAIL FROM command)", "a", "550-5.1.1 one 550 5.1.1 two" },
		/* the reply's own "(in reply to" words stay, ours go */
		{ "host a[1] said: 554 x (in reply to y) (in reply to DATA "
		    "command)", "a", "554 x (in reply to y)" },
		{ "host a[1] said: 550 (in reply to RCPT TO command)", "a",
		    "550" },
		/* cut off (the QUEUE_REASON_MAX): all of what is left */
		{ "host a[1] said: 550 5.1.1 long (in reply to RC", "a",
		    "550 5.1.1 long (in reply to RC" },
		{ "host a[1] said: 550 no (why?) (in reply", "a",
		    "550 no (why?) (in reply" },
		{ "host a[1] said: 550 a (b)", "a", "550 a (b)" },
		{ "host a[1] said: 550", "a", "550" },
		/* not a refusal kept by deliver.c */
		{ "550 5.1.1 <x@d>: user unknown", NULL, NULL },
		{ "5.4.4 Host or domain name not found", NULL, NULL },
		{ "4.4.2 host a[1] said: 421 bye (while sending RCPT TO)",
		    NULL, NULL },
		{ "host a[1] refused to talk to me: 421 busy", NULL, NULL },
		{ "host [1] said: 550 x", NULL, NULL },
		{ "host a said: 550 x", NULL, NULL },
		{ "host a[1] said: 650 x", NULL, NULL },
		{ "host a[1] said: 55", NULL, NULL },
		{ "host a[1] said: 550x", NULL, NULL },
		{ "host a[1] said:550 x", NULL, NULL },
		{ "host a[1]", NULL, NULL },
		{ "host ", NULL, NULL },
		{ "", NULL, NULL },
	};
	const char *p, *name;
	size_t i, len, nlen;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		p = reply_said(rows[i].in, &len, &name, &nlen);
		if (rows[i].name == NULL) {
			if (p != NULL) {
				fprintf(stderr, "  row %zu taken\n", i);
				return 1;
			}
			continue;
		}
		if (p == NULL || len != strlen(rows[i].reply) ||
		    strncmp(p, rows[i].reply, len) != 0 ||
		    nlen != strlen(rows[i].name) ||
		    strncmp(name, rows[i].name, nlen) != 0) {
			fprintf(stderr, "  row %zu: %s\n", i, rows[i].in);
			return 1;
		}
	}
	return 0;
}

/* One EHLO line's keyword: whole, or with its arguments after a space. */
static int
test_ehlo(void)
{
	static const struct {
		const char *kw;
		unsigned ext;
		uint64_t size;		/* ~0: left alone */
	} rows[] = {
		{ "STARTTLS", REPLY_EXT_STARTTLS, ~0ull },
		{ "starttls", REPLY_EXT_STARTTLS, ~0ull },
		{ "PIPELINING", REPLY_EXT_PIPELINING, ~0ull },
		{ "8BITMIME", REPLY_EXT_8BITMIME, ~0ull },
		{ "SMTPUTF8", REPLY_EXT_SMTPUTF8, ~0ull },
		{ "SIZE 10240000", REPLY_EXT_SIZE, 10240000 },
		{ "SIZE", REPLY_EXT_SIZE, 0 },
		{ "AUTH PLAIN LOGIN", REPLY_EXT_AUTH | REPLY_EXT_AUTH_PLAIN |
		    REPLY_EXT_AUTH_LOGIN, ~0ull },
		{ "AUTH=LOGIN", REPLY_EXT_AUTH | REPLY_EXT_AUTH_LOGIN, ~0ull },
		{ "AUTH  CRAM-MD5 plain", REPLY_EXT_AUTH |
		    REPLY_EXT_AUTH_PLAIN, ~0ull },
		{ "AUTH PLAINX", REPLY_EXT_AUTH, ~0ull },
		{ "AUTH", 0, ~0ull },
		{ "STARTTLSX", 0, ~0ull },
		{ "SIZE=1000", 0, ~0ull },
		{ "8BITMIMEX", 0, ~0ull },
		{ "STARTTL", 0, ~0ull },
		{ "ENHANCEDSTATUSCODES", 0, ~0ull },
		{ "", 0, ~0ull },
	};
	uint64_t size;
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size = ~0ull;
		if (reply_ehlo(rows[i].kw, &size) != rows[i].ext ||
		    size != rows[i].size ||
		    reply_ehlo(rows[i].kw, NULL) != rows[i].ext) {
			fprintf(stderr, "  row %zu: %s\n", i, rows[i].kw);
			return 1;
		}
	}
	return 0;
}

static const struct t_case cases[] = {
	{ "one line", test_single },
	{ "a continued line", test_continued },
	{ "a code alone", test_code_only },
	{ "bare LF and CRs", test_bare_lf },
	{ "two lines in one buffer", test_two_lines },
	{ "a reply's lines share its code", test_mixed },
	{ "no line end yet", test_again },
	{ "short lines", test_short },
	{ "bad digits", test_bad_digits },
	{ "first digit outside 2-5", test_first_digit },
	{ "bad separator", test_separator },
	{ "a full buffer without LF", test_too_long },
	{ "the head of a long line", test_long_head },
	{ "a NUL inside", test_nul },
	{ "enhanced status codes (RFC 3463)", test_enh },
	{ "reply_code", test_code },
	{ "a refusal as kept: reply_said", test_said },
	{ "EHLO keywords: reply_ehlo", test_ehlo },
};

T_MAIN("reply", cases)
