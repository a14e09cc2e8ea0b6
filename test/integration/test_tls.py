"""
test_tls.py - ferry's TLS server seen from real clients (issue 4):
STARTTLS on 25 and 587, implicit TLS on 465, with Python's ssl/smtplib,
`openssl s_client` and swaks; the refusals (MAIL before STARTTLS,
commands pipelined behind STARTTLS - CVE-2011-0411 -, handshakes that
stall or are garbage, weak protocols and ciphers), the log and Received:
lines, session resumption, relaying by client certificate, and the
certificate at start-up and on SIGHUP.  AUTH itself is test_auth.py.
Every refusal checks that nothing was queued.
"""

import os
import random
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time

from ferrytest import (Daemon, Conn, TestFailure, check, short, transact,
                       stuff, auth_plain, client_context, pem_leaf_der,
                       cert_file, cert_sha256, spki_sha256, ferry_owned,
                       CA_PEM, TLS12, HOSTNAME, TRUSTED, UNTRUSTED, SLOW,
                       mbedtls_build, tls_version_expected)

BODY = (b'From: a@example.test\r\nTo: b@relay.test\r\n'
        b'Subject: over tls\r\n\r\nfirst line\r\nsecond line\r\n')
USER, PASSWORD = 'alice', 'correct horse battery'
USERS = {USER: PASSWORD}
STAMP = r'^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ferry/smtpd\[\d+\]: '
VERSIONS = ('TLSv1.2', 'TLSv1.3')
# mbedTLS suite names as ferry logs them, e.g.
# TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384 (TLS 1.3: TLS1-3-AES-256-GCM-SHA384)
SUITE = r'TLS(?:1-3)?-[A-Z0-9-]+'
TLS_LOG = (STAMP + r'Anonymous TLS connection established from '
           r'unknown\[127\.0\.0\.1\]: (TLSv1\.[23]) with cipher (' + SUITE
           + r') \((\d+)/(\d+) bits\)$')


def all_ports(**kw):
    """A daemon with TLS on 25, 587 and 465 and one user."""
    kw.setdefault('tls', True)
    kw.setdefault('users', USERS)
    return Daemon(kw.pop('name', 'tls'), submission=True, smtps=True, **kw)


def received_of(d, qid):
    """The Received: header of a queued message, unfolded."""
    out = d.cat(qid)
    head = out.split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace')
    m = re.match(r'Received: (.*?)\r\n(?![ \t])', head + '\r\n', re.S)
    check(m, 'no Received: header first in %s: %s' % (qid, short(out)))
    return re.sub(r'\r\n[ \t]+', ' ', m.group(1))


def check_received_tls(d, qid, proto, version='TLSv1.2'):
    rec = received_of(d, qid)
    check(re.search(r'\(using %s with cipher %s \(\d+/\d+ bits\)\)'
                    % (re.escape(version), SUITE), rec),
          'Received: of %s lacks "(using %s with cipher ...)": %r'
          % (qid, version, rec))
    check(re.search(r'\bwith %s\b' % proto, rec),
          'Received: of %s does not say "with %s": %r' % (qid, proto, rec))
    return rec


def no_data_accepted(c, what):
    """Send a message body and QUIT after a refused DATA: its lines are
    commands (errors, maybe enough to be cut off), never a message."""
    try:
        c.send(stuff(BODY) + b'QUIT\r\n')
    except OSError:
        pass
    rs = c.replies_until_close()
    bad = [r.text for r in rs if r.code in (250, 354) and
           ('queued' in r.text or r.code == 354)]
    check(not bad, '%s: the body after a refused DATA got %r' % (what, bad))


def nothing_more(c, wait=0.3):
    """Fails if the server sends anything within wait seconds."""
    r, _, _ = select.select([c.sock], [], [], wait)
    if r:
        try:
            data = c.sock.recv(4096, socket.MSG_PEEK)
        except OSError:
            data = b'(error)'
        check(not data, 'the server sent %s unasked' % short(data))


# --- offering, replies ------------------------------------------------------

def test_tls_ehlo_keywords():
    with all_ports() as d:
        for port, what in ((d.port, 25), (d.sub_port, 587)):
            with d.connect(port=port) as c:
                c.expect(None, 220)
                kw = c.ehlo_keywords()
                check('STARTTLS' in kw, '%d: no STARTTLS before TLS: %r'
                      % (what, kw))
                check(not any(k.startswith('AUTH') for k in kw),
                      '%d: AUTH offered before TLS: %r' % (what, kw))
                c.starttls()
                kw = c.ehlo_keywords()
                check('STARTTLS' not in kw, '%d: STARTTLS offered again '
                      'after TLS: %r' % (what, kw))
                auth = [k for k in kw if k.startswith('AUTH ')]
                check(auth and set(auth[0].split()[1:]) >= {'PLAIN', 'LOGIN'},
                      '%d: after TLS no "AUTH PLAIN LOGIN": %r' % (what, kw))
                c.expect('QUIT', 221)
        with d.connect_smtps() as c:
            c.expect(None, 220)
            kw = c.ehlo_keywords()
            check('STARTTLS' not in kw, '465: STARTTLS offered: %r' % kw)
            check(any(k.startswith('AUTH ') and 'PLAIN' in k for k in kw),
                  '465: no AUTH PLAIN: %r' % kw)
            c.expect('QUIT', 221)
    # without a users file: TLS but never AUTH
    with Daemon('tls-noauth', tls=True) as d:
        c, kw = d.tls_session()
        with c:
            check(not any(k.startswith('AUTH') for k in kw),
                  'AUTH offered without auth_users: %r' % kw)
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 503,
                     '5.5.1')


def test_starttls_replies_and_reset():
    with Daemon('starttls-replies', tls=True) as d:
        with d.session() as c:
            c.expect('STARTTLS now', 501, '5.5.4')
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RSET', 250)
            c.starttls()
            # RFC 3207 4.2: the session starts over, EHLO forgotten
            c.expect('MAIL FROM:<s@example.test>', 503, '5.5.1')
            c.expect('EHLO client.test', 250)
            c.expect('STARTTLS', 554, '5.5.1')
            qid = transact(c, BODY)
            c.expect('QUIT', 221)
        d.assert_stored(qid, BODY)
    # no certificate, or inbound_tls = none: not offered, 502
    for name, kw in (('notls', {}), ('tlsnone', {'tls': True,
                                               'inbound_tls': 'none'})):
        with Daemon(name, **kw) as d:
            with d.connect() as c:
                c.expect(None, 220)
                check('STARTTLS' not in c.ehlo_keywords(),
                      '%s: STARTTLS offered' % name)
                c.expect('STARTTLS', 502, '5.5.1')
                c.expect('NOOP', 250)
            d.assert_empty()


def test_starttls_required_before_mail():
    """587, and 25 with inbound_tls = encrypt: no mail before STARTTLS."""
    with all_ports(name='needtls', inbound_tls='encrypt') as d:
        for port in (d.sub_port, d.port):
            with d.connect(port=port) as c:
                c.hello()
                r = c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
                check('Must issue a STARTTLS command first' in r.text,
                      '%d: reply %r' % (port, r.text))
                r = c.cmd('RCPT TO:<r@relay.test>')
                check(r.code in (503, 530), 'RCPT after refused MAIL: %r'
                      % r.text)
                r = c.cmd('DATA')
                check(r.code in (503, 530), 'DATA: %r' % r.text)
                no_data_accepted(c, port)
        d.assert_empty('MAIL before STARTTLS')


# --- real clients -------------------------------------------------------------

def _smtplib_session(d, port, ctx, src=None, login=False):
    """smtplib over STARTTLS (25, 587) or implicit TLS (465)."""
    sa = (src, 0) if src else None
    if port == d.smtps_port:
        s = smtplib.SMTP_SSL('127.0.0.1', port, local_hostname='c.test',
                             context=ctx, timeout=20 * SLOW,
                             source_address=sa)
        s.ehlo()
    else:
        s = smtplib.SMTP('127.0.0.1', port, local_hostname='c.test',
                         timeout=20 * SLOW, source_address=sa)
        s.ehlo()
        check(s.has_extn('starttls'), '%d: no STARTTLS in %r'
              % (port, s.esmtp_features))
        code, msg = s.starttls(context=ctx)
        check(code == 220, 'STARTTLS %d %r' % (code, msg))
        s.ehlo()
    if login:
        code, msg = s.login(USER, PASSWORD)
        check(code == 235, 'login %d %r' % (code, msg))
    return s


def test_smtplib_tls12_each_port():
    """TLS 1.2 pinned: 25 (no AUTH), 587 and 465 (AUTH, relay from an
    address outside relay_networks); the negotiated version, the log line
    and the Received: header."""
    ctx = client_context(max_version=TLS12)
    with all_ports(name='smtplib12') as d:
        qids = {}
        for port, src, rcpt, login in (
                (d.port, TRUSTED, 'r@relay.test', False),
                (d.sub_port, UNTRUSTED, 'u@other.test', True),
                (d.smtps_port, UNTRUSTED, 'v@other.test', True)):
            s = _smtplib_session(d, port, ctx, src, login)
            check(s.sock.version() == 'TLSv1.2', '%d: negotiated %r'
                  % (port, s.sock.version()))
            refused = s.sendmail('s@example.test', [rcpt], BODY)
            check(not refused, '%d: refused %r' % (port, refused))
            s.quit()
            qids[port] = rcpt
        q = {m['recipients'][0]['address']: m['id'] for m in d.mailq()}
        check(set(q) == set(qids.values()), 'queued %r' % q)
        check_received_tls(d, q['r@relay.test'], 'ESMTPS')
        check_received_tls(d, q['u@other.test'], 'ESMTPSA')
        check_received_tls(d, q['v@other.test'], 'ESMTPSA')
        m = d.wait_log(TLS_LOG)
        check(m.group(1) == 'TLSv1.2' and m.group(3) == m.group(4),
              'TLS log line %r' % m.group(0))


def _dns_name(n, tail):
    """A valid DNS name of exactly n octets ending in .tail."""
    labels, left = [], n - len(tail)
    while left > 64:
        k = 62 if left == 65 else 63
        labels.append('a' * k)
        left -= k + 1
    labels.append('a' * (left - 1))
    name = '.'.join(labels) + '.' + tail
    assert len(name) == n, (n, len(name))
    return name


def test_received_longest_names_fit():
    """Every name in ferry's Received: at its largest legal size: EHLO
    with a 255-octet domain (RFC 5321 section 4.5.3.1.2), hostname 253
    octets (DNS's most without the root dot, as config takes it), TLS,
    and a 254-octet recipient whose alias is a 64-octet bare
    local part qualified with a 252-octet origin (317 octets).  That
    overflowed the 1,024-byte header buffer: 451 for that client, for
    ever.  Now the mail is queued, each header line stays within RFC
    5322's 998, and the field holds every name whole."""
    from test_alias import write_aliases
    host, origin = _dns_name(253, 'test'), _dns_name(252, 'test')
    helo, local = _dns_name(255, 'test'), 'l' * 64
    sender = 's' * 64 + '@' + _dns_name(189, 'test')
    d = all_ports(name='recvlong', hostname=host, origin=origin)
    d.cfg['aliases'] = write_aliases(d, 'x: %s\n' % local)
    d.write_config()
    with d:
        c, _ = d.tls_session(name=helo)
        with c:
            c.expect('MAIL FROM:<%s> SMTPUTF8' % sender, 250)
            c.expect('RCPT TO:<x@%s>' % origin, 250)
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        out = d.cat(qid)
        head, rest = out.split(b'\r\nFrom: ', 1)
        check(b'From: ' + rest == BODY, 'message changed: %s' % short(out))
        lines = head.split(b'\r\n')
        check(all(len(l) <= 998 for l in lines) and
              all(l[:1] == b'\t' for l in lines[1:]),
              'Received: lines %r' % [len(l) for l in lines])
        rec = received_of(d, qid)
        want = (r'from %s \(unknown \[127\.0\.0\.1\]\) \(using TLSv1\.[23] '
                r'with cipher %s \(\d+/\d+ bits\)\) by %s \(ferry\) with '
                r'UTF8SMTPS id %s for <%s@%s>; [^\r\n]+$'
                % (re.escape(helo), SUITE, re.escape(host), qid, local,
                   re.escape(origin)))
        check(re.match(want, rec), 'Received: %r' % rec)


def _accept_errors(d, want):
    """How many SSL_accept errors from 127.0.0.1 the log has, waiting up
    to 10 s for want of them: the daemon logs a refusal after the client
    has seen it."""
    deadline = time.time() + 10 * SLOW
    while True:
        n = len(re.findall(r'SSL_accept error from unknown\[127\.0\.0\.1\]',
                           d.log_text()))
        if n >= want or time.time() > deadline:
            return n
        time.sleep(0.1)


def test_tls13_attempted():
    """No version cap on the client: TLS 1.3 exactly when the mbedTLS
    ferry runs with is 3.x built with TLS 1.3, else TLS 1.2; the log line
    says the same version.  Without 1.3, a client that insists on it
    (minimum TLSv1.3) is refused on every port by the server (an
    SSL_accept error logged), nothing is read as SMTP and the port still
    serves."""
    ver, has13 = mbedtls_build()
    want = 'TLSv1.3' if has13 else 'TLSv1.2'
    with all_ports(name='tls13') as d:
        ports = (d.port, d.sub_port, d.smtps_port)
        for port in ports:
            s = _smtplib_session(d, port, client_context())
            v = s.sock.version()
            check(v == want, '%d: negotiated %r with mbedTLS %s, want %s'
                  % (port, v, ver, want))
            s.quit()
        logged = [m.group(1) for m in re.finditer(TLS_LOG, d.log_text(),
                                                  re.M)]
        check(len(logged) == 3 and set(logged) == {want},
              'TLS log lines say %r, want 3 x %s' % (logged, want))
        if not has13:
            ctx = client_context(min_version=ssl.TLSVersion.TLSv1_3)
            for port in ports:
                try:
                    if port == d.smtps_port:
                        c = d.connect_smtps(ctx=ctx)
                    else:
                        c = d.connect(port=port)
                        try:
                            c.hello()
                            c.starttls(ctx)
                        except BaseException:
                            c.close()
                            raise
                except (ssl.SSLError, ConnectionError) as e:
                    check('NO_PROTOCOLS_AVAILABLE' not in str(e),
                          '%d: our own client refused: %s' % (port, e))
                    continue
                v = c.tls_version()
                c.close()
                raise TestFailure('%d: a TLSv1.3-only client got %s from '
                                  'mbedTLS %s' % (port, v, ver))
            n = _accept_errors(d, len(ports))
            check(n >= len(ports), '%d SSL_accept errors logged for %d '
                  'refused TLS 1.3 handshakes:\n%s'
                  % (n, len(ports), d.log_tail()))
            for port in ports:		# still serving, at 1.2
                s = _smtplib_session(d, port, client_context())
                check(s.sock.version() == 'TLSv1.2', '%d after the '
                      'refusals: %r' % (port, s.sock.version()))
                s.quit()
        d.assert_empty()
    return 'mbedTLS %s: %s%s' % (ver, want, '' if has13 else
                                 ', 1.3-only clients refused')


def _s_client(args, stdin=b'EHLO c.test\nQUIT\n'):
    p = subprocess.run(['openssl', 's_client', '-CAfile', CA_PEM,
                        '-verify_return_error', '-crlf', '-ign_eof']
                       + args, input=stdin, capture_output=True,
                       timeout=30 * SLOW)
    return p.returncode, p.stdout.decode('utf-8', 'replace'), \
        p.stderr.decode('utf-8', 'replace')


def test_openssl_s_client():
    check(shutil.which('openssl'), 'openssl is not installed')
    notes = []
    with all_ports(name='s_client') as d:
        for port, how in ((d.port, ['-starttls', 'smtp']),
                          (d.sub_port, ['-starttls', 'smtp']),
                          (d.smtps_port, [])):
            for pin in (['-tls1_2'], []):
                rc, out, err = _s_client(
                    ['-connect', '127.0.0.1:%d' % port] + how + pin)
                what = '%d%s' % (port, ' -tls1_2' if pin else '')
                check(rc == 0, '%s: s_client exit %d: %s %s'
                      % (what, rc, out[-800:], err[-800:]))
                check('Verify return code: 0 (ok)' in out,
                      '%s: chain does not verify: %s' % (what, out[-1500:]))
                m = re.search(r'^\s*Protocol\s*: (\S+)$', out, re.M)
                check(m and m.group(1) in VERSIONS,
                      '%s: protocol %r' % (what, m and m.group(1)))
                if pin:
                    check(m.group(1) == 'TLSv1.2', '%s: %s' % (what,
                                                              m.group(1)))
                c = re.search(r'^\s*Cipher\s*: (\S+)$', out, re.M)
                check(c and c.group(1) not in ('0000', '(NONE)'),
                      '%s: cipher %r' % (what, c and c.group(1)))
                check(re.search(r'^250[ -]%s' % re.escape(HOSTNAME), out,
                                re.M) and re.search(r'^221 ', out, re.M),
                      '%s: no EHLO/QUIT replies over TLS: %s'
                      % (what, out[-800:]))
                if not pin:
                    notes.append('%d %s %s' % (port, m.group(1),
                                               c.group(1)))
        d.assert_empty()
    return '; '.join(notes)


def test_swaks_tls_auth():
    check(shutil.which('swaks'), 'swaks is not installed')
    with all_ports(name='swaks') as d:
        runs = ((d.sub_port, ['--tls'], 'PLAIN', 'p@other.test'),
                (d.sub_port, ['--tls'], 'LOGIN', 'l@other.test'),
                (d.port, ['--tls'], 'PLAIN', 'q@other.test'),
                (d.smtps_port, ['--tlsc'], 'LOGIN', 's@other.test'))
        for port, tls, mech, rcpt in runs:
            p = subprocess.run(
                ['swaks', '--server', '127.0.0.1:%d' % port] + tls +
                ['--tls-verify', '--tls-ca-path', CA_PEM,
                 '--local-interface', UNTRUSTED,
                 '--auth', mech, '--auth-user', USER,
                 '--auth-password', PASSWORD,
                 '--to', rcpt, '--from', 'swaks@example.test',
                 '--header', 'Subject: swaks ' + mech,
                 '--body', 'swaks over tls'],
                capture_output=True, timeout=60 * SLOW)
            out = p.stdout.decode(errors='replace')
            what = '%d %s %s' % (port, ' '.join(tls), mech)
            check(p.returncode == 0, '%s: swaks exit %d: %s'
                  % (what, p.returncode, out[-1500:]))
            check('<~  235 ' in out, '%s: no 235 over TLS: %s'
                  % (what, out[-1500:]))
        q = {m['recipients'][0]['address']: m['id'] for m in d.mailq()}
        check(set(q) == {r[3] for r in runs}, 'queued %r' % q)
        # swaks caps nothing: TLS 1.3 where ferry's mbedTLS has it
        for r in runs:
            check_received_tls(d, q[r[3]], 'ESMTPSA',
                               tls_version_expected())


# --- refusals and attacks -----------------------------------------------------

def test_starttls_pipelined_not_executed():
    """CVE-2011-0411: plaintext commands sent with STARTTLS in one write
    must not be executed inside the TLS session."""
    with all_ports(name='cve-2011-0411') as d:
        for port in (d.port, d.sub_port):
            with d.connect(port=port) as c:
                c.hello()
                c.send(b'STARTTLS\r\nMAIL FROM:<evil@example.test>\r\n'
                       b'RCPT TO:<victim@relay.test>\r\n')
                c.expect(None, 220, '2.0.0')
                nothing_more(c)
                c.handshake()
                r = c.expect('EHLO client.test', 250)
                check(r.lines[0] == '250-' + HOSTNAME,
                      '%d: first reply after TLS is not the EHLO reply: %r'
                      % (port, r.text))
                # the MAIL did not open a transaction (on 587 the lack
                # of AUTH may be what is said first)
                r = c.cmd('RCPT TO:<r@relay.test>')
                check(r.code == 503 and r.enh() == '5.5.1' or
                      port == d.sub_port and r.code == 530,
                      '%d: RCPT after the pipelined MAIL: %r'
                      % (port, r.text))
                c.expect('QUIT', 221)
        # a whole transaction behind STARTTLS
        with d.session() as c:
            c.send(b'STARTTLS\r\nEHLO x\r\nMAIL FROM:<evil@example.test>\r\n'
                   b'RCPT TO:<victim@relay.test>\r\nDATA\r\n'
                   b'Subject: injected\r\n\r\nevil\r\n.\r\nQUIT\r\n')
            c.expect(None, 220, '2.0.0')
            nothing_more(c)
            c.handshake()
            r = c.expect('NOOP', 250, '2.0.0')
            c.expect('QUIT', 221)
        d.assert_empty('commands pipelined behind STARTTLS')
        check('evil@example.test' not in d.log_text(),
              'the pipelined MAIL shows in the log:\n' + d.log_tail())


def _closed_within(c, lo, hi):
    t0 = time.monotonic()
    closed = c.wait_closed(hi)
    el = time.monotonic() - t0
    check(closed, 'stalled handshake still open after %.1fs' % el)
    return el


def test_handshake_timeout_frees_slots():
    """Handshakes that never finish (nothing sent on 465, nothing after
    STARTTLS, half a ClientHello) end after smtpd_timeout (2s), and their
    connection slots serve new clients."""
    with Daemon('hstmo', tls=True, smtps=True, users=USERS,
                smtpd_timeout='2s',
                max_connections='3', max_connections_per_client='10') as d:
        a = Conn(d.smtps_port)
        b = d.session()
        b.expect('STARTTLS', 220, '2.0.0')
        c = Conn(d.smtps_port, src=UNTRUSTED)
        c.send(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')
        t0 = time.monotonic()
        time.sleep(0.3)
        with d.connect('127.0.0.4') as x:	# all three slots are taken
            r = x.reply()
            check(r.code == 421 and r.enh() == '4.7.0',
                  'a fourth connection was not refused: %r' % r.text)
        for conn, what in ((a, '465 silent'), (b, 'after STARTTLS'),
                           (c, 'half a ClientHello')):
            closed = conn.wait_closed(8)
            el = time.monotonic() - t0
            check(closed, '%s: still open after %.1fs' % (what, el))
            check(1.4 <= el + 0.3 <= 6 * SLOW,
                  '%s: closed after %.1fs, smtpd_timeout is 2s'
                  % (what, el + 0.3))
            check(not re.search(rb'(^|\n)[2-5]\d\d[ -]', conn.buf),
                  '%s: plaintext reply %s' % (what, short(conn.buf)))
            conn.close()
        # the slots are free: three new clients, one with a full TLS send
        held = []
        deadline = time.monotonic() + 3 * SLOW
        while len(held) < 2 and time.monotonic() < deadline:
            x = d.connect('127.0.0.5')
            r = x.reply()
            if r.code == 220:
                held.append(x)
            else:
                x.close()
                time.sleep(0.1)
        check(len(held) == 2, 'slots not freed after the handshake timeout')
        s = smtplib.SMTP_SSL('127.0.0.1', d.smtps_port,
                             context=client_context(), timeout=20)
        s.login(USER, PASSWORD)
        s.sendmail('s@example.test', ['r@relay.test'], BODY)
        s.quit()
        for x in held:
            x.close()
        check(len(d.mailq()) == 1, 'the client after the timeouts was '
              'not served: %r' % d.mailq())


GARBAGE = [
    b'EHLO garbage.test\r\nMAIL FROM:<s@example.test>\r\n',
    b'\x16\x03\x01\xff\xff' + b'\x00' * 300,		# record too long
    b'\x16\x03\x01\x00\x05\x01\x00\xff\xff\xff',		# bad handshake len
    b'\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10' + b'\x00' * 37,  # SSLv2
    b'\x17\x03\x03\x00\x10' + b'A' * 16,			# app data first
]


def test_garbage_instead_of_clienthello():
    """Junk instead of a ClientHello is refused on every port, and
    nothing is read as SMTP.  mbedTLS 3.x reassembles a handshake message
    that spans records, so the third junk (a 5-byte record announcing a
    16 MB ClientHello) waits there for the rest: the handshake timeout
    (smtpd_timeout, short here) must end it."""
    rnd = random.Random(411)
    garbage = GARBAGE + [bytes(rnd.randrange(256) for _ in range(2000))]
    reassembles = not mbedtls_build()[0].startswith('2.')
    with all_ports(name='garbage', smtpd_timeout='4s') as d:
        for i, g in enumerate(garbage):
            with Conn(d.smtps_port) as c:
                try:
                    c.send(g)
                except OSError:
                    pass
                t0 = time.time()
                check(c.wait_closed(15 * SLOW), '465: garbage %d: still '
                      'open' % i)
                el = time.time() - t0
                check(el < 3 * SLOW or (reassembles and i == 2),
                      '465: garbage %d: closed only after %.1fs, by the '
                      'timeout, not refused' % (i, el))
                check(not re.match(rb'\d{3}[ -]', c.buf),
                      '465: garbage %d got an SMTP reply %s'
                      % (i, short(c.buf)))
        d.wait_log(STAMP + r'SSL_accept error from unknown\[127\.0\.0\.1\]: '
                   r'\S')
        d.wait_log(STAMP + r'lost connection after CONNECT from '
                   r'unknown\[127\.0\.0\.1\]')
        for port in (d.port, d.sub_port):
            with d.connect(port=port) as c:
                c.hello()
                c.expect('STARTTLS', 220)
                c.send(b'MAIL FROM:<s@example.test>\r\n'
                       b'RCPT TO:<r@relay.test>\r\n')
                check(c.wait_closed(10), '%d: still open after plaintext '
                      'instead of a ClientHello' % port)
                check(not re.match(rb'\d{3}[ -]', c.buf),
                      '%d: garbage got an SMTP reply %s'
                      % (port, short(c.buf)))
        d.wait_log(STAMP + r'lost connection after STARTTLS from '
                   r'unknown\[127\.0\.0\.1\]')
        d.assert_empty('garbage handshakes')
        # still serving, on every port
        c, _ = d.tls_session()
        with c:
            qid = transact(c, BODY)
        s = _smtplib_session(d, d.smtps_port, client_context(), login=True)
        s.sendmail('s@example.test', ['r@relay.test'], BODY)
        s.quit()
        check(len(d.mailq()) == 2, 'after garbage: %r' % d.mailq())
        d.assert_stored(qid, BODY)


def test_weak_protocols_and_ciphers_refused():
    """No TLS 1.0/1.1, no anonymous, NULL, export, RC4 or 3DES suites."""
    tried = []
    with Daemon('weak', tls=True, smtps=True) as d:
        for name, kw in (
                ('TLS 1.0-1.1', dict(min_version=ssl.TLSVersion.TLSv1,
                                     max_version=ssl.TLSVersion.TLSv1_1,
                                     ciphers='ALL:@SECLEVEL=0')),
                ('3DES', dict(max_version=TLS12,
                              ciphers='3DES:@SECLEVEL=0')),
                ('RC4', dict(max_version=TLS12, ciphers='RC4:@SECLEVEL=0')),
                ('anonymous', dict(max_version=TLS12,
                                   ciphers='aNULL:@SECLEVEL=0')),
                ('NULL', dict(max_version=TLS12,
                              ciphers='eNULL:@SECLEVEL=0')),
                ('export', dict(max_version=TLS12,
                                ciphers='EXP:@SECLEVEL=0'))):
            try:
                ctx = client_context(verify=False, **kw)
            except (ssl.SSLError, ValueError):
                continue		# this OpenSSL cannot even offer it
            tried.append(name)
            try:
                c = d.connect_smtps(ctx=ctx)
            except (ssl.SSLError, OSError) as e:
                err = str(e)
                if 'NO_PROTOCOLS_AVAILABLE' in err or \
                        'NO_CIPHERS_AVAILABLE' in err:
                    tried.pop()		# refused by our own side
                continue
            v, ci = c.tls_version(), c.cipher()
            c.close()
            raise TestFailure('%s: handshake succeeded: %s %r' % (name, v,
                                                                 ci))
        check(len(tried) >= 2, 'this client could offer only %r' % tried)
        # refused by the server, not by our own client
        n = _accept_errors(d, len(tried))
        check(n >= len(tried), '%d SSL_accept errors logged for %d refused '
              'handshakes:\n%s' % (n, len(tried), d.log_tail()))
        # still serving
        with d.connect_smtps() as c:
            c.expect(None, 220)
    return 'refused: ' + ', '.join(tried)


def test_session_resumption():
    """A second connection resumes the first one's session (tickets)."""
    ctx = client_context(max_version=TLS12)
    with Daemon('resume', tls=True, smtps=True) as d:
        for port in (d.smtps_port, d.port):
            sess = None
            for i in range(2):
                with d.connect(port=port) as c:
                    if port == d.port:
                        c.hello()
                        c.expect('STARTTLS', 220)
                    c.sock = ctx.wrap_socket(c.sock,
                                             server_hostname='127.0.0.1',
                                             session=sess)
                    if i == 1:
                        check(c.sock.session_reused,
                              '%d: session not resumed' % port)
                    c.expect(None if port == d.smtps_port else 'EHLO x',
                             220 if port == d.smtps_port else 250)
                    c.expect('QUIT', 221)
                    sess = c.sock.session
                    check(sess is not None, 'no session to resume')


# --- client certificates ------------------------------------------------------

def _fp_file(d, lines):
    path = os.path.join(d.dir, 'relay_client_certs')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    ferry_owned(path, 0o644)
    return path


def _relay_try(d, cert, rcpt='u@other.test', src=UNTRUSTED):
    c, _ = d.tls_session(src=src, ctx=client_context(cert=cert))
    with c:
        c.expect('MAIL FROM:<s@example.test>', 250)
        r = c.cmd('RCPT TO:<%s>' % rcpt)
        qid = None
        if r.code == 250:
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        c.expect('QUIT', 221)
    return r, qid


def test_client_cert_relay():
    """relay_client_certs: a listed certificate (by the certificate's
    SHA-256, or by its public key's) relays from outside relay_networks;
    another one, or none, is refused 554 5.7.1."""
    fp = cert_sha256('client')
    colons = ':'.join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    for how, listed in (('cert', colons + ' client.relay.test'),
                        ('spki', spki_sha256('client'))):
        d = Daemon('ccert-' + how, tls=True)
        d.cfg['relay_client_certs'] = _fp_file(
            d, ['# relay by certificate', '', listed,
                cert_sha256('ca')])		# the CA's own does not count
        d.write_config()
        with d:
            r, qid = _relay_try(d, 'client')
            check(r.code == 250 and r.enh() == '2.1.5',
                  '%s: listed client certificate: %r' % (how, r.text))
            d.wait_log(STAMP + r'Untrusted TLS connection established from '
                       r'unknown\[127\.0\.0\.2\]: TLSv1\.[23] with cipher ')
            for cert in ('other', None):
                r, q2 = _relay_try(d, cert)
                check(r.code == 554 and r.enh() == '5.7.1' and
                      'Relay access denied' in r.text,
                      '%s: certificate %s: %r' % (how, cert, r.text))
                check(q2 is None, 'queued %s' % q2)
            # relay_domains still open to anyone
            r, q3 = _relay_try(d, 'other', rcpt='r@relay.test')
            check(r.code == 250, 'relay_domains with a foreign certificate:'
                  ' %r' % r.text)
            q = {m['id']: m for m in d.mailq()}
            check(set(q) == {qid, q3}, 'queue %r' % list(q))
            check(q[qid]['recipients'][0]['address'] == 'u@other.test',
                  'queued %r' % q[qid])
            d.assert_stored(qid, BODY)


def test_client_cert_relay_resumed_again():
    """A client that relays by its listed certificate keeps that right
    over resumption after resumption: each resumed session hands out a
    new ticket (TLS 1.3, mbedTLS 3.x) that must carry the certificate the
    resumed one had, or the client's next resumption, with that newest
    ticket, is refused 554 5.7.1 (530 on 465).  A client that showed no
    certificate gets none from a ticket, however often it resumes."""
    d = Daemon('ccert-resume', tls=True, smtps=True)
    d.cfg['relay_client_certs'] = _fp_file(d, [cert_sha256('client')])
    d.write_config()
    with d:
        queued = []
        for port in (d.port, d.smtps_port):
            for cert in ('client', None):
                ctx = client_context(cert=cert)
                sess, seen = None, []
                for i in range(4):
                    c = d.connect(src=UNTRUSTED, port=port)
                    with c:
                        if port == d.port:
                            c.hello()
                            c.expect('STARTTLS', 220)
                        c.sock = ctx.wrap_socket(
                            c.sock, server_hostname='127.0.0.1',
                            session=sess)
                        c.expect(None if port == d.smtps_port else 'EHLO x',
                                 220 if port == d.smtps_port else 250)
                        if port == d.smtps_port:
                            c.expect('EHLO x', 250)
                        check(i == 0 or c.sock.session_reused,
                              '%d %s: connection %d not resumed'
                              % (port, cert, i + 1))
                        r = c.cmd('MAIL FROM:<s@example.test>')
                        if r.code == 250:
                            r = c.cmd('RCPT TO:<u@other.test>')
                        seen.append(r.code)
                        ver = c.sock.version()
                        if r.code == 250:
                            c.expect('DATA', 354)
                            queued.append(c.expect(stuff(BODY), 250).qid())
                        c.expect('QUIT', 221)
                        sess = c.sock.session
                want = [250] * 4 if cert else \
                    [554 if port == d.port else 530] * 4
                check(seen == want, '%d, certificate %s, %s: replies %r, '
                      'want %r' % (port, cert, ver, seen, want))
        check(sorted(m['id'] for m in d.mailq()) == sorted(queued) and
              len(queued) == 8, 'queue %r, queued %r'
              % ([m['id'] for m in d.mailq()], queued))
        for qid in queued:
            d.assert_stored(qid, BODY)


def test_client_cert_list_bad_reloads_keep_it():
    """A relay_client_certs file that fails on SIGHUP keeps the running
    list (it moves over to the new set, twice in a row here), and a good
    file after that replaces it; the sanitizer build sees the list freed
    once, at the end."""
    d = Daemon('ccert-hup', tls=True)
    path = d.cfg['relay_client_certs'] = _fp_file(d, [cert_sha256('client')])
    d.write_config()
    with d:
        r, _ = _relay_try(d, 'client')
        check(r.code == 250, 'listed certificate at start: %r' % r.text)
        for i in range(2):
            _fp_file(d, ['not a fingerprint'])
            n = d.log_text().count('; keeping the old list')
            _hup(d)
            check(d.log_text().count('; keeping the old list') == n + 1 and
                  re.search(r'warning: relay_client_certs: %s.*; keeping '
                            r'the old list$' % re.escape(path),
                            d.log_text(), re.M),
                  'bad reload %d: no "keeping the old list":\n%s'
                  % (i, d.log_tail()))
            r, _ = _relay_try(d, 'client')
            check(r.code == 250, 'bad reload %d lost the list: %r'
                  % (i, r.text))
        _fp_file(d, [cert_sha256('other')])
        _hup(d)
        r, _ = _relay_try(d, 'client')
        check(r.code == 554, 'the old list outlived a good reload: %r'
              % r.text)
        r, _ = _relay_try(d, 'other')
        check(r.code == 250, 'the new list not in force: %r' % r.text)


# --- certificates: start-up and SIGHUP --------------------------------------

def _peer_leaf(d, port):
    ctx = client_context(verify=False)
    if port == d.smtps_port:
        c = d.connect_smtps(ctx=ctx)
        c.expect(None, 220)
    else:
        c = d.session()
        c.starttls(ctx)
    with c:
        der = c.peer_cert_der()
        c.expect('QUIT', 221)
    return der


def _hup(d):
    n = d.log_text().count('reload -- version')
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW
    while d.log_text().count('reload -- version') <= n:
        check(time.monotonic() < deadline, 'no "reload" log line after '
              'SIGHUP:\n' + d.log_tail())
        time.sleep(0.05)


def test_cert_reload_on_sighup():
    server = pem_leaf_der(cert_file('server')[0])
    rsa = pem_leaf_der(cert_file('rsa')[0])
    with Daemon('certhup', tls=True, smtps=True) as d:
        for port in (d.port, d.smtps_port):
            check(_peer_leaf(d, port) == server, '%d: not server.pem' % port)
        old, _ = d.tls_session()	# a session from before the reload
        d.set_cert('rsa')
        _hup(d)
        for port in (d.port, d.smtps_port):
            check(_peer_leaf(d, port) == rsa,
                  '%d: still the old certificate after SIGHUP' % port)
        with old:
            qid = transact(old, BODY)	# the old session goes on
            old.expect('QUIT', 221)
        d.assert_stored(qid, BODY)
        # a broken certificate: warning, the running one stays
        bad = os.path.join(d.dir, 'tls', 'broken.pem')
        with open(bad, 'w') as f:
            f.write('-----BEGIN CERTIFICATE-----\nnot base64 at all\n'
                    '-----END CERTIFICATE-----\n')
        ferry_owned(bad, 0o644)
        d.cfg['tls_cert'] = bad
        d.write_config()
        _hup(d)
        d.wait_log(r'warning: tls_cert %s: .+; keeping the old certificate'
                   % re.escape(bad))
        for port in (d.port, d.smtps_port):
            check(_peer_leaf(d, port) == rsa, '%d: lost the certificate on '
                  'a bad reload' % port)
        # a key that does not match its certificate: the same
        okey = os.path.join(d.dir, 'tls', 'other.key')
        shutil.copyfile(cert_file('other')[1], okey)
        ferry_owned(okey, 0o600)
        d.cfg['tls_cert'] = os.path.join(d.dir, 'tls', 'cert.pem')
        d.cfg['tls_key'] = okey
        d.write_config()
        n = d.log_text().count('keeping the old certificate')
        _hup(d)
        check(d.log_text().count('keeping the old certificate') > n,
              'no warning for a key that does not match:\n' + d.log_tail())
        check(_peer_leaf(d, d.smtps_port) == rsa, 'mismatched key loaded')


def test_bad_cert_at_start():
    other_key = cert_file('other')[1]
    for what, cert, key in (
            ('garbage', 'garbage.pem', None),
            ('missing', 'no-such.pem', None),
            ('empty', 'empty.pem', None),
            ('key mismatch', None, other_key),
            ('missing key', None, 'no-such.key')):
        d = Daemon('badcert', tls=True, smtps=True)
        if cert:
            path = os.path.join(d.dir, cert)
            if cert == 'garbage.pem':
                with open(path, 'w') as f:
                    f.write('this is no certificate\n')
            elif cert == 'empty.pem':
                open(path, 'w').close()
            d.cfg['tls_cert'] = path
            named = path
        else:
            d.cfg['tls_key'] = key
            named = key if 'no-such' in key else None
        d.write_config()
        try:
            d.start(wait=False)
            rc = d.wait_exit(10)
            log = d.log_text()
            check(rc == 78, '%s: exit %r, want 78; log:\n%s'
                  % (what, rc, d.log_tail()))
            if named:
                check(named in log, '%s: the message does not name %s:\n%s'
                      % (what, named, d.log_tail()))
            else:
                check('tls_cert' in log or 'cert.pem' in log or
                      'cert.key' in log or other_key in log,
                      '%s: no file named in:\n%s' % (what, d.log_tail()))
        finally:
            d.cleanup()


# --- regressions from review -------------------------------------------------

def test_tls_records_bigger_than_the_input_buffer():
    """A message body and a pipelined batch, each one TLS record bigger
    than the 4 KB input buffer: the rest of a record waits decrypted
    inside mbedTLS where epoll cannot see it, and must still be read
    (it used to stall until the timeout)."""
    d = all_ports(name='tls-bigrec')
    ok = False
    try:
        d.start()
        c, _ = d.tls_session()
        with c:
            body = b'Subject: big\r\n\r\n' + b''.join(
                b'%05d ' % i + b'x' * 70 + b'\r\n' for i in range(150))
            c.expect('MAIL FROM:<a@example.test>', 250, '2.1.0')
            c.expect('RCPT TO:<b@relay.test>', 250, '2.1.5')
            c.expect('DATA', 354)
            r = c.expect(stuff(body), 250, '2.0.0', timeout=5)
            qid = r.qid()
            c.send(b''.join(b'NOOP ' + b'n' * 60 + b'\r\n'
                            for _ in range(80)))
            codes = [c.reply(timeout=5).code for _ in range(80)]
            check(codes == [250] * 80, 'pipelined NOOPs: %r' % codes)
            c.expect('QUIT', 221)
        d.assert_stored(qid, body)
        d.stop()
        ok = True
        return '%d-byte body, 80 pipelined NOOPs' % len(body)
    finally:
        d.cleanup(ok)


def _cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def test_paused_session_reset_does_not_spin():
    """A session paused by the AUTH throttle whose client resets the
    connection: epoll reports the hang-up whatever the interest, and the
    loop must not wake on it again and again (it used to burn a core
    for the whole delay)."""
    d = all_ports(name='tls-spin', auth_over_plaintext='yes')
    ok = False
    try:
        d.start()
        c = d.session()
        bad = auth_plain(USER, 'wrong')
        for _ in range(3):
            c.expect('AUTH PLAIN ' + bad, 535)
        # The next AUTH is held back (1 s, then 2 s); reset meanwhile.
        c.expect('AUTH PLAIN ' + bad, 535, timeout=5)
        c.send('AUTH PLAIN ' + bad + '\r\n')
        time.sleep(0.2)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()
        t0 = _cpu_seconds(d.proc.pid)
        time.sleep(1.5)
        used = _cpu_seconds(d.proc.pid) - t0
        check(used < 0.5, 'the daemon used %.2f s of CPU in 1.5 s after '
              'a reset on a paused session' % used)
        with d.session() as c2:
            c2.expect('QUIT', 221)
        d.stop()
        ok = True
        return '%.2f s CPU in 1.5 s' % used
    finally:
        d.cleanup(ok)
