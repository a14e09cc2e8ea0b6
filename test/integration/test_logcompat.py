"""
test_logcompat.py - ferry's log read by the tools a Postfix admin runs on
it: Debian's pflogsumm and fail2ban-regex with fail2ban's stock `postfix`
filter (default mode and mode=auth).  One daemon logs (to stderr, the
syslog line shape) a scenario with known counts: messages received over
SMTP, over AUTH'd submission and through sendmail; delivered to a
scripted smarthost, deferred by it (4xx) and bounced by it (5xx, with a
DSN that is delivered too); relay attempts refused; AUTH PLAIN and LOGIN
failures from two addresses and successes.  The tools are run with
exactly the command lines ferry.8 documents (LOGGING), read from the man
page, so the documentation cannot drift from what works.
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile

from ferrytest import (Daemon, Conn, check, short, stuff, auth_plain, b64,
                       TRUSTED, SLOW, REPO)
from peers import SmtpPeer, wait_delivery, wait_for, bounce_ids

FERRY_8 = os.path.join(REPO, 'doc', 'ferry.8')
DOC_LOG = '/var/log/mail.log'		# the path in the documented commands
USER, PASSWORD = 'alice', 'correct horse'

# The scenario's counts.
N_OK = 3		# port 25 from relay_networks, accepted by the peer
N_DEFER = 2		# the peer says 451 to their recipient
N_BOUNCE = 2		# the peer says 550: status=bounced, and a DSN
N_REJECT = 2		# relay attempts from outside: 554 5.7.1
FAIL_FROM = ('127.0.0.2', '127.0.0.3')	# one PLAIN, one LOGIN failure each
# + 1 message over submission after AUTH PLAIN, + 1 through sendmail,
# + 1 more successful AUTH (LOGIN) that sends nothing.
RECEIVED = N_OK + N_DEFER + N_BOUNCE + 2
DELIVERED = N_OK + 2 + N_BOUNCE		# the DSNs go to the smarthost too

BODY = (b'From: sender@example.test\r\nTo: someone@relay.test\r\n'
        b'Subject: log compatibility\r\n\r\nbody\r\n')


def _policy(sess, verb, arg, txn):
    if verb == 'RCPT' and arg.startswith('<defer'):
        return '451 4.3.0 <%s>: try again later' % arg[1:arg.index('>')]
    if verb == 'RCPT' and arg.startswith('<bounce'):
        return '550 5.1.1 <%s>: Recipient address rejected: User unknown' \
            % arg[1:arg.index('>')]
    return None


def _documented():
    """The LOGGING section's literal blocks of ferry.8, as text: the
    commands, the jail, the journal lines."""
    with open(FERRY_8) as f:
        src = f.read()
    sec = src[src.index('.Sh LOGGING'):src.index('.Sh ENVIRONMENT')]
    blocks = re.findall(r'^\.Bd -literal[^\n]*\n(.*?)^\.Ed$', sec, re.S | re.M)
    return [b.replace('\\e', '\\') for b in blocks]


def _doc_command(prog):
    """The documented command line that runs prog, as argv."""
    for b in _documented():
        for line in b.splitlines():
            if line.startswith(prog + ' '):
                return shlex.split(line)
    raise AssertionError('ferry.8 LOGGING documents no %s command' % prog)


def _run_doc(prog, log, extra=()):
    argv = [log if a == DOC_LOG else a for a in _doc_command(prog)]
    check(log in argv, 'the documented %s command reads no %s: %r'
          % (prog, DOC_LOG, argv))
    argv[1:1] = list(extra)
    p = subprocess.run(argv, capture_output=True, timeout=120 * SLOW)
    out = p.stdout.decode('utf-8', 'replace')
    check(p.returncode == 0, '%r exit %d: %s %s' % (
        argv, p.returncode, out[-1500:],
        p.stderr.decode('utf-8', 'replace')[-1500:]))
    return argv, out


def _auth_fail(d, src, mech):
    with Conn(d.sub_port, src=src) as c:
        c.hello()
        c.starttls()
        c.expect('EHLO client.test', 250)
        if mech == 'PLAIN':
            c.expect('AUTH PLAIN ' + auth_plain(USER, 'wrong'), 535, '5.7.8')
        else:
            c.expect('AUTH LOGIN', 334)
            c.expect(b64(USER), 334)
            c.expect(b64('wrong'), 535, '5.7.8')
        c.expect('QUIT', 221)


def _auth_ok(d, mech, send):
    with Conn(d.sub_port, src=TRUSTED) as c:
        c.hello()
        c.starttls()
        c.expect('EHLO client.test', 250)
        if mech == 'PLAIN':
            c.expect('AUTH PLAIN ' + auth_plain(USER, PASSWORD), 235)
        else:
            c.expect('AUTH LOGIN', 334)
            c.expect(b64(USER), 334)
            c.expect(b64(PASSWORD), 235)
        qid = None
        if send:
            c.expect('MAIL FROM:<sender@example.test>', 250)
            c.expect('RCPT TO:<ok-auth@relay.test>', 250)
            c.expect('DATA', 354)
            qid = c.expect(stuff(BODY), 250).qid()
        c.expect('QUIT', 221)
        return qid


def _reject(d, i):
    with d.session(src='127.0.0.2') as c:
        c.expect('MAIL FROM:<spammer@example.test>', 250)
        c.expect('RCPT TO:<victim%d@elsewhere.test>' % i, 554, '5.7.1')
        c.expect('QUIT', 221)


def _scenario(d, peer):
    """Run it; wait until every outcome is logged; the qids by kind."""
    q = {'ok': [], 'defer': [], 'bounce': []}
    for kind, n in (('ok', N_OK), ('defer', N_DEFER),
                    ('bounce', N_BOUNCE)):
        for i in range(n):
            q[kind].append(d.send_message(
                BODY, rcpts=('%s%d@relay.test' % (kind, i),)))
    for i in range(N_REJECT):
        _reject(d, i)
    for src in FAIL_FROM:
        _auth_fail(d, src, 'PLAIN')
        _auth_fail(d, src, 'LOGIN')
    q['ok'].append(_auth_ok(d, 'PLAIN', send=True))
    _auth_ok(d, 'LOGIN', send=False)
    p = d.cli('sendmail', '-f', 'sender@example.test', 'ok-local@relay.test',
              input=b'Subject: via sendmail\n\nbody\n')
    check(p.returncode == 0, 'sendmail exit %d: %s'
          % (p.returncode, p.stderr.decode(errors='replace')))
    m = wait_for(lambda: re.search(r'\b([0-9A-F]{18}): uid=\d+ from=',
                                   d.log_text()), 10, 'the pickup line')
    q['ok'].append(m.group(1))
    for qid in q['ok']:
        wait_delivery(d, qid, 'sent')
    for qid in q['defer']:
        wait_delivery(d, qid, 'deferred')
    for qid in q['bounce']:
        wait_delivery(d, qid, 'bounced')
        b = wait_for(lambda: bounce_ids(d, qid), 10, 'the DSN of %s' % qid)
        wait_delivery(d, b[0], 'sent')
    peer.wait_idle()
    got = sum(len(t.accepted) for t in peer.delivered())
    check(got == DELIVERED, 'the peer accepted %d recipients, want %d'
          % (got, DELIVERED))
    return q


def _daemon(peer):
    return Daemon('logcompat', tls=True, submission=True,
                  users={USER: PASSWORD},
                  smarthost='[127.0.0.1]:%d' % peer.port,
                  retry_min='1h', retry_max='2h', queue_lifetime='1d')


def _grand_totals(out):
    """pflogsumm's Grand Totals: {'received': n, ...}."""
    m = re.search(r'^Grand Totals\n-+\nmessages\n\n(.*?)\n\n', out,
                  re.S | re.M)
    check(m, 'no "Grand Totals" in pflogsumm output:\n%s' % out[:2000])
    tot = {}
    for line in m.group(1).splitlines():
        t = re.match(r'\s*(\d+)\s+(\w+)', line)
        if t:
            tot[t.group(2)] = int(t.group(1))
    return tot


def test_logcompat_pflogsumm_fail2ban():
    for tool in ('pflogsumm', 'fail2ban-regex'):
        check(shutil.which(tool), 'no %s (sh test/deps.sh test installs '
              'it)' % tool)
    with SmtpPeer(policy=_policy) as peer, _daemon(peer) as d:
        _scenario(d, peer)
        d.stop()
        log = d.log_path
        text = d.log_text()

        # pflogsumm, as documented: the grand totals are the scenario's.
        argv, out = _run_doc('pflogsumm', log)
        tot = _grand_totals(out)
        want = {'received': RECEIVED, 'delivered': DELIVERED,
                'deferred': N_DEFER, 'bounced': N_BOUNCE,
                'rejected': N_REJECT}
        got = {k: tot.get(k) for k in want}
        check(got == want, '%s counts %r, want %r; its totals:\n%s'
              % (' '.join(argv), got, want, out[:1500]))

        # Refusals in Postfix's words, "host H[IP] said: REPLY (in reply
        # to CMD command)": pflogsumm's details cut what precedes
        # "said:" and the address, and count each reason once for all.
        for status, n, reply in (
                ('deferred', N_DEFER, '451 4.3.0 <defer%d@relay.test>: try '
                 'again later'),
                ('bounced', N_BOUNCE, '550 5.1.1 <bounce%d@relay.test>: '
                 'Recipient address rejected: User unknown')):
            for i in range(n):
                line = ('status=%s (host 127.0.0.1[127.0.0.1] said: %s (in '
                        'reply to RCPT TO command))' % (status, reply % i))
                check(sum(l.endswith(line) for l in text.splitlines()) == 1,
                      'no line ending in %r in the log:\n%s'
                      % (line, '\n'.join(l for l in text.splitlines()
                                         if status in l)))
        for head, reason, n in (
                ('message deferral detail',
                 'try again later (in reply to RCPT TO command', N_DEFER),
                ('message bounce detail (by relay)',
                 'User unknown (in reply to RCPT TO command)', N_BOUNCE)):
            m = re.search(r'^%s\n-+\n(.*?)\n\n' % re.escape(head), out,
                          re.S | re.M)
            check(m and re.search(r'^\s+%d\s+%s$' % (n, re.escape(reason)),
                                  m.group(1), re.M),
                  '%s: want %d x %r:\n%s' % (head, n, reason,
                                             m.group(0) if m else out))

        # fail2ban-regex postfix[mode=auth], as documented: exactly the
        # failed AUTH lines match, with the client's address.
        fails = [l for l in text.splitlines()
                 if re.search(r'SASL (PLAIN|LOGIN) authentication failed',
                              l)]
        check(len(fails) == 2 * len(FAIL_FROM),
              'failed AUTH lines in the log: %r' % fails)
        ok_lines = [l for l in text.splitlines()
                    if 'sasl_username=' in l or
                    re.search(r'status=sent|client=', l)]
        check(ok_lines, 'no success lines in the log')
        argv, out = _run_doc('fail2ban-regex', log, ('-o', 'msg'))
        matched = [l for l in out.splitlines() if l.strip()]
        check(sorted(matched) == sorted(fails),
              '%s matched\n%s\nwant exactly the failed AUTH lines\n%s'
              % (' '.join(argv), '\n'.join(matched), '\n'.join(fails)))
        argv, out = _run_doc('fail2ban-regex', log, ('-o', 'ip'))
        ips = sorted(l.strip() for l in out.splitlines() if l.strip())
        check(ips == sorted(FAIL_FROM * 2), '%s: addresses %r, want %r'
              % (' '.join(argv), ips, sorted(FAIL_FROM * 2)))

        # The stock filter in its default mode, with the same _daemon:
        # the relay refusals match, nothing that succeeded does.
        mode_auth = _doc_command('fail2ban-regex')[2]
        default = re.sub(r'mode=auth,\s*', '', mode_auth)
        check(default != mode_auth and 'mode=' not in default,
              'cannot make the default-mode filter from %r' % mode_auth)
        p = subprocess.run(['fail2ban-regex', '-o', 'msg', log, default],
                           capture_output=True, timeout=120 * SLOW)
        check(p.returncode == 0, 'fail2ban-regex %s: exit %d %s' % (
            default, p.returncode, p.stderr.decode(errors='replace')))
        matched = [l for l in p.stdout.decode().splitlines() if l.strip()]
        rejects = [l for l in text.splitlines()
                   if 'NOQUEUE: reject: RCPT' in l]
        check(len(rejects) == N_REJECT, 'reject lines %r' % rejects)
        check(sorted(matched) == sorted(rejects),
              'fail2ban-regex %s matched\n%s\nwant the refusals\n%s'
              % (default, '\n'.join(matched), '\n'.join(rejects)))
        for l in ok_lines:
            check(l not in matched, 'a success line matched: %s' % l)

        # Without the override, the stock filter does not know ferry's
        # program names: the documented _daemon is what makes it work.
        p = subprocess.run(['fail2ban-regex', '-o', 'msg', log,
                            'postfix[mode=auth]'],
                           capture_output=True, timeout=120 * SLOW)
        check(p.returncode == 0 and not p.stdout.strip(),
              'the plain postfix[mode=auth] filter matched ferry lines '
              '(then ferry.8 need not document _daemon): %s'
              % short(p.stdout))


def test_logcompat_fail2ban_jail():
    """The jail ferry.8 documents, added to a copy of the system's
    fail2ban configuration: fail2ban-client -d shows the jail with
    ferry's program names in its prefix and the SASL failregex; with the
    journal lines, it reads ferry.service's journal."""
    check(shutil.which('fail2ban-client'), 'no fail2ban-client')
    blocks = _documented()
    jail = [b for b in blocks if b.lstrip().startswith('[postfix-sasl]')]
    journal = [b for b in blocks if b.lstrip().startswith('backend')]
    check(len(jail) == 1 and len(journal) == 1,
          'ferry.8 should show one jail and one journal block: %r' % blocks)
    tmp = tempfile.mkdtemp(prefix='ferry-f2b-')
    try:
        conf = os.path.join(tmp, 'fail2ban')
        shutil.copytree('/etc/fail2ban', conf)
        log = os.path.join(tmp, 'mail.log')
        open(log, 'w').close()
        for name, text in (('file', jail[0].replace(DOC_LOG, log)),
                           ('journal', re.sub(r'^logpath.*\n', '', jail[0],
                                              flags=re.M) + journal[0])):
            with open(os.path.join(conf, 'jail.d', 'ferry.local'), 'w') as f:
                f.write(text)
            p = subprocess.run(['fail2ban-client', '-c', conf, '-d'],
                               capture_output=True, timeout=60 * SLOW)
            out = p.stdout.decode('utf-8', 'replace')
            check(p.returncode == 0, 'fail2ban-client -d (%s) exit %d: %s'
                  % (name, p.returncode, p.stderr.decode(errors='replace')))
            mine = [l for l in out.splitlines() if "'postfix-sasl'" in l]
            check(any("'start', 'postfix-sasl'" in l for l in mine),
                  '%s: the jail is not started: %s' % (name, mine))
            pref = [l for l in mine if "'prefregex'" in l]
            check(len(pref) == 1 and 'ferry/\\\\w+' in pref[0],
                  '%s: prefregex without ferry/\\w+: %s' % (name, pref))
            check(any("'addfailregex'" in l and 'SASL' in l for l in mine),
                  '%s: no SASL failregex: %s' % (name, mine))
            if name == 'file':
                check(any("'addlogpath', '%s'" % log in l for l in mine),
                      'file: the jail does not read %s: %s' % (log, mine))
            else:
                check(any("'add', 'postfix-sasl', 'systemd'" in l
                          for l in mine) and
                      any('_SYSTEMD_UNIT=ferry.service' in l for l in mine),
                      'journal: not the journal of ferry.service: %s' % mine)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
