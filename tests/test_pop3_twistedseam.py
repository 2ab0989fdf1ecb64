"""
POP3 and Twisted's C{pop3.IMailbox} both ways, over real loopback sockets
and Python's poplib: the stock C{twisted.mail.pop3.POP3} serving our store
through our portal (UIDLs equal ours, DELE only at QUIT), and our POP3
server serving Twisted's C{MaildirMailbox}.
"""

from __future__ import annotations

import os
import poplib
import socket
from io import BytesIO
from pathlib import Path

from twisted.cred.error import LoginDenied
from twisted.internet import defer, protocol, reactor, threads
from twisted.mail import pop3
from twisted.mail.maildir import MaildirMailbox
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.pop3.maildrop import StoreMaildrop, maildropFactory
from twisted_maillab.interfaces import IPOP3Maildrop
from twisted_maillab.pop3.protocol import POP3Factory, SessionLocks
from twisted_maillab.pop3.twistedseam import (
    MaildropMailbox,
    MailboxMaildrop,
    registerMailboxMaildrops,
    registerTwistedPOP3,
)
from twisted_maillab.store import Store

from tests.support import syncResult
from tests.test_pop3_store import makeConfig

MESSAGES = [
    b"Subject: one\n\n.leading dot\nbody one\n",
    b"Subject: two\r\n\r\nbody two, stored with CRLF\r\n",
    b"Subject: three\n\nbody three\n",
]


def _sync(f, *args, **kwargs):
    return defer.execute(f, *args, **kwargs)


class StockPOP3Factory(protocol.ServerFactory):
    """
    Twisted's own POP3 server, logging in through our portal.
    """

    def __init__(self, portal):
        self.portal = portal

    def buildProtocol(self, addr):
        server = pop3.POP3()
        server.factory = self
        server.portal = self.portal.forConnection(addr, "pop3")
        return server


class Fixture:
    def __init__(self, testCase):
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.config = makeConfig(self.root)
        self.portal = makePortal(self.config, reactor, runner=runSynchronously)
        self.account = syncResult(self.portal.directory.lookup("edouard"))
        Path(self.account.home).mkdir(parents=True, exist_ok=True)
        self.store = Store(reactor, clock=reactor, runner=_sync, rescanInterval=0, inotify=False, hostname="mail.test")
        testCase.addCleanup(self.store.close)
        for message in MESSAGES:
            txn = self.store.beginDelivery()
            txn.addRecipient(self.account)
            syncResult(txn.write(message))
            (result,) = syncResult(txn.commit())
            assert result.ok, result.error
        self.maildir = Path(self.account.maildir)

    def listen(self, testCase, factory) -> int:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        testCase.addCleanup(port.stopListening)
        return port.getHost().port

    def files(self) -> list[str]:
        return sorted(os.listdir(self.maildir / "new") + os.listdir(self.maildir / "cur"))

    def ourUidls(self) -> list[bytes]:
        drop = StoreMaildrop(self.store, self.account)
        try:
            return [info.uidl for info in syncResult(drop.open())]
        finally:
            drop.logout()


def session(port: int, commands) -> dict:
    """
    A poplib session (in a thread): login, then C{commands(client, out)}.
    """
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    out = {}
    try:
        client.user("edouard")
        client.pass_("pw")
        commands(client, out)
    finally:
        client.close()
    return out


class StockPOP3OverOurStoreTests(unittest.TestCase):
    def setUp(self):
        self.f = Fixture(self)
        self.locks = SessionLocks()
        registerTwistedPOP3(self.f.portal.realm, maildropFactory(self.f.store), self.locks)
        self.port = self.f.listen(self, StockPOP3Factory(self.f.portal))

    @defer.inlineCallbacks
    def test_pollibSession(self):
        before = self.f.files()
        uidls = self.f.ourUidls()

        def commands(client, out):
            out["list"] = client.list()[1]
            out["uidl"] = client.uidl()[1]
            out["retr"] = [client.retr(n)[1] for n in (1, 2)]
            out["dele"] = client.dele(2)
            out["stat"] = client.stat()
            out["quit"] = client.quit()

        out = yield threads.deferToThread(session, self.port, commands)
        # UIDLs are the store's, as our POP3 server and Dovecot list them.
        self.assertEqual(out["uidl"], [b"%d %s" % (n, uidl) for n, uidl in enumerate(uidls, 1)])
        # Sizes as RETR sends them (CRLF line ends).
        sizes = [len(m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) for m in MESSAGES]
        self.assertEqual(out["list"], [b"%d %d" % (n, s) for n, s in enumerate(sizes, 1)])
        self.assertEqual(out["retr"][0], [b"Subject: one", b"", b".leading dot", b"body one"])
        # Stored with CRLF: served without Twisted's CR CR LF.
        self.assertEqual(out["retr"][1], [b"Subject: two", b"", b"body two, stored with CRLF"])
        self.assertTrue(out["quit"].startswith(b"+OK"))
        # Deleted at QUIT only (RFC 1939 6), one message of three.
        yield self.waitFor(lambda: len(self.f.files()) == 2)
        self.assertEqual(self.f.ourUidls(), [uidls[0], uidls[2]])
        self.assertEqual(len(before), 3)

    @defer.inlineCallbacks
    def test_oneSessionPerMaildrop(self):
        """
        With our listeners' locks, a second session, stock or ours, is
        refused while one holds the maildrop (RFC 1939 8).
        """
        ours = self.f.listen(self, POP3Factory(self.f.portal, clock=reactor, locks=self.locks))
        self.f.portal.realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.f.store))

        def refused(port):
            client = poplib.POP3("127.0.0.1", port, timeout=30)
            try:
                client.user("edouard")
                with self.assertRaises(poplib.error_proto) as caught:
                    client.pass_("pw")
                return caught.exception.args[0]
            finally:
                client.close()

        def commands(client, out):
            out["stock"] = refused(self.port)
            out["ours"] = refused(ours)
            out["quit"] = client.quit()

        out = yield threads.deferToThread(session, self.port, commands)
        self.assertTrue(out["stock"].startswith(b"-ERR Access denied"), out["stock"])
        # The portal logs a refusal from the realm as an auth error.
        self.assertEqual(len(self.flushLoggedErrors(LoginDenied)), 1)
        self.assertEqual(out["ours"], b"-ERR [IN-USE] Mailbox is locked by another POP3 session.")
        # Released at the end of the session.
        yield self.waitFor(lambda: not self.locks._held)

        def again(client, out):
            out["stat"] = client.stat()
            client.quit()

        out = yield threads.deferToThread(session, ours, again)
        self.assertEqual(out["stat"][0], 3)

    @defer.inlineCallbacks
    def test_droppedSessionDeletesNothing(self):
        def commands(client, out):
            out["dele"] = client.dele(1)
            # No QUIT: the connection just ends.
            client.sock.shutdown(socket.SHUT_RDWR)

        out = yield threads.deferToThread(session, self.port, commands)
        self.assertTrue(out["dele"].startswith(b"+OK"))

        def later(client, out):
            out["uidl"] = client.uidl()[1]
            client.quit()

        out = yield threads.deferToThread(session, self.port, later)
        self.assertEqual(len(out["uidl"]), 3)
        self.assertEqual(len(self.f.files()), 3)

    @defer.inlineCallbacks
    def test_badMessageNumber(self):
        # Twisted drops the connection on an error with a str argument.
        def commands(client, out):
            try:
                client.dele(9)
            except poplib.error_proto as e:
                out["dele"] = e.args[0]
            out["noop"] = client.noop()
            client.quit()

        out = yield threads.deferToThread(session, self.port, commands)
        # Twisted logs the error it answers.
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(out["dele"].startswith(b"-ERR "), out["dele"])
        self.assertIn(b"Bad message number argument", out["dele"])
        self.assertTrue(out["noop"].startswith(b"+OK"))

    def test_avatarProvidesIMailbox(self):
        drop = StoreMaildrop(self.f.store, self.f.account)
        mailbox = syncResult(MaildropMailbox.open(drop))
        self.addCleanup(mailbox.logout)
        self.assertTrue(verifyObject(pop3.IMailbox, mailbox))

    @defer.inlineCallbacks
    def waitFor(self, predicate, timeout=10.0):
        from twisted.internet.task import deferLater

        waited = 0.0
        while not predicate():
            self.assertLess(waited, timeout, "condition never held")
            yield deferLater(reactor, 0.05, lambda: None)
            waited += 0.05


class OurPOP3OverTwistedMailboxTests(unittest.TestCase):
    """
    Our POP3 server, its avatar Twisted's C{MaildirMailbox} on the same
    Maildir.
    """

    def setUp(self):
        self.f = Fixture(self)
        registerMailboxMaildrops(
            self.f.portal.realm, lambda account: MaildirMailbox(os.fsencode(account.maildir)), reactor
        )
        factory = POP3Factory(self.f.portal, clock=reactor, plaintextOnLoopback=True)
        self.port = self.f.listen(self, factory)

    @defer.inlineCallbacks
    def test_poplibSession(self):
        mailbox = MaildirMailbox(os.fsencode(self.f.account.maildir))
        theirUidls = [mailbox.getUidl(n).encode() for n in range(len(mailbox.list))]

        def commands(client, out):
            out["list"] = client.list()[1]
            out["uidl"] = client.uidl()[1]
            out["retr"] = [client.retr(n)[1] for n in (1, 2, 3)]
            out["dele"] = client.dele(1)
            try:
                client.quit()
            except poplib.error_proto as e:
                out["quit"] = e.args[0]

        out = yield threads.deferToThread(session, self.port, commands)
        self.assertEqual(out["uidl"], [b"%d %s" % (n, u) for n, u in enumerate(theirUidls, 1)])
        self.assertEqual(
            sorted(out["retr"]),
            sorted(
                [
                    [b"Subject: one", b"", b".leading dot", b"body one"],
                    [b"Subject: two", b"", b"body two, stored with CRLF"],
                    [b"Subject: three", b"", b"body three"],
                ]
            ),
        )
        # LIST sizes are the octets RETR sent (CRLF), not Twisted's file sizes.
        sizes = [int(line.split()[1]) for line in out["list"]]
        self.assertEqual(sizes, [sum(len(line) + 2 for line in lines) for lines in out["retr"]])
        # Twisted 26.10's MaildirMailbox.deleteMessage joins bytes and str
        # paths (TypeError) whichever type its path has: RFC 1939 6's
        # answer, and nothing is lost.
        self.assertEqual(out["quit"], b"-ERR [SYS/TEMP] Some deleted messages not removed.")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertEqual(len(self.f.files()), 3)

    @defer.inlineCallbacks
    def test_deletionsAtQuit(self):
        """
        A C{pop3.IMailbox} gets C{deleteMessage} only at QUIT, then C{sync}.
        """
        calls = []

        class Recording(pop3.Mailbox):
            messages = [b"Subject: a\n\none\n", b"Subject: b\n\ntwo\n"]

            def listMessages(self, i=None):
                sizes = [len(m) for m in self.messages]
                return sizes if i is None else sizes[i]

            def getMessage(self, i):
                calls.append(("get", i))
                return BytesIO(self.messages[i])

            def getUidl(self, i):
                return b"uid-%d" % i

            def deleteMessage(self, i):
                calls.append(("delete", i))

            def sync(self):
                calls.append(("sync",))

        portal = makePortal(self.f.config, reactor, runner=runSynchronously)
        registerMailboxMaildrops(portal.realm, lambda account: Recording(), reactor)
        port = self.f.listen(self, POP3Factory(portal, clock=reactor))

        def commands(client, out):
            out["uidl"] = client.uidl()[1]
            out["top"] = client.top(2, 0)[1]
            client.dele(2)
            out["before"] = list(calls)
            out["quit"] = client.quit()

        out = yield threads.deferToThread(session, port, commands)
        self.assertEqual(out["uidl"], [b"1 uid-0", b"2 uid-1"])
        self.assertEqual(out["top"], [b"Subject: b", b""])
        self.assertNotIn(("delete", 1), out["before"])
        self.assertEqual(calls[-2:], [("delete", 1), ("sync",)])
        self.assertTrue(out["quit"].startswith(b"+OK"))

    @defer.inlineCallbacks
    def test_droppedSessionDeletesNothing(self):
        def commands(client, out):
            out["dele"] = client.dele(1)
            client.sock.shutdown(socket.SHUT_RDWR)

        out = yield threads.deferToThread(session, self.port, commands)
        self.assertTrue(out["dele"].startswith(b"+OK"))
        self.assertEqual(len(self.f.files()), 3)

    def test_maildropProvidesIPOP3Maildrop(self):
        from twisted_maillab.interfaces import IPOP3Maildrop

        drop = MailboxMaildrop(MaildirMailbox(os.fsencode(self.f.account.maildir)), reactor)
        self.assertTrue(verifyObject(IPOP3Maildrop, drop))
