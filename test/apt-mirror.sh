#!/bin/sh
# apt-mirror.sh - prints the Debian mirrors to fetch packages from: the
# one apt is set up with, then deb.debian.org (a local mirror may carry
# only this machine's release).  Used by test/compat.sh and bench/musl.sh.
# Exit: 0.
apt=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n -E 's,^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)([a-z]+://[^[:space:]]*/debian/?)([[:space:]].*)?$,\3,p' |
    head -n 1)
echo ${apt:+"$apt "}http://deb.debian.org/debian
