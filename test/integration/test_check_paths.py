"""
test_check_paths.py - `ferry check` paths the other check tests do not
pin down, each with the exact report lines it must print: the ASCII
classes check.c and dns.c test without the ctype table (a DOMAIN
argument's bytes at both ends of each range, a peer's reply with
control and non-ASCII bytes), the HELO fallback after a refused EHLO,
the "(MX N)" header of a host, and TLSA records found at the end of a
secure CNAME chain that do not validate, so the lookup moves on to the
host's own name.

Its own small rig (the check module's zones are fixed): one peer that
speaks no TLS, with odd bytes in its banner and a refused EHLO
(127.0.2.1), and one with the DANE-EE key (127.0.2.2).
"""

import re
import socket
import subprocess
import threading
import time

from dnsrig import DnssecRig
from ferrytest import FERRY_BIN, SLOW, TestFailure, check, \
    sanitizer_report, Daemon
from peers import SmtpPeer
from sharedrig import SharedRig
from test_dane import chain_file, dane_file, tlsa

CHECK_TIMEOUT = 90	# seconds (the rig's first answers are slow)
ODD, EE = '127.0.2.1', '127.0.2.2'

# 0x01, 0x1f and 0x7f are controls, U+00E9 goes out as two bytes over
# 0x7f: each byte is a '?' in the report; ' ' and '~' are the ends of
# what stays.
BANNER = '220 ~odd\x01peer\x7f\u00e9 ESMTP'
BANNER_SHOWN = '220 ~odd?peer??? ESMTP'
EHLO_NO = '502 5.5.2 no\x1fEHLO ~'
EHLO_NO_SHOWN = '502 5.5.2 no?EHLO ~'

def _policy(sess, verb, arg, txn):
    if verb == 'CONNECT':
        return BANNER
    if verb == 'EHLO':
        return EHLO_NO
    return None


def _zones(port):
    t = '_%d._tcp' % port
    ee = tlsa('ee', 3, 1, 1)
    return {
        'odd.dane.test': ['@ MX 10 mx', 'mx A %s' % ODD],
        # mx.c8 -> mx.t8 (secure), whose TLSA name is an alias into an
        # insecure zone: records, not secure; then mx.c8's own, secure.
        'c8.dane.test': ['@ MX 20 mx', 'mx CNAME mx.t8.dane.test.',
                         '%s.mx TLSA %s' % (t, ee)],
        't8.dane.test': ['mx A %s' % EE,
                         '%s.mx CNAME %s.mx.i8.dane.test.' % (t, t)],
        'i8.dane.test': ['%s.mx TLSA %s' % (t, ee)],
    }


def _start(tmp, port):
    ps = []
    try:
        ps.append(SmtpPeer(addr=ODD, port=port, policy=_policy).start())
        ps.append(SmtpPeer(addr=EE, port=port, tls='starttls',
                           certfile=chain_file(tmp, 'ee'),
                           keyfile=dane_file('ee.key')).start())
        rig = DnssecRig(_zones(port), kinds={'i8.dane.test': 'insecure'})
        rig.start()
    except Exception:
        for p in ps:
            p.stop()
        raise
    return ps, rig


fixture = SharedRig('ferry-check-paths-', _start).fixture


def run_check(domain, rc_want):
    """`ferry check DOMAIN` (str or bytes): its exit code must be
    rc_want; returns stdout, stderr and has(pattern) for stdout."""
    fx = fixture()
    cmd = [FERRY_BIN.encode(), b'-c', fx['conf'].encode(), b'check',
           domain if isinstance(domain, bytes) else domain.encode()]
    try:
        p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=CHECK_TIMEOUT * SLOW)
    except subprocess.TimeoutExpired:
        raise TestFailure('`ferry check %r` did not exit within %ds'
                          % (domain, CHECK_TIMEOUT * SLOW))
    out = p.stdout.decode('utf-8', 'replace')
    err = p.stderr.decode('utf-8', 'replace')
    m = sanitizer_report(err)
    check(m is None, 'sanitizer report %r' % m)
    check(p.returncode == rc_want, '`ferry check %r`: exit %d, want %d\n'
          '%s%s' % (domain, p.returncode, rc_want, out, err[-2000:]))
    for peer in fx['peers']:
        with peer.lock:
            mail = [c for s in peer.sessions for c in s.commands
                    if c.split(' ')[0].upper() in ('MAIL', 'RCPT', 'DATA')]
        check(not mail, 'a peer got %r: check must not send mail' % mail)

    def has(pattern):
        check(re.search(pattern, out, re.M), '`ferry check %r`: no line '
              'matching %r\n%s%s' % (domain, pattern, out, err[-2000:]))
    return out, err, has


def test_check_domain_bytes_refused():
    """Each byte just outside [0-9], [A-Z] and [a-z], a blank and bytes
    over 0x7f are no part of a domain name: usage (64), nothing looked
    up, nothing printed."""
    for dom in (b'a/b.test', b'a:b.test', b'a@b.test', b'a[b.test',
                b'a`b.test', b'a{b.test', b'a b.test', b'ex\xe9.test',
                b'ex\xc1.test', b'\xb0.test'):
        out, err, _ = run_check(dom, 64)
        check(out == '' and 'not a domain name' in err,
              '%r: stdout %r, stderr %r' % (dom, out, err))


def test_check_domain_bytes_taken():
    """The ends of each range, '-' and '_' are taken, and upper case
    (and one final dot) come out as the lower-case name looked up."""
    out, err, has = run_check(b'AZaz09-_.NX.Dane.Test.', 68)
    has(r'^ferry check azaz09-_\.nx\.dane\.test: level dane')
    has(r'^MX azaz09-_\.nx\.dane\.test: NXDOMAIN')


def test_check_reply_bytes_and_helo():
    """Controls and bytes over 0x7e in a peer's replies are printed as
    '?'; a refused EHLO is shown and HELO follows, which offers no
    STARTTLS: plaintext at dane for a secure zone without TLSA."""
    out, err, has = run_check('odd.dane.test', 69)
    has(r'^MX odd\.dane\.test \(secure\):$')
    has(r'^  10 mx\.odd\.dane\.test$')
    has(r'^mx\.odd\.dane\.test \(MX 10\)$')
    has(r'^    banner: %s$' % re.escape(BANNER_SHOWN))
    has(r'^    EHLO: %s$' % re.escape(EHLO_NO_SHOWN))
    has(r'^    STARTTLS: not offered$')
    has(r'^    result: plaintext \(STARTTLS not offered\)$')
    has(r'^  verdict: plaintext \(STARTTLS not offered\)$')
    peer = fixture()['peers'][0]
    with peer.lock:
        cmds = [c for s in peer.sessions for c in s.commands]
    check(cmds[:2] == ['EHLO ferry.test', 'HELO ferry.test'] and
          not any(c.upper().startswith('STARTTLS') for c in cmds),
          'commands %r' % cmds)


def test_check_cname_end_insecure_tlsa():
    """The chain mx.c8 -> mx.t8 is secure, but the TLSA records there
    come through an insecure zone: shown, not counted, and the lookup
    goes on to mx.c8's own, which verify (the SNI is then mx.c8)."""
    port = fixture()['port']
    out, err, has = run_check('c8.dane.test', 0)
    has(r'^mx\.c8\.dane\.test \(MX 20\)$')
    has(r'^  CNAME: mx\.c8\.dane\.test is an alias of mx\.t8\.dane\.test '
        r'\(secure: TLSA looked up there first\)$')
    has(r'^  TLSA _%d\._tcp\.mx\.t8\.dane\.test: 1 record \(insecure\)\n'
        r'    3 1 1 [0-9a-f]{12}\.\.\. \(usable\)\n'
        r'    \(not DNSSEC-secure: they do not count\)\n'
        r'  TLSA _%d\._tcp\.mx\.c8\.dane\.test: 1 record \(secure\)$'
        % (port, port))
    has(r'^  TLSA base domain: mx\.c8\.dane\.test \(the SNI\)$')
    has(r'^  verdict: verified \(DANE-EE 3 1 1 ')


def test_check_mixed_code_reply():
    """A reply whose lines carry different codes (RFC 5321 4.2.1) is
    malformed: "250-" then "550" to EHLO was read as a refusal (the last
    line's code, the first line's text) and HELO followed; "550-" then
    "250" as an EHLO taken.  Deferred, nothing more said to the peer.
    An address literal: no DNS, no rig."""
    d = Daemon('chk-mixed')
    ok = False
    try:
        for reply in ('250-peer.test\r\n550 5.0.0 no',
                      '550-5.0.0 no\r\n250 peer.test'):
            with SmtpPeer(policy=lambda s, v, a, t, reply=reply:
                          reply if v == 'EHLO' else None) as p:
                r = subprocess.run(
                    [FERRY_BIN, '-c', d.conf, 'check',
                     '[127.0.0.1]:%d' % p.port], capture_output=True,
                    stdin=subprocess.DEVNULL, timeout=CHECK_TIMEOUT * SLOW)
                out = r.stdout.decode('utf-8', 'replace')
                m = sanitizer_report(r.stderr.decode('utf-8', 'replace'))
                check(m is None, 'sanitizer report %r' % m)
                check(r.returncode == 75 and re.search(
                    r'^    result: deferred: malformed reply in state '
                    r'EHLO$', out, re.M) and 'EHLO: ' not in out,
                    '%r: exit %d\n%s' % (reply, r.returncode, out))
                with p.lock:
                    cmds = [c for s in p.sessions for c in s.commands]
                check(cmds == ['EHLO ferry.test'], 'peer got %r' % cmds)
        ok = True
    finally:
        d.cleanup(ok)


def test_check_trickling_banner_ends():
    """A server that sends "220-" a line a second never finishes its
    banner.  Each line put the idle timeout off again, and `ferry check`
    ran for ever (a monitoring script that calls it hung with it).  The
    banner now has a deadline of 60 s from the connect: deferred, exit
    75, within the time."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    stop = threading.Event()
    sent = [0]

    def trickle():
        c, _ = srv.accept()
        with c:
            try:
                while not stop.is_set():
                    c.sendall(b'220-still going\r\n')
                    sent[0] += 1
                    stop.wait(1)
            except OSError:
                pass

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    d = Daemon('chk-trickle')
    ok = False
    try:
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                [FERRY_BIN, '-c', d.conf, 'check', '[127.0.0.1]:%d' % port],
                capture_output=True, stdin=subprocess.DEVNULL,
                timeout=CHECK_TIMEOUT * SLOW)
        except subprocess.TimeoutExpired:
            raise TestFailure('`ferry check` still running after %ds, %d '
                              'lines of banner' % (CHECK_TIMEOUT * SLOW,
                                                   sent[0]))
        took = time.monotonic() - t0
        out = r.stdout.decode('utf-8', 'replace')
        m = sanitizer_report(r.stderr.decode('utf-8', 'replace'))
        check(m is None, 'sanitizer report %r' % m)
        check(r.returncode == 75 and re.search(
            r'^    result: deferred: timed out in state banner$', out,
            re.M | re.I), 'exit %d\n%s' % (r.returncode, out))
        check(sent[0] >= 50 and took >= 55, 'ended after %.1f s, %d lines: '
              'not the deadline' % (took, sent[0]))
        ok = True
    finally:
        stop.set()
        srv.close()
        d.cleanup(ok)
