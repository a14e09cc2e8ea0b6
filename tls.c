/*
 * tls.c - mbedTLS behind tls.h: server and client credentials (reference
 * counted), the client's session cache, one TLS connection over a
 * non-blocking fd, and the relay_client_certs fingerprint list.  It owns
 * no policy: verification results are reported as TLS_V_* bits and the
 * callers decide.  Every mbedTLS return code is mapped in tls_result();
 * random bytes come from libsodium (no DRBG state to seed or reseed).
 * Written against mbedTLS 2.28 and 3.x (TLS 1.3 under 3.x, where the
 * library has it); the differences stay in small #if blocks.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sodium.h>

#include "compat.h"

#include <mbedtls/cipher.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#if COMPAT_MBEDTLS3
#include <psa/crypto.h>
#endif

#include "addr.h"
#include "dane.h"
#include "log.h"
#include "loop.h"
#include "textfile.h"
#include "tls.h"

#if COMPAT_MBEDTLS3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TLS_HAVE_13	1
#else
#define TLS_HAVE_13	0
#endif

/* Exported functions LTO would copy into each caller: kept apart, each
 * measured smaller. */
#define TLS_NOINLINE	__attribute__((noinline))
#define TLS_SUITES_MAX	64		/* ids in one ciphersuite list */
#define TLS_SUITE_NAME_MAX 64		/* longest name mbedTLS knows is ~50 */
#define TLS_TICKET_LIFETIME (12 * 3600)	/* seconds; keys rotate with it */
/* A client session's verify result is a snapshot of its full handshake:
 * resumed no later than this after it (Postfix's session cache timeout),
 * so a certificate that expired since is looked at again. */
#define TLS_CACHE_MAX_AGE_MS	(3600 * 1000)
#define TLS_CN_MAX	64		/* RFC 5280 ub-common-name */
#define TLS_SESSION_MAX	8192		/* a serialized session we cache */
#define TLS_SUITE_SEPS	" ,\t\r\n"
/* mbedTLS's SHA-256, as dane.c uses it: one library import fewer. */
#if COMPAT_MBEDTLS3
#define TLS_SHA256(in, n, out)	mbedtls_sha256((in), (n), (out), 0)
#else
#define TLS_SHA256(in, n, out)	mbedtls_sha256_ret((in), (n), (out), 0)
#endif
#define TLS_13_SUITE_HI	0x13		/* RFC 8446 B.4: suites 0x13xx */
/* mbedtls_ssl_read() calls in a row that report WANT_READ while the
 * library still holds an unprocessed message: each one processes it, so
 * more than a few means the library is stuck, not waiting. */
#define TLS_READ_SPINS	8
/* TLS 1.3 NewSessionTicket messages taken in one tls_conn_read(): a
 * server that sends them without end would keep it, and with it the
 * loop and every deadline, in there for ever. */
#define TLS_READ_TICKETS 4
/* What a ticket of ours carries past mbedTLS's: the client's leaf (a
 * flag, two fingerprints, the CN), sealed with a key of the process. */
#define TLS_TP_PLAIN	(1 + 2 * TLS_FP_LEN + TLS_CN_MAX + 1)
#define TLS_TP_NONCE	crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TLS_TP_LEN	(TLS_TP_NONCE + TLS_TP_PLAIN + \
			    crypto_aead_xchacha20poly1305_ietf_ABYTES)

/* The peer's leaf, reduced to what the callers ask about.  A ticket
 * carries its bytes as they lie here (tls_ticket_write()). */
struct tls_peer {
	unsigned char fp_cert[TLS_FP_LEN];
	unsigned char fp_spki[TLS_FP_LEN];
	char cn[TLS_CN_MAX + 1];
};
_Static_assert(offsetof(struct tls_peer, fp_spki) == TLS_FP_LEN &&
    offsetof(struct tls_peer, cn) == 2 * TLS_FP_LEN, "tls_peer layout");

struct tls_server {
	int refs;
	int ask_client_cert;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt chain;
	mbedtls_pk_context key;
	int suites[TLS_SUITES_MAX + 1];	/* 0-terminated; conf points here */
};

/*
 * One cached client session: the serialized form is compact and owns no
 * pointers, so a slot is a few allocations and LRU is a counter.  What
 * the full handshake established (the TLS_V_* bits and the leaf) is kept
 * beside it: a TLS 1.3 ticket carries neither the peer's certificate nor
 * the verify result, and a resumed session must report the original's,
 * never more.  name is the host name those bits were checked against
 * ("" for none); the session is only offered for the same name, and
 * only until TLS_CACHE_MAX_AGE_MS after that full handshake (born).
 */
struct tls_cache_slot {
	char *key;
	char *name;
	unsigned char *blob;
	size_t len;
	unsigned long used;
	uint64_t born;			/* loop_now() */
	unsigned verify;
	unsigned char has_peer;
	struct tls_peer peer;
};

struct tls_client {
	int refs;
	int ca_ok;
	int has_cert;
	unsigned long clock;		/* LRU: bumped on every cache use */
	struct tls_cache_slot cache[TLS_CACHE_SLOTS];
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_x509_crt cert;
	mbedtls_pk_context key;
	int suites[TLS_SUITES_MAX + 1];
};

struct tls_conn {
	/* The most-used fields first: offsets below 128 take one-byte
	 * displacements. */
	struct tls_server *srv;		/* exactly one of srv / cli */
	struct tls_client *cli;
	char *cache_key;		/* client only; NULL: no resumption */
	char *name;			/* with cache_key: the name checked */
	tls_chain_hook *chain_hook;	/* client only */
	void *chain_arg;
	int fd;
	int sys_errno;			/* the socket error behind a failure */
	unsigned char done;		/* handshake finished */
	unsigned char offered;		/* client: a cached session was
					   offered; server: a ticket parsed */
	unsigned char saw_cert;		/* a Certificate message came in */
	unsigned char resumed;
	unsigned char has_peer;
	unsigned char no_name;		/* no host name to check (NULL/IP) */
	unsigned char closed;		/* close_notify attempted */
	/* What the offered session's full handshake established (client:
	 * the cache slot's, copied; server: the ticket's leaf): a
	 * resumption reports it. */
	unsigned char off_has_peer;
	unsigned off_verify;
	uint64_t off_born;
	mbedtls_ssl_context ssl;
	struct tls_peer peer;
	struct tls_peer off_peer;
	char err[TLS_ERR_MAX];
};

struct tls_fplist {
	size_t n;
	unsigned char fp[][TLS_FP_LEN];	/* sorted, distinct */
};

static int	tls_init(void);
static void	*tls_alloc(size_t, char *, size_t);
static int	tls_rng(void *, unsigned char *, size_t);
static void	tls_liberr(int, const char *, char *, size_t);
static int	tls_file_readable(const char *, char *, size_t);
static int	tls_suites(const char *, int *, int *, char *, size_t);
static const char *tls_skip_seps(const char *);
static int	tls_conf_common(mbedtls_ssl_config *, int, const char *,
		    int *, char *, size_t);
static int	tls_load_pair(mbedtls_x509_crt *, mbedtls_pk_context *,
		    const char *, const char *, char *, size_t);
static int	tls_ticket_write(void *, const mbedtls_ssl_session *,
		    unsigned char *, const unsigned char *, size_t *,
		    uint32_t *);
static int	tls_ticket_parse(void *, mbedtls_ssl_session *,
		    unsigned char *, size_t);
static int	tls_ticket_init(char *, size_t);
static struct tls_conn *tls_conn_new(mbedtls_ssl_config *, int);
static int	tls_bio_send(void *, const unsigned char *, size_t);
static int	tls_bio_recv(void *, unsigned char *, size_t);
static int	tls_bio(struct tls_conn *, const unsigned char *,
		    unsigned char *, size_t);
static int	tls_on_verify(void *, mbedtls_x509_crt *, int, uint32_t *);
static void	tls_peer_record(struct tls_conn *, const mbedtls_x509_crt *);
static void	tls_handshake_done(struct tls_conn *);
static void	tls_srv_resume(struct tls_conn *);
static int	tls_result(struct tls_conn *, int, const char *);
static int	tls_is_ip(const char *);
static struct tls_cache_slot *tls_cache_find(struct tls_client *,
		    const char *);
static void	tls_cache_offer(struct tls_conn *);
static void	tls_cache_store(struct tls_conn *);
static void	tls_cache_drop(struct tls_client *, const char *);
static void	tls_cache_slot_clear(struct tls_cache_slot *);
static int	tls_fp_parse_line(const unsigned char *, size_t,
		    unsigned char *, const char **);
static int	tls_fp_cmp(const void *, const void *);

/*
 * The default suites, best first: forward-secret AEAD, then DHE, then
 * ECDHE with CBC for old peers, then plain RSA key exchange, last, for
 * very old MTAs (opportunistic TLS beats plaintext).  Suites this build
 * lacks are skipped.  AES-256 leads as in OpenSSL's order, so
 * the log reads like Postfix's.
 */
static const uint16_t tls_default_suites[] = {
#if TLS_HAVE_13
	MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
	MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
#endif
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	MBEDTLS_TLS_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_RSA_WITH_AES_256_CBC_SHA256,
	MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA256,
	MBEDTLS_TLS_RSA_WITH_AES_256_CBC_SHA,
	MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA,
};

/*
 * Session tickets are keyed once per process and shared by every
 * tls_server, so a SIGHUP reload does not void the tickets clients hold.
 * The context lives as long as the process (mbedTLS rotates its keys
 * every lifetime).
 */
static mbedtls_ssl_ticket_context tls_ticket;
static int tls_ticket_ready;
/*
 * A TLS 1.3 ticket (mbedTLS 3.x) keeps no client certificate, and
 * relay_client_certs needs its fingerprint on a resumed session too: the
 * ticket callbacks append the leaf's fingerprints, sealed (AEAD, the
 * mbedTLS ticket as associated data, so the two go together) with this
 * key.  Used for TLS 1.2 tickets as well, so both resume alike.
 */
static unsigned char tls_ticket_peer_key[
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES];

/*
 * The connection inside mbedtls_ssl_handshake() (or read / write, where
 * a TLS 1.3 server may send its tickets), for the ticket callbacks: they
 * get no per-connection pointer, and a ticket that parses is the
 * server's only public sign of a resumption.  Set and cleared around
 * each call; the process is single-threaded.
 */
static struct tls_conn *tls_current;

static int
tls_init(void)
{
	static int done;

	if (done)
		return 0;
	/* main calls it first; it is idempotent and cheap after that */
	if (sodium_init() < 0)
		return -1;
#if COMPAT_MBEDTLS3
	if (psa_crypto_init() != PSA_SUCCESS)
		return -1;
#endif
	done = 1;
	return 0;
}

/* A zeroed server or client, once the libraries are up. */
static void *
tls_alloc(size_t size, char *err, size_t errsz)
{
	void *p;

	if (tls_init() == -1) {
		snprintf(err, errsz, "TLS: cannot initialise the crypto "
		    "library");
		return NULL;
	}
	if ((p = calloc(1, size)) == NULL)
		snprintf(err, errsz, "TLS: %s", log_errstr());
	return p;
}

/* mbedTLS's f_rng signature over libsodium's generator (never fails). */
static int
tls_rng(void *ctx, unsigned char *out, size_t len)
{
	(void)ctx;
	randombytes_buf(out, len);
	return 0;
}

/* "what: " and mbedTLS's words for ret, into err. */
static void
tls_liberr(int ret, const char *what, char *err, size_t errsz)
{
	char buf[TLS_ERR_MAX];

#if defined(MBEDTLS_ERROR_C)
	mbedtls_strerror(ret, buf, sizeof(buf));
#else
	(void)snprintf(buf, sizeof(buf), "-0x%04x", (unsigned)-ret);
#endif
	snprintf(err, errsz, "%s: %s", what, buf);
}

/* mbedTLS says "Read/write of file failed" for everything; errno says
 * which (missing, permissions). */
static int
tls_file_readable(const char *path, char *err, size_t errsz)
{
	int fd;

	if ((fd = textfile_open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) ==
	    -1 || close(fd) == -1) {
		snprintf(err, errsz, "%s: %s", path, log_errstr());
		return -1;
	}
	return 0;
}

/*
 * Fill ids (TLS_SUITES_MAX + 1, 0-terminated) from spec, or from the
 * default list when spec is "".  *has13: the list has a TLS 1.3 suite
 * (without one, TLS 1.3 is off: it could not complete).  An unknown name
 * in the admin's list is an error; in ours it is skipped.
 */
static int
tls_suites(const char *spec, int *ids, int *has13, char *err, size_t errsz)
{
	char name[TLS_SUITE_NAME_MAX + 1];
	const char *p = spec, *end;
	size_t n = 0, i, len;
	int id;

	*has13 = 0;
	if (spec == NULL || *tls_skip_seps(spec) == '\0') {
		for (i = 0; i < sizeof(tls_default_suites) /
		    sizeof(tls_default_suites[0]); i++) {
			id = tls_default_suites[i];
			if (mbedtls_ssl_ciphersuite_from_id(id) == NULL)
				continue;
			if (id >> 8 == TLS_13_SUITE_HI)
				*has13 = 1;
			ids[n++] = id;
		}
		ids[n] = 0;
		if (n == 0) {
			snprintf(err, errsz, "this mbedTLS build has none "
			    "of the default cipher suites");
			return -1;
		}
		return 0;
	}
	for (;;) {
		p = tls_skip_seps(p);
		if (*p == '\0')
			break;
		for (len = 0; p[len] != '\0' &&
		    strchr(TLS_SUITE_SEPS, p[len]) == NULL; len++)
			;
		end = p + len;
		id = 0;
		if (len <= TLS_SUITE_NAME_MAX) {
			memcpy(name, p, len);
			name[len] = '\0';
			id = mbedtls_ssl_get_ciphersuite_id(name);
		}
		if (id == 0) {
			/* Longer than any name mbedTLS knows: its head. */
			snprintf(err, errsz, "unknown cipher suite %.*s%s",
			    (int)(len > TLS_SUITE_NAME_MAX ?
			    TLS_SUITE_NAME_MAX : len), p,
			    len > TLS_SUITE_NAME_MAX ? "..." : "");
			return -1;
		}
		if (n == TLS_SUITES_MAX) {
			snprintf(err, errsz, "more than %d cipher suites",
			    TLS_SUITES_MAX);
			return -1;
		}
		if (id >> 8 == TLS_13_SUITE_HI)
			*has13 = 1;
		ids[n++] = id;
		p = end;
	}
	ids[n] = 0;
	return 0;
}

/* strspn() by hand (and strcspn() in tls_suites()): one import less
 * each. */
static const char *
tls_skip_seps(const char *p)
{
	while (*p != '\0' && strchr(TLS_SUITE_SEPS, *p) != NULL)
		p++;
	return p;
}

/* config.c's check of tls_ciphers: every parse of the config (start,
 * SIGHUP, check-config) refuses a list the TLS set-up would refuse.
 * Through tls_conf_common(), where tls_suites() stays inlined. */
int
tls_ciphers_check(const char *spec, char *err, size_t errsz)
{
	int ids[TLS_SUITES_MAX + 1];

	return tls_conf_common(NULL, 0, spec, ids, err, errsz);
}

/* What server and client configurations share, with the ciphers list
 * made into suites (tls_suites()); conf NULL: only that. */
static int
tls_conf_common(mbedtls_ssl_config *conf, int endpoint, const char *ciphers,
    int *suites, char *err, size_t errsz)
{
	int ret, has13;

	if (tls_suites(ciphers, suites, &has13, err, errsz) == -1)
		return -1;
	if (conf == NULL)
		return 0;
	if ((ret = mbedtls_ssl_config_defaults(conf, endpoint,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
		tls_liberr(ret, "TLS configuration", err, errsz);
		return -1;
	}
	mbedtls_ssl_conf_rng(conf, tls_rng, NULL);
#if COMPAT_MBEDTLS3
	mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(conf, TLS_HAVE_13 && has13 ?
	    MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
#else
	(void)has13;
	mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
#endif
	/* Renegotiation stays off, as mbedtls_ssl_conf_renegotiation()
	 * documents for a new configuration (2.28 and 3.6): it is only a
	 * way to make the server work, and the call one import more. */
	mbedtls_ssl_conf_ciphersuites(conf, suites);
	/* mbedTLS 2.x prefers the largest curve it has (P-521): a key
	 * exchange several times slower than X25519 or P-256 for no
	 * security an MTA needs.  Fast and common first. */
#if COMPAT_MBEDTLS3
	{
		static const uint16_t groups[] = {
			MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
			MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
			MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
			MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
			MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
		};
		mbedtls_ssl_conf_groups(conf, groups);
	}
#else
	{
		/* As its elements, not the ABI's 16 for 16 bytes and more. */
		static const mbedtls_ecp_group_id curves[]
		    __attribute__((aligned(sizeof(mbedtls_ecp_group_id)))) = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
			MBEDTLS_ECP_DP_CURVE25519,
#endif
			MBEDTLS_ECP_DP_SECP256R1,
			MBEDTLS_ECP_DP_SECP384R1,
			MBEDTLS_ECP_DP_SECP521R1,
			MBEDTLS_ECP_DP_NONE,
		};
		mbedtls_ssl_conf_curves(conf, curves);
	}
#endif
	return 0;
}

/* A certificate chain and its key; the key must match the leaf. */
static int
tls_load_pair(mbedtls_x509_crt *crt, mbedtls_pk_context *pk,
    const char *cert, const char *key, char *err, size_t errsz)
{
	int ret;

	if (tls_file_readable(cert, err, errsz) == -1)
		return -1;
	if ((ret = mbedtls_x509_crt_parse_file(crt, cert)) != 0) {
		if (ret > 0)
			snprintf(err, errsz, "%s: %d certificates could not "
			    "be parsed", cert, ret);
		else
			tls_liberr(ret, cert, err, errsz);
		return -1;
	}
	if (tls_file_readable(key, err, errsz) == -1)
		return -1;
#if COMPAT_MBEDTLS3
	ret = mbedtls_pk_parse_keyfile(pk, key, NULL, tls_rng, NULL);
#else
	ret = mbedtls_pk_parse_keyfile(pk, key, NULL);
#endif
	if (ret != 0) {
		tls_liberr(ret, key, err, errsz);
		return -1;
	}
#if COMPAT_MBEDTLS3
	ret = mbedtls_pk_check_pair(&crt->pk, pk, tls_rng, NULL);
#else
	ret = mbedtls_pk_check_pair(&crt->pk, pk);
#endif
	if (ret != 0) {
		snprintf(err, errsz, "%s: the key does not match the "
		    "certificate in %s", key, cert);
		return -1;
	}
	return 0;
}

/* mbedTLS's ticket, then the client's leaf as tls_ticket_peer_key
 * seals it (none known: the flag says so, never a guess). */
static int
tls_ticket_write(void *ctx, const mbedtls_ssl_session *session,
    unsigned char *start, const unsigned char *end, size_t *tlen,
    uint32_t *lifetime)
{
	unsigned char plain[TLS_TP_PLAIN], *p;
	struct tls_conn *c = tls_current;
	int ret;

	if (end < start || (size_t)(end - start) < TLS_TP_LEN)
		return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
	if ((ret = mbedtls_ssl_ticket_write(ctx, session, start,
	    end - TLS_TP_LEN, tlen, lifetime)) != 0)
		return ret;
	memset(plain, 0, sizeof(plain));
	/* A TLS 1.3 server sends tickets on a resumed session too, before
	 * tls_handshake_done(): they carry on the leaf the resumption
	 * brought, or the client loses it at its next resumption. */
	if (c != NULL)
		tls_srv_resume(c);
	if (c != NULL && c->has_peer) {
		plain[0] = 1;
		/* fp_cert, fp_spki and the CN's bytes, as struct tls_peer
		 * lays them out. */
		memcpy(plain + 1, &c->peer, offsetof(struct tls_peer, cn) +
		    strlen(c->peer.cn));
	}
	p = start + *tlen;
	randombytes_buf(p, TLS_TP_NONCE);
	(void)crypto_aead_xchacha20poly1305_ietf_encrypt(p + TLS_TP_NONCE,
	    NULL, plain, sizeof(plain), start, *tlen, NULL, p,
	    tls_ticket_peer_key);
	*tlen += TLS_TP_LEN;
	return 0;
}

/* The seal first (mbedTLS decrypts its part in place): a ticket whose
 * two parts do not belong together is not resumed. */
static int
tls_ticket_parse(void *ctx, mbedtls_ssl_session *session,
    unsigned char *buf, size_t len)
{
	unsigned char plain[TLS_TP_PLAIN];
	const unsigned char *p;
	struct tls_conn *c = tls_current;
	size_t n;
	int ret;

	if (len < TLS_TP_LEN)
		return MBEDTLS_ERR_SSL_INVALID_MAC;
	n = len - TLS_TP_LEN;
	p = buf + n;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL,
	    p + TLS_TP_NONCE, TLS_TP_LEN - TLS_TP_NONCE, buf, n, p,
	    tls_ticket_peer_key) != 0)
		return MBEDTLS_ERR_SSL_INVALID_MAC;
	ret = mbedtls_ssl_ticket_parse(ctx, session, buf, n);
	if (ret != 0 || c == NULL)
		return ret;
	/* Not yet the peer: mbedTLS 3.x may still pass over a ticket that
	 * parsed (its age, its version) and run a full handshake, which
	 * tls_handshake_done() tells apart. */
	c->offered = 1;
	c->off_has_peer = plain[0] == 1;
	if (c->off_has_peer) {
		memcpy(&c->off_peer, plain + 1, offsetof(struct tls_peer, cn) +
		    TLS_CN_MAX);
		c->off_peer.cn[TLS_CN_MAX] = '\0';
	}
	return 0;
}

static int
tls_ticket_init(char *err, size_t errsz)
{
	int ret;

	if (tls_ticket_ready)
		return 0;
	randombytes_buf(tls_ticket_peer_key, sizeof(tls_ticket_peer_key));
	mbedtls_ssl_ticket_init(&tls_ticket);
	if ((ret = mbedtls_ssl_ticket_setup(&tls_ticket, tls_rng, NULL,
	    MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME)) != 0) {
		mbedtls_ssl_ticket_free(&tls_ticket);
		tls_liberr(ret, "session tickets", err, errsz);
		return -1;
	}
	tls_ticket_ready = 1;
	return 0;
}

struct tls_server *
tls_server_new(const char *cert, const char *key, const char *ciphers,
    int ask_client_cert, char *err, size_t errsz)
{
	struct tls_server *srv;

	if ((srv = tls_alloc(sizeof(*srv), err, errsz)) == NULL)
		return NULL;
	srv->refs = 1;
	srv->ask_client_cert = ask_client_cert != 0;
	mbedtls_ssl_config_init(&srv->conf);
	mbedtls_x509_crt_init(&srv->chain);
	mbedtls_pk_init(&srv->key);
	if (cert == NULL || *cert == '\0' || key == NULL || *key == '\0') {
		snprintf(err, errsz, "TLS: a certificate and a key are "
		    "both needed");
		goto fail;
	}
	if (tls_load_pair(&srv->chain, &srv->key, cert, key, err,
	    errsz) == -1)
		goto fail;
	if (tls_conf_common(&srv->conf, MBEDTLS_SSL_IS_SERVER, ciphers,
	    srv->suites, err, errsz) == -1)
		goto fail;
	if (tls_ticket_init(err, errsz) == -1)
		goto fail;
	mbedtls_ssl_conf_session_tickets_cb(&srv->conf,
	    tls_ticket_write, tls_ticket_parse, &tls_ticket);
	if (mbedtls_ssl_conf_own_cert(&srv->conf, &srv->chain,
	    &srv->key) != 0) {
		snprintf(err, errsz, "%s: cannot use the certificate", cert);
		goto fail;
	}
	/*
	 * A client certificate is asked for, never required, and its chain
	 * is not judged: relay_client_certs pins it by fingerprint, so no
	 * CA list is sent and tls_on_verify() clears every flag.
	 */
	mbedtls_ssl_conf_authmode(&srv->conf, srv->ask_client_cert ?
	    MBEDTLS_SSL_VERIFY_OPTIONAL : MBEDTLS_SSL_VERIFY_NONE);
	return srv;
fail:
	tls_server_unref(srv);
	return NULL;
}

struct tls_server *
tls_server_ref(struct tls_server *srv)
{
	srv->refs++;
	return srv;
}

void
tls_server_unref(struct tls_server *srv)
{
	if (srv == NULL || --srv->refs > 0)
		return;
	mbedtls_ssl_config_free(&srv->conf);
	mbedtls_x509_crt_free(&srv->chain);
	mbedtls_pk_free(&srv->key);
	free(srv);
}

struct tls_client *
tls_client_new(const char *ca_file, const char *cert, const char *key,
    const char *ciphers, char *err, size_t errsz)
{
	struct tls_client *cli;
	int ret;

	if ((cli = tls_alloc(sizeof(*cli), err, errsz)) == NULL)
		return NULL;
	cli->refs = 1;
	mbedtls_ssl_config_init(&cli->conf);
	mbedtls_x509_crt_init(&cli->ca);
	mbedtls_x509_crt_init(&cli->cert);
	mbedtls_pk_init(&cli->key);
	if (cert == NULL)
		cert = "";
	if (key == NULL)
		key = "";
	if ((*cert == '\0') != (*key == '\0')) {
		snprintf(err, errsz, "%s: a client certificate needs its "
		    "key and a key its certificate", *cert ? cert : key);
		goto fail;
	}
	/* Parse errors in a bundle only lose those entries (ret > 0). */
	if (ca_file != NULL && *ca_file != '\0') {
		ret = mbedtls_x509_crt_parse_file(&cli->ca, ca_file);
		cli->ca_ok = ret >= 0 && cli->ca.version != 0;
	}
	if (*cert != '\0') {
		if (tls_load_pair(&cli->cert, &cli->key, cert, key, err,
		    errsz) == -1)
			goto fail;
		cli->has_cert = 1;
	}
	if (tls_conf_common(&cli->conf, MBEDTLS_SSL_IS_CLIENT, ciphers,
	    cli->suites, err, errsz) == -1)
		goto fail;
	/* Policy is the caller's, from tls_conn_verify(). */
	mbedtls_ssl_conf_authmode(&cli->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
	if (cli->ca_ok)
		mbedtls_ssl_conf_ca_chain(&cli->conf, &cli->ca, NULL);
	if (cli->has_cert && mbedtls_ssl_conf_own_cert(&cli->conf,
	    &cli->cert, &cli->key) != 0) {
		snprintf(err, errsz, "%s: cannot use the certificate", cert);
		goto fail;
	}
#if TLS_HAVE_13 && defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
	/* 3.6.1+ drops TLS 1.3 tickets unless asked to hand them over. */
	mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(&cli->conf,
	    MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
	return cli;
fail:
	tls_client_unref(cli);
	return NULL;
}

int
tls_client_ca_ok(const struct tls_client *cli)
{
	return cli->ca_ok;
}

struct tls_client *
tls_client_ref(struct tls_client *cli)
{
	cli->refs++;
	return cli;
}

void
tls_client_unref(struct tls_client *cli)
{
	size_t i;

	if (cli == NULL || --cli->refs > 0)
		return;
	for (i = 0; i < TLS_CACHE_SLOTS; i++)
		tls_cache_slot_clear(&cli->cache[i]);
	mbedtls_ssl_config_free(&cli->conf);
	mbedtls_x509_crt_free(&cli->ca);
	mbedtls_x509_crt_free(&cli->cert);
	mbedtls_pk_free(&cli->key);
	free(cli);
}

/* The one allocation a connection makes itself. */
static struct tls_conn *
tls_conn_new(mbedtls_ssl_config *conf, int fd)
{
	struct tls_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->fd = fd;
	mbedtls_ssl_init(&c->ssl);
	if (mbedtls_ssl_setup(&c->ssl, conf) != 0) {
		mbedtls_ssl_free(&c->ssl);
		free(c);
		return NULL;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, tls_bio_send, tls_bio_recv, NULL);
	mbedtls_ssl_set_verify(&c->ssl, tls_on_verify, c);
	return c;
}

/* noinline: measured smaller than LTO's inlined copy. */
TLS_NOINLINE struct tls_conn *
tls_conn_server(struct tls_server *srv, int fd)
{
	struct tls_conn *c;

	if ((c = tls_conn_new(&srv->conf, fd)) == NULL)
		return NULL;
	c->srv = tls_server_ref(srv);
	return c;
}

struct tls_conn *
tls_conn_client(struct tls_client *cli, int fd, const char *sni,
    const char *cache_key)
{
	struct tls_conn *c;
	int ret;

	if ((c = tls_conn_new(&cli->conf, fd)) == NULL)
		return NULL;
	c->cli = tls_client_ref(cli);
	/*
	 * A host name is both the SNI and the name checked.  Without one the
	 * name goes unchecked (and says so, TLS_V_NAME); the explicit NULL
	 * keeps mbedTLS 3.6.3+ from failing the handshake for want of one.
	 */
	if (sni != NULL && *sni != '\0' && !tls_is_ip(sni))
		ret = mbedtls_ssl_set_hostname(&c->ssl, sni);
	else {
		ret = mbedtls_ssl_set_hostname(&c->ssl, NULL);
		c->no_name = 1;
	}
	if (ret != 0)
		goto fail;
	if (cache_key != NULL && *cache_key != '\0' &&
	    strlen(cache_key) <= TLS_CACHE_KEY_MAX) {
		if ((c->cache_key = strdup(cache_key)) == NULL ||
		    (c->name = strdup(c->no_name ? "" : sni)) == NULL)
			goto fail;
		tls_cache_offer(c);
	}
	return c;
fail:
	tls_conn_free(c);
	return NULL;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	mbedtls_ssl_free(&c->ssl);
	tls_server_unref(c->srv);
	tls_client_unref(c->cli);
	free(c->cache_key);
	free(c->name);
	free(c);
}

static int
tls_bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	return tls_bio(ctx, buf, NULL, len);
}

/* 0 at the end of the stream: mbedTLS makes that its CONN_EOF. */
static int
tls_bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	return tls_bio(ctx, NULL, buf, len);
}

/* Both directions in one: out is sent, else in is read into. */
static int
tls_bio(struct tls_conn *c, const unsigned char *out, unsigned char *in,
    size_t len)
{
	ssize_t n;

	if (len > INT_MAX)
		len = INT_MAX;
	do
		n = out != NULL ? send(c->fd, out, len, MSG_NOSIGNAL) :
		    read(c->fd, in, len);	/* recv(.., 0), one import less */
	while (n == -1 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return out != NULL ? MBEDTLS_ERR_SSL_WANT_WRITE :
		    MBEDTLS_ERR_SSL_WANT_READ;
	c->sys_errno = errno;
	return out != NULL ? MBEDTLS_ERR_NET_SEND_FAILED :
	    MBEDTLS_ERR_NET_RECV_FAILED;
}

/*
 * Called for each certificate of the peer's chain, the leaf (depth 0)
 * last.  The leaf's fingerprints are taken here, while mbedTLS still has
 * the chain, so nothing needs keeping after the handshake.  A server
 * does not judge client chains (they are pinned by fingerprint), so it
 * clears the flags and the handshake never fails over them.
 */
static int
tls_on_verify(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls_conn *c = arg;

	struct tls_der chain[TLS_CHAIN_MAX];
	const mbedtls_x509_crt *p;
	size_t n = 0;

	if (depth == 0) {
		c->saw_cert = 1;
		tls_peer_record(c, crt);
		if (c->chain_hook != NULL) {
			/* At depth 0 the list runs on as the peer sent it. */
			for (p = crt; p != NULL && n < TLS_CHAIN_MAX;
			    p = p->next) {
				if (p->raw.p == NULL)
					continue;
				chain[n].der = p->raw.p;
				chain[n++].len = p->raw.len;
			}
			c->chain_hook(c->chain_arg, chain, n);
		}
	}
	if (c->srv != NULL)
		*flags = 0;
	return 0;
}

void
tls_conn_set_chain_hook(struct tls_conn *c, tls_chain_hook *fn, void *arg)
{
	c->chain_hook = fn;
	c->chain_arg = arg;
}

static void
tls_peer_record(struct tls_conn *c, const mbedtls_x509_crt *crt)
{
	const mbedtls_x509_name *n;
	size_t i, len;
	unsigned char ch;

	if (crt == NULL || crt->raw.p == NULL)
		return;
	TLS_SHA256(crt->raw.p, crt->raw.len, c->peer.fp_cert);
	TLS_SHA256(COMPAT_PK_RAW(crt).p, COMPAT_PK_RAW(crt).len,
	    c->peer.fp_spki);
	c->peer.cn[0] = '\0';
	for (n = &crt->subject; n != NULL; n = n->next) {
		if (n->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN,
		    &n->oid) != 0)
			continue;
		/* Log text: printable ASCII only, the rest as '?'. */
		len = n->val.len < TLS_CN_MAX ? n->val.len : TLS_CN_MAX;
		for (i = 0; i < len; i++) {
			ch = n->val.p[i];
			c->peer.cn[i] = ch >= 0x20 && ch < 0x7f ? (char)ch :
			    '?';
		}
		c->peer.cn[len] = '\0';
		break;
	}
	c->has_peer = 1;
}

static void
tls_handshake_done(struct tls_conn *c)
{
	c->done = 1;
	if (c->cli != NULL) {
		/* A resumed session brings no Certificate message: its peer
		 * is the one the cache kept with it (TLS 1.3 tickets have
		 * no certificate for mbedTLS to restore). */
		c->resumed = c->offered && !c->saw_cert;
		if (c->resumed) {
			c->has_peer = c->off_has_peer;
			c->peer = c->off_peer;
		}
		/* TLS 1.3 has no session until its ticket comes (read). */
		if (strcmp(mbedtls_ssl_get_version(&c->ssl), "TLSv1.3") != 0)
			tls_cache_store(c);
	} else
		tls_srv_resume(c);
}

/*
 * A server's resumption: the ticket's leaf.  A full handshake after a
 * ticket that parsed but was passed over asked for a certificate
 * (relay_client_certs) and got one (saw_cert) or none (BADCERT_MISSING,
 * also what a resumed session of a client without one keeps): the
 * ticket's leaf is never taken for the one a stranger did not show.
 * Idempotent: tls_ticket_write() may run it first.
 */
static void
tls_srv_resume(struct tls_conn *c)
{
	if (!c->offered || c->saw_cert)
		return;
	c->resumed = 1;
	if (!(mbedtls_ssl_get_verify_result(&c->ssl) &
	    MBEDTLS_X509_BADCERT_MISSING)) {
		c->has_peer = c->off_has_peer;
		c->peer = c->off_peer;
	}
}

/*
 * Every mbedTLS result goes through here: WANT_* map to TLS_WANT_*, the
 * peer's close_notify and a plain end of stream to TLS_EOF, the rest to
 * TLS_FAIL with the reason kept for tls_conn_error().
 */
static int
tls_result(struct tls_conn *c, int ret, const char *what)
{
	const char *why;
	int r = TLS_EOF;

	switch (ret) {
	case MBEDTLS_ERR_SSL_WANT_READ:
		return TLS_WANT_READ;
	case MBEDTLS_ERR_SSL_WANT_WRITE:
		return TLS_WANT_WRITE;
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
		why = "peer sent close_notify";
		break;
	case 0:
	case MBEDTLS_ERR_SSL_CONN_EOF:
		why = "lost connection";
		break;
	case MBEDTLS_ERR_NET_SEND_FAILED:
	case MBEDTLS_ERR_NET_RECV_FAILED:
		if (c->sys_errno != 0) {
			why = strerror(c->sys_errno);
			r = TLS_FAIL;
			break;
		}
		/* FALLTHROUGH */
	default:
		tls_liberr(ret, what, c->err, sizeof(c->err));
		return TLS_FAIL;
	}
	snprintf(c->err, sizeof(c->err), "%s: %s", what, why);
	return r;
}

TLS_NOINLINE int
tls_conn_handshake(struct tls_conn *c)
{
	int ret, r;

	if (c->done)
		return TLS_OK;
	tls_current = c;
	ret = mbedtls_ssl_handshake(&c->ssl);
	tls_current = NULL;
	if (ret == 0) {
		tls_handshake_done(c);
		return TLS_OK;
	}
	r = tls_result(c, ret, "handshake");
	/* The offered session may be what broke it: do not offer it again. */
	if ((r == TLS_FAIL || r == TLS_EOF) && c->offered)
		tls_cache_drop(c->cli, c->cache_key);
	return r;
}

/*
 * WANT_READ goes back to the caller when mbedTLS holds nothing
 * unprocessed, so waiting for the fd is right.  It is also what mbedTLS
 * says after taking in a post-handshake message (a TLS 1.3
 * NewSessionTicket): it keeps the message and handles it on the next
 * call, while the application data behind it may already be read off
 * the socket or never come (the peer waits for us).  So: call again;
 * but after TLS_READ_TICKETS tickets, WANT_READ all the same: what
 * mbedTLS still holds (more tickets in the same record) is in
 * tls_conn_pending(), and io.c comes back for it from the loop.
 */
TLS_NOINLINE ssize_t
tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
	int ret, spins = 0;
#if TLS_HAVE_13
	int tickets = 0;
#endif

	if (len > INT_MAX)
		len = INT_MAX;
	for (;;) {
		tls_current = c;
		ret = mbedtls_ssl_read(&c->ssl, buf, len);
		tls_current = NULL;
		if (ret > 0)
			return ret;
#if TLS_HAVE_13
		/* TLS 1.3 tickets come after the handshake, as records. */
		if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
			if (c->cli != NULL)
				tls_cache_store(c);
			spins = 0;
			if (++tickets < TLS_READ_TICKETS)
				continue;
			return TLS_WANT_READ;
		}
#endif
		if (ret == MBEDTLS_ERR_SSL_WANT_READ &&
		    mbedtls_ssl_check_pending(&c->ssl)) {
			if (++spins <= TLS_READ_SPINS)
				continue;
			snprintf(c->err, sizeof(c->err), "read: the TLS "
			    "library makes no progress");
			return TLS_FAIL;
		}
		return tls_result(c, ret, "read");
	}
}

TLS_NOINLINE size_t
tls_conn_pending(const struct tls_conn *c)
{
	/* Plus one for a message taken in but not handled yet (a ticket
	 * past tls_conn_read()'s TLS_READ_TICKETS): the fd will not say. */
	return mbedtls_ssl_get_bytes_avail(&c->ssl) +
	    (size_t)mbedtls_ssl_check_pending(&c->ssl);
}

ssize_t
tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	int ret;

	if (len > INT_MAX)
		len = INT_MAX;
	tls_current = c;
	ret = mbedtls_ssl_write(&c->ssl, buf, len);
	tls_current = NULL;
	if (ret > 0)
		return ret;
	if (ret == 0) {
		snprintf(c->err, sizeof(c->err), "write: nothing "
		    "written");
		return TLS_FAIL;
	}
	return tls_result(c, ret, "write");
}

void
tls_conn_close_notify(struct tls_conn *c)
{
	/* Once: a second try would only re-send the pending record. */
	if (c->closed || !c->done)
		return;
	c->closed = 1;
	(void)mbedtls_ssl_close_notify(&c->ssl);
}

const char *
tls_conn_version(const struct tls_conn *c)
{
	return mbedtls_ssl_get_version(&c->ssl);
}

TLS_NOINLINE const char *
tls_conn_cipher(const struct tls_conn *c)
{
	const char *name = mbedtls_ssl_get_ciphersuite(&c->ssl);

	return name != NULL ? name : "unknown";
}

unsigned
tls_conn_cipher_bits(const struct tls_conn *c)
{
	const mbedtls_ssl_ciphersuite_t *info;
	const char *name;

	if ((name = mbedtls_ssl_get_ciphersuite(&c->ssl)) == NULL ||
	    (info = mbedtls_ssl_ciphersuite_from_id(
	    mbedtls_ssl_get_ciphersuite_id(name))) == NULL)
		return 0;
#if COMPAT_MBEDTLS3
	return (unsigned)mbedtls_ssl_ciphersuite_get_cipher_key_bitlen(info);
#else
	{
		const mbedtls_cipher_info_t *ci;

		ci = mbedtls_cipher_info_from_type(info->cipher);
		return ci != NULL ? ci->key_bitlen : 0;
	}
#endif
}

int
tls_conn_resumed(const struct tls_conn *c)
{
	return c->done && c->resumed;
}

/*
 * Client: the verify flags of this handshake's chain, reduced to
 * TLS_V_*; a resumed session reports what its full handshake did (kept
 * in the cache: mbedTLS does not keep it in a TLS 1.3 ticket, and a
 * loaded session's zeroed flags would read as "verified").  Server: only
 * whether there was a certificate; its chain was never judged.
 */
unsigned
tls_conn_verify(const struct tls_conn *c)
{
	uint32_t flags;
	unsigned v = 0;

	if (c->srv != NULL)
		return c->has_peer ? 0 : TLS_V_NOCERT;
	if (!c->done)
		return TLS_V_NOCERT | TLS_V_UNTRUSTED;
	if (c->resumed)
		return c->off_verify;
	if (!c->has_peer)
		return TLS_V_NOCERT | TLS_V_UNTRUSTED;
	flags = mbedtls_ssl_get_verify_result(&c->ssl);
	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		v |= TLS_V_NAME;
	if (flags & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE))
		v |= TLS_V_EXPIRED | TLS_V_UNTRUSTED;
	if (flags & ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH)
		v |= TLS_V_UNTRUSTED;
	if (!c->cli->ca_ok)
		v |= TLS_V_UNTRUSTED;
	if (c->no_name)
		v |= TLS_V_NAME;
	return v;
}

int
tls_conn_peer_fp(const struct tls_conn *c, unsigned char cert[TLS_FP_LEN],
    unsigned char spki[TLS_FP_LEN])
{
	if (!c->has_peer)
		return -1;
	memcpy(cert, c->peer.fp_cert, TLS_FP_LEN);
	memcpy(spki, c->peer.fp_spki, TLS_FP_LEN);
	return 0;
}

const char *
tls_conn_peer_cn(const struct tls_conn *c, char *buf, size_t bufsz)
{
	if (bufsz == 0)
		return "";
	textfile_copy(buf, bufsz, c->has_peer ? c->peer.cn : "");
	return buf;
}

TLS_NOINLINE const char *
tls_conn_error(const struct tls_conn *c)
{
	return c->err[0] != '\0' ? c->err : "no error";
}

/* An IP literal is never SNI (RFC 6066 §3) nor a name to check. */
static int
tls_is_ip(const char *s)
{
	unsigned char a[sizeof(struct in6_addr)];

	if (*s == '[' || strchr(s, ':') != NULL)
		return 1;
	return inet_pton(AF_INET, s, a) == 1;
}

/* ---- the client's session cache ---------------------------------- */

static struct tls_cache_slot *
tls_cache_find(struct tls_client *cli, const char *key)
{
	size_t i;

	for (i = 0; i < TLS_CACHE_SLOTS; i++)
		if (cli->cache[i].key != NULL &&
		    strcmp(cli->cache[i].key, key) == 0)
			return &cli->cache[i];
	return NULL;
}

static void
tls_cache_offer(struct tls_conn *c)
{
	struct tls_cache_slot *s;
	mbedtls_ssl_session sess;

	if ((s = tls_cache_find(c->cli, c->cache_key)) == NULL ||
	    addr_casecmp(s->name, c->name) != 0)
		return;
	if (loop_now() - s->born > TLS_CACHE_MAX_AGE_MS) {
		tls_cache_slot_clear(s);
		return;
	}
	s->used = ++c->cli->clock;
	mbedtls_ssl_session_init(&sess);
	/* A blob this build cannot load (or a session mbedTLS refuses) is
	 * just not offered. */
	if (mbedtls_ssl_session_load(&sess, s->blob, s->len) == 0 &&
	    mbedtls_ssl_set_session(&c->ssl, &sess) == 0) {
		c->offered = 1;
		/* A copy: the slot may be replaced before this handshake
		 * ends, and what resumes is this session. */
		c->off_verify = s->verify;
		c->off_has_peer = s->has_peer;
		c->off_peer = s->peer;
		c->off_born = s->born;
	} else
		tls_cache_slot_clear(s);
	mbedtls_ssl_session_free(&sess);
}

static void
tls_cache_store(struct tls_conn *c)
{
	struct tls_client *cli = c->cli;
	struct tls_cache_slot *s, *victim;
	mbedtls_ssl_session sess;
	unsigned char *blob = NULL;
	size_t len = 0, i;
	char *key = NULL, *name = NULL;

	if (c->cache_key == NULL || (name = strdup(c->name)) == NULL)
		return;
	mbedtls_ssl_session_init(&sess);
	if (mbedtls_ssl_get_session(&c->ssl, &sess) != 0)
		goto done;
	if (mbedtls_ssl_session_save(&sess, NULL, 0, &len) !=
	    MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL || len == 0 ||
	    len > TLS_SESSION_MAX)
		goto done;
	if ((blob = malloc(len)) == NULL ||
	    mbedtls_ssl_session_save(&sess, blob, len, &len) != 0)
		goto done;
	if ((s = tls_cache_find(cli, c->cache_key)) == NULL) {
		if ((key = strdup(c->cache_key)) == NULL)
			goto done;
		victim = &cli->cache[0];
		for (i = 0; i < TLS_CACHE_SLOTS; i++) {
			if (cli->cache[i].key == NULL) {
				victim = &cli->cache[i];
				break;
			}
			if (cli->cache[i].used < victim->used)
				victim = &cli->cache[i];
		}
		s = victim;
		tls_cache_slot_clear(s);
		s->key = key;
		key = NULL;
	}
	free(s->blob);
	s->blob = blob;
	s->len = len;
	s->used = ++cli->clock;
	blob = NULL;
	free(s->name);
	s->name = name;
	name = NULL;
	/* a resumed session passes on what its own original established */
	s->born = c->resumed ? c->off_born : loop_now();
	s->verify = tls_conn_verify(c);
	s->has_peer = c->has_peer;
	s->peer = c->peer;
done:
	free(name);
	free(key);
	free(blob);
	mbedtls_ssl_session_free(&sess);
}

static void
tls_cache_drop(struct tls_client *cli, const char *key)
{
	struct tls_cache_slot *s;

	if (key != NULL && (s = tls_cache_find(cli, key)) != NULL)
		tls_cache_slot_clear(s);
}

static void
tls_cache_slot_clear(struct tls_cache_slot *s)
{
	free(s->key);
	free(s->name);
	if (s->blob != NULL)
		sodium_memzero(s->blob, s->len);	/* holds a master secret */
	free(s->blob);
	memset(s, 0, sizeof(*s));
}

/* ---- relay_client_certs ------------------------------------------ */

/*
 * One line (without its '\n').  1: fp filled; 0: blank or comment;
 * -1: *why says what is wrong.  Either every byte is followed by ':' (but
 * the last) or none is; the choice is made at the first separator.
 */
static int
tls_fp_parse_line(const unsigned char *s, size_t len, unsigned char *fp,
    const char **why)
{
	size_t pos = 0, b;
	int hi, lo, colons = 0;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	while (pos < len && (s[pos] == ' ' || s[pos] == '\t'))
		pos++;
	if (pos == len || s[pos] == '#')
		return 0;
	if (len - pos > 2 && s[pos + 2] == ':')
		colons = 1;
	for (b = 0; b < TLS_FP_LEN; b++) {
		if (b > 0 && colons) {
			if (pos == len || s[pos] != ':') {
				*why = pos == len || s[pos] == ' ' ||
				    s[pos] == '\t' ? "fingerprint too short "
				    "(want 32 bytes)" : "expected ':' between "
				    "bytes";
				return -1;
			}
			pos++;
		}
		if (pos == len || s[pos] == ' ' || s[pos] == '\t') {
			*why = "fingerprint too short (want 32 bytes)";
			return -1;
		}
		if (len - pos < 2 || (hi = dane_hexval(s[pos])) < 0 ||
		    (lo = dane_hexval(s[pos + 1])) < 0) {
			*why = "not a hex digit";
			return -1;
		}
		fp[b] = (unsigned char)(hi << 4 | lo);
		pos += 2;
	}
	if (pos < len && s[pos] != ' ' && s[pos] != '\t') {
		*why = s[pos] == ':' || dane_hexval(s[pos]) >= 0 ?
		    "fingerprint too long (want 32 bytes)" :
		    "white space expected after the fingerprint";
		return -1;
	}
	return 1;
}

static int
tls_fp_cmp(const void *a, const void *b)
{
	return memcmp(a, b, TLS_FP_LEN);
}

struct tls_fplist *
tls_fplist_parse(const char *name, const char *text, size_t len, char *err,
    size_t errsz)
{
	struct tls_fplist *l, *shrunk;
	size_t pos = 0, line = 0, n = 0, i, out, linelen;
	const unsigned char *s;
	const char *why = NULL, *ln;
	int r;

	if ((l = malloc(sizeof(*l) + TLS_FP_MAX * TLS_FP_LEN)) == NULL) {
		snprintf(err, errsz, "%s: %s", name, log_errstr());
		return NULL;
	}
	while (textfile_line(text, len, &pos, &ln, &linelen)) {
		line++;
		s = (const unsigned char *)ln;
		if (n == TLS_FP_MAX) {
			/* only an entry past the limit is an error */
			unsigned char spare[TLS_FP_LEN];

			r = tls_fp_parse_line(s, linelen, spare, &why);
			if (r == 1) {
				why = "too many fingerprints";
				r = -1;
			}
		} else
			r = tls_fp_parse_line(s, linelen, l->fp[n], &why);
		if (r == -1) {
			snprintf(err, errsz, "%s:%zu: %s", name, line, why);
			free(l);
			return NULL;
		}
		if (r == 1)
			n++;
	}
	qsort(l->fp, n, TLS_FP_LEN, tls_fp_cmp);
	for (i = out = 0; i < n; i++)
		if (out == 0 || memcmp(l->fp[out - 1], l->fp[i],
		    TLS_FP_LEN) != 0) {
			/* Distinct entries do not overlap: no memmove()
			 * (one libc import fewer). */
			if (out != i)
				memcpy(l->fp[out], l->fp[i], TLS_FP_LEN);
			out++;
		}
	l->n = out;
	if ((shrunk = realloc(l, sizeof(*l) + out * TLS_FP_LEN)) != NULL)
		l = shrunk;
	return l;
}

TLS_NOINLINE struct tls_fplist *
tls_fplist_load(const char *path, char *err, size_t errsz)
{
	struct tls_fplist *l;
	char *buf;
	size_t len;

	switch (textfile_read(path, TLS_FP_FILE_MAX, 0, &buf, &len, err,
	    errsz)) {
	case TEXTFILE_OK:
		break;
	case TEXTFILE_BIG:
		snprintf(err, errsz, "%s: file too large (over %d bytes)",
		    path, TLS_FP_FILE_MAX);
		return NULL;
	case TEXTFILE_NOMEM:
		snprintf(err, errsz, "%s: %s", path, log_errstr());
		return NULL;
	default:
		return NULL;
	}
	l = tls_fplist_parse(path, buf, len, err, errsz);
	free(buf);
	return l;
}

void
tls_fplist_free(struct tls_fplist *l)
{
	free(l);
}

size_t
tls_fplist_count(const struct tls_fplist *l)
{
	return l != NULL ? l->n : 0;
}

int
tls_fplist_has(const struct tls_fplist *l, const unsigned char fp[TLS_FP_LEN])
{
	if (l == NULL || l->n == 0)
		return 0;
	return bsearch(fp, l->fp, l->n, TLS_FP_LEN, tls_fp_cmp) != NULL;
}

void
tls_fp_format(const unsigned char fp[TLS_FP_LEN], char out[96])
{
	/* aligned(1): the ABI's 16 for 16 bytes and more is only padding. */
	static const char hex[] __attribute__((aligned(1))) =
	    "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < TLS_FP_LEN; i++) {
		out[i * 3] = hex[fp[i] >> 4];
		out[i * 3 + 1] = hex[fp[i] & 0xf];
		out[i * 3 + 2] = i + 1 < TLS_FP_LEN ? ':' : '\0';
	}
}
