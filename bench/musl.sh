#!/bin/sh
# musl.sh - ferry's footprint on musl, the C library OpenWrt uses, beside
# glibc, on this machine: the stripped binary, the idle RSS of `ferry
# serve` and where it goes (Rss per mapped file, from /proc/PID/smaps),
# and the same for a program that only links the five libraries and
# calls pause() (the floor no daemon linked to them can go under).
# Budget (issue 6): binary <= 150 KB, idle RSS <= 2 MB.
#
#   sh bench/musl.sh
#   env: MUSL_MIRROR (default: the Debian mirror apt already uses, then
#        http://deb.debian.org/debian), MUSL_SUITE (integration tests
#        to run against the musl build after the smoke test: run.py -k
#        each word, "all" every test, "" none: the default), MUSL_ROUNDS
#        (3: each program is measured that often, the round with the
#        median VmRSS is shown), FERRY (./ferry, the glibc build, made by
#        `make` beforehand), BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1.
#
# Owns the musl build and the measurement; lib.sh starts the daemons.
# - The libraries are built from the upstream versions Debian 12 ships,
#   from Debian's source pool with Debian's patches (c-ares' configure.ac
#   patch aside: the shipped configure is used) and, for mbedTLS,
#   Debian's config.h changes (debian/rules); shared, with musl-gcc and
#   OpenWrt's default flags for size (MUSL_CFLAGS below), installed into
#   build/musl/{include,lib}, stripped as OpenWrt installs them.  Each is
#   rebuilt when its stamp (version and flags) differs.
# - ferry is built by the Makefile, TARGET=musl CC=musl-gcc, into
#   build/musl/ferry.  Debian 12's musl is 1.2.3, whose loader has no
#   DT_RELR (1.2.4 has; OpenWrt 23.05 ships 1.2.4), so the Makefile's
#   -z pack-relative-relocs is left out of LDFLAGS here.
# - Both ferries run `serve` on lib.sh's benchmark config plus tls_cert
#   and tls_key; idle is 2 s after the listener appears.  The musl one
#   finds its libraries through LD_LIBRARY_PATH (no rpath in the binary),
#   set for it alone: the glibc one must not see them.
# - The smoke test: one message over STARTTLS into the musl ferry,
#   relayed to an smtp-sink.
# Needs root, musl-gcc (apt-get install musl-tools musl-dev), autoreconf
# (autoconf automake libtool), python3, smtp-sink, ss, curl, make, patch,
# xz.
# Exit: 0 built, measured, smoke test passed and the musl build meets
# both budgets; 1 a step failed; 2 a budget missed on musl; 64 usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

[ $# -eq 0 ] || { echo "usage: sh $0 (settings in the environment)" >&2;
    exit 64; }
rounds=${MUSL_ROUNDS:-3}
positive "$rounds"

MUSL_BIN_KB=150			# stripped binary
MUSL_IDLE_KB=2048		# idle RSS
MUSL_SETTLE=2			# seconds before memory is read
MUSL_SMOKE_TIMEOUT=60		# seconds for the sink to get the message
# OpenWrt's defaults for a package: TARGET_CFLAGS (-Os -pipe
# -fno-caller-saves -fno-plt), the regular stack protector and full
# RELRO.  (Its -fhonour-copts is a patch of its gcc; its
# _FORTIFY_SOURCE needs fortify-headers, which Debian's musl lacks.)
MUSL_CFLAGS="-Os -pipe -fno-caller-saves -fno-plt -fstack-protector"
MUSL_LDFLAGS="-Wl,-z,now -Wl,-z,relro"
# The Makefile's LDFLAGS without $(RELR).
MUSL_FERRY_LDFLAGS="-Wl,--gc-sections -Wl,-z,noseparate-code"

M=$here/build/musl
SRC=$M/src
certs=$here/test/certs

# file sha256 pool-directory: the sources, as Debian 12 (bookworm) has
# them in its Sources index.
SOURCES="mbedtls_2.28.3.orig.tar.gz
3b4953aa55a681e084d31892d9904cc5328d6b4958ea57b90ae4b4f94ae69a8d m/mbedtls
mbedtls_2.28.3-1.debian.tar.xz
3e03c61f63c7bbcd0bf695b53e6663ab448cc2e15429cd67d0e4f32e699645a9 m/mbedtls
c-ares_1.18.1.orig.tar.gz
1a7d52a8a84a9fbffb1be9133c0f6e17217d91ea5a6fa61f6b4729cda78ebbcf c/c-ares
c-ares_1.18.1-3.debian.tar.xz
15d38a23182dc143c655b0225d21baa291a2be17435c8a7f427189e3e314fac9 c/c-ares
libsodium_1.0.18.orig.tar.gz
d59323c6b712a1519a5daf710b68f5e7fde57040845ffec53850911f10a5d4f4 libs/libsodium
libsodium_1.0.18-1+deb12u1.debian.tar.xz
f410474e46346b06b162defa05b1be26906aeed6cf309e3d4ebe30b4d1350733 libs/libsodium"

prepare "ferry drops privileges to user ferry" \
    ferry-musl musl-gcc python3 smtp-sink ss curl patch xz make autoreconf
command -v musl-gcc >/dev/null || die "no musl-gcc"
[ -e /lib/ld-musl-x86_64.so.1 ] || die "no /lib/ld-musl-x86_64.so.1 (musl)"
trap 'stop_floor; cleanup' EXIT
floor_pid=

stop_floor() {
	[ -n "$floor_pid" ] && kill "$floor_pid" 2>/dev/null
	floor_pid=
}

# --- the sources ----------------------------------------------------------

mirrors=${MUSL_MIRROR:-$(sh "$here/test/apt-mirror.sh")}

# sha_ok FILE SHA256
sha_ok() {
	[ -f "$1" ] && [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$2" ]
}

# fetch: every file of SOURCES into SRC, checked, unless already there.
fetch() {
	mkdir -p "$SRC" || die "mkdir $SRC"
	printf '%s\n' "$SOURCES" | while read -r f && read -r sum pool; do
		sha_ok "$SRC/$f" "$sum" && continue
		fetched=
		for m in $mirrors; do
			m=${m%/}
			curl -fsS -m 300 -o "$SRC/$f.part" \
			    "$m/pool/main/$pool/$f" 2>>"$dir/fetch.log" &&
			    sha_ok "$SRC/$f.part" "$sum" &&
			    mv "$SRC/$f.part" "$SRC/$f" && { fetched=1; break; }
		done
		rm -f "$SRC/$f.part"
		[ -n "$fetched" ] || { cat "$dir/fetch.log" >&2;
		    die "cannot fetch $f from: $mirrors"; }
		echo "$me: fetched $f"
	done || exit 1
}

# --- the libraries --------------------------------------------------------

# unpack NAME ORIG DEBIAN SKIP: a fresh tree in M/work/NAME from ORIG, with
# the patches of DEBIAN's series applied but SKIP.
unpack() {
	w=$M/work/$1
	rm -rf "$w" || die "rm $w"
	mkdir -p "$w" || die "mkdir $w"
	tar -xf "$SRC/$2" -C "$w" --strip-components=1 || die "untar $2"
	tar -xf "$SRC/$3" -C "$w" || die "untar $3"
	[ -f "$w/debian/patches/series" ] || return 0
	grep -v '^#' "$w/debian/patches/series" | while read -r p _; do
		[ -n "$p" ] && [ "$p" != "$4" ] || continue
		(cd "$w" && patch -s -p1 <"debian/patches/$p") ||
		    die "$1: patch $p does not apply"
	done || exit 1
}

# stale NAME VERSION: true unless NAME was built as VERSION with these
# flags.
stale() {
	stamp="$1 $2 musl-gcc $MUSL_CFLAGS $MUSL_LDFLAGS"
	[ "$(cat "$M/stamp-$1" 2>/dev/null)" != "$stamp" ]
}

built() {
	echo "$stamp" >"$M/stamp-$1" || die "cannot write $M/stamp-$1"
	echo "$me: built $1"
}

# mbedTLS: the library Makefile (no programs, no tests), with the options
# debian/rules sets in config.h.
build_mbedtls() {
	stale mbedtls 2.28.3 || return 0
	echo "$me: building mbedTLS 2.28.3 with musl-gcc"
	unpack mbedtls mbedtls_2.28.3.orig.tar.gz mbedtls_2.28.3-1.debian.tar.xz -
	for o in MBEDTLS_DEPRECATED_WARNING MBEDTLS_HAVEGE_C MBEDTLS_MD2_C \
	    MBEDTLS_MD4_C MBEDTLS_THREADING_C MBEDTLS_THREADING_PTHREAD \
	    MBEDTLS_CMAC_C MBEDTLS_SSL_DTLS_SRTP; do
		(cd "$w" && python3 scripts/config.py set "$o") ||
		    die "mbedTLS: config.py set $o"
	done
	nice make -C "$w/library" -j2 SHARED=1 CC=musl-gcc \
	    CFLAGS="$MUSL_CFLAGS" LDFLAGS="$MUSL_LDFLAGS" shared \
	    >"$M/mbedtls.log" 2>&1 ||
	    { tail -20 "$M/mbedtls.log" >&2; die "mbedTLS does not build"; }
	rm -rf "$M/include/mbedtls" "$M/include/psa" "$M"/lib/libmbed* ||
	    die "mbedTLS: cannot remove the old build"
	{ cp -R "$w/include/mbedtls" "$w/include/psa" "$M/include/" &&
	    cp -P "$w"/library/libmbed*.so* "$M/lib/"; } ||
	    die "mbedTLS: cannot install into $M"
	built mbedtls
}

# configure_build NAME ARGS...: configure, make and install an autoconf
# tree in M/work/NAME into M.
configure_build() {
	n=$1
	shift
	# A git snapshot (libsodium's) has no configure: Debian's rules
	# run autoreconf too.
	(cd "$M/work/$n" && { [ -x configure ] || nice autoreconf -fi; } &&
	    nice ./configure --prefix="$M" CC=musl-gcc \
	    CFLAGS="$MUSL_CFLAGS" LDFLAGS="$MUSL_LDFLAGS" --enable-shared \
	    --disable-static "$@" && nice make -j2 && make install) \
	    >"$M/$n.log" 2>&1 ||
	    { tail -20 "$M/$n.log" >&2; die "$n does not build"; }
}

# c-ares: debian/rules' configure options.
build_cares() {
	stale c-ares 1.18.1 || return 0
	echo "$me: building c-ares 1.18.1 with musl-gcc"
	unpack c-ares c-ares_1.18.1.orig.tar.gz c-ares_1.18.1-3.debian.tar.xz \
	    disable-cflags-rewrite.diff
	configure_build c-ares --enable-symbol-hiding --disable-tests \
	    --disable-debug
	built c-ares
}

# libsodium: the whole library, as Debian builds it (OpenWrt's package
# can build --enable-minimal).
build_sodium() {
	stale libsodium 1.0.18 || return 0
	echo "$me: building libsodium 1.0.18 with musl-gcc"
	unpack libsodium libsodium_1.0.18.orig.tar.gz \
	    libsodium_1.0.18-1+deb12u1.debian.tar.xz -
	configure_build libsodium
	built libsodium
}

# The libraries stripped (OpenWrt strips what it installs; the sections
# strip drops are not loaded, so RSS is the same either way).
strip_libs() {
	for f in "$M"/lib/lib*.so.*; do
		[ -L "$f" ] || strip --strip-unneeded "$f" || die "strip $f"
	done
}

# --- ferry and the floor --------------------------------------------------

build_ferry() {
	# The Makefile does not know the libraries: relink after a rebuild.
	[ -f "$M/ferry" ] && [ -n "$(find "$M" -maxdepth 1 -name 'stamp-*' \
	    -newer "$M/ferry")" ] && rm -f "$M/ferry"
	echo "$me: make TARGET=musl CC=musl-gcc"
	nice make -s --no-print-directory -C "$here" TARGET=musl \
	    CC="musl-gcc -isystem $M/include" LDFLAGS="$MUSL_FERRY_LDFLAGS" \
	    LDLIBS="-L$M/lib -lmbedtls -lmbedx509 -lmbedcrypto -lcares -lsodium" \
	    build/musl/ferry >"$dir/make-musl.log" 2>&1 ||
	    { tail -20 "$dir/make-musl.log" >&2; die "ferry does not build with musl"; }
	mf=$M/ferry
	readelf -l "$mf" | grep -q 'ld-musl-x86_64' ||
	    die "$mf: its loader is not musl's"
}

# The floor: links the five libraries, calls pause().
build_floors() {
	floor_build cc "$dir/floor-glibc"
	floor_build musl-gcc "$dir/floor-musl" -L"$M/lib"
}

# The musl programs run through this, so LD_LIBRARY_PATH is theirs alone
# (exec: the pid lib.sh waits on is the program's).
write_wrapper() {
	cat >"$dir/run-ferry-musl" <<EOF || die "cannot write $dir/run-ferry-musl"
#!/bin/sh
LD_LIBRARY_PATH='$M/lib' exec '$mf' "\$@"
EOF
	chmod 755 "$dir/run-ferry-musl" || die "chmod $dir/run-ferry-musl"
}

# --- measuring ------------------------------------------------------------

# map.py PID: "VmRSS KB" and "key KB" lines, the Rss of /proc/PID/smaps
# summed per mapped file (by its name) or per kind of anonymous memory.
cat >"$dir/map.py" <<'EOF' || die "cannot write $dir/map.py"
import os, sys

pid = sys.argv[1]
with open('/proc/%s/status' % pid) as f:
    for line in f:
        if line.startswith('VmRSS:'):
            print('VmRSS', line.split()[1])
exe = os.path.realpath('/proc/%s/exe' % pid)
rss, key = {}, None
with open('/proc/%s/smaps' % pid) as f:
    for line in f:
        parts = line.split()
        if '-' in parts[0] and ':' not in parts[0]:
            path = parts[5] if len(parts) > 5 else ''
            if path == exe:
                key = 'exe'
            elif path.startswith('['):
                key = path.strip('[]')
            elif path:
                key = os.path.basename(path)
            else:
                key = 'anon'
        elif parts[0] == 'Rss:':
            rss[key] = rss.get(key, 0) + int(parts[1])
for k in sorted(rss):
    print(k, rss[k])
EOF

# measure LABEL PID: after MUSL_SETTLE, LABEL's figures of this round
# into LABEL.ROUND.map.
measure() {
	sleep "$MUSL_SETTLE"
	python3 "$dir/map.py" "$2" >"$dir/$1.$round.map" ||
	    die "cannot read $2's smaps"
}

# median_map LABEL: the round of LABEL with the median VmRSS becomes
# LABEL.map (one round's figures, so its rows add up).
median_map() {
	f=$(for m in "$dir/$1".*.map; do
		echo "$(sed -n 's/^VmRSS //p' "$m") $m"
	    done | sort -n | awk '{ f[NR] = $2 } END { print f[int((NR + 1) / 2)] }')
	cp "$f" "$dir/$1.map" || die "cannot copy $f"
}

# ferry_idle LABEL BINARY: ferry serve from BINARY on the benchmark
# config plus TLS, measured at idle, stopped.
ferry_idle() {
	ferry=$2
	mkdir "$dir/$1.$round" || die "mkdir $dir/$1.$round"
	free_port
	# Not a pipe: ferry_start must set ferry_pid in this shell.
	ferry_start "$dir/$1.$round" "$port" <<EOF
tls_cert = $certs/server.pem
tls_key = $certs/server.key
smarthost = [127.0.0.1]:9
EOF
	measure "$1" "$ferry_pid"
	ferry_stop
}

# floor_idle LABEL BINARY [WRAPPER...]: the floor program measured.
floor_idle() {
	l=$1
	shift
	"$@" &
	floor_pid=$!
	measure "$l" "$floor_pid"
	stop_floor
}

# --- the smoke test -------------------------------------------------------

cat >"$dir/send.py" <<'EOF' || die "cannot write $dir/send.py"
import smtplib, ssl, sys

port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
with smtplib.SMTP('127.0.0.1', port, timeout=60) as s:
    s.ehlo('smoke.test')
    s.starttls(context=ctx)
    s.ehlo('smoke.test')
    tls = s.sock.version()
    s.sendmail('sender@smoke.test', ['rcpt@example.net'],
               'Subject: musl smoke\r\n\r\nthrough ferry on musl\r\n')
print('sent over', tls)
EOF

smoke() {
	ferry=$dir/run-ferry-musl
	write_sinkwait
	free_port; sink_port=$port
	sink_start 127.0.0.1 "$sink_port" "$dir/sink.count" "$dir/sink.err" 1
	mkdir "$dir/smoke" || die "mkdir $dir/smoke"
	free_port
	ferry_start "$dir/smoke" "$port" <<EOF
tls_cert = $certs/server.pem
tls_key = $certs/server.key
smarthost = [127.0.0.1]:$sink_port
smarthost_tls = none
EOF
	waiter_start "$dir/smoke.wait" 1 "$MUSL_SMOKE_TIMEOUT" "$dir/sink.count"
	smoke_ok=
	if python3 "$dir/send.py" "$port" "$certs/ca.pem" >"$dir/send.log" 2>&1
	then
		waiter_wait "the sink"
		[ "$got" -ge 1 ] && smoke_ok=1
	else
		cat "$dir/send.log" >&2
		kill "$waiter_pid" 2>/dev/null
		waiter_pid=
	fi
	ferry_stop
	sinks_stop
	if [ -n "$smoke_ok" ]; then
		echo "$me: smoke test passed: $(cat "$dir/send.log"), relayed to" \
		    "the sink"
	else
		tail -"$BENCH_LOG_TAIL" "$dir/smoke/ferry.log" >&2
		echo "$me: smoke test FAILED" >&2
	fi
}

# suite: the integration tests named by MUSL_SUITE (run.py -k each;
# "all": every one) against the musl build.  Not through LD_LIBRARY_PATH:
# the tests run glibc programs too (python's ctypes, test/dnsq, ./ferry),
# which would load the musl libraries from it.  So a copy of ferry is
# linked from the same objects with an rpath to a copy of the libraries
# in a directory other users can read (the tests run ferry as nobody).
suite() {
	[ -n "${MUSL_SUITE:-}" ] || return 0
	libs=$dir/suite
	{ mkdir -m 0755 "$libs" && cp -P "$M"/lib/lib*.so* "$libs/"; } ||
	    die "cannot copy the libraries to $libs"
	# shellcheck disable=SC2086 # the flags are words
	musl-gcc -Oz -flto=auto $MUSL_FERRY_LDFLAGS -Wl,-rpath,"$libs" \
	    -o "$libs/ferry" "$M/main.o" "$M/libferry.a" -L"$libs" \
	    -lmbedtls -lmbedx509 -lmbedcrypto -lcares -lsodium ||
	    die "cannot link $libs/ferry"
	set --
	[ "$MUSL_SUITE" = all ] || for g in $MUSL_SUITE; do
		set -- "$@" -k "$g"
	done
	echo "$me: integration tests ($MUSL_SUITE) against the musl build"
	env FERRY_BIN="$libs/ferry" nice python3 \
	    "$here/test/integration/run.py" -j 2 --skip-crash --prefix 'musl: ' \
	    "$@" >"$dir/suite.log" 2>&1
	suite_rc=$?
	grep -E '^(FAIL|[0-9]+ passed)' "$dir/suite.log" | cut -c1-160
}

# --- the run --------------------------------------------------------------

load_before
fetch
mkdir -p "$M/include" "$M/lib" || die "mkdir $M"
build_mbedtls
build_cares
build_sodium
strip_libs
build_ferry
write_wrapper
build_floors
for b in "$mf" "$dir/floor-musl"; do
	n=$(extra_libs readelf "$b")
	[ "$n" = ok ] || die "$b is linked to more than $BENCH_LIBS: $n"
done
strip -o "$dir/ferry-musl.stripped" "$mf" || die "strip $mf"
strip -o "$dir/ferry-glibc.stripped" "$ferry" || die "strip $ferry"
glibc_ferry=$ferry

round=1
while [ "$round" -le "$rounds" ]; do
	ferry_idle ferry-glibc "$glibc_ferry"
	ferry_idle ferry-musl "$dir/run-ferry-musl"
	floor_idle floor-glibc "$dir/floor-glibc"
	floor_idle floor-musl env LD_LIBRARY_PATH="$M/lib" "$dir/floor-musl"
	round=$((round + 1))
done
for l in ferry-musl ferry-glibc floor-musl floor-glibc; do
	median_map "$l"
done
smoke
suite_rc=0
suite
load_after

# --- the table ------------------------------------------------------------

size() {
	wc -c <"$1" | tr -d ' '
}
libc_glibc=$(ldd "$glibc_ferry" | sed -n 's/.*libc\.so\.6 => \([^ ]*\).*/\1/p')
{
	echo "bin musl $(size "$dir/ferry-musl.stripped")"
	echo "bin glibc $(size "$dir/ferry-glibc.stripped")"
	echo "libcfile musl $(size /lib/ld-musl-x86_64.so.1)"
	echo "libcfile glibc $(size "$libc_glibc")"
	for l in ferry-musl ferry-glibc floor-musl floor-glibc; do
		sed "s/^/map $l /" "$dir/$l.map"
	done
} | awk -v binkb="$MUSL_BIN_KB" -v idlekb="$MUSL_IDLE_KB" '
# The rows: a mapping key to its row.
function row_of(k) {
	if (k == "exe") return "the program"
	if (k ~ /^(libc\.so|ld-linux|ld-musl)/) return "libc + loader"
	if (k ~ /^libmbedcrypto/) return "libmbedcrypto"
	if (k ~ /^libmbedx509/) return "libmbedx509"
	if (k ~ /^libmbedtls/) return "libmbedtls"
	if (k ~ /^libcares/) return "libcares"
	if (k ~ /^libsodium/) return "libsodium"
	if (k == "heap") return "[heap]"
	if (k == "stack") return "[stack]"
	if (k == "anon") return "anonymous (malloc, TLS, bss)"
	return "other (" k ")"
}
function line(what, m, g) {
	printf "%-40s %10s %10s\n", what, m, g
}
$1 == "bin" { bin[$2] = $3 }
$1 == "libcfile" { libcf[$2] = $3 }
$1 == "map" {
	split($2, a, "-")		# ferry-musl: who, libc
	who = a[1]; c = a[2]
	if ($3 == "VmRSS") { vm[who, c] = $4; next }
	r = row_of($3)
	rss[who, c, r] += $4
	if (r ~ /^lib(mbed|cares|sodium)/) rss[who, c, "libs"] += $4
	if (!(r in seen)) { seen[r] = 1; extra[++ne] = r }
}
END {
	nrows = split("the program|libc + loader|libmbedcrypto|libmbedx509|" \
	    "libmbedtls|libcares|libsodium|libs|[heap]|" \
	    "anonymous (malloc, TLS, bss)|[stack]", rows, "|")
	for (i = 1; i <= nrows; i++)
		known[rows[i]] = 1
	for (i = 1; i <= ne; i++)
		if (!(extra[i] in known))
			rows[++nrows] = extra[i]
	line("", "musl", "glibc")
	line("stripped ferry (bytes)", bin["musl"], bin["glibc"])
	line("libc.so file (bytes)", libcf["musl"], libcf["glibc"])
	for (wi = 1; wi <= 2; wi++) {
		who = wi == 1 ? "ferry" : "floor"
		print ""
		if (who == "ferry")
			what = "ferry serve, idle: VmRSS (KB)"
		else
			what = "control (links the 5, pause()): VmRSS (KB)"
		line(what, vm[who, "musl"], vm[who, "glibc"])
		for (i = 1; i <= nrows; i++) {
			r = rows[i]
			if (r == "libs") {
				line("  Rss mbedTLS, c-ares, libsodium",
				    rss[who, "musl", r], rss[who, "glibc", r])
			} else if (rss[who, "musl", r] + rss[who, "glibc", r] > 0) {
				line("  Rss " r, rss[who, "musl", r] + 0,
				    rss[who, "glibc", r] + 0)
			}
		}
	}
	print ""
	bad = 0
	v = bin["musl"]
	printf "budget: musl binary %d <= %d KB: %s\n", v, binkb,
	    v <= binkb * 1024 ? "met" : "MISSED"
	if (v > binkb * 1024) bad = 1
	v = vm["ferry", "musl"]
	printf "budget: musl idle RSS %d <= %d KB: %s\n", v, idlekb,
	    v <= idlekb ? "met" : "MISSED"
	if (v > idlekb) bad = 1
	exit bad
}'
budget=$?
[ -n "$smoke_ok" ] || exit 1
[ "$suite_rc" = 0 ] || { echo "$me: integration groups failed;" \
    "log in $dir/suite.log" >&2; exit 1; }
ok=1
[ "$budget" = 0 ] || exit 2
exit 0
