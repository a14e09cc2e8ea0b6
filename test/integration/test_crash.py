"""
test_crash.py - durability under kill -9.  A client thread sends 1,000
distinct messages (100 B - 50 KB) over a few sessions while the harness
kills the daemon with SIGKILL at random moments (at least 5 times) and
restarts it; the client retries any message whose 250 it did not see.
Afterwards every acknowledged message must be in the queue byte for byte,
every listed message must be complete, nothing may sit in corrupt/.
Duplicates are allowed, losses never.  FERRY_CRASH_SEED reproduces a run.
"""

import os
import random
import re
import threading
import time

from ferrytest import (Daemon, TestFailure, check, stuff, short, crash_test,
                       SLOW)

N_MESSAGES = int(os.environ.get('FERRY_CRASH_MESSAGES', '1000'))
N_KILLS = 10
SEQ_RE = re.compile(rb'\r\nX-Seq: (\d+)\r\n')


ALPHABET = b'abcdefghijklmnopqrstuvwxyz0123456789 .,-'
TABLE = bytes(ALPHABET[i % len(ALPHABET)] for i in range(256))


def _make_bodies(rng, n):
    """n unique CRLF bodies of 100 B - 50 KB; about 5% of the lines start
    with a dot, so dot-stuffing is exercised."""
    bodies = []
    for i in range(n):
        size = rng.randint(100, 50000)
        head = (b'Subject: crash test %d\r\nX-Seq: %d\r\nX-Rand: %d\r\n\r\n'
                % (i, i, rng.getrandbits(64)))
        blob = rng.randbytes(size).translate(TABLE)
        out = [head]
        pos, have = 0, len(head)
        while have < size:
            ln = rng.randint(0, 120)
            line = blob[pos:pos + ln]
            pos += ln
            if rng.random() < 0.05:
                line = b'.' + line
            out.append(line + b'\r\n')
            have += len(line) + 2
        bodies.append(b''.join(out))
    return bodies


class Client(threading.Thread):
    def __init__(self, d, bodies, rng, kill_points, kill_req):
        super().__init__(daemon=True)
        self.d, self.bodies, self.rng = d, bodies, rng
        self.kill_points, self.kill_req = set(kill_points), kill_req
        self.acked = {}			# index -> queue id
        self.retries = 0
        self.error = None
        self.stop = False

    def _connect(self):
        deadline = time.time() + 30 * SLOW
        while not self.stop:
            try:
                c = self.d.connect(timeout=20)
                c.hello()
                return c
            except (OSError, EOFError, TestFailure):
                # The kill loop checks the whole queue while the daemon
                # is down (minutes on a loaded machine with the
                # sanitizer build): only the time it is up counts.
                if not self.d.running():
                    deadline = time.time() + 30 * SLOW
                elif time.time() > deadline:
                    raise TestFailure('client could not reconnect for 30s')
                time.sleep(0.02)
        return None

    def run(self):
        try:
            self._run()
        except Exception as e:	# reported by the main thread
            self.error = e

    def _run(self):
        c, in_session, session_len = None, 0, self.rng.randint(150, 300)
        i = 0
        while i < len(self.bodies) and not self.stop:
            try:
                if c is None:
                    c = self._connect()
                    if c is None:
                        return
                    in_session = 0
                if i in self.kill_points:
                    self.kill_points.discard(i)
                    self.kill_req.append(i)
                c.expect('MAIL FROM:<crash@example.test>', 250)
                c.expect('RCPT TO:<r%d@relay.test>' % i, 250)
                c.expect('DATA', 354)
                c.send(stuff(self.bodies[i]))
                r = c.reply()
                if r.code != 250 or not r.qid():
                    raise TestFailure('message %d refused: %r'
                                      % (i, r.text))
                self.acked[i] = r.qid()
                i += 1
                in_session += 1
                if in_session >= session_len:
                    c.expect('QUIT', 221)
                    c.close()
                    c = None
            except (OSError, EOFError):
                # the daemon died under us: retry this message
                self.retries += 1
                if c is not None:
                    c.close()
                c = None
            except TestFailure as e:
                if c is not None and c.eof:
                    self.retries += 1
                    c.close()
                    c = None
                    continue
                if 'timed out' in str(e) and not self.d.running():
                    self.retries += 1
                    c.close()
                    c = None
                    continue
                raise
        if c is not None:
            c.close()


def _verify(d, bodies, seen, why):
    """Every message mailq lists is complete and one we sent; returns
    {index: [ids]}."""
    found = {}
    for m in d.mailq():
        qid = m['id']
        if qid in seen:
            found.setdefault(seen[qid], []).append(qid)
            continue
        out = d.cat(qid)
        mm = SEQ_RE.search(out)
        check(mm, '%s: message %s is not one of ours: %s'
              % (why, qid, short(out)))
        i = int(mm.group(1))
        check(i < len(bodies), '%s: bad X-Seq in %s' % (why, qid))
        d.assert_stored(qid, bodies[i])
        check([r['address'] for r in m['recipients']] ==
              ['r%d@relay.test' % i], '%s: %s recipients %r'
              % (why, qid, m['recipients']))
        seen[qid] = i
        found.setdefault(i, []).append(qid)
    check(d.corrupt_files() == [], '%s: files in corrupt/: %r'
          % (why, d.corrupt_files()))
    return found


def kill_loop(d, cl, kill_req, rng, jitter, seed, while_down):
    """Kill -9 and restart the daemon each time the client asks, until
    the client is done; while_down(kill_number) runs with it down.
    Returns the number of kills; the client has been joined."""
    kills = 0
    deadline = time.time() + 240 * SLOW
    # A request posted just before the client finished still counts.
    while (cl.is_alive() or kill_req) and time.time() < deadline:
        if not kill_req:
            time.sleep(0.002)
            continue
        kill_req.pop(0)
        time.sleep(rng.uniform(0, jitter))
        d.kill9()
        kills += 1
        while_down(kills)
        d.start()
    if cl.is_alive():
        cl.stop = True
        cl.join(30)
        raise TestFailure('client did not finish in time (%d acked, '
                          'seed %d)' % (len(cl.acked), seed))
    cl.join()
    if cl.error:
        raise TestFailure('client: %s (seed %d)' % (cl.error, seed))
    return kills


@crash_test
def test_crash_kill9():
    seed = int(os.environ.get('FERRY_CRASH_SEED', str(int(time.time()))))
    rng = random.Random(seed)
    bodies = _make_bodies(rng, N_MESSAGES)
    lo, hi = N_MESSAGES // 50, N_MESSAGES - N_MESSAGES // 50
    kill_points = sorted(rng.sample(range(lo, hi), N_KILLS))
    d = Daemon('crash', message_size_limit='200000',
               smtpd_timeout='60s', smtpd_data_timeout='120s')
    ok = False
    seen = {}
    try:
        d.start()
        kill_req = []
        cl = Client(d, bodies, random.Random(seed + 1), kill_points,
                    kill_req)
        cl.start()
        # somewhere inside a message's transfer or commit; while it is
        # down, the queue shows only whole messages
        kills = kill_loop(
            d, cl, kill_req, rng, 0.03, seed,
            lambda k: _verify(d, bodies, seen, 'after kill %d' % k))
        check(kills >= 5, 'only %d kills happened (seed %d)'
              % (kills, seed))
        check(len(cl.acked) == N_MESSAGES, 'client acked %d of %d'
              % (len(cl.acked), N_MESSAGES))
        d.stop()
        found = _verify(d, bodies, seen, 'at the end')
        for i, qid in sorted(cl.acked.items()):
            check(qid in found.get(i, []),
                  'LOST: message %d acknowledged as %s is not in the '
                  'queue (seed %d)' % (i, qid, seed))
        total = sum(len(v) for v in found.values())
        check(total >= len(cl.acked), 'queue %d < acked %d'
              % (total, len(cl.acked)))
        tmp = os.path.join(d.queue_dir, 'tmp')
        check(not os.path.isdir(tmp) or os.listdir(tmp) == [],
              'tmp/ not swept at start: %r' % os.listdir(tmp)[:10])
        ok = True
        return ('%d kills, %d retries, %d acked, %d queued, %d duplicates, '
                'seed %d' % (kills, cl.retries, len(cl.acked), total,
                             total - len(found), seed))
    finally:
        d.cleanup(ok)
