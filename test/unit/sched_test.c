/*
 * sched_test.c - the scheduler's retry backoff: it doubles from
 * retry_min with [1, 1.5) jitter and never passes retry_max, Postfix's
 * maximal_backoff_time (the jitter took it to 1.5 times that).
 */
#include <stdint.h>
#include <stdio.h>

#include <sodium.h>

#include "config.h"
#include "log.h"
#include "sched.h"
#include "t.h"

#define T_DRAWS	2000	/* a jitter of 0..b/2 tried this often */

static int t_backoff(void);
static int t_backoff_equal(void);
static void range(unsigned, uint64_t *, uint64_t *);

static struct config conf;

/* The least and most of T_DRAWS delays before attempt n + 1. */
static void
range(unsigned n, uint64_t *lo, uint64_t *hi)
{
	uint64_t d;
	int i;

	*lo = UINT64_MAX;
	*hi = 0;
	for (i = 0; i < T_DRAWS; i++) {
		d = sched_backoff(n);
		if (d < *lo)
			*lo = d;
		if (d > *hi)
			*hi = d;
	}
}

static int
t_backoff(void)
{
	uint64_t lo, hi;
	unsigned n;

	config_defaults(&conf);
	conf.retry_min = 300;
	conf.retry_max = 3000;
	sched_configure(&conf);
	/* 300, 600, 1200 with up to half more, and jitter seen */
	for (n = 1; n <= 3; n++) {
		range(n, &lo, &hi);
		CHECK(lo >= (300u << (n - 1)) && hi <= (450u << (n - 1)));
		CHECK(hi > lo);
	}
	/* 2400 and up to 1200 more: cut at 3000, then 3000 and only that */
	range(4, &lo, &hi);
	CHECK(lo >= 2400 && hi == 3000);
	for (n = 5; n <= 40; n++) {
		range(n, &lo, &hi);
		CHECK(lo == 3000 && hi == 3000);
	}
	range(UINT32_MAX, &lo, &hi);
	CHECK(lo == 3000 && hi == 3000);
	/* the largest a duration may be */
	conf.retry_min = 1;
	conf.retry_max = UINT32_MAX;
	range(40, &lo, &hi);
	CHECK(lo == UINT32_MAX && hi == UINT32_MAX);
	range(32, &lo, &hi);
	CHECK(lo >= 1ull << 31 && hi <= UINT32_MAX && hi > lo);
	return 0;
}

/* retry_min == retry_max: that delay and no other, from the first. */
static int
t_backoff_equal(void)
{
	uint64_t lo, hi;

	config_defaults(&conf);
	conf.retry_min = conf.retry_max = 60;
	sched_configure(&conf);
	range(1, &lo, &hi);
	CHECK(lo == 60 && hi == 60);
	range(9, &lo, &hi);
	CHECK(lo == 60 && hi == 60);
	return 0;
}

static const struct t_case cases[] = {
	{ "backoff doubles with jitter, capped at retry_max", t_backoff },
	{ "backoff with retry_min = retry_max", t_backoff_equal },
};

int
main(void)
{
	log_open(1);
	if (sodium_init() < 0)
		return 1;
	return t_run("sched", cases, sizeof(cases) / sizeof(cases[0]));
}
