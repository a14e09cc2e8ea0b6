"""
test_openwrt.py - contrib/openwrt without an OpenWrt SDK or router.

The UCI rendering (files/ferry-uci.sh) runs under dash and BusyBox ash
(OpenWrt's shell) against a fake /lib/functions.sh: config_load reads a
UCI file the way OpenWrt's uci_load reads `uci export` (as shell, with
config/option/list defined), config_get, config_get_bool and
config_list_foreach behave like OpenWrt's.  Fake UCI in, expected
relay.conf, smarthost_auth (0600, the ferry user's) and aliases out, byte
for byte, and the real `ferry -c relay.conf check-config` must accept
what was written; values that could inject a line are refused and leave
the files as they were.  The init script runs against stubs of procd's
shell API.  The package Makefile is run through a stub SDK (rules.mk,
package.mk) with the Debian cross toolchain standing in for OpenWrt's;
its install tree is checked against what the files name.  sh -n and
shellcheck on every script.
"""

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

from ferrytest import FERRY_BIN, IS_ROOT, SLOW, check, ensure_ferry_user, \
    short

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
OW = os.path.join(REPO, 'contrib', 'openwrt')
FILES = os.path.join(OW, 'files')
UCI_SH = os.path.join(FILES, 'ferry-uci.sh')
INIT = os.path.join(FILES, 'ferry.init')
SHELLS = [s for s in (['dash'], ['busybox', 'ash'])
          if shutil.which(s[0])]

# OpenWrt's UCI shell API, faked over a UCI file read as shell.
FAKE_FUNCTIONS = r'''
LIST_SEP=" "
_FAKE_LISTS=
package() { :; }
config() { CONFIG_SECTION=$2; }
option() { eval "CONFIG_${CONFIG_SECTION}_$1=\$2"; }
list() {
	_fv=CONFIG_${CONFIG_SECTION}_$1
	eval "_fn=\${${_fv}_LENGTH:-0}"
	_fn=$((_fn + 1))
	eval "${_fv}_ITEM$_fn=\$2"
	eval "${_fv}_LENGTH=$_fn"
	eval "$_fv=\"\${$_fv:+\${$_fv}\$LIST_SEP}\$2\""
	_FAKE_LISTS="$_FAKE_LISTS $_fv"
}
config_load() {
	# like uci_load: lists start empty on every load
	for _fv in $_FAKE_LISTS; do
		eval "unset $_fv ${_fv}_LENGTH"
	done
	_FAKE_LISTS=
	. "$UCI_CONFIG_DIR/$1"
}
config_get() {
	eval "$1=\${CONFIG_$2_$3:-\$4}"
}
config_get_bool() {
	config_get _fb "$2" "$3" "$4"
	case "$_fb" in
	1|on|true|yes|enabled) _fb=1 ;;
	0|off|false|no|disabled) _fb=0 ;;
	*) _fb=$4 ;;
	esac
	eval "$1=\$_fb"
}
config_list_foreach() {
	_fs=$1 _fo=$2 _ff=$3
	shift 3
	eval "_fl=\${CONFIG_${_fs}_${_fo}_LENGTH:-0}"
	_fc=1
	while [ "$_fc" -le "$_fl" ]; do
		eval "_fx=\${CONFIG_${_fs}_${_fo}_ITEM$_fc}"
		"$_ff" "$_fx" "$@"
		_fc=$((_fc + 1))
	done
}
'''

# procd's and rc.common's shell API as stubs that log what they are asked.
FAKE_PROCD = r'''
_log() { printf '%s\n' "$*" >>"$PROCD_LOG"; }
procd_open_instance() { _log "open $*"; }
procd_set_param() { _log "param $*"; }
procd_close_instance() { _log "close"; }
procd_send_signal() { _log "signal $*"; }
procd_add_reload_trigger() { _log "trigger $*"; }
stop() { _log "stop"; }
start() { _log "start"; }
restart() { _log "restart"; }
ubus() { printf '{"ferry":{"instances":{"main":{"running":%s}}}}' "$RUNNING"; }
jsonfilter() { sed -n 's/.*"running":\([a-z]*\).*/\1/p'; }
'''

FULL = r'''
package ferry

config ferry 'main'
	option enabled '1'
	option hostname 'router.example.org'
	option origin 'example.org'
	option smarthost '[smtp.example.net]:587'
	option smarthost_user 'me@example.org'
	option smarthost_password 'pa ss'\''w"rd #1'
	option smarthost_tls 'verify'
	option outbound_tls 'dane'
	option listen_smtp '127.0.0.1:2525 *:2526'
	list listen_submission '127.0.0.1:5870'
	option listen_smtps ''
	option local_socket '/var/run/ferry/submit.sock'
	list relay_networks '127.0.0.0/8'
	list relay_networks '10.0.0.0/24'
	list root_alias 'admin@example.org'
	list root_alias 'ops@example.org'
	option queue_dir '/mnt/usb/ferry'
	option queue_in_ram '1'
	option dnssec '0'
	list dns_servers '127.0.0.1:5353'
	option message_size_limit '20M'
'''

FULL_CONF = '''\
# Written by /etc/init.d/ferry from /etc/config/ferry:
# change that file (uci), not this one.
hostname = router.example.org
origin = example.org
listen_smtp = 127.0.0.1:2525 *:2526
listen_submission = 127.0.0.1:5870
listen_smtps =
local_socket = /var/run/ferry/submit.sock
relay_networks = 127.0.0.0/8 10.0.0.0/24
message_size_limit = 20M
queue_dir = /var/spool/ferry
smarthost = [smtp.example.net]:587
smarthost_tls = verify
smarthost_auth = {out}/smarthost_auth
outbound_tls = dane
dns_servers = 127.0.0.1:5353
dnssec = no
aliases = {out}/aliases
user = ferry
log = syslog
'''

SHIPPED_CONF = '''\
# Written by /etc/init.d/ferry from /etc/config/ferry:
# change that file (uci), not this one.
listen_smtp = 0.0.0.0:25
listen_submission =
listen_smtps =
local_socket = /var/run/ferry/submit.sock
relay_networks = 127.0.0.0/8 ::1/128 192.168.1.0/24
queue_dir = /etc/ferry/spool
smarthost_tls = encrypt
outbound_tls = dane
user = ferry
log = syslog
'''


class Rig:
    """A temp dir with the fake functions.sh, a UCI dir and an output
    dir; render() runs ferry_uci_render there under one shell."""

    def __init__(self, shell):
        ensure_ferry_user()
        self.shell = shell
        self.dir = tempfile.mkdtemp(prefix='ferry-openwrt-')
        self.uci = os.path.join(self.dir, 'uci')
        self.out = os.path.join(self.dir, 'etc-ferry')
        os.mkdir(self.uci)
        self.functions = os.path.join(self.dir, 'functions.sh')
        with open(self.functions, 'w') as f:
            f.write(FAKE_FUNCTIONS)

    def set_uci(self, text):
        with open(os.path.join(self.uci, 'ferry'), 'w') as f:
            f.write(text)

    def env(self, **more):
        # FERRY_BIN: the renderer runs `ferry check-config` on its
        # result (the sanitizer build reads its options too).
        e = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
             'UCI_CONFIG_DIR': self.uci, 'FERRY_BIN': FERRY_BIN}
        e.update((k, os.environ[k]) for k in
                 ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS')
                 if k in os.environ)
        e.update(more)
        return e

    def render(self, **env):
        """(exit code, stderr text, FERRY_RESTART)"""
        p = subprocess.run(self.shell + [
            '-c', '. "$1" && . "$2" || exit 99; ferry_uci_render "$3"; '
            'rc=$?; echo "RESTART=$FERRY_RESTART"; exit $rc',
            'sh', self.functions, UCI_SH, self.out],
            env=self.env(**env), capture_output=True, timeout=30 * SLOW)
        check(p.returncode != 99, 'sourcing failed: %s' % short(p.stderr))
        m = re.search(rb'RESTART=(\d)', p.stdout)
        check(m, 'no RESTART line: %s' % short(p.stdout))
        return p.returncode, p.stderr.decode(errors='replace'), \
            int(m.group(1))

    def read(self, name):
        with open(os.path.join(self.out, name), 'rb') as f:
            return f.read().decode()

    def exists(self, name):
        return os.path.exists(os.path.join(self.out, name))

    def snapshot(self):
        """{name: (bytes, inode, mode, uid)} of the output dir."""
        out = {}
        if os.path.isdir(self.out):
            for n in sorted(os.listdir(self.out)):
                p = os.path.join(self.out, n)
                st = os.stat(p)
                with open(p, 'rb') as f:
                    out[n] = (f.read(), st.st_ino, stat.S_IMODE(st.st_mode),
                              st.st_uid)
        return out

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _shipped():
    with open(os.path.join(FILES, 'ferry.config')) as f:
        return f.read()


def _check_config(path):
    p = subprocess.run([FERRY_BIN, '-c', path, 'check-config'],
                       capture_output=True, timeout=30 * SLOW)
    check(p.returncode == 0, 'ferry check-config %s: exit %d %s'
          % (path, p.returncode, short(p.stderr, 500)))
    return p.stdout.decode()


def _diff(got, want):
    return 'got:\n%s\nwant:\n%s' % (got, want)


def test_openwrt_render_exact():
    """The shipped /etc/config/ferry and a full one render to exactly the
    expected relay.conf, smarthost_auth and aliases, under each shell, and
    ferry's own parser accepts the result."""
    check(SHELLS, 'neither dash nor busybox')
    for shell in SHELLS:
        r = Rig(shell)
        try:
            r.set_uci(_shipped())
            rc, err, restart = r.render()
            check(rc == 0, '%s: shipped config: exit %d %s'
                  % (shell[0], rc, err))
            got = r.read('relay.conf')
            check(got == SHIPPED_CONF, '%s: shipped config: %s'
                  % (shell[0], _diff(got, SHIPPED_CONF)))
            check(sorted(os.listdir(r.out)) == ['relay.conf'],
                  'extra files: %r' % os.listdir(r.out))
            check(restart == 1, 'a first render must ask for a restart')
            out = _check_config(os.path.join(r.out, 'relay.conf'))
            check(re.search(r'(?m)^queue_dir = /etc/ferry/spool  # ', out),
                  'check-config: queue_dir:\n' + out)

            r.set_uci(FULL)
            rc, err, restart = r.render()
            check(rc == 0, '%s: full config: exit %d %s' % (shell[0], rc,
                                                            err))
            want = FULL_CONF.format(out=r.out)
            got = r.read('relay.conf')
            check(got == want, '%s: full config: %s' % (shell[0],
                                                        _diff(got, want)))
            auth = r.read('smarthost_auth')
            check(auth == 'me@example.org pa ss\'w"rd #1\n',
                  'smarthost_auth: %r' % auth)
            st = os.stat(os.path.join(r.out, 'smarthost_auth'))
            check(stat.S_IMODE(st.st_mode) == 0o600,
                  'smarthost_auth mode %o' % stat.S_IMODE(st.st_mode))
            if IS_ROOT:
                check(st.st_uid == pwd.getpwnam('ferry').pw_uid,
                      'smarthost_auth is not the ferry user\'s')
            al = r.read('aliases')
            check(al == 'root: admin@example.org, ops@example.org\n',
                  'aliases: %r' % al)
            check(stat.S_IMODE(os.stat(os.path.join(r.out, 'relay.conf'))
                               .st_mode) == 0o644, 'relay.conf mode')
            out = _check_config(os.path.join(r.out, 'relay.conf'))
            for line in ('listen_smtp = 127.0.0.1:2525 0.0.0.0:2526',
                         'smarthost = [smtp.example.net]:587',
                         'smarthost_auth = %s/smarthost_auth' % r.out,
                         'dnssec = no', 'message_size_limit = 20M',
                         'queue_dir = /var/spool/ferry'):
                check(re.search(r'(?m)^%s  # ' % re.escape(line), out),
                      'check-config lacks %r:\n%s' % (line, out))
        finally:
            r.cleanup()


BAD = [
    # (option, UCI lines replacing the option in FULL, what stderr says)
    ('smarthost', "\toption smarthost 'a.example\nuser = root'\n",
     'control character'),
    ('hostname', "\toption hostname 'router example'\n", 'one word'),
    ('origin', "\toption origin 'example.org#x'\n", 'one word'),
    ('relay_networks', "\tlist relay_networks '10.0.0.0/8,0.0.0.0/0'\n",
     'without \',\''),
    ('relay_networks', "\toption relay_networks '10.0.0.0/8\n"
     "0.0.0.0/0'\n", 'control character'),
    ('listen_smtp', "\tlist listen_smtp '127.0.0.1:25 0.0.0.0:25'\n",
     'one word'),
    ('smarthost_password', "\toption smarthost_password 'abc\ndef'\n",
     'control character'),
    ('smarthost_password', "\toption smarthost_password ' lead'\n",
     'must not start with a blank'),
    ('smarthost_password', "\toption smarthost_password ''\n",
     'smarthost_user is set'),
    ('smarthost_user', "\toption smarthost_user 'me\tyou'\n",
     'control character'),
    ('root_alias', "\tlist root_alias 'a@example.org\nuser = root'\n",
     'control character'),
    # ferry's auth.c refuses more than 255 bytes of either, and then
    # defers every message to the smarthost
    ('smarthost_password', "\toption smarthost_password 'abc%s'\n"
     % ('x' * 253), 'longer than 255 bytes'),
    ('smarthost_user', "\toption smarthost_user '%s@example.org'\n"
     % ('u' * 244), 'longer than 255 bytes'),
]


def _replace_option(text, opt, lines):
    """FULL with every line of opt swapped for lines."""
    out, done = [], False
    for l in text.splitlines(True):
        if re.match(r'\t(option|list) %s ' % opt, l):
            if not done:
                out.append(lines)
                done = True
            continue
        out.append(l)
    check(done, 'no %s in the test config' % opt)
    return ''.join(out)


def _refused_renders(cases, more=None):
    """For each shell: a good render, then each (option, UCI lines, why)
    of cases must be refused with why on stderr and leave the files of
    the good render exactly as they were; more(r, lines, err) checks the
    rest of each refusal."""
    for shell in SHELLS:
        r = Rig(shell)
        try:
            r.set_uci(FULL)
            rc, err, _ = r.render()
            check(rc == 0, 'good config: %s' % err)
            before = r.snapshot()
            for opt, lines, why in cases:
                r.set_uci(_replace_option(FULL, opt, lines))
                rc, err, _ = r.render()
                check(rc != 0, '%s: %r was accepted' % (shell[0], lines))
                check(why in err, '%s: %r: stderr %r lacks %r'
                      % (shell[0], lines, err, why))
                if more is not None:
                    more(opt, lines, err)
                check(r.snapshot() == before, '%s: %r changed the files'
                      % (shell[0], lines))
            # what was refused is still what sendmail would have read
            _check_config(os.path.join(r.out, 'relay.conf'))
        finally:
            r.cleanup()


def test_openwrt_render_refuses_injection():
    """A value that could add a line, split a word or start a comment in
    relay.conf is refused with the option's name, and the files from the
    last good render stay exactly as they were (and the password is never
    echoed)."""
    def named(opt, lines, err):
        check('ferry.main.%s:' % opt in err,
              '%r: stderr %r lacks ferry.main.%s' % (lines, err, opt))
        check('abc' not in err and 'lead' not in err,
              'the password is in the message: %r' % err)
    _refused_renders(BAD, named)


# Values the renderer's syntax check lets through (one word each) but
# ferry's parser refuses: (option, UCI line, what ferry's message says).
REFUSED_BY_FERRY = [
    ('smarthost_tls', "\toption smarthost_tls 'verfy'\n", 'bad level'),
    ('message_size_limit', "\toption message_size_limit '20MB'\n",
     'message_size_limit'),
    ('relay_networks', "\tlist relay_networks '10.0.0.0/33'\n",
     'relay_networks'),
    ('listen_smtp', "\toption listen_smtp '127.0.0.1:99999'\n",
     'listen_smtp'),
    # the aliases file is ferry's too: a start would exit 78, a reload
    # would keep the old aliases
    ('root_alias', "\tlist root_alias '/var/mail/root'\n",
     'no local delivery'),
    # a backslash is no escape: "\n" must not become a second alias
    ('root_alias', "\tlist root_alias 'a@example.org\\n"
     "postmaster:evil@example.net'\n", 'bad address'),
]


def test_openwrt_render_refuses_what_ferry_refuses():
    """A value that is one word but that ferry refuses (a misspelt TLS
    level, a bad size, a /33 network, port 99999) is refused at render
    time with ferry's own message, and the last good relay.conf,
    smarthost_auth and aliases stay as they were: written out, it would
    make every local sendmail (cron's mail) exit 78 without queueing
    while the running daemon, sent SIGHUP, kept its old settings."""
    _refused_renders(REFUSED_BY_FERRY)


def test_openwrt_render_changes_and_restart():
    """Files are replaced only when their content changes (flash); a
    changed listener asks for a restart, a changed smarthost does not;
    clearing the user or the aliases removes their files."""
    shell = SHELLS[-1]		# BusyBox when present: what OpenWrt runs
    r = Rig(shell)
    try:
        r.set_uci(FULL)
        check(r.render()[0] == 0, 'first render')
        first = r.snapshot()
        rc, err, restart = r.render()
        check(rc == 0 and restart == 0, 'same config: rc %d restart %d %s'
              % (rc, restart, err))
        check(r.snapshot() == first, 'unchanged files were rewritten')

        r.set_uci(FULL.replace('[smtp.example.net]:587',
                               '[smtp2.example.net]:465'))
        rc, err, restart = r.render()
        check(rc == 0 and restart == 0, 'new smarthost: restart %d %s'
              % (restart, err))
        check('smarthost = [smtp2.example.net]:465\n' in
              r.read('relay.conf'), 'smarthost not rewritten')
        check(r.snapshot()['smarthost_auth'] == first['smarthost_auth'],
              'smarthost_auth rewritten though the same')

        r.set_uci(FULL.replace('127.0.0.1:2525', '127.0.0.1:2527'))
        rc, err, restart = r.render()
        check(rc == 0 and restart == 1, 'new listener: restart %d %s'
              % (restart, err))
        r.set_uci(FULL.replace("option queue_in_ram '1'",
                               "option queue_in_ram '0'"))
        rc, err, restart = r.render()
        check(rc == 0 and restart == 1, 'queue to flash: restart %d'
              % restart)
        check('queue_dir = /mnt/usb/ferry\n' in r.read('relay.conf'),
              'queue_dir option not used once queue_in_ram is 0')
        # dns.c reads dns_servers and dnssec once: SIGHUP keeps them
        r.set_uci(FULL)
        check(r.render()[0] == 0, 'render FULL again')
        dns = FULL.replace('127.0.0.1:5353', '127.0.0.1:5354')
        r.set_uci(dns)
        rc, err, restart = r.render()
        check(rc == 0 and restart == 1, 'new dns_servers: restart %d %s'
              % (restart, err))
        r.set_uci(dns.replace("option dnssec '0'", "option dnssec '1'"))
        rc, err, restart = r.render()
        check(rc == 0 and restart == 1, 'dnssec on: restart %d %s'
              % (restart, err))
        check('dnssec' not in r.read('relay.conf'), 'dnssec still off')

        text = _replace_option(FULL, 'smarthost_user', '')
        text = _replace_option(text, 'smarthost_password', '')
        text = _replace_option(text, 'root_alias', '')
        r.set_uci(text)
        rc, err, _ = r.render()
        check(rc == 0, 'no user: %s' % err)
        check(not r.exists('smarthost_auth') and not r.exists('aliases'),
              'stale files left: %r' % os.listdir(r.out))
        conf = r.read('relay.conf')
        check('smarthost_auth' not in conf and 'aliases' not in conf,
              'relay.conf still names them:\n' + conf)
    finally:
        r.cleanup()


def test_openwrt_render_local_socket_off():
    """option local_socket '' turns the sendmail socket off, as
    "local_socket =" does in relay.conf (sendmail then writes into
    maildrop/); so does no option at all, which is what `uci set
    ferry.main.local_socket=''` leaves.  It was rendered as the default
    path: UCI could not turn the socket off.  Either way is a restart
    (SIGHUP keeps the socket)."""
    for shell in SHELLS:
        r = Rig(shell)
        try:
            for lines in ("\toption local_socket ''\n", ''):
                r.set_uci(FULL)
                check(r.render()[0] == 0, 'render FULL')
                r.set_uci(_replace_option(FULL, 'local_socket', lines))
                rc, err, restart = r.render()
                check(rc == 0 and restart == 1, '%s: %r: rc %d restart %d'
                      ' %s' % (shell[0], lines, rc, restart, err))
                conf = r.read('relay.conf')
                check('\nlocal_socket =\n' in conf, '%s: %r: not off:\n%s'
                      % (shell[0], lines, conf))
                out = _check_config(os.path.join(r.out, 'relay.conf'))
                check(re.search(r'(?m)^local_socket =  # ', out),
                      'check-config: local_socket:\n' + out)
        finally:
            r.cleanup()


def test_openwrt_render_ram_queue_parent():
    """queue_in_ram '1': the queue's parent directory is made, since
    ferry makes only the queue directory itself and OpenWrt's /var/spool
    does not exist after a boot (/var is RAM); a queue_dir elsewhere (a
    USB disk that may not be mounted yet) gets no directory made."""
    r = Rig(SHELLS[-1])
    try:
        ram = os.path.join(r.dir, 'var', 'spool', 'ferry')
        r.set_uci(FULL)
        rc, err, _ = r.render(FERRY_QUEUE_RAM=ram)
        check(rc == 0, 'render: %s' % err)
        check('queue_dir = %s\n' % ram in r.read('relay.conf'),
              'queue_dir is not the RAM one:\n' + r.read('relay.conf'))
        check(os.path.isdir(os.path.dirname(ram)),
              'the RAM queue\'s parent %s was not made'
              % os.path.dirname(ram))
        check(not os.path.exists(ram), 'the queue itself is ferry\'s')
        usb = os.path.join(r.dir, 'mnt', 'usb', 'ferry')
        r.set_uci(FULL.replace("option queue_in_ram '1'",
                               "option queue_in_ram '0'")
                  .replace('/mnt/usb/ferry', usb))
        rc, err, _ = r.render(FERRY_QUEUE_RAM=ram)
        check(rc == 0, 'render: %s' % err)
        check(not os.path.exists(os.path.join(r.dir, 'mnt')),
              'a directory was made for queue_dir %s' % usb)
    finally:
        r.cleanup()


def _shutdown_grace_s():
    """How long ferry lets open transactions run after SIGTERM (smtp.c),
    in whole seconds, rounded up."""
    with open(os.path.join(REPO, 'smtp.c')) as f:
        m = re.search(r'^#define\s+SMTP_SHUTDOWN_GRACE_MS\s+(\d+)\s',
                      f.read(), re.M)
    check(m, 'no SMTP_SHUTDOWN_GRACE_MS in smtp.c')
    return -(-int(m.group(1)) // 1000)


def _init_run(r, func, running='true'):
    """Source the init script (its paths pointed into the rig) with stub
    procd, run func; (exit code, the stub's log, stderr)."""
    with open(INIT) as f:
        text = f.read()
    uci_sh = os.path.join(r.dir, 'ferry-uci.sh')
    shutil.copyfile(UCI_SH, uci_sh)
    text = text.replace('/usr/lib/ferry/ferry-uci.sh', uci_sh)
    text = text.replace('FERRY_DIR=/etc/ferry', 'FERRY_DIR=' + r.out)
    text = text.replace('FERRY_BIN=/usr/sbin/ferry',
                        'FERRY_BIN=' + FERRY_BIN)
    init = os.path.join(r.dir, 'ferry.init')
    with open(init, 'w') as f:
        f.write(text)
    stubs = os.path.join(r.dir, 'procd.sh')
    with open(stubs, 'w') as f:
        f.write(FAKE_PROCD)
    log = os.path.join(r.dir, 'procd.log')
    if os.path.exists(log):
        os.unlink(log)
    p = subprocess.run(r.shell + ['-c', '. "$1"; . "$2"; . "$3"; "$4"',
                                  'sh', r.functions, stubs, init, func],
                       env=r.env(PROCD_LOG=log, RUNNING=running),
                       capture_output=True, timeout=30 * SLOW)
    lines = []
    if os.path.exists(log):
        with open(log) as f:
            lines = f.read().splitlines()
    return p.returncode, lines, p.stderr.decode(errors='replace')


def test_openwrt_init_script():
    """start_service starts nothing unless enabled '1'; enabled, it
    renders and opens one respawning instance running `ferry -c
    relay.conf serve`, with the rendered files as its files (procd
    restarts it when a start finds them changed) and a term_timeout
    longer than ferry's drain; reload_service sends SIGHUP, or restarts when a
    listener changed or nothing runs, or stops when disabled; a start
    with a refused value keeps the last good instance (procd would stop
    one a start leaves out) and fails."""
    r = Rig(SHELLS[-1])
    try:
        r.set_uci(_shipped())		# enabled '0' as shipped
        rc, log, err = _init_run(r, 'start_service')
        check(rc == 0 and log == [], 'disabled, yet: %r' % log)
        check('disabled' in err, 'no word about being disabled: %r' % err)
        check(not os.path.exists(r.out), 'rendered while disabled')

        r.set_uci(FULL)
        rc, log, err = _init_run(r, 'start_service')
        check(rc == 0, 'start_service: %d %s' % (rc, err))
        want = 'param command %s -c %s/relay.conf serve' % (FERRY_BIN,
                                                            r.out)
        check(log[0] == 'open main' and want in log and log[-1] == 'close',
              'instance: %r' % log)
        check(any(l.startswith('param respawn') for l in log),
              'no respawn: %r' % log)
        # procd SIGKILLs the instance term_timeout seconds after its
        # SIGTERM; ferry drains open transactions for up to
        # SMTP_SHUTDOWN_GRACE_MS first, then commits and exits.  30 s was
        # set, so a stop or restart killed ferry mid-transaction.
        tt = [l.split()[2:] for l in log if l.startswith('param '
                                                          'term_timeout ')]
        grace = _shutdown_grace_s()
        check(len(tt) == 1 and len(tt[0]) == 1 and tt[0][0].isdigit() and
              int(tt[0][0]) >= grace + 5, 'term_timeout %r, want at least '
              '%d s (the drain, %d s, and time to exit): %r'
              % (tt, grace + 5, grace, log))
        # procd restarts the instance when a start finds these changed
        files = 'param file %s' % ' '.join(
            os.path.join(r.out, n) for n in ('relay.conf', 'smarthost_auth',
                                             'aliases'))
        check(files in log, 'procd is not given the rendered files: %r'
              % log)
        check(r.read('relay.conf') == FULL_CONF.format(out=r.out),
              'start_service did not render')

        r.set_uci(FULL.replace('[smtp.example.net]', '[smtp3.example.net]'))
        rc, log, err = _init_run(r, 'reload_service')
        check(rc == 0 and log == ['signal ferry main HUP'],
              'reload, smarthost changed: %r %s' % (log, err))
        r.set_uci(FULL.replace('127.0.0.1:2525', '127.0.0.1:2528'))
        rc, log, err = _init_run(r, 'reload_service')
        check(log == ['restart'], 'reload, listener changed: %r' % log)
        rc, log, err = _init_run(r, 'reload_service', running='false')
        check(log == ['restart'], 'reload, not running: %r' % log)
        r.set_uci(FULL.replace('127.0.0.1:2525', '127.0.0.1:2528')
                  .replace('127.0.0.1:5353', '127.0.0.1:5355'))
        rc, log, err = _init_run(r, 'reload_service')
        check(log == ['restart'], 'reload, dns_servers changed: %r' % log)
        # Disabled: `start` (no instance: procd stops the running one and
        # keeps the reload trigger), not `stop` (deletes the service and
        # its trigger, so enabling it again would start nothing).
        r.set_uci(FULL.replace("option enabled '1'", "option enabled '0'"))
        rc, log, err = _init_run(r, 'reload_service')
        check(log == ['start'], 'reload, now disabled: %r' % log)
        r.set_uci(FULL.replace("option smarthost_tls 'verify'",
                               "option smarthost_tls 'very fy'"))
        rc, log, err = _init_run(r, 'reload_service')
        check(rc != 0 and log == [], 'reload with a bad value: rc %d %r'
              % (rc, log))
        # one word, but no level: ferry's check refuses it, no SIGHUP
        r.set_uci(FULL.replace("option smarthost_tls 'verify'",
                               "option smarthost_tls 'verfy'"))
        rc, log, err = _init_run(r, 'reload_service')
        check(rc != 0 and log == [] and 'bad level' in err,
              'reload with a level ferry refuses: rc %d %r %s'
              % (rc, log, err))
        # start (boot, restart, `/etc/init.d/ferry start`, LuCI) with a
        # refused value: procd stops every instance a start leaves out,
        # so the last good files must still be named, unchanged, while
        # the exit status and stderr say it was not applied
        r.set_uci(FULL)
        rc, good, err = _init_run(r, 'start_service')
        check(rc == 0, 'start_service: %d %s' % (rc, err))
        before = r.snapshot()
        for bad in ("option smarthost_tls 'very fy'",
                    "option smarthost_tls 'verfy'"):
            r.set_uci(FULL.replace("option smarthost_tls 'verify'", bad))
            rc, log, err = _init_run(r, 'start_service')
            check(rc != 0 and 'as it was' in err,
                  'start with %s: rc %d %s' % (bad, rc, err))
            check(log == good, 'start with %s stops the relay: %r, want %r'
                  % (bad, log, good))
            check(r.snapshot() == before, 'start with %s changed the files'
                  % bad)
        # nothing rendered yet: nothing to run
        shutil.rmtree(r.out)
        rc, log, err = _init_run(r, 'start_service')
        check(rc != 0 and log == [], 'first start with a bad value: rc %d %r'
              % (rc, log))
        rc, log, err = _init_run(r, 'service_triggers')
        check(log == ['trigger ferry'], 'triggers: %r' % log)
    finally:
        r.cleanup()


def test_openwrt_scripts_lint():
    """sh -n under dash and BusyBox ash, and shellcheck -s sh, on the
    init script and the rendering functions."""
    for shell in SHELLS:
        for f in (UCI_SH, INIT):
            p = subprocess.run(shell + ['-n', f], capture_output=True,
                               timeout=30)
            check(p.returncode == 0, '%s -n %s: %s' % (shell[0], f,
                                                       short(p.stderr)))
    check(shutil.which('shellcheck'), 'shellcheck is not installed '
          '(sh test/deps.sh test)')
    p = subprocess.run(['shellcheck', '-s', 'sh', '-x', '-P', FILES,
                        UCI_SH, INIT], capture_output=True, timeout=120,
                       cwd=FILES)
    check(p.returncode == 0, 'shellcheck:\n%s' % p.stdout.decode())
    # disables are for OpenWrt's indirect assignments and rc.common only
    for f in (UCI_SH, INIT):
        with open(f) as fh:
            codes = set(re.findall(r'shellcheck disable=(\S+)', fh.read()))
        check(codes <= {'SC2154', 'SC2034'}, '%s disables %r' % (f, codes))


# A stub OpenWrt SDK: just enough of rules.mk and package.mk to run the
# package Makefile's Build/Prepare, Build/Compile and install recipes.
STUB_RULES = '''
INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR:=$(TOPDIR)/build_dir
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
LN:=ln -sf
CP:=cp -fpR
TARGET_CFLAGS:=-Os -pipe
TARGET_LDFLAGS:=
'''

STUB_PACKAGE = '''
PKG_BUILD_DIR:=$(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
MAKE_VARS=CFLAGS="$(TARGET_CFLAGS)" LDFLAGS="$(TARGET_LDFLAGS)"
PKG_JOBS:=-j2
define BuildPackage
$(eval $(Package/$(1)))
.PHONY: prepare compile install info
prepare:
\t$$(Build/Prepare)
compile: prepare
\t$$(Build/Compile)
install: compile
\t$$(call Package/$(1)/install,$$(DESTDIR))
info:
\t@echo 'NAME=$(PKG_NAME) VERSION=$(PKG_VERSION) RELEASE=$(PKG_RELEASE)'
\t@echo 'LICENSE=$(PKG_LICENSE)'
\t@echo 'DEPENDS=$$(DEPENDS)'
\t@echo 'USERID=$$(USERID)'
endef
'''

CROSS = 'mipsel-linux-gnu'
EM_MIPS = 8


def test_openwrt_package_makefile():
    """The package Makefile, run through a stub SDK with the Debian
    mipsel cross toolchain as TARGET_CROSS: Build/Compile makes a MIPS
    ferry from a copy of the source, and install puts exactly ferry, its
    sendmail/mailq/newaliases links, the init script, the UCI config and
    the rendering functions where the init script looks for them;
    DEPENDS, USERID and conffiles are as OpenWrt wants them."""
    with open(os.path.join(OW, 'Makefile')) as f:
        mk = f.read()
    for var in ('PKG_NAME', 'PKG_VERSION', 'PKG_RELEASE', 'PKG_LICENSE'):
        check(re.search(r'(?m)^%s:=\S' % var, mk), '%s missing' % var)
    check('include $(TOPDIR)/rules.mk' in mk and
          'include $(INCLUDE_DIR)/package.mk' in mk, 'SDK includes')
    m = re.search(r'define Package/ferry/conffiles\n(.*?)\nendef', mk, re.S)
    check(m and m.group(1).split() == ['/etc/config/ferry'],
          'conffiles: %r' % (m and m.group(1)))
    cross = CROSS if shutil.which(CROSS + '-gcc') else ''

    top = tempfile.mkdtemp(prefix='ferry-sdk-')
    ok = False
    try:
        os.makedirs(os.path.join(top, 'include'))
        with open(os.path.join(top, 'rules.mk'), 'w') as f:
            f.write(STUB_RULES)
        with open(os.path.join(top, 'include', 'package.mk'), 'w') as f:
            f.write(STUB_PACKAGE)
        dest = os.path.join(top, 'ipkg-install')
        args = ['make', '--no-print-directory', '-C', OW, 'TOPDIR=' + top,
                'TARGET_CROSS=' + (cross + '-' if cross else ''),
                'DESTDIR=' + dest]
        p = subprocess.run(args + ['info'], capture_output=True, timeout=60)
        info = p.stdout.decode()
        check(p.returncode == 0, 'make info: %s' % short(p.stderr))
        check('DEPENDS=+libmbedtls +libcares +libsodium\n' in info,
              'DEPENDS: ' + info)
        m = re.search(r'USERID=(\w+)=(\d+):(\w+)=(\d+)\n', info)
        check(m and m.group(1) == m.group(3) == 'ferry', 'USERID: ' + info)
        p = subprocess.run(args + ['install'], capture_output=True,
                           timeout=900 * SLOW)
        check(p.returncode == 0, 'make install through the stub SDK:\n%s'
              % p.stderr.decode(errors='replace')[-3000:])

        found = {}
        for d, _, names in os.walk(dest):
            for n in names:
                path = os.path.join(d, n)
                found['/' + os.path.relpath(path, dest)] = path
        want = {'/usr/sbin/ferry', '/usr/sbin/sendmail', '/usr/sbin/mailq',
                '/usr/sbin/newaliases', '/etc/init.d/ferry',
                '/etc/config/ferry', '/usr/lib/ferry/ferry-uci.sh',
                '/lib/upgrade/keep.d/ferry'}
        check(set(found) == want, 'installed %r, want %r'
              % (sorted(found), sorted(want)))
        for link in ('sendmail', 'mailq', 'newaliases'):
            check(os.readlink(found['/usr/sbin/' + link]) == 'ferry',
                  '%s is not a link to ferry' % link)
        with open(found['/usr/sbin/ferry'], 'rb') as f:
            elf = f.read(20)
        check(elf[:4] == b'\x7fELF', 'ferry is not ELF')
        if cross:
            machine = int.from_bytes(elf[18:20], 'little')
            check(machine == EM_MIPS, 'ferry is not MIPS (e_machine %d)'
                  % machine)
        for n, mode in (('/etc/init.d/ferry', 0o755),
                        ('/usr/sbin/ferry', 0o755),
                        ('/etc/config/ferry', 0o600)):
            got = stat.S_IMODE(os.stat(found[n]).st_mode)
            check(got == mode, '%s mode %o, want %o' % (n, got, mode))
        # what the init script and the user name rely on is in the package
        with open(found['/etc/init.d/ferry']) as f:
            init = f.read()
        for path in re.findall(r'(/usr/\S+?)(?=["\s])', init):
            check(path in found, 'the init script uses %s, not installed'
                  % path)
        with open(found['/usr/lib/ferry/ferry-uci.sh']) as f:
            uci_sh = f.read()
        check('FERRY_USER=${FERRY_USER:-%s}' % m.group(1) in uci_sh,
              'the rendered user is not the package\'s')
        # sysupgrade keeps the default flash queue (and what else is in
        # the same directory), not the RAM one; the binary reads the
        # relay.conf the init script writes
        with open(found['/lib/upgrade/keep.d/ferry']) as f:
            keep = [l for l in f.read().splitlines()
                    if l.strip() and not l.startswith('#')]
        flash = re.search(r'(?m)^FERRY_QUEUE_FLASH=(\S+)$', uci_sh).group(1)
        ram = re.search(r'(?m)^FERRY_QUEUE_RAM=\$\{FERRY_QUEUE_RAM:-(\S+)\}$',
                        uci_sh).group(1)
        kept = lambda path: any((path + '/').startswith(k.rstrip('/') + '/')
                                for k in keep)
        check(kept(flash) and kept('/etc/ferry/cert.pem') and
              not kept(ram),
              'keep.d: %r' % keep)
        with open(found['/usr/sbin/ferry'], 'rb') as f:
            check(b'/etc/ferry/relay.conf\0' in f.read(),
                  'ferry does not default to /etc/ferry/relay.conf')
        # every file under files/ is installed somewhere
        with open(os.path.join(OW, 'Makefile')) as f:
            mk = f.read()
        for n in os.listdir(FILES):
            check('./files/%s ' % n in mk, 'files/%s is not installed' % n)
        ok = True
        return None if cross else 'no %s-gcc: built natively' % CROSS
    finally:
        if ok:
            shutil.rmtree(top, ignore_errors=True)
