"""
test_durable.py - the order of the system calls behind "250 only once the
message is on disk", read from strace while real sessions send mail.
A SIGKILL (test_crash.py) cannot show it: the page cache survives a
killed process, not a power cut.  For every message acknowledged:

- its data is durable before its name appears: after the last write to
  queue_dir/tmp/ID comes an fsync() of that file, or a syncfs() of the
  queue's file system, and only then rename(tmp/ID, ID);
- the name is durable before the 250: an fsync() of queue_dir comes
  between that rename and the "250 ... queued as ID" on the socket.

One message alone is made durable by its own fsync(); several ending in
the same loop iteration share one syncfs() and one fsync() of queue_dir
(the group commit), and no file of theirs gets an fsync() of its own.
"""

import os
import re
import shutil
import signal

from ferrytest import Daemon, check

N_BATCH = 8
# strace -y prints an fd with its path: fsync(5</tmp/x/queue/tmp/ID>).
FD_RE = r'\d+<([^>]*)>'
CALL_RE = re.compile(r'^(\w+)\((.*)$')


def _strace():
    path = shutil.which('strace')
    if path is None:
        return None
    # LeakSanitizer needs ptrace itself, so it cannot run under strace
    # (the sanitizer build's other tests check leaks).
    asan = os.environ.get('ASAN_OPTIONS', '')
    return ['env', 'ASAN_OPTIONS=%s%sdetect_leaks=0'
            % (asan, ':' if asan else ''), path, '-qq', '-y', '-s', '200', '-I', '1', '-e', 'signal=none',
            '-e', 'trace=write,writev,sendto,sendmsg,fsync,fdatasync,'
            'syncfs,sync,rename,renameat,renameat2']


def _open_data(d, i):
    """A session left just before the final dot of its DATA."""
    c = d.connect()
    c.hello()
    c.expect('MAIL FROM:<s@example.test>', 250)
    c.expect('RCPT TO:<r%d@example.test>' % i, 250)
    c.expect('DATA', 354)
    c.send('Subject: durable %d\r\n\r\n%s\r\n' % (i, 'x' * (100 + i)))
    return c


def _fd_path(args):
    """The path strace -y shows for a call's first argument, or ''."""
    m = re.match(FD_RE, args)
    return m.group(1) if m else ''


def _syncfs_reports_errors():
    """Linux 5.8 on (queue.c uses syncfs() only there)."""
    m = re.match(r'(\d+)\.(\d+)', os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (5, 8)


def _events(trace, qdir):
    """The trace as (index, call, args) in order."""
    out = []
    with open(trace, errors='replace') as f:
        for n, line in enumerate(f):
            m = CALL_RE.match(line.strip())
            if m:
                out.append((n, m.group(1), m.group(2)))
    check(out, 'strace wrote nothing for %s' % qdir)
    return out


def _check_order(events, qdir, qid):
    """The durability order for one acknowledged message; returns how its
    data was made durable ('fsync' or 'syncfs')."""
    tmp, fin = os.path.join(qdir, 'tmp', qid), os.path.join(qdir, qid)
    ack = [n for n, call, args in events if call in (
        'write', 'writev', 'sendto', 'sendmsg') and
        ('queued as %s' % qid) in args and
        _fd_path(args).startswith('socket:')]
    check(len(ack) == 1, '%s: %d "queued as" replies in the trace'
          % (qid, len(ack)))
    ren = [n for n, call, args in events if call.startswith('rename') and
           ('"%s"' % tmp) in args and ('"%s"' % fin) in args]
    check(len(ren) == 1 and ren[0] < ack[0],
          '%s: rename %s -> %s at %r, the 250 at %d' % (qid, tmp, fin, ren,
                                                       ack[0]))
    wr = [n for n, call, args in events if call in ('write', 'writev') and
          _fd_path(args) == tmp]
    check(wr and wr[-1] < ren[0], '%s: writes to %s at %r, rename at %d'
          % (qid, tmp, wr, ren[0]))
    how = None
    for n, call, args in events:
        if not wr[-1] < n < ren[0]:
            continue
        path = _fd_path(args)
        if call == 'fsync' and path == tmp:
            how = 'fsync'
        elif call == 'syncfs' and (path == qdir or
                                   path.startswith(qdir + '/')):
            how = 'syncfs'
    check(how is not None, '%s: no fsync of its file and no syncfs between '
          'the last write (%d) and the rename (%d)' % (qid, wr[-1], ren[0]))
    dirsync = [n for n, call, args in events if call == 'fsync' and
               _fd_path(args) == qdir and ren[0] < n < ack[0]]
    check(dirsync, '%s: no fsync of %s between the rename (%d) and the 250 '
          '(%d)' % (qid, qdir, ren[0], ack[0]))
    return how


def test_durable_order():
    wrap = _strace()
    if wrap is None:
        return 'strace is not installed'
    d = Daemon('durable', relay_networks='127.0.0.0/8',
               smarthost='[127.0.0.1]:9', smarthost_tls='none',
               retry_min='1h', retry_max='1h')
    trace = os.path.join(d.dir, 'strace.out')
    d.wrap = wrap + ['-o', trace]
    qdir = os.path.realpath(d.queue_dir)
    with d:
        # One message alone.
        c = _open_data(d, 0)
        single = c.expect('.', 250).qid()
        c.expect('QUIT', 221)
        c.close()
        # N_BATCH ending together: the daemon is stopped while every
        # final dot is sent, so one loop iteration sees them all.
        conns = [_open_data(d, i) for i in range(1, N_BATCH + 1)]
        pid = d.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            for c in conns:
                c.send('.\r\n')
        finally:
            os.kill(pid, signal.SIGCONT)
        batch = []
        for c in conns:
            batch.append(c.reply().qid())
            c.close()
        check(all(batch), 'batch replies: %r' % batch)
        d.wait_queue(N_BATCH + 1)
        d.stop()		# strace has written all, the dir is still there
        events = _events(trace, qdir)
    how = _check_order(events, qdir, single)
    check(how == 'fsync', '%s alone was made durable by %s, not its own '
          'fsync' % (single, how))
    hows = [_check_order(events, qdir, q) for q in batch]
    fsyncs = [args for n, call, args in events if call == 'fsync' and
              _fd_path(args).startswith('%s/tmp/' % qdir)]
    if not _syncfs_reports_errors():
        check(hows == ['fsync'] * N_BATCH, 'kernel %s: the batch was made '
              'durable by %r; syncfs() does not report write errors there'
              % (os.uname().release, hows))
        return None
    check(hows == ['syncfs'] * N_BATCH, 'the batch was made durable by %r, '
          'not by one shared syncfs' % hows)
    check(len(fsyncs) == 1, 'file fsyncs %r: only the single message '
          'should have one' % fsyncs)
    syncfs = [n for n, call, args in events if call == 'syncfs']
    check(len(syncfs) == 1, '%d syncfs calls for one batch' % len(syncfs))
    return None
