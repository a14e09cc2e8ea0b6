/*
 * tls_test.c - tls.c over a socketpair, no network and no fork (it runs
 * under qemu-user too): both handshakes driven in turn, data both ways
 * with WANT_WRITE retries, the verify bits for good, wrong-name,
 * self-signed, expired and CA-less cases, the client certificate's
 * fingerprints on the server, resumption from the client's cache (with
 * TLS 1.3 tickets under mbedTLS 3.x) and what a resumed session reports, a
 * garbage ClientHello, bad credentials and cipher lists, the
 * relay_client_certs parser and loader, and the heap an idle connection
 * keeps.  Run from the repository root (test/certs/...).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "compat.h"
#include "tls.h"
#include "test/unit/t.h"

#define CERTS		"test/certs/"
#define DRIVE_MAX	2000		/* turns before a handshake is stuck */
#define BIG_LEN		(40 * 1024)
#define PIECE		4000
#define SMALL_BUF	4096		/* socket buffers, to force WANT_WRITE */
#define IDLE_MAX	(64 * 1024)	/* heap bound for one idle side */

/* openssl x509 -noout -fingerprint -sha256 -in test/certs/client.pem */
static const char client_fp_hex[] =
    "CE:63:7C:C8:89:1C:9C:80:C0:1C:00:0A:D7:BB:0E:66:"
    "7C:0B:DC:01:F9:AB:B8:65:19:2F:B2:47:AB:BC:08:FB";
/* openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum */
static const char client_spki_hex[] =
    "091eca217088262f07be8ceb6652904cc7c579e66c31ef08ccf4a7029af1cd41";

/* One pair of ends and what runs on them. */
struct pair {
	int fd[2];			/* [0] server, [1] client */
	struct tls_conn *s, *c;
};

static int	unhex(const char *, unsigned char *);
static int	pair_open(struct pair *, int);
static void	pair_close(struct pair *);
static int	drive(struct pair *);
static int	connect_pair(struct pair *, struct tls_server *,
		    struct tls_client *, const char *, const char *);
static int	greet(struct pair *);
static struct tls_server *server(const char *, const char *, int);
static struct tls_client *client(const char *, const char *,
		    const char *);

/* Hex (with or without ':') to bytes; the count of bytes. */
static int
unhex(const char *s, unsigned char *out)
{
	unsigned v;
	int n = 0;

	while (*s != '\0') {
		if (*s == ':') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x", &v) != 1)
			return -1;
		out[n++] = (unsigned char)v;
		s += 2;
	}
	return n;
}

static int
pair_open(struct pair *p, int small)
{
	int i, sz = SMALL_BUF;

	memset(p, 0, sizeof(*p));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd) == -1)
		return -1;
	for (i = 0; i < 2; i++) {
		if (fcntl(p->fd[i], F_SETFL, O_NONBLOCK) == -1)
			return -1;
		if (small && (setsockopt(p->fd[i], SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof(sz)) == -1 || setsockopt(p->fd[i], SOL_SOCKET,
		    SO_RCVBUF, &sz, sizeof(sz)) == -1))
			return -1;
	}
	return 0;
}

static void
pair_close(struct pair *p)
{
	tls_conn_free(p->s);
	tls_conn_free(p->c);
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
	memset(p, 0, sizeof(*p));
}

/* Both handshakes in turn until both are done: 0, or -1 on a failure
 * (or a stall, which is a bug in the state mapping). */
static int
drive(struct pair *p)
{
	int i, rs = TLS_WANT_READ, rc = TLS_WANT_READ;

	for (i = 0; i < DRIVE_MAX; i++) {
		if (rc != TLS_OK)
			rc = tls_conn_handshake(p->c);
		if (rs != TLS_OK)
			rs = tls_conn_handshake(p->s);
		if (rc == TLS_OK && rs == TLS_OK)
			return 0;
		if ((rc != TLS_OK && rc != TLS_WANT_READ &&
		    rc != TLS_WANT_WRITE) || (rs != TLS_OK &&
		    rs != TLS_WANT_READ && rs != TLS_WANT_WRITE)) {
			fprintf(stderr, "  handshake: client %d (%s), server "
			    "%d (%s)\n", rc, tls_conn_error(p->c), rs,
			    tls_conn_error(p->s));
			return -1;
		}
	}
	fprintf(stderr, "  handshake stalled\n");
	return -1;
}

static int
connect_pair(struct pair *p, struct tls_server *srv, struct tls_client *cli,
    const char *sni, const char *cache_key)
{
	if (pair_open(p, 0) == -1)
		return -1;
	p->s = tls_conn_server(srv, p->fd[0]);
	p->c = tls_conn_client(cli, p->fd[1], sni, cache_key);
	if (p->s == NULL || p->c == NULL)
		return -1;
	return drive(p);
}

/*
 * The server's first words, read by the client: TLS 1.3 tickets arrive
 * after the handshake, ahead of them, and only a read takes them in
 * (the client speaks first after STARTTLS, so they may sit there).
 */
static int
greet(struct pair *p)
{
	char buf[16];

	if (tls_conn_write(p->s, "220 x\r\n", 7) != 7 ||
	    tls_conn_read(p->c, buf, sizeof(buf)) != 7 ||
	    memcmp(buf, "220 x\r\n", 7) != 0)
		return -1;
	return 0;
}

static struct tls_server *
server(const char *cert, const char *key, int ask)
{
	char err[256];
	struct tls_server *srv;

	if ((srv = tls_server_new(cert, key, "", ask, err,
	    sizeof(err))) == NULL)
		fprintf(stderr, "  tls_server_new: %s\n", err);
	return srv;
}

static struct tls_client *
client(const char *ca, const char *cert, const char *key)
{
	char err[256];
	struct tls_client *cli;

	if ((cli = tls_client_new(ca, cert, key, "", err,
	    sizeof(err))) == NULL)
		fprintf(stderr, "  tls_client_new: %s\n", err);
	return cli;
}

static int
test_handshake_and_data(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    0);
	struct tls_client *cli = client(CERTS "ca.pem", "", "");
	static unsigned char big[BIG_LEN], got[BIG_LEN];
	unsigned char fp1[TLS_FP_LEN], fp2[TLS_FP_LEN];
	struct pair p;
	size_t off = 0, in = 0, len;
	ssize_t n;
	int wants = 0, saw_pending = 0, turns;
	char buf[64];

	CHECK(srv != NULL && cli != NULL);
	CHECK(pair_open(&p, 1) == 0);
	CHECK((p.s = tls_conn_server(srv, p.fd[0])) != NULL);
	CHECK((p.c = tls_conn_client(cli, p.fd[1], "mx.relay.test",
	    NULL)) != NULL);
	/* the connections hold references: the creators may let go */
	tls_server_unref(srv);
	tls_client_unref(cli);
	CHECK(drive(&p) == 0);
#if COMPAT_MBEDTLS3
	CHECK_STR(tls_conn_version(p.c), "TLSv1.3");
#else
	CHECK_STR(tls_conn_version(p.c), "TLSv1.2");
	CHECK_STR(tls_conn_cipher(p.c),
	    "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384");
#endif
	CHECK_STR(tls_conn_version(p.s), tls_conn_version(p.c));
	CHECK_STR(tls_conn_cipher(p.s), tls_conn_cipher(p.c));
	CHECK(tls_conn_cipher_bits(p.c) == 256);
	CHECK(tls_conn_cipher_bits(p.s) == 256);
	CHECK(tls_conn_verify(p.c) == 0);
	CHECK(tls_conn_verify(p.s) == TLS_V_NOCERT);
	CHECK(tls_conn_peer_fp(p.s, fp1, fp2) == -1);
	CHECK(tls_conn_peer_fp(p.c, fp1, fp2) == 0);
	CHECK_STR(tls_conn_peer_cn(p.c, buf, sizeof(buf)), "localhost");
	CHECK_STR(tls_conn_peer_cn(p.s, buf, sizeof(buf)), "");
	CHECK(!tls_conn_resumed(p.c) && !tls_conn_resumed(p.s));

	/* client -> server, small */
	CHECK(tls_conn_write(p.c, "EHLO x\r\n", 8) == 8);
	CHECK(tls_conn_read(p.s, buf, sizeof(buf)) == 8);
	CHECK(memcmp(buf, "EHLO x\r\n", 8) == 0);
	CHECK(tls_conn_read(p.s, buf, sizeof(buf)) == TLS_WANT_READ);

	/* server -> client, 40 KB in pieces through 4 KB socket buffers:
	 * WANT_WRITE comes, and the retry passes the same bytes */
	randombytes_buf(big, sizeof(big));
	for (turns = 0; (off < BIG_LEN || in < BIG_LEN) && turns < 100000;
	    turns++) {
		if (off < BIG_LEN) {
			len = BIG_LEN - off < PIECE ? BIG_LEN - off : PIECE;
			n = tls_conn_write(p.s, big + off, len);
			if (n == TLS_WANT_WRITE)
				wants++;
			else {
				CHECK(n > 0 && (size_t)n <= len);
				off += (size_t)n;
			}
		}
		/* a small reader leaves decrypted bytes inside */
		n = tls_conn_read(p.c, got + in, 100);
		if (n == TLS_WANT_READ)
			continue;
		CHECK(n > 0);
		in += (size_t)n;
		if (tls_conn_pending(p.c) > 0)
			saw_pending = 1;
	}
	CHECK(off == BIG_LEN && in == BIG_LEN);
	CHECK(memcmp(big, got, BIG_LEN) == 0);
	CHECK(wants > 0);
	CHECK(saw_pending);
	CHECK(tls_conn_pending(p.c) == 0);

	/* close_notify, then the peer's read says EOF */
	tls_conn_close_notify(p.c);
	CHECK(tls_conn_read(p.s, buf, sizeof(buf)) == TLS_EOF);
	CHECK(strstr(tls_conn_error(p.s), "close_notify") != NULL);
	/* a plain socket EOF is an EOF too */
	CHECK(close(p.fd[0]) == 0);
	p.fd[0] = -1;
	CHECK(tls_conn_read(p.c, buf, sizeof(buf)) == TLS_EOF);
	pair_close(&p);
	return 0;
}

struct verify_case {
	const char *label;
	const char *cert;
	const char *ca;
	const char *sni;
	unsigned want;
};

static const struct verify_case verify_cases[] = {
	{ "good", "server", CERTS "ca.pem", "mx.relay.test", 0 },
	{ "good, other name", "server", CERTS "ca.pem", "smarthost.test", 0 },
	{ "name case", "server", CERTS "ca.pem", "MX.Relay.Test", 0 },
	{ "wrong name", "server", CERTS "ca.pem", "wrong.example",
	    TLS_V_NAME },
	{ "no name", "server", CERTS "ca.pem", NULL, TLS_V_NAME },
	{ "IP literal", "server", CERTS "ca.pem", "127.0.0.1", TLS_V_NAME },
	{ "IPv6 literal", "server", CERTS "ca.pem", "::1", TLS_V_NAME },
	{ "self-signed", "selfsigned", CERTS "ca.pem", "mx.relay.test",
	    TLS_V_UNTRUSTED },
	{ "expired", "expired", CERTS "ca.pem", "mx.relay.test",
	    TLS_V_EXPIRED | TLS_V_UNTRUSTED },
	{ "no CA file", "server", "", "mx.relay.test", TLS_V_UNTRUSTED },
	{ "unreadable CA file", "server", CERTS "missing.pem",
	    "mx.relay.test", TLS_V_UNTRUSTED },
	{ "wrong CA", "server", CERTS "selfsigned.pem", "mx.relay.test",
	    TLS_V_UNTRUSTED },
	{ "RSA", "rsa", CERTS "ca.pem", "mx.relay.test", 0 },
};

static int
test_verify(void)
{
	char certp[128], keyp[128];
	struct tls_server *srv;
	struct tls_client *cli;
	struct pair p;
	size_t i;
	unsigned got;
	int ok;

	for (i = 0; i < sizeof(verify_cases) / sizeof(verify_cases[0]); i++) {
		const struct verify_case *vc = &verify_cases[i];

		(void)snprintf(certp, sizeof(certp), CERTS "%s.pem", vc->cert);
		(void)snprintf(keyp, sizeof(keyp), CERTS "%s.key", vc->cert);
		srv = server(certp, keyp, 0);
		cli = client(vc->ca, "", "");
		CHECK(srv != NULL && cli != NULL);
		CHECK(tls_client_ca_ok(cli) == (strcmp(vc->ca,
		    CERTS "ca.pem") == 0 || strcmp(vc->ca,
		    CERTS "selfsigned.pem") == 0));
		ok = connect_pair(&p, srv, cli, vc->sni, NULL) == 0;
		got = ok ? tls_conn_verify(p.c) : ~0u;
		if (ok && strcmp(vc->cert, "rsa") == 0 &&
		    tls_conn_cipher_bits(p.c) != 256)
			ok = 0;
		pair_close(&p);
		tls_server_unref(srv);
		tls_client_unref(cli);
		if (!ok || got != vc->want) {
			fprintf(stderr, "  %s: verify 0x%x, want 0x%x\n",
			    vc->label, got, vc->want);
			return 1;
		}
	}
	return 0;
}

static int
test_client_cert(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    1);
	struct tls_client *with = client(CERTS "ca.pem", CERTS "client.pem",
	    CERTS "client.key");
	struct tls_client *other = client("", CERTS "other.pem",
	    CERTS "other.key");
	struct tls_client *without = client(CERTS "ca.pem", "", "");
	unsigned char want_fp[TLS_FP_LEN], want_spki[TLS_FP_LEN];
	unsigned char fp[TLS_FP_LEN], spki[TLS_FP_LEN];
	char buf[64], text[96];
	struct pair p;

	CHECK(srv != NULL && with != NULL && other != NULL && without != NULL);
	CHECK(unhex(client_fp_hex, want_fp) == TLS_FP_LEN);
	CHECK(unhex(client_spki_hex, want_spki) == TLS_FP_LEN);

	CHECK(connect_pair(&p, srv, with, "mx.relay.test", NULL) == 0);
	CHECK(tls_conn_verify(p.s) == 0);
	CHECK(tls_conn_verify(p.c) == 0);
	CHECK(tls_conn_peer_fp(p.s, fp, spki) == 0);
	CHECK(memcmp(fp, want_fp, TLS_FP_LEN) == 0);
	CHECK(memcmp(spki, want_spki, TLS_FP_LEN) == 0);
	tls_fp_format(fp, text);
	CHECK_STR(text, client_fp_hex);
	CHECK_STR(tls_conn_peer_cn(p.s, buf, sizeof(buf)),
	    "client.relay.test");
	/* a short buffer is cut, not overrun */
	CHECK_STR(tls_conn_peer_cn(p.s, buf, 7), "client");
	pair_close(&p);

	/* a certificate the server's CA never signed is still taken */
	CHECK(connect_pair(&p, srv, other, "mx.relay.test", NULL) == 0);
	CHECK(tls_conn_verify(p.s) == 0);
	CHECK(tls_conn_peer_fp(p.s, fp, spki) == 0);
	CHECK(memcmp(fp, want_fp, TLS_FP_LEN) != 0);
	CHECK_STR(tls_conn_peer_cn(p.s, buf, sizeof(buf)), "other.relay.test");
	pair_close(&p);

	/* asked, none sent: the handshake completes */
	CHECK(connect_pair(&p, srv, without, "mx.relay.test", NULL) == 0);
	CHECK(tls_conn_verify(p.s) == TLS_V_NOCERT);
	CHECK(tls_conn_peer_fp(p.s, fp, spki) == -1);
	pair_close(&p);

	tls_server_unref(srv);
	tls_client_unref(with);
	tls_client_unref(other);
	tls_client_unref(without);
	return 0;
}

static int
test_resumption(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    1);
	struct tls_client *cli = client(CERTS "ca.pem", CERTS "client.pem",
	    CERTS "client.key");
	unsigned char want_fp[TLS_FP_LEN], fp[TLS_FP_LEN], spki[TLS_FP_LEN];
	char buf[8], cn[64];
	struct pair p;

	CHECK(srv != NULL && cli != NULL);
	CHECK(unhex(client_fp_hex, want_fp) == TLS_FP_LEN);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test",
	    "mx.relay.test:25") == 0);
	CHECK(!tls_conn_resumed(p.c) && !tls_conn_resumed(p.s));
	/* TLS 1.3 tickets arrive after the handshake: let them be read */
	CHECK(tls_conn_write(p.s, "220 x\r\n", 7) == 7);
	CHECK(tls_conn_read(p.c, buf, sizeof(buf)) == 7);
	pair_close(&p);

	CHECK(connect_pair(&p, srv, cli, "mx.relay.test",
	    "mx.relay.test:25") == 0);
	CHECK(tls_conn_resumed(p.c));
	CHECK(tls_conn_resumed(p.s));
	/* what the first handshake learnt holds for the resumed one */
	CHECK(tls_conn_verify(p.c) == 0);
	CHECK(tls_conn_verify(p.s) == 0);
	CHECK(tls_conn_peer_fp(p.s, fp, spki) == 0);
	CHECK(memcmp(fp, want_fp, TLS_FP_LEN) == 0);
	CHECK_STR(tls_conn_peer_cn(p.s, cn, sizeof(cn)), "client.relay.test");
	CHECK(tls_conn_peer_fp(p.c, fp, spki) == 0);
	CHECK_STR(tls_conn_peer_cn(p.c, cn, sizeof(cn)), "localhost");
	CHECK(tls_conn_write(p.c, "QUIT\r\n", 6) == 6);
	CHECK(tls_conn_read(p.s, buf, sizeof(buf)) == 6);
	pair_close(&p);

	/* another destination has nothing cached; no key, no resumption */
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test",
	    "smarthost.test:587") == 0);
	CHECK(!tls_conn_resumed(p.c));
	pair_close(&p);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", NULL) == 0);
	CHECK(!tls_conn_resumed(p.c));
	pair_close(&p);

	tls_server_unref(srv);
	tls_client_unref(cli);
	return 0;
}

/*
 * A resumed session reports what its full handshake established, never
 * more (a TLS 1.3 ticket keeps neither the certificate nor the verify
 * result), and a cached session is offered only for the name it was
 * checked against.  The first session's ticket comes with no data after
 * it: the read that takes it in says WANT_READ and still stores it.
 */
static int
test_resumption_verify(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    1);
	struct tls_client *cli = client(CERTS "ca.pem", "", "");
	struct tls_client *noca = client("", "", "");
	unsigned char fp[TLS_FP_LEN], spki[TLS_FP_LEN];
	char buf[16];
	struct pair p;

	CHECK(srv != NULL && cli != NULL && noca != NULL);
	CHECK(connect_pair(&p, srv, cli, "wrong.example", "mx:25") == 0);
	CHECK(tls_conn_verify(p.c) == TLS_V_NAME);
	CHECK(tls_conn_read(p.c, buf, sizeof(buf)) == TLS_WANT_READ);
	pair_close(&p);
	CHECK(connect_pair(&p, srv, cli, "wrong.example", "mx:25") == 0);
	CHECK(tls_conn_resumed(p.c));
	CHECK(tls_conn_verify(p.c) == TLS_V_NAME);
	CHECK(tls_conn_peer_fp(p.c, fp, spki) == 0);
	CHECK_STR(tls_conn_peer_cn(p.c, buf, sizeof(buf)), "localhost");
	/* no client certificate then, none on the resumed server side */
	CHECK(tls_conn_resumed(p.s));
	CHECK(tls_conn_verify(p.s) == TLS_V_NOCERT);
	CHECK(tls_conn_peer_fp(p.s, fp, spki) == -1);
	CHECK(greet(&p) == 0);
	pair_close(&p);

	/* the same key for another name: a full handshake, verified */
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", "mx:25") == 0);
	CHECK(!tls_conn_resumed(p.c));
	CHECK(tls_conn_verify(p.c) == 0);
	CHECK(greet(&p) == 0);
	pair_close(&p);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", "mx:25") == 0);
	CHECK(tls_conn_resumed(p.c));
	CHECK(tls_conn_verify(p.c) == 0);
	pair_close(&p);

	/* untrusted stays untrusted */
	CHECK(connect_pair(&p, srv, noca, "mx.relay.test", "mx:25") == 0);
	CHECK(tls_conn_verify(p.c) == TLS_V_UNTRUSTED);
	CHECK(greet(&p) == 0);
	pair_close(&p);
	CHECK(connect_pair(&p, srv, noca, "mx.relay.test", "mx:25") == 0);
	CHECK(tls_conn_resumed(p.c));
	CHECK(tls_conn_verify(p.c) == TLS_V_UNTRUSTED);
	pair_close(&p);

	tls_server_unref(srv);
	tls_client_unref(cli);
	tls_client_unref(noca);
	return 0;
}

/* More destinations than slots: the least recently used goes, the
 * bounded cache keeps working. */
static int
test_cache_lru(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    0);
	struct tls_client *cli = client(CERTS "ca.pem", "", "");
	char key[32];
	struct pair p;
	int i;

	CHECK(srv != NULL && cli != NULL);
	for (i = 0; i <= TLS_CACHE_SLOTS; i++) {
		(void)snprintf(key, sizeof(key), "host%d:25", i);
		CHECK(connect_pair(&p, srv, cli, "mx.relay.test", key) == 0);
		CHECK(greet(&p) == 0);
		pair_close(&p);
	}
	/* host0 was the oldest and was pushed out; host1 stays */
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", "host0:25") == 0);
	CHECK(!tls_conn_resumed(p.c));
	pair_close(&p);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", "host2:25") == 0);
	CHECK(tls_conn_resumed(p.c));
	pair_close(&p);
	tls_server_unref(srv);
	tls_client_unref(cli);
	return 0;
}

static int
test_garbage(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    0);
	static const char junk[] = "EHLO client.example\r\nMAIL FROM:<a@b>\r\n";
	struct pair p;
	int r;

	CHECK(srv != NULL);
	CHECK(pair_open(&p, 0) == 0);
	CHECK((p.s = tls_conn_server(srv, p.fd[0])) != NULL);
	CHECK(tls_conn_handshake(p.s) == TLS_WANT_READ);
	CHECK(write(p.fd[1], junk, sizeof(junk) - 1) ==
	    (ssize_t)sizeof(junk) - 1);
	r = tls_conn_handshake(p.s);
	CHECK(r == TLS_FAIL);
	CHECK(strncmp(tls_conn_error(p.s), "handshake: ", 11) == 0);
	CHECK(strlen(tls_conn_error(p.s)) > 11);
	CHECK(strlen(tls_conn_error(p.s)) < TLS_ERR_MAX);
	pair_close(&p);

	/* the peer goes away in the middle */
	CHECK(pair_open(&p, 0) == 0);
	CHECK((p.s = tls_conn_server(srv, p.fd[0])) != NULL);
	CHECK(close(p.fd[1]) == 0);
	p.fd[1] = -1;
	CHECK(tls_conn_handshake(p.s) == TLS_EOF);
	CHECK(strstr(tls_conn_error(p.s), "lost connection") != NULL);
	pair_close(&p);
	tls_server_unref(srv);
	return 0;
}

static int
test_bad_credentials(void)
{
	char err[256];

	CHECK(tls_server_new(CERTS "server.pem", CERTS "other.key", "", 0, err,
	    sizeof(err)) == NULL);
	CHECK(strstr(err, CERTS "other.key: ") == err);
	CHECK(strstr(err, "does not match") != NULL);
	CHECK(tls_server_new(CERTS "rsa.pem", CERTS "server.key", "", 0, err,
	    sizeof(err)) == NULL);
	CHECK(strstr(err, "does not match") != NULL);
	CHECK(tls_server_new(CERTS "nosuch.pem", CERTS "server.key", "", 0,
	    err, sizeof(err)) == NULL);
	CHECK_STR(err, CERTS "nosuch.pem: No such file or directory");
	CHECK(tls_server_new(CERTS "server.key", CERTS "server.key", "", 0,
	    err, sizeof(err)) == NULL);
	CHECK(strncmp(err, CERTS "server.key: ", 18) == 0);
	CHECK(tls_server_new(CERTS "server.pem", CERTS "server.pem", "", 0,
	    err, sizeof(err)) == NULL);
	CHECK(strncmp(err, CERTS "server.pem: ", 18) == 0);
	CHECK(tls_server_new("", "", "", 0, err, sizeof(err)) == NULL);

	CHECK(tls_client_new(CERTS "ca.pem", CERTS "client.pem", "", "", err,
	    sizeof(err)) == NULL);
	CHECK(strstr(err, "client.pem") != NULL);
	CHECK(tls_client_new(CERTS "ca.pem", "", CERTS "client.key", "", err,
	    sizeof(err)) == NULL);
	CHECK(tls_client_new(CERTS "ca.pem", CERTS "client.pem",
	    CERTS "other.key", "", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "does not match") != NULL);
	return 0;
}

static int
test_ciphers(void)
{
	struct tls_server *srv;
	struct tls_client *cli;
	char err[256];
	struct pair p;

	CHECK(tls_server_new(CERTS "server.pem", CERTS "server.key",
	    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 TLS-FOO-BAR", 0, err,
	    sizeof(err)) == NULL);
	CHECK(strstr(err, "unknown cipher suite TLS-FOO-BAR") != NULL);
	CHECK(tls_client_new("", "", "", "NOPE", err, sizeof(err)) == NULL);
	CHECK_STR(err, "unknown cipher suite NOPE");
	/* config.c's check: the same words, no files */
	CHECK(tls_ciphers_check("NOPE", err, sizeof(err)) == -1);
	CHECK_STR(err, "unknown cipher suite NOPE");
	CHECK(tls_ciphers_check("", err, sizeof(err)) == 0);
	CHECK(tls_ciphers_check("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256,",
	    err, sizeof(err)) == 0);
	/* longer than any suite name (64): its head, marked as cut */
	CHECK(tls_client_new("", "", "", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-"
	    "SHA256-AND-THEN-SOME-MORE-WORDS-1234567890", err,
	    sizeof(err)) == NULL);
	CHECK_STR(err, "unknown cipher suite TLS-ECDHE-ECDSA-WITH-"
	    "AES-128-GCM-SHA256-AND-THEN-SOME-MORE-WORDS...");

	/* the admin's list, separators mixed */
	srv = tls_server_new(CERTS "server.pem", CERTS "server.key",
	    " TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256,"
	    "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384 ", 0, err, sizeof(err));
	CHECK(srv != NULL);
	cli = tls_client_new(CERTS "ca.pem", "", "",
	    "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384,"
	    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", err, sizeof(err));
	CHECK(cli != NULL);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", NULL) == 0);
	/* the server's order wins */
	CHECK_STR(tls_conn_cipher(p.c), "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256");
	CHECK(tls_conn_cipher_bits(p.c) == 128);
	CHECK_STR(tls_conn_version(p.c), "TLSv1.2");
	pair_close(&p);
	tls_client_unref(cli);

	/* nothing in common: the handshake fails with a reason */
	cli = tls_client_new(CERTS "ca.pem", "", "",
	    "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256", err, sizeof(err));
	CHECK(cli != NULL);
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", NULL) == -1);
	CHECK(strncmp(tls_conn_error(p.s), "handshake: ", 11) == 0);
	pair_close(&p);
	tls_client_unref(cli);
	tls_server_unref(srv);
	return 0;
}

struct fp_case {
	const char *label;
	const char *text;
	size_t count;		/* when err is NULL */
	const char *err;	/* "fp:LINE: ..." prefix */
};

#define FPA "ce637cc8891c9c80c01c000ad7bb0e667c0bdc01f9abb865192fb247abbc08fb"
#define FPB "091ECA217088262F07BE8CEB6652904CC7C579E66C31EF08CCF4A7029AF1CD41"

static const struct fp_case fp_cases[] = {
	{ "empty", "", 0, NULL },
	{ "comments and blanks", "# x\n\n   \n\t# y\r\n", 0, NULL },
	{ "plain", FPA "\n", 1, NULL },
	{ "no final newline", FPA, 1, NULL },
	{ "colons, upper case", "CE:63:7C:C8:89:1C:9C:80:C0:1C:00:0A:D7:BB:"
	    "0E:66:7C:0B:DC:01:F9:AB:B8:65:19:2F:B2:47:AB:BC:08:FB\n", 1,
	    NULL },
	{ "two, CRLF, trailing comment", FPA " client one\r\n" FPB
	    "\t# two\r\n", 2, NULL },
	{ "duplicates merge", FPA "\n" FPA "\n  " FPA "\n", 1, NULL },
	{ "leading blanks", "  " FPB "\n", 1, NULL },
	{ "short", "# c\nabcd\n", 0, "fp:2: fingerprint too short" },
	{ "63 digits", "\n\n" "ce637cc8891c9c80c01c000ad7bb0e667c0bdc01f9abb86"
	    "5192fb247abbc08f\n", 0, "fp:3: " },
	{ "long", FPA "00\n", 0, "fp:1: fingerprint too long" },
	{ "bad hex", "ce637cc8891c9c80c01c000ad7bb0e667c0bdc01f9abb865192fb247"
	    "abbc08fg\n", 0, "fp:1: not a hex digit" },
	{ "comment without blank", FPA "#x\n", 0,
	    "fp:1: white space expected" },
	{ "mixed colons", "CE:637C:C8:89:1C:9C:80:C0:1C:00:0A:D7:BB:"
	    "0E:66:7C:0B:DC:01:F9:AB:B8:65:19:2F:B2:47:AB:BC:08:FB\n", 0,
	    "fp:1: expected ':'" },
	{ "trailing colon", "CE:63:7C:C8:89:1C:9C:80:C0:1C:00:0A:D7:BB:"
	    "0E:66:7C:0B:DC:01:F9:AB:B8:65:19:2F:B2:47:AB:BC:08:FB:\n", 0,
	    "fp:1: fingerprint too long" },
	{ "sha1 size", "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:"
	    "22:33\n", 0, "fp:1: fingerprint too short" },
	{ "second line bad", FPA "\nhello\n", 0, "fp:2: " },
	{ "NUL byte", FPA "\n\0" FPB "\n", 0, "fp:2: " },
};

static int
test_fplist_parse(void)
{
	unsigned char a[TLS_FP_LEN], b[TLS_FP_LEN];
	struct tls_fplist *l;
	char err[128];
	size_t i, len;

	for (i = 0; i < sizeof(fp_cases) / sizeof(fp_cases[0]); i++) {
		const struct fp_case *fc = &fp_cases[i];

		/* the NUL case: the explicit length goes past it */
		len = strlen(fc->text);
		if (strcmp(fc->label, "NUL byte") == 0)
			len = 65 + 1 + 65;
		err[0] = '\0';
		l = tls_fplist_parse("fp", fc->text, len, err, sizeof(err));
		if (fc->err == NULL ? l == NULL ||
		    tls_fplist_count(l) != fc->count :
		    l != NULL || strncmp(err, fc->err, strlen(fc->err)) != 0) {
			fprintf(stderr, "  %s: got %s (%zu)\n", fc->label,
			    l ? "a list" : err, tls_fplist_count(l));
			tls_fplist_free(l);
			return 1;
		}
		tls_fplist_free(l);
	}
	CHECK(unhex(FPA, a) == TLS_FP_LEN && unhex(FPB, b) == TLS_FP_LEN);
	l = tls_fplist_parse("fp", FPB "\n" FPA "\n", 2 * 65, err, sizeof(err));
	CHECK(l != NULL);
	CHECK(tls_fplist_has(l, a) && tls_fplist_has(l, b));
	a[31] ^= 1;
	CHECK(!tls_fplist_has(l, a));
	tls_fplist_free(l);
	CHECK(!tls_fplist_has(NULL, b));
	CHECK(tls_fplist_count(NULL) == 0);
	return 0;
}

/* TLS_FP_MAX distinct entries parse; one more is an error on its line. */
static int
test_fplist_max(void)
{
	unsigned char fp[TLS_FP_LEN];
	struct tls_fplist *l;
	char *text, err[128], hex[3];
	size_t i, j, len = 0;

	CHECK((text = malloc((TLS_FP_MAX + 1) * 65 + 1)) != NULL);
	for (i = 0; i <= TLS_FP_MAX; i++) {
		memset(fp, 0, sizeof(fp));
		fp[0] = (unsigned char)(i >> 8);
		fp[1] = (unsigned char)i;
		for (j = 0; j < TLS_FP_LEN; j++) {
			(void)snprintf(hex, sizeof(hex), "%02x", fp[j]);
			memcpy(text + len, hex, 2);
			len += 2;
		}
		text[len++] = '\n';
	}
	l = tls_fplist_parse("max", text, len - 65, err, sizeof(err));
	CHECK(l != NULL && tls_fplist_count(l) == TLS_FP_MAX);
	CHECK(tls_fplist_has(l, (const unsigned char *)"\0\0"
	    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"));
	tls_fplist_free(l);
	l = tls_fplist_parse("max", text, len, err, sizeof(err));
	CHECK(l == NULL);
	CHECK_STR(err, "max:257: too many fingerprints");
	free(text);
	return 0;
}

static int
test_fplist_load(void)
{
	char path[] = "/tmp/tls_test_fpXXXXXX", err[160];
	struct tls_fplist *l;
	static char big[TLS_FP_FILE_MAX + 2];
	int fd;

	CHECK(tls_fplist_load("test/certs", err, sizeof(err)) == NULL);
	CHECK_STR(err, "test/certs: not a regular file");
	CHECK(tls_fplist_load("/dev/null", err, sizeof(err)) == NULL);
	CHECK_STR(err, "/dev/null: not a regular file");
	CHECK(tls_fplist_load("test/nosuch", err, sizeof(err)) == NULL);
	CHECK_STR(err, "test/nosuch: No such file or directory");

	CHECK((fd = mkstemp(path)) != -1);
	CHECK(write(fd, "# ok\n" FPA "\n", 70) == 70);
	CHECK(close(fd) == 0);
	CHECK((l = tls_fplist_load(path, err, sizeof(err))) != NULL);
	CHECK(tls_fplist_count(l) == 1);
	tls_fplist_free(l);

	/* exactly the limit of comment bytes is fine, one more is not */
	memset(big, '#', sizeof(big));
	big[TLS_FP_FILE_MAX - 1] = '\n';
	CHECK((fd = open(path, O_WRONLY | O_TRUNC)) != -1);
	CHECK(write(fd, big, TLS_FP_FILE_MAX) == TLS_FP_FILE_MAX);
	CHECK(close(fd) == 0);
	CHECK((l = tls_fplist_load(path, err, sizeof(err))) != NULL);
	CHECK(tls_fplist_count(l) == 0);
	tls_fplist_free(l);
	CHECK((fd = open(path, O_WRONLY | O_APPEND)) != -1);
	CHECK(write(fd, "\n", 1) == 1);
	CHECK(close(fd) == 0);
	CHECK(tls_fplist_load(path, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "file too large") != NULL);
	CHECK(unlink(path) == 0);
	return 0;
}

static int
test_fp_format(void)
{
	unsigned char fp[TLS_FP_LEN];
	char out[96];
	size_t i;

	for (i = 0; i < TLS_FP_LEN; i++)
		fp[i] = (unsigned char)(i * 8 + 7);
	memset(out, 'x', sizeof(out));
	tls_fp_format(fp, out);
	CHECK(strlen(out) == 95);
	CHECK(strncmp(out, "07:0F:17:1F:27:2F:37:3F:47:4F:57:5F:67:6F:77:7F:",
	    48) == 0);
	CHECK(strcmp(out + 84, "E7:EF:F7:FF") == 0);
	return 0;
}

/*
 * The heap an established, idle connection keeps, per side, from glibc's
 * own count (under valgrind or ASan their allocator replaces glibc's and
 * the count does not move: then only the handshake is exercised).
 */
static int
test_idle_footprint(void)
{
	struct tls_server *srv = server(CERTS "server.pem", CERTS "server.key",
	    1);
	struct tls_client *cli = client(CERTS "ca.pem", CERTS "client.pem",
	    CERTS "client.key");
	struct mallinfo2 m0, m1, m2, m3;
	struct pair p;
	size_t both, csz, ssz;

	CHECK(srv != NULL && cli != NULL);
	/* once, so the lazily made tables (ciphers, curves) are counted out */
	CHECK(connect_pair(&p, srv, cli, "mx.relay.test", "fp:25") == 0);
	pair_close(&p);
	CHECK(pair_open(&p, 0) == 0);
	m0 = mallinfo2();
	p.s = tls_conn_server(srv, p.fd[0]);
	p.c = tls_conn_client(cli, p.fd[1], "mx.relay.test", NULL);
	CHECK(p.s != NULL && p.c != NULL);
	CHECK(drive(&p) == 0);
	m1 = mallinfo2();
	tls_conn_free(p.c);
	p.c = NULL;
	m2 = mallinfo2();
	tls_conn_free(p.s);
	p.s = NULL;
	m3 = mallinfo2();
	pair_close(&p);
	tls_server_unref(srv);
	tls_client_unref(cli);
	if (m1.uordblks == m0.uordblks) {
		printf("  idle footprint: not measurable with this allocator\n");
		return 0;
	}
	both = m1.uordblks - m0.uordblks;
	csz = m1.uordblks - m2.uordblks;
	ssz = m2.uordblks - m3.uordblks;
	printf("  idle footprint: server %zu bytes, client %zu bytes "
	    "(pair %zu)\n", ssz, csz, both);
	/* the shared objects may keep a cache the handshake made (an ECP
	 * comb table in a key): freed with them, as valgrind checks */
	CHECK(csz + ssz <= both);
	CHECK(csz > 0 && csz < IDLE_MAX);
	CHECK(ssz > 0 && ssz < IDLE_MAX);
	return 0;
}

static const struct t_case cases[] = {
	{ "handshake, data both ways, close", test_handshake_and_data },
	{ "verify bits", test_verify },
	{ "client certificate fingerprints", test_client_cert },
	{ "resumption from the cache", test_resumption },
	{ "resumption keeps the verify result", test_resumption_verify },
	{ "cache LRU", test_cache_lru },
	{ "garbage instead of a ClientHello", test_garbage },
	{ "bad credentials", test_bad_credentials },
	{ "cipher lists", test_ciphers },
	{ "fplist parse", test_fplist_parse },
	{ "fplist limit", test_fplist_max },
	{ "fplist load", test_fplist_load },
	{ "fp format", test_fp_format },
	{ "idle footprint", test_idle_footprint },
};

T_MAIN("tls", cases)
