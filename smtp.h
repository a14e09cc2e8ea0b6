/*
 * smtp.h - the SMTP server: listeners and sessions (RFC 5321, with
 * PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES).
 *
 * main.c binds the sockets (before dropping privileges) and hands their
 * fds here.  smtp_configure() may be called again on SIGHUP; sessions
 * read the current config when they need a value.  The replies are
 * listed here, so that sendmail -bs can answer in the same words.
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

/*
 * Replies, each as "code enhanced-code text" (RFC 3463).  One list makes
 * both the enum and smtp_replies[], the texts one after another with a
 * NUL between: no table of 56 pointers (and their relocations).
 */
#define SMTP_REPLIES(X) \
	X(RP_HELO, "250 %s") \
	X(RP_OK, "250 2.0.0 Ok") \
	X(RP_MAIL_OK, "250 2.1.0 Ok") \
	X(RP_RCPT_OK, "250 2.1.5 Ok") \
	X(RP_DATA_GO, "354 End data with <CR><LF>.<CR><LF>") \
	X(RP_QUEUED, "250 2.0.0 Ok: queued as %s") \
	X(RP_BYE, "221 2.0.0 Bye") \
	X(RP_HELP, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP " \
	    "QUIT HELP VRFY STARTTLS AUTH; see RFC 5321") \
	X(RP_VRFY, "252 2.0.0 Cannot VRFY user, but will accept message and " \
	    "attempt delivery") \
	/* In this order: cli.c's sm_smtp() counts on it. */ \
	X(RP_NEED_HELO, "503 5.5.1 Error: send HELO/EHLO first") \
	X(RP_NEED_MAIL, "503 5.5.1 Error: need MAIL command") \
	X(RP_NEED_RCPT, "503 5.5.1 Error: need RCPT command") \
	X(RP_NESTED_MAIL, "503 5.5.1 Error: nested MAIL command") \
	X(RP_NO_VALID_RCPT, "554 5.5.1 Error: no valid recipients") \
	X(RP_UNKNOWN_CMD, "502 5.5.2 Error: command not recognized") \
	X(RP_NOT_IMPL, "502 5.5.1 Error: command not implemented") \
	X(RP_SYNTAX, "500 5.5.2 Error: bad syntax") \
	X(RP_HELO_SYNTAX, "501 5.5.2 Syntax: %s hostname") \
	X(RP_VRFY_SYNTAX, "501 5.5.4 Syntax: VRFY address") \
	X(RP_BAD_SENDER, "501 5.1.7 Bad sender address syntax: %s") \
	X(RP_BAD_RCPT, "501 5.1.3 Bad recipient address syntax: %s") \
	X(RP_BAD_PARAM, "555 5.5.4 Unsupported option: %s") \
	X(RP_SIZE, "552 5.3.4 Message size exceeds fixed maximum message " \
	    "size") \
	/* Postfix's words; RFC 3463's code for a loop (Postfix: 5.4.0). */ \
	X(RP_HOPS, "554 5.4.6 Error: too many hops") \
	/* §4.5.3.1.10: 452, so the client retries the rest later. */ \
	X(RP_TOO_MANY_RCPT, "452 4.5.3 Error: too many recipients") \
	X(RP_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied") \
	X(RP_LOOP, "550 5.4.6 <%s>: Recipient address rejected: mail loops " \
	    "back to myself") \
	X(RP_LINE_TOO_LONG, "500 5.5.0 Error: line too long") \
	/* RFC 4954's words (Postfix's code; its text: SASL response limit \
	 * exceeded), for a response to a 334 only. */ \
	X(RP_AUTH_LINE_TOO_LONG, "500 5.5.6 Authentication exchange line is " \
	    "too long") \
	X(RP_DATA_LINE_TOO_LONG, "500 5.5.0 Error: message line too long") \
	X(RP_BARE_LF, "521 5.5.2 %s Error: bare <LF> received") \
	X(RP_BARE_CR, "521 5.5.2 %s Error: bare <CR> received") \
	X(RP_WRITE_ERR, "451 4.3.0 Error: queue file write error") \
	X(RP_TOO_MANY_ERRORS, "421 4.7.0 %s Error: too many errors") \
	X(RP_TIMEOUT, "421 4.4.2 %s Error: timeout exceeded") \
	X(RP_SHUTDOWN, "421 4.3.2 %s Service shutting down") \
	X(RP_TOO_MANY_CONN, "421 4.7.0 %s Error: too many connections") \
	X(RP_TOO_MANY_CONN_CLIENT, "421 4.7.0 %s Error: too many connections " \
	    "from %s") \
	X(RP_NO_RESOURCES, "421 4.3.2 %s Error: out of resources") \
	X(RP_8BIT_ADDR, "553 5.6.7 Must declare SMTPUTF8 to send unicode " \
	    "address") \
	X(RP_ETRN, "250 Queuing started") \
	X(RP_ALIAS, "451 4.3.0 <%s>: alias error: %s") \
	X(RP_NO_SPACE, "452 4.3.1 Insufficient system storage") \
	X(RP_STARTTLS_GO, "220 2.0.0 Ready to start TLS") \
	/* RSET, DATA, STARTTLS with an argument (§4.1.1). */ \
	X(RP_NO_ARG, "501 5.5.4 Syntax: %s") \
	X(RP_TLS_ACTIVE, "554 5.5.1 Error: TLS already active") \
	X(RP_TLS_UNAVAIL, "454 4.7.0 TLS not available due to local problem") \
	X(RP_NEED_STARTTLS, "530 5.7.0 Must issue a STARTTLS command first") \
	X(RP_NEED_AUTH, "530 5.7.0 Authentication required") \
	X(RP_AUTH_OK, "235 2.7.0 Authentication successful") \
	X(RP_AUTH_FAILED, "535 5.7.8 Error: authentication failed: " \
	    "authentication failure") \
	X(RP_AUTH_DECODE, "501 5.5.2 Cannot decode response") \
	X(RP_AUTH_ABORTED, "501 5.7.0 Authentication aborted") \
	X(RP_AUTH_MECH, "504 5.5.4 Unrecognized authentication type") \
	X(RP_AUTH_AGAIN, "503 5.5.1 Error: already authenticated") \
	X(RP_IN_TXN, "503 5.5.1 Error: MAIL transaction in progress") \
	X(RP_AUTH_DISABLED, "503 5.5.1 Error: authentication not enabled") \
	X(RP_AUTH_TOO_MANY, "421 4.7.0 Too many failed authentications; try " \
	    "again later") \
	X(RP_AUTH_BUSY, "454 4.7.0 Temporary authentication failure") \
	X(RP_AUTH_SYNTAX, "501 5.5.4 Syntax: AUTH mechanism") \
	X(RP_334, "334 %s")

/* The session's limits, which sendmail -bs keeps too. */
#define SMTP_HELO_MAX		255
#define SMTP_ERROR_LIMIT	10	/* then 421 and close */
#define SMTP_JUNK_LIMIT		100	/* Postfix's smtpd_junk_command_limit */
/* The From: a local message from <> without one gets (the daemon's and
 * sendmail's alike): Postfix's cleanup writes MAILER-DAEMON; @origin, as
 * a bare "root" is qualified, since big receivers refuse no domain. */
#define SMTP_FROM_NULL		"From: MAILER-DAEMON@%s\r\n"
/* Postfix's smtpd_recipient_overshoot_limit: RCPTs past max_recipients
 * in one transaction that are only 452; each one after is an error. */
#define SMTP_OVERSHOOT_LIMIT	1000

#define SMTP_RP_ENUM(name, text)	name,

enum smtp_reply { SMTP_REPLIES(SMTP_RP_ENUM) };

/* The reply's printf format, "code esc text" without CRLF. */
const char *smtp_reply_text(enum smtp_reply);
/* A timeout from the config, seconds, as milliseconds that neither wrap
 * nor overflow poll()'s int: the daemon's, and sendmail -bs's alone. */
unsigned smtp_ms(unsigned) __attribute__((noinline));

struct cmd;
struct cmd_params;

/* An argument to a command that takes none (RP_NO_ARG): 1, else 0; rcpt:
 * a recipient is in, so DATA is in sequence. */
int smtp_no_arg(const struct cmd *, int rcpt);
/* The path and parameters of MAIL or RCPT: 0, or the refusal. */
int smtp_path(const struct cmd *, unsigned addr_flags, char *addr,
    struct cmd_params *, const char **why);

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
