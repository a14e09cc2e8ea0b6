/*
 * fuzz_dns.c - libFuzzer target for dns_parse_mx().  Input: one byte
 * choosing max (0..DNS_MAX_MX; the output array is allocated exactly that
 * size so ASan sees any overrun), then the DNS message, copied to a
 * buffer of its exact length.  Beyond "no crash" it checks the contract:
 * -1 means TEMPFAIL with nothing returned; OK means 1..max hosts, sorted
 * by preference, each a terminated non-empty host name; any other status
 * returns no hosts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"

#define FUZZ_HDR	1

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_mx *mx;
	unsigned char *msg;
	enum dns_status st = (enum dns_status)-1;
	int max, n = -1, ret, i;
	size_t l;

	if (size < FUZZ_HDR)
		return 0;
	max = data[0] % (DNS_MAX_MX + 1);
	mx = malloc(max ? (size_t)max * sizeof(*mx) : 1);
	msg = malloc(size - FUZZ_HDR ? size - FUZZ_HDR : 1);
	if (mx == NULL || msg == NULL)
		abort();
	memcpy(msg, data + FUZZ_HDR, size - FUZZ_HDR);
	ret = dns_parse_mx(msg, size - FUZZ_HDR, max ? mx : NULL, max, &n,
	    &st);
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
	free(msg);
	free(mx);
	return 0;
}
