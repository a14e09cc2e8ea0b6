/*
 * io_test.c - io's events on the real event loop over a socketpair: a
 * close read while whole lines still wait, which the owner leaves there
 * (pausing in its IO_EOF, as smtp does for a commit), must come back as
 * IO_EOF after io_resume(), not as IO_IN: an owner that then takes the
 * whole lines and leaves half of one would otherwise hear nothing more
 * (smtp would wait smtpd_timeout for a client gone behind "NOOP"
 * without its CRLF).
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "loop.h"
#include "t.h"

struct owner {
	struct io *io;
	struct loop_timer resume, stop;
	int eofs;
	int held;		/* the first IO_EOF paused reading */
};

static void take_lines(struct io *);
static void on_io(struct io *, enum io_event, void *);
static void on_resume(struct loop_timer *);
static void on_stop(struct loop_timer *);
static int t_eof_after_resume(void);

static struct owner o;

/* Whole lines are taken; half of one stays, as smtp leaves it. */
static void
take_lines(struct io *io)
{
	const char *buf, *lf;
	size_t len;

	buf = io_in(io, &len);
	while ((lf = memchr(buf, '\n', len)) != NULL) {
		io_consume(io, (size_t)(lf - buf) + 1);
		buf = io_in(io, &len);
	}
}

static void
on_io(struct io *io, enum io_event ev, void *arg)
{
	(void)arg;
	if (ev == IO_IN) {
		/* Until the close is read, the input waits for IO_EOF. */
		if (o.held)
			take_lines(io);
		return;
	}
	if (ev != IO_EOF)
		return;
	if (++o.eofs == 1) {
		/* A commit in progress: nothing is read until it ends. */
		o.held = 1;
		io_pause(io);
		loop_timer_set(&o.resume, 20);
		return;
	}
	take_lines(io);
	loop_stop();
}

static void
on_resume(struct loop_timer *t)
{
	(void)t;
	io_resume(o.io);
}

static void
on_stop(struct loop_timer *t)
{
	(void)t;
	loop_stop();
}

static int
t_eof_after_resume(void)
{
	static const char said[] = "NOOP\r\nRSET\r\nNOOP";
	size_t len;
	int sv[2];

	CHECK(loop_init() == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	CHECK(write(sv[1], said, sizeof(said) - 1) == sizeof(said) - 1);
	CHECK(shutdown(sv[1], SHUT_WR) == 0);
	memset(&o, 0, sizeof(o));
	o.resume.cb = on_resume;
	o.stop.cb = on_stop;
	CHECK((o.io = io_new(sv[0], on_io, NULL)) != NULL);
	loop_timer_set(&o.stop, 2000);
	CHECK(loop_run() == 0);
	loop_timer_cancel(&o.stop);
	loop_timer_cancel(&o.resume);
	(void)io_in(o.io, &len);
	io_free(o.io);
	close(sv[1]);
	loop_free();
	CHECK(o.eofs == 2);
	CHECK(len == 4);	/* the half line, left to the owner */
	return 0;
}

static const struct t_case cases[] = {
	{ "a close read before a pause is told again after it",
	    t_eof_after_resume },
};

T_MAIN("io", cases)
