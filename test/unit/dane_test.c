/*
 * dane_test.c - dane.c offline: TLSA RDATA parsing and usability, every
 * DANE-EE and DANE-TA selector/matching-type pair matching and not
 * matching the certificates of test/certs/dane/ (made by its make.sh),
 * names and dates, the record data `ferry tlsa` prints (against digests
 * computed with openssl), and the tls_policy file.  The records are built
 * from the DER files with libsodium's SHA-2, not with the mbedTLS code
 * under test.  Run from the repository root.
 */
#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "dane.h"
#include "t.h"

#define CERTS		"test/certs/dane/"
#define FILE_MAX	8192
#define NFILES		32

/*
 * openssl x509 -in test/certs/dane/ee.pem -outform DER | sha256sum
 * openssl x509 -in test/certs/dane/ee.pem -noout -pubkey |
 *     openssl pkey -pubin -outform DER | sha256sum   (sha512sum, od -tx1)
 * and the same for ca.pem (make.sh prints them all).
 */
#define EE_0_1	\
	"7daf5825cbea885af4d72b26a37c8ff9af512cbb8f9e648b0a0114fcb918471b"
#define EE_1_1	\
	"4f5ebde1093b6cb5aece9bd56844d4df43ff814365dc3b34a548e704b3936446"
#define EE_1_2	\
	"e928fc5b8c7350b75454236b7efa513a58379774b8f86e566b7a706b40f78697" \
	"02fb9f3741c84dfb20c5d9a00a7bb01cac2d770a65b8e882588eeb466ed50939"
#define EE_1_0	\
	"3059301306072a8648ce3d020106082a8648ce3d03010703420004aded300a" \
	"d6ae4c51bca227abadf6b7a62a79699fced218d8e49fb1ff738d36dfc74de2" \
	"66e6645fe43914a375e9962f42e80f42d0d200172c21c68ffb263fd32b"
#define CA_0_1	\
	"f01bcdedbbd3269390e3c20426ba0fec603f8cc55be1d942b08123bfdaabdde0"
#define CA_1_1	\
	"8ce955a6759d9e5fdc198d80b0830ba45dbbb5ad350e6b490602ef1faddf036c"

struct file {
	char name[64];
	uint8_t *p;
	size_t len;
};

static struct file files[NFILES];
static size_t nfiles;
static const char *const mx[] = { "mx.dane.test" };

/* test/certs/dane/NAME, read once and kept until the end. */
static const struct file *
file(const char *name)
{
	char path[128];
	struct file *f;
	FILE *fp;
	size_t i;

	for (i = 0; i < nfiles; i++)
		if (strcmp(files[i].name, name) == 0)
			return &files[i];
	if (nfiles == NFILES)
		abort();
	f = &files[nfiles];
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(path, sizeof(path), CERTS "%s", name);
	if ((fp = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		abort();
	}
	if ((f->p = malloc(FILE_MAX)) == NULL)
		abort();
	f->len = fread(f->p, 1, FILE_MAX, fp);
	if (ferror(fp) || f->len == 0 || f->len == FILE_MAX)
		abort();
	fclose(fp);
	nfiles++;
	return f;
}

/* The DER of certificate NAME (selector 0) or of its key (1). */
static const struct file *
sel(const char *name, int selector)
{
	char fn[64];

	snprintf(fn, sizeof(fn), "%s%s", name,
	    selector == DANE_SEL_SPKI ? ".spki.der" : ".der");
	return file(fn);
}

/* Appends a record built as RDATA and parsed: usage selector mtype
 * over bytes p (hashed here for mtype 1/2).  Returns the parse result. */
static int
add_raw(struct dane_rrset *set, int usage, int selector, int mtype,
    const uint8_t *p, size_t len)
{
	static uint8_t rdata[3 + DANE_DATA_MAX + 16];
	size_t n;

	rdata[0] = (uint8_t)usage;
	rdata[1] = (uint8_t)selector;
	rdata[2] = (uint8_t)mtype;
	if (mtype == DANE_MATCH_SHA256) {
		crypto_hash_sha256(rdata + 3, p, len);
		n = 32;
	} else if (mtype == DANE_MATCH_SHA512) {
		crypto_hash_sha512(rdata + 3, p, len);
		n = 64;
	} else {
		if (len > DANE_DATA_MAX + 16)
			abort();
		memcpy(rdata + 3, p, len);
		n = len;
	}
	return dane_tlsa_parse(rdata, 3 + n, &set->r[set->n++]);
}

/* A record for certificate NAME. */
static void
add(struct dane_rrset *set, int usage, int selector, int mtype,
    const char *name)
{
	const struct file *f = sel(name, selector);

	if (add_raw(set, usage, selector, mtype, f->p, f->len) != 0)
		abort();
}

/* Match the chain of named certificates against set. */
static enum dane_verdict
match(const struct dane_rrset *set, const char *const *names, size_t nnames,
    size_t *which, const char *c0, const char *c1, const char *c2)
{
	const char *cn[3] = { c0, c1, c2 };
	struct dane_cert chain[3];
	const struct file *f;
	size_t n = 0;

	while (n < 3 && cn[n] != NULL) {
		f = sel(cn[n], DANE_SEL_CERT);
		chain[n].der = f->p;
		chain[n].len = f->len;
		n++;
	}
	return dane_match(set, chain, n, names, nnames, which);
}

static struct dane_rrset set;	/* 33 KB: not on the stack */

static int
t_parse(void)
{
	uint8_t rd[3 + DANE_DATA_MAX + 1];
	struct dane_tlsa r;
	static const struct {
		uint8_t u, s, m;
		size_t dlen;
		int usable;
	} cases[] = {
		{ 3, 1, 1, 32, 1 }, { 3, 1, 1, 31, 0 }, { 3, 1, 1, 33, 0 },
		{ 3, 0, 2, 64, 1 }, { 3, 0, 2, 63, 0 }, { 2, 1, 2, 32, 0 },
		{ 2, 0, 0, 1, 1 }, { 3, 1, 0, DANE_DATA_MAX, 1 },
		{ 0, 0, 1, 32, 0 }, { 1, 1, 1, 32, 0 }, { 4, 1, 1, 32, 0 },
		{ 255, 1, 1, 32, 0 }, { 3, 2, 1, 32, 0 }, { 3, 1, 3, 32, 0 },
		{ 2, 1, 255, 32, 0 },
	};
	size_t i;

	memset(rd, 0xab, sizeof(rd));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rd[0] = cases[i].u;
		rd[1] = cases[i].s;
		rd[2] = cases[i].m;
		memset(&r, 0x5a, sizeof(r));
		CHECK(dane_tlsa_parse(rd, 3 + cases[i].dlen, &r) == 0);
		CHECK(r.usage == cases[i].u && r.selector == cases[i].s &&
		    r.mtype == cases[i].m);
		CHECK(r.usable == cases[i].usable);
		/* the warning's verdict is the parser's */
		CHECK((dane_tlsa_unusable(rd, 3 + cases[i].dlen) == NULL) ==
		    cases[i].usable);
		CHECK(r.len == cases[i].dlen && r.data[0] == 0xab &&
		    r.data[r.len - 1] == 0xab);
	}
	/* malformed: under 4 bytes, or full data over the limit */
	rd[0] = 3;
	rd[1] = 1;
	rd[2] = 1;
	for (i = 0; i < 4; i++) {
		memset(&r, 0x5a, sizeof(r));
		CHECK(dane_tlsa_parse(rd, i, &r) == -1);
		CHECK(r.usable == 0 && r.len == 0);
	}
	CHECK(r.usage == 3 && r.selector == 1 && r.mtype == 1);
	CHECK(dane_tlsa_parse(rd, 3 + DANE_DATA_MAX + 1, &r) == -1);
	CHECK(r.usable == 0 && r.len == 0 && r.usage == 3);
	/* full data over the limit: kept as its length and SHA-512 */
	rd[2] = 0;
	CHECK(dane_tlsa_parse(rd, 3 + DANE_DATA_MAX + 1, &r) == 0);
	CHECK(r.usable == 1 && r.len == DANE_DATA_MAX + 1 && r.mtype == 0);
	return 0;
}

/* Why a record is passed over: the text the warning gives (RFC 7672
 * section 3.1, RFC 7671 section 4.1). */
static int
t_unusable_why(void)
{
	static const struct {
		uint8_t rd[4];
		size_t len;
		const char *why;
	} cases[] = {
		{ { 1, 1, 1, 0 }, 4, "PKIX usage" },
		{ { 0, 0, 0, 0 }, 4, "PKIX usage" },
		{ { 4, 1, 1, 0 }, 4, "unknown usage" },
		{ { 3, 2, 1, 0 }, 4, "unknown selector" },
		{ { 2, 0, 3, 0 }, 4, "unknown matching type" },
		{ { 3, 1, 1, 0 }, 4, "data of the wrong length" },
		{ { 3, 1, 2, 0 }, 4, "data of the wrong length" },
		{ { 3, 1, 1, 0 }, 3, "RDATA under 4 octets" },
		{ { 3, 1, 1, 0 }, 0, "RDATA under 4 octets" },
		{ { 3, 1, 0, 0 }, 4, NULL },
	};
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = dane_tlsa_unusable(cases[i].rd, cases[i].len);
		CHECK(cases[i].why != NULL ? why != NULL &&
		    strcmp(why, cases[i].why) == 0 : why == NULL);
	}
	return 0;
}

/* A 3 0 0 / 2 0 0 record longer than DANE_DATA_MAX (a whole RSA
 * certificate) still matches exactly its bytes: dropping it would leave
 * an RRset with nothing to authenticate by (unauthenticated TLS). */
static int
t_full_long(void)
{
	static uint8_t der[2 * DANE_DATA_MAX], rd[3 + sizeof(der)];
	struct dane_cert c = { der, sizeof(der) };
	size_t i, which = 99;
	char buf[64];

	for (i = 0; i < sizeof(der); i++)
		der[i] = (uint8_t)(i * 13 + 1);
	rd[0] = DANE_USAGE_DANE_EE;
	rd[1] = DANE_SEL_CERT;
	rd[2] = DANE_MATCH_FULL;
	memcpy(rd + 3, der, sizeof(der));
	memset(&set, 0, sizeof(set));
	CHECK(dane_tlsa_parse(rd, sizeof(rd), &set.r[0]) == 0);
	set.n = 1;
	CHECK(dane_usable(&set) == 1);
	CHECK(dane_match(&set, &c, 1, mx, 1, &which) == DANE_MATCH &&
	    which == 0);
	dane_tlsa_format(&set.r[0], buf, sizeof(buf));
	CHECK(strcmp(buf, "3 0 0 (2048 octets)") == 0);
	/* one byte different, or one byte shorter: no match */
	der[700] ^= 1;
	CHECK(dane_match(&set, &c, 1, mx, 1, NULL) == DANE_NOMATCH);
	der[700] ^= 1;
	c.len--;
	CHECK(dane_match(&set, &c, 1, mx, 1, NULL) == DANE_NOMATCH);
	/* the only record of its set: the host is DANE, not "encrypt" */
	CHECK(dane_host_step(TLS_DANE, 1, DANE_LOOKUP_FOUND, 1, &set, NULL) ==
	    DANE_STEP_DANE);
	return 0;
}

/* Level secure's "nexthop, dot-nexthop": the domain or a name below it,
 * a wildcard only as the label in front of it. */
static int
t_leaf_names(void)
{
	static const char *const nh[] = { "dane.test", ".dane.test" };
	static const char *const other[] = { "test", ".ane.test" };
	static const char *const sub[] = { ".mx.dane.test" };
	char big[DANE_BASE_NAME_MAX + 2];
	const struct file *leaf = sel("leaf", 0), *wild = sel("wild", 0),
	    *cnonly = sel("cnonly", 0), *wrong = sel("wrong", 0);

	CHECK(dane_leaf_names(leaf->p, leaf->len, nh, 2) == 1);
	CHECK(dane_leaf_names(leaf->p, leaf->len, nh, 1) == 0);
	CHECK(dane_leaf_names(wild->p, wild->len, nh, 2) == 1);
	CHECK(dane_leaf_names(wrong->p, wrong->len, nh + 1, 1) == 1);
	CHECK(dane_leaf_names(cnonly->p, cnonly->len, nh, 2) == 1);
	CHECK(dane_leaf_names(leaf->p, leaf->len, other, 2) == 0);
	CHECK(dane_leaf_names(wild->p, wild->len, other, 2) == 0);
	/* not the name itself, and not a wildcard over it */
	CHECK(dane_leaf_names(leaf->p, leaf->len, sub, 1) == 0);
	CHECK(dane_leaf_names(wild->p, wild->len, sub, 1) == 0);
	CHECK(dane_leaf_names(leaf->p, 10, nh, 2) == 0);
	CHECK(dane_leaf_names(NULL, 0, nh, 2) == 0);
	/* dane_leaf_nexthop() builds the same two names */
	CHECK(dane_leaf_nexthop(leaf->p, leaf->len, "dane.test") == 1);
	CHECK(dane_leaf_nexthop(wild->p, wild->len, "dane.test") == 1);
	CHECK(dane_leaf_nexthop(wrong->p, wrong->len, "dane.test") == 1);
	CHECK(dane_leaf_nexthop(leaf->p, leaf->len, "ane.test") == 0);
	CHECK(dane_leaf_nexthop(leaf->p, leaf->len, "mx.dane.test") == 1);
	CHECK(dane_leaf_nexthop(leaf->p, leaf->len, "x.mx.dane.test") == 0);
	/* ".name" does not fit: no host name is that long, nothing matches */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(dane_leaf_nexthop(leaf->p, leaf->len, big) == 0);
	return 0;
}

static int
t_usable(void)
{
	uint8_t d31[31] = { 0 };
	size_t i;

	memset(&set, 0, sizeof(set));
	CHECK(dane_usable(&set) == 0);
	add(&set, 3, 1, 1, "ee");
	add(&set, 0, 1, 1, "ee");
	add(&set, 2, 0, 2, "ca");
	CHECK(add_raw(&set, 3, 1, 0, d31, 0) == -1);	/* 3 bytes */
	CHECK(dane_usable(&set) == 2);
	/* records past DANE_RECORDS_MAX are not looked at */
	memset(&set, 0, sizeof(set));
	for (i = 0; i < DANE_RECORDS_MAX; i++)
		add(&set, 1, 1, 1, "ee");
	set.n = DANE_RECORDS_MAX + 1;
	CHECK(dane_usable(&set) == 0);
	/* a record marked usable by hand but with a bad length is not */
	memset(&set, 0, sizeof(set));
	add(&set, 3, 1, 1, "ee");
	set.r[0].len = 31;
	CHECK(dane_usable(&set) == 0);
	set.r[0].len = 32;
	CHECK(dane_usable(&set) == 1);
	return 0;
}

/* DANE-EE: all six selector/type pairs match the leaf, not another. */
static int
t_ee_all(void)
{
	static const char *const other[] = { "other.example" };
	size_t which;
	int s, m;

	for (s = 0; s <= 1; s++)
		for (m = 0; m <= 2; m++) {
			memset(&set, 0, sizeof(set));
			add(&set, 3, s, m, "ee");
			which = 99;
			CHECK(match(&set, mx, 1, &which, "ee", NULL, NULL) ==
			    DANE_MATCH);
			CHECK(which == 0);
			/* names do not matter for DANE-EE */
			CHECK(match(&set, other, 1, NULL, "ee", NULL, NULL) ==
			    DANE_MATCH);
			CHECK(match(&set, NULL, 0, NULL, "ee", NULL, NULL) ==
			    DANE_MATCH);
			CHECK(match(&set, mx, 1, &which, "leaf", "ca",
			    NULL) == DANE_NOMATCH);
			CHECK(match(&set, mx, 1, &which, "ee-expired", NULL,
			    NULL) == DANE_NOMATCH);
		}
	return 0;
}

static int
t_ee_wrong_digest(void)
{
	size_t m;

	for (m = 0; m < 3; m++) {
		memset(&set, 0, sizeof(set));
		add(&set, 3, 1, (int)m, "ee");
		set.r[0].data[set.r[0].len - 1] ^= 1;
		CHECK(dane_usable(&set) == 1);
		CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) ==
		    DANE_NOMATCH);
	}
	/* a full-data record one byte short of the key */
	memset(&set, 0, sizeof(set));
	add(&set, 3, 1, 0, "ee");
	set.r[0].len--;
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_NOMATCH);
	return 0;
}

/* DANE-EE ignores dates (RFC 7672 §3.1.1). */
static int
t_ee_expired(void)
{
	memset(&set, 0, sizeof(set));
	add(&set, 3, 1, 1, "ee-expired");
	CHECK(match(&set, mx, 1, NULL, "ee-expired", NULL, NULL) ==
	    DANE_MATCH);
	memset(&set, 0, sizeof(set));
	add(&set, 3, 0, 2, "ee-expired");
	CHECK(match(&set, mx, 1, NULL, "ee-expired", NULL, NULL) ==
	    DANE_MATCH);
	return 0;
}

/* DANE-EE looks at the leaf only: the CA's digest does not do. */
static int
t_ee_leaf_only(void)
{
	memset(&set, 0, sizeof(set));
	add(&set, 3, 1, 1, "ca");
	add(&set, 3, 0, 1, "ca");
	CHECK(match(&set, mx, 1, NULL, "leaf", "ca", NULL) == DANE_NOMATCH);
	return 0;
}

/* DANE-TA: all six pairs for the private CA. */
static int
t_ta_all(void)
{
	size_t which;
	int s, m;

	for (s = 0; s <= 1; s++)
		for (m = 0; m <= 2; m++) {
			memset(&set, 0, sizeof(set));
			add(&set, 2, s, m, "ca");
			which = 99;
			CHECK(match(&set, mx, 1, &which, "leaf", "ca",
			    NULL) == DANE_MATCH);
			CHECK(which == 0);
			/* the CA is not in the chain sent */
			CHECK(match(&set, mx, 1, NULL, "leaf", NULL, NULL) ==
			    DANE_NOMATCH);
			/* another CA's chain */
			CHECK(match(&set, mx, 1, NULL, "deep", "int",
			    "root") == DANE_NOMATCH);
			/* a DANE-TA record of the leaf's own CA does not
			 * vouch for a self-signed certificate */
			CHECK(match(&set, mx, 1, NULL, "ee", "ca", NULL) ==
			    DANE_NOMATCH);
		}
	return 0;
}

static int
t_ta_wrong_name(void)
{
	static const char *const wrong[] = { "wrong.dane.test" };

	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 1, "ca");
	CHECK(match(&set, mx, 1, NULL, "wrong", "ca", NULL) == DANE_NOMATCH);
	/* the name was the only thing wrong */
	CHECK(match(&set, wrong, 1, NULL, "wrong", "ca", NULL) ==
	    DANE_MATCH);
	CHECK(match(&set, NULL, 0, NULL, "leaf", "ca", NULL) ==
	    DANE_NOMATCH);
	return 0;
}

/* dane_match_base(): the names are the TLSA base domain, the host as
 * named and the next hop; "wrong" names wrong.dane.test only. */
static int
t_ta_base_names(void)
{
	struct dane_cert chain[2];
	struct dane_base b;
	const struct file *f;

	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 1, "ca");
	f = sel("wrong", DANE_SEL_CERT);
	chain[0].der = f->p;
	chain[0].len = f->len;
	f = sel("ca", DANE_SEL_CERT);
	chain[1].der = f->p;
	chain[1].len = f->len;
	dane_base_init(&b, "mx.dane.test", NULL, 0);
	CHECK(dane_match_base(&set, chain, 2, &b, "dane.test", NULL) ==
	    DANE_NOMATCH);
	/* as the next hop, the end of a secure chain, the host itself */
	CHECK(dane_match_base(&set, chain, 2, &b, "wrong.dane.test", NULL) ==
	    DANE_MATCH);
	dane_base_init(&b, "mx.dane.test", "wrong.dane.test", 1);
	CHECK(dane_match_base(&set, chain, 2, &b, "dane.test", NULL) ==
	    DANE_MATCH);
	/* once the lookup moved on to the host's own name, the chain's end
	 * is no reference identifier any more */
	CHECK(dane_base_next(&b, DANE_LOOKUP_EMPTY, 1) == 1);
	CHECK(dane_match_base(&set, chain, 2, &b, "dane.test", NULL) ==
	    DANE_NOMATCH);
	dane_base_init(&b, "wrong.dane.test", NULL, 0);
	CHECK(dane_match_base(&set, chain, 2, &b, "dane.test", NULL) ==
	    DANE_MATCH);
	return 0;
}

/* The leaf names the CA as issuer but another key signed it. */
static int
t_ta_bad_signature(void)
{
	memset(&set, 0, sizeof(set));
	add(&set, 2, 1, 1, "ca");
	add(&set, 2, 0, 2, "ca");
	CHECK(match(&set, mx, 1, NULL, "forged", "ca", NULL) ==
	    DANE_NOMATCH);
	CHECK(match(&set, mx, 1, NULL, "leaf", "ca", NULL) == DANE_MATCH);
	return 0;
}

/* DANE-TA checks dates (RFC 7671 §5.2.2 validates the chain). */
static int
t_ta_expired(void)
{
	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 1, "ca");
	CHECK(match(&set, mx, 1, NULL, "leaf-expired", "ca", NULL) ==
	    DANE_NOMATCH);
	return 0;
}

static int
t_ta_two_levels(void)
{
	size_t which = 99;

	memset(&set, 0, sizeof(set));
	add(&set, 2, 1, 1, "root");
	CHECK(match(&set, mx, 1, &which, "deep", "int", "root") ==
	    DANE_MATCH);
	CHECK(which == 0);
	/* without the intermediate the chain does not reach the root */
	CHECK(match(&set, mx, 1, NULL, "deep", "root", NULL) ==
	    DANE_NOMATCH);
	/* the intermediate as the anchor */
	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 2, "int");
	CHECK(match(&set, mx, 1, NULL, "deep", "int", "root") == DANE_MATCH);
	CHECK(match(&set, mx, 1, NULL, "deep", "int", NULL) == DANE_MATCH);
	/* a DANE-TA record of the leaf, a DANE-EE one of the issuer */
	memset(&set, 0, sizeof(set));
	add(&set, 2, 1, 1, "deep");
	add(&set, 3, 1, 1, "int");
	CHECK(match(&set, mx, 1, NULL, "deep", "ca", NULL) == DANE_NOMATCH);
	return 0;
}

/* DANE-TA records are for issuers: one naming the leaf does not match,
 * not even a self-signed one (that is what DANE-EE is for). */
static int
t_ta_not_leaf(void)
{
	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 1, "ee");
	add(&set, 2, 1, 2, "ee");
	add(&set, 2, 1, 1, "leaf");
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_NOMATCH);
	CHECK(match(&set, mx, 1, NULL, "leaf", "ca", NULL) == DANE_NOMATCH);
	return 0;
}

static int
t_ta_names(void)
{
	static const char *const two[] = { "mx.other.example",
	    "mx.dane.test" };
	static const char *const apex[] = { "dane.test" };
	static const char *const deeper[] = { "a.b.dane.test" };
	static const char *const star[] = { "*.dane.test" };
	static const char *const upper[] = { "MX.Dane.TEST." };
	static const char *const cn[] = { "wildcard.example" };
	static const char *const longer[] = { "mx.dane.test.evil.example",
	    "mx.dane.tes", "x.mx.dane.test" };

	memset(&set, 0, sizeof(set));
	add(&set, 2, 0, 1, "ca");
	CHECK(match(&set, two, 2, NULL, "leaf", "ca", NULL) == DANE_MATCH);
	CHECK(match(&set, upper, 1, NULL, "leaf", "ca", NULL) == DANE_MATCH);
	/* *.dane.test: one label, not the apex, not two */
	CHECK(match(&set, mx, 1, NULL, "wild", "ca", NULL) == DANE_MATCH);
	CHECK(match(&set, apex, 1, NULL, "wild", "ca", NULL) ==
	    DANE_NOMATCH);
	CHECK(match(&set, deeper, 1, NULL, "wild", "ca", NULL) ==
	    DANE_NOMATCH);
	CHECK(match(&set, star, 1, NULL, "wild", "ca", NULL) ==
	    DANE_NOMATCH);
	/* a prefix or a suffix of the name is not the name */
	CHECK(match(&set, longer, 3, NULL, "wild", "ca", NULL) ==
	    DANE_NOMATCH);
	CHECK(match(&set, longer, 3, NULL, "leaf", "ca", NULL) ==
	    DANE_NOMATCH);
	CHECK(match(&set, longer, 3, NULL, "cnonly", "ca", NULL) ==
	    DANE_NOMATCH);
	/* the CN does not count when there is a DNS SAN ... */
	CHECK(match(&set, cn, 1, NULL, "wild", "ca", NULL) == DANE_NOMATCH);
	/* ... and does when there is none */
	CHECK(match(&set, mx, 1, NULL, "cnonly", "ca", NULL) == DANE_MATCH);
	CHECK(match(&set, upper, 1, NULL, "cnonly", "ca", NULL) ==
	    DANE_MATCH);
	CHECK(match(&set, apex, 1, NULL, "cnonly", "ca", NULL) ==
	    DANE_NOMATCH);
	return 0;
}

static int
t_nousable(void)
{
	uint8_t d[32], rd[3 + 32];
	size_t which = 99;

	/* only PKIX usages, even though they would match */
	memset(&set, 0, sizeof(set));
	add(&set, 0, 0, 1, "ca");
	add(&set, 1, 1, 1, "leaf");
	CHECK(match(&set, mx, 1, &which, "leaf", "ca", NULL) ==
	    DANE_NOUSABLE);
	CHECK(which == 0);
	/* bad lengths: the right SHA-256 cut to 31 bytes, SHA-512 of 32 */
	memset(&set, 0, sizeof(set));
	crypto_hash_sha256(d, sel("ee", 1)->p, sel("ee", 1)->len);
	rd[0] = 3;
	rd[1] = 1;
	rd[2] = 1;
	memcpy(rd + 3, d, 32);
	CHECK(dane_tlsa_parse(rd, 3 + 31, &set.r[set.n++]) == 0);
	CHECK(set.r[0].usable == 0);
	rd[2] = 2;
	CHECK(dane_tlsa_parse(rd, 3 + 32, &set.r[set.n++]) == 0);
	CHECK(set.r[1].usable == 0);
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_NOUSABLE);
	/* the same digest whole is usable and matches */
	rd[2] = 1;
	CHECK(dane_tlsa_parse(rd, 3 + 32, &set.r[set.n++]) == 0);
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_MATCH);
	set.n--;
	/* unknown selector and type */
	add(&set, 3, 1, 1, "ee");
	set.r[2].selector = 2;
	set.r[2].usable = 0;
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_NOUSABLE);
	memset(&set, 0, sizeof(set));
	CHECK(match(&set, mx, 1, NULL, "ee", NULL, NULL) == DANE_NOUSABLE);
	return 0;
}

/* Any one record is enough; which names it. */
static int
t_several(void)
{
	size_t which = 99;

	memset(&set, 0, sizeof(set));
	add(&set, 1, 1, 1, "ee");		/* unusable */
	add(&set, 3, 1, 1, "leaf");		/* no match */
	add(&set, 2, 0, 1, "root");		/* no match */
	add(&set, 3, 0, 2, "ee");		/* match */
	add(&set, 3, 1, 1, "ee");		/* also, later */
	CHECK(match(&set, mx, 1, &which, "ee", NULL, NULL) == DANE_MATCH);
	CHECK(which == 3);
	CHECK(match(&set, mx, 1, &which, "leaf", "ca", NULL) == DANE_MATCH);
	CHECK(which == 1);
	/* no chain at all */
	CHECK(dane_match(&set, NULL, 0, mx, 1, &which) == DANE_NOMATCH);
	return 0;
}

/* Garbage where a certificate should be matches no key. */
static int
t_garbage_chain(void)
{
	static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	struct dane_cert chain[3];

	memset(&set, 0, sizeof(set));
	add_raw(&set, 3, 1, 0, junk, sizeof(junk));
	add_raw(&set, 2, 1, 0, junk, sizeof(junk));
	add_raw(&set, 2, 0, 0, junk, sizeof(junk));
	add(&set, 2, 0, 1, "ca");
	chain[0].der = junk;
	chain[0].len = sizeof(junk);
	chain[1].der = sel("ca", 0)->p;
	chain[1].len = sel("ca", 0)->len;
	CHECK(dane_match(&set, chain, 2, mx, 1, NULL) == DANE_NOMATCH);
	/* garbage between a real leaf and its CA is stepped over */
	chain[0].der = sel("leaf", 0)->p;
	chain[0].len = sel("leaf", 0)->len;
	chain[1].der = junk;
	chain[1].len = sizeof(junk);
	chain[2].der = sel("ca", 0)->p;
	chain[2].len = sel("ca", 0)->len;
	CHECK(dane_match(&set, chain, 2, mx, 1, NULL) == DANE_NOMATCH);
	CHECK(dane_match(&set, chain, 3, mx, 1, NULL) == DANE_MATCH);
	return 0;
}

static int
t_format(void)
{
	char buf[64], want[32];
	struct dane_tlsa r;
	static const uint8_t rd[] = { 3, 0, 0, 0x01, 0xa2 };

	memset(&set, 0, sizeof(set));
	add(&set, 3, 1, 1, "ee");
	snprintf(want, sizeof(want), "3 1 1 %.12s...", EE_1_1);
	dane_tlsa_format(&set.r[0], buf, sizeof(buf));
	CHECK_STR(buf, want);
	CHECK(dane_tlsa_parse(rd, sizeof(rd), &r) == 0);
	dane_tlsa_format(&r, buf, sizeof(buf));
	CHECK_STR(buf, "3 0 0 01a2");
	dane_tlsa_format(&set.r[0], buf, 8);
	CHECK(strlen(buf) == 7 && strncmp(buf, want, 7) == 0);
	memset(buf, 'x', sizeof(buf));
	dane_tlsa_format(&set.r[0], buf, 0);
	CHECK(buf[0] == 'x');
	return 0;
}

static int
t_tlsa_data(void)
{
	char out[2 * DANE_DATA_MAX + 1];
	const struct file *ee = sel("ee", 0), *ca = sel("ca", 0);

	CHECK(dane_tlsa_data(ee->p, ee->len, 0, 1, out, sizeof(out)) == 0);
	CHECK_STR(out, EE_0_1);
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 1, out, sizeof(out)) == 0);
	CHECK_STR(out, EE_1_1);
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 2, out, sizeof(out)) == 0);
	CHECK_STR(out, EE_1_2);
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 0, out, sizeof(out)) == 0);
	CHECK_STR(out, EE_1_0);
	CHECK(dane_tlsa_data(ca->p, ca->len, 0, 1, out, sizeof(out)) == 0);
	CHECK_STR(out, CA_0_1);
	CHECK(dane_tlsa_data(ca->p, ca->len, 1, 1, out, sizeof(out)) == 0);
	CHECK_STR(out, CA_1_1);
	/* 3 0 0 is the certificate itself */
	CHECK(dane_tlsa_data(ee->p, ee->len, 0, 0, out, sizeof(out)) == 0);
	CHECK(strlen(out) == 2 * ee->len);
	CHECK(strncmp(out, "3082", 4) == 0);
	/* exactly enough room, and one byte less */
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 1, out, 65) == 0);
	CHECK_STR(out, EE_1_1);
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 1, out, 64) == -1);
	CHECK(out[0] == '\0');
	CHECK(dane_tlsa_data(ee->p, ee->len, 2, 1, out, sizeof(out)) == -1);
	CHECK(dane_tlsa_data(ee->p, ee->len, 1, 3, out, sizeof(out)) == -1);
	CHECK(dane_tlsa_data(ee->p, ee->len / 2, 1, 1, out, sizeof(out)) ==
	    -1);
	CHECK(dane_tlsa_data(ee->p + 1, ee->len - 1, 1, 1, out,
	    sizeof(out)) == -1);
	return 0;
}

#define POLICY_OK \
	"# tls_policy\n" \
	"\n" \
	"example.org\tmay\n" \
	".example.org  encrypt   # subdomains\n" \
	".mx.example.org secure\r\n" \
	"a.mx.example.org none\n" \
	"  Dane.Example.NET. dane\n" \
	"only.example.net dane-only\n" \
	"v.example.net verify\n" \
	"fp.example.net fingerprint match=sha256:" EE_1_1 "," CA_1_1 "\n" \
	"fp2.example.net fingerprint match=SHA256:%s match=sha256:" CA_0_1 "\n" \
	"2001:DB8:0::1 encrypt\n" \
	"::ffff:192.0.2.7 none\n" \
	"192.0.2.8 secure\n"

/* 64 hex digits to bytes. */
static void
unhex(const char *hex, uint8_t *out)
{
	size_t i;
	unsigned v;

	for (i = 0; i < 32; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			abort();
		out[i] = (uint8_t)v;
	}
}

/* "AB:CD:...", as openssl x509 -fingerprint prints it. */
static void
colons(const char *hex, char *out)
{
	size_t i;

	for (i = 0; i < 32; i++)
		snprintf(out + 3 * i, 4, "%c%c%s",
		    toupper((unsigned char)hex[2 * i]),
		    toupper((unsigned char)hex[2 * i + 1]), i < 31 ? ":" : "");
}

static int
t_policy(void)
{
	struct dane_policy *p;
	const struct dane_policy_entry *e;
	char err[256] = "", fp[96], text[1024];
	uint8_t want[32];

	colons(EE_0_1, fp);
	snprintf(text, sizeof(text), POLICY_OK, fp);
	p = dane_policy_parse("tls_policy", text, strlen(text), err,
	    sizeof(err));
	if (p == NULL)
		fprintf(stderr, "  %s\n", err);
	CHECK(p != NULL);
	CHECK((e = dane_policy_find(p, "example.org")) != NULL &&
	    e->level == TLS_MAY && e->nfp == 0);
	CHECK((e = dane_policy_find(p, "x.example.org")) != NULL &&
	    e->level == TLS_ENCRYPT);
	CHECK((e = dane_policy_find(p, "y.x.example.org")) != NULL &&
	    e->level == TLS_ENCRYPT);
	CHECK((e = dane_policy_find(p, "mx.example.org")) != NULL &&
	    e->level == TLS_ENCRYPT);
	CHECK((e = dane_policy_find(p, "b.mx.example.org")) != NULL &&
	    e->level == TLS_SECURE);
	CHECK((e = dane_policy_find(p, "a.mx.example.org")) != NULL &&
	    e->level == TLS_NONE);
	CHECK((e = dane_policy_find(p, "x.a.mx.example.org")) != NULL &&
	    e->level == TLS_SECURE);
	CHECK((e = dane_policy_find(p, "EXAMPLE.ORG.")) != NULL &&
	    e->level == TLS_MAY);
	CHECK((e = dane_policy_find(p, "dane.example.net")) != NULL &&
	    e->level == TLS_DANE);
	CHECK((e = dane_policy_find(p, "only.example.net")) != NULL &&
	    e->level == TLS_DANE_ONLY);
	CHECK((e = dane_policy_find(p, "v.example.net")) != NULL &&
	    e->level == TLS_VERIFY);
	/* IPv6 keys in the text sched.c names [IPv6:...] destinations by
	 * (an IPv4-mapped one is its IPv4 address). */
	CHECK((e = dane_policy_find(p, "2001:db8::1")) != NULL &&
	    e->level == TLS_ENCRYPT);
	CHECK((e = dane_policy_find(p, "192.0.2.7")) != NULL &&
	    e->level == TLS_NONE);
	CHECK((e = dane_policy_find(p, "192.0.2.8")) != NULL &&
	    e->level == TLS_SECURE);
	CHECK(dane_policy_find(p, "2001:db8::2") == NULL);
	CHECK(dane_policy_find(p, "org") == NULL);
	CHECK(dane_policy_find(p, "example.net") == NULL);
	CHECK(dane_policy_find(p, "x.dane.example.net") == NULL);
	CHECK(dane_policy_find(p, "badexample.org") == NULL);
	CHECK(dane_policy_find(p, "") == NULL);
	CHECK(dane_policy_find(p, ".") == NULL);
	CHECK(dane_policy_find(p, ".example.org") == NULL);
	CHECK((e = dane_policy_find(p, "fp.example.net")) != NULL &&
	    e->level == TLS_FINGERPRINT && e->nfp == 2);
	unhex(EE_1_1, want);
	CHECK(memcmp(e->fp[0], want, 32) == 0);
	unhex(CA_1_1, want);
	CHECK(memcmp(e->fp[1], want, 32) == 0);
	CHECK((e = dane_policy_find(p, "fp2.example.net")) != NULL &&
	    e->level == TLS_FINGERPRINT && e->nfp == 2);
	unhex(EE_0_1, want);
	CHECK(memcmp(e->fp[0], want, 32) == 0);
	unhex(CA_0_1, want);
	CHECK(memcmp(e->fp[1], want, 32) == 0);
	dane_policy_free(p);

	/* empty is fine */
	CHECK((p = dane_policy_parse("e", "", 0, err, sizeof(err))) != NULL);
	CHECK(dane_policy_find(p, "example.org") == NULL);
	dane_policy_free(p);
	dane_policy_free(NULL);
	CHECK(dane_policy_find(NULL, "example.org") == NULL);
	return 0;
}

static int
t_policy_errors(void)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{ "a.org may\nb.org sometimes\n",
		  "P:2: unknown level (none, may, encrypt, dane, dane-only, "
		  "fingerprint, verify, secure)" },
		{ "a.org smtps\n", "P:1: unknown level (none, may, encrypt, "
		  "dane, dane-only, fingerprint, verify, secure)" },
		{ "\n\na.org\n", "P:3: level missing" },
		{ "a.org fingerprint\n",
		  "P:1: the fingerprint level needs match=sha256:HEX" },
		{ "a.org dane match=sha256:" EE_1_1 "\n",
		  "P:1: match= is only for the fingerprint level" },
		{ "a.org fingerprint match=" EE_1_1 "\n",
		  "P:1: match= wants sha256:HEX" },
		{ "a.org fingerprint match=sha1:0102\n",
		  "P:1: match= wants sha256:HEX" },
		{ "a.org fingerprint match=sha256:" EE_0_1 "00\n",
		  "P:1: fingerprint too long (want 32 bytes)" },
		{ "a.org fingerprint match=sha256:abcd\n",
		  "P:1: fingerprint too short (want 32 bytes)" },
		{ "a.org fingerprint match=sha256:\n",
		  "P:1: fingerprint too short (want 32 bytes)" },
		{ "a.org fingerprint match=sha256:" EE_0_1 ":\n",
		  "P:1: fingerprint ends in ':'" },
		{ "a.org fingerprint match=sha256:zz\n",
		  "P:1: not a hex digit in the fingerprint" },
		{ "a.org fingerprint match=sha256:a\n",
		  "P:1: not a hex digit in the fingerprint" },
		{ "a.org fingerprint match=sha256:" EE_1_1 "," EE_1_1 ","
		  EE_1_1 "," EE_1_1 "," EE_1_1 "\n",
		  "P:1: too many fingerprints (at most 4)" },
		{ "a.org fingerprint match=sha256:" EE_1_1 ",\n",
		  "P:1: fingerprint too short (want 32 bytes)" },
		{ "a.org may tls=yes\n",
		  "P:1: unknown option (only match=sha256:HEX)" },
		{ "a.org may match=\n",
		  "P:1: unknown option (only match=sha256:HEX)" },
		{ "a_b.org may\n", "P:1: bad character in the domain" },
		{ "a..org may\n", "P:1: empty label in the domain" },
		{ "..org may\n", "P:1: empty label in the domain" },
		{ ". may\n", "P:1: empty domain" },
		{ "2001:db8::zz may\n", "P:1: bad IPv6 address" },
		{ "2001:db8::1:2:3:4:5:6:7 may\n", "P:1: bad IPv6 address" },
		{ "0000:0000:0000:0000:0000:0000:0000:0000:0000:0001 may\n",
		  "P:1: bad IPv6 address" },
		{ "::1 may\n0::1 none\n",
		  "P:2: ::1 listed again (first on line 1)" },
		{ "a.org. may\n.a.org may\nx.org none\nA.ORG encrypt\n",
		  "P:4: a.org listed again (first on line 1)" },
		{ "a.org may\n.a.org may\n.A.org. none\n",
		  "P:3: .a.org listed again (first on line 2)" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaa.org may\n",
		  "P:1: label longer than 63 in the domain" },
	};
	static const char nul[] = "a.org\tmay\nb.org\0may\n";
	struct dane_policy *p;
	char err[256];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = strlen(cases[i].text);
		strcpy(err, "unset");
		p = dane_policy_parse("P", cases[i].text, len, err,
		    sizeof(err));
		if (p != NULL || strcmp(err, cases[i].err) != 0)
			fprintf(stderr, "  case %zu: %s\n", i, err);
		CHECK(p == NULL);
		CHECK_STR(err, cases[i].err);
	}
	/* the text is not a C string: a NUL inside a line is an error */
	p = dane_policy_parse("P", nul, sizeof(nul) - 1, err, sizeof(err));
	CHECK(p == NULL);
	CHECK_STR(err, "P:2: NUL byte in the line");
	return 0;
}

static int
t_policy_limits(void)
{
	struct dane_policy *p;
	char *text, err[256], name[32];
	const struct dane_policy_entry *e;
	size_t i, len = 0, cap = (DANE_POLICY_MAX + 1) * 32;

	CHECK((text = malloc(cap)) != NULL);
	for (i = 0; i < DANE_POLICY_MAX; i++)
		len += (size_t)snprintf(text + len, cap - len,
		    "d%zu.example secure\n", i);
	p = dane_policy_parse("P", text, len, err, sizeof(err));
	CHECK(p != NULL);
	for (i = 0; i < DANE_POLICY_MAX; i += 97) {
		snprintf(name, sizeof(name), "d%zu.example", i);
		CHECK((e = dane_policy_find(p, name)) != NULL &&
		    e->level == TLS_SECURE);
	}
	dane_policy_free(p);
	len += (size_t)snprintf(text + len, cap - len, "one.more may\n");
	p = dane_policy_parse("P", text, len, err, sizeof(err));
	free(text);
	CHECK(p == NULL);
	CHECK_STR(err, "P:1025: too many entries");
	/* a name of 253 and one of 254 */
	{
		char dom[300];

		memset(dom, 'a', sizeof(dom));
		for (i = 63; i < 253; i += 64)
			dom[i] = '.';
		strcpy(dom + 253, " may\n");
		p = dane_policy_parse("P", dom, strlen(dom), err,
		    sizeof(err));
		CHECK(p != NULL);
		dom[253] = '\0';
		CHECK(dane_policy_find(p, dom) != NULL);
		dane_policy_free(p);
		memset(dom, 'a', sizeof(dom));
		for (i = 63; i < 254; i += 64)
			dom[i] = '.';
		strcpy(dom + 254, " may\n");
		p = dane_policy_parse("P", dom, strlen(dom), err,
		    sizeof(err));
		CHECK(p == NULL);
		CHECK_STR(err, "P:1: domain too long");
	}
	return 0;
}

static int
t_policy_load(void)
{
	char dir[] = "/tmp/dane_test.XXXXXX", path[64], err[256];
	struct dane_policy *p;
	const struct dane_policy_entry *e;
	FILE *fp;
	int ok = 1;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/tls_policy", dir);
	CHECK((fp = fopen(path, "w")) != NULL);
	fputs(".example.com secure\nbad.example.com none\n", fp);
	CHECK(fclose(fp) == 0);
	p = dane_policy_load(path, err, sizeof(err));
	ok = p != NULL && (e = dane_policy_find(p, "bad.example.com")) !=
	    NULL && e->level == TLS_NONE;
	dane_policy_free(p);
	CHECK(ok);
	/* errors name the file */
	CHECK((fp = fopen(path, "w")) != NULL);
	fputs("example.com secure\nexample.com none\n", fp);
	CHECK(fclose(fp) == 0);
	CHECK(dane_policy_load(path, err, sizeof(err)) == NULL);
	CHECK(strncmp(err, path, strlen(path)) == 0);
	CHECK(strstr(err, ":2: example.com listed again") != NULL);
	/* too large */
	CHECK((fp = fopen(path, "w")) != NULL);
	CHECK(fseek(fp, DANE_POLICY_FILE_MAX, SEEK_SET) == 0);
	fputc('\n', fp);
	CHECK(fclose(fp) == 0);
	CHECK(dane_policy_load(path, err, sizeof(err)) == NULL);
	CHECK(strncmp(err, path, strlen(path)) == 0);
	CHECK(unlink(path) == 0);
	/* missing, and not a regular file */
	CHECK(dane_policy_load(path, err, sizeof(err)) == NULL);
	CHECK(strstr(err, strerror(ENOENT)) != NULL);
	CHECK(dane_policy_load(dir, err, sizeof(err)) == NULL);
	CHECK(strncmp(err, dir, strlen(dir)) == 0);
	CHECK(rmdir(dir) == 0);
	return 0;
}

static const struct t_case cases[] = {
	{ "TLSA RDATA and usability", t_parse },
	{ "TLSA: why a record is unusable", t_unusable_why },
	{ "dane_usable", t_usable },
	{ "full data over DANE_DATA_MAX matches by SHA-512", t_full_long },
	{ "dane_leaf_names: nexthop, dot-nexthop", t_leaf_names },
	{ "DANE-EE 3 {0,1} {0,1,2} match and mismatch", t_ee_all },
	{ "DANE-EE wrong digest", t_ee_wrong_digest },
	{ "DANE-EE expired certificate still matches", t_ee_expired },
	{ "DANE-EE looks at the leaf only", t_ee_leaf_only },
	{ "DANE-TA 2 {0,1} {0,1,2} match and mismatch", t_ta_all },
	{ "DANE-TA leaf for the wrong name", t_ta_wrong_name },
	{ "DANE-TA names from the TLSA base domain", t_ta_base_names },
	{ "DANE-TA chain that does not verify", t_ta_bad_signature },
	{ "DANE-TA expired leaf", t_ta_expired },
	{ "DANE-TA two-level chain", t_ta_two_levels },
	{ "DANE-TA does not match the leaf", t_ta_not_leaf },
	{ "DANE-TA names: SAN, wildcard, CN", t_ta_names },
	{ "only unusable records", t_nousable },
	{ "several records, which", t_several },
	{ "garbage in the chain", t_garbage_chain },
	{ "dane_tlsa_format", t_format },
	{ "dane_tlsa_data against openssl", t_tlsa_data },
	{ "tls_policy parsing and lookups", t_policy },
	{ "tls_policy errors", t_policy_errors },
	{ "tls_policy limits", t_policy_limits },
	{ "tls_policy load", t_policy_load },
};

int
main(void)
{
	int ret;
	size_t i;

	if (sodium_init() < 0)
		return 1;
	ret = t_run("dane", cases, sizeof(cases) / sizeof(cases[0]));
	for (i = 0; i < nfiles; i++)
		free(files[i].p);
	return ret;
}
