/* fuzz_auth.c - auth.c's parsers on arbitrary bytes.  The first byte picks
 * one: '0' AUTH PLAIN, '1' LOGIN user, '2' LOGIN password, '3' the users
 * file, '4' bare base64, '5' a throttle address, '6' the smarthost
 * credentials file, '7' the login cache (user NUL password); the rest is
 * the input.  No crash, and what is accepted obeys auth.h's promises:
 * bounded, terminated fields without NUL, PLAIN/base64 survive a round
 * trip, a refused credentials file leaves nothing behind.
 * (Argon2 checks are left out: milliseconds each would starve the
 * fuzzer; the unit test covers them.) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth.h"

#define FUZZ_ADDR_MAX	80

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_client(const char *in, size_t len)
{
	static const struct auth_client zero;
	struct auth_client cl;
	char err[512];
	size_t ulen;

	err[0] = '\0';
	if (auth_client_parse(&cl, "fuzz", in, len, err, sizeof(err)) != 0) {
		if (memcmp(&cl, &zero, sizeof(cl)) != 0 ||
		    strncmp(err, "fuzz", 4) != 0)
			__builtin_trap();
		return;
	}
	ulen = strnlen(cl.user, sizeof(cl.user));
	if (ulen == 0 || ulen > AUTH_USER_MAX || cl.passlen == 0 ||
	    cl.passlen > AUTH_PASS_MAX || cl.pass[cl.passlen] != '\0' ||
	    memchr(cl.pass, '\0', cl.passlen) != NULL ||
	    strpbrk(cl.user, " \t\r\n") != NULL ||
	    memchr(cl.pass, '\n', cl.passlen) != NULL ||
	    cl.user[0] == '#')
		__builtin_trap();
	auth_client_free(&cl);
	if (memcmp(&cl, &zero, sizeof(cl)) != 0)
		__builtin_trap();
}

/* What was added hits at once, and no longer at the TTL. */
static void
fuzz_cache(const char *in, size_t len)
{
	static struct auth_cache *c;
	char user[AUTH_USER_MAX + 1];
	const char *nul = memchr(in, '\0', len), *pass;
	size_t ulen, plen;

	if (c == NULL && (c = auth_cache_new()) == NULL)
		return;
	if (nul == NULL)
		return;
	ulen = (size_t)(nul - in);
	pass = nul + 1;
	plen = len - ulen - 1;
	if (ulen == 0 || ulen > AUTH_USER_MAX || plen == 0 ||
	    plen > AUTH_PASS_MAX)
		return;
	memcpy(user, in, ulen);
	user[ulen] = '\0';
	auth_cache_clear(c);
	auth_cache_add(c, user, pass, plen, 7);
	if (auth_cache_hit(c, user, pass, plen, 7) != 1 ||
	    auth_cache_hit(c, user, pass, plen - 1, 7) != 0 ||
	    auth_cache_hit(c, user, pass, plen, 7 + AUTH_CACHE_TTL_MS) != 0)
		__builtin_trap();
}

static void
fuzz_plain(const char *in, size_t len)
{
	char user[AUTH_USER_MAX + 1], pass[AUTH_PASS_MAX + 1];
	char user2[AUTH_USER_MAX + 1], pass2[AUTH_PASS_MAX + 1];
	char b64[AUTH_B64_LEN(AUTH_PLAIN_MAX) + 1];
	const char *why;
	size_t plen, plen2;
	int rc;

	rc = auth_plain_decode(in, len, user, sizeof(user), pass, sizeof(pass),
	    &plen, &why);
	if (rc == AUTH_DECODE_BAD && (why == NULL || user[0] || pass[0]))
		__builtin_trap();
	if (rc != AUTH_DECODE_OK)
		return;
	if (strlen(user) == 0 || plen == 0 || plen > AUTH_PASS_MAX ||
	    pass[plen] != '\0' || memchr(pass, '\0', plen) != NULL)
		__builtin_trap();
	/* What decoded re-encodes, and decodes to the same again. */
	if (auth_plain_encode(user, pass, plen, b64, sizeof(b64)) != 0 ||
	    auth_plain_decode(b64, strlen(b64), user2, sizeof(user2), pass2,
	    sizeof(pass2), &plen2, &why) != AUTH_DECODE_OK ||
	    strcmp(user, user2) != 0 || plen != plen2 ||
	    memcmp(pass, pass2, plen) != 0)
		__builtin_trap();
}

static void
fuzz_login(const char *in, size_t len, int is_pass)
{
	char out[AUTH_PASS_MAX + 1];
	const char *why;
	size_t n;
	int rc;

	rc = auth_login_decode(in, len, is_pass, out, sizeof(out), &n, &why);
	if (rc == AUTH_DECODE_OK && (n == 0 || out[n] != '\0' ||
	    memchr(out, '\0', n) != NULL))
		__builtin_trap();
	if (rc == AUTH_DECODE_BAD && why == NULL)
		__builtin_trap();
}

static void
fuzz_b64(const char *in, size_t len)
{
	static unsigned char raw[4096], raw2[4096];
	static char again[8192];
	size_t n, n2;

	if (auth_b64_decode(in, len, raw, sizeof(raw), &n) != 0)
		return;
	if (n > len / 4 * 3 ||
	    auth_b64_encode(raw, n, again, sizeof(again)) != 0 ||
	    strlen(again) != len ||
	    auth_b64_decode(again, strlen(again), raw2, sizeof(raw2),
	    &n2) != 0 || n2 != n || memcmp(raw, raw2, n) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	struct auth_users *t;
	struct auth_throttle *th;
	char err[512], addr[FUZZ_ADDR_MAX];

	if (size == 0)
		return 0;
	switch (data[0]) {
	case '0':
		fuzz_plain(in, len);
		break;
	case '1':
	case '2':
		fuzz_login(in, len, data[0] == '2');
		break;
	case '3':
		t = auth_users_parse("fuzz", in, len, err, sizeof(err));
		if (t == NULL && memchr(err, '\0', sizeof(err)) == NULL)
			__builtin_trap();
		if (t != NULL && auth_users_count(t) > AUTH_USERS_MAX)
			__builtin_trap();
		auth_users_free(t);
		break;
	case '4':
		fuzz_b64(in, len);
		break;
	case '5':
		if (len >= sizeof(addr))
			len = sizeof(addr) - 1;
		memcpy(addr, in, len);
		addr[len] = '\0';
		if ((th = auth_throttle_new()) == NULL)
			break;
		auth_throttle_fail(th, addr, 1);
		if (auth_throttle_check(th, addr, 1) != 0)
			__builtin_trap();	/* one failure is free */
		auth_throttle_free(th);
		break;
	case '6':
		fuzz_client(in, len);
		break;
	case '7':
		fuzz_cache(in, len);
		break;
	}
	return 0;
}
