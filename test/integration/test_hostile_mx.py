"""
test_hostile_mx.py - the delivery side against a receiving server that
is broken or hostile (peers.SmtpPeer with scripted replies): a pipelined
reply out of step (a refusal in two lines that both end in "550 ", as a
server that never says "550-" sends it) defers every recipient of the
transaction, none bounced on a reply that was not theirs, and so does
one final reply too many that shows only after the failure it was read
as (DATA's slot, or the last RCPT's without PIPELINING); a reply whose
lines carry different codes is malformed (it bounced with dsn=2.1.5);
and plaintext pushed behind the 220 to STARTTLS is never read as a
reply inside TLS, nor lets a password out in clear.
"""

import time

from ferrytest import check, SLOW
from peers import (SmtpPeer, Trickle, deliveries, wait_delivery, wait_for,
                   flush)
from test_deliver import smarthost_daemon, BODY, queue_settled
from test_regress import _desync
from test_tls_client import (auth_daemon, no_mail_sent, USER,
                             PASSWORD)

R1, R2 = 'one@relay.test', 'two@relay.test'


def test_hostile_pipelined_refusal_said_twice():
    """PIPELINING, and RCPT 1 refused in two lines both ending in
    "550 " (a broken multi-line reply): the second line was taken as
    RCPT 2's reply and bounced RCPT 2, whom the server accepted; only
    DATA's slot, given RCPT 2's 250, showed the replies out of step.
    Out of step, none of the transaction's replies is trusted: both
    recipients are deferred, nothing bounces, no body is sent."""
    mode = {'broken': True}

    def policy(sess, verb, arg, txn):
        if mode['broken'] and verb == 'RCPT' and R1 in arg:
            return '550 5.1.1 <%s>: unknown\r\n550 5.1.1 see the FAQ' % R1
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('hm-pipe550', p.port) as d:
        qid = d.send_message(BODY, rcpts=(R1, R2))
        rs = wait_for(lambda: len(deliveries(d, qid)) >= 2 and
                      deliveries(d, qid), 10, 'two results; log:\n%s'
                      % d.log_tail(8))
        time.sleep(0.3 * SLOW)
        got = sorted((r.to, r.status, r.dsn[:2]) for r in
                     deliveries(d, qid))
        check(got == [(R1, 'deferred', '4.'), (R2, 'deferred', '4.')],
              'out of step, want both deferred: %r' % deliveries(d, qid))
        check(p.delivered() == [], 'the peer took a body: %r' % p.txns())
        mode['broken'] = False
        flush(d)
        wait_delivery(d, qid, 'sent', n=2)
        queue_settled(d)
        check(len(p.delivered()) == 1, 'transactions %r' % p.txns())
        return 'deferred: %r' % rs[0].text


def _extra_reply(name, rcpts, broken, ext=None):
    """While broken(verb, arg) scripts the peer, it says one final reply
    more than it was asked for, and the reply that shows it comes only
    after ferry has read the one before as a failure: no reply was
    buffered behind it, so nothing looked out of step yet.  Acted on,
    the shifted reply bounced a recipient.  Every recipient must be
    deferred as out of step (test_regress._desync)."""
    return _desync(name, broken, ext=ext, rcpts=rcpts,
                   why='reply out of step with 127.0.0.1[127.0.0.1] while ')


def test_hostile_extra_refusal_then_354():
    """PIPELINING: the RCPT taken with "250", then an unsolicited "550"
    from the same server, and its 354 to DATA a moment later.  The 550
    filled DATA's slot and bounced the recipient "in reply to DATA
    command", though the server had taken it and was waiting for the
    body."""
    def broken(verb, arg):
        if verb == 'RCPT':
            return '250 2.1.5 Ok\r\n550 5.7.1 unsolicited'
        if verb == 'DATA':
            time.sleep(0.3 * SLOW)
            return '354 End data with <CR><LF>.<CR><LF>'
        return None
    return _extra_reply('hm-extra354', (R1,), broken)


def test_hostile_extra_refusal_no_recipient_taken():
    """PIPELINING, and no recipient taken: RCPT 1 answered "450" and then
    "550", RCPT 2 "450", DATA a moment later "554".  The extra 550 was
    read as RCPT 2's reply and bounced it (the server had said 450), and
    RCPT 2's own 450 in DATA's slot looked like DATA's refusal."""
    def broken(verb, arg):
        if verb == 'RCPT':
            return '450 4.2.1 later\r\n550 5.1.1 unknown' if R1 in arg \
                else '450 4.2.1 later'
        if verb == 'DATA':
            time.sleep(0.3 * SLOW)
            return '554 5.5.1 Error: no valid recipients'
        return None
    return _extra_reply('hm-extra554', (R1, R2), broken)


def test_hostile_extra_refusal_no_pipelining():
    """Without PIPELINING: RCPT 1 answered "450" and, a moment later (so
    after RCPT 2 was sent), "550"; RCPT 2 "450".  The 550 was read as
    RCPT 2's reply and bounced it; with every recipient refused ferry
    said no more, so the 450 behind it was never seen."""
    first = '450 4.2.1 later\r\n'

    def broken(verb, arg):
        if verb == 'RCPT':
            return Trickle(first + '550 5.1.1 unknown', 0.3 * SLOW,
                           len(first)) if R1 in arg else '450 4.2.1 later'
        return None
    return _extra_reply('hm-extranp', (R1, R2), broken,
                        ext=('8BITMIME', 'SIZE 10000000',
                             'ENHANCEDSTATUSCODES'))


def test_hostile_mixed_codes_malformed():
    """A reply whose lines carry different codes (RFC 5321 section 4.2.1
    wants one): "250-2.1.5 ok" then "550 5.1.1 no" bounced the
    recipient with dsn=2.1.5, and its DSN said "Action: failed" with
    "Status: 2.1.5".  Such a reply means nothing for sure: malformed,
    deferred, nothing sent (the other way round neither), and the
    message goes out once the peer answers in one code."""
    mode = {'broken': True}
    mixed = {R1: '250-2.1.5 fine\r\n550 5.1.1 no',
             R2: '550-5.1.1 no\r\n250 2.1.5 fine'}

    def policy(sess, verb, arg, txn):
        if mode['broken'] and verb == 'RCPT':
            return mixed[arg.strip('<>')]
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('hm-mixed', p.port) as d:
        ids = [d.send_message(BODY, rcpts=(r,)) for r in (R1, R2)]
        for qid in ids:
            r = wait_delivery(d, qid, 'deferred')[0]
            check(r.dsn == '4.4.2' and r.text.startswith('malformed reply'),
                  'mixed codes: %r' % r)
        time.sleep(0.3 * SLOW)
        check([x.status for q in ids for x in deliveries(d, q)] ==
              ['deferred'] * 2, 'results %r' % [deliveries(d, q)
                                                 for q in ids])
        check(p.delivered() == [], 'the peer took a body: %r' % p.txns())
        mode['broken'] = False
        flush(d)
        for qid in ids:
            wait_delivery(d, qid, 'sent')
        queue_settled(d)
        check(len(p.delivered()) == 2, 'transactions %r' % p.txns())


def test_hostile_starttls_injection():
    """The 220 to STARTTLS with more behind it in the same write (RFC
    3207 section 5, CVE-2011-0411 from the client's side): a fake EHLO
    reply without AUTH, or one dressed as the start of a 421.  Nothing
    said in clear after the 220 may count inside TLS: either the
    connection ends before the handshake (deferred, nothing sent, no
    password anywhere) or what followed the 220 is dropped and the
    real EHLO reply inside TLS is the one read (AUTH, then the
    message).  Then a peer that behaves gets the message."""
    fakes = ['250-fake.test\r\n250 8BITMIME',
             '250 2.1.0 Ok',
             '421-fake.test\r\n250 8BITMIME']
    seen = []
    for i, fake in enumerate(fakes):
        mode = {'broken': True}

        def policy(sess, verb, arg, txn):
            if verb == 'STARTTLS' and mode['broken'] and not sess.tls:
                return '220 2.0.0 Ready to start TLS\r\n' + fake
            return None

        for level in ('may', 'encrypt'):
            mode['broken'] = True
            with SmtpPeer(tls='starttls', auth=(USER, PASSWORD),
                          policy=policy) as p, \
                    auth_daemon('hm-inj%d%s' % (i, level), p,
                                level=level) as d:
                qid = d.send_message(BODY, rcpts=(R1,))
                r = wait_for(lambda: deliveries(d, qid), 10,
                             'a result; log:\n%s' % d.log_tail(8))[0]
                seen.append('%s %d: %s' % (level, i, r.status))
                auths = p.all_auths()
                check(all(a['tls'] and a['ok'] for a in auths) and
                      not any(s.auth_in_clear for s in p.sessions),
                      '%r at %s: AUTH %r' % (fake, level, auths))
                if r.status == 'sent':
                    s = [s for s in p.sessions if s.txns][0]
                    check(s.tls and s.authenticated == USER and
                          len(p.delivered()) == 1,
                          '%r at %s: sent, but TLS %r, AUTH %r, %r' %
                          (fake, level, s.tls, s.authenticated,
                           p.txns()))
                    continue
                check(r.status == 'deferred' and r.dsn.startswith('4.'),
                      '%r at %s: %r' % (fake, level, r))
                no_mail_sent(p, '%r at %s' % (fake, level))
                mode['broken'] = False
                flush(d)
                wait_delivery(d, qid, 'sent')
                check(len(p.delivered()) == 1 and
                      p.sessions[-1].authenticated == USER,
                      'after the flush: %r' % p.txns())
    return ', '.join(seen)


def test_hostile_refusal_during_body():
    """A server that refuses the message while it still comes (a size or
    content limit met on the way: "554 5.3.4" before the dot) has said
    the message's result, as Postfix reads it: bounced with the server's
    words.  It was "unexpected reply ... while sending message body",
    deferred without them, and the same again at every retry until the
    message expired days later.  The server's refusal stands, nothing
    is marked sent, and the rest of the body is not sent after it."""
    refusal = '554 5.3.4 Message too big for this mailbox'
    line = b'x' * 98 + b'\r\n'
    body = b'Subject: big\r\n\r\n' + line * 40000	# 4 MB: ferry blocks

    def policy(sess, verb, arg, txn):
        if verb == 'DATA':
            # The 354 alone, then (the client writing its body by then,
            # the peer not reading it) the refusal.
            return Trickle('354 go ahead\r\n' + refusal, pause=0.5,
                           size=len('354 go ahead\r\n'))
        if verb == '.':
            return SmtpPeer.DROP
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('hm-bodyrefusal', p.port,
                             message_size_limit='8M') as d:
        qid = d.send_message(body, rcpts=(R1, R2))
        rs = wait_for(lambda: len(deliveries(d, qid)) >= 2 and
                      deliveries(d, qid), 20, 'two results; log:\n%s'
                      % d.log_tail(8))
        got = sorted((r.to, r.status, r.dsn) for r in rs)
        check(got == [(R1, 'bounced', '5.3.4'), (R2, 'bounced', '5.3.4')],
              'a refusal during the body, want it bounced: %r' % rs)
        check(all(refusal in r.text and 'in reply to end of DATA' in r.text
                  for r in rs), 'the server\'s words: %r' % rs)
        check(p.delivered() == [], 'the peer took it: %r' % p.txns())
        return 'bounced: %r' % rs[0].text
