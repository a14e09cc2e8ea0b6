#!/bin/sh
# deps.sh - install the Debian packages a make target needs.
#
#   sh test/deps.sh build|test|cross
#
# Owns only the package lists below.  Asks dpkg-query what is missing;
# prints nothing when nothing is.  As root it runs apt-get update (an index
# that fails to refresh, e.g. a mirror mid-sync, is only a warning) and
# apt-get install; otherwise it prints the commands to run.
# Exit: 0 all present (or installed now), 1 missing or install failed,
# 64 usage.

set -u

# Wait this long for another apt/dpkg to let go of its lock, not fail.
DEPS_LOCK_WAIT=600

CROSS_ARCHS="mipsel armhf s390x"
CROSS_LIBS="libmbedtls-dev libc-ares-dev libsodium-dev"

me=deps

pkgs_build="gcc make libc6-dev libmbedtls-dev libc-ares-dev libsodium-dev openssl"
# swaks only recommends the Perl TLS modules, and the cross compilers
# only recommend their C library's headers: --no-install-recommends
# leaves both out, so they are named.
pkgs_test="$pkgs_build clang libclang-rt-14-dev python3 swaks
    libio-socket-ssl-perl libnet-ssleay-perl postfix valgrind
    procps iproute2 passwd unbound nsd ldnsutils sasl2-bin libsasl2-modules
    libsasl2-modules-db mandoc pflogsumm fail2ban shellcheck busybox strace bsd-mailx"
pkgs_cross="gcc-mipsel-linux-gnu gcc-arm-linux-gnueabihf gcc-s390x-linux-gnu
    libc6-dev-mipsel-cross libc6-dev-armhf-cross libc6-dev-s390x-cross
    qemu-user"
for a in $CROSS_ARCHS; do
	for l in $CROSS_LIBS; do
		pkgs_cross="$pkgs_cross $l:$a"
	done
done

installed() {
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
	case $st in
	ii*) return 0 ;;
	*) return 1 ;;
	esac
}

[ $# -eq 1 ] || { echo "usage: sh $0 build|test|cross" >&2; exit 64; }
case $1 in
build) want=$pkgs_build ;;
test) want=$pkgs_test ;;
cross) want=$pkgs_cross ;;
*) echo "usage: sh $0 build|test|cross" >&2; exit 64 ;;
esac

missing=
for p in $want; do
	installed "$p" || missing="$missing $p"
done
[ -n "$missing" ] || exit 0

# Foreign architectures dpkg does not know yet (cross only).
newarch=
if [ "$1" = cross ]; then
	known=" $(dpkg --print-architecture) $(dpkg --print-foreign-architectures | tr '\n' ' ') "
	for a in $CROSS_ARCHS; do
		case $known in
		*" $a "*) ;;
		*) newarch="$newarch $a" ;;
		esac
	done
fi

echo "$me: missing for '$1':$missing"
if [ "$(id -u)" != 0 ]; then
	echo "$me: run as root:" >&2
	for a in $newarch; do
		echo "  dpkg --add-architecture $a" >&2
	done
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive" \
	    "apt-get install -y --no-install-recommends$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for a in $newarch; do
	dpkg --add-architecture "$a" || { echo "$me: cannot add $a" >&2; exit 1; }
done
lock="-o DPkg::Lock::Timeout=$DEPS_LOCK_WAIT"
# A partly failed update still leaves usable lists; the install decides.
# shellcheck disable=SC2086
apt-get -q $lock update ||
    echo "$me: warning: apt-get update failed in part; trying the install" >&2
# shellcheck disable=SC2086
if ! apt-get -q -y $lock install --no-install-recommends $missing; then
	echo "$me: apt-get install failed:$missing" >&2
	exit 1
fi
still=
for p in $missing; do
	installed "$p" || still="$still $p"
done
if [ -n "$still" ]; then
	echo "$me: still missing after install:$still" >&2
	exit 1
fi
echo "$me: installed:$missing"
