/*
 * fuzz_fplist.c - tls_fplist_parse() on arbitrary bytes.  The first byte
 * picks the error buffer's size (1..256, allocated exactly so ASan sees
 * an overrun); the rest is the file.  Beyond "no crash": an error is
 * terminated and names the file and a line that exists; a success holds
 * at most TLS_FP_MAX entries, and every line a plain oracle here reads as
 * a fingerprint (64 hex digits, or 32 colon-separated pairs, then the
 * end or a blank) is in the set; each such entry, formatted with
 * tls_fp_format(), parses back to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

#define FUZZ_HDR	1

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	fuzz_hex(uint8_t);
static int	fuzz_oracle(const uint8_t *, size_t, unsigned char *);
static void	fuzz_roundtrip(const unsigned char *);

static int
fuzz_hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* 1: the line is a fingerprint (fp set); 0: it is not, or not clearly. */
static int
fuzz_oracle(const uint8_t *s, size_t len, unsigned char *fp)
{
	size_t p = 0, step, need, i;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	while (p < len && (s[p] == ' ' || s[p] == '\t'))
		p++;
	step = len - p > 2 && s[p + 2] == ':' ? 3 : 2;
	need = step == 3 ? 95 : 64;
	if (len - p < need)
		return 0;
	for (i = 0; i < TLS_FP_LEN; i++) {
		const uint8_t *h = s + p + i * step;

		if (fuzz_hex(h[0]) < 0 || fuzz_hex(h[1]) < 0 ||
		    (step == 3 && i + 1 < TLS_FP_LEN && h[2] != ':'))
			return 0;
		fp[i] = (unsigned char)(fuzz_hex(h[0]) << 4 | fuzz_hex(h[1]));
	}
	p += need;
	return p == len || s[p] == ' ' || s[p] == '\t';
}

static void
fuzz_roundtrip(const unsigned char *fp)
{
	struct tls_fplist *l;
	char text[96], err[128];

	tls_fp_format(fp, text);
	if (strlen(text) != 95)
		__builtin_trap();
	l = tls_fplist_parse("again", text, 95, err, sizeof(err));
	if (l == NULL || tls_fplist_count(l) != 1 || !tls_fplist_has(l, fp))
		__builtin_trap();
	tls_fplist_free(l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *s = data + FUZZ_HDR, *nl;
	unsigned char fp[TLS_FP_LEN];
	struct tls_fplist *l;
	size_t errsz, len, pos, lines = 0, linelen, n;
	char *err;
	unsigned long line;

	if (size < FUZZ_HDR)
		return 0;
	errsz = (size_t)data[0] + 1;
	len = size - FUZZ_HDR;
	if ((err = malloc(errsz)) == NULL)
		return 0;
	memset(err, 'x', errsz);
	/* the text is not terminated: the parser must keep to len */
	l = tls_fplist_parse("fuzz", (const char *)s, len, err, errsz);
	for (pos = 0; pos < len; pos += linelen + 1) {
		nl = memchr(s + pos, '\n', len - pos);
		linelen = nl != NULL ? (size_t)(nl - (s + pos)) : len - pos;
		lines++;
		if (l != NULL && fuzz_oracle(s + pos, linelen, fp)) {
			if (!tls_fplist_has(l, fp))
				__builtin_trap();
			fuzz_roundtrip(fp);
		}
	}
	if (l == NULL) {
		if (memchr(err, '\0', errsz) == NULL)
			__builtin_trap();
		if (errsz > 16) {
			if (strncmp(err, "fuzz:", 5) != 0)
				__builtin_trap();
			line = strtoul(err + 5, NULL, 10);
			if (line == 0 || line > lines)
				__builtin_trap();
		}
	} else {
		n = tls_fplist_count(l);
		if (n > TLS_FP_MAX || n > lines)
			__builtin_trap();
		tls_fplist_free(l);
	}
	free(err);
	return 0;
}
