#!/bin/sh
# tls.sh - how fast ferry and Postfix accept mail over STARTTLS: every
# connection does a full TLS handshake (no resumption) and sends one
# message, measured against both in one run on the same disk.
#
#   sh bench/tls.sh [CONNECTIONS [CONCURRENCY [SIZE]]]
#   env: BENCH_N (500), BENCH_SESSIONS (20 at once), BENCH_SIZE (4096
#        bytes of body), BENCH_ROUNDS (3; the rate is the median round),
#        BENCH_TLS_VERSION (1.2: pinned, or "any"), FERRY (./ferry),
#        BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1, FERRY_EXTRA_CONF.
#
# Owns only the measurement.  The client is Python's ssl (OpenSSL) in
# CONCURRENCY processes, each doing its share of connections one after
# another: greeting, EHLO, STARTTLS, handshake (the server's chain checked
# against test/certs/ca.pem), EHLO, MAIL, RCPT, DATA, QUIT.  Both servers
# use test/certs/server.pem (ECDSA P-256) and relay 127.0.0.0/8 to a
# closed port, so every message stays queued; Postfix is the private
# instance of test/postfix-instance.sh with smtpd_tls_security_level =
# may.  Afterwards it counts what each side queued.  Needs root.
# Exit: 0 done and both queued every message, 1 otherwise, 64 usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

# Fewer than accept.sh's 2000: every connection is a full handshake.
BENCH_N=${BENCH_N:-500}
load_args "$@"
positive "$n" "$s" "$size"
rounds=${BENCH_ROUNDS:-3}
positive "$rounds"
tls_version=${BENCH_TLS_VERSION:-1.2}
case $tls_version in
1.2|any) ;;
*) echo "$me: BENCH_TLS_VERSION: 1.2 or any" >&2; exit 64 ;;
esac
certs=$here/test/certs

prepare "both daemons bind and drop privileges" ferry-tls-bench \
    postfix python3 ss

# The client: prints "seconds sent failed versions ciphers".
write_client() {
	cat >"$dir/tlsload.py" <<'EOF'
import os, socket, ssl, sys, time

port, n, conc, size, ca, pin = int(sys.argv[1]), int(sys.argv[2]), \
    int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
TIMEOUT = 60
body = b'Subject: tls bench\r\n\r\n' + (b'x' * 76 + b'\r\n') * (size // 78) \
    + b'.\r\n'


class Client:
    def __init__(self, sock):
        self.sock, self.buf = sock, b''

    def reply(self):
        while True:
            while b'\r\n' not in self.buf:
                d = self.sock.recv(65536)
                if not d:
                    raise EOFError('closed')
                self.buf += d
            line, self.buf = self.buf.split(b'\r\n', 1)
            if line[3:4] != b'-':
                return int(line[:3])

    def cmd(self, line, want):
        self.sock.sendall(line)
        code = self.reply()
        if code != want:
            raise ValueError('%r: %d' % (line[:20], code))


def one(ctx):
    s = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
    try:
        c = Client(s)
        if c.reply() != 220:
            raise ValueError('greeting')
        c.cmd(b'EHLO bench-client.test\r\n', 250)
        c.cmd(b'STARTTLS\r\n', 220)
        c.sock = ctx.wrap_socket(s, server_hostname='127.0.0.1')
        c.cmd(b'EHLO bench-client.test\r\n', 250)
        # pipelined like smtp-source: MAIL, RCPT and DATA in one write
        c.sock.sendall(b'MAIL FROM:<sender@bench-client.test>\r\n'
                       b'RCPT TO:<rcpt@example.net>\r\nDATA\r\n')
        for want in (250, 250, 354):
            if c.reply() != want:
                raise ValueError('envelope')
        c.cmd(body, 250)
        c.cmd(b'QUIT\r\n', 221)
        return c.sock.version(), c.sock.cipher()[0]
    finally:
        s.close()


def worker(k, share, w):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if pin == '1.2':
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sent = failed = 0
    seen = set()
    for _ in range(share):
        try:
            v, ci = one(ctx)
            seen.add('%s/%s' % (v, ci))
            sent += 1
        except Exception as e:
            failed += 1
            if failed <= 3:
                sys.stderr.write('client %d: %s\n' % (k, e))
    os.write(w, ('%d %d %s\n' % (sent, failed, ','.join(sorted(seen))))
             .encode())
    os._exit(0)


t0 = time.time()
pipes, kids = [], []
for k in range(conc):
    share = n // conc + (1 if k < n % conc else 0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        worker(k, share, w)
    os.close(w)
    pipes.append(r)
    kids.append(pid)
out = []
for r in pipes:
    data = b''
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    out.append(data.decode())
for pid in kids:
    os.waitpid(pid, 0)
secs = time.time() - t0
sent = sum(int(o.split()[0]) for o in out if o)
failed = sum(int(o.split()[1]) for o in out if o)
seen = set()
for o in out:
    parts = o.split()
    if len(parts) > 2:
        seen.update(parts[2].split(','))
print('%.3f %d %d %s' % (secs, sent, failed, ','.join(sorted(seen)) or '-'))
EOF
}

# drive PORT: the load against PORT; prints the client's line.
drive() {
	python3 "$dir/tlsload.py" "$1" "$n" "$s" "$size" "$certs/ca.pem" \
	    "$tls_version" 2>>"$dir/client.err"
}

# One round against ferry in $1; appends "seconds sent failed queued
# suites" to $dir/ferry.res.
run_ferry() {
	fd=$1
	mkdir "$fd" || die "mkdir $fd"
	ferry_start "$fd" "$ferry_port" <<EOF
smarthost = [127.0.0.1]:$dead_port
smarthost_tls = none
tls_cert = $certs/server.pem
tls_key = $certs/server.key
inbound_tls = may
EOF
	res=$(drive "$ferry_port") || die "the TLS client failed against ferry"
	queued=$(ferry_queued "$fd")
	ferry_stop
	read -r secs sent failed suites <<EOF
$res
EOF
	echo "$secs $sent $failed $queued $suites" >>"$dir/ferry.res"
}

run_postfix() {
	pd=$1
	PF_EXTRA_CF="smtpd_tls_cert_file = $certs/server.pem
smtpd_tls_key_file = $certs/server.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0" pf_start "$pd" "$pf_port" "[127.0.0.1]:$dead_port"
	res=$(drive "$pf_port") || die "the TLS client failed against Postfix"
	queued=$(pf_queued "$pd")
	pf_stop "$pd"
	read -r secs sent failed suites <<EOF
$res
EOF
	echo "$secs $sent $failed $queued $suites" >>"$dir/postfix.res"
}

# min COLUMN FILE
min() {
	awk -v c="$1" 'NR == 1 || $c < m { m = $c } END { print m }' "$2"
}

write_client
free_port; dead_port=$port
free_port; ferry_port=$port
free_port; pf_port=$port
echo "$me: $n STARTTLS connections, one message of $size bytes each," \
    "$s at once, TLS ${tls_version}, $rounds rounds; queues in $dir"
load_before
alternate_rounds "$rounds"

f_secs=$(median 1 "$dir/ferry.res")
p_secs=$(median 1 "$dir/postfix.res")
f_q=$(min 4 "$dir/ferry.res")
p_q=$(min 4 "$dir/postfix.res")
f_fail=$(awk '{ f += $3 } END { print f + 0 }' "$dir/ferry.res")
p_fail=$(awk '{ f += $3 } END { print f + 0 }' "$dir/postfix.res")
width=30
awk -v w=$width -v n="$n" -v s="$s" -v rounds="$rounds" -v fs="$f_secs" \
    -v ps="$p_secs" -v fq="$f_q" -v pq="$p_q" -v ff="$f_fail" \
    -v pf="$p_fail" -v fsu="$(awk '{ print $5 }' "$dir/ferry.res" | sort -u |
    paste -sd, -)" -v psu="$(awk '{ print $5 }' "$dir/postfix.res" |
    sort -u | paste -sd, -)" 'BEGIN {
	fmt = "%-" w "s %14s %14s\n"
	printf fmt, "", "ferry", "postfix"
	printf fmt, "connections x concurrency", n " x " s, n " x " s
	printf fmt, "seconds (median of " rounds ")", sprintf("%.2f", fs),
	    sprintf("%.2f", ps)
	printf fmt, "msg/s (handshake + message)", sprintf("%.0f", n / fs),
	    sprintf("%.0f", n / ps)
	printf fmt, "failed (all rounds)", ff, pf
	printf fmt, "queued afterwards (min)", fq, pq
	printf "%s ferry: %s\n%s postfix: %s\n", "negotiated", fsu,
	    "negotiated", psu
	printf "tls: ferry %.0f msg/s, postfix %.0f msg/s, ratio %.2fx\n",
	    n / fs, n / ps, ps / fs
}'
load_after
echo "$me: each round: seconds sent failed queued suites"
report_rounds
ok=1
[ "$f_q" = "$n" ] || { echo "$me: ferry queued $f_q of $n" >&2; ok=; }
[ "$p_q" = "$n" ] || { echo "$me: Postfix queued $p_q of $n" >&2; ok=; }
if [ "$f_fail" != 0 ] || [ "$p_fail" != 0 ]; then
	echo "$me: failed connections; see $dir/client.err" >&2
	ok=
fi
[ -n "$ok" ]
