#!/bin/sh
# run.sh - every test, after `make all unit san fuzz replay` (what `make
# test` runs): unit tests and the fuzz corpora under valgrind, the
# sanitizer unit tests, the integration suite against ./ferry, against a
# `make install`ed copy and against the ASan/UBSan daemon, the builds
# against mbedTLS 3.6 and c-ares 1.34 (test/compat.sh), the big-endian
# s390x build under qemu, then each fuzz target for a short run over a
# copy of its corpus.
# Output passes through as it comes; PASS/FAIL lines are counted, a binary
# that crashes (or fails without a FAIL line) counts as one FAIL, and the
# last line is "N passed, N failed".  Exit 1 on any failure.
#
#   FUZZ_SECONDS=15     per fuzz target
#   SAN_CRASH=0         skip the kill -9 test against the ASan daemon
#   INTEGRATION_JOBS=8  parallel integration tests

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
INTEGRATION_JOBS=${INTEGRATION_JOBS:-8}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

TMP=$(mktemp -d /tmp/ferry-run.XXXXXX) || exit 1
chmod 0755 "$TMP"
trap 'rm -rf "$TMP"' EXIT INT TERM

PASSED=0
FAILED=0

# tally NAME CMD...: run CMD with its output shown live, count its PASS
# and FAIL lines; a crash, or a non-zero exit with no FAIL line, is one
# FAIL named NAME.
tally() {
	name=$1
	shift
	{ "$@" 2>&1; echo $? >"$TMP/rc"; } | tee "$TMP/out"
	rc=$(cat "$TMP/rc")
	p=$(grep -c '^PASS ' "$TMP/out")
	f=$(grep -c '^FAIL ' "$TMP/out")
	if [ "$rc" -ge 128 ]; then
		echo "FAIL $name: crashed (exit status $rc)"
		f=$((f + 1))
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $name: exit status $rc"
		f=1
	fi
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
}

# The daemon drops to this user when started as root.
if [ "$(id -u)" -eq 0 ] && ! id ferry >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin ferry
fi

# (a) unit tests under valgrind
found=0
for t in build/native/unit/*_test; do
	[ -x "$t" ] || continue
	found=1
	echo "=== valgrind $t"
	tally "valgrind $(basename "$t")" \
	    valgrind --error-exitcode=1 --leak-check=full -q "$t"
done
[ "$found" -eq 1 ] || echo "note: no unit tests in build/native/unit/"

# (a2) each fuzz target over its corpus under valgrind: it sees what the
# sanitizers do not, a value never set (the fuzz build is ASan's)
for t in build/native/replay/fuzz_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	echo "=== valgrind $t"
	tally "valgrind replay $n" \
	    valgrind --error-exitcode=1 -q "$t" test/fuzz/corpus/"$n"/*
done

# (b) unit tests built with ASan and UBSan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in build/native/san/unit-*; do
	[ -x "$t" ] || continue
	echo "=== sanitizer $t"
	tally "san $(basename "$t")" "$t"
done
unset ASAN_OPTIONS UBSAN_OPTIONS

# (c) integration tests against ./ferry
echo "=== integration: ./ferry"
tally "integration" env FERRY_BIN="$ROOT/ferry" \
    "$PY" test/integration/run.py -j "$INTEGRATION_JOBS"

# (c2) `make install` into a scratch DESTDIR, then the same suite against
# the installed binary: the layout must work, not only exist (issue 6).
# -o ferry: install the binary (c) tested, never a rebuilt one.
echo "=== integration: installed ferry (make install DESTDIR=...)"
DEST="$TMP/install"
if make --no-print-directory -o ferry install DESTDIR="$DEST" \
    PREFIX=/usr >"$TMP/install.log" 2>&1; then
	tally "installed integration" env FERRY_BIN="$DEST/usr/sbin/ferry" \
	    "$PY" test/integration/run.py -j "$INTEGRATION_JOBS" \
	    --prefix 'installed: '
else
	sed 's/^/    /' "$TMP/install.log"
	echo "FAIL make install DESTDIR=$DEST PREFIX=/usr"
	FAILED=$((FAILED + 1))
fi

# (d) the same against the sanitizer daemon; any report in its log fails
echo "=== integration: build/native/san/ferry"
skip=
[ "${SAN_CRASH:-1}" = 0 ] && skip=--skip-crash
tally "san integration" env FERRY_BIN="$ROOT/build/native/san/ferry" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$PY" test/integration/run.py -j "$INTEGRATION_JOBS" \
    --prefix 'san: ' $skip

# (e) the newest library versions compat.h claims: c-ares 1.34 headers,
# mbedTLS 3.6 with TLS 1.3 (unit tests and the integration suite)
tally "compat" sh test/compat.sh

# (e2) big-endian: the s390x build's unit tests and fuzz replays under
# qemu-user (all cross targets: make test-cross)
# (cross.sh's own status survives the renaming: a death without a FAIL
# line still counts)
# shellcheck disable=SC2016
tally "cross s390x" sh -c 'sh test/cross.sh s390x-linux-gnu >"$1" 2>&1
    rc=$?
    sed -E "s/^\[s390x-linux-gnu\] (PASS|FAIL) /\1 s390x: /" "$1"
    exit $rc' sh "$TMP/cross.out"

# (f) fuzz targets, over a copy of the corpus so git stays clean
for f in build/fuzz/fuzz_*; do
	[ -f "$f" ] && [ -x "$f" ] || continue
	name=$(basename "$f")
	corpus="$TMP/corpus-$name"
	mkdir -p "$corpus"
	if [ -d "test/fuzz/corpus/$name" ]; then
		cp -R "test/fuzz/corpus/$name/." "$corpus/"
	else
		echo "note: no corpus in test/fuzz/corpus/$name"
	fi
	echo "=== fuzz $name (${FUZZ_SECONDS}s)"
	"$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=0 \
	    -artifact_prefix="$TMP/art-$name-" "$corpus" \
	    >"$TMP/fuzz.log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "PASS fuzz: $name ($(grep -o 'Done [0-9]* runs' \
		    "$TMP/fuzz.log" | tail -n 1), corpus $(ls "$corpus" |
		    wc -l) files)"
		PASSED=$((PASSED + 1))
	else
		mkdir -p build/fuzz/artifacts
		cp "$TMP"/art-"$name"-* build/fuzz/artifacts/ 2>/dev/null
		echo "FAIL fuzz: $name: exit status $rc; artifacts in" \
		    "build/fuzz/artifacts/; log tail:"
		tail -n 40 "$TMP/fuzz.log" | sed 's/^/    /'
		FAILED=$((FAILED + 1))
	fi
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
