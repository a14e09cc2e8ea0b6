#!/bin/sh
# compat.sh - ferry against the newest library versions compat.h claims,
# which Debian 12 does not ship: mbedTLS 3.6 (OpenWrt 24.10, Debian 13)
# and c-ares 1.34.  Their Debian 13 (trixie) packages are downloaded and
# unpacked under build/compat/ (nothing is installed; Debian 12's keyring
# already trusts trixie's archive key); mbedTLS 3.6's libraries run on
# Debian 12's glibc, c-ares 1.34's do not, so:
#   - every file that includes <ares.h> is compiled against the 1.34
#     headers with the Makefile's flags (-Werror: its deprecations too);
#   - ferry and the unit tests are built against mbedTLS 3.6 (TLS 1.3 on)
#     into build/mb36/ and run, then the whole integration suite runs
#     against build/mb36/ferry.
# Prints PASS/FAIL lines as run.sh counts them.
#
#   sh test/compat.sh
#   env: COMPAT_MIRROR (default: the Debian mirror apt already uses, then
#        http://deb.debian.org/debian), INTEGRATION_JOBS (8)
# Exit: 0 all passed, 1 a failure (a download that fails is one).

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
C=$ROOT/build/compat
MIRRORS=${COMPAT_MIRROR:-$(sh "$ROOT/test/apt-mirror.sh")}
SUITE=trixie
# The runtime packages are named after their sonames (3.6: tls 21,
# crypto 16, x509 7).
PKGS="libmbedtls-dev libmbedtls21 libmbedcrypto16 libmbedx509-7 libc-ares-dev"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
failed=0

fail() {
	echo "FAIL compat: $*"
	failed=1
}

# fetch: the packages' files under $C/root, once; from the first mirror
# of $MIRRORS that has them.
fetch() {
	[ -f "$C/root/usr/include/mbedtls/build_info.h" ] &&
	    [ -f "$C/root/usr/include/ares_version.h" ] && return 0
	for m in $MIRRORS; do
		fetch_from "$m" && return 0
	done
	return 1
}

fetch_from() {
	echo "compat: fetching $PKGS from $1 $SUITE"
	rm -rf "$C" && mkdir -p "$C/lists/partial" "$C/cache/archives/partial" \
	    "$C/deb" || return 1
	echo "deb $1 $SUITE main" >"$C/sources.list"
	set -- -o Dir::Etc::sourcelist="$C/sources.list" \
	    -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$C/lists" \
	    -o Dir::Cache="$C/cache" -o APT::Get::List-Cleanup=0 \
	    -o Debug::NoDropPrivs=1 -o APT::Sandbox::User=root
	apt-get "$@" update >"$C/apt.log" 2>&1 || return 1
	# shellcheck disable=SC2086
	(cd "$C/deb" && apt-get "$@" download $PKGS) >>"$C/apt.log" 2>&1 ||
	    return 1
	for d in "$C"/deb/*.deb; do
		dpkg-deb -x "$d" "$C/root" || return 1
	done
}

echo "=== compat: mbedTLS 3.6 and c-ares 1.34 from Debian $SUITE"
if ! fetch; then
	sed 's/^/    /' "$C/apt.log" 2>/dev/null | tail -n 20
	fail "cannot download $PKGS ($SUITE) from any of: $MIRRORS"
	exit 1
fi
inc=$C/root/usr/include
lib=$C/root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
    echo x86_64-linux-gnu)
echo "mbedTLS $(sed -n 's/^#define MBEDTLS_VERSION_STRING *"\(.*\)"/\1/p' \
    "$inc/mbedtls/build_info.h"), c-ares $(sed -n \
    's/^#define ARES_VERSION_STR *"\(.*\)"/\1/p' "$inc/ares_version.h")"

# Separate include directories, so each build sees one new library and
# Debian 12's other one.
mkdir -p "$C/ares/include" "$C/mbedtls/include" "$C/mbedtls/lib"
if ! { cp "$inc"/ares*.h "$C/ares/include/" &&
    cp -R "$inc/mbedtls" "$inc/psa" "$C/mbedtls/include/" &&
    cp -P "$lib"/libmbed*.so* "$C/mbedtls/lib/"; }; then
	fail "cannot unpack"
	exit 1
fi

# c-ares 1.34: compile only.
objs=
for f in *.c; do
	grep -q '^#include <ares.h>' "$f" && objs="$objs build/ares134/${f%.c}.o"
done
[ -n "$objs" ] || fail "no file includes <ares.h>"
# shellcheck disable=SC2086
if make --no-print-directory -s TARGET=ares134 LTO= \
    CC="cc -isystem $C/ares/include" $objs >"$C/ares.log" 2>&1; then
	echo "PASS compat: c-ares 1.34 headers:$objs"
else
	sed 's/^/    /' "$C/ares.log"
	fail "c-ares 1.34 headers"
fi

# mbedTLS 3.6: build, unit tests, the integration suite.
if ! make --no-print-directory -s TARGET=mb36 LTO= \
    CC="cc -isystem $C/mbedtls/include" \
    LDLIBS="-L$C/mbedtls/lib -Wl,-rpath,$C/mbedtls/lib -lmbedtls -lmbedx509 -lmbedcrypto -lcares -lsodium" \
    all unit >"$C/mb36.log" 2>&1; then
	sed 's/^/    /' "$C/mb36.log"
	fail "build against mbedTLS 3.6"
	exit 1
fi
if ! ldd build/mb36/ferry | grep -q "$C/mbedtls/lib/libmbedtls.so"; then
	fail "build/mb36/ferry does not load mbedTLS 3.6"
	exit 1
fi
echo "PASS compat: build against mbedTLS 3.6"
for t in build/mb36/unit/*_test; do
	if "$t" >"$C/unit.log" 2>&1; then
		echo "PASS compat: mbedTLS 3.6 $(tail -n 1 "$C/unit.log")"
	else
		sed 's/^/    /' "$C/unit.log"
		fail "mbedTLS 3.6 unit test $t"
	fi
done
# The tests run ferry as other users too (sendmail as nobody, from a
# copy of the binary), who may not reach build/ (a clone in a 0700
# directory): the libraries go to a directory anyone can read, named by
# LD_LIBRARY_PATH, which every test passes on.
libs=$(mktemp -d /tmp/ferry-mb36.XXXXXX) || exit 1
trap 'rm -rf "$libs"' EXIT INT TERM
if ! { chmod 0755 "$libs" && cp -P "$C"/mbedtls/lib/libmbed*.so* \
    "$libs/"; }; then
	fail "cannot copy the mbedTLS 3.6 libraries to $libs"
	exit 1
fi
env FERRY_BIN="$ROOT/build/mb36/ferry" LD_LIBRARY_PATH="$libs" \
    "$PY" test/integration/run.py -j "${INTEGRATION_JOBS:-8}" --skip-crash \
    --prefix 'mbedtls3.6: ' || failed=1
exit "$failed"
