/*
 * net.h - the outbound TCP connect shared by the delivery (deliver.c) and
 * `ferry check` (check.c): one place for how ferry opens a connection to
 * an SMTP server (non-blocking, close-on-exec, TCP_NODELAY).  It owns no
 * state and knows nothing of the loop: the caller watches the fd for
 * writability and reads SO_ERROR, as before.
 *
 * net_connect() returns the fd with the connection started (or already
 * made), or -1 with errno set (socket() or connect() failed; nothing is
 * left open).  Either way ip has the address as text, for the caller's
 * message.
 */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stddef.h>

struct dns_addr;

int net_connect(struct dns_addr *, unsigned port, char *ip, size_t ipsz);

#endif
