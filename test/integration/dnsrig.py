"""
dnsrig.py - the DNSSEC rig (test/dnssec-rig.sh) from Python, for the DANE
tests: nsd serving zones signed with ldns-signzone under `dane.test.`, and
a validating unbound in front of it that trusts dane.test's DS.  Also a
query helper (drill) that reports the rcode, the AD bit and the records.

    zones = {
        'a.dane.test': ['@ MX 10 mx', 'mx A 127.0.0.1',
                        '_25._tcp.mx TLSA 3 1 1 ' + digest],
        'ins.dane.test': ['@ MX 10 mx', 'mx A 127.0.0.1'],
    }
    with DnssecRig(zones, kinds={'ins.dane.test': 'insecure'},
                   servfail=['_25._tcp.mx.b.dane.test']) as rig:
        config: dns_servers = rig.server, dnssec = yes
        rig.query('mx.a.dane.test', 'A') -> Answer(rcode, ad, records)

Zone names are absolute (dane.test or below; a trailing dot is optional);
record lines are zone-file syntax, names relative to the zone unless they
end in a dot.  The rig adds SOA, NS and delegations.  Kinds: 'secure'
(the default: signed, DS in the parent), 'insecure' (no DS), 'bogus' (DS
for another key), 'expired' (signatures expired).  A `servfail` name and
all below it SERVFAIL at once; so do servfail.dane.test and every name
outside dane.test.  Python 3 standard library only.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

from ferrytest import TestFailure, check, free_port, REPO

RIG_SH = os.path.join(REPO, 'test', 'dnssec-rig.sh')
PARENT = 'dane.test'
KINDS = ('secure', 'insecure', 'bogus', 'expired')
RIG_START_TRIES = 3	# another test may take a port first
RIG_SCRIPT_TIMEOUT = 60
DRILL_TIMEOUT = 20


class Answer:
    """One response: rcode ('NOERROR', 'SERVFAIL', ...), ad (bool),
    records [(owner, type, rdata)] of the answer section (RRSIGs
    included), seconds it took."""

    def __init__(self, rcode, ad, records, seconds, text):
        self.rcode = rcode
        self.ad = ad
        self.records = records
        self.seconds = seconds
        self.text = text

    def data(self, rtype):
        """The rdata of every answer record of type rtype, sorted."""
        rtype = rtype.upper()
        return sorted(r for _, t, r in self.records if t == rtype)

    def __repr__(self):
        return 'Answer(%s, ad=%s, %r, %.2fs)' % (
            self.rcode, self.ad, [(o, t, r) for o, t, r in self.records
                                  if t != 'RRSIG'], self.seconds)


_HEADER_RE = re.compile(r'^;; ->>HEADER<<- .*rcode: (\w+)', re.M)
_FLAGS_RE = re.compile(r'^;; flags: ([a-z ]*);', re.M)


def drill(port, name, rtype='A', dnssec=True, cd=False,
          host='127.0.0.1'):
    """Ask host:port for name/rtype with drill: an Answer.  dnssec sets
    EDNS DO (needed for an AD bit back), cd sets Checking Disabled."""
    cmd = ['drill', '-p', str(port)]
    if dnssec:
        cmd.append('-D')
    if cd:
        cmd += ['-o', 'CD']
    cmd += ['@' + host, name, rtype]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, timeout=DRILL_TIMEOUT)
    took = time.monotonic() - t0
    out = p.stdout.decode(errors='replace')
    m = _HEADER_RE.search(out)
    f = _FLAGS_RE.search(out)
    check(p.returncode == 0 and m and f, '%s: exit %d, no answer: %s %s'
          % (' '.join(cmd), p.returncode, out[-800:],
             p.stderr.decode(errors='replace')[-800:]))
    records = []
    section = None
    for line in out.splitlines():
        if line.startswith(';; ') and line.endswith('SECTION:'):
            section = line[3:-len(' SECTION:')]
            continue
        if section != 'ANSWER' or not line or line.startswith(';'):
            continue
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[2] == 'IN':
            records.append((parts[0].lower(), parts[3].upper(),
                            parts[4].strip()))
    return Answer(m.group(1), 'ad' in f.group(1).split(), records, took,
                  out)


class DnssecRig:
    """nsd + validating unbound on loopback high ports, for the life of a
    with-block (or between start() and stop())."""

    def __init__(self, zones, kinds=None, servfail=()):
        kinds = dict(kinds or {})
        self.zones = {}
        for z, lines in zones.items():
            self.zones[self._name(z)] = list(lines)
        self.kinds = {}
        for z, k in kinds.items():
            z = self._name(z)
            if k not in KINDS:
                raise ValueError('zone %s: kind %r, not one of %s'
                                 % (z, k, KINDS))
            if z not in self.zones:
                self.zones[z] = []
            self.kinds[z] = k
        self.servfail = [self._name(n) for n in servfail]
        self.dir = None
        self.port = None	# unbound's: what ferry's dns_servers names
        self.nsd_port = None
        self.start_seconds = None
        self.stop_seconds = None

    @staticmethod
    def _name(n):
        n = n.lower().rstrip('.')
        if n != PARENT and not n.endswith('.' + PARENT):
            raise ValueError('%s is not %s or below it' % (n, PARENT))
        return n

    @property
    def server(self):
        """"127.0.0.1:PORT" of the validating unbound."""
        return '127.0.0.1:%d' % self.port

    @property
    def trust_anchor(self):
        """The DS record of dane.test unbound trusts (a file's path)."""
        return os.path.join(self.dir, 'ta.ds')

    def _specs(self):
        indir = os.path.join(self.dir, 'in')
        os.makedirs(indir, exist_ok=True)
        specs = []
        for z, lines in sorted(self.zones.items()):
            path = os.path.join(indir, z + '.zone')
            with open(path, 'w') as f:
                f.write(''.join(line.rstrip('\n') + '\n' for line in lines))
            specs.append('%s:%s:%s' % (self.kinds.get(z, 'secure'), z,
                                       path))
        specs += ['servfail:' + n for n in self.servfail]
        return specs

    def start(self):
        check(shutil.which('drill') and shutil.which('nsd'),
              'nsd/drill missing: sh test/deps.sh test')
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix='ferry-dnssec-')
        specs = self._specs()
        err = ''
        for _ in range(RIG_START_TRIES):
            nport, uport = free_port(), free_port()
            t0 = time.monotonic()
            p = subprocess.run(['sh', RIG_SH, 'start', self.dir, str(nport),
                                str(uport)] + specs, capture_output=True,
                               stdin=subprocess.DEVNULL,
                               timeout=RIG_SCRIPT_TIMEOUT)
            if p.returncode == 0:
                self.start_seconds = time.monotonic() - t0
                self.port = uport
                self.nsd_port = nport
                return self
            err = p.stderr.decode(errors='replace')
            if 'did not start' not in err and 'exited' not in err:
                break	# bad data: another port will not help
        raise TestFailure('dnssec-rig.sh start failed (%s): %s'
                          % (self.dir, err[-2000:]))

    def stop(self):
        if self.dir is None:
            return
        t0 = time.monotonic()
        subprocess.run(['sh', RIG_SH, 'stop', self.dir],
                       capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=RIG_SCRIPT_TIMEOUT)
        self.stop_seconds = time.monotonic() - t0

    def remove(self):
        if self.dir and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        if a[0] is None:
            self.remove()

    def query(self, name, rtype='A', **kw):
        """Ask the validating unbound (DO set): an Answer."""
        return drill(self.port, name, rtype, **kw)

    def query_nsd(self, name, rtype='A', **kw):
        """Ask nsd itself, no validation."""
        return drill(self.nsd_port, name, rtype, **kw)
