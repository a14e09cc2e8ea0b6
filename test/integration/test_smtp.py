"""
test_smtp.py - the SMTP server seen from the wire: replies, pipelining,
dot-unstuffing, relay control, limits, timeouts, smuggling and junk.
Every refusal also checks that nothing was queued (mailq --json) and every
acceptance that the stored message is the sent one byte for byte.
"""

import os
import random
import re
import smtplib
import socket
import struct
import subprocess
import shutil
import threading
import time

from ferrytest import (Conn, Daemon, TestFailure, check, stuff, short,
                       auth_plain, HOSTNAME, UNTRUSTED, TRUSTED, SLOW, QID_RE)
from peers import wait_for

BODY = (b'From: a@example.test\r\nTo: b@relay.test\r\n'
        b'Subject: hello\r\n\r\nfirst line\r\nsecond line\r\n')


# --- greeting, EHLO, plain transactions ------------------------------

def test_banner_and_ehlo():
    with Daemon('ehlo', message_size_limit='123456') as d:
        with d.connect() as c:
            r = c.expect(None, 220)
            check(r.lines == ['220 %s ESMTP ferry' % HOSTNAME],
                  'banner %r' % r.text)
            r = c.expect('EHLO client.test', 250)
            check(r.lines[0] == '250-' + HOSTNAME, 'EHLO first line %r'
                  % r.lines[0])
            kw = [l[4:] for l in r.lines[1:]]
            for k in ('PIPELINING', 'SIZE 123456', '8BITMIME', 'SMTPUTF8',
                      'ENHANCEDSTATUSCODES', 'HELP'):
                check(k in kw, 'EHLO lacks %r: %r' % (k, r.text))
            check(not any(k.startswith('AUTH') for k in kw),
                  'AUTH offered without TLS: %r' % r.text)
            r = c.expect('HELO client.test', 250)
            check(r.lines == ['250 ' + HOSTNAME], 'HELO reply %r' % r.text)
            c.expect('NOOP', 250, '2.0.0')
            c.expect('RSET', 250, '2.0.0')
            c.expect('QUIT', 221, '2.0.0')
            check(c.wait_closed(), 'no close after QUIT')


def test_smtplib_send():
    with Daemon('smtplib') as d:
        s = smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test',
                         timeout=20)
        s.ehlo()
        check(s.has_extn('pipelining') and s.has_extn('size'),
              'extensions %r' % s.esmtp_features)
        code, _ = s.mail('sender@example.test')
        check(code == 250, 'MAIL %d' % code)
        code, _ = s.rcpt('rcpt@relay.test')
        check(code == 250, 'RCPT %d' % code)
        code, msg = s.data(BODY)
        check(code == 250, 'DATA end %d %r' % (code, msg))
        qid = msg.decode().split()[-1]
        s.quit()
        q = d.mailq()
        check([m['id'] for m in q] == [qid], 'mailq %r, want [%s]'
              % (q, qid))
        check(q[0]['sender'] == 'sender@example.test', 'sender %r'
              % q[0]['sender'])
        check([r['address'] for r in q[0]['recipients']] ==
              ['rcpt@relay.test'], 'recipients %r' % q[0]['recipients'])
        check(q[0]['recipients'][0]['status'] in ('queued', 'deferred'),
              'status %r' % q[0]['recipients'][0])
        check(q[0]['size'] >= len(BODY), 'size %r < %d'
              % (q[0]['size'], len(BODY)))
        check(abs(q[0]['arrival'] - time.time()) < 120, 'arrival %r'
              % q[0]['arrival'])
        d.assert_stored(qid, BODY)


def test_pipelined_dialogue():
    body = (b'Subject: pipelined\r\n\r\nline one\r\n'
            b'.starts with a dot\r\n..two dots\r\n.\r\n..\r\nend\r\n')
    with Daemon('pipe') as d:
        with d.connect() as c:
            c.send(b'EHLO client.test\r\nMAIL FROM:<s@example.test>\r\n'
                   b'RCPT TO:<a@relay.test>\r\nRCPT TO:<b@other.test>\r\n'
                   b'DATA\r\n' + stuff(body) + b'QUIT\r\n')
            want = [(220, None), (250, None), (250, '2.1.0'),
                    (250, '2.1.5'), (250, '2.1.5'), (354, None),
                    (250, '2.0.0'), (221, '2.0.0')]
            got = []
            for code, enh in want:
                r = c.reply()
                got.append(r)
                check(r.code == code and (enh is None or r.enh() == enh),
                      'reply %d: expected %d %s, got %r (so far %r)'
                      % (len(got), code, enh or '', r.text, got))
            qid = got[6].qid()
            check(qid, 'no queue id in %r' % got[6].text)
            check(c.wait_closed(), 'not closed after QUIT')
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid, 'mailq %r' % q)
        check(sorted(r['address'] for r in q[0]['recipients']) ==
              ['a@relay.test', 'b@other.test'], 'rcpts %r'
              % q[0]['recipients'])
        d.assert_stored(qid, body)


def _flood(sock, n, tail, shut):
    """On a fresh connection: banner, one EHLO, then n more EHLOs and
    tail pipelined (the write side shut after them if shut), read only
    after a second.  The first EHLO's lines and every later reply, to the
    close (within 30 s: no wait for a timeout)."""
    sock.settimeout(30 * SLOW)
    f = sock.makefile('rb')

    def reply():
        lines = []
        while not lines or lines[-1][3:4] == b'-':
            lines.append(f.readline())
            check(lines[-1].endswith(b'\r\n'), 'reply %r' % lines)
        return lines
    check(reply()[0].startswith(b'220 '), 'banner')
    sock.sendall(b'EHLO x\r\n')
    ehlo = reply()
    err = []

    def send():
        try:
            sock.sendall(b'EHLO x\r\n' * n + tail)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=send)
    t.start()
    time.sleep(1.0 * SLOW)
    rs = []
    while f.peek(1):
        rs.append(reply())
    t.join()
    check(not err, 'sending: %r' % err)
    sock.close()
    return ehlo, rs


def test_pipelined_ehlo_flood_all_answered():
    """2000 EHLOs pipelined (16 KB) by a client that reads nothing for a
    second, then a message and QUIT.  With a 238-byte host name each EHLO
    reply is 340 bytes: the 200 EHLOs of one 1.6 KB read answer more than
    io's 64 KB cap, so the server must stop taking commands while its
    replies back up.  Every EHLO gets its whole reply, in order, none
    dropped, and the message is queued.  On port 25, and on the local
    socket, whose kernel buffer (200 KB) fills, so the server waits for
    its replies to drain and reads on: plain, with the client's write
    side shut after its last command (the close is read after the
    commands before it), and ending in half a command, which is lost
    with the connection once every reply is out."""
    n = 2000
    name = '.'.join(c * 60 for c in 'abc') + '.' + 'd' * 52 + '.test'
    msg = (b'MAIL FROM:<s@example.test>\r\nRCPT TO:<r@relay.test>\r\n'
           b'DATA\r\n' + stuff(BODY))
    with Daemon('ehloflood', hostname=name) as d:
        def tcp():
            return socket.create_connection(('127.0.0.1', d.port))

        def local():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.cfg['local_socket'])
            return s
        qids = []
        for how, tail, shut, last in (
                (tcp, msg + b'QUIT\r\n', False, [b'221']),
                (local, msg + b'QUIT\r\n', False, [b'221']),
                (local, msg + b'QUIT\r\n', True, [b'221']),
                (local, msg + b'NOOP', True, [])):
            what = '%s%s: ' % (how.__name__, ' shut' if shut else '')
            ehlo, rs = _flood(how(), n, tail, shut)
            bad = [i for i, r in enumerate(rs[:n]) if r != ehlo]
            check(len(rs) == n + 4 + len(last) and not bad,
                  '%s%d replies, want %d; first bad %r' % (
                      what, len(rs), n + 4 + len(last),
                      rs[bad[0]] if bad else None))
            codes = [r[-1][:3] for r in rs[n:]]
            check(codes == [b'250', b'250', b'354', b'250'] + last,
                  '%sthen %r' % (what, rs[n:]))
            qids.append(QID_RE.search(rs[n + 3][-1].decode()).group(1))
        check('reply buffer full' not in d.log_text(), 'log:\n%s'
              % d.log_tail(5))
        d.wait_log(r'lost connection after END-OF-MESSAGE from ')
        check(sorted(d.mailq_ids()) == sorted(qids), 'queue %r, sent %r'
              % (d.mailq_ids(), qids))
        d.assert_stored(qids[0], BODY)
        for qid in qids[1:]:	# the local socket's add Message-ID:
            out = d.cat(qid)
            check(b'\r\nSubject: hello\r\n' in out and
                  out.endswith(b'\r\n\r\nfirst line\r\nsecond line\r\n'),
                  'stored %s' % short(out, 600))


def test_dot_unstuffing_exact():
    """RFC 5321 4.5.2: exactly one leading dot comes off each line that
    has one (a wire line '..' is a body line '.'), nothing else changes."""
    wire = (b'Subject: dots\r\n\r\n'
            b'..\r\n'            # body line that is exactly '.'
            b'...\r\n'           # '..'
            b'..leading\r\n'     # '.leading'
            b'...two\r\n'        # '..two'
            b'mid.dle\r\n'
            b'x.\r\n'
            b' .space\r\n'
            b'\r\n'
            b'last\r\n'
            b'.\r\n')
    stored = (b'Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n..two\r\n'
              b'mid.dle\r\nx.\r\n .space\r\n\r\nlast\r\n')
    with Daemon('dots') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            r = c.expect(wire, 250, '2.0.0')
        d.assert_stored(r.qid(), stored)


def test_8bit_and_long_lines_exact():
    """A 998-octet line (1000 with CRLF) and 8-bit bytes pass unchanged."""
    body = (b'Subject: edge\r\n\r\n' + b'x' * 998 + b'\r\n'
            + bytes(range(0x80, 0x100)) + b'\r\n' + b'\t tab\r\n')
    with Daemon('edge') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test> BODY=8BITMIME', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            r = c.expect(stuff(body), 250, '2.0.0')
        d.assert_stored(r.qid(), body)


def test_null_sender_and_two_transactions():
    with Daemon('nullsender') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<>', 250, '2.1.0')
            c.expect('RCPT TO:<r@relay.test>', 250, '2.1.5')
            c.expect('DATA', 354)
            q1 = c.expect(stuff(BODY), 250, '2.0.0').qid()
            body2 = BODY + b'second\r\n'
            c.expect('MAIL FROM:<two@example.test>', 250, '2.1.0')
            c.expect('RCPT TO:<r2@relay.test>', 250, '2.1.5')
            c.expect('DATA', 354)
            q2 = c.expect(stuff(body2), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        check(q1 != q2, 'same queue id twice: %s' % q1)
        q = {m['id']: m for m in d.mailq()}
        check(set(q) == {q1, q2}, 'mailq ids %r' % list(q))
        check(q[q1]['sender'] == '', 'null sender shown as %r'
              % q[q1]['sender'])
        check([r['address'] for r in q[q2]['recipients']] ==
              ['r2@relay.test'], 'second message recipients %r'
              % q[q2]['recipients'])
        d.assert_stored(q1, BODY)
        d.assert_stored(q2, body2)


def test_swaks_delivers():
    check(shutil.which('swaks'), 'swaks is not installed')
    with Daemon('swaks') as d:
        p = subprocess.run(
            ['swaks', '--server', '127.0.0.1:%d' % d.port,
             '--to', 'user@relay.test', '--from', 'swaks@example.test',
             '--header', 'Subject: from swaks',
             '--body', 'swaks body line'],
            capture_output=True, timeout=60)
        check(p.returncode == 0, 'swaks exit %d: %s'
              % (p.returncode, p.stdout.decode(errors='replace')[-1500:]))
        q = d.mailq()
        check(len(q) == 1, 'mailq %r' % q)
        check(q[0]['sender'] == 'swaks@example.test', 'sender %r'
              % q[0]['sender'])
        check([r['address'] for r in q[0]['recipients']] ==
              ['user@relay.test'], 'rcpts %r' % q[0]['recipients'])
        out = d.cat(q[0]['id'])
        check(b'Subject: from swaks\r\n' in out and
              b'\r\n\r\nswaks body line' in out, 'stored %s' % short(out))


# --- relay control --------------------------------------------------------

DENIED = ['u@other.test', 'u%other.test@relay.test',
          '@relay.test:u@other.test', 'other.test!u@relay.test',
          '"u@other.test"@relay.test', 'u@sub.relay.test',
          'u@relay.test.other.test']


def test_relay_denied_untrusted():
    with Daemon('relay') as d:
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            for a in DENIED:
                r = c.expect('RCPT TO:<%s>' % a, 554, '5.7.1')
                check('Relay access denied' in r.text, 'reply %r' % r.text)
            # no valid recipient yet: DATA must not open; Postfix's
            # words, not the 503 of a DATA with no RCPT at all
            r = c.expect('DATA', 554, '5.5.1')
            check('Error: no valid recipients' in r.text,
                  'DATA with only denied rcpts: %r' % r.text)
            # the session goes on: relay_domains is accepted (any case)
            c.expect('RCPT TO:<ok@relay.test>', 250, '2.1.5')
            c.expect('RCPT TO:<Ok2@RELAY.Test>', 250, '2.1.5')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250, '2.0.0').qid()
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid, 'mailq %r' % q)
        got = [r['address'].lower() for r in q[0]['recipients']]
        check(got == ['ok@relay.test', 'ok2@relay.test'],
              'queued recipients %r (a denied one slipped in?)' % got)
        d.assert_stored(qid, BODY)


def test_relay_denied_nothing_queued():
    with Daemon('relay0') as d:
        s = smtplib.SMTP('127.0.0.1', d.port, local_hostname='c.test',
                         source_address=(UNTRUSTED, 0), timeout=20)
        try:
            s.sendmail('s@example.test', ['victim@other.test'], BODY)
            raise TestFailure('relay to other.test from 127.0.0.2 accepted')
        except smtplib.SMTPRecipientsRefused as e:
            code, msg = e.recipients['victim@other.test']
            check(code == 554 and msg.startswith(b'5.7.1'),
                  'refusal %d %r' % (code, msg))
        s.quit()
        d.assert_empty('relay denied')


def test_relay_trusted_anywhere():
    with Daemon('trusted') as d:
        qid = d.send_message(BODY, rcpts=['u@other.test',
                                          'v@elsewhere.example'],
                             src=TRUSTED)
        q = d.mailq()
        check(len(q) == 1 and [r['address'] for r in q[0]['recipients']]
              == ['u@other.test', 'v@elsewhere.example'], 'mailq %r' % q)
        d.assert_stored(qid, BODY)


def test_long_local_parts_taken():
    """A VERP or SRS sender's local part passes RFC 5321's 64 octets
    (the list's bounce address carries the subscriber's); it was refused
    501 5.1.7 and the list's mail lost, where Postfix takes it.  Only
    the path's 256 octets bound it: one octet more is refused, and
    nothing of that transaction is queued."""
    verp = ('python-list-bounces+some.long.subscriber.name='
            'subdomain.example.com')
    rcpt = 'r' * 200 + '@relay.test'
    with Daemon('longlocal') as d:
        with d.session() as c:
            check(len(verp) > 64, 'local part %d octets' % len(verp))
            c.expect('MAIL FROM:<%s@lists.example.org>' % verp, 250,
                     '2.1.0')
            c.expect('RCPT TO:<%s>' % rcpt, 250, '2.1.5')
            c.expect('RCPT TO:<%s>' % ('s' * 244 + '@relay.test'),
                     501, '5.1.3')
            c.expect('DATA', 354)
            q = c.expect(stuff(BODY), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        m = d.mailq()
        check([x['id'] for x in m] == [q], 'mailq %r' % m)
        check(m[0]['sender'] == verp + '@lists.example.org',
              'sender %r' % m[0]['sender'])
        check([r['address'] for r in m[0]['recipients']] == [rcpt],
              'recipients %r' % m[0]['recipients'])
        d.assert_stored(q, BODY)


def test_bad_addresses_and_params():
    with Daemon('badaddr') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<no-closing@example.test', 501, '5.1.7')
            c.expect('MAIL FROM:<a b@example.test>', 501, '5.1.7')
            r = c.cmd('MAIL FROM:<s@example.test> FROB=1')
            check(r.code == 555 and r.enh() == '5.5.4',
                  'unknown MAIL parameter: %r' % r.text)
            c.expect('MAIL FROM:<s@example.test>', 250, '2.1.0')
            c.expect('RCPT TO:<a b@relay.test>', 501, '5.1.3')
            c.expect('RCPT TO:<@>', 501, '5.1.3')
            c.expect('RCPT TO:<>', 501, '5.1.3')
            c.expect('RCPT TO:<ok@relay.test>', 250)
            c.expect('QUIT', 221)
        d.assert_empty()


# --- command sequencing -------------------------------------------------

def test_sequence_errors():
    with Daemon('seq') as d:
        with d.connect() as c:
            c.expect(None, 220)
            c.expect('MAIL FROM:<s@example.test>', 503, '5.5.1')
            c.expect('RCPT TO:<r@relay.test>', 503, '5.5.1')
            r = c.cmd('DATA')
            check(r.code == 503, 'DATA before EHLO: %r' % r.text)
            c.expect('EHLO client.test', 250)
            c.expect('RCPT TO:<r@relay.test>', 503, '5.5.1')
            r = c.cmd('DATA')
            check(r.code == 503 and r.enh() == '5.5.1',
                  'DATA without MAIL: %r' % r.text)
            c.expect('MAIL FROM:<s@example.test>', 250)
            r = c.expect('MAIL FROM:<t@example.test>', 503, '5.5.1')
            check('nested' in r.text, 'nested MAIL text %r' % r.text)
            r = c.expect('DATA', 503, '5.5.1')
            check('need RCPT' in r.text, 'DATA without RCPT: %r' % r.text)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('RSET', 250, '2.0.0')
            r = c.cmd('DATA')
            check(r.code == 503, 'DATA after RSET: %r' % r.text)
            c.expect('RCPT TO:<r@relay.test>', 503, '5.5.1')
            c.expect('QUIT', 221)
        d.assert_empty()


def test_unknown_help_vrfy():
    with Daemon('misc') as d:
        with d.session() as c:
            c.expect('FROBNICATE now', 502, '5.5.2')
            r = c.expect('HELP', 214)
            check(r.enh() == '2.0.0', 'HELP %r' % r.text)
            ra = c.expect('VRFY root', 252)
            rb = c.expect('VRFY no-such-user-xyzzy', 252)
            check(ra.text.replace('root', 'X') ==
                  rb.text.replace('no-such-user-xyzzy', 'X'),
                  'VRFY answers differ: %r vs %r' % (ra.text, rb.text))
            check('/root' not in ra.text and 'uid' not in ra.text.lower(),
                  'VRFY leaks: %r' % ra.text)
            c.expect('NOOP', 250)
        d.assert_empty()


def test_smtp_argument_where_none_belongs():
    """RSET and DATA take no argument (RFC 5321 4.1.1.5, 4.1.1.4): 501
    5.5.4 Syntax: RSET / DATA, as Postfix 3.7 answers (RSET x was 250
    and reset the envelope, DATA x 500 5.5.2).  DATA's sequence error
    comes first, as in Postfix.  NOOP's argument is ignored (4.1.1.9);
    QUIT with one is still a goodbye, as in Postfix."""
    with Daemon('noarg') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            r = c.expect('RSET x', 501, '5.5.4')
            check(r.text == '501 5.5.4 Syntax: RSET', 'RSET x: %r' % r.text)
            c.expect('DATA x', 503, '5.5.1')
            c.expect('RCPT TO:<r@relay.test>', 250)	# MAIL survived
            r = c.expect('DATA x', 501, '5.5.4')
            check(r.text == '501 5.5.4 Syntax: DATA', 'DATA x: %r' % r.text)
            c.expect('NOOP x', 250, '2.0.0')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
            c.expect('QUIT x', 221, '2.0.0')
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())


def test_smtp_unsupported_option_named():
    """Postfix names the parameter it does not support, value and all
    (ferry said "unsupported parameter"); the name is cut to 63 bytes.
    Nothing is queued."""
    with Daemon('optname') as d:
        with d.session() as c:
            r = c.expect('MAIL FROM:<s@example.test> SIZE=1 FOO', 555,
                         '5.5.4')
            check(r.text == '555 5.5.4 Unsupported option: FOO',
                  'MAIL: %r' % r.text)
            c.expect('MAIL FROM:<s@example.test>', 250)
            r = c.expect('RCPT TO:<r@relay.test> NOTIFY=NEVER', 555,
                         '5.5.4')
            check(r.text == '555 5.5.4 Unsupported option: NOTIFY=NEVER',
                  'RCPT: %r' % r.text)
            r = c.expect('RCPT TO:<r@relay.test> X=' + 'y' * 300, 555,
                         '5.5.4')
            check(r.text == '555 5.5.4 Unsupported option: X=' + 'y' * 61,
                  'long: %r' % r.text)
            c.expect('DATA', 554, '5.5.1')
        d.assert_empty('unsupported options')


def test_commands_after_quit_ignored():
    with Daemon('quit') as d:
        with d.connect() as c:
            c.expect(None, 220)
            c.send(b'EHLO c.test\r\nQUIT\r\nMAIL FROM:<s@example.test>\r\n'
                   b'RCPT TO:<r@relay.test>\r\nDATA\r\n' + stuff(BODY))
            rs = c.replies_until_close()
            codes = [r.code for r in rs]
            check(codes == [250, 221], 'replies after QUIT: %r'
                  % [r.text for r in rs])
        d.assert_empty('commands after QUIT')


def test_http_closes():
    for req in (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
                b'POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n'):
        with Daemon('http') as d:
            with d.connect() as c:
                c.expect(None, 220)
                c.send(req)
                rs = c.replies_until_close()
                check(not any(200 <= r.code < 400 for r in rs),
                      'HTTP request %r got %r' % (req[:10],
                                                  [r.text for r in rs]))
            d.assert_empty()


def test_junk_command_limit():
    """Postfix's smtpd_junk_command_limit (100): past it each NOOP, VRFY
    or RSET counts as an error, and the tenth error ends the session
    with 421, so a loop of them cannot hold a connection slot for ever.
    HELP is not junk, as in Postfix (it counted).  A message accepted
    starts the count again, and is kept."""
    with Daemon('junkcmd') as d:
        for verb in ('NOOP', 'RSET', 'VRFY someone'):
            with d.session() as c:
                if verb == 'NOOP':
                    c.send('HELP\r\n' * 150)
                    rs = [c.reply() for _ in range(150)]
                    check(all(r.code == 214 for r in rs),
                          'HELP: %r' % rs[-1].text)
                c.send(('%s\r\n' % verb) * 100)
                rs = [c.reply() for _ in range(100)]
                check(all(r.code in (250, 252, 214) for r in rs),
                      '%s within the limit: %r' % (verb, rs[-1].text))
                c.send(('%s\r\n' % verb) * 12)
                rs = c.replies_until_close()
                check(len(rs) == 11 and rs[-1].code == 421 and
                      rs[-1].enh() == '4.7.0',
                      '%s past the limit: %r' % (verb, [r.text for r in
                                                       rs[-3:]]))
        with d.session() as c:
            c.send('RSET\r\n' * 99)
            check(all(c.reply().code == 250 for _ in range(99)),
                  'RSET within the limit')
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            qid = c.expect('Subject: j\r\n\r\nx\r\n.', 250).qid()
            c.send('RSET\r\n' * 100)
            check(all(c.reply().code == 250 for _ in range(100)),
                  'the count did not start again after a message')
            c.expect('QUIT', 221)
        check(qid in d.mailq_ids(), 'message %s not queued' % qid)


def test_binary_junk():
    with Daemon('junk') as d:
        with d.session() as c:
            c.expect(b'NOOP\x00\r\n', 500, '5.5.2')
            c.expect(b'\x00\x01\x02\xff\xfe\r\n', 500, '5.5.2')
            c.expect(b'MAIL FROM:<s@exa\x00mple.test>\r\n', 500, '5.5.2')
            c.expect('NOOP', 250)       # the session goes on
            # ten more errors: the server gives up with 421
            c.send(b'\x00junk\r\n' * 12)
            rs = c.replies_until_close()
            check(rs and rs[-1].code == 421,
                  'after many errors: %r' % [r.text for r in rs])
            check(all(r.code in (500, 421) for r in rs),
                  'junk got %r' % [r.text for r in rs])
        # random bytes, several connections: no 2xx, daemon stays up
        rnd = random.Random(1234)
        for i in range(5):
            junk = bytes(rnd.randrange(256) for _ in range(4000))
            with d.connect() as c:
                c.expect(None, 220)
                try:
                    c.send(junk + b'\r\nMAIL FROM:<s@example.test>\r\n'
                           b'RCPT TO:<r@relay.test>\r\nDATA\r\n'
                           + stuff(BODY))
                except OSError:
                    pass
                c.wait_closed(2)
                text = c.buf.decode('latin-1')
                check('queued as' not in text and '\r\n354 ' not in
                      '\r\n' + text, 'junk %d led to %r' % (i, text[:400]))
        check(d.running(), 'daemon died on junk')
        d.assert_empty('junk')
        d.send_message(BODY)


def test_client_closes_mid_data():
    with Daemon('middata') as d:
        c = d.session()
        c.expect('MAIL FROM:<s@example.test>', 250)
        c.expect('RCPT TO:<r@relay.test>', 250)
        c.expect('DATA', 354)
        c.send(b'Subject: cut\r\n\r\n' + b'partial line\r\n' * 500)
        c.close()
        deadline = time.time() + 5
        while 'lost connection after DATA' not in d.log_text() and \
                time.time() < deadline:
            time.sleep(0.1)
        check('lost connection after DATA' in d.log_text(),
              'no "lost connection after DATA" log line:\n' + d.log_tail())
        d.assert_empty('client closed mid-DATA')
        tmp = os.path.join(d.queue_dir, 'tmp')
        left = os.listdir(tmp) if os.path.isdir(tmp) else []
        check(left == [], 'tmp/ keeps the aborted message: %r' % left)
        d.send_message(BODY)


# --- limits ---------------------------------------------------------------

def test_command_line_limits():
    with Daemon('cmdlen') as d:
        with d.session() as c:
            # 512 octets with CRLF is the limit (RFC 5321 4.5.3.1.4)
            c.expect('NOOP ' + 'x' * (510 - 5), 250)
            c.expect('NOOP ' + 'x' * (511 - 5), 500, '5.5.0')
            c.expect('NOOP', 250)
            r = c.expect('MAIL FROM:<' + 'a' * 10000 + '@example.test>',
                         500, '5.5.0')
            check('too long' in r.text, 'reply %r' % r.text)
            # the long MAIL did not start a transaction
            c.expect('RCPT TO:<r@relay.test>', 503, '5.5.1')
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<' + 'r' * 600 + '@relay.test>', 500, '5.5.0')
            c.expect('DATA', 503)
            c.expect('QUIT', 221)
        d.assert_empty('long command lines')


def test_data_line_limit():
    with Daemon('datalen') as d:
        for n in (999, 10000):		# +CRLF: 1001 and 10002 octets
            with d.session() as c:
                c.expect('MAIL FROM:<s@example.test>', 250)
                c.expect('RCPT TO:<r@relay.test>', 250)
                c.expect('DATA', 354)
                body = b'Subject: long\r\n\r\n' + b'y' * n + b'\r\nend\r\n'
                r = c.expect(stuff(body), 500, '5.5.0')
                check('too long' in r.text, 'reply %r' % r.text)
            d.assert_empty('data line of %d octets' % (n + 2))


def test_size_limit_at_mail():
    with Daemon('sizemail', message_size_limit='100000') as d:
        with d.session() as c:
            r = c.expect('MAIL FROM:<s@example.test> SIZE=100001', 552,
                         '5.3.4')
            r = c.cmd('MAIL FROM:<s@example.test> '
                      'SIZE=99999999999999999999999999')
            check(r.code in (552, 555, 501), 'overflowing SIZE: %r'
                  % r.text)
            c.expect('MAIL FROM:<s@example.test> SIZE=1000', 250, '2.1.0')
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())


def test_size_limit_while_reading():
    with Daemon('sizedata', message_size_limit='100000') as d:
        body = b'Subject: big\r\n\r\n' + (b'z' * 98 + b'\r\n') * 1500
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.expect(stuff(body), 552, '5.3.4')
            # a small message in the same session still works
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        check(d.mailq_ids() == [qid], 'queue %r (oversized one queued?)'
              % d.mailq_ids())
        d.assert_stored(qid, BODY)


def test_max_recipients():
    with Daemon('maxrcpt', max_recipients='5') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            for i in range(5):
                c.expect('RCPT TO:<r%d@relay.test>' % i, 250, '2.1.5')
            for i in range(5, 7):
                c.expect('RCPT TO:<r%d@relay.test>' % i, 452, '4.5.3')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        q = d.mailq()
        check(len(q) == 1, 'mailq %r' % q)
        check([r['address'] for r in q[0]['recipients']] ==
              ['r%d@relay.test' % i for i in range(5)],
              'kept recipients %r' % q[0]['recipients'])
        d.assert_stored(qid, BODY)


def test_max_recipients_counts_repeats():
    """A repeated RCPT is kept once but counts against max_recipients,
    as Postfix counts RCPT commands: before, the same address sent
    without end got 250 each time and held the session (each command
    started smtpd_timeout again).  The sixth of five here is 452, and
    the message keeps one copy of the address."""
    with Daemon('maxrepeat', max_recipients='5') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            for _ in range(5):
                c.expect('RCPT TO:<r@relay.test>', 250, '2.1.5')
            c.expect('RCPT TO:<r@relay.test>', 452, '4.5.3')
            c.expect('RCPT TO:<other@relay.test>', 452, '4.5.3')
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid and
              [r['address'] for r in q[0]['recipients']] ==
              ['r@relay.test'], 'mailq %r' % q)
        d.assert_stored(qid, BODY)


def test_recipient_overshoot_limit():
    """Postfix's smtpd_recipient_overshoot_limit (1000): a transaction's
    first 1000 RCPTs past max_recipients are only 452, each one after
    counts as an error, and the session's tenth error is 421.  A client
    that pipelines all its recipients (1000 over) and sends the rest in
    the next transaction gets both messages through; the count starts
    again with each transaction and shares the limit with other errors."""
    def txn(n_over):
        return (b'MAIL FROM:<s@example.test>\r\n'
                b'RCPT TO:<r0@relay.test>\r\nRCPT TO:<r1@relay.test>\r\n' +
                b''.join(b'RCPT TO:<o%d@relay.test>\r\n' % i
                         for i in range(n_over)) + b'DATA\r\n')

    with Daemon('overshoot', max_recipients='2') as d:
        with d.session() as c:
            qids = []
            for _ in range(2):
                c.send(txn(1000))
                rs = [c.reply() for _ in range(3 + 1000 + 1)]
                codes = [r.code for r in rs]
                check(codes == [250, 250, 250] + [452] * 1000 + [354],
                      '1000 over: %r' % sorted(set(codes)))
                check(all(r.enh() == '4.5.3' for r in rs[3:1003]),
                      'overshoot replies %r' % rs[3].text)
                qids.append(c.expect(stuff(BODY), 250).qid())
            # Three errors first: then the 1007th over is the tenth.
            c.send(b'XYZZY\r\n' * 3 + txn(1008))
            rs = c.replies_until_close()
            codes = [r.code for r in rs]
            check(codes == [502] * 3 + [250] * 3 + [452] * 1007 + [421],
                  'past the limit: %d replies, %r ... %r'
                  % (len(codes), codes[:7], codes[-3:]))
            check(rs[-2].enh() == '4.5.3' and rs[-1].enh() == '4.7.0' and
                  'too many errors' in rs[-1].text, 'last %r' % rs[-2:])
        d.wait_log(r'too many errors after RCPT from unknown\[127\.0\.0\.1\]')
        check(sorted(d.mailq_ids()) == sorted(qids), 'queue %r, sent %r'
              % (d.mailq_ids(), qids))
        for qid in qids:
            d.assert_stored(qid, BODY)
        check([[r['address'] for r in m['recipients']] for m in d.mailq()]
              == [['r0@relay.test', 'r1@relay.test']] * 2,
              'recipients %r' % d.mailq())


def test_recipients_past_the_queue_file_refused_452():
    """A recipient the queue file could not hold (QUEUE_MAX_RCPT, 1000;
    or 63 KB of R records, which 300 long addresses fill first) gets the
    452 4.5.3 of max_recipients, so the client sends it in another
    transaction.  It was a 250, then 451 4.3.0 at DATA for the whole
    message, every time the client tried again: max_recipients above
    1000 is taken (Postfix's smtpd_recipient_limit is 1000 by default)."""
    def txn(c, rcpts):
        c.send('MAIL FROM:<s@example.test>\r\n' +
               ''.join('RCPT TO:<%s>\r\n' % r for r in rcpts) +
               'DATA\r\n')
        c.expect(None, 250, '2.1.0')
        rs = [c.reply() for _ in rcpts]
        c.expect(None, 354)
        ok = [r for r, x in zip(rcpts, rs) if x.code == 250]
        over = [x for x in rs if x.code != 250]
        check(rs[:len(ok)] == [x for x in rs if x.code == 250] and
              all(x.code == 452 and x.enh() == '4.5.3' for x in over),
              'RCPT replies: %r' % sorted(set(x.text for x in rs)))
        return ok, c.expect(stuff(BODY), 250, '2.0.0').qid()

    many = ['r%d@relay.test' % i for i in range(1005)]
    long = ['r%03d%s@relay.test' % (i, 'x' * 236) for i in range(300)]
    with Daemon('rcptroom', max_recipients='1200') as d:
        with d.session() as c:
            ok1, q1 = txn(c, many)
            check(ok1 == many[:1000], '%d of 1005 taken' % len(ok1))
            ok2, q2 = txn(c, long)
            check(250 <= len(ok2) < 300 and ok2 == long[:len(ok2)],
                  '%d of 300 long ones taken' % len(ok2))
            ok3, q3 = txn(c, long[len(ok2):])	# the rest, as a client does
            check(ok3 == long[len(ok2):], 'the rest: %d' % len(ok3))
        q = {m['id']: [r['address'] for r in m['recipients']]
             for m in d.mailq()}
        check(q == {q1: ok1, q2: ok2, q3: ok3}, 'queue %r' %
              {k: len(v) for k, v in q.items()})
        for qid in (q1, q2, q3):
            d.assert_stored(qid, BODY)


def _wait_accepting(d, src, timeout=3.0, smtps=False):
    """Open connections (on 465 when smtps, where a refusal is a closed
    handshake) until one is greeted with 220 (the daemon may take a
    moment to notice a close)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        c = None
        try:
            c = d.connect_smtps(src) if smtps else d.connect(src)
            r = c.reply()
            if r.code == 220:
                return c
            last = r.text
        except (EOFError, TestFailure, OSError) as e:
            last = str(e)
        if c is not None:
            c.close()
        time.sleep(0.1)
    raise TestFailure('no 220 after a slot was freed; last: %r' % last)


def _expect_refused(d, src):
    with d.connect(src) as c:
        r = c.reply()
        check(r.code == 421 and r.enh() == '4.7.0',
              'connection over the limit from %s: %r' % (src, r.text))
        check(c.wait_closed(), 'not closed after 421')


def test_max_connections_per_client():
    with Daemon('percli', max_connections='10',
                max_connections_per_client='2') as d:
        held = [d.connect(), d.connect()]
        for c in held:
            c.expect(None, 220)
        _expect_refused(d, TRUSTED)
        other = d.connect(UNTRUSTED)
        other.expect(None, 220)
        held[0].close()
        c = _wait_accepting(d, TRUSTED)
        c.expect('QUIT', 221)
        c.close()
        for c in held[1:] + [other]:
            c.expect('QUIT', 221)
            c.close()


def test_max_connections_421_with_long_hostname():
    """The 421 to a connection over either limit names our hostname and
    the client's address; a long (valid) hostname must not turn it into
    a close without a word."""
    host = 'mx-outbound-01.' + 'a-rather-long-subdomain-label.' * 3 + \
        'example.test'
    with Daemon('longhost', hostname=host, max_connections='10',
                max_connections_per_client='1') as d:
        held = d.connect()
        r = held.expect(None, 220)
        check(host in r.text, 'banner %r' % r.text)
        with d.connect() as c:
            try:
                r = c.reply()
            except EOFError:
                raise TestFailure('over max_connections_per_client: closed '
                                  'without a 421 (hostname of %d octets)'
                                  % len(host))
            check(r.code == 421 and r.enh() == '4.7.0' and
                  r.text == '421 4.7.0 %s Error: too many connections '
                  'from %s' % (host, TRUSTED), 'over the limit: %r' % r.text)
            check(c.wait_closed(), 'not closed after 421')
        held.expect('QUIT', 221)
        held.close()
    with Daemon('longhost2', hostname=host, max_connections='1',
                max_connections_per_client='10') as d:
        held = d.connect()
        held.expect(None, 220)
        with d.connect(UNTRUSTED) as c:
            try:
                r = c.reply()
            except EOFError:
                raise TestFailure('over max_connections: closed without '
                                  'a 421')
            check(r.text == '421 4.7.0 %s Error: too many connections'
                  % host, 'over max_connections: %r' % r.text)
        held.close()


def test_max_connections():
    with Daemon('maxconn', max_connections='3',
                max_connections_per_client='10') as d:
        held = []
        for ip in ('127.0.0.1', '127.0.0.2', '127.0.0.3'):
            c = d.connect(ip)
            c.expect(None, 220)
            held.append(c)
        _expect_refused(d, '127.0.0.4')
        held[0].close()
        c = _wait_accepting(d, '127.0.0.5')
        c.close()
        for c in held[1:]:
            c.close()


def test_max_connections_local_and_network_apart():
    """The local socket (any local user may connect) and the network have
    max_connections each.  Local sessions took the slots: three idle ones
    held every TCP client at 421 for smtpd_timeout, over and over, and
    local sessions had no limit at all (the daemon's fds)."""
    with Daemon('maxlocal', max_connections='3') as d:
        held = []
        for _ in range(3):
            u = socket.socket(socket.AF_UNIX)
            u.settimeout(10)
            u.connect(d.cfg['local_socket'])
            check(u.recv(200).startswith(b'220'), 'local banner')
            held.append(u)
        c = d.connect('127.0.0.1')
        c.expect(None, 220)
        c.expect('QUIT', 221)
        c.close()
        u = socket.socket(socket.AF_UNIX)
        u.settimeout(10)
        u.connect(d.cfg['local_socket'])
        got = u.recv(200)
        u.close()
        check(got.startswith(b'421 4.7.0 ') and b'too many connections'
              in got, 'a fourth local session: %r' % got)
        for u in held:
            u.close()


def test_max_connections_smtps_closed_without_plaintext():
    """Over max_connections on 465 (implicit TLS) the connection is closed
    without a byte: a plaintext 421 there would be a TLS protocol error
    to the client.  The refusal is logged, and once a slot is free 465
    serves again."""
    with Daemon('smtpsfull', tls=True, smtps=True, max_connections='1',
                max_connections_per_client='10') as d:
        held = d.connect('127.0.0.1')
        held.expect(None, 220)
        s = socket.create_connection(('127.0.0.1', d.smtps_port),
                                     timeout=10,
                                     source_address=('127.0.0.2', 0))
        try:
            got = s.recv(512)
        except ConnectionResetError:
            got = b''
        finally:
            s.close()
        check(got == b'', '465 over the limit sent %r' % got)
        d.wait_log(r'connect from unknown\[127\.0\.0\.2\]: too many '
                   r'connections \(max_connections = 1\)')
        held.expect('QUIT', 221)
        held.close()
        c = _wait_accepting(d, '127.0.0.3', timeout=10, smtps=True)
        c.expect('QUIT', 221)
        c.close()
        d.assert_empty('465 refusal')


def test_lost_connection_names_last_command():
    """Postfix's "lost connection after X" names what the client did last
    (fail2ban's ddos mode reads it): CONNECT before any command, then the
    last command's verb, END-OF-MESSAGE after the final dot; the same
    for "timeout after"."""
    cases = (
        ('CONNECT', []),
        ('EHLO', ['EHLO client.test']),
        ('MAIL', ['EHLO client.test', 'MAIL FROM:<s@example.test>']),
        ('RSET', ['EHLO client.test', 'MAIL FROM:<s@example.test>',
                  'RSET']),
        ('UNKNOWN', ['EHLO client.test', 'XYZZY']),
        ('NOOP', ['EHLO client.test', 'MAIL FROM:<s@example.test>',
                  'RCPT TO:<r@relay.test>', 'NOOP']),
        ('END-OF-MESSAGE', ['EHLO client.test', 'MAIL FROM:<s@example.test>',
                            'RCPT TO:<r@relay.test>', 'DATA',
                            'Subject: x\r\n\r\nbody\r\n.']),
        ('DATA', ['EHLO client.test', 'DATA']),		# refused
        ('UNKNOWN', ['EHLO client.test', 'NOOP\x01']),	# bad syntax
    )
    with Daemon('lostafter', smtpd_timeout='2s') as d:
        for i, (want, cmds) in enumerate(cases):
            c = d.connect()
            c.expect(None, 220)
            for line in cmds:
                c.send(line + '\r\n')
                c.reply()
            c.close()

            def lost():
                return re.findall(r'lost connection after (\S+) from ',
                                  d.log_text())
            wait_for(lambda: len(lost()) > i, 5, 'lost-connection line %d '
                     'after %r' % (i + 1, cmds))
            got = lost()
            check(len(got) == i + 1 and got[-1] == want,
                  'after %r: logged %r, want %r' % (cmds, got[i:], want))
        with d.session() as c:		# EHLO, then silence
            r = c.reply(timeout=10)
            check(r.code == 421, 'idle reply %r' % r.text)
        d.wait_log(r'timeout after EHLO from ')
        q = d.wait_queue(1)
        check(len(q) == 1, 'queued: %r (only the message ended with a dot)'
              % q)


def test_command_timeout():
    with Daemon('cmdtmo', smtpd_timeout='2s') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            t0 = time.time()
            r = c.reply(timeout=10)
            el = time.time() - t0
            check(r.code == 421 and r.enh() == '4.4.2',
                  'idle reply %r' % r.text)
            check(1.5 <= el <= 6, 'timeout after %.1fs, want ~2s' % el)
            check(c.wait_closed(), 'not closed after timeout')
        d.assert_empty('command timeout')


def test_data_timeout_whole_phase():
    """smtpd_data_timeout bounds the whole DATA phase: a client that
    trickles a line every 0.7s (well under smtpd_timeout, so only the
    whole-phase limit can end it) is still cut off."""
    with Daemon('datatmo', smtpd_timeout='6s',
                smtpd_data_timeout='3s') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            t0 = time.time()
            r = None
            while time.time() - t0 < 12:
                try:
                    c.send(b'trickle\r\n')
                except OSError:
                    break
                try:
                    r = c.reply(timeout=0.7)
                    break
                except TestFailure:
                    continue
                except EOFError:
                    break
            el = time.time() - t0
            check(r is not None, 'no reply to a trickling DATA after %.1fs'
                  % el)
            check(r.code == 421 and r.enh() == '4.4.2', 'reply %r'
                  % r.text)
            check(2.5 <= el <= 7, 'data timeout after %.1fs, want ~3s'
                  % el)
            check(c.wait_closed(), 'not closed after data timeout')
        d.assert_empty('data timeout')


def test_data_idle_timeout():
    """A client that stops sending inside DATA gets 421 4.4.2 after
    smtpd_timeout (2s here), well before the whole-phase
    smtpd_data_timeout (8s) would end it."""
    with Daemon('dataidle', smtpd_timeout='2s',
                smtpd_data_timeout='8s') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.send(b'Subject: stalled\r\n\r\nsome\r\n')
            t0 = time.time()
            r = c.reply(timeout=12)
            el = time.time() - t0
            check(r.code == 421 and r.enh() == '4.4.2', 'reply %r' % r.text)
            check(1.5 <= el <= 5, 'data idle timeout after %.1fs, want ~2s'
                  % el)
            check(c.wait_closed(), 'not closed after data timeout')
        d.assert_empty('data idle timeout')


# --- SMTP smuggling -------------------------------------------------------

SMUGGLED = (b'MAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@relay.test>\r\n'
            b'DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n')

SMUGGLE_ENDS = {
    'lf_dot_lf': b'\n.\n',
    'cr_dot_cr': b'\r.\r',
    'cr_dot_lf': b'\r.\n',
    'crlf_dot_lf': b'\r\n.\n',
    'lf_dot_crlf': b'\n.\r\n',
    'cr_dot_crlf': b'\r.\r\n',
    'crlf_dot_cr': b'\r\n.\r',
    'bare_lf': b'\nX\r\n',
    'bare_cr': b'\rX\r\n',
}


def _smuggle(tag, end):
    with Daemon('smuggle-' + tag) as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            try:
                c.send(b'Subject: first\r\n\r\nbody' + end + SMUGGLED
                       + b'tail\r\n.\r\nQUIT\r\n')
            except OSError:
                pass
            rs = c.replies_until_close()
        texts = [r.text for r in rs]
        check(rs and rs[0].code == 521 and rs[0].enh() == '5.5.2',
              '%s: expected 521 5.5.2 then close, got %r' % (tag, texts))
        check(not any(200 <= r.code < 400 for r in rs),
              '%s: positive reply after the smuggle attempt: %r'
              % (tag, texts))
        d.assert_empty('smuggling via %r' % end)


def _make_smuggle_test(tag, end):
    def t():
        _smuggle(tag, end)
    t.__name__ = 'test_smuggle_' + tag
    return t


for _tag, _end in SMUGGLE_ENDS.items():
    globals()['test_smuggle_' + _tag] = _make_smuggle_test(_tag, _end)


def test_bare_lf_in_command():
    for line, what in ((b'EHLO c.test\nMAIL FROM:<s@example.test>\r\n',
                        'LF'),
                       (b'NOOP\rMAIL FROM:<s@example.test>\r\n', 'CR')):
        with Daemon('barecmd') as d:
            with d.connect() as c:
                c.expect(None, 220)
                c.send(line)
                rs = c.replies_until_close()
                check(rs and rs[0].code == 521 and rs[0].enh() == '5.5.2',
                      'bare %s in a command: %r' % (what,
                                                    [r.text for r in rs]))
                check('bare <%s>' % what in rs[0].text, 'text %r'
                      % rs[0].text)
            d.assert_empty()


# --- log lines (DESIGN: Postfix's shape, for pflogsumm and fail2ban) -------

def test_log_lines_postfix_shape():
    with Daemon('logshape') as d:
        qid = d.send_message(BODY)
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<u@other.test>', 554)
            c.expect('QUIT', 221)
        time.sleep(0.3)
        log = d.log_text()
        stamp = r'^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ferry/smtpd\[\d+\]: '
        for what, pat in (
                ('connect', stamp + r'connect from unknown\[127\.0\.0\.1\]$'),
                ('client', stamp + qid + r': client=unknown\[127\.0\.0\.1\]'),
                ('disconnect', stamp +
                 r'disconnect from unknown\[127\.0\.0\.1\]'),
                # fail2ban's postfix filter keys on this shape
                ('reject', stamp + r'NOQUEUE: reject: RCPT from '
                 r'unknown\[127\.0\.0\.2\]: 554 5\.7\.1 <u@other\.test>: '
                 r'Relay access denied; from=<s@example\.test> '
                 r'to=<u@other\.test> proto=ESMTP helo=<client\.test>')):
            check(re.search(pat, log, re.M), 'no %s line like %r in log:\n%s'
                  % (what, pat, d.log_tail(30)))


def test_rset_and_lowercase_verbs():
    """RSET drops the envelope: the message carries only what came after;
    verbs are case-insensitive (RFC 5321 2.4)."""
    with Daemon('rset') as d:
        with d.session() as c:
            c.expect('mail from:<first@example.test>', 250, '2.1.0')
            c.expect('rcpt to:<dropped@relay.test>', 250, '2.1.5')
            c.expect('rset', 250)
            c.expect('Mail From:<second@example.test>', 250)
            c.expect('Rcpt To:<kept@relay.test>', 250)
            c.expect('data', 354)
            qid = c.expect(stuff(BODY), 250).qid()
            c.expect('quit', 221)
        q = d.mailq()
        check(len(q) == 1 and q[0]['sender'] == 'second@example.test' and
              [r['address'] for r in q[0]['recipients']] ==
              ['kept@relay.test'], 'envelope after RSET: %r' % q)
        out = d.assert_stored(qid, BODY)
        head = out[:len(out) - len(BODY)]
        check(b'by ' + HOSTNAME.encode() in head and b'127.0.0.1' in head,
              'Received: header lacks "by %s" or the client IP: %s'
              % (HOSTNAME, short(head)))


def test_concurrent_sessions():
    """20 clients x 10 messages at once: every one acknowledged is queued
    byte for byte under its own ID (the group commit keeps them apart)."""
    with Daemon('concurrent', max_connections='40',
                max_connections_per_client='40') as d:
        results, errors = {}, []

        def client(k):
            try:
                with d.session() as c:
                    for j in range(10):
                        body = (b'Subject: c%d-%d\r\n\r\n' % (k, j)
                                + (b'client %d message %d\r\n' % (k, j))
                                * (1 + (k * 37 + j * 101) % 400))
                        c.send('MAIL FROM:<c%d@example.test>\r\n'
                               'RCPT TO:<r%d-%d@relay.test>\r\nDATA\r\n'
                               % (k, k, j))
                        for code in (250, 250, 354):
                            r = c.reply()
                            check(r.code == code, 'client %d: %r'
                                  % (k, r.text))
                        r = c.expect(stuff(body), 250)
                        results[r.qid()] = (k, j, body)
                    c.expect('QUIT', 221)
            except Exception as e:
                errors.append('client %d: %s' % (k, e))

        ts = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        check(not errors, '; '.join(errors[:5]))
        check(len(results) == 200, '%d distinct queue IDs for 200 messages'
              % len(results))
        q = {m['id']: m for m in d.mailq()}
        check(set(q) == set(results), 'mailq has %d, acked %d'
              % (len(q), len(results)))
        for qid, (k, j, body) in results.items():
            check([r['address'] for r in q[qid]['recipients']] ==
                  ['r%d-%d@relay.test' % (k, j)], '%s: envelope mixed up: '
                  '%r' % (qid, q[qid]))
            d.assert_stored(qid, body)


def test_connection_slots_not_leaked():
    """Connections that vanish (RST at any point) give their slot back."""
    with Daemon('slots', max_connections='10',
                max_connections_per_client='2') as d:
        for i in range(30):
            c = d.connect()
            if i % 3:		# 220 or, while slots free up, 421
                c.reply()
            if i % 3 == 2:
                c.send(b'EHLO x\r\nMAIL FROM:<a@example.test>\r\n')
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack('ii', 1, 0))
            c.close()
        time.sleep(0.5)
        a = _wait_accepting(d, TRUSTED)
        b = _wait_accepting(d, TRUSTED)
        _expect_refused(d, TRUSTED)
        a.close()
        b.close()


# --- disk space -----------------------------------------------------------

def test_queue_space_refused_before_full():
    """With the queue on a 3 MB file system, a MAIL whose SIZE= would leave
    less than ferry's reserve gets 452 4.3.1 (Postfix's "Insufficient
    system storage"); a small message is still accepted and stored."""
    import subprocess as sp
    d = Daemon('space', message_size_limit='10M')
    mnt = d.queue_dir
    os.makedirs(mnt, exist_ok=True)
    r = sp.run(['mount', '-t', 'tmpfs', '-o', 'size=3m,mode=0755', 'tmpfs',
                mnt], capture_output=True)
    check(r.returncode == 0, 'cannot mount a tmpfs for the test: %r'
          % r.stderr)
    try:
        with d:
            with d.session() as c:
                c.expect('MAIL FROM:<s@example.test> SIZE=2500000', 452,
                         '4.3.1')
                c.expect('MAIL FROM:<s@example.test> SIZE=1000', 250)
                c.expect('RCPT TO:<r@relay.test>', 250)
                c.expect('DATA', 354)
                body = b'Subject: small\r\n\r\nfits\r\n'
                qid = c.expect(stuff(body), 250, '2.0.0').qid()
                c.expect('QUIT', 221)
            d.assert_stored(qid, body)
    finally:
        sp.run(['umount', '-l', mnt])


# --- what a hunt found (each fails against the code before its fix) -------

def test_stuffed_998_octet_line_accepted():
    """RFC 5321 4.5.3.1.6: the 1000-octet line limit leaves out the dot
    added for transparency, so ".." and 997 more octets is a legal
    998-octet line.  It was refused (500 5.5.0) and the message lost,
    whether the line came whole or its first 1000 octets came first."""
    with Daemon('stuffed998') as d:
        line = b'.' + b'.' + b'x' * 997 + b'\r\n'	# 1001 on the wire
        for split in (False, True):
            with d.session() as c:
                c.expect('MAIL FROM:<s@example.test>', 250)
                c.expect('RCPT TO:<r@relay.test>', 250)
                c.expect('DATA', 354)
                head = b'Subject: long\r\n\r\n'
                if split:
                    c.send(head + line[:1000])
                    time.sleep(0.2)
                    c.send(line[1000:] + b'.\r\n')
                else:
                    c.send(head + line + b'.\r\n')
                r = c.expect(None, 250)
                body = d.cat(r.qid())
                check(b'\r\n.' + b'x' * 997 + b'\r\n' in body or
                      b'\n.' + b'x' * 997 + b'\n' in body,
                      'the line, unstuffed, is not in %s' % short(body))
        with d.session() as c:		# one octet more is still too long
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.send(b'\r\n..' + b'x' * 998 + b'\r\n.\r\n')
            c.expect(None, 500, '5.5.0')


def _stored(d, c):
    """One message over the greeted session c; what the queue holds."""
    c.expect('MAIL FROM:<s@example.test>', 250)
    c.expect('RCPT TO:<r@relay.test>', 250)
    c.expect('DATA', 354)
    return d.cat(c.expect(stuff(b'Subject: h\r\n\r\nx\r\n'), 250).qid())


def test_helo_name_first_word_printable():
    """The HELO name is the argument's first word, as Postfix splits it:
    "EHLO  name" (two spaces) was taken as an empty name and wrote
    "Received: from  (unknown ..." into the message.  An argument of
    blanks only is a syntax error naming the verb the client used; bytes
    that would break the header (8-bit, parentheses) become '?'."""
    with Daemon('heloword') as d:
        with d.connect() as c:
            c.expect(None, 220)
            c.expect('EHLO  leadingspace', 250)
            body = _stored(d, c)
            check(re.search(rb'Received: from leadingspace \(', body),
                  'Received: %s' % short(body))
            r = c.expect('EHLO    ', 501, '5.5.2')
            check('Syntax: EHLO hostname' in r.text, 'EHLO: %r' % r.text)
            r = c.expect('HELO', 501, '5.5.2')
            check('Syntax: HELO hostname' in r.text, 'HELO: %r' % r.text)
            c.send(b'EHLO a(b\xe9\r\n')
            check(c.reply().code == 250, 'EHLO with 8-bit and a parenthesis')
            body = _stored(d, c)
            check(re.search(rb'Received: from a\?b\? \(', body),
                  'Received: %s' % short(body))


def test_postmaster_taken_from_anyone():
    """RFC 5321 4.5.1: <postmaster> without a domain MUST be accepted; an
    untrusted client got 554 Relay access denied.  Only the bare form:
    postmaster@elsewhere is still relaying."""
    with Daemon('postmaster') as d:
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<Postmaster>', 250, '2.1.5')
            c.expect('RCPT TO:<postmaster@elsewhere.test>', 554, '5.7.1')
            c.expect('DATA', 354)
            qid = c.expect(stuff(b'Subject: pm\r\n\r\nx\r\n'), 250).qid()
        q = [m for m in d.mailq() if m['id'] == qid]
        check(q and [r['address'].lower() for r in q[0]['recipients']] ==
              ['postmaster@%s' % HOSTNAME.lower()], 'mailq %r' % q)


def test_refusals_and_junk_count_as_errors():
    """As in Postfix, a refused relaying attempt counts as an error, and
    past 100 NOOP/VRFY/RSET (smtpd_junk_command_limit) so does each one:
    a client can neither probe recipients nor hold its slot for ever.
    A message accepted starts the junk count again.  VRFY without an
    argument is a syntax error (501 5.5.4), as in Postfix."""
    with Daemon('junk') as d:
        with d.session(src=UNTRUSTED) as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            for i in range(9):
                c.expect('RCPT TO:<v%d@elsewhere.test>' % i, 554, '5.7.1')
            r = c.cmd('RCPT TO:<v9@elsewhere.test>')
            check(r.code == 554, 'the 10th: %r' % r.text)
            r = c.reply()
            check(r.code == 421 and 'too many errors' in r.text,
                  'after 10 refused RCPTs: %r' % r.text)
            c.wait_closed()
        with d.session() as c:
            c.expect('VRFY', 501, '5.5.4')
            for i in range(60):
                c.expect('NOOP', 250)
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.expect(stuff(b'Subject: j\r\n\r\nx\r\n'), 250)
            for i in range(100):		# counted from the message
                c.expect('NOOP', 250)
            for i in range(8):		# 1 error so far (the VRFY)
                c.expect('NOOP', 250)
            c.send(b'NOOP\r\n')
            r = c.reply()
            check(r.code == 250, 'NOOP %r' % r.text)
            r = c.reply()
            check(r.code == 421 and 'too many errors' in r.text,
                  'after 109 NOOPs: %r' % r.text)
            c.wait_closed()


def test_size_refusals_count_as_errors():
    """MAIL with a SIZE= over message_size_limit is a client error, as in
    Postfix (mail_cmd() fails): the tenth is 421 too many errors.  It was
    never counted, so a client could repeat it, and its NOQUEUE line, for
    ever on one connection.  Nothing is queued."""
    with Daemon('sizeloop', message_size_limit='1000') as d:
        with d.session(src=UNTRUSTED) as c:
            c.send('MAIL FROM:<s@example.test> SIZE=1001\r\n' * 12)
            rs = c.replies_until_close()
            check([r.code for r in rs] == [552] * 10 + [421] and
                  rs[0].enh() == '5.3.4' and 'too many errors' in rs[-1].text,
                  'replies %r' % [r.text for r in rs])
        d.wait_log(r'too many errors after MAIL from unknown\[127\.0\.0\.2\]')
        d.assert_empty('SIZE refused')


def test_8bit_sender_without_smtputf8_worded_as_postfix():
    """An 8-bit sender without SMTPUTF8 gets Postfix's 553 5.6.7 words;
    the reply used to end in an empty address (the check emptied it)."""
    with Daemon('utf8word') as d:
        with d.session() as c:
            c.send('MAIL FROM:<j\u00e9@example.test>\r\n'.encode())
            r = c.reply()
            check(r.code == 553 and r.enh() == '5.6.7' and
                  r.text.endswith('Must declare SMTPUTF8 to send unicode '
                                  'address'), 'reply %r' % r.text)


def test_received_says_utf8smtp():
    """RFC 6531 section 3.7.3: the Received: line of an SMTPUTF8
    transaction says "with UTF8SMTP"; the next, plain one "with ESMTP"
    (it said ESMTP for both)."""
    with Daemon('utf8recv') as d:
        ids = []
        with d.session() as c:
            for param, rcpt in ((' SMTPUTF8', 'j\u00e9@relay.test'),
                                ('', 'r@relay.test')):
                c.expect('MAIL FROM:<s@example.test>%s' % param, 250)
                c.send(('RCPT TO:<%s>\r\n' % rcpt).encode())
                check(c.reply().code == 250, 'RCPT %r' % rcpt)
                c.expect('DATA', 354)
                ids.append(c.expect(stuff(b'Subject: u\r\n\r\nx\r\n'),
                                    250).qid())
        # After HELO no name in the registry fits: SMTP, not "UTF8MTP".
        with d.connect() as c:
            c.expect(None, 220)
            c.expect('HELO client.test', 250)
            c.expect('MAIL FROM:<s@example.test> SMTPUTF8', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            ids.append(c.expect(stuff(b'Subject: h\r\n\r\nx\r\n'),
                                250).qid())
        for qid, proto in zip(ids, (b'UTF8SMTP', b'ESMTP', b'SMTP')):
            out = d.cat(qid)
            check(re.search(rb'\tby \S+ \(ferry\) with %s id ' % proto,
                            out), '%s: want with %s: %s'
                  % (qid, proto.decode(), short(out, 400)))


def test_received_local_and_network_forms():
    """ferry's own Received: field, whole: over the network "from HELO
    (unknown [IP])" with the protocol; from the local socket (sendmail)
    only "by HOST (ferry, from userid N)", with no peer, TLS or protocol
    part (hdr_received() takes those only for the network form)."""
    host = re.escape(HOSTNAME.encode())
    with Daemon('recvforms') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            net = c.expect(stuff(b'Subject: n\r\n\r\nx\r\n'), 250).qid()
        out = d.cat(net)
        check(re.match(rb'Received: from client\.test '
                       rb'\(unknown \[127\.0\.0\.1\]\)\r\n'
                       rb'\tby ' + host + rb' \(ferry\) with ESMTP id ' +
                       net.encode() + rb'\r\n\tfor <r@relay\.test>; '
                       rb'[^\r\n]+\r\nSubject: n\r\n', out),
              'network Received: %s' % short(out, 400))
        p = d.cli('sendmail', '-f', 's@example.test', 'r@relay.test',
                  user='nobody' if os.geteuid() == 0 else None,
                  input=b'Subject: l\n\nx\n')
        check(p.returncode == 0, 'sendmail: exit %d, stderr %s'
              % (p.returncode, short(p.stderr, 400)))
        q = [m['id'] for m in d.wait_queue(2)]
        check(len(q) == 2 and net in q, 'mailq %r' % q)
        loc = [i for i in q if i != net][0]
        out = d.cat(loc)
        check(re.match(rb'Received: by ' + host + rb' \(ferry, from userid '
                       rb'\d+\)\r\n\tid ' + loc.encode() +
                       rb'\r\n\tfor <r@relay\.test>; [^\r\n]+\r\n'
                       rb'(?!\t)', out),
              'local Received: %s' % short(out, 400))
        check(b'unknown [' not in out.split(b'\r\n\r\n')[0] and
              b' with ' not in out.split(b'\r\n\r\n')[0],
              'local Received: names a peer or protocol: %s'
              % short(out, 400))


def test_first_line_white_space_not_our_header():
    """A message whose first line starts with white space: that line
    would continue the Received: field ferry writes above it (a body
    line turned into part of ferry's own trace field).  Postfix's smtpd
    puts an empty line before it; so does ferry, relayed (the message
    is the sent one after Received: and that line) and submitted (after
    the Date and Message-ID it adds, as for any header ended by a line
    that is no field).  A continuation after a field is still one."""
    user, pw = 'alice', 'correct horse battery'
    body = b'\tindented first line\r\nSubject: no header now\r\n\r\nx\r\n'
    folded = b'Subject: a\r\n folded\r\n\tagain\r\n\r\nx\r\n'
    with Daemon('wsfirst', users={user: pw},
                auth_over_plaintext='yes') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            relayed = c.expect(stuff(body), 250).qid()
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            kept = c.expect(stuff(folded), 250).qid()
        with d.session(UNTRUSTED) as c:
            c.expect('AUTH PLAIN ' + auth_plain(user, pw), 235)
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@other.test>', 250)
            c.expect('DATA', 354)
            submitted = c.expect(stuff(body), 250).qid()
        out = d.assert_stored(relayed, b'\r\n' + body)
        check(out.count(b'indented') == 1 and
              out.split(b'\r\n\r\n', 1)[1] == body,
              'relayed: the first line is not the body\'s: %s'
              % short(out, 600))
        d.assert_stored(kept, folded)
        out = d.cat(submitted)
        head, _, rest = out.partition(b'\r\n\r\n')
        check(rest == body and re.match(
            rb'Received: [^\r]*(\r\n\t[^\r]*)*\r\nDate: [^\r]+\r\n'
            rb'Message-ID: <[^\r]+>\Z', head),
              'submitted: not Received, Date, Message-ID, an empty line '
              'and the message: %s' % short(out, 600))


def test_smtp_drops_bcc_headers():
    """Bcc: and Resent-Bcc: are for the envelope (RFC 5322 3.6.3), and
    Return-Path: and Content-Length: are wrong once relayed: mail that
    came by SMTP loses them as sendmail's does (Postfix's cleanup:
    message_drop_headers), continuation lines and all, whatever the
    case and with space before the colon.  The other fields keep their
    order, the body (a "Bcc:" line in it too) is untouched, and the
    logged size is that of the stored message."""
    sent = (b'From: a@example.test\r\nBcc: secret@x.test\r\n'
            b'To: b@relay.test\r\nResent-Bcc: hidden1@x.test,\r\n'
            b'\thidden2@x.test\r\nReturn-Path: <old@x.test>\r\n'
            b'BCC : spaced@x.test\r\nSubject: kept\r\n folded\r\n'
            b'content-length: 5\r\n')
    body = (b'\r\nBcc: body@x.test\r\n resent-bcc: x\r\n'
            b'Content-Length: 5\r\n')
    want = (b'From: a@example.test\r\nTo: b@relay.test\r\n'
            b'Subject: kept\r\n folded\r\n') + body
    # A field dropped just before a line that is no field: that line
    # (the body, relayed as it came) is kept.
    sent2 = b'Subject: s\r\nBcc: x@x.test\r\n y@x.test\r\nno field\r\n'
    with Daemon('dropbcc') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            qid = c.expect(stuff(sent + body), 250).qid()
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            qid2 = c.expect(stuff(sent2), 250).qid()
        out = d.assert_stored(qid, want)
        check(b'secret' not in out and b'hidden' not in out and
              b'spaced' not in out and b'old@' not in out,
              'a dropped field survived: %s' % short(out, 900))
        d.wait_log(r'%s: from=<s@example\.test>, size=%d, ' % (qid, len(out)))
        d.assert_stored(qid2, b'Subject: s\r\nno field\r\n')


def test_message_id_logged_printable():
    """message-id= in the log: a control or 8-bit byte becomes '?' (an
    ESC reached the log as it was)."""
    with Daemon('msgidlog') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.expect(stuff(b'Message-ID: <a\x1b[31mb\xffc@x.test>\r\n\r\n'
                           b'x\r\n'), 250)
        d.wait_log(r'message-id=<a\?\[31mb\?c@x\.test>')
        check('\x1b' not in d.log_text(), 'ESC in the log')


def test_refused_ehlo_keeps_helo_name():
    """A refused EHLO or HELO changes nothing, as in Postfix: "EHLO    "
    (blanks only) after a good EHLO got its 501 but emptied the recorded
    name, and the next message said "Received: from  (unknown ..." and
    the log helo=<>."""
    with Daemon('helokept') as d:
        with d.session(src=UNTRUSTED) as c:
            c.expect('EHLO    ', 501, '5.5.2')
            c.expect('HELO', 501, '5.5.2')
            body = _stored(d, c)
            check(re.match(rb'Received: from client\.test \(', body),
                  'Received: %s' % short(body))
            c.expect('EHLO  ', 501, '5.5.2')
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@elsewhere.test>', 554, '5.7.1')
        d.wait_log(r'NOQUEUE: reject: RCPT .* helo=<client\.test>$')


def test_received_ipv6_address_literal():
    """RFC 5321 section 4.4: the TCP-info of Received: is an
    address-literal, "[IPv6:::1]" for an IPv6 client, as Postfix writes
    it; ferry wrote "[::1]".  The log keeps Postfix's "unknown[::1]"."""
    import socket as sk
    try:
        with sk.socket(sk.AF_INET6, sk.SOCK_STREAM) as s:
            s.bind(('::1', 0))
    except OSError:
        return 'skipped: no ::1 here'
    d = Daemon('recv6')
    d.cfg['listen_smtp'] = '127.0.0.1:%d [::1]:%d' % (d.port, d.port)
    d.write_config()
    with d:
        c = Conn.__new__(Conn)
        c.sock = sk.create_connection(('::1', d.port), timeout=10 * SLOW)
        c.buf, c.eof, c.timeout, c.tls_error = b'', False, 10 * SLOW, None
        with c:
            c.hello()
            body = _stored(d, c)
        check(re.match(rb'Received: from client\.test '
                       rb'\(unknown \[IPv6:::1\]\)\r\n', body),
              'Received: %s' % short(body))
        d.wait_log(r'connect from unknown\[::1\]$')


def test_lost_connection_in_data_counts_bytes():
    """Lost or timed out inside the message, Postfix says how far it got:
    "lost connection after DATA (19 bytes) from ...", "timeout after
    DATA (N bytes)"; after a refused DATA command it stays "after DATA
    from".  ferry left the byte count out."""
    with Daemon('lostbytes', smtpd_timeout='2s') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.send(b'Subject: x\r\n\r\nabc\r\nde')
            time.sleep(0.3 * SLOW)	# the bytes in before the close
        d.wait_log(r'lost connection after DATA \(21 bytes\) from '
                   r'unknown\[127\.0\.0\.1\]$')
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<r@relay.test>', 250)
            c.expect('DATA', 354)
            c.send(b'Subject: y\r\n\r\n')
            r = c.reply(timeout=10)
            check(r.code == 421, 'idle in DATA: %r' % r.text)
        d.wait_log(r'timeout after DATA \(14 bytes\) from '
                   r'unknown\[127\.0\.0\.1\]$')
        with d.session() as c:
            c.expect('DATA', 503, '5.5.1')
        d.wait_log(r'lost connection after DATA from unknown\[127\.0\.0\.1\]$')
        d.assert_empty('nothing ended with a dot')
