/*
 * io.c - buffered non-blocking connections (see io.h).  Owns the read and
 * write syscalls of a session and nothing of its protocol.
 *
 * Back-pressure: while more than IO_OUT_MAX/2 bytes wait to be written we
 * stop reading, so a client that pipelines without reading its replies
 * cannot make us buffer without bound.
 *
 * TLS sits under the same buffers: after io_start_tls() the bytes go
 * through the tls_conn instead of recv/send, and the protocol above sees
 * no difference.  Two things differ from a socket: a TLS record may hold
 * more than the input buffer has room for, so bytes can wait inside
 * mbedTLS where epoll cannot see them (io_consume() kicks a read for
 * them); and a write that would block must be repeated with the same
 * bytes, so its length is remembered (tls_wlen).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "io.h"
#include "loop.h"
#include "tls.h"

#define IO_OUT_INIT	512
#define IO_OUT_HIWAT	(IO_OUT_MAX / 2)
#define IO_TLS_CHUNK	16384		/* one TLS record's worth per write */

enum io_tls_state {
	IOT_NONE,		/* clear text */
	IOT_PENDING,		/* the 220 to STARTTLS is still going out */
	IOT_HANDSHAKE,
	IOT_ON,
};

/*
 * Field order is for code size: x86-64 reaches an offset below 128 with a
 * one-byte displacement, so the most-used fields come first and in[] starts
 * below 128; the rarely touched ones and the timers go after it.
 */
struct io {
	struct loop_fd lfd;		/* first: container_of() is free */
	/* Flags in bytes and in[] last: stores and tests of a byte, and
	 * every other field at a one-byte displacement, are shorter code. */
	uint8_t tls_state;	/* enum io_tls_state */
	uint8_t eof;
	uint8_t paused;
	uint8_t tls_wread;	/* the blocked TLS write waits for input */
	uint8_t blocked;	/* the last send would have blocked */
	unsigned timeout_ms;
	int err;		/* a flush failed: IO_ERR is on its way */
	unsigned hs_want;	/* LOOP_* the handshake waits for */
	size_t out_off, out_len, out_cap;
	size_t in_len;
	char *out;
	struct tls_conn *tls;
	void (*cb)(struct io *, enum io_event, void *);
	size_t tls_wlen;	/* length of the TLS write to repeat, or 0 */
	void *arg;
	size_t discarded;	/* clear text dropped at io_start_tls() */
	struct loop_timer timer;
	struct loop_timer kick;		/* re-deliver input after resume */
	char in[IO_IN_SIZE];
};

static void io_on_fd(struct loop_fd *, unsigned);
static void io_on_timer(struct loop_timer *);
/* noinline: one copy instead of six inlined ones, measured smaller. */
static void io_kick(struct io *) __attribute__((noinline));
static void io_on_kick(struct loop_timer *);
static int io_do_write(struct io *);
static int io_send(struct io *);
static void io_update(struct io *);
static void io_read(struct io *);
static void io_handshake(struct io *);
static void io_rearm(struct io *);
static void io_tell(struct io *, enum io_event);

struct io *
io_new(int fd, void (*cb)(struct io *, enum io_event, void *), void *arg)
{
	struct io *io;

	if ((io = calloc(1, sizeof(*io))) == NULL)
		return NULL;
	io->lfd.fd = fd;
	io->lfd.cb = io_on_fd;
	io->timer.cb = io_on_timer;
	io->kick.cb = io_on_kick;
	io->cb = cb;
	io->arg = arg;
	if (loop_fd_add(&io->lfd, LOOP_READ) == -1) {
		free(io);
		return NULL;
	}
	return io;
}

void
io_free(struct io *io)
{
	if (io == NULL)
		return;
	loop_fd_del(&io->lfd);
	loop_timer_cancel(&io->timer);
	loop_timer_cancel(&io->kick);
	if (io->tls != NULL) {
		if (io->tls_state == IOT_ON)
			tls_conn_close_notify(io->tls);
		tls_conn_free(io->tls);
	}
	close(io->lfd.fd);
	/* AUTH lines pass through both buffers: leave no password behind. */
	if (io->out != NULL)
		sodium_memzero(io->out, io->out_cap);
	free(io->out);
	sodium_memzero(io->in, sizeof(io->in));
	free(io);
}

int
io_fd(const struct io *io)
{
	return io->lfd.fd;
}

/* noinline: measured smaller than LTO's copies in smtp.c. */
__attribute__((noinline)) void
io_set_timeout(struct io *io, unsigned ms)
{
	io->timeout_ms = ms;
	if (ms)
		loop_timer_set(&io->timer, ms);
	else
		loop_timer_cancel(&io->timer);
}

void
io_set_deadline(struct io *io, unsigned ms)
{
	io->timeout_ms = 0;	/* so that io_rearm() leaves it alone */
	loop_timer_set(&io->timer, ms);
}

static void
io_update(struct io *io)
{
	unsigned want = 0;

	if (io->tls_state == IOT_HANDSHAKE) {
		(void)loop_fd_want(&io->lfd, io->hs_want);
		return;
	}
	/* Until the handshake starts, input is the handshake's to read. */
	if (io->tls_state != IOT_PENDING && !io->paused && !io->eof && io->in_len < sizeof(io->in) &&
	    io->out_len - io->out_off < IO_OUT_HIWAT)
		want |= LOOP_READ;
	if (io->blocked && io->out_len > io->out_off)
		want |= io->tls_wread ? LOOP_READ : LOOP_WRITE;
	/* Fails only on a dead fd; the next write reports it. */
	(void)loop_fd_want(&io->lfd, want);
}

/* noinline: measured smaller than LTO's inlined copies. */
__attribute__((noinline)) void
io_pause(struct io *io)
{
	io->paused = 1;
	io_update(io);
}

void
io_resume(struct io *io)
{
	io->paused = 0;
	io_update(io);
	if (io->in_len > 0 || io->eof ||
	    (io->tls_state == IOT_ON && tls_conn_pending(io->tls) > 0))
		io_kick(io);
}

const char *
io_in(const struct io *io, size_t *len)
{
	*len = io->in_len;
	return io->in;
}

/*
 * The len bytes at p + off to p: the destination is below the source, so
 * a forward copy is right (memcpy()'s is not defined for overlap), and
 * memmove() would be a libc import for this alone.  The bytes moved are
 * a part line or the unsent rest of the output: few.
 */
/* noinline: measured smaller than LTO's two inlined copies. */
static __attribute__((noinline)) void
io_shift(char *p, size_t off, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = p[off + i];
}

void
io_consume(struct io *io, size_t n)
{
	if (n > io->in_len)
		n = io->in_len;
	io_shift(io->in, n, io->in_len - n);
	io->in_len -= n;
	io_update(io);
	/* The peer closed behind the input just used up: say so.  Or
	 * decrypted input waits inside TLS, where epoll cannot see it. */
	if ((io->eof && io->in_len == 0) ||
	    (io->tls_state == IOT_ON && tls_conn_pending(io->tls) > 0))
		io_kick(io);
}

int
io_in_full(const struct io *io)
{
	return io->in_len == sizeof(io->in);
}

int
io_write(struct io *io, const void *buf, size_t len)
{
	size_t cap;
	char *n;

	if (io->out_off > 0 && io->out_off == io->out_len)
		io->out_off = io->out_len = 0;
	if (io->out_len + len > io->out_cap) {
		if (io->out_off > 0) {
			io_shift(io->out, io->out_off,
			    io->out_len - io->out_off);
			io->out_len -= io->out_off;
			io->out_off = 0;
		}
		cap = io->out_cap ? io->out_cap : IO_OUT_INIT;
		while (cap < io->out_len + len)
			cap *= 2;
		if (cap > IO_OUT_MAX)
			return -1;
		if (cap != io->out_cap) {
			if ((n = realloc(io->out, cap)) == NULL)
				return -1;
			io->out = n;
			io->out_cap = cap;
		}
	}
	memcpy(io->out + io->out_len, buf, len);
	io->out_len += len;
	/* No epoll change here: io_flush() writes directly and asks for
	 * LOOP_WRITE only if the socket would block. */
	return 0;
}

int
io_printf(struct io *io, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return io_write(io, buf, (size_t)n);
}

size_t
io_queued(const struct io *io)
{
	return io->out_len - io->out_off;
}

/* One send: >= 0 bytes, or -1 with errno (EAGAIN: would block). */
static int
io_send(struct io *io)
{
	size_t len = io->out_len - io->out_off;
	ssize_t n;

	if (io->tls_state != IOT_ON) {
		n = send(io->lfd.fd, io->out + io->out_off, len, MSG_NOSIGNAL);
		return n == -1 ? -1 : (int)n;
	}
	if (io->tls_wlen > 0)
		len = io->tls_wlen;	/* mbedTLS wants the same bytes */
	else if (len > IO_TLS_CHUNK)
		len = IO_TLS_CHUNK;
	n = tls_conn_write(io->tls, io->out + io->out_off, len);
	io->tls_wread = 0;
	if (n > 0) {
		io->tls_wlen = 0;
		return (int)n;
	}
	if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
		io->tls_wlen = len;
		io->tls_wread = n == TLS_WANT_READ;
		errno = EAGAIN;
	} else {
		errno = EPROTO;
	}
	return -1;
}

/* 0: progress or would block; -1: error, errno set. */
static int
io_do_write(struct io *io)
{
	int n;

	/* The handshake owns the socket; what is queued waits for it. */
	if (io->tls_state == IOT_HANDSHAKE)
		return 0;
	while (io->out_len > io->out_off) {
		if ((n = io_send(io)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				io->blocked = 1;
				break;
			}
			return -1;
		}
		io->out_off += (size_t)n;
	}
	if (io->out_off == io->out_len)
		io->blocked = 0;
	if (io->out_off == io->out_len) {
		io->out_off = io->out_len = 0;
		/* An idle session keeps no reply buffer. */
		if (io->out_cap > IO_OUT_INIT) {
			sodium_memzero(io->out, io->out_cap);
			free(io->out);
			io->out = NULL;
			io->out_cap = 0;
		}
		/* The 220 is out: the handshake may begin (from the loop,
		 * since its end calls the owner). */
		if (io->tls_state == IOT_PENDING)
			io_kick(io);
	}
	io_update(io);
	return 0;
}

void
io_flush(struct io *io)
{
	/* The error reaches the owner from the loop, not from inside its
	 * own call (which may still use the session). */
	if (io_do_write(io) == -1 && io->err == 0) {
		io->err = errno ? errno : EIO;
		io_kick(io);
	}
}

static void
io_on_fd(struct loop_fd *lfd, unsigned events)
{
	struct io *io = container_of(lfd, struct io, lfd);

	if (io->tls_state == IOT_HANDSHAKE) {
		io_handshake(io);
		return;
	}
	if (events & (LOOP_WRITE | LOOP_ERROR | (io->tls_wread ? LOOP_READ :
	    0)) && io->out_len > io->out_off) {
		if (io_do_write(io) == -1) {
			io_tell(io, IO_ERR);
			return;
		}
		if (io->out_len == io->out_off) {
			io_tell(io, IO_DRAINED);
			return;	/* the callback may have freed io */
		}
	}
	if (!(events & (LOOP_READ | LOOP_ERROR)))
		return;
	io_read(io);
}

/* Read what there is (one recv, or TLS records while they fit) and tell
 * the owner. */
static void
io_read(struct io *io)
{
	size_t got = 0;
	ssize_t n;

	if (io->paused || io->eof || io->in_len == sizeof(io->in) ||
	    io->tls_state == IOT_PENDING)
		return;
	if (io->tls_state != IOT_ON) {
		/* read(), not recv(..., 0): the same on a socket, and one
		 * libc import fewer. */
		n = read(io->lfd.fd, io->in + io->in_len,
		    sizeof(io->in) - io->in_len);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			io_tell(io, IO_ERR);
			return;
		}
	} else {
		do {
			n = tls_conn_read(io->tls, io->in + io->in_len + got,
			    sizeof(io->in) - io->in_len - got);
			if (n > 0)
				got += (size_t)n;
		} while (n > 0 && io->in_len + got < sizeof(io->in) &&
		    tls_conn_pending(io->tls) > 0);
		if (got > 0)
			n = (ssize_t)got;
		else if (n == TLS_EOF)
			n = 0;
		else if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
			/* tls_conn_read() stopped after a run of tickets
			 * with more inside: back for them from the loop. */
			if (n == TLS_WANT_READ && tls_conn_pending(io->tls) > 0)
				io_kick(io);
			return;
		} else {
			errno = EPROTO;
			io_tell(io, IO_ERR);
			return;
		}
	}
	io_rearm(io);
	if (n == 0) {
		io->eof = 1;
		io_update(io);
		io_tell(io, IO_EOF);
		return;
	}
	io->in_len += (size_t)n;
	io_update(io);
	io_tell(io, IO_IN);
}

void
io_start_tls(struct io *io, struct tls_conn *conn)
{
	io->tls = conn;
	io->tls_state = IOT_PENDING;
	io->discarded += io->in_len;
	io->in_len = 0;
	io_rearm(io);
	io_flush(io);
	if (io->out_len == io->out_off)
		io_kick(io);
}

struct tls_conn *
io_tls(const struct io *io)
{
	return io->tls_state == IOT_ON ? io->tls : NULL;
}

size_t
io_tls_discarded(const struct io *io)
{
	return io->discarded;
}

/* One step of the handshake; its end (either way) goes to the owner. */
static void
io_handshake(struct io *io)
{
	int r;

	io->tls_state = IOT_HANDSHAKE;
	r = tls_conn_handshake(io->tls);
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
		io->hs_want = r == TLS_WANT_READ ? LOOP_READ : LOOP_WRITE;
		io_update(io);
		return;
	}
	if (r != TLS_OK) {
		io->hs_want = 0;
		io_update(io);
		errno = EPROTO;
		io_tell(io, IO_ERR);
		return;
	}
	io->tls_state = IOT_ON;
	io_rearm(io);
	io_update(io);
	/* Data that came with the last handshake flight is not on the fd. */
	if (tls_conn_pending(io->tls) > 0)
		io_kick(io);
	io_tell(io, IO_TLS);
}

/* The owner's callback, which may free io: callers return right after.
 * One copy of the call instead of twelve. */
static void
io_tell(struct io *io, enum io_event ev)
{
	io->cb(io, ev, io->arg);
}

/* Activity: the timeout (if any) starts again. */
static void
io_rearm(struct io *io)
{
	if (io->timeout_ms)
		loop_timer_set(&io->timer, io->timeout_ms);
}

static void
io_on_timer(struct loop_timer *t)
{
	struct io *io = container_of(t, struct io, timer);

	io_tell(io, IO_TIMEOUT);
}

/* From the loop, next turn: never re-entering the owner's own call. */
static void
io_kick(struct io *io)
{
	loop_timer_set(&io->kick, 0);
}

static void
io_on_kick(struct loop_timer *t)
{
	struct io *io = container_of(t, struct io, kick);

	if (io->err) {
		errno = io->err;
		io_tell(io, IO_ERR);
		return;
	}
	if (io->tls_state == IOT_PENDING) {
		if (io->out_len == io->out_off)
			io_handshake(io);
		return;
	}
	if (io->paused || io->tls_state == IOT_HANDSHAKE)
		return;
	/* Decrypted bytes wait inside TLS: fetch them first (io_read then
	 * delivers everything buffered), or a half line in the buffer
	 * would wait for the rest forever. */
	if (io->tls_state == IOT_ON && tls_conn_pending(io->tls) > 0 &&
	    !io->eof && io->in_len < sizeof(io->in)) {
		io_read(io);
		return;
	}
	/* The fd event may have used the input already: say only what is.
	 * A close already read comes with the input, as from io_read():
	 * IO_IN alone would leave a half line waiting for ever. */
	if (io->eof)
		io_tell(io, IO_EOF);
	else if (io->in_len > 0)
		io_tell(io, IO_IN);
}
