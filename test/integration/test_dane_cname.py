"""
test_dane_cname.py - the TLSA base domain of an MX host (or smarthost)
whose name is an alias (RFC 7672 sections 2.2.3 and 3.2.2, RFC 7671
section 7), for delivery and for `ferry check`, against the DNSSEC rig:

- the CNAME chain is secure and the chain's end has TLSA: those records
  count, the SNI is the end's name, and a DANE-TA leaf naming only the
  end's name verifies;
- the end has no TLSA, the MX host's own name has: those count;
- a TLSA lookup failure at the end defers, never falls back to the name;
- the chain is insecure (into an insecure zone, or through one and back
  into a signed zone whose TLSA would not match): the host's addresses
  are insecure, so DANE does not apply to it at all (RFC 7672 section
  2.2.2): dane is opportunistic, dane-only defers.

One rig serves the module (it takes seconds to start); each case has its
own zones and its own peer on its own loopback address (127.0.1.N, one
port for all), so what a peer saw belongs to one test.
"""

import os
import re
import subprocess

import peers
from dnsrig import DnssecRig
from ferrytest import Daemon, FERRY_BIN, SLOW, TestFailure, check, \
    sanitizer_report
from peers import SmtpPeer
from sharedrig import SharedRig
from test_dane import BODY, NO_RETRY, chain_file, dane_file, tlsa, \
    tls_lines, matched, mail_cmds, no_mail_sent, deferred_kept

CHECK_TIMEOUT = 90	# seconds (the rig's first answers are slow)


def one_delivery(d, qid, status, dsn_re, text_re=None):
    return peers.one_delivery(d, qid, status, dsn_re, text_re,
                              timeout=20.0)


# case -> (peer address, leaf, chain)
ADDR = {
    'secure': ('127.0.1.1', 'ee', ()),
    'fallback': ('127.0.1.2', 'ee', ()),
    'insecure': ('127.0.1.3', 'ee', ()),
    'through': ('127.0.1.4', 'ee', ()),
    'ta': ('127.0.1.5', 'leaf', ('ca',)),
    'servfail': ('127.0.1.6', 'ee', ()),
    'smarthost': ('127.0.1.7', 'ee', ()),
}



def _zones(port):
    ee = tlsa('ee', 3, 1, 1)
    wrong = tlsa('wrong', 3, 1, 1)
    t = '_%d._tcp' % port

    def a(case):
        return ADDR[case][0]
    return {
        # mx.c1 -> mx.t1, TLSA only at the end.
        'c1.dane.test': ['@ MX 10 mx', 'mx CNAME mx.t1.dane.test.'],
        't1.dane.test': ['mx A %s' % a('secure'),
                         '%s.mx TLSA %s' % (t, ee)],
        # mx.c2 -> mx.t2, TLSA only at the MX host's own name.
        'c2.dane.test': ['@ MX 10 mx', 'mx CNAME mx.t2.dane.test.',
                         '%s.mx TLSA %s' % (t, ee)],
        't2.dane.test': ['mx A %s' % a('fallback')],
        # mx.c3 -> mx.i3 in an insecure zone whose TLSA would not match.
        'c3.dane.test': ['@ MX 10 mx', 'mx CNAME mx.i3.dane.test.',
                         '%s.mx TLSA %s' % (t, ee)],
        'i3.dane.test': ['mx A %s' % a('insecure'),
                         '%s.mx TLSA %s' % (t, wrong)],
        # mx.c4 -> mx.i4 (insecure) -> mx.t4, back in a signed zone,
        # with secure TLSA that would not match: the chain is insecure
        # (a forged middle link could point anywhere), so they must not
        # count even though their own answer validates.
        'c4.dane.test': ['@ MX 10 mx', 'mx CNAME mx.i4.dane.test.',
                         '%s.mx TLSA %s' % (t, ee)],
        'i4.dane.test': ['mx CNAME mx.t4.dane.test.'],
        't4.dane.test': ['mx A %s' % a('through'),
                         '%s.mx TLSA %s' % (t, wrong)],
        # DANE-TA: the leaf names mx.dane.test only, the chain's end.
        'c5.dane.test': ['@ MX 10 mx', 'mx CNAME mx.dane.test.'],
        'mx.dane.test': ['@ A %s' % a('ta'),
                         '%s TLSA %s' % (t, tlsa('ca', 2, 0, 1))],
        # The lookup at the end fails: defer, whatever the name has.
        'c6.dane.test': ['@ MX 10 mx', 'mx CNAME mx.t6.dane.test.',
                         '%s.mx TLSA %s' % (t, ee)],
        't6.dane.test': ['mx A %s' % a('servfail')],
        # A smarthost given as [relay.c7.dane.test]:PORT.
        'c7.dane.test': ['relay CNAME relay.t7.dane.test.'],
        't7.dane.test': ['relay A %s' % a('smarthost'),
                         '%s.relay TLSA %s' % (t, ee)],
    }


def _start(tmp, port):
    ps = {}
    try:
        for case, (addr, leaf, chain) in ADDR.items():
            ps[case] = SmtpPeer(addr=addr, port=port, tls='starttls',
                                certfile=chain_file(tmp, leaf, *chain),
                                keyfile=dane_file(leaf + '.key')).start()
        rig = DnssecRig(_zones(port),
                        kinds={'i3.dane.test': 'insecure',
                               'i4.dane.test': 'insecure'},
                        servfail=['_%d._tcp.mx.t6.dane.test' % port])
        rig.start()
    except Exception:
        for p in ps.values():
            p.stop()
        raise
    return ps, rig


fixture = SharedRig('ferry-cname-', _start).fixture


def daemon(name, level='dane', **cfg):
    fx = fixture()
    c = dict(NO_RETRY, smarthost='', mx_port=str(fx['port']),
             dns_servers=fx['rig'].server, dnssec='yes', outbound_tls=level)
    c.update(cfg)
    return Daemon(name, **c)


def snis(p):
    with p.lock:
        return [s.sni for s in p.sessions if s.tls]


def verified(name, case, domain, mxhost, sni, rec, at=None, level='dane',
             **cfg):
    """Delivered inside TLS, Verified, rec logged as the record that
    matched (with "at _PORT._tcp.AT" when it came from the alias's end),
    and the SNI sni."""
    fx = fixture()
    p, port = fx['peers'][case], fx['port']
    with daemon(name, level=level, **cfg) as d:
        qid = d.send_message(BODY, rcpts=['x@' + domain])
        r = one_delivery(d, qid, 'sent', r'2\.0\.0')
        ip = ADDR[case][0]
        check(r.relay == '%s[%s]:%d' % (mxhost, ip, port),
              'relay %r' % r.relay)
        check([l[:3] for l in tls_lines(d)] == [('Verified', mxhost, ip)],
              'TLS lines %r' % tls_lines(d))
        m = matched(d)
        want = rec.split()
        check(len(m) == 1 and m[0][0] == mxhost and
              list(m[0][3:6]) == want[:3] and
              want[3].startswith(m[0][6][:12]),
              'matched lines %r, want %s' % (m, rec))
        line = [l for l in d.log_text().splitlines()
                if 'Matched DANE TLSA record' in l]
        owner = ' at _%d._tcp.%s (CNAME)' % (port, at) if at else ''
        check(len(line) == 1 and line[0].endswith(owner) and
              (at or ' at _' not in line[0]),
              'Matched line %r, want it to end %r' % (line, owner))
        p.wait_idle()
        check(len(p.delivered()) >= 1, 'peer got %r' % p.delivered())
        cmds = mail_cmds(p)
        check(cmds and all(t for t, _ in cmds),
              'MAIL/RCPT/DATA outside TLS: %r' % cmds)
        check(snis(p) and set(snis(p)) == {sni},
              'SNI %r, want %s' % (snis(p), sni))
        return d


# --- delivery ------------------------------------------------------------

def test_cname_secure_tlsa_at_end_verified():
    """mx.c1 is a secure alias of mx.t1, which has the TLSA: verified
    with them, SNI mx.t1 (before this, _PORT._tcp.mx.c1 was NXDOMAIN:
    opportunistic TLS)."""
    verified('cname1', 'secure', 'c1.dane.test', 'mx.c1.dane.test',
             'mx.t1.dane.test', tlsa('ee', 3, 1, 1), at='mx.t1.dane.test')


def test_cname_secure_tlsa_at_name_verified():
    """mx.t2 (the end) has no TLSA: the MX host's own name's count, and
    the SNI is that name."""
    verified('cname2', 'fallback', 'c2.dane.test', 'mx.c2.dane.test',
             'mx.c2.dane.test', tlsa('ee', 3, 1, 1))


def test_cname_into_insecure_zone_dane_only_deferred():
    """mx.c3 -> mx.i3 in an insecure zone: the MX RRset is secure, the
    host's addresses are not, so no TLSA counts (not even the name's
    own, which would match): dane-only defers, nothing sent."""
    p = fixture()['peers']['insecure']
    with daemon('cname3', level='dane-only') as d:
        qid = d.send_message(BODY, rcpts=['x@c3.dane.test'])
        one_delivery(d, qid, 'deferred', r'4\.7\.5', r'not DNSSEC-secure')
        p.wait_idle()
        no_mail_sent(p, 'cname3')
        deferred_kept(d, qid)
        check(tls_lines(d) == [], 'TLS lines %r' % tls_lines(d))


def test_cname_through_insecure_zone_opportunistic():
    """mx.c4 -> mx.i4 (insecure) -> mx.t4 (signed, a secure TLSA that
    does not match): the chain is insecure, so no TLSA counts (neither
    mx.t4's, whose own answer validates, nor the name's): at dane the
    mail goes out in opportunistic TLS, SNI the MX host."""
    fx = fixture()
    p, ip = fx['peers']['through'], ADDR['through'][0]
    with daemon('cname4') as d:
        qid = d.send_message(BODY, rcpts=['x@c4.dane.test'])
        one_delivery(d, qid, 'sent', r'2\.0\.0')
        check([l[:3] for l in tls_lines(d)] ==
              [('Untrusted', 'mx.c4.dane.test', ip)],
              'TLS lines %r' % tls_lines(d))
        check(matched(d) == [], 'matched %r' % matched(d))
        p.wait_idle()
        check(set(snis(p)) == {'mx.c4.dane.test'}, 'SNI %r' % snis(p))


def test_cname_dane_ta_names_the_end():
    """DANE-TA 2 0 1 at the chain's end; the leaf names only
    mx.dane.test (the end), not mx.c5.dane.test: the TLSA base domain
    is a reference identifier (RFC 7672 section 3.2.2)."""
    verified('cname5', 'ta', 'c5.dane.test', 'mx.c5.dane.test',
             'mx.dane.test', tlsa('ca', 2, 0, 1), at='mx.dane.test')


def test_cname_tlsa_servfail_at_end_deferred():
    """The TLSA lookup at the chain's end fails: deferred (4.7.5), not
    retried at the MX host's own name (whose records would match), and
    nothing sent."""
    p = fixture()['peers']['servfail']
    with daemon('cname6') as d:
        qid = d.send_message(BODY, rcpts=['x@c6.dane.test'])
        one_delivery(d, qid, 'deferred', r'4\.7\.5', r'TLSA lookup error')
        check(re.search(r'_%d\._tcp\.mx\.t6\.dane\.test: TLSA lookup error'
                        % fixture()['port'], d.log_text()),
              'the deferral does not name the end\'s TLSA:\n%s'
              % d.log_tail())
        p.wait_idle()
        no_mail_sent(p, 'cname6')
        check(p.connections == 0, 'connected %d times' % p.connections)
        deferred_kept(d, qid)
        check(tls_lines(d) == [], 'TLS lines %r' % tls_lines(d))


def test_cname_smarthost_alias_verified():
    """smarthost = [relay.c7.dane.test]:PORT, raised to dane-only by its
    tls_policy entry: a secure alias of relay.t7, whose TLSA count."""
    fx = fixture()
    policy = os.path.join(fx['tmp'], 'policy7')
    with open(policy, 'w') as f:
        f.write('relay.c7.dane.test dane-only\n')
    verified('cname7', 'smarthost', 'relay.test', 'relay.c7.dane.test',
             'relay.t7.dane.test', tlsa('ee', 3, 1, 1),
             at='relay.t7.dane.test', smarthost_tls='none',
             smarthost='[relay.c7.dane.test]:%d' % fx['port'],
             tls_policy=policy)


# --- ferry check ----------------------------------------------------------

def run_check(domain):
    fx = fixture()
    cmd = [FERRY_BIN, '-c', fx['conf'], 'check', domain]
    try:
        p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=CHECK_TIMEOUT * SLOW)
    except subprocess.TimeoutExpired:
        raise TestFailure('`ferry check %s` did not exit within %ds'
                          % (domain, CHECK_TIMEOUT * SLOW))
    out = p.stdout.decode('utf-8', 'replace')
    err = p.stderr.decode('utf-8', 'replace')
    m = sanitizer_report(err)
    check(m is None, 'sanitizer report %r' % m)

    def has(pattern):
        check(re.search(pattern, out, re.M), '`ferry check %s`: no line '
              'matching %r\nexit %d\n%s%s' % (domain, pattern, p.returncode,
                                             out, err[-2000:]))
    return p.returncode, out, has


def test_check_cname_secure_end():
    port = fixture()['port']
    rc, out, has = run_check('c1.dane.test')
    has(r'^  CNAME: mx\.c1\.dane\.test is an alias of mx\.t1\.dane\.test '
        r'\(secure: TLSA looked up there first\)$')
    has(r'^  TLSA _%d\._tcp\.mx\.t1\.dane\.test: 1 record \(secure\)$'
        % port)
    has(r'^  TLSA base domain: mx\.t1\.dane\.test, the end of the secure '
        r'CNAME chain \(the SNI\)$')
    has(r'^  verdict: verified \(DANE-EE 3 1 1 ')
    check(rc == 0 and '_%d._tcp.mx.c1.dane.test' % port not in out,
          'exit %d (want 0), or looked at the name itself:\n%s' % (rc, out))


def test_check_cname_fallback_to_name():
    port = fixture()['port']
    rc, out, has = run_check('c2.dane.test')
    has(r'^  TLSA _%d\._tcp\.mx\.t2\.dane\.test: none \(nxdomain, secure\)'
        r'$' % port)
    has(r'^  TLSA _%d\._tcp\.mx\.c2\.dane\.test: 1 record \(secure\)$'
        % port)
    has(r'^  TLSA base domain: mx\.c2\.dane\.test \(the SNI\)$')
    has(r'^  verdict: verified \(DANE-EE 3 1 1 ')
    check(rc == 0, 'exit %d, want 0' % rc)


def test_check_cname_insecure_chain():
    port = fixture()['port']
    rc, out, has = run_check('c4.dane.test')
    has(r'^  CNAME: mx\.c4\.dane\.test is an alias of mx\.t4\.dane\.test '
        r'\(insecure: no DANE for this host\)$')
    has(r'^  policy: no DNSSEC-secure address records: DANE does not '
        r'apply$')
    has(r'^  verdict: encrypted, not verified')
    check(rc == 69 and '_%d._tcp.mx.t4' % port not in out,
          'exit %d (want 69), or looked at the insecure end:\n%s'
          % (rc, out))
