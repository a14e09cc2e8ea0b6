/*
 * dane_base_test.c - dane_base_*(), the TLSA base domain of a host whose
 * name is an alias (RFC 7672 sections 2.2.3 and 3.2.2, RFC 7671 section
 * 7): which names are tried in which order for every kind of lookup
 * result, secure and insecure expansions, and the reference identifiers
 * a DANE-TA certificate may carry.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dane.h"
#include "t.h"

static int
t_not_alias(void)
{
	struct dane_base b;

	dane_base_init(&b, "mx.a.test", NULL, 1);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(!dane_base_expanded(&b));
	/* Nothing to move on to, whatever the answer. */
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 0);
	CHECK(dane_base_next(&b, DANE_LOOKUP_FOUND, 0) == 0);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	/* An alias of itself (any case) is no alias. */
	dane_base_init(&b, "mx.a.test", "MX.A.TEST", 1);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 0);
	dane_base_init(&b, "mx.a.test", "", 1);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 0);
	return 0;
}

static int
t_insecure_alias(void)
{
	struct dane_base b;

	/* An insecure expansion is not a TLSA base domain at all. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 0);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(!dane_base_expanded(&b));
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 0);
	CHECK(dane_base_next(&b, DANE_LOOKUP_FOUND, 0) == 0);
	return 0;
}

static int
t_secure_alias(void)
{
	struct dane_base b;

	/* The chain's end first ... */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK_STR(dane_base_name(&b), "mx.b.test");
	CHECK(dane_base_expanded(&b));
	/* ... secure records there are the answer ... */
	CHECK(dane_base_next(&b, DANE_LOOKUP_FOUND, 1) == 0);
	CHECK_STR(dane_base_name(&b), "mx.b.test");
	/* ... and so is a failure (never another name behind it). */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK(dane_base_next(&b, DANE_LOOKUP_FAILED, 0) == 0);
	CHECK_STR(dane_base_name(&b), "mx.b.test");
	/* None there: the name itself, once. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 1);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(!dane_base_expanded(&b));
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 0);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	/* Insecure records there do not count: the name itself. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK(dane_base_next(&b, DANE_LOOKUP_FOUND, 0) == 1);
	CHECK_STR(dane_base_name(&b), "mx.a.test");
	CHECK(dane_base_next(&b, DANE_LOOKUP_FOUND, 0) == 0);
	/* An insecure denial at the end moves on too. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 0) == 1);
	/* Asking before any lookup changes nothing. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	CHECK(dane_base_next(&b, DANE_LOOKUP_NONE, 0) == 0);
	CHECK_STR(dane_base_name(&b), "mx.b.test");
	return 0;
}

static int
t_refs(void)
{
	struct dane_base b;
	const char *names[DANE_REFS_MAX];
	size_t n;

	/* Records at the chain's end: that name, the MX host, the
	 * next-hop domain. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	n = dane_base_refs(&b, "a.test", names, DANE_REFS_MAX);
	CHECK(n == 3);
	CHECK_STR(names[0], "mx.b.test");
	CHECK_STR(names[1], "mx.a.test");
	CHECK_STR(names[2], "a.test");
	/* Records at the name itself: the chain's end does not count. */
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 1);
	n = dane_base_refs(&b, "a.test", names, DANE_REFS_MAX);
	CHECK(n == 2);
	CHECK_STR(names[0], "mx.a.test");
	CHECK_STR(names[1], "a.test");
	/* The implicit MX: host and next hop are one name, given once. */
	dane_base_init(&b, "a.test", NULL, 1);
	n = dane_base_refs(&b, "A.Test", names, DANE_REFS_MAX);
	CHECK(n == 1);
	CHECK_STR(names[0], "a.test");
	/* Room for fewer; no next hop. */
	dane_base_init(&b, "mx.a.test", "mx.b.test", 1);
	n = dane_base_refs(&b, "a.test", names, 1);
	CHECK(n == 1);
	CHECK_STR(names[0], "mx.b.test");
	n = dane_base_refs(&b, NULL, names, DANE_REFS_MAX);
	CHECK(n == 2);
	return 0;
}

static int
t_long_names(void)
{
	struct dane_base b;
	char host[300], canon[300];

	/* Longer than a DNS name: cut, never overrun. */
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memset(canon, 'c', sizeof(canon) - 1);
	canon[sizeof(canon) - 1] = '\0';
	dane_base_init(&b, host, canon, 1);
	CHECK(strlen(dane_base_name(&b)) == DANE_BASE_NAME_MAX);
	CHECK(dane_base_name(&b)[0] == 'c');
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 1);
	CHECK(strlen(dane_base_name(&b)) == DANE_BASE_NAME_MAX);
	CHECK(dane_base_name(&b)[0] == 'h');
	return 0;
}

static const struct t_case cases[] = {
	{ "not an alias: the name itself only", t_not_alias },
	{ "insecure CNAME: the name itself only", t_insecure_alias },
	{ "secure CNAME: the end, then the name", t_secure_alias },
	{ "DANE-TA reference identifiers", t_refs },
	{ "names longer than DNS allows", t_long_names },
};

T_MAIN("dane_base", cases)
