/*
 * tls.h - mbedTLS behind a small API: the server side's credentials
 * (certificate chain, key, session tickets, the client-certificate
 * request), the client side's (CA file, client certificate, a session
 * cache per destination), and one TLS connection over a non-blocking fd.
 *
 * Nothing here knows SMTP, the loop or DANE.  io.c drives a tls_conn on
 * the loop; smtp.c and deliver.c decide what a result means (policy).
 * A tls_server / tls_client is reference counted: every tls_conn holds
 * one, so a SIGHUP can swap in new credentials while old sessions finish
 * on the old ones.
 *
 * Return conventions: TLS_OK (0) done, TLS_WANT_READ / TLS_WANT_WRITE:
 * call again when the fd is readable / writable, TLS_FAIL: the
 * connection is dead (tls_conn_error() says why), TLS_EOF: the peer sent
 * close_notify or closed the socket.
 */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_OK		0
#define TLS_FAIL	(-1)
#define TLS_WANT_READ	(-2)
#define TLS_WANT_WRITE	(-3)
#define TLS_EOF		(-4)

#define TLS_FP_LEN	32		/* SHA-256 */
#define TLS_ERR_MAX	160		/* tls_conn_error() text */
#define TLS_FP_MAX	256		/* fingerprints in relay_client_certs */
#define TLS_FP_FILE_MAX	(64 * 1024)
#define TLS_CACHE_SLOTS	32		/* client sessions kept (destinations) */
#define TLS_CACHE_KEY_MAX 300		/* "host:port" */

/* tls_conn_verify() bits for the client's policy (and the log words). */
#define TLS_V_NOCERT	0x1u	/* the peer sent no certificate */
#define TLS_V_UNTRUSTED	0x2u	/* the chain does not end in ca_file,
				   or it is expired / not yet valid / bad */
#define TLS_V_NAME	0x4u	/* the certificate does not name the host */
#define TLS_V_EXPIRED	0x8u	/* one of: expired or not yet valid */

struct tls_server;
struct tls_client;
struct tls_conn;

/*
 * A set of SHA-256 fingerprints (relay_client_certs).  The file has one
 * per line, 64 hex digits, with or without ':' between bytes, upper or
 * lower case; '#' comments and blank lines are skipped; anything after
 * the fingerprint on its line (white space first) is a comment.  Parse
 * errors are "NAME:LINE: what" in err.
 */
struct tls_fplist;
struct tls_fplist *tls_fplist_parse(const char *name, const char *text,
    size_t len, char *err, size_t errsz);
struct tls_fplist *tls_fplist_load(const char *path, char *err,
    size_t errsz);
void tls_fplist_free(struct tls_fplist *);
size_t tls_fplist_count(const struct tls_fplist *);
int tls_fplist_has(const struct tls_fplist *,
    const unsigned char fp[TLS_FP_LEN]);

/* 0, or -1 with what is wrong in err: is ciphers a list that
 * tls_server_new() and tls_client_new() take?  Loads nothing. */
int tls_ciphers_check(const char *ciphers, char *err, size_t errsz);

/*
 * Server credentials.  cert is a PEM file with the leaf first and its
 * chain after it; key its private key (PEM, not encrypted).  ciphers is
 * a space/comma separated list of mbedTLS ciphersuite names, "" for the
 * default (forward-secret AEAD first, then CBC with ECDHE for old peers;
 * never anonymous, export, NULL, RC4, 3DES or PSK).  ask_client_cert:
 * request (not require) a client certificate.  Session tickets are on,
 * keyed per process.  NULL on error with "FILE: what" in err (a key
 * that does not match the certificate is an error).
 */
struct tls_server *tls_server_new(const char *cert, const char *key,
    const char *ciphers, int ask_client_cert, char *err, size_t errsz);
struct tls_server *tls_server_ref(struct tls_server *);
void tls_server_unref(struct tls_server *);	/* NULL: nothing */

/*
 * Client credentials.  ca_file may be "" or unreadable: then nothing
 * verifies (TLS_V_UNTRUSTED always set), which is only an error for the
 * levels that need it, so it is reported by tls_client_ca_ok() rather
 * than failing here.  cert/key: "" for none.  NULL on error (a bad
 * client cert or key) with the reason in err.
 */
struct tls_client *tls_client_new(const char *ca_file, const char *cert,
    const char *key, const char *ciphers, char *err, size_t errsz);
int tls_client_ca_ok(const struct tls_client *);
struct tls_client *tls_client_ref(struct tls_client *);
void tls_client_unref(struct tls_client *);	/* NULL: nothing */

/*
 * One connection over fd (non-blocking; the caller keeps owning and
 * closes it).  The server side remembers its peer's certificate
 * fingerprints.  The client side sends sni (a host name; NULL or an IP
 * literal: none), checks the certificate against it for TLS_V_NAME, and
 * offers the session cached under cache_key (NULL: no resumption),
 * storing the new one there after the handshake.
 */
struct tls_conn *tls_conn_server(struct tls_server *, int fd);
struct tls_conn *tls_conn_client(struct tls_client *, int fd,
    const char *sni, const char *cache_key);
void tls_conn_free(struct tls_conn *);

int tls_conn_handshake(struct tls_conn *);
/* >0 bytes read; TLS_EOF, TLS_WANT_*, TLS_FAIL. */
ssize_t tls_conn_read(struct tls_conn *, void *, size_t);
/* Bytes decrypted and buffered inside (plus one while a message taken
 * in waits to be handled): read them before waiting on the fd, which
 * will not become readable for them. */
size_t tls_conn_pending(const struct tls_conn *);
/* >0 bytes written; TLS_WANT_*, TLS_FAIL.  After a TLS_WANT_* the next
 * call must pass the same bytes with the same length (mbedTLS keeps the
 * encrypted record and reports it written on the retry). */
ssize_t tls_conn_write(struct tls_conn *, const void *, size_t);
/* Best effort, never blocks: a close_notify if it fits the socket. */
void tls_conn_close_notify(struct tls_conn *);

/* After the handshake. */
const char *tls_conn_version(const struct tls_conn *);	/* "TLSv1.2" */
const char *tls_conn_cipher(const struct tls_conn *);	/* suite name */
unsigned tls_conn_cipher_bits(const struct tls_conn *);
int tls_conn_resumed(const struct tls_conn *);
/* TLS_V_* of the peer's certificate (client side: against ca_file and
 * sni; server side: TLS_V_NOCERT or 0, the chain is not judged). */
unsigned tls_conn_verify(const struct tls_conn *);
/* SHA-256 of the peer's leaf certificate (DER) and of its public key
 * (SubjectPublicKeyInfo, DER).  -1: the peer sent none. */
int tls_conn_peer_fp(const struct tls_conn *,
    unsigned char cert[TLS_FP_LEN], unsigned char spki[TLS_FP_LEN]);
/* The peer's leaf subject CN, for logs ("" when none). */
const char *tls_conn_peer_cn(const struct tls_conn *, char *buf,
    size_t bufsz);
/* Why the last call failed, in words (mbedTLS's error text). */
const char *tls_conn_error(const struct tls_conn *);

/*
 * The client's look at the chain the server presented, leaf first, in
 * DER, during the handshake (never on a resumed session, which presents
 * none): DANE matches it there (tls.c knows nothing of DANE).  The
 * pointers are valid only during the call.
 */
#define TLS_CHAIN_MAX	8
struct tls_der {
	const unsigned char *der;
	size_t len;
};
typedef void tls_chain_hook(void *arg, const struct tls_der *chain,
    size_t n);
void tls_conn_set_chain_hook(struct tls_conn *, tls_chain_hook *,
    void *arg);

/* "AB:CD:..." (95 characters + NUL), as Postfix logs fingerprints. */
void tls_fp_format(const unsigned char fp[TLS_FP_LEN], char out[96]);

#endif
