"""
test_delay_warning.py - Postfix's delay_warning_time: once a message has
waited that long with recipients still deferred, its sender gets one
RFC 3464 "delayed" report (Action: delayed, Status 4.x.x of the last
reply) through the same queue, the original stays queued and is still
delivered, the warning is remembered in the state file (W) across a
restart, the default (0) sends none, and neither the null sender nor a
DSN ever gets one.  The smarthost is a peers.SmtpPeer that refuses the
original's recipient with a 4xx until told otherwise and accepts
everything else, so the warning reaches it as mail to the sender.
Retries happen only on `ferry flush`, never by the clock.
"""

import datetime
import email.utils
import os
import re
import subprocess
import time

from ferrytest import Daemon, FERRY_BIN, check, short, SLOW
from peers import (SmtpPeer, deliveries, wait_delivery, wait_removed, flush,
                   wait_for)
from test_deliver import BODY, NO_RETRY, parse_dsn, dsn_field

RCPT = 'rcpt@relay.test'
SENDER = 'sender@example.test'
WARN_AFTER = 3				# seconds: delay_warning_time
REFUSAL = '451 4.3.0 mailbox busy, try again later'


class Gate:
    """The peer's policy: RCPT for RCPT gets REFUSAL until open()."""

    def __init__(self):
        self.is_open = False

    def open(self):
        self.is_open = True

    def __call__(self, sess, verb, arg, txn):
        if verb == 'RCPT' and arg.lower().startswith('<%s>' % RCPT) and \
                not self.is_open:
            return REFUSAL
        return None


def daemon(name, port, **cfg):
    c = dict(NO_RETRY, smarthost='[127.0.0.1]:%d' % port)
    c.update(cfg)
    return Daemon(name, **c)


def warn_ids(d, qid):
    """Queue IDs of the delay notices the daemon made for qid (Postfix's
    log line: "ID: sender delay notification: NEWID")."""
    return re.findall(r'\b%s: sender delay notification: ([0-9A-F]{18})$'
                      % qid, d.log_text(), re.M)


def null_sender_txns(p):
    return [t for t in p.txns() if t.sender == '']


def deferral(d, qid, n):
    """Run the queue and wait for qid's n-th deferral line."""
    flush(d)
    return wait_delivery(d, qid, 'deferred', n=n)


def state_file(d, qid):
    try:
        with open(os.path.join(d.queue_dir, qid + '.st'), 'rb') as f:
            return f.read().decode('ascii', 'replace')
    except OSError:
        return ''


def wait_past(t0, secs):
    """Sleep until secs have passed since the monotonic time t0."""
    left = t0 + secs - time.monotonic()
    if left > 0:
        time.sleep(left)


def check_delay_dsn(txn, qid):
    """The notice as the peer received it: to the sender from <>, a
    multipart/report listing RCPT as delayed with the 451's code."""
    what = 'delay notice'
    check(txn.accepted == [SENDER], '%s went to %r' % (what, txn.accepted))
    msg, per_msg, blocks, orig = parse_dsn(txn.body, what)
    check(msg['To'] is not None and SENDER in msg['To'],
          '%s To: %r' % (what, msg['To']))
    check(dsn_field(per_msg, 'X-Ferry-Queue-ID') == qid,
          '%s is about %r, want %s' % (what, dsn_field(per_msg,
                                                      'X-Ferry-Queue-ID'),
                                       qid))
    check(len(blocks) == 1, '%s lists %d recipients: %s'
          % (what, len(blocks), short(txn.body, 1500)))
    b = blocks[0]
    fr = dsn_field(b, 'Final-Recipient')
    check(fr is not None and re.sub(r';\s*', ';', fr).lower() ==
          'rfc822;' + RCPT, '%s: Final-Recipient %r' % (what, fr))
    check(dsn_field(b, 'Action') == 'delayed', '%s: Action %r, want '
          'delayed' % (what, dsn_field(b, 'Action')))
    check(dsn_field(b, 'Status') == '4.3.0', '%s: Status %r, want 4.3.0 '
          '(the last reply\'s)' % (what, dsn_field(b, 'Status')))
    dc = dsn_field(b, 'Diagnostic-Code')
    check(dc == 'smtp; ' + REFUSAL, '%s: Diagnostic-Code %r, want the '
          'bare reply' % (what, dc))
    check(dsn_field(b, 'Remote-MTA') == 'dns; 127.0.0.1',
          '%s: Remote-MTA %r' % (what, dsn_field(b, 'Remote-MTA')))
    # RFC 3464 §2.3.9: tries go on until the arrival plus queue_lifetime
    # (1d in NO_RETRY).
    arrival = dsn_field(per_msg, 'Arrival-Date')
    until = dsn_field(b, 'Will-Retry-Until')
    check(arrival is not None and until is not None and
          email.utils.parsedate_to_datetime(until) -
          email.utils.parsedate_to_datetime(arrival) ==
          datetime.timedelta(days=1),
          '%s: Arrival-Date %r, Will-Retry-Until %r (want a day later)'
          % (what, arrival, until))
    text = orig.as_bytes()
    check(b'Subject: delivery test' in text and
          b'Message-ID: <t1@example.test>' in text,
          '%s does not return the original headers: %s'
          % (what, short(text)))
    check(b'a line that starts with a dot' not in txn.body,
          '%s returns the body, not just headers' % what)
    human = msg.get_payload()[0].get_payload(decode=True) or b''
    check(b'WARNING ONLY' in human and b'NOT NEED TO RESEND' in human,
          '%s: text part does not say it is only a warning: %s'
          % (what, short(human, 400)))


def test_delay_warning_once_then_delivered_and_survives_restart():
    """(a) one notice after delay_warning_time, the original stays queued
    and goes out once the peer accepts; (b) a restart after the notice
    does not send a second one."""
    gate = Gate()
    with SmtpPeer(policy=gate) as p:
        d = daemon('dwarn', p.port,
                   delay_warning_time='%ds' % WARN_AFTER)
        ok = False
        try:
            d.start()
            t0 = time.monotonic()
            qid = d.send_message(BODY, sender=SENDER, rcpts=(RCPT,))
            r = wait_delivery(d, qid, 'deferred')[0]
            check(r.dsn == '4.3.0', 'deferral %r' % r)
            if time.monotonic() - t0 < WARN_AFTER - 1:
                # too early: no notice yet
                check(warn_ids(d, qid) == [], 'a delay notice before '
                      'delay_warning_time:\n%s' % d.log_tail(10))
            wait_past(t0, WARN_AFTER + 0.5)
            deferral(d, qid, 2)
            w = wait_for(lambda: warn_ids(d, qid), 10,
                         'a delay notice for %s; log:\n%s'
                         % (qid, d.log_tail(15)))
            check(len(w) == 1, 'delay notices %r' % w)
            wait_delivery(d, w[0], 'sent')
            wait_removed(d, w[0])
            dsns = null_sender_txns(p)
            check(len(dsns) == 1, 'peer got %d mails from <>: %r'
                  % (len(dsns), dsns))
            check_delay_dsn(dsns[0], qid)
            # the original is still queued, still deferred, marked
            q = d.mailq()
            check([m['id'] for m in q] == [qid], 'queue %r' % q)
            check(q[0]['recipients'][0]['status'] == 'deferred',
                  'mailq %r' % q)
            check(re.search(r'^W [1-9][0-9]*$', state_file(d, qid), re.M),
                  'no W record in %s.st: %r' % (qid, state_file(d, qid)))
            # more deferrals: still one notice
            deferral(d, qid, 3)
            deferral(d, qid, 4)
            time.sleep(0.5 * SLOW)
            check(len(warn_ids(d, qid)) == 1, 'delay notices %r'
                  % warn_ids(d, qid))

            # (b) restart: the W record keeps it at one
            d.stop()
            d.start()
            deferral(d, qid, 5)
            time.sleep(0.5 * SLOW)
            check(len(warn_ids(d, qid)) == 1 and
                  len(null_sender_txns(p)) == 1,
                  'a second notice after the restart: %r; log:\n%s'
                  % (warn_ids(d, qid), d.log_tail(15)))

            # the peer accepts: delivered once, removed, still one notice
            gate.open()
            flush(d)
            wait_delivery(d, qid, 'sent')
            wait_removed(d, qid)
            orig = [t for t in p.delivered() if t.sender == SENDER]
            check(len(orig) == 1 and orig[0].accepted == [RCPT],
                  'the original was delivered %d times: %r'
                  % (len(orig), p.txns()))
            check(orig[0].body.endswith(BODY), 'relayed body: %s'
                  % short(orig[0].body))
            check(d.mailq() == [], 'queue %r' % d.mailq())
            check(len(null_sender_txns(p)) == 1 and
                  len(re.findall(r'sender delay notification',
                                 d.log_text())) == 1,
                  'notices in the end: %r' % null_sender_txns(p))
            check(not re.search(r'non-delivery notification',
                                d.log_text()), 'a bounce was made')
            p.wait_idle()
            d.stop()
            ok = True
        finally:
            d.cleanup(ok)


def _deferred_without_notice(d, p, gate, when):
    """A message deferred three times over more than WARN_AFTER seconds
    gets no notice and no W record; delivered once the gate opens, still
    with nothing from <>."""
    t0 = time.monotonic()
    qid = d.send_message(BODY, sender=SENDER, rcpts=(RCPT,))
    wait_delivery(d, qid, 'deferred')
    wait_past(t0, WARN_AFTER + 0.5)
    deferral(d, qid, 2)
    deferral(d, qid, 3)
    time.sleep(0.5 * SLOW)
    check(warn_ids(d, qid) == [] and not re.search(
        r'delay notification', d.log_text()),
        'a notice %s: %s' % (when, d.log_tail(10)))
    check(null_sender_txns(p) == [], 'mail from <>: %r'
          % null_sender_txns(p))
    check(not re.search(r'^W ', state_file(d, qid), re.M),
          'W record %s: %r' % (when, state_file(d, qid)))
    gate.open()
    flush(d)
    wait_delivery(d, qid, 'sent')
    wait_removed(d, qid)
    check(null_sender_txns(p) == [], 'mail from <>: %r'
          % null_sender_txns(p))
    p.wait_idle()


def test_delay_warning_off_by_default():
    """(c) without delay_warning_time: deferred past any threshold, no
    notice, nothing from <>."""
    gate = Gate()
    with SmtpPeer(policy=gate) as p, daemon('dwoff', p.port) as d:
        cc = subprocess.run([FERRY_BIN, '-c', d.conf, 'check-config'],
                            capture_output=True, timeout=30 * SLOW)
        check(re.search(r'^delay_warning_time = 0s?\b', cc.stdout.decode(),
                        re.M), 'check-config: %s' % short(cc.stdout, 4000))
        _deferred_without_notice(d, p, gate, 'with the default')


def test_delay_warning_not_before_its_time():
    """delay_warning_time = 1h: deferrals well inside the hour send no
    notice and write no W record (the threshold is honoured, not just
    the on/off switch)."""
    gate = Gate()
    with SmtpPeer(policy=gate) as p, \
            daemon('dwlate', p.port, delay_warning_time='1h') as d:
        _deferred_without_notice(d, p, gate, 'before delay_warning_time')


def test_delay_warning_never_to_the_null_sender():
    """(d) a message from <> (a bounce from elsewhere) deferred past
    delay_warning_time gets no notice; a normal one in the same run
    does, so the feature is on."""
    gate = Gate()
    with SmtpPeer(policy=gate) as p, \
            daemon('dwnull', p.port,
                   delay_warning_time='%ds' % WARN_AFTER) as d:
        t0 = time.monotonic()
        qnull = d.send_message(BODY, sender='', rcpts=(RCPT,))
        qnorm = d.send_message(BODY, sender=SENDER, rcpts=(RCPT,))
        wait_delivery(d, qnull, 'deferred')
        wait_delivery(d, qnorm, 'deferred')
        wait_past(t0, WARN_AFTER + 0.5)
        flush(d)
        wait_delivery(d, qnull, 'deferred', n=2)
        wait_delivery(d, qnorm, 'deferred', n=2)
        w = wait_for(lambda: warn_ids(d, qnorm), 10,
                     'a notice for %s (the control); log:\n%s'
                     % (qnorm, d.log_tail(15)))
        wait_delivery(d, w[0], 'sent')
        deferral(d, qnull, 3)
        time.sleep(0.5 * SLOW)
        check(warn_ids(d, qnull) == [], 'a delay notice for the null '
              'sender: %s' % d.log_tail(10))
        check(not re.search(r'^W ', state_file(d, qnull), re.M),
              'W record for the null sender: %r' % state_file(d, qnull))
        dsns = null_sender_txns(p)
        # the null-sender original itself is also "from <>", refused at
        # RCPT; the only delivered mail from <> is the control's notice
        got = [t for t in p.delivered() if t.sender == '']
        check(len(got) == 1 and got[0].accepted == [SENDER],
              'delivered from <>: %r (all %r)' % (got, dsns))
        check(len(re.findall(r'sender delay notification',
                             d.log_text())) == 1, 'notices in the log')
        p.wait_idle()


def test_delay_warning_time_from_environment():
    """FERRY_DELAY_WARNING_TIME goes through the generic mapping, and the
    key takes Postfix's duration syntax and 0."""
    d = Daemon('dwenv')
    try:
        for val, want in (('4h', '4h'), ('90', '90s'), ('0', '0s')):
            env = dict(os.environ, FERRY_DELAY_WARNING_TIME=val)
            p = subprocess.run([FERRY_BIN, '-c', d.conf, 'check-config'],
                               capture_output=True, timeout=30 * SLOW,
                               env=env)
            out = p.stdout.decode()
            check(p.returncode == 0 and re.search(
                r'^delay_warning_time = %s\b.*FERRY_DELAY_WARNING_TIME'
                % want, out, re.M),
                'FERRY_DELAY_WARNING_TIME=%s: exit %d: %s %s'
                % (val, p.returncode, short(p.stdout, 4000),
                   p.stderr.decode(errors='replace')))
        env = dict(os.environ, FERRY_DELAY_WARNING_TIME='soon')
        p = subprocess.run([FERRY_BIN, '-c', d.conf, 'check-config'],
                           capture_output=True, timeout=30 * SLOW, env=env)
        check(p.returncode != 0 and b'FERRY_DELAY_WARNING_TIME' in
              p.stderr, 'a bad value: exit %d: %s'
              % (p.returncode, p.stderr.decode(errors='replace')))
    finally:
        d.cleanup(True)
