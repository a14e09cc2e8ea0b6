"""
test_cli.py - the commands and the daemon's life cycle: sendmail (as an
unprivileged user, daemon up and down), mailq, cat, delete, check-config,
config errors, SIGHUP reload, SIGTERM during DATA, corrupt queue files.
"""

import errno
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

from ferrytest import (Daemon, TestFailure, check, stuff, short, IS_ROOT,
                       FERRY_BIN, HOSTNAME, SLOW, free_port, user_bin,
                       sanitizer_report, strace_wrap, STRACE_LINE_RE)
from peers import SmtpPeer, wait_delivery, wait_for

BODY = b'Subject: cli\r\n\r\nhello from the cli tests\r\n'
NOBODY = 'nobody' if IS_ROOT else None


def _ok(p, what):
    check(p.returncode == 0, '%s: exit %d, stderr %s' % (
        what, p.returncode, short(p.stderr, 800)))
    return p


def _body_of(msg):
    """The part after the first empty line."""
    check(b'\r\n\r\n' in msg, 'no header/body separator in %s'
          % short(msg))
    return msg.split(b'\r\n\r\n', 1)[1]


def _headers_of(msg):
    return msg.split(b'\r\n\r\n', 1)[0] + b'\r\n'


def _no_bare_lf(msg, what):
    i = msg.find(b'\n')
    while i >= 0:
        check(i > 0 and msg[i - 1:i] == b'\r', '%s: bare LF at %d in %s'
              % (what, i, short(msg[max(0, i - 40):i + 40])))
        i = msg.find(b'\n', i + 1)


def _one(d, what):
    q = d.wait_queue(1)
    check(len(q) == 1, '%s: expected one message, mailq %r' % (what, q))
    return q[0]


# --- sendmail ---------------------------------------------------------------

def test_sendmail_f_F_lf_to_crlf():
    with Daemon('sm-fF') as d:
        _ok(d.cli('sendmail', '-f', 'sender@example.test', '-F',
                  'Test Name', 'rcpt@relay.test', user=NOBODY,
                  input=b'Subject: s1\nTo: rcpt@relay.test\n\nline1\n'
                        b'.dot line\n..two\nlast\n'), 'sendmail -f -F')
        m = _one(d, 'sendmail -f -F')
        check(m['sender'] == 'sender@example.test', 'sender %r'
              % m['sender'])
        check([r['address'] for r in m['recipients']] ==
              ['rcpt@relay.test'], 'recipients %r' % m['recipients'])
        out = d.cat(m['id'])
        _no_bare_lf(out, 'sendmail message')
        check(out.startswith(b'Received: '), 'no Received: first: %s'
              % short(out))
        check(_body_of(out) == b'line1\r\n.dot line\r\n..two\r\nlast\r\n',
              'body %s' % short(_body_of(out)))
        h = _headers_of(out)
        check(b'Subject: s1\r\n' in h, 'headers %s' % short(h))
        check(re.search(rb'(?mi)^From:[^\r]*Test Name', h),
              '-F name not in a From: header: %s' % short(h, 600))


GECOS_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pwd.h>
#include <stdlib.h>

struct passwd *
getpwuid(uid_t uid)
{
	static struct passwd *(*real)(uid_t);
	static struct passwd pw;
	struct passwd *p;

	if (real == NULL)
		real = (struct passwd *(*)(uid_t))dlsym(RTLD_NEXT, "getpwuid");
	if ((p = real(uid)) == NULL)
		return NULL;
	pw = *p;
	pw.pw_name = getenv("SHIM_LOGIN");
	pw.pw_gecos = getenv("SHIM_GECOS");
	return &pw;
}
"""


def test_sendmail_name_env():
    """The From: sendmail adds takes its name from $NAME before GECOS,
    and -F wins over both, as in Postfix's sendmail; an empty NAME is
    no name."""
    with Daemon('sm-name') as d:
        env = dict(d.shim_env(GECOS_SHIM, 'gecos'), SHIM_LOGIN='jdoe',
                   SHIM_GECOS='Gecos Name', NAME='Env Name')
        for tag, args, e in (('env', [], env),
                             ('flag', ['-F', 'Flag Name'], env),
                             ('empty', [], dict(env, NAME=''))):
            _ok(d.cli('sendmail', '-f', 's@example.test', *args,
                      'rcpt@relay.test', env=e,
                      input=b'Subject: %s\n\nx\n' % tag.encode()),
                'sendmail ' + tag)
        q = d.wait_queue(3)
        check(len(q) == 3, 'mailq %r' % q)
        got = {}
        for m in q:
            h = _headers_of(d.cat(m['id']))
            got[re.search(rb'(?m)^Subject: (\w+)', h).group(1)] = \
                re.search(rb'(?m)^From: ([^\r]*)\r$', h).group(1)
        check(got == {b'env': b'Env Name <s@example.test>',
                      b'flag': b'Flag Name <s@example.test>',
                      b'empty': b'<s@example.test>'},
              'From: %r' % got)


def test_sendmail_obsolete_header_form_kept():
    """'Subject : x' (RFC 5322 section 4.5.8, a space before the colon)
    is a header field to sendmail and to the daemon alike: the daemon
    took it for the first body line, put a second From, Date and
    Message-ID above it and pushed the real header into the body."""
    with Daemon('sm-obs') as d:
        _ok(d.cli('sendmail', 'rcpt@relay.test', user=NOBODY,
                  input=b'Subject : obs\nTo: rcpt@relay.test\n\nbody\n'),
            'sendmail')
        out = d.cat(_one(d, 'obsolete form')['id'])
        head, _, body = out.partition(b'\r\n\r\n')
        check(body == b'body\r\n' and b'\r\nSubject : obs\r\n' in head and
              [head.count(b'\r\n%s: ' % h) for h in
               (b'From', b'Date', b'Message-ID')] == [1, 1, 1],
              'stored %s' % short(out, 900))


def test_sendmail_gecos_ampersand():
    """The From: sendmail adds takes the full name from GECOS: the part
    before the first comma, "&" standing for the login with its first
    letter capitalised (BSD's convention; Postfix expands it too)."""
    with Daemon('sm-gecos') as d:
        env = dict(d.shim_env(GECOS_SHIM, 'gecos'), SHIM_LOGIN='jdoe',
                   SHIM_GECOS='& Q. & Public,Room 101,555-0100')
        _ok(d.cli('sendmail', 'rcpt@relay.test', env=env,
                  input=b'Subject: g\n\nx\n'), 'sendmail')
        m = _one(d, 'sendmail with & in GECOS')
        h = _headers_of(d.cat(m['id']))
        check(re.search(rb'(?m)^From: "?Jdoe Q\. Jdoe Public"? '
                        rb'<jdoe@[^>]+>\r$', h), 'From: %s' % short(h, 600))


def test_sendmail_gecos_ampersand_cut():
    """A full name that "&" makes longer than the 255 bytes sendmail
    keeps is cut there, inside a login too, and only a login's first
    letter is capitalised, also when it is the last one that fits."""
    cases = [('&' * 80, b'Jdoe' * 63 + b'Jdo'),
             ('x' * 254 + '&', b'x' * 254 + b'J'),
             ('&&', b'JdoeJdoe')]
    with Daemon('sm-gecos-cut') as d:
        for i, (gecos, _) in enumerate(cases):
            env = dict(d.shim_env(GECOS_SHIM, 'gecos'), SHIM_LOGIN='jdoe',
                       SHIM_GECOS=gecos)
            _ok(d.cli('sendmail', 'rcpt@relay.test', env=env,
                      input=b'Subject: c%d\n\nx\n' % i), 'sendmail %d' % i)
        q = d.wait_queue(len(cases))
        check(len(q) == len(cases), 'mailq %r' % q)
        got = []
        for m in q:
            h = _headers_of(d.cat(m['id']))
            f = re.search(rb'(?m)^From: (\S*) <jdoe@[^>]+>\r$', h)
            check(f, 'From: %s' % short(h, 900))
            got.append(f.group(1))
        check(sorted(got) == sorted(w for _, w in cases),
              'names %r' % [short(g, 300) for g in got])


def test_sendmail_login_not_a_local_part():
    """With no -f the sender is the login, checked as -f is: sssd's
    "jdoe@ad.example" keeps its domain, a login that is no local part
    bare (winbind's "AD\\jdoe", "j doe") is quoted, as Postfix quotes
    it, and an 8-bit one goes with SMTPUTF8.  It was sent as
    LOGIN@origin unchecked: the daemon refused it (exit 65, nothing
    queued), and with the daemon down sendmail exited 0 and the pickup
    moved the message to corrupt/."""
    cases = {'jdoe@ad.example': 'jdoe@ad.example',
             'AD\\jdoe': '"AD\\\\jdoe"@' + HOSTNAME,
             'j doe': '"j doe"@' + HOSTNAME,
             'j\u00f6rg': 'j\u00f6rg@' + HOSTNAME}
    d = Daemon('sm-login')
    ok = False
    try:
        d.start()
        for down in (False, True):
            for login in cases:
                env = dict(d.shim_env(GECOS_SHIM, 'gecos'),
                           SHIM_LOGIN=login, SHIM_GECOS='')
                _ok(d.cli('sendmail', 'rcpt@relay.test', env=env,
                          input=b'Subject: %s\n\nx\n' % login.encode()),
                    'sendmail as %r%s' % (login, ' (down)' if down else ''))
            if not down:
                check(len(d.wait_queue(len(cases))) == len(cases),
                      'mailq %r' % d.mailq())
                d.stop()
        d.start()
        q = d.wait_queue(2 * len(cases), timeout=8)
        got = sorted(m['sender'] for m in q)
        check(got == sorted(list(cases.values()) * 2) and
              d.corrupt_files() == [], 'senders %r, corrupt/ %r'
              % (got, d.corrupt_files()))
        for m in q:
            h = _headers_of(d.cat(m['id']))
            check(b'\r\nFrom: <%s>\r\n' % m['sender'].encode() in h,
                  'From: %s' % short(h, 600))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_long_name_cut():
    """A -F or $NAME name is cut at 255 bytes, as one from GECOS is: a
    longer one made the From: line sendmail adds longer than 998
    octets, and the daemon refused the message (exit 65, nothing
    queued)."""
    with Daemon('sm-longname') as d:
        for tag, args, env in (('F', ['-F', 'A' * 1200], None),
                               ('env', [], {'NAME': 'B ' * 600})):
            _ok(d.cli('sendmail', '-f', 's@example.test', *args,
                      'rcpt@relay.test', env=env,
                      input=b'Subject: %s\n\nx\n' % tag.encode()),
                'sendmail with a long name (%s)' % tag)
        q = d.wait_queue(2)
        check(len(q) == 2, 'mailq %r' % q)
        names = set()
        for m in q:
            h = _headers_of(d.cat(m['id']))
            f = re.search(rb'(?m)^From: (.*) <s@example\.test>\r$', h)
            check(f, 'From: %s' % short(h, 600))
            names.add(f.group(1))
        check(names == {b'A' * 255, b'B ' * 127 + b'B'},
              'names %r' % names)


def test_sendmail_t_removes_bcc():
    msg = (b'From: me@example.test\nTo: a@relay.test, b@other.test\n'
           b'Cc: c@relay.test\nBcc: hidden@relay.test,\n'
           b' also-hidden@relay.test\nSubject: t\n\nbody\n')
    with Daemon('sm-t') as d:
        _ok(d.cli('sendmail', '-t', '-f', 'me@example.test', user=NOBODY,
                  input=msg), 'sendmail -t')
        m = _one(d, 'sendmail -t')
        got = sorted(r['address'] for r in m['recipients'])
        check(got == sorted(['a@relay.test', 'b@other.test',
                             'c@relay.test', 'hidden@relay.test',
                             'also-hidden@relay.test']),
              '-t recipients %r' % got)
        out = d.cat(m['id'])
        h = _headers_of(out)
        check(not re.search(rb'(?mi)^bcc:', h) and b'hidden' not in out,
              'Bcc survived: %s' % short(h, 800))
        check(b'\r\nTo: a@relay.test, b@other.test\r\n' in h and
              b'\r\nCc: c@relay.test\r\n' in h, 'To/Cc lost: %s'
              % short(h, 800))
        check(_body_of(out) == b'body\r\n', 'body %s' % short(out))


def test_sendmail_t_resent_recipients():
    """-t in a resent message (any Resent- field Postfix's cleanup knows)
    takes only the Resent-To/Cc/Bcc recipients, as Postfix does.  A
    message with only a Resent-From went to its original To again; it
    now has no recipients (exit 64, nothing queued).  A Resent- name
    Postfix does not know (Resent-X-Foo) is no resent message."""
    head = b'From: me@example.test\nTo: orig@relay.test\nSubject: t\n'
    cases = (
        (b'Resent-To: again@relay.test\n', ['again@relay.test']),
        (b'Resent-From: fwd@example.test\n', None),
        (b'Resent-Date: Tue, 02 Jan 2024 10:00:00 +0100\n'
         b'Resent-Bcc: hid@relay.test\n', ['hid@relay.test']),
        (b'Resent-X-Foo: 1\n', ['orig@relay.test']),
    )
    with Daemon('sm-t-resent') as d:
        for extra, want in cases:
            p = d.cli('sendmail', '-t', user=NOBODY,
                      input=head + extra + b'\nbody\n')
            if want is None:
                check(p.returncode == 64, '%r: exit %d (want 64)'
                      % (extra, p.returncode))
                d.assert_empty('%r' % extra)
                continue
            _ok(p, 'sendmail -t %r' % extra)
            m = _one(d, '%r' % extra)
            got = [r['address'] for r in m['recipients']]
            check(got == want, '%r: recipients %r, want %r'
                  % (extra, got, want))
            _ok(d.cli('delete', m['id']), 'delete')


def test_sendmail_dot_line_and_i():
    msg = b'Subject: dot\n\nbefore\n.\nafter\n'
    with Daemon('sm-i') as d:
        _ok(d.cli('sendmail', 'r@relay.test', user=NOBODY, input=msg),
            'sendmail without -i')
        m = _one(d, 'no -i')
        check(_body_of(d.cat(m['id'])) == b'before\r\n',
              'a "." line did not end the message without -i: %s'
              % short(d.cat(m['id'])))
        _ok(d.cli('delete', 'all'), 'delete all')
        for flag in ('-i', '-oi'):
            _ok(d.cli('sendmail', flag, 'r@relay.test', user=NOBODY,
                      input=msg), 'sendmail ' + flag)
            m = _one(d, flag)
            body = _body_of(d.cat(m['id']))
            check(body == b'before\r\n.\r\nafter\r\n',
                  '%s: body %s' % (flag, short(body)))
            _ok(d.cli('delete', m['id']), 'delete')


def test_sendmail_bare_root():
    with Daemon('sm-root') as d:
        _ok(d.cli('sendmail', '-f', 's@example.test', 'root', user=NOBODY,
                  input=b'Subject: r\n\nx\n'), 'sendmail root')
        m = _one(d, 'sendmail root')
        check([r['address'] for r in m['recipients']] ==
              ['root@' + HOSTNAME], 'bare root became %r' % m['recipients'])


def test_sendmail_usage_error():
    with Daemon('sm-usage') as d:
        p = d.cli('sendmail', '-t', user=NOBODY,
                  input=b'Subject: none\n\nno recipients anywhere\n')
        check(p.returncode != 0, 'sendmail -t without recipients exit 0')
        p = d.cli('sendmail', '-Z', 'r@relay.test', user=NOBODY,
                  input=b'x\n')
        check(p.returncode == 64, 'unknown option: exit %d (want 64)'
              % p.returncode)
        d.assert_empty('sendmail usage errors')


def test_sendmail_maildrop_when_down():
    d = Daemon('sm-down')
    ok = False
    try:
        d.start()
        d.stop()		# leaves queue_dir and maildrop/ created
        body = b'Subject: dropped\n\nwhile the daemon was down\n.x\n'
        _ok(d.cli('sendmail', '-f', 'drop@example.test', 'r@relay.test',
                  user=NOBODY, input=body), 'sendmail with daemon down')
        md = os.path.join(d.queue_dir, 'maildrop')
        files = os.listdir(md)
        check(len(files) == 1, 'maildrop holds %r' % files)
        # mailq shows it while the daemon is down (Postfix's showq
        # does); `ferry delete` reaches one there too.
        _ok(d.cli('sendmail', '-f', 'drop@example.test', 'gone@relay.test',
                  user=NOBODY, input=b'Subject: gone\n\nx\n'),
            'a second sendmail with daemon down')
        q = d.mailq(maildrop=True)
        check(sorted(m['id'] for m in q) == sorted(os.listdir(md)) and
              len(q) == 2 and all(m['queue_name'] == 'maildrop' for m in q),
              'mailq with the daemon down: %r' % q)
        gone = [m['id'] for m in q
                if m['recipients'][0]['address'] == 'gone@relay.test']
        # What mailq lists, `ferry cat` shows (root only, as the queue).
        out = d.cat(gone[0])
        check(_body_of(out) == b'x\r\n', 'cat from maildrop/: %s'
              % short(out))
        p = d.cli('cat', gone[0], user=NOBODY)
        check(p.returncode == 77 and p.stdout == b'',
              'cat from maildrop/ as nobody: exit %d %r'
              % (p.returncode, p.stdout))
        p = d.cli('delete', *gone)
        check(p.returncode == 0 and p.stdout == b'%s: deleted\n'
              % gone[0].encode() and os.listdir(md) == files,
              'delete from maildrop/: exit %d %r %r; maildrop %r'
              % (p.returncode, p.stdout, p.stderr, os.listdir(md)))
        d.start()
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1, 'maildrop not picked up: mailq %r' % q)
        check(q[0]['sender'] == 'drop@example.test', 'sender %r'
              % q[0]['sender'])
        check(os.listdir(md) == [], 'maildrop not emptied: %r'
              % os.listdir(md))
        out = d.cat(q[0]['id'])
        check(_body_of(out) == b'while the daemon was down\r\n.x\r\n',
              'body %s' % short(out))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# Run as another user: stat the file (its name is known: the directories
# let anyone through), then open it; exits with open's errno, 0 if it
# opened.
_OPEN_AS_OTHER = """import os, sys
os.stat(sys.argv[1])
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
except OSError as e:
    sys.exit(e.errno)
"""


def test_sendmail_maildrop_group_only():
    """maildrop/ is 3733 (setgid; an older ferry's 1733 becomes that at
    start), so a local user's sendmail with the daemon down leaves a file
    in the queue's group, mode 0640: another local user who knows its
    name cannot open it (it was 0644, open to all while it waited).  The
    daemon reads it through its group and relays it, whole.  Unprivileged
    (sendmail's group is then the queue's) the file stays 0644."""
    with SmtpPeer() as peer:
        d = Daemon('sm-group', smarthost='[127.0.0.1]:%d' % peer.port)
        ok = False
        try:
            md = os.path.join(d.queue_dir, 'maildrop')
            d.start()
            d.stop()
            os.chmod(md, 0o1733)
            d.start()
            d.stop()
            qst = os.stat(d.queue_dir)
            st = os.stat(md)
            check(stat.S_IMODE(st.st_mode) == 0o3733 and
                  st.st_gid == qst.st_gid, 'maildrop/: mode %o, group %d '
                  '(queue_dir\'s %d)' % (st.st_mode, st.st_gid, qst.st_gid))
            body = b'Subject: group only\n\nfor the daemon\'s eyes\n.x\n'
            _ok(d.cli('sendmail', '-f', 'md@example.test', 'r@relay.test',
                      user=NOBODY, input=body), 'sendmail, daemon down')
            files = os.listdir(md)
            check(len(files) == 1, 'maildrop/ holds %r' % files)
            path = os.path.join(md, files[0])
            st = os.stat(path)
            want = 0o640 if IS_ROOT else 0o644
            check(stat.S_IMODE(st.st_mode) == want and
                  st.st_gid == qst.st_gid, 'maildrop/%s: mode %o (want %o), '
                  'group %d (want the queue\'s %d)' % (
                      files[0], st.st_mode, want, st.st_gid, qst.st_gid))
            if IS_ROOT:
                other = pwd.getpwnam('daemon')
                check(other.pw_gid != qst.st_gid and other.pw_uid not in
                      (st.st_uid, qst.st_uid), 'user daemon is no stranger')
                p = subprocess.run(
                    ['python3', '-c', _OPEN_AS_OTHER, path],
                    user=other.pw_uid, group=other.pw_gid, extra_groups=[],
                    capture_output=True, timeout=30)
                check(p.returncode == errno.EACCES, 'user daemon opening '
                      'maildrop/%s: exit %d (want EACCES, %d): %s'
                      % (files[0], p.returncode, errno.EACCES,
                         short(p.stderr)))
            d.start()
            t = peer.wait_delivered(1)
            check(len(t) == 1 and t[0].sender == 'md@example.test' and
                  [r for r, _ in t[0].rcpts] == ['r@relay.test'] and
                  b'\r\nSubject: group only\r\n' in t[0].body and
                  t[0].body.endswith(b'\r\n\r\nfor the daemon\'s eyes'
                                     b'\r\n.x\r\n'),
                  'relayed: %r' % [(x.mail, x.rcpts, x.body) for x in t])
            check(os.listdir(md) == [] and d.corrupt_files() == [],
                  'maildrop/ %r, corrupt/ %r' % (os.listdir(md),
                                                 d.corrupt_files()))
            d.stop()
            ok = True
        finally:
            d.cleanup(ok)


def test_sendmail_maildrop_group_only_after_failed_start():
    """A start that fails after the queue's directories are set up (here
    a tls_cert that is not there: exit 78) left maildrop/ 1733, its
    setgid bit cleared there and set again only by the sweep it never
    reached; the daemon then stays down, just when sendmail writes to
    maildrop/, and its files were 0644 to every local user again.  The
    bit stays, and a local user's file is still the queue's group's."""
    d = Daemon('sm-group-fail')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        d.start()
        d.stop()
        check(stat.S_IMODE(os.stat(md).st_mode) == 0o3733,
              'maildrop/ mode %o after a run' % os.stat(md).st_mode)
        good = dict(d.cfg)
        d.cfg['tls_cert'] = os.path.join(d.dir, 'missing.pem')
        d.cfg['tls_key'] = os.path.join(d.dir, 'missing.key')
        d.write_config()
        d.start(wait=False)
        rc = d.wait_exit()
        check(rc == 78, 'start without its tls_cert: exit %d (want 78)'
              % rc)
        check(stat.S_IMODE(os.stat(md).st_mode) == 0o3733,
              'maildrop/ mode %o after a failed start (want 3733)'
              % os.stat(md).st_mode)
        _ok(d.cli('sendmail', '-f', 'md@example.test', 'r@relay.test',
                  user=NOBODY, input=b'Subject: x\n\ny\n'),
            'sendmail, daemon down')
        files = os.listdir(md)
        st = os.stat(os.path.join(md, files[0]))
        want = 0o640 if IS_ROOT else 0o644
        check(len(files) == 1 and stat.S_IMODE(st.st_mode) == want and
              st.st_gid == os.stat(d.queue_dir).st_gid,
              'maildrop/ %r: mode %o (want %o), group %d' % (
                  files, st.st_mode, want, st.st_gid))
        d.cfg = good
        d.write_config()
        d.start()
        wait_for(lambda: os.listdir(md) == [], 10,
                 lambda: 'maildrop/ to be empty: %r' % os.listdir(md))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# The daemon's queue looks full while the flag file exists: fstatvfs (the
# queue's space check) reports no free block.
FULL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int
full(void)
{
	const char *f = getenv("SHIM_FULL");

	return f != NULL && access(f, F_OK) == 0;
}

int
fstatvfs64(int fd, struct statvfs64 *sv)
{
	static int (*real)(int, struct statvfs64 *);
	int rc;

	if (real == NULL)
		real = (int (*)(int, struct statvfs64 *))dlsym(RTLD_NEXT,
		    "fstatvfs64");
	rc = real(fd, sv);
	if (rc == 0 && full())
		sv->f_bavail = sv->f_bfree = 0;
	return rc;
}

int
fstatvfs(int fd, struct statvfs *sv)
{
	static int (*real)(int, struct statvfs *);
	int rc;

	if (real == NULL)
		real = (int (*)(int, struct statvfs *))dlsym(RTLD_NEXT,
		    "fstatvfs");
	rc = real(fd, sv);
	if (rc == 0 && full())
		sv->f_bavail = sv->f_bfree = 0;
	return rc;
}
"""


def test_sendmail_maildrop_on_4xx():
    """The daemon answers 452 4.3.1 (its queue short of space): sendmail
    writes the message into maildrop/ and exits 0, silent (cron must not
    mail about mail; it exited 75 and the caller's message was lost).
    With -v it says which reply sent it there.  Once there is room, the
    daemon picks both up, whole."""
    d = Daemon('sm-4xx')
    flag = os.path.join(d.dir, 'full')
    d.preload(FULL_SHIM, SHIM_FULL=flag)
    ok = False
    try:
        d.start()
        open(flag, 'w').close()
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 452, '4.3.1')
        md = os.path.join(d.queue_dir, 'maildrop')
        p = d.cli('sendmail', '-f', 'full@example.test', 'r@relay.test',
                  user=NOBODY, input=b'Subject: one\n\nfirst\n')
        check(p.returncode == 0 and p.stderr == b'',
              'sendmail: exit %d: %s' % (p.returncode, short(p.stderr)))
        p = d.cli('sendmail', '-v', '-f', 'full@example.test',
                  'r@relay.test', user=NOBODY,
                  input=b'Subject: two\n\nsecond\n')
        check(p.returncode == 0 and re.search(
            rb'452 4\.3\.1 .*queued in maildrop as [0-9A-F]{18}', p.stderr),
              'sendmail -v: exit %d: %s' % (p.returncode, short(p.stderr)))
        # mailq lists them, as Postfix's showq lists maildrop/.
        q = d.mailq(maildrop=True)
        check(len(os.listdir(md)) == 2 and sorted(m['id'] for m in q) ==
              sorted(os.listdir(md)) and all(
                  m['queue_name'] == 'maildrop' and m['recipients'] == [
                      {'address': 'r@relay.test', 'status': 'queued',
                       'reason': ''}] for m in q),
              'maildrop %r, mailq %r' % (os.listdir(md), q))
        p = d.cli('mailq')
        check(p.returncode == 0 and p.stdout.count(
            b'(waiting in maildrop/)')
              == 2 and b'in 2 Requests.' in p.stdout, 'mailq: %s'
              % short(p.stdout, 800))
        # Truly short of room: maildrop/ keeps the queue's reserve too
        # (sendmail's own check of the file system, through the shim).
        p = d.cli('sendmail', '-f', 'full@example.test', 'r@relay.test',
                  user=NOBODY, input=b'Subject: three\n\nthird\n',
                  env=dict(d.shim_env(FULL_SHIM, 'full'), SHIM_FULL=flag))
        check(p.returncode == 75 and re.search(
            rb'answered "452 4\.3\.1 [^"]*" and writing to \S+/maildrop '
            rb'failed: No space left on device', p.stderr),
              'sendmail with no room: exit %d %s' % (p.returncode,
                                                    short(p.stderr)))
        check(len(os.listdir(md)) == 2, 'maildrop %r' % os.listdir(md))
        os.unlink(flag)
        d.stop()
        d.start()
        q = d.wait_queue(2, timeout=8)
        check(len(q) == 2 and os.listdir(md) == [],
              'after the restart: mailq %r, maildrop %r'
              % (q, os.listdir(md)))
        bodies = sorted(_body_of(d.cat(m['id'])) for m in q)
        check(bodies == [b'first\r\n', b'second\r\n'], 'bodies %r'
              % bodies)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_multicall_names():
    with Daemon('multicall') as d:
        sm = os.path.join(d.dir, 'sendmail')
        mq = os.path.join(d.dir, 'mailq')
        os.symlink(user_bin(), sm)
        os.symlink(user_bin(), mq)
        env = dict(os.environ, FERRY_CONFIG=d.conf)
        cmd = [sm, '-f', 's@example.test', 'r@relay.test']
        if IS_ROOT:
            cmd = ['runuser', '-u', 'nobody', '--', 'env',
                   'FERRY_CONFIG=' + d.conf] + cmd
        p = subprocess.run(cmd, input=b'Subject: m\n\nmulti\n', env=env,
                           capture_output=True, timeout=30)
        _ok(p, 'argv[0] sendmail')
        m = _one(d, 'argv[0] sendmail')
        p = _ok(subprocess.run([mq], env=env, capture_output=True,
                               timeout=30), 'argv[0] mailq')
        check(m['id'].encode() in p.stdout, 'argv[0] mailq: %s'
              % short(p.stdout))
        p = _ok(d.cli('sendmail', '-bp'), 'sendmail -bp')
        check(m['id'].encode() in p.stdout, 'sendmail -bp: %s'
              % short(p.stdout))


def test_sendmail_b_modes():
    """-bm is plain delivery and leaves an earlier -b mode alone (-bp -bm
    still lists); a -b mode sendmail lacks, or one letter too many, is
    refused 64 naming it, and nothing is queued or read."""
    with Daemon('sm-bmodes') as d:
        _ok(d.cli('sendmail', '-bm', 'rcpt@relay.test',
                  input=b'Subject: bm\n\nx\n'), 'sendmail -bm')
        m = _one(d, 'sendmail -bm')
        p = _ok(d.cli('sendmail', '-bp', '-bm'), 'sendmail -bp -bm')
        check(m['id'].encode() in p.stdout, '-bp -bm did not list: %s'
              % short(p.stdout))
        for arg, shown in (('-bx', b'-bx'), ('-bpp', b'-bpp'),
                           ('-bmi', b'-bmi'), ('-b', b'-b')):
            args = ['sendmail', arg] + ([''] if arg == '-b' else []) + [
                'rcpt@relay.test']
            p = d.cli(*args, input=b'Subject: no\n\nx\n')
            check(p.returncode == 64 and
                  b'sendmail: ' + shown + b' is not supported' in p.stderr,
                  '%r: exit %d, %s' % (args, p.returncode, short(p.stderr)))
        check(len(d.mailq()) == 1, 'a refused -b mode queued: %r'
              % d.mailq())


def test_cli_unknown_command_usage():
    """An unknown command, or serve, flush or check-config with an
    argument, is 64 with the usage text (`check-config relay.conf`
    checked the default file and said 0); a broken config is reported
    first (78), as for any command."""
    with Daemon('cli-usage') as d:
        for args in (('nosuch',), ('serve', 'x'), ('check-configx',),
                     ('sendmai',), ('check-config', d.conf),
                     ('flush', 'x')):
            p = d.cli(*args)
            check(p.returncode == 64 and p.stderr.startswith(
                b'usage: ferry [-c FILE] [-T smtp,io,queue,...] [COMMAND]\n'
                b'commands:\n') and p.stderr.endswith(
                b'  newaliases            check the aliases file\n'),
                  '%r: exit %d, %s' % (args, p.returncode,
                                      short(p.stderr, 900)))
        d.write_config(extra='bogus_key = 1\n')
        p = d.cli('nosuch')
        check(p.returncode == 78 and b'bogus_key' in p.stderr and
              b'usage:' not in p.stderr,
              'broken config: exit %d, %s' % (p.returncode, short(p.stderr)))


def test_sendmail_bs():
    with Daemon('sm-bs') as d:
        dialogue = (b'EHLO local\r\nMAIL FROM:<bs@example.test>\r\n'
                    b'RCPT TO:<r@relay.test>\r\nDATA\r\n' + stuff(BODY)
                    + b'QUIT\r\n')
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs')
        codes = re.findall(rb'(?m)^(\d{3}) ', p.stdout)
        check(codes == [b'220', b'250', b'250', b'250', b'354', b'250',
                        b'221'], '-bs replies %s' % short(p.stdout, 800))
        m = _one(d, 'sendmail -bs')
        # Local submission: From, Date and Message-ID as sendmail's
        # own path adds them (Postfix does it for -bs too).
        d.assert_submitted(m['id'], BODY, sender='bs@example.test')
        # A Date it has is kept; a line that is no header field ends the
        # header and starts the body, after an empty line.
        text = (b'Subject: x\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n'
                b'just text\r\n')
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=(
            b'HELO local\r\nMAIL FROM:<bs@example.test>\r\n'
            b'RCPT TO:<r@relay.test>\r\nDATA\r\n' + stuff(text) +
            b'QUIT\r\n')), 'sendmail -bs, second message')
        second = [q for q in d.wait_queue(2) if q['id'] != m['id']]
        out = d.cat(second[0]['id'])
        check(re.search(rb'\r\nSubject: x\r\nDate: Mon, 01 Jan 2024 00:00:00'
                        rb' \+0000\r\nFrom: <bs@example\.test>\r\n'
                        rb'Message-ID: <[^>]+>\r\n\r\njust text\r\n\Z', out),
              'second message: %s' % short(out, 900))


def _bs_codes(out):
    """The reply codes of a -bs dialogue, one per reply (the last line of
    a multi-line one)."""
    return [int(c) for c in re.findall(rb'(?m)^(\d{3}) ', out)]


def _bs_down(name, **cfg):
    """A daemon started once (queue_dir and maildrop/ made) and stopped."""
    d = Daemon(name, **cfg)
    d.start()
    d.stop()
    return d


def _arg_and_bs(d, arg_from, bs_from, msg, what):
    """msg given to sendmail as nobody by both doors: recipient
    r@relay.test in arguments (envelope sender arg_from), then in a -bs
    dialogue (bs_from); the -bs reply codes."""
    _ok(d.cli('sendmail', '-f', arg_from, 'r@relay.test', user=NOBODY,
              input=msg), 'sendmail, ' + what)
    p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=(
        b'HELO local\r\nMAIL FROM:<' + bs_from.encode() + b'>\r\n'
        b'RCPT TO:<r@relay.test>\r\nDATA\r\n' + msg +
        b'.\r\nQUIT\r\n')), 'sendmail -bs, ' + what)
    return _bs_codes(p.stdout), p.stdout


def _stored_by_sender(d, senders, what):
    """Once the queue holds a message from each of senders: each one as
    stored (checked for bare LFs), with its mailq entry and header."""
    q = d.wait_queue(len(senders), timeout=8)
    check(sorted(m['sender'] for m in q) == sorted(senders), 'mailq %r' % q)
    out = []
    for m in q:
        raw = d.cat(m['id'])
        _no_bare_lf(raw, what)
        out.append((m, raw, _headers_of(raw)))
    return out


def test_sendmail_bs_daemon_down():
    """With the daemon down, sendmail -bs answers the dialogue itself, as
    Postfix's smtpd -S does, and drops each accepted message in maildrop/:
    a Symfony-like session with two transactions, RSET, errors between."""
    d = _bs_down('sm-bs-down')
    ok = False
    try:
        one = (b'Subject: one\r\nFrom: App <app@example.test>\r\n\r\n'
               b'.leading dot\r\n..two dots\r\n.\r\nh\xc3\xa9llo\r\n'
               b'last\r\n')
        two = b'Subject: two\r\n\r\nsecond\r\n.\r\n'
        dialogue = (
            b'EHLO [127.0.0.1]\r\n'
            b'MAIL FROM:<app@example.test> BODY=8BITMIME\r\n'
            b'RCPT TO:<a@relay.test>\r\n'
            b'RCPT TO:<b@relay.test>\r\n'
            b'DATA\r\n' + stuff(one) +
            # refused and reset: nothing of these may be queued
            b'MAIL FROM:<gone@example.test>\r\n'
            b'RCPT TO:<gone@relay.test>\r\n'
            b'RSET\r\n'
            b'XYZZY\r\n'
            b'RCPT TO:<c@relay.test>\r\n'
            b'DATA\r\n'
            b'MAIL FROM:<x@example.test> FOO=bar\r\n'
            b'MAIL FROM:<x@example.test>\r\n'
            b'MAIL FROM:<y@example.test>\r\n'
            b'DATA\r\n'
            b'RSET\r\n'
            # the second transaction, typed by a human: bare LF
            b'MAIL FROM:<>\n'
            b'RCPT TO:<c@relay.test>\n'
            b'RCPT TO:<c@RELAY.Test>\n'
            b'NOOP\n'
            b'VRFY root\n'
            b'DATA\n' + stuff(two).replace(b'\r\n', b'\n') +
            b'QUIT\r\n')
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs, daemon down')
        codes = _bs_codes(p.stdout)
        check(codes == [220, 250, 250, 250, 250, 354, 250,
                        250, 250, 250, 502, 503, 503, 555, 250, 503, 503,
                        250,
                        250, 250, 250, 250, 252, 354, 250, 221],
              '-bs replies %r:\n%s' % (codes, short(p.stdout, 2000)))
        check(b'250-8BITMIME\r\n' in p.stdout and
              b'250-PIPELINING\r\n' in p.stdout and
              p.stdout.startswith(b'220 %s ' % HOSTNAME.encode()),
              'greeting and EHLO: %s' % short(p.stdout, 400))
        ids = re.findall(rb'250 2\.0\.0 Ok: queued as (\S+)\r\n', p.stdout)
        md = os.path.join(d.queue_dir, 'maildrop')
        check(sorted(i.decode() for i in ids) == sorted(os.listdir(md)),
              'queued %r, maildrop %r' % (ids, os.listdir(md)))
        d.start()
        q = d.wait_queue(2, timeout=8)
        check(len(q) == 2, 'expected two messages, mailq %r' % q)
        byid = {m['sender']: m for m in q}
        check(sorted(byid) == ['', 'app@example.test'], 'senders %r'
              % sorted(byid))
        m = byid['app@example.test']
        check([r['address'] for r in m['recipients']] ==
              ['a@relay.test', 'b@relay.test'], 'recipients %r'
              % m['recipients'])
        out = d.cat(m['id'])
        _no_bare_lf(out, '-bs message')
        check(_body_of(out) == one.partition(b'\r\n\r\n')[2],
              'body %s' % short(out, 900))
        h = _headers_of(out)
        check(b'\r\nSubject: one\r\nFrom: App <app@example.test>\r\n'
              b'Date: ' in h and h.count(b'Message-ID: <') == 1,
              'headers %s' % short(h, 900))
        m = byid['']
        check([r['address'] for r in m['recipients']] == ['c@relay.test'],
              'recipients %r' % m['recipients'])
        out = d.cat(m['id'])
        check(_body_of(out) == b'second\r\n.\r\n', 'body %s'
              % short(out, 900))
        # The null sender: Postfix's MAILER-DAEMON, @origin.
        check(b'\r\nFrom: MAILER-DAEMON@%s\r\n' % HOSTNAME.encode()
              in _headers_of(out), 'From: for <>: %s' % short(out, 900))
        check(b'gone' not in out and b'gone' not in d.cat(q[0]['id']),
              'a reset transaction got through')
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bs_daemon_down_limits():
    """-bs with the daemon down keeps the daemon's limits: a message over
    message_size_limit (552 after its end), a data line over 1000 octets
    (500), recipients past max_recipients (452); a command over 512
    octets (500).  Nothing of those is dropped; the dialogue goes on and
    the next message is."""
    d = _bs_down('sm-bs-lim')
    ok = False
    try:
        big = b'Subject: big\r\n\r\n' + (b'x' * 998 + b'\r\n') * 101
        rcpts = b''.join(b'RCPT TO:<r%d@relay.test>\r\n' % i
                         for i in range(6))
        dialogue = (
            b'HELO local\r\n'
            b'MAIL FROM:<big@example.test>\r\n'
            b'RCPT TO:<r@relay.test>\r\n'
            b'DATA\r\n' + stuff(big) +
            b'MAIL FROM:<long@example.test>\r\n'
            b'RCPT TO:<r@relay.test>\r\n'
            b'DATA\r\n' + b'.' + b'y' * 998 + b'\r\n' + b'y' * 999 +
            b'\r\n.\r\n'
            b'NOOP ' + b'z' * 506 + b'\r\n'
            b'MAIL FROM:<ok@example.test>\r\n' + rcpts +
            b'DATA\r\nSubject: ok\r\n\r\nfits\r\n.\r\n')
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs, daemon down, limits')
        codes = _bs_codes(p.stdout)
        check(codes == [220, 250, 250, 250, 354, 552,
                        250, 250, 354, 500, 500,
                        250, 250, 250, 250, 250, 250, 452, 354, 250],
              '-bs replies %r:\n%s' % (codes, short(p.stdout, 2000)))
        md = os.path.join(d.queue_dir, 'maildrop')
        check(len(os.listdir(md)) == 1, 'maildrop holds %r'
              % os.listdir(md))
        d.start()
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1 and q[0]['sender'] == 'ok@example.test' and
              [r['address'] for r in q[0]['recipients']] ==
              ['r%d@relay.test' % i for i in range(5)],
              'mailq %r' % q)
        check(_body_of(d.cat(q[0]['id'])) == b'fits\r\n', 'body')
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def _bs_cmd(d):
    """sendmail -bs against d's config (as nobody where there is one),
    and the 421 that ends it on a timeout."""
    cmd = [user_bin() if NOBODY else FERRY_BIN, 'sendmail', '-bs']
    if NOBODY:
        cmd = ['runuser', '-u', NOBODY, '--', 'env',
               'FERRY_CONFIG=' + d.conf] + cmd
    else:
        cmd = cmd[:1] + ['-c', d.conf] + cmd[1:]
    return cmd, b'421 4.4.2 %s Error: timeout exceeded\r\n' % \
        HOSTNAME.encode()


def test_sendmail_bs_daemon_comes_up():
    """-bs answered alone (the daemon down at its start) keeps to
    maildrop/ when the daemon has come up meanwhile: the daemon could
    refuse a recipient that the dialogue has already accepted.  The 250
    names the maildrop file, and the daemon picks it up (here at its
    restart, otherwise within a minute)."""
    d = _bs_down('sm-bs-up')
    ok = False
    p = killer = None
    try:
        cmd = _bs_cmd(d)[0]
        # Its own process group: a hang kills sendmail under runuser
        # too, or it would hold the pipe and the read below for ever.
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        killer = threading.Timer(30 * SLOW, os.killpg,
                                 (p.pid, signal.SIGKILL))	# a hang fails
        killer.start()

        def say(line, code):
            if line:
                p.stdin.write(line)
                p.stdin.flush()
            while True:
                r = p.stdout.readline()
                check(r[:3] == b'%d' % code, 'to %r: %r' % (line, r))
                if r[3:4] == b' ':
                    return r

        say(None, 220)
        say(b'EHLO local\r\n', 250)
        say(b'MAIL FROM:<up@example.test>\r\n', 250)
        say(b'RCPT TO:<r@relay.test>\r\n', 250)
        d.start()
        say(b'DATA\r\n', 354)
        r = say(stuff(BODY), 250)
        say(b'QUIT\r\n', 221)
        p.stdin.close()
        err = p.stderr.read()
        check(p.wait() == 0 and sanitizer_report(err.decode(
            'utf-8', 'replace')) is None, 'exit %s: %s'
              % (p.returncode, short(err, 2000)))
        md = os.listdir(os.path.join(d.queue_dir, 'maildrop'))
        check(r == b'250 2.0.0 Ok: queued as %s\r\n' % md[0].encode()
              if len(md) == 1 else False, 'reply %r, maildrop %r' % (r, md))
        d.stop()
        d.start()
        m = _one(d, '-bs, the daemon up meanwhile')
        check(os.listdir(os.path.join(d.queue_dir, 'maildrop')) == [],
              'maildrop/ not picked up')
        check(m['sender'] == 'up@example.test' and m['recipients'][0][
            'address'] == 'r@relay.test' and len(m['recipients']) == 1,
              'envelope %r' % m)
        out = d.cat(m['id'])
        check(_body_of(out) == _body_of(BODY) and b'\r\nSubject: cli\r\n'
              b'From: <up@example.test>\r\nDate: ' in _headers_of(out),
              'stored %s' % short(out, 900))
        d.stop()
        ok = True
    finally:
        if killer is not None:
            killer.cancel()
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        d.cleanup(ok)


def test_sendmail_bs_daemon_down_timeout():
    """-bs answered alone ends a silent client after smtpd_timeout with
    the daemon's 421 4.4.2, as Postfix's smtpd -S does; it waited for
    ever.  Silence after MAIL, and in DATA in the middle of a line: the
    unfinished message is not queued (maildrop/ stays empty, no .tmp).
    The daemon says the same words after the same silence."""
    d = _bs_down('sm-bs-tmo', smtpd_timeout='2s')
    ok = False
    cmd, want = _bs_cmd(d)

    def silent(what, dialogue):
        """Send dialogue, then nothing with stdin open: the output, once
        sendmail has exited (a hang is killed, and fails)."""
        # Its own group: killing runuser alone leaves sendmail holding
        # the pipe, and the read below waiting for ever.
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        killer = threading.Timer(15 * SLOW, os.killpg,
                                 (p.pid, signal.SIGKILL))
        killer.start()
        try:
            p.stdin.write(dialogue)
            p.stdin.flush()
            t0 = time.monotonic()
            out = p.stdout.read()	# to EOF: sendmail has gone
            took = time.monotonic() - t0
            p.stdin.close()
            err = p.stderr.read()
            rc = p.wait()
        finally:
            killer.cancel()
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        check(out.endswith(b'\r\n' + want) and rc == 0 and
              sanitizer_report(err.decode('utf-8', 'replace')) is None,
              '%s: exit %d after %.1fs, no 421 4.4.2 last:\n%s\n%s'
              % (what, rc, took, short(out, 900), short(err, 900)))
        check(1.5 <= took <= 2 + 5 * SLOW, '%s: 421 after %.1fs, '
              'smtpd_timeout is 2s' % (what, took))
        md = os.path.join(d.queue_dir, 'maildrop')
        check(os.listdir(md) == [], '%s: maildrop holds %r'
              % (what, os.listdir(md)))
        return out

    try:
        down = silent('after MAIL', b'EHLO local\r\n'
                      b'MAIL FROM:<s@example.test>\r\n')
        check(_bs_codes(down) == [220, 250, 250, 421], 'after MAIL: %s'
              % short(down, 900))
        out = silent('in DATA', b'EHLO local\r\n'
                     b'MAIL FROM:<s@example.test>\r\n'
                     b'RCPT TO:<r@relay.test>\r\nDATA\r\n'
                     b'Subject: t\r\n\r\nhalf a li')
        check(_bs_codes(out) == [220, 250, 250, 250, 354, 421],
              'in DATA: %s' % short(out, 900))
        d.start()
        up = silent('daemon up', b'EHLO local\r\n'
                    b'MAIL FROM:<s@example.test>\r\n')
        check(up.endswith(b'\r\n250 2.1.0 Ok\r\n' + want) and
              down.endswith(b'\r\n250 2.1.0 Ok\r\n' + want),
              'daemon up:\n%s\ndaemon down:\n%s'
              % (short(up, 900), short(down, 900)))
        check(d.mailq() == [], 'queued: %r' % d.mailq())
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bs_daemon_down_data_timeout():
    """-bs answered alone bounds the whole DATA phase by
    smtpd_data_timeout, as the daemon does: a client that trickles a line
    every 0.5s, never silent for smtpd_timeout, held sendmail for as long
    as it went on.  It gets the daemon's 421 4.4.2 about
    smtpd_data_timeout after the 354, while it is still sending, and
    nothing of the message is left in maildrop/."""
    d = _bs_down('sm-bs-datatmo', smtpd_timeout='6s',
                 smtpd_data_timeout='3s')
    ok = False
    cmd, want = _bs_cmd(d)
    lines = []		# (when, line); b'' for EOF

    def reader():
        for line in iter(p.stdout.readline, b''):
            lines.append((time.monotonic(), line))
        lines.append((time.monotonic(), b''))

    # Its own group, as in the test above: a hang is killed, and fails.
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    killer = threading.Timer(40 * SLOW, os.killpg, (p.pid, signal.SIGKILL))
    killer.start()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        p.stdin.write(b'EHLO local\r\nMAIL FROM:<s@example.test>\r\n'
                      b'RCPT TO:<r@relay.test>\r\nDATA\r\n'
                      b'Subject: trickle\r\n\r\n')
        p.stdin.flush()
        t0 = wait_for(lambda: [t for t, l in lines if l[:4] == b'354 '],
                      10, 'the 354')[0]
        while (not lines or lines[-1][1] != b'') and \
                time.monotonic() - t0 < 15 * SLOW:
            try:
                p.stdin.write(b'trickle\r\n')
                p.stdin.flush()
            except OSError:
                break		# sendmail has gone
            time.sleep(0.5)
        try:
            p.stdin.close()
        except OSError:
            pass
        th.join(20 * SLOW)
        err = p.stderr.read()
        rc = p.wait()
        out = b''.join(l for _, l in lines)
        took = lines[-1][0] - t0 if lines and lines[-1][1] == b'' else -1
        check(out.endswith(b'\r\n' + want) and rc == 0 and
              sanitizer_report(err.decode('utf-8', 'replace')) is None,
              'exit %d after %.1fs, no 421 4.4.2 last:\n%s\n%s'
              % (rc, took, short(out, 900), short(err, 900)))
        check(_bs_codes(out) == [220, 250, 250, 250, 354, 421] and
              2.5 <= took <= 3 + 5 * SLOW, '421 after %.1fs, '
              'smtpd_data_timeout is 3s: %s' % (took, short(out, 900)))
        md = os.path.join(d.queue_dir, 'maildrop')
        check(os.listdir(md) == [], 'maildrop holds %r' % os.listdir(md))
        ok = True
    finally:
        killer.cancel()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        d.cleanup(ok)


def test_sendmail_bs_daemon_down_errors():
    """-bs alone refuses what the daemon refuses, in its words: HELO and
    EHLO without a name (501), DATA after only refused RCPTs (554 5.5.1,
    Postfix's), and ends the session with the daemon's 421 at its error
    limit: a 5xx to a command counts, and past the junk limit each NOOP,
    VRFY or RSET does (not HELP, as in Postfix).  The message accepted
    before is kept."""
    d = _bs_down('sm-bs-err')
    ok = False
    try:
        dialogue = (
            b'HELO\r\n'
            b'EHLO  \r\n'
            b'EHLO local\r\n'
            b'MAIL FROM:<ok@example.test>\r\n'
            b'RCPT TO:<r@relay.test>\r\n'
            b'DATA\r\n' + stuff(BODY) +
            b'MAIL FROM:<bad@example.test>\r\n'
            b'RCPT TO:<a b@relay.test>\r\n'
            b'DATA\r\n' + b'XYZZY\r\n' * 6 +
            b'NOOP\r\nQUIT\r\n')
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs, daemon down, errors')
        codes = _bs_codes(p.stdout)
        check(codes == [220, 501, 501, 250, 250, 250, 354, 250, 250, 501,
                        554] + [502] * 6 + [421],
              '-bs replies %r:\n%s' % (codes, short(p.stdout, 2000)))
        check(b'\r\n501 5.5.2 Syntax: HELO hostname\r\n'
              b'501 5.5.2 Syntax: EHLO hostname\r\n' in p.stdout and
              b'\r\n554 5.5.1 Error: no valid recipients\r\n' in p.stdout
              and p.stdout.endswith(b'421 4.7.0 %s Error: too many errors'
                                    b'\r\n' % HOSTNAME.encode()),
              'replies %s' % short(p.stdout, 2000))
        # the junk limit: the 101st NOOP is the first error; HELP is
        # not counted
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY,
                      input=b'HELO local\r\n' + b'HELP\r\n' * 150 +
                      b'NOOP\r\n' * 200),
                'sendmail -bs, NOOPs')
        codes = _bs_codes(p.stdout)
        check(codes == [220, 250] + [214] * 150 + [250] * 110 + [421],
              '-bs NOOPs: %d replies, last %r' % (len(codes), codes[-3:]))
        md = os.path.join(d.queue_dir, 'maildrop')
        check(len(os.listdir(md)) == 1, 'maildrop holds %r'
              % os.listdir(md))
        d.start()
        m = _one(d, '-bs with errors')
        check(m['sender'] == 'ok@example.test', 'mailq %r' % m)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bs_vrfy_without_address():
    """VRFY without an address is a syntax error to the daemon, Postfix's
    501 5.5.4; -bs answered alone said 252 to it.  The same dialogue gets
    the same replies, word for word, through the daemon and without it,
    and a VRFY with an address 252 from both."""
    d = _bs_down('sm-bs-vrfy')
    ok = False
    try:
        dialogue = b'HELO local\r\nVRFY\r\nVRFY root\r\nQUIT\r\n'
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs, daemon down')
        down = p.stdout
        d.start()
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                'sendmail -bs, daemon up')
        check(p.stdout == down and
              b'\r\n501 5.5.4 Syntax: VRFY address\r\n252 2.0.0 ' in down,
              'daemon up:\n%s\ndaemon down:\n%s'
              % (short(p.stdout, 900), short(down, 900)))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bs_argument_where_none_belongs():
    """RSET, STARTTLS and DATA (once a recipient is in) with an argument
    get the daemon's 501 5.5.4 Syntax: VERB from -bs answered alone too,
    as Postfix's sendmail -bs answers them (RSET x got 250 and reset the
    transaction; STARTTLS x 502; DATA x 354, and the commands after it
    became a message).  DATA's sequence error comes first.  The same
    dialogue gets the same replies through the daemon and without it,
    and each run queues its one message, envelope and body intact."""
    d = _bs_down('sm-bs-noarg')
    ok = False
    try:
        dialogue = (b'HELO local\r\nRSET x\r\nSTARTTLS x\r\n'
                    b'MAIL FROM:<s@example.test>\r\nRSET x\r\nDATA x\r\n'
                    b'RCPT TO:<r@relay.test>\r\nDATA x\r\nDATA\r\n' +
                    stuff(BODY) + b'QUIT\r\n')
        out = []
        for up in (False, True):
            if up:
                d.start()
            p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=dialogue),
                    'sendmail -bs, daemon %s' % ('up' if up else 'down'))
            codes = _bs_codes(p.stdout)
            check(codes == [220, 250, 501, 501, 250, 501, 503, 250, 501,
                            354, 250, 221],
                  'daemon %s: -bs replies %r:\n%s' % (
                      'up' if up else 'down', codes, short(p.stdout, 2000)))
            out.append(re.sub(rb'queued as \S+', b'queued as ID', p.stdout))
        check(out[0] == out[1] and b'\r\n501 5.5.4 Syntax: RSET\r\n'
              b'501 5.5.4 Syntax: STARTTLS\r\n' in out[0] and
              b'\r\n501 5.5.4 Syntax: DATA\r\n354 ' in out[0],
              'daemon down:\n%s\ndaemon up:\n%s'
              % (short(out[0], 900), short(out[1], 900)))
        q = d.wait_queue(2, timeout=8)
        check(len(q) == 2, 'expected two messages, mailq %r' % q)
        for m in q:
            check(m['sender'] == 's@example.test' and
                  [r['address'] for r in m['recipients']] ==
                  ['r@relay.test'], 'envelope %r' % m)
            out = d.cat(m['id'])
            check(_body_of(out) == _body_of(BODY) and
                  b'\r\nSubject: cli\r\n' in _headers_of(out),
                  'stored %s' % short(out, 900))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bs_daemon_down_overshoot():
    """-bs alone keeps the daemon's recipient overshoot limit: the first
    1000 RCPTs past max_recipients in a transaction are 452 and no error
    (the message then goes), the tenth error after them is the 421."""
    d = Daemon('sm-bs-over', max_recipients='2')
    d.start()
    d.stop()
    ok = False

    def txn(n_over):
        return (b'MAIL FROM:<s@example.test>\r\n'
                b'RCPT TO:<r0@relay.test>\r\nRCPT TO:<r1@relay.test>\r\n' +
                b''.join(b'RCPT TO:<o%d@relay.test>\r\n' % i
                         for i in range(n_over)) + b'DATA\r\n')
    try:
        p = _ok(d.cli('sendmail', '-bs', user=NOBODY,
                      input=b'HELO local\r\n' + txn(1000) + stuff(BODY) +
                      txn(1011)),
                'sendmail -bs, daemon down, overshoot')
        codes = _bs_codes(p.stdout)
        want = [220, 250] + ([250] * 3 + [452] * 1000 + [354, 250]) + \
            [250] * 3 + [452] * 1010 + [421]
        check(codes == want, '-bs replies: %d, want %d; last %r'
              % (len(codes), len(want), codes[-3:]))
        md = os.path.join(d.queue_dir, 'maildrop')
        check(len(os.listdir(md)) == 1, 'maildrop holds %r'
              % os.listdir(md))
        d.start()
        m = _one(d, '-bs overshoot')
        check([r['address'] for r in m['recipients']] ==
              ['r0@relay.test', 'r1@relay.test'], 'mailq %r' % m)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_null_sender_from_mailer_daemon():
    """A message from the null sender (-f '<>', MAIL FROM:<>) without a
    From: gets "From: MAILER-DAEMON@origin": Postfix's cleanup writes
    MAILER-DAEMON for <>, and a From: with no domain is qualified as a
    bare "root" is.  The argument path wrote the caller's GECOS name and
    login@origin, -bs (daemon up or down) no From: at all.  Every door:
    the argument path and -bs, each with the daemon up and down; -F is
    no name for <>, and a From: the message has is kept alone."""
    d = Daemon('sm-null', origin='box.test')
    ok = False
    try:
        seen = set()
        for down in (False, True):
            d.start()
            if down:
                d.stop()
            _ok(d.cli('sendmail', '-f', '<>', '-F', 'Some Name',
                      'r@relay.test', user=NOBODY,
                      input=b'Subject: arg %d\n\nx\n' % down),
                'sendmail -f <>')
            _ok(d.cli('sendmail', '-f', '', 'r@relay.test', user=NOBODY,
                      input=b'Subject: has %d\nFrom: App <app@example.test>'
                            b'\n\nx\n' % down), 'sendmail -f ""')
            p = _ok(d.cli('sendmail', '-bs', user=NOBODY, input=(
                b'HELO local\r\nMAIL FROM:<>\r\nRCPT TO:<r@relay.test>\r\n'
                b'DATA\r\nSubject: bs %d\r\n\r\nx\r\n.\r\nQUIT\r\n'
                % down)), 'sendmail -bs, MAIL FROM:<>')
            check(_bs_codes(p.stdout) == [220, 250, 250, 250, 354, 250, 221],
                  '-bs replies %s' % short(p.stdout, 900))
            if down:
                d.start()
            q = [m for m in d.wait_queue(len(seen) + 3, timeout=8)
                 if m['id'] not in seen]
            check(len(q) == 3, 'down=%r: new messages %r' % (down, q))
            for m in q:
                seen.add(m['id'])
                h = _headers_of(d.cat(m['id']))
                froms = re.findall(rb'(?mi)^From:.*\r\n', h)
                want = (b'From: App <app@example.test>\r\n'
                        if b'Subject: has' in h else
                        b'From: MAILER-DAEMON@box.test\r\n')
                check(m['sender'] == '' and froms == [want],
                      'down=%r, sender %r, From: %r in\n%s'
                      % (down, m['sender'], froms, h.decode(errors='replace')))
            d.stop()
        ok = True
    finally:
        d.cleanup(ok)


class _FakeDaemon:
    """A stand-in for the daemon on its local_socket: each command gets
    the reply answer(verb) gives (None: a plain 250), DATA 354 and its
    message "250 queued"; the commands are kept in .cmds."""

    def __init__(self, path, answer):
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.answer = answer
        self.cmds = []
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            with c:
                self._converse(c.makefile('rwb', buffering=0))

    def _converse(self, f):
        f.write(b'220 fake ESMTP\r\n')
        for line in f:
            verb = line.split(b' ')[0].strip().upper().decode()
            self.cmds.append(verb)
            if verb == 'DATA':
                f.write(b'354 go\r\n')
                for body in f:
                    if body == b'.\r\n':
                        break
                self.cmds.append('.')
                f.write(b'250 2.0.0 Ok: queued as FAKE\r\n')
                continue
            f.write((self.answer(verb) or '250 2.0.0 Ok').encode() +
                    b'\r\n')
            if verb == 'QUIT':
                return

    def stop(self):
        self.stopping = True
        self.t.join()
        self.sock.close()


def test_cli_mixed_code_reply():
    """A reply whose lines carry different codes (RFC 5321 4.2.1) is no
    reply: sendmail does not read "250-" then "550" as a 250 to RCPT but
    leaves the message in maildrop/ (nothing sent as DATA), and ferry
    flush does not take it as a 250 to ETRN (75, the reply shown)."""
    d = _bs_down('cli-mixed')
    fake = None
    ok = False
    try:
        fake = _FakeDaemon(d.cfg['local_socket'], lambda v: {
            'RCPT': '250-2.1.5 taken\r\n550 5.1.1 refused',
            'ETRN': '250-queuing\r\n550 5.0.0 no'}.get(v))
        _ok(d.cli('sendmail', '-f', 's@example.test', 'r@relay.test',
                  user=NOBODY, input=b'Subject: mixed\n\nbody\n'),
            'sendmail to a mixed-code RCPT reply')
        check('DATA' not in fake.cmds, 'sent on: %r' % fake.cmds)
        md = os.path.join(d.queue_dir, 'maildrop')
        check(len(os.listdir(md)) == 1, 'maildrop holds %r'
              % os.listdir(md))
        p = d.cli('flush')
        check(p.returncode == 75 and b'550 5.0.0 no' in p.stderr,
              'flush: exit %d, stderr %r' % (p.returncode, p.stderr))
        fake.stop()
        fake = None
        d.start()
        m = _one(d, 'after the mixed reply')
        check(m['sender'] == 's@example.test' and
              [r['address'] for r in m['recipients']] == ['r@relay.test'],
              'mailq %r' % m)
        d.stop()
        ok = True
    finally:
        if fake is not None:
            fake.stop()
        d.cleanup(ok)


def test_sendmail_cr_cr_lf_one_line_end():
    """A line ending CR CR LF (a CRLF text through a LF-to-CRLF filter)
    ends once, as in Postfix's sendmail (the CRs before a LF are part of
    its line end): as two it would end the header at its first field.
    The argument path and -bs alone."""
    d = _bs_down('sm-crcr')
    ok = False
    try:
        msg = (b'From: App <app@example.test>\r\r\nTo: r@relay.test\r\r\n'
               b'Subject: crcr\r\r\n\r\r\nline one\r\r\nline two\r\r\n')
        codes, said = _arg_and_bs(d, 'arg@example.test', 'bs@example.test',
                                  msg, 'CR CR LF')
        check(codes == [220, 250, 250, 250, 354, 250, 221],
              '-bs replies %s' % short(said, 900))
        d.start()
        for m, out, h in _stored_by_sender(
                d, ['arg@example.test', 'bs@example.test'], 'CR CR LF'):
            check(b'\r\nFrom: App <app@example.test>\r\nTo: r@relay.test'
                  b'\r\nSubject: crcr\r\n' in h and h.count(b'From:') == 1
                  and b'\r\r' not in out and
                  _body_of(out) == b'line one\r\nline two\r\n',
                  '%s: stored %s' % (m['sender'], short(out, 900)))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bare_cr_is_a_space():
    """A CR not before a LF is a space, as Postfix's sendmail makes it
    (RFC 5322 forbids it): as a line end it ended the header inside
    Subject: and moved the rest of the header into the body.  The same
    bytes whichever door takes them: maildrop/ with the daemon down,
    SMTP with it up, for the argument path and -bs alike."""
    d = _bs_down('sm-barecr')
    ok = False
    msg = (b'Subject: a\rb\r\nX-After: kept\n\nbody\rline\n'
           b'end\r\r\n')

    def both(tag):
        codes, said = _arg_and_bs(d, tag + '@example.test',
                                  'bs%s@example.test' % tag, msg, tag)
        check(codes[-3:] == [354, 250, 221],
              '-bs %s replies %s' % (tag, short(said, 900)))
    try:
        both('down')
        d.start()
        both('up')
        for m, out, h in _stored_by_sender(
                d, ['bsdown@example.test', 'bsup@example.test',
                    'down@example.test', 'up@example.test'], 'bare CR'):
            check(b'\r\nSubject: a b\r\nX-After: kept\r\n' in h and
                  b'\r' not in out.replace(b'\r\n', b'') and
                  _body_of(out) == b'body line\r\nend\r\n',
                  '%s: stored %s' % (m['sender'], short(out, 900)))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_resent_headers():
    """With a Resent- field (RFC 5322 section 3.6.6) the fields sendmail
    adds are the Resent- ones, as Postfix's: Resent-Date and
    Resent-Message-ID, and Resent-From when missing, and no plain Date,
    Message-ID or From; the daemon, taking it at its SMTP door, adds
    none either, so maildrop/ and the door keep the same fields.  A
    Resent- name Postfix does not know (Resent-X-Foo) makes no resent
    message."""
    d = _bs_down('sm-resent')
    ok = False
    full = (b'From: Orig <o@example.test>\nDate: Mon, 01 Jan 2024 10:00:00'
            b' +0100\nMessage-ID: <orig@example.test>\n')
    cases = {
        # tag: (header, what must be there, what must not; %s: sender)
        'rfrom': (full + b'Resent-From: r@example.test\n',
                  [b'Resent-Date: ', b'Resent-Message-ID: <'],
                  [b'Resent-From: nobody']),
        'rto': (full + b'Resent-To: x@relay.test\n',
                [b'Resent-Date: ', b'Resent-Message-ID: <',
                 b'Resent-From: nobody <%s>'], []),
        'bare': (b'Resent-Date: Tue, 02 Jan 2024 10:00:00 +0100\n',
                 [b'Resent-Message-ID: <', b'Resent-From: nobody <%s>'],
                 [b'\r\nDate: ', b'\r\nMessage-ID: ', b'\r\nFrom: ']),
        'xfoo': (b'Resent-X-Foo: 1\n',
                 [b'\r\nDate: ', b'\r\nMessage-ID: <', b'\r\nFrom: '],
                 [b'Resent-Date', b'Resent-Message-ID', b'Resent-From']),
    }

    def submit(door):
        for tag, (head, _, _) in cases.items():
            _ok(d.cli('sendmail', '-f', '%s.%s@example.test' % (tag, door),
                      'r@relay.test', user=NOBODY,
                      input=head + b'Subject: ' + tag.encode() +
                      b'\n\nbody\n'), 'sendmail %s %s' % (tag, door))
    try:
        submit('maildrop')
        d.start()
        submit('smtp')
        q = d.wait_queue(2 * len(cases), timeout=8)
        check(len(q) == 2 * len(cases), 'mailq %r' % q)
        for m in q:
            tag = m['sender'].split('.')[0]
            h = _headers_of(d.cat(m['id']))
            _, want, no = cases[tag]
            want = [w.replace(b'%s', m['sender'].encode()) for w in want]
            two = tag in ('rfrom', 'rto')
            check(all(w in h for w in want) and
                  not any(w in h for w in no) and
                  h.count(b'Date: ') == 1 + two and
                  h.count(b'Message-ID: ') == 1 + two,
                  '%s: headers %s' % (m['sender'], short(h, 900)))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_q_interval_and_v_ignored():
    """Postfix's sendmail ignores -qINTERVAL (the daemon's queue runs are
    its own): exit 0, nothing read or queued, the daemon not asked - here
    it is down, where a bare -q exits 69.  mailq and sendmail take -v."""
    d = _bs_down('sm-qint')
    ok = False
    try:
        p = d.cli('sendmail', '-q', user=NOBODY)
        check(p.returncode == 69, 'bare -q, daemon down: exit %d'
              % p.returncode)
        for args in (['-q1h'], ['-q30m', '-v'], ['-v', '-q15', 'r@relay.test']):
            p = d.cli('sendmail', *args, user=NOBODY,
                      input=b'Subject: no\n\nx\n')
            check(p.returncode == 0 and p.stdout == b'' and p.stderr == b'',
                  'sendmail %r: exit %d, %s' % (args, p.returncode,
                                                short(p.stderr)))
        check(os.listdir(os.path.join(d.queue_dir, 'maildrop')) == [],
              '-qINTERVAL queued something')
        for args in (['mailq', '-v'], ['sendmail', '-bp', '-v'],
                     ['mailq', '-v', '--json']):
            p = d.cli(*args)
            check(p.returncode == 0 and p.stdout in (
                b'Mail queue is empty\n', b'[]\n'), '%r: exit %d, %s %s'
                  % (args, p.returncode, short(p.stdout), short(p.stderr)))
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_q_letters():
    """-qRsite and -qIqueueid ask for a queue run as -q does (the daemon
    runs it all); any other letter after -q is refused as Postfix's
    sendmail refuses it, "-qX is not implemented", and -qR or -qI
    without its argument "specify: ...": exit 64, the daemon not asked
    to run the queue, nothing read or queued.  -qX ran the queue."""
    with Daemon('sm-qx') as d:
        for args in (['-q'], ['-qRrelay.test'], ['-qI0123ABC']):
            p = d.cli('sendmail', *args, user=NOBODY)
            check(p.returncode == 0 and p.stderr == b'',
                  'sendmail %r: exit %d, %s' % (args, p.returncode,
                                                short(p.stderr)))
        d.wait_log(r'(?s)(?:\betrn=1\b.*?){3}')
        for arg, err in (('-qX', b'-qX is not implemented'),
                         ('-qS', b'-qS is not implemented'),
                         ('-qr', b'-qr is not implemented'),
                         ('-qXfoo', b'-qX is not implemented'),
                         ('-qR', b'specify: -qRsitename'),
                         ('-qI', b'specify: -qIqueueid')):
            p = d.cli('sendmail', arg, 'r@relay.test', user=NOBODY,
                      input=b'Subject: no\n\nx\n')
            check(p.returncode == 64 and
                  p.stderr == b'sendmail: ' + err + b'\n' and
                  p.stdout == b'', 'sendmail %s: exit %d, %r'
                  % (arg, p.returncode, p.stderr))
        time.sleep(0.3 * SLOW)
        n = len(re.findall(r'\betrn=1\b', d.log_text()))
        check(n == 3, 'the queue was run %d times, not 3' % n)
        check(d.mailq(maildrop=True) == [], 'queued: %r'
              % d.mailq(maildrop=True))


def test_nobody_cannot_touch_queue():
    if not IS_ROOT:
        return
    with Daemon('nobody') as d:
        qid = d.send_message(BODY)
        p = d.cli('delete', 'all', user='nobody')
        check(p.returncode != 0, 'nobody could `ferry delete all`')
        p = d.cli('cat', qid, user='nobody')
        check(p.returncode != 0 and b'hello from' not in p.stdout,
              'nobody could `ferry cat`: %s' % short(p.stdout))
        p = subprocess.run(['runuser', '-u', 'nobody', '--', 'cat',
                            os.path.join(d.queue_dir, qid)],
                           capture_output=True)
        check(p.returncode != 0, 'nobody can read the queue file')
        check(d.mailq_ids() == [qid], 'queue changed: %r' % d.mailq_ids())
        d.assert_stored(qid, BODY)


# --- mailq, cat, delete -----------------------------------------------------

def test_mailq_plain_and_json():
    with Daemon('mailq') as d:
        p = _ok(d.cli('mailq'), 'mailq')
        check(b'Mail queue is empty' in p.stdout, 'empty mailq: %s'
              % short(p.stdout))
        check(d.mailq() == [], 'json of an empty queue')
        a = d.send_message(BODY, sender='alice@example.test',
                           rcpts=['x@relay.test', 'y@other.test'])
        b = d.send_message(BODY + b'2\r\n', sender='',
                           rcpts=['z@relay.test'])
        p = _ok(d.cli('mailq'), 'mailq')
        for s in (a, b, 'alice@example.test', 'x@relay.test',
                  'y@other.test', 'z@relay.test'):
            check(s.encode() in p.stdout, 'mailq lacks %s: %s'
                  % (s, short(p.stdout, 1000)))
        check(b'Mail queue is empty' not in p.stdout, 'says empty')
        q = {m['id']: m for m in d.mailq()}
        check(set(q) == {a, b}, 'json ids %r' % list(q))
        check(q[a]['sender'] == 'alice@example.test' and
              q[b]['sender'] == '', 'senders %r' % q)
        check(q[a]['size'] < q[b]['size'] + 100, 'sizes %r' % q)
        # Postfix's table, to the byte: the titles, then ID, size, date
        # and sender; MAILER-DAEMON for <>.
        lines = p.stdout.decode().split('\n')
        check(lines[0] == '%-19s %8s %-20s %s' % (
            '-Queue ID-', '--Size--', '----Arrival Time----',
            '-Sender/Recipient-------'), 'mailq titles %r' % lines[0])
        for qid, sender in ((a, 'alice@example.test'),
                            (b, 'MAILER-DAEMON')):
            check(re.search(r'(?m)^%s %8d [A-Z][a-z]{2} [A-Z][a-z]{2} '
                            r'[ \d]\d \d\d:\d\d:\d\d  %s$'
                            % (re.escape(qid + ' ' * (19 - len(qid))),
                               q[qid]['size'], re.escape(sender)),
                            p.stdout.decode()),
                  'mailq row of %s: %s' % (qid, short(p.stdout, 1000)))
        # --json's keys in their order, the strings escaped as JSON.
        raw = _ok(d.cli('mailq', '--json'), 'mailq --json').stdout
        check(re.search(rb'\{"id":"%s","queue_name":"(active|deferred)",'
                        rb'"sender":"alice@example\.test","size":\d+,'
                        rb'"arrival":\d+,"next_attempt":\d+,"recipients":'
                        rb'\[\{"address":"x@relay\.test","status":"\w+",'
                        rb'"reason":"[^"]*"\},\{"address":"y@other\.test",'
                        % a.encode(), raw), 'mailq --json: %s'
              % short(raw, 1000))


def test_mailq_trailer_kbytes_as_postfix():
    """The trailer scripts read, "-- N Kbytes in M Requests.": Postfix's
    N is the queue's bytes over 1024, rounded down (9678 bytes showed
    "-- 9 Kbytes in 10 Requests." in Postfix 3.7's mailq here); ferry
    rounded up, so one small message was "-- 1 Kbytes", not 0."""
    with Daemon('mailq-kb') as d:
        d.send_message(BODY)
        out = _ok(d.cli('mailq'), 'mailq').stdout
        check(out.endswith(b'\n-- 0 Kbytes in 1 Request.\n'),
              'one small message: %r' % out[-80:])
        d.send_message(BODY + (b'x' * 70 + b'\r\n') * 30)
        total = sum(m['size'] for m in d.mailq())
        check(total % 1024 != 0, 'sizes %d' % total)
        out = _ok(d.cli('mailq'), 'mailq').stdout
        check(out.endswith(b'\n-- %d Kbytes in 2 Requests.\n'
                           % (total // 1024)), 'two, %d bytes: %r'
              % (total, out[-80:]))


def test_mailq_shows_the_servers_words():
    """A recipient the smarthost refuses for now: mailq lists it with the
    reason the log gives, Postfix's "host H[IP] said: REPLY (in reply to
    RCPT TO command)", whole, in its table and in --json, also for a
    reply of three lines that leaves the reason over 256 bytes (the old
    limit of what a state file kept).  It showed the bare reply, which
    named neither the server nor the command."""
    lines = ['450-4.2.0 <x@relay.test>: Recipient address rejected: '
             'mailbox temporarily unavailable, the quota',
             '450-4.2.0 is being recalculated; this can take some time for '
             'a large mailbox',
             '450 4.2.0 please try again in a few minutes (ref 0123456789)']
    want = 'host 127.0.0.1[127.0.0.1] said: %s (in reply to RCPT TO ' \
        'command)' % ' '.join(lines)
    check(len(want) > 256, 'the reason is only %d bytes' % len(want))

    def policy(sess, verb, arg, txn):
        return '\r\n'.join(lines) if verb == 'RCPT' else None

    with SmtpPeer(policy=policy) as p, Daemon(
            'mqsaid', smarthost='[127.0.0.1]:%d' % p.port, retry_min='1h',
            retry_max='2h') as d:
        qid = d.send_message(BODY, rcpts=['x@relay.test'])
        r = wait_delivery(d, qid, 'deferred')[0]
        check(r.dsn == '4.2.0' and r.text == want, 'logged %r' % r)
        q = wait_for(lambda: (lambda q: q if q and q[0]['recipients'][0][
            'reason'] else None)(d.mailq()), 10, 'the reason in mailq')
        check(q[0]['recipients'][0] == {'address': 'x@relay.test',
                                        'status': 'deferred',
                                        'reason': want},
              'mailq --json %r, want the reason %r' % (q, want))
        out = _ok(d.cli('mailq'), 'mailq').stdout.decode()
        check(re.search(r'^ +x@relay\.test\n +\(%s\)$' % re.escape(want),
                        out, re.M), 'mailq: %s' % out)


def test_delete():
    with Daemon('delete') as d:
        ids = [d.send_message(BODY + b'%d\r\n' % i) for i in range(3)]
        _ok(d.cli('delete', ids[0]), 'delete ID')
        check(sorted(d.mailq_ids()) == sorted(ids[1:]), 'after delete: %r'
              % d.mailq_ids())
        p = d.cli('cat', ids[0])
        check(p.returncode != 0, 'cat of a deleted message exit 0')
        check(not any(f.startswith(ids[0]) for f in
                      os.listdir(d.queue_dir)), 'files of %s remain: %r'
              % (ids[0], os.listdir(d.queue_dir)))
        p = d.cli('delete', 'FFFFFFFFFFFFFFFFFF')
        check(p.returncode == 67 and p.stderr.strip(),
              'delete of an unknown ID: exit %d (want 67), stderr %s'
              % (p.returncode, short(p.stderr)))
        p = d.cli('delete', '../../etc/passwd')
        check(p.returncode != 0, 'delete of a path exit 0')
        d.assert_stored(ids[1], BODY + b'1\r\n')
        _ok(d.cli('delete', 'all'), 'delete all')
        d.assert_empty('delete all')
        left = [f for f in os.listdir(d.queue_dir) if re.match(
            r'[0-9A-F]{18}', f)]
        check(left == [], 'files left after delete all: %r' % left)
        d.send_message(BODY)


# --- configuration ---------------------------------------------------------

def test_check_config_prints_settings():
    d = Daemon('checkcfg', message_size_limit='123457', max_recipients='7')
    try:
        p = _ok(d.cli('check-config'), 'check-config')
        out = p.stdout.decode()
        for k, v in (('message_size_limit', '123457'),
                     ('max_recipients', '7'), ('hostname', HOSTNAME),
                     ('relay_domains', 'relay.test'),
                     ('queue_dir', d.queue_dir)):
            check(re.search(r'(?m)^%s\s*=\s*%s\s*(#.*)?$'
                            % (k, re.escape(v)),
                            out), 'check-config lacks %s = %s:\n%s'
                  % (k, v, out[:1500]))
        check(re.search(r'(?m)^queue_lifetime\s*=\s*\S', out),
              'defaults not printed (queue_lifetime):\n' + out[:1500])
        p2 = _ok(d.cli('check-config', use_env=True), 'FERRY_CONFIG')
        check(p2.stdout == p.stdout, 'FERRY_CONFIG gives other settings')
        # its output is relay.conf syntax that reads back the same
        again = os.path.join(d.dir, 'again.conf')
        with open(again, 'wb') as f:
            f.write(p.stdout)
        p3 = subprocess.run([FERRY_BIN, '-c', again, 'check-config'],
                            capture_output=True, timeout=30)
        # the same values; the "# FILE:LINE" source comments differ
        def values(b):
            return re.sub(rb'(?m)^#.*\n|  # .*$', b'', b)
        check(p3.returncode == 0 and values(p3.stdout) == values(p.stdout),
              'check-config output does not read back: exit %d %s'
              % (p3.returncode, short(p3.stderr)))
        d.cleanup(True)
    finally:
        d.cleanup(False)


BAD = [
    ('bogus_key', 'bogus_key = 1'),
    # a label may not start or end with '-' (it was taken as a name)
    ('hostname', 'hostname = -'),
    ('max_recipients', 'max_recipients = lots'),
    ('smtpd_timeout', 'smtpd_timeout = 5x'),
    ('message_size_limit', 'message_size_limit = -3'),
    ('listen_smtp', 'listen_smtp = 127.0.0.1:99999'),
    ('relay_networks', 'relay_networks = 10.0.0.0/33'),
    # tls.c's check, without loading a certificate
    ('tls_ciphers', 'tls_ciphers = bogus'),
    # port 25 would ask for a STARTTLS it cannot offer
    ('inbound_tls', 'inbound_tls = encrypt'),
]


def test_bad_config_exit_78():
    d = Daemon('badcfg')
    try:
        good = d.config_text()
        nlines = good.count('\n')
        for key, line in BAD:
            with open(d.conf, 'w') as f:
                f.write(good + '# a comment\n' + line + '\n')
            lineno = nlines + 2
            for cmd in (['check-config'], ['serve']):
                try:
                    p = d.cli(*cmd, timeout=15)
                except TestFailure as e:
                    raise TestFailure('%s (bad line %r)' % (e, line))
                err = p.stderr.decode(errors='replace')
                check(p.returncode == 78, '%s with %r: exit %d (want 78)'
                      ' %s' % (cmd[0], line, p.returncode, err[:300]))
                want = '%s:%d: %s' % (d.conf, lineno, key)
                check(want in err, '%s with %r: stderr lacks %r: %r'
                      % (cmd[0], line, want, err[:500]))
        d.cleanup(True)
    finally:
        d.cleanup(False)


def test_check_config_tls_refusals():
    """tls_ciphers that tls.c refuses, and inbound_tls = encrypt without
    tls_cert, are refused with exit 78 naming the key (or its variable)
    by check-config and at start; a SIGHUP to such a file keeps the
    running settings, so port 25 still takes mail and nothing is lost.
    With a certificate, encrypt is accepted."""
    with Daemon('cfgtls') as d:
        for var, val, want in (
                ('FERRY_TLS_CIPHERS', 'bogus',
                 'FERRY_TLS_CIPHERS: unknown cipher suite bogus'),
                ('FERRY_TLS_CIPHERS', 'TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256 '
                 'TLS-NO-SUCH', 'FERRY_TLS_CIPHERS: unknown cipher suite '
                 'TLS-NO-SUCH'),
                ('FERRY_INBOUND_TLS', 'encrypt', 'FERRY_INBOUND_TLS: '
                 'encrypt needs tls_cert and tls_key')):
            for cmd in ('check-config', 'serve'):
                p = d.cli(cmd, env={var: val}, timeout=15)
                err = p.stderr.decode(errors='replace')
                check(p.returncode == 78 and want in err,
                      '%s, %s=%s: exit %d %r (want 78, %r)'
                      % (cmd, var, val, p.returncode, err[:300], want))
        qa = d.send_message(BODY)
        for extra, key in (('inbound_tls = encrypt\n', 'inbound_tls: '
                            'encrypt needs tls_cert'),
                           ('tls_ciphers = bogus\n', 'tls_ciphers: '
                            'unknown cipher suite bogus')):
            d.write_config(extra=extra)
            d.signal(signal.SIGHUP)
            deadline = time.time() + 5 * SLOW
            while key not in d.log_text() and time.time() < deadline:
                time.sleep(0.1)
            check(d.running() and key in d.log_text(),
                  'a reload with %r: not refused and logged:\n%s'
                  % (extra, d.log_tail()))
            # the old settings: no STARTTLS needed, the mail is taken
            with d.session() as c:
                c.expect('MAIL FROM:<s@example.test>', 250, '2.1.0')
                c.expect('QUIT', 221)
        d.write_config()
        qb = d.send_message(BODY)
        check(sorted(d.mailq_ids()) == sorted([qa, qb]), 'queue %r'
              % d.mailq_ids())
    with Daemon('cfgtls-cert', tls=True, inbound_tls='encrypt') as d:
        _ok(d.cli('check-config'), 'encrypt with a certificate')


def _ehlo_size(d):
    with d.connect() as c:
        r = c.hello()
        c.send('QUIT\r\n')
    for l in r.lines:
        if l[4:].startswith('SIZE'):
            return l[4:].split()[1] if len(l[4:].split()) > 1 else ''
    return None


def test_sighup_reload():
    with Daemon('hup', message_size_limit='100000') as d:
        a = d.session()
        check(_ehlo_size(d) == '100000', 'initial SIZE')
        a.expect('MAIL FROM:<s@example.test>', 250)
        d.cfg['message_size_limit'] = '50000'
        d.write_config()
        d.signal(signal.SIGHUP)
        deadline = time.time() + 5
        while _ehlo_size(d) != '50000' and time.time() < deadline:
            time.sleep(0.1)
        check(_ehlo_size(d) == '50000', 'SIZE after SIGHUP: %r'
              % _ehlo_size(d))
        # the connection opened before the reload still works
        a.expect('RCPT TO:<r@relay.test>', 250)
        a.expect('DATA', 354)
        qa = a.expect(stuff(BODY), 250).qid()
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test> SIZE=60000', 552, '5.3.4')
        # a broken config: logged, the old one stays
        d.write_config(extra='bogus_key = 1\n')
        d.signal(signal.SIGHUP)
        time.sleep(1)
        check(d.running(), 'daemon died on a bad config at SIGHUP')
        check('bogus_key' in d.log_text(), 'bad config not logged:\n'
              + d.log_tail())
        check(_ehlo_size(d) == '50000', 'SIZE after a bad reload: %r'
              % _ehlo_size(d))
        a.expect('NOOP', 250)
        a.expect('QUIT', 221)
        a.close()
        d.write_config()	# the commands below read it too
        qb = d.send_message(BODY)
        check(sorted(d.mailq_ids()) == sorted([qa, qb]), 'queue %r'
              % d.mailq_ids())


def test_sigterm_during_data():
    d = Daemon('term')
    ok = False
    try:
        d.start()
        a = d.session()
        a.expect('MAIL FROM:<s@example.test>', 250)
        a.expect('RCPT TO:<r@relay.test>', 250)
        a.expect('DATA', 354)
        body = b'Subject: term\r\n\r\n' + b'half of it\r\n' * 100
        a.send(body)
        idle = d.session()
        time.sleep(0.3)
        d.signal(signal.SIGTERM)
        r = idle.reply(timeout=5)
        check(r.code == 421 and r.enh() == '4.3.2', 'idle session got %r'
              % r.text)
        check(idle.wait_closed(), 'idle session not closed')
        idle.close()
        # new connections are refused (or at least not greeted)
        try:
            with d.connect() as c:
                r = c.reply(timeout=2)
                check(r.code != 220, 'new connection greeted after '
                      'SIGTERM')
        except (OSError, EOFError, TestFailure) as e:
            if isinstance(e, TestFailure) and 'greeted' in str(e):
                raise
        time.sleep(0.3)
        check(d.running(), 'daemon exited with a DATA transaction open')
        more = b'second half\r\n' * 100
        a.send(stuff(body + more)[len(body):])
        r = a.expect(None, 250, '2.0.0')
        qid = r.qid()
        rs = a.replies_until_close()
        check([x.code for x in rs] == [421], 'after the 250: %r'
              % [x.text for x in rs])
        a.close()
        rc = d.wait_exit()
        check(rc == 0, 'exit %d after SIGTERM' % rc)
        d.check_log()
        d.assert_stored(qid, body + more)
        ok = True
    finally:
        d.cleanup(ok)


def test_corrupt_queue_file_quarantined():
    d = Daemon('corrupt')
    ok = False
    try:
        d.start()
        good = d.send_message(BODY)
        d.stop()
        st = os.stat(d.queue_dir)
        with open(os.path.join(d.queue_dir, good), 'rb') as f:
            whole = f.read()
        base = '%013X' % int(time.time() * 1e6)
        fakes = {base + 'AAAA1': os.urandom(3000),
                 base + 'AAAA2': whole[:len(whole) // 2],
                 base + 'AAAA3': b'',
                 base + 'AAAA4': whole.replace(good.encode(),
                                               (base + 'AAAA4').encode())
                 [:-1]}
        for name, data in fakes.items():
            p = os.path.join(d.queue_dir, name)
            with open(p, 'wb') as f:
                f.write(data)
            os.chmod(p, 0o600)
            if IS_ROOT:
                os.chown(p, st.st_uid, st.st_gid)
        d.start()
        deadline = time.time() + 5 * 1.0
        while time.time() < deadline and any(
                os.path.exists(os.path.join(d.queue_dir, n))
                for n in fakes):
            time.sleep(0.1)
        for n in fakes:
            check(not os.path.exists(os.path.join(d.queue_dir, n)),
                  '%s (%d bytes of junk) still in queue_dir'
                  % (n, len(fakes[n])))
        corrupt = ' '.join(d.corrupt_files())
        for n in fakes:
            check(n in corrupt, '%s not in corrupt/: %r' % (n, corrupt))
        # Each move is said once, by name and with a reason, as a
        # warning from qmgr (where a Postfix admin greps for it).
        for n in fakes:
            d.wait_log(r'ferry/qmgr\[\d+\]: warning: %s: moved to '
                       r'corrupt/: \S' % n)
            check(d.log_text().count('%s: moved to corrupt/' % n) == 1,
                  '%s: "moved to corrupt/" logged %d times:\n%s'
                  % (n, d.log_text().count('%s: moved to corrupt/' % n),
                     d.log_tail(30)))
        check(good + ': moved' not in d.log_text(),
              'the good message was logged as moved: %s' % d.log_tail(30))
        check(d.mailq_ids() == [good], 'mailq %r' % d.mailq_ids())
        d.assert_stored(good, BODY)
        check(d.running(), 'daemon died')
        q2 = d.send_message(BODY)
        check(sorted(d.mailq_ids()) == sorted([good, q2]), 'mailq %r'
              % d.mailq_ids())
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_mailq_streams_a_big_queue():
    """mailq writes its table out as it reads the queue, 64 KB at a time,
    rather than building all of it first (50,000 messages took 20 MB and
    printed nothing until the last file was read).  strace shows the
    first write to stdout before the last queue file is opened; the
    output is whole: valid JSON with every message, and the plain
    table's summary line.  A failed write is an I/O error (74)."""
    wrap = strace_wrap('openat,write')
    if wrap is None:
        return 'strace is not installed or cannot trace here'
    n = 600
    with Daemon('mq-stream', max_recipients='20') as d:
        rcpts = ['r%02d@relay.test' % i for i in range(20)]
        with d.session() as c:
            for i in range(n):
                c.send(('MAIL FROM:<s@example.test>\r\n' + ''.join(
                    'RCPT TO:<%s>\r\n' % r for r in rcpts) +
                    'DATA\r\n').encode())
                for _ in range(len(rcpts) + 1):
                    c.reply()
                c.expect(None, 354)
                c.expect(stuff(b'Subject: %d\r\n\r\nx\r\n' % i), 250)
        trace = os.path.join(d.dir, 'mailq.trace')
        p = subprocess.run(wrap + ['-o', trace, FERRY_BIN, '-c', d.conf,
                                   'mailq', '--json'],
                           capture_output=True, timeout=120 * SLOW)
        check(p.returncode == 0, 'mailq --json: %d %s'
              % (p.returncode, p.stderr[-500:]))
        q = json.loads(p.stdout)
        check(len(q) == n and all(len(m['recipients']) == 20 for m in q),
              '%d messages in the JSON, want %d' % (len(q), n))
        check(len(p.stdout) > 2 * 64 * 1024, 'only %d bytes: too small a '
              'test' % len(p.stdout))
        opens, writes = [], []
        with open(trace, errors='replace') as f:
            for k, line in enumerate(f):
                m = STRACE_LINE_RE.match(line.strip())
                if not m:
                    continue
                if m.group(2) == 'openat' and \
                        re.search(r'"[0-9A-F]{18}"', m.group(3)):
                    opens.append(k)
                elif m.group(2) == 'write' and m.group(3).startswith('1<'):
                    writes.append(k)
        check(opens and writes and writes[0] < opens[-1],
              'stdout written at %r, queue files opened %d..%d'
              % (writes[:3], opens[0] if opens else -1,
                 opens[-1] if opens else -1))
        p = d.cli('mailq')
        check(p.returncode == 0 and p.stdout.endswith(
            b' Kbytes in %d Requests.\n' % n) and
            p.stdout.count(b'\n\n') == n, 'plain mailq: %r'
            % p.stdout[-200:])
        with open('/dev/full', 'wb') as full:
            p = subprocess.run([FERRY_BIN, '-c', d.conf, 'mailq'],
                               stdout=full, stderr=subprocess.PIPE,
                               timeout=60 * SLOW)
        check(p.returncode == 74 and b'No space left' in p.stderr,
              'mailq > /dev/full: %d %r' % (p.returncode, p.stderr))


def test_sendmail_qualifies_header_addresses():
    """Local mail gets Postfix's append_at_myorigin in its headers too:
    cron writes "From: root (Cron Daemon)", mdadm "From: mdadm monitoring
    <root>", mail(1) "To: root", and a From: without a domain is refused
    by big receivers.  Addresses without a domain in From, Sender,
    Reply-To, To, Cc and their Resent- forms get @origin; ones with a
    domain, phrases, groups and other fields are left as they are.  Both
    doors: through the daemon, and through maildrop/ while it is down."""
    body = (b'From: mdadm monitoring <root>\n'
            b'To: root, ops (the team), x@y.test\n'
            b'Cc: undisclosed-recipients:;\n'
            b'Reply-To: "Admin, Box" <admin>\n'
            b'Subject: root <root> stays\n'
            b'X-Other: root\n'
            b'\nbody root\n')
    want = [b'From: mdadm monitoring <root@box.test>\r\n',
            b'To: root@box.test, ops@box.test (the team), x@y.test\r\n',
            b'Cc: undisclosed-recipients:;\r\n',
            b'Reply-To: "Admin, Box" <admin@box.test>\r\n',
            b'Subject: root <root> stays\r\n',
            b'X-Other: root\r\n']
    d = Daemon('sm-qualify', origin='box.test')
    ok = False
    try:
        for down in (False, True):
            d.start()
            if down:
                d.stop()
            _ok(d.cli('sendmail', '-t', input=body), 'sendmail -t')
            if down:
                d.start()
            q = d.wait_queue(2 if down else 1, timeout=8)
            msg = d.cat(q[-1]['id'])
            head = _headers_of(msg)
            for w in want:
                check(w in head, '%r not in the headers (down=%r):\n%s'
                      % (w, down, head.decode(errors='replace')))
            check(_body_of(msg) == b'body root\r\n', 'body %r'
                  % _body_of(msg))
            check(sorted(r['address'] for r in q[-1]['recipients']) ==
                  ['ops@box.test', 'root@box.test', 'x@y.test'],
                  'envelope %r' % q[-1]['recipients'])
            d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_sendmail_bi_and_I_check_the_aliases():
    """sendmail -bi and -I are newaliases (Postfix's words): they check
    the aliases file as newaliases does.  -bi said nothing and exited 0
    over a broken file; -I was an illegal option."""
    with Daemon('sm-bi') as d:
        path = os.path.join(d.dir, 'aliases')
        with open(path, 'w') as f:
            f.write('bad line without colon\n')
        d.cfg['aliases'] = path
        d.write_config()
        for args in (('newaliases',), ('sendmail', '-bi'),
                     ('sendmail', '-I')):
            p = d.cli(*args)
            check(p.returncode == 78 and b'aliases' in p.stderr,
                  '%s over a bad file: %d %r' % (' '.join(args),
                                                 p.returncode, p.stderr))
        with open(path, 'w') as f:
            f.write('root: admin@example.org\n')
        for args in (('sendmail', '-bi'), ('sendmail', '-I')):
            _ok(d.cli(*args), ' '.join(args))


def test_cli_error_line_cut_at_4k():
    """A one-shot command's error line is one write of at most 4 KB
    (log_cli), so lines from several processes do not mix: an argument
    quoted back that would make it longer is cut, and says so with
    "...", rather than written in pieces."""
    path = '/nonexistent/' + 'x' * 5000
    p = subprocess.run([FERRY_BIN, 'tlsa', path], capture_output=True,
                       timeout=30 * SLOW)
    err = p.stderr
    check(p.returncode != 0 and err.startswith(b'ferry tlsa: ') and
          err.endswith(b'...\n') and err.count(b'\n') == 1 and
          len(err) <= len(b'ferry tlsa: ') + 4096 + len(b'...\n'),
          'exit %d, %d bytes: %s' % (p.returncode, len(err),
                                    short(err, 120)))


def test_maildrop_pickup_keeps_the_reserve():
    """pickup copies a dropped file into the queue only when that leaves
    the free-space reserve (1 MB) the SMTP door keeps for state updates
    and bounces.  On an 8 MB file system with a 3.8 MB file dropped, the
    copy would fit but eat the reserve: the file stays in maildrop/,
    nothing is queued or left in tmp/, and it is logged; with room, the
    next start picks it up intact."""
    if not IS_ROOT:
        return 'needs root to mount a small tmpfs'
    mnt = tempfile.mkdtemp(prefix='ferry-full-')
    p = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m,mode=755',
                        'ferry-full', mnt], capture_output=True, text=True)
    if p.returncode != 0:
        os.rmdir(mnt)
        return 'cannot mount a tmpfs: %s' % p.stderr.strip()
    d = Daemon('pickup-full', queue_dir=os.path.join(mnt, 'queue'),
               message_size_limit='10M')
    d.queue_dir = d.cfg['queue_dir']
    ok = False
    try:
        d.start()
        d.stop()
        line = b'x' * 76 + b'\n'
        body = b'Subject: big\n\n' + line * (3800 * 1024 // len(line))
        _ok(d.cli('sendmail', '-f', 'big@example.test', 'r@relay.test',
                  input=body), 'sendmail with daemon down')
        md = os.path.join(d.queue_dir, 'maildrop')
        dropped = os.listdir(md)
        check(len(dropped) == 1, 'maildrop holds %r' % dropped)
        # A sparse file claiming a terabyte: too big, out of the way at
        # once, and it must not hold up the rest.
        with open(os.path.join(md, '00000000000000BEEF'), 'wb') as f:
            f.truncate(1 << 40)
        d.start()
        d.wait_log(r'00000000000000BEEF: moved to corrupt/: too big')
        d.wait_log(r'pickup.*: maildrop: 1 file\(s\) wait for free space '
                   r'in the queue')
        check(os.listdir(md) == dropped, 'maildrop now %r' % os.listdir(md))
        check(d.mailq_ids() == [], 'queued %r' % d.mailq_ids())
        check(os.listdir(os.path.join(d.queue_dir, 'tmp')) == [],
              'tmp/ keeps %r' % os.listdir(os.path.join(d.queue_dir, 'tmp')))
        d.stop()
        p = subprocess.run(['mount', '-o', 'remount,size=32m', mnt],
                           capture_output=True, text=True)
        check(p.returncode == 0, 'remount: %s' % p.stderr)
        d.start()
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1 and q[0]['sender'] == 'big@example.test',
              'mailq %r' % q)
        check(os.listdir(md) == [], 'maildrop keeps %r' % os.listdir(md))
        check(_body_of(d.cat(q[0]['id'])) ==
              body.split(b'\n\n', 1)[1].replace(b'\n', b'\r\n'),
              'the body changed on the way')
        d.stop()
        ok = True
    finally:
        d.stop_quiet()
        subprocess.run(['umount', '-l', mnt], capture_output=True)
        os.rmdir(mnt)
        d.cleanup(ok)


def test_maildrop_garbage_quarantined():
    """What a local user drops into maildrop/ is untrusted input: junk goes
    to corrupt/, the daemon keeps running and still picks up good mail."""
    d = Daemon('mdjunk')
    ok = False
    try:
        d.start()
        d.stop()
        md = os.path.join(d.queue_dir, 'maildrop')
        base = '%013X' % int(time.time() * 1e6)
        junk = {base + 'BBBB1': os.urandom(2000), base + 'BBBB2': b'',
                base + 'BBBB3': b'S\nR\n' * 100}
        # a local user's symlink to a root-only file must not be read
        link = os.path.join(md, base + 'BBBB4')
        cmd = ['ln', '-s', '/etc/shadow', link]
        if IS_ROOT:
            cmd = ['runuser', '-u', 'nobody', '--'] + cmd
        subprocess.run(cmd, check=True)
        for name, data in junk.items():
            cmd = ['sh', '-c', 'cat > "$0"', os.path.join(md, name)]
            if IS_ROOT:
                cmd = ['runuser', '-u', 'nobody', '--'] + cmd
            p = subprocess.run(cmd, input=data, capture_output=True)
            check(p.returncode == 0, 'nobody cannot write maildrop/: %s'
                  % short(p.stderr))
        _ok(d.cli('sendmail', '-f', 'good@example.test', 'r@relay.test',
                  user=NOBODY, input=b'Subject: good\n\nfine\n'),
            'sendmail')
        d.start()
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1 and q[0]['sender'] == 'good@example.test',
              'mailq %r' % q)
        deadline = time.time() + 5
        while set(junk) & set(os.listdir(md)) and time.time() < deadline:
            time.sleep(0.1)
        check(not set(junk) & set(os.listdir(md)), 'maildrop/ keeps %r'
              % os.listdir(md))
        check(b'root:' not in d.cat(q[0]['id']), '/etc/shadow was queued')
        check(len(d.corrupt_files()) >= len(junk), 'corrupt/ has %r'
              % d.corrupt_files())
        check(d.running(), 'daemon died on maildrop junk')
        d.send_message(BODY)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_tlsa_record_matches_openssl():
    """ferry tlsa prints the record to publish; its data is what openssl
    and hashlib make of the same certificate (3 1 1: SHA-256 of the
    SubjectPublicKeyInfo; 3 0 1: of the certificate; 2 0 2: SHA-512)."""
    import hashlib
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    pem = os.path.join(top, 'test', 'certs', 'server.pem')
    ca = os.path.join(top, 'test', 'certs', 'ca.pem')

    def der(path, pubkey=False):
        if pubkey:
            p = subprocess.run(['openssl', 'x509', '-in', path, '-pubkey',
                                '-noout'], capture_output=True, check=True)
            return subprocess.run(['openssl', 'pkey', '-pubin', '-outform',
                                   'DER'], input=p.stdout,
                                  capture_output=True, check=True).stdout
        return subprocess.run(['openssl', 'x509', '-in', path, '-outform',
                               'DER'], capture_output=True,
                              check=True).stdout

    def tlsa(*args):
        p = subprocess.run([FERRY_BIN, 'tlsa'] + list(args),
                           capture_output=True, timeout=10)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    spki = hashlib.sha256(der(pem, True)).hexdigest()
    rc, out, _ = tlsa(pem, 'mx.relay.test')
    check(rc == 0 and out == '_25._tcp.mx.relay.test. IN TLSA 3 1 1 %s\n'
          % spki, '3 1 1: rc %d, %r (want %s)' % (rc, out, spki))
    rc, out, _ = tlsa('--selector', '0', pem)
    check(rc == 0 and out == '3 0 1 %s\n'
          % hashlib.sha256(der(pem)).hexdigest(), '3 0 1: %r' % out)
    rc, out, _ = tlsa('--usage', '2', '--selector', '0', '--match', '2',
                      ca, 'mx.relay.test.', '587')
    check(rc == 0 and out == '_587._tcp.mx.relay.test. IN TLSA 2 0 2 %s\n'
          % hashlib.sha512(der(ca)).hexdigest(), '2 0 2: %r' % out)
    rc, out, _ = tlsa('--selector', '0', '--match', '0', pem)
    check(rc == 0 and out == '3 0 0 %s\n' % der(pem).hex(),
          '3 0 0: %r' % out[:80])
    rc, out, err = tlsa('/etc/hostname')
    check(rc == 65 and out == '' and 'not a PEM or DER' in err,
          'not a certificate: rc %d %r %r' % (rc, out, err))
    for bad in (['--usage', '4', pem], ['--match', '3', pem], [],
                [pem, 'h', '70000'], ['--bogus', pem]):
        rc, out, err = tlsa(*bad)
        check(rc == 64 and out == '' and 'usage:' in err,
              '%r: rc %d %r' % (bad, rc, out))
    return 'matches openssl for 3 1 1, 3 0 1, 2 0 2, 3 0 0'


def test_tlsa_damaged_leaf_and_bad_host():
    """A chain file whose first certificate does not parse is an error:
    mbedTLS leaves it out, and the record printed was the CA's, which
    would fail every DANE delivery once published.  A HOST of "" or "."
    made the owner "_25._tcp.." (and "" was read before its start); a
    PORT of "+25" passed strtoull().  A key-only file is no certificate."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    certs = os.path.join(top, 'test', 'certs')
    pem = os.path.join(certs, 'server.pem')

    def tlsa(*args):
        p = subprocess.run([FERRY_BIN, 'tlsa'] + list(args),
                           capture_output=True, timeout=10)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    leaf = open(pem).read().split('-----END CERTIFICATE-----')[0]
    lines = leaf.splitlines()
    tmp = tempfile.mkdtemp(prefix='ferry-tlsa-')
    try:
        bad = os.path.join(tmp, 'chain.pem')
        with open(bad, 'w') as f:	# two base64 lines short, then the CA
            f.write('\n'.join(lines[:3] + lines[5:]) +
                    '\n-----END CERTIFICATE-----\n' +
                    open(os.path.join(certs, 'ca.pem')).read())
        rc, out, err = tlsa(bad, 'mx.relay.test')
        check(rc == 65 and out == '' and 'does not parse' in err,
              'damaged leaf: rc %d %r %r' % (rc, out, err))
        good = os.path.join(tmp, 'full.pem')	# key, leaf, CA: fine
        with open(good, 'w') as f:
            f.write(open(os.path.join(certs, 'server.key')).read() +
                    open(pem).read() +
                    open(os.path.join(certs, 'ca.pem')).read())
        rc, out, _ = tlsa(good)
        rc2, out2, _ = tlsa(pem)
        check(rc == 0 and out == out2 and out.startswith('3 1 1 '),
              'key + chain: rc %d %r, want %r' % (rc, out, out2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rc, out, err = tlsa(os.path.join(certs, 'server.key'))
    check(rc == 65 and out == '' and 'not a PEM or DER' in err,
          'key only: rc %d %r %r' % (rc, out, err))
    for bad in ([pem, ''], [pem, '.'], [pem, 'h', '+25'], [pem, 'h', ' 25'],
                [pem, 'h', '0'], ['--selector', '2', pem],
                ['--usage', '-1', pem], [pem, '--match']):
        rc, out, err = tlsa(*bad)
        check(rc == 64 and out == '' and 'usage:' in err,
              '%r: rc %d %r %r' % (bad, rc, out, err))


# --- start-up refusals (issue 2: "refuse to run as root") -------------------

STAMP = r'[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d'


def _nothing_listens(d, what):
    """Neither listen_smtp nor local_socket answers after a refused start."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(('127.0.0.1', d.port))
        raise TestFailure('%s: something listens on %d after the daemon '
                          'refused to start' % (what, d.port))
    except ConnectionRefusedError:
        pass
    finally:
        s.close()
    path = d.cfg['local_socket']
    if os.path.exists(path):
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(3)
        try:
            u.connect(path)
            raise TestFailure('%s: %s answers after the daemon refused to '
                              'start' % (what, path))
        except (ConnectionRefusedError, FileNotFoundError):
            pass
        finally:
            u.close()


def _refused_start(d, line_re, what):
    """`ferry serve` must exit 78 (EX_CONFIG: the config names a bad user;
    75 would tell a supervisor to try again) with one clear log line and
    nothing bound."""
    d.start(wait=False)
    pid = d.proc.pid
    rc = d.wait_exit(timeout=15)
    log = d.log_text()
    check(rc == 78, '%s: exit %d (want 78, EX_CONFIG); log:\n%s'
          % (what, rc, log[-1500:]))
    check(re.search(r'^%s \S+ ferry/master\[%d\]: %s$'
                    % (STAMP, pid, line_re), log, re.M),
          '%s: no log line like %r:\n%s' % (what, line_re, log[-1500:]))
    check('daemon started' not in log, '%s: "daemon started" logged:\n%s'
          % (what, log[-1500:]))
    d.check_log()
    _nothing_listens(d, what)


def test_refuses_root_user():
    """user = root: the daemon will not run with uid 0 after binding, so
    it does not start at all."""
    if not IS_ROOT:
        return 'not root: `user` is ignored, nothing to refuse'
    d = Daemon('user-root', user='root')
    try:
        _refused_start(d, r'warning: user "root" \(%s\) has uid 0: '
                       r'refusing to run as root' % re.escape(d.conf),
                       'user = root')
        d.cleanup(True)
    finally:
        d.cleanup(False)


def test_refuses_missing_user():
    if not IS_ROOT:
        return 'not root: `user` is ignored, nothing to refuse'
    name = 'ferry-nouser-%d' % os.getpid()
    try:
        pwd.getpwnam(name)
        raise TestFailure('user %s exists on this host' % name)
    except KeyError:
        pass
    d = Daemon('user-missing', user=name)
    try:
        _refused_start(d, r'warning: user "%s" \(%s\) does not exist; '
                       r'create it, e\.g\. useradd .*' % (name,
                                                          re.escape(d.conf)),
                       'user = ' + name)
        d.cleanup(True)
    finally:
        d.cleanup(False)


def test_syslog_start_error_shown_on_terminal():
    """log = syslog and a start that fails (a user that does not exist):
    with stderr on a terminal the reason is shown there too, as
    Postfix's commands do; with stderr on a pipe (a service manager)
    nothing is, the system log has it."""
    if not IS_ROOT:
        return 'not root: `user` is ignored, nothing to refuse'
    import pty
    name = 'ferry-nouser-%d' % os.getpid()
    d = Daemon('ttyerr')
    try:
        conf = os.path.join(d.dir, 'tty.conf')
        with open(conf, 'w') as f:
            f.write('hostname = t.test\nlisten_smtp = 127.0.0.1:%d\n'
                    'listen_submission =\nlocal_socket = %s/tty.sock\n'
                    'queue_dir = %s/ttyq\nlog = syslog\nuser = %s\n'
                    % (free_port(), d.dir, d.dir, name))
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([FERRY_BIN, '-c', conf, 'serve'],
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=slave)
            os.close(slave)
            slave = -1
            rc = p.wait(timeout=30 * SLOW)
            out = b''
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:		# EIO: the pty's other end closed
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(master)
            if slave != -1:
                os.close(slave)
        text = out.decode('utf-8', 'replace')
        check(rc == 78, 'exit %d, want 78 (EX_CONFIG)' % rc)
        check(re.search(r'^ferry: warning: user "%s" \(%s\) does not '
                        r'exist' % (re.escape(name), re.escape(conf)),
                        text, re.M), 'terminal shows %r' % text)
        r = subprocess.run([FERRY_BIN, '-c', conf, 'serve'],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30 * SLOW)
        # Where syslog takes the line, a pipe gets nothing; with no
        # /dev/log (a container, this test machine) the line goes there
        # rather than nowhere, in the log's own form.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect('/dev/log')
            want = b''
        except OSError:
            want = None
        finally:
            probe.close()
        check(r.returncode == 78, 'not a terminal: exit %d'
              % r.returncode)
        if want is not None:
            check(r.stderr == want, 'syslog there, stderr %r' % r.stderr)
        else:
            check(re.search(rb'^\w{3} [ \d]\d [\d:]{8} ferry/master\[\d+\]: '
                            rb'warning: user "%s"' % re.escape(name.encode()),
                            r.stderr, re.M),
                  'no /dev/log, stderr %r' % r.stderr)
    finally:
        d.cleanup(False)


# --- sendmail -q ---------------------------------------------------------------

def _sendmail_as_nobody(d, *args):
    """The binary invoked as `sendmail` (argv[0]), as an unprivileged user."""
    sm = os.path.join(d.dir, 'sendmail')
    if not os.path.lexists(sm):
        os.symlink(user_bin(), sm)
    cmd = [sm] + list(args)
    if IS_ROOT:
        cmd = ['runuser', '-u', 'nobody', '--', 'env',
               'FERRY_CONFIG=' + d.conf] + cmd
    return subprocess.run(cmd, env=dict(os.environ, FERRY_CONFIG=d.conf),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=60)


def test_sendmail_q_runs_queue():
    """A message deferred with its next try an hour away is delivered
    within seconds of `sendmail -q` once its smarthost is up; -q exits 0.
    With the daemon down, -q exits 69 (EX_UNAVAILABLE, as Postfix's
    "mail system is down") and says why."""
    from peers import Sink, wait_delivery, wait_removed, deliveries, \
        bind_probe, crlf_to_lf
    port = free_port()
    check(bind_probe('127.0.0.1', port), 'port %d in use' % port)
    d = Daemon('sm-q', smarthost='[127.0.0.1]:%d' % port, retry_min='1h',
               retry_max='2h', queue_lifetime='1d')
    ok = False
    try:
        d.start()
        qid = d.send_message(BODY)
        wait_delivery(d, qid, 'deferred')
        # The state file is written after the log line, when the
        # message's attempt is over.
        wait_for(lambda: (lambda q: len(q) == 1 and q[0]['next_attempt'] >
                          time.time() + 600)(d.mailq()), 10,
                 'deferred message should wait an hour: %r' % d.mailq())
        with Sink(port=port) as s:
            time.sleep(0.5)
            check(s.files() == [] and len(deliveries(d, qid)) == 1,
                  'retried before sendmail -q: %r' % deliveries(d, qid))
            t0 = time.monotonic()
            p = _sendmail_as_nobody(d, '-q')
            check(p.returncode == 0, 'sendmail -q: exit %d, %s'
                  % (p.returncode, short(p.stderr)))
            wait_delivery(d, qid, 'sent', timeout=20)
            wait_removed(d, qid)
            check(time.monotonic() - t0 < 60 * SLOW, 'slow delivery')
            msgs = s.wait_count(1)
            check(len(msgs) == 1 and msgs[0].body.endswith(
                crlf_to_lf(BODY)), 'sink got %r' % msgs)
        d.assert_empty('after sendmail -q')
        d.stop()
        p = _sendmail_as_nobody(d, '-q')
        err = p.stderr.decode(errors='replace')
        check(p.returncode == 69 and 'not running' in err,
              'sendmail -q, daemon down: exit %d (want 69), %r'
              % (p.returncode, err))
        ok = True
    finally:
        d.cleanup(ok)


# --- syslog (log = syslog: /dev/log, facility mail) ---------------------------

# Inside a private mount namespace /dev becomes a small tmpfs holding the
# few devices ferry may open and, as /dev/log, the test's own datagram
# socket: the host's /dev and its syslog daemon (if any) are not touched.
SYSLOG_WRAP = r'''set -e
mount --bind /dev "$1/olddev"
mount -t tmpfs -o mode=0755,size=64k ferry-test-dev /dev
for n in null zero random urandom; do
    : > "/dev/$n"; mount --bind "$1/olddev/$n" "/dev/$n"
done
umount "$1/olddev"
: > /dev/log
mount --bind "$1/log.sock" /dev/log
shift
exec "$@"
'''
SYSLOG_RE = re.compile(r'<(\d+)>(%s) ferry/([a-z]+)\[(\d+)\]: (.*)'
                       % STAMP, re.S)
LOG_MAIL = 2 << 3
PRI_CRIT, PRI_WARNING, PRI_INFO = 2, 4, 6


class SyslogSink:
    """A Unix datagram socket standing in for /dev/log; a thread drains it
    at once (ferry's sends do not block: a full queue drops a line) into
    self.grams."""

    def __init__(self, top):
        self.dir = os.path.join(top, 'syslog')
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, 'olddev'))
        self.path = os.path.join(self.dir, 'log.sock')
        # A socket keeps the datagram queue length of its creation: 512
        # for this one, so a drain thread that a loaded machine leaves
        # unscheduled for a moment loses nothing (the default is 10).
        qlen = '/proc/sys/net/unix/max_dgram_qlen'
        with open(qlen) as f:
            old = f.read()
        try:
            with open(qlen, 'w') as f:
                f.write('512\n')
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        finally:
            with open(qlen, 'w') as f:
                f.write(old)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)	# the daemon may reconnect as `ferry`
        self.sock.settimeout(0.1)
        self.grams = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        while not self.done:
            try:
                g = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.grams.append(g)

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()

    def wrap(self, cmd):
        return ['unshare', '--mount', '--propagation', 'private', 'sh',
                '-c', SYSLOG_WRAP, 'sh', self.dir] + cmd

    def parsed(self):
        """Every datagram as (pri, prog, pid, text); fails on one not in
        the shape log.c promises."""
        out = []
        with self.lock:
            grams = list(self.grams)
        for g in grams:
            s = g.decode('utf-8', 'replace')
            m = SYSLOG_RE.fullmatch(s)
            check(m and '\n' not in s,
                  'datagram not "<PRI>Mmm dd hh:mm:ss ferry/PROG[PID]: '
                  'text": %s' % short(g))
            out.append((int(m.group(1)), m.group(3), int(m.group(4)),
                        m.group(5)))
        return out

    def wait(self, pattern, timeout=10.0):
        """The first (pri, prog, pid, text) whose text matches."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            for g in self.parsed():
                if re.search(pattern, g[3]):
                    return g
            if time.monotonic() > deadline:
                raise TestFailure('no syslog datagram like %r within %.0fs; '
                                  'got:\n%s' % (pattern, timeout * SLOW,
                                                '\n'.join(repr(x) for x in
                                                          self.grams[-30:])))
            time.sleep(0.05)


class SyslogDaemon(Daemon):
    """A Daemon with log = syslog whose /dev/log is sink's socket."""

    def __init__(self, name, sink, **cfg):
        self.sink = sink
        Daemon.__init__(self, name, **cfg)
        self.cfg['log'] = 'syslog'
        self.write_config()

    def start(self, wait=True):
        logf = open(self.log_path, 'ab')
        # unshare and sh exec: the pid is the daemon's own
        self.proc = subprocess.Popen(
            self.sink.wrap([FERRY_BIN, '-c', self.conf, 'serve']),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        logf.close()
        if wait:
            check(self.wait_ready() and self.proc.poll() is None,
                  'daemon under unshare did not become ready (rc %r); '
                  'stderr:\n%s' % (self.proc.poll(), self.log_tail()))
        return self


def _expect_gram(g, pri, prog, pid, what):
    check(g[0] == LOG_MAIL | pri and g[1] == prog and g[2] == pid,
          '%s: want <%d> ferry/%s[%d], got %r'
          % (what, LOG_MAIL | pri, prog, pid, g))


def test_syslog_facility_mail():
    """log = syslog: each line is one datagram to /dev/log, "<PRI>Mmm dd
    hh:mm:ss ferry/PROG[PID]: text" (no host: syslogd adds it), facility
    mail: <22> info, <20> warning, <18> fatal (LOG_CRIT, as Postfix's
    msg_fatal).  An accepted message's client=, message-id=, from=<...>
    and its deferral go there, and nothing goes to stderr."""
    if not IS_ROOT:
        return 'not root: no mount namespace for a private /dev/log'
    d = d2 = sink = None
    ok = False
    top = None
    try:
        d = SyslogDaemon('syslog', None, retry_min='1h', retry_max='2h',
                         queue_lifetime='1d')
        top = d.dir
        sink = d.sink = SyslogSink(top)
        d.start()
        pid = d.proc.pid
        g = sink.wait(r'^daemon started -- version \S+, configuration %s$'
                      % re.escape(d.conf))
        _expect_gram(g, PRI_INFO, 'master', pid, 'daemon started')
        body = (b'Message-ID: <syslog-1@example.test>\r\n' + BODY)
        qid = d.send_message(body, sender='syslog@example.test')
        size = len(body)
        for prog, pat in (
                ('smtpd', r'^connect from unknown\[127\.0\.0\.1\]$'),
                ('smtpd', r'^%s: client=unknown\[127\.0\.0\.1\]$' % qid),
                ('cleanup', r'^%s: message-id=<syslog-1@example\.test>$'
                 % qid),
                ('qmgr', r'^%s: from=<syslog@example\.test>, size=\d+, '
                 r'nrcpt=1 \(queue active\)$' % qid),
                ('smtp', r'^%s: to=<rcpt@relay\.test>, relay=.*, '
                 r'dsn=4\.\d\.\d+, status=deferred \(' % qid)):
            g = sink.wait(pat)
            _expect_gram(g, PRI_INFO, prog, pid, pat)
        g = sink.wait(r'^%s: from=<' % qid)
        m = re.search(r'size=(\d+)', g[3])
        # the size mailq shows, our Received: in it, as Postfix's qmgr
        # line and mailq agree (it was the DATA bytes alone)
        q = d.mailq()
        check(int(m.group(1)) > size and [x['size'] for x in q] ==
              [int(m.group(1))], 'from= line size %s (%d sent), mailq %r'
              % (m.group(1), size, q))
        # a warning: a broken config at SIGHUP is refused, loudly
        d.write_config(extra='bogus_key = 1\n')
        d.signal(signal.SIGHUP)
        g = sink.wait(r'^warning: reload: .*bogus_key')
        _expect_gram(g, PRI_WARNING, 'master', pid, 'reload warning')
        d.write_config()
        # a fatal error: a second daemon on the same local_socket
        d2 = SyslogDaemon('syslog2', sink,
                          local_socket=d.cfg['local_socket'])
        d2.start(wait=False)
        pid2 = d2.proc.pid
        rc = d2.wait_exit()
        check(rc == 75, 'second daemon: exit %d (want 75); stderr %s'
              % (rc, d2.log_tail()))
        g = sink.wait(r'^fatal: local_socket %s: another daemon is running$'
                      % re.escape(d.cfg['local_socket']))
        _expect_gram(g, PRI_CRIT, 'master', pid2, 'fatal')
        check(d.running(), 'the first daemon died')
        d.stop()
        g = sink.wait(r'^terminating on signal 15\b')
        _expect_gram(g, PRI_INFO, 'master', pid, 'terminating')
        # nothing of this went to stderr, and everything that came was
        # well formed (parsed() checks each datagram)
        sink.parsed()
        for x in (d, d2):
            check(x.log_text().strip() == '', 'log = syslog, yet on stderr '
                  'of %s:\n%s' % (x.name, x.log_tail()))
        ok = True
    finally:
        if sink is not None:
            sink.close()
        if d2 is not None:
            d2.cleanup(ok)
        if d is not None:
            d.cleanup(ok)


# --- a set-id entry -----------------------------------------------------------

def _setid_copy():
    """A copy of the binary, setgid to a group nobody is not in, in a
    directory nobody can reach on a file system that honours set-id bits;
    None where that cannot be made here."""
    # The loader ignores LD_LIBRARY_PATH in set-id runs, and
    # LeakSanitizer cannot run in one (not dumpable): the plain and the
    # installed suites run this test.
    if not IS_ROOT or os.environ.get('LD_LIBRARY_PATH') or \
            '/san/' in FERRY_BIN:
        return None
    for base in ('/var/tmp', '/tmp', os.path.dirname(FERRY_BIN)):
        if os.statvfs(base).f_flag & os.ST_NOSUID:
            continue
        d = tempfile.mkdtemp(prefix='ferry-setid-', dir=base)
        os.chmod(d, 0o755)
        plain = os.path.join(d, 'ferry-plain')
        setid = os.path.join(d, 'ferry')
        shutil.copy2(user_bin(), plain)
        shutil.copy2(user_bin(), setid)
        os.chmod(plain, 0o755)
        os.chown(setid, 0, grp.getgrnam('ferry').gr_gid)
        os.chmod(setid, 0o2755)
        return d, plain, setid
    return None


def test_setid_entry_trusts_no_config():
    """DESIGN.md: a setgid entry trusts no -c and no environment from its
    caller.  The same binary without the bit is the control: there each
    input does reach the config loader."""
    made = _setid_copy()
    if made is None:
        # Returned, not printed: run.py puts it on the PASS line (a
        # print from a worker thread splits another test's line).
        return ('skipped: needs root, a file system without nosuid, no '
                'LD_LIBRARY_PATH and no sanitizer build')
    d, plain, setid = made
    try:
        evil = os.path.join(d, 'evil.conf')
        with open(evil, 'w') as f:
            f.write('queue_dir = %s/q\n' % d)
        env = dict(os.environ, FERRY_CONFIG='/nonexistent-ferry/evil.conf',
                   FERRY_MESSAGE_SIZE_LIMIT='lots')

        def run(binary, args, e):
            return subprocess.run(['runuser', '-u', 'nobody', '--', binary]
                                  + args, capture_output=True, env=e,
                                  timeout=30)

        # -c: the control reads it; the set-id entry refuses it.
        p = run(plain, ['-c', evil, 'mailq'], os.environ)
        check(b'-c is refused' not in p.stderr,
              'control refused -c: %s' % short(p.stderr))
        p = run(setid, ['-c', evil, 'mailq'], os.environ)
        check(p.returncode == 64 and b'-c is refused' in p.stderr,
              'set-id -c: exit %d, %s' % (p.returncode, short(p.stderr)))
        # -T, and every command but the entry's own (submit, list).
        for args, what in ((['-T', 'smtp', 'mailq'], b'-T'),
                           (['serve'], b'serve'), (['cat', 'X'], b'cat'),
                           (['delete', 'all'], b'delete'),
                           (['flush'], b'flush'),
                           (['check-config'], b'check-config')):
            p = run(setid, args, os.environ)
            check(p.returncode == 64 and what + b' is refused' in p.stderr,
                  'set-id %r: exit %d, %s' % (args, p.returncode,
                                              short(p.stderr)))
            p = run(plain, args if args[0] != 'serve' else ['check-config'],
                    os.environ)
            check(b'is refused' not in p.stderr,
                  'control refused %r: %s' % (args, short(p.stderr)))
        # FERRY_CONFIG and FERRY_<KEY>: the control fails on them (78,
        # naming them); the set-id entry never sees them.
        for name in ('ferry', 'sendmail', 'mailq'):
            for b in (plain, setid):
                link = os.path.join(d, name)
                if name != 'ferry':
                    if os.path.lexists(link):
                        os.unlink(link)
                    os.symlink(b, link)
                cmd = link if name != 'ferry' else b
                args = ['-bp'] if name == 'sendmail' else (
                    ['mailq'] if name == 'ferry' else [])
                p = run(cmd, args, env)
                err = p.stderr.decode(errors='replace')
                if b is plain:
                    check(p.returncode == 78 and 'nonexistent-ferry' in err,
                          '%s control: exit %d, %r' % (name, p.returncode,
                                                      err[:300]))
                else:
                    # It got as far as listing the queue (the default
                    # one, which nobody may not read) or listed it.
                    check(p.returncode != 78 and
                          'nonexistent-ferry' not in err and
                          'FERRY_MESSAGE_SIZE_LIMIT' not in err and
                          (p.returncode == 0 or 'mailq:' in err),
                          '%s set-id: exit %d, %r' % (name, p.returncode,
                                                      err[:300]))
        env2 = dict(os.environ, FERRY_MESSAGE_SIZE_LIMIT='lots')
        p = run(plain, ['mailq'], env2)
        check(p.returncode == 78 and b'FERRY_MESSAGE_SIZE_LIMIT' in p.stderr,
              'control ignored FERRY_MESSAGE_SIZE_LIMIT: exit %d, %s'
              % (p.returncode, short(p.stderr)))
        p = run(setid, ['mailq'], env2)
        check(p.returncode != 78 and b'FERRY_MESSAGE_SIZE_LIMIT' not in
              p.stderr and (p.returncode == 0 or b'mailq:' in p.stderr),
              'set-id with FERRY_MESSAGE_SIZE_LIMIT: exit %d, %s'
              % (p.returncode, short(p.stderr)))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_sighup_dns_settings_need_restart():
    """dns_servers and dnssec are read at start only (pending lookups live
    in the resolver's channel): a reload that changes either says so, and
    one that leaves them alone says nothing of them."""
    warn = 'reload: dns_servers or dnssec changes take effect after a restart'
    a, b = free_port(), free_port()
    with Daemon('hupdns', dns_servers='127.0.0.1:%d' % a) as d:
        def reload():
            n = d.log_text().count('reload -- version')
            d.write_config()
            d.signal(signal.SIGHUP)
            wait_for(lambda: d.log_text().count('reload -- version') > n,
                     10, 'reload %d in the log' % (n + 1))
            return d.log_text().count(warn)

        d.cfg['message_size_limit'] = '50000'
        check(reload() == 0, 'a reload without DNS changes warned')
        d.cfg['dns_servers'] = '127.0.0.1:%d' % b
        check(reload() == 1, 'dns_servers changed, no warning:\n'
              + d.log_tail())
        d.cfg['dnssec'] = 'no'		# the default is yes
        check(reload() == 2, 'dnssec changed, no warning:\n' + d.log_tail())
        check(d.running(), 'daemon died on a reload')
