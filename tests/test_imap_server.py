"""
The IMAP server (L{twisted_maillab.imap.server}) over a L{StringTransport}
on a real Maildir store run synchronously: the seed's telnet session, the
not-authenticated state, and the selected-state commands, written from the
RFC 3501 examples.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.trial import unittest
from zope.interface import implementer

from twisted_maillab.imap import response as R
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.store.testing import deliverNow

from tests.imap_support import REMOTE, Harness

SEED = (
    b"Return-Path: <anne@domaineel.rt>\n"
    b"From: Anne <anne@domaineel.rt>\n"
    b"To: edouard@domaineel.rt\n"
    b"Subject: test\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
    b"Message-ID: <B27397-0100000@domaineel.rt>\n"
    b"\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\n"
)


def deliver(h, message=SEED, folder="INBOX"):
    return deliverNow(h.store, h.account, message, folder)


class SeedSessionTests(unittest.TestCase):
    """
    The seed's telnet session: C{a001 login}, C{select inbox}, C{fetch 1
    body}, C{fetch 1 body[header]}, every line of the replies checked.
    """

    def test_seedSession(self):
        h = Harness(self)
        deliver(h)
        self.assertRegex(
            h.greeting,
            rb"\A\* OK \[CAPABILITY IMAP4rev1 [^\]]*AUTH=PLAIN AUTH=LOGIN\] maillab IMAP4rev1 ready\r\n\Z",
        )
        reply = h.lines(b"a001 login edouard s3cret")
        self.assertEqual(len(reply), 1)
        self.assertRegex(reply[0], rb"^a001 OK \[CAPABILITY IMAP4rev1 .*\bIDLE\b.*\] Logged in$")

        reply = h.lines(b"a002 select inbox")
        self.assertEqual(reply[0], b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.assertEqual(reply[1], b"* 1 EXISTS")
        self.assertEqual(reply[2], b"* 1 RECENT")
        self.assertEqual(reply[3], b"* OK [UNSEEN 1] First unseen")
        self.assertRegex(reply[4], rb"^\* OK \[UIDVALIDITY \d+\] UIDs valid$")
        self.assertEqual(reply[5], b"* OK [UIDNEXT 2] Predicted next UID")
        self.assertEqual(
            reply[6], b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted"
        )
        self.assertEqual(reply[7], b"a002 OK [READ-WRITE] SELECT completed")
        self.assertEqual(len(reply), 8)

        reply = h.lines(b"a003 fetch 1 body")
        self.assertEqual(
            reply,
            [
                b'* 1 FETCH (BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 55 1))',
                b"a003 OK FETCH completed",
            ],
        )
        # BODY[HEADER] is not a PEEK: \Seen is set and reported (RFC 3501 6.4.5).
        header = SEED.split(b"\n\n")[0].replace(b"\n", b"\r\n") + b"\r\n\r\n"
        reply = h.command(b"a004 fetch 1 body[header]")
        self.assertEqual(
            reply,
            b"* 1 FETCH (BODY[HEADER] {%d}\r\n" % len(header)
            + header
            + b" FLAGS (\\Seen \\Recent))\r\na004 OK FETCH completed\r\n",
        )
        self.assertEqual(h.lines(b"a005 logout"), [b"* BYE Logging out", b"a005 OK LOGOUT completed"])
        self.assertTrue(h.transport.disconnecting)


class NotAuthenticatedTests(unittest.TestCase):
    def test_capabilityOnLoopback(self):
        """
        On loopback (plaintext_on_loopback) LOGIN and AUTH= are offered.
        """
        h = Harness(self)
        reply = h.lines(b"c1 CAPABILITY")
        self.assertIn(b"AUTH=PLAIN", reply[0])
        self.assertNotIn(b"LOGINDISABLED", reply[0])
        self.assertEqual(reply[1], b"c1 OK CAPABILITY completed")

    def test_loginDisabledOffLoopback(self):
        """
        RFC 3501 6.2.3: off loopback without TLS, LOGINDISABLED, no AUTH=,
        and LOGIN is refused.
        """
        h = Harness(self, peer=REMOTE, tlsContext=object())
        caps = h.lines(b"c1 CAPABILITY")[0]
        self.assertIn(b" LOGINDISABLED", caps)
        self.assertIn(b" STARTTLS", caps)
        self.assertNotIn(b"AUTH=", caps)
        self.assertEqual(
            h.lines(b"c2 LOGIN edouard s3cret"),
            [b"c2 NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections; use STARTTLS first"],
        )
        self.assertEqual(h.lines(b"c3 AUTHENTICATE PLAIN")[0][:20], b"c3 NO [PRIVACYREQUIR")

    def test_startTLSDiscardsPipelined(self):
        """
        RFC 3501 6.2.1: what was pipelined after STARTTLS is discarded.
        """
        h = Harness(self, peer=REMOTE, tlsContext=object())
        reply = h.send(b"t1 STARTTLS\r\nt2 LOGIN edouard s3cret\r\n")
        self.assertEqual(reply, b"t1 OK Begin TLS negotiation now\r\n")
        self.assertIsNotNone(h.transport.tlsStarted)
        caps = h.lines(b"t3 CAPABILITY")[0]
        self.assertIn(b"AUTH=PLAIN", caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertTrue(h.lines(b"t4 LOGIN edouard s3cret")[0].startswith(b"t4 OK"))

    def test_badLogin(self):
        h = Harness(self)
        self.assertEqual(h.lines(b"l1 LOGIN edouard wrong"), [b"l1 NO [AUTHENTICATIONFAILED] Authentication failed"])
        h.lines(b"l2 LOGIN edouard wrong")
        self.assertEqual(
            h.lines(b"l3 LOGIN edouard wrong"),
            [b"l3 NO [AUTHENTICATIONFAILED] Authentication failed", b"* BYE Too many failed logins"],
        )
        self.assertTrue(h.transport.disconnecting)

    def test_authenticatePlainWithInitialResponse(self):
        """
        RFC 4959 SASL-IR: AUTHENTICATE PLAIN with the response on the line.
        """
        h = Harness(self)
        reply = h.lines(b"a1 AUTHENTICATE PLAIN AGVkb3VhcmQAczNjcmV0")
        self.assertTrue(reply[0].startswith(b"a1 OK [CAPABILITY IMAP4rev1"), reply)

    def test_authenticateLoginExchange(self):
        """
        RFC 3501 6.2.2: challenges as continuation requests.
        """
        h = Harness(self)
        self.assertEqual(h.command(b"a1 AUTHENTICATE LOGIN"), b"+ VXNlcm5hbWU6\r\n")
        self.assertEqual(h.command(b"ZWRvdWFyZA=="), b"+ UGFzc3dvcmQ6\r\n")
        self.assertTrue(h.command(b"czNjcmV0").startswith(b"a1 OK"))

    def test_authenticateCancelled(self):
        h = Harness(self)
        h.command(b"a1 AUTHENTICATE PLAIN")
        self.assertEqual(h.lines(b"*"), [b"a1 BAD Authentication cancelled"])

    def test_commandsNeedLogin(self):
        h = Harness(self)
        self.assertEqual(h.lines(b"x1 SELECT INBOX"), [b"x1 BAD Log in first"])
        h.login()
        self.assertEqual(h.lines(b"x2 FETCH 1 FLAGS"), [b"x2 BAD No mailbox selected"])
        self.assertEqual(h.lines(b"x3 LOGIN a b"), [b"x3 BAD Already logged in"])

    def test_garbage(self):
        """
        Garbage and binary get BAD and the session goes on.
        """
        h = Harness(self)
        self.assertTrue(h.lines(b"\x00\xff\x01 garbage")[0].startswith(b"* BAD"))
        self.assertTrue(h.lines(b"g1 FROBNICATE")[0].startswith(b"g1 BAD"))
        self.assertTrue(h.lines(b"g2 NOOP")[0].startswith(b"g2 OK"))

    def test_lineTooLong(self):
        """
        RFC 3501 7.1.3: the BAD for an over-long command carries its tag
        (a client waits for that tag's answer); without a readable tag it
        is untagged.  The session goes on.
        """
        h = Harness(self, maxLineLength=1024)
        self.assertEqual(h.lines(b"a1 NOOP " + b"x" * 2000), [b"a1 BAD Command line too long"])
        self.assertEqual(h.lines(b"a2 NOOP"), [b"a2 OK NOOP completed"])
        self.assertEqual(h.lines(b"b" * 2000), [b"* BAD Command line too long"])
        self.assertEqual(h.lines(b"a3 NOOP"), [b"a3 OK NOOP completed"])

    def test_idAndLogout(self):
        h = Harness(self)
        self.assertEqual(
            h.lines(b'i1 ID ("name" "mutt")'),
            [b'* ID ("name" "maillab" "vendor" "twisted-maillab")', b"i1 OK ID completed"],
        )

    def test_connectionLimitPerAddress(self):
        """
        The connection beyond max_connections_per_address gets * BYE.
        """
        first = Harness(self, maxConnectionsPerAddress=1)
        second = Harness(self, factory=first.factory)
        self.assertEqual(second.greeting, b"* BYE [LIMIT] Too many connections from your address\r\n")
        self.assertTrue(second.transport.disconnecting)
        first.close()
        third = Harness(self, factory=first.factory)
        self.assertTrue(third.greeting.startswith(b"* OK"))

    def test_connectionLimitPerUser(self):
        first = Harness(self, maxConnectionsPerUser=1)
        first.login()
        second = Harness(self, factory=first.factory)
        self.assertEqual(
            second.lines(b"a1 LOGIN edouard s3cret"),
            [b"* BYE [LIMIT] Too many connections for this user",
             b"a1 NO [LIMIT] Maximum number of connections for this user reached"],
        )

    def test_loginTimeout(self):
        h = Harness(self, loginTimeout=60)
        h.clock.advance(61)
        self.assertEqual(h.take(), b"* BYE Autologout; idle for too long\r\n")

    def test_idleTimeoutAfterLogin(self):
        """
        After login the (30 minute) idle timeout replaces the login timeout.
        """
        h = Harness(self, loginTimeout=60, idleTimeout=1800)
        h.login()
        h.clock.advance(1000)
        self.assertEqual(h.take(), b"")
        h.clock.advance(801)
        self.assertEqual(h.take(), b"* BYE Autologout; idle for too long\r\n")


class SelectedTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        for i in range(3):
            deliver(self.h, b"From: a@b.c\nSubject: message %d\n\nbody %d\n" % (i + 1, i + 1))
        self.h.select()

    def test_storeAndSilent(self):
        h = self.h
        # RFC 3501 7.2.6: the new keyword is announced before a FETCH shows it.
        self.assertEqual(
            h.lines(b"s1 STORE 1:2 +FLAGS (\\Flagged $Work)"),
            [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
             b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
             b"* 1 FETCH (FLAGS (\\Flagged \\Recent $Work))", b"* 2 FETCH (FLAGS (\\Flagged \\Recent $Work))",
             b"s1 OK STORE completed"],
        )
        self.assertEqual(h.lines(b"s2 STORE 1 -FLAGS.SILENT (\\Flagged)"), [b"s2 OK STORE completed"])
        self.assertEqual(
            h.lines(b"s3 UID STORE 3 FLAGS (\\Seen)"),
            [b"* 3 FETCH (FLAGS (\\Seen \\Recent) UID 3)", b"s3 OK STORE completed"],
        )
        self.assertEqual(
            h.lines(b"s4 FETCH 1:3 FLAGS"),
            [b"* 1 FETCH (FLAGS (\\Recent $Work))", b"* 2 FETCH (FLAGS (\\Flagged \\Recent $Work))",
             b"* 3 FETCH (FLAGS (\\Seen \\Recent))", b"s4 OK FETCH completed"],
        )

    def test_badSequence(self):
        self.assertEqual(self.h.lines(b"f1 FETCH 7 FLAGS"), [b"f1 BAD Invalid message sequence number"])
        self.assertEqual(self.h.lines(b"f2 UID FETCH 7 FLAGS"), [b"f2 OK FETCH completed"])

    def test_uidFetchAddsUid(self):
        self.assertEqual(
            self.h.lines(b"f1 UID FETCH 2:* (FLAGS)"),
            [b"* 2 FETCH (UID 2 FLAGS (\\Recent))", b"* 3 FETCH (UID 3 FLAGS (\\Recent))", b"f1 OK FETCH completed"],
        )

    def test_expunge(self):
        h = self.h
        h.command(b"s1 STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(h.lines(b"e1 EXPUNGE"), [b"* 3 EXPUNGE", b"* 1 EXPUNGE", b"e1 OK EXPUNGE completed"])
        self.assertEqual(h.lines(b"f1 FETCH 1 UID"), [b"* 1 FETCH (UID 2)", b"f1 OK FETCH completed"])

    def test_uidExpunge(self):
        """
        RFC 4315 2.1: only the named \\Deleted messages go.
        """
        h = self.h
        h.command(b"s1 STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(h.lines(b"e1 UID EXPUNGE 2"), [b"* 2 EXPUNGE", b"e1 OK EXPUNGE completed"])
        self.assertEqual(h.lines(b"s2 SEARCH ALL"), [b"* SEARCH 1 2", b"s2 OK SEARCH completed"])

    def test_search(self):
        h = self.h
        self.assertEqual(h.lines(b"s1 SEARCH SUBJECT \"message 2\""), [b"* SEARCH 2", b"s1 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s2 UID SEARCH BODY \"body 3\""), [b"* SEARCH 3", b"s2 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s3 SEARCH OR 1 3 NOT 3"), [b"* SEARCH 1", b"s3 OK SEARCH completed"])
        self.assertEqual(
            h.lines(b"s4 SEARCH CHARSET KOI8-R ALL"),
            [b"s4 NO [BADCHARSET (US-ASCII UTF-8)] charset KOI8-R is not supported"],
        )

    def test_esearch(self):
        self.assertEqual(
            self.h.lines(b"s1 SEARCH RETURN (MIN COUNT) ALL"),
            [b'* ESEARCH (TAG "s1") MIN 1 COUNT 3', b"s1 OK SEARCH completed"],
        )

    def test_sort(self):
        self.assertEqual(
            self.h.lines(b"s1 SORT (REVERSE SUBJECT) UTF-8 ALL"),
            [b"* SORT 3 2 1", b"s1 OK SORT completed"],
        )

    def test_closeExpungesSilently(self):
        h = self.h
        h.command(b"s1 STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(h.lines(b"c1 CLOSE"), [b"c1 OK CLOSE completed"])
        self.assertEqual(h.lines(b"c2 FETCH 1 FLAGS"), [b"c2 BAD No mailbox selected"])
        h.command(b"s2 SELECT INBOX")
        self.assertEqual(h.lines(b"s3 SEARCH ALL"), [b"* SEARCH 1 2", b"s3 OK SEARCH completed"])

    def test_examineIsReadOnly(self):
        h = self.h
        reply = h.lines(b"x1 EXAMINE INBOX")
        self.assertEqual(reply[-1], b"x1 OK [READ-ONLY] EXAMINE completed")
        self.assertEqual(h.lines(b"x2 STORE 1 +FLAGS (\\Seen)"), [b"x2 NO [READ-ONLY] Mailbox is read-only"])
        # No implicit \Seen in a read-only mailbox.
        reply = h.command(b"x3 FETCH 1 BODY[TEXT]")
        self.assertEqual(reply, b"* 1 FETCH (BODY[TEXT] {8}\r\nbody 1\r\n)\r\nx3 OK FETCH completed\r\n")

    def test_appendAnnouncesExists(self):
        h = self.h
        reply = h.send(b"a1 APPEND INBOX {11}\r\n")
        self.assertEqual(reply, b"+ Ready for literal data\r\n")
        reply = h.send(b"Subject: x\r\n\r\n")
        self.assertRegex(reply, rb"\A\* 4 EXISTS\r\n\* 4 RECENT\r\na1 OK \[APPENDUID \d+ 4\] APPEND completed\r\n\Z")
        self.assertEqual(h.lines(b"f1 FETCH 4 FLAGS"), [b"* 4 FETCH (FLAGS (\\Recent))", b"f1 OK FETCH completed"])
        # With flags and a date (RFC 3501 6.3.11 example).
        reply = h.send(b'a2 APPEND INBOX (\\Seen $Work) " 7-Feb-1994 21:52:25 -0800" {11+}\r\nSubject: y\r\n\r\n')
        # RFC 3501 2.3.2: the session that has the mailbox selected when
        # the message arrives sees it as recent, flags or not
        self.assertRegex(reply, rb"\A\* 5 EXISTS\r\n\* 5 RECENT\r\na2 OK \[APPENDUID \d+ 5\] APPEND completed\r\n\Z")
        when = datetime(1994, 2, 8, 5, 52, 25, tzinfo=timezone.utc).timestamp()
        self.assertEqual(
            h.lines(b"f2 FETCH 5 (FLAGS INTERNALDATE)")[:3],
            [
                b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
                b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
                b"* 5 FETCH (FLAGS (\\Seen \\Recent $Work) INTERNALDATE " + R.internalDate(when) + b")",
            ],
        )
        # told once
        self.assertEqual(h.lines(b"f3 FETCH 5 FLAGS")[0], b"* 5 FETCH (FLAGS (\\Seen \\Recent $Work))")

    def test_appendTryCreateAndTooBig(self):
        h = self.h
        self.assertEqual(h.lines(b"a1 APPEND Nope {1+}\r\nx"), [b"a1 NO [TRYCREATE] Mailbox does not exist"])
        h.proto.assembler.appendLimit = 100
        # Refused before any octet is read: no continuation request.
        self.assertEqual(
            h.lines(b"a2 APPEND INBOX {101}"),
            [b"a2 NO [TOOBIG] literal of 101 octets is beyond the limit of 100"],
        )
        self.assertEqual(h.lines(b"a3 NOOP"), [b"a3 OK NOOP completed"])

    def test_copyAndMove(self):
        h = self.h
        self.assertEqual(h.lines(b"c1 COPY 1 Archive"), [b"c1 NO [TRYCREATE] Mailbox does not exist"])
        self.assertEqual(h.lines(b"c2 CREATE Archive"), [b"c2 OK CREATE completed"])
        self.assertRegex(h.command(b"c3 COPY 1:2 Archive"), rb"\Ac3 OK \[COPYUID \d+ 1:2 1:2\] COPY completed\r\n\Z")
        self.assertRegex(
            h.command(b"c4 MOVE 2 Archive"),
            rb"\A\* OK \[COPYUID \d+ 2 3\] Moved UIDs\r\n\* 2 EXPUNGE\r\nc4 OK MOVE completed\r\n\Z",
        )
        self.assertEqual(
            h.lines(b"c5 STATUS Archive (MESSAGES UIDNEXT)"),
            [b"* STATUS Archive (MESSAGES 3 UIDNEXT 4)", b"c5 OK STATUS completed"],
        )
        self.assertRegex(h.command(b"c6 COPY 1 INBOX"), rb"\A\* 3 EXISTS\r\n\* 3 RECENT\r\nc6 OK \[COPYUID \d+ 1 4\] COPY completed\r\n\Z")


class PortalTests(unittest.TestCase):
    def test_loginsCarryAddressAndProtocol(self):
        """
        The auth package's portal is asked for a per-connection view named
        "imap" (its login log line says proto=imap, which fail2ban reads).
        """
        h0 = Harness(self)
        seen = []
        portal = h0.portal

        @implementer(IMailPortal)
        class MailPortal:
            def forConnection(self, peer, protocol):
                seen.append((peer.host, protocol))
                return portal

        h0.factory.portal = MailPortal()
        h = Harness(self, factory=h0.factory)
        h.login()
        self.assertEqual(seen, [("127.0.0.1", "imap")])


class BacklogTests(unittest.TestCase):
    def test_unreadAnswersStopCommands(self):
        """
        A client that pipelines and never reads: past OUTPUT_BACKLOG unsent
        octets no further command runs until the output drained.
        """
        from twisted_maillab.imap.server import OUTPUT_BACKLOG

        h = Harness(self)
        h.transport.dataBuffer = b"x" * (OUTPUT_BACKLOG + 1)
        h.proto.dataReceived(b"n1 NOOP\r\nn2 NOOP\r\n")
        self.assertEqual(h.take(), b"n1 OK NOOP completed\r\n")
        h.clock.advance(1)
        self.assertEqual(h.take(), b"")
        h.transport.dataBuffer = b""
        h.clock.advance(0.1)
        self.assertEqual(h.take(), b"n2 OK NOOP completed\r\n")

    def test_idleTimerRunsWhileWaitingForTheClient(self):
        from twisted_maillab.imap.server import OUTPUT_BACKLOG

        h = Harness(self, loginTimeout=60)
        h.transport.dataBuffer = b"x" * (OUTPUT_BACKLOG + 1)
        h.proto.dataReceived(b"n1 NOOP\r\nn2 NOOP\r\n")
        h.take()
        h.clock.pump([1] * 61)
        self.assertTrue(h.transport.disconnecting)


class UnselectCheckTests(unittest.TestCase):
    def test_unselectKeepsDeleted(self):
        """
        RFC 3691: UNSELECT leaves the selected state without expunging;
        RFC 3501 6.4.1 CHECK answers OK.
        """
        h = Harness(self)
        deliver(h, b"Subject: a\n\nx\n")
        h.select()
        self.assertEqual(h.lines(b"c1 CHECK"), [b"c1 OK CHECK completed"])
        h.command(b"s1 STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(h.lines(b"u1 UNSELECT"), [b"u1 OK UNSELECT completed"])
        self.assertEqual(h.lines(b"u2 UNSELECT"), [b"u2 BAD No mailbox selected"])
        self.assertEqual(h.lines(b"s2 STATUS INBOX (MESSAGES)"), [b"* STATUS INBOX (MESSAGES 1)", b"s2 OK STATUS completed"])
        self.assertEqual(h.lines(b"c2 CHECK"), [b"c2 BAD No mailbox selected"])
