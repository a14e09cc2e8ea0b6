/*
 * deliver.c - the outbound SMTP client: next-hop resolution, connect with
 * failover, and the client state machine (see deliver.h).  It owns one
 * connection at a time and knows nothing of queues or retries: it reports
 * per-recipient results and lets its owner (sched.c) decide.
 *
 * PIPELINING (RFC 2920) is two cursors over one transaction's commands
 * [MAIL, RCPT 1..n, DATA]: send_i is the next command to write, recv_i the
 * command whose reply comes next.  With PIPELINING all are written at
 * once; without it, one command is written when send_i == recv_i.
 * Invariants: recv_i <= send_i; every reply is matched to exactly one
 * command; the body is written only after DATA's 354 and only if some
 * RCPT was accepted (otherwise a 354 is answered with an empty message
 * that the server rejects for lack of recipients).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "deliver.h"
#include "dns.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "queue.h"

#define DELIVER_CONNECT_MS	30000
#define DELIVER_CMD_MS		300000	/* Postfix smtp_*_timeout */
#define DELIVER_DOT_MS		600000	/* smtp_data_done_timeout */
#define DELIVER_CHUNK		8192	/* body read size */
#define DELIVER_HIWAT		(16 * 1024)	/* refill below this */
#define DELIVER_LINE_MAX	1024	/* a reply line we accept */
#define DELIVER_PIPE_MAX	64	/* commands in flight with PIPELINING */

enum deliver_state {
	DS_RESOLVE_MX,
	DS_RESOLVE_ADDR,
	DS_CONNECT,
	DS_BANNER,
	DS_EHLO,
	DS_HELO,
	DS_READY,		/* greeted, between transactions */
	DS_RSET,
	DS_TXN,			/* MAIL/RCPT/DATA replies */
	DS_BODY,		/* writing the message */
	DS_DOT,			/* waiting for the end-of-data reply */
	DS_QUIT,
	DS_DONE,
};

#define EXT_PIPELINING	0x01u
#define EXT_SIZE	0x02u
#define EXT_8BITMIME	0x04u
#define EXT_SMTPUTF8	0x08u

struct deliver {
	const struct deliver_ops *ops;
	void *arg;
	enum deliver_state state;
	char host[DNS_NAME_MAX + 1];
	int literal;
	unsigned port;
	struct dns_req *dreq;
	struct dns_mx *mx;		/* allocated: DNS_MAX_MX */
	int nmx, imx;
	struct dns_addr addr[DNS_MAX_ADDR];
	int naddr, iaddr;
	char cur_ip[INET6_ADDRSTRLEN];
	struct loop_fd cfd;		/* while connecting */
	struct loop_timer ctimer;
	struct io *io;
	unsigned ext;
	uint64_t max_size;
	int used;			/* a transaction was attempted */
	int need_rset;
	char why_dsn[16];
	char why[DELIVER_REPLY_MAX];	/* last connection-level trouble */
	struct deliver_txn *txn;
	unsigned send_i, recv_i, accepted;
	int mail_failed;
	uint64_t body_done;
	int body_bol;
	int body_8bit_ok;
	int send_failed;		/* output over io's cap */
};

static void deliver_enter_state(struct deliver *, enum deliver_state);
static const char *deliver_strstate(enum deliver_state);
static void deliver_on_mx(void *, enum dns_status, int,
    const struct dns_mx *, int);
static void deliver_next_mx(struct deliver *);
static void deliver_on_addr(void *, enum dns_status, int,
    const struct dns_addr *, int);
static void deliver_next_addr(struct deliver *);
static void deliver_on_connect(struct loop_fd *, unsigned);
static void deliver_on_connect_timeout(struct loop_timer *);
static void deliver_connected(struct deliver *);
static void deliver_on_io(struct io *, enum io_event, void *);
static void deliver_reply(struct deliver *, int, int, const char *);
static void deliver_ehlo_line(struct deliver *, const char *);
static void deliver_start_txn(struct deliver *);
static void deliver_send_cmds(struct deliver *);
static void deliver_txn_reply(struct deliver *, int, const char *);
static int deliver_body(struct deliver *);
static void deliver_finish_txn(struct deliver *);
static void deliver_set_rcpt(struct deliver_rcpt *, int, const char *,
    const char *);
static void deliver_fail_open(struct deliver *, enum deliver_result,
    const char *, const char *);
static void deliver_lost(struct deliver *, const char *);
static void deliver_close(struct deliver *, enum deliver_result,
    const char *, const char *);
static void deliver_on_reap(struct loop_timer *);
static void deliver_fmt(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));
static void deliver_why(struct deliver *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static int deliver_has_8bit(const struct deliver_txn *);
static int deliver_addr_8bit(const char *);

static const struct config *deliver_conf;

static const char *const deliver_states[DS_DONE + 1] = {
	[DS_RESOLVE_MX] = "RESOLVE_MX", [DS_RESOLVE_ADDR] = "RESOLVE_ADDR",
	[DS_CONNECT] = "CONNECT", [DS_BANNER] = "BANNER", [DS_EHLO] = "EHLO",
	[DS_HELO] = "HELO", [DS_READY] = "READY", [DS_RSET] = "RSET",
	[DS_TXN] = "TXN", [DS_BODY] = "BODY", [DS_DOT] = "DOT",
	[DS_QUIT] = "QUIT", [DS_DONE] = "DONE",
};

/* What we were doing, for "lost connection ... while sending X". */
static const char *const deliver_phase[DS_DONE + 1] = {
	[DS_CONNECT] = "connecting", [DS_BANNER] = "receiving the initial "
	"server greeting", [DS_EHLO] = "performing the EHLO handshake",
	[DS_HELO] = "performing the HELO handshake", [DS_READY] = "idle",
	[DS_RSET] = "sending RSET", [DS_TXN] = "sending MAIL FROM",
	[DS_BODY] = "sending message body",
	/* Postfix's warning: the remote may have the message already. */
	[DS_DOT] = "sending end of data -- message may be sent more than once",
	[DS_QUIT] = "sending QUIT",
};

void
deliver_configure(const struct config *conf)
{
	deliver_conf = conf;
}

static const char *
deliver_strstate(enum deliver_state st)
{
	return deliver_states[st];
}

static void
deliver_enter_state(struct deliver *d, enum deliver_state st)
{
	log_trace(TRACE_DELIVER, "deliver %p %s: %s -> %s", (void *)d,
	    d->host, deliver_strstate(d->state), deliver_strstate(st));
	d->state = st;
}

struct deliver *
deliver_start(const char *host, int literal, unsigned port,
    const struct deliver_ops *ops, void *arg)
{
	struct deliver *d;
	struct dns_addr *a;
	struct sockaddr_in *s4;
	struct sockaddr_in6 *s6;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if ((d->mx = calloc(DNS_MAX_MX, sizeof(*d->mx))) == NULL) {
		free(d);
		return NULL;
	}
	d->ops = ops;
	d->arg = arg;
	d->literal = literal;
	d->port = port;
	d->cfd.fd = -1;
	d->cfd.cb = deliver_on_connect;
	d->ctimer.cb = deliver_on_connect_timeout;
	snprintf(d->host, sizeof(d->host), "%s", host);
	d->state = DS_RESOLVE_MX;
	if (literal) {
		/* [192.0.2.1] or [host]: no MX lookup (RFC 5321 §5.1). */
		d->nmx = 1;
		snprintf(d->mx[0].host, sizeof(d->mx[0].host), "%s", host);
		a = &d->addr[0];
		s4 = (struct sockaddr_in *)&a->ss;
		s6 = (struct sockaddr_in6 *)&a->ss;
		if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			a->len = sizeof(*s4);
			d->naddr = 1;
		} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			a->len = sizeof(*s6);
			d->naddr = 1;
		}
		if (d->naddr) {
			d->imx = 1;
			deliver_enter_state(d, DS_RESOLVE_ADDR);
		}
		/* Start from the loop: callbacks never run inside our caller. */
		loop_timer_set(&d->ctimer, 0);
		return d;
	}
	d->dreq = dns_query_mx(host, deliver_on_mx, d);
	if (d->dreq == NULL) {
		free(d->mx);
		free(d);
		return NULL;
	}
	return d;
}

void
deliver_abort(struct deliver *d)
{
	if (d->dreq)
		dns_cancel(d->dreq);
	if (d->cfd.fd != -1) {
		loop_fd_del(&d->cfd);
		close(d->cfd.fd);
	}
	loop_timer_cancel(&d->ctimer);
	io_free(d->io);
	free(d->mx);
	free(d);
}

static void
deliver_on_mx(void *arg, enum dns_status st, int secure,
    const struct dns_mx *mx, int n)
{
	struct deliver *d = arg;

	(void)secure;
	d->dreq = NULL;
	switch (st) {
	case DNS_OK:
		d->nmx = n < DNS_MAX_MX ? n : DNS_MAX_MX;
		memcpy(d->mx, mx, (size_t)d->nmx * sizeof(*mx));
		break;
	case DNS_NODATA:
		/* §5.1: no MX, the domain itself is the implicit MX. */
		d->nmx = 1;
		d->mx[0].pref = 0;
		snprintf(d->mx[0].host, sizeof(d->mx[0].host), "%s", d->host);
		break;
	case DNS_NULLMX:
		deliver_close(d, DR_PERM, "5.1.10", "Domain does not accept "
		    "mail (null MX)");
		return;
	case DNS_NXDOMAIN:
		deliver_why(d, "Host or domain name not "
		    "found. Name service error for name=%s type=MX: Host not "
		    "found", d->host);
		deliver_close(d, DR_PERM, "5.1.2", d->why);
		return;
	case DNS_TEMPFAIL:
	default:
		deliver_why(d, "Host or domain name not "
		    "found. Name service error for name=%s type=MX: Host not "
		    "found, try again", d->host);
		deliver_close(d, DR_TEMP, "4.4.3", d->why);
		return;
	}
	d->imx = 0;
	deliver_next_mx(d);
}

/* Resolve the next MX host's addresses, or give up. */
static void
deliver_next_mx(struct deliver *d)
{
	if (d->imx >= d->nmx) {
		if (d->why[0] == '\0')
			deliver_why(d, "no usable mail "
			    "exchanger for %s", d->host);
		deliver_close(d, DR_TEMP, d->why_dsn[0] ? d->why_dsn : "4.4.1",
		    d->why);
		return;
	}
	deliver_enter_state(d, DS_RESOLVE_ADDR);
	d->dreq = dns_query_addr(d->mx[d->imx].host, deliver_on_addr, d);
	d->imx++;
	if (d->dreq == NULL) {
		deliver_why(d, "cannot look up %s",
		    d->mx[d->imx - 1].host);
		deliver_next_mx(d);
	}
}

static void
deliver_on_addr(void *arg, enum dns_status st, int secure,
    const struct dns_addr *a, int n)
{
	struct deliver *d = arg;

	(void)secure;
	d->dreq = NULL;
	if (st != DNS_OK || n == 0) {
		deliver_why(d, "Host or domain name not "
		    "found. Name service error for name=%s type=A: %s",
		    d->mx[d->imx - 1].host, st == DNS_TEMPFAIL ?
		    "Host not found, try again" : "Host not found");
		strcpy(d->why_dsn, "4.4.3");
		deliver_next_mx(d);
		return;
	}
	d->naddr = n < DNS_MAX_ADDR ? n : DNS_MAX_ADDR;
	memcpy(d->addr, a, (size_t)d->naddr * sizeof(*a));
	d->iaddr = 0;
	deliver_next_addr(d);
}

static void
deliver_next_addr(struct deliver *d)
{
	struct dns_addr *a;
	struct sockaddr_in *s4;
	int fd, one = 1;

	while (d->iaddr < d->naddr) {
		a = &d->addr[d->iaddr++];
		s4 = (struct sockaddr_in *)&a->ss;
		/* sin_port and sin6_port share their offset. */
		s4->sin_port = htons((uint16_t)d->port);
		if (a->ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6,
			    &((struct sockaddr_in6 *)&a->ss)->sin6_addr,
			    d->cur_ip, sizeof(d->cur_ip));
		else
			inet_ntop(AF_INET, &s4->sin_addr, d->cur_ip,
			    sizeof(d->cur_ip));
		fd = socket(a->ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			deliver_why(d, "connect to %s[%s]:%u: "
			    "%s", d->mx[d->imx - 1].host, d->cur_ip, d->port,
			    strerror(errno));
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		if (connect(fd, (struct sockaddr *)&a->ss, a->len) == -1 &&
		    errno != EINPROGRESS) {
			deliver_why(d, "connect to %s[%s]:%u: "
			    "%s", d->mx[d->imx - 1].host, d->cur_ip, d->port,
			    strerror(errno));
			close(fd);
			continue;
		}
		d->cfd.fd = fd;
		if (loop_fd_add(&d->cfd, LOOP_WRITE) == -1) {
			close(fd);
			d->cfd.fd = -1;
			continue;
		}
		deliver_enter_state(d, DS_CONNECT);
		loop_timer_set(&d->ctimer, DELIVER_CONNECT_MS);
		return;
	}
	strcpy(d->why_dsn, "4.4.1");
	deliver_next_mx(d);
}

static void
deliver_on_connect_timeout(struct loop_timer *t)
{
	struct deliver *d = container_of(t, struct deliver, ctimer);

	if (d->state == DS_RESOLVE_ADDR) {
		/* The deferred start of a literal next hop. */
		if (d->naddr)
			deliver_next_addr(d);
		else
			deliver_next_mx(d);
		return;
	}
	if (d->state == DS_RESOLVE_MX) {
		d->imx = 0;
		deliver_next_mx(d);
		return;
	}
	loop_fd_del(&d->cfd);
	close(d->cfd.fd);
	d->cfd.fd = -1;
	deliver_why(d, "connect to %s[%s]:%u: Connection "
	    "timed out", d->mx[d->imx - 1].host, d->cur_ip, d->port);
	deliver_next_addr(d);
}

static void
deliver_on_connect(struct loop_fd *lfd, unsigned events)
{
	struct deliver *d = container_of(lfd, struct deliver, cfd);
	int err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	loop_fd_del(&d->cfd);
	loop_timer_cancel(&d->ctimer);
	if (getsockopt(lfd->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		deliver_why(d, "connect to %s[%s]:%u: %s",
		    d->mx[d->imx - 1].host, d->cur_ip, d->port, strerror(err));
		close(lfd->fd);
		d->cfd.fd = -1;
		deliver_next_addr(d);
		return;
	}
	deliver_connected(d);
}

static void
deliver_connected(struct deliver *d)
{
	int fd = d->cfd.fd;

	d->cfd.fd = -1;
	if ((d->io = io_new(fd, deliver_on_io, d)) == NULL) {
		close(fd);
		deliver_why(d, "out of memory");
		deliver_next_addr(d);
		return;
	}
	io_set_timeout(d->io, DELIVER_CMD_MS);
	d->ext = 0;
	d->max_size = 0;
	deliver_enter_state(d, DS_BANNER);
}

/* --- replies --- */

static void
deliver_on_io(struct io *io, enum io_event ev, void *arg)
{
	struct deliver *d = arg;
	char line[DELIVER_LINE_MAX];
	const char *buf, *lf;
	size_t len, n;
	int code;

	(void)io;
	switch (ev) {
	case IO_DRAINED:
		if (d->state == DS_BODY)
			(void)deliver_body(d);
		return;
	case IO_EOF:
	case IO_ERR:
		deliver_lost(d, "lost connection");
		return;
	case IO_TIMEOUT:
		deliver_lost(d, "conversation timed out");
		return;
	case IO_TLS:	/* the TLS client's (issue 4) */
	case IO_IN:
		break;
	}
	for (;;) {
		buf = io_in(d->io, &len);
		if ((lf = memchr(buf, '\n', len)) == NULL) {
			if (io_in_full(d->io)) {
				deliver_lost(d, "reply line too long");
				return;
			}
			return;
		}
		n = (size_t)(lf - buf) + 1;
		if (n - 1 >= sizeof(line))
			n = sizeof(line);	/* keep the head of a long line */
		memcpy(line, buf, n - 1);
		line[n - 1] = '\0';
		io_consume(d->io, (size_t)(lf - buf) + 1);
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (len < 3 || line[0] < '2' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
		    line[2] > '9' || (len > 3 && line[3] != ' ' &&
		    line[3] != '-')) {
			deliver_lost(d, "malformed reply");
			return;
		}
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		log_trace(TRACE_DELIVER, "deliver %p: < %s", (void *)d, line);
		deliver_reply(d, code, len > 3 && line[3] == '-',
		    len > 4 ? line + 4 : "");
		/* Closed (d lives until the next turn) or reconnecting. */
		if (d->state == DS_DONE || d->io == NULL)
			return;
	}
}

static void
deliver_send(struct deliver *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
deliver_send(struct deliver *d, const char *fmt, ...)
{
	char buf[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf) &&
	    io_write(d->io, buf, (size_t)n) == -1)
		d->send_failed = 1;	/* deliver_reply() gives up */
	log_trace(TRACE_DELIVER, "deliver %p: > %.*s", (void *)d,
	    n > 2 ? n - 2 : 0, buf);
}

/*
 * One reply line; cont says more lines follow.  Multi-line replies are
 * acted on at their last line (the EHLO keywords are read line by line).
 */
static void
deliver_reply(struct deliver *d, int code, int cont, const char *text)
{
	char reply[DELIVER_REPLY_MAX];

	if (d->state == DS_EHLO && code == 250 && cont)
		deliver_ehlo_line(d, text);
	if (cont)
		return;
	deliver_fmt(reply, sizeof(reply), "%d %s", code, text);
	if (code == 421 && d->state != DS_QUIT) {
		deliver_lost(d, reply);
		return;
	}
	switch (d->state) {
	case DS_BANNER:
		if (code != 220) {
			deliver_why(d, "host %s[%s] refused to "
			    "talk to me: %s", d->mx[d->imx - 1].host, d->cur_ip,
			    reply);
			io_free(d->io);
			d->io = NULL;
			deliver_next_addr(d);
			return;
		}
		deliver_enter_state(d, DS_EHLO);
		deliver_send(d, "EHLO %s\r\n", deliver_conf->hostname);
		break;
	case DS_EHLO:
		if (code == 250) {
			deliver_ehlo_line(d, text);
			deliver_start_txn(d);
		} else {
			deliver_enter_state(d, DS_HELO);
			deliver_send(d, "HELO %s\r\n", deliver_conf->hostname);
		}
		break;
	case DS_HELO:
		if (code != 250) {
			deliver_why(d, "host %s[%s] refused "
			    "HELO: %s", d->mx[d->imx - 1].host, d->cur_ip,
			    reply);
			io_free(d->io);
			d->io = NULL;
			deliver_next_addr(d);
			return;
		}
		d->ext = 0;
		deliver_start_txn(d);
		break;
	case DS_RSET:
		if (code / 100 != 2) {
			deliver_lost(d, reply);
			return;
		}
		d->need_rset = 0;
		deliver_start_txn(d);
		break;
	case DS_TXN:
		deliver_txn_reply(d, code, reply);
		break;
	case DS_DOT:
		for (unsigned i = 0; i < d->txn->nrcpt; i++)
			if (d->txn->rcpt[i].dsn[0] == '\0')
				deliver_set_rcpt(&d->txn->rcpt[i], code, reply,
				    NULL);
		deliver_finish_txn(d);
		break;
	case DS_QUIT:
		deliver_close(d, DR_OK, NULL, NULL);
		break;
	default:
		deliver_lost(d, "unexpected reply");
		break;
	}
	if (d->state != DS_DONE && d->io != NULL) {
		if (d->send_failed) {
			d->send_failed = 0;
			deliver_lost(d, "output buffer full");
			return;
		}
		io_flush(d->io);
	}
}

static void
deliver_ehlo_line(struct deliver *d, const char *kw)
{
	if (strncasecmp(kw, "PIPELINING", 10) == 0 &&
	    (kw[10] == '\0' || kw[10] == ' '))
		d->ext |= EXT_PIPELINING;
	else if (strncasecmp(kw, "8BITMIME", 8) == 0)
		d->ext |= EXT_8BITMIME;
	else if (strncasecmp(kw, "SMTPUTF8", 8) == 0)
		d->ext |= EXT_SMTPUTF8;
	else if (strncasecmp(kw, "SIZE", 4) == 0 &&
	    (kw[4] == '\0' || kw[4] == ' ')) {
		d->ext |= EXT_SIZE;
		d->max_size = kw[4] ? strtoull(kw + 5, NULL, 10) : 0;
	}
}

/* --- transactions --- */

/* Result from a reply: 2xx ok, 4xx temporary, 5xx permanent. */
static void
deliver_set_rcpt(struct deliver_rcpt *r, int code, const char *reply,
    const char *dsn)
{
	const char *t;

	if (r == NULL)
		return;
	r->result = code / 100 == 2 ? DR_OK : code / 100 == 5 ? DR_PERM :
	    DR_TEMP;
	snprintf(r->reply, sizeof(r->reply), "%s", reply);
	if (dsn == NULL && reply != NULL) {
		/* "250 2.1.5 Ok": take the enhanced code if it is there. */
		t = strchr(reply, ' ');
		if (t && t[1] >= '2' && t[1] <= '5' && t[2] == '.' &&
		    t[1] == reply[0]) {
			size_t k = strcspn(t + 1, " ");

			if (k < sizeof(r->dsn)) {
				memcpy(r->dsn, t + 1, k);
				r->dsn[k] = '\0';
				return;
			}
		}
		snprintf(r->dsn, sizeof(r->dsn), "%c.0.0", reply[0]);
		return;
	}
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn ? dsn : "4.0.0");
}

/* Ask the owner for work; nothing left: QUIT. */
static void
deliver_start_txn(struct deliver *d)
{
	struct deliver_txn *t;
	unsigned i;
	char reason[DELIVER_REPLY_MAX];

	deliver_enter_state(d, DS_READY);
	if ((t = d->txn) == NULL && (t = d->ops->next(d->arg, d)) == NULL) {
		deliver_enter_state(d, DS_QUIT);
		deliver_send(d, "QUIT\r\n");
		io_flush(d->io);
		return;
	}
	d->txn = t;
	d->used = 1;
	deliver_fmt(t->relay, sizeof(t->relay), "%s[%s]:%u",
	    d->mx[d->imx - 1].host, d->cur_ip, d->port);
	for (i = 0; i < t->nrcpt; i++)
		t->rcpt[i].dsn[0] = '\0';
	/* A reused connection starts clean: RSET between transactions.
	 * The transaction waits in d->txn, so a lost RSET defers it. */
	if (d->need_rset) {
		deliver_enter_state(d, DS_RSET);
		deliver_send(d, "RSET\r\n");
		return;
	}
	/* Refuse rather than corrupt (RFC 6152, RFC 6531). */
	if (d->ext & EXT_SIZE && d->max_size && t->size > d->max_size) {
		deliver_fmt(reason, sizeof(reason), "message size %llu exceeds "
		    "size limit %llu of server %s", (unsigned long long)t->size,
		    (unsigned long long)d->max_size, t->relay);
		for (i = 0; i < t->nrcpt; i++)
			deliver_set_rcpt(&t->rcpt[i], 552, reason, "5.3.4");
		deliver_finish_txn(d);
		return;
	}
	if (t->flags & QF_8BITMIME && !(d->ext & EXT_8BITMIME) &&
	    deliver_has_8bit(t)) {
		deliver_fmt(reason, sizeof(reason), "host %s does not support "
		    "8BITMIME and the message has 8-bit content", t->relay);
		for (i = 0; i < t->nrcpt; i++)
			deliver_set_rcpt(&t->rcpt[i], 554, reason, "5.6.3");
		deliver_finish_txn(d);
		return;
	}
	if (t->flags & QF_SMTPUTF8 && !(d->ext & EXT_SMTPUTF8)) {
		int eight = deliver_addr_8bit(t->sender);

		for (i = 0; i < t->nrcpt; i++)
			eight |= deliver_addr_8bit(t->rcpt[i].address);
		if (eight) {
			deliver_fmt(reason, sizeof(reason), "host %s does not "
			    "support SMTPUTF8", t->relay);
			for (i = 0; i < t->nrcpt; i++)
				deliver_set_rcpt(&t->rcpt[i], 553, reason,
				    "5.6.7");
			deliver_finish_txn(d);
			return;
		}
	}
	d->send_i = d->recv_i = d->accepted = 0;
	d->mail_failed = 0;
	d->need_rset = 1;	/* for the next one on this connection */
	deliver_enter_state(d, DS_TXN);
	deliver_send_cmds(d);
}

/* Write commands [send_i ..]: all of them with PIPELINING, else one. */
static void
deliver_send_cmds(struct deliver *d)
{
	struct deliver_txn *t = d->txn;
	unsigned last = t->nrcpt + 1;	/* DATA */
	char size[40] = "";

	while (d->send_i <= last) {
		if (!(d->ext & EXT_PIPELINING) && d->send_i != d->recv_i)
			break;
		/* A window, so a thousand recipients never overrun io. */
		if (d->send_i - d->recv_i >= DELIVER_PIPE_MAX)
			break;
		if (d->send_i == 0) {
			if (d->ext & EXT_SIZE)
				snprintf(size, sizeof(size), " SIZE=%llu",
				    (unsigned long long)t->size);
			deliver_send(d, "MAIL FROM:<%s>%s%s%s\r\n", t->sender,
			    size, (t->flags & QF_8BITMIME &&
			    d->ext & EXT_8BITMIME) ? " BODY=8BITMIME" : "",
			    (t->flags & QF_SMTPUTF8 &&
			    d->ext & EXT_SMTPUTF8) ? " SMTPUTF8" : "");
		} else if (d->send_i < last)
			deliver_send(d, "RCPT TO:<%s>\r\n",
			    t->rcpt[d->send_i - 1].address);
		else
			deliver_send(d, "DATA\r\n");
		d->send_i++;
	}
	io_flush(d->io);
}

static void
deliver_txn_reply(struct deliver *d, int code, const char *reply)
{
	struct deliver_txn *t = d->txn;
	unsigned last = t->nrcpt + 1, i;

	/* A reply to nothing we sent: out of step, trust none of it. */
	if (d->recv_i >= d->send_i) {
		deliver_lost(d, "reply out of step with our commands");
		return;
	}
	i = d->recv_i++;
	if (i == 0) {
		if (code / 100 != 2) {
			d->mail_failed = 1;
			for (i = 0; i < t->nrcpt; i++)
				deliver_set_rcpt(&t->rcpt[i], code, reply, NULL);
		}
	} else if (i < last) {
		if (!d->mail_failed && code / 100 == 2)
			d->accepted++;
		else if (!d->mail_failed)
			deliver_set_rcpt(&t->rcpt[i - 1], code, reply, NULL);
	} else {
		/* DATA */
		if (code == 354 && d->accepted > 0 && !d->mail_failed) {
			io_set_timeout(d->io, DELIVER_CMD_MS);
			d->body_done = 0;
			d->body_bol = 1;
			deliver_enter_state(d, DS_BODY);
			(void)deliver_body(d);
			return;
		}
		/* DATA can only start (354) or fail (4xx/5xx): a 2xx here
		 * would mark a message sent whose body never left. */
		if (code / 100 == 2 || (code / 100 == 3 && code != 354)) {
			deliver_lost(d, "unexpected reply to DATA");
			return;
		}
		if (code == 354) {
			/* Nobody to send to: end the empty message. */
			deliver_send(d, ".\r\n");
			d->need_rset = 1;
		}
		if (d->accepted > 0 && !d->mail_failed)
			for (i = 0; i < t->nrcpt; i++)
				if (t->rcpt[i].dsn[0] == '\0')
					deliver_set_rcpt(&t->rcpt[i], code,
					    reply, NULL);
		d->need_rset = 1;
		if (code == 354) {
			/* Its reply ends up in DS_RSET's place: wait for it
			 * in DS_DOT with every recipient already decided. */
			deliver_enter_state(d, DS_DOT);
			return;
		}
		deliver_finish_txn(d);
		return;
	}
	/* Without PIPELINING: stop early when nothing can come of it. */
	if (!(d->ext & EXT_PIPELINING)) {
		if (d->mail_failed || (d->recv_i == last && d->accepted == 0)) {
			d->need_rset = 1;
			deliver_finish_txn(d);
			return;
		}
	}
	deliver_send_cmds(d);	/* the next one, or the window's next */
}

/*
 * Fill the output from the queue file up to DELIVER_HIWAT, dot-stuffing
 * (RFC 5321 §4.5.2); called again when the output drains.  -1: gone.
 */
static int
deliver_body(struct deliver *d)
{
	struct deliver_txn *t = d->txn;
	char in[DELIVER_CHUNK], out[2 * DELIVER_CHUNK + 8];
	size_t n, o, i;
	ssize_t r;

	/* Progress, not the whole transfer, is what the timeout bounds. */
	io_set_timeout(d->io, DELIVER_CMD_MS);
	while (d->body_done < t->size) {
		if (io_queued(d->io) >= DELIVER_HIWAT) {
			/* Written at once: go on.  Blocked: IO_DRAINED
			 * calls again. */
			io_flush(d->io);
			if (io_queued(d->io) > 0)
				return 0;
		}
		n = t->size - d->body_done < sizeof(in) ?
		    (size_t)(t->size - d->body_done) : sizeof(in);
		r = pread(t->fd, in, n, (off_t)(t->body_off + d->body_done));
		if (r <= 0) {
			log_warn(LP_SMTP, "%s: read queue file", t->id);
			deliver_lost(d, "queue file read error");
			return -1;
		}
		for (i = 0, o = 0; i < (size_t)r; i++) {
			if (d->body_bol && in[i] == '.')
				out[o++] = '.';
			out[o++] = in[i];
			d->body_bol = in[i] == '\n';
		}
		d->body_done += (uint64_t)r;
		if (io_write(d->io, out, o) == -1) {
			deliver_lost(d, "out of memory");
			return -1;
		}
	}
	deliver_send(d, "%s.\r\n", d->body_bol ? "" : "\r\n");
	io_set_timeout(d->io, DELIVER_DOT_MS);
	deliver_enter_state(d, DS_DOT);
	io_flush(d->io);
	return 0;
}

static void
deliver_finish_txn(struct deliver *d)
{
	struct deliver_txn *t = d->txn;

	d->txn = NULL;
	io_set_timeout(d->io, DELIVER_CMD_MS);
	d->ops->done(d->arg, d, t);
	deliver_start_txn(d);
}

/* --- the end --- */

/* The connection broke: the transaction in progress is deferred. */
static void
deliver_lost(struct deliver *d, const char *what)
{
	char reason[DELIVER_REPLY_MAX];
	const char *phase = deliver_phase[d->state] ? deliver_phase[d->state] :
	    "talking";

	/* Within a transaction, name the command whose reply was due. */
	if (d->state == DS_TXN && d->txn != NULL)
		phase = d->recv_i == 0 ? "sending MAIL FROM" :
		    d->recv_i <= d->txn->nrcpt ? "sending RCPT TO" :
		    "sending DATA";
	unsigned i;

	if (strchr(what, ' ') && what[0] >= '2' && what[0] <= '5')
		deliver_fmt(reason, sizeof(reason), "host %s[%s] said: %s (while "
		    "%s)", d->mx[d->imx - 1].host, d->cur_ip, what, phase);
	else
		deliver_fmt(reason, sizeof(reason), "%s with %s[%s] while %s",
		    what, d->mx[d->imx - 1].host, d->cur_ip, phase);
	if (d->txn) {
		for (i = 0; i < d->txn->nrcpt; i++)
			if (d->txn->rcpt[i].dsn[0] == '\0')
				deliver_set_rcpt(&d->txn->rcpt[i], 451, reason,
				    "4.4.2");
		deliver_fail_open(d, DR_TEMP, "4.4.2", reason);
		return;
	}
	if (d->state == DS_QUIT) {
		deliver_close(d, DR_OK, NULL, NULL);
		return;
	}
	if (!d->used && d->state <= DS_HELO) {
		/* Greeting trouble: like a failed connect, try the next. */
		deliver_why(d, "%s", reason);
		io_free(d->io);
		d->io = NULL;
		deliver_next_addr(d);
		return;
	}
	deliver_close(d, d->used ? DR_OK : DR_TEMP, "4.4.2", reason);
}

/* Report the open transaction, then close. */
static void
deliver_fail_open(struct deliver *d, enum deliver_result r, const char *dsn,
    const char *reason)
{
	struct deliver_txn *t = d->txn;

	d->txn = NULL;
	d->ops->done(d->arg, d, t);
	deliver_close(d, r, dsn, reason);
}

/*
 * Tell the owner, then free on the next loop turn: we may be deep inside
 * our own io or DNS callback, which still looks at d->state and d->io.
 */
static void
deliver_close(struct deliver *d, enum deliver_result r, const char *dsn,
    const char *reason)
{
	deliver_enter_state(d, DS_DONE);
	if (d->used && r != DR_OK)
		r = DR_OK;	/* it worked for a while: not a dead host */
	d->ops->closed(d->arg, d, r, dsn, reason);
	io_free(d->io);
	d->io = NULL;
	d->ctimer.cb = deliver_on_reap;
	loop_timer_set(&d->ctimer, 0);
}

static void
deliver_on_reap(struct loop_timer *t)
{
	deliver_abort(container_of(t, struct deliver, ctimer));
}

/* --- helpers --- */

/* Remember the latest trouble, for the log line if every hop fails.
 * Truncation is fine: it is a diagnostic. */
static void
deliver_why(struct deliver *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
}

static void
deliver_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static int
deliver_has_8bit(const struct deliver_txn *t)
{
	unsigned char buf[DELIVER_CHUNK];
	uint64_t off = 0;
	ssize_t r;
	size_t n, i;

	while (off < t->size) {
		n = t->size - off < sizeof(buf) ? (size_t)(t->size - off) :
		    sizeof(buf);
		r = pread(t->fd, buf, n, (off_t)(t->body_off + off));
		if (r <= 0)
			return 1;	/* cannot tell: do not risk it */
		for (i = 0; i < (size_t)r; i++)
			if (buf[i] & 0x80)
				return 1;
		off += (uint64_t)r;
	}
	return 0;
}

static int
deliver_addr_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s & 0x80)
			return 1;
	return 0;
}

void
deliver_set_tls(struct tls_client *c)
{
	(void)c;
}
