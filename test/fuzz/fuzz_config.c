/*
 * fuzz_config.c - config_parse() on arbitrary bytes: no crash, no hang,
 * and whatever parses must survive config_print() and parse back to the
 * same struct (the round trip `ferry check-config` promises).  The domain
 * and network matchers get a turn on the parsed lists.
 */
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_PRINT_MAX	(64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char printed[FUZZ_PRINT_MAX];
	struct config a, b;
	struct sockaddr_in6 sin6;
	char err[CONFIG_ERR_MAX], dom[CONFIG_NAME_MAX + 1];
	FILE *fp;
	size_t n;

	if (config_parse(&a, "fuzz.conf", (const char *)data, size, err,
	    sizeof(err)) != 0) {
		/* An error is always terminated and names the file. */
		if (strncmp(err, "fuzz.conf:", 10) != 0)
			abort();
		return 0;
	}
	memset(printed, 0, sizeof(printed));
	if ((fp = fmemopen(printed, sizeof(printed) - 1, "w")) == NULL)
		return 0;
	config_print(&a, fp);
	if (fclose(fp) != 0)
		abort();
	if (config_parse(&b, "fuzz.conf", printed, strlen(printed), err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "reparse failed: %s\n%s", err, printed);
		abort();
	}
	if (memcmp(&a, &b, sizeof(a)) != 0) {
		fprintf(stderr, "round trip differs:\n%s", printed);
		abort();
	}

	/* The input's first bytes as a domain and as a client address. */
	n = size < sizeof(dom) - 1 ? size : sizeof(dom) - 1;
	memcpy(dom, data, n);
	dom[n] = '\0';
	(void)config_domain_match(&a.relay_domains, dom);
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	memcpy(&sin6.sin6_addr, data, size < 16 ? size : 16);
	(void)config_net_match(&a.relay_networks,
	    (const struct sockaddr *)&sin6);
	return 0;
}
