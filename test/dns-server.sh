#!/bin/sh
# dns-server.sh - a private unbound that serves the test zone `test.` on
# 127.0.0.1:PORT and never talks to the internet.
#
#   sh test/dns-server.sh start DIR PORT ZONEFILE...
#   sh test/dns-server.sh stop DIR
#
# ZONEFILEs hold records in unbound's local-data syntax, one a line:
#   local-data: "a.test. MX 10 mx1.a.test."
# (or 'single quoted', or a bare "a.test. MX 10 mx1.a.test." line; a line
# starting with '#' is a comment).  Names are absolute, as in local-data.
# The records become one zone file loaded as an auth-zone, not local-data,
# because unbound does not follow a CNAME in local-data; the iterator does
# follow it inside an auth-zone (for-upstream), so "mx.a.test CNAME
# real.a.test" resolves.  unbound-checkconf rejects bad records up front.
#
# What the server answers:
#   names in the data               the data, CNAMEs followed
#   other names under test.         NXDOMAIN (or NODATA if the name exists)
#   servfail.test and below         SERVFAIL, at once: delegated to
#                                   127.0.0.253, which unbound is told never
#                                   to query (do-not-query-address)
#   refused.test and below          REFUSED (local-zone refuse)
#   anything outside test.          SERVFAIL, the same way: "." is a stub
#                                   to 127.0.0.253, so no root is asked
# Everything lives in DIR (config, zone, log, pid).  start waits until
# the server answers; exit 0 ready, 1 failed (log tail on stderr), 64 usage.

set -u

DNS_START_WAIT=100	# tenths of a second
DNS_STOP_WAIT=50
DEAD=127.0.0.253	# an address unbound must never query

me=dns-server

usage() {
	echo "usage: sh $0 start DIR PORT ZONEFILE... | stop DIR" >&2
	exit 64
}

fail() {
	echo "$me: $*" >&2
	[ -f "$dir/unbound.log" ] && tail -n 20 "$dir/unbound.log" >&2
	exit 1
}

# zone_lines FILE: the records of FILE, one a line, without local-data: "".
zone_lines() {
	sed -e '/^[[:space:]]*#/d' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
	    -e 's/^local-data:[[:space:]]*"\(.*\)"$/\1/' \
	    -e "s/^local-data:[[:space:]]*'\\(.*\\)'\$/\\1/" \
	    -e '/^$/d' "$1"
}

# alive PID: running and not a zombie waiting for a parent that never
# reaps (unbound outlives the shell that started it).
alive() {
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in
	Z*) return 1 ;;
	*) return 0 ;;
	esac
}

start() {
	[ $# -ge 2 ] || usage
	mkdir -p "$1" || exit 1
	dir=$(cd "$1" && pwd) || exit 1
	port=$2
	shift 2
	case $port in
	''|*[!0-9]*) usage ;;
	esac
	command -v unbound >/dev/null 2>&1 ||
	    fail "unbound is not installed (sh test/deps.sh test)"

	# shellcheck disable=SC2016
	{
		echo '$ORIGIN test.'
		echo '$TTL 300'
		echo '@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60'
		echo '@ NS ns.test.'
		echo 'ns A 127.0.0.1'
		echo 'servfail NS ns.servfail.test.'
		echo "ns.servfail A $DEAD"
		echo '$ORIGIN .'
		for f in "$@"; do
			[ -r "$f" ] || fail "cannot read $f"
			zone_lines "$f"
		done
	} >"$dir/test.zone" || exit 1

	cat >"$dir/unbound.conf" <<EOF
server:
	verbosity: 1
	interface: 127.0.0.1
	port: $port
	do-ip6: no
	username: ""
	chroot: ""
	directory: "$dir"
	pidfile: "$dir/unbound.pid"
	logfile: "$dir/unbound.log"
	use-syslog: no
	num-threads: 1
	so-reuseport: no
	access-control: 127.0.0.0/8 allow
	module-config: "iterator"
	do-not-query-localhost: no
	do-not-query-address: $DEAD
	local-zone: "test." nodefault
	local-zone: "refused.test." refuse
auth-zone:
	name: "test."
	zonefile: "$dir/test.zone"
	for-downstream: no
	for-upstream: yes
	fallback-enabled: no
stub-zone:
	name: "."
	stub-addr: $DEAD
EOF
	unbound-checkconf "$dir/unbound.conf" >"$dir/checkconf.out" 2>&1 ||
	    fail "bad config: $(cat "$dir/checkconf.out")"
	rm -f "$dir/unbound.log"
	unbound -d -c "$dir/unbound.conf" >"$dir/unbound.out" 2>&1 &
	echo $! >"$dir/server.pid"
	i=0
	while ! grep -q 'start of service' "$dir/unbound.log" 2>/dev/null; do
		alive "$(cat "$dir/server.pid")" ||
		    fail "unbound exited: $(cat "$dir/unbound.out")"
		i=$((i + 1))
		[ $i -le $DNS_START_WAIT ] || { stop "$dir"; fail "no start"; }
		sleep 0.1
	done
	# A zone that does not load leaves unbound running but SERVFAILing.
	if grep -q 'error' "$dir/unbound.log"; then
		stop "$dir"
		fail "zone data rejected"
	fi
	exit 0
}

stop() {
	[ $# -eq 1 ] || usage
	dir=$1
	[ -f "$dir/server.pid" ] || exit 0
	pid=$(cat "$dir/server.pid")
	rm -f "$dir/server.pid"
	kill "$pid" 2>/dev/null || return 0
	i=0
	while alive "$pid"; do
		i=$((i + 1))
		if [ $i -gt $DNS_STOP_WAIT ]; then
			kill -9 "$pid" 2>/dev/null
			break
		fi
		sleep 0.1
	done
	return 0
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
start) start "$@" ;;
stop) stop "$@" ;;
*) usage ;;
esac
