/*
 * log_test.c - log_printable(), what stands between a peer's bytes and
 * the terminal showing a log line or mailq: ASCII controls and DEL, C1
 * controls in UTF-8 (the 8-bit CSI), bytes that are no UTF-8 (a lone
 * continuation, an overlong form, a sequence cut at the end) become '?',
 * one per byte; printable ASCII and other UTF-8 stay as they are.
 */
#include <string.h>

#include "log.h"
#include "t.h"

static int
same(const char *in, size_t n, const char *want)
{
	char buf[64];

	memcpy(buf, in, n);
	buf[n] = '\0';
	log_printable(buf, n);
	return strcmp(buf, want) == 0;
}

/* The input's length from the literal itself, NULs and all. */
#define SAME(lit, want)	same((lit), sizeof(lit) - 1, (want))

static int
test_ascii(void)
{
	CHECK(SAME("plain text 123 ~", "plain text 123 ~"));
	CHECK(SAME("a\nb\rc\td\x1b[31m", "a?b?c?d?[31m"));
	CHECK(SAME("del\x7f", "del?"));
	CHECK(SAME("", ""));
	return 0;
}

static int
test_utf8(void)
{
	/* é, €, 😀 and NBSP (U+00A0, the first code point after C1) */
	CHECK(SAME("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0"));
	/* C1 CSI as UTF-8, and U+0080 */
	CHECK(SAME("\xc2\x9b" "31m \xc2\x80", "??31m ??"));
	/* a raw 8-bit CSI, a lone continuation, an overlong '/' */
	CHECK(SAME("\x9b" "31m \x80 \xc0\xaf", "?31m ? ??"));
	/* RLO, LRM, LINE SEPARATOR, PDI: each of their bytes; en dash kept */
	CHECK(SAME("a\xe2\x80\xae" "b\xe2\x80\x8e" "c\xe2\x80\xa8" "d\xe2\x81\xa9"
	    "e\xe2\x80\x93", "a???b???c???d???e\xe2\x80\x93"));
	/* cut at the end (a log line cut at its limit) */
	CHECK(SAME("x\xe2\x82", "x??"));
	return 0;
}

static const struct t_case cases[] = {
	{ "ASCII controls and DEL", test_ascii },
	{ "UTF-8 kept, C1 and malformed bytes not", test_utf8 },
};

T_MAIN("log", cases)
