/*
 * net.h - the outbound TCP connect shared by the delivery (deliver.c) and
 * `ferry check` (check.c): one place for how ferry opens a connection to
 * an SMTP server (non-blocking, close-on-exec, TCP_NODELAY).  It owns no
 * state and knows nothing of the loop: the caller watches the fd for
 * writability and reads SO_ERROR, as before.
 *
 * net_connect() returns the fd with the connection started (or already
 * made), or -1 with errno set (socket() or connect() failed; nothing is
 * left open).  Either way ip has the address as text (net_ntop()), for
 * the caller's message.
 *
 * net_addr() reads an IPv4 or IPv6 address literal ("[192.0.2.1]" and
 * "[2001:db8::1]" without the brackets): 0, or -1 if s is no address.
 */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stddef.h>

struct dns_addr;

struct sockaddr_storage;
struct sockaddr_un;

/* The address in ss as text into ip[INET6_ADDRSTRLEN]; "" if none. */
void net_ntop(const struct sockaddr_storage *, char *ip);
/* ip: INET6_ADDRSTRLEN bytes. */
int net_connect(struct dns_addr *, unsigned port, char *ip);
int net_addr(const char *s, struct dns_addr *);
/* path as a Unix socket's address, the rest of *sun zeroed: 0, or -1
 * (ENAMETOOLONG) when it does not fit.  For the local socket's listener
 * and its clients, and syslog's /dev/log. */
int net_unix(struct sockaddr_un *sun, const char *path);

#endif
