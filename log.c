/*
 * log.c - the log sink.  Owns: formatting one line in syslog's shape
 * ("Mon DD HH:MM:SS host ferry/smtpd[pid]: text") and writing it to
 * /dev/log (facility mail) or to stderr.  Writing ourselves, instead of
 * openlog()/syslog(), lets each line name its Postfix program while the
 * process stays one.  A lost syslog line is never an error for the caller.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "net.h"
#include "textfile.h"

#include "log.h"

#define LOG_CLI_MAX	4096	/* log_cli(): one stderr line */
#define LOG_CLI_PROG	64	/* and its "PROG: " */
#define LOG_LINE_MAX	2048	/* longer lines are cut, marked with "..." */
#define LOG_HOST_MAX	64

static void log_emit(unsigned, const char *, va_list)
    __attribute__((format(printf, 2, 0)));
static void log_connect(void);

static const char log_progs[LP_COUNT][sizeof("postqueue")] = {
	[LP_MASTER] = "master",
	[LP_SMTPD] = "smtpd",
	[LP_CLEANUP] = "cleanup",
	[LP_QMGR] = "qmgr",
	[LP_SMTP] = "smtp",
	[LP_PICKUP] = "pickup",
	[LP_BOUNCE] = "bounce",
	[LP_SENDMAIL] = "sendmail",
	[LP_POSTQUEUE] = "postqueue",
};

/* NUL-separated, "" ends it: the i-th name is TRACE_* bit i, but the
 * last, "all", is every bit.  No table of pointers.  aligned(1) here and
 * in log_kinds: read byte-wise, the ABI's 16 for arrays of 16 bytes and
 * more is only padding. */
static const char log_traces[] __attribute__((aligned(1))) =
    "smtp\0io\0queue\0loop\0dns\0tls\0deliver\0all\0";
#define LOG_TRACE_ALL	7	/* the index of "all" */
_Static_assert(TRACE_SMTP == 1u << 0 && TRACE_IO == 1u << 1 &&
    TRACE_QUEUE == 1u << 2 && TRACE_LOOP == 1u << 3 &&
    TRACE_DNS == 1u << 4 && TRACE_TLS == 1u << 5 &&
    TRACE_DELIVER == 1u << 6, "log_traces: bit order");
/* log_emit()'s kinds, by LOG_F_WARN/LOG_F_TRACE (bits 5 and 6); both
 * together, which no macro passes, is log_fatal*()'s. */
#define LOG_F_FATAL	(LOG_F_WARN | LOG_F_TRACE)
#define LOG_F_PROG	0x0fu
static const struct {
	unsigned char pri;
	char prefix[sizeof("warning: ")];
} log_kinds[4] __attribute__((aligned(1))) = {
	{ LOG_INFO, "" }, { LOG_WARNING, "warning: " },
	{ LOG_DEBUG, "trace: " }, { LOG_CRIT, "fatal: " },
};
_Static_assert(LP_COUNT - 1 <= LOG_F_PROG && LOG_F_ERRNO > LOG_F_PROG &&
    LOG_F_WARN == 1u << 5 && LOG_F_TRACE == 1u << 6, "LOG_F_* bits");

unsigned log_trace_mask;
static int log_stderr = 1;
static int log_tty;		/* syslog, and stderr is a terminal */
static int log_fd = -1;
static char log_host[LOG_HOST_MAX];
static long log_pid;

void
log_open(int to_stderr)
{
	struct termios tio;
	char *dot;

	log_stderr = to_stderr;
	log_pid = (long)getpid();
	if (gethostname(log_host, sizeof(log_host)) != 0)
		strcpy(log_host, "localhost");
	log_host[sizeof(log_host) - 1] = '\0';
	if ((dot = strchr(log_host, '.')) != NULL)
		*dot = '\0';
	if (!to_stderr) {
		log_connect();
		/* isatty() is this very call; one import fewer. */
		log_tty = tcgetattr(STDERR_FILENO, &tio) == 0;
	}
}

void
log_started(void)
{
	log_tty = 0;
}

static void
log_connect(void)
{
	struct sockaddr_un sun;

	if (log_fd != -1)
		close(log_fd);
	log_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (log_fd == -1)
		return;
	(void)net_unix(&sun, "/dev/log");
	if (connect(log_fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(log_fd);
		log_fd = -1;
	}
}

/*
 * One line: the header, prefix ("warning: " and the like), the text and,
 * from log_warn()/log_fatal() (LOG_F_ERRNO), ": " and strerror(errno).  The
 * text is cut as a whole, so a long one loses its err as it would have
 * lost its own end.  errno is as it was on return (callers log, then
 * look at it), so no wrapper keeps its own copy.
 */
static void
log_emit(unsigned how, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	char stamp[32];
	struct tm tm;
	int saved = errno;
	const char *err = how & LOG_F_ERRNO ? strerror(saved) : NULL;
	const char *prefix = log_kinds[(how >> 5) & 3].prefix;
	int pri = log_kinds[(how >> 5) & 3].pri;
	unsigned prog = how & LOG_F_PROG;
	struct timespec ts;
	long pid = log_pid ? log_pid : (long)getpid();
	size_t head, n;
	char *out;		/* what stderr gets: all, or from "ferry: " */
	int r;

	/* clock_gettime(), not time(): one libc import less (log.c is
	 * below loop.c, whose loop_now_real() the rest uses). */
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	if (log_stderr)
		r = snprintf(line, sizeof(line), "%s %s ferry/%s[%ld]: %s",
		    stamp, log_host, log_progs[prog], pid, prefix);
	else
		r = snprintf(line, sizeof(line), "<%d>%s ferry/%s[%ld]: %s",
		    LOG_MAIL | pri, stamp, log_progs[prog], pid, prefix);
	if (r < 0)
		goto done;
	head = (size_t)r < sizeof(line) ? (size_t)r : sizeof(line) - 1;
	r = vsnprintf(line + head, sizeof(line) - head, fmt, ap);
	if (r < 0)
		goto done;
	n = head + (size_t)r;
	if (err != NULL && n < sizeof(line) - 1)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s", err);
	if (n >= sizeof(line) - 1) {
		n = sizeof(line) - 2;
		memcpy(line + n - 3, "...", 3);
	}
	/* Control bytes from a peer must not forge a second log line, nor
	 * escape sequences steer the terminal that shows it. */
	log_printable(line + head, n - head);
	out = line;
	if (!log_stderr) {
		if (log_fd == -1 ||
		    send(log_fd, line, n, MSG_NOSIGNAL) == -1) {
			log_connect();	/* syslogd restarted: one retry */
			if (log_fd != -1)
				(void)!send(log_fd, line, n, MSG_NOSIGNAL);
		}
		/* Someone at a terminal sees why a start failed, as with
		 * Postfix's commands, without looking in the system log
		 * (until log_started: a running daemon's warnings are the
		 * system log's).  "ferry: " goes over the end of the
		 * header, which has been sent.  With no syslog at all (a
		 * container has no /dev/log) every line goes to stderr,
		 * "<pri>" off, not nowhere. */
		if (log_tty && pri <= LOG_WARNING)
			out = memcpy(line + head - strlen(prefix) - 7,
			    "ferry: ", 7);
		else if (log_fd == -1)
			out = strchr(line, '>') + 1;
		else
			goto done;
	}
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, out, (size_t)(line + n - out));
done:
	errno = saved;
}

/* log_info(), log_warnx(), log_warn() and log_trace(). */
void
log_line(unsigned how, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(how, fmt, ap);
	va_end(ap);
}

/* Also log_fatal(). */
void
log_fatalx(unsigned how, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(how | LOG_F_FATAL, fmt, ap);
	va_end(ap);
	exit(75);
}

/* "smtp,io" or "all" -> mask; unknown names are ignored. */
unsigned
log_trace_parse(const char *s)
{
	const char *t;
	unsigned mask = 0;
	size_t i, len;

	while (*s) {
		for (len = 0; s[len] != '\0' && s[len] != ',' &&
		    s[len] != ' '; len++)
			;
		for (i = 0, t = log_traces; *t != '\0';
		    i++, t += strlen(t) + 1)
			if (strlen(t) == len && memcmp(t, s, len) == 0)
				mask |= i == LOG_TRACE_ALL ? ~0u : 1u << i;
		s += len;
		while (*s == ',' || *s == ' ')
			s++;
	}
	return mask;
}

const char *
log_errstr(void)
{
	return strerror(errno);
}

/* The longest line quotes a server's reply (cli.c keeps 2 KB of it). */
void
log_cli(const char *prog, const char *fmt, ...)
{
	/* "PROG: ", the text, "...", "\n": one write(), as an unbuffered
	 * stderr's fprintf() made it, without fprintf and stderr, two
	 * libc imports. */
	char line[LOG_CLI_PROG + LOG_CLI_MAX + 3];
	va_list ap;
	size_t h, len;
	int n;

	h = textfile_strnlen(prog, LOG_CLI_PROG - 2);
	memcpy(line, prog, h);
	memcpy(line + h, ": ", 2);
	h += 2;
	va_start(ap, fmt);
	n = vsnprintf(line + h, LOG_CLI_MAX, fmt, ap);
	va_end(ap);
	/* Longer than any reply or path it quotes: cut, and said so. */
	if ((len = (size_t)n) >= LOG_CLI_MAX) {
		len = n < 0 ? 0 : LOG_CLI_MAX - 1;
		memcpy(line + h + len, "...", 3);
		len += 3;
	}
	line[h + len] = '\n';
	(void)!write(STDERR_FILENO, line, h + len + 1);
}

void
log_printable(char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		/* Kept: printable ASCII, and UTF-8 but the controls and
		 * invisible marks (addr_utf8_hidden(), the 8-bit CSI among
		 * them). */
		if (u[i] >= 0x80 && (k = addr_utf8_len(u + i, n - i)) > 0 &&
		    !addr_utf8_hidden(u + i, k)) {
			i += k;
			continue;
		}
		if (u[i] < 0x20 || u[i] >= 0x7f)
			s[i] = '?';
		i++;
	}
}
