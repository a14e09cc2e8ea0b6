"""
test_install.py - `make install` and what it installs: the layout under
DESTDIR (binary, sendmail/mailq/newaliases links or none with
SENDMAIL_LINKS=0, relay.conf never overwritten, man pages, the systemd
unit with the install's paths, the queue directories with their modes
and, as root, owner ferry); newaliases through its link; the unit under
`systemd-analyze verify`; the daemon started with exactly the unit's
CapabilityBoundingSet and NoNewPrivileges (setpriv), on a port below
1024; the man pages clean under `mandoc -T lint`, relay.conf.5 naming
every key of config.c's table and ferry.8 every command `ferry` lists;
what `make run` runs (test/run-default.sh) on its own default; a build
with another SYSCONFDIR reads the relay.conf installed there.
The installed binary is ./ferry (`make -o ferry`: this checks the
layout, the suite checks the binary; test/run.sh runs the whole suite
against an installed copy).
"""

import json
import os
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import time

from ferrytest import (Daemon, check, short, serial, IS_ROOT, REPO, SLOW,
                       FERRY_BIN, TestFailure)
from test_openwrt import _shutdown_grace_s

MAN8 = os.path.join(REPO, 'doc', 'ferry.8')
MAN5 = os.path.join(REPO, 'doc', 'relay.conf.5')
UNIT = os.path.join(REPO, 'contrib', 'systemd', 'ferry.service')
LINKS = ('sendmail', 'mailq', 'newaliases')


def _install(destdir, *args):
    p = subprocess.run(['make', '--no-print-directory', '-C', REPO,
                        '-o', 'ferry', 'install', 'DESTDIR=' + destdir] +
                       list(args), capture_output=True, timeout=120 * SLOW)
    out = (p.stdout + p.stderr).decode('utf-8', 'replace')
    check(p.returncode == 0, 'make install %s: exit %d:\n%s'
          % (' '.join(args), p.returncode, out[-2500:]))
    return out


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _file(path, mode):
    check(os.path.isfile(path) and not os.path.islink(path),
          'not installed: %s' % path)
    check(_mode(path) == mode, '%s: mode %o, want %o'
          % (path, _mode(path), mode))


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


class DestDir:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='ferry-destdir-')
        os.chmod(self.dir, 0o755)

    def __enter__(self):
        return self.dir

    def __exit__(self, et, *a):
        if et is None and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def test_install_layout():
    with DestDir() as dd:
        _install(dd, 'PREFIX=/usr')
        sbin = os.path.join(dd, 'usr/sbin')
        _file(os.path.join(sbin, 'ferry'), 0o755)
        check(_read(os.path.join(sbin, 'ferry')) ==
              _read(os.path.join(REPO, 'ferry')),
              'usr/sbin/ferry is not ./ferry')
        for name in LINKS:
            p = os.path.join(sbin, name)
            check(os.path.islink(p) and os.readlink(p) == 'ferry',
                  '%s: want a symlink to ferry, got %r' % (
                      p, os.readlink(p) if os.path.islink(p) else None))
        conf = os.path.join(dd, 'etc/ferry/relay.conf')
        _file(conf, 0o644)
        check(_read(conf) == _read(os.path.join(REPO, 'relay.conf.example')),
              'etc/ferry/relay.conf is not relay.conf.example')
        man = os.path.join(dd, 'usr/share/man')
        _file(os.path.join(man, 'man8/ferry.8'), 0o644)
        _file(os.path.join(man, 'man5/relay.conf.5'), 0o644)
        check(_read(os.path.join(man, 'man8/ferry.8')) == _read(MAN8) and
              _read(os.path.join(man, 'man5/relay.conf.5')) == _read(MAN5),
              'installed man pages differ from doc/')
        unit = os.path.join(dd, 'usr/lib/systemd/system/ferry.service')
        _file(unit, 0o644)
        text = _read(unit).decode()
        check(re.search(r'^ExecStart=/usr/sbin/ferry -c '
                        r'/etc/ferry/relay\.conf serve$', text, re.M) and
              re.search(r'^ReadWritePaths=/var/spool/ferry /run/ferry$',
                        text, re.M),
              'unit ExecStart/ReadWritePaths: %s' % short(text, 3000))
        q = os.path.join(dd, 'var/spool/ferry')
        # maildrop/ is setgid once it is ferry's (root), not before.
        for sub, mode in (('', 0o711), ('tmp', 0o700), ('corrupt', 0o700),
                          ('maildrop', 0o3733 if IS_ROOT else 0o1733)):
            p = os.path.join(q, sub)
            check(os.path.isdir(p), 'no queue directory %s' % p)
            check(_mode(p) == mode, '%s: mode %o, want %o'
                  % (p, _mode(p), mode))
            if IS_ROOT:
                st = os.stat(p)
                pw = pwd.getpwnam('ferry')
                check((st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid),
                      '%s: owner %d:%d, want ferry' % (p, st.st_uid,
                                                      st.st_gid))
        # Nothing else: every installed file is one of these.
        want = {'usr/sbin/ferry', 'etc/ferry/relay.conf',
                'usr/share/man/man8/ferry.8',
                'usr/share/man/man5/relay.conf.5',
                'usr/lib/systemd/system/ferry.service'} | \
            {'usr/sbin/' + n for n in LINKS}
        got = set()
        for root, dirs, files in os.walk(dd):
            for f in files:
                got.add(os.path.relpath(os.path.join(root, f), dd))
        check(got == want, 'installed files %s, want %s'
              % (sorted(got), sorted(want)))
        # The shipped relay.conf parses, as installed.
        p = subprocess.run([os.path.join(sbin, 'ferry'), '-c', conf,
                            'check-config'], capture_output=True, timeout=30)
        check(p.returncode == 0 and b'queue_dir = /var/spool/ferry'
              in p.stdout, 'check-config of the installed relay.conf: exit '
              '%d %s' % (p.returncode, p.stderr.decode(errors='replace')))


def test_install_keeps_relay_conf_and_links_off():
    """An existing relay.conf survives install (twice); SENDMAIL_LINKS=0
    installs no links; the default PREFIX is /usr/local."""
    with DestDir() as dd:
        etc = os.path.join(dd, 'etc/ferry')
        os.makedirs(etc)
        mine = b'# the admin\'s own\nhostname = mine.example.org\n'
        conf = os.path.join(etc, 'relay.conf')
        with open(conf, 'wb') as f:
            f.write(mine)
        os.chmod(conf, 0o600)
        for _ in range(2):
            _install(dd, 'SENDMAIL_LINKS=0')
            check(_read(conf) == mine and _mode(conf) == 0o600,
                  'make install changed an existing relay.conf: %s'
                  % short(_read(conf)))
        sbin = os.path.join(dd, 'usr/local/sbin')
        _file(os.path.join(sbin, 'ferry'), 0o755)
        for name in LINKS:
            check(not os.path.lexists(os.path.join(sbin, name)),
                  'SENDMAIL_LINKS=0 installed %s' % name)
        unit = os.path.join(dd, 'usr/local/lib/systemd/system/ferry.service')
        check(re.search(r'^ExecStart=/usr/local/sbin/ferry ',
                        _read(unit).decode(), re.M),
              'unit ExecStart does not follow PREFIX')
        check(os.path.isfile(os.path.join(
            dd, 'usr/local/share/man/man8/ferry.8')), 'no man page')
        # A dangling symlink in its place is an admin's choice too.
        os.unlink(conf)
        os.symlink('/nonexistent/relay.conf', conf)
        _install(dd, 'SENDMAIL_LINKS=0')
        check(os.path.islink(conf), 'make install replaced a symlinked '
              'relay.conf')


def test_install_queuedir_reaches_the_daemon():
    """QUEUEDIR=/srv/...: the directory made, the unit's ReadWritePaths
    and the queue_dir of the new relay.conf are the same one (the daemon
    under ProtectSystem=strict can write nowhere else); an existing
    relay.conf is still left alone."""
    with DestDir() as dd:
        _install(dd, 'PREFIX=/usr', 'QUEUEDIR=/srv/ferry-q')
        check(os.path.isdir(os.path.join(dd, 'srv/ferry-q/maildrop')),
              'QUEUEDIR not made')
        unit = _read(os.path.join(
            dd, 'usr/lib/systemd/system/ferry.service')).decode()
        check(re.search(r'^ReadWritePaths=/srv/ferry-q /run/ferry$', unit,
                        re.M), 'unit ReadWritePaths: %s' % short(unit, 3000))
        conf = os.path.join(dd, 'etc/ferry/relay.conf')
        _file(conf, 0o644)
        p = subprocess.run([FERRY_BIN, '-c', conf, 'check-config'],
                           capture_output=True, timeout=30)
        check(p.returncode == 0 and
              re.search(rb'(?m)^queue_dir = /srv/ferry-q  # ', p.stdout),
              'the installed relay.conf does not use QUEUEDIR: exit %d\n%s'
              % (p.returncode, short(p.stdout + p.stderr, 2000)))
        mine = b'# the admin\'s own\n'
        with open(conf, 'wb') as f:
            f.write(mine)
        os.chmod(conf, 0o640)
        _install(dd, 'PREFIX=/usr', 'QUEUEDIR=/srv/ferry-q')
        check(_read(conf) == mine and _mode(conf) == 0o640,
              'make install changed an existing relay.conf')


def test_install_sysconfdir_compiled_in():
    """SYSCONFDIR=...: the relay.conf that install writes there is the
    one the installed ferry, sendmail and mailq read without -c (and the
    one the unit names).  A build of its own (objects in the temp dir,
    -O0, no LTO: a few seconds), since ./ferry has SYSCONFDIR=/etc."""
    with DestDir() as dd:
        etc, usr = os.path.join(dd, 'etc'), os.path.join(dd, 'usr')
        p = subprocess.run(
            ['make', '--no-print-directory', '-C', REPO, '-j2', 'install',
             'B=' + os.path.join(dd, 'build'), 'TARGET=sysconfdir-test',
             'LTO=', 'OPT=-O0', 'SYSCONFDIR=' + etc, 'PREFIX=' + usr,
             'QUEUEDIR=' + os.path.join(dd, 'q')],
            capture_output=True, timeout=300 * SLOW)
        check(p.returncode == 0, 'make install SYSCONFDIR=%s: exit %d:\n%s'
              % (etc, p.returncode, (p.stdout + p.stderr).decode(
                  'utf-8', 'replace')[-2500:]))
        conf = os.path.join(etc, 'ferry/relay.conf')
        unit = _read(os.path.join(
            usr, 'lib/systemd/system/ferry.service')).decode()
        check('-c %s serve' % conf in unit, 'unit: %s' % short(unit, 3000))
        sbin = os.path.join(usr, 'sbin')
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('FERRY_')}
        p = subprocess.run([os.path.join(sbin, 'ferry'), 'check-config'],
                           capture_output=True, env=env, timeout=30)
        check(p.returncode == 0 and re.search(
            rb'(?m)^queue_dir = \S+  # ' + re.escape(conf.encode()) + b':',
            p.stdout), 'check-config does not read %s: exit %d\n%s'
              % (conf, p.returncode, short(p.stdout + p.stderr, 2000)))
        # sendmail and mailq read that file: a bad line there stops them
        with open(conf, 'a') as f:
            f.write('no_such_key = 1\n')
        for name in ('sendmail', 'mailq'):
            p = subprocess.run([os.path.join(sbin, name)], input=b'',
                               capture_output=True, env=env, timeout=30)
            check(p.returncode == 78 and conf.encode() in p.stderr,
                  '%s did not read %s: exit %d %s' % (
                      name, conf, p.returncode, short(p.stderr)))


def test_install_newaliases_link():
    """newaliases through its installed link checks the aliases file of
    $FERRY_CONFIG: 0 when it parses or there is none, 78 naming the file
    and line when it does not; `ferry newaliases` does the same."""
    with DestDir() as dd:
        _install(dd, 'PREFIX=/usr')
        na = os.path.join(dd, 'usr/sbin/newaliases')
        conf = os.path.join(dd, 'relay.conf')
        aliases = os.path.join(dd, 'aliases')

        def run(text, *argv):
            with open(conf, 'w') as f:
                f.write('queue_dir = %s\n' % os.path.join(dd, 'q'))
                if text is not None:
                    f.write('aliases = %s\n' % aliases)
                    with open(aliases, 'w') as a:
                        a.write(text)
            env = dict(os.environ, FERRY_CONFIG=conf)
            return subprocess.run(list(argv) or [na], capture_output=True,
                                  env=env, timeout=30)

        p = run(None)
        check(p.returncode == 0, 'newaliases without aliases: exit %d %s'
              % (p.returncode, p.stderr))
        p = run('root: admin@example.org\npostmaster: root\n')
        check(p.returncode == 0 and p.stderr == b'',
              'newaliases, good file: exit %d %s' % (p.returncode, p.stderr))
        p = run('root: admin@example.org\nthis line has no colon\n')
        err = p.stderr.decode(errors='replace')
        check(p.returncode == 78 and err.startswith('newaliases: ') and
              '%s:2' % aliases in err,
              'newaliases, bad line 2: exit %d %r' % (p.returncode, err))
        p = run('root: admin@example.org\nthis line has no colon\n',
                os.path.join(dd, 'usr/sbin/ferry'), '-c', conf,
                'newaliases')
        check(p.returncode == 78, '`ferry newaliases`, bad file: exit %d'
              % p.returncode)


def test_install_systemd_unit_verifies():
    sa = shutil.which('systemd-analyze')
    if not sa:
        return 'no systemd-analyze here: unit not verified'
    with DestDir() as dd:
        _install(dd, 'PREFIX=/usr')
        unit = os.path.join(dd, 'usr/lib/systemd/system/ferry.service')
        # The unit names /usr/sbin/ferry; verify checks that it exists,
        # so point it at the installed one.
        text = _read(unit).decode().replace(
            '/usr/sbin/ferry', os.path.join(dd, 'usr/sbin/ferry'))
        vdir = os.path.join(dd, 'verify')
        os.mkdir(vdir)
        with open(os.path.join(vdir, 'ferry.service'), 'w') as f:
            f.write(text)
        env = dict(os.environ,
                   MANPATH=os.path.join(dd, 'usr/share/man'))
        p = subprocess.run([sa, 'verify', os.path.join(vdir,
                                                       'ferry.service')],
                           capture_output=True, env=env, timeout=60)
        out = (p.stdout + p.stderr).decode(errors='replace')
        check(p.returncode == 0 and 'ferry.service' not in out,
              'systemd-analyze verify: exit %d:\n%s' % (p.returncode, out))


def test_install_unit_outwaits_the_drain():
    """systemd SIGKILLs the unit TimeoutStopSec after its SIGTERM; ferry
    lets open transactions run for up to SMTP_SHUTDOWN_GRACE_MS first,
    then commits and exits.  60 s was set, the drain exactly, so the kill
    raced the last transaction's end."""
    m = re.findall(r'^TimeoutStopSec=(\d+)$', _read(UNIT).decode(), re.M)
    grace = _shutdown_grace_s()
    check(len(m) == 1 and int(m[0]) >= grace + 5, 'TimeoutStopSec %r, '
          'want at least %d s (the drain, %d s, and time to exit)'
          % (m, grace + 5, grace))


def _unit_caps():
    text = _read(UNIT).decode()
    m = re.search(r'^CapabilityBoundingSet=(.*)$', text, re.M)
    check(m and re.search(r'^NoNewPrivileges=yes$', text, re.M),
          'the unit has no CapabilityBoundingSet or NoNewPrivileges')
    return [c.lower().replace('cap_', '') for c in m.group(1).split()]


def _low_port():
    for port in range(700, 1000, 7):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise TestFailure('no free port below 1024')


class CappedDaemon(Daemon):
    """The daemon under setpriv with only the given capabilities in its
    bounding set and no_new_privs, as systemd starts it."""

    def __init__(self, name, caps, ro_root=False, low=True, **cfg):
        self.caps = caps
        self.ro_root = ro_root
        if low:
            self.low = _low_port()
            cfg['listen_smtp'] = '127.0.0.1:%d' % self.low
        super().__init__(name, **cfg)
        if low:
            self.port = self.low

    def start(self, wait=True):
        logf = open(self.log_path, 'ab')
        bset = '-all,' + ','.join('+' + c for c in self.caps)
        cmd = ['setpriv', '--bounding-set=' + bset, '--inh-caps=-all',
               '--no-new-privs', FERRY_BIN, '-c', self.conf, 'serve']
        if self.ro_root:
            # ProtectSystem=strict with ReadWritePaths, as near as a
            # mount namespace gets: / read-only, the daemon's directory
            # (queue, socket) writable.  Each exec keeps the pid.
            cmd = ['unshare', '--mount', '--propagation', 'private', 'sh',
                   '-c', 'mount --bind / / && mount -o remount,bind,ro / '
                   '&& mount --bind "$0" "$0" '
                   '&& mount -o remount,bind,rw "$0" && exec "$@"',
                   self.dir] + cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        logf.close()
        if wait and not (self.wait_ready() and self.proc.poll() is None):
            raise TestFailure('capped daemon did not start (rc %r):\n%s'
                              % (self.proc.poll(), self.log_tail()))
        return self


def _prepare_queue(d):
    """The queue as `make install` leaves it: owned by ferry, the modes
    the daemon wants, so root without CAP_DAC_OVERRIDE meets it."""
    pw = pwd.getpwnam('ferry')
    for sub, mode in (('', 0o711), ('tmp', 0o700), ('corrupt', 0o700),
                      ('maildrop', 0o3733)):
        p = os.path.join(d.queue_dir, sub)
        os.makedirs(p, exist_ok=True)
        os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(p, mode)


def test_install_systemd_caps_suffice():
    """Started as root with the unit's bounding set and no_new_privs, the
    daemon binds a port below 1024, reads a key only `ferry` may read,
    opens a queue that belongs to ferry (maildrop/ stays setgid, though
    root without CAP_FSETID is no member of ferry's group), drops
    privileges, accepts and stores mail, reloads on SIGHUP and stops
    cleanly, with / read-only but for its own directory (where unshare
    works); and it needs every capability in the set."""
    if not IS_ROOT or not shutil.which('setpriv'):
        return 'not root or no setpriv: capabilities not checked'
    caps = _unit_caps()
    ro = subprocess.run(['unshare', '--mount', 'true'],
                        capture_output=True).returncode == 0
    d = CappedDaemon('caps', caps, ro_root=ro, tls=True)
    _prepare_queue(d)
    with d:
        if ro:
            with open('/proc/%d/mountinfo' % d.proc.pid) as f:
                mi = [l.split() for l in f]
            check(any(m[4] == '/' and m[5].startswith('ro') for m in mi) and
                  any(m[4] == d.dir and m[5].startswith('rw') for m in mi),
                  'the daemon does not run with / read-only: %s' % mi)
        qid = d.send_message(b'Subject: caps\r\n\r\nbody\r\n')
        check(qid in d.mailq_ids(), 'message %s not queued' % qid)
        md = os.path.join(d.queue_dir, 'maildrop')
        check(_mode(md) == 0o3733, '%s: mode %o, want 3733' % (md, _mode(md)))
        with open('/proc/%d/status' % d.proc.pid) as f:
            st = f.read()
        check(re.search(r'^Uid:\s+(\d+)', st, re.M).group(1) ==
              str(pwd.getpwnam('ferry').pw_uid) and
              re.search(r'^NoNewPrivs:\s+1$', st, re.M) and
              re.search(r'^CapEff:\s+0+$', st, re.M),
              'daemon not dropped / no_new_privs: %s' % st)
        d.signal(1)
        d.wait_log(r'reload -- version', timeout=10)
    if not ro:
        return 'no mount namespace here: ProtectSystem not simulated'
    # The set is minimal: without any one of them the daemon cannot
    # start (which also shows setpriv's limit is real).  The queue is
    # one it makes itself (a new queue_dir): what it makes as root it
    # gives to ferry, then sets the mode of (CAP_FOWNER; install's
    # queue needs no mending).
    for drop in caps:
        d = CappedDaemon('caps-' + drop, [c for c in caps if c != drop],
                         tls=True)
        shutil.rmtree(d.queue_dir, ignore_errors=True)
        try:
            try:
                d.start()
                raise TestFailure('started without CAP_%s: the unit need '
                                  'not grant it' % drop.upper())
            except TestFailure as e:
                if 'did not start' not in str(e):
                    raise
            check(re.search(r'fatal: ', d.log_text()),
                  'without CAP_%s: no fatal line, log:\n%s'
                  % (drop.upper(), d.log_tail()))
        finally:
            d.cleanup()


def test_install_systemd_caps_new_queue_dir():
    """With the unit's bounding set the daemon makes its queue in a
    queue_dir that does not exist yet, or that the admin made empty
    (`mkdir -p`, as ReadWritePaths= needs it to exist): tmp/, corrupt/
    and maildrop/ go into a directory that already belongs to ferry,
    which root may write to only with CAP_DAC_OVERRIDE (with
    DAC_READ_SEARCH instead, such a start failed with "mkdir tmp:
    Permission denied", exit 75, and systemd restarted it in a loop).  A
    port above 1024: the queue is what is checked, and this test runs
    beside others."""
    if not IS_ROOT or not shutil.which('setpriv'):
        return 'not root or no setpriv: capabilities not checked'
    caps = _unit_caps()
    for made in (False, True):
        d = CappedDaemon('caps-newq', caps, low=False, tls=True)
        shutil.rmtree(d.queue_dir, ignore_errors=True)
        if made:
            os.mkdir(d.queue_dir, 0o755)	# root's, empty
        with d:
            uid = pwd.getpwnam('ferry').pw_uid
            for sub, mode in (('', 0o711), ('tmp', 0o700),
                              ('corrupt', 0o700), ('maildrop', 0o3733)):
                p = os.path.join(d.queue_dir, sub)
                check(os.path.isdir(p) and os.stat(p).st_uid == uid and
                      _mode(p) == mode, '%s: not made for ferry %o'
                      % (p, mode))
            qid = d.send_message(b'Subject: new queue\r\n\r\nbody\r\n')
            check(qid in d.mailq_ids(), 'message %s not queued' % qid)


# --- man pages ------------------------------------------------------------

def _lint(page):
    p = subprocess.run(['mandoc', '-T', 'lint', '-W', 'style', page],
                       capture_output=True, timeout=30)
    msgs = [l for l in (p.stdout + p.stderr).decode(errors='replace')
            .splitlines()
            # Depends on which manuals this machine has, not on ours.
            if 'referenced manual not found' not in l and
            'mandoc.db' not in l]
    return msgs


def test_man_mandoc_lint():
    check(shutil.which('mandoc'), 'no mandoc (sh test/deps.sh test)')
    for page in (MAN8, MAN5):
        msgs = _lint(page)
        check(not msgs, 'mandoc -T lint %s:\n%s'
              % (page, '\n'.join(msgs)))
    # The lint is not blind: a broken page is reported.
    with tempfile.NamedTemporaryFile('w', suffix='.8') as f:
        f.write(_read(MAN8).decode().replace('.Sh SIGNALS\n',
                                             '.Sh SIGNALS\n.Bl\n', 1))
        f.flush()
        check(_lint(f.name), 'mandoc -T lint found nothing in a broken page')


def _table_keys():
    """The key names of config.c's CONFIG_KEYS table (keys[])."""
    with open(os.path.join(REPO, 'config.c')) as f:
        src = f.read()
    m = re.search(r'^#define CONFIG_KEYS\(X\) \\\n(.*?)^\t/\* end \*/$',
                  src, re.S | re.M)
    check(m, 'config.c: no CONFIG_KEYS table')
    keys = re.findall(r'^\tX\("([a-z0-9_]+)", KT_', m.group(1), re.M)
    check(len(keys) > 30, 'config.c keys[]: only %r' % keys)
    return keys


def _documented_keys():
    """Keys relay.conf.5 describes: the `.It Cm a , Cm b` items of KEYS."""
    text = _read(MAN5).decode()
    sec = text[text.index('.Sh KEYS'):text.index('.Sh FILES')]
    keys = []
    for line in sec.splitlines():
        if line.startswith('.It Cm '):
            keys += re.findall(r'Cm ([a-z0-9_]+)', line)
    return keys


def test_man_every_config_key():
    table = _table_keys()
    with DestDir() as dd:
        conf = os.path.join(dd, 'empty.conf')
        open(conf, 'w').close()
        p = subprocess.run([FERRY_BIN, '-c', conf, 'check-config'],
                           capture_output=True, timeout=30)
    check(p.returncode == 0, 'check-config of an empty file: exit %d %s'
          % (p.returncode, p.stderr))
    printed = re.findall(r'^([a-z0-9_]+) =', p.stdout.decode(), re.M)
    check(sorted(printed) == sorted(table),
          'check-config prints %r, config.c has %r' % (printed, table))
    doc = _documented_keys()
    missing = [k for k in table if k not in doc]
    check(not missing, 'relay.conf.5 does not describe %s' % missing)
    stale = [k for k in doc if k not in table]
    check(not stale, 'relay.conf.5 describes keys ferry does not have: %s'
          % stale)
    text = _read(MAN5).decode()
    for k in table:
        m = re.search(r'^\.It Cm [^\n]*\b%s\b[^\n]*\n(.*?)(?=^\.It |^\.El)'
                      % k, text, re.S | re.M)
        check(m and 'Default' in m.group(1),
              'relay.conf.5: %s has no "Default:"' % k)


def test_man_every_command():
    """Every command `ferry`'s usage lists has an item in ferry.8."""
    p = subprocess.run([FERRY_BIN, '-h'], capture_output=True, timeout=30)
    usage = p.stderr.decode(errors='replace')
    cmds = re.findall(r'^  ([a-z][a-z-]*)\b', usage, re.M)
    check(p.returncode == 64 and len(cmds) >= 8,
          'ferry -h: exit %d, commands %r' % (p.returncode, cmds))
    text = _read(MAN8).decode()
    sec = text[text.index('.Sh COMMANDS'):text.index('.Sh SIGNALS')]
    items = set()
    for line in sec.splitlines():
        m = re.match(r'\.It (?:Xo\n)?Cm ([a-z\\-]+)', line)
        if m:
            items.add(m.group(1).replace('\\-', '-'))
    for line in re.findall(r'^\.It Xo\n\.Cm ([a-z\\-]+)', sec, re.M):
        items.add(line.replace('\\-', '-'))
    missing = [c for c in cmds if c not in items]
    check(not missing, 'ferry.8 COMMANDS lacks %s (has %s)'
          % (missing, sorted(items)))
    for sig in ('SIGHUP', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'):
        check(sig in text, 'ferry.8 does not mention %s' % sig)


def _wait_port(port, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        check(proc.poll() is None, 'make run\'s ferry exited %s'
              % proc.returncode)
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TestFailure('nothing listens on 127.0.0.1:%d' % port)


@serial
def test_make_run_default():
    """What `make run` runs after building (test/run-default.sh), in a
    copy of the tree's layout: the self-signed certificate and
    run/relay.conf made on the first run and kept on the next, SMTP with
    STARTTLS on 2525 (IPv4 and, where the host has it, IPv6), implicit
    TLS on 2465, mail queued (and deferred: nothing leaves), the
    sendmail interface through FERRY_CONFIG, exit 0 on SIGTERM."""
    for port in (2525, 2587, 2465):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            raise TestFailure('127.0.0.1:%d is taken: make run needs it'
                              % port)
        except OSError:
            pass
    top = tempfile.mkdtemp(prefix='ferry-makerun-')
    os.chmod(top, 0o755)
    try:
        os.mkdir(os.path.join(top, 'test'))
        shutil.copy(os.path.join(REPO, 'test', 'run-default.sh'),
                    os.path.join(top, 'test'))
        os.symlink(FERRY_BIN, os.path.join(top, 'ferry'))
        run = os.path.join(top, 'run')
        conf = os.path.join(run, 'relay.conf')
        cert = os.path.join(run, 'cert.pem')
        first = None
        for round_ in (1, 2):
            log = open(os.path.join(top, 'log%d' % round_), 'wb')
            p = subprocess.Popen(['sh', os.path.join(top, 'test',
                                                     'run-default.sh')],
                                 stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_port(2525, p, 30 * SLOW)
                _wait_port(2465, p, 10 * SLOW)
                check(_mode(os.path.join(run, 'key.pem')) == 0o640,
                      'run/key.pem mode %o' % _mode(os.path.join(run,
                                                              'key.pem')))
                if round_ == 2:
                    check(_read(cert) == first,
                          'the second run replaced run/cert.pem')
                    break
                first = _read(cert)
                ctx = ssl.create_default_context(cafile=cert)
                s = smtplib.SMTP('127.0.0.1', 2525, timeout=30)
                s.starttls(context=ctx)
                s.ehlo('client.test')
                check(s.mail('a@example.test')[0] == 250, 'MAIL')
                check(s.rcpt('someone@example.org')[0] == 250,
                      'RCPT to another domain from loopback')
                code, msg = s.data(b'Subject: make run\r\n\r\nhello\r\n')
                check(code == 250 and b'queued as' in msg,
                      'DATA: %d %r' % (code, msg))
                s.quit()
                s = smtplib.SMTP_SSL('127.0.0.1', 2465, context=ctx,
                                     timeout=30)
                check(s.ehlo('client.test')[0] == 250, 'EHLO on 2465')
                s.quit()
                if socket.has_ipv6:
                    try:
                        c = socket.create_connection(('::1', 2525),
                                                     timeout=5)
                    except OSError:
                        c = None	# no IPv6 loopback on this host
                    if c is not None:
                        check(c.recv(64).startswith(b'220 '),
                              '[::1]:2525 banner')
                        c.close()
                env = dict(os.environ, FERRY_CONFIG=conf)
                r = subprocess.run([FERRY_BIN, 'sendmail', 'root'],
                                   input=b'Subject: cron\n\nhi\n',
                                   env=env, capture_output=True,
                                   timeout=30 * SLOW)
                check(r.returncode == 0, 'sendmail: exit %d %r'
                      % (r.returncode, r.stderr))
                deadline = time.time() + 20 * SLOW
                while True:
                    r = subprocess.run([FERRY_BIN, 'mailq', '--json'],
                                       env=env, capture_output=True,
                                       timeout=30 * SLOW)
                    q = json.loads(r.stdout or b'[]')
                    if len(q) == 2:
                        break
                    check(time.time() < deadline, 'mailq: %r' % q)
                    time.sleep(0.2)
            finally:
                p.terminate()
                try:
                    rc = p.wait(timeout=20 * SLOW)
                except subprocess.TimeoutExpired:
                    p.kill()
                    raise TestFailure('make run\'s ferry ignored SIGTERM')
                log.close()
            check(rc == 0, 'exit %d on SIGTERM:\n%s'
                  % (rc, _read(os.path.join(top, 'log%d' % round_))
                     .decode('utf-8', 'replace')[-2000:]))
    finally:
        shutil.rmtree(top, ignore_errors=True)
