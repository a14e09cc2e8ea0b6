"""
test_container.py - ferry as a container's PID 1, without Docker:
`unshare --pid --fork --mount-proc` starts `ferry serve` as PID 1 of a
new PID namespace (and an empty tmpfs over /etc/ferry in its own mount
namespace, so no relay.conf can be found).  Configured by FERRY_*
variables alone it relays a message to a test peer; orphans re-parented
to it get reaped (none left as a zombie in /proc); SIGTERM and SIGINT as
PID 1 end it with exit 0; SIGHUP re-reads the file and the environment,
and a set variable still wins over the file after the reload.
Root only (unshare); Python 3 standard library.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from ferrytest import (FERRY_BIN, HOSTNAME, IS_ROOT, SLOW, Conn, TestFailure,
                       check, ensure_ferry_user, free_port,
                       sanitizer_report, short, stuff)
from peers import SmtpPeer, wait_for

# As PID 1: hide any /etc/ferry of the host (the daemon must find no
# file), then become ferry so it keeps PID 1.
# A container has no /dev/log: where the host has one, a character
# device goes over it in the namespace, so a syslog connect fails there
# too.
PID1_SCRIPT = ('if [ -d /etc/ferry ]; then '
               'mount -t tmpfs -o size=64k ferry-test /etc/ferry || exit 99; '
               'fi; if [ -e /dev/log ]; then '
               'mount --bind /dev/null /dev/log || exit 99; '
               'fi; exec "$@"')

# Variables the sanitizer build needs to see; everything else is dropped
# so nothing but FERRY_* configures the daemon.
PASS_ENV = ('PATH', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS')


class Pid1:
    """`ferry serve` (or any ferry command) as PID 1 of a new namespace,
    configured by env (a dict of FERRY_* variables) plus the defaults."""

    def __init__(self, name, env):
        ensure_ferry_user()
        self.dir = tempfile.mkdtemp(prefix='ferry-pid1-%s-' % name)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.queue_dir = os.path.join(self.dir, 'queue')
        self.log_path = os.path.join(self.dir, 'daemon.log')
        self.env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        self.env.update({
            'FERRY_HOSTNAME': HOSTNAME,
            'FERRY_LISTEN_SMTP': '127.0.0.1:%d' % self.port,
            'FERRY_LISTEN_SUBMISSION': '',	# empty: off
            'FERRY_LOCAL_SOCKET': os.path.join(self.dir, 'submit.sock'),
            'FERRY_QUEUE_DIR': self.queue_dir,
            'FERRY_LOG': 'stderr',
        })
        self.env.update(env)
        self.proc = None
        self.pid = None		# ferry's PID as seen from here

    def argv(self, *args):
        return ['unshare', '--pid', '--fork', '--mount-proc', '--',
                'sh', '-c', PID1_SCRIPT, 'sh', FERRY_BIN] + list(args)

    def run(self, *args):
        """A ferry command as PID 1, to completion."""
        return subprocess.run(self.argv(*args), env=self.env,
                              capture_output=True, timeout=60 * SLOW)

    def start(self):
        logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(self.argv('serve'), env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=logf)
        logf.close()
        self.pid = wait_for(self._ferry_pid, 10, 'ferry under unshare')
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, 'ferry as PID 1 exited %r; '
                  'log:\n%s' % (self.proc.poll(), self.log_tail()))
            try:
                with Conn(self.port, timeout=5) as c:
                    c.expect(None, 220)
                    c.expect('QUIT', 221)
                return self
            except (OSError, EOFError, TestFailure):
                time.sleep(0.05)
        raise TestFailure('ferry as PID 1 never answered; log:\n%s'
                          % self.log_tail())

    def _ferry_pid(self):
        """unshare's child once it has become ferry (exec'd by sh)."""
        try:
            with open('/proc/%d/task/%d/children'
                      % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
            for k in kids:
                if os.path.realpath('/proc/%s/exe' % k) == \
                        os.path.realpath(FERRY_BIN):
                    return int(k)
        except OSError:
            pass
        return None

    def nspid(self):
        """ferry's PIDs from /proc/PID/status NSpid: (here, inside)."""
        with open('/proc/%d/status' % self.pid) as f:
            m = re.search(r'^NSpid:\s+(.*)$', f.read(), re.M)
        return [int(x) for x in m.group(1).split()]

    def children(self):
        """{pid: state letter} of ferry's children, seen from here."""
        out = {}
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % d) as f:
                    st = f.read()
            except OSError:
                continue
            # "pid (comm) S ppid ...": comm may hold spaces or ')'
            rest = st[st.rindex(')') + 2:].split()
            if int(rest[1]) == self.pid:
                out[int(d)] = rest[0]
        return out

    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_tail(self, n=25):
        return '\n'.join(self.log_text().splitlines()[-n:])

    def wait_log(self, pattern, timeout=10.0):
        return wait_for(lambda: re.search(pattern, self.log_text(), re.M),
                        timeout, '%r in the log; log:\n%s'
                        % (pattern, self.log_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal ferry itself (PID 1 inside); unshare passes on its exit
        status.  Insists on exit 0 within timeout and a clean log."""
        t0 = time.monotonic()
        os.kill(self.pid, sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            raise TestFailure('ferry as PID 1 did not exit within %.0fs of '
                              'signal %d; log:\n%s'
                              % (timeout * SLOW, sig, self.log_tail()))
        self.proc = None
        check(rc == 0, 'ferry as PID 1 exited %d after signal %d; log:\n%s'
              % (rc, sig, self.log_tail()))
        m = sanitizer_report(self.log_text())
        check(m is None, 'sanitizer report %r:\n%s' % (m, self.log_tail(60)))
        return time.monotonic() - t0

    def cleanup(self, ok):
        if self.proc is not None:
            self.proc.kill()	# unshare: the namespace dies with its init
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()
            self.proc = None
        if ok and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)


def _root_only():
    return None if IS_ROOT else 'skipped: unshare needs root'


def _send(port, body, rcpt='rcpt@example.org'):
    with Conn(port) as c:
        c.hello()
        c.expect('MAIL FROM:<sender@example.test>', 250, '2.1.0')
        c.expect('RCPT TO:<%s>' % rcpt, 250, '2.1.5')
        c.expect('DATA', 354)
        r = c.expect(stuff(body), 250, '2.0.0')
        c.expect('QUIT', 221)
        return r.qid()


def test_container_env_only_relay():
    """No relay.conf anywhere: FERRY_* variables make a working relay
    that, as PID 1, relays a message to the smarthost and exits 0 on
    SIGTERM; check-config names each variable as a value's source, and
    a variable that is no key gets a note there and a warning at
    start."""
    skip = _root_only()
    if skip:
        return skip
    with SmtpPeer() as peer:
        d = Pid1('envonly', {
            'FERRY_SMARTHOST': '[127.0.0.1]:%d' % peer.port,
            'FERRY_SMARTHOST_TLS': 'none',
            'FERRY_RELAY_NETWORKS': '127.0.0.1/32',
            'FERRY_MAX_RECIPIENTS': '3',
            'FERRY_SMARTHSOT': 'typo.example',	# no key: a warning
        })
        ok = False
        try:
            p = d.run('check-config')
            out = p.stdout.decode()
            check(p.returncode == 0, 'check-config as PID 1: exit %d %s'
                  % (p.returncode, short(p.stderr)))
            check(out.startswith('# no configuration file: defaults and '
                                 'FERRY_* variables\n'),
                  'check-config found a file?\n' + out[:400])
            for line in ('smarthost = [127.0.0.1]:%d  # env FERRY_SMARTHOST'
                         % peer.port,
                         'listen_submission =  # env FERRY_LISTEN_SUBMISSION',
                         'max_recipients = 3  # env FERRY_MAX_RECIPIENTS',
                         'queue_lifetime = 5d  # default'):
                check(line in out.splitlines(), 'check-config lacks %r:\n%s'
                      % (line, out[:3000]))

            d.start()
            check(d.nspid()[-1] == 1, 'ferry is not PID 1 inside: NSpid %r'
                  % d.nspid())
            d.wait_log(r'daemon started .*configuration \(none: defaults '
                       r'and environment\)')
            # A typo in a variable's name changed nothing without a
            # word in the log (check-config alone noted it).
            d.wait_log(r'ferry/master\[1\]: warning: FERRY_SMARTHSOT: not '
                       r'a relay\.conf key, ignored$')
            check('# FERRY_SMARTHSOT: not a relay.conf key, ignored'
                  in out.splitlines(), 'check-config:\n' + out[-600:])
            body = b'Subject: from PID 1\r\n\r\nhello from a container\r\n'
            qid = _send(d.port, body)
            check(qid, 'no queue ID')
            got = peer.wait_delivered(1, timeout=15)
            check(got[0].body.endswith(body) and
                  got[0].accepted == ['rcpt@example.org'],
                  'the peer got %r' % got[0])
            d.wait_log(r'\b%s: to=<rcpt@example\.org>, relay=.*status=sent'
                       % qid)
            secs = d.stop(signal.SIGTERM)
            check(secs < 5 * SLOW, 'SIGTERM took %.1fs' % secs)
            check(re.search(r'terminating on signal 15', d.log_text()),
                  'no "terminating on signal 15" line:\n' + d.log_tail())
            ok = True
        finally:
            d.cleanup(ok)


def test_container_syslog_without_dev_log():
    """log = syslog in a container, which has no /dev/log: every line
    went nowhere, a fatal one too.  They go to stderr then, without the
    "<pri>", the way a container's log collector reads them."""
    skip = _root_only()
    if skip:
        return skip
    with SmtpPeer() as peer:
        d = Pid1('nodevlog', {
            'FERRY_LOG': 'syslog',
            'FERRY_SMARTHOST': '[127.0.0.1]:%d' % peer.port,
            'FERRY_SMARTHOST_TLS': 'none',
            'FERRY_RELAY_NETWORKS': '127.0.0.1/32',
        })
        ok = False
        try:
            d.start()
            d.wait_log(r'^\w{3} [ \d]\d \d\d:\d\d:\d\d ferry/master\[1\]: '
                       r'daemon started ')
            qid = _send(d.port, b'Subject: s\r\n\r\nx\r\n')
            peer.wait_delivered(1, timeout=15)
            d.wait_log(r'ferry/smtp\[1\]: %s: to=<rcpt@example\.org>, '
                       r'relay=.*status=sent' % qid)
            check(not re.search(r'^<\d+>', d.log_text(), re.M),
                  'a "<pri>" reached stderr:\n' + d.log_tail())
            d.stop(signal.SIGTERM)
            ok = True
        finally:
            d.cleanup(ok)


def test_container_empty_ferry_config():
    """FERRY_CONFIG set but empty (a Compose file's
    `FERRY_CONFIG: ${FERRY_CONFIG}` with nothing behind it) is the same
    as unset: the default file if there is one, else defaults and
    variables; not "ferry: : cannot open" and exit 78."""
    skip = _root_only()
    if skip:
        return skip
    d = Pid1('emptyconf', {'FERRY_CONFIG': ''})
    ok = False
    try:
        p = d.run('check-config')
        out = p.stdout.decode()
        check(p.returncode == 0, 'check-config, FERRY_CONFIG empty: exit '
              '%d %s' % (p.returncode, short(p.stderr)))
        check(out.startswith('# no configuration file: defaults and '
                             'FERRY_* variables\n'),
              'check-config found a file?\n' + out[:400])
        ok = True
    finally:
        d.cleanup(ok)


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read()
    except OSError:
        return b''


def test_container_pid1_reaps_orphans():
    """Processes orphaned inside the namespace become PID 1's children;
    ferry must reap them when they die (PID 1 has no default actions), and
    SIGINT ends it with exit 0."""
    skip = _root_only()
    if skip:
        return skip
    d = Pid1('reap', {'FERRY_SMARTHOST': '[127.0.0.1]:%d' % free_port(),
                      'FERRY_SMARTHOST_TLS': 'none'})
    ok = False
    try:
        d.start()
        check(d.nspid()[-1] == 1, 'NSpid %r' % d.nspid())
        check(d.children() == {}, 'ferry has children already: %r'
              % d.children())
        # Double fork inside the namespace: sh starts the sleeps in the
        # background and exits, so they are re-parented to PID 1.
        p = subprocess.run(['nsenter', '--target', str(d.pid), '--pid',
                            '--', 'sh', '-c',
                            'exec >/dev/null 2>&1 </dev/null; '
                            'sleep 1 & sleep 1.5 & sleep 2 & exit 0'],
                           capture_output=True, timeout=30)
        check(p.returncode == 0, 'nsenter: %d %s' % (p.returncode,
                                                      short(p.stderr)))
        # A child may be re-parented before it has exec'd sleep (its
        # cmdline is still sh's): wait for three that are sleeps.
        def sleeps():
            k = d.children()
            return k if len(k) == 3 and all(
                _cmdline(pid).startswith(b'sleep\0') for pid in k) else None

        wait_for(sleeps, 5, 'three sleeps re-parented to ferry')
        # once they have exited: none left, not even as a zombie
        time.sleep(2.2)
        wait_for(lambda: not d.children(), 10,
                 'the orphans to be reaped; still there: %r (Z = zombie)'
                 % d.children())
        check(d.proc.poll() is None, 'ferry died; log:\n' + d.log_tail())
        d.stop(signal.SIGINT)
        ok = True
    finally:
        d.cleanup(ok)


def test_container_sighup_rereads_file_and_env():
    """SIGHUP to PID 1 re-reads relay.conf (FERRY_CONFIG) and the
    environment: a changed file value takes effect, and a key set by a
    variable keeps the variable's value after the reload."""
    skip = _root_only()
    if skip:
        return skip
    d = Pid1('hup', {'FERRY_SMARTHOST': '[127.0.0.1]:%d' % free_port(),
                     'FERRY_SMARTHOST_TLS': 'none',
                     'FERRY_MESSAGE_SIZE_LIMIT': '54321'})
    conf = os.path.join(d.dir, 'relay.conf')
    d.env['FERRY_CONFIG'] = conf

    def write(rcpts):
        with open(conf + '.new', 'w') as f:
            f.write('max_recipients = %d\nmessage_size_limit = 99999\n'
                    % rcpts)
        os.chmod(conf + '.new', 0o644)
        os.rename(conf + '.new', conf)

    def rcpt_codes(n):
        with Conn(d.port) as c:
            ehlo = c.hello()
            c.expect('MAIL FROM:<s@example.test>', 250)
            codes = [c.cmd('RCPT TO:<r%d@example.org>' % i).code
                     for i in range(n)]
            c.expect('QUIT', 221)
        return ehlo.text, codes

    ok = False
    try:
        write(5)
        d.start()
        ehlo, codes = rcpt_codes(3)
        check('SIZE 54321' in ehlo, 'the variable should beat the file: '
              '%r' % ehlo)
        check(codes == [250, 250, 250], 'before reload: %r' % codes)
        write(2)
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(r'reload -- version .*configuration %s'
                   % re.escape(conf))
        ehlo, codes = rcpt_codes(3)
        check(codes[:2] == [250, 250] and codes[2] // 100 in (4, 5),
              'after reload with max_recipients = 2: %r' % codes)
        check('SIZE 54321' in ehlo, 'after reload the file won over '
              'FERRY_MESSAGE_SIZE_LIMIT: %r' % ehlo)
        # a file broken on reload keeps the running configuration
        with open(conf, 'a') as f:
            f.write('bogus = 1\n')
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(r'reload: .*relay\.conf:3: bogus: unknown key; keeping')
        check(d.proc.poll() is None, 'ferry died; log:\n' + d.log_tail())
        d.stop(signal.SIGTERM)
        ok = True
    finally:
        d.cleanup(ok)


# --- contrib/docker/Dockerfile, checked without a Docker engine --------

DOCKERFILE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), 'contrib', 'docker',
    'Dockerfile')


def _dockerfile_stages():
    """[(FROM line, [(INSTRUCTION, args text)])], continuations joined."""
    with open(DOCKERFILE) as f:
        text = f.read()
    lines, cur = [], ''
    for raw in text.splitlines():
        if not cur and (raw.lstrip().startswith('#') or not raw.strip()):
            continue
        if raw.lstrip().startswith('#'):
            continue		# a comment inside a continued instruction
        if raw.endswith('\\'):
            cur += raw[:-1] + ' '
            continue
        lines.append(cur + raw)
        cur = ''
    stages = []
    for l in lines:
        ins, _, args = l.strip().partition(' ')
        ins = ins.upper()
        if ins == 'FROM':
            stages.append((args.strip(), []))
        else:
            check(stages, 'instruction before FROM: %r' % l)
            stages[-1][1].append((ins, args.strip()))
    return stages


def _apt_packages(instrs):
    pkgs = []
    for ins, args in instrs:
        if ins != 'RUN':
            continue
        for cmd in args.split('&&'):
            w = cmd.split()
            if w[:2] == ['apt-get', 'install']:
                pkgs += [x for x in w[2:] if not x.startswith('-')]
    return pkgs


def _needed_packages(binary):
    """The Debian packages holding the shared libraries binary needs."""
    p = subprocess.run(['ldd', binary], capture_output=True, timeout=30)
    check(p.returncode == 0, 'ldd %s: %s' % (binary, short(p.stderr)))
    out = set()
    for m in re.finditer(r'=> (/\S+)', p.stdout.decode()):
        path = os.path.realpath(m.group(1))
        q = subprocess.run(['dpkg', '-S', path], capture_output=True)
        if q.returncode != 0:	# /lib vs /usr/lib (merged /usr)
            q = subprocess.run(['dpkg', '-S', path.replace('/usr/lib/',
                                                           '/lib/', 1)],
                               capture_output=True)
        check(q.returncode == 0, 'no package owns %s' % path)
        out.add(q.stdout.decode().split(':')[0])
    return out


def test_container_dockerfile():
    """The Dockerfile's package names exist in apt; the runtime stage has
    every library ./ferry links (libc6 is in the base image) and no -dev
    package; what it copies from the build stage is what `make install
    DESTDIR=... PREFIX=...` (as its build stage runs it) produces; it runs
    as a non-root user with the queue as a volume and FERRY_LOG=stderr;
    and the installed binary accepts the image's environment."""
    stages = _dockerfile_stages()
    check(len(stages) == 2, 'want a build and a runtime stage: %r'
          % [s[0] for s in stages])
    (bfrom, build), (rfrom, run) = stages
    check(bfrom == 'debian:12-slim AS build' and rfrom == 'debian:12-slim',
          'stages: %r, %r' % (bfrom, rfrom))
    bpkgs, rpkgs = _apt_packages(build), _apt_packages(run)
    check('libmbedtls-dev' in bpkgs and 'make' in bpkgs, 'build stage '
          'packages: %r' % bpkgs)
    # one apt-cache call (each one loads the whole cache: seconds)
    p = subprocess.run(['apt-cache', 'show', '--no-all-versions'] + bpkgs +
                       rpkgs, capture_output=True, timeout=120)
    for pkg in bpkgs + rpkgs:
        check(re.search(rb'(?m)^Package: %s$' % re.escape(pkg.encode()),
                        p.stdout), 'apt-cache show: no package %s (exit %d '
              '%s)' % (pkg, p.returncode, short(p.stderr)))
    check(not [x for x in rpkgs if x.endswith('-dev')],
          'a -dev package at run time: %r' % rpkgs)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(DOCKERFILE)))
    # the plain build: the sanitizer one links its runtime libraries too
    need = _needed_packages(os.path.join(repo, 'ferry'))
    missing = need - set(rpkgs) - {'libc6'}
    check(not missing, 'ferry needs %r, not in the runtime stage %r'
          % (sorted(missing), rpkgs))
    check(len(need) >= 5, 'ldd found too few libraries: %r' % need)

    # make install as the build stage runs it
    inst = [a for i, a in build if i == 'RUN' and 'make install' in a]
    check(len(inst) == 1, 'no `make install` in the build stage')
    m = re.search(r'make install DESTDIR=(\S+) PREFIX=(\S+)', inst[0])
    check(m, 'make install without DESTDIR= PREFIX=: %r' % inst[0])
    pkgroot, prefix = m.groups()
    dest = tempfile.mkdtemp(prefix='ferry-docker-')
    ok = False
    try:
        # -o ferry: install what is built, never rebuild it from a test
        p = subprocess.run(['make', '-C', repo, '-o', 'ferry', 'install',
                            'DESTDIR=' + dest, 'PREFIX=' + prefix],
                           capture_output=True, timeout=120)
        check(p.returncode == 0, 'make install: %s %s'
              % (short(p.stdout), short(p.stderr, 800)))
        copies = [a.split() for i, a in run if i == 'COPY']
        check(copies, 'the runtime stage copies nothing')
        for c in copies:
            check(c[0] == '--from=build' and len(c) == 3,
                  'COPY not from the build stage: %r' % c)
            src = c[1]
            if src.startswith(pkgroot + '/'):
                path = os.path.join(dest, src[len(pkgroot) + 1:])
                check(os.path.exists(path), '%s: not made by make install '
                      '(looked for %s)' % (src, path))
            else:		# a file of the build stage's packages
                check(os.path.exists(src) and 'ca-certificates' in bpkgs,
                      '%s: not in the build stage' % src)
        sbin = os.path.join(dest, prefix.lstrip('/'), 'sbin')
        check(any(c[1].rstrip('/') == os.path.join(pkgroot, prefix.lstrip(
            '/'), 'sbin') for c in copies), 'sbin is not copied')
        for link in ('sendmail', 'mailq', 'newaliases'):
            check(os.path.realpath(os.path.join(sbin, link)) ==
                  os.path.join(sbin, 'ferry'), '%s is no link to ferry'
                  % link)

        # what the image says about itself
        instr = {}
        for i, a in run:
            instr.setdefault(i, []).append(a)
        env = {}
        for a in instr.get('ENV', []):
            for k, v in re.findall(r'(\w+)=(\S*)', a):
                env[k] = v
        check(env.get('FERRY_LOG') == 'stderr', 'ENV: %r' % env)
        user = instr.get('USER', ['root'])[-1]
        check(user not in ('root', '0'), 'runs as %s' % user)
        runs = ' '.join(instr['RUN'])
        check(re.search(r'useradd [^&]*\b%s\b' % user, runs),
              'user %s is not created' % user)
        vols = ' '.join(instr.get('VOLUME', []))
        qdir = env.get('FERRY_QUEUE_DIR', '/var/spool/ferry')
        check('"%s"' % qdir in vols, 'queue %s is no VOLUME: %r'
              % (qdir, vols))
        check('25' in ' '.join(instr.get('EXPOSE', [])).split(),
              'EXPOSE: %r' % instr.get('EXPOSE'))
        # ferry serve as PID 1, and `docker run IMAGE check-config` is
        # `ferry check-config` (with serve in the entrypoint it was
        # `ferry serve check-config`: exit 64)
        check(instr.get('ENTRYPOINT') == ['["ferry"]'] and
              instr.get('CMD') == ['["serve"]'],
              'ENTRYPOINT %r, CMD %r' % (instr.get('ENTRYPOINT'),
                                         instr.get('CMD')))
        check(re.search(r'install -d -o %s .*%s' % (user, re.escape(qdir)),
                        runs), 'queue dir not given to %s' % user)

        # the installed binary with the image's environment and no file,
        # as `docker run IMAGE check-config` runs it
        env['PATH'] = os.environ.get('PATH', '/usr/bin:/bin')
        entry = json.loads(instr['ENTRYPOINT'][-1])
        p = subprocess.run([os.path.join(sbin, entry[0])] + entry[1:] +
                           ['check-config'], env=env, capture_output=True,
                           timeout=30)
        out = p.stdout.decode()
        check(p.returncode == 0, 'check-config with the image env: %d %s'
              % (p.returncode, short(p.stderr)))
        check('log = stderr  # env FERRY_LOG' in out.splitlines(),
              'FERRY_LOG not taken:\n' + out[:2000])
        sock = re.search(r'(?m)^local_socket = (\S+)', out).group(1)
        check(re.search(r'install -d -o %s .*%s\b' % (
            user, re.escape(os.path.dirname(sock))), runs),
              '%s (local_socket) is not made writable for %s'
              % (os.path.dirname(sock), user))
        ok = True
    finally:
        if ok:
            shutil.rmtree(dest, ignore_errors=True)


def test_container_mounted_conf_keeps_queue_dir():
    """The image's ENV is only what a mounted relay.conf cannot sensibly
    say (FERRY_LOG=stderr: a container has no syslog): a variable wins
    over the file, so an ENV of the default queue_dir would silently send
    the mail of a relay.conf with `queue_dir = /data/queue` (and a volume
    there) into the image's anonymous volume instead, lost when the
    container is replaced."""
    env = {}
    for ins, args in _dockerfile_stages()[-1][1]:
        if ins == 'ENV':
            env.update(re.findall(r'(\w+)=(\S*)', args))
    check(env.get('FERRY_LOG') == 'stderr', 'ENV: %r' % env)
    d = tempfile.mkdtemp(prefix='ferry-docker-conf-')
    try:
        conf = os.path.join(d, 'relay.conf')
        with open(conf, 'w') as f:
            f.write('queue_dir = /data/queue\nlog = syslog\n')
        env['PATH'] = os.environ.get('PATH', '/usr/bin:/bin')
        env['FERRY_CONFIG'] = conf
        p = subprocess.run([FERRY_BIN, 'check-config'], env=env,
                           capture_output=True, timeout=30 * SLOW)
        out = p.stdout.decode()
        check(p.returncode == 0, 'check-config: %d %s'
              % (p.returncode, short(p.stderr)))
        check('queue_dir = /data/queue  # %s:1' % conf in out.splitlines(),
              'the image overrides relay.conf\'s queue_dir:\n' + out)
        check('log = stderr  # env FERRY_LOG' in out.splitlines(),
              'FERRY_LOG does not win:\n' + out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_container_check_config_value_with_hash():
    """A variable is taken as written, '#' and all (a path such as
    /run/secrets/relay #2.pem), but in relay.conf a '#' first or after a
    blank starts a comment.  check-config printed
    `queue_dir = /data/q #2  # env FERRY_QUEUE_DIR`, which pasted into
    relay.conf is /data/q: another queue, without a word.  Such a line is
    now commented out, whole, under a note saying why; pasted back it
    leaves the key at its default, and every other line reads back as
    it was."""
    d = tempfile.mkdtemp(prefix='ferry-hash-conf-')
    try:
        conf = os.path.join(d, 'relay.conf')
        with open(conf, 'w') as f:
            f.write('queue_dir = /data/q\n')
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
               'FERRY_CONFIG': conf, 'FERRY_QUEUE_DIR': '/data/q #2',
               'FERRY_CA_FILE': '#ca.pem', 'FERRY_ALIASES': '/etc/a#b',
               'FERRY_SMARTHOST': '[127.0.0.1]:2525'}

        def check_config(env):
            p = subprocess.run([FERRY_BIN, 'check-config'], env=env,
                               capture_output=True, timeout=30 * SLOW)
            check(p.returncode == 0, 'check-config: %d %s'
                  % (p.returncode, short(p.stderr)))
            return p.stdout.decode().splitlines()

        def values(lines):
            return dict(l.split('  # ')[0].split(' =', 1) for l in lines
                        if not l.startswith('#'))

        out = check_config(env)
        for key, var in (('queue_dir', 'FERRY_QUEUE_DIR'),
                         ('ca_file', 'FERRY_CA_FILE')):
            line = '#%s = %s' % (key, env[var])
            i = out.index(line) if line in out else 0
            check(i > 0 and out[i - 1] == '# env %s: relay.conf would cut '
                  'this value at its \'#\'; it is all after "= " below' % var,
                  '%s is not commented out under a note:\n%s'
                  % (key, '\n'.join(out)))
            check(not [l for l in out if l.startswith(key + ' ')],
                  'a %s line that reads back cut short:\n%s'
                  % (key, '\n'.join(out)))
        for line in ('aliases = /etc/a#b  # env FERRY_ALIASES',
                     'smarthost = [127.0.0.1]:2525  # env FERRY_SMARTHOST'):
            check(line in out, 'check-config lacks %r:\n%s'
                  % (line, '\n'.join(out)))
        # pasted back as relay.conf, without the variables: those two
        # keys at their defaults, the rest as printed
        with open(conf, 'w') as f:
            f.write('')
        dflt = values(check_config({'PATH': env['PATH'],
                                    'FERRY_CONFIG': conf}))
        with open(conf, 'w') as f:
            f.write('\n'.join(out) + '\n')
        again = check_config({'PATH': env['PATH'], 'FERRY_CONFIG': conf})
        want = values(out)
        want.update(queue_dir=dflt['queue_dir'], ca_file=dflt['ca_file'])
        check(values(again) == want, 'read back:\n%s\nwant %r'
              % ('\n'.join(again), want))
    finally:
        shutil.rmtree(d, ignore_errors=True)
