"""
test_dane.py - DANE for MX delivery (issue 5, RFC 7672 with Postfix's
dane and dane-only semantics) against the DNSSEC rig (dnsrig.DnssecRig:
nsd serving signed zones under dane.test, a validating unbound) and
peers.SmtpPeer presenting the certificates of test/certs/dane.  Each
test builds its own zone (the TLSA owner carries the peer's port), sends
one message and asserts the outcome (status, dsn), the Postfix-worded TLS
log line, which TLSA record matched, and what the peer saw: TLS on, the
SNI, and no MAIL at all when the delivery must not happen.  TLSA data
are computed here from the DER and SPKI DER files.
"""

import functools
import hashlib
import os
import re
import signal
import tempfile
import time

import peers
from dnsrig import DnssecRig
from ferrytest import Daemon, check
from peers import SmtpPeer, wait_delivery, bounce_ids

# The rig's first lookups are slow: a longer wait than the default.
one_delivery = functools.partial(peers.one_delivery, timeout=20.0)

CERTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'certs', 'dane')

BODY = (b'From: Sender <sender@example.test>\r\nTo: x@a.dane.test\r\n'
        b'Subject: dane test\r\nMessage-ID: <dane1@example.test>\r\n'
        b'\r\nonly to the key the domain published\r\n')

NO_RETRY = dict(retry_min='1h', retry_max='2h', queue_lifetime='1d')

TLS_LINE = re.compile(
    r'ferry/smtp\[\d+\]: (Anonymous|Untrusted|Trusted|Verified) TLS '
    r'connection established to (\S+)\[([^\]]+)\]:(\d+): (TLSv1\.[23]) '
    r'with cipher (\S+) \((\d+)/(\d+) bits\)$')
MATCHED = re.compile(r': (\S+)\[([^\]]+)\]:(\d+): Matched DANE TLSA '
                     r'record (\d) (\d) (\d) ([0-9a-f]+)')


def dane_file(name):
    return os.path.join(CERTS, name)


def tlsa(name, usage, selector, mtype):
    """The TLSA record data for test/certs/dane/NAME."""
    path = dane_file(name + ('.spki.der' if selector == 1 else '.der'))
    with open(path, 'rb') as f:
        data = f.read()
    if mtype == 1:
        h = hashlib.sha256(data).hexdigest()
    elif mtype == 2:
        h = hashlib.sha512(data).hexdigest()
    else:
        h = data.hex()
    return '%d %d %d %s' % (usage, selector, mtype, h)


def chain_file(tmp, *names):
    """One PEM file with the named certificates, leaf first."""
    p = os.path.join(tmp, '-'.join(names) + '.pem')
    with open(p, 'w') as out:
        for n in names:
            with open(dane_file(n + '.pem')) as f:
                out.write(f.read())
    return p


def peer(tmp, leaf='ee', chain=(), **kw):
    return SmtpPeer(tls='starttls', certfile=chain_file(tmp, leaf, *chain),
                    keyfile=dane_file(leaf + '.key'), **kw)


def mx_zone(port, records, mx='mx'):
    """A zone with @ MX 10 mx, mx A 127.0.0.1 and the TLSA records."""
    return ['@ MX 10 %s' % mx, 'mx A 127.0.0.1'] + \
        ['_%d._tcp.mx TLSA %s' % (port, r) for r in records]


def daemon(name, rig, port, level='dane', **cfg):
    c = dict(NO_RETRY, smarthost='', mx_port=str(port),
             dns_servers=rig.server, dnssec='yes', outbound_tls=level)
    c.update(cfg)
    return Daemon(name, **c)


def tls_lines(d):
    return [m.groups() for m in (TLS_LINE.search(l) for l in
                                 d.log_text().splitlines()) if m]


def matched(d):
    return [m.groups() for m in (MATCHED.search(l) for l in
                                 d.log_text().splitlines()) if m]


def mail_cmds(p):
    with p.lock:
        return [(s.tls, c) for s in p.sessions for c in s.commands
                if c.split(' ')[0].upper() in ('MAIL', 'RCPT', 'DATA')]


def no_mail_sent(p, what):
    check(mail_cmds(p) == [], '%s: the peer got %r' % (what, mail_cmds(p)))


def deferred_kept(d, qid):
    check(bounce_ids(d, qid) == [] and d.mailq_ids() == [qid],
          'not deferred: queue %r, bounces %r' % (d.mailq_ids(),
                                                  bounce_ids(d, qid)))


# --- matching records: delivered, Verified -------------------------------

def verified(name, leaf, rec, chain=(), domain='a.dane.test',
             zone_of=None):
    """A secure zone publishing rec; the peer presents leaf (+ chain):
    delivered inside TLS, Verified, the record logged as matched, SNI
    the MX host."""
    with tempfile.TemporaryDirectory() as tmp, \
            peer(tmp, leaf, chain) as p:
        records = rec(p.port) if callable(rec) else rec
        zones = zone_of(p.port) if zone_of else \
            {domain: mx_zone(p.port, [records])}
        mxhost = 'mx.' + domain if not zone_of else domain
        with DnssecRig(zones) as rig, daemon(name, rig, p.port) as d:
            qid = d.send_message(BODY, rcpts=['x@' + domain])
            r = one_delivery(d, qid, 'sent', r'2\.0\.0')
            check(r.relay == '%s[127.0.0.1]:%d' % (mxhost, p.port),
                  'relay %r' % r.relay)
            lines = tls_lines(d)
            check([l[:4] for l in lines] ==
                  [('Verified', mxhost, '127.0.0.1', str(p.port))],
                  'TLS lines %r' % lines)
            m = matched(d)
            want = records.split()
            check(len(m) == 1 and m[0][0] == mxhost and
                  list(m[0][3:6]) == want[:3] and
                  want[3].startswith(m[0][6][:12]),
                  'matched lines %r, want %s' % (m, records))
            p.wait_idle()
            got = p.delivered()
            check(len(got) == 1, 'peer got %r' % got)
            cmds = mail_cmds(p)
            check(cmds and all(t for t, _ in cmds),
                  'MAIL/RCPT/DATA outside TLS: %r' % cmds)
            with p.lock:
                snis = [s.sni for s in p.sessions if s.tls]
            check(snis == [mxhost], 'SNI %r, want %s' % (snis, mxhost))
            return d


def test_dane_ee_311_verified():
    verified('dane311', 'ee', tlsa('ee', 3, 1, 1))


def test_dane_ee_301_verified():
    verified('dane301', 'ee', tlsa('ee', 3, 0, 1))


def test_dane_ee_312_verified():
    verified('dane312', 'ee', tlsa('ee', 3, 1, 2))


def test_dane_ee_300_verified():
    verified('dane300', 'ee', tlsa('ee', 3, 0, 0))


def test_dane_ee_expired_311_verified():
    """DANE-EE ignores the dates."""
    verified('daneexp', 'ee-expired', tlsa('ee-expired', 3, 1, 1))


def ta_zone(rec):
    """The leaf names mx.dane.test: that is the domain (implicit MX)."""
    return lambda port: {'mx.dane.test': [
        '@ A 127.0.0.1', '_%d._tcp TLSA %s' % (port, rec)]}


def test_dane_ta_201_verified():
    rec = tlsa('ca', 2, 0, 1)
    verified('dane201', 'leaf', rec, chain=('ca',), domain='mx.dane.test',
             zone_of=ta_zone(rec))


def test_dane_ta_211_verified():
    rec = tlsa('ca', 2, 1, 1)
    verified('dane211', 'leaf', rec, chain=('ca',), domain='mx.dane.test',
             zone_of=ta_zone(rec))


# --- refusals: deferred, nothing sent -----------------------------------

def refused(name, leaf, zones_of, dsn_re, text_re, chain=(), level='dane',
            kinds=None, servfail_of=None, domain='a.dane.test', tls=True,
            tls_line=None):
    """The delivery is deferred with dsn_re and the peer never saw MAIL
    (in TLS or out of it)."""
    with tempfile.TemporaryDirectory() as tmp:
        if tls:
            p = peer(tmp, leaf, chain)
        else:
            p = SmtpPeer()
        with p:
            sf = servfail_of(p.port) if servfail_of else ()
            with DnssecRig(zones_of(p.port), kinds=kinds,
                           servfail=sf) as rig, \
                    daemon(name, rig, p.port, level=level) as d:
                qid = d.send_message(BODY, rcpts=['x@' + domain])
                one_delivery(d, qid, 'deferred', dsn_re, text_re)
                p.wait_idle()
                no_mail_sent(p, name)
                deferred_kept(d, qid)
                if tls_line is not None:
                    check([l[0] for l in tls_lines(d)] == tls_line,
                          'TLS lines %r, want %r' % (tls_lines(d),
                                                     tls_line))
                check(matched(d) == [], 'matched %r' % matched(d))
                return d, p


def test_dane_wrong_digest_deferred():
    bad = '3 1 1 ' + hashlib.sha256(b'not the key').hexdigest()
    d, p = refused('danebad', 'ee',
                   lambda port: {'a.dane.test': mx_zone(port, [bad])},
                   r'4\.7\.5', r'^Server certificate not trusted',
                   tls_line=['Untrusted'])
    check(p.sessions and p.sessions[0].tls,
          'the handshake itself should have succeeded')


def test_dane_no_starttls_deferred():
    """TLSA published, STARTTLS not offered: stripped, an attack."""
    rec = tlsa('ee', 3, 1, 1)
    d, p = refused('danestrip', None,
                   lambda port: {'a.dane.test': mx_zone(port, [rec])},
                   r'4\.7\.4', r'TLS is required, but was not offered',
                   tls=False, tls_line=[])
    check(p.connections >= 1, 'ferry never connected')


def test_dane_ta_wrong_name_deferred():
    rec = tlsa('ca', 2, 0, 1)
    refused('danewrong', 'wrong', ta_zone(rec), r'4\.7\.5',
            r'^Server certificate not trusted', chain=('ca',),
            domain='mx.dane.test', tls_line=['Untrusted'])


def test_dane_tlsa_servfail_deferred():
    rec = tlsa('ee', 3, 1, 1)
    refused('danesf', 'ee',
            lambda port: {'a.dane.test': mx_zone(port, [rec])},
            r'4\.7\.5', r'TLSA lookup error',
            servfail_of=lambda port: ['_%d._tcp.mx.a.dane.test' % port],
            tls_line=[])


def test_dane_bogus_zone_deferred():
    rec = tlsa('ee', 3, 1, 1)
    refused('danebogus', 'ee',
            lambda port: {'a.dane.test': mx_zone(port, [rec])},
            r'4\.4\.3', r'type=MX', kinds={'a.dane.test': 'bogus'},
            tls_line=[])


def test_dane_only_insecure_deferred():
    rec = tlsa('ee', 3, 1, 1)
    refused('daneonlyins', 'ee',
            lambda port: {'a.dane.test': mx_zone(port, [rec])},
            r'4\.7\.5', r'not DNSSEC-secure', level='dane-only',
            kinds={'a.dane.test': 'insecure'}, tls_line=[])


def test_dane_only_no_tlsa_deferred():
    refused('daneonlynone', 'ee',
            lambda port: {'a.dane.test': mx_zone(port, [])},
            r'4\.7\.5', r'no TLSA records', level='dane-only',
            tls_line=[])


def test_dane_only_unusable_deferred():
    """Secure TLSA records, none usable (PKIX usages): dane makes TLS
    mandatory but unauthenticated; dane-only, as Postfix's, makes no
    connection without a record that can authenticate the server."""
    d, p = refused('daneonlypkix', 'ee',
                   lambda port: {'a.dane.test': mx_zone(
                       port, [tlsa('ee', 0, 0, 1), tlsa('ee', 1, 1, 1)])},
                   r'4\.7\.5', r'no usable TLSA records', level='dane-only',
                   tls_line=[])
    with p.lock:
        check(p.sessions == [], 'dane-only connected: %d sessions'
              % len(p.sessions))


# --- no DANE: opportunistic or unauthenticated --------------------------

def delivered_unverified(name, zones, kinds=None, level='dane',
                         servfail_of=None):
    with tempfile.TemporaryDirectory() as tmp, peer(tmp, 'ee') as p:
        sf = servfail_of(p.port) if servfail_of else ()
        with DnssecRig(zones(p.port), kinds=kinds, servfail=sf) as rig, \
                daemon(name, rig, p.port, level=level) as d:
            qid = d.send_message(BODY, rcpts=['x@a.dane.test'])
            one_delivery(d, qid, 'sent', r'2\.0\.0')
            p.wait_idle()
            check(len(p.delivered()) == 1, 'peer got %r' % p.delivered())
            cmds = mail_cmds(p)
            check(cmds and all(t for t, _ in cmds),
                  'not inside TLS: %r' % cmds)
            lines = [l[0] for l in tls_lines(d)]
            check(lines and 'Verified' not in lines,
                  'TLS lines %r' % tls_lines(d))
            check(matched(d) == [], 'matched %r' % matched(d))
            return d.log_text()	# the daemon's directory goes with it


def test_dane_pkix_only_encrypted_not_verified():
    recs = [tlsa('ee', 0, 0, 1), tlsa('ee', 1, 1, 1)]
    delivered_unverified('danepkix',
                         lambda port: {'a.dane.test': mx_zone(port, recs)})


def test_dane_unusable_records_warned():
    """Secure TLSA records that cannot authenticate (a PKIX usage, a
    SHA-256 digest one octet short) turn dane into unauthenticated TLS:
    right per RFC 7672 section 2.2, but the admin must be told which
    record was passed over and why (DESIGN.md: bad input in a DNS answer
    gets a clear error; Postfix warns about each such TLSA RR)."""
    short = tlsa('ee', 3, 1, 1)[:-2]
    recs = [tlsa('ee', 1, 1, 1), short]
    log = delivered_unverified('daneunusable',
                               lambda port: {'a.dane.test': mx_zone(port,
                                                                    recs)})
    warned = sorted(m.groups() for m in (re.search(
        r'ferry/smtp\[\d+\]: warning: _\d+\._tcp\.mx\.a\.dane\.test: '
        r'unusable TLSA record (\d \d \d) [0-9a-f]{12}\.\.\.: (.+)$', l)
        for l in log.splitlines()) if m)
    check(warned == [('1 1 1', 'PKIX usage'),
                     ('3 1 1', 'data of the wrong length')],
          'want one warning naming each unusable record: %r' % warned)


def test_dane_insecure_zone_opportunistic():
    rec = tlsa('wrong', 3, 1, 1)	# would not match: must not count
    delivered_unverified('daneins',
                         lambda port: {'a.dane.test': mx_zone(port, [rec])},
                         kinds={'a.dane.test': 'insecure'})


def test_dane_no_tlsa_secure_is_may():
    delivered_unverified('danenone',
                         lambda port: {'a.dane.test': mx_zone(port, [])})


# RFC 7672 section 2.2.2: a secure MX RRset naming a host in an unsigned
# zone (whose servers here SERVFAIL on TLSA): the host's addresses are
# insecure, so DANE does not apply and no TLSA lookup is made.
INSECURE_HOST = dict(
    kinds={'ins.dane.test': 'insecure'},
    servfail_of=lambda port: ['_%d._tcp.mx.ins.dane.test' % port])


def insecure_host_zones(port):
    return {'a.dane.test': ['@ MX 10 mx.ins.dane.test.'],
            'ins.dane.test': ['mx A 127.0.0.1']}


def test_dane_secure_mx_insecure_host_opportunistic():
    delivered_unverified('daneinshost', insecure_host_zones, **INSECURE_HOST)


def test_dane_only_secure_mx_insecure_host_deferred():
    refused('daneonlyinshost', 'ee', insecure_host_zones, r'4\.7\.5',
            r'addresses are not DNSSEC-secure', level='dane-only',
            tls_line=[], **INSECURE_HOST)


def test_dane_ee_300_long_certificate_verified():
    """3 0 0 with a whole certificate longer than DANE_DATA_MAX (RSA
    4096, made here): the record is kept as its length and SHA-512 and
    still matches those bytes exactly (dropping it would leave no record
    to authenticate by)."""
    import subprocess
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = os.path.join(tmp, 'big.key'), os.path.join(tmp, 'big.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:4096',
                        '-nodes', '-keyout', key, '-out', crt, '-days', '30',
                        '-subj', '/CN=mx.a.dane.test'], check=True,
                       capture_output=True)
        der = subprocess.run(['openssl', 'x509', '-in', crt, '-outform',
                              'DER'], check=True, capture_output=True).stdout
        check(len(der) > 1100, 'certificate of %d octets' % len(der))
        with SmtpPeer(tls='starttls', certfile=crt, keyfile=key) as p:
            zones = {'a.dane.test': mx_zone(p.port, ['3 0 0 ' + der.hex()])}
            with DnssecRig(zones) as rig, \
                    daemon('dane300big', rig, p.port) as d:
                qid = d.send_message(BODY, rcpts=['x@a.dane.test'])
                one_delivery(d, qid, 'sent', r'2\.0\.0')
                check([l[0] for l in tls_lines(d)] == ['Verified'],
                      'TLS lines %r' % tls_lines(d))
                check(re.search(r'Matched DANE TLSA record 3 0 0 \(%d '
                                r'octets\)' % len(der), d.log_text()),
                      'no Matched line:\n%s' % d.log_tail())


# --- DANE connections: no resumption; TLS mandatory ---------------------

def test_dane_no_session_resumption():
    """A resumed session shows no chain: every DANE connection is a full
    handshake, matched again (the peer issues tickets)."""
    with tempfile.TemporaryDirectory() as tmp, peer(tmp, 'ee') as p:
        zones = {'a.dane.test': mx_zone(p.port, [tlsa('ee', 3, 1, 1)])}
        with DnssecRig(zones) as rig, daemon('danenoresume', rig,
                                             p.port) as d:
            for i in range(2):
                qid = d.send_message(BODY, rcpts=['x%d@a.dane.test' % i])
                one_delivery(d, qid, 'sent', r'2\.0\.0')
                p.wait_idle()
            ss = p.tls_sessions()
            check(len(ss) == 2 and not any(s.reused for s in ss),
                  'sessions %r, reused %r' % (len(ss),
                                              [s.reused for s in ss]))
            check([l[0] for l in tls_lines(d)] == ['Verified'] * 2,
                  'TLS lines %r' % tls_lines(d))
            check(len(matched(d)) == 2, 'matched %r' % matched(d))


def handshake_broken(name, records):
    """A secure TLSA RRset makes TLS mandatory: a broken handshake
    defers (4.7.5); no retry in plaintext as at may."""
    with tempfile.TemporaryDirectory() as tmp, \
            peer(tmp, 'ee', tls_break=True) as p:
        zones = {'a.dane.test': mx_zone(p.port, records)}
        with DnssecRig(zones) as rig, daemon(name, rig, p.port) as d:
            qid = d.send_message(BODY, rcpts=['x@a.dane.test'])
            one_delivery(d, qid, 'deferred', r'4\.7\.5',
                         r'Cannot start TLS')
            p.wait_idle()
            no_mail_sent(p, name)
            deferred_kept(d, qid)
            check(tls_lines(d) == [], 'TLS lines %r' % tls_lines(d))


def test_dane_usable_handshake_broken_deferred():
    handshake_broken('danebreak', [tlsa('ee', 3, 1, 1)])


def test_dane_pkix_only_handshake_broken_deferred():
    """Only unusable records: still mandatory (unauthenticated) TLS."""
    handshake_broken('danepkixbreak', [tlsa('ee', 0, 0, 1),
                                       tlsa('ee', 1, 1, 1)])


def test_dane_second_mx_verified_after_first_refused():
    """The MX 10 host presents a key the domain did not publish: deferred
    there, delivered Verified to the MX 20 host with the right key."""
    with tempfile.TemporaryDirectory() as tmp, \
            peer(tmp, 'wrong') as bad:
        good = SmtpPeer(addr='127.0.0.2', port=bad.port, tls='starttls',
                        certfile=chain_file(tmp, 'ee'),
                        keyfile=dane_file('ee.key'))
        rec = tlsa('ee', 3, 1, 1)
        zones = {'a.dane.test': [
            '@ MX 10 mx', '@ MX 20 mx2', 'mx A 127.0.0.1',
            'mx2 A 127.0.0.2',
            '_%d._tcp.mx TLSA %s' % (bad.port, rec),
            '_%d._tcp.mx2 TLSA %s' % (bad.port, rec)]}
        with good, DnssecRig(zones) as rig, \
                daemon('danemx2', rig, bad.port) as d:
            qid = d.send_message(BODY, rcpts=['x@a.dane.test'])
            r = one_delivery(d, qid, 'sent', r'2\.0\.0')
            check(r.relay == 'mx2.a.dane.test[127.0.0.2]:%d' % bad.port,
                  'relay %r' % r.relay)
            bad.wait_idle()
            no_mail_sent(bad, 'the MX 10 host with the wrong key')
            check([l[:2] for l in tls_lines(d)] ==
                  [('Untrusted', 'mx.a.dane.test'),
                   ('Verified', 'mx2.a.dane.test')],
                  'TLS lines %r' % tls_lines(d))


def bogus_rrsig(rig, zone, owner, rtype):
    """Break the signature over owner's rtype RRset in the signed zone
    nsd serves and have nsd reload it: the validating resolver answers
    that one type SERVFAIL (bogus), the owner's other types stay secure,
    as an attacker who can tamper with packets but not forge signatures
    could make it."""
    path = os.path.join(rig.dir, 'zones', zone + '.signed')
    with open(path) as f:
        text = f.read()
    pat = re.compile(r'^%s\.\s+\d+\s+IN\s+RRSIG\s+%s .*$'
                     % (re.escape(owner), rtype), re.M)

    def flip(m):
        line = m.group(0)
        i = len(line) - 10	# inside the signature, before the padding
        return line[:i] + ('A' if line[i] != 'A' else 'B') + line[i + 1:]
    broken = pat.sub(flip, text)
    check(broken != text, 'no RRSIG %s for %s in %s' % (rtype, owner, path))
    before = rig.query_nsd(owner, rtype).data('RRSIG')
    check(before, 'nsd sends no RRSIG over %s %s' % (owner, rtype))
    with open(path, 'w') as f:
        f.write(broken)
    with open(os.path.join(rig.dir, 'nsd.pid')) as f:
        nsd = int(f.read())
    # Ask unbound only once nsd serves the broken signature: an answer
    # unbound fetched before the reload is cached for the zone's TTL and
    # would stay secure however long we waited.
    deadline = time.monotonic() + 10
    hup = 0
    while rig.query_nsd(owner, rtype).data('RRSIG') == before:
        check(time.monotonic() < deadline, 'nsd kept the old %s' % rtype)
        if time.monotonic() >= hup:
            os.kill(nsd, signal.SIGHUP)
            hup = time.monotonic() + 2
        time.sleep(0.1)
    r = rig.query(owner, rtype)
    check(r.rcode == 'SERVFAIL', 'unbound took the broken %s: %r'
          % (rtype, r))
    a = rig.query(owner, 'A' if rtype != 'A' else 'AAAA')
    check(a.rcode == 'NOERROR' and a.ad, 'the other type: %r' % a)


def test_dane_bogus_aaaa_secure_a_still_dane():
    """A secure MX host whose AAAA answer is bogus (SERVFAIL) and whose A
    answer is secure: its addresses are the secure A records, so its
    TLSA records still apply (RFC 7672 section 2.2.2) and a peer with
    another key gets no mail.  It was taken for an insecure host: TLS
    'may', the key not checked (and with STARTTLS stripped, plaintext)."""
    bad = '3 1 1 ' + hashlib.sha256(b'not the key').hexdigest()
    with tempfile.TemporaryDirectory() as tmp, peer(tmp, 'ee') as p:
        zones = {'a.dane.test': mx_zone(p.port, [bad]) +
                 ['mx AAAA 2001:db8::25']}
        with DnssecRig(zones) as rig:
            bogus_rrsig(rig, 'a.dane.test', 'mx.a.dane.test', 'AAAA')
            with daemon('danebogus6', rig, p.port) as d:
                qid = d.send_message(BODY, rcpts=['x@a.dane.test'])
                one_delivery(d, qid, 'deferred', r'4\.7\.5',
                             r'^Server certificate not trusted')
                p.wait_idle()
                no_mail_sent(p, 'the host with the wrong key')
                deferred_kept(d, qid)
                check([l[0] for l in tls_lines(d)] == ['Untrusted'],
                      'TLS lines %r' % tls_lines(d))
