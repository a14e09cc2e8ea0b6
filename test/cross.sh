#!/bin/sh
# cross.sh - build ferry and its unit tests for other CPUs and run the tests
# under qemu-user.
#
#   sh test/cross.sh TRIPLET...     e.g. mipsel-linux-gnu arm-linux-gnueabihf
#                                        s390x-linux-gnu
#
# Owns only the loop: `make CROSS=T`, `make CROSS=T unit` and `make
# CROSS=T replay` build into build/T/, then every build/T/unit/*_test runs
# under qemu-<cpu>, and every fuzz target over its corpus (replay.c).  Prints
# each test's PASS/FAIL lines prefixed with "[T]", a failing test's
# diagnostics, and a final "N passed, N failed" over all targets.
# Targets whose qemu aborts dynamic binaries (s390x on Debian 12's qemu
# 7.2) are linked -static.  A build failure, a test binary that dies
# without printing FAIL, or a target with no tests counts as a failure.
# Exit: 0 all passed, 1 anything failed, 64 usage.

set -u

CROSS_TEST_TIMEOUT=600	# seconds per test binary under emulation
CROSS_JOBS=${CROSS_JOBS:-2}

[ $# -ge 1 ] || { echo "usage: sh $0 TRIPLET..." >&2; exit 64; }
cd "$(dirname "$0")/.." || exit 1

passed=0
failed=0
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT INT TERM

# The qemu-user binary for a GNU triplet's CPU.
qemu_for() {
	case $1 in
	mipsel-*) echo qemu-mipsel ;;
	mips64el-*) echo qemu-mips64el ;;
	mips-*) echo qemu-mips ;;
	arm-*|armv7*) echo qemu-arm ;;
	aarch64-*) echo qemu-aarch64 ;;
	s390x-*) echo qemu-s390x ;;
	powerpc64le-*) echo qemu-ppc64le ;;
	powerpc-*) echo qemu-ppc ;;
	riscv64-*) echo qemu-riscv64 ;;
	i686-*) echo qemu-i386 ;;
	*) echo "qemu-${1%%-*}" ;;
	esac
}

# Dynamic binaries of these targets do not run under this qemu.
needs_static() {
	case $1 in
	s390x-*) return 0 ;;
	*) return 1 ;;
	esac
}

# True if ELF file $2 (built for triplet $1) asks for a dynamic loader.
is_dynamic() {
	"$1-readelf" -l "$2" 2>/dev/null | grep -q INTERP
}

fail() {
	echo "[$t] FAIL $*"
	failed=$((failed + 1))
}

for t in "$@"; do
	qemu=$(qemu_for "$t")
	if ! command -v "$t-gcc" >/dev/null; then
		fail "no cross compiler $t-gcc (sh test/deps.sh cross)"
		continue
	fi
	if ! command -v "$qemu" >/dev/null; then
		fail "no $qemu (package qemu-user)"
		continue
	fi

	# The Makefile's unit-test link line has no $(LDFLAGS), so -static
	# goes in front of $(LDLIBS), whose value make itself reports.
	set --
	if needs_static "$t"; then
		# shellcheck disable=SC2016
		libs=$(make -s --no-print-directory CROSS="$t" \
		    --eval='cross-print-ldlibs: ; @echo $(LDLIBS)' \
		    cross-print-ldlibs) || libs=
		set -- LDFLAGS=-static "LDLIBS=-static $libs"
		# A test left over from a dynamic build would abort: relink it.
		for f in build/"$t"/unit/*_test build/"$t"/replay/fuzz_* \
		    build/"$t"/ferry; do
			[ -f "$f" ] && is_dynamic "$t" "$f" && rm -f "$f"
		done
	fi

	echo "[$t] build: make CROSS=$t $*"
	built=1
	for goal in all unit replay; do
		if ! make -s --no-print-directory -j"$CROSS_JOBS" CROSS="$t" \
		    "$@" "$goal" >"$out" 2>&1; then
			sed "s/^/[$t]   /" "$out" | tail -30
			fail "make CROSS=$t $goal"
			built=0
			break
		fi
	done
	[ $built -eq 1 ] || continue

	n=0
	for bin in build/"$t"/unit/*_test; do
		[ -x "$bin" ] || continue
		n=$((n + 1))
		name=${bin##*/}
		# Debian 12's qemu-user kills a forked child of a dynamically
		# linked program (SIGSEGV at once, or at exit): tests that
		# need a child's exit status skip that part when told.
		dyn=
		is_dynamic "$t" "$bin" && dyn=1
		FERRY_QEMU_DYNAMIC=$dyn timeout "$CROSS_TEST_TIMEOUT" "$qemu" \
		    -L "/usr/$t" "$bin" >"$out" 2>&1
		rc=$?
		p=$(grep -c '^PASS ' "$out")
		f=$(grep -c '^FAIL ' "$out")
		grep -E '^(PASS|FAIL) ' "$out" | sed "s/^/[$t] /"
		passed=$((passed + p))
		failed=$((failed + f))
		if [ "$f" -gt 0 ]; then
			# The CHECK() lines say what went wrong.
			grep -v -E '^(RUN|PASS|FAIL) ' "$out" | sed "s/^/[$t]   /"
		fi
		if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -15 "$out" | sed "s/^/[$t]   /"
			if [ $rc -eq 124 ]; then
				fail "$name: timed out after ${CROSS_TEST_TIMEOUT}s"
			else
				fail "$name: exit $rc with no FAIL line (crash?)"
			fi
		elif [ $rc -eq 0 ] && [ "$p" -eq 0 ]; then
			fail "$name: ran no test"
		fi
	done
	[ $n -gt 0 ] || fail "no unit tests in build/$t/unit"

	# The fuzz targets over their corpora (test/fuzz/replay.c).
	for bin in build/"$t"/replay/fuzz_*; do
		name=${bin##*/}
		timeout "$CROSS_TEST_TIMEOUT" "$qemu" -L "/usr/$t" "$bin" \
		    test/fuzz/corpus/"$name"/* >"$out" 2>&1
		rc=$?
		if [ $rc -eq 0 ] && grep -q '^PASS ' "$out"; then
			sed "s/^/[$t] /" "$out"
			passed=$((passed + 1))
		else
			tail -15 "$out" | sed "s/^/[$t]   /"
			fail "replay $name: exit $rc"
		fi
	done
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
