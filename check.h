/*
 * check.h - `ferry check [-l LEVEL] [-p PORT] DOMAIN`: what a delivery to
 * DOMAIN would do, as one readable report (like Postfix's posttls-finger):
 * MX, A/AAAA and TLSA with their DNSSEC status, then per MX host and
 * address the connection, STARTTLS, the chain, which TLSA record matched
 * and the verdict.  No mail is sent.
 *
 * Returns a sysexits.h code: 0 every MX host would get the mail verified
 * (DANE, a pinned fingerprint, or a CA chain naming the host at secure
 * or verify); 69 (EX_UNAVAILABLE) some host would not (plaintext,
 * unauthenticated TLS, or refused by policy); 75 (EX_TEMPFAIL) nothing
 * worse than a temporary failure (a DNS lookup or a connection failed);
 * 68 (EX_NOHOST) the domain does not exist or has a null MX; 64 usage;
 * 78 a tls_policy or client certificate that does not load.
 */
#ifndef FERRY_CHECK_H
#define FERRY_CHECK_H

struct config;

int check_cli(const struct config *, int argc, char **argv);

#endif
