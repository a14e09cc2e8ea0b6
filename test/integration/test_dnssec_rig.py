"""
test_dnssec_rig.py - the DNSSEC rig itself (test/dnssec-rig.sh through
dnsrig.DnssecRig), asked with drill: secure data comes back with AD,
insecure data without, bogus zones (wrong key, expired signatures) as
SERVFAIL although nsd holds the data, SERVFAIL names fail fast, nothing
outside dane.test is asked, nested delegations validate, bad zone data
stops start, and stop leaves no process behind.
"""

import os
import socket
import time

from dnsrig import DnssecRig
from ferrytest import TestFailure, check, SLOW

DIGEST = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
SERVFAIL_FAST = 3.0	# seconds: answered by unbound, no timeout waited

RECORDS = [
    '@ MX 10 mx',
    '@ MX 20 mx2.other.dane.test.',
    'mx A 127.0.0.1',
    'mx AAAA ::1',
    '_25._tcp.mx TLSA 3 1 1 ' + DIGEST,
    'alias CNAME mx',
]

ZONES = {
    'sec.dane.test': RECORDS,
    'ins.dane.test': RECORDS,
    'bog.dane.test': RECORDS,
    'exp.dane.test': RECORDS,
}
KINDS = {'ins.dane.test': 'insecure', 'bog.dane.test': 'bogus',
         'exp.dane.test': 'expired'}


def rig():
    return DnssecRig(ZONES, KINDS,
                     servfail=['_25._tcp.mx.sec.dane.test',
                               'dead.ins.dane.test'])


def expect(a, rcode, ad, what):
    check(a.rcode == rcode and a.ad == ad, '%s: expected %s ad=%s, got %r'
          % (what, rcode, ad, a))


def check_records(a, what):
    check(a.data('A') == ['127.0.0.1'], '%s A: %r' % (what, a))


def test_dnssec_rig_secure():
    with rig() as r:
        a = r.query('mx.sec.dane.test', 'A')
        expect(a, 'NOERROR', True, 'secure A')
        check_records(a, 'secure')
        check(any(t == 'RRSIG' for _, t, _ in a.records),
              'secure A without RRSIG: %s' % a.text)
        a = r.query('mx.sec.dane.test', 'AAAA')
        expect(a, 'NOERROR', True, 'secure AAAA')
        check(a.data('AAAA') == ['::1'], 'AAAA: %r' % a)
        a = r.query('sec.dane.test', 'MX')
        expect(a, 'NOERROR', True, 'secure MX')
        check(a.data('MX') == ['10 mx.sec.dane.test.',
                               '20 mx2.other.dane.test.'], 'MX: %r' % a)
        # a CNAME followed inside the zone, both validated
        a = r.query('alias.sec.dane.test', 'A')
        expect(a, 'NOERROR', True, 'secure CNAME')
        check(a.data('CNAME') == ['mx.sec.dane.test.'] and
              a.data('A') == ['127.0.0.1'], 'CNAME: %r' % a)
        # authenticated denial: NXDOMAIN and NODATA both carry AD
        expect(r.query('nosuch.sec.dane.test', 'A'), 'NXDOMAIN', True,
               'secure NXDOMAIN')
        a = r.query('mx.sec.dane.test', 'TXT')
        expect(a, 'NOERROR', True, 'secure NODATA')
        check(a.data('TXT') == [], 'NODATA: %r' % a)
        # without DO in the query, no AD bit (NOTES.md)
        a = r.query('mx.sec.dane.test', 'A', dnssec=False)
        expect(a, 'NOERROR', False, 'secure A without DO')
        # the trust anchor is dane.test's DS, a file the tests can read
        with open(r.trust_anchor) as f:
            check(' DS ' in f.read().replace('\t', ' '),
                  'trust anchor %s holds no DS' % r.trust_anchor)
        return 'start %.2fs' % r.start_seconds


def test_dnssec_rig_tlsa_secure():
    with rig() as r:
        a = r.query('_25._tcp.mx.ins.dane.test', 'TLSA')
        expect(a, 'NOERROR', False, 'insecure TLSA')
        check(a.data('TLSA') == ['3 1 1 ' + DIGEST], 'TLSA: %r' % a)
    zones = dict(ZONES)
    zones['tl.dane.test'] = RECORDS + [
        '_25._tcp.mx TLSA 2 0 1 ' + DIGEST,
        '_587._tcp.mx TLSA 3 0 2 ' + 'ab' * 64,
        # a TLSA base reached through a CNAME (RFC 7672 section 2.2.3)
        '_25._tcp.alias CNAME _25._tcp.mx',
    ]
    with DnssecRig(zones, KINDS) as r:
        a = r.query('_25._tcp.mx.tl.dane.test', 'TLSA')
        expect(a, 'NOERROR', True, 'secure TLSA')
        check(a.data('TLSA') == ['2 0 1 ' + DIGEST, '3 1 1 ' + DIGEST],
              'TLSA: %r' % a)
        a = r.query('_587._tcp.mx.tl.dane.test', 'TLSA')
        expect(a, 'NOERROR', True, 'secure TLSA 587')
        check(a.data('TLSA') == ['3 0 2 ' + 'ab' * 64], 'TLSA: %r' % a)
        a = r.query('_25._tcp.alias.tl.dane.test', 'TLSA')
        expect(a, 'NOERROR', True, 'secure TLSA via CNAME')
        check(len(a.data('TLSA')) == 2 and a.data('CNAME') ==
              ['_25._tcp.mx.tl.dane.test.'], 'TLSA via CNAME: %r' % a)
        # no TLSA at a secure name: authenticated NXDOMAIN
        expect(r.query('_25._tcp.nosuch.tl.dane.test', 'TLSA'),
               'NXDOMAIN', True, 'secure TLSA NXDOMAIN')


def test_dnssec_rig_insecure():
    with rig() as r:
        for t, want in (('A', ['127.0.0.1']), ('AAAA', ['::1'])):
            a = r.query('mx.ins.dane.test', t)
            expect(a, 'NOERROR', False, 'insecure ' + t)
            check(a.data(t) == want, 'insecure %s: %r' % (t, a))
        a = r.query('ins.dane.test', 'MX')
        expect(a, 'NOERROR', False, 'insecure MX')
        check(len(a.data('MX')) == 2, 'insecure MX: %r' % a)
        check(not a.data('RRSIG'), 'insecure zone signed? %r' % a.records)
        expect(r.query('nosuch.ins.dane.test', 'A'), 'NXDOMAIN', False,
               'insecure NXDOMAIN')


def test_dnssec_rig_bogus():
    with rig() as r:
        for z in ('bog', 'exp'):
            for name, t in (('mx.%s.dane.test' % z, 'A'),
                            ('%s.dane.test' % z, 'MX'),
                            ('_25._tcp.mx.%s.dane.test' % z, 'TLSA')):
                a = r.query(name, t)
                expect(a, 'SERVFAIL', False, 'bogus %s %s' % (name, t))
                check(a.seconds < SERVFAIL_FAST * SLOW,
                      'bogus %s took %.1fs' % (name, a.seconds))
            # the data is there: with CD set unbound hands it over
            # unvalidated, so the SERVFAIL above is validation's
            a = r.query('mx.%s.dane.test' % z, 'A', cd=True)
            expect(a, 'NOERROR', False, 'bogus with CD')
            check_records(a, 'bogus with CD')
            # and nsd serves it signed
            a = r.query_nsd('mx.%s.dane.test' % z, 'A')
            check(a.rcode == 'NOERROR' and a.data('RRSIG'),
                  'nsd %s: %r' % (z, a))
        # the parent does hold DS records for both
        for z in ('bog', 'exp'):
            a = r.query('%s.dane.test' % z, 'DS')
            expect(a, 'NOERROR', True, '%s DS' % z)
            check(len(a.data('DS')) == 1, '%s DS: %r' % (z, a))
        expect(r.query('ins.dane.test', 'DS'), 'NOERROR', True,
               'insecure: no DS, proven')
        check(not r.query('ins.dane.test', 'DS').data('DS'),
              'insecure zone has a DS')


def test_dnssec_rig_servfail_fast():
    with rig() as r:
        for name, t in (('_25._tcp.mx.sec.dane.test', 'TLSA'),
                        ('x.dead.ins.dane.test', 'A'),
                        ('servfail.dane.test', 'MX'),
                        ('a.b.servfail.dane.test', 'A'),
                        ('example.org', 'MX'),	# no internet
                        ('other.test', 'A'),
                        ('.', 'NS')):
            for _ in range(2):	# also once the failure is cached
                a = r.query(name, t)
                expect(a, 'SERVFAIL', False, 'servfail %s %s' % (name, t))
                check(a.seconds < SERVFAIL_FAST * SLOW,
                      'SERVFAIL %s took %.1fs' % (name, a.seconds))
        # the MX host itself still resolves securely: only its TLSA fails
        a = r.query('mx.sec.dane.test', 'A')
        expect(a, 'NOERROR', True, 'above the SERVFAIL cut')
        check_records(a, 'above the SERVFAIL cut')


def test_dnssec_rig_nested():
    zones = {
        'dane.test': ['www A 127.0.0.9'],
        'p.dane.test': ['@ MX 10 mx.c', 'x A 127.0.0.1'],
        'c.p.dane.test': ['mx A 127.0.0.2'],
        'i.p.dane.test': ['mx A 127.0.0.3'],
        'b.c.p.dane.test': ['mx A 127.0.0.4'],
    }
    kinds = {'i.p.dane.test': 'insecure', 'b.c.p.dane.test': 'bogus'}
    with DnssecRig(zones, kinds) as r:
        for name, rc, ad, addr in (
                ('www.dane.test', 'NOERROR', True, '127.0.0.9'),
                ('x.p.dane.test', 'NOERROR', True, '127.0.0.1'),
                ('mx.c.p.dane.test', 'NOERROR', True, '127.0.0.2'),
                ('mx.i.p.dane.test', 'NOERROR', False, '127.0.0.3'),
                ('mx.b.c.p.dane.test', 'SERVFAIL', False, None)):
            a = r.query(name, 'A')
            expect(a, rc, ad, name)
            check(a.data('A') == ([addr] if addr else []),
                  '%s: %r' % (name, a))
        # the DS of c.p sits in p, not in dane.test
        a = r.query('c.p.dane.test', 'DS')
        expect(a, 'NOERROR', True, 'nested DS')
        check(len(a.data('DS')) == 1, 'nested DS: %r' % a)
        # every zone was asked on nsd's port, never on port 53
        with open(os.path.join(r.dir, 'unbound.log')) as f:
            log = f.read()
        check('Connection refused' not in log,
              'unbound asked a closed port: %s' % log[-1500:])


def test_dnssec_rig_bad_data_refused():
    bad = DnssecRig({'sec.dane.test': ['mx A not-an-address']})
    try:
        bad.start()
    except TestFailure as e:
        check('sec.dane.test' in str(e) or 'not-an-address' in str(e),
              'start failed without naming the zone: %s' % e)
        bad.remove()
    else:
        bad.stop()
        bad.remove()
        raise TestFailure('start accepted a bad A record')
    for z, k in ((('example.org', 'secure')), ('ins.dane.test', 'weird')):
        try:
            DnssecRig({z: []}, {z: k})
        except ValueError:
            continue
        raise TestFailure('DnssecRig took zone %s kind %s' % (z, k))


def _tree_pids(d):
    pids = []
    for name in ('nsd', 'unbound'):
        with open(os.path.join(d, name + '.pid.rig')) as f:
            pids.append(int(f.read()))
        with open(os.path.join(d, name + '.tree')) as f:
            pids += [int(x) for x in f.read().split()]
    return sorted(set(pids))


def _running(pid):
    """Alive and not a zombie (init reaps those later)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _bound(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return True
        finally:
            s.close()
    return False


def test_dnssec_rig_start_stop_clean():
    r = DnssecRig(ZONES, KINDS)
    r.start()
    try:
        pids = _tree_pids(r.dir)
        # nsd: xfrd, main, a server; unbound: one
        check(len(pids) >= 4, 'rig processes: %r' % pids)
        check(all(_running(p) for p in pids), 'not all running: %r' % pids)
        check(_bound(r.port) and _bound(r.nsd_port), 'ports not bound')
    finally:
        r.stop()
    left = [p for p in pids if _running(p)]
    check(not left, 'left running after stop: %r' % left)
    check(not _bound(r.port) and not _bound(r.nsd_port),
          'ports still bound after stop')
    check(r.stop_seconds < 12, 'stop took %.1fs' % r.stop_seconds)
    # stop twice is harmless; a second start in the same dir works
    r.stop()
    r.start()
    try:
        expect(r.query('mx.sec.dane.test'), 'NOERROR', True, 'restarted')
    finally:
        r.stop()
        r.remove()
    return 'start %.2fs, stop %.2fs' % (r.start_seconds, r.stop_seconds)
