/*
 * fuzz_bounce.c - bounce_compose() with arbitrary senders, addresses,
 * status codes, remote names, diagnostics and original headers, written
 * into a real queue writer (a scratch queue made once).  The finished
 * tmp file must parse with queue_parse(), and its body must keep the
 * DSN's promises: CRLF-only lines of at most 998 octets, top headers
 * that are ours alone, exactly three parts under a boundary that occurs
 * nowhere else, one status block per recipient, and 7-bit outside the
 * copied headers.  A violation aborts so libFuzzer reports it.
 *
 * Input: byte 0 picks the kind (bit 0) and 1-3 recipients (bits 1-2);
 * then NUL-separated fields: sender, and per recipient address, status,
 * remote MTA, diagnostic (with a remote MTA: the reply in a refusal as
 * deliver.c words it, REPLY_SAID, which bounce.c takes apart); whatever
 * is left is the original header section (NULs included).
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce.h"
#include "queue.h"
#include "reply.h"

#define FUZZ_RCPT_MAX	3
#define FUZZ_FIELD_MAX	4096	/* each text field, with NUL */
#define FUZZ_FILE_MAX	(1024 * 1024)
#define FUZZ_LINE_MAX	998
#define FUZZ_NOW	((time_t)1700000000)
#define FUZZ_NTOP	10	/* header lines of ours, see check_body() */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int rm_one(const char *, const struct stat *, int, struct FTW *);
static void cleanup(void);
static int queue_ready(void);
static size_t field(const uint8_t *, size_t, size_t *, char *, size_t);
static char *read_tmp(const char *, size_t *);
static int starts(const char *, size_t, const char *);
static void check_body(const char *, size_t, size_t);

static char qdir[64];
static char fields[1 + 4 * FUZZ_RCPT_MAX][FUZZ_FIELD_MAX];
static char said[FUZZ_RCPT_MAX][2 * FUZZ_FIELD_MAX + 64];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void
cleanup(void)
{
	(void)nftw(qdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int
queue_ready(void)
{
	static int state;	/* 0 not yet, 1 ready, -1 failed */

	if (state == 0) {
		snprintf(qdir, sizeof(qdir), "/tmp/fuzz_bounce.XXXXXX");
		state = mkdtemp(qdir) != NULL && queue_open(qdir) == 0 &&
		    queue_sweep() == 0 ? 1 : -1;
		if (state == 1)
			atexit(cleanup);
	}
	return state == 1;
}

/* The next NUL-terminated field from data at *off, copied and cut to
 * size - 1; returns its length. */
static size_t
field(const uint8_t *data, size_t size, size_t *off, char *out, size_t max)
{
	size_t start = *off, n;
	const uint8_t *nul;

	nul = start < size ? memchr(data + start, '\0', size - start) : NULL;
	n = nul != NULL ? (size_t)(nul - (data + start)) : size - start;
	*off = start + n + (nul != NULL);
	if (n > max - 1)
		n = max - 1;
	if (n > 0)
		memcpy(out, data + start, n);
	out[n] = '\0';
	return n;
}

static char *
read_tmp(const char *id, size_t *len)
{
	char path[256], *buf;
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "%s/tmp/%s", queue_dir(), id);
	if ((fd = open(path, O_RDONLY)) == -1)
		abort();
	if ((buf = malloc(FUZZ_FILE_MAX)) == NULL)
		abort();
	r = read(fd, buf, FUZZ_FILE_MAX);
	if (r <= 0 || r == FUZZ_FILE_MAX)
		abort();
	close(fd);
	*len = (size_t)r;
	return buf;
}

static int
starts(const char *p, size_t n, const char *s)
{
	return n >= strlen(s) && memcmp(p, s, strlen(s)) == 0;
}

static void
check_body(const char *b, size_t len, size_t nrcpt)
{
	static const char *const top[FUZZ_NTOP] = {
		"From: MAILER-DAEMON@", "To: <", "Subject: ", "Date: ",
		"Message-ID: <", "Auto-Submitted: auto-replied",
		"MIME-Version: 1.0", "Content-Type: multipart/report; ",
		"\tboundary=\"", "Content-Transfer-Encoding: 8bit",
	};
	char bnd[128];
	const char *p = b, *end = b + len, *q, *bs;
	size_t n, i, blen = 0, line = 0, delims = 0, finals = 0, actions = 0;
	int in_top = 1, closed = 0, ok;

	while (p < end) {
		for (q = p; q < end && *q != '\r' && *q != '\n'; q++)
			;
		n = (size_t)(q - p);
		/* CRLF only, never over 998 (RFC 5322 §2.1.1). */
		if (n > FUZZ_LINE_MAX || q + 1 >= end || q[0] != '\r' ||
		    q[1] != '\n')
			abort();
		if (closed)
			abort();	/* nothing after the close delimiter */
		if (in_top && n == 0) {
			in_top = 0;
			if (blen == 0)
				abort();
		} else if (in_top) {
			for (ok = 0, i = 0; i < FUZZ_NTOP; i++)
				ok |= starts(p, n, top[i]);
			if (!ok)
				abort();
			if (starts(p, n, "\tboundary=\"")) {
				bs = p + strlen("\tboundary=\"");
				if (q - bs < 2 || q[-1] != '"')
					abort();
				blen = (size_t)(q - bs) - 1;
				if (blen + 2 >= sizeof(bnd))
					abort();
				bnd[0] = bnd[1] = '-';
				memcpy(bnd + 2, bs, blen);
				bnd[blen + 2] = '\0';
				blen += 2;
			}
		} else if (starts(p, n, bnd)) {
			if (n == blen)
				delims++;
			else if (n == blen + 2 && delims == 3 &&
			    memcmp(p + blen, "--", 2) == 0)
				closed = 1;
			else
				abort();
		} else if (delims == 2) {
			/* rfc822, or utf-8 for an 8-bit address (RFC 6533) */
			finals += starts(p, n, "Final-Recipient: rfc822;") ||
			    starts(p, n, "Final-Recipient: utf-8;");
			actions += starts(p, n, "Action: ");
		}
		/* 7-bit everywhere but in the copied headers (part 3). */
		if (delims < 3)
			for (i = 0; i < n; i++)
				if ((unsigned char)p[i] >= 0x80 || p[i] == '\0')
					abort();
		line++;
		p = q + 2;
	}
	if (!closed || delims != 3 || finals != nrcpt || actions != nrcpt ||
	    line == 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bounce_rcpt r[FUZZ_RCPT_MAX];
	struct queue_info orig, parsed;
	struct queue_writer *w;
	enum bounce_kind kind;
	const char *why;
	char *img;
	size_t off = 1, nrcpt, i, len;
	int rc;

	if (size < 1 || !queue_ready())
		return 0;
	kind = (data[0] & 1) ? BOUNCE_DELAYED : BOUNCE_FAILED;
	nrcpt = (size_t)((data[0] >> 1) % FUZZ_RCPT_MAX) + 1;

	memset(&orig, 0, sizeof(orig));
	memcpy(orig.id, "0123456789ABCDEF01", QUEUE_ID_SIZE);
	orig.arrival = (uint64_t)FUZZ_NOW - 60;
	field(data, size, &off, orig.sender, sizeof(orig.sender));
	for (i = 0; i < nrcpt; i++) {
		char *a = fields[1 + 4 * i], *s = fields[2 + 4 * i];
		char *m = fields[3 + 4 * i], *d = fields[4 + 4 * i];

		field(data, size, &off, a, FUZZ_FIELD_MAX);
		field(data, size, &off, s, FUZZ_FIELD_MAX);
		r[i].address = a;
		r[i].status = s;
		/* Set, or strftime() formats stack bytes (valgrind): none
		 * for the first, a date for the others. */
		r[i].retry_until = i == 0 ? 0 : FUZZ_NOW + 86400 * (time_t)i;
		field(data, size, &off, m, FUZZ_FIELD_MAX);
		field(data, size, &off, d, FUZZ_FIELD_MAX);
		r[i].diagnostic = d;
		if (m[0] != '\0') {
			snprintf(said[i], sizeof(said[i]), REPLY_SAID, m,
			    "192.0.2.1", d, "RCPT TO");
			r[i].diagnostic = said[i];
		}
	}
	if (off > size)
		off = size;

	w = queue_writer_new(NULL, "", QF_BOUNCE, (uid_t)-1, "");
	if (w == NULL || queue_writer_rcpt(w, "postmaster@example.org") == -1)
		abort();
	rc = bounce_compose(w, kind, "relay.example.org", &orig, r, nrcpt,
	    (const char *)data + off, size - off, FUZZ_NOW);
	if (orig.sender[0] == '\0') {
		/* The null sender never gets a bounce. */
		if (rc != -1)
			abort();
		queue_writer_abort(w);
		return 0;
	}
	if (rc != 0 || queue_writer_finish(w) == -1)
		abort();
	img = read_tmp(queue_writer_id(w), &len);
	if (queue_parse(img, len, &parsed, &why) == -1 ||
	    !(parsed.flags & QF_BOUNCE) || parsed.sender[0] != '\0' ||
	    parsed.body_off + parsed.size > len)
		abort();
	check_body(img + parsed.body_off, (size_t)parsed.size, nrcpt);
	queue_info_free(&parsed);
	free(img);
	queue_writer_abort(w);
	return 0;
}
