"""
test_literal.py - recipients with an address-literal domain
(u@[192.0.2.1], u@[IPv6:2001:db8::1]) relayed directly, no smarthost:
RFC 5321 section 5.1 sends them to that address with no MX lookup, on
mx_port, each spelling of one address one destination, logged as Postfix
does (relay=127.0.0.2[127.0.0.2]:PORT).  A DNS server that only counts
the queries it gets proves none was asked.  A literal that is one of
ferry's own addresses would come straight back (ferry has no local
delivery): RCPT refuses it 550 5.4.6, and one that got into the queue
another way (maildrop/) bounces at the second hop instead of looping.
"""

import os
import re
import socket
import threading

from ferrytest import Daemon, check, free_port
from peers import SmtpPeer, wait_delivery, wait_removed, one_bounce
from test_deliver import (BODY, NO_RETRY, check_dsn_rcpt, check_log_line,
                          parse_dsn)
from test_policy import policy_file


class QueryCounter:
    """A 'DNS server' on 127.0.0.1:port that answers nothing and counts
    the datagrams it gets.  Never answering also means a lookup ferry did
    make would defer the mail (a timeout), so the test fails either way."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                self.sock.recv(4096)
                self.count += 1
            except socket.timeout:
                pass
            except OSError:
                return

    @property
    def server(self):
        return '127.0.0.1:%d' % self.port

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.thread.join()
        self.sock.close()


def literal_daemon(name, dns, port, **cfg):
    c = dict(NO_RETRY, smarthost='', mx_port=str(port),
             dns_servers=dns.server)
    c.update(cfg)
    return Daemon(name, **c)


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(('::1', 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_literal_delivered_to_its_address_without_dns():
    """u@[127.0.0.2] goes to the peer on 127.0.0.2:mx_port and nowhere
    else, no DNS query made; the log names the relay as Postfix does."""
    port = free_port()
    with QueryCounter() as dns, SmtpPeer('127.0.0.2', port) as p2, \
            SmtpPeer('127.0.0.3', port) as p3, \
            literal_daemon('lit4', dns, port) as d:
        qid = d.send_message(BODY, rcpts=('u@[127.0.0.2]',
                                          'v@[127.0.0.2]'))
        r = wait_delivery(d, qid, 'sent', n=2)
        for line, to in zip(sorted(r, key=lambda x: x.to),
                            ('u@[127.0.0.2]', 'v@[127.0.0.2]')):
            check_log_line(line, to, 'sent', r'2\.0\.0',
                           relay_re=r'127\.0\.0\.2\[127\.0\.0\.2\]:%d'
                           % port)
        wait_removed(d, qid)
        t = p2.wait_delivered(1)
        check(len(t) == 1 and sorted(t[0].accepted) ==
              ['u@[127.0.0.2]', 'v@[127.0.0.2]'] and
              t[0].body.endswith(BODY),
              'peer 127.0.0.2 got %r' % t)
        check(p3.txns() == [] and p3.connections == 0,
              'peer 127.0.0.3 was reached: %r' % p3.txns())
        p2.wait_idle()
        check(dns.count == 0, '%d DNS queries for a literal' % dns.count)


def test_literal_ipv6_spellings_are_one_destination():
    """[IPv6:::1], [ipv6:0:0::1] and [IPV6:0::0:1] name one address:
    one destination, one transaction with three recipients at ::1 (the
    tag stripped, nothing looked up), relay=::1[::1]:PORT."""
    if not have_ipv6_loopback():
        return 'skipped: no ::1 here'
    port = free_port()
    rcpts = ('a@[IPv6:::1]', 'b@[ipv6:0:0::1]', 'c@[IPV6:0::0:1]')
    with QueryCounter() as dns, SmtpPeer('::1', port) as p, \
            literal_daemon('lit6', dns, port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        r = wait_delivery(d, qid, 'sent', n=3)
        for line in r:
            check_log_line(line, line.to, 'sent', r'2\.0\.0',
                           relay_re=r'::1\[::1\]:%d' % port)
        check(sorted(x.to for x in r) == sorted(rcpts),
              'logged %r' % r)
        t = p.wait_delivered(1)
        check(len(t) == 1 and sorted(t[0].accepted) == sorted(rcpts),
              'one transaction with all three wanted, got %r' % p.txns())
        check(p.connections == 1, '%d connections' % p.connections)
        p.wait_idle()
        check(dns.count == 0, '%d DNS queries for a literal' % dns.count)


def test_literal_tls_levels():
    """A literal has no name to look up TLSA records for: outbound_tls =
    dane delivers as may (the peer offers no STARTTLS: plaintext), and
    dane-only defers 4.7.5 without connecting.  tls_policy finds the
    literal under its address: encrypt there defers 4.7.4 at a peer
    without STARTTLS, while another address keeps outbound_tls."""
    port = free_port()
    with QueryCounter() as dns, SmtpPeer('127.0.0.2', port) as p, \
            literal_daemon('litdane', dns, port, outbound_tls='dane') as d:
        qid = d.send_message(BODY, rcpts=('u@[127.0.0.2]',))
        wait_delivery(d, qid, 'sent')
        check(len(p.delivered()) == 1, 'peer got %r' % p.txns())
        check(dns.count == 0, '%d DNS queries for a literal' % dns.count)
    with QueryCounter() as dns, SmtpPeer('127.0.0.2', port) as p, \
            literal_daemon('litdaneonly', dns, port,
                           outbound_tls='dane-only') as d:
        qid = d.send_message(BODY, rcpts=('u@[127.0.0.2]',))
        r = wait_delivery(d, qid, 'deferred')[0]
        check_log_line(r, 'u@[127.0.0.2]', 'deferred', r'4\.7\.5',
                       text_re=r'not an address literal')
        check(p.connections == 0, 'dane-only connected: %r' % p.txns())
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
    with QueryCounter() as dns, SmtpPeer('127.0.0.2', port) as p2, \
            SmtpPeer('127.0.0.3', port) as p3:
        d = literal_daemon('litpolicy', dns, port, outbound_tls='may')
        d.cfg['tls_policy'] = policy_file(d, '127.0.0.2 encrypt\n')
        d.write_config()
        with d:
            q2 = d.send_message(BODY, rcpts=('u@[127.0.0.2]',))
            q3 = d.send_message(BODY, rcpts=('u@[127.0.0.3]',))
            r = wait_delivery(d, q2, 'deferred')[0]
            check_log_line(r, 'u@[127.0.0.2]', 'deferred', r'4\.7\.4',
                           text_re=r'TLS is required, but was not offered '
                           r'by host 127\.0\.0\.2\[127\.0\.0\.2\]')
            wait_delivery(d, q3, 'sent')
            check(p2.delivered() == [] and len(p3.delivered()) == 1,
                  'delivered: %r, %r' % (p2.txns(), p3.txns()))


def test_literal_ipv6_tls_policy():
    """tls_policy takes an IPv6 address (any spelling) as the key for
    u@[IPv6:...]: "0::1 encrypt" defers 4.7.4 at ::1, which offers no
    STARTTLS.  Such a line stopped the start (78, "bad character in the
    domain")."""
    if not have_ipv6_loopback():
        return 'skipped: no ::1 here'
    port = free_port()
    with QueryCounter() as dns, SmtpPeer('::1', port) as p:
        d = literal_daemon('lit6policy', dns, port, outbound_tls='may')
        d.cfg['tls_policy'] = policy_file(d, '0::1 encrypt\n')
        d.write_config()
        with d:
            qid = d.send_message(BODY, rcpts=('u@[IPv6:::1]',))
            r = wait_delivery(d, qid, 'deferred')[0]
            check_log_line(r, 'u@[IPv6:::1]', 'deferred', r'4\.7\.4',
                           text_re=r'TLS is required, but was not offered '
                           r'by host ::1\[::1\]')
            check(p.delivered() == [], 'delivered: %r' % p.txns())


def test_literal_of_our_own_address_refused():
    """The daemon listens on 127.0.0.1: u@[127.0.0.1], the IPv4-mapped
    spelling of it and the unspecified address would come back to it.
    RCPT says 550 5.4.6, to a trusted client too, and logs the reject;
    [127.0.0.2] in the same transaction is taken and alone queued.
    sendmail gets the refusal and queues nothing."""
    with QueryCounter() as dns, literal_daemon('litself', dns,
                                               free_port()) as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            for a in ('u@[127.0.0.1]', 'u@[IPv6:::ffff:127.0.0.1]',
                      'u@[0.0.0.0]', 'u@[IPv6:::]'):
                r = c.expect('RCPT TO:<%s>' % a, 550, '5.4.6')
                check('loops back to myself' in r.text, 'reply %r' % r)
                d.wait_log(r'NOQUEUE: reject: RCPT from \S+: 550 5\.4\.6 '
                           r'<%s>: .*to=<%s>' % (re.escape(a), re.escape(a)))
            c.expect('RCPT TO:<v@[127.0.0.2]>', 250, '2.1.5')
            c.expect('DATA', 354)
            qid = c.expect(b'Subject: x\r\n\r\nx\r\n.\r\n', 250).qid()
            c.expect('QUIT', 221)
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid and
              [x['address'] for x in q[0]['recipients']] ==
              ['v@[127.0.0.2]'], 'queue %r' % q)
        p = d.cli('sendmail', '-f', 's@example.test', 'w@[127.0.0.1]',
                  input=b'Subject: y\n\ny\n')
        check(p.returncode != 0 and b'5.4.6' in p.stderr,
              'sendmail to our own literal: exit %d, %r'
              % (p.returncode, p.stderr))
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())


def test_literal_of_our_own_address_from_maildrop_bounces():
    """A literal of ours that reached the queue without our RCPT (written
    to maildrop/ while the daemon was down) is delivered to ourselves,
    once: our own RCPT refuses it 5.4.6, the mail bounces to its sender
    (u@[127.0.0.2], a peer on mx_port) and nothing loops."""
    port = free_port()
    with QueryCounter() as dns, SmtpPeer('127.0.0.2', port) as p:
        d = literal_daemon('litloop', dns, port,
                           listen_smtp='127.0.0.1:%d' % port)
        d.port = port		# mx_port: deliveries come back to it
        d.start()
        d.stop()		# leaves queue_dir and maildrop/ created
        r = d.cli('sendmail', '-f', 'u@[127.0.0.2]', 'me@[127.0.0.1]',
                  input=b'Subject: loop\n\nround and round\n')
        check(r.returncode == 0 and
              len(os.listdir(os.path.join(d.queue_dir, 'maildrop'))) == 1,
              'sendmail while down: exit %d %r' % (r.returncode, r.stderr))
        with d:
            qid = d.wait_log(r'([0-9A-F]{18}): uid=\d+ from=<u@\[127'
                             r'\.0\.0\.2\]>').group(1)
            line = wait_delivery(d, qid, 'bounced')[0]
            check_log_line(line, 'me@[127.0.0.1]', 'bounced', r'5\.4\.6',
                           relay_re=r'127\.0\.0\.1\[127\.0\.0\.1\]:%d' % port,
                           text_re=r'loops back to myself')
            wait_removed(d, qid)
            b = one_bounce(d, qid)
            wait_delivery(d, b[0], 'sent')
            t = p.wait_delivered(1)
            check(len(t) == 1 and t[0].sender == '' and
                  t[0].accepted == ['u@[127.0.0.2]'], 'peer got %r' % t)
            _, _, blocks, _ = parse_dsn(t[0].body, 'DSN')
            check(len(blocks) == 1, 'DSN lists %d recipients' % len(blocks))
            check_dsn_rcpt(blocks[0], 'me@[127.0.0.1]', r'5\.4\.6', 'DSN',
                           diag_re=r'loops back to myself')
            rejects = re.findall(r'NOQUEUE: reject: RCPT .* 550 5\.4\.6',
                                 d.log_text())
            check(len(rejects) == 1, 'our RCPT refused it %d times'
                  % len(rejects))
            d.assert_empty('after the bounce')
            check(dns.count == 0, '%d DNS queries' % dns.count)


def test_literal_reload_removing_smarthost_routes_again():
    """A message waiting for a connection to smarthost = [127.0.0.1]:P
    when a reload removes the smarthost was sent to 127.0.0.1 on mx_port
    as if "[127.0.0.1]" were its recipient's literal domain: to the old
    smarthost's host on port 25, without smarthost_tls or AUTH, where a
    "relay access denied" bounced it.  Now it is deferred, to be routed
    again under the new settings.  The DNS server answers nothing."""
    import time
    from peers import deliveries
    from test_reload import hup
    from peers import held_at_dot
    policy, at_dot, gate = held_at_dot()
    with QueryCounter() as dns, SmtpPeer(policy=policy) as relay, \
            SmtpPeer() as mx:
        d = literal_daemon('litreload', dns, mx.port,
                           smarthost='[127.0.0.1]:%d' % relay.port,
                           max_deliveries_per_destination='1')
        with d:
            q1 = d.send_message(BODY)
            check(at_dot.wait(10), 'the first message never reached '
                  'the smarthost')
            q2 = d.send_message(BODY)
            time.sleep(0.3)
            d.cfg['smarthost'] = ''
            d.write_config()
            hup(d)
            gate.set()
            wait_delivery(d, q1, 'sent')
            r = wait_delivery(d, q2, 'deferred')[0]
            check(r.dsn == '4.3.5' and 'smarthost' in r.text,
                  'the waiting message: %r' % r)
            time.sleep(0.5)
            got = [(x.id, x.status) for x in deliveries(d)]
            check(got == [(q1, 'sent'), (q2, 'deferred')],
                  'results %r' % got)
            check(len(relay.delivered()) == 1 and mx.connections == 0,
                  'the smarthost got %d, 127.0.0.1:mx_port %d'
                  % (len(relay.delivered()), len(mx.delivered())))


def test_literal_own_check_with_nonlocal_bind():
    """Whether a literal is ours was asked of bind(), which takes any
    address where net.ipv4.ip_nonlocal_bind = 1 (keepalived and HAProxy
    hosts set it for their floating addresses): under a wildcard
    listener every literal was then 'ours', u@[192.0.2.1] refused 550
    5.4.6 for good.  In a network namespace of its own with that
    setting, the daemon (listening on 0.0.0.0, reached through its
    local socket) still refuses [127.0.0.1], [127.0.0.2] (127/8 is
    this host's) and [0.0.0.0], and takes [192.0.2.1]."""
    import subprocess
    import time
    from ferrytest import SLOW
    setup = ('ip link set lo up && sysctl -qw net.ipv4.ip_nonlocal_bind=1'
             ' && exec "$@"')
    if subprocess.run(['unshare', '-n', 'sh', '-c', setup, 'sh', 'true'],
                      capture_output=True).returncode != 0:
        return 'skipped: no network namespace here'
    d = Daemon('litnonlocal', listen_smtp='0.0.0.0:%d' % free_port())
    # unshare and sh exec: the daemon is the process started.
    d.wrap = ['unshare', '-n', 'sh', '-c', setup, 'sh']
    d.start(wait=False)
    d.wrap = []
    try:
        d.wait_log(r'daemon started', timeout=10)
        sock = d.cfg['local_socket']
        deadline = time.monotonic() + 10 * SLOW
        while not os.path.exists(sock):
            check(time.monotonic() < deadline, 'no local socket; log:\n%s'
                  % d.log_tail())
            time.sleep(0.05)
        for rcpt, ours in (('u@[127.0.0.1]', True), ('u@[127.0.0.2]', True),
                           ('u@[0.0.0.0]', True), ('u@[192.0.2.1]', False)):
            p = d.cli('sendmail', '-f', 's@example.test', rcpt,
                      input=b'Subject: nonlocal\n\nx\n')
            got = p.returncode != 0 and b'5.4.6' in p.stderr
            check(got == ours, 'sendmail to %s: exit %d, %r (want %s)'
                  % (rcpt, p.returncode, p.stderr,
                     'refused' if ours else 'queued'))
        q = d.mailq()
        check(len(q) == 1 and [x['address'] for x in q[0]['recipients']]
              == ['u@[192.0.2.1]'], 'queue %r' % q)
    finally:
        d.stop()
