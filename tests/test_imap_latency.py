"""
What keeps long IMAP sessions fast: a literal is acknowledged at once
(so a client's CRLF after it is not held by Nagle's algorithm), and a
repeated SEARCH over header fields reuses the decoded texts the header
cache keeps with each message.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from twisted_maillab import sendnow
from twisted_maillab.imap import server
from twisted_maillab.store.testing import deliverNow

from tests.imap_support import Harness


class LiteralAckTests(unittest.TestCase):
    def test_literalAcknowledgedBeforeTheRestOfTheLine(self):
        """
        Once a literal's octets are in, the server acknowledges them at
        once, before the rest of the command line arrives.
        """
        h = Harness(self)
        h.login()
        calls = []
        self.patch(server, "quickAck", calls.append)
        self.assertEqual(h.send(b"a1 APPEND INBOX (\\Seen) {12}\r\n"), b"+ Ready for literal data\r\n")
        self.assertEqual(calls, [])
        self.assertEqual(h.send(b"Subject: x"), b"")
        self.assertEqual(calls, [])
        self.assertEqual(h.send(b"\r\n"), b"")
        self.assertEqual(calls, [h.transport])
        reply = h.send(b"\r\n")
        self.assertRegex(reply, rb"a1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        self.assertEqual(len(calls), 1)

    def test_quickAckOnATCPConnection(self):
        """
        On a real TCP connection L{sendnow.quickAck} turns the socket's
        quick-acknowledgement mode on (Linux C{TCP_QUICKACK}).
        """
        seen = defer.Deferred()

        class Receiver(protocol.Protocol):
            def dataReceived(self, data):
                sock = self.transport.socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
                before = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)
                sendnow.quickAck(self.transport)
                after = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)
                self.transport.loseConnection()
                seen.callback((before, after))

        factory = protocol.Factory.forProtocol(Receiver)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        client.sendall(b"x")
        return seen.addCallback(self.assertEqual, (0, 1))

    def test_quickAckElsewhereDoesNothing(self):
        # a test transport, or anything that is not a TCP connection
        from twisted.internet.testing import StringTransport

        sendnow.quickAck(StringTransport())
        sendnow.quickAck(object())


class SearchHeaderTextTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        deliverNow(self.h.store, self.h.account, b"From: Zoe <zoe@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?= menu\r\n\r\nx\r\n")
        deliverNow(self.h.store, self.h.account, b"From: bob@example.org\r\nSubject: Lunch\r\n\r\ny\r\n")
        self.h.select()

    def test_repeatedSearchReusesDecodedTexts(self):
        h = self.h
        for _ in range(2):
            self.assertEqual(
                h.lines(b"s1 SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nCAF\xc3\x89 UNFLAGGED"),
                [b"* SEARCH 1", b"s1 OK SEARCH completed"],
            )
            self.assertEqual(h.lines(b"s2 SEARCH FROM zoe@EXAMPLE.org"), [b"* SEARCH 1", b"s2 OK SEARCH completed"])
            self.assertEqual(h.lines(b"s3 SEARCH OR SUBJECT lunch FROM zoe"), [b"* SEARCH 1 2", b"s3 OK SEARCH completed"])
        self.assertEqual(len(h.factory.headers._entries), 2)
        entries = [cached.headerTexts for _, cached in h.factory.headers._entries.values()]
        self.assertEqual(
            sorted(entry[(b"subject", False)] for entry in entries), ["café menu", "lunch"]
        )
        self.assertEqual(
            sorted(entry[(b"from", True)] for entry in entries),
            ["bob@example.org\0bob@example.org", "zoe <zoe@example.org>\0zoe <zoe@example.org>"],
        )


class FetchOpensInPoolTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        for i in range(3):
            deliverNow(self.h.store, self.h.account, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        self.h.select()
        self.folder = self.h.proto.view.folder

    def test_fileRemovedByAnotherProgram(self):
        """
        A message file another program removed is left out of the FETCH
        (RFC 5530 EXPUNGEISSUED), and the folder refreshes soon after,
        listing again: the session then hears of the expunge.
        """
        message = self.folder.message(2)
        os.unlink(self.h.account.maildir / message.subdir / message.filename)
        self.assertEqual(
            self.h.lines(b"f1 FETCH 1:3 BODY.PEEK[TEXT]"),
            [b"* 1 FETCH (BODY[TEXT] {8}", b"body 0", b")", b"* 3 FETCH (BODY[TEXT] {8}", b"body 2", b")",
             b"f1 OK [EXPUNGEISSUED] Some messages were already expunged"],
        )
        self.h.store.clock.advance(1)
        self.assertEqual(self.h.lines(b"n1 NOOP"), [b"* 2 EXPUNGE", b"n1 OK NOOP completed"])

    def test_fileRenamedByAnotherProgram(self):
        # a flag change by another program: found under its new name
        message = self.folder.message(1)
        cur = self.h.account.maildir / "cur"
        os.rename(self.h.account.maildir / message.subdir / message.filename, cur / (message.base + ":2,F"))
        self.assertEqual(
            self.h.lines(b"f1 FETCH 1 (BODY.PEEK[TEXT])"),
            [b"* 1 FETCH (BODY[TEXT] {8}", b"body 0", b")", b"f1 OK FETCH completed"],
        )
        self.h.store.clock.advance(1)
        self.assertEqual(self.h.lines(b"n1 NOOP"), [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))", b"n1 OK NOOP completed"])


class OneWritePerAnswerTests(unittest.TestCase):
    def setUp(self):
        self.a = Harness(self)
        for i in range(3):
            deliverNow(self.a.store, self.a.account, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        self.a.select()
        self.b = Harness(self, store=self.a.store, account=self.a.account)
        self.b.select()
        self.writes = []
        original = self.a.proto.engine.write

        def write(data):
            self.writes.append(data)
            original(data)

        self.a.proto.engine.write = write

    def test_storeAndSearchAnswers(self):
        """
        A STORE's or a SEARCH's own responses, the updates another session
        caused and the tagged OK leave in one write (one C{send}).
        """
        self.assertEqual(self.b.lines(b"b1 STORE 2 +FLAGS (\\Seen)")[-1], b"b1 OK STORE completed")
        self.assertEqual(
            self.a.lines(b"s1 STORE 1 +FLAGS (\\Flagged)"),
            [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))", b"* 2 FETCH (FLAGS (\\Seen \\Recent))", b"s1 OK STORE completed"],
        )
        self.assertEqual(len(self.writes), 1)
        self.assertEqual(self.b.lines(b"b2 STORE 3 +FLAGS (\\Seen)")[-1], b"b2 OK STORE completed")
        self.assertEqual(
            self.a.lines(b"s2 SEARCH SEEN"),
            [b"* SEARCH 2 3", b"* 3 FETCH (FLAGS (\\Seen \\Recent))", b"s2 OK SEARCH completed"],
        )
        self.assertEqual(len(self.writes), 2)


class SearchIndexDataTests(unittest.TestCase):
    def test_datesSizesAndRecent(self):
        """
        What SEARCH reads from the index on the reactor thread (flags,
        \\Recent, internal dates, sizes) is what the program sees where it
        runs, in the pool.
        """
        h = Harness(self)
        deliverNow(h.store, h.account, b"Subject: new\r\n\r\n" + b"x" * 500 + b"\r\n")
        h.select()
        reply = h.send(b'a1 APPEND INBOX (\\Seen) "01-Jan-2020 00:00:00 +0000" {20+}\r\nSubject: old\r\n\r\nyy\r\n\r\n')
        self.assertIn(b"a1 OK", reply)
        self.assertEqual(h.lines(b"s1 SEARCH BEFORE 1-Jan-2021"), [b"* SEARCH 2", b"s1 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s2 SEARCH SINCE 1-Jan-2021 RECENT"), [b"* SEARCH 1", b"s2 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s3 SEARCH LARGER 100"), [b"* SEARCH 1", b"s3 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s4 SEARCH SEEN SUBJECT old"), [b"* SEARCH 2", b"s4 OK SEARCH completed"])
        self.assertEqual(h.lines(b"s5 SORT (ARRIVAL) US-ASCII ALL"), [b"* SORT 2 1", b"s5 OK SORT completed"])
