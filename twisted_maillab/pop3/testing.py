"""
In-memory fakes for testing POP3 code (and applications embedding it)
without a Maildir or a password database.

    maildrop = MemoryMaildrop("edouard", [b"Subject: hi\\n\\nbody\\n"])
    portal = memoryPortal({b"edouard": (b"secret", maildrop)})
    factory = POP3Factory(portal, clock=task.Clock())
"""

from __future__ import annotations

import hmac

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from twisted_maillab.pop3.interfaces import IMessageReader, IPOP3Maildrop, MessageInfo

__all__ = ["MemoryMaildrop", "MemoryReader", "memoryPortal", "crlfSize"]


def crlfSize(message: bytes) -> int:
    """
    The octets a message occupies on the wire with CRLF line endings (what
    LIST reports), before dot-stuffing.
    """
    normal = message.replace(b"\r\n", b"\n")
    size = len(normal) + normal.count(b"\n")
    if normal and not normal.endswith(b"\n"):
        size += 2
    return size


@implementer(IMessageReader)
class MemoryReader:
    """
    Reads bytes in chunks; C{synchronous=False} makes every read fire later
    (through C{clock}), like a thread pool would.
    """

    def __init__(self, data: bytes, clock=None):
        self.data = data
        self.position = 0
        self.closed = False
        self.clock = clock
        self.reads = 0

    def read(self, size):
        if self.closed:
            return defer.fail(ValueError("read from a closed message"))
        chunk = self.data[self.position : self.position + size]
        self.position += len(chunk)
        self.reads += 1
        if self.clock is None:
            return defer.succeed(chunk)
        d = defer.Deferred()
        self.clock.callLater(0, d.callback, chunk)
        return d

    def close(self):
        self.closed = True


@implementer(IPOP3Maildrop)
class MemoryMaildrop:
    """
    A maildrop held in a list; records what the protocol asked of it.

    @ivar committed: C{(deleted, seen)} of the last commit, or L{None}.
    @ivar retrievedIndexes: indexes passed to C{retrieved}.
    """

    def __init__(self, name, messages=(), uidls=None, clock=None):
        self.lockKey = ("memory", name)
        self.messages = list(messages)
        self.uidls = list(uidls) if uidls is not None else [b"uid%d" % (i + 1) for i in range(len(self.messages))]
        self.clock = clock
        self.committed = None
        self.retrievedIndexes: list[int] = []
        self.opened = 0
        self.loggedOut = 0
        self.readers: list[MemoryReader] = []
        self.failOpen = None
        self.failCommit = None
        self.failMessage = None

    def open(self):
        self.opened += 1
        if self.failOpen is not None:
            return defer.fail(self.failOpen)
        return defer.succeed(
            [MessageInfo(uidl, crlfSize(m)) for uidl, m in zip(self.uidls, self.messages)]
        )

    def openMessage(self, index):
        if self.failMessage is not None:
            return defer.fail(self.failMessage)
        reader = MemoryReader(self.messages[index], self.clock)
        self.readers.append(reader)
        return defer.succeed(reader)

    def retrieved(self, index):
        self.retrievedIndexes.append(index)
        return defer.succeed(None)

    def commit(self, deleted, seen):
        if self.failCommit is not None:
            return defer.fail(self.failCommit)
        self.committed = (deleted, seen)
        self.messages = [m for i, m in enumerate(self.messages) if i not in deleted]
        self.uidls = [u for i, u in enumerate(self.uidls) if i not in deleted]
        return defer.succeed(None)

    def logout(self):
        self.loggedOut += 1


@implementer(ICredentialsChecker)
class _MemoryChecker:
    """
    Compares C{credentials.password} itself (the auth package's SASL
    credentials carry the password and do not implement C{checkPassword}).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self):
        self.users: dict[bytes, bytes] = {}

    def requestAvatarId(self, credentials):
        expected = self.users.get(credentials.username)
        if expected is None or not hmac.compare_digest(expected, credentials.password):
            return defer.fail(UnauthorizedLogin("bad credentials"))
        return defer.succeed(credentials.username)


@implementer(IRealm)
class _MemoryRealm:
    def __init__(self, maildrops):
        self.maildrops = maildrops

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IPOP3Maildrop not in interfaces:
            raise NotImplementedError()
        maildrop = self.maildrops[avatarId]
        return IPOP3Maildrop, maildrop, maildrop.logout


def memoryPortal(users: dict) -> Portal:
    """
    A portal over C{{username: (password, maildrop)}} (bytes usernames
    and passwords).
    """
    checker = _MemoryChecker()
    maildrops = {}
    for user, (password, maildrop) in users.items():
        checker.users[user] = password
        maildrops[user] = maildrop
    return Portal(_MemoryRealm(maildrops), [checker])
