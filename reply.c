/*
 * reply.c - takes apart one line of an SMTP server's reply (RFC 5321
 * §4.2): "DDD", "DDD text" or "DDD-text", the first digit 2-5, and the
 * same code on every line of a reply.  It owns the line syntax only:
 * what a code means, and what a multi-line reply adds up to, belong to
 * the callers (deliver.c, check.c, cli.c).  Every input has an explicit
 * length; a line longer than REPLY_LINE_MAX keeps its head, and a buffer
 * that fills without a line end is REPLY_TOO_LONG (the caller gives the
 * connection up rather than wait for ever).  It also takes apart the
 * text a refusal is kept as (REPLY_SAID), and the keywords of an EHLO
 * reply.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io.h"
#include "reply.h"
#include "textfile.h"

/*
 * The EHLO keywords reply_ehlo() knows, in the order of their REPLY_EXT_*
 * bits.  Each must be the whole keyword or end in a space ("SIZE
 * 10240000"), AUTH in a space or the old '=' ("AUTH=PLAIN LOGIN").
 */
#define REPLY_EHLO_KW \
	"STARTTLS\0PIPELINING\0SIZE\0AUTH\0" "8BITMIME\0SMTPUTF8\0"

enum reply_status
reply_take(const char *buf, size_t len, int full, int want,
    struct reply_line *r, size_t *used)
{
	const char *lf, *nul;
	size_t n;

	*used = 0;
	if ((lf = memchr(buf, '\n', len)) == NULL)
		return full ? REPLY_TOO_LONG : REPLY_AGAIN;
	*used = (size_t)(lf - buf) + 1;
	n = (size_t)(lf - buf);
	if (n >= sizeof(r->line))
		n = sizeof(r->line) - 1;	/* the head of a long line */
	/* A NUL ends the line kept: the callers print it as a string. */
	if ((nul = memchr(buf, '\0', n)) != NULL)
		n = (size_t)(nul - buf);
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	memcpy(r->line, buf, n);
	r->line[n] = '\0';
	r->len = n;
	r->code = reply_code(r->line, n, want, &r->more);
	return r->code == -1 ? REPLY_MALFORMED : REPLY_OK;
}

enum reply_status
reply_read(struct io *io, int want, struct reply_line *r)
{
	enum reply_status st;
	const char *buf;
	size_t len, used;

	buf = io_in(io, &len);
	st = reply_take(buf, len, io_in_full(io), want, r, &used);
	if (used > 0)	/* io_consume() has side effects: not for nothing */
		io_consume(io, used);
	return st;
}

int
reply_code(const char *line, size_t len, int want, int *more)
{
	int code;

	*more = len > 3 && line[3] == '-';
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-'))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	return want != 0 && code != want ? -1 : code;
}

size_t
reply_enh(const char *s)
{
	size_t i = 2, part, digits;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (digits = 0; s[i] >= '0' && s[i] <= '9'; digits++)
			i++;
		if (digits == 0 || digits > 3)
			return 0;
		if (part == 0 && s[i++] != '.')
			return 0;
	}
	return s[i] == ' ' || s[i] == '\0' ? i : 0;
}

size_t
reply_enh_code(const char *reply, const char **code)
{
	size_t k;

	if (strlen(reply) > 4 && (reply[3] == ' ' || reply[3] == '-') &&
	    reply[4] == reply[0] && (k = reply_enh(reply + 4)) > 0) {
		*code = reply + 4;
		return k;
	}
	return 0;
}

/*
 * REPLY_SAID backwards.  NAME ends at the first '[' and ADDR at the
 * first "] said: " (no DNS name or address holds one).  The reply is
 * found from the front, so a text cut short keeps what it has; it ends
 * before a last "(in reply to" only in a text that still ends in ")":
 * a reply may say those words itself.
 */
const char *
reply_said(const char *s, size_t *len, const char **name, size_t *namelen)
{
	const char *r, *e, *end = s + strlen(s);
	int more;

	/* The end in hand, memcmp() and memmem() do what strncmp() and
	 * strstr() did, and ferry imports neither of those (nor strcspn()
	 * and strrchr(): strchr() and a loop). */
	if (end - s < 5 || memcmp(s, "host ", 5) != 0 ||
	    (r = memmem(s, (size_t)(end - s), "] said: ", 8)) == NULL ||
	    (e = strchr(s + 5, '[')) == NULL || e == s + 5 || e > r ||
	    reply_code(r + 8, textfile_strnlen(r + 8, 4), 0, &more) == -1)
		return NULL;
	*name = s + 5;
	*namelen = (size_t)(e - s) - 5;
	*len = (size_t)(end - (r += 8));
	/* The last '(' by hand: strrchr() would be one more import. */
	for (e = end; e > r && *--e != '(';)
		;
	if (*e == '(' && r[*len - 1] == ')' &&
	    end - (e - 1) >= 14 && memcmp(e - 1, " (in reply to ", 14) == 0)
		*len = (size_t)(e - 1 - r);
	return r;
}

unsigned
reply_ehlo(const char *kw, uint64_t *size)
{
	const char *p = REPLY_EHLO_KW;
	unsigned i, ext;
	size_t n;
	char c;

	for (i = 0; *p != '\0'; i++, p += n + 1) {
		n = strlen(p);
		if (strncasecmp(kw, p, n) != 0)
			continue;
		c = kw[n];
		if (i == 3 ? c != ' ' && c != '=' : c != '\0' && c != ' ')
			return 0;
		ext = 1u << i;
		if (ext == REPLY_EXT_SIZE && size != NULL)
			*size = c ? strtoull(kw + 5, NULL, 10) : 0;
		if (ext != REPLY_EXT_AUTH)
			return ext;
		/* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN". */
		for (p = kw + 5; *p != '\0'; p += n) {
			while (*p == ' ')
				p++;
			for (n = 0; p[n] != '\0' && p[n] != ' '; n++)
				;
			if (n == 5 && strncasecmp(p, "PLAIN", 5) == 0)
				ext |= REPLY_EXT_AUTH_PLAIN;
			else if (n == 5 && strncasecmp(p, "LOGIN", 5) == 0)
				ext |= REPLY_EXT_AUTH_LOGIN;
		}
		return ext;
	}
	return 0;
}
