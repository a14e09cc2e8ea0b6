/*
 * hdr.h - the header lines ferry itself writes into messages: the RFC
 * 5322 date and the Received: trace line (RFC 5321 §4.4).  Pure
 * formatting into a caller's buffer; returns the length written, or -1 if
 * it did not fit.
 */
#ifndef FERRY_HDR_H
#define FERRY_HDR_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define HDR_DATE_MAX	64
/* Every name at its largest (smtp.c asserts it): HELO 255, IPv6 text,
 * TLS description, hostname 254, queue ID, a 511-byte alias result,
 * the date.  1024 did not hold them: 451 for such a client. */
#define HDR_RECEIVED_MAX 1536
#define HDR_MSGID_RAND	8	/* random bytes in a Message-ID */

int hdr_date(char *, size_t, time_t);
/* "Date: ...\r\nMessage-ID: <...>\r\n", each only if asked for (a
 * message that lacks it); *msgid, if not NULL, points at the new ID
 * inside buf.  The ID is unique without state: the time in hex seconds
 * (as Postfix's queue IDs start) and 64 random bits, @hostname. */
int hdr_missing(char *, size_t, int date, int msgid, const char *hostname,
    time_t, const char **msgid_out);
/* Network: "from HELO (unknown [IP])", "[IPv6:IP]" for IPv6; local
 * (helo NULL): "from userid".
 * tls: "TLSv1.2 with cipher ... (256/256 bits)" or NULL (clear text). */
int hdr_received(char *, size_t, const char *helo, const char *ip,
    const char *tls, const char *proto, const char *hostname,
    const char *id, const char *rcpt_or_null, long uid, time_t);

#endif
