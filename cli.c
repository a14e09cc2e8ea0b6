/*
 * cli.c - the one-shot commands (cli.h): the sendmail interface, mailq,
 * delete and cat.  sendmail reads a message, repairs it with msg.c and
 * submits it over local_socket as a blocking SMTP client with a timeout;
 * when the daemon is not there it writes into maildrop/ instead (-bs
 * then answers the SMTP dialogue itself), and it never reads the queue.
 * mailq, delete and cat use queue.h like the daemon does.  Errors go to
 * stderr prefixed with the command's name; every function returns a
 * sysexits.h code or says otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/x509_crt.h>
#include <sodium.h>

#include "addr.h"
#include "alias.h"
#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "dane.h"
#include "hdr.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "net.h"
#include "queue.h"
#include "reply.h"
#include "smtp.h"
#include "textfile.h"

#define CLI_TIMEOUT_MS	60000	/* per read or write to the daemon */
#define CLI_IO_SIZE	4096
#define CLI_REPLY_MAX	2048	/* reply text kept for stderr */
#define CLI_RLINE_MAX	1024	/* one reply line kept; the rest dropped */
#define CLI_CMD_MAX	600	/* a command: a path is at most 256 */
#define CLI_NAME_MAX	256	/* -F name or GECOS kept */
#define CLI_SHOW_MAX	200	/* an address list quoted in an error */
#define MQ_FLUSH_AT	(64 * 1024)	/* mailq output written out at */
/* Memory bound on a 32-bit router when message_size_limit is huge. */
#define CLI_MSG_HARD_MAX	(SIZE_MAX / 4)
#define CLI_EHLO_NAME	"localhost"
/* -bs alone: a data line, its stuffed dot and CR; a longer one is cut. */
#define SM_LINE_SIZE	(MSG_LINE_MAX + 3)
/* sm_smtp() finds its 503 by counting from RP_NEED_HELO. */
_Static_assert(RP_NEED_MAIL == RP_NEED_HELO + 1 && RP_NEED_RCPT ==
    RP_NEED_HELO + 2 && RP_NESTED_MAIL == RP_NEED_HELO + 3, "smtp.h");
/* cli_addf() formats one line into CLI_IO_SIZE and fails past it. */
_Static_assert(QUEUE_ADDR_MAX + QUEUE_REASON_MAX + 128 <= CLI_IO_SIZE,
    "cli_addf: a mailq line must fit");
/* mq_show() copies a reason whole into an address-sized buffer. */
_Static_assert(QUEUE_REASON_MAX <= QUEUE_ADDR_MAX, "mq_show: a reason");

/* The argument letters of Postfix's sendmail; 'q' takes it only attached. */
#define SM_ARG_OPTS	"ABCFLNORVXbefhopqr"
#define SM_IGNORED	"GIUcimntvx"	/* flags, some handled below */

enum sm_mode { SM_DELIVER, SM_MAILQ, SM_SMTP, SM_NEWALIASES, SM_QUEUE_RUN };
/* -bp -bs -bi: SM_MAILQ, SM_SMTP, SM_NEWALIASES, in order; then -bm. */
#define SM_B_MODES	"psim"

/* How one talk with the daemon ended. */
enum sm_result {
	SR_OK,		/* every batch was accepted (some rcpts refused) */
	SR_DOWN,	/* no daemon, or it went away: maildrop the rest */
	SR_DEFER,	/* a 4xx for the message: maildrop it, after QUIT */
	SR_TEMP,	/* a 4xx to a recipient: EX_TEMPFAIL */
	SR_PERM,	/* a 5xx for the message or sender: EX_DATAERR */
	SR_LOCAL	/* our own failure (memory) */
};

enum rcpt_state { RCPT_PENDING, RCPT_DONE, RCPT_REFUSED };

/* sm_smtp()'s dialogue; the first three count in its 503s. */
enum bs_state { BS_HELO, BS_READY, BS_MAIL, BS_DATA };

struct sm_rcpt {
	char addr[QUEUE_ADDR_MAX];
	uint8_t state;		/* enum rcpt_state */
	uint8_t accepted;	/* 250 to RCPT in the open transaction */
};

struct sm {
	/* Scalars and pointers first, the arrays last: x86-64 reaches
	 * offsets < 128 with a one-byte displacement. */
	const struct config *conf;
	struct sm_rcpt *rcpt;
	size_t nrcpt, cap;
	struct msg_buf msg;	/* the message as submitted, CRLF */
	const char *from_arg;	/* -f / -r */
	const char *fullname;	/* -F */
	const char *where;	/* "argument", "To: header", ... */
	enum sm_mode mode;
	unsigned flags;		/* QF_8BITMIME, QF_SMTPUTF8 */
	int down_errno;		/* why connect failed, for -v */
	uint64_t data_end;	/* -bs: loop_clock() when DATA must end,
				   0 outside it */
	/* Bytes: a store of a constant is 3 bytes shorter. */
	uint8_t extract;	/* -t */
	uint8_t dot_ends;	/* neither -i nor -oi */
	uint8_t verbose;	/* -v */
	uint8_t rcpt_usage;	/* a bad address is EX_USAGE, else DATAERR */
	uint8_t addr_bad;
	uint8_t qtime;		/* -q1h: Postfix ignores the run */
	char sender[QUEUE_ADDR_MAX];
	char gecos[CLI_NAME_MAX];
	char id[QUEUE_ID_SIZE];		/* the last message's, for -bs */
	char down_reply[CLI_REPLY_MAX];	/* the 4xx that sent it to
					   maildrop/, for -v */
};

/* A blocking SMTP client connection with a buffered reader. */
struct conn {
	int fd;
	unsigned ext;			/* REPLY_EXT_* from EHLO */
	size_t off, len;
	size_t tlen;
	char text[CLI_REPLY_MAX];	/* the last reply, lines split by \n */
	char buf[CLI_IO_SIZE];
};

/* mailq's walk. */
struct mq {
	int json;
	unsigned long n;
	uint64_t bytes;
	struct msg_buf out;
	int werr;			/* errno of a failed write, or 0 */
};

/* delete all: the ids first, then the deletes. */
struct idlist {
	char (*id)[QUEUE_ID_SIZE];
	size_t n, cap;
};

static void sm_say(const char *) __attribute__((noinline));
static void sm_nomem(void) __attribute__((noinline));
static int sm_options(struct sm *, int, char **, int *);
/* always_inline here and on sm_read(), sm_relay_smtp(), sm_smtp() and
 * mq_plain(), noinline on sm_qualify() and sm_smtp_data(): each measured
 * smaller than what LTO chose for it. */
static inline int sm_set_sender(struct sm *) __attribute__((always_inline));
static int sm_add_addr(void *, const char *, size_t);
static int sm_add_list(struct sm *, const char *, size_t, const char *);
static inline int sm_read(struct sm *) __attribute__((always_inline));
static size_t sm_limit(const struct config *) __attribute__((noinline));
static int sm_prepare(struct sm *);
static int sm_qualify(struct sm *, struct msg_head *)
    __attribute__((noinline));
static int sm_extract(struct sm *, const char *, const struct msg_head *,
    unsigned);
static int sm_add_headers(struct sm *, struct msg_buf *, unsigned);
static int sm_deliver(struct sm *);
static enum sm_result sm_session(struct sm *);
static enum sm_result sm_fail(struct sm *, struct conn *, int);
static enum sm_result sm_transaction(struct sm *, struct conn *, size_t,
    size_t *, const struct msg_buf *);
static int sm_maildrop(struct sm *);
static inline int sm_relay_smtp(const struct config *)
    __attribute__((always_inline));
static inline int sm_smtp(struct sm *) __attribute__((always_inline));
static int sm_smtp_data(struct sm *, struct conn *, char *)
    __attribute__((noinline));
static int sm_line(struct sm *, struct conn *, char *);
static int sm_getc(struct sm *, struct conn *);
static void sm_reply(int, const char *) __attribute__((noinline));
static int cli_connect(const char *);
static int conn_wait(int, short, uint64_t);
static int conn_getc(struct conn *);
static int conn_reply(struct conn *);
static int conn_cmd(struct conn *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static void conn_print(const struct conn *);
static int write_all(int, const char *, size_t);
static int cli_queue_open(const struct config *, const char *);
static int mq_one(const struct queue_info *, void *);
static int mq_json(struct mq *, const struct queue_info *);
static int mq_jstr(struct msg_buf *, const char *);
static inline int mq_plain(struct mq *, const struct queue_info *)
    __attribute__((always_inline));
static void mq_date(uint64_t, char *, size_t);
static const char *mq_show(char *, const char *);
static const char *mq_queue_name(const struct queue_info *);
static int cli_addf(struct msg_buf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static int del_one(const char *);
static int del_collect(const struct queue_info *, void *);

/* --- sendmail --- */

char *const *cli_environ;	/* main() sets it (cli.h) */

int
cli_sendmail(const struct config *conf, int argc, char **argv)
{
	char *mq_argv[] = { "mailq", NULL };
	struct sm *sm;
	int rc, first = 0;	/* set by sm_options() when it returns EX_OK */

	/* A one-shot client: a closed socket or stdout is an error to
	 * report, not a reason to die without a word. */
	loop_sigpipe_ignore();
	if ((sm = calloc(1, sizeof(*sm))) == NULL) {
		sm_nomem();
		return EX_OSERR;
	}
	sm->conf = conf;
	sm->dot_ends = 1;
	if ((rc = sm_options(sm, argc, argv, &first)) != EX_OK || sm->qtime)
		goto done;
	switch (sm->mode) {
	case SM_MAILQ:
		rc = cli_mailq(conf, 1, mq_argv);
		goto done;
	case SM_SMTP:
		if ((rc = sm_relay_smtp(conf)) != EX_TEMPFAIL)
			goto done;
		sm->down_errno = errno;	/* for sm_maildrop()'s words */
		break;		/* no daemon: sm_smtp() below */
	case SM_QUEUE_RUN:
		rc = cli_flush(conf, argc, argv);
		goto done;
	case SM_NEWALIASES:
		rc = cli_newaliases(conf);
		goto done;
	case SM_DELIVER:
		break;
	}
	if (sodium_init() < 0) {
		sm_say("cannot initialise libsodium");
		rc = EX_SOFTWARE;
		goto done;
	}
	if ((rc = sm_set_sender(sm)) != EX_OK)
		goto done;
	if (sm->mode == SM_SMTP) {
		rc = sm_smtp(sm);
		goto done;
	}
	sm->rcpt_usage = 1;
	for (; first < argc; first++)
		if ((rc = sm_add_list(sm, argv[first], strlen(argv[first]),
		    "recipient")) != EX_OK)
			goto done;
	sm->rcpt_usage = 0;
	/* Like sendmail and Postfix: say so before waiting on stdin. */
	if (!sm->extract && sm->nrcpt == 0) {
		sm_say("no recipient addresses given");
		rc = EX_USAGE;
		goto done;
	}
	if ((rc = sm_read(sm)) != EX_OK || (rc = sm_prepare(sm)) != EX_OK)
		goto done;
	rc = sm_deliver(sm);
done:
	msg_buf_free(&sm->msg);
	free(sm->rcpt);
	free(sm);
	return rc;
}

/* sendmail's constant messages: a call with one argument instead of
 * log_cli()'s two and its varargs set-up at each place. */
static void
sm_say(const char *what)
{
	log_cli("sendmail", "%s", what);
}

static void
sm_nomem(void)
{
	sm_say("out of memory");
}

/*
 * getopt-like, Postfix's letters: flags may be bundled ("-ti"); an option
 * with an argument takes the rest of the word or the next word.  Options
 * stop at the first non-option or "--".  cron passes "-FCronDaemon -i
 * -B8BITMIME -oem", mutt "-oem -oi --": all accepted.
 */
static int
sm_options(struct sm *sm, int argc, char **argv, int *first)
{
	const char *a, *arg, *m;
	size_t j;
	int i;
	char o;

	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		for (j = 1; a[j] != '\0'; j++) {
			o = a[j];
			if (strchr(SM_ARG_OPTS, o) != NULL) {
				if (a[j + 1] != '\0')
					arg = a + j + 1;
				else if (o == 'q')
					arg = "";
				else if (i + 1 < argc)
					arg = argv[++i];
				else {
					log_cli("sendmail", "option "
					    "requires an argument -- %c", o);
					return EX_USAGE;
				}
				switch (o) {
				case 'f':
				case 'r':
					sm->from_arg = arg;
					break;
				case 'F':
					sm->fullname = arg;
					break;
				case 'o':
					if (arg[0] == 'i' && arg[1] == '\0')
						sm->dot_ends = 0;
					break;	/* -oem, -oQ... : ignored */
				case 'q':
					/* An interval is the daemon's to keep.
					 * -qRsite and -qIqueueid run it all, as
					 * -q does (ETRN *); Postfix's words for
					 * the rest. */
					if (arg[0] >= '0' && arg[0] <= '9')
						sm->qtime = 1;
					else if (arg[0] == '\0' || (arg[1] !=
					    '\0' && (arg[0] == 'R' ||
					    arg[0] == 'I')))
						sm->mode = SM_QUEUE_RUN;
					else {
						if (arg[0] == 'R')
							sm_say("specify: "
							    "-qRsitename");
						else if (arg[0] == 'I')
							sm_say("specify: "
							    "-qIqueueid");
						else
							log_cli("sendmail",
							    "-q%c is not "
							    "implemented",
							    arg[0]);
						return EX_USAGE;
					}
					break;
				case 'b':
					/* -bm (deliver) keeps the mode. */
					if (arg[0] == '\0' || arg[1] != '\0' ||
					    (m = strchr(SM_B_MODES, arg[0])) ==
					    NULL) {
						log_cli("sendmail", "-b%s "
						    "is not supported", arg);
						return EX_USAGE;
					}
					if (*m != 'm')
						sm->mode = (enum sm_mode)
						    (m - SM_B_MODES + 1);
					break;
				default:	/* -B -N -R -V -X -C -L -O -h... */
					break;
				}
				break;	/* the rest of the word was arg */
			}
			if (strchr(SM_IGNORED, o) == NULL) {
				log_cli("sendmail", "illegal option -- "
				    "%c", o);
				return EX_USAGE;
			}
			if (o == 't')
				sm->extract = 1;
			else if (o == 'i')
				sm->dot_ends = 0;
			else if (o == 'v')
				sm->verbose = 1;
			else if (o == 'I')
				sm->mode = SM_NEWALIASES;	/* as -bi */
		}
	}
	*first = i;
	return EX_OK;
}

/* Default envelope sender: the real uid's login, qualified (§ DESIGN). */
static int
sm_set_sender(struct sm *sm)
{
	const struct passwd *pw = getpwuid(getuid());
	char login[QUEUE_ADDR_MAX], quoted[2 * QUEUE_ADDR_MAX + 2];
	const char *g, *l, *from = sm->from_arg;
	size_t n;
	int quote;

	if (pw != NULL && pw->pw_name[0] != '\0')
		textfile_copy(login, sizeof(login), pw->pw_name);
	else
		snprintf(login, sizeof(login), "uid%lu",
		    (unsigned long)getuid());
	/* The full-name part, before the first ','; "&" stands for the
	 * login capitalised (BSD's convention, which Postfix keeps). */
	for (g = pw != NULL && pw->pw_gecos != NULL ? pw->pw_gecos : "", n = 0;
	    *g != '\0' && *g != ',' && n + 1 < sizeof(sm->gecos); g++) {
		if (*g != '&') {
			sm->gecos[n++] = *g;
			continue;
		}
		for (l = login; *l != '\0' && n + 1 < sizeof(sm->gecos); l++)
			sm->gecos[n++] = l == login && *l >= 'a' && *l <= 'z' ?
			    (char)(*l - 'a' + 'A') : *l;	/* cut at the end */
	}
	sm->gecos[n] = '\0';
	/* -f "" and -f "<>": the null sender (bounces). */
	if (from != NULL && (from[0] == '\0' || strcmp(from, "<>") == 0)) {
		sm->sender[0] = '\0';
		return EX_OK;
	}
	/*
	 * No -f: the login, checked as -f is.  sssd's "jdoe@ad.example"
	 * keeps its domain; a login no local part can be bare (winbind's
	 * "AD\jdoe", "j doe") is quoted, as Postfix quotes it.  Unchecked,
	 * the daemon refused it after the message was read, and with the
	 * daemon down pickup moved it from maildrop/ to corrupt/ after an
	 * exit 0.
	 */
	if (from == NULL) {
		quoted[0] = '"';
		for (l = login, n = 1, quote = 0; *l != '\0'; l++) {
			if (*l == '"' || *l == '\\')
				quoted[n++] = '\\';
			quote |= strchr(" \"(),:;<>[\\]", *l) != NULL;
			quoted[n++] = *l;
		}
		memcpy(quoted + n, "\"", 2);
		from = quote ? quoted : login;
	}
	sm->rcpt_usage = 1;
	if (sm_add_list(sm, from, strlen(from), "sender") != EX_OK)
		return EX_USAGE;
	if (sm->nrcpt != 1) {
		sm_say("-f takes one address");
		return EX_USAGE;
	}
	memcpy(sm->sender, sm->rcpt[0].addr, sizeof(sm->sender));
	sm->nrcpt = 0;
	return EX_OK;
}

/*
 * msg_addr_list's callback: qualify a bare "root" with @origin, check the
 * RFC 5321 syntax the daemon will check (so maildrop gets nothing it
 * would refuse), drop duplicates.  Any 8-bit address needs SMTPUTF8.
 */
static int
sm_add_addr(void *arg, const char *addr, size_t end)
{
	struct sm *sm = arg;
	char path[QUEUE_ADDR_MAX + CONFIG_NAME_MAX + 4], out[ADDR_PATH_MAX];
	const char *why;
	struct sm_rcpt *grown;
	size_t i, cap;
	int n;

	(void)end;
	if (addr[0] == '\0')
		return 0;	/* "<>" in a header: nobody */
	if (addr_domain(addr) == NULL)
		n = snprintf(path, sizeof(path), "<%s@%s>", addr,
		    sm->conf->origin);
	else
		n = snprintf(path, sizeof(path), "<%s>", addr);
	if (n < 0 || (size_t)n >= sizeof(path) ||
	    addr_parse_path(path, (size_t)n, ADDR_UTF8 | ADDR_ALONE, out,
	    sizeof(out), &why) < 0) {
		if (n < 0 || (size_t)n >= sizeof(path))
			why = "address too long";
		log_cli("sendmail", "bad %s address: %s: %s",
		    sm->where, addr, why);
		sm->addr_bad = 1;
		return -1;
	}
	if (msg_has_8bit(out, strlen(out)))
		sm->flags |= QF_SMTPUTF8;
	for (i = 0; i < sm->nrcpt; i++)
		if (addr_casecmp(sm->rcpt[i].addr, out) == 0)
			return 0;	/* as the daemon's addr_list_has() */
	if (sm->nrcpt == QUEUE_MAX_RCPT) {
		log_cli("sendmail", "too many recipients (at most %d)",
		    QUEUE_MAX_RCPT);
		sm->addr_bad = 1;
		return -1;
	}
	if (sm->nrcpt == sm->cap) {
		cap = sm->cap ? sm->cap * 2 : 8;
		if ((grown = realloc(sm->rcpt, cap * sizeof(*grown))) == NULL) {
			sm_nomem();
			return -1;
		}
		sm->rcpt = grown;
		sm->cap = cap;
	}
	memset(&sm->rcpt[sm->nrcpt], 0, sizeof(sm->rcpt[0]));
	memcpy(sm->rcpt[sm->nrcpt].addr, out, strlen(out) + 1);
	sm->nrcpt++;
	return 0;
}

/* An argument or header value is an address list, as in Postfix. */
static int
sm_add_list(struct sm *sm, const char *s, size_t n, const char *where)
{
	char shown[CLI_SHOW_MAX];
	const char *why;
	size_t i, k = 0;

	sm->where = where;
	sm->addr_bad = 0;
	if (msg_addr_list(s, n, sm_add_addr, sm, &why) == 0)
		return EX_OK;
	if (why != NULL) {
		/* A header value: unfold it, and no control bytes to the
		 * terminal. */
		for (i = 0; i < n && k + 1 < sizeof(shown); i++) {
			if (s[i] == '\r' || s[i] == '\n')
				continue;
			if (k == 0 && (s[i] == ' ' || s[i] == '\t'))
				continue;
			shown[k++] = (unsigned char)s[i] < 0x20 ||
			    s[i] == 0x7f ? '?' : s[i];
		}
		shown[k] = '\0';
		log_cli("sendmail", "bad %s address list: %s: %s",
		    where, shown, why);
	}
	if (why == NULL && !sm->addr_bad)
		return EX_OSERR;	/* out of memory, said above */
	return sm->rcpt_usage ? EX_USAGE : EX_DATAERR;
}

/* stdin to CRLF lines, up to message_size_limit. */
static int
sm_read(struct sm *sm)
{
	struct msg_reader r;
	char buf[CLI_IO_SIZE];
	ssize_t n;
	int rc = EX_OK;

	msg_reader_init(&r, sm->dot_ends, sm_limit(sm->conf));
	while (!r.ended && !r.over) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			log_cli("sendmail", "reading the message: %s",
			    log_errstr());
			rc = EX_IOERR;
			goto done;
		}
		if (n == 0)
			break;
		if (msg_reader_feed(&r, buf, (size_t)n) == -1)
			goto nomem;
	}
	if (msg_reader_end(&r) == -1)
		goto nomem;
	if (r.over) {
		log_cli("sendmail", "message too large: the limit "
		    "(message_size_limit) is %" PRIu64 " bytes",
		    sm->conf->message_size_limit);
		rc = EX_DATAERR;
		goto done;
	}
	sm->msg = r.out;
	r.out.p = NULL;
	goto done;
nomem:
	sm_nomem();
	rc = EX_OSERR;
done:
	msg_buf_free(&r.out);
	return rc;
}

/* message_size_limit as a memory bound (0: none). */
static size_t
sm_limit(const struct config *conf)
{
	uint64_t lim = conf->message_size_limit;

	return lim == 0 || lim > CLI_MSG_HARD_MAX ? CLI_MSG_HARD_MAX :
	    (size_t)lim;
}

/* sm_qualify()'s result: what the message has, in the order of its
 * names. */
#define H_DATE		0x1u
#define H_MSGID		0x2u
#define H_FROM		0x4u
#define H_RESENT	0x100u	/* a Resent- block: its own three instead */

/*
 * Recipients from the headers (-t), the headers a message must have
 * (RFC 5322 §3.6: From and Date; Message-ID SHOULD), Bcc removed, lines
 * repaired; then the size and 8-bit checks on what will really be sent.
 */
static int
sm_prepare(struct sm *sm)
{
	struct msg_buf add = { NULL, 0, 0 }, out = { NULL, 0, 0 };
	struct msg_head h;
	uint64_t lim = sm->conf->message_size_limit;
	int rc, seen;

	msg_head_scan(sm->msg.p, sm->msg.len, &h);
	if ((seen = sm_qualify(sm, &h)) == -1) {
		sm_nomem();
		rc = EX_OSERR;
		goto done;
	}
	if (sm->extract && (rc = sm_extract(sm, sm->msg.p, &h,
	    seen & H_RESENT)) != EX_OK)
		goto done;
	if (sm->nrcpt == 0) {
		sm_say("no recipient addresses found in the message "
		    "headers");
		rc = EX_USAGE;
		goto done;
	}
	rc = EX_OSERR;
	if (sm_add_headers(sm, &add, (unsigned)seen) == -1 ||
	    msg_build(&out, sm->msg.p, sm->msg.len, &h, add.p, add.len,
	    1) == -1) {
		sm_nomem();
		goto done;
	}
	if (lim != 0 && out.len > lim) {
		log_cli("sendmail", "message too large: %zu bytes, the "
		    "limit (message_size_limit) is %" PRIu64 " bytes",
		    out.len, lim);
		rc = EX_DATAERR;
		goto done;
	}
	if (msg_has_8bit(out.p, out.len))
		sm->flags |= QF_8BITMIME;
	msg_buf_free(&sm->msg);
	sm->msg = out;
	out.p = NULL;
	rc = EX_OK;
done:
	msg_buf_free(&add);
	msg_buf_free(&out);
	return rc;
}

/*
 * Postfix's append_at_myorigin for local mail: "root" in From: or To:
 * becomes root@origin, so that the next MTA does not refuse a From:
 * without a domain (cron, mdadm and mail(1) all write "root").  The
 * Resent- forms are the tails' too.  h is scanned again.  Returns -1,
 * or the H_ bits of what the message has: with a Resent- field of
 * those (RFC 5322 §3.6.6; as Postfix's cleanup counts them) the
 * Resent- Date, Message-ID and From with H_RESENT, as those are then
 * the ones owed.
 */
static int
sm_qualify(struct sm *sm, struct msg_head *h)
{
	/* One string, not a table of pointers: each costs RELRO too.  The
	 * first two are only noted; Bcc goes (msg_build()) but counts. */
	static const char names[] = "Date\0Message-ID\0From\0Sender\0"
	    "Reply-To\0To\0Cc\0Bcc\0";
	struct msg_buf out = { NULL, 0, 0 };
	const char *b = sm->msg.p, *k;
	struct msg_field f, g;
	unsigned seen[2] = { 0, 0 }, j, rs;
	size_t pos;

	_Static_assert(H_DATE == 1u << 0 && H_MSGID == 1u << 1 &&
	    H_FROM == 1u << 2, "names[] is in the order of the bits");
	if (msg_buf_add(&out, b, h->start) == -1)
		goto fail;
	for (pos = h->start; msg_field_next(b, h->end, &pos, &f); ) {
		g = f;
		rs = (unsigned)msg_field_resent(b, &g);
		for (k = names, j = 0; *k != '\0' && !msg_field_is(b, &g, k);
		    k += strlen(k) + 1, j++)
			;
		if (*k != '\0')
			seen[rs] |= 1u << j;
		if (*k == '\0' || j < 2) {
			if (msg_buf_add(&out, b + f.start, f.end - f.start) == -1)
				goto fail;
		} else if (msg_buf_add(&out, b + f.start, f.value - f.start) ==
		    -1 || msg_qualify(&out, b + f.value, f.end - f.value,
		    sm->conf->origin) == -1)
			goto fail;
	}
	if (msg_buf_add(&out, b + h->end, sm->msg.len - h->end) == -1)
		goto fail;
	msg_buf_free(&sm->msg);
	sm->msg = out;
	msg_head_scan(sm->msg.p, sm->msg.len, h);
	return (int)(seen[1] != 0 ? seen[1] | H_RESENT : seen[0]);
fail:
	msg_buf_free(&out);
	return -1;
}

/* -t: To, Cc, Bcc - or, in a resent message (sm_qualify()'s H_RESENT:
 * any Resent- field Postfix knows, Resent-From alone too), only the
 * Resent- ones, as Postfix's cleanup takes them. */
static int
sm_extract(struct sm *sm, const char *b, const struct msg_head *h,
    unsigned resent)
{
	/* The plain names are the tails of the Resent- ones. */
	static const char names[] = "Resent-To\0Resent-Cc\0Resent-Bcc";
	size_t skip = resent ? 0 : sizeof("Resent-") - 1;
	struct msg_field f;
	const char *name;
	size_t pos, i;
	int rc;

	for (pos = h->start; msg_field_next(b, h->end, &pos, &f); )
		for (i = 0; i < 3; i++) {
			name = textfile_nth(names, i) + skip;
			if (msg_field_is(b, &f, name) && (rc = sm_add_list(sm,
			    b + f.value, f.end - f.value, name)) != EX_OK)
				return rc;
		}
	return EX_OK;
}

/* From:, Date:, Message-ID: for what the message lacks; with H_RESENT
 * the Resent- ones. */
static int
sm_add_headers(struct sm *sm, struct msg_buf *add, unsigned seen)
{
	char line[HDR_DATE_MAX + CONFIG_NAME_MAX + 64];
	char *const *env = cli_environ;
	const char *name = sm->fullname;
	size_t pre = seen & H_RESENT ? 7 : 0, len;
	unsigned i;
	int n;

	/* The name from -F, else $NAME (not trusted in a set-id entry),
	 * else GECOS: Postfix's order.  "From: Name <addr>", or "From:
	 * <addr>" with no name (as the daemon writes it for -bs); for <>
	 * the daemon's, with no name. */
	if (name == NULL && (env == NULL ||
	    (name = config_env_find(env, "NAME")) == NULL))
		name = sm->gecos;
	/* Cut as GECOS is: a longer -F or $NAME made a From: line over
	 * 998 octets, which the daemon refused (exit 65, nothing queued). */
	len = textfile_strnlen(name, CLI_NAME_MAX - 1);
	if (!(seen & H_FROM) && (msg_buf_add(add, "Resent-", pre) == -1 ||
	    (sm->sender[0] == '\0' ?
	    cli_addf(add, SMTP_FROM_NULL, sm->conf->origin) == -1 :
	    (cli_addf(add, "From: ") == -1 || (name[0] != '\0' &&
	    msg_phrase(add, name, len) == -1) ||
	    cli_addf(add, &" <%s>\r\n"[name[0] == '\0'], sm->sender) == -1))))
		return -1;
	/* One at a time, each after the prefix that line holds. */
	memcpy(line, "Resent-", 7);
	for (i = H_DATE; i <= H_MSGID; i <<= 1)
		if (!(seen & i) && ((n = hdr_missing(line + 7,
		    sizeof(line) - 7, i == H_DATE, i == H_MSGID,
		    sm->conf->hostname, loop_now_real(), NULL)) < 0 ||
		    msg_buf_add(add, line + 7 - pre, (size_t)n + pre) == -1))
			return -1;
	return 0;
}

/*
 * Submit over the socket; whatever the daemon did not take because it is
 * not there, went away or said 4xx to the message (the disk near full:
 * the pickup waits for room) goes to maildrop/, silently: cron must not
 * mail about mail, and Postfix's sendmail never asks the daemon at all.
 * A 4xx to a recipient (an alias error) is that address's: maildrop/
 * would not cure it, so it is said and exits 75.  A duplicate is
 * possible if the daemon died after the final dot and before its 250; a
 * loss is not.
 */
static int
sm_deliver(struct sm *sm)
{
	enum sm_result r = sm_session(sm);
	size_t i;
	int refused = 0;

	for (i = 0; i < sm->nrcpt; i++)
		if (sm->rcpt[i].state == RCPT_REFUSED)
			refused = 1;
	switch (r) {
	case SR_OK:
		break;
	case SR_DOWN:
	case SR_DEFER:
		for (i = 0; i < sm->nrcpt; i++)
			if (sm->rcpt[i].state == RCPT_PENDING)
				break;
		if (i < sm->nrcpt && sm_maildrop(sm) == -1)
			return EX_TEMPFAIL;
		break;
	case SR_TEMP:
		return EX_TEMPFAIL;
	case SR_PERM:
		return EX_DATAERR;
	case SR_LOCAL:
		return EX_OSERR;
	}
	return refused ? EX_NOUSER : EX_OK;
}

/*
 * One connection, batches of max_recipients recipients (the daemon's
 * 452 would cut the rest off), one transaction each.  The replies are
 * read one by one: one-shot, so blocking with a timeout is fine here.
 */
static enum sm_result
sm_session(struct sm *sm)
{
	struct msg_buf data = { NULL, 0, 0 };
	struct conn *c;
	enum sm_result r = SR_OK;
	size_t batch = sm->conf->max_recipients ? sm->conf->max_recipients :
	    QUEUE_MAX_RCPT, i, end;
	int code;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SR_LOCAL;
	if ((c->fd = cli_connect(sm->conf->local_socket)) == -1) {
		sm->down_errno = errno;
		free(c);
		return SR_DOWN;
	}
	if ((code = conn_reply(c)) != 220) {
		r = sm_fail(sm, c, code);
		goto quit;
	}
	if ((code = conn_cmd(c, "EHLO %s\r\n", CLI_EHLO_NAME)) != 250) {
		r = sm_fail(sm, c, code);
		goto quit;
	}
	if (msg_dot_stuff(&data, sm->msg.p, sm->msg.len) == -1) {
		sm_nomem();
		r = SR_LOCAL;
		goto quit;
	}
	for (i = 0; i < sm->nrcpt && r == SR_OK; i = end) {
		end = sm->nrcpt - i > batch ? i + batch : sm->nrcpt;
		r = sm_transaction(sm, c, i, &end, &data);
	}
quit:
	if (r != SR_DOWN)
		(void)conn_cmd(c, "QUIT\r\n");	/* done either way */
	/* Read-only from here on: nothing is lost if close fails. */
	(void)close(c->fd);
	msg_buf_free(&data);
	free(c);
	return r;
}

/* Classify a reply that was not the one hoped for; say a 5xx. */
static enum sm_result
sm_fail(struct sm *sm, struct conn *c, int code)
{
	if (code < 0)
		return SR_DOWN;		/* EOF, timeout: it went away */
	if (code < 500 || code >= 600) {
		snprintf(sm->down_reply, sizeof(sm->down_reply), "%.*s",
		    (int)c->tlen, c->text);
		return code == 421 ? SR_DOWN : SR_DEFER;
	}
	conn_print(c);
	return SR_PERM;
}

/* *to is cut back when the daemon takes fewer recipients than sent. */
static enum sm_result
sm_transaction(struct sm *sm, struct conn *c, size_t from, size_t *to,
    const struct msg_buf *data)
{
	char size[32] = "";
	size_t i, acc = 0;
	int code;

	if (c->ext & REPLY_EXT_SIZE)
		(void)snprintf(size, sizeof(size), " SIZE=%zu", sm->msg.len);
	code = conn_cmd(c, "MAIL FROM:<%s>%s%s%s\r\n", sm->sender,
	    (sm->flags & QF_8BITMIME) && (c->ext & REPLY_EXT_8BITMIME) ?
	    " BODY=8BITMIME" : "", (sm->flags & QF_SMTPUTF8) &&
	    (c->ext & REPLY_EXT_SMTPUTF8) ? " SMTPUTF8" : "", size);
	if (code != 250)
		return sm_fail(sm, c, code);
	for (i = from; i < *to; i++) {
		code = conn_cmd(c, "RCPT TO:<%s>\r\n", sm->rcpt[i].addr);
		if (code == 250 || code == 251) {
			sm->rcpt[i].accepted = 1;
			acc++;
		} else if (code == 452 && acc > 0) {
			/* Full after alias expansion: these now, the rest
			 * in the next transaction (RFC 5321 4.5.3.1.10). */
			*to = i;
			break;
		} else if (code >= 500 && code < 600) {
			/* Refuse this one, keep the others (Postfix bounces
			 * it later; we can say it now). */
			conn_print(c);
			sm->rcpt[i].state = RCPT_REFUSED;
		} else if (code >= 400 && code != 421) {
			conn_print(c);
			return SR_TEMP;
		} else
			return sm_fail(sm, c, code);
	}
	if (acc == 0) {
		code = conn_cmd(c, "RSET\r\n");
		return code == 250 ? SR_OK : sm_fail(sm, c, code);
	}
	if ((code = conn_cmd(c, "DATA\r\n")) != 354)
		return sm_fail(sm, c, code);
	if (write_all(c->fd, data->p, data->len) == -1)
		return SR_DOWN;
	/* Any 2xx: queued (maildrop/ would make it twice). */
	if ((code = conn_reply(c)) / 100 != 2)
		return sm_fail(sm, c, code);
	for (i = from; i < *to; i++)
		if (sm->rcpt[i].accepted)
			sm->rcpt[i].state = RCPT_DONE;
	if (sm->verbose)
		log_cli("sendmail", "%.*s", (int)c->tlen, c->text);
	return SR_OK;
}

/*
 * The daemon is down or refused: the message goes into maildrop/ (3733,
 * so any user may add but not read), the body as CRLF text, not
 * dot-stuffed.  The daemon picks it up when it starts.  queue_open() on a
 * queue_dir we cannot read leaves the writer usable for maildrop/ only.
 * The queue's reserve holds here too: a 452 4.3.1 must not send a big
 * message into the space the daemon keeps for state updates and bounces.
 */
static int
sm_maildrop(struct sm *sm)
{
	char why[CLI_REPLY_MAX + 64];
	struct queue_writer *w;
	size_t i;
	int e;

	if (sm->down_reply[0] != '\0')
		snprintf(why, sizeof(why), "the mail daemon answered \"%s\"",
		    sm->down_reply);
	else
		snprintf(why, sizeof(why), "the mail daemon is not reachable "
		    "(%s)", sm->down_errno ? strerror(sm->down_errno) :
		    "connection lost");
	if (queue_open(sm->conf->queue_dir) == -1)
		goto fail;
	if (!queue_space_ok(sm->msg.len)) {
		errno = ENOSPC;
		goto fail;
	}
	w = queue_writer_new("maildrop", sm->sender, sm->flags, getuid(),
	    "local");
	if (w == NULL)
		goto fail;
	for (i = 0; i < sm->nrcpt; i++)
		if (sm->rcpt[i].state == RCPT_PENDING &&
		    queue_writer_rcpt(w, sm->rcpt[i].addr) == -1)
			goto abort;
	if (queue_writer_body(w, sm->msg.p, sm->msg.len) == -1 ||
	    queue_writer_finish(w) == -1)
		goto abort;
	memcpy(sm->id, queue_writer_id(w), sizeof(sm->id));
	if (queue_commit_now(w) == -1)	/* frees w either way */
		goto fail;
	if (sm->verbose)
		log_cli("sendmail", "%s; queued in maildrop as %s", why,
		    sm->id);
	return 0;
abort:
	e = errno;
	queue_writer_abort(w);
	errno = e;
fail:
	log_cli("sendmail", "%s and writing to %s/maildrop failed: %s",
	    why, sm->conf->queue_dir, log_errstr());
	return -1;
}

/*
 * -bs: SMTP on stdin/stdout, relayed to the daemon until either side
 * closes.  What the user types gets CRLF line ends (the daemon refuses
 * bare LF); the daemon's bytes pass untouched.  EX_TEMPFAIL: no daemon,
 * nothing read.
 */
static int
sm_relay_smtp(const struct config *conf)
{
	struct pollfd pfd[2];
	struct msg_reader r;
	char buf[CLI_IO_SIZE];
	ssize_t n;
	int fd, rc = EX_OK, in_open = 1;

	if ((fd = cli_connect(conf->local_socket)) == -1)
		return EX_TEMPFAIL;
	msg_reader_init(&r, 0, SIZE_MAX);
	for (;;) {
		pfd[0].fd = in_open ? STDIN_FILENO : -1;
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			rc = EX_OSERR;
			break;
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(fd, buf, sizeof(buf));
			if (n == -1 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				break;		/* the daemon closed: done */
			if (write_all(STDOUT_FILENO, buf, (size_t)n) == -1)
				break;		/* the user went away */
		}
		if (in_open && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_open = 0;
				(void)shutdown(fd, SHUT_WR);
				continue;
			}
			r.out.len = r.line_start = 0;
			if (msg_reader_feed(&r, buf, (size_t)n) == -1) {
				rc = EX_OSERR;
				break;
			}
			if (write_all(fd, r.out.p, r.out.len) == -1) {
				/* The daemon closed on us; its last words
				 * may still be waiting to be read. */
				in_open = 0;
			}
		}
	}
	msg_buf_free(&r.out);
	/* Read/written streams only: a close error loses nothing. */
	(void)close(fd);
	return rc;
}

/*
 * -bs with no daemon (stopped, or restarting): Symfony Mailer and Laravel
 * talk SMTP to "sendmail -bs", and would get an error where every other
 * mode leaves the mail in maildrop/.  So the dialogue is answered here,
 * as Postfix's sendmail -bs runs smtpd -S: the daemon's parsers, limits
 * and words; each message is made up as the argument path makes one
 * (sm_prepare) and goes into maildrop/.  The input is a local user's:
 * lines are cut at SM_LINE_SIZE, the message at message_size_limit.
 */
static int
sm_smtp(struct sm *sm)
{
	const struct config *conf = sm->conf;
	struct conn in;
	struct cmd c;
	struct cmd_params p;
	char line[SM_LINE_SIZE + 2], addr[ADDR_PATH_MAX];
	const char *why;
	enum bs_state state = BS_HELO;
	size_t i;
	int n, rp, seq, mail, tried = 0, errors = 0, junk = 0, over = 0;

	memset(&in, 0, sizeof(in));	/* fd 0: stdin */
	sm->fullname = "";	/* From: the envelope sender alone, as the
				   daemon's is */
	sm->where = "SMTP";	/* in sm_add_addr()'s complaints */
	printf("220 %s ESMTP ferry\r\n", conf->hostname);
	for (;;) {
		if (state == BS_DATA) {		/* after the 354 */
			if ((n = sm_smtp_data(sm, &in, line)) < 0)
				break;
			rp = n;
			why = sm->id;
			state = BS_READY;
			if (rp == RP_QUEUED)
				junk = 0;	/* as the daemon counts */
			goto say;	/* no data-phase refusal is an error */
		}
		if ((n = sm_line(sm, &in, line)) < 0)
			break;
		if (state != BS_MAIL) {		/* no transaction */
			sm->nrcpt = 0;
			sm->flags = 0;
			over = 0;
		}
		why = conf->hostname;
		rp = RP_LINE_TOO_LONG;
		if (n > CMD_LINE_MAX - 2)
			goto reply;
		rp = RP_SYNTAX;
		if (cmd_parse(line, (size_t)n, &c) == -1)
			goto reply;
		/* The daemon's check, before its handlers (a recipient is
		 * in only in BS_MAIL: reset above). */
		if (smtp_no_arg(&c, sm->nrcpt != 0)) {
			rp = RP_NO_ARG;
			why = cmd_name(c.verb);
			goto reply;
		}
		mail = c.verb == CMD_MAIL;
		/* Out of order: HELO, MAIL or RCPT is missing, or MAIL is
		 * nested. */
		seq = RP_NEED_HELO + (int)state + (mail && state == BS_MAIL);
		switch (c.verb) {
		case CMD_EHLO:
		case CMD_HELO:
			/* The daemon's smtp_helo_arg(): a first word, not
			 * too long. */
			rp = RP_HELO_SYNTAX;
			why = cmd_name(c.verb);
			/* strspn() by hand: one import less. */
			for (i = 0; i < c.arglen && (c.arg[i] == ' ' ||
			    c.arg[i] == '\t'); i++)
				;
			if (c.arglen > SMTP_HELO_MAX || i == c.arglen)
				break;
			why = conf->hostname;
			state = BS_READY;
			rp = RP_HELO;
			if (c.verb == CMD_HELO)
				break;
			/* What the daemon offers but SIZE (not checked at
			 * MAIL here); the last line is HELO's. */
			printf("250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
			    "250-SMTPUTF8\r\n", why);
			why = "ENHANCEDSTATUSCODES";
			break;
		case CMD_MAIL:
		case CMD_RCPT:
			rp = seq;
			if (state != (mail ? BS_READY : BS_MAIL))
				break;
			tried = !mail;	/* for DATA's 554 */
			/* As the daemon's smtp_cmd_mail and smtp_cmd_rcpt. */
			if ((rp = smtp_path(&c, ADDR_BARE_OK | (mail ?
			    ADDR_NULL_OK | ADDR_UTF8 : sm->flags & QF_SMTPUTF8 ?
			    ADDR_UTF8 : 0), addr, &p, &why)) != 0)
				break;
			rp = RP_TOO_MANY_RCPT;
			/* The daemon's overshoot limit: past it, each is an
			 * error. */
			if (!mail && sm->nrcpt != 0 &&
			    sm->nrcpt >= conf->max_recipients) {
				errors += ++over > SMTP_OVERSHOOT_LIMIT;
				break;
			}
			/* Qualified, checked and kept as an argument is. */
			rp = mail ? RP_BAD_SENDER : RP_BAD_RCPT;
			why = "address too long";
			if (sm_add_addr(sm, addr, 0) == -1)
				break;
			rp = mail ? RP_MAIL_OK : RP_RCPT_OK;
			if (!mail)
				break;
			sm->sender[0] = '\0';
			if (sm->nrcpt != 0)
				memcpy(sm->sender, sm->rcpt[0].addr,
				    sizeof(sm->sender));
			sm->nrcpt = 0;
			if (p.smtputf8)
				sm->flags |= QF_SMTPUTF8;
			state = BS_MAIL;
			break;
		case CMD_DATA:
			/* Postfix's 554 when every RCPT was refused. */
			rp = state == BS_MAIL && tried ? RP_NO_VALID_RCPT : seq;
			if (state != BS_MAIL || sm->nrcpt == 0)
				break;
			rp = RP_DATA_GO;
			state = BS_DATA;
			break;
		case CMD_RSET:
			if (state != BS_HELO)
				state = BS_READY;
			/* FALLTHROUGH */
		case CMD_NOOP:
		case CMD_VRFY:
		case CMD_HELP:
			rp = c.verb == CMD_VRFY ? c.arglen != 0 ? RP_VRFY :
			    RP_VRFY_SYNTAX : c.verb == CMD_HELP ? RP_HELP :
			    RP_OK;
			if (rp == RP_VRFY_SYNTAX)
				break;	/* an error, as to the daemon */
			/* The daemon's junk limit: past it, each but HELP
			 * counts as an error. */
			errors += rp != RP_HELP && ++junk > SMTP_JUNK_LIMIT;
			break;
		case CMD_QUIT:
			rp = RP_BYE;
			break;
		default:
			rp = c.verb == CMD_UNKNOWN ? RP_UNKNOWN_CMD :
			    RP_NOT_IMPL;
			break;
		}
reply:
		/* The daemon's smtp_fail() count: each 5xx to a command. */
		errors += smtp_reply_text((enum smtp_reply)rp)[0] == '5';
say:
		sm_reply(rp, why);
		if (rp == RP_BYE || rp == RP_TOO_MANY_ERRORS)
			break;
		/* So that a runaway script cannot loop for ever. */
		if (errors >= SMTP_ERROR_LIMIT) {
			rp = RP_TOO_MANY_ERRORS;
			why = conf->hostname;
			goto say;
		}
	}
	/* Replies lost: the client was not told what became of its mail. */
	/* fflush(NULL), here and in every command: stdout is the one
	 * stream with a buffer, and NULL spares loading stdout. */
	return n == -2 || fflush(NULL) == EOF ? EX_IOERR : EX_OK;
}

/*
 * One message after DATA's 354, to its "." line: dot-unstuffed, line
 * ends made CRLF (a bare LF too, as sm_read() makes them), then queued.
 * Returns the reply, or sm_line()'s -1 or -2 (nothing queued).
 */
static int
sm_smtp_data(struct sm *sm, struct conn *in, char *line)
{
	struct msg_reader r;
	int n, dot, ex, rp = RP_QUEUED;

	msg_reader_init(&r, 0, sm_limit(sm->conf));
	/* The whole message: smtpd_data_timeout, as at the daemon's door. */
	sm->data_end = loop_clock() + smtp_ms(sm->conf->smtpd_data_timeout);
	while ((n = sm_line(sm, in, line)) != 1 || line[0] != '.') {
		if (n < 0) {
			msg_buf_free(&r.out);
			return n;
		}
		dot = n > 0 && line[0] == '.';
		/* The daemon's rule: over 1000 octets with CRLF. */
		if (n - dot > MSG_LINE_MAX)
			rp = RP_DATA_LINE_TOO_LONG;
		else if (msg_reader_feed(&r, line + dot, (size_t)(n + 2 -
		    dot)) == -1)
			rp = RP_WRITE_ERR;
	}
	sm->data_end = 0;
	sm->msg = r.out;
	if (rp == RP_QUEUED && r.over)
		rp = RP_SIZE;
	/* maildrop/ even when the daemon has come up meanwhile: it could
	 * refuse a recipient that RCPT here has accepted, after the 250.
	 * pickup takes each one; what fails later bounces. */
	if (rp == RP_QUEUED && ((ex = sm_prepare(sm)) != EX_OK ||
	    sm_maildrop(sm) == -1))
		rp = ex == EX_DATAERR ? RP_SIZE : RP_WRITE_ERR;
	msg_buf_free(&sm->msg);
	return rp;
}

/*
 * One line of the -bs dialogue into line[SM_LINE_SIZE + 2], its LF (and
 * a CR before it) made CRLF after it: its length without them,
 * SM_LINE_SIZE when it was longer; -1 at EOF or after sm_getc()'s 421,
 * -2 when the replies cannot be written.
 */
static int
sm_line(struct sm *sm, struct conn *in, char *line)
{
	int ch, n = 0;

	while ((ch = sm_getc(sm, in)) != '\n') {
		if (ch < 0)
			return ch;
		if (n < SM_LINE_SIZE)
			line[n++] = (char)ch;
	}
	if (n > 0 && n < SM_LINE_SIZE && line[n - 1] == '\r')
		n--;
	memcpy(line + n, "\r\n", 2);
	return n;
}

/*
 * conn_getc() on stdin for -bs.  The replies go out when the input read
 * is used up (one write for a PIPELINING batch), before any wait.  The
 * wait is bounded by smtpd_timeout and, in DATA, by what is left of
 * smtpd_data_timeout (checked at every read: a client that trickles, or
 * never stops, is cut off too), and ends in the daemon's 421, as
 * Postfix's smtpd -S ends: a client gone quiet would hold this process
 * for ever.  The message in DATA is only in memory: nothing to remove.
 */
static int
sm_getc(struct sm *sm, struct conn *in)
{
	uint64_t ms = smtp_ms(sm->conf->smtpd_timeout), now;

	if (in->off == in->len) {
		if (fflush(NULL) == EOF)
			return -2;
		/* In DATA, no longer than what is left of it. */
		if (sm->data_end != 0 && (now = loop_clock()) + ms >
		    sm->data_end)
			ms = now < sm->data_end ? sm->data_end - now : 0;
		if (ms == 0 || conn_wait(STDIN_FILENO, POLLIN, ms) == -1) {
			sm_reply(RP_TIMEOUT, sm->conf->hostname);
			return -1;
		}
	}
	return conn_getc(in);
}

/* One reply of the -bs dialogue, in the daemon's words. */
static void
sm_reply(int rp, const char *why)
{
	printf(smtp_reply_text((enum smtp_reply)rp), why);
	printf("\r\n");
}

/* --- flush --- */

/*
 * ferry flush, sendmail -q: ask the daemon over the local socket (ETRN,
 * which it honours only there) to try every deferred message now.
 */
int
cli_flush(const struct config *conf, int argc, char **argv)
{
	struct conn *c;
	int code = -1;

	(void)argc;
	(void)argv;
	loop_sigpipe_ignore();
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return EX_OSERR;
	if ((c->fd = cli_connect(conf->local_socket)) == -1) {
		log_cli("flush", "the ferry daemon is not running (%s: "
		    "%s)", conf->local_socket, log_errstr());
		free(c);
		return EX_UNAVAILABLE;
	}
	if (conn_reply(c) == 220 &&
	    conn_cmd(c, "EHLO %s\r\n", CLI_EHLO_NAME) == 250)
		code = conn_cmd(c, "ETRN *\r\n");
	if (code != 250)
		conn_print(c);
	(void)conn_cmd(c, "QUIT\r\n");
	(void)close(c->fd);
	free(c);
	return code == 250 ? EX_OK : EX_TEMPFAIL;
}

/* --- the client connection --- */

/* Non-blocking: a full backlog (EAGAIN) counts as "down", never a hang. */
static int
cli_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, e;

	if (net_unix(&sun, path) == -1)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		e = errno;
		(void)close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Up to ms for ev on fd: 0, else -1 (ETIMEDOUT when time ran out). */
static int
conn_wait(int fd, short ev, uint64_t ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int n;

	while ((n = poll(&p, 1, (int)ms)) == -1 && errno == EINTR)
		;
	if (n == 0)
		errno = ETIMEDOUT;
	return n == 1 ? 0 : -1;
}

/* The next byte, or -1 on EOF, error or timeout. */
static int
conn_getc(struct conn *c)
{
	ssize_t k;

	while (c->off == c->len) {
		k = read(c->fd, c->buf, sizeof(c->buf));
		if (k > 0) {
			c->off = 0;
			c->len = (size_t)k;
		} else if (k == 0)
			return -1;
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN ||
		    conn_wait(c->fd, POLLIN, CLI_TIMEOUT_MS) == -1)
			return -1;
	}
	return (unsigned char)c->buf[c->off++];
}

/*
 * One reply (RFC 5321 §4.2), multi-line too: returns its code, -1 when
 * the connection ended or timed out, 0 for a line that is no reply (or
 * not of its reply's code: reply_code()).  The text is kept (bounded,
 * control bytes as '?') for stderr, and the EHLO keywords are noted.
 */
static int
conn_reply(struct conn *c)
{
	char line[CLI_RLINE_MAX];
	size_t n, k;
	int ch, code = 0, lcode, more;

	c->tlen = 0;
	c->text[0] = '\0';
	do {
		n = 0;
		while ((ch = conn_getc(c)) != '\n') {
			if (ch == -1)
				return -1;
			if (n + 1 < sizeof(line) && ch != '\r')
				line[n++] = (ch < 0x20 || ch == 0x7f) ? '?' :
				    (char)ch;
		}
		line[n] = '\0';
		/* What we print is kept first, bad line or not. */
		if (code != 0 && c->tlen + 1 < sizeof(c->text))
			c->text[c->tlen++] = '\n';
		k = sizeof(c->text) - 1 - c->tlen;
		memcpy(c->text + c->tlen, line, n < k ? n : k);
		c->tlen += n < k ? n : k;
		c->text[c->tlen] = '\0';
		if ((lcode = reply_code(line, n, code, &more)) == -1)
			return 0;
		if (code != 0 && n > 4)		/* an EHLO keyword line */
			c->ext |= reply_ehlo(line + 4, NULL);
		code = lcode;
	} while (more);
	return code;
}

static int
conn_cmd(struct conn *c, const char *fmt, ...)
{
	char cmd[CLI_CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return 0;	/* cannot happen: paths are checked */
	if (write_all(c->fd, cmd, (size_t)n) == -1)
		return -1;
	return conn_reply(c);
}

static void
conn_print(const struct conn *c)
{
	const char *p = c->text, *nl;

	if (c->tlen == 0) {
		sm_say("unexpected reply from the mail daemon");
		return;
	}
	for (; p != NULL; p = nl != NULL ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		log_cli("sendmail", "%.*s",
		    (int)(nl != NULL ? (size_t)(nl - p) : strlen(p)), p);
	}
}

/* Files, stdout and the daemon's socket: the commands that write to a
 * socket ignore SIGPIPE first, so a peer gone away is EPIPE here. */
static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t k;

	while (n > 0) {
		k = write(fd, p, n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1 && errno == EAGAIN) {
			if (conn_wait(fd, POLLOUT, CLI_TIMEOUT_MS) == -1)
				return -1;
			continue;
		}
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* --- mailq, delete, cat --- */

/*
 * The queue is the daemon's user's, 0711: others cannot list it.  Check
 * first, so "Permission denied" is the answer and not an empty queue.
 */
static int
cli_queue_open(const struct config *conf, const char *prog)
{
	int fd = textfile_open(conf->queue_dir,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	int e;

	if (fd == -1) {
		e = errno;
		log_cli(prog, "cannot read the queue: %s",
		    strerror(e));
		return e == EACCES || e == EPERM ? EX_NOPERM : EX_UNAVAILABLE;
	}
	(void)close(fd);	/* read-only */
	if (queue_open(conf->queue_dir) == -1 || queue_dir() == NULL) {
		log_cli(prog, "cannot open the queue %s: %s",
		    conf->queue_dir, log_errstr());
		return EX_UNAVAILABLE;
	}
	return EX_OK;
}

int
cli_mailq(const struct config *conf, int argc, char **argv)
{
	struct mq mq = { 0, 0, 0, { NULL, 0, 0 }, 0 };
	int i, rc, e;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			mq.json = 1;
		else if (strcmp(argv[i], "-v") != 0)	/* -v: ignored */
			return cli_usage("mailq [--json]");
	}
	if ((rc = cli_queue_open(conf, "mailq")) != EX_OK)
		return rc;
	rc = queue_walk(mq_one, &mq);
	if (mq.werr != 0) {
		log_cli("mailq", "write: %s", strerror(mq.werr));
		rc = EX_IOERR;
		goto done;
	}
	if (rc == -1 || mq.n == (unsigned long)-1) {
		e = mq.n == (unsigned long)-1 ? ENOMEM : errno;
		log_cli("mailq", "cannot read the queue: %s",
		    strerror(e));
		rc = e == EACCES ? EX_NOPERM : EX_IOERR;
		goto done;
	}
	if (mq.json)
		rc = cli_addf(&mq.out, mq.n ? "\n]\n" : "[]\n");
	else if (mq.n == 0)
		rc = cli_addf(&mq.out, "Mail queue is empty\n");
	else	/* Postfix's N: rounded down, "-- 0 Kbytes in 1 Request." */
		rc = cli_addf(&mq.out, "-- %" PRIu64 " Kbytes in %lu "
		    "Request%s.\n", mq.bytes / 1024, mq.n,
		    cli_plural(mq.n));
	if (rc == -1) {
		log_cli("mailq", "out of memory");
		rc = EX_OSERR;
		goto done;
	}
	rc = EX_OK;
	if (write_all(STDOUT_FILENO, mq.out.p, mq.out.len) == -1) {
		log_cli("mailq", "write: %s", log_errstr());
		rc = EX_IOERR;
	}
done:
	msg_buf_free(&mq.out);
	return rc;
}

static int
mq_one(const struct queue_info *qi, void *arg)
{
	struct mq *mq = arg;

	if ((mq->json ? mq_json(mq, qi) : mq_plain(mq, qi)) == -1) {
		mq->n = (unsigned long)-1;	/* out of memory */
		return 1;
	}
	mq->n++;
	mq->bytes += qi->size;
	/* Out as it goes: a router's queue of 50,000 held 20 MB here, and
	 * nothing was printed until the last file was read. */
	if (mq->out.len >= MQ_FLUSH_AT) {
		if (write_all(STDOUT_FILENO, mq->out.p, mq->out.len) == -1) {
			mq->werr = errno;
			return 1;
		}
		mq->out.len = 0;
	}
	return 0;
}

/* DESIGN.md: one array, an object per message. */
static int
mq_json(struct mq *mq, const struct queue_info *qi)
{
	const struct queue_rcpt *r;
	unsigned i;

	if (cli_addf(&mq->out, "%s{\"id\":", mq->n ? ",\n" : "[\n") == -1 ||
	    mq_jstr(&mq->out, qi->id) == -1 ||
	    cli_addf(&mq->out, ",\"queue_name\":\"%s\",\"sender\":",
	    mq_queue_name(qi)) == -1 ||
	    mq_jstr(&mq->out, qi->sender) == -1 ||
	    cli_addf(&mq->out, ",\"size\":%" PRIu64 ",\"arrival\":%" PRIu64
	    ",\"next_attempt\":%" PRIu64 ",\"recipients\":[", qi->size,
	    qi->arrival, qi->next_attempt) == -1)
		return -1;
	for (i = 0; i < qi->nrcpt; i++) {
		r = &qi->rcpt[i];
		if (cli_addf(&mq->out, "%s{\"address\":", i ? "," : "") == -1 ||
		    mq_jstr(&mq->out, r->address) == -1 ||
		    cli_addf(&mq->out, ",\"status\":\"%s\",\"reason\":",
		    queue_status_name(r->status)) == -1 ||
		    mq_jstr(&mq->out, r->reason) == -1 ||
		    cli_addf(&mq->out, "}") == -1)
			return -1;
	}
	return cli_addf(&mq->out, "]}");
}

/* One call per string instead of an inlined copy at each of four;
 * NULL (no reason) is "". */
static int
mq_jstr(struct msg_buf *b, const char *s)
{
	if (s == NULL)
		s = "";
	return msg_json_str(b, s, strlen(s));
}

/*
 * Postfix's table: ID, size, arrival (asctime without the year), sender
 * (MAILER-DAEMON for <>), then each recipient still to do and its last
 * error in parentheses.  Delivered and bounced ones are done: not shown.
 * Postfix has no next attempt to show; ours is one more parenthesised
 * line after the recipients of a message with a deferral, so a script
 * that takes "(...)" lines for reasons and the others for recipients
 * still reads the table right.
 */
static int
mq_plain(struct mq *mq, const struct queue_info *qi)
{
	char date[32], text[QUEUE_ADDR_MAX];
	unsigned i, deferred = 0;

	/* The columns' titles are as wide as the columns but the first. */
	if (mq->n == 0 && cli_addf(&mq->out, "%-*s --Size-- ----Arrival "
	    "Time---- -Sender/Recipient-------\n", QUEUE_ID_LEN + 1,
	    "-Queue ID-") == -1)
		return -1;
	mq_date(qi->arrival, date, sizeof(date));
	if (cli_addf(&mq->out, "%-*s %8" PRIu64 " %-20s %s\n",
	    QUEUE_ID_LEN + 1, qi->id, qi->size, date,
	    qi->sender[0] ? mq_show(text, qi->sender) : "MAILER-DAEMON") == -1)
		return -1;
	for (i = 0; i < qi->nrcpt; i++) {
		if (qi->rcpt[i].status == RS_SENT ||
		    qi->rcpt[i].status == RS_BOUNCED)
			continue;
		if (qi->rcpt[i].status == RS_DEFERRED)
			deferred++;
		if (cli_addf(&mq->out, "%*s%s\n", QUEUE_ID_LEN + 32, "",
		    mq_show(text, qi->rcpt[i].address)) == -1)
			return -1;
		if (qi->rcpt[i].reason != NULL &&
		    cli_addf(&mq->out, "%*s(%s)\n", QUEUE_ID_LEN + 32, "",
		    mq_show(text, qi->rcpt[i].reason)) == -1)
			return -1;
	}
	if (qi->maildrop && cli_addf(&mq->out, "%*s(waiting in maildrop/)\n",
	    QUEUE_ID_LEN + 32, "") == -1)
		return -1;
	/* Never tried (next_attempt 0): it goes now, nothing to say. */
	if (deferred && qi->next_attempt != 0) {
		mq_date(qi->next_attempt, date, sizeof(date));
		if (cli_addf(&mq->out, "%*s(next attempt: %s)\n",
		    QUEUE_ID_LEN + 32, "", date) == -1)
			return -1;
	}
	return cli_addf(&mq->out, "\n");
}

/* A copy fit for root's terminal: a maildrop file is a local user's, a
 * reason a remote server's words (log_printable()). */
static const char *
mq_show(char *buf, const char *s)
{
	size_t n = textfile_strnlen(s, QUEUE_ADDR_MAX - 1);

	memcpy(buf, s, n);
	buf[n] = '\0';
	log_printable(buf, n);
	return buf;
}

/* postqueue -j's names: not picked up yet, waiting for a retry, or due. */
static const char *
mq_queue_name(const struct queue_info *qi)
{
	return qi->maildrop ? "maildrop" : qi->next_attempt != 0 ?
	    "deferred" : "active";
}

/* Unix seconds as Postfix's mailq shows them: local time, no year. */
static void
mq_date(uint64_t when, char *date, size_t size)
{
	time_t t = (time_t)when;
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(date, size, "%a %b %e %H:%M:%S", &tm) == 0)
		memcpy(date, "?", 2);	/* size is 32 */
}

/*
 * Every piece fits: the longest is an address (QUEUE_ADDR_MAX) or a
 * reason (QUEUE_REASON_MAX) with a few dozen bytes around it.
 */
static int
cli_addf(struct msg_buf *b, const char *fmt, ...)
{
	char line[CLI_IO_SIZE];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return msg_buf_add(b, line, (size_t)n);
}

int
cli_delete(const struct config *conf, int argc, char **argv)
{
	struct idlist l = { NULL, 0, 0 };
	size_t i, done = 0;
	int rc, all = 0, a, e;

	if (argc < 2)
		return cli_usage("ferry delete ID...|all");
	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "all") == 0 || strcmp(argv[a], "ALL") == 0)
			all = 1;
		else if (!queue_id_valid(argv[a])) {
			log_cli("delete", "%s: not a queue ID", argv[a]);
			return EX_USAGE;
		}
	}
	if ((rc = cli_queue_open(conf, "delete")) != EX_OK)
		return rc;
	if (all) {
		if (queue_walk(del_collect, &l) == -1 || l.n == (size_t)-1) {
			log_cli("delete", "cannot read the queue: %s",
			    l.n == (size_t)-1 ? "out of memory" :
			    log_errstr());
			rc = EX_IOERR;
			goto done;
		}
		for (i = 0; i < l.n; i++) {
			if (del_one(l.id[i]) == 0)
				done++;
			else if (errno != ENOENT) {	/* gone meanwhile */
				log_cli("delete", "%s: %s", l.id[i],
				    log_errstr());
				rc = EX_IOERR;
			}
		}
		printf("%zu message%s deleted\n", done, cli_plural(done));
		goto done;
	}
	for (a = 1; a < argc; a++) {
		if (del_one(argv[a]) == 0)
			printf("%s: deleted\n", argv[a]);
		else if (errno == ENOENT) {
			log_cli("delete", "%s: no such message",
			    argv[a]);
			if (rc == EX_OK)
				rc = EX_NOUSER;
		} else {
			e = errno;
			log_cli("delete", "%s: %s", argv[a],
			    strerror(e));
			rc = e == EACCES || e == EPERM ? EX_NOPERM : EX_IOERR;
		}
	}
done:
	free(l.id);
	if (fflush(NULL) == EOF && rc == EX_OK)
		rc = EX_IOERR;
	return rc;
}

/* A message in the queue, else one sendmail left in maildrop/. */
static int
del_one(const char *id)
{
	if (queue_delete(id) == 0)
		return 0;
	return errno == ENOENT ? queue_delete_dropped(id) : -1;
}

static int
del_collect(const struct queue_info *qi, void *arg)
{
	struct idlist *l = arg;
	char (*grown)[QUEUE_ID_SIZE];
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap ? l->cap * 2 : 64;
		if ((grown = realloc(l->id, cap * sizeof(*grown))) == NULL) {
			l->n = (size_t)-1;
			return 1;
		}
		l->id = grown;
		l->cap = cap;
	}
	memcpy(l->id[l->n++], qi->id, QUEUE_ID_SIZE);
	return 0;
}

/* The stored message - Received: line, headers, body - byte for byte. */
int
cli_cat(const struct config *conf, int argc, char **argv)
{
	struct queue_info qi;
	char path[CONFIG_PATH_MAX + QUEUE_ID_SIZE + 2], buf[CLI_IO_SIZE];
	const char *why;
	uint64_t left;
	struct stat st;
	off_t off;
	ssize_t n;
	int fd = -1, rc, e, dropped = 0;

	if (argc != 2)
		return cli_usage("ferry cat ID");
	if (!queue_id_valid(argv[1])) {
		log_cli("cat", "%s: not a queue ID", argv[1]);
		return EX_USAGE;
	}
	if ((rc = cli_queue_open(conf, "cat")) != EX_OK)
		return rc;
	/* What mailq lists, cat shows: the queue's, else maildrop/'s. */
	while (queue_load(dropped, argv[1], &qi, &why) == -1) {
		e = errno;
		if (e == ENOENT && !dropped++)
			continue;
		if (e == ENOENT) {
			log_cli("cat", "%s: no such message", argv[1]);
			return EX_NOUSER;
		}
		log_cli("cat", "%s: %s: %s", argv[1], why,
		    strerror(e));
		return e == EACCES ? EX_NOPERM : EX_IOERR;
	}
	left = qi.size;
	off = (off_t)qi.body_off;
	queue_info_free(&qi);
	/* Queue files never change once committed (state is in ID.st). */
	snprintf(path, sizeof(path), "%s/%s", conf->queue_dir, argv[1]);
	if ((fd = dropped ? queue_open_dropped(argv[1], &st, &why) :
	    textfile_open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		e = errno;
		log_cli("cat", "%s: %s", argv[1], e == ENOENT ?
		    "no such message" : strerror(e));
		return e == ENOENT ? EX_NOUSER : EX_IOERR;
	}
	rc = EX_OK;
	while (left > 0) {
		n = pread(fd, buf, left < sizeof(buf) ? (size_t)left :
		    sizeof(buf), off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_cli("cat", "%s: %s", argv[1], n == 0 ?
			    "file is shorter than its records say" :
			    log_errstr());
			rc = EX_IOERR;
			break;
		}
		if (write_all(STDOUT_FILENO, buf, (size_t)n) == -1) {
			log_cli("cat", "write: %s", log_errstr());
			rc = EX_IOERR;
			break;
		}
		left -= (uint64_t)n;
		off += n;
	}
	(void)close(fd);	/* read-only */
	return rc;
}

/*
 * `ferry tlsa [--usage U] [--selector S] [--match M] CERT.pem [HOST
 * [PORT]]`: the TLSA record to publish for the first certificate in
 * CERT.pem (3 1 1 by default: the server's own key, by SHA-256, which
 * survives a renewal with the same key).  With HOST, the whole record
 * line for a zone file; without, its data only.
 */
int
cli_tlsa(const struct config *conf, int argc, char **argv)
{
	/* One string, not a table of pointers (8 bytes of RELRO each). */
	static const char opts[] = "--usage\0--selector\0--match";
	static const char maxv[] = { 3, 1, 2 };
	int v[3] = { 3, 1, 1 };
	const char *pos[3] = { NULL, NULL, NULL };
	mbedtls_x509_crt crt;
	unsigned port = 25;
	size_t np = 0, k, hexsz;
	char *hex = NULL;
	int i, rc = EX_DATAERR;

	(void)conf;
	for (i = 1; i < argc; i++) {
		for (k = 0; k < 3; k++)
			if (strcmp(argv[i], textfile_nth(opts, k)) == 0)
				break;
		if (k < 3) {
			if (i + 1 == argc || argv[i + 1][0] < '0' ||
			    argv[i + 1][0] > '0' + maxv[k] ||
			    argv[i + 1][1] != '\0')
				goto usage;
			v[k] = argv[++i][0] - '0';
		} else if (argv[i][0] == '-' || np == 3)
			goto usage;
		else
			pos[np++] = argv[i];
	}
	/* HOST: a name for the owner ("" made "_25._tcp.." and read
	 * before the string); PORT: digits only, as check's -p. */
	if (np == 0 || (np >= 2 && (pos[1][0] == '\0' || pos[1][0] == '.')))
		goto usage;
	if (np == 3 && config_parse_port(pos[2], strlen(pos[2]), &port) != 0)
		goto usage;
	mbedtls_x509_crt_init(&crt);
	/* More than 0: that many certificates did not parse, and mbedTLS
	 * left them out; a damaged leaf would make the CA's record. */
	if ((i = mbedtls_x509_crt_parse_file(&crt, pos[0])) != 0 ||
	    crt.raw.p == NULL) {
		log_cli("ferry tlsa", "%s: %s", pos[0], i > 0 ? "a "
		    "certificate in it does not parse" : "not a PEM or DER "
		    "certificate");
		goto done;
	}
	hexsz = 2 * crt.raw.len + 1;
	if ((hex = malloc(hexsz)) == NULL ||
	    dane_tlsa_data(crt.raw.p, crt.raw.len, v[1], v[2], hex,
	    hexsz) == -1) {
		log_cli("ferry tlsa", "%s: cannot make the record", pos[0]);
		goto done;
	}
	if (np >= 2)
		printf("_%u._tcp.%s%s IN TLSA ", port, pos[1],
		    pos[1][strlen(pos[1]) - 1] == '.' ? "" : ".");
	printf("%d %d %d %s\n", v[0], v[1], v[2], hex);
	rc = fflush(NULL) == 0 ? EX_OK : EX_IOERR;
done:
	free(hex);
	mbedtls_x509_crt_free(&crt);
	return rc;
usage:
	return cli_usage("ferry tlsa [--usage 0-3] [--selector 0|1] "
	    "[--match 0-2] CERT.pem [HOST [PORT]]");
}

/* One call per command instead of log_cli() and the return at each;
 * main.c's usage text goes through it too ("usage: ..." is log_cli()'s
 * "PROG: ..." line).  noinline: measured smaller than LTO's seven
 * inlined copies. */
__attribute__((noinline)) int
cli_usage(const char *synopsis)
{
	log_cli("usage", "%s", synopsis);
	return EX_USAGE;
}

const char *
cli_plural(size_t n)
{
	return n == 1 ? "" : "s";
}

/*
 * newaliases, sendmail -bi and -I: ferry reads the aliases file itself
 * (no database to build), so this checks it, then has a running daemon
 * reload, as Postfix's daemons take a rebuilt table: an admin who ran
 * newaliases expects the new aliases to route the next message.  The
 * daemon's pid comes from its local socket (SO_PEERCRED): the one that
 * bound it, believed only for a socket made by root or by our own user
 * (the daemon's user, who owns the queue, cannot make one as root), and
 * never 0, which is what a daemon in another pid namespace shows and
 * kill() would take for our own process group.
 */
int
cli_newaliases(const struct config *conf)
{
	char err[CONFIG_ERR_MAX];
	struct alias_table *t;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd, rc;

	if (conf->aliases[0] == '\0')
		return EX_OK;
	if ((t = alias_load(conf->aliases, conf->origin, err, sizeof(err))) ==
	    NULL) {
		log_cli("newaliases", "%s", err);
		return EX_CONFIG;
	}
	alias_free(t);
	/* Not running: it reads the file when it starts. */
	if ((fd = cli_connect(conf->local_socket)) == -1)
		return EX_OK;
	rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	    cred.pid > 0 && (cred.uid == 0 || cred.uid == getuid()) &&
	    kill(cred.pid, SIGHUP) == 0 ? EX_OK : EX_NOPERM;
	if (rc != EX_OK)
		log_cli("newaliases", "the daemon was not told to reload; "
		    "send it SIGHUP");
	(void)close(fd);
	return rc;
}
