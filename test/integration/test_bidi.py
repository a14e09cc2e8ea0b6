"""
test_bidi.py - U+061C ARABIC LETTER MARK, the third of Unicode's bidi
marks (UAX 9 table 4, beside LRM and RLM), is treated as they are: an
SMTPUTF8 address with one is refused ("control character in address",
the session and the message go on without it), and a server's reply
with one reaches neither the log nor mailq as it came.  Both let it
through while LRM was refused and turned into '?' (addr_utf8_hidden()
missed it).
"""

from ferrytest import Daemon, check, stuff
from peers import SmtpPeer, wait_delivery, wait_for
from test_deliver import smarthost_daemon, BODY

ALM = '\u061c'


def test_bidi_alm_address_refused():
    """RCPT TO:<a ALM b@relay.test> under SMTPUTF8: 5xx with its
    enhanced code; the next recipient is taken and the message queued
    for it alone, so nothing said before or after the refusal is lost."""
    msg = b'Subject: alm\r\n\r\nbody\r\n'
    with Daemon('bidi-rcpt') as d:
        with d.session() as c:
            c.expect('MAIL FROM:<s@example.test> SMTPUTF8', 250, '2.1.0')
            c.send(('RCPT TO:<a%sb@relay.test>\r\n' % ALM).encode())
            r = c.reply()
            check(r.code // 100 == 5 and r.enh().startswith('5.') and
                  'control character in address' in r.text,
                  'RCPT with ALM: %r' % r.text)
            c.expect('RCPT TO:<ok@relay.test>', 250, '2.1.5')
            c.expect('DATA', 354)
            qid = c.expect(stuff(msg), 250, '2.0.0').qid()
            c.expect('QUIT', 221)
        q = d.mailq()
        check(len(q) == 1 and q[0]['id'] == qid and
              [x['address'] for x in q[0]['recipients']] ==
              ['ok@relay.test'], 'queue %r' % q)
        d.assert_stored(qid, msg)
        check(ALM not in d.log_text(), 'ALM in the log')
    with Daemon('bidi-from') as d:
        with d.session() as c:
            c.send(('MAIL FROM:<s%s@example.test> SMTPUTF8\r\n'
                    % ALM).encode())
            r = c.reply()
            check(r.code // 100 == 5 and 'control character in address'
                  in r.text, 'MAIL with ALM: %r' % r.text)
        d.assert_empty('after a refused sender')


def test_bidi_alm_reply_not_logged():
    """A server's refusal with ALM in it: deferred as any, each of its
    bytes '?' in the log line and in mailq, the Arabic letter beside it
    (U+061B, one code point lower) kept."""
    def policy(sess, verb, arg, txn):
        return ('450 4.2.0 busy x%sy \u061b' % ALM
                if verb == 'RCPT' else None)
    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('bidi-reply', p.port) as d:
        r = wait_delivery(d, d.send_message(BODY), 'deferred')[0]
        check('busy x??y \u061b' in r.text and ALM not in d.log_text(),
              'logged %r' % r.text)
        wait_for(lambda: d.mailq()[0]['recipients'][0]['reason'], 10,
                 'the reason in the state file')
        out = d.cli('mailq').stdout
        check(b'busy x??y \xd8\x9b' in out and ALM.encode() not in out,
              'mailq: %r' % out)
        check(p.delivered() == [], 'transactions %r' % p.txns())
