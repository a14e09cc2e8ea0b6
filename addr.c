/*
 * addr.c - the RFC 5321 §4.1.2 Path grammar (with RFC 6531 UTF-8) and the
 * questions relay policy asks of a parsed address: which domain, and does
 * the local part hide another destination.  Pure: no state, no I/O, no
 * allocation.  Every parser takes an explicit length and reads only inside
 * it; output is written only once the whole path has been validated.
 * Errors return -1 with *why set to a short phrase fit for a 5xx reply.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

#define ADDR_LABEL_MAX	63	/* RFC 1035 §2.3.4 */
#define ADDR_LIT_MAX	INET6_ADDRSTRLEN	/* longest literal inet_pton reads */
#define ADDR_IPV6_TAG	"IPv6:"	/* §4.1.3; ABNF strings are case-insensitive */
/* "[IPv6:" literal "]" always fits a domain: addr_scan_domain() need not
 * check the length of one. */
_Static_assert(sizeof(ADDR_IPV6_TAG) + ADDR_LIT_MAX + 1 <= ADDR_DOMAIN_MAX,
    "addr: literal length");

/* One pass over the path; pos only moves forward and never past len. */
struct addr_scan {
	const unsigned char *s;
	size_t len;
	size_t pos;
	unsigned flags;
	const char *why;
	struct in6_addr lit;	/* addr_scan_literal(): the address */
	int lit_af;		/* ... and its family */
};

/* noinline on three: measured smaller than LTO's inlined copies. */
static int	addr_fail(struct addr_scan *, const char *)
		    __attribute__((noinline));
static int	addr_unexpected(struct addr_scan *, const char *);
static int	addr_scan_8bit(struct addr_scan *);
static int	addr_is_atext(unsigned char);
static int	addr_scan_route(struct addr_scan *);
static int	addr_scan_local(struct addr_scan *);
static int	addr_scan_quoted(struct addr_scan *)
		    __attribute__((noinline));
static int	addr_scan_dotstring(struct addr_scan *);
static int	addr_scan_domain(struct addr_scan *);
static int	addr_scan_name(struct addr_scan *);
static int	addr_check_label(struct addr_scan *, size_t, size_t);
static int	addr_scan_literal(struct addr_scan *)
		    __attribute__((noinline));
static int	addr_is_tag(const char *, size_t, const char *);

/* RFC 5322 §3.2.3 atext, less ALPHA and DIGIT. */
static const char addr_atext_punct[] = "!#$%&'*+-/=?^_`{|}~";

static int
addr_fail(struct addr_scan *sc, const char *why)
{
	/* Keep the first, most specific reason; callers only add context. */
	if (sc->why == NULL)
		sc->why = why;
	return -1;
}

/*
 * The scan stopped on a byte the grammar does not allow here.  Name the
 * byte when it says more than the context does: the end of input means
 * the closing bracket never came, a control byte (NUL included) is never
 * part of an address.
 */
static int
addr_unexpected(struct addr_scan *sc, const char *context)
{
	unsigned char c;

	if (sc->pos >= sc->len)
		return addr_fail(sc, "missing >");
	c = sc->s[sc->pos];
	if (c < 0x20 || c == 0x7f)
		return addr_fail(sc, "control character in address");
	return addr_fail(sc, context);
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629 §4), or 0.  The
 * second-byte ranges are what exclude overlong forms (C0, C1, E0 80-9F,
 * F0 80-8F), surrogates (ED A0-BF) and code points past U+10FFFF.
 */
/*
 * C1 controls (U+0080-009F: terminal escapes, not Net-Unicode, RFC 5198),
 * the direction marks, embeddings, overrides and isolates (U+061C,
 * U+200E-200F, U+202A-202E, U+2066-2069: Unicode's bidi controls, UAX 9
 * table 4) and the line and paragraph separators (U+2028-2029): text
 * that shows otherwise than it is, or a line break a viewer may draw.
 */
int
addr_utf8_hidden(const unsigned char *p, size_t k)
{
	return (k == 2 && ((p[0] == 0xc2 && p[1] < 0xa0) ||
	    (p[0] == 0xd8 && p[1] == 0x9c))) || (k == 3 &&
	    p[0] == 0xe2 && ((p[1] == 0x80 && (p[2] == 0x8e ||
	    p[2] == 0x8f || (p[2] >= 0xa8 && p[2] <= 0xae))) ||
	    (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)));
}

size_t
addr_utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		need = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		need = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < need; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return need;
}

/* A byte >= 0x80 at pos: one UTF-8 character, and only under SMTPUTF8. */
static int
addr_scan_8bit(struct addr_scan *sc)
{
	const unsigned char *p;
	size_t n;

	if (!(sc->flags & ADDR_UTF8))
		return addr_fail(sc, "8-bit address without SMTPUTF8");
	p = sc->s + sc->pos;
	n = addr_utf8_len(p, sc->len - sc->pos);
	if (n == 0)
		return addr_fail(sc, "invalid UTF-8 in address");
	/* No place in an address; they would reach the log and root's
	 * mailq. */
	if (addr_utf8_hidden(p, n))
		return addr_fail(sc, "control character in address");
	sc->pos += n;
	return 0;
}

static int
addr_is_atext(unsigned char c)
{
	if (addr_letdig(c))
		return 1;
	return c != '\0' && strchr(addr_atext_punct, c) != NULL;
}

/* Without the ctype table (__ctype_b_loc), whose last users these tests
 * were.  c | 0x20 folds upper into lower case and moves nothing else
 * into a..z. */
int
addr_letdig(int c)
{
	return (unsigned)((c | 0x20) - 'a') < 26 || (unsigned)(c - '0') < 10;
}

/*
 * A-d-l ":" (§4.1.2): "@a.example,@b.example:".  §4.1.2 says a receiver
 * SHOULD ignore the route, so it is checked for syntax and dropped.
 */
static int
addr_scan_route(struct addr_scan *sc)
{
	for (;;) {
		if (sc->pos >= sc->len || sc->s[sc->pos] != '@')
			return addr_unexpected(sc, "bad source route");
		sc->pos++;
		if (addr_scan_name(sc) < 0)
			return -1;
		if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
			sc->pos++;
			continue;
		}
		if (sc->pos < sc->len && sc->s[sc->pos] == ':') {
			sc->pos++;
			return 0;
		}
		return addr_unexpected(sc, "bad source route");
	}
}

/* Local-part = Dot-string / Quoted-string (§4.1.2).  Not held to
 * §4.5.3.1.1's 64 octets, only to the path's 256: §4.5.3.1 asks for no
 * limits where none are needed, VERP and SRS senders pass 64
 * ("list-bounces+long.name=example.com@"), and Postfix takes them. */
static int
addr_scan_local(struct addr_scan *sc)
{
	if (sc->pos < sc->len && sc->s[sc->pos] == '"')
		return addr_scan_quoted(sc);
	return addr_scan_dotstring(sc);
}

/*
 * Quoted-string: qtextSMTP is %d32-33 / %d35-91 / %d93-126 plus, under
 * RFC 6531 §3.3, UTF8-non-ascii; quoted-pairSMTP is "\" %d32-126 and is
 * not widened to UTF-8.
 */
static int
addr_scan_quoted(struct addr_scan *sc)
{
	unsigned char c;

	sc->pos++;
	for (;;) {
		if (sc->pos >= sc->len)
			return addr_fail(sc, "unterminated quoted string");
		c = sc->s[sc->pos];
		if (c == '"') {
			sc->pos++;
			return 0;
		}
		if (c < 0x20 || c == 0x7f)
			return addr_fail(sc, "control character in address");
		if (c >= 0x80) {
			if (addr_scan_8bit(sc) < 0)
				return -1;
			continue;
		}
		if (c == '\\') {
			sc->pos++;
			if (sc->pos >= sc->len)
				return addr_fail(sc,
				    "unterminated quoted string");
			c = sc->s[sc->pos];
			if (c < 0x20 || c == 0x7f)
				return addr_fail(sc,
				    "control character in address");
			if (c >= 0x80)
				return addr_fail(sc, "bad quoted pair");
		}
		sc->pos++;
	}
}

/*
 * Dot-string = Atom *("." Atom) (§4.1.2), except that dots may lead,
 * trail or come in a row: "a..b@", ".a@", "a.@" (old Japanese mobile
 * carriers handed such addresses out).  Postfix takes them by default
 * (strict_rfc821_envelopes = no), and refusing them loses their mail; a
 * dot routes nowhere, and the address is kept as written.
 */
static int
addr_scan_dotstring(struct addr_scan *sc)
{
	size_t start = sc->pos;
	unsigned char c;

	while (sc->pos < sc->len) {
		c = sc->s[sc->pos];
		if (addr_is_atext(c) || c == '.')
			sc->pos++;
		else if (c >= 0x80) {
			if (addr_scan_8bit(sc) < 0)
				return -1;
		} else
			break;
	}
	if (sc->pos == start)
		return addr_unexpected(sc, "bad local part");
	return 0;
}

/* Domain / address-literal (§4.1.2), at most 255 octets (§4.5.3.1.2):
 * addr_scan_name() checks that, and no literal inet_pton() takes comes
 * near it. */
static int
addr_scan_domain(struct addr_scan *sc)
{
	if (sc->pos < sc->len && sc->s[sc->pos] == '[')
		return addr_scan_literal(sc);
	return addr_scan_name(sc);
}

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str],
 * or a U-label under SMTPUTF8 (RFC 6531 §3.3).  The scan stops on the
 * first byte that cannot be in a name; the caller judges that byte.
 * XXX a U-label is limited to 63 octets here, stricter than its A-label.
 */
static int
addr_scan_name(struct addr_scan *sc)
{
	size_t start = sc->pos, label = sc->pos;
	unsigned char c;

	while (sc->pos < sc->len) {
		c = sc->s[sc->pos];
		if (addr_letdig(c) || c == '-')
			sc->pos++;
		else if (c >= 0x80) {
			if (addr_scan_8bit(sc) < 0)
				return -1;
		} else if (c == '.') {
			if (addr_check_label(sc, label, sc->pos) < 0)
				return -1;
			label = ++sc->pos;
		} else
			break;
	}
	if (sc->pos == start)
		return addr_unexpected(sc, "bad domain");
	if (addr_check_label(sc, label, sc->pos) < 0)
		return -1;
	if (sc->pos - start > ADDR_DOMAIN_MAX)
		return addr_fail(sc, "domain too long");
	return 0;
}

/* One label [from, to): 1..63 octets, no '-' at either end (RFC 1123 §2.1). */
static int
addr_check_label(struct addr_scan *sc, size_t from, size_t to)
{
	if (to == from)
		return addr_fail(sc, "bad domain");
	if (to - from > ADDR_LABEL_MAX)
		return addr_fail(sc, "domain label too long");
	if (sc->s[from] == '-' || sc->s[to - 1] == '-')
		return addr_fail(sc, "bad domain");
	return 0;
}

/*
 * address-literal (§4.1.3): "[" dotted quad "]" or "[IPv6:" addr "]",
 * each checked by inet_pton.  A General-address-literal (any other tag)
 * names nothing ferry could deliver to, so it is refused.
 */
static int
addr_scan_literal(struct addr_scan *sc)
{
	char buf[ADDR_LIT_MAX];
	const char *text;
	size_t start, n, taglen = sizeof(ADDR_IPV6_TAG) - 1;
	unsigned char c;
	int af = AF_INET;

	start = ++sc->pos;
	/* dcontent = %d33-90 / %d94-126; '>' is dcontent but cannot be in
	 * an IP literal, and stopping there names the missing ']'. */
	while (sc->pos < sc->len) {
		c = sc->s[sc->pos];
		if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' ||
		    c == '>')
			break;
		sc->pos++;
	}
	if (sc->pos >= sc->len || sc->s[sc->pos] != ']')
		return addr_unexpected(sc, "bad address literal");
	text = (const char *)sc->s + start;
	n = sc->pos - start;
	sc->pos++;
	if (addr_is_tag(text, n, ADDR_IPV6_TAG)) {
		af = AF_INET6;
		text += taglen;
		n -= taglen;
	} else if (memchr(text, ':', n) != NULL)
		return addr_fail(sc, "unsupported address literal");
	if (n == 0 || n >= sizeof(buf))
		return addr_fail(sc, "bad address literal");
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (inet_pton(af, buf, &sc->lit) != 1)
		return addr_fail(sc, "bad address literal");
	sc->lit_af = af;
	return 0;
}

/* Does text[0..n) start with tag, ASCII case-insensitively?  ferry never
 * calls setlocale(), so strncasecmp() keeps to the "C" locale. */
static int
addr_is_tag(const char *text, size_t n, const char *tag)
{
	size_t k = strlen(tag);

	return n >= k && strncasecmp(text, tag, k) == 0;
}

int
addr_parse_path(const char *s, size_t len, unsigned flags,
    char *out, size_t outsz, const char **why)
{
	struct addr_scan sc;
	size_t lstart, lend, dstart = 0, dend = 0, need;
	int rc = -1;

	sc.s = (const unsigned char *)s;
	sc.len = s == NULL ? 0 : len;
	sc.pos = 0;
	sc.flags = flags;
	sc.why = NULL;
	if (out != NULL && outsz > 0)
		out[0] = '\0';

	if (sc.len == 0 || sc.s[0] != '<') {
		addr_fail(&sc, "missing <");
		goto done;
	}
	sc.pos = 1;
	lstart = lend = sc.pos;
	if (sc.pos < sc.len && sc.s[sc.pos] == '>') {
		/* The null reverse-path (§4.5.5): bounces only. */
		if (!(flags & ADDR_NULL_OK)) {
			addr_fail(&sc, "null address not allowed here");
			goto done;
		}
	} else {
		if (sc.pos < sc.len && sc.s[sc.pos] == '@' &&
		    addr_scan_route(&sc) < 0)
			goto done;
		lstart = sc.pos;
		if (addr_scan_local(&sc) < 0)
			goto done;
		lend = sc.pos;
		if (sc.pos < sc.len && sc.s[sc.pos] == '@') {
			dstart = ++sc.pos;
			if (addr_scan_domain(&sc) < 0)
				goto done;
			dend = sc.pos;
		} else if (sc.pos < sc.len && sc.s[sc.pos] == '>') {
			if (!(flags & ADDR_BARE_OK)) {
				addr_fail(&sc, "missing domain");
				goto done;
			}
		} else {
			addr_unexpected(&sc, "bad local part");
			goto done;
		}
	}
	if (sc.pos >= sc.len || sc.s[sc.pos] != '>') {
		addr_unexpected(&sc, "bad domain");
		goto done;
	}
	sc.pos++;
	if (sc.pos > ADDR_PATH_MAX) {
		addr_fail(&sc, "path too long");
		goto done;
	}
	/* §4.1.1.2/§4.1.1.3: the path ends the line or a SP starts the
	 * parameters; "<a@b>x" must not leave "x" to look like one. */
	if (sc.pos < sc.len && (sc.s[sc.pos] != ' ' || flags & ADDR_ALONE)) {
		addr_fail(&sc, "junk after address");
		goto done;
	}

	need = (lend - lstart) + (dend > dstart ? 1 + (dend - dstart) : 0);
	if (out == NULL || need >= outsz) {
		addr_fail(&sc, "address too long");
		goto done;
	}
	memcpy(out, s + lstart, lend - lstart);
	if (dend > dstart) {
		out[lend - lstart] = '@';
		memcpy(out + (lend - lstart) + 1, s + dstart, dend - dstart);
	}
	out[need] = '\0';
	rc = (int)sc.pos;
done:
	if (why != NULL)
		*why = rc < 0 ? sc.why : NULL;
	return rc;
}

const char *
addr_domain(const char *addr)
{
	const char *p, *at = NULL;
	int quoted = 0;

	if (addr == NULL)
		return NULL;
	for (p = addr; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == '@' && !quoted)
			at = p;
	}
	return at == NULL ? NULL : at + 1;
}

/*
 * Every way a local part can name another host - "a%b@relay" (percent
 * hack), "b!a@relay" (UUCP bang path), "\"a@b\"@relay" (quoted '@'), and
 * a stray unquoted '@' in an address that did not come from
 * addr_parse_path() - is flagged, quoted or not: a downstream MTA that
 * honours any of them would turn ferry into an open relay.
 */
int
addr_has_routing(const char *addr)
{
	const char *dom, *p, *end;

	if (addr == NULL)
		return 0;
	dom = addr_domain(addr);
	end = dom != NULL ? dom - 1 : addr + strlen(addr);
	for (p = addr; p < end; p++)
		if (*p == '%' || *p == '!' || *p == '@')
			return 1;
	return 0;
}

socklen_t
addr_literal(const char *domain, struct sockaddr_storage *ss, char *ip)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	struct addr_scan sc;

	memset(ss, 0, sizeof(*ss));
	memset(&sc, 0, sizeof(sc));
	if (domain == NULL || domain[0] != '[')
		return 0;
	sc.s = (const unsigned char *)domain;
	sc.len = strlen(domain);
	if (addr_scan_literal(&sc) < 0 || sc.pos != sc.len)
		return 0;
	/* ::ffff:192.0.2.1 is where 192.0.2.1 is reached. */
	if (sc.lit_af == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sc.lit)) {
		sc.lit_af = AF_INET;
		memmove(&sc.lit, &sc.lit.s6_addr[12], 4);
	}
	ss->ss_family = (sa_family_t)sc.lit_af;
	(void)inet_ntop(sc.lit_af, &sc.lit, ip, INET6_ADDRSTRLEN);
	if (sc.lit_af == AF_INET6) {
		s6->sin6_addr = sc.lit;
		return sizeof(*s6);
	}
	memcpy(&s4->sin_addr, &sc.lit, 4);
	return sizeof(*s4);
}

void
addr_domain_lower(const char *in, char *out, size_t outsz)
{
	size_t i;
	char c;

	if (out == NULL || outsz == 0)
		return;
	for (i = 0; in != NULL && in[i] != '\0' && i + 1 < outsz; i++) {
		c = in[i];
		/* ASCII only: tolower() would follow the locale. */
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[i] = '\0';
}

int
addr_list_has(const char *list, size_t len, const char *addr)
{
	size_t o;

	for (o = 0; o < len; o += strlen(list + o) + 1)
		if (addr_casecmp(list + o, addr) == 0)
			return 1;
	return 0;
}

void
addr_qualify(const char *addr, const char *origin, char *out, size_t outsz)
{
	if (addr_domain(addr) != NULL || (size_t)snprintf(out, outsz, "%s@%s",
	    addr, origin) >= outsz)
		snprintf(out, outsz, "%s", addr);
}

int
addr_casecmp(const char *a, const char *b)
{
	return strncasecmp(a, b, SIZE_MAX);
}
