"""
test_dns.py - dns.c against a real DNS server: a private unbound
(test/dns-server.sh) serving a zone under `test.`, queried through the
test driver test/dnsq.c (binary from $FERRY_DNSQ, else build/native/dnsq,
or build/native/san/dnsq when FERRY_BIN is the sanitizer build).  Covers
MX order and shuffling, A fallback (no MX), null MX, NXDOMAIN, SERVFAIL,
REFUSED, a CNAME'd MX target, IPv6 before IPv4, cancel, many lookups at
once, server failover and c-ares's retry timer against a silent server;
TLSA lookups (_PORT._tcp.HOST, CNAMEs, NODATA, NXDOMAIN, SERVFAIL) from
the same unbound (unsigned: secure=0 there), and, against a scripted
server, that every query asks for DNSSEC status (AD bit, EDNS0 DO) and
that an answer's AD bit becomes secure=1 (and stays 0 with dnssec = no).

DnsServer is usable from other tests: `with DnsServer(ZONE) as dns:` then
`dns_servers = 127.0.0.1:%d` % dns.port in the daemon's config.
"""

import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time

from ferrytest import (Daemon, TestFailure, check, free_port,
                       sanitizer_report, short, FERRY_BIN, REPO, SLOW)

SERVER_SH = os.path.join(REPO, 'test', 'dns-server.sh')


def _dnsq_path():
    env = os.environ.get('FERRY_DNSQ')
    if env:
        return os.path.abspath(env)
    san = os.path.join(REPO, 'build', 'native', 'san', 'dnsq')
    if '/san/' in FERRY_BIN and os.access(san, os.X_OK):
        return san
    return os.path.join(REPO, 'build', 'native', 'dnsq')


DNSQ = _dnsq_path()

# unbound's local-data syntax, as dns-server.sh takes it.
ZONE = '''
# MX in preference order, listed out of order
local-data: "a.test. MX 20 mx2.a.test."
local-data: "a.test. MX 10 mx1.a.test."
local-data: "a.test. MX 30 mx3.a.test."
local-data: "mx1.a.test. A 127.0.0.2"
local-data: "mx2.a.test. A 127.0.0.3"
local-data: "mx2.a.test. AAAA ::1"
local-data: "mx3.a.test. AAAA ::1"
# equal preferences
local-data: "eq.test. MX 10 x.eq.test."
local-data: "eq.test. MX 10 y.eq.test."
local-data: "eq.test. MX 5 z.eq.test."
# no MX, an A: the caller falls back to the domain's address
local-data: "nomx.test. A 127.0.0.4"
# RFC 7505 null MX
local-data: "null.test. MX 0 ."
# a CNAME'd MX target
local-data: "cn.test. MX 10 alias.cn.test."
local-data: "alias.cn.test. CNAME real.cn.test."
local-data: "real.cn.test. A 127.0.0.5"
local-data: "real.cn.test. AAAA ::1"
# a name that exists with other data only
local-data: "txt.test. TXT \\"no mail here\\""
'''

# TLSA records (RFC 6698), in the zone syntax unbound takes.
TLSA_311 = '8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1'
TLSA_201 = 'a9b0d0b1b2a4ab1e5f2e4b1c3d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'
TLSA_302 = ('00112233445566778899aabbccddeeff' * 4)
TLSA_ZONE = '''
local-data: "_25._tcp.mx.d.test. TLSA 3 1 1 %(t311)s"
local-data: "_25._tcp.mx.d.test. TLSA 2 0 1 %(t201)s"
local-data: "_25._tcp.mx.d.test. TLSA 3 0 2 %(t302)s"
local-data: "mx.d.test. A 127.0.0.7"
local-data: "_587._tcp.mx.d.test. TLSA 3 1 1 %(t201)s"
# RFC 7672 §2.2.2: a TLSA name that is a CNAME
local-data: "_25._tcp.mx.e.test. CNAME _25._tcp.tlsa.d.test."
local-data: "_25._tcp.tlsa.d.test. TLSA 3 1 1 %(t311)s"
# more than fits in 1232 octets of UDP: TC, then TCP; a record of any
# length comes back whole (a full certificate is often over 1100)
local-data: "_25._tcp.big.d.test. TLSA 3 0 0 %(big1)s"
local-data: "_25._tcp.big.d.test. TLSA 3 0 0 %(big2)s"
local-data: "_25._tcp.big.d.test. TLSA 3 0 0 %(big3)s"
local-data: "_25._tcp.big.d.test. TLSA 3 0 0 %(huge)s"
# the name exists (an A), no TLSA under it
local-data: "_25._tcp.notlsa.d.test. A 127.0.0.8"
''' % {'t311': TLSA_311, 't201': TLSA_201, 't302': TLSA_302,
       'big1': '01' * 600, 'big2': '02' * 600, 'big3': '03' * 600,
       'huge': '04' * 1200}

# Many addresses of each family: dns.c keeps DNS_MAX_ADDR (16), half each.
MANY = ''.join('local-data: "many.test. A 127.0.1.%d"\n' % i
               for i in range(1, 21)) + \
    ''.join('local-data: "many.test. AAAA ::ffff:127.0.2.%d"\n' % i
            for i in range(1, 21))


class DnsServer:
    """A private unbound on 127.0.0.1:port for the life of a with-block."""

    def __init__(self, zone):
        self.dir = tempfile.mkdtemp(prefix='ferry-dns-')
        self.zone = os.path.join(self.dir, 'zone.conf')
        with open(self.zone, 'w') as f:
            f.write(zone)
        self.port = None

    def __enter__(self):
        err = ''
        for _ in range(3):	# another test may take the port first
            port = free_port()
            p = subprocess.run(['sh', SERVER_SH, 'start', self.dir,
                                str(port), self.zone],
                               capture_output=True, timeout=30)
            if p.returncode == 0:
                self.port = port
                return self
            err = p.stderr.decode(errors='replace')
        raise TestFailure('dns-server.sh start failed: %s' % err[-1500:])

    def __exit__(self, *a):
        subprocess.run(['sh', SERVER_SH, 'stop', self.dir],
                       capture_output=True, timeout=30)
        if a[0] is None and not os.environ.get('FERRY_KEEP'):
            subprocess.run(['rm', '-rf', self.dir])

    @property
    def server(self):
        return '127.0.0.1:%d' % self.port


def dnsq(args, servers, timeout=60):
    """Run the driver; its stdout lines.  It must exit 0, clean."""
    check(os.access(DNSQ, os.X_OK), 'no executable %s (the Makefile rule '
          'for test/dnsq.c, or FERRY_DNSQ)' % DNSQ)
    cmd = [DNSQ]
    for s in servers:
        cmd += ['-s', s]
    p = subprocess.run(cmd + list(args), capture_output=True,
                       timeout=timeout * SLOW)
    out = p.stdout.decode(errors='replace')
    err = p.stderr.decode(errors='replace')
    bad = sanitizer_report(err)
    check(bad is None, 'dnsq %s: %s in stderr: %s' % (args, bad, err[-2000:]))
    check(p.returncode == 0, 'dnsq %s: exit %d, stdout %s, stderr %s' % (
        args, p.returncode, short(p.stdout, 800), short(p.stderr, 800)))
    return out.splitlines()


def one(dns, *args):
    lines = dnsq(args, [dns.server])
    check(len(lines) == 1, 'dnsq %s: expected one line, got %r'
          % (args, lines))
    return lines[0]


def expect(dns, args, want):
    got = one(dns, *args)
    check(got == want, 'dnsq %s: expected %r, got %r' % (' '.join(args),
                                                         want, got))


def test_dns_mx_preference_order():
    with DnsServer(ZONE) as dns:
        expect(dns, ['mx', 'a.test'],
               'OK secure=0 10 mx1.a.test 20 mx2.a.test 30 mx3.a.test')
        # a trailing dot is the same name
        expect(dns, ['mx', 'a.test.'],
               'OK secure=0 10 mx1.a.test 20 mx2.a.test 30 mx3.a.test')


def test_dns_mx_equal_preference_shuffled():
    runs = 40
    with DnsServer(ZONE) as dns:
        lines = dnsq(['mx', 'eq.test'] * runs, [dns.server])
        check(len(lines) == runs, 'expected %d lines, got %r'
              % (runs, lines))
        xy = 'OK secure=0 5 z.eq.test 10 x.eq.test 10 y.eq.test'
        yx = 'OK secure=0 5 z.eq.test 10 y.eq.test 10 x.eq.test'
        for l in lines:
            check(l in (xy, yx), 'unexpected answer %r' % l)
        # 2^-39 to fail by chance
        check(xy in lines and yx in lines,
              'equal preferences always in one order: %r' % lines[:4])


def test_dns_no_mx_a_fallback():
    with DnsServer(ZONE) as dns:
        expect(dns, ['mx', 'nomx.test'], 'NODATA secure=0')
        expect(dns, ['addr', 'nomx.test'], 'OK secure=0 127.0.0.4')
        # exists, but neither MX nor address
        expect(dns, ['mx', 'txt.test'], 'NODATA secure=0')
        expect(dns, ['addr', 'txt.test'], 'NODATA secure=0')


def test_dns_null_mx():
    with DnsServer(ZONE) as dns:
        expect(dns, ['mx', 'null.test'], 'NULLMX secure=0')


def test_dns_nxdomain():
    with DnsServer(ZONE) as dns:
        expect(dns, ['mx', 'nosuch.test'], 'NXDOMAIN secure=0')
        expect(dns, ['addr', 'nosuch.test'], 'NXDOMAIN secure=0')
        expect(dns, ['mx', 'deeper.nosuch.a.test'], 'NXDOMAIN secure=0')
        # a label over 63 octets cannot exist: answered without a query
        expect(dns, ['mx', 'x' * 64 + '.test'], 'NXDOMAIN secure=0')


def test_dns_servfail_refused_tempfail():
    with DnsServer(ZONE) as dns:
        t0 = time.monotonic()
        expect(dns, ['mx', 'x.servfail.test'], 'TEMPFAIL secure=0')
        expect(dns, ['addr', 'x.servfail.test'], 'TEMPFAIL secure=0')
        expect(dns, ['mx', 'refused.test'], 'TEMPFAIL secure=0')
        expect(dns, ['addr', 'a.refused.test'], 'TEMPFAIL secure=0')
        # outside test.: the server answers SERVFAIL, asks nobody
        expect(dns, ['mx', 'example.org'], 'TEMPFAIL secure=0')
        took = time.monotonic() - t0
        # answered by the server, not by c-ares timing out (2 s a try)
        check(took < 2.0 * SLOW, 'SERVFAIL/REFUSED took %.1fs' % took)


def test_dns_cname_mx_target():
    with DnsServer(ZONE) as dns:
        expect(dns, ['mx', 'cn.test'], 'OK secure=0 10 alias.cn.test')
        expect(dns, ['addr', 'alias.cn.test'], 'OK secure=0 ::1 127.0.0.5')


def test_dns_addr_ipv6_first():
    with DnsServer(ZONE + MANY) as dns:
        expect(dns, ['addr', 'mx2.a.test'], 'OK secure=0 ::1 127.0.0.3')
        expect(dns, ['addr', 'mx3.a.test'], 'OK secure=0 ::1')
        expect(dns, ['addr', 'mx1.a.test'], 'OK secure=0 127.0.0.2')
        got = one(dns, 'addr', 'many.test').split()
        check(got[:2] == ['OK', 'secure=0'], 'many.test: %r' % got)
        addrs = got[2:]
        check(len(addrs) == 16, 'many.test: 16 addresses expected, %r'
              % addrs)
        v6 = [a for a in addrs if ':' in a]
        check(len(v6) == 8 and addrs[:8] == v6,
              'many.test: 8 IPv6 first, then 8 IPv4: %r' % addrs)
        check(all(a.startswith('127.0.1.') for a in addrs[8:]),
              'many.test: %r' % addrs)


def test_dns_cancel():
    with DnsServer(ZONE) as dns:
        # dnsq exits non-zero if a cancelled lookup ever calls back
        lines = dnsq(['cancel-mx', 'a.test', 'cancel-addr', 'mx2.a.test',
                      'mx', 'a.test', 'cancel-mx', 'nosuch.test',
                      'addr', 'mx2.a.test'], [dns.server])
        check(lines == ['CANCELLED a.test', 'CANCELLED mx2.a.test',
                        'OK secure=0 10 mx1.a.test 20 mx2.a.test '
                        '30 mx3.a.test', 'CANCELLED nosuch.test',
                        'OK secure=0 ::1 127.0.0.3'],
              'cancel: %r' % lines)


def test_dns_many_at_once():
    names = ['a.test', 'eq.test', 'nomx.test', 'null.test', 'cn.test',
             'nosuch.test', 'x.servfail.test'] * 30
    want = {'a.test': 'OK', 'eq.test': 'OK', 'nomx.test': 'NODATA',
            'null.test': 'NULLMX', 'cn.test': 'OK', 'nosuch.test':
            'NXDOMAIN', 'x.servfail.test': 'TEMPFAIL'}
    args = []
    for n in names:
        args += ['mx', n]
    with DnsServer(ZONE) as dns:
        t0 = time.monotonic()
        lines = dnsq(['-p'] + args, [dns.server])
        took = time.monotonic() - t0
    check(len(lines) == len(names), '%d lines for %d lookups'
          % (len(lines), len(names)))
    for l in lines:
        name, _, rest = l.partition(': ')
        check(rest.split(' ')[0] == want.get(name),
              'parallel: %r, expected %s' % (l, want.get(name)))
    check(took < 5.0 * SLOW, '%d parallel lookups took %.1fs'
          % (len(names), took))


def test_dns_server_failover():
    dead = free_port()	# nothing listens: ICMP port unreachable
    with DnsServer(ZONE) as dns:
        lines = dnsq(['mx', 'a.test'], ['127.0.0.1:%d' % dead, dns.server])
        check(lines == ['OK secure=0 10 mx1.a.test 20 mx2.a.test '
                        '30 mx3.a.test'], 'failover: %r' % lines)
    lines = dnsq(['mx', 'a.test', 'addr', 'a.test'],
                 ['127.0.0.1:%d' % dead])
    check(lines == ['TEMPFAIL secure=0'] * 2, 'dead server: %r' % lines)


class SilentServer:
    """A UDP socket that reads DNS queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                self.sock.recvfrom(4096)
                self.count += 1
            except socket.timeout:
                pass

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def test_dns_silent_server_timer():
    """c-ares's retries are driven by the loop timer: a silent first
    server is given up after its first try (2 s), the second answers;
    a silent only server ends in TEMPFAIL after the 3 tries."""
    s = SilentServer()
    try:
        with DnsServer(ZONE) as dns:
            t0 = time.monotonic()
            lines = dnsq(['mx', 'a.test'],
                         ['127.0.0.1:%d' % s.port, dns.server])
            took = time.monotonic() - t0
        check(lines == ['OK secure=0 10 mx1.a.test 20 mx2.a.test '
                        '30 mx3.a.test'], 'silent, then live: %r' % lines)
        check(1.5 < took < 6 * SLOW, 'silent, then live took %.1fs' % took)
        check(s.count == 1, 'silent server saw %d queries' % s.count)

        s.count = 0
        t0 = time.monotonic()
        lines = dnsq(['mx', 'a.test'], ['127.0.0.1:%d' % s.port])
        took = time.monotonic() - t0
        check(lines == ['TEMPFAIL secure=0'], 'silent only: %r' % lines)
        # 2 + 4 + 8 s
        check(12 < took < 20 * SLOW, 'silent only took %.1fs' % took)
        check(s.count == 3, 'silent server saw %d tries' % s.count)
    finally:
        s.close()


def tlsa_records(line):
    """'OK secure=0 3 1 1 ab.. bad: 2 0 1 cd..' -> ('OK secure=0', sorted
    list of 'U S M hex' and 'bad:hex'): unbound may rotate an RRset."""
    w = line.split()
    recs, i = [], 2
    while i < len(w):
        n = 1 if w[i].startswith('bad:') else 4
        recs.append(' '.join(w[i:i + n]))
        i += n
    return ' '.join(w[:2]), sorted(recs)


def test_dns_tlsa():
    with DnsServer(ZONE + TLSA_ZONE) as dns:
        head, recs = tlsa_records(one(dns, 'tlsa', 'mx.d.test', '25'))
        check(head == 'OK secure=0', 'tlsa mx.d.test 25: %r' % head)
        check(recs == sorted(['3 1 1 ' + TLSA_311, '2 0 1 ' + TLSA_201,
                              '3 0 2 ' + TLSA_302]),
              'tlsa mx.d.test 25: %r' % recs)
        # the port is part of the name; a trailing dot is the same host
        expect(dns, ['tlsa', 'mx.d.test.', '587'],
               'OK secure=0 3 1 1 ' + TLSA_201)
        # a CNAME'd TLSA name is followed by the resolver
        expect(dns, ['tlsa', 'mx.e.test', '25'],
               'OK secure=0 3 1 1 ' + TLSA_311)
        head, recs = tlsa_records(one(dns, 'tlsa', 'big.d.test', '25'))
        check(head == 'OK secure=0', 'tlsa big.d.test 25: %r' % head)
        check(recs == sorted(['3 0 0 ' + '%02x' % i * 600 for i in (1, 2, 3)]
                             + ['3 0 0 ' + '04' * 1200]),
              'tlsa big.d.test 25: %r'
              % [r[:20] for r in recs])
        expect(dns, ['tlsa', 'notlsa.d.test', '25'], 'NODATA secure=0')
        expect(dns, ['tlsa', 'mx.d.test', '465'], 'NXDOMAIN secure=0')
        expect(dns, ['tlsa', 'x.servfail.test', '25'], 'TEMPFAIL secure=0')
        expect(dns, ['tlsa', 'refused.test', '25'], 'TEMPFAIL secure=0')
        # too long once _25._tcp. is put in front: no query, NXDOMAIN
        long_host = '.'.join(['a' * 60] * 4) + '.test'
        expect(dns, ['tlsa', long_host, '25'], 'NXDOMAIN secure=0')
        # cancelled lookups never call back; the others in parallel
        lines = dnsq(['-p', 'cancel-tlsa', 'mx.d.test', '25',
                      'tlsa', 'mx.d.test', '587', 'mx', 'a.test'],
                     [dns.server])
        check(sorted(lines) == sorted([
            'CANCELLED mx.d.test',
            'mx.d.test: OK secure=0 3 1 1 ' + TLSA_201,
            'a.test: OK secure=0 10 mx1.a.test 20 mx2.a.test 30 mx3.a.test']),
            'tlsa in parallel: %r' % lines)


# --- a scripted server: what the queries ask, what AD turns into -------

DNS_AD = 0x20
DNS_DO = 0x8000
T_A, T_MX, T_AAAA, T_OPT, T_TLSA = 1, 15, 28, 41, 52


class AdServer:
    """UDP DNS server answering every query with the AD bit set (a
    validating resolver's "secure"), recording for each query its type,
    AD bit, and its OPT record's DO bit and payload size (None: no OPT).
    Answers: MX 10 mx.ad.test, A 127.0.0.9, AAAA NODATA, TLSA 3 1 1
    (tlsa of them, the first TLSA_311).  No TCP."""

    def __init__(self, tlsa=1):
        self.tlsa = tlsa
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    @staticmethod
    def skip_name(pkt, off):
        while pkt[off] != 0:
            check(pkt[off] < 64, 'query with a compressed name')
            off += 1 + pkt[off]
        return off + 1

    def answer(self, pkt):
        qend = self.skip_name(pkt, 12)
        qtype = struct.unpack('!H', pkt[qend:qend + 2])[0]
        qend += 4
        arcount = struct.unpack('!H', pkt[10:12])[0]
        do = size = None
        off = qend
        for _ in range(arcount):
            off = self.skip_name(pkt, off)
            rtype, rclass, ttl, rdlen = struct.unpack(
                '!HHIH', pkt[off:off + 10])
            if rtype == T_OPT:
                do, size = bool(ttl & DNS_DO), rclass
            off += 10 + rdlen
        self.queries.append({'type': qtype, 'ad': bool(pkt[3] & DNS_AD),
                             'do': do, 'size': size, 'len': len(pkt),
                             'end': off})
        if qtype == T_MX:
            rrs = [(T_MX, struct.pack('!H', 10) + b'\x02mx\x02ad\x04test\x00')]
        elif qtype == T_A:
            rrs = [(T_A, bytes([127, 0, 0, 9]))]
        elif qtype == T_TLSA:
            rrs = [(T_TLSA, bytes([3, 1, 1]) + bytes.fromhex(TLSA_311))]
            rrs += [(T_TLSA, bytes([3, 1, 1, i]) * 8)
                    for i in range(1, self.tlsa)]
        else:
            rrs = []
        head = pkt[0:2] + bytes([0x80 | (pkt[2] & 0x01), 0x80 | DNS_AD]) \
            + struct.pack('!HHHH', 1, len(rrs), 0, 0)
        body = pkt[12:qend]
        for t, rd in rrs:
            body += struct.pack('!HHHIH', 0xc00c, t, 1, 60, len(rd)) + rd
        return head + body

    def run(self):
        while not self.stop:
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            try:
                self.sock.sendto(self.answer(pkt), peer)
            except (IndexError, struct.error, TestFailure) as e:
                self.queries.append({'error': repr(e)})

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def test_dns_queries_ask_dnssec():
    s = AdServer()
    try:
        server = ['127.0.0.1:%d' % s.port]
        lines = dnsq(['mx', 'ad.test', 'addr', 'mx.ad.test',
                      'tlsa', 'mx.ad.test', '25'], server)
        check(lines == ['OK secure=1 10 mx.ad.test',
                        'OK secure=1 127.0.0.9',
                        'OK secure=1 3 1 1 ' + TLSA_311],
              'AD answers: %r' % lines)
        qs = s.queries
        check(sorted(q.get('type') for q in qs) ==
              sorted([T_MX, T_AAAA, T_A, T_TLSA]), 'queries: %r' % qs)
        for q in qs:
            check(q['ad'], 'query without the AD bit: %r' % q)
            check(q['do'] is True, 'query without EDNS0 DO: %r' % q)
            check(q['size'] is not None and q['size'] >= 1232,
                  'EDNS0 payload size: %r' % q)
            check(q['end'] == q['len'], 'bytes after the OPT: %r' % q)

        # dnssec = no: the AD bit is not trusted, but still asked for
        s.queries = []
        lines = dnsq(['-n', 'mx', 'ad.test', 'tlsa', 'mx.ad.test', '25'],
                     server)
        check(lines == ['OK secure=0 10 mx.ad.test',
                        'OK secure=0 3 1 1 ' + TLSA_311],
              'dnssec = no: %r' % lines)
        check(len(s.queries) == 2 and all(q.get('do') for q in s.queries),
              'dnssec = no queries: %r' % s.queries)
    finally:
        s.close()


def test_dns_udp_answer_past_512_bytes():
    """An answer over UDP of more than 512 bytes and at most the 1,232
    our EDNS record offers is taken as it is: c-ares 1.18 without
    ARES_FLAG_EDNS dropped it and asked again over TCP, so most signed
    answers cost two queries, and a resolver serving UDP only (this one)
    failed every such lookup."""
    s = AdServer(tlsa=20)
    try:
        lines = dnsq(['tlsa', 'mx.ad.test', '25'],
                     ['127.0.0.1:%d' % s.port], timeout=20)
        check(len(lines) == 1 and lines[0].startswith(
              'OK secure=1 3 1 1 ' + TLSA_311) and
              lines[0].count(' 3 1 1 ') == 20,
              '20 TLSA records (%d bytes) over UDP: %r'
              % (12 + 20 * 47, lines))
    finally:
        s.close()


def test_dns_dnssec_warns_on_remote_resolver():
    """dnssec = yes trusts the AD bit, which proves nothing once it has
    crossed a network: a resolver off loopback is warned about at start
    (no query is sent: nothing here needs DNS)."""
    warn = 'dnssec = yes trusts the AD bit from %s, which is not a loopback'
    cases = [('192.0.2.53', 'yes', '192.0.2.53'),
             ('[2001:db8::53]:53', 'yes', '2001:db8::53'),
             ('127.0.0.1 [::1]:53', 'yes', None),
             ('192.0.2.53', 'no', None)]
    for servers, dnssec, ip in cases:
        with Daemon('dnssec-warn', dns_servers=servers, dnssec=dnssec) as d:
            log = d.log_text()
            check((warn % ip in log) if ip else 'trusts the AD' not in log,
                  'dns_servers = %s, dnssec = %s: warning %s expected:\n%s'
                  % (servers, dnssec, 'is' if ip else 'not', log))


# --- dns_servers unset: /etc/resolv.conf --------------------------------

RESOLV_PORT = 53	# resolv.conf has no port syntax c-ares 1.18 reads


class _ResolvDnsServer(DnsServer):
    """DnsServer on 127.0.0.1:53, where a resolv.conf can name it."""

    def __enter__(self):
        p = subprocess.run(['sh', SERVER_SH, 'start', self.dir,
                            str(RESOLV_PORT), self.zone],
                           capture_output=True, timeout=30)
        check(p.returncode == 0, 'dns-server.sh on port %d: %s'
              % (RESOLV_PORT, p.stderr.decode(errors='replace')[-1500:]))
        self.port = RESOLV_PORT
        return self


class _ResolvConfDaemon(Daemon):
    """A daemon in a private mount namespace whose /etc/resolv.conf is
    a bind mount of the file resolv; the host's is not touched."""

    def __init__(self, name, resolv, **cfg):
        super().__init__(name, **cfg)
        self.resolv = resolv

    def start(self, wait=True):
        logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(
            ['unshare', '--mount', '--propagation', 'private', '--',
             'sh', '-c', 'mount --bind "$1" /etc/resolv.conf && '
             'exec "$2" -c "$3" serve', 'ferry-ns', self.resolv,
             FERRY_BIN, self.conf],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        logf.close()
        check(self.wait_ready() and self.proc.poll() is None,
              'daemon in a mount namespace did not start (rc %r); log:\n%s'
              % (self.proc.poll(), self.log_tail()))
        return self


def test_dns_servers_unset_uses_resolv_conf():
    """dns_servers unset: the resolver in /etc/resolv.conf answers.  The
    daemon runs in its own mount namespace with a resolv.conf naming the
    test server on loopback; the host's own resolver knows nothing of
    rc.test, so an MX delivery there proves which file was read."""
    from peers import Sink, wait_delivery, wait_removed
    with open('/etc/resolv.conf', 'rb') as f:
        host_resolv = f.read()
    tmp = tempfile.mkdtemp(prefix='ferry-resolv-')
    os.chmod(tmp, 0o755)
    resolv = os.path.join(tmp, 'resolv.conf')
    with open(resolv, 'w') as f:
        f.write('nameserver 127.0.0.1\n')
    os.chmod(resolv, 0o644)
    z = ('local-data: "rc.test. MX 10 mx.rc.test."\n'
         'local-data: "mx.rc.test. A 127.0.0.3"\n')
    try:
        with _ResolvDnsServer(z), Sink('127.0.0.3') as s:
            d = _ResolvConfDaemon('resolvconf', resolv, smarthost='',
                                  mx_port=str(s.port), retry_min='1h',
                                  retry_max='2h', queue_lifetime='1d')
            check('dns_servers' not in d.cfg, 'dns_servers is set')
            with d:
                p = d.cli('check-config')
                check(p.returncode == 0 and re.search(
                    rb'(?m)^dns_servers\s*=\s*(#.*)?$', p.stdout),
                    'check-config: dns_servers not empty: %s'
                    % short(p.stdout, 2000))
                qid = d.send_message(b'Subject: resolv\r\n\r\nhi\r\n',
                                     rcpts=('x@rc.test',))
                r = wait_delivery(d, qid, 'sent')[0]
                check(r.relay == 'mx.rc.test[127.0.0.3]:%d' % s.port,
                      'relay %r' % r.relay)
                wait_removed(d, qid)
                msgs = s.wait_count(1)
                check(len(msgs) == 1 and msgs[0].rcpt_addrs ==
                      ['x@rc.test'], 'sink %r' % msgs)
    finally:
        subprocess.run(['rm', '-rf', tmp])
    with open('/etc/resolv.conf', 'rb') as f:
        check(f.read() == host_resolv, 'the host /etc/resolv.conf changed')


# --- a resolver c-ares cannot set up ------------------------------------

ARES_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

struct ares_options;
typedef struct ares_channeldata *ares_channel;

/* The first call (dns_init()'s check at start) and every one after
 * FAILS more are the library's; the FAILS between answer ARES_ENOMEM. */
int
ares_init_options(ares_channel *ch, struct ares_options *o, int mask)
{
	static int calls;
	int (*real)(ares_channel *, struct ares_options *, int);

	calls++;
	if (calls > 1 && calls <= 1 + atoi(getenv("SHIM_FAILS")))
		return 15;	/* ARES_ENOMEM */
	*(void **)&real = dlsym(RTLD_NEXT, "ares_init_options");
	return real(ch, o, mask);
}
"""


def test_dns_channel_failure_logged_once():
    """When c-ares cannot set up the channel, each query is answered with
    a temporary failure (the message is deferred, not bounced) and the
    next query tries again; a run of such failures is logged once, with a
    line when it ends, rather than once per query."""
    fails = 3
    d = Daemon('dns-enomem', smarthost='', dns_servers='127.0.0.1:9',
               relay_domains='a1.test a2.test a3.test a4.test',
               retry_min='1h', retry_max='1h')
    d.preload(ARES_SHIM, SHIM_FAILS=str(fails))
    with d:
        ids = []
        for i in range(1, fails + 2):
            ids.append(d.send_message(b'Subject: %d\r\n\r\nbody\r\n' % i,
                                      rcpts=('u@a%d.test' % i,)))
            d.wait_log(r'^.*%s: to=<u@a%d\.test>.*status=deferred'
                       % (ids[-1], i), timeout=15)
        log = d.log_text()
        check(log.count('cannot set up the resolver') == 1,
              'failure logged %d times, want once:\n%s'
              % (log.count('cannot set up the resolver'), d.log_tail()))
        check('dns: resolver set up after %d failed attempts' % fails
              in log, 'no line for the recovery:\n' + d.log_tail())
        check(sorted(d.mailq_ids()) == sorted(ids),
              'queue %r, want %r' % (d.mailq_ids(), ids))
        check('status=bounced' not in log, 'bounced:\n' + d.log_tail())
