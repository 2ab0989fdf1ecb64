"""
Helpers for the IMAP server's wire-transcript tests: a real Maildir store
run synchronously (every Deferred has fired when a call returns), a small
portal handing out L{IMAPAccount}s, and a client side on a
L{StringTransport}.
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from twisted_maillab.imap.account import IIMAPAccount, IMAPAccount
from twisted_maillab.imap.server import IMAPFactory
from twisted_maillab.store.testing import synchronousStore, temporaryAccount

LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)
REMOTE = IPv4Address("TCP", "203.0.113.9", 40000)


class TLSStringTransport(StringTransport):
    tlsStarted = None

    def startTLS(self, context):
        self.tlsStarted = context


class StorePortal:
    """
    A portal over C{{username: (password, account)}} serving
    L{IIMAPAccount} from C{store}.
    """

    def __init__(self, store, users):
        self.store = store
        self.users = users
        self.logins = []

    def login(self, credentials, mind, *interfaces):
        username = credentials.username
        if isinstance(username, str):
            username = username.encode("utf-8")
        entry = self.users.get(username)
        if entry is None or credentials.password != entry[0]:
            return defer.fail(UnauthorizedLogin())
        assert IIMAPAccount in interfaces
        avatar = IMAPAccount(self.store, entry[1])
        self.logins.append(avatar)
        return defer.succeed((IIMAPAccount, avatar, avatar.logout))


class Harness:
    """
    One server over a StringTransport, on a synchronous store.
    """

    def __init__(self, testCase, store=None, account=None, peer=LOOPBACK, factory=None, **kwargs):
        self.clock = task.Clock()
        if store is None:
            store = synchronousStore()
        self.store = store
        if account is None:
            account = temporaryAccount(testCase.mktemp())
        self.account = account
        if factory is None:
            self.portal = StorePortal(store, {b"edouard": (b"s3cret", account)})
            factory = IMAPFactory(self.portal, clock=self.clock, store=store, **kwargs)
        self.factory = factory
        self.transport = TLSStringTransport(peerAddress=peer)
        self.proto = factory.buildProtocol(peer)
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()
        testCase.addCleanup(self.close)

    def close(self):
        if not self.proto.closed:
            self.proto.connectionLost(None)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        self.clock.advance(0)
        return self.take()

    def command(self, line: bytes) -> bytes:
        return self.send(line + b"\r\n")

    def lines(self, line: bytes) -> list[bytes]:
        return self.command(line).split(b"\r\n")[:-1]

    def login(self):
        reply = self.command(b"a0 LOGIN edouard s3cret")
        assert reply.startswith(b"a0 OK"), reply
        return reply

    def select(self, name=b"INBOX"):
        self.login()
        reply = self.command(b"s0 SELECT " + name)
        assert b"s0 OK" in reply, reply
        return reply
