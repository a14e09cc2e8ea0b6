/*
 * smtp.h - the SMTP server: listeners and sessions (RFC 5321, with
 * PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES).
 *
 * main.c binds the sockets (before dropping privileges) and hands their
 * fds here.  smtp_configure() may be called again on SIGHUP; sessions
 * read the current config when they need a value.
 */
#ifndef FERRY_SMTP_H
#define FERRY_SMTP_H

struct config;

enum smtp_kind {
	SMTP_KIND_SMTP,		/* port 25: STARTTLS per inbound_tls */
	SMTP_KIND_SUBMISSION,	/* 587: STARTTLS, then AUTH, then mail */
	SMTP_KIND_SMTPS,	/* 465: implicit TLS, AUTH before mail */
	SMTP_KIND_LOCAL,	/* local_socket: trusted, sendmail */
	SMTP_KIND_COUNT
};

struct alias_table;
struct auth_users;
struct tls_server;
struct tls_fplist;

/*
 * The credentials in force, all owned by the caller (main.c), which
 * swaps them on SIGHUP: set the new one, then free the old.  Sessions
 * take their own reference on the tls_server for their connection; the
 * users file and the fingerprints are only read synchronously.  NULL:
 * none (no STARTTLS / no AUTH / no certificate relaying).
 */
void smtp_set_tls(struct tls_server *);
void smtp_set_auth(struct auth_users *);	/* also forgets the cache */
void smtp_set_client_certs(struct tls_fplist *);

void smtp_configure(const struct config *);
/* The aliases applied to every accepted recipient (NULL: none). */
void smtp_set_aliases(const struct alias_table *);
int smtp_listen(int fd, enum smtp_kind);
/* Stop listening, end idle sessions, let transactions finish; done()
 * runs once the last session has gone. */
void smtp_shutdown(void (*done)(void));
unsigned smtp_sessions(void);
/* ETRN on the local socket (ferry flush, sendmail -q) calls this. */
void smtp_set_flush(void (*)(void));

#endif
