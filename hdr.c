/*
 * hdr.c - formats the header lines ferry adds (see hdr.h).  Names that
 * came from a peer (the HELO argument) were already checked for bytes
 * that could break a header; this file only lays them out.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "hdr.h"

int
hdr_date(char *buf, size_t len, time_t t)
{
	struct tm tm;
	size_t n;

	/* A year past int (a queue file's T line may say so) leaves tm
	 * half set: the caller then writes its fallback. */
	if (localtime_r(&t, &tm) == NULL)
		return -1;
	/* RFC 5322 §3.3; the process never calls setlocale(), so English. */
	n = strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
	return n == 0 ? -1 : (int)n;
}

/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) int
hdr_received(char *buf, size_t len, const char *helo, const char *ip,
    const char *tls, const char *proto, const char *hostname,
    const char *id, const char *rcpt, long uid, time_t t)
{
	char date[HDR_DATE_MAX];
	const char *f0 = "", *f1 = "", *f2 = "";
	int n;

	if (hdr_date(date, sizeof(date), t) < 0)
		return -1;
	/* "for" only with one recipient: more would leak Bcc'd addresses. */
	if (rcpt != NULL) {
		f0 = "\r\n\tfor <";
		f1 = rcpt;
		f2 = ">";
	}
	/* Postfix's words, so header parsers that know them keep working. */
	if (helo == NULL)
		n = snprintf(buf, len, "Received: by %s (ferry, from userid %ld)"
		    "\r\n\tid %s%s%s%s; %s\r\n", hostname, uid, id, f0, f1, f2,
		    date);
	else
		/* RFC 5321 section 4.4: an address-literal, "[IPv6:...]"
		 * for IPv6, as Postfix writes it. */
		n = snprintf(buf, len, "Received: from %s (unknown [%s%s])\r\n"
		    "%s%s%s\tby %s (ferry) with %s id %s%s%s%s; %s\r\n", helo,
		    strchr(ip, ':') != NULL ? "IPv6:" : "", ip,
		    tls != NULL ? "\t(using " : "", tls != NULL ? tls : "",
		    tls != NULL ? ")\r\n" : "", hostname, proto, id, f0, f1, f2,
		    date);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

int
hdr_missing(char *buf, size_t len, int date, int msgid, const char *hostname,
    time_t now, const char **msgid_out)
{
	unsigned char rnd[HDR_MSGID_RAND];
	char hex[2 * HDR_MSGID_RAND + 1];
	size_t n = 0;
	int r;

	if (date) {
		if (len < 8 || (r = hdr_date(buf + 6, len - 8, now)) < 0)
			return -1;
		memcpy(buf, "Date: ", 6);
		memcpy(buf + 6 + r, "\r\n", 2);
		n = (size_t)r + 8;
	}
	buf[n] = '\0';
	if (msgid) {
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		r = snprintf(buf + n, len - n, "Message-ID: <%llX.%s@%s>\r\n",
		    (unsigned long long)now, hex, hostname);
		if (r < 0 || (size_t)r >= len - n)
			return -1;
		if (msgid_out != NULL)
			*msgid_out = buf + n + 12;
		n += (size_t)r;
	}
	return (int)n;
}
