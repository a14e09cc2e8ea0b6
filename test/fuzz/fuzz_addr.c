/*
 * fuzz_addr.c - libFuzzer target for addr.c.  Input: one byte of flags,
 * one byte choosing the output size (2..257, allocated exactly so ASan
 * sees any overrun), then the path text.  Beyond "no crash" it checks
 * the contract: the consumed length ends on '>' followed by SP or the
 * end (the end only under ADDR_ALONE), the output is terminated and clean, and parsing "<output>" again
 * gives the same output (the route is gone, nothing else changed); a
 * literal domain it took is one addr_literal() takes too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define FUZZ_HDR	2

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_again(const char *addr, unsigned flags)
{
	char in[ADDR_PATH_MAX + 2], out[ADDR_PATH_MAX];
	const char *why;
	size_t n = strlen(addr);
	int ret;

	if (n + 2 > ADDR_PATH_MAX)
		abort();
	in[0] = '<';
	memcpy(in + 1, addr, n);
	in[n + 1] = '>';
	ret = addr_parse_path(in, n + 2, flags, out, sizeof(out), &why);
	if (ret != (int)n + 2 || strcmp(out, addr) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + FUZZ_HDR, *why = NULL, *first, *dom;
	char *out, *raw, low[16], big[ADDR_PATH_MAX], ip[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	unsigned flags;
	size_t len, outsz, i;
	int ret;

	if (size < FUZZ_HDR)
		return 0;
	flags = data[0] & (ADDR_UTF8 | ADDR_NULL_OK | ADDR_BARE_OK |
	    ADDR_ALONE);
	outsz = (size_t)data[1] + 2;
	len = size - FUZZ_HDR;
	if ((out = malloc(outsz)) == NULL)
		return 0;
	ret = addr_parse_path(s, len, flags, out, outsz, &why);
	if (ret < 0) {
		if (ret != -1 || why == NULL || out[0] != '\0')
			abort();
		/* a short buffer is the only reason a big one may succeed */
		first = why;
		if (addr_parse_path(s, len, flags, big, sizeof(big), &why) >= 0 &&
		    (strcmp(first, "address too long") != 0 ||
		    strlen(big) < outsz))
			abort();
	} else {
		if (why != NULL || ret < 2 || (size_t)ret > len ||
		    ret > ADDR_PATH_MAX || s[0] != '<' || s[ret - 1] != '>')
			abort();
		if ((size_t)ret < len && (s[ret] != ' ' ||
		    (flags & ADDR_ALONE)))
			abort();
		if (memchr(out, '\0', outsz) == NULL ||
		    strlen(out) + 2 > (size_t)ret)
			abort();
		for (i = 0; out[i] != '\0'; i++) {
			unsigned char c = (unsigned char)out[i];

			if (c < 0x20 || c == 0x7f ||
			    (c >= 0x80 && !(flags & ADDR_UTF8)))
				abort();
		}
		dom = addr_domain(out);
		if (out[0] == '\0' && !(flags & ADDR_NULL_OK))
			abort();
		if (out[0] != '\0' && dom == NULL && !(flags & ADDR_BARE_OK))
			abort();
		if (dom != NULL && (*dom == '\0' || strlen(dom) >
		    ADDR_DOMAIN_MAX))
			abort();
		(void)addr_has_routing(out);
		if (dom != NULL && (addr_literal(dom, &ss, ip) != 0) !=
		    (dom[0] == '['))
			abort();
		addr_domain_lower(dom, low, sizeof(low));
		if (strlen(low) >= sizeof(low))
			abort();
		fuzz_again(out, flags);
	}
	free(out);

	/* the string helpers on arbitrary text */
	if ((raw = malloc(len + 1)) == NULL)
		return 0;
	memcpy(raw, s, len);
	raw[len] = '\0';
	dom = addr_domain(raw);
	if (dom != NULL && (dom <= raw || dom[-1] != '@'))
		abort();
	(void)addr_has_routing(raw);
	(void)addr_literal(raw, &ss, ip);
	addr_domain_lower(raw, low, (size_t)data[1] % sizeof(low));
	free(raw);
	return 0;
}
