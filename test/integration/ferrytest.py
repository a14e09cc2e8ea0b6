"""
ferrytest.py - the integration tests' harness: a private daemon per test
(temp dir, config, free ports, log captured to a file, SIGTERM stop that
must exit 0 with no sanitizer report), raw SMTP dialogue helpers, and
wrappers for the `ferry` commands (mailq --json, cat, delete, sendmail),
and TLS for the tests of issue 4: client contexts trusting test/certs,
STARTTLS and implicit TLS on a Conn, a Daemon with submission/smtps
ports, a certificate of its own and an auth_users file.
Python 3 standard library only.  A failed expectation raises TestFailure
with a message that says what was expected and what came back.
"""

import ctypes
import json
import os
import pwd
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FERRY_BIN = os.path.abspath(os.environ.get('FERRY_BIN')
                            or os.path.join(REPO, 'ferry'))
IS_ROOT = os.geteuid() == 0
HOSTNAME = 'ferry.test'
TRUSTED = '127.0.0.1'
UNTRUSTED = '127.0.0.2'
CERTS = os.path.join(REPO, 'test', 'certs')
CA_PEM = os.path.join(CERTS, 'ca.pem')
QID_RE = re.compile(r'queued as ([0-9A-F]{18})\b')
STATUSES = ('queued', 'deferred', 'sent', 'bounced')

# What a sanitizer (or glibc) writes when something went wrong.
SANITIZER_MARKS = (
    'ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
    'SUMMARY: AddressSanitizer', 'SUMMARY: UndefinedBehaviorSanitizer',
    'runtime error:', 'ERROR: UndefinedBehaviorSanitizer',
    '*** stack smashing detected', 'free(): invalid', 'double free',
    'malloc(): corrupted',
)

_user_bin = None
_user_bin_lock = threading.Lock()


def user_bin():
    """FERRY_BIN as an unprivileged user can run it: a clean clone may sit
    under a 0700 directory (mktemp -d), which `nobody` cannot traverse, so
    the binary is copied once into a 0755 directory of its own."""
    global _user_bin
    with _user_bin_lock:
        if _user_bin is None:
            d = tempfile.mkdtemp(prefix='ferry-bin-')
            os.chmod(d, 0o755)
            dst = os.path.join(d, 'ferry')
            shutil.copy2(FERRY_BIN, dst)
            os.chmod(dst, 0o755)
            _user_bin = dst
        return _user_bin


# Slower under ASan: scale the waits, never the limits under test.
SLOW = 3.0 if '/san/' in FERRY_BIN else 1.0


class TestFailure(Exception):
    pass


# The daemons the current test (thread) made, for failure reports.
_current = threading.local()


def daemons_of_this_test(reset=False):
    if reset or not hasattr(_current, 'daemons'):
        _current.daemons = []
    return _current.daemons


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def short(b, n=300):
    """A printable excerpt of bytes for failure messages."""
    r = repr(b)
    return r if len(r) <= n else r[:n] + '...(%d bytes)' % len(b)


def sanitizer_report(text):
    for m in SANITIZER_MARKS:
        if m in text:
            return m
    return None


def ensure_ferry_user():
    """As root, the daemon drops to user `ferry`: it must exist."""
    if not IS_ROOT:
        return
    try:
        pwd.getpwnam('ferry')
    except KeyError:
        subprocess.run(['useradd', '--system', '--no-create-home',
                        '--shell', '/usr/sbin/nologin', 'ferry'],
                       check=False, capture_output=True)


# Ports handed out in this process; drawn below the kernel's ephemeral
# range (32768-60999) so client sockets never sit on them either.
_ports_used = set()
_ports_lock = threading.Lock()


def free_port():
    with _ports_lock:
        while True:
            port = random.randint(20000, 32000)
            if port in _ports_used:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            finally:
                s.close()
            _ports_used.add(port)
            return port


# --- TLS on the client side ---------------------------------------------

def strace_wrap(calls):
    """Daemon.wrap that records the system calls named (strace's -e
    trace= list, with paths and wall-clock times); None where strace is
    missing or cannot trace here."""
    path = shutil.which('strace')
    if path is None or subprocess.run(
            [path, '-o', '/dev/null', 'true'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode != 0:
        return None
    # LeakSanitizer needs ptrace itself, so it cannot run under strace
    # (the sanitizer build's other tests check leaks).
    asan = os.environ.get('ASAN_OPTIONS', '')
    # --seccomp-bpf (which needs -f) stops the daemon only at the calls
    # traced, not at every one: much less slow under ASan.  -f prefixes
    # each line with the pid: STRACE_LINE_RE takes both off.
    return ['env', 'ASAN_OPTIONS=%s%sdetect_leaks=0'
            % (asan, ':' if asan else ''), path, '-f', '--seccomp-bpf',
            '-qq', '-y', '-ttt', '-s', '200', '-I', '1', '-e', 'signal=none',
            '-e', 'trace=' + calls]


# A line of strace_wrap()'s output: pid, time, then the call.
STRACE_LINE_RE = re.compile(r'^(?:\d+ +)?([\d.]+) (\w+)\((.*)$')


def cert_file(name):
    """test/certs/NAME.pem and NAME.key (see test/certs/make.sh)."""
    return (os.path.join(CERTS, name + '.pem'),
            os.path.join(CERTS, name + '.key'))


def client_context(verify=True, cert=None, max_version=None,
                   min_version=None, ciphers=None):
    """An ssl context for a test client: trusts only test/certs/ca.pem
    (and checks the name: the server certificate names 127.0.0.1) unless
    verify is False; presents test/certs/CERT.pem when cert is given;
    max_version/min_version are ssl.TLSVersion values (TLS 1.2 pinned:
    max_version=ssl.TLSVersion.TLSv1_2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(CA_PEM)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert_file(cert))
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


TLS12 = ssl.TLSVersion.TLSv1_2

_mbedtls_builds = {}


def mbedtls_build(binary=None):
    """(mbedTLS version as a string, whether it has TLS 1.3) for the
    library FERRY_BIN runs with.  Linked dynamically: ldd names the
    libmbedcrypto it loads, and that library answers itself
    (mbedtls_version_get_number(), and mbedtls_version_check_feature()
    for MBEDTLS_SSL_PROTO_TLS1_3: the build option tls.c tests with the
    3.x headers).  Linked statically: the binary holds mbedTLS's TLS 1.3
    suite names (TLS1-3-...) only when that code was built in.  Asked
    once per binary."""
    binary = binary or FERRY_BIN
    if binary in _mbedtls_builds:
        return _mbedtls_builds[binary]
    musl = _musl_loader(binary)
    # musl's loader lists like ldd; glibc's ldd cannot read its binaries.
    p = subprocess.run([musl, '--list', binary] if musl else
                       ['ldd', binary], capture_output=True, text=True,
                       timeout=30)
    m = re.search(r'\blibmbedcrypto\.so\S* => (\S+)', p.stdout)
    if m is not None and musl:
        # A musl library cannot be loaded into this (glibc) python: read
        # its version string, and look for the TLS 1.3 suites in libmbedtls.
        with open(m.group(1), 'rb') as f:
            v = re.search(rb'mbed TLS (\d+\.\d+\.\d+)', f.read())
        t = re.search(r'\blibmbedtls\.so\S* => (\S+)', p.stdout)
        check(v is not None and t is not None, '%s: no mbedTLS version in '
              '%s' % (binary, p.stdout))
        with open(t.group(1), 'rb') as f:
            found = (v.group(1).decode(),
                     b'TLS1-3-AES-128-GCM-SHA256' in f.read())
    elif m is None:
        check('libmbed' not in p.stdout, 'ldd %s: libmbed* not resolved:'
              '\n%s' % (binary, p.stdout))
        with open(binary, 'rb') as f:
            data = f.read()
        check(b'TLS-ECDHE-' in data, '%s: neither linked to mbedTLS nor '
              'holding its suite names' % binary)
        found = 'static', b'TLS1-3-AES-128-GCM-SHA256' in data
    else:
        lib = ctypes.CDLL(m.group(1))
        lib.mbedtls_version_get_number.restype = ctypes.c_uint
        lib.mbedtls_version_check_feature.argtypes = [ctypes.c_char_p]
        lib.mbedtls_version_check_feature.restype = ctypes.c_int
        n = lib.mbedtls_version_get_number()
        # A feature check that must succeed: the table is compiled in.
        check(lib.mbedtls_version_check_feature(b'MBEDTLS_SSL_PROTO_TLS1_2')
              == 0, '%s: cannot list its features' % m.group(1))
        has13 = n >= 0x03000000 and lib.mbedtls_version_check_feature(
            b'MBEDTLS_SSL_PROTO_TLS1_3') == 0
        found = ('%d.%d.%d' % (n >> 24, (n >> 16) & 0xff, (n >> 8) & 0xff),
                 has13)
    _mbedtls_builds[binary] = found
    return found


def _musl_loader(binary):
    """The binary's program interpreter when it is musl's, else None."""
    p = subprocess.run(['readelf', '-l', binary], capture_output=True,
                       text=True, timeout=30)
    m = re.search(r'interpreter: (\S*ld-musl[^\]\s]*)', p.stdout)
    return m.group(1) if m else None


def tls_version_expected(binary=None):
    """The version ferry negotiates with a peer that has no cap:
    'TLSv1.3' exactly when mbedtls_build() says 3.x with TLS 1.3."""
    return 'TLSv1.3' if mbedtls_build(binary)[1] else 'TLSv1.2'


def pem_leaf_der(path):
    """The DER bytes of the first certificate in a PEM file (the leaf)."""
    with open(path) as f:
        text = f.read()
    m = re.search(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----',
                  text, re.S)
    check(m, 'no certificate in %s' % path)
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def cert_sha256(name):
    """SHA-256 of test/certs/NAME.pem's leaf certificate (DER), hex."""
    import hashlib
    return hashlib.sha256(pem_leaf_der(cert_file(name)[0])).hexdigest()


def spki_sha256(name):
    """SHA-256 of the leaf's SubjectPublicKeyInfo (DER), hex, by openssl."""
    import hashlib
    pem = cert_file(name)[0]
    x = subprocess.run(['openssl', 'x509', '-in', pem, '-pubkey', '-noout'],
                       capture_output=True, check=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'],
                         input=x, capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def ferry_owned(path, mode):
    """chmod MODE and, as root, give the file to the daemon's user: the
    daemon re-reads certificates and users on SIGHUP after dropping
    privileges."""
    os.chmod(path, mode)
    if IS_ROOT:
        pw = pwd.getpwnam('ferry')
        os.chown(path, pw.pw_uid, pw.pw_gid)


# --- SMTP replies and a raw client ------------------------------------

class Reply:
    def __init__(self, lines):
        self.lines = lines		# text lines, CRLF removed
        self.code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else -1

    @property
    def text(self):
        return '\n'.join(self.lines)

    def enh(self):
        """Enhanced status code of the last line, or ''."""
        m = re.match(r'\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b', self.lines[-1])
        return m.group(1) if m else ''

    def qid(self):
        m = QID_RE.search(self.lines[-1])
        return m.group(1) if m else None

    def __repr__(self):
        return repr(self.text)


class Conn:
    """A raw SMTP client: bytes out, parsed replies in.  tls: an ssl
    context for implicit TLS (port 465) right after connecting;
    starttls() upgrades a plaintext one."""

    def __init__(self, port, src=None, timeout=10.0, tls=None,
                 server_hostname='127.0.0.1'):
        self.timeout = timeout * SLOW
        self.sock = socket.create_connection(
            ('127.0.0.1', port), timeout=self.timeout,
            source_address=(src, 0) if src else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.eof = False
        self.tls_error = None	# the ssl error that ended the session
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock,
                                            server_hostname=server_hostname)
            except BaseException:
                self.sock.close()
                raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure('timed out waiting for the server '
                              '(buffered %s)' % short(self.buf))
        # Decrypted bytes inside the ssl object do not wake select().
        if not (self.is_tls() and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise TestFailure('timed out waiting for the server '
                                  '(buffered %s)' % short(self.buf))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        except socket.timeout:
            raise TestFailure('timed out in the middle of a TLS record '
                              '(buffered %s)' % short(self.buf))
        except ssl.SSLWantReadError:
            return		# a record not complete yet
        except ssl.SSLError as e:	# an alert or a broken record
            self.tls_error = e
            chunk = b''
        if not chunk:
            self.eof = True
            raise EOFError('connection closed by server')
        self.buf += chunk

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout * SLOW if timeout
                                       else self.timeout)
        while b'\n' not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b'\n', 1)
        check(line.endswith(b'\r'), 'reply line without CRLF: %s'
              % short(line))
        return line[:-1].decode('utf-8', 'replace')

    def reply(self, timeout=None):
        lines = []
        while True:
            line = self.readline(timeout)
            check(len(line) >= 3 and line[:3].isdigit(),
                  'malformed reply line %r' % line)
            lines.append(line)
            if len(line) == 3 or line[3] == ' ':
                return Reply(lines)
            check(line[3] == '-', 'malformed reply line %r' % line)

    def cmd(self, line, timeout=None):
        self.send(line + '\r\n' if isinstance(line, str) else line)
        return self.reply(timeout)

    def expect(self, line, code, enh=None, timeout=None):
        """Send a command (None: just read) and insist on the reply."""
        r = self.cmd(line, timeout) if line is not None \
            else self.reply(timeout)
        what = line if isinstance(line, str) else short(line, 80)
        check(r.code == code, '%s: expected %d%s, got %r'
              % (what, code, ' ' + enh if enh else '', r.text))
        if enh:
            check(r.enh() == enh, '%s: expected enhanced code %s, got %r'
                  % (what, enh, r.text))
        return r

    def wait_closed(self, timeout=5.0):
        """True when the server closes within timeout; data read on the
        way is kept in self.buf."""
        deadline = time.monotonic() + timeout * SLOW
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            return True
        except TestFailure:
            return False

    def replies_until_close(self, timeout=5.0):
        """Every reply until the server closes; fails if it stays open."""
        closed = self.wait_closed(timeout)
        check(closed, 'server did not close the connection; got %s'
              % short(self.buf))
        out, cur = [], []
        for raw in self.buf.split(b'\r\n'):
            if not raw:
                continue
            line = raw.decode('utf-8', 'replace')
            cur.append(line)
            if len(line) < 4 or line[3] != '-':
                out.append(Reply(cur))
                cur = []
        self.buf = b''
        return out

    def hello(self, name='client.test'):
        self.expect(None, 220)
        return self.expect('EHLO ' + name, 250)

    # TLS -----------------------------------------------------------------
    def is_tls(self):
        return isinstance(self.sock, ssl.SSLSocket)

    def starttls(self, ctx=None, server_hostname='127.0.0.1'):
        """STARTTLS (after EHLO), insist on 220 2.0.0 and nothing more
        from the server before the handshake, then do the handshake."""
        self.expect('STARTTLS', 220, '2.0.0')
        self.handshake(ctx, server_hostname)

    def handshake(self, ctx=None, server_hostname='127.0.0.1'):
        check(self.buf == b'', 'the server sent more after its 220 to '
              'STARTTLS, in plaintext: %s' % short(self.buf))
        ctx = ctx or client_context()
        self.sock = ctx.wrap_socket(self.sock,
                                    server_hostname=server_hostname)

    def tls_version(self):
        return self.sock.version() if self.is_tls() else None

    def cipher(self):
        """(OpenSSL name, protocol, secret bits) or None."""
        return self.sock.cipher() if self.is_tls() else None

    def peer_cert_der(self):
        return self.sock.getpeercert(binary_form=True)

    def ehlo_keywords(self, name='client.test'):
        """EHLO; the keywords (upper case, without '250-')."""
        r = self.expect('EHLO ' + name, 250)
        return [l[4:].upper() for l in r.lines[1:]]


def transact(c, body, sender='sender@example.test',
             rcpts=('rcpt@relay.test',)):
    """One transaction on an open session (EHLO done); the queue ID."""
    c.expect('MAIL FROM:<%s>' % sender, 250, '2.1.0')
    for r in rcpts:
        c.expect('RCPT TO:<%s>' % r, 250, '2.1.5')
    c.expect('DATA', 354)
    r = c.expect(stuff(body), 250, '2.0.0')
    check(r.qid(), 'no queue ID in %r' % r.text)
    return r.qid()


def b64(data):
    import base64
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def auth_plain(user, password, authzid=''):
    """The AUTH PLAIN response (RFC 4616), base64."""
    return b64('%s\0%s\0%s' % (authzid, user, password))


def stuff(body):
    """Dot-stuff a CRLF body for the wire (RFC 5321 4.5.2) and end it."""
    check(body.endswith(b'\r\n') or body == b'', 'test body must end CRLF')
    out = []
    for line in body.split(b'\r\n')[:-1] if body else []:
        out.append(b'.' + line if line.startswith(b'.') else line)
    return b''.join(l + b'\r\n' for l in out) + b'.\r\n'


# renameat() with one thing done on the renames that match, for
# Daemon.preload_rename(): a commit that fails, a slow disk, a crash at a
# commit.  Matching and counting come from the SHIM_RENAME_* variables.
RENAME_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL ? v : "";
}

int
renameat(int ofd, const char *old, int nfd, const char *new)
{
	static int (*real)(int, const char *, int, const char *);
	static int n;
	const char *what = env("SHIM_RENAME_DO"), *skip;
	size_t len = strlen(new), sl;
	int nth = atoi(env("SHIM_RENAME_NTH")), rc;
	struct timespec ts = { 0, 15000000 };

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "renameat");
	skip = env("SHIM_RENAME_SKIP");
	sl = strlen(skip);
	if (strstr(old, env("SHIM_RENAME_OLD")) == NULL ||
	    strncmp(new, env("SHIM_RENAME_NEW"),
	    strlen(env("SHIM_RENAME_NEW"))) != 0 ||
	    (sl > 0 && len >= sl && strcmp(new + len - sl, skip) == 0) ||
	    (++n != nth && nth != 0))
		return real(ofd, old, nfd, new);
	if (strcmp(what, "fail") == 0) {
		errno = EIO;
		return -1;
	}
	if (strcmp(what, "sleep") == 0)
		nanosleep(&ts, NULL);
	rc = real(ofd, old, nfd, new);
	if (rc == 0 && strcmp(what, "kill") == 0)
		kill(getpid(), SIGKILL);
	return rc;
}
"""


# --- the daemon ---------------------------------------------------------

class Daemon:
    """One private ferry: its own dir, config, ports and log.

    TLS and AUTH (issue 4), all off by default:
      tls=True         tls_cert/tls_key: a copy of test/certs/server.pem
                       (tls='rsa': rsa.pem) in the daemon's dir, owned by
                       its user (set_cert() replaces it)
      submission=True  listen_submission on a free port (sub_port)
      smtps=True       listen_smtps on a free port (smtps_port)
      users={u: pw}    auth_users made with `ferry passwd` (set_users())
    The config keys themselves can still be given as **cfg."""

    def __init__(self, name, tls=False, submission=False, smtps=False,
                 users=None, **cfg):
        ensure_ferry_user()
        self.name = name
        daemons_of_this_test().append(self)
        self.dir = tempfile.mkdtemp(prefix='ferry-%s-' % name)
        # The daemon's user and `nobody` must be able to traverse it.
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, 'relay.conf')
        self.log_path = os.path.join(self.dir, 'daemon.log')
        self.queue_dir = os.path.join(self.dir, 'queue')
        self.port = free_port()
        self.port_fixed = 'listen_smtp' in cfg
        self.cfg = {
            'hostname': HOSTNAME,
            'listen_smtp': '127.0.0.1:%d' % self.port,
            'listen_submission': '',
            'local_socket': os.path.join(self.dir, 'submit.sock'),
            'queue_dir': self.queue_dir,
            'log': 'stderr',
            'relay_networks': '127.0.0.1/32',
            'relay_domains': 'relay.test',
            'message_size_limit': '100000',
            'max_recipients': '5',
            'max_connections': '20',
            'max_connections_per_client': '10',
            'smtpd_timeout': '30s',
            'smtpd_data_timeout': '60s',
            # Deliveries go nowhere and defer, so queued mail stays put.
            'smarthost': '[127.0.0.1]:%d' % free_port(),
            # The scripted peers speak plaintext; smarthost_tls's default
            # (encrypt) would defer everything with 4.7.4.  TLS client
            # tests set their level explicitly.
            'smarthost_tls': 'none',
        }
        self.sub_port = self.smtps_port = None
        if submission:
            self.sub_port = free_port()
            self.cfg['listen_submission'] = '127.0.0.1:%d' % self.sub_port
        if smtps:
            self.smtps_port = free_port()
            self.cfg['listen_smtps'] = '127.0.0.1:%d' % self.smtps_port
        if tls:
            self.set_cert('server' if tls is True else tls, write=False)
        if users is not None:
            self.set_users(users, write=False)
        self.cfg.update(cfg)
        self.proc = None
        self.exits = []		# return codes of stopped daemons
        self.wrap = []		# e.g. ['strace', ...]: runs FERRY_BIN
        self.env = None		# the daemon's environment, if not ours
        self.write_config()

    def preload(self, source, **env):
        """Runs the daemon with a shim built from the C source in
        LD_PRELOAD (a library call made to fail), plus env."""
        self.env = dict(os.environ, **self.shim_env(source, 'shim'), **env)

    def shim_env(self, source, name):
        """Builds DIR/NAME.so from the C source; the environment that
        preloads it (for the daemon, or for one command via cli(env=))."""
        src = os.path.join(self.dir, name + '.c')
        so = os.path.join(self.dir, name + '.so')
        with open(src, 'w') as f:
            f.write(source)
        p = subprocess.run(['cc', '-shared', '-fPIC', '-o', so, src],
                           capture_output=True, text=True)
        check(p.returncode == 0, 'cannot build the shim: %s' % p.stderr)
        # ASan wants to come first; the shim only has to come before
        # the library it stands in for.
        asan = os.environ.get('ASAN_OPTIONS', '')
        return dict(LD_PRELOAD=so, ASAN_OPTIONS='%s%sverify_asan_link_order=0'
                    % (asan, ':' if asan else ''))

    def preload_rename(self, action, nth=0, old='', new='', skip=''):
        """Runs the daemon with RENAME_SHIM: on the nth renameat() (0:
        each) whose old name contains old, whose new name starts with new
        and does not end in skip, action: 'fail' (EIO, not renamed),
        'sleep' (15 ms first) or 'kill' (SIGKILL once renamed)."""
        self.preload(RENAME_SHIM, SHIM_RENAME_DO=action,
                     SHIM_RENAME_NTH=str(nth), SHIM_RENAME_OLD=old,
                     SHIM_RENAME_NEW=new, SHIM_RENAME_SKIP=skip)

    # TLS and AUTH files --------------------------------------------------
    def set_cert(self, name, write=True):
        """tls_cert/tls_key = a copy of test/certs/NAME.pem/.key in the
        daemon's dir, readable by its user (for SIGHUP); the copies are
        replaced by rename, so a running daemon sees whole files."""
        tdir = os.path.join(self.dir, 'tls')
        os.makedirs(tdir, mode=0o755, exist_ok=True)
        pem, key = cert_file(name)
        for src, dst in ((pem, 'cert.pem'), (key, 'cert.key')):
            tmp = os.path.join(tdir, dst + '.new')
            shutil.copyfile(src, tmp)
            ferry_owned(tmp, 0o600)
            os.rename(tmp, os.path.join(tdir, dst))
        self.cfg['tls_cert'] = os.path.join(tdir, 'cert.pem')
        self.cfg['tls_key'] = os.path.join(tdir, 'cert.key')
        if write:
            self.write_config()

    def set_users(self, users, mode=0o640, write=True):
        """auth_users: one `ferry passwd USER` line per user (the password
        on its stdin), the file root:ferry MODE, so the daemon can read
        it again after the privilege drop."""
        lines = []
        for u, pw in users.items():
            p = subprocess.run([FERRY_BIN, 'passwd', u],
                               input=(pw + '\n').encode(),
                               capture_output=True, timeout=60 * SLOW)
            check(p.returncode == 0 and p.stdout.startswith(
                u.encode() + b':$argon2id$'),
                  '`ferry passwd %s` exit %d: %s %s' % (
                      u, p.returncode, short(p.stdout),
                      p.stderr.decode(errors='replace')))
            lines.append(p.stdout.decode().strip())
        path = os.path.join(self.dir, 'users')
        with open(path + '.new', 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.chmod(path + '.new', mode)
        if IS_ROOT:
            os.chown(path + '.new', 0, pwd.getpwnam('ferry').pw_gid)
        os.rename(path + '.new', path)
        self.cfg['auth_users'] = path
        if write:
            self.write_config()
        return path

    # config ------------------------------------------------------------
    def config_text(self, cfg=None, extra=''):
        cfg = self.cfg if cfg is None else cfg
        lines = ['# written by ferrytest for %s' % self.name]
        lines += ['%s = %s' % (k, v) for k, v in cfg.items()]
        return '\n'.join(lines) + '\n' + extra

    def write_config(self, cfg=None, extra=''):
        with open(self.conf + '.new', 'w') as f:
            f.write(self.config_text(cfg, extra))
        os.chmod(self.conf + '.new', 0o644)
        os.rename(self.conf + '.new', self.conf)

    # life cycle ----------------------------------------------------------
    def start(self, wait=True):
        for attempt in range(3):
            logf = open(self.log_path, 'ab')
            self.proc = subprocess.Popen(
                self.wrap + [FERRY_BIN, '-c', self.conf, 'serve'],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=self.env)
            logf.close()
            if not wait:
                return self
            # A probe answered by someone else's daemon on a clashing
            # port does not count: ours must still be running.
            if self.wait_ready() and self.proc.poll() is None:
                return self
            rc = self.proc.poll()
            if rc is not None and not self.port_fixed and \
                    'in use' in self.log_text():
                # Someone took our port between free_port() and bind.
                self.port = free_port()
                self.cfg['listen_smtp'] = '127.0.0.1:%d' % self.port
                if self.sub_port:
                    self.sub_port = free_port()
                    self.cfg['listen_submission'] = '127.0.0.1:%d' \
                        % self.sub_port
                if self.smtps_port:
                    self.smtps_port = free_port()
                    self.cfg['listen_smtps'] = '127.0.0.1:%d' \
                        % self.smtps_port
                self.write_config()
                continue
            break
        raise TestFailure('daemon did not become ready (rc %r); log:\n%s'
                          % (self.proc.poll(), self.log_tail()))

    def wait_ready(self, timeout=10.0):
        """Ready = the port accepts and greets; the probe says QUIT and
        waits for the close so it no longer counts as a connection."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with Conn(self.port, timeout=5) as c:
                    r = c.reply()
                    if r.code != 220:
                        return False
                    c.send('QUIT\r\n')
                    c.wait_closed(5)
                return True
            except (OSError, EOFError, TestFailure):
                time.sleep(0.05)
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        """The daemon's pid: with a wrapper, the wrapper's one child."""
        return self._pid_of(self.proc)

    def _pid_of(self, p):
        if not self.wrap:
            return p.pid
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/task/%d/children' % (p.pid, p.pid)) as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            if len(kids) == 1:
                return int(kids[0])
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise TestFailure('%s started no daemon' % self.wrap[0])

    def _signal(self, p, sig):
        """sig to the daemon of Popen p (not to its wrapper: strace
        would detach and leave the daemon running)."""
        if self.wrap:
            os.kill(self._pid_of(p), sig)
        else:
            p.send_signal(sig)

    def _kill(self, p):
        if self.wrap and p.poll() is None:
            try:
                self._signal(p, signal.SIGKILL)
            except (TestFailure, ProcessLookupError):
                pass
        p.kill()
        p.wait()

    def signal(self, sig):
        self._signal(self.proc, sig)

    def stop(self, timeout=15.0):
        """SIGTERM; insist on exit 0 and a clean log."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            self._signal(p, signal.SIGTERM)
        try:
            rc = p.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self._kill(p)
            raise TestFailure('daemon did not exit within %ds of SIGTERM'
                              % timeout)
        self.exits.append(rc)
        check(rc == 0, 'daemon exited %d after SIGTERM; log:\n%s'
              % (rc, self.log_tail()))
        self.check_log()

    def wait_exit(self, timeout=15.0):
        p, self.proc = self.proc, None
        try:
            rc = p.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self._kill(p)
            raise TestFailure('daemon did not exit within %ds' % timeout)
        self.exits.append(rc)
        return rc

    def kill9(self):
        p, self.proc = self.proc, None
        self._kill(p)

    def cleanup(self, ok=True):
        if self.proc is not None:
            self._kill(self.proc)
            self.proc = None
        if ok and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            if et is None:
                self.stop()
            else:
                if self.proc is not None and self.proc.poll() is None:
                    self.stop_quiet()
        finally:
            self.cleanup(ok=et is None)
        return False

    def stop_quiet(self):
        try:
            self.stop()
        except TestFailure:
            pass

    # log -------------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_tail(self, n=25):
        return '\n'.join(self.log_text().splitlines()[-n:])

    def check_log(self):
        m = sanitizer_report(self.log_text())
        check(m is None, 'sanitizer/libc report (%r) in daemon log:\n%s'
              % (m, self.log_tail(60)))

    def wait_log(self, pattern, timeout=5.0, flags=re.M):
        """The first match of the regex pattern in the log, waiting up to
        timeout; fails with the log's tail."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            m = re.search(pattern, self.log_text(), flags)
            if m:
                return m
            if time.monotonic() > deadline:
                raise TestFailure('no log line like %r within %.0fs; log:\n%s'
                                  % (pattern, timeout * SLOW,
                                     self.log_tail(30)))
            time.sleep(0.05)

    # connections ---------------------------------------------------------
    def connect(self, src=None, timeout=10.0, port=None, tls=None):
        """A Conn to port (default listen_smtp); tls: implicit TLS with
        that ssl context."""
        return Conn(port or self.port, src=src, timeout=timeout, tls=tls)

    def connect_smtps(self, src=None, ctx=None, timeout=10.0):
        return Conn(self.smtps_port, src=src, timeout=timeout,
                    tls=ctx or client_context())

    def tls_session(self, port=None, src=None, ctx=None, name='client.test'):
        """Greeting, EHLO, then TLS (STARTTLS, or implicit on the smtps
        port) and EHLO again; returns (conn, EHLO keywords after TLS)."""
        port = port or self.port
        if port == self.smtps_port:
            c = self.connect_smtps(src, ctx)
            c.expect(None, 220)
        else:
            c = self.connect(src, port=port)
            try:
                c.hello(name)
                c.starttls(ctx)
            except BaseException:
                c.close()
                raise
        return c, c.ehlo_keywords(name)

    def session(self, src=None):
        c = self.connect(src)
        c.hello()
        return c

    def send_message(self, body, sender='sender@example.test',
                     rcpts=('rcpt@relay.test',), src=None, quit=True):
        """One plain (unpipelined) transaction; returns the queue ID.
        quit=False: no QUIT after the 250 (the daemon may be killed
        while the client would wait for its 221)."""
        with self.session(src) as c:
            c.expect('MAIL FROM:<%s>' % sender, 250, '2.1.0')
            for r in rcpts:
                c.expect('RCPT TO:<%s>' % r, 250, '2.1.5')
            c.expect('DATA', 354)
            r = c.expect(stuff(body), 250, '2.0.0')
            qid = r.qid()
            check(qid, 'no queue ID in %r' % r.text)
            if quit:
                c.expect('QUIT', 221)
            return qid

    # commands --------------------------------------------------------------
    def cli(self, *args, input=None, user=None, env=None, use_env=False,
            timeout=60):
        """Run `ferry -c CONF args...` (or with FERRY_CONFIG when use_env
        or user is set) and return the CompletedProcess (bytes)."""
        e = dict(os.environ)
        if env:
            e.update(env)
        if use_env or user:
            cmd = [user_bin() if user else FERRY_BIN] + list(args)
            e['FERRY_CONFIG'] = self.conf
        else:
            cmd = [FERRY_BIN, '-c', self.conf] + list(args)
        if user and IS_ROOT:
            cmd = ['runuser', '-u', user, '--', 'env',
                   'FERRY_CONFIG=' + self.conf] + cmd
        if isinstance(input, str):
            input = input.encode()
        try:
            p = subprocess.run(cmd, input=input, capture_output=True,
                               env=e, timeout=timeout * SLOW, cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise TestFailure('`ferry %s` did not exit within %ds'
                              % (' '.join(args), timeout * SLOW))
        m = sanitizer_report(p.stderr.decode('utf-8', 'replace'))
        check(m is None, 'sanitizer report (%r) from `ferry %s`:\n%s'
              % (m, ' '.join(args), p.stderr.decode('utf-8', 'replace')
                 [-3000:]))
        return p

    def mailq(self, maildrop=False):
        """mailq --json, schema-checked; a list of dicts: the queue's
        messages, and with maildrop=True also what maildrop/ holds."""
        p = self.cli('mailq', '--json')
        check(p.returncode == 0, 'mailq --json exit %d: %s'
              % (p.returncode, p.stderr.decode(errors='replace')))
        try:
            q = json.loads(p.stdout.decode('utf-8'))
        except ValueError as e:
            raise TestFailure('mailq --json is not JSON (%s): %s'
                              % (e, short(p.stdout)))
        check(isinstance(q, list), 'mailq --json: not an array')
        for m in q:
            for k in ('id', 'queue_name', 'sender', 'size', 'arrival',
                      'next_attempt', 'recipients'):
                check(k in m, 'mailq --json: entry lacks %r: %r' % (k, m))
            check(re.fullmatch(r'[0-9A-F]{18}', str(m['id'])),
                  'mailq --json: bad id %r' % m['id'])
            check(isinstance(m['recipients'], list) and m['recipients'],
                  'mailq --json: no recipients in %r' % m)
            for r in m['recipients']:
                check('address' in r and 'status' in r and 'reason' in r,
                      'mailq --json: bad recipient %r' % r)
                check(r['status'] in STATUSES,
                      'mailq --json: bad status %r' % r['status'])
            check(m['queue_name'] == ('deferred' if m['next_attempt'] else
                                      'active') or
                  m['queue_name'] == 'maildrop' and m['next_attempt'] == 0,
                  'mailq --json: queue_name %r' % m)
        return q if maildrop else [m for m in q
                                   if m['queue_name'] != 'maildrop']

    def mailq_ids(self):
        return [m['id'] for m in self.mailq()]

    def assert_empty(self, why=''):
        q = self.mailq()
        check(q == [], 'queue should be empty%s, has %s'
              % (' (' + why + ')' if why else '',
                 [(m['id'], m['sender']) for m in q]))

    def wait_queue(self, n, timeout=5.0):
        """Poll mailq until it lists n messages."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            q = self.mailq()
            if len(q) == n or time.monotonic() > deadline:
                return q
            time.sleep(0.1)

    def cat(self, qid):
        p = self.cli('cat', qid)
        check(p.returncode == 0, 'ferry cat %s: exit %d: %s'
              % (qid, p.returncode, p.stderr.decode(errors='replace')))
        return p.stdout

    def assert_submitted(self, qid, body, sender=None):
        """As assert_stored, for a submitted message (local socket, AUTH)
        that lacked Date and Message-ID, and From with sender given:
        ferry adds them where its header ends, and logs the new
        Message-ID.  Returns it."""
        head, _, rest = body.partition(b'\r\n\r\n')
        pat = (re.escape(head + b'\r\n') +
               (b'From: <%s>\r\n' % re.escape(sender.encode())
                if sender else b'') +
               b'Date: [A-Z][a-z]{2}, \\d\\d [A-Z][a-z]{2} \\d{4} '
               b'\\d\\d:\\d\\d:\\d\\d [-+]\\d{4}\r\n'
               b'Message-ID: (<[0-9A-F]+\\.[0-9a-f]{16}@%s>)\r\n\r\n'
               % re.escape(HOSTNAME.encode()) + re.escape(rest))
        out = self.cat(qid)
        m = re.search(pat + b'\\Z', out)
        check(m and out.startswith(b'Received: '), 'stored message %s: '
              'not the sent one with Date and Message-ID added:\n'
              'sent   %s\nstored %s' % (qid, short(body, 600),
                                      short(out, 900)))
        msgid = m.group(1).decode()
        self.wait_log(r'%s: message-id=%s$' % (qid, re.escape(msgid)))
        return msgid

    def assert_stored(self, qid, body):
        """The stored message is exactly one (folded) Received: header
        followed by body, byte for byte."""
        out = self.cat(qid)
        check(out.endswith(body),
              'stored message %s does not end with the sent body:\n'
              'sent   %s\nstored %s' % (qid, short(body, 600),
                                      short(out, 900)))
        head = out[:len(out) - len(body)]
        check(head.startswith(b'Received: ') and head.endswith(b'\r\n'),
              'stored %s: expected one Received: header before the body, '
              'got %s' % (qid, short(head)))
        for cont in head[:-2].split(b'\r\n')[1:]:
            check(cont[:1] in (b' ', b'\t'),
                  'stored %s: more than one header added: %s'
                  % (qid, short(head)))
        return out

    def corrupt_files(self):
        d = os.path.join(self.queue_dir, 'corrupt')
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


def run_as_nobody_ok():
    return IS_ROOT


def serial(fn):
    """Mark a test that must run alone (heavy I/O or timing)."""
    fn.serial = True
    return fn


def crash_test(fn):
    """Mark the kill -9 test (skippable with --skip-crash)."""
    fn.crash = True
    fn.serial = True
    return fn
