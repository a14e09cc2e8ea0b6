/*
 * cmd.c - splits one SMTP command line (RFC 5321 §4.1.1, CRLF already
 * removed) into a verb and its argument, finds the path after "FROM:" or
 * "TO:", and reads the ESMTP parameters ferry understands.  Pure: no
 * session state, no I/O, no allocation (one static buffer holds the
 * name of an unsupported parameter); every input has an explicit length.
 * An unknown verb is not an error here (the session answers 500); -1
 * means the line or a parameter is malformed.  Line length limits belong
 * to the caller, which sees the CRLF.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "textfile.h"

/* Which parameter a struct cmd_params already holds, for duplicates. */
#define CMD_P_SIZE	0x1u
#define CMD_P_BODY	0x2u
#define CMD_P_SMTPUTF8	0x4u
#define CMD_P_AUTH	0x8u

struct cmd_param_def {
	const char *key;
	enum cmd_verb verb;	/* the command that takes it */
	unsigned bit;
	/* value is NULL when the token had no "=" */
	int (*parse)(const char *value, size_t vlen, struct cmd_params *,
	    const char **why);
};

static int	cmd_ieq(const char *, size_t, const char *);
static enum cmd_verb cmd_lookup(const char *, size_t);
static int	cmd_fail(const char **, const char *);
static int	cmd_param(const char *, size_t, enum cmd_verb, unsigned *,
		    struct cmd_params *, const char **);
static int	cmd_param_size(const char *, size_t, struct cmd_params *,
		    const char **);
static int	cmd_param_body(const char *, size_t, struct cmd_params *,
		    const char **);
static int	cmd_param_smtputf8(const char *, size_t, struct cmd_params *,
		    const char **);
static int	cmd_param_auth(const char *, size_t, struct cmd_params *,
		    const char **);

/* Indexed by enum cmd_verb, NUL-separated (textfile_nth()): the verb as
 * matched and as logged.  One string, not rows padded to the longest
 * name or pointers. */
static const char cmd_names[] = "UNKNOWN\0HELO\0EHLO\0MAIL\0RCPT\0DATA\0"
    "RSET\0NOOP\0QUIT\0HELP\0VRFY\0EXPN\0STARTTLS\0AUTH\0BDAT\0ETRN\0HTTP";

/*
 * A browser or proxy talking to port 25 (cross-protocol attacks): the
 * session drops these at once.  HTTP methods are case-sensitive
 * (RFC 9110 §9.1), so these are matched exactly.
 */
static const char cmd_http_prefix[] =	/* NUL-separated, "" ends it */
    "GET \0POST \0HEAD \0CONNECT \0PUT \0";

/* The last unsupported parameter, for *why: the reply names it. */
static char cmd_unsupported[64];

/* What follows the verb and its space for each path command (§4.1.1.2-3). */
static const struct {
	enum cmd_verb verb;
	const char *keyword;
} cmd_path_keywords[] = {
	{ CMD_MAIL, "FROM:" },
	{ CMD_RCPT, "TO:" },
};

static const struct cmd_param_def cmd_param_defs[] = {
	{ "SIZE", CMD_MAIL, CMD_P_SIZE, cmd_param_size },	/* RFC 1870 */
	{ "BODY", CMD_MAIL, CMD_P_BODY, cmd_param_body },	/* RFC 6152 */
	{ "SMTPUTF8", CMD_MAIL, CMD_P_SMTPUTF8, cmd_param_smtputf8 },
							/* RFC 6531 */
	{ "AUTH", CMD_MAIL, CMD_P_AUTH, cmd_param_auth },	/* RFC 4954 */
};

/* ASCII case-insensitive a[0..alen) == b; strncasecmp would follow the
 * locale and needs b's length to match anyway.  b is one of this file's
 * names, all in upper case: only a is folded. */
static int
cmd_ieq(const char *a, size_t alen, const char *b)
{
	size_t i;
	unsigned char x, y;

	for (i = 0; i < alen; i++) {
		x = (unsigned char)a[i];
		y = (unsigned char)b[i];
		if (y == '\0')
			return 0;
		if (x >= 'a' && x <= 'z')
			x = (unsigned char)(x - 'a' + 'A');
		if (x != y)
			return 0;
	}
	return b[alen] == '\0';
}

static enum cmd_verb
cmd_lookup(const char *verb, size_t len)
{
	const char *n = cmd_names;
	int v;

	/* CMD_HTTP is found by prefix, never as a verb. */
	for (v = CMD_UNKNOWN; v < CMD_HTTP; v++, n += strlen(n) + 1)
		if (v != CMD_UNKNOWN && cmd_ieq(verb, len, n))
			return (enum cmd_verb)v;
	return CMD_UNKNOWN;
}

int
cmd_parse(const char *line, size_t len, struct cmd *cmd)
{
	const char *p;
	size_t i, n, vlen;
	unsigned char c;

	if (cmd == NULL)
		return -1;
	cmd->verb = CMD_UNKNOWN;
	cmd->arg = line != NULL ? line : "";
	cmd->arglen = 0;
	if (line == NULL)
		return len == 0 ? 0 : -1;
	/*
	 * No byte below 0x20 and no DEL anywhere (§4.1.1: commands are
	 * printable text).  A NUL would cut the line short for every later
	 * C string user; a bare CR or LF is SMTP smuggling; TAB is refused
	 * too - no command needs one and Postfix's smtpd answers it with a
	 * syntax error.  Bytes >= 0x80 stay, for SMTPUTF8 addresses.
	 */
	for (i = 0; i < len; i++) {
		c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			return -1;
	}
	for (p = cmd_http_prefix; *p != '\0'; p += n + 1) {
		n = strlen(p);
		if (len >= n && memcmp(line, p, n) == 0) {
			cmd->verb = CMD_HTTP;
			cmd->arg = line + n;
			cmd->arglen = len - n;
			return 0;
		}
	}
	/* The verb ends at the first SP or at the end: "MAILX" is unknown. */
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	cmd->verb = cmd_lookup(line, vlen);
	if (vlen < len) {
		cmd->arg = line + vlen + 1;
		cmd->arglen = len - vlen - 1;
	} else {
		cmd->arg = line + len;
		cmd->arglen = 0;
	}
	return 0;
}

/*
 * "FROM:" / "TO:" in any case, then any number of SP before the path:
 * §4.1.1.2 allows none, but "MAIL FROM: <a@b>" is common in the wild and
 * Postfix accepts it.  The offset is returned whatever comes next, so
 * addr_parse_path() can name what is wrong with the path.
 */
int
cmd_path_offset(const struct cmd *cmd, enum cmd_verb verb)
{
	const char *kw = NULL;
	size_t i, kwlen, off;

	if (cmd == NULL || cmd->verb != verb || cmd->arg == NULL)
		return -1;
	for (i = 0; i < sizeof(cmd_path_keywords) /
	    sizeof(cmd_path_keywords[0]); i++)
		if (cmd_path_keywords[i].verb == verb)
			kw = cmd_path_keywords[i].keyword;
	if (kw == NULL)
		return -1;
	kwlen = strlen(kw);
	if (cmd->arglen < kwlen || !cmd_ieq(cmd->arg, kwlen, kw))
		return -1;
	for (off = kwlen; off < cmd->arglen && cmd->arg[off] == ' '; off++)
		;
	if (off > INT_MAX)
		return -1;
	return (int)off;
}

static int
cmd_fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -1;
}

/*
 * Mail-parameters = esmtp-param *(SP esmtp-param) (§4.1.2); extra SP
 * between, before and after them is tolerated.  Duplicates are refused:
 * two SIZE values leave nothing sane to enforce.
 */
int
cmd_params(const char *s, size_t len, enum cmd_verb which,
    struct cmd_params *p, const char **why)
{
	size_t pos, tok, count = 0;
	unsigned seen = 0;

	if (why != NULL)
		*why = NULL;
	if (p == NULL)
		return cmd_fail(why, "no parameter block");
	memset(p, 0, sizeof(*p));
	if (which != CMD_MAIL && which != CMD_RCPT)
		return cmd_fail(why, "parameters on a command without path");
	if (s == NULL)
		return len == 0 ? 0 : cmd_fail(why, "malformed parameter");
	/* Count first, so a long list is refused before any of it is read. */
	for (pos = 0; pos < len; pos++)
		if (s[pos] != ' ' && (pos == 0 || s[pos - 1] == ' '))
			count++;
	if (count > CMD_PARAM_MAX)
		return cmd_fail(why, "too many parameters");
	for (pos = 0;;) {
		while (pos < len && s[pos] == ' ')
			pos++;
		if (pos >= len)
			return 0;
		tok = pos;
		while (pos < len && s[pos] != ' ')
			pos++;
		if (cmd_param(s + tok, pos - tok, which, &seen, p, why) < 0)
			return -1;
	}
}

/*
 * One esmtp-param: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT /
 * "-"), esmtp-value = 1*(%d33-60 / %d62-126) (§4.1.2).  The syntax is
 * checked before the table so a malformed token of a known name says so.
 */
static int
cmd_param(const char *t, size_t len, enum cmd_verb which, unsigned *seen,
    struct cmd_params *p, const char **why)
{
	const struct cmd_param_def *d;
	const char *value = NULL;
	size_t klen, vlen = 0, i;
	unsigned char c;

	for (klen = 0; klen < len && t[klen] != '='; klen++) {
		c = (unsigned char)t[klen];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || (c == '-' && klen > 0)))
			return cmd_fail(why, "malformed parameter");
	}
	if (klen == 0)
		return cmd_fail(why, "malformed parameter");
	if (klen < len) {
		value = t + klen + 1;
		vlen = len - klen - 1;
		if (vlen == 0)
			return cmd_fail(why, "malformed parameter");
		for (i = 0; i < vlen; i++) {
			c = (unsigned char)value[i];
			if (c < 33 || c > 126 || c == '=')
				return cmd_fail(why, "malformed parameter");
		}
	}
	for (i = 0; i < sizeof(cmd_param_defs) / sizeof(cmd_param_defs[0]);
	    i++) {
		d = &cmd_param_defs[i];
		if (d->verb != which || !cmd_ieq(t, klen, d->key))
			continue;
		if (*seen & d->bit)
			return cmd_fail(why, "duplicate parameter");
		*seen |= d->bit;
		return d->parse(value, vlen, p, why);
	}
	/* Postfix's reply names it; it is printable ASCII (checked above),
	 * and cut to a bound. */
	snprintf(cmd_unsupported, sizeof(cmd_unsupported), "%.*s", (int)len,
	    t);
	return cmd_fail(why, cmd_unsupported);
}

/* RFC 1870 §3: size-value = 1*20DIGIT; anything past 2^64-1 is refused
 * rather than wrapped into a small number. */
static int
cmd_param_size(const char *v, size_t vlen, struct cmd_params *p,
    const char **why)
{
	uint64_t n = 0;
	unsigned d;
	size_t i;

	if (v == NULL)
		return cmd_fail(why, "bad SIZE");
	for (i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return cmd_fail(why, "bad SIZE");
		d = (unsigned)(v[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return cmd_fail(why, "SIZE too large");
		n = n * 10 + d;
	}
	p->has_size = 1;
	p->size = n;
	return 0;
}

/* RFC 6152: BODY=7BIT / BODY=8BITMIME; BINARYMIME (RFC 3030) is not
 * offered, so it is refused like any other value. */
static int
cmd_param_body(const char *v, size_t vlen, struct cmd_params *p,
    const char **why)
{
	if (v != NULL && cmd_ieq(v, vlen, "7BIT"))
		p->body_7bit = 1;
	else if (v != NULL && cmd_ieq(v, vlen, "8BITMIME"))
		p->body_8bit = 1;
	else
		return cmd_fail(why, "bad BODY");
	return 0;
}

/* RFC 6531 §3.4: SMTPUTF8 takes no value. */
static int
cmd_param_smtputf8(const char *v, size_t vlen, struct cmd_params *p,
    const char **why)
{
	(void)vlen;
	if (v != NULL)
		return cmd_fail(why, "SMTPUTF8 takes no value");
	p->smtputf8 = 1;
	return 0;
}

/* RFC 4954 §5: AUTH=<> or AUTH=xtext.  ferry does not pass the
 * submitter identity on, so any well-formed value is accepted and
 * dropped. */
static int
cmd_param_auth(const char *v, size_t vlen, struct cmd_params *p,
    const char **why)
{
	(void)vlen;
	if (v == NULL)
		return cmd_fail(why, "AUTH needs a value");
	p->has_auth = 1;
	return 0;
}

/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) const char *
cmd_name(enum cmd_verb verb)
{
	if ((unsigned)verb >= CMD_COUNT)
		verb = CMD_UNKNOWN;
	return textfile_nth(cmd_names, verb);
}
