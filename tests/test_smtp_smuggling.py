"""
SMTP smuggling: only CRLF . CRLF ends a message, and no bare LF or CR is
ever stored (smtpd_forbid_bare_newline, as Postfix 3.9): every variant of
a false end of data with a second envelope behind it, on StringTransport
and over a real socket into a Maildir and the outbound queue's spool.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.smtp_fixtures.fakes import Harness
from tests.test_smtp import replies, send
from tests.test_smtp_e2e import Server, inThread, rawSession
from twisted_maillab.config import ConfigError, loadString

SESSION = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n"
SMUGGLED = (
    b"MAIL FROM:<smuggled@b.example>\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nsecond\r\n"
)
# The false ends of data, and the message text each is stored as: a bare
# LF or CR is a line end; "\r\n.\n" is a dot-stuffed line (RFC 5321
# 4.5.2 removes its dot) ending in a bare LF.
VARIANTS = {
    b"\n.\n": b"one\n.\n",
    b"\n.\r\n": b"one\n.\n",
    b"\r.\r": b"one\n.\n",
    b"\r\n.\n": b"one\n\n",
    b"\r.\r\n": b"one\n.\n",
}
STORED_REST = b"MAIL FROM:<smuggled@b.example>\nRCPT TO:<utilisateur@domaineel.rt>\nDATA\nSubject: smuggled\n\nsecond\nlast\n"
BARE = "521 5.5.2 Error: bare <CR> or <LF> received"


HEADER = b"From: a@b.example\r\nDate: Wed, 2 Dec 2026 18:00:00 +0000\r\nMessage-ID: <1@b.example>\r\nSubject: s\r\n"
STORED_HEADER = HEADER.replace(b"\r\n", b"\n")


def message(falseEnd: bytes) -> bytes:
    return HEADER + b"\r\none" + falseEnd + SMUGGLED + b"last\r\n.\r\n"


def textOf(stored: bytes) -> bytes:
    """
    What follows our Received: field (the message as the client sent it).
    """
    rest = stored[stored.index(b"\n\tby ") + 1 :].split(b"\n", 1)[1]
    return rest.split(b"\n", 1)[1] if rest.startswith(b"\tfor ") else rest


class NormalTests(unittest.TestCase):
    """
    smtpd_forbid_bare_newline = normal (the default): bare LF and CR are
    stored as line ends; one message, one reply.
    """

    def deliver(self, chunks, **kw):
        h = Harness(**kw)
        proto, t = h.connect()
        for chunk in chunks:
            proto.dataReceived(chunk)
        got = replies(t)
        self.assertEqual([line[:9] for line in got if line[:1] in "2345" and line[3:4] == " "][-2:],
                         ["354 End d", "250 2.0.0"], got)
        [txn] = h.store.committed
        return textOf(txn.body)

    def test_variants(self):
        for falseEnd, stored in VARIANTS.items():
            data = SESSION + message(falseEnd)
            whole = self.deliver([data])
            self.assertEqual(whole, STORED_HEADER + b"\n" + stored + STORED_REST, falseEnd)
            self.assertNotIn(b"\r", whole)
            # Read one octet at a time: every CRLF is split across reads.
            self.assertEqual(self.deliver([data[i : i + 1] for i in range(len(data))]), whole, falseEnd)

    def test_crlfSplitAcrossReads(self):
        # A CR at the end of one read and its LF at the start of the next
        # are one CRLF, never a bare CR and a bare LF.
        got = self.deliver([SESSION + b"Subject: s\r\n\r\none\r", b"\ntwo\r", b"\n.\r", b"\n"])
        self.assertEqual(got, b"Subject: s\n\none\ntwo\n")

    def test_bareLineEndsCountAsLineEnds(self):
        # Lines ended by bare LF are held to 998 octets each, not their sum.
        lines = b"".join(b"%04d " % i + b"x" * 70 + b"\n" for i in range(200))
        got = self.deliver([SESSION + b"Subject: lf\n\n" + lines + b"end\r\n.\r\n"])
        self.assertEqual(got, b"Subject: lf\n\n" + lines + b"end\n")
        h = Harness()
        proto, t = h.connect()
        got = send(proto, t, SESSION + b"x" * 600 + b"\r" + b"y" * 999 + b"\r\n.\r\n")
        self.assertEqual(got[-1], "500 5.5.2 Error: message line longer than 1000 octets")


class RejectTests(unittest.TestCase):
    """
    smtpd_forbid_bare_newline = reject: 521 after the final dot, the
    connection closed, nothing stored and no second transaction.
    """

    def test_variants(self):
        for falseEnd in VARIANTS:
            for chunked in (False, True):
                h = Harness(bareNewline="reject")
                proto, t = h.connect()
                data = SESSION + message(falseEnd) + b"NOOP\r\n"
                if chunked:
                    for i in range(len(data)):
                        proto.dataReceived(data[i : i + 1])
                else:
                    proto.dataReceived(data)
                self.assertEqual(replies(t)[-2:], ["354 End data with <CR><LF>.<CR><LF>", BARE], falseEnd)
                self.assertTrue(t.disconnecting)
                self.assertEqual(h.store.committed, [])
                self.assertEqual([txn.state for txn in h.store.transactions], ["aborted"])

    def test_cleanMessageAccepted(self):
        h = Harness(bareNewline="reject")
        proto, t = h.connect()
        for chunk in (SESSION + b"Subject: s\r\n\r\none\r", b"\ntwo\r", b"\n.\r", b"\n"):
            proto.dataReceived(chunk)
        self.assertEqual(replies(t)[-1][:9], "250 2.0.0")
        self.assertEqual(textOf(h.store.committed[0].body), b"Subject: s\n\none\ntwo\n")

    def test_bareTakesPrecedence(self):
        # Over the size limit or with an over-long line, a bare LF still
        # closes the connection.
        for body in (b"a\nb" + b"x" * 2000 + b"\r\n", b"x" * 600 + b"\n" + b"y" * 600 + b"\r\n"):
            h = Harness(bareNewline="reject", sizeLimit=1000)
            proto, t = h.connect()
            got = send(proto, t, SESSION + body + b".\r\n")
            self.assertEqual(got[-1], BARE)
            self.assertTrue(t.disconnecting)

    def test_configKey(self):
        self.assertEqual(loadString("[smtp]\n").smtp.smtpd_forbid_bare_newline, "normal")
        self.assertEqual(
            loadString("[smtp]\nsmtpd_forbid_bare_newline = reject\n").smtp.smtpd_forbid_bare_newline,
            "reject",
        )
        # Storing bare line ends as sent is not offered.
        self.assertRaises(ConfigError, loadString, "[smtp]\nsmtpd_forbid_bare_newline = no\n")


class SocketTests(unittest.TestCase):
    """
    A raw client (smtplib would fix the line ends itself) into the real
    service: what reaches the Maildir and the outbound spool.
    """

    timeout = 120

    def start(self, extra=""):
        server = Server(self, smtpExtra=extra)
        queue = server.resources.shared("smtp").outbound
        # Keep each queued message in the spool for inspection.
        scheduled = []
        queue.schedule = lambda queueId, delay: scheduled.append(queueId)
        return server, queue, scheduled

    def transaction(self, falseEnd):
        return (
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nRCPT TO:<friend@remote.test>\r\n"
            b"DATA\r\n",
            message(falseEnd),
        )

    @defer.inlineCallbacks
    def test_normalStoresNoBareLineEnds(self):
        server, queue, scheduled = self.start()
        for falseEnd, stored in VARIANTS.items():
            command, text = self.transaction(falseEnd)
            # The text in two reads, split inside the false end's CRLF or
            # between its CR and dot.
            cut = text.index(falseEnd) + 2
            got = yield inThread(
                rawSession,
                server.smtpPort,
                [(b"EHLO c\r\n", 1), (command, 4), (text[:cut], 0), (text[cut:] + b"QUIT\r\n", 2)],
            )
            self.assertEqual(len([line for line in got if line.startswith("250 2.0.0 Ok: queued as")]), 1, got)
            self.assertEqual(got[-1], "221 2.0.0 Bye")
            queueId = scheduled[-1]
            expected = STORED_HEADER + b"\n" + stored + STORED_REST
            spooled = (queue.directory / f"{queueId}.eml").read_bytes()
            self.assertEqual(textOf(spooled), expected, falseEnd)
            [local] = [m for m in server.messages("edouard") if f" id {queueId};".encode() in m]
            self.assertEqual(textOf(local), expected, falseEnd)
            self.assertNotIn(b"\r", spooled + local)
        self.assertEqual(len(scheduled), len(VARIANTS))
        self.assertEqual(server.messages("utilisateur"), [])

    @defer.inlineCallbacks
    def test_rejectStoresNothing(self):
        server, queue, scheduled = self.start("smtpd_forbid_bare_newline = reject\n")
        for falseEnd in VARIANTS:
            command, text = self.transaction(falseEnd)
            got = yield inThread(
                rawSession, server.smtpPort, [(b"EHLO c\r\n", 1), (command, 4), (text + b"NOOP\r\n", 2)]
            )
            self.assertEqual(got[-1], BARE, falseEnd)
        self.assertEqual(scheduled, [])
        # The refused message's spool file is removed by the abort, which
        # runs in the pool after the 521 went out: wait for it (bounded).
        for _ in range(500):
            if not os.listdir(queue.directory):
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(os.listdir(queue.directory), [])
        self.assertEqual(server.messages("edouard"), [])
        self.assertEqual(server.messages("utilisateur"), [])
