"""
test_dotlocal.py - local parts with a leading, trailing or doubled dot
("a..b@", ".a@", "a.@": old Japanese mobile carriers gave such addresses
out).  RFC 5321's Dot-string forbids them, but Postfix takes them by
default (strict_rfc821_envelopes = no); ferry refused them with 501 and
the mail of such senders was lost.  Each door takes them now (SMTP,
sendmail arguments and -t headers, the maildrop pickup, aliases), and the
address stays byte for byte in the queue file, mailq, the log, the next
hop's MAIL FROM and RCPT TO, and the DSN; a dot opens no relaying.
"""

import os
import re

from ferrytest import Daemon, check, short, stuff, free_port, UNTRUSTED
from peers import SmtpPeer, wait_delivery, one_bounce, flush, wait_for
from test_alias import write_aliases, rcpts_of
from test_deliver import (smarthost_daemon, parse_dsn, check_dsn_rcpt,
                          queue_settled)

SENDER = 'a..b@docomo.test'
RCPTS = ('.a@relay.test', 'c.@relay.test', '..d...e..@relay.test')
BAD = 'x..y.@relay.test'	# the peer refuses it: a DSN to SENDER
BODY = b'Subject: dots\r\n\r\nbody\r\n'


def queue_file(d, qid):
    with open(os.path.join(d.queue_dir, qid), 'rb') as f:
        return f.read()


def test_dotlocal_smtp_relayed_logged_queued_bounced_as_written():
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<%s>' % BAD):
            return '550 5.1.1 <%s>: Recipient address rejected' % BAD
        return None

    port = free_port()
    with smarthost_daemon('dotlocal', port) as d:
        # From outside relay_networks: relay_domains only, as any other
        # recipient.
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<%s>' % SENDER, 250, '2.1.0')
            for a in RCPTS + (BAD,):
                c.expect('RCPT TO:<%s>' % a, 250, '2.1.5')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        # Nobody listens yet: it waits in the queue.
        wait_delivery(d, qid, 'deferred', n=4)
        raw = queue_file(d, qid)
        want = ('S %s\n' % SENDER + ''.join('R %s\n' % a for a in
                                             RCPTS + (BAD,))).encode()
        check(want in raw, 'queue file %s lacks %r: %s'
              % (qid, want, short(raw, 600)))
        q = d.mailq()
        check(len(q) == 1 and q[0]['sender'] == SENDER and
              [r['address'] for r in q[0]['recipients']] ==
              list(RCPTS + (BAD,)), 'mailq %r' % q)
        check(re.search(r'\b%s: from=<%s>, size=' % (qid, re.escape(SENDER)),
                        d.log_text()), 'no from=<%s> line: %s'
              % (SENDER, d.log_tail(20)))
        with SmtpPeer(port=port, policy=policy) as p:
            flush(d)
            got = sorted(r.to for r in wait_delivery(d, qid, 'sent',
                                                     n=len(RCPTS)))
            check(got == sorted(RCPTS), 'sent to %r' % got)
            wait_delivery(d, qid, 'bounced')
            b = one_bounce(d, qid)[0]
            wait_delivery(d, b, 'sent')
            t = wait_for(lambda: [x for x in p.delivered()
                                  if x.sender == ''], 5, 'the DSN')[0]
            orig = [x for x in p.txns() if x.sender != '']
            check(len(orig) == 1 and re.fullmatch(r'<%s>( .*)?' % re.escape(
                SENDER), orig[0].mail) and
                  [a for a, _ in orig[0].rcpts] == list(RCPTS + (BAD,)) and
                  orig[0].accepted == list(RCPTS),
                  'the relayed transaction %r' % orig)
            # The DSN goes back to the sender as written, and names the
            # recipient as written.
            check(t.accepted == [SENDER], 'the DSN transaction %r' % t)
            msg, _, blocks, _ = parse_dsn(t.body, 'DSN to a dotted sender')
            check(msg['To'] == '<%s>' % SENDER, 'DSN To: %r' % msg['To'])
            check(len(blocks) == 1, 'DSN blocks %r' % blocks)
            check_dsn_rcpt(blocks[0], BAD, r'5\.1\.1', 'DSN')
            queue_settled(d)
            p.wait_idle()


def test_dotlocal_no_way_around_relay_control():
    """A dot next to the tricks changes nothing: '%', '!', a quoted '@',
    a source route and another domain still get 554 from outside
    relay_networks, and only the plain dotted recipient is queued."""
    denied = ('.u%other.test@relay.test', 'other.test!..u@relay.test',
              '"u..@other.test"@relay.test', '@relay.test:.u@other.test',
              'a..b@other.test', 'u.@relay.test.other.test')
    with Daemon('dotrelay') as d:
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<.s.@example.test>', 250, '2.1.0')
            for a in denied:
                r = c.expect('RCPT TO:<%s>' % a, 554, '5.7.1')
                check('Relay access denied' in r.text, 'reply %r' % r.text)
            c.expect('RCPT TO:<ok..@relay.test>', 250, '2.1.5')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid and
              q[0]['sender'] == '.s.@example.test' and
              [r['address'] for r in q[0]['recipients']] ==
              ['ok..@relay.test'], 'mailq %r' % q)
        d.assert_stored(qid, BODY)


def test_dotlocal_sendmail_pickup_and_aliases():
    """sendmail -f and recipient arguments, -t headers, the maildrop
    pickup (daemon down) and an alias's list take them as written."""
    d = Daemon('dotsm', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, 'root: .admin..x.@example.org\n'
                                     'a..b: y..@relay.test\n')
    d.write_config()
    msg = b'From: me@example.test\nTo: .t..o.@relay.test, a..b\n\nbody\n'
    d.start()
    p = d.cli('sendmail', '-f', SENDER, '.c..@relay.test', 'root',
              input=b'Subject: args\n\nbody\n')
    check(p.returncode == 0, 'sendmail exit %d: %s'
          % (p.returncode, short(p.stderr)))
    p = d.cli('sendmail', '-t', '-f', '.f@example.test', input=msg)
    check(p.returncode == 0, 'sendmail -t exit %d: %s'
          % (p.returncode, short(p.stderr)))
    q = d.wait_queue(2)
    got = sorted((m['sender'], tuple(sorted(r['address'] for r in
                                            m['recipients'])))
                 for m in q)
    check(got == [('.f@example.test', ('.t..o.@relay.test',
                                       'y..@relay.test')),
                  (SENDER, ('.admin..x.@example.org',
                            '.c..@relay.test'))],
          'queued %r' % got)
    for m in q:
        if m['sender'] == '.f@example.test':
            out = d.cat(m['id'])
            check(b'\r\nTo: .t..o.@relay.test, a..b@box.test\r\n' in
                  out, '-t header: %s' % short(out, 600))
    d.stop()
    # daemon down: maildrop, read again by the pickup
    p = d.cli('sendmail', '-f', SENDER, '..z@relay.test', 'a..b',
              input=b'Subject: drop\n\nbody\n')
    check(p.returncode == 0, 'sendmail (down) exit %d: %s'
          % (p.returncode, short(p.stderr)))
    with d:
        q = wait_for(lambda: (lambda l: l if len(l) == 3 else None)(
            d.mailq()), 10, 'the pickup')
        m = [x for x in q if rcpts_of(d, x['id']) == ['..z@relay.test',
                                                     'y..@relay.test']]
        check(len(m) == 1 and m[0]['sender'] == SENDER,
              'picked up %r' % q)
        check(re.search(r'\b%s: uid=\d+ from=<%s>' % (m[0]['id'],
                                                      re.escape(SENDER)),
                        d.log_text()), 'pickup log: %s' % d.log_tail(20))
