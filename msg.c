/*
 * msg.c - message text helpers for cli.c (see msg.h).  Owns the byte-level
 * rules sendmail applies before a message reaches the daemon: line ends,
 * the "." terminator, the header section, Bcc removal, line-length repair,
 * address lists, dot-stuffing; and the JSON string escaping mailq uses.
 * Pure: no I/O, no globals; buffers grow with realloc and a failure is
 * -1 with errno ENOMEM (or EINVAL and *why for a syntax error).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "msg.h"

#define MSG_BUF_MIN	4096	/* first allocation */

/* msg_addr_list's element under construction. */
struct alist {
	size_t n;
	/* Bytes, not ints: a flag store is then 3 bytes of code shorter. */
	unsigned char angle;	/* inside <> */
	unsigned char had_angle; /* this one had <>: later words are junk */
	unsigned char ws;	/* space or a comment since the last byte */
	unsigned char bad;	/* two words with only space between them */
	size_t end;		/* input offset just past the address */
	char cur[MSG_ADDR_MAX];	/* last: the scalars get one-byte offsets */
};

static int is_wsp(unsigned char);
static int is_ftext(unsigned char);
static size_t line_end(const char *, size_t, size_t, size_t *);
static int field_start(const char *, size_t, size_t, size_t *, size_t *);
static int put_lines(struct msg_buf *, const char *, size_t, int);
static int alist_put(struct alist *, unsigned char, size_t, const char **);
/* noinline: one copy is smaller than LTO's two inlined ones. */
static int alist_emit(struct alist *, int (*)(void *, const char *, size_t),
    void *, const char **) __attribute__((noinline));

int
msg_buf_add(struct msg_buf *b, const void *p, size_t n)
{
	size_t cap;
	char *np;

	if (n == 0)
		return 0;
	if (n > SIZE_MAX / 2 - b->len) {
		errno = ENOMEM;
		return -1;
	}
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : MSG_BUF_MIN;
		while (cap < b->len + n)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void
msg_buf_free(struct msg_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* --- reading stdin --- */

void
msg_reader_init(struct msg_reader *r, int dot_ends, size_t limit)
{
	memset(r, 0, sizeof(*r));
	r->dot_ends = dot_ends;
	r->limit = limit;
}

int
msg_reader_feed(struct msg_reader *r, const char *p, size_t n)
{
	size_t i = 0, run;

	while (i < n && !r->ended && !r->over) {
		if (p[i] == '\r') {
			/* Held: it ends the line if only CRs come before
			 * the LF, else it is a space (Postfix's sendmail
			 * too; RFC 5322 forbids it, and as a line end it
			 * would end the header inside a field). */
			r->cr_held++;
			i++;
			continue;
		}
		if (p[i] != '\n') {
			for (; r->cr_held > 0 && r->out.len <= r->limit;
			    r->cr_held--)
				if (msg_buf_add(&r->out, " ", 1) == -1)
					return -1;
			for (run = 0; i + run < n && p[i + run] != '\r' &&
			    p[i + run] != '\n'; run++)
				;
			if (msg_buf_add(&r->out, p + i, run) == -1)
				return -1;
			i += run;
		} else {
			r->cr_held = 0;
			if (r->dot_ends && r->out.len - r->line_start == 1 &&
			    r->out.p[r->line_start] == '.') {
				r->out.len = r->line_start;
				r->ended = 1;
				return 0;
			}
			i++;
			if (msg_buf_add(&r->out, "\r\n", 2) == -1)
				return -1;
			r->line_start = r->out.len;
		}
		if (r->out.len > r->limit)
			r->over = 1;
	}
	return 0;
}

int
msg_reader_end(struct msg_reader *r)
{
	/* An unended last line ends as an LF would have ended it (feed
	 * checks ended and over); no LF follows its held CRs, so they are
	 * spaces: all but one flushed by the space fed for the last. */
	if (r->cr_held > 0) {
		r->cr_held--;
		if (msg_reader_feed(r, " ", 1) == -1)
			return -1;
	}
	if (r->out.len == r->line_start)
		return 0;
	return msg_reader_feed(r, "\n", 1);
}

/* --- the header section --- */

static int
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 §3.6.8 ftext: printable US-ASCII but ':'. */
static int
is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* End of the line content at pos (before CRLF or LF); *next = next line. */
static size_t
line_end(const char *b, size_t len, size_t pos, size_t *next)
{
	const char *lf = memchr(b + pos, '\n', len - pos);
	size_t e = lf != NULL ? (size_t)(lf - b) : len;

	*next = lf != NULL ? e + 1 : len;
	if (e > pos && b[e - 1] == '\r')
		e--;
	return e;
}

/* "name WSP* :" at pos, within the line ending at e? */
static int
field_start(const char *b, size_t e, size_t pos, size_t *name_len,
    size_t *value)
{
	size_t i = pos;

	while (i < e && is_ftext((unsigned char)b[i]))
		i++;
	if (i == pos)
		return 0;
	*name_len = i - pos;
	/* obs-optional (§4.5.8): WSP before the colon. */
	while (i < e && is_wsp((unsigned char)b[i]))
		i++;
	if (i == e || b[i] != ':')
		return 0;
	*value = i + 1;
	return 1;
}

void
msg_head_scan(const char *b, size_t len, struct msg_head *h)
{
	struct msg_field f;
	size_t pos = 0, next;

	/* An mbox separator is not a header; classic sendmail drops it. */
	if (len >= 5 && memcmp(b, "From ", 5) == 0)
		(void)line_end(b, len, 0, &pos);
	h->start = pos;
	while (msg_field_next(b, len, &pos, &f))
		;
	/* Stopped at the end, at the empty line or at a line that is no
	 * field: only the empty line is skipped into the body. */
	h->end = h->body = pos;
	if (pos < len && line_end(b, len, pos, &next) == pos)
		h->body = next;
}

int
msg_field_next(const char *b, size_t end, size_t *pos, struct msg_field *f)
{
	size_t p = *pos, e, next;

	if (p >= end)
		return 0;
	e = line_end(b, end, p, &next);
	if (!field_start(b, e, p, &f->name_len, &f->value))
		return 0;
	f->start = p;
	p = next;
	while (p < end && is_wsp((unsigned char)b[p]))
		(void)line_end(b, end, p, &p);
	f->end = *pos = p;
	return 1;
}

int
msg_field_line(const char *b, size_t len, struct msg_field *f)
{
	f->start = 0;
	f->end = len;
	return field_start(b, len, 0, &f->name_len, &f->value);
}

int
msg_field_is(const char *b, const struct msg_field *f, const char *name)
{
	return strlen(name) == f->name_len &&
	    strncasecmp(b + f->start, name, f->name_len) == 0;
}

int
msg_hop(const char *b, const struct msg_field *f, unsigned *hops)
{
	return msg_field_is(b, f, "Received") && ++*hops > MSG_HOP_LIMIT;
}

int
msg_field_resent(const char *b, struct msg_field *f)
{
	if (f->name_len <= 7 || strncasecmp(b + f->start, "Resent-", 7) != 0)
		return 0;
	f->start += 7;
	f->name_len -= 7;
	return 1;
}

/*
 * Copy lines, each ended with CRLF, none longer than MSG_LINE_MAX.  A
 * header line is folded (§2.2.3) before a WSP that follows a non-WSP, so
 * unfolding gives the same text back; only when there is no such WSP is
 * a "CRLF SP" forced in.  A body line is cut with CRLF: RFC 5322 has no
 * way to continue one, and a changed line beats a refused message.
 */
static int
put_lines(struct msg_buf *out, const char *p, size_t n, int header)
{
	size_t ls = 0, e, next, cut, i;
	int lead, fold;

	while (ls < n) {
		e = line_end(p, n, ls, &next);
		lead = 0;	/* a forced fold put an SP before this part */
		/* Each part: up to cut, then CRLF, or CRLF SP after a forced
		 * fold (fold); the last part (cut == e) gets a plain CRLF. */
		do {
			cut = e;
			fold = 0;
			if (e - ls + (size_t)lead > MSG_LINE_MAX) {
				cut = ls + MSG_LINE_MAX - (size_t)lead;
				for (i = cut; header && i > ls + 1; i--)
					if (is_wsp((unsigned char)p[i]) &&
					    !is_wsp((unsigned char)p[i - 1]))
						break;
				if (header && i > ls + 1)
					cut = i;
				else
					fold = header;
			}
			if (msg_buf_add(out, p + ls, cut - ls) == -1 ||
			    msg_buf_add(out, "\r\n ", 2 + (size_t)fold) == -1)
				return -1;
			ls = cut;
			lead = fold;
		} while (ls < e);
		ls = next;
	}
	return 0;
}

int
msg_field_drop(const char *b, const struct msg_field *f)
{
	/* RFC 5322 §3.6.3: Bcc is for the envelope only.  A message
	 * delivered once (fetchmail's mda, procmail's "!") brings its old
	 * Return-Path (RFC 5321 §4.4: the final hop writes it) and an mbox
	 * Content-Length that our CRLF and added headers make wrong:
	 * Postfix's message_drop_headers. */
	static const char names[] =
	    "Bcc\0Resent-Bcc\0Return-Path\0Content-Length\0";
	const char *k;

	for (k = names; *k != '\0' && !msg_field_is(b, f, k);
	    k += strlen(k) + 1)
		;
	return *k != '\0';
}

int
msg_build(struct msg_buf *out, const char *b, size_t len,
    const struct msg_head *h, const char *add, size_t addlen, int drop)
{
	struct msg_field f;
	size_t pos = h->start;

	while (msg_field_next(b, h->end, &pos, &f)) {
		if (drop && msg_field_drop(b, &f))
			continue;
		if (put_lines(out, b + f.start, f.end - f.start, 1) == -1)
			return -1;
	}
	/* After the fields: trace fields (Received:) stay on top, §3.6. */
	if (msg_buf_add(out, add, addlen) == -1 ||
	    msg_buf_add(out, "\r\n", 2) == -1)
		return -1;
	if (h->body < len && put_lines(out, b + h->body, len - h->body, 0) == -1)
		return -1;
	return 0;
}

/* --- address lists --- */

static int
alist_put(struct alist *a, unsigned char c, size_t end, const char **why)
{
	int wordish = c != '.' && c != '@';

	if (a->had_angle && !a->angle)
		return 0;	/* "<a@b> junk": the address is already whole */
	if ((c < 0x20 && c != '\t') || c == 0x7f) {
		*why = "control character in address";
		return -1;
	}
	/* "John Smith" without <>: not an address.  "a . b @ c" is
	 * (obs-local-part, §4.4), so spaces around '.' and '@' are fine. */
	if (a->ws && a->n > 0 && wordish && a->cur[a->n - 1] != '.' &&
	    a->cur[a->n - 1] != '@')
		a->bad = 1;
	a->ws = 0;
	if (a->n + 1 >= sizeof(a->cur)) {
		*why = "address too long";
		return -1;
	}
	a->cur[a->n++] = (char)c;
	/* Here, not for junk after "<a@b>": "<root> x" must not become
	 * "<root> x@origin", another address than the envelope's. */
	a->end = end;
	return 0;
}

static int
alist_emit(struct alist *a, int (*cb)(void *, const char *, size_t),
    void *arg, const char **why)
{
	int rc = 0;

	if (a->bad) {
		*why = "bad address syntax";
		return -1;
	}
	if (a->n > 0 || a->had_angle) {
		a->cur[a->n] = '\0';
		rc = cb(arg, a->cur, a->end);
	}
	a->n = 0;
	a->angle = a->had_angle = a->ws = a->bad = 0;
	return rc;
}

int
msg_addr_list(const char *s, size_t len,
    int (*cb)(void *, const char *, size_t), void *arg, const char **why)
{
	struct alist a;
	const char *dummy;
	size_t i, depth;
	unsigned char c;
	int rc;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	memset(&a, 0, sizeof(a));
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '[') {
			/* quoted-string (§3.2.4) or domain-literal (§3.4.1):
			 * kept whole, specials inside mean nothing. */
			unsigned char close = c == '"' ? '"' : ']';

			if (alist_put(&a, c, i + 1, why) == -1)
				return -1;
			for (i++; i < len && (unsigned char)s[i] != close; i++) {
				if (s[i] == '\\' && i + 1 < len) {
					if (alist_put(&a, '\\', i + 1, why) == -1)
						return -1;
					i++;
				}
				if (s[i] == '\r' || s[i] == '\n')
					continue;	/* folding */
				a.ws = 0;
				if (alist_put(&a, (unsigned char)s[i], i + 1,
				    why) == -1)
					return -1;
			}
			if (i == len) {
				*why = c == '"' ? "unterminated quoted string" :
				    "unterminated domain literal";
				return -1;
			}
			a.ws = 0;
			if (alist_put(&a, close, i + 1, why) == -1)
				return -1;
		} else if (c == '(') {
			/* comment (§3.2.2), nested, with quoted-pairs */
			for (depth = 1, i++; i < len && depth > 0; i++) {
				if (s[i] == '\\')
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')')
					depth--;
			}
			if (depth > 0) {
				*why = "unterminated comment";
				return -1;
			}
			i--;
			a.ws = 1;
		} else if (is_wsp(c) || c == '\r' || c == '\n') {
			a.ws = 1;
		} else if (c == '<' && !a.angle) {
			/* What came before was the display name. */
			a.n = 0;
			a.angle = a.had_angle = 1;
			a.ws = a.bad = 0;
		} else if (c == '>' && a.angle) {
			a.angle = 0;
		} else if (!a.angle && (c == ',' || c == ';')) {
			if ((rc = alist_emit(&a, cb, arg, why)) != 0)
				return rc;
		} else if (!a.angle && c == ':' && !a.had_angle) {
			/* group (§3.4): "name: a, b;" - drop the name. */
			a.n = 0;
			a.ws = a.bad = 0;
		} else if (alist_put(&a, c, i + 1, why) == -1)
			return -1;
	}
	if (a.angle) {
		*why = "unterminated <";
		return -1;
	}
	return alist_emit(&a, cb, arg, why);
}

/* --- small formatters --- */

int
msg_phrase(struct msg_buf *out, const char *s, size_t n)
{
	static const char specials[] = "()<>[]:;@\\,.\"";
	size_t i;
	int atoms = n > 0 && !is_wsp((unsigned char)s[0]) &&
	    !is_wsp((unsigned char)s[n - 1]);
	unsigned char c;

	for (i = 0; i < n && atoms; i++) {
		c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || strchr(specials, c) != NULL ||
		    (c == ' ' && i + 1 < n && s[i + 1] == ' '))
			atoms = 0;
	}
	if (atoms)
		return msg_buf_add(out, s, n);
	if (msg_buf_add(out, "\"", 1) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			continue;
		if ((c == '"' || c == '\\') && msg_buf_add(out, "\\", 1) == -1)
			return -1;
		if (msg_buf_add(out, s + i, 1) == -1)
			return -1;
	}
	return msg_buf_add(out, "\"", 1);
}

int
msg_dot_stuff(struct msg_buf *out, const char *b, size_t len)
{
	size_t pos = 0, next;

	while (pos < len) {
		(void)line_end(b, len, pos, &next);
		if (b[pos] == '.' && msg_buf_add(out, ".", 1) == -1)
			return -1;
		if (msg_buf_add(out, b + pos, next - pos) == -1)
			return -1;
		pos = next;
	}
	if (len > 0 && (len < 2 || memcmp(b + len - 2, "\r\n", 2) != 0) &&
	    msg_buf_add(out, "\r\n", 2) == -1)
		return -1;
	return msg_buf_add(out, ".\r\n", 3);
}

int
msg_has_8bit(const char *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)b[i] >= 0x80)
			return 1;
	return 0;
}

int
msg_json_str(struct msg_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	char esc[7];
	size_t i, k;

	if (msg_buf_add(out, "\"", 1) == -1)
		return -1;
	for (i = 0; i < n; i += k) {
		k = 1;
		if (u[i] == '"' || u[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)u[i];
			if (msg_buf_add(out, esc, 2) == -1)
				return -1;
		} else if (u[i] < 0x20 || u[i] == 0x7f || (u[i] == 0xc2 &&
		    i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] < 0xa0)) {
			/* Controls, C1 too (the 8-bit CSI): escaped, the
			 * same value, and nothing a terminal acts on. */
			k = u[i] == 0xc2 ? 2 : 1;
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[u[i + k - 1] >> 4];	/* U+0080 is C2 80 */
			esc[5] = hex[u[i + k - 1] & 0xf];
			if (msg_buf_add(out, esc, 6) == -1)
				return -1;
		} else if (u[i] < 0x80) {
			if (msg_buf_add(out, s + i, 1) == -1)
				return -1;
		} else if ((k = addr_utf8_len(u + i, n - i)) > 0) {
			if (msg_buf_add(out, s + i, k) == -1)
				return -1;
		} else {
			k = 1;
			if (msg_buf_add(out, "\\ufffd", 6) == -1)
				return -1;
		}
	}
	return msg_buf_add(out, "\"", 1);
}

struct qualify {
	struct msg_buf *out;
	const char *v, *dom;
	size_t done;		/* of v, copied to out */
};

/* Up to the address's end, then "@domain" if it has none. */
static int
qualify_cb(void *arg, const char *addr, size_t end)
{
	struct qualify *q = arg;

	if (msg_buf_add(q->out, q->v + q->done, end - q->done) == -1 ||
	    (addr[0] != '\0' && strchr(addr, '@') == NULL &&
	    (msg_buf_add(q->out, "@", 1) == -1 ||
	    msg_buf_add(q->out, q->dom, strlen(q->dom)) == -1)))
		return -1;
	q->done = end;
	return 0;
}

int
msg_qualify(struct msg_buf *out, const char *v, size_t n, const char *dom)
{
	struct qualify q = { out, v, dom, 0 };
	size_t start = out->len;

	/* The one address parser (-t uses it too).  A list it cannot read
	 * is left as it came. */
	if (msg_addr_list(v, n, qualify_cb, &q, NULL) != 0) {
		out->len = start;
		q.done = 0;
	}
	return msg_buf_add(out, v + q.done, n - q.done);
}
