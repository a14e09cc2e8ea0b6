/*
 * config_test.c - relay.conf parsing: defaults, every key's good and bad
 * values, the "FILE:LINE: key: what" errors, comments and list syntax,
 * CIDR and domain matching, the print/parse round trip, line limits.
 */
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <fcntl.h>
#include <strings.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "t.h"

#define PRINT_MAX	(64 * 1024)
/* 8 and 64 good list items: which check comes first when one more is bad
 * (set_list() keeps each key's order). */
#define LISTEN_8	"1.1.1.1:1 1.1.1.1:2 1.1.1.1:3 1.1.1.1:4 1.1.1.1:5 " \
	"1.1.1.1:6 1.1.1.1:7 1.1.1.1:8 "
#define NETS_8		"10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 " \
	"10.0.0.6 10.0.0.7 10.0.0.8 "
#define NETS_64		NETS_8 NETS_8 NETS_8 NETS_8 NETS_8 NETS_8 NETS_8 NETS_8

struct good {
	const char *in;		/* one line of relay.conf */
	const char *out;	/* the line config_print() must then write */
};

struct bad {
	const char *in;		/* file text, named "t.conf" */
	const char *err;	/* the exact error */
};

static int parse(struct config *, const char *, char *);
static char *print(const struct config *);
static int has_line(const char *, const char *);
static int same(const struct config *, const struct config *);
static int sa4(struct sockaddr_storage *, const char *);
static int sa6(struct sockaddr_storage *, const char *);
static int parse_env(struct config *, struct config_src *, const char *,
    char *const *, char *);
static char *print_src(const struct config *, const struct config_src *,
    char *const *);
static size_t key_pos(const char *);

static int
parse(struct config *cfg, const char *text, char *err)
{
	return config_parse(cfg, "t.conf", text, strlen(text), err,
	    CONFIG_ERR_MAX);
}

/* config_print() into a NUL-terminated heap string (caller frees). */
static char *
print(const struct config *cfg)
{
	char *buf = calloc(1, PRINT_MAX);
	FILE *fp;

	if (buf == NULL)
		return NULL;
	if ((fp = fmemopen(buf, PRINT_MAX - 1, "w")) == NULL) {
		free(buf);
		return NULL;
	}
	config_print(cfg, fp);
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Does text hold exactly this line? */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *s = text;

	while (s != NULL && *s != '\0') {
		if (strncmp(s, line, n) == 0 && s[n] == '\n')
			return 1;
		s = strchr(s, '\n');
		if (s != NULL)
			s++;
	}
	return 0;
}

static int
same(const struct config *a, const struct config *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* The file text (NULL: none) with envp over it, named "t.conf". */
static int
parse_env(struct config *cfg, struct config_src *src, const char *text,
    char *const *envp, char *err)
{
	return config_parse_env(cfg, src, "t.conf", text,
	    text != NULL ? strlen(text) : 0, envp, err, CONFIG_ERR_MAX);
}

/* config_print_src() writes to stdout: caught in a temporary file. */
static char *
print_src(const struct config *cfg, const struct config_src *src,
    char *const *envp)
{
	char *buf = calloc(1, PRINT_MAX);
	FILE *fp = tmpfile();
	int saved = -1;

	if (buf == NULL || fp == NULL || fflush(stdout) != 0 ||
	    (saved = dup(STDOUT_FILENO)) == -1 ||
	    dup2(fileno(fp), STDOUT_FILENO) == -1)
		goto fail;
	config_print_src(cfg, src, envp);
	if (fflush(stdout) != 0 || dup2(saved, STDOUT_FILENO) == -1)
		goto fail;
	(void)close(saved);
	rewind(fp);
	(void)!fread(buf, 1, PRINT_MAX - 1, fp);
	fclose(fp);
	return buf;
fail:
	if (saved != -1) {
		(void)dup2(saved, STDOUT_FILENO);
		(void)close(saved);
	}
	if (fp != NULL)
		fclose(fp);
	free(buf);
	return NULL;
}

/* A key's index in config_src: its line's place in config_print(). */
static size_t
key_pos(const char *key)
{
	struct config c;
	char *out = NULL, *s;
	size_t i = 0, n = strlen(key), r = (size_t)-1;

	config_defaults(&c);
	if ((out = print(&c)) == NULL)
		return r;
	for (s = out; *s != '\0'; s = strchr(s, '\n') + 1, i++)
		if (strncmp(s, key, n) == 0 && s[n] == ' ') {
			r = i;
			break;
		}
	free(out);
	return r;
}

static int
sa4(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
}

static int
sa6(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1 ? 0 : -1;
}

static int
t_defaults(void)
{
	struct config c, p;
	char err[CONFIG_ERR_MAX], host[CONFIG_NAME_MAX + 2], *out;
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	size_t i;

	config_defaults(&c);
	memset(host, 0, sizeof(host));
	CHECK(gethostname(host, sizeof(host) - 1) == 0);
	CHECK(c.hostname[0] != '\0');
	CHECK(strcasecmp(c.hostname, host) == 0);
	for (i = 0; c.hostname[i] != '\0'; i++)
		CHECK(!(c.hostname[i] >= 'A' && c.hostname[i] <= 'Z'));
	CHECK_STR(c.origin, c.hostname);
	CHECK(c.listen_smtp.n == 2);
	sin = (const struct sockaddr_in *)(const void *)&c.listen_smtp.a[0].ss;
	CHECK(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 25);
	CHECK(sin->sin_addr.s_addr == htonl(INADDR_ANY));
	CHECK(c.listen_smtp.a[0].len == sizeof(struct sockaddr_in));
	sin6 = (const struct sockaddr_in6 *)(const void *)
	    &c.listen_smtp.a[1].ss;
	CHECK(sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == 25);
	CHECK(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	CHECK(c.listen_smtp.a[1].len == sizeof(struct sockaddr_in6));
	CHECK(c.listen_submission.n == 2);
	sin = (const struct sockaddr_in *)(const void *)
	    &c.listen_submission.a[0].ss;
	CHECK(ntohs(sin->sin_port) == 587);
	CHECK(c.listen_smtps.n == 0);
	CHECK_STR(c.local_socket, "/run/ferry/submit.sock");
	CHECK_STR(c.tls_cert, "");
	CHECK_STR(c.tls_key, "");
	CHECK(c.inbound_tls == TLS_MAY);
	CHECK_STR(c.auth_users, "");
	CHECK(c.auth_over_plaintext == 0);
	CHECK(c.relay_networks.n == 2);
	CHECK(c.relay_networks.c[0].family == AF_INET);
	CHECK(c.relay_networks.c[0].bits == 8);
	CHECK(c.relay_networks.c[0].addr[0] == 127);
	CHECK(c.relay_networks.c[1].family == AF_INET6);
	CHECK(c.relay_networks.c[1].bits == 128);
	CHECK(c.relay_networks.c[1].addr[15] == 1);
	CHECK(c.relay_domains.n == 0);
	CHECK_STR(c.relay_client_certs, "");
	CHECK_STR(c.aliases, "");
	CHECK(c.message_size_limit == 10485760);
	CHECK(c.max_recipients == 100);
	CHECK(c.max_connections == 64);
	CHECK(c.max_connections_per_client == 8);
	CHECK_STR(c.queue_dir, "/var/spool/ferry");
	CHECK(c.queue_lifetime == 5 * 86400);
	CHECK(c.retry_min == 300);
	CHECK(c.retry_max == 3600);
	CHECK_STR(c.smarthost, "");
	CHECK(c.smarthost_tls == TLS_ENCRYPT);
	CHECK_STR(c.smarthost_auth, "");
	CHECK(c.outbound_tls == TLS_DANE);
	CHECK_STR(c.tls_policy, "");
	CHECK_STR(c.ca_file, "/etc/ssl/certs/ca-certificates.crt");
	CHECK_STR(c.client_cert, "");
	CHECK_STR(c.client_key, "");
	CHECK(c.dns_n == 0);
	CHECK(c.dnssec == 1);
	CHECK(c.mx_port == 25);
	CHECK(c.max_deliveries == 20);
	CHECK(c.max_deliveries_per_destination == 4);
	CHECK_STR(c.user, "ferry");
	CHECK(c.log_stderr == 0);
	CHECK(c.smtpd_timeout == 300);
	CHECK(c.smtpd_data_timeout == 600);

	/* An empty file is the defaults, with the file name recorded. */
	memset(&p, 0xa5, sizeof(p));
	CHECK(parse(&p, "", err) == 0);
	CHECK_STR(p.path, "t.conf");
	memcpy(c.path, p.path, sizeof(c.path));
	CHECK(same(&c, &p));

	/* The defaults print as DESIGN.md writes them. */
	CHECK((out = print(&c)) != NULL);
	CHECK(has_line(out, "listen_smtp = 0.0.0.0:25 [::]:25"));
	CHECK(has_line(out, "listen_submission = 0.0.0.0:587 [::]:587"));
	CHECK(has_line(out, "listen_smtps ="));
	CHECK(has_line(out, "relay_networks = 127.0.0.0/8 ::1/128"));
	CHECK(has_line(out, "message_size_limit = 10M"));
	CHECK(has_line(out, "queue_lifetime = 5d"));
	CHECK(has_line(out, "retry_min = 5m"));
	CHECK(has_line(out, "retry_max = 1h"));
	CHECK(has_line(out, "smtpd_timeout = 5m"));
	CHECK(has_line(out, "smtpd_data_timeout = 10m"));
	CHECK(has_line(out, "outbound_tls = dane"));
	CHECK(has_line(out, "log = syslog"));
	free(out);
	return 0;
}

/* Every key, every accepted shape: the value printed back after parsing. */
static const struct good goods[] = {
	{ "hostname = MX.Example.ORG", "hostname = mx.example.org" },
	{ "hostname = relay-1_a", "hostname = relay-1_a" },
	{ "hostname = xn--bcher-kva.a-b.example", "hostname = "
	    "xn--bcher-kva.a-b.example" },
	{ "origin = Example.org", "origin = example.org" },
	{ "listen_smtp = 192.0.2.1:25", "listen_smtp = 192.0.2.1:25" },
	{ "listen_smtp = *:2525", "listen_smtp = 0.0.0.0:2525" },
	{ "listen_smtp = [2001:DB8::1]:25", "listen_smtp = [2001:db8::1]:25" },
	{ "listen_smtp = 127.0.0.1:25,[::1]:25", "listen_smtp = "
	    "127.0.0.1:25 [::1]:25" },
	{ "listen_smtp =", "listen_smtp =" },
	{ "listen_submission = 127.0.0.1:587", "listen_submission = "
	    "127.0.0.1:587" },
	{ "listen_submission =   ", "listen_submission =" },
	{ "listen_smtps = 0.0.0.0:465 [::]:465\ntls_cert = c\ntls_key = c",
	    "listen_smtps = 0.0.0.0:465 [::]:465" },
	{ "listen_smtps = 1.1.1.1:1, 1.1.1.1:2 1.1.1.1:3,1.1.1.1:4 "
	    "1.1.1.1:5 1.1.1.1:6 1.1.1.1:7 1.1.1.1:8\ntls_cert = c\n"
	    "tls_key = c", "listen_smtps = "
	    "1.1.1.1:1 1.1.1.1:2 1.1.1.1:3 1.1.1.1:4 1.1.1.1:5 1.1.1.1:6 "
	    "1.1.1.1:7 1.1.1.1:8" },
	{ "local_socket = /tmp/s.sock", "local_socket = /tmp/s.sock" },
	{ "local_socket =", "local_socket =" },
	{ "tls_cert = /etc/ferry/cert.pem\ntls_key = /etc/ferry/key.pem",
	    "tls_cert = /etc/ferry/cert.pem" },
	{ "tls_cert = /a b/c#d\ntls_key = k", "tls_cert = /a b/c#d" },
	{ "inbound_tls = none", "inbound_tls = none" },
	{ "inbound_tls = MAY", "inbound_tls = may" },
	{ "inbound_tls = encrypt\ntls_cert = c\ntls_key = c",
	    "inbound_tls = encrypt" },
	{ "auth_users = /etc/ferry/users", "auth_users = /etc/ferry/users" },
	{ "auth_over_plaintext = yes", "auth_over_plaintext = yes" },
	{ "auth_over_plaintext = no", "auth_over_plaintext = no" },
	{ "relay_networks = 10.1.2.3/8", "relay_networks = 10.0.0.0/8" },
	{ "relay_networks = 192.0.2.7", "relay_networks = 192.0.2.7/32" },
	{ "relay_networks = [2001:db8::1]/32, 2001:db8:ff::/48 ::1",
	    "relay_networks = 2001:db8::/32 2001:db8:ff::/48 ::1/128" },
	{ "relay_networks = [fe80::1]", "relay_networks = fe80::1/128" },
	{ "relay_networks = 0.0.0.0/0 ::/0", "relay_networks = 0.0.0.0/0 ::/0" },
	{ "relay_networks = 10.255.255.255/9", "relay_networks = 10.128.0.0/9" },
	{ "relay_networks =", "relay_networks =" },
	{ "relay_domains = Example.ORG, .Sub.example.net  b.org.",
	    "relay_domains = example.org .sub.example.net b.org" },
	{ "relay_domains =", "relay_domains =" },
	{ "relay_client_certs = /etc/ferry/fp", "relay_client_certs = "
	    "/etc/ferry/fp" },
	{ "aliases = /etc/aliases", "aliases = /etc/aliases" },
	{ "message_size_limit = 2048", "message_size_limit = 2k" },
	{ "message_size_limit = 3K", "message_size_limit = 3k" },
	{ "message_size_limit = 1000", "message_size_limit = 1000" },
	{ "message_size_limit = 25M", "message_size_limit = 25M" },
	{ "message_size_limit = 1", "message_size_limit = 1" },
	{ "max_recipients = 1", "max_recipients = 1" },
	{ "max_recipients = 007", "max_recipients = 7" },
	{ "max_recipients = 2147483647", "max_recipients = 2147483647" },
	{ "max_connections = 500", "max_connections = 500" },
	{ "max_connections_per_client = 2", "max_connections_per_client = 2" },
	{ "queue_dir = /tmp/q", "queue_dir = /tmp/q" },
	{ "queue_lifetime = 2h", "queue_lifetime = 2h" },
	{ "queue_lifetime = 90", "queue_lifetime = 90s" },
	{ "queue_lifetime = 120", "queue_lifetime = 2m" },
	{ "queue_lifetime = 48h", "queue_lifetime = 2d" },
	{ "retry_min = 30s", "retry_min = 30s" },
	{ "retry_max = 1d", "retry_max = 1d" },
	{ "smarthost = [mail.example.org]:587", "smarthost = "
	    "[mail.example.org]:587" },
	{ "smarthost = Mail.Example.org", "smarthost = Mail.Example.org" },
	{ "smarthost = relay:25", "smarthost = relay:25" },
	{ "smarthost = [192.0.2.1]", "smarthost = [192.0.2.1]" },
	{ "smarthost = [2001:db8::1]:25", "smarthost = [2001:db8::1]:25" },
	{ "smarthost =", "smarthost =" },
	{ "smarthost_tls = smtps", "smarthost_tls = smtps" },
	{ "smarthost_tls = none", "smarthost_tls = none" },
	{ "smarthost_tls = may", "smarthost_tls = may" },
	{ "smarthost_tls = verify", "smarthost_tls = verify" },
	{ "smarthost_tls = secure", "smarthost_tls = secure" },
	{ "smarthost_auth = /etc/ferry/sa", "smarthost_auth = /etc/ferry/sa" },
	{ "outbound_tls = dane-only", "outbound_tls = dane-only" },
	{ "outbound_tls = none", "outbound_tls = none" },
	{ "outbound_tls = may", "outbound_tls = may" },
	{ "outbound_tls = encrypt", "outbound_tls = encrypt" },
	{ "outbound_tls = verify", "outbound_tls = verify" },
	{ "outbound_tls = secure", "outbound_tls = secure" },
	{ "tls_policy = /etc/ferry/policy", "tls_policy = /etc/ferry/policy" },
	{ "ca_file = /x.pem", "ca_file = /x.pem" },
	{ "ca_file =", "ca_file =" },
	{ "client_cert = /c\nclient_key = /k", "client_key = /k" },
	{ "dns_servers = 127.0.0.1", "dns_servers = 127.0.0.1" },
	{ "dns_servers = 127.0.0.1:5353, ::1 [::1]:53,[2001:DB8::53]",
	    "dns_servers = 127.0.0.1:5353 ::1 [::1]:53 2001:db8::53" },
	{ "dns_servers =", "dns_servers =" },
	{ "dnssec = no", "dnssec = no" },
	{ "dnssec = YES", "dnssec = yes" },
	{ "mx_port = 2525", "mx_port = 2525" },
	{ "mx_port = 65535", "mx_port = 65535" },
	{ "max_deliveries = 1", "max_deliveries = 1" },
	{ "max_deliveries_per_destination = 16",
	    "max_deliveries_per_destination = 16" },
	{ "user = nobody", "user = nobody" },
	{ "user = _ferry.d-1", "user = _ferry.d-1" },
	{ "log = stderr", "log = stderr" },
	{ "log = syslog", "log = syslog" },
	{ "smtpd_timeout = 30", "smtpd_timeout = 30s" },
	{ "smtpd_data_timeout = 1h", "smtpd_data_timeout = 1h" },
	/* syntax: blanks, tabs, trailing comments, CRLF, last one wins */
	{ "  max_recipients\t=\t5  # five", "max_recipients = 5" },
	{ "max_recipients=6", "max_recipients = 6" },
	{ "max_recipients = 6 #", "max_recipients = 6" },
	{ "max_recipients = 6\r", "max_recipients = 6" },
	{ "\t\t\r\n \r\n\r\nmax_recipients = 6", "max_recipients = 6" },
	{ "max_recipients = 1\nmax_recipients = 9", "max_recipients = 9" },
	{ "# comment\n\n   # indented comment\nmx_port = 26", "mx_port = 26" },
	{ "tls_cert = #not a path", "tls_cert =" },
	{ "tls_cert =#not a path", "tls_cert =" },
	{ "log = stderr # \x01 control bytes in comments are fine",
	    "log = stderr" },
	/* The shapes that one parser shares between key types. */
	{ "log = STDERR", "log = stderr" },
	{ "delay_warning_time = 0", "delay_warning_time = 0s" },
	{ "queue_lifetime = 4294967295", "queue_lifetime = 4294967295s" },
	{ "relay_networks = 10.1.2.3/12 2001:db8:ffff::1/36",
	    "relay_networks = 10.0.0.0/12 2001:db8:f000::/36" },
	{ "dns_servers = 2001:DB8::1:53", "dns_servers = 2001:db8::1:53" },
	{ "relay_networks = ::ffff:10.1.2.3/104 [::ffff:192.0.2.7]",
	    "relay_networks = 10.0.0.0/8 192.0.2.7/32" },
	/* One port on both families' wildcards (IPV6_V6ONLY), or on two
	 * addresses of one family, is no overlap. */
	{ "listen_smtp = 0.0.0.0:26 [::]:26 127.0.0.1:25 127.0.0.2:25",
	    "listen_smtp = 0.0.0.0:26 [::]:26 127.0.0.1:25 127.0.0.2:25" },
};

static int
t_good(void)
{
	struct config c;
	char err[CONFIG_ERR_MAX], *out;
	size_t i;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		if (parse(&c, goods[i].in, err) != 0) {
			fprintf(stderr, "  %s: %s\n", goods[i].in, err);
			CHECK(0);
		}
		CHECK((out = print(&c)) != NULL);
		if (!has_line(out, goods[i].out)) {
			fprintf(stderr, "  %s: no line \"%s\" in:\n%s",
			    goods[i].in, goods[i].out, out);
			free(out);
			CHECK(0);
		}
		free(out);
	}
	return 0;
}

/* The values behind a few printed forms, checked as numbers. */
static int
t_values(void)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	const struct sockaddr_in *sin;

	CHECK(parse(&c, "message_size_limit = 2M\nmax_recipients = 7\n"
	    "queue_lifetime = 3d\nretry_min = 10s\nretry_max = 2h\n"
	    "smtpd_timeout = 1m\nsmtpd_data_timeout = 20m\n"
	    "listen_smtp = *:2525\nlocal_socket =\nlog = stderr\n"
	    "auth_over_plaintext = yes\ndnssec = no\n"
	    "dns_servers = 127.0.0.1:5353 ::1\n", err) == 0);
	CHECK(c.message_size_limit == 2 * 1024 * 1024);
	CHECK(c.max_recipients == 7);
	CHECK(c.queue_lifetime == 3 * 86400);
	CHECK(c.retry_min == 10 && c.retry_max == 7200);
	CHECK(c.smtpd_timeout == 60 && c.smtpd_data_timeout == 1200);
	CHECK(c.listen_smtp.n == 1);
	sin = (const struct sockaddr_in *)(const void *)&c.listen_smtp.a[0].ss;
	CHECK(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 2525);
	CHECK(sin->sin_addr.s_addr == htonl(INADDR_ANY));
	CHECK_STR(c.local_socket, "");
	CHECK(c.log_stderr == 1);
	CHECK(c.auth_over_plaintext == 1 && c.dnssec == 0);
	CHECK(c.dns_n == 2);
	CHECK_STR(c.dns_servers[0], "127.0.0.1:5353");
	CHECK_STR(c.dns_servers[1], "::1");

	/* origin follows hostname unless it is set, wherever it is set */
	CHECK(parse(&c, "hostname = mx.example.org", err) == 0);
	CHECK_STR(c.origin, "mx.example.org");
	CHECK(parse(&c, "origin = example.org\nhostname = mx.example.org",
	    err) == 0);
	CHECK_STR(c.origin, "example.org");
	CHECK_STR(c.hostname, "mx.example.org");

	/* "last one wins" replaces a list, it does not append */
	CHECK(parse(&c, "relay_networks = 10.0.0.0/8 11.0.0.0/8\n"
	    "relay_networks = 12.0.0.0/8", err) == 0);
	CHECK(c.relay_networks.n == 1 && c.relay_networks.c[0].addr[0] == 12);

	/* A value that fills its field exactly fits. */
	{
		char text[64 + CONFIG_PATH_MAX];

		memset(text, 0, sizeof(text));
		strcpy(text, "tls_policy = /");
		memset(text + strlen(text), 'p', CONFIG_PATH_MAX - 2);
		CHECK(parse(&c, text, err) == 0);
		CHECK(strlen(c.tls_policy) == CONFIG_PATH_MAX - 1);
	}
	return 0;
}

static const struct bad bads[] = {
	{ "message_size_limit = 10X", "t.conf:1: message_size_limit: bad size "
	    "\"10X\"" },
	{ "# one\n\nmax_recipients = 0", "t.conf:3: max_recipients: \"0\" out "
	    "of range (1..2147483647)" },
	{ "bogus = 1", "t.conf:1: bogus: unknown key" },
	{ "Hostname = a", "t.conf:1: Hostname: unknown key" },
	{ "hostname", "t.conf:1: hostname: expected \"key = value\"" },
	{ "hostname mx.example.org", "t.conf:1: hostname: expected "
	    "\"key = value\"" },
	{ "= 5", "t.conf:1: expected \"key = value\"" },
	{ "hostname =", "t.conf:1: hostname: empty; a host name is required" },
	{ "hostname = a..b", "t.conf:1: hostname: bad host name \"a..b\"" },
	{ "hostname = -x y", "t.conf:1: hostname: bad host name \"-x y\"" },
	/* a label neither starts nor ends with '-' (RFC 5321 sub-domain) */
	{ "hostname = -", "t.conf:1: hostname: bad host name \"-\"" },
	{ "hostname = -mx.example", "t.conf:1: hostname: bad host name "
	    "\"-mx.example\"" },
	{ "hostname = mx-.example", "t.conf:1: hostname: bad host name "
	    "\"mx-.example\"" },
	{ "hostname = mx.-example", "t.conf:1: hostname: bad host name "
	    "\"mx.-example\"" },
	{ "origin = example-", "t.conf:1: origin: bad host name "
	    "\"example-\"" },
	{ "relay_domains = ok.example .-x.example", "t.conf:1: relay_domains: "
	    "bad domain \".-x.example\"" },
	{ "smarthost = [-relay.example]:587", "t.conf:1: smarthost: bad host "
	    "\"[-relay.example]:587\" (want [host]:port, host:port or host)" },
	{ "origin = a/b", "t.conf:1: origin: bad host name \"a/b\"" },
	{ "listen_smtp = 1.2.3.4", "t.conf:1: listen_smtp: bad address "
	    "\"1.2.3.4\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = ::1:25", "t.conf:1: listen_smtp: bad address "
	    "\"::1:25\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = 1.2.3.4:0", "t.conf:1: listen_smtp: bad address "
	    "\"1.2.3.4:0\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = 1.2.3.4:65536", "t.conf:1: listen_smtp: bad address "
	    "\"1.2.3.4:65536\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = localhost:25", "t.conf:1: listen_smtp: bad address "
	    "\"localhost:25\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_submission = [::1]", "t.conf:1: listen_submission: bad "
	    "address \"[::1]\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtps = [::1]:x", "t.conf:1: listen_smtps: bad "
	    "address \"[::1]:x\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = *:25 0.0.0.0:25", "t.conf:1: listen_smtp: "
	    "port 25 bound twice (with listen_smtp)" },
	{ "listen_smtp = 1.1.1.1:1 1.1.1.1:2 1.1.1.1:3 1.1.1.1:4 1.1.1.1:5 "
	    "1.1.1.1:6 1.1.1.1:7 1.1.1.1:8 1.1.1.1:9", "t.conf:1: listen_smtp: "
	    "more than 8 addresses" },
	{ "inbound_tls = dane", "t.conf:1: inbound_tls: bad level \"dane\" "
	    "(want none, may, encrypt)" },
	{ "inbound_tls = smtps", "t.conf:1: inbound_tls: bad level \"smtps\" "
	    "(want none, may, encrypt)" },
	{ "smarthost_tls = fingerprint", "t.conf:1: smarthost_tls: bad level "
	    "\"fingerprint\" (want none, may, encrypt, dane, dane-only, "
	    "verify, secure, smtps)" },
	{ "outbound_tls = smtps", "t.conf:1: outbound_tls: bad level "
	    "\"smtps\" (want none, may, encrypt, dane, dane-only, verify, "
	    "secure)" },
	{ "outbound_tls = fingerprint", "t.conf:1: outbound_tls: bad level "
	    "\"fingerprint\" (want none, may, encrypt, dane, dane-only, "
	    "verify, secure)" },
	{ "outbound_tls =", "t.conf:1: outbound_tls: bad level \"\" (want "
	    "none, may, encrypt, dane, dane-only, verify, secure)" },
	{ "auth_over_plaintext = 1", "t.conf:1: auth_over_plaintext: bad "
	    "value \"1\" (want yes or no)" },
	{ "dnssec = true", "t.conf:1: dnssec: bad value \"true\" (want yes "
	    "or no)" },
	{ "relay_networks = 10.0.0.0/33", "t.conf:1: relay_networks: bad "
	    "network \"10.0.0.0/33\" (want address/bits)" },
	{ "relay_networks = ::/129", "t.conf:1: relay_networks: bad "
	    "network \"::/129\" (want address/bits)" },
	{ "relay_networks = 10.0.0.0/", "t.conf:1: relay_networks: bad "
	    "network \"10.0.0.0/\" (want address/bits)" },
	{ "relay_networks = 10.0.0.0/-1", "t.conf:1: relay_networks: bad "
	    "network \"10.0.0.0/-1\" (want address/bits)" },
	{ "relay_networks = 10.0.0/8", "t.conf:1: relay_networks: bad "
	    "network \"10.0.0/8\" (want address/bits)" },
	{ "relay_networks = [10.0.0.0]/8", "t.conf:1: relay_networks: bad "
	    "network \"[10.0.0.0]/8\" (want address/bits)" },
	{ "relay_networks = example.org", "t.conf:1: relay_networks: bad "
	    "network \"example.org\" (want address/bits)" },
	{ "relay_domains = a_b.org x@y", "t.conf:1: relay_domains: bad "
	    "domain \"x@y\"" },
	{ "relay_domains = .", "t.conf:1: relay_domains: bad domain \".\"" },
	{ "relay_domains = a..b", "t.conf:1: relay_domains: bad domain "
	    "\"a..b\"" },
	{ "message_size_limit = -1", "t.conf:1: message_size_limit: bad size "
	    "\"-1\"" },
	{ "message_size_limit = 0", "t.conf:1: message_size_limit: \"0\" out "
	    "of range (1..9223372036854775807 bytes)" },
	{ "message_size_limit = 10 M", "t.conf:1: message_size_limit: bad size "
	    "\"10 M\"" },
	{ "message_size_limit = 18446744073709551616", "t.conf:1: "
	    "message_size_limit: bad size \"18446744073709551616\"" },
	{ "message_size_limit = 17592186044416M", "t.conf:1: "
	    "message_size_limit: bad size \"17592186044416M\"" },
	{ "message_size_limit = 10m", "t.conf:1: message_size_limit: bad "
	    "size \"10m\"" },
	{ "max_recipients = -5", "t.conf:1: max_recipients: bad number "
	    "\"-5\"" },
	{ "max_recipients = 5x", "t.conf:1: max_recipients: bad number "
	    "\"5x\"" },
	{ "max_recipients = +5", "t.conf:1: max_recipients: bad number "
	    "\"+5\"" },
	{ "max_recipients = 2147483648", "t.conf:1: max_recipients: "
	    "\"2147483648\" out of range (1..2147483647)" },
	{ "max_recipients = 99999999999999999999999", "t.conf:1: "
	    "max_recipients: bad number \"99999999999999999999999\"" },
	{ "max_connections = 0", "t.conf:1: max_connections: \"0\" out of "
	    "range (1..2147483647)" },
	{ "max_connections_per_client = 0", "t.conf:1: "
	    "max_connections_per_client: \"0\" out of range (1..2147483647)" },
	{ "max_deliveries = 0", "t.conf:1: max_deliveries: \"0\" out of "
	    "range (1..2147483647)" },
	{ "max_deliveries_per_destination = ", "t.conf:1: "
	    "max_deliveries_per_destination: bad number \"\"" },
	{ "mx_port = 0", "t.conf:1: mx_port: \"0\" out of range (1..65535)" },
	{ "mx_port = 65536", "t.conf:1: mx_port: \"65536\" out of range "
	    "(1..65535)" },
	{ "queue_dir =", "t.conf:1: queue_dir: empty; a directory is "
	    "required" },
	{ "queue_lifetime = 5x", "t.conf:1: queue_lifetime: bad duration "
	    "\"5x\" (want a number with s, m, h or d)" },
	{ "queue_lifetime = 0", "t.conf:1: queue_lifetime: \"0\" out of "
	    "range (at least 1s)" },
	{ "queue_lifetime = 0d", "t.conf:1: queue_lifetime: \"0d\" out of "
	    "range (at least 1s)" },
	{ "queue_lifetime = 49711d", "t.conf:1: queue_lifetime: bad duration "
	    "\"49711d\" (want a number with s, m, h or d)" },
	{ "queue_lifetime = d", "t.conf:1: queue_lifetime: bad duration "
	    "\"d\" (want a number with s, m, h or d)" },
	{ "smtpd_timeout = -1", "t.conf:1: smtpd_timeout: bad duration "
	    "\"-1\" (want a number with s, m, h or d)" },
	{ "smtpd_data_timeout = 0s", "t.conf:1: smtpd_data_timeout: \"0s\" "
	    "out of range (at least 1s)" },
	{ "retry_min = 2h", "t.conf:1: retry_min: 7200s is longer than "
	    "retry_max (3600s)" },
	{ "retry_min = 1m\nretry_max = 30s", "t.conf:2: retry_max: 30s is "
	    "shorter than retry_min (60s)" },
	{ "retry_max = 30s\n#\nretry_min = 1m", "t.conf:3: retry_min: 60s is "
	    "longer than retry_max (30s)" },
	{ "smarthost = [mail.example.org", "t.conf:1: smarthost: bad host "
	    "\"[mail.example.org\" (want [host]:port, host:port or host)" },
	{ "smarthost = mail.example.org:0", "t.conf:1: smarthost: bad host "
	    "\"mail.example.org:0\" (want [host]:port, host:port or host)" },
	{ "smarthost = [a]x", "t.conf:1: smarthost: bad host "
	    "\"[a]x\" (want [host]:port, host:port or host)" },
	{ "smarthost = a b", "t.conf:1: smarthost: bad host "
	    "\"a b\" (want [host]:port, host:port or host)" },
	{ "smarthost = 2001:db8::1", "t.conf:1: smarthost: bad host "
	    "\"2001:db8::1\" (want [host]:port, host:port or host)" },
	{ "dns_servers = 1.2.3.4 1.2.3.5 1.2.3.6 1.2.3.7 1.2.3.8", "t.conf:1: "
	    "dns_servers: more than 4 servers" },
	{ "dns_servers = dns.google", "t.conf:1: dns_servers: bad server "
	    "\"dns.google\" (want ip, ip:port or [ipv6]:port)" },
	{ "dns_servers = 1.2.3.4:0", "t.conf:1: dns_servers: bad server "
	    "\"1.2.3.4:0\" (want ip, ip:port or [ipv6]:port)" },
	{ "dns_servers = [::1]:", "t.conf:1: dns_servers: bad server "
	    "\"[::1]:\" (want ip, ip:port or [ipv6]:port)" },
	{ "dns_servers = [1.2.3.4]:53", "t.conf:1: dns_servers: bad server "
	    "\"[1.2.3.4]:53\" (want ip, ip:port or [ipv6]:port)" },
	/* A listener's token is judged before the count; a network's or a
	 * server's count comes first. */
	{ "listen_smtp = " LISTEN_8 "x", "t.conf:1: listen_smtp: bad address "
	    "\"x\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = " LISTEN_8 "1.1.1.1:8", "t.conf:1: listen_smtp: "
	    "more than 8 addresses" },
	{ "relay_networks = " NETS_64 "x", "t.conf:1: relay_networks: "
	    "more than 64 networks" },
	{ "relay_networks = " NETS_64 "10.0.0.9", "t.conf:1: relay_networks: "
	    "more than 64 networks" },
	{ "relay_networks = 10.0.0.1 10.0.0.0/33", "t.conf:1: relay_networks: "
	    "bad network \"10.0.0.0/33\" (want address/bits)" },
	{ "dns_servers = 1.2.3.4 1.2.3.5 1.2.3.6 1.2.3.7 x", "t.conf:1: "
	    "dns_servers: more than 4 servers" },
	{ "user = -x", "t.conf:1: user: bad user name \"-x\"" },
	{ "user = a b", "t.conf:1: user: bad user name \"a b\"" },
	{ "user =", "t.conf:1: user: bad user name \"\"" },
	{ "user = 0123456789012345678901234567890123456789012345678901234567890"
	    "123", "t.conf:1: user: bad user name \"01234567890123456789012345"
	    "67890123456789012345678901234567890123\"" },
	{ "log = file", "t.conf:1: log: bad value \"file\" (want syslog or "
	    "stderr)" },
	{ "tls_cert = /a\n", "t.conf:1: tls_cert: set without tls_key (give "
	    "both, or the same file twice if it holds both)" },
	{ "client_key = /k", "t.conf:1: client_key: set without client_cert "
	    "(give both, or the same file twice if it holds both)" },
	{ "tls_cert = /a\x01", "t.conf:1: tls_cert: control character in "
	    "value \"/a\\x01\"" },
	{ "tls_cert = /a\rb", "t.conf:1: tls_cert: control character in "
	    "value \"/a\\x0db\"" },
	{ "bo\x7fgus = 1", "t.conf:1: bo\\x7fgus: unknown key" },
	/* A second colon is never a port: the listener, server and host
	 * shapes share one reading of "host:port". */
	{ "listen_smtp = 1.2.3.4:25:1", "t.conf:1: listen_smtp: bad address "
	    "\"1.2.3.4:25:1\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "listen_smtp = [::1]:25]", "t.conf:1: listen_smtp: bad address "
	    "\"[::1]:25]\" (want IPv4:port, [IPv6]:port or *:port)" },
	{ "smarthost = relay:25:1", "t.conf:1: smarthost: bad host "
	    "\"relay:25:1\" (want [host]:port, host:port or host)" },
	{ "smarthost = [::1]:0", "t.conf:1: smarthost: bad host "
	    "\"[::1]:0\" (want [host]:port, host:port or host)" },
	{ "dns_servers = 1.2.3.4:", "t.conf:1: dns_servers: bad server "
	    "\"1.2.3.4:\" (want ip, ip:port or [ipv6]:port)" },
	{ "dns_servers = 1.2.3.4:53:1", "t.conf:1: dns_servers: bad server "
	    "\"1.2.3.4:53:1\" (want ip, ip:port or [ipv6]:port)" },
	/* Units belong to sizes and durations, not counts. */
	{ "max_recipients = 5k", "t.conf:1: max_recipients: bad number "
	    "\"5k\"" },
	{ "queue_lifetime = 4294967296", "t.conf:1: queue_lifetime: bad "
	    "duration \"4294967296\" (want a number with s, m, h or d)" },
	/* Listeners one bind() would refuse at start, after check-config
	 * passed the file: a v4-mapped address (IPV6_V6ONLY), and two keys
	 * (or a wildcard and an address) on one port. */
	{ "listen_smtp = [::ffff:127.0.0.1]:25", "t.conf:1: listen_smtp: bad "
	    "address \"[::ffff:127.0.0.1]:25\" (want IPv4:port, [IPv6]:port "
	    "or *:port)" },
	{ "listen_smtp = 127.0.0.1:2525\nlisten_submission = 127.0.0.1:2525",
	    "t.conf:2: listen_submission: port 2525 bound twice (with "
	    "listen_smtp)" },
	{ "listen_submission = *:587\n#\nlisten_smtp = 127.0.0.1:587",
	    "t.conf:3: listen_smtp: port 587 bound twice (with "
	    "listen_submission)" },
	{ "listen_smtp = 0.0.0.0:25 127.0.0.1:25", "t.conf:1: listen_smtp: "
	    "port 25 bound twice (with listen_smtp)" },
	{ "listen_submission =\nlisten_smtp = [::1]:25 [::]:25",
	    "t.conf:2: listen_smtp: port 25 bound twice (with listen_smtp)" },
	{ "listen_smtps = [::1]:465\ntls_cert = /c\ntls_key = /c\n"
	    "listen_submission = [::]:465", "t.conf:4: listen_submission: "
	    "port 465 bound twice (with listen_smtps)" },
};

static int
t_bad(void)
{
	struct config c, before;
	char err[CONFIG_ERR_MAX];
	size_t i;

	config_defaults(&before);
	strcpy(before.hostname, "untouched.example");
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		memcpy(&c, &before, sizeof(c));
		memset(err, 0, sizeof(err));
		if (parse(&c, bads[i].in, err) != -1) {
			fprintf(stderr, "  accepted: %s\n", bads[i].in);
			CHECK(0);
		}
		if (strcmp(err, bads[i].err) != 0) {
			fprintf(stderr, "  %s\n  got:  %s\n  want: %s\n",
			    bads[i].in, err, bads[i].err);
			CHECK(0);
		}
		/* A failed parse leaves the caller's config alone. */
		CHECK(same(&c, &before));
	}
	return 0;
}

static int
t_errors_misc(void)
{
	struct config c;
	char err[CONFIG_ERR_MAX], small[16];
	const char *nul = "max_recipients = 5\0";

	/* the cert pair is blamed on the line that set the lone key */
	CHECK(parse(&c, "\n\ntls_key = /k\n", err) == -1);
	CHECK_STR(err, "t.conf:3: tls_key: set without tls_cert (give both, "
	    "or the same file twice if it holds both)");
	/* the same file for both is fine */
	CHECK(parse(&c, "tls_cert = /both.pem\ntls_key = /both.pem", err) == 0);
	/* port 465 without a certificate: the daemon could not serve it */
	CHECK(parse(&c, "\nlisten_smtps = 127.0.0.1:465\n", err) == -1);
	CHECK_STR(err, "t.conf:2: listen_smtps: needs tls_cert and tls_key");
	CHECK(parse(&c, "listen_smtps = 127.0.0.1:465\ntls_cert = /c.pem\n"
	    "tls_key = /c.pem\n", err) == 0);
	/* encrypt on port 25 without a certificate: every MAIL refused */
	CHECK(parse(&c, "\n\ninbound_tls = encrypt\n", err) == -1);
	CHECK_STR(err, "t.conf:3: inbound_tls: encrypt needs tls_cert and "
	    "tls_key");
	CHECK(parse(&c, "inbound_tls = encrypt\ntls_cert = /c.pem\n"
	    "tls_key = /c.pem\n", err) == 0);
	/* tls.c's words for a list its set-up would refuse */
	CHECK(parse(&c, "\ntls_ciphers = TLS-FOO, bar\n", err) == -1);
	CHECK_STR(err, "t.conf:2: tls_ciphers: unknown cipher suite TLS-FOO");
	/* a NUL byte inside the text is not the end of it */
	CHECK(config_parse(&c, "t.conf", nul, 19, err, sizeof(err)) == -1);
	CHECK_STR(err, "t.conf:1: max_recipients: control character in value "
	    "\"5\\x00\"");
	/* the error buffer is never overrun, and stays terminated */
	memset(small, 'x', sizeof(small));
	CHECK(config_parse(&c, "t.conf", "bogus = 1", 9, small, 8) == -1);
	CHECK_STR(small, "t.conf:");
	CHECK(small[8] == 'x');
	CHECK(config_parse(&c, "t.conf", "bogus = 1", 9, NULL, 0) == -1);
	/* a long junk key is shown cut short */
	{
		char text[300];

		memset(text, 'k', 200);
		strcpy(text + 200, " = 1");
		CHECK(parse(&c, text, err) == -1);
		CHECK(strstr(err, "t.conf:1: kkkk") == err);
		CHECK(strstr(err, "...: unknown key") != NULL);
		CHECK(strlen(err) < 120);
	}
	return 0;
}

/* CONFIG_LINE_MAX - 1 characters is the longest line; one more is an error. */
static int
t_long_lines(void)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char *text = malloc(CONFIG_LINE_MAX + 64);
	size_t n;

	CHECK(text != NULL);
	/* a comment line exactly at the limit */
	memset(text, '#', CONFIG_LINE_MAX - 1);
	strcpy(text + CONFIG_LINE_MAX - 1, "\nmx_port = 7");
	CHECK(parse(&c, text, err) == 0);
	CHECK(c.mx_port == 7);
	/* one more character: refused, not cut */
	memset(text, '#', CONFIG_LINE_MAX);
	strcpy(text + CONFIG_LINE_MAX, "\n");
	CHECK(parse(&c, text, err) == -1);
	CHECK_STR(err, "t.conf:1: line longer than 4095 characters");
	/* the same with a key, last line without a newline */
	strcpy(text, "mx_port = 7\nrelay_domains = ");
	n = strlen(text);
	memset(text + n, ',', CONFIG_LINE_MAX + 12 - n);
	text[CONFIG_LINE_MAX + 12] = '\0';
	CHECK(parse(&c, text, err) == -1);
	CHECK_STR(err, "t.conf:2: relay_domains: line longer than 4095 "
	    "characters");
	/* a path one longer than its field: refused, not cut */
	strcpy(text, "queue_dir = /");
	n = strlen(text);
	memset(text + n, 'q', CONFIG_PATH_MAX - 1);
	text[n + CONFIG_PATH_MAX - 1] = '\0';
	CHECK(parse(&c, text, err) == -1);
	CHECK_STR(err, "t.conf:1: queue_dir: longer than 255 characters");
	/* a host name one longer than CONFIG_NAME_MAX */
	strcpy(text, "hostname = ");
	n = strlen(text);
	memset(text + n, 'a', CONFIG_NAME_MAX + 1);
	for (size_t i = n + 50; i < n + CONFIG_NAME_MAX; i += 50)
		text[i] = '.';
	text[n + CONFIG_NAME_MAX + 1] = '\0';
	CHECK(parse(&c, text, err) == -1);
	CHECK_STR(err, "t.conf:1: hostname: longer than 254 characters");
	/* 254 fits the field but not DNS: 253 at most without the root dot */
	text[n + CONFIG_NAME_MAX] = '\0';
	CHECK(parse(&c, text, err) == -1);
	CHECK(strstr(err, "t.conf:1: hostname: bad host name \"aaaa") == err);
	text[n + CONFIG_NAME_MAX - 1] = '\0';
	CHECK(parse(&c, text, err) == 0);
	/* a label over 63 characters */
	strcpy(text, "relay_domains = ");
	n = strlen(text);
	memset(text + n, 'a', 64);
	strcpy(text + n + 64, ".org");
	CHECK(parse(&c, text, err) == -1);
	CHECK(strstr(err, "t.conf:1: relay_domains: bad domain \"aaaa") == err);
	text[n + 1] = '.';	/* 62 and 1 */
	CHECK(parse(&c, text, err) == 0);
	free(text);
	return 0;
}

struct netcase {
	const char *nets;
	const char *client;
	int match;
};

static const struct netcase netcases[] = {
	{ "127.0.0.0/8", "127.0.0.1", 1 },
	{ "127.0.0.0/8", "127.255.255.254", 1 },
	{ "127.0.0.0/8", "128.0.0.1", 0 },
	{ "127.0.0.0/8", "::ffff:127.0.0.1", 1 },
	{ "127.0.0.0/8", "::ffff:128.0.0.1", 0 },
	{ "127.0.0.0/8", "::1", 0 },
	{ "127.0.0.0/8", "::127.0.0.1", 0 },	/* compatible, not mapped */
	{ "::1/128", "::1", 1 },
	{ "::1/128", "::2", 0 },
	{ "::1/128", "127.0.0.1", 0 },
	{ "192.168.1.0/24", "192.168.1.200", 1 },
	{ "192.168.1.0/24", "192.168.2.1", 0 },
	{ "10.0.0.0/9", "10.127.255.255", 1 },
	{ "10.0.0.0/9", "10.128.0.0", 0 },
	{ "10.1.2.3/8", "10.200.0.1", 1 },	/* host bits cleared */
	{ "192.0.2.7", "192.0.2.7", 1 },	/* bare = host route */
	{ "192.0.2.7", "192.0.2.8", 0 },
	{ "0.0.0.0/0", "203.0.113.9", 1 },
	{ "0.0.0.0/0", "::ffff:203.0.113.9", 1 },
	{ "0.0.0.0/0", "2001:db8::1", 0 },
	{ "::/0", "2001:db8::1", 1 },
	{ "2001:db8::/32", "2001:db8:ffff::1", 1 },
	{ "2001:db8::/32", "2001:db9::1", 0 },
	{ "2001:db8:8000::/33", "2001:db8:7fff::1", 0 },
	{ "2001:db8:8000::/33", "2001:db8:8000::1", 1 },
	{ "[fe80::]/10", "febf::1", 1 },
	{ "[fe80::]/10", "fec0::1", 0 },
	{ "::ffff:0:0/96", "::ffff:10.0.0.1", 1 },
	/* A v4-mapped entry is its IPv4 network: IPv4 clients arrive as
	 * AF_INET (the IPv6 listeners are IPV6_V6ONLY); it matched none. */
	{ "::ffff:10.0.0.0/104", "10.1.2.3", 1 },
	{ "::ffff:10.0.0.0/104", "11.0.0.1", 0 },
	{ "::ffff:10.0.0.0/104", "::ffff:10.1.2.3", 1 },
	{ "[::ffff:192.0.2.7]", "192.0.2.7", 1 },
	{ "::ffff:0:0/96", "203.0.113.9", 1 },
	{ "10.0.0.0/8 192.168.0.0/16, ::1", "192.168.5.5", 1 },
	{ "10.0.0.0/8 192.168.0.0/16, ::1", "::1", 1 },
	{ "10.0.0.0/8 192.168.0.0/16, ::1", "172.16.0.1", 0 },
	{ "", "127.0.0.1", 0 },
};

static int
t_net_match(void)
{
	struct config c;
	struct sockaddr_storage ss;
	struct sockaddr_un un;
	char err[CONFIG_ERR_MAX], text[256];
	size_t i;
	int got;

	for (i = 0; i < sizeof(netcases) / sizeof(netcases[0]); i++) {
		snprintf(text, sizeof(text), "relay_networks = %s",
		    netcases[i].nets);
		CHECK(parse(&c, text, err) == 0);
		if (strchr(netcases[i].client, ':') != NULL)
			CHECK(sa6(&ss, netcases[i].client) == 0);
		else
			CHECK(sa4(&ss, netcases[i].client) == 0);
		got = config_net_match(&c.relay_networks,
		    (const struct sockaddr *)&ss);
		if (got != netcases[i].match) {
			fprintf(stderr, "  %s in %s: got %d\n",
			    netcases[i].client, netcases[i].nets, got);
			CHECK(0);
		}
	}
	/* anything but IP never matches, and NULL is no client */
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	CHECK(parse(&c, "relay_networks = 0.0.0.0/0 ::/0", err) == 0);
	CHECK(config_net_match(&c.relay_networks,
	    (const struct sockaddr *)(const void *)&un) == 0);
	CHECK(config_net_match(&c.relay_networks, NULL) == 0);
	return 0;
}

struct domcase {
	const char *domain;
	int match;
};

static int
t_domain_match(void)
{
	static const struct domcase cases[] = {
		{ "example.org", 1 },
		{ "EXAMPLE.ORG", 1 },
		{ "example.org.", 1 },
		{ "mail.example.org", 0 },	/* plain name: exact only */
		{ "xexample.org", 0 },
		{ "example.net", 0 },
		{ "sub.example.net", 1 },
		{ "a.b.Sub.Example.NET", 1 },
		{ "example.net", 0 },		/* ".x" : subdomains only */
		{ "xexample.net", 0 },
		{ "other.org", 1 },
		{ "", 0 },
		{ ".", 0 },
		{ ".example.net", 0 },	/* not a name */
	};
	struct config c;
	char err[CONFIG_ERR_MAX];
	size_t i;

	CHECK(parse(&c, "relay_domains = Example.org .EXAMPLE.net, other.org",
	    err) == 0);
	CHECK(c.relay_domains.n == 3);
	CHECK_STR(config_domain(&c.relay_domains, 0), "example.org");
	CHECK_STR(config_domain(&c.relay_domains, 1), ".example.net");
	CHECK_STR(config_domain(&c.relay_domains, 2), "other.org");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (config_domain_match(&c.relay_domains, cases[i].domain) !=
		    cases[i].match) {
			fprintf(stderr, "  %s\n", cases[i].domain);
			CHECK(0);
		}
	}
	CHECK(config_domain_match(&c.relay_domains, NULL) == 0);
	CHECK(parse(&c, "", err) == 0);
	CHECK(config_domain_match(&c.relay_domains, "example.org") == 0);
	return 0;
}

static int
t_helpers(void)
{
	static const struct { const char *s; int ok; unsigned v; } durs[] = {
		{ "0", 0, 0 }, { "1", 0, 1 }, { "45s", 0, 45 }, { "5m", 0, 300 },
		{ "2h", 0, 7200 }, { "5d", 0, 432000 },
		{ "4294967295", 0, 4294967295u }, { "4294967296", -1, 0 },
		{ "49710d", 0, 49710u * 86400u }, { "49711d", -1, 0 },
		{ "", -1, 0 }, { "m", -1, 0 }, { "5w", -1, 0 }, { "5M", -1, 0 },
		{ "-5", -1, 0 }, { " 5", -1, 0 }, { "5 ", -1, 0 },
		{ "5mm", -1, 0 }, { "0x10", -1, 0 },
	};
	static const struct { const char *s; int ok; uint64_t v; } sizes[] = {
		{ "0", 0, 0 }, { "1", 0, 1 }, { "1k", 0, 1024 },
		{ "1K", 0, 1024 }, { "10M", 0, 10485760 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -1, 0 },
		{ "17592186044415M", 0, 17592186044415ull << 20 },
		{ "17592186044416M", -1, 0 },
		{ "1G", -1, 0 }, { "1m", -1, 0 }, { "k", -1, 0 }, { "", -1, 0 },
		{ "-1", -1, 0 }, { "1.5M", -1, 0 },
	};
	size_t i;
	unsigned d;
	uint64_t b;

	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		d = 12345;
		if (config_parse_duration(durs[i].s, &d) != durs[i].ok) {
			fprintf(stderr, "  duration \"%s\"\n", durs[i].s);
			CHECK(0);
		}
		CHECK(d == (durs[i].ok == 0 ? durs[i].v : 12345));
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		b = 12345;
		if (config_parse_size(sizes[i].s, &b) != sizes[i].ok) {
			fprintf(stderr, "  size \"%s\"\n", sizes[i].s);
			CHECK(0);
		}
		CHECK(b == (sizes[i].ok == 0 ? sizes[i].v : 12345));
	}
	CHECK_STR(config_tls_level_name(TLS_NONE), "none");
	CHECK_STR(config_tls_level_name(TLS_MAY), "may");
	CHECK_STR(config_tls_level_name(TLS_ENCRYPT), "encrypt");
	CHECK_STR(config_tls_level_name(TLS_DANE), "dane");
	CHECK_STR(config_tls_level_name(TLS_DANE_ONLY), "dane-only");
	CHECK_STR(config_tls_level_name(TLS_FINGERPRINT), "fingerprint");
	CHECK_STR(config_tls_level_name(TLS_VERIFY), "verify");
	CHECK_STR(config_tls_level_name(TLS_SECURE), "secure");
	CHECK_STR(config_tls_level_name(TLS_SMTPS), "smtps");
	CHECK_STR(config_tls_level_name((enum tls_level)99), "unknown");
	return 0;
}

/* parse(print(x)) == x, and print(parse(print(x))) == print(x). */
static int
t_round_trip(void)
{
	static const char *const texts[] = {
		"",
		"hostname = MX.example.org\norigin = example.org\n"
		"listen_smtp = *:2525 [::1]:2525\nlisten_submission =\n"
		"listen_smtps = 127.0.0.1:465\nlocal_socket =\n"
		"tls_cert = /c.pem\ntls_key = /k.pem\ninbound_tls = encrypt\n"
		"auth_users = /u\nauth_over_plaintext = yes\n"
		"relay_networks = 10.9.8.7/12, [2001:db8::5]/64 ::ffff:1.2.3.4\n"
		"relay_domains = A.org .b.ORG\nrelay_client_certs = /fp\n"
		"aliases = /al\nmessage_size_limit = 1000001\n"
		"max_recipients = 3\nmax_connections = 4\n"
		"max_connections_per_client = 5\nqueue_dir = /q q\n"
		"queue_lifetime = 86399\nretry_min = 61\nretry_max = 3601\n"
		"smarthost = [relay.example]:2525\nsmarthost_tls = smtps\n"
		"smarthost_auth = /sa\noutbound_tls = dane-only\n"
		"tls_policy = /tp\nca_file =\nclient_cert = /cc\n"
		"client_key = /ck\ndns_servers = 127.0.0.1:5353 [::1]:53 ::2\n"
		"dnssec = no\nmx_port = 2525\nmax_deliveries = 7\n"
		"max_deliveries_per_destination = 2\nuser = mail\n"
		"log = stderr\nsmtpd_timeout = 1\nsmtpd_data_timeout = 2d\n",
		"tls_cert = /a#b\ntls_key = /x y\t z\n",
		"message_size_limit = 3k\nqueue_lifetime = 1d\n",
	};
	struct config a, b;
	char err[CONFIG_ERR_MAX], *p1, *p2;
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (parse(&a, texts[i], err) != 0) {
			fprintf(stderr, "  %s\n", err);
			CHECK(0);
		}
		CHECK((p1 = print(&a)) != NULL);
		if (parse(&b, p1, err) != 0) {
			fprintf(stderr, "  %s\n%s", err, p1);
			free(p1);
			CHECK(0);
		}
		CHECK((p2 = print(&b)) != NULL);
		if (!same(&a, &b) || strcmp(p1, p2) != 0) {
			fprintf(stderr, "  case %zu:\n%s---\n%s", i, p1, p2);
			free(p1);
			free(p2);
			CHECK(0);
		}
		free(p1);
		free(p2);
	}
	/* The printed file names every key exactly once, in DESIGN order. */
	CHECK(parse(&a, "", err) == 0);
	CHECK((p1 = print(&a)) != NULL);
	{
		static const char *const order[] = {
			"hostname", "origin", "listen_smtp",
			"listen_submission", "listen_smtps", "local_socket",
			"tls_cert", "tls_key", "tls_ciphers", "inbound_tls",
			"auth_users",
			"auth_over_plaintext", "relay_networks",
			"relay_domains", "relay_client_certs", "aliases",
			"message_size_limit", "max_recipients",
			"max_connections", "max_connections_per_client",
			"queue_dir", "queue_lifetime", "retry_min",
			"retry_max", "delay_warning_time", "smarthost",
			"smarthost_tls",
			"smarthost_auth", "outbound_tls", "tls_policy",
			"ca_file", "client_cert", "client_key", "dns_servers",
			"dnssec", "mx_port", "max_deliveries",
			"max_deliveries_per_destination", "user", "log",
			"smtpd_timeout", "smtpd_data_timeout",
		};
		const char *s = p1;
		size_t k, n;

		for (k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
			n = strlen(order[k]);
			if (strncmp(s, order[k], n) != 0 || (s[n] != ' ' &&
			    s[n] != '=')) {
				fprintf(stderr, "  want %s at: %.40s\n",
				    order[k], s);
				free(p1);
				CHECK(0);
			}
			s = strchr(s, '\n') + 1;
		}
		CHECK(*s == '\0');
	}
	free(p1);
	return 0;
}

/*
 * FERRY_RELAY_DOMAINS of CONFIG_LINE_MAX - 1 characters, 64 names with
 * one ',' between them: the names and their NULs fill the packed text of
 * struct domain_list to the last byte, and each one reads back whole.
 */
static int
t_domains_fill_text(void)
{
	static const char var[] = "FERRY_RELAY_DOMAINS=";
	static const char x[] = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
	struct config c;
	char err[CONFIG_ERR_MAX], name[64], want[64], last[CONFIG_LINE_MAX];
	char *env, *v, *envp[2];
	size_t n = 0, lastlen, i;

	CHECK((env = malloc(sizeof(var) + CONFIG_LINE_MAX)) != NULL);
	memcpy(env, var, sizeof(var));
	v = env + sizeof(var) - 1;
	/* 63 names "Nnn.XXX…" of 61 characters and a ',' each, then one
	 * that takes the rest, a '.' every 61 (labels stay under 64). */
	for (i = 0; i < CONFIG_MAX_DOMAINS - 1; i++) {
		snprintf(name, sizeof(name), "N%02zu.%s", i, x);
		CHECK(strlen(name) == 61);
		memcpy(v + n, name, 61);
		v[n + 61] = ',';
		n += 62;
	}
	lastlen = CONFIG_LINE_MAX - 1 - n;
	for (i = 0; i < lastlen; i++)
		last[i] = i % 61 == 60 ? '.' : 'Y';
	last[lastlen] = '\0';
	memcpy(v + n, last, lastlen + 1);
	CHECK(strlen(v) == CONFIG_LINE_MAX - 1);
	envp[0] = env;
	envp[1] = NULL;
	if (parse_env(&c, NULL, NULL, envp, err) != 0) {
		fprintf(stderr, "  %s\n", err);
		CHECK(0);
	}
	CHECK(c.relay_domains.n == CONFIG_MAX_DOMAINS);
	/* The 63 commas and the terminator became the 64 NULs. */
	CHECK(c.relay_domains.off[CONFIG_MAX_DOMAINS - 1] + lastlen + 1 ==
	    CONFIG_DOMAINS_TEXT);
	for (i = 0; i < CONFIG_MAX_DOMAINS - 1; i++) {
		snprintf(name, sizeof(name), "N%02zu.%s", i, x);
		snprintf(want, sizeof(want), "n%02zu.%.57s", i,
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		CHECK_STR(config_domain(&c.relay_domains, (int)i), want);
		CHECK(config_domain_match(&c.relay_domains, name) == 1);
	}
	CHECK(config_domain_match(&c.relay_domains, last) == 1);
	for (i = 0; i < lastlen; i++)
		last[i] = last[i] == 'Y' ? 'y' : last[i];
	CHECK_STR(config_domain(&c.relay_domains, CONFIG_MAX_DOMAINS - 1),
	    last);
	free(env);
	return 0;
}

/*
 * A relay_domains line right at the length limit still round-trips: the
 * printer drops the blanks around '=' rather than write an over-long line.
 */
static int
t_round_trip_full_line(void)
{
	struct config a, b;
	char err[CONFIG_ERR_MAX], *text, *p1, *nl;
	size_t n;

	CHECK((text = malloc(CONFIG_LINE_MAX + 1)) != NULL);
	strcpy(text, "relay_domains=");
	n = strlen(text);
	/* 63 names "d.ddd…" of 63 characters, each with a ',', then one
	 * name that fills the line to CONFIG_LINE_MAX - 1: 64 in all */
	while (n + 64 < CONFIG_LINE_MAX - 1) {
		memset(text + n, 'd', 63);
		text[n + 1] = '.';
		text[n + 63] = ',';
		n += 64;
	}
	while (n < CONFIG_LINE_MAX - 1)
		text[n++] = 'e';
	text[n] = '\0';
	CHECK(strlen(text) == CONFIG_LINE_MAX - 1);
	if (parse(&a, text, err) != 0) {
		fprintf(stderr, "  %s\n", err);
		CHECK(0);
	}
	CHECK(a.relay_domains.n == CONFIG_MAX_DOMAINS);
	CHECK((p1 = print(&a)) != NULL);
	nl = strstr(p1, "relay_domains");
	CHECK(nl != NULL && (size_t)(strchr(nl, '\n') - nl) < CONFIG_LINE_MAX);
	CHECK(parse(&b, p1, err) == 0);
	CHECK(same(&a, &b));
	free(p1);
	free(text);
	return 0;
}

static int
t_load(void)
{
	struct config c;
	char err[CONFIG_ERR_MAX], path[] = "/tmp/config_test.XXXXXX";
	const char *text = "# test\nmx_port = 2526\n", *more = "bogus = 1\n";
	int fd;

	CHECK((fd = mkstemp(path)) != -1);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK(close(fd) == 0);
	CHECK(config_load(&c, path, err, sizeof(err)) == 0);
	CHECK(c.mx_port == 2526);
	CHECK_STR(c.path, path);
	CHECK((fd = open(path, O_WRONLY | O_APPEND)) != -1);
	CHECK(write(fd, more, strlen(more)) == (ssize_t)strlen(more));
	CHECK(close(fd) == 0);
	CHECK(config_load(&c, path, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) == err);
	CHECK_STR(err + strlen(path), ":3: bogus: unknown key");
	CHECK(c.mx_port == 2526);	/* the old config stays */
	CHECK(unlink(path) == 0);
	CHECK(config_load(&c, path, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) == err);
	CHECK(strstr(err, ": cannot open: No such file or directory") != NULL);
	return 0;
}

/*
 * relay.conf.example as shipped is the defaults, documents every key
 * config_print() knows (as a "#key = value" line), and parses with all of
 * those lines switched on.  Run from the top of the tree, as make does.
 */
static int
t_example(void)
{
	struct config c, d;
	char err[CONFIG_ERR_MAX], *text, *on, *out, *s, want[80];
	size_t len = 0, i, o = 0, n;
	FILE *fp;

	CHECK((text = calloc(1, PRINT_MAX)) != NULL);
	if ((fp = fopen("relay.conf.example", "r")) == NULL) {
		fprintf(stderr, "  run from the top of the tree\n");
		free(text);
		CHECK(0);
	}
	len = fread(text, 1, PRINT_MAX - 1, fp);
	CHECK(fclose(fp) == 0);
	CHECK(len > 0 && len < PRINT_MAX - 1);
	CHECK(config_parse(&c, "t.conf", text, len, err, sizeof(err)) == 0);
	config_defaults(&d);
	memcpy(d.path, c.path, sizeof(d.path));
	CHECK(same(&c, &d));

	/* every key is documented */
	CHECK((out = print(&d)) != NULL);
	for (s = out; *s != '\0'; s = strchr(s, '\n') + 1) {
		n = strcspn(s, " =");
		CHECK(n + 4 < sizeof(want));
		snprintf(want, sizeof(want), "\n#%.*s =", (int)n, s);
		if (strstr(text, want) == NULL) {
			fprintf(stderr, "  %s not documented\n", want + 1);
			free(out);
			free(text);
			CHECK(0);
		}
	}
	free(out);

	/* switched on: "#key = v" lines lose their '#' */
	CHECK((on = calloc(1, PRINT_MAX)) != NULL);
	for (i = 0; i < len; i++) {
		if (text[i] == '#' && (i == 0 || text[i - 1] == '\n') &&
		    text[i + 1] >= 'a' && text[i + 1] <= 'z')
			continue;
		on[o++] = text[i];
	}
	if (config_parse(&c, "on.conf", on, o, err, sizeof(err)) != 0) {
		fprintf(stderr, "  %s\n", err);
		free(on);
		free(text);
		CHECK(0);
	}
	CHECK_STR(c.smarthost, "[smtp.example.net]:587");
	CHECK(c.listen_smtps.n == 2);
	free(on);
	free(text);
	return 0;
}

/*
 * FERRY_<KEY> over the file: a set variable wins (empty too), an unset
 * one leaves the file's value, other variables and near-misses are not
 * keys, and config_src says where each value came from.
 */
static int
t_env_override(void)
{
	struct config c;
	struct config_src src;
	char err[CONFIG_ERR_MAX];
	const char *file = "max_recipients = 7\n"
	    "smarthost = [a.example]:25\n"
	    "listen_smtp = 127.0.0.1:25\n"
	    "mx_port = 26\n";
	char *env[] = {
		"FERRY_SMARTHOST=[b.example]:587",
		"FERRY_LISTEN_SMTP=",
		"FERRY_MX_PORT= 2525\t",
		"FERRY_SMARTHOST_TLS=none",
		"FERRY_QUEUE_DIR=/q#1",
		"FERRY_SMARTHOST=[second.example]",	/* getenv() takes the first */
		"ferry_max_recipients=9",		/* not ours: case matters */
		"FERRY_MAX_RECIPIENTSX=9",
		"FERRY_BIN=/usr/bin/ferry",
		"FERRY_CONFIG=/nowhere",
		"PATH=/bin",
		NULL
	};
	char *none[] = { NULL };

	CHECK(parse_env(&c, &src, file, env, err) == 0);
	CHECK_STR(c.smarthost, "[b.example]:587");
	CHECK(c.smarthost_tls == TLS_NONE);
	CHECK(c.listen_smtp.n == 0);		/* empty: the listener is off */
	CHECK(c.mx_port == 2525);		/* blanks around it trimmed */
	CHECK_STR(c.queue_dir, "/q#1");		/* no comments in a variable */
	CHECK(c.max_recipients == 7);		/* unset: the file's value */
	CHECK(c.message_size_limit == 10 * 1024 * 1024);
	CHECK_STR(c.path, "t.conf");
	CHECK(src.line[key_pos("smarthost")] == CONFIG_FROM_ENV);
	CHECK(src.line[key_pos("listen_smtp")] == CONFIG_FROM_ENV);
	CHECK(src.line[key_pos("max_recipients")] == 1);
	CHECK(src.line[key_pos("mx_port")] == CONFIG_FROM_ENV);
	CHECK(src.line[key_pos("message_size_limit")] == 0);
	CHECK(src.line[key_pos("hostname")] == 0);

	/* a set variable's key: the file's line does not count, even bad */
	{
		char *over[] = { "FERRY_HOSTNAME=env.example",
		    "FERRY_MAX_RECIPIENTS=4", NULL };

		CHECK(parse_env(&c, &src, "hostname =\nmax_recipients = lots\n"
		    "mx_port = 27\n", over, err) == 0);
		CHECK_STR(c.hostname, "env.example");
		CHECK(c.max_recipients == 4 && c.mx_port == 27);
		CHECK(src.line[key_pos("hostname")] == CONFIG_FROM_ENV);
		CHECK(parse_env(&c, &src, "hostname =\nmx_port = x\n", over,
		    err) == -1);
		CHECK_STR(err, "t.conf:2: mx_port: bad number \"x\"");
		CHECK(parse_env(&c, &src, "hostnam = a\n", over, err) == -1);
		CHECK_STR(err, "t.conf:1: hostnam: unknown key");
	}

	/* an empty environment, or none, is the file alone */
	CHECK(parse_env(&c, &src, file, none, err) == 0);
	CHECK_STR(c.smarthost, "[a.example]:25");
	CHECK(c.listen_smtp.n == 1 && c.mx_port == 26);
	CHECK(src.line[key_pos("smarthost")] == 2);
	return 0;
}

/*
 * Every key config_print() writes can come from the environment: each
 * printed "key = value" line of a config unlike the defaults, turned into
 * FERRY_KEY=value with no file at all, gives the same struct.
 */
static int
t_env_every_key(void)
{
	struct config a, b;
	struct config_src src;
	char err[CONFIG_ERR_MAX], *out, *s, *e, *env[CONFIG_KEYS_MAX + 1];
	char vars[CONFIG_KEYS_MAX][CONFIG_LINE_MAX / 8];
	size_t n = 0, i, k;
	const char *file = "hostname = mx.example.org\norigin = example.org\n"
	    "listen_smtps = 127.0.0.1:465\nlisten_submission =\n"
	    "tls_cert = /c.pem\ntls_key = /c.key\ntls_ciphers = "
	    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256\n"
	    "inbound_tls = encrypt\nauth_users = /u\n"
	    "auth_over_plaintext = yes\nrelay_networks = 10.0.0.0/8, ::1\n"
	    "relay_domains = a.example .b.example\nrelay_client_certs = /f\n"
	    "aliases = /al\nmessage_size_limit = 3k\nmax_recipients = 3\n"
	    "max_connections = 9\nmax_connections_per_client = 2\n"
	    "queue_dir = /q\nqueue_lifetime = 2d\nretry_min = 1m\n"
	    "retry_max = 2h\nsmarthost = smtp.example.net:587\n"
	    "smarthost_tls = smtps\nsmarthost_auth = /sa\n"
	    "outbound_tls = dane-only\ntls_policy = /tp\nca_file = /ca\n"
	    "client_cert = /cc\nclient_key = /ck\n"
	    "dns_servers = 127.0.0.1:5353 ::1\ndnssec = no\nmx_port = 2525\n"
	    "max_deliveries = 5\nmax_deliveries_per_destination = 1\n"
	    "user = nobody\nlog = stderr\nsmtpd_timeout = 1m\n"
	    "smtpd_data_timeout = 3m\nlocal_socket = /s.sock\n";

	CHECK(parse(&a, file, err) == 0);
	CHECK((out = print(&a)) != NULL);
	for (s = out; *s != '\0'; s = e + 1) {
		e = strchr(s, '\n');
		CHECK(e != NULL && n < CONFIG_KEYS_MAX);
		*e = '\0';
		k = strcspn(s, " ");
		CHECK(strncmp(s + k, " =", 2) == 0);
		CHECK(strlen(s) + 8 < sizeof(vars[0]));
		memcpy(vars[n], "FERRY_", 6);
		for (i = 0; i < k; i++)
			vars[n][6 + i] = (char)(s[i] >= 'a' && s[i] <= 'z' ?
			    s[i] - 'a' + 'A' : s[i]);
		snprintf(vars[n] + 6 + k, sizeof(vars[0]) - 6 - k, "=%s",
		    s[k + 2] == ' ' ? s + k + 3 : s + k + 2);
		env[n] = vars[n];
		n++;
	}
	env[n] = NULL;
	free(out);
	CHECK(n > 40);
	if (parse_env(&b, &src, NULL, env, err) != 0) {
		fprintf(stderr, "  %s\n", err);
		CHECK(0);
	}
	CHECK_STR(b.path, "");			/* no file */
	memcpy(b.path, a.path, sizeof(b.path));
	CHECK(same(&a, &b));
	for (i = 0; i < n; i++)
		CHECK(src.line[i] == CONFIG_FROM_ENV);
	return 0;
}

/* Bad values name the variable, never a file line; nothing changes. */
static int
t_env_errors(void)
{
	static const struct {
		const char *var;
		const char *file;
		const char *err;
	} v[] = {
		{ "FERRY_MAX_RECIPIENTS=lots", NULL,
		    "FERRY_MAX_RECIPIENTS: bad number \"lots\"" },
		{ "FERRY_HOSTNAME=", NULL,
		    "FERRY_HOSTNAME: empty; a host name is required" },
		{ "FERRY_SMARTHOST_TLS=fingerprint", "smarthost_tls = none\n",
		    "FERRY_SMARTHOST_TLS: bad level \"fingerprint\" (want none, "
		    "may, encrypt, dane, dane-only, verify, secure, smtps)" },
		/* a newline in a variable cannot start a second key */
		{ "FERRY_SMARTHOST=a.example\nuser = root", NULL,
		    "FERRY_SMARTHOST: control character in value "
		    "\"a.example\\x0auser = root\"" },
		{ "FERRY_ALIASES=/a\r", NULL,
		    "FERRY_ALIASES: control character in value \"/a\\x0d\"" },
		/* rules across keys blame the variable that was set */
		{ "FERRY_RETRY_MIN=2h", "retry_max = 1h\n",
		    "FERRY_RETRY_MIN: 7200s is longer than retry_max (3600s)" },
		{ "FERRY_RETRY_MAX=1m", "retry_min = 2m\n",
		    "FERRY_RETRY_MAX: 60s is shorter than retry_min (120s)" },
		{ "FERRY_RETRY_MIN=2h", "\nretry_max = 1m\n",
		    "FERRY_RETRY_MIN: 7200s is longer than retry_max (60s)" },
		{ "FERRY_TLS_CERT=/c.pem", NULL,
		    "FERRY_TLS_CERT: set without tls_key (give both, or the "
		    "same file twice if it holds both)" },
		{ "FERRY_TLS_KEY=", "tls_cert = /c\ntls_key = /k\n",
		    "t.conf:1: tls_cert: set without tls_key (give both, or the "
		    "same file twice if it holds both)" },
		{ "FERRY_LISTEN_SMTPS=127.0.0.1:465", NULL,
		    "FERRY_LISTEN_SMTPS: needs tls_cert and tls_key" },
		{ "FERRY_INBOUND_TLS=encrypt", NULL,
		    "FERRY_INBOUND_TLS: encrypt needs tls_cert and tls_key" },
		{ "FERRY_TLS_CIPHERS=bogus", NULL,
		    "FERRY_TLS_CIPHERS: unknown cipher suite bogus" },
	};
	struct config c, keep;
	struct config_src src;
	char err[CONFIG_ERR_MAX], *env[2], big[CONFIG_LINE_MAX + 32];
	size_t i;

	CHECK(parse(&keep, "mx_port = 99\n", err) == 0);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memcpy(&c, &keep, sizeof(c));
		env[0] = (char *)(uintptr_t)v[i].var;
		env[1] = NULL;
		CHECK(parse_env(&c, &src, v[i].file, env, err) == -1);
		if (strcmp(err, v[i].err) != 0) {
			fprintf(stderr, "  %s:\n  got  %s\n  want %s\n",
			    v[i].var, err, v[i].err);
			CHECK(0);
		}
		CHECK(same(&c, &keep));
	}
	/* longer than a relay.conf line could be */
	memcpy(big, "FERRY_ALIASES=", 14);
	memset(big + 14, 'a', CONFIG_LINE_MAX);
	big[14 + CONFIG_LINE_MAX] = '\0';
	env[0] = big;
	CHECK(parse_env(&c, &src, NULL, env, err) == -1);
	CHECK_STR(err, "FERRY_ALIASES: longer than 4095 characters");
	return 0;
}

/*
 * No file: optional says a missing one is none (defaults and the
 * environment, path ""), otherwise it is an error; a path that exists but
 * cannot be read stays an error either way.
 */
static int
t_env_no_file(void)
{
	struct config c;
	struct config_src src;
	char err[CONFIG_ERR_MAX];
	char *env[] = { "FERRY_SMARTHOST=relay.example", NULL };
	const char *gone = "/nonexistent/ferry/relay.conf";

	CHECK(config_load_env(&c, &src, gone, 1, env, err, sizeof(err)) == 0);
	CHECK_STR(c.path, "");
	CHECK_STR(c.smarthost, "relay.example");
	CHECK(c.listen_smtp.n == 2);		/* the defaults */
	CHECK(src.line[key_pos("smarthost")] == CONFIG_FROM_ENV);
	CHECK(src.line[key_pos("listen_smtp")] == 0);
	CHECK(config_load_env(&c, &src, gone, 0, env, err, sizeof(err)) == -1);
	CHECK_STR(err, "/nonexistent/ferry/relay.conf: cannot open: No such "
	    "file or directory");
	/* a directory: it exists, so it is not "no file" */
	CHECK(config_load_env(&c, &src, "/", 1, env, err, sizeof(err)) == -1);
	CHECK(strncmp(err, "/: cannot read", 14) == 0);
	/* and still every variable is checked */
	env[0] = "FERRY_ORIGIN=";
	CHECK(config_load_env(&c, &src, gone, 1, env, err, sizeof(err)) == -1);
	CHECK_STR(err, "FERRY_ORIGIN: empty; a host name is required");
	return 0;
}

/*
 * check-config: each line says where its value came from, FERRY_*
 * variables that are no key get a note (FERRY_CONFIG is the file's
 * path, not a note), and the output still reads back as the same config.
 */
static int
t_env_print_src(void)
{
	struct config c, d;
	struct config_src src;
	char err[CONFIG_ERR_MAX], *out, *text, *nl;
	char *env[] = { "FERRY_SMARTHOST=[b.example]:587", "FERRY_LISTEN_SMTP=",
	    "FERRY_SMARTHSOT=typo", "FERRY_CONFIG=/x", NULL };
	size_t n;

	CHECK(parse_env(&c, &src, "# a comment\nmax_recipients = 7\n", env,
	    err) == 0);
	CHECK((out = print_src(&c, &src, env)) != NULL);
	CHECK(has_line(out, "smarthost = [b.example]:587  # env "
	    "FERRY_SMARTHOST"));
	CHECK(has_line(out, "listen_smtp =  # env FERRY_LISTEN_SMTP"));
	CHECK(has_line(out, "max_recipients = 7  # t.conf:2"));
	CHECK(has_line(out, "max_connections = 64  # default"));
	CHECK(strstr(out, "  # default (hostname)\n") != NULL);
	CHECK(strstr(out, "  # default (gethostname)\n") != NULL);
	CHECK(has_line(out, "# FERRY_SMARTHSOT: not a relay.conf key, "
	    "ignored"));
	CHECK(strstr(out, "FERRY_CONFIG") == NULL);
	CHECK(strstr(out, "# no configuration file") == NULL);
	CHECK(parse(&d, out, err) == 0);
	memcpy(d.path, c.path, sizeof(d.path));
	CHECK(same(&c, &d));
	free(out);

	/* no file: said once at the top */
	CHECK(parse_env(&c, &src, NULL, env, err) == 0);
	CHECK((out = print_src(&c, &src, NULL)) != NULL);
	CHECK(strncmp(out, "# no configuration file: defaults and FERRY_* "
	    "variables\n", 55) == 0);
	CHECK(strstr(out, "FERRY_SMARTHSOT") == NULL);	/* envp NULL */
	free(out);

	/* a line the comment would push over the limit gets it above */
	CHECK((text = malloc(CONFIG_LINE_MAX + 1)) != NULL);
	strcpy(text, "relay_domains=");
	n = strlen(text);
	while (n + 64 < CONFIG_LINE_MAX - 1) {
		memset(text + n, 'd', 63);
		text[n + 1] = '.';
		text[n + 63] = ',';
		n += 64;
	}
	while (n < CONFIG_LINE_MAX - 1)
		text[n++] = 'e';
	text[n] = '\0';
	CHECK(parse_env(&c, &src, text, NULL, err) == 0);
	CHECK((out = print_src(&c, &src, NULL)) != NULL);
	nl = strstr(out, "\n# t.conf:1\nrelay_domains");
	CHECK(nl != NULL);
	nl = strchr(nl + 1, '\n') + 1;
	CHECK((size_t)(strchr(nl, '\n') - nl) < CONFIG_LINE_MAX);
	CHECK(parse(&d, out, err) == 0);
	memcpy(d.path, c.path, sizeof(d.path));
	CHECK(same(&c, &d));
	free(out);
	free(text);
	return 0;
}

/*
 * A FERRY_* value with a '#' first or after a blank (a path, taken as
 * written) has no relay.conf line: "queue_dir = /q #2  # env ..." read
 * back as "/q".  check-config comments such a line out under a note, so
 * pasted back it cuts no value short, and the line holds the value
 * whole.  A '#' inside a word is part of a value, printed as usual.
 */
static int
t_env_print_cut(void)
{
	struct config c, d, dflt;
	struct config_src src;
	char err[CONFIG_ERR_MAX], *out;
	char *env[] = { "FERRY_QUEUE_DIR=/q #2", "FERRY_CA_FILE=#ca",
	    "FERRY_TLS_POLICY=/p\t#t", "FERRY_ALIASES=/a#b", NULL };

	CHECK(parse_env(&c, &src, "queue_dir = /file\n", env, err) == 0);
	CHECK_STR(c.queue_dir, "/q #2");
	CHECK((out = print_src(&c, &src, env)) != NULL);
	CHECK(has_line(out, "# env FERRY_QUEUE_DIR: relay.conf would cut this "
	    "value at its '#'; it is all after \"= \" below"));
	CHECK(has_line(out, "#queue_dir = /q #2"));
	CHECK(has_line(out, "#ca_file = #ca"));
	CHECK(has_line(out, "#tls_policy = /p\t#t"));
	CHECK(has_line(out, "aliases = /a#b  # env FERRY_ALIASES"));
	CHECK(strstr(out, "\nqueue_dir") == NULL);
	/* read back: those keys keep their defaults, none is cut short */
	CHECK(parse(&d, out, err) == 0);
	config_defaults(&dflt);
	CHECK_STR(d.queue_dir, dflt.queue_dir);
	CHECK_STR(d.ca_file, dflt.ca_file);
	CHECK_STR(d.tls_policy, "");
	CHECK_STR(d.aliases, "/a#b");
	free(out);
	return 0;
}

static const struct t_case cases[] = {
	{ "defaults", t_defaults },
	{ "good values", t_good },
	{ "values behind the text", t_values },
	{ "bad values name file:line:key", t_bad },
	{ "other errors", t_errors_misc },
	{ "long lines and values", t_long_lines },
	{ "relay_networks matching", t_net_match },
	{ "relay_domains matching", t_domain_match },
	{ "duration, size, level names", t_helpers },
	{ "print/parse round trip", t_round_trip },
	{ "round trip of a full line", t_round_trip_full_line },
	{ "relay_domains filling its text", t_domains_fill_text },
	{ "config_load", t_load },
	{ "relay.conf.example", t_example },
	{ "FERRY_<KEY> over the file", t_env_override },
	{ "every key from the environment", t_env_every_key },
	{ "environment errors name the variable", t_env_errors },
	{ "no relay.conf: defaults and environment", t_env_no_file },
	{ "check-config shows the sources", t_env_print_src },
	{ "check-config: a value relay.conf cannot hold", t_env_print_cut },
};

T_MAIN("config", cases)
