/*
 * fuzz_cmd.c - libFuzzer target for cmd.c, fed one command line the way
 * smtp.c will take it apart: cmd_parse, cmd_path_offset, addr_parse_path,
 * cmd_params.  Checks that the argument stays inside the line, that -1
 * means a control byte was there, and that every failure has a reason.
 */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "addr.h"
#include "cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_params(const char *s, size_t len, enum cmd_verb which)
{
	struct cmd_params p;
	const char *why = NULL;
	int rc;

	rc = cmd_params(s, len, which, &p, &why);
	if (rc == 0 && why != NULL)
		abort();
	if (rc != 0 && (rc != -1 || why == NULL))
		abort();
	if (rc == 0 && ((p.body_7bit && p.body_8bit) ||
	    (!p.has_size && p.size != 0)))
		abort();
	if (rc == 0 && which == CMD_RCPT &&
	    (p.has_size || p.body_7bit || p.body_8bit || p.smtputf8 ||
	    p.has_auth))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data, *why;
	char addr[ADDR_PATH_MAX];
	struct cmd cmd;
	size_t i, rest;
	int rc, off, used, ctl = 0;

	for (i = 0; i < size; i++)
		if (data[i] < 0x20 || data[i] == 0x7f)
			ctl = 1;
	rc = cmd_parse(line, size, &cmd);
	if (rc != (ctl ? -1 : 0))
		abort();
	/* the parameter parser on raw text, whatever the line was */
	fuzz_params(line, size, size > 0 && (data[0] & 1) ? CMD_RCPT :
	    CMD_MAIL);
	if (rc < 0)
		return 0;
	if ((int)cmd.verb < 0 || cmd.verb >= CMD_COUNT ||
	    cmd_name(cmd.verb) == NULL)
		abort();
	if (size > 0 && (cmd.arg < line || cmd.arg + cmd.arglen != line + size))
		abort();
	if (cmd.verb != CMD_MAIL && cmd.verb != CMD_RCPT) {
		if (cmd_path_offset(&cmd, CMD_MAIL) != -1 ||
		    cmd_path_offset(&cmd, CMD_RCPT) != -1)
			abort();
		return 0;
	}
	off = cmd_path_offset(&cmd, cmd.verb);
	if (off < 0)
		return 0;
	if ((size_t)off > cmd.arglen)
		abort();
	rest = cmd.arglen - (size_t)off;
	used = addr_parse_path(cmd.arg + off, rest,
	    (cmd.verb == CMD_MAIL ? ADDR_NULL_OK : ADDR_BARE_OK) |
	    (size > 0 && (data[size - 1] & 1) ? ADDR_UTF8 : 0),
	    addr, sizeof(addr), &why);
	if (used < 0)
		return 0;
	if ((size_t)used > rest)
		abort();
	fuzz_params(cmd.arg + off + used, rest - (size_t)used, cmd.verb);
	return 0;
}
