/*
 * loop.c - the event loop.  Owns the epoll instance, the timer heap, the
 * signalfd and the before-sleep hooks; nothing else.  Callers embed
 * loop_fd/loop_timer/loop_hook in their own structs.
 *
 * Invariant that keeps callbacks safe: loop_fd_del() blanks any event for
 * that fd still waiting in the current epoll batch, so a callback that
 * frees another session (or itself) is never followed by a callback on
 * freed memory.  Timers are a min-heap keyed on expiry; a timer callback
 * runs after it has been removed, so it may re-arm or free its owner.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define LOOP_EVENTS	64	/* epoll_wait batch */
#define LOOP_SIGNALS	32

static struct loop_timer *loop_timer_pop(void);
static int loop_before(const struct loop_timer *, const struct loop_timer *);
static void loop_heap_up(size_t);
static void loop_heap_down(size_t);
static void loop_heap_swap(size_t, size_t);
static void loop_timer_remove(struct loop_timer *);
static int loop_timeout_ms(void);
static void loop_run_timers(void);
static void loop_run_hooks(void);
static void loop_on_signal(struct loop_fd *, unsigned);
static void loop_wake(void);
static int loop_ctl(struct loop_fd *, int, unsigned);

static int loop_epfd = -1;
static int loop_running;
static uint64_t loop_ms;
/* loop_wake()'s record of the wall clock's first forward step */
#define LOOP_STEP_MIN	60
static int64_t loop_off;
static uint64_t loop_real, loop_step_lo, loop_step_hi, loop_step;
static struct epoll_event loop_ev[LOOP_EVENTS];
static int loop_ev_n, loop_ev_cur;

static struct loop_timer **loop_heap;
static size_t loop_heap_n, loop_heap_cap;
static uint64_t loop_seq;		/* loop_timer_set() count */
static uint64_t loop_seq_limit = UINT64_MAX;	/* during a timer pass */

static struct loop_hook *loop_hooks;

static struct loop_fd loop_sigfd = { .fd = -1 };
static sigset_t loop_sigset;
static void (*loop_sigcb[LOOP_SIGNALS])(int);

int
loop_init(void)
{
	if (loop_epfd != -1)
		return 0;
	loop_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop_epfd == -1)
		return -1;
	/* sigemptyset() is this memset on Linux (glibc, musl): one libc
	 * import fewer. */
	memset(&loop_sigset, 0, sizeof(loop_sigset));
	loop_wake();
	return 0;
}

void
loop_free(void)
{
	loop_fd_close(&loop_sigfd);
	if (loop_epfd != -1)
		close(loop_epfd);
	loop_epfd = -1;
	free(loop_heap);
	loop_heap = NULL;
	loop_heap_n = loop_heap_cap = 0;
	loop_hooks = NULL;
}

uint64_t
loop_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return loop_ms = (uint64_t)ts.tv_sec * 1000 +
	    (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A router without a real-time clock boots at an old time (OpenWrt's
 * sysfixtime: the newest file in /etc), and NTP sets the clock forward
 * minutes later.  A message that arrived in between carries the old
 * time, and would bounce at its next deferral as older than
 * queue_lifetime.  So the first forward step over LOOP_STEP_MIN seconds
 * is remembered: [loop_step_lo, loop_step_hi) is the old clock from boot
 * to the step, and loop_arrival() moves a time in it on by loop_step.  A
 * backward step only delays an expiry, and the scheduler already treats
 * a retry time set before it as due.
 */
static void
loop_wake(void)
{
	struct timespec ts, rt;
	int64_t off;

	(void)loop_clock();
	/* Boot, by the wall clock; since boot counts a suspend, which
	 * moves the wall clock on too. */
	clock_gettime(CLOCK_BOOTTIME, &ts);
	clock_gettime(CLOCK_REALTIME, &rt);
	off = (int64_t)rt.tv_sec - (int64_t)ts.tv_sec;
	if (loop_real == 0)	/* the first call; a board may boot at 1970 */
		loop_step_lo = off > 0 ? (uint64_t)off : 0;
	else if (loop_step == 0 && off - loop_off > LOOP_STEP_MIN) {
		/* An arrival taken after the step is past the old clock's
		 * last reading by more than LOOP_STEP_MIN; one taken before
		 * it is not (a pass of callbacks takes less). */
		loop_step = (uint64_t)(off - loop_off);
		loop_step_hi = loop_real + LOOP_STEP_MIN;
		log_warnx(LP_MASTER, "the clock was set forward by %llu s; "
		    "mail queued before then counts its age from the new time",
		    (unsigned long long)loop_step);
	}
	loop_off = off;
	loop_real = (uint64_t)rt.tv_sec | 1;	/* 0: not called yet */
}

uint64_t
loop_arrival(uint64_t t)
{
	return t >= loop_step_lo && t < loop_step_hi ? t + loop_step : t;
}

uint64_t
loop_now(void)
{
	return loop_ms;
}

uint64_t
loop_now_real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* time() is one libc import more than clock_gettime(). */
time_t
loop_now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

/* signal(SIGPIPE, SIG_IGN) but through sigaction(), which auth.c
 * imports anyway: signal() would be one libc import more.  The memset
 * empties sa_mask (no sigemptyset() import). */
void
loop_sigpipe_ignore(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
}

_Static_assert(LOOP_READ == EPOLLIN && LOOP_WRITE == EPOLLOUT &&
    LOOP_ERROR == EPOLLERR, "LOOP_* are epoll's bits");

static uint32_t
loop_epoll_bits(unsigned want)
{
	return (want & (LOOP_READ | LOOP_WRITE)) |
	    (want & LOOP_READ ? EPOLLRDHUP : 0);
}

/* EPOLL_CTL_ADD or _MOD with the interest want; one copy for both. */
static int
loop_ctl(struct loop_fd *lfd, int op, unsigned want)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = loop_epoll_bits(want);
	ev.data.ptr = lfd;
	if (epoll_ctl(loop_epfd, op, lfd->fd, &ev) == -1)
		return -1;
	lfd->want = want;
	lfd->added = 1;
	return 0;
}

int
loop_fd_add(struct loop_fd *lfd, unsigned want)
{
	return loop_ctl(lfd, EPOLL_CTL_ADD, want);
}

int
loop_fd_want(struct loop_fd *lfd, unsigned want)
{
	/* epoll reports ERR and HUP whatever the interest: an fd that wants
	 * nothing (a paused session whose peer reset) would wake every
	 * pass.  So it leaves epoll until it wants something again.  (That
	 * also blanks the event being dispatched, which loop_run() has
	 * already read.) */
	if (want == 0) {
		if (lfd->added)
			loop_fd_del(lfd);
		lfd->want = 0;
		return 0;
	}
	if (!lfd->added)
		return loop_fd_add(lfd, want);
	if (lfd->want == want)
		return 0;
	return loop_ctl(lfd, EPOLL_CTL_MOD, want);
}

void
loop_fd_del(struct loop_fd *lfd)
{
	int i;

	if (lfd->added) {
		/* Fails only if the fd is already closed: nothing to do. */
		(void)epoll_ctl(loop_epfd, EPOLL_CTL_DEL, lfd->fd, NULL);
		lfd->added = 0;
	}
	for (i = loop_ev_cur; i < loop_ev_n; i++)
		if (loop_ev[i].data.ptr == lfd)
			loop_ev[i].data.ptr = NULL;
}

void
loop_fd_close(struct loop_fd *lfd)
{
	if (lfd->fd == -1)
		return;
	loop_fd_del(lfd);
	(void)close(lfd->fd);
	lfd->fd = -1;
}

/* --- timers: a binary min-heap; slot is index + 1 so 0 means idle --- */

static void
loop_heap_swap(size_t a, size_t b)
{
	struct loop_timer *t = loop_heap[a];

	loop_heap[a] = loop_heap[b];
	loop_heap[b] = t;
	loop_heap[a]->slot = a + 1;
	loop_heap[b]->slot = b + 1;
}

/* Order by expiry, then by arming order, so equal deadlines run FIFO. */
static int
loop_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void
loop_heap_up(size_t i)
{
	while (i > 0 && loop_before(loop_heap[i], loop_heap[(i - 1) / 2])) {
		loop_heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
loop_heap_down(size_t i)
{
	size_t l, r, m;

	for (;;) {
		l = 2 * i + 1;
		r = l + 1;
		m = i;
		if (l < loop_heap_n && loop_before(loop_heap[l], loop_heap[m]))
			m = l;
		if (r < loop_heap_n && loop_before(loop_heap[r], loop_heap[m]))
			m = r;
		if (m == i)
			return;
		loop_heap_swap(i, m);
		i = m;
	}
}

static void
loop_timer_remove(struct loop_timer *t)
{
	size_t i = t->slot - 1;

	loop_heap_n--;
	if (i != loop_heap_n) {
		loop_heap[i] = loop_heap[loop_heap_n];
		loop_heap[i]->slot = i + 1;
		loop_heap_up(i);
		loop_heap_down(i);
	}
	t->slot = 0;
}

void
loop_timer_set(struct loop_timer *t, uint64_t ms)
{
	struct loop_timer **nh;
	size_t cap;

	if (t->slot)
		loop_timer_remove(t);
	if (loop_heap_n == loop_heap_cap) {
		cap = loop_heap_cap ? loop_heap_cap * 2 : 64;
		nh = realloc(loop_heap, cap * sizeof(*nh));
		if (nh == NULL)	/* a lost timer would hang a session */
			log_fatalx(LP_MASTER, "%s: out of memory", __func__);
		loop_heap = nh;
		loop_heap_cap = cap;
	}
	t->when = loop_ms + ms;
	t->seq = loop_seq++;
	loop_heap[loop_heap_n] = t;
	t->slot = ++loop_heap_n;
	loop_heap_up(loop_heap_n - 1);
}

void
loop_timer_cancel(struct loop_timer *t)
{
	if (t->slot)
		loop_timer_remove(t);
}

int
loop_timer_armed(const struct loop_timer *t)
{
	return t->slot != 0;
}

static struct loop_timer *
loop_timer_pop(void)
{
	struct loop_timer *t;

	if (loop_heap_n == 0 || loop_heap[0]->when > loop_ms ||
	    loop_heap[0]->seq >= loop_seq_limit)
		return NULL;
	t = loop_heap[0];
	loop_timer_remove(t);
	return t;
}

/*
 * A timer armed during this pass waits for the next one, after the hooks
 * and the fds had their turn: a callback that re-arms itself with 0 ms
 * (a batch that is not done yet) cannot spin here forever.
 */
static void
loop_run_timers(void)
{
	struct loop_timer *t;

	loop_seq_limit = loop_seq;
	while ((t = loop_timer_pop()) != NULL)
		t->cb(t);
	loop_seq_limit = UINT64_MAX;
}

static int
loop_timeout_ms(void)
{
	uint64_t d;

	if (loop_hooks != NULL)
		return 0;
	if (loop_heap_n == 0)
		return -1;
	if (loop_heap[0]->when <= loop_ms)
		return 0;
	d = loop_heap[0]->when - loop_ms;
	return d > 60000 ? 60000 : (int)d;
}

/* --- hooks: run once before the loop sleeps (group commit) --- */

void
loop_hook_queue(struct loop_hook *h)
{
	if (h->queued)
		return;
	h->queued = 1;
	h->next = loop_hooks;
	loop_hooks = h;
}

static void
loop_run_hooks(void)
{
	struct loop_hook *h;

	while ((h = loop_hooks) != NULL) {
		loop_hooks = h->next;
		h->queued = 0;
		h->cb(h);
	}
}

/* --- signals, read on the loop --- */

int
loop_signal(int signo, void (*cb)(int))
{
	if (signo <= 0 || signo >= LOOP_SIGNALS) {
		errno = EINVAL;
		return -1;
	}
	loop_sigcb[signo] = cb;
	/* sigaddset() without its import: a sigset is an array of longs,
	 * signal N bit N - 1 (glibc and the kernel alike), and N < 32 is
	 * in the first. */
	*(unsigned long *)(void *)&loop_sigset |= 1UL << (signo - 1);
	if (sigprocmask(SIG_BLOCK, &loop_sigset, NULL) == -1)
		return -1;
	if (loop_sigfd.fd == -1) {
		loop_sigfd.fd = signalfd(-1, &loop_sigset,
		    SFD_NONBLOCK | SFD_CLOEXEC);
		if (loop_sigfd.fd == -1)
			return -1;
		loop_sigfd.cb = loop_on_signal;
		return loop_fd_add(&loop_sigfd, LOOP_READ);
	}
	return signalfd(loop_sigfd.fd, &loop_sigset, 0) == -1 ? -1 : 0;
}

static void
loop_on_signal(struct loop_fd *lfd, unsigned events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(lfd->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo < LOOP_SIGNALS && loop_sigcb[si.ssi_signo])
			loop_sigcb[si.ssi_signo]((int)si.ssi_signo);
}

void
loop_stop(void)
{
	loop_running = 0;
}

int
loop_run(void)
{
	struct loop_fd *lfd;
	uint32_t e;
	unsigned ev;

	loop_running = 1;
	while (loop_running) {
		loop_run_hooks();
		if (!loop_running)	/* a hook may have stopped us */
			break;
		loop_ev_n = epoll_wait(loop_epfd, loop_ev, LOOP_EVENTS,
		    loop_timeout_ms());
		loop_wake();
		if (loop_ev_n == -1) {
			loop_ev_n = 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (loop_ev_cur = 0; loop_ev_cur < loop_ev_n; loop_ev_cur++) {
			if ((lfd = loop_ev[loop_ev_cur].data.ptr) == NULL)
				continue;
			e = loop_ev[loop_ev_cur].events;
			ev = (e & (EPOLLIN | EPOLLOUT | EPOLLERR)) |
			    (e & EPOLLRDHUP ? LOOP_READ : 0) |
			    (e & EPOLLHUP ? LOOP_ERROR : 0);
			lfd->cb(lfd, ev);
		}
		loop_ev_n = loop_ev_cur = 0;
		loop_run_timers();
	}
	loop_run_hooks();
	return 0;
}
