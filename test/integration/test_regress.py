"""
test_regress.py - regression tests for bugs a review found (each was a
reproducer first): special files a local user puts in maildrop/ (a FIFO
that blocked the loop, a symlink, a hard link), more than one pickup batch
(64) dropped while the daemon is down, a thousand junk files there moved
to corrupt/ a batch at a time, bare CR or LF in a maildrop body,
an outbound peer out of step with its replies (an extra banner line, a
554 behind the banner or behind the 354, a 250 to DATA, an extra reply to
RCPT), enhanced status codes outside RFC 3463's syntax, a refusal in
several lines, a reused connection that fails at RSET or ends with a 421
behind the 250, a server that
never greets (worded as Postfix does; a fast-clock shim makes its 300 s
timeout 3 s), a command pipelined right behind the
end of data and one more a moment later, a thousand recipients to a
pipelining peer (with and without the peer's own recipient limit), and
SIGTERM at each phase of an outbound delivery (the leak check is the
sanitizer build's: run.sh sets detect_leaks=1, and Daemon.stop() fails on
any report in the log).
"""

import concurrent.futures
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import threading
import time

from ferrytest import (Daemon, TestFailure, check, short, free_port,
                       IS_ROOT, SLOW, strace_wrap, STRACE_LINE_RE)
from peers import (Sink, SmtpPeer, deliveries, wait_delivery, wait_for,
                   flush, bounce_ids)
from test_deliver import smarthost_daemon, BODY, queue_settled, NO_RETRY

NOBODY = 'nobody' if IS_ROOT else None


# --- helpers --------------------------------------------------------------

_seq_lock = threading.Lock()
_seq = [0]


def _qid():
    """A fresh valid queue ID (13 hex digits of µs time, 5 more)."""
    with _seq_lock:
        _seq[0] += 1
        n = _seq[0]
    return '%013X%05X' % (int(time.time() * 1e6), (os.getpid() * 977 + n)
                          & 0xFFFFF)


def _image(qid, sender, rcpts, body, uid=None, flags=0):
    """A message file in the queue's format (queue.c's header comment):
    the envelope records, "B", the body as given, "\\nE <len>\\n"."""
    head = 'FERRY1\nI %s\nT %d\nF %x\nU %s\nC local\nS %s\n' % (
        qid, int(time.time()), flags, '-' if uid is None else uid, sender)
    head += ''.join('R %s\n' % r for r in rcpts) + 'B\n'
    return head.encode() + body + b'\nE %d\n' % len(body)


def _as_nobody(cmd, data=None):
    """Run cmd as nobody (as ourselves when not root); must succeed."""
    if IS_ROOT:
        cmd = ['runuser', '-u', 'nobody', '--'] + cmd
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=30)
    check(p.returncode == 0, '%r: exit %d: %s' % (cmd, p.returncode,
                                                  short(p.stderr)))


def _drop(md, name, data):
    """A local user writes a file into maildrop/."""
    _as_nobody(['sh', '-c', 'cat > "$0"', os.path.join(md, name)], data)


def _sendmail(d, sender, rcpts, body):
    p = d.cli('sendmail', '-f', sender, *rcpts, user=NOBODY, input=body)
    check(p.returncode == 0, 'sendmail -f %s: exit %d: %s'
          % (sender, p.returncode, short(p.stderr, 600)))


def _stopped_daemon(name, **cfg):
    """A daemon that ran once (queue_dir and maildrop/ exist) and is
    down again."""
    d = Daemon(name, **cfg)
    try:
        d.start()
        d.stop()
    except BaseException:
        d.cleanup(ok=False)
        raise
    return d


def _banner_within(d, secs):
    """The daemon answers a new connection with 220 within secs."""
    t0 = time.monotonic()
    with d.connect(timeout=secs) as c:
        r = c.reply()
        took = time.monotonic() - t0
        check(r.code == 220, 'banner %r' % r.text)
        c.expect('NOOP', 250)
        c.expect('QUIT', 221)
    check(took <= secs * SLOW, 'banner took %.2fs' % took)


def _maildrop_empty_of(d, names, timeout=5.0):
    md = os.path.join(d.queue_dir, 'maildrop')
    wait_for(lambda: not set(names) & set(os.listdir(md)), timeout,
             'maildrop/ to let go of %r (has %r); log:\n%s'
             % (names, os.listdir(md), d.log_tail(10)))


# --- maildrop: special files ----------------------------------------------

def test_regress_maildrop_fifo_symlink_hardlink():
    """A FIFO, a symlink and a hard link with queue-ID names, made by a
    local user: the pickup scan must not block on the FIFO (the daemon
    still greets within 2 s) or follow the links -- each points to a
    valid message that would otherwise be queued.  All three go to
    corrupt/; only the genuine sendmail message is queued."""
    d = _stopped_daemon('rg-special')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        fifo, sym, hard = _qid(), _qid(), _qid()
        # the targets: valid images, readable by the daemon's user
        tsym = os.path.join(d.dir, 'target-symlink')
        thard = os.path.join(d.dir, 'target-hardlink')
        with open(tsym, 'wb') as f:
            f.write(_image(sym, 'symlink@example.test', ['r@relay.test'],
                           b'Subject: via symlink\r\n\r\nx\r\n'))
        with open(thard, 'wb') as f:
            f.write(_image(hard, 'hardlink@example.test', ['r@relay.test'],
                           b'Subject: via hard link\r\n\r\nx\r\n'))
        os.chmod(tsym, 0o644)
        os.chmod(thard, 0o644)
        if IS_ROOT:
            # the user links a file of its own (protected_hardlinks)
            pw = pwd.getpwnam('nobody')
            os.chown(thard, pw.pw_uid, pw.pw_gid)
        _as_nobody(['mkfifo', os.path.join(md, fifo)])
        _as_nobody(['ln', '-s', tsym, os.path.join(md, sym)])
        _as_nobody(['ln', thard, os.path.join(md, hard)])
        check(stat.S_ISFIFO(os.lstat(os.path.join(md, fifo)).st_mode) and
              os.path.islink(os.path.join(md, sym)) and
              os.stat(thard).st_nlink == 2, 'test setup: special files')
        _sendmail(d, 'good@example.test', ['r@relay.test'],
                  b'Subject: good\n\nfine\n')
        # mailq lists maildrop/ too: without hanging on the FIFO or
        # showing a link's target.
        p = d.cli('mailq', '--json', timeout=10)
        check(p.returncode == 0 and [m['sender'] for m in json.loads(
            p.stdout)] == ['good@example.test'], 'mailq: exit %d %s'
              % (p.returncode, short(p.stdout)))
        d.start()
        _maildrop_empty_of(d, [fifo, sym, hard])
        _banner_within(d, 2.0)
        corrupt = d.corrupt_files()
        for n, what in ((fifo, 'FIFO'), (sym, 'symlink'),
                        (hard, 'hard link')):
            check(n in corrupt, '%s %s not in corrupt/ %r; log:\n%s'
                  % (what, n, corrupt, d.log_tail(10)))
        cdir = os.path.join(d.queue_dir, 'corrupt')
        check(stat.S_ISFIFO(os.lstat(os.path.join(cdir, fifo)).st_mode),
              'corrupt/%s is no longer the FIFO' % fifo)
        check(os.path.isfile(tsym) and os.path.isfile(thard),
              'a link target was removed')
        d.wait_queue(1, timeout=5)
        time.sleep(0.3 * SLOW)
        q = d.mailq()
        check([m['sender'] for m in q] == ['good@example.test'],
              'queued: %r' % [(m['id'], m['sender']) for m in q])
        check(os.listdir(md) == [], 'maildrop/ keeps %r' % os.listdir(md))
        d.send_message(BODY)
        check(d.running(), 'daemon died')
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: more than one batch ----------------------------------------

def test_regress_maildrop_more_than_a_batch():
    """70 messages (the pickup batch is 64) dropped while the daemon is
    down: each is queued exactly once, tmp/ and maildrop/ end empty, and
    the daemon answers all along."""
    n = 70
    d = _stopped_daemon('rg-pickup70')
    ok = False
    try:
        senders = ['s%02d@example.test' % i for i in range(n)]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            for f in [ex.submit(_sendmail, d, s, ['r@relay.test'],
                                b'Subject: %s\n\nhello\n' % s.encode())
                      for s in senders]:
                f.result()
        md = os.path.join(d.queue_dir, 'maildrop')
        check(len(os.listdir(md)) == n, 'maildrop/ holds %d files, want %d'
              % (len(os.listdir(md)), n))
        d.start()
        _banner_within(d, 2.0)
        q = d.wait_queue(n, timeout=15)
        check(len(q) == n, 'mailq lists %d, want %d; log:\n%s'
              % (len(q), n, d.log_tail(10)))
        # duplicates would come from a rescan of files still committing
        time.sleep(1.0 * SLOW)
        q = d.mailq()
        got = sorted(m['sender'] for m in q)
        check(got == senders, 'queued senders (%d) differ from the %d '
              'dropped: duplicates %r, missing %r'
              % (len(got), n, sorted({s for s in got if got.count(s) > 1}),
                 sorted(set(senders) - set(got))))
        check(os.listdir(md) == [], 'maildrop/ keeps %d files'
              % len(os.listdir(md)))
        tmp = os.listdir(os.path.join(d.queue_dir, 'tmp'))
        check(tmp == [], 'tmp/ keeps %r' % tmp[:5])
        log = d.log_text()
        check(log.count('picked up from maildrop/') == n,
              '%d "picked up" log lines, want %d'
              % (log.count('picked up from maildrop/'), n))
        check(d.corrupt_files() == [], 'corrupt/ %r' % d.corrupt_files())
        _banner_within(d, 2.0)
        d.send_message(BODY)
        check(len(d.mailq()) == n + 1, 'mailq after one more: %d'
              % len(d.mailq()))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: bare CR / LF in the body -----------------------------------

def test_regress_maildrop_bare_cr_lf_quarantined():
    """A maildrop file is untrusted: a body with a bare LF or a bare CR
    (the SMTP door refuses those as smuggling) is quarantined, not
    queued.  Controls: the same format with a clean body, and a file
    sendmail wrote, are both queued -- so the bad ones fail on the bare
    line ending and not on the format."""
    d = _stopped_daemon('rg-barecrlf')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        _sendmail(d, 'sm-good@example.test', ['r@relay.test'],
                  b'Subject: sm good\n\nhello\n')
        smgood = os.listdir(md)
        check(len(smgood) == 1, 'maildrop/ %r' % smgood)
        _sendmail(d, 'sm-bad@example.test', ['r@relay.test'],
                  b'Subject: sm bad\n\nhello\nworld\n')
        smbad = [x for x in os.listdir(md) if x not in smgood]
        check(len(smbad) == 1, 'maildrop/ %r' % os.listdir(md))
        smbad = smbad[0]
        # sendmail's file, its body edited with the end record kept right
        with open(os.path.join(md, smbad), 'rb') as f:
            raw = f.read()
        b = raw.index(b'\nB\n') + 3
        e = raw.rindex(b'\nE ')
        body = raw[b:e]
        check(int(raw[e + 3:-1]) == len(body) and
              b'hello\r\nworld\r\n' in body, 'sendmail wrote %s'
              % short(raw, 600))
        body = body.replace(b'hello\r\nworld', b'hello\nworld')
        edited = raw[:b] + body + b'\nE %d\n' % len(body)
        os.unlink(os.path.join(md, smbad))
        _drop(md, smbad, edited)

        good = _qid()
        _drop(md, good, _image(good, 'built-good@example.test',
                               ['r@relay.test'],
                               b'Subject: clean\r\n\r\nline\r\n'))
        bad = {
            'bare LF': b'Subject: x\r\n\r\nline\nsmuggled\r\n',
            'bare CR': b'Subject: x\r\n\r\nline\rsmuggled\r\n',
            'CR at the end': b'Subject: x\r\n\r\nline\r\nend\r',
            'CR CR LF': b'Subject: x\r\n\r\nline\r\r\n',
            'LF at the start': b'\nSubject: x\r\n\r\nline\r\n',
            'LF dot LF': b'Subject: x\r\n\r\nline\n.\nMAIL FROM:<e@e.test>'
                         b'\r\n',
        }
        names = {}
        for what, body in bad.items():
            q = _qid()
            names[q] = what
            _drop(md, q, _image(q, 'bad@example.test', ['r@relay.test'],
                                body))
        names[smbad] = 'sendmail file with a bare LF'
        d.start()
        _maildrop_empty_of(d, list(names) + [good] + smgood)
        d.wait_queue(2, timeout=5)
        time.sleep(0.3 * SLOW)
        q = d.mailq()
        check(sorted(m['sender'] for m in q) ==
              ['built-good@example.test', 'sm-good@example.test'],
              'queued: %r (want only the two clean ones); log:\n%s'
              % ([m['sender'] for m in q], d.log_tail(12)))
        corrupt = d.corrupt_files()
        for n, what in names.items():
            check(n in corrupt, '%s (%s) not in corrupt/ %r'
                  % (n, what, corrupt))
        check(d.running(), 'daemon died')
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: a body that starts with white space ---------------------

def test_regress_maildrop_leading_space_not_our_trace():
    """A hand-made maildrop body whose first line starts with a space or
    a tab was appended right after the pickup's Received:, whose field
    it then continued: a local user could add "for <anyone>" or any
    text to ferry's own trace line.  An empty line now goes between
    them, as the SMTP door puts one; the body's bytes follow unchanged.
    Control: a body that starts with a field gets no empty line."""
    d = _stopped_daemon('rg-mdspace')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        bodies = {
            'tab@example.test': b'\tfor <forged@elsewhere.test>; Mon, 1 '
                                b'Jan 2001\r\nSubject: x\r\n\r\nbody\r\n',
            'space@example.test': b' X-Forged: yes\r\n\r\nbody\r\n',
            'field@example.test': b'Subject: fine\r\n\r\nbody\r\n',
        }
        names = []
        for sender, body in bodies.items():
            q = _qid()
            names.append(q)
            _drop(md, q, _image(q, sender, ['r@relay.test'], body))
        d.start()
        _maildrop_empty_of(d, names)
        q = d.wait_queue(len(bodies), timeout=5)
        check(len(q) == len(bodies), 'mailq %r' % q)
        for m in q:
            body = bodies[m['sender']]
            out = d.cat(m['id'])
            head = out[:len(out) - len(body)]
            check(out.endswith(body) and out.startswith(b'Received: '),
                  '%s stored as %s' % (m['sender'], short(out, 600)))
            want = b'\r\n\r\n' if body[:1] in b' \t' else b'\r\n'
            check(head.endswith(want) and
                  not head.endswith(b'\r\n' + want),
                  '%s: after the Received: %r, want %r'
                  % (m['sender'], head[-6:], want))
            check(head[:-len(want)].count(b'\r\n') == 2,
                  '%s: Received: %s' % (m['sender'], short(head)))
        check(d.corrupt_files() == [], 'corrupt/ %r' % d.corrupt_files())
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: lines over 1000 octets ------------------------------------

def test_regress_maildrop_long_line_quarantined():
    """The SMTP door refuses a line over 1000 octets (RFC 5321
    4.5.3.1.6) and sendmail splits one, but a hand-made maildrop file's
    5,000-octet line was queued and relayed as it was.  It goes to
    corrupt/, in the header or the body, with or without a final CRLF;
    a line of exactly 998 octets is queued, and so is sendmail's own
    file for the same 5,000 octets (its lines split)."""
    d = _stopped_daemon('rg-mdlong')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        _sendmail(d, 'sm-long@example.test', ['r@relay.test'],
                  b'Subject: sm long\n\n' + b'y' * 5000 + b'\n')
        smfile = os.listdir(md)
        check(len(smfile) == 1, 'maildrop/ %r' % smfile)
        fine = b'Subject: x\r\n\r\n' + b'.' + b'z' * 997 + b'\r\n'
        good = _qid()
        _drop(md, good, _image(good, 'ok998@example.test',
                               ['r@relay.test'], fine))
        bad = {
            'body': b'Subject: x\r\n\r\n' + b'x' * 5000 + b'\r\n',
            '999': b'Subject: x\r\n\r\n' + b'x' * 999 + b'\r\nend\r\n',
            'header': b'Subject: ' + b'h' * 1200 + b'\r\n\r\nbody\r\n',
            'last, no CRLF': b'Subject: x\r\n\r\n' + b'x' * 999,
        }
        names = {}
        for what, body in bad.items():
            q = _qid()
            names[q] = what
            _drop(md, q, _image(q, 'long@example.test', ['r@relay.test'],
                                body))
        d.start()
        _maildrop_empty_of(d, list(names) + [good] + smfile)
        q = d.wait_queue(2, timeout=5)
        time.sleep(0.3 * SLOW)
        q = d.mailq()
        check(sorted(m['sender'] for m in q) ==
              ['ok998@example.test', 'sm-long@example.test'],
              'queued: %r; log:\n%s' % ([m['sender'] for m in q],
                                        d.log_tail(12)))
        for m in q:
            if m['sender'] == 'ok998@example.test':
                check(d.cat(m['id']).endswith(fine), 'stored %s'
                      % short(d.cat(m['id'])))
        corrupt = d.corrupt_files()
        for n, what in names.items():
            check(n in corrupt, '%s (%s) not in corrupt/ %r'
                  % (n, what, corrupt))
            d.wait_log(r'maildrop/%s: moved to corrupt/: line over 1000 '
                       r'octets' % n)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: a local user's junk, a batch at a time --------------------

def test_regress_maildrop_junk_in_batches():
    """Files a local user leaves in maildrop/ (3733) that go to corrupt/
    count against the pickup batch as mail does: 1,000 of them were all
    moved in one timer callback (two fsyncs each), and the daemon
    answered no one until the last (15 s here; minutes for 100,000
    on a disk where each move costs two real fsyncs)."""
    d = _stopped_daemon('rg-junkbatch')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        n = 1000
        _as_nobody(['sh', '-c', 'cd "$0" && i=0; while [ $i -lt %d ]; do '
                    ': > junk$i; i=$((i + 1)); done' % n, md])
        _sendmail(d, 'good@example.test', ['r@relay.test'],
                  b'Subject: good\n\nfine\n')
        # Each move into corrupt/ takes 15 ms (two fsyncs on a slow disk).
        d.preload_rename('sleep', new='corrupt/')
        t0 = time.monotonic()
        try:
            d.start()
        except TestFailure:
            pass
        took = time.monotonic() - t0
        check(took <= 3.5 * SLOW, 'first banner after %.1fs' % took)
        wait_for(lambda: os.listdir(md) == [], 30.0,
                 'maildrop/ to empty')
        check(len(d.corrupt_files()) == n, 'corrupt/ holds %d, want %d'
              % (len(d.corrupt_files()), n))
        q = d.wait_queue(1, timeout=5)
        check([m['sender'] for m in q] == ['good@example.test'],
              'mailq %r' % q)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: a file the daemon cannot read ------------------------------

def test_regress_maildrop_unreadable_quarantined():
    """A maildrop file its owner made unreadable (chmod 000; as root also
    one left 0600, which the daemon's user cannot open, and one 0640 that
    its owner gave to a group of its own, out of the queue's) was warned
    about at every scan, once a minute for ever.  It goes to corrupt/
    once, with one warning saying why, its bytes and mode kept; mail
    beside it is picked up as usual."""
    d = _stopped_daemon('rg-unreadable')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        modes = {_qid(): '000'}
        if IS_ROOT:
            modes[_qid()] = '600'
            modes[_qid()] = '640'
        images = {}
        for q, mode in modes.items():
            images[q] = _image(q, 'locked@example.test', ['r@relay.test'],
                               b'Subject: locked\r\n\r\nmine\r\n')
            _drop(md, q, images[q])
            if mode == '640':
                _as_nobody(['chgrp', str(pwd.getpwnam('nobody').pw_gid),
                            os.path.join(md, q)])
            _as_nobody(['chmod', mode, os.path.join(md, q)])
        _sendmail(d, 'good@example.test', ['r@relay.test'],
                  b'Subject: good\n\nfine\n')
        d.start()
        q = d.wait_queue(1, timeout=5)
        check([m['sender'] for m in q] == ['good@example.test'],
              'mailq %r' % q)
        _maildrop_empty_of(d, list(modes))
        cdir = os.path.join(d.queue_dir, 'corrupt')
        for n, mode in modes.items():
            d.wait_log(r'ferry/qmgr\[\d+\]: warning: maildrop/%s: moved to '
                       r'corrupt/: unreadable$' % n)
            p = os.path.join(cdir, n)
            check(os.lstat(p).st_mode & 0o777 == int(mode, 8),
                  'corrupt/%s mode %o' % (n, os.lstat(p).st_mode))
            if not IS_ROOT:
                os.chmod(p, 0o600)
            with open(p, 'rb') as f:
                check(f.read() == images[n], 'corrupt/%s changed' % n)
        # Said once, and no open() warning beside it.
        log = d.log_text()
        for n in modes:
            check(log.count(n) == 1, '%s logged %d times:\n%s'
                  % (n, log.count(n), d.log_tail(10)))
        check(d.running(), 'daemon died')
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- maildrop: hand-made addresses ---------------------------------------

def test_regress_maildrop_address_syntax_quarantined():
    """A maildrop file's sender and recipients had only a control-byte
    check, and deliver.c writes each inside <...>: a local user's
    hand-made "a@b> NOTIFY=SUCCESS" reached the relay as RCPT
    parameters (and such a sender as MAIL's).  Each address is now read
    as the SMTP door reads MAIL and RCPT; a bad one sends the whole file
    to corrupt/ (its good recipient goes nowhere either) and nothing of
    it reaches the smarthost.  Controls queued as before: the null
    sender, a bare recipient, a source route, UTF-8 with SMTPUTF8; and a
    bare sender gets @origin as at the SMTP door (it went out as
    MAIL FROM:<cron>)."""
    with Sink() as s:
        d = _stopped_daemon('rg-mdaddr', smarthost='[127.0.0.1]:%d'
                            % s.port, origin='box.test', **NO_RETRY)
        ok = False
        try:
            md = os.path.join(d.queue_dir, 'maildrop')
            body = b'Subject: hand-made\r\n\r\nx\r\n'
            bad = {
                'recipient params': ('snd@x.test', ['good@relay.test',
                                     'a@relay.test> NOTIFY=SUCCESS']),
                'sender params': ('snd@x.test> NOTIFY=SUCCESS',
                                  ['good@relay.test']),
                'ORCPT': ('snd@x.test', ['b@relay.test> ORCPT=rfc822;'
                                         'evil@x.test']),
                'bare <': ('snd@x.test', ['<x']),
                'in brackets': ('snd@x.test', ['<c@relay.test>']),
                'UTF-8 without SMTPUTF8': ('snd@x.test',
                                           ['j\u00f6rg@relay.test']),
            }
            names = {}
            for what, (snd, rcpts) in bad.items():
                q = _qid()
                names[q] = what
                _drop(md, q, _image(q, snd, rcpts, body))
            null, utf8 = _qid(), _qid()
            _drop(md, null, _image(null, '', ['ok@relay.test', 'root',
                                              '@r.test:rt@relay.test'],
                                   body))
            _drop(md, utf8, _image(utf8, '', ['j\u00f6rg@relay.test'],
                                   body, flags=2))
            bare = _qid()
            _drop(md, bare, _image(bare, 'cron', ['bare@relay.test'], body))
            d.start()
            _maildrop_empty_of(d, list(names) + [null, utf8, bare])
            d.wait_log(r'picked up from maildrop/%s$' % utf8)
            s.wait_count(2)
            time.sleep(0.5 * SLOW)
            got = s.messages()
            # Every hand-made bad file is from snd@x.test, the controls
            # from <> (smtp-sink has no SMTPUTF8: the UTF-8 one bounces,
            # to nobody).
            check(sorted((m.sender, sorted(m.rcpt_addrs)) for m in got) ==
                  [('', ['ok@relay.test', 'root@box.test',
                         'rt@relay.test']),
                   ('cron@box.test', ['bare@relay.test'])] and
                  not any(re.search(r'NOTIFY|ORCPT', m.mail + ''.join(
                      m.rcpts)) for m in got),
                  'relayed %r (want the two controls)' % got)
            corrupt = d.corrupt_files()
            for n, what in names.items():
                check(n in corrupt, '%s (%s) not in corrupt/ %r; log:\n%s'
                      % (n, what, corrupt, d.log_tail(12)))
            check(null not in corrupt and utf8 not in corrupt and
                  bare not in corrupt,
                  'a control in corrupt/ %r' % corrupt)
            q = [k for k, v in names.items() if v == 'recipient params'][0]
            d.wait_log(r'maildrop/%s: moved to corrupt/: junk after '
                       r'address$' % q)
            q = [k for k, v in names.items() if v.startswith('UTF-8')][0]
            d.wait_log(r'maildrop/%s: moved to corrupt/: 8-bit address '
                       r'without SMTPUTF8$' % q)
            check(d.running(), 'daemon died')
            d.stop()
            ok = True
        finally:
            d.cleanup(ok)


# --- outbound: a peer out of step -----------------------------------------

def _desync(name, broken, ext=None, why=None, rcpts=None):
    """While broken(verb, arg) answers, the peer is out of step: the
    message must be deferred for each recipient (rcpts, else BODY's
    one), not marked sent nor bounced, and no body may have been
    accepted by the peer.  Then the peer behaves and a flush delivers it
    exactly once."""
    mode = {'broken': True}

    def policy(sess, verb, arg, txn):
        return broken(verb, arg) if mode['broken'] else None

    kw = {'policy': policy}
    if ext is not None:
        kw['ext'] = ext
    n = len(rcpts) if rcpts else 1
    with SmtpPeer(**kw) as p, smarthost_daemon(name, p.port) as d:
        qid = d.send_message(BODY, **({'rcpts': rcpts} if rcpts else {}))
        rs = wait_for(lambda: (lambda l: l if len(l) >= n else None)(
            deliveries(d, qid)), 10, 'a result for each recipient of %s; '
            'log:\n%s' % (qid, d.log_tail(8)))
        check(all(r.status == 'deferred' and r.dsn.startswith('4.') and
                  (why is None or why in r.text) for r in rs),
              'an out-of-step peer, want deferred (%s): %r' % (why, rs))
        time.sleep(0.3 * SLOW)
        check(deliveries(d, qid, 'sent') == [] and
              deliveries(d, qid, 'bounced') == [] and
              bounce_ids(d, qid) == [],
              'an out-of-step peer: %r' % deliveries(d, qid))
        check(p.delivered() == [], 'the peer accepted a body: %r'
              % p.txns())
        cmds = [c for s in p.sessions for c in s.commands]
        check(not any('delivery test' in c or c.startswith('From: ')
                      for c in cmds),
              'body lines reached the peer as commands: %r' % cmds)
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid and
              [x['status'] for x in q[0]['recipients']] ==
              ['deferred'] * n, 'mailq %r' % q)
        mode['broken'] = False
        flush(d)
        wait_delivery(d, qid, 'sent', n=n)
        queue_settled(d)
        got = p.delivered()
        check(len(got) == 1 and (rcpts is None or
                                 sorted(got[0].accepted) == sorted(rcpts)),
              'transactions %r' % p.txns())
        check(len(deliveries(d, qid, 'sent')) == n, 'log %r'
              % deliveries(d, qid))
        return 'deferred with %r' % rs[0].text


def test_regress_peer_extra_banner_line():
    return _desync('rg-banner2', lambda verb, arg:
                   '220 peer.test ESMTP\r\n220 peer.test ready'
                   if verb == 'CONNECT' else None)


def test_regress_peer_250_to_data():
    return _desync('rg-data250', lambda verb, arg:
                   '250 2.0.0 Ok' if verb == 'DATA' else None)


def test_regress_peer_250_to_data_no_pipelining():
    return _desync('rg-data250np', lambda verb, arg:
                   '250 2.0.0 Ok' if verb == 'DATA' else None,
                   ext=('8BITMIME', 'SIZE 10000000'))


def test_regress_peer_extra_reply_to_rcpt():
    return _desync('rg-rcpt2', lambda verb, arg:
                   '250 2.1.5 Ok\r\n250 2.1.5 Ok' if verb == 'RCPT'
                   else None, ext=('8BITMIME', 'ENHANCEDSTATUSCODES'))


def test_regress_peer_refusal_behind_banner():
    """A 554 right behind the 220, before EHLO was sent: read as EHLO's
    reply it made ferry fall back to HELO and take every later reply a
    step late.  Against this peer that ended in a deferral for another
    reason ("unexpected reply to DATA", which the check of the reason
    catches); against one that answers HELO with 502, in a bounce (5.5.2)
    from a server that refused nothing.  Now it is named for what it is,
    before EHLO is acted on."""
    return _desync('rg-banner554', lambda verb, arg:
                   '220 peer.test ESMTP\r\n554 5.7.1 not yet'
                   if verb == 'CONNECT' else None,
                   why='reply out of step with 127.0.0.1[127.0.0.1] while '
                   'receiving the initial server greeting')


def test_regress_peer_refusal_behind_354():
    """A 554 in the same write as the 354: read as the end-of-data reply
    it bounced the message (and the server's own reply to the dot, a
    250, was taken as QUIT's).  Nothing after the 354 may be acted on,
    so no body is sent."""
    return _desync('rg-data354', lambda verb, arg:
                   '354 go ahead\r\n554 5.3.4 rejected'
                   if verb == 'DATA' else None, why='reply out of step')


def test_regress_enhanced_codes_checked():
    """An enhanced status code is taken from a reply only in RFC 3463's
    syntax and of the reply's class; anything else is logged as X.0.0.
    "5.x" and "5.99999.1234567" reached the log as dsn=, where Postfix's
    log readers do not expect them."""
    codes = {'x1': ('550 5.x junk', '5.0.0'),
             'x2': ('550 5.99999.1234567 long', '5.0.0'),
             'x3': ('550 4.1.1 class mismatch', '5.0.0'),
             'x4': ('550 5.1.10 bad domain', '5.1.10'),
             'x5': ('550 5.1.1', '5.1.1')}

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT':
            m = re.search(r'<(x\d)@', arg)
            if m:
                return codes[m.group(1)][0]
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('rg-enh', p.port) as d:
        qid = d.send_message(BODY, rcpts=['%s@dom.test' % k for k in codes])
        lines = wait_for(lambda: (lambda l: l if len(l) == len(codes)
                                  else None)(deliveries(d, qid, 'bounced')),
                         10, 'every recipient bounced; log:\n%s'
                         % d.log_tail(10))
        got = {r.to.split('@')[0]: r.dsn for r in lines}
        want = {k: v[1] for k, v in codes.items()}
        check(got == want, 'dsn %r, want %r' % (got, want))
        p.wait_idle()


def test_regress_multiline_refusal_kept_whole():
    """A refusal in several lines is logged, listed by mailq and put in
    the DSN with every line, as Postfix logs it ("550-5.1.1 ... 550 5.1.1
    ..."), and its enhanced code comes from the first line: only the last
    line was kept, which for Gmail is a help URL without the reason.  The
    server's name and the command around it ("host H[IP] said: ... (in
    reply to RCPT TO command)") leave the reply its room."""
    lines = ['550-5.1.1 The email account that you tried to reach does '
             'not exist. Please try',
             "550-5.1.1 double-checking the recipient's email address "
             'for typos or',
             '550 5.1.1 https://support.example/?p=NoSuchUser x1-gsmtp']

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.startswith('<nosuch@'):
            return '\r\n'.join(lines)
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('rg-multiline', p.port) as d:
        qid = d.send_message(BODY, rcpts=('nosuch@dom.test',))
        r = wait_delivery(d, qid, 'bounced')[0]
        want = ' '.join(lines)
        said = 'host 127.0.0.1[127.0.0.1] said: %s (in reply to RCPT TO ' \
            'command)' % want
        check(r.dsn == '5.1.1' and r.text == said,
              'log line %r, want the reason %r' % (r, said))
        wait_for(lambda: [t for t in p.delivered() if t.sender == ''], 10,
                 'the DSN at the peer')
        dsn = [t for t in p.delivered() if t.sender == ''][0]
        body = re.sub(rb'\r\n[ \t]+', b' ', dsn.body)	# unfolded
        check(b'Status: 5.1.1' in body and
              ('Diagnostic-Code: smtp; %s\r\n' % want).encode() in body
              and ('%s\r\n' % said).encode() in body,
              'DSN %s' % short(dsn.body, 2000))
        p.wait_idle()


def _reused_connection_fails(name, policy):
    """Three deferred messages flushed over one connection at a time to a
    peer that fails between transactions: the message waiting at RSET
    was never sent, so it goes at once over a new connection instead of
    being deferred as an attempt (it waited retry_min).  Each message is
    sent once, none is deferred after the flush."""
    with SmtpPeer(policy=policy) as p, smarthost_daemon(
            name, p.port, max_deliveries_per_destination='1') as d:
        p.stop()
        ids = [d.send_message(BODY.replace(b'delivery test',
                                           b'reused %d' % i))
               for i in range(3)]
        for qid in ids:
            wait_delivery(d, qid, 'deferred')
        p.start()
        before = len(d.log_text())
        flush(d)
        for qid in ids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        after = d.log_text()[before:]
        check('status=deferred' not in after, 'deferred after the flush:\n'
              + after[-1500:])
        got = sorted(re.search(rb'reused (\d)', t.body).group(1)
                     for t in p.delivered())
        check(got == [b'0', b'1', b'2'], 'the peer got %r' % got)
        check(len(re.findall(r'the next message goes over a new connection',
                             after)) == 2, 'log:\n' + after[-1500:])
        p.wait_idle()
        # The message given back was opened again for its new connection;
        # its first descriptor must not be left on the removed file.
        fds = os.listdir('/proc/%d/fd' % d.pid())
        held = [os.readlink('/proc/%d/fd/%s' % (d.pid(), f)) for f in fds]
        qdir = os.path.realpath(d.queue_dir) + '/'
        check(not [h for h in held if h.startswith(qdir) and
                   h.endswith('(deleted)')],
              'descriptors on removed queue files: %r' % held)


def test_regress_rset_refused_between_messages():
    return _reused_connection_fails('rg-rset500', lambda s, verb, a, t:
                                    '500 5.5.1 no RSET here'
                                    if verb == 'RSET' else None)


def test_regress_junk_behind_the_250_to_the_dot():
    """Something other than a 421 behind the 250 to the final dot: the 250
    stands (the message is sent, once), and only then does the stray line
    end the connection.  Treated as out of step before acting, it deferred
    a message the server had taken, a certain duplicate."""
    with SmtpPeer(policy=lambda s, verb, a, t: '250 2.0.0 Ok: queued\r\n'
                  '220 junk' if verb == '.' else None) as p, \
            smarthost_daemon('rg-250junk', p.port) as d:
        qid = d.send_message(BODY)
        wait_delivery(d, qid, 'sent')
        queue_settled(d)
        time.sleep(0.3 * SLOW)
        check([r.status for r in deliveries(d, qid)] == ['sent'],
              'results %r' % deliveries(d, qid))
        check(len(p.delivered()) == 1, 'the peer got %r' % p.txns())


def test_regress_421_behind_the_250():
    """The peer says 250 to the dot and, in the same write, 421 (as
    Postfix's smtpd does when it closes on a limit): the 250 stands (not
    "out of step"), and the next message takes a new connection."""
    return _reused_connection_fails(
        'rg-421after', lambda s, verb, a, t:
        '250 2.0.0 Ok: queued\r\n421 4.4.2 peer.test closing: too many '
        'messages' if verb == '.' else None)


# The daemon's monotonic clock runs FAST times faster, and its waits are
# as much shorter: a 300 s command timeout comes in 3 s.  Wall-clock time
# (log stamps, queue times) is left alone.
FAST_CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#define FAST 100

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	static long long t0;
	long long ns;
	int rc;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "clock_gettime");
	if ((rc = real(id, ts)) != 0 || id != CLOCK_MONOTONIC)
		return rc;
	ns = ts->tv_sec * 1000000000LL + ts->tv_nsec;
	if (t0 == 0)
		t0 = ns;
	ns = t0 + (ns - t0) * FAST;
	ts->tv_sec = ns / 1000000000LL;
	ts->tv_nsec = ns % 1000000000LL;
	return 0;
}

int
epoll_wait(int fd, struct epoll_event *ev, int n, int ms)
{
	static int (*real)(int, struct epoll_event *, int, int);

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "epoll_wait");
	return real(fd, ev, n, ms > 0 ? (ms + FAST - 1) / FAST : ms);
}
"""


def test_regress_silent_server_worded_as_postfix():
    """A server that never greets: after the command timeout the message
    is deferred with Postfix's words and code, "conversation with H[ip]
    timed out while receiving the initial server greeting", dsn 4.4.2
    (it was "conversation timed out with ...", 4.4.1)."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(4)
    try:
        # Its own SMTP timeouts run fast too: 3000 s is 30 s here.
        d = smarthost_daemon('rg-silent', srv.getsockname()[1],
                             smtpd_timeout='3000s',
                             smtpd_data_timeout='3000s')
        d.preload(FAST_CLOCK_SHIM)
        with d:
            qid = d.send_message(BODY)
            r = wait_for(lambda: deliveries(d, qid), 30, 'a result; log:\n'
                         + d.log_tail(8))[0]
            check(r.status == 'deferred' and r.dsn == '4.4.2' and
                  re.fullmatch(r'conversation with 127\.0\.0\.1\[127\.0\.0'
                               r'\.1\] timed out while receiving the '
                               r'initial server greeting', r.text),
                  'silent server: %r' % r)
            check(d.mailq_ids() == [qid], 'queue %r' % d.mailq_ids())
    finally:
        srv.close()


# --- inbound: commands right behind the end of data -----------------------

def test_regress_pipelined_after_dot():
    """".\\r\\nNOOP\\r\\n" in one write and "NOOP\\r\\n" about a
    millisecond later (and at other gaps): every reply comes, in order,
    and the session goes on -- many times over."""
    gaps = (0, 0.0002, 0.001, 0.001, 0.003)
    per_gap = 8
    with Daemon('rg-kick') as d:
        ids = []
        for gap in gaps:
            for i in range(per_gap):
                with d.session() as c:
                    for k in range(2):	# twice in the same session
                        c.expect('MAIL FROM:<a@example.test>', 250)
                        c.expect('RCPT TO:<r@relay.test>', 250)
                        c.expect('DATA', 354)
                        c.send(b'Subject: kick %d\r\n\r\nhi\r\n.\r\nNOOP\r\n'
                               % k)
                        if gap:
                            time.sleep(gap)
                        c.send(b'NOOP\r\n')
                        what = 'gap %gs session %d txn %d' % (gap, i, k)
                        try:
                            r1 = c.reply()
                            r2 = c.reply()
                            r3 = c.reply()
                        except EOFError:
                            raise TestFailure(
                                '%s: session dropped after the dot' % what)
                        check(r1.code == 250 and r1.qid() and
                              r2.code == 250 and r3.code == 250,
                              '%s: replies %r %r %r' % (what, r1, r2, r3))
                        ids.append(r1.qid())
                    c.expect('NOOP', 250)
                    c.expect('QUIT', 221)
        n = len(gaps) * per_gap * 2
        check(len(set(ids)) == n, '%d distinct queue IDs for %d messages'
              % (len(set(ids)), n))
        q = d.mailq_ids()
        check(sorted(q) == sorted(ids), 'mailq has %d, acknowledged %d'
              % (len(q), n))
        log = d.log_text()
        lost = [l for l in log.splitlines()
                if 'smtpd' in l and 'lost connection' in l]
        check(lost == [], 'sessions lost:\n%s' % '\n'.join(lost[:10]))


# --- outbound: a thousand recipients --------------------------------------

RCPTS_1000 = ['long-local-part-for-testing-%04d-xxxxxxxxxxxxxx@relay.test' % i
              for i in range(1000)]


class _LogSince:
    """The daemon's log from a point on, for peers.deliveries()."""

    def __init__(self, d):
        self.d = d
        self.off = len(d.log_text())

    def log_text(self):
        return self.d.log_text()[self.off:]

    def log_tail(self, n=25):
        return '\n'.join(self.log_text().splitlines()[-n:])


def _thousand(name, policy, max_rounds):
    """1000 recipients dropped by sendmail (max_recipients limits SMTP),
    then delivered to a pipelining peer, flushing up to max_rounds times.
    Each round every pending recipient gets a result (none hangs): the
    ones the peer accepted are logged sent, the rest deferred (and listed
    so by mailq).  In the end each one is delivered exactly once.
    Returns (rounds, largest pipelined RCPT batch)."""
    with SmtpPeer(policy=policy) as p:
        d = smarthost_daemon(name, p.port)
        ok = False
        try:
            d.start()
            d.stop()
            _sendmail(d, 'big@example.test', RCPTS_1000,
                      b'Subject: a thousand\n\nhello\n')
            log = _LogSince(d)
            d.start()
            # The queue ID comes from the log: a peer that takes all
            # 1000 can empty the queue before mailq would see it.
            pick = re.compile(r'ferry/qmgr\[\d+\]: ([0-9A-F]+): picked up '
                              r'from maildrop/')
            wait_for(lambda: pick.search(log.log_text()), 10,
                     'no pickup; log:\n%s' % d.log_tail(5))
            ids = pick.findall(log.log_text())
            check(len(ids) == 1, 'picked up %r' % ids)
            qid = ids[0]
            rounds, pending, sent = 0, 1000, []
            while True:
                rounds += 1
                wait_for(lambda: len(deliveries(log, qid)) >= pending, 30,
                         'a result for each of %d recipients in round %d '
                         '(have %d); log:\n%s'
                         % (pending, rounds, len(deliveries(log, qid)),
                            d.log_tail(5)))
                got = deliveries(log, qid)
                check(len(got) == pending, 'round %d: %d results for %d '
                      'pending recipients' % (rounds, len(got), pending))
                check(all(r.status in ('sent', 'deferred') for r in got),
                      'round %d: %r' % (rounds, [r for r in got if
                                                 r.status not in
                                                 ('sent', 'deferred')][:3]))
                now = [r.to for r in got if r.status == 'sent']
                sent += now
                pending -= len(now)
                if pending == 0:
                    break
                check(now, 'round %d: nothing sent; %r' % (rounds, got[:3]))
                check(rounds < max_rounds, 'after %d rounds %d of 1000 '
                      'sent' % (rounds, len(sent)))
                # The state file is written after the round's last log
                # line: wait for it rather than race it.

                def left():
                    return [r['status'] for m in d.mailq()
                            for r in m['recipients'] if r['status'] != 'sent']
                wait_for(lambda: left() == ['deferred'] * pending, 10,
                         'round %d: %d pending, mailq has %r' % (
                             rounds, pending, left()[:5]))
                log = _LogSince(d)
                flush(d)
            queue_settled(d, timeout=15)
            check(sorted(sent) == sorted(RCPTS_1000), 'sent lines: %d, '
                  '%d distinct' % (len(sent), len(set(sent))))
            acc = [a for t in p.delivered() for a in t.accepted]
            check(sorted(acc) == sorted(RCPTS_1000),
                  'the peer got %d recipient deliveries, %d distinct, '
                  'want 1000 once each' % (len(acc), len(set(acc))))
            big = max((len([v for v in b if v == 'RCPT'])
                       for s in p.sessions for b in s.batches), default=0)
            check(big > 1, 'RCPTs never pipelined (largest batch %d)' % big)
            check(p.errors == [], 'protocol errors %r' % p.errors)
            check(d.running(), 'daemon died')
            d.stop()
            ok = True
            return rounds, big
        finally:
            d.cleanup(ok)


def test_regress_thousand_recipients_pipelined():
    rounds, big = _thousand('rg-rcpt1000', None, 1)
    return '%d RCPTs in the largest batch' % big


def test_regress_thousand_recipients_peer_limit():
    """The peer takes at most 300 recipients a transaction (Postfix's
    452 4.5.3 too many recipients after that)."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and txn is not None and len(txn.accepted) >= 300:
            return '452 4.5.3 Error: too many recipients'
        return None

    rounds, big = _thousand('rg-rcptlimit', policy, 6)
    return '%d rounds, %d RCPTs in the largest batch' % (rounds, big)


# --- SIGTERM at each phase of a delivery ----------------------------------

def _sigterm_during(name, make_peer, reached, still=None, **cfg):
    """make_peer() -> (port, stop); reached() true once the delivery is
    at the phase under test; still() (if given) checks that it is there
    yet just before the signal.  SIGTERM then: exit 0 soon, no sanitizer
    or leak report (Daemon.stop), the message still queued."""
    body = cfg.pop('body', BODY)
    port, stop_peer = make_peer()
    d = smarthost_daemon(name, port, **cfg)
    ok = False
    try:
        d.start()
        qid = d.send_message(body)
        wait_for(reached, 10, 'the delivery to reach the phase; log:\n%s'
                 % d.log_tail(8))
        time.sleep(0.3 * SLOW)
        check(deliveries(d, qid) == [], 'already a result: %r'
              % deliveries(d, qid))
        if still:
            still()
        t0 = time.monotonic()
        d.stop(timeout=15)
        took = time.monotonic() - t0
        check(took < 10 * SLOW, 'SIGTERM took %.1fs' % took)
        check(deliveries(d, qid, 'sent') == [], 'sent? %r'
              % deliveries(d, qid))
        check(d.mailq_ids() == [qid], 'not queued after SIGTERM: %r'
              % d.mailq_ids())
        ok = True
        return 'exit %r in %.1fs' % (d.exits[-1], took)
    finally:
        stop_peer()
        d.cleanup(ok)


def test_regress_sigterm_waiting_for_banner():
    hold = threading.Event()
    seen = threading.Event()

    def policy(sess, verb, arg, txn):
        if verb == 'CONNECT':
            seen.set()
            hold.wait(20)
        return None

    p = SmtpPeer(policy=policy).start()

    def stop():
        hold.set()
        p.stop()
    return _sigterm_during('rg-term-banner', lambda: (p.port, stop),
                           seen.is_set)


def test_regress_sigterm_mid_rcpt():
    hold = threading.Event()
    seen = threading.Event()

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT':
            seen.set()
            hold.wait(20)
        return None

    p = SmtpPeer(policy=policy).start()

    def stop():
        hold.set()
        p.stop()
    return _sigterm_during('rg-term-rcpt', lambda: (p.port, stop),
                           seen.is_set)


def _tcp_wmem_max():
    with open('/proc/sys/net/ipv4/tcp_wmem') as f:
        return int(f.read().split()[2])


def test_regress_sigterm_mid_body():
    """The peer says 354 and stops reading a body larger than what the
    kernel buffers for the writer (tcp_wmem): ferry is still writing it
    when the signal comes."""
    port = free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(4)
    in_data = threading.Event()
    done = threading.Event()
    conns = []

    def serve():
        try:
            s, _ = srv.accept()
        except OSError:
            return
        conns.append(s)
        s.settimeout(30)
        f = s.makefile('rb')
        s.sendall(b'220 stall.test ESMTP\r\n')
        while not done.is_set():
            line = f.readline()
            if not line:
                return
            v = line[:4].upper()
            if v == b'EHLO':
                s.sendall(b'250-stall.test\r\n250 8BITMIME\r\n')
            elif v == b'DATA':
                s.sendall(b'354 go\r\n')
                in_data.set()
                done.wait(30)	# read no more
                return
            elif v == b'QUIT':
                s.sendall(b'221 bye\r\n')
                return
            else:
                s.sendall(b'250 2.0.0 ok\r\n')

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def stop():
        done.set()
        for s in conns:
            s.close()
        srv.close()

    line = b'x' * 78 + b'\r\n'
    body = b'Subject: big\r\n\r\n' + line * ((_tcp_wmem_max() +
                                                (4 << 20)) // len(line))

    def still():
        # unread at the peer (and its kernel) + the most the writer's
        # kernel holds < the body: the rest is still in ferry
        unread = int(subprocess.run(
            ['ss', '-tnH', 'src', '127.0.0.1:%d' % port], capture_output=True,
            text=True).stdout.split()[1])
        check(unread + _tcp_wmem_max() < len(body), 'not mid-body: %d '
              'bytes at the peer of %d' % (unread, len(body)))

    return _sigterm_during('rg-term-body', lambda: (port, stop),
                           in_data.is_set, still=still,
                           message_size_limit='20M', body=body)


def test_regress_sigterm_resolving():
    """The smarthost is a name and the DNS server never answers: the
    lookup is in flight (c-ares) when the signal comes."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(('127.0.0.1', 0))
    udp.settimeout(0.1)
    dport = udp.getsockname()[1]
    asked = threading.Event()
    done = threading.Event()

    def listen():
        while not done.is_set():
            try:
                udp.recvfrom(2048)
                asked.set()
            except socket.timeout:
                continue
            except OSError:
                return

    threading.Thread(target=listen, daemon=True).start()

    def stop():
        done.set()
        udp.close()

    port = free_port()
    return _sigterm_during('rg-term-dns', lambda: (port, stop), asked.is_set,
                           smarthost='hub.test:%d' % port,
                           dns_servers='127.0.0.1:%d' % dport)


# --- size limits outside SMTP ---------------------------------------------

def test_regress_size_limit_sendmail_and_maildrop():
    """message_size_limit holds on the two doors that are not SMTP:
    sendmail refuses a bigger message with EX_DATAERR (65) and queues
    nothing, and a bigger file a local user drops into maildrop/ is
    quarantined, while a message under the limit still goes through."""
    d = _stopped_daemon('rg-size', message_size_limit='20000')
    ok = False
    try:
        md = os.path.join(d.queue_dir, 'maildrop')
        big = b'Subject: big\n\n' + b'x' * 70 + b'\n'
        big *= 400		# about 28 KB
        p = d.cli('sendmail', '-f', 'big@example.test', 'r@relay.test',
                  user=NOBODY, input=big)
        check(p.returncode == 65, 'sendmail over the limit: exit %d: %s'
              % (p.returncode, short(p.stderr)))
        check(os.listdir(md) == [], 'maildrop/ after a refused sendmail %r'
              % os.listdir(md))
        _sendmail(d, 'small@example.test', ['r@relay.test'],
                  b'Subject: small\n\nfits\n')
        # a local user's file, far over the limit plus the envelope allowance
        huge = _qid()
        _drop(md, huge, _image(huge, 'huge@example.test', ['r@relay.test'],
                               b'Subject: huge\r\n\r\n' +
                               (b'y' * 998 + b'\r\n') * 100))
        d.start()
        _maildrop_empty_of(d, [huge])
        d.wait_queue(1, timeout=5)
        q = d.mailq()
        check([m['sender'] for m in q] == ['small@example.test'],
              'queued %r' % [m['sender'] for m in q])
        check(huge in d.corrupt_files(), 'big maildrop file not in '
              'corrupt/: %r' % d.corrupt_files())
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


# --- start-up ---------------------------------------------------------------

def test_regress_startup_reads_no_message():
    """A start indexes the queue from the directory and the state files'
    mtimes, which queue_update stamps with the next attempt (Postfix's
    deferred queue does the same), instead of reading every message and
    its state: 50,000 deferred messages kept the first greeting waiting
    8.6 s on a cold cache.  Each .st's mtime is its N record; a restart
    opens none of the deferred messages (strace); a file that does not
    parse, due at once, is still quarantined; a flush then delivers every
    message, so the index missed none."""
    wrap = strace_wrap('openat')
    if wrap is None:
        return 'strace is not installed or cannot trace here'
    n = 12
    with Sink() as s, Daemon('startup-index', retry_min='1h',
                             retry_max='2h', smarthost_tls='none') as d:
        ids = [d.send_message(b'Subject: %d\r\n\r\nx\r\n' % i)
               for i in range(n)]
        st = [os.path.join(d.queue_dir, q + '.st') for q in ids]
        wait_for(lambda: all(os.path.exists(p) for p in st), 10,
                 'a state file for each of %d deferred messages; log:\n%s'
                 % (n, d.log_tail(10)))
        d.stop()
        now = time.time()
        for p in st:
            with open(p, 'rb') as f:
                m = re.search(rb'\nN (\d+)\n', f.read())
            check(m and int(m.group(1)) > now + 1800, '%s: N %r'
                  % (p, m and m.group(1)))
            check(int(os.stat(p).st_mtime) == int(m.group(1)),
                  '%s: mtime %d, next attempt %s'
                  % (p, os.stat(p).st_mtime, m.group(1)))
        bad = _qid()
        with open(os.path.join(d.queue_dir, bad), 'wb') as f:
            f.write(b'FERRY1\nnot a queue file\n')
        os.chown(os.path.join(d.queue_dir, bad),
                 *(lambda t: (t.st_uid, t.st_gid))(os.stat(d.queue_dir)))
        d.cfg['smarthost'] = '[127.0.0.1]:%d' % s.port
        d.write_config()
        trace = os.path.join(d.dir, 'start.trace')
        d.wrap = wrap + ['-o', trace]
        d.start()
        wait_for(lambda: os.path.exists(os.path.join(
            d.queue_dir, 'corrupt', bad)), 10,
            '%s in corrupt/; log:\n%s' % (bad, d.log_tail(10)))
        check(re.search(r'\b%d message\(s\) in the queue' % (n + 1),
                        d.log_text()), 'the count; log:\n%s'
              % d.log_tail(10))
        time.sleep(0.5)
        with open(trace, errors='replace') as f:
            calls = [m.group(3) for m in map(STRACE_LINE_RE.match, f)
                     if m and m.group(2) == 'openat']
        opened = [c for c in calls if any(q in c for q in ids)]
        check(opened == [], 'the restart opened %d deferred message '
              'file(s): %r' % (len(opened), opened[:3]))
        check([c for c in calls if bad in c], 'the trace does not show '
              'the bad file opened: %d openat lines' % len(calls))
        flush(d)
        # Each "sent" first: a dump is whole only once ferry saw the 250.
        for q in ids:
            wait_delivery(d, q, 'sent')
        s.wait_count(n)


def test_regress_startup_greets_while_indexing():
    """The queue is indexed in batches on the loop, so a client is
    greeted while the index is still being read (it waited for all of
    it: 0.32 s cold at 20,000 deferred messages, where Postfix greets at
    once).  8,000 deferred copies of one message; under strace, a 220 is
    sent before the last state file is looked at, every message is
    counted, and none is retried."""
    wrap = strace_wrap('newfstatat,fstatat64,sendto')
    if wrap is None:
        return 'strace is not installed or cannot trace here'
    n = 8000
    d = Daemon('rg-ixgreet', retry_min='1h', retry_max='2h')
    ok = False
    try:
        d.start()
        qid = d.send_message(b'Subject: one of many\r\n\r\nx\r\n')
        st = os.path.join(d.queue_dir, qid + '.st')
        wait_for(lambda: os.path.exists(st), 10, 'the deferral')
        d.stop()
        with open(os.path.join(d.queue_dir, qid), 'rb') as f:
            data = f.read()
        with open(st, 'rb') as f:
            state = f.read()
        when = os.stat(st).st_mtime
        owner = os.stat(d.queue_dir)
        for i in range(n):
            new = _qid()
            for name, body in ((new, data), (new + '.st', state)):
                path = os.path.join(d.queue_dir, name)
                with open(path, 'wb') as f:
                    f.write(body.replace(qid.encode(), new.encode()))
                os.chown(path, owner.st_uid, owner.st_gid)
                os.utime(path, (when, when))
        trace = os.path.join(d.dir, 'start.trace')
        d.wrap = wrap + ['-o', trace]
        d.start(wait=False)
        greeted = None
        deadline = time.monotonic() + 30 * SLOW
        while greeted is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(('127.0.0.1', d.port),
                                              timeout=10 * SLOW) as c:
                    greeted = c.recv(100)
            except OSError:
                time.sleep(0.002)
        check(greeted and greeted.startswith(b'220 '), 'greeting %r'
              % greeted)
        d.wait_log(r'\b%d message\(s\) in the queue' % (n + 1))
        def stats():
            with open(trace, errors='replace') as f:
                return sum(1 for line in f if 'fstatat' in line and
                           '.st"' in line)
        wait_for(lambda: stats() >= n + 1, 30, 'the index read to its '
                 'end (%d state files looked at)' % stats())
        d.stop()
        check(d.log_text().count('status=deferred') == 1,
              'retried at the start: %d deferrals logged'
              % d.log_text().count('status=deferred'))
        first_220, last_st = None, None
        with open(trace, errors='replace') as f:
            for k, line in enumerate(f):
                m = STRACE_LINE_RE.match(line.strip())
                if not m:
                    continue
                if m.group(2) == 'sendto' and '"220 ' in m.group(3) and \
                        first_220 is None:
                    first_220 = k
                elif 'fstatat' in m.group(2) and '.st"' in m.group(3):
                    last_st = k
        check(first_220 is not None and last_st is not None and
              first_220 < last_st, 'first 220 at trace line %r, last state '
              'file at %r' % (first_220, last_st))
        ok = True
    finally:
        d.cleanup(ok)


def test_regress_maildrop_file_named_as_queued_message():
    """A local user names a maildrop/ file after a queued message: mailq
    shows that ID once (the queue's), so `ferry delete ID` removes what
    the admin saw and nothing else; the pickup gives the file an ID of
    its own."""
    d = Daemon('rg-sameid', retry_min='1h', retry_max='2h')
    ok = False
    try:
        d.start()
        qid = d.send_message(b'Subject: real\r\n\r\nreal\r\n')
        d.stop()
        md = os.path.join(d.queue_dir, 'maildrop')
        _drop(md, qid, _image(qid, 'fake@example.test', ['x@relay.test'],
                              b'Subject: fake\r\n\r\nfake\r\n'))
        q = d.mailq(maildrop=True)
        check([(m['id'], m['queue_name'] != 'maildrop') for m in q] ==
              [(qid, True)], 'mailq %r' % q)
        d.start()
        got = wait_for(lambda: (lambda q: q if len(q) == 2 else None)(
            d.mailq()), 10, 'the dropped file picked up; mailq %r'
            % d.mailq())
        check(sorted(m['sender'] for m in got) == ['fake@example.test',
                                                   'sender@example.test'],
              'senders %r' % got)
        check([m['sender'] for m in got if m['id'] == qid] ==
              ['sender@example.test'], 'queue %r' % got)
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


FUTIMENS_SHIM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sys/stat.h>

int
futimens(int fd, const struct timespec times[2])
{
	(void)fd;
	(void)times;
	errno = EPERM;
	return -1;
}
"""


def test_regress_state_kept_when_time_refused():
    """The state file's mtime is only the start-up index: a file system
    that refuses futimens (EPERM) must not cost the state update itself,
    or the recipient already delivered would get the message again at
    every retry.  Logged, and the state file says sent/deferred."""
    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and 'later@' in arg:
            return '451 4.3.0 later'
        return None
    with SmtpPeer(policy=policy) as p:
        d = smarthost_daemon('rg-futimens', p.port)
        d.preload(FUTIMENS_SHIM)
        with d:
            qid = d.send_message(b'Subject: s\r\n\r\nx\r\n',
                                 rcpts=('now@relay.test', 'later@relay.test'))
            st = os.path.join(d.queue_dir, qid + '.st')
            wait_for(lambda: os.path.exists(st), 10, '%s; log:\n%s'
                     % (st, d.log_tail(10)))
            with open(st) as f:
                text = f.read()
            check(re.search(r'(?m)^R 0 sent', text) and
                  re.search(r'(?m)^R 1 deferred', text), 'state %r' % text)
            d.wait_log(r'%s: state file time: Operation not permitted'
                       % qid)


def test_regress_socket_dir_stays_roots():
    """The directory root makes for local_socket stays root's 0755: it
    was given to the daemon's user, who could then swap the socket for a
    symlink between bind() and the chmod 0666 of the next start (which
    runs as root) and make any file, /etc/shadow say, world-writable."""
    if not IS_ROOT:
        return 'skipped: needs root'
    d = Daemon('rg-sockdir')
    sock = os.path.join(d.dir, 'run', 'submit.sock')
    d.cfg['local_socket'] = sock
    d.write_config()
    ok = False
    try:
        d.start()
        st = os.stat(os.path.dirname(sock))
        check(st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755,
              'socket dir: uid %d mode %o' % (st.st_uid, st.st_mode))
        check(stat.S_IMODE(os.stat(sock).st_mode) == 0o666,
              'socket mode %o' % os.stat(sock).st_mode)
        p = subprocess.run(['runuser', '-u', 'ferry', '--', 'ln', '-s',
                            '/etc/shadow', sock + '.new'],
                           capture_output=True)
        check(p.returncode != 0 and b'Permission denied' in p.stderr,
              'the daemon user in the socket dir: %r' % (p,))
        u = socket.socket(socket.AF_UNIX)	# submitting still works
        u.settimeout(10)
        u.connect(sock)
        check(u.recv(200).startswith(b'220'), 'no banner on the socket')
        u.close()
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_regress_root_sendmail_no_maildrop_symlink():
    """The queue's owner (the daemon's user, were it compromised) can
    make maildrop/ a symlink; sendmail run by root (cron) with the
    daemon down wrote its file, root's, wherever that pointed.  maildrop/
    is now opened without following one: sendmail fails (75) and writes
    nothing there; the message is not claimed taken."""
    if not IS_ROOT:
        return 'skipped: needs root'
    import shutil
    import tempfile
    d = _stopped_daemon('rg-mdlink')
    target = tempfile.mkdtemp(prefix='ferry-mdlink-')	# root's, 0700
    ok = False
    try:
        q = d.queue_dir
        r = subprocess.run(['runuser', '-u', 'ferry', '--', 'sh', '-c',
                            'cd %s && mv maildrop md.real && ln -s %s '
                            'maildrop' % (q, target)], capture_output=True)
        check(r.returncode == 0, 'ferry could not swap: %r' % r.stderr)
        p = d.cli('sendmail', 'x@relay.test',
                  input=b'Subject: s\n\nbody\n')
        check(p.returncode == 75 and os.listdir(target) == [],
              'sendmail exit %d, %r in the target; stderr %r'
              % (p.returncode, os.listdir(target), p.stderr))
        ok = True
    finally:
        shutil.rmtree(target, ignore_errors=True)
        d.cleanup(ok)
