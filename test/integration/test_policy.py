"""
test_policy.py - the tls_policy file (issue 5: Postfix's
smtp_tls_policy_maps) applied to delivery, and DANE for a smarthost given
by name.  Every level of a policy entry overrides outbound_tls (MX
delivery, keyed by the recipient domain) or smarthost_tls (keyed by the
smarthost's host): none, may, encrypt, dane, dane-only, fingerprint
(match=sha256: of the certificate or of its key), verify and secure
against the private CA of test/certs/dane; `.domain` patterns and the
most specific entry; the file at start (a bad one exits 78 naming file and
line) and on SIGHUP (a bad one keeps the running policy).  The peers are
peers.SmtpPeer with the test/certs/dane certificates, the names come from
the DNSSEC rig (dnsrig.DnssecRig).  Each test asserts the outcome (status
and dsn), the Postfix-worded TLS log line, and what the peer saw: TLS or
not, and no MAIL at all when the delivery must not happen.
"""

import hashlib
import os
import re
import tempfile

import test_dane as td
import test_tls
from dnsrig import DnssecRig
from ferrytest import Daemon, check, cert_sha256
from peers import SmtpPeer, wait_for

CA = td.dane_file('ca.pem')
FP_MATCHED = re.compile(r': (\S+)\[([^\]]+)\]:(\d+): Matched (certificate|'
                        r'public key) fingerprint sha256:([0-9A-F:]{95})$',
                        re.M)


def sha256_of(name, spki=False):
    """SHA-256 (hex) of test/certs/dane/NAME.der or its SPKI."""
    path = td.dane_file(name + ('.spki.der' if spki else '.der'))
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def colons(hexstr):
    """"ab12..." as openssl prints it: "AB:12:..."."""
    return ':'.join(hexstr[i:i + 2] for i in range(0, len(hexstr),
                                                    2)).upper()


def policy_file(d, text):
    """tls_policy = DIR/tls_policy with text, readable by the daemon's
    user (it reads the file again on SIGHUP, after the privilege drop).
    Replaced by rename, so a reload never sees half a file."""
    path = os.path.join(d.dir, 'tls_policy')
    with open(path + '.new', 'w') as f:
        f.write(text)
    os.chmod(path + '.new', 0o644)
    os.rename(path + '.new', path)
    return path


def policy_daemon(name, policy, **cfg):
    """A daemon with a tls_policy file (ca_file: the DANE test CA); not
    started."""
    c = dict(td.NO_RETRY, ca_file=CA)
    c.update(cfg)
    d = Daemon(name, **c)
    d.cfg['tls_policy'] = policy_file(d, policy)
    d.write_config()
    return d


def daemon(name, rig, port, policy, level='dane', **cfg):
    """MX delivery (outbound_tls = level) through the rig."""
    c = dict(smarthost='', mx_port=str(port), dnssec='yes',
             dns_servers=rig.server if rig else '127.0.0.1:9',
             outbound_tls=level)
    c.update(cfg)
    return policy_daemon(name, policy, **c)


def fp_matched(d):
    return [m.groups() for m in FP_MATCHED.finditer(d.log_text())]


def sessions_tls(p):
    """(tls, starttls said) of every session that carried a MAIL."""
    with p.lock:
        return [(s.tls, s.starttls) for s in p.sessions if s.mails]


def sent(d, p, domain='a.dane.test', rcpt='x'):
    qid = d.send_message(td.BODY, rcpts=['%s@%s' % (rcpt, domain)])
    r = td.one_delivery(d, qid, 'sent', r'2\.0\.0')
    p.wait_idle()
    return r


def deferred(d, p, dsn_re, text_re, domain='a.dane.test'):
    """Deferred with dsn_re / text_re, kept in the queue, no bounce, and
    the peer never saw MAIL, RCPT or DATA."""
    qid = d.send_message(td.BODY, rcpts=['x@' + domain])
    r = td.one_delivery(d, qid, 'deferred', dsn_re, text_re)
    p.wait_idle()
    td.no_mail_sent(p, d.name)
    td.deferred_kept(d, qid)
    return r


def all_in_tls(p):
    cmds = td.mail_cmds(p)
    check(cmds and all(t for t, _ in cmds),
          'MAIL/RCPT/DATA outside TLS: %r' % cmds)


# --- levels over MX delivery -------------------------------------------

def test_policy_none_over_dane():
    """A secure, matching TLSA and STARTTLS offered, but the entry says
    none: plaintext, STARTTLS never said, no TLSA consulted."""
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port,
                                           [td.tlsa('ee', 3, 1, 1)])}
        with DnssecRig(zones) as rig, \
                daemon('polnone', rig, p.port,
                       'a.dane.test none\n') as d:
            r = sent(d, p)
            check(r.relay == 'mx.a.dane.test[127.0.0.1]:%d' % p.port,
                  'relay %r' % r.relay)
            check(sessions_tls(p) == [(False, False)],
                  'sessions (tls, starttls) %r' % sessions_tls(p))
            check(td.tls_lines(d) == [] and td.matched(d) == [],
                  'TLS lines %r, matched %r' % (td.tls_lines(d),
                                                td.matched(d)))


def test_policy_may_over_dane_only():
    """dane-only would defer an insecure zone; the entry's may delivers
    over unauthenticated TLS."""
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [])}
        with DnssecRig(zones, kinds={'a.dane.test': 'insecure'}) as rig, \
                daemon('polmay', rig, p.port, 'a.dane.test may\n',
                       level='dane-only') as d:
            sent(d, p)
            all_in_tls(p)
            check([l[0] for l in td.tls_lines(d)] == ['Untrusted'],
                  'TLS lines %r' % td.tls_lines(d))


def test_policy_encrypt_no_starttls_deferred():
    """The default (dane, no TLSA: may) would send in clear; encrypt
    defers a peer without STARTTLS."""
    with SmtpPeer() as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [])}
        with DnssecRig(zones) as rig, \
                daemon('polenc', rig, p.port,
                       '# comment\na.dane.test encrypt\n') as d:
            deferred(d, p, r'4\.7\.4', r'TLS is required, but was not '
                     r'offered by host mx\.a\.dane\.test')
            check(p.connections >= 1, 'ferry never connected')
            check(td.tls_lines(d) == [], 'TLS lines %r' % td.tls_lines(d))


def test_policy_dane_over_may():
    """outbound_tls = may; the entry's dane looks up TLSA and matches."""
    rec = td.tlsa('ee', 3, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [rec])}
        with DnssecRig(zones) as rig, \
                daemon('poldane', rig, p.port, 'a.dane.test dane\n',
                       level='may') as d:
            sent(d, p)
            all_in_tls(p)
            check([l[:2] for l in td.tls_lines(d)] ==
                  [('Verified', 'mx.a.dane.test')],
                  'TLS lines %r' % td.tls_lines(d))
            m = td.matched(d)
            check(len(m) == 1 and ' '.join(m[0][3:6]) == rec[:5],
                  'matched %r' % m)


def test_policy_dane_wrong_digest_over_may_deferred():
    """At may the wrong key would still get the mail; dane from the
    policy makes the published record binding."""
    bad = '3 1 1 ' + hashlib.sha256(b'not the key').hexdigest()
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [bad])}
        with DnssecRig(zones) as rig, \
                daemon('poldanebad', rig, p.port, 'a.dane.test dane\n',
                       level='may') as d:
            deferred(d, p, r'4\.7\.5', r'^Server certificate not trusted '
                     r'.*no DANE TLSA record matched')
            check([l[0] for l in td.tls_lines(d)] == ['Untrusted'],
                  'TLS lines %r' % td.tls_lines(d))


def test_policy_dane_only_over_may_insecure_deferred():
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port,
                                           [td.tlsa('ee', 3, 1, 1)])}
        with DnssecRig(zones, kinds={'a.dane.test': 'insecure'}) as rig, \
                daemon('poldaneonly', rig, p.port,
                       'a.dane.test dane-only\n', level='may') as d:
            deferred(d, p, r'4\.7\.5', r'_%d\._tcp\.mx\.a\.dane\.test: '
                     r'dane-only: the MX RRset or the MX host addresses '
                     r'are not DNSSEC-secure'
                     % p.port)
            check(p.connections == 0 and td.tls_lines(d) == [],
                  'connected %d times, TLS lines %r'
                  % (p.connections, td.tls_lines(d)))


# --- fingerprint ---------------------------------------------------------

def fingerprint_sent(name, leaf, match, kind, want_fp):
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, leaf) as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [])}
        with DnssecRig(zones) as rig, \
                daemon(name, rig, p.port, 'a.dane.test fingerprint '
                       'match=%s\n' % match) as d:
            sent(d, p)
            sent(d, p, rcpt='y')	# a second connection: no resumption
            all_in_tls(p)
            check(len(p.tls_sessions()) == 2 and
                  not any(s.reused for s in p.tls_sessions()),
                  'TLS sessions %d, reused %r' % (
                      len(p.tls_sessions()),
                      [s.reused for s in p.tls_sessions()]))
            check([l[:2] for l in td.tls_lines(d)] ==
                  [('Verified', 'mx.a.dane.test')] * 2,
                  'TLS lines %r' % td.tls_lines(d))
            m = fp_matched(d)
            check([(x[0], x[3], x[4]) for x in m] ==
                  [('mx.a.dane.test', kind, colons(want_fp))] * 2,
                  'fingerprint lines %r' % m)


def test_policy_fingerprint_cert_expired_sent():
    """The certificate's SHA-256 pins it; its dates do not count (it
    expired in 2002)."""
    fp = sha256_of('ee-expired')
    fingerprint_sent('polfpcert', 'ee-expired', 'sha256:' + colons(fp),
                     'certificate', fp)


def test_policy_fingerprint_spki_wrong_name_sent():
    """A key pin (the SPKI's SHA-256) listed after one that does not
    match; the certificate names wrong.dane.test: names do not count."""
    fp = sha256_of('wrong', spki=True)
    other = sha256_of('ee')
    fingerprint_sent('polfpspki', 'wrong', 'sha256:%s,sha256:%s'
                     % (other, fp), 'public key', fp)


def test_policy_fingerprint_mismatch_deferred():
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [])}
        pins = 'sha256:%s,sha256:%s' % (sha256_of('wrong'),
                                        sha256_of('leaf', spki=True))
        with DnssecRig(zones) as rig, \
                daemon('polfpbad', rig, p.port, 'a.dane.test fingerprint '
                       'match=%s\n' % pins) as d:
            deferred(d, p, r'4\.7\.5', r'^Server certificate not trusted '
                     r'.*no tls_policy fingerprint matched the certificate '
                     r'sha256:' + colons(sha256_of('ee')))
            check(p.sessions and p.sessions[0].tls,
                  'the handshake itself should have succeeded')
            check([l[0] for l in td.tls_lines(d)] == ['Untrusted'],
                  'TLS lines %r' % td.tls_lines(d))
            check(fp_matched(d) == [], 'matched %r' % fp_matched(d))


def test_policy_fingerprint_no_starttls_deferred():
    with SmtpPeer() as p:
        zones = {'a.dane.test': td.mx_zone(p.port, [])}
        with DnssecRig(zones) as rig, \
                daemon('polfpplain', rig, p.port, 'a.dane.test fingerprint '
                       'match=sha256:%s\n' % sha256_of('ee')) as d:
            deferred(d, p, r'4\.7\.4', r'TLS is required, but was not '
                     r'offered')


# --- verify and secure against the private CA ----------------------------

def implicit_mx():
    """mx.dane.test has no MX: it is its own (the name leaf.pem and
    wrong.pem's CA signed for, or not)."""
    return {'mx.dane.test': ['@ A 127.0.0.1']}


def pkix(name, leaf, level, outcome, trust, text_re=None, zones=None,
         domain='mx.dane.test', mxhost='mx.dane.test'):
    with tempfile.TemporaryDirectory() as tmp, \
            td.peer(tmp, leaf, () if leaf == 'ee' else ('ca',)) as p:
        # dane-only by default: with no TLSA, only the entry can send.
        with DnssecRig(zones or implicit_mx()) as rig, \
                daemon(name, rig, p.port, '%s %s\n' % (domain, level),
                       level='dane-only') as d:
            if outcome == 'sent':
                sent(d, p, domain=domain)
                all_in_tls(p)
            else:
                deferred(d, p, r'4\.7\.5', text_re, domain=domain)
            check([l[:2] for l in td.tls_lines(d)] ==
                  [(trust, mxhost)], 'TLS lines %r' % td.tls_lines(d))
            with p.lock:
                snis = [s.sni for s in p.sessions if s.tls]
            check(snis == [mxhost], 'SNI %r' % snis)


def test_policy_verify_private_ca_sent():
    pkix('polverify', 'leaf', 'verify', 'sent', 'Verified')


def test_policy_verify_wrong_name_deferred():
    """verify wants the chain and the MX host's name (Postfix's
    smtp_tls_verify_cert_match = hostname): a trusted certificate for
    another name is a MITM's, nothing is sent."""
    pkix('polverifyname', 'wrong', 'verify', 'deferred', 'Trusted',
         r'^Server certificate not verified .*does not name mx\.dane\.test\)')


# a.dane.test's MX is mx.dane.test, which the leaf names: verify is happy,
# secure wants a.dane.test (or a name below it), which a forged MX record
# cannot give.  mx.dane.test's MX is host.mx.dane.test, which the leaf
# does not name: secure is happy (the leaf names the domain), verify not.
FORGED_MX = {'a.dane.test': ['@ MX 10 mx.dane.test.'],
             'mx.dane.test': ['@ A 127.0.0.1']}
SUB_MX = {'mx.dane.test': ['@ MX 10 host', 'host A 127.0.0.1']}


def test_policy_secure_names_mx_not_domain_deferred():
    pkix('polsecuremx', 'leaf', 'secure', 'deferred', 'Trusted',
         r'^Server certificate not verified .*does not name a\.dane\.test '
         r'or a name below it\)', zones=FORGED_MX, domain='a.dane.test')


def test_policy_verify_names_mx_sent():
    pkix('polverifymx', 'leaf', 'verify', 'sent', 'Verified',
         zones=FORGED_MX, domain='a.dane.test')


def test_policy_secure_names_domain_sent():
    pkix('polsecuredom', 'leaf', 'secure', 'sent', 'Verified',
         zones=SUB_MX, mxhost='host.mx.dane.test')


def test_policy_verify_names_domain_not_mx_deferred():
    pkix('polverifydom', 'leaf', 'verify', 'deferred', 'Trusted',
         r'^Server certificate not verified .*does not name '
         r'host\.mx\.dane\.test\)', zones=SUB_MX,
         mxhost='host.mx.dane.test')


def test_policy_verify_self_signed_deferred():
    pkix('polverifyself', 'ee', 'verify', 'deferred', 'Untrusted',
         r'^Server certificate not trusted .*no chain to ca_file')


def test_policy_secure_private_ca_sent():
    pkix('polsecure', 'leaf', 'secure', 'sent', 'Verified')


def test_policy_secure_wrong_name_deferred():
    pkix('polsecurename', 'wrong', 'secure', 'deferred', 'Trusted',
         r'^Server certificate not verified .*does not name mx\.dane\.test')


# --- patterns: .domain and the most specific entry -----------------------

def test_policy_subdomain_most_specific():
    """.dane.test none, .sub.dane.test encrypt, y.sub.dane.test none with
    outbound_tls = dane-only and no TLSA anywhere (the default would
    defer all three): x.sub goes by .sub.dane.test (TLS), y.sub by its
    own entry (clear), and sub.dane.test, which .sub.dane.test does not
    cover, by .dane.test (clear)."""
    pol = ('.dane.test none\n.sub.dane.test encrypt\n'
           'Y.Sub.Dane.Test. none\n')
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        zones = {'sub.dane.test': ['@ MX 10 mx', 'mx A 127.0.0.1',
                                   'x MX 10 mx', 'y MX 10 mx']}
        with DnssecRig(zones) as rig, \
                daemon('polsub', rig, p.port, pol, level='dane-only') as d:
            for dom in ('x.sub.dane.test', 'y.sub.dane.test',
                        'sub.dane.test'):
                sent(d, p, domain=dom)
            with p.lock:
                seen = sorted((t.rcpts[0][0].split('@')[1], s.tls,
                               s.starttls) for s in p.sessions
                              for t in s.txns if t.rcpts)
            check(seen == [('sub.dane.test', False, False),
                           ('x.sub.dane.test', True, True),
                           ('y.sub.dane.test', False, False)],
                  'per domain (tls, starttls): %r' % seen)
            check([l[:2] for l in td.tls_lines(d)] ==
                  [('Untrusted', 'mx.sub.dane.test')],
                  'TLS lines %r' % td.tls_lines(d))


# --- the file: start-up and SIGHUP -----------------------------------------

def exits_78(d, want_re):
    """The daemon refuses to start (78) with a line matching want_re."""
    try:
        d.start(wait=False)
        rc = d.wait_exit(10)
        check(rc == 78 and re.search(want_re, d.log_text()),
              'exit %r (want 78), want /%s/ in the log:\n%s'
              % (rc, want_re, d.log_tail()))
    finally:
        d.cleanup()


def test_policy_bad_file_exit_78():
    d = daemon('polbadfile', None, 25, 'a.dane.test may\n'
               'b.dane.test sometimes\n')
    exits_78(d, r'tls_policy: %s:2: unknown level' %
             re.escape(d.cfg['tls_policy']))
    d = daemon('polnofile', None, 25, '')
    d.cfg['tls_policy'] = '/nonexistent/tls_policy'
    d.write_config()
    exits_78(d, r'tls_policy: /nonexistent/tls_policy: ')


def smarthost_daemon(name, smarthost, policy, **cfg):
    """Relaying through smarthost (at smarthost_tls = none unless cfg
    says otherwise)."""
    c = dict(smarthost_tls='none', smarthost=smarthost)
    c.update(cfg)
    return policy_daemon(name, policy, **c)


def test_policy_reload_on_sighup():
    """The smarthost [127.0.0.1] at smarthost_tls = none, keyed by its
    host in the file: none (clear), then encrypt after SIGHUP (TLS),
    then a broken file: logged, encrypt still holds."""
    with SmtpPeer(tls='starttls') as p, \
            smarthost_daemon('polreload', '[127.0.0.1]:%d' % p.port,
                             '127.0.0.1 none\n') as d:
        sent(d, p, domain='relay.test')
        policy_file(d, '127.0.0.1 encrypt\n')
        test_tls._hup(d)
        sent(d, p, domain='relay.test', rcpt='y')
        policy_file(d, '127.0.0.1 encrypt\n127.0.0.1 none\n')
        test_tls._hup(d)
        check(re.search(r'tls_policy: \S+:2: 127\.0\.0\.1 listed again '
                        r'.*; keeping the old policy', d.log_text()),
              'no "keeping the old policy" line:\n%s' % d.log_tail())
        sent(d, p, domain='relay.test', rcpt='z')
        check(sessions_tls(p) == [(False, False), (True, True),
                                  (True, True)],
              'sessions (tls, starttls) %r' % sessions_tls(p))


# --- the smarthost by name: DANE with its own TLSA -------------------------

def dane_smarthost(name, rig, port, level='dane-only', host=None):
    """smarthost = [smarthost.dane.test]:PORT at smarthost_tls = none,
    raised by its tls_policy entry."""
    return smarthost_daemon(name, (host or '[smarthost.dane.test]') +
                            ':%d' % port, 'smarthost.dane.test %s\n' % level,
                            dns_servers=rig.server, dnssec='yes')


def smarthost_zone(port, records):
    return {'smarthost.dane.test': ['@ A 127.0.0.1'] +
            ['_%d._tcp TLSA %s' % (port, r) for r in records]}


def smarthost_verified(name, host):
    rec = td.tlsa('ee', 3, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        with DnssecRig(smarthost_zone(p.port, [rec])) as rig, \
                dane_smarthost(name, rig, p.port, host=host) as d:
            r = sent(d, p, domain='relay.test')
            check(r.relay == 'smarthost.dane.test[127.0.0.1]:%d' % p.port,
                  'relay %r' % r.relay)
            all_in_tls(p)
            check([l[:2] for l in td.tls_lines(d)] ==
                  [('Verified', 'smarthost.dane.test')],
                  'TLS lines %r' % td.tls_lines(d))
            m = td.matched(d)
            check(len(m) == 1 and m[0][0] == 'smarthost.dane.test' and
                  ' '.join(m[0][3:6]) == '3 1 1', 'matched %r' % m)
            with p.lock:
                snis = [s.sni for s in p.sessions if s.tls]
            check(snis == ['smarthost.dane.test'], 'SNI %r' % snis)


def test_policy_smarthost_dane_verified():
    """[smarthost.dane.test]:PORT: its secure address answer, then
    _PORT._tcp.smarthost.dane.test TLSA 3 1 1."""
    smarthost_verified('polshdane', None)


def test_policy_smarthost_no_brackets_dane_verified():
    """smarthost.dane.test:PORT: an MX lookup (none: the name is its own
    implicit MX), then the same TLSA."""
    smarthost_verified('polshmx', 'smarthost.dane.test')


def test_policy_smarthost_tls_dane_verified():
    """smarthost_tls = dane in relay.conf, no tls_policy: the
    smarthost by name, its own TLSA 3 1 1 matched."""
    rec = td.tlsa('ee', 3, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        with DnssecRig(smarthost_zone(p.port, [rec])) as rig, \
                Daemon('polshconf', **dict(
                    td.NO_RETRY, smarthost='[smarthost.dane.test]:%d'
                    % p.port, smarthost_tls='dane', dns_servers=rig.server,
                    dnssec='yes')) as d:
            sent(d, p, domain='relay.test')
            all_in_tls(p)
            check([l[:2] for l in td.tls_lines(d)] ==
                  [('Verified', 'smarthost.dane.test')],
                  'TLS lines %r' % td.tls_lines(d))
            check(len(td.matched(d)) == 1, 'matched %r' % td.matched(d))


def test_policy_smarthost_dane_wrong_digest_deferred():
    bad = '3 1 1 ' + hashlib.sha256(b'not the key').hexdigest()
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        with DnssecRig(smarthost_zone(p.port, [bad])) as rig, \
                dane_smarthost('polshbad', rig, p.port) as d:
            deferred(d, p, r'4\.7\.5', r'^Server certificate not trusted '
                     r'\(smarthost\.dane\.test\[127\.0\.0\.1\]',
                     domain='relay.test')
            check([l[0] for l in td.tls_lines(d)] == ['Untrusted'],
                  'TLS lines %r' % td.tls_lines(d))
            check(td.matched(d) == [], 'matched %r' % td.matched(d))


def test_policy_smarthost_dane_tlsa_servfail_deferred():
    """A failed TLSA lookup may hide the records: no connection at all,
    even at dane (not only dane-only)."""
    rec = td.tlsa('ee', 3, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, td.peer(tmp, 'ee') as p:
        with DnssecRig(smarthost_zone(p.port, [rec]),
                       servfail=['_%d._tcp.smarthost.dane.test' % p.port]) \
                as rig, dane_smarthost('polshsf', rig, p.port,
                                       level='dane') as d:
            deferred(d, p, r'4\.7\.5', r'_%d\._tcp\.smarthost\.dane\.test: '
                     r'TLSA lookup error' % p.port, domain='relay.test')
            check(p.connections == 0 and td.tls_lines(d) == [],
                  'connected %d times, TLS lines %r'
                  % (p.connections, td.tls_lines(d)))


def test_policy_smarthost_address_literal_dane_only_deferred():
    """An address literal has no name for TLSA: dane-only defers without
    connecting (dane would be may)."""
    with SmtpPeer(tls='starttls') as p, \
            smarthost_daemon('polshlit', '[127.0.0.1]:%d' % p.port,
                             '127.0.0.1 dane-only\n') as d:
        deferred(d, p, r'4\.7\.5', r'dane-only: DANE needs a host name',
                 domain='relay.test')
        check(p.connections == 0, 'connected %d times' % p.connections)


def test_policy_smtps_fingerprint():
    """smarthost_tls = smtps stays implicit TLS under a policy entry,
    which picks the checks inside it: a pin that matches is sent
    Verified, one that does not is deferred (and never retried in
    clear, as may would after a failed handshake)."""
    good = 'sha256:' + cert_sha256('server')
    bad = 'sha256:' + sha256_of('ee')
    for name, pin, ok in (('polsmtpsfp', good, True),
                          ('polsmtpsfpbad', bad, False)):
        with SmtpPeer(tls='smtps') as p, \
                smarthost_daemon(name, '[127.0.0.1]:%d' % p.port,
                                 '127.0.0.1 fingerprint match=%s\n' % pin,
                                 smarthost_tls='smtps') as d:
            if ok:
                sent(d, p, domain='relay.test')
                all_in_tls(p)
            else:
                # Refused before the banner was read: ferry's QUIT and
                # close may reach the peer as a reset, so no wait_idle().
                qid = d.send_message(td.BODY, rcpts=['x@relay.test'])
                td.one_delivery(d, qid, 'deferred', r'4\.7\.5',
                                r'no tls_policy fingerprint matched')
                wait_for(lambda: p.active == 0, 10, 'the peer to be idle')
                td.no_mail_sent(p, name)
                td.deferred_kept(d, qid)
            with p.lock:
                kinds = [(s.tls, s.starttls) for s in p.sessions]
            check(kinds == [(True, False)], '%s: sessions (tls, starttls) '
                  '%r' % (name, kinds))
            check([l[0] for l in td.tls_lines(d)] ==
                  ['Verified' if ok else 'Untrusted'],
                  '%s: TLS lines %r' % (name, td.tls_lines(d)))
