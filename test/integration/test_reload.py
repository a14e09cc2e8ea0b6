"""The daemon's configuration life: what SIGHUP takes, what it refuses
(a file the daemon could not start with keeps the running settings), and
what it says about keys that need a restart."""

import os
import re
import signal
import socket
import subprocess
import time

from ferrytest import (FERRY_BIN, SLOW, Daemon, check, client_context,
                       free_port)


def hup(d, line='reload -- version'):
    """SIGHUP, then wait for one more log line containing line."""
    n = d.log_text().count(line)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW
    while d.log_text().count(line) <= n:
        check(time.monotonic() < deadline, 'no %r log line after SIGHUP:\n'
              % line + d.log_tail())
        time.sleep(0.05)


def test_reload_smtps_without_cert_refused():
    """listen_smtps with no tls_cert is a start-up error (78); a reload to
    such a file was taken, and port 465 then reset every client.  Now
    check-config, start and SIGHUP all refuse it, naming file, line and
    key, and the running certificate stays."""
    with Daemon('hupsmtps', tls=True, smtps=True) as d:
        ctx = client_context(verify=False)
        with d.connect_smtps(ctx=ctx) as c:
            check(c.reply().code == 220, 'no banner on 465 before')
        del d.cfg['tls_cert'], d.cfg['tls_key']
        d.write_config()
        lines = d.config_text().splitlines()
        where = '%s:%d: listen_smtps: needs tls_cert and tls_key' % (
            d.conf, 1 + [l.split()[0] for l in lines].index('listen_smtps'))
        hup(d, line='keeping the running configuration')
        check(re.search(r'warning: reload: %s; keeping the running '
                        r'configuration' % re.escape(where), d.log_text()),
              'no reload warning naming listen_smtps:\n' + d.log_tail())
        with d.connect_smtps(ctx=ctx) as c:
            r = c.reply()
            check(r.code == 220, '465 after the refused reload: %r' % r)
            c.cmd('QUIT')
        p = subprocess.run([FERRY_BIN, '-c', d.conf, 'check-config'],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 78 and where in p.stderr,
              'check-config: exit %d, want 78 and %r: %s'
              % (p.returncode, where, p.stderr))


def test_reload_restart_keys_warn_until_restart():
    """Listeners, queue_dir and user stay as started.  The config kept
    the file's listeners, so a second reload of the changed file said
    nothing and a file changed back was said to need a restart; a new
    user was taken without a word."""
    warn = re.compile(r'warning: reload: listener.* changes take effect '
                      r'after a restart')
    with Daemon('huprestart') as d:
        def reload():
            d.write_config()
            hup(d)
            return len(warn.findall(d.log_text()))

        bound = d.cfg['listen_smtp']
        d.cfg['listen_smtp'] = '127.0.0.1:%d' % free_port()
        check(reload() == 1, 'a new listener, no warning:\n' + d.log_tail())
        check(reload() == 2, 'still not the bound listener, no warning:\n'
              + d.log_tail())
        d.cfg['listen_smtp'] = bound
        check(reload() == 2, 'the bound listener again, yet a warning:\n'
              + d.log_tail())
        d.cfg['user'] = 'nobody'
        check(reload() == 3, 'a new user, no warning:\n' + d.log_tail())
        with d.session() as c:
            c.expect('QUIT', 221)


def test_reload_log_key_applies():
    """`log` is not among the keys that need a restart (ferry.8): a
    reload to syslog moves the log there, and back.  Where /dev/log does
    not exist (a container, maybe this machine) syslog's lines come to
    stderr in syslog's shape, without the host that the stderr form has
    after the time: a reload line there must have that shape."""
    with Daemon('huplog') as d:
        n = d.log_text().count('reload -- version')
        d.cfg.update(log='syslog', hostname='syslog.test')
        d.write_config()
        d.signal(signal.SIGHUP)
        banner(d, 'syslog.test')
        time.sleep(0.2)
        new = [l for l in d.log_text().splitlines()
               if 'reload -- version' in l][n:]
        check(all(re.match(r'\w{3} [ \d]\d [\d:]{8} ferry/master\[\d+\]: ',
                           l) for l in new),
              'log = syslog, yet the reload was logged on stderr:\n'
              + d.log_tail())
        d.cfg.update(log='stderr', hostname='stderr.test')
        d.write_config()
        hup(d)
        banner(d, 'stderr.test')


def banner(d, name):
    """Wait until the banner names name: the reload has been done."""
    deadline = time.monotonic() + 5 * SLOW
    while True:
        with d.connect() as c:
            r = c.reply()
            c.send('QUIT\r\n')
        if r.lines[0].startswith('220 %s ' % name):
            return
        check(time.monotonic() < deadline, 'banner %r, want %s'
              % (r.lines, name))
        time.sleep(0.05)


def test_reload_env_wins_over_a_bad_file_line():
    """relay.conf.5 and ferry.8: the file counts only for keys whose
    FERRY_<KEY> variable is unset.  A template's `hostname =` (or any
    value) under FERRY_HOSTNAME stopped start-up with 78, and so every
    reload; now the line is passed over, at start and on SIGHUP."""
    d = Daemon('hupenv', hostname='', max_recipients='lots')
    d.env = dict(os.environ, FERRY_HOSTNAME='env.test',
                 FERRY_MAX_RECIPIENTS='3')
    with d:
        banner(d, 'env.test')
        d.cfg['message_size_limit'] = '50000'
        d.write_config()
        hup(d)
        check('keeping the running' not in d.log_text(),
              'reload refused:\n' + d.log_tail())
        with d.session() as c:
            r = c.cmd('EHLO client.test')
            check('250-SIZE 50000' in r.lines, 'SIZE after SIGHUP: %r'
                  % r.lines)
            c.expect('MAIL FROM:<s@example.test>', 250)
            for i in range(3):
                c.expect('RCPT TO:<r%d@relay.test>' % i, 250)
            r = c.cmd('RCPT TO:<r9@relay.test>')
            check(r.code == 452, 'max_recipients is not FERRY_'
                  'MAX_RECIPIENTS=3: %r' % r)


def test_reload_smtps_bound_keeps_its_cert():
    """Port 465 stays bound until a restart, so a reload to a file
    without listen_smtps, tls_cert and tls_key (which start-up would take)
    dropped the certificate from under it: every client there was then
    reset.  The reload is refused, naming why, and 465 keeps its TLS."""
    with Daemon('hupsmtpsoff', tls=True, smtps=True) as d:
        ctx = client_context(verify=False)
        del d.cfg['tls_cert'], d.cfg['tls_key'], d.cfg['listen_smtps']
        d.cfg['hostname'] = 'changed.test'
        d.write_config()
        hup(d, line='reload')
        try:
            with d.connect_smtps(ctx=ctx) as c:
                r = c.reply()
                c.cmd('QUIT')
        except (OSError, EOFError) as e:
            r = e
        check(getattr(r, 'code', None) == 220 and
              'changed.test' not in r.text, '465 after the reload: %r; '
              'log:\n%s' % (r, d.log_tail()))
        check(re.search(r'warning: reload: listen_smtps stays bound until '
                        r'a restart and needs tls_cert; keeping the running '
                        r'configuration', d.log_text()),
              'no reload warning about listen_smtps:\n' + d.log_tail())


def test_reload_ipv6_kernel_absent_skips_v6():
    """A kernel without IPv6 (ipv6.disable=1, some routers) fails
    socket(AF_INET6) with EAFNOSUPPORT, not bind(): the default listeners
    ([::]:25 beside 0.0.0.0:25) stopped start-up with exit 75.  The IPv6
    listener is skipped, named in the log, and IPv4 serves."""
    d = Daemon('noipv6')
    d.cfg['listen_smtp'] += ' [::1]:%d' % free_port()
    d.write_config()
    d.preload(NO_IPV6_SHIM)
    with d:
        d.wait_log(r'warning: no IPv6 here: skipping listener ::1 port \d+')
        with d.session() as c:
            c.expect('QUIT', 221)


def test_reload_bind_error_names_the_address():
    """A port another daemon holds: the fatal line names the address and
    port, as Postfix's "bind 0.0.0.0 port 25: Address already in use"
    (it said "bind listener 0"), and the exit is 75 (try again)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(('127.0.0.1', 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        d = Daemon('bindbusy', listen_smtp='127.0.0.1:%d' % port)
        try:
            d.start(wait=False)
            rc = d.wait_exit()
            check(rc == 75 and re.search(
                r'fatal: bind 127\.0\.0\.1 port %d: Address already in use'
                % port, d.log_text()), 'exit %r; log:\n%s'
                  % (rc, d.log_tail()))
        finally:
            d.cleanup()
    finally:
        holder.close()


# socket(AF_INET6, ...) as on a kernel built or booted without IPv6.
NO_IPV6_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

int
socket(int domain, int type, int protocol)
{
	static int (*real)(int, int, int);

	if (domain == AF_INET6) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "socket");
	return real(domain, type, protocol);
}
"""
