"""
test_check.py - `ferry check DOMAIN` (issue 5) against the DNSSEC rig:
for every case of the DANE delivery tests (test_dane.py) the report must
carry the verdict a delivery reaches and the exit code must say whether
mail would go out verified (0), not verified (69), only after a retry
(75, DNS trouble) or not at all (68, no such domain).

One rig and one set of peers serve the whole module (the rig takes
seconds to start): every case has its own zone under dane.test, and the
peers share one port on different loopback addresses, 127.0.0.2-6, each
presenting one certificate of test/certs/dane (127.0.0.7 answers
STARTTLS and hangs up; nothing listens on 127.0.0.8; 127.0.0.9 offers
STARTTLS with the DANE-EE key but only level none ever reaches it, so it
must never see a STARTTLS; 127.0.0.10 speaks implicit TLS, the smarthost
of the 'relay' config).  `ferry check` sends no mail, which every case
checks on every peer.
"""

import atexit
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

from dnsrig import DnssecRig
from ferrytest import FERRY_BIN, SLOW, TestFailure, check, free_port, \
    sanitizer_report, serial
from peers import SmtpPeer
from test_dane import chain_file, dane_file, tlsa

CHECK_TIMEOUT = 90	# seconds, per run (the rig's first answers are slow)

EE, EXPIRED, TA, WRONG, PLAIN, BREAK = (
    '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6',
    '127.0.0.7')
DOWN = '127.0.0.8'	# nobody listens there
NOTLS = '127.0.0.9'	# offers STARTTLS; only level none is sent there
SMTPS = '127.0.0.10'	# implicit TLS: the smarthost of conf 'relay'

VERDICT = re.compile(r'^  verdict: (.*)$', re.M)
OVERALL = re.compile(r'^overall: (.*)$', re.M)
RESULT = re.compile(r'^    result: (.*)$', re.M)

_lock = threading.Lock()
_fixture = {}


def _zones(port, port2):
    """Every case's zone; port is the peers', port2 a second one for the
    DANE-TA peer (2 1 1 lives at _PORT2._tcp of the same host)."""
    ee311 = tlsa('ee', 3, 1, 1)
    bad = '3 1 1 ' + hashlib.sha256(b'not the key').hexdigest()

    def mx(addr, *recs, name='mx'):
        return ['@ MX 10 %s' % name, '%s A %s' % (name, addr)] + \
            ['_%d._tcp.%s TLSA %s' % (port, name, r) for r in recs]
    return {
        'ee311.dane.test': mx(EE, ee311),
        'ee301.dane.test': mx(EE, tlsa('ee', 3, 0, 1)),
        'ee312.dane.test': mx(EE, tlsa('ee', 3, 1, 2)),
        'ee300.dane.test': mx(EE, tlsa('ee', 3, 0, 0)),
        'expired.dane.test': mx(EXPIRED, tlsa('ee-expired', 3, 1, 1)),
        # The leaf names mx.dane.test: the domain, its own (implicit) MX.
        'mx.dane.test': ['@ A %s' % TA,
                         '_%d._tcp TLSA %s' % (port, tlsa('ca', 2, 0, 1)),
                         '_%d._tcp TLSA %s' % (port2,
                                               tlsa('ca', 2, 1, 1))],
        'tawrong.dane.test': mx(WRONG, tlsa('ca', 2, 0, 1)),
        'baddigest.dane.test': mx(EE, bad),
        'pkix.dane.test': mx(EE, tlsa('ee', 0, 0, 1), tlsa('ee', 1, 1, 1)),
        'sf.dane.test': mx(EE, ee311),
        'bogus.dane.test': mx(EE, ee311),
        # A record that would not match: it must not count at all.
        'ins.dane.test': mx(EE, tlsa('wrong', 3, 1, 1)),
        'strip.dane.test': mx(PLAIN, ee311),
        'notlsa.dane.test': mx(EE),
        'fp.dane.test': mx(EE),
        'brk.dane.test': mx(BREAK, ee311),
        'down.dane.test': mx(DOWN, ee311),
        # Levels none and encrypt (-l and tls_policy): hosts whose TLSA
        # would verify at dane, and a secure zone without TLSA whose host
        # offers no STARTTLS (dane makes it may: plaintext).
        'none.dane.test': mx(NOTLS, ee311),
        'pnone.dane.test': mx(NOTLS, ee311),
        'penc.dane.test': mx(EE, ee311),
        'plain.dane.test': mx(PLAIN),
        'pencplain.dane.test': mx(PLAIN),
        'two.dane.test': ['@ MX 10 mx', '@ MX 20 mx2', 'mx A %s' % EE,
                          'mx2 A %s' % EXPIRED,
                          '_%d._tcp.mx TLSA %s' % (port, ee311),
                          '_%d._tcp.mx2 TLSA %s' % (port, ee311)],
    }


def _start():
    tmp = tempfile.mkdtemp(prefix='ferry-check-')
    os.chmod(tmp, 0o755)
    port, port2 = free_port(), free_port()

    def tls_peer(addr, leaf, chain=(), p=port):
        return SmtpPeer(addr=addr, port=p, tls='starttls',
                        certfile=chain_file(tmp, leaf, *chain),
                        keyfile=dane_file(leaf + '.key'))
    peers = [tls_peer(EE, 'ee'), tls_peer(EXPIRED, 'ee-expired'),
             tls_peer(TA, 'leaf', ('ca',)),
             tls_peer(TA, 'leaf', ('ca',), p=port2),
             tls_peer(WRONG, 'wrong', ('ca',)),
             SmtpPeer(addr=PLAIN, port=port),
             SmtpPeer(addr=BREAK, port=port, tls='starttls',
                      certfile=chain_file(tmp, 'ee'),
                      keyfile=dane_file('ee.key'), tls_break=True),
             SmtpPeer(addr=SMTPS, port=port, tls='smtps',
                      certfile=chain_file(tmp, 'ee'),
                      keyfile=dane_file('ee.key')),
             tls_peer(NOTLS, 'ee')]
    started = []
    rig = None
    try:
        for p in peers:
            started.append(p.start())
        rig = DnssecRig(_zones(port, port2),
                        kinds={'bogus.dane.test': 'bogus',
                               'ins.dane.test': 'insecure'},
                        servfail=['_%d._tcp.mx.sf.dane.test' % port])
        rig.start()
    except Exception:
        for p in started:
            p.stop()
        raise
    spki = hashlib.sha256(open(dane_file('ee.spki.der'), 'rb').read())
    policy = os.path.join(tmp, 'tls_policy')
    with open(policy, 'w') as f:
        f.write('fp.dane.test fingerprint match=sha256:%s\n'
                'ins.dane.test dane-only\n'
                'pnone.dane.test none\n'
                'penc.dane.test encrypt\n'
                'pencplain.dane.test encrypt\n' % spki.hexdigest())
    confs = {}
    for name, extra in (('dane', {}), ('dane-only', {}),
                        ('policy', {'tls_policy': policy}),
                        ('pkix', {'ca_file': dane_file('ca.pem')}),
                        ('relay', {'smarthost': '[%s]:%d' % (SMTPS, port),
                                   'smarthost_tls': 'smtps'}),
                        ('relay25', {'smarthost': '[%s]' % PLAIN,
                                     'smarthost_tls': 'may'}),
                        ('relaypol', {'smarthost': 'penc.dane.test:%d' % port,
                                      'smarthost_tls': 'none',
                                      'tls_policy': policy})):
        c = {'hostname': 'ferry.test', 'log': 'stderr', 'smarthost': '',
             'queue_dir': os.path.join(tmp, 'queue'),
             'dns_servers': rig.server, 'dnssec': 'yes',
             'mx_port': str(port),
             'outbound_tls': 'dane-only' if name == 'dane-only' else
             'dane'}
        c.update(extra)
        path = os.path.join(tmp, name + '.conf')
        with open(path, 'w') as f:
            f.write(''.join('%s = %s\n' % kv for kv in c.items()))
        confs[name] = path
    _fixture.update(rig=rig, peers=peers, notls=peers[-1],
                    smtps=peers[-2], ee=peers[0], port=port,
                    port2=port2,
                    confs=confs, tmp=tmp)
    atexit.register(_stop)


def _stop():
    for p in _fixture.get('peers', ()):
        p.stop()
    rig = _fixture.get('rig')
    if rig is not None:
        rig.stop()
        rig.remove()
    if _fixture.get('tmp') and not os.environ.get('FERRY_KEEP'):
        shutil.rmtree(_fixture['tmp'], ignore_errors=True)


def fixture():
    with _lock:
        if 'error' in _fixture:
            raise TestFailure('the shared rig did not start: %s'
                              % _fixture['error'])
        if 'rig' not in _fixture:
            try:
                _start()
            except Exception as e:
                _fixture['error'] = str(e)[-2000:]
                raise
        return _fixture


class Report:
    def __init__(self, args, p):
        self.args = args
        self.rc = p.returncode
        self.out = p.stdout.decode('utf-8', 'replace')
        self.err = p.stderr.decode('utf-8', 'replace')
        self.verdicts = VERDICT.findall(self.out)
        self.results = RESULT.findall(self.out)
        o = OVERALL.findall(self.out)
        self.overall = o[0] if len(o) == 1 else None

    def fail(self, what):
        raise TestFailure('`ferry check %s`: %s\nexit %d\n--- stdout:\n%s'
                          '--- stderr:\n%s' % (' '.join(self.args), what,
                                               self.rc, self.out,
                                               self.err[-2000:]))

    def expect(self, rc, verdicts, overall):
        """Exit code rc; the host verdicts match the regexes verdicts,
        in order; the overall line matches overall."""
        if self.rc != rc:
            self.fail('exit %d, want %d' % (self.rc, rc))
        if len(self.verdicts) != len(verdicts) or not all(
                re.match(w, v) for w, v in zip(verdicts, self.verdicts)):
            self.fail('verdicts %r, want %r' % (self.verdicts, verdicts))
        if self.overall is None or not re.match(overall, self.overall):
            self.fail('overall %r, want %r' % (self.overall, overall))
        return self

    def has(self, pattern):
        if not re.search(pattern, self.out, re.M):
            self.fail('no line matching %r' % pattern)
        return self

    def lacks(self, pattern):
        if re.search(pattern, self.out, re.M):
            self.fail('a line matching %r' % pattern)
        return self


def run_check(*args, conf='dane'):
    fx = fixture()
    cmd = [FERRY_BIN, '-c', fx['confs'][conf], 'check'] + list(args)
    try:
        p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=CHECK_TIMEOUT * SLOW)
    except subprocess.TimeoutExpired:
        raise TestFailure('`ferry check %s` did not exit within %ds'
                          % (' '.join(args), CHECK_TIMEOUT * SLOW))
    r = Report(args, p)
    m = sanitizer_report(r.err)
    if m is not None:
        r.fail('sanitizer report %r' % m)
    for peer in fx['peers']:
        with peer.lock:
            mail = [c for s in peer.sessions for c in s.commands
                    if c.split(' ')[0].upper() in ('MAIL', 'RCPT', 'DATA')]
        if mail:
            r.fail('a peer got %r: check must not send mail' % mail)
    return r


def prefix(rec):
    """"3 1 1 ab12..." as dane_tlsa_format() shows rec: 6 bytes of data."""
    u, s, m, data = rec.split()
    return r'%s %s %s %s%s' % (u, s, m, data[:12],
                               r'\.\.\.' if len(data) > 12 else '')


# --- verified: exit 0 ---------------------------------------------------

def verified_ee(domain, rec):
    r = run_check(domain).expect(
        0, [r'verified \(DANE-EE %s\)$' % prefix(rec)],
        r'verified \(1 of 1 MX host verified\)')
    r.has(r'^MX %s \(secure\):$' % domain)
    r.has(r'^  TLSA _%d\._tcp\.mx\.%s: 1 record \(secure\)$'
          % (fixture()['port'], re.escape(domain)))
    r.has(r'^    DANE: matched TLSA record %s$' % prefix(rec))
    r.has(r'^    STARTTLS: offered$')
    r.has(r'^      0: subject CN=')
    return r


def test_check_dane_ee_311():
    verified_ee('ee311.dane.test', tlsa('ee', 3, 1, 1))


def test_check_dane_ee_301():
    verified_ee('ee301.dane.test', tlsa('ee', 3, 0, 1))


def test_check_dane_ee_312():
    verified_ee('ee312.dane.test', tlsa('ee', 3, 1, 2))


def test_check_dane_ee_300():
    verified_ee('ee300.dane.test', tlsa('ee', 3, 0, 0))


def test_check_dane_ee_expired_311():
    """DANE-EE ignores dates: the chain shows 2002, still verified."""
    r = verified_ee('expired.dane.test', tlsa('ee-expired', 3, 1, 1))
    r.has(r'^         valid \d{4}-\d\d-\d\d to 2002-')
    r.has(r'not trusted \(expired or not yet valid\)')


def test_check_dane_ta_201():
    rec = tlsa('ca', 2, 0, 1)
    r = run_check('mx.dane.test').expect(
        0, [r'verified \(DANE-TA %s\)$' % prefix(rec)],
        r'verified \(1 of 1 MX host verified\)')
    r.has(r'^MX mx\.dane\.test: none \(secure\); the domain is its own')
    r.has(r'^mx\.dane\.test \(implicit MX\)$')
    r.has(r'^    chain \(2 certificates, as sent\):$')
    r.has(r'^         DNS names: mx\.dane\.test$')


def test_check_dane_ta_211_other_port():
    """-p: the TLSA records of _PORT2._tcp, the peer listening there."""
    fx = fixture()
    rec = tlsa('ca', 2, 1, 1)
    r = run_check('-p', str(fx['port2']), 'mx.dane.test').expect(
        0, [r'verified \(DANE-TA %s\)$' % prefix(rec)],
        r'verified \(1 of 1 MX host verified\)')
    r.has(r'^  mx\.dane\.test\[127\.0\.0\.4\]:%d:$' % fx['port2'])


# --- not verified: exit 69 ----------------------------------------------

UNTRUSTED = r'deferred: Untrusted TLS, no DANE TLSA record matched \(4\.7\.5\)$'


def test_check_dane_wrong_digest():
    run_check('baddigest.dane.test').expect(
        69, [UNTRUSTED], r'not verified \(0 of 1 MX host verified\)'
    ).has(r'^    DANE: no TLSA record matched$').has(r'^    TLS: TLSv1\.')


def test_check_dane_ta_wrong_name():
    run_check('tawrong.dane.test').expect(
        69, [UNTRUSTED], r'not verified').has(
        r'^         DNS names: wrong\.dane\.test$')


def test_check_pkix_only_encrypted():
    run_check('pkix.dane.test').expect(
        69, [r'encrypted, not verified$'], r'not verified').has(
        r'^    0 0 1 [0-9a-f]{12}\.\.\. \(unusable: PKIX usage\)$').has(
        r'^  policy: secure TLSA records, none usable: TLS mandatory')


def test_check_insecure_zone_opportunistic():
    """dane: an insecure MX RRset makes it may (the TLSA record, which
    would not match, does not count)."""
    run_check('ins.dane.test').expect(
        69, [r'encrypted, not verified$'], r'not verified').has(
        r'^MX ins\.dane\.test \(insecure\):$').has(
        r'^  policy: no DNSSEC-secure MX RRset: DANE does not apply$'
    ).lacks(r'DANE: ')


DANE_ONLY_INSECURE = (r'deferred: dane-only: the MX RRset or the MX host '
                      r'addresses are not DNSSEC-secure \(4\.7\.5\); a '
                      r'delivery does not connect$')


def test_check_insecure_zone_dane_only_option():
    run_check('-l', 'dane-only', 'ins.dane.test').expect(
        69, [DANE_ONLY_INSECURE], r'not verified').lacks(r'banner:').has(
        r'^ferry check ins\.dane\.test: level dane-only \(-l\)')


def test_check_insecure_zone_dane_only_config():
    run_check('ins.dane.test', conf='dane-only').expect(
        69, [DANE_ONLY_INSECURE], r'not verified').lacks(r'banner:')


def test_check_no_starttls_with_tlsa():
    """A stripped STARTTLS is an attack: deferred, not plaintext."""
    run_check('strip.dane.test').expect(
        69, [r'deferred: TLS is required, but was not offered '
             r'\(4\.7\.4\)$'], r'not verified').has(
        r'^    STARTTLS: not offered$')


def test_check_no_starttls_at_may_is_plaintext():
    run_check('-l', 'may', 'strip.dane.test').expect(
        69, [r'plaintext \(STARTTLS not offered\)$'], r'not verified')


def test_check_secure_no_tlsa():
    run_check('notlsa.dane.test').expect(
        69, [r'encrypted, not verified$'], r'not verified').has(
        r'^  TLSA _\d+\._tcp\.mx\.notlsa\.dane\.test: none \(')
    run_check('notlsa.dane.test', conf='dane-only').expect(
        69, [r'deferred: dane-only: no TLSA records \(4\.7\.5\)'],
        r'not verified')


def test_check_every_mx_counts():
    """MX 10 verified, MX 20 presents a key not published: the domain is
    not verified (a delivery may land on MX 20)."""
    run_check('two.dane.test').expect(
        69, [r'verified \(DANE-EE ', UNTRUSTED],
        r'not verified \(1 of 2 MX hosts verified\)')


def test_check_tls_policy():
    """tls_policy overrides outbound_tls per domain: a fingerprint pin
    verifies, a dane-only entry defers the insecure zone."""
    run_check('fp.dane.test', conf='policy').expect(
        0, [r'verified \(fingerprint\)$'], r'verified').has(
        r'level fingerprint \(tls_policy\)')
    run_check('ins.dane.test', conf='policy').expect(
        69, [DANE_ONLY_INSECURE], r'not verified')
    run_check('ee311.dane.test', conf='policy').expect(
        0, [r'verified \(DANE-EE '], r'verified').has(
        r'level dane \(outbound_tls\)')


def test_check_level_fingerprint_option():
    """-l fingerprint takes the pins from the domain's tls_policy entry
    (it said the entry was missing, exit 64, whenever -l was given);
    -l other levels still win over the entry's level."""
    run_check('-l', 'fingerprint', 'fp.dane.test', conf='policy').expect(
        0, [r'verified \(fingerprint\)$'], r'verified').has(
        r'level fingerprint \(-l\)')
    r = run_check('-l', 'fingerprint', 'ee311.dane.test', conf='policy')
    if r.rc != 64 or 'needs a tls_policy entry with match=' not in r.err:
        r.fail('no pin for ee311.dane.test: want exit 64')
    run_check('-l', 'encrypt', 'fp.dane.test', conf='policy').expect(
        69, [ENCRYPTED], ONE_HOST_UNVERIFIED).has(r'level encrypt \(-l\)')


# --- levels none and encrypt, by -l and by tls_policy -------------------

PLAINTEXT_NONE = r'plaintext \(level none\)$'
ENCRYPTED = r'encrypted, not verified$'
NOT_OFFERED = r'deferred: TLS is required, but was not offered \(4\.7\.4\)$'
ONE_HOST_UNVERIFIED = r'not verified \(0 of 1 MX host verified\)$'


def _none_sessions():
    """How many sessions 127.0.0.9 has had: a check's are those after."""
    peer = fixture()['notls']
    with peer.lock:
        return len(peer.sessions)


def _level_none_report(r, since):
    """Level none: no TLSA lookup, no STARTTLS though the host offers
    it (127.0.0.9 presents the key ee311's TLSA names), plaintext; the
    sessions 127.0.0.9 had since `since` (this check's) show it."""
    r.has(r'^  level: none: no TLS$').has(r'^    STARTTLS: offered$')
    r.lacks(r'^  TLSA ').lacks(r'^    TLS: ').lacks(r'DANE: ')
    peer = fixture()['notls']
    with peer.lock:
        mine = peer.sessions[since:]
        cmds = [c for s in mine for c in s.commands]
        tls = [s for s in mine if s.tls]
    if not any(c.upper().startswith(('EHLO', 'HELO')) for c in cmds):
        r.fail('127.0.0.9 saw no EHLO: %r' % cmds)
    if tls or any(c.upper().startswith('STARTTLS') for c in cmds):
        r.fail('level none sent STARTTLS to 127.0.0.9: %r' % cmds)
    return r


def test_check_level_none_option():
    """-l none on a host with secure TLSA and STARTTLS: plaintext, 69."""
    since = _none_sessions()
    r = run_check('-l', 'none', 'none.dane.test').expect(
        69, [PLAINTEXT_NONE], ONE_HOST_UNVERIFIED)
    r.has(r'^ferry check none\.dane\.test: level none \(-l\), ')
    r.has(r'^    result: plaintext \(level none\)$')
    _level_none_report(r, since)


def test_check_level_encrypt_option():
    """-l encrypt: TLS without authentication (the TLSA record that
    would verify at dane does not count), 69; a host without STARTTLS
    is deferred 4.7.4 (at dane, with no TLSA, it is plaintext), 69."""
    r = run_check('-l', 'encrypt', 'ee311.dane.test').expect(
        69, [ENCRYPTED], ONE_HOST_UNVERIFIED)
    r.has(r'^ferry check ee311\.dane\.test: level encrypt \(-l\), ')
    r.has(r'^  level: encrypt: TLS mandatory, not authenticated$')
    r.has(r'^    STARTTLS: offered$').has(r'^    TLS: TLSv1\.[23] with ')
    r.lacks(r'DANE: ')
    r = run_check('-l', 'encrypt', 'plain.dane.test').expect(
        69, [NOT_OFFERED], ONE_HOST_UNVERIFIED)
    r.has(r'^    STARTTLS: not offered$').lacks(r'^    TLS: ')
    run_check('plain.dane.test').expect(
        69, [r'plaintext \(STARTTLS not offered\)$'], ONE_HOST_UNVERIFIED)


def test_check_tls_policy_none_encrypt():
    """tls_policy entries at none and encrypt override outbound_tls =
    dane: each domain is checked with and without the policy file."""
    since = _none_sessions()
    r = run_check('pnone.dane.test', conf='policy').expect(
        69, [PLAINTEXT_NONE], ONE_HOST_UNVERIFIED)
    r.has(r'^ferry check pnone\.dane\.test: level none \(tls_policy\), ')
    _level_none_report(r, since)
    r = run_check('penc.dane.test', conf='policy').expect(
        69, [ENCRYPTED], ONE_HOST_UNVERIFIED)
    r.has(r'^ferry check penc\.dane\.test: level encrypt \(tls_policy\), ')
    r.has(r'^    TLS: TLSv1\.[23] with ').lacks(r'DANE: ')
    r = run_check('pencplain.dane.test', conf='policy').expect(
        69, [NOT_OFFERED], ONE_HOST_UNVERIFIED)
    r.has(r'level encrypt \(tls_policy\)').has(r'^    STARTTLS: not offered$')
    # without the policy: dane verifies penc, pencplain goes plaintext
    run_check('penc.dane.test').expect(
        0, [r'verified \(DANE-EE '], r'verified \(1 of 1 MX host verified\)')
    run_check('pencplain.dane.test').expect(
        69, [r'plaintext \(STARTTLS not offered\)$'], ONE_HOST_UNVERIFIED)
    # -l beats tls_policy
    run_check('-l', 'none', 'penc.dane.test', conf='policy').expect(
        69, [PLAINTEXT_NONE], ONE_HOST_UNVERIFIED).has(
        r'level none \(-l\)').has(r'^    STARTTLS: offered$')


def test_check_handshake_broken():
    """A secure usable TLSA RRset makes TLS mandatory: a failed
    handshake defers; at may the delivery would retry in plaintext."""
    run_check('brk.dane.test').expect(
        69, [r'deferred: cannot start TLS \(4\.7\.5\)$'],
        r'not verified').has(r'^    TLS: handshake failed: ')
    run_check('-l', 'may', 'brk.dane.test').expect(
        69, [r'plaintext \(a delivery retries without TLS\)$'],
        r'not verified')


def test_check_pkix_levels():
    """secure and verify against a ca_file holding the test CA: the
    leaf names mx.dane.test, the one in tawrong.dane.test does not.
    verify wants the MX host's name, secure the domain's (or one below
    it), as Postfix's smtp_tls_verify_cert_match and
    smtp_tls_secure_cert_match."""
    run_check('-l', 'secure', 'mx.dane.test', conf='pkix').expect(
        0, [r'verified \(a chain to ca_file naming the domain\)$'],
        r'verified').has(r'^    PKIX \(ca_file\): trusted; the '
                         r'certificate names mx\.dane\.test$')
    run_check('-l', 'verify', 'mx.dane.test', conf='pkix').expect(
        0, [r'verified \(a chain to ca_file naming the host\)$'],
        r'verified')
    run_check('-l', 'secure', 'tawrong.dane.test', conf='pkix').expect(
        69, [r'deferred: Trusted TLS, the certificate does not name '
             r'tawrong\.dane\.test or a name below it \(4\.7\.5\)$'],
        r'not verified')
    run_check('-l', 'verify', 'tawrong.dane.test', conf='pkix').expect(
        69, [r'deferred: Trusted TLS, the certificate does not name '
             r'mx\.tawrong\.dane\.test \(4\.7\.5\)$'], r'not verified')
    run_check('-l', 'verify', 'ee311.dane.test', conf='pkix').expect(
        69, [r'deferred: Untrusted TLS, no chain to ca_file'],
        r'not verified')


# --- DNS or connection trouble: exit 75; no domain: 68 ------------------

def test_check_connection_refused():
    run_check('down.dane.test').expect(
        75, [r'deferred: connect: Connection refused$'],
        r'deferred, temporary failure \(0 of 1 MX host verified\)')


def test_check_tlsa_servfail_deferred():
    run_check('sf.dane.test').expect(
        75, [r'deferred: TLSA lookup error \(SERVFAIL, timeout, bogus '
             r'DNSSEC or a malformed answer\); not delivering without DANE '
             r'\(4\.7\.5\); a delivery does not connect$'],
        r'deferred, temporary failure').lacks(r'banner:').has(
        r'^  TLSA _\d+\._tcp\.mx\.sf\.dane\.test: lookup failed')


def test_check_bogus_zone_deferred():
    run_check('bogus.dane.test').expect(
        75, [], r'deferred, temporary failure').has(
        r'^MX bogus\.dane\.test: lookup failed').has(
        r'^verdict: deferred: MX lookup failed').lacks(r'banner:')


def test_check_nxdomain():
    run_check('nx.dane.test').expect(68, [], r'bounced').has(
        r'^MX nx\.dane\.test: NXDOMAIN')


def test_check_usage():
    fx = fixture()
    for args in ([], ['-p', '0', 'a.dane.test'], ['-l', 'loud', 'x.test'],
                 ['a.test', 'b.test'], ['-x', 'a.test'], ['bad..name'],
                 ['[a.test'], ['[a.test]x'], ['a.test:0'],
                 ['[a.test]:65536'], ['[a..test]'], ['2001:db8::1']):
        p = subprocess.run([FERRY_BIN, '-c', fx['confs']['dane'], 'check']
                           + args, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30 * SLOW)
        check(p.returncode == 64 and p.stdout == b'' and
              b'ferry check' in p.stderr,
              '`ferry check %s`: exit %d, stdout %r, stderr %r'
              % (' '.join(args), p.returncode, p.stdout[:200],
                 p.stderr[:300]))


# --- "[host]:port", address literals, the smarthost ---------------------

def test_check_bracketed_host():
    """[host]: no MX lookup (RFC 5321 section 5.1, as a delivery to a
    smarthost in brackets); the host's own secure address answer stands
    in for the MX RRset, so its TLSA records apply; a port after the
    brackets picks the TLSA records and the peer of that port."""
    fx = fixture()
    r = run_check('[mx.dane.test]').expect(
        0, [r'verified \(DANE-TA %s\)$' % prefix(tlsa('ca', 2, 0, 1))],
        r'verified \(1 of 1 host verified\)')
    r.has(r'^ferry check \[mx\.dane\.test\]: level dane \(outbound_tls\), '
          r'port %d$' % fx['port'])
    r.has(r'^mx\.dane\.test \(no MX lookup\)$').lacks(r'^MX ')
    r.has(r'^  addresses \(secure\): 127\.0\.0\.4$')
    r = run_check('[MX.dane.test.]:%d' % fx['port2']).expect(
        0, [r'verified \(DANE-TA %s\)$' % prefix(tlsa('ca', 2, 1, 1))],
        r'verified')
    r.has(r'^  mx\.dane\.test\[127\.0\.0\.4\]:%d:$' % fx['port2'])


def test_check_bracketed_host_secure_names_host():
    """secure for [host]: the certificate must name the host itself (a
    name below it is not enough), as a delivery to a literal next hop."""
    run_check('-l', 'secure', '[mx.dane.test]', conf='pkix').expect(
        0, [r'verified \(a chain to ca_file naming the host\)$'],
        r'verified')
    run_check('-l', 'secure', '[mx.tawrong.dane.test]', conf='pkix').expect(
        69, [r'deferred: Trusted TLS, the certificate does not name '
             r'mx\.tawrong\.dane\.test \(4\.7\.5\)$'], r'not verified')


def _sessions(peer):
    with peer.lock:
        return len(peer.sessions)


# serial: the count of the EE peer's sessions would take in a concurrent
# check's connection to it (ee311.dane.test and others) as dane-only's.
@serial
def test_check_address_literal():
    """[192.0.2.1]: no DNS at all.  DANE has no name to look TLSA up
    for: dane is may there, dane-only defers without connecting."""
    fx = fixture()
    r = run_check('[%s]:%d' % (EE, fx['port'])).expect(
        69, [r'encrypted, not verified$'],
        r'not verified \(0 of 1 host verified\)')
    r.has(r'^  address: 127\.0\.0\.2 \(a literal: no DNS lookup\)$')
    r.has(r'^  policy: an address literal: DANE does not apply$')
    r.has(r'^    STARTTLS: offered$').has(r'^    TLS: TLSv1\.')
    before = _sessions(fx['ee'])
    run_check('-l', 'dane-only', '[%s]:%d' % (EE, fx['port'])).expect(
        69, [r'deferred: dane-only: DANE needs a host name to look up '
             r'TLSA records for, not an address literal \(4\.7\.5\); a '
             r'delivery does not connect$'], r'not verified').lacks(
        r'banner:')
    check(_sessions(fx['ee']) == before,
          'dane-only connected to an address literal')


def test_check_smarthost_implicit_tls():
    """No destination: the smarthost, at smarthost_tls; smtps shakes
    hands before the banner (the peer speaks TLS only, so a STARTTLS
    dialogue would fail)."""
    fx = fixture()
    before = _sessions(fx['smtps'])
    r = run_check(conf='relay').expect(
        69, [r'encrypted, not verified$'], r'not verified')
    r.has(r'^ferry check \[127\.0\.0\.10\]: level encrypt '
          r'\(smarthost_tls\), port %d, implicit TLS \(smtps\)$'
          % fx['port'])
    r.has(r'^    TLS: TLSv1\.').lacks(r'STARTTLS').lacks(r'^note: ')
    with fx['smtps'].lock:
        new = fx['smtps'].sessions[before:]
    check(len(new) == 1 and new[0].tls,
          'smtps peer sessions %r' % [(s.tls, s.commands) for s in new])
    # The same host named on the command line is the smarthost too.
    run_check('[%s]:%d' % (SMTPS, fx['port']), conf='relay').has(
        r'level encrypt \(smarthost_tls\)').has(r'implicit TLS')
    # -l smtps against a server that speaks plaintext first: the
    # handshake fails and, TLS being mandatory, the host is deferred.
    run_check('-l', 'smtps', '[%s]:%d' % (PLAIN, fx['port'])).expect(
        69, [r'deferred: cannot start TLS \(4\.7\.5\)$'],
        r'not verified').has(r'^    TLS: handshake failed: ')


def test_check_smarthost_without_port_takes_p():
    """A smarthost that names no port is checked at 25, but -p says
    which port to check instead (only a port in the destination wins
    over -p): -p was ignored there, and port 25 checked."""
    fx = fixture()
    r = run_check('-p', str(fx['port']), conf='relay25').expect(
        69, [r'plaintext \(STARTTLS not offered\)$'], r'not verified')
    r.has(r'^ferry check \[127\.0\.0\.6\]: level may \(smarthost_tls\), '
          r'port %d$' % fx['port'])
    r.has(r'^  127\.0\.0\.6\[127\.0\.0\.6\]:%d:$' % fx['port'])
    # Named on the command line, without a port, it is the smarthost too.
    run_check('-p', str(fx['port']), '[%s]' % PLAIN, conf='relay25').has(
        r'level may \(smarthost_tls\), port %d$' % fx['port'])
    # Without -p: port 25, as a delivery there.
    run_check('-l', 'none', conf='relay25').has(r', port 25$')


def test_check_dane_only_unusable():
    """dane-only and secure TLSA records none of which is usable: as
    Postfix's dane-only, no connection (dane makes it encrypt)."""
    run_check('-l', 'dane-only', 'pkix.dane.test').expect(
        69, [r'deferred: dane-only: no usable TLSA records \(4\.7\.5\); a '
             r'delivery does not connect$'], r'not verified').lacks(
        r'banner:')


def test_check_smarthost_by_name_with_policy():
    """A smarthost without brackets gets its MX lookup, and a tls_policy
    entry for it wins over smarthost_tls, as in a delivery; checking it
    is no occasion for the note that deliveries go to the smarthost."""
    fx = fixture()
    r = run_check(conf='relaypol').expect(
        69, [r'encrypted, not verified$'],
        r'not verified \(0 of 1 MX host verified\)')
    r.has(r'^ferry check penc\.dane\.test: level encrypt \(tls_policy\), '
          r'port %d$' % fx['port']).has(r'^MX penc\.dane\.test ')
    r.lacks(r'^note: ')
