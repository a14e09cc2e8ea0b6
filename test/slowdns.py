#!/usr/bin/python3
"""
slowdns.py - a DNS server for benchmarks whose every answer takes a fixed
time: 200 recipient domains d1.test ... dN.test, each with its own MX host,
where the latency of a real resolver is what is under test.  unbound cannot
add latency, hence this.  Standard library only, UDP only.

  slowdns.py [--addr 127.0.0.1] --port PORT [--delay-ms 50]
             [--domains 200] [--spread 1] [--log FILE]

Owns only the answers.  For 1 <= N <= --domains:
  dN.test     MX  10 mx.dN.test.
  dN.test     A   (the same address as mx.dN.test, for an A fallback)
  mx.dN.test  A   127.0.0.(1 + (N - 1) % spread)
  AAAA or any other type of those names: NODATA (NOERROR, no answer)
  any other name: NXDOMAIN
Every answer is sent --delay-ms after its query arrived, independently of
the others (asyncio timers, so many queries wait at once).  The question
is echoed byte for byte (c-ares compares it with what it asked).  A query
that cannot be parsed gets FORMERR if it has a header, else nothing.
--log FILE appends "unix-time qtype name" per query (when it arrived),
for seeing when the client asked what.  Prints "slowdns: ready on ADDR:PORT" on
stdout once bound; on SIGTERM/SIGINT prints the query count and exits 0.
"""

import argparse
import asyncio
import signal
import struct
import sys
import time

HDR_LEN = 12
NAME_MAX = 255		# RFC 1035 §3.1, the whole name on the wire
LABEL_MAX = 63
TTL = 300
QTYPE_A, QTYPE_MX, QTYPE_AAAA = 1, 15, 28
QCLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 3, 4
MX_PREF = 10
TYPE_NAMES = {QTYPE_A: 'A', QTYPE_MX: 'MX', QTYPE_AAAA: 'AAAA'}


class BadQuery(Exception):
    pass


def parse_question(pkt):
    """(labels as lower-case str list, qtype, qclass, end offset of the
    question) from a query; BadQuery if it is not one plain question."""
    if len(pkt) < HDR_LEN:
        raise BadQuery('short header')
    qdcount = struct.unpack('!H', pkt[4:6])[0]
    if pkt[2] & 0x80 or qdcount != 1:
        raise BadQuery('not a query with one question')
    labels, off, total = [], HDR_LEN, 0
    while True:
        if off >= len(pkt):
            raise BadQuery('name runs past the end')
        n = pkt[off]
        off += 1
        if n == 0:
            break
        if n > LABEL_MAX:		# also rejects compression pointers
            raise BadQuery('bad label length %d' % n)
        if off + n > len(pkt):
            raise BadQuery('label runs past the end')
        total += n + 1
        if total + 1 > NAME_MAX:
            raise BadQuery('name too long')
        labels.append(pkt[off:off + n].decode('ascii', 'replace').lower())
        off += n
    if off + 4 > len(pkt):
        raise BadQuery('no type and class')
    qtype, qclass = struct.unpack('!HH', pkt[off:off + 4])
    return labels, qtype, qclass, off + 4


def encode_name(name):
    out = b''
    for label in name.split('.'):
        if label:
            out += bytes([len(label)]) + label.encode('ascii')
    return out + b'\0'


def domain_number(label, domains):
    """N if label is dN with 1 <= N <= domains, else None."""
    if len(label) < 2 or label[0] != 'd' or not label[1:].isdigit():
        return None
    n = int(label[1:])
    return n if 1 <= n <= domains else None


class Zone:
    def __init__(self, domains, spread):
        self.domains = domains
        self.spread = spread

    def address(self, n):
        return bytes([127, 0, 0, 1 + (n - 1) % self.spread])

    def answer(self, labels, qtype):
        """(rcode, [(type, rdata)]) for a name and type."""
        if labels[-1:] != ['test']:
            return RCODE_NXDOMAIN, []
        if len(labels) == 2:
            n, host = domain_number(labels[0], self.domains), False
        elif len(labels) == 3 and labels[0] == 'mx':
            n, host = domain_number(labels[1], self.domains), True
        else:
            n = None
        if n is None:
            return RCODE_NXDOMAIN, []
        if qtype == QTYPE_A:
            return RCODE_OK, [(QTYPE_A, self.address(n))]
        if qtype == QTYPE_MX and not host:
            target = encode_name('mx.d%d.test' % n)
            return RCODE_OK, [(QTYPE_MX, struct.pack('!H', MX_PREF) + target)]
        return RCODE_OK, []		# NODATA: AAAA and everything else


def reply(query, rcode, qend, records):
    """A response to query: its id and RD bit, QR AA RA, the question
    echoed, records as answers whose owner points at the question."""
    rd = query[2] & 0x01
    flags1 = 0x80 | 0x04 | rd		# QR, AA
    flags2 = 0x80 | rcode		# RA
    qd = 1 if qend else 0
    head = query[0:2] + bytes([flags1, flags2]) + \
        struct.pack('!HHHH', qd, len(records), 0, 0)
    body = query[HDR_LEN:qend] if qend else b''
    for rtype, rdata in records:
        body += struct.pack('!HHHIH', 0xC000 | HDR_LEN, rtype, QCLASS_IN,
                            TTL, len(rdata)) + rdata
    return head + body


class SlowDns(asyncio.DatagramProtocol):
    def __init__(self, zone, delay, logf):
        self.zone = zone
        self.delay = delay
        self.logf = logf
        self.queries = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.queries += 1
        try:
            labels, qtype, qclass, qend = parse_question(data)
        except BadQuery:
            if len(data) >= HDR_LEN:
                self.later(reply(data, RCODE_FORMERR, 0, []), addr)
            return
        if self.logf:
            self.logf.write('%.6f %s %s\n' % (
                time.time(),
                TYPE_NAMES.get(qtype, str(qtype)), '.'.join(labels)))
        if qclass != QCLASS_IN:
            rcode, records = RCODE_NOTIMP, []
        else:
            rcode, records = self.zone.answer(labels, qtype)
        self.later(reply(data, rcode, qend, records), addr)

    def later(self, pkt, addr):
        asyncio.get_running_loop().call_later(
            self.delay, self.transport.sendto, pkt, addr)


async def serve(args):
    logf = open(args.log, 'a', buffering=1) if args.log else None
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: SlowDns(Zone(args.domains, args.spread),
                        args.delay_ms / 1000.0, logf),
        local_addr=(args.addr, args.port))
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or
                                stop.set_result(None))
    print('slowdns: ready on %s:%d, %d ms per answer, d1..d%d.test'
          % (args.addr, args.port, args.delay_ms, args.domains), flush=True)
    await stop
    transport.close()
    print('slowdns: %d queries' % proto.queries, flush=True)
    if logf:
        logf.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('--addr', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--delay-ms', type=float, default=50)
    p.add_argument('--domains', type=int, default=200)
    p.add_argument('--spread', type=int, default=1,
                   help='MX addresses 127.0.0.1 .. 127.0.0.SPREAD')
    p.add_argument('--log')
    args = p.parse_args()
    if not 1 <= args.spread <= 254 or args.domains < 1 or args.delay_ms < 0:
        p.error('--spread 1..254, --domains >= 1, --delay-ms >= 0')
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print('slowdns: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
