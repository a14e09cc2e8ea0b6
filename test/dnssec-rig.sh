#!/bin/sh
# dnssec-rig.sh - a DNSSEC test rig of real software: nsd serves zones
# signed with ldns-signzone under `dane.test.` on 127.0.0.1:NSD_PORT, and
# a validating unbound on 127.0.0.1:UNBOUND_PORT trusts the DS of
# `dane.test.` and asks nobody but that nsd.  Never talks to the internet.
# (test/dns-server.sh is the plain, unsigned rig; this one is for DANE.)
#
#   sh test/dnssec-rig.sh start DIR NSD_PORT UNBOUND_PORT ZONESPEC...
#   sh test/dnssec-rig.sh stop DIR
#
# ZONESPEC is one of
#   KIND:ZONE:FILE   a zone ZONE (dane.test itself or a name below it)
#                    with the records in FILE, zone-file syntax, names
#                    relative to ZONE unless they end in a dot; ';' starts
#                    a comment.  The rig adds SOA, NS and the delegation
#                    from the enclosing zone.  KIND is
#                      secure    signed; DS in the (signed) parent
#                      insecure  unsigned; delegated without a DS
#                      bogus     DS in the parent for one key, the zone
#                                signed with another: validation fails
#                      expired   signed with the DS's key, but every
#                                signature expired days ago: bogus too
#                    dane.test itself may only be secure (it holds the
#                    trust anchor); a zone nested in another given zone is
#                    delegated from that one.
#   servfail:NAME    NAME (and all below) SERVFAIL at once: delegated from
#                    its enclosing zone, without DS, to 127.0.0.253, which
#                    unbound is told never to query.  The name above it
#                    still resolves, so `servfail:_25._tcp.mx.a.dane.test`
#                    makes only the TLSA lookup of a secure MX fail.
# Built in: `servfail.dane.test` and below SERVFAIL the same way; names
# outside dane.test SERVFAIL ("." is a stub to 127.0.0.253).
#
# What a client of the unbound sees (with DO or AD in its query): secure
# data with AD, insecure data without AD, bogus data as SERVFAIL.
# Everything lives in DIR: zones/ (unsigned, signed), keys/, nsd.conf,
# unbound.conf, ta.ds (the trust anchor), logs, pids.  start waits until
# both servers answer; exit 0 ready, 1 failed (log tails on stderr),
# 64 usage.  stop waits for both to exit (nsd takes seconds).

set -u

RIG_START_WAIT=100	# tenths of a second, per server
RIG_STOP_WAIT=100
RIG_TTL=300
RIG_NEG_TTL=60
RIG_ALG=ECDSAP256SHA256
RIG_PARENT=dane.test
DEAD=127.0.0.253	# an address unbound must never query

me=dnssec-rig
dir=

usage() {
	echo "usage: sh $0 start DIR NSD_PORT UNBOUND_PORT ZONESPEC... |" \
	    "stop DIR" >&2
	exit 64
}

fail() {
	echo "$me: $*" >&2
	if [ -n "$dir" ]; then
		for f in nsd.log unbound.log; do
			[ -f "$dir/$f" ] || continue
			echo "--- $f" >&2
			tail -n 15 "$dir/$f" >&2
		done
	fi
	exit 1
}

# alive PID: running and not a zombie waiting for a parent that never
# reaps (the servers outlive the shell that started them).
alive() {
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in
	Z*) return 1 ;;
	*) return 0 ;;
	esac
}

# norm NAME: lower case, no trailing dot.
norm() {
	printf '%s\n' "$1" | tr '[:upper:]' '[:lower:]' | sed 's/\.*$//'
}

# labels NAME: how many labels.
labels() {
	printf '%s\n' "$1" | awk -F. '{ print NF }'
}

# enclosing NAME: the longest zone in zones.list that is a proper suffix
# of NAME (dane.test at least, for names below it).
enclosing() {
	best=$RIG_PARENT
	while read -r _k z _f; do
		case $1 in
		*."$z")
			if [ "$(labels "$z")" -gt "$(labels "$best")" ]; then
				best=$z
			fi
			;;
		esac
	done <"$dir/zones.list"
	echo "$best"
}

# keygen ZONE: a new key (SEP flag, signs everything) in keys/; prints
# its base path.
keygen() {
	k=$(cd "$dir/keys" && ldns-keygen -a $RIG_ALG -k "$1.") ||
	    fail "ldns-keygen $1 failed"
	echo "$dir/keys/$k"
}

# stamp OFFSET: a UTC time ldns-signzone takes, OFFSET as date -d takes it.
stamp() {
	date -u -d "$1" +%Y%m%d%H%M%S
}

# build_zone KIND ZONE: sign (or not) zones/ZONE.zone into
# zones/ZONE.signed and add the delegation to the enclosing zone.
build_zone() {
	kind=$1
	z=$2
	src="$dir/zones/$z.zone"
	out="$dir/zones/$z.signed"
	inc=$(stamp '-1 hour')
	exp=$(stamp '+30 days')
	ds=
	case $kind in
	insecure)
		cp "$src" "$out" || exit 1
		;;
	secure|bogus|expired)
		key=$(keygen "$z") || exit 1
		ds="$key.ds"
		if [ "$kind" = bogus ]; then
			key=$(keygen "$z") || exit 1	# not the DS's key
		elif [ "$kind" = expired ]; then
			# Well past unbound's clock skew allowance (10% of
			# the validity period, at most val-sig-skew-max).
			inc=$(stamp '-30 days')
			exp=$(stamp '-5 days')
		fi
		ldns-signzone -i "$inc" -e "$exp" -o "$z." -f "$out" \
		    "$src" "$key" >"$dir/sign.out" 2>&1 ||
		    fail "ldns-signzone $z: $(cat "$dir/sign.out")"
		;;
	esac
	if [ "$z" = $RIG_PARENT ]; then
		cp "$ds" "$dir/ta.ds" || exit 1
		return 0
	fi
	p=$(enclosing "$z")
	{
		echo "$z. NS ns.$RIG_PARENT."
		if [ -n "$ds" ]; then
			cat "$ds" || exit 1
		fi
	} >>"$dir/zones/$p.zone" || exit 1
}

start() {
	[ $# -ge 3 ] || usage
	mkdir -p "$1" || exit 1
	dir=$(cd "$1" && pwd) || exit 1
	nport=$2
	uport=$3
	shift 3
	for p in "$nport" "$uport"; do
		case $p in
		''|*[!0-9]*) usage ;;
		esac
	done
	for c in nsd unbound ldns-keygen ldns-signzone drill; do
		command -v $c >/dev/null 2>&1 ||
		    fail "$c is not installed (sh test/deps.sh test)"
	done
	[ -f "$dir/nsd.pid.rig" ] || [ -f "$dir/unbound.pid.rig" ] &&
	    fail "$dir: a rig is running there (stop it first)"
	rm -rf "$dir/zones" "$dir/keys" "$dir/zones.list" "$dir/servfail.list"
	mkdir -p "$dir/zones" "$dir/keys" || exit 1

	# The zones: the parent first, then those given.
	echo "secure $RIG_PARENT -" >"$dir/zones.list"
	: >"$dir/servfail.list"
	echo "servfail.$RIG_PARENT" >>"$dir/servfail.list"
	for spec in "$@"; do
		kind=${spec%%:*}
		rest=${spec#*:}
		case $kind in
		servfail)
			n=$(norm "$rest")
			case $n in
			*."$RIG_PARENT") ;;
			*) fail "$spec: not below $RIG_PARENT" ;;
			esac
			echo "$n" >>"$dir/servfail.list"
			continue
			;;
		secure|insecure|bogus|expired) ;;
		*) fail "$spec: unknown kind '$kind'" ;;
		esac
		case $rest in
		*:*) ;;
		*) fail "$spec: want KIND:ZONE:FILE" ;;
		esac
		z=$(norm "${rest%%:*}")
		f=${rest#*:}
		[ -r "$f" ] || fail "$spec: cannot read $f"
		case $z in
		"$RIG_PARENT")
			[ "$kind" = secure ] ||
			    fail "$spec: $RIG_PARENT can only be secure"
			sed -i "s|^secure $RIG_PARENT -\$|secure $RIG_PARENT $f|" \
			    "$dir/zones.list"
			continue
			;;
		*."$RIG_PARENT") ;;
		*) fail "$spec: not below $RIG_PARENT" ;;
		esac
		grep -q "^[a-z]* $z " "$dir/zones.list" &&
		    fail "$spec: zone $z given twice"
		echo "$kind $z $f" >>"$dir/zones.list"
	done

	# Unsigned zone files: header and the caller's records.
	# shellcheck disable=SC2016
	while read -r kind z f; do
		{
			echo "\$ORIGIN $z."
			echo "\$TTL $RIG_TTL"
			echo "@ SOA ns.$RIG_PARENT. hostmaster.$RIG_PARENT." \
			    "1 3600 600 86400 $RIG_NEG_TTL"
			echo "@ NS ns.$RIG_PARENT."
			if [ "$z" = $RIG_PARENT ]; then
				echo "ns A 127.0.0.1"
			fi
			if [ "$f" != - ]; then
				cat "$f" || exit 1
				echo
			fi
			echo "\$ORIGIN $z."
		} >"$dir/zones/$z.zone" || exit 1
	done <"$dir/zones.list"

	# SERVFAIL names: delegations to the dead address, glue included.
	while read -r n; do
		p=$(enclosing "$n")
		echo "$n. NS ns.$n." >>"$dir/zones/$p.zone" || exit 1
		echo "ns.$n. A $DEAD" >>"$dir/zones/$p.zone" || exit 1
	done <"$dir/servfail.list"

	# Sign the deepest zones first: a parent needs its children's DS.
	awk '{ n = split($2, a, "."); print n, $1, $2 }' "$dir/zones.list" |
	    sort -rn >"$dir/order.list"
	while read -r _n kind z; do
		build_zone "$kind" "$z" || exit 1
	done <"$dir/order.list"

	# nsd: every zone, one process tree, no control socket, no database.
	{
		cat <<EOF
server:
	ip-address: 127.0.0.1@$nport
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: "$dir/zones"
	database: ""
	zonelistfile: "$dir/nsd.zonelist"
	xfrdfile: "$dir/nsd.xfrd"
	xfrdir: "$dir"
	pidfile: "$dir/nsd.pid"
	logfile: "$dir/nsd.log"
	server-count: 1
	verbosity: 1
	hide-version: yes
	zonefiles-write: 0
remote-control:
	control-enable: no
EOF
		while read -r _k z _f; do
			printf 'zone:\n\tname: "%s."\n\tzonefile: "%s"\n' \
			    "$z" "$dir/zones/$z.signed"
		done <"$dir/zones.list"
	} >"$dir/nsd.conf" || exit 1
	nsd-checkconf "$dir/nsd.conf" >"$dir/checkconf.out" 2>&1 ||
	    fail "bad nsd config: $(cat "$dir/checkconf.out")"
	while read -r _k z _f; do
		nsd-checkzone "$z." "$dir/zones/$z.signed" \
		    >"$dir/checkzone.out" 2>&1 ||
		    fail "zone $z rejected: $(cat "$dir/checkzone.out")"
	done <"$dir/zones.list"

	# unbound: validates with dane.test's DS, asks only nsd (stubs) and
	# never the dead address, keeps a bogus answer 1 s, a server's
	# failure 2 s (a rig restarted on the same ports is asked again).
	cat >"$dir/unbound.conf" <<EOF
server:
	verbosity: 1
	interface: 127.0.0.1
	port: $uport
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
	module-config: "validator iterator"
	trust-anchor-file: "$dir/ta.ds"
	val-permissive-mode: no
	val-bogus-ttl: 1
	val-sig-skew-max: 60
	val-log-level: 2
	do-not-query-localhost: no
	do-not-query-address: $DEAD
	local-zone: "test." nodefault
	infra-host-ttl: 2
	infra-cache-min-rtt: 50
	infra-keep-probing: yes
	serve-expired: no
	prefetch: no
	qname-minimisation: no
stub-zone:
	name: "."
	stub-addr: $DEAD
EOF
	# Every zone a stub to nsd: after a referral unbound would ask the
	# NS host on port 53, and nsd is on NSD_PORT.
	while read -r _k z _f; do
		printf 'stub-zone:\n\tname: "%s."\n\tstub-addr: %s\n' \
		    "$z" "127.0.0.1@$nport" >>"$dir/unbound.conf" || exit 1
	done <"$dir/zones.list"
	unbound-checkconf "$dir/unbound.conf" >"$dir/checkconf.out" 2>&1 ||
	    fail "bad unbound config: $(cat "$dir/checkconf.out")"

	rm -f "$dir/nsd.log" "$dir/unbound.log" "$dir/nsd.pid" \
	    "$dir/unbound.pid"
	nsd -d -c "$dir/nsd.conf" </dev/null >"$dir/nsd.out" 2>&1 &
	echo $! >"$dir/nsd.pid.rig"
	wait_ready nsd "$nport" || { stop "$dir"; fail "nsd did not start"; }
	unbound -d -c "$dir/unbound.conf" </dev/null >"$dir/unbound.out" 2>&1 &
	echo $! >"$dir/unbound.pid.rig"
	wait_ready unbound "$uport" ||
	    { stop "$dir"; fail "unbound did not start"; }
	# For stop: nsd's server processes are children of its children.
	tree "$(cat "$dir/nsd.pid.rig")" >"$dir/nsd.tree"
	tree "$(cat "$dir/unbound.pid.rig")" >"$dir/unbound.tree"
	# A zone that does not load leaves nsd running without it.
	if grep -qi 'error' "$dir/nsd.log" "$dir/unbound.log"; then
		stop "$dir"
		fail "errors in the logs"
	fi
	exit 0
}

# wait_ready NAME PORT: until the server answers dane.test SOA with
# NOERROR (for unbound: validated, so the trust anchor works).
wait_ready() {
	pid=$(cat "$dir/$1.pid.rig")
	i=0
	while :; do
		alive "$pid" || {
			echo "$me: $1 exited: $(cat "$dir/$1.out")" >&2
			return 1
		}
		if drill -p "$2" @127.0.0.1 $RIG_PARENT. SOA \
		    >"$dir/ready.out" 2>&1 &&
		    grep -q 'rcode: NOERROR' "$dir/ready.out"; then
			return 0
		fi
		i=$((i + 1))
		[ $i -le $RIG_START_WAIT ] || return 1
		sleep 0.1
	done
}

# tree PID: PID and all its descendants, one a line.
tree() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
	    { parent[$1] = $2 }
	    END {
		for (p in parent) {
			for (q = p; q != "" && q > 1; q = parent[q])
				if (q == root) { print p; break }
		}
	    }'
}

# any_alive PID...: one of them still runs.
any_alive() {
	for p in "$@"; do
		alive "$p" && return 0
	done
	return 1
}

# stop_one NAME: SIGTERM the server started as NAME (nsd's first process
# is its xfrd, which tells the others to go), then wait for every process
# of its tree that start recorded.
stop_one() {
	f="$dir/$1.pid.rig"
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	pids="$pid $(cat "$dir/$1.tree" 2>/dev/null)"
	rm -f "$f" "$dir/$1.tree"
	kill "$pid" 2>/dev/null || return 0
	i=0
	# shellcheck disable=SC2086
	while any_alive $pids; do
		i=$((i + 1))
		if [ $i -gt $RIG_STOP_WAIT ]; then
			echo "$me: $1 ($pids) ignored SIGTERM; killed" >&2
			kill -9 $pids 2>/dev/null
			break
		fi
		sleep 0.1
	done
}

stop() {
	[ $# -eq 1 ] || usage
	dir=$1
	[ -d "$dir" ] || return 0
	# both at once: nsd's seconds then overlap unbound's
	stop_one unbound &
	stop_one nsd
	wait
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
