/*
 * dane.h - DANE for SMTP (RFC 7672, RFC 7671, RFC 6698) and the
 * per-destination TLS policy: TLSA records, matching them against the
 * chain a server sent, the level a delivery runs at, and the tls_policy
 * file.  Pure: no sockets, no DNS, no loop.  dns.c hands over TLSA RDATA
 * and the DNSSEC status, tls.c hands over the peer's chain (DER), and
 * deliver.c acts on the verdicts.  Parsers take explicit lengths and are
 * fuzzed.
 */
#ifndef FERRY_DANE_H
#define FERRY_DANE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"		/* enum tls_level */

#define DANE_USAGE_PKIX_TA	0
#define DANE_USAGE_PKIX_EE	1
#define DANE_USAGE_DANE_TA	2
#define DANE_USAGE_DANE_EE	3
#define DANE_SEL_CERT		0
#define DANE_SEL_SPKI		1
#define DANE_MATCH_FULL		0
#define DANE_MATCH_SHA256	1
#define DANE_MATCH_SHA512	2
#define DANE_TLSA_HDR		3	/* usage, selector, matching type */

#define DANE_DATA_MAX		1024	/* full (0) data longer is kept as
					   its length and SHA-512 */
#define DANE_RECORDS_MAX	32	/* per RRset; more are ignored */
#define DANE_CHAIN_MAX		8	/* certificates looked at */

struct dane_tlsa {
	uint8_t usage, selector, mtype;
	uint8_t usable;		/* 2/3, known selector and type, right length */
	size_t len;
	uint8_t data[DANE_DATA_MAX];
};

struct dane_rrset {
	size_t n;
	struct dane_tlsa r[DANE_RECORDS_MAX];
};

/*
 * One TLSA RDATA (RFC 6698 2.1): 0 parsed into *out (usable set per RFC
 * 7672 section 3.1: only DANE-TA(2)/DANE-EE(3), selector 0/1, matching
 * type 0/1/2, SHA-256 data of 32 bytes and SHA-512 of 64), -1 malformed
 * (shorter than 4 bytes, or a digest over DANE_DATA_MAX).  Full data
 * over DANE_DATA_MAX keeps len and has its SHA-512 in data.
 */
int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out);
/* NULL when one TLSA RDATA is usable (as dane_tlsa_parse() sets it),
 * else why not ("PKIX usage", "RDATA under 4 octets"...): static text
 * for a warning.  Reads only the header and the length. */
const char *dane_tlsa_unusable(const uint8_t *rdata, size_t len);
/* Number of usable records in the set. */
size_t dane_usable(const struct dane_rrset *);

/* One certificate of the peer's chain, DER, leaf first.  The matching
 * functions take a chain as an array of these or of any struct laid out
 * the same (tls.h's struct tls_der: deliver.c asserts it), copied in as
 * bytes. */
struct dane_cert {
	const uint8_t *der;
	size_t len;
};

enum dane_verdict {
	DANE_MATCH,		/* a usable record matched (and for DANE-TA
				   the chain and the name held) */
	DANE_NOMATCH,		/* usable records, none matched */
	DANE_NOUSABLE,		/* no usable record: encrypt, no auth */
};

/*
 * Match a chain against a TLSA RRset.  DANE-EE(3): the leaf's full DER
 * (selector 0) or its SubjectPublicKeyInfo (1), exact (0), SHA-256 (1)
 * or SHA-512 (2); names and dates are ignored.  DANE-TA(2): a
 * certificate of the chain (or its key) matches, the chain from the
 * leaf up to it verifies (signatures; dates checked), and the leaf names
 * one of names[] (subjectAltName DNS entries, wildcards per RFC 6125
 * for one leftmost label only; CN only when there is no DNS SAN).
 * *which gets the index of the record that matched, for the log.
 */
enum dane_verdict dane_match(const struct dane_rrset *,
    const void *chain, size_t nchain,
    const char *const *names, size_t nnames, size_t *which);
/* 1 when the certificate (DER) names one of names[] by the rules above;
 * a name ".example.org" stands for every name below example.org (level
 * secure: Postfix's "nexthop, dot-nexthop").  0 otherwise or unparsable. */
int dane_leaf_names(const uint8_t *der, size_t len, const char *const *names,
    size_t nnames);

/*
 * RFC 7672 section 2.2 for one MX host at level dane or dane-only: what
 * a delivery does with it, from the DNSSEC status of the MX RRset and of
 * the host's address answer, both secure (RFC 7672 section 2.2.2; for an
 * implicit MX the address answer alone), and the TLSA lookup.
 * One decision shared by deliver.c and `ferry check`, so the report
 * says what a delivery would do.  lookup DANE_LOOKUP_NONE asks whether a
 * TLSA lookup is needed at all (DANE_STEP_LOOKUP: do it, then ask again
 * with its result).  DANE_LOOKUP_FOUND: the answer held records; set has
 * those that parsed (malformed ones left out still count as "the domain
 * asked for DANE": a set with none usable is DANE_STEP_ENCRYPT).
 * DANE_STEP_DEFER comes with *why (static text, no host or port) and
 * means "do not use this host" (4.7.5); any level but dane and
 * dane-only defers too, as a caller's mistake.
 */
enum dane_lookup {
	DANE_LOOKUP_NONE,	/* not looked up yet */
	DANE_LOOKUP_FOUND,	/* TLSA records in the answer */
	DANE_LOOKUP_EMPTY,	/* NXDOMAIN or NODATA */
	DANE_LOOKUP_FAILED,	/* SERVFAIL, timeout, bogus, malformed */
};

enum dane_step {
	DANE_STEP_LOOKUP,	/* look up _PORT._tcp.HOST TLSA, ask again */
	DANE_STEP_MAY,		/* no DANE here: opportunistic TLS */
	DANE_STEP_ENCRYPT,	/* secure, none usable: TLS, unauthenticated */
	DANE_STEP_DANE,		/* secure and usable: TLS, a record must match */
	DANE_STEP_DEFER,	/* skip this host (4.7.5), *why says why */
};

enum dane_step dane_host_step(enum tls_level level, int mx_secure,
    enum dane_lookup lookup, int tlsa_secure, const struct dane_rrset *set,
    const char **why);
const char *dane_step_name(enum dane_step);

/*
 * The TLSA base domain of one host when its name is an alias (RFC 7672
 * sections 2.2.2 and 2.2.3, RFC 7671 section 7).  If the host's address
 * lookup followed a CNAME chain that was DNSSEC-secure throughout, TLSA
 * records are looked for at the chain's end first, and only if that
 * yields no secure TLSA records (none, or insecure ones) at the name
 * itself; a failed lookup there is the answer (defer), not a reason to
 * try further.  An insecure expansion leaves the name alone.
 * dane_base_init() takes the host, where its chain ended (NULL: not an
 * alias) and whether the chain was secure; dane_base_name() is the name
 * to look up _PORT._tcp TLSA at now (and, once DANE applies, the SNI);
 * after that lookup dane_base_next() returns 1 when its result sends
 * the lookup on to the next name (then look up again), 0 when it is the
 * one dane_host_step() decides on.  dane_base_refs() fills names[] with
 * the reference identifiers for DANE-TA (RFC 7672 section 3.2.2): the
 * TLSA base domain, the host as named (the name before expansion) and
 * the next-hop domain, each once; it returns how many.
 */
#define DANE_BASE_NAME_MAX	255
#define DANE_BASE_MAX		2	/* the chain's end, the name itself */
#define DANE_REFS_MAX		3
struct dane_base {
	size_t n, i;		/* candidates, the one in use */
	char name[DANE_BASE_MAX][DANE_BASE_NAME_MAX + 1];
};
void dane_base_init(struct dane_base *, const char *host, const char *canon,
    int canon_secure);
const char *dane_base_name(const struct dane_base *);
int dane_base_expanded(const struct dane_base *);	/* name is the end */
int dane_base_next(struct dane_base *, enum dane_lookup, int tlsa_secure);
size_t dane_base_refs(const struct dane_base *, const char *nexthop,
    const char **names, size_t max);
/* dane_match() against the names dane_base_refs() gives. */
enum dane_verdict dane_match_base(const struct dane_rrset *,
    const void *chain, size_t nchain, const struct dane_base *,
    const char *nexthop, size_t *which);
/* Level secure (Postfix's "nexthop, dot-nexthop"): 1 when the leaf names
 * domain or a name below it, by dane_leaf_names()'s rules. */
int dane_leaf_nexthop(const uint8_t *der, size_t len, const char *domain);

/* A name's byte in lower case, ASCII only (DNS names compare that way). */
int dane_lower(int c);
/* A hex digit's value, upper or lower case; -1 for any other byte. */
int dane_hexval(int c);

/* "3 1 1 ab12...", the first 12 hex digits of the data then "...", for logs.
 * DANE_TLSA_TEXT_MAX holds any record's. */
#define DANE_TLSA_TEXT_MAX	48
void dane_tlsa_format(const struct dane_tlsa *, char *buf, size_t bufsz);

/*
 * `ferry tlsa`: the record data for a certificate, hex of the matching
 * data (selector/mtype per RFC 6698) into out (NUL-terminated); -1 on a
 * bad certificate or a too small out.
 */
int dane_tlsa_data(const uint8_t *der, size_t len, int selector, int mtype,
    char *out, size_t outsz);

/*
 * The tls_policy file: lines `domain level [match=sha256:HEX[,...]]`,
 * like Postfix's smtp_tls_policy_maps.  Levels: none, may, encrypt,
 * dane, dane-only, fingerprint (needs match=), verify, secure.
 * "example.org" matches that domain only, ".example.org" every
 * subdomain; the most specific entry wins.  '#' comments.  Errors are
 * "NAME:LINE: what".
 */
#define DANE_POLICY_MAX		1024
#define DANE_POLICY_FP_MAX	4
#define DANE_POLICY_FILE_MAX	(256 * 1024)
struct dane_policy;
struct dane_policy_entry {
	enum tls_level level;
	size_t nfp;
	uint8_t fp[DANE_POLICY_FP_MAX][32];	/* SHA-256 of cert or SPKI */
};
struct dane_policy *dane_policy_parse(const char *name, const char *text,
    size_t len, char *err, size_t errsz);
struct dane_policy *dane_policy_load(const char *path, char *err,
    size_t errsz);
void dane_policy_free(struct dane_policy *);
/* The entry for a (lower-case) domain, or NULL: use the default level. */
const struct dane_policy_entry *dane_policy_find(const struct dane_policy *,
    const char *domain);
/* Whether the entry pins the peer's leaf: 1 by the certificate's SHA-256
 * (fp), 2 by its key's (spki), 0 neither.  The entry's fingerprints are
 * tried in order, each against both. */
int dane_policy_pinned(const struct dane_policy_entry *, const uint8_t *fp,
    const uint8_t *spki);

#endif
