/*
 * bounce_test.c - DSNs composed into a real queue writer in a scratch
 * queue, committed, and read back from the file: the MIME structure and
 * the top headers, one delivery-status block per recipient, hostile
 * replies and addresses that try to start a header or a part, long
 * replies folded under 998 octets, the original headers copied (line
 * ends normalized, long lines folded, the 64 KB cap announced), the
 * delay variant, and refusals (a bounce of a bounce, a writer error).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "log.h"
#include "queue.h"
#include "t.h"

#define T_LINE_MAX	998
#define T_MAX_LINES	4096
#define T_NOW		((time_t)1700000000)
#define T_HOST		"relay.example.org"
#define T_SENDER	"alice@example.org"
#define T_BOUNDARY_MAX	128

struct line {
	const char *p;
	size_t n;
};

/* One committed DSN, read back. */
struct dsn {
	char *file;
	size_t flen;
	const char *body;
	size_t blen;
	struct queue_info info;
	struct line line[T_MAX_LINES];
	size_t nline;
	int clean;		/* every line CRLF-terminated and <= 998 */
	char boundary[T_BOUNDARY_MAX];
	size_t part[4];		/* index of each boundary line */
	size_t npart;
	size_t end;		/* index of the closing boundary line */
};

static int rm_one(const char *, const struct stat *, int, struct FTW *);
static char *slurp(const char *, size_t *);
static void orig_init(struct queue_info *);
static int compose(struct dsn *, enum bounce_kind, const struct queue_info *,
    const struct bounce_rcpt *, size_t, const char *, size_t);
static void dsn_free(struct dsn *);
static int split(struct dsn *);
static int line_is(const struct line *, const char *);
static int line_starts(const struct line *, const char *);
static size_t count_in(const struct dsn *, size_t, size_t, const char *,
    int);
static size_t find_in(const struct dsn *, size_t, size_t, const char *);
static size_t count_byte(const struct dsn *, size_t, size_t, char);
static void unfold(const struct dsn *, size_t, size_t, char *, size_t);
static int seven_bit(const char *, size_t);
static int t_structure(void);
static int t_per_rcpt(void);
static int t_hostile(void);
static int t_eightbit_reply(void);
static int t_utf8_rcpt(void);
static int t_long(void);
static int t_orig_headers(void);
static int t_orig_long_line(void);
static int t_orig_cap(void);
static int t_delayed(void);
static int t_far_date(void);
static int t_refuse(void);
static int t_writer_error(void);
static int t_unique(void);

static char tdir[64];
static const char t_headers[] =
    "Received: from x by y; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <abc@example.org>\r\n";

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	if (fstat(fd, &st) == 0 &&
	    (buf = malloc((size_t)st.st_size + 1)) != NULL &&
	    read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	if (buf != NULL) {
		buf[st.st_size] = '\0';
		*len = (size_t)st.st_size;
	}
	return buf;
}

static void
orig_init(struct queue_info *o)
{
	memset(o, 0, sizeof(*o));
	memcpy(o->id, "0123456789ABCDEF01", QUEUE_ID_SIZE);
	snprintf(o->sender, sizeof(o->sender), "%s", T_SENDER);
	o->arrival = (uint64_t)T_NOW - 3600;
}

/* Compose the way the scheduler will: writer, rcpt, compose, finish,
 * commit; then load the file back and split its body into lines. */
static int
compose(struct dsn *d, enum bounce_kind kind, const struct queue_info *o,
    const struct bounce_rcpt *r, size_t n, const char *h, size_t hlen)
{
	struct queue_writer *w;
	char id[QUEUE_ID_SIZE], path[256];
	const char *why;

	memset(d, 0, sizeof(*d));
	w = queue_writer_new(NULL, "", QF_BOUNCE, (uid_t)-1, "");
	if (w == NULL || queue_writer_rcpt(w, T_SENDER) == -1)
		goto fail;
	if (bounce_compose(w, kind, T_HOST, o, r, n, h, hlen, T_NOW) == -1 ||
	    queue_writer_finish(w) == -1)
		goto fail;
	memcpy(id, queue_writer_id(w), sizeof(id));
	if (queue_commit_now(w) == -1)
		return -1;
	if (queue_load(0, id, &d->info, &why) == -1) {
		fprintf(stderr, "  queue_load: %s\n", why);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", tdir, id);
	if ((d->file = slurp(path, &d->flen)) == NULL ||
	    d->info.body_off + d->info.size > d->flen)
		return -1;
	d->body = d->file + d->info.body_off;
	d->blen = (size_t)d->info.size;
	return split(d);
fail:
	queue_writer_abort(w);
	return -1;
}

static void
dsn_free(struct dsn *d)
{
	free(d->file);
	queue_info_free(&d->info);
}

/* Lines by CRLF; a bare CR or LF, a line over 998, or a last line
 * without CRLF clears d->clean.  Then the boundary and its lines. */
static int
split(struct dsn *d)
{
	const char *p = d->body, *end = d->body + d->blen, *b, *q;
	size_t i, blen;

	d->clean = 1;
	while (p < end) {
		if (d->nline == T_MAX_LINES)
			return -1;
		for (q = p; q < end && *q != '\r' && *q != '\n'; q++)
			;
		d->line[d->nline].p = p;
		d->line[d->nline].n = (size_t)(q - p);
		d->nline++;
		if ((size_t)(q - p) > T_LINE_MAX)
			d->clean = 0;
		if (q + 1 < end && q[0] == '\r' && q[1] == '\n')
			p = q + 2;
		else {
			d->clean = 0;
			p = q + 1;
		}
	}
	b = strstr(d->body, "boundary=\"");
	if (b == NULL)
		return -1;
	b += strlen("boundary=\"");
	blen = strcspn(b, "\"");
	if (blen == 0 || blen + 3 >= sizeof(d->boundary))
		return -1;
	memcpy(d->boundary, "--", 2);
	memcpy(d->boundary + 2, b, blen);
	d->boundary[blen + 2] = '\0';
	d->end = (size_t)-1;
	for (i = 0; i < d->nline; i++) {
		if (line_is(&d->line[i], d->boundary)) {
			if (d->npart == 4)
				return -1;
			d->part[d->npart++] = i;
		} else if (d->line[i].n == blen + 4 &&
		    line_starts(&d->line[i], d->boundary) &&
		    memcmp(d->line[i].p + blen + 2, "--", 2) == 0)
			d->end = i;
	}
	return 0;
}

static int
line_is(const struct line *l, const char *s)
{
	return l->n == strlen(s) && memcmp(l->p, s, l->n) == 0;
}

static int
line_starts(const struct line *l, const char *s)
{
	return l->n >= strlen(s) && memcmp(l->p, s, strlen(s)) == 0;
}

/* Lines [from, to) equal to (exact) or starting with s. */
static size_t
count_in(const struct dsn *d, size_t from, size_t to, const char *s,
    int exact)
{
	size_t i, n = 0;

	for (i = from; i < to && i < d->nline; i++)
		if (exact ? line_is(&d->line[i], s) :
		    line_starts(&d->line[i], s))
			n++;
	return n;
}

/* Index of the first line in [from, to) starting with s, or to. */
static size_t
find_in(const struct dsn *d, size_t from, size_t to, const char *s)
{
	size_t i;

	for (i = from; i < to && i < d->nline; i++)
		if (line_starts(&d->line[i], s))
			return i;
	return to;
}

static size_t
count_byte(const struct dsn *d, size_t from, size_t to, char c)
{
	size_t i, j, n = 0;

	for (i = from; i < to && i < d->nline; i++)
		for (j = 0; j < d->line[i].n; j++)
			n += d->line[i].p[j] == c;
	return n;
}

/* Lines [from, to) as one string, each line's leading blanks and its
 * end made one space, empty lines left out: text as a reader sees it,
 * whatever the folding. */
static void
unfold(const struct dsn *d, size_t from, size_t to, char *buf, size_t size)
{
	size_t i, k, n = 0;

	for (i = from; i < to && n + 1 < size; i++) {
		for (k = 0; k < d->line[i].n && d->line[i].p[k] == ' '; k++)
			;
		if (k == d->line[i].n)
			continue;
		if (n > 0)
			buf[n++] = ' ';
		for (; k < d->line[i].n && n + 1 < size; k++)
			buf[n++] = d->line[i].p[k];
	}
	buf[n] = '\0';
}

static int
seven_bit(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80 || p[i] == '\0')
			return 0;
	return 1;
}

/* The envelope, the top headers and the three parts in order. */
static int
t_structure(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1",
		    "550 5.1.1 <bob@example.net>: no such user", 0 },
		{ "carol@example.net", "5.7.1", "554 5.7.1 rejected", 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t hdr_end, i;

	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 2, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.info.sender[0] == '\0');
	CHECK(d.info.nrcpt == 1);
	CHECK_STR(d.info.rcpt[0].address, T_SENDER);
	CHECK(d.info.flags & QF_BOUNCE);
	CHECK(d.clean);
	CHECK(seven_bit(d.body, d.blen));

	for (hdr_end = 0; hdr_end < d.nline && d.line[hdr_end].n > 0;
	    hdr_end++)
		;
	CHECK(hdr_end < d.nline);
	CHECK(count_in(&d, 0, hdr_end, "From: MAILER-DAEMON@" T_HOST
	    " (Mail Delivery System)", 1) == 1);
	CHECK(count_in(&d, 0, hdr_end, "To: <" T_SENDER ">", 1) == 1);
	CHECK(count_in(&d, 0, hdr_end,
	    "Subject: Undelivered Mail Returned to Sender", 1) == 1);
	CHECK(count_in(&d, 0, hdr_end, "Date: Tue, 14 Nov 2023 ", 0) +
	    count_in(&d, 0, hdr_end, "Date: Wed, 15 Nov 2023 ", 0) == 1);
	i = find_in(&d, 0, hdr_end, "Message-ID: <");
	CHECK(i < hdr_end);
	CHECK(d.line[i].n > 40 && memcmp(d.line[i].p + d.line[i].n -
	    strlen(".bounce@" T_HOST ">"), ".bounce@" T_HOST ">",
	    strlen(".bounce@" T_HOST ">")) == 0);
	CHECK(count_in(&d, 0, hdr_end, "Auto-Submitted: auto-replied", 1) ==
	    1);
	CHECK(count_in(&d, 0, hdr_end, "MIME-Version: 1.0", 1) == 1);
	CHECK(count_in(&d, 0, hdr_end, "Content-Type: multipart/report; "
	    "report-type=delivery-status;", 0) == 1);
	CHECK(count_in(&d, 0, hdr_end, "Content-Transfer-Encoding:", 0) == 0);

	/* Three delimiters, then the close delimiter as the last line. */
	CHECK(d.npart == 3);
	CHECK(d.end == d.nline - 1);
	CHECK(d.part[0] > hdr_end && d.part[2] < d.end);
	CHECK(count_in(&d, 0, d.nline, "--", 0) == 4);
	CHECK(find_in(&d, d.part[0], d.part[1],
	    "Content-Type: text/plain; charset=us-ascii") < d.part[1]);
	CHECK(find_in(&d, d.part[1], d.part[2],
	    "Content-Type: message/delivery-status") == d.part[1] + 2);
	CHECK(find_in(&d, d.part[2], d.end,
	    "Content-Type: text/rfc822-headers") == d.part[2] + 2);
	CHECK(find_in(&d, d.part[0], d.part[1],
	    "This is the mail system at host " T_HOST ".") < d.part[1]);
	/* Part 3 is the original headers, byte for byte. */
	CHECK(d.part[2] + 4 < d.end);
	CHECK(d.line[d.part[2] + 3].n == 0);
	CHECK(memcmp(d.line[d.part[2] + 4].p, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.line[d.end - 1].n == 0);
	dsn_free(&d);
	return 0;
}

/*
 * One block per recipient with its own Status, smtp vs X-Ferry
 * diagnostic types, and Remote-MTA with the bare reply for a refusal as
 * deliver.c words it (REPLY_SAID), whose whole text the human part
 * shows; a bare reply (an older state file's) names no server.
 */
static int
t_per_rcpt(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "host mx1.example.net[192.0.2.1] "
		    "said: 550 5.1.1 no such user (in reply to RCPT TO "
		    "command)", 0 },
		{ "carol@example.com", "5.4.4",
		    "Host or domain name not found", 0 },
		{ "dave@example.net", "5.2.2", "host mx1.example.net[192.0.2.1] "
		    "said: 552-5.2.2 mailbox full\r\n552 5.2.2 try later (in "
		    "reply to end of DATA command)", 0 },
		{ "erin@example.net", "5.1.1", "550 5.1.1 no such user", 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t p1, p2, i;
	char text[1024];

	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 4, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean && d.npart == 3);
	p1 = d.part[1];
	p2 = d.part[2];
	CHECK(count_in(&d, p1, p2, "Reporting-MTA: dns; " T_HOST, 1) == 1);
	CHECK(count_in(&d, p1, p2, "X-Ferry-Queue-ID: 0123456789ABCDEF01",
	    1) == 1);
	CHECK(count_in(&d, p1, p2, "Arrival-Date: ", 0) == 1);
	CHECK(count_in(&d, p1, p2, "Final-Recipient: ", 0) == 4);
	CHECK(count_in(&d, p1, p2, "Action: failed", 1) == 4);
	CHECK(count_in(&d, p1, p2, "Last-Attempt-Date: ", 0) == 4);
	i = find_in(&d, p1, p2, "Final-Recipient: rfc822; bob@example.net");
	CHECK(i < p2 && d.line[i - 1].n == 0);
	CHECK(line_is(&d.line[i + 1], "Action: failed"));
	CHECK(line_is(&d.line[i + 2], "Status: 5.1.1"));
	CHECK(line_is(&d.line[i + 3], "Remote-MTA: dns; mx1.example.net"));
	CHECK(line_is(&d.line[i + 4], "Diagnostic-Code: smtp; 550 5.1.1 "
	    "no such user"));
	i = find_in(&d, p1, p2, "Final-Recipient: rfc822; carol@example.com");
	CHECK(i < p2 && d.line[i - 1].n == 0);
	CHECK(line_is(&d.line[i + 2], "Status: 5.4.4"));
	CHECK(line_is(&d.line[i + 3],
	    "Diagnostic-Code: X-Ferry; Host or domain name not found"));
	i = find_in(&d, p1, p2, "Final-Recipient: rfc822; dave@example.net");
	CHECK(i < p2 && d.line[i - 1].n == 0);
	CHECK(line_is(&d.line[i + 2], "Status: 5.2.2"));
	/* A multi-line reply is one logical field. */
	CHECK(line_is(&d.line[i + 3], "Remote-MTA: dns; mx1.example.net"));
	CHECK(line_is(&d.line[i + 4], "Diagnostic-Code: smtp; 552-5.2.2 "
	    "mailbox full 552 5.2.2 try later"));
	i = find_in(&d, p1, p2, "Final-Recipient: rfc822; erin@example.net");
	CHECK(i < p2 && line_is(&d.line[i + 2], "Status: 5.1.1"));
	CHECK(line_is(&d.line[i + 3], "Diagnostic-Code: smtp; 550 5.1.1 "
	    "no such user"));
	CHECK(count_in(&d, p1, p2, "Remote-MTA: ", 0) == 2);

	/* The human part names each recipient and gives the reason as
	 * the log does, Postfix's words whole. */
	unfold(&d, d.part[0], p1, text, sizeof(text));
	CHECK(strstr(text, "<bob@example.net>: host mx1.example.net"
	    "[192.0.2.1] said: 550 5.1.1 no such user (in reply to RCPT TO "
	    "command) <carol@example.com>: Host or domain name not found "
	    "<dave@example.net>: host mx1.example.net[192.0.2.1] said: "
	    "552-5.2.2 mailbox full 552 5.2.2 try later (in reply to end of "
	    "DATA command) <erin@example.net>: 550 5.1.1 no such user") !=
	    NULL);
	CHECK(count_in(&d, d.part[0], p1, "<bob@example.net>: host "
	    "mx1.example.net[192.0.2.1] said: 550", 0) == 1);
	dsn_free(&d);
	return 0;
}

/* CR LF in a reply, an address, a remote name or a status cannot start
 * a header or a part. */
static int
t_hostile(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net\r\nBcc: victim@example.com",
		    "5.1.1\r\nBcc: z",
		    "host mx.example.net\r\nX-Evil: 1[192.0.2.1] said: "
		    "550 no\r\n--=_ferry_0000\r\n\r\nBcc: x@evil\r\n"
		    "Content-Type: text/html\r\n\r\n--\r\n.\r\n (in reply "
		    "to RCPT TO command)", 0 },
		{ "carol@example.net", "5.1.1",
		    "\r\n--=_ferry_\r\nFinal-Recipient: rfc822; forged@evil", 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t i;

	orig_init(&o);
	snprintf(o.sender, sizeof(o.sender), "%s",
	    T_SENDER "\r\nBcc: victim@example.com");
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 2, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean);
	CHECK(seven_bit(d.body, d.blen));
	CHECK(d.npart == 3 && d.end == d.nline - 1);
	/* Only the four boundary lines start with "--". */
	CHECK(count_in(&d, 0, d.nline, "--", 0) == 4);
	CHECK(count_in(&d, 0, d.nline, "Bcc", 0) == 0);
	CHECK(count_in(&d, 0, d.nline, "X-Evil", 0) == 0);
	CHECK(count_in(&d, d.part[1], d.part[2], "Remote-MTA: dns; "
	    "mx.example.net X-Evil: 1", 1) == 1);
	CHECK(count_in(&d, 0, d.nline, "Content-Type: text/html", 0) == 0);
	CHECK(count_in(&d, 0, d.nline, ".", 1) == 0);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: ", 0) == 2);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: rfc822; "
	    "forged", 0) == 0);
	/* The broken status is replaced; the texts survive on one field. */
	CHECK(count_in(&d, d.part[1], d.part[2], "Status: 5.0.0", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Status: 5.1.1", 1) == 1);
	CHECK(count_in(&d, 0, d.nline, "To: <" T_SENDER " Bcc: "
	    "victim@example.com>", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: rfc822; "
	    "bob@example.net Bcc: victim@example.com", 1) == 1);
	/* Every non-boundary line in parts 1 and 2 starts with a letter,
	 * "<", a space (continuation) or is empty. */
	for (i = d.part[0] + 1; i < d.part[2]; i++) {
		if (i == d.part[1] || d.line[i].n == 0)
			continue;
		CHECK(d.line[i].p[0] == ' ' || d.line[i].p[0] == '<' ||
		    (d.line[i].p[0] >= 'A' && d.line[i].p[0] <= 'Z') ||
		    (d.line[i].p[0] >= 'a' && d.line[i].p[0] <= 'z'));
	}
	dsn_free(&d);
	return 0;
}

/* 8-bit and control bytes in a reply become '?': the DSN stays 7-bit. */
static int
t_eightbit_reply(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1",
		    "550 caf\xc3\xa9 \x01\x7f\x1b[31m", 0 },
	};
	struct queue_info o;
	struct dsn d;

	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean);
	CHECK(seven_bit(d.body, d.blen));
	CHECK(count_in(&d, d.part[1], d.part[2],
	    "Diagnostic-Code: smtp; 550 caf?? ???[31m", 1) == 1);
	dsn_free(&d);
	return 0;
}

/* RFC 6533: a UTF-8 recipient is named as type utf-8 in 7-bit xtext
 * form (it was rfc822 with each 8-bit byte a '?', another mailbox); an
 * ASCII one stays rfc822, '+' and all. */
static int
t_utf8_rcpt(void)
{
	struct bounce_rcpt r[] = {
		{ "j\xc3\xbcrgen+x=y\\z@b\xc3\xbc.example", "5.1.1",
		    "550 5.1.1 no", 0 },
		{ "\xf0\x9f\x98\x80\xe2\x82\xac@x.example", "5.1.1",
		    "550 5.1.1 no", 0 },
		{ "a\xff" "b\xc3@x.example", "5.1.1", "550 5.1.1 no", 0 },
		{ "bob+tag@example.net", "5.1.1", "550 5.1.1 no", 0 },
	};
	struct queue_info o;
	struct dsn d;

	orig_init(&o);
	o.flags |= QF_SMTPUTF8;
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 4, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(seven_bit(d.body, d.blen));
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: utf-8; "
	    "j\\x{FC}rgen\\x{2B}x\\x{3D}y\\x{5C}z@b\\x{FC}.example", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: utf-8; "
	    "\\x{1F600}\\x{20AC}@x.example", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: utf-8; "
	    "a?b?@x.example", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Final-Recipient: rfc822; "
	    "bob+tag@example.net", 1) == 1);
	dsn_free(&d);
	return 0;
}

/* A reply with a 1500-octet word and many short ones: folded lines of at
 * most 998, nothing of the first 2048 octets lost, the cut announced;
 * a 511-octet address stays on its line. */
static int
t_long(void)
{
	static char diag[6000], addr[QUEUE_ADDR_MAX];
	struct bounce_rcpt r[] = {
		{ addr, "5.1.1", diag, 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t n = 0, i, fin;

	n += (size_t)snprintf(diag, sizeof(diag), "550 ");
	memset(diag + n, 'z', 1500);
	n += 1500;
	for (i = 0; i < 100; i++)
		n += (size_t)snprintf(diag + n, sizeof(diag) - n, " word");
	diag[n++] = ' ';
	memset(diag + n, 'x', 3000);
	n += 3000;
	diag[n] = '\0';
	memset(addr, 'b', sizeof(addr) - 1);
	memcpy(addr + sizeof(addr) - 1 - 12, "@example.net", 12);
	addr[sizeof(addr) - 1] = '\0';

	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean);
	CHECK(d.npart == 3);
	/* All 1500 z's are there, in each of parts 1 and 2. */
	CHECK(count_byte(&d, d.part[0], d.part[1], 'z') == 1500);
	CHECK(count_byte(&d, d.part[1], d.part[2], 'z') == 1500);
	CHECK(count_in(&d, d.part[1], d.part[2], " word", 0) >= 2);
	CHECK(count_in(&d, d.part[0], d.part[1], "    word", 0) >= 2);
	for (i = d.part[1]; i < d.part[2]; i++)
		if (d.line[i].n >= 11 && memcmp(d.line[i].p + d.line[i].n - 11,
		    "[truncated]", 11) == 0)
			break;
	CHECK(i < d.part[2]);
	fin = find_in(&d, d.part[1], d.part[2], "Final-Recipient: rfc822; ");
	CHECK(fin < d.part[2]);
	CHECK(d.line[fin].n == strlen("Final-Recipient: rfc822; ") +
	    strlen(addr));
	CHECK(d.line[fin + 1].n > 0 && d.line[fin + 1].p[0] == 'A');
	dsn_free(&d);
	return 0;
}

/* Bare LF and bare CR become CRLF, NUL becomes '?', 8-bit bytes stay
 * (and are declared), nothing after the first empty line is copied. */
static int
t_orig_headers(void)
{
	static const char h[] = "Subject: hi\nX-A: 1\rX-B: 2\r\n"
	    "X-C: caf\xc3\xa9\r\nX-D: \0z\r\n\r\nbody line\r\n";
	static const char want[] = "Subject: hi\r\nX-A: 1\r\nX-B: 2\r\n"
	    "X-C: caf\xc3\xa9\r\nX-D: ?z\r\n\r\n--";
	static const char want7[] = "Subject: hi\r\nX-A: 1\r\nX-B: 2\r\n"
	    "X-C: caf??\r\nX-D: ?z\r\n\r\n--";
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_info o;
	struct dsn d;

	/* Not SMTPUTF8: 8-bit header bytes are no UTF-8 (RFC 6532), and
	 * quoted as '?' the DSN is 7-bit, for a server without 8BITMIME. */
	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, h, sizeof(h) - 1) == 0);
	CHECK(d.clean && d.npart == 3);
	CHECK(memcmp(d.line[d.part[2] + 4].p, want7, sizeof(want7) - 1) == 0);
	CHECK(count_in(&d, 0, d.end, "Content-Transfer-Encoding: 8bit",
	    1) == 0);
	CHECK(line_is(&d.line[d.part[2] + 2],
	    "Content-Type: text/rfc822-headers"));
	dsn_free(&d);

	/* UTF-8 headers are RFC 6533's message/global-headers (Postfix's
	 * label too): text/rfc822-headers, us-ascii text, showed them as
	 * mojibake. */
	o.flags |= QF_SMTPUTF8;
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, h, sizeof(h) - 1) == 0);
	CHECK(d.clean);
	CHECK(d.npart == 3);
	CHECK(line_is(&d.line[d.part[2] + 2],
	    "Content-Type: message/global-headers"));
	CHECK(line_is(&d.line[d.part[2] + 3],
	    "Content-Transfer-Encoding: 8bit"));
	CHECK(memcmp(d.line[d.part[2] + 5].p, want, sizeof(want) - 1) == 0);
	CHECK(count_in(&d, 0, d.nline, "body line", 0) == 0);
	CHECK(count_in(&d, d.part[2], d.end,
	    "Content-Transfer-Encoding: 8bit", 1) == 1);
	CHECK(count_in(&d, 0, d.part[0], "Content-Transfer-Encoding: 8bit",
	    1) == 1);
	dsn_free(&d);

	/* Without an end on the last line, the DSN still ends it. */
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, "Subject: x", 10) == 0);
	CHECK(d.clean);
	CHECK(line_is(&d.line[d.part[2] + 4], "Subject: x"));
	CHECK(d.line[d.part[2] + 5].n == 0 && d.part[2] + 6 == d.end);
	dsn_free(&d);

	/* No headers at all: an empty part 3, still well formed. */
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, NULL, 0) == 0);
	CHECK(d.clean && d.npart == 3 && d.end == d.nline - 1);
	dsn_free(&d);
	return 0;
}

/* A 2500-octet header line is folded: lines <= 998, continuation lines
 * start with a space, no octet lost. */
static int
t_orig_long_line(void)
{
	static char h[3000];
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t n;

	n = (size_t)snprintf(h, sizeof(h), "X-Long: ");
	memset(h + n, 'q', 2500);
	n += 2500;
	memcpy(h + n, "\r\nSubject: s\r\n", 14);
	n += 14;
	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, h, n) == 0);
	CHECK(d.clean);
	CHECK(count_byte(&d, d.part[2], d.end, 'q') == 2500);
	CHECK(line_starts(&d.line[d.part[2] + 4], "X-Long: qqq"));
	CHECK(d.line[d.part[2] + 4].n == T_LINE_MAX);
	CHECK(d.line[d.part[2] + 5].n == T_LINE_MAX);
	CHECK(d.line[d.part[2] + 5].p[0] == ' ');
	CHECK(d.line[d.part[2] + 6].p[0] == ' ');
	CHECK(line_is(&d.line[d.part[2] + 7], "Subject: s"));
	dsn_free(&d);
	return 0;
}

/* Over 64 KB of headers: whole lines up to the cap, and part 1 says so. */
static int
t_orig_cap(void)
{
	static char h[80 * 1024];
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_info o;
	struct dsn d;
	size_t n = 0, copied = 0, i;

	while (n + 100 <= sizeof(h)) {
		memcpy(h + n, "X-Filler: ", 10);
		memset(h + n + 10, 'f', 88);
		memcpy(h + n + 98, "\r\n", 2);
		n += 100;
	}
	orig_init(&o);
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, h, n) == 0);
	CHECK(d.clean);
	CHECK(d.nline < T_MAX_LINES);
	for (i = d.part[2] + 4; i < d.end - 1; i++) {
		CHECK(d.line[i].n == 98);
		copied += 100;
	}
	CHECK(copied == 64 * 1024 / 100 * 100);
	CHECK(find_in(&d, d.part[0], d.part[1],
	    "The headers of your message were longer than 65536") < d.part[1]);
	dsn_free(&d);

	/* Under the cap: no such note. */
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 1, h, 1000) == 0);
	CHECK(find_in(&d, d.part[0], d.part[1], "The headers of your") ==
	    d.part[1]);
	dsn_free(&d);
	return 0;
}

static int
t_delayed(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "4.4.1",
		    "connect to mx.example.net: Connection timed out", 0 },
		{ "carol@example.net", "bogus", "451 4.3.0 later", 0 },
	};
	struct queue_info o;
	struct dsn d;

	orig_init(&o);
	CHECK(compose(&d, BOUNCE_DELAYED, &o, r, 2, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean && d.npart == 3);
	CHECK(count_in(&d, 0, d.part[0],
	    "Subject: Delayed Mail (still being retried)", 1) == 1);
	CHECK(count_in(&d, 0, d.nline, "Subject: Undelivered", 0) == 0);
	CHECK(count_in(&d, d.part[1], d.part[2], "Action: delayed", 1) == 2);
	CHECK(count_in(&d, d.part[1], d.part[2], "Action: failed", 1) == 0);
	CHECK(count_in(&d, d.part[1], d.part[2], "Status: 4.4.1", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Status: 4.0.0", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Diagnostic-Code: X-Ferry; "
	    "connect to", 0) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Diagnostic-Code: smtp; "
	    "451 4.3.0 later", 1) == 1);
	CHECK(find_in(&d, d.part[0], d.part[1], "THIS IS A WARNING ONLY") <
	    d.part[1]);
	/* Will-Retry-Until only where the caller knows it. */
	CHECK(count_in(&d, d.part[1], d.part[2], "Will-Retry-Until: ", 0) ==
	    0);
	dsn_free(&d);
	r[0].retry_until = 1700000000;
	CHECK(compose(&d, BOUNCE_DELAYED, &o, r, 2, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(d.clean);
	CHECK(count_in(&d, d.part[1], d.part[2], "Will-Retry-Until: ", 0) ==
	    1);
	/* In bob's block, after his Last-Attempt-Date, before carol's. */
	CHECK(find_in(&d, d.part[1], d.part[2], "Will-Retry-Until: ") >
	    find_in(&d, d.part[1], d.part[2], "Last-Attempt-Date: "));
	CHECK(find_in(&d, d.part[1], d.part[2], "Will-Retry-Until: ") <
	    find_in(&d, d.part[1], d.part[2], "Final-Recipient: rfc822;carol"));
	dsn_free(&d);
	/* A failure notice never promises more tries. */
	CHECK(compose(&d, BOUNCE_FAILED, &o, r, 2, t_headers,
	    sizeof(t_headers) - 1) == 0);
	CHECK(count_in(&d, 0, d.nline, "Will-Retry-Until", 0) == 0);
	dsn_free(&d);
	return 0;
}

/* A time past what localtime_r() can turn into a date (a queue file's
 * T line is any 64-bit number) is dated 1970, not from whatever the
 * stack held: valgrind saw strftime() read an unset struct tm. */
static int
t_far_date(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "4.4.1", "451 4.4.1 later", 0 },
	};
	struct queue_info o;
	struct dsn d;

	/* A 32-bit time_t is always a date (1901-2038). */
	if (sizeof(time_t) < sizeof(int64_t))
		return 0;
	r[0].retry_until = (time_t)INT64_MAX;
	orig_init(&o);
	o.arrival = INT64_MAX;
	CHECK(compose(&d, BOUNCE_DELAYED, &o, r, 1, NULL, 0) == 0);
	CHECK(d.clean && d.npart == 3);
	CHECK(count_in(&d, d.part[1], d.part[2], "Arrival-Date: "
	    "Thu, 01 Jan 1970 00:00:00 +0000", 1) == 1);
	CHECK(count_in(&d, d.part[1], d.part[2], "Will-Retry-Until: "
	    "Thu, 01 Jan 1970 00:00:00 +0000", 1) == 1);
	dsn_free(&d);
	return 0;
}

/* Never bounce a bounce; no recipients is a caller's bug. */
static int
t_refuse(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_writer *w;
	struct queue_info o;

	orig_init(&o);
	w = queue_writer_new(NULL, "", QF_BOUNCE, (uid_t)-1, "");
	CHECK(w != NULL);
	CHECK(queue_writer_rcpt(w, T_SENDER) == 0);
	o.sender[0] = '\0';
	errno = 0;
	CHECK(bounce_compose(w, BOUNCE_FAILED, T_HOST, &o, r, 1, NULL, 0,
	    T_NOW) == -1 && errno == EINVAL);
	orig_init(&o);
	o.flags = QF_BOUNCE;
	errno = 0;
	CHECK(bounce_compose(w, BOUNCE_FAILED, T_HOST, &o, r, 1, NULL, 0,
	    T_NOW) == -1 && errno == EINVAL);
	orig_init(&o);
	errno = 0;
	CHECK(bounce_compose(w, BOUNCE_FAILED, T_HOST, &o, r, 0, NULL, 0,
	    T_NOW) == -1 && errno == EINVAL);
	/* Nothing was written: the body is still empty. */
	CHECK(queue_writer_size(w) == 0);
	CHECK(bounce_compose(w, BOUNCE_FAILED, T_HOST, &o, r, 1, NULL, 0,
	    T_NOW) == 0);
	CHECK(queue_writer_size(w) > 0);
	queue_writer_abort(w);
	return 0;
}

/* A writer that refuses the body (no recipient yet) makes compose fail. */
static int
t_writer_error(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_writer *w;
	struct queue_info o;

	orig_init(&o);
	w = queue_writer_new(NULL, "", QF_BOUNCE, (uid_t)-1, "");
	CHECK(w != NULL);
	errno = 0;
	CHECK(bounce_compose(w, BOUNCE_FAILED, T_HOST, &o, r, 1, t_headers,
	    sizeof(t_headers) - 1, T_NOW) == -1);
	CHECK(errno == EINVAL);
	queue_writer_abort(w);
	return 0;
}

/* Fresh boundary and Message-ID each time. */
static int
t_unique(void)
{
	struct bounce_rcpt r[] = {
		{ "bob@example.net", "5.1.1", "550 no", 0 },
	};
	struct queue_info o;
	struct dsn a, b;
	size_t ia, ib;

	orig_init(&o);
	CHECK(compose(&a, BOUNCE_FAILED, &o, r, 1, NULL, 0) == 0);
	CHECK(compose(&b, BOUNCE_FAILED, &o, r, 1, NULL, 0) == 0);
	CHECK(strcmp(a.boundary, b.boundary) != 0);
	CHECK(strlen(a.boundary) > 20);
	ia = find_in(&a, 0, a.part[0], "Message-ID: ");
	ib = find_in(&b, 0, b.part[0], "Message-ID: ");
	CHECK(ia < a.part[0] && ib < b.part[0]);
	CHECK(!(a.line[ia].n == b.line[ib].n &&
	    memcmp(a.line[ia].p, b.line[ib].p, a.line[ia].n) == 0));
	dsn_free(&a);
	dsn_free(&b);
	return 0;
}

static const struct t_case cases[] = {
	{ "envelope, top headers, three parts", t_structure },
	{ "one status block per recipient", t_per_rcpt },
	{ "hostile CR LF cannot inject a header or a part", t_hostile },
	{ "8-bit and control bytes in a reply", t_eightbit_reply },
	{ "a UTF-8 recipient as RFC 6533 utf-8, 7-bit", t_utf8_rcpt },
	{ "long reply folded, cut announced", t_long },
	{ "original headers normalized", t_orig_headers },
	{ "long original header line folded", t_orig_long_line },
	{ "original headers capped at 64 KB", t_orig_cap },
	{ "delay warning", t_delayed },
	{ "dates past the calendar", t_far_date },
	{ "no bounce of a bounce", t_refuse },
	{ "writer error", t_writer_error },
	{ "fresh boundary and Message-ID", t_unique },
};

int
main(void)
{
	int rc;

	log_open(1);
	snprintf(tdir, sizeof(tdir), "/tmp/bounce_test.XXXXXX");
	if (mkdtemp(tdir) == NULL || queue_open(tdir) == -1 ||
	    queue_sweep() == -1) {
		perror(tdir);
		return 1;
	}
	rc = t_run("bounce", cases, sizeof(cases) / sizeof(cases[0]));
	(void)nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
