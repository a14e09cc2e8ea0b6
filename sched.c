/*
 * sched.c - the queue manager: which message goes where, when, over how
 * many connections; what a result means (retry, bounce, done).
 *
 * Owns: the in-memory index of queued messages (id and next attempt only,
 * about 80 bytes each; an active message also holds its envelope),
 * per-destination job queues and lines of messages waiting for their
 * share of the active set, the concurrency limits, the backoff of
 * messages and of destinations, expiry, bounces and delay warnings.  It
 * does not speak SMTP (deliver.c) or know the file format (queue.c).
 *
 * A destination is a recipient domain, or the one smarthost.  A job is
 * one message's recipients for one destination: one transaction.  A
 * destination whose connection fails before any transaction, with none
 * of its others up, is "dead" until its backoff ends, and every job
 * waiting for it is deferred at once (with the failure's words), so a
 * dead MX costs one connection attempt, not one per message.
 *
 * Durability: a recipient's new state is written (queue_update) before
 * the message leaves the active set; the file goes away only when every
 * recipient is sent or bounced, and only after the bounce is committed.
 * A crash between a remote 250 and our state write repeats that
 * delivery; nothing is ever lost.  A destination that finishes while
 * others are still under way has its results appended to the state
 * file (fsynced, as a whole write is), not the file rewritten: on flash,
 * a message to N domains writes O(N) bytes, not O(N^2).  Recipients
 * that bounce while others are still pending get their DSN at the end
 * of that attempt (Postfix does so too); each is marked notified only
 * once that DSN is durable, so a crash in between sends it twice, never
 * not at all.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "alias.h"
#include "bounce.h"
#include "config.h"
#include "deliver.h"
#include "dns.h"
#include "log.h"
#include "loop.h"
#include "queue.h"
#include "reply.h"
#include "sched.h"
#include "textfile.h"

#define SCHED_ACTIVE_MAX	256	/* envelopes held in memory */
/* Recipients held by the active set (about 100 bytes each with a 30-byte
 * address: its envelope entry, its place in a job; then its reason, to
 * fit; a reply's 512 bytes only while a connection has its job), past
 * which no further message is taken in: 256 messages of 100 recipients,
 * each with a reason of the longest kind, would hold 16 MB on a router.
 * One message with more is still taken when the set has room, so it is
 * never stuck; mail of SCHED_RCPT_FEW or fewer still comes in past it
 * (sched_room()). */
#define SCHED_RCPT_MAX		1024
#define SCHED_RCPT_FEW		4	/* mail taken in past it */
/* Jobs one destination may hold in the active set (sched_share): eight
 * a connection (max_deliveries_per_destination), up to half the set.
 * Past it a message waits in that destination's line (sched_full()), as
 * small as an idle one, so mail for a slow MX cannot fill the set while
 * connections are free for others: Postfix's active queue holds 20,000
 * messages, ours a router's 256.  A message for several destinations
 * waits in the line of the first that has its share. */
#define SCHED_DEST_JOBS		8	/* a connection */
#define SCHED_IDLE_SCAN_MS	60000	/* at least this often */
#define SCHED_HEADERS_MAX	(64 * 1024)	/* copied into a bounce */
#define SCHED_EXPIRED		"message expired after "	/* reason */
#define SCHED_DEST_MAX		(DNS_NAME_MAX + 1)
#define SCHED_INDEX_BATCH	1024	/* state files looked at per turn */
#define SCHED_INDEX_RETRY_MS	1000	/* after an allocation failed */

/* A recipient's result is its reason (sched_reason()), cut to fit. */
_Static_assert(DELIVER_REASON_MAX <= QUEUE_REASON_MAX, "reason size");

struct sched_dest;
struct sched_msg;

/* A list of messages, in the order they joined it: the idle one is
 * walked from the head, so the oldest arrival (the start-up index is
 * sorted) and the longest deferred go first. */
struct sched_list {
	struct sched_msg *head, *tail;
};

struct sched_msg {
	struct sched_msg *prev, *next;	/* idle, active or a dest's line */
	char id[QUEUE_ID_SIZE];
	uint8_t active;
	uint8_t bouncing;		/* waiting for its DSN's commit */
	uint8_t unsaved;		/* the last state write failed: keep info */
	uint8_t based;			/* our last state write succeeded:
					   results may be appended */
	uint8_t nrcpt;			/* recipients when last loaded (255:
					   more; 0: unknown), for sched_room */
	uint64_t next_attempt;		/* unix seconds */
	struct queue_info *info;	/* the envelope, while active or
					   unsaved */
	unsigned jobs;			/* outstanding */
	unsigned held;			/* recipients counted in sched_nrcpt */
};

struct sched_job {
	struct sched_job *next;
	struct sched_msg *msg;
	struct sched_dest *dest;
	unsigned *idx;			/* into msg->info->rcpt */
	char *replies;			/* rcpt[i].reply's buffers, only while
					   a connection has the job */
	struct deliver_txn txn;
	struct deliver_rcpt rcpt[];
};

struct sched_dest {
	struct sched_dest *next;
	struct sched_job *head, **tail;
	unsigned waiting;
	unsigned jobs;			/* waiting or in flight */
	struct sched_list parked;	/* messages waiting for a share */
	unsigned active;		/* connections */
	unsigned starting;		/* connections without a job yet */
	uint64_t dead_until;		/* unix seconds */
	unsigned failures;
	uint8_t relay;			/* made for the smarthost */
	char name[SCHED_DEST_MAX];	/* last: the fields above get
					   one-byte displacements */
	char why[DELIVER_REASON_MAX];	/* while dead: what killed it */
};

struct sched_conn {
	struct sched_conn *prev, *next;	/* every open connection */
	struct sched_dest *dest;
	struct deliver *d;
	struct sched_job *job;		/* in flight, or NULL */
	int started;
};

static void sched_on_timer(struct loop_timer *);
/* noinline: one copy instead of LTO's inlined ones, each measured smaller. */
static void sched_conn_unlink(struct sched_conn *) __attribute__((noinline));
static void sched_arm(uint64_t);
static void sched_ix_mark(const struct sched_list *);
static void sched_list_add(struct sched_list *, struct sched_msg *)
    __attribute__((noinline));	/* measured, as above */
static void sched_list_del(struct sched_list *, struct sched_msg *);
static void sched_activate(struct sched_msg *, int);
static struct sched_dest *sched_full(const struct queue_info *);
static int sched_room(unsigned);
static void sched_dest_name(const char *, char *);
static struct sched_dest *sched_dest_get(const char *);
static void sched_dest_free_idle(void);
static void sched_dispatch(void);
static void sched_dest_last(struct sched_dest *);
static struct sched_job *sched_dest_pop(struct sched_dest *);
static int sched_open(const struct sched_msg *);
static struct deliver_txn *sched_on_next(void *, struct deliver *);
static void sched_on_done(void *, struct deliver *, struct deliver_txn *);
static void sched_on_unused(void *, struct deliver *, struct deliver_txn *);
static void sched_job_front(struct sched_job *);
static void sched_on_closed(void *, struct deliver *, enum deliver_result,
    const char *, const char *);
static void sched_job_result(struct sched_job *, const char *);
static void sched_job_fail(struct sched_job *, enum deliver_result,
    const char *, const char *, const char *);
static void sched_job_free(struct sched_job *);
static void sched_msg_job_done(struct sched_msg *);
static void sched_finish(struct sched_msg *);
static struct queue_writer *sched_dsn(struct sched_msg *, enum bounce_kind);
static int sched_bounce(struct sched_msg *);
static void sched_on_bounce_commit(void *, const char *, int);
static struct queue_writer *sched_bounce_early(struct sched_msg *);
static void sched_on_early_commit(void *, const char *, int);
/* noinline on two: measured smaller than LTO's inlined copies. */
static unsigned sched_unnotified(const struct queue_info *)
    __attribute__((noinline));
static struct queue_writer *sched_delay_warn(struct sched_msg *, uint64_t);
static void sched_on_warn_commit(void *, const char *, int);
static const char *sched_reply_dsn(const char *, char *, size_t);
static void sched_remove(struct sched_msg *);
static void sched_idle(struct sched_msg *);
static void sched_park(struct sched_msg *, struct sched_list *);
static void sched_unlist(struct sched_msg *);
static void sched_retry(struct sched_msg *);
static int sched_save(struct sched_msg *, int, const unsigned *, unsigned);
static void sched_msg_free(struct sched_msg *);
static uint64_t sched_expiry(const struct queue_info *)
    __attribute__((noinline));
static int sched_settled(const struct queue_info *);
/* always_inline: measured smaller than the call LTO kept. */
static inline void sched_reason(const struct sched_msg *, struct queue_rcpt *,
    const char *, const char *) __attribute__((always_inline));
static void sched_keep(const struct sched_msg *, struct queue_rcpt *,
    const char *) __attribute__((noinline));	/* measured, as above */
static void sched_expire_reason(const struct sched_msg *,
    struct queue_rcpt *);
static void sched_log(const struct sched_msg *, const char *, const char *,
    const char *, const char *, const char *);
static void sched_on_index(struct loop_timer *);

static const struct deliver_ops sched_ops = {
	.next = sched_on_next,
	.done = sched_on_done,
	.unused = sched_on_unused,
	.closed = sched_on_closed,
};

static const struct config *sched_conf;
static const struct alias_table *sched_aliases;
static struct sched_list sched_idle_list, sched_active_list;
static unsigned sched_nactive, sched_nrcpt;
static unsigned sched_share;		/* jobs a destination may hold */
static struct sched_dest *sched_dests;
static unsigned sched_conns;
static struct sched_conn *sched_conn_list;
static struct loop_timer sched_timer = { .cb = sched_on_timer };
/* The start-up index, until sched_on_index() has read all of it. */
static char (*sched_ix)[QUEUE_ID_SIZE];
static size_t sched_ix_n, sched_ix_i;
static uint64_t sched_ix_latest;	/* now + retry_max; 0 after a flush */
static struct loop_timer sched_ix_timer = { .cb = sched_on_index };
static int sched_stopping;
static int sched_starved;		/* due messages wait for a slot */
/* Where the last pass stopped for want of a slot: the next goes on from
 * there, not over every message before it again (a flush of
 * 16,000 deferred again was O(n^2): 1.5 s of user CPU, 0.6 s now; see
 * bench/requeue.sh).  Only a pass takes messages off the idle list. */
static struct sched_msg *sched_cursor;
static uint64_t sched_wake_at;		/* unix seconds the timer is for */

/* Smarthost, parsed: "[host]:port" (kept as "[host]": no MX lookup),
 * "host:port", "host". */
static char sched_relay[SCHED_DEST_MAX];
static unsigned sched_relay_port;

void
sched_set_aliases(const struct alias_table *t)
{
	sched_aliases = t;
}

void
sched_configure(const struct config *conf)
{
	const char *h = conf->smarthost;
	size_t n = 0;
	unsigned port = 0;
	int br;

	sched_conf = conf;
	deliver_configure(conf);
	sched_share = conf->max_deliveries_per_destination <
	    SCHED_ACTIVE_MAX / 2 / SCHED_DEST_JOBS ? SCHED_DEST_JOBS *
	    conf->max_deliveries_per_destination : SCHED_ACTIVE_MAX / 2;
	/* config.c checked the shape; "[host]" keeps its brackets. */
	br = config_host_split(h, strlen(h), &h, &n, &port);
	if (br < 0)
		n = 0;
	else if (br > 0) {
		h--;
		n += 2;
	}
	if (n >= sizeof(sched_relay))
		n = sizeof(sched_relay) - 1;
	memcpy(sched_relay, h, n);
	sched_relay[n] = '\0';
	sched_relay_port = port != 0 ? port : 25;
}

/*
 * The index is read in batches on the loop, not before it: the listeners
 * greet at once, as Postfix's do while its qmgr scans (20,000 deferred
 * messages took 0.32 s to the first 220 with a cold cache, read first).
 * A stamp further off than any backoff (touched, or written before the
 * clock was set back) must not park a message.
 */
static void
sched_on_index(struct loop_timer *t)
{
	struct sched_msg *m;
	struct sched_dest *d;
	uint64_t next;
	size_t end;

	/* The start's scan failed (EMFILE, ENOMEM, EIO): again until it
	 * works, or what was queued waits for a restart.  Mail queued since
	 * is in the lists already and must not be there twice. */
	if (sched_ix_i == (size_t)-1) {
		if (queue_ids(&sched_ix, &sched_ix_n) == -1) {
			loop_timer_set(t, SCHED_INDEX_RETRY_MS);
			return;
		}
		log_info(LP_QMGR, "%u message(s) in the queue",
		    (unsigned)sched_ix_n);
		sched_ix_i = 0;
		sched_ix_mark(&sched_idle_list);
		sched_ix_mark(&sched_active_list);
		for (d = sched_dests; d != NULL; d = d->next)
			sched_ix_mark(&d->parked);
	}
	for (end = sched_ix_i + SCHED_INDEX_BATCH; sched_ix_i < sched_ix_n &&
	    sched_ix_i < end; sched_ix_i++) {
		if (sched_ix[sched_ix_i][QUEUE_ID_LEN] != '\0')
			continue;	/* known, see above */
		if ((m = calloc(1, sizeof(*m))) == NULL) {
			loop_timer_set(t, SCHED_INDEX_RETRY_MS);
			return;
		}
		memcpy(m->id, sched_ix[sched_ix_i], sizeof(m->id));
		next = queue_next_attempt(m->id);
		m->next_attempt = next > sched_ix_latest ? sched_ix_latest :
		    next;
		sched_list_add(&sched_idle_list, m);
	}
	if (sched_ix_i < sched_ix_n)
		loop_timer_set(t, 0);
	else {
		free(sched_ix);
		sched_ix = NULL;
	}
	sched_arm(0);
}

/* l's messages are in the lists already: the index skips them. */
static void
sched_ix_mark(const struct sched_list *l)
{
	const struct sched_msg *m;
	char *known;

	for (m = l->head; m != NULL; m = m->next)
		if ((known = bsearch(m->id, sched_ix, sched_ix_n,
		    sizeof(*sched_ix), queue_id_cmp)) != NULL)
			known[QUEUE_ID_LEN] = 1;
}

int
sched_start(unsigned *count)
{
	int rc = queue_ids(&sched_ix, &sched_ix_n);

	*count = (unsigned)sched_ix_n;
	sched_ix_i = (size_t)rc;	/* -1: sched_on_index() scans again */
	sched_ix_latest = (uint64_t)loop_now_real() + sched_conf->retry_max;
	loop_timer_set(&sched_ix_timer, 0);
	sched_wake_at = 0;
	loop_timer_set(&sched_timer, 0);
	return rc;
}

void
sched_enqueue(const char *id, unsigned nrcpt)
{
	struct sched_msg *m;

	if (sched_stopping || (m = calloc(1, sizeof(*m))) == NULL) {
		/* Not lost: the next start's walk finds it. */
		return;
	}
	textfile_copy(m->id, sizeof(m->id), id);
	m->nrcpt = (uint8_t)(nrcpt < 255 ? nrcpt : 255);
	if (sched_room(m->nrcpt)) {
		sched_activate(m, 1);
		sched_dispatch();
		return;
	}
	/* Due now, no room: the next freed slot wakes the scan. */
	sched_list_add(&sched_idle_list, m);
	sched_starved = 1;
}

void
sched_flush(void)
{
	struct sched_msg *m;
	struct sched_dest *dst;

	for (m = sched_idle_list.head; m != NULL; m = m->next)
		m->next_attempt = 0;
	sched_ix_latest = 0;	/* and those the index has still to read */
	/* As Postfix's flush revives dead destinations: the next failure
	 * is a first one, not one more on those before the flush. */
	for (dst = sched_dests; dst != NULL; dst = dst->next) {
		dst->dead_until = 0;
		dst->failures = 0;
	}
	log_info(LP_QMGR, "flush: every deferred message is due now");
	sched_arm(0);
}

/*
 * Drop every connection and forget everything: what was in flight stays
 * in the queue as it is on disk and is tried again after the restart (a
 * repeat only if the remote had already said 250 to the final dot).
 */
void
sched_stop(void)
{
	struct sched_conn *c;
	struct sched_dest *d;
	struct sched_job *job;
	struct sched_msg *m, *next;

	sched_stopping = 1;
	loop_timer_cancel(&sched_timer);
	loop_timer_cancel(&sched_ix_timer);
	free(sched_ix);
	sched_ix = NULL;
	sched_ix_n = sched_ix_i = 0;
	while ((c = sched_conn_list) != NULL) {
		sched_conn_unlink(c);
		deliver_abort(c->d);
		if (c->job)
			sched_job_free(c->job);
		free(c);
	}
	sched_conns = 0;
	while ((d = sched_dests) != NULL) {
		sched_dests = d->next;
		while ((job = d->head) != NULL) {
			d->head = job->next;
			sched_job_free(job);
		}
		while ((m = d->parked.head) != NULL) {
			sched_list_del(&d->parked, m);
			sched_msg_free(m);
		}
		free(d);
	}
	while ((m = sched_idle_list.head) != NULL) {
		sched_unlist(m);
		sched_msg_free(m);
	}
	/* One waiting for its DSN's commit stays: the group commit runs as
	 * the loop ends, and then its callback writes or removes what the
	 * DSN named.  Forgotten, the DSN went out and the original stayed
	 * as it was, so the next start sent and bounced it all again. */
	for (m = sched_active_list.head; m != NULL; m = next) {
		next = m->next;
		if (!m->bouncing) {
			sched_unlist(m);
			sched_msg_free(m);
		}
	}
}

static void
sched_conn_unlink(struct sched_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		sched_conn_list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

unsigned
sched_busy(void)
{
	return sched_conns;
}

/* --- lists --- */

static void
sched_list_add(struct sched_list *l, struct sched_msg *m)
{
	m->next = NULL;
	m->prev = l->tail;
	*(l->tail ? &l->tail->next : &l->head) = m;
	l->tail = m;
}

static void
sched_list_del(struct sched_list *l, struct sched_msg *m)
{
	*(m->prev ? &m->prev->next : &l->head) = m->next;
	*(m->next ? &m->next->prev : &l->tail) = m->prev;
	m->prev = m->next = NULL;
}

/* Activate what is due, as far as memory allows; sleep until the next. */
static void
sched_on_timer(struct loop_timer *t)
{
	struct sched_msg *m, *next, *last = sched_idle_list.tail;
	struct sched_dest *d;
	uint64_t now = (uint64_t)loop_now_real(), soonest = UINT64_MAX;
	unsigned loads = 0;

	if (sched_stopping)
		return;
	/* A wake-up asked for during the pass (a job's end lets a line
	 * move) stands unless the pass's own is sooner. */
	sched_wake_at = UINT64_MAX;
	/* The lines first: what waits there was due before the idle list's
	 * messages were looked at.  One taken from a line goes in, even
	 * past another destination's share: a message for two busy ones
	 * must not wait in each one's line in turn, forever. */
	for (d = sched_dests; d != NULL; d = d->next)
		while ((m = d->parked.head) != NULL &&
		    d->jobs < sched_share) {
			if (!sched_room(m->nrcpt)) {
				soonest = now;
				break;
			}
			sched_list_del(&d->parked, m);
			sched_activate(m, 0);
		}
	/* Resumed mid-list: what lies before the cursor is only seen by
	 * the next pass, from the head, which runs at once (soonest). */
	if ((m = sched_cursor) != NULL)
		soonest = now;
	else
		m = sched_idle_list.head;
	/* Up to the tail as it was: one deferred again during the pass
	 * (retry_min may be 0) joins behind it for the next. */
	for (; m != NULL; m = next) {
		next = m == last ? NULL : m->next;
		/* No backoff reaches twice retry_max: a time further off was
		 * set before the clock went back, and is due now (as the
		 * start-up index caps it). */
		if (m->next_attempt > now &&
		    m->next_attempt - now <= 2ull * sched_conf->retry_max) {
			if (m->next_attempt < soonest)
				soonest = m->next_attempt;
			continue;
		}
		if (!sched_room(m->nrcpt)) {
			soonest = now;
			/* On for the few that still get in. */
			if (sched_nactive < SCHED_ACTIVE_MAX)
				continue;
			break;
		}
		/* Each may be loaded only to wait in a line: a turn's worth
		 * at a time, or a flush of a big queue for one slow MX
		 * would read all of it before the loop served anyone. */
		if (loads++ == SCHED_ACTIVE_MAX) {
			soonest = now;
			break;
		}
		sched_list_del(&sched_idle_list, m);
		sched_activate(m, 1);
	}
	sched_cursor = m;	/* NULL: the pass got to the end */
	sched_dispatch();
	sched_dest_free_idle();
	/* Due but no room: sched_remove() wakes us when a slot frees.  A
	 * slot freed during this pass (a dead destination defers its jobs
	 * at once) is taken now: waiting a second per SCHED_ACTIVE_MAX
	 * messages made a flush of a big queue take minutes. */
	sched_starved = soonest == now;
	(void)t;
	sched_arm(soonest == now ? (sched_room(0) ? now :
	    now + 1) : soonest == UINT64_MAX ? now + SCHED_IDLE_SCAN_MS / 1000 :
	    soonest);
}

/*
 * Wake at unix time at, unless an earlier wake-up is set.  The scan is
 * O(queue), so it runs when something is due, not per message.
 */
static void
sched_arm(uint64_t at)
{
	uint64_t now = (uint64_t)loop_now_real(), ms;

	if (sched_stopping || (loop_timer_armed(&sched_timer) &&
	    at >= sched_wake_at))
		return;
	ms = at <= now ? 0 : (at - now) * 1000;
	if (ms > SCHED_IDLE_SCAN_MS)
		ms = SCHED_IDLE_SCAN_MS;
	sched_wake_at = at;
	loop_timer_set(&sched_timer, ms);
}

/* Into name (SCHED_DEST_MAX bytes), a recipient's destination: the
 * relay, else its domain (the origin for a bare name), lower-cased; an
 * address literal as "[" its canonical address "]", so each spelling of
 * one address ("[IPv6:2001:DB8::1]", "[ipv6:2001:db8:0::1]") shares one
 * destination, its connections and its limits. */
static void
sched_dest_name(const char *rcpt, char *name)
{
	const char *dom;
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN];

	if (sched_relay[0]) {
		textfile_copy(name, SCHED_DEST_MAX, sched_relay);
		return;
	}
	dom = addr_domain(rcpt);
	if (addr_literal(dom, &ss, ip) != 0)
		snprintf(name, SCHED_DEST_MAX, "[%s]", ip);
	else
		addr_domain_lower(dom ? dom : sched_conf->origin, name,
		    SCHED_DEST_MAX);
}

/* Whether the active set takes one more message, of nrcpt recipients
 * (0: not known).  A few get in past the recipient limit (not past
 * SCHED_ACTIVE_MAX): mail for a quick destination must not wait for big
 * messages to a slow one to end. */
static int
sched_room(unsigned nrcpt)
{
	return sched_nactive < SCHED_ACTIVE_MAX && (sched_nrcpt <
	    SCHED_RCPT_MAX || (nrcpt > 0 && nrcpt <= SCHED_RCPT_FEW));
}

/* Into the active set (m is on no list): load the envelope and queue
 * one job per destination; or, if may_wait, into the line of one that
 * holds its share. */
static void
sched_activate(struct sched_msg *m, int may_wait)
{
	struct queue_info *qi;
	const char *why = NULL;
	char name[SCHED_DEST_MAX];
	struct sched_dest *dst;
	struct sched_job *job;
	unsigned i, j, n, *idx;
	unsigned char *taken;

	sched_list_add(&sched_active_list, m);
	m->active = 1;
	sched_nactive++;
	/* Idle, a message is its id and next attempt: the envelope (over
	 * 600 bytes) is held only while it is in the active set, or while
	 * the disk's state is older (unsaved).  Then it is written first if
	 * it can be; gone ("ferry delete") ends the message here. */
	if ((qi = m->info) != NULL) {
		if (sched_save(m, 1, NULL, 0) == -1 && !m->unsaved) {
			sched_remove(m);
			return;
		}
	} else if ((qi = m->info = calloc(1, sizeof(*qi))) == NULL)
		goto later;
	else if (queue_load(0, m->id, qi, &why) == -1) {
		if (errno == EBADMSG)
			(void)queue_quarantine(m->id, why ? why : "bad file");
		if (errno == ENOENT || errno == EBADMSG) {
			sched_remove(m);	/* deleted, or quarantined */
			return;
		}
		/* EMFILE, ENOMEM, EIO: the file is fine, try again later. */
		log_warnx(LP_QMGR, "%s: cannot load: %s; retrying later",
		    m->id, why ? why : log_errstr());
		memset(qi, 0, sizeof(*qi));
		sched_retry(m);
		return;
	}
	if (may_wait && (dst = sched_full(qi)) != NULL) {
		sched_park(m, &dst->parked);
		return;
	}
	sched_nrcpt += m->held = qi->nrcpt;
	m->nrcpt = (uint8_t)(qi->nrcpt < 255 ? qi->nrcpt : 255);
	/* One allocation: idx[nrcpt], then taken[nrcpt]. */
	if ((idx = calloc(qi->nrcpt ? qi->nrcpt : 1, sizeof(*idx) + 1)) ==
	    NULL)
		goto later;
	taken = (unsigned char *)(idx + qi->nrcpt);
	for (i = 0; i < qi->nrcpt; i++) {
		if (taken[i] || qi->rcpt[i].status == RS_SENT ||
		    qi->rcpt[i].status == RS_BOUNCED)
			continue;
		sched_dest_name(qi->rcpt[i].address, name);
		/* Every pending recipient for this destination, one job. */
		for (j = i, n = 0; j < qi->nrcpt; j++) {
			char other[SCHED_DEST_MAX];

			if (taken[j] || qi->rcpt[j].status == RS_SENT ||
			    qi->rcpt[j].status == RS_BOUNCED)
				continue;
			sched_dest_name(qi->rcpt[j].address, other);
			if (strcmp(other, name) != 0)
				continue;
			taken[j] = 1;
			idx[n++] = j;
		}
		if ((dst = sched_dest_get(name)) == NULL ||
		    (job = calloc(1, sizeof(*job) + n * sizeof(job->rcpt[0]) +
		    n * sizeof(unsigned))) == NULL) {
			log_warnx(LP_QMGR, "%s: out of memory", m->id);
			continue;	/* these recipients wait for a retry */
		}
		job->msg = m;
		job->dest = dst;
		job->idx = (unsigned *)(void *)&job->rcpt[n];
		memcpy(job->idx, idx, n * sizeof(unsigned));
		job->txn.nrcpt = n;
		job->txn.rcpt = job->rcpt;
		job->txn.fd = -1;
		for (j = 0; j < n; j++)
			job->rcpt[j].address = qi->rcpt[idx[j]].address;
		*dst->tail = job;	/* job->next: calloc()'s NULL */
		dst->tail = &job->next;
		dst->waiting++;
		dst->jobs++;
		m->jobs++;
	}
	free(idx);
	if (m->jobs == 0)
		sched_finish(m);
	return;
later:
	log_warnx(LP_QMGR, "%s: out of memory; retrying later", m->id);
	sched_retry(m);
}

/* The first of qi's destinations that holds its share of the active
 * set; NULL: none.  Not with a smarthost: all mail goes one way, and
 * waiting behind itself would only cost it a second load. */
static struct sched_dest *
sched_full(const struct queue_info *qi)
{
	char name[SCHED_DEST_MAX];
	struct sched_dest *d;
	unsigned i;

	for (i = 0; i < qi->nrcpt && sched_relay[0] == '\0'; i++) {
		if (qi->rcpt[i].status == RS_SENT ||
		    qi->rcpt[i].status == RS_BOUNCED)
			continue;
		sched_dest_name(qi->rcpt[i].address, name);
		for (d = sched_dests; d != NULL; d = d->next)
			if (d->jobs >= sched_share &&
			    strcmp(d->name, name) == 0)
				return d;
	}
	return NULL;
}

static struct sched_dest *
sched_dest_get(const char *name)
{
	struct sched_dest *d, **pp;

	for (pp = &sched_dests; (d = *pp) != NULL; pp = &d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	textfile_copy(d->name, sizeof(d->name), name);
	d->relay = sched_relay[0] != '\0';
	d->tail = &d->head;
	/* Last in line (sched_dispatch): not ahead of older ones. */
	*pp = d;
	return d;
}

/* Destinations with nothing to do and nothing to remember go away. */
static void
sched_dest_free_idle(void)
{
	struct sched_dest **pp = &sched_dests, *d;
	uint64_t now = (uint64_t)loop_now_real();

	while ((d = *pp) != NULL) {
		if (d->jobs == 0 && d->parked.head == NULL && d->active == 0 &&
		    d->dead_until <= now) {
			*pp = d->next;
			free(d);
		} else
			pp = &d->next;
	}
}

/* Open connections where jobs wait, within the limits. */
static void
sched_dispatch(void)
{
	struct sched_dest *d;
	struct sched_conn *c;
	struct sched_job *job;
	uint64_t now = (uint64_t)loop_now_real();
	int progress = 1, gone;

	while (progress && !sched_stopping) {
		progress = 0;
		for (d = sched_dests; d != NULL; d = d->next) {
			if (d->waiting == 0)
				continue;
			/* Backed off for longer than any backoff: the clock
			 * went back since; it is not dead for that long. */
			if (d->dead_until > now + sched_conf->retry_max)
				d->dead_until = 0;
			if (d->dead_until > now && d->active > 0)
				continue;	/* those still up take the jobs */
			/* Still backing off: defer what arrives.  Or made for
			 * the smarthost, which a reload has since removed: its
			 * jobs hold recipients of any domain, so d->name is no
			 * next hop for them; deferred, they are routed again. */
			gone = d->relay && sched_relay[0] == '\0';
			if (d->dead_until > now || gone) {
				while ((job = sched_dest_pop(d)) != NULL)
					sched_job_fail(job, DR_TEMP, NULL,
					    gone ? "4.3.5" : "4.4.1", gone ?
					    "the smarthost was removed by a "
					    "reload" : d->why);
				continue;
			}
			if (sched_conns >= sched_conf->max_deliveries)
				return;
			if (d->active >=
			    sched_conf->max_deliveries_per_destination ||
			    d->waiting <= d->starting)
				continue;
			if ((c = calloc(1, sizeof(*c))) == NULL)
				return;
			c->dest = d;
			/* A literal recipient domain is sent straight to
			 * its address on mx_port (RFC 5321 §5.1).  The
			 * relay, not d->name: a reload may have set one. */
			c->d = deliver_start(sched_relay[0] ? sched_relay :
			    d->name, sched_relay[0] ?
			    sched_relay_port : sched_conf->mx_port,
			    &sched_ops, c);
			if (c->d == NULL) {
				free(c);
				return;
			}
			c->next = sched_conn_list;
			if (sched_conn_list)
				sched_conn_list->prev = c;
			sched_conn_list = c;
			d->active++;
			d->starting++;
			sched_conns++;
			progress = 1;
			sched_dest_last(d);
			break;		/* the line changed: from its head */
		}
	}
}

/*
 * d to the end of the line for a slot: served, or having just given one
 * up.  Round robin, so the next goes to whoever has waited longer, not
 * to the destination made last nor to the one that just had it.
 */
static void
sched_dest_last(struct sched_dest *d)
{
	struct sched_dest **pp = &sched_dests;

	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = d;
	d->next = NULL;
}

/* The first job waiting for d, taken off its line; NULL: none. */
static struct sched_job *
sched_dest_pop(struct sched_dest *d)
{
	struct sched_job *job;

	if ((job = d->head) != NULL) {
		d->head = job->next;
		if (d->head == NULL)
			d->tail = &d->head;
		d->waiting--;
	}
	return job;
}

/* m's queue file, read-only: -1 with errno when it cannot be opened. */
static int
sched_open(const struct sched_msg *m)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", queue_dir(), m->id);
	return textfile_open(path, O_RDONLY | O_CLOEXEC);
}

/* --- the connection's callbacks --- */

static struct deliver_txn *
sched_on_next(void *arg, struct deliver *dv)
{
	struct sched_conn *c = arg;
	struct sched_dest *d = c->dest, *o;
	struct sched_job *job;
	struct sched_msg *m;
	uint64_t now = (uint64_t)loop_now_real();
	unsigned i;

	(void)dv;
	if (!c->started) {
		c->started = 1;
		d->starting--;
		d->failures = 0;
	} else if (sched_conns >= sched_conf->max_deliveries) {
		/* Another destination's mail waits for a slot: this one is
		 * given up after its transaction, or a steady stream to d
		 * would keep that mail waiting for as long as it lasts. */
		for (o = sched_dests; o != NULL; o = o->next)
			if (o != d && o->waiting > o->starting &&
			    o->dead_until <= now && o->active <
			    sched_conf->max_deliveries_per_destination)
				return NULL;
	}
	while ((job = sched_dest_pop(d)) != NULL) {
		m = job->msg;
		/* Lent to deliver until done(): a job that waits in line
		 * holds no reply buffer (and a recipient no 512 bytes). */
		if ((job->replies = calloc(job->txn.nrcpt,
		    DELIVER_REASON_MAX)) == NULL) {
			sched_job_fail(job, DR_TEMP, NULL, "4.3.0",
			    "out of memory");
			continue;
		}
		for (i = 0; i < job->txn.nrcpt; i++)
			job->rcpt[i].reply = job->replies +
			    i * DELIVER_REASON_MAX;
		job->txn.fd = sched_open(m);
		if (job->txn.fd == -1) {
			/* Deleted by "ferry delete" meanwhile. */
			sched_job_fail(job, DR_TEMP, NULL, "4.3.0",
			    "queue file unavailable");
			continue;
		}
		job->txn.id = m->id;
		job->txn.sender = m->info->sender;
		job->txn.flags = m->info->flags;
		job->txn.size = m->info->size;
		job->txn.body_off = m->info->body_off;
		c->job = job;
		return &job->txn;
	}
	return NULL;
}

static void
sched_on_done(void *arg, struct deliver *dv, struct deliver_txn *t)
{
	struct sched_conn *c = arg;
	struct sched_job *job = container_of(t, struct sched_job, txn);

	(void)dv;
	c->job = NULL;
	sched_job_result(job, NULL);
}

/* Back to the front of its destination's line, as if never taken: the
 * connection's end (closed(), next) dispatches it again. */
static void
sched_on_unused(void *arg, struct deliver *dv, struct deliver_txn *t)
{
	struct sched_conn *c = arg;

	(void)dv;
	c->job = NULL;
	sched_job_front(container_of(t, struct sched_job, txn));
}

/* First in its destination's line again, as if never taken. */
static void
sched_job_front(struct sched_job *job)
{
	struct sched_dest *d = job->dest;

	/* sched_on_next() opens the file and lends the replies again for
	 * whoever takes it. */
	if (job->txn.fd != -1) {
		(void)close(job->txn.fd);
		job->txn.fd = -1;
	}
	free(job->replies);
	job->replies = NULL;
	job->next = d->head;
	if (d->head == NULL)
		d->tail = &job->next;
	d->head = job;
	d->waiting++;
}

static void
sched_on_closed(void *arg, struct deliver *dv, enum deliver_result r,
    const char *dsn, const char *reason)
{
	struct sched_conn *c = arg;
	struct sched_dest *d = c->dest;
	struct sched_job *job;
	uint64_t now = (uint64_t)loop_now_real();
	int worked = c->started;

	if (!worked)
		d->starting--;
	d->active--;
	sched_conns--;
	sched_conn_unlink(c);
	free(c);
	sched_dest_last(d);
	/* It answered: d is not dead, whatever its siblings met (a limit
	 * on connections says 421 to the others).  Postfix calls a
	 * destination dead when its concurrency is down to zero. */
	if (worked)
		d->dead_until = 0;
	if (r == DR_TEMP) {
		/* No new connections for a while; open ones keep working.
		 * A failure counts when none is up, and a burst of them
		 * once: four refused at once made the backoff 8 times
		 * as long. */
		if (d->active == d->starting && d->dead_until <= now)
			d->failures++;
		d->dead_until = now + sched_backoff(d->failures) / 2;
		/* What the mail deferred meanwhile says (mailq, a delay
		 * notice, the DSN at expiry), in Postfix's words: the
		 * cause, not only that there was one. */
		textfile_fmt(d->why, sizeof(d->why), "delivery temporarily "
		    "suspended: %s", reason ? reason : "connection failed");
	}
	/* The smarthost is the admin's choice: its failing name is a
	 * configuration error to fix, not a reason to bounce everything.
	 * A destination made before a reload set one connects to it too
	 * (sched_dispatch), so a smarthost set now counts as well. */
	if (r == DR_PERM && (d->relay || sched_relay[0])) {
		log_warnx(LP_QMGR, "smarthost %s: %s; mail is deferred",
		    d->relay ? d->name : sched_relay, reason ? reason :
		    "failed");
		r = DR_TEMP;
		dsn = "4.4.3";
	}
	if (r != DR_OK && d->active == 0) {
		/* Nobody got through: everything waiting shares the fate. */
		while ((job = sched_dest_pop(d)) != NULL)
			sched_job_fail(job, r, deliver_relay(dv), dsn,
			    reason);
	}
	if (!sched_stopping)
		sched_dispatch();
}

/* --- results --- */

/* Apply a finished transaction's per-recipient results; why: one
 * result's words for all (the replies were not lent), else each one's
 * reply. */
static void
sched_job_result(struct sched_job *job, const char *why)
{
	struct sched_msg *m = job->msg;
	struct queue_rcpt *qr;
	struct deliver_rcpt *r;
	const char *addr, *text;
	unsigned i, k, again = 0, settled = 0;

	for (i = 0; i < job->txn.nrcpt; i++) {
		r = &job->rcpt[i];
		if (r->again) {
			/* Kept at the front of the job, untouched, for a new
			 * transaction (as Postfix keeps them); the finished
			 * ones' indexes behind them, for the state write. */
			addr = r->address;
			k = job->idx[again];
			job->idx[again] = job->idx[i];
			job->idx[i] = k;
			memset(&job->rcpt[again], 0, sizeof(job->rcpt[0]));
			job->rcpt[again++].address = addr;
			continue;
		}
		qr = &m->info->rcpt[job->idx[i]];
		qr->status = r->result == DR_OK ? RS_SENT :
		    r->result == DR_PERM ? RS_BOUNCED : RS_DEFERRED;
		text = why != NULL ? why : r->reply;
		sched_reason(m, qr, r->dsn, text);
		sched_log(m, qr->address, job->txn.relay[0] ? job->txn.relay :
		    "none", r->dsn, queue_status_name(qr->status), text);
		settled |= r->result != DR_TEMP;
	}
	/* Another destination (or this one's next transaction) may take
	 * minutes yet: what this one settled is written now, or a restart
	 * meanwhile would send it again.  The last job's is sched_finish's. */
	if (settled && (again > 0 || m->jobs > 1))
		(void)sched_save(m, 1, job->idx + again,
		    job->txn.nrcpt - again);
	if (again > 0) {
		/* The same job, smaller: first in line, so the connection
		 * that just finished takes it next. */
		job->txn.nrcpt = again;
		sched_job_front(job);
		return;
	}
	sched_job_free(job);
	sched_msg_job_done(m);
}

/* The whole job failed before a transaction: one result for all.
 * reason is a literal or was made in a buffer of DELIVER_REASON_MAX
 * (deliver's, d->why), so it is logged whole as a reply is. */
static void
sched_job_fail(struct sched_job *job, enum deliver_result r,
    const char *relay, const char *dsn, const char *reason)
{
	unsigned i;

	for (i = 0; i < job->txn.nrcpt; i++) {
		job->rcpt[i].result = r;
		textfile_copy(job->rcpt[i].dsn, sizeof(job->rcpt[i].dsn),
		    dsn ? dsn : (r == DR_PERM ? "5.0.0" : "4.0.0"));
	}
	textfile_copy(job->txn.relay, sizeof(job->txn.relay),
	    relay ? relay : "");
	sched_job_result(job, reason ? reason : "delivery failed");
}

static void
sched_job_free(struct sched_job *job)
{
	struct sched_dest *d = job->dest;

	/* Its line moves on (sched_on_timer). */
	if (--d->jobs < sched_share && d->parked.head != NULL)
		sched_arm(0);
	if (job->txn.fd != -1)
		close(job->txn.fd);
	free(job->replies);
	free(job);
}

static void
sched_msg_job_done(struct sched_msg *m)
{
	if (--m->jobs == 0)
		sched_finish(m);
}

/*
 * Every job of this attempt is back.  Done recipients stay done; the
 * rest wait for the next attempt, or bounce once the lifetime is over.
 */
static void
sched_finish(struct sched_msg *m)
{
	struct queue_info *qi = m->info;
	uint64_t now = (uint64_t)loop_now_real();
	unsigned i, pending = 0;
	struct queue_writer *warn, *early;

	for (i = 0; i < qi->nrcpt; i++)
		if (qi->rcpt[i].status == RS_QUEUED ||
		    qi->rcpt[i].status == RS_DEFERRED)
			pending++;
	if (pending && now >= sched_expiry(qi)) {
		for (i = 0; i < qi->nrcpt; i++) {
			if (qi->rcpt[i].status != RS_QUEUED &&
			    qi->rcpt[i].status != RS_DEFERRED)
				continue;
			qi->rcpt[i].status = RS_BOUNCED;
			sched_expire_reason(m, &qi->rcpt[i]);
		}
		/* And Postfix's one line a message, which logwatch counts. */
		log_info(LP_QMGR, "%s: from=<%s>, status=expired, returned "
		    "to sender", qi->id, qi->sender);
		pending = 0;
	}
	if (pending) {
		qi->attempts++;
		qi->next_attempt = now + sched_backoff(qi->attempts);
		/* A new W record is worth a sync: losing it repeats the
		 * warning.  The notice is committed only once its W is on
		 * disk, so a state file that cannot be written does not
		 * send one at every deferral. */
		warn = sched_delay_warn(m, now);
		/* The bounced ones are in this write unmarked: their
		 * notified mark waits for the DSN's commit. */
		early = sched_bounce_early(m);
		if (sched_save(m, warn != NULL || sched_settled(qi), NULL,
		    0) == -1) {
			if (warn != NULL) {
				queue_writer_abort(warn);
				qi->warned = 0;
				warn = NULL;
			}
		}
		if (warn != NULL) {
			log_info(LP_BOUNCE, "%s: sender delay notification: %s",
			    m->id, queue_writer_id(warn));
			/* Not m: it goes idle now and may be gone when the
			 * commit runs. */
			queue_commit(warn, sched_on_warn_commit, NULL);
		}
		m->next_attempt = qi->next_attempt;
		if (early != NULL) {
			/* Even if the state write failed: the bounce is
			 * owed, and the mark cannot get ahead of it. */
			log_info(LP_BOUNCE, "%s: sender non-delivery "
			    "notification: %s", m->id, queue_writer_id(early));
			/* m stays active, its envelope unchanged, until the
			 * commit says which recipients to mark. */
			m->bouncing = 1;
			queue_commit(early, sched_on_early_commit, m);
			return;
		}
		sched_idle(m);
		return;
	}
	if (sched_unnotified(qi) && sched_bounce(m) == 0)
		return;		/* removed once the bounce is durable */
	sched_remove(m);
}

/* Bounced recipients no DSN has named yet. */
static unsigned
sched_unnotified(const struct queue_info *qi)
{
	unsigned i, n = 0;

	for (i = 0; i < qi->nrcpt; i++)
		if (qi->rcpt[i].status == RS_BOUNCED && !qi->rcpt[i].notified)
			n++;
	return n;
}

/* Keep the last deferral's words, say why we gave up (truncation ok),
 * and log it. */
static void
sched_expire_reason(const struct sched_msg *m, struct queue_rcpt *r)
{
	char text[QUEUE_REASON_MAX];
	const char *last = r->reason ? r->reason : "";

	textfile_fmt(text, sizeof(text), SCHED_EXPIRED "%us in the queue%s%s",
	    sched_conf->queue_lifetime, last[0] ? ": " : "", last);
	sched_keep(m, r, text);
	sched_log(m, r->address, "none", "4.4.7",
	    "expired, returned to sender", text);
}

/*
 * The reason kept in the state file: the remote's words as deliver.c
 * gave them ("250 2.0.0 Ok", "host mx[192.0.2.1] said: 550 5.1.1 ...
 * (in reply to RCPT TO command)"), or ours led by its enhanced code
 * ("5.1.10 ..."), so the bounce can say which (sched_reply_dsn).  Older
 * state files hold a refusal bare ("550 5.1.1 ..."), which reads the
 * same way.
 */
static void
sched_reason(const struct sched_msg *m, struct queue_rcpt *qr,
    const char *dsn, const char *p)
{
	char buf[QUEUE_REASON_MAX];
	const char *h;
	size_t n, hl;
	int more;

	/* A server's reply ("250 ..."; "250-..." for one of several
	 * lines) or refusal is kept as it came; our own words get the
	 * dsn first. */
	if (!((strlen(p) > 3 && reply_code(p, 4, 0, &more) != -1) ||
	    reply_said(p, &n, &h, &hl) != NULL)) {
		textfile_fmt(buf, sizeof(buf), "%s %s", dsn, p);
		p = buf;
	}
	sched_keep(m, qr, p);
}

/* qr's reason, cut to fit.  Without the memory for it the result still
 * stands and its log line, next, has the words; mailq, the state file
 * and a DSN go without them. */
static void
sched_keep(const struct sched_msg *m, struct queue_rcpt *qr, const char *text)
{
	if (queue_rcpt_reason(qr, text, QUEUE_REASON_MAX) == -1)
		log_warnx(LP_QMGR, "%s: out of memory", m->id);
}

/* Does the state file hold anything a crash must not lose? */
static int
sched_settled(const struct queue_info *qi)
{
	unsigned i;

	for (i = 0; i < qi->nrcpt; i++)
		if (qi->rcpt[i].status == RS_SENT ||
		    qi->rcpt[i].status == RS_BOUNCED)
			return 1;
	return 0;
}

/* When a message's queue_lifetime is over: what is left then bounces,
 * and a delay notice names it (Will-Retry-Until).  T is any 64-bit
 * number in a file edited by hand: one near 2^64 must not wrap to a
 * time long past, which bounced the message at its first deferral.  An
 * arrival before the clock was set counts from the new time (loop.c). */
static uint64_t
sched_expiry(const struct queue_info *qi)
{
	uint64_t t;

	return __builtin_add_overflow(loop_arrival(qi->arrival),
	    sched_conf->queue_lifetime,
	    &t) ? UINT64_MAX : t;
}

/* [1, 1.5) times retry_min * 2^(n-1) (dma's jitter), at most retry_max:
 * Postfix's maximal_backoff_time, a cap, which the jitter went past by
 * half.  At the cap the delays have no jitter left, and need none: the
 * first ones spread a burst of deferrals, and that spread is kept. */
uint64_t
sched_backoff(unsigned attempts)
{
	uint64_t b = sched_conf->retry_min, max = sched_conf->retry_max;
	unsigned i;

	for (i = 1; i < attempts && b < max; i++)
		b *= 2;
	if (b > max)
		b = max;
	b += b ? randombytes_uniform((uint32_t)(b / 2 + 1)) : 0;
	return b < max ? b : max;
}

/*
 * A finished DSN writer about m: BOUNCE_FAILED lists the bounced
 * recipients no earlier DSN named, BOUNCE_DELAYED those still pending.
 * NULL (logged by the caller) when memory or the queue fails.  The
 * caller checked that m may get one (not the null sender, not a DSN
 * itself).
 */
static struct queue_writer *
sched_dsn(struct sched_msg *m, enum bounce_kind kind)
{
	struct queue_info *qi = m->info;
	struct bounce_rcpt *br = NULL;
	char (*dsn)[16] = NULL;
	struct queue_writer *w = NULL;
	char *hdrs = NULL;
	char exp[ALIAS_EXPAND_MAX][512];
	const char *why;
	enum rcpt_status st;
	ssize_t got = 0;
	size_t hlen = 0, n = 0;
	unsigned i;
	int fd = -1, ok = 0, nexp, k;

	if ((br = calloc(qi->nrcpt, sizeof(*br))) == NULL ||
	    (dsn = calloc(qi->nrcpt, sizeof(*dsn))) == NULL ||
	    (hdrs = malloc(SCHED_HEADERS_MAX + 1)) == NULL)
		goto done;
	for (i = 0; i < qi->nrcpt; i++) {
		st = qi->rcpt[i].status;
		if (kind == BOUNCE_FAILED ? st != RS_BOUNCED ||
		    qi->rcpt[i].notified : st != RS_QUEUED && st != RS_DEFERRED)
			continue;
		br[n].address = qi->rcpt[i].address;
		br[n].diagnostic = qi->rcpt[i].reason;
		br[n].status = sched_reply_dsn(qi->rcpt[i].reason ?
		    qi->rcpt[i].reason : "", dsn[n], sizeof(dsn[n]));
		/* A deferral is a 4.x.x whatever the remote's words were. */
		if (kind == BOUNCE_DELAYED && br[n].status[0] != '4')
			br[n].status = "4.0.0";
		if (kind == BOUNCE_DELAYED)
			br[n].retry_until = (time_t)sched_expiry(qi);
		n++;
	}
	if ((fd = sched_open(m)) != -1)
		got = pread(fd, hdrs, SCHED_HEADERS_MAX + 1,
		    (off_t)qi->body_off);
	/* bounce_compose() copies up to the first empty line; the byte
	 * past its limit tells it a longer header was cut (it then says
	 * so and keeps whole lines only). */
	if (got > 0)
		hlen = (size_t)got < qi->size ? (size_t)got : (size_t)qi->size;
	/* The DSN quotes the original's headers, 8-bit ones only under
	 * SMTPUTF8 (bounce.c), and goes to its sender: a UTF-8 one needs
	 * SMTPUTF8 (RFC 6531 §3.4), which the original had. */
	w = queue_writer_new(NULL, "", QF_BOUNCE |
	    (qi->flags & (QF_8BITMIME | QF_SMTPUTF8)),
	    (uid_t)-1, kind == BOUNCE_FAILED ? "bounce" : "delay");
	if (w == NULL)
		goto done;
	/* To wherever mail for the sender goes, as at the SMTP door and as
	 * Postfix's bounce does: cron's root@origin reaches "root: admin@x",
	 * not a smarthost that refuses it (and that DSN, a bounce, is then
	 * dropped).  The load checked every alias, so expansion fails only
	 * for an odd sender (too long once qualified): it then gets the DSN
	 * as before, since a DSN is never to be lost. */
	if ((nexp = alias_expand(sched_aliases, qi->sender, sched_conf->origin,
	    exp, ALIAS_EXPAND_MAX, &why)) < 0) {
		log_warnx(LP_BOUNCE, "%s: <%s>: %s; DSN to the sender as "
		    "written", m->id, qi->sender, why);
		textfile_copy(exp[0], sizeof(exp[0]), qi->sender);
		nexp = 1;
	}
	for (k = 0; k < nexp; k++)
		if (queue_writer_rcpt(w, exp[k]) == -1)
			goto done;
	if (bounce_compose(w, kind, sched_conf->hostname, qi, br, n,
	    hdrs, hlen, loop_now_real()) == -1 || queue_writer_finish(w) == -1)
		goto done;
	ok = 1;
done:
	if (!ok && w) {
		queue_writer_abort(w);
		w = NULL;
	}
	free(br);
	free(dsn);
	free(hdrs);
	/* Read-only: a failed close loses nothing. */
	if (fd != -1)
		(void)close(fd);
	return w;
}

/*
 * A DSN for the bounced recipients, committed before the original goes.
 * Never bounce a bounce: the null sender and our own DSNs get a log line.
 * 0: the removal waits for the commit; -1: remove now.
 */
static int
sched_bounce(struct sched_msg *m)
{
	struct queue_info *qi = m->info;
	struct queue_writer *w;

	if (qi->sender[0] == '\0' || qi->flags & QF_BOUNCE) {
		log_info(LP_BOUNCE, "%s: undeliverable bounce discarded "
		    "(never bounce a bounce)", m->id);
		return -1;
	}
	/* This attempt's results first: a crash before the original is
	 * removed then repeats only the DSN, not the deliveries made.  It
	 * also keeps the bounced state, should the DSN fail, for the next
	 * attempt to bounce again. */
	(void)sched_save(m, 1, NULL, 0);
	if ((w = sched_dsn(m, BOUNCE_FAILED)) != NULL) {
		log_info(LP_BOUNCE, "%s: sender non-delivery notification: "
		    "%s", m->id, queue_writer_id(w));
		m->bouncing = 1;
		queue_commit(w, sched_on_bounce_commit, m);
		return 0;
	}
	log_warn(LP_BOUNCE, "%s: cannot create a bounce; retrying later",
	    m->id);
	sched_retry(m);
	return 0;
}

/*
 * Postfix's delay_warning_time: once m has waited that long with
 * recipients still pending, one "delayed" DSN to its sender, remembered
 * in the state file (W) so a restart does not repeat it.  Called with
 * this attempt's state about to be written; the W goes into that write,
 * before the DSN's commit runs, so a crash in between loses the warning
 * rather than sending two (it is advice; the mail itself is still
 * queued).  The notice, finished but not committed (the caller commits
 * it once the W is written), with qi->warned set; NULL for none.
 */
static struct queue_writer *
sched_delay_warn(struct sched_msg *m, uint64_t now)
{
	struct queue_info *qi = m->info;
	struct queue_writer *w;
	uint64_t t = loop_arrival(qi->arrival);

	if (sched_conf->delay_warning_time == 0 || qi->warned != 0 ||
	    qi->sender[0] == '\0' || qi->flags & QF_BOUNCE || now < t ||
	    now - t < sched_conf->delay_warning_time)
		return NULL;
	if ((w = sched_dsn(m, BOUNCE_DELAYED)) == NULL) {
		log_warn(LP_BOUNCE, "%s: cannot create a delay notification; "
		    "trying again at the next deferral", m->id);
		return NULL;
	}
	qi->warned = now;
	return w;
}

static void
sched_on_warn_commit(void *arg, const char *id, int ok)
{
	(void)arg;
	/* The original's W is written: the warning is not tried again. */
	if (!ok)
		log_warnx(LP_BOUNCE, "delay notification %s could not be "
		    "queued; dropped", id);
	/* Else the queue's listener schedules it. */
}

static void
sched_on_bounce_commit(void *arg, const char *id, int ok)
{
	struct sched_msg *m = arg;

	m->bouncing = 0;
	if (!ok) {
		log_warnx(LP_BOUNCE, "%s: bounce commit failed; retrying later",
		    m->id);
		(void)sched_save(m, 1, NULL, 0);
		sched_retry(m);
		return;
	}
	(void)id;	/* the queue's listener schedules it */
	sched_remove(m);
}

/*
 * The attempt ends with recipients still pending: a DSN now for those
 * that bounced and no DSN named yet, rather than days later when the
 * rest are done (or never, if the admin deletes the message first).  The
 * finished writer for the caller to commit, or NULL: nothing to say, a
 * bounce is never bounced (the final pass logs the discard), or the DSN
 * could not be made (the next attempt's end tries again).
 */
static struct queue_writer *
sched_bounce_early(struct sched_msg *m)
{
	struct queue_info *qi = m->info;
	struct queue_writer *w;

	if (sched_unnotified(qi) == 0 || qi->sender[0] == '\0' ||
	    qi->flags & QF_BOUNCE)
		return NULL;
	if ((w = sched_dsn(m, BOUNCE_FAILED)) == NULL)
		log_warn(LP_BOUNCE, "%s: cannot create a bounce; trying again "
		    "after the next attempt", m->id);
	return w;
}

/*
 * The early DSN is durable (or not): only now are its recipients marked,
 * the opposite order of the delay warning's W, since a lost bounce is
 * worse than a repeated one.  m was kept active, so its envelope still
 * says exactly whom the DSN named.
 */
static void
sched_on_early_commit(void *arg, const char *id, int ok)
{
	struct sched_msg *m = arg;
	struct queue_info *qi = m->info;
	unsigned i;

	m->bouncing = 0;
	if (!ok)
		log_warnx(LP_BOUNCE, "%s: bounce %s could not be queued; "
		    "trying again after the next attempt", m->id, id);
	else {
		for (i = 0; i < qi->nrcpt; i++)
			if (qi->rcpt[i].status == RS_BOUNCED)
				qi->rcpt[i].notified = 1;
		/* Lost, the mark only costs a second DSN. */
		(void)sched_save(m, 1, NULL, 0);
	}
	sched_idle(m);
}

/* The enhanced code of a reason (sched_reason()) or a default. */
static const char *
sched_reply_dsn(const char *reply, char *buf, size_t len)
{
	const char *code, *said, *h;
	size_t k, hl;

	/* Ours leads with it (sched_expire_reason); a remote's 5xx that
	 * says "expired after" somewhere is no expiry, and a 4.x.x would
	 * tell list managers it is worth sending again. */
	if (strlen(reply) >= sizeof(SCHED_EXPIRED) - 1 &&
	    memcmp(reply, SCHED_EXPIRED, sizeof(SCHED_EXPIRED) - 1) == 0)
		return "4.4.7";
	/* "host ... said: 550 5.1.1 ..." or "550 5.1.1 ..." (a remote's
	 * reply; "550 no" has none), else "5.1.10 ..." (ours). */
	if ((said = reply_said(reply, &k, &h, &hl)) != NULL)
		reply = said;
	if ((k = reply_enh_code(reply, &code)) == 0 &&
	    (k = reply_enh(reply)) > 0)
		code = reply;
	if (k > 0 && k < len) {
		memcpy(buf, code, k);
		buf[k] = '\0';
		return buf;
	}
	return "5.0.0";
}

/* The message is done: its file goes, then its memory. */
static void
sched_remove(struct sched_msg *m)
{
	if (m->info != NULL && m->info->rcpt != NULL) {
		if (queue_delete(m->id) == -1 && errno != ENOENT)
			log_warn(LP_QMGR, "%s: cannot remove", m->id);
		else
			log_info(LP_QMGR, "%s: removed", m->id);
	}
	sched_unlist(m);
	sched_msg_free(m);
	/* A slot is free: let the next due message in. */
	if (sched_starved)
		sched_arm(0);
}

/* Back to the idle list until next_attempt. */
static void
sched_idle(struct sched_msg *m)
{
	sched_park(m, &sched_idle_list);
	sched_arm(sched_starved ? 0 : m->next_attempt);
}

/* Out of the active set onto l, idle: its envelope is freed unless
 * it holds a state the disk does not. */
static void
sched_park(struct sched_msg *m, struct sched_list *l)
{
	sched_unlist(m);
	if (m->info != NULL && !m->unsaved) {
		queue_info_free(m->info);
		free(m->info);
		m->info = NULL;
	}
	sched_list_add(l, m);
}

/* Off the active or the idle list, whichever m is on. */
static void
sched_unlist(struct sched_msg *m)
{
	if (m->active) {
		sched_list_del(&sched_active_list, m);
		sched_nactive--;
		sched_nrcpt -= m->held;
		m->held = 0;
		m->active = 0;
	} else
		sched_list_del(&sched_idle_list, m);
}

/* Not now (memory, the disk): idle until retry_min from now. */
static void
sched_retry(struct sched_msg *m)
{
	m->next_attempt = (uint64_t)loop_now_real() + sched_conf->retry_min;
	sched_idle(m);
}

/* queue_update() of m's envelope, logged when it fails (-1); idx: only
 * these n recipients changed.  Appended only after a write of ours that
 * succeeded: after a start or a failure the file may end in a torn
 * append, which a later one would hide. */
static int
sched_save(struct sched_msg *m, int sync, const unsigned *idx, unsigned n)
{
	if (queue_update(m->info, sync, m->based ? idx : NULL, n) == -1) {
		/* Gone (ferry delete): the next load says so. */
		m->unsaved = errno != ENOENT;
		m->based = 0;
		log_warn(LP_QMGR, "%s: cannot save delivery state", m->id);
		return -1;
	}
	m->unsaved = 0;
	m->based = 1;
	return 0;
}

static void
sched_msg_free(struct sched_msg *m)
{
	if (m->info != NULL) {
		queue_info_free(m->info);
		free(m->info);
	}
	free(m);
}

/* Postfix's shape: "ID: to=<a@b>, relay=..., delay=0.4, dsn=2.0.0,
 * status=sent (250 ...)". */
static void
sched_log(const struct sched_msg *m, const char *to, const char *relay,
    const char *dsn, const char *status, const char *text)
{
	uint64_t now_us = loop_now_real_us();
	uint64_t arr_us = 0;
	int i;

	/* The ID starts with the arrival time in µs (queue.h). */
	for (i = 0; i < 13; i++)
		arr_us = arr_us << 4 | (uint64_t)(m->id[i] <= '9' ?
		    m->id[i] - '0' : m->id[i] - 'A' + 10);
	arr_us += (loop_arrival(arr_us / 1000000) - arr_us / 1000000) *
	    1000000;
	uint64_t delay_cs = now_us > arr_us ? (now_us - arr_us) / 10000 : 0;

	log_info(LP_SMTP, "%s: to=<%s>, relay=%s, delay=%llu.%02llu, "
	    "dsn=%s, status=%s (%s)", m->id, to, relay,
	    (unsigned long long)(delay_cs / 100),
	    (unsigned long long)(delay_cs % 100), dsn, status, text);
}
