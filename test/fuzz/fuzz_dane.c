/*
 * fuzz_dane.c - libFuzzer target for dane.c.  The first byte picks what
 * the rest is (mod 3): 0 one TLSA RDATA for dane_tlsa_parse(), 1 a
 * tls_policy file for dane_policy_parse() and lookups, 2 a certificate
 * (DER) sent as leaf and as its own issuer to dane_match() with DANE-EE
 * and DANE-TA records of itself, so the name and chain code runs on
 * whatever mbedTLS accepts, and to dane_tlsa_data().  Beyond "no crash"
 * it checks the parser's contract: the return value follows the length
 * rules (full data of any length is kept, over DANE_DATA_MAX as its
 * SHA-512), usable follows the RFC 7672 rules, output is terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha512.h>

#include "compat.h"
#include "dane.h"

#if COMPAT_MBEDTLS3
#define FUZZ_SHA512(in, n, out)	mbedtls_sha512((in), (n), (out), 0)
#else
#define FUZZ_SHA512(in, n, out)	mbedtls_sha512_ret((in), (n), (out), 0)
#endif

#define FUZZ_NAME_MAX	80	/* a domain taken from the input */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct dane_rrset set;	/* 33 KB */

static void
fuzz_tlsa(const uint8_t *p, size_t n)
{
	struct dane_tlsa *r = &set.r[0];
	uint8_t digest[64];
	char buf[48];
	size_t want, sz;
	int ret, usable, big;

	big = n >= 4 && n - 3 > DANE_DATA_MAX;
	ret = dane_tlsa_parse(p, n, r);
	if (ret != (n < 4 || (big && p[2] != 0) ? -1 : 0))
		abort();
	if (ret == -1) {
		if (r->usable || r->len != 0)
			abort();
		return;
	}
	if (r->len != n - 3 || r->usage != p[0] || r->selector != p[1] ||
	    r->mtype != p[2])
		abort();
	if (!big && memcmp(r->data, p + 3, r->len) != 0)
		abort();
	if (big && (FUZZ_SHA512(p + 3, n - 3, digest) != 0 ||
	    memcmp(r->data, digest, sizeof(digest)) != 0))
		abort();
	want = p[2] == 1 ? 32 : p[2] == 2 ? 64 : 0;
	usable = (p[0] == 2 || p[0] == 3) && p[1] <= 1 && p[2] <= 2 &&
	    (want == 0 || r->len == want);
	if (r->usable != usable)
		abort();
	set.n = 1;
	if (dane_usable(&set) != (size_t)usable)
		abort();
	for (sz = 1; sz <= sizeof(buf); sz += 7) {
		memset(buf, 'x', sizeof(buf));
		dane_tlsa_format(r, buf, sz);
		if (memchr(buf, '\0', sz) == NULL)
			abort();
	}
}

static void
fuzz_policy(const uint8_t *p, size_t n)
{
	static const char *const names[] = { "example.org", "a.example.org",
	    "b.a.example.org", "org", "", "." };
	struct dane_policy *pol;
	const struct dane_policy_entry *e;
	char err[128], name[FUZZ_NAME_MAX + 1];
	size_t i, k;

	memset(err, 'x', sizeof(err));
	pol = dane_policy_parse("F", (const char *)p, n, err, sizeof(err));
	if (pol == NULL) {
		if (memchr(err, '\0', sizeof(err)) == NULL ||
		    strncmp(err, "F:", 2) != 0)
			abort();
		return;
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((e = dane_policy_find(pol, names[i])) != NULL &&
		    (e->level > TLS_SECURE || e->nfp > DANE_POLICY_FP_MAX ||
		    (e->level == TLS_FINGERPRINT) != (e->nfp > 0)))
			abort();
	/* the file parsed, so every line's first word (when the line does
	 * not start with a blank, '#' or '.'; a line's final CR is not part
	 * of it) is a domain that must be found */
	for (i = 0; i < n; i++) {
		for (k = 0; i < n && k < FUZZ_NAME_MAX && p[i] != ' ' &&
		    p[i] != '\t' && p[i] != '\n' && p[i] != '\r' &&
		    p[i] != '\0'; i++, k++)
			name[k] = (char)p[i];
		name[k] = '\0';
		if (k > 0 && k < FUZZ_NAME_MAX && name[0] != '#' &&
		    name[0] != '.' && dane_policy_find(pol, name) == NULL)
			abort();
		while (i < n && p[i] != '\n')
			i++;
	}
	dane_policy_free(pol);
}

static void
fuzz_cert(const uint8_t *p, size_t n)
{
	static const char *const names[] = { "mx.dane.test", "a.b",
	    "localhost" };
	struct dane_cert chain[2];
	char *out;
	size_t which, i;
	int s, m;
	enum dane_verdict v;

	chain[0].der = chain[1].der = p;
	chain[0].len = chain[1].len = n;
	memset(&set, 0, sizeof(set));
	/* the input as full-data records of DANE-TA and DANE-EE, parsed as
	 * they would come from DNS (so data over DANE_DATA_MAX goes the
	 * digest way) */
	if ((out = malloc(n + 3)) == NULL)
		return;
	for (i = 0; i < 4 && n >= 1; i++) {
		out[0] = i < 2 ? 2 : 3;
		out[1] = out[2] = 0;
		memcpy(out + 3, p, n);
		if (dane_tlsa_parse((const uint8_t *)out, n + 3,
		    &set.r[set.n]) != 0 || !set.r[set.n].usable)
			abort();
		set.n++;
	}
	free(out);
	v = dane_match(&set, chain, 2, names, 3, &which);
	if (v == DANE_NOUSABLE ? set.n != 0 : set.n == 0)
		abort();
	if (v == DANE_MATCH && which >= set.n)
		abort();
	if ((out = malloc(2 * n + 1)) == NULL)
		return;
	for (s = 0; s <= 1; s++)
		for (m = 0; m <= 2; m++)
			if (dane_tlsa_data(p, n, s, m, out, 2 * n + 1) == 0 &&
			    strlen(out) % 2 != 0)
				abort();
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_tlsa(data + 1, size - 1);
		break;
	case 1:
		fuzz_policy(data + 1, size - 1);
		break;
	default:
		fuzz_cert(data + 1, size - 1);
		break;
	}
	return 0;
}
