#!/bin/sh
# postfix-instance.sh - a private Postfix relay on loopback, for tests and
# the accept benchmark.
#
#   sh test/postfix-instance.sh start DIR PORT [RELAYHOST|hold]
#   sh test/postfix-instance.sh stop DIR
#
# Owns DIR/main.cf, DIR/master.cf, DIR/queue, DIR/data and DIR/maillog.
# It is set up the way ferry runs in the benchmark: an SMTP listener on
# 127.0.0.1:PORT only, relaying for 127.0.0.0/8 to one relayhost (default
# [127.0.0.1]:9, a closed port, so mail is deferred and stays queued),
# through the normal smtpd -> cleanup -> qmgr path.  No local delivery, no
# DNS, no chroot (no syslog here: maillog_file).  "hold" instead of a
# relayhost measures accepting alone: every message goes to the hold queue
# and no delivery is ever tried.  Needs root and the
# Debian postfix package; no system instance has to be running.
# Exit: 0 done, 1 failed (the reason on stderr), 64 usage.
#
#   PF_EXTRA_CF="key = value<newline>..."   lines appended to main.cf
#   (TLS, SASL or relay settings of a test; later lines win in Postfix)

set -u

PF_START_WAIT=100	# tenths of a second to wait for the listener
PF_STOP_WAIT=100	# tenths of a second to wait for master to exit
PF_PROCESS_LIMIT=256	# smtpd processes: ferry's max_connections in the bench

me=postfix-instance

usage() {
	echo "usage: sh $0 start DIR PORT [RELAYHOST|hold] | stop DIR" >&2
	exit 64
}

die() {
	echo "$me: $*" >&2
	exit 1
}

# Postfix insists on an absolute config directory.
absdir() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$(pwd)" "$1" ;;
	esac
}

listening() {
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

master_pid() {
	f=$1/queue/pid/master.pid
	[ -r "$f" ] || return 1
	pid=$(tr -d ' \n' <"$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

write_main_cf() {
	dir=$1 port=$2 rh=$3 hold=
	if [ "$rh" = hold ]; then
		rh="[127.0.0.1]:9"
		hold="smtpd_end_of_data_restrictions = check_client_access static:HOLD"
	fi
	cat >"$dir/main.cf" <<EOF
# written by test/postfix-instance.sh; a private relay on 127.0.0.1:$port
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file = $dir/maillog
# Postfix refuses a maillog_file outside these (default: /var, stdout).
maillog_file_prefixes = $dir
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydomain = test
myorigin = \$myhostname
# Loopback only; the listener address itself is in master.cf.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# Relay for mynetworks, to a relayhost that is never reached.
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
relayhost = $rh
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
# Nothing is delivered locally and nothing asks DNS.
local_transport = error:local delivery is disabled
local_recipient_maps =
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
# Inbound limits no lower than ferry's in the benchmark (smtpd's process
# limit is in master.cf); everything else keeps Postfix's defaults.
smtpd_client_connection_count_limit = $PF_PROCESS_LIMIT
smtpd_client_connection_rate_limit = 0
# Retry the dead relayhost rarely; the queue just holds the mail.
minimal_backoff_time = 1h
maximal_backoff_time = 4h
queue_run_delay = 1h
# Set for "hold" only: park every message, deliver nothing.
$hold
# The caller's own settings (PF_EXTRA_CF).
${PF_EXTRA_CF:-}
EOF
}

# The default services minus the pipe(8) ones, chroot off everywhere.
write_master_cf() {
	dir=$1 port=$2
	cat >"$dir/master.cf" <<EOF
# written by test/postfix-instance.sh
127.0.0.1:$port inet n - n - $PF_PROCESS_LIMIT smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

start() {
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
	dir=$(absdir "$1") port=$2 relay=${3:-[127.0.0.1]:9}
	case $port in
	''|*[!0-9]*) die "bad port: $port" ;;
	esac
	[ "$(id -u)" = 0 ] || die "must run as root (postfix start)"
	command -v postfix >/dev/null || die "postfix is not installed"
	if master_pid "$dir" >/dev/null; then
		die "an instance already runs in $dir; stop it first"
	fi
	listening "$port" && die "port $port is already in use"

	mkdir -p "$dir/queue" "$dir/data" || die "cannot create $dir"
	# The daemons run as postfix and must reach their directories.
	chmod 755 "$dir" || die "chmod $dir"
	chown postfix "$dir/data" || die "chown $dir/data"
	: >"$dir/maillog" || die "cannot create $dir/maillog"
	write_main_cf "$dir" "$port" "$relay" || die "cannot write main.cf"
	write_master_cf "$dir" "$port" || die "cannot write master.cf"

	# start runs "postfix check" first, which creates the queue
	# subdirectories with their owners.  It warns that they are not owned
	# by root: harmless, it only says the config and queue directories
	# share a tree here.
	postfix -c "$dir" start >>"$dir/maillog" 2>&1 ||
	    die "postfix start failed; see $dir/maillog"

	i=0
	while ! listening "$port"; do
		i=$((i + 1))
		[ $i -le $PF_START_WAIT ] ||
		    die "no listener on 127.0.0.1:$port; see $dir/maillog"
		sleep 0.1
	done
	echo "$me: postfix $(postconf -h mail_version) on 127.0.0.1:$port," \
	    "relayhost $relay, master pid $(master_pid "$dir")"
	echo "$me: log $dir/maillog"
}

stop() {
	[ $# -eq 1 ] || usage
	dir=$(absdir "$1")
	[ -f "$dir/main.cf" ] || die "no instance in $dir"
	pid=$(master_pid "$dir") || { echo "$me: not running in $dir"; return 0; }
	postfix -c "$dir" stop >>"$dir/maillog" 2>&1 ||
	    die "postfix stop failed; see $dir/maillog"
	# postfix stop only signals master; wait until it and its children go.
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		[ $i -le $PF_STOP_WAIT ] || die "master $pid did not exit"
		sleep 0.1
	done
	echo "$me: stopped (log $dir/maillog)"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
start) start "$@" ;;
stop) stop "$@" ;;
*) usage ;;
esac
