/*
 * dane.c - DANE for SMTP and the tls_policy file, behind dane.h: TLSA
 * RDATA and its usability (RFC 6698 §2.1, RFC 7672 §3.1), matching a DER
 * chain against a TLSA RRset (DANE-EE by bytes or digest; DANE-TA by
 * digest, then mbedTLS verifies the chain up to the matched anchor and the
 * leaf's names are checked here), the data `ferry tlsa` prints, and the
 * per-destination policy file.  No sockets and no DNS; the only I/O is
 * dane_policy_load()'s read.  Parsers return 0 / -1, or NULL with
 * "NAME:LINE: what" in err; dane_match() returns a verdict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#include <sodium.h>

#include "addr.h"
#include "config.h"
#include "dane.h"
#include "textfile.h"

#define DANE_SHA256_LEN		32
#define DANE_SHA512_LEN		64
#define DANE_RDATA_MAX		65535	/* RDLENGTH is 16 bits */
#define DANE_FMT_BYTES		6	/* data bytes a log line shows */
#define DANE_NAME_MAX		253	/* a DNS name in text, no final dot */
#define DANE_LABEL_MAX		63
#define DANE_FP_PREFIX		"sha256:"
#define DANE_MATCH_OPT		"match="

/*
 * mbedTLS 3.x renamed the one-shot digests (the 2.x names returned void
 * before 2.7 and gained _ret).  The raw SubjectPublicKeyInfo
 * (COMPAT_PK_RAW) is what RFC 6698 selector 1 hashes, so it is read as
 * it was sent rather than re-encoded with mbedtls_pk_write_pubkey_der.
 */
#if COMPAT_MBEDTLS3
#define DANE_SHA256(in, n, out)	mbedtls_sha256((in), (n), (out), 0)
#define DANE_SHA512(in, n, out)	mbedtls_sha512((in), (n), (out), 0)
#else
#define DANE_SHA256(in, n, out)	mbedtls_sha256_ret((in), (n), (out), 0)
#define DANE_SHA512(in, n, out)	mbedtls_sha512_ret((in), (n), (out), 0)
#endif

/* The peer's chain as mbedTLS sees it: crt[i] is NULL for a certificate
 * that did not parse (selector 0 can still match its bytes). */
struct dane_chain {
	size_t n;
	struct dane_cert cert[DANE_CHAIN_MAX];	/* the caller's, copied */
	mbedtls_x509_crt all;		/* those that parsed, leaf first */
	const mbedtls_x509_crt *crt[DANE_CHAIN_MAX];
	signed char ta_ok[DANE_CHAIN_MAX];	/* 0 unknown, 1 / -1 */
	signed char names_ok;			/* 0 unknown, 1 / -1 */
};

struct dane_policy_item {
	char name[DANE_NAME_MAX + 2];	/* "example.org" or ".example.org" */
	size_t line;
	struct dane_policy_entry e;
};

struct dane_policy {
	size_t n, cap;
	struct dane_policy_item *item;	/* sorted by name */
};

static const char *dane_fields_why(unsigned, unsigned, unsigned, size_t);
static int	dane_record_ok(const struct dane_tlsa *);
static void	dane_chain_load(struct dane_chain *, const void *, size_t);
static int	dane_selected(const struct dane_cert *,
		    const mbedtls_x509_crt *, unsigned, const uint8_t **,
		    size_t *);
static int	dane_data_match(const struct dane_tlsa *, const uint8_t *,
		    size_t);
static int	dane_ta_verify(struct dane_chain *, size_t);
static int	dane_names_ok(const mbedtls_x509_crt *, const char *const *,
		    size_t);
static int	dane_name_match(const unsigned char *, size_t, const char *);
static int	dane_ieq(const unsigned char *, const char *, size_t);
static int	dane_policy_line(struct dane_policy *, const char *, size_t,
		    size_t, const char **);
static int	dane_domain(const char *, size_t, char *, const char **);
static int	dane_level(const char *, size_t, enum tls_level *);
static int	dane_fp_list(const char *, size_t, struct dane_policy_entry *,
		    const char **);
static int	dane_fp_one(const char *, size_t, uint8_t *, const char **);
static int	dane_blank(char);
static int	dane_item_cmp(const void *, const void *);
static int	dane_key_cmp(const void *, const void *);

/* ---- TLSA records ------------------------------------------------- */

/*
 * RFC 7672 §3.1: SMTP uses only DANE-TA(2) and DANE-EE(3) (PKIX-TA/EE
 * would need a CA store SMTP does not have); a record with an unknown
 * selector or matching type, or a digest of the wrong length, is
 * unusable and so is skipped (RFC 7671 §4.1), but still counts towards
 * the RRset: a set of only unusable records means "encrypt, do not
 * authenticate" rather than "no DANE".  NULL: usable; else why not, in
 * the words the warning and `ferry check` give.
 */
static const char *
dane_fields_why(unsigned usage, unsigned selector, unsigned mtype,
    size_t len)
{
	int ok;

	if (usage != DANE_USAGE_DANE_TA && usage != DANE_USAGE_DANE_EE)
		return usage < DANE_USAGE_DANE_TA ? "PKIX usage" :
		    "unknown usage";
	if (selector != DANE_SEL_CERT && selector != DANE_SEL_SPKI)
		return "unknown selector";
	switch (mtype) {
	case DANE_MATCH_FULL:
		ok = len > 0;
		break;
	case DANE_MATCH_SHA256:
		ok = len == DANE_SHA256_LEN;
		break;
	case DANE_MATCH_SHA512:
		ok = len == DANE_SHA512_LEN;
		break;
	default:
		return "unknown matching type";
	}
	return ok ? NULL : "data of the wrong length";
}

/* A record dane_match() may act on: usable, and consistent even when the
 * caller filled it in by hand (memcmp bounds depend on it). */
static int
dane_record_ok(const struct dane_tlsa *r)
{
	return r->usable && dane_fields_why(r->usage, r->selector,
	    r->mtype, r->len) == NULL;
}

/*
 * On -1, *out still describes what could be read (header fields when
 * there are 3 bytes, usable 0, len 0), so a caller that keeps malformed
 * records in the set for RFC 7672 §2.2's sake holds an unusable one.
 */
int
dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out)
{
	size_t dlen;

	out->usage = out->selector = out->mtype = 0;
	out->usable = 0;
	out->len = 0;
	if (len < DANE_TLSA_HDR)
		return -1;
	out->usage = rdata[0];
	out->selector = rdata[1];
	out->mtype = rdata[2];
	dlen = len - DANE_TLSA_HDR;
	if (dlen == 0)
		return -1;
	/* Full data too long to keep (a whole certificate usually is):
	 * its SHA-512 stands in, so the record still matches exactly those
	 * bytes; dropping it could leave a set that no longer asks for
	 * authentication (a downgrade). */
	if (dlen > DANE_DATA_MAX) {
		if (out->mtype != DANE_MATCH_FULL ||
		    DANE_SHA512(rdata + DANE_TLSA_HDR, dlen, out->data) != 0)
			return -1;
	} else
		memcpy(out->data, rdata + DANE_TLSA_HDR, dlen);
	out->len = dlen;
	out->usable = dane_fields_why(out->usage, out->selector,
	    out->mtype, dlen) == NULL;
	return 0;
}

const char *
dane_tlsa_unusable(const uint8_t *rdata, size_t len)
{
	if (len <= DANE_TLSA_HDR)
		return "RDATA under 4 octets";
	return dane_fields_why(rdata[0], rdata[1], rdata[2],
	    len - DANE_TLSA_HDR);
}

size_t
dane_usable(const struct dane_rrset *set)
{
	size_t i, n = 0, max;

	max = set->n < DANE_RECORDS_MAX ? set->n : DANE_RECORDS_MAX;
	for (i = 0; i < max; i++)
		if (dane_record_ok(&set->r[i]))
			n++;
	return n;
}

void
dane_tlsa_format(const struct dane_tlsa *r, char *buf, size_t bufsz)
{
	char hex[2 * DANE_FMT_BYTES + 1];
	size_t n;

	if (buf == NULL || bufsz == 0)
		return;
	n = r->len < DANE_FMT_BYTES ? r->len : DANE_FMT_BYTES;
	if (r->mtype == DANE_MATCH_FULL && r->len > DANE_DATA_MAX) {
		/* data holds a digest, not the record's bytes */
		(void)snprintf(buf, bufsz, "%u %u 0 (%zu octets)",
		    (unsigned)r->usage, (unsigned)r->selector, r->len);
		return;
	}
	/* libsodium's, as bounce.c's: no hex writer of our own. */
	sodium_bin2hex(hex, 2 * n + 1, r->data, n);
	(void)snprintf(buf, bufsz, "%u %u %u%s%s%s", (unsigned)r->usage,
	    (unsigned)r->selector, (unsigned)r->mtype, n > 0 ? " " : "", hex,
	    r->len > DANE_FMT_BYTES ? "..." : "");
}

int
dane_tlsa_data(const uint8_t *der, size_t len, int selector, int mtype,
    char *out, size_t outsz)
{
	mbedtls_x509_crt crt;
	uint8_t md[DANE_SHA512_LEN];
	const uint8_t *p;
	size_t n;
	int ret = -1;

	if (out != NULL && outsz > 0)
		out[0] = '\0';
	mbedtls_x509_crt_init(&crt);
	if (out == NULL || der == NULL ||
	    mbedtls_x509_crt_parse_der(&crt, der, len) != 0)
		goto done;
	if (selector == DANE_SEL_CERT) {
		/* the certificate as parsed, without any trailing bytes */
		p = crt.raw.p;
		n = crt.raw.len;
	} else if (selector == DANE_SEL_SPKI) {
		p = COMPAT_PK_RAW(&crt).p;
		n = COMPAT_PK_RAW(&crt).len;
	} else
		goto done;
	if (mtype == DANE_MATCH_SHA256) {
		if (DANE_SHA256(p, n, md) != 0)
			goto done;
		p = md;
		n = DANE_SHA256_LEN;
	} else if (mtype == DANE_MATCH_SHA512) {
		if (DANE_SHA512(p, n, md) != 0)
			goto done;
		p = md;
		n = DANE_SHA512_LEN;
	} else if (mtype != DANE_MATCH_FULL || n > DANE_RDATA_MAX -
	    DANE_TLSA_HDR)
		goto done;	/* no record a resolver could carry */
	if (outsz == 0 || n > (outsz - 1) / 2)
		goto done;
	sodium_bin2hex(out, 2 * n + 1, p, n);
	ret = 0;
done:
	mbedtls_x509_crt_free(&crt);
	return ret;
}

/* ---- matching ------------------------------------------------------- */

static void
dane_chain_load(struct dane_chain *ch, const void *chain, size_t nchain)
{
	const mbedtls_x509_crt *last;
	size_t i;

	memset(ch, 0, sizeof(*ch));
	mbedtls_x509_crt_init(&ch->all);
	ch->n = nchain < DANE_CHAIN_MAX ? nchain : DANE_CHAIN_MAX;
	/* Bytes, not a cast: the caller's array may be another struct of
	 * this layout (tls.h's struct tls_der).  No chain may be NULL. */
	if (ch->n > 0)
		memcpy(ch->cert, chain, ch->n * sizeof(ch->cert[0]));
	for (i = 0; i < ch->n; i++) {
		if (ch->cert[i].der == NULL ||
		    mbedtls_x509_crt_parse_der(&ch->all, ch->cert[i].der,
		    ch->cert[i].len) != 0)
			continue;
		/* a successful parse is the last element of the list */
		for (last = &ch->all; last->next != NULL; last = last->next)
			;
		ch->crt[i] = last;
	}
}

/* The bytes selector picks from one certificate (RFC 6698 §2.1.2). */
static int
dane_selected(const struct dane_cert *c, const mbedtls_x509_crt *crt,
    unsigned selector, const uint8_t **p, size_t *n)
{
	if (selector == DANE_SEL_CERT) {
		*p = c->der;
		*n = c->len;
		return c->der != NULL ? 0 : -1;
	}
	if (selector == DANE_SEL_SPKI && crt != NULL) {
		*p = COMPAT_PK_RAW(crt).p;
		*n = COMPAT_PK_RAW(crt).len;
		return 0;
	}
	return -1;
}

static int
dane_data_match(const struct dane_tlsa *r, const uint8_t *p, size_t n)
{
	uint8_t md[DANE_SHA512_LEN];
	size_t mdlen = DANE_SHA512_LEN;

	switch (r->mtype) {
	case DANE_MATCH_FULL:
		if (n != r->len)
			return 0;
		if (n <= DANE_DATA_MAX)
			return memcmp(p, r->data, n) == 0;
		break;		/* dane_tlsa_parse() kept its SHA-512 */
	case DANE_MATCH_SHA256:
		mdlen = DANE_SHA256_LEN;
		break;
	case DANE_MATCH_SHA512:
		break;
	default:
		return 0;
	}
	/* One digest call and one compare for the three ways. */
	return (mdlen == DANE_SHA256_LEN ? DANE_SHA256(p, n, md) :
	    DANE_SHA512(p, n, md)) == 0 && memcmp(md, r->data, mdlen) == 0;
}

/*
 * RFC 7671 §5.2.2: the certificate at depth (1 or more) is the trust
 * anchor; the chain from the leaf must reach it by signatures, every
 * certificate on the way within its dates.  mbedTLS builds the path with
 * the anchor as the only trusted certificate (it prefers a trusted
 * parent, so what the server sent above the anchor does not matter).
 * Cached per depth: several records may name the same certificate.
 */
static int
dane_ta_verify(struct dane_chain *ch, size_t depth)
{
	mbedtls_x509_crt ta;
	uint32_t flags = 0;
	int ok;

	if (ch->ta_ok[depth] != 0)
		return ch->ta_ok[depth] > 0;
	if (ch->crt[0] != &ch->all || ch->crt[depth] == NULL)
		ok = 0;		/* the leaf must head the list mbedTLS walks */
	else {
		mbedtls_x509_crt_init(&ta);
		ok = mbedtls_x509_crt_parse_der(&ta, ch->cert[depth].der,
		    ch->cert[depth].len) == 0 &&
		    mbedtls_x509_crt_verify(&ch->all, &ta, NULL, NULL, &flags,
		    NULL, NULL) == 0 && flags == 0;
		mbedtls_x509_crt_free(&ta);
	}
	ch->ta_ok[depth] = ok ? 1 : -1;
	return ok;
}

/*
 * RFC 7672 §3.2.3 with RFC 6125 §6.4: a subjectAltName dNSName equal to
 * one of names, or a wildcard for its leftmost label; the subject CN only
 * when the certificate has no dNSName at all.
 */
static int
dane_names_ok(const mbedtls_x509_crt *crt, const char *const *names,
    size_t nnames)
{
	const mbedtls_x509_sequence *san;
	const mbedtls_x509_name *dn;
	int has_dns = 0;
	size_t i;

	for (san = &crt->subject_alt_names; san != NULL; san = san->next) {
		if (san->buf.p == NULL || san->buf.tag !=
		    (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
			continue;
		has_dns = 1;
		for (i = 0; i < nnames; i++)
			if (names[i] != NULL && dane_name_match(san->buf.p,
			    san->buf.len, names[i]))
				return 1;
	}
	if (has_dns)
		return 0;
	for (dn = &crt->subject; dn != NULL; dn = dn->next) {
		if (dn->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN,
		    &dn->oid) != 0)
			continue;
		for (i = 0; i < nnames; i++)
			if (names[i] != NULL && dane_name_match(dn->val.p,
			    dn->val.len, names[i]))
				return 1;
	}
	return 0;
}

int
dane_leaf_names(const uint8_t *der, size_t len, const char *const *names,
    size_t nnames)
{
	mbedtls_x509_crt crt;
	int ok;

	mbedtls_x509_crt_init(&crt);
	ok = der != NULL && mbedtls_x509_crt_parse_der(&crt, der, len) == 0 &&
	    dane_names_ok(&crt, names, nnames);
	mbedtls_x509_crt_free(&crt);
	return ok;
}

/*
 * pat (from the certificate, untrusted, not terminated) against ref (a
 * host name we looked up, or ".domain" for any name below it; one final
 * dot ignored), ASCII case-insensitive.
 * A wildcard is only "*" as the whole leftmost label, stands for exactly
 * one non-empty label, and needs two labels after it ("*.com" is no
 * name).  A '*' anywhere else never matches.
 */
static int
dane_name_match(const unsigned char *pat, size_t plen, const char *ref)
{
	size_t rlen = strlen(ref), dot;
	const char *rest;

	if (rlen > 0 && ref[rlen - 1] == '.')
		rlen--;
	if (plen > 0 && pat[plen - 1] == '.')
		plen--;
	if (rlen == 0 || plen == 0 || memchr(ref, '*', rlen) != NULL)
		return 0;
	if (ref[0] == '.') {
		/* Postfix's dot-nexthop: any name below ref, a wildcard
		 * only as the whole label in front of it. */
		if (plen <= rlen || !dane_ieq(pat + plen - rlen, ref, rlen))
			return 0;
		return plen - rlen == 1 ? pat[0] != '.' :
		    memchr(pat, '*', plen - rlen) == NULL;
	}
	if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
		pat += 2;
		plen -= 2;
		if (memchr(pat, '*', plen) != NULL ||
		    memchr(pat, '.', plen) == NULL)
			return 0;
		if ((rest = memchr(ref, '.', rlen)) == NULL)
			return 0;
		dot = (size_t)(rest - ref);
		if (dot == 0)
			return 0;
		return rlen - dot - 1 == plen && dane_ieq(pat, rest + 1, plen);
	}
	if (memchr(pat, '*', plen) != NULL)
		return 0;
	return plen == rlen && dane_ieq(pat, ref, plen);
}

static int
dane_ieq(const unsigned char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (a[i] == '\0' || dane_lower(a[i]) !=
		    dane_lower((unsigned char)b[i]))
			return 0;
	return 1;
}

/*
 * RFC 7672 §3.1: any one usable record that matches is enough, so the
 * records are tried in order and the first that holds is reported.
 * DANE-TA records are compared with the issuers only (depth 1 and up),
 * as OpenSSL does: a TA is what signs the chain, and a leaf matched by
 * a TA record would leave no signature to check.  always_inline: the
 * binary's one call (dane_match_base()) measured smaller without it.
 */
__attribute__((always_inline)) inline enum dane_verdict
dane_match(const struct dane_rrset *set, const void *chain,
    size_t nchain, const char *const *names, size_t nnames, size_t *which)
{
	struct dane_chain ch;
	const struct dane_tlsa *r;
	const uint8_t *p;
	size_t i, d, n, nrec;
	enum dane_verdict v = DANE_NOMATCH;
	int ee;

	if (which != NULL)
		*which = 0;
	if (dane_usable(set) == 0)
		return DANE_NOUSABLE;
	if (chain == NULL || nchain == 0)
		return DANE_NOMATCH;
	dane_chain_load(&ch, chain, nchain);
	nrec = set->n < DANE_RECORDS_MAX ? set->n : DANE_RECORDS_MAX;
	for (i = 0; i < nrec && v != DANE_MATCH; i++) {
		r = &set->r[i];
		if (!dane_record_ok(r))
			continue;
		/* §3.1.1: DANE-EE, the leaf only, names and dates ignored;
		 * DANE-TA, the issuers.  One loop: one copy of the match. */
		ee = r->usage == DANE_USAGE_DANE_EE;
		for (d = !ee; d < (ee ? 1 : ch.n) && v != DANE_MATCH; d++) {
			if (dane_selected(&ch.cert[d], ch.crt[d], r->selector,
			    &p, &n) != 0 || !dane_data_match(r, p, n))
				continue;
			if (ee) {
				v = DANE_MATCH;
				continue;
			}
			if (ch.names_ok == 0)
				ch.names_ok = ch.crt[0] != NULL &&
				    dane_names_ok(ch.crt[0], names, nnames) ?
				    1 : -1;
			if (ch.names_ok > 0 && dane_ta_verify(&ch, d))
				v = DANE_MATCH;
		}
	}
	if (v == DANE_MATCH && which != NULL)
		*which = i - 1;
	mbedtls_x509_crt_free(&ch.all);
	return v;
}

/* ---- the policy for one MX host ------------------------------------- */

/*
 * RFC 7672 section 2.2: TLSA records count only behind a DNSSEC-secure
 * MX RRset (2.2.1) and only when their own RRset is secure (2.2.2).  A
 * lookup that failed on a secure MX may be an attacker hiding records,
 * so it defers whatever the level: never plaintext, never unauthenticated
 * TLS.  "Insecure" and "no records" are the same to the levels: dane is
 * then opportunistic, dane-only does not use the host (Postfix).
 */
enum dane_step
dane_host_step(enum tls_level level, int mx_secure, enum dane_lookup lookup,
    int tlsa_secure, const struct dane_rrset *set, const char **why)
{
	int only = level == TLS_DANE_ONLY;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (level != TLS_DANE && level != TLS_DANE_ONLY) {
		*why = "the level is not dane or dane-only";
		return DANE_STEP_DEFER;
	}
	if (!mx_secure) {
		if (!only)
			return DANE_STEP_MAY;
		*why = "dane-only: the MX RRset or the MX host addresses "
		    "are not DNSSEC-secure";
		return DANE_STEP_DEFER;
	}
	switch (lookup) {
	case DANE_LOOKUP_NONE:
		return DANE_STEP_LOOKUP;
	case DANE_LOOKUP_FAILED:
		*why = "TLSA lookup error (SERVFAIL, timeout, bogus DNSSEC "
		    "or a malformed answer); not delivering without DANE";
		return DANE_STEP_DEFER;
	case DANE_LOOKUP_EMPTY:
		if (!only)
			return DANE_STEP_MAY;
		*why = "dane-only: no TLSA records";
		return DANE_STEP_DEFER;
	case DANE_LOOKUP_FOUND:
		break;
	default:
		*why = "unknown TLSA lookup result";
		return DANE_STEP_DEFER;
	}
	if (!tlsa_secure) {
		if (!only)
			return DANE_STEP_MAY;
		*why = "dane-only: no DNSSEC-secure TLSA records";
		return DANE_STEP_DEFER;
	}
	if (set != NULL && dane_usable(set) > 0)
		return DANE_STEP_DANE;
	/* RFC 7672 section 2.2: TLS mandatory, unauthenticated; Postfix's
	 * dane-only makes no connection without a usable record. */
	if (!only)
		return DANE_STEP_ENCRYPT;
	*why = "dane-only: no usable TLSA records";
	return DANE_STEP_DEFER;
}

const char *
dane_step_name(enum dane_step s)
{
	static const char *const names[] = { "lookup", "may", "encrypt",
	    "dane", "defer" };

	if ((unsigned)s >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[s];
}

/* ---- the TLSA base domain of an alias -------------------------------- */

/*
 * RFC 7671 section 7: the preferred TLSA base domain is the fully
 * CNAME-expanded name, and failing that the initial name; RFC 7672
 * section 2.2.3 applies it to MX hosts, and only when every link of the
 * expansion validated (an insecure link could have been forged to point
 * at the attacker's own signed zone).  Names compare without regard to
 * case (RFC 4343).  A name that does not fit is cut off, so it cannot
 * match anything it should not: the host name itself is checked by the
 * caller's DNS lookups, which refuse such names.
 */
void
dane_base_init(struct dane_base *b, const char *host, const char *canon,
    int canon_secure)
{
	memset(b, 0, sizeof(*b));
	if (canon != NULL && canon_secure && canon[0] != '\0' &&
	    addr_casecmp(canon, host) != 0)
		textfile_copy(b->name[b->n++], sizeof(b->name[0]), canon);
	textfile_copy(b->name[b->n++], sizeof(b->name[0]), host);
}

/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) const char *
dane_base_name(const struct dane_base *b)
{
	return b->name[b->i < b->n ? b->i : 0];
}

int
dane_base_expanded(const struct dane_base *b)
{
	return b->n > 1 && b->i == 0;
}

/*
 * "No secure TLSA records" at the expanded name moves on to the initial
 * name: an empty answer (NXDOMAIN, NODATA) or records that did not
 * validate.  A lookup failure stays: it may be an attacker hiding the
 * records, and going on to the other name would let him choose which
 * RRset counts (Postfix does the same: an error at the expanded name is
 * not followed by the lookup at the initial one).
 */
/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) int
dane_base_next(struct dane_base *b, enum dane_lookup lookup, int tlsa_secure)
{
	if (b->i + 1 >= b->n)
		return 0;
	if (lookup != DANE_LOOKUP_EMPTY && (lookup != DANE_LOOKUP_FOUND ||
	    tlsa_secure))
		return 0;
	b->i++;
	return 1;
}

/*
 * RFC 7672 section 3.2.2 (and 2.2.2 for a domain that is its own MX):
 * with DANE-TA the certificate must name the TLSA base domain (the
 * expanded name when the records came from there) or the next-hop
 * domain.  The host's name before expansion is accepted as well: it is
 * the name the domain's MX RRset (or the configuration) gave, and a
 * secure expansion only adds names, it does not disown that one.
 */
size_t
dane_base_refs(const struct dane_base *b, const char *nexthop,
    const char **names, size_t max)
{
	const char *cand[DANE_REFS_MAX];
	size_t n = 0, i, k;
	int dup;

	cand[0] = dane_base_name(b);
	cand[1] = b->name[b->n > 0 ? b->n - 1 : 0];	/* the host as named */
	cand[2] = nexthop;
	for (i = 0; i < DANE_REFS_MAX && n < max; i++) {
		if (cand[i] == NULL || cand[i][0] == '\0')
			continue;
		for (dup = 0, k = 0; k < n && !dup; k++)
			dup = addr_casecmp(names[k], cand[i]) == 0;
		if (!dup)
			names[n++] = cand[i];
	}
	return n;
}

enum dane_verdict
dane_match_base(const struct dane_rrset *set, const void *chain,
    size_t nchain, const struct dane_base *b, const char *nexthop,
    size_t *which)
{
	const char *names[DANE_REFS_MAX];

	return dane_match(set, chain, nchain, names, dane_base_refs(b,
	    nexthop, names, DANE_REFS_MAX), which);
}

int
dane_leaf_nexthop(const uint8_t *der, size_t len, const char *domain)
{
	char dot[DANE_BASE_NAME_MAX + 2];
	const char *names[2];

	/* A name too long to fit is no host name: nothing may match it. */
	if (snprintf(dot, sizeof(dot), ".%s", domain) >= (int)sizeof(dot))
		return 0;
	names[0] = domain;
	names[1] = dot;
	return dane_leaf_names(der, len, names, 2);
}

/* ---- the tls_policy file -------------------------------------------- */

/*
 * One line without its '\n': `domain level [match=...]`, fields split
 * by blanks, '#' at the start of a field begins a comment.  0: added or
 * nothing there; -1: *why says what is wrong.
 */
static int
dane_policy_line(struct dane_policy *pol, const char *s, size_t len,
    size_t line, const char **why)
{
	struct dane_policy_item it, *grown;
	size_t pos = 0, start, field = 0, cap;
	int fp_seen = 0;

	memset(&it, 0, sizeof(it));
	it.line = line;
	if (len > 0 && s[len - 1] == '\r')
		len--;
	for (;;) {
		while (pos < len && dane_blank(s[pos]))
			pos++;
		if (pos == len || s[pos] == '#')
			break;
		start = pos;
		while (pos < len && !dane_blank(s[pos]))
			pos++;
		if (memchr(s + start, '\0', pos - start) != NULL) {
			*why = "NUL byte in the line";
			return -1;
		}
		if (field == 0) {
			if (dane_domain(s + start, pos - start, it.name,
			    why) == -1)
				return -1;
		} else if (field == 1) {
			if (dane_level(s + start, pos - start,
			    &it.e.level) == -1) {
				*why = "unknown level (none, may, encrypt, "
				    "dane, dane-only, fingerprint, verify, "
				    "secure)";
				return -1;
			}
		} else if (pos - start > strlen(DANE_MATCH_OPT) &&
		    memcmp(s + start, DANE_MATCH_OPT,
		    strlen(DANE_MATCH_OPT)) == 0) {
			if (it.e.level != TLS_FINGERPRINT) {
				*why = "match= is only for the fingerprint "
				    "level";
				return -1;
			}
			start += strlen(DANE_MATCH_OPT);
			if (dane_fp_list(s + start, pos - start, &it.e,
			    why) == -1)
				return -1;
			fp_seen = 1;
		} else {
			*why = "unknown option (only match=sha256:HEX)";
			return -1;
		}
		field++;
	}
	if (field == 0)
		return 0;
	if (field == 1) {
		*why = "level missing";
		return -1;
	}
	if (it.e.level == TLS_FINGERPRINT && !fp_seen) {
		*why = "the fingerprint level needs match=sha256:HEX";
		return -1;
	}
	if (pol->n == DANE_POLICY_MAX) {
		*why = "too many entries";
		return -1;
	}
	if (pol->n == pol->cap) {
		cap = pol->cap == 0 ? 16 : pol->cap * 2;
		if (cap > DANE_POLICY_MAX)
			cap = DANE_POLICY_MAX;
		if ((grown = realloc(pol->item, cap * sizeof(*grown))) ==
		    NULL) {
			*why = "out of memory";
			return -1;
		}
		pol->item = grown;
		pol->cap = cap;
	}
	pol->item[pol->n++] = it;
	return 0;
}

/*
 * "example.org" or ".example.org" (one final dot dropped), letters,
 * digits and hyphens in labels of 1..63, lower-cased into out.  Or an
 * IPv6 address, in the text sched.c names an [IPv6:...] destination by.
 */
static int
dane_domain(const char *s, size_t len, char *out, const char **why)
{
	size_t i, o = 0, label = 0, skip = 0;
	struct sockaddr_storage ss;
	char lit[INET6_ADDRSTRLEN + 8];

	if (memchr(s, ':', len) != NULL) {
		if (len < INET6_ADDRSTRLEN) {
			snprintf(lit, sizeof(lit), "[IPv6:%.*s]", (int)len, s);
			if (addr_literal(lit, &ss, out) != 0)
				return 0;
		}
		*why = "bad IPv6 address";
		return -1;
	}

	if (len > 0 && s[0] == '.') {
		out[o++] = '.';
		skip = 1;
	}
	if (len > skip + 1 && s[len - 1] == '.')
		len--;
	if (len - skip == 0 || len - skip > DANE_NAME_MAX) {
		*why = len - skip == 0 ? "empty domain" : "domain too long";
		return -1;
	}
	for (i = skip; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0) {
				*why = "empty label in the domain";
				return -1;
			}
			label = 0;
		} else if (addr_letdig(c) || c == '-') {
			if (++label > DANE_LABEL_MAX) {
				*why = "label longer than 63 in the domain";
				return -1;
			}
			c = (unsigned char)dane_lower(c);
		} else {
			*why = "bad character in the domain";
			return -1;
		}
		out[o++] = (char)c;
	}
	if (label == 0) {
		*why = "empty label in the domain";
		return -1;
	}
	out[o] = '\0';
	return 0;
}

/* The names config.c gives the levels, so both files spell them alike;
 * smtps is a transport, not a per-destination level. */
static int
dane_level(const char *s, size_t len, enum tls_level *out)
{
	enum tls_level l;
	const char *name;

	for (l = TLS_NONE; l <= TLS_SECURE; l++) {
		name = config_tls_level_name(l);
		if (strlen(name) == len && memcmp(name, s, len) == 0) {
			*out = l;
			return 0;
		}
	}
	return -1;
}

/* "sha256:HEX[,[sha256:]HEX...]" appended to e->fp. */
static int
dane_fp_list(const char *s, size_t len, struct dane_policy_entry *e,
    const char **why)
{
	size_t pos = 0, end, plen = strlen(DANE_FP_PREFIX);
	const char *comma;

	if (len < plen || strncasecmp(s, DANE_FP_PREFIX, plen) != 0) {
		*why = "match= wants sha256:HEX";
		return -1;
	}
	for (;;) {
		comma = memchr(s + pos, ',', len - pos);
		end = comma != NULL ? (size_t)(comma - s) : len;
		if (end - pos >= plen &&
		    strncasecmp(s + pos, DANE_FP_PREFIX, plen) == 0)
			pos += plen;
		if (e->nfp == DANE_POLICY_FP_MAX) {
			*why = "too many fingerprints (at most 4)";
			return -1;
		}
		if (dane_fp_one(s + pos, end - pos, e->fp[e->nfp], why) == -1)
			return -1;
		e->nfp++;
		if (comma == NULL)
			return 0;
		pos = end + 1;
	}
}

/* 32 bytes of hex, a ':' allowed between bytes (as openssl prints). */
static int
dane_fp_one(const char *s, size_t len, uint8_t *fp, const char **why)
{
	size_t pos = 0, b = 0;
	int hi, lo;

	while (pos < len) {
		if (b > 0 && s[pos] == ':' && ++pos == len)
			break;
		if (b == DANE_SHA256_LEN) {
			*why = "fingerprint too long (want 32 bytes)";
			return -1;
		}
		if (len - pos < 2 || (hi = dane_hexval(s[pos])) < 0 ||
		    (lo = dane_hexval(s[pos + 1])) < 0) {
			*why = "not a hex digit in the fingerprint";
			return -1;
		}
		fp[b++] = (uint8_t)(hi << 4 | lo);
		pos += 2;
	}
	if (b != DANE_SHA256_LEN || (len > 0 && s[len - 1] == ':')) {
		*why = b != DANE_SHA256_LEN ? "fingerprint too short (want "
		    "32 bytes)" : "fingerprint ends in ':'";
		return -1;
	}
	return 0;
}

static int
dane_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* By name, then by line, so a duplicate sorts after the first one. */
static int
dane_item_cmp(const void *a, const void *b)
{
	const struct dane_policy_item *x = a, *y = b;
	int c;

	if ((c = strcmp(x->name, y->name)) != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

static int
dane_key_cmp(const void *key, const void *elem)
{
	const struct dane_policy_item *y = elem;

	return strcmp(key, y->name);
}

struct dane_policy *
dane_policy_parse(const char *name, const char *text, size_t len, char *err,
    size_t errsz)
{
	struct dane_policy *pol;
	const char *ln, *why = NULL;
	size_t pos = 0, line = 0, linelen, i;

	if ((pol = calloc(1, sizeof(*pol))) == NULL) {
		snprintf(err, errsz, "%s: out of memory", name);
		return NULL;
	}
	while (textfile_line(text, len, &pos, &ln, &linelen)) {
		line++;
		if (dane_policy_line(pol, ln, linelen, line, &why) == -1) {
			snprintf(err, errsz, "%s:%zu: %s", name, line, why);
			goto fail;
		}
	}
	if (pol->n > 0)
		qsort(pol->item, pol->n, sizeof(pol->item[0]), dane_item_cmp);
	for (i = 1; i < pol->n; i++)
		if (strcmp(pol->item[i - 1].name, pol->item[i].name) == 0) {
			snprintf(err, errsz, "%s:%zu: %s listed again "
			    "(first on line %zu)", name, pol->item[i].line,
			    pol->item[i].name, pol->item[i - 1].line);
			goto fail;
		}
	return pol;
fail:
	dane_policy_free(pol);
	return NULL;
}

struct dane_policy *
dane_policy_load(const char *path, char *err, size_t errsz)
{
	struct dane_policy *pol;
	char *buf;
	size_t len;

	if (textfile_read(path, DANE_POLICY_FILE_MAX, 0, &buf, &len, err,
	    errsz) != TEXTFILE_OK)
		return NULL;	/* err says "PATH: what" */
	pol = dane_policy_parse(path, buf, len, err, errsz);
	free(buf);
	return pol;
}

void
dane_policy_free(struct dane_policy *pol)
{
	if (pol == NULL)
		return;
	free(pol->item);
	free(pol);
}

/*
 * The exact name first, then ".parent" entries from the nearest parent
 * up: the first found is the most specific.
 */
const struct dane_policy_entry *
dane_policy_find(const struct dane_policy *pol, const char *domain)
{
	char key[DANE_NAME_MAX + 2];
	const struct dane_policy_item *it;
	size_t len, i;

	if (pol == NULL || pol->n == 0 || domain == NULL)
		return NULL;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > DANE_NAME_MAX)
		return NULL;
	for (i = 0; i < len; i++)
		key[i] = (char)dane_lower((unsigned char)domain[i]);
	key[len] = '\0';
	/* i 0: the name itself (unless it starts with a dot); then each
	 * ".parent" suffix: one bsearch() call for both. */
	for (i = 0; i < len; i++)
		if ((key[i] == '.') == (i != 0) && (it = bsearch(key + i,
		    pol->item, pol->n, sizeof(*it), dane_key_cmp)) != NULL)
			return &it->e;
	return NULL;
}

/* Constant time (sodium_memcmp()), as every comparison of a secret or
 * a pin in ferry is. */
int
dane_policy_pinned(const struct dane_policy_entry *e, const uint8_t *fp,
    const uint8_t *spki)
{
	size_t i;

	/* i / 2 the entry's fingerprint, i % 2 which of the peer's. */
	for (i = 0; i < 2 * e->nfp; i++)
		if (sodium_memcmp(e->fp[i / 2], i % 2 ? spki : fp,
		    sizeof(e->fp[0])) == 0)
			return (int)(i % 2) + 1;
	return 0;
}

/* ASCII, as tolower() is in the C locale ferry runs in, without the two
 * libc symbols (tolower, __ctype_tolower_loc) it costs.  noinline:
 * measured smaller than LTO's inlined copies. */
__attribute__((noinline)) int
dane_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* tls.c's fingerprint list and tls_policy's match= read hex alike: one
 * copy.  c | 0x20 folds A-F onto a-f and nothing else onto them. */
int
dane_hexval(int c)
{
	if ((unsigned)(c - '0') < 10)
		return c - '0';
	c |= 0x20;
	return (unsigned)(c - 'a') < 6 ? c - 'a' + 10 : -1;
}
