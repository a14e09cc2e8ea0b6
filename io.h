/*
 * io.h - one buffered, non-blocking connection on the loop.
 *
 * Owns the socket, a bounded input buffer, a growing but capped output
 * buffer and the inactivity timer.  The protocol above reads complete
 * input with io_in()/io_consume() and queues replies with io_write();
 * output is flushed when the loop finds the socket writable.  TLS (a later
 * layer) slots in under io_read/io_write without the protocol noticing.
 *
 * The event callback may call io_free() on its own io: io never touches
 * the struct after calling it.
 */
#ifndef FERRY_IO_H
#define FERRY_IO_H

#include <stddef.h>
#include <stdint.h>

#define IO_IN_SIZE	4096		/* bounded: commands are 512, lines 1000 */
#define IO_OUT_MAX	(64 * 1024)	/* replies queued before we stop reading */

enum io_event {
	IO_IN,		/* new input is buffered */
	IO_DRAINED,	/* everything queued was written */
	IO_EOF,		/* the peer closed */
	IO_ERR,		/* read/write failed; errno says why */
	IO_TIMEOUT,	/* no input for the configured time */
	IO_TLS,		/* io_start_tls(): the handshake is done */
};

struct io;
struct tls_conn;

struct io *io_new(int fd, void (*cb)(struct io *, enum io_event, void *),
    void *arg);
void io_free(struct io *);		/* closes the fd */
int io_fd(const struct io *);

void io_set_timeout(struct io *, unsigned ms);	/* 0: none */
/* IO_TIMEOUT ms from now, however much comes in meanwhile: a peer that
 * trickles its bytes cannot put it off (io_set_timeout() undoes it). */
void io_set_deadline(struct io *, unsigned ms)
    __attribute__((noinline));	/* measured: smaller than 8 copies */
void io_pause(struct io *);		/* stop reading */
void io_resume(struct io *);		/* and re-deliver buffered input */

const char *io_in(const struct io *, size_t *len);
void io_consume(struct io *, size_t);
int io_in_full(const struct io *);

/* Queue output; it leaves on io_flush() (or when the socket is writable
 * again after a flush that would have blocked).  -1: over the cap. */
int io_write(struct io *, const void *, size_t);
int io_printf(struct io *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
size_t io_queued(const struct io *);
/* Flush now if possible; the rest goes out when the socket is writable. */
void io_flush(struct io *);

/*
 * Switch to TLS over conn (io owns it from here and frees it): once the
 * output queued so far (the 220 to STARTTLS) is written, the handshake
 * runs on the loop and ends with IO_TLS, or IO_ERR (tls_conn_error()
 * says why) or IO_TIMEOUT.  Input received in clear and not yet
 * consumed is thrown away first: nothing pipelined behind STARTTLS may
 * count as said inside TLS (RFC 3207 section 4.2, CVE-2011-0411).
 */
void io_start_tls(struct io *, struct tls_conn *);
struct tls_conn *io_tls(const struct io *);	/* NULL: clear text */
/* Bytes of input thrown away by io_start_tls(). */
size_t io_tls_discarded(const struct io *);

#endif
