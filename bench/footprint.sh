#!/bin/sh
# footprint.sh - what ferry costs a small machine, beside a private
# Postfix doing the same job: the stripped binary (x86-64, mipsel,
# armhf), memory at idle, memory per idle plaintext and TLS session, and
# the bytes each writes to the queue's disk per relayed 4 KB message.
# Budget (issue 6): binary <= 150 KB on x86-64, linked to mbedTLS, c-ares,
# libsodium and libc only; idle RSS <= 2 MB; queue writes <= message size
# + 1 KB.
#
#   sh bench/footprint.sh
#   env: FOOTPRINT_TARGETS ("native mipsel-linux-gnu arm-linux-gnueabihf";
#        cross builds are made with make CROSS=T if stale, a target
#        without its compiler is skipped), FOOTPRINT_SESSIONS (50 idle
#        sessions of each kind, to each daemon), FOOTPRINT_MESSAGES (200
#        relayed messages), BENCH_SIZE (4096 body bytes), FERRY (./ferry),
#        BENCH_TMPDIR (/var/tmp: must be a real disk for the write
#        figures, not tmpfs), BENCH_KEEP=1.
#
# Owns only the measurement; lib.sh starts the daemons.  The figures:
# - binary: `strip` of a copy (ferry) and the NEEDED entries; for Postfix
#   the executables its processes ran in these tests plus the
#   libpostfix-*.so they map (Debian ships them stripped).
# - memory of a process tree (ferry is one process; Postfix is master and
#   its children): VmRSS summed, which counts a shared library once per
#   process; Pss summed, which shares each page among its users (it
#   depends on what else runs on the machine); Private_Dirty summed, the
#   pages nothing else can share or the kernel drop without swap.  Idle
#   is 2 s after the listener appears, with tls_cert set on both.  Beside
#   them, the floor: a program that links the same libraries and only
#   calls pause(), built with cc here.
# - per session, as bench/sessions.sh does it: one session of the kind is
#   opened and closed first, then N held open (greeting and EHLO done;
#   for TLS also STARTTLS, the handshake and EHLO again), and the growth
#   of the tree's sums is divided by N.
# - queue writes: write_bytes - cancelled_write_bytes of /proc/PID/io,
#   summed over the tree, before and after N messages are accepted,
#   relayed to an smtp-sink and gone from the queue.  The kernel counts a
#   page when it turns dirty, so a 4.3 KB queue file counts 8 KB.  A
#   parent that reaps a child inherits its counters, so Postfix's daemons
#   that exit in between still count (through master).  Logging is left
#   out on both sides: ferry's stderr goes to tmpfs, and Postfix's
#   postlogd is not summed.
# Needs root, postfix, smtp-source, smtp-sink, python3.
# Exit: 0 every budget met, 1 a budget missed or a step failed, 64 usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

[ $# -eq 0 ] || { echo "usage: sh $0 (settings in the environment)" >&2;
    exit 64; }
targets=${FOOTPRINT_TARGETS:-native mipsel-linux-gnu arm-linux-gnueabihf}
n_sess=${FOOTPRINT_SESSIONS:-50}
n_msg=${FOOTPRINT_MESSAGES:-200}
size=${BENCH_SIZE:-4096}
positive "$n_sess" "$n_msg" "$size"
FOOTPRINT_BIN_KB=150		# stripped x86-64 binary
FOOTPRINT_IDLE_KB=2048		# idle RSS
FOOTPRINT_WRITE_SLACK=1024	# queue bytes per message over its size
FOOTPRINT_SETTLE=2		# seconds before memory is read
FOOTPRINT_DRAIN_WAIT=600	# tenths of a second for a queue to empty
FOOTPRINT_RELAY_TIMEOUT=300	# seconds for the sink to get every message
certs=$here/test/certs

prepare "both daemons bind and drop privileges" ferry-footprint \
    postfix smtp-source smtp-sink python3 ss
shm=$(mktemp -d /dev/shm/ferry-footprint.XXXXXX) || die "mktemp in /dev/shm"
client_pid=
trap 'stop_client; rm -rf "$shm"; cleanup' EXIT

stop_client() {
	[ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null
	client_pid=
}

# fp.py: mem ROOT | io ROOT | exes ROOT | hold PORT N KIND CA READY.
write_proctree
cat >"$dir/fp.py" <<'EOF'
import os, signal, socket, ssl, sys, time

from proctree import tree

NOT_SUMMED = {'postlogd'}	# Postfix's logger: logging is left out


def fields(path, keys):
    got = dict.fromkeys(keys, 0)
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(':')
                if k in got:
                    got[k] = int(v.split()[0])
    except OSError:
        pass
    return got


def comm(p):
    try:
        with open('/proc/%d/comm' % p) as f:
            return f.read().strip()
    except OSError:
        return ''


def mem(root):
    rss = pss = dirty = n = 0
    for p in tree(root):
        rss += fields('/proc/%d/status' % p, ['VmRSS'])['VmRSS']
        r = fields('/proc/%d/smaps_rollup' % p, ['Pss', 'Private_Dirty'])
        pss += r['Pss']
        dirty += r['Private_Dirty']
        n += 1
    print(rss, pss, dirty, n)


def io(root):
    w = c = 0
    for p in tree(root):
        if comm(p) in NOT_SUMMED:
            continue
        r = fields('/proc/%d/io' % p, ['write_bytes', 'cancelled_write_bytes'])
        w += r['write_bytes']
        c += r['cancelled_write_bytes']
    print(w - c)


def exes(root):
    files = set()
    for p in tree(root):
        try:
            files.add(os.path.realpath('/proc/%d/exe' % p))
            with open('/proc/%d/maps' % p) as f:
                for line in f:
                    path = line.split()[-1]
                    if '/libpostfix-' in path:
                        files.add(path)
        except OSError:
            pass
    print(' '.join(sorted(files)))


def reply(s, buf):
    while True:
        while b'\r\n' not in buf[0]:
            d = s.recv(65536)
            if not d:
                raise EOFError('closed by the server')
            buf[0] += d
        line, buf[0] = buf[0].split(b'\r\n', 1)
        if line[3:4] != b'-':
            return int(line[:3])


def expect(s, buf, line, code):
    if line:
        s.sendall(line)
    got = reply(s, buf)
    if got != code:
        raise ValueError('%r: got %d, want %d' % (line, got, code))


def hold(port, n, kind, ca, ready):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    def session(i):
        src = '127.0.0.%d' % (1 + i % 254)
        s = socket.create_connection(('127.0.0.1', port), timeout=60,
                                     source_address=(src, 0))
        buf = [b'']
        expect(s, buf, None, 220)
        expect(s, buf, b'EHLO idle.test\r\n', 250)
        if kind == 'tls':
            expect(s, buf, b'STARTTLS\r\n', 220)
            s = ctx.wrap_socket(s, server_hostname='127.0.0.1')
            expect(s, buf, b'EHLO idle.test\r\n', 250)
        return s

    held = []
    try:
        if n == 0:
            session(0).close()
        for i in range(n):
            held.append(session(i))
        msg = 'ok %d\n' % len(held)
    except Exception as e:
        msg = 'failed after %d sessions: %s\n' % (len(held), e)
    with open(ready + '.tmp', 'w') as f:
        f.write(msg)
    os.rename(ready + '.tmp', ready)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(3600)


cmd = sys.argv[1]
if cmd == 'hold':
    hold(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
         sys.argv[6])
else:
    {'mem': mem, 'io': io, 'exes': exes}[cmd](int(sys.argv[2]))
EOF
fp() {
	python3 "$dir/fp.py" "$@"
}

# --- the binaries ---------------------------------------------------------

# bin_of TARGET: the binary make builds for TARGET.
bin_of() {
	if [ "$1" = native ]; then
		echo "$ferry"
	else
		echo "$here/build/$1/ferry"
	fi
}

# binary TARGET: appends "TARGET bytes needed-ok|extra-libs" to bins.res.
binary() {
	t=$1 tool=
	[ "$t" = native ] || tool=$t-
	if [ "$t" != native ]; then
		command -v "${tool}gcc" >/dev/null || {
			echo "$me: $t skipped: no ${tool}gcc (sh test/deps.sh cross)"
			return 0
		}
		make -s --no-print-directory -C "$here" CROSS="$t" >"$dir/make-$t.log" 2>&1 ||
		    { tail -20 "$dir/make-$t.log" >&2; die "make CROSS=$t failed"; }
	fi
	b=$(bin_of "$t")
	[ -x "$b" ] || die "no $b"
	"${tool}readelf" -l "$b" | grep -q INTERP ||
	    die "$b is linked statically (left over from test/cross.sh?)"
	"${tool}strip" -o "$dir/ferry-$t" "$b" || die "strip $b"
	echo "$t $(wc -c <"$dir/ferry-$t") $(extra_libs "${tool}readelf" "$b")" \
	    >>"$dir/bins.res"
}

# --- memory ---------------------------------------------------------------

# The TLS settings both daemons run with here.
ferry_tls_conf() {
	printf 'tls_cert = %s\ntls_key = %s\n' "$certs/server.pem" \
	    "$certs/server.key"
}
PF_EXTRA_CF="smtpd_tls_security_level = may
smtpd_tls_cert_file = $certs/server.pem
smtpd_tls_key_file = $certs/server.key"
export PF_EXTRA_CF

# ferry_up DIR RELAYPORT [LINES]: ferry in DIR relaying to RELAYPORT, its
# log on tmpfs (so it is not a queue write), listening on $port.
ferry_up() {
	mkdir "$1" || die "mkdir $1"
	log=$(mktemp "$shm/ferry.log.XXXXXX") || die "mktemp"
	ln -s "$log" "$1/ferry.log" || die "ln $1/ferry.log"
	{
		ferry_tls_conf
		printf 'smarthost = [127.0.0.1]:%s\nsmarthost_tls = none\n%s\n' \
		    "$2" "${3:-}"
	} >"$dir/extra.conf" || die "cannot write $dir/extra.conf"
	free_port
	ferry_start "$1" "$port" <"$dir/extra.conf"
}

# pf_up DIR RELAYPORT: a private Postfix in DIR relaying to RELAYPORT,
# listening on $port; its master's pid in pf_pid.
pf_up() {
	free_port
	pf_start "$1" "$port" "[127.0.0.1]:$2"
	pf_pid=$(pf_master "$1")
}

# idle WHO PID LABEL: appends "LABEL rss pss dirty processes" to idle.res.
idle() {
	sleep "$FOOTPRINT_SETTLE"
	echo "$3 $(fp mem "$2")" >>"$dir/idle.res"
}

# hold_sessions PID KIND N TAG: the warm-up session, then N idle sessions
# of KIND to $port; appends "TAG kind n per_rss_kb per_pss_kb" to
# sessions.res.
hold_sessions() {
	# python3 itself in the background, so client_pid is the client.
	python3 "$dir/fp.py" hold "$port" 0 "$2" "$certs/ca.pem" \
	    "$dir/$4-$2.warm" &
	client_pid=$!
	wait_ready "$dir/$4-$2.warm"
	stop_client
	sleep "$FOOTPRINT_SETTLE"
	read -r r0 p0 _ <<EOF
$(fp mem "$1")
EOF
	python3 "$dir/fp.py" hold "$port" "$3" "$2" "$certs/ca.pem" \
	    "$dir/$4-$2.ready" &
	client_pid=$!
	wait_ready "$dir/$4-$2.ready"
	read -r status got _ <"$dir/$4-$2.ready"
	[ "$status" = ok ] || { cat "$dir/$4-$2.ready" >&2;
	    die "$4 $2: the client failed"; }
	sleep "$FOOTPRINT_SETTLE"
	read -r r1 p1 _ <<EOF
$(fp mem "$1")
EOF
	stop_client
	echo "$4 $2 $got $r0 $r1 $p0 $p1" | awk '{ printf "%s %s %d %.1f %.1f\n",
	    $1, $2, $3, ($5 - $4) / $3, ($7 - $6) / $3 }' >>"$dir/sessions.res"
}

# wait_ready FILE: until the client writes FILE.
wait_ready() {
	i=0
	while [ ! -f "$1" ]; do
		kill -0 "$client_pid" 2>/dev/null || die "the session client exited"
		i=$((i + 1))
		[ $i -le "$FOOTPRINT_DRAIN_WAIT" ] || die "the session client hangs"
		sleep 0.1
	done
}

# --- queue writes ---------------------------------------------------------

# relay WHO PID LISTENPORT SINKCOUNT: N messages through, to the sink;
# appends "WHO bytes_per_message" to writes.res.
relay() {
	w0=$(fp io "$2")
	waiter_start "$dir/$1.wait" "$n_msg" "$FOOTPRINT_RELAY_TIMEOUT" "$4"
	smtp_source "$3" "$dir/$1-source.log" || die "smtp-source to $1 failed"
	waiter_wait "the sink of $1"
	[ "$got" -ge "$n_msg" ] || die "$1 relayed $got of $n_msg"
	i=0
	while :; do
		if [ "$1" = ferry ]; then
			q=$(ferry_queued "$dir/ferry-relay")
		else
			q=$(pf_queued "$dir/postfix-relay")
		fi
		[ "$q" = 0 ] && break
		i=$((i + 1))
		[ $i -le "$FOOTPRINT_DRAIN_WAIT" ] || die "$1 still holds $q messages"
		sleep 0.1
	done
	sleep 1
	w1=$(fp io "$2")
	echo "$1 $(( (w1 - w0) / n_msg ))" >>"$dir/writes.res"
}

# --- the run --------------------------------------------------------------

echo "$me: targets $targets; $n_sess idle sessions of each kind;" \
    "$n_msg relayed messages of $size body bytes; queues on $(queue_disk)"
load_before
for t in $targets; do
	binary "$t"
done

write_sinkwait
free_port; dead_port=$port
n=$n_msg s=4 reuse=

# ferry: idle (default ca_file, then none), sessions (a fresh daemon for
# each kind, as in sessions.sh).
ferry_up "$dir/ferry-idle" "$dead_port"
idle ferry "$ferry_pid" ferry
hold_sessions "$ferry_pid" plain "$n_sess" ferry
ferry_stop
ferry_up "$dir/ferry-tls" "$dead_port"
hold_sessions "$ferry_pid" tls "$n_sess" ferry
ferry_stop
ferry_up "$dir/ferry-noca" "$dead_port" "ca_file ="
idle ferry "$ferry_pid" ferry-noca
ferry_stop

# The floor: a program that links the libraries ferry links and does
# nothing (pause()).  Its RSS is the loader's and the libraries' pages
# alone, which no daemon linked to them can go under.
floor_build cc "$dir/floor"
"$dir/floor" &
floor_pid=$!
idle floor "$floor_pid" floor
kill "$floor_pid"
wait "$floor_pid" 2>/dev/null

# Postfix: idle, sessions.
pf_up "$dir/postfix-idle" "$dead_port"
idle postfix "$pf_pid" postfix
hold_sessions "$pf_pid" plain "$n_sess" postfix
pf_stop "$dir/postfix-idle"
# A fresh one: smtpd processes outlive their sessions and would carry
# the TLS sessions.
pf_up "$dir/postfix-tls" "$dead_port"
hold_sessions "$pf_pid" tls "$n_sess" postfix
fp exes "$pf_pid" >"$dir/postfix-exes"
pf_stop "$dir/postfix-tls"

# Queue writes, each to its own sink.
free_port; sink_port=$port
sink_start 127.0.0.1 "$sink_port" "$dir/sink-ferry.count" \
    "$dir/sink-ferry.err" 1
ferry_up "$dir/ferry-relay" "$sink_port"
relay ferry "$ferry_pid" "$port" "$dir/sink-ferry.count"
ferry_stop
sinks_stop
free_port; sink_port=$port
sink_start 127.0.0.1 "$sink_port" "$dir/sink-postfix.count" \
    "$dir/sink-postfix.err" 1
pf_up "$dir/postfix-relay" "$sink_port"
relay postfix "$pf_pid" "$port" "$dir/sink-postfix.count"
fp exes "$pf_pid" >>"$dir/postfix-exes"
pf_stop "$dir/postfix-relay"
sinks_stop
load_after

# --- the table ------------------------------------------------------------

# Postfix's binary: every distinct file its processes ran or mapped.
pf_files=$(tr ' ' '\n' <"$dir/postfix-exes" | sort -u | grep .)
pf_bytes=$(echo "$pf_files" | xargs stat -c %s | awk '{ s += $1 } END { print s }')
pf_count=$(echo "$pf_files" | wc -l)

{
	sed 's/^/bin /' "$dir/bins.res"
	echo "pfbin $pf_bytes $pf_count"
	sed 's/^/idle /' "$dir/idle.res"
	sed 's/^/sess /' "$dir/sessions.res"
	sed 's/^/write /' "$dir/writes.res"
} | awk -v binkb="$FOOTPRINT_BIN_KB" -v idlekb="$FOOTPRINT_IDLE_KB" \
    -v wmax=$((size + FOOTPRINT_WRITE_SLACK)) -v libs="$BENCH_LIBS" '
function row(what, f, p,   r) {
	r = (p + 0 > 0) ? sprintf("%.3g", f / p) : "-"
	printf "%-46s %12s %12s %7s\n", what, f, p, r
}
$1 == "bin" { bt[++nb] = $2; bs[$2] = $3; bn[$2] = $4 }
$1 == "pfbin" { pfb = $2; pfn = $3 }
$1 == "idle" { ir[$2] = $3; ip[$2] = $4; id[$2] = $5; in_[$2] = $6 }
$1 == "sess" { sr[$2 "," $3] = $5; sp[$2 "," $3] = $6 }
$1 == "write" { w[$2] = $3 }
END {
	printf "%-46s %12s %12s %7s\n", "", "ferry", "postfix", "ratio"
	for (i = 1; i <= nb; i++) {
		t = bt[i]
		row("stripped binary, " t " (bytes)", bs[t],
		    t == "native" ? pfb : "")
		if (bn[t] != "ok") {
			print "  " t ": linked to more than " libs ": " bn[t]
			bad = 1
		}
	}
	printf "  (postfix: the %d programs and libpostfix-*.so it ran)\n", pfn
	row("idle RSS, sum (KB)", ir["ferry"], ir["postfix"])
	row("idle PSS, sum (KB)", ip["ferry"], ip["postfix"])
	row("idle Private_Dirty, sum (KB)", id["ferry"], id["postfix"])
	row("idle processes", in_["ferry"], in_["postfix"])
	row("idle RSS, the libraries alone (KB)", ir["floor"], "")
	row("idle RSS, ca_file = (empty) (KB)", ir["ferry-noca"], "")
	row("idle Private_Dirty, ca_file = (KB)", id["ferry-noca"], "")
	row("RSS per idle plaintext session (KB)", sr["ferry,plain"],
	    sr["postfix,plain"])
	row("PSS per idle plaintext session (KB)", sp["ferry,plain"],
	    sp["postfix,plain"])
	row("RSS per idle TLS session (KB)", sr["ferry,tls"], sr["postfix,tls"])
	row("PSS per idle TLS session (KB)", sp["ferry,tls"], sp["postfix,tls"])
	row("queue bytes written per message", w["ferry"], w["postfix"])
	print ""
	v = bs["native"]
	printf "budget: binary %d <= %d KB: %s\n", v, binkb,
	    v <= binkb * 1024 ? "met" : "MISSED"
	if (v > binkb * 1024) bad = 1
	v = ir["ferry"]
	printf "budget: idle RSS %d <= %d KB: %s\n", v, idlekb,
	    v <= idlekb ? "met" : "MISSED"
	printf "  (a program that only links the same libraries: %d KB)\n",
	    ir["floor"]
	if (v > idlekb) bad = 1
	v = w["ferry"]
	printf "budget: queue writes %d <= %d bytes per message: %s\n", v, wmax,
	    v <= wmax ? "met" : "MISSED"
	print "  (the kernel counts whole pages: a queue file over 4096 bytes" \
	    " costs at least 8192)"
	if (v > wmax) bad = 1
	exit bad
}'
rc=$?
ok=1
exit $rc
