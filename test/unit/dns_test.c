/*
 * dns_test.c - dns_parse_mx() and dns_parse_tlsa() on answers built byte
 * by byte here: order, shuffling of equal preferences, null MX, rcodes,
 * compression pointers, truncated and malformed messages, the
 * DNS_MAX_MX cut; for TLSA also the AD bit, CNAMEs and RRSIGs stepped
 * over, RDATA of odd sizes and the cut at max; for dns_parse_cname() the
 * chain followed in any order and case, loops, length limits, names that
 * are not host names, and every truncation.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dns.h"
#include "t.h"

#define PKT_MAX		4096
#define SHUFFLE_RUNS	200
#define QNAME_OFF	12	/* the question's name, for 0xc00c pointers */
#define T_A		1
#define T_MX		15
#define T_CNAME		5
#define T_RRSIG		46
#define T_TLSA		52
#define FLAG_AD		0x20
#define SHA256_LEN	32
#define SHA512_LEN	64
#define TLSA_MANY	40	/* more than DNS_MAX_TLSA */
#define TLSA_LONG	2000	/* a full certificate's data: over 1100 */

struct pkt {
	unsigned char b[PKT_MAX];
	size_t len;
	size_t ancount_off;
};

static void
put8(struct pkt *p, unsigned v)
{
	if (p->len < PKT_MAX)
		p->b[p->len++] = (unsigned char)v;
}

static void
put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8);
	put8(p, v & 0xff);
}

/* "a.b.c" as labels; ptr >= 0 ends it with a pointer instead of root. */
static void
put_name(struct pkt *p, const char *name, int ptr)
{
	const char *s = name, *dot;
	size_t l;

	while (*s != '\0') {
		dot = strchr(s, '.');
		l = dot ? (size_t)(dot - s) : strlen(s);
		put8(p, (unsigned)l);
		while (l-- > 0)
			put8(p, (unsigned char)*s++);
		if (*s == '.')
			s++;
	}
	if (ptr >= 0)
		put16(p, 0xc000u | (unsigned)ptr);
	else
		put8(p, 0);
}

/* Header + question "qname IN qtype"; rcode and extra flags (AD) as
 * given. */
static void
begin_q(struct pkt *p, const char *qname, unsigned qtype, unsigned flags2,
    unsigned rcode, unsigned ancount)
{
	memset(p, 0, sizeof(*p));
	put16(p, 0x1234);		/* id */
	put8(p, 0x81);			/* QR, RD */
	put8(p, 0x80 | flags2 | rcode);	/* RA */
	put16(p, 1);			/* qdcount */
	p->ancount_off = p->len;
	put16(p, ancount);
	put16(p, 0);
	put16(p, 0);
	put_name(p, qname, -1);
	put16(p, qtype);
	put16(p, 1);			/* IN */
}

static void
begin(struct pkt *p, const char *qname, unsigned rcode, unsigned ancount)
{
	begin_q(p, qname, T_MX, 0, rcode, ancount);
}

/* An RR owned by the name at "owner" (a pointer), rdata as given. */
static void
add_rr(struct pkt *p, unsigned owner, unsigned type, unsigned class,
    const unsigned char *rdata, size_t rdlen)
{
	size_t i;

	put16(p, 0xc000u | owner);
	put16(p, type);
	put16(p, class);
	put16(p, 0);
	put16(p, 300);			/* ttl */
	put16(p, (unsigned)rdlen);
	for (i = 0; i < rdlen; i++)
		put8(p, rdata[i]);
}

/* A TLSA IN record: usage, selector, type, then dlen octets of data
 * made from "seed" so that each record's data differs. */
static void
add_tlsa(struct pkt *p, unsigned owner, unsigned u, unsigned sel,
    unsigned mt, size_t dlen, unsigned seed)
{
	unsigned char rd[TLSA_LONG + 3];
	size_t i;

	rd[0] = (unsigned char)u;
	rd[1] = (unsigned char)sel;
	rd[2] = (unsigned char)mt;
	for (i = 0; i < dlen && i + 3 < sizeof(rd); i++)
		rd[3 + i] = (unsigned char)(seed + i * 7);
	add_rr(p, owner, T_TLSA, 1, rd, dlen + 3);
}

/* The record at out[i] is what add_tlsa() made from these arguments. */
static int
tlsa_is(const struct dns_tlsa_rdata *r, unsigned u, unsigned sel,
    unsigned mt, size_t dlen, unsigned seed)
{
	size_t i;

	if (r->len != dlen + 3 || r->rdata[0] != u || r->rdata[1] != sel ||
	    r->rdata[2] != mt)
		return 0;
	for (i = 0; i < dlen; i++)
		if (r->rdata[3 + i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

/* An MX RR owned by the question's name (pointer), target as labels
 * ending with tptr (a pointer) or the root. */
static void
add_mx(struct pkt *p, unsigned pref, const char *target, int tptr)
{
	size_t rdlen_off;

	put16(p, 0xc000u | QNAME_OFF);
	put16(p, 15);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);			/* ttl */
	rdlen_off = p->len;
	put16(p, 0);
	put16(p, pref);
	put_name(p, target, tptr);
	p->b[rdlen_off] = (unsigned char)((p->len - rdlen_off - 2) >> 8);
	p->b[rdlen_off + 1] = (unsigned char)((p->len - rdlen_off - 2) & 0xff);
}

static void
set_ancount(struct pkt *p, unsigned n)
{
	p->b[p->ancount_off] = (unsigned char)(n >> 8);
	p->b[p->ancount_off + 1] = (unsigned char)(n & 0xff);
}

/* A CNAME IN record owned by the name at "owner" (a pointer), target as
 * labels ending with tptr (a pointer) or the root.  Returns the offset of
 * the target, for later pointers to it. */
static size_t
add_cname(struct pkt *p, unsigned owner, const char *target, int tptr)
{
	size_t rdlen_off, at;

	put16(p, 0xc000u | owner);
	put16(p, T_CNAME);
	put16(p, 1);
	put16(p, 0);
	put16(p, 60);
	rdlen_off = p->len;
	put16(p, 0);
	at = p->len;
	put_name(p, target, tptr);
	p->b[rdlen_off] = (unsigned char)((p->len - at) >> 8);
	p->b[rdlen_off + 1] = (unsigned char)((p->len - at) & 0xff);
	return at;
}

/* An RR whose owner is spelt out as labels (any octets), rdata as given. */
static void
add_rr_named(struct pkt *p, const char *owner, unsigned type,
    const unsigned char *rdata, size_t rdlen)
{
	size_t i;

	put_name(p, owner, -1);
	put16(p, type);
	put16(p, 1);
	put16(p, 0);
	put16(p, 60);
	put16(p, (unsigned)rdlen);
	for (i = 0; i < rdlen; i++)
		put8(p, rdata[i]);
}

static int
parse(const struct pkt *p, struct dns_mx *mx, int max, int *n,
    enum dns_status *st)
{
	return dns_parse_mx(p->b, p->len, mx, max, n, st);
}

static int
t_sorted(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n;

	begin(&p, "a.test", 0, 3);
	add_mx(&p, 30, "mx3.a.test", -1);
	add_mx(&p, 10, "mx1", QNAME_OFF);	/* mx1.a.test, compressed */
	add_mx(&p, 20, "mx2.a.test", -1);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK);
	CHECK(n == 3);
	CHECK(mx[0].pref == 10);
	CHECK_STR(mx[0].host, "mx1.a.test");
	CHECK(mx[1].pref == 20);
	CHECK_STR(mx[1].host, "mx2.a.test");
	CHECK(mx[2].pref == 30);
	CHECK_STR(mx[2].host, "mx3.a.test");
	return 0;
}

/* A target that points into another target: "mx" + pointer to the
 * "a.test" inside the first RR's "mail.a.test". */
static int
t_nested_pointer(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	size_t first;
	int n;

	begin(&p, "a.test", 0, 2);
	first = p.len;
	add_mx(&p, 5, "mail.a.test", -1);
	/* owner ptr(2) type(2) class(2) ttl(4) rdlen(2) pref(2) "\4mail" */
	add_mx(&p, 7, "backup", (int)(first + 14 + 5));
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK && n == 2);
	CHECK_STR(mx[0].host, "mail.a.test");
	CHECK_STR(mx[1].host, "backup.a.test");
	CHECK(mx[1].pref == 7);
	return 0;
}

static int
t_shuffle(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n, i, xy = 0, yx = 0;

	begin(&p, "b.test", 0, 3);
	add_mx(&p, 10, "x.b.test", -1);
	add_mx(&p, 10, "y.b.test", -1);
	add_mx(&p, 5, "z.b.test", -1);
	for (i = 0; i < SHUFFLE_RUNS; i++) {
		CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
		CHECK(st == DNS_OK && n == 3);
		CHECK_STR(mx[0].host, "z.b.test");
		CHECK(mx[1].pref == 10 && mx[2].pref == 10);
		if (strcmp(mx[1].host, "x.b.test") == 0) {
			CHECK_STR(mx[2].host, "y.b.test");
			xy++;
		} else {
			CHECK_STR(mx[1].host, "y.b.test");
			CHECK_STR(mx[2].host, "x.b.test");
			yx++;
		}
	}
	/* Each order has probability 1/2: 2^-199 to see only one. */
	CHECK(xy > 0 && yx > 0);
	return 0;
}

static int
t_null_mx(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n;

	begin(&p, "null.test", 0, 1);
	add_mx(&p, 0, "", -1);			/* RFC 7505 "0 ." */
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_NULLMX);
	CHECK(n == 0);

	/* "." beside a real host (RFC 7505 §3 forbids it): the host wins. */
	begin(&p, "mixed.test", 0, 2);
	add_mx(&p, 0, "", -1);
	add_mx(&p, 10, "mx.mixed.test", -1);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK && n == 1);
	CHECK_STR(mx[0].host, "mx.mixed.test");
	return 0;
}

static int
t_rcodes(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n;

	begin(&p, "nx.test", 3, 0);		/* NXDOMAIN */
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_NXDOMAIN && n == 0);

	begin(&p, "sf.test", 2, 0);		/* SERVFAIL */
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_TEMPFAIL);

	begin(&p, "rf.test", 5, 0);		/* REFUSED */
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_TEMPFAIL);

	begin(&p, "nodata.test", 0, 0);		/* NOERROR, no answer */
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_NODATA && n == 0);

	/* NXDOMAIN after a CNAME (RFC 6604): still NXDOMAIN. */
	begin(&p, "alias.test", 3, 1);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, 5);				/* CNAME */
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 7);				/* \4gone + pointer */
	put_name(&p, "gone", QNAME_OFF);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_NXDOMAIN);
	return 0;
}

/* Only a CNAME in the answer (the target has no MX): NODATA. */
static int
t_cname_only(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n;

	begin(&p, "alias.test", 0, 1);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, 5);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 7);
	put_name(&p, "real", QNAME_OFF);
	CHECK(p.len == 12 + 12 + 4 + 12 + 7);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_NODATA && n == 0);
	return 0;
}

static int
t_truncated(void)
{
	struct pkt p, q;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	size_t l;
	int n;

	begin(&p, "a.test", 0, 2);
	add_mx(&p, 10, "mx1.a.test", -1);
	add_mx(&p, 20, "mx2", QNAME_OFF);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0 && n == 2);
	/* Every strict prefix is missing something ancount promises. */
	for (l = 0; l < p.len; l++) {
		q = p;
		q.len = l;
		n = -1;
		CHECK(parse(&q, mx, DNS_MAX_MX, &n, &st) == -1);
		CHECK(st == DNS_TEMPFAIL);
		CHECK(n == 0);
	}
	/* More records announced than present. */
	q = p;
	set_ancount(&q, 3);
	CHECK(parse(&q, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);
	CHECK(dns_parse_mx(NULL, 0, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);
	return 0;
}

static int
t_malformed(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	size_t at;
	int n;

	/* Not a response (QR clear). */
	begin(&p, "a.test", 0, 1);
	add_mx(&p, 10, "mx1.a.test", -1);
	p.b[2] &= 0x7f;
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);

	/* A target that is a pointer to itself. */
	begin(&p, "a.test", 0, 1);
	add_mx(&p, 10, "", -1);
	at = p.len - 1;			/* the root label of the target */
	p.len--;
	put16(&p, 0xc000u | (unsigned)at);
	p.b[at - 4] = 0;		/* rdlen: pref + pointer */
	p.b[at - 3] = 4;
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);

	/* A pointer past the end. */
	begin(&p, "a.test", 0, 1);
	add_mx(&p, 10, "mx", 0x3fff);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);

	/* No question. */
	begin(&p, "a.test", 0, 1);
	add_mx(&p, 10, "mx1.a.test", -1);
	p.b[5] = 0;
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);

	/* rdata too short for a preference. */
	begin(&p, "a.test", 0, 1);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, 15);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 1);
	put8(&p, 0);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);

	/* The only target is not a host name: nothing usable, TEMPFAIL. */
	begin(&p, "a.test", 0, 1);
	add_mx(&p, 10, "bad host.a.test", -1);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == -1);
	CHECK(st == DNS_TEMPFAIL && n == 0);

	/* ... but beside a good one it is just skipped. */
	begin(&p, "a.test", 0, 2);
	add_mx(&p, 5, "bad\\x.a.test", -1);
	add_mx(&p, 10, "good.a.test", -1);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK && n == 1);
	CHECK_STR(mx[0].host, "good.a.test");
	return 0;
}

/* 20 MX, preferences 20 down to 1: the 16 lowest survive, in order. */
static int
t_too_many(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX + 1];
	enum dns_status st;
	char name[32];
	int n, i;

	begin(&p, "many.test", 0, 20);
	for (i = 20; i >= 1; i--) {
		snprintf(name, sizeof(name), "mx%d", i);
		add_mx(&p, (unsigned)i, name, QNAME_OFF);
	}
	memset(mx, 0xa5, sizeof(mx));
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK);
	CHECK(n == DNS_MAX_MX);
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "mx%d.many.test", i + 1);
		CHECK(mx[i].pref == (unsigned)i + 1);
		CHECK_STR(mx[i].host, name);
	}
	/* nothing written past max */
	CHECK(mx[DNS_MAX_MX].pref == 0xa5a5a5a5u);

	/* a smaller max, the cut inside a run of equal preferences */
	begin(&p, "cut.test", 0, 3);
	add_mx(&p, 1, "a.cut.test", -1);
	add_mx(&p, 2, "b.cut.test", -1);
	add_mx(&p, 2, "c.cut.test", -1);
	CHECK(parse(&p, mx, 2, &n, &st) == 0);
	CHECK(st == DNS_OK && n == 2);
	CHECK_STR(mx[0].host, "a.cut.test");
	CHECK(mx[1].pref == 2);
	CHECK(strcmp(mx[1].host, "b.cut.test") == 0 ||
	    strcmp(mx[1].host, "c.cut.test") == 0);
	return 0;
}

/* Records of other types and classes in the answer are not MX. */
static int
t_other_records(void)
{
	struct pkt p;
	struct dns_mx mx[DNS_MAX_MX];
	enum dns_status st;
	int n;

	begin(&p, "a.test", 0, 2);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, 1);				/* an A record */
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 4);
	put8(&p, 127);
	put8(&p, 0);
	put8(&p, 0);
	put8(&p, 9);
	add_mx(&p, 10, "mx.a.test", -1);
	CHECK(parse(&p, mx, DNS_MAX_MX, &n, &st) == 0);
	CHECK(st == DNS_OK && n == 1);
	CHECK_STR(mx[0].host, "mx.a.test");
	return 0;
}

/* --- TLSA -------------------------------------------------------------- */

static struct dns_tlsa_rdata tl[TLSA_MANY + 1];

static int
parse_tlsa(const struct pkt *p, int max, int *n, int *secure,
    enum dns_status *st)
{
	*n = -1;
	*secure = -1;
	return dns_parse_tlsa(p->b, p->len, tl, max, n, secure, st);
}

static int
t_tlsa_one(void)
{
	struct pkt p;
	enum dns_status st;
	int n, secure;

	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK);
	CHECK(n == 1);
	CHECK(secure == 0);
	CHECK(tlsa_is(&tl[0], 3, 1, 1, SHA256_LEN, 1));
	return 0;
}

/* Several records, AD set: all of them in order, secure. */
static int
t_tlsa_several_ad(void)
{
	struct pkt p;
	enum dns_status st;
	int n, secure;

	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, FLAG_AD, 0, 4);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 10);
	add_tlsa(&p, QNAME_OFF, 2, 0, 1, SHA256_LEN, 20);
	add_tlsa(&p, QNAME_OFF, 3, 0, 2, SHA512_LEN, 30);
	add_tlsa(&p, QNAME_OFF, 3, 0, 0, 300, 40);	/* a whole "cert" */
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 4);
	CHECK(secure == 1);
	CHECK(tlsa_is(&tl[0], 3, 1, 1, SHA256_LEN, 10));
	CHECK(tlsa_is(&tl[1], 2, 0, 1, SHA256_LEN, 20));
	CHECK(tlsa_is(&tl[2], 3, 0, 2, SHA512_LEN, 30));
	CHECK(tlsa_is(&tl[3], 3, 0, 0, 300, 40));

	/* the same without AD: same records, not secure */
	p.b[3] &= (unsigned char)~FLAG_AD;
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 4 && secure == 0);
	return 0;
}

/*
 * What a validating resolver sends for a CNAME'd TLSA name with DO set:
 * CNAME, its RRSIG, the TLSA owned by the CNAME's target (a pointer into
 * the CNAME's RDATA), its RRSIG.  Only the TLSA comes back.
 */
static int
t_tlsa_cname(void)
{
	static const unsigned char sig[] = { 0, 52, 13, 4, 0, 0, 1, 44 };
	struct pkt p;
	enum dns_status st;
	size_t target;
	int n, secure;

	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, FLAG_AD, 0, 4);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, T_CNAME);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 1 + 4 + 2);		/* \4real + pointer to "a.test" */
	target = p.len;
	/* "_25._tcp.mx.a.test": a.test starts at 12 + 4 + 5 + 3 */
	put_name(&p, "real", QNAME_OFF + 4 + 5 + 3);
	add_rr(&p, QNAME_OFF, T_RRSIG, 1, sig, sizeof(sig));
	add_tlsa(&p, (unsigned)target, 3, 1, 1, SHA256_LEN, 5);
	add_rr(&p, (unsigned)target, T_RRSIG, 1, sig, sizeof(sig));
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 1 && secure == 1);
	CHECK(tlsa_is(&tl[0], 3, 1, 1, SHA256_LEN, 5));

	/* The CNAME alone (the target has no TLSA): NODATA, still secure
	 * (a proven denial, RFC 7672 §2.2). */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, FLAG_AD, 0, 2);
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, T_CNAME);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 7);
	put_name(&p, "real", QNAME_OFF + 4 + 5 + 3);
	add_rr(&p, QNAME_OFF, T_RRSIG, 1, sig, sizeof(sig));
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_NODATA && n == 0 && secure == 1);
	return 0;
}

static int
t_tlsa_rcodes(void)
{
	struct pkt p;
	enum dns_status st;
	int n, secure;

	/* NXDOMAIN, proven (AD) and not */
	begin_q(&p, "_25._tcp.nx.test", T_TLSA, FLAG_AD, 3, 0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_NXDOMAIN && n == 0 && secure == 1);
	begin_q(&p, "_25._tcp.nx.test", T_TLSA, 0, 3, 0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_NXDOMAIN && n == 0 && secure == 0);

	/* NODATA */
	begin_q(&p, "_25._tcp.nodata.test", T_TLSA, FLAG_AD, 0, 0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_NODATA && n == 0 && secure == 1);

	/* SERVFAIL (what a bogus answer looks like): never secure, even
	 * with a stray AD bit */
	begin_q(&p, "_25._tcp.bogus.test", T_TLSA, FLAG_AD, 2, 0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_TEMPFAIL && n == 0 && secure == 0);

	/* REFUSED, and SERVFAIL with records in it: still TEMPFAIL */
	begin_q(&p, "_25._tcp.rf.test", T_TLSA, 0, 5, 0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_TEMPFAIL && n == 0);
	begin_q(&p, "_25._tcp.sf.test", T_TLSA, 0, 2, 1);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_TEMPFAIL && n == 0);
	return 0;
}

/* Every cut of a good answer is malformed: TEMPFAIL, nothing, not
 * secure (the AD bit of a broken message means nothing). */
static int
t_tlsa_truncated(void)
{
	struct pkt p, q;
	enum dns_status st;
	int n, secure;

	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, FLAG_AD, 0, 2);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	add_tlsa(&p, QNAME_OFF, 2, 1, 2, SHA512_LEN, 2);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(n == 2 && secure == 1);
	for (q = p; q.len > 0; q.len--) {
		if (q.len == p.len)
			continue;
		CHECK(parse_tlsa(&q, DNS_MAX_TLSA, &n, &secure, &st) == -1);
		CHECK(st == DNS_TEMPFAIL && n == 0 && secure == 0);
	}
	CHECK(parse_tlsa(&q, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* RDATA running past the end by one octet */
	q = p;
	q.b[q.len - SHA512_LEN - 3 - 1] += 1;	/* the last rdlength */
	CHECK(parse_tlsa(&q, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	CHECK(st == DNS_TEMPFAIL && n == 0 && secure == 0);

	/* one record more announced than sent */
	q = p;
	set_ancount(&q, 3);
	CHECK(parse_tlsa(&q, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	CHECK(dns_parse_tlsa(NULL, 0, tl, DNS_MAX_TLSA, &n, &secure,
	    &st) == -1);
	CHECK(st == DNS_TEMPFAIL && n == 0 && secure == 0);
	return 0;
}

/* Owner names with pointers: good ones, and ones that would loop, point
 * ahead, into the header or past the end; labels of the unused types;
 * a name over 255 octets. */
static int
t_tlsa_compression(void)
{
	struct pkt p;
	enum dns_status st;
	size_t at;
	int n, secure, i;

	/* owner "x" + pointer into the question's name ("_tcp...") */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	put_name(&p, "x", QNAME_OFF + 4);
	put16(&p, T_TLSA);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 3 + 1);
	put8(&p, 3);
	put8(&p, 1);
	put8(&p, 1);
	put8(&p, 0xab);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 1 && tl[0].len == 4);
	CHECK(tl[0].rdata[3] == 0xab);

	/* a pointer to itself */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	at = p.len;
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	p.b[at] = (unsigned char)(0xc0 | at >> 8);
	p.b[at + 1] = (unsigned char)(at & 0xff);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	CHECK(st == DNS_TEMPFAIL);

	/* a pointer ahead, to the record's own RDATA */
	p.b[at + 1] = (unsigned char)((at + 12) & 0xff);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* two names pointing at each other: the second points back to the
	 * first, the first ahead to the second */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 2);
	at = p.len;
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	add_tlsa(&p, (unsigned)at, 3, 1, 1, SHA256_LEN, 2);
	p.b[at] = (unsigned char)(0xc0 | (p.len - (3 + SHA256_LEN) - 12) >>
	    8);
	p.b[at + 1] = (unsigned char)((p.len - (3 + SHA256_LEN) - 12) &
	    0xff);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* into the header; past the end; the pointer's second octet cut */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	add_tlsa(&p, 4, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	add_tlsa(&p, 0x3fff, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	put8(&p, 0xc0);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* label types 01 and 10 (RFC 6891 §5 retired them) */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	at = p.len;
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	p.b[at] = 0x41;
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	p.b[at] = 0x81;
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* an owner of 5 x 63-octet labels + the question's 20: over 255 */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	for (i = 0; i < 5; i++) {
		put8(&p, 63);
		for (at = 0; at < 63; at++)
			put8(&p, 'a');
	}
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, T_TLSA);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 3);
	put8(&p, 3);
	put8(&p, 1);
	put8(&p, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	/* ... and 3 of them (209 octets) are fine */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	for (i = 0; i < 3; i++) {
		put8(&p, 63);
		for (at = 0; at < 63; at++)
			put8(&p, 'a');
	}
	put16(&p, 0xc000u | QNAME_OFF);
	put16(&p, T_TLSA);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 60);
	put16(&p, 3);
	put8(&p, 3);
	put8(&p, 1);
	put8(&p, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 1 && tl[0].len == 3);
	return 0;
}

/* More records than max: the first max, in order, nothing written past
 * them; max 0 still says OK. */
static int
t_tlsa_too_many(void)
{
	unsigned char a5[sizeof(tl[0])];
	struct pkt p;
	enum dns_status st;
	int n, secure, i;

	begin_q(&p, "_25._tcp.many.test", T_TLSA, FLAG_AD, 0, TLSA_MANY);
	for (i = 0; i < TLSA_MANY; i++)
		add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, (unsigned)i);
	CHECK(p.len < PKT_MAX);
	memset(tl, 0xa5, sizeof(tl));
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == DNS_MAX_TLSA && secure == 1);
	for (i = 0; i < n; i++)
		CHECK(tlsa_is(&tl[i], 3, 1, 1, SHA256_LEN, (unsigned)i));
	memset(a5, 0xa5, sizeof(a5));
	CHECK(memcmp(&tl[DNS_MAX_TLSA], a5, sizeof(a5)) == 0);

	memset(tl, 0xa5, sizeof(tl));
	CHECK(parse_tlsa(&p, 2, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 2);
	CHECK(tlsa_is(&tl[1], 3, 1, 1, SHA256_LEN, 1));
	CHECK(memcmp(&tl[2], a5, sizeof(a5)) == 0);

	CHECK(dns_parse_tlsa(p.b, p.len, NULL, 0, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 0);
	return 0;
}

/* More records than max, the usable ones last: they take the places of
 * unusable ones (RFC 7672 section 2.2: "only unusable records" means
 * TLS without authentication), and an unusable record never takes a
 * usable one's. */
static int
t_tlsa_usable_first(void)
{
	struct pkt p;
	enum dns_status st;
	int n, secure, i, seen = 0;

	begin_q(&p, "_25._tcp.many.test", T_TLSA, FLAG_AD, 0,
	    DNS_MAX_TLSA + 3);
	for (i = 0; i < DNS_MAX_TLSA; i++)	/* PKIX-EE: unusable */
		add_tlsa(&p, QNAME_OFF, 1, 1, 1, SHA256_LEN, (unsigned)i);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 100);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN - 1, 101);	/* short */
	add_tlsa(&p, QNAME_OFF, 2, 0, 2, SHA512_LEN, 102);
	CHECK(p.len < PKT_MAX);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == DNS_MAX_TLSA && secure == 1);
	for (i = 0; i < n; i++) {
		seen |= tlsa_is(&tl[i], 3, 1, 1, SHA256_LEN, 100) |
		    tlsa_is(&tl[i], 2, 0, 2, SHA512_LEN, 102) << 1;
		CHECK(!tlsa_is(&tl[i], 3, 1, 1, SHA256_LEN - 1, 101));
	}
	CHECK(seen == 3);

	/* usable records past max: the first max of them, no unusable */
	CHECK(parse_tlsa(&p, 1, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 1);
	CHECK(tlsa_is(&tl[0], 3, 1, 1, SHA256_LEN, 100));
	return 0;
}

/* RDATA too short for its fixed fields comes back as sent (dane.c
 * refuses it); long RDATA (a whole certificate, 3 0 0) comes back whole,
 * pointing into the message: dropping it could leave an RRset with
 * nothing to authenticate by. */
static int
t_tlsa_odd_sizes(void)
{
	static const unsigned char two[] = { 3, 1 };
	struct pkt p;
	enum dns_status st;
	int n, secure;

	begin_q(&p, "_25._tcp.odd.test", T_TLSA, 0, 0, 5);
	add_rr(&p, QNAME_OFF, T_TLSA, 1, two, sizeof(two));
	add_rr(&p, QNAME_OFF, T_TLSA, 1, two, 0);
	add_tlsa(&p, QNAME_OFF, 3, 0, 0, 1097, 9);
	add_tlsa(&p, QNAME_OFF, 3, 0, 0, TLSA_LONG, 9);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 7);
	CHECK(p.len < PKT_MAX);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 5);
	CHECK(tl[0].len == 2 && tl[0].rdata[0] == 3 && tl[0].rdata[1] == 1);
	CHECK(tl[1].len == 0);
	CHECK(tlsa_is(&tl[2], 3, 0, 0, 1097, 9));
	CHECK(tlsa_is(&tl[3], 3, 0, 0, TLSA_LONG, 9));
	CHECK(tlsa_is(&tl[4], 3, 1, 1, SHA256_LEN, 7));

	/* a single long record, whole and inside the message */
	begin_q(&p, "_25._tcp.odd.test", T_TLSA, 0, 0, 1);
	add_tlsa(&p, QNAME_OFF, 3, 0, 0, TLSA_LONG, 9);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_OK && n == 1 && tlsa_is(&tl[0], 3, 0, 0, TLSA_LONG, 9));
	CHECK(tl[0].rdata == p.b + p.len - TLSA_LONG - 3);
	return 0;
}

/* Not a TLSA answer: other question types, question counts, QR clear;
 * TLSA of another class and other types in the answer do not count. */
static int
t_tlsa_not_tlsa(void)
{
	static const unsigned char a[] = { 127, 0, 0, 1 };
	struct pkt p;
	enum dns_status st;
	int n, secure;

	begin_q(&p, "_25._tcp.mx.a.test", T_MX, 0, 0, 1);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 1);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	p.b[5] = 0;				/* qdcount 0 */
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	p.b[5] = 2;				/* qdcount 2 */
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	p.b[5] = 1;
	p.b[2] &= 0x7f;				/* a query, not an answer */
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);
	CHECK(st == DNS_TEMPFAIL && n == 0 && secure == 0);

	/* question class CH */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 0);
	p.b[p.len - 1] = 3;
	set_ancount(&p, 1);
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == -1);

	/* a TLSA of class CH and an A: no TLSA IN, NODATA */
	begin_q(&p, "_25._tcp.mx.a.test", T_TLSA, 0, 0, 2);
	add_rr(&p, QNAME_OFF, 1, 1, a, sizeof(a));
	add_tlsa(&p, QNAME_OFF, 3, 1, 1, SHA256_LEN, 1);
	p.b[p.len - SHA256_LEN - 3 - 2 - 4 - 1] = 3;	/* its class */
	CHECK(parse_tlsa(&p, DNS_MAX_TLSA, &n, &secure, &st) == 0);
	CHECK(st == DNS_NODATA && n == 0);
	return 0;
}

static const unsigned char addr_a[] = { 127, 0, 0, 1 };

static int
t_cname_none(void)
{
	struct pkt p;
	char out[DNS_NAME_MAX + 1];

	begin_q(&p, "mx.a.test", T_A, FLAG_AD, 0, 1);
	add_rr(&p, QNAME_OFF, T_A, 1, addr_a, sizeof(addr_a));
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 0);
	CHECK(out[0] == '\0');
	/* A CNAME owned by some other name is no link of this chain. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 2);
	add_rr(&p, QNAME_OFF, T_A, 1, addr_a, sizeof(addr_a));
	add_cname(&p, QNAME_OFF + 3, "elsewhere.test", -1);	/* a.test */
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 0);
	/* No records to look at: NXDOMAIN (even after a CNAME, RFC
	 * 6604), SERVFAIL, NODATA. */
	begin_q(&p, "mx.a.test", T_A, 0, 3, 1);
	add_cname(&p, QNAME_OFF, "gone.test", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 0);
	begin_q(&p, "mx.a.test", T_A, 0, 2, 0);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 0);
	begin_q(&p, "mx.a.test", T_A, 0, 0, 0);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 0);
	/* Not a response; a buffer too small for any name. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	add_cname(&p, QNAME_OFF, "mx.b.test", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, DNS_NAME_MAX) == -1);
	p.b[2] &= 0x7f;
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	return 0;
}

static int
t_cname_chain(void)
{
	static const unsigned char sig[] = { 0, 5, 13, 4, 0, 0, 1, 44 };
	struct pkt p;
	char out[DNS_NAME_MAX + 1];
	size_t step1, cut, full;

	/* One link, then the address at its end. */
	begin_q(&p, "mx.a.test", T_A, FLAG_AD, 0, 2);
	step1 = add_cname(&p, QNAME_OFF, "mx.b.test", -1);
	add_rr(&p, (unsigned)step1, T_A, 1, addr_a, sizeof(addr_a));
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 1);
	CHECK_STR(out, "mx.b.test");

	/* Two links with RRSIGs and the address between them, compressed
	 * names, mixed case: "Mx.A.Test" -> step1.a.test -> final.b.test. */
	begin_q(&p, "Mx.A.Test", T_A, FLAG_AD, 0, 5);
	step1 = add_cname(&p, QNAME_OFF, "Step1", QNAME_OFF + 3);
	add_rr(&p, QNAME_OFF, T_RRSIG, 1, sig, sizeof(sig));
	add_rr(&p, (unsigned)step1, T_A, 1, addr_a, sizeof(addr_a));
	add_rr(&p, (unsigned)step1, T_RRSIG, 1, sig, sizeof(sig));
	add_cname(&p, (unsigned)step1, "FINAL.b.test", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 1);
	CHECK_STR(out, "final.b.test");

	/* Every cut short of the whole message is malformed. */
	full = p.len;
	for (cut = 0; cut < full; cut++)
		CHECK(dns_parse_cname(p.b, cut, out, sizeof(out)) == -1);

	/* The last link first: a.x -> b.x -> c.x, "b.x" spelt out. */
	begin_q(&p, "a.x", T_A, 0, 0, 3);
	add_rr_named(&p, "B.x", T_CNAME, (const unsigned char *)"\1c\1x",
	    5);
	add_cname(&p, QNAME_OFF, "b", QNAME_OFF + 2);
	add_rr(&p, QNAME_OFF, T_A, 1, addr_a, sizeof(addr_a));
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 1);
	CHECK_STR(out, "c.x");
	return 0;
}

static int
t_cname_limits(void)
{
	struct pkt p;
	char out[DNS_NAME_MAX + 1], t[16];
	size_t at[DNS_CNAME_HOPS_MAX + 2];
	unsigned i, links;

	/* DNS_CNAME_HOPS_MAX links are followed, one more is too many. */
	for (links = DNS_CNAME_HOPS_MAX; links <= DNS_CNAME_HOPS_MAX + 1;
	    links++) {
		begin_q(&p, "a.x", T_A, 0, 0, links);
		at[0] = QNAME_OFF;
		for (i = 1; i <= links; i++) {
			snprintf(t, sizeof(t), "l%u", i);
			at[i] = add_cname(&p, (unsigned)at[i - 1], t,
			    QNAME_OFF + 2);		/* "x" */
		}
		CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) ==
		    (links <= DNS_CNAME_HOPS_MAX ? 1 : -1));
		if (links == DNS_CNAME_HOPS_MAX) {
			snprintf(t, sizeof(t), "l%u.x", links);
			CHECK_STR(out, t);
		}
	}
	/* A loop: a.x -> b.x -> a.x. */
	begin_q(&p, "a.x", T_A, 0, 0, 2);
	at[1] = add_cname(&p, QNAME_OFF, "b", QNAME_OFF + 2);
	add_cname(&p, (unsigned)at[1], "a", QNAME_OFF + 2);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	/* A name that is its own alias. */
	begin_q(&p, "a.x", T_A, 0, 0, 1);
	add_cname(&p, QNAME_OFF, "a", QNAME_OFF + 2);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	return 0;
}

static int
t_cname_bad_names(void)
{
	struct pkt p;
	char out[DNS_NAME_MAX + 1];
	size_t rd;

	/* A target with a dot inside a label: not a host name. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	rd = add_cname(&p, QNAME_OFF, "evil.b.test", -1);
	p.b[rd + 1 + 4] = '.';		/* "evil" + '.' as one label */
	p.b[rd] = 5;
	p.b[rd + 6] = 0;		/* ... then the root */
	p.b[rd - 1] = 7;		/* the RDATA ends there too */
	p.len = rd + 7;
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	p.b[rd + 5] = '-';		/* the same with a '-' is a name */
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 1);
	CHECK_STR(out, "evil-");
	/* A space, a NUL octet. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	rd = add_cname(&p, QNAME_OFF, "ev l.b.test", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	rd = add_cname(&p, QNAME_OFF, "evil.b.test", -1);
	p.b[rd + 2] = 0;
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	/* The root as target. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	add_cname(&p, QNAME_OFF, "", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	/* RDATA longer than the name in it. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	rd = add_cname(&p, QNAME_OFF, "mx.b.test", -1);
	p.b[rd - 1]++;
	put8(&p, 0);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	/* A forward pointer in the target. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 1);
	rd = add_cname(&p, QNAME_OFF, "mx", (int)p.len + 20);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == -1);
	/* An owner that is not a host name is stepped over, not fatal. */
	begin_q(&p, "mx.a.test", T_A, 0, 0, 2);
	add_rr_named(&p, "a b", T_CNAME, (const unsigned char *)"\1c\0", 3);
	add_cname(&p, QNAME_OFF, "mx.b.test", -1);
	CHECK(dns_parse_cname(p.b, p.len, out, sizeof(out)) == 1);
	CHECK_STR(out, "mx.b.test");
	return 0;
}

static int
t_status_names(void)
{
	CHECK_STR(dns_status_name(DNS_OK), "ok");
	CHECK_STR(dns_status_name(DNS_NXDOMAIN), "nxdomain");
	CHECK_STR(dns_status_name(DNS_NODATA), "nodata");
	CHECK_STR(dns_status_name(DNS_NULLMX), "nullmx");
	CHECK_STR(dns_status_name(DNS_TEMPFAIL), "tempfail");
	CHECK_STR(dns_status_name((enum dns_status)99), "unknown");
	return 0;
}

static const struct t_case cases[] = {
	{ "sorted by preference, compressed target", t_sorted },
	{ "pointer into another target", t_nested_pointer },
	{ "equal preferences shuffled", t_shuffle },
	{ "null MX (RFC 7505)", t_null_mx },
	{ "rcodes: NXDOMAIN, SERVFAIL, REFUSED, no answer", t_rcodes },
	{ "CNAME only: NODATA", t_cname_only },
	{ "truncated messages", t_truncated },
	{ "malformed messages", t_malformed },
	{ "more than DNS_MAX_MX", t_too_many },
	{ "records of other types", t_other_records },
	{ "TLSA: one record", t_tlsa_one },
	{ "TLSA: several records, AD set and unset", t_tlsa_several_ad },
	{ "TLSA: CNAME and RRSIGs stepped over", t_tlsa_cname },
	{ "TLSA: rcodes and the AD bit", t_tlsa_rcodes },
	{ "TLSA: truncated messages and RDATA", t_tlsa_truncated },
	{ "TLSA: compression pointers and bad names", t_tlsa_compression },
	{ "TLSA: more records than max", t_tlsa_too_many },
	{ "TLSA: usable records kept before unusable", t_tlsa_usable_first },
	{ "TLSA: short and oversized RDATA", t_tlsa_odd_sizes },
	{ "TLSA: not a TLSA answer", t_tlsa_not_tlsa },
	{ "CNAME: not an alias", t_cname_none },
	{ "CNAME: chains in any order and case; truncations", t_cname_chain },
	{ "CNAME: hop limit and loops", t_cname_limits },
	{ "CNAME: names that are not host names", t_cname_bad_names },
	{ "status names", t_status_names },
};

T_MAIN("dns", cases)
