"""
test_tls_client.py - the TLS and AUTH client side of outbound delivery
(issue 4): every smarthost_tls level against scripted peers (peers.SmtpPeer
with Python ssl) that do or do not offer STARTTLS, implicit TLS, broken
handshakes, self-signed, expired and wrongly named certificates, a
client certificate asked for or required, session resumption, AUTH PLAIN
and LOGIN (and a 535) over TLS and never in clear; then a private Postfix
as the smarthost that requires STARTTLS + AUTH with its own Cyrus SASL,
and one that relays only for a listed client certificate.  What counts is
what the peer saw (TLS on, SNI, commands, credentials) and the daemon's
log lines (the Postfix-worded TLS line, status and dsn).
"""

import hashlib
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from ferrytest import (Daemon, check, short, free_port, IS_ROOT,
                       TestFailure, tls_version_expected)
from peers import (SmtpPeer, cert, wait_delivery, bounce_ids, one_delivery,
                   wait_for)
from test_dns import DnsServer

HERE = os.path.dirname(os.path.abspath(__file__))
PF_SH = os.path.join(os.path.dirname(HERE), 'postfix-instance.sh')

BODY = (b'From: Sender <sender@example.test>\r\nTo: r@relay.test\r\n'
        b'Subject: tls client test\r\nMessage-ID: <tls1@example.test>\r\n'
        b'\r\nover TLS, one hopes\r\n.dot line\r\n')

NO_RETRY = dict(retry_min='1h', retry_max='2h', queue_lifetime='1d')
USER, PASSWORD = 'relayuser', 'correct horse battery'

# "Trusted TLS connection established to H[IP]:PORT: TLSv1.2 with cipher
# NAME (256/256 bits)" (ferry/smtp, Postfix's words).
TLS_LINE = re.compile(
    r'ferry/smtp\[\d+\]: (Anonymous|Untrusted|Trusted|Verified) TLS '
    r'connection established to (\S+)\[([^\]]+)\]:(\d+): (TLSv1\.[23]) '
    r'with cipher (\S+) \((\d+)/(\d+) bits\)$')


def daemon(name, port, host='[127.0.0.1]', **cfg):
    c = dict(NO_RETRY, smarthost='%s:%d' % (host, port),
             ca_file=cert('ca.pem'))
    c.update(cfg)
    return Daemon(name, **c)


def auth_file(dirpath, user=USER, password=PASSWORD, mode=0o600):
    """smarthost_auth: readable by the daemon's user (it is loaded after
    the privilege drop) and by nobody else."""
    p = os.path.join(dirpath, 'smarthost.auth')
    with open(p, 'w') as f:
        f.write('# test credentials\n%s %s\n' % (user, password))
    os.chmod(p, mode)
    if IS_ROOT:
        pw = pwd.getpwnam('ferry')
        os.chown(p, pw.pw_uid, pw.pw_gid)
    return p


def send(d, rcpt='r@relay.test', body=BODY):
    return d.send_message(body, rcpts=[rcpt])


def tls_lines(d):
    return [m.groups() for m in (TLS_LINE.search(l) for l in
                                 d.log_text().splitlines()) if m]


def no_mail_sent(p, what):
    """The peer never saw MAIL, RCPT, DATA or any of the body."""
    with p.lock:
        bad = [c for s in p.sessions for c in s.commands
               if c.split(' ')[0].upper() in ('MAIL', 'RCPT', 'DATA')]
    check(not bad, '%s: the peer got %r' % (what, bad))


def check_delivered_body(p):
    got = p.wait_delivered(1)[0].body
    check(got.endswith(BODY) and got.startswith(b'Received: '),
          'relayed body differs: %s' % short(got, 400))


def commands(sess):
    return [c.split(' ')[0].upper() for c in sess.commands]


# --- levels -------------------------------------------------------------

def test_tls_client_none_never_starttls():
    with SmtpPeer(tls='starttls') as p, \
            daemon('tlsnone', p.port, smarthost_tls='none') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        p.wait_idle()
        s = p.sessions[0]
        check(not s.starttls and not s.tls and 'STARTTLS' not in
              commands(s), 'level none said STARTTLS: %r' % s.commands)
        check(tls_lines(d) == [], 'TLS line at level none: %r'
              % tls_lines(d))


def test_tls_client_may_starttls_ehlo_again():
    with SmtpPeer(tls='starttls') as p, \
            daemon('tlsmay', p.port, smarthost_tls='may') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check_delivered_body(p)
        p.wait_idle()
        check(len(p.sessions) == 1, '%d sessions' % len(p.sessions))
        s = p.sessions[0]
        # the peer caps nothing: TLS 1.3 where ferry's mbedTLS has it
        want = tls_version_expected()
        check(s.tls and s.tls_version == want, 'TLS %r %r, want %s'
              % (s.tls, s.tls_version, want))
        check(commands(s)[:4] == ['EHLO', 'STARTTLS', 'EHLO', 'MAIL'],
              'want EHLO, STARTTLS, EHLO again, MAIL: %r' % s.commands)
        check(s.ehlo_tls == 1 and s.pipelined_after_starttls == b'',
              'EHLO inside TLS %d, pipelined %r'
              % (s.ehlo_tls, s.pipelined_after_starttls))
        check(s.sni is None, 'SNI %r sent for an IP literal' % s.sni)
        lines = tls_lines(d)
        check(len(lines) == 1, 'TLS lines %r' % lines)
        trust, host, ip, port, ver, cipher, b1, b2 = lines[0]
        # server.pem is signed by ca.pem; an IP literal has no name to
        # match, so the chain is trusted but nothing is "Verified".
        check(trust == 'Trusted' and host == '127.0.0.1' and
              ip == '127.0.0.1' and int(port) == p.port and
              ver == want and cipher.startswith(
                  'TLS1-3-' if want == 'TLSv1.3' else 'TLS-') and
              b1 == b2 and int(b1) >= 128, 'TLS line %r' % (lines[0],))


def test_tls_client_may_plain_peer():
    with SmtpPeer() as p, \
            daemon('tlsmayplain', p.port, smarthost_tls='may') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        p.wait_idle()
        s = p.sessions[0]
        check('STARTTLS' not in commands(s) and not s.tls,
              'STARTTLS to a peer that does not offer it: %r' % s.commands)
        check(tls_lines(d) == [], 'TLS line %r' % tls_lines(d))


def test_tls_client_may_handshake_fails_then_plain():
    with SmtpPeer(tls='starttls', tls_break=True) as p, \
            daemon('tlsmaybreak', p.port, smarthost_tls='may') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check_delivered_body(p)
        check(len(p.sessions) == 2, '%d sessions, want 2 (TLS, then plain)'
              % len(p.sessions))
        first, second = p.sessions
        check(first.starttls and commands(first) == ['EHLO', 'STARTTLS'],
              'first session: %r' % first.commands)
        check(not second.starttls and not second.tls and
              'MAIL' in commands(second), 'second session: %r'
              % second.commands)
        check(re.search(r'SSL_connect error to 127\.0\.0\.1\[127\.0\.0\.1\]'
                        r':%d: ' % p.port, d.log_text()),
              'no SSL_connect error line:\n%s' % d.log_tail(10))


def test_tls_client_encrypt_not_offered():
    with SmtpPeer() as p, \
            daemon('tlsencplain', p.port, smarthost_tls='encrypt') as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.4',
                     r'TLS is required, but was not offered by host '
                     r'127\.0\.0\.1\[127\.0\.0\.1\]')
        p.wait_idle()
        no_mail_sent(p, 'encrypt to a peer without STARTTLS')
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
        check(bounce_ids(d, qid) == [], 'bounced')


def test_tls_client_encrypt_does_not_check_cert():
    with SmtpPeer(tls='starttls', certfile=cert('selfsigned.pem'),
                  keyfile=cert('selfsigned.key')) as p, \
            daemon('tlsencself', p.port, smarthost_tls='encrypt') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check(p.sessions[0].tls, 'not over TLS')
        check([l[0] for l in tls_lines(d)] == ['Untrusted'],
              'TLS lines %r' % tls_lines(d))


def test_tls_client_encrypt_handshake_fails_deferred():
    with SmtpPeer(tls='starttls', tls_break=True) as p, \
            daemon('tlsencbreak', p.port, smarthost_tls='encrypt') as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.5',
                     r'Cannot start TLS: handshake failure')
        p.wait_idle()
        no_mail_sent(p, 'encrypt after a failed handshake')
        check(len(p.sessions) == 1, 'reconnected in clear at encrypt: %d '
              'sessions' % len(p.sessions))


def test_tls_client_starttls_refused():
    """Offered, then 454: may goes on in clear, encrypt defers."""
    refuse = (lambda s, v, a, t: '454 4.7.0 TLS not available due to '
              'local problem' if v == 'STARTTLS' else None)
    with SmtpPeer(tls='starttls', policy=refuse) as p, \
            daemon('tls454may', p.port, smarthost_tls='may') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
    with SmtpPeer(tls='starttls', policy=refuse) as p, \
            daemon('tls454enc', p.port, smarthost_tls='encrypt') as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.4', r'454 4\.7\.0')
        p.wait_idle()
        no_mail_sent(p, 'encrypt after 454 to STARTTLS')


def test_tls_client_smtps():
    with SmtpPeer(tls='smtps') as p, \
            daemon('tlssmtps', p.port, smarthost_tls='smtps') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check_delivered_body(p)
        p.wait_idle()
        s = p.sessions[0]
        check(s.tls and not s.starttls and commands(s)[:2] ==
              ['EHLO', 'MAIL'], 'smtps session: tls %r, %r'
              % (s.tls, s.commands))
        check(len(tls_lines(d)) == 1, 'TLS lines %r' % tls_lines(d))


def test_tls_client_smtps_to_plain_peer():
    with SmtpPeer() as p, \
            daemon('tlssmtpsplain', p.port, smarthost_tls='smtps') as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.5',
                     r'Cannot start TLS')
        no_mail_sent(p, 'smtps to a plain peer')


def test_tls_client_verify_ca_passes():
    """verify: a chain to ca_file that names the smarthost."""
    with DnsServer(SECURE_ZONE) as dns, SmtpPeer(tls='starttls') as p, \
            daemon('tlsverify', p.port, host='[smarthost.test]',
                   smarthost_tls='verify', dns_servers=dns.server,
                   dnssec='no') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check([l[0] for l in tls_lines(d)] == ['Verified'],
              'TLS lines %r' % tls_lines(d))


def test_tls_client_verify_resumed():
    """verify over a resumed session (TLS 1.3 with mbedTLS 3.x: a ticket
    that carries no certificate): what the first handshake verified
    holds, the second delivery is Verified too, not refused for want of a
    certificate."""
    with DnsServer(SECURE_ZONE) as dns, SmtpPeer(tls='starttls') as p, \
            daemon('tlsvresume', p.port, host='[smarthost.test]',
                   smarthost_tls='verify', dns_servers=dns.server,
                   dnssec='no') as d:
        for _ in range(2):
            qid = send(d)
            one_delivery(d, qid, 'sent', r'2\.0\.0')
            p.wait_idle()
        ss = p.tls_sessions()
        check(len(ss) == 2 and not ss[0].reused and ss[1].reused,
              'resumption: %r (want False, True)' % [s.reused for s in ss])
        want = tls_version_expected()
        check([(l[0], l[4]) for l in tls_lines(d)] ==
              [('Verified', want)] * 2, 'TLS lines %r, want 2 x Verified '
              '%s' % (tls_lines(d), want))


def test_tls_client_verify_ip_literal_deferred():
    """verify needs the name to match too (Postfix's
    smtp_tls_verify_cert_match = hostname): an IP literal has none, so a
    trusted chain alone is not enough (no password to a MITM holding any
    publicly trusted certificate)."""
    verify_fails('tlsvip', 'server', 'verify',
                 r'^Server certificate not verified', trust='Trusted')


def verify_fails(name, certname, level, reason_re, trust=None):
    with SmtpPeer(tls='starttls', certfile=cert(certname + '.pem'),
                  keyfile=cert(certname + '.key')) as p, \
            daemon(name, p.port, smarthost_tls=level) as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.5', reason_re)
        p.wait_idle()
        no_mail_sent(p, '%s with %s' % (level, certname))
        check(p.sessions[0].tls, 'the handshake itself should succeed')
        check(bounce_ids(d, qid) == [] and d.mailq_ids() == [qid],
              'not deferred: queue %r' % d.mailq_ids())
        check(trust is None or [l[0] for l in tls_lines(d)] == [trust],
              'TLS lines %r' % tls_lines(d))
        return d


def test_tls_client_verify_selfsigned_deferred():
    verify_fails('tlsvself', 'selfsigned', 'verify',
                 r'^Server certificate not trusted')


def test_tls_client_verify_expired_deferred():
    verify_fails('tlsvexp', 'expired', 'verify',
                 r'^Server certificate not trusted .*expired')


def test_tls_client_secure_ip_literal_deferred():
    """secure needs a name to match: an IP literal never has one."""
    verify_fails('tlssecip', 'server', 'secure',
                 r'^Server certificate not verified')


SECURE_ZONE = ('local-data: "smarthost.test. A 127.0.0.1"\n'
               'local-data: "wrong.test. A 127.0.0.1"\n')


def test_tls_client_secure_names():
    with DnsServer(SECURE_ZONE) as dns, SmtpPeer(tls='starttls') as p:
        with daemon('tlssecok', p.port, host='[smarthost.test]',
                    smarthost_tls='secure', dns_servers=dns.server,
                    dnssec='no') as d:
            qid = send(d)
            one_delivery(d, qid, 'sent', r'2\.0\.0')
            lines = tls_lines(d)
            check(len(lines) == 1 and lines[0][:3] ==
                  ('Verified', 'smarthost.test', '127.0.0.1'),
                  'TLS lines %r' % lines)
            check(p.sessions[0].sni == 'smarthost.test', 'SNI %r'
                  % p.sessions[0].sni)
        n = len(p.sessions)
        with daemon('tlssecbad', p.port, host='[wrong.test]',
                    smarthost_tls='secure', dns_servers=dns.server,
                    dnssec='no') as d:
            qid = send(d)
            one_delivery(d, qid, 'deferred', r'4\.7\.5',
                         r'^Server certificate not verified')
            p.wait_idle()
            later = p.sessions[n:]
            check(later and later[0].sni == 'wrong.test' and
                  all(not s.mails for s in later),
                  'wrong name: SNI %r, commands %r'
                  % (later[0].sni if later else None,
                     [s.commands for s in later]))
            check([l[0] for l in tls_lines(d)] == ['Trusted'],
                  'TLS lines %r' % tls_lines(d))


def test_tls_client_no_ca_file_verify_deferred():
    with SmtpPeer(tls='starttls') as p, \
            daemon('tlsnoca', p.port, smarthost_tls='verify',
                   ca_file='/nonexistent/ca.pem') as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.5',
                     r'Server certificate not trusted')
        no_mail_sent(p, 'verify without a CA')


# --- client certificate, resumption ---------------------------------------

def test_tls_client_cert_presented_when_asked():
    with SmtpPeer(tls='starttls', client_cert='require') as p, \
            daemon('tlsccert', p.port, smarthost_tls='encrypt',
                   client_cert=cert('client.pem'),
                   client_key=cert('client.key')) as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check(p.sessions[0].client_cert, 'no client certificate seen')
    with SmtpPeer(tls='starttls', client_cert='ask') as p, \
            daemon('tlsnoccert', p.port, smarthost_tls='encrypt') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check(p.sessions[0].tls and not p.sessions[0].client_cert,
              'a client certificate from nowhere')


def test_tls_client_session_resumed():
    with SmtpPeer(tls='starttls') as p, \
            daemon('tlsresume', p.port, smarthost_tls='encrypt') as d:
        q1 = send(d)
        one_delivery(d, q1, 'sent', r'2\.0\.0')
        p.wait_idle()
        q2 = send(d)
        one_delivery(d, q2, 'sent', r'2\.0\.0')
        p.wait_idle()
        ss = p.tls_sessions()
        check(len(ss) == 2, '%d TLS sessions' % len(ss))
        check(not ss[0].reused and ss[1].reused,
              'resumption: first %r, second %r (want False, True)'
              % (ss[0].reused, ss[1].reused))
        check(len(tls_lines(d)) == 2, 'TLS lines %r' % tls_lines(d))


TICKET_FLOOD = 200000		# NewSessionTickets, ~255 bytes each


def _ticket_flood_peer(lsock, st):
    """One session: STARTTLS, the server's side of the handshake through
    memory BIOs, then TICKET_FLOOD TLS 1.3 NewSessionTickets (OpenSSL's
    num_tickets) in one sendall, and a close.  Made before the first is
    sent, they reach ferry faster than it can take them: the socket
    never runs dry.  st['sending'] is set before the sendall, st['sent']
    after it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert('server.pem'), cert('server.key'))
    ctx.num_tickets = TICKET_FLOOD
    s, _ = lsock.accept()
    with s:
        s.settimeout(30)
        f = s.makefile('rb', buffering=0)
        for reply in (b'220 flood.test ESMTP', b'250-flood.test\r\n'
                      b'250 STARTTLS', b'220 2.0.0 Ready to start TLS'):
            s.sendall(reply + b'\r\n')
            if not reply.startswith(b'220 2'):
                f.readline()		# EHLO, STARTTLS: nothing behind
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_side=True)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                data = s.recv(65536)
                if not data:
                    return
                inc.write(data)
        st['version'] = obj.version()
        flood = out.read()
        st['sending'] = True
        try:
            s.sendall(flood)
        except OSError:
            pass
        st['sent'] = True


def test_tls_client_ticket_flood_loop_runs():
    """A smarthost that sends TLS 1.3 NewSessionTickets without end
    (mbedTLS 3.x): ferry handles a few per read and goes back to the
    loop, so its listener answers while the tickets still pour in, the
    delivery ends when the peer hangs up, and nothing is lost.  Before,
    each ticket restarted tls_conn_read()'s loop: the process did
    nothing else until the socket ran dry.  Under TLS 1.2 (mbedTLS 2.x)
    there are no tickets after the handshake: the rest still holds."""
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(1)
    st = {}
    t = threading.Thread(target=_ticket_flood_peer, args=(lsock, st),
                         daemon=True)
    t.start()
    with lsock, daemon('tlsflood', lsock.getsockname()[1],
                       smarthost_tls='encrypt') as d:
        qid = send(d)
        wait_for(lambda: 'sending' in st, 20, 'the flood to start')
        with d.connect() as c:
            c.expect(None, 220)
            during = 'sent' not in st
        t.join(60)
        check('sent' in st, 'the flood never ended')
        if st['version'] == 'TLSv1.3':
            check(during, 'no banner until %d tickets were taken'
                  % TICKET_FLOOD)
        one_delivery(d, qid, 'deferred', r'4\.\d\.\d', timeout=30)
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())


# --- AUTH -------------------------------------------------------------------

def auth_daemon(name, p, level='encrypt', password=PASSWORD, **cfg):
    d = daemon(name, p.port, smarthost_tls=level, **cfg)
    d.cfg['smarthost_auth'] = auth_file(d.dir, password=password)
    d.write_config()
    return d


def test_tls_client_no_auth_after_reload():
    """A SIGHUP while a connection is before AUTH (here: answering its
    EHLO inside TLS) may have swapped smarthost and credentials: no
    secret goes out on that connection, and a new one logs in and sends
    at once.  It was deferred (4.7.0) and the smarthost backed off, so
    one SIGHUP from a certificate renewal deferred the whole queue."""
    import test_tls
    state = {}

    def policy(sess, verb, arg, txn):
        if verb == 'EHLO' and sess.tls and 'd' in state and \
                'hup' not in state:
            state['hup'] = True
            test_tls._hup(state['d'])
        return None
    with SmtpPeer(tls='starttls', auth=(USER, PASSWORD),
                  policy=policy) as p, auth_daemon('authhup', p) as d:
        state['d'] = d
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        p.wait_idle()
        s = p.sessions
        check(state.get('hup') and len(s) == 2 and s[0].auths == [] and
              s[0].txns == [] and [a['ok'] for a in s[1].auths] == [True],
              'hup %r, sessions %r' % (state.get('hup'),
                                      [(x.auths, x.txns) for x in s]))
        log = d.log_text()
        check(re.search(r'127\.0\.0\.1\]: the configuration was reloaded '
                        r'before AUTH; connecting again', log) and
              'status=deferred' not in log and
              'temporarily suspended' not in log,
              'log: %s' % d.log_tail(20))


def test_tls_client_auth_plain_over_tls():
    with SmtpPeer(tls='starttls', auth=(USER, PASSWORD)) as p, \
            auth_daemon('authplain', p) as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        p.wait_idle()
        s = p.sessions[0]
        check(s.auths == [{'mech': 'PLAIN', 'user': USER,
                           'password': PASSWORD, 'ok': True, 'tls': True}],
              'auths %r' % s.auths)
        check(commands(s)[:5] == ['EHLO', 'STARTTLS', 'EHLO', 'AUTH',
                                  'MAIL'], 'commands %r' % s.commands)
        check(not s.auth_in_clear, 'AUTH in clear')
        check(PASSWORD not in d.log_text(), 'the password is in the log')


def test_tls_client_auth_login_only():
    with SmtpPeer(tls='starttls', auth=(USER, PASSWORD),
                  auth_mechs=('LOGIN',)) as p, \
            auth_daemon('authlogin', p) as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        s = p.sessions[0]
        check([(a['mech'], a['ok'], a['tls']) for a in s.auths] ==
              [('LOGIN', True, True)], 'auths %r' % s.auths)


def test_tls_client_auth_no_usable_mechanism_deferred():
    """A smarthost that offers AUTH, but none of PLAIN and LOGIN (only
    CRAM-MD5 here): the mail went out without a login, and a smarthost
    that relays only for those who log in refused it for good, so every
    message bounced (554 5.7.1).  Postfix defers it with 4.7.0, "offered
    no compatible authentication mechanisms"; so does ferry now, and
    nothing of the mail is sent."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and not sess.authenticated:
            return '554 5.7.1 <%s>: Relay access denied' % arg.strip('<>')
        return None

    with SmtpPeer(tls='starttls', auth=(USER, PASSWORD),
                  auth_mechs=('CRAM-MD5',), policy=policy) as p, \
            auth_daemon('authnomech', p) as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.0',
                     r'offered no compatible authentication mechanisms')
        p.wait_idle()
        no_mail_sent(p, 'AUTH offered, but no mechanism we speak')
        check(bounce_ids(d, qid) == [] and d.mailq_ids() == [qid],
              'bounced or lost: queue %r' % d.mailq_ids())


def test_tls_client_auth_smtps():
    with SmtpPeer(tls='smtps', auth=(USER, PASSWORD)) as p, \
            auth_daemon('authsmtps', p, level='smtps') as d:
        qid = send(d)
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check(p.sessions[0].authenticated == USER, 'not authenticated')


def test_tls_client_auth_never_in_clear():
    """A smarthost that offers AUTH but no TLS never sees the password,
    at level may or none: deferred 4.7.0."""
    for level in ('may', 'none'):
        with SmtpPeer(auth=(USER, PASSWORD)) as p, \
                auth_daemon('authclear' + level, p, level=level) as d:
            qid = send(d)
            one_delivery(d, qid, 'deferred', r'4\.7\.0',
                         r'smarthost_auth is never sent without TLS')
            p.wait_idle()
            check(p.all_auths() == [] and
                  not any(s.auth_in_clear for s in p.sessions),
                  'level %s: AUTH in clear: %r' % (level, p.sessions[0]
                                                    .commands))
            no_mail_sent(p, 'AUTH needed but no TLS (%s)' % level)


def test_tls_client_auth_535_deferred_and_backs_off():
    with SmtpPeer(tls='starttls', auth=(USER, 'another password')) as p, \
            auth_daemon('auth535', p) as d:
        qid = send(d)
        one_delivery(d, qid, 'deferred', r'4\.7\.8',
                     r'SASL authentication failed; server 127\.0\.0\.1'
                     r'\[127\.0\.0\.1\] said: 535 5\.7\.8')
        check(re.search(r'ferry/smtp\[\d+\]: warning: SASL authentication '
                        r'failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: '
                        r'535 ', d.log_text()), 'no warning line:\n%s'
              % d.log_tail(8))
        p.wait_idle()
        no_mail_sent(p, 'after 535')
        check(bounce_ids(d, qid) == [] and d.mailq_ids() == [qid],
              'bounced or lost: queue %r' % d.mailq_ids())
        n = p.connections
        # The destination backs off: new mail waits instead of costing
        # the smarthost one more failed login per message.
        q2 = send(d)
        time.sleep(1.5)
        check(p.connections == n, 'reconnected at once after a 535 '
              '(%d -> %d connections)' % (n, p.connections))
        check(sorted(d.mailq_ids()) == sorted([qid, q2]), 'queue %r'
              % d.mailq_ids())


def test_tls_client_auth_failure_dsn():
    """The smarthost's AUTH failure is deferred with its own RFC 3463
    code made temporary, and only when it is one: a code of four parts,
    a code glued to other text or one on a multi-line reply's first
    line is what the reply parser (reply_enh_code()) says it is, never
    bytes copied up to the next space ("4.7.8.0", "4.7.8:")."""
    cases = [('535 5.7.8.0 no', r'4\.7\.0'),
             ('535 5.7.8: no', r'4\.7\.0'),
             ('535-5.7.8 Username and Password not accepted.\r\n'
              '535 5.7.8 https://support.example/?p=BadCredentials',
              r'4\.7\.8'),
             ('454 4.7.0 try later', r'4\.7\.0')]
    for i, (reply, dsn) in enumerate(cases):
        with SmtpPeer(tls='starttls', auth=(USER, 'another password'),
                      auth_fail_reply=reply) as p, \
                auth_daemon('authdsn%d' % i, p) as d:
            qid = send(d)
            one_delivery(d, qid, 'deferred', dsn,
                         r'SASL authentication failed; server 127\.0\.0'
                         r'\.1\[127\.0\.0\.1\] said: ' +
                         re.escape(reply.split('\r\n')[0][:9]))
            p.wait_idle()
            no_mail_sent(p, 'after %r' % reply)


def test_tls_client_auth_bad_file_defers():
    with SmtpPeer(tls='starttls', auth=(USER, PASSWORD)) as p:
        d = daemon('authbadfile', p.port, smarthost_tls='encrypt')
        d.cfg['smarthost_auth'] = auth_file(d.dir, mode=0o644)
        d.write_config()
        with d:
            qid = send(d)
            one_delivery(d, qid, 'deferred', r'4\.7\.0', r'smarthost_auth')
            check(re.search(r'warning: smarthost_auth: .*deferred',
                            d.log_text()), 'no warning:\n%s'
                  % d.log_tail(8))
            check(p.connections == 0, 'connected without usable '
                  'credentials')


# --- a private Postfix as the smarthost ---------------------------------------

class Postfix:
    """test/postfix-instance.sh with a test's main.cf lines, relaying to
    relay_port (a SmtpPeer that records what arrives)."""

    def __init__(self, name, relay_port, extra, prepare=None):
        self.dir = tempfile.mkdtemp(prefix='ferry-pf-%s-' % name)
        os.chmod(self.dir, 0o755)
        self.relay_port = relay_port
        # prepare(dir) writes files into the instance's directory and
        # returns more main.cf lines.
        self.extra = extra + (prepare(self.dir) if prepare else '')
        self.port = None

    def __enter__(self):
        check(IS_ROOT and shutil.which('postfix'), 'needs root and postfix')
        err = ''
        env = dict(os.environ, PF_EXTRA_CF=self.extra)
        for _ in range(3):	# another test may take the port first
            port = free_port()
            p = subprocess.run(['sh', PF_SH, 'start', self.dir, str(port),
                                '[127.0.0.1]:%d' % self.relay_port],
                               env=env, capture_output=True, timeout=60)
            if p.returncode == 0:
                self.port = port
                return self
            err = (p.stdout + p.stderr).decode(errors='replace')
        raise TestFailure('postfix-instance.sh start failed: %s\n%s'
                          % (err[-1500:], self.log()[-1500:]))

    def __exit__(self, et, *a):
        subprocess.run(['sh', PF_SH, 'stop', self.dir],
                       capture_output=True, timeout=60)
        if et is None and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def log(self):
        try:
            with open(os.path.join(self.dir, 'maillog'), 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError:
            return ''


def check_relayed_by_postfix(sink, proto):
    """The message came through Postfix (its Received: says how ferry
    reached it) with ferry's body intact (Postfix adds a Date:)."""
    got = sink.wait_delivered(1)[0].body
    head, _, rest = got.partition(b'\r\n\r\n')
    check(rest == BODY.partition(b'\r\n\r\n')[2] and
          b'Message-ID: <tls1@example.test>' in head,
          'relayed message differs: %s' % short(got, 600))
    check(re.match(rb'Received: from ferry\.test \(unknown \[127\.0\.0\.1\]'
                   rb'\)\r\n\tby postfix-bench\.test \(Postfix\) with %s '
                   % proto.encode(), got), 'Postfix\'s Received: is not %s: '
          '%s' % (proto, short(got, 200)))


def pf_tls_cf():
    return ('smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n'
            'smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n'
            % (cert('server.pem'), cert('server.key')))


def sasl_setup(dirpath, user, password, realm='ferry.test'):
    """A Cyrus SASL config of Postfix's own: sasldb with one user, PLAIN
    and LOGIN only.  smtpd.conf must be in DIR/sasl of the instance's
    config directory: Debian 12's Postfix 3.7 looks there whatever
    cyrus_sasl_config_path says (seen here: with the file elsewhere,
    Cyrus falls back to /etc/sasldb2)."""
    sasl = os.path.join(dirpath, 'sasl')
    os.mkdir(sasl)
    db = os.path.join(sasl, 'sasldb2')
    with open(os.path.join(sasl, 'smtpd.conf'), 'w') as f:
        f.write('pwcheck_method: auxprop\nauxprop_plugin: sasldb\n'
                'mech_list: PLAIN LOGIN\nsasldb_path: %s\n' % db)
    p = subprocess.run(['saslpasswd2', '-p', '-c', '-f', db, '-u', realm,
                        user], input=password.encode(), capture_output=True)
    check(p.returncode == 0, 'saslpasswd2: %s' % p.stderr.decode())
    pw = pwd.getpwnam('postfix')
    for f in (sasl, db, os.path.join(sasl, 'smtpd.conf')):
        os.chown(f, pw.pw_uid, pw.pw_gid)
    return ('smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\n'
            'smtpd_sasl_path = smtpd\ncyrus_sasl_config_path = %s\n'
            'smtpd_sasl_local_domain = %s\nsmtpd_tls_auth_only = yes\n'
            % (sasl, realm))


def test_tls_client_postfix_starttls_auth():
    """Postfix relays only for an authenticated client (127.0.0.1 is not
    enough), offers AUTH only inside TLS, checks passwords with its own
    Cyrus SASL: ferry's mail arrives behind it; a wrong password is a
    deferral, never a bounce."""
    extra = pf_tls_cf() + \
        'smtpd_relay_restrictions = permit_sasl_authenticated, reject\n'
    with SmtpPeer() as sink, Postfix(
            'sasl', sink.port, extra,
            prepare=lambda dirpath: sasl_setup(dirpath, USER, PASSWORD)) \
            as pf:
        with DnsServer(SECURE_ZONE) as dns, \
                auth_daemon('pfsasl', pf, level='verify',
                            host='[smarthost.test]', dns_servers=dns.server,
                            dnssec='no') as d:
            qid = send(d)
            one_delivery(d, qid, 'sent', r'2\.0\.0', r'queued as')
            check_relayed_by_postfix(sink, 'ESMTPSA')
            log = pf.log()
            check(re.search(r'client=unknown\[127\.0\.0\.1\], '
                            r'sasl_method=PLAIN, sasl_username=%s'
                            % USER, log), 'Postfix did not see AUTH '
                  'PLAIN:\n%s' % log[-1500:])
            check(re.search(r'TLS connection established from unknown'
                            r'\[127\.0\.0\.1\]: %s'
                            % re.escape(tls_version_expected()), log),
                  'Postfix saw no TLS:\n%s' % log[-1500:])
            check([l[0] for l in tls_lines(d)] == ['Verified'],
                  'TLS lines %r' % tls_lines(d))
        with auth_daemon('pfsaslbad', pf, password='wrong') as d:
            qid = send(d)
            one_delivery(d, qid, 'deferred', r'4\.7\.8',
                         r'SASL authentication failed; server '
                         r'127\.0\.0\.1\[127\.0\.0\.1\] said: 535 5\.7\.8')
            check(bounce_ids(d, qid) == [], 'bounced')
            check(re.search(r'SASL PLAIN authentication failed',
                            pf.log()), 'Postfix logged no failure')
            check(len(sink.delivered()) == 1, 'relayed anyway')


def cert_fp(name):
    """Postfix's sha256 fingerprint of the leaf in test/certs/NAME."""
    with open(cert(name)) as f:
        pem = f.read()
    leaf = pem[:pem.index('-----END CERTIFICATE-----') + 25]
    h = hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest().upper()
    return ':'.join(h[i:i + 2] for i in range(0, len(h), 2))


def test_tls_client_postfix_client_cert_relay():
    """Postfix relays only for the listed client certificate
    (permit_tls_clientcerts): with client.pem ferry's mail gets through;
    with other.pem (signed by the same CA, not listed) it is refused."""
    extra = pf_tls_cf() + (
        'smtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = %s\n'
        'smtpd_tls_fingerprint_digest = sha256\n'
        'relay_clientcerts = inline:{ %s=client.relay.test }\n'
        'smtpd_relay_restrictions = permit_tls_clientcerts, reject\n'
        % (cert('ca.pem'), cert_fp('client.pem')))
    with SmtpPeer() as sink, Postfix('ccert', sink.port, extra) as pf:
        with daemon('pfccert', pf.port, smarthost_tls='encrypt',
                    client_cert=cert('client.pem'),
                    client_key=cert('client.key')) as d:
            qid = send(d)
            one_delivery(d, qid, 'sent', r'2\.0\.0')
            check_relayed_by_postfix(sink, 'ESMTPS')
            check(re.search(r'Trusted TLS connection established from '
                            r'unknown\[127\.0\.0\.1\]', pf.log()),
                  'Postfix did not trust the client certificate:\n%s'
                  % pf.log()[-1500:])
        with daemon('pfccertother', pf.port, smarthost_tls='encrypt',
                    client_cert=cert('other.pem'),
                    client_key=cert('other.key')) as d:
            qid = send(d)
            one_delivery(d, qid, 'bounced', r'5\.7\.1',
                         r'554 5\.7\.1 .*Access denied')
            check(len(sink.delivered()) == 1, 'relayed for other.pem')
