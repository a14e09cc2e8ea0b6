/*
 * fuzz_reply.c - libFuzzer target for reply.c, fed what a server might
 * send: the input fills a buffer the size of io's (IO_IN_SIZE; "full"
 * when it is), and reply_take() takes lines off its front the way
 * deliver.c and check.c do, want the reply's code after a "DDD-" line.
 * Each line is checked against the reader they had before the parser
 * was shared (kept below as the oracle, with deliver.c's rule that a
 * line goes on its reply with the same code), so the verdicts and the
 * text cannot drift; and against the contract:
 * used stays inside the buffer, the line is NUL-terminated with no NUL
 * before its end, an OK code is 200-599.  The text's enhanced status
 * code (reply_enh()) is checked against a second reading of RFC 3463.
 * Every line is also read as a kept refusal (reply_said(): what it
 * finds lies inside the line), and a reply line wrapped in REPLY_SAID
 * must come back whole, with the name it was given.  Its text is also
 * read as an EHLO keyword (reply_ehlo(): one keyword's bit at most).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The oracle: deliver_on_io()'s line reader as it was, on a buffer. */
static enum reply_status
old_take(const char *buf, size_t len, int full, char *line, size_t size,
    size_t *used, int *code, int *more)
{
	const char *lf;
	size_t n;

	*used = 0;
	if ((lf = memchr(buf, '\n', len)) == NULL)
		return full ? REPLY_TOO_LONG : REPLY_AGAIN;
	n = (size_t)(lf - buf) + 1;
	if (n - 1 >= size)
		n = size;
	memcpy(line, buf, n - 1);
	line[n - 1] = '\0';
	*used = (size_t)(lf - buf) + 1;
	len = strlen(line);
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
	    line[2] > '9' || (len > 3 && line[3] != ' ' &&
	    line[3] != '-'))
		return REPLY_MALFORMED;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
	    (line[2] - '0');
	*more = len > 3 && line[3] == '-';
	return REPLY_OK;
}

/* reply_said() on s finds nothing, or a name and a reply inside s, the
 * reply starting with a code; a reply wrapped as deliver.c does comes
 * back as it was. */
static void
check_said(const char *s, int reply)
{
	static char buf[REPLY_LINE_MAX + 96];
	const char *p, *name;
	size_t len, nlen, n = strlen(s);
	int more;

	if ((p = reply_said(s, &len, &name, &nlen)) != NULL &&
	    (p < s || len > n - (size_t)(p - s) || name != s + 5 ||
	    nlen == 0 || name + nlen >= p ||
	    reply_code(p, len < 4 ? len : 4, 0, &more) == -1))
		abort();
	if (!reply)
		return;
	snprintf(buf, sizeof(buf), REPLY_SAID, "mx.example", "192.0.2.1", s,
	    "end of DATA");
	if ((p = reply_said(buf, &len, &name, &nlen)) == NULL || len != n ||
	    memcmp(p, s, n) != 0 || nlen != 10 ||
	    memcmp(name, "mx.example", 10) != 0)
		abort();
}

/* reply_enh()'s contract: a class, two dots, runs of 1-3 digits, and a
 * space or the end after it; nothing that is all that is refused. */
static void
check_enh(const char *s)
{
	size_t k = reply_enh(s), i, dots = 0, run = 0, ok = 0;

	for (i = 1; s[i] != '\0' && s[i] != ' '; i++) {
		if (s[i] == '.') {
			if (run == 0 && i > 1)
				break;
			dots++;
			run = 0;
		} else if (s[i] >= '0' && s[i] <= '9' && dots > 0 && ++run <= 3)
			continue;
		else
			break;
	}
	if ((s[i] == '\0' || s[i] == ' ') && dots == 2 && run > 0 &&
	    s[1] == '.' && (s[0] == '2' || s[0] == '4' || s[0] == '5'))
		ok = i;
	if (k != ok)
		abort();
}

/* reply_ehlo(): one keyword's bit at most, AUTH's mechanisms only with
 * AUTH, and the same bits whether SIZE's number is asked for or not. */
static void
check_ehlo(const char *kw)
{
	uint64_t size;
	unsigned e = reply_ehlo(kw, &size), kwbit = e & 0x3fu;

	if ((kwbit & (kwbit - 1)) != 0 ||
	    (e != kwbit && kwbit != REPLY_EXT_AUTH) ||
	    reply_ehlo(kw, NULL) != e)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct reply_line r;
	static char line[REPLY_LINE_MAX];
	const char *buf = (const char *)data;
	size_t len = size < IO_IN_SIZE ? size : IO_IN_SIZE, used, oused;
	int full = len == IO_IN_SIZE, code = 0, more = 0, want = 0, c2, m2;
	enum reply_status st, ost;

	for (;;) {
		st = reply_take(buf, len, full, want, &r, &used);
		ost = old_take(buf, len, full, line, sizeof(line), &oused,
		    &code, &more);
		if (ost == REPLY_OK && want != 0 && code != want)
			ost = REPLY_MALFORMED;
		if (st != ost || used != oused || used > len)
			abort();
		if (st == REPLY_AGAIN || st == REPLY_TOO_LONG) {
			if (used != 0 || memchr(buf, '\n', len) != NULL ||
			    (st == REPLY_TOO_LONG) != full)
				abort();
			break;
		}
		if (used == 0 || buf[used - 1] != '\n' ||
		    r.len >= sizeof(r.line) || r.line[r.len] != '\0' ||
		    strlen(r.line) != r.len || strcmp(r.line, line) != 0 ||
		    memcmp(r.line, buf, r.len) != 0)
			abort();
		if (st == REPLY_OK && (r.code != code || r.more != more ||
		    r.code < 200 || r.code > 599))
			abort();
		/* cli.c's entry must agree on the same line. */
		c2 = reply_code(r.line, r.len, want, &m2);
		if (c2 != (st == REPLY_OK ? r.code : -1) ||
		    (st == REPLY_OK && m2 != r.more))
			abort();
		if (st == REPLY_OK && r.len > 4) {
			check_enh(r.line + 4);
			check_ehlo(r.line + 4);
		}
		check_said(r.line, st == REPLY_OK);
		want = st == REPLY_OK && r.more ? r.code : 0;
		/* Go on past a bad line too: the buffer's rest is input. */
		buf += used;
		len -= used;
		full = 0;
	}
	return 0;
}
