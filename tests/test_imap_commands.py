"""
IMAP server wire transcripts (StringTransport, synchronous store) for the
mailbox commands and the extensions, several sessions on one folder
(RFC 3501 7.4.1 timing, IDLE pushes, listeners removed with the
connection), streamed bodies, and bad input.
"""

from __future__ import annotations

import random
import re
from twisted.trial import unittest

from twisted_maillab.imap.server import PUSH_BACKLOG
from twisted_maillab.store.testing import deliverNow

from tests.imap_dovecot import _value
from tests.imap_support import Harness

def deliver(h, message, folder="INBOX"):
    return deliverNow(h.store, h.account, message, folder)


def fetchValue(answer: bytes, name: bytes) -> bytes:
    """
    The raw value of item C{name} in a FETCH answer.

    @raise ValueError: no such item.
    """
    match = re.search(rb"[( ]" + re.escape(name) + rb" ", answer)
    if match is None:
        raise ValueError(f"no {name!r} in {answer!r}")
    return _value(answer, match.end())


class MailboxCommandTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        deliver(self.h, b"Subject: a\n\nx\n")
        self.h.login()

    def test_listDelimiter(self):
        # RFC 3501 6.3.8: LIST "" "" gives the delimiter and root.
        self.assertEqual(
            self.h.lines(b'l1 LIST "" ""'), [b'* LIST (\\Noselect) "/" ""', b"l1 OK LIST completed"]
        )

    def test_listWildcards(self):
        h = self.h
        for name in (b"Work", b"Work/2024", b"Work/2024/Q1", b"Zeta"):
            self.assertEqual(h.lines(b"c CREATE " + name), [b"c OK CREATE completed"])
        self.assertEqual(
            h.lines(b'l1 LIST "" *'),
            [
                b'* LIST (\\HasNoChildren) "/" INBOX',
                b'* LIST (\\HasChildren) "/" Work',
                b'* LIST (\\HasChildren) "/" Work/2024',
                b'* LIST (\\HasNoChildren) "/" Work/2024/Q1',
                b'* LIST (\\HasNoChildren) "/" Zeta',
                b"l1 OK LIST completed",
            ],
        )
        self.assertEqual(
            h.lines(b'l2 LIST "" %'),
            [b'* LIST (\\HasNoChildren) "/" INBOX', b'* LIST (\\HasChildren) "/" Work',
             b'* LIST (\\HasNoChildren) "/" Zeta', b"l2 OK LIST completed"],
        )
        self.assertEqual(
            h.lines(b'l3 LIST Work/ %'), [b'* LIST (\\HasChildren) "/" Work/2024', b"l3 OK LIST completed"]
        )
        self.assertEqual(h.lines(b'l4 LIST "" inbox'), [b'* LIST (\\HasNoChildren) "/" INBOX', b"l4 OK LIST completed"])

    def test_deleteRules(self):
        """
        RFC 3501 6.3.4: a folder with children is deleted and its name
        becomes \\Noselect; a \\Noselect name with children cannot be
        deleted; INBOX cannot be.
        """
        h = self.h
        h.command(b"c1 CREATE A/B")
        h.command(b"c2 CREATE A")
        self.assertEqual(h.lines(b"d1 DELETE A"), [b"d1 OK DELETE completed"])
        self.assertEqual(
            h.lines(b'l1 LIST "" A*'),
            [b'* LIST (\\Noselect \\HasChildren) "/" A', b'* LIST (\\HasNoChildren) "/" A/B', b"l1 OK LIST completed"],
        )
        self.assertEqual(h.lines(b"d2 DELETE A"), [b"d2 NO [INUSE] Mailbox has children and is not selectable"])
        self.assertEqual(h.lines(b"d3 DELETE INBOX"), [b"d3 NO [CANNOT] INBOX cannot be deleted"])
        self.assertEqual(h.lines(b"d4 DELETE Nope"), [b"d4 NO [NONEXISTENT] Mailbox does not exist"])
        self.assertEqual(h.lines(b"s1 SELECT A"), [b"s1 NO [NONEXISTENT] Mailbox does not exist"])

    def test_createExisting(self):
        h = self.h
        h.command(b"c1 CREATE Foo/")
        self.assertEqual(h.lines(b"c2 CREATE Foo"), [b"c2 NO [ALREADYEXISTS] Mailbox already exists"])
        self.assertEqual(h.lines(b"c3 CREATE inbox"), [b"c3 NO [ALREADYEXISTS] INBOX already exists"])

    def test_renameAndInbox(self):
        """
        RFC 3501 6.3.5: RENAME moves children; renaming INBOX moves its
        messages to the new name and leaves INBOX empty.
        """
        h = self.h
        h.command(b"c1 CREATE Old/Child")
        h.command(b"c2 CREATE Old")
        self.assertEqual(h.lines(b"r1 RENAME Old New"), [b"r1 OK RENAME completed"])
        self.assertEqual(
            h.lines(b'l1 LIST "" New*'),
            [b'* LIST (\\HasChildren) "/" New', b'* LIST (\\HasNoChildren) "/" New/Child', b"l1 OK LIST completed"],
        )
        self.assertEqual(h.lines(b"r2 RENAME Nope X"), [b"r2 NO [NONEXISTENT] Mailbox does not exist"])
        self.assertEqual(h.lines(b"r3 RENAME INBOX Saved"), [b"r3 OK RENAME completed"])
        self.assertEqual(
            h.lines(b"s1 STATUS Saved (MESSAGES)"), [b"* STATUS Saved (MESSAGES 1)", b"s1 OK STATUS completed"]
        )
        self.assertEqual(
            h.lines(b"s2 STATUS INBOX (MESSAGES)"), [b"* STATUS INBOX (MESSAGES 0)", b"s2 OK STATUS completed"]
        )

    def test_subscribeAndLsub(self):
        h = self.h
        h.command(b"c1 CREATE News/comp")
        self.assertEqual(h.lines(b"s1 SUBSCRIBE News/comp"), [b"s1 OK SUBSCRIBE completed"])
        h.command(b"s2 SUBSCRIBE Gone")
        self.assertEqual(
            h.lines(b'l1 LSUB "" *'),
            [b'* LSUB () "/" News/comp', b'* LSUB (\\Noselect) "/" Gone', b"l1 OK LSUB completed"],
        )
        # RFC 5258: LIST (SUBSCRIBED) lists subscribed names that do not exist as \NonExistent.
        self.assertEqual(
            h.lines(b'l2 LIST (SUBSCRIBED) "" *'),
            [b'* LIST (\\HasNoChildren \\Subscribed) "/" News/comp', b'* LIST (\\NonExistent \\Subscribed) "/" Gone',
             b"l2 OK LIST completed"],
        )
        self.assertEqual(h.lines(b"u1 UNSUBSCRIBE Gone"), [b"u1 OK UNSUBSCRIBE completed"])
        self.assertEqual(h.lines(b'l3 LSUB "" G*'), [b"l3 OK LSUB completed"])

    def test_recursiveMatchAndLsubParents(self):
        """
        RFC 5258 3.5 (the example of 5): RECURSIVEMATCH lists an
        unsubscribed parent of a subscribed name with CHILDINFO; RFC 3501
        6.3.9: LSUB with % lists it as \\Noselect.
        """
        h = self.h
        h.command(b"c1 CREATE Foo/Bar")
        h.command(b"c2 CREATE Foo")
        h.command(b"s1 SUBSCRIBE Foo/Bar")
        self.assertEqual(
            h.lines(b'l1 LIST (SUBSCRIBED RECURSIVEMATCH) "" %'),
            [b'* LIST (\\HasChildren) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))', b"l1 OK LIST completed"],
        )
        self.assertEqual(h.lines(b'l2 LSUB "" %'), [b'* LSUB (\\Noselect) "/" Foo', b"l2 OK LSUB completed"])
        self.assertEqual(h.lines(b'l3 LSUB "" *'), [b'* LSUB () "/" Foo/Bar', b"l3 OK LSUB completed"])

    def test_listStatus(self):
        """
        RFC 5819: STATUS right after each LIST line.
        """
        h = self.h
        h.command(b"c1 CREATE Box")
        reply = h.lines(b'l1 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))')
        self.assertEqual(
            reply,
            [b'* LIST (\\HasNoChildren) "/" INBOX', b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)",
             b'* LIST (\\HasNoChildren) "/" Box', b"* STATUS Box (MESSAGES 0 UNSEEN 0)", b"l1 OK LIST completed"],
        )

    def test_statusAll(self):
        self.assertEqual(
            re.sub(rb"UIDVALIDITY \d+", b"UIDVALIDITY v", self.h.lines(b"s1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE)")[0]),
            b"* STATUS INBOX (MESSAGES 1 RECENT 1 UIDNEXT 2 UIDVALIDITY v UNSEEN 1 SIZE 17)",
        )
        self.assertEqual(self.h.lines(b"s2 STATUS Nope (MESSAGES)"), [b"s2 NO [NONEXISTENT] Mailbox does not exist"])

    def test_specialUseAndChildren(self):
        """
        RFC 6154: the configured roles on LIST; LIST (SPECIAL-USE) lists
        only those; CREATE ... USE cannot override a configured role
        (more in tests.test_imap_compliance).
        """
        h = Harness(self)
        h.store.specialFolders = (("Sent", "\\Sent"), ("Trash", "\\Trash"))
        h.login()
        h.command(b"c1 CREATE Sent")
        h.command(b"c2 CREATE Trash")
        h.command(b"c3 CREATE Other")
        self.assertEqual(
            h.lines(b'l1 LIST (SPECIAL-USE) "" *'),
            [b'* LIST (\\HasNoChildren \\Sent) "/" Sent', b'* LIST (\\HasNoChildren \\Trash) "/" Trash',
             b"l1 OK LIST completed"],
        )
        self.assertEqual(
            h.lines(b"c4 CREATE Sent (USE (\\Junk))"), [b"c4 NO [USEATTR] The configuration makes Sent \\Sent"]
        )

    def test_mutf7Names(self):
        h = self.h
        self.assertEqual(h.lines(b"c1 CREATE &AMk-t&AOk-"), [b"c1 OK CREATE completed"])
        self.assertEqual(
            h.lines(b'l1 LIST "" &AMk-*'), [b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-', b"l1 OK LIST completed"]
        )

    def test_badModifiedUtf7Name(self):
        # Found by Dovecot's imaptest (atoms): any astring is a valid
        # mailbox, so a name that is not modified UTF-7 gets NO on SELECT
        # (no mailbox has it) and matches nothing in a LIST pattern.
        h = self.h
        self.assertEqual(
            h.lines(b"s1 SELECT a&'+,-b"), [b"s1 NO bad mailbox name: bad base64 in mailbox name"]
        )
        self.assertEqual(h.lines(b"""l1 LIST "" a&'+,-b%*"""), [b"l1 OK LIST completed"])
        self.assertEqual(
            h.lines(b'l2 LIST "" (a&\'+,-b INBOX)'), [b'* LIST (\\HasNoChildren) "/" INBOX', b"l2 OK LIST completed"]
        )

    def test_namespaceEnableId(self):
        h = self.h
        self.assertEqual(h.lines(b"n1 NAMESPACE"), [b'* NAMESPACE (("" "/")) NIL NIL', b"n1 OK NAMESPACE completed"])
        self.assertEqual(h.lines(b"e1 ENABLE CONDSTORE"), [b"* ENABLED", b"e1 OK ENABLE completed"])

    def test_capabilitiesAfterLogin(self):
        caps = self.h.lines(b"c1 CAPABILITY")[0].split()
        for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"UNSELECT", b"ID", b"ENABLE", b"NAMESPACE", b"CHILDREN",
                    b"SPECIAL-USE", b"LIST-EXTENDED", b"LIST-STATUS", b"LITERAL+", b"SASL-IR", b"ESEARCH",
                    b"SORT", b"APPENDLIMIT=52428800"):
            self.assertIn(cap, caps)
        for absent in (b"CONDSTORE", b"QRESYNC", b"COMPRESS=DEFLATE", b"STARTTLS", b"LOGINDISABLED"):
            self.assertNotIn(absent, caps)

    def test_multiappend(self):
        """
        RFC 3502: two messages in one APPEND; RFC 4315 APPENDUID with both.
        """
        reply = self.h.send(b"a1 APPEND INBOX {9+}\r\nSubj: 1\r\n (\\Flagged) {9}\r\n")
        self.assertEqual(reply, b"+ Ready for literal data\r\n")
        reply = self.h.send(b"Subj: 2\r\n\r\n")
        self.assertRegex(reply, rb"\Aa1 OK \[APPENDUID \d+ 2:3\] APPEND completed\r\n\Z")

    def test_nonSynchronisingTooBig(self):
        """
        A {N+} literal beyond the limit is on its way: BYE and close.
        """
        h = Harness(self, appendLimit=100)
        h.login()
        reply = h.command(b"a1 APPEND INBOX {101+}")
        self.assertTrue(reply.startswith(b"* BYE "), reply)
        self.assertTrue(h.transport.disconnecting)


class SessionsTests(unittest.TestCase):
    """
    Two sessions on one folder (RFC 3501 5.2, 7.4.1).
    """

    def setUp(self):
        self.a = Harness(self)
        for i in range(3):
            deliver(self.a, b"Subject: m%d\n\nbody\n" % i)
        self.a.select()
        self.b = Harness(self, store=self.a.store, account=self.a.account)
        self.b.select()

    def test_noExpungeDuringFetch(self):
        """
        B expunges message 2: A's FETCH by sequence number keeps numbering
        (message 2 is left out, OK [EXPUNGEISSUED] as Dovecot), its NOOP then says
        EXPUNGE; a UID FETCH may report it at once.
        """
        a, b = self.a, self.b
        b.command(b"s STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.command(b"e EXPUNGE")
        self.assertEqual(
            a.lines(b"f1 FETCH 1:3 UID"),
            [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)", b"* 2 FETCH (FLAGS (\\Deleted \\Recent))"][:2]
            + [b"f1 OK [EXPUNGEISSUED] Some messages were already expunged"],
        )
        self.assertEqual(a.lines(b"s1 SEARCH ALL"), [b"* SEARCH 1 3", b"s1 OK SEARCH completed"])
        self.assertEqual(a.lines(b"n1 NOOP"), [b"* 2 EXPUNGE", b"n1 OK NOOP completed"])
        self.assertEqual(a.lines(b"f2 FETCH 2 UID"), [b"* 2 FETCH (UID 3)", b"f2 OK FETCH completed"])

    def test_flagsAndExistsOnNoop(self):
        a, b = self.a, self.b
        b.command(b"s STORE 1 +FLAGS.SILENT (\\Answered)")
        deliver(a, b"Subject: new\n\nx\n")
        # The delivery makes the open folder look at new/ at once.
        a.store.clock.advance(0)
        self.assertEqual(
            a.lines(b"n1 NOOP"),
            [b"* 4 EXISTS", b"* 4 RECENT", b"* 1 FETCH (FLAGS (\\Answered \\Recent))", b"n1 OK NOOP completed"],
        )
        # B selected after A claimed the first three: only the new one is
        # recent for it, if it is the first to see it.
        self.assertEqual(
            b.lines(b"n2 NOOP"),
            [b"* 4 EXISTS", b"* 0 RECENT", b"n2 OK NOOP completed"],
        )

    def test_idlePushesAndOnlyDoneEnds(self):
        a, b = self.a, self.b
        self.assertEqual(a.command(b"i1 IDLE"), b"+ idling\r\n")
        b.command(b"s STORE 3 +FLAGS.SILENT (\\Seen)")
        a.clock.advance(0)
        self.assertEqual(a.take(), b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n")
        b.command(b"s STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.command(b"e EXPUNGE")
        a.clock.advance(0)
        self.assertEqual(a.take(), b"* 1 EXPUNGE\r\n")
        # Any other line does not end IDLE (RFC 2177).
        self.assertEqual(a.command(b"i2 NOOP"), b"* BAD Expected DONE\r\n")
        self.assertEqual(a.command(b"done"), b"i1 OK IDLE terminated\r\n")
        self.assertEqual(a.lines(b"n1 NOOP"), [b"n1 OK NOOP completed"])

    def test_idleWaitsForAClientThatDoesNotRead(self):
        """
        Pushes wait while more than PUSH_BACKLOG octets are unsent; the
        changes stay queued, coalesced.
        """
        a, b = self.a, self.b
        a.command(b"i1 IDLE")
        a.transport.dataBuffer = b"x" * (PUSH_BACKLOG + 1)
        b.command(b"s STORE 2 +FLAGS.SILENT (\\Seen)")
        b.command(b"s STORE 2 +FLAGS.SILENT (\\Flagged)")
        a.clock.advance(0)
        self.assertEqual(a.take(), b"")
        a.transport.dataBuffer = b""
        a.clock.advance(1)
        self.assertEqual(a.take(), b"* 2 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\n")

    def test_listenerRemovedWithConnection(self):
        a = self.a
        folder = a.proto.view.folder
        self.assertIn(a.proto.view, folder._listeners)
        view = a.proto.view
        a.proto.connectionLost(None)
        self.assertNotIn(view, folder._listeners)

    def test_implicitSeenReported(self):
        """
        RFC 3501 6.4.5: BODY[] sets \\Seen, reported in the same response
        and to the other session on its next command.
        """
        a, b = self.a, self.b
        reply = a.command(b"f1 FETCH 1 (BODY[TEXT])")
        self.assertEqual(reply, b"* 1 FETCH (BODY[TEXT] {6}\r\nbody\r\n FLAGS (\\Seen \\Recent))\r\nf1 OK FETCH completed\r\n")
        self.assertEqual(a.lines(b"f2 FETCH 1 (BODY[TEXT])")[0], b"* 1 FETCH (BODY[TEXT] {6}")
        self.assertEqual(b.lines(b"n1 NOOP"), [b"* 1 FETCH (FLAGS (\\Seen))", b"n1 OK NOOP completed"])


class BigBodyTests(unittest.TestCase):
    def test_streamedWithFlowControl(self):
        """
        A section beyond the inline size is sent in chunks, and only while
        the transport does not ask the server to pause.
        """
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 60000
        h = Harness(self)
        deliver(h, big)
        h.select()
        h.proto.dataReceived(b"f1 FETCH 1 BODY.PEEK[TEXT]\r\n")
        # The synchronous store ran it all: what matters is the content.
        reply = h.take()
        text = big.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
        self.assertEqual(reply, b"* 1 FETCH (BODY[TEXT] {%d}\r\n" % len(text) + text + b")\r\nf1 OK FETCH completed\r\n")

    def test_pausedTransportStopsReading(self):
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 60000
        h = Harness(self)
        deliver(h, big)
        h.select()
        producers = []
        original = h.transport.registerProducer

        def register(producer, streaming):
            producers.append(producer)
            original(producer, streaming)
            producer.pauseProducing()

        h.transport.registerProducer = register
        h.proto.dataReceived(b"f1 FETCH 1 BODY.PEEK[]\r\n")
        first = h.take()
        # One 64 KiB chunk at most went out after the pause.
        self.assertLess(len(first), 70 * 1024)
        self.assertNotIn(b"f1 OK", first)
        producers[0].resumeProducing()
        rest = h.take()
        body = big.replace(b"\n", b"\r\n")
        self.assertEqual(
            first + rest, b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\nf1 OK FETCH completed\r\n"
        )


class BadInputTests(unittest.TestCase):
    def test_garbageNeverKillsTheSession(self):
        """
        Random binary and truncated commands: every line is answered, no
        traceback is logged (trial fails the test on a logged error), and
        the session still works.
        """
        h = Harness(self)
        deliver(h, b"Subject: x\n\ny\n")
        h.select()
        rng = random.Random(12)
        words = [b"FETCH", b"STORE", b"SEARCH", b"UID", b"LIST", b"APPEND", b"(", b")", b"[", b"]", b"{3}", b"*",
                 b"1:*", b"BODY[", b"\"", b"\\", b"\x00", b"\xff", b"NIL", b"%", b"~{2}", b"<1.2>", b"INBOX", b"0"]
        for i in range(300):
            line = b"t%d " % i + b" ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
            h.proto._badCommands = 0
            h.command(line)
            if h.proto.engine.closed:
                self.fail(f"closed after {line!r}")
            # A literal may still be waiting: end it.
            h.command(b"")
            h.send(b"abc\r\n")
        h.take()
        self.assertTrue(h.lines(b"z1 NOOP")[-1].startswith(b"z1 OK"))


class UidCommandUpdatesTests(unittest.TestCase):
    def test_uidFetchReportsExpungesFirst(self):
        """
        RFC 3501 7.4.1: a UID FETCH may carry EXPUNGE, so the session's
        numbering is brought up to date before it answers.
        """
        a = Harness(self)
        for i in range(3):
            deliver(a, b"Subject: m%d\n\nbody\n" % i)
        a.select()
        b = Harness(self, store=a.store, account=a.account)
        b.select()
        b.command(b"s STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.command(b"e EXPUNGE")
        self.assertEqual(
            a.lines(b"f1 UID FETCH 1:* FLAGS"),
            [b"* 1 EXPUNGE", b"* 1 FETCH (UID 2 FLAGS (\\Recent))", b"* 2 FETCH (UID 3 FLAGS (\\Recent))",
             b"f1 OK FETCH completed"],
        )


class ParseBatchTests(unittest.TestCase):
    def test_budgetSplitsBatches(self):
        """
        A pool round trip stops after its output budget; the messages it
        did not reach are parsed in the next one, in order, none lost.
        """
        from twisted_maillab.imap import fetch

        calls = []
        original = fetch._prepareBatch

        def counting(openFile, entries, items):
            result = original(openFile, entries, items)
            calls.append(len(result))
            return result

        self.patch(fetch, "_prepareBatch", counting)
        self.patch(fetch, "_BATCH_BYTES", 10)
        h = Harness(self)
        for i in range(5):
            deliver(h, b"Subject: %d\n\nbody %d\n" % (i, i))
        h.select()
        reply = h.lines(b"f1 FETCH 1:5 BODY.PEEK[TEXT]")
        self.assertEqual(
            reply,
            [line for i in range(5) for line in (b"* %d FETCH (BODY[TEXT] {8}" % (i + 1), b"body %d" % i, b")")]
            + [b"f1 OK FETCH completed"],
        )
        self.assertEqual(calls, [1, 1, 1, 1, 1])


class FolderGoneTests(unittest.TestCase):
    def test_selectedFolderDeletedByAnotherSession(self):
        """
        The selected mailbox deleted under the session: it cannot go on
        (RFC 3501 7.1.5 BYE), and no traceback.
        """
        a = Harness(self)
        deliver(a, b"Subject: x\n\ny\n", "Work")
        a.login()
        a.command(b"s1 SELECT Work")
        b = Harness(self, store=a.store, account=a.account)
        b.login()
        self.assertEqual(b.lines(b"d1 DELETE Work"), [b"d1 OK DELETE completed"])
        self.assertEqual(a.lines(b"n1 NOOP"), [b"* BYE The selected mailbox was deleted or renamed"])
        self.assertTrue(a.transport.disconnecting)


class BigBinaryTests(unittest.TestCase):
    def test_bigBase64PartStreamedAsLiteral8(self):
        """
        BINARY of a base64 part bigger than the inline size: decoded,
        streamed, announced as a literal8 (RFC 3516 4.2).
        """
        import base64

        payload = bytes(range(256)) * 2000
        encoded = base64.encodebytes(payload)
        message = (
            b"Subject: bin\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
            b"Content-Type: text/plain\n\nhello\n--b\nContent-Type: application/octet-stream\n"
            b"Content-Transfer-Encoding: base64\n\n" + encoded + b"--b--\n"
        )
        h = Harness(self)
        deliver(h, message)
        h.select()
        reply = h.command(b"f1 FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])")
        self.assertEqual(
            reply,
            b"* 1 FETCH (BINARY.SIZE[2] %d BINARY[2] ~{%d}\r\n" % (len(payload), len(payload))
            + payload
            + b")\r\nf1 OK FETCH completed\r\n",
        )


class StalledFetchTests(unittest.TestCase):
    def test_clientThatStopsReadingIsLoggedOut(self):
        """
        A FETCH streaming to a client that stopped reading does not keep
        the session forever: the idle timer runs while it waits.
        """
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 60000
        h = Harness(self, idleTimeout=1800)
        deliver(h, big)
        h.select()
        original = h.transport.registerProducer

        def register(producer, streaming):
            original(producer, streaming)
            producer.pauseProducing()

        h.transport.registerProducer = register
        h.proto.dataReceived(b"f1 FETCH 1 BODY.PEEK[]\r\n")
        h.take()
        h.clock.advance(1801)
        # Closed without a BYE, which would land inside the literal.
        self.assertEqual(h.take(), b"")
        self.assertTrue(h.transport.disconnecting)


class AppendSpoolTests(unittest.TestCase):
    """
    Big APPEND literals go to a spool file as they arrive, not into the
    command assembler's memory.
    """

    def setUp(self):
        self.h = Harness(self)
        self.h.select()
        self.big = b"Subject: big\r\n\r\n" + b"spooled line\r\n" * 20000

    def test_bigLiteralSpooled(self):
        h, big = self.h, self.big
        self.assertEqual(h.send(b"a1 APPEND INBOX (\\Seen) {%d}\r\n" % len(big)), b"+ Ready for literal data\r\n")
        h.send(big[:150000])
        # Not held by the assembler.
        self.assertLess(h.proto.assembler.pending(), 1000)
        reply = h.send(big[150000:] + b"\r\n")
        self.assertRegex(reply, rb"\A\* 1 EXISTS\r\n\* \d RECENT\r\na1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        reply = h.command(b"f1 FETCH 1 (FLAGS BODY.PEEK[])")
        self.assertEqual(reply, b"* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {%d}\r\n" % len(big) + big + b")\r\nf1 OK FETCH completed\r\n")

    def test_multiappendMixed(self):
        """
        RFC 3502 with a small literal mailbox name, a big message and a
        small one (LITERAL+): each message gets its own source, in order.
        """
        h, big = self.h, self.big
        small = b"Subject: small\r\n\r\nx\r\n"
        h.send(b"a1 APPEND {5+}\r\nINBOX {%d+}\r\n" % len(big) + big + b" (\\Flagged) {%d+}\r\n" % len(small) + small + b"\r\n")
        self.assertEqual(h.lines(b"s1 SEARCH FLAGGED"), [b"* SEARCH 2", b"s1 OK SEARCH completed"])
        self.assertEqual(fetchValue(h.command(b"f1 FETCH 1 BODY.PEEK[]"), b"BODY[]"), b"{%d}\r\n" % len(big) + big)
        self.assertEqual(fetchValue(h.command(b"f2 FETCH 2 BODY.PEEK[]"), b"BODY[]"), b"{%d}\r\n" % len(small) + small)

    def test_tooBigRefusedBeforeReading(self):
        h = Harness(self, appendLimit=100000)
        h.login()
        self.assertEqual(
            h.lines(b"a1 APPEND INBOX {100001}"),
            [b"a1 NO [TOOBIG] literal of 100001 octets is beyond the limit of 100000"],
        )
        self.assertEqual(h.lines(b"a2 NOOP"), [b"a2 OK NOOP completed"])
        self.assertEqual(
            h.lines(b"a3 APPEND INBOX {100001+}"),
            [b"* BYE literal of 100001 octets is beyond the limit of 100000"],
        )
        self.assertTrue(h.transport.disconnecting)

    def test_badCommandClosesTheSpool(self):
        """
        A spooled APPEND whose command line turns out bad: BAD, and its
        spool file is closed.
        """
        h, big = self.h, self.big
        from twisted_maillab.imap import appendspool

        files = []
        originalFinish = appendspool.Spool.finish

        async def finish(spool):
            f = await originalFinish(spool)
            files.append(f)
            return f

        self.patch(appendspool.Spool, "finish", finish)
        reply = h.send(b"a1 APPEND INBOX {%d+}\r\n" % len(big) + big + b" garbage(\r\n")
        self.assertTrue(reply.startswith(b"a1 BAD "), reply)
        self.assertEqual(len(files), 1)
        self.assertTrue(files[0].closed)


class HeaderCacheTests(unittest.TestCase):
    def test_repeatedHeaderSearchReadsNoFile(self):
        """
        A SEARCH that only needs headers reads each file once; the next
        one answers from the cache.  BODY searches still read the files.
        """
        from twisted_maillab.store.folder import Folder

        h = Harness(self)
        for word in (b"alpha", b"bravo", b"alpha"):
            deliver(h, b"Subject: %s\nFrom: x@y.z\n\nbody %s\n" % (word, word))
        h.select()
        opened = []
        original = Folder.openMessageInThread

        def counting(folder, uid):
            opened.append(uid)
            return original(folder, uid)

        # SEARCH reads files through the store's public API only
        self.patch(Folder, "openMessageInThread", counting)
        self.assertEqual(h.lines(b"s1 SEARCH SUBJECT alpha"), [b"* SEARCH 1 3", b"s1 OK SEARCH completed"])
        self.assertEqual(sorted(opened), [1, 2, 3])
        del opened[:]
        self.assertEqual(h.lines(b"s2 SEARCH FROM x@y SUBJECT bravo"), [b"* SEARCH 2", b"s2 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s3 SORT (SUBJECT) UTF-8 SUBJECT a"), [b"* SORT 1 3 2", b"s3 OK SORT completed"])
        self.assertEqual(opened, [])
        self.assertEqual(h.lines(b"s4 SEARCH BODY bravo"), [b"* SEARCH 2", b"s4 OK SEARCH completed"])
        self.assertEqual(sorted(opened), [1, 2, 3])

    def test_boundedInOctets(self):
        from twisted_maillab.imap.headercache import HeaderCache

        cache = HeaderCache(limit=10)
        cache._put(("a",), 1, (6, []))
        cache._put(("a",), 2, (6, []))
        self.assertEqual(list(cache._entries), [("a", 2)])
        self.assertEqual(cache._byFolder, {("a",): {2: (6, [])}})
        self.assertEqual(cache.size, 6)
        cache._put(("b",), 1, (6, []))
        self.assertEqual(cache._byFolder, {("b",): {1: (6, [])}})

    def test_textColumnsFollowTheEntries(self):
        """
        A folder's column of decoded texts holds only messages still in
        the cache: a dropped entry takes its texts along, and a text for
        a message no longer cached is not kept.
        """
        from twisted_maillab.imap.headercache import CachedOpener, HeaderCache

        cache = HeaderCache(limit=10)
        opener = CachedOpener(cache, ("a",), None)
        key = (b"subject", False)
        cache._put(("a",), 1, (6, []))
        opener.rememberText(1, key, "lunch")
        opener.rememberText(7, key, "never cached")
        self.assertEqual(opener.textColumn(key), {1: "lunch"})
        cache._put(("a",), 2, (6, []))
        opener.rememberText(2, key, "menu")
        self.assertEqual(opener.textColumn(key), {2: "menu"})
        cache._put(("b",), 1, (6, []))
        self.assertEqual(opener.textColumn(key), {})


class ImaptestFindingsTests(unittest.TestCase):
    """
    Defects found by Dovecot's imaptest scripted tests, each as the
    transcript that showed it.
    """

    def setUp(self):
        self.h = Harness(self)

    def test_searchFromAddressWithComments(self):
        # imaptest search-addresses: FROM finds the address of
        # "<user-from (comment)@ (comment) domain.org>" (RFC 5322 3.2.2
        # comments are not part of the address).
        h = self.h
        deliver(h, b"From: <user-from (comment)@ (comment) domain.org>\nSubject: a\n\nx\n")
        deliver(h, b"From: other@domain.org\nSubject: b\n\nx\n")
        deliver(h, b"From: =?utf-8?q?R=C3=A9al?= <user-from@domain.org>\nSubject: c\n\nx\n")
        h.select()
        self.assertEqual(
            h.lines(b"s1 SEARCH FROM user-from@domain.org"), [b"* SEARCH 1 3", b"s1 OK SEARCH completed"]
        )
        self.assertEqual(h.lines(b"s2 SEARCH FROM ser-fro"), [b"* SEARCH 1 3", b"s2 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s3 SEARCH SUBJECT user-from"), [b"* SEARCH", b"s3 OK SEARCH completed"])

    def test_sortDateFallsBackToInternalDate(self):
        # imaptest sort-date: a message without Date: sorts by its
        # INTERNALDATE (RFC 5256 3), here between the dated ones.
        h = self.h
        h.login()
        for date, header in (
            (b"22-Feb-2008 23:00:00 +0200", b"Date: Fri, 22 Feb 2008 00:00:00 +0200\r\n"),
            (b"22-Feb-2008 22:00:00 +0200", b"Date: Fri, 22 Feb 2008 02:00:00 +0200\r\n"),
            (b"22-Feb-2008 01:30:23 +0200", b""),
            (b"22-Feb-2008 01:00:00 +0200", b"Date: Fri, 22 Feb 2008 01:00:00 +0200\r\n"),
        ):
            message = header + b"Subject: s\r\n\r\nx\r\n"
            reply = h.command(b'a APPEND INBOX "' + date + b'" {%d+}\r\n' % len(message) + message)
            self.assertIn(b"a OK [APPENDUID", reply)
        h.command(b"s0 SELECT INBOX")
        self.assertEqual(h.lines(b"s1 SORT (DATE) US-ASCII ALL"), [b"* SORT 1 4 3 2", b"s1 OK SORT completed"])
        self.assertEqual(
            h.lines(b"s2 SORT (REVERSE DATE) US-ASCII ALL"), [b"* SORT 2 3 4 1", b"s2 OK SORT completed"]
        )

    def test_moveIntoTheSelectedMailbox(self):
        # imaptest move: RFC 6851 3.3 allows MOVE into the selected
        # mailbox; the message gets a new UID, the old one is expunged.
        h = self.h
        deliver(h, b"Subject: a\n\nx\n")
        deliver(h, b"Subject: b\n\nx\n")
        h.select()
        h.command(b"s1 STORE 1 +FLAGS (\\Flagged $kw)")
        reply = h.command(b"m1 MOVE 1 INBOX")
        self.assertRegex(reply, rb"\A\* OK \[COPYUID \d+ 1 3\] Moved UIDs\r\n")
        self.assertIn(b"* 1 EXPUNGE\r\n", reply)
        self.assertIn(b"* 2 EXISTS\r\n", reply)
        self.assertTrue(reply.endswith(b"m1 OK MOVE completed\r\n"), reply)
        self.assertEqual(
            h.lines(b"f1 FETCH 1:* (UID FLAGS)"),
            [
                b"* 1 FETCH (UID 2 FLAGS (\\Recent))",
                # the session that has the mailbox selected when the
                # message arrives sees it as recent (RFC 3501 2.3.2)
                b"* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent $kw))",
                b"f1 OK FETCH completed",
            ],
        )

    def test_recursiveMatchChildInfoOnlyForUnlistedChildren(self):
        # imaptest listext: RECURSIVEMATCH gives a parent CHILDINFO only
        # for subscribed children the patterns do not list themselves.
        h = self.h
        h.login()
        h.command(b"c1 CREATE m/test2/test1")
        h.command(b"c2 CREATE m/test2")
        h.command(b"s1 SUBSCRIBE m/test2/test1")
        self.assertEqual(
            h.lines(b'l1 LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/test2 m/test2/test1)'),
            [b'* LIST (\\HasNoChildren \\Subscribed) "/" m/test2/test1', b"l1 OK LIST completed"],
        )
        self.assertEqual(
            h.lines(b'l2 LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/test2)'),
            [b'* LIST (\\HasChildren) "/" m/test2 ("CHILDINFO" ("SUBSCRIBED"))', b"l2 OK LIST completed"],
        )


class DeletedSubscriptionTests(unittest.TestCase):
    def test_deletedMailboxStaysSubscribed(self):
        """
        RFC 3501 6.3.6: DELETE does not remove the subscription; LIST
        (SUBSCRIBED) shows the name as \\NonExistent (imaptest listext).
        """
        h = Harness(self)
        h.login()
        self.assertEqual(h.lines(b"c1 CREATE Work")[-1], b"c1 OK CREATE completed")
        self.assertEqual(h.lines(b"s1 SUBSCRIBE Work")[-1], b"s1 OK SUBSCRIBE completed")
        self.assertEqual(h.lines(b"d1 DELETE Work")[-1], b"d1 OK DELETE completed")
        lines = h.lines(b'l1 LIST (SUBSCRIBED) "" "Work"')
        self.assertEqual(lines[-1], b"l1 OK LIST completed")
        self.assertEqual(len(lines), 2, lines)
        self.assertIn(b"\\NonExistent", lines[0])
        self.assertIn(b"\\Subscribed", lines[0])
        self.assertTrue(lines[0].endswith(b" Work"), lines[0])
        self.assertEqual(h.lines(b'l2 LSUB "" "*"')[:-1], [b'* LSUB (\\Noselect) "/" Work'])
