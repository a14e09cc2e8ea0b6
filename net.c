/*
 * net.c - the outbound TCP connect and address literals (see net.h).  The
 * port goes into the caller's address (deliver.c and check.c keep it there
 * for the connection's lifetime), so a retry of the same address needs
 * nothing more.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dns.h"
#include "net.h"

void
net_ntop(const struct sockaddr_storage *ss, char *ip)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)
	    (const void *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)
	    (const void *)ss;

	if (inet_ntop(ss->ss_family, ss->ss_family == AF_INET6 ?
	    (const void *)&s6->sin6_addr : (const void *)&s4->sin_addr, ip,
	    INET6_ADDRSTRLEN) == NULL)
		ip[0] = '\0';
}

int
net_connect(struct dns_addr *a, unsigned port, char *ip)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&a->ss;
	int fd, one = 1, err;

	/* sin_port and sin6_port share their offset. */
	s4->sin_port = htons((uint16_t)port);
	net_ntop(&a->ss, ip);
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* DESIGN.md: without it a Nagle/delayed-ACK stall costs ~40 ms a
	 * message.  A failure only costs speed. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a->ss, a->len) == -1 &&
	    errno != EINPROGRESS) {
		err = errno;
		(void)close(fd);	/* never connected: nothing to lose */
		errno = err;
		return -1;
	}
	return fd;
}

int
net_addr(const char *s, struct dns_addr *a)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&a->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&a->ss;

	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		a->len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		a->len = sizeof(*s6);
	} else
		return -1;
	return 0;
}

int
net_unix(struct sockaddr_un *sun, const char *path)
{
	size_t n = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (n >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun->sun_path, path, n);
	return 0;
}
