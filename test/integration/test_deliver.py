"""
test_deliver.py - outbound delivery with real peers: Postfix's smtp-sink
as the smarthost and as MX hosts on 127.0.0.x (one port per test, the
same on every address: mx_port), a private unbound serving the test zone
(test_dns.DnsServer), and peers.SmtpPeer for odd replies.  Covers the
smarthost path byte for byte, MX preference and failover, A fallback,
null MX, NXDOMAIN, SERVFAIL, a dead smarthost coming back, 4xx then
success, 5xx for one of three recipients, expiry, no bounce of a bounce,
PIPELINING on and off, 8BITMIME, SIZE, restart with deferred mail, one
transaction per destination, connection reuse, the per-destination
limit, and 421 mid-session.  DSNs are read where they are delivered.
"""

import email
import os
import re
import signal
import time

from ferrytest import (Daemon, TestFailure, check, stuff, short, free_port,
                       strace_wrap, STRACE_LINE_RE, SLOW)
from peers import (Sink, SmtpPeer, deliveries, wait_delivery, wait_removed,
                   bounce_ids, one_bounce, flush, crlf_to_lf, wait_for,
                   bind_probe)
from test_dns import DnsServer

BODY = (b'From: Sender <sender@example.test>\r\nTo: rcpt@relay.test\r\n'
        b'Subject: delivery test\r\nMessage-ID: <t1@example.test>\r\n\r\n'
        b'first line\r\n.a line that starts with a dot\r\n..two dots\r\n'
        b'. \r\n\r\nlast line\r\n')

# Retries only when a test says so (ferry flush), never by the clock.
NO_RETRY = dict(retry_min='1h', retry_max='2h', queue_lifetime='1d')

# The smarthost_daemon's peer, as Postfix names a server: name[address].
PEER = '127.0.0.1[127.0.0.1]'


def said(reply, cmd, host=PEER):
    """A server's refusal in Postfix's words (its smtp_proto.c), as ferry
    logs it, lists it in mailq and writes it in a DSN's text."""
    return 'host %s said: %s (in reply to %s command)' % (host, reply, cmd)


def smarthost_daemon(name, port, **cfg):
    c = dict(NO_RETRY, smarthost='[127.0.0.1]:%d' % port)
    c.update(cfg)
    return Daemon(name, **c)


def mx_daemon(name, dns, port, **cfg):
    c = dict(NO_RETRY, smarthost='', mx_port=str(port),
             dns_servers=dns.server)
    c.update(cfg)
    return Daemon(name, **c)


def zone(*records):
    return ''.join('local-data: "%s"\n' % r for r in records)


# The sender's own domain, for DSNs in MX mode: its MX is 127.0.0.9.
SENDER = 'sender@snd.test'
SENDER_ZONE = ('snd.test. MX 10 mx.snd.test.', 'mx.snd.test. A 127.0.0.9')


def check_relayed(got, body, what, lf=False):
    """got is the message as relayed: one Received: header that ferry
    added (folded), then the sent body byte for byte (CRLF, or LF as
    smtp-sink stores it)."""
    want = crlf_to_lf(body) if lf else body
    nl = b'\n' if lf else b'\r\n'
    check(got.endswith(want), '%s: relayed body differs from the sent one:'
          '\nsent %s\ngot  %s' % (what, short(want, 500), short(got, 800)))
    head = got[:len(got) - len(want)]
    check(head.startswith(b'Received: ') and head.endswith(nl) and
          b'by ferry.test' in head, '%s: expected ferry\'s Received: '
          'header before the body, got %s' % (what, short(head)))
    for cont in head[:-len(nl)].split(nl)[1:]:
        check(cont[:1] in (b' ', b'\t'), '%s: more than one header added: '
              '%s' % (what, short(head)))


def parse_dsn(raw, what):
    """An RFC 3464 report: (message, per-message fields, [per-recipient
    fields], the returned headers part)."""
    msg = email.message_from_bytes(crlf_to_lf(raw))
    check(msg.get_content_type() == 'multipart/report' and
          msg.get_param('report-type') == 'delivery-status',
          '%s: not a multipart/report; report-type=delivery-status: %s'
          % (what, short(raw, 600)))
    parts = msg.get_payload()
    check(isinstance(parts, list) and len(parts) == 3, '%s: %d parts, '
          'want 3' % (what, len(parts) if isinstance(parts, list) else 0))
    check(parts[0].get_content_type() == 'text/plain', '%s: part 1 is %s'
          % (what, parts[0].get_content_type()))
    check(parts[1].get_content_type() == 'message/delivery-status',
          '%s: part 2 is %s' % (what, parts[1].get_content_type()))
    check(parts[2].get_content_type() in ('text/rfc822-headers',
                                          'message/global-headers',
                                          'message/rfc822'),
          '%s: part 3 is %s' % (what, parts[2].get_content_type()))
    blocks = parts[1].get_payload()
    check(isinstance(blocks, list) and len(blocks) >= 2,
          '%s: delivery-status has no per-recipient block: %s'
          % (what, short(raw, 800)))
    check(blocks[0]['Reporting-MTA'] is not None, '%s: no Reporting-MTA'
          % what)
    return msg, blocks[0], blocks[1:], parts[2]


def dsn_field(block, name):
    v = block[name]
    return re.sub(r'\s+', ' ', str(v)).strip() if v is not None else None


def check_dsn_rcpt(block, addr, status_re, what, diag_re=None, mta=None):
    fr = dsn_field(block, 'Final-Recipient')
    check(fr is not None and re.sub(r';\s*', ';', fr).lower() ==
          'rfc822;' + addr.lower(),
          '%s: Final-Recipient %r, want rfc822;%s' % (what, fr, addr))
    check(dsn_field(block, 'Action') == 'failed', '%s: Action %r'
          % (what, dsn_field(block, 'Action')))
    st = dsn_field(block, 'Status')
    check(st is not None and re.fullmatch(status_re, st),
          '%s: Status %r, want %s' % (what, st, status_re))
    if diag_re:
        dc = dsn_field(block, 'Diagnostic-Code')
        check(dc is not None and re.search(diag_re, dc),
              '%s: Diagnostic-Code %r, want /%s/' % (what, dc, diag_re))
    if mta is not None:
        # RFC 3464 section 2.3.5: the server that refused, by name ('':
        # none, the reason is ours).
        rm = dsn_field(block, 'Remote-MTA')
        rm = rm and re.sub(r';\s*', '; ', rm)
        check(rm == ('dns; ' + mta if mta else None),
              '%s: Remote-MTA %r, want %r' % (what, rm, mta))


def dsn_text(msg):
    """The DSN's human-readable part, unfolded."""
    t = msg.get_payload()[0].get_payload(decode=True).decode('ascii')
    return re.sub(r'\s+', ' ', t)


def check_log_line(r, to, status, dsn_re, relay_re=None, text_re=None):
    check(r.to == to, 'log line for %r, want %r: %r' % (r.to, to, r))
    check(r.status == status, 'status %r, want %r: %r'
          % (r.status, status, r))
    check(re.fullmatch(dsn_re, r.dsn), 'dsn %r, want %s: %r'
          % (r.dsn, dsn_re, r))
    if relay_re:
        check(re.fullmatch(relay_re, r.relay), 'relay %r, want %s: %r'
              % (r.relay, relay_re, r))
    if text_re:
        check(re.search(text_re, r.text), 'reply %r, want /%s/: %r'
              % (r.text, text_re, r))


def send8(d, body, sender='sender@example.test', rcpts=('r@relay.test',),
          param=' BODY=8BITMIME'):
    """One transaction with a MAIL parameter; the queue ID."""
    with d.session() as c:
        c.expect('MAIL FROM:<%s>%s' % (sender, param), 250)
        for r in rcpts:
            c.expect('RCPT TO:<%s>' % r, 250)
        c.expect('DATA', 354)
        r = c.expect(stuff(body), 250)
        c.expect('QUIT', 221)
        return r.qid()


def queue_settled(d, timeout=10.0):
    """Wait until the queue is empty."""
    wait_for(lambda: d.mailq() == [], timeout, 'an empty queue; mailq %r; '
             'log:\n%s' % (d.mailq(), d.log_tail(15)))


# --- the smarthost --------------------------------------------------------

def test_deliver_smarthost_sink_exact():
    with Sink() as s, smarthost_daemon('smarthost', s.port) as d:
        qid = d.send_message(BODY, rcpts=('rcpt@relay.test',
                                          'other@elsewhere.test'))
        lines = wait_delivery(d, qid, 'sent', n=2)
        wait_removed(d, qid)
        d.assert_empty('delivered')
        msgs = s.wait_count(1)
        check(len(msgs) == 1, 'smtp-sink got %d transactions, want 1: %r'
              % (len(msgs), msgs))
        m = msgs[0]
        check(m.sender == 'sender@example.test' and
              m.rcpt_addrs == ['rcpt@relay.test', 'other@elsewhere.test'],
              'envelope at the sink: %r' % m)
        check(m.helo == 'ferry.test', 'EHLO argument %r' % m.helo)
        check_relayed(m.body, BODY, 'smtp-sink dump', lf=True)
        for r, to in zip(lines, ('rcpt@relay.test', 'other@elsewhere.test')):
            check_log_line(r, to, 'sent', r'2\.0\.0',
                           relay_re=r'127\.0\.0\.1\[127\.0\.0\.1\]:%d'
                           % s.port, text_re=r'^250 2\.0\.0 Ok')
            check(float(r.delay) < 30, 'delay %r' % r.delay)
        check(deliveries(d, qid, 'deferred') == [] and
              deliveries(d, qid, 'bounced') == [], 'more than sent: %r'
              % deliveries(d, qid))


def test_deliver_wire_bytes_dot_stuffing():
    """What goes over the wire is the stored message, dot-stuffed."""
    body = (b'Subject: dots\r\n\r\n.\r\n..\r\n...x\r\n.\r\n'
            b'a.b\r\n' + (b'x' * 990 + b'\r\n.' + b'y' * 900 + b'\r\n')
            * 4 + b'\r\n')
    with SmtpPeer() as p, smarthost_daemon('wire', p.port) as d:
        qid = d.send_message(body)
        wait_delivery(d, qid, 'sent')
        wait_removed(d, qid)
        t = p.wait_delivered(1)
        check(len(t) == 1, 'transactions %r' % t)
        check(t[0].raw == stuff(t[0].body)[:-3],
              'DATA on the wire is not the body dot-stuffed: %s'
              % short(t[0].raw, 200))
        check_relayed(t[0].body, body, 'wire')
        m = re.search(r'\bSIZE=(\d+)', t[0].mail)
        check(m and int(m.group(1)) == len(t[0].body),
              'MAIL %r: SIZE= is not the message size %d'
              % (t[0].mail, len(t[0].body)))
        check(p.errors == [], 'protocol errors: %r' % p.errors)
        p.wait_idle()


def test_deliver_large_message():
    """200 KB: many times the client's output high-water mark, so the
    body is written in many rounds."""
    line = b'0123456789abcdef' * 6 + b'\r\n'
    body = b'Subject: large\r\n\r\n' + b''.join(
        (b'.' if i % 7 == 0 else b'') + b'%06d ' % i + line
        for i in range(2000))
    check(len(body) > 200000, 'body %d' % len(body))
    with Sink() as s, smarthost_daemon('large', s.port,
                                       message_size_limit='1M') as d:
        qid = d.send_message(body)
        wait_delivery(d, qid, 'sent', timeout=15)
        wait_removed(d, qid)
        msgs = s.wait_count(1)
        check(len(msgs) == 1, 'sink got %r' % msgs)
        check_relayed(msgs[0].body, body, 'large message', lf=True)


def test_deliver_dead_smarthost_then_flush():
    port = free_port()
    check(bind_probe('127.0.0.1', port), 'port %d still in use' % port)
    with smarthost_daemon('deadhost', port) as d:
        qid = d.send_message(BODY)
        r = wait_delivery(d, qid, 'deferred')[0]
        check_log_line(r, 'rcpt@relay.test', 'deferred', r'4\.4\.1',
                       text_re=r'(?i)connection refused')
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid, 'mailq %r' % q)
        rc = q[0]['recipients'][0]
        check(rc['status'] == 'deferred' and
              re.search(r'(?i)refused', rc['reason']),
              'mailq recipient %r' % rc)
        check(q[0]['next_attempt'] > time.time() + 60,
              'next_attempt %r is not in the future' % q[0]['next_attempt'])
        time.sleep(0.3)
        check(len(deliveries(d, qid)) == 1, 'retried without a flush: %r'
              % deliveries(d, qid))
        with Sink(port=port) as s:
            flush(d)
            wait_delivery(d, qid, 'sent')
            wait_removed(d, qid)
            d.assert_empty()
            flush(d)		# nothing left to send twice
            time.sleep(0.5 * SLOW)
            msgs = s.messages()
            check(len(msgs) == 1, 'smtp-sink got %d copies, want 1: %r'
                  % (len(msgs), msgs))
            check_relayed(msgs[0].body, BODY, 'after flush', lf=True)
            check(len(deliveries(d, qid, 'sent')) == 1, 'sent twice: %r'
                  % deliveries(d, qid))


# --- MX, DNS ------------------------------------------------------------

def test_deliver_mx_failover():
    z = zone('fo.test. MX 10 mx1.fo.test.', 'fo.test. MX 20 mx2.fo.test.',
             'mx1.fo.test. A 127.0.0.2', 'mx2.fo.test. A 127.0.0.3')
    with DnsServer(z) as dns, Sink('127.0.0.3') as s:
        check(bind_probe('127.0.0.2', s.port), 'something on 127.0.0.2')
        with mx_daemon('mxfo', dns, s.port) as d:
            qid = d.send_message(BODY, rcpts=('a@fo.test',))
            r = wait_delivery(d, qid, 'sent')[0]
            check_log_line(r, 'a@fo.test', 'sent', r'2\.0\.0',
                           relay_re=r'mx2\.fo\.test\[127\.0\.0\.3\]:%d'
                           % s.port)
            wait_removed(d, qid)
            msgs = s.wait_count(1)
            check(len(msgs) == 1 and msgs[0].rcpt_addrs == ['a@fo.test'],
                  'at the MX 20 sink: %r' % msgs)
            check_relayed(msgs[0].body, BODY, 'failover', lf=True)


def test_deliver_mx_preference():
    z = zone('pr.test. MX 20 mx2.pr.test.', 'pr.test. MX 10 mx1.pr.test.',
             'mx1.pr.test. A 127.0.0.2', 'mx2.pr.test. A 127.0.0.3')
    with DnsServer(z) as dns, Sink('127.0.0.2') as s1, \
            Sink('127.0.0.3', port=s1.port) as s2, \
            mx_daemon('mxpref', dns, s1.port) as d:
        ids = [d.send_message(BODY, rcpts=('u%d@pr.test' % i,))
               for i in range(3)]
        for qid in ids:
            r = wait_delivery(d, qid, 'sent')[0]
            check(r.relay == 'mx1.pr.test[127.0.0.2]:%d' % s1.port,
                  'not the preferred MX: %r' % r)
        s1.wait_count(3)
        check(len(s1.messages()) == 3 and s2.messages() == [],
              'MX 10 got %d, MX 20 got %d' % (len(s1.messages()),
                                              len(s2.messages())))


def test_deliver_a_fallback():
    z = zone('nomx.test. A 127.0.0.4')
    with DnsServer(z) as dns, Sink('127.0.0.4') as s, \
            mx_daemon('afall', dns, s.port) as d:
        qid = d.send_message(BODY, rcpts=('x@nomx.test',))
        r = wait_delivery(d, qid, 'sent')[0]
        check_log_line(r, 'x@nomx.test', 'sent', r'2\.0\.0',
                       relay_re=r'nomx\.test\[127\.0\.0\.4\]:%d' % s.port)
        msgs = s.wait_count(1)
        check(len(msgs) == 1 and msgs[0].rcpt_addrs == ['x@nomx.test'],
              'A fallback sink: %r' % msgs)


def _dns_bounce(name, rr, rcpt, dsn, text_re, **cfg):
    """A DNS answer that bounces: the log line, then exactly one DSN to
    the sender (delivered to the sender's MX) with that status."""
    z = zone(*(rr + SENDER_ZONE))
    with DnsServer(z) as dns, Sink('127.0.0.9') as s, \
            mx_daemon(name, dns, s.port, **cfg) as d:
        qid = d.send_message(BODY, sender=SENDER, rcpts=(rcpt,))
        r = wait_delivery(d, qid, 'bounced')[0]
        check_log_line(r, rcpt, 'bounced', re.escape(dsn), text_re=text_re)
        wait_removed(d, qid)
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')
        queue_settled(d)
        msgs = s.wait_count(1)
        check(len(msgs) == 1, 'sender MX got %d messages: %r'
              % (len(msgs), msgs))
        m = msgs[0]
        check(m.sender == '' and m.rcpt_addrs == [SENDER],
              'DSN envelope %r' % m)
        _, _, rcpts, _ = parse_dsn(m.body, 'DSN')
        check(len(rcpts) == 1, 'DSN lists %d recipients' % len(rcpts))
        check_dsn_rcpt(rcpts[0], rcpt, re.escape(dsn), 'DSN for ' + rcpt)
        check(deliveries(d, qid, 'sent') == [], 'sent as well?')


def test_deliver_null_mx_bounces():
    _dns_bounce('nullmx', ('null.test. MX 0 .',), 'x@null.test', '5.1.10',
                r'(?i)null MX')


def test_deliver_nxdomain_bounces():
    _dns_bounce('nxdomain', (), 'x@nosuch.test', '5.1.2',
                r'(?i)not found')


def test_deliver_servfail_defers():
    z = zone(*SENDER_ZONE)
    with DnsServer(z) as dns, Sink('127.0.0.9') as s, \
            mx_daemon('servfail', dns, s.port) as d:
        qid = d.send_message(BODY, sender=SENDER,
                             rcpts=('x@a.servfail.test',))
        r = wait_delivery(d, qid, 'deferred')[0]
        check_log_line(r, 'x@a.servfail.test', 'deferred', r'4\.4\.3',
                       text_re=r'(?i)try again')
        q = d.mailq()
        check(len(q) == 1 and q[0]['recipients'][0]['status'] ==
              'deferred', 'mailq %r' % q)
        check(bounce_ids(d, qid) == [] and s.messages() == [],
              'a DSN for a temporary DNS failure')


# --- replies ------------------------------------------------------------

def _tempfail_then_ok(stage, cmd):
    """A 451 to stage: deferred with Postfix's words, naming the server
    and the command (cmd), in the log and in mailq (plain and JSON)."""
    done = []

    def policy(sess, verb, arg, txn):
        if verb == stage and not done:
            done.append(verb)
            return '451 4.3.0 try again later'
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('t4xx' + stage, p.port) as d:
        qid = d.send_message(BODY)
        r = wait_delivery(d, qid, 'deferred')[0]
        want = said('451 4.3.0 try again later', cmd)
        check_log_line(r, 'rcpt@relay.test', 'deferred', r'4\.3\.0',
                       text_re='^%s$' % re.escape(want))
        check(p.delivered() == [], 'delivered at the 451: %r' % p.txns())
        # The result is logged, then written: a moment apart.
        last = []

        def shows_reason():
            last[:] = q = d.mailq()
            return len(q) == 1 and q[0]['recipients'][0]['status'] == \
                'deferred' and q[0]['recipients'][0]['reason'] == want
        wait_for(shows_reason, 5, lambda: 'mailq %r, want the reason %r'
                 % (last, want))
        out = d.cli('mailq').stdout.decode()
        check(re.search(r'^\s+\(%s\)$' % re.escape(want), out, re.M),
              'mailq: %s' % out)
        flush(d)
        wait_delivery(d, qid, 'sent')
        wait_removed(d, qid)
        t = p.delivered()
        check(len(t) == 1, 'delivered %d times: %r' % (len(t), p.txns()))
        check_relayed(t[0].body, BODY, 'after the 4xx')
        check(p.errors == [], 'protocol errors %r' % p.errors)
        p.wait_idle()


def test_deliver_4xx_rcpt_then_success():
    _tempfail_then_ok('RCPT', 'RCPT TO')


def test_deliver_4xx_data_then_success():
    _tempfail_then_ok('DATA', 'DATA')


def test_deliver_4xx_dot_then_success():
    _tempfail_then_ok('.', 'end of DATA')


def test_deliver_5xx_one_of_three():
    refusal = '550 5.1.1 <b@dom.test>: Recipient address rejected: ' \
        'User unknown'

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<b@dom.test>'):
            return refusal
        return None

    rcpts = ('a@dom.test', 'b@dom.test', 'c@dom.test')
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('fivexx', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_removed(d, qid)
        got = {r.to: r for r in deliveries(d, qid)}
        check(sorted(got) == sorted(rcpts) and
              len(deliveries(d, qid)) == 3, 'log lines %r'
              % deliveries(d, qid))
        check_log_line(got['a@dom.test'], 'a@dom.test', 'sent', r'2\.0\.0')
        check_log_line(got['c@dom.test'], 'c@dom.test', 'sent', r'2\.0\.0')
        check_log_line(got['b@dom.test'], 'b@dom.test', 'bounced',
                       r'5\.1\.1', text_re='^%s$'
                       % re.escape(said(refusal, 'RCPT TO')))
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')
        queue_settled(d)
        txns = p.delivered()
        check(len(txns) == 2, 'peer transactions %r' % txns)
        orig = [t for t in txns if t.sender == 'sender@example.test']
        check(len(orig) == 1 and orig[0].rcpts == [
            ('a@dom.test', 250), ('b@dom.test', 550), ('c@dom.test', 250)],
            'the original went in one transaction: %r' % orig)
        check_relayed(orig[0].body, BODY, 'two of three')
        dsn = [t for t in txns if t.sender == '']
        check(len(dsn) == 1 and dsn[0].accepted ==
              ['sender@example.test'], 'the DSN transaction %r' % dsn)
        msg, _, blocks, orig_part = parse_dsn(dsn[0].body, 'DSN')
        check(len(blocks) == 1, 'DSN lists %d recipients, want only b: %s'
              % (len(blocks), short(dsn[0].body, 1500)))
        check_dsn_rcpt(blocks[0], 'b@dom.test', r'5\.1\.1', 'DSN',
                       diag_re='^smtp; ?%s$' % re.escape(refusal),
                       mta='127.0.0.1')
        check('<b@dom.test>: %s' % said(refusal, 'RCPT TO') in
              dsn_text(msg), 'DSN text: %s' % dsn_text(msg))
        check(msg['To'] is not None and 'sender@example.test' in msg['To'],
              'DSN To: %r' % msg['To'])
        text = orig_part.as_bytes()
        check(b'Subject: delivery test' in text and
              b'Message-ID: <t1@example.test>' in text,
              'the original headers are not returned: %s' % short(text))
        check(b'a line that starts with a dot' not in dsn[0].body,
              'the DSN returns the body, not just headers')
        p.wait_idle()


def test_deliver_5xx_at_mail_bounces_all():
    def policy(sess, verb, arg, txn):
        if verb == 'MAIL' and arg.startswith('<sender@'):
            return '553 5.7.1 <sender@example.test>: Sender rejected'
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('mail5xx', p.port) as d:
        qid = d.send_message(BODY, rcpts=('a@dom.test', 'b@dom.test'))
        wait_removed(d, qid)
        lines = deliveries(d, qid)
        want = said('553 5.7.1 <sender@example.test>: Sender rejected',
                    'MAIL FROM')
        check(len(lines) == 2 and all(r.status == 'bounced' and
                                      r.dsn == '5.7.1' and r.text == want
                                      for r in lines),
              'log lines %r, want the reason %r' % (lines, want))
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')
        dsn = [t for t in p.delivered() if t.sender == '']
        check(len(dsn) == 1, 'DSN transactions %r' % p.txns())
        _, _, blocks, _ = parse_dsn(dsn[0].body, 'DSN')
        check(len(blocks) == 2, 'DSN lists %d recipients' % len(blocks))
        for blk, a in zip(blocks, ('a@dom.test', 'b@dom.test')):
            check_dsn_rcpt(blk, a, r'5\.7\.1', 'DSN', mta='127.0.0.1',
                           diag_re=r'^smtp; 553 5\.7\.1 <sender@example\.'
                           r'test>: Sender rejected$')
        p.wait_idle()


def test_deliver_421_mid_session():
    """421 to the second transaction's RCPT: the first is delivered, the
    second deferred (not bounced; dsn= the 421's code), the third goes
    on a new connection; after a flush the second is delivered; nothing
    twice."""
    n = [0]

    def policy(sess, verb, arg, txn):
        if verb == 'MAIL':
            n[0] += 1
        if verb == 'RCPT' and n[0] == 2:
            return '421 4.3.2 Service shutting down'
        return None

    with SmtpPeer() as p, smarthost_daemon(
            'p421', p.port, max_deliveries_per_destination='1') as d:
        p.stop()			# down while the messages arrive
        ids = [d.send_message(BODY + b'msg %d\r\n' % i) for i in range(3)]
        for qid in ids:
            wait_delivery(d, qid, 'deferred')
        p.policy = policy
        p.start()
        flush(d)
        wait_for(lambda: len(p.delivered()) >= 2, 10, 'two deliveries: %r'
                 % p.txns())
        time.sleep(0.3 * SLOW)
        sent = [q for q in ids if deliveries(d, q, 'sent')]
        check(len(sent) == 2, 'sent after the 421: %r; log:\n%s'
              % (sent, d.log_tail(12)))
        lost = [q for q in ids if q not in sent][0]
        r = deliveries(d, lost)[-1]
        # dsn= is the server's own code, as Postfix logs it (it was
        # 4.4.2, ferry's code for a lost connection).
        check(r.status == 'deferred' and r.dsn == '4.3.2' and
              r.text == said('421 4.3.2 Service shutting down', 'RCPT TO'),
              'after the 421: %r' % r)
        check(p.connections == 2, '%d connections, want 2 (the 421 ends '
              'one)' % p.connections)
        flush(d)
        wait_delivery(d, lost, 'sent')
        queue_settled(d)
        bodies = sorted(t.body[-7:] for t in p.delivered())
        check(bodies == [b'msg 0\r\n', b'msg 1\r\n', b'msg 2\r\n'],
              'delivered %r' % bodies)
        p.wait_idle()


def test_deliver_size_refused_before_sending():
    big = b'Subject: big\r\n\r\n' + (b'z' * 78 + b'\r\n') * 40
    # 2500: the message (3.3 KB) is over, its DSN (headers only) under
    with SmtpPeer(ext=('PIPELINING', 'SIZE 2500', 'ENHANCEDSTATUSCODES')) \
            as p, smarthost_daemon('size', p.port) as d:
        qid = d.send_message(big, rcpts=('a@dom.test',))
        r = wait_delivery(d, qid, 'bounced')[0]
        check_log_line(r, 'a@dom.test', 'bounced', r'5\.3\.4',
                       text_re=r'(?i)size')
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')
        check(all(t.sender == '' for t in p.txns()),
              'the big message was offered anyway: %r' % p.txns())
        _, _, blocks, _ = parse_dsn(p.delivered()[0].body, 'DSN')
        check_dsn_rcpt(blocks[0], 'a@dom.test', r'5\.3\.4', 'SIZE DSN',
                       diag_re=r'^X-Ferry; 5\.3\.4 message size', mta='')
        p.wait_idle()


def test_deliver_size_refused_many_on_one_connection():
    """Sixty messages too big for the server queued behind one that fits,
    then two more that fit, all flushed over one connection: each big one
    is refused without a word to the server and the next taken, one
    after another (a loop, where a chain of calls once grew the stack by
    a frame per refused message), and the small ones arrive."""
    big = b'Subject: big\r\n\r\n' + (b'z' * 78 + b'\r\n') * 40
    with SmtpPeer(ext=('PIPELINING', 'SIZE 2500', 'ENHANCEDSTATUSCODES')) \
            as p, smarthost_daemon('sizemany', p.port,
                                   max_deliveries_per_destination='1') as d:
        p.stop()
        small = [d.send_message(BODY + b'first\r\n')]
        bigs = [d.send_message(big + b'n %d\r\n' % i) for i in range(60)]
        small += [d.send_message(BODY + b'last %d\r\n' % i)
                  for i in range(2)]
        for qid in small + bigs:
            wait_delivery(d, qid, 'deferred')
        p.start()
        flush(d)
        for qid in small:
            wait_delivery(d, qid, 'sent', timeout=20)
        for qid in bigs:
            r = wait_delivery(d, qid, 'bounced', timeout=20)[0]
            check_log_line(r, r.to, 'bounced', r'5\.3\.4',
                           text_re=r'(?i)size')
            wait_delivery(d, one_bounce(d, qid)[0], 'sent', timeout=20)
        queue_settled(d, timeout=20)
        check(d.running(), 'ferry died')
        own = [t for t in p.sessions[0].txns if t.sender != '']
        check(len(own) == 3, 'the first connection carried %d of the 3 '
              'small messages: the big ones between them ended it?'
              % len(own))
        check(all(len(t.body) < 2500 for t in p.delivered()),
              'a big message was offered: %r'
              % [len(t.body) for t in p.delivered()])
        bodies = sorted(t.body.split(b'\r\n')[-2] for t in p.delivered()
                        if t.sender != '')
        check(bodies == [b'first', b'last 0', b'last 1'],
              'delivered %r' % bodies)
        check(len([t for t in p.delivered() if t.sender == '']) == 60,
              'DSNs delivered: %d, want 60'
              % len([t for t in p.delivered() if t.sender == '']))
        p.wait_idle()


# --- expiry and bounces of bounces -------------------------------------------

def test_deliver_queue_lifetime_expiry():
    z = zone('dead.test. MX 10 mx.dead.test.', 'mx.dead.test. A 127.0.0.2',
             *SENDER_ZONE)
    with DnsServer(z) as dns, Sink('127.0.0.9') as s:
        check(bind_probe('127.0.0.2', s.port), 'something on 127.0.0.2')
        with mx_daemon('expire', dns, s.port, queue_lifetime='3s',
                       retry_min='1s', retry_max='1s') as d:
            t0 = time.monotonic()
            qid = d.send_message(BODY, sender=SENDER, rcpts=('x@dead.test',))
            r = wait_delivery(d, qid, 'expired', timeout=12)[0]
            took = time.monotonic() - t0
            check(r.to == 'x@dead.test' and re.search(r'(?i)expired',
                                                     r.text),
                  'expiry line %r' % r)
            check(2.0 <= took <= 8 * SLOW, 'expired after %.1fs, lifetime '
                  '3s' % took)
            # Postfix's line a message, as logwatch's postfix script
            # reads it
            d.wait_log(r'ferry/qmgr\[\d+\]: %s: from=<%s>, status=expired, '
                       r'returned to sender$' % (qid, re.escape(SENDER)))
            defer = deliveries(d, qid, 'deferred')
            check(len(defer) >= 2, 'retries before expiry: %r' % defer)
            check(deliveries(d, qid, 'sent') == [], 'sent?')
            b = one_bounce(d, qid)
            wait_delivery(d, b[0], 'sent')
            wait_removed(d, qid)
            queue_settled(d)
            msgs = s.wait_count(1)
            check(len(msgs) == 1 and msgs[0].sender == '' and
                  msgs[0].rcpt_addrs == [SENDER], 'DSN at the sender MX %r'
                  % msgs)
            _, _, blocks, _ = parse_dsn(msgs[0].body, 'expiry DSN')
            check_dsn_rcpt(blocks[0], 'x@dead.test', r'[45]\.4\.\d+',
                           'expiry DSN', diag_re=r'(?i)expired')


def test_deliver_no_bounce_of_a_bounce():
    z = zone('null.test. MX 0 .', *SENDER_ZONE)
    with DnsServer(z) as dns, Sink('127.0.0.9') as s, \
            mx_daemon('bob', dns, s.port) as d:
        # the null sender: bounced, no DSN
        q1 = d.send_message(BODY, sender='', rcpts=('x@null.test',))
        wait_delivery(d, q1, 'bounced')
        wait_removed(d, q1)
        check(re.search(r'\b%s: undeliverable bounce discarded' % q1,
                        d.log_text()), 'no "discarded" line for %s' % q1)
        check(bounce_ids(d, q1) == [], 'a DSN for the null sender')
        # a sender whose domain does not exist: the DSN is made, bounces
        # itself, and is dropped -- no third message
        q2 = d.send_message(BODY, sender='s@nosuch.test',
                            rcpts=('x@null.test',))
        wait_removed(d, q2)
        b = one_bounce(d, q2)
        r = wait_delivery(d, b[0], 'bounced')[0]
        check(r.to == 's@nosuch.test', 'the DSN went to %r' % r.to)
        wait_removed(d, b[0])
        check(re.search(r'\b%s: undeliverable bounce discarded' % b[0],
                        d.log_text()), 'no "discarded" line for the DSN')
        check(bounce_ids(d, b[0]) == [], 'a bounce of a bounce')
        queue_settled(d)
        time.sleep(0.3 * SLOW)
        check(s.messages() == [], 'mail at the sender MX: %r'
              % s.messages())
        check(len(re.findall(r'sender non-delivery notification',
                             d.log_text())) == 1, 'DSN count in the log')


# --- extensions ---------------------------------------------------------------

def test_deliver_pipelining_on_and_off():
    rcpts = ('a@dom.test', 'b@dom.test')
    with SmtpPeer() as p, smarthost_daemon('pipe', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_delivery(d, qid, 'sent', n=2)
        s = p.sessions[0]
        check(['MAIL', 'RCPT', 'RCPT', 'DATA'] in s.batches,
              'PIPELINING offered, yet MAIL/RCPT/RCPT/DATA were not sent '
              'in one go: %r' % s.batches)
        p.wait_idle()
    with SmtpPeer(ext=('8BITMIME', 'SIZE 10000000',
                       'ENHANCEDSTATUSCODES')) as p, \
            smarthost_daemon('nopipe', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_delivery(d, qid, 'sent', n=2)
        wait_removed(d, qid)
        s = p.sessions[0]
        check(all(len(b) == 1 for b in s.batches),
              'commands sent ahead of replies without PIPELINING: %r'
              % s.batches)
        check([c.split()[0].upper() for c in s.commands][:5] ==
              ['EHLO', 'MAIL', 'RCPT', 'RCPT', 'DATA'],
              'commands %r' % s.commands)
        check_relayed(p.delivered()[0].body, BODY, 'no pipelining')
        p.wait_idle()
    # and the real thing: smtp-sink with and without PIPELINING
    for opts in ((), ('-p',)):
        with Sink(opts=opts) as s, smarthost_daemon('sinkpipe',
                                                    s.port) as d:
            qid = d.send_message(BODY, rcpts=rcpts)
            wait_delivery(d, qid, 'sent', n=2)
            msgs = s.wait_count(1)
            check(len(msgs) == 1 and msgs[0].rcpt_addrs == list(rcpts),
                  'smtp-sink %r: %r' % (opts, msgs))
            check_relayed(msgs[0].body, BODY, 'sink %r' % (opts,), lf=True)


# 8-bit in the body only: the DSN, which returns the headers, stays 7-bit
BODY8 = (b'Subject: eight\r\n\r\n8-bit: gr\xc3\xbc\xc3\x9fe \xff\r\n'
         b'end\r\n')
BODY8H = b'Subject: caf\xc3\xa9\r\n\r\n' + BODY8.split(b'\r\n\r\n', 1)[1]
BODY7 = b'Subject: plain\r\n\r\nonly ascii here\r\n'


def test_deliver_8bit_to_server_without_8bitmime():
    with Sink(opts=('-8',)) as s, smarthost_daemon('no8bit', s.port) as d:
        q8 = send8(d, BODY8)
        r = wait_delivery(d, q8, 'bounced')[0]
        check_log_line(r, 'r@relay.test', 'bounced', r'5\.6\.3',
                       text_re=r'8BITMIME')
        wait_removed(d, q8)
        q7 = send8(d, BODY7)
        wait_delivery(d, q7, 'sent')
        b = one_bounce(d, q8)
        queue_settled(d)
        msgs = s.messages()
        check(not any(b'8-bit: gr' in m.body for m in msgs),
              'the 8-bit body was sent anyway: %r' % msgs)
        plain = [m for m in msgs if m.sender == 'sender@example.test']
        check(len(plain) == 1 and 'BODY=8BITMIME' not in plain[0].mail,
              'the 7-bit message: %r' % plain)
        check_relayed(plain[0].body, BODY7, '7-bit declared 8BITMIME',
                      lf=True)
        dsn = [m for m in msgs if m.sender == '']
        check(len(dsn) == 1, 'DSN at the sink: %r' % msgs)
        _, _, blocks, _ = parse_dsn(dsn[0].body, '8-bit DSN')
        check_dsn_rcpt(blocks[0], 'r@relay.test', r'5\.6\.3', '8-bit DSN')
    # the same message to a server that offers 8BITMIME: sent, intact
    with Sink() as s, smarthost_daemon('yes8bit', s.port) as d:
        q8 = send8(d, BODY8H)
        wait_delivery(d, q8, 'sent')
        msgs = s.wait_count(1)
        check('BODY=8BITMIME' in msgs[0].mail, 'MAIL %r' % msgs[0].mail)
        check_relayed(msgs[0].body, BODY8H, '8-bit', lf=True)


def test_deliver_dsn_of_8bit_headers_to_server_without_8bitmime():
    """A message with 8-bit header bytes (no SMTPUTF8) bounces 5.6.3 at a
    server without 8BITMIME; its DSN quoted those headers raw, so it was
    refused 5.6.3 in turn and dropped as a bounce of a bounce: the
    sender never heard.  Quoted as '?', the DSN is 7-bit and arrives."""
    with Sink(opts=('-8',)) as s, smarthost_daemon('no8bith', s.port) as d:
        q8 = send8(d, BODY8H)
        wait_delivery(d, q8, 'bounced')
        b = one_bounce(d, q8)
        wait_delivery(d, b[0], 'sent')
        dsn = [m for m in s.wait_count(1) if m.sender == '']
        check(len(dsn) == 1 and b'Subject: caf??' in dsn[0].body and
              not any(c >= 0x80 for c in dsn[0].body),
              'DSN at the sink: %r' % [m.body[-300:] for m in dsn])


def test_deliver_ehlo_greeting_is_not_a_keyword():
    """The first line of the EHLO reply names the server; a name that
    begins with a keyword offers nothing.  A server called
    8bitmime.peer.test without 8BITMIME was sent BODY=8BITMIME, refused
    it 555, and the message bounced (its DSN, 8BITMIME too, was then
    dropped).  A keyword with more after it (SMTPUTF8X) is not one
    either."""
    for name, param in (('8bitmime.peer.test', ' BODY=8BITMIME'),
                        ('SMTPUTF8 peer.test', ' SMTPUTF8'),
                        ('peer.test', ' BODY=8BITMIME')):
        with SmtpPeer(name=name, ext=('PIPELINING', 'SIZE 10000000',
                                      '8BITMIMEX', 'SMTPUTF8X')) as p, \
                smarthost_daemon('ehloname', p.port) as d:
            q = send8(d, BODY7, param=param)
            wait_delivery(d, q, 'sent')
            t = p.delivered()
            check(len(t) == 1 and 'BODY=' not in t[0].mail and
                  'SMTPUTF8' not in t[0].mail,
                  '%s: MAIL %r' % (name, [x.mail for x in p.txns()]))


# --- restart, batching, connections ---------------------------------------------

def test_deliver_restart_with_deferred_mail():
    port = free_port()
    d = smarthost_daemon('restart', port, retry_min='2s', retry_max='2s')
    ok = False
    try:
        d.start()
        qid = d.send_message(BODY)
        wait_delivery(d, qid, 'deferred')
        d.stop()
        check([m['id'] for m in d.mailq()] == [qid], 'queue after stop %r'
              % d.mailq())
        with Sink(port=port) as s:
            d.start()
            check(re.search(r'\b1 message\(s\) in the queue', d.log_text()),
                  'restart did not index the deferred message:\n%s'
                  % d.log_tail(8))
            wait_delivery(d, qid, 'sent', timeout=10)
            wait_removed(d, qid)
            time.sleep(0.3 * SLOW)
            msgs = s.messages()
            check(len(msgs) == 1, 'delivered %d times: %r'
                  % (len(msgs), msgs))
            check_relayed(msgs[0].body, BODY, 'after restart', lf=True)
            d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_deliver_one_transaction_per_destination():
    rcpts = ['r%d@d%d.test' % (i, i) for i in range(5)]
    with Sink() as s, smarthost_daemon('onetxn', s.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_delivery(d, qid, 'sent', n=5)
        msgs = s.wait_count(1)
        check(len(msgs) == 1 and msgs[0].rcpt_addrs == rcpts,
              'smarthost: %d transactions %r, want one with 5 RCPTs'
              % (len(msgs), msgs))
    # MX: one transaction per recipient domain
    z = zone('one.test. MX 10 mx.one.test.', 'two.test. MX 10 mx.two.test.',
             'mx.one.test. A 127.0.0.3', 'mx.two.test. A 127.0.0.3')
    with DnsServer(z) as dns, Sink('127.0.0.3') as s, \
            mx_daemon('perdom', dns, s.port) as d:
        qid = d.send_message(BODY, rcpts=('a@one.test', 'c@two.test',
                                          'b@One.test'))
        wait_delivery(d, qid, 'sent', n=3)
        msgs = s.wait_count(2)
        got = sorted(sorted(m.rcpt_addrs) for m in msgs)
        check(got == [['a@one.test', 'b@One.test'], ['c@two.test']],
              'per-domain transactions: %r' % msgs)


def test_deliver_connection_reuse_and_limit():
    """Six deferred messages, flushed: with one connection allowed per
    destination all go over one connection, six transactions."""
    with SmtpPeer() as p, smarthost_daemon(
            'reuse', p.port, max_deliveries_per_destination='1') as d:
        p.stop()
        ids = [d.send_message(BODY + b'n %d\r\n' % i) for i in range(6)]
        for qid in ids:
            wait_delivery(d, qid, 'deferred')
        p.start()
        flush(d)
        for qid in ids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        check(p.connections == 1, '%d connections for 6 messages, want 1'
              % p.connections)
        check(len(p.sessions[0].txns) == 6, 'transactions %r'
              % p.sessions[0].txns)
        check(p.sessions[0].commands[-1].upper() == 'QUIT',
              'no QUIT at the end: %r' % p.sessions[0].commands[-3:])
        # RSET between the transactions on the reused connection: every
        # MAIL after the first follows a RSET.
        verbs = [c.split()[0].upper() for c in p.sessions[0].commands
                 if c.strip()]
        mails = [i for i, v in enumerate(verbs) if v == 'MAIL']
        check(len(mails) == 6 and all(verbs[i - 1] == 'RSET'
                                      for i in mails[1:]),
              'no RSET between transactions: %r' % verbs)
        check(p.errors == [], 'protocol errors %r' % p.errors)
        p.wait_idle()


def test_deliver_per_destination_limit():
    """A slow peer: never more than max_deliveries_per_destination
    connections at once, and every message arrives once."""
    def policy(sess, verb, arg, txn):
        if verb == '.':
            time.sleep(0.2)
        return None

    with SmtpPeer(policy=policy) as p, smarthost_daemon(
            'limit', p.port, max_deliveries_per_destination='2') as d:
        p.stop()
        ids = [d.send_message(BODY + b'n %d\r\n' % i) for i in range(8)]
        for qid in ids:
            wait_delivery(d, qid, 'deferred')
        p.start()
        flush(d)
        for qid in ids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        check(p.max_active <= 2, '%d connections at once, limit 2'
              % p.max_active)
        check(p.connections == 2, '%d connections, want 2 reused'
              % p.connections)
        bodies = sorted(t.body[-5:] for t in p.delivered())
        check(bodies == sorted(b'n %d\r\n' % i for i in range(8)),
              'delivered %r' % bodies)
        p.wait_idle()


# --- more paths -------------------------------------------------------------

def test_deliver_partial_4xx_retries_only_the_deferred():
    """451 for one of three recipients: the other two are delivered and
    stay done; after a flush only the deferred one is sent."""
    said = []

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<b@dom.test>') and not said:
            said.append(1)
            return '451 4.2.0 <b@dom.test>: mailbox busy'
        return None

    rcpts = ('a@dom.test', 'b@dom.test', 'c@dom.test')
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('partial', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_delivery(d, qid, 'deferred')
        wait_delivery(d, qid, 'sent', n=2)
        want = {'a@dom.test': 'sent', 'b@dom.test': 'deferred',
                'c@dom.test': 'sent'}

        def states():
            q = d.mailq()
            return {r['address']: r['status']
                    for r in q[0]['recipients']} if q else {}
        # The log line comes a moment before the state file is written.
        wait_for(lambda: states() == want, 5,
                 'mailq states %r' % d.mailq())
        flush(d)
        wait_delivery(d, qid, 'sent', n=3)
        wait_removed(d, qid)
        txns = p.delivered()
        check([t.accepted for t in txns] == [['a@dom.test', 'c@dom.test'],
                                             ['b@dom.test']],
              'transactions %r' % txns)
        check(bounce_ids(d, qid) == [], 'a DSN for a 4xx')
        p.wait_idle()


def test_deliver_ipv6_then_ipv4_failover():
    """The MX host has AAAA ::1 (nothing listens there) and A 127.0.0.3:
    both families are tried, the message goes over IPv4."""
    z = zone('v6.test. MX 10 mx.v6.test.', 'mx.v6.test. AAAA ::1',
             'mx.v6.test. A 127.0.0.3')
    with DnsServer(z) as dns, Sink('127.0.0.3') as s, \
            mx_daemon('v6', dns, s.port) as d:
        qid = d.send_message(BODY, rcpts=('x@v6.test',))
        r = wait_delivery(d, qid, 'sent')[0]
        check(r.relay == 'mx.v6.test[127.0.0.3]:%d' % s.port,
              'relay %r' % r.relay)
        check(len(s.wait_count(1)) == 1, 'sink %r' % s.messages())


def test_deliver_cname_mx_target():
    z = zone('cn.test. MX 10 alias.cn.test.',
             'alias.cn.test. CNAME real.cn.test.',
             'real.cn.test. A 127.0.0.5')
    with DnsServer(z) as dns, Sink('127.0.0.5') as s, \
            mx_daemon('cname', dns, s.port) as d:
        qid = d.send_message(BODY, rcpts=('x@cn.test',))
        r = wait_delivery(d, qid, 'sent')[0]
        check('[127.0.0.5]:%d' % s.port in r.relay, 'relay %r' % r.relay)
        check(len(s.wait_count(1)) == 1, 'sink %r' % s.messages())


def test_deliver_smarthost_by_name():
    """smarthost = host:port without brackets: looked up (MX, else A)."""
    z = zone('hub.test. A 127.0.0.6')
    with DnsServer(z) as dns, Sink('127.0.0.6') as s, \
            Daemon('byname', smarthost='hub.test:%d' % s.port,
                   dns_servers=dns.server, **NO_RETRY) as d:
        qid = d.send_message(BODY, rcpts=('x@anywhere.test',))
        r = wait_delivery(d, qid, 'sent')[0]
        check(r.relay == 'hub.test[127.0.0.6]:%d' % s.port, 'relay %r'
              % r.relay)
        check(len(s.wait_count(1)) == 1, 'sink %r' % s.messages())


def test_deliver_lost_after_dot_retried():
    """The peer takes the whole message and drops the connection before
    its 250: deferred (maybe sent twice, never lost); a flush sends it."""
    drop = []

    def policy(sess, verb, arg, txn):
        if verb == '.' and not drop:
            drop.append(1)
            return SmtpPeer.DROP
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('dropdot', p.port) as d:
        qid = d.send_message(BODY)
        r = wait_delivery(d, qid, 'deferred')[0]
        check(r.dsn.startswith('4.') and re.search(r'(?i)lost connection',
                                                   r.text),
              'after a drop at the dot: %r' % r)
        flush(d)
        wait_delivery(d, qid, 'sent')
        wait_removed(d, qid)
        check(len(p.delivered()) == 1, 'transactions %r' % p.txns())
        p.wait_idle()


def test_deliver_malformed_replies():
    """A peer whose reply to RCPT is not "DDD text" (short, bad digits,
    first digit outside 2-5, a bad separator) or is one line longer than
    the input buffer: the message is deferred, named as such, nothing is
    sent, and it goes out intact once the peer behaves."""
    cases = [
        ('25', 'malformed reply'),
        ('25 short code', 'malformed reply'),
        ('2x0 letters', 'malformed reply'),
        ('150 first digit 1', 'malformed reply'),
        ('650 first digit 6', 'malformed reply'),
        ('2500 four digits', 'malformed reply'),
        ('250_bad separator', 'malformed reply'),
        ('250 ' + 'x' * 9000, 'reply too long'),
    ]
    bad = [None]

    def policy(sess, verb, arg, txn):
        return bad[0] if verb == 'RCPT' else None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('badreply', p.port) as d:
        qids = []
        for reply, why in cases:
            bad[0] = reply
            qid = d.send_message(BODY)
            qids.append(qid)
            r = wait_delivery(d, qid, 'deferred')[0]
            check(r.dsn == '4.4.2' and why in r.text and
                  'while sending RCPT TO' in r.text,
                  'reply %r: %r' % (short(reply, 40), r))
            check(p.delivered() == [], 'delivered after %r: %r'
                  % (short(reply, 40), p.txns()))
        check(sorted(d.mailq_ids()) == sorted(qids),
              'queue %r, want %r' % (d.mailq_ids(), qids))
        bad[0] = None
        flush(d)
        for qid in qids:
            wait_delivery(d, qid, 'sent')
            wait_removed(d, qid)
        t = p.delivered()
        check(len(t) == len(cases), 'delivered %d of %d: %r'
              % (len(t), len(cases), p.txns()))
        for x in t:
            check_relayed(x.body, BODY, 'after the bad replies')
        # Out of step with a bad peer ferry may just hang up; the good
        # session at the end must end with QUIT.
        wait_for(lambda: p.active == 0, 10, 'the sessions to end')
        with p.lock:
            quits = [s.closed_by != 'client' for s in p.sessions]
        check(quits[-1] and p.errors == [], 'last session %r, errors %r'
              % (p.sessions[-1].commands[-3:], p.errors))


def test_deliver_3xx_reply_dsn():
    """A 3xx where only 2xx, 4xx or 5xx make sense (to MAIL, to RCPT,
    to the end of data): the recipient is deferred, and its log line's
    dsn= is an RFC 3463 code of the deferral's class (4.X.X), never the
    reply's "3.0.0", which no status code is.  Then the message goes
    out intact."""
    cases = [('MAIL', 'MAIL FROM'), ('RCPT', 'RCPT TO'),
             ('.', 'end of DATA')]
    bad = [None]

    def policy(sess, verb, arg, txn):
        return '354 go on then' if verb == bad[0] else None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('reply3xx', p.port) as d:
        qids = []
        for verb, cmd in cases:
            bad[0] = verb
            qid = d.send_message(BODY)
            qids.append(qid)
            r = wait_delivery(d, qid, 'deferred')[0]
            check(re.fullmatch(r'4\.\d{1,3}\.\d{1,3}', r.dsn) and
                  r.text == said('354 go on then', cmd),
                  '354 to %s: %r' % (verb, r))
        bad[0] = None
        flush(d)
        for qid in qids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        t = p.delivered()
        # The one whose end of data got the 354 may arrive twice.
        check(len(t) >= len(cases), 'delivered %r' % p.txns())
        for x in t:
            check_relayed(x.body, BODY, 'after the 3xx replies')


def test_deliver_deleted_while_deferred():
    port = free_port()
    with smarthost_daemon('deleted', port) as d:
        qid = d.send_message(BODY)
        wait_delivery(d, qid, 'deferred')
        p = d.cli('delete', qid)
        check(p.returncode == 0, 'delete: %r' % p.stderr)
        with Sink(port=port) as s:
            flush(d)
            time.sleep(0.5 * SLOW)
            check(s.messages() == [], 'a deleted message was delivered')
            d.assert_empty()
            check(d.running(), 'daemon died')


def test_deliver_sigterm_mid_delivery():
    """SIGTERM while the peer sits on the end of data: exit 0 soon, and
    the message is either delivered or still queued, never lost."""
    def policy(sess, verb, arg, txn):
        if verb == '.':
            time.sleep(3)
        return None

    with SmtpPeer(policy=policy) as p:
        d = smarthost_daemon('termdeliver', p.port)
        ok = False
        try:
            d.start()
            qid = d.send_message(BODY)
            wait_for(lambda: any(t.raw is not None for t in p.txns()), 5,
                     'the body at the peer')
            t0 = time.monotonic()
            d.stop(timeout=15)
            took = time.monotonic() - t0
            check(took < 10 * SLOW, 'SIGTERM took %.1fs' % took)
            sent = deliveries(d, qid, 'sent')
            if not sent:
                check([m['id'] for m in d.mailq()] == [qid],
                      'neither delivered nor queued: %r' % d.mailq())
            ok = True
            return 'sent before exit' if sent else 'still queued'
        finally:
            d.cleanup(ok)


def test_deliver_smtputf8():
    """A UTF-8 address needs SMTPUTF8 at the next hop: refused (5.6.7)
    rather than mangled when it is not offered; sent with the parameter
    when it is; an SMTPUTF8 message with ASCII addresses goes anyway."""
    utf = 'j\u00fcrgen@dom.test'
    with SmtpPeer(ext=('PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES')) \
            as p, smarthost_daemon('noutf8', p.port) as d:
        q1 = send8(d, BODY7, rcpts=(utf,), param=' SMTPUTF8')
        r = wait_delivery(d, q1, 'bounced')[0]
        check(r.dsn == '5.6.7', 'UTF-8 recipient without SMTPUTF8: %r' % r)
        q2 = send8(d, BODY7, rcpts=('ascii@dom.test',), param=' SMTPUTF8')
        wait_delivery(d, q2, 'sent')
        queue_settled(d)
        orig = [t for t in p.txns() if t.sender == 'sender@example.test']
        check(len(orig) == 1 and orig[0].accepted == ['ascii@dom.test'] and
              'SMTPUTF8' not in orig[0].mail, 'transactions %r' % orig)
        check(p.errors == [], 'protocol errors %r' % p.errors)
        p.wait_idle()
    with SmtpPeer(ext=('PIPELINING', '8BITMIME', 'SMTPUTF8')) as p, \
            smarthost_daemon('utf8', p.port) as d:
        q1 = send8(d, BODY7, rcpts=(utf,), param=' SMTPUTF8')
        wait_delivery(d, q1, 'sent')
        t = p.delivered()
        check(len(t) == 1 and t[0].accepted == [utf] and
              'SMTPUTF8' in t[0].mail.upper(), 'transactions %r' % t)
        p.wait_idle()


def test_deliver_helo_fallback_and_banner_refusal():
    """EHLO refused: HELO, and no extension is used.  A 554 banner at the
    preferred MX: the next MX takes the message."""
    def no_ehlo(sess, verb, arg, txn):
        return '502 5.5.2 EHLO not implemented' if verb == 'EHLO' else None

    with SmtpPeer(policy=no_ehlo) as p, smarthost_daemon('helo', p.port) \
            as d:
        qid = d.send_message(BODY, rcpts=('a@dom.test', 'b@dom.test'))
        wait_delivery(d, qid, 'sent', n=2)
        s = p.sessions[0]
        verbs = [c.split()[0].upper() for c in s.commands]
        check(verbs[:2] == ['EHLO', 'HELO'], 'commands %r' % s.commands)
        t = p.delivered()[0]
        check('SIZE=' not in t.mail and 'BODY=' not in t.mail,
              'extension parameters after HELO: %r' % t.mail)
        check(all(len(b) == 1 for b in s.batches),
              'pipelined after HELO: %r' % s.batches)
        p.wait_idle()

    def refuse(sess, verb, arg, txn):
        return '554 5.3.2 not accepting mail' if verb == 'CONNECT' else None

    z = zone('bn.test. MX 10 mx1.bn.test.', 'bn.test. MX 20 mx2.bn.test.',
             'mx1.bn.test. A 127.0.0.2', 'mx2.bn.test. A 127.0.0.3')
    with DnsServer(z) as dns, SmtpPeer('127.0.0.2', policy=refuse) as p, \
            Sink('127.0.0.3', port=p.port) as s, \
            mx_daemon('banner', dns, p.port) as d:
        qid = d.send_message(BODY, rcpts=('x@bn.test',))
        r = wait_delivery(d, qid, 'sent')[0]
        check(r.relay == 'mx2.bn.test[127.0.0.3]:%d' % p.port,
              'relay %r' % r.relay)
        check(p.connections == 1 and len(s.wait_count(1)) == 1,
              'MX 10 connections %d, MX 20 messages %r'
              % (p.connections, s.messages()))
        p.wait_idle()


def test_deliver_backlog_beyond_active_limit():
    """More deferred messages than the scheduler holds in memory at once
    (SCHED_ACTIVE_MAX, 256): after the flush every one is delivered, each
    exactly once."""
    n = 300
    port = free_port()
    with smarthost_daemon('backlog', port) as d:
        ids = []
        with d.session() as c:
            for i in range(n):
                c.expect('MAIL FROM:<bulk@example.test>', 250)
                c.expect('RCPT TO:<r%d@relay.test>' % i, 250)
                c.expect('DATA', 354)
                r = c.expect(stuff(b'Subject: bulk\r\n\r\nseq %d\r\n' % i),
                             250)
                ids.append(r.qid())
            c.expect('QUIT', 221)
        wait_for(lambda: len(deliveries(d, status='deferred')) >= n, 20,
                 'all %d deferred' % n)
        with Sink(port=port) as s:
            flush(d)
            wait_for(lambda: len(deliveries(d, status='sent')) >= n, 30,
                     '%d sent (have %d); log:\n%s' % (
                         n, len(deliveries(d, status='sent')),
                         d.log_tail(5)))
            queue_settled(d)
            msgs = s.messages()
            seqs = sorted(int(re.search(rb'seq (\d+)', m.body).group(1))
                          for m in msgs)
            check(seqs == list(range(n)), '%d at the sink, %d distinct, '
                  'want %d once each' % (len(seqs), len(set(seqs)), n))


def _queue_bulk(d, n):
    """n messages "seq I" to rI@relay.test in one pipelined session,
    each deferred once by the dead smarthost."""
    with d.session() as c:
        for i in range(n):
            c.send(b'MAIL FROM:<bulk@example.test>\r\n'
                   b'RCPT TO:<r%d@relay.test>\r\nDATA\r\n' % i)
            c.reply()
            c.reply()
            c.expect(None, 354)
            c.expect(stuff(b'Subject: bulk\r\n\r\nseq %d\r\n' % i), 250)
        c.expect('QUIT', 221)
    wait_for(lambda: len(deliveries(d, status='deferred')) >= n, 60,
             'all %d deferred' % n)


def test_deliver_dead_destination_flush_not_paced():
    """A flush of more deferred messages than the scheduler holds at once
    (SCHED_ACTIVE_MAX, 256) to a dead smarthost: each batch of 256 is
    deferred at once ("backing off"), which frees every slot, and the
    next batch goes in the same moment.  It used to sleep a second per
    batch (the pass re-armed its timer a second out over the wake-up the
    deferrals had asked for), so a router's 50,000 took over three
    minutes.  strace shows the loop's waits: between the flush and the
    last deferral none may run out its timeout.  Every message is
    deferred once and none is lost."""
    wrap = strace_wrap('epoll_wait,epoll_pwait')
    if wrap is None:
        return 'strace is not installed or cannot trace here'
    n = 1500
    port = free_port()
    d = smarthost_daemon('flushpace', port)
    trace = os.path.join(d.dir, 'strace.out')
    d.wrap = wrap + ['-o', trace]
    with d:
        _queue_bulk(d, n)
        before = len(d.log_text())
        t0 = time.time()
        flush(d)

        def flushed():
            k = d.log_text()[before:].count('status=deferred')
            return k if k >= n else None
        k = wait_for(flushed, 120, '%d deferred after the flush' % n)
        t1 = time.time()
        check(k == n, '%d deferrals after the flush, want %d' % (k, n))
        check(len(d.mailq()) == n, 'mailq has %d, want %d'
              % (len(d.mailq()), n))
        d.stop()		# strace has written all
        slept = []
        with open(trace, errors='replace') as f:
            for line in f:
                m = STRACE_LINE_RE.match(line.strip())
                w = m and m.group(2).startswith('epoll') and re.match(
                    r'[^,]*, \[\], \d+, (\d+)[,)].* = 0$', m.group(3))
                if w and t0 < float(m.group(1)) < t1 and \
                        int(w.group(1)) >= 100:
                    slept.append(line.strip())
        check(slept == [], 'the loop slept out %d timeouts during the flush:'
              ' %r' % (len(slept), slept[:5]))


def test_deliver_flush_beyond_active_limit_deferred_again():
    """A flush of more than twice SCHED_ACTIVE_MAX (256) deferred messages
    to a smarthost that refuses every RCPT with a 4xx: each goes back to
    the idle list while the pass that stopped for want of a slot goes on
    from where it stopped (sched_cursor).  Every message is tried once,
    none is skipped or lost; a second flush to a sink that takes them
    delivers each exactly once."""
    n = 600
    port = free_port()
    with smarthost_daemon('flushagain', port) as d:
        _queue_bulk(d, n)
        ids = set(r.id for r in deliveries(d, status='deferred'))
        check(len(ids) == n, '%d distinct deferred, want %d' % (len(ids), n))
        with Sink(port=port, opts=['-r', 'RCPT']):
            before = len(deliveries(d))
            flush(d)

            def refused():
                got = deliveries(d)[before:]
                return got if len(got) >= n else None
            got = wait_for(refused, 40, '%d tried after the flush' % n)
            time.sleep(0.5)	# a second attempt would show by now
            got = deliveries(d)[before:]
            check(sorted(r.id for r in got) == sorted(ids) and
                  all(r.status.startswith('deferred') and '450 ' in r.text
                      for r in got),
                  '%d attempts for %d messages after the flush: %r'
                  % (len(got), n, [(r.id, r.status) for r in got
                                   if r.status != 'deferred'][:5]))
        with Sink(port=port) as s:
            flush(d)
            wait_for(lambda: len(deliveries(d, status='sent')) >= n, 60,
                     '%d sent' % n)
            queue_settled(d)
            seqs = sorted(int(re.search(rb'seq (\d+)', m.body).group(1))
                          for m in s.messages())
            check(seqs == list(range(n)), '%d at the sink, %d distinct, '
                  'want %d once each' % (len(seqs), len(set(seqs)), n))


def test_deliver_sigusr1_runs_the_queue():
    port = free_port()
    with smarthost_daemon('usr1', port) as d:
        qid = d.send_message(BODY)
        wait_delivery(d, qid, 'deferred')
        with Sink(port=port) as s:
            d.signal(signal.SIGUSR1)
            wait_delivery(d, qid, 'sent')
            wait_removed(d, qid)
            check(len(s.wait_count(1)) == 1, 'sink %r' % s.messages())


def test_deliver_global_limit():
    """Three destinations, max_deliveries = 2: never more than two
    connections at once over all of them."""
    def policy(sess, verb, arg, txn):
        if verb == '.':
            time.sleep(0.2)
        return None

    z = zone(*['d%d.test. MX 10 mx.gl.test.' % i for i in range(3)],
             'mx.gl.test. A 127.0.0.3')
    with DnsServer(z) as dns, SmtpPeer('127.0.0.3', policy=policy) as p, \
            mx_daemon('global', dns, p.port, max_deliveries='2') as d:
        p.stop()
        ids = [d.send_message(BODY, rcpts=('u%d@d%d.test' % (i, i % 3),))
               for i in range(9)]
        for qid in ids:
            wait_delivery(d, qid, 'deferred')
        p.start()
        flush(d)
        for qid in ids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        check(p.max_active <= 2, '%d connections at once, max_deliveries 2'
              % p.max_active)
        check(len(p.delivered()) == 9, 'delivered %r' % p.txns())
        p.wait_idle()


def test_deliver_dead_destination_backed_off_as_a_whole():
    """A host that accepts and hangs up at once: the first message costs
    one connection; the next ones to that destination are deferred
    without another while it backs off."""
    with SmtpPeer(policy=lambda s, v, a, t: SmtpPeer.DROP
                  if v == 'CONNECT' else None) as p, \
            smarthost_daemon('backoff', p.port) as d:
        # one at a time: a message that arrives while the first attempt
        # is still in progress may rightly get a connection of its own
        for i in range(5):
            qid = d.send_message(BODY)
            r = wait_delivery(d, qid, 'deferred')[0]
            check(r.dsn.startswith('4.'), 'deferral %r' % r)
            check(i == 0 or 'delivery temporarily suspended: ' in r.text,
                  'message %d deferred for another reason: %r' % (i, r))
        time.sleep(0.3 * SLOW)
        check(p.connections == 1, '%d connections to a failing host for '
              '5 messages, want 1' % p.connections)
        check(len(d.mailq()) == 5, 'mailq %r' % d.mailq())
        p.wait_idle()


def test_deliver_relay_named_once_a_server_answered():
    """Postfix's relay= field: a deferral names the server once one
    answered, even when no transaction started (a 421 banner); when no
    connection opened it says relay=none."""
    with SmtpPeer(policy=lambda s, v, a, t: '421 4.3.2 busy'
                  if v == 'CONNECT' else None) as p, \
            smarthost_daemon('relay421', p.port) as d:
        r = wait_delivery(d, d.send_message(BODY), 'deferred')[0]
        # Postfix's words for a refused greeting (smtp_helo()).
        check(r.relay == '127.0.0.1[127.0.0.1]:%d' % p.port and
              r.text == 'host %s refused to talk to me: 421 4.3.2 busy'
              % PEER, 'after a 421 banner: %r' % r)
    with Daemon('relaynone') as d:		# its smarthost: a closed port
        r = wait_delivery(d, d.send_message(BODY), 'deferred')[0]
        check(r.relay == 'none' and 'Connection refused' in r.text,
              'connection refused: %r' % r)


def test_deliver_reply_escapes_not_passed_on():
    """A server's reply with an escape sequence in it (the 8-bit CSI,
    U+009B, as UTF-8) reaches neither the log nor root's mailq as it
    came: each byte becomes '?', while real UTF-8 (caf\u00e9) is kept."""
    def policy(sess, verb, arg, txn):
        return ('450 4.2.0 busy \u009b31m caf\u00e9'
                if verb == 'RCPT' else None)
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('replyesc', p.port) as d:
        r = wait_delivery(d, d.send_message(BODY), 'deferred')[0]
        check('busy ??31m caf\u00e9' in r.text and '\u009b' not in
              d.log_text(), 'logged %r' % r.text)
        wait_for(lambda: d.mailq()[0]['recipients'][0]['reason'], 10,
                 'the reason in the state file')
        out = d.cli('mailq').stdout
        check(b'busy ??31m caf\xc3\xa9' in out and b'\xc2\x9b' not in out,
              'mailq: %r' % out)


def test_deliver_recipient_limit_new_transaction():
    """A server that takes two recipients per transaction and says 452
    4.5.3 to the rest (RFC 5321 section 4.5.3.1.10): the rest go at once
    in new transactions on the same connection, as Postfix sends them;
    they used to wait for the next retry (an hour here)."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and sum(1 for _, c in txn.rcpts
                                  if c // 100 == 2) >= 2:
            return '452 4.5.3 Error: too many recipients'
        return None
    rcpts = ['r%d@relay.test' % i for i in range(5)]
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('rcptlimit', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        sent = wait_delivery(d, qid, 'sent', n=5)
        got = p.wait_delivered(3)
        check(sorted(a for t in got for a, c in t.rcpts if c == 250) ==
              rcpts and [len([1 for _, c in t.rcpts if c == 250])
                         for t in got] == [2, 2, 1],
              'transactions %r' % [t.rcpts for t in got])
        check(p.connections == 1 and not deliveries(d, qid, 'deferred'),
              '%d connections, sent %r' % (p.connections, sent))
        wait_removed(d, qid)
        p.wait_idle()


def test_deliver_all_recipients_refused():
    """Every RCPT refused, and a peer that still answers DATA with 354
    (as some do under PIPELINING): the body is not sent, each recipient
    bounces with its own reply, and the connection goes on (RSET) to the
    DSN."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and 'sender@' not in arg:
            return '550 5.1.1 %s: no such user' % arg
        if verb == 'DATA':
            return '354 go ahead'
        return None

    with SmtpPeer(policy=policy) as p, smarthost_daemon(
            'allrefused', p.port, max_deliveries_per_destination='1') as d:
        qid = d.send_message(BODY, rcpts=('a@dom.test', 'b@dom.test'))
        lines = wait_delivery(d, qid, 'bounced', n=2)
        for r in lines:
            check(r.dsn == '5.1.1' and r.text == said(
                '550 5.1.1 <%s>: no such user' % r.to, 'RCPT TO'),
                  'bounce line %r' % r)
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')
        first = p.txns()[0]
        check(first.sender == 'sender@example.test' and
              first.raw in (None, b''), 'the body went to nobody: %r %s'
              % (first, short(first.raw or b'')))
        verbs = [c.split()[0].upper() for s in p.sessions
                 for c in s.commands]
        check('RSET' in verbs or p.connections > 1,
              'a new transaction on the same connection without RSET: %r'
              % verbs)
        p.wait_idle()


def test_deliver_undeliverable_bounce_dropped_after_lifetime():
    """The recipient's and the sender's MX are both dead: the message
    expires, its DSN is deferred in turn, expires too, and is dropped
    with a log line -- no bounce of the bounce."""
    z = zone('dead.test. MX 10 mx.dead.test.', 'mx.dead.test. A 127.0.0.2',
             'gone.test. MX 10 mx.gone.test.', 'mx.gone.test. A 127.0.0.2')
    port = free_port()
    check(bind_probe('127.0.0.2', port), 'something on 127.0.0.2')
    with DnsServer(z) as dns, mx_daemon('bouncelife', dns, port,
                                        queue_lifetime='2s',
                                        retry_min='1s',
                                        retry_max='1s') as d:
        qid = d.send_message(BODY, sender='s@gone.test',
                             rcpts=('x@dead.test',))
        wait_delivery(d, qid, 'expired', timeout=10)
        b = wait_for(lambda: bounce_ids(d, qid), 5, 'a DSN')
        check(len(b) == 1, 'DSNs %r' % b)
        wait_delivery(d, b[0], 'deferred')
        r = wait_delivery(d, b[0], 'expired', timeout=10)[0]
        check(r.to == 's@gone.test', 'DSN expiry line %r' % r)
        wait_removed(d, b[0])
        check(re.search(r'\b%s: undeliverable bounce discarded' % b[0],
                        d.log_text()), 'no "discarded" line for the DSN')
        check(bounce_ids(d, b[0]) == [], 'a bounce of the bounce')
        queue_settled(d)


# --- mailq's view of deferred mail, backoff, smarthost and MX rules ------

def _mailq_date(t):
    """Unix seconds the way mailq prints them (local time, no year)."""
    return time.strftime('%a %b %e %H:%M:%S', time.localtime(t))


def test_deliver_mailq_plain_shows_reason_and_next_attempt():
    """Plain mailq of a message with one recipient sent and one deferred
    by a 451: the sent one is gone, the deferred one is followed by the
    remote's reply in parentheses, and the message ends with its next
    attempt -- the same time as mailq --json's next_attempt."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<b@dom.test>'):
            return '451 4.2.0 <b@dom.test>: mailbox busy'
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('mqplain', p.port) as d:
        qid = d.send_message(BODY, rcpts=('a@dom.test', 'b@dom.test'))
        wait_delivery(d, qid, 'deferred')
        wait_delivery(d, qid, 'sent')

        def settled():
            q = d.mailq()
            return q if q and [r['status'] for r in q[0]['recipients']] \
                == ['sent', 'deferred'] else None
        # The log line comes a moment before the state file is written.
        q = wait_for(settled, 5, 'a sent, b deferred: %r' % d.mailq())[0]
        reason = q['recipients'][1]['reason']
        check('451' in reason and 'mailbox busy' in reason,
              'json reason %r' % reason)
        check(q['next_attempt'] > time.time() + 600,
              'next_attempt %r not an hour ahead' % q['next_attempt'])
        pr = d.cli('mailq')
        check(pr.returncode == 0, 'mailq exit %d: %s'
              % (pr.returncode, short(pr.stderr)))
        out = pr.stdout.decode()
        lines = out.splitlines()
        top = [i for i, l in enumerate(lines) if l.startswith(qid)]
        check(len(top) == 1, 'no single line for %s:\n%s' % (qid, out))
        block = lines[top[0]:]
        block = block[:block.index('')] if '' in block else block
        ind = ' ' * 50		# QUEUE_ID_LEN + 32, as the table has it
        want = [ind + 'b@dom.test', ind + '(%s)' % reason,
                ind + '(next attempt: %s)' % _mailq_date(q['next_attempt'])]
        check(block[1:] == want, 'mailq block of %s:\n%s\nwant after the '
              'ID line:\n%s' % (qid, '\n'.join(block), '\n'.join(want)))
        check('a@dom.test' not in out, 'a sent recipient is listed:\n%s'
              % out)
        check(re.search(r'(?m)^-- \d+ Kbytes in 1 Request\.$', out),
              'no summary line:\n%s' % out)
        p.wait_idle()


_LOG_STAMP = re.compile(r'^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d:\d\d:\d\d) ')


def _log_seconds(line):
    """Unix seconds of a log line's stamp ("Nov 27 04:20:09", local)."""
    m = _LOG_STAMP.match(line)
    check(m, 'log line without a time stamp: %r' % line)
    now = time.time()
    for year in (time.localtime(now).tm_year,
                 time.localtime(now).tm_year - 1):
        t = time.mktime(time.strptime('%d %s %s %s' % (
            year, m.group(1), m.group(2), m.group(3)), '%Y %b %d %H:%M:%S'))
        if t <= now + 86400:
            return int(t)
    raise TestFailure('log stamp in the future: %r' % line)


def _deferral_seconds(d, qid):
    """The stamps of qid's status=deferred lines, in order."""
    return [_log_seconds(l) for l in d.log_text().splitlines()
            if re.search(r'\b%s: to=<.*, status=deferred ' % qid, l)]


def test_deliver_backoff_grows_to_retry_max():
    """retry_min = 1s, retry_max = 4s, a peer that always says 451: the
    wait before each next attempt (mailq --json's next_attempt minus the
    second of the deferral's log line) doubles from 1 s, plus 0-50 %
    jitter, and then stays at the 4 s cap (the jitter took it to 6 s).
    Attempt k's next_attempt N_k lies after its deferral (L_k < N_k)
    and not after the next one (the retry waits for it: N_k <= L_k+1),
    so each N seen in mailq belongs to the last deferral logged before
    it.  The deferral's stamp comes a moment before the scheduler reads
    the clock: up to 1 s more is allowed."""
    def policy(sess, verb, arg, txn):
        return '451 4.3.0 try again later' if verb == 'RCPT' else None

    attempts = 5
    # k -> (least, most) wait: 1; 2 + 0..1; then the cap 4
    bounds = {1: (1, 1), 2: (2, 3)}
    for k in range(3, attempts + 1):
        bounds[k] = (4, 4)
    with SmtpPeer(policy=policy) as p, smarthost_daemon(
            'backoffgrow', p.port, retry_min='1s', retry_max='4s') as d:
        qid = d.send_message(BODY)
        seen = set()
        deadline = time.monotonic() + 60 * SLOW
        while True:
            q = d.mailq()
            check(len(q) == 1 and q[0]['id'] == qid, 'mailq %r' % q)
            if q[0]['next_attempt']:
                seen.add(q[0]['next_attempt'])
            defers = _deferral_seconds(d, qid)
            if len(defers) > attempts:
                break
            check(time.monotonic() < deadline, '%d deferrals in %.0fs; '
                  'log:\n%s' % (len(defers), 60 * SLOW, d.log_tail(12)))
            time.sleep(0.1)
        waits = {}
        for n in sorted(seen):
            k = max([i + 1 for i, l in enumerate(defers) if l < n] or [0])
            check(k >= 1, 'next_attempt %d before the first deferral %r'
                  % (n, defers))
            check(k not in waits, 'two next_attempt values for attempt %d:'
                  ' %r, deferrals %r' % (k, sorted(seen), defers))
            waits[k] = n - defers[k - 1]
        got = [waits.get(k) for k in range(1, attempts + 1)]
        # mailq is read every 0.1 s and each value stays at least ~1 s
        check(None not in got, 'next_attempt not seen for every attempt:'
              ' waits %r, next_attempt %r, deferrals %r'
              % (got, sorted(seen), defers))
        for k, w in enumerate(got, 1):
            lo, hi = bounds[k]
            check(lo <= w <= hi + 1, 'attempt %d: waited %ds for the next,'
                  ' want %d..%d (+1); waits %r' % (k, w, lo, hi, got))
        # the gaps grow, then stop at the cap: no 8 s, no 16 s
        check(got[0] < got[2] and got[1] <= got[2] + 1 and
              max(got[2:]) <= 5, 'waits %r do not grow to the cap' % got)
        gaps = [b - a for a, b in zip(defers, defers[1:])]
        check(all(g >= 1 for g in gaps[:attempts]) and
              max(gaps[:attempts]) <= 7 + 3 * SLOW,
              'deferrals %ss apart: %r' % (gaps, defers))
        check(len(p.delivered()) == 0, 'delivered at a 451: %r' % p.txns())
        p.wait_idle()
        return 'waits %r' % got


def test_deliver_smarthost_brackets_skip_mx():
    """smarthost = [brk.test]:port: its A record, never its MX (which
    points at a dead host).  Without the brackets the same name goes by
    its MX and is deferred: the zone is what the test says it is."""
    z = zone('brk.test. MX 10 mx.brk.test.', 'mx.brk.test. A 127.0.0.2',
             'brk.test. A 127.0.0.6')
    with DnsServer(z) as dns, Sink('127.0.0.6') as s:
        check(bind_probe('127.0.0.2', s.port), 'something on 127.0.0.2')
        with Daemon('brackets', smarthost='[brk.test]:%d' % s.port,
                    dns_servers=dns.server, **NO_RETRY) as d:
            qid = d.send_message(BODY, rcpts=('x@anywhere.test',))
            r = wait_delivery(d, qid, 'sent')[0]
            check(r.relay == 'brk.test[127.0.0.6]:%d' % s.port,
                  'relay %r, want brk.test[127.0.0.6]:%d' % (r.relay, s.port))
            wait_removed(d, qid)
            msgs = s.wait_count(1)
            check(len(msgs) == 1 and msgs[0].rcpt_addrs ==
                  ['x@anywhere.test'], 'sink %r' % msgs)
            check_relayed(msgs[0].body, BODY, '[brk.test]', lf=True)
            check(deliveries(d, qid, 'deferred') == [], 'deferred first: %r'
                  % deliveries(d, qid))
        with Daemon('nobrackets', smarthost='brk.test:%d' % s.port,
                    dns_servers=dns.server, **NO_RETRY) as d:
            qid = d.send_message(BODY, rcpts=('x@anywhere.test',))
            r = wait_delivery(d, qid, 'deferred')[0]
            check('127.0.0.2' in r.relay or 'mx.brk.test' in r.text,
                  'without brackets, not the MX: %r' % r)
            time.sleep(0.3 * SLOW)
            check(len(s.messages()) == 1, 'sink %r' % s.messages())


def test_deliver_dead_mx_no_a_fallback():
    """The domain has an MX (on a dead address) and an A record with a
    live sink: the MX is the only way in (RFC 5321 5.1), so the mail is
    deferred, and stays deferred over a retry -- never sent to the A."""
    z = zone('mxa.test. MX 10 mx.mxa.test.', 'mx.mxa.test. A 127.0.0.2',
             'mxa.test. A 127.0.0.4')
    with DnsServer(z) as dns, Sink('127.0.0.4') as s:
        check(bind_probe('127.0.0.2', s.port), 'something on 127.0.0.2')
        with mx_daemon('nofallback', dns, s.port) as d:
            qid = d.send_message(BODY, rcpts=('x@mxa.test',))
            r = wait_delivery(d, qid, 'deferred')[0]
            check_log_line(r, 'x@mxa.test', 'deferred', r'4\.\d+\.\d+')
            check('127.0.0.2' in r.relay or 'mx.mxa.test' in r.text,
                  'deferral without the MX host: %r' % r)
            flush(d)
            wait_delivery(d, qid, 'deferred', n=2)
            time.sleep(0.3 * SLOW)
            check(s.messages() == [], 'delivered to the A record: %r'
                  % s.messages())
            check(deliveries(d, qid, 'sent') == [] and
                  deliveries(d, qid, 'bounced') == [],
                  'not only deferred: %r' % deliveries(d, qid))
            q = d.mailq()
            check(len(q) == 1 and q[0]['recipients'][0]['status'] ==
                  'deferred', 'mailq %r' % q)
            check(all('127.0.0.4' not in x.relay
                      for x in deliveries(d, qid)),
                  'the A record was tried: %r' % deliveries(d, qid))


def test_deliver_5xx_bounced_at_once_while_4xx_pending():
    """RCPT a 250, b 550, c 450: b's DSN goes out at the end of that
    attempt (Postfix's way), not when c is finally done, so a "ferry
    delete" meanwhile cannot lose it.  mailq still says b is bounced;
    after a restart and a flush c is sent and no second DSN names b."""
    hold = [1]

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<b@dom.test>'):
            return '550 5.1.1 <b@dom.test>: Recipient address rejected: ' \
                'User unknown'
        if verb == 'RCPT' and arg.startswith('<c@dom.test>') and hold:
            return '450 4.2.1 <c@dom.test>: mailbox busy'
        return None

    rcpts = ('a@dom.test', 'b@dom.test', 'c@dom.test')
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('earlybounce', p.port) as d:
        qid = d.send_message(BODY, rcpts=rcpts)
        wait_delivery(d, qid, 'bounced')
        wait_delivery(d, qid, 'deferred')
        b = one_bounce(d, qid)
        wait_delivery(d, b[0], 'sent')

        def dsns():
            return [t for t in p.delivered() if t.sender == '']
        wait_for(lambda: dsns(), 5, 'the DSN at the peer')
        dsn = dsns()
        check(len(dsn) == 1 and dsn[0].accepted == ['sender@example.test'],
              'the DSN transaction %r' % dsn)
        _, _, blocks, _ = parse_dsn(dsn[0].body, 'early DSN')
        check(len(blocks) == 1, 'early DSN lists %d recipients, want only '
              'b: %s' % (len(blocks), short(dsn[0].body, 1500)))
        check_dsn_rcpt(blocks[0], 'b@dom.test', r'5\.1\.1', 'early DSN',
                       diag_re=r'550 5\.1\.1 .*User unknown')
        want = {'a@dom.test': 'sent', 'b@dom.test': 'bounced',
                'c@dom.test': 'deferred'}

        def states():
            q = [m for m in d.mailq() if m['id'] == qid]
            return {r['address']: r['status']
                    for r in q[0]['recipients']} if q else {}
        wait_for(lambda: states() == want, 5, 'mailq states %r' % d.mailq())
        check(deliveries(d, qid, 'sent') and len(deliveries(d, qid)) == 3,
              'log lines %r' % deliveries(d, qid))

        d.stop()
        d.start()
        del hold[:]
        flush(d)
        wait_delivery(d, qid, 'sent', n=2)
        wait_removed(d, qid)
        queue_settled(d)
        p.wait_idle()
        check(bounce_ids(d, qid) == b, 'DSNs made for %s: %r, want only %r'
              % (qid, bounce_ids(d, qid), b))
        check(len(dsns()) == 1, 'a second DSN: %r' % dsns())
        txns = [t for t in p.delivered() if t.sender == 'sender@example.test']
        check([t.accepted for t in txns] == [['a@dom.test'], ['c@dom.test']],
              'transactions %r' % txns)
