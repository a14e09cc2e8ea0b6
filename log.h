/*
 * log.h - one line per event, in Postfix's shapes.
 *
 * Lines go to syslog (facility mail, written to /dev/log directly so each
 * line can carry its own program name, "ferry/smtpd[pid]") or to stderr
 * with the same syslog-style prefix, so pflogsumm and fail2ban read both.
 * log_warn() appends strerror(errno); log_warnx() does not.  log_fatal*()
 * never return: they are for start-up and broken invariants only.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdnoreturn.h>

/* The Postfix program a line would have come from; pflogsumm keys on it. */
enum log_prog {
	LP_MASTER,	/* start, stop, reload */
	LP_SMTPD,	/* inbound sessions */
	LP_CLEANUP,	/* message-id= lines */
	LP_QMGR,	/* from=, removed */
	LP_SMTP,	/* outbound deliveries */
	LP_PICKUP,	/* maildrop/ and the local socket */
	LP_BOUNCE,
	LP_SENDMAIL,
	LP_POSTQUEUE,
	LP_COUNT
};

/* Trace subsystems, switchable at run time (SIGUSR2 cycles, -T sets). */
#define TRACE_SMTP	0x01u
#define TRACE_IO	0x02u
#define TRACE_QUEUE	0x04u
#define TRACE_LOOP	0x08u
#define TRACE_DNS	0x10u
#define TRACE_TLS	0x20u
#define TRACE_DELIVER	0x40u

extern unsigned log_trace_mask;

void log_open(int to_stderr);
/* Started: with syslog, warnings stop being copied to a terminal. */
void log_started(void);
/*
 * Every line but a fatal one goes through log_line(): the program (LP_*)
 * in the low bits, LOG_F_* for the kind of line.  The macros are the API:
 * one variadic function instead of four near-copies (each had its own
 * register save area), and every call still passes a one-byte constant.
 */
#define LOG_F_ERRNO	0x10u	/* append ": " and strerror(errno) */
#define LOG_F_WARN	0x20u	/* "warning: ", LOG_WARNING */
#define LOG_F_TRACE	0x40u	/* "trace: ", LOG_DEBUG (program master) */
void log_line(unsigned, const char *, ...)
    __attribute__((format(printf, 2, 3)));
noreturn void log_fatalx(unsigned, const char *, ...)
    __attribute__((format(printf, 2, 3)));
#define log_info(prog, ...)	log_line((prog), __VA_ARGS__)
#define log_warnx(prog, ...)	log_line((prog) | LOG_F_WARN, __VA_ARGS__)
#define log_warn(prog, ...)						\
	log_line((prog) | LOG_F_WARN | LOG_F_ERRNO, __VA_ARGS__)
#define log_fatal(prog, ...)	log_fatalx((prog) | LOG_F_ERRNO, __VA_ARGS__)
unsigned log_trace_parse(const char *);
/* Not the daemon's log: a one-shot command's error line, "PROG: what\n"
 * on stderr (sendmail, mailq, check, passwd...), in one write where it
 * fits, so lines from several processes do not mix. */
void log_cli(const char *prog, const char *, ...)
    __attribute__((format(printf, 2, 3)));

/* strerror(errno): one call in each of the twenty places that quote
 * errno, not two (the errno location, then strerror()). */
const char *log_errstr(void);

/* In place: what a terminal could take for a command becomes '?' (ASCII
 * and C1 controls, bytes that are no UTF-8).  A log line gets it, and so
 * does what mailq prints from files local users may write. */
void log_printable(char *, size_t);

/* Test the mask before formatting anything. */
#define log_trace(mask, ...) do {					\
	if (log_trace_mask & (mask))					\
		log_line(LOG_F_TRACE, __VA_ARGS__);			\
} while (0)

#endif
