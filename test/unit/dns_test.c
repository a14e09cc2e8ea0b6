/*
 * dns_test.c - dns_parse_mx() on answers built byte by byte here: order,
 * shuffling of equal preferences, null MX, rcodes, compression pointers,
 * truncated and malformed messages, the DNS_MAX_MX cut.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dns.h"
#include "t.h"

#define PKT_MAX		4096
#define SHUFFLE_RUNS	200
#define QNAME_OFF	12	/* the question's name, for 0xc00c pointers */

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

/* Header + question "qname IN MX"; rcode and flags as given. */
static void
begin(struct pkt *p, const char *qname, unsigned rcode, unsigned ancount)
{
	memset(p, 0, sizeof(*p));
	put16(p, 0x1234);		/* id */
	put8(p, 0x81);			/* QR, RD */
	put8(p, 0x80 | rcode);		/* RA */
	put16(p, 1);			/* qdcount */
	p->ancount_off = p->len;
	put16(p, ancount);
	put16(p, 0);
	put16(p, 0);
	put_name(p, qname, -1);
	put16(p, 15);			/* MX */
	put16(p, 1);			/* IN */
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
	{ "status names", t_status_names },
};

T_MAIN("dns", cases)
