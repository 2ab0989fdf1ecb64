"""
The store seen through Twisted's own IMAP interfaces (L{twisted.mail.imap4}).

Another Twisted application can serve our Maildir store with Twisted's
stock L{imap4.IMAP4Server}: the realm hands out a L{TwistedAccount} for
L{imap4.IAccount} (see L{registerTwistedAccount}); selecting a folder gives
a L{TwistedMailbox} over a shared L{Folder} and a per-session
L{FolderView}; its C{fetch} gives L{TwistedMessage}s.  UIDs, UIDVALIDITY,
flags, keywords and \\Recent are the store's, so Dovecot, maillab's own
IMAP and this seam show the same numbers on the same Maildir.

Where Twisted wants a synchronous answer and the store works in its thread
pool, this is what the seam does (read C{twisted/mail/imap4.py}: the server
wraps C{account.select}, C{listMailboxes}, C{requestStatus}, C{expunge},
C{fetch}, C{store}, C{search} and C{IMessageCopier.copy} in
C{maybeDeferred}, and C{addMessage} must return a Deferred; everything else
is called synchronously):

  - C{create}, C{delete}, C{rename}, C{subscribe}, C{unsubscribe}: Twisted
    answers the client as soon as the method returns.  What can be checked
    without the disk is checked at once and refused with
    L{imap4.MailboxException} (INBOX, a name Maildir++ cannot hold); the
    disk work then runs in the store's pool, and the account's operations
    are serialised, so a later SELECT, LIST or STATUS of the same session
    sees its result.  A failure found on the disk (the folder already
    exists, the disk is full) is logged, not reported to the client: the
    server has already said OK.
  - C{isSubscribed} (LSUB) answers from the subscriptions read by the
    C{listMailboxes} call LSUB makes just before, and from this session's
    own SUBSCRIBE/UNSUBSCRIBE.
  - C{getRecentCount} at SELECT: C{select} claims the folder's \\Recent
    messages in the pool before it returns the mailbox (RFC 3501 2.3.2:
    one session sees a message as recent).  Twisted's server passes C{rw=1}
    for SELECT, C{0} for EXAMINE and STATUS and nothing for APPEND and
    COPY; only SELECT claims, so an APPEND or STATUS does not steal
    \\Recent from the session that has the folder selected.
  - C{fetch} opens and reads in the pool everything a FETCH may ask for
    synchronously: the header block (at most L{HEADER_LIMIT} octets, parsed
    into the str dict L{imap4.IMessagePart.getHeaders} must return), the
    virtual size (octets with CRLF line ends, what the literal carries) and
    the internal date.  The body is read by Twisted's C{FileProducer} from
    the file object C{getBodyFile}/C{IMessageFile.open} return, 64 KiB per
    write the transport asks for, on the reactor thread: a read of a local
    regular file, never the whole message at once.  C{IMessagePart} has no
    asynchronous form; maillab's own IMAP listener reads through the pool.
  - Message files are served with CRLF line ends (RFC 3501 2.1), converted
    while reading, so the literal's length is the C{RFC822.SIZE}.
  - The message files are opened on the reactor thread (an C{openat}, as
    L{virtualSizes} does) and read in the pool.  The header blocks of the
    messages a FETCH names are held until it ends: Twisted's C{fetch}
    returns them all before the first is written.
  - A message another session expunged while this one still numbers it is
    served as an empty literal: Twisted has no C{NO [EXPUNGEISSUED]}.
  - A multipart message up to L{PARTS_LIMIT} octets is parsed into its
    MIME parts in the pool, and its parts are held while the FETCH runs
    (C{getSubPart} is synchronous); a bigger one is served as a single part.
  - Header values are sent as ASCII (Twisted's C{_formatHeaders} encodes
    them so); other octets become C{?}.  Repeated fields (C{Received}) are
    all kept.

Other sessions' changes reach a stock server session through
L{imap4.IMailboxListener}: new messages as C{newMessages} (EXISTS), flag
changes as C{flagsChanged} (FETCH FLAGS).  Twisted has no listener method
for expunges, so another session's expunges stay queued in the session's
L{FolderView} (its message numbers do not move, as RFC 3501 7.4.1 wants)
until this session's own EXPUNGE, whose answer lists them all (or CLOSE,
which reports none, as RFC 3501 6.4.2 says).

Twisted's server never calls C{removeListener} or closes the mailbox when
the connection ends; the account's C{logout} (the realm's logout callable,
which the server calls from C{connectionLost}) closes every mailbox the
session was given.

L{SeamIMAP4Server} is Twisted's server with the one method fixed whose
defects break this seam for ordinary clients: APPEND without a flag list,
and APPEND to a missing folder (C{NO [TRYCREATE]}).
"""

from __future__ import annotations

import email.utils

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import imap4
from zope.interface import implementer

from twisted_maillab.imap.twistedseammessage import HEADER_LIMIT, PARTS_LIMIT, Matcher, TwistedMessage, readHeaders, text
from twisted_maillab.store import dovecot
from twisted_maillab.store.errors import InvalidMailboxName, MailboxNotFound, StoreError
from twisted_maillab.store.reading import virtualSizes
from twisted_maillab.store.view import FolderView

__all__ = [
    "HEADER_LIMIT",
    "PARTS_LIMIT",
    "SeamIMAP4Server",
    "TwistedAccount",
    "TwistedMailbox",
    "TwistedMessage",
    "registerTwistedAccount",
]

log = Logger()

_SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")

# select()'s rw when Twisted's server passes none (APPEND and COPY).
_UNSPECIFIED = object()


def registerTwistedAccount(realm, store) -> None:
    """
    Make the realm answer logins asking for L{imap4.IAccount} with a
    L{TwistedAccount} over C{store}; the Maildir and the special-use folders
    are created at login (the store's C{autocreate_folders}).  Call it once
    per realm, from the builder that owns the store (the realm refuses a
    second factory for an interface, as for POP3's).
    """

    def factory(account):
        avatar = TwistedAccount(store, account)
        return store.mailboxes(account).ensureDefaults().addCallback(lambda _: avatar)

    realm.registerAvatarFactory(imap4.IAccount, factory)


def _storeFlags(flags) -> list[str]:
    # \Recent is the session's, never stored (RFC 3501 2.3.2)
    return [f for f in (text(flag) for flag in flags or ()) if f.lower() != "\\recent"]


@implementer(imap4.IMailboxInfo)
class _FolderInfo:
    """
    What LIST needs of a folder that is not opened for it.
    """

    def __init__(self, flags):
        self._flags = flags

    def getFlags(self):
        return list(self._flags)

    def getHierarchicalDelimiter(self):
        return "/"


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class TwistedAccount:
    """
    One login's view of an account's folders, for Twisted's IMAP server.

    @param store: the L{twisted_maillab.store.Store}.
    @param account: the L{twisted_maillab.account.Account}.
    """

    def __init__(self, store, account):
        self.store = store
        self.account = account
        self._lock = defer.DeferredLock()
        self._subscribed: set[str] = set()
        self._mailboxes: set = set()

    @property
    def _boxes(self):
        # asked for each time: the store forgets an idle account's object
        return self.store.mailboxes(self.account)

    def _serial(self, what: str, f, *args):
        """
        Run C{f(*args)} after the account's earlier operations; failures
        are logged (Twisted has already answered the client).
        """
        d = self._lock.run(f, *args)

        def failed(failure):
            if failure.check(StoreError):
                # the client's request was refused by the store: one line
                log.warn("{what} failed for {user}: {error}", what=what, user=self.account.name, error=failure.value)
            else:
                log.failure("{what} failed for {user}", failure, what=what, user=self.account.name)

        d.addErrback(failed)
        return d

    @staticmethod
    def _checkName(name: str) -> str:
        name = name.rstrip("/")
        if name.upper() == "INBOX":
            raise imap4.MailboxException("INBOX always exists")
        try:
            dovecot.folderDirName(name, "/")
        except InvalidMailboxName as e:
            raise imap4.MailboxException(str(e)) from None
        return name

    # -- IAccountIMAP ---------------------------------------------------

    def addMailbox(self, name, mbox=None):
        if mbox is not None:
            raise imap4.MailboxException("a mailbox from elsewhere cannot be added to the Maildir")
        return self.create(name)

    def create(self, pathspec):
        name = self._checkName(text(pathspec))
        # Maildir++ is flat: parents need no directory of their own.
        self._serial(f"CREATE {name}", lambda: self._boxes.create(name))
        return True

    def delete(self, name):
        name = self._checkName(text(name))
        self._serial(f"DELETE {name}", lambda: self._boxes.delete(name))
        self._subscribed.discard(name)

    def rename(self, oldname, newname):
        old, new = self._checkName(text(oldname)), self._checkName(text(newname))
        self._serial(f"RENAME {old}", lambda: self._boxes.rename(old, new))

    def isSubscribed(self, name):
        name = text(name)
        return ("INBOX" if name.upper() == "INBOX" else name) in self._subscribed

    def subscribe(self, name):
        name = text(name)
        name = "INBOX" if name.upper() == "INBOX" else name
        self._subscribed.add(name)
        self._serial(f"SUBSCRIBE {name}", lambda: self._boxes.subscribe(name))

    def unsubscribe(self, name):
        name = text(name)
        name = "INBOX" if name.upper() == "INBOX" else name
        self._subscribed.discard(name)
        self._serial(f"UNSUBSCRIBE {name}", lambda: self._boxes.unsubscribe(name))

    def listMailboxes(self, ref, wildcard):
        ref, wildcard = text(ref), text(wildcard)
        if ref and not ref.endswith("/") and wildcard:
            ref += "/"
        pattern = imap4.wildcardToRegexp(ref + wildcard, "/")

        def listed(infos):
            self._subscribed = {info.name for info in infos if info.subscribed}
            out = []
            for info in infos:
                if not pattern.match(info.name):
                    continue
                flags = ["\\HasChildren" if info.hasChildren else "\\HasNoChildren"]
                if not info.exists:
                    flags.append("\\Noselect")
                if info.specialUse:
                    flags.append(info.specialUse)
                out.append((info.name, _FolderInfo(flags)))
            return out

        return self._lock.run(self._boxes.list).addCallback(listed)

    def select(self, name, rw=_UNSPECIFIED):
        """
        Open a folder: a L{TwistedMailbox}, or L{None} (Twisted's "no such
        mailbox") when it does not exist.  See the module docstring for
        C{rw}.
        """
        name = text(name)
        claim = rw is not _UNSPECIFIED and bool(rw)
        writeable = rw is _UNSPECIFIED or bool(rw)
        return self._lock.run(self._select, name, rw, writeable, claim)

    @defer.inlineCallbacks
    def _select(self, name, rw, writeable, claim):
        try:
            folder = yield self._boxes.open(name)
        except (MailboxNotFound, InvalidMailboxName):
            return None
        try:
            # what another program changed since the folder was last looked at
            yield folder.refresh()
            recent = set(folder.recentUids())
            if claim:
                recent = set((yield folder.claimRecent()))
        except BaseException:
            folder.close()
            raise
        mailbox = TwistedMailbox(self, folder, writeable, recent, transient=rw is _UNSPECIFIED)
        self._mailboxes.add(mailbox)
        return mailbox

    def _forget(self, mailbox) -> None:
        self._mailboxes.discard(mailbox)

    def logout(self) -> None:
        """
        The session ended (the realm's logout callable): give back every
        folder it still holds (Twisted's server does not on LOGOUT or a
        dropped connection).
        """
        for mailbox in list(self._mailboxes):
            mailbox.close()

    # -- INamespacePresenter (RFC 2342) -------------------------------

    def getPersonalNamespaces(self):
        return [["", "/"]]

    def getSharedNamespaces(self):
        return None

    def getUserNamespaces(self):
        return None


class _Relay:
    """
    The mailbox's folder listener: subscribed after the view, so the view
    has queued a change when the mailbox hears of it.
    """

    def __init__(self, mailbox):
        self.mailbox = mailbox

    def messagesAdded(self, folder, uids):
        self.mailbox._changed()

    def flagsChanged(self, folder, uids):
        self.mailbox._changed()

    def folderReset(self, folder):
        log.info("{name} was deleted, renamed or reset under a Twisted IMAP session", name=folder.name)


@implementer(imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier, imap4.ICloseableMailbox)
class TwistedMailbox:
    """
    A folder as one session sees it: Twisted's sequence numbers are the
    session's L{FolderView}.
    """

    def __init__(self, account, folder, writeable: bool, recent: set, transient: bool = False):
        self.account = account
        self.folder = folder
        self.name = folder.name
        self.writeable = writeable
        self.recent = recent
        self.view = FolderView(folder)
        self._relay = _Relay(self)
        folder.subscribe(self._relay)
        self.listeners: list = []
        self._busy = 0
        # opened by Twisted's server for APPEND or COPY, which never closes it
        self._transient = transient
        self._closed = False
        self._count = len(self.view)

    # -- IMailboxInfo ---------------------------------------------------

    def getFlags(self):
        keywords = self.folder.keywordNames() if not self._closed else []
        return list(_SYSTEM_FLAGS) + ["\\Recent"] + keywords

    def getHierarchicalDelimiter(self):
        return "/"

    # -- IMailbox -------------------------------------------------------

    def getUIDValidity(self):
        return self.folder.uidValidity

    def getUIDNext(self):
        return self.folder.uidNext

    def getUID(self, message):
        return self.view.uidAt(message)

    def getMessageCount(self):
        return self._count if self._closed else len(self.view)

    def getRecentCount(self):
        return sum(1 for uid in self.view.uids if uid in self.recent)

    def getUnseenCount(self):
        messages = self.folder.messages
        return sum(1 for uid in self.view.uids if uid in messages and "S" not in messages[uid].letters)

    def isWriteable(self):
        return self.writeable

    def destroy(self):
        raise imap4.MailboxException("delete a folder through the account")

    def requestStatus(self, names):
        # Twisted's server calls this only on a mailbox select() opened for
        # STATUS, which it then drops: give the folder back now.
        try:
            return imap4.statusRequestHelper(self, names)
        finally:
            self.close()

    def addListener(self, listener):
        if listener not in self.listeners:
            self.listeners.append(listener)

    def removeListener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def addMessage(self, message, flags=(), date=None):
        """
        APPEND: store C{message} (a file, or bytes) in the folder.

        @return: Deferred firing with the new UID.
        """
        internalDate = None
        if date:
            parsed = email.utils.parsedate_tz(text(date))
            if parsed is None:
                return defer.fail(imap4.MailboxException(f"bad date {text(date)!r}"))
            internalDate = email.utils.mktime_tz(parsed)
        if hasattr(message, "seek"):
            message.seek(0)
        return self._run(self.folder.append(message, _storeFlags(flags), internalDate))

    def _run(self, d):
        """
        Track an operation of a mailbox Twisted opened for APPEND or COPY
        only (it never closes those): the folder goes back when the last
        one is done.
        """
        self._busy += 1

        def done(result):
            self._busy -= 1
            self._changed()
            if self._transient and not self._busy:
                # a turn later: Twisted's COPY calls copy() once per message,
                # and a synchronous store finishes each before the next call
                self.folder.store.clock.callLater(0, self._closeIfIdle)
            return result

        return d.addBoth(done)

    def _closeIfIdle(self) -> None:
        if not self._busy and not self.listeners:
            self.close()

    def expunge(self):
        """
        EXPUNGE/CLOSE: delete the \\Deleted messages and return the
        sequence numbers to report, other sessions' queued expunges
        included, each relative to the numbering after the previous one.
        """
        if not self.writeable:
            return defer.fail(imap4.ReadOnlyMailbox("the mailbox is read-only"))
        # New messages are announced first, with the count the client
        # still has; after the EXPUNGE lines the count changes.
        self._changed()

        def expunged(uids):
            self.view.expungedHere(uids)
            changes = self.view.takeChanges(expunges=True)
            if changes.exists is not None or changes.flagsChanged:
                # after Twisted has written the EXPUNGE lines
                self.folder.store.clock.callLater(0, self._announce, changes)
            return changes.expunged

        return self.folder.expunge(origin=self.view).addCallback(expunged)

    def _resolve(self, messages, uid: bool) -> list[tuple[int, int]]:
        """
        A L{imap4.MessageSet} as C{[(seq, uid), ...]} of messages this
        session numbers; C{*} is the last one (RFC 3501 6.4.8).
        """
        uids = self.view.uids
        messages.last = (uids[-1] if uids else 0) if uid else len(uids)
        # membership, never iteration: "1:4294967295" is a few bytes to send
        if uid:
            return [(seq, u) for seq, u in enumerate(uids, 1) if u in messages]
        return [(seq, u) for seq, u in enumerate(uids, 1) if seq in messages]

    @defer.inlineCallbacks
    def fetch(self, messages, uid):
        pairs = self._resolve(messages, uid)
        live = [u for _, u in pairs if not self.view.gone(u)]
        yield self.folder.prefetch(live)
        parsed = yield readHeaders(self.folder, live)
        sizes = yield virtualSizes(self.folder, live)
        out = []
        for seq, u in pairs:
            head = parsed.get(u)
            if head is None or u not in sizes:
                out.append((seq, TwistedMessage(self, u, None, 0, 0)))
                continue
            headers, bodyStart, headerSize, parts = head
            out.append((seq, TwistedMessage(self, u, headers, bodyStart, sizes[u], headerSize, parts)))
        return out

    def store(self, messages, flags, mode, uid):
        if not self.writeable:
            return defer.fail(imap4.ReadOnlyMailbox("the mailbox is read-only"))
        pairs = self._resolve(messages, uid)
        seqs = {u: seq for seq, u in pairs if not self.view.gone(u)}
        how = {1: "add", -1: "remove", 0: "replace"}[mode]
        d = self.folder.setFlags(list(seqs), _storeFlags(flags), how, origin=self.view)

        def stored(result):
            return {seqs[u]: self._flagsOf(u, f) for u, f in result.items() if u in seqs}

        return d.addCallback(stored)

    def _flagsOf(self, uid, flags) -> list[str]:
        out = sorted(flags)
        if uid in self.recent:
            out.append("\\Recent")
        return out

    # -- listener side --------------------------------------------------

    def _changed(self) -> None:
        """
        Take the view's additions and flag changes (never expunges, see
        the module docstring) and tell the session.
        """
        if self._closed:
            return
        self._announce(self.view.takeChanges(expunges=False))

    def _announce(self, changes) -> None:
        if self._closed:
            return
        for listener in list(self.listeners):
            if changes.exists is not None:
                listener.newMessages(changes.exists, None)
            if changes.flagsChanged:
                messages = self.folder.messages
                listener.flagsChanged(
                    {
                        self.view.seqOf(u): self._flagsOf(u, self.folder.flags(u))
                        for u in changes.flagsChanged
                        if u in messages
                    }
                )

    # -- ISearchableMailbox -----------------------------------------------

    @defer.inlineCallbacks
    def search(self, query, uid):
        """
        SEARCH over flags, sets, sizes and header fields, with NOT, OR
        and parentheses; other keys are refused (Twisted answers BAD).

        @return: Deferred firing with sequence numbers (Twisted maps them
            to UIDs for UID SEARCH).
        """
        uids = self.view.uids
        live = [u for u in uids if not self.view.gone(u)]
        matcher = Matcher(query, self)
        headers = {}
        sizes = {}
        if matcher.needsHeaders:
            headers = yield readHeaders(self.folder, live)
        if matcher.needsSizes:
            sizes = yield virtualSizes(self.folder, live)
        found = []
        for seq, u in enumerate(uids, 1):
            if u in self.folder.messages and matcher.match(seq, u, headers.get(u), sizes.get(u)):
                found.append(seq)
        return found

    # -- IMessageCopier -------------------------------------------------

    def copy(self, message):
        """
        COPY into this folder: a hard link keeping flags and the internal
        date (L{Folder.copyTo}) for our own messages.

        @return: Deferred firing with the new UID.
        """
        source = getattr(message, "mailbox", None)
        if not isinstance(message, TwistedMessage) or source.folder.store is not self.folder.store:
            body = imap4.IMessageFile(message).open()
            return self.addMessage(body, message.getFlags(), message.getInternalDate())
        d = source.folder.copyTo([message.uid], self.folder)
        return self._run(d.addCallback(lambda pairs: pairs[0][1] if pairs else None))

    # -- ICloseableMailbox ----------------------------------------------

    def close(self):
        if self._closed:
            return
        self._count = len(self.view)
        self._closed = True
        self.listeners = []
        self.folder.unsubscribe(self._relay)
        self.view.close()
        if self.account is not None:
            self.account._forget(self)


class SeamIMAP4Server(imap4.IMAP4Server):
    """
    Twisted's L{imap4.IMAP4Server} with the one defect fixed that breaks
    this seam for ordinary clients.
    """

    def _cbAppendGotMailbox(self, mbox, tag, flags, date, message):
        # IMAP4Server._cbAppendGotMailbox iterates the flag list, which its
        # opt_plist parser leaves as None when APPEND has none (what
        # imaplib's append(mailbox, None, None, message) and most clients
        # send), and answers a missing mailbox with a str where bytes are
        # needed: both TypeErrors became "BAD Server error" instead of OK
        # and RFC 3501 6.3.11's "NO [TRYCREATE]".
        if not mbox:
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return
        return super()._cbAppendGotMailbox(mbox, tag, flags or [], date, message)
