"""
test_dsn.py - the delivery status notifications ferry makes, as the
sender's MTA and MUA get them: an RFC 3464 report a MUA's parser
(python's email package) reads, sent the way RFC 5321 and RFC 6531 let
it travel.  The smarthost is a peers.SmtpPeer that refuses chosen
recipients with a 5xx, so the DSN reaches it as mail to the sender.
"""

import re

from ferrytest import check, short
from peers import SmtpPeer, one_bounce, wait_delivery, wait_for
from test_deliver import (parse_dsn, send8, smarthost_daemon, queue_settled,
                          check_dsn_rcpt, dsn_text, said, BODY)

BAD = 'bad@dom.test'
REFUSAL = '550 5.1.1 <bad@dom.test>: Recipient address rejected: User unknown'


def dsn_txns(p):
    return [t for t in p.delivered() if t.sender == '']


def bounced_dsn(d, p, qid):
    """qid's one DSN as the peer took it: its transaction."""
    wait_delivery(d, qid, 'bounced')
    b = one_bounce(d, qid)
    wait_delivery(d, b[0], 'sent')
    wait_for(lambda: dsn_txns(p), 5, 'the DSN at the peer')
    t = dsn_txns(p)
    check(len(t) == 1, 'DSN transactions %r' % t)
    return t[0]


def test_dsn_to_utf8_sender_declares_smtputf8():
    """An SMTPUTF8 message from a UTF-8 sender bounces: the DSN's RCPT
    TO names that sender, so its MAIL FROM:<> must say SMTPUTF8 (RFC 6531
    section 3.4).  A server that enforces it (Postfix's 553 5.6.7) took
    the DSN without it for a protocol error, and the bounce of the bounce
    was discarded: the sender never heard."""
    sender = 'j\u00fcrgen@example.test'

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.lower().startswith('<%s>' % BAD):
            return REFUSAL
        if verb == 'RCPT' and any(ord(ch) > 127 for ch in arg) and \
                'SMTPUTF8' not in txn.mail.upper():
            return '553 5.6.7 Must declare SMTPUTF8 to send unicode address'
        return None

    with SmtpPeer(policy=policy, ext=('PIPELINING', '8BITMIME', 'SMTPUTF8',
                                      'ENHANCEDSTATUSCODES')) as p, \
            smarthost_daemon('dsnutf8', p.port) as d:
        qid = send8(d, b'Subject: hallo\r\n\r\nbody\r\n', sender=sender,
                    rcpts=(BAD,), param=' SMTPUTF8')
        t = bounced_dsn(d, p, qid)
        check('SMTPUTF8' in t.mail.upper() and t.accepted == [sender],
              'the DSN transaction %r' % t)
        _, _, blocks, _ = parse_dsn(t.body, 'DSN to a UTF-8 sender')
        check(len(blocks) == 1, 'DSN blocks %r' % blocks)
        queue_settled(d)
        p.wait_idle()


def test_dsn_huge_header_cut_said_and_whole_lines():
    """The original's header is longer than the 64 KB a DSN returns: the
    report says so and part 3 ends at a whole line.  The scheduler read
    exactly 64 KB, so the cut was never seen: half a header line went
    back and nothing told the reader the rest was missing."""
    filler = [b'X-Filler-%05d: ' % i + b'y' * 90 for i in range(800)]
    body = b'From: a@example.test\r\nSubject: big\r\n' + \
        b'\r\n'.join(filler) + b'\r\n\r\nbody\r\n'

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.lower().startswith('<%s>' % BAD):
            return REFUSAL
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('dsnhuge', p.port) as d:
        qid = send8(d, body, rcpts=(BAD,), param='')
        t = bounced_dsn(d, p, qid)
        _, _, _, orig = parse_dsn(t.body, 'DSN of a huge header')
        text = t.body.decode('ascii', 'replace')
        check(re.search(r'longer than\s+65536 bytes', text),
              'no word of the cut header: %s' % short(t.body, 1500))
        got = orig.get_payload(decode=True)
        lines = got.replace(b'\r\n', b'\n').rstrip(b'\n').split(b'\n')
        fl = [x for x in lines if x.startswith(b'X-Filler-')]
        check(fl and len(fl) < len(filler) and fl == filler[:len(fl)],
              'returned filler lines: %d, last %r' % (len(fl), fl[-1:]))
        check(lines[-1] == fl[-1], 'part 3 ends with %r' % lines[-1:])
        queue_settled(d)
        p.wait_idle()


def test_dsn_status_expired_only_for_our_expiry():
    """Status 4.4.7 is for what the queue gave up on (queue_lifetime);
    a remote's 5xx whose words say "expired after" keeps its own code.
    It was matched anywhere in the reason, so "550 5.7.1 ... expired
    after 90 days" went back as a 4.4.7, which bounce processors read
    as a soft failure worth sending to again."""
    late = 'late@dom.test'

    def policy(sess, verb, arg, txn):
        if verb == 'RCPT' and arg.lower().startswith('<%s>' % BAD):
            return '550 5.7.1 <bad@dom.test>: account expired after 90 ' \
                'days of inactivity'
        if verb == 'RCPT' and arg.lower().startswith('<%s>' % late):
            return '451 4.3.0 <late@dom.test>: try again later'
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('dsnexpired', p.port, queue_lifetime='2s',
                             retry_min='1s', retry_max='1s') as d:
        qid = d.send_message(b'Subject: x\r\n\r\nbody\r\n',
                             rcpts=(BAD, late))
        wait_delivery(d, qid, 'expired', timeout=15)
        wait_for(lambda: len(dsn_txns(p)) >= 2, 10, 'two DSNs at the peer')
        got = {}
        for t in dsn_txns(p):
            _, _, blocks, _ = parse_dsn(t.body, 'DSN')
            for b in blocks:
                fr = re.sub(r'\s+', '', str(b['Final-Recipient']))
                got[fr.split(';', 1)[1]] = str(b['Status']).strip()
        check(got == {BAD: '5.7.1', late: '4.4.7'},
              'Status per recipient %r' % got)
        queue_settled(d)
        p.wait_idle()


def test_dsn_names_the_server_and_the_command():
    """A refusal of RCPT, DATA or the end of data bounces with Postfix's
    words: "host H[IP] said: REPLY (in reply to CMD command)" in the log
    and in the DSN's text, while the report's fields give the server as
    Remote-MTA and the bare reply as the smtp Diagnostic-Code (RFC 3464
    sections 2.3.5 and 2.3.6), and Status the reply's enhanced code, or
    X.0.0 of its class when it has none.  The log said only the reply,
    so admins grepping for "said:" and pflogsumm found nothing, and no
    DSN named the server that refused."""
    cases = {		# recipient: (verb, reply, command, status)
        'rcpt@dom.test': ('RCPT', '550 no such user here', 'RCPT TO',
                          '5.0.0'),
        'data@dom.test': ('DATA', '554 5.5.1 Error: no valid recipients',
                          'DATA', '5.5.1'),
        'dot@dom.test': ('.', '554 5.7.1 message content rejected',
                         'end of DATA', '5.7.1'),
    }

    def policy(sess, verb, arg, txn):
        for a, (v, reply, _, _) in cases.items():
            if v == verb and (arg.lower().startswith('<%s>' % a) if
                              verb == 'RCPT' else
                              txn is not None and a in txn.accepted):
                return reply
        return None

    with SmtpPeer(policy=policy) as p, \
            smarthost_daemon('dsnsaid', p.port) as d:
        for a, (_, reply, cmd, status) in cases.items():
            qid = d.send_message(BODY, rcpts=(a,))
            r = wait_delivery(d, qid, 'bounced')[0]
            want = said(reply, cmd)
            check(r.dsn == status and r.text == want,
                  'log line %r, want dsn=%s and the reason %r'
                  % (r, status, want))
            b = one_bounce(d, qid)[0]
            wait_delivery(d, b, 'sent')
            tag = ('X-Ferry-Queue-ID: %s' % qid).encode()
            t = wait_for(lambda: [x for x in dsn_txns(p) if tag in x.body],
                         5, 'the DSN of %s at the peer' % qid)
            msg, _, blocks, _ = parse_dsn(t[0].body, 'DSN for ' + a)
            check(len(blocks) == 1, 'DSN blocks %r' % blocks)
            check_dsn_rcpt(blocks[0], a, re.escape(status), 'DSN for ' + a,
                           diag_re='^smtp; %s$' % re.escape(reply),
                           mta='127.0.0.1')
            check('<%s>: %s' % (a, want) in dsn_text(msg),
                  'DSN text for %s: %s' % (a, dsn_text(msg)))
        queue_settled(d)
        p.wait_idle()
