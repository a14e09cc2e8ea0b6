/*
 * cmd.h - the SMTP command line parser (RFC 5321 §4.1.1), pure and
 * fuzzed.  cmd_parse() splits one line, CRLF already removed, into a verb
 * and its argument; cmd_params() reads the ESMTP parameters after a
 * MAIL or RCPT path.  Nothing here knows the session's state.
 */
#ifndef FERRY_CMD_H
#define FERRY_CMD_H

#include <stddef.h>
#include <stdint.h>

#define CMD_LINE_MAX	512	/* §4.5.3.1.4, with CRLF */
#define CMD_PARAM_MAX	8

enum cmd_verb {
	CMD_UNKNOWN, CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA,
	CMD_RSET, CMD_NOOP, CMD_QUIT, CMD_HELP, CMD_VRFY, CMD_EXPN,
	CMD_STARTTLS, CMD_AUTH, CMD_BDAT, CMD_ETRN, CMD_HTTP, CMD_COUNT
};

struct cmd {
	enum cmd_verb verb;
	const char *arg;	/* points into the line, after the verb */
	size_t arglen;
};

/* MAIL FROM / RCPT TO parameters we understand. */
struct cmd_params {
	uint64_t size;
	uint8_t has_size;	/* bytes: shorter stores than ints */
	uint8_t body_8bit;	/* BODY=8BITMIME */
	uint8_t body_7bit;
	uint8_t smtputf8;
	uint8_t has_auth;	/* AUTH=<> accepted and ignored */
};

/* 0: parsed (verb may be CMD_UNKNOWN); -1: malformed (NUL, bad bytes). */
int cmd_parse(const char *line, size_t len, struct cmd *);

/* For MAIL/RCPT: the argument must start with "FROM:" / "TO:";
 * returns the offset of the path after optional space, or -1. */
int cmd_path_offset(const struct cmd *, enum cmd_verb);

/* Parse "KEY=VALUE KEY" after the path; which: CMD_MAIL or CMD_RCPT.
 * Clears *p first, so callers need not.  Returns 0, or -1 with *why
 * (malformed parameter, or the first unsupported one's first 63 bytes,
 * kept until the next call). */
int cmd_params(const char *s, size_t len, enum cmd_verb which,
    struct cmd_params *, const char **why);

const char *cmd_name(enum cmd_verb);

#endif
