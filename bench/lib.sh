# shellcheck shell=sh
# lib.sh - what the benchmarks in bench/ share, sourced by each of them
# (". "$(dirname "$0")/lib.sh"" after "set -u").
#
# Owns the plumbing, none of the measuring: the checks and the scratch
# directory every run starts with, the cleanup trap, free ports, waiting
# for a listener, ferry started on a config and stopped again, a private
# Postfix, smtp-source, the smtp-sinks and the waiter on their counters,
# the memory sampler, medians, and the rows of the ferry/Postfix tables.
#
# Sets on sourcing: here (the top of the tree), me (the script's name
# without .sh, the prefix of every message), ferry (the binary, $FERRY)
# and the constants below.  Functions name their inputs; the globals they
# read or set are named in their comments.  A script that runs ferry
# against Postfix defines run_ferry DIR and run_postfix DIR for
# alternate_rounds.

BENCH_SAMPLE_INTERVAL=0.05	# seconds between memory samples
BENCH_POLL_INTERVAL=0.005	# seconds between looks at a sink's counter
BENCH_START_WAIT=100		# tenths of a second for a listener to appear
BENCH_STOP_WAIT=100		# tenths of a second for ferry to exit
BENCH_SINK_BACKLOG=1000		# smtp-sink's listen backlog
BENCH_LOG_TAIL=20		# lines of a log shown when a daemon dies

here=$(cd "$(dirname "$0")/.." && pwd) || exit 1
me=$(basename "$0" .sh)
ferry=${FERRY:-$here/ferry}

die() {
	echo "$me: $*" >&2
	exit 1
}

# positive VALUE...: exits 64 unless every VALUE is a number above 0.
positive() {
	for v in "$@"; do
		case $v in
		''|*[!0-9]*|0) echo "$me: not a positive number: '$v'" >&2; exit 64 ;;
		esac
	done
}

# load_args [MESSAGES [SESSIONS [SIZE]]]: the smtp-source load, from the
# arguments or BENCH_N, BENCH_SESSIONS, BENCH_SIZE and BENCH_REUSE; sets
# n, s, size and reuse (smtp-source's -d or nothing).  Not checked here.
load_args() {
	[ $# -le 3 ] ||
	    { echo "usage: sh $0 [MESSAGES [SESSIONS [SIZE]]]" >&2; exit 64; }
	n=${1:-${BENCH_N:-2000}}
	s=${2:-${BENCH_SESSIONS:-20}}
	size=${3:-${BENCH_SIZE:-4096}}
	reuse=
	[ "${BENCH_REUSE:-0}" = 1 ] && reuse=-d
}

# How the load uses its connections, in words.
reuse_how() {
	if [ -n "$reuse" ]; then
		echo "reusing connections"
	else
		echo "one message per connection"
	fi
}

# prepare WHY NAME TOOL...: checks for root (WHY it is needed), ferry and
# each TOOL, makes the user ferry, then the scratch directory dir
# ($BENCH_TMPDIR/NAME.XXXXXX) and the traps that clean up after the run.
prepare() {
	[ "$(id -u)" = 0 ] || die "must run as root ($1)"
	[ -x "$ferry" ] || die "no $ferry; build it first (make)"
	tmpname=$2
	shift 2
	for c in "$@"; do
		command -v "$c" >/dev/null ||
		    die "$c is missing (sh test/deps.sh test)"
	done
	if ! id ferry >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin \
		    ferry || die "cannot create user ferry"
	fi
	dir=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/$tmpname.XXXXXX") ||
	    die "mktemp failed"
	# The daemons drop privileges and must reach their queues below this.
	chmod 755 "$dir" || die "chmod $dir"
	waiter_pid=
	sampler_pid=
	ferry_pid=
	dns_pid=
	sink_pids=
	pf_running=
	ok=
	trap cleanup EXIT
	trap 'exit 1' INT TERM
}

# The EXIT trap: stops whatever still runs; removes dir if the script set
# ok and BENCH_KEEP is not 1, else says where it is.
cleanup() {
	[ -n "$waiter_pid" ] && kill "$waiter_pid" 2>/dev/null
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
	[ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null
	[ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null
	for p in $sink_pids; do
		kill "$p" 2>/dev/null
	done
	[ -n "$pf_running" ] &&
	    sh "$here/test/postfix-instance.sh" stop "$pf_running" >/dev/null
	if [ -n "$ok" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$dir"
	else
		echo "$me: queues and logs kept in $dir"
	fi
}

# The device the scratch directory is on.
queue_disk() {
	df --output=source "$dir" | tail -1
}

load_before() {
	echo "$me: load average before: $(cut -d' ' -f1-3 /proc/loadavg)," \
	    "$(nproc) CPUs"
}

load_after() {
	echo "$me: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# listening PORT [COUNT] [u]: at least COUNT (1) sockets listen on PORT
# (TCP; UDP with u).
listening() {
	got=$(ss -Hl"${3:-t}"n "sport = :$1" 2>/dev/null | wc -l)
	[ "$got" -ge "${2:-1}" ]
}

# free_port: sets port to a high port nothing listens on, TCP or UDP, and
# not handed out before in this run.  Not for $(...): the subshell would
# forget the ports it handed out.
used_ports=
free_port() {
	while :; do
		port=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		port=$((20000 + port % 40000))
		case " $used_ports " in *" $port "*) continue ;; esac
		listening "$port" && continue
		listening "$port" 1 u && continue
		used_ports="$used_ports $port"
		return
	done
}

# wait_listen WHAT PID PORT COUNT PROTO LOG: until COUNT listeners on PORT
# (PROTO t or u); dies showing LOG's tail if PID exits first.
wait_listen() {
	i=0
	while ! listening "$3" "$4" "$5"; do
		kill -0 "$2" 2>/dev/null || {
			tail -"$BENCH_LOG_TAIL" "$6" >&2
			die "$1 exited at start-up; log above"
		}
		i=$((i + 1))
		[ $i -le $BENCH_START_WAIT ] || die "$1 does not listen on $3"
		sleep 0.1
	done
}

now() {
	date +%s.%N
}

# The libraries ferry may link (issue 6), and nothing else.
BENCH_LIBS="libmbedtls libmbedx509 libmbedcrypto libcares libsodium libc"

# extra_libs READELF BINARY: "ok", or BINARY's NEEDED entries beyond
# BENCH_LIBS, each followed by a comma.
extra_libs() {
	extra=$("$1" -d "$2" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
	    while read -r lib; do
		ok=
		for want in $BENCH_LIBS; do
			case $lib in "$want".so*) ok=1 ;; esac
		done
		[ -n "$ok" ] || printf '%s,' "$lib"
	    done)
	echo "${extra:-ok}"
}

# floor_build CC OUT [FLAGS...]: OUT, the floor program: it links the
# libraries ferry links and only calls pause(), so its RSS is theirs and
# the loader's alone.  Its source is written to $dir/floor.c.
floor_build() {
	fcc=$1 fout=$2
	shift 2
	printf '#include <unistd.h>\nint main(void) { pause(); return 0; }\n' \
	    >"$dir/floor.c" || die "cannot write $dir/floor.c"
	$fcc -O2 -o "$fout" "$dir/floor.c" -Wl,--no-as-needed "$@" \
	    -lmbedtls -lmbedx509 -lmbedcrypto -lcares -lsodium ||
	    die "cannot build $fout with $fcc"
}

# ferry_start DIR PORT: writes DIR/relay.conf, the settings all the
# benchmarks use, then the lines on standard input, then
# $FERRY_EXTRA_CONF; starts ferry on it (pid in ferry_pid, log in
# DIR/ferry.log) and waits until it listens on PORT.
ferry_start() {
	{
		cat <<EOF
hostname = bench.test
listen_smtp = 127.0.0.1:$2
listen_submission =
local_socket = $1/submit.sock
queue_dir = $1/queue
log = stderr
user = ferry
max_connections = 256
max_connections_per_client = 256
relay_networks = 127.0.0.0/8
EOF
		cat
		printf '%s\n' "${FERRY_EXTRA_CONF:-}"
	} >"$1/relay.conf" || die "cannot write $1/relay.conf"
	"$ferry" -c "$1/relay.conf" serve 2>"$1/ferry.log" &
	ferry_pid=$!
	wait_listen ferry "$ferry_pid" "$2" 1 t "$1/ferry.log"
}

# ferry_restart DIR: starts ferry again on the DIR/relay.conf that
# ferry_start wrote, its log appended to DIR/ferry.log; returns at once,
# without waiting for the listener (pid in ferry_pid).
ferry_restart() {
	"$ferry" -c "$1/relay.conf" serve 2>>"$1/ferry.log" &
	ferry_pid=$!
}

# The running ferry's peak RSS (VmHWM), kB.
ferry_hwm() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$ferry_pid/status"
}

# ferry_queued DIR: how many messages the ferry of DIR holds, or "?".
ferry_queued() {
	"$ferry" -c "$1/relay.conf" mailq --json 2>>"$1/ferry.log" |
	    python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' ||
	    echo "?"
}

# Stops the running ferry with SIGTERM and waits for it.
ferry_stop() {
	kill -TERM "$ferry_pid"
	i=0
	while kill -0 "$ferry_pid" 2>/dev/null; do
		i=$((i + 1))
		[ $i -le $BENCH_STOP_WAIT ] || die "ferry did not exit on SIGTERM"
		sleep 0.1
	done
	wait "$ferry_pid"
	rc=$?
	ferry_pid=
	[ $rc -eq 0 ] || echo "$me: warning: ferry exited $rc on SIGTERM" >&2
}

# pf_start DIR PORT RELAYHOST: a private Postfix (test/postfix-instance.sh)
# in DIR, listening on PORT.
pf_start() {
	sh "$here/test/postfix-instance.sh" start "$1" "$2" "$3" >/dev/null ||
	    die "Postfix did not start"
	pf_running=$1
}

# pf_stop DIR
pf_stop() {
	sh "$here/test/postfix-instance.sh" stop "$1" >/dev/null ||
	    die "Postfix did not stop"
	pf_running=
}

# pf_restart DIR: starts the Postfix in DIR again as pf_start set it up
# ("postfix start" alone, no config written again); returns when that
# does.  It skips postfix-script's checks with their quick-start marker
# (what "postfix-script quick-stop" leaves): here the queue lies inside
# the config directory, so the check that the config tree is root's runs
# postlog once for every queue file, minutes for a large queue.
pf_restart() {
	pf_running=$1
	: >"$1/queue/quick-start" || die "cannot write $1/queue/quick-start"
	postfix -c "$1" start >>"$1/maillog" 2>&1 ||
	    die "postfix start failed; see $1/maillog"
}

# pf_master DIR: the pid of the master of the Postfix in DIR.
pf_master() {
	tr -d ' \n' <"$1/queue/pid/master.pid"
}

# pf_queued DIR: how many messages the Postfix in DIR holds.
pf_queued() {
	find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" \
	    "$1/queue/deferred" "$1/queue/hold" -type f | wc -l
}

# smtp_source PORT LOG: sends the load (n, s, size, reuse) to PORT on
# 127.0.0.1, output in LOG, shown if it fails.
smtp_source() {
	# shellcheck disable=SC2086
	smtp-source -4 $reuse -s "$s" -m "$n" -l "$size" -M bench-client.test \
	    -f sender@bench-client.test -t rcpt@example.net \
	    "127.0.0.1:$1" >"$2" 2>&1 || { cat "$2" >&2; return 1; }
}

# sink_start ADDR PORT COUNTFILE ERRFILE LISTENERS: an smtp-sink -c on
# ADDR:PORT counting into COUNTFILE (pid added to sink_pids); waits until
# LISTENERS sockets listen on PORT, this one included.
sink_start() {
	smtp-sink -u nobody -c "$1:$2" "$BENCH_SINK_BACKLOG" >"$3" 2>"$4" &
	sink_pids="$sink_pids $!"
	wait_listen smtp-sink $! "$2" "$5" t "$4"
}

# Stops every smtp-sink in sink_pids.
sinks_stop() {
	for p in $sink_pids; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	sink_pids=
}

# proctree.py in $dir, what the python helpers there import: tree(root),
# a pid and all its descendants; field(path, key), a number from a
# /proc "Key: value" file (0 when gone).
write_proctree() {
	cat >"$dir/proctree.py" <<'EOF'
import os


def tree(root):
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(')') + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    todo, seen = [root], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def field(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
EOF
}

# The memory sampler: follows the process tree under one pid and records
# the largest VmRSS and Pss sums it saw.
write_sampler() {
	write_proctree
	cat >"$dir/sampler.py" <<'EOF'
import signal, sys, time

from proctree import field, tree

root, out, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
peak_rss = peak_pss = peak_n = samples = 0
while True:
    pids = tree(root)
    rss = sum(field('/proc/%d/status' % p, 'VmRSS:') for p in pids)
    pss = sum(field('/proc/%d/smaps_rollup' % p, 'Pss:') for p in pids)
    peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
    peak_n, samples = max(peak_n, len(pids)), samples + 1
    if stop:
        break
    time.sleep(interval)
with open(out, 'w') as f:
    f.write('%d %d %d %d\n' % (peak_rss, peak_pss, peak_n, samples))
EOF
}

# sampler_start PID OUT: samples the tree under PID until sampler_stop,
# then writes "rss_kb pss_kb processes samples" to OUT.
sampler_start() {
	python3 "$dir/sampler.py" "$1" "$2" "$BENCH_SAMPLE_INTERVAL" &
	sampler_pid=$!
}

sampler_stop() {
	kill -TERM "$sampler_pid" 2>/dev/null
	wait "$sampler_pid"
	sampler_pid=
}

# The waiter: polls smtp-sink -c output until the message counters add up
# to N, then writes the time it saw that.
write_sinkwait() {
	cat >"$dir/sinkwait.py" <<'EOF'
# sinkwait.py OUT N TIMEOUT INTERVAL COUNTERFILE...: the sum of the last
# "mesg=K" of each smtp-sink -c output file; writes "time count" to OUT
# when it reaches N (exit 0) or at the timeout (exit 1).
import re, sys, time

out, n, timeout, interval = sys.argv[1], int(sys.argv[2]), \
    float(sys.argv[3]), float(sys.argv[4])
files = sys.argv[5:]
TAIL = 256
mesg = re.compile(rb'mesg=(\d+)')


def count(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL))
            found = mesg.findall(f.read())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


deadline = time.time() + timeout
while True:
    got = sum(count(p) for p in files)
    t = time.time()
    if got >= n or t > deadline:
        break
    time.sleep(interval)
with open(out, 'w') as f:
    f.write('%.6f %d\n' % (t, got))
sys.exit(0 if got >= n else 1)
EOF
}

# waiter_start OUT N TIMEOUT COUNTERFILE...: starts the waiter in the
# background (pid in waiter_pid).
waiter_start() {
	waiter_out=$1
	waiter_n=$2
	waiter_timeout=$3
	shift 3
	python3 "$dir/sinkwait.py" "$waiter_out" "$waiter_n" "$waiter_timeout" \
	    "$BENCH_POLL_INTERVAL" "$@" &
	waiter_pid=$!
}

# waiter_wait WHO: waits for the waiter; sets done_at and got from its
# OUT and says on stderr if WHO (the sink, the sinks) got too few.
waiter_wait() {
	wait "$waiter_pid"
	rc=$?
	waiter_pid=
	# shellcheck disable=SC2034 # done_at is for the caller
	read -r done_at got <"$waiter_out"
	[ $rc -eq 0 ] || echo "$me: $1 got only $got of $waiter_n in" \
	    "${waiter_timeout}s" >&2
}

# alternate_rounds ROUNDS: run_ferry and run_postfix in dir/ferry-R and
# dir/postfix-R, who goes first alternating, so neither always meets a
# cold or a busy disk.
alternate_rounds() {
	r=1
	while [ $r -le "$1" ]; do
		if [ $((r % 2)) -eq 1 ]; then
			run_ferry "$dir/ferry-$r"
			run_postfix "$dir/postfix-$r"
		else
			run_postfix "$dir/postfix-$r"
			run_ferry "$dir/ferry-$r"
		fi
		r=$((r + 1))
	done
}

# median COLUMN FILE: the median of a column of numbers.
median() {
	awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]
		else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The ferry/Postfix table.  Its rows are "%-WIDTHs %12s %12s"; a summary
# is a line whose last five fields are "hwm_kb rss_kb pss_kb processes
# samples" (Postfix's hwm is its sampled RSS sum).

# table_head WIDTH: the column heads and the load (n, s, size).
table_head() {
	awk -v w="$1" -v n="$n" -v s="$s" -v size="$size" 'BEGIN {
		fmt = "%-" w "s %12s %12s\n"
		printf fmt, "", "ferry", "postfix"
		printf fmt, "messages x sessions", n " x " s, n " x " s
		printf fmt, "body bytes", size, size
	}'
}

# table_memory WIDTH FERRY_SUMMARY POSTFIX_SUMMARY: the memory rows.
table_memory() {
	printf '%s\n%s\n' "$2" "$3" | awk -v w="$1" '
	    NR == 1 { fh = $(NF - 4); fr = $(NF - 3); fp = $(NF - 2)
		fnp = $(NF - 1); fsa = $NF }
	    NR == 2 { pr = $(NF - 3); pp = $(NF - 2); pnp = $(NF - 1)
		psa = $NF }
	    END {
		fmt = "%-" w "s %12s %12s\n"
		printf fmt, "peak RSS MB (HWM / sum)", sprintf("%.1f", fh / 1024),
		    sprintf("%.1f", pr / 1024)
		printf fmt, "peak RSS MB (sampled sum)", sprintf("%.1f", fr / 1024),
		    sprintf("%.1f", pr / 1024)
		printf fmt, "peak PSS MB (sampled sum)", sprintf("%.1f", fp / 1024),
		    sprintf("%.1f", pp / 1024)
		printf fmt, "processes (max)", fnp, pnp
		printf fmt, "memory samples (max)", fsa, psa
	}'
}

# rss_ratio FERRY_SUMMARY POSTFIX_SUMMARY: the peak RSS line, without its
# newline (the script may add to it).
rss_ratio() {
	printf '%s\n%s\n' "$1" "$2" | awk '
	    NR == 1 { fh = $(NF - 4) }
	    NR == 2 { pr = $(NF - 3) }
	    END { printf "peak RSS: ferry %.1f MB, postfix %.1f MB, ratio %.3f",
		fh / 1024, pr / 1024, fh / pr }'
}

# report_rounds: the rows of dir/ferry.res and dir/postfix.res.
report_rounds() {
	sed 's/^/  ferry   /' "$dir/ferry.res"
	sed 's/^/  postfix /' "$dir/postfix.res"
}
