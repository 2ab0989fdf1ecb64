"""
Our POP3 maildrops and Twisted's C{twisted.mail.pop3.IMailbox}, both ways.

  - L{MaildropMailbox}: an L{IPOP3Maildrop} (our store's INBOX) as
    Twisted's C{pop3.IMailbox}, so the stock C{twisted.mail.pop3.POP3}
    serves our store through our portal (L{registerTwistedPOP3}).
    Twisted's interface is synchronous; the realm builds the avatar only
    after the maildrop's C{open()} has listed INBOX in the store's thread
    pool, so C{listMessages} and C{getUidl} answer from that snapshot.
    C{getMessage} (which Twisted calls through C{maybeDeferred}) reads the
    message in the pool and returns it with LF line ends: Twisted's
    C{transformChunk} turns each LF into CRLF, and would send a stored
    CRLF as CR CR LF.  C{deleteMessage} only marks (RFC 1939 6: nothing is
    deleted before QUIT); C{sync} at QUIT commits the session's deletions,
    and the avatar's logout waits for that commit before it releases the
    folder.  UIDLs are the store's (equal to our own POP3 server's and
    Dovecot's).  Given our listeners' L{SessionLocks}, a session holds the
    maildrop as theirs do (RFC 1939 8).  Not carried over from our server:
    \\Seen on retrieved messages (Twisted does not say
    which C{getMessage} calls are RETR rather than TOP), and the size
    limits, dot-stuffing of a first line and STLS Twisted's C{POP3} lacks.
  - L{MailboxMaildrop}: a Twisted C{pop3.IMailbox} avatar (such as
    C{twisted.mail.maildir.MaildirMailbox}) as an L{IPOP3Maildrop}, so our
    own POP3 server serves it (L{registerMailboxMaildrops}).  Its
    synchronous calls run on the reactor thread (an implementation may not
    be thread-safe); message bytes are read in a thread.  Deletions are
    passed to C{deleteMessage} only at QUIT, then C{sync()} is called: a
    dropped session deletes nothing even with C{MaildirMailbox}, which
    moves a message to C{.Trash} the moment C{deleteMessage} is called.
"""

from __future__ import annotations

from io import BytesIO

from twisted.cred.error import LoginDenied
from twisted.internet import defer, threads
from twisted.mail import pop3
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_maillab.interfaces import IMessageReader, IPOP3Maildrop, MessageInfo
from twisted_maillab.store.reading import crlfSize

__all__ = [
    "MaildropMailbox",
    "registerTwistedPOP3",
    "MailboxMaildrop",
    "registerMailboxMaildrops",
]

CHUNK = 64 * 1024


def _badIndex() -> ValueError:
    # Twisted's POP3.state_COMMAND builds its -ERR line with
    # b"".join(error.args): a str argument would drop the connection.
    return ValueError(b"Bad message number argument")


@implementer(pop3.IMailbox)
class MaildropMailbox:
    """
    An opened L{IPOP3Maildrop} as Twisted's C{pop3.IMailbox}.

    @ivar maildrop: the L{IPOP3Maildrop}, already opened.
    @ivar messages: its snapshot (L{MessageInfo}s).
    """

    def __init__(self, maildrop, messages, release=None):
        """
        @param release: called once the session is over (a lock to free).
        """
        self.maildrop = maildrop
        self.messages = tuple(messages)
        self.deleted: set[int] = set()
        self._committing = None
        self._loggedOut = False
        self._release = release

    @classmethod
    def open(cls, maildrop, locks=None) -> defer.Deferred:
        """
        Open C{maildrop} (its listing is made in the store's pool).

        @param locks: the L{twisted_maillab.pop3.protocol.SessionLocks} of
            our own POP3 listeners, to share their one session per maildrop
            (RFC 1939 8); L{None}: no lock.
        @return: L{Deferred} of a L{MaildropMailbox}; fails with
            L{LoginDenied} when another session holds the maildrop.
        """
        release = None
        if locks is not None:
            key = maildrop.lockKey
            if not locks.acquire(key):
                maildrop.logout()
                # RFC 2449 8.1.2 IN-USE; Twisted's POP3 says "Access denied".
                return defer.fail(LoginDenied("the mailbox is in use by another POP3 session"))
            release = lambda: locks.release(key)  # noqa: E731
        d = defer.maybeDeferred(maildrop.open)

        def failed(failure):
            maildrop.logout()
            if release is not None:
                release()
            return failure

        return d.addCallbacks(lambda messages: cls(maildrop, messages, release), failed)

    def _index(self, i) -> int:
        if not isinstance(i, int) or not 0 <= i < len(self.messages):
            raise _badIndex()
        return i

    def listMessages(self, i=None):
        if i is None:
            return [0 if n in self.deleted else info.size for n, info in enumerate(self.messages)]
        i = self._index(i)
        return 0 if i in self.deleted else self.messages[i].size

    def getUidl(self, i):
        return self.messages[self._index(i)].uidl

    def getMessage(self, i):
        i = self._index(i)
        d = defer.maybeDeferred(self.maildrop.openMessage, i)

        @defer.inlineCallbacks
        def read(reader):
            chunks = []
            try:
                while True:
                    chunk = yield reader.read(CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                reader.close()
            # LF line ends for Twisted's transformChunk (see the module
            # docstring); the snapshot's size counts them as CRLF.
            return BytesIO(b"".join(chunks).replace(b"\r\n", b"\n"))

        return d.addCallback(read)

    def deleteMessage(self, i):
        self.deleted.add(self._index(i))

    def undeleteMessages(self):
        self.deleted.clear()

    def sync(self):
        """
        QUIT: the UPDATE state (RFC 1939 6), in the store.
        """
        if self._committing is None:
            self._committing = defer.maybeDeferred(
                self.maildrop.commit, frozenset(self.deleted), frozenset()
            )
        return self._committing

    def logout(self):
        """
        The session ended: release the maildrop once a QUIT's commit is done.
        """
        if self._loggedOut:
            return
        self._loggedOut = True
        if self._committing is None:
            self._end()
        else:
            self._committing.addBoth(lambda result: self._end())

    def _end(self):
        self.maildrop.logout()
        if self._release is not None:
            self._release()


def registerTwistedPOP3(realm, makeMaildrop, locks=None) -> None:
    """
    Make the realm answer logins asking for Twisted's C{pop3.IMailbox}
    with a L{MaildropMailbox}.

    @param makeMaildrop: C{account -> IPOP3Maildrop}, e.g.
        L{twisted_maillab.pop3.maildrop.maildropFactory}C{(store)}.
    @param locks: a L{twisted_maillab.pop3.protocol.SessionLocks}: one
        session per maildrop, shared with our own POP3 listeners when it is
        theirs.
    """
    realm.registerAvatarFactory(
        pop3.IMailbox, lambda account: MaildropMailbox.open(makeMaildrop(account), locks)
    )


def _binary(f):
    # twisted.mail.maildir.MaildirMailbox.getMessage opens the file in text
    # mode: read the bytes under its TextIOWrapper.
    return getattr(f, "buffer", f)


@implementer(IMessageReader)
class _FileReader:
    def __init__(self, f, reactor):
        # The text wrapper is kept: collecting it would close its buffer.
        self._opened = f
        self._file = _binary(f)
        self._reactor = reactor

    def read(self, size):
        if self._file is None:
            return defer.fail(ValueError("read from a closed message"))
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._file.read, size)

    def close(self):
        f, self._file = self._opened, None
        if f is not None:
            self._opened = None
            f.close()


def _countAndClose(f) -> int:
    # Thread: the size our server sends (CRLF line ends).
    try:
        return crlfSize(_binary(f))
    finally:
        f.close()


@implementer(IPOP3Maildrop)
class MailboxMaildrop:
    """
    A Twisted C{pop3.IMailbox} as an L{IPOP3Maildrop}.

    @ivar mailbox: the C{pop3.IMailbox}.
    """

    def __init__(self, mailbox, reactor=None, lockKey=None):
        """
        @param lockKey: what identifies the mailbox for the session lock
            (default: its C{path} when it has one, as C{MaildirMailbox}).
        """
        if reactor is None:
            from twisted.internet import reactor
        self.mailbox = pop3.IMailbox(mailbox)
        self.reactor = reactor
        if lockKey is None:
            path = getattr(mailbox, "path", None)
            lockKey = ("twisted-mailbox", path if path is not None else id(mailbox))
        self.lockKey = lockKey

    @defer.inlineCallbacks
    def open(self):
        sizes = yield defer.maybeDeferred(self.mailbox.listMessages)
        snapshot = []
        for index, listed in enumerate(sizes):
            if not listed:
                continue  # deleted before this session (size 0)
            uidl = yield defer.maybeDeferred(self.mailbox.getUidl, index)
            f = yield defer.maybeDeferred(self.mailbox.getMessage, index)
            size = yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _countAndClose, f)
            if isinstance(uidl, str):
                uidl = uidl.encode("ascii")
            snapshot.append((index, MessageInfo(uidl, size)))
        self._indexes = [index for index, _ in snapshot]
        return [info for _, info in snapshot]

    def openMessage(self, index):
        d = defer.maybeDeferred(self.mailbox.getMessage, self._indexes[index])
        return d.addCallback(_FileReader, self.reactor)

    def retrieved(self, index):
        return defer.succeed(None)

    def commit(self, deleted, seen):
        try:
            for index in sorted(deleted):
                self.mailbox.deleteMessage(self._indexes[index])
        except Exception:
            return defer.fail(Failure())
        return defer.maybeDeferred(self.mailbox.sync)

    def logout(self):
        pass


def registerMailboxMaildrops(realm, makeMailbox, reactor=None) -> None:
    """
    Make the realm answer our POP3 server's logins (L{IPOP3Maildrop}) with
    the Twisted C{pop3.IMailbox} C{makeMailbox(account)} returns (or a
    L{Deferred} of it), e.g. C{lambda account:
    MaildirMailbox(account.maildir)}.  Register it before the C{[pop3]}
    builder runs: the builder then keeps it.
    """

    def factory(account):
        d = defer.maybeDeferred(makeMailbox, account)
        return d.addCallback(MailboxMaildrop, reactor)

    realm.registerAvatarFactory(IPOP3Maildrop, factory)
