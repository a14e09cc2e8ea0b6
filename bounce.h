/*
 * bounce.h - delivery status notifications (RFC 3464) for recipients
 * that failed for good, and optional delay warnings.
 *
 * bounce_compose() writes a complete DSN message (headers, a
 * multipart/report with a human-readable part, message/delivery-status,
 * and the original headers as text/rfc822-headers) into a queue writer
 * the caller created with the null sender and the original sender as its
 * only recipient.  The caller never bounces a message that has QF_BOUNCE
 * or the null sender (never bounce a bounce).  It writes the body only:
 * the caller finishes and commits the writer.
 */
#ifndef FERRY_BOUNCE_H
#define FERRY_BOUNCE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct queue_writer;
struct queue_info;

enum bounce_kind { BOUNCE_FAILED, BOUNCE_DELAYED };

struct bounce_rcpt {
	const char *address;
	const char *status;		/* enhanced code, "5.1.1" */
	const char *diagnostic;		/* the reason as logged: ours, or a
					   server's (REPLY_SAID), whose
					   name and bare reply the report
					   gives as Remote-MTA and smtp
					   Diagnostic-Code */
	time_t retry_until;		/* delayed: when the queue gives up
					   (Will-Retry-Until), 0 unknown */
};

/* original_headers: the original message's header section (up to the
 * first empty line), with its length; it is copied verbatim. */
int bounce_compose(struct queue_writer *, enum bounce_kind,
    const char *hostname, const struct queue_info *original,
    const struct bounce_rcpt *, size_t nrcpt,
    const char *original_headers, size_t headers_len, time_t now);

#endif
