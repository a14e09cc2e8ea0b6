/*
 * dns.h - DNS on the event loop (c-ares): MX, and A+AAAA of a host.
 *
 * dns_query_*() start a lookup and return a handle; the callback runs
 * later, from the loop, exactly once unless dns_cancel() was called
 * first (then never).  They return NULL (and never call back) when out
 * of memory or before dns_init().  A callback must not call dns_free().
 * dns_parse_mx() returns 0 when it understood the answer, -1 when it is
 * malformed (status DNS_TEMPFAIL).  Results are only valid during the callback.
 * "secure" is 1 when the answer carried the AD bit and config says
 * dnssec = yes (the DANE issue builds on it); the raw answer of the last
 * lookup stays available to the callback through dns_raw().
 *
 * MX answers come sorted by preference with equal preferences in random
 * order (RFC 5321 §5.1); DNS_NODATA for an MX lookup means "no MX: use the
 * domain's own A/AAAA"; DNS_NULLMX is RFC 7505's "0 ." (bounce, 5.1.10).
 * Address answers list IPv6 first, then IPv4, each with port 0 (the
 * caller sets it).  CNAMEs are followed by the resolver; the name the
 * chain ended at is dns_canon()'s during the callback (DANE's TLSA base
 * domain, RFC 7672 section 2.2.3).
 */
#ifndef FERRY_DNS_H
#define FERRY_DNS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_NAME_MAX	255
#define DNS_MAX_MX	16	/* more are ignored, lowest preference kept */
#define DNS_MAX_ADDR	16

struct config;
struct dns_req;

enum dns_status {
	DNS_OK,
	DNS_NXDOMAIN,	/* the name does not exist: permanent */
	DNS_NODATA,	/* the name exists, no record of that type */
	DNS_NULLMX,	/* RFC 7505 */
	DNS_TEMPFAIL,	/* SERVFAIL, timeout, refused, malformed answer */
};

struct dns_mx {
	unsigned pref;
	char host[DNS_NAME_MAX + 1];
};

struct dns_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* TLSA (RFC 6698): one RRset, each record's RDATA as sent, pointing into
 * the answer (so a whole certificate of any size gets through). */
#define DNS_MAX_TLSA	32
struct dns_tlsa_rdata {
	size_t len;
	const unsigned char *rdata;
};

typedef void dns_mx_cb(void *arg, enum dns_status, int secure,
    const struct dns_mx *, int n);
/* secure: AD bit (and dnssec = yes).  bogus answers come back from a
 * validating resolver as SERVFAIL: DNS_TEMPFAIL. */
typedef void dns_tlsa_cb(void *arg, enum dns_status, int secure,
    const struct dns_tlsa_rdata *, int n);
typedef void dns_addr_cb(void *arg, enum dns_status, int secure,
    const struct dns_addr *, int n);

int dns_init(const struct config *);	/* -1: logged */
void dns_free(void);
struct dns_req *dns_query_mx(const char *domain, dns_mx_cb *, void *arg);
struct dns_req *dns_query_addr(const char *host, dns_addr_cb *, void *arg);
/* _PORT._tcp.HOST TLSA, with the AD bit asked for; CNAMEs followed by the
 * resolver (RFC 7672 section 2.2.2). */
struct dns_req *dns_query_tlsa(const char *host, unsigned port,
    dns_tlsa_cb *, void *arg);
void dns_cancel(struct dns_req *);	/* NULL: nothing */
const char *dns_status_name(enum dns_status);
/* During a callback: the raw answer (MX; for addresses the A answer, else
 * the AAAA), header flags included. */
const unsigned char *dns_raw(size_t *len);
/* During an address callback: when the host is an alias, the name its
 * CNAME chain ended at (lower case, no trailing dot), the same in both
 * answers; else NULL (no CNAME, or answers that cannot be followed or
 * disagree).  Whether every link was DNSSEC-secure is the callback's
 * "secure": a validating resolver sets AD only when the whole chain and
 * the records at its end validated. */
const char *dns_canon(void);

/* Pure helpers, unit-tested and fuzzed: parse a raw MX answer (message
 * bytes, explicit length) into a sorted list. */
int dns_parse_mx(const unsigned char *, size_t, struct dns_mx *, int max,
    int *n, enum dns_status *);
/* A raw TLSA answer: the TLSA records of the answer section (owner name
 * not checked beyond the question; CNAMEs skipped), *secure from the AD
 * bit; rdata points into the message.  More than max: usable ones
 * (dane_tlsa_unusable()) are kept before the others, in no set order.
 * 0 understood, -1 malformed. */
int dns_parse_tlsa(const unsigned char *, size_t, struct dns_tlsa_rdata *,
    int max, int *n, int *secure, enum dns_status *);
/* The CNAME chain of a raw answer, followed from the question's name
 * through CNAME IN records of the answer section (in any order, at most
 * DNS_CNAME_HOPS_MAX links): 1 the name is an alias and out (outsz at
 * least DNS_NAME_MAX + 1) has where the chain ends, lower case; 0 not an
 * alias (or an answer with no records to look at); -1 malformed, a loop
 * or a chain too long, or a name that is not a host name. */
#define DNS_CNAME_HOPS_MAX 8
int dns_parse_cname(const unsigned char *, size_t, char *out, size_t outsz);

#endif
