/*
 * deliver.c - the outbound SMTP client: next-hop resolution, connect with
 * failover, and the client state machine (see deliver.h).  It owns one
 * connection at a time and knows nothing of queues or retries: it reports
 * per-recipient results and lets its owner (sched.c) decide.
 *
 * PIPELINING (RFC 2920) is two cursors over one transaction's commands
 * [MAIL, RCPT 1..n, DATA, RSET]: send_i is the next command to write,
 * recv_i the command whose reply comes next.  RSET, alone, ends one
 * that sends no body, and its reply confirms the others' replies
 * (deliver_txn_rset()).  With PIPELINING all but RSET are written at
 * once; without it, one command is written when send_i == recv_i.
 * Invariants: recv_i <= send_i; every reply is matched to exactly one
 * command; the body is written only after DATA's 354 and only if some
 * RCPT was accepted (otherwise a 354 is answered with an empty message
 * that the server rejects for lack of recipients).
 *
 * TLS (RFC 3207) and AUTH (RFC 4954) sit between the greeting and the
 * first transaction: BANNER, EHLO, [STARTTLS, TLS, EHLO again], [AUTH],
 * READY.  With smarthost_tls = smtps the handshake comes first and the
 * banner is read inside TLS.  The level (none, may, encrypt, dane,
 * dane-only, fingerprint, verify, secure) decides what a missing
 * STARTTLS, a failed handshake or a certificate that does not verify
 * means; every check is made before the owner is asked for a
 * transaction, so nothing of a message leaves before the policy is
 * satisfied.  The level is smarthost_tls or outbound_tls unless the
 * tls_policy file has an entry for the smarthost's host or the
 * recipient domain (deliver_level()).  fingerprint pins the leaf
 * certificate or its key by SHA-256, ignoring names and dates as
 * Postfix's level does.  verify wants a chain to ca_file naming the MX
 * host; secure one naming the next-hop domain or a name below it (a
 * [host] next hop: the host), as Postfix's smtp_tls_verify_cert_match
 * and smtp_tls_secure_cert_match.  The smarthost's password leaves only
 * inside TLS, whatever the level, and never after a reload that came
 * since the connection started.
 *
 * DANE (RFC 7672, Postfix's dane and dane-only) is decided per MX host,
 * after its address lookup: a DNSSEC-secure MX RRset (for the implicit
 * MX, the secure address answer) asks for _PORT._tcp.HOST TLSA.  Secure
 * usable records make the host's level TLS_DANE: TLS mandatory, no
 * session resumption (a resumed session shows no chain), SNI the MX host,
 * and the chain matched by dane_match() during the handshake; secure but
 * only unusable records make it TLS_ENCRYPT.  A failed TLSA lookup defers
 * the host; no (secure) TLSA makes dane behave as may and dane-only defer.
 * A host whose name is an alias, reached through a CNAME chain that
 * validated from end to end, has its TLSA records looked for at the
 * chain's end first, then at its own name (dane_base_*(), RFC 7672
 * section 2.2.3); the name they came from is the SNI and, with the host
 * and next-hop names, what a DANE-TA certificate may name.
 * A smarthost given by name gets the same treatment: "host" through its
 * MX lookup, "[host]" through its own address answer (as an implicit
 * MX), with _PORT._tcp TLSA for the smarthost's port.  An address
 * literal has no name to look up TLSA for: dane is may there and
 * dane-only defers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "auth.h"
#include "config.h"
#include "dane.h"
#include "deliver.h"
#include "dns.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "queue.h"
#include "reply.h"
#include "textfile.h"
#include "tls.h"

#define DELIVER_CONNECT_MS	30000
/* A deadline for a whole reply, from its command (or the reply before
 * it) to its last line, not for each read: Postfix's smtp_*_timeout
 * with smtp_per_request_deadline = yes, so a server that trickles a
 * byte at a time cannot hold the connection and its message. */
#define DELIVER_CMD_MS		300000
#define DELIVER_DOT_MS		600000	/* smtp_data_done_timeout */
/* The most lines one reply may have.  RFC 5321 sets no limit (nor does
 * Postfix, which caps only what it keeps); with one, a reply that never
 * ends is cut off at once, not at the deadline.  EHLO replies run to
 * about 15 lines. */
#define DELIVER_REPLY_LINES	100
/* Postfix's smtp_mx_address_limit and smtp_mx_session_limit: what one
 * attempt may try before it defers.  Each address has the full
 * deadlines, so a domain of 16 MX hosts of 16 addresses each, all
 * answering slowly, held a delivery slot for days. */
#define DELIVER_ADDR_LIMIT	5
#define DELIVER_SESSION_LIMIT	2
#define DELIVER_CHUNK		8192	/* body read size */
#define DELIVER_HIWAT		(16 * 1024)	/* refill below this */
#define DELIVER_PIPE_MAX	64	/* commands in flight with PIPELINING */
#define DELIVER_TLS_MS		300000	/* Postfix smtp_starttls_timeout */
#define DELIVER_SEND_MAX	1200	/* one command; AUTH PLAIN's is the
					   longest: 11 + 1020 + 2 */
#define DELIVER_ERR_MAX		512	/* smarthost_auth load error */
/* An AUTH response, base64 with its NUL: it fits a line after "AUTH
 * PLAIN " with its CRLF. */
#define DELIVER_B64_MAX		(AUTH_B64_LEN(AUTH_PLAIN_MAX) + 1)
_Static_assert(11 + DELIVER_B64_MAX + 2 <= DELIVER_SEND_MAX, "AUTH line");
/* dane_match() reads tls.c's chain as struct dane_cert pairs. */
_Static_assert(sizeof(struct tls_der) == sizeof(struct dane_cert) &&
    offsetof(struct tls_der, len) == offsetof(struct dane_cert, len),
    "tls_der is laid out as dane_cert");
/* deliver_set_rcpt() indexes "245" by the result. */
_Static_assert(DR_OK == 0 && DR_TEMP == 1 && DR_PERM == 2, "dsn class");

enum deliver_state {
	DS_RESOLVE_MX,
	DS_RESOLVE_ADDR,
	DS_CONNECT,
	DS_BANNER,
	DS_EHLO,
	DS_HELO,
	DS_STARTTLS,		/* STARTTLS sent, its 220 due */
	DS_TLS,			/* the handshake runs in io */
	DS_AUTH,		/* AUTH to the smarthost */
	DS_READY,		/* greeted, between transactions */
	DS_RSET,
	DS_TXN,			/* MAIL/RCPT/DATA replies */
	DS_BODY,		/* writing the message */
	DS_DOT,			/* waiting for the end-of-data reply */
	DS_QUIT,
	DS_DONE,
};

/* Where an AUTH dialogue is (what the next 334 asks for). */
enum deliver_auth_step {
	DA_PLAIN,		/* AUTH PLAIN with the initial response */
	DA_LOGIN_USER,		/* AUTH LOGIN: 334 for the user name */
	DA_LOGIN_PASS,		/* 334 for the password */
	DA_SENT,		/* all given: only 235 or a failure */
};

/* Levels that never deliver without TLS. */
#define DELIVER_TLS_REQUIRED(l)	((l) >= TLS_ENCRYPT)
/* The server must show a key we know (a TLSA record or a tls_policy
 * fingerprint): a full handshake every time.  A resumed session shows no
 * chain; tls.c reports only what its full handshake established. */
#define DELIVER_PINNED(d)	((d)->dane || (d)->level == TLS_FINGERPRINT)
/* secure at a next hop found through MX: the leaf must name the next-hop
 * domain or a name below it (Postfix's smtp_tls_secure_cert_match =
 * nexthop, dot-nexthop), so a forged MX record cannot redirect.  Checked
 * in the chain hook, so no resumption either. */
#define DELIVER_NEXTHOP_NAMES(d) ((d)->level == TLS_SECURE && !(d)->literal)

struct deliver {
	/* The most-used fields first: x86-64 reaches an offset below 128
	 * with a one-byte displacement, others with four.  Flags are bytes
	 * so that more fit there; buffers come last. */
	struct io *io;
	struct deliver_txn *txn;
	struct dns_mx *mx;		/* allocated: DNS_MAX_MX */
	struct dns_req *dreq;
	struct dane_rrset *tlsa;	/* allocated at dane and dane-only */
	struct tls_client *tlsc;	/* our reference, or NULL */
	enum deliver_state state;
	unsigned ext;			/* REPLY_EXT_* from EHLO */
	unsigned port;
	enum tls_level level;		/* for this next hop (with DANE: for
					   this MX host) */
	enum deliver_auth_step auth_step;
	unsigned send_i, recv_i, accepted;
	int nmx, imx;
	int naddr;
	enum tls_level base;		/* as configured (or tls_policy) */
	size_t nlines;			/* strlen(lines) */
	uint8_t mail_failed;
	uint8_t dane;			/* this host: the chain must match */
	uint8_t need_rset;
	uint8_t tls_on;			/* the handshake succeeded */
	uint8_t smarthost;		/* the next hop is the smarthost */
	uint8_t early;			/* fail from the loop, no connect */
	uint8_t used;			/* a transaction was attempted */
	uint8_t send_failed;		/* output over io's cap */
	uint8_t body_bol;
	uint8_t smtps;			/* implicit TLS (smarthost_tls) */
	uint8_t tlsa_used;		/* secure TLSA apply to this host */
	uint8_t dane_seen;		/* the chain hook ran */
	uint8_t notls;			/* 'may' after a failed handshake */
	uint8_t plain_retry;		/* reconnect to the same address */
	uint8_t ntried, nsess;		/* addresses, sessions: the limits */
	uint8_t nexthop_ok;		/* DELIVER_NEXTHOP_NAMES: it held */
	uint8_t literal;
	/* The address being tried, as messages name it: "mx[192.0.2.1]"
	 * (set with each connect; the MX host and the address as text).
	 * The most-used buffer: it starts below 128 too. */
	char peer[DNS_NAME_MAX + INET6_ADDRSTRLEN + 3];
	uint64_t max_size;
	uint64_t body_done;
	const struct deliver_ops *ops;
	void *arg;
	int iaddr;
	enum deliver_result quit_r;	/* how the QUIT ends it */
	uint8_t mx_secure;		/* the MX RRset was DNSSEC-secure */
	uint8_t host_secure;		/* so was this host's MX RRset (or
					   the address answer standing in) */
	uint8_t implicit_mx;		/* no MX: the domain is its own */
	unsigned ncont;			/* "DDD-" lines of the reply so far
					   (zeroed with ext on connect) */
	int want;			/* the reply's code after a "DDD-"
					   line, else 0 (reply_read()) */
	enum dane_verdict dane_v;
	unsigned gen;			/* deliver_gen at the start */
	struct tls_conn *tconn;		/* handed to io (which frees it);
					   valid while d->io is */
	size_t dane_which;		/* the record that matched */
	struct loop_fd cfd;		/* while connecting */
	struct loop_timer ctimer;
	char host[DNS_NAME_MAX + 1];
	char why[DELIVER_REPLY_MAX];	/* last connection-level trouble */
	char why_dsn[16];
	char lines[DELIVER_REPLY_MAX];	/* a multi-line reply's lines so far */
	char why_relay[DELIVER_RELAY_MAX];	/* the server it came from,
					   "" when none was reached */
	struct dane_base tbase;		/* where this host's TLSA are looked
					   up (its name, or its alias's) */
	struct dane_policy_entry pin;	/* the tls_policy entry, if any:
					   fingerprints for that level */
	struct dns_addr addr[DNS_MAX_ADDR];
};

static void deliver_enter_state(struct deliver *, enum deliver_state);
static const char *deliver_strstate(enum deliver_state);
static void deliver_on_mx(void *, enum dns_status, int,
    const struct dns_mx *, int);
static void deliver_next_mx(struct deliver *);
static void deliver_on_addr(void *, enum dns_status, int,
    const struct dns_addr *, int);
static void deliver_next_addr(struct deliver *);
static void deliver_why_connect(struct deliver *, const char *);
static void deliver_dane_host(struct deliver *, int, const char *, int);
static void deliver_on_tlsa(void *, enum dns_status, int,
    const struct dns_tlsa_rdata *, int);
static void deliver_dane_step(struct deliver *, enum dane_lookup, int);
static const char *deliver_sni(const struct deliver *);
static const char *deliver_mx_host(const struct deliver *);
static void deliver_on_chain(void *, const struct tls_der *, size_t);
static void deliver_on_connect(struct loop_fd *, unsigned);
static void deliver_on_connect_timeout(struct loop_timer *);
static void deliver_connected(struct deliver *);
static void deliver_on_io(struct io *, enum io_event, void *);
static void deliver_reply(struct deliver *, int, int, const char *);
static void deliver_ehlo(struct deliver *);
static void deliver_greeted(struct deliver *);
static int deliver_tls_begin(struct deliver *);
static void deliver_tls_done(struct deliver *);
static int deliver_pin_match(const struct deliver *,
    const struct tls_conn *, char *, size_t);
static void deliver_tls_failed(struct deliver *, const char *);
static void deliver_auth_begin(struct deliver *);
static int deliver_auth_send(struct deliver *, const char *);
static void deliver_auth_reply(struct deliver *, int, const char *);
static int deliver_reloaded(struct deliver *);
static void deliver_refuse(struct deliver *);
static void deliver_io_free(struct deliver *);
static enum tls_level deliver_level(struct deliver *);
static void deliver_start_txn(struct deliver *);
static void deliver_send_cmds(struct deliver *);
static void deliver_txn_reply(struct deliver *, int, const char *);
static void deliver_txn_rset(struct deliver *);
static int deliver_body(struct deliver *);
static void deliver_finish_txn(struct deliver *);
static void deliver_set_rcpt(const struct deliver *, struct deliver_rcpt *,
    int, const char *, const char *, const char *);
static void deliver_set_rest(const struct deliver *, int, const char *,
    const char *, const char *);
static void deliver_give_back(struct deliver *, const char *);
static void deliver_fail_open(struct deliver *, enum deliver_result,
    const char *, const char *);
static void deliver_lost(struct deliver *, const char *);
/* always_inline here and on deliver_has_8bit(): measured smaller than
 * the calls LTO kept. */
static inline void deliver_desync(struct deliver *, const char *)
    __attribute__((always_inline));
static void deliver_untried(struct deliver_txn *) __attribute__((noinline));
static void deliver_close_why(struct deliver *);
static void deliver_close(struct deliver *, enum deliver_result,
    const char *, const char *);
static void deliver_quit(struct deliver *, enum deliver_result);
static void deliver_quit_done(struct deliver *);
static void deliver_on_reap(struct loop_timer *);
static void deliver_why(struct deliver *, const char *, const char *, ...)
    __attribute__((format(printf, 3, 4)));
/* noinline: measured smaller than LTO's inlined copies. */
static void deliver_why_dns(struct deliver *, const char *, const char *,
    const char *, enum dns_status) __attribute__((noinline));
static inline int deliver_has_8bit(const struct deliver_txn *)
    __attribute__((always_inline));
static int deliver_txn_8bit(const struct deliver_txn *);

/* deliver_lost()'s "what" for a silent server: worded as Postfix does. */
static const char deliver_timed_out[] = "timed out";
static const struct config *deliver_conf;
static struct tls_client *deliver_tls;		/* our reference */
static const struct dane_policy *deliver_policy;	/* main.c's */
/* smarthost_auth: loaded in deliver_configure(); a file that fails to
 * load defers the smarthost's mail rather than sending it unauthenticated. */
static struct auth_client deliver_auth;
static enum { DAUTH_NONE, DAUTH_OK, DAUTH_BAD } deliver_auth_state;
static char deliver_auth_err[DELIVER_ERR_MAX];
/* Bumped by every deliver_configure(): a connection that started under
 * other settings never sends the new smarthost_auth (it may be talking
 * to the old smarthost). */
static unsigned deliver_gen;

/*
 * Per-state texts, one after another with a NUL between, in the order of
 * enum deliver_state (textfile_nth() finds one): no table of pointers.
 */
#define DELIVER_STATES \
	"RESOLVE_MX\0RESOLVE_ADDR\0CONNECT\0BANNER\0EHLO\0HELO\0STARTTLS\0" \
	"TLS\0AUTH\0READY\0RSET\0TXN\0BODY\0DOT\0QUIT\0DONE"

/* What we were doing, for "lost connection ... while sending X"; "" for
 * the states that say "talking".  deliver_lost() takes the command a
 * reply answered from "sending X" (RSET, STARTTLS, MAIL FROM): keep
 * those three so. */
#define DELIVER_PHASE \
	"\0"					/* DS_RESOLVE_MX */ \
	"\0"					/* DS_RESOLVE_ADDR */ \
	"connecting\0" \
	"receiving the initial server greeting\0" \
	"performing the EHLO handshake\0" \
	"performing the HELO handshake\0" \
	"sending STARTTLS\0" \
	"performing the TLS handshake\0" \
	"authenticating\0" \
	"idle\0"				/* DS_READY */ \
	"sending RSET\0" \
	"sending MAIL FROM\0"			/* DS_TXN */ \
	"sending message body\0" \
	/* Postfix's warning: the remote may have the message already. */ \
	"sending end of data -- message may be sent more than once\0" \
	"sending QUIT\0" \
	""					/* DS_DONE */

/*
 * Also (re)loads smarthost_auth.  This runs after the privilege drop, so
 * the file must be readable by the daemon's user (and by nobody else:
 * auth_client_load() refuses a file others may read).  Failing to load is
 * not fatal: smarthost mail is deferred (4.7.0) until the admin fixes it,
 * since sending it without the configured login could only be refused
 * or, worse, relayed under nobody's name.
 */
void
deliver_configure(const struct config *conf)
{
	deliver_conf = conf;
	deliver_gen++;
	auth_client_free(&deliver_auth);
	deliver_auth_state = DAUTH_NONE;
	deliver_auth_err[0] = '\0';
	if (conf->smarthost_auth[0] == '\0')
		return;
	if (auth_client_load(&deliver_auth, conf->smarthost_auth,
	    deliver_auth_err, sizeof(deliver_auth_err)) == -1) {
		auth_client_free(&deliver_auth);
		deliver_auth_state = DAUTH_BAD;
		log_warnx(LP_SMTP, "smarthost_auth: %s; mail to the smarthost "
		    "is deferred", deliver_auth_err);
		return;
	}
	deliver_auth_state = DAUTH_OK;
}

void
deliver_set_tls(struct tls_client *c)
{
	if (c != NULL)
		(void)tls_client_ref(c);
	tls_client_unref(deliver_tls);
	deliver_tls = c;
}

void
deliver_set_policy(const struct dane_policy *pol)
{
	deliver_policy = pol;
}

/*
 * The TLS level for the next hop d->host: smarthost_tls or outbound_tls,
 * unless tls_policy has an entry for the smarthost's host or the
 * recipient domain (the most specific one; its copy stays with d, so a
 * SIGHUP may free the table under a running connection).  smtps is a
 * transport, not a level: implicit TLS stays, and a policy entry picks
 * the checks made inside it.  dane and dane-only are resolved per host
 * once its DNSSEC status is known (deliver_dane_host()).
 */
static enum tls_level
deliver_level(struct deliver *d)
{
	const struct dane_policy_entry *e;
	enum tls_level l;

	d->smarthost = deliver_conf->smarthost[0] != '\0';
	l = d->smarthost ? deliver_conf->smarthost_tls :
	    deliver_conf->outbound_tls;
	if (l == TLS_SMTPS) {
		d->smtps = 1;
		l = TLS_ENCRYPT;
	}
	if ((e = dane_policy_find(deliver_policy, d->host)) == NULL)
		return l;
	d->pin = *e;
	log_trace(TRACE_DELIVER, "deliver %p %s: tls_policy level %s",
	    (void *)d, d->host, config_tls_level_name(e->level));
	return e->level;
}

static const char *
deliver_strstate(enum deliver_state st)
{
	return textfile_nth(DELIVER_STATES, st);
}

static void
deliver_enter_state(struct deliver *d, enum deliver_state st)
{
	log_trace(TRACE_DELIVER, "deliver %p %s: %s -> %s", (void *)d,
	    d->host, deliver_strstate(d->state), deliver_strstate(st));
	d->state = st;
}

/* noinline: measured smaller than LTO's copy inlined into the caller. */
__attribute__((noinline)) struct deliver *
deliver_start(const char *host, unsigned port,
    const struct deliver_ops *ops, void *arg)
{
	struct deliver *d;
	char *e;
	int literal = host[0] == '[';

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
	/* "[192.0.2.1]" or "[host]": the brackets only say "no MX". */
	textfile_copy(d->host, sizeof(d->host), host + literal);
	if ((e = strchr(d->host, ']')) != NULL)
		*e = '\0';
	d->state = DS_RESOLVE_MX;
	d->quit_r = DR_OK;
	d->gen = deliver_gen;
	d->base = deliver_level(d);
	/* dane: may until a host's secure TLSA says more. */
	d->level = d->base == TLS_DANE ? TLS_MAY : d->base;
	if (deliver_tls != NULL)
		d->tlsc = tls_client_ref(deliver_tls);
	if (literal) {
		/* [192.0.2.1] or [host]: no MX lookup (RFC 5321 §5.1). */
		d->nmx = 1;
		textfile_copy(d->mx[0].host, sizeof(d->mx[0].host), d->host);
		d->naddr = net_addr(d->host, &d->addr[0]) == 0;
	}
	/* Policy that fails whatever the peer says: no connection at all. */
	d->early = 1;
	if (d->base == TLS_DANE_ONLY && d->naddr > 0)
		deliver_why(d, "4.7.5", "dane-only: DANE needs a host name to "
		    "look up TLSA records for, not an address literal");
	else if (DELIVER_TLS_REQUIRED(d->level) && d->tlsc == NULL)
		deliver_why(d, "4.7.5", "TLS is required, but our TLS engine "
		    "is unavailable");
	else if (d->smarthost && deliver_auth_state == DAUTH_BAD)
		deliver_why(d, "4.7.0", "smarthost_auth: %s", deliver_auth_err);
	else
		d->early = 0;
	if (d->early) {
		loop_timer_set(&d->ctimer, 0);
		return d;
	}
	/* Every host reached through a name gets its TLSA lookup. */
	if ((d->base == TLS_DANE || d->base == TLS_DANE_ONLY) &&
	    d->naddr == 0 && (d->tlsa = calloc(1, sizeof(*d->tlsa))) == NULL)
		goto fail;
	if (literal) {
		if (d->naddr) {
			d->imx = 1;
			deliver_enter_state(d, DS_RESOLVE_ADDR);
		}
		/* Start from the loop: callbacks never run inside our caller. */
		loop_timer_set(&d->ctimer, 0);
		return d;
	}
	d->dreq = dns_query_mx(d->host, deliver_on_mx, d);
	if (d->dreq == NULL) {
fail:
		deliver_abort(d);	/* nothing is open or armed yet */
		return NULL;
	}
	return d;
}

void
deliver_abort(struct deliver *d)
{
	dns_cancel(d->dreq);
	loop_fd_close(&d->cfd);
	loop_timer_cancel(&d->ctimer);
	deliver_io_free(d);
	tls_client_unref(d->tlsc);
	free(d->tlsa);
	free(d->mx);
	free(d);
}

static void
deliver_on_mx(void *arg, enum dns_status st, int secure,
    const struct dns_mx *mx, int n)
{
	struct deliver *d = arg;
	int i, j;

	d->dreq = NULL;
	d->mx_secure = secure;
	switch (st) {
	case DNS_OK:
		d->nmx = n < DNS_MAX_MX ? n : DNS_MAX_MX;
		memcpy(d->mx, mx, (size_t)d->nmx * sizeof(*mx));
		/* RFC 5321 section 5.1: we are one of the exchangers (a
		 * backup MX): only the better ones are tried, never we
		 * ourselves, nor hosts that would hand it back. */
		for (i = 0; i < d->nmx && addr_casecmp(d->mx[i].host,
		    deliver_conf->hostname) != 0; i++)
			;
		if (i == d->nmx)
			break;
		for (j = 0; d->mx[j].pref < d->mx[i].pref; j++)
			;
		if ((d->nmx = j) == 0) {
			deliver_why(d, "5.4.6", "mail for %s loops back to "
			    "myself", d->host);
			deliver_close_why(d);
			return;
		}
		break;
	case DNS_NODATA:
		/* §5.1: no MX, the domain itself is the implicit MX. */
		d->nmx = 1;
		d->implicit_mx = 1;
		d->mx[0].pref = 0;
		textfile_copy(d->mx[0].host, sizeof(d->mx[0].host), d->host);
		break;
	case DNS_NULLMX:
		deliver_close(d, DR_PERM, "5.1.10", "Domain does not accept "
		    "mail (null MX)");
		return;
	default:
		/* NXDOMAIN fails for good; anything else is tried again. */
		if (st != DNS_NXDOMAIN)
			st = DNS_TEMPFAIL;
		deliver_why_dns(d, st == DNS_NXDOMAIN ? "5.1.2" : "4.4.3",
		    d->host, "MX", st);
		deliver_close_why(d);
		return;
	}
	d->imx = 0;
	deliver_next_mx(d);
}

/* Resolve the next MX host's addresses, or give up: a bounce when no
 * host has an address and nothing else went wrong (5.4.4, as Postfix;
 * deliver_on_addr()), else a deferral.  A loop, not a call to itself
 * per failed query: the build keeps tail calls as calls. */
static void
deliver_next_mx(struct deliver *d)
{
	for (;;) {
		if (d->imx >= d->nmx) {
			if (d->why[0] == '\0')
				deliver_why(d, "4.4.1", "no usable mail "
				    "exchanger for %s", d->host);
			deliver_close_why(d);
			return;
		}
		deliver_enter_state(d, DS_RESOLVE_ADDR);
		d->dreq = dns_query_addr(d->mx[d->imx].host, deliver_on_addr,
		    d);
		d->imx++;
		if (d->dreq != NULL)
			return;
		deliver_why(d, "4.4.3", "cannot look up %s",
		    deliver_mx_host(d));
	}
}

static void
deliver_on_addr(void *arg, enum dns_status st, int secure,
    const struct dns_addr *a, int n)
{
	struct deliver *d = arg;

	d->dreq = NULL;
	if (st != DNS_OK || n == 0) {
		/* Postfix's codes: a host that does not exist is 5.4.4, or
		 * 4.4.4 once something failed that may work later. */
		deliver_why_dns(d, st == DNS_TEMPFAIL ? "4.4.3" :
		    d->why_dsn[0] == '4' ? "4.4.4" : "5.4.4",
		    deliver_mx_host(d), "A", st == DNS_OK ? DNS_NODATA : st);
		deliver_next_mx(d);
		return;
	}
	d->naddr = n < DNS_MAX_ADDR ? n : DNS_MAX_ADDR;
	memcpy(d->addr, a, (size_t)d->naddr * sizeof(*a));
	d->iaddr = 0;
	if (d->tlsa != NULL) {
		/* RFC 7672 section 2.2.1: the implicit MX's own address
		 * answer stands in for the MX RRset; so does a [host]
		 * smarthost's, which had no MX lookup at all.  Section
		 * 2.2.2: DANE also needs the host's address records secure
		 * (an MX in an unsigned zone is not a DANE host).  That bit
		 * also covers the CNAME chain dns_canon() reports. */
		deliver_dane_host(d, (d->implicit_mx || d->literal ||
		    d->mx_secure) && secure, dns_canon(), secure);
		return;
	}
	deliver_next_addr(d);
}

/*
 * dane, dane-only: the MX host whose addresses just came.  Only a secure
 * MX RRset makes its TLSA records count (RFC 7672 section 2.2); the
 * decision is dane_host_step()'s, the one `ferry check` reports.  canon
 * is where the host's CNAME chain ended (NULL: not an alias), and
 * canon_secure whether that chain validated.
 */
static void
deliver_dane_host(struct deliver *d, int secure, const char *canon,
    int canon_secure)
{
	d->dane = 0;
	d->tlsa_used = 0;
	d->tlsa->n = 0;
	d->host_secure = secure;
	dane_base_init(&d->tbase, deliver_mx_host(d), canon, canon_secure);
	if (canon != NULL)
		log_trace(TRACE_DELIVER, "deliver %p: %s is an alias of %s "
		    "(%s): TLSA at %s first", (void *)d, deliver_mx_host(d),
		    canon, canon_secure ? "secure" : "insecure",
		    dane_base_name(&d->tbase));
	deliver_dane_step(d, DANE_LOOKUP_NONE, 0);
}

/*
 * The TLSA answer for a secure MX host.  A lookup that failed (SERVFAIL,
 * timeout, bogus) may be an attacker hiding the records: the host is
 * deferred, never plaintext and never unauthenticated TLS.
 */
static void
deliver_on_tlsa(void *arg, enum dns_status st, int secure,
    const struct dns_tlsa_rdata *rd, int n)
{
	struct deliver *d = arg;
	struct dane_rrset *set = d->tlsa;
	struct dane_tlsa *r;
	enum dane_lookup lookup;
	char rec[DANE_TLSA_TEXT_MAX];
	const char *why;
	int i;

	_Static_assert(DNS_MAX_TLSA <= DANE_RECORDS_MAX, "dns.c picks the "
	    "records kept");
	d->dreq = NULL;
	/* Malformed records are left out, but still make TLS mandatory:
	 * the domain asked for DANE (RFC 7672 section 2.2.2).  A secure
	 * record passed over may be all that stands between this host and
	 * authentication, which then quietly goes: a warning for each
	 * (Postfix's too), once per lookup. */
	for (i = 0; st == DNS_OK && i < n && set->n < DANE_RECORDS_MAX; i++) {
		r = &set->r[set->n];
		if (dane_tlsa_parse(rd[i].rdata, rd[i].len, r) == 0)
			set->n++;
		if (!secure || (why = dane_tlsa_unusable(rd[i].rdata,
		    rd[i].len)) == NULL)
			continue;
		dane_tlsa_format(r, rec, sizeof(rec));
		/* No usage, selector and type to show (not "0 0 0"). */
		log_warnx(LP_SMTP, "_%u._tcp.%s: unusable TLSA record %s: %s",
		    d->port, dane_base_name(&d->tbase), rd[i].len <
		    DANE_TLSA_HDR ? "? ? ?" : rec, why);
	}
	log_trace(TRACE_DELIVER, "deliver %p: _%u._tcp.%s: %s, %d TLSA "
	    "records, %zu usable, %s", (void *)d, d->port,
	    dane_base_name(&d->tbase), dns_status_name(st), n,
	    dane_usable(set), secure ? "secure" : "insecure");
	lookup = st == DNS_TEMPFAIL ? DANE_LOOKUP_FAILED :
	    st == DNS_OK && n > 0 ? DANE_LOOKUP_FOUND : DANE_LOOKUP_EMPTY;
	if (dane_base_next(&d->tbase, lookup, secure)) {
		/* No secure TLSA at the alias's end: the host's own name. */
		set->n = 0;
		lookup = DANE_LOOKUP_NONE;
	}
	deliver_dane_step(d, lookup, secure);
}

/* Act on dane_host_step() for the current host: look up its TLSA (at
 * the current TLSA base domain), pass it over (4.7.5), or connect at the
 * level it gives. */
static void
deliver_dane_step(struct deliver *d, enum dane_lookup lookup, int secure)
{
	const char *host = dane_base_name(&d->tbase), *why = NULL;

	switch (dane_host_step(d->base, d->host_secure, lookup, secure, d->tlsa,
	    &why)) {
	case DANE_STEP_LOOKUP:
		/* A CNAME at _PORT._tcp.HOST itself is followed by the
		 * resolver, and the AD bit covers it (RFC 7672 section
		 * 2.2.3). */
		d->dreq = dns_query_tlsa(host, d->port, deliver_on_tlsa, d);
		if (d->dreq == NULL) {
			deliver_why(d, "4.7.5", "cannot look up TLSA records "
			    "for _%u._tcp.%s", d->port, host);
			deliver_next_mx(d);
		}
		return;
	case DANE_STEP_MAY:
		d->level = TLS_MAY;
		break;
	case DANE_STEP_ENCRYPT:
		d->tlsa_used = 1;
		d->level = TLS_ENCRYPT;
		break;
	case DANE_STEP_DANE:
		d->tlsa_used = 1;
		d->dane = 1;
		d->level = TLS_DANE;
		break;
	case DANE_STEP_DEFER:
	default:
		deliver_why(d, "4.7.5", "_%u._tcp.%s: %s", d->port, host,
		    why != NULL ? why : "no DANE verdict");
		log_info(LP_SMTP, "%s", d->why);
		deliver_next_mx(d);
		return;
	}
	deliver_next_addr(d);
}

/* tls.c shows the chain during the handshake: match it now, the
 * pointers are gone after the call. */
static void
deliver_on_chain(void *arg, const struct tls_der *chain, size_t n)
{
	struct deliver *d = arg;

	if (!d->dane) {		/* DELIVER_NEXTHOP_NAMES */
		d->nexthop_ok = n > 0 && dane_leaf_nexthop(chain[0].der,
		    chain[0].len, d->host);
		return;
	}
	/* RFC 7672 section 3.2.2: the TLSA base domain, the MX host as
	 * named, the next-hop domain.  dane.c takes tls.c's chain as it is
	 * (and at most DANE_CHAIN_MAX of it). */
	d->dane_v = dane_match_base(d->tlsa, chain, n, &d->tbase, d->host,
	    &d->dane_which);
	d->dane_seen = 1;
}

/* SNI: the TLSA base domain when secure TLSA records apply (RFC 7672
 * section 8.1: the name the records were found for), else the MX host. */
static const char *
deliver_sni(const struct deliver *d)
{
	if (d->tlsa != NULL && d->tlsa_used)
		return dane_base_name(&d->tbase);
	return deliver_mx_host(d);
}

/* The MX host being tried (for a literal next hop: the host as given).
 * One call instead of the index arithmetic in some twenty messages. */
static const char *
deliver_mx_host(const struct deliver *d)
{
	return d->mx[d->imx - 1].host;
}

static void
deliver_next_addr(struct deliver *d)
{
	char ip[INET6_ADDRSTRLEN];
	int fd, err, retry = d->plain_retry;

	/* 'may' after a failed handshake: the same address once more, in
	 * clear; any other address starts with TLS again. */
	if (retry && d->iaddr > 0)
		d->iaddr--;
	d->plain_retry = 0;
	while (d->iaddr < d->naddr && d->ntried < DELIVER_ADDR_LIMIT +
	    (retry != 0) && d->nsess < DELIVER_SESSION_LIMIT) {
		d->ntried += retry == 0;
		d->notls = retry;
		retry = 0;
		fd = net_connect(&d->addr[d->iaddr++], d->port, ip);
		err = errno;	/* for the message, whatever formatting does */
		textfile_fmt(d->peer, sizeof(d->peer), "%s[%s]",
		    deliver_mx_host(d), ip);
		errno = err;
		d->cfd.fd = fd;
		if (fd == -1 || loop_fd_add(&d->cfd, LOOP_WRITE) == -1) {
			deliver_why_connect(d, log_errstr());
			continue;
		}
		deliver_enter_state(d, DS_CONNECT);
		loop_timer_set(&d->ctimer, DELIVER_CONNECT_MS);
		return;
	}
	d->notls = 0;
	/* At a limit: no further MX host either; the last failure is the
	 * deferral's reason. */
	if (d->ntried >= DELIVER_ADDR_LIMIT ||
	    d->nsess >= DELIVER_SESSION_LIMIT)
		d->imx = d->nmx;
	deliver_next_mx(d);
}

/* One address failed to connect: the reason a deferral would give.
 * Its socket, if any, is closed. */
static void
deliver_why_connect(struct deliver *d, const char *err)
{
	deliver_why(d, "4.4.1", "connect to %s:%u: %s", d->peer, d->port,
	    err);
	loop_fd_close(&d->cfd);
}

static void
deliver_on_connect_timeout(struct loop_timer *t)
{
	struct deliver *d = container_of(t, struct deliver, ctimer);

	if (d->early) {
		deliver_close_why(d);
		return;
	}
	if (d->state < DS_CONNECT) {
		/* The deferred start of a literal next hop: its address, or
		 * with none ("[host]") the lookup of the name's, which is
		 * where deliver_next_addr() goes when it has none. */
		deliver_next_addr(d);
		return;
	}
	/* Postfix's words, whatever strerror(ETIMEDOUT) says here. */
	deliver_why_connect(d, "Connection timed out");
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
		deliver_why_connect(d, strerror(err));
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
		deliver_why(d, "4.4.1", "out of memory");
		deliver_next_addr(d);
		return;
	}
	io_set_deadline(d->io, DELIVER_CMD_MS);
	d->nsess++;
	d->ext = d->ncont = 0;
	d->want = 0;
	d->max_size = 0;
	d->tls_on = 0;
	/* smtps (RFC 8314): TLS from the first byte, the banner inside it. */
	if (d->smtps) {
		(void)deliver_tls_begin(d);
		return;
	}
	deliver_enter_state(d, DS_BANNER);
}

/* --- replies --- */

static void
deliver_on_io(struct io *io, enum io_event ev, void *arg)
{
	struct deliver *d = arg;
	struct reply_line r;
	enum reply_status st;
	enum deliver_state prev;
	const char *in;
	size_t left;
	int stray;

	(void)io;
	/* The handshake ends in one of these, never in IO_IN. */
	if (d->state == DS_TLS && ev != IO_TLS && ev != IO_DRAINED) {
		deliver_tls_failed(d, ev == IO_TIMEOUT ? "handshake timed out" :
		    ev == IO_EOF ? "the server closed the connection" :
		    tls_conn_error(d->tconn));
		return;
	}
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
		deliver_lost(d, deliver_timed_out);
		return;
	case IO_TLS:
		if (d->state != DS_TLS)
			return;
		deliver_tls_done(d);
		if (d->state == DS_DONE || d->io == NULL)
			return;
		break;	/* the banner (smtps) may be buffered already */
	case IO_IN:
		break;
	}
	for (;;) {
		/* Too long: a line that fills io's buffer, or a reply of
		 * more than DELIVER_REPLY_LINES lines.  Malformed: a line
		 * with another code than its reply's too ("250-2.1.5 ok"
		 * then "550 5.1.1 no" bounced a recipient with dsn=2.1.5). */
		st = reply_read(d->io, d->want, &r);
		if (st == REPLY_OK && (d->ncont = r.more ? d->ncont + 1 : 0) >=
		    DELIVER_REPLY_LINES)
			st = REPLY_TOO_LONG;
		if (st != REPLY_OK) {
			if (st != REPLY_AGAIN)
				deliver_lost(d, st == REPLY_TOO_LONG ?
				    "reply too long" : "malformed reply");
			return;
		}
		d->want = r.more ? r.code : 0;
		log_trace(TRACE_DELIVER, "deliver %p: < %s", (void *)d, r.line);
		/* A server speaks only when spoken to: after the last reply
		 * due, more input cannot answer anything yet.  Acted on, it
		 * would be read as the next command's reply and shift every
		 * later one a step ("354" with "554" behind it bounced a
		 * message the server then took with a 250).  Only pipelined
		 * MAIL/RCPT/DATA replies queue up behind each other, and a
		 * 421 may come at any time (RFC 5321 section 3.8: a server
		 * closing, e.g. Postfix's idle timeout): it, or what may be
		 * its start, is read next. */
		in = io_in(d->io, &left);
		stray = left > 0 && !r.more &&
		    memcmp(in, "421", left < 3 ? left : 3) != 0 &&
		    !(d->state == DS_TXN && d->send_i - d->recv_i > 1);
		prev = d->state;
		if (stray && prev != DS_QUIT && prev != DS_DOT) {
			deliver_desync(d, "reply out of step");
			return;
		}
		deliver_reply(d, r.code, r.more, r.len > 4 ? r.line + 4 : "");
		/* Closed (d lives until the next turn), reconnecting, or
		 * handshaking (io dropped what followed the 220). */
		if (d->state == DS_DONE || d->io == NULL || d->state == DS_TLS)
			return;
		/* The end-of-data reply is acted on first: a 250 stands, the
		 * message is the server's.  What came behind it ends the
		 * connection (a next message waiting at RSET goes back). */
		if (stray && prev == DS_DOT && d->state != DS_QUIT) {
			deliver_lost(d, "reply out of step");
			return;
		}
	}
}

static void
deliver_send(struct deliver *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
deliver_send(struct deliver *d, const char *fmt, ...)
{
	char buf[DELIVER_SEND_MAX];
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
	/* A reply's first line names the server: "250-8bitmime.example.org"
	 * offers nothing (RFC 5321 4.1.1.1). */
	int first = d->nlines == 0;

	if (d->state == DS_EHLO && code == 250 && cont && !first)
		d->ext |= reply_ehlo(text, &d->max_size);
	if (cont) {
		/* Kept as Postfix logs them, every line with its code: the
		 * reason a multi-line refusal gives is seldom on its last
		 * line (Gmail's ends in a help URL). */
		if (d->nlines + 1 < sizeof(d->lines)) {
			textfile_fmt(d->lines + d->nlines, sizeof(d->lines) -
			    d->nlines, "%d-%s ", code, text);
			d->nlines += strlen(d->lines + d->nlines);
		}
		return;
	}
	textfile_fmt(reply, sizeof(reply), "%s%d %s", d->lines, code, text);
	d->lines[0] = '\0';
	d->nlines = 0;
	/* The next reply's deadline: whatever is said next is said now
	 * (several pipelined replies have one each); a state that waits
	 * longer sets its own. */
	io_set_deadline(d->io, DELIVER_CMD_MS);
	if (code == 421 && d->state != DS_QUIT) {
		deliver_lost(d, reply);
		return;
	}
	switch (d->state) {
	case DS_BANNER:
	case DS_HELO:
		/* Postfix's words: "refused to talk to me", "refused HELO". */
		if (code != (d->state == DS_BANNER ? 220 : 250)) {
			deliver_why(d, "4.4.1", "host %s refused %s: %s",
			    d->peer, d->state == DS_BANNER ? "to talk to me" :
			    "HELO", reply);
			deliver_io_free(d);
			deliver_next_addr(d);
			return;
		}
		if (d->state == DS_BANNER) {
			deliver_ehlo(d);
			break;
		}
		d->ext = 0;
		deliver_greeted(d);
		break;
	case DS_EHLO:
		if (code == 250) {
			if (!first)
				d->ext |= reply_ehlo(text, &d->max_size);
			deliver_greeted(d);
		} else {
			deliver_enter_state(d, DS_HELO);
			deliver_send(d, "HELO %s\r\n", deliver_conf->hostname);
		}
		break;
	case DS_STARTTLS:
		if (code != 220) {
			/* Offered, then refused: like not offered. */
			if (DELIVER_TLS_REQUIRED(d->level)) {
				deliver_why(d, "4.7.4", "TLS is required, but "
				    "host %s refused to start TLS: %s", d->peer,
				    reply);
				deliver_refuse(d);
				return;
			}
			d->ext &= ~REPLY_EXT_STARTTLS;
			deliver_greeted(d);
			break;
		}
		if (deliver_tls_begin(d) == -1)
			return;
		break;
	case DS_AUTH:
		deliver_auth_reply(d, code, reply);
		break;
	case DS_RSET:
		if (code / 100 != 2) {
			/* Not worth arguing, nor waiting for QUIT's answer: a
			 * new connection starts clean. */
			deliver_send(d, "QUIT\r\n");
			io_flush(d->io);
			deliver_lost(d, reply);
			return;
		}
		d->need_rset = 0;
		deliver_start_txn(d);
		break;
	case DS_TXN:
		deliver_txn_reply(d, code, reply);
		break;
	case DS_BODY:
		/* A refusal before the dot (a limit met on the way) is the
		 * message's result, as Postfix reads it; the rest of the body
		 * is not sent.  A 2xx cannot be one: the message is not all
		 * there. */
		if (code / 100 == 2) {
			deliver_lost(d, "unexpected reply");
			return;
		}
		deliver_set_rest(d, code, reply, NULL, "end of DATA");
		deliver_fail_open(d, DR_OK, NULL, NULL);
		return;
	case DS_DOT:
		deliver_set_rest(d, code, reply, NULL, "end of DATA");
		deliver_finish_txn(d);
		break;
	case DS_QUIT:
		deliver_quit_done(d);
		break;
	default:
		deliver_lost(d, "unexpected reply");
		break;
	}
	if (d->state != DS_DONE && d->io != NULL && d->state != DS_TLS) {
		if (d->send_failed) {
			d->send_failed = 0;
			deliver_lost(d, "output buffer full");
			return;
		}
		io_flush(d->io);
	}
}

/* Say EHLO: at the start, and again inside TLS (RFC 3207 section 4.2:
 * what the server said before TLS no longer counts). */
static void
deliver_ehlo(struct deliver *d)
{
	d->ext = 0;
	d->max_size = 0;
	deliver_enter_state(d, DS_EHLO);
	deliver_send(d, "EHLO %s\r\n", deliver_conf->hostname);
}

/*
 * EHLO (or HELO) answered: STARTTLS if the level wants it and the server
 * offers it, else the level decides; then AUTH to the smarthost; then
 * the first transaction.
 */
static void
deliver_greeted(struct deliver *d)
{
	if (!d->tls_on && d->level != TLS_NONE && !d->notls) {
		if (d->ext & REPLY_EXT_STARTTLS && d->tlsc != NULL) {
			deliver_enter_state(d, DS_STARTTLS);
			deliver_send(d, "STARTTLS\r\n");
			return;
		}
		if (DELIVER_TLS_REQUIRED(d->level)) {
			deliver_why(d, "4.7.4", "TLS is required, but %s "
			    "host %s", d->tlsc == NULL ? "our TLS engine is "
			    "unavailable for" : "was not offered by", d->peer);
			deliver_refuse(d);
			return;
		}
	}
	if (d->smarthost && deliver_auth_state == DAUTH_OK) {
		/* Whatever the level: a password never crosses in clear. */
		if (!d->tls_on) {
			deliver_why(d, "4.7.0", "TLS is not active with "
			    "host %s: smarthost_auth is never sent without "
			    "TLS", d->peer);
			deliver_refuse(d);
			return;
		}
		if (d->ext & (REPLY_EXT_AUTH_PLAIN | REPLY_EXT_AUTH_LOGIN)) {
			deliver_auth_begin(d);
			return;
		}
		/* AUTH, but only mechanisms we do not speak: sent without a
		 * login, a smarthost that relays for its users only bounced
		 * it all.  Postfix's words and outcome (smtp_sasl_proto.c).
		 * No AUTH at all: sent, as Postfix does. */
		if (d->ext & REPLY_EXT_AUTH) {
			deliver_why(d, "4.7.0", "SASL authentication failed: "
			    "server %s offered no compatible authentication "
			    "mechanisms for this type of connection security",
			    d->peer);
			deliver_refuse(d);
			return;
		}
		log_warnx(LP_SMTP, "host %s offers no AUTH; sending without "
		    "authentication", d->peer);
	}
	deliver_start_txn(d);
}

/* Hand the socket to TLS: after STARTTLS's 220, or at once for smtps.
 * -1: the connection is gone (retried or given up). */
static int
deliver_tls_begin(struct deliver *d)
{
	char key[TLS_CACHE_KEY_MAX];
	const char *host = deliver_mx_host(d), *sni = deliver_sni(d);
	struct tls_conn *c = NULL;

	/* One cached session per name checked and port ("sni:port", then
	 * the MX host when it differs): a resumed session comes back with
	 * the verify result of the name it was made for. */
	textfile_fmt(key, sizeof(key), "%s:%u%s%s", sni, d->port,
	    addr_casecmp(sni, host) != 0 ? " " : "",
	    addr_casecmp(sni, host) != 0 ? host : "");
	if (d->tlsc != NULL)
		c = tls_conn_client(d->tlsc, io_fd(d->io), sni,
		    DELIVER_PINNED(d) || DELIVER_NEXTHOP_NAMES(d) ? NULL : key);
	d->dane_seen = d->nexthop_ok = 0;
	d->dane_v = DANE_NOMATCH;
	if (c != NULL && (d->dane || DELIVER_NEXTHOP_NAMES(d)))
		tls_conn_set_chain_hook(c, deliver_on_chain, d);
	if (c == NULL) {
		deliver_tls_failed(d, "cannot set up a TLS connection");
		return -1;
	}
	d->tconn = c;
	deliver_enter_state(d, DS_TLS);
	io_start_tls(d->io, c);
	io_set_deadline(d->io, DELIVER_TLS_MS);
	return 0;
}

/*
 * The handshake is done: log it in Postfix's words, then apply the
 * level's certificate checks before anything else is said.  Anonymous:
 * no certificate; Untrusted: its chain does not verify against ca_file;
 * Trusted: it does; Verified: it does and names the host, at a level
 * that asks for names.
 */
static void
deliver_tls_done(struct deliver *d)
{
	struct tls_conn *c = io_tls(d->io);
	const char *host = deliver_mx_host(d), *trust, *bad = NULL;
	unsigned v, bits;
	int chain_ok, name_ok, checks, pin_ok = 0;
	char what[DELIVER_REPLY_MAX];

	if (c == NULL) {	/* cannot happen: IO_TLS means it is on */
		deliver_tls_failed(d, "no TLS after the handshake");
		return;
	}
	v = tls_conn_verify(c);
	chain_ok = !(v & (TLS_V_NOCERT | TLS_V_UNTRUSTED));
	/* verify: the MX host (the SNI); secure: see DELIVER_NEXTHOP_NAMES
	 * (a [host] next hop: that host). */
	name_ok = DELIVER_NEXTHOP_NAMES(d) ? d->nexthop_ok :
	    !(v & TLS_V_NAME);
	checks = d->level == TLS_VERIFY || d->level == TLS_SECURE;
	trust = v & TLS_V_NOCERT ? "Anonymous" : !chain_ok ? "Untrusted" :
	    checks && name_ok ? "Verified" : "Trusted";
	if (DELIVER_PINNED(d)) {
		pin_ok = deliver_pin_match(d, c, what, sizeof(what));
		trust = pin_ok ? "Verified" : "Untrusted";
	}
	bits = tls_conn_cipher_bits(c);
	log_info(LP_SMTP, "%s TLS connection established to %s:%u: %s "
	    "with cipher %s (%u/%u bits)", trust, d->peer, d->port,
	    tls_conn_version(c), tls_conn_cipher(c), bits, bits);
	log_trace(TRACE_DELIVER, "deliver %p: TLS session %s", (void *)d,
	    tls_conn_resumed(c) ? "resumed" : "new");
	io_set_deadline(d->io, DELIVER_CMD_MS);
	/* The pinned levels and the checking ones never go together (a
	 * pin is dane or fingerprint): one refusal says what failed. */
	if (DELIVER_PINNED(d)) {
		if (pin_ok)
			log_info(LP_SMTP, "%s:%u: Matched %s", d->peer,
			    d->port, what);
		else
			bad = what;
	}
	if (checks) {
		if (!tls_client_ca_ok(d->tlsc))
			log_warnx(LP_SMTP, "ca_file %s: no usable CA "
			    "certificate; level %s cannot trust any server",
			    deliver_conf->ca_file,
			    config_tls_level_name(d->level));
		if (!chain_ok)
			bad = v & TLS_V_NOCERT ? "no certificate" :
			    v & TLS_V_EXPIRED ? "expired or not yet valid" :
			    "no chain to ca_file";
		else if (!name_ok) {
			textfile_fmt(what, sizeof(what),
			    "it does not name %s%s",
			    DELIVER_NEXTHOP_NAMES(d) ? d->host : host,
			    DELIVER_NEXTHOP_NAMES(d) ? " or a name below it" :
			    "");
			bad = what;
		}
	}
	if (bad != NULL) {
		deliver_why(d, "4.7.5", "Server certificate not %s (%s:%u: %s)",
		    checks && chain_ok ? "verified" : "trusted", d->peer,
		    d->port, bad);
		deliver_refuse(d);
		return;
	}
	d->tls_on = 1;
	if (d->smtps) {
		deliver_enter_state(d, DS_BANNER);
		return;
	}
	deliver_ehlo(d);
	io_flush(d->io);
}

/*
 * The pinned levels' verdict, and what to log (a match) or give as the
 * reason (none): for DANE the TLSA record the chain hook matched during
 * the handshake; for fingerprint a tls_policy match= value equal to the
 * SHA-256 of the leaf certificate or of its public key (Postfix's
 * fingerprint level: names, dates and issuers do not count).
 */
static int
deliver_pin_match(const struct deliver *d, const struct tls_conn *c,
    char *what, size_t whatsz)
{
	unsigned char fp[2][TLS_FP_LEN];
	char rec[DANE_DATA_MAX * 2 + 16], hex[96];
	int k;

	if (d->dane) {
		if (!d->dane_seen || d->dane_v != DANE_MATCH) {
			textfile_fmt(what, whatsz, "no DANE TLSA record "
			    "matched%s", d->dane_seen ? "" : ", no certificate "
			    "chain seen");
			return 0;
		}
		dane_tlsa_format(&d->tlsa->r[d->dane_which], rec, sizeof(rec));
		/* Name the TLSA owner when it is not the MX host's own. */
		if (addr_casecmp(dane_base_name(&d->tbase),
		    deliver_mx_host(d)) != 0)
			textfile_fmt(what, whatsz, "DANE TLSA record %s at "
			    "_%u._tcp.%s (CNAME)", rec, d->port,
			    dane_base_name(&d->tbase));
		else
			textfile_fmt(what, whatsz, "DANE TLSA record %s", rec);
		return 1;
	}
	if (tls_conn_peer_fp(c, fp[0], fp[1]) == -1) {
		textfile_fmt(what, whatsz, "no certificate to match the "
		    "tls_policy fingerprint against");
		return 0;
	}
	if ((k = dane_policy_pinned(&d->pin, fp[0], fp[1])) != 0) {
		tls_fp_format(fp[k - 1], hex);
		textfile_fmt(what, whatsz, "%s fingerprint sha256:%s",
		    k == 1 ? "certificate" : "public key", hex);
		return 1;
	}
	tls_fp_format(fp[0], hex);
	textfile_fmt(what, whatsz, "no tls_policy fingerprint matched the "
	    "certificate sha256:%s", hex);
	return 0;
}

/*
 * The handshake failed (why: the TLS library's words, or a timeout).
 * 'may' tries the same address once more without TLS (not under smtps,
 * whose port speaks only TLS); every other level defers this address
 * with 4.7.5 and tries the next.
 */
static void
deliver_tls_failed(struct deliver *d, const char *why)
{
	log_info(LP_SMTP, "SSL_connect error to %s:%u: %s", d->peer, d->port,
	    why);
	if (d->level == TLS_MAY && !d->smtps) {
		log_info(LP_SMTP, "%s:%u: TLS handshake failed; trying "
		    "again without TLS", d->peer, d->port);
		deliver_io_free(d);
		d->plain_retry = 1;
		deliver_next_addr(d);
		return;
	}
	deliver_why(d, "4.7.5", "Cannot start TLS: handshake failure with "
	    "%s:%u: %s", d->peer, d->port, why);
	deliver_io_free(d);
	deliver_next_addr(d);
}

/* AUTH (RFC 4954) to the smarthost, over TLS only: PLAIN with the
 * initial response when offered, else LOGIN. */
static void
deliver_auth_begin(struct deliver *d)
{
	if (deliver_reloaded(d))
		return;
	deliver_enter_state(d, DS_AUTH);
	if (!(d->ext & REPLY_EXT_AUTH_PLAIN)) {
		d->auth_step = DA_LOGIN_USER;
		deliver_send(d, "AUTH LOGIN\r\n");
		return;
	}
	d->auth_step = DA_PLAIN;
	if (deliver_auth_send(d, "AUTH PLAIN ") == -1) {
		/* auth_client_load() keeps both within the limits. */
		log_warnx(LP_SMTP, "deliver_auth_begin: smarthost_auth "
		    "credentials too long");	/* not __func__: no padding */
		deliver_lost(d, "cannot encode AUTH PLAIN");
		return;
	}
	d->auth_step = DA_PLAIN;	/* a 334 may still ask for it */
}

/*
 * Send what d->auth_step says is next after prefix ("AUTH PLAIN " or
 * ""), and step on.  -1: it did not encode (nothing sent).  The line has
 * credentials in it: never traced, wiped after use (io's buffer keeps
 * the bytes until they are written).
 */
static int
deliver_auth_send(struct deliver *d, const char *prefix)
{
	char line[DELIVER_SEND_MAX], *b64;
	size_t n = strlen(prefix);
	int r;

	memcpy(line, prefix, n);
	b64 = line + n;
	if (d->auth_step == DA_PLAIN)
		r = auth_plain_encode(deliver_auth.user, deliver_auth.pass,
		    deliver_auth.passlen, b64, DELIVER_B64_MAX);
	else if (d->auth_step == DA_LOGIN_USER)
		r = auth_b64_encode(deliver_auth.user,
		    strlen(deliver_auth.user), b64, DELIVER_B64_MAX);
	else
		r = auth_b64_encode(deliver_auth.pass, deliver_auth.passlen,
		    b64, DELIVER_B64_MAX);
	/* PLAIN and LOGIN_PASS are followed by DA_SENT. */
	d->auth_step = d->auth_step == DA_PLAIN ? DA_SENT : d->auth_step + 1;
	if (r == 0) {
		n += strlen(b64);
		memcpy(line + n, "\r\n", 2);
		if (io_write(d->io, line, n + 2) == -1)
			d->send_failed = 1;
		log_trace(TRACE_DELIVER, "deliver %p: > %s(credentials)",
		    (void *)d, prefix);
	}
	sodium_memzero(line, sizeof(line));
	return r;
}

/* A SIGHUP since this connection started may have swapped smarthost
 * and smarthost_auth: send no secret, QUIT, and let a new connection
 * start under the new settings.  It closes as one that did its work, so
 * the smarthost is not backed off and nothing waiting is deferred (a
 * certificate renewal's SIGHUP deferred the whole queue).  1: it is
 * quitting. */
static int
deliver_reloaded(struct deliver *d)
{
	if (d->gen == deliver_gen)
		return 0;
	log_info(LP_SMTP, "%s: the configuration was reloaded before AUTH; "
	    "connecting again", d->peer);
	deliver_quit(d, DR_OK);
	return 1;
}

/* The reply's enhanced status code into dsn (16 bytes), if it has one
 * in RFC 3463's syntax ("5.x junk" or "5.99999.1" would reach the log as
 * dsn=).  0: it has none, dsn is as it was. */
static int
deliver_enh(const char *reply, char *dsn)
{
	const char *t;
	size_t k = reply_enh_code(reply, &t);

	if (k == 0 || k >= sizeof(((struct deliver_rcpt *)0)->dsn))
		return 0;
	memcpy(dsn, t, k);
	dsn[k] = '\0';
	return 1;
}

/* A reply in DS_AUTH: 334 asks for the next part, 235 is success, and
 * anything else ends this connection with a deferral, so the smarthost
 * backs off instead of seeing one failed login per queued message. */
static void
deliver_auth_reply(struct deliver *d, int code, const char *reply)
{
	char dsn[16] = "4.7.0";

	if (code == 235) {
		log_trace(TRACE_DELIVER, "deliver %p: authenticated as %s",
		    (void *)d, deliver_auth.user);
		deliver_start_txn(d);
		return;
	}
	if (code == 334) {
		if (deliver_reloaded(d))
			return;
		if (d->auth_step == DA_SENT)
			deliver_lost(d, "unexpected 334 reply to AUTH");
		/* DA_PLAIN: it wants the response after all. */
		else if (deliver_auth_send(d, "") == -1)
			deliver_lost(d, "cannot encode the AUTH response");
		return;
	}
	/* "535 5.7.8 ...": keep the detail, but as a temporary failure
	 * (Postfix's smtp_sasl_auth_soft_bounce): a wrong password is the
	 * admin's to fix, and bouncing the queue would not fix it.  Only
	 * a code in RFC 3463's syntax: it reaches the log as dsn=. */
	if (deliver_enh(reply, dsn))
		dsn[0] = '4';
	log_warnx(LP_SMTP, "SASL authentication failed; server %s said: %s",
	    d->peer, reply);
	deliver_why(d, dsn, "SASL authentication failed; server %s said: %s",
	    d->peer, reply);
	deliver_quit(d, DR_TEMP);
}

/* --- transactions --- */

/*
 * Result from a reply: 2xx ok, 4xx temporary, 5xx permanent.  Our own
 * words come with their dsn; a server's reply to cmd (dsn NULL) brings
 * its own, and a refusal is kept as Postfix logs it, naming the server
 * and the command (REPLY_SAID).
 */
static void
deliver_set_rcpt(const struct deliver *d, struct deliver_rcpt *r, int code,
    const char *reply, const char *dsn, const char *cmd)
{
	r->result = code / 100 == 2 ? DR_OK : code / 100 == 5 ? DR_PERM :
	    DR_TEMP;
	textfile_copy(r->reply, DELIVER_REASON_MAX, reply);
	if (dsn != NULL) {
		textfile_copy(r->dsn, sizeof(r->dsn), dsn);
		return;
	}
	if (code / 100 != 2)
		textfile_fmt(r->reply, DELIVER_REASON_MAX, REPLY_SAID_PEER,
		    d->peer, reply, cmd);
	/* "250 2.1.5 Ok", "550-5.1.1 ...": the enhanced code if it is
	 * there.  Else the class of the result: a 3xx out of place is
	 * deferred, and "3.0.0" is no status code. */
	if (deliver_enh(reply, r->dsn))
		return;
	snprintf(r->dsn, sizeof(r->dsn), "%c.0.0", "245"[r->result]);
}

/* deliver_set_rcpt() for every recipient of the transaction without a
 * result yet (at its start, before a RCPT's reply: all of them). */
static void
deliver_set_rest(const struct deliver *d, int code, const char *reply,
    const char *dsn, const char *cmd)
{
	unsigned i;

	for (i = 0; i < d->txn->nrcpt; i++)
		if (d->txn->rcpt[i].dsn[0] == '\0')
			deliver_set_rcpt(d, &d->txn->rcpt[i], code, reply, dsn,
			    cmd);
}

/*
 * Ask the owner for work; nothing left: QUIT.  A message this server
 * cannot take is refused here, without a word to it, and the next one
 * asked for: a loop, not a call back through deliver_finish_txn, so a
 * queue of such messages costs no stack.
 */
static void
deliver_start_txn(struct deliver *d)
{
	struct deliver_txn *t;
	int code;
	const char *dsn;
	char reason[DELIVER_REPLY_MAX];

	for (;;) {
		deliver_enter_state(d, DS_READY);
		if ((t = d->txn) == NULL &&
		    (t = d->ops->next(d->arg, d)) == NULL) {
			deliver_quit(d, DR_OK);
			io_flush(d->io);
			return;
		}
		d->txn = t;
		d->used = 1;
		textfile_fmt(t->relay, sizeof(t->relay), "%s:%u", d->peer,
		    d->port);
		deliver_untried(t);
		/* A reused connection starts clean: RSET between
		 * transactions.  The transaction waits in d->txn, so a lost
		 * RSET defers it. */
		if (d->need_rset) {
			deliver_enter_state(d, DS_RSET);
			deliver_send(d, "RSET\r\n");
			return;
		}
		/* Refuse rather than corrupt (RFC 6152, RFC 6531). */
		code = 0;
		dsn = NULL;
		if (d->ext & REPLY_EXT_SIZE && d->max_size &&
		    t->size > d->max_size) {
			textfile_fmt(reason, sizeof(reason),
			    "message size %llu exceeds size limit %llu of "
			    "server %s",
			    (unsigned long long)t->size,
			    (unsigned long long)d->max_size, t->relay);
			code = 552;
			dsn = "5.3.4";
		} else if (t->flags & QF_8BITMIME &&
		    !(d->ext & REPLY_EXT_8BITMIME) && deliver_has_8bit(t)) {
			textfile_fmt(reason, sizeof(reason), "host %s does not "
			    "support 8BITMIME and the message has 8-bit "
			    "content", t->relay);
			code = 554;
			dsn = "5.6.3";
		} else if (t->flags & QF_SMTPUTF8 &&
		    !(d->ext & REPLY_EXT_SMTPUTF8) && deliver_txn_8bit(t)) {
			textfile_fmt(reason, sizeof(reason), "host %s does not "
			    "support SMTPUTF8", t->relay);
			code = 553;
			dsn = "5.6.7";
		}
		if (code == 0)
			break;
		deliver_set_rest(d, code, reason, dsn, NULL);
		d->txn = NULL;
		d->ops->done(d->arg, d, t);
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
		if (!(d->ext & REPLY_EXT_PIPELINING) && d->send_i != d->recv_i)
			break;
		/* A window, so a thousand recipients never overrun io. */
		if (d->send_i - d->recv_i >= DELIVER_PIPE_MAX)
			break;
		if (d->send_i == 0) {
			if (d->ext & REPLY_EXT_SIZE)
				snprintf(size, sizeof(size), " SIZE=%llu",
				    (unsigned long long)t->size);
			deliver_send(d, "MAIL FROM:<%s>%s%s%s\r\n", t->sender,
			    size, (t->flags & QF_8BITMIME &&
			    d->ext & REPLY_EXT_8BITMIME) ?
			    " BODY=8BITMIME" : "", (t->flags & QF_SMTPUTF8 &&
			    d->ext & REPLY_EXT_SMTPUTF8) ? " SMTPUTF8" : "");
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
		deliver_desync(d, "reply out of step with our commands");
		return;
	}
	i = d->recv_i++;
	if (i > last) {
		/* The RSET of deliver_txn_rset(): in step, the results stand. */
		if (code / 100 != 2) {
			deliver_desync(d, "reply out of step");
			return;
		}
		d->need_rset = 0;
		deliver_finish_txn(d);
		return;
	}
	if (i == 0) {
		if (code / 100 != 2) {
			d->mail_failed = 1;
			deliver_set_rest(d, code, reply, NULL, "MAIL FROM");
		}
	} else if (i < last) {
		if (!d->mail_failed && code / 100 == 2)
			d->accepted++;
		else if (!d->mail_failed) {
			deliver_set_rcpt(d, &t->rcpt[i - 1], code, reply,
			    NULL, "RCPT TO");
			/* RFC 5321 section 4.5.3.1.10: a recipient limit says
			 * 452.  After some were taken, each round delivers
			 * to at least one, so this ends. */
			t->rcpt[i - 1].again = code == 452 && d->accepted > 0;
		}
	} else {
		/* DATA */
		if (code == 354 && d->accepted > 0 && !d->mail_failed) {
			d->body_done = 0;
			d->body_bol = 1;
			deliver_enter_state(d, DS_BODY);
			(void)deliver_body(d);
			return;
		}
		/* DATA can only start (354) or fail (4xx/5xx): a 2xx here
		 * would mark a message sent whose body never left. */
		if (code / 100 == 2 || (code / 100 == 3 && code != 354)) {
			deliver_desync(d, "unexpected reply to DATA");
			return;
		}
		if (code == 354) {
			/* Nobody to send to: end the empty message.  Its
			 * reply ends up in DS_RSET's place: wait for it in
			 * DS_DOT with every recipient already decided. */
			deliver_send(d, ".\r\n");
			deliver_enter_state(d, DS_DOT);
			return;
		}
		if (d->accepted > 0 && !d->mail_failed)
			deliver_set_rest(d, code, reply, NULL, "DATA");
		deliver_txn_rset(d);
		return;
	}
	/* Without PIPELINING: stop early when nothing can come of it. */
	if (!(d->ext & REPLY_EXT_PIPELINING) &&
	    (d->mail_failed || (d->recv_i == last && d->accepted == 0))) {
		deliver_txn_rset(d);
		return;
	}
	deliver_send_cmds(d);	/* the next one, or the window's next */
}

/*
 * A transaction that ends without a body ends with RSET, and its results
 * stand only on RSET's 2xx.  One final reply too many ("250" then "550"
 * to one RCPT) shifts every later reply a step, and a refusal shifted
 * into the last slot read (DATA's; without PIPELINING, a RCPT's or
 * MAIL's) reads like any other: only the reply due behind it shows the
 * shift, and it comes to the RSET (RFC 2920 section 3.1: nothing is
 * pipelined past DATA).
 * With a body it cannot happen: no RCPT is answered 354.  A connection
 * that ends here showed nothing out of step, and the results stand.
 */
static void
deliver_txn_rset(struct deliver *d)
{
	d->recv_i = d->txn->nrcpt + 2;
	d->send_i = d->recv_i + 1;
	deliver_send(d, "RSET\r\n");
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
	io_set_deadline(d->io, DELIVER_CMD_MS);
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
	io_set_deadline(d->io, DELIVER_DOT_MS);
	deliver_enter_state(d, DS_DOT);
	io_flush(d->io);
	return 0;
}

static void
deliver_finish_txn(struct deliver *d)
{
	struct deliver_txn *t = d->txn;

	d->txn = NULL;
	d->ops->done(d->arg, d, t);
	deliver_start_txn(d);
}

/* --- the end --- */

/*
 * The connection broke: the transaction in progress is deferred.  what
 * is our word for it, or the server's reply that ended it (a 421, a
 * refused RSET), worded as Postfix words a refusal.
 */
static void
deliver_lost(struct deliver *d, const char *what)
{
	char reason[DELIVER_REASON_MAX];
	const char *phase = textfile_nth(DELIVER_PHASE, d->state);

	if (phase[0] == '\0')
		phase = "talking";
	/* Within a transaction, name the command whose reply was due (the
	 * table's DS_TXN text is MAIL FROM's). */
	if (d->state == DS_TXN && d->txn != NULL && d->recv_i > 0)
		phase = d->send_i > d->txn->nrcpt + 2 ? "sending RSET" :
		    d->recv_i <= d->txn->nrcpt ? "sending RCPT TO" :
		    "sending DATA";
	if (strchr(what, ' ') && what[0] >= '2' && what[0] <= '5') {
		if (d->state <= DS_HELO)	/* Postfix's smtp_helo() */
			textfile_fmt(reason, sizeof(reason), "host %s "
			    "refused %s: %s", d->peer, "to talk to me", what);
		else	/* the command: "sending X" says it in these */
			textfile_fmt(reason, sizeof(reason), REPLY_SAID_PEER,
			    d->peer, what,
			    d->state == DS_TXN || d->state == DS_RSET ||
			    d->state == DS_STARTTLS ? phase + 8 :
			    d->state == DS_AUTH ? "AUTH" : "end of DATA");
	} else if (what == deliver_timed_out)	/* Postfix's words */
		textfile_fmt(reason, sizeof(reason), "conversation with %s "
		    "timed out while %s", d->peer, phase);
	else
		textfile_fmt(reason, sizeof(reason), "%s with %s while %s",
		    what, d->peer, phase);
	if (d->txn && d->state == DS_RSET) {
		deliver_give_back(d, reason);
		deliver_close(d, DR_OK, NULL, NULL);
		return;
	}
	if (d->txn) {
		/* A server's 421 brings its own code ("421 4.3.2 shutting
		 * down": dsn=4.3.2), as Postfix logs it. */
		char dsn[16] = "4.4.2";

		if (deliver_enh(what, dsn) && dsn[0] != '4')
			memcpy(dsn, "4.4.2", 6);
		deliver_set_rest(d, 451, reason, dsn, NULL);
		deliver_fail_open(d, DR_TEMP, dsn, reason);
		return;
	}
	if (d->state == DS_QUIT) {
		deliver_quit_done(d);
		return;
	}
	if (!d->used && d->state < DS_READY) {
		/* Greeting, TLS or AUTH trouble: like a failed connect, try
		 * the next address.  Connected, so 4.4.2 as in Postfix. */
		deliver_why(d, "4.4.2", "%s", reason);
		deliver_io_free(d);
		deliver_next_addr(d);
		return;
	}
	deliver_close(d, d->used ? DR_OK : DR_TEMP, "4.4.2", reason);
}

/*
 * Replies out of step with our commands.  Pipelined, the replies taken
 * before it showed may have been the wrong ones ("550 x" and "550 y",
 * a refusal's lines each ending in "550 ", read as two RCPTs' replies,
 * bounced a recipient the server took): trust none of the
 * transaction's, defer it all.
 */
static void
deliver_desync(struct deliver *d, const char *what)
{
	if (d->state == DS_TXN)
		deliver_untried(d->txn);
	deliver_lost(d, what);
}

/* No result yet for any recipient. */
static void
deliver_untried(struct deliver_txn *t)
{
	unsigned i;

	for (i = 0; i < t->nrcpt; i++) {
		t->rcpt[i].dsn[0] = '\0';
		t->rcpt[i].again = 0;
	}
}

/*
 * This address will not do (TLS or AUTH policy; deliver_why() has said
 * why): log it, say QUIT without waiting for its answer, and try the
 * next address.
 */
static void
deliver_refuse(struct deliver *d)
{
	log_info(LP_SMTP, "%s", d->why);
	if (d->io != NULL) {
		deliver_send(d, "QUIT\r\n");
		io_flush(d->io);
	}
	deliver_io_free(d);
	deliver_next_addr(d);
}

/* io frees the tls_conn with it. */
static void
deliver_io_free(struct deliver *d)
{
	io_free(d->io);
	d->io = NULL;
	d->tconn = NULL;
	d->tls_on = 0;
	d->lines[0] = '\0';	/* a reply cut off with the connection */
	d->nlines = 0;
}

/*
 * The transaction waiting at RSET goes back to the owner, never tried,
 * whatever went wrong there (refusal, 421, timeout, lost connection):
 * the last one is done, this one has not started, and a server that
 * ends a connection after so many messages is no reason to defer it.
 */
static void
deliver_give_back(struct deliver *d, const char *why)
{
	struct deliver_txn *t = d->txn;

	log_info(LP_SMTP, "%s: %s; the next message goes over a new "
	    "connection", t->id, why);
	d->txn = NULL;
	d->ops->unused(d->arg, d, t);
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
	deliver_io_free(d);
	d->ctimer.cb = deliver_on_reap;
	loop_timer_set(&d->ctimer, 0);
}

/* Closed for the reason deliver_why() kept: a 5.x.x fails for good. */
static void
deliver_close_why(struct deliver *d)
{
	deliver_close(d, d->why_dsn[0] == '5' ? DR_PERM : DR_TEMP,
	    d->why_dsn[0] ? d->why_dsn : "4.4.1", d->why);
}

/* Say QUIT and wait for its answer; r is how the connection ends then
 * (DR_TEMP: for the reason in d->why). */
static void
deliver_quit(struct deliver *d, enum deliver_result r)
{
	d->quit_r = r;
	deliver_enter_state(d, DS_QUIT);
	deliver_send(d, "QUIT\r\n");
}

/* QUIT answered, or the connection gone meanwhile: as quit_r says. */
static void
deliver_quit_done(struct deliver *d)
{
	if (d->quit_r == DR_OK)
		deliver_close(d, DR_OK, NULL, NULL);
	else
		deliver_close(d, d->quit_r, d->why_dsn, d->why);
}

static void
deliver_on_reap(struct loop_timer *t)
{
	deliver_abort(container_of(t, struct deliver, ctimer));
}

/* --- helpers --- */

/* Postfix's words for a failed MX or address lookup (its
 * dns_strerror()): DNS_TEMPFAIL may succeed later, DNS_NODATA is a name
 * that exists without the record. */
static void
deliver_why_dns(struct deliver *d, const char *dsn, const char *name,
    const char *type, enum dns_status st)
{
	deliver_why(d, dsn, "Host or domain name not found. Name service "
	    "error for name=%s type=%s: %s", name, type,
	    st == DNS_TEMPFAIL ? "Host not found, try again" :
	    st == DNS_NODATA ? "Host found but no data record of requested "
	    "type" : "Host not found");
}

/* Remember the latest trouble, for the log line if every hop fails.
 * Truncation is fine: it is a diagnostic. */
static void
deliver_why(struct deliver *d, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	/* Postfix names the server once one answered (a 421 banner, a
	 * refused STARTTLS), and says relay=none before. */
	d->why_relay[0] = '\0';
	if (d->io != NULL)
		textfile_fmt(d->why_relay, sizeof(d->why_relay), "%s:%u",
		    d->peer, d->port);
	textfile_copy(d->why_dsn, sizeof(d->why_dsn), dsn);
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
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

/* Does an address of the envelope have 8-bit bytes (SMTPUTF8 needed)? */
static int
deliver_txn_8bit(const struct deliver_txn *t)
{
	const unsigned char *s = (const unsigned char *)t->sender;
	unsigned i = 0;

	for (;;) {
		for (; *s != '\0'; s++)
			if (*s & 0x80)
				return 1;
		if (i == t->nrcpt)
			return 0;
		s = (const unsigned char *)t->rcpt[i++].address;
	}
}

const char *
deliver_relay(const struct deliver *d)
{
	return d->why_relay[0] != '\0' ? d->why_relay : NULL;
}
