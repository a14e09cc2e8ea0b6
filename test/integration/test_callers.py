"""
test_callers.py - sendmail as the programs on a Debian or OpenWrt box
call it, each with its own flags and its own kind of message: cron
(Debian's and cronie's), mutt and git send-email (recipients as
arguments), PHP mail() and Python scripts (-t), bsd-mailx's mail(1); and
a caller that closed stderr.  What leaves for the smarthost (Postfix's
smtp-sink) is checked: the envelope, the headers sendmail adds, Bcc
gone, the body.
"""

import os
import pwd
import re
import shutil
import subprocess

from ferrytest import (Daemon, check, short, IS_ROOT, HOSTNAME, user_bin,
                       sanitizer_report)
from peers import Sink

NOBODY = 'nobody' if IS_ROOT else None
# The caller's login: what an envelope and an added From: default to.
LOGIN = NOBODY or pwd.getpwuid(os.getuid()).pw_name
DATE_RE = (rb'Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} [\d:]{8} '
           rb'[-+]\d{4}\n')
MSGID_RE = rb'Message-ID: <[0-9A-F]+\.[0-9a-f]{16}@' + \
    re.escape(HOSTNAME.encode()) + rb'>\n'


def _sendmail(d, *args, input):
    """The binary as `sendmail` (argv[0], as /usr/sbin/sendmail is), run
    as an unprivileged user like a crontab's or a web server's."""
    p = _run(d, [_link(d)] + list(args), input)
    check(p.returncode == 0, 'sendmail %s: exit %d, %s'
          % (' '.join(args), p.returncode, short(p.stderr, 600)))


def _link(d):
    sm = os.path.join(d.dir, 'sendmail')
    if not os.path.lexists(sm):
        os.symlink(user_bin(), sm)
    return sm


def _run(d, cmd, input, env=None):
    e = dict(os.environ, FERRY_CONFIG=d.conf, **(env or {}))
    if IS_ROOT:
        cmd = ['runuser', '-u', NOBODY, '--', 'env', 'FERRY_CONFIG=' +
               d.conf] + ['%s=%s' % kv for kv in (env or {}).items()] + cmd
    p = subprocess.run(cmd, input=input, env=e, capture_output=True,
                       timeout=60, cwd=d.dir)
    # As Daemon.cli does: a sanitizer report fails the test whatever the
    # exit code (the stderr-closed caller expects 67 anyway).
    m = sanitizer_report(p.stderr.decode('utf-8', 'replace'))
    check(m is None, 'sanitizer report (%r) from %s'
          % (m, short(' '.join(cmd))))
    return p


def _relayed(sink, n):
    """The n messages the smarthost got, by their first RCPT; each as
    (SinkMessage, header without ferry's Received:, body), LF text."""
    out = {}
    for m in sink.wait_count(n):
        head, _, body = m.body.partition(b'\n\n')
        check(head.startswith(b'Received: by %s (ferry, from userid '
                              % HOSTNAME.encode()),
              'not ferry\'s Received: first: %s' % short(m.body, 600))
        lines = head.split(b'\n')
        i = 1
        while i < len(lines) and lines[i][:1] in (b' ', b'\t'):
            i += 1
        out[m.rcpt_addrs[0]] = (m, b'\n'.join(lines[i:]) + b'\n', body)
    check(len(out) == n, 'smarthost got %r' % sorted(out))
    return out


def test_callers_cron():
    """Debian's cron (-FCronDaemon -i -B8BITMIME -oem -oi -t) and
    cronie's (the same with -odi and -f root): recipients from To: (a
    bare "root" qualified), From: qualified in place, Date: and
    Message-ID: added, the envelope sender the crontab's user or -f, a
    "." line kept (-i), UTF-8 output as 8BITMIME, a last line without a
    newline ended."""
    with Sink() as s, Daemon('call-cron', smarthost='[127.0.0.1]:%d'
                             % s.port) as d:
        _sendmail(d, '-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-oi', '-t',
                  input='From: root (Cron Daemon)\nTo: root\n'
                  'Subject: Cron <nobody@box> run-parts /etc/cron.daily\n'
                  'MIME-Version: 1.0\n'
                  'Content-Type: text/plain; charset=UTF-8\n'
                  'Content-Transfer-Encoding: 8bit\n'
                  'X-Cron-Env: <SHELL=/bin/sh>\n\n'
                  'Résumé: 3 errors\n.\nlast'.encode())
        _sendmail(d, '-FCronDaemon', '-i', '-odi', '-oem', '-oi', '-t',
                  '-f', 'root',
                  input=b'From: "(Cron Daemon)" <root>\nTo: ops@relay.test\n'
                  b'Subject: Cron <root@box> backup\n\nok\n')
        got = _relayed(s, 2)
        m, head, body = got['root@' + HOSTNAME]
        check(m.sender == '%s@%s' % (LOGIN, HOSTNAME) and
              m.rcpt_addrs == ['root@' + HOSTNAME] and
              'BODY=8BITMIME' in m.mail, 'Debian cron envelope: %r' % m)
        check(re.fullmatch(
            rb'From: root@ferry\.test \(Cron Daemon\)\nTo: root@ferry\.test\n'
            rb'Subject: Cron <nobody@box> run-parts /etc/cron\.daily\n'
            rb'MIME-Version: 1\.0\nContent-Type: text/plain; charset=UTF-8\n'
            rb'Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n'
            + DATE_RE + MSGID_RE, head), 'Debian cron header: %s'
              % short(head, 900))
        check(body == 'Résumé: 3 errors\n.\nlast\n'.encode(),
              'Debian cron body: %s' % short(body))
        m, head, body = got['ops@relay.test']
        check(m.sender == 'root@' + HOSTNAME and
              m.rcpt_addrs == ['ops@relay.test'], 'cronie envelope: %r' % m)
        check(head.startswith(b'From: "(Cron Daemon)" <root@ferry.test>\n'
                              b'To: ops@relay.test\n') and
              body == b'ok\n', 'cronie message: %s' % short(m.body, 900))


def test_callers_mua_and_git():
    """mutt (-oem -oi -- RCPT...) with CRLF input and git send-email
    (-i -f SENDER RCPT): a complete message leaves as it came, "."
    lines and all, to the argument recipients only (To: names others)."""
    mutt = (b'Date: Mon, 01 Jan 2024 10:00:00 +0100\r\n'
            b'From: Jo Doe <jo@example.test>\r\nTo: list@example.test\r\n'
            b'Subject: mutt\r\nMessage-ID: <m1@example.test>\r\n\r\n'
            b'hello\r\n.\r\n..\r\n-- \r\nJo\r\n')
    git = (b'From: A U Thor <author@example.test>\nTo: dev@example.test\n'
           b'Subject: [PATCH] fix\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n'
           b'Message-ID: <g1@example.test>\n\n---\n.\n a | 1 +\n')
    with Sink() as s, Daemon('call-mua', smarthost='[127.0.0.1]:%d'
                             % s.port) as d:
        _sendmail(d, '-oem', '-oi', '--', 'a@relay.test', 'b@relay.test',
                  input=mutt)
        _sendmail(d, '-i', '-f', 'author@example.test', 'c@relay.test',
                  input=git)
        got = _relayed(s, 2)
        m, head, body = got['a@relay.test']
        check(m.sender == '%s@%s' % (LOGIN, HOSTNAME) and
              m.rcpt_addrs == ['a@relay.test', 'b@relay.test'] and
              head + b'\n' + body == mutt.replace(b'\r\n', b'\n'),
              'mutt: %r, %s' % (m, short(m.body, 900)))
        m, head, body = got['c@relay.test']
        check(m.sender == 'author@example.test' and
              m.rcpt_addrs == ['c@relay.test'] and
              head + b'\n' + body == git, 'git send-email: %r, %s'
              % (m, short(m.body, 900)))


def test_callers_t_scripts():
    """PHP mail() (-t -i, -f from sendmail_path) and a Python script such
    as unattended-upgrades (-oi -t): recipients from To:, Cc: and Bcc:,
    Bcc: gone, From: added from -f (else the login), a 3000-byte body
    line split into lines of at most 998 octets with nothing lost."""
    php = (b'To: a@relay.test, "Doe, J" <b@relay.test>\nSubject: order\n'
           b'Bcc: hidden@relay.test\nContent-Type: text/html\n\n<p>x</p>\n')
    long_line = b''.join(b'%05d' % i for i in range(600))
    py = (b'Content-Type: text/plain; charset="utf-8"\nMIME-Version: 1.0\n'
          b'Subject: unattended-upgrades result\nFrom: root\nTo: root\n'
          b'Cc: admin@relay.test\n\n' + long_line + b'\nend\n')
    with Sink() as s, Daemon('call-t', smarthost='[127.0.0.1]:%d'
                             % s.port) as d:
        _sendmail(d, '-t', '-i', '-f', 'web@example.test', input=php)
        _sendmail(d, '-oi', '-t', input=py)
        got = _relayed(s, 2)
        m, head, body = got['a@relay.test']
        check(m.sender == 'web@example.test' and
              m.rcpt_addrs == ['a@relay.test', 'b@relay.test',
                               'hidden@relay.test'], 'PHP envelope: %r' % m)
        check(re.fullmatch(
            rb'To: a@relay\.test, "Doe, J" <b@relay\.test>\nSubject: order\n'
            rb'Content-Type: text/html\nFrom: [^\n]*<web@example\.test>\n' +
            DATE_RE + MSGID_RE, head) and body == b'<p>x</p>\n',
              'PHP message: %s' % short(m.body, 900))
        m, head, body = got['root@' + HOSTNAME]
        check(m.rcpt_addrs == ['root@' + HOSTNAME, 'admin@relay.test'] and
              b'\nFrom: root@ferry.test\nTo: root@ferry.test\n' in head,
              'Python script: %r, %s' % (m, short(head, 900)))
        lines = body.split(b'\n')
        check(max(len(x) for x in lines) <= 998 and
              b''.join(lines[:-2]) == long_line and lines[-2:] == [b'end',
                                                                  b''],
              'long line: %r' % [len(x) for x in lines])


def test_callers_bsd_mailx():
    """mail -s SUBJECT -c CC -b BCC RCPT... (bsd-mailx, which smartd and
    many scripts use; it runs `sendmail -i -t`, here through its
    sendmail variable): every recipient reached, Bcc: gone, From: the
    login, the UTF-8 subject as it came."""
    mailx = shutil.which('bsd-mailx')
    check(mailx, 'no bsd-mailx (sh test/deps.sh test)')
    with Sink() as s, Daemon('call-mailx', smarthost='[127.0.0.1]:%d'
                             % s.port) as d:
        rc = os.path.join(d.dir, 'mailrc')
        with open(rc, 'w') as f:
            f.write('set sendmail=%s\n' % _link(d))
        p = _run(d, [mailx, '-s', 'SMART error (Défaut) on /dev/sda', '-c',
                     'cc@relay.test', '-b', 'bcc@relay.test', 'root'],
                 b'Device: /dev/sda, 8 Currently unreadable sectors\n',
                 env={'MAILRC': rc})
        check(p.returncode == 0 and p.stderr == b'', 'mail: exit %d, %s'
              % (p.returncode, short(p.stderr)))
        m, head, body = _relayed(s, 1)['root@' + HOSTNAME]
        check(m.sender == '%s@%s' % (LOGIN, HOSTNAME) and
              m.rcpt_addrs == ['root@' + HOSTNAME, 'cc@relay.test',
                               'bcc@relay.test'], 'envelope %r' % m)
        check(b'\nSubject: SMART error (D\xc3\xa9faut) on /dev/sda\n' in head
              and b'\nCc: cc@relay.test\n' in head and
              not re.search(rb'(?im)^bcc:|bcc@relay', head) and
              re.search(rb'\nFrom: [^\n]*%s@ferry\.test' % LOGIN.encode(),
                        head) and
              body == b'Device: /dev/sda, 8 Currently unreadable sectors\n',
              'message: %s' % short(m.body, 900))


def test_callers_stderr_closed():
    """A caller that closed stderr (2>&-): sendmail's connection to the
    daemon took descriptor 2, and its "550 ..." for a refused recipient
    went into that SMTP session as a bare-LF line; the daemon hung up,
    and the recipient after it read that 5xx as its own reply and was
    dropped.  The others are queued as with stderr open; the exit is
    still 67 for the refused one."""
    with Daemon('call-noerr') as d:
        p = _run(d, ['sh', '-c', 'exec "$0" "$@" 2>&-', _link(d),
                     'a@relay.test', 'b@[127.0.0.1]', 'c@relay.test'],
                 b'Subject: closed stderr\n\nx\n')
        check(p.returncode == 67, 'exit %d, want 67 (one refused): %s'
              % (p.returncode, short(p.stderr)))
        q = d.mailq(maildrop=True)
        check([(m['queue_name'] != 'maildrop', sorted(
            r['address'] for r in m['recipients'])) for m in q] ==
              [(True, ['a@relay.test', 'c@relay.test'])],
              'queued %r' % q)


def test_callers_fetchmail_mda():
    """fetchmail's mda (`sendmail -i -f %F -- %T`) and procmail's "!"
    pass on a message that was delivered once: the old Return-Path:
    and an mbox Content-Length: come with it.  Postfix drops both
    (message_drop_headers): the next hop writes its own Return-Path,
    and a length that no longer fits the CRLF text with headers added
    makes an mbox reader cut or merge messages.  Relayed, they went
    on as they came."""
    fetched = (b'Return-Path: <list-bounces@example.test>\n'
               b'Delivered-To: me@pop.example.test\n'
               b'From: Jo <jo@example.test>\nTo: me@pop.example.test\n'
               b'Subject: fetched\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n'
               b'Message-ID: <f1@example.test>\nContent-Length: 6\n\n'
               b'hello\n')
    with Sink() as s, Daemon('call-mda', smarthost='[127.0.0.1]:%d'
                             % s.port) as d:
        _sendmail(d, '-i', '-f', 'list-bounces@example.test', '--',
                  'me@relay.test', input=fetched)
        m, head, body = _relayed(s, 1)['me@relay.test']
        check(m.sender == 'list-bounces@example.test' and
              head == b'Delivered-To: me@pop.example.test\n'
              b'From: Jo <jo@example.test>\nTo: me@pop.example.test\n'
              b'Subject: fetched\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n'
              b'Message-ID: <f1@example.test>\n' and body == b'hello\n',
              'fetchmail mda: %r, %s' % (m, short(m.body, 900)))
