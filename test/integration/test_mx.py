"""
test_mx.py - MX selection as RFC 5321 section 5.1 and Postfix have it,
through the real daemon against a private unbound (test_dns.DnsServer):
a destination where no mail exchanger has an address at all is bounced
at once (5.4.4, Postfix's words), not deferred for the queue's lifetime;
one where some host failed in a way that may pass (a dead address) is
deferred.  DSNs are read where they are delivered (the sender's MX).
"""

from ferrytest import check
from peers import Sink, SmtpPeer, wait_delivery, bind_probe
from test_dns import DnsServer
from test_deliver import (BODY, SENDER, SENDER_ZONE, _dns_bounce,
                          check_log_line, mx_daemon, zone)

NO_DATA = r'Host found but no data record of requested type'


def test_mx_implicit_mx_without_address_bounces():
    """No MX and no A/AAAA (the name holds a TXT only): Postfix bounces
    5.4.4 at once; this was deferred, 4.4.3 'try again', for days."""
    _dns_bounce('noaddr', ('noaddr.test. TXT \\"no mail\\"',),
                'x@noaddr.test', '5.4.4',
                r'^Host or domain name not found\. Name service error for '
                r'name=noaddr\.test type=A: ' + NO_DATA + '$')


def test_mx_no_host_has_an_address_bounces():
    """Both MX hosts lack addresses, one that does not exist and one
    that does with no A/AAAA: bounced 5.4.4, naming the last."""
    _dns_bounce('mxnoaddr', ('gone.test. MX 10 mx.nowhere.test.',
                             'gone.test. MX 20 mx2.gone.test.',
                             'mx2.gone.test. TXT \\"no mail\\"'),
                'x@gone.test', '5.4.4',
                r'name=mx2\.gone\.test type=A: ' + NO_DATA + '$')


def test_mx_missing_host_and_dead_host_defer():
    """One MX host does not exist, the other is a dead address: whichever
    comes first, the mail is deferred (the dead host may come back),
    never bounced; with the missing host last the code is Postfix's
    4.4.4."""
    z = zone('dm1.test. MX 10 mx.nowhere.test.',
             'dm1.test. MX 20 mx.dm.test.',
             'dm2.test. MX 10 mx.dm.test.',
             'dm2.test. MX 20 mx.nowhere.test.',
             'mx.dm.test. A 127.0.0.2', *SENDER_ZONE)
    with Sink('127.0.0.9') as s:
        check(bind_probe('127.0.0.2', s.port), 'something on 127.0.0.2')
        with DnsServer(z) as dns, mx_daemon('mxdead', dns, s.port) as d:
            q1 = d.send_message(BODY, sender=SENDER, rcpts=('x@dm1.test',))
            q2 = d.send_message(BODY, sender=SENDER, rcpts=('x@dm2.test',))
            r = wait_delivery(d, q1, 'deferred')[0]
            check_log_line(r, 'x@dm1.test', 'deferred', r'4\.4\.1',
                           text_re=r'mx\.dm\.test\[127\.0\.0\.2\]')
            r = wait_delivery(d, q2, 'deferred')[0]
            check_log_line(r, 'x@dm2.test', 'deferred', r'4\.4\.4',
                           text_re=r'name=mx\.nowhere\.test type=A: '
                           r'Host not found$')
            check(sorted(d.mailq_ids()) == sorted([q1, q2]),
                  'queue %r' % d.mailq_ids())
            check(s.messages() == [], 'a DSN went out: %r' % s.messages())


def test_mx_self_in_the_list():
    """RFC 5321 section 5.1: ferry's own name (hostname) in the MX list.
    As the best MX: bounced 5.4.6, Postfix's 'loops back to myself'.  As
    a backup MX: only the better host is tried (dead here: deferred);
    neither ferry itself nor the worse host behind it gets the mail."""
    rr = ('self.test. MX 10 mx.me.test.', 'mx.me.test. A 127.0.0.1',
          'bk.test. MX 10 mx.bk.test.', 'bk.test. MX 20 MX.ME.TEST.',
          'bk.test. MX 30 low.bk.test.', 'mx.bk.test. A 127.0.0.2',
          'low.bk.test. A 127.0.0.4')
    _dns_bounce('mxself', rr, 'x@self.test', '5.4.6',
                r'^mail for self\.test loops back to myself$',
                hostname='mx.me.test')
    z = zone(*rr)
    with Sink('127.0.0.4') as low:
        check(bind_probe('127.0.0.2', low.port), 'something on 127.0.0.2')
        with DnsServer(z) as dns, mx_daemon('mxbackup', dns, low.port,
                                            hostname='mx.me.test') as d:
            qid = d.send_message(BODY, rcpts=('x@bk.test',))
            r = wait_delivery(d, qid, 'deferred')[0]
            check_log_line(r, 'x@bk.test', 'deferred', r'4\.4\.1',
                           text_re=r'mx\.bk\.test\[127\.0\.0\.2\]')
            check(low.messages() == [], 'the MX 30 host got %r'
                  % low.messages())


def test_mx_address_and_session_limits():
    """Postfix's smtp_mx_address_limit (5) and smtp_mx_session_limit (2):
    one attempt tries at most five addresses and two sessions, then
    defers with the last failure; each address has the full deadlines,
    so 16 hosts of 16 addresses, all slow, held a delivery slot for
    days.  Six MX hosts of which only the last listens: deferred, the
    sixth never tried.  Three hosts that greet, two with 421: deferred
    after the second session, the third never tried."""
    addrs = ['127.0.3.%d' % i for i in range(1, 7)]
    rr = ['six.test. MX %d mx%d.six.test.' % (10 * i, i) for i in range(1, 7)]
    rr += ['mx%d.six.test. A %s' % (i, a) for i, a in enumerate(addrs, 1)]
    rr += ['three.test. MX %d m%d.three.test.' % (10 * i, i)
           for i in range(1, 4)]
    rr += ['m%d.three.test. A 127.0.4.%d' % (i, i) for i in range(1, 4)]
    z = zone(*rr)

    def busy(sess, verb, arg, txn):
        return '421 4.3.2 busy' if verb == 'CONNECT' else None

    with Sink(addrs[-1]) as last:
        port = last.port
        for a in addrs[:-1]:
            check(bind_probe(a, port), 'something on %s:%d' % (a, port))
        with SmtpPeer(addr='127.0.4.1', port=port, policy=busy) as p1, \
                SmtpPeer(addr='127.0.4.2', port=port, policy=busy) as p2, \
                Sink('127.0.4.3', port=port) as third, \
                DnsServer(z) as dns, \
                mx_daemon('mxlimits', dns, port) as d:
            q1 = d.send_message(BODY, rcpts=('x@six.test',))
            r = wait_delivery(d, q1, 'deferred')[0]
            check_log_line(r, 'x@six.test', 'deferred', r'4\.4\.1',
                           text_re=r'mx5\.six\.test\[127\.0\.3\.5\]')
            check(last.messages() == [], 'the sixth MX got %r'
                  % last.messages())
            q2 = d.send_message(BODY, rcpts=('y@three.test',))
            r = wait_delivery(d, q2, 'deferred')[0]
            check(r.to == 'y@three.test' and '127.0.4.2' in r.text and
                  'busy' in r.text, 'deferral %r' % r)
            with p1.lock, p2.lock:
                n = (len(p1.sessions), len(p2.sessions))
            check(n == (1, 1), 'sessions at the two busy hosts %r' % (n,))
            check(third.messages() == [], 'the third MX got %r'
                  % third.messages())
            check(sorted(d.mailq_ids()) == sorted([q1, q2]),
                  'queue %r' % d.mailq_ids())
