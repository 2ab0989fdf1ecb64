"""
POP3 protocol unit tests: wire transcripts over L{StringTransport} with an
in-memory maildrop and portal (twisted_maillab.pop3.testing).
"""

from __future__ import annotations

import base64
import random

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from zope.interface import implementer

from twisted_maillab.auth.pool import AuthenticationUnavailable
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.pop3.protocol import (
    MAX_BAD_COMMANDS,
    MessageEncoder,
    POP3Factory,
    SessionLocks,
    _MessageStreamer,
)
from twisted_maillab.pop3.testing import MemoryMaildrop, MemoryReader, crlfSize, memoryPortal
from twisted_maillab.store.errors import MessageVanished, ServerBug

LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)
REMOTE = IPv4Address("TCP", "203.0.113.9", 40000)

MSG1 = b"From: a@example.org\nSubject: one\n\nline 1\n.dot line\n..two dots\nlast\n"
MSG2 = b".starts with a dot\r\nSubject: two\r\n\r\nbody\r\n"
MSG3 = b"Subject: three\n\nno final newline"


class TLSStringTransport(StringTransport):
    """
    StringTransport that records C{startTLS}.
    """

    tlsStarted = None

    def startTLS(self, context):
        self.tlsStarted = context


def reference(message: bytes) -> bytes:
    """
    The POP3 encoding of a whole message, line by line (the slow, obvious
    way) to compare the streaming encoder against.
    """
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)


class Harness:
    def __init__(self, testCase, peer=LOOPBACK, tlsContext=None, implicitTLS=False, maildrop=None,
                 portal=None, locks=None, clock=None, maxLineLength=2048):
        self.clock = clock or task.Clock()
        self.maildrop = maildrop or MemoryMaildrop("edouard", [MSG1, MSG2, MSG3])
        self.portal = portal or memoryPortal({b"edouard": (b"s3cret", self.maildrop)})
        self.factory = POP3Factory(
            self.portal,
            clock=self.clock,
            tlsContext=tlsContext,
            implicitTLS=implicitTLS,
            locks=locks,
            maxLineLength=maxLineLength,
        )
        self.transport = TLSStringTransport(peerAddress=peer)
        self.proto = self.factory.buildProtocol(peer)
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: bytes) -> bytes:
        return self.send(line + b"\r\n")

    def login(self):
        self.cmd(b"USER edouard")
        return self.cmd(b"PASS s3cret")

    def drop(self):
        self.transport.loseConnection()
        self.proto.connectionLost(None)


class GreetingAndCapabilities(unittest.TestCase):
    def test_greeting(self):
        h = Harness(self)
        self.assertTrue(h.greeting.startswith(b"+OK "))
        self.assertTrue(h.greeting.endswith(b"\r\n"))
        # No APOP timestamp: APOP is not offered (RFC 1939 7).
        self.assertNotIn(b"<", h.greeting)

    def test_tcpNoDelay(self):
        class NoDelayTransport(TLSStringTransport):
            noDelay = None

            def setTcpNoDelay(self, enabled):
                self.noDelay = enabled

        factory = POP3Factory(memoryPortal({}), clock=task.Clock())
        transport = NoDelayTransport(peerAddress=LOOPBACK)
        factory.buildProtocol(LOOPBACK).makeConnection(transport)
        self.assertIs(transport.noDelay, True)

    def test_capaLoopbackWithTLSAvailable(self):
        h = Harness(self, tlsContext=object())
        self.assertEqual(
            h.cmd(b"CAPA"),
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            b"PIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n",
        )

    def test_capaHasNoJokesOrPipeline(self):
        caps = Harness(self, tlsContext=object()).cmd(b"CAPA").split(b"\r\n")
        for bad in (b"PIPELINE", b"CELERITY", b"AUSPEX", b"POTENCE"):
            self.assertNotIn(bad, caps)

    def test_capaRemoteWithoutTLS(self):
        # RFC 2595 2.2: no plaintext mechanism offered in the clear.
        h = Harness(self, peer=REMOTE, tlsContext=object())
        self.assertEqual(
            h.cmd(b"CAPA"),
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            b"PIPELINING\r\nSTLS\r\n.\r\n",
        )

    def test_capaWithoutCertificateHasNoSTLS(self):
        h = Harness(self, peer=REMOTE)
        self.assertNotIn(b"STLS", h.cmd(b"CAPA"))
        self.assertEqual(h.cmd(b"STLS"), b"-ERR STLS is not available.\r\n")

    def test_capaImplicitTLS(self):
        h = Harness(self, peer=REMOTE, tlsContext=object(), implicitTLS=True)
        caps = h.cmd(b"CAPA")
        self.assertIn(b"\r\nUSER\r\nSASL PLAIN LOGIN\r\n", caps)
        self.assertNotIn(b"STLS", caps)

    def test_capaIPv6Loopback(self):
        h = Harness(self, peer=IPv6Address("TCP", "::1", 4000))
        self.assertIn(b"\r\nUSER\r\n", h.cmd(b"CAPA"))


class STLSTests(unittest.TestCase):
    def test_userBeforeSTLSRefused(self):
        h = Harness(self, peer=REMOTE, tlsContext=object())
        reply = h.cmd(b"USER edouard")
        self.assertTrue(reply.startswith(b"-ERR [AUTH] "), reply)
        self.assertIn(b"use STLS", reply)
        reply = h.cmd(b"AUTH PLAIN " + base64.b64encode(b"\0edouard\0s3cret"))
        self.assertTrue(reply.startswith(b"-ERR [AUTH] "), reply)
        self.assertIn(b"use STLS", reply)
        self.assertEqual(h.maildrop.opened, 0)

    def test_stlsThenLogin(self):
        context = object()
        h = Harness(self, peer=REMOTE, tlsContext=context)
        self.assertEqual(h.cmd(b"STLS"), b"+OK Begin TLS negotiation now.\r\n")
        self.assertIs(h.transport.tlsStarted, context)
        caps = h.cmd(b"CAPA")
        self.assertNotIn(b"STLS", caps)
        self.assertIn(b"\r\nUSER\r\n", caps)
        self.assertTrue(h.login().startswith(b"+OK Logged in"))
        self.assertEqual(h.cmd(b"STLS"), b"-ERR Command not valid in this state.\r\n")

    def test_stlsTwice(self):
        h = Harness(self, peer=REMOTE, tlsContext=object())
        h.cmd(b"STLS")
        self.assertEqual(h.cmd(b"STLS"), b"-ERR TLS is already active.\r\n")

    def test_pipelinedCommandsAfterSTLSDiscarded(self):
        # Commands pipelined after STLS in the same packet were sent in the
        # clear (injectable): they must not run after the handshake.
        h = Harness(self, peer=LOOPBACK, tlsContext=object())
        reply = h.send(b"STLS\r\nUSER edouard\r\nPASS s3cret\r\nSTAT\r\n")
        self.assertEqual(reply, b"+OK Begin TLS negotiation now.\r\n")
        self.assertEqual(h.maildrop.opened, 0)
        self.assertEqual(h.cmd(b"PASS s3cret"), b"-ERR USER first.\r\n")

    def test_userForgottenAtSTLS(self):
        h = Harness(self, peer=LOOPBACK, tlsContext=object())
        h.cmd(b"USER edouard")
        h.cmd(b"STLS")
        self.assertEqual(h.cmd(b"PASS s3cret"), b"-ERR USER first.\r\n")


class LoginTests(unittest.TestCase):
    def test_userPass(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"USER edouard"), b"+OK\r\n")
        reply = h.cmd(b"PASS s3cret")
        self.assertEqual(reply, b"+OK Logged in, 3 messages (%d octets).\r\n"
                         % sum(crlfSize(m) for m in (MSG1, MSG2, MSG3)))
        self.assertEqual(h.proto.state, "TRANSACTION")

    def test_passWithSpaces(self):
        maildrop = MemoryMaildrop("x", [MSG1])
        h = Harness(self, maildrop=maildrop, portal=memoryPortal({b"x": (b"a b c", maildrop)}))
        h.cmd(b"USER x")
        self.assertTrue(h.cmd(b"PASS a b c").startswith(b"+OK"))

    def test_wrongPassword(self):
        h = Harness(self)
        h.cmd(b"USER edouard")
        self.assertEqual(h.cmd(b"PASS nope"), b"-ERR [AUTH] Authentication failed.\r\n")
        self.assertEqual(h.proto.state, "AUTHORIZATION")
        self.assertFalse(h.transport.disconnecting)
        # RFC 1939: the client may try again.
        self.assertTrue(h.login().startswith(b"+OK"))

    def test_tooManyFailuresClose(self):
        h = Harness(self)
        for _ in range(3):
            h.cmd(b"USER edouard")
            h.cmd(b"PASS nope")
        self.assertTrue(h.transport.disconnecting)

    def test_passWithoutUser(self):
        self.assertEqual(Harness(self).cmd(b"PASS x"), b"-ERR USER first.\r\n")

    def test_authPlainInitialResponse(self):
        h = Harness(self)
        reply = h.cmd(b"AUTH PLAIN " + base64.b64encode(b"\0edouard\0s3cret"))
        self.assertTrue(reply.startswith(b"+OK Logged in"), reply)

    def test_authPlainChallenge(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"AUTH PLAIN"), b"+ \r\n")
        reply = h.cmd(base64.b64encode(b"\0edouard\0s3cret"))
        self.assertTrue(reply.startswith(b"+OK Logged in"), reply)

    def test_authPlainWrong(self):
        h = Harness(self)
        reply = h.cmd(b"auth plain " + base64.b64encode(b"\0edouard\0bad"))
        self.assertEqual(reply, b"-ERR [AUTH] Authentication failed.\r\n")

    def test_authLogin(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"AUTH LOGIN"), b"+ " + base64.b64encode(b"Username:") + b"\r\n")
        self.assertEqual(h.cmd(base64.b64encode(b"edouard")), b"+ " + base64.b64encode(b"Password:") + b"\r\n")
        self.assertTrue(h.cmd(base64.b64encode(b"s3cret")).startswith(b"+OK Logged in"))

    def test_authLoginInitialResponse(self):
        h = Harness(self)
        reply = h.cmd(b"AUTH LOGIN " + base64.b64encode(b"edouard"))
        self.assertEqual(reply, b"+ " + base64.b64encode(b"Password:") + b"\r\n")
        self.assertTrue(h.cmd(base64.b64encode(b"s3cret")).startswith(b"+OK Logged in"))

    def test_authCancel(self):
        h = Harness(self)
        h.cmd(b"AUTH PLAIN")
        self.assertEqual(h.cmd(b"*"), b"-ERR Authentication aborted.\r\n")
        self.assertEqual(h.cmd(b"NOOP"), b"+OK\r\n")

    def test_authBadBase64(self):
        h = Harness(self)
        h.cmd(b"AUTH PLAIN")
        self.assertEqual(h.cmd(b"!!!notbase64"), b"-ERR Invalid base64 data in continued response.\r\n")
        self.assertEqual(h.cmd(b"NOOP"), b"+OK\r\n")

    def test_authUnknownMechanism(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"AUTH CRAM-MD5"), b"-ERR Unsupported authentication mechanism.\r\n")

    def test_bareAuthListsMechanisms(self):
        self.assertEqual(Harness(self).cmd(b"AUTH"), b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")

    def test_apopRefusedWithoutDrop(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"APOP edouard 0123456789abcdef"), b"-ERR APOP is not supported.\r\n")
        self.assertFalse(h.transport.disconnecting)

    def test_authenticationUnavailable(self):
        class Busy:
            def login(self, credentials, mind, *interfaces):
                return defer.fail(AuthenticationUnavailable("queue full"))

        h = Harness(self, portal=Busy())
        h.cmd(b"USER edouard")
        self.assertTrue(h.cmd(b"PASS s3cret").startswith(b"-ERR [SYS/TEMP] "))

    def test_portalGetsAddressAndProtocol(self):
        seen = []
        inner = memoryPortal({b"edouard": (b"s3cret", MemoryMaildrop("e", [MSG1]))})

        @implementer(IMailPortal)
        class MailPortalLike:
            def forConnection(self, peer, protocol):
                seen.append((peer, protocol))
                return inner

            def loginFrom(self, credentials, peer, protocol, mind, *interfaces):
                raise AssertionError("the POP3 server logs in through forConnection")

        h = Harness(self, portal=MailPortalLike())
        self.assertTrue(h.login().startswith(b"+OK"))
        self.assertEqual(seen, [(LOOPBACK, "pop3")])

    def test_badSnapshotAnswered(self):
        # An exception inside a Deferred callback still gets a reply, in
        # order, the lock is released, and pipelined commands go on.
        locks = SessionLocks()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        maildrop.open = lambda: defer.succeed([object()])
        h = Harness(self, maildrop=maildrop, locks=locks)
        reply = h.send(b"USER edouard\r\nPASS s3cret\r\nNOOP\r\n")
        self.assertEqual(reply, b"+OK\r\n-ERR [SYS/TEMP] Cannot open the mailbox.\r\n+OK\r\n")
        self.assertFalse(h.transport.disconnecting)
        self.assertNotIn(maildrop.lockKey, locks)
        self.assertEqual(h.proto.state, "AUTHORIZATION")
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    def test_asynchronousBugAnswered(self):
        class Odd:
            """An avatar without lockKey: a bug in some realm."""

        class OddPortal:
            def login(self, credentials, mind, *interfaces):
                return defer.succeed((interfaces[0], Odd(), lambda: None))

        h = Harness(self, portal=OddPortal())
        reply = h.send(b"USER edouard\r\nPASS s3cret\r\nNOOP\r\n")
        self.assertEqual(reply, b"+OK\r\n-ERR [SYS/TEMP] Internal server error.\r\n+OK\r\n")
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    def test_readerRaisingAtOnce(self):
        h = Harness(self)
        h.login()

        class Raising(MemoryReader):
            def read(self, size):
                raise OSError("EIO")

        h.proto.maildrop.openMessage = lambda index: defer.succeed(Raising(MSG1))
        reply = h.send(b"RETR 1\r\nNOOP\r\n")
        self.assertEqual(reply, b"-ERR [SYS/TEMP] Cannot read the message.\r\n+OK\r\n")
        self.assertIsNone(h.transport.producer)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_openFailureReleasesLock(self):
        locks = SessionLocks()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        maildrop.failOpen = ServerBug("disk on fire")
        h = Harness(self, maildrop=maildrop, locks=locks)
        self.assertEqual(h.login(), b"-ERR [SYS/TEMP] Cannot open the mailbox.\r\n")
        self.assertNotIn(maildrop.lockKey, locks)
        self.assertEqual(maildrop.loggedOut, 1)
        self.assertEqual(len(self.flushLoggedErrors(ServerBug)), 1)


class InUseTests(unittest.TestCase):
    def test_secondSessionRefused(self):
        locks = SessionLocks()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        first = Harness(self, maildrop=maildrop, locks=locks)
        second = Harness(self, maildrop=maildrop, locks=locks)
        self.assertTrue(first.login().startswith(b"+OK"))
        self.assertEqual(second.login(), b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")
        self.assertEqual(second.proto.state, "AUTHORIZATION")
        # released when the first connection drops
        first.drop()
        self.assertTrue(second.login().startswith(b"+OK"))

    def test_releasedAfterQuit(self):
        locks = SessionLocks()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        first = Harness(self, maildrop=maildrop, locks=locks)
        first.login()
        first.cmd(b"QUIT")
        self.assertNotIn(maildrop.lockKey, locks)

    def test_otherMailboxNotBlocked(self):
        locks = SessionLocks()
        a = MemoryMaildrop("a", [MSG1])
        b = MemoryMaildrop("b", [MSG2])
        portal = memoryPortal({b"a": (b"pa", a), b"b": (b"pb", b)})
        h1 = Harness(self, maildrop=a, portal=portal, locks=locks)
        h2 = Harness(self, maildrop=b, portal=portal, locks=locks)
        h1.cmd(b"USER a")
        self.assertTrue(h1.cmd(b"PASS pa").startswith(b"+OK"))
        h2.cmd(b"USER b")
        self.assertTrue(h2.cmd(b"PASS pb").startswith(b"+OK"))


class TransactionTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        self.h.login()
        self.sizes = [crlfSize(m) for m in (MSG1, MSG2, MSG3)]

    def test_stat(self):
        self.assertEqual(self.h.cmd(b"STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))

    def test_deletedNotCounted(self):
        h = self.h
        self.assertEqual(h.cmd(b"DELE 2"), b"+OK Marked to be deleted.\r\n")
        self.assertEqual(h.cmd(b"STAT"), b"+OK 2 %d\r\n" % (self.sizes[0] + self.sizes[2]))
        self.assertEqual(
            h.cmd(b"LIST"),
            b"+OK 2 messages (%d octets)\r\n1 %d\r\n3 %d\r\n.\r\n"
            % (self.sizes[0] + self.sizes[2], self.sizes[0], self.sizes[2]),
        )
        self.assertEqual(h.cmd(b"UIDL"), b"+OK\r\n1 uid1\r\n3 uid3\r\n.\r\n")
        self.assertEqual(h.cmd(b"LIST 2"), b"-ERR Message 2 is deleted.\r\n")
        self.assertEqual(h.cmd(b"UIDL 2"), b"-ERR Message 2 is deleted.\r\n")
        self.assertEqual(h.cmd(b"RETR 2"), b"-ERR Message 2 is deleted.\r\n")

    def test_listAndUidlOne(self):
        self.assertEqual(self.h.cmd(b"LIST 3"), b"+OK 3 %d\r\n" % self.sizes[2])
        self.assertEqual(self.h.cmd(b"UIDL 1"), b"+OK 1 uid1\r\n")

    def test_badArgumentsKeepConnection(self):
        # Twisted's POP3 drops the connection on these (survey 3.1).
        h = self.h
        self.assertEqual(h.cmd(b"DELE abc"), b"-ERR Invalid message number.\r\n")
        h.cmd(b"DELE 1")
        self.assertEqual(h.cmd(b"DELE 1"), b"-ERR Message 1 is deleted.\r\n")
        self.assertEqual(h.cmd(b"RETR 0"), b"-ERR No such message.\r\n")
        self.assertEqual(h.cmd(b"RETR 4"), b"-ERR No such message.\r\n")
        self.assertEqual(h.cmd(b"LIST -1"), b"-ERR Invalid message number.\r\n")
        self.assertEqual(h.cmd(b"TOP 1"), b"-ERR Usage: TOP <message> <lines>.\r\n")
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(h.cmd(b"NOOP"), b"+OK\r\n")

    def test_rset(self):
        h = self.h
        h.cmd(b"DELE 1")
        h.cmd(b"DELE 3")
        self.assertEqual(h.cmd(b"RSET"), b"+OK 3 messages (%d octets)\r\n" % sum(self.sizes))
        self.assertEqual(h.cmd(b"STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))
        h.cmd(b"QUIT")
        self.assertEqual(h.maildrop.committed, (frozenset(), frozenset()))

    def test_quitDeletes(self):
        h = self.h
        h.cmd(b"DELE 1")
        h.cmd(b"RETR 2")
        self.assertIsNone(h.maildrop.committed)
        self.assertEqual(h.cmd(b"QUIT"), b"+OK Logging out, 1 messages deleted.\r\n")
        self.assertEqual(h.maildrop.committed, (frozenset({0}), frozenset({1})))
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.maildrop.loggedOut, 1)

    def test_dropDeletesNothing(self):
        h = self.h
        h.cmd(b"DELE 1")
        h.drop()
        self.assertIsNone(h.maildrop.committed)
        self.assertEqual(h.maildrop.loggedOut, 1)

    def test_timeoutDeletesNothing(self):
        h = self.h
        h.cmd(b"DELE 1")
        h.clock.advance(599)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(1)
        self.assertEqual(h.take(), b"-ERR [SYS/PERM] Disconnected for inactivity.\r\n")
        self.assertTrue(h.transport.disconnecting)
        h.proto.connectionLost(None)
        self.assertIsNone(h.maildrop.committed)

    def test_activityResetsTimeout(self):
        h = self.h
        h.clock.advance(500)
        h.cmd(b"NOOP")
        h.clock.advance(500)
        self.assertFalse(h.transport.disconnecting)

    def test_commitFailure(self):
        h = self.h
        h.maildrop.failCommit = ServerBug("read-only")
        h.cmd(b"DELE 1")
        self.assertEqual(h.cmd(b"QUIT"), b"-ERR [SYS/TEMP] Some deleted messages not removed.\r\n")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ServerBug)), 1)

    def test_authorizationCommandsRefused(self):
        self.assertEqual(self.h.cmd(b"USER x"), b"-ERR Command not valid in this state.\r\n")

    def test_transactionCommandBeforeLogin(self):
        h = Harness(self)
        self.assertEqual(h.cmd(b"STAT"), b"-ERR Command not valid in this state.\r\n")
        self.assertEqual(h.cmd(b"XYZZY"), b"-ERR Unknown command.\r\n")

    def test_tooManyBadCommands(self):
        h = self.h
        for _ in range(MAX_BAD_COMMANDS - 1):
            h.cmd(b"XYZZY")
        self.assertFalse(h.transport.disconnecting)
        h.cmd(b"XYZZY")
        self.assertTrue(h.transport.disconnecting)

    def test_retr(self):
        h = self.h
        self.assertEqual(
            h.cmd(b"RETR 1"),
            b"+OK %d octets\r\n" % self.sizes[0]
            + b"From: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n..dot line\r\n"
            b"...two dots\r\nlast\r\n.\r\n",
        )
        self.assertEqual(h.maildrop.retrievedIndexes, [0])
        self.assertTrue(h.maildrop.readers[0].closed)

    def test_retrCRLFAndFirstLineDot(self):
        self.assertEqual(
            self.h.cmd(b"RETR 2"),
            b"+OK %d octets\r\n..starts with a dot\r\nSubject: two\r\n\r\nbody\r\n.\r\n" % self.sizes[1],
        )

    def test_retrNoFinalNewline(self):
        reply = self.h.cmd(b"RETR 3")
        self.assertTrue(reply.endswith(b"\r\nno final newline\r\n.\r\n"), reply)
        body = reply.split(b"\r\n", 1)[1][: -len(b".\r\n")]
        self.assertEqual(len(body), self.sizes[2])

    def test_top(self):
        h = self.h
        self.assertEqual(
            h.cmd(b"TOP 1 1"),
            b"+OK Top of message follows.\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n.\r\n",
        )
        self.assertEqual(
            h.cmd(b"TOP 1 0"),
            b"+OK Top of message follows.\r\nFrom: a@example.org\r\nSubject: one\r\n\r\n.\r\n",
        )
        self.assertEqual(
            h.cmd(b"TOP 1 2"),
            b"+OK Top of message follows.\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n"
            b"..dot line\r\n.\r\n",
        )
        self.assertEqual(h.cmd(b"TOP 1 100").count(b"\r\n"), 9)
        # TOP is not a retrieval: nothing is marked seen.
        self.assertEqual(h.maildrop.retrievedIndexes, [])
        h.cmd(b"QUIT")
        self.assertEqual(h.maildrop.committed, (frozenset(), frozenset()))

    def test_vanishedMessage(self):
        h = self.h
        h.maildrop.failMessage = MessageVanished("gone")
        self.assertEqual(h.cmd(b"RETR 1"), b"-ERR Message 1 was removed by another program.\r\n")
        self.assertFalse(h.transport.disconnecting)

    def test_readErrorBeforeFirstByteIsAnErrorReply(self):
        # The +OK goes out with the first chunk, so a failure to read that
        # chunk is still an ordinary -ERR and the session goes on.
        h = self.h

        class Unreadable(MemoryReader):
            def read(self, size):
                return defer.fail(ServerBug("EIO"))

        h.maildrop.openMessage = lambda index: defer.succeed(Unreadable(MSG1))
        self.assertEqual(h.cmd(b"RETR 1"), b"-ERR [SYS/TEMP] Cannot read the message.\r\n")
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(h.cmd(b"NOOP"), b"+OK\r\n")
        self.assertEqual(h.maildrop.retrievedIndexes, [])
        self.assertEqual(len(self.flushLoggedErrors(ServerBug)), 1)

    def test_okLineAndMessageInOneWrite(self):
        # A reply split in two small writes waits for the client's delayed
        # ACK (Nagle): 40 ms per RETR, measured before this was fixed.
        h = self.h
        writes = []
        original = h.transport.write
        h.transport.write = lambda data: (writes.append(data), original(data))
        h.cmd(b"RETR 2")
        self.assertTrue(writes[0].startswith(b"+OK %d octets\r\n..starts with a dot" % crlfSize(MSG2)), writes)
        self.assertTrue(writes[0].endswith(b"body\r\n"))
        self.assertEqual(writes[1:], [b".\r\n"])

    def test_readErrorMidStreamCloses(self):
        h = self.h

        class Broken(MemoryReader):
            def read(self, size):
                if self.position:
                    return defer.fail(ServerBug("EIO"))
                return super().read(5)

        h.maildrop.openMessage = lambda index: defer.succeed(Broken(MSG1))
        reply = h.cmd(b"RETR 1")
        self.assertTrue(reply.startswith(b"+OK"))
        self.assertTrue(h.transport.disconnecting)
        h.proto.connectionLost(None)
        self.assertIsNone(h.maildrop.committed)
        self.assertEqual(len(self.flushLoggedErrors(ServerBug)), 1)


class PipeliningTests(unittest.TestCase):
    def test_onePacket(self):
        # RFC 2449 6.6: replies in order, even across an asynchronous login
        # and asynchronous message reads.
        clock = task.Clock()
        maildrop = MemoryMaildrop("edouard", [MSG1, MSG2], clock=clock)
        d = defer.Deferred()

        class SlowPortal:
            def login(self, credentials, mind, *interfaces):
                inner = memoryPortal({b"edouard": (b"s3cret", maildrop)})
                return d.addCallback(lambda _: inner.login(credentials, mind, *interfaces))

        h = Harness(self, maildrop=maildrop, portal=SlowPortal(), clock=clock)
        out = h.send(b"USER edouard\r\nPASS s3cret\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nLIST\r\nQUIT\r\n")
        self.assertEqual(out, b"+OK\r\n")
        d.callback(None)
        for _ in range(10):
            clock.advance(0)
        out = h.take()
        lines = out.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"+OK Logged in"), lines)
        self.assertTrue(lines[1].startswith(b"+OK 2 "))
        self.assertTrue(lines[2].startswith(b"+OK %d octets" % crlfSize(MSG1)))
        retr_end = lines.index(b".")
        self.assertEqual(lines[retr_end + 1], b"+OK Marked to be deleted.")
        self.assertTrue(lines[retr_end + 2].startswith(b"+OK 1 messages"))
        self.assertTrue(out.endswith(b"+OK Logging out, 1 messages deleted.\r\n"))
        self.assertEqual(maildrop.committed, (frozenset({0}), frozenset({0})))


class SlowPortal:
    """
    Logs edouard in to C{maildrop} once C{d} fires.
    """

    def __init__(self, d, maildrop):
        self.d = d
        self.maildrop = maildrop

    def login(self, credentials, mind, *interfaces):
        inner = memoryPortal({b"edouard": (b"s3cret", self.maildrop)})
        return self.d.addCallback(lambda _: inner.login(credentials, mind, *interfaces))


class FlowControlTests(unittest.TestCase):
    def test_pipelinedFloodPausesReading(self):
        # While a command is in progress, queued input is bounded: past
        # 64 KiB the socket stops being read, and reading resumes once the
        # queue drains.
        d = defer.Deferred()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        h = Harness(self, maildrop=maildrop, portal=SlowPortal(d, maildrop))
        h.send(b"USER edouard\r\nPASS s3cret\r\n")
        h.send(b"NOOP\r\n" * 15000)
        self.assertEqual(h.transport.producerState, "paused")
        d.callback(None)
        self.assertEqual(h.transport.producerState, "producing")
        out = h.take()
        self.assertTrue(out.startswith(b"+OK Logged in"))
        self.assertEqual(out.count(b"+OK\r\n"), 15000)

    def test_smallQueueDoesNotPause(self):
        d = defer.Deferred()

        class SlowPortal:
            def login(self, credentials, mind, *interfaces):
                return d

        h = Harness(self, portal=SlowPortal())
        h.send(b"USER edouard\r\nPASS s3cret\r\n" + b"NOOP\r\n" * 100)
        self.assertEqual(h.transport.producerState, "producing")

    def test_slowLoginIsNotIdleness(self):
        """
        RFC 1939 3's autologout timer measures the client's inactivity: a
        login the server takes longer than the timeout to check does not
        time the client out; the timer starts again when it answered.
        """
        d = defer.Deferred()
        maildrop = MemoryMaildrop("edouard", [MSG1])
        h = Harness(self, maildrop=maildrop, portal=SlowPortal(d, maildrop))
        h.send(b"USER edouard\r\nPASS s3cret\r\n")
        h.clock.advance(900)
        self.assertFalse(h.transport.disconnecting)
        d.callback(None)
        self.assertTrue(h.take().endswith(b"+OK Logged in, 1 messages (%d octets).\r\n" % crlfSize(MSG1)))
        h.clock.advance(599)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(1)
        self.assertEqual(h.take(), b"-ERR [SYS/PERM] Disconnected for inactivity.\r\n")


class LineLimitTests(unittest.TestCase):
    def test_longLineRefusedConnectionKept(self):
        h = Harness(self, maxLineLength=100)
        self.assertEqual(h.cmd(b"NOOP " + b"x" * 200), b"-ERR Command line too long.\r\n")
        self.assertEqual(h.cmd(b"NOOP"), b"+OK\r\n")

    def test_unterminatedFloodBounded(self):
        h = Harness(self, maxLineLength=100)
        reply = h.send(b"x" * 150)
        self.assertEqual(reply, b"-ERR Command line too long.\r\n")
        self.assertLessEqual(h.proto.engine.pendingInput(), 100)
        h.send(b"y" * 10000)
        self.assertEqual(h.proto.engine.pendingInput(), 0)
        # the rest of the long line is skipped up to its newline
        self.assertEqual(h.send(b"zzz\r\nNOOP\r\n"), b"+OK\r\n")

    def test_bareLF(self):
        self.assertEqual(Harness(self).send(b"NOOP\n"), b"+OK\r\n")


class EncoderTests(unittest.TestCase):
    SAMPLES = [
        MSG1,
        MSG2,
        MSG3,
        b".\n.\n..\n.x\r\n\r\n",
        b"a\r\r\nb\rc\n",
        b"",
        b"x",
        b".",
    ]

    def test_matchesLineByLineReference(self):
        rng = random.Random(7)
        for sample in self.SAMPLES:
            expected = reference(sample)
            for _ in range(50):
                encoder = MessageEncoder()
                out = []
                position = 0
                while position < len(sample):
                    step = rng.randint(1, 4)
                    out.append(encoder.feed(sample[position : position + step]))
                    position += step
                out.append(encoder.finish())
                self.assertEqual(b"".join(out), expected, sample)

    def test_longLineWithoutNewlineIsNotHeld(self):
        encoder = MessageEncoder()
        out = encoder.feed(b"." + b"a" * 200000)
        # sent on (dot-stuffed), not accumulated in memory
        self.assertGreater(len(out), 100000)
        self.assertTrue(out.startswith(b".."))
        rest = encoder.feed(b"b\r") + encoder.feed(b"\n.c\n") + encoder.finish()
        self.assertEqual(out + rest, b".." + b"a" * 200000 + b"b\r\n..c\r\n")


class StreamerTests(unittest.TestCase):
    def test_pausedProducerStopsReading(self):
        data = b"line\n" * 100000

        class ManualReader(MemoryReader):
            pending = None

            def read(self, size):
                self.pending = defer.Deferred()
                self.reads += 1
                return self.pending

            def fire(self):
                d, self.pending = self.pending, None
                chunk = self.data[self.position : self.position + 1000]
                self.position += len(chunk)
                d.callback(chunk)

        reader = ManualReader(data)
        transport = StringTransport()
        streamer = _MessageStreamer(transport, reader, MessageEncoder(), lambda: None, chunkSize=1000)
        done = streamer.start()
        self.assertIs(transport.producer, streamer)
        reader.fire()
        reader.fire()
        # the transport's buffer is full: no read may be issued until resume
        streamer.pauseProducing()
        reader.fire()
        self.assertIsNone(reader.pending)
        self.assertEqual(reader.reads, 3)
        self.assertLess(len(transport.value()), 5000)
        streamer.resumeProducing()
        while not done.called:
            reader.fire()
        self.assertEqual(transport.value(), data.replace(b"\n", b"\r\n") + b".\r\n")
        self.assertIsNone(transport.producer)
        self.assertTrue(reader.closed)

    def test_synchronousReaderNoRecursion(self):
        data = b"x" * 50 + b"\n"
        reader = MemoryReader(data * 20000)
        transport = StringTransport()
        streamer = _MessageStreamer(transport, reader, MessageEncoder(), lambda: None, chunkSize=10)
        done = streamer.start()
        self.assertTrue(done.called)
        self.assertEqual(len(transport.value()), 52 * 20000 + 3)

    def test_stopProducing(self):
        clock = task.Clock()
        reader = MemoryReader(b"a\n" * 1000, clock)
        streamer = _MessageStreamer(StringTransport(), reader, MessageEncoder(), lambda: None, chunkSize=10)
        done = streamer.start()
        streamer.stopProducing()
        self.assertTrue(reader.closed)
        self.failureResultOf(done, ConnectionError)
