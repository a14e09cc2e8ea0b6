/*
 * dane_step_test.c - dane_host_step(), RFC 7672 section 2.2 for one MX
 * host at dane and dane-only: every combination of MX security, TLSA
 * lookup result, TLSA security and usability against the step a
 * delivery (and `ferry check`) must take.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dane.h"
#include "t.h"

/* 3 1 1 with 32 bytes of data: usable.  0 0 1: a PKIX usage, not. */
static void
set_one(struct dane_rrset *set, int usable)
{
	uint8_t rdata[3 + 32];

	memset(rdata, 0xab, sizeof(rdata));
	rdata[0] = usable ? DANE_USAGE_DANE_EE : DANE_USAGE_PKIX_TA;
	rdata[1] = usable ? DANE_SEL_SPKI : DANE_SEL_CERT;
	rdata[2] = DANE_MATCH_SHA256;
	set->n = 0;
	if (dane_tlsa_parse(rdata, sizeof(rdata), &set->r[set->n++]) != 0)
		set->n = 0;
}

static int
t_insecure_mx(void)
{
	struct dane_rrset set;
	const char *why = "x";

	set_one(&set, 1);
	/* The TLSA answer does not matter behind an insecure MX. */
	CHECK(dane_host_step(TLS_DANE, 0, DANE_LOOKUP_NONE, 0, NULL, &why) ==
	    DANE_STEP_MAY && why == NULL);
	CHECK(dane_host_step(TLS_DANE, 0, DANE_LOOKUP_FOUND, 1, &set, &why) ==
	    DANE_STEP_MAY);
	CHECK(dane_host_step(TLS_DANE, 0, DANE_LOOKUP_FAILED, 0, NULL, &why) ==
	    DANE_STEP_MAY);
	CHECK(dane_host_step(TLS_DANE_ONLY, 0, DANE_LOOKUP_NONE, 0, NULL,
	    &why) == DANE_STEP_DEFER && why != NULL &&
	    strstr(why, "not DNSSEC-secure") != NULL);
	CHECK(dane_host_step(TLS_DANE_ONLY, 0, DANE_LOOKUP_FOUND, 1, &set,
	    &why) == DANE_STEP_DEFER);
	return 0;
}

static int
t_lookup_first(void)
{
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_NONE, 0, NULL, NULL) ==
	    DANE_STEP_LOOKUP);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_NONE, 0, NULL,
	    NULL) == DANE_STEP_LOOKUP);
	return 0;
}

static int
t_failed_defers(void)
{
	const char *why = NULL;

	/* Never plaintext, never unauthenticated TLS, at either level. */
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FAILED, 0, NULL, &why) ==
	    DANE_STEP_DEFER && why != NULL && strstr(why, "TLSA") != NULL);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_FAILED, 1, NULL,
	    &why) == DANE_STEP_DEFER);
	return 0;
}

static int
t_empty_or_insecure_tlsa(void)
{
	struct dane_rrset set;
	const char *why = NULL;

	set_one(&set, 1);
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_EMPTY, 1, NULL, &why) ==
	    DANE_STEP_MAY);
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FOUND, 0, &set, &why) ==
	    DANE_STEP_MAY);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_EMPTY, 1, NULL,
	    &why) == DANE_STEP_DEFER && why != NULL &&
	    strcmp(why, "dane-only: no TLSA records") == 0);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_FOUND, 0, &set,
	    &why) == DANE_STEP_DEFER && why != NULL &&
	    strstr(why, "DNSSEC-secure TLSA") != NULL);
	return 0;
}

static int
t_secure_records(void)
{
	struct dane_rrset set;
	const char *why = NULL;

	set_one(&set, 1);
	CHECK(dane_usable(&set) == 1);
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FOUND, 1, &set, NULL) ==
	    DANE_STEP_DANE);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_FOUND, 1, &set,
	    NULL) == DANE_STEP_DANE);
	/* Only unusable records (or only malformed ones, left out): the
	 * domain asked for DANE, so TLS stays mandatory; dane-only wants a
	 * usable record, as Postfix's (no connection without one). */
	set_one(&set, 0);
	CHECK(set.n == 1 && dane_usable(&set) == 0);
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FOUND, 1, &set, NULL) ==
	    DANE_STEP_ENCRYPT);
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_FOUND, 1, &set,
	    &why) == DANE_STEP_DEFER && why != NULL &&
	    strcmp(why, "dane-only: no usable TLSA records") == 0);
	set.n = 0;
	CHECK(dane_host_step(TLS_DANE_ONLY, 1, DANE_LOOKUP_FOUND, 1, &set,
	    NULL) == DANE_STEP_DEFER);
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FOUND, 1, NULL, NULL) ==
	    DANE_STEP_ENCRYPT);
	return 0;
}

static int
t_other_levels(void)
{
	const char *why = NULL;

	CHECK(dane_host_step(TLS_MAY, 1, DANE_LOOKUP_NONE, 0, NULL, &why) ==
	    DANE_STEP_DEFER && why != NULL);
	CHECK(dane_host_step(TLS_VERIFY, 1, DANE_LOOKUP_FOUND, 1, NULL,
	    NULL) == DANE_STEP_DEFER);
	CHECK(strcmp(dane_step_name(DANE_STEP_DANE), "dane") == 0);
	CHECK(strcmp(dane_step_name((enum dane_step)99), "?") == 0);
	return 0;
}

static const struct t_case cases[] = {
	{ "an insecure MX: dane is may, dane-only defers", t_insecure_mx },
	{ "a secure MX asks for the TLSA lookup", t_lookup_first },
	{ "a failed TLSA lookup defers", t_failed_defers },
	{ "no or insecure TLSA: may / defer", t_empty_or_insecure_tlsa },
	{ "secure records: dane, or encrypt if none usable",
	    t_secure_records },
	{ "other levels are the caller's mistake", t_other_levels },
};

T_MAIN("dane_step", cases)
