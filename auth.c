/*
 * auth.c - the SASL server's core (auth.h): strict base64, AUTH PLAIN and
 * LOGIN decoding, Argon2id hashes, the users file, a failure throttle per
 * client address, a cache of recent logins, the smarthost credentials
 * file and `ferry passwd`.  It owns no socket and logs nothing:
 * smtp.c speaks the dialogue and writes the Postfix-shaped log lines with
 * the reasons returned here.  Secrets pass through caller buffers and
 * every local copy is wiped with sodium_memzero() before return.
 * Returns 0 / -1 unless auth.h says otherwise; the CLI returns sysexits.h.
 *
 * Argon2 cost (AUTH_PWHASH_*), measured with crypto_pwhash_argon2id_str:
 *   t=2 m=4 MiB: ~4 ms on the x86 build host, ~135 ms under qemu-mipsel
 *   t=3 m=8 MiB: ~8 ms here, ~400 ms under qemu-mipsel
 * A router login must not stall the loop for most of a second, so the
 * cheaper pair is the default; checking follows each hash's own cost.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <sodium.h>

#include "auth.h"
#include "cli.h"
#include "log.h"
#include "textfile.h"

#define AUTH_HASH_PREFIX	"$argon2id$"
#define AUTH_HASH_VERSION	"v=19$"
#define AUTH_HASH_HEAD		AUTH_HASH_PREFIX AUTH_HASH_VERSION "m="
/* RFC 9106 / libsodium: salts of at least 8 bytes, tags of at least 16. */
#define AUTH_SALT_MIN		8
#define AUTH_TAG_MIN		16
#define AUTH_MEM_MIN_KIB	8	/* 8 blocks: Argon2's floor for p=1 */
#define AUTH_NUM_DIGITS_MAX	10	/* a uint32_t */
#define AUTH_DUMMY_SALT		16
#define AUTH_DUMMY_TAG		32
/* Base64 that may decode to AUTH_PLAIN_MAX bytes, and room to decode it. */
#define AUTH_PLAIN_B64_MAX	AUTH_B64_LEN(AUTH_PLAIN_MAX)
#define AUTH_DECODE_BUF		(AUTH_PLAIN_B64_MAX / 4 * 3)
#define AUTH_LOGIN_B64_MAX	AUTH_B64_LEN(AUTH_PASS_MAX > AUTH_USER_MAX ? \
				    AUTH_PASS_MAX : AUTH_USER_MAX)
#define AUTH_THROTTLE_KEY	16
#define AUTH_THROTTLE_TEXT_MAX	64	/* longer "addresses" are cut */
/* Plenty for one "user password" line and a comment or two. */
#define AUTH_CLIENT_FILE_MAX	4096
#define AUTH_CACHE_DIGEST	32	/* BLAKE2b-256 */
#define AUTH_CLI_PROMPT		"Password: "
#define AUTH_CLI_PROMPT2	"Retype password: "
/* A limit in a constant message (AUTH_PASS_MAX is a plain number). */
#define AUTH_STR(x)		AUTH_STR_(x)
#define AUTH_STR_(x)		#x

struct auth_user {
	char name[AUTH_USER_MAX + 1];	/* NUL-padded: compared whole */
	char hash[crypto_pwhash_STRBYTES];
};

struct auth_users {
	struct auth_user *u;
	size_t n, cap;
	/* Checked when the user is unknown; same cost as the first user's. */
	char dummy[crypto_pwhash_STRBYTES];
};

struct auth_throttle_slot {
	unsigned char key[AUTH_THROTTLE_KEY];
	unsigned count;		/* failures not yet forgiven */
	uint64_t since;		/* decay clock: the last forgiveness */
	uint64_t used;		/* for LRU eviction */
	int live;
};

struct auth_throttle {
	struct auth_throttle_slot s[AUTH_THROTTLE_SLOTS];
};

struct auth_cache_slot {
	unsigned char digest[AUTH_CACHE_DIGEST];
	uint64_t added;
	int live;
};

struct auth_cache {
	unsigned char key[crypto_generichash_KEYBYTES];
	struct auth_cache_slot s[AUTH_CACHE_SLOTS];
};

static int auth_b64_strict(const char *, size_t);
static int auth_field_check(const unsigned char *, size_t, int,
    const char **);
static int auth_name_ok(const char *, size_t);
static int auth_lit(const char *, size_t, size_t *, const char *);
static int auth_num(const char *, size_t, size_t *, unsigned long *);
static size_t auth_b64_run(const char *, size_t, size_t *);
/* noinline: measured smaller than LTO's copy inlined in its one caller. */
static const char *auth_hash_check(const char *, size_t, unsigned long *,
    unsigned long *) __attribute__((noinline));
static void auth_users_err(char *, size_t, const char *, size_t,
    const char *);
static int auth_users_line(struct auth_users *, const char *, size_t,
    const char *, size_t, char *, size_t, unsigned long *,
    unsigned long *);
static int auth_users_dummy(struct auth_users *, unsigned long,
    unsigned long);
static void auth_throttle_key(const char *, unsigned char *);
static void auth_throttle_decay(struct auth_throttle_slot *, uint64_t);
static struct auth_throttle_slot *auth_throttle_find(struct auth_throttle *,
    const unsigned char *);
static int auth_cache_digest(const struct auth_cache *, const char *,
    const char *, size_t, unsigned char *);
/* noinline: measured smaller than LTO's inlined copies. */
static int auth_cache_live(const struct auth_cache_slot *, uint64_t)
    __attribute__((noinline));
static void auth_client_err(struct auth_client *, char *, size_t,
    const char *, size_t, const char *);
static void auth_cli_on_signal(int);
static int auth_cli_read(char *, size_t, size_t *);
static int auth_cli_read_tty(char *, size_t, size_t *, const char *);

static volatile sig_atomic_t auth_cli_sig;

/* --- base64 ------------------------------------------------------------ */

/*
 * RFC 4954 section 4: responses are base64 (RFC 4648 section 4) with
 * padding and nothing else; mbedTLS on its own skips spaces and line
 * breaks, so the shape is checked here first.
 */
static int
auth_b64_strict(const char *s, size_t len)
{
	size_t i = 0, pad = 0;

	if (len % 4 != 0)
		return -1;
	if (len > 0 && s[len - 1] == '=')
		pad = (len > 1 && s[len - 2] == '=') ? 2 : 1;
	return auth_b64_run(s, len - pad, &i) == len - pad ? 0 : -1;
}

int
auth_b64_decode(const char *b64, size_t len, unsigned char *out,
    size_t outsz, size_t *outlen)
{
	size_t olen = 0;

	*outlen = 0;
	if (auth_b64_strict(b64, len) != 0)
		return -1;
	if (len == 0)
		return 0;
	if (mbedtls_base64_decode(out, outsz, &olen,
	    (const unsigned char *)b64, len) != 0)
		return -1;
	*outlen = olen;
	return 0;
}

int
auth_b64_encode(const void *in, size_t len, char *out, size_t outsz)
{
	/* libsodium aborts on a short buffer instead of failing. */
	if (outsz < sodium_base64_ENCODED_LEN(len,
	    sodium_base64_VARIANT_ORIGINAL))
		return -1;
	sodium_bin2base64(out, outsz, in, len, sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

/* --- SASL responses ------------------------------------------------------ */

/*
 * Every reason is letters and spaces only: smtp.c logs it after
 * "authentication failed: " and fail2ban's postfix-sasl filter accepts
 * only [ A-Za-z0-9+/:] there.
 */
static int
auth_field_check(const unsigned char *p, size_t n, int is_pass,
    const char **why)
{
	size_t i;

	if (n == 0) {
		*why = is_pass ? "empty password" : "empty user name";
		return -1;
	}
	if (n > (is_pass ? AUTH_PASS_MAX : AUTH_USER_MAX)) {
		*why = is_pass ? "password too long" : "user name too long";
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (p[i] == '\0') {
			*why = is_pass ? "NUL in password" : "NUL in user name";
			return -1;
		}
		/* The name reaches the log: no line breaks or escapes. */
		if (!is_pass && (p[i] < 0x20 || p[i] == 0x7f)) {
			*why = "bad character in user name";
			return -1;
		}
	}
	return 0;
}

int
auth_plain_decode(const char *b64, size_t len, char *user, size_t usz,
    char *pass, size_t psz, size_t *passlen, const char **why)
{
	unsigned char buf[AUTH_DECODE_BUF];
	const unsigned char *zid, *cid, *pw, *z;
	size_t n = 0, zidlen, cidlen, pwlen;
	int rc = AUTH_DECODE_BAD;

	*passlen = 0;
	if (usz > 0)
		user[0] = '\0';
	if (psz > 0)
		pass[0] = '\0';
	*why = "malformed base64";
	if (len == 1 && b64[0] == '*')
		return AUTH_DECODE_CANCEL;
	if (len == 0) {
		*why = "empty response";
		return AUTH_DECODE_BAD;
	}
	if (len > AUTH_PLAIN_B64_MAX) {
		*why = "response too long";
		return AUTH_DECODE_BAD;
	}
	if (auth_b64_decode(b64, len, buf, sizeof(buf), &n) != 0)
		goto out;
	if (n > AUTH_PLAIN_MAX) {
		*why = "response too long";
		goto out;
	}
	/* RFC 4616 section 2: [authzid] UTF8NUL authcid UTF8NUL passwd */
	*why = "missing NUL separator";
	zid = buf;
	if ((z = memchr(zid, '\0', n)) == NULL)
		goto out;
	zidlen = (size_t)(z - zid);
	cid = z + 1;
	if ((z = memchr(cid, '\0', n - zidlen - 1)) == NULL)
		goto out;
	cidlen = (size_t)(z - cid);
	pw = z + 1;
	pwlen = n - zidlen - cidlen - 2;
	if (auth_field_check(cid, cidlen, 0, why) != 0 ||
	    auth_field_check(pw, pwlen, 1, why) != 0)
		goto out;
	/* ferry has no proxy authorization: acting as oneself only. */
	if (zidlen != 0 && (zidlen != cidlen ||
	    memcmp(zid, cid, cidlen) != 0)) {
		*why = "authorization identity differs";
		goto out;
	}
	if (cidlen >= usz) {
		*why = "user name too long";
		goto out;
	}
	if (pwlen >= psz) {
		*why = "password too long";
		goto out;
	}
	memcpy(user, cid, cidlen);
	user[cidlen] = '\0';
	memcpy(pass, pw, pwlen);
	pass[pwlen] = '\0';
	*passlen = pwlen;
	*why = NULL;
	rc = AUTH_DECODE_OK;
out:
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int
auth_login_decode(const char *b64, size_t len, int is_pass, char *out,
    size_t outsz, size_t *outlen, const char **why)
{
	unsigned char buf[AUTH_DECODE_BUF];
	size_t n = 0;
	int rc = AUTH_DECODE_BAD;

	*outlen = 0;
	if (outsz > 0)
		out[0] = '\0';
	if (len == 1 && b64[0] == '*')
		return AUTH_DECODE_CANCEL;
	if (len > AUTH_LOGIN_B64_MAX) {
		*why = is_pass ? "password too long" : "user name too long";
		return AUTH_DECODE_BAD;
	}
	if (auth_b64_decode(b64, len, buf, sizeof(buf), &n) != 0) {
		*why = "malformed base64";
		goto out;
	}
	if (auth_field_check(buf, n, is_pass, why) != 0)
		goto out;
	if (n >= outsz) {
		*why = is_pass ? "password too long" : "user name too long";
		goto out;
	}
	memcpy(out, buf, n);
	out[n] = '\0';
	*outlen = n;
	*why = NULL;
	rc = AUTH_DECODE_OK;
out:
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int
auth_plain_encode(const char *user, const char *pass, size_t passlen,
    char *out, size_t outsz)
{
	unsigned char buf[AUTH_PLAIN_MAX];
	size_t ulen = textfile_strnlen(user, AUTH_USER_MAX + 1);
	int rc = -1;

	if (ulen == 0 || ulen > AUTH_USER_MAX || passlen == 0 ||
	    passlen > AUTH_PASS_MAX || memchr(pass, '\0', passlen) != NULL)
		return -1;
	/* Empty authzid: the smarthost derives it from the authcid. */
	buf[0] = '\0';
	memcpy(buf + 1, user, ulen);
	buf[1 + ulen] = '\0';
	memcpy(buf + 2 + ulen, pass, passlen);
	rc = auth_b64_encode(buf, 2 + ulen + passlen, out, outsz);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

/* --- hashes -------------------------------------------------------------- */

int
auth_hash_password(const char *pass, size_t len,
    char out[crypto_pwhash_STRBYTES])
{
	if (sodium_init() < 0)
		return -1;
	/* argon2id by name: crypto_pwhash_str's default may change. */
	return crypto_pwhash_argon2id_str(out, pass, len, AUTH_PWHASH_OPS,
	    AUTH_PWHASH_MEM) == 0 ? 0 : -1;
}

static int
auth_lit(const char *s, size_t n, size_t *i, const char *lit)
{
	size_t l = strlen(lit);

	if (n - *i < l || memcmp(s + *i, lit, l) != 0)
		return 0;
	*i += l;
	return 1;
}

/* A decimal without leading zeros that fits 32 bits. */
static int
auth_num(const char *s, size_t n, size_t *i, unsigned long *v)
{
	size_t start = *i;
	uint64_t x = 0;		/* ten digits overflow a 32-bit long */

	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		if (*i - start == AUTH_NUM_DIGITS_MAX)
			return 0;
		x = x * 10 + (uint64_t)(s[*i] - '0');
		(*i)++;
	}
	*v = (unsigned long)x;
	if (*i == start || (s[start] == '0' && *i - start > 1) ||
	    x > 0xffffffffU)
		return 0;
	return 1;
}

/* Length of the unpadded base64 run at s[*i], which is consumed. */
static size_t
auth_b64_run(const char *s, size_t n, size_t *i)
{
	size_t start = *i;
	unsigned char c;

	while (*i < n) {
		c = (unsigned char)s[*i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			break;
		(*i)++;
	}
	return *i - start;
}

/*
 * The PHC string libsodium writes and can check:
 * $argon2id$v=19$m=M,t=T,p=1$SALT$TAG.  Checked here so that a typo is
 * a load error, not a user who can never log in; the cost is bounded so
 * that one line cannot make every login eat the router's memory.
 */
static const char *
auth_hash_check(const char *h, size_t n, unsigned long *m, unsigned long *t)
{
	/* The parameters: each text, then its number (none after "$"). */
	const char *lit = AUTH_HASH_VERSION "m=\0,t=\0,p=\0$";
	unsigned long p, *num[] = { m, t, &p };
	size_t i = 0, j, salt, tag;

	if (!auth_lit(h, n, &i, AUTH_HASH_PREFIX))
		return "hash is not $argon2id$ (make one with ferry passwd)";
	if (n >= crypto_pwhash_STRBYTES)
		return "hash too long";
	for (j = 0; j <= 3; j++, lit += strlen(lit) + 1)
		if (!auth_lit(h, n, &i, lit) ||
		    (j < 3 && !auth_num(h, n, &i, num[j])))
			return "malformed argon2id hash (want "
			    "v=19$m=M,t=T,p=1$)";
	salt = auth_b64_run(h, n, &i);
	if (!auth_lit(h, n, &i, "$"))
		return "malformed argon2id hash salt";
	tag = auth_b64_run(h, n, &i);
	if (i != n)
		return "malformed argon2id hash tag";
	/* A run of 4k+1 characters is not base64 of anything. */
	if (salt % 4 == 1)
		return "malformed argon2id hash salt";
	if (tag % 4 == 1)
		return "malformed argon2id hash tag";
	if (salt * 3 / 4 < AUTH_SALT_MIN)
		return "argon2id salt too short";
	if (tag * 3 / 4 < AUTH_TAG_MIN)
		return "argon2id hash tag too short";
	/* libsodium computes one lane only. */
	if (p != 1)
		return "argon2id hash with p other than 1";
	if (*t < 1 || *m < AUTH_MEM_MIN_KIB)
		return "argon2id cost below the minimum";
	if (*t > AUTH_PWHASH_OPS_MAX || *m > AUTH_PWHASH_MEM_MAX_KIB)
		return "argon2id cost above the limit (t=16, m=65536)";
	return NULL;
}

/* --- the users file ------------------------------------------------------ */

static void
auth_users_err(char *err, size_t errsz, const char *name, size_t line,
    const char *what)
{
	if (line > 0)
		snprintf(err, errsz, "%s:%zu: %s", name, line, what);
	else
		snprintf(err, errsz, "%s: %s", name, what);
}

/* Printable, no ':' (the separator) and no space; UTF-8 passes. */
static int
auth_name_ok(const char *s, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || c == ':')
			return 0;
	}
	return 1;
}

/* One non-blank, non-comment line, already trimmed.  Every refusal
 * goes through one auth_users_err() call at the end. */
static int
auth_users_line(struct auth_users *t, const char *l, size_t n,
    const char *name, size_t line, char *err, size_t errsz,
    unsigned long *m, unsigned long *tc)
{
	const char *colon = memchr(l, ':', n), *what;
	struct auth_user *u;
	size_t ulen, hlen, i;
	char msg[AUTH_USER_MAX + 64];

	/* A BOM: the caller takes it for text, so its line lands here,
	 * a comment too.  It would join the first user's name unseen;
	 * relay.conf refuses it too (as part of its first key). */
	what = "UTF-8 byte order mark";
	if (n >= 3 && memcmp(l, "\xef\xbb\xbf", 3) == 0)
		goto bad;
	what = "expected user:$argon2id$...";
	if (colon == NULL)
		goto bad;
	ulen = (size_t)(colon - l);
	hlen = n - ulen - 1;
	what = "empty user name";
	if (ulen == 0)
		goto bad;
	what = "user name longer than 255 bytes";
	if (ulen > AUTH_USER_MAX)
		goto bad;
	what = "bad character in user name";
	if (!auth_name_ok(l, ulen))
		goto bad;
	if ((what = auth_hash_check(colon + 1, hlen, m, tc)) != NULL)
		goto bad;
	for (i = 0; i < t->n; i++) {
		if (strlen(t->u[i].name) == ulen &&
		    memcmp(t->u[i].name, l, ulen) == 0) {
			snprintf(msg, sizeof(msg), "duplicate user %.*s",
			    (int)ulen, l);
			what = msg;
			goto bad;
		}
	}
	what = "more than 1000 users";
	if (t->n == AUTH_USERS_MAX)
		goto bad;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct auth_user *nu;

		if (cap > AUTH_USERS_MAX)
			cap = AUTH_USERS_MAX;
		if ((nu = realloc(t->u, cap * sizeof(*nu))) == NULL) {
			what = "out of memory";
			line = 0;
			goto bad;
		}
		t->u = nu;
		t->cap = cap;
	}
	u = &t->u[t->n++];
	memset(u, 0, sizeof(*u));
	memcpy(u->name, l, ulen);
	memcpy(u->hash, colon + 1, hlen);
	return 0;
bad:
	auth_users_err(err, errsz, name, line, what);
	return -1;
}

/*
 * A hash nobody's password matches (its tag is random), with the cost
 * of the first user's, so an unknown name costs what a known one does.
 */
static int
auth_users_dummy(struct auth_users *t, unsigned long m, unsigned long tc)
{
	unsigned char salt[AUTH_DUMMY_SALT], tag[AUTH_DUMMY_TAG];
	char bs[AUTH_B64_LEN(AUTH_DUMMY_SALT) + 1];
	char bt[AUTH_B64_LEN(AUTH_DUMMY_TAG) + 1];
	int n;

	randombytes_buf(salt, sizeof(salt));
	randombytes_buf(tag, sizeof(tag));
	sodium_bin2base64(bs, sizeof(bs), salt, sizeof(salt),
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	sodium_bin2base64(bt, sizeof(bt), tag, sizeof(tag),
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	n = snprintf(t->dummy, sizeof(t->dummy),
	    AUTH_HASH_HEAD "%lu,t=%lu,p=1$%s$%s", m, tc, bs, bt);
	return n > 0 && (size_t)n < sizeof(t->dummy) ? 0 : -1;
}

struct auth_users *
auth_users_parse(const char *name, const char *text, size_t len, char *err,
    size_t errsz)
{
	struct auth_users *t;
	unsigned long m = AUTH_PWHASH_MEM / 1024, tc = AUTH_PWHASH_OPS;
	unsigned long lm, ltc;
	size_t pos = 0, line = 0, n, k;
	const char *l;

	if (sodium_init() < 0) {
		auth_users_err(err, errsz, name, 0, "libsodium init failed");
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		auth_users_err(err, errsz, name, 0, "out of memory");
		return NULL;
	}
	while (textfile_line(text, len, &pos, &l, &n)) {
		line++;
		if (memchr(l, '\0', n) != NULL) {
			auth_users_err(err, errsz, name, line, "NUL byte");
			goto fail;
		}
		if (n > 0 && l[n - 1] == '\r')
			n--;
		while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
			n--;
		k = 0;
		while (k < n && (l[k] == ' ' || l[k] == '\t'))
			k++;
		if (k == n || l[k] == '#')
			continue;
		if (auth_users_line(t, l + k, n - k, name, line, err, errsz,
		    &lm, &ltc) != 0)
			goto fail;
		if (t->n == 1) {
			m = lm;
			tc = ltc;
		}
	}
	if (auth_users_dummy(t, m, tc) != 0) {
		auth_users_err(err, errsz, name, 0, "dummy hash failed");
		goto fail;
	}
	return t;
fail:
	auth_users_free(t);
	return NULL;
}

struct auth_users *
auth_users_load(const char *path, char *err, size_t errsz)
{
	struct auth_users *t;
	char *buf;
	size_t len;

	if (textfile_read(path, AUTH_USERS_FILE_MAX, TEXTFILE_PRIVATE, &buf,
	    &len, err, errsz) != TEXTFILE_OK)
		return NULL;
	t = auth_users_parse(path, buf, len, err, errsz);
	sodium_memzero(buf, len);
	free(buf);
	return t;
}

void
auth_users_free(struct auth_users *t)
{
	if (t == NULL)
		return;
	if (t->u != NULL) {
		sodium_memzero(t->u, t->cap * sizeof(*t->u));
		free(t->u);
	}
	free(t);
}

size_t
auth_users_count(const struct auth_users *t)
{
	return t == NULL ? 0 : t->n;
}

int
auth_users_verify(const struct auth_users *t, const char *user,
    const char *pass, size_t passlen)
{
	char probe[AUTH_USER_MAX + 1];
	const char *hash;
	size_t i, ulen;
	int found = 0, ok;

	if (t == NULL)
		return AUTH_VERIFY_DENIED;
	/*
	 * Every entry is compared in full and the loop never stops early,
	 * then exactly one Argon2 check runs: the time depends on the
	 * table's size, not on whether or where the name is in it.
	 */
	memset(probe, 0, sizeof(probe));
	ulen = textfile_strnlen(user, AUTH_USER_MAX + 1);
	if (ulen <= AUTH_USER_MAX)
		memcpy(probe, user, ulen);
	hash = t->dummy;
	for (i = 0; i < t->n; i++) {
		if (sodium_memcmp(t->u[i].name, probe, sizeof(probe)) == 0) {
			hash = t->u[i].hash;
			found = 1;
		}
	}
	/* An empty probe matches nobody: names are never empty. */
	if (ulen == 0 || ulen > AUTH_USER_MAX || passlen > AUTH_PASS_MAX) {
		found = 0;
		hash = t->dummy;
		if (passlen > AUTH_PASS_MAX)
			passlen = AUTH_PASS_MAX;
	}
	ok = crypto_pwhash_argon2id_str_verify(hash, pass, passlen) == 0;
	return found && ok ? AUTH_VERIFY_OK : AUTH_VERIFY_DENIED;
}

/* --- the failure throttle ------------------------------------------------ */

/*
 * IPv4 and v4-mapped IPv6 whole; IPv6 by its /64, which one host owns
 * (RFC 4291 section 2.5.4); anything else by a hash of its text.
 */
static void
auth_throttle_key(const char *addr, unsigned char *key)
{
	struct in_addr a4;
	size_t n;

	memset(key, 0, AUTH_THROTTLE_KEY);
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &a4, 4);
		return;
	}
	if (inet_pton(AF_INET6, addr, key) == 1) {
		if (!(memcmp(key, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0))
			memset(key + 8, 0, 8);
		return;
	}
	n = textfile_strnlen(addr, AUTH_THROTTLE_TEXT_MAX);
	crypto_generichash(key, AUTH_THROTTLE_KEY, (const unsigned char *)addr,
	    n, NULL, 0);
}

/* Forgive one failure per AUTH_THROTTLE_DECAY_MS since the last one. */
static void
auth_throttle_decay(struct auth_throttle_slot *s, uint64_t now)
{
	uint64_t steps;

	if (now <= s->since)
		return;
	steps = (now - s->since) / AUTH_THROTTLE_DECAY_MS;
	if (steps >= s->count) {
		s->count = 0;
		s->since = now;
		return;
	}
	s->count -= (unsigned)steps;
	s->since += steps * AUTH_THROTTLE_DECAY_MS;
}

static struct auth_throttle_slot *
auth_throttle_find(struct auth_throttle *t, const unsigned char *key)
{
	size_t i;

	for (i = 0; i < AUTH_THROTTLE_SLOTS; i++)
		if (t->s[i].live && memcmp(t->s[i].key, key,
		    AUTH_THROTTLE_KEY) == 0)
			return &t->s[i];
	return NULL;
}

struct auth_throttle *
auth_throttle_new(void)
{
	if (sodium_init() < 0)
		return NULL;
	return calloc(1, sizeof(struct auth_throttle));
}

void
auth_throttle_free(struct auth_throttle *t)
{
	free(t);
}

int
auth_throttle_check(struct auth_throttle *t, const char *addr, uint64_t now)
{
	unsigned char key[AUTH_THROTTLE_KEY];
	struct auth_throttle_slot *s;
	unsigned shift;
	long delay;

	auth_throttle_key(addr, key);
	if ((s = auth_throttle_find(t, key)) == NULL)
		return 0;
	auth_throttle_decay(s, now);
	s->used = now;
	if (s->count >= AUTH_THROTTLE_REFUSE)
		return AUTH_THROTTLE_DENY;
	if (s->count < AUTH_THROTTLE_FREE)
		return 0;
	shift = s->count - AUTH_THROTTLE_FREE;
	delay = AUTH_THROTTLE_DELAY_MAX_MS;
	if (shift < 16 && ((long)AUTH_THROTTLE_DELAY_MS << shift) <
	    AUTH_THROTTLE_DELAY_MAX_MS)
		delay = (long)AUTH_THROTTLE_DELAY_MS << shift;
	return (int)delay;
}

void
auth_throttle_fail(struct auth_throttle *t, const char *addr, uint64_t now)
{
	unsigned char key[AUTH_THROTTLE_KEY];
	struct auth_throttle_slot *s, *victim = NULL;
	size_t i;

	auth_throttle_key(addr, key);
	if ((s = auth_throttle_find(t, key)) == NULL) {
		/*
		 * A free slot, else one whose failures have all decayed,
		 * else the least recently used.  XXX an attacker with many
		 * addresses can push a victim out; fail2ban on the log is
		 * the answer to that, not a bigger table on a router.
		 */
		for (i = 0; i < AUTH_THROTTLE_SLOTS; i++) {
			s = &t->s[i];
			if (!s->live)
				break;
			auth_throttle_decay(s, now);
			if (s->count == 0)
				break;
			if (victim == NULL || s->used < victim->used)
				victim = s;
		}
		if (i == AUTH_THROTTLE_SLOTS)
			s = victim;
		memset(s, 0, sizeof(*s));
		memcpy(s->key, key, AUTH_THROTTLE_KEY);
		s->live = 1;
		s->since = now;
	}
	auth_throttle_decay(s, now);
	if (s->count == 0)
		s->since = now;
	/* Capped so a door shut by hammering opens again in bounded time. */
	if (s->count < 2 * AUTH_THROTTLE_REFUSE)
		s->count++;
	s->used = now;
}

/* --- the cache of recent logins ------------------------------------------ */

/*
 * BLAKE2b keyed with the table's own random key over user NUL password:
 * the user never holds a NUL, so the first NUL ends it and "ab"+"c"
 * cannot collide with "a"+"bc".  A digest, not the password, sits in
 * memory; without the key it cannot even be tested offline.  Refused
 * (-1) for a user or password that auth_plain_decode() would not pass.
 */
static int
auth_cache_digest(const struct auth_cache *c, const char *user,
    const char *pass, size_t passlen, unsigned char *out)
{
	unsigned char buf[AUTH_USER_MAX + 1 + AUTH_PASS_MAX];
	size_t ulen = textfile_strnlen(user, AUTH_USER_MAX + 1);

	if (ulen == 0 || ulen > AUTH_USER_MAX || passlen == 0 ||
	    passlen > AUTH_PASS_MAX)
		return -1;
	memcpy(buf, user, ulen + 1);
	memcpy(buf + ulen + 1, pass, passlen);
	crypto_generichash(out, AUTH_CACHE_DIGEST, buf, ulen + 1 + passlen,
	    c->key, sizeof(c->key));
	/* The copy holds the password. */
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

/* Alive from added until added + AUTH_CACHE_TTL_MS, that instant excluded. */
static int
auth_cache_live(const struct auth_cache_slot *s, uint64_t now)
{
	return s->live && now >= s->added &&
	    now - s->added < AUTH_CACHE_TTL_MS;
}

struct auth_cache *
auth_cache_new(void)
{
	struct auth_cache *c;

	if (sodium_init() < 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	randombytes_buf(c->key, sizeof(c->key));
	return c;
}

void
auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	sodium_memzero(c, sizeof(*c));
	free(c);
}

int
auth_cache_hit(struct auth_cache *c, const char *user, const char *pass,
    size_t passlen, uint64_t now)
{
	unsigned char d[AUTH_CACHE_DIGEST];
	size_t i;
	int hit = 0;

	if (auth_cache_digest(c, user, pass, passlen, d) != 0)
		return 0;
	/* Every slot compared, no early exit: no timing hint of which. */
	for (i = 0; i < AUTH_CACHE_SLOTS; i++)
		if (sodium_memcmp(c->s[i].digest, d, sizeof(d)) == 0 &&
		    auth_cache_live(&c->s[i], now))
			hit = 1;
	sodium_memzero(d, sizeof(d));
	return hit;
}

void
auth_cache_add(struct auth_cache *c, const char *user, const char *pass,
    size_t passlen, uint64_t now)
{
	unsigned char d[AUTH_CACHE_DIGEST];
	struct auth_cache_slot *s, *victim = NULL;
	size_t i;
	int alive, victim_alive = 0;

	if (auth_cache_digest(c, user, pass, passlen, d) != 0)
		return;
	/* The same login again, else a dead slot, else the oldest. */
	for (i = 0; i < AUTH_CACHE_SLOTS; i++) {
		s = &c->s[i];
		if (s->live && sodium_memcmp(s->digest, d, sizeof(d)) == 0) {
			victim = s;
			break;
		}
		alive = auth_cache_live(s, now);
		if (victim == NULL || (victim_alive && (!alive ||
		    s->added < victim->added))) {
			victim = s;
			victim_alive = alive;
		}
	}
	memcpy(victim->digest, d, sizeof(d));
	victim->added = now;
	victim->live = 1;
	sodium_memzero(d, sizeof(d));
}

void
auth_cache_clear(struct auth_cache *c)
{
	if (c != NULL)
		sodium_memzero(c->s, sizeof(c->s));
}

/* --- the client's credentials (smarthost_auth) --------------------------- */

static void
auth_client_err(struct auth_client *cl, char *err, size_t errsz,
    const char *name, size_t line, const char *what)
{
	sodium_memzero(cl, sizeof(*cl));
	auth_users_err(err, errsz, name, line, what);
}

/* Every refusal goes through one auth_client_err() call at the end. */
int
auth_client_parse(struct auth_client *cl, const char *name,
    const char *text, size_t len, char *err, size_t errsz)
{
	size_t pos = 0, line = 0, n, k, u, ulen, plen;
	const char *l, *what;
	int found = 0;

	sodium_memzero(cl, sizeof(*cl));
	while (textfile_line(text, len, &pos, &l, &n)) {
		line++;
		what = "NUL byte";
		if (memchr(l, '\0', n) != NULL)
			goto bad;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		k = 0;
		while (k < n && (l[k] == ' ' || l[k] == '\t'))
			k++;
		if (k == n || l[k] == '#')
			continue;
		what = "more than one credential line";
		if (found)
			goto bad;
		found = 1;
		/* The user: up to the first blank; it reaches the log. */
		what = "bad character in user name";
		for (u = k; u < n && l[u] != ' ' && l[u] != '\t'; u++)
			if ((unsigned char)l[u] < 0x20 || l[u] == 0x7f)
				goto bad;
		ulen = u - k;
		what = "user name longer than 255 bytes";
		if (ulen > AUTH_USER_MAX)
			goto bad;
		memcpy(cl->user, l + k, ulen);
		/* The password: everything after the blanks, spaces kept. */
		while (u < n && (l[u] == ' ' || l[u] == '\t'))
			u++;
		plen = n - u;
		what = "missing password";
		if (plen == 0)
			goto bad;
		what = "password longer than 255 bytes";
		if (plen > AUTH_PASS_MAX)
			goto bad;
		memcpy(cl->pass, l + u, plen);
		cl->passlen = plen;
	}
	if (found)
		return 0;
	line = 0;
	what = "no credential line (want: user password)";
bad:
	auth_client_err(cl, err, errsz, name, line, what);
	return -1;
}

int
auth_client_load(struct auth_client *cl, const char *path, char *err,
    size_t errsz)
{
	char *buf;
	size_t len;
	int rc;

	sodium_memzero(cl, sizeof(*cl));
	if (textfile_read(path, AUTH_CLIENT_FILE_MAX, TEXTFILE_PRIVATE, &buf,
	    &len, err, errsz) != TEXTFILE_OK)
		return -1;
	rc = auth_client_parse(cl, path, buf, len, err, errsz);
	sodium_memzero(buf, len);
	free(buf);
	return rc;
}

void
auth_client_free(struct auth_client *cl)
{
	if (cl != NULL)
		sodium_memzero(cl, sizeof(*cl));
}

/* --- ferry passwd --------------------------------------------------------- */

static void
auth_cli_on_signal(int sig)
{
	auth_cli_sig = sig;
}

/*
 * One line from stdin into buf, byte by byte so that no stdio buffer
 * keeps a copy of the password.  0 ok, -1 error or nothing read, -2 too
 * long, -3 interrupted by a signal.
 */
static int
auth_cli_read(char *buf, size_t sz, size_t *len)
{
	size_t n = 0;
	int toolong = 0;
	ssize_t r;
	char c;

	for (;;) {
		r = read(STDIN_FILENO, &c, 1);
		if (r == -1 && errno == EINTR) {
			if (auth_cli_sig != 0)
				return -3;
			continue;
		}
		if (r == -1)
			return -1;
		if (r == 0) {
			if (n == 0 && !toolong)
				return -1;
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 < sz)
			buf[n++] = c;
		else
			toolong = 1;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return toolong ? -2 : 0;
}

/*
 * Echo off for one line.  A signal restores the terminal before it is
 * re-raised, so ^C does not leave the shell without echo.
 */
static int
auth_cli_read_tty(char *buf, size_t sz, size_t *len, const char *prompt)
{
	static const uint8_t sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa, old[sizeof(sigs) / sizeof(sigs[0])];
	struct termios saved, quiet;
	size_t i;
	int rc;

	if (tcgetattr(STDIN_FILENO, &saved) == -1)
		return -1;
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	memset(&sa, 0, sizeof(sa));
	/* No SA_RESTART: read ends.  The memset emptied sa_mask: no
	 * sigemptyset() import (loop.c). */
	sa.sa_handler = auth_cli_on_signal;
	auth_cli_sig = 0;
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, &old[i]);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == -1) {
		rc = -1;
		goto out;
	}
	/* stderr is unbuffered: this is what fputs() would do, and no
	 * second libc import for it. */
	(void)write(STDERR_FILENO, prompt, strlen(prompt));
	rc = auth_cli_read(buf, sz, len);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved) == -1)
		rc = -1;
out:
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &old[i], NULL);
	/* kill(), not raise(): the same for one thread, and one libc
	 * import fewer (cli_newaliases() has kill(), log.c getpid()). */
	if (auth_cli_sig != 0)
		kill(getpid(), auth_cli_sig);
	return rc;
}

int
auth_cli_passwd(const struct config *conf, int argc, char **argv)
{
	char p1[AUTH_PASS_MAX + 2], p2[AUTH_PASS_MAX + 2];
	char hash[crypto_pwhash_STRBYTES];
	const char *user, *why;
	struct passwd *pw;
	struct termios tio;
	size_t l1 = 0, l2 = 0;
	int rc = EX_SOFTWARE, r, tty;

	(void)conf;
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_usage("ferry passwd [USER]");
	if (argc == 2)
		user = argv[1];
	else if ((pw = getpwuid(getuid())) != NULL)
		user = pw->pw_name;
	else {
		log_cli("ferry passwd", "who are you? (uid %lu has no "
		    "name; give USER)", (unsigned long)getuid());
		return EX_NOUSER;
	}
	/* A line starting with '#' is a comment in the users file. */
	if (strlen(user) == 0 || strlen(user) > AUTH_USER_MAX ||
	    !auth_name_ok(user, strlen(user)) || user[0] == '#') {
		log_cli("ferry passwd", "bad user name (1 to 255 "
		    "bytes, no ':', space or control character, no '#' "
		    "first)");
		return EX_USAGE;
	}
	/* isatty() is this very call; one import fewer. */
	tty = tcgetattr(STDIN_FILENO, &tio) == 0;
	if (tty) {
		r = auth_cli_read_tty(p1, sizeof(p1), &l1, AUTH_CLI_PROMPT);
		if (r == 0)
			r = auth_cli_read_tty(p2, sizeof(p2), &l2,
			    AUTH_CLI_PROMPT2);
	} else
		r = auth_cli_read(p1, sizeof(p1), &l1);
	/* One log_cli() for the refusals below: each sets rc and why. */
	rc = EX_DATAERR;
	if (r == -2 || (r == 0 && l1 > AUTH_PASS_MAX))
		why = "password longer than " AUTH_STR(AUTH_PASS_MAX) " bytes";
	else if (r != 0) {
		why = "no password read";
		rc = EX_NOINPUT;
	} else if (l1 == 0)
		why = "empty password";
	else if (tty && (l1 != l2 || sodium_memcmp(p1, p2, l1) != 0))
		why = "passwords do not match";
	else if (auth_hash_password(p1, l1, hash) != 0) {
		why = "hashing failed (out of memory?)";
		rc = EX_OSERR;
	} else
		why = NULL;
	if (why != NULL) {
		log_cli("ferry passwd", "%s", why);
		goto out;
	}
	/* fflush() reports a write that failed while buffered too. */
	rc = printf("%s:%s\n", user, hash) >= 0 && fflush(NULL) == 0 ?
	    EX_OK : EX_IOERR;
	if (rc != EX_OK)
		log_cli("ferry passwd", "stdout: %s",
		    log_errstr());
out:
	sodium_memzero(p1, sizeof(p1));
	sodium_memzero(p2, sizeof(p2));
	return rc;
}
