/*
 * pickup.c - maildrop/ into the queue (see pickup.h).  Owns the scan
 * timer and the re-injection: envelope from the dropped file, addresses
 * re-checked and qualified, a Received: line naming the dropping uid
 * (the file's owner, not what the file claims), then the queue's usual
 * group commit, into more than one queue file when the aliases make it
 * more than one holds.  The dropped file is removed only after every new
 * queue file is durable, so a crash in between gives a duplicate, never
 * a loss.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "alias.h"
#include "config.h"
#include "hdr.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "pickup.h"
#include "queue.h"

#define PICKUP_INTERVAL_MS	60000
#define PICKUP_BATCH		64	/* files per scan; the rest next time */
#define PICKUP_FULL		1	/* pickup_file(): no room, stop */
#define PICKUP_ALIAS_MAX	ALIAS_EXPAND_MAX

static void pickup_on_timer(struct loop_timer *);
static int pickup_file(const char *);
static void pickup_on_commit(void *, const char *, int);
static const char *pickup_body_bad(const char *, uint64_t);

/* One maildrop file, whose aliases may need more than one queue file. */
struct pickup_job {
	char name[QUEUE_ID_SIZE];	/* first: no offset to add */
	unsigned parts;		/* queue files not yet committed */
	uint8_t failed;		/* one did not commit: keep the file (a
				   byte: a constant's store is shorter) */
};

static const struct config *pickup_conf;
static const struct alias_table *pickup_aliases;
static struct loop_timer pickup_timer = { .cb = pickup_on_timer };

void
pickup_configure(const struct config *conf)
{
	pickup_conf = conf;
}

void
pickup_set_aliases(const struct alias_table *t)
{
	pickup_aliases = t;
}

void
pickup_start(void)
{
	loop_timer_set(&pickup_timer, 0);
}

void
pickup_stop(void)
{
	loop_timer_cancel(&pickup_timer);
}

static void
pickup_on_timer(struct loop_timer *t)
{
	struct dirent *de;
	DIR *d;
	int n = 0, full = 0, rc;

	if ((d = queue_opendir("maildrop", NULL)) == NULL) {
		log_warn(LP_PICKUP, "opendir %s/maildrop", queue_dir());
		goto again;
	}
	while (n < PICKUP_BATCH && (de = readdir(d)) != NULL) {
		/* Dot files are being written (or are "." and ".."). */
		if (de->d_name[0] == '.')
			continue;
		/* A file moved to corrupt/ counts as one queued: a local user's
		 * 100,000 junk files must not hold the loop for minutes.  One
		 * too big for the room left: smaller ones may fit. */
		if ((rc = pickup_file(de->d_name)) == 0)
			n++;
		else if (rc == PICKUP_FULL)
			full++;
	}
	closedir(d);
	if (full)
		log_warnx(LP_PICKUP, "maildrop: %d file(s) wait for free "
		    "space in the queue", full);
again:
	loop_timer_set(t, n == PICKUP_BATCH ? 0 : PICKUP_INTERVAL_MS);
}

/* 0: handed to the queue or moved to corrupt/; PICKUP_FULL: the queue's
 * file system has no room for it; -1: anything else (logged). */
static int
pickup_file(const char *name)
{
	char path[sizeof("maildrop/") + NAME_MAX], hdr[HDR_RECEIVED_MAX];
	char exp[PICKUP_ALIAS_MAX][512], addr[QUEUE_ADDR_MAX + 2];
	struct queue_info info;
	struct queue_writer *w = NULL;
	struct stat st;
	struct msg_buf seen = { NULL, 0, 0 };
	const char *why = NULL;
	struct pickup_job *job = NULL;
	char *buf = NULL, *a;
	unsigned i = 0;
	int fd = -1, n, k, j, rc = -1;

	/* All queue_info_free() needs before queue_parse() fills it. */
	info.rcpt = NULL;
	snprintf(path, sizeof(path), "maildrop/%s", name);
	if (!queue_id_valid(name)) {
		/* Junk a local user left: out of the way, kept. */
		why = "not a queue file name";
		goto bad;
	}
	/* Anyone may create entries here: FIFOs, links (see there). */
	if ((fd = queue_open_dropped(name, &st, &why)) == -1) {
		if (errno == EBADMSG)
			goto bad;
		log_warn(LP_PICKUP, "open %s", path);
		return -1;
	}
	/* Before the space check: a sparse file claiming a terabyte must
	 * go to corrupt/, not wait for room for ever.  The second test
	 * matters on 32 bits with a limit past 4 GB: the malloc(size + 1)
	 * below must not wrap. */
	if ((uint64_t)st.st_size > pickup_conf->message_size_limit +
	    QUEUE_HDR_MAX || (uint64_t)st.st_size >= SIZE_MAX) {
		why = "too big";
		goto bad;
	}
	/* The copy must leave the reserve that state updates and bounces
	 * need, as a message at the SMTP door must. */
	if (!queue_space_ok((uint64_t)st.st_size)) {
		rc = PICKUP_FULL;
		goto out;
	}
	/* The size from queue_open_dropped()'s fstat(), checked above:
	 * a file that grows meanwhile is read no further. */
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL ||
	    queue_rw_all(fd, buf, (size_t)st.st_size, 0) == -1) {
		log_warn(LP_PICKUP, "read %s", path);
		goto out;
	}
	if (queue_parse(buf, (size_t)st.st_size, &info, &why) == -1)
		goto bad;
	/* The SMTP door refuses these (smuggling, RFC 5321 line length);
	 * so does this one: sendmail writes neither. */
	if ((why = pickup_body_bad(buf + info.body_off, info.size)) != NULL)
		goto bad;
	/* Past a queue file's limits the rest goes into another, as the
	 * SMTP door's 452 has a client send it in another transaction.
	 * A first pass, with no job and no w, only checks: all that can
	 * refuse the file does so before a part is committed (a file in
	 * corrupt/ went in no part, and re-injecting it by hand repeats
	 * nothing).  The later passes check the same bytes again. */
part:
	if (job != NULL && (w = queue_writer_new(NULL, info.sender,
	    info.flags & (QF_8BITMIME | QF_SMTPUTF8), st.st_uid, "local")) ==
	    NULL) {
		log_warn(LP_PICKUP, "%s: cannot create queue file", name);
		goto out;
	}
	/* Expanded again from the recipient that did not fit: those
	 * queued already are in seen.  The sender is checked last. */
	for (;; i++) {
		a = i < info.nrcpt ? info.rcpt[i].address : info.sender;
		/* As the SMTP door reads MAIL and RCPT (SMTPUTF8 as the
		 * file says), rewritten in place without a source route:
		 * anyone may leave a file here, and a hand-made
		 * "a@b> NOTIFY=SUCCESS" must not reach the relay's
		 * RCPT TO:<...>.  Here, not in queue_parse(): only this
		 * door takes files ferry did not write from checked paths.
		 * One flag set for all: <> passes for a recipient too, but
		 * queue_parse() has refused an empty one.  In the first
		 * pass only: the later ones see what it rewrote (a
		 * qualified sender might not read again).  n - 1 is a's
		 * own size (a recipient's is allocated to fit): what is
		 * written is a's parts, never longer. */
		if (job == NULL) {
			n = snprintf(addr, sizeof(addr), "<%s>", a);
			if (addr_parse_path(addr, (size_t)n, ADDR_ALONE |
			    ADDR_NULL_OK | ADDR_BARE_OK | (info.flags &
			    QF_SMTPUTF8 ? ADDR_UTF8 : 0), a, (size_t)n - 1,
			    &why) < 0)
				goto bad;
			/* A bare sender gets @origin, as at the SMTP
			 * door. */
			if (a == info.sender && a[0] != '\0') {
				addr_qualify(a, pickup_conf->origin, addr,
				    QUEUE_ADDR_MAX);
				memcpy(a, addr, QUEUE_ADDR_MAX);
			}
		}
		if (a == info.sender)
			break;
		/* Qualified and aliased, as at the SMTP door. */
		if ((k = alias_expand(pickup_aliases, a, pickup_conf->origin,
		    exp, PICKUP_ALIAS_MAX, &why)) < 0)
			goto bad;
		for (j = 0; w != NULL && j < k; j++) {
			/* One copy each, as at the SMTP door:
			 * two recipients' aliases may meet. */
			if (addr_list_has(seen.p, seen.len, exp[j]))
				continue;
			/* w is full: this one begins the next.  One
			 * address is far below a queue file's limits, so it
			 * fits an empty w (one left empty would fail in
			 * queue_writer_body(), and the file be kept). */
			if (queue_writer_rcpt(w, exp[j]) == -1) {
				if (errno == E2BIG)
					goto full;
				goto werr;
			}
			if (msg_buf_add(&seen, exp[j], strlen(exp[j]) + 1) ==
			    -1)
				goto werr;
		}
	}
	if (job == NULL) {
		/* The name under maildrop/, for pickup_on_commit(). */
		if ((job = calloc(1, sizeof(*job))) == NULL)
			goto werr;
		memcpy(job->name, name, sizeof(job->name));
		i = 0;
		goto part;
	}
full:
	n = hdr_received(hdr, sizeof(hdr) - 2, NULL, NULL, NULL, NULL,
	    pickup_conf->hostname, queue_writer_id(w),
	    info.nrcpt == 1 ? info.rcpt[0].address : NULL, (long)st.st_uid,
	    loop_now_real());
	/* A first line that starts with white space would continue our
	 * Received: (a forged "for <...>" in ferry's trace line): an empty
	 * line goes before it, as the SMTP door puts one. */
	if (n > 0 && info.size > 0 && (buf[info.body_off] == ' ' ||
	    buf[info.body_off] == '\t')) {
		memcpy(hdr + n, "\r\n", 2);
		n += 2;
	}
	if (n < 0 || queue_writer_body(w, hdr, (size_t)n) == -1 ||
	    queue_writer_body(w, buf + info.body_off, info.size) == -1 ||
	    queue_writer_finish(w) == -1)
		goto werr;
	log_info(LP_PICKUP, "%s: uid=%ld from=<%s>", queue_writer_id(w),
	    (long)st.st_uid, info.sender);
	job->parts++;
	queue_commit(w, pickup_on_commit, job);
	w = NULL;
	if (i < info.nrcpt)
		goto part;
	job = NULL;
	rc = 0;
	goto out;
werr:
	log_warn(LP_PICKUP, "%s: queue file write error", name);
	goto out;
bad:
	/* queue_quarantine() logs the move and the reason. */
	rc = queue_quarantine(path, why);
out:
	queue_writer_abort(w);		/* NULL: nothing */
	/* Failed with parts queued (a write error: a refusal came in the
	 * first pass): the file is kept in maildrop/, and the next scan
	 * queues those parts again, as after a failed commit.  The last
	 * part's callback frees the job. */
	if (job != NULL && (job->failed = 1, job->parts == 0))
		free(job);
	queue_info_free(&info);
	msg_buf_free(&seen);
	free(buf);
	if (fd != -1)
		close(fd);
	return rc;
}

/* Why the body is refused, or NULL: a CR not followed by LF or a LF not
 * preceded by CR (one test: each byte must be a LF exactly when the one
 * before it is a CR), a line over MSG_LINE_MAX octets without CRLF,
 * which deliver.c would send as it is, or more Received: fields than
 * the SMTP door takes.  A loop can pass through here: a .forward or a
 * script hands the mail to sendmail while the daemon is down.  The
 * file goes to corrupt/ whole, as for the others: a DSN would keep only
 * its header, and a loop's sender may be a bounce (never bounced). */
static const char *
pickup_body_bad(const char *b, uint64_t n)
{
	struct msg_field f;
	uint64_t i, col = 0;
	size_t pos = 0;
	unsigned hops = 0;
	int cr = 0;

	for (i = 0; i < n; i++) {
		if (cr != (b[i] == '\n'))
			return "bare CR or LF in the message";
		cr = b[i] == '\r';
		col = b[i] == '\n' ? 0 : col + !cr;
		if (col > MSG_LINE_MAX)
			return "line over 1000 octets";
	}
	if (cr)
		return "bare CR or LF in the message";
	/* The header as the SMTP door reads it, field by field, to the
	 * first line that is none.  n fits: the file was read whole. */
	while (msg_field_next(b, (size_t)n, &pos, &f))
		if (msg_hop(b, &f, &hops))
			return "too many hops (a mail loop)";
	return NULL;
}

static void
pickup_on_commit(void *arg, const char *id, int ok)
{
	struct pickup_job *job = arg;

	if (ok)
		log_info(LP_QMGR, "%s: picked up from maildrop/%s", id,
		    job->name);
	else {
		log_warnx(LP_PICKUP, "maildrop/%s: queue commit failed; "
		    "will retry", job->name);
		job->failed = 1;
	}
	if (--job->parts > 0)
		return;
	/* All parts ran their commit together (one hook, before the next
	 * scan), so the file is not picked up again meanwhile.  A failed
	 * unlink, or a part that failed, means duplicates of the others on
	 * the next scan, which is allowed; a lost message is not. */
	if (!job->failed && queue_delete_dropped(job->name) == -1)
		log_warn(LP_PICKUP, "unlink maildrop/%s", job->name);
	free(job);
}
