"""
test_reply_bound.py - a server's reply is bounded on the delivery side:
a multi-line reply of more than 100 lines (one that never ends, sent as
fast as the socket takes it) and a reply trickled a byte at a time (each
read well inside the 300 s command timeout, the whole never done) both
end the connection within their bound.  The recipient is deferred once,
4.4.2 with the queue ID and relay=, the message file stays in the queue
byte for byte, and a well-behaved server (a reply of exactly 100 lines; a
slow reply that is whole inside the deadline) then gets it intact.  The
trickle runs under test_regress's fast-clock shim (300 s is 3 s here).
"""

import os
import re
import time

from ferrytest import check, SLOW
from peers import (SmtpPeer, Trickle, deliveries, wait_delivery, wait_for,
                   flush)
from test_deliver import smarthost_daemon, BODY, queue_settled, \
    check_relayed
from test_regress import FAST_CLOCK_SHIM

RCPT = 'rcpt@relay.test'


def _queued(d, qid):
    with open(os.path.join(d.queue_dir, qid), 'rb') as f:
        return f.read()


def _deferred_once(d, p, qid, port, text_re, bound):
    """qid's one status=deferred line comes within bound seconds (of
    now), 4.4.2 with relay= the peer and text_re as its reason, and
    ferry hangs up on the peer; the message stays queued.  The seconds
    the deferral took."""
    t0 = time.monotonic()
    r = wait_delivery(d, qid, 'deferred', timeout=bound)[0]
    took = time.monotonic() - t0
    check(r.dsn == '4.4.2' and r.to == RCPT and
          r.relay == '127.0.0.1[127.0.0.1]:%d' % port and
          re.fullmatch(text_re, r.text), 'deferral %r' % r)
    wait_for(lambda: p.active == 0, 2, 'ferry to hang up on the peer')
    time.sleep(0.3 * SLOW)	# nothing more to come of this attempt
    got = [(x.status, x.dsn) for x in deliveries(d, qid)]
    check(got == [('deferred', '4.4.2')], 'results %r' % got)
    check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
    return took


def _delivered(d, p, qid, image):
    """flush: the message, still the file it was, reaches the peer."""
    check(_queued(d, qid) == image, 'the queue file changed')
    flush(d)
    wait_delivery(d, qid, 'sent')
    queue_settled(d)
    t = p.delivered()
    check(len(t) == 1 and t[0].accepted == [RCPT], 'peer got %r' % t)
    check_relayed(t[0].body, BODY, 'after the deferral')


def test_reply_bound_lines():
    """EHLO answered with "250-" lines without end: the 101st line ends
    the connection (no timer involved: this runs on the real clock),
    deferred "reply too long ... while performing the EHLO
    handshake".  Then a reply of exactly 100 lines is taken, and one of
    101 is not."""
    ehlo = ['250-peer.test'] + ['250-X-FILLER-%d' % i for i in range(97)] \
        + ['250-PIPELINING', '250 8BITMIME']
    flood = Trickle('250-X-FLOOD a line that never is the last\r\n' * 200,
                    size=8192, forever=True)
    mode = [flood]
    with SmtpPeer(policy=lambda s, verb, a, t: mode[0]
                  if verb == 'EHLO' else None) as p, \
            smarthost_daemon('rb-lines', p.port) as d:
        qid = d.send_message(BODY, rcpts=(RCPT,))
        image = _queued(d, qid)
        _deferred_once(d, p, qid, p.port, r'reply too long with '
                       r'127\.0\.0\.1\[127\.0\.0\.1\] while performing '
                       r'the EHLO handshake', 5)
        check(p.txns() == [], 'a transaction began: %r' % p.txns())
        mode[0] = '\r\n'.join(ehlo)
        check(len(ehlo) == 100, 'the reply has %d lines' % len(ehlo))
        _delivered(d, p, qid, image)
        # One line more, the reply whole: that is too many.
        mode[0] = '\r\n'.join(ehlo[:1] + ['250-X-ONE-MORE'] + ehlo[1:])
        qid = d.send_message(BODY, rcpts=(RCPT,))
        _deferred_once(d, p, qid, p.port, r'reply too long with .*',
                       5)
        check(len(p.delivered()) == 1, 'peer got %r' % p.txns())


def test_reply_bound_trickle():
    """RCPT answered one byte every 20 s of the daemon's clock (0.2 s
    here), a "250-" line every 9 minutes, never a last one: every read
    restarted a per-read timer, so the slot was held for good.  Now the
    reply has 300 s (3 s here) in all: deferred "conversation ... timed
    out while sending RCPT TO".  Then a reply trickled a byte per 3 s
    but whole in about 100 s is taken."""
    slow = Trickle('250-2.1.5 still thinking\r\n', pause=0.2, forever=True)
    mode = [slow]
    with SmtpPeer(policy=lambda s, verb, a, t: mode[0]
                  if verb == 'RCPT' else None) as p:
        # The shim speeds up all of its clock: retries a day apart
        # (864 s here), server-side timeouts of 3000 s (30 s here).
        d = smarthost_daemon('rb-trickle', p.port, retry_min='1d',
                             retry_max='2d', queue_lifetime='5d',
                             smtpd_timeout='3000s',
                             smtpd_data_timeout='3000s')
        d.preload(FAST_CLOCK_SHIM)
        with d:
            _trickle(d, p, mode)


def _trickle(d, p, mode):
    qid = d.send_message(BODY, rcpts=(RCPT,))
    image = _queued(d, qid)
    took = _deferred_once(d, p, qid, p.port, r'conversation with '
                          r'127\.0\.0\.1\[127\.0\.0\.1\] timed out '
                          r'while sending RCPT TO', 12)
    # 3 s after the MAIL reply, plus how long the test took to look.
    check(took < 3.0 + 2.0 * SLOW, 'deferred after %.1fs' % took)
    mode[0] = Trickle('250-2.1.5 thinking\r\n250 2.1.5 Ok', pause=0.03)
    _delivered(d, p, qid, image)
