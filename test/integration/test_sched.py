"""
test_sched.py - the scheduler's life cycle across destinations, restarts
and clock jumps, with real peers on 127.0.0.x (smtp-sink and
peers.SmtpPeer behind one mx_port) and the test zone's unbound.
"""

import os
import time

from ferrytest import check, free_port, SLOW
from peers import (Sink, SmtpPeer, deliveries, wait_delivery, wait_removed,
                   wait_for, bind_probe)
from test_deliver import BODY, mx_daemon, smarthost_daemon, zone
from test_dns import DnsServer


def test_sched_restart_mid_attempt_keeps_finished_destinations():
    """One message for fast.test (smtp-sink, 250 at once) and slow.test
    (a peer that sits on the end of data): fast.test's delivery is logged
    sent while slow.test's is still open, then the daemon is restarted
    (SIGTERM, a clean stop).  After the restart only slow.test is tried
    again: fast.test got the message once, not once per restart."""
    hold = [1]

    def policy(sess, verb, arg, txn):
        if verb == '.' and hold:
            time.sleep(6)
            return '451 4.3.0 try again later'
        return None

    port = free_port()
    z = zone('fast.test. MX 10 mx.fast.test.', 'mx.fast.test. A 127.0.0.2',
             'slow.test. MX 10 mx.slow.test.', 'mx.slow.test. A 127.0.0.3')
    check(bind_probe('127.0.0.2', port) and bind_probe('127.0.0.3', port),
          'port %d taken on 127.0.0.2/3' % port)
    with DnsServer(z) as dns, Sink('127.0.0.2', port) as s, \
            SmtpPeer('127.0.0.3', port, policy=policy) as p:
        d = mx_daemon('midattempt', dns, port)
        ok = False
        try:
            d.start()
            qid = d.send_message(BODY, rcpts=('a@fast.test',
                                              'b@slow.test'))
            wait_delivery(d, qid, 'sent')
            wait_for(lambda: any(t.raw is not None for t in p.txns()), 5,
                     'the body at the slow peer')
            d.stop()
            del hold[:]
            d.start()
            wait_delivery(d, qid, 'sent', n=2, timeout=10)
            wait_removed(d, qid)
            sent = [r.to for r in deliveries(d, qid, 'sent')]
            check(sorted(sent) == ['a@fast.test', 'b@slow.test'],
                  'sent lines %r, want a@fast.test once and b@slow.test'
                  % sent)
            time.sleep(0.3 * SLOW)
            check(len(s.messages()) == 1, 'fast.test got the message %d '
                  'times: %r' % (len(s.messages()), s.messages()))
            d.stop()
            ok = True
        finally:
            d.cleanup(ok)


# The daemon's wall clock (time(), CLOCK_REALTIME) is the real one plus
# the seconds in the file $FERRY_CLOCK_SKEW, read at every call, so a
# test can set it back or forward while the daemon runs.  The monotonic
# clock (its timers) is left alone.
SKEW_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long
skew(void)
{
	const char *p = getenv("FERRY_CLOCK_SKEW");
	char buf[32];
	ssize_t n;
	int fd;

	if (p == NULL || (fd = open(p, O_RDONLY)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	int rc;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "clock_gettime");
	if ((rc = real(id, ts)) == 0 && id == CLOCK_REALTIME)
		ts->tv_sec += skew();
	return rc;
}

time_t
time(time_t *t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (t != NULL)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
"""


def _skewed_daemon(d, path):
    with open(path, 'w') as f:
        f.write('0\n')
    d.preload(SKEW_SHIM, FERRY_CLOCK_SKEW=path)


def _set_skew(path, seconds):
    with open(path + '.new', 'w') as f:
        f.write('%d\n' % seconds)
    os.rename(path + '.new', path)


def test_sched_clock_set_back_does_not_park_mail():
    """The smarthost is down: a message is deferred (retry 2-4 s) and the
    destination backed off.  Then the wall clock is set back a day (an
    NTP correction, a router whose clock ran ahead) and the smarthost
    comes up.  The deferred message is tried again within about
    retry_max, as a restart would (it caps a stamp that far ahead), and
    a new message goes out at once: neither waits for the day to come
    round again, nor is deferred as "backing off" in the meantime."""
    port = free_port()
    d = smarthost_daemon('clockback', port, retry_min='2s', retry_max='4s')
    skew = os.path.join(d.dir, 'skew')
    _skewed_daemon(d, skew)
    ok = False
    try:
        d.start()
        q1 = d.send_message(BODY)
        wait_delivery(d, q1, 'deferred')
        _set_skew(skew, -86400)
        with Sink(port=port) as s:
            q2 = d.send_message(BODY)
            wait_delivery(d, q2, 'sent', timeout=5 * SLOW)
            wait_delivery(d, q1, 'sent', timeout=10 * SLOW)
            wait_removed(d, q1)
            check(len(s.wait_count(2)) == 2, 'sink %r' % s.messages())
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)
