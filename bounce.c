/*
 * bounce.c - RFC 3464 delivery status notifications.  Owns the text of a
 * DSN: its headers, the human-readable part, message/delivery-status and
 * the copy of the original headers.  It does not decide who is bounced or
 * when, and it does not create, finish or commit the queue writer: the
 * caller creates it (null sender, QF_BOUNCE, the original sender, after
 * aliases, as recipients), bounce_compose() writes the whole body, and
 * the caller then calls queue_writer_finish() and commits.  Returns 0,
 * or -1 with errno set (EINVAL for a bounce of a bounce, the writer's
 * errno else).
 *
 * Everything but the original headers of an SMTPUTF8 message (8-bit
 * bytes in any other are quoted as '?') is 7-bit, CRLF, and no line is
 * longer than BOUNCE_LINE_MAX.  Text that came from a remote (replies,
 * addresses) goes through put_text(), which turns CR, LF and TAB into
 * spaces, every other control and 8-bit byte into '?', and folds: so it
 * can never start a line, and therefore never a header or a boundary.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "addr.h"
#include "bounce.h"
#include "hdr.h"
#include "msg.h"
#include "queue.h"
#include "reply.h"
#include "textfile.h"

#define BOUNCE_LINE_MAX		998	/* RFC 5322 §2.1.1, without CRLF */
#define BOUNCE_WRAP		78	/* §2.1.1's "SHOULD", for folding */
#define BOUNCE_DIAG_MAX		2048	/* diagnostic text kept per rcpt */
#define BOUNCE_HOST_MAX		255	/* a DNS name */
#define BOUNCE_HEADERS_MAX	(64 * 1024)	/* original headers copied */
#define BOUNCE_HEADERS_TEXT	"65536"		/* ... in the text part */
#define BOUNCE_RAND_BYTES	16	/* boundary: 128 random bits */
#define BOUNCE_MSGID_RAND	8	/* Message-ID: 64 random bits */
#define BOUNCE_BOUNDARY_TRIES	8	/* collisions tolerated (never seen) */
#define BOUNCE_BOUNDARY_SIZE	(8 + 2 * BOUNCE_RAND_BYTES + 1)
#define BOUNCE_CHUNK		256	/* sanitizing buffer */
#define BOUNCE_INDENT_TEXT	"    "	/* continuation in the text part */
#define BOUNCE_INDENT_FIELD	" "	/* folding white space, §3.2.2 */
#define BOUNCE_TRUNCATED	"[truncated]"
#define BOUNCE_DEFAULT_HOST	"localhost"
#define BOUNCE_NO_REASON	"no reason given"
#define BOUNCE_EPOCH_DATE	"Thu, 01 Jan 1970 00:00:00 +0000"

_Static_assert(BOUNCE_HEADERS_MAX == 65536, "BOUNCE_HEADERS_TEXT");

/* put_text() flags */
#define PT_GLUE		0x1	/* no space before the first word */
#define PT_NOWRAP	0x2	/* fold only at BOUNCE_LINE_MAX (addresses,
				   names: kept on one line for DSN readers) */
#define PT_MARKCUT	0x4	/* put_capped(): BOUNCE_TRUNCATED if cut */

/* Where the body goes, the column of the line being written, and the
 * first writer error (later writes are skipped once it is set). */
struct out {
	struct queue_writer *w;
	size_t col;
	int err;
};

/* What part 3 will hold: a prefix of the original headers. */
struct orig_hdrs {
	const char *p;
	size_t len;		/* bytes copied (before normalizing) */
	int eightbit;		/* an 8-bit byte in them */
	int cut;		/* longer than BOUNCE_HEADERS_MAX */
};

static void put(struct out *, const char *, size_t);
static void puts_(struct out *, const char *);
static void put_crlf(struct out *);
static void put_delim(struct out *, const char *, const char *);
static void put_clean(struct out *, const char *, size_t);
static void put_text(struct out *, const char *, size_t, const char *,
    unsigned);
static void put_field(struct out *, const char *, const char *, size_t);
static void put_date_field(struct out *, const char *, time_t);
static int is_sep(unsigned char);
static char clean_byte(unsigned char);
static void put_capped(struct out *, const char *, size_t, const char *,
    unsigned);
static int status_ok(const char *);
static int is_smtp_reply(const char *);
static void hdrs_scan(const char *, size_t, struct orig_hdrs *);
static int make_boundary(char *, size_t, const struct orig_hdrs *);
static void put_top(struct out *, enum bounce_kind, const char *,
    const struct queue_info *, const char *, const struct orig_hdrs *,
    time_t);
static void put_human(struct out *, enum bounce_kind, const char *,
    const struct bounce_rcpt *, size_t, const struct orig_hdrs *);
static void put_status(struct out *, enum bounce_kind, const char *,
    const struct queue_info *, const struct bounce_rcpt *, size_t, time_t);
static void put_utf8_addr(struct out *, const char *);
static void put_rcpt_status(struct out *, enum bounce_kind,
    const struct bounce_rcpt *, time_t);
static void put_orig(struct out *, const struct orig_hdrs *);

/* Our own words, in the spirit of Postfix's; lines well under 78.
 * String literals, not arrays: no alignment padding between them. */
#define BOUNCE_TEXT_FAILED \
    "I am sorry, but your message could not be delivered to one\r\n" \
    "or more of its recipients.  The delivery failed for good,\r\n" \
    "and the mail system will not try again.  The reasons are\r\n"
#define BOUNCE_TEXT_DELAYED \
    "THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR\r\n" \
    "MESSAGE.\r\n" \
    "\r\n" \
    "Your message has not yet reached one or more of its\r\n" \
    "recipients.  The mail system keeps trying, and will tell\r\n" \
    "you if it has to give up.  The reasons for the delay are\r\n"
/* Both go on with its first line; a bounce says the rest too. */
#define BOUNCE_TEXT_BOTH \
    "given below; the headers of your message are attached.\r\n"
#define BOUNCE_TEXT_END BOUNCE_TEXT_BOTH \
    "\r\n" \
    "If you need help, forward this report to your postmaster.\r\n" \
    "You may remove your own text from the attached headers.\r\n"

static void
put(struct out *o, const char *p, size_t n)
{
	size_t i;

	if (o->err != 0 || n == 0)
		return;
	if (queue_writer_body(o->w, p, n) == -1) {
		o->err = errno != 0 ? errno : EIO;
		return;
	}
	/* The column after the last LF (memrchr: one import more). */
	for (i = n; i > 0 && p[i - 1] != '\n'; i--)
		;
	o->col = i == 0 ? o->col + n : n - i;
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void
put_crlf(struct out *o)
{
	put(o, "\r\n", 2);
}

/* CRLF "--" boundary, then tail: CRLF, or "--" CRLF for the last. */
static void
put_delim(struct out *o, const char *boundary, const char *tail)
{
	puts_(o, "\r\n--");
	puts_(o, boundary);
	puts_(o, tail);
}

/* CR, LF and TAB separate words; see clean_byte() for the rest. */
static int
is_sep(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The DSN stays 7-bit and free of controls whatever a remote sent. */
static char
clean_byte(unsigned char c)
{
	return (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
}

static void
put_clean(struct out *o, const char *p, size_t n)
{
	char buf[BOUNCE_CHUNK];
	size_t i, k;

	while (n > 0) {
		k = n < sizeof(buf) ? n : sizeof(buf);
		for (i = 0; i < k; i++)
			buf[i] = clean_byte((unsigned char)p[i]);
		put(o, buf, k);
		p += k;
		n -= k;
	}
}

/*
 * Untrusted text, word by word: runs of separators become one space, a
 * word that would pass BOUNCE_WRAP starts a new line with indent (which
 * is never empty, so the new line continues a field or a paragraph), and
 * a word too long for any line is cut at BOUNCE_LINE_MAX.  PT_GLUE: the
 * first word follows the current column directly (after "<", "Name: ").
 */
static void
put_text(struct out *o, const char *s, size_t n, const char *indent,
    unsigned flags)
{
	size_t i = 0, w, room, k, ilen = strlen(indent);
	size_t wrap = (flags & PT_NOWRAP) ? BOUNCE_LINE_MAX : BOUNCE_WRAP;
	int first = 1;

	for (;;) {
		while (i < n && is_sep((unsigned char)s[i]))
			i++;
		if (i == n || o->err != 0)
			break;
		for (w = i; w < n && !is_sep((unsigned char)s[w]); w++)
			;
		w -= i;
		if (!(first && (flags & PT_GLUE))) {
			if (o->col > ilen && o->col + 1 + w > wrap) {
				put_crlf(o);
				puts_(o, indent);
			} else
				put(o, " ", 1);
		}
		first = 0;
		while (w > 0 && o->err == 0) {
			if (o->col >= BOUNCE_LINE_MAX) {
				put_crlf(o);
				puts_(o, indent);
			}
			room = BOUNCE_LINE_MAX - o->col;
			k = w < room ? w : room;
			put_clean(o, s + i, k);
			i += k;
			w -= k;
		}
	}
}

/* "Name: value" with the value treated as untrusted, then CRLF. */
static void
put_field(struct out *o, const char *name, const char *v, size_t n)
{
	puts_(o, name);
	puts_(o, ": ");
	put_text(o, v, n, BOUNCE_INDENT_FIELD, PT_GLUE | PT_NOWRAP);
	put_crlf(o);
}

static void
put_date_field(struct out *o, const char *name, time_t t)
{
	char date[HDR_DATE_MAX];
	int n;

	if ((n = hdr_date(date, sizeof(date), t)) < 0)
		n = snprintf(date, sizeof(date), "%s", BOUNCE_EPOCH_DATE);
	put_field(o, name, date, (size_t)n);
}

/* put_text() of at most max bytes of s; PT_MARKCUT: say when it was
 * longer. */
static void
put_capped(struct out *o, const char *s, size_t max, const char *indent,
    unsigned flags)
{
	size_t n = textfile_strnlen(s, max + 1);

	put_text(o, s, n > max ? max : n, indent, flags);
	if (n > max && (flags & PT_MARKCUT))
		put_text(o, BOUNCE_TRUNCATED, strlen(BOUNCE_TRUNCATED),
		    indent, 0);
}

/* RFC 3463 §2: class "." subject "." detail, 1-3 digits each. */
static int
status_ok(const char *s)
{
	size_t part, digits;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return 0;
	s += 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; s[digits] >= '0' && s[digits] <= '9'; digits++)
			if (digits == 3)
				return 0;
		if (digits == 0)
			return 0;
		s += digits;
		if (part == 0 && *s++ != '.')
			return 0;
	}
	return *s == '\0';
}

/* A remote's reply ("550 5.1.1 ...", "451-...") gets diagnostic type
 * "smtp"; anything else is our own reason (RFC 3464 §2.3.6). */
static int
is_smtp_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	    s[2] >= '0' && s[2] <= '9' &&
	    (s[3] == ' ' || s[3] == '-' || s[3] == '\0');
}

/*
 * What of the original header section is copied: up to its first empty
 * line (in case a caller hands more), at most BOUNCE_HEADERS_MAX bytes
 * and then only whole lines.  A line ends in LF, CR LF or a bare CR.
 */
static void
hdrs_scan(const char *h, size_t n, struct orig_hdrs *oh)
{
	size_t i = 0, line_start = 0, last_end = 0;

	memset(oh, 0, sizeof(*oh));
	oh->p = h;
	if (h == NULL)
		return;
	while (i < n) {
		if (h[i] == '\r' || h[i] == '\n') {
			if (i == line_start)
				break;		/* the empty line */
			if (h[i] == '\r' && i + 1 < n && h[i + 1] == '\n')
				i++;
			i++;
			if (i > BOUNCE_HEADERS_MAX) {
				oh->cut = 1;
				break;
			}
			last_end = line_start = i;
			continue;
		}
		i++;
		if (i > BOUNCE_HEADERS_MAX) {
			oh->cut = 1;
			break;
		}
	}
	if (!oh->cut && i == n && line_start < n)
		last_end = n;		/* last line without an end */
	oh->len = last_end;
	for (i = 0; i < oh->len; i++)
		if ((unsigned char)h[i] >= 0x80)
			oh->eightbit = 1;
}

/*
 * RFC 2046 §5.1.1: the boundary must not occur in any part.  Only part 3
 * can hold foreign lines (put_text() never starts one), and normalizing
 * it only adds line ends and spaces, so searching the raw original is
 * enough.  '=' and '_' keep it clear of anything base64 would produce.
 */
static int
make_boundary(char *b, size_t size, const struct orig_hdrs *oh)
{
	unsigned char rnd[BOUNCE_RAND_BYTES];
	int tries;

	for (tries = 0; tries < BOUNCE_BOUNDARY_TRIES; tries++) {
		randombytes_buf(rnd, sizeof(rnd));
		memcpy(b, "=_ferry_", 8);
		sodium_bin2hex(b + 8, size - 8, rnd, sizeof(rnd));
		if (oh->len == 0 ||
		    memmem(oh->p, oh->len, b, strlen(b)) == NULL)
			return 0;
	}
	errno = EEXIST;
	return -1;
}

int
bounce_compose(struct queue_writer *w, enum bounce_kind kind,
    const char *hostname, const struct queue_info *original,
    const struct bounce_rcpt *rcpt, size_t nrcpt,
    const char *original_headers, size_t headers_len, time_t now)
{
	struct out o = { .w = w };
	struct orig_hdrs oh;
	char boundary[BOUNCE_BOUNDARY_SIZE];

	/* Never bounce a bounce (RFC 5321 §4.5.5), whatever the caller. */
	if (w == NULL || original == NULL || rcpt == NULL || nrcpt == 0 ||
	    original->sender[0] == '\0' || (original->flags & QF_BOUNCE) ||
	    (kind != BOUNCE_FAILED && kind != BOUNCE_DELAYED)) {
		errno = EINVAL;
		return -1;
	}
	if (hostname == NULL || hostname[0] == '\0')
		hostname = BOUNCE_DEFAULT_HOST;
	hdrs_scan(original_headers, headers_len, &oh);
	/* 8-bit header bytes are UTF-8 only under SMTPUTF8 (RFC 6532);
	 * otherwise they are quoted as '?', so the DSN is 7-bit and a
	 * server without 8BITMIME takes it (it was refused 5.6.3 and,
	 * a bounce of a bounce, dropped: the sender never heard). */
	if (!(original->flags & QF_SMTPUTF8))
		oh.eightbit = 0;
	if (make_boundary(boundary, sizeof(boundary), &oh) == -1)
		return -1;

	put_top(&o, kind, hostname, original, boundary, &oh, now);
	puts_(&o, "This is a MIME-encapsulated message.\r\n");
	put_delim(&o, boundary, "\r\n");
	put_human(&o, kind, hostname, rcpt, nrcpt, &oh);
	put_delim(&o, boundary, "\r\n");
	put_status(&o, kind, hostname, original, rcpt, nrcpt, now);
	put_delim(&o, boundary, "\r\n");
	put_orig(&o, &oh);
	put_delim(&o, boundary, "--\r\n");
	if (o.err != 0) {
		errno = o.err;
		return -1;
	}
	return 0;
}

static void
put_top(struct out *o, enum bounce_kind kind, const char *host,
    const struct queue_info *orig, const char *boundary,
    const struct orig_hdrs *oh, time_t now)
{
	unsigned char rnd[BOUNCE_MSGID_RAND];
	char hex[2 * BOUNCE_MSGID_RAND + 1], id[64];
	size_t sn;

	puts_(o, "From: MAILER-DAEMON@");
	put_capped(o, host, BOUNCE_HOST_MAX, BOUNCE_INDENT_FIELD,
	    PT_GLUE | PT_NOWRAP);
	puts_(o, " (Mail Delivery System)\r\nTo: <");
	sn = textfile_strnlen(orig->sender, sizeof(orig->sender));
	put_text(o, orig->sender, sn, BOUNCE_INDENT_FIELD, PT_GLUE | PT_NOWRAP);
	puts_(o, kind == BOUNCE_FAILED ?
	    ">\r\nSubject: Undelivered Mail Returned to Sender\r\n" :
	    ">\r\nSubject: Delayed Mail (still being retried)\r\n");
	put_date_field(o, "Date", now);

	/* Time plus 64 random bits: unique without any state to keep. */
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(id, sizeof(id), "Message-ID: <%" PRIu64 ".%s.bounce@",
	    (uint64_t)now, hex);
	puts_(o, id);
	put_capped(o, host, BOUNCE_HOST_MAX, BOUNCE_INDENT_FIELD,
	    PT_GLUE | PT_NOWRAP);
	/* RFC 3834 §5: Auto-Submitted, so that vacation programs do not
	 * answer us. */
	puts_(o, ">\r\nAuto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"");
	puts_(o, boundary);
	puts_(o, "\"\r\n");
	/* RFC 2045 §6.4: a multipart holding an 8bit part is itself 8bit. */
	if (oh->eightbit)
		puts_(o, "Content-Transfer-Encoding: 8bit\r\n");
	put_crlf(o);
}

static void
put_human(struct out *o, enum bounce_kind kind, const char *host,
    const struct bounce_rcpt *rcpt, size_t nrcpt, const struct orig_hdrs *oh)
{
	size_t i;

	puts_(o, "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host ");
	put_capped(o, host, BOUNCE_HOST_MAX, BOUNCE_INDENT_TEXT,
	    PT_GLUE | PT_NOWRAP);
	puts_(o, ".\r\n\r\n");
	puts_(o, kind == BOUNCE_FAILED ? BOUNCE_TEXT_FAILED :
	    BOUNCE_TEXT_DELAYED);
	put(o, BOUNCE_TEXT_END, kind == BOUNCE_FAILED ?
	    sizeof(BOUNCE_TEXT_END) - 1 : sizeof(BOUNCE_TEXT_BOTH) - 1);
	for (i = 0; i < nrcpt; i++) {
		const struct bounce_rcpt *r = &rcpt[i];
		const char *a = r->address != NULL ? r->address : "unknown";
		const char *d = r->diagnostic != NULL &&
		    r->diagnostic[0] != '\0' ? r->diagnostic : BOUNCE_NO_REASON;

		puts_(o, "\r\n<");
		put_capped(o, a, QUEUE_ADDR_MAX - 1, BOUNCE_INDENT_TEXT,
		    PT_GLUE | PT_NOWRAP);
		puts_(o, ">:");
		put_capped(o, d, BOUNCE_DIAG_MAX, BOUNCE_INDENT_TEXT,
		    PT_MARKCUT);
		put_crlf(o);
	}
	/* Say so rather than cut silently. */
	if (oh->cut)
		puts_(o, "\r\nThe headers of your message were longer than "
		    BOUNCE_HEADERS_TEXT " bytes;\r\n"
		    "only the first whole lines are attached.\r\n");
}

static void
put_status(struct out *o, enum bounce_kind kind, const char *host,
    const struct queue_info *orig, const struct bounce_rcpt *rcpt,
    size_t nrcpt, time_t now)
{
	char v[BOUNCE_HOST_MAX + 8];
	size_t i;
	int n;

	puts_(o, "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n");
	/* RFC 3464 §2.2: the per-message fields. */
	n = snprintf(v, sizeof(v), "dns; %.*s", BOUNCE_HOST_MAX, host);
	put_field(o, "Reporting-MTA", v, (size_t)n);
	put_field(o, "X-Ferry-Queue-ID", orig->id,
	    textfile_strnlen(orig->id, sizeof(orig->id)));
	put_date_field(o, "Arrival-Date", (time_t)orig->arrival);
	for (i = 0; i < nrcpt; i++)
		put_rcpt_status(o, kind, &rcpt[i], now);
}

/*
 * RFC 6533 §3: an address with UTF-8 (SMTPUTF8) is of type utf-8, in a
 * 7-bit message/delivery-status in its xtext form: every character that
 * is not printable ASCII, and '\\', '+' and '=', as \x{HEX} of its code
 * point.  As rfc822 with each 8-bit byte a '?', the DSN named another
 * mailbox.  A byte that is no UTF-8 (never from our SMTP door) is '?'.
 */
static void
put_utf8_addr(struct out *o, const char *a)
{
	char buf[QUEUE_ADDR_MAX * 6];	/* at most "\x{2B}" a byte */
	const unsigned char *p = (const unsigned char *)a;
	size_t len = textfile_strnlen(a, QUEUE_ADDR_MAX - 1), i, j, k, n = 0;
	uint32_t cp;

	puts_(o, "\r\nFinal-Recipient: utf-8;");
	for (i = 0; i < len; i += k) {
		cp = p[i];
		k = cp < 0x80 ? 1 : addr_utf8_len(p + i, len - i);
		if (k == 0) {
			buf[n++] = '?';
			k = 1;
			continue;
		}
		if (k > 1)
			cp &= 0x7fu >> k;
		for (j = 1; j < k; j++)
			cp = cp << 6 | (p[i + j] & 0x3fu);
		if (cp <= ' ' || cp >= 0x7f || cp == '\\' || cp == '+' ||
		    cp == '=')
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
			    "\\x{%" PRIX32 "}", cp);
		else
			buf[n++] = (char)cp;
	}
	put_text(o, buf, n, BOUNCE_INDENT_FIELD, PT_NOWRAP);
}

/* RFC 3464 §2.3: one block per recipient, after an empty line. */
static void
put_rcpt_status(struct out *o, enum bounce_kind kind,
    const struct bounce_rcpt *r, time_t now)
{
	const char *a = r->address != NULL ? r->address : "unknown";
	const char *d = r->diagnostic != NULL && r->diagnostic[0] != '\0' ?
	    r->diagnostic : BOUNCE_NO_REASON;
	const char *st, *said, *mta;
	size_t n, mlen;

	if (msg_has_8bit(a, strlen(a)))
		put_utf8_addr(o, a);
	else {
		puts_(o, "\r\nFinal-Recipient: rfc822;");
		put_capped(o, a, QUEUE_ADDR_MAX - 1, BOUNCE_INDENT_FIELD,
		    PT_NOWRAP);
	}
	put_crlf(o);
	puts_(o, kind == BOUNCE_FAILED ? "Action: failed\r\nStatus: " :
	    "Action: delayed\r\nStatus: ");
	/* A malformed code must not reach a parser of DSNs. */
	st = status_ok(r->status) ? r->status :
	    kind == BOUNCE_FAILED ? "5.0.0" : "4.0.0";
	puts_(o, st);
	put_crlf(o);
	/* RFC 3464 §2.3.5, §2.3.6: "host NAME[ADDR] said: REPLY (in reply
	 * to ...)" names the server, and the code is the bare reply. */
	if ((said = reply_said(d, &n, &mta, &mlen)) != NULL) {
		puts_(o, "Remote-MTA: dns;");
		put_text(o, mta, mlen < BOUNCE_HOST_MAX ? mlen :
		    BOUNCE_HOST_MAX, BOUNCE_INDENT_FIELD, PT_NOWRAP);
		put_crlf(o);
		puts_(o, "Diagnostic-Code: smtp;");
		put_text(o, said, n < BOUNCE_DIAG_MAX ? n : BOUNCE_DIAG_MAX,
		    BOUNCE_INDENT_FIELD, 0);
	} else {
		puts_(o, is_smtp_reply(d) ? "Diagnostic-Code: smtp;" :
		    "Diagnostic-Code: X-Ferry;");
		put_capped(o, d, BOUNCE_DIAG_MAX, BOUNCE_INDENT_FIELD,
		    PT_MARKCUT);
	}
	put_crlf(o);
	put_date_field(o, "Last-Attempt-Date", now);
	/* RFC 3464 §2.3.9: a delay notice says how long trying goes on. */
	if (kind == BOUNCE_DELAYED && r->retry_until > 0)
		put_date_field(o, "Will-Retry-Until", r->retry_until);
}

/*
 * Part 3, RFC 3462 text/rfc822-headers (RFC 6533 message/global-headers
 * when they hold UTF-8 under SMTPUTF8): the original bytes, except that
 * every line ends in CRLF (a bare CR or LF would let a reader see lines
 * we did not count), NUL becomes '?', and a line longer than
 * BOUNCE_LINE_MAX is folded (CRLF SP inserted) so the DSN stays legal.
 */
static void
put_orig(struct out *o, const struct orig_hdrs *oh)
{
	const char *h = oh->p;
	size_t i = 0, start;

	/* RFC 6533 §6.3: UTF-8 headers (RFC 6532) are message/global-headers,
	 * as Postfix labels them; text/rfc822-headers is us-ascii text. */
	puts_(o, "Content-Description: Undelivered Message Headers\r\n"
	    "Content-Type: ");
	puts_(o, oh->eightbit ? "message/global-headers\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n" :
	    "text/rfc822-headers\r\n\r\n");
	while (i < oh->len && o->err == 0) {
		start = i;
		while (i < oh->len && h[i] != '\r' && h[i] != '\n' &&
		    h[i] != '\0' && (oh->eightbit ||
		    (unsigned char)h[i] < 0x80) &&
		    o->col + (i - start) < BOUNCE_LINE_MAX)
			i++;
		put(o, h + start, i - start);
		if (i == oh->len)
			break;
		if (h[i] == '\r' || h[i] == '\n') {
			if (h[i] == '\r' && i + 1 < oh->len && h[i + 1] == '\n')
				i++;
			i++;
			put_crlf(o);
		} else if (o->col >= BOUNCE_LINE_MAX)
			put(o, "\r\n ", 3);	/* full: fold, then go on */
		else {
			put(o, "?", 1);		/* NUL, or 8-bit (above) */
			i++;
		}
	}
	if (o->col != 0)
		put_crlf(o);
}
