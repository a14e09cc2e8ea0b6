#!/usr/bin/python3
"""
run.py - runs the integration tests: every test_* function in the
test_*.py files next to it, in parallel (serial ones alone, afterwards).
Prints `PASS name` or `FAIL name: reason` per test as it finishes, then
`N passed, N failed`; exits 1 on any failure.

  run.py [-j JOBS] [-k SUBSTRING] [--skip-crash] [--prefix P]
  FERRY_BIN=build/native/san/ferry run.py     (the sanitizer build)
  FERRY_KEEP=1 keeps the temp dirs of passing tests too.
"""

import argparse
import concurrent.futures
import glob
import importlib
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ferrytest  # noqa: E402


def collect(pattern, skip_crash):
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, 'test_*.py'))):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        for name in sorted(vars(mod)):
            fn = getattr(mod, name)
            if not name.startswith('test_') or not callable(fn):
                continue
            if pattern and not any(p in name for p in pattern):
                continue
            if skip_crash and getattr(fn, 'crash', False):
                continue
            tests.append((name[5:], fn))
    return tests


def run_one(fn):
    """(ok, text, seconds): text is the test's own note when it passed
    (a returned string) or the failure with the daemons' log tails."""
    t0 = time.monotonic()
    ferrytest.daemons_of_this_test(reset=True)
    try:
        info = fn()
        return True, info if isinstance(info, str) else '', \
            time.monotonic() - t0
    except ferrytest.TestFailure as e:
        err = str(e)
    except Exception:
        err = traceback.format_exc()
    for d in ferrytest.daemons_of_this_test():
        err += '\n[daemon %s: %s; log tail:]\n%s' % (
            d.name, d.dir if os.path.isdir(d.dir) else '(removed)',
            d.log_tail(12))
    return False, err, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('-j', type=int, default=8)
    ap.add_argument('-k', action='append')
    ap.add_argument('--skip-crash', action='store_true')
    ap.add_argument('--prefix', default='')
    a = ap.parse_args()

    if not os.access(ferrytest.FERRY_BIN, os.X_OK):
        print('FAIL %sintegration: no executable %s'
              % (a.prefix, ferrytest.FERRY_BIN))
        print('0 passed, 1 failed')
        return 1
    ferrytest.ensure_ferry_user()
    tests = collect(a.k, a.skip_crash)
    lock = threading.Lock()
    counts = [0, 0]

    def report(name, res):
        ok, text, secs = res
        with lock:
            if ok:
                counts[0] += 1
                print('PASS %s%s (%.1fs)%s' % (a.prefix, name, secs,
                                               ': ' + text if text else ''))
            else:
                counts[1] += 1
                lines = text.rstrip().splitlines() or ['?']
                print('FAIL %s%s: %s' % (a.prefix, name, lines[0]))
                for l in lines[1:60]:
                    print('    ' + l)
            sys.stdout.flush()

    par = [t for t in tests if not getattr(t[1], 'serial', False)]
    ser = [t for t in tests if getattr(t[1], 'serial', False)]
    with concurrent.futures.ThreadPoolExecutor(max(1, a.j)) as ex:
        futs = {ex.submit(run_one, fn): name for name, fn in par}
        for f in concurrent.futures.as_completed(futs):
            report(futs[f], f.result())
    for name, fn in ser:
        report(name, run_one(fn))
    print('%d passed, %d failed' % (counts[0], counts[1]))
    return 1 if counts[1] or not tests else 0


if __name__ == '__main__':
    sys.exit(main())
