"""
sharedrig.py - one DNSSEC rig and its SMTP peers for a whole test module,
started by the first test that asks and stopped at exit, with the config
`ferry check` runs under.  The caller's start(tmp, port) makes the peers
(a list or a dict) and the rig, and returns (peers, rig), having stopped its peers if the rig failed:
shared by test_dane_cname.py and test_check_paths.py.
"""

import atexit
import os
import shutil
import tempfile
import threading

from ferrytest import TestFailure, free_port


class SharedRig:
    def __init__(self, prefix, start):
        self._prefix = prefix
        self._start = start
        self._lock = threading.Lock()
        self.fx = {}

    def fixture(self):
        """The started rig: a dict of rig, peers, port, tmp and conf."""
        fx = self.fx
        with self._lock:
            if 'error' in fx:
                raise TestFailure('the shared rig did not start: %s'
                                  % fx['error'])
            if 'rig' not in fx:
                try:
                    self._up()
                except Exception as e:
                    fx['error'] = str(e)[-2000:]
                    raise
            return fx

    def _up(self):
        tmp = tempfile.mkdtemp(prefix=self._prefix)
        os.chmod(tmp, 0o755)
        port = free_port()
        ps, rig = self._start(tmp, port)
        conf = os.path.join(tmp, 'check.conf')
        with open(conf, 'w') as f:
            f.write(''.join('%s = %s\n' % kv for kv in (
                ('hostname', 'ferry.test'), ('log', 'stderr'),
                ('smarthost', ''), ('queue_dir', os.path.join(tmp, 'queue')),
                ('dns_servers', rig.server), ('dnssec', 'yes'),
                ('mx_port', str(port)), ('outbound_tls', 'dane'))))
        self.fx.update(rig=rig, peers=ps, port=port, tmp=tmp, conf=conf)
        atexit.register(self._stop)

    def _stop(self):
        fx = self.fx
        ps = fx.get('peers', ())
        for p in ps.values() if isinstance(ps, dict) else ps:
            p.stop()
        rig = fx.get('rig')
        if rig is not None:
            rig.stop()
            rig.remove()
        if fx.get('tmp') and not os.environ.get('FERRY_KEEP'):
            shutil.rmtree(fx['tmp'], ignore_errors=True)
