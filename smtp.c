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
 * buffer and go out when the input is exhausted.  Three places stop the
 * reader with lines still buffered: the end of DATA, which waits for the
 * queue's group commit (the 250 comes only from its callback); replies
 * backed up to SMTP_OUT_PAUSE, which wait to be written (IO_DRAINED reads
 * on), so that no reply ever meets io's IO_OUT_MAX (one 4 KB read of
 * EHLOs can ask for more than that); and QUIT or a fatal error, after
 * which buffered input is never read.
 *
 * Limits are protocol answers for the session, never an exit: a too long
 * command is skipped to its LF and answered 500; a too long data line or
 * too much data is read to the end of data, thrown away and answered 5xx;
 * a bare CR or LF anywhere ends the session with 521 (SMTP smuggling).
 *
 * TLS and AUTH (RFC 3207, RFC 4954) are policy here and mechanism
 * elsewhere: io.c runs the handshake, auth.c decodes and checks.  After
 * STARTTLS whatever the client pipelined is thrown away and the session
 * starts over.  Argon2 checks block, so they run one per loop pass from
 * a short queue: a login never stalls the other sessions for more than
 * one check.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
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
#include "auth.h"
#include "cmd.h"
#include "config.h"
#include "hdr.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "queue.h"
#include "net.h"
#include "smtp.h"
#include "textfile.h"
#include "tls.h"

#define SMTP_LISTEN_MAX		(3 * CONFIG_MAX_LISTEN + 1)
#define SMTP_DATA_LINE_MAX	1000	/* §4.5.3.1.6, with CRLF */
#define SMTP_MSGID_MAX		200	/* logged message-id= */
#define SMTP_ACCEPT_PAUSE_MS	1000	/* after EMFILE */
#define SMTP_SHUTDOWN_GRACE_MS	60000
#define SMTP_ACCEPT_BATCH	64	/* accepts per wake-up */
#define SMTP_TIMEOUT_MAX	86400	/* seconds: no wrap in ms */
#define SMTP_ALIAS_MAX		ALIAS_EXPAND_MAX	/* one RCPT's */
/* RFC 4954 §4: AUTH lines may exceed 512; PLAIN's largest, encoded. */
#define SMTP_AUTH_LINE_MAX	(AUTH_B64_LEN(AUTH_PLAIN_MAX) + 16)
#define SMTP_VERIFY_MAX		16	/* Argon2 checks waiting, at most */
#define SMTP_TLS_DESC_MAX	160
/* hdr_received()'s names at their largest, and 88 for its own words
 * ("IPv6:" included): a legal client is never refused for the size of
 * its names. */
_Static_assert(SMTP_HELO_MAX + INET6_ADDRSTRLEN + SMTP_TLS_DESC_MAX +
    CONFIG_NAME_MAX + 16 + QUEUE_ID_SIZE + 512 + HDR_DATE_MAX + 88 <=
    HDR_RECEIVED_MAX, "Received: buffer");
/* Replies queued before the next command waits: what one command says
 * (a reply or two, 1 KB each at most) always fits under io's cap. */
#define SMTP_OUT_PAUSE		(IO_OUT_MAX / 2)
/* A transaction of ferry's own relay client carries a queue file's
 * recipients, the first always taken: it never overshoots into errors. */
_Static_assert(QUEUE_MAX_RCPT - 1 <= SMTP_OVERSHOOT_LIMIT, "overshoot");
/* The first RCPT is taken whatever it becomes: it always fits. */
_Static_assert(SMTP_ALIAS_MAX <= QUEUE_MAX_RCPT && SMTP_ALIAS_MAX *
    (QUEUE_ADDR_MAX + 2) <= QUEUE_RCPT_ROOM, "first RCPT");

enum smtp_state {
	STATE_HELO,		/* greeted, waiting for EHLO/HELO */
	STATE_READY,		/* no transaction */
	STATE_MAIL,		/* MAIL accepted */
	STATE_RCPT,		/* at least one RCPT accepted */
	STATE_DATA,		/* reading the message */
	STATE_COMMIT,		/* waiting for the queue to make it durable */
	STATE_QUIT,		/* closing once the output is written */
	STATE_TLS,		/* the TLS handshake runs */
	STATE_AUTH,		/* reading SASL responses */
	STATE_AUTH_WAIT,	/* the password check is queued */
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
#define SF_TLS		0x1000u	/* TLS is on */
#define SF_AUTH		0x2000u	/* SASL authenticated */
#define SF_CERT_OK	0x4000u	/* a listed client certificate */
#define SF_STARTTLS	0x8000u	/* start TLS once the line is used */
#define SF_REPLAY	0x10000u /* read this command again later */
#define SF_AUTH_DELAYED	0x20000u /* the throttle's wait is over */
#define SF_SEEN_DATE	0x40000u /* the message has a Date: */
#define SF_SEEN_FROM	0x80000u /* ... and a From: */
#define SF_HOPS		0x100000u /* over MSG_HOP_LIMIT Received: */
#define SF_RCPT_TRIED	0x200000u /* a RCPT in this transaction */
#define SF_DRAIN	0x400000u /* reading waits for replies to drain */
#define SF_DROP		0x800000u /* in a header field not to keep */
#define SF_DISCARD	(SF_TOOLONG | SF_TOOBIG | SF_WRITE_ERR | SF_HOPS)

/* The address bytes of an AF_INET or AF_INET6 sockaddr_storage. */
#define SMTP_IN_ADDR(ss) ((const char *)(ss) + ((ss)->ss_family == \
	AF_INET6 ? offsetof(struct sockaddr_in6, sin6_addr) : \
	offsetof(struct sockaddr_in, sin_addr)))

/* One copy of a helper instead of LTO's inlined copies in each caller,
 * or a function kept apart from its one caller: each measured smaller. */
#define SMTP_NOINLINE	__attribute__((noinline))
/* Postfix's two SASL lines, aborted and failed: one format. */
#define SMTP_SASL_LOG	"%s: SASL %s authentication %s"

/* smtp_replies[]: smtp.h's list, the texts NUL-separated. */
#define SMTP_RP_TEXT(name, text)	text "\0"

enum smtp_mech { MECH_PLAIN, MECH_LOGIN };

/* Only while an AUTH dialogue runs; wiped when it ends. */
struct smtp_auth {
	enum smtp_mech mech;
	int have_user;			/* LOGIN: the user name came */
	size_t passlen;
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1];
};

struct smtp_listener {
	struct loop_fd lfd;
	struct loop_timer pause;
	enum smtp_kind kind;
};

/* The fields used most come first: at offsets below 128 an access
 * takes a one-byte displacement instead of four. */
struct smtp_session {
	unsigned flags;
	enum smtp_state state;
	struct io *io;
	struct smtp_auth *auth;
	struct queue_writer *w;
	enum smtp_kind kind;
	unsigned nrcpt;
	char *msgid;			/* allocated only when seen */
	struct msg_buf rcpts;		/* NUL-separated, allocated at RCPT */
	struct tls_conn *tls;		/* io's; kept for its error text */
	char *sasl_user;
	const char *sasl_method;
	uint64_t data_size;
	uint8_t where;			/* WHERE_*, or the last verb + 1 */
	/* "unknown[ip]", for the log: an array past 128 costs its every
	 * reader (smtp_peer()) a four-byte displacement; only its start
	 * counts. */
	char peer[INET6_ADDRSTRLEN + 16];
	unsigned errors;
	unsigned junk;			/* NOOP, VRFY, RSET since a message */
	unsigned overshoot;		/* RCPTs past max_recipients, this txn */
	unsigned taken;			/* RCPTs answered 250, this txn, each
					   repeat of one address too */
	unsigned hops;			/* Received: fields in the header */
	long uid;			/* local peer, else -1 */
	struct smtp_session *prev, *next;
	struct smtp_session *vnext;		/* the verification queue */
	uint64_t declared_size;
	struct loop_timer data_deadline;	/* the whole DATA phase */
	struct loop_timer auth_delay;		/* the failure throttle */
	uint16_t count[CMD_COUNT][2];	/* [verb][0 = seen, 1 = ok] */
	char ip[INET6_ADDRSTRLEN];
	char helo[SMTP_HELO_MAX + 1];
	char sender[ADDR_PATH_MAX];
};

/* Postfix's "lost connection after ...": the last command, or these. */
#define WHERE_CONNECT	0		/* no command yet */
#define WHERE_DOT	(CMD_COUNT + 1)	/* END-OF-MESSAGE */
_Static_assert(WHERE_DOT <= UINT8_MAX, "smtp_session: where");

static void smtp_on_accept(struct loop_fd *, unsigned);
static void smtp_on_pause(struct loop_timer *);
static void smtp_session_new(struct smtp_listener *, int,
    const struct sockaddr_storage *) SMTP_NOINLINE;
static void smtp_session_free(struct smtp_session *);
static void smtp_call_done(void);
static void smtp_on_shutdown_grace(struct loop_timer *);
static void smtp_enter_state(struct smtp_session *, enum smtp_state);
static const char *smtp_strstate(enum smtp_state);
static void smtp_on_io(struct io *, enum io_event, void *);
static void smtp_on_data_deadline(struct loop_timer *);
static void smtp_flush(struct smtp_session *);
static void smtp_process(struct smtp_session *);
static int smtp_command_line(struct smtp_session *, const char *, size_t);
static size_t smtp_data(struct smtp_session *, const char *, size_t);
static void smtp_bare(struct smtp_session *, enum smtp_reply, int);
static void smtp_data_line(struct smtp_session *, const char *, size_t)
    SMTP_NOINLINE;
static void smtp_data_end(struct smtp_session *);
static int smtp_header(struct smtp_session *, const char *, size_t);
static void smtp_add_missing(struct smtp_session *, int);
/* noinline: measured smaller than LTO's inlined copy. */
static void smtp_body(struct smtp_session *, const char *, size_t)
    SMTP_NOINLINE;
static void smtp_write_failed(struct smtp_session *) SMTP_NOINLINE;
static void smtp_on_commit(void *, const char *, int);
static void smtp_say(struct smtp_session *, enum smtp_reply, const char *,
    const char *);
static void smtp_said(struct smtp_session *, int);
static void smtp_reply(struct smtp_session *, enum smtp_reply);
static void smtp_fail(struct smtp_session *, enum smtp_reply, const char *);
static void smtp_printable(char *, const char *, size_t);
static void smtp_error(struct smtp_session *) SMTP_NOINLINE;
static void smtp_close(struct smtp_session *, enum smtp_reply);
static void smtp_reset(struct smtp_session *);
static void smtp_reject_log(struct smtp_session *, const char *,
    const char *, enum smtp_reply, const char *);
static int smtp_check_rcpt(struct smtp_session *, const char *);
static int smtp_own_literal(const char *) SMTP_NOINLINE;
static int smtp_listens(const struct listen_list *,
    const struct sockaddr_storage *);
/* always_inline: measured smaller than the call LTO kept. */
static inline void smtp_log_disconnect(struct smtp_session *)
    __attribute__((always_inline));
static void smtp_end(struct smtp_session *);
static void smtp_ok(struct smtp_session *, enum cmd_verb);
static void smtp_log_lost(struct smtp_session *, const char *);
static const char *smtp_peer(const struct smtp_session *);
static const char *smtp_proto(const struct smtp_session *) SMTP_NOINLINE;
static void smtp_cmd_helo(struct smtp_session *, const struct cmd *);
static void smtp_cmd_mail(struct smtp_session *, const struct cmd *);
static void smtp_cmd_rcpt(struct smtp_session *, const struct cmd *);
static void smtp_cmd_data(struct smtp_session *, const struct cmd *);
static void smtp_cmd_rset(struct smtp_session *, const struct cmd *);
static void smtp_cmd_quit(struct smtp_session *, const struct cmd *);
static void smtp_cmd_simple(struct smtp_session *, const struct cmd *);
static void smtp_cmd_etrn(struct smtp_session *, const struct cmd *);
static void smtp_cmd_http(struct smtp_session *, const struct cmd *);
static void smtp_cmd_starttls(struct smtp_session *, const struct cmd *);
static void smtp_cmd_auth(struct smtp_session *, const struct cmd *);
static void smtp_starttls_begin(struct smtp_session *);
static void smtp_tls_ready(struct smtp_session *);
static const char *smtp_tls_desc(const struct smtp_session *, char *,
    size_t);
static int smtp_tls_offered(const struct smtp_session *);
static int smtp_auth_offered(const struct smtp_session *);
static size_t smtp_line_max(const struct smtp_session *, const char *,
    size_t) SMTP_NOINLINE;
static void smtp_auth_response(struct smtp_session *, const char *,
    size_t);
static void smtp_auth_check(struct smtp_session *);
static void smtp_auth_done(struct smtp_session *, int);
static void smtp_auth_end(struct smtp_session *);
static void smtp_auth_stop(struct smtp_session *, enum smtp_reply);
static void smtp_auth_unqueue(struct smtp_session *);
static void smtp_on_auth_delay(struct loop_timer *);
static void smtp_on_verify(struct loop_timer *);
/* smtp.h's, kept out of line here too. */
const char *smtp_reply_text(enum smtp_reply) SMTP_NOINLINE;

static const char smtp_replies[] = SMTP_REPLIES(SMTP_RP_TEXT);
static const unsigned char smtp_any[16];	/* 0.0.0.0 and :: */

static void (*const smtp_cmds[CMD_COUNT])(struct smtp_session *,
    const struct cmd *) = {
	[CMD_UNKNOWN] = smtp_cmd_simple,
	[CMD_HELO] = smtp_cmd_helo,
	[CMD_EHLO] = smtp_cmd_helo,
	[CMD_MAIL] = smtp_cmd_mail,
	[CMD_RCPT] = smtp_cmd_rcpt,
	[CMD_DATA] = smtp_cmd_data,
	[CMD_RSET] = smtp_cmd_rset,
	[CMD_NOOP] = smtp_cmd_simple,
	[CMD_QUIT] = smtp_cmd_quit,
	[CMD_HELP] = smtp_cmd_simple,
	[CMD_VRFY] = smtp_cmd_simple,
	[CMD_EXPN] = smtp_cmd_simple,
	[CMD_STARTTLS] = smtp_cmd_starttls,
	[CMD_AUTH] = smtp_cmd_auth,
	[CMD_BDAT] = smtp_cmd_simple,
	[CMD_ETRN] = smtp_cmd_etrn,
	[CMD_HTTP] = smtp_cmd_http,
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
static struct tls_server *smtp_tls;
static struct auth_users *smtp_users;
static struct tls_fplist *smtp_fps;
static struct auth_throttle *smtp_throttle;
static struct auth_cache *smtp_cache;
static struct smtp_session *smtp_vq_head, *smtp_vq_tail;
static struct loop_timer smtp_verify = { .cb = smtp_on_verify };

void
smtp_configure(const struct config *conf)
{
	smtp_conf = conf;
}

void
smtp_set_tls(struct tls_server *t)
{
	smtp_tls = t;
}

void
smtp_set_auth(struct auth_users *u)
{
	smtp_users = u;
	if (smtp_cache != NULL)
		auth_cache_clear(smtp_cache);
}

void
smtp_set_client_certs(struct tls_fplist *f)
{
	smtp_fps = f;
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

/* buf: INET6_ADDRSTRLEN bytes. */
static void
smtp_sockaddr_ip(const struct sockaddr_storage *ss, char *buf)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf,
		    INET6_ADDRSTRLEN);
	else if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		net_ntop(ss, buf);
	else
		snprintf(buf, INET6_ADDRSTRLEN, "127.0.0.1");
}

static void
smtp_session_new(struct smtp_listener *l, int fd,
    const struct sockaddr_storage *ss)
{
	struct smtp_session *s, *o;
	unsigned same = 0, kind = 0;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char ip[INET6_ADDRSTRLEN];
	/* The longest refusal names a hostname of CONFIG_NAME_MAX and an
	 * IPv6 address; a shorter buffer would close without the 421. */
	char msg[CONFIG_NAME_MAX + INET6_ADDRSTRLEN + 64];
	enum smtp_reply r;
	int n;

	smtp_sockaddr_ip(ss, ip);
	log_info(LP_SMTPD, "connect from unknown[%s]", ip);
	if (smtp_stopping) {
		r = RP_SHUTDOWN;
		goto refuse;
	}
	/* The local socket (any local user may connect) and the network
	 * have max_connections each: idle local sessions took the slots
	 * and every TCP client got 421, or ran the daemon out of fds. */
	for (o = smtp_head; o != NULL; o = o->next)
		if ((o->kind == SMTP_KIND_LOCAL) ==
		    (l->kind == SMTP_KIND_LOCAL)) {
			kind++;
			same += strcmp(o->ip, ip) == 0;
		}
	if (kind >= smtp_conf->max_connections) {
		log_warnx(LP_SMTPD, "connect from unknown[%s]: too many "
		    "connections (max_connections = %u)", ip,
		    smtp_conf->max_connections);
		r = RP_TOO_MANY_CONN;
		goto refuse;
	}
	if (l->kind != SMTP_KIND_LOCAL) {
		if (same >= smtp_conf->max_connections_per_client) {
			log_warnx(LP_SMTPD, "connect from unknown[%s]: too many "
			    "connections from this client", ip);
			r = RP_TOO_MANY_CONN_CLIENT;
			goto refuse;
		}
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->io = io_new(fd, smtp_on_io, s)) == NULL) {
		/* The name in the format: __func__ is an array of its own. */
		log_warn(LP_SMTPD, "smtp_session_new: %s", s == NULL ?
		    "calloc" : "io_new");
		free(s);
		r = RP_NO_RESOURCES;
		goto refuse;
	}
	s->kind = l->kind;
	s->uid = -1;
	s->data_deadline.cb = smtp_on_data_deadline;
	s->auth_delay.cb = smtp_on_auth_delay;
	memcpy(s->ip, ip, sizeof(s->ip));
	snprintf(s->peer, sizeof(s->peer), "unknown[%s]", ip);
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
	if (l->kind == SMTP_KIND_SMTPS) {
		/* Implicit TLS: the banner comes once the handshake is done. */
		if (smtp_tls == NULL ||
		    (s->tls = tls_conn_server(smtp_tls, fd)) == NULL) {
			log_warnx(LP_SMTPD, "%s: TLS not available",
			    smtp_peer(s));
			smtp_end(s);
			return;
		}
		smtp_enter_state(s, STATE_TLS);
		io_start_tls(s->io, s->tls);
		return;
	}
	io_printf(s->io, "220 %s ESMTP ferry\r\n", smtp_conf->hostname);
	io_flush(s->io);
	return;

refuse:
	/* A best-effort answer on a fresh socket; it has room for it.  On
	 * 465 the client expects a TLS handshake, and a plaintext 421 would
	 * be a protocol error to it: the close is the answer there. */
	n = snprintf(msg, sizeof(msg) - 2, smtp_reply_text(r),
	    smtp_conf->hostname, ip);
	if (l->kind != SMTP_KIND_SMTPS && n > 0 &&
	    (size_t)n < sizeof(msg) - 2) {
		memcpy(msg + n, "\r\n", 2);
		(void)!send(fd, msg, (size_t)n + 2,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	log_info(LP_SMTPD, "disconnect from unknown[%s] commands=0", ip);
	close(fd);
}

static void
smtp_session_free(struct smtp_session *s)
{
	loop_timer_cancel(&s->data_deadline);
	loop_timer_cancel(&s->auth_delay);
	if (s->state == STATE_COMMIT)
		queue_commit_forget(s);
	if (s->state == STATE_AUTH_WAIT)
		smtp_auth_unqueue(s);
	if (s->auth != NULL) {
		sodium_memzero(s->auth, sizeof(*s->auth));
		free(s->auth);
	}
	free(s->sasl_user);
	/* A STARTTLS that never reached io_start_tls(). */
	if (s->flags & SF_STARTTLS)
		tls_conn_free(s->tls);
	queue_writer_abort(s->w);	/* NULL: nothing */
	if (s->prev)
		s->prev->next = s->next;
	else
		smtp_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	smtp_count--;
	io_free(s->io);
	msg_buf_free(&s->rcpts);
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
	loop_timer_cancel(&smtp_verify);
	auth_throttle_free(smtp_throttle);
	auth_cache_free(smtp_cache);
	smtp_throttle = NULL;
	smtp_cache = NULL;
	if (done)
		done();
}

/* Seconds from the config to loop milliseconds, without wrapping. */
unsigned
smtp_ms(unsigned seconds)
{
	return (seconds > SMTP_TIMEOUT_MAX ? SMTP_TIMEOUT_MAX : seconds) *
	    1000u;
}

static const char *
smtp_strstate(enum smtp_state st)
{
	/* In enum smtp_state order. */
	return textfile_nth("HELO\0READY\0MAIL\0RCPT\0DATA\0COMMIT\0QUIT\0"
	    "TLS\0AUTH\0AUTH_WAIT", st);
}

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	log_trace(TRACE_SMTP, "smtp %p: %s -> %s", (void *)s,
	    smtp_strstate(s->state), smtp_strstate(st));
	s->state = st;
}

/* Formatted once, when the session starts: named in most log lines. */
static const char *
smtp_peer(const struct smtp_session *s)
{
	return s->peer;
}

/* Postfix's (and RFC 3848's) names: ESMTP, ESMTPS, ESMTPA, ESMTPSA. */
static const char *
smtp_proto(const struct smtp_session *s)
{
	static const char names[][8] = {
		"ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA",
	};

	if (!(s->flags & SF_EHLO))
		return "SMTP";
	return names[((s->flags & SF_TLS) ? 1 : 0) +
	    ((s->flags & SF_AUTH) ? 2 : 0)];
}

/* --- replies --- */

/* The r-th text of smtp_replies[]: a short walk, far from any hot path. */
const char *
smtp_reply_text(enum smtp_reply r)
{
	return textfile_nth(smtp_replies, r);
}

/*
 * Every reply goes out through here: the table's "code esc text" with up
 * to two arguments, then CRLF.
 */
static void
smtp_say(struct smtp_session *s, enum smtp_reply r, const char *a,
    const char *b)
{
	char text[1024];	/* io_printf()'s limit too */
	int n;

	n = snprintf(text, sizeof(text) - 2, smtp_reply_text(r), a, b);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(text) - 3)
		n = (int)sizeof(text) - 3;
	memcpy(text + n, "\r\n", 2);
	smtp_said(s, io_write(s->io, text, (size_t)n + 2));
}

/*
 * io_write()'s or io_printf()'s result: a reply that could not be queued
 * (no memory; SMTP_OUT_PAUSE keeps io's cap out of reach) is never
 * dropped silently: the session ends once what is queued has gone.
 */
static void
smtp_said(struct smtp_session *s, int r)
{
	if (r == -1) {
		log_warnx(LP_SMTPD, "%s: reply buffer full, dropping session",
		    smtp_peer(s));
		smtp_enter_state(s, STATE_QUIT);
	}
}

static void
smtp_reply(struct smtp_session *s, enum smtp_reply r)
{
	smtp_say(s, r, NULL, NULL);
}

/* A client mistake: answer, and count it against SMTP_ERROR_LIMIT. */
static void
smtp_fail(struct smtp_session *s, enum smtp_reply r, const char *arg)
{
	smtp_say(s, r, arg, NULL);
	smtp_error(s);
}

/* One more error; at SMTP_ERROR_LIMIT, 421 and close. */
static void
smtp_error(struct smtp_session *s)
{
	if (++s->errors >= SMTP_ERROR_LIMIT) {
		/* Postfix's "too many errors after RCPT from ...": fail2ban's
		 * postfix filter (default and errors modes) reads it. */
		smtp_log_lost(s, "too many errors");
		smtp_close(s, RP_TOO_MANY_ERRORS);
	}
}

/* Answer (with our host name, where the text has one), then close once
 * the answer is out; input is no longer read. */
static void
smtp_close(struct smtp_session *s, enum smtp_reply r)
{
	smtp_say(s, r, smtp_conf->hostname, NULL);
	smtp_enter_state(s, STATE_QUIT);
}

static void
smtp_reject_log(struct smtp_session *s, const char *verb, const char *to,
    enum smtp_reply r, const char *arg)
{
	char text[600];

	snprintf(text, sizeof(text), smtp_reply_text(r), arg);
	log_info(LP_SMTPD, "NOQUEUE: reject: %s from %s: %s; "
	    "from=<%s>%s%s%s proto=%s helo=<%s>", verb, smtp_peer(s), text,
	    s->sender, to ? " to=<" : "", to ? to : "", to ? ">" : "",
	    smtp_proto(s), s->helo);
}

static void
smtp_reset(struct smtp_session *s)
{
	if (s->w) {
		queue_writer_abort(s->w);
		s->w = NULL;
	}
	s->sender[0] = '\0';
	msg_buf_free(&s->rcpts);
	s->nrcpt = s->hops = s->overshoot = s->taken = 0;
	s->declared_size = s->data_size = 0;
	free(s->msgid);
	s->msgid = NULL;
	s->flags &= ~(SF_DISCARD | SF_HEADERS | SF_8BITMIME | SF_SMTPUTF8 |
	    SF_SKIPLINE | SF_SKIP_CR | SF_SEEN_DATE | SF_SEEN_FROM |
	    SF_RCPT_TRIED | SF_DROP);
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
		smtp_tls_ready(s);
		break;
	case IO_IN:
		smtp_process(s);
		break;
	case IO_DRAINED:
		break;	/* smtp_flush() below: QUIT ends, SF_DRAIN resumes */
	case IO_EOF:
		smtp_process(s);
		if (s->state == STATE_COMMIT)
			return;	/* answer the commit, then go */
		/* Paused behind an AUTH check or unread replies: the close
		 * comes again once it resumes (io_resume() tells it). */
		if (s->state == STATE_AUTH_WAIT || (s->flags & SF_DRAIN))
			break;
		if (s->state == STATE_QUIT) {
			smtp_flush(s);	/* our last words, then free */
			return;
		}
		smtp_log_lost(s, "lost connection");
		smtp_end(s);
		return;
	case IO_ERR:
		if (s->state == STATE_TLS)
			log_info(LP_SMTPD, "SSL_accept error from %s: %s",
			    smtp_peer(s), tls_conn_error(s->tls));
		smtp_log_lost(s, "lost connection");
		smtp_end(s);
		return;
	case IO_TIMEOUT:
		if (s->state == STATE_TLS) {
			/* Nothing can be said in the middle of a handshake. */
			smtp_log_lost(s, "timeout");
			smtp_end(s);
			return;
		}
		if (s->state == STATE_COMMIT || s->state == STATE_AUTH_WAIT) {
			/* The disk is slow; the client gets its full time
			 * again once the answer is out. */
			io_set_timeout(s->io, smtp_ms(smtp_conf->smtpd_timeout));
			return;
		}
		if (s->state == STATE_QUIT) {
			smtp_end(s);
			return;
		}
		smtp_log_lost(s, "timeout");
		smtp_close(s, RP_TIMEOUT);
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
	smtp_close(s, RP_TIMEOUT);
	smtp_flush(s);
}

/* Send what is queued; once it has all left, a session in QUIT goes
 * and one whose reading waited for it (SF_DRAIN) reads again.  Here for
 * IO_DRAINED and for every flush of our own: drained by one, the loop
 * would tell no IO_DRAINED, and the paused session sit until its
 * timeout. */
static void
smtp_flush(struct smtp_session *s)
{
	if (s->state == STATE_QUIT)
		io_pause(s->io);
	io_flush(s->io);
	if (io_queued(s->io) != 0)
		return;
	if (s->state == STATE_QUIT)
		smtp_end(s);
	else if (s->flags & SF_DRAIN) {
		s->flags &= ~SF_DRAIN;
		io_resume(s->io);	/* re-delivers what waited */
	}
}

static void
smtp_process(struct smtp_session *s)
{
	const char *buf, *lf;
	size_t len, n;

	while (s->state != STATE_QUIT && s->state != STATE_COMMIT &&
	    s->state != STATE_TLS && s->state != STATE_AUTH_WAIT) {
		/* Backpressure: a client that pipelines without reading its
		 * replies waits, reading paused (so that its close, too, is
		 * read after the commands before it) until IO_DRAINED.
		 * Flushed first: a socket that takes it all sends none. */
		if (io_queued(s->io) >= SMTP_OUT_PAUSE) {
			io_flush(s->io);
			if (io_queued(s->io) >= SMTP_OUT_PAUSE) {
				s->flags |= SF_DRAIN;
				io_pause(s->io);
				break;
			}
		}
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
			if (len < smtp_line_max(s, buf, len) &&
			    !io_in_full(s->io))
				break;
			/* Over-long: drop it as it comes, answer at its LF. */
			s->flags |= SF_SKIPLINE;
			io_consume(s->io, len);
			continue;
		}
		n = (size_t)(lf - buf) + 1;
		if (smtp_command_line(s, buf, n) != 0)
			break;	/* read again later (the AUTH throttle) */
		io_consume(s->io, n);
		if (s->flags & SF_STARTTLS) {
			smtp_starttls_begin(s);
			break;
		}
	}
}

/* The longest command line: AUTH's may be longer than the rest's. */
static size_t
smtp_line_max(const struct smtp_session *s, const char *buf, size_t len)
{
	if (s->state == STATE_AUTH ||
	    (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0))
		return SMTP_AUTH_LINE_MAX;
	return CMD_LINE_MAX;
}

/*
 * One command line including its LF.  Returns 0 when the line was used
 * (the session may have moved to QUIT), 1 when it is to be read again.
 */
static int
smtp_command_line(struct smtp_session *s, const char *line, size_t len)
{
	struct cmd c;

	if (s->flags & SF_SKIPLINE) {
		s->flags &= ~SF_SKIPLINE;
		goto toolong;
	}
	if (len < 2 || line[len - 2] != '\r') {
		smtp_bare(s, RP_BARE_LF, 0);
		return 0;
	}
	len -= 2;
	if (memchr(line, '\r', len) != NULL) {
		smtp_bare(s, RP_BARE_CR, 0);
		return 0;
	}
	if (len + 2 > smtp_line_max(s, line, len))
		goto toolong;
	/* Never traced: it is a password. */
	if (s->state == STATE_AUTH) {
		smtp_auth_response(s, line, len);
		return 0;
	}
	/* An AUTH line may carry the password (initial response): only
	 * its mechanism is traced. */
	if (log_trace_mask & TRACE_SMTP) {
		size_t m = len;
		const char *hid = "";

		if (len > 5 && strncasecmp(line, "AUTH ", 5) == 0) {
			for (m = 5; m < len && line[m] != ' '; m++)
				;
			hid = " ***";
		}
		log_line(LOG_F_TRACE, "smtp %p: < %.*s%s", (void *)s, (int)m,
		    line, hid);
	}
	if (cmd_parse(line, len, &c) == -1) {
		s->where = CMD_UNKNOWN + 1;
		smtp_fail(s, RP_SYNTAX, NULL);
		return 0;
	}
	if (s->count[c.verb][0] < UINT16_MAX)
		s->count[c.verb][0]++;
	s->where = (uint8_t)(c.verb + 1);
	if (smtp_no_arg(&c, s->state == STATE_RCPT)) {
		smtp_fail(s, RP_NO_ARG, cmd_name(c.verb));
		return 0;
	}
	smtp_cmds[c.verb](s, &c);
	if (s->flags & SF_REPLAY) {
		s->flags &= ~SF_REPLAY;
		s->count[c.verb][0]--;
		return 1;
	}
	return 0;
toolong:
	log_warnx(LP_SMTPD, "%s: command line too long", smtp_peer(s));
	/* RFC 4954 section 4: a SASL response has its own words.  An AUTH
	 * command line, initial response and all, is a command (section 4
	 * again; Postfix's 5.5.6 is for a response to its 334 only). */
	smtp_fail(s, s->state == STATE_AUTH ? RP_AUTH_LINE_TOO_LONG :
	    RP_LINE_TOO_LONG, NULL);
	smtp_auth_end(s);
	return 0;
}

/* A command handler that succeeded counts itself for the disconnect line. */
static void
smtp_ok(struct smtp_session *s, enum cmd_verb verb)
{
	if (s->count[verb][1] < UINT16_MAX)
		s->count[verb][1]++;
}

/* --- commands --- */

static int
smtp_helo_arg(struct smtp_session *s, const struct cmd *c)
{
	size_t i, j;

	if (c->arglen == 0 || c->arglen > SMTP_HELO_MAX)
		return -1;
	/* The first word, as Postfix splits it ("EHLO  name" too), goes
	 * into headers and the log, made printable. */
	for (i = 0; i < c->arglen && (c->arg[i] == ' ' || c->arg[i] == '\t');
	    i++)
		;
	for (j = i; j < c->arglen && c->arg[j] != ' ' && c->arg[j] != '\t';
	    j++)
		;
	/* A refused HELO keeps the name of the last good one (Postfix). */
	if (j == i)
		return -1;
	smtp_printable(s->helo, c->arg + i, j - i);
	return 0;
}

/* n bytes of what a client sent, for headers and the log: a control or
 * 8-bit byte, or a parenthesis (a comment in a header), becomes '?', as
 * Postfix prints them.  dst holds n + 1. */
static void
smtp_printable(char *dst, const char *src, size_t n)
{
	size_t i;
	unsigned char ch;

	for (i = 0; i < n; i++) {
		ch = (unsigned char)src[i];
		dst[i] = ch < ' ' || ch >= 0x7f || ch == '(' || ch == ')' ?
		    '?' : (char)ch;
	}
	dst[n] = '\0';
}

/* HELO and EHLO (§4.1.1.1): the same checks, then their own answers. */
static void
smtp_cmd_helo(struct smtp_session *s, const struct cmd *c)
{
	if (smtp_helo_arg(s, c) == -1) {
		smtp_fail(s, RP_HELO_SYNTAX, c->verb == CMD_EHLO ? "EHLO" :
		    "HELO");
		return;
	}
	s->flags &= ~SF_EHLO;
	if (c->verb == CMD_EHLO)
		s->flags |= SF_EHLO;
	smtp_reset(s);
	smtp_enter_state(s, STATE_READY);
	if (c->verb == CMD_HELO)
		smtp_say(s, RP_HELO, smtp_conf->hostname, NULL);
	else
		smtp_said(s, io_printf(s->io, "250-%s\r\n250-PIPELINING\r\n"
		    "250-SIZE %llu\r\n%s%s250-8BITMIME\r\n250-SMTPUTF8\r\n"
		    "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n",
		    smtp_conf->hostname,
		    (unsigned long long)smtp_conf->message_size_limit,
		    smtp_tls_offered(s) ? "250-STARTTLS\r\n" : "",
		    smtp_auth_offered(s) ? "250-AUTH PLAIN LOGIN\r\n" : ""));
	smtp_ok(s, c->verb);
}

static void
smtp_cmd_mail(struct smtp_session *s, const struct cmd *c)
{
	struct cmd_params p;
	const char *why;
	char addr[ADDR_PATH_MAX];
	int r;

	if (s->state == STATE_HELO) {
		smtp_fail(s, RP_NEED_HELO, NULL);
		return;
	}
	if (s->state != STATE_READY) {
		smtp_fail(s, RP_NESTED_MAIL, NULL);
		return;
	}
	/* 587 and inbound_tls = encrypt: TLS first; 587 and 465: AUTH. */
	if (!(s->flags & SF_TLS) && (s->kind == SMTP_KIND_SUBMISSION ||
	    (s->kind == SMTP_KIND_SMTP &&
	    smtp_conf->inbound_tls == TLS_ENCRYPT))) {
		smtp_fail(s, RP_NEED_STARTTLS, NULL);
		return;
	}
	if ((s->kind == SMTP_KIND_SUBMISSION || s->kind == SMTP_KIND_SMTPS) &&
	    !(s->flags & (SF_AUTH | SF_CERT_OK))) {
		smtp_fail(s, RP_NEED_AUTH, NULL);
		return;
	}
	if ((r = smtp_path(c, ADDR_NULL_OK | ADDR_BARE_OK | ADDR_UTF8, addr,
	    &p, &why)) != 0) {
		smtp_fail(s, (enum smtp_reply)r, why);
		return;
	}
	/* p.size is 0 without SIZE= (cmd_params() clears p). */
	if (p.size > smtp_conf->message_size_limit) {
		textfile_copy(s->sender, sizeof(s->sender), addr);
		smtp_reject_log(s, "MAIL", NULL, RP_SIZE, NULL);
		s->sender[0] = '\0';
		/* An error, as in Postfix: a loop of them held a slot. */
		smtp_fail(s, RP_SIZE, NULL);
		return;
	}
	if (!queue_space_ok(p.size)) {
		log_warnx(LP_SMTPD, "%s: not enough free space in the queue "
		    "file system", smtp_peer(s));
		smtp_reply(s, RP_NO_SPACE);
		return;
	}
	if (addr[0] != '\0')
		addr_qualify(addr, smtp_conf->origin, s->sender,
		    sizeof(s->sender));
	else
		s->sender[0] = '\0';
	s->declared_size = p.size;
	/* Both bytes are 0 or 1. */
	s->flags |= p.body_8bit * SF_8BITMIME | p.smtputf8 * SF_SMTPUTF8;
	smtp_enter_state(s, STATE_MAIL);
	smtp_reply(s, RP_MAIL_OK);
	smtp_ok(s, CMD_MAIL);
}

/*
 * RSET, STARTTLS and DATA take no argument (§4.1.1), for the sessions and
 * sendmail -bs alike: 1 when c has one, to be refused.  DATA's sequence
 * errors come first, as in Postfix: rcpt says a recipient is in.
 */
int
smtp_no_arg(const struct cmd *c, int rcpt)
{
	return c->arglen != 0 && (c->verb == CMD_RSET ||
	    c->verb == CMD_STARTTLS || (c->verb == CMD_DATA && rcpt));
}

/*
 * The path and parameters of MAIL or RCPT (c->verb), for the sessions
 * and sendmail -bs alike: the address into addr (ADDR_PATH_MAX), the
 * parameters into *p.  0, or the refusal with its argument in *why.
 */
int
smtp_path(const struct cmd *c, unsigned flags, char *addr,
    struct cmd_params *p, const char **why)
{
	int mail = c->verb == CMD_MAIL, off, n;

	*why = mail ? "expected MAIL FROM:<address>" :
	    "expected RCPT TO:<address>";
	if ((off = cmd_path_offset(c, c->verb)) == -1 ||
	    (n = addr_parse_path(c->arg + off, c->arglen - (size_t)off,
	    flags, addr, ADDR_PATH_MAX, why)) < 0)
		return mail ? RP_BAD_SENDER : RP_BAD_RCPT;
	off += n;
	if (cmd_params(c->arg + off, c->arglen - (size_t)off, c->verb, p,
	    why) == -1)
		return RP_BAD_PARAM;
	/* A sender is read with UTF-8 allowed, then again without unless
	 * SMTPUTF8 came (RFC 6531 §3.4).  Postfix's words; the address is
	 * not echoed (the second parse has emptied it, and a client
	 * without SMTPUTF8 gets no 8-bit). */
	if (mail && !p->smtputf8 && addr_parse_path(c->arg + off - n,
	    (size_t)n, flags & ~ADDR_UTF8, addr, ADDR_PATH_MAX, why) < 0)
		return RP_8BIT_ADDR;
	return 0;
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

	if (s->flags & (SF_TRUSTED | SF_AUTH | SF_CERT_OK))
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

/*
 * 1 when addr's domain is an address literal of ours.  RFC 5321 §5.1
 * sends such mail to that address with no MX lookup (sched.c); to ours
 * it would only come back here, and ferry has no local delivery, so
 * RCPT refuses it with the 5.4.6 Postfix bounces a looping MX with
 * (deliver.c).  Ours: the unspecified address (this host, to connect()),
 * and an address of this host that a listener is bound to, itself or
 * as 0.0.0.0 or ::.  Of this host: the kernel routes it here, choosing
 * it as its own source (or 127.0.0.1, for 127.0.0.2 and the rest of
 * 127/8).  Not bind(), which takes any address where ip_nonlocal_bind
 * is set (as keepalived and HAProxy hosts have it).
 */
static int
smtp_own_literal(const char *addr)
{
	const struct config *c = smtp_conf;
	const struct listen_list *ll;
	struct sockaddr_storage ss, src;
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&src;
	char ip[INET6_ADDRSTRLEN];
	socklen_t len, slen = sizeof(src);
	int fd, ours;

	if ((len = addr_literal(addr_domain(addr), &ss, ip)) == 0)
		return 0;
	if (memcmp(SMTP_IN_ADDR(&ss), smtp_any, ss.ss_family == AF_INET6 ?
	    16 : 4) == 0)
		return 1;
	/* listen_smtp, listen_submission and listen_smtps, side by side
	 * in struct config (main.c asserts it). */
	for (ll = &c->listen_smtp; !smtp_listens(ll, &ss);
	    ll = (const struct listen_list *)((const char *)ll + sizeof(*ll)))
		if (ll == &c->listen_smtps)
			return 0;
	if ((fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	/* A datagram socket's connect() sends nothing.  The port is where
	 * sin_port is in both families; the rest of ss is zero. */
	ours = connect(fd, (struct sockaddr *)&ss, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&src, &slen) == 0 &&
	    ((s4->sin_port = 0, memcmp(&src, &ss, len) == 0) ||
	    (src.ss_family == AF_INET && *(unsigned char *)&s4->sin_addr ==
	    127));
	(void)close(fd);
	return ours;
}

/* 1 when a listener in ll is bound to a's address, or to every address
 * of its family (0.0.0.0, ::). */
static int
smtp_listens(const struct listen_list *ll, const struct sockaddr_storage *a)
{
	const struct sockaddr_storage *l;
	size_t alen = a->ss_family == AF_INET6 ? 16 : 4;
	int i;

	for (i = 0; i < ll->n; i++) {
		l = &ll->a[i].ss;
		if (l->ss_family == a->ss_family &&
		    (memcmp(SMTP_IN_ADDR(l), SMTP_IN_ADDR(a), alen) == 0 ||
		    memcmp(SMTP_IN_ADDR(l), smtp_any, alen) == 0))
			return 1;
	}
	return 0;
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const struct cmd *c)
{
	struct cmd_params p;
	const char *why;
	char addr[ADDR_PATH_MAX], full[ADDR_PATH_MAX];
	char exp[SMTP_ALIAS_MAX][512];
	size_t need;
	int r, nexp, i;

	if (s->state != STATE_MAIL && s->state != STATE_RCPT) {
		smtp_fail(s, s->state == STATE_HELO ? RP_NEED_HELO :
		    RP_NEED_MAIL, NULL);
		return;
	}
	s->flags |= SF_RCPT_TRIED;
	if ((r = smtp_path(c, ADDR_BARE_OK | ((s->flags & SF_SMTPUTF8) ?
	    ADDR_UTF8 : 0), addr, &p, &why)) != 0) {
		smtp_fail(s, (enum smtp_reply)r, why);
		return;
	}
	addr_qualify(addr, smtp_conf->origin, full, sizeof(full));
	/* §4.5.1: <postmaster> without a domain is taken from anyone.
	 * Refused relaying counts as an error, as in Postfix, so a client
	 * cannot probe for ever. */
	r = RP_RELAY_DENIED;
	if (addr_casecmp(addr, "postmaster") != 0 &&
	    smtp_check_rcpt(s, full) != 0)
		goto refuse;
	r = RP_LOOP;
	if (smtp_own_literal(full))
		goto refuse;
	/* Aliases apply at acceptance: root@origin may become several. */
	if ((nexp = alias_expand(smtp_aliases, full, smtp_conf->origin, exp,
	    SMTP_ALIAS_MAX, &why)) < 0) {
		log_warnx(LP_SMTPD, "%s: <%s>: %s", smtp_peer(s), full, why);
		smtp_say(s, RP_ALIAS, full, why);
		return;
	}
	/* The first RCPT is taken whatever it becomes (ALIAS_EXPAND_MAX at
	 * most): an alias longer than max_recipients must stay deliverable.
	 * Past what the queue file holds (max_recipients may be higher;
	 * long addresses fill QUEUE_RCPT_ROOM first) the same 452, so the
	 * client sends the rest in another transaction: it was a 250 here
	 * and a 451 at DATA, each time the client tried again.  Repeats of
	 * one address count, as Postfix counts RCPTs: they are kept once,
	 * and without end they held the session for ever. */
	for (need = 0, i = 0; i < nexp; i++)
		need += strlen(exp[i]) + 3;	/* "R address\n" */
	if (s->nrcpt > 0 &&
	    (s->nrcpt + (unsigned)nexp > smtp_conf->max_recipients ||
	    s->taken >= smtp_conf->max_recipients ||
	    s->nrcpt + (unsigned)nexp > QUEUE_MAX_RCPT ||
	    s->rcpts.len + 2 * s->nrcpt + need > QUEUE_RCPT_ROOM)) {
		smtp_reject_log(s, "RCPT", full, RP_TOO_MANY_RCPT, NULL);
		smtp_reply(s, RP_TOO_MANY_RCPT);
		/* Postfix's smtpd_recipient_overshoot_limit: a client that
		 * pipelined all its recipients is not to blame, one that goes
		 * on for ever is (Postfix: "too many errors after RCPT"). */
		if (++s->overshoot > SMTP_OVERSHOOT_LIMIT)
			smtp_error(s);
		return;
	}
	for (i = 0; i < nexp; i++) {
		/* Like Postfix's cleanup: one copy per recipient. */
		if (addr_list_has(s->rcpts.p, s->rcpts.len, exp[i]))
			continue;
		if (msg_buf_add(&s->rcpts, exp[i], strlen(exp[i]) + 1) == -1) {
			smtp_reply(s, RP_WRITE_ERR);
			return;
		}
		s->nrcpt++;
	}
	s->taken++;
	smtp_enter_state(s, STATE_RCPT);
	smtp_reply(s, RP_RCPT_OK);
	smtp_ok(s, CMD_RCPT);
	return;
refuse:
	smtp_reject_log(s, "RCPT", full, (enum smtp_reply)r, full);
	smtp_fail(s, (enum smtp_reply)r, full);
}

static void
smtp_cmd_data(struct smtp_session *s, const struct cmd *c)
{
	char hdr[HDR_RECEIVED_MAX], tls[SMTP_TLS_DESC_MAX], proto[16];
	unsigned qf;
	const char *r;
	unsigned i;
	int n, utf8;

	(void)c;
	if (s->state != STATE_RCPT) {
		/* Postfix's words when every RCPT was refused; none sent
		 * is still a sequence error. */
		smtp_fail(s, s->state == STATE_HELO ? RP_NEED_HELO :
		    s->state != STATE_MAIL ? RP_NEED_MAIL :
		    s->flags & SF_RCPT_TRIED ? RP_NO_VALID_RCPT : RP_NEED_RCPT,
		    NULL);
		return;
	}
	/* The two flags are the queue's, nine bits up. */
	_Static_assert(SF_8BITMIME == QF_8BITMIME << 9 &&
	    SF_SMTPUTF8 == QF_SMTPUTF8 << 9, "SF_ and QF_ bits");
	qf = s->flags >> 9 & (QF_8BITMIME | QF_SMTPUTF8);
	s->w = queue_writer_new(NULL, s->sender, qf, (uid_t)s->uid,
	    smtp_peer(s));
	if (s->w == NULL) {
		log_warn(LP_SMTPD, "%s: cannot create queue file", smtp_peer(s));
		smtp_reply(s, RP_WRITE_ERR);
		return;
	}
	for (i = 0, r = s->rcpts.p; i < s->nrcpt; i++, r += strlen(r) + 1)
		if (queue_writer_rcpt(s->w, r) == -1)
			break;
	if (i == s->nrcpt) {
		/* The local socket's header names the uid, not a peer.  RFC
		 * 6531 section 3.7.3: "with UTF8SMTP[S][A]" for an SMTPUTF8
		 * transaction after EHLO (the name starts "E"); after HELO,
		 * where no parameter belongs, it stays SMTP. */
		utf8 = (s->flags & (SF_SMTPUTF8 | SF_EHLO)) ==
		    (SF_SMTPUTF8 | SF_EHLO);
		snprintf(proto, sizeof(proto), "%s%s", utf8 ? "UTF8" : "",
		    smtp_proto(s) + utf8);
		/* No helo: the local form, which uses no ip, tls or proto. */
		n = hdr_received(hdr, sizeof(hdr), s->flags & SF_LOCAL ? NULL :
		    s->helo, s->ip, smtp_tls_desc(s, tls, sizeof(tls)), proto,
		    smtp_conf->hostname,
		    queue_writer_id(s->w), s->nrcpt == 1 ? s->rcpts.p : NULL,
		    s->uid, loop_now_real());
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
	else if (s->flags & SF_AUTH)
		log_info(LP_SMTPD, "%s: client=%s, sasl_method=%s, "
		    "sasl_username=%s", queue_writer_id(s->w), smtp_peer(s),
		    s->sasl_method, s->sasl_user);
	else
		log_info(LP_SMTPD, "%s: client=%s", queue_writer_id(s->w),
		    smtp_peer(s));
	s->flags |= SF_HEADERS;	/* data_size: smtp_reset() */
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
	smtp_ok(s, CMD_RSET);
	if (s->flags & SF_SHUTDOWN)
		smtp_close(s, RP_SHUTDOWN);
	else if (++s->junk > SMTP_JUNK_LIMIT)
		smtp_error(s);	/* junk for Postfix too: a loop holds a slot */
}

static void
smtp_cmd_quit(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	smtp_ok(s, CMD_QUIT);
	smtp_close(s, RP_BYE);
}

/* Commands with a fixed answer; a 4xx/5xx one counts as an error. */
static void
smtp_cmd_simple(struct smtp_session *s, const struct cmd *c)
{
	/* aligned(1): the ABI aligns arrays of 16 bytes and more to 16. */
	static const unsigned char answer[CMD_COUNT]
	    __attribute__((aligned(1))) = {
		[CMD_UNKNOWN] = RP_UNKNOWN_CMD, [CMD_NOOP] = RP_OK,
		[CMD_HELP] = RP_HELP, [CMD_VRFY] = RP_VRFY,
		[CMD_EXPN] = RP_NOT_IMPL, [CMD_BDAT] = RP_NOT_IMPL,
	};
	enum smtp_reply r = (enum smtp_reply)answer[c->verb];

	if (c->verb == CMD_VRFY && c->arglen == 0)
		r = RP_VRFY_SYNTAX;	/* Postfix's answer */
	if (smtp_reply_text(r)[0] >= '4')
		smtp_fail(s, r, NULL);
	else {
		smtp_reply(s, r);
		smtp_ok(s, c->verb);
		/* Postfix's smtpd_junk_command_limit: past it, each NOOP,
		 * VRFY or RSET (not HELP) counts as an error, so they cannot
		 * hold a connection slot for ever.  A message accepted starts
		 * the count again. */
		if (r != RP_HELP && ++s->junk > SMTP_JUNK_LIMIT)
			smtp_error(s);
	}
}

/* RFC 1985 ETRN, for the local socket only: run the whole queue now. */
static void
smtp_cmd_etrn(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	if (!(s->flags & SF_LOCAL) || smtp_flush_hook == NULL) {
		smtp_fail(s, RP_NOT_IMPL, NULL);
		return;
	}
	smtp_flush_hook();
	smtp_reply(s, RP_ETRN);
	smtp_ok(s, CMD_ETRN);
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
			/* The limit leaves out a dot added for transparency
			 * (§4.5.3.1.6): ".." and 997 more is a legal line. */
			if (!(s->flags & SF_SKIPLINE) && n < SMTP_DATA_LINE_MAX +
			    (buf[used] == '.') && !(used == 0 && io_in_full(s->io)))
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
	smtp_bare(s, RP_BARE_LF, 1);
	return len;
bare_cr:
	smtp_bare(s, RP_BARE_CR, 1);
	return len;
}

/* A CR or LF on its own (RFC 5321 §2.3.8): the end, whatever the state,
 * since accepting it would allow SMTP smuggling. */
static void
smtp_bare(struct smtp_session *s, enum smtp_reply r, int in_data)
{
	log_warnx(LP_SMTPD, "%s: bare <%s> received%s", smtp_peer(s),
	    r == RP_BARE_LF ? "LF" : "CR", in_data ? " in DATA" : "");
	if (in_data)
		smtp_reset(s);
	smtp_close(s, r);
}

/* One line with its CRLF. */
static void
smtp_data_line(struct smtp_session *s, const char *line, size_t n)
{
	int ws;

	if (n == 3 && line[0] == '.') {
		smtp_data_end(s);
		return;
	}
	/* §4.5.2: drop the first of a line's leading dots; the length
	 * limit is on what is left. */
	if (line[0] == '.') {
		line++;
		n--;
	}
	if (n > SMTP_DATA_LINE_MAX)
		s->flags |= SF_TOOLONG;
	s->data_size += n;
	if (s->data_size > smtp_conf->message_size_limit)
		s->flags |= SF_TOOBIG;
	/* The header ends at the empty line, or before a line that is no
	 * header field, which then starts the body (as Postfix's cleanup
	 * has it).  A first line that starts with white space would
	 * continue our Received: field: an empty line goes before it, as
	 * Postfix's smtpd puts one (sep 2). */
	ws = s->data_size == n && (line[0] == ' ' || line[0] == '\t');
	if ((s->flags & SF_HEADERS) && (n == 2 || ws ||
	    !smtp_header(s, line, n))) {
		s->flags &= ~(SF_HEADERS | SF_DROP);
		smtp_add_missing(s, n == 2 ? 0 : ws ? 2 : 1);
	}
	if (s->flags & (SF_DISCARD | SF_DROP))
		return;
	smtp_body(s, line, n);
}

/*
 * One line of the header: 1 if it is a field ("Name: ...") or a
 * continuation, noting Date, From and Message-ID (kept for the log),
 * counting Received: (a mail loop adds one a pass; Postfix's cleanup
 * counts them the same way, in the primary header only) and setting
 * SF_DROP for a field not to be queued, continuations included.
 */
static int
smtp_header(struct smtp_session *s, const char *line, size_t n)
{
	struct msg_field f;
	size_t v, e = n - 2;

	if (line[0] == ' ' || line[0] == '\t')
		return 1;
	/* sendmail's parser (msg.c), so both sides agree on what a field
	 * is ("Subject : x" too, RFC 5322 section 4.5.8). */
	if (!msg_field_line(line, e, &f))
		return 0;
	/* As pickup.c counts a maildrop/ file; before "Resent-" is cut:
	 * RFC 5322 section 3.6.6 makes no trace field of it. */
	if (msg_hop(line, &f, &s->hops))
		s->flags |= SF_HOPS;
	/* Bcc: and the rest that sendmail drops (msg.c), from SMTP mail
	 * too, as Postfix's cleanup does: else every recipient (and a DSN)
	 * would see the blind copies.  Still counted in data_size, as
	 * bytes received against message_size_limit. */
	s->flags &= ~SF_DROP;
	if (msg_field_drop(line, &f))
		s->flags |= SF_DROP;
	/* A resent message has its Date, From and Message-ID in its
	 * Resent- fields (sendmail adds those, as Postfix's does). */
	(void)msg_field_resent(line, &f);
	if (msg_field_is(line, &f, "Date"))
		s->flags |= SF_SEEN_DATE;
	else if (msg_field_is(line, &f, "From"))
		s->flags |= SF_SEEN_FROM;
	else if (s->msgid == NULL && msg_field_is(line, &f, "Message-ID")) {
		for (v = f.value; v < e && (line[v] == ' ' || line[v] == '\t');
		    v++)
			;
		if (e - v > SMTP_MSGID_MAX)
			e = v + SMTP_MSGID_MAX;
		if ((s->msgid = malloc(e - v + 1)) != NULL)
			smtp_printable(s->msgid, line + v, e - v);
	}
	return 1;
}

/*
 * What a submitted message lacks, at the header's end: Date and
 * Message-ID (RFC 6409 §8: a submission server adds them; Gmail refuses
 * mail without a Message-ID, and cameras and scripts send such mail),
 * and for sendmail -bs a From (SMTP_FROM_NULL for <>).  Submitted:
 * over the local socket or after AUTH, as Postfix rewrites its local
 * clients' mail.  Mail relayed for relay_networks or relay_client_certs,
 * or passing through to relay_domains, is left as it came.  sep: the
 * header ended at a line that is no field; an empty line goes before it
 * (sep 2: even when nothing is added).
 */
static void
smtp_add_missing(struct smtp_session *s, int sep)
{
	char buf[ADDR_PATH_MAX + HDR_DATE_MAX + CONFIG_NAME_MAX + 64];
	const char *id = NULL;
	char *cr;
	size_t n = 0;
	int r;

	if (s->flags & SF_DISCARD)
		return;
	if (s->flags & (SF_LOCAL | SF_AUTH)) {
		if ((s->flags & (SF_LOCAL | SF_SEEN_FROM)) == SF_LOCAL)
			n = (size_t)(s->sender[0] != '\0' ? snprintf(buf,
			    sizeof(buf), "From: <%s>\r\n", s->sender) :
			    snprintf(buf, sizeof(buf), SMTP_FROM_NULL,
			    smtp_conf->origin));
		r = hdr_missing(buf + n, sizeof(buf) - n - 2,
		    !(s->flags & SF_SEEN_DATE), s->msgid == NULL,
		    smtp_conf->hostname, loop_now_real(), &id);
		n += r > 0 ? (size_t)r : 0;
	}
	if (n == 0 && sep < 2)
		return;
	if (id != NULL && (s->msgid = strdup(id)) != NULL)
		if ((cr = strchr(s->msgid, '\r')) != NULL)
			*cr = '\0';
	if (sep) {
		memcpy(buf + n, "\r\n", 2);
		n += 2;
	}
	smtp_body(s, buf, n);
}

/* Into the message.  A failure sets SF_WRITE_ERR: no more is written,
 * and the final dot is answered 451. */
static void
smtp_body(struct smtp_session *s, const char *p, size_t n)
{
	if (queue_writer_body(s->w, p, n) == -1) {
		smtp_write_failed(s);
		s->flags |= SF_WRITE_ERR;
	}
}

static void
smtp_write_failed(struct smtp_session *s)
{
	log_warn(LP_SMTPD, "%s: %s: queue file write error",
	    queue_writer_id(s->w), smtp_peer(s));
}

static void
smtp_data_end(struct smtp_session *s)
{
	enum smtp_reply r;

	s->where = WHERE_DOT;
	loop_timer_cancel(&s->data_deadline);
	if (s->flags & SF_HEADERS)	/* all header, no body */
		smtp_add_missing(s, 0);
	if (s->flags & SF_DISCARD) {
		r = s->flags & SF_WRITE_ERR ? RP_WRITE_ERR :
		    s->flags & SF_TOOLONG ? RP_DATA_LINE_TOO_LONG :
		    s->flags & SF_HOPS ? RP_HOPS : RP_SIZE;
		smtp_reject_log(s, "END-OF-MESSAGE", NULL, r, NULL);
		smtp_reset(s);
		smtp_reply(s, r);
		if (s->flags & SF_SHUTDOWN)
			smtp_close(s, RP_SHUTDOWN);
		return;
	}
	if (queue_writer_finish(s->w) == -1) {
		smtp_write_failed(s);
		smtp_reset(s);
		smtp_reply(s, RP_WRITE_ERR);
		return;
	}
	if (s->msgid)
		log_info(LP_CLEANUP, "%s: message-id=%s", queue_writer_id(s->w),
		    s->msgid);
	/* What the file holds, our Received: too, as Postfix's qmgr and
	 * mailq both count it (pflogsumm sums the qmgr line's). */
	s->data_size = queue_writer_size(s->w);
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
		smtp_say(s, RP_QUEUED, id, NULL);
		s->junk = 0;
		smtp_ok(s, CMD_DATA);
	} else {
		log_warnx(LP_SMTPD, "%s: %s: queue file commit failed", id,
		    smtp_peer(s));
		smtp_reply(s, RP_WRITE_ERR);
	}
	smtp_enter_state(s, STATE_READY);
	smtp_reset(s);
	if (s->flags & SF_SHUTDOWN)
		smtp_close(s, RP_SHUTDOWN);
	/* Buffered pipelined input is re-delivered by io. */
	io_resume(s->io);
	smtp_flush(s);
}

/* --- TLS (RFC 3207) --- */

static int
smtp_tls_offered(const struct smtp_session *s)
{
	if (smtp_tls == NULL || (s->flags & SF_TLS))
		return 0;
	return s->kind == SMTP_KIND_SUBMISSION ||
	    (s->kind == SMTP_KIND_SMTP && smtp_conf->inbound_tls != TLS_NONE);
}

/* AUTH never in clear, except on port 25 when the admin says so. */
static int
smtp_auth_offered(const struct smtp_session *s)
{
	if (smtp_users == NULL || s->kind == SMTP_KIND_LOCAL)
		return 0;
	return (s->flags & SF_TLS) || (s->kind == SMTP_KIND_SMTP &&
	    smtp_conf->auth_over_plaintext);
}

/* "TLSv1.2 with cipher NAME (256/256 bits)", or NULL in clear text. */
static const char *
smtp_tls_desc(const struct smtp_session *s, char *buf, size_t len)
{
	const struct tls_conn *t = io_tls(s->io);
	unsigned bits;

	if (t == NULL)
		return NULL;
	bits = tls_conn_cipher_bits(t);
	snprintf(buf, len, "%s with cipher %s (%u/%u bits)",
	    tls_conn_version(t), tls_conn_cipher(t), bits, bits);
	return buf;
}

static void
smtp_cmd_starttls(struct smtp_session *s, const struct cmd *c)
{
	(void)c;
	if (s->flags & SF_TLS) {
		smtp_fail(s, RP_TLS_ACTIVE, NULL);
		return;
	}
	if (!smtp_tls_offered(s)) {
		smtp_fail(s, RP_NOT_IMPL, NULL);
		return;
	}
	if (s->state != STATE_HELO && s->state != STATE_READY) {
		smtp_fail(s, RP_IN_TXN, NULL);
		return;
	}
	if ((s->tls = tls_conn_server(smtp_tls, io_fd(s->io))) == NULL) {
		log_warnx(LP_SMTPD, "%s: cannot start a TLS session",
		    smtp_peer(s));
		smtp_reply(s, RP_TLS_UNAVAIL);
		return;
	}
	smtp_reply(s, RP_STARTTLS_GO);
	if (s->state == STATE_QUIT) {	/* the client reads no replies */
		tls_conn_free(s->tls);
		s->tls = NULL;
		return;
	}
	/* The switch waits until this line is consumed (smtp_process). */
	s->flags |= SF_STARTTLS;
	smtp_ok(s, CMD_STARTTLS);
}

/* After the 220: what follows in the buffer was pipelined in clear and
 * is dropped by io (CVE-2011-0411); the handshake runs next. */
static void
smtp_starttls_begin(struct smtp_session *s)
{
	size_t before = io_tls_discarded(s->io);

	s->flags &= ~SF_STARTTLS;
	smtp_enter_state(s, STATE_TLS);
	io_start_tls(s->io, s->tls);
	if (io_tls_discarded(s->io) > before)
		log_warnx(LP_SMTPD, "%s: %zu bytes pipelined after STARTTLS "
		    "discarded", smtp_peer(s),
		    io_tls_discarded(s->io) - before);
}

static void
smtp_tls_ready(struct smtp_session *s)
{
	unsigned char fc[TLS_FP_LEN], fs[TLS_FP_LEN];
	char desc[SMTP_TLS_DESC_MAX], fp[96];
	int cert;

	cert = tls_conn_peer_fp(s->tls, fc, fs) == 0;
	log_info(LP_SMTPD, "%s TLS connection established from %s: %s",
	    cert ? "Untrusted" : "Anonymous", smtp_peer(s),
	    smtp_tls_desc(s, desc, sizeof(desc)));
	s->flags |= SF_TLS;
	if (cert && smtp_fps != NULL && (tls_fplist_has(smtp_fps, fc) ||
	    tls_fplist_has(smtp_fps, fs))) {
		s->flags |= SF_CERT_OK;
		tls_fp_format(fc, fp);
		log_info(LP_SMTPD, "%s: client certificate %s is listed in "
		    "relay_client_certs", smtp_peer(s), fp);
	}
	/* RFC 3207 §4.2: forget everything learnt in clear text. */
	s->flags &= ~(SF_EHLO | SF_AUTH);
	free(s->sasl_user);
	s->sasl_user = NULL;
	s->helo[0] = '\0';
	smtp_reset(s);
	smtp_enter_state(s, STATE_HELO);
	if (s->kind == SMTP_KIND_SMTPS)
		io_printf(s->io, "220 %s ESMTP ferry\r\n", smtp_conf->hostname);
}

/* --- AUTH (RFC 4954; PLAIN RFC 4616, LOGIN) --- */

static void
smtp_cmd_auth(struct smtp_session *s, const struct cmd *c)
{
	const char *ir;
	size_t ml, irlen;
	int d, eq;

	if (s->state == STATE_HELO) {
		smtp_fail(s, RP_NEED_HELO, NULL);
		return;
	}
	if (s->flags & SF_AUTH) {
		smtp_fail(s, RP_AUTH_AGAIN, NULL);
		return;
	}
	if (s->state != STATE_READY) {
		smtp_fail(s, RP_IN_TXN, NULL);
		return;
	}
	if (!smtp_auth_offered(s)) {
		/* The argument (maybe a password) is not even looked at.
		 * "Must issue a STARTTLS" only where STARTTLS is offered
		 * (not with inbound_tls = none, where it is a 502). */
		smtp_fail(s, smtp_users != NULL && smtp_tls_offered(s) ?
		    RP_NEED_STARTTLS : RP_AUTH_DISABLED, NULL);
		return;
	}
	if (smtp_throttle == NULL &&
	    (smtp_throttle = auth_throttle_new()) == NULL) {
		smtp_reply(s, RP_AUTH_BUSY);
		return;
	}
	d = auth_throttle_check(smtp_throttle, s->ip, loop_now());
	if (d == AUTH_THROTTLE_DENY) {
		log_warnx(LP_SMTPD, "%s: too many failed authentications",
		    smtp_peer(s));
		smtp_close(s, RP_AUTH_TOO_MANY);
		return;
	}
	if (d > 0 && !(s->flags & SF_AUTH_DELAYED)) {
		/* Slow the guesser down; the line is read again after. */
		s->flags |= SF_AUTH_DELAYED | SF_REPLAY;
		io_pause(s->io);
		loop_timer_set(&s->auth_delay, (uint64_t)d);
		return;
	}
	s->flags &= ~SF_AUTH_DELAYED;
	for (ml = 0; ml < c->arglen && c->arg[ml] != ' '; ml++)
		;
	ir = c->arg + ml;
	irlen = c->arglen - ml;
	while (irlen > 0 && *ir == ' ') {
		ir++;
		irlen--;
	}
	if (ml == 0) {
		smtp_fail(s, RP_AUTH_SYNTAX, NULL);
		return;
	}
	if ((s->auth = calloc(1, sizeof(*s->auth))) == NULL) {
		smtp_reply(s, RP_AUTH_BUSY);
		return;
	}
	if (ml == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0)
		s->auth->mech = MECH_PLAIN;
	else if (ml == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0)
		s->auth->mech = MECH_LOGIN;
	else {
		free(s->auth);
		s->auth = NULL;
		smtp_fail(s, RP_AUTH_MECH, NULL);
		return;
	}
	s->sasl_method = s->auth->mech == MECH_PLAIN ? "PLAIN" : "LOGIN";
	smtp_enter_state(s, STATE_AUTH);
	/*
	 * "=" is a zero-length initial response, not a missing one (RFC
	 * 4954 §4).  PLAIN sends everything first, so an empty response is
	 * malformed (RFC 4616 §2) and fails as one.  LOGIN is server-first
	 * (draft-murchison-sasl-login; a user name sent along is a common
	 * extension): with none given it asks, as Cyrus's and Dovecot's do.
	 * An initial response is otherwise the first answer to a 334.
	 */
	eq = irlen == 1 && ir[0] == '=';
	if (irlen == 0 || (eq && s->auth->mech == MECH_LOGIN)) {
		smtp_say(s, RP_334, s->auth->mech == MECH_PLAIN ? "" :
		    "VXNlcm5hbWU6", NULL);
		return;
	}
	smtp_auth_response(s, ir, eq ? 0 : irlen);
}

/* One client response in STATE_AUTH (CRLF removed). */
static void
smtp_auth_response(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_auth *a = s->auth;
	unsigned char probe[AUTH_PLAIN_MAX + 3];
	const char *why = "";
	size_t n;
	int r;

	if (len == 1 && line[0] == '*') {
		/* Postfix's line for it (no failure: fail2ban counts none). */
		log_warnx(LP_SMTPD, SMTP_SASL_LOG, smtp_peer(s),
		    s->sasl_method, "aborted");
		smtp_auth_stop(s, RP_AUTH_ABORTED);
		return;
	}
	/* Bad base64 is a protocol error, not a wrong password. */
	if (auth_b64_decode(line, len, probe, sizeof(probe), &n) == -1) {
		sodium_memzero(probe, sizeof(probe));
		smtp_auth_end(s);
		smtp_fail(s, RP_AUTH_DECODE, NULL);
		return;
	}
	sodium_memzero(probe, sizeof(probe));
	if (a->mech == MECH_PLAIN)
		r = auth_plain_decode(line, len, a->user, sizeof(a->user),
		    a->pass, sizeof(a->pass), &a->passlen, &why);
	else if (!a->have_user) {
		r = auth_login_decode(line, len, 0, a->user, sizeof(a->user),
		    &n, &why);
		if (r == AUTH_DECODE_OK) {
			a->have_user = 1;
			smtp_say(s, RP_334, "UGFzc3dvcmQ6", NULL);
			return;
		}
	} else
		r = auth_login_decode(line, len, 1, a->pass, sizeof(a->pass),
		    &a->passlen, &why);
	if (r != AUTH_DECODE_OK) {
		/* Malformed credentials count as a failed guess. */
		smtp_auth_done(s, 0);
		return;
	}
	smtp_auth_check(s);
}

/* A recent success skips Argon2; otherwise queue the check. */
static void
smtp_auth_check(struct smtp_session *s)
{
	struct smtp_auth *a = s->auth;
	unsigned n = 0;
	struct smtp_session *q;

	if (smtp_cache == NULL)
		smtp_cache = auth_cache_new();
	if (smtp_cache != NULL && auth_cache_hit(smtp_cache, a->user, a->pass,
	    a->passlen, loop_now())) {
		smtp_auth_done(s, 1);
		return;
	}
	for (q = smtp_vq_head; q != NULL; q = q->vnext)
		n++;
	if (n >= SMTP_VERIFY_MAX) {
		log_warnx(LP_SMTPD, "%s: SASL %s: too many password checks "
		    "waiting", smtp_peer(s), s->sasl_method);
		smtp_auth_stop(s, RP_AUTH_BUSY);
		return;
	}
	smtp_enter_state(s, STATE_AUTH_WAIT);
	io_pause(s->io);
	s->vnext = NULL;
	if (smtp_vq_tail != NULL)
		smtp_vq_tail->vnext = s;
	else
		smtp_vq_head = s;
	smtp_vq_tail = s;
	if (!loop_timer_armed(&smtp_verify))
		loop_timer_set(&smtp_verify, 0);
}

/* One Argon2 check per loop pass, so the other sessions move between. */
static void
smtp_on_verify(struct loop_timer *t)
{
	struct smtp_session *s = smtp_vq_head;
	struct smtp_auth *a;
	int ok;

	(void)t;
	if (s == NULL)
		return;
	smtp_auth_unqueue(s);
	if (smtp_vq_head != NULL)
		loop_timer_set(&smtp_verify, 0);
	a = s->auth;
	ok = smtp_users != NULL && auth_users_verify(smtp_users, a->user,
	    a->pass, a->passlen) == AUTH_VERIFY_OK;
	if (ok && smtp_cache != NULL)
		auth_cache_add(smtp_cache, a->user, a->pass, a->passlen,
		    loop_now());
	smtp_enter_state(s, STATE_AUTH);
	smtp_auth_done(s, ok);
	io_resume(s->io);
	smtp_flush(s);
}

static void
smtp_auth_unqueue(struct smtp_session *s)
{
	struct smtp_session **pp, *prev = NULL;

	for (pp = &smtp_vq_head; *pp != NULL; prev = *pp, pp = &(*pp)->vnext)
		if (*pp == s) {
			*pp = s->vnext;
			if (smtp_vq_tail == s)
				smtp_vq_tail = prev;
			s->vnext = NULL;
			return;
		}
}

static void
smtp_auth_done(struct smtp_session *s, int ok)
{
	if (ok) {
		free(s->sasl_user);
		if ((s->sasl_user = strdup(s->auth->user)) == NULL) {
			smtp_auth_stop(s, RP_AUTH_BUSY);
			return;
		}
		s->flags |= SF_AUTH;
		smtp_auth_stop(s, RP_AUTH_OK);
		smtp_ok(s, CMD_AUTH);
		return;
	}
	if (smtp_throttle != NULL)
		auth_throttle_fail(smtp_throttle, s->ip, loop_now());
	/* Postfix's words: fail2ban's postfix-sasl filter matches them. */
	log_warnx(LP_SMTPD, SMTP_SASL_LOG, smtp_peer(s), s->sasl_method,
	    "failed: authentication failure");
	smtp_auth_stop(s, RP_AUTH_FAILED);
}

/* smtp_auth_end(), then the reply: one call at each of five places. */
static void
smtp_auth_stop(struct smtp_session *s, enum smtp_reply r)
{
	smtp_auth_end(s);
	smtp_reply(s, r);
	/* A failed or aborted exchange is an error, as in Postfix: aborts
	 * never reach the throttle, and a loop of them held a slot. */
	if (r == RP_AUTH_FAILED || r == RP_AUTH_ABORTED)
		smtp_error(s);
}

/* Forget the dialogue (and the password) and read commands again. */
static void
smtp_auth_end(struct smtp_session *s)
{
	if (s->auth != NULL) {
		sodium_memzero(s->auth, sizeof(*s->auth));
		free(s->auth);
		s->auth = NULL;
	}
	if (s->state == STATE_AUTH || s->state == STATE_AUTH_WAIT)
		smtp_enter_state(s, STATE_READY);
}

static void
smtp_on_auth_delay(struct loop_timer *t)
{
	struct smtp_session *s = container_of(t, struct smtp_session,
	    auth_delay);

	io_resume(s->io);	/* re-delivers the AUTH line */
}

/* --- end of session --- */

/*
 * Postfix's "lost connection after RCPT from ..." / "timeout after": what
 * the client did last (fail2ban's ddos mode reads it), e.g. EHLO for a
 * client gone silent after its greeting.
 */
static void
smtp_log_lost(struct smtp_session *s, const char *why)
{
	const char *where;
	size_t len;

	if (s->where == WHERE_CONNECT)	/* also smtps before TLS */
		where = "CONNECT";
	else if (s->where == WHERE_DOT)
		where = "END-OF-MESSAGE";
	else
		where = cmd_name((enum cmd_verb)(s->where - 1));
	/* Inside the message Postfix says how much of it came: "after DATA
	 * (N bytes)", the unread rest of the buffer counted too. */
	if (s->state == STATE_DATA) {
		(void)io_in(s->io, &len);
		log_info(LP_SMTPD, "%s after DATA (%llu bytes) from %s", why,
		    (unsigned long long)(s->data_size + len), smtp_peer(s));
		return;
	}
	log_info(LP_SMTPD, "%s after %s from %s", why, where, smtp_peer(s));
}

/* The session is over: log its last line and free it. */
static void
smtp_end(struct smtp_session *s)
{
	smtp_log_disconnect(s);
	smtp_session_free(s);
}

static void
smtp_log_disconnect(struct smtp_session *s)
{
	/*
	 * Postfix's order: its command table, commands it does not know
	 * last.  fail2ban's ddos mode reads "ehlo=1 auth=0/3" and wants no
	 * failed count before auth=.  aligned(1), as answer[] in
	 * smtp_cmd_simple().
	 */
	static const uint8_t order[] __attribute__((aligned(1))) = {
		CMD_HELO, CMD_EHLO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT,
		CMD_DATA, CMD_BDAT, CMD_RSET, CMD_NOOP, CMD_VRFY, CMD_ETRN,
		CMD_QUIT, CMD_HELP, CMD_EXPN, CMD_HTTP, CMD_UNKNOWN,
	};
	_Static_assert(sizeof(order) == CMD_COUNT, "a verb left out");
	char buf[512], all[16];
	size_t off = 0;
	unsigned total = 0, ok = 0, i, j;
	int n;

	for (j = 0; j < CMD_COUNT; j++) {
		char lower[16];
		const char *name;
		size_t k;

		i = order[j];
		if (s->count[i][0] == 0)
			continue;
		name = cmd_name((enum cmd_verb)i);
		total += s->count[i][0];
		ok += s->count[i][1];
		for (k = 0; name[k] && k < sizeof(lower) - 1; k++)
			lower[k] = (char)(name[k] | 0x20);
		lower[k] = '\0';
		/* "ehlo=1", or "auth=0/3" (succeeded/seen) when some failed;
		 * one call: the short format ignores the seen count. */
		n = snprintf(buf + off, sizeof(buf) - off,
		    s->count[i][0] == s->count[i][1] ? " %s=%u" : " %s=%u/%u",
		    lower, s->count[i][1], s->count[i][0]);
		if (n < 0 || (size_t)n >= sizeof(buf) - off)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	/* Postfix's "commands=2/3" (succeeded/all) when some failed. */
	all[0] = '\0';
	if (ok != total)
		snprintf(all, sizeof(all), "/%u", total);
	log_info(LP_SMTPD, "disconnect from %s%s commands=%u%s", smtp_peer(s),
	    buf, ok, all);
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
		loop_fd_close(&smtp_listeners[i].lfd);
		loop_timer_cancel(&smtp_listeners[i].pause);
	}
	smtp_nlisteners = 0;
	for (s = smtp_head; s != NULL; s = next) {
		next = s->next;
		if (s->state == STATE_HELO || s->state == STATE_READY) {
			smtp_close(s, RP_SHUTDOWN);
			smtp_flush(s);
		} else if (s->state == STATE_TLS) {
			/* Nothing can be said mid-handshake. */
			smtp_end(s);
		} else if (s->state == STATE_AUTH ||
		    s->state == STATE_AUTH_WAIT) {
			if (s->state == STATE_AUTH_WAIT) {
				smtp_auth_unqueue(s);
				io_resume(s->io);
			}
			smtp_auth_end(s);
			smtp_close(s, RP_SHUTDOWN);
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
