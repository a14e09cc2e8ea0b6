/*
 * config.c - relay.conf: "key = value" lines into one struct config.
 *
 * Owns the syntax (comments, lists, durations, sizes, listener addresses,
 * CIDRs, domain patterns), the defaults of DESIGN.md, the check of every
 * value, and the printer that writes the effective settings back in the
 * same syntax.  It does not open sockets, load certificates or look up
 * users: the files that use a setting do that.  Parsers return 0, or -1
 * with "FILE:LINE: key: what is wrong" in err; a failed parse leaves the
 * caller's struct untouched, so a SIGHUP with a broken file changes nothing.
 * FERRY_<KEY> variables go through the same per-key parsers after the
 * file, so a value means the same wherever it was written.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "net.h"
#include "textfile.h"
#include "tls.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes in relay.conf */
#define CONFIG_COUNT_MAX	INT_MAX		/* callers may keep counts in int */
#define CONFIG_SIZE_MAX		INT64_MAX	/* fits off_t */
#define CONFIG_LABEL_MAX	63		/* RFC 1035 §2.3.4 */
#define CONFIG_PORT_MAX		65535
#define CONFIG_SHOW_MAX		64	/* untrusted bytes quoted in an error */
#define CONFIG_QUOTE_SIZE	(CONFIG_SHOW_MAX * 4 + 8)
#define CONFIG_VAR_MAX		64	/* "FERRY_" and the longest key */
#define CONFIG_NO_FILE		"defaults"	/* p.name when there is none */
/* One printed value: 64 IPv6 networks or a line's worth of domains. */
#define CONFIG_PRINT_MAX	(2 * CONFIG_LINE_MAX)

#define LEVEL(l)		(1u << (l))

enum key_type {
	KT_NAME,	/* a host or domain name, lower-cased, required */
	KT_LISTEN,	/* listener addresses; empty = off */
	KT_PATH,	/* a file; empty = feature off */
	KT_DIR,		/* a path that must be given */
	KT_TLS,		/* a tls_level out of key.levels */
	KT_BOOL,
	KT_NETS,
	KT_DOMAINS,
	KT_SIZE,
	KT_COUNT,
	KT_DURATION,
	KT_SMARTHOST,
	KT_DNS,
	KT_USER,
	KT_LOG,
	KT_COUNT_OF_TYPES
};

/* The maximum of a number key (key_max[]). */
enum key_range { KR_NONE, KR_SIZE, KR_COUNT, KR_UINT, KR_PORT,
	KR_UINT_OFF };		/* KR_UINT, and 0 means off */

/*
 * Bit fields: the table is ~40 entries, each 8 bytes, not 64.  The name
 * and the default are in key_names[] and key_dflts[]: no two pointers per
 * key (their 16 bytes in the RELRO segment).
 */
struct key {
	unsigned type : 8;	/* enum key_type */
	unsigned off : 24;	/* the field in struct config */
	unsigned size : 16;
	unsigned range : 4;	/* enum key_range: KT_SIZE, KT_COUNT,
				   KT_DURATION; the minimum is 1, or 0
				   with KR_UINT_OFF */
	unsigned levels : 12;	/* KT_TLS: LEVEL() mask of what is allowed */
};
_Static_assert(sizeof(struct config) < (1u << 16), "struct key: size");
_Static_assert(LEVEL(TLS_SMTPS) < (1u << 12), "struct key: levels");
/* set_word() stores a level as an int. */
_Static_assert(sizeof(enum tls_level) == sizeof(int), "enum tls_level");
_Static_assert(CONFIG_DOMAINS_TEXT <= UINT16_MAX + 1, "domain_list: off");
_Static_assert(offsetof(struct config, listen_smtps) ==
    offsetof(struct config, listen_smtp) + 2 * sizeof(struct listen_list),
    "listen_overlap: the listener lists side by side");


struct parser {
	const char *name;	/* file name for messages */
	size_t line;		/* 0 = not about one line */
	char *err;
	size_t errsz;
	char *const *envp;		/* FERRY_<KEY> variables, or NULL */
	char var[CONFIG_VAR_MAX];	/* "FERRY_KEY": messages name it
					   instead of file, line and key */
	size_t keyline[CONFIG_KEYS_MAX];	/* where each key was last set,
						   0 = not in the file,
						   CONFIG_FROM_ENV */
};

/*
 * A key's printed value, " = ..." without the name or the newline.  Built
 * in memory so config_print_src() knows its length before writing, with
 * no open_memstream() (each libc import costs ~70 bytes).
 */
struct pbuf {
	size_t len;
	char s[CONFIG_PRINT_MAX];
};

/* A number's suffix: durations and sizes.  The largest scale is 1 M:
 * 32 bits and the suffix make 8 bytes an entry, not 16. */
struct unit {
	uint32_t scale;
	char suffix;
};

typedef int key_parse_fn(struct parser *, const struct key *, struct config *,
    const char *);
typedef void key_print_fn(const struct key *, const struct config *,
    struct pbuf *);

static int p_err(struct parser *, const struct key *, const char *, ...)
    __attribute__((format(printf, 3, 4)));
static int p_bad(struct parser *, const struct key *, const char *,
    const char *, size_t, uint64_t);
static const char *quote(char *, const char *, size_t);
static const char *key_name(const struct key *);
/* noinline: measured smaller than LTO's inlined copies. */
static void key_put(const struct key *, const struct config *,
    struct pbuf *) __attribute__((noinline));
static void pb_add(struct pbuf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static const struct key *key_find(const char *, size_t);
static int parse_line(struct parser *, struct config *, const char *, size_t)
    __attribute__((noinline));	/* measured: smaller apart */
static int check_whole(struct parser *, struct config *);
static void blame(struct parser *, size_t);
static int env_apply(struct parser *, struct config *, char *const *);
static void env_name(char *, const char *);
static void src_text(char *, size_t, const struct config *,
    const struct config_src *, size_t);
static void default_hostname(char *, size_t);
static int has_ctl(const char *, size_t);
static int is_blank(int);
static int is_sep(int);
static size_t list_next(const char **, const char **);
static void *field(struct config *, const struct key *);
static const void *cfield(const struct config *, const struct key *);
static int name_valid(const char *, size_t);
static void lower_copy(char *, size_t, const char *, size_t);
static int number_parse(const char *, size_t, uint64_t *);
static int unit_parse(const char *, const struct unit *, uint64_t,
    uint64_t *);
static int host_copy(char *, const char *, size_t);
static int listen_token(const char *, size_t, struct listen_addr *);
static int listen_overlap(struct parser *, struct config *)
    __attribute__((noinline));
static int cidr_token(const char *, size_t, struct cidr *);
static int dns_token(const char *, size_t, char *, size_t);
static int smarthost_valid(const char *, size_t);
static void listen_format(const struct listen_addr *, struct pbuf *);
static int cidr_contains(const struct cidr *, int, const uint8_t *);
static const char *key_words(const struct key *)
    __attribute__((noinline));	/* measured: smaller apart */
static const struct unit *key_units(const struct key *)
    __attribute__((noinline));	/* measured: smaller apart */
static key_parse_fn set_name, set_list, set_path, set_dir, set_word,
    set_domains, set_number, set_smarthost, set_user;
static key_print_fn put_string, put_listen, put_word, put_nets,
    put_domains, put_number, put_dns;

#define FIELD(m)	offsetof(struct config, m), sizeof(((struct config *)0)->m)

/*
 * In DESIGN.md order: config_print() walks this table, so the output reads
 * like the documentation.  The defaults are text so they go through the
 * same checks as a user's value; "" is none (the field stays zero).
 * X(name, type, struct config member, range, levels, default)
 */
#define CONFIG_KEYS(X) \
	X("hostname", KT_NAME, hostname, KR_NONE, 0, "") \
	X("origin", KT_NAME, origin, KR_NONE, 0, "") \
	X("listen_smtp", KT_LISTEN, listen_smtp, KR_NONE, \
	    0, "0.0.0.0:25 [::]:25") \
	X("listen_submission", KT_LISTEN, listen_submission, KR_NONE, \
	    0, "0.0.0.0:587 [::]:587") \
	X("listen_smtps", KT_LISTEN, listen_smtps, KR_NONE, 0, "") \
	X("local_socket", KT_PATH, local_socket, KR_NONE, \
	    0, "/run/ferry/submit.sock") \
	X("tls_cert", KT_PATH, tls_cert, KR_NONE, 0, "") \
	X("tls_key", KT_PATH, tls_key, KR_NONE, 0, "") \
	X("tls_ciphers", KT_PATH, tls_ciphers, KR_NONE, 0, "") \
	X("inbound_tls", KT_TLS, inbound_tls, KR_NONE, \
	    LEVEL(TLS_NONE) | LEVEL(TLS_MAY) | LEVEL(TLS_ENCRYPT), "may") \
	X("auth_users", KT_PATH, auth_users, KR_NONE, 0, "") \
	X("auth_over_plaintext", KT_BOOL, auth_over_plaintext, KR_NONE, \
	    0, "no") \
	X("relay_networks", KT_NETS, relay_networks, KR_NONE, \
	    0, "127.0.0.0/8 ::1/128") \
	X("relay_domains", KT_DOMAINS, relay_domains, KR_NONE, 0, "") \
	X("relay_client_certs", KT_PATH, relay_client_certs, KR_NONE, 0, "") \
	X("aliases", KT_PATH, aliases, KR_NONE, 0, "") \
	X("message_size_limit", KT_SIZE, message_size_limit, KR_SIZE, \
	    0, "10M") \
	X("max_recipients", KT_COUNT, max_recipients, KR_COUNT, 0, "100") \
	X("max_connections", KT_COUNT, max_connections, KR_COUNT, 0, "64") \
	X("max_connections_per_client", KT_COUNT, \
	    max_connections_per_client, KR_COUNT, 0, "8") \
	X("queue_dir", KT_DIR, queue_dir, KR_NONE, 0, "/var/spool/ferry") \
	X("queue_lifetime", KT_DURATION, queue_lifetime, KR_UINT, 0, "5d") \
	X("retry_min", KT_DURATION, retry_min, KR_UINT, 0, "5m") \
	X("retry_max", KT_DURATION, retry_max, KR_UINT, 0, "1h") \
	X("delay_warning_time", KT_DURATION, delay_warning_time, KR_UINT_OFF, \
	    0, "") \
	X("smarthost", KT_SMARTHOST, smarthost, KR_NONE, 0, "") \
	X("smarthost_tls", KT_TLS, smarthost_tls, KR_NONE, \
	    LEVEL(TLS_NONE) | LEVEL(TLS_MAY) | LEVEL(TLS_ENCRYPT) | \
	    LEVEL(TLS_SMTPS) | LEVEL(TLS_VERIFY) | LEVEL(TLS_SECURE) | \
	    LEVEL(TLS_DANE) | LEVEL(TLS_DANE_ONLY), "encrypt") \
	X("smarthost_auth", KT_PATH, smarthost_auth, KR_NONE, 0, "") \
	X("outbound_tls", KT_TLS, outbound_tls, KR_NONE, \
	    LEVEL(TLS_NONE) | LEVEL(TLS_MAY) | LEVEL(TLS_ENCRYPT) | \
	    LEVEL(TLS_DANE) | LEVEL(TLS_DANE_ONLY) | LEVEL(TLS_VERIFY) | \
	    LEVEL(TLS_SECURE), "dane") \
	X("tls_policy", KT_PATH, tls_policy, KR_NONE, 0, "") \
	X("ca_file", KT_PATH, ca_file, KR_NONE, 0, CONFIG_DEFAULT_CA_FILE) \
	X("client_cert", KT_PATH, client_cert, KR_NONE, 0, "") \
	X("client_key", KT_PATH, client_key, KR_NONE, 0, "") \
	X("dns_servers", KT_DNS, dns_servers, KR_NONE, 0, "") \
	X("dnssec", KT_BOOL, dnssec, KR_NONE, 0, "yes") \
	X("mx_port", KT_COUNT, mx_port, KR_PORT, 0, "25") \
	X("max_deliveries", KT_COUNT, max_deliveries, KR_COUNT, 0, "20") \
	X("max_deliveries_per_destination", KT_COUNT, \
	    max_deliveries_per_destination, KR_COUNT, 0, "4") \
	X("user", KT_USER, user, KR_NONE, 0, "ferry") \
	X("log", KT_LOG, log_stderr, KR_NONE, 0, "syslog") \
	X("smtpd_timeout", KT_DURATION, smtpd_timeout, KR_UINT, 0, "5m") \
	X("smtpd_data_timeout", KT_DURATION, smtpd_data_timeout, KR_UINT, \
	    0, "10m") \
	/* end */
#define KEY_ROW(n, t, m, r, l, d)	{ t, FIELD(m), r, l },
#define KEY_ENUM(n, t, m, r, l, d)	KI_##m,
#define KEY_NAME(n, t, m, r, l, d)	n "\0"
#define KEY_DFLT(n, t, m, r, l, d)	d "\0"
static const struct key keys[] = { CONFIG_KEYS(KEY_ROW) };
/* In keys[] order, NUL-separated (textfile_nth()).  key_names, read
 * byte-wise, aligned(1): the ABI's 16 for an array of 16 bytes and more
 * is only padding (as env_bad in queue.c); key_max, level_names too. */
static const char key_names[] __attribute__((aligned(1))) =
    CONFIG_KEYS(KEY_NAME);
static const char key_dflts[] = CONFIG_KEYS(KEY_DFLT);
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))
/* env_name(): "FERRY_KEY" and its NUL fit in CONFIG_VAR_MAX, checked here
 * and not at run time. */
#define KEY_VAR_FITS(n, t, m, r, l, d) \
	_Static_assert(sizeof(CONFIG_ENV_PREFIX n) <= CONFIG_VAR_MAX, \
	    "raise CONFIG_VAR_MAX");
CONFIG_KEYS(KEY_VAR_FITS)
/* keys[] indexes by member, for the rules that name a key (check_whole). */
enum key_index { CONFIG_KEYS(KEY_ENUM) };

static const uint64_t key_max[] __attribute__((aligned(8))) = {
	[KR_SIZE] = CONFIG_SIZE_MAX, [KR_COUNT] = CONFIG_COUNT_MAX,
	[KR_UINT] = UINT_MAX, [KR_PORT] = CONFIG_PORT_MAX,
	[KR_UINT_OFF] = UINT_MAX,
};
_Static_assert(NKEYS <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

static key_parse_fn *const key_parse[KT_COUNT_OF_TYPES] = {
	[KT_NAME] = set_name, [KT_LISTEN] = set_list,
	[KT_PATH] = set_path, [KT_DIR] = set_dir, [KT_TLS] = set_word,
	[KT_BOOL] = set_word, [KT_NETS] = set_list,
	[KT_DOMAINS] = set_domains, [KT_SIZE] = set_number,
	[KT_COUNT] = set_number, [KT_DURATION] = set_number,
	[KT_SMARTHOST] = set_smarthost, [KT_DNS] = set_list,
	[KT_USER] = set_user, [KT_LOG] = set_word,
};

static key_print_fn *const key_print[KT_COUNT_OF_TYPES] = {
	[KT_NAME] = put_string, [KT_LISTEN] = put_listen,
	[KT_PATH] = put_string, [KT_DIR] = put_string, [KT_TLS] = put_word,
	[KT_BOOL] = put_word, [KT_NETS] = put_nets,
	[KT_DOMAINS] = put_domains, [KT_SIZE] = put_number,
	[KT_COUNT] = put_number, [KT_DURATION] = put_number,
	[KT_SMARTHOST] = put_string, [KT_DNS] = put_dns,
	[KT_USER] = put_string, [KT_LOG] = put_word,
};

/* In enum tls_level order, NUL-separated (no table of pointers). */
static const char level_names[] __attribute__((aligned(1))) =
    "none\0may\0encrypt\0dane\0dane-only\0"
    "fingerprint\0verify\0secure\0smtps";
#define NLEVELS		(TLS_SMTPS + 1)

/*
 * Largest unit first: the printer picks the largest that divides evenly.
 * Each list ends with a zero suffix.
 */
static const struct unit duration_units[] = {
	{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' }, { 0, 0 },
}, size_units[] = {
	{ 1024 * 1024, 'M' }, { 1024, 'k' }, { 1024, 'K' }, { 0, 0 },
};
#define NUNITS(u)	(sizeof(u) / sizeof((u)[0]))

void
config_defaults(struct config *cfg)
{
	const char *d = key_dflts;
	size_t i;
	int rc;

	/* Zero everything, padding included, so two parses of the same
	 * text compare equal with memcmp (the round-trip test relies on it). */
	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < NKEYS; i++, d += strlen(d) + 1) {
		if (d[0] == '\0')
			continue;
		rc = key_parse[keys[i].type](NULL, &keys[i], cfg, d);
		/* A default that does not parse: a bug in keys[].  A trap,
		 * not abort(): one libc import fewer. */
		if (rc != 0)
			__builtin_trap();
	}
	default_hostname(cfg->hostname, sizeof(cfg->hostname));
	memcpy(cfg->origin, cfg->hostname, sizeof(cfg->origin));
}

int
config_load(struct config *cfg, const char *path, char *err, size_t errsz)
{
	return config_load_env(cfg, NULL, path, 0, NULL, err, errsz);
}

/* always_inline: the binary's one call (main.c) measured smaller without
 * it. */
__attribute__((always_inline)) inline int
config_load_env(struct config *cfg, struct config_src *src, const char *path,
    int optional, char *const *envp, char *err, size_t errsz)
{
	struct parser p;
	char *buf;
	size_t len;
	int rc;

	/* Any type: relay.conf has always been readable from a pipe. */
	rc = textfile_read(path, CONFIG_FILE_MAX, TEXTFILE_ANYTYPE, &buf, &len,
	    err, errsz);
	/* Only "there is none": a file we may not read is still an error. */
	if (rc == TEXTFILE_OPEN && errno == ENOENT && optional)
		return config_parse_env(cfg, src, NULL, NULL, 0, envp, err,
		    errsz);
	if (rc != TEXTFILE_OK) {
		/* This file's own wording, where it has one. */
		memset(&p, 0, sizeof(p));
		p.name = path;
		p.err = err;
		p.errsz = errsz;
		if (rc == TEXTFILE_OPEN || rc == TEXTFILE_READ ||
		    rc == TEXTFILE_CLOSE)
			p_err(&p, NULL, "%s%s", rc == TEXTFILE_OPEN ?
			    "cannot open: " : rc == TEXTFILE_READ ?
			    "cannot read: " : "close: ", log_errstr());
		return -1;
	}
	rc = config_parse_env(cfg, src, path, buf, len, envp, err, errsz);
	free(buf);
	return rc;
}

int
config_parse(struct config *out, const char *name, const char *text,
    size_t len, char *err, size_t errsz)
{
	return config_parse_env(out, NULL, name != NULL ? name : "(config)",
	    text, len, NULL, err, errsz);
}

int
config_parse_env(struct config *out, struct config_src *src,
    const char *name, const char *text, size_t len, char *const *envp,
    char *err, size_t errsz)
{
	struct config *cfg;
	struct parser p;
	const char *l;
	size_t pos = 0, n;
	int rc = -1;

	memset(&p, 0, sizeof(p));
	p.name = text != NULL && name != NULL ? name : CONFIG_NO_FILE;
	p.err = err;
	p.errsz = errsz;
	p.envp = envp;
	if (err != NULL && errsz > 0)
		err[0] = '\0';
	/*
	 * The parse works on a copy, so an error leaves *out as it was.  The
	 * copy is on the heap: on the stack its ~15 KB would stay in the
	 * daemon's stack pages for good, from this one call at start-up.
	 */
	if ((cfg = malloc(sizeof(*cfg))) == NULL)
		return p_err(&p, NULL, "%s", log_errstr());
	config_defaults(cfg);
	if (text != NULL) {
		if (strlen(p.name) >= sizeof(cfg->path)) {
			p_err(&p, NULL, "file name longer than %zu characters",
			    sizeof(cfg->path) - 1);
			goto done;
		}
		memcpy(cfg->path, p.name, strlen(p.name) + 1);
		while (textfile_line(text, len, &pos, &l, &n)) {
			p.line++;
			if (parse_line(&p, cfg, l, n) != 0)
				goto done;
		}
	}
	p.line = 0;
	if (envp != NULL && env_apply(&p, cfg, envp) != 0)
		goto done;
	if (check_whole(&p, cfg) != 0)
		goto done;
	memcpy(out, cfg, sizeof(*cfg));
	if (src != NULL) {
		memset(src, 0, sizeof(*src));
		memcpy(src->line, p.keyline, sizeof(p.keyline[0]) * NKEYS);
	}
	rc = 0;
done:
	free(cfg);
	return rc;
}

void
config_print(const struct config *cfg, FILE *fp)
{
	struct pbuf b;
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		key_put(&keys[i], cfg, &b);
		fprintf(fp, "%s%s\n", key_name(&keys[i]), b.s);
	}
}

/*
 * Each line of config_print() with its source as a comment, so the output
 * still reads back as relay.conf.  A line that the comment would push
 * past CONFIG_LINE_MAX (a long relay_domains) gets it on a line of its
 * own above instead.  So does a value with a '#' first or after a blank,
 * which only a FERRY_* variable can give (a path, taken as written): in
 * relay.conf that '#' starts a comment, so no line can hold the value,
 * and one that looked like it would read back cut short.  Its line is
 * commented out whole, under a note that says why.  Then a note for
 * each FERRY_* variable that is no key: a typo there would otherwise
 * change nothing without a word.
 */
void
config_print_src(const struct config *cfg, const struct config_src *src,
    char *const *envp)
{
	char why[CONFIG_PATH_MAX + CONFIG_VAR_MAX];
	struct pbuf b;
	size_t i, j, n;
	const char *eq, *name;
	int cut;

	if (cfg->path[0] == '\0')
		printf("# no configuration file: defaults and "
		    "%s* variables\n", CONFIG_ENV_PREFIX);
	for (i = 0; i < NKEYS; i++) {
		src_text(why, sizeof(why), cfg, src, i);
		key_put(&keys[i], cfg, &b);
		name = key_name(&keys[i]);
		/* b.s[0] is a blank or '=': no '#' there. */
		for (cut = 0, j = 1; j < b.len; j++)
			cut |= b.s[j] == '#' && is_blank(b.s[j - 1]);
		/* n: the line with its newline. */
		n = strlen(name) + b.len + 1;
		if (!cut && n + strlen(why) + 4 < CONFIG_LINE_MAX)
			printf("%s%s  # %s\n", name, b.s, why);
		else
			printf("# %s%s\n%s%s%s\n", why, cut ? ": relay.conf "
			    "would cut this value at its '#'; it is all after "
			    "\"= \" below" : "", cut ? "#" : "", name, b.s);
	}
	while ((eq = config_env_stray(&envp, &n)) != NULL)
		printf("# %.*s" CONFIG_STRAY "\n", (int)n, eq);
}

/*
 * The next FERRY_* variable from *envp on that is no key (FERRY_CONFIG
 * aside), its name's length in *len; NULL at the end.  check-config
 * notes each, serve warns: a typo there would otherwise change nothing
 * without a word.  The whole name before '=' must match: its length,
 * then its bytes.
 */
const char *
config_env_stray(char *const **envp, size_t *len)
{
	char var[CONFIG_VAR_MAX];
	size_t i, plen = strlen(CONFIG_ENV_PREFIX);
	const char *e, *eq;

	for (; *envp != NULL && (e = **envp) != NULL; (*envp)++) {
		if ((eq = strchr(e, '=')) == NULL || (size_t)(eq - e) < plen ||
		    memcmp(e, CONFIG_ENV_PREFIX, plen) != 0 ||
		    ((size_t)(eq - e) == strlen(CONFIG_ENV_PATH) &&
		    memcmp(e, CONFIG_ENV_PATH, (size_t)(eq - e)) == 0))
			continue;
		for (i = 0; i < NKEYS; i++) {
			env_name(var, key_name(&keys[i]));
			if (strlen(var) == (size_t)(eq - e) &&
			    memcmp(var, e, (size_t)(eq - e)) == 0)
				break;
		}
		if (i == NKEYS) {
			*len = (size_t)(eq - e);
			(*envp)++;
			return e;
		}
	}
	return NULL;
}

int
config_net_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	uint8_t a[16];
	int i, family;

	if (l == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)sa;
		memcpy(a, &sin->sin_addr, 4);
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(a, &sin6->sin6_addr, 16);
		family = AF_INET6;
	} else
		return 0;
	for (;;) {
		for (i = 0; i < l->n && i < CONFIG_MAX_NETS; i++)
			if (cidr_contains(&l->c[i], family, a))
				return 1;
		/* A dual-stack socket shows an IPv4 client as
		 * ::ffff:a.b.c.d; the admin wrote 127.0.0.0/8 and means
		 * that client too: once more as IPv4. */
		if (family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(
		    (const struct in6_addr *)(const void *)a))
			return 0;
		memmove(a, a + 12, 4);
		family = AF_INET;
	}
}

int
config_domain_match(const struct domain_list *l, const char *domain)
{
	size_t n, dn;
	int i;
	const char *d;

	if (l == NULL || domain == NULL)
		return 0;
	n = strlen(domain);
	if (n > 0 && domain[n - 1] == '.')	/* the root is implied */
		n--;
	if (n == 0)
		return 0;
	for (i = 0; i < l->n && i < CONFIG_MAX_DOMAINS; i++) {
		d = config_domain(l, i);
		dn = strlen(d);
		if (d[0] == '.') {
			/* ".x.org": a.x.org and a.b.x.org, never x.org */
			if (n > dn && strncasecmp(domain + n - dn, d, dn) == 0)
				return 1;
		} else if (n == dn && strncasecmp(domain, d, n) == 0)
			return 1;
	}
	return 0;
}

const char *
config_domain(const struct domain_list *l, int i)
{
	return l->text + l->off[i];
}

int
config_parse_duration(const char *s, unsigned *seconds)
{
	uint64_t v;

	if (unit_parse(s, duration_units, UINT_MAX, &v) != 0)
		return -1;
	*seconds = (unsigned)v;
	return 0;
}

int
config_parse_size(const char *s, uint64_t *bytes)
{
	return unit_parse(s, size_units, UINT64_MAX, bytes);
}

const char *
config_tls_level_name(enum tls_level l)
{
	if ((unsigned)l >= NLEVELS)
		return "unknown";
	return textfile_nth(level_names, (size_t)l);
}

/*
 * Writes "FILE:LINE: KEY: message" (LINE and KEY left out when they do not
 * apply) and returns -1, so callers can "return p_err(...)".  A NULL p is
 * config_defaults() parsing its own table: no message, just the failure.
 * A line naming no known key puts what it names into the message.
 */
static int
p_err(struct parser *p, const struct key *k, const char *fmt, ...)
{
	const char *key = k != NULL ? key_name(k) : NULL;
	va_list ap;
	size_t n;
	int r;

	if (p == NULL || p->err == NULL || p->errsz == 0)
		return -1;
	if (p->var[0] != '\0') {
		/* The variable names the key: no file, line or key. */
		r = snprintf(p->err, p->errsz, "%s: ", p->var);
		key = NULL;
	} else if (p->line > 0)
		r = snprintf(p->err, p->errsz, "%s:%zu: ", p->name, p->line);
	else
		r = snprintf(p->err, p->errsz, "%s: ", p->name);
	n = r < 0 ? 0 : (size_t)r;
	if (n < p->errsz && key != NULL) {
		r = snprintf(p->err + n, p->errsz - n, "%s: ", key);
		n += r < 0 ? 0 : (size_t)r;
	}
	if (n < p->errsz) {
		va_start(ap, fmt);
		(void)vsnprintf(p->err + n, p->errsz - n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * p_err() for the common shape: fmt's first conversion is %s, the n bytes
 * at s quoted; up to two %llu may follow, 1 and max (a key's range).
 * One copy of the quoting here instead of one per message.
 */
static int
p_bad(struct parser *p, const struct key *k, const char *fmt, const char *s,
    size_t n, uint64_t max)
{
	char q[CONFIG_QUOTE_SIZE];

	return p_err(p, k, fmt, quote(q, s, n), 1ULL, (unsigned long long)max);
}

/*
 * Untrusted bytes for an error message: in double quotes, non-printables
 * as \xNN, at most CONFIG_SHOW_MAX bytes then "...".  buf must hold
 * CONFIG_QUOTE_SIZE.
 */
static const char *
quote(char *buf, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;
	unsigned char c;

	buf[o++] = '"';
	for (i = 0; i < n && i < CONFIG_SHOW_MAX; i++) {
		c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 0xf];
		} else
			buf[o++] = (char)c;
	}
	if (n > CONFIG_SHOW_MAX) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static const char *
key_name(const struct key *k)
{
	return textfile_nth(key_names, (size_t)(k - keys));
}

/* A word key's words in value order (enum tls_level; no, yes; log). */
static const char *
key_words(const struct key *k)
{
	return k->type == KT_TLS ? level_names : k->type == KT_BOOL ?
	    "no\0yes" : "syslog\0stderr";
}

/* A number key's units; a count has none (the empty end of size_units). */
static const struct unit *
key_units(const struct key *k)
{
	return k->type == KT_SIZE ? size_units : k->type == KT_DURATION ?
	    duration_units : &size_units[NUNITS(size_units) - 1];
}

/* " = value" into b: " =", then the key type's printer adds the value;
 * the caller adds the name. */
static void
key_put(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	memcpy(b->s, " =", 3);
	b->len = 2;
	key_print[k->type](k, cfg, b);
}

/* CONFIG_PRINT_MAX holds any value: a cut cannot happen. */
static void
pb_add(struct pbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->s + b->len, sizeof(b->s) - b->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->len += (size_t)n;
	if (b->len >= sizeof(b->s))
		b->len = sizeof(b->s) - 1;
}

static const struct key *
key_find(const char *name, size_t n)
{
	const char *s = key_names;
	size_t i;

	for (i = 0; i < NKEYS; i++, s += strlen(s) + 1)
		if (strlen(s) == n && memcmp(s, name, n) == 0)
			return &keys[i];
	return NULL;
}

/*
 * One line, without its '\n'.  Comments start at a '#' that begins the
 * line or the value, or follows a blank, so "/etc/a#b" stays a path while
 * "may  # for now" is "may".  A CR before the newline is dropped (a file
 * edited on Windows); any other control character is an error, never
 * passed on into a path or a name.
 */
static int
parse_line(struct parser *p, struct config *cfg, const char *s, size_t n)
{
	char q[CONFIG_QUOTE_SIZE], kname[CONFIG_QUOTE_SIZE];
	char value[CONFIG_LINE_MAX], var[CONFIG_VAR_MAX];
	const struct key *k;
	size_t i = 0, ks, kn, vs, ve, raw = n;

	if (n > 0 && s[n - 1] == '\r')
		n--;
	while (i < n && is_blank(s[i]))
		i++;
	ks = i;
	while (i < n && !is_blank(s[i]) && s[i] != '=' && s[i] != '#')
		i++;
	kn = i - ks;
	/*
	 * The key as messages start with it: "KEY: ", the quoted form with
	 * its closing quote made ": " (the opening one is skipped), or ""
	 * when there is none, so one format serves both.
	 */
	quote(kname, s + ks, kn);
	memcpy(kname + strlen(kname) - 1, ": ", 3);
	if (kn == 0)
		kname[1] = '\0';

	if (raw >= CONFIG_LINE_MAX)
		return p_err(p, NULL, "%sline longer than %d characters",
		    kname + 1, CONFIG_LINE_MAX - 1);
	if (kn == 0 && (i == n || s[i] == '#'))
		return 0;			/* blank or comment */

	while (i < n && is_blank(s[i]))
		i++;
	if (kn == 0 || i == n || s[i] != '=')
		return p_err(p, NULL, "%sexpected \"key = value\"",
		    kname + 1);
	i++;
	while (i < n && is_blank(s[i]))
		i++;
	vs = i;
	for (ve = vs; ve < n; ve++)
		if (s[ve] == '#' && (ve == vs || is_blank(s[ve - 1])))
			break;
	while (ve > vs && is_blank(s[ve - 1]))
		ve--;
	if (has_ctl(s + vs, ve - vs))
		return p_err(p, NULL, "%scontrol character in value %s",
		    kname + 1, quote(q, s + vs, ve - vs));
	if ((k = key_find(s + ks, kn)) == NULL)
		return p_err(p, NULL, "%sunknown key", kname + 1);
	/* Its variable wins: the file counts only for keys whose variable
	 * is unset (relay.conf.5), so a template's "hostname =" is no
	 * error under FERRY_HOSTNAME. */
	env_name(var, key_name(k));
	if (p->envp != NULL && config_env_find(p->envp, var) != NULL)
		return 0;
	memcpy(value, s + vs, ve - vs);
	value[ve - vs] = '\0';
	if (key_parse[k->type](p, k, cfg, value) != 0)
		return -1;
	p->keyline[k - keys] = p->line;
	return 0;
}

/* Rules that involve more than one key, or no line at all. */
static int
check_whole(struct parser *p, struct config *cfg)
{
	static const unsigned char pairs[][2] = {
		{ KI_tls_cert, KI_tls_key },
		{ KI_client_cert, KI_client_key },
	};
	size_t rmin = KI_retry_min, rmax = KI_retry_max;
	size_t i, a, b;
	char *fa, *fb, why[CONFIG_ERR_MAX];

	/* Blame whichever of the two the file set last. */
	/* The environment counts as set after every line (it wins). */
	if (cfg->retry_min > cfg->retry_max) {
		i = p->keyline[rmin] > p->keyline[rmax] ? rmin : rmax;
		blame(p, i);
		return p_err(p, &keys[i], i == rmin ? "%us is longer than "
		    "retry_max (%us)" : "%us is shorter than retry_min (%us)",
		    i == rmin ? cfg->retry_min : cfg->retry_max,
		    i == rmin ? cfg->retry_max : cfg->retry_min);
	}
	if (listen_overlap(p, cfg) != 0)
		return -1;
	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		a = pairs[i][0];
		b = pairs[i][1];
		fa = field(cfg, &keys[a]);
		fb = field(cfg, &keys[b]);
		if ((fa[0] == '\0') == (fb[0] == '\0'))
			continue;
		blame(p, fa[0] != '\0' ? a : b);
		return p_err(p, &keys[fa[0] != '\0' ? a : b],
		    "set without %s (give both, or the same file twice if "
		    "it holds both)", fa[0] != '\0' ? key_name(&keys[b]) :
		    key_name(&keys[a]));
	}
	/* Here, not at bind: check-config and SIGHUP refuse it too (after
	 * a reload port 465 would reset every client).  inbound_tls =
	 * encrypt without a certificate: port 25 would ask for a STARTTLS
	 * it cannot offer and refuse every MAIL (Postfix refuses it too);
	 * listen_submission without one is only warned about at start,
	 * since the default listens on 587 with no certificate. */
	if (cfg->listen_smtps.n > 0 && cfg->tls_cert[0] == '\0') {
		blame(p, KI_listen_smtps);
		return p_err(p, &keys[KI_listen_smtps], "needs tls_cert and "
		    "tls_key");
	}
	if (cfg->inbound_tls == TLS_ENCRYPT && cfg->tls_cert[0] == '\0') {
		blame(p, KI_inbound_tls);
		return p_err(p, &keys[KI_inbound_tls], "encrypt needs "
		    "tls_cert and tls_key");
	}
	/* tls.c's own check, so the start, a SIGHUP and check-config all
	 * refuse a list the TLS set-up would refuse. */
	if (tls_ciphers_check(cfg->tls_ciphers, why, sizeof(why)) == -1) {
		blame(p, KI_tls_ciphers);
		return p_err(p, &keys[KI_tls_ciphers], "%s", why);
	}
	p->line = 0;
	p->var[0] = '\0';
	if (cfg->hostname[0] == '\0')
		return p_err(p, &keys[KI_hostname], "gethostname() "
		    "gave no usable name; set hostname");
	if (p->keyline[KI_origin] == 0)
		memcpy(cfg->origin, cfg->hostname, sizeof(cfg->origin));
	return 0;
}

/* Point messages at where keys[i] was set: its line, or its variable. */
static void
blame(struct parser *p, size_t i)
{
	p->var[0] = '\0';
	p->line = 0;
	if (p->keyline[i] == CONFIG_FROM_ENV)
		env_name(p->var, key_name(&keys[i]));
	else
		p->line = p->keyline[i];
}

/*
 * FERRY_<KEY> over what the file said, in keys[] order.  The value is
 * taken as written (no '#' comments: a path may hold one), blanks around
 * it trimmed; the checks parse_line() makes on a line's bytes apply, so a
 * newline in a variable can never smuggle in a second key.
 */
static int
env_apply(struct parser *p, struct config *cfg, char *const *envp)
{
	char q[CONFIG_QUOTE_SIZE], value[CONFIG_LINE_MAX];
	const char *v;
	size_t i, n;

	for (i = 0; i < NKEYS; i++) {
		env_name(p->var, key_name(&keys[i]));
		if ((v = config_env_find(envp, p->var)) == NULL)
			continue;
		while (is_blank(*v))
			v++;
		n = strlen(v);
		while (n > 0 && is_blank(v[n - 1]))
			n--;
		if (n >= sizeof(value))
			return p_err(p, NULL, "longer than %zu characters",
			    sizeof(value) - 1);
		if (has_ctl(v, n))
			return p_err(p, NULL, "control character in value %s",
			    quote(q, v, n));
		memcpy(value, v, n);
		value[n] = '\0';
		if (key_parse[keys[i].type](p, &keys[i], cfg, value) != 0)
			return -1;
		p->keyline[i] = CONFIG_FROM_ENV;
	}
	p->var[0] = '\0';
	return 0;
}

/* "FERRY_" and the key in upper case; keys are short ASCII.  buf holds
 * CONFIG_VAR_MAX: every key fits (KEY_VAR_FITS). */
static void
env_name(char *buf, const char *key)
{
	size_t o = strlen(CONFIG_ENV_PREFIX), i;

	memcpy(buf, CONFIG_ENV_PREFIX, o);
	for (i = 0; key[i] != '\0'; i++)
		buf[o++] = (key[i] >= 'a' && key[i] <= 'z') ?
		    (char)(key[i] - 'a' + 'A') : key[i];
	buf[o] = '\0';
}

/* The value of NAME in envp, as getenv() would find it (the first). */
const char *
config_env_find(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	const char *eq;

	/* name holds no '=': it matches up to the first one, whole. */
	for (; *envp != NULL; envp++)
		if ((eq = strchr(*envp, '=')) != NULL &&
		    (size_t)(eq - *envp) == n && memcmp(*envp, name, n) == 0)
			return eq + 1;
	return NULL;
}

static void
src_text(char *buf, size_t bufsz, const struct config *cfg,
    const struct config_src *src, size_t i)
{
	char var[CONFIG_VAR_MAX];
	size_t line = src != NULL ? src->line[i] : 0;

	if (line == CONFIG_FROM_ENV) {
		env_name(var, key_name(&keys[i]));
		snprintf(buf, bufsz, "env %s", var);
	} else if (line > 0)
		snprintf(buf, bufsz, "%s:%zu", cfg->path, line);
	else if (i == KI_hostname)
		snprintf(buf, bufsz, "default (gethostname)");
	else if (i == KI_origin)
		snprintf(buf, bufsz, "default (hostname)");
	else
		snprintf(buf, bufsz, "default");
}

/*
 * gethostname() lower-cased, or "" when it fails or gives something that
 * is not a host name: check_whole() then asks for an explicit hostname.
 */
static void
default_hostname(char *out, size_t outsz)
{
	char buf[CONFIG_NAME_MAX + 2];
	size_t n;

	out[0] = '\0';
	memset(buf, 0, sizeof(buf));
	if (gethostname(buf, sizeof(buf) - 1) != 0)
		return;
	n = strlen(buf);
	if (n == 0 || n >= outsz || !name_valid(buf, n))
		return;
	lower_copy(out, outsz, buf, n);
}

/* A byte no value may hold (a tab is a blank, not a control). */
static int
has_ctl(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') ||
		    s[i] == 0x7f)
			return 1;
	return 0;
}

static int
is_blank(int c)
{
	return c == ' ' || c == '\t';
}

static int
is_sep(int c)
{
	return c == ' ' || c == '\t' || c == ',';
}

/* Next list element of *cur ("a, b c"), its length, or 0 at the end. */
static size_t
list_next(const char **cur, const char **tok)
{
	const char *s = *cur;
	size_t n = 0;

	while (*s != '\0' && is_sep((unsigned char)*s))
		s++;
	*tok = s;
	while (s[n] != '\0' && !is_sep((unsigned char)s[n]))
		n++;
	*cur = s + n;
	return n;
}

static void *
field(struct config *cfg, const struct key *k)
{
	return (char *)cfg + k->off;
}

static const void *
cfield(const struct config *cfg, const struct key *k)
{
	return (const char *)cfg + k->off;
}

/*
 * Host-name shape: dot-separated labels of letters, digits, '-' and '_'
 * (underscore because real hostnames have it), 1..63 each, none
 * starting or ending with '-' (RFC 5321 §4.1.2 sub-domain), 253 in all
 * (255 octets on the wire, RFC 1035 §2.3.4).  No IDN handling: an
 * A-label is already ASCII.
 */
static int
name_valid(const char *s, size_t n)
{
	size_t i, label = 0;
	unsigned char c;

	if (n == 0 || n >= CONFIG_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!addr_letdig(c) && c != '-' && c != '_')
			return 0;
		if (c == '-' && (label == 0 || i + 1 == n || s[i + 1] == '.'))
			return 0;
		if (++label > CONFIG_LABEL_MAX)
			return 0;
	}
	return label > 0;
}

/* n < outsz is the caller's check; the rest of out is zeroed. */
static void
lower_copy(char *out, size_t outsz, const char *s, size_t n)
{
	size_t i;

	memset(out, 0, outsz);
	for (i = 0; i < n && i < outsz - 1; i++)
		out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) :
		    s[i];
}

/* 1..65535 in decimal digits only (config.h). */
int
config_parse_port(const char *s, size_t n, unsigned *port)
{
	uint64_t v;

	if (number_parse(s, n, &v) != 0 || v < 1 || v > CONFIG_PORT_MAX)
		return -1;
	*port = (unsigned)v;
	return 0;
}

/* Decimal digits only: no sign, no blanks, no 0x; overflow is an error. */
static int
number_parse(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	unsigned d;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/*
 * A number with an optional suffix out of the list u, no more than max
 * once scaled: durations and sizes in one copy.
 */
static int
unit_parse(const char *s, const struct unit *u, uint64_t max, uint64_t *out)
{
	uint64_t v, scale = 1;
	size_t n;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n > 0 && (s[n - 1] < '0' || s[n - 1] > '9')) {
		while (u->suffix != '\0' && u->suffix != s[n - 1])
			u++;
		if (u->suffix == '\0')
			return -1;
		scale = u->scale;
		n--;
	}
	if (number_parse(s, n, &v) != 0 || v > max / scale)
		return -1;
	*out = v * scale;
	return 0;
}

/* The shape listeners, DNS servers, the smarthost and `ferry check`
 * share (config.h). */
int
config_host_split(const char *t, size_t n, const char **h, size_t *hn,
    unsigned *port)
{
	const char *end = t + n, *c, *rb;
	int br = n > 0 && t[0] == '[';

	*port = 0;
	*h = t + br;
	if (br) {
		if ((rb = memchr(t, ']', n)) == NULL)
			return -1;
		*hn = (size_t)(rb - t) - 1;
		c = rb + 1 < end ? rb + 1 : NULL;
		if (c != NULL && *c != ':')
			return -1;		/* "[::1]x" */
	} else {
		c = memchr(t, ':', n);
		if (c != NULL && memchr(c + 1, ':', (size_t)(end - c) - 1) !=
		    NULL)
			c = NULL;
		*hn = c != NULL ? (size_t)(c - t) : n;
	}
	if (c != NULL && config_parse_port(c + 1, (size_t)(end - c) - 1,
	    port) != 0)
		return -1;
	return br;
}

/* h[0..hn) into host (INET6_ADDRSTRLEN), or -1 if empty or too long. */
static int
host_copy(char *host, const char *h, size_t hn)
{
	if (hn == 0 || hn >= INET6_ADDRSTRLEN)
		return -1;
	memcpy(host, h, hn);
	host[hn] = '\0';
	return 0;
}

/* "192.0.2.1:25", "[2001:db8::1]:25", "*:25" (any IPv4). */
static int
listen_token(const char *t, size_t n, struct listen_addr *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&out->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&out->ss;
	char host[INET6_ADDRSTRLEN];
	const char *h;
	size_t hn;
	unsigned port;
	int v6;

	memset(out, 0, sizeof(*out));
	if ((v6 = config_host_split(t, n, &h, &hn, &port)) < 0 || port == 0 ||
	    host_copy(host, h, hn) != 0)
		return -1;
	/* "*": the memset left INADDR_ANY. */
	if ((v6 || strcmp(host, "*") != 0) && inet_pton(v6 ? AF_INET6 :
	    AF_INET, host, v6 ? (void *)&sin6->sin6_addr :
	    (void *)&sin->sin_addr) != 1)
		return -1;
	/* An IPv6 listener is IPV6_V6ONLY (main.c): bind() refuses a
	 * v4-mapped address there, and only at start. */
	if (v6 && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return -1;
	/* The family and the port are at the same place in both. */
	sin->sin_family = v6 ? AF_INET6 : AF_INET;
	sin->sin_port = htons((uint16_t)port);
	out->len = v6 ? sizeof(*sin6) : sizeof(*sin);
	return 0;
}

/*
 * Two listeners, in any of the three keys, where one address covers the
 * other on one port (the same address, or its family's wildcard): the
 * second bind() fails with EADDRINUSE, at start, after check-config
 * said the file was fine.  Blamed on the key set last.  The three lists
 * side by side (config.h): x runs over all their slots.
 */
static int
listen_overlap(struct parser *p, struct config *cfg)
{
	static const uint8_t any[16];
	const struct listen_list *l = field(cfg, &keys[KI_listen_smtp]);
	const char *s[2];
	size_t x, y, k[2], n, off, i;

	for (x = 0; x < 3 * CONFIG_MAX_LISTEN; x++)
		for (y = x + 1; y < 3 * CONFIG_MAX_LISTEN; y++) {
			k[0] = x / CONFIG_MAX_LISTEN;
			k[1] = y / CONFIG_MAX_LISTEN;
			if ((int)(x % CONFIG_MAX_LISTEN) >= l[k[0]].n ||
			    (int)(y % CONFIG_MAX_LISTEN) >= l[k[1]].n)
				continue;
			s[0] = (const char *)&l[k[0]].a[x % CONFIG_MAX_LISTEN].ss;
			s[1] = (const char *)&l[k[1]].a[y % CONFIG_MAX_LISTEN].ss;
			/* The family, then the port: at the same place in
			 * sockaddr_in and sockaddr_in6. */
			if (memcmp(s[0], s[1], offsetof(struct sockaddr_in,
			    sin_addr)) != 0)
				continue;
			n = ((const struct sockaddr *)(const void *)s[0])->
			    sa_family == AF_INET6 ? 16 : 4;
			off = n == 16 ? offsetof(struct sockaddr_in6,
			    sin6_addr) : offsetof(struct sockaddr_in, sin_addr);
			for (i = 0; i < 2; i++)
				if (memcmp(s[i] + off, any, n) == 0)
					break;
			if (i == 2 && memcmp(s[0] + off, s[1] + off, n) != 0)
				continue;
			i = p->keyline[KI_listen_smtp + k[1]] >=
			    p->keyline[KI_listen_smtp + k[0]];
			blame(p, KI_listen_smtp + k[i]);
			return p_err(p, &keys[KI_listen_smtp + k[i]], "port %u "
			    "bound twice (with %s)", ntohs(((const struct
			    sockaddr_in *)(const void *)s[0])->sin_port),
			    key_name(&keys[KI_listen_smtp + k[!i]]));
		}
	return 0;
}

/* "10.0.0.0/8", "2001:db8::/32", "[2001:db8::]/32", or a bare address. */
static int
cidr_token(const char *t, size_t n, struct cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *a = t, *slash;
	size_t an, i;
	uint64_t bits;
	int maxbits, keep;

	memset(out, 0, sizeof(*out));
	slash = memchr(t, '/', n);
	an = slash != NULL ? (size_t)(slash - t) : n;
	if (an >= 2 && a[0] == '[' && a[an - 1] == ']') {
		a++;
		an -= 2;
		if (memchr(a, ':', an) == NULL)
			return -1;	/* brackets are for IPv6 */
	}
	if (host_copy(host, a, an) != 0)
		return -1;
	if (memchr(host, ':', an) != NULL) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		out->family = AF_INET;
		maxbits = 32;
	}
	if (inet_pton(out->family, host, out->addr) != 1)
		return -1;
	bits = (uint64_t)maxbits;
	if (slash != NULL && (number_parse(slash + 1,
	    n - (size_t)(slash - t) - 1, &bits) != 0 ||
	    bits > (uint64_t)maxbits))
		return -1;
	/* "::ffff:10.0.0.0/104" is 10.0.0.0/8: IPv4 clients arrive as
	 * AF_INET (the IPv6 listeners are IPV6_V6ONLY), and an IPv6 entry
	 * would never match one. */
	if (maxbits == 128 && bits >= 96 &&
	    IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)out->addr)) {
		out->family = AF_INET;
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		bits -= 96;
	}
	out->bits = (int)bits;
	/* Clear the host bits so "10.1.2.3/8" means what it says: byte i
	 * keeps its first bits - 8i of 8 (past an IPv4 address, zeros). */
	for (i = 0; i < sizeof(out->addr); i++) {
		keep = out->bits - (int)(i * 8);
		keep = keep < 0 ? 0 : keep > 8 ? 8 : keep;
		out->addr[i] &= (uint8_t)~(0xffu >> keep);
	}
	return 0;
}

/*
 * "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353", stored in the
 * canonical text c-ares' ares_set_servers_ports_csv() takes.
 */
static int
dns_token(const char *t, size_t n, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN];
	uint8_t bin[16];
	const char *h;
	size_t hn;
	unsigned pv;
	int br, family;

	if ((br = config_host_split(t, n, &h, &hn, &pv)) < 0 ||
	    host_copy(host, h, hn) != 0)
		return -1;
	family = br || memchr(h, ':', hn) != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(family, host, bin) != 1 ||
	    inet_ntop(family, bin, host, sizeof(host)) == NULL)
		return -1;
	memset(out, 0, outsz);
	if (pv == 0)
		textfile_copy(out, outsz, host);
	else if (family == AF_INET6)
		snprintf(out, outsz, "[%s]:%u", host, pv);
	else
		snprintf(out, outsz, "%s:%u", host, pv);
	return 0;
}

/* "[host]:port", "[host]", "host:port" or "host"; host may be an IP. */
static int
smarthost_valid(const char *s, size_t n)
{
	char host[INET6_ADDRSTRLEN];
	uint8_t bin[16];
	const char *h;
	size_t hn;
	unsigned port;
	int br;

	if ((br = config_host_split(s, n, &h, &hn, &port)) < 0)
		return 0;
	if (name_valid(h, hn))
		return 1;
	return br && host_copy(host, h, hn) == 0 &&
	    inet_pton(AF_INET6, host, bin) == 1;
}

/* " 192.0.2.1:25" or " [2001:db8::1]:25" onto b. */
static void
listen_format(const struct listen_addr *a, struct pbuf *b)
{
	const struct sockaddr_in *sin;
	char host[INET6_ADDRSTRLEN];

	sin = (const struct sockaddr_in *)(const void *)&a->ss;
	/* The port is at the same place in both. */
	net_ntop(&a->ss, host);
	pb_add(b, a->ss.ss_family == AF_INET6 ? " [%s]:%u" : " %s:%u", host,
	    ntohs(sin->sin_port));
}

static int
cidr_contains(const struct cidr *c, int family, const uint8_t *a)
{
	int full, rest;

	if (c->family != family)
		return 0;
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(c->addr, a, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* --- one parser per key type; value is trimmed and NUL-terminated --- */

static int
set_name(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	size_t n = strlen(v);

	if (n == 0)
		return p_err(p, k, "empty; a host name is required");
	if (n >= k->size)
		return p_err(p, k, "longer than %zu characters",
		    (size_t)k->size - 1);
	if (!name_valid(v, n))
		return p_bad(p, k, "bad host name %s", v, n, 0);
	lower_copy(field(cfg, k), k->size, v, n);
	return 0;
}

/*
 * listen_*, relay_networks, dns_servers: up to a maximum of tokens.  Each
 * key keeps the order of its checks: a listener's token is judged first
 * (bad, then one too many; an address given twice is listen_overlap()'s,
 * across the three keys), a network's or a server's count first.  The
 * list is built apart and stored whole, zeros after the last item, so an
 * error leaves the key as it was.
 */
static int
set_list(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	union {
		struct listen_list l;
		struct cidr_list c;
		char d[CONFIG_MAX_DNS][sizeof(cfg->dns_servers[0])];
	} u;
	union {
		struct listen_addr a;
		struct cidr c;
		char d[sizeof(cfg->dns_servers[0])];
	} e;
	const char *tok, *bad, *many;
	char *items;
	size_t n, size;
	int *np, count = 0, max, rc;

	memset(&u, 0, sizeof(u));
	if (k->type == KT_LISTEN) {
		np = &u.l.n;
		items = (char *)u.l.a;
		size = sizeof(u.l.a[0]);
		max = CONFIG_MAX_LISTEN;
		bad = "bad address %s (want IPv4:port, [IPv6]:port or *:port)";
		many = "more than %d addresses";
	} else if (k->type == KT_NETS) {
		np = &u.c.n;
		items = (char *)u.c.c;
		size = sizeof(u.c.c[0]);
		max = CONFIG_MAX_NETS;
		bad = "bad network %s (want address/bits)";
		many = "more than %d networks";
	} else {
		np = &cfg->dns_n;	/* set only once the list is good */
		items = u.d[0];
		size = sizeof(u.d[0]);
		max = CONFIG_MAX_DNS;
		bad = "bad server %s (want ip, ip:port or [ipv6]:port)";
		many = "more than %d servers";
	}
	while ((n = list_next(&v, &tok)) > 0) {
		rc = k->type == KT_LISTEN ? listen_token(tok, n, &e.a) :
		    k->type == KT_NETS ? cidr_token(tok, n, &e.c) :
		    dns_token(tok, n, e.d, sizeof(e.d));
		if (count == max && k->type != KT_LISTEN)
			return p_err(p, k, many, max);
		if (rc != 0)
			return p_bad(p, k, bad, tok, n, 0);
		if (count == max)
			return p_err(p, k, many, max);
		memcpy(items + (size_t)count++ * size, &e, size);
	}
	*np = count;
	memcpy(field(cfg, k), &u, k->size);
	return 0;
}


static int
set_path(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	size_t n = strlen(v);
	char *f = field(cfg, k);

	if (n >= k->size)
		return p_err(p, k, "longer than %zu characters",
		    (size_t)k->size - 1);
	memset(f, 0, k->size);
	memcpy(f, v, n);
	return 0;
}

static int
set_dir(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	if (v[0] == '\0')
		return p_err(p, k, "empty; a directory is required");
	return set_path(p, k, cfg, v);
}

/*
 * KT_TLS, KT_BOOL and KT_LOG: one word of key_words(k) (any case), stored
 * as its index; a TLS key allows only the levels in k->levels.
 */
static int
set_word(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	char q[CONFIG_QUOTE_SIZE], allowed[128];
	const char *w = key_words(k);
	unsigned mask = k->type == KT_TLS ? k->levels : LEVEL(0) | LEVEL(1);
	size_t i, o = 0;
	int r;

	allowed[0] = '\0';
	for (i = 0; mask >> i != 0; i++, w += strlen(w) + 1) {
		if (!(mask & LEVEL(i)))
			continue;
		if (addr_casecmp(v, w) == 0) {
			*(int *)field(cfg, k) = (int)i;
			return 0;
		}
		r = snprintf(allowed + o, sizeof(allowed) - o, "%s%s",
		    o > 0 ? ", " : "", w);
		if (r > 0 && (size_t)r < sizeof(allowed) - o)
			o += (size_t)r;
	}
	quote(q, v, strlen(v));
	if (k->type == KT_TLS)
		return p_err(p, k, "bad level %s (want %s)", q, allowed);
	return p_err(p, k, "bad value %s (want %s)", q,
	    k->type == KT_BOOL ? "yes or no" : "syslog or stderr");
}


static int
set_domains(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	struct domain_list *l;
	const char *tok;
	size_t n, skip, used = 0;

	/* Built in place (no second copy on the stack): on an error the
	 * whole parse fails anyway. */
	l = field(cfg, k);
	memset(l, 0, sizeof(*l));
	while ((n = list_next(&v, &tok)) > 0) {
		/* A line's names always fit in text (config.h): each takes
		 * no more than its bytes and the separator after it.  The
		 * second test only keeps that true if the line ever grows. */
		if (l->n == CONFIG_MAX_DOMAINS || n + 1 > sizeof(l->text) - used)
			return p_err(p, k, "more than %d domains",
			    CONFIG_MAX_DOMAINS);
		skip = tok[0] == '.' ? 1 : 0;
		if (n > skip + 1 && tok[n - 1] == '.')
			n--;		/* "example.org." */
		if (n > CONFIG_NAME_MAX || !name_valid(tok + skip, n - skip))
			return p_bad(p, k, "bad domain %s", tok, n, 0);
		l->off[l->n++] = (uint16_t)used;
		lower_copy(l->text + used, n + 1, tok, n);
		used += n + 1;
	}
	return 0;
}

/*
 * KT_SIZE, KT_COUNT and KT_DURATION: a number, with a unit of
 * key_units(k), within 1 (or 0 with KR_UINT_OFF) and key_max[k->range].
 * A duration over UINT_MAX seconds is no duration at all.
 */
static int
set_number(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	uint64_t x, max = key_max[k->range];
	size_t n = strlen(v);

	if (unit_parse(v, key_units(k), k->type == KT_DURATION ? UINT_MAX :
	    UINT64_MAX, &x) != 0)
		return p_bad(p, k, k->type == KT_SIZE ? "bad size %s" :
		    k->type == KT_COUNT ? "bad number %s" : "bad duration %s "
		    "(want a number with s, m, h or d)", v, n, 0);
	if ((x < 1 && k->range != KR_UINT_OFF) || x > max)
		return p_bad(p, k, k->type == KT_SIZE ? "%s out of range "
		    "(%llu..%llu bytes)" : k->type == KT_COUNT ? "%s out of "
		    "range (%llu..%llu)" : "%s out of range (at least %llus)",
		    v, n, max);
	if (k->type == KT_SIZE)
		*(uint64_t *)field(cfg, k) = x;
	else
		*(unsigned *)field(cfg, k) = (unsigned)x;
	return 0;
}

static int
set_smarthost(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	size_t n = strlen(v);

	if (n >= k->size)
		return p_err(p, k, "longer than %zu characters",
		    (size_t)k->size - 1);
	if (n > 0 && !smarthost_valid(v, n))
		return p_bad(p, k, "bad host %s (want [host]:port, "
		    "host:port or host)", v, n, 0);
	return set_path(p, k, cfg, v);
}


static int
set_user(struct parser *p, const struct key *k, struct config *cfg,
    const char *v)
{
	size_t i, n = strlen(v);

	if (n == 0 || n >= k->size || v[0] == '-')
		return p_bad(p, k, "bad user name %s", v, n, 0);
	for (i = 0; i < n; i++)
		if (!addr_letdig(v[i]) && v[i] != '_' && v[i] != '-' &&
		    v[i] != '.')
			return p_bad(p, k, "bad user name %s", v, n, 0);
	return set_path(p, k, cfg, v);
}

/* --- one printer per key type, after the name and " =": " value" --- */

static void
put_string(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	const char *s = cfield(cfg, k);

	if (s[0] != '\0')
		pb_add(b, " %s", s);
}

static void
put_listen(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	const struct listen_list *l = cfield(cfg, k);
	int i;

	for (i = 0; i < l->n && i < CONFIG_MAX_LISTEN; i++)
		listen_format(&l->a[i], b);
}

static void
put_word(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	pb_add(b, " %s", textfile_nth(key_words(k),
	    (size_t)*(const int *)cfield(cfg, k)));
}

static void
put_nets(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	const struct cidr_list *l = cfield(cfg, k);
	char host[INET6_ADDRSTRLEN];
	int i;

	for (i = 0; i < l->n && i < CONFIG_MAX_NETS; i++) {
		if (inet_ntop(l->c[i].family, l->c[i].addr, host,
		    sizeof(host)) == NULL)
			host[0] = '\0';
		pb_add(b, " %s/%d", host, l->c[i].bits);
	}
}

/*
 * 64 domains of 254 characters do not fit in one line, but a list that
 * was read from one line does: each name prints no longer than it was
 * written.  Only the " = " could push a line at the limit over it, so such
 * a line is written as "key=value".
 */
static void
put_domains(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	const struct domain_list *l = cfield(cfg, k);
	size_t total = strlen(key_name(k)) + 2;
	int i;

	for (i = 0; i < l->n && i < CONFIG_MAX_DOMAINS; i++)
		total += strlen(config_domain(l, i)) + 1;
	if (total >= CONFIG_LINE_MAX) {
		memcpy(b->s, "=", 2);	/* instead of key_put()'s " =" */
		b->len = 1;
	}
	for (i = 0; i < l->n && i < CONFIG_MAX_DOMAINS; i++)
		pb_add(b, "%s%s", i > 0 || total < CONFIG_LINE_MAX ? " " :
		    "", config_domain(l, i));
}

/*
 * Numbers with the largest unit that divides them evenly.  A size of 0
 * cannot be set (its minimum is 1), so it has no unit; a duration of 0 is
 * "0s".
 */
static void
put_number(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	const struct unit *u = key_units(k);
	uint64_t v = k->type == KT_SIZE ? *(const uint64_t *)cfield(cfg, k) :
	    *(const unsigned *)cfield(cfg, k);

	for (; u->suffix != '\0'; u++)
		if (v % u->scale == 0 && (v != 0 || u->scale == 1)) {
			pb_add(b, " %llu%c", (unsigned long long)(v /
			    u->scale), u->suffix);
			return;
		}
	pb_add(b, " %llu", (unsigned long long)v);
}

static void
put_dns(const struct key *k, const struct config *cfg, struct pbuf *b)
{
	int i;

	(void)k;	/* key_put() printed the name */
	for (i = 0; i < cfg->dns_n && i < CONFIG_MAX_DNS; i++)
		pb_add(b, " %s", cfg->dns_servers[i]);
}
