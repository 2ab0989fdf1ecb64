"""
One Maildir folder with its in-memory index, kept in step with the disk.

A L{Folder} is shared by every session of the process that opened it (the
store keeps one per directory), so an SMTP delivery, an IMAP session in IDLE
and a POP3 session see the same UIDs and are told about changes at once.

Threading: every operation that touches the disk runs in the store's thread
pool, one at a time per folder (a L{DeferredLock}); the thread part only
reads the index and returns a L{SyncResult} describing the changes (stat
results included), which is applied on the reactor thread, after which
listeners are called.  So the index is only ever mutated on the reactor
thread and readers there never see half an update.  The thread part never
touches the clock's timers either: Twisted's reactor is not thread-safe.
Methods that must run on the reactor thread call L{Folder._reactorOnly},
which raises L{ServerBug} in a store pool thread, so a breach fails loudly
in the tests instead of corrupting a timer queue in production.

The code is in four modules:

  - this one: the reactor side (the index, events, lifetime, refresh and
    L{Folder._apply}, and the public operations, which take the lock);
  - L{twisted_maillab.store.folderindex}: the reactor side's reading of
    the index (UIDs, flags, \\Recent, sizes and dates, POP3 UIDLs);
  - L{twisted_maillab.store.foldersync}: the thread side of keeping the
    index in step with the disk (uidlist, keywords, directory listings,
    opening message files);
  - L{twisted_maillab.store.folderops}: the thread side of the operations
    (flags, expunge, append, copy, move), sharing one rename-with-resync
    path for files another program renamed.

Scale: opening a folder reads C{dovecot-uidlist} once and lists C{new/} and
C{cur/} without a C{stat} per file (sizes come from C{,S=}/C{,W=} in the
names; internal dates are read lazily).  Later refreshes read only what was
appended to the uidlist (same inode, larger size) and relist a directory
only when its mtime changed or inotify named a file the index does not
expect.  The folder's own renames and unlinks (STORE, APPEND, EXPUNGE,
claiming \\Recent) change the mtimes too: when a directory was unchanged
since the last listing just before them, its new mtime is taken as seen
(L{FolderSync._ownStamps}), and inotify events that arrive while such an
operation is in flight are judged once its result is applied, so a long
IMAP session does not relist thousands of names after each command.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.interfaces import IFolder

from twisted_maillab.store import dovecot
from twisted_maillab.store.errors import (
    MailboxNotFound,
    MessageVanished,
    ServerBug,
    StoreError,
    fromOSError,
)
from twisted_maillab.store.folderindex import FolderIndex
from twisted_maillab.store.folderops import FolderOperations
from twisted_maillab.store.foldersync import FolderSync, openFolderDirs
from twisted_maillab.store.message import Message, _Sync
from twisted_maillab.store.workers import inWorker

__all__ = ["Folder", "Message", "openFolderDirs"]

log = Logger()

# The most inotify events kept while the folder is locked; past it, the
# next refresh lists both directories instead.
_HELD_EVENTS = 10000
_METADATA = frozenset({dovecot.UIDLIST, dovecot.KEYWORDS})
_UIDLIST_LOCK = dovecot.UIDLIST + ".lock"


def _twoLocks(first: defer.DeferredLock, second: defer.DeferredLock):
    """
    Acquire two folder locks in a fixed order (by id) so a MOVE A->B and a
    MOVE B->A cannot deadlock; returns a Deferred firing with a release
    callable.
    """
    ordered = sorted({id(first): first, id(second): second}.items())
    locks = [lock for _, lock in ordered]

    @defer.inlineCallbacks
    def acquire():
        for lock in locks:
            yield lock.acquire()

        def release():
            for lock in reversed(locks):
                lock.release()

        return release

    return acquire()


@implementer(IFolder)
class Folder(FolderIndex, FolderSync, FolderOperations):
    """
    An open Maildir folder.  Obtain it from L{Mailboxes.open} and give it
    back with L{close}.

    @ivar name: the folder name (C{"INBOX"}, C{"Archive/2024"}).
    @ivar uidValidity: UIDVALIDITY (from the uidlist header).
    @ivar guid: the mailbox GUID (uidlist header C{G}).
    """

    def __init__(self, store, mailboxes, name: str, dirName: str | None):
        self.store = store
        self.mailboxes = mailboxes
        self.name = name
        self.dirName = dirName  # None for INBOX (the Maildir root)
        self.owner = mailboxes.owner
        self.messages: dict[int, Message] = {}
        self.byBase: dict[str, int] = {}
        self._uids: list[int] = []
        self._uidsSorted = True
        self._newUids: set[int] = set()  # messages in new/ (\\Recent)
        self._claiming: set[int] = set()  # in new/, claimed, not yet moved
        self._pending: dict[str, tuple[int, str]] = {}
        self.keywords = dovecot.Keywords()
        self._keywordsStamp = None
        # info string -> flags, for the current keywords (see flags())
        self._flagsByInfo: dict = {}
        self.header = dovecot.UidlistHeader()
        self._ustate = dovecot.UidlistState()
        self._stamps = (None, None)
        self._listeners: list = []
        self._lock = defer.DeferredLock()
        self._fds: dict[str, int] = {}
        self._refs = 0
        self._closed = False
        self._defunct = False  # deleted or renamed away (see _detach)
        self._lingerCall = None
        self._watch = None
        self._refreshCall = None
        self._forceNew = self._forceCur = False
        self._heldEvents: list = []  # inotify events that arrived while working
        self._working = 0

    def _reactorOnly(self) -> None:
        """
        Raise L{ServerBug} when called from a store pool thread: the caller
        mutates the index or uses the clock, which only the reactor thread
        may do.
        """
        if inWorker():
            raise ServerBug(f"folder {self.name}: reactor-only code ran in a store thread")

    def _openedFile(self, result):
        f, relocated = result
        if relocated:
            self._scheduleRefresh(forceNew=True, forceCur=True)
        return f

    def openMessage(self, uid: int):
        """
        Open the message for reading: a binary file object, positioned at 0,
        opened with C{O_NOFOLLOW} relative to the folder's directory fd and
        refused if it is not a regular file owned by the account.  Read it
        in chunks; it is never loaded whole by the store.  (If another
        program renamed the file meanwhile, finding it lists the directory:
        protocol code should prefer L{openMessageDeferred}.)

        @raise MessageVanished: expunged by another process.
        @raise UnsafePath: a symlink, FIFO or foreign file took its place.
        """
        try:
            return self._openedFile(self._openFile(uid))
        except MessageVanished:
            self._scheduleRefresh(forceNew=True, forceCur=True)
            raise

    def openMessageDeferred(self, uid: int):
        """
        L{openMessage} in the store's thread pool: the rare fallback (the
        file was renamed by another program and must be found by listing a
        big directory) never runs on the reactor thread.

        @return: Deferred firing with the binary file object.
        """
        try:
            self.message(uid)
        except MessageVanished as e:
            return defer.fail(e)

        def vanished(failure):
            failure.trap(MessageVanished)
            self._scheduleRefresh(forceNew=True, forceCur=True)
            return failure

        d = self.store.run(_mapErrors(self._openFile, self.name), uid)
        return d.addCallbacks(self._openedFile, vanished)

    def openMessageInThread(self, uid: int):
        """
        Thread (the store's pool): L{openMessage} for code already running
        there, reading many messages in one job.  It touches nothing the
        reactor owns: when the file had been renamed or is gone, the
        caller tells the folder with L{filesMoved} back on the reactor.

        @return: C{(file, relocated)}: a binary file object, and whether
            it was found under another name.
        @raise MessageVanished: expunged by another process.
        @raise UnsafePath: a symlink, FIFO or foreign file took its place.
        """
        return self._openFile(uid)

    def filesMoved(self) -> None:
        """
        Reactor: message files were found renamed or missing (see
        L{openMessageInThread}): refresh soon, listing both directories.
        """
        self._scheduleRefresh(forceNew=True, forceCur=True)

    def prefetch(self, uids):
        """
        Read the internal date (and the size, where the name has no
        C{,S=}) of many messages in the thread pool, so that a FETCH of
        INTERNALDATE/RFC822.SIZE over thousands of messages does not stat
        them one by one on the reactor thread.  Vanished messages are
        skipped (the refresh that follows reports them).

        @return: Deferred firing when done.
        """
        wanted = [self.messages[uid] for uid in uids if uid in self.messages]
        wanted = [m for m in wanted if m.mtime is None or m.size is None]
        if not wanted:
            return defer.succeed(None)

        def apply(found):
            for message, size, mtime in found:
                self._setStat(message, size, mtime)

        return self.store.run(_mapErrors(self._statMany, self.name), wanted).addCallback(apply)


    def snapshot(self):
        """
        POP3's view of the folder at login (RFC 1939: the maildrop is fixed
        for the session): C{[(uid, size, uidl), ...]} in UID order.  Sizes
        are the stored octets; C{,W=} (CRLF) sizes are available as
        C{message(uid).vsize} for a C{LIST} that counts CRLF.  Files whose
        names lack C{,S=} (written by another MTA) are stat'ed here: call
        C{prefetch(folder.uids())} first to do that in the thread pool.
        """
        return [(uid, self.size(uid), self.pop3Uidl(uid)) for uid in self.uids()]


    # ------------------------------------------------------------------
    # Events


    def subscribe(self, listener) -> None:
        """
        Be told about changes.  C{listener} may define any of
        C{messagesAdded(folder, uids)}, C{flagsChanged(folder, uids)},
        C{messagesExpunged(folder, uids)}, C{folderReset(folder)} (the
        UIDVALIDITY changed: reselect).  See L{IFolderListener}.
        """
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _publish(self, method: str, origin, *args) -> None:
        self._reactorOnly()
        for listener in list(self._listeners):
            if listener is origin:
                continue
            callback = getattr(listener, method, None)
            if callback is None:
                continue
            try:
                callback(self, *args)
            except Exception:
                log.failure("folder listener {listener!r} failed in {method}", listener=listener, method=method)

    # ------------------------------------------------------------------
    # Opening and closing


    def _dirFd(self) -> int:
        return self._fds["root"]

    @defer.inlineCallbacks
    def _open(self, create: bool):
        yield self._lock.acquire()
        try:
            yield self.store.run(_mapErrors(self._openWork, self.name), create)
            yield self.store.run(_mapErrors(self._cleanTmp, self.name), self.store.clock.seconds())
            sync = yield self.store.run(_mapErrors(self._syncWork, self.name), True, True, None, True)
            self._apply(sync, None, publish=False)
        except BaseException:
            self._closeFds()
            raise
        finally:
            self._lock.release()
        self._watch = self.store._watchFolder(self)
        return self

    def _closeFds(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}

    def close(self) -> None:
        """
        Give back a reference obtained from L{Mailboxes.open}.  After the
        last one the index is kept for the store's C{linger} seconds (a
        client that reconnects does not pay for reading a big folder
        again), then the directory fds are closed and watching stops.
        """
        self._refs -= 1
        if self._refs > 0 or self._closed:
            return
        linger = self.store.linger
        if linger and not self.store._closing and not self._defunct:
            if self._lingerCall is None or not self._lingerCall.active():
                self._lingerCall = self.store.clock.callLater(linger, self._reallyClose)
            return
        self._reallyClose()

    def _detach(self) -> None:
        """
        The folder was deleted (IMAP DELETE, maybe by another session; a
        RENAME by this process moves it instead, see L{_renamed}):
        sessions holding it are told to reselect, further operations fail
        with L{MailboxNotFound}, and the next
        L{Mailboxes.open} of the name gets a fresh folder.  The directory
        fds stay open until the last holder calls L{close}: closing them
        under a session that is still reading would hand its fd numbers to
        unrelated files.
        """
        self._reactorOnly()
        if self._defunct or self._closed:
            return
        self._defunct = True
        self.mailboxes._forget(self)
        self._stopWatching()
        self._publish("folderReset", None)
        if self._refs <= 0:
            self._reallyClose()

    def _renamed(self, name: str, dirName: str) -> None:
        """
        The folder's directory was renamed (IMAP RENAME, by this process):
        the folder goes on under its new name.  Its directory fds still
        name the same directories (a rename moves the name, not the
        inode), so the index, the UIDs (the uidlist moved with the
        directory) and the sessions that have it selected stay valid
        (RFC 3501 6.3.5 does not end them); only the name, the store's
        key for it and the inotify watches (set by path) change.
        """
        self._reactorOnly()
        if self._defunct or self._closed:
            return
        self.mailboxes._forget(self)
        self.name, self.dirName = name, dirName
        self.mailboxes._open[name] = self
        self._stopWatching()
        self._watch = self.store._watchFolder(self)

    def _stopWatching(self) -> None:
        # no more inotify events or refreshes for a folder going away
        if self._watch is not None:
            self._watch()
            self._watch = None
        if self._refreshCall is not None and self._refreshCall.active():
            self._refreshCall.cancel()

    def _reuse(self) -> None:
        self._refs += 1
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        self._lingerCall = None

    def _reallyClose(self) -> None:
        if self._refs <= 0 and not self._closed:
            self._closed = True
            if self._lingerCall is not None and self._lingerCall.active():
                self._lingerCall.cancel()
            self._lingerCall = None
            self.mailboxes._forget(self)
            self._stopWatching()
            self._lock.run(lambda: self._closeFds()).addBoth(lambda _: self.mailboxes._release())

    # ------------------------------------------------------------------
    # Refresh, and applying what the thread side found


    def refresh(self, full: bool = False):
        """
        Bring the index up to date with the disk and notify listeners.

        @param full: relist both directories even if their mtimes did not
            change (the periodic rescan does this now and then).
        @return: a Deferred firing when done.
        """
        return self._locked(self._syncWork, full, full, None, False)

    def _scheduleRefresh(self, forceNew=False, forceCur=False, delay: float = 0.05):
        """
        Coalesce bursts of inotify events into one refresh.
        """
        self._reactorOnly()
        if self._closed or self._defunct:
            return
        self._forceNew |= forceNew
        self._forceCur |= forceCur
        if self._refreshCall is not None and self._refreshCall.active():
            return

        def fire():
            forceNew, forceCur = self._forceNew, self._forceCur
            self._forceNew = self._forceCur = False
            d = self._locked(self._syncWork, forceNew, forceCur, None, False)
            d.addErrback(lambda f: log.failure("refresh of {name} failed", f, name=self.name))

        self._refreshCall = self.store.clock.callLater(delay, fire)

    def _inotifyEvent(self, subdir: str | None, name: str, gone: bool) -> None:
        """
        Called by the store's watcher.  Ignore events for changes the index
        already reflects (our own renames); otherwise schedule a refresh.
        While an operation holds the folder lock, its own renames may be
        reported before its result is applied: such events are judged
        once it is (L{_apply}), against the index that includes them.
        """
        if subdir is None:
            # The files themselves (a rewrite renamed over them, an append
            # closed), or the uidlist's dotlock going away (a writer that
            # keeps the file open is done with it); not the lock appearing
            # or the temporary files of a rewrite.
            if name in _METADATA or (gone and name == _UIDLIST_LOCK):
                self._scheduleRefresh()
            return
        if self._working:
            if len(self._heldEvents) < _HELD_EVENTS:
                self._heldEvents.append((subdir, name, gone))
            else:
                self._scheduleRefresh(forceNew=True, forceCur=True)
            return
        self._messageEvent(subdir, name, gone)

    def _messageEvent(self, subdir: str, name: str, gone: bool) -> None:
        base, info = dovecot.splitName(name)
        uid = self.byBase.get(base)
        message = self.messages.get(uid) if uid is not None else None
        matches = message is not None and message.subdir == subdir and message.filename == name
        if gone and not matches:
            return
        if not gone and matches:
            return
        self._scheduleRefresh(forceNew=subdir == "new", forceCur=subdir == "cur")

    def _locked(self, work, *args, origin=None, arrivals=None):
        """
        Run C{work(*args)} in a thread under the folder lock, apply the
        returned L{_Sync}, publish, and fire with its C{result}.

        @param arrivals: C{arrivals(sync) -> UIDs} that are recent though in
            C{cur/} (see L{_arrived}), recorded before listeners hear of
            the change (an IDLE session claims them when told).
        """
        if self._closed:
            return defer.fail(ServerBug(f"folder {self.name} is closed"))
        if self._defunct:
            return defer.fail(MailboxNotFound(f"{self.name} was deleted or renamed"))

        @defer.inlineCallbacks
        def run():
            self._holdEvents()
            try:
                sync = yield self.store.run(_mapErrors(work, self.name), *args)
                if arrivals is not None:
                    self._arrived(arrivals(sync))
                self._apply(sync, origin)
            finally:
                self._releaseEvents()
            return sync.result

        return self._lock.run(run)

    def _holdEvents(self) -> None:
        # an operation's thread work starts: see _inotifyEvent
        self._working += 1

    def _releaseEvents(self) -> None:
        # its result is applied (or it failed): judge what arrived meanwhile
        self._working -= 1
        if self._working:
            return
        held, self._heldEvents = self._heldEvents, []
        for event in held:
            self._messageEvent(*event)

    def _apply(self, sync: _Sync, origin, publish: bool = True) -> None:
        self._reactorOnly()
        for message, size, mtime in sync.stats:
            self._setStat(message, size, mtime)
        if sync.reset:
            self.messages.clear()
            self.byBase.clear()
            self._uids = []
            self._newUids = set()
            self.store.recent.forget(self._recentKey)
        if sync.header is not None:
            self.header = sync.header
        if sync.uidlistState is not None:
            self._ustate = sync.uidlistState
        if sync.keywords is not None:
            self.keywords = sync.keywords
            self._flagsByInfo = {}
            self._keywordsStamp = sync.keywordsStamp
        if sync.stamps is not None:
            self._stamps = sync.stamps
        if sync.pending is not None:
            self._pending = sync.pending
        self._pending.update(sync.pendingAdd)
        removed = []
        for uid in sync.removed:
            message = self.messages.pop(uid, None)
            if message is not None:
                self.byBase.pop(message.base, None)
                self._newUids.discard(uid)
                removed.append(uid)
        if removed:
            gone = set(removed)
            self._uids = [uid for uid in self._uids if uid not in gone]
            self.store.recent.discard(self._recentKey, gone)
        changed = []
        for uid, info, isNew in sync.updated:
            message = self.messages.get(uid)
            if message is None:
                continue
            oldLetters = message.letters
            message.info = info
            message.isNew = isNew
            if isNew:
                self._newUids.add(uid)
            else:
                self._newUids.discard(uid)
            if message.letters != oldLetters:
                changed.append(uid)
        added = []
        if not self.messages and sync.added:
            # first load (100,000 messages): build the index in one go
            self.messages = {m.uid: m for m in sync.added}
            self.byBase = {m.base: m.uid for m in sync.added}
            self._uids = sorted(self.messages)
            self._uidsSorted = True
            self._newUids = {m.uid for m in sync.added if m.isNew}
            if sync.pending is None:
                for message in sync.added:
                    self._pending.pop(message.base, None)
            added = self._uids[:] if publish else []
            sync = _Sync(reset=sync.reset)
        last = self._uids[-1] if self._uids else 0
        for message in sync.added:
            if message.uid in self.messages:
                continue
            self.messages[message.uid] = message
            self.byBase[message.base] = message.uid
            if message.isNew:
                self._newUids.add(message.uid)
            if self._pending:
                self._pending.pop(message.base, None)
            if message.uid < last:
                self._uidsSorted = False
            self._uids.append(message.uid)
            last = max(last, message.uid)
            added.append(message.uid)
        if not publish:
            return
        if sync.reset:
            self._publish("folderReset", None)
            return
        if removed:
            self._publish("messagesExpunged", origin, sorted(removed))
        if changed:
            self._publish("flagsChanged", origin, sorted(changed))
        if added:
            self._publish("messagesAdded", origin, sorted(added))

    # ------------------------------------------------------------------
    # Operations: the thread side is in FolderOperations


    def takeRecent(self, within=None, origin=None) -> set[int]:
        """
        Claim the recent messages now, on the reactor thread, so that no
        other session gets them (RFC 3501 2.3.2: one session sees a message
        as recent); those in C{new/} are then moved to C{cur/} (Dovecot
        does this when a session sees new mail) in the background.

        @param within: claim only these UIDs (the ones the session numbers).
        @return: the claimed UIDs: the caller's \\Recent set.
        """
        return self._claim(within, origin)[0]

    def claimRecent(self, origin=None, within=None):
        """
        L{takeRecent}, firing once the claimed messages of C{new/} are in
        C{cur/} (a POP3 RETR claims the one message it sent, as Dovecot's
        POP3 does).

        @return: Deferred firing with the claimed UIDs, ascending.
        """
        claimed, moved = self._claim(within, origin)
        return moved.addCallback(lambda _: sorted(claimed))

    def _claim(self, within, origin):
        self._reactorOnly()
        candidates = set(self.recentUids())
        if within is not None:
            candidates &= set(within)
        claimed = candidates | self.store.recent.take(self._recentKey, self.uidValidity, candidates)
        toMove = sorted(uid for uid in claimed if uid in self._newUids)
        if not toMove:
            return claimed, defer.succeed([])
        self._claiming.update(toMove)

        def failed(f):
            log.failure("moving claimed messages of {name} to cur/ failed", f, name=self.name)
            return []

        return claimed, self._locked(self._claimWork, toMove, origin=origin).addErrback(failed)

    def _unclaimedNew(self, uids) -> set[int]:
        """
        The UIDs among C{uids} in C{new/} that no session claimed: an
        operation that moves them to C{cur/} must keep them recent.
        """
        self._claiming &= self._newUids
        return (self._newUids - self._claiming) & set(uids)

    def _arrived(self, uids) -> None:
        """
        Messages written to C{cur/} by this process (APPEND with flags,
        COPY, MOVE) or moved there by a flag change before any session
        claimed them: recent until a session does.
        """
        self.store.recent.add(self._recentKey, self.uidValidity, uids)


    def setFlags(self, uids, flags, mode: str = "replace", origin=None):
        """
        Change flags: C{mode} is C{"replace"}, C{"add"} or C{"remove"}
        (IMAP STORE FLAGS, +FLAGS, -FLAGS).  System flags and keywords; a
        new keyword gets a letter in C{dovecot-keywords} (26 at most; more
        are ignored, as Dovecot does).  Messages in C{new/} move to C{cur/}.

        @param origin: a listener not to notify (the session asking).
        @return: Deferred firing with C{{uid: frozenset(flags)}} for the
            messages that still exist.
        """
        if mode not in ("replace", "add", "remove"):
            raise ValueError(mode)
        uids = list(uids)
        unclaimed = self._unclaimedNew(uids)

        def moved(sync):
            # still recent for the first session, though now in cur/
            return [uid for uid, _, isNew in sync.updated if uid in unclaimed and not isNew]

        d = self._locked(self._flagsWork, uids, list(flags), mode, origin=origin, arrivals=moved)
        return d.addCallback(lambda done: {uid: self.flags(uid) for uid in done if uid in self.messages})


    def expunge(self, uids=None, origin=None):
        """
        Delete messages: the given UIDs, or (L{None}) every message flagged
        C{\\Deleted} (IMAP EXPUNGE / POP3 QUIT).

        @return: Deferred firing with the expunged UIDs.
        """
        return self._locked(self._expungeWork, None if uids is None else list(uids), origin=origin)


    def append(self, source, flags=(), internalDate: float | None = None, origin=None):
        """
        IMAP APPEND: store a message read from C{source} (a binary file
        object, read in chunks, or L{bytes}).

        @param internalDate: POSIX time for the internal date (the file's
            mtime, as Dovecot reads it), default now.
        @return: Deferred firing with the new UID (for UIDPLUS APPENDUID).
        @raise QuotaExceeded: over the Maildir++ quota.
        """
        def inCur(sync):
            return [m.uid for m in sync.added if m.uid == sync.result and not m.isNew]

        return self._locked(self._appendWork, source, list(flags), internalDate, origin=origin, arrivals=inCur)

    def copyTo(self, uids, target: "Folder", origin=None, move: bool = False):
        """
        IMAP COPY (hard links, or a byte copy across file systems) or MOVE
        (C{move=True}: atomic renames) into C{target}, keeping flags and
        keywords (translated through each folder's C{dovecot-keywords}) and
        internal dates.

        @return: Deferred firing with C{[(sourceUid, targetUid), ...]} in
            source UID order (UIDPLUS COPYUID).
        """
        uids = sorted(set(uids))

        @defer.inlineCallbacks
        def run():
            if target is self:
                raise StoreError("copy into the same folder")
            release = yield _twoLocks(self._lock, target._lock)
            self._holdEvents()
            target._holdEvents()
            try:
                srcSync, dstSync, pairs = yield self.store.run(_mapErrors(self._copyWork, self.name), uids, target, move)
                self._apply(srcSync, origin)
                # before the target's listeners hear of them: a session
                # that has the target selected claims them at once
                target._arrived(t for _, t in pairs)
                target._apply(dstSync, origin)
            finally:
                target._releaseEvents()
                self._releaseEvents()
                release()
            return pairs

        return run()


def _mapErrors(work, name: str):
    """
    Thread work that raises L{StoreError}s only: an L{OSError} (EACCES,
    ENOSPC, EIO...) becomes the class a protocol can report.
    """

    def wrapped(*args):
        try:
            return work(*args)
        except StoreError:
            raise
        except OSError as e:
            raise fromOSError(e, name) from e

    return wrapped
