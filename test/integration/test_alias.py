"""The aliases file: applied when mail is accepted, over SMTP and from
sendmail/maildrop, with chains; a loop or an alias too long is refused
when the file is loaded (start, SIGHUP, newaliases), not at every
message."""

import os
import re
import signal
import time

from ferrytest import Daemon, check


def write_aliases(d, text):
    path = os.path.join(d.dir, 'aliases')
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def rcpts_of(d, qid):
    for m in d.mailq():
        if m['id'] == qid:
            return sorted(r['address'] for r in m['recipients'])
    return None


ALIASES = ('# null client: root goes to a real mailbox\n'
           'root: admin@example.org\n'
           'postmaster: root\n'
           'ops: a@x.test,\n'
           '   b@y.test\n')
LOOP = 'loop1: loop2\nloop2: loop1\n'


def test_alias_rewrites_smtp_recipients():
    d = Daemon('alias', origin='box.test', max_recipients='10')
    d.cfg['aliases'] = write_aliases(d, ALIASES)
    d.write_config()
    with d:
        qid = d.send_message(b'Subject: a\r\n\r\nx\r\n',
                             rcpts=('root@box.test', 'postmaster',
                                    'ops@BOX.test', 'other@z.test'))
        check(rcpts_of(d, qid) == ['a@x.test', 'admin@example.org',
                                   'b@y.test', 'other@z.test'],
              'recipients %r' % rcpts_of(d, qid))


def test_alias_applies_to_sendmail_and_maildrop():
    d = Daemon('aliassm', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, ALIASES)
    d.write_config()
    d.start()
    p = d.cli('sendmail', 'root', input=b'Subject: cron\n\nout\n')
    check(p.returncode == 0, 'sendmail exit %d' % p.returncode)
    ids = [m['id'] for m in d.mailq()]
    check(len(ids) == 1 and rcpts_of(d, ids[0]) ==
          ['admin@example.org'], 'queued %r' % d.mailq())
    d.stop()
    # daemon down: maildrop, then the pickup applies the aliases too
    p = d.cli('sendmail', 'root', input=b'Subject: cron2\n\nout\n')
    check(p.returncode == 0, 'sendmail (down) exit %d' % p.returncode)
    with d:
        deadline = time.time() + 10
        while time.time() < deadline and len(d.mailq()) < 2:
            time.sleep(0.2)
        q = d.mailq()
        check(len(q) == 2, 'after pickup %r' % q)
        check(all(rcpts_of(d, m['id']) == ['admin@example.org']
                  for m in q), 'pickup recipients %r' % q)


def test_alias_loop_or_too_long_refused_at_load():
    """Every alias is expanded once when the file is loaded.  A loop, or
    an alias of more addresses than one recipient may become (32, what
    the SMTP server and the pickup expand into), was taken by newaliases
    and then answered 451 4.3.0 to every message for it, for ever (and
    the pickup moved such mail from maildrop/ into corrupt/).  Now
    newaliases and the start refuse the file (78) naming the alias, and
    a SIGHUP keeps the aliases that run."""
    d = Daemon('aliasloop', origin='box.test')
    many = 'staff: ' + ', '.join('u%d@x.test' % i for i in range(33)) + '\n'
    for text, key, why in ((ALIASES + LOOP, 'loop1', 'alias loop'),
                           (ALIASES + many, 'staff', 'too many addresses')):
        path = write_aliases(d, text)
        d.cfg['aliases'] = path
        d.write_config()
        for args in (('newaliases',), ('serve',)):
            p = d.cli(*args)
            said = (p.stderr.decode(errors='replace') + d.log_text())
            check(p.returncode == 78 and '%s: %s: ' % (path, key) in said
                  and why in said, '%s: exit %d %r' % (args[0],
                                                       p.returncode,
                                                       said[-500:]))
    write_aliases(d, ALIASES)
    with d:
        write_aliases(d, ALIASES + LOOP)
        os.kill(d.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and 'loop1: alias loop' not in \
                d.log_text():
            time.sleep(0.1)
        check('loop1: alias loop' in d.log_text(), 'reload: no warning')
        qid = d.send_message(b'Subject: r\r\n\r\nx\r\n', rcpts=('root',))
        check(rcpts_of(d, qid) == ['admin@example.org'],
              'after a refused reload %r' % rcpts_of(d, qid))


def test_alias_local_forms_and_display_names_refused():
    """'root: |/usr/bin/procmail' (a valid local part) was queued for
    |/usr/bin/procmail@origin, and 'root: John Doe <j@x.test>' mailed
    John and Doe at origin as well as j@x.test.  ferry delivers nothing
    locally and takes no display names: newaliases and the start refuse
    the file (78) naming its line, and a SIGHUP keeps the running
    aliases."""
    d = Daemon('aliaslocal', origin='box.test')
    for line, why in (('root: |/usr/bin/procmail', 'no local delivery'),
                      ('root: John Doe <j@x.test>', 'no display names')):
        path = write_aliases(d, 'postmaster: root\n' + line + '\n')
        d.cfg['aliases'] = path
        d.write_config()
        for args in (('newaliases',), ('serve',)):
            p = d.cli(*args)
            said = (p.stderr.decode(errors='replace') + d.log_text())
            check(p.returncode == 78 and '%s:2: aliases: %s' % (path, why)
                  in said, '%s %r: exit %d %r' % (args[0], line,
                                                 p.returncode, said[-500:]))
    write_aliases(d, ALIASES)
    with d:
        write_aliases(d, ALIASES + 'abuse: |/usr/bin/procmail\n')
        os.kill(d.proc.pid, signal.SIGHUP)
        d.wait_log(r'aliases:6: aliases: no local delivery', 10)
        qid = d.send_message(b'Subject: r\r\n\r\nx\r\n',
                             rcpts=('root', 'abuse'))
        check(rcpts_of(d, qid) == ['abuse@box.test', 'admin@example.org'],
              'after a refused reload %r' % rcpts_of(d, qid))


def test_alias_longer_than_max_recipients():
    """An alias of more addresses than max_recipients is taken as the
    first recipient (it would get 452 for ever otherwise); the limit
    holds for what comes after it."""
    d = Daemon('aliasmax', origin='box.test', max_recipients='5')
    d.cfg['aliases'] = write_aliases(
        d, 'staff: ' + ', '.join('u%d@x.test' % i for i in range(6)) + '\n')
    d.write_config()
    with d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test>', 250)
            c.expect('RCPT TO:<staff@box.test>', 250)
            c.expect('RCPT TO:<other@z.test>', 452)
            c.expect('DATA', 354)
            qid = c.expect(b'Subject: m\r\n\r\nx\r\n.\r\n', 250).qid()
            c.expect('QUIT', 221)
        check(rcpts_of(d, qid) == ['u%d@x.test' % i for i in range(6)],
              'queued %r for %r' % (d.mailq(), qid))


def test_alias_bad_file_refused_and_reload_keeps_old():
    d = Daemon('aliasbad', origin='box.test')
    path = write_aliases(d, 'root admin@example.org\n')
    d.cfg['aliases'] = path
    d.write_config()
    p = d.cli('serve')
    check(p.returncode == 78, 'bad aliases: exit %d' % p.returncode)
    check(b'aliases:1' in p.stderr or 'aliases:1' in d.log_text(),
          'error does not name the line: %r' % p.stderr)
    write_aliases(d, ALIASES)
    with d:
        write_aliases(d, 'root: \n')
        os.kill(d.proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        qid = d.send_message(b'Subject: r\r\n\r\nx\r\n', rcpts=('root',))
        check(rcpts_of(d, qid) == ['admin@example.org'],
              'after a bad reload %r' % rcpts_of(d, qid))


def test_newaliases_reloads_the_daemon():
    """newaliases checks the file, then has a running daemon reload (its
    pid from the local socket), as Postfix's daemons take a rebuilt
    table: the next message goes to the new alias.  It only checked the
    file, and mail went on to the old address until a SIGHUP.  Run by a
    user who may not signal the daemon, it says so and exits 77."""
    d = Daemon('aliasnew', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, ALIASES)
    d.write_config()
    with d:
        write_aliases(d, 'root: new@example.org\n')
        p = d.cli('newaliases')
        check(p.returncode == 0, 'newaliases: exit %d %r' %
              (p.returncode, p.stderr))
        d.wait_log(r'reload -- version .*, configuration ')
        qid = d.send_message(b'Subject: r\r\n\r\nx\r\n', rcpts=('root',))
        check(rcpts_of(d, qid) == ['new@example.org'],
              'after newaliases %r' % rcpts_of(d, qid))
        if os.geteuid() == 0:
            write_aliases(d, 'root: third@example.org\n')
            p = d.cli('newaliases', user='nobody')
            check(p.returncode == 77 and b'send it SIGHUP' in p.stderr,
                  'newaliases as nobody: exit %d %r' %
                  (p.returncode, p.stderr))


def test_alias_sendmail_batch_cut_by_expansion():
    """sendmail sends at most max_recipients RCPTs a transaction, but the
    daemon counts recipients after alias expansion: with root three
    addresses, the 4th RCPT of root d e f got 452 4.5.3.  sendmail took
    that for a failure, sent no DATA and exited 75, so the message went
    to nobody (cron does not retry).  RFC 5321 4.5.3.1.10: on a 452 the
    accepted recipients get the message and the rest a new transaction."""
    d = Daemon('aliasbatch', origin='box.test', max_recipients='5')
    d.cfg['aliases'] = write_aliases(d, 'root: a@x.test, b@x.test, '
                                        'c@x.test\n')
    d.write_config()
    with d:
        p = d.cli('sendmail', 'root', 'd@z.test', 'e@z.test', 'f@z.test',
                  input=b'Subject: batch\n\nx\n')
        check(p.returncode == 0, 'sendmail: exit %d %r'
              % (p.returncode, p.stderr))
        q = d.mailq()
        got = sorted(a for m in q for a in rcpts_of(d, m['id']))
        check(got == ['a@x.test', 'b@x.test', 'c@x.test', 'd@z.test',
                      'e@z.test', 'f@z.test'] and len(q) == 2,
              'queued %r' % [(m['id'], rcpts_of(d, m['id'])) for m in q])
        md = os.path.join(d.queue_dir, 'maildrop')
        check(os.listdir(md) == [], 'maildrop %r' % os.listdir(md))


def test_alias_self_reference_ends_recursion():
    """'root: root, admin@example.org' keeps root and adds a copy, as in
    Postfix (virtual(5): alias an address to itself to end recursion)
    and sendmail; ferry took the self-reference for a loop and answered
    451 4.3.0 to every message for root, for ever."""
    d = Daemon('aliasself', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, 'root: root, admin@example.org\n'
                                        'ops: ops@box.test, root\n')
    d.write_config()
    with d:
        qid = d.send_message(b'Subject: s\r\n\r\nx\r\n',
                             rcpts=('root@box.test',))
        check(rcpts_of(d, qid) == ['admin@example.org', 'root@box.test'],
              'root: %r' % rcpts_of(d, qid))
        p = d.cli('sendmail', 'ops', input=b'Subject: s\n\nx\n')
        check(p.returncode == 0, 'sendmail ops: exit %d %r'
              % (p.returncode, p.stderr))
        q = [m for m in d.mailq() if m['id'] != qid]
        check(len(q) == 1 and rcpts_of(d, q[0]['id']) ==
              ['admin@example.org', 'ops@box.test', 'root@box.test'],
              'ops: %r' % q)


def test_alias_maildrop_folds_duplicates():
    """Two recipients whose aliases meet are one copy from maildrop/ as
    at the SMTP door (addr_list_has): 'sendmail root postmaster' with
    both aliased to admin@example.org queued admin twice while the daemon
    was down, and once while it was up."""
    d = Daemon('aliasmddup', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, ALIASES + 'abuse: ADMIN@example.org'
                                        ', c@x.test\n')
    d.write_config()
    d.start()
    d.stop()
    p = d.cli('sendmail', 'root', 'postmaster', 'abuse', 'c@X.test',
              input=b'Subject: dup\n\nx\n')
    check(p.returncode == 0, 'sendmail (down) exit %d' % p.returncode)
    with d:
        q = d.wait_queue(1, timeout=8)
        check(len(q) == 1 and rcpts_of(d, q[0]['id']) ==
              ['admin@example.org', 'c@x.test'], 'pickup recipients %r'
              % [rcpts_of(d, m['id']) for m in q])


def _maildrop_split(name, aliases, rcpts, want, parts):
    """sendmail with the daemon down, then the pickup: every recipient
    queued once in `parts` queue files, one uid= line each, the same
    message in each (its own Received: aside), the maildrop file gone,
    nothing in corrupt/."""
    d = Daemon(name, origin='box.test')
    d.cfg['aliases'] = write_aliases(d, aliases)
    d.write_config()
    d.start()
    d.stop()
    p = d.cli('sendmail', *rcpts, input=b'Subject: many\n\nx\n')
    check(p.returncode == 0, 'sendmail (down) exit %d %r'
          % (p.returncode, p.stderr))
    md = os.path.join(d.queue_dir, 'maildrop')
    with d:
        d.wait_log(r'picked up from maildrop/|moved to corrupt/', 8)
        deadline = time.time() + 5
        while os.listdir(md) and time.time() < deadline:
            time.sleep(0.1)
        q = d.mailq()
        got = sorted(a for m in q for a in rcpts_of(d, m['id']))
        check(d.corrupt_files() == [] and got == sorted(want),
              'corrupt/ %r, %d recipients queued (%d distinct) of %d'
              % (d.corrupt_files(), len(got), len(set(got)), len(want)))
        check(len(q) == parts and os.listdir(md) == [],
              '%d queue files, maildrop %r' % (len(q), os.listdir(md)))
        bodies = set()
        for m in q:
            d.wait_log(r'%s: uid=\d+ from=<' % m['id'])
            bodies.add(re.sub(rb'\AReceived: .*\r\n(\t.*\r\n)*', b'',
                              d.cat(m['id'])))
        b = bodies.pop()
        check(not bodies and b.startswith(b'Subject: many\r\n') and
              b.endswith(b'\r\n\r\nx\r\n'), 'parts differ: %r %r'
              % (b, bodies))


def test_alias_maildrop_more_than_a_file_holds():
    """sendmail takes up to 1000 recipients and, with the daemon up, sends
    them max_recipients a transaction (one queue file each).  With the
    daemon down they go into one maildrop/ file; the pickup's alias
    expansion then made it 1001 and the whole message went to corrupt/
    ('too many or bad recipients'): 1000 recipients lost, sendmail had
    exited 0.  Now the rest goes into another queue file, as a client
    sends the rest after a 452."""
    rcpts = ['u%03d@z.test' % i for i in range(999)]
    _maildrop_split('aliasmd1k', 'root: a@x.test, b@x.test\n',
                    rcpts + ['root'], rcpts + ['a@x.test', 'b@x.test'], 2)


def test_alias_maildrop_envelope_past_64k():
    """The same for the envelope's 64 KB (QUEUE_HDR_MAX): 600 long
    addresses fit in the maildrop file, their aliases do not."""
    rcpts = ['%s%03d@%s.test' % ('l' * 60, i, 'd' * 35) for i in range(600)]
    big = ['%s%02d@%s.test' % ('a' * 60, i, 'b' * 40) for i in range(30)]
    _maildrop_split('aliasmd64k', 'root: %s\n' % ', '.join(big),
                    rcpts + ['root'], rcpts + big, 2)


def test_alias_maildrop_bad_after_a_part_queues_nothing():
    """A hand-made maildrop file whose aliases make it two queue files
    and whose last recipient is bad: the first part was committed before
    the bad one was seen, so the file went to corrupt/ with 1,000 of its
    recipients queued (re-injecting it by hand would send them twice),
    or, for an address the old check let by, all of it went.  Every
    address and alias is now checked before the first part: nothing is
    queued and the file is in corrupt/, as it was dropped."""
    from test_regress import _drop, _image, _qid
    d = Daemon('aliasmdbad', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, 'root: a@x.test, b@x.test, '
                                        'c@x.test\n')
    d.write_config()
    d.start()
    d.stop()
    md = os.path.join(d.queue_dir, 'maildrop')
    good = ['u%03d@z.test' % i for i in range(998)] + ['root']
    # Too long to qualify (alias.c: "address too long"), and a path
    # with parameters behind it.
    long_ = 'l' * 60 + '@' + ('d' * 62 + '.') * 7 + 'test'
    files = {}
    for last in (long_, 'z@z.test> NOTIFY=SUCCESS'):
        q = _qid()
        files[q] = _image(q, 'snd@x.test', good + [last],
                          b'Subject: split\r\n\r\nx\r\n')
        _drop(md, q, files[q])
    with d:
        deadline = time.time() + 8
        while os.listdir(md) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        q = d.mailq()
        check(q == [] and d.corrupt_files() == sorted(files) and
              os.listdir(md) == [], 'queued %r, corrupt/ %r (want %r), '
              'maildrop %r' % ([(m['sender'], len(m['recipients']))
                                for m in q], d.corrupt_files(),
                               sorted(files), os.listdir(md)))
        for q, img in files.items():
            with open(os.path.join(d.queue_dir, 'corrupt', q), 'rb') as f:
                check(f.read() == img, 'corrupt/%s changed' % q)


def test_alias_maildrop_part_fails_file_kept():
    """A maildrop file in two queue files whose second commit fails: the
    file stays for the next scan (a duplicate of the first part is
    allowed, a loss is not), and the scan after the restart queues all
    of it."""
    d = Daemon('aliasmdfail', origin='box.test')
    d.cfg['aliases'] = write_aliases(d, 'root: a@x.test, b@x.test\n')
    d.write_config()
    d.start()
    d.stop()
    rcpts = ['u%03d@z.test' % i for i in range(999)]
    p = d.cli('sendmail', *rcpts + ['root'], input=b'Subject: f\n\nx\n')
    check(p.returncode == 0, 'sendmail (down) exit %d %r'
          % (p.returncode, p.stderr))
    md = os.path.join(d.queue_dir, 'maildrop')
    name = os.listdir(md)
    # The second commit of a new queue file fails (EIO).
    d.preload_rename('fail', nth=2, old='/tmp/')
    ok = False
    try:
        d.start()
        d.wait_log(r'queue commit failed; will retry', 8)
        time.sleep(0.3)
        q = d.mailq()
        check(len(q) == 1 and len(rcpts_of(d, q[0]['id'])) == 1000 and
              os.listdir(md) == name and d.corrupt_files() == [],
              'queued %r, maildrop %r (want %r), corrupt/ %r'
              % ([len(m['recipients']) for m in q], os.listdir(md), name,
                 d.corrupt_files()))
        d.stop()
        d.env = None
        d.start()
        d.wait_queue(3, timeout=8)
        deadline = time.time() + 5
        while os.listdir(md) and time.time() < deadline:
            time.sleep(0.1)
        got = set(a for m in d.mailq() for a in rcpts_of(d, m['id']))
        check(got == set(rcpts + ['a@x.test', 'b@x.test']) and
              os.listdir(md) == [] and d.corrupt_files() == [],
              '%d recipients queued, maildrop %r'
              % (len(got), os.listdir(md)))
        d.stop()
        ok = True
    finally:
        d.cleanup(ok)


def test_alias_applies_to_a_dsn_to_a_local_sender():
    """Cron mail from root (root@origin) bounces: the DSN goes where mail
    for root goes, as Postfix's bounce does, both at start and after a
    reload (newaliases).  It went to root@origin through the smarthost,
    which on an appliance refuses it, and that DSN, a bounce, was
    dropped: the admin never heard.  A sender the aliases do not name
    still gets its DSN as before."""
    from peers import SmtpPeer, one_bounce, wait_delivery, wait_for
    from test_deliver import smarthost_daemon

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.lower().startswith('<bad@dom.test>'):
            return '550 5.1.1 <bad@dom.test>: User unknown'
        return None

    def dsn_to(sender):
        qid = d.send_message(b'Subject: cron\r\n\r\nx\r\n', sender=sender,
                             rcpts=('bad@dom.test',))
        wait_delivery(d, qid, 'bounced')
        b = one_bounce(d, qid)[0]
        wait_delivery(d, b, 'sent')
        tag = ('X-Ferry-Queue-ID: %s' % qid).encode()
        t = wait_for(lambda: [x for x in p.delivered()
                              if x.sender == '' and tag in x.body],
                     5, 'the DSN of %s at the peer' % qid)
        return t[0].accepted

    with SmtpPeer(policy=policy) as p:
        d = smarthost_daemon('aliasdsn', p.port, origin='box.test')
        d.cfg['aliases'] = write_aliases(d, 'root: admin@relay.test\n')
        d.write_config()
        with d:
            got = dsn_to('root@box.test')
            check(got == ['admin@relay.test'], 'DSN for root to %r' % got)
            got = dsn_to('other@box.test')
            check(got == ['other@box.test'], 'DSN for other to %r' % got)
            write_aliases(d, 'root: ops@relay.test, admin@relay.test\n')
            p2 = d.cli('newaliases')
            check(p2.returncode == 0, 'newaliases: exit %d' % p2.returncode)
            d.wait_log(r'reload -- version .*, configuration ')
            got = sorted(dsn_to('root@box.test'))
            check(got == ['admin@relay.test', 'ops@relay.test'],
                  'DSN for root after the reload to %r' % got)
        p.wait_idle()
