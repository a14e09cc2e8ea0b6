"""
test_halfclose.py - clients that say everything at once and shut their
write side (shutdown(SHUT_WR)) before reading a reply: in clear text and
inside TLS (the whole batch in one record, then close_notify, then the
FIN).  What was said before the close counts: the replies still come
and a complete message is queued (Postfix does the same); half a command
after it is lost with the connection, at once.
"""

import socket
import ssl
import select
import time

from ferrytest import (Daemon, check, stuff, short, client_context, SLOW,
                       QID_RE)
from peers import Sink, wait_for, wait_delivery, wait_removed

BODY = (b'From: a@example.test\r\nTo: b@relay.test\r\n'
        b'Subject: half close\r\n\r\nfirst line\r\n.dot\r\n')
BATCH = (b'MAIL FROM:<s@example.test>\r\nRCPT TO:<r@relay.test>\r\n'
         b'DATA\r\n' + stuff(BODY))


def _tls_daemon(name, **cfg):
    return Daemon(name, tls=True, submission=True, smtps=True, **cfg)


def _codes(raw):
    """The reply codes of the last lines of multi-line replies."""
    out = []
    for line in raw.split(b'\r\n'):
        if len(line) >= 4 and line[3:4] == b' ' or len(line) == 3:
            out.append(int(line[:3]))
    return out


def _read_to_eof(sock, timeout=10.0):
    deadline = time.monotonic() + timeout * SLOW
    data = b''
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, 'reset'
        if not chunk:
            return data, 'eof'
        data += chunk
    return data, 'timeout'


class _MemTLS:
    """A TLS client over memory BIOs: records are built here and sent
    when and how the test says (several commands in one record, then
    close_notify and the FIN in one go)."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out,
                                server_hostname='127.0.0.1')
        self.plain = b''
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pump(self, timeout=10.0):
        self._flush()
        r, _, _ = select.select([self.sock], [], [], timeout * SLOW)
        check(r, 'TLS: the server said nothing')
        chunk = self.sock.recv(65536)
        if not chunk:
            self.inc.write_eof()
        else:
            self.inc.write(chunk)
        return bool(chunk)

    def write(self, data):
        self.obj.write(data)	# one record up to 16 KB

    def close_notify_and_fin(self):
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        try:
            self._flush()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass	# the server was quicker: it closed already

    def read_to_eof(self, timeout=10.0):
        """Plaintext until the server closes (close_notify or FIN)."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            try:
                d = self.obj.read(65536)
                if not d:
                    return self.plain, 'eof'
                self.plain += d
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return self.plain, 'eof'
            except ssl.SSLError as e:
                return self.plain, 'tls error %s' % e
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return self.plain, 'reset'
            if not chunk:
                self.inc.write_eof()
                try:
                    self.plain += self.obj.read(65536)
                except ssl.SSLError:
                    pass
                return self.plain, 'eof'
            self.inc.write(chunk)
        return self.plain, 'timeout'

    def readline(self, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while b'\r\n' not in self.plain:
            check(time.monotonic() < deadline, 'TLS: no reply line: %s'
                  % short(self.plain))
            try:
                self.plain += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            check(self._pump(), 'TLS: closed: %s' % short(self.plain))
        line, self.plain = self.plain.split(b'\r\n', 1)
        return line


def _ehlo_reply(readline, what):
    """Read a whole EHLO reply; every line must be 250."""
    while True:
        line = readline()
        check(line.startswith(b'250'), '%s: %r' % (what, line))
        if line[3:4] == b' ':
            return


def _starttls(d, port=None):
    s = socket.create_connection(('127.0.0.1', port or d.port),
                                 timeout=10 * SLOW)
    f = s.makefile('rb')
    check(f.readline().startswith(b'220'), 'no banner')
    s.sendall(b'EHLO client.test\r\n')
    _ehlo_reply(f.readline, 'EHLO')
    s.sendall(b'STARTTLS\r\n')
    check(f.readline().startswith(b'220'), 'STARTTLS refused')
    f.close()
    t = _MemTLS(s, client_context(max_version=ssl.TLSVersion.TLSv1_2))
    t.write(b'EHLO client.test\r\n')
    _ehlo_reply(t.readline, 'EHLO in TLS')
    return s, t


def _check_queued(d, raw, what, want):
    codes = _codes(raw)
    check(codes == want, '%s: replies %r, want %r: %s'
          % (what, codes, want, short(raw)))
    q = d.mailq()
    check(len(q) == 1, '%s: mailq %r' % (what, q))
    d.assert_stored(q[0]['id'], BODY)


def test_halfclose_quit_gets_221():
    with Daemon('hc-quit') as d:
        s = socket.create_connection(('127.0.0.1', d.port), timeout=10)
        with s:
            s.sendall(b'EHLO client.test\r\nQUIT\r\n')
            s.shutdown(socket.SHUT_WR)
            raw, how = _read_to_eof(s)
        codes = _codes(raw)
        check(how == 'eof' and codes == [220, 250, 221],
              'QUIT then SHUT_WR: %s %r: %s' % (how, codes, short(raw)))
        d.wait_log(r'disconnect from .* quit=1 commands=2$')


def test_halfclose_plain_transaction():
    """The whole transaction, the dot, QUIT and the FIN in one go; and
    the same without the QUIT (the message still counts)."""
    for quit in (b'QUIT\r\n', b''):
        with Daemon('hc-plain') as d:
            s = socket.create_connection(('127.0.0.1', d.port), timeout=10)
            with s:
                s.sendall(b'EHLO client.test\r\n' + BATCH + quit)
                s.shutdown(socket.SHUT_WR)
                raw, how = _read_to_eof(s)
            check(how == 'eof', 'plain, quit=%r: %s' % (quit, how))
            _check_queued(d, raw, 'plain quit=%r' % quit,
                          [220, 250, 250, 250, 354, 250] +
                          ([221] if quit else []))


def test_halfclose_tls_transaction():
    """Inside TLS: the batch in one record, close_notify and the FIN
    right behind it, before any reply is read."""
    for quit in (b'QUIT\r\n', b''):
        with _tls_daemon('hc-tls') as d:
            s, t = _starttls(d)
            with s:
                t.write(BATCH + quit)
                t.close_notify_and_fin()
                raw, how = t.read_to_eof()
            check(how == 'eof', 'TLS, quit=%r: %s: %s'
                  % (quit, how, short(raw)))
            _check_queued(d, raw, 'TLS quit=%r' % quit,
                          [250, 250, 354, 250] +
                          ([221] if quit else []))


def test_halfclose_auth_pipelined():
    """AUTH (its Argon2 check runs off the loop: reading pauses) and the
    transaction behind it in one record, then close_notify and the FIN:
    every reply comes, the message is queued once.  A close told while
    the AUTH check holds the session waits for it (io.c tells it again
    on resume), not taken as a lost connection."""
    from ferrytest import auth_plain
    from test_auth import USER, PASSWORD, auth_daemon
    with auth_daemon('hc-auth') as d:
        s, t = _starttls(d, d.sub_port)
        with s:
            t.write(b'AUTH PLAIN ' + auth_plain(USER, PASSWORD).encode() +
                    b'\r\n' + BATCH + b'QUIT\r\n')
            t.close_notify_and_fin()
            raw, how = t.read_to_eof()
        check(how == 'eof' and _codes(raw) == [235, 250, 250, 354, 250,
                                               221],
              'AUTH batch: %s: %s' % (how, short(raw)))
        # Submission adds Date: and Message-ID:, so not assert_stored().
        q = d.mailq()
        check(len(q) == 1 and d.cli('cat', q[0]['id']).stdout.endswith(
              b'\r\n\r\nfirst line\r\n.dot\r\n'), 'queued: %r' % q)


LOST = 'lost connection after END-OF-MESSAGE from unknown[127.0.0.1]'


def test_halfclose_half_line_after_commit():
    """The dot, "NOOP" without its CRLF and the close in one go, so the
    close waits behind the commit (reading paused) and half a line: the
    250, then the session ends at once as without the pause, not after
    smtpd_timeout (20 s); the message is relayed once.  In clear, then
    inside STARTTLS (close_notify and the FIN)."""
    with Sink() as sink, _tls_daemon(
            'hc-half', smtpd_timeout='20s',
            smarthost='[127.0.0.1]:%d' % sink.port) as d:
        for n, tls in enumerate((False, True)):
            if tls:
                s, t = _starttls(d)
                t.write(BATCH + b'NOOP')
                t0 = time.monotonic()
                t.close_notify_and_fin()
                raw, how = t.read_to_eof(3.0)
                want = [250, 250, 354, 250]
            else:
                s = socket.create_connection(('127.0.0.1', d.port),
                                             timeout=10)
                # Corked: the FIN rides on the last data segment, so
                # the close is there to read with the batch.
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                s.sendall(b'EHLO client.test\r\n' + BATCH + b'NOOP')
                t0 = time.monotonic()
                s.shutdown(socket.SHUT_WR)
                raw, how = _read_to_eof(s, 3.0)
                want = [220, 250, 250, 250, 354, 250]
            took = time.monotonic() - t0
            s.close()
            what = 'TLS' if tls else 'plain'
            check(how == 'eof' and _codes(raw) == want,
                  '%s: %s after %.1fs, replies %r: %s'
                  % (what, how, took, _codes(raw), short(raw)))
            wait_for(lambda: d.log_text().count(LOST) == n + 1, 5,
                     lambda: '%s: %d "%s"; log:\n%s'
                     % (what, n + 1, LOST, d.log_tail(10)))
            qid = QID_RE.search(raw.decode()).group(1)
            wait_delivery(d, qid, 'sent')
            wait_removed(d, qid)
            msgs = sink.wait_count(n + 1)
            check(len(msgs) == n + 1 and
                  msgs[n].body.endswith(BODY.replace(b'\r\n', b'\n')),
                  '%s: at the sink: %r' % (what, msgs))
        check(d.log_text().count(' status=sent ') == 2, 'log:\n%s'
              % d.log_tail(20))
        d.check_log()


def test_halfclose_tls_quit_only():
    with _tls_daemon('hc-tlsq') as d:
        s, t = _starttls(d)
        with s:
            t.write(b'NOOP\r\nQUIT\r\n')
            t.close_notify_and_fin()
            raw, how = t.read_to_eof()
        codes = _codes(raw)
        check(how == 'eof' and codes == [250, 221],
              'TLS QUIT then close_notify+FIN: %s %r: %s'
              % (how, codes, short(raw)))


def _stream(t, data, want_lines, timeout=60.0):
    """Send the ciphertext of data as the socket takes it while reading
    replies; the plaintext lines read once want_lines have come."""
    t.write(data)
    blob = t.out.read()
    t.sock.setblocking(False)
    deadline = time.monotonic() + timeout * SLOW
    got = b''
    while got.count(b'\r\n') < want_lines:
        check(time.monotonic() < deadline, 'stalled after %d of %d '
              'replies, %d bytes unsent' % (got.count(b'\r\n'),
                                            want_lines, len(blob)))
        r, w, _ = select.select([t.sock], [t.sock] if blob else [], [], 1)
        if w:
            try:
                n = t.sock.send(blob[:65536])
                blob = blob[n:]
            except BlockingIOError:
                pass
        if r:
            chunk = t.sock.recv(4096)
            check(chunk, 'closed after %d replies: %s'
                  % (got.count(b'\r\n'), short(got[-200:])))
            t.inc.write(chunk)
            while True:
                try:
                    d = t.obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                check(d, 'close_notify after %d replies: %s'
                      % (got.count(b'\r\n'), short(got[-200:])))
                got += d
    t.sock.setblocking(True)
    return got.split(b'\r\n')[:want_lines]


def test_tls_blocked_writes_keep_order():
    """Thousands of pipelined commands inside TLS to a client that reads
    slowly (small receive buffer): the server's TLS writes block again
    and again (mbedTLS must get the same bytes back) and its reading
    stops and starts; every reply must come, whole and in order."""
    with _tls_daemon('hc-tlsblk') as d:
        s, t = _starttls(d)
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # EHLO: a long reply and no junk count (NOOP and RSET
            # are junk past 100); 87 to a 4 KB read, 11 KB of replies.
            n = 1500
            t.write(b'EHLO client.test\r\n')
            ehlo = []
            while not ehlo or ehlo[-1][3:4] != b' ':
                ehlo.append(t.readline())
            name = b'c' * 36 + b'.test'
            cmds = b'EHLO %s\r\n' % name * n
            lines = _stream(t, cmds, n * len(ehlo))
            bad = [i for i, l in enumerate(lines)
                   if l != ehlo[i % len(ehlo)]]
            check(not bad, '%d bad replies, first %d: %r'
                  % (len(bad), bad[0], lines[bad[0]]) if bad else '')
            t.write(b'QUIT\r\n')
            check(t.readline().startswith(b'221'), 'no 221')
        d.check_log()


def test_many_sessions_end_in_one_batch():
    """Sessions ending together land in one epoll batch: 30 plain ones
    that say QUIT and shut their write side, 30 that reset, 30 that
    close in the middle of a TLS handshake (smtps), all let go at once;
    no sanitizer report and the daemon still serves."""
    import struct
    with Daemon('hc-batch', tls=True, smtps=True, max_connections='100') as d:
        socks = []
        for i in range(30):	# 90 sessions: under the 100 cap
            src = ('127.0.1.%d' % (i + 1), 0)	# under the per-client cap
            a = socket.create_connection(('127.0.0.1', d.port), 10, src)
            b = socket.create_connection(('127.0.0.1', d.port), 10, src)
            h = socket.create_connection(('127.0.0.1', d.smtps_port), 10,
                                         src)
            socks.append((a, b, h))
        time.sleep(0.5 * SLOW)	# every banner out, handshakes waiting
        for a, b, h in socks:
            a.sendall(b'EHLO x.test\r\nQUIT\r\n')
            try:
                a.shutdown(socket.SHUT_WR)
            except OSError:
                pass	# the server was quicker and closed already
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack('ii', 1, 0))
            b.sendall(b'NOOP\r\n')
            b.close()		# RST
            h.sendall(b'\x16\x03\x01\x00\x40' + b'\x01' * 20)
            h.close()		# a ClientHello cut short
        for a, _, _ in socks:
            raw, how = _read_to_eof(a)
            check(how == 'eof' and _codes(raw)[-1:] == [221],
                  'QUIT+SHUT_WR in a crowd: %s %s' % (how, short(raw)))
            a.close()
        with d.session() as c:
            c.expect('QUIT', 221)
        d.check_log()
