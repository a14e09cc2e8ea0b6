/*
 * dns.c - c-ares on the event loop (see dns.h).  Owns the one ares
 * channel, a loop_fd per c-ares socket (made and freed from c-ares's
 * socket-state callback), the one timer that drives c-ares's retries, and
 * the mapping of raw answers to enum dns_status.  What a status means for
 * a message (defer, bounce) is deliver.c's business, not this file's.
 *
 * Queries go out with ares_send() and a query built here, so that every
 * one asks for DNSSEC status both ways: the AD bit (RFC 6840 §5.7) and an
 * EDNS0 OPT record with DO (RFC 3225).  A resolver that predates RFC 6840
 * reports AD only to a DO query (RFC 4035 §3.2.3), and one that gets
 * neither sends no AD even for secure data (NOTES.md).  DO also brings
 * RRSIGs into the answer section; every parser here skips records of
 * other types.  Because ares_send() does not interpret the rcode the way
 * ares_query() does, rcode and counts are read from the raw header here,
 * by the same code for MX, A/AAAA and TLSA.  c-ares 1.18 has no TLSA
 * parser, so dns_parse_tlsa() walks the message itself, with explicit
 * bounds at every step.
 *
 * The channel is opened when the first query needs it, not at start-up:
 * c-ares 1.18 allocates and writes ~74 KB of hash tables per channel,
 * which a relay that hands everything to an IP-literal smarthost never
 * uses.  dns_init() (once, at start) still builds one and closes it
 * again, so a server list c-ares refuses fails at start-up, and the
 * dnssec warning comes then.  dns_servers and dnssec are read there
 * only: a reload does not change them (main.c says so).
 *
 * Request lifetime (STYLE.md 14): a request stays allocated until c-ares
 * has called back for every query it sent.  dns_cancel() only marks it; the
 * answer that arrives later frees it without calling the user.  Answers
 * that come back synchronously from inside dns_query_*() (no server, no
 * memory) are delivered from a zero-delay timer, so the user's callback
 * never runs inside its own call to dns_query_*().  A user callback may
 * start or cancel lookups, but must not call dns_free(): it runs inside
 * ares_process_fd().
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* ares_send(), ares_parse_*_reply() and friends: deprecated since 1.28,
 * still there in 1.34, and the only ones 1.18 has (compat.h). */
#define CARES_NO_DEPRECATED
#include <ares.h>
#include <sodium.h>

#include "addr.h"
#include "config.h"
#include "dane.h"
#include "dns.h"
#include "log.h"
#include "loop.h"
#include "textfile.h"

#define DNS_TIMEOUT_MS	2000	/* first try; c-ares doubles it per round */
#define DNS_TRIES	3	/* rounds over the server list */
#define DNS_CSV_MAX	(CONFIG_MAX_DNS * \
	    (sizeof(((struct config *)0)->dns_servers[0]) + 1))
#define DNS_MSG_MAX	65535	/* a DNS message over TCP, RFC 1035 §4.2.2 */

/* RFC 1035 §4.1.1 header layout and the constants used from it. */
#define DNS_HDR_LEN	12
#define DNS_HDR_FLAGS1	2	/* QR opcode AA TC RD */
#define DNS_HDR_FLAGS2	3	/* RA Z AD CD rcode */
#define DNS_HDR_QDCOUNT	4
#define DNS_HDR_ANCOUNT	6
#define DNS_HDR_ARCOUNT	10
#define DNS_QR		0x80u
#define DNS_AD		0x20u	/* RFC 4035 §3.2.3 */
#define DNS_RCODE_MASK	0x0fu
#define DNS_RCODE_NOERROR	0
#define DNS_RCODE_NXDOMAIN	3
#define DNS_CLASS_IN	1
#define DNS_TYPE_A	1
#define DNS_TYPE_CNAME	5
#define DNS_TYPE_MX	15
#define DNS_TYPE_AAAA	28
#define DNS_TYPE_OPT	41	/* RFC 6891 */
#define DNS_TYPE_TLSA	52	/* RFC 6698 */

/* RFC 1035 §4.1.4 names on the wire. */
#define DNS_PTR_MASK	0xc0u	/* both bits: a compression pointer */
#define DNS_LABEL_MAX	63
#define DNS_WIRE_NAME_MAX 255	/* octets, root label included */
#define DNS_RR_FIXED	10	/* type class ttl rdlength after the name */
#define DNS_Q_FIXED	4	/* type class after the question's name */
#define DNS_RR_BAD	((size_t)-1)	/* dns_rr(): not a record */

/* The OPT record appended to every query (RFC 6891 §6.1.2): root owner,
 * type, UDP payload size in the class, a TTL of extended rcode, version
 * and flags (DO is the top bit of the flags), empty RDATA. */
#define DNS_OPT_LEN	11
#define DNS_OPT_FLAGS	7	/* offset of the flags' first octet */
#define DNS_OPT_DO	0x80u
#define DNS_EDNS_UDP	1232	/* DNS flag day 2020; larger goes over TCP */
#define DNS_QUERY_MAX	(DNS_HDR_LEN + DNS_WIRE_NAME_MAX + DNS_Q_FIXED + \
	    DNS_OPT_LEN)
#define DNS_PORT_MAX	65535

/* A request sends at most two queries: MX or TLSA alone, or AAAA and A. */
#define DNS_SLOTS	2
#define DNS_SLOT_V6	0
#define DNS_SLOT_V4	1

enum dns_kind {
	DNS_KIND_MX,
	DNS_KIND_ADDR,
	DNS_KIND_TLSA,
};

union dns_cb {
	dns_mx_cb *mx;
	dns_addr_cb *addr;
	dns_tlsa_cb *tlsa;
};

struct dns_sock {
	struct dns_sock *next;
	struct loop_fd lfd;		/* the callback may free this */
};

struct dns_slot {			/* one c-ares query of a request */
	struct dns_req *req;
	enum dns_status st;
	int ad;				/* AD bit in the answer's header */
	int n;				/* records parsed */
	unsigned char *raw;		/* copy of the answer, for dns_raw() */
	size_t rawlen;
};

struct dns_req {
	/* The small members first: x86-64 reaches offsets < 128 with a
	 * one-byte displacement. */
	struct dns_req *prev, *next;	/* dns_reqs: every live request */
	union dns_cb cb;		/* by kind */
	void *arg;
	/* TLSA only: DNS_MAX_TLSA records of up to 1.1 KB each, too big to
	 * sit in every request's union. */
	struct dns_tlsa_rdata *tlsa;
	int pending;			/* queries c-ares still owes us */
	/* Bytes: a store or test of one is shorter code than of an int. */
	uint8_t kind;			/* enum dns_kind */
	uint8_t starting;		/* inside dns_query_*() */
	uint8_t cancelled;		/* never call the user again */
	uint8_t delivering;		/* inside the user's callback */
	struct loop_timer timer;	/* deferred delivery; may free req */
	struct dns_slot slot[DNS_SLOTS];
	char name[DNS_NAME_MAX + 1];
	char canon[DNS_NAME_MAX + 1];	/* addresses: dns_canon() */
	union {
		struct dns_mx mx[DNS_MAX_MX];
		struct dns_addr addr[DNS_SLOTS][DNS_MAX_ADDR];
	} u;
};


static int dns_channel_open(void);
static void dns_channel_free(void);
static void dns_check_servers(void);
static struct dns_req *dns_query(enum dns_kind, const char *, union dns_cb,
    void *);
static void dns_req_free(struct dns_req *);
static void dns_send(struct dns_req *, int, int);
static void dns_start(struct dns_req *);
static void dns_on_answer(void *, int, int, unsigned char *, int);
/* always_inline here and on dns_deliver_addr() and dns_parse_addr():
 * measured smaller than the calls LTO kept. */
static inline void dns_record(struct dns_req *, struct dns_slot *, int,
    const unsigned char *, size_t) __attribute__((always_inline));
static void dns_on_timer_deliver(struct loop_timer *);
static void dns_deliver(struct dns_req *);
static void dns_deliver_one(struct dns_req *);
static inline void dns_deliver_addr(struct dns_req *)
    __attribute__((always_inline));
static int dns_canon_of(const struct dns_req *, char *, size_t);
static enum dns_status dns_from_ares(int);
static int dns_classify(const unsigned char *, size_t, enum dns_status *);
static inline int dns_parse_addr(const unsigned char *, size_t, int,
    struct dns_addr *, int, int *, enum dns_status *)
    __attribute__((always_inline));
static int dns_host_ok(const char *);
static int dns_question(const unsigned char *, size_t, size_t *, char *);
static unsigned dns_rr(const unsigned char *, size_t, size_t *, size_t *);
static int dns_skip_name(const unsigned char *, size_t, size_t *);
static int dns_get_name(const unsigned char *, size_t, size_t *, char *,
    size_t);
static int dns_cname_link(const unsigned char *, size_t, size_t, unsigned,
    const char *, char *, size_t);
static unsigned dns_get16(const unsigned char *);
static int dns_mx_cmp(const void *, const void *);
static void dns_on_sock_state(void *, ares_socket_t, int, int);
static void dns_on_fd(struct loop_fd *, unsigned);
static void dns_on_timer(struct loop_timer *);
static void dns_timer_update(void);

/* In enum dns_status order, NUL-separated (textfile_nth()); aligned(1):
 * the ABI's 16 for an array this long is only padding here. */
static const char dns_status_names[] __attribute__((aligned(1))) =
    "ok\0nxdomain\0nodata\0nullmx\0tempfail";
/* In enum dns_kind order, likewise: what a request asks for. */
static const char dns_kind_names[] = "MX\0AAAA+A\0TLSA";

static ares_channel dns_channel;	/* NULL until a query needs it */
static int dns_lib_ready;
static int dns_configured;		/* dns_init() succeeded */
static char dns_csv[DNS_CSV_MAX];	/* dns_servers; "" resolv.conf's */
static int dns_destroying;		/* ares_destroy() is calling back */
static int dns_dnssec;
static struct dns_sock *dns_socks;
static struct dns_req *dns_reqs;
static struct loop_timer dns_timer = { .cb = dns_on_timer };
/* Channel openings failed in a row: a run is logged at its first and
 * when it ends, not once per query. */
static unsigned dns_failing;
static const unsigned char *dns_raw_buf;	/* valid during a callback */
static size_t dns_raw_len;
static const char *dns_canon_name;	/* valid during an address callback */

/* --- set-up ------------------------------------------------------------ */

int
dns_init(const struct config *conf)
{
	char csv[DNS_CSV_MAX];
	size_t off = 0, l;
	int i, rc;

	for (i = 0; i < conf->dns_n && i < CONFIG_MAX_DNS; i++) {
		l = textfile_strnlen(conf->dns_servers[i],
		    sizeof(conf->dns_servers[i]));
		if (off + l + 2 > sizeof(csv))
			log_fatalx(LP_SMTP, "dns_init: server list too "
			    "long");
		if (off)
			csv[off++] = ',';
		memcpy(csv + off, conf->dns_servers[i], l);
		off += l;
	}
	csv[off] = '\0';
	if (!dns_lib_ready) {
		rc = ares_library_init(ARES_LIB_INIT_ALL);
		if (rc != ARES_SUCCESS) {
			log_warnx(LP_SMTP, "dns: c-ares: %s", ares_strerror(rc));
			return -1;
		}
		dns_lib_ready = 1;
	}
	memcpy(dns_csv, csv, off + 1);
	dns_dnssec = conf->dnssec;
	dns_failing = 0;	/* its own failure is always told */
	if (dns_channel_open() == -1) {
		dns_free();
		return -1;
	}
	log_trace(TRACE_DNS, "dns: servers %s", off ? csv :
	    "from /etc/resolv.conf");
	/* Checked; the first query opens it again (see the top). */
	dns_channel_free();
	dns_configured = 1;
	return 0;
}

/*
 * The channel as dns_init() configured it: dns_csv's servers, or
 * resolv.conf's as c-ares reads them now (so the dnssec check runs on
 * every opening: the file may have changed since start).  -1 when c-ares
 * cannot set it up; dns_send() then answers each query itself with a
 * temporary failure, and the delivery is deferred.  The next query tries
 * again, so a run of failures is logged at its first and when it ends.
 */
static int
dns_channel_open(void)
{
	struct ares_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	/* Names are FQDNs: no search list, no HOSTALIASES.  EDNS as our
	 * OPT record says: without it c-ares 1.18 drops a UDP answer past
	 * 512 bytes (most signed ones) and asks again over TCP. */
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	o.ednspsz = DNS_EDNS_UDP;
	o.timeout = DNS_TIMEOUT_MS;
	o.tries = DNS_TRIES;
	o.sock_state_cb = dns_on_sock_state;
	o.sock_state_cb_data = NULL;
	if ((rc = ares_init_options(&dns_channel, &o, ARES_OPT_FLAGS |
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB |
	    ARES_OPT_EDNSPSZ)) !=
	    ARES_SUCCESS) {
		dns_channel = NULL;
		if (dns_failing++ == 0)
			log_warnx(LP_SMTP, "dns: cannot set up the resolver: "
			    "%s", ares_strerror(rc));
		return -1;
	}
	if (dns_csv[0] != '\0' &&
	    (rc = ares_set_servers_ports_csv(dns_channel, dns_csv)) !=
	    ARES_SUCCESS) {
		if (dns_failing++ == 0)
			log_warnx(LP_SMTP, "dns: dns_servers %s: %s", dns_csv,
			    ares_strerror(rc));
		dns_channel_free();
		return -1;
	}
	if (dns_failing) {
		log_info(LP_SMTP, "dns: resolver set up after %u failed "
		    "attempts", dns_failing);
		dns_failing = 0;
	}
	dns_check_servers();
	return 0;
}

static void
dns_channel_free(void)
{
	if (dns_channel == NULL)
		return;
	/* Every pending query calls back with ARES_EDESTRUCTION; the
	 * callbacks free their requests and call no user. */
	dns_destroying = 1;
	ares_destroy(dns_channel);
	dns_channel = NULL;
	dns_destroying = 0;
}

/* DESIGN.md: dnssec = yes trusts the AD bit, which only means something
 * when the path to the validating resolver cannot be tampered with. */
static void
dns_check_servers(void)
{
	struct ares_addr_port_node *srv = NULL, *s;
	char buf[INET6_ADDRSTRLEN];
	int local;

	if (!dns_dnssec || ares_get_servers_ports(dns_channel, &srv) !=
	    ARES_SUCCESS)
		return;
	for (s = srv; s != NULL; s = s->next) {
		if (s->family == AF_INET)
			local = (ntohl(s->addr.addr4.s_addr) >> 24) == 127;
		else if (s->family == AF_INET6)
			local = IN6_IS_ADDR_LOOPBACK(
			    (const struct in6_addr *)(const void *)
			    &s->addr.addr6);
		else
			continue;
		if (local)
			continue;
		/* addr4 and addr6 share the union's start: one call (it
		 * cannot fail for these families and this buffer). */
		(void)inet_ntop(s->family, &s->addr, buf, sizeof(buf));
		log_warnx(LP_SMTP, "dns: dnssec = yes trusts the AD bit from "
		    "%s, which is not a loopback address", buf);
	}
	ares_free_data(srv);
}

void
dns_free(void)
{
	struct dns_sock *s;

	dns_channel_free();
	dns_configured = 0;
	while (dns_reqs != NULL)	/* answered, waiting for the timer */
		dns_req_free(dns_reqs);
	while ((s = dns_socks) != NULL) {
		dns_socks = s->next;
		loop_fd_del(&s->lfd);
		free(s);
	}
	loop_timer_cancel(&dns_timer);
	if (dns_lib_ready)
		ares_library_cleanup();
	dns_lib_ready = 0;
}

const char *
dns_status_name(enum dns_status st)
{
	if ((unsigned)st > DNS_TEMPFAIL)
		return "unknown";
	return textfile_nth(dns_status_names, st);
}

const unsigned char *
dns_raw(size_t *len)
{
	*len = dns_raw_len;
	return dns_raw_buf;
}

const char *
dns_canon(void)
{
	return dns_canon_name;
}

/* --- requests ---------------------------------------------------------- */

struct dns_req *
dns_query_mx(const char *domain, dns_mx_cb *cb, void *arg)
{
	return dns_query(DNS_KIND_MX, domain, (union dns_cb){ .mx = cb }, arg);
}

struct dns_req *
dns_query_addr(const char *host, dns_addr_cb *cb, void *arg)
{
	return dns_query(DNS_KIND_ADDR, host, (union dns_cb){ .addr = cb },
	    arg);
}

/*
 * RFC 6698 §3: the TLSA owner is _PORT._tcp.HOST; the name goes out
 * absolute, so no search list could ever be tried.  A host too long for
 * the prefix leaves the name empty: answered NXDOMAIN without a query,
 * as for the other lookups.
 */
struct dns_req *
dns_query_tlsa(const char *host, unsigned port, dns_tlsa_cb *cb, void *arg)
{
	char name[DNS_NAME_MAX + 2];
	size_t l = strlen(host);
	int w;

	w = snprintf(name, sizeof(name), "_%u._tcp.%s%s", port, host,
	    l > 0 && host[l - 1] == '.' ? "" : ".");
	/* An empty host or a port that is not one is no name to ask. */
	if (w < 0 || (size_t)w >= sizeof(name) || l == 0 || port == 0 ||
	    port > DNS_PORT_MAX)
		name[0] = '\0';
	return dns_query(DNS_KIND_TLSA, name, (union dns_cb){ .tlsa = cb },
	    arg);
}

/* The three lookups' common part: one request, its callback, started. */
static struct dns_req *
dns_query(enum dns_kind kind, const char *name, union dns_cb cb, void *arg)
{
	struct dns_req *req;
	size_t l;
	int i;

	if (!dns_configured) {
		/* The line as it was when dns_req_new() was apart. */
		log_warnx(LP_SMTP, "dns_req_new: resolver not set up");
		return NULL;
	}
	/* One failure path: nothing is linked or set yet. */
	if ((req = calloc(1, sizeof(*req))) == NULL ||
	    (kind == DNS_KIND_TLSA && (req->tlsa = calloc(DNS_MAX_TLSA,
	    sizeof(*req->tlsa))) == NULL)) {
		log_warn(LP_SMTP, "dns: query %s", name);
		free(req);
		return NULL;
	}
	req->kind = kind;
	req->arg = arg;
	req->cb = cb;
	req->timer.cb = dns_on_timer_deliver;
	for (i = 0; i < DNS_SLOTS; i++)
		req->slot[i].req = req;
	/* A longer name cannot exist: name stays empty and dns_send()
	 * answers EBADNAME, i.e. NXDOMAIN. */
	l = strlen(name);
	if (l <= DNS_NAME_MAX)
		memcpy(req->name, name, l + 1);
	req->next = dns_reqs;
	if (dns_reqs != NULL)
		dns_reqs->prev = req;
	dns_reqs = req;
	dns_start(req);
	return req;
}

void
dns_cancel(struct dns_req *req)
{
	if (req == NULL)
		return;
	log_trace(TRACE_DNS, "dns %p: cancel %s", (void *)req, req->name);
	req->cancelled = 1;
	/* Inside its own callback: dns_deliver() frees it on return.
	 * Still in c-ares: freed when the last answer comes back. */
	if (req->delivering || req->pending > 0)
		return;
	dns_req_free(req);
}

static void
dns_req_free(struct dns_req *req)
{
	int i;

	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		dns_reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	loop_timer_cancel(&req->timer);
	for (i = 0; i < DNS_SLOTS; i++)
		free(req->slot[i].raw);
	free(req->tlsa);
	free(req);
}

static void
dns_start(struct dns_req *req)
{
	log_trace(TRACE_DNS, "dns %p: %s %s", (void *)req,
	    textfile_nth(dns_kind_names, req->kind), req->name);
	/* pending covers every query before the first is sent, so an
	 * answer given synchronously cannot look like the last one. */
	req->pending = req->kind == DNS_KIND_ADDR ? DNS_SLOTS : 1;
	req->starting = 1;
	if (dns_channel == NULL)
		(void)dns_channel_open();	/* else dns_send() answers */
	if (req->kind == DNS_KIND_MX)
		dns_send(req, 0, DNS_TYPE_MX);
	else if (req->kind == DNS_KIND_TLSA)
		dns_send(req, 0, DNS_TYPE_TLSA);
	else {
		dns_send(req, DNS_SLOT_V6, DNS_TYPE_AAAA);
		dns_send(req, DNS_SLOT_V4, DNS_TYPE_A);
	}
	req->starting = 0;
	if (req->pending == 0)
		loop_timer_set(&req->timer, 0);
	dns_timer_update();
}

/*
 * c-ares encodes the question (escapes, label limits); the OPT record is
 * appended here rather than by ares_create_query(), whose OPT has no way
 * to carry DO.  ares_send() puts its own query id in.
 */
static void
dns_send(struct dns_req *req, int slot, int type)
{
	unsigned char msg[DNS_QUERY_MAX], *q = NULL, *opt;
	int qlen = 0, rc;

	if (dns_channel == NULL)
		rc = ARES_ECONNREFUSED;	/* no resolver now: try again later */
	else if (req->name[0] == '\0')
		rc = ARES_EBADNAME;	/* empty, or longer than DNS_NAME_MAX */
	else
		rc = ares_create_query(req->name, DNS_CLASS_IN, type, 0, 1,
		    &q, &qlen, 0);
	if (rc == ARES_SUCCESS && (qlen < DNS_HDR_LEN ||
	    (size_t)qlen > sizeof(msg) - DNS_OPT_LEN ||
	    q[DNS_HDR_ARCOUNT] != 0 || q[DNS_HDR_ARCOUNT + 1] != 0)) {
		log_warnx(LP_SMTP, "dns_send: unexpected query from c-ares "
		    "for %s", req->name);
		rc = ARES_EBADQUERY;
	}
	if (rc != ARES_SUCCESS) {
		if (q != NULL)
			ares_free_string(q);
		dns_on_answer(&req->slot[slot], rc, 0, NULL, 0);
		return;
	}
	memcpy(msg, q, (size_t)qlen);
	ares_free_string(q);
	msg[DNS_HDR_FLAGS2] |= DNS_AD;		/* RFC 6840 §5.7 */
	msg[DNS_HDR_ARCOUNT + 1] = 1;
	opt = msg + qlen;
	memset(opt, 0, DNS_OPT_LEN);		/* owner: the root */
	opt[1] = DNS_TYPE_OPT >> 8;
	opt[2] = DNS_TYPE_OPT & 0xff;
	opt[3] = DNS_EDNS_UDP >> 8;
	opt[4] = DNS_EDNS_UDP & 0xff;
	opt[DNS_OPT_FLAGS] = DNS_OPT_DO;	/* RFC 3225 */
	ares_send(dns_channel, msg, qlen + DNS_OPT_LEN, dns_on_answer,
	    &req->slot[slot]);
}

/* c-ares's callback for one query; abuf is valid only during the call. */
static void
dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_slot *sl = arg;
	struct dns_req *req = sl->req;

	(void)timeouts;
	req->pending--;
	if (status == ARES_EDESTRUCTION || dns_destroying || req->cancelled) {
		if (req->pending == 0)
			dns_req_free(req);
		return;
	}
	dns_record(req, sl, status, abuf, alen > 0 ? (size_t)alen : 0);
	if (req->pending > 0 || req->starting)
		return;
	dns_deliver(req);
}

static void
dns_record(struct dns_req *req, struct dns_slot *sl, int status,
    const unsigned char *abuf, size_t alen)
{
	int i = (int)(sl - req->slot), bad = 0;
	const char *type = NULL;

	if (status != ARES_SUCCESS || abuf == NULL) {
		sl->st = dns_from_ares(status);
		log_trace(TRACE_DNS, "dns %p: %s: %s", (void *)req, req->name,
		    ares_strerror(status));
		return;
	}
	if (alen >= DNS_HDR_LEN)
		sl->ad = (abuf[DNS_HDR_FLAGS2] & DNS_AD) != 0;
	if ((sl->raw = malloc(alen ? alen : 1)) != NULL) {
		memcpy(sl->raw, abuf, alen);
		sl->rawlen = alen;
	}
	if (req->kind == DNS_KIND_MX)
		bad = dns_parse_mx(abuf, alen, req->u.mx, DNS_MAX_MX, &sl->n,
		    &sl->st);
	else if (req->kind == DNS_KIND_TLSA) {
		/* The records point into the copy, which lives until the
		 * callback has run; without one the answer is lost. */
		if (sl->raw == NULL)
			sl->st = DNS_TEMPFAIL;
		else
			bad = dns_parse_tlsa(sl->raw, alen, req->tlsa,
			    DNS_MAX_TLSA, &sl->n, &sl->ad, &sl->st);
	} else {
		bad = dns_parse_addr(abuf, alen, i == DNS_SLOT_V6 ? AF_INET6 :
		    AF_INET, req->u.addr[i], DNS_MAX_ADDR, &sl->n, &sl->st);
		type = i == DNS_SLOT_V6 ? "AAAA" : "A";
	}
	/* One line for every type: "MX", "TLSA", or the slot's family. */
	if (bad == -1)
		log_info(LP_SMTP, "dns: malformed %s answer for %s",
		    type != NULL ? type : textfile_nth(dns_kind_names,
		    req->kind), req->name);
}

static void
dns_on_timer_deliver(struct loop_timer *t)
{
	struct dns_req *req = container_of(t, struct dns_req, timer);

	dns_deliver(req);
}

/* Every query has answered: call the user once, then free. */
static void
dns_deliver(struct dns_req *req)
{
	if (req->cancelled) {
		dns_req_free(req);
		return;
	}
	req->delivering = 1;
	if (req->kind == DNS_KIND_ADDR)
		dns_deliver_addr(req);
	else
		dns_deliver_one(req);
	dns_raw_buf = NULL;
	dns_raw_len = 0;
	dns_canon_name = NULL;
	dns_req_free(req);
}

/* MX or TLSA: one query, one answer. */
static void
dns_deliver_one(struct dns_req *req)
{
	struct dns_slot *sl = &req->slot[0];
	int secure = dns_dnssec && sl->raw != NULL && sl->ad;
	int n = sl->st == DNS_OK ? sl->n : 0;

	log_trace(TRACE_DNS, "dns %p: %s %s: %s, %d, secure=%d", (void *)req,
	    textfile_nth(dns_kind_names, req->kind), req->name,
	    dns_status_name(sl->st), sl->n, secure);
	dns_raw_buf = sl->raw;
	dns_raw_len = sl->rawlen;
	if (req->kind == DNS_KIND_MX)
		req->cb.mx(req->arg, sl->st, secure, req->u.mx, n);
	else
		req->cb.tlsa(req->arg, sl->st, secure, req->tlsa, n);
}

/*
 * IPv6 first, then IPv4 (dns.h).  When both families have more than fits,
 * each keeps at least half of the room, so a host with many AAAA records
 * is still tried over IPv4 too.
 */
static void
dns_deliver_addr(struct dns_req *req)
{
	struct dns_addr out[DNS_MAX_ADDR];
	struct dns_slot *s6 = &req->slot[DNS_SLOT_V6];
	struct dns_slot *s4 = &req->slot[DNS_SLOT_V4];
	enum dns_status st;
	int n6, n4, room6, secure;

	n6 = s6->st == DNS_OK ? s6->n : 0;
	n4 = s4->st == DNS_OK ? s4->n : 0;
	room6 = DNS_MAX_ADDR - n4;
	if (room6 < DNS_MAX_ADDR / 2)
		room6 = DNS_MAX_ADDR / 2;
	if (n6 > room6)
		n6 = room6;
	if (n4 > DNS_MAX_ADDR - n6)
		n4 = DNS_MAX_ADDR - n6;
	memcpy(out, req->u.addr[DNS_SLOT_V6], (size_t)n6 * sizeof(out[0]));
	memcpy(out + n6, req->u.addr[DNS_SLOT_V4], (size_t)n4 * sizeof(out[0]));

	if (n6 + n4 > 0)
		st = DNS_OK;
	else if (s6->st == DNS_NXDOMAIN && s4->st == DNS_NXDOMAIN)
		st = DNS_NXDOMAIN;
	else if (s6->st == DNS_TEMPFAIL || s4->st == DNS_TEMPFAIL)
		st = DNS_TEMPFAIL;
	else
		st = DNS_NODATA;
	/* Secure if every answer that came back validated.  A family whose
	 * lookup failed (a bogus answer is a SERVFAIL) gives no address
	 * and has no say, as in Postfix: taking the host for insecure
	 * would let whoever can spoil one answer turn DANE off. */
	secure = dns_dnssec && (s6->st != DNS_TEMPFAIL ||
	    s4->st != DNS_TEMPFAIL) && (s6->st == DNS_TEMPFAIL || s6->ad) &&
	    (s4->st == DNS_TEMPFAIL || s4->ad);
	log_trace(TRACE_DNS, "dns %p: AAAA+A %s: %s, %d+%d, secure=%d",
	    (void *)req, req->name, dns_status_name(st), n6, n4, secure);
	if (s4->raw != NULL) {
		dns_raw_buf = s4->raw;
		dns_raw_len = s4->rawlen;
	} else {
		dns_raw_buf = s6->raw;
		dns_raw_len = s6->rawlen;
	}
	if (st == DNS_OK && dns_canon_of(req, req->canon,
	    sizeof(req->canon)) == 1) {
		dns_canon_name = req->canon;
		log_trace(TRACE_DNS, "dns %p: %s is an alias of %s",
		    (void *)req, req->name, req->canon);
	}
	req->cb.addr(req->arg, st, secure, out, n6 + n4);
}

/*
 * Where the host's CNAME chain ends, from both answers: each (that came
 * back at all) must tell the same story, or nothing is claimed and the
 * caller keeps the name it asked for, the safe choice for DANE (the
 * original name is always a TLSA base domain to try, RFC 7671 section 7).
 * 1 an alias (out set), 0 not, -1 answers that cannot be followed.
 */
static int
dns_canon_of(const struct dns_req *req, char *out, size_t outsz)
{
	char name[DNS_NAME_MAX + 1];
	int i, rc, seen = 0, got = 0;

	for (i = 0; i < DNS_SLOTS; i++) {
		if (req->slot[i].raw == NULL)
			continue;
		rc = dns_parse_cname(req->slot[i].raw, req->slot[i].rawlen,
		    name, sizeof(name));
		if (rc == -1 || (seen && rc != got) || (seen && rc == 1 &&
		    strcmp(name, out) != 0))
			return -1;
		if (rc == 1 && !seen)
			textfile_copy(out, outsz, name);
		seen = 1;
		got = rc;
	}
	return seen ? got : 0;
}

static enum dns_status
dns_from_ares(int status)
{
	switch (status) {
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:	/* cannot exist, e.g. a label over 63 */
		return DNS_NXDOMAIN;
	default:		/* SERVFAIL, REFUSED, timeout, no memory... */
		return DNS_TEMPFAIL;
	}
}

/* --- parsing: pure functions on the raw answer ------------------------- */

/*
 * The header decides before any record is read.  Returns 1 when there are
 * answer records to parse, 0 when *st is already the answer, -1 when the
 * message is not a usable response (*st = DNS_TEMPFAIL).  RFC 6604: with
 * a CNAME chain the rcode speaks of the last name, so NXDOMAIN holds even
 * with answer records.
 */
static int
dns_classify(const unsigned char *buf, size_t len, enum dns_status *st)
{
	unsigned rcode;

	*st = DNS_TEMPFAIL;
	if (buf == NULL || len < DNS_HDR_LEN || len > DNS_MSG_MAX ||
	    !(buf[DNS_HDR_FLAGS1] & DNS_QR))
		return -1;
	rcode = buf[DNS_HDR_FLAGS2] & DNS_RCODE_MASK;
	if (rcode == DNS_RCODE_NXDOMAIN) {
		*st = DNS_NXDOMAIN;
		return 0;
	}
	if (rcode != DNS_RCODE_NOERROR)	/* SERVFAIL, REFUSED, ... */
		return 0;
	if (buf[DNS_HDR_ANCOUNT] == 0 && buf[DNS_HDR_ANCOUNT + 1] == 0) {
		*st = DNS_NODATA;
		return 0;
	}
	return 1;
}

/*
 * MX per RFC 5321 §5.1: sorted by preference, equal preferences in random
 * order; the lowest "max" kept (ties at the cut chosen at random too).
 * RFC 7505: a set made only of "." targets is a null MX.  A "." among real
 * hosts (which §3 forbids) and targets that are not host names are
 * skipped; if nothing usable is left the answer counts as malformed.
 * Returns 0 when the answer was understood (*st says what it said), -1
 * when it was malformed (*st = DNS_TEMPFAIL).
 */
int
dns_parse_mx(const unsigned char *buf, size_t len, struct dns_mx *mx,
    int max, int *n, enum dns_status *st)
{
	struct ares_mx_reply *head = NULL, *r;
	struct dns_mx *all = NULL, tmp;
	size_t count = 0, usable = 0, empty = 0, i, j, k, run;
	int rc = -1, ares;

	*n = 0;
	if ((rc = dns_classify(buf, len, st)) != 1)
		return rc;
	rc = -1;
	*st = DNS_TEMPFAIL;
	ares = ares_parse_mx_reply(buf, (int)len, &head);
	if (ares == ARES_ENODATA || (ares == ARES_SUCCESS && head == NULL)) {
		/* e.g. only a CNAME to a name without MX */
		*st = DNS_NODATA;
		rc = 0;
		goto done;
	}
	if (ares != ARES_SUCCESS)
		goto done;
	for (r = head; r != NULL; r = r->next)
		count++;
	if ((all = calloc(count, sizeof(*all))) == NULL)
		goto done;
	for (r = head; r != NULL; r = r->next) {
		if (r->host == NULL || r->host[0] == '\0') {
			empty++;
			continue;
		}
		if (!dns_host_ok(r->host))
			continue;
		all[usable].pref = r->priority;
		strcpy(all[usable].host, r->host);	/* length checked */
		usable++;
	}
	if (usable == 0) {
		if (empty == count) {
			*st = DNS_NULLMX;
			rc = 0;
		}
		goto done;
	}
	qsort(all, usable, sizeof(*all), dns_mx_cmp);
	for (i = 0; i < usable; i = j) {
		for (j = i + 1; j < usable && all[j].pref == all[i].pref; j++)
			;
		/* Fisher-Yates over the run [i, j). */
		for (run = j - i; run > 1; run--) {
			k = randombytes_uniform((uint32_t)run);
			tmp = all[i + run - 1];
			all[i + run - 1] = all[i + k];
			all[i + k] = tmp;
		}
	}
	if (max < 0)
		max = 0;
	if (usable > (size_t)max)
		usable = (size_t)max;
	if (usable > 0)
		memcpy(mx, all, usable * sizeof(*all));
	*n = (int)usable;
	*st = DNS_OK;
	rc = 0;
done:
	free(all);
	if (head != NULL)
		ares_free_data(head);
	return rc;
}

static int
dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* A target we are willing to look up and name in logs: letters, digits,
 * '-', '_' and dots.  c-ares writes other octets as \DDD or \., which ends
 * up here and is refused. */
static int
dns_host_ok(const char *h)
{
	size_t i;

	for (i = 0; h[i] != '\0'; i++) {
		if (i >= DNS_NAME_MAX)
			return 0;
		if (!addr_letdig((unsigned char)h[i]) && h[i] != '-' &&
		    h[i] != '_' && h[i] != '.')
			return 0;
	}
	return i > 0;
}

/* One family's answer into dns_addr entries with port 0.  Same return
 * convention as dns_parse_mx(). */
static int
dns_parse_addr(const unsigned char *buf, size_t len, int family,
    struct dns_addr *out, int max, int *n, enum dns_status *st)
{
	struct ares_addrttl a4[DNS_MAX_ADDR];
	struct ares_addr6ttl a6[DNS_MAX_ADDR];
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	int rc, i, got = max < DNS_MAX_ADDR ? max : DNS_MAX_ADDR;

	*n = 0;
	if ((rc = dns_classify(buf, len, st)) != 1)
		return rc;
	*st = DNS_TEMPFAIL;
	if (family == AF_INET6)
		rc = ares_parse_aaaa_reply(buf, (int)len, NULL, a6, &got);
	else
		rc = ares_parse_a_reply(buf, (int)len, NULL, a4, &got);
	if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && got <= 0)) {
		*st = DNS_NODATA;
		return 0;
	}
	if (rc != ARES_SUCCESS)
		return rc == ARES_ENOMEM ? 0 : -1;
	for (i = 0; i < got; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		if (family == AF_INET6) {
			sin6 = (struct sockaddr_in6 *)(void *)&out[i].ss;
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, &a6[i].ip6addr,
			    sizeof(sin6->sin6_addr));
			out[i].len = sizeof(*sin6);
		} else {
			sin = (struct sockaddr_in *)(void *)&out[i].ss;
			sin->sin_family = AF_INET;
			sin->sin_addr = a4[i].ipaddr;
			out[i].len = sizeof(*sin);
		}
	}
	*n = got;
	*st = DNS_OK;
	return 0;
}

/*
 * TLSA (RFC 6698) from the raw message.  The question must be one TLSA IN
 * question (c-ares already matched it to the query); in the answer,
 * TLSA IN records are kept in order, everything else (the CNAMEs the
 * resolver followed, RRSIGs that DO brings) is stepped over.  Owner names
 * are not compared with the CNAME chain: the resolver built the chain,
 * and whether it is trustworthy is what the AD bit says.  RDATA of any
 * length is returned (pointing into buf), so the set can neither shrink
 * to "no TLSA" nor lose the one record that matches; "max" are returned,
 * usable ones (dane_tlsa_unusable()) before the rest.  Short RDATA
 * (under 3 octets) is returned as sent, for dane_tlsa_parse() to
 * refuse.  *secure is the AD bit of an answer that is not a failure.
 * Returns 0 understood, -1 malformed (*st = DNS_TEMPFAIL, *secure = 0,
 * *n = 0).
 */
int
dns_parse_tlsa(const unsigned char *buf, size_t len,
    struct dns_tlsa_rdata *out, int max, int *n, int *secure,
    enum dns_status *st)
{
	size_t off, rdlen;
	unsigned an, i, found = 0;
	int rc, kept = 0, j;

	*n = 0;
	*secure = 0;
	if ((rc = dns_classify(buf, len, st)) == -1)
		return -1;
	if (rc == 1 || *st != DNS_TEMPFAIL)	/* records, or a denial */
		*secure = (buf[DNS_HDR_FLAGS2] & DNS_AD) != 0;
	if (rc == 0)
		return 0;
	an = dns_get16(buf + DNS_HDR_ANCOUNT);
	if (dns_question(buf, len, &off, NULL) != DNS_TYPE_TLSA)
		goto bad;
	for (i = 0; i < an; i++) {
		if (dns_rr(buf, len, &off, &rdlen) != DNS_TYPE_TLSA) {
			if (rdlen == DNS_RR_BAD)
				goto bad;
		} else {
			found++;
			/* Full: a usable record takes the place of the first
			 * unusable one kept.  A set cut down to unusable
			 * records would read "encrypt, do not authenticate"
			 * (RFC 7672 section 2.2); usable ones past max can
			 * only fail to match, which defers. */
			j = kept;
			if (kept == max && dane_tlsa_unusable(buf + off,
			    rdlen) == NULL)
				for (j = 0; j < max && dane_tlsa_unusable(
				    out[j].rdata, out[j].len) == NULL; j++)
					;
			if (j < max) {
				out[j].rdata = buf + off;
				out[j].len = rdlen;
				kept += j == kept;
			}
		}
		off += rdlen;
	}
	*st = found > 0 ? DNS_OK : DNS_NODATA;	/* e.g. only a CNAME */
	*n = kept;
	return 0;
bad:
	*st = DNS_TEMPFAIL;
	*secure = 0;
	return -1;
}

/*
 * The CNAME chain of an answer (RFC 1034 §3.6.2, §4.3.2: the resolver
 * puts every link it followed into the answer section).  Each link is
 * looked up by its owner, so the order of the records does not matter;
 * RRSIGs and the address records are stepped over.  A link whose owner
 * or target is not a host name, a loop or a chain longer than
 * DNS_CNAME_HOPS_MAX make the chain unusable (-1): the caller then keeps
 * the name it asked for.
 */
int
dns_parse_cname(const unsigned char *buf, size_t len, char *out,
    size_t outsz)
{
	char cur[DNS_NAME_MAX + 1], next[DNS_NAME_MAX + 1];
	enum dns_status st;
	size_t off;
	unsigned an, hops;
	int rc;

	if (out == NULL || outsz < DNS_NAME_MAX + 1)
		return -1;
	out[0] = '\0';
	if ((rc = dns_classify(buf, len, &st)) != 1)
		return rc;	/* -1, or 0: no answer records to follow */
	if (dns_question(buf, len, &off, cur) == -1)
		return -1;
	an = dns_get16(buf + DNS_HDR_ANCOUNT);
	for (hops = 0; ; hops++) {
		rc = dns_cname_link(buf, len, off, an, cur, next,
		    sizeof(next));
		if (rc == -1)
			return -1;
		if (rc == 0)
			break;
		if (hops == DNS_CNAME_HOPS_MAX)
			return -1;	/* too long, or a loop */
		memcpy(cur, next, sizeof(cur));
	}
	if (hops == 0)
		return 0;
	memcpy(out, cur, sizeof(cur));
	return 1;
}

/*
 * One link: the target of the CNAME IN record owned by "owner" among the
 * an answer records starting at off.  1 found (next set), 0 none, -1
 * malformed (including a CNAME whose RDATA is not exactly one name).
 * Owner names that are not host names cannot be the one looked for and
 * are stepped over.
 */
static int
dns_cname_link(const unsigned char *buf, size_t len, size_t off,
    unsigned an, const char *owner, char *next, size_t nextsz)
{
	char name[DNS_NAME_MAX + 1];
	size_t rdlen, end;
	unsigned i;
	int named;

	for (i = 0; i < an; i++) {
		end = off;
		named = dns_get_name(buf, len, &end, name, sizeof(name)) == 0;
		if (dns_rr(buf, len, &off, &rdlen) == DNS_TYPE_CNAME &&
		    named && strcmp(name, owner) == 0) {
			end = off;
			if (dns_get_name(buf, len, &end, next, nextsz) == -1 ||
			    end != off + rdlen || next[0] == '\0')
				return -1;
			return 1;
		}
		if (rdlen == DNS_RR_BAD)
			return -1;
		off += rdlen;
	}
	return 0;
}

/*
 * The one question of a message whose header dns_classify() passed:
 * its type when the class is IN, else 0; -1 when there is not exactly
 * one or it is malformed.  *off ends after it; out (NULL, or
 * DNS_NAME_MAX + 1 bytes) gets its name as dns_get_name() writes it.
 */
static int
dns_question(const unsigned char *buf, size_t len, size_t *off, char *out)
{
	*off = DNS_HDR_LEN;
	if (dns_get16(buf + DNS_HDR_QDCOUNT) != 1 ||
	    dns_get_name(buf, len, off, out, DNS_NAME_MAX + 1) == -1 ||
	    len - *off < DNS_Q_FIXED)
		return -1;
	*off += DNS_Q_FIXED;
	return dns_get16(buf + *off - 2) == DNS_CLASS_IN ?
	    (int)dns_get16(buf + *off - DNS_Q_FIXED) : 0;
}

/*
 * One resource record's name and fixed part at *off, checked against
 * len: its type when the class is IN, else 0, with *off at the RDATA and
 * *rdlen its length (which fits); 0 with *rdlen = DNS_RR_BAD when the
 * record is malformed.  The two walks over the answer section share it.
 */
static unsigned
dns_rr(const unsigned char *buf, size_t len, size_t *off, size_t *rdlen)
{
	const unsigned char *p;

	*rdlen = DNS_RR_BAD;
	if (dns_skip_name(buf, len, off) == -1 || len - *off < DNS_RR_FIXED)
		return 0;
	p = buf + *off;
	*off += DNS_RR_FIXED;
	if (dns_get16(p + 8) > len - *off)
		return 0;
	*rdlen = dns_get16(p + 8);
	return dns_get16(p + 2) == DNS_CLASS_IN ? dns_get16(p) : 0;
}

/*
 * Step over one name at *off (RFC 1035 §4.1.4) and check it on the way:
 * labels of at most 63 octets, 255 octets in all, pointers only to
 * earlier octets past the header, each one earlier than the last, so a
 * loop cannot be built.  *off ends after the name as it sits at *off
 * (after its first pointer, if any).  0 good, -1 malformed.
 */
static int
dns_skip_name(const unsigned char *buf, size_t len, size_t *off)
{
	return dns_get_name(buf, len, off, NULL, 0);
}

/*
 * dns_skip_name() that also writes the name as text into out (when not
 * NULL): labels joined by dots, lower case, no trailing dot, "" for the
 * root.  With out, only host-name octets (letters, digits, '-', '_') are
 * accepted, so the text is unambiguous and safe to query, log and send
 * as SNI; anything else is -1.  outsz must hold DNS_NAME_MAX + 1.
 */
static int
dns_get_name(const unsigned char *buf, size_t len, size_t *off, char *out,
    size_t outsz)
{
	size_t p = *off, limit = *off, end = 0, total = 1, target, o = 0, i;
	unsigned c, ch;

	for (;;) {
		if (p >= len)
			return -1;
		c = buf[p];
		if ((c & DNS_PTR_MASK) == DNS_PTR_MASK) {
			if (len - p < 2)
				return -1;
			target = ((size_t)(c & ~DNS_PTR_MASK) << 8) | buf[p + 1];
			if (end == 0)
				end = p + 2;
			if (target < DNS_HDR_LEN || target >= limit)
				return -1;
			p = limit = target;
			continue;
		}
		if (c > DNS_LABEL_MAX)		/* 0x40, 0x80: not in use */
			return -1;
		if (c == 0)
			break;
		total += c + 1;
		if (total > DNS_WIRE_NAME_MAX)
			return -1;
		if (out != NULL) {
			/* total <= 255 keeps o + c + 1 under DNS_NAME_MAX. */
			if (len - p - 1 < c || outsz < DNS_NAME_MAX + 1)
				return -1;
			if (o > 0)
				out[o++] = '.';
			for (i = 0; i < c; i++) {
				ch = buf[p + 1 + i];
				if (!addr_letdig(ch) && ch != '-' && ch != '_')
					return -1;
				out[o++] = (char)dane_lower(ch);
			}
		}
		p += c + 1;
	}
	if (out != NULL)
		out[o] = '\0';
	*off = end != 0 ? end : p + 1;
	return 0;
}

static unsigned
dns_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* --- c-ares on the loop ------------------------------------------------ */

/* c-ares says which of its sockets it wants watched, and how; (0, 0)
 * comes right before it closes one. */
static void
dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_sock **pp, *s;
	unsigned want = (readable ? LOOP_READ : 0) |
	    (writable ? LOOP_WRITE : 0);

	(void)data;
	for (pp = &dns_socks; (s = *pp) != NULL; pp = &s->next)
		if (s->lfd.fd == fd)
			break;
	if (want == 0) {
		if (s != NULL) {
			*pp = s->next;
			loop_fd_del(&s->lfd);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		/* Without it the query still ends, by c-ares's timeout. */
		if ((s = calloc(1, sizeof(*s))) == NULL) {
			log_warn(LP_SMTP, "dns: socket %d", fd);
			return;
		}
		s->lfd.fd = fd;
		s->lfd.cb = dns_on_fd;
		s->next = dns_socks;
		dns_socks = s;
	}
	if (loop_fd_want(&s->lfd, want) == -1)
		log_warn(LP_SMTP, "dns: cannot watch socket %d", fd);
}

/* May free the dns_sock (through dns_on_sock_state): lfd is not touched
 * after ares_process_fd(). */
static void
dns_on_fd(struct loop_fd *lfd, unsigned events)
{
	ares_socket_t r = ARES_SOCKET_BAD, w = ARES_SOCKET_BAD;

	if ((events & (LOOP_READ | LOOP_ERROR)) && (lfd->want & LOOP_READ))
		r = lfd->fd;
	if ((events & (LOOP_WRITE | LOOP_ERROR)) && (lfd->want & LOOP_WRITE))
		w = lfd->fd;
	ares_process_fd(dns_channel, r, w);
	dns_timer_update();
}

static void
dns_on_timer(struct loop_timer *t)
{
	(void)t;
	if (dns_channel == NULL)
		return;
	ares_process_fd(dns_channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_update();
}

/* One timer for all of c-ares's retries, rounded up so it never fires
 * before c-ares thinks anything is due. */
static void
dns_timer_update(void)
{
	struct timeval tv, *tvp;

	if (dns_channel == NULL ||
	    (tvp = ares_timeout(dns_channel, NULL, &tv)) == NULL) {
		loop_timer_cancel(&dns_timer);
		return;
	}
	loop_timer_set(&dns_timer, (uint64_t)tvp->tv_sec * 1000 +
	    ((uint64_t)tvp->tv_usec + 999) / 1000);
}

