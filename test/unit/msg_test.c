/*
 * msg_test.c - tests of msg.c, the text rules sendmail applies before a
 * message reaches the daemon: line ends and the "." terminator (whole and
 * fed byte by byte), the header section, Bcc removal, folding and
 * splitting of long lines, the hop count, RFC 5322 address lists for -t, display names,
 * dot-stuffing and mailq's JSON string escaping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "test/unit/t.h"

#define BIG	(MSG_LINE_MAX * 3 + 17)

/* --- the reader --- */

struct read_case {
	const char *label;
	const char *in;
	int dot_ends;
	const char *out;
	int ended;
};

static const struct read_case read_cases[] = {
	{ "bare LF", "a\nb\n", 0, "a\r\nb\r\n", 0 },
	{ "CRLF kept", "a\r\nb\r\n", 0, "a\r\nb\r\n", 0 },
	/* A CR is a space unless only CRs come before the LF: the bytes
	 * Postfix's sendmail makes.  As a line end it moved the rest of a
	 * field into the body. */
	{ "bare CR", "a\rb\r", 0, "a b \r\n", 0 },
	{ "CR in a field", "Subject: a\rb\nTo: c\n\nx\ry\n", 0,
	    "Subject: a b\r\nTo: c\r\n\r\nx y\r\n", 0 },
	{ "mixed", "a\r\r\nb\n\rc", 0, "a\r\nb\r\n c\r\n", 0 },
	{ "CR CR LF header", "F: a\r\r\nT: b\r\r\n\r\r\nx\r\r\n", 0,
	    "F: a\r\nT: b\r\n\r\nx\r\n", 0 },
	{ "CR CR text", "a\r\rb", 0, "a  b\r\n", 0 },
	{ "CR CR CR LF", "a\r\r\r\nb", 0, "a\r\nb\r\n", 0 },
	{ "CR SP LF", "a\r \n", 0, "a  \r\n", 0 },
	{ "CR CR at EOF", "a\r\r", 0, "a  \r\n", 0 },
	{ "four CRs", "\r\r\r\r", 0, "    \r\n", 0 },
	{ "CR line then LF", "a\n\r\nb", 0, "a\r\n\r\nb\r\n", 0 },
	{ "dot ends (CR CR LF)", "a\r\r\n.\r\r\nafter", 1, "a\r\n", 1 },
	{ "last line closed", "no newline", 0, "no newline\r\n", 0 },
	{ "empty", "", 0, "", 0 },
	{ "dot ends (LF)", "a\n.\nafter\n", 1, "a\r\n", 1 },
	{ "dot ends (CRLF)", "a\r\n.\r\nafter\r\n", 1, "a\r\n", 1 },
	{ "dot after CR is data", "a\r.\rafter", 1, "a . after\r\n", 0 },
	{ "dot ends at EOF", "a\n.", 1, "a\r\n", 1 },
	/* No LF after the CR: a line ". ", as Postfix 3.7's sendmail and
	 * cleanup store it (its sendmail takes CRs off only before an LF,
	 * so that line is no "."). */
	{ "dot CR at EOF is data", "a\n.\r", 1, "a\r\n. \r\n", 0 },
	{ "dot first line", ".\nx\n", 1, "", 1 },
	{ "dot ignored with -i", "a\n.\nb\n", 0, "a\r\n.\r\nb\r\n", 0 },
	{ "dot-dot is data", "a\n..\nb\n", 1, "a\r\n..\r\nb\r\n", 0 },
	{ "dot-space is data", "a\n. \nb\n", 1, "a\r\n. \r\nb\r\n", 0 },
	{ "x-dot is data", "x.\n", 1, "x.\r\n", 0 },
};

static int
run_reader(const char *in, size_t len, int dot, size_t chunk,
    struct msg_reader *r)
{
	size_t off = 0, k;

	msg_reader_init(r, dot, 1 << 20);
	while (off < len && !r->ended) {
		k = len - off < chunk ? len - off : chunk;
		if (msg_reader_feed(r, in + off, k) == -1)
			return -1;
		off += k;
	}
	return msg_reader_end(r);
}

static int
t_reader(void)
{
	static const size_t chunks[] = { 1, 2, 3, 4096 };
	struct msg_reader r;
	size_t i, j, len;

	for (i = 0; i < sizeof(read_cases) / sizeof(read_cases[0]); i++) {
		for (j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			len = strlen(read_cases[i].in);
			CHECK(run_reader(read_cases[i].in, len,
			    read_cases[i].dot_ends, chunks[j], &r) == 0);
			if (r.out.len != strlen(read_cases[i].out) ||
			    (r.out.len > 0 && memcmp(r.out.p,
			    read_cases[i].out, r.out.len) != 0) ||
			    r.ended != read_cases[i].ended) {
				fprintf(stderr, "  case \"%s\", chunk %zu\n",
				    read_cases[i].label, chunks[j]);
				msg_buf_free(&r.out);
				return 1;
			}
			msg_buf_free(&r.out);
		}
	}
	return 0;
}

static int
t_reader_limit(void)
{
	struct msg_reader r;

	msg_reader_init(&r, 0, 10);
	CHECK(msg_reader_feed(&r, "12345678\n", 9) == 0);
	CHECK(!r.over);			/* 10 bytes: at the limit */
	CHECK(r.out.len == 10);
	CHECK(msg_reader_feed(&r, "x", 1) == 0);
	CHECK(r.over);
	msg_buf_free(&r.out);

	msg_reader_init(&r, 0, 10);
	CHECK(msg_reader_feed(&r, "123456789", 9) == 0);
	CHECK(!r.over);
	CHECK(msg_reader_end(&r) == 0);	/* the added CRLF counts too */
	CHECK(r.over);
	msg_buf_free(&r.out);

	/* Held CRs become spaces under the limit too: 64 KB of them were
	 * all written out before it was checked. */
	{
		static char crs[65536];

		memset(crs, '\r', sizeof(crs));
		msg_reader_init(&r, 0, 10);
		CHECK(msg_reader_feed(&r, crs, sizeof(crs)) == 0);
		CHECK(msg_reader_feed(&r, "x", 1) == 0);
		CHECK(r.over);
		CHECK(r.out.len <= 12);
		msg_buf_free(&r.out);
	}
	return 0;
}

/* --- header section and build --- */

static int
t_head_scan(void)
{
	struct msg_head h;
	const char *m;

	m = "Subject: x\r\nTo: a@b,\r\n c@d\r\n\r\nbody\r\n";
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.start == 0);
	CHECK(h.end == 28);
	CHECK(h.body == 30);

	m = "From someone Thu Nov 26\r\nSubject: x\r\n\r\nb\r\n";
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.start == 25);
	CHECK(strncmp(m + h.start, "Subject", 7) == 0);

	m = "hello world\r\nSubject: no\r\n";	/* no header at all */
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.start == 0 && h.end == 0 && h.body == 0);

	m = " continued\r\n";			/* continuation first */
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.end == 0 && h.body == 0);

	m = "Subject: x\r\nnot a header\r\n";	/* no separator */
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.end == 12 && h.body == 12);

	m = "Subject : obsolete space\r\n\r\n";
	msg_head_scan(m, strlen(m), &h);
	CHECK(h.end == 26 && h.body == 28);

	msg_head_scan("", 0, &h);
	CHECK(h.start == 0 && h.end == 0 && h.body == 0);
	return 0;
}

/* msg_hop() as the doors use it: only Received: counts (any case, and
 * "Received :"), not X-Received or Resent-Received; the 51st is over. */
static int
t_hop(void)
{
	static const char *const names[] = { "Received", "rEcEiVeD",
	    "Received ", "X-Received", "Resent-Received", "Subject" };
	struct msg_field f;
	char line[64];
	unsigned i, hops = 0, over = 0;
	int n;

	for (i = 0; i < 2 * MSG_HOP_LIMIT + 1; i++) {
		n = snprintf(line, sizeof(line), "%s: hop %u",
		    names[i % 6], i);
		CHECK(msg_field_line(line, (size_t)n, &f));
		over += msg_hop(line, &f, &hops);
	}
	/* 101 fields, 51 of them Received: (i % 6 < 3). */
	CHECK(hops == MSG_HOP_LIMIT + 1 && over == 1);
	return 0;
}

static int
build(const char *m, const char *add, int drop, struct msg_buf *out)
{
	struct msg_head h;

	memset(out, 0, sizeof(*out));
	msg_head_scan(m, strlen(m), &h);
	return msg_build(out, m, strlen(m), &h, add, strlen(add), drop);
}

static int
buf_is(const struct msg_buf *b, const char *s)
{
	return b->len == strlen(s) && memcmp(b->p, s, b->len) == 0;
}

static int
t_build(void)
{
	struct msg_buf out;
	int ok;

	CHECK(build("To: a@b\r\nBcc: x@y,\r\n\tz@w\r\nSubject: s\r\n"
	    "\r\nbody\r\n", "Date: d\r\n", 1, &out) == 0);
	ok = buf_is(&out, "To: a@b\r\nSubject: s\r\nDate: d\r\n\r\nbody\r\n");
	msg_buf_free(&out);
	CHECK(ok);

	CHECK(build("BCC: x@y\r\nResent-Bcc: q@r\r\n\r\nb\r\n", "", 0,
	    &out) == 0);
	ok = buf_is(&out, "BCC: x@y\r\nResent-Bcc: q@r\r\n\r\nb\r\n");
	msg_buf_free(&out);
	CHECK(ok);
	CHECK(build("BCC: x@y\r\nResent-Bcc: q@r\r\n\r\nb\r\n", "", 1,
	    &out) == 0);
	ok = buf_is(&out, "\r\nb\r\n");
	msg_buf_free(&out);
	CHECK(ok);
	/* Postfix's message_drop_headers; Return-Pathx is another field. */
	CHECK(build("return-path: <o@x>\r\nReturn-Pathx: k\r\n"
	    "Content-Length : 5\r\n\r\nb\r\n", "", 1, &out) == 0);
	ok = buf_is(&out, "Return-Pathx: k\r\n\r\nb\r\n");
	msg_buf_free(&out);
	CHECK(ok);

	/* No header: ours, then the separator the input lacked. */
	CHECK(build("just text\r\n", "From: me\r\n", 1, &out) == 0);
	ok = buf_is(&out, "From: me\r\n\r\njust text\r\n");
	msg_buf_free(&out);
	CHECK(ok);

	/* mbox From_ line dropped. */
	CHECK(build("From me Thu\r\nSubject: s\r\n\r\nb\r\n", "", 1, &out)
	    == 0);
	ok = buf_is(&out, "Subject: s\r\n\r\nb\r\n");
	msg_buf_free(&out);
	CHECK(ok);
	return 0;
}

/* Every line ends in CRLF and has at most MSG_LINE_MAX octets. */
static int
lines_ok(const struct msg_buf *b)
{
	size_t i, start = 0;

	for (i = 0; i < b->len; i++) {
		if (b->p[i] == '\n') {
			if (i == 0 || b->p[i - 1] != '\r' ||
			    i - 1 - start > MSG_LINE_MAX)
				return 0;
			start = i + 1;
		} else if (b->p[i] == '\r' && (i + 1 == b->len ||
		    b->p[i + 1] != '\n'))
			return 0;
	}
	return start == b->len;
}

static int
is_wsp_at(const char *p, size_t i)
{
	return p[i] == ' ' || p[i] == '\t';
}

static int
t_long_lines(void)
{
	struct msg_buf out;
	char *m, *p, *sep;
	size_t i, n;
	int ok;

	/* A header of words: folded before a space, nothing added. */
	m = malloc(BIG * 2 + 64);
	CHECK(m != NULL);
	p = m + sprintf(m, "Subject:");
	for (i = 0; i < BIG / 5; i++)
		p += sprintf(p, " word");
	n = (size_t)(p - m);
	p += sprintf(p, "\r\n\r\n");
	for (i = 0; i < BIG; i++)
		*p++ = (char)('a' + i % 26);
	sprintf(p, "\r\n");
	CHECK(build(m, "", 1, &out) == 0);
	ok = lines_ok(&out);
	/* Unfolding (§2.2.3: drop each CRLF before WSP) gives the header
	 * back; dropping the body's CRLFs gives the body back. */
	sep = memmem(out.p, out.len, "\r\n\r\n", 4);
	ok = ok && sep != NULL;
	for (i = 0, p = out.p; ok && out.p + i < sep; i++)
		if (out.p[i] == '\r' && is_wsp_at(out.p, i + 2))
			i++;
		else
			*p++ = out.p[i];
	ok = ok && (size_t)(p - out.p) == n && memcmp(out.p, m, n) == 0;
	for (i = (size_t)(sep - out.p) + 4, p = out.p; ok && i < out.len; i++)
		if (out.p[i] != '\r' && out.p[i] != '\n')
			*p++ = out.p[i];
	ok = ok && (size_t)(p - out.p) == BIG &&
	    memcmp(out.p, m + n + 4, BIG) == 0;
	/* 3 body cuts, and at least 3 header folds */
	ok = ok && out.len >= n + 4 + BIG + 2 + 3 * 2 + 3 * 2;
	msg_buf_free(&out);
	CHECK(ok);

	/* No space anywhere: forced "CRLF SP" folds, body split. */
	memset(m, 'x', BIG);
	memcpy(m, "X-Long:", 7);
	memcpy(m + BIG, "\r\n\r\n", 4);
	memset(m + BIG + 4, 'y', BIG);
	memcpy(m + 2 * BIG + 4, "\r\n", 3);
	CHECK(build(m, "", 1, &out) == 0);
	ok = lines_ok(&out);
	/* header: BIG bytes, plus 3 per fold; body: plus 2 per cut */
	ok = ok && out.len == (BIG + 3 * 3 + 2) + 2 + (BIG + 3 * 2 + 2);
	ok = ok && memcmp(out.p + MSG_LINE_MAX, "\r\n x", 4) == 0;
	msg_buf_free(&out);
	free(m);
	CHECK(ok);

	/* Exactly 998 is fine, 999 is not. */
	m = malloc(MSG_LINE_MAX + 16);
	CHECK(m != NULL);
	memcpy(m, "\r\n", 2);
	memset(m + 2, 'z', MSG_LINE_MAX);
	memcpy(m + 2 + MSG_LINE_MAX, "\r\n", 3);
	CHECK(build(m, "", 1, &out) == 0);
	ok = out.len == MSG_LINE_MAX + 4;
	msg_buf_free(&out);
	memset(m + 2, 'z', MSG_LINE_MAX + 1);
	memcpy(m + 3 + MSG_LINE_MAX, "\r\n", 3);
	CHECK(build(m, "", 1, &out) == 0);
	ok = ok && out.len == MSG_LINE_MAX + 1 + 6 && lines_ok(&out);
	msg_buf_free(&out);
	free(m);
	CHECK(ok);
	return 0;
}

/* --- address lists --- */

#define ALIST_MAX	8

struct got {
	int n;
	char a[ALIST_MAX][MSG_ADDR_MAX];
	int stop_after;
};

static int
got_cb(void *arg, const char *addr, size_t end)
{
	struct got *g = arg;

	(void)end;
	if (g->n == ALIST_MAX)
		return -1;
	snprintf(g->a[g->n++], MSG_ADDR_MAX, "%s", addr);
	return g->stop_after && g->n == g->stop_after ? 7 : 0;
}

struct alist_case {
	const char *label;
	const char *in;
	int ret;
	const char *want;	/* addresses joined by '|' */
	const char *why;
};

static const struct alist_case alist_cases[] = {
	{ "one", "a@b.example", 0, "a@b.example", NULL },
	{ "bare user", "root", 0, "root", NULL },
	{ "name and angle", "Joe Q. Public <john.q.public@example.com>", 0,
	    "john.q.public@example.com", NULL },
	{ "two", "a@b, c@d", 0, "a@b|c@d", NULL },
	{ "quoted comma in name", "\"Doe, John\" <j@x>, k@y", 0, "j@x|k@y",
	    NULL },
	{ "comment with comma", "a@b (Doe, John), c@d", 0, "a@b|c@d", NULL },
	{ "nested comment", "a@b (x (y, z) w)", 0, "a@b", NULL },
	{ "comment inside", "a(c)@b", 0, "a@b", NULL },
	{ "group", "Friends: a@b, Joe <c@d>;, e@f", 0, "a@b|c@d|e@f", NULL },
	{ "empty group", "undisclosed-recipients:;", 0, "", NULL },
	{ "folded", "a@b,\r\n\tc@d", 0, "a@b|c@d", NULL },
	{ "empty elements", ", a@b,, ,", 0, "a@b", NULL },
	{ "route kept for addr_parse_path", "<@r1,@r2:u@x>", 0,
	    "@r1,@r2:u@x", NULL },
	{ "quoted local part", "\"a b\"@x", 0, "\"a b\"@x", NULL },
	{ "quoted pair", "\"a\\\"b\"@x", 0, "\"a\\\"b\"@x", NULL },
	{ "domain literal", "u@[IPv6:::1]", 0, "u@[IPv6:::1]", NULL },
	{ "obs spaces", "john . smith @ example.org", 0,
	    "john.smith@example.org", NULL },
	{ "junk after angle ignored", "<a@b> trailing", 0, "a@b", NULL },
	{ "null path", "<>", 0, "", NULL },
	{ "utf-8", "J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xa4r.example>", 0,
	    "j\xc3\xb6rg@b\xc3\xa4r.example", NULL },
	{ "two words", "John Smith", -1, NULL, "bad address syntax" },
	{ "open quote", "\"a@b", -1, NULL, "unterminated quoted string" },
	{ "open comment", "a@b (x", -1, NULL, "unterminated comment" },
	{ "open angle", "J <a@b", -1, NULL, "unterminated <" },
	{ "open literal", "a@[1.2.3.4", -1, NULL,
	    "unterminated domain literal" },
	{ "control byte", "a\x01@b", -1, NULL,
	    "control character in address" },
	{ "backslash at end of comment", "a@b (x\\", -1, NULL,
	    "unterminated comment" },
};

static int
t_addr_list(void)
{
	const struct alist_case *c;
	char joined[ALIST_MAX * MSG_ADDR_MAX];
	const char *why;
	struct got g;
	size_t i;
	int rc, k;

	for (i = 0; i < sizeof(alist_cases) / sizeof(alist_cases[0]); i++) {
		c = &alist_cases[i];
		memset(&g, 0, sizeof(g));
		rc = msg_addr_list(c->in, strlen(c->in), got_cb, &g, &why);
		joined[0] = '\0';
		for (k = 0; k < g.n; k++) {
			if (k > 0)
				strcat(joined, "|");
			strcat(joined, g.a[k]);
		}
		if (rc != c->ret || (c->ret == 0 && (strcmp(joined, c->want)
		    != 0 || why != NULL)) || (c->ret != 0 && (why == NULL ||
		    strcmp(why, c->why) != 0))) {
			fprintf(stderr, "  case \"%s\": rc %d, got \"%s\", "
			    "why \"%s\"\n", c->label, rc, joined,
			    why ? why : "(null)");
			return 1;
		}
	}
	return 0;
}

static int
t_addr_list_limits(void)
{
	char big[MSG_ADDR_MAX + 8];
	const char *why;
	struct got g;

	/* the callback's non-zero return stops the walk and comes back */
	memset(&g, 0, sizeof(g));
	g.stop_after = 1;
	CHECK(msg_addr_list("a@b, c@d", 8, got_cb, &g, &why) == 7);
	CHECK(g.n == 1);

	/* explicit length: nothing past it is read */
	memset(&g, 0, sizeof(g));
	CHECK(msg_addr_list("a@b, c@d", 3, got_cb, &g, &why) == 0);
	CHECK(g.n == 1);
	CHECK_STR(g.a[0], "a@b");

	memset(big, 'a', sizeof(big));
	memset(&g, 0, sizeof(g));
	CHECK(msg_addr_list(big, MSG_ADDR_MAX - 1, got_cb, &g, &why) == 0);
	CHECK(g.n == 1 && strlen(g.a[0]) == MSG_ADDR_MAX - 1);
	memset(&g, 0, sizeof(g));
	CHECK(msg_addr_list(big, MSG_ADDR_MAX, got_cb, &g, &why) == -1);
	CHECK_STR(why, "address too long");
	CHECK(g.n == 0);
	return 0;
}

/* --- small formatters --- */

static int
phrase_is(const char *in, const char *want)
{
	struct msg_buf b = { NULL, 0, 0 };
	int ok;

	if (msg_phrase(&b, in, strlen(in)) == -1)
		return 0;
	ok = buf_is(&b, want);
	if (!ok)
		fprintf(stderr, "  phrase \"%s\" -> \"%.*s\"\n", in,
		    (int)b.len, b.p);
	msg_buf_free(&b);
	return ok;
}

static int
t_phrase(void)
{
	CHECK(phrase_is("CronDaemon", "CronDaemon"));
	CHECK(phrase_is("Cron Daemon", "Cron Daemon"));
	CHECK(phrase_is("J. Smith", "\"J. Smith\""));
	CHECK(phrase_is("Doe, John", "\"Doe, John\""));
	CHECK(phrase_is("a\"b\\c", "\"a\\\"b\\\\c\""));
	CHECK(phrase_is(" lead", "\" lead\""));
	CHECK(phrase_is("two  spaces", "\"two  spaces\""));
	CHECK(phrase_is("bad\r\nHeader: x", "\"badHeader: x\""));
	CHECK(phrase_is("J\xc3\xb6rg", "J\xc3\xb6rg"));
	return 0;
}

static int
stuff_is(const char *in, size_t n, const char *want)
{
	struct msg_buf b = { NULL, 0, 0 };
	int ok;

	if (msg_dot_stuff(&b, in, n) == -1)
		return 0;
	ok = buf_is(&b, want);
	msg_buf_free(&b);
	return ok;
}

static int
t_dot_stuff(void)
{
	CHECK(stuff_is(".a\r\nb\r\n..\r\n.\r\n", 14,
	    "..a\r\nb\r\n...\r\n..\r\n.\r\n"));
	CHECK(stuff_is("", 0, ".\r\n"));
	CHECK(stuff_is("x", 1, "x\r\n.\r\n"));
	CHECK(stuff_is("a.\r\n", 4, "a.\r\n.\r\n"));
	return 0;
}

static int
json_is(const char *in, size_t n, const char *want)
{
	struct msg_buf b = { NULL, 0, 0 };
	int ok;

	if (msg_json_str(&b, in, n) == -1)
		return 0;
	ok = buf_is(&b, want);
	if (!ok)
		fprintf(stderr, "  json -> %.*s\n", (int)b.len, b.p);
	msg_buf_free(&b);
	return ok;
}

static int
t_json(void)
{
	CHECK(json_is("plain", 5, "\"plain\""));
	CHECK(json_is("", 0, "\"\""));
	CHECK(json_is("a\"b\\c/", 6, "\"a\\\"b\\\\c/\""));
	CHECK(json_is("\x01\n\x1f\x7f", 4,
	    "\"\\u0001\\u000a\\u001f\\u007f\""));
	CHECK(json_is("a\0b", 3, "\"a\\u0000b\""));
	CHECK(json_is("\xc3\xa9", 2, "\"\xc3\xa9\""));		/* é */
	CHECK(json_is("\xe2\x82\xac", 3, "\"\xe2\x82\xac\""));	/* € */
	CHECK(json_is("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\""));
	CHECK(json_is("\xff", 1, "\"\\ufffd\""));
	CHECK(json_is("\xc0\x80", 2, "\"\\ufffd\\ufffd\""));	/* overlong */
	CHECK(json_is("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""));
	CHECK(json_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""));
	CHECK(json_is("\xf4\x90\x80\x80", 4,
	    "\"\\ufffd\\ufffd\\ufffd\\ufffd\""));		/* > U+10FFFF */
	CHECK(json_is("\xe2\x82", 2, "\"\\ufffd\\ufffd\""));	/* cut short */
	CHECK(json_is("\xc3\xa9x\x80", 4, "\"\xc3\xa9x\\ufffd\""));
	/* C1 controls (the 8-bit CSI) escaped like C0; U+00A0 as it is */
	CHECK(json_is("\xc2\x9b" "1m\xc2\x80", 6, "\"\\u009b1m\\u0080\""));
	CHECK(json_is("\xc2\xa0", 2, "\"\xc2\xa0\""));
	CHECK(json_is("x\xc2", 2, "\"x\\ufffd\""));	/* cut after C2 */
	return 0;
}

static int
t_8bit(void)
{
	CHECK(!msg_has_8bit("plain\r\n", 7));
	CHECK(msg_has_8bit("caf\xc3\xa9", 5));
	CHECK(!msg_has_8bit("", 0));
	return 0;
}

/* Addresses without a domain get one; phrases, groups, <> do not. */
static int
t_qualify(void)
{
	static const struct {
		const char *in, *want;
	} c[] = {
		{ " root", " root@o.test" },
		{ " root (Cron Daemon)\r\n", " root@o.test (Cron Daemon)\r\n" },
		{ " root(c)", " root@o.test(c)" },
		{ " (c) root", " (c) root@o.test" },
		{ " mdadm monitoring <root>\r\n",
		    " mdadm monitoring <root@o.test>\r\n" },
		{ " a, b@x.test, <c>", " a@o.test, b@x.test, <c@o.test>" },
		{ " \"John Smith\" <js>", " \"John Smith\" <js@o.test>" },
		{ " \"Smith, John\" <js>", " \"Smith, John\" <js@o.test>" },
		{ " John Smith", " John Smith" },
		{ " undisclosed-recipients:;", " undisclosed-recipients:;" },
		{ " grp: a, b;", " grp: a@o.test, b@o.test;" },
		{ " <>", " <>" },
		{ " \"odd user\"", " \"odd user\"@o.test" },
		{ " \"a\\\"b\"", " \"a\\\"b\"@o.test" },
		{ " a . b", " a . b@o.test" },
		{ " root,\r\n admin\r\n", " root@o.test,\r\n admin@o.test\r\n" },
		{ " x@y.test (c)", " x@y.test (c)" },
		{ " <@r.test:u@y.test>", " <@r.test:u@y.test>" },
		{ " (only a comment)", " (only a comment)" },
		{ "", "" },
		{ " a,,b", " a@o.test,,b@o.test" },
		/* Junk after <...> is not the address: the domain went
		 * after it, and the header named x@o.test, not root. */
		{ " Cron <root> x, b", " Cron <root@o.test> x, b@o.test" },
		{ " <js> \"q\"", " <js@o.test> \"q\"" },
		{ " <js> [1.2.3.4]", " <js@o.test> [1.2.3.4]" },
	};
	struct msg_buf out = { NULL, 0, 0 };
	size_t i;
	int ok = 1;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		out.len = 0;
		if (msg_qualify(&out, c[i].in, strlen(c[i].in), "o.test") == -1 ||
		    out.len != strlen(c[i].want) ||
		    memcmp(out.p, c[i].want, out.len) != 0) {
			fprintf(stderr, "\"%s\": got \"%.*s\"\n", c[i].in,
			    (int)out.len, out.p ? out.p : "");
			ok = 0;
		}
	}
	msg_buf_free(&out);
	CHECK(ok);
	return 0;
}

static const struct t_case cases[] = {
	{ "reader: line ends and the dot, any chunking", t_reader },
	{ "reader: size limit", t_reader_limit },
	{ "header section boundaries", t_head_scan },
	{ "hop count: Received: fields", t_hop },
	{ "build: Bcc dropped, headers added, separator", t_build },
	{ "build: long lines folded or split", t_long_lines },
	{ "address lists", t_addr_list },
	{ "address lists: callback stop, lengths", t_addr_list_limits },
	{ "display names", t_phrase },
	{ "addresses qualified in headers", t_qualify },
	{ "dot-stuffing", t_dot_stuff },
	{ "JSON strings", t_json },
	{ "8-bit detection", t_8bit },
};

T_MAIN("msg", cases)
