/*
 * check.c - `ferry check DOMAIN` (check.h): walks the steps a delivery to
 * DOMAIN takes and prints what it finds.  It owns the report and a small
 * SMTP client that goes only as far as STARTTLS and QUIT; it owns no
 * policy: the DANE decision per MX host is dane_host_step(), the one the
 * delivery uses, the matching is dane_match(), and the TLS level comes
 * from -l, else the domain's tls_policy entry, else outbound_tls.
 *
 * Everything runs on the loop, one step at a time (MX, then per host its
 * addresses and TLSA records, then per address one connection), so each
 * callback starts the next step.  A host whose name is an alias gets its
 * TLSA records where a delivery looks (dane_base_*(): the end of a
 * secure CNAME chain first, then the name itself), and the report shows
 * the expansion and which TLSA name was used.  Every address of every MX host is
 * tried: a delivery may land on any of them.  The verdicts are ranked
 * (enum check_verdict); a host gets its worst address's, the exit code
 * comes from the worst host's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>
#include <sodium.h>

#include "addr.h"
#include "check.h"
#include "cli.h"
#include "config.h"
#include "dane.h"
#include "dns.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "reply.h"
#include "textfile.h"
#include "tls.h"

#define CHECK_CONNECT_MS	30000
/* Deadlines, not idle timeouts (io_set_deadline()): a server that
 * trickles "220-" lines kept `ferry check` running for ever. */
#define CHECK_REPLY_MS		60000	/* banner, EHLO, STARTTLS each */
#define CHECK_TLS_MS		60000
#define CHECK_QUIT_MS		10000
#define CHECK_WHY_MAX		600
#define CHECK_CHAIN_TEXT_MAX	8192	/* the chain's description */
#define CHECK_DN_MAX		256
#define CHECK_SAN_SHOW		4	/* DNS names shown per certificate */
#define CHECK_SAN_LEN_MAX	253
#define CHECK_REC_MAX		(2 * DANE_DATA_MAX + 16)
#define CHECK_HEX_MAX		(2 * 64 + 1)	/* SHA-512 in hex */
#define CHECK_ERR_MAX		512
#define CHECK_HOST		(-1)	/* check_verdict(): not an address */
#define CHECK_TIMED_OUT		(-1)	/* check_connected(): not an errno */
/* Said of the MX, address and TLSA lookups: one copy in the binary. */
#define CHECK_LOOKUP_FAILED \
	"lookup failed (SERVFAIL, timeout or bogus DNSSEC)"

enum check_state {
	CS_MX,
	CS_ADDR,
	CS_TLSA,
	CS_CONNECT,
	CS_BANNER,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_TLS,
	CS_QUIT,
	CS_DONE,
};

/* Ranked: a host or the domain gets the largest of its parts. */
enum check_verdict {
	CV_VERIFIED,	/* DANE, fingerprint, or a CA chain naming the host */
	CV_TEMPFAIL,	/* a DNS lookup or the connection failed: retry */
	CV_ENCRYPTED,	/* TLS without authentication */
	CV_PLAINTEXT,
	CV_DEFERRED,	/* the policy refuses this host */
	CV_BOUNCE,	/* no such domain, null MX */
};

struct check {
	/* The most used members first: x86-64 reaches offsets < 128 with a
	 * one-byte displacement (the flags are bytes to fit there).  The
	 * large arrays come last. */
	struct io *io;
	struct dns_req *dreq;
	const struct dane_policy_entry *pin;	/* fingerprint level */
	const struct config *conf;
	struct tls_client *tlsc;
	const char *level_from;		/* check_from_l, "smarthost_tls",
					   "tls_policy", "outbound_tls" */
	const struct dns_mx *hmx;	/* &mx[imx - 1]: one load where
					   its name is needed */
	struct tls_conn *tconn;		/* io owns it; valid while io is */
	size_t chain_len;
	size_t nchain;
	enum check_state state;
	enum tls_level hlevel;		/* for this host */
	enum tls_level level;		/* for the domain */
	unsigned port;
	int naddr, iaddr;
	int nmx, imx;			/* imx: the host under test, + 1 */
	enum check_verdict hv;
	enum check_verdict worst;
	uint8_t tlsa_used;		/* secure TLSA apply: SNI the base */
	uint8_t starttls;		/* offered in the EHLO reply */
	uint8_t implicit_mx;		/* no MX: the domain is its own */
	uint8_t bracket;		/* "[host]": no MX lookup */
	uint8_t literal;		/* "[192.0.2.1]": no DNS at all */
	uint8_t smtps;			/* implicit TLS */
	uint8_t relay;			/* the smarthost, at smarthost_tls */
	uint8_t mx_secure;
	uint8_t addr_secure;
	uint8_t host_seen;		/* a verdict was merged for it */
	uint8_t dane_seen;
	uint8_t nexthop_ok;		/* secure: the leaf names the domain */
	uint8_t any;			/* worst is set */
	int want;			/* the code of the reply being read,
					   after its first line (else 0) */
	enum dane_verdict dane_v;
	int nhosts, nverified;
	size_t dane_which;
	struct loop_fd cfd;		/* while connecting */
	struct loop_timer ctimer;
	char domain[DNS_NAME_MAX + 1];
	char ip[INET6_ADDRSTRLEN];
	char hwhy[CHECK_WHY_MAX];
	char reply[REPLY_LINE_MAX];	/* the reply's first line */
	struct dns_mx mx[DNS_MAX_MX];
	/* The MX host under test. */
	struct dns_addr addr[DNS_MAX_ADDR];
	struct dane_base tbase;		/* where its TLSA are looked up */
	char chain[CHECK_CHAIN_TEXT_MAX];
	struct dane_rrset tlsa;		/* 33 KB, in c on the heap */
};

static int check_args(struct check *, int, char **);
static int check_setup(struct check *);
static void check_enter_state(struct check *, enum check_state);
/* noinline: measured smaller than LTO's inlined copies. */
static const char *check_strstate(enum check_state)
    __attribute__((noinline));
static void check_on_mx(void *, enum dns_status, int,
    const struct dns_mx *, int);
static void check_next_host(struct check *);
static void check_on_addr(void *, enum dns_status, int,
    const struct dns_addr *, int);
static void check_on_tlsa(void *, enum dns_status, int,
    const struct dns_tlsa_rdata *, int);
static void check_query_tlsa(struct check *);
static void check_host_level(struct check *, enum dane_lookup, int);
static const char *check_sni(const struct check *);
static void check_next_addr(struct check *);
static void check_on_connect(struct loop_fd *, unsigned);
static void check_on_timer(struct loop_timer *);
static void check_connected(struct check *, int);
static void check_on_io(struct io *, enum io_event, void *);
static void check_reply(struct check *, int, const char *);
/* always_inline: measured smaller than the call LTO kept. */
static inline void check_greeted(struct check *)
    __attribute__((always_inline));
static void check_no_tls(struct check *, const char *, const char *);
static void check_tls_begin(struct check *);
static void check_on_chain(void *, const struct tls_der *, size_t);
static void check_describe(struct check *, size_t, const unsigned char *,
    size_t);
static void check_tls_done(struct check *);
static void check_tls_failed(struct check *, const char *);
static void check_send(struct check *, enum check_state);
static void check_verdict(struct check *, int, enum check_verdict,
    const char *, ...) __attribute__((format(printf, 4, 5)));
static void check_hangup(struct check *);
static void check_host_done(struct check *);
static void check_finish(struct check *);
static void check_merge(struct check *, enum check_verdict);
static void check_chain_add(struct check *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static const char *check_host(const struct check *);
static const char *check_secure(int) __attribute__((noinline));
static int check_level_parse(const char *, enum tls_level *);

/* Where the level came from when -l gave it: compared by address, no
 * strcmp(). */
static const char check_from_l[] = "-l";

/* In enum order, NUL-separated (textfile_nth()): no table of pointers.
 * aligned(1): read byte-wise, the ABI's 16 for an array of 16 bytes and
 * more is only padding (as env_bad in queue.c). */
static const char check_states[] __attribute__((aligned(1))) =
    "MX\0ADDR\0TLSA\0CONNECT\0BANNER\0EHLO\0"
    "HELO\0STARTTLS\0TLS\0QUIT\0DONE";

/* What check_verdict() puts before a verdict's text, by enum
 * check_verdict (CV_ENCRYPTED's text says it all; CV_BOUNCE is never
 * a check_verdict(), its "" only keeps textfile_nth() in the array). */
static const char check_said[] = "verified \0deferred: \0\0plaintext \0"
    "deferred: \0";

/* Exit codes by the domain's worst verdict (check.h). */
static const uint8_t check_exit[] = {
	[CV_VERIFIED] = EX_OK,
	[CV_TEMPFAIL] = EX_TEMPFAIL,
	[CV_ENCRYPTED] = EX_UNAVAILABLE,
	[CV_PLAINTEXT] = EX_UNAVAILABLE,
	[CV_DEFERRED] = EX_UNAVAILABLE,
	[CV_BOUNCE] = EX_NOHOST,
};

static const char *const check_overall[] = {
	[CV_VERIFIED] = "verified",
	[CV_TEMPFAIL] = "deferred, temporary failure",
	[CV_ENCRYPTED] = "not verified",
	[CV_PLAINTEXT] = "not verified",
	[CV_DEFERRED] = "not verified",
	[CV_BOUNCE] = "bounced",
};

/* What a level means for one host, in the report's words after its
 * name (config_tls_level_name()) and, from encrypt on, "TLS mandatory,
 * "; by enum tls_level, NUL-separated.  dane-only and smtps never get
 * here (dane-only becomes dane, may or a deferral, smtps encrypt): "?". */
static const char check_levels[] = "no TLS\0"
    "TLS if offered, else plaintext\0"
    "not authenticated\0"
    "a TLSA record must match\0"
    "?\0"
    "the certificate or key must match tls_policy's match=\0"
    "a chain to ca_file\0"
    "a chain to ca_file naming the host\0?";

int
check_cli(const struct config *conf, int argc, char **argv)
{
	struct check *c;
	struct dane_policy *pol = NULL;
	char err[CHECK_ERR_MAX];
	int rc, opt;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_cli("ferry check", "out of memory");
		return EX_OSERR;
	}
	c->conf = conf;
	c->level = conf->outbound_tls;
	c->level_from = "outbound_tls";
	c->cfd.fd = -1;
	c->cfd.cb = check_on_connect;
	c->ctimer.cb = check_on_timer;
	if ((rc = check_args(c, argc, argv)) != EX_OK)
		goto done;
	/* As deliver_level(): smtps is a transport; the level inside it is
	 * encrypt unless a tls_policy entry says more. */
	if (c->level == TLS_SMTPS) {
		c->smtps = 1;
		c->level = TLS_ENCRYPT;
	}
	if ((rc = check_setup(c)) != EX_OK)
		goto done;
	/* -l wins over the entry's level, but -l fingerprint still needs
	 * the entry's match= values. */
	opt = c->level_from == check_from_l;
	if (conf->tls_policy[0] != '\0' && (!opt ||
	    c->level == TLS_FINGERPRINT)) {
		if ((pol = dane_policy_load(conf->tls_policy, err,
		    sizeof(err))) == NULL) {
			log_cli("ferry check", "tls_policy: %s", err);
			rc = EX_CONFIG;
			goto done;
		}
		if ((c->pin = dane_policy_find(pol, c->domain)) != NULL &&
		    !opt) {
			c->level = c->pin->level;
			c->level_from = "tls_policy";
		}
	}
	if (c->level == TLS_FINGERPRINT && (c->pin == NULL ||
	    c->pin->nfp == 0)) {
		log_cli("ferry check", "level fingerprint needs a "
		    "tls_policy entry with match= for %s", c->domain);
		rc = EX_USAGE;
		goto done;
	}
	if (loop_init() == -1) {
		log_cli("ferry check", "cannot start the event loop: "
		    "%s", log_errstr());
		rc = EX_OSERR;
		goto done;
	}
	if (dns_init(conf) == -1) {
		log_cli("ferry check", "cannot start the DNS "
		    "resolver");
		loop_free();
		rc = EX_OSERR;
		goto done;
	}
	printf("ferry check %s%s%s: level %s (%s), port %u%s%s\n",
	    c->bracket ? "[" : "", c->domain, c->bracket ? "]" : "",
	    config_tls_level_name(c->level), c->level_from, c->port,
	    c->smtps ? ", implicit TLS (smtps)" : "",
	    conf->dnssec ? "" : ", dnssec = no: nothing counts as secure");
	if (conf->smarthost[0] != '\0' && !c->bracket && !c->relay)
		printf("note: smarthost = %s: deliveries go there, not to "
		    "these MX hosts\n", conf->smarthost);
	c->state = CS_MX;
	if (c->bracket) {
		/* RFC 5321 section 5.1: the host itself, as deliver_start();
		 * no MX RRset that could be insecure.  From the loop, as the
		 * callbacks of a lookup would run. */
		c->nmx = 1;
		c->mx_secure = 1;
		memcpy(c->mx[0].host, c->domain, sizeof(c->domain));
		loop_timer_set(&c->ctimer, 0);
	} else
		c->dreq = dns_query_mx(c->domain, check_on_mx, c);
	if (!c->bracket && c->dreq == NULL) {
		log_cli("ferry check", "cannot start the MX lookup");
		rc = EX_OSERR;
	} else if (loop_run() == -1) {
		log_cli("ferry check", "event loop: %s",
		    log_errstr());
		rc = EX_OSERR;
	} else if (c->state != CS_DONE)
		rc = EX_SOFTWARE;	/* the loop ended early */
	else
		rc = check_exit[c->worst];
	dns_cancel(c->dreq);
	loop_fd_close(&c->cfd);
	loop_timer_cancel(&c->ctimer);
	io_free(c->io);		/* NULL: nothing */
	dns_free();
	loop_free();
	if (fflush(NULL) != 0 && rc == EX_OK)
		rc = EX_IOERR;
done:
	tls_client_unref(c->tlsc);
	dane_policy_free(pol);
	free(c);
	return rc;
}

/*
 * check [-l LEVEL] [-p PORT] [DESTINATION]; argv[0] is "check".  The
 * destination is a domain or has the smarthost's shape ("[host]:port",
 * "host:port"); none means the smarthost, whose port (25 if it names
 * none) and smarthost_tls a delivery there uses.  A port in the
 * destination wins over -p, and -p over mx_port.
 */
static int
check_args(struct check *c, int argc, char **argv)
{
	const char *dom = NULL, *h;
	unsigned dport;
	size_t i, len;
	int a, br;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "-p") == 0 && a + 1 < argc) {
			a++;
			if (config_parse_port(argv[a], strlen(argv[a]),
			    &c->port) != 0)
				goto usage;
		} else if (strcmp(argv[a], "-l") == 0 && a + 1 < argc) {
			if (check_level_parse(argv[++a], &c->level) == -1)
				goto usage;
			c->level_from = check_from_l;
		} else if (argv[a][0] == '-' || dom != NULL)
			goto usage;
		else
			dom = argv[a];
	}
	if (dom == NULL && (dom = c->conf->smarthost)[0] == '\0')
		goto usage;
	c->relay = addr_casecmp(dom, c->conf->smarthost) == 0;
	if ((br = config_host_split(dom, strlen(dom), &h, &len, &dport)) < 0)
		goto baddom;
	c->bracket = (uint8_t)br;
	/* 0: no -p either; 25 as sched_configure() for the smarthost. */
	if (dport != 0)
		c->port = dport;
	else if (c->port == 0)
		c->port = c->relay ? 25 : c->conf->mx_port;
	if (c->relay && c->level_from != check_from_l) {
		c->level = c->conf->smarthost_tls;
		c->level_from = "smarthost_tls";
	}
	if (len > 1 && h[len - 1] == '.')
		len--;		/* "example.org." is example.org */
	if (len == 0 || len > CONFIG_NAME_MAX - 1)
		goto baddom;
	for (i = 0; i < len; i++)
		c->domain[i] = (char)dane_lower((unsigned char)h[i]);
	c->domain[len] = '\0';
	if (c->bracket && net_addr(c->domain, &c->addr[0]) == 0) {
		c->literal = 1;
		return EX_OK;
	}
	for (i = 0; i < len; i++)
		if (!addr_letdig((unsigned char)h[i]) && h[i] != '.' &&
		    h[i] != '-' && h[i] != '_')
			goto baddom;
	/* No empty label. */
	if (c->domain[0] == '.' || memmem(c->domain, len, "..", 2) != NULL)
		goto baddom;
	return EX_OK;
baddom:
	log_cli("ferry check", "%s: not a domain name", dom);
	return EX_USAGE;
usage:
	return cli_usage("ferry check [-l none|may|encrypt|dane|dane-only|"
	    "fingerprint|verify|secure|smtps] [-p PORT] [DOMAIN | "
	    "[HOST]:PORT]");
}

static int
check_level_parse(const char *s, enum tls_level *out)
{
	unsigned l;

	/* smtps too: a smarthost on port 465 is checked with it. */
	for (l = TLS_NONE; l <= TLS_SMTPS; l++)
		if (addr_casecmp(s,
		    config_tls_level_name((enum tls_level)l)) == 0) {
			*out = (enum tls_level)l;
			return 0;
		}
	return -1;
}

/* The client credentials, as the daemon makes them (main.c). */
static int
check_setup(struct check *c)
{
	char err[CHECK_ERR_MAX];

	if (sodium_init() < 0) {
		log_cli("ferry check", "cannot initialise libsodium");
		return EX_OSERR;
	}
	log_open(1);
	if ((c->tlsc = tls_client_new(c->conf->ca_file, c->conf->client_cert,
	    c->conf->client_key, c->conf->tls_ciphers, err,
	    sizeof(err))) == NULL) {
		log_cli("ferry check", "client_cert %s: %s",
		    c->conf->client_cert, err);
		return EX_CONFIG;
	}
	return EX_OK;
}

static const char *
check_strstate(enum check_state st)
{
	return textfile_nth(check_states, st);
}

static void
check_enter_state(struct check *c, enum check_state st)
{
	log_trace(TRACE_DELIVER, "check %s: %s -> %s", c->domain,
	    check_strstate(c->state), check_strstate(st));
	c->state = st;
}

static const char *
check_host(const struct check *c)
{
	return c->hmx->host;
}

/* What the report says of an answer's DNSSEC status: one call instead
 * of the choice inlined at each of five. */
static const char *
check_secure(int secure)
{
	return secure ? "secure" : "insecure";
}

/* --- DNS ------------------------------------------------------------ */

static void
check_on_mx(void *arg, enum dns_status st, int secure,
    const struct dns_mx *mx, int n)
{
	struct check *c = arg;
	int i;

	c->dreq = NULL;
	c->mx_secure = secure;
	switch (st) {
	case DNS_OK:
		c->nmx = n < DNS_MAX_MX ? n : DNS_MAX_MX;
		memcpy(c->mx, mx, (size_t)c->nmx * sizeof(*mx));
		printf("MX %s (%s):\n", c->domain, check_secure(secure));
		for (i = 0; i < c->nmx; i++)
			printf("  %u %s\n", c->mx[i].pref, c->mx[i].host);
		break;
	case DNS_NODATA:
		/* RFC 5321 section 5.1: the domain is its own MX. */
		c->nmx = 1;
		c->implicit_mx = 1;
		textfile_copy(c->mx[0].host, sizeof(c->mx[0].host),
		    c->domain);
		printf("MX %s: none (%s); the domain is its own mail "
		    "exchanger\n", c->domain, check_secure(secure));
		break;
	case DNS_NULLMX:
		/* The verdict in the same printf: one call fewer per case. */
		printf("MX %s: null MX (RFC 7505): the domain accepts no "
		    "mail\n\nverdict: bounced (null MX)\n", c->domain);
		check_merge(c, CV_BOUNCE);
		check_finish(c);
		return;
	case DNS_NXDOMAIN:
		printf("MX %s: NXDOMAIN: the domain does not exist\n\n"
		    "verdict: bounced (domain not found)\n", c->domain);
		check_merge(c, CV_BOUNCE);
		check_finish(c);
		return;
	case DNS_TEMPFAIL:
	default:
		printf("MX %s: %s\n\nverdict: deferred: MX lookup failed; a "
		    "delivery tries again later (4.4.3)\n", c->domain,
		    CHECK_LOOKUP_FAILED);
		check_merge(c, CV_TEMPFAIL);
		check_finish(c);
		return;
	}
	c->imx = 0;
	check_next_host(c);
}

static void
check_next_host(struct check *c)
{
	if (c->imx >= c->nmx) {
		check_finish(c);
		return;
	}
	c->hmx = &c->mx[c->imx++];
	c->nhosts++;
	c->host_seen = 0;
	c->hv = CV_VERIFIED;
	c->hwhy[0] = '\0';
	c->naddr = c->iaddr = 0;
	c->tlsa.n = 0;
	c->tlsa_used = 0;
	c->hlevel = c->level;
	/* One call: printf() ignores the preference it is not asked for. */
	printf(c->bracket ? "\n%s (no MX lookup)\n" : c->implicit_mx ?
	    "\n%s (implicit MX)\n" : "\n%s (MX %u)\n", check_host(c),
	    c->hmx->pref);
	check_enter_state(c, CS_ADDR);
	if (c->literal) {
		c->naddr = 1;	/* c->addr[0], from check_args() */
		printf("  address: %s (a literal: no DNS lookup)\n",
		    check_host(c));
		check_host_level(c, DANE_LOOKUP_NONE, 0);
		return;
	}
	if ((c->dreq = dns_query_addr(check_host(c), check_on_addr, c)) ==
	    NULL) {
		check_verdict(c, CHECK_HOST, CV_TEMPFAIL, "cannot look up %s",
		    check_host(c));
		check_host_done(c);
	}
}

static void
check_on_addr(void *arg, enum dns_status st, int secure,
    const struct dns_addr *a, int n)
{
	struct check *c = arg;
	char ip[INET6_ADDRSTRLEN];
	const char *canon = dns_canon();	/* only during the callback */
	int i;

	c->dreq = NULL;
	if (st != DNS_OK || n <= 0) {
		printf("  addresses: %s\n", st == DNS_TEMPFAIL ?
		    CHECK_LOOKUP_FAILED : dns_status_name(st));
		check_verdict(c, CHECK_HOST, CV_TEMPFAIL, "no address for %s "
		    "(a delivery tries the next MX host)",
		    check_host(c));
		check_host_done(c);
		return;
	}
	c->naddr = n < DNS_MAX_ADDR ? n : DNS_MAX_ADDR;
	memcpy(c->addr, a, (size_t)c->naddr * sizeof(*a));
	c->addr_secure = secure;
	printf("  addresses (%s):", check_secure(secure));
	for (i = 0; i < c->naddr; i++) {
		net_ntop(&c->addr[i].ss, ip);
		/* The newline with the last one: no fputc() import. */
		printf(" %s%s", ip, i + 1 < c->naddr ? "" : "\n");
	}
	/* RFC 7672 section 2.2.3: secure, the chain's end is the first
	 * TLSA base domain; insecure, it is not one at all. */
	if (canon != NULL)
		printf("  CNAME: %s is an alias of %s (%s)\n", check_host(c),
		    canon, secure ? "secure: TLSA looked up there first" :
		    "insecure: no DANE for this host");
	dane_base_init(&c->tbase, check_host(c), canon, secure);
	if (c->level == TLS_NONE) {
		check_host_level(c, DANE_LOOKUP_NONE, 0);
		return;
	}
	/* Looked up at every level that may use TLS, to show them; only
	 * dane and dane-only act on them. */
	check_query_tlsa(c);
}

/* _PORT._tcp TLSA at the host's current TLSA base domain. */
static void
check_query_tlsa(struct check *c)
{
	check_enter_state(c, CS_TLSA);
	if ((c->dreq = dns_query_tlsa(dane_base_name(&c->tbase), c->port,
	    check_on_tlsa, c)) == NULL) {
		printf("  TLSA _%u._tcp.%s: cannot look up\n", c->port,
		    dane_base_name(&c->tbase));
		check_host_level(c, DANE_LOOKUP_FAILED, 0);
	}
}

static void
check_on_tlsa(void *arg, enum dns_status st, int secure,
    const struct dns_tlsa_rdata *rd, int n)
{
	struct check *c = arg;
	struct dane_tlsa *r;
	char rec[CHECK_REC_MAX];
	const char *why;
	enum dane_lookup lookup = DANE_LOOKUP_FOUND;
	int i, ok;

	c->dreq = NULL;
	printf("  TLSA _%u._tcp.%s: ", c->port, dane_base_name(&c->tbase));
	/* One tail for the three results, as deliver_on_tlsa(). */
	if (st == DNS_TEMPFAIL) {
		printf("%s\n", CHECK_LOOKUP_FAILED);
		lookup = DANE_LOOKUP_FAILED;
		secure = 0;
		n = 0;
	} else if (st != DNS_OK || n <= 0) {
		printf("none (%s, %s)\n", st == DNS_OK ? "no records" :
		    dns_status_name(st), check_secure(secure));
		lookup = DANE_LOOKUP_EMPTY;
		n = 0;
	} else
		printf("%d record%s (%s)\n", n, cli_plural((size_t)n),
		    check_secure(secure));
	c->tlsa.n = 0;
	for (i = 0; i < n; i++) {
		r = &c->tlsa.r[c->tlsa.n];
		ok = c->tlsa.n < DANE_RECORDS_MAX &&
		    dane_tlsa_parse(rd[i].rdata, rd[i].len, r) == 0;
		if (!ok) {
			printf("    (malformed or beyond %d records: left "
			    "out)\n", DANE_RECORDS_MAX);
			continue;
		}
		dane_tlsa_format(r, rec, sizeof(rec));
		/* As the delivery's warning says it. */
		why = dane_tlsa_unusable(rd[i].rdata, rd[i].len);
		printf("    %s (%s%s)\n", rec, why ? "unusable: " : "usable",
		    why ? why : "");
		c->tlsa.n++;
	}
	if (dane_base_next(&c->tbase, lookup, secure)) {
		if (lookup == DANE_LOOKUP_FOUND)
			printf("    (not DNSSEC-secure: they do not count)\n");
		c->tlsa.n = 0;
		check_query_tlsa(c);
		return;
	}
	check_host_level(c, lookup, secure);
}

/*
 * The level for this host.  At dane and dane-only it is the delivery's
 * own decision (dane_host_step()); the implicit MX's address answer
 * stands in for the MX RRset (RFC 7672 section 2.2.1).
 */
static void
check_host_level(struct check *c, enum dane_lookup lookup, int tlsa_secure)
{
	const char *why = NULL;
	/* RFC 7672 section 2.2.2: and the host's addresses, as deliver.c */
	int mx_secure = (c->implicit_mx || c->mx_secure) && c->addr_secure;
	enum dane_step step;

	if (c->level == TLS_DANE || c->level == TLS_DANE_ONLY) {
		/* As deliver_start(): an address has no name for TLSA. */
		if (c->literal) {
			why = "dane-only: DANE needs a host name to look up "
			    "TLSA records for, not an address literal";
			step = c->level == TLS_DANE ? DANE_STEP_MAY :
			    DANE_STEP_DEFER;
		} else
			step = dane_host_step(c->level, mx_secure, lookup,
			    tlsa_secure, &c->tlsa, &why);
		switch (step) {
		case DANE_STEP_DANE:
			c->hlevel = TLS_DANE;
			c->tlsa_used = 1;
			break;
		case DANE_STEP_ENCRYPT:
			c->hlevel = TLS_ENCRYPT;
			c->tlsa_used = 1;
			printf("  policy: secure TLSA records, none usable: "
			    "TLS mandatory, not authenticated (RFC 7672 "
			    "section 2.2)\n");
			break;
		case DANE_STEP_MAY:
			c->hlevel = TLS_MAY;
			printf("  policy: %s%s: DANE does not apply\n",
			    c->literal ? "an address literal" :
			    "no DNSSEC-secure ", c->literal ? "" : mx_secure ?
			    "TLSA records" : c->implicit_mx || c->mx_secure ?
			    "address records" : "MX RRset");
			break;
		case DANE_STEP_LOOKUP:	/* not here: the lookup was made */
		case DANE_STEP_DEFER:
		default:
			printf("  policy: %s\n", why ? why : "defer");
			check_verdict(c, CHECK_HOST, lookup ==
			    DANE_LOOKUP_FAILED ? CV_TEMPFAIL : CV_DEFERRED,
			    "%s (4.7.5); a delivery does not connect",
			    why ? why : "?");
			check_host_done(c);
			return;
		}
	}
	if (c->tlsa_used)
		printf("  TLSA base domain: %s%s (the SNI)\n",
		    dane_base_name(&c->tbase), dane_base_expanded(&c->tbase) ?
		    ", the end of the secure CNAME chain" : "");
	printf("  level: %s: %s%s\n", config_tls_level_name(c->hlevel),
	    c->hlevel >= TLS_ENCRYPT ? "TLS mandatory, " : "",
	    textfile_nth(check_levels, c->hlevel));
	c->iaddr = 0;
	check_next_addr(c);
}

/* As the delivery (deliver_sni()): the TLSA base domain when secure
 * TLSA records apply (RFC 7672 section 8.1), else the MX host. */
static const char *
check_sni(const struct check *c)
{
	return c->tlsa_used ? dane_base_name(&c->tbase) : check_host(c);
}

/* --- connections ---------------------------------------------------- */

static void
check_next_addr(struct check *c)
{
	int fd, err;

	if (c->iaddr >= c->naddr) {
		check_host_done(c);
		return;
	}
	c->starttls = 0;
	c->dane_seen = c->nexthop_ok = 0;
	c->dane_v = DANE_NOMATCH;
	c->nchain = 0;
	c->chain_len = 0;
	c->chain[0] = '\0';
	fd = net_connect(&c->addr[c->iaddr++], c->port, c->ip);
	err = errno;
	printf("  %s[%s]:%u:\n", check_host(c), c->ip, c->port);
	c->cfd.fd = fd;
	if (fd != -1 && loop_fd_add(&c->cfd, LOOP_WRITE) == 0) {
		check_enter_state(c, CS_CONNECT);
		loop_timer_set(&c->ctimer, CHECK_CONNECT_MS);
		return;
	}
	check_connected(c, fd == -1 ? err : errno);
}

/* The connect timeout, and the start of a "[host]" check (no MX lookup
 * whose answer would start it). */
static void
check_on_timer(struct loop_timer *t)
{
	struct check *c = container_of(t, struct check, ctimer);

	if (c->state == CS_MX)
		check_next_host(c);
	else
		check_connected(c, CHECK_TIMED_OUT);
}

static void
check_on_connect(struct loop_fd *lfd, unsigned events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	if (getsockopt(lfd->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	check_connected(container_of(lfd, struct check, cfd), err);
}

/*
 * Every end of a connection attempt, one failure path for all: err 0
 * connected (the dialogue starts), CHECK_TIMED_OUT, else an errno from
 * socket(), connect() or watching the fd; then the next address.
 */
static void
check_connected(struct check *c, int err)
{
	int fd = c->cfd.fd;

	loop_fd_del(&c->cfd);
	loop_timer_cancel(&c->ctimer);
	c->cfd.fd = -1;
	if (err == 0 && (c->io = io_new(fd, check_on_io, c)) != NULL) {
		io_set_deadline(c->io, CHECK_REPLY_MS);
		c->want = 0;
		check_enter_state(c, CS_BANNER);
		/* smtps: the handshake first; the banner then comes inside
		 * TLS, and the QUIT after the verdict ends it. */
		if (c->smtps)
			check_tls_begin(c);
		return;
	}
	if (fd != -1)
		close(fd);
	check_verdict(c, 0, CV_TEMPFAIL, "%s%s", err ? "connect: " :
	    "", err == CHECK_TIMED_OUT ? "timed out" : err ? strerror(err) :
	    "out of memory");
	check_next_addr(c);
}

/* Replies as deliver.c reads them (reply_read()): "NNN-" continues, with
 * the same NNN. */
static void
check_on_io(struct io *io, enum io_event ev, void *arg)
{
	struct check *c = arg;
	struct reply_line r;
	enum reply_status st;
	size_t n;

	(void)io;
	if (c->state == CS_TLS && ev != IO_TLS && ev != IO_DRAINED) {
		check_tls_failed(c, ev == IO_TIMEOUT ? "handshake timed out" :
		    ev == IO_EOF ? "the server closed the connection" :
		    tls_conn_error(c->tconn));
		return;
	}
	switch (ev) {
	case IO_DRAINED:
		return;
	case IO_EOF:
	case IO_ERR:
	case IO_TIMEOUT:
		if (c->state == CS_QUIT) {
			check_hangup(c);
			return;
		}
		check_verdict(c, 0, CV_TEMPFAIL, "%s in state %s",
		    ev == IO_TIMEOUT ? "timed out" : "lost connection",
		    check_strstate(c->state));
		return;
	case IO_TLS:
		if (c->state == CS_TLS)
			check_tls_done(c);
		return;
	case IO_IN:
		break;
	}
	for (;;) {
		if ((st = reply_read(c->io, c->want, &r)) == REPLY_AGAIN)
			return;
		if (st == REPLY_TOO_LONG) {
			check_verdict(c, 0, CV_TEMPFAIL, "reply too long");
			return;
		}
		if (st == REPLY_MALFORMED) {
			check_verdict(c, 0, CV_TEMPFAIL, "malformed "
			    "reply in state %s", check_strstate(c->state));
			return;
		}
		/* printed: no controls (isprint() in the C locale; no
		 * ctype import, see addr_letdig()) */
		for (n = 0; n < r.len; n++)
			if ((unsigned char)r.line[n] - 0x20u >= 0x5fu)
				r.line[n] = '?';
		log_trace(TRACE_DELIVER, "check %s: < %s", c->domain, r.line);
		if (c->want == 0)
			textfile_copy(c->reply, sizeof(c->reply), r.line);
		else if (c->state == CS_EHLO && r.len > 4 &&
		    reply_ehlo(r.line + 4, NULL) == REPLY_EXT_STARTTLS)
			c->starttls = 1;
		if ((c->want = r.more ? r.code : 0) != 0)
			continue;
		check_reply(c, r.code, c->reply);
		/* Gone (next address), or handshaking (io dropped what
		 * followed the 220). */
		if (c->io == NULL || c->state == CS_TLS ||
		    c->state == CS_DONE)
			return;
	}
}

static void
check_reply(struct check *c, int code, const char *reply)
{
	switch (c->state) {
	case CS_BANNER:
		printf("    banner: %s\n", reply);
		if (code != 220) {
			check_verdict(c, 1, CV_TEMPFAIL, "the server does "
			    "not greet with 220");
			return;
		}
		check_send(c, CS_EHLO);
		break;
	case CS_EHLO:
		if (code == 250) {
			check_greeted(c);
			return;
		}
		printf("    EHLO: %s\n", reply);
		c->starttls = 0;
		check_send(c, CS_HELO);
		break;
	case CS_HELO:
		if (code != 250) {
			check_verdict(c, 1, CV_TEMPFAIL, "HELO refused: %s",
			    reply);
			return;
		}
		check_greeted(c);
		break;
	case CS_STARTTLS:
		if (code == 220) {
			check_tls_begin(c);
			return;
		}
		printf("    STARTTLS: refused: %s\n", reply);
		check_no_tls(c, "the server refused STARTTLS", "refused");
		break;
	case CS_QUIT:
		check_hangup(c);
		break;
	default:
		check_verdict(c, 0, CV_TEMPFAIL, "unexpected reply in "
		    "state %s", check_strstate(c->state));
		break;
	}
}

/* EHLO (or HELO) answered: the level decides what comes next. */
static void
check_greeted(struct check *c)
{
	printf("    STARTTLS: %s\n", c->starttls ? "offered" :
	    "not offered");
	if (c->hlevel == TLS_NONE) {
		check_verdict(c, 1, CV_PLAINTEXT, "(level none)");
		return;
	}
	if (c->starttls) {
		check_send(c, CS_STARTTLS);
		return;
	}
	/* A stripped STARTTLS looks just like this: RFC 7672 section
	 * 2.2 makes TLS mandatory whenever usable TLSA records exist. */
	check_no_tls(c, "was not offered", "not offered");
}

/* No STARTTLS: deferred where the level wants TLS, else plaintext. */
static void
check_no_tls(struct check *c, const char *required, const char *plain)
{
	int need = c->hlevel >= TLS_ENCRYPT;

	check_verdict(c, 1, need ? CV_DEFERRED : CV_PLAINTEXT, need ?
	    "TLS is required, but %s (4.7.4)" : "(STARTTLS %s)", need ?
	    required : plain);
}

/* After STARTTLS's 220: no session cache (a resumed session shows no
 * chain), SNI as for the delivery. */
static void
check_tls_begin(struct check *c)
{
	struct tls_conn *t;

	t = tls_conn_client(c->tlsc, io_fd(c->io), check_sni(c), NULL);
	if (t == NULL) {
		check_tls_failed(c, "cannot set up a TLS connection");
		return;
	}
	tls_conn_set_chain_hook(t, check_on_chain, c);
	c->tconn = t;
	check_enter_state(c, CS_TLS);
	io_start_tls(c->io, t);
	io_set_deadline(c->io, CHECK_TLS_MS);
}

/* During the handshake: describe the chain and match it now, the
 * pointers are gone after the call. */
static void
check_on_chain(void *arg, const struct tls_der *chain, size_t n)
{
	struct check *c = arg;
	size_t i;

	if (n > DANE_CHAIN_MAX)
		n = DANE_CHAIN_MAX;
	c->chain_len = 0;
	c->chain[0] = '\0';
	for (i = 0; i < n; i++)
		check_describe(c, i, chain[i].der, chain[i].len);
	c->nchain = n;
	c->dane_seen = 1;
	if (c->hlevel == TLS_SECURE && n > 0)
		c->nexthop_ok = dane_leaf_nexthop(chain[0].der, chain[0].len,
		    c->domain);
	if (c->hlevel == TLS_DANE)
		c->dane_v = dane_match_base(&c->tlsa, chain, n, &c->tbase,
		    c->domain, &c->dane_which);
}

/* One certificate of the peer's chain, a few lines of the report. */
static void
check_describe(struct check *c, size_t depth, const unsigned char *der,
    size_t len)
{
	mbedtls_x509_crt crt;
	const mbedtls_x509_sequence *san;
	char subject[CHECK_DN_MAX], issuer[CHECK_DN_MAX];
	char name[CHECK_SAN_LEN_MAX + 1], hex[CHECK_HEX_MAX];
	size_t i, shown = 0;

	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse_der(&crt, der, len) != 0) {
		check_chain_add(c, "      %zu: (%zu bytes that do not parse "
		    "as X.509)\n", depth, len);
		goto done;
	}
	/* mbedtls_x509_dn_gets() turns control bytes into '?'. */
	if (mbedtls_x509_dn_gets(subject, sizeof(subject), &crt.subject) < 0)
		memcpy(subject, "?", 2);
	if (mbedtls_x509_dn_gets(issuer, sizeof(issuer), &crt.issuer) < 0)
		memcpy(issuer, "?", 2);
	check_chain_add(c, "      %zu: subject %s\n         issuer %s\n"
	    "         valid %04d-%02d-%02d to %04d-%02d-%02d\n", depth, subject,
	    issuer, crt.valid_from.year, crt.valid_from.mon,
	    crt.valid_from.day, crt.valid_to.year, crt.valid_to.mon,
	    crt.valid_to.day);
	for (san = &crt.subject_alt_names; san != NULL; san = san->next) {
		if (san->buf.p == NULL || san->buf.tag !=
		    (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
			continue;
		if (shown++ == CHECK_SAN_SHOW) {
			check_chain_add(c, " ...");
			break;
		}
		for (i = 0; i < san->buf.len && i < CHECK_SAN_LEN_MAX; i++)
			/* isgraph() in the C locale: '!' to '~' */
			name[i] = san->buf.p[i] - 0x21u < 0x5eu ?
			    (char)san->buf.p[i] : '?';
		name[i] = '\0';
		check_chain_add(c, "%s%s", shown == 1 ? "         DNS names: " :
		    ", ", name);
	}
	if (shown > 0)
		check_chain_add(c, "\n");
	/* What to publish for this key: DANE-EE for the leaf, DANE-TA for
	 * the others. */
	if (dane_tlsa_data(der, len, DANE_SEL_SPKI, DANE_MATCH_SHA256, hex,
	    sizeof(hex)) == 0)
		check_chain_add(c, "         key as TLSA: %d 1 1 %s\n", depth ?
		    DANE_USAGE_DANE_TA : DANE_USAGE_DANE_EE, hex);
done:
	mbedtls_x509_crt_free(&crt);
}

static void
check_chain_add(struct check *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->chain_len + 1 >= sizeof(c->chain))
		return;
	va_start(ap, fmt);
	n = vsnprintf(c->chain + c->chain_len, sizeof(c->chain) -
	    c->chain_len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	c->chain_len += (size_t)n;
	if (c->chain_len >= sizeof(c->chain))
		c->chain_len = sizeof(c->chain) - 1;	/* truncated */
}

/*
 * The handshake is done: what the delivery would make of it, level by
 * level, as deliver_tls_done() judges it.
 */
static void
check_tls_done(struct check *c)
{
	struct tls_conn *t = io_tls(c->io);
	unsigned char fp[TLS_FP_LEN], spki[TLS_FP_LEN];
	char rec[CHECK_REC_MAX];
	const struct dane_tlsa *r;
	unsigned v;
	int chain_ok, name_ok;
	/* secure: the leaf names the domain (or a name below it); for
	 * "[host]", as deliver.c for a literal next hop, the host. */
	int nexthop = c->hlevel == TLS_SECURE && !c->bracket;

	if (t == NULL) {	/* cannot happen: IO_TLS means it is on */
		check_tls_failed(c, "no TLS after the handshake");
		return;
	}
	v = tls_conn_verify(t);
	chain_ok = !(v & (TLS_V_NOCERT | TLS_V_UNTRUSTED));
	name_ok = !(v & (TLS_V_NOCERT | TLS_V_NAME));
	printf("    TLS: %s with cipher %s (%u bits)\n", tls_conn_version(t),
	    tls_conn_cipher(t), tls_conn_cipher_bits(t));
	if (c->nchain > 0)
		printf("    chain (%zu certificate%s, as sent):\n%s", c->nchain,
		    cli_plural(c->nchain), c->chain);
	else
		printf("    chain: none\n");
	printf("    PKIX (ca_file): %s; the certificate %s %s\n", v & TLS_V_NOCERT ?
	    "no certificate" : chain_ok ? "trusted" : v & TLS_V_EXPIRED ?
	    "not trusted (expired or not yet valid)" : "not trusted",
	    name_ok ? "names" : "does not name", check_host(c));
	io_set_deadline(c->io, CHECK_REPLY_MS);
	switch (c->hlevel) {
	case TLS_DANE:
		if (!c->dane_seen || c->dane_v != DANE_MATCH) {
			printf("    DANE: no TLSA record matched%s\n",
			    c->dane_seen ? "" : " (no certificate chain seen)");
			check_verdict(c, 1, CV_DEFERRED, "Untrusted TLS, no "
			    "DANE TLSA record matched (4.7.5)");
			return;
		}
		r = &c->tlsa.r[c->dane_which];
		dane_tlsa_format(r, rec, sizeof(rec));
		printf("    DANE: matched TLSA record %s\n", rec);
		check_verdict(c, 1, CV_VERIFIED, "(%s %s)",
		    r->usage == DANE_USAGE_DANE_EE ? "DANE-EE" : "DANE-TA",
		    rec);
		return;
	case TLS_FINGERPRINT:
		if (tls_conn_peer_fp(t, fp, spki) == 0 &&
		    dane_policy_pinned(c->pin, fp, spki))
			check_verdict(c, 1, CV_VERIFIED, "(fingerprint)");
		else
			check_verdict(c, 1, CV_DEFERRED, "the certificate "
			    "matches no tls_policy fingerprint (4.7.5)");
		return;
	case TLS_VERIFY:
	case TLS_SECURE:
		if (!tls_client_ca_ok(c->tlsc))
			printf("    warning: ca_file %s holds no usable CA "
			    "certificate\n", c->conf->ca_file);
		if (!chain_ok)
			check_verdict(c, 1, CV_DEFERRED, "Untrusted TLS, no "
			    "chain to ca_file (4.7.5)");
		else if (nexthop ? c->nexthop_ok : name_ok)
			check_verdict(c, 1, CV_VERIFIED, "(a chain to "
			    "ca_file naming %s)", nexthop ?
			    "the domain" : "the host");
		else
			check_verdict(c, 1, CV_DEFERRED, "Trusted TLS, the "
			    "certificate does not name %s%s (4.7.5)", nexthop ?
			    c->domain : check_host(c), nexthop ?
			    " or a name below it" : "");
		return;
	default:
		check_verdict(c, 1, CV_ENCRYPTED, "encrypted, not "
		    "verified");
		return;
	}
}

/* As the delivery: may retries this address in plaintext, every other
 * level gives it up. */
static void
check_tls_failed(struct check *c, const char *why)
{
	printf("    TLS: handshake failed: %s\n", why);
	if (c->hlevel == TLS_MAY && !c->smtps)
		check_verdict(c, 0, CV_PLAINTEXT, "(a delivery "
		    "retries without TLS)");
	else
		check_verdict(c, 0, CV_DEFERRED, "cannot start "
		    "TLS (4.7.5)");
}

/* Enter the state that sends a command and send it: each such state is
 * named after its command (check_states). */
static void
check_send(struct check *c, enum check_state st)
{
	const char *cmd = check_strstate(st);

	check_enter_state(c, st);
	io_set_deadline(c->io, CHECK_REPLY_MS);
	log_trace(TRACE_DELIVER, "check %s: > %s", c->domain, cmd);
	/* EHLO and HELO name us; STARTTLS takes nothing. */
	if (io_printf(c->io, "%s%s%s\r\n", cmd, st == CS_STARTTLS ? "" :
	    " ", st == CS_STARTTLS ? "" : c->conf->hostname) == -1) {
		check_verdict(c, 0, CV_TEMPFAIL, "output buffer full");
		return;
	}
	io_flush(c->io);
}

/*
 * quit CHECK_HOST: a verdict for the host without a connection (DNS,
 * policy), which replaces the host's.  Else this address is judged:
 * print it, merge it into the host's verdict, then say QUIT (quit 1,
 * when the dialogue is still sane) or hang up; the next address comes
 * after that.  One function for both: one va_list prologue.  fmt is
 * what follows the verdict's first word (check_said: "deferred: ", ...).
 */
static void
check_verdict(struct check *c, int quit, enum check_verdict v,
    const char *fmt, ...)
{
	char why[CHECK_WHY_MAX];
	va_list ap;
	int n;

	n = snprintf(why, sizeof(why), "%s", textfile_nth(check_said, v));
	va_start(ap, fmt);
	vsnprintf(why + n, sizeof(why) - (size_t)n, fmt, ap);
	va_end(ap);
	if (quit != CHECK_HOST)
		printf("    result: %s\n", why);
	if (quit == CHECK_HOST || !c->host_seen || v > c->hv) {
		c->hv = v;
		textfile_copy(c->hwhy, sizeof(c->hwhy), why);
	}
	c->host_seen = 1;
	if (quit == CHECK_HOST || c->io == NULL)
		return;		/* no connection: the caller moves on */
	if (quit) {
		check_enter_state(c, CS_QUIT);
		io_set_deadline(c->io, CHECK_QUIT_MS);
		if (io_printf(c->io, "QUIT\r\n") != -1) {
			io_flush(c->io);
			return;
		}
	}
	check_hangup(c);
}

static void
check_hangup(struct check *c)
{
	io_free(c->io);	/* frees the tls_conn too; NULL: nothing */
	c->io = NULL;
	c->tconn = NULL;
	check_next_addr(c);
}

static void
check_host_done(struct check *c)
{
	if (!c->host_seen)
		check_verdict(c, CHECK_HOST, CV_TEMPFAIL, "no address tried");
	printf("  verdict: %s\n", c->hwhy);
	if (c->hv == CV_VERIFIED)
		c->nverified++;
	check_merge(c, c->hv);
	check_next_host(c);
}

static void
check_merge(struct check *c, enum check_verdict v)
{
	if (!c->any || v > c->worst)
		c->worst = v;
	c->any = 1;
}

static void
check_finish(struct check *c)
{
	if (!c->any)		/* no host at all: nothing went out */
		check_merge(c, CV_TEMPFAIL);
	/* One call: printf() ignores the numbers it is not asked for. */
	printf(c->nhosts > 0 ? "\noverall: %s (%d of %d %shost%s verified)\n" :
	    "overall: %s\n", check_overall[c->worst],
	    c->nverified, c->nhosts, c->bracket ? "" : "MX ",
	    cli_plural((size_t)c->nhosts));
	check_enter_state(c, CS_DONE);
	loop_stop();
}

