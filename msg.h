/*
 * msg.h - pure helpers over message text for the sendmail interface and
 * mailq: stdin into CRLF lines (msg_reader), the RFC 5322 header section
 * (msg_head_scan, msg_field_next), repairing it for submission
 * (msg_build: drop Bcc, fold or split lines over 998 octets), address
 * lists for -t (msg_addr_list), dot-stuffing, display names and JSON
 * strings.  No I/O and no global state; every input has an explicit
 * length.  Functions return 0, or -1 (ENOMEM, or a syntax error with a
 * short *why).
 */
#ifndef FERRY_MSG_H
#define FERRY_MSG_H

#include <stddef.h>
#include <stdint.h>

#define MSG_LINE_MAX	998	/* RFC 5322 §2.1.1, octets without CRLF */
#define MSG_ADDR_MAX	512	/* one address from a list, with NUL */
/* Received: fields a message may bring, as Postfix's hopcount_limit.
 * RFC 5321 section 6.3 asks for "at least 100"; Postfix (50, its own
 * field counted), Exim (30) and sendmail (25) stop loops sooner, and
 * no route of an honest message comes near 50. */
#define MSG_HOP_LIMIT	50

/* A growing byte buffer; { NULL, 0, 0 } is empty. */
struct msg_buf {
	char *p;
	size_t len, cap;
};

int msg_buf_add(struct msg_buf *, const void *, size_t);
void msg_buf_free(struct msg_buf *);

/*
 * Input normalisation, fed in chunks as read: LF ends a line, with any
 * CRs before it, and becomes CRLF; any other CR becomes a space (the
 * daemon refuses bare ones; Postfix's sendmail makes the same bytes).
 * With dot_ends, a line that is exactly "." ends the input (classic
 * sendmail without -i); it is not kept and `ended` is set.  More than
 * `limit` output bytes sets `over` and stops.  After EOF,
 * msg_reader_end() terminates a last line.
 */
struct msg_reader {
	struct msg_buf out;
	size_t limit;
	size_t line_start;	/* offset in out where this line began */
	size_t cr_held;		/* CRs not yet known as line end or space */
	uint8_t dot_ends;
	uint8_t ended;
	uint8_t over;
};

void msg_reader_init(struct msg_reader *, int dot_ends, size_t limit);
int msg_reader_feed(struct msg_reader *, const char *, size_t);
int msg_reader_end(struct msg_reader *);

/*
 * The header section of a CRLF message.  A leading mbox "From " line is
 * skipped.  Fields run until an empty line (body = after it) or the
 * first line that is neither a field nor a continuation (body = end:
 * there was no separator).
 */
struct msg_head {
	size_t start;		/* first field */
	size_t end;		/* just past the last field */
	size_t body;		/* first body byte */
};

/* One field, continuation lines and the final CRLF included. */
struct msg_field {
	size_t start, end;
	size_t name_len;	/* name at start, without trailing WSP */
	size_t value;		/* offset just after the colon */
};

void msg_head_scan(const char *, size_t, struct msg_head *);
/* Next field in [*pos, end); 1 with *f filled, 0 when there is none. */
int msg_field_next(const char *, size_t end, size_t *pos,
    struct msg_field *);
/* Case-insensitive name test. */
int msg_field_is(const char *, const struct msg_field *, const char *name);
/* A Resent- field (RFC 5322 section 3.6.6) as the field it resends: 1,
 * and f's name without the prefix; 0, f unchanged, for any other. */
int msg_field_resent(const char *, struct msg_field *);
/* One line (len without its CRLF) that starts a field: 1 with the name
 * (start 0) and value offsets in *f, else 0.  The daemon's header scan
 * (smtp.c) reads a stream line by line with it. */
int msg_field_line(const char *, size_t len, struct msg_field *);
/* Counts f in *hops if it is a Received: field (a mail loop adds one a
 * pass): 1 once there are more than MSG_HOP_LIMIT, else 0.  Both doors
 * count with it, smtp.c line by line and pickup.c over a maildrop/ file,
 * so a loop through either stops at the same field. */
int msg_hop(const char *, const struct msg_field *, unsigned *hops);

/* 1 if f is a field no queued message keeps, as Postfix's
 * message_drop_headers: Bcc:, Resent-Bcc:, Return-Path: and
 * Content-Length:.  Both doors drop them, msg_build() and smtp.c. */
int msg_field_drop(const char *, const struct msg_field *);

/*
 * out = the fields (without msg_field_drop()'s when drop) + add
 * (whole CRLF lines we supply) + an empty line + the body.  Header lines
 * over MSG_LINE_MAX are folded before a space where there is one (else a
 * CRLF SP is forced in); body lines are split with CRLF.
 */
int msg_build(struct msg_buf *out, const char *, size_t,
    const struct msg_head *, const char *add, size_t addlen, int drop);

/*
 * RFC 5322 §3.4 address-list (also a bare "user"): display names, angle
 * addresses, groups, comments, quoted strings, folding.  cb gets each
 * addr-spec with comments and folding whitespace removed (quotes kept;
 * a source route inside <> is left for addr_parse_path); a non-zero
 * return stops the walk and is returned.  end is the input offset just
 * past the address (before a '>' or a comment after it).
 */
int msg_addr_list(const char *, size_t,
    int (*cb)(void *arg, const char *addr, size_t end), void *arg,
    const char **why);

/*
 * A header value (From, To, ...: RFC 5322 address lists, folding and
 * all) onto out, with every address that has no domain given "@domain":
 * "root" and "Cron <root>" as Postfix's append_at_myorigin makes them
 * for local submissions.  Comments, groups and "<>" are kept; a value
 * msg_addr_list() cannot read ("John Smith" without <>) is left whole.
 */
int msg_qualify(struct msg_buf *out, const char *value, size_t n,
    const char *domain);

/* Append a display name: as atoms when it is only atext and spaces, else
 * as a quoted-string; control bytes are dropped. */
int msg_phrase(struct msg_buf *, const char *, size_t);

/* Append the CRLF message dot-stuffed (RFC 5321 §4.5.2) and ".\r\n". */
int msg_dot_stuff(struct msg_buf *, const char *, size_t);

int msg_has_8bit(const char *, size_t);

/* Append a JSON string (RFC 8259 §7): quotes, '\\' and control bytes
 * escaped, valid UTF-8 kept, any other byte as \ufffd. */
int msg_json_str(struct msg_buf *, const char *, size_t);

#endif
