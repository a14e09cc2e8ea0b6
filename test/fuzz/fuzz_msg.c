/*
 * fuzz_msg.c - msg.c on arbitrary bytes: the reader (fed in two chunks,
 * with and without the "." terminator), the header scan and build, an
 * address list over every header value, the qualifying of addresses
 * without a domain, and JSON escaping.  Checks the
 * invariants the daemon relies on: only CRLF line ends (reader and
 * build), no built line over MSG_LINE_MAX, JSON without raw control
 * bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
count_cb(void *arg, const char *addr, size_t end)
{
	size_t *n = arg;

	(void)end;
	if (strlen(addr) >= MSG_ADDR_MAX)
		abort();
	(*n)++;
	return 0;
}

static void
check_lines(const struct msg_buf *b, size_t max)
{
	size_t i, start = 0;

	for (i = 0; i < b->len; i++) {
		if (b->p[i] == '\n') {
			if (i == 0 || b->p[i - 1] != '\r' ||
			    i - 1 - start > max)
				abort();
			start = i + 1;
		} else if (b->p[i] == '\r' && (i + 1 == b->len ||
		    b->p[i + 1] != '\n'))
			abort();
	}
	if (start != b->len)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct msg_buf out = { NULL, 0, 0 }, js = { NULL, 0, 0 };
	struct msg_reader r;
	struct msg_field f;
	struct msg_head h;
	const char *why;
	size_t half = size / 2, pos, n = 0, i;

	msg_reader_init(&r, size > 0 && (data[0] & 1), 1 << 20);
	if (msg_reader_feed(&r, s, half) == 0 &&
	    msg_reader_feed(&r, s + half, size - half) == 0 &&
	    msg_reader_end(&r) == 0) {
		check_lines(&r.out, SIZE_MAX);	/* lines are build's job */
		msg_head_scan(r.out.p, r.out.len, &h);
		if (h.start > h.end || h.end > h.body || h.body > r.out.len)
			abort();
		for (pos = h.start; msg_field_next(r.out.p, h.end, &pos, &f); )
			(void)msg_addr_list(r.out.p + f.value, f.end - f.value,
			    count_cb, &n, &why);
		if (msg_build(&out, r.out.p, r.out.len, &h, "X: y\r\n", 6,
		    1) == 0)
			check_lines(&out, MSG_LINE_MAX);
	}
	(void)msg_addr_list(s, size, count_cb, &n, &why);
	/* msg_qualify() only inserts "@fz.test"s into a list it can read,
	 * and leaves the rest as it came. */
	js.len = 0;
	if (msg_qualify(&js, s, size, "fz.test") == 0 &&
	    (js.len < size || (js.len - size) % 8 != 0 ||
	    (size > 0 && js.len == size && memcmp(js.p, s, size) != 0)))
		abort();
	js.len = 0;
	if (msg_json_str(&js, s, size) == 0)
		for (i = 0; i < js.len; i++)
			if ((unsigned char)js.p[i] < 0x20)
				abort();
	msg_buf_free(&r.out);
	msg_buf_free(&out);
	msg_buf_free(&js);
	return 0;
}
