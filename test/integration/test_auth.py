"""
test_auth.py - the SASL server (AUTH PLAIN and LOGIN) from the wire:
only over TLS (and on 25 with auth_over_plaintext = yes, never on 587),
no credentials read before STARTTLS, MAIL before AUTH refused on 587 and
465, every reply of the AUTH dialogue, the failure log in Postfix's shape
(fail2ban's postfix-sasl filter must match it), the brute-force throttle
(slowed, then refused, another address unaffected), the bound on
waiting Argon2 checks and the cache of recent logins, relaying by AUTH,
the sasl_ fields of the queue log line, and the users file at start-up
and on SIGHUP.  Every refusal checks that nothing was queued.
"""

import ctypes
import ctypes.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time

from test_tls import no_data_accepted
from ferrytest import (Daemon, check, transact, b64, auth_plain, serial,
                       TRUSTED, UNTRUSTED, SLOW, IS_ROOT)

BODY = (b'From: a@example.test\r\nTo: b@other.test\r\n'
        b'Subject: authenticated\r\n\r\nbody line\r\n')
USER, PASSWORD = 'alice', 'correct horse battery'
USERS = {USER: PASSWORD, 'bob': 'b0b-s3cret'}
STAMP = r'^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ferry/smtpd\[\d+\]: '
OK_TEXT = '235 2.7.0 Authentication successful'
FAIL_TEXT = '535 5.7.8 Error: authentication failed: authentication failure'

# fail2ban's filter.d/postfix.conf, mode "auth" (postfix-sasl), with
# <HOST> filled in; Python wants the inline (?i) scoped.
FAIL2BAN_SASL = re.compile(
    r'warning: [-._\w]+\[(?P<host>[\d.]+)\]: SASL '
    r'(?i:LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed(:.*)?$')


def auth_daemon(name='auth', **kw):
    kw.setdefault('tls', True)
    kw.setdefault('users', USERS)
    return Daemon(name, submission=True, smtps=True, **kw)


def sub_tls(d, src=None, port=None):
    """A session on 587 (or port) with TLS and EHLO done."""
    c, kw = d.tls_session(port=port or d.sub_port, src=src)
    return c


def sasl_lines(d):
    return [l for l in d.log_text().splitlines() if 'SASL' in l]


# --- AUTH only over TLS ------------------------------------------------------

def test_auth_before_starttls_refused():
    """AUTH before STARTTLS on 25 and 587: 530, the initial response is
    not decoded and the next line is not read as credentials."""
    with auth_daemon('auth-notls') as d:
        for port in (d.port, d.sub_port):
            with d.connect(port=port) as c:
                c.hello()
                r = c.expect('AUTH LOGIN', 530, '5.7.0')
                check('Must issue a STARTTLS command first' in r.text,
                      '%d: AUTH LOGIN: %r' % (port, r.text))
                r = c.cmd(b64(USER))
                check(500 <= r.code <= 504, '%d: the user line after a '
                      'refused AUTH LOGIN got %r (read as credentials?)'
                      % (port, r.text))
                r = c.cmd(b64(PASSWORD))
                check(500 <= r.code <= 504, '%d: the password line got %r'
                      % (port, r.text))
                c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 530,
                         '5.7.0')
                c.expect('AUTH PLAIN', 530, '5.7.0')
                r = c.cmd(auth_plain(USER, PASSWORD))
                check(500 <= r.code <= 504, '%d: the PLAIN line got %r'
                      % (port, r.text))
                # nothing was authenticated: 587 still wants TLS first
                r = c.cmd('MAIL FROM:<s@example.test>')
                if port == d.sub_port:
                    check(r.code == 530, '587: MAIL after refused AUTH: %r'
                          % r.text)
                c.expect('QUIT', 221)
        time.sleep(0.2)
        check(sasl_lines(d) == [], 'credentials sent before TLS were '
              'checked:\n' + '\n'.join(sasl_lines(d)))
        # the same credentials do work once TLS is up
        with sub_tls(d) as c:
            r = c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235,
                         '2.7.0')
        d.assert_empty('AUTH before STARTTLS')


def test_auth_refused_without_starttls_offered():
    """inbound_tls = none: port 25 offers neither STARTTLS nor AUTH, so
    AUTH there is "503 5.5.1 Error: authentication not enabled", as in
    Postfix, not "530 Must issue a STARTTLS command first" for a
    STARTTLS that answers 502.  587 still offers STARTTLS and says 530."""
    with auth_daemon('auth-tls-none', inbound_tls='none') as d:
        with d.connect() as c:
            c.expect(None, 220)
            kw = c.ehlo_keywords()
            check('STARTTLS' not in kw and
                  not any(k.startswith('AUTH') for k in kw),
                  '25 with inbound_tls = none offers %r' % kw)
            c.expect('STARTTLS', 502, '5.5.1')
            for line in ('AUTH PLAIN ' + auth_plain(USER, PASSWORD),
                         'AUTH LOGIN'):
                r = c.expect(line, 503, '5.5.1')
                check('authentication not enabled' in r.text,
                      '25: %s: %r' % (line.split()[1], r.text))
            c.expect('QUIT', 221)
        with d.connect(port=d.sub_port) as c:
            c.hello()
            r = c.expect('AUTH LOGIN', 530, '5.7.0')
            check('Must issue a STARTTLS command first' in r.text,
                  '587: %r' % r.text)
            c.expect('QUIT', 221)
        time.sleep(0.2)
        check(sasl_lines(d) == [], 'credentials were checked:\n'
              + '\n'.join(sasl_lines(d)))
        d.assert_empty('AUTH without STARTTLS offered')


def test_auth_garbage_too_many_errors_logged_for_fail2ban():
    """Ten undecodable AUTH responses are ten errors: 421, and the log
    says "too many errors after AUTH from unknown[...]" as Postfix does,
    which fail2ban's stock postfix filter (default mode, the one
    doc/ferry.8's [postfix] jail uses, and mode=errors) bans on."""
    with auth_daemon('auth-errors') as d:
        with sub_tls(d) as c:
            for i in range(9):
                c.expect('AUTH PLAIN', 334)
                c.expect('!not base64!', 501, '5.5.2')
            c.expect('AUTH PLAIN', 334)
            c.send('!not base64!\r\n')
            rs = c.replies_until_close()
            check([r.code for r in rs] == [501, 421] and
                  'too many errors' in rs[1].text,
                  'the tenth bad response got %r'
                  % [r.text for r in rs])
        d.wait_log(STAMP + r'too many errors after AUTH from '
                   r'unknown\[127\.0\.0\.1\]$')
        check(not re.search(r'warning: unknown\[127\.0\.0\.1\]: too many '
                            r'errors', d.log_text()),
              'a second, non-Postfix "too many errors" line:\n'
              + d.log_tail())
        check(shutil.which('fail2ban-regex'), 'no fail2ban-regex (sh '
              'test/deps.sh test installs it)')
        for mode in ('', 'mode=errors, '):
            p = subprocess.run(
                ['fail2ban-regex', '-o', 'ip', d.log_path,
                 'postfix[%s_daemon=ferry/\\w+]' % mode],
                capture_output=True, text=True, timeout=120 * SLOW)
            ips = p.stdout.split()
            check(p.returncode == 0 and ips == ['127.0.0.1'],
                  'fail2ban-regex postfix[%s...] found %r (exit %d) %s'
                  % (mode, ips, p.returncode, p.stderr[-500:]))


def test_auth_failures_disconnect_line_postfix_order():
    """The disconnect line counts commands in Postfix's order (ehlo,
    starttls, auth, mail, ..., unknown last) and ends "commands=OK/ALL"
    when some failed: fail2ban's postfix filter in ddos mode (and so
    aggressive) bans on "disconnect from ... auth=0/N" only when no
    failed count comes before auth=; in ferry's old order a refused MAIL
    or an unknown command hid the failed AUTH from it."""
    with auth_daemon('auth-disconnect') as d:
        with sub_tls(d) as c:
            c.expect('XYZZY', 502, '5.5.2')
            c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
            c.expect('AUTH PLAIN ' + auth_plain(USER, 'wrong'), 535, '5.7.8')
            c.expect('QUIT', 221)
        m = d.wait_log(STAMP + r'disconnect from unknown\[127\.0\.0\.1\]'
                       r' .*auth=.*$')
        check(m.group(0).endswith(' disconnect from unknown[127.0.0.1] '
                                  'ehlo=2 starttls=1 auth=0/1 mail=0/1 '
                                  'quit=1 unknown=0/1 commands=4/7'),
              'not in Postfix\'s order and shape: %r' % m.group(0))
        p = subprocess.run(
            ['fail2ban-regex', '-o', 'ip', d.log_path,
             'postfix[mode=ddos, _daemon=ferry/\\w+]'],
            capture_output=True, text=True, timeout=120 * SLOW)
        check(p.returncode == 0 and p.stdout.split() == ['127.0.0.1'],
              'fail2ban-regex postfix[mode=ddos, ...] found %r (exit %d) %s'
              % (p.stdout.split(), p.returncode, p.stderr[-500:]))


def test_mail_before_auth_refused():
    """587 and 465: MAIL before AUTH is 530 5.7.0, even from
    relay_networks and to relay_domains."""
    with auth_daemon('mail-noauth') as d:
        for port in (d.sub_port, d.smtps_port):
            with sub_tls(d, src=TRUSTED, port=port) as c:
                r = c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
                check('Authentication required' in r.text, '%d: %r'
                      % (port, r.text))
                r = c.cmd('RCPT TO:<r@relay.test>')
                check(r.code in (503, 530), '%d: RCPT: %r' % (port, r.text))
                r = c.cmd('DATA')
                check(r.code in (503, 530), '%d: DATA: %r' % (port, r.text))
                no_data_accepted(c, port)
        d.assert_empty('MAIL before AUTH')


def test_auth_over_plaintext_only_on_25():
    with auth_daemon('auth-plaintext', auth_over_plaintext='yes') as d:
        with d.connect() as c:
            c.expect(None, 220)
            kw = c.ehlo_keywords()
            check(any(k.startswith('AUTH ') and 'PLAIN' in k for k in kw),
                  '25: AUTH not offered with auth_over_plaintext: %r' % kw)
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235,
                     '2.7.0')
            qid = transact(c, BODY, rcpts=['u@other.test'])
            c.expect('QUIT', 221)
        with d.connect(port=d.sub_port) as c:
            c.expect(None, 220)
            kw = c.ehlo_keywords()
            check(not any(k.startswith('AUTH') for k in kw),
                  '587: AUTH offered in plaintext: %r' % kw)
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 530,
                     '5.7.0')
            c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
        out = d.cat(qid)
        check(re.search(rb'with ESMTPA\b', out), 'Received: lacks ESMTPA: '
              '%r' % out[:400])


def test_trace_hides_auth_initial_response():
    """With smtp tracing on (SIGUSR2), every command line is traced as
    sent, but of an AUTH line only the mechanism: its initial response
    carries the password, which never reaches the log."""
    with auth_daemon('auth-trace', auth_over_plaintext='yes') as d:
        d.signal(signal.SIGUSR2)
        d.wait_log(r'tracing on$')
        ir = auth_plain(USER, PASSWORD)
        with d.connect() as c:
            c.expect(None, 220)
            c.ehlo_keywords()
            c.expect('NOOP keep  this', 250)
            c.expect('auth plain ' + ir, 235, '2.7.0')
            c.expect('QUIT', 221)
        d.wait_log(r'trace: smtp 0x[0-9a-f]+: < NOOP keep  this$')
        d.wait_log(r'trace: smtp 0x[0-9a-f]+: < auth plain \*\*\*$')
        d.wait_log(r'trace: smtp 0x[0-9a-f]+: < QUIT$')
        log = d.log_text()
        check(ir not in log and PASSWORD not in log,
              'AUTH initial response traced: %s' % d.log_tail(40))


# --- the dialogue ----------------------------------------------------------

def test_auth_mechanisms_and_replies():
    with auth_daemon('auth-dialogue') as d:
        ok = []
        # PLAIN with the initial response; mechanism names in any case
        for line in ('AUTH PLAIN ' + auth_plain(USER, PASSWORD),
                     'auth plain ' + auth_plain('bob', 'b0b-s3cret'),
                     'AUTH PLAIN ' + auth_plain(USER, PASSWORD, USER)):
            with sub_tls(d) as c:
                r = c.expect(line, 235, '2.7.0')
                ok.append(r.text)
        # PLAIN with no initial response ("=" is an empty one: below)
        with sub_tls(d) as c:
            r = c.expect('AUTH PLAIN', 334)
            check(r.lines == ['334 '], 'PLAIN challenge %r' % r.text)
            ok.append(c.expect(auth_plain(USER, PASSWORD), 235).text)
        # LOGIN, asked step by step, and with the user as initial response
        with sub_tls(d) as c:
            r = c.expect('AUTH LOGIN', 334)
            check(r.lines == ['334 VXNlcm5hbWU6'], 'LOGIN user prompt %r'
                  % r.text)
            r = c.expect(b64(USER), 334)
            check(r.lines == ['334 UGFzc3dvcmQ6'], 'LOGIN password prompt '
                  '%r' % r.text)
            ok.append(c.expect(b64(PASSWORD), 235).text)
            # already authenticated
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 503,
                     '5.5.1')
            qid = transact(c, BODY, rcpts=['u@other.test'])
        with sub_tls(d, port=d.smtps_port) as c:
            r = c.expect('AUTH LOGIN ' + b64(USER), 334)
            check(r.lines == ['334 UGFzc3dvcmQ6'], 'LOGIN with IR: %r'
                  % r.text)
            ok.append(c.expect(b64(PASSWORD), 235).text)
        check(all(t == OK_TEXT for t in ok), 'success replies %r' % ok)
        # errors
        with sub_tls(d) as c:
            c.expect('AUTH PLAIN !!notbase64!!', 501, '5.5.2')
            c.expect('AUTH PLAIN', 334)
            c.expect('%%%', 501, '5.5.2')
            c.expect('AUTH LOGIN', 334)
            c.expect('*', 501, '5.7.0')
            c.expect('AUTH PLAIN', 334)
            c.expect('*', 501, '5.7.0')
            c.expect('AUTH CRAM-MD5', 504, '5.5.4')
            c.expect('AUTH X-UNKNOWN ' + b64('x'), 504, '5.5.4')
            # the session is still usable and still unauthenticated
            c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235)
        # AUTH inside a transaction (25, after TLS)
        c, _ = d.tls_session(port=d.port)
        with c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 503,
                     '5.5.1')
            c.expect('RSET', 250)
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235)
        check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
        # aborts and bad base64 are not failed logins
        fails = [l for l in sasl_lines(d) if 'authentication failed' in l]
        check(fails == [], 'aborted AUTH logged as a failure:\n'
              + '\n'.join(fails))
        # ... but logged, in Postfix's words, one line per '*'
        aborts = [l for l in sasl_lines(d) if re.search(
            r'warning: unknown\[127\.0\.0\.1\]: SASL (LOGIN|PLAIN) '
            r'authentication aborted$', l)]
        check(len(aborts) == 2, 'abort lines %r' % aborts)


def test_auth_aborts_count_as_errors():
    """An aborted AUTH ('*', 501 5.7.0) is an error, as in Postfix
    (auth_cmd() fails): the tenth is 421 too many errors.  Aborts never
    reach the throttle and were not counted, so a client could hold its
    slot for ever with AUTH LOGIN / '*'.  A failed password counts too."""
    with auth_daemon('auth-abort-loop') as d:
        with sub_tls(d) as c:
            c.expect('AUTH PLAIN ' + auth_plain(USER, 'wrong'), 535, '5.7.8')
            for i in range(8):
                c.expect('AUTH LOGIN', 334)
                c.expect('*', 501, '5.7.0')
            c.expect('AUTH LOGIN', 334)
            c.send('*\r\n')
            rs = c.replies_until_close()
            check([r.code for r in rs] == [501, 421] and
                  'too many errors' in rs[1].text, 'the tenth error: %r'
                  % [r.text for r in rs])
        d.wait_log(r'too many errors after AUTH from unknown\[127\.0\.0\.1\]')
        d.assert_empty('aborted AUTH')


def test_auth_empty_initial_response():
    """"=" is a zero-length initial response, not none (RFC 4954 section
    4): for PLAIN it is malformed (RFC 4616) and fails as an empty
    response line does, 535 5.7.8 with the fail2ban line; LOGIN is
    server-first, so "=" gets the user name prompt, as with Cyrus's and
    Dovecot's LOGIN.  An initial response is otherwise read as the first
    answer: a LOGIN user name that decodes but is not valid fails as it
    does after the prompt (it was a 501 that fail2ban never saw)."""
    with auth_daemon('auth-empty-ir') as d:
        with sub_tls(d) as c:
            r = c.expect('AUTH PLAIN =', 535, '5.7.8')
            check(r.text == FAIL_TEXT, 'AUTH PLAIN =: %r' % r.text)
            c.expect('AUTH PLAIN', 334)
            r = c.expect('', 535, '5.7.8')
            check(r.text == FAIL_TEXT, 'empty PLAIN response: %r' % r.text)
            for mech in ('PLAIN', 'LOGIN'):
                r = c.expect('AUTH %s %s' % (mech, b64('\0')), 535, '5.7.8')
                check(r.text == FAIL_TEXT, '%s NUL: %r' % (mech, r.text))
            c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
        with sub_tls(d) as c:
            r = c.expect('AUTH LOGIN =', 334)
            check(r.lines == ['334 VXNlcm5hbWU6'], 'AUTH LOGIN =: %r'
                  % r.text)
            c.expect(b64(USER), 334)
            c.expect(b64(PASSWORD), 235, '2.7.0')
        d.wait_log(r'SASL LOGIN authentication failed')
        fails = [l for l in sasl_lines(d) if FAIL2BAN_SASL.search(l)]
        check(len(fails) == 4 and all(re.search(
            r'warning: unknown\[127\.0\.0\.1\]: SASL (PLAIN|LOGIN) '
            r'authentication failed: authentication failure$', l)
            for l in fails), '4 failures, lines:\n' + '\n'.join(fails))
        d.assert_empty('empty initial response')


def test_auth_line_too_long_worded_per_rfc4954():
    """An over-long line inside the AUTH exchange gets RFC 4954's and
    Postfix's 500 5.5.6 Authentication exchange line is too long (it was
    500 5.5.0 Error: line too long), whole or in parts; the exchange
    ends, and the session stays usable and unauthenticated."""
    with auth_daemon('auth-long') as d:
        with sub_tls(d) as c:
            for n in (1039, 20000):		# SMTP_AUTH_LINE_MAX is 1040
                c.expect('AUTH PLAIN', 334)
                r = c.expect('x' * n, 500, '5.5.6')
                check(r.text == '500 5.5.6 Authentication exchange line '
                      'is too long', '%d: %r' % (n, r.text))
                c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235)
        d.assert_empty('long AUTH lines')


def test_wrong_password_logged_for_fail2ban():
    with auth_daemon('auth-wrong') as d:
        with sub_tls(d) as c:
            r = c.expect('AUTH PLAIN ' + auth_plain(USER, 'wrong-pass-1'),
                         535, '5.7.8')
            check(r.text == FAIL_TEXT, 'PLAIN failure reply %r' % r.text)
            c.expect('AUTH LOGIN', 334)
            c.expect(b64(USER), 334)
            r = c.expect(b64('wrong-pass-2'), 535, '5.7.8')
            check(r.text == FAIL_TEXT, 'LOGIN failure reply %r' % r.text)
            r = c.expect('AUTH PLAIN ' + auth_plain('nobody-here', 'x'),
                         535, '5.7.8')
            check(r.text == FAIL_TEXT, 'unknown user reply %r' % r.text)
            c.expect('MAIL FROM:<s@example.test>', 530, '5.7.0')
        for mech in ('PLAIN', 'LOGIN'):
            m = d.wait_log(STAMP + r'warning: unknown\[127\.0\.0\.1\]: SASL '
                           + mech + r' authentication failed: '
                           r'authentication failure$')
            line = m.group(0)
            f = FAIL2BAN_SASL.search(line)
            check(f and f.group('host') == '127.0.0.1',
                  'fail2ban postfix-sasl does not match %r' % line)
        log = d.log_text()
        check('wrong-pass' not in log and b64('wrong-pass-2') not in log,
              'a password in the log:\n' + d.log_tail())
        n = len([l for l in sasl_lines(d) if FAIL2BAN_SASL.search(l)])
        check(n == 3, '%d failure lines for 3 failures:\n%s'
              % (n, '\n'.join(sasl_lines(d))))
        d.assert_empty('wrong password')


def _timed_fail(d, src=TRUSTED):
    """One failed AUTH on a fresh 587 session: (reply, seconds)."""
    with sub_tls(d, src=src) as c:
        t0 = time.monotonic()
        r = c.cmd('AUTH PLAIN ' + auth_plain(USER, 'guess'), timeout=30)
        el = time.monotonic() - t0
        if r.code == 421:
            check(c.wait_closed(), 'not closed after 421')
        return r, el


def test_brute_force_throttle():
    """After 3 failures from one address the answers to AUTH are delayed
    (1 s doubling to 8 s); after 10 that address gets 421 4.7.0 and is
    cut off, even with the right password, while 127.0.0.2 and other
    sessions are served at once all along."""
    with auth_daemon('auth-brute', max_connections_per_client='20') as d:
        delays = []
        for i in range(3):
            r, el = _timed_fail(d)
            check(r.code == 535, 'failure %d: %r' % (i + 1, r.text))
            delays.append(el)
        check(max(delays) < 0.9, 'delayed before 3 failures: %r' % delays)
        side = {}

        def other_clients():
            """During a delayed answer: 127.0.0.2 logs in, a plain
            session gets its NOOP answered, both at once."""
            try:
                time.sleep(0.3)
                t0 = time.monotonic()
                with d.session() as c:
                    c.expect('NOOP', 250)
                side['noop'] = time.monotonic() - t0
                c = sub_tls(d, src=UNTRUSTED)
                with c:
                    t0 = time.monotonic()
                    c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD),
                             235, '2.7.0')
                    side['auth'] = time.monotonic() - t0
                    transact(c, BODY, rcpts=['u@other.test'])
            except Exception as e:
                side['error'] = str(e)

        last = None
        for n in range(4, 11):
            want = min(1.0 * 2 ** (n - 4), 8.0)
            t = None
            if n == 7:
                t = threading.Thread(target=other_clients)
                t.start()
            r, el = _timed_fail(d)
            if t:
                t.join(30)
            last = r
            delays.append(el)
            if n < 10 or r.code != 421:
                check(r.code == 535, 'failure %d: %r' % (n, r.text))
                check(el >= want * 0.8, 'failure %d answered after %.2fs, '
                      'want a delay of ~%.0fs (all: %r)'
                      % (n, el, want, delays))
                check(el <= want + 3 * SLOW, 'failure %d took %.2fs, want '
                      '~%.0fs' % (n, el, want))
        check('error' not in side, 'another client during the delay: %s'
              % side.get('error'))
        check(side.get('noop', 9) < 1.0 and side.get('auth', 9) < 1.0,
              'other clients were held up: %r' % side)
        # the eleventh try, with the right password: refused and cut off
        with sub_tls(d) as c:
            t0 = time.monotonic()
            r = c.cmd('AUTH PLAIN ' + auth_plain(USER, PASSWORD), timeout=30)
            check(r.code == 421 and r.enh() == '4.7.0' and
                  'Too many failed authentications' in r.text,
                  'after 10 failures: %r (last failure %r)'
                  % (r.text, last.text))
            check(c.wait_closed(), 'not cut off after 421')
        # 127.0.0.2 is still not slowed
        with sub_tls(d, src=UNTRUSTED) as c:
            t0 = time.monotonic()
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235)
            check(time.monotonic() - t0 < 1.0, '127.0.0.2 slowed')
        check(len(d.mailq()) == 1, 'queue %r' % d.mailq())
    return 'delays %s' % ' '.join('%.1f' % x for x in delays)


# --- costly hashes: the bound on waiting checks, the cache ----------------

# smtp.c: SMTP_VERIFY_MAX checks wait at most; one runs per loop pass.
VERIFY_MAX = 16
# A hash near auth.c's limits (AUTH_PWHASH_OPS_MAX 16, _MEM_MAX_KIB 65536):
# ~0.2 s a check here, so a queue of 16 takes seconds to drain.
COSTLY_T, COSTLY_M_KIB = 8, 64 * 1024
BUSY_TEXT = '454 4.7.0 Temporary authentication failure'


def _sodium():
    so = ctypes.CDLL(ctypes.util.find_library('sodium') or
                     'libsodium.so.23')
    check(so.sodium_init() >= 0, 'sodium_init failed')
    so.crypto_pwhash_argon2id_str.argtypes = [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
        ctypes.c_ulonglong, ctypes.c_size_t]
    so.crypto_pwhash_argon2id_str_verify.argtypes = [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
    return so


def costly_hash(password):
    """An $argon2id$ t=COSTLY_T m=COSTLY_M_KIB hash of password.  `ferry
    passwd` has no cost parameters: libsodium, as ferry links it, makes
    the hash."""
    so = _sodium()
    out = ctypes.create_string_buffer(128)
    pw = password.encode()
    check(so.crypto_pwhash_argon2id_str(out, pw, len(pw), COSTLY_T,
                                        COSTLY_M_KIB * 1024) == 0,
          'crypto_pwhash_argon2id_str failed')
    h = out.value
    check(h.startswith(b'$argon2id$v=19$m=%d,t=%d,p=1$'
                       % (COSTLY_M_KIB, COSTLY_T)), 'hash %r' % h)
    return h.decode()


def argon2_seconds(h, password):
    """What one check of hash h takes here now: the best of two (the
    machine is shared, so the lower figure is the honest cost)."""
    so = _sodium()
    h, pw = h.encode(), password.encode()
    best = None
    for _ in range(2):
        t0 = time.monotonic()
        check(so.crypto_pwhash_argon2id_str_verify(h, pw, len(pw)) == 0,
              'the costly hash does not verify')
        el = time.monotonic() - t0
        best = el if best is None else min(best, el)
    return best


def write_users_lines(d, lines):
    """auth_users = these lines, root:ferry 0640 as set_users() makes it."""
    path = os.path.join(d.dir, 'users')
    with open(path + '.new', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.chmod(path + '.new', 0o640)
    if IS_ROOT:
        os.chown(path + '.new', 0, pwd.getpwnam('ferry').pw_gid)
    os.rename(path + '.new', path)
    d.cfg['auth_users'] = path
    d.write_config()


@serial
def test_auth_argon2_bounded_and_cached():
    """24 sessions send AUTH at once, each for its own user (so no cached
    success can help) with a costly hash: at most 16 checks wait, the
    rest get 454 4.7.0 and a "too many password checks waiting" warning
    each; the waiting ones all succeed.  Meanwhile a NOOP on another
    session is answered between two checks, long before the queue has
    drained.  Then the cache: a user's second login skips Argon2 (much
    faster than the measured check time), a wrong password for that user
    does not."""
    nsess = 24
    pw = 'slow-and-steady'
    h = costly_hash(pw)
    t_argon = argon2_seconds(h, pw)
    users = ['u%02d' % i for i in range(nsess)] + ['cached']
    d = auth_daemon('auth-argon2', users=None, max_connections='40',
                    max_connections_per_client='40')
    write_users_lines(d, ['%s:%s' % (u, h) for u in users])
    with d:
        idle = d.session()
        sess = [sub_tls(d) for _ in range(nsess)]
        replies = [None] * nsess
        arrived = [None] * nsess

        def wait_reply(i):
            try:
                replies[i] = sess[i].reply(timeout=30 + 4 * nsess * t_argon)
            except Exception as e:
                replies[i] = e
            arrived[i] = time.monotonic()

        lines = [('AUTH PLAIN ' + auth_plain(u, pw) + '\r\n').encode()
                 for u in users[:nsess]]
        t_sent = time.monotonic()
        for c, line in zip(sess, lines):
            c.send(line)
        threads = [threading.Thread(target=wait_reply, args=(i,))
                   for i in range(nsess)]
        for t in threads:
            t.start()
        # The queue is full once the first 454 is logged; then a NOOP.
        d.wait_log(r'too many password checks waiting', timeout=30)
        t0 = time.monotonic()
        r = idle.cmd('NOOP', timeout=60)
        t_noop = time.monotonic()
        for t in threads:
            t.join(60 + 4 * nsess * t_argon)
        errs = [x for x in replies if not hasattr(x, 'code')]
        check(not errs, 'AUTH replies: %r' % errs)
        codes = [x.code for x in replies]
        busy = [x for x in replies if x.code == 454]
        ok = [x for x in replies if x.code == 235]
        check(len(busy) + len(ok) == nsess, 'AUTH replies %r'
              % [x.text for x in replies])
        check(busy and all(x.text == BUSY_TEXT for x in busy),
              '%d sessions sent AUTH at once with a %.2fs hash, no 454 '
              '4.7.0: %r' % (nsess, t_argon, [x.text for x in busy]))
        check(len(ok) >= VERIFY_MAX and all(x.text == OK_TEXT for x in ok),
              'only %d successes (want >= %d waiting checks): %r'
              % (len(ok), VERIFY_MAX, codes))
        warns = re.findall(STAMP + r'warning: unknown\[127\.0\.0\.1\]: SASL '
                           r'PLAIN: too many password checks waiting$',
                           d.log_text(), re.M)
        check(len(warns) == len(busy), '%d 454 replies, %d warnings:\n%s'
              % (len(busy), len(warns), d.log_tail()))
        # The NOOP: answered, and long before the last check was done.
        last = max(arrived)
        drain = last - t_sent
        check(r.code == 250, 'NOOP during the checks: %r' % r.text)
        check(drain >= (VERIFY_MAX - 2) * t_argon * 0.3,
              '%d checks of a %.2fs hash drained in %.2fs: not costly '
              'enough to show anything' % (len(ok), t_argon, drain))
        check(t_noop < last and t_noop - t0 < (last - t0) / 2,
              'NOOP took %.2fs while the checks went on for %.2fs more '
              '(Argon2 %.2fs): the loop was held'
              % (t_noop - t0, last - t0, t_argon))
        # A refused session is still usable: its AUTH goes through now.
        i = codes.index(454)
        sess[i].expect(lines[i].decode().strip(), 235, '2.7.0', timeout=30)
        for c in sess:
            c.close()
        idle.close()

        # The cache: the first login pays Argon2, a repeat does not.
        # The machine is shared: the lowest figure seen is the cost.
        t_argon = min(t_argon, argon2_seconds(h, pw))

        def timed_login(password, code):
            with sub_tls(d) as c:
                t0 = time.monotonic()
                c.expect('AUTH PLAIN ' + auth_plain('cached', password),
                         code, timeout=30)
                return time.monotonic() - t0
        first = timed_login(pw, 235)
        again = min(timed_login(pw, 235) for _ in range(3))
        wrong = timed_login('not-' + pw, 535)
        t_argon = min(t_argon, argon2_seconds(h, pw))
        check(first >= 0.25 * t_argon, 'the first login took %.3fs, one '
              'check %.3fs: no Argon2?' % (first, t_argon))
        check(again < 0.3 * t_argon and again < first / 4,
              'the repeated login took %.3fs (first %.3fs, one check '
              '%.3fs): not cached' % (again, first, t_argon))
        check(wrong >= 0.25 * t_argon, 'a wrong password answered in %.3fs '
              '(one check %.3fs): the cache answered it' % (wrong, t_argon))
    return 'Argon2 %.2fs, %d x 454 of %d, NOOP %.2fs of %.2fs, login ' \
        '%.3fs then %.3fs cached' % (t_argon, len(busy), nsess,
                                     t_noop - t0, drain, first, again)


# --- relaying by AUTH, the log ---------------------------------------------

def test_auth_relay_and_queue_log():
    with auth_daemon('auth-relay', relay_networks='127.0.0.1/32') as d:
        qids = {}
        for port, mech in ((d.sub_port, 'PLAIN'), (d.smtps_port, 'LOGIN'),
                           (d.port, 'PLAIN')):
            with sub_tls(d, src=UNTRUSTED, port=port) as c:
                if port == d.port:	# 25: no relay before AUTH
                    c.expect('MAIL FROM:<s@example.test>', 250)
                    r = c.expect('RCPT TO:<u@other.test>', 554, '5.7.1')
                    check('Relay access denied' in r.text, r.text)
                    c.expect('RSET', 250)
                if mech == 'PLAIN':
                    c.expect('AUTH PLAIN ' + auth_plain('bob', 'b0b-s3cret'),
                             235)
                else:
                    c.expect('AUTH LOGIN', 334)
                    c.expect(b64('bob'), 334)
                    c.expect(b64('b0b-s3cret'), 235)
                qid = transact(c, BODY, rcpts=['u%d@other.test' % port])
                qids[qid] = mech
                c.expect('QUIT', 221)
        q = {m['id']: m for m in d.mailq()}
        check(set(q) == set(qids), 'queue %r, sent %r' % (list(q), qids))
        for qid, mech in qids.items():
            d.wait_log(STAMP + qid + r': client=unknown\[127\.0\.0\.2\], '
                       r'sasl_method=' + mech + r', sasl_username=bob$')
            out = d.cat(qid)
            check(re.search(rb'with ESMTPSA\b', out) and
                  re.search(rb'\(using TLSv1\.[23] with cipher ', out),
                  '%s: Received: %r' % (qid, out[:400]))
            # Submitted (RFC 6409 §8): what it lacked is added.
            d.assert_submitted(qid, BODY)


def test_relay_refused_without_auth():
    with auth_daemon('auth-norelay', relay_networks='127.0.0.1/32') as d:
        c, _ = d.tls_session(src=UNTRUSTED)
        with c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            r = c.expect('RCPT TO:<u@other.test>', 554, '5.7.1')
            check('Relay access denied' in r.text, r.text)
            r = c.cmd('DATA')
            check(r.code == 554, 'DATA with no recipient: %r' % r.text)
            no_data_accepted(c, 'relay refused')
        d.assert_empty('relay without AUTH')


# --- the users file ----------------------------------------------------------

def test_users_file_refused_at_start():
    for what, mode in (('world-readable', 0o644), ('world-writable', 0o602)):
        d = auth_daemon('users-mode')
        try:
            path = d.set_users(USERS, mode=mode)
            d.start(wait=False)
            rc = d.wait_exit(10)
            check(rc == 78, '%s users file: exit %r, want 78; log:\n%s'
                  % (what, rc, d.log_tail()))
            check(path in d.log_text(), '%s: the message does not name %s:'
                  '\n%s' % (what, path, d.log_tail()))
        finally:
            d.cleanup()
    d = auth_daemon('users-missing', auth_users='/nonexistent/users')
    try:
        d.start(wait=False)
        rc = d.wait_exit(10)
        check(rc == 78 and '/nonexistent/users' in d.log_text(),
              'missing users file: exit %r:\n%s' % (rc, d.log_tail()))
    finally:
        d.cleanup()


def test_users_reload_on_sighup():
    def n_reloads():
        return d.log_text().count('reload -- version')

    def hup():
        n = n_reloads()
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5 * SLOW
        while n_reloads() <= n:
            check(time.monotonic() < deadline, 'no reload:\n' + d.log_tail())
            time.sleep(0.05)

    def login(user, pw):
        with sub_tls(d) as c:
            return c.cmd('AUTH PLAIN ' + auth_plain(user, pw)).code

    with auth_daemon('users-hup') as d:
        check(login(USER, PASSWORD) == 235, 'first login')
        d.set_users({USER: 'new-password', 'carol': 'c4rol'})
        hup()
        check(login(USER, 'new-password') == 235, 'new password refused')
        check(login('carol', 'c4rol') == 235, 'new user refused')
        check(login(USER, PASSWORD) == 535, 'old password (or a cached '
              'success) still accepted after the reload')
        # a world-readable file on reload: refused, the running users stay
        d.set_users({USER: 'third'}, mode=0o644)
        hup()
        d.wait_log(r'warning: auth_users: .*others may access')
        check(login('carol', 'c4rol') == 235, 'users lost on a bad reload')
        check(login(USER, 'third') == 535, 'a world-readable file was '
              'loaded on SIGHUP')
