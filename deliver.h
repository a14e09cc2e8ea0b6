/*
 * deliver.h - one outbound SMTP connection (the client side).
 *
 * deliver_start() resolves the next hop (MX per RFC 5321 §5, or the
 * smarthost's own address), connects with per-address failover, reads
 * the banner and EHLOs; then it asks its owner for transactions with
 * ops->next() until that returns NULL, reports each with ops->done(),
 * says QUIT and ends with ops->closed().  Entering a state sends its
 * command; the reply in that state picks the next one.  PIPELINING, when
 * offered, sends MAIL, every RCPT and DATA in one write.
 *
 * Results are three-way (ok, temporary, permanent) per recipient, with
 * the remote's reply.  Nothing here touches the queue's files except
 * reading the body through the fd in the transaction.
 */
#ifndef FERRY_DELIVER_H
#define FERRY_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#define DELIVER_REPLY_MAX	256	/* a server's reply, all its lines */
/* A recipient's result: a reply with the server's name, address and our
 * command around it (REPLY_SAID, some 80 bytes for a usual name). */
#define DELIVER_REASON_MAX	512
#define DELIVER_RELAY_MAX	300

struct config;
struct deliver;

enum deliver_result { DR_OK, DR_TEMP, DR_PERM };

struct deliver_rcpt {
	const char *address;
	enum deliver_result result;
	int again;			/* a 452 after others were taken: the
					   server's recipient limit, not this
					   address's trouble; the owner sends
					   it in a new transaction at once */
	char dsn[16];			/* "2.0.0", "4.4.1", "5.1.1" */
	char *reply;			/* DELIVER_REASON_MAX bytes, lent by
					   the owner from next() to done():
					   a 2xx reply as it came, a refusal
					   as REPLY_SAID, or ours */
};

struct deliver_txn {
	const char *id;
	const char *sender;
	unsigned flags;			/* QF_* */
	uint64_t size;			/* body bytes */
	uint64_t body_off;
	int fd;				/* the queue file, open for reading */
	struct deliver_rcpt *rcpt;
	unsigned nrcpt;
	char relay[DELIVER_RELAY_MAX];	/* "mx.example.org[192.0.2.1]:25" */
};

struct deliver_ops {
	/* The next transaction for this connection, or NULL: quit. */
	struct deliver_txn *(*next)(void *arg, struct deliver *);
	/* Every recipient of txn has its result. */
	void (*done)(void *arg, struct deliver *, struct deliver_txn *);
	/* txn was taken, but nothing of it reached the server (a reused
	 * connection failed at RSET): the owner runs it again, not as an
	 * attempt.  closed() follows. */
	void (*unused)(void *arg, struct deliver *, struct deliver_txn *);
	/* The connection is over; result says whether it ever worked:
	 * DR_OK (closed after use), DR_TEMP or DR_PERM (no transaction
	 * could start: DNS or connection trouble, reply/dsn say why).
	 * May free arg; d is gone after this returns. */
	void (*closed)(void *arg, struct deliver *, enum deliver_result,
	    const char *dsn, const char *reason);
};

void deliver_configure(const struct config *);
/* The client credentials for STARTTLS (main.c makes them from the config
 * and swaps them on SIGHUP; deliver takes a reference per connection).
 * NULL: no TLS client available (then levels above may defer). */
struct tls_client;
void deliver_set_tls(struct tls_client *);
/* The tls_policy table (main.c loads it and swaps it on SIGHUP).  A
 * connection copies its entry when it starts, so the old table may be
 * freed once the new one is set.  NULL: no per-destination policy. */
struct dane_policy;
void deliver_set_policy(const struct dane_policy *);
/* host: a domain (MX lookup), or "[host]": that host itself, no MX
 * lookup (an address, or a name's A/AAAA records). */
struct deliver *deliver_start(const char *host, unsigned port,
    const struct deliver_ops *, void *arg);
/* Abandon: no more callbacks. */
void deliver_abort(struct deliver *);
/* In closed(): the server the trouble came from, "mx[192.0.2.1]:25", or
 * NULL when none was reached (then Postfix logs relay=none). */
const char *deliver_relay(const struct deliver *);

#endif
