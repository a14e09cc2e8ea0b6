"""
peers.py - the remote ends of outbound delivery for the integration
tests: Postfix's smtp-sink (a real peer, each transaction dumped to a
file and parsed back) and SmtpPeer, a small scriptable SMTP server of our
own for odd replies (4xx then 2xx, 5xx for one recipient, 421 mid-session,
a reply trickled a byte at a time or one without end: Trickle) that
records every connection, every command, which commands arrived in one
read (PIPELINING), and each transaction's raw DATA bytes.  SmtpPeer
also speaks TLS (STARTTLS or implicit, with any of test/certs, asking for
or requiring a client certificate, or breaking the handshake) and AUTH
PLAIN/LOGIN, and records per session what TLS and AUTH looked like.
Also log helpers for the daemon's delivery lines.  Python 3 stdlib only.
"""

import base64
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time

from ferrytest import (TestFailure, check, free_port, short, IS_ROOT, SLOW)

SMTP_SINK = '/usr/sbin/smtp-sink'
CERTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'certs')


def cert(name):
    """test/certs/NAME (e.g. cert('server.pem'))."""
    return os.path.join(CERTS, name)

# "ID: to=<a@b>, relay=..., delay=0.12, dsn=2.0.0, status=sent (250 ...)"
DELIVERY_RE = re.compile(
    r'\b([0-9A-F]{18}): to=<([^>]*)>, relay=(\S+), delay=(\d+\.\d\d), '
    r'dsn=(\d\.\d{1,3}\.\d{1,3}), status=(\S+(?:, returned to sender)?) '
    r'\((.*)\)$')


def wait_for(pred, timeout, what):
    """Poll pred() until it returns something true; its value.  what may
    be a function, for a message that says how things stood at the end."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure('timed out after %.0fs waiting for %s'
                              % (timeout * SLOW,
                                 what() if callable(what) else what))
        time.sleep(0.05)


class Delivery:
    def __init__(self, m):
        (self.id, self.to, self.relay, self.delay, self.dsn, self.status,
         self.text) = m.groups()

    def __repr__(self):
        return '%s to=<%s> relay=%s dsn=%s status=%s (%s)' % (
            self.id, self.to, self.relay, self.dsn, self.status, self.text)


def deliveries(d, qid=None, status=None):
    """The daemon's per-recipient delivery log lines, parsed."""
    out = []
    for line in d.log_text().splitlines():
        m = DELIVERY_RE.search(line)
        if not m:
            continue
        r = Delivery(m)
        if qid and r.id != qid:
            continue
        if status and not r.status.startswith(status):
            continue
        out.append(r)
    return out


def wait_delivery(d, qid, status, n=1, timeout=10.0):
    """Wait for n log lines of qid with that status; the lines."""
    return wait_for(lambda: (lambda l: l if len(l) >= n else None)(
        deliveries(d, qid, status)), timeout,
        '%d status=%s line(s) for %s; log:\n%s'
        % (n, status, qid, d.log_tail(15)))


def one_delivery(d, qid, status, dsn_re, text_re=None, timeout=10.0):
    """Wait for qid's status line; check its dsn (a regex) and the
    reason text; the line."""
    r = wait_delivery(d, qid, status, timeout=timeout)[-1]
    check(re.fullmatch(dsn_re, r.dsn), 'dsn %r, want %s: %r'
          % (r.dsn, dsn_re, r))
    if text_re:
        check(re.search(text_re, r.text), 'reason %r, want /%s/'
              % (r.text, text_re))
    return r


def wait_removed(d, qid, timeout=10.0):
    wait_for(lambda: re.search(r'\b%s: removed\b' % qid, d.log_text()),
             timeout, '"%s: removed"; log:\n%s' % (qid, d.log_tail(15)))


def bounce_ids(d, qid):
    """Queue IDs of the DSNs the daemon made for qid."""
    return re.findall(r'\b%s: sender non-delivery notification: '
                      r'([0-9A-F]{18})\b' % qid, d.log_text())


def one_bounce(d, qid, timeout=10):
    """The one DSN the daemon made for qid, waiting for its log line (it
    follows the status=bounced line the caller may just have seen)."""
    b = wait_for(lambda: bounce_ids(d, qid), timeout, 'a DSN for %s' % qid)
    check(len(b) == 1, 'DSNs made for %s: %r' % (qid, b))
    return b


def flush(d):
    p = d.cli('flush')
    check(p.returncode == 0, 'ferry flush: exit %d: %s'
          % (p.returncode, p.stderr.decode(errors='replace')))


def crlf_to_lf(b):
    return b.replace(b'\r\n', b'\n')


# --- smtp-sink --------------------------------------------------------

class SinkMessage:
    """One smtp-sink dump: its generated headers, then what came."""

    def __init__(self, path, raw):
        self.path = path
        self.raw = raw
        self.client = None
        self.helo = None
        self.mail = None		# the MAIL command's arguments
        self.rcpts = []			# the RCPT commands' arguments
        lines = raw.split(b'\n')
        i = 0
        while i < len(lines):
            l = lines[i].decode('utf-8', 'replace')
            if l.startswith('X-Client-Addr: '):
                self.client = l[15:]
            elif l.startswith('X-Helo-Args: '):
                self.helo = l[13:]
            elif l.startswith('X-Mail-Args: '):
                self.mail = l[13:]
            elif l.startswith('X-Rcpt-Args: '):
                self.rcpts.append(l[13:])
            elif l.startswith('Received: '):
                break
            elif not l.startswith('X-'):
                raise TestFailure('smtp-sink dump %s: unexpected line %r'
                                  % (path, l))
            i += 1
        # "Received: from", "\tby", "\tdate": then the message, then "".
        check(i + 2 < len(lines) and lines[i + 1].startswith(b'\t') and
              lines[i + 2].startswith(b'\t'),
              'smtp-sink dump %s: no Received: block: %s'
              % (path, short(raw)))
        rest = b'\n'.join(lines[i + 3:])
        check(rest.endswith(b'\n'), 'smtp-sink dump %s: incomplete' % path)
        # the message as LF text, without the empty line sink appends
        self.body = rest[:-1]
        self.rcpt_addrs = [re.match(r'<([^>]*)>', r).group(1)
                           for r in self.rcpts]
        self.sender = re.match(r'<([^>]*)>', self.mail).group(1) \
            if self.mail else None

    def __repr__(self):
        return 'SinkMessage(%s, mail=%r, rcpts=%r, body=%s)' % (
            os.path.basename(self.path), self.mail, self.rcpts,
            short(self.body, 120))


class Sink:
    """Postfix's smtp-sink on addr:port, dumping every transaction."""

    def __init__(self, addr='127.0.0.1', port=None, opts=()):
        self.addr = addr
        self.port = port or free_port()
        self.opts = list(opts)
        self.dir = tempfile.mkdtemp(prefix='ferry-sink-')
        os.chmod(self.dir, 0o755)
        self.dump = os.path.join(self.dir, 'dump')
        os.mkdir(self.dump)
        os.chmod(self.dump, 0o777)	# smtp-sink runs as nobody
        self.proc = None
        self.errf = None

    def start(self):
        check(os.access(SMTP_SINK, os.X_OK), 'no %s (postfix package)'
              % SMTP_SINK)
        cmd = [SMTP_SINK] + (['-u', 'nobody'] if IS_ROOT else []) + \
            ['-d', self.dump + '/%H%M%S.'] + self.opts + \
            ['%s:%d' % (self.addr, self.port), '128']
        self.errf = open(os.path.join(self.dir, 'sink.err'), 'ab')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=self.errf)
        deadline = time.monotonic() + 10 * SLOW
        while True:
            if self.proc.poll() is not None:
                raise TestFailure('smtp-sink %s:%d exited %d: %s'
                                  % (self.addr, self.port,
                                     self.proc.returncode, self.err()))
            try:
                s = socket.create_connection((self.addr, self.port), 2)
                s.close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TestFailure('smtp-sink %s:%d does not accept'
                                      % (self.addr, self.port))
                time.sleep(0.05)

    def err(self):
        try:
            with open(os.path.join(self.dir, 'sink.err'), 'rb') as f:
                return f.read().decode(errors='replace')[-1500:]
        except OSError:
            return ''

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.errf:
            self.errf.close()
            self.errf = None

    def __enter__(self):
        return self.start()

    def __exit__(self, et, *a):
        self.stop()
        if et is None and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def files(self):
        return sorted(os.listdir(self.dump))

    def _open(self):
        """The dump files smtp-sink still has open: it opens one at MAIL
        and closes it just before its 250 to the dot."""
        if self.proc is None:
            return set()
        fd = '/proc/%d/fd' % self.proc.pid
        out = set()
        try:
            names = os.listdir(fd)
        except OSError:
            return out
        for n in names:
            try:
                out.add(os.path.basename(os.readlink(os.path.join(fd, n))))
            except OSError:
                pass
        return out

    def done(self):
        """The files of finished transactions, oldest first.  The names
        first, then what is open: a file made in between (the next
        MAIL) would be in the list and not yet among the open ones."""
        names = self.files()
        busy = self._open()
        return [n for n in names if n not in busy]

    def messages(self):
        out = []
        for name in self.done():
            p = os.path.join(self.dump, name)
            with open(p, 'rb') as f:
                out.append(SinkMessage(p, f.read()))
        return out

    def wait_count(self, n, timeout=10.0):
        """Wait until n transactions are dumped; the messages."""
        wait_for(lambda: len(self.done()) >= n, timeout,
                 lambda: '%d message(s) at smtp-sink %s:%d (has %d)'
                 % (n, self.addr, self.port, len(self.done())))
        return self.messages()


# --- our own scriptable SMTP server -------------------------------------

class Txn:
    def __init__(self, mail):
        self.mail = mail		# MAIL FROM: argument text
        self.rcpts = []			# (address, reply code)
        self.data_code = None
        self.raw = None			# DATA bytes as on the wire
        self.body = None		# unstuffed, CRLF
        self.final = None		# reply code to the final dot

    @property
    def sender(self):
        m = re.match(r'<([^>]*)>', self.mail)
        return m.group(1) if m else None

    @property
    def accepted(self):
        return [a for a, c in self.rcpts if c // 100 == 2]

    def __repr__(self):
        return 'Txn(%r, rcpts=%r, data=%r, final=%r)' % (
            self.mail, self.rcpts, self.data_code, self.final)


class Session:
    def __init__(self, n, peer):
        self.n = n
        self.peer = peer
        self.commands = []		# command lines, in order
        self.batches = []		# command verbs that came in one read
        self.txns = []
        self.closed_by = None		# 'client', 'server'
        # TLS, once the handshake is done (STARTTLS or implicit)
        self.tls = False
        self.tls_version = None		# 'TLSv1.2'
        self.tls_cipher = None
        self.sni = None			# the client's server_name, or None
        self.client_cert = False	# the client presented a certificate
        self.reused = False		# the TLS session was resumed
        self.tls_error = None		# the handshake failed: why
        self.starttls = False		# STARTTLS was said
        self.pipelined_after_starttls = b''
        # AUTH: one dict per attempt: mech, user, password, ok, tls
        self.auths = []
        self.auth_in_clear = False	# any AUTH line before TLS
        self.authenticated = None	# the user, after a 235
        self.ehlo_tls = 0		# EHLOs said inside TLS

    @property
    def mails(self):
        """MAIL commands seen (any transaction, accepted or not)."""
        return [c for c in self.commands if c.upper().startswith('MAIL')]


def _unstuff(raw):
    out = []
    for line in raw.split(b'\r\n')[:-1]:
        out.append(line[1:] if line.startswith(b'.') else line)
    return b''.join(l + b'\r\n' for l in out)


class Trickle:
    """A reply a policy may return to have it sent slowly or without end:
    the bytes of reply (CRLF added unless forever), size at a time and
    pause seconds apart; forever=True sends them over and over, so
    '250-x\r\n' makes a multi-line reply that never has a last line.
    The session goes on after a finite one (reply is then also what the
    peer takes as said) and ends when the client hangs up on it."""

    def __init__(self, reply, pause=0.0, size=1, forever=False):
        self.reply = reply
        self.data = reply.encode() + (b'' if forever else b'\r\n')
        self.pause = pause
        self.size = size
        self.forever = forever

    def send(self, sock):
        while True:
            for i in range(0, len(self.data), self.size):
                sock.sendall(self.data[i:i + self.size])
                time.sleep(self.pause)
            if not self.forever:
                return


class SmtpPeer:
    """A threaded SMTP server on addr:port (an IPv6 addr: '::1').

    policy(session, verb, arg, txn) may return None (the default reply),
    a reply line ('451 4.3.0 later'), '421 ...' (said, then closed), a
    Trickle (sent slowly, or without end), or DROP (close without a
    word).  verb is the upper-case command; '.' is
    the end of data (arg is the unstuffed body).  For 'STARTTLS' and
    'AUTH' a reply from the policy replaces the whole exchange.

    TLS: tls='starttls' offers STARTTLS (until it is on), tls='smtps'
    handshakes before the banner.  certfile/keyfile: the server's chain
    (test/certs/server.pem by default; selfsigned.pem or expired.pem for
    the failures).  client_cert=None, 'ask' or 'require' (against
    test/certs/ca.pem).  tls_break=True answers 220 to STARTTLS and then
    closes instead of handshaking.  One SSL context serves every session,
    so session tickets issued by one resume the next.

    AUTH: auth=(user, password) offers AUTH with auth_mechs; a wrong
    login gets auth_fail_reply.  auth_clear=True (the default) offers AUTH
    before TLS too, so a client that would send a password in clear gets
    the chance to (Session.auth_in_clear records it)."""

    DROP = object()

    def __init__(self, addr='127.0.0.1', port=None, policy=None,
                 ext=('PIPELINING', '8BITMIME', 'SIZE 10000000',
                      'ENHANCEDSTATUSCODES'), name='peer.test',
                 tls=None, certfile=None, keyfile=None, client_cert=None,
                 tls_break=False, auth=None, auth_mechs=('PLAIN', 'LOGIN'),
                 auth_clear=True,
                 auth_fail_reply='535 5.7.8 Error: authentication failed: '
                 'authentication failure'):
        self.addr = addr
        self.port = port or free_port()
        self.policy = policy
        self.ext = list(ext)
        self.name = name
        check(tls in (None, 'starttls', 'smtps'), 'tls=%r' % tls)
        self.tls = tls
        self.tls_break = tls_break
        self.auth = auth
        self.auth_mechs = list(auth_mechs)
        self.auth_clear = auth_clear
        self.auth_fail_reply = auth_fail_reply
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(certfile or cert('server.pem'),
                                     keyfile or cert('server.key'))
            if client_cert:
                self.ctx.load_verify_locations(cert('ca.pem'))
                self.ctx.verify_mode = ssl.CERT_REQUIRED \
                    if client_cert == 'require' else ssl.CERT_OPTIONAL
            self.ctx.sni_callback = self._on_sni
        self._snis = {}			# id(ssl socket) -> server_name
        self.lock = threading.Lock()
        self.sessions = []
        self.errors = []		# protocol violations seen
        self.active = 0			# sessions open now
        self.max_active = 0		# the most at once
        self.server = None
        self.thread = None

    # views -------------------------------------------------------------
    @property
    def connections(self):
        with self.lock:
            return len(self.sessions)

    def txns(self):
        with self.lock:
            return [t for s in self.sessions for t in s.txns]

    def delivered(self):
        """Transactions whose final dot got a 2xx."""
        return [t for t in self.txns() if t.final and t.final // 100 == 2]

    def tls_sessions(self):
        with self.lock:
            return [s for s in self.sessions if s.tls]

    def all_auths(self):
        with self.lock:
            return [a for s in self.sessions for a in s.auths]

    def wait_delivered(self, n, timeout=10.0):
        wait_for(lambda: len(self.delivered()) >= n, timeout,
                 '%d delivered transaction(s) at %s:%d (has %r)'
                 % (n, self.addr, self.port, self.txns()))
        return self.delivered()

    def wait_idle(self, timeout=10.0):
        """Wait until no session is open; then insist that the client
        ended each one with QUIT (or we hung up) and broke no rule."""
        wait_for(lambda: self.active == 0, timeout,
                 'the client to close its connections to %s:%d'
                 % (self.addr, self.port))
        with self.lock:
            bad = [s.commands[-3:] for s in self.sessions
                   if s.closed_by == 'client']
        check(not bad, 'connections closed without QUIT (last commands '
              '%r)' % bad)
        check(self.errors == [], 'protocol errors: %r' % self.errors)

    # life ----------------------------------------------------------------
    def start(self):
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                peer._session(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            address_family = socket.AF_INET6 if ':' in self.addr \
                else socket.AF_INET

        self.server = Server((self.addr, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={'poll_interval': 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False

    # the session -----------------------------------------------------------
    def _session(self, sock):
        sock.settimeout(30)
        with self.lock:
            sess = Session(len(self.sessions), self)
            self.sessions.append(sess)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        sess.sock = sock
        try:
            self._converse(sock, sess)
        finally:
            self._leave(sess)
            # The TLS socket took over the fd from sock, if there is one.
            for so in (sess.sock, sock):
                try:
                    so.close()
                except OSError:
                    pass

    def _leave(self, sess):
        with self.lock:
            if not getattr(sess, 'left', False):
                sess.left = True
                self.active -= 1

    def _on_sni(self, sslobj, name, ctx):
        with self.lock:
            self._snis[id(sslobj)] = name

    def _handshake(self, sock, sess):
        """The server side of a handshake on sock: the TLS socket, or
        None (sess.tls_error says why)."""
        try:
            ss = self.ctx.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sess.tls_error = str(e) or e.__class__.__name__
            return None
        with self.lock:
            sess.sock = ss
            sess.sni = self._snis.pop(id(ss), None)
            sess.tls = True
            sess.tls_version = ss.version()
            sess.tls_cipher = (ss.cipher() or (None,))[0]
            sess.client_cert = ss.getpeercert(binary_form=True) is not None
            sess.reused = ss.session_reused
        return ss

    def _converse(self, sock, sess):
        conn = [sock]		# the TLS socket replaces it

        def say(line):
            if isinstance(line, Trickle):
                line.send(conn[0])
            else:
                conn[0].sendall(line.encode() + b'\r\n')

        def ask(verb, arg, txn):
            if self.policy is None:
                return None
            return self.policy(sess, verb, arg, txn)

        if self.tls == 'smtps':
            conn[0] = self._handshake(sock, sess)
            if conn[0] is None:
                sess.closed_by = 'client'
                return
        r = ask('CONNECT', '', None)
        if r is SmtpPeer.DROP:
            sess.closed_by = 'server'
            return
        try:
            say(r or '220 %s ESMTP test peer' % self.name)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            # gone already (under TLS 1.3 a client that rejects the
            # certificate can close before the server's first write)
            sess.closed_by = 'client'
            return
        if r and r[0] != '2':
            sess.closed_by = 'server'
            return
        buf = b''
        txn = None
        in_data = False
        ehlo = False
        auth = None		# an AUTH dialogue waiting for a response
        try:
            while True:
                try:
                    chunk = conn[0].recv(65536)
                except (ConnectionResetError, socket.timeout,
                        ssl.SSLError):
                    chunk = b''
                if not chunk:
                    sess.closed_by = sess.closed_by or 'client'
                    return
                buf += chunk
                batch = []
                while True:
                    if in_data:
                        probe = b'\r\n' + buf
                        end = probe.find(b'\r\n.\r\n')
                        if end == -1:
                            break
                        raw = probe[2:end + 2]
                        buf = probe[end + 5:]
                        in_data = False
                        txn.raw = raw
                        txn.body = _unstuff(raw)
                        r = ask('.', txn.body, txn) or \
                            '250 2.0.0 Ok: queued as T%d' % len(self.txns())
                        if r is SmtpPeer.DROP:
                            sess.closed_by = 'server'
                            return
                        text = r.reply if isinstance(r, Trickle) else r
                        txn.final = int(text[:3])
                        say(r)
                        # "250 ...\r\n421 ...": a server that closes
                        # right after taking the message.
                        if any(x.startswith('421')
                               for x in text.split('\r\n')):
                            sess.closed_by = 'server'
                            return
                        txn = None
                        continue
                    nl = buf.find(b'\r\n')
                    if nl == -1:
                        if b'\n' in buf:
                            self.errors.append('bare LF in command %r'
                                               % buf[:80])
                            return
                        break
                    line = buf[:nl].decode('utf-8', 'replace')
                    buf = buf[nl + 2:]
                    if auth is not None:
                        # A response inside AUTH, not a command.
                        r = self._auth_step(sess, auth, line)
                        if r[0] != '3':
                            auth = None
                        say(r)
                        continue
                    sess.commands.append(line)
                    verb, _, arg = line.partition(' ')
                    verb = verb.upper()
                    if verb == 'AUTH':
                        batch.append(verb)
                        if not sess.tls:
                            sess.auth_in_clear = True
                        r = ask(verb, arg, None)
                        if r is SmtpPeer.DROP:
                            sess.closed_by = 'server'
                            return
                        if r is None:
                            auth = {'tls': sess.tls}
                            r = self._auth_start(sess, auth, arg)
                            if r[0] != '3':
                                auth = None
                        say(r)
                        continue
                    if verb == 'STARTTLS':
                        batch.append(verb)
                        sess.starttls = True
                        r = ask(verb, arg, None)
                        if r is SmtpPeer.DROP:
                            sess.closed_by = 'server'
                            return
                        if r is None:
                            r = '220 2.0.0 Ready to start TLS' if \
                                self.tls == 'starttls' and not sess.tls \
                                else '502 5.5.1 Error: command not ' \
                                'implemented'
                        say(r)
                        if r[:3] != '220':
                            continue
                        # RFC 3207 4.2: what came behind it is void.
                        sess.pipelined_after_starttls = buf
                        if buf:
                            self.errors.append('pipelined after STARTTLS:'
                                               ' %r' % buf[:80])
                        buf = b''
                        if self.tls_break:
                            sess.closed_by = 'server'
                            return
                        conn[0] = self._handshake(sock, sess)
                        if conn[0] is None:
                            sess.closed_by = 'client'
                            return
                        ehlo = False
                        txn = None
                        continue
                    if verb in ('MAIL', 'RCPT'):
                        verb_arg = arg.split(':', 1)
                        arg = verb_arg[1].strip() if len(verb_arg) == 2 \
                            else arg
                    batch.append(verb)
                    if verb == 'MAIL' and txn is not None:
                        self.errors.append('MAIL inside a transaction')
                    t = Txn(arg) if verb == 'MAIL' else txn
                    if verb == 'MAIL':
                        with self.lock:
                            sess.txns.append(t)
                    r = ask(verb, arg, t)
                    if r is SmtpPeer.DROP:
                        sess.closed_by = 'server'
                        return
                    if r is None:
                        r = self._default(verb, arg, t, ehlo, sess)
                    # A test may script a malformed reply: no code.
                    head = (r.reply if isinstance(r, Trickle) else
                            r).split('\r\n')[-1][:3]
                    code = int(head) if head.isdigit() else 0
                    if verb == 'MAIL':
                        txn = t if code // 100 == 2 else None
                    elif verb == 'RCPT' and t is not None:
                        m = re.match(r'<([^>]*)>', arg)
                        t.rcpts.append((m.group(1) if m else arg, code))
                    elif verb == 'DATA' and t is not None:
                        t.data_code = code
                        if code == 354:
                            in_data = True
                    elif verb in ('EHLO', 'HELO') and code == 250:
                        ehlo = verb == 'EHLO'
                        txn = None
                        if sess.tls:
                            sess.ehlo_tls += 1
                    elif verb == 'RSET':
                        txn = None
                    if code == 421 or verb == 'QUIT':
                        # The client may connect again as soon as it reads
                        # this reply: stop counting this one before it.
                        # The session ended properly even if the client
                        # does not wait for the reply (a TLS 1.3 server
                        # writes its session tickets first, into a socket
                        # the client may have closed).
                        self._leave(sess)
                        sess.closed_by = 'server'
                        say(r)
                        return
                    say(r)
                if batch:
                    with self.lock:
                        sess.batches.append(batch)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            sess.closed_by = sess.closed_by or 'client'

    def _ehlo_ext(self, sess):
        ext = list(self.ext)
        if self.tls == 'starttls' and not sess.tls:
            ext.append('STARTTLS')
        if self.auth and self.auth_mechs and (sess.tls or self.auth_clear):
            ext.append('AUTH ' + ' '.join(self.auth_mechs))
        return ext

    def _auth_start(self, sess, auth, arg):
        """AUTH MECH [initial-response]: the reply; auth is the state
        of the dialogue (mech, what the next 334 asked for)."""
        if not self.auth:
            return '503 5.5.1 Error: authentication not enabled'
        mech, _, ir = arg.partition(' ')
        mech = mech.upper()
        if mech not in self.auth_mechs:
            return '504 5.5.4 Unrecognized authentication type'
        auth['mech'] = mech
        if mech == 'PLAIN':
            auth['want'] = 'plain'
            if ir and ir != '=':
                return self._auth_step(sess, auth, ir)
            return '334 '
        auth['want'] = 'user'
        if ir:
            return self._auth_step(sess, auth, ir)
        return '334 VXNlcm5hbWU6'

    def _auth_step(self, sess, auth, line):
        if line == '*':
            return '501 5.7.0 Authentication aborted'
        try:
            raw = base64.b64decode(line.encode(), validate=True)
        except (ValueError, TypeError):
            return '501 5.5.2 Cannot decode response'
        if auth['want'] == 'plain':
            parts = raw.split(b'\0')
            if len(parts) != 3:
                return '501 5.5.2 Cannot decode response'
            auth['user'] = parts[1].decode('utf-8', 'replace')
            auth['password'] = parts[2].decode('utf-8', 'replace')
        elif auth['want'] == 'user':
            auth['user'] = raw.decode('utf-8', 'replace')
            auth['want'] = 'password'
            return '334 UGFzc3dvcmQ6'
        else:
            auth['password'] = raw.decode('utf-8', 'replace')
        auth['ok'] = (auth['user'], auth['password']) == tuple(self.auth)
        with self.lock:
            sess.auths.append({k: auth.get(k) for k in
                               ('mech', 'user', 'password', 'ok', 'tls')})
        if not auth['ok']:
            return self.auth_fail_reply
        sess.authenticated = auth['user']
        return '235 2.7.0 Authentication successful'

    def _default(self, verb, arg, txn, ehlo, sess=None):
        ext = self._ehlo_ext(sess) if sess is not None else self.ext
        if verb == 'EHLO':
            return '\r\n'.join(['250-' + self.name] +
                               ['250-' + e for e in ext[:-1]] +
                               ['250 ' + (ext[-1] if ext
                                          else 'HELP')]) \
                if ext else '250 ' + self.name
        if verb == 'HELO':
            return '250 ' + self.name
        if verb == 'MAIL':
            if '8BITMIME' not in self.ext and 'BODY=8BITMIME' in \
                    arg.upper():
                self.errors.append('BODY=8BITMIME sent but not offered')
                return '555 5.5.4 BODY=8BITMIME not supported'
            return '250 2.1.0 Ok'
        if verb == 'RCPT':
            return '250 2.1.5 Ok' if txn else '503 5.5.1 need MAIL'
        if verb == 'DATA':
            if txn is None:
                return '503 5.5.1 need MAIL'
            if not txn.accepted:
                return '554 5.5.1 Error: no valid recipients'
            return '354 End data with <CR><LF>.<CR><LF>'
        if verb in ('RSET', 'NOOP'):
            return '250 2.0.0 Ok'
        if verb == 'QUIT':
            return '221 2.0.0 Bye'
        return '502 5.5.2 command not recognized'


def held_at_dot():
    """A policy for SmtpPeer whose first end of data waits for gate (a
    reload or the like happens meanwhile); then 250 and a 421 close, so
    the next message needs a new connection.  Returns (policy, at_dot,
    gate): at_dot is set when the peer has the dot."""
    at_dot, gate = threading.Event(), threading.Event()

    def policy(s, verb, arg, txn):
        if verb == '.':
            at_dot.set()
            gate.wait(20)
            return '250 2.0.0 Ok\r\n421 4.3.2 bye'
        return None
    return policy, at_dot, gate


def bind_probe(addr, port):
    """True when nothing listens on addr:port (a connect is refused)."""
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((addr, port))
        return False
    except OSError:
        return True
    finally:
        s.close()
