/*
 * addr.h - RFC 5321 mailbox parsing and the routing tricks relay policy
 * must see through.  Pure functions over explicit lengths; fuzzed.
 *
 * addr_parse_path() takes what follows "MAIL FROM:" or "RCPT TO:" up to
 * the parameters: "<local@domain>" (RFC 5321 §4.1.2, but with the stray
 * dots Postfix allows in an unquoted local part), strips an A-d-l
 * source route ("@a,@b:" - §4.1.2 says receivers SHOULD ignore it), and
 * writes the plain address ("" for the null path).  It returns the length
 * consumed, or -1 with *why set, and never writes past outsz.
 */
#ifndef FERRY_ADDR_H
#define FERRY_ADDR_H

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define ADDR_DOMAIN_MAX	255	/* §4.5.3.1.2 */
#define ADDR_PATH_MAX	256	/* §4.5.3.1.3, with the brackets */

#define ADDR_UTF8	0x1u	/* SMTPUTF8 given: UTF-8 allowed (RFC 6531) */
#define ADDR_NULL_OK	0x2u	/* "<>" allowed (MAIL FROM) */
#define ADDR_BARE_OK	0x4u	/* "postmaster" without a domain (RCPT) */
#define ADDR_ALONE	0x8u	/* the path, no parameters: an address read
				   from a file or argument, where what
				   follows a SP would reach the relay */

int addr_parse_path(const char *s, size_t len, unsigned flags,
    char *out, size_t outsz, const char **why);

/* Pointer to the domain part of a parsed address (after the last '@'
 * outside quotes), or NULL for a bare local part. */
const char *addr_domain(const char *addr);
/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
size_t addr_utf8_len(const unsigned char *p, size_t n);
/* 1 for the well-formed sequence of k bytes at p when it is a control or
 * an invisible direction or line mark (refused in addresses, '?' in log
 * lines). */
int addr_utf8_hidden(const unsigned char *p, size_t k);

/* Non-zero when the local part hides another destination: '%', '!', or
 * an '@' inside quotes (Postfix's allow_untrusted_routing = no). */
int addr_has_routing(const char *addr);

/*
 * An address-literal domain (RFC 5321 §4.1.3: "[192.0.2.1]",
 * "[IPv6:2001:db8::1]", the tag in any case) as the address it names:
 * family and address in ss (port 0), its canonical text in ip
 * (INET6_ADDRSTRLEN bytes); an IPv4-mapped IPv6 address is the IPv4 one
 * it reaches.  Returns ss's length, or 0 when domain (NULL included) is
 * no such literal.
 */
socklen_t addr_literal(const char *domain, struct sockaddr_storage *ss,
    char *ip);

/* Lower-case copy of a domain for comparisons. */
void addr_domain_lower(const char *in, char *out, size_t outsz);

/* A bare local part gets @origin (root -> root@origin), at the SMTP door
 * and in the pickup; an address too long for that stays as it is. */
void addr_qualify(const char *addr, const char *origin, char *out,
    size_t outsz);

/* addr in a list of len bytes of NUL-ended addresses, compared without
 * case: one recipient once, at the SMTP door and in the pickup alike. */
int addr_list_has(const char *list, size_t len, const char *addr);

/* strcasecmp(): strncasecmp() is imported anyway, and strcasecmp()
 * would be one libc import more. */
int addr_casecmp(const char *, const char *);

/* RFC 5321's Let-dig, isalnum() in the C locale ferry runs in: an ASCII
 * letter or digit.  The parsers of names and words share it. */
int addr_letdig(int c);

#endif
