"""
test_hops.py - mail loops stopped by counting Received: fields, as
Postfix's hopcount_limit does: a message that arrives with more than 50
(SMTP or sendmail's local socket) is refused at the end of DATA with
554 5.4.6 and a Postfix-shaped 'NOQUEUE: reject:' line, and nothing is
queued; one with exactly 50 is taken and relayed.  Two daemons whose
smarthosts point at each other pass a message back and forth until the
one it reaches with 51 refuses it; the other bounces it, and the DSN (the
null sender) loops in turn, is refused the same way and is dropped, not
bounced: the loop ends with both queues empty.  A file sendmail left in
maildrop/ is counted the same way when the daemon picks it up, and one
over the limit goes to corrupt/, kept whole.
"""

import os
import re
import time

from ferrytest import Daemon, check, stuff, short, SLOW, IS_ROOT
from peers import (Sink, deliveries, wait_delivery, wait_removed,
                   wait_for)
from test_deliver import NO_RETRY, check_relayed, smarthost_daemon

LIMIT = 50
REFUSAL = '554 5.4.6 Error: too many hops'
REJECT_RE = (r'ferry/smtpd\[\d+\]: NOQUEUE: reject: END-OF-MESSAGE from '
             r'(\S+): 554 5\.4\.6 Error: too many hops; from=<([^>]*)> '
             r'proto=(\S+) helo=<([^>]*)>$')


def received(n, name='Received'):
    """n Received: fields, each folded over two lines: a continuation
    line is not another hop."""
    return b''.join(b'%s: from hop%d.example.test (hop%d.example.test '
                    b'[192.0.2.%d])\r\n\tby hop%d.example.test; '
                    b'Thu, 1 Jan 2026 00:00:%02d +0000\r\n'
                    % (name.encode(), i, i, i % 250 + 1, i + 1, i % 60)
                    for i in range(n))


def message(hops, extra=b''):
    """hops Received: fields on top, then a header and a body that say
    "Received:" where it does not count (another field's name, a
    continuation, the body)."""
    return (received(hops) + extra +
            b'X-Received: by mua.example.test\r\n'
            b'From: a@example.test\r\nTo: b@relay.test\r\n'
            b'Subject: hops\r\n\tReceived: not a field\r\n\r\n'
            b'Received: from body.example.test\r\n' * 3 +
            b'the end\r\n')


def rejects(*daemons):
    out = []
    for d in daemons:
        out += re.findall(REJECT_RE, d.log_text(), re.M)
    return out


def test_hops_over_limit_refused_at_end_of_data():
    """51 Received: -> 554 5.4.6 after the final dot, nothing queued, the
    reject logged; the session goes on, and 50 (with Received: where it
    does not count) is taken.  Field names are matched as msg.c reads
    them: any case, and the obsolete "Received :" (RFC 5322 4.5.8)."""
    with Daemon('hops-over') as d:
        over = (message(LIMIT + 1),
                message(LIMIT, b'rEcEiVeD: from late.example.test\r\n'),
                message(LIMIT, b'Received : from obs.example.test\r\n'),
                message(LIMIT + 200))
        with d.session() as c:
            for i, body in enumerate(over):
                c.expect('MAIL FROM:<s%d@example.test>' % i, 250)
                c.expect('RCPT TO:<r@relay.test>', 250)
                c.expect('DATA', 354)
                r = c.expect(stuff(body), 554, '5.4.6')
                check(r.text == REFUSAL, 'reply %r, want %r' % (r.text,
                                                                REFUSAL))
                d.assert_empty('message %d over the hop limit' % i)
            c.expect('MAIL FROM:<ok@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            body = message(LIMIT)
            qid = c.expect(stuff(body), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        check(d.mailq_ids() == [qid], 'queue %r, want only %s'
              % (d.mailq_ids(), qid))
        d.assert_stored(qid, body)
        wait_for(lambda: len(rejects(d)) == len(over), 5,
                 '%d reject lines; log:\n%s' % (len(over), d.log_tail(20)))
        got = rejects(d)
        check(got == [('unknown[127.0.0.1]', 's%d@example.test' % i,
                       'ESMTP', 'client.test') for i in range(len(over))],
              'reject lines %r' % got)


def test_hops_at_limit_delivered():
    """Exactly 50 Received: is taken and relayed byte for byte, with
    ferry's own on top (51 leave: the next hop refuses if it counts as
    ferry does)."""
    with Sink() as s, smarthost_daemon('hops-50', s.port) as d:
        body = message(LIMIT)
        qid = d.send_message(body)
        wait_delivery(d, qid, 'sent')
        wait_removed(d, qid)
        m = s.wait_count(1)
        check(len(m) == 1, 'smtp-sink got %r' % m)
        check_relayed(m[0].body, body, 'relayed with 50 Received:', lf=True)
        check(m[0].body.count(b'\nReceived: ') +
              m[0].body.startswith(b'Received: ') == LIMIT + 1 + 3,
              'Received: lines at the sink: %s' % short(m[0].body, 400))
        check(rejects(d) == [], 'a reject: %r' % rejects(d))


def test_hops_sendmail_local_socket():
    """sendmail's path (the local socket) counts too: 51 is refused with
    EX_DATAERR and the daemon's words, nothing is queued and nothing
    goes to maildrop/ (a 5xx is final); 50 is queued."""
    with Daemon('hops-local') as d:
        lf = message(LIMIT + 1).replace(b'\r\n', b'\n')
        p = d.cli('sendmail', '-f', 'loop@example.test', 'r@relay.test',
                  input=lf)
        err = p.stderr.decode(errors='replace')
        check(p.returncode == 65 and REFUSAL in err,
              'sendmail with 51 Received: exit %d: %s' % (p.returncode, err))
        d.assert_empty('sendmail with 51 Received:')
        md = os.path.join(d.queue_dir, 'maildrop')
        check(not os.path.isdir(md) or os.listdir(md) == [],
              'maildrop/ %r' % (os.listdir(md),))
        got = wait_for(lambda: rejects(d), 5, 'the reject line; log:\n%s'
                       % d.log_tail(20))
        check(len(got) == 1 and got[0][1] == 'loop@example.test',
              'reject lines %r' % got)
        p = d.cli('sendmail', '-f', 'ok@example.test', 'r@relay.test',
                  input=message(LIMIT).replace(b'\r\n', b'\n'))
        check(p.returncode == 0, 'sendmail with 50 Received: exit %d: %s'
              % (p.returncode, p.stderr.decode(errors='replace')))
        check(len(d.wait_queue(1)) == 1, 'queue %r' % d.mailq())


def test_hops_maildrop():
    """maildrop/ counts too (a file there was queued and relayed again
    whatever it held): a loop reaches it when a .forward or a script
    hands the mail to sendmail while the daemon is down.  51 Received:
    in a dropped file: moved to corrupt/ byte for byte when the daemon
    starts, with a warning that says why, and nothing of it queued; 50
    (and Received: where it does not count) is queued."""
    d = Daemon('hops-maildrop')
    ok = False
    try:
        d.start()
        d.stop()		# leaves queue_dir and maildrop/ created
        md = os.path.join(d.queue_dir, 'maildrop')
        dropped = {}
        for hops in (LIMIT + 1, LIMIT):
            before = set(os.listdir(md))
            p = d.cli('sendmail', '-f', 'h%d@example.test' % hops,
                      'r@relay.test', user='nobody' if IS_ROOT else None,
                      input=message(hops).replace(b'\r\n', b'\n'))
            new = sorted(set(os.listdir(md)) - before)
            check(p.returncode == 0 and len(new) == 1,
                  'sendmail with %d Received:, daemon down: exit %d, '
                  'new in maildrop/ %r: %s' % (hops, p.returncode, new,
                                               short(p.stderr)))
            with open(os.path.join(md, new[0]), 'rb') as f:
                dropped[hops] = (new[0], f.read())
        d.start()
        name, raw = dropped[LIMIT + 1]
        d.wait_log(r'maildrop/%s: moved to corrupt/: too many hops '
                   r'\(a mail loop\)$' % name, 8)
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1 and q[0]['sender'] == 'h%d@example.test' % LIMIT,
              'mailq %r' % q)
        out = d.cat(q[0]['id'])
        check(out.endswith(b'\r\n\r\n' + message(LIMIT).partition(
            b'\r\n\r\n')[2]), 'queued with 50: %s' % short(out, 600))
        check(d.corrupt_files() == [name] and os.listdir(md) == [],
              'corrupt/ %r (want %r), maildrop/ %r'
              % (d.corrupt_files(), name, os.listdir(md)))
        with open(os.path.join(d.queue_dir, 'corrupt', name), 'rb') as f:
            check(f.read() == raw, 'corrupt/%s is not the dropped file'
                  % name)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_hops_smarthost_loop_stops():
    """Two relays, each the other's smarthost.  The message goes round
    until the hop that sees 51 Received: refuses it with 554 5.4.6: it
    is sent on 50 times, and the 51st try is bounced by the hop that made
    it, which makes one DSN.  The DSN (MAIL FROM:<>) takes the same loop, is refused the same
    way and is dropped: no bounce of a bounce, and then both queues are
    empty and stay so."""
    a = Daemon('hops-loop-a', **NO_RETRY)
    b = Daemon('hops-loop-b', smarthost='[127.0.0.1]:%d' % a.port,
               **NO_RETRY)
    a.cfg['smarthost'] = '[127.0.0.1]:%d' % b.port
    a.write_config()
    with a, b:
        check(a.cfg['smarthost'].endswith(':%d' % b.port) and
              b.cfg['smarthost'].endswith(':%d' % a.port),
              'a port moved at start: the loop is not closed')
        qid = a.send_message(b'From: sender@example.test\r\n'
                             b'Subject: round and round\r\n\r\nbody\r\n')
        both = (a, b)

        def log():
            return a.log_text() + b.log_text()
        wait_for(lambda: 'undeliverable bounce discarded' in log(),
                 120, 'the DSN dropped after its own loop; logs:\n%s\n%s'
                 % (a.log_tail(10), b.log_tail(10)))
        for d in both:
            wait_for(lambda: d.mailq() == [], 10, 'an empty queue at %s: %r'
                     % (d.name, d.mailq()))
        n = len(log())
        time.sleep(1.0 * SLOW)
        check(len(log()) == n and all(d.mailq() == [] for d in both),
              'still moving after the loop stopped:\n%s'
              % log()[n:][:2000])

        def lines(to, status):
            return [r for d in both
                    for r in deliveries(d, status=status) if r.to == to]
        # The message came to a from us with none: it is sent on 50 times
        # (arriving with 1 to 50) and refused with 51.  The DSN starts in
        # a queue with none, so it is sent once more.
        for to, n in (('rcpt@relay.test', LIMIT),
                      ('sender@example.test', LIMIT + 1)):
            sent, bounced = lines(to, 'sent'), lines(to, 'bounced')
            check(len(sent) == n and len(bounced) == 1,
                  'to=<%s>: %d sent, %d bounced; want %d and 1'
                  % (to, len(sent), len(bounced), n))
            r = bounced[0]
            check(r.dsn == '5.4.6' and r.text == 'host 127.0.0.1[127.0.0.1] '
                  'said: %s (in reply to end of DATA command)' % REFUSAL,
                  'the bounce: %r' % r)
        check(lines('rcpt@relay.test', 'deferred') == [] and
              lines('sender@example.test', 'deferred') == [],
              'deferrals in the loop')
        got = rejects(a, b)
        check(sorted(g[1] for g in got) == ['', 'sender@example.test'],
              'reject lines %r, want one for the message, one for its DSN'
              % got)
        dsns = re.findall(r'\b([0-9A-F]{18}): sender non-delivery '
                          r'notification', log())
        check(len(dsns) == 1, 'DSNs made: %r' % dsns)
        check(qid in a.log_text(), 'the first queue ID %s' % qid)
