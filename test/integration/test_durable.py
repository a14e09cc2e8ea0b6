"""
test_durable.py - the order of the system calls behind "250 only once the
message is on disk", read from strace while real sessions send mail.
A SIGKILL (test_crash.py) cannot show it: the page cache survives a
killed process, not a power cut.  For every message acknowledged:

- its data is durable before its name appears: after the last write to
  queue_dir/tmp/ID comes an fsync() of that file, and only then
  rename(tmp/ID, ID);
- the name is durable before the 250: an fsync() of queue_dir comes
  between that rename and the "250 ... queued as ID" on the socket.

Several messages ending in the same loop iteration (the group commit)
share that one fsync() of queue_dir, and every one of their files has
its writes started (sync_file_range) before the first of their fsyncs
waits, so the disk sees them together.  One message alone needs no such
start.  No syncfs(): it would write out other files too.

A start that fails (sync_file_range made to fail with EIO by an
LD_PRELOAD shim: ext4 may report dropped pages only there) fails those
commits: 451 4.3.0, nothing queued, tmp/ empty, and the daemon goes on.
"""

import os
import re
import signal

from ferrytest import Daemon, check, strace_wrap, STRACE_LINE_RE
from peers import wait_for

N_BATCH = 8
# strace -y prints an fd with its path: fsync(5</tmp/x/queue/tmp/ID>).
FD_RE = r'\d+<([^>]*)>'



def _open_data(d, i):
    """A session left just before the final dot of its DATA."""
    c = d.connect()
    c.hello()
    c.expect('MAIL FROM:<s@example.test>', 250)
    c.expect('RCPT TO:<r%d@example.test>' % i, 250)
    c.expect('DATA', 354)
    return c


def _body(i):
    """Message i, with its final dot."""
    return 'Subject: durable %d\r\n\r\n%s\r\n.\r\n' % (i, 'x' * (100 + i))


def _fd_path(args):
    """The path strace -y shows for a call's first argument, or ''."""
    m = re.match(FD_RE, args)
    return m.group(1) if m else ''


def _events(trace, qdir):
    """The trace as (index, call, args) in order."""
    out = []
    with open(trace, errors='replace') as f:
        for n, line in enumerate(f):
            m = STRACE_LINE_RE.match(line.strip())
            if m:
                out.append((n, m.group(2), m.group(3)))
    check(out, 'strace wrote nothing for %s' % qdir)
    return out


def _check_order(events, qdir, qid):
    """The durability order for one acknowledged message; returns the
    trace indexes of its steps ('started': its sync_file_range calls)."""
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
    synced = [n for n, call, args in events if call == 'fsync' and
              _fd_path(args) == tmp and wr[-1] < n < ren[0]]
    check(synced, '%s: no fsync of its file between the last write (%d) '
          'and the rename (%d)' % (qid, wr[-1], ren[0]))
    dirsync = [n for n, call, args in events if call == 'fsync' and
               _fd_path(args) == qdir and ren[0] < n < ack[0]]
    check(dirsync, '%s: no fsync of %s between the rename (%d) and the 250 '
          '(%d)' % (qid, qdir, ren[0], ack[0]))
    started = [n for n, call, args in events if
               call == 'sync_file_range' and _fd_path(args) == tmp]
    return {'last_write': wr[-1], 'fsync': synced[0], 'rename': ren[0],
            'dirsync': dirsync[0], 'ack': ack[0], 'started': started}


def _proc_state(pid):
    """The one-letter state of /proc/PID/stat (T: stopped)."""
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def _batch(d, first, n):
    """n messages ending in one loop iteration (the daemon is stopped
    while the bodies are sent: all it was sent before has been answered,
    so one iteration sees them all); their replies."""
    conns = [_open_data(d, i) for i in range(first, first + n)]
    pid = d.pid()
    os.kill(pid, signal.SIGSTOP)
    # kill() returns before the stop takes: a body that came while the
    # daemon still ran would be taken alone (a loaded machine did that).
    wait_for(lambda: _proc_state(pid) in ('T', 't'), 10,
             'the daemon to stop (state %r)' % _proc_state(pid))
    try:
        for i, c in enumerate(conns, first):
            c.send(_body(i))
    finally:
        os.kill(pid, signal.SIGCONT)
    replies = []
    for c in conns:
        replies.append(c.reply())
        c.close()
    return replies


def test_durable_order():
    wrap = strace_wrap('write,writev,sendto,sendmsg,fsync,fdatasync,syncfs,'
                       'sync,sync_file_range,rename,renameat,renameat2')
    if wrap is None:
        return 'strace is not installed or cannot trace here'
    d = Daemon('durable', relay_networks='127.0.0.0/8',
               smarthost='[127.0.0.1]:9', smarthost_tls='none',
               retry_min='1h', retry_max='1h')
    trace = os.path.join(d.dir, 'strace.out')
    d.wrap = wrap + ['-o', trace]
    qdir = os.path.realpath(d.queue_dir)
    with d:
        # One message alone.
        c = _open_data(d, 0)
        c.send(_body(0))
        single = c.expect(None, 250).qid()
        c.expect('QUIT', 221)
        c.close()
        batch = [r.qid() for r in _batch(d, 1, N_BATCH)]
        check(all(batch), 'batch replies: %r' % batch)
        d.wait_queue(N_BATCH + 1)
        d.stop()		# strace has written all, the dir is still there
        events = _events(trace, qdir)
    one = _check_order(events, qdir, single)
    check(one['started'] == [], '%s alone: sync_file_range at %r'
          % (single, one['started']))
    many = [_check_order(events, qdir, q) for q in batch]
    first_wait = min(m['fsync'] for m in many)
    for q, m in zip(batch, many):
        check(len(m['started']) == 1 and
              m['last_write'] < m['started'][0] < first_wait,
              '%s: writes started at %r, its last write at %d, the '
              "batch's first fsync at %d" % (q, m['started'],
                                              m['last_write'], first_wait))
    check(len(set(m['dirsync'] for m in many)) == 1,
          'the batch took %d fsyncs of %s, not one'
          % (len(set(m['dirsync'] for m in many)), qdir))
    check(not [n for n, call, args in events if call == 'syncfs'],
          'syncfs() was called')
    return None


SHIM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>

int
sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	(void)fd; (void)off; (void)n; (void)flags;
	errno = EIO;
	return -1;
}
"""


def test_durable_start_failure_refuses_batch():
    d = Daemon('durable-eio', relay_networks='127.0.0.0/8',
               smarthost='[127.0.0.1]:9', smarthost_tls='none',
               retry_min='1h', retry_max='1h')
    d.preload(SHIM)
    with d:
        c = _open_data(d, 0)		# alone: no start, its own fsync
        c.send(_body(0))
        single = c.expect(None, 250).qid()
        c.close()
        replies = _batch(d, 1, N_BATCH)
        check(all(r.code == 451 and r.enh() == '4.3.0' for r in replies),
              'a batch whose writes could not start: %r'
              % [r.text for r in replies])
        check(d.mailq_ids() == [single], 'queued: %r, want only %s'
              % (d.mailq_ids(), single))
        tmp = os.listdir(os.path.join(d.queue_dir, 'tmp'))
        check(not [t for t in tmp if not t.endswith('.st')],
              'tmp/ keeps %r' % tmp)
        check(d.log_text().count('commit: unfinished: Input/output error')
              == N_BATCH, 'log:\n' + d.log_tail())
        c = _open_data(d, 99)		# and the daemon goes on
        c.send(_body(99))
        c.expect(None, 250)
        c.close()
