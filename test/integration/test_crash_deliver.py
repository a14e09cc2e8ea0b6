"""
test_crash_deliver.py - kill -9 during delivery.  A client sends distinct
messages through ferry to a smarthost (Postfix's smtp-sink, dumping each
transaction) while the harness kills the daemon with SIGKILL at random
moments (deliveries run all the time: each message is sent on as soon as
it is queued) and restarts it.  While the daemon is down the queue must
hold only whole messages of ours.  At the end (flush, queue empty, clean
stop) every acknowledged message must be at the sink at least once, byte
for byte; duplicates (a kill between the sink's 250 and ferry's state
write, or a client retry of an unacknowledged message) are counted and
reported on the PASS line, losses fail.  FERRY_CRASH_SEED reproduces a run.

Bodies are 200 B - 12 KB (FERRY_CRASH_DELIVER_MAX): bigger ones are the
subject of test_deliver.test_deliver_large_message.
"""

import os
import random
import re
import time

from ferrytest import Daemon, check, crash_test
from peers import Sink, flush, wait_for, crlf_to_lf
from test_crash import Client, SEQ_RE, _verify, TABLE, kill_loop

N_MESSAGES = int(os.environ.get('FERRY_CRASH_DELIVER_MESSAGES', '500'))
MAX_SIZE = int(os.environ.get('FERRY_CRASH_DELIVER_MAX', '12000'))
N_KILLS = 8
RECEIVED_ID_RE = re.compile(rb'\(ferry\) with E?SMTP id ([0-9A-F]{18})\b')


def _bodies(rng, n):
    out = []
    for i in range(n):
        size = rng.randint(200, MAX_SIZE)
        head = (b'Subject: crash delivery %d\r\nMessage-ID: <cd%d.%d@test>'
                b'\r\nX-Seq: %d\r\n\r\n' % (i, i, rng.getrandbits(32), i))
        blob = rng.randbytes(size).translate(TABLE)
        lines, pos, have = [head], 0, len(head)
        while have < size:
            ln = rng.randint(0, 120)
            line = blob[pos:pos + ln]
            pos += ln
            if rng.random() < 0.05:
                line = b'.' + line
            lines.append(line + b'\r\n')
            have += len(line) + 2
        out.append(b''.join(lines))
    return out


@crash_test
def test_crash_kill9_during_delivery():
    seed = int(os.environ.get('FERRY_CRASH_SEED', str(int(time.time()))))
    rng = random.Random(seed)
    bodies = _bodies(rng, N_MESSAGES)
    lo, hi = N_MESSAGES // 20, N_MESSAGES - N_MESSAGES // 20
    kill_points = sorted(rng.sample(range(lo, hi), N_KILLS))
    ok = False
    # About one end-of-data reply in ten waits a second or more, so kills
    # find deliveries in flight, some between the sink's 250 and ours.
    with Sink(opts=('-W', '.:1:10')) as sink:
        d = Daemon('crashdel', smarthost='[127.0.0.1]:%d' % sink.port,
                   retry_min='1s', retry_max='2s', queue_lifetime='1d',
                   message_size_limit='200000', smtpd_timeout='60s',
                   smtpd_data_timeout='120s')
        seen = {}
        try:
            d.start()
            kill_req = []
            cl = Client(d, bodies, random.Random(seed + 1), kill_points,
                        kill_req)
            cl.start()
            backlog = []

            def while_down(k):
                found = _verify(d, bodies, seen, 'after kill %d' % k)
                backlog.append(sum(len(v) for v in found.values()))

            kills = kill_loop(d, cl, kill_req, rng, 0.05, seed, while_down)
            check(kills >= N_KILLS - 1, 'only %d kills (seed %d)'
                  % (kills, seed))
            check(len(cl.acked) == N_MESSAGES, 'client acked %d of %d'
                  % (len(cl.acked), N_MESSAGES))
            flush(d)
            wait_for(lambda: d.mailq() == [], 60,
                     'the queue to empty (seed %d): %d left; log:\n%s'
                     % (seed, len(d.mailq()), d.log_tail(10)))
            d.stop()
            check(d.corrupt_files() == [], 'corrupt/: %r'
                  % d.corrupt_files())

            # what reached the sink
            count, qids = {}, {}
            for m in sink.messages():
                mm = SEQ_RE.search(m.body.replace(b'\n', b'\r\n'))
                check(mm, 'not one of ours at the sink: %r' % m)
                i = int(mm.group(1))
                check(i < N_MESSAGES, 'bad X-Seq %d' % i)
                want = crlf_to_lf(bodies[i])
                check(m.body.endswith(want) and
                      m.body[:len(m.body) - len(want)]
                      .startswith(b'Received: '),
                      'message %d arrived altered (seed %d): %r'
                      % (i, seed, m))
                check(m.rcpt_addrs == ['r%d@relay.test' % i] and
                      m.sender == 'crash@example.test',
                      'message %d envelope %r' % (i, m))
                count[i] = count.get(i, 0) + 1
                q = RECEIVED_ID_RE.search(m.body)
                check(q, 'no ferry queue ID in %r' % m)
                qids.setdefault(i, []).append(q.group(1).decode())
            lost = [i for i in sorted(cl.acked) if i not in count]
            check(not lost, 'LOST: %d acknowledged message(s) never '
                  'reached the sink: %r (seed %d)'
                  % (len(lost), lost[:20], seed))
            # a queue ID twice: delivered again after a kill; two IDs for
            # one message: the client resent what it saw no 250 for
            redeliv = {i: v for i, v in qids.items() if len(set(v)) < len(v)}
            resent = {i: v for i, v in qids.items() if len(set(v)) > 1}
            # redelivered although ferry had logged "sent": the crash fell
            # between our 250 and the durable removal (allowed, rare)
            log = d.log_text()
            late = [i for i, v in redeliv.items()
                    if len(re.findall(r'\b%s: to=<[^>]*>, .*status=sent'
                                      % v[0], log)) > 1]
            ok = True
            return ('%d kills, queue while down %s, %d client retries, '
                    '%d delivered, duplicates: %d redelivered %s (%d after '
                    '"sent" was logged), %d resent %s, seed %d'
                    % (kills, backlog, cl.retries, len(count),
                       len(redeliv), sorted(redeliv)[:10], len(late),
                       len(resent), sorted(resent)[:10], seed))
        finally:
            d.cleanup(ok)
