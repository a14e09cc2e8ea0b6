/*
 * sched.h - the queue manager (Postfix's qmgr): schedules deliveries of
 * what is in the queue, applies results, retries, expires and bounces.
 */
#ifndef FERRY_SCHED_H
#define FERRY_SCHED_H

#include <stdint.h>

struct alias_table;
struct config;

void sched_configure(const struct config *);	/* again on SIGHUP */
/* A DSN goes to its sender through these (again on SIGHUP). */
void sched_set_aliases(const struct alias_table *);
/* Index the queue, start the timer; -1: the scan failed and is retried
 * on the loop until it works. */
int sched_start(unsigned *count);
void sched_enqueue(const char *id, unsigned nrcpt);	/* just committed */
void sched_flush(void);			/* every deferred message now */
void sched_stop(void);
unsigned sched_busy(void);		/* open outbound connections */
/* Seconds to wait after that many failed attempts (unit-tested). */
uint64_t sched_backoff(unsigned attempts);

#endif
