/*
 * log_test.c - log_printable(), what stands between a peer's bytes and
 * the terminal showing a log line or mailq: ASCII controls and DEL, C1
 * controls in UTF-8 (the 8-bit CSI), bytes that are no UTF-8 (a lone
 * continuation, an overlong form, a sequence cut at the end) become '?',
 * one per byte; printable ASCII and other UTF-8 stay as they are.
 * And the line each log_* call writes to stderr: its program, priority
 * prefix and strerror, and errno left as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "t.h"

static int
same(const char *in, size_t n, const char *want)
{
	char buf[64];

	memcpy(buf, in, n);
	buf[n] = '\0';
	log_printable(buf, n);
	return strcmp(buf, want) == 0;
}

/* The input's length from the literal itself, NULs and all. */
#define SAME(lit, want)	same((lit), sizeof(lit) - 1, (want))

static int
test_ascii(void)
{
	CHECK(SAME("plain text 123 ~", "plain text 123 ~"));
	CHECK(SAME("a\nb\rc\td\x1b[31m", "a?b?c?d?[31m"));
	CHECK(SAME("del\x7f", "del?"));
	CHECK(SAME("", ""));
	return 0;
}

static int
test_utf8(void)
{
	/* é, €, 😀 and NBSP (U+00A0, the first code point after C1) */
	CHECK(SAME("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0"));
	/* C1 CSI as UTF-8, and U+0080 */
	CHECK(SAME("\xc2\x9b" "31m \xc2\x80", "??31m ??"));
	/* a raw 8-bit CSI, a lone continuation, an overlong '/' */
	CHECK(SAME("\x9b" "31m \x80 \xc0\xaf", "?31m ? ??"));
	/* RLO, LRM, LINE SEPARATOR, PDI: each of their bytes; en dash kept */
	CHECK(SAME("a\xe2\x80\xae" "b\xe2\x80\x8e" "c\xe2\x80\xa8" "d\xe2\x81\xa9"
	    "e\xe2\x80\x93", "a???b???c???d???e\xe2\x80\x93"));
	/* ALM (U+061C), a bidi mark as LRM is; U+061B beside it kept */
	CHECK(SAME("a\xd8\x9c" "b\xd8\x9b", "a??b\xd8\x9b"));
	/* cut at the end (a log line cut at its limit) */
	CHECK(SAME("x\xe2\x82", "x??"));
	return 0;
}

/*
 * What each log_* call writes to stderr.  The shape is DESIGN.md's and
 * Postfix's: "Mon DD HH:MM:SS host ferry/PROG[PID]: " and the kind's
 * prefix; log_warn() and log_fatal() add ": " strerror(errno) and leave
 * errno alone; log_trace() is the master's, and silent unless its mask
 * is on.  The fatal ones exit 75 (EX_TEMPFAIL), in children here.
 */
static int
test_kinds(void)
{
	static const struct {
		const char *fmt;	/* PID, then strerror or "" */
		int err;
	} want[] = {
		{ "smtpd[%ld]: connect from x%s", 0 },
		{ "postqueue[%ld]: warning: w 1%s", 0 },
		{ "qmgr[%ld]: warning: open q: %s", ENOENT },
		{ "master[%ld]: warning: m: %s", ENOENT },
		{ "master[%ld]: trace: t 7%s", 0 },
		{ "pickup[%ld]: fatal: f y: %s", EACCES },
		{ "sendmail[%ld]: fatal: fx%s", 0 },
	};
	char buf[4096], host[64], head[96], exp[256], *p, *nl;
	FILE *f = tmpfile();
	const char *q;
	int fd2, kept, nofork, st1 = 0, st2 = 0;
	size_t i, n;
	pid_t c1 = 0, c2 = 0;

	CHECK(f != NULL);
	CHECK((fd2 = dup(2)) != -1 && dup2(fileno(f), 2) == 2);
	log_open(1);
	errno = ENOENT;
	log_info(LP_SMTPD, "connect from %s", "x");
	log_warnx(LP_POSTQUEUE, "w %d", 1);
	log_warn(LP_QMGR, "open %s", "q");
	log_warn(LP_MASTER, "m");
	log_trace_mask = TRACE_QUEUE;
	log_trace(TRACE_QUEUE, "t %u", 7u);
	log_trace(TRACE_IO, "not traced");
	log_trace_mask = 0;
	kept = errno;
	/* test/cross.sh: qemu-user kills the forked child of a dynamically
	 * linked program, so the fatal lines are checked on the native and
	 * the static (s390x) builds only. */
	nofork = (q = getenv("FERRY_QEMU_DYNAMIC")) != NULL && *q != '\0';
	if (!nofork && (c1 = fork()) == 0) {
		errno = EACCES;
		log_fatal(LP_PICKUP, "f %s", "y");
	}
	if (c1 > 0)
		(void)waitpid(c1, &st1, 0);
	if (!nofork && (c2 = fork()) == 0)
		log_fatalx(LP_SENDMAIL, "fx");
	if (c2 > 0)
		(void)waitpid(c2, &st2, 0);
	(void)dup2(fd2, 2);
	(void)close(fd2);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);

	CHECK(kept == ENOENT);
	CHECK(nofork || (c1 > 0 && WIFEXITED(st1) && WEXITSTATUS(st1) == 75));
	CHECK(nofork || (c2 > 0 && WIFEXITED(st2) && WEXITSTATUS(st2) == 75));
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	host[strcspn(host, ".")] = '\0';
	snprintf(head, sizeof(head), " %s ferry/", host);
	p = buf;
	for (i = 0; i < sizeof(want) / sizeof(want[0]) - (nofork ? 2 : 0);
	    i++, p = nl + 1) {
		snprintf(exp, sizeof(exp), want[i].fmt, (long)getpid(),
		    want[i].err ? strerror(want[i].err) : "");
		CHECK((nl = strchr(p, '\n')) != NULL);
		*nl = '\0';
		/* "Mon DD HH:MM:SS" is 15 bytes */
		CHECK(strlen(p) > 15 && strncmp(p + 15, head,
		    strlen(head)) == 0);
		CHECK_STR(p + 15 + strlen(head), exp);
	}
	CHECK(*p == '\0');	/* nothing else: no "not traced" */
	return 0;
}

static const struct t_case cases[] = {
	{ "ASCII controls and DEL", test_ascii },
	{ "UTF-8 kept, C1 and malformed bytes not", test_utf8 },
	{ "each kind of line, and errno kept", test_kinds },
};

T_MAIN("log", cases)
