/*
 * dnsq.c - a test driver for dns.c: runs the event loop and prints what
 * dns.c answered, one line per lookup, for the integration tests.
 *
 *   dnsq [-s SERVER]... [-n] [-p] [-T] CMD NAME [PORT] [CMD NAME [PORT]]...
 *
 * CMD is mx, addr, tlsa (which takes a PORT after the host), cancel-mx,
 * cancel-addr or cancel-tlsa; lookups run one after the
 * other, or with -p all at once, each line then prefixed "NAME: " and in
 * the order the answers came.  Lines: "OK secure=0 10 mx1.a.test 20 mx2.a.test",
 * "OK secure=0 ::1 127.0.0.2", "OK secure=1 3 1 1 9f86d0...", (one
 * "U S M hex" per TLSA record; "bad:hex" for RDATA under 3 octets, and
 * "bad:" for one too long to keep),
 * "NXDOMAIN secure=0", "CANCELLED a.test".
 * -s adds a dns_servers entry (else /etc/resolv.conf), -n sets
 * dnssec = no, -T traces dns.c on stderr.  Exit 0 when every lookup
 * answered once (whatever the answer), 1 when one never answered, answered
 * after a cancel, or could not start, 64 on usage errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "dns.h"
#include "log.h"
#include "loop.h"

#define DNSQ_TIMEOUT_MS	60000	/* longer than c-ares's own retries */
#define DNSQ_LINE_MAX	8192

struct dnsq {
	const char *name;
	int cancelled;
	int answered;
};

static void dnsq_on_mx(void *, enum dns_status, int, const struct dns_mx *,
    int);
static void dnsq_on_addr(void *, enum dns_status, int,
    const struct dns_addr *, int);
static void dnsq_on_tlsa(void *, enum dns_status, int,
    const struct dns_tlsa_rdata *, int);
static void dnsq_on_timeout(struct loop_timer *);
static void dnsq_wait(void);
static void dnsq_print(struct dnsq *, const char *);
static void dnsq_status(char *, size_t, size_t *, enum dns_status, int);
static void usage(void);

static int dnsq_bad;
static int dnsq_parallel;
static int dnsq_waiting;		/* lookups not answered yet */
static struct loop_timer dnsq_timer = { .cb = dnsq_on_timeout };

static void
usage(void)
{
	fprintf(stderr, "usage: dnsq [-s server]... [-n] [-p] [-T] "
	    "mx|addr|cancel-mx|cancel-addr name | tlsa|cancel-tlsa host "
	    "port ...\n");
	exit(64);
}

static void
dnsq_status(char *line, size_t sz, size_t *off, enum dns_status st,
    int secure)
{
	const char *s = dns_status_name(st);
	size_t i;

	for (i = 0; s[i] != '\0' && *off + 1 < sz; i++)
		line[(*off)++] = (char)(s[i] >= 'a' && s[i] <= 'z' ?
		    s[i] - 'a' + 'A' : s[i]);
	line[*off] = '\0';
	*off += (size_t)snprintf(line + *off, sz - *off, " secure=%d",
	    secure);
}

static void
dnsq_print(struct dnsq *q, const char *line)
{
	if (dnsq_parallel)
		printf("%s: %s\n", q->name, line);
	else
		printf("%s\n", line);
	fflush(stdout);
	if (--dnsq_waiting <= 0)
		loop_stop();
}

static void
dnsq_on_mx(void *arg, enum dns_status st, int secure,
    const struct dns_mx *mx, int n)
{
	struct dnsq *q = arg;
	char line[DNSQ_LINE_MAX];
	size_t off = 0;
	int i;

	if (q->cancelled || q->answered++) {
		printf("BUG %s: callback after cancel or twice\n", q->name);
		dnsq_bad = 1;
	}
	dnsq_status(line, sizeof(line), &off, st, secure);
	for (i = 0; i < n && off < sizeof(line); i++)
		off += (size_t)snprintf(line + off, sizeof(line) - off,
		    " %u %s", mx[i].pref, mx[i].host);
	dnsq_print(q, line);
}

static void
dnsq_on_addr(void *arg, enum dns_status st, int secure,
    const struct dns_addr *a, int n)
{
	struct dnsq *q = arg;
	char line[DNSQ_LINE_MAX], buf[INET6_ADDRSTRLEN];
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	size_t off = 0;
	int i;

	if (q->cancelled || q->answered++) {
		printf("BUG %s: callback after cancel or twice\n", q->name);
		dnsq_bad = 1;
	}
	dnsq_status(line, sizeof(line), &off, st, secure);
	for (i = 0; i < n && off < sizeof(line); i++) {
		if (a[i].ss.ss_family == AF_INET6) {
			sin6 = (const struct sockaddr_in6 *)(const void *)
			    &a[i].ss;
			if (a[i].len != sizeof(*sin6) || sin6->sin6_port != 0)
				dnsq_bad = 1;
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
		} else if (a[i].ss.ss_family == AF_INET) {
			sin = (const struct sockaddr_in *)(const void *)
			    &a[i].ss;
			if (a[i].len != sizeof(*sin) || sin->sin_port != 0)
				dnsq_bad = 1;
			inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
		} else {
			snprintf(buf, sizeof(buf), "family-%d",
			    a[i].ss.ss_family);
			dnsq_bad = 1;
		}
		off += (size_t)snprintf(line + off, sizeof(line) - off, " %s",
		    buf);
	}
	dnsq_print(q, line);
}

static void
dnsq_on_tlsa(void *arg, enum dns_status st, int secure,
    const struct dns_tlsa_rdata *r, int n)
{
	struct dnsq *q = arg;
	char line[DNSQ_LINE_MAX];
	size_t off = 0, j;
	int i;

	if (q->cancelled || q->answered++) {
		printf("BUG %s: callback after cancel or twice\n", q->name);
		dnsq_bad = 1;
	}
	dnsq_status(line, sizeof(line), &off, st, secure);
	for (i = 0; i < n && off < sizeof(line); i++) {
		if (r[i].len < 3) {
			off += (size_t)snprintf(line + off, sizeof(line) - off,
			    " bad:");
			j = 0;
		} else {
			off += (size_t)snprintf(line + off, sizeof(line) - off,
			    " %u %u %u ", r[i].rdata[0], r[i].rdata[1],
			    r[i].rdata[2]);
			j = 3;
		}
		for (; j < r[i].len && off < sizeof(line); j++)
			off += (size_t)snprintf(line + off, sizeof(line) - off,
			    "%02x", r[i].rdata[j]);
	}
	dnsq_print(q, line);
}

static void
dnsq_wait(void)
{
	loop_timer_set(&dnsq_timer, DNSQ_TIMEOUT_MS);
	if (loop_run() == -1)
		dnsq_bad = 1;
	loop_timer_cancel(&dnsq_timer);
}

static void
dnsq_on_timeout(struct loop_timer *t)
{
	(void)t;
	printf("TIMEOUT no answer from dns.c\n");
	dnsq_bad = 1;
	loop_stop();
}

int
main(int argc, char **argv)
{
	struct config conf;
	struct dnsq *qs;
	struct dns_req *req;
	const char *cmd, *base;
	char *end;
	unsigned long port;
	int c, i, a, nq;

	config_defaults(&conf);
	conf.dns_n = 0;
	while ((c = getopt(argc, argv, "nps:T")) != -1) {
		switch (c) {
		case 'n':
			conf.dnssec = 0;
			break;
		case 'p':
			dnsq_parallel = 1;
			break;
		case 's':
			if (conf.dns_n >= CONFIG_MAX_DNS ||
			    strlen(optarg) >= sizeof(conf.dns_servers[0]))
				usage();
			strcpy(conf.dns_servers[conf.dns_n++], optarg);
			break;
		case 'T':
			log_trace_mask |= TRACE_DNS;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage();
	/* At most argc / 2 lookups; the usage is checked as they start. */
	if ((qs = calloc((size_t)argc / 2 + 1, sizeof(*qs))) == NULL)
		return 1;
	log_open(1);
	if (sodium_init() < 0 || loop_init() == -1 || dns_init(&conf) == -1) {
		loop_free();
		free(qs);
		return 1;
	}
	for (i = 0, a = 0; a < argc; i++) {
		if (argc - a < 2)
			usage();
		cmd = argv[a++];
		qs[i].name = argv[a++];
		base = strncmp(cmd, "cancel-", 7) == 0 ? cmd + 7 : cmd;
		if (strcmp(base, "mx") == 0)
			req = dns_query_mx(qs[i].name, dnsq_on_mx, &qs[i]);
		else if (strcmp(base, "addr") == 0)
			req = dns_query_addr(qs[i].name, dnsq_on_addr, &qs[i]);
		else if (strcmp(base, "tlsa") == 0) {
			if (a >= argc)
				usage();
			port = strtoul(argv[a], &end, 10);
			if (*argv[a] == '\0' || *end != '\0' || port > 65535)
				usage();
			a++;
			req = dns_query_tlsa(qs[i].name, (unsigned)port,
			    dnsq_on_tlsa, &qs[i]);
		} else
			usage();
		if (req == NULL) {
			printf("ERROR %s: lookup not started\n", qs[i].name);
			dnsq_bad = 1;
			continue;
		}
		if (base != cmd) {
			qs[i].cancelled = 1;
			dns_cancel(req);
			printf("CANCELLED %s\n", qs[i].name);
			fflush(stdout);
			continue;
		}
		dnsq_waiting++;
		if (!dnsq_parallel)
			dnsq_wait();
	}
	nq = i;
	if (dnsq_parallel && dnsq_waiting > 0)
		dnsq_wait();
	for (i = 0; i < nq; i++)
		if (!qs[i].cancelled && !qs[i].answered)
			dnsq_bad = 1;
	dns_free();
	loop_free();
	free(qs);
	return dnsq_bad;
}
