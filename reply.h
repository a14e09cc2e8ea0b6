/*
 * reply.h - the SMTP reply line parser (RFC 5321 §4.2), the client's
 * twin of cmd.h: one line of a server's reply into its code, whether
 * more lines follow, and its text; a line that goes on a reply must
 * carry its code.  deliver.c and check.c read their replies with
 * reply_read(); cli.c, which reads its own socket byte by byte, checks
 * its lines with reply_code().  reply_take() works on a buffer and a
 * length, so the tests and the fuzzer need no socket.
 */
#ifndef FERRY_REPLY_H
#define FERRY_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define REPLY_LINE_MAX	1024	/* a line kept, with its NUL; the rest of a
				   longer line is dropped */

enum reply_status {
	REPLY_OK,		/* one line taken, in the struct */
	REPLY_AGAIN,		/* no whole line buffered yet */
	REPLY_MALFORMED,	/* taken, but not "DDD", "DDD text" or
				   "DDD-text" with the first digit 2-5, or
				   not the code of the reply it goes on */
	REPLY_TOO_LONG,		/* a full buffer and no line end in it */
};

struct reply_line {
	int code;		/* 200-599 when REPLY_OK */
	int more;		/* "DDD-": another line of the reply follows */
	size_t len;		/* of line: up to a NUL, without a final CR */
	char line[REPLY_LINE_MAX];	/* NUL-terminated; text at line + 4 */
};

struct io;

/*
 * One line from buf[0..len) (LF ends it; a CR before the LF is dropped;
 * a NUL inside ends what is kept).  *used is what to consume: the whole
 * line, or 0 for REPLY_AGAIN and REPLY_TOO_LONG.  full says that the
 * buffer can take no more, so a missing LF means the line is too long.
 * want: the reply's code when a "DDD-" line came before, else 0.
 */
enum reply_status reply_take(const char *buf, size_t len, int full,
    int want, struct reply_line *, size_t *used);

/* reply_take() on the io's input, which it consumes. */
enum reply_status reply_read(struct io *, int want, struct reply_line *);

/*
 * The code of line[0..len), or -1 when malformed; *more as above.  RFC
 * 5321 §4.2.1: every line of a reply has its code, so one that goes on
 * a reply of code want (not 0) and has another is malformed too ("250-"
 * then "550 5.1.1 no" is neither a 250 nor a 550).
 */
int reply_code(const char *line, size_t len, int want, int *more);

/* What reply_ehlo() finds in one line of an EHLO reply (RFC 5321
 * §4.1.1.1): the extensions the clients use, and AUTH's mechanisms. */
#define REPLY_EXT_STARTTLS	0x01u
#define REPLY_EXT_PIPELINING	0x02u
#define REPLY_EXT_SIZE		0x04u
#define REPLY_EXT_AUTH		0x08u
#define REPLY_EXT_8BITMIME	0x10u
#define REPLY_EXT_SMTPUTF8	0x20u
#define REPLY_EXT_AUTH_PLAIN	0x40u	/* with REPLY_EXT_AUTH */
#define REPLY_EXT_AUTH_LOGIN	0x80u

/* The REPLY_EXT_* bits of an EHLO reply line's keyword kw (the text after
 * "250-"), 0 for any other; SIZE's number into *size (0 without one)
 * unless size is NULL.  deliver.c, check.c and cli.c read EHLO with it. */
unsigned reply_ehlo(const char *kw, uint64_t *size);

/* The length of the RFC 3463 status code at the start of the string s
 * ("5.1.1": class 2, 4 or 5, then two numbers of 1-3 digits) when a
 * space or the end follows it, else 0. */
size_t reply_enh(const char *s);
/* The enhanced code of a whole reply, "550 5.1.1 ..." or the first line
 * of "550-5.1.1 ... 550 5.1.1 ...", when it is of the reply's class: its
 * length, with *code at it; 0 when there is none. */
size_t reply_enh_code(const char *reply, const char **code);

/* A server's refusal of one of our commands in Postfix's words
 * (smtp_proto.c), as deliver.c makes it and the log, mailq and a DSN's
 * text show it: NAME, ADDR, the whole reply, CMD ("RCPT TO", "end of
 * DATA").  REPLY_SAID_PEER is the same text with "NAME[ADDR]" made
 * already (deliver.c keeps it so: one argument instead of two). */
#define REPLY_SAID_(peer) "host " peer " said: %s (in reply to %s command)"
#define REPLY_SAID	REPLY_SAID_("%s[%s]")
#define REPLY_SAID_PEER	REPLY_SAID_("%s")
/* The reply in such a text s, with its length in *len (without the
 * "(in reply to" part, or to the end where that was cut off), and NAME
 * in *name, *namelen; NULL when s is anything else (our own words, an
 * older state file's bare reply). */
const char *reply_said(const char *s, size_t *len, const char **name,
    size_t *namelen);

#endif
