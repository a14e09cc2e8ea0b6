/*
 * smtp.c - the SMTP server session (RFC 5321) and its listeners.
 *
 * Owns: accepting connections, the per-session state machine, command
 * dispatch, relay policy at RCPT, the DATA reader (strict CRLF, exact
 * dot-unstuffing, limits) and the replies.  It does not own bytes on the
 * wire (io.c), the queue file (queue.c) or the parsers (cmd.c, addr.c).
 *
 * PIPELINING (RFC 2920) falls out of the reader: every complete line in
 * the input buffer is handled in order, replies accumulate in the output
 * buffer and go out when the input is exhausted.  Two places stop the
 * reader with lines still buffered: the end of DATA, which waits for the
 * queue's group commit (the 250 comes only from its callback), and QUIT
 * or a fatal error, after which buffered input is never read.
 *
 * Limits are protocol answers for the session, never an exit: a too long
 * command is skipped to its LF and answered 500; a too long data line or
 * too much data is read to the end of data, thrown away and answered 5xx;
 * a bare CR or LF anywhere ends the session with 521 (SMTP smuggling).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "alias.h"
#include "cmd.h"
#include "config.h"
#include "hdr.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "queue.h"
#include "smtp.h"

#define SMTP_LISTEN_MAX		(3 * CONFIG_MAX_LISTEN + 1)
#define SMTP_DATA_LINE_MAX	1000	/* §4.5.3.1.6, with CRLF */
#define SMTP_HELO_MAX		255
#define SMTP_ERROR_LIMIT	10	/* then 421 and close */
#define SMTP_MSGID_MAX		200	/* logged message-id= */
#define SMTP_ACCEPT_PAUSE_MS	1000	/* after EMFILE */
#define SMTP_SHUTDOWN_GRACE_MS	60000
#define SMTP_ACCEPT_BATCH	64	/* accepts per wake-up */
#define SMTP_TIMEOUT_MAX	86400	/* seconds: no wrap in ms */
#define SMTP_ALIAS_MAX		32	/* addresses one RCPT may become */

enum smtp_state {
	STATE_HELO,		/* greeted, waiting for EHLO/HELO */
	STATE_READY,		/* no transaction */
	STATE_MAIL,		/* MAIL accepted */
	STATE_RCPT,		/* at least one RCPT accepted */
	STATE_DATA,		/* reading the message */
	STATE_COMMIT,		/* waiting for the queue to make it durable */
	STATE_QUIT,		/* closing once the output is written */
};

/* Session flags. */
#define SF_EHLO		0x0001u	/* EHLO, not HELO */
#define SF_TRUSTED	0x0002u	/* may relay anywhere */
#define SF_LOCAL	0x0004u	/* local socket */
#define SF_SKIPLINE	0x0008u	/* inside an over-long line */
#define SF_SKIP_CR	0x0010u	/* ... whose last byte read was CR */
#define SF_TOOLONG	0x0020u	/* a data line over the limit */
#define SF_TOOBIG	0x0040u	/* data over message_size_limit */
#define SF_WRITE_ERR	0x0080u	/* the queue file could not be written */
#define SF_HEADERS	0x0100u	/* still in the message header */
#define SF_8BITMIME	0x0200u
#define SF_SMTPUTF8	0x0400u
#define SF_SHUTDOWN	0x0800u	/* leave after this transaction */
#define SF_DATA_BOL	0x1000u	/* data reader is at a line start */
#define SF_DISCARD	(SF_TOOLONG | SF_TOOBIG | SF_WRITE_ERR)

/* Replies, each with its enhanced status code (RFC 3463). */
enum smtp_reply {
	RP_HELO, RP_OK, RP_MAIL_OK, RP_RCPT_OK, RP_DATA_GO, RP_QUEUED, RP_BYE,
	RP_HELP, RP_VRFY, RP_NEED_HELO, RP_NESTED_MAIL, RP_NEED_MAIL, RP_NEED_RCPT,
	RP_UNKNOWN_CMD, RP_NOT_IMPL, RP_SYNTAX, RP_HELO_SYNTAX, RP_BAD_SENDER,
	RP_BAD_RCPT, RP_BAD_PARAM, RP_SIZE, RP_TOO_MANY_RCPT, RP_RELAY_DENIED,
	RP_LINE_TOO_LONG, RP_DATA_LINE_TOO_LONG, RP_BARE_LF, RP_BARE_CR,
	RP_WRITE_ERR, RP_TOO_MANY_ERRORS, RP_TIMEOUT, RP_SHUTDOWN,
	RP_TOO_MANY_CONN, RP_TOO_MANY_CONN_CLIENT, RP_NO_RESOURCES, RP_8BIT_ADDR,
	RP_ETRN, RP_ALIAS, RP_NO_SPACE,
};

struct smtp_listener {
	struct loop_fd lfd;
	struct loop_timer pause;
	enum smtp_kind kind;
};

struct smtp_session {
	struct smtp_session *prev, *next;
	struct io *io;
	struct loop_timer data_deadline;	/* the whole DATA phase */
	enum smtp_state state;
	enum smtp_kind kind;
	unsigned flags;
	unsigned errors;
	long uid;			/* local peer, else -1 */
	char ip[INET6_ADDRSTRLEN];
	char helo[SMTP_HELO_MAX + 1];
	char sender[ADDR_PATH_MAX];
	char *rcpts;			/* NUL-separated, allocated at RCPT */
	size_t rcpts_len, rcpts_cap;
	unsigned nrcpt;
	uint64_t declared_size;
	uint64_t data_size;
	struct queue_writer *w;
	char *msgid;			/* allocated only when seen */
	uint16_t count[CMD_COUNT][2];	/* [verb][0 = seen, 1 = ok] */
};

static void smtp_on_accept(struct loop_fd *, unsigned);
static void smtp_on_pause(struct loop_timer *);
static void smtp_session_new(struct smtp_listener *, int,
    const struct sockaddr_storage *);
static void smtp_session_free(struct smtp_session *);
static void smtp_call_done(void);
static void smtp_on_shutdown_grace(struct loop_timer *);
static void smtp_enter_state(struct smtp_session *, enum smtp_state);
static const char *smtp_strstate(enum smtp_state);
static unsigned smtp_ms(unsigned);
static void smtp_on_io(struct io *, enum io_event, void *);
static void smtp_on_data_deadline(struct loop_timer *);
static void smtp_flush(struct smtp_session *);
static void smtp_process(struct smtp_session *);
static int smtp_command_line(struct smtp_session *, const char *, size_t);
static size_t smtp_data(struct smtp_session *, const char *, size_t);
static void smtp_data_line(struct smtp_session *, const char *, size_t);
static void smtp_data_end(struct smtp_session *);
static void smtp_on_commit(void *, const char *, int);
static void smtp_reply(struct smtp_session *, enum smtp_reply, ...);
static void smtp_close(struct smtp_session *, enum smtp_reply, ...);
static void smtp_error(struct smtp_session *);
static void smtp_reset(struct smtp_session *);
static void smtp_reject_log(struct smtp_session *, const char *,
    const char *, enum smtp_reply, const char *);
static int smtp_check_rcpt(struct smtp_session *, const char *);
static int smtp_has_rcpt(const struct smtp_session *, const char *);
static void smtp_qualify(const char *, char *, size_t);
static void smtp_log_disconnect(struct smtp_session *);
static void smtp_log_lost(struct smtp_session *, const char *);
static const char *smtp_peer(const struct smtp_session *);
static const char *smtp_proto(const struct smtp_session *);
static void smtp_cmd_helo(struct smtp_session *, const struct cmd *);
static void smtp_cmd_ehlo(struct smtp_session *, const struct cmd *);
static void smtp_cmd_mail(struct smtp_session *, const struct cmd *);
static void smtp_cmd_rcpt(struct smtp_session *, const struct cmd *);
static void smtp_cmd_data(struct smtp_session *, const struct cmd *);
static void smtp_cmd_rset(struct smtp_session *, const struct cmd *);
static void smtp_cmd_noop(struct smtp_session *, const struct cmd *);
static void smtp_cmd_quit(struct smtp_session *, const struct cmd *);
static void smtp_cmd_help(struct smtp_session *, const struct cmd *);
static void smtp_cmd_vrfy(struct smtp_session *, const struct cmd *);
static void smtp_cmd_unimpl(struct smtp_session *, const struct cmd *);
static void smtp_cmd_unknown(struct smtp_session *, const struct cmd *);
static void smtp_cmd_etrn(struct smtp_session *, const struct cmd *);
static void smtp_cmd_http(struct smtp_session *, const struct cmd *);

static const struct {
	int code;
	const char *esc;
	const char *text;
} smtp_replies[] = {
	[RP_HELO] = { 250, NULL, "%s" },
	[RP_OK] = { 250, "2.0.0", "Ok" },
	[RP_MAIL_OK] = { 250, "2.1.0", "Ok" },
	[RP_RCPT_OK] = { 250, "2.1.5", "Ok" },
	[RP_DATA_GO] = { 354, NULL, "End data with <CR><LF>.<CR><LF>" },
	[RP_QUEUED] = { 250, "2.0.0", "Ok: queued as %s" },
	[RP_BYE] = { 221, "2.0.0", "Bye" },
	[RP_HELP] = { 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET "
	    "NOOP QUIT HELP VRFY; see RFC 5321" },
	[RP_VRFY] = { 252, "2.0.0", "Cannot VRFY user, but will accept "
	    "message and attempt delivery" },
	[RP_NEED_HELO] = { 503, "5.5.1", "Error: send HELO/EHLO first" },
	[RP_NESTED_MAIL] = { 503, "5.5.1", "Error: nested MAIL command" },
	[RP_NEED_MAIL] = { 503, "5.5.1", "Error: need MAIL command" },
	[RP_NEED_RCPT] = { 503, "5.5.1", "Error: need RCPT command" },
	[RP_UNKNOWN_CMD] = { 502, "5.5.2", "Error: command not recognized" },
	[RP_NOT_IMPL] = { 502, "5.5.1", "Error: command not implemented" },
	[RP_SYNTAX] = { 500, "5.5.2", "Error: bad syntax" },
	[RP_HELO_SYNTAX] = { 501, "5.5.2", "Syntax: EHLO hostname" },
	[RP_BAD_SENDER] = { 501, "5.1.7", "Bad sender address syntax: %s" },
	[RP_BAD_RCPT] = { 501, "5.1.3", "Bad recipient address syntax: %s" },
	[RP_BAD_PARAM] = { 555, "5.5.4", "Unsupported option: %s" },
	[RP_SIZE] = { 552, "5.3.4", "Message size exceeds fixed maximum "
	    "message size" },
	/* §4.5.3.1.10: 452, so the client retries the rest later. */
	[RP_TOO_MANY_RCPT] = { 452, "4.5.3", "Error: too many recipients" },
	[RP_RELAY_DENIED] = { 554, "5.7.1", "<%s>: Relay access denied" },
	[RP_LINE_TOO_LONG] = { 500, "5.5.0", "Error: line too long" },
	[RP_DATA_LINE_TOO_LONG] = { 500, "5.5.0",
	    "Error: message line too long" },
	[RP_BARE_LF] = { 521, "5.5.2", "%s Error: bare <LF> received" },
	[RP_BARE_CR] = { 521, "5.5.2", "%s Error: bare <CR> received" },
	[RP_WRITE_ERR] = { 451, "4.3.0", "Error: queue file write error" },
	[RP_TOO_MANY_ERRORS] = { 421, "4.7.0", "%s Error: too many errors" },
	[RP_TIMEOUT] = { 421, "4.4.2", "%s Error: timeout exceeded" },
	[RP_SHUTDOWN] = { 421, "4.3.2", "%s Service shutting down" },
	[RP_TOO_MANY_CONN] = { 421, "4.7.0",
	    "%s Error: too many connections" },
	[RP_TOO_MANY_CONN_CLIENT] = { 421, "4.7.0",
	    "%s Error: too many connections from %s" },
	[RP_NO_RESOURCES] = { 421, "4.3.2", "%s Error: out of resources" },
	[RP_8BIT_ADDR] = { 553, "5.6.7", "Error: 8-bit address without "
	    "SMTPUTF8: %s" },
	[RP_ETRN] = { 250, NULL, "Queuing started" },
	[RP_NO_SPACE] = { 452, "4.3.1", "Insufficient system storage" },
	[RP_ALIAS] = { 451, "4.3.0", "<%s>: alias error: %s" },
};

static void (*const smtp_cmds[CMD_COUNT])(struct smtp_session *,
    const struct cmd *) = {
	[CMD_UNKNOWN] = smtp_cmd_unknown,
	[CMD_HELO] = smtp_cmd_helo,
	[CMD_EHLO] = smtp_cmd_ehlo,
	[CMD_MAIL] = smtp_cmd_mail,
	[CMD_RCPT] = smtp_cmd_rcpt,
	[CMD_DATA] = smtp_cmd_data,
	[CMD_RSET] = smtp_cmd_rset,
	[CMD_NOOP] = smtp_cmd_noop,
	[CMD_QUIT] = smtp_cmd_quit,
	[CMD_HELP] = smtp_cmd_help,
	[CMD_VRFY] = smtp_cmd_vrfy,
	[CMD_EXPN] = smtp_cmd_unimpl,
	[CMD_STARTTLS] = smtp_cmd_unimpl,
	[CMD_AUTH] = smtp_cmd_unimpl,
	[CMD_BDAT] = smtp_cmd_unimpl,
	[CMD_ETRN] = smtp_cmd_etrn,
	[CMD_HTTP] = smtp_cmd_http,
};

static const char *const smtp_kind_proto[SMTP_KIND_COUNT] = {
	[SMTP_KIND_SMTP] = "ESMTP",
	[SMTP_KIND_LOCAL] = "ESMTP",
};

static const struct config *smtp_conf;
static const struct alias_table *smtp_aliases;
static struct smtp_listener smtp_listeners[SMTP_LISTEN_MAX];
static int smtp_nlisteners;
static struct smtp_session *smtp_head;
static unsigned smtp_count;
static int smtp_stopping;
static void (*smtp_done)(void);
static void (*smtp_flush_hook)(void);
static struct loop_timer smtp_grace = { .cb = smtp_on_shutdown_grace };

void
smtp_configure(const struct config *conf)
{
	smtp_conf = conf;
}

void
smtp_set_aliases(const struct alias_table *t)
{
	smtp_aliases = t;
}

void
smtp_set_flush(void (*fn)(void))
{
	smtp_flush_hook = fn;
}

unsigned
smtp_sessions(void)
{
	return smtp_count;
}

int
smtp_listen(int fd, enum smtp_kind kind)
{
	struct smtp_listener *l;

	if (smtp_nlisteners == SMTP_LISTEN_MAX) {
		errno = ENFILE;
		return -1;
	}
	l = &smtp_listeners[smtp_nlisteners];
	memset(l, 0, sizeof(*l));
	l->lfd.fd = fd;
	l->lfd.cb = smtp_on_accept;
	l->pause.cb = smtp_on_pause;
	l->kind = kind;
	if (loop_fd_add(&l->lfd, LOOP_READ) == -1)
		return -1;
	smtp_nlisteners++;
	return 0;
}

static void
smtp_on_pause(struct loop_timer *t)
{
	struct smtp_listener *l = container_of(t, struct smtp_listener, pause);

	if (!smtp_stopping)
		(void)loop_fd_want(&l->lfd, LOOP_READ);
}

static void
smtp_on_accept(struct loop_fd *lfd, unsigned events)
{
	struct smtp_listener *l = container_of(lfd, struct smtp_listener, lfd);
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	(void)events;
	/* A bounded batch: a connection flood must not starve the rest. */
	for (int i = 0; i < SMTP_ACCEPT_BATCH; i++) {
		len = sizeof(ss);
		fd = accept4(lfd->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			log_warn(LP_SMTPD, "accept");
			/* EMFILE and friends: breathe instead of spinning. */
			(void)loop_fd_want(lfd, 0);
			loop_timer_set(&l->pause, SMTP_ACCEPT_PAUSE_MS);
			return;
		}
		if (l->kind != SMTP_KIND_LOCAL)
			/* A Nagle/delayed-ACK stall costs ~40 ms a message. */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
		smtp_session_new(l, fd, &ss);
	}
}

static void
smtp_sockaddr_ip(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &s4->sin_addr, buf, (socklen_t)len);
	else if (ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf,
		    (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "127.0.0.1");
}

static void
smtp_session_new(struct smtp_listener *l, int fd,
    const struct sockaddr_storage *ss)
{
	struct smtp_session *s, *o;
	unsigned same = 0;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char ip[INET6_ADDRSTRLEN];
	char msg[128];
	int n = 0;

	smtp_sockaddr_ip(ss, ip, sizeof(ip));
	log_info(LP_SMTPD, "connect from unknown[%s]", ip);
	if (smtp_stopping) {
		n = snprintf(msg, sizeof(msg), "421 4.3.2 %s Service shutting "
		    "down\r\n", smtp_conf->hostname);
		goto refuse;
	}
	if (l->kind != SMTP_KIND_LOCAL) {
		for (o = smtp_head; o != NULL; o = o->next)
			if (o->kind != SMTP_KIND_LOCAL &&
			    strcmp(o->ip, ip) == 0)
				same++;
		if (smtp_count >= smtp_conf->max_connections) {
			log_warnx(LP_SMTPD, "connect from unknown[%s]: too many "
			    "connections (max_connections = %u)", ip,
			    smtp_conf->max_connections);
			n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: too "
			    "many connections\r\n", smtp_conf->hostname);
			goto refuse;
		}
		if (same >= smtp_conf->max_connections_per_client) {
			log_warnx(LP_SMTPD, "connect from unknown[%s]: too many "
			    "connections from this client", ip);
			n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: too "
			    "many connections from %s\r\n",
			    smtp_conf->hostname, ip);
			goto refuse;
		}
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn(LP_SMTPD, "%s: calloc", __func__);
		n = snprintf(msg, sizeof(msg), "421 4.3.2 %s Error: out of "
		    "resources\r\n", smtp_conf->hostname);
		goto refuse;
	}
	if ((s->io = io_new(fd, smtp_on_io, s)) == NULL) {
		log_warn(LP_SMTPD, "%s: io_new", __func__);
		free(s);
		n = snprintf(msg, sizeof(msg), "421 4.3.2 %s Error: out of "
		    "resources\r\n", smtp_conf->hostname);
		goto refuse;
	}
	s->kind = l->kind;
	s->uid = -1;
	s->data_deadline.cb = smtp_on_data_deadline;
	memcpy(s->ip, ip, sizeof(s->ip));
	if (l->kind == SMTP_KIND_LOCAL) {
		s->flags |= SF_LOCAL | SF_TRUSTED;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
			s->uid = (long)cred.uid;
	} else if (config_net_match(&smtp_conf->relay_networks,
	    (const struct sockaddr *)ss))
		s->flags |= SF_TRUSTED;
	s->next = smtp_head;
	if (smtp_head)
		smtp_head->prev = s;
	smtp_head = s;
	smtp_count++;
	s->state = STATE_HELO;
	io_set_timeout(s->io, smtp_ms(smtp_conf->smtpd_timeout));
	io_printf(s->io, "220 %s ESMTP ferry\r\n", smtp_conf->hostname);
	io_flush(s->io);
	return;

refuse:
	/* A best-effort answer on a fresh socket; it has room for it. */
	if (n > 0 && (size_t)n < sizeof(msg))
		(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	log_info(LP_SMTPD, "disconnect from unknown[%s] commands=0", ip);
	close(fd);
}

static void
smtp_session_free(struct smtp_session *s)
{
	loop_timer_cancel(&s->data_deadline);
	if (s->state == STATE_COMMIT)
		queue_commit_forget(s);
	if (s->w)
		queue_writer_abort(s->w);
	if (s->prev)
		s->prev->next = s->next;
	else
		smtp_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	smtp_count--;
	io_free(s->io);
	free(s->rcpts);
	free(s->msgid);
	free(s);
	if (smtp_stopping && smtp_count == 0)
		smtp_call_done();
}

/* The shutdown callback runs once, however the last session ended. */
static void
smtp_call_done(void)
{
	void (*done)(void) = smtp_done;

	smtp_done = NULL;
	loop_timer_cancel(&smtp_grace);
	if (done)
		done();
}

/* Seconds from the config to loop milliseconds, without wrapping. */
static unsigned
smtp_ms(unsigned seconds)
{
	return (seconds > SMTP_TIMEOUT_MAX ? SMTP_TIMEOUT_MAX : seconds) *
	    1000u;
}

static const char *
smtp_strstate(enum smtp_state st)
{
	static const char *const names[] = {
		"HELO", "READY", "MAIL", "RCPT", "DATA", "COMMIT", "QUIT",
	};

	return names[st];
}

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	log_trace(TRACE_SMTP, "smtp %p: %s -> %s", (void *)s,
	    smtp_strstate(s->state), smtp_strstate(st));
	s->state = st;
}

static const char *
smtp_peer(const struct smtp_session *s)
{
	static char buf[INET6_ADDRSTRLEN + 16];

	snprintf(buf, sizeof(buf), "unknown[%s]", s->ip);
	return buf;
}

static const char *
smtp_proto(const struct smtp_session *s)
{
	return (s->flags & SF_EHLO) ? smtp_kind_proto[s->kind] : "SMTP";
}

/* --- replies --- */

static void
smtp_vreply(struct smtp_session *s, enum smtp_reply r, va_list ap)
{
	char text[768];
	int n;

	vsnprintf(text, sizeof(text), smtp_replies[r].text, ap);
	if (smtp_replies[r].esc)
		n = io_printf(s->io, "%d %s %s\r\n", smtp_replies[r].code,
		    smtp_replies[r].esc, text);
	else
		n = io_printf(s->io, "%d %s\r\n", smtp_replies[r].code, text);
	if (n == -1) {
		/* The client does not read its replies: give up on it. */
		log_warnx(LP_SMTPD, "%s: reply buffer full, dropping session",
		    smtp_peer(s));
		smtp_enter_state(s, STATE_QUIT);
	}
}

static void
smtp_reply(struct smtp_session *s, enum smtp_reply r, ...)
{
	va_list ap;

	va_start(ap, r);
	smtp_vreply(s, r, ap);
	va_end(ap);
}

/* Answer, then close once the answer is out; input is no longer read. */
static void
smtp_close(struct smtp_session *s, enum smtp_reply r, ...)
{
	va_list ap;

	va_start(ap, r);
	smtp_vreply(s, r, ap);
	va_end(ap);
	smtp_enter_state(s, STATE_QUIT);
}

static void
smtp_error(struct smtp_session *s)
{
	if (++s->errors >= SMTP_ERROR_LIMIT) {
		log_warnx(LP_SMTPD, "%s: too many errors", smtp_peer(s));
		smtp_close(s, RP_TOO_MANY_ERRORS, smtp_conf->hostname);
	}
}

static void
smtp_reject_log(struct smtp_session *s, const char *verb, const char *to,
    enum smtp_reply r, const char *arg)
{
	char text[600];

	snprintf(text, sizeof(text), smtp_replies[r].text, arg);
	log_info(LP_SMTPD, "NOQUEUE: reject: %s from %s: %d %s %s; "
	    "from=<%s>%s%s%s proto=%s helo=<%s>", verb, smtp_peer(s),
	    smtp_replies[r].code, smtp_replies[r].esc, text, s->sender,
	    to ? " to=<" : "", to ? to : "", to ? ">" : "", smtp_proto(s),
	    s->helo);
}

static void
smtp_reset(struct smtp_session *s)
{
	if (s->w) {
		queue_writer_abort(s->w);
		s->w = NULL;
	}
	s->sender[0] = '\0';
	free(s->rcpts);
	s->rcpts = NULL;
	s->rcpts_len = s->rcpts_cap = 0;
	s->nrcpt = 0;
	s->declared_size = s->data_size = 0;
	free(s->msgid);
	s->msgid = NULL;
	s->flags &= ~(SF_DISCARD | SF_HEADERS | SF_8BITMIME | SF_SMTPUTF8 |
	    SF_DATA_BOL | SF_SKIPLINE | SF_SKIP_CR);
	if (s->state != STATE_HELO)
		smtp_enter_state(s, STATE_READY);
}

/* --- input --- */

static void
smtp_on_io(struct io *io, enum io_event ev, void *arg)
{
	struct smtp_session *s = arg;

	(void)io;
	switch (ev) {
	case IO_TLS:
	case IO_IN:
		smtp_process(s);
		break;
	case IO_DRAINED:
		if (s->state == STATE_QUIT) {
			smtp_log_disconnect(s);
			smtp_session_free(s);
			return;
		}
		break;
	case IO_EOF:
		smtp_process(s);
		if (s->state == STATE_COMMIT)
			return;	/* answer the commit, then go */
		if (s->state == STATE_QUIT) {
			smtp_flush(s);	/* our last words, then free */
			return;
		}
		smtp_log_lost(s, "lost connection");
		smtp_log_disconnect(s);
		smtp_session_free(s);
		return;
	case IO_ERR:
		smtp_log_lost(s, "lost connection");
		smtp_log_disconnect(s);
		smtp_session_free(s);
		return;
	case IO_TIMEOUT:
		if (s->state == STATE_COMMIT) {
			/* The disk is slow; the client gets its full time
			 * again once the answer is out. */
			io_set_timeout(s->io, smtp_ms(smtp_conf->smtpd_timeout));
			return;
		}
		if (s->state == STATE_QUIT) {
			smtp_log_disconnect(s);
			smtp_session_free(s);
			return;
		}
		smtp_log_lost(s, "timeout");
		smtp_close(s, RP_TIMEOUT, smtp_conf->hostname);
		io_set_timeout(s->io, 5000);	/* for the reply to leave */
		break;
	}
	smtp_flush(s);
}

static void
smtp_on_data_deadline(struct loop_timer *t)
{
	struct smtp_session *s = container_of(t, struct smtp_session,
	    data_deadline);

	if (s->state != STATE_DATA)
		return;
	smtp_log_lost(s, "timeout");
	smtp_close(s, RP_TIMEOUT, smtp_conf->hostname);
	smtp_flush(s);
}

/* Send what is queued; a session in QUIT goes once it has all left. */
static void
smtp_flush(struct smtp_session *s)
{
	if (s->state == STATE_QUIT)
		io_pause(s->io);
	io_flush(s->io);
	if (s->state == STATE_QUIT && io_queued(s->io) == 0) {
		smtp_log_disconnect(s);
		smtp_session_free(s);
	}
}

static void
smtp_process(struct smtp_session *s)
{
	const char *buf, *lf;
	size_t len, n;

	while (s->state != STATE_QUIT && s->state != STATE_COMMIT) {
		buf = io_in(s->io, &len);
		if (len == 0)
			break;
		if (s->state == STATE_DATA) {
			if ((n = smtp_data(s, buf, len)) == 0)
				break;
			io_consume(s->io, n);
			continue;
		}
		if ((lf = memchr(buf, '\n', len)) == NULL) {
			if (len < CMD_LINE_MAX && !io_in_full(s->io))
				break;
			/* Over-long: drop it as it comes, answer at its LF. */
			s->flags |= SF_SKIPLINE;
			io_consume(s->io, len);
			continue;
		}
		n = (size_t)(lf - buf) + 1;
		if (smtp_command_line(s, buf, n) == 0)
			io_consume(s->io, n);
	}
}

/*
 * One command line including its LF.  Returns 0 when the line was used;
 * the session may have moved to QUIT.
 */
static int
smtp_command_line(struct smtp_session *s, const char *line, size_t len)
{
	struct cmd c;

	if (s->flags & SF_SKIPLINE) {
		s->flags &= ~SF_SKIPLINE;
		log_warnx(LP_SMTPD, "%s: command line too long", smtp_peer(s));
		smtp_reply(s, RP_LINE_TOO_LONG);
		smtp_error(s);
		return 0;
	}
	if (len < 2 || line[len - 2] != '\r') {
		log_warnx(LP_SMTPD, "%s: bare <LF> received", smtp_peer(s));
		smtp_close(s, RP_BARE_LF, smtp_conf->hostname);
		return 0;
	}
	len -= 2;
	if (memchr(line, '\r', len) != NULL) {
		log_warnx(LP_SMTPD, "%s: bare <CR> received", smtp_peer(s));
		smtp_close(s, RP_BARE_CR, smtp_conf->hostname);
		return 0;
	}
	if (len + 2 > CMD_LINE_MAX) {
		log_warnx(LP_SMTPD, "%s: command line too long", smtp_peer(s));
		smtp_reply(s, RP_LINE_TOO_LONG);
		smtp_error(s);
		return 0;
	}
	log_trace(TRACE_SMTP, "smtp %p: < %.*s", (void *)s, (int)len, line);
	if (cmd_parse(line, len, &c) == -1) {
		smtp_reply(s, RP_SYNTAX);
		smtp_error(s);
		return 0;
	}
	if (s->count[c.verb][0] < UINT16_MAX)
		s->count[c.verb][0]++;
	smtp_cmds[c.verb](s, &c);
	return 0;
}

/* A command handler that succeeded counts itself for the disconnect line. */
#define SMTP_OK(s, verb) do {						\
	if ((s)->count[verb][1] < UINT16_MAX)				\
		(s)->count[verb][1]++;					\
} while (0)

/* --- commands --- */

static int
smtp_helo_arg(struct smtp_session *s, const struct cmd *c)
{
	size_t i;

	if (c->arglen == 0 || c->arglen > SMTP_HELO_MAX)
		return -1;
	for (i = 0; i < c->arglen; i++)
		if (c->arg[i] == ' ' || c->arg[i] == '\t')
			break;
	/* Only the first word goes into headers; no bytes that break them. */
	memcpy(s->helo, c->arg, i);
	s->helo[i] = '\0';
	return 0;
}

static void
smtp_cmd_helo(struct smtp_session *s, const struct cmd *c)
{
	if (smtp_helo_arg(s, c) == -1) {
		smtp_reply(s, RP_HELO_SYNTAX);
		smtp_error(s);
		return;
	}
	s->flags &= ~SF_EHLO;
	smtp_reset(s);
	smtp_enter_state(s, STATE_READY);
	smtp_reply(s, RP_HELO, smtp_conf->hostname);
	SMTP_OK(s, CMD_HELO);
}

static void
smtp_cmd_ehlo(struct smtp_session *s, const struct cmd *c)
{
	if (smtp_helo_arg(s, c) == -1) {
		smtp_reply(s, RP_HELO_SYNTAX);
		smtp_error(s);
		return;
	}
	s->flags |= SF_EHLO;
	smtp_reset(s);
	smtp_enter_state(s, STATE_READY);
	io_printf(s->io, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250 HELP\r\n", smtp_conf->hostname,
	    (unsigned long long)smtp_conf->message_size_limit);
	SMTP_OK(s, CMD_EHLO);
}

static void
smtp_cmd_mail(struct smtp_session *s, const struct cmd *c)
{
	struct cmd_params p;
	const char *why = "";
	char addr[ADDR_PATH_MAX];
	int off, n;

	if (s->state == STATE_HELO) {
		smtp_reply(s, RP_NEED_HELO);
		smtp_error(s);
		return;
	}
	if (s->state != STATE_READY) {
		smtp_reply(s, RP_NESTED_MAIL);
		smtp_error(s);
		return;
	}
	memset(&p, 0, sizeof(p));
	if ((off = cmd_path_offset(c, CMD_MAIL)) == -1) {
		smtp_reply(s, RP_BAD_SENDER, "expected MAIL FROM:<address>");
		smtp_error(s);
		return;
	}
	/* Parameters first: SMTPUTF8 decides what the path may hold. */
	n = addr_parse_path(c->arg + off, c->arglen - (size_t)off,
	    ADDR_NULL_OK | ADDR_BARE_OK | ADDR_UTF8, addr, sizeof(addr), &why);
	if (n < 0) {
		smtp_reply(s, RP_BAD_SENDER, why);
		smtp_error(s);
		return;
	}
	if (cmd_params(c->arg + off + n, c->arglen - (size_t)off - (size_t)n,
	    CMD_MAIL, &p, &why) == -1) {
		smtp_reply(s, RP_BAD_PARAM, why);
		smtp_error(s);
		return;
	}
	if (!p.smtputf8 && addr_parse_path(c->arg + off, (size_t)n,
	    ADDR_NULL_OK | ADDR_BARE_OK, addr, sizeof(addr), &why) < 0) {
		smtp_reply(s, RP_8BIT_ADDR, addr);
		smtp_error(s);
		return;
	}
	if (p.has_size && p.size > smtp_conf->message_size_limit) {
		snprintf(s->sender, sizeof(s->sender), "%s", addr);
		smtp_reject_log(s, "MAIL", NULL, RP_SIZE, NULL);
		s->sender[0] = '\0';
		smtp_reply(s, RP_SIZE);
		return;
	}
	if (!queue_space_ok(p.has_size ? p.size : 0)) {
		log_warnx(LP_SMTPD, "%s: not enough free space in the queue "
		    "file system", smtp_peer(s));
		smtp_reply(s, RP_NO_SPACE);
		return;
	}
	if (addr[0] != '\0')
		smtp_qualify(addr, s->sender, sizeof(s->sender));
	else
		s->sender[0] = '\0';
	s->declared_size = p.has_size ? p.size : 0;
	if (p.body_8bit)
		s->flags |= SF_8BITMIME;
	if (p.smtputf8)
		s->flags |= SF_SMTPUTF8;
	smtp_enter_state(s, STATE_MAIL);
	smtp_reply(s, RP_MAIL_OK);
	SMTP_OK(s, CMD_MAIL);
}

/* Bare local parts get @origin (root -> root@origin). */
static void
smtp_qualify(const char *addr, char *out, size_t outsz)
{
	if (addr_domain(addr) == NULL &&
	    (size_t)snprintf(out, outsz, "%s@%s", addr, smtp_conf->origin) <
	    outsz)
		return;
	snprintf(out, outsz, "%s", addr);
}

/*
 * Relay policy: trusted clients (relay_networks, the local socket) may
 * send anywhere; anyone else only to relay_domains, and then without
 * routing tricks in the local part ('%', '!', a quoted '@') that would
 * make the next hop send it elsewhere.  0: allowed.
 */
static int
smtp_check_rcpt(struct smtp_session *s, const char *addr)
{
	const char *d;
	char dom[ADDR_DOMAIN_MAX + 1];

	if (s->flags & SF_TRUSTED)
		return 0;
	if ((d = addr_domain(addr)) == NULL)
		return -1;
	addr_domain_lower(d, dom, sizeof(dom));
	if (!config_domain_match(&smtp_conf->relay_domains, dom))
		return -1;
	if (addr_has_routing(addr))
		return -1;
	return 0;
}

static int
smtp_has_rcpt(const struct smtp_session *s, const char *addr)
{
	const char *r;
	unsigned i;

	for (i = 0, r = s->rcpts; i < s->nrcpt; i++, r += strlen(r) + 1)
		if (strcasecmp(r, addr) == 0)
			return 1;
	return 0;
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const struct cmd *c)
{
	struct cmd_params p;
	const char *why = "";
	char addr[ADDR_PATH_MAX], full[ADDR_PATH_MAX];
	char exp[SMTP_ALIAS_MAX][512];
	size_t need, cap;
	char *nr;
	int off, n, nexp, i;

	if (s->state != STATE_MAIL && s->state != STATE_RCPT) {
		smtp_reply(s, s->state == STATE_HELO ? RP_NEED_HELO :
		    RP_NEED_MAIL);
		smtp_error(s);
		return;
	}
	if ((off = cmd_path_offset(c, CMD_RCPT)) == -1) {
		smtp_reply(s, RP_BAD_RCPT, "expected RCPT TO:<address>");
		smtp_error(s);
		return;
	}
	n = addr_parse_path(c->arg + off, c->arglen - (size_t)off,
	    ADDR_BARE_OK | ((s->flags & SF_SMTPUTF8) ? ADDR_UTF8 : 0), addr,
	    sizeof(addr), &why);
	if (n < 0) {
		smtp_reply(s, RP_BAD_RCPT, why);
		smtp_error(s);
		return;
	}
	memset(&p, 0, sizeof(p));
	if (cmd_params(c->arg + off + n, c->arglen - (size_t)off - (size_t)n,
	    CMD_RCPT, &p, &why) == -1) {
		smtp_reply(s, RP_BAD_PARAM, why);
		smtp_error(s);
		return;
	}
	smtp_qualify(addr, full, sizeof(full));
	if (smtp_check_rcpt(s, full) != 0) {
		smtp_reject_log(s, "RCPT", full, RP_RELAY_DENIED, full);
		smtp_reply(s, RP_RELAY_DENIED, full);
		return;
	}
	/* Aliases apply at acceptance: root@origin may become several. */
	if ((nexp = alias_expand(smtp_aliases, full, smtp_conf->origin, exp,
	    SMTP_ALIAS_MAX, &why)) < 0) {
		log_warnx(LP_SMTPD, "%s: <%s>: %s", smtp_peer(s), full, why);
		smtp_reply(s, RP_ALIAS, full, why);
		return;
	}
	if (s->nrcpt + (unsigned)nexp > smtp_conf->max_recipients) {
		smtp_reject_log(s, "RCPT", full, RP_TOO_MANY_RCPT, NULL);
		smtp_reply(s, RP_TOO_MANY_RCPT);
		return;
	}
	for (i = 0; i < nexp; i++) {
		/* Like Postfix's cleanup: one copy per recipient. */
		if (smtp_has_rcpt(s, exp[i]))
			continue;
		need = s->rcpts_len + strlen(exp[i]) + 1;
		if (need > s->rcpts_cap) {
			cap = s->rcpts_cap ? s->rcpts_cap : 128;
			while (cap < need)
				cap *= 2;
			if ((nr = realloc(s->rcpts, cap)) == NULL) {
				smtp_reply(s, RP_WRITE_ERR);
				return;
			}
			s->rcpts = nr;
			s->rcpts_cap = cap;
		}
		memcpy(s->rcpts + s->rcpts_len, exp[i], strlen(exp[i]) + 1);
		s->rcpts_len = need;
		s->nrcpt++;
	}
	smtp_enter_state(s, STATE_RCPT);
	smtp_reply(s, RP_RCPT_OK);
	SMTP_OK(s, CMD_RCPT);
}

static void
smtp_cmd_data(struct smtp_session *s, const struct cmd *c)
{
	char hdr[HDR_RECEIVED_MAX];
	unsigned qf = 0;
	const char *r;
	unsigned i;
	int n;

	if (c->arglen != 0) {
		smtp_reply(s, RP_SYNTAX);
		smtp_error(s);
		return;
	}
	if (s->state != STATE_RCPT) {
		smtp_reply(s, s->state == STATE_HELO ? RP_NEED_HELO :
		    s->state == STATE_MAIL ? RP_NEED_RCPT : RP_NEED_MAIL);
		smtp_error(s);
		return;
	}
	if (s->flags & SF_8BITMIME)
		qf |= QF_8BITMIME;
	if (s->flags & SF_SMTPUTF8)
		qf |= QF_SMTPUTF8;
	s->w = queue_writer_new(NULL, s->sender, qf, (uid_t)s->uid,
	    smtp_peer(s));
	if (s->w == NULL) {
		log_warn(LP_SMTPD, "%s: cannot create queue file", smtp_peer(s));
		smtp_reply(s, RP_WRITE_ERR);
		return;
	}
	for (i = 0, r = s->rcpts; i < s->nrcpt; i++, r += strlen(r) + 1)
		if (queue_writer_rcpt(s->w, r) == -1)
			break;
	if (i == s->nrcpt) {
		if (s->flags & SF_LOCAL)
			n = hdr_received(hdr, sizeof(hdr), NULL, NULL, NULL,
			    smtp_conf->hostname, queue_writer_id(s->w),
			    s->nrcpt == 1 ? s->rcpts : NULL, s->uid,
			    time(NULL));
		else
			n = hdr_received(hdr, sizeof(hdr), s->helo, s->ip,
			    smtp_proto(s), smtp_conf->hostname,
			    queue_writer_id(s->w),
			    s->nrcpt == 1 ? s->rcpts : NULL, s->uid,
			    time(NULL));
		if (n > 0 && queue_writer_body(s->w, hdr, (size_t)n) == 0)
			goto ok;
	}
	log_warn(LP_SMTPD, "%s: queue file write error", smtp_peer(s));
	smtp_reply(s, RP_WRITE_ERR);
	queue_writer_abort(s->w);
	s->w = NULL;
	return;
ok:
	if (s->flags & SF_LOCAL)
		log_info(LP_PICKUP, "%s: uid=%ld from=<%s>",
		    queue_writer_id(s->w), s->uid, s->sender);
	else
		log_info(LP_SMTPD, "%s: client=%s", queue_writer_id(s->w),
		    smtp_peer(s));
	s->flags |= SF_HEADERS | SF_DATA_BOL;
	s->data_size = 0;
	smtp_enter_state(s, STATE_DATA);
	/* Silence is bounded by smtpd_timeout, the whole message by
	 * smtpd_data_timeout: a trickling client cannot hold a slot. */
	loop_timer_set(&s->data_deadline,
	    smtp_ms(smtp_conf->smtpd_data_timeout));
	smtp_reply(s, RP_DATA_GO);
}

static void
smtp_cmd_rset(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reset(s);
	smtp_reply(s, RP_OK);
	SMTP_OK(s, CMD_RSET);
	if (s->flags & SF_SHUTDOWN)
		smtp_close(s, RP_SHUTDOWN, smtp_conf->hostname);
}

static void
smtp_cmd_noop(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reply(s, RP_OK);
	SMTP_OK(s, CMD_NOOP);
}

static void
smtp_cmd_quit(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	SMTP_OK(s, CMD_QUIT);
	smtp_close(s, RP_BYE);
}

static void
smtp_cmd_help(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reply(s, RP_HELP);
	SMTP_OK(s, CMD_HELP);
}

static void
smtp_cmd_vrfy(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reply(s, RP_VRFY);
	SMTP_OK(s, CMD_VRFY);
}

static void
smtp_cmd_unimpl(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reply(s, RP_NOT_IMPL);
	smtp_error(s);
}

/* RFC 1985 ETRN, for the local socket only: run the whole queue now. */
static void
smtp_cmd_etrn(struct smtp_session *s, const struct cmd *c)
{
	if (!(s->flags & SF_LOCAL) || smtp_flush_hook == NULL) {
		smtp_cmd_unimpl(s, c);
		return;
	}
	smtp_flush_hook();
	smtp_reply(s, RP_ETRN);
	SMTP_OK(s, CMD_ETRN);
}

static void
smtp_cmd_unknown(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_reply(s, RP_UNKNOWN_CMD);
	smtp_error(s);
}

static void
smtp_cmd_http(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	log_warnx(LP_SMTPD, "non-SMTP command from %s: HTTP", smtp_peer(s));
	smtp_enter_state(s, STATE_QUIT);
}

/* --- DATA --- */

/*
 * Consume complete lines from buf; returns the bytes used (0: need more).
 * Only "CRLF . CRLF" ends the data (RFC 5321 §4.1.1.4): the reader sees
 * each line with its CRLF, and a line that is exactly ".\r\n" at a line
 * start is the end.  A LF without CR, or a CR not followed by LF, ends the
 * session instead (SMTP smuggling): no other byte sequence can end the
 * message or start another.
 */
static size_t
smtp_data(struct smtp_session *s, const char *buf, size_t len)
{
	const char *lf;
	size_t used = 0, n;

	while (used < len && s->state == STATE_DATA) {
		lf = memchr(buf + used, '\n', len - used);
		if (lf == NULL) {
			n = len - used;
			if (!(s->flags & SF_SKIPLINE) && n < SMTP_DATA_LINE_MAX &&
			    !(used == 0 && io_in_full(s->io)))
				break;
			/* Over-long line: drop what we have of it. */
			if (s->flags & SF_SKIP_CR && buf[used] != '\n')
				goto bare_cr;
			if (n > 1 && memchr(buf + used, '\r', n - 1) != NULL)
				goto bare_cr;
			s->flags |= SF_SKIPLINE | SF_TOOLONG;
			if (buf[len - 1] == '\r')
				s->flags |= SF_SKIP_CR;
			else
				s->flags &= ~SF_SKIP_CR;
			s->data_size += n;
			used = len;
			break;
		}
		n = (size_t)(lf - (buf + used)) + 1;
		if (s->flags & SF_SKIPLINE) {
			/* The tail of an over-long line. */
			if (n == 1 ? !(s->flags & SF_SKIP_CR) :
			    buf[used + n - 2] != '\r')
				goto bare_lf;
			/* A CR that ended the last piece had to be ours. */
			if (s->flags & SF_SKIP_CR && n > 1)
				goto bare_cr;
			if (n > 2 && memchr(buf + used, '\r', n - 2) != NULL)
				goto bare_cr;
			s->flags &= ~(SF_SKIPLINE | SF_SKIP_CR);
			s->data_size += n;
			used += n;
			continue;
		}
		if (n < 2 || buf[used + n - 2] != '\r')
			goto bare_lf;
		if (memchr(buf + used, '\r', n - 2) != NULL)
			goto bare_cr;
		smtp_data_line(s, buf + used, n);
		used += n;
	}
	return used;

bare_lf:
	log_warnx(LP_SMTPD, "%s: bare <LF> received in DATA", smtp_peer(s));
	smtp_reset(s);
	smtp_close(s, RP_BARE_LF, smtp_conf->hostname);
	return len;
bare_cr:
	log_warnx(LP_SMTPD, "%s: bare <CR> received in DATA", smtp_peer(s));
	smtp_reset(s);
	smtp_close(s, RP_BARE_CR, smtp_conf->hostname);
	return len;
}

/* One line with its CRLF. */
static void
smtp_data_line(struct smtp_session *s, const char *line, size_t n)
{
	if (n == 3 && line[0] == '.') {
		smtp_data_end(s);
		return;
	}
	if (n > SMTP_DATA_LINE_MAX)
		s->flags |= SF_TOOLONG;
	/* §4.5.2: drop the first of a line's leading dots. */
	if (line[0] == '.') {
		line++;
		n--;
	}
	s->data_size += n;
	if (s->data_size > smtp_conf->message_size_limit)
		s->flags |= SF_TOOBIG;
	if (s->flags & SF_HEADERS) {
		if (n == 2)
			s->flags &= ~SF_HEADERS;
		else if (s->msgid == NULL && n > 11 &&
		    strncasecmp(line, "Message-ID:", 11) == 0) {
			size_t v = 11, e = n - 2;

			while (v < e && (line[v] == ' ' || line[v] == '\t'))
				v++;
			if (e - v > SMTP_MSGID_MAX)
				e = v + SMTP_MSGID_MAX;
			if ((s->msgid = malloc(e - v + 1)) != NULL) {
				memcpy(s->msgid, line + v, e - v);
				s->msgid[e - v] = '\0';
			}
		}
	}
	if (s->flags & SF_DISCARD)
		return;
	if (queue_writer_body(s->w, line, n) == -1) {
		log_warn(LP_SMTPD, "%s: %s: queue file write error",
		    queue_writer_id(s->w), smtp_peer(s));
		s->flags |= SF_WRITE_ERR;
	}
}

static void
smtp_data_end(struct smtp_session *s)
{
	enum smtp_reply r;

	loop_timer_cancel(&s->data_deadline);
	if (s->flags & SF_DISCARD) {
		r = s->flags & SF_WRITE_ERR ? RP_WRITE_ERR :
		    s->flags & SF_TOOLONG ? RP_DATA_LINE_TOO_LONG : RP_SIZE;
		smtp_reject_log(s, "END-OF-MESSAGE", NULL, r, NULL);
		smtp_reset(s);
		smtp_reply(s, r);
		if (s->flags & SF_SHUTDOWN)
			smtp_close(s, RP_SHUTDOWN, smtp_conf->hostname);
		return;
	}
	if (queue_writer_finish(s->w) == -1) {
		log_warn(LP_SMTPD, "%s: %s: queue file write error",
		    queue_writer_id(s->w), smtp_peer(s));
		smtp_reset(s);
		smtp_reply(s, RP_WRITE_ERR);
		return;
	}
	if (s->msgid)
		log_info(LP_CLEANUP, "%s: message-id=%s", queue_writer_id(s->w),
		    s->msgid);
	smtp_enter_state(s, STATE_COMMIT);
	io_pause(s->io);
	queue_commit(s->w, smtp_on_commit, s);
	s->w = NULL;	/* the queue owns it now */
}

static void
smtp_on_commit(void *arg, const char *id, int ok)
{
	struct smtp_session *s = arg;

	if (ok) {
		log_info(LP_QMGR, "%s: from=<%s>, size=%llu, nrcpt=%u "
		    "(queue active)", id, s->sender,
		    (unsigned long long)s->data_size, s->nrcpt);
		smtp_reply(s, RP_QUEUED, id);
		SMTP_OK(s, CMD_DATA);
	} else {
		log_warnx(LP_SMTPD, "%s: %s: queue file commit failed", id,
		    smtp_peer(s));
		smtp_reply(s, RP_WRITE_ERR);
	}
	smtp_enter_state(s, STATE_READY);
	smtp_reset(s);
	if (s->flags & SF_SHUTDOWN)
		smtp_close(s, RP_SHUTDOWN, smtp_conf->hostname);
	/* Buffered pipelined input is re-delivered by io. */
	io_resume(s->io);
	smtp_flush(s);
}

/* --- end of session --- */

/* Postfix's "lost connection after DATA from ..." / "timeout after". */
static void
smtp_log_lost(struct smtp_session *s, const char *why)
{
	log_info(LP_SMTPD, "%s after %s from %s", why,
	    s->state == STATE_DATA ? "DATA" :
	    s->state == STATE_RCPT ? "RCPT" :
	    s->state == STATE_MAIL ? "MAIL" :
	    s->state == STATE_HELO ? "CONNECT" : "END-OF-MESSAGE",
	    smtp_peer(s));
}

static void
smtp_log_disconnect(struct smtp_session *s)
{
	char buf[512];
	size_t off = 0;
	unsigned total = 0, i;
	int n;

	for (i = 0; i < CMD_COUNT; i++) {
		char lower[16];
		const char *name = cmd_name((enum cmd_verb)i);
		size_t k;

		if (s->count[i][0] == 0)
			continue;
		total += s->count[i][0];
		for (k = 0; name[k] && k < sizeof(lower) - 1; k++)
			lower[k] = (char)(name[k] | 0x20);
		lower[k] = '\0';
		if (s->count[i][0] == s->count[i][1])
			n = snprintf(buf + off, sizeof(buf) - off, " %s=%u",
			    lower, s->count[i][0]);
		else
			n = snprintf(buf + off, sizeof(buf) - off, " %s=%u/%u",
			    lower, s->count[i][1], s->count[i][0]);
		if (n < 0 || (size_t)n >= sizeof(buf) - off)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	log_info(LP_SMTPD, "disconnect from %s%s commands=%u", smtp_peer(s),
	    buf, total);
}

static void
smtp_on_shutdown_grace(struct loop_timer *t)
{
	(void)t;
	log_warnx(LP_SMTPD, "shutdown: %u session(s) still open, closing",
	    smtp_count);
	while (smtp_head)
		smtp_session_free(smtp_head);
	smtp_call_done();
}

void
smtp_shutdown(void (*done)(void))
{
	struct smtp_session *s, *next;
	int i;

	smtp_stopping = 1;
	smtp_done = done;
	for (i = 0; i < smtp_nlisteners; i++) {
		loop_fd_del(&smtp_listeners[i].lfd);
		loop_timer_cancel(&smtp_listeners[i].pause);
		close(smtp_listeners[i].lfd.fd);
	}
	smtp_nlisteners = 0;
	for (s = smtp_head; s != NULL; s = next) {
		next = s->next;
		if (s->state == STATE_HELO || s->state == STATE_READY) {
			smtp_close(s, RP_SHUTDOWN, smtp_conf->hostname);
			smtp_flush(s);
		} else
			s->flags |= SF_SHUTDOWN;
	}
	if (smtp_count == 0) {
		smtp_call_done();
		return;
	}
	loop_timer_set(&smtp_grace, SMTP_SHUTDOWN_GRACE_MS);
}
