/*
 * loop.h - the one event loop: epoll for fds, a binary heap of timers,
 * signalfd for signals, and "before sleep" hooks (the queue's group
 * commit runs there).  The loop allocates nothing on its own account:
 * loop_fd and loop_timer are fields of their owner, and callbacks find
 * the owner with container_of().
 *
 * Callbacks may free their owner after loop_fd_del()/loop_timer_cancel():
 * deleting an fd clears its events still pending in this iteration.
 */
#ifndef FERRY_LOOP_H
#define FERRY_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* epoll's own bits (EPOLLIN, EPOLLOUT, EPOLLERR; loop.c asserts it), so
 * most of the mapping is a mask; the header still needs no epoll.h. */
#define LOOP_READ	0x1u
#define LOOP_WRITE	0x4u
#define LOOP_ERROR	0x8u	/* EPOLLERR/EPOLLHUP: read to find out */

struct loop_fd {
	int fd;
	unsigned want;		/* LOOP_READ | LOOP_WRITE, as registered */
	uint8_t added;
	/* may loop_fd_del() and free the owner */
	void (*cb)(struct loop_fd *, unsigned events);
};

struct loop_timer {
	uint64_t when;		/* loop_now() ms */
	uint64_t seq;		/* when it was armed: ties, and "not this pass" */
	size_t slot;		/* heap index + 1; 0: not armed */
	void (*cb)(struct loop_timer *);	/* may free the owner */
};

struct loop_hook {
	struct loop_hook *next;
	void (*cb)(struct loop_hook *);
	uint8_t queued;
};

int loop_init(void);
void loop_free(void);
int loop_run(void);		/* until loop_stop(); 0, or -1 on error */
void loop_stop(void);
uint64_t loop_now(void);	/* monotonic ms, refreshed per wake-up */
uint64_t loop_clock(void);	/* loop_now() refreshed: for one-shot tools,
				   which run no loop */
uint64_t loop_now_real_us(void);	/* wall clock, microseconds */
time_t loop_now_real(void);	/* wall clock, seconds: time() */
/* An arrival time (wall clock, seconds) as it would read had the clock
 * been right: moved on by the clock's first forward step when it was
 * taken between boot and that step (loop.c). */
uint64_t loop_arrival(uint64_t);

int loop_fd_add(struct loop_fd *, unsigned want);	/* -1, errno */
int loop_fd_want(struct loop_fd *, unsigned want);
void loop_fd_del(struct loop_fd *);
/* loop_fd_del(), then close() the fd unless it is -1 (a failed close
 * is not reported); fd is -1 after. */
void loop_fd_close(struct loop_fd *);

void loop_timer_set(struct loop_timer *, uint64_t ms_from_now);
void loop_timer_cancel(struct loop_timer *);
int loop_timer_armed(const struct loop_timer *);

/* Run cb once, right before the loop next sleeps. */
void loop_hook_queue(struct loop_hook *);

/* Deliver signo on the loop (blocked for the process, read via signalfd). */
int loop_signal(int signo, void (*cb)(int signo));

/* SIGPIPE ignored: a write to a closed peer fails with EPIPE instead. */
void loop_sigpipe_ignore(void);

#endif
