/*
 * config.h - relay.conf: the keys of DESIGN.md, parsed into one struct.
 *
 * config_load() fills a struct config from a file (defaults first, so a
 * missing key keeps its default).  Any unknown key or bad value is an
 * error "FILE:LINE: key: what is wrong" written to errbuf, return -1;
 * the caller exits 78 (EX_CONFIG) at start-up, or keeps the old config on
 * SIGHUP.  config_print() writes the effective settings in relay.conf
 * syntax (ferry check-config).  Nothing here opens sockets or files other
 * than the config itself.
 *
 * The _env variants add the environment (containers): each key can also
 * be set as FERRY_<KEY> (FERRY_SMARTHOST, FERRY_LISTEN_SMTP).  A variable
 * that is set wins over the file, even when empty (an empty value turns
 * a listener off); an unset one leaves the file's value.  A bad value is
 * "FERRY_KEY: what is wrong".  Other FERRY_* names are not keys and are
 * ignored (FERRY_CONFIG is the file's path, read by main.c).
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONFIG_MAX_LISTEN	8	/* addresses per listener key */
#define CONFIG_MAX_NETS		64	/* CIDRs in relay_networks */
#define CONFIG_MAX_DOMAINS	64	/* entries in relay_domains */
#define CONFIG_MAX_DNS		4
#define CONFIG_PATH_MAX		256
#define CONFIG_NAME_MAX		254	/* a DNS name */
#define CONFIG_LINE_MAX		4096
#define CONFIG_ERR_MAX		512
#define CONFIG_CIPHERS_MAX	1024
#define CONFIG_KEYS_MAX		64	/* keys relay.conf can have */
#define CONFIG_ENV_PREFIX	"FERRY_"
#define CONFIG_ENV_PATH		"FERRY_CONFIG"	/* the file, not a key */
#define CONFIG_FROM_ENV		((size_t)-1)	/* config_src: environment */

/* The Makefile's SYSCONFDIR, where make install puts relay.conf. */
#ifndef FERRY_SYSCONFDIR
#define FERRY_SYSCONFDIR	"/etc"
#endif
#define CONFIG_DEFAULT_PATH	FERRY_SYSCONFDIR "/ferry/relay.conf"
#define CONFIG_DEFAULT_CA_FILE	"/etc/ssl/certs/ca-certificates.crt"

enum tls_level {		/* the order matters: stronger is larger */
	TLS_NONE, TLS_MAY, TLS_ENCRYPT, TLS_DANE, TLS_DANE_ONLY,
	TLS_FINGERPRINT, TLS_VERIFY, TLS_SECURE, TLS_SMTPS
};

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct listen_list {
	int n;
	struct listen_addr a[CONFIG_MAX_LISTEN];
};

struct cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network order, host bits cleared */
	int bits;
};

struct cidr_list {
	int n;
	struct cidr c[CONFIG_MAX_NETS];
};

/*
 * The names packed one after the other, each with its NUL: a value is at
 * most one line (file or FERRY_RELAY_DOMAINS), so its names fit in a
 * line's bytes.  64 slots of CONFIG_NAME_MAX would be 16 KB in every
 * struct config.  Read them with config_domain().
 */
#define CONFIG_DOMAINS_TEXT	CONFIG_LINE_MAX
struct domain_list {
	int n;
	uint16_t off[CONFIG_MAX_DOMAINS];	/* name i at text + off[i] */
	char text[CONFIG_DOMAINS_TEXT];		/* lower case; ".x.org"
						   matches subdomains */
};

struct config {
	/*
	 * The settings read per session, message or delivery first: x86-64
	 * reaches a member at offset < 128 with a one-byte displacement, and
	 * every array below is past 128 anyway.  The order is free otherwise
	 * (config.c's keys[] has DESIGN.md's), except that the three
	 * listener lists stay side by side (main.c).
	 */
	uint64_t message_size_limit;
	enum tls_level inbound_tls;		/* none, may, encrypt */
	enum tls_level smarthost_tls;
	enum tls_level outbound_tls;
	int auth_over_plaintext;
	unsigned max_recipients;
	unsigned max_connections;
	unsigned max_connections_per_client;
	unsigned queue_lifetime;		/* seconds */
	unsigned retry_min, retry_max;		/* seconds */
	unsigned delay_warning_time;		/* seconds, 0 = no warning */
	int dns_n;
	int dnssec;
	unsigned mx_port;
	unsigned max_deliveries;
	unsigned max_deliveries_per_destination;
	int log_stderr;				/* log = stderr */
	unsigned smtpd_timeout;			/* seconds, per command */
	unsigned smtpd_data_timeout;		/* seconds, whole DATA phase */
	char hostname[CONFIG_NAME_MAX + 1];
	char origin[CONFIG_NAME_MAX + 1];
	char smarthost[CONFIG_NAME_MAX + 8];	/* as written: [host]:port */
	char path[CONFIG_PATH_MAX];	/* where it came from, "" = built in */
	/* From user to listen_smtps: what a reload cannot change, side by
	 * side (main_on_hup() copies them as one; config.c walks the three
	 * listener lists as one array). */
	char user[64];
	char queue_dir[CONFIG_PATH_MAX];
	char local_socket[CONFIG_PATH_MAX];
	struct listen_list listen_smtp;
	struct listen_list listen_submission;
	struct listen_list listen_smtps;
	char tls_cert[CONFIG_PATH_MAX];
	char tls_key[CONFIG_PATH_MAX];
	char tls_ciphers[CONFIG_CIPHERS_MAX];	/* mbedTLS names; "" default */
	char auth_users[CONFIG_PATH_MAX];
	struct cidr_list relay_networks;
	struct domain_list relay_domains;
	char relay_client_certs[CONFIG_PATH_MAX];
	char aliases[CONFIG_PATH_MAX];
	char smarthost_auth[CONFIG_PATH_MAX];
	char tls_policy[CONFIG_PATH_MAX];
	char ca_file[CONFIG_PATH_MAX];
	char client_cert[CONFIG_PATH_MAX];
	char client_key[CONFIG_PATH_MAX];
	char dns_servers[CONFIG_MAX_DNS][64];	/* "ip" or "ip:port" */
};

/*
 * Where each setting came from, in config_print() order: 0 the built-in
 * default, CONFIG_FROM_ENV its FERRY_<KEY> variable, else its line in
 * cfg->path.  Apart from struct config, which is compared with memcmp.
 */
struct config_src {
	size_t line[CONFIG_KEYS_MAX];
};

void config_defaults(struct config *);
int config_load(struct config *, const char *path, char *err, size_t errsz);
/* Parse text as if it were a file named "name" (tests, fuzzing). */
int config_parse(struct config *, const char *name, const char *text,
    size_t len, char *err, size_t errsz);
void config_print(const struct config *, FILE *);
/*
 * The file, then FERRY_<KEY> variables from envp (NULL: none).  optional:
 * a file that does not exist is no file (defaults and environment; path
 * becomes "").  text NULL: no file.  src may be NULL.
 */
int config_load_env(struct config *, struct config_src *, const char *path,
    int optional, char *const *envp, char *err, size_t errsz);
int config_parse_env(struct config *, struct config_src *, const char *name,
    const char *text, size_t len, char *const *envp, char *err, size_t errsz);
/* config_print() with "  # default", "  # FILE:LINE" or "  # env FERRY_X"
 * after each line (above it, and the line commented out, for a value
 * relay.conf cannot hold), and a note for FERRY_* variables that are no
 * key; to stdout (check-config), by printf(): fprintf() would be one libc
 * import more. */
void config_print_src(const struct config *, const struct config_src *,
    char *const *envp);
/* A FERRY_* variable that names no key; its message's tail. */
const char *config_env_stray(char *const **envp, size_t *len);
#define CONFIG_STRAY	": not a relay.conf key, ignored"

/* Helpers for the rest of the program. */
int config_net_match(const struct cidr_list *, const struct sockaddr *);
int config_domain_match(const struct domain_list *, const char *domain);
/* Name i (0 <= i < n) of the list. */
const char *config_domain(const struct domain_list *, int i);
int config_parse_duration(const char *, unsigned *seconds);
int config_parse_size(const char *, uint64_t *bytes);
const char *config_tls_level_name(enum tls_level);
/* s[0..n): a port, 1..65535 in decimal digits only: 0, else -1. */
int config_parse_port(const char *s, size_t n, unsigned *port);
/* NAME's value in envp (not NULL), as getenv() finds it, or NULL. */
const char *config_env_find(char *const *envp, const char *name);
/* "[host]:port", "[host]", "host:port" or "host" (an IPv6 address
 * unbracketed has no port): host at *h, *hn bytes; *port 0 if none.
 * 1: bracketed, 0: not, -1: a bad shape or port. */
int config_host_split(const char *, size_t, const char **h, size_t *hn,
    unsigned *port);

#endif
