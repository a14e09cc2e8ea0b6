/*
 * fuzz_dns.c - libFuzzer target for dns_parse_mx(), dns_parse_tlsa() and
 * dns_parse_cname() (which every input also goes through: it takes no
 * max).
 * Input: one byte choosing the parser and max (below 0x80: MX, max =
 * byte % (DNS_MAX_MX + 1); from 0x80: TLSA, max = (byte & 0x7f) %
 * (DNS_MAX_TLSA + 1); the output array is allocated exactly that size so
 * ASan sees any overrun), then the DNS message, copied to a buffer of its
 * exact length.  Beyond "no crash" it checks the contracts: -1 means
 * TEMPFAIL with nothing returned (and, for TLSA, not secure); OK means
 * 1..max entries; any other status returns none.  MX hosts come sorted
 * by preference, each a terminated non-empty host name; TLSA RDATA fits
 * its buffer and is bytes of the message; a TEMPFAIL is never secure.
 * A CNAME chain's end is a host name in lower case (labels of letters,
 * digits, '-', '_', none empty, at most 253 octets), and nothing is
 * written for "not an alias" or a failure.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>		/* memmem: -D_GNU_SOURCE */

#include "dns.h"

#define FUZZ_HDR	1
#define FUZZ_TLSA	0x80u	/* the selector byte's top bit */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void fuzz_mx(const unsigned char *, size_t, int);
static void fuzz_tlsa(const unsigned char *, size_t, int);
static void fuzz_cname(const unsigned char *, size_t);

static void
fuzz_mx(const unsigned char *msg, size_t len, int max)
{
	struct dns_mx *mx;
	enum dns_status st = (enum dns_status)-1;
	int n = -1, ret, i;
	size_t l;

	if ((mx = malloc(max ? (size_t)max * sizeof(*mx) : 1)) == NULL)
		abort();
	ret = dns_parse_mx(msg, len, max ? mx : NULL, max, &n, &st);
	if (ret != 0 && ret != -1)
		abort();
	if (ret == -1 && (st != DNS_TEMPFAIL || n != 0))
		abort();
	if (st == DNS_OK) {
		if (n < 0 || n > max || (n == 0 && max > 0))
			abort();
		for (i = 0; i < n; i++) {
			l = strnlen(mx[i].host, sizeof(mx[i].host));
			if (l == 0 || l > DNS_NAME_MAX)
				abort();
			if (i > 0 && mx[i].pref < mx[i - 1].pref)
				abort();
		}
	} else if (n != 0 || st > DNS_TEMPFAIL)
		abort();
	free(mx);
}

static void
fuzz_tlsa(const unsigned char *msg, size_t len, int max)
{
	struct dns_tlsa_rdata *r;
	enum dns_status st = (enum dns_status)-1;
	int n = -1, secure = -1, ret, i;

	if ((r = malloc(max ? (size_t)max * sizeof(*r) : 1)) == NULL)
		abort();
	ret = dns_parse_tlsa(msg, len, max ? r : NULL, max, &n, &secure, &st);
	if (ret != 0 && ret != -1)
		abort();
	if (secure != 0 && secure != 1)
		abort();
	if (ret == -1 && (st != DNS_TEMPFAIL || n != 0 || secure != 0))
		abort();
	if (st == DNS_TEMPFAIL && secure != 0)
		abort();
	if (st == DNS_OK) {
		if (n < 0 || n > max || (n == 0 && max > 0))
			abort();
		for (i = 0; i < n; i++) {
			/* inside the message, never past its end */
			if (r[i].len > len || r[i].rdata < msg ||
			    r[i].rdata > msg + (len - r[i].len))
				abort();
		}
	} else if (n != 0 || st == DNS_NULLMX || st > DNS_TEMPFAIL)
		abort();
	free(r);
}

static void
fuzz_cname(const unsigned char *msg, size_t len)
{
	char *out;
	size_t l, i;
	int ret;

	/* Exactly the size dns.h asks for, so ASan sees any overrun. */
	if ((out = malloc(DNS_NAME_MAX + 1)) == NULL)
		abort();
	memset(out, 'x', DNS_NAME_MAX + 1);
	ret = dns_parse_cname(msg, len, out, DNS_NAME_MAX + 1);
	if (ret != 1) {
		if ((ret != 0 && ret != -1) || out[0] != '\0')
			abort();
		free(out);
		return;
	}
	l = strnlen(out, DNS_NAME_MAX + 1);
	if (l == 0 || l > DNS_NAME_MAX - 2 || out[0] == '.' ||
	    out[l - 1] == '.')
		abort();
	for (i = 0; i < l; i++) {
		if (out[i] == '.') {
			if (out[i + 1] == '.')
				abort();
			continue;
		}
		if (!(islower((unsigned char)out[i]) ||
		    isdigit((unsigned char)out[i]) || out[i] == '-' ||
		    out[i] == '_'))
			abort();
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *msg;
	size_t len;

	if (size < FUZZ_HDR)
		return 0;
	len = size - FUZZ_HDR;
	if ((msg = malloc(len ? len : 1)) == NULL)
		abort();
	memcpy(msg, data + FUZZ_HDR, len);
	if (data[0] & FUZZ_TLSA)
		fuzz_tlsa(msg, len, (data[0] & ~FUZZ_TLSA) %
		    (DNS_MAX_TLSA + 1));
	else
		fuzz_mx(msg, len, data[0] % (DNS_MAX_MX + 1));
	fuzz_cname(msg, len);
	free(msg);
	return 0;
}
