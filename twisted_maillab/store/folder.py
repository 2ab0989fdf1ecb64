"""
One Maildir folder with its in-memory index, kept in step with the disk.

A L{Folder} is shared by every session of the process that opened it (the
store keeps one per directory), so an SMTP delivery, an IMAP session in IDLE
and a POP3 session see the same UIDs and are told about changes at once.

Threading: every operation that touches the disk runs in the store's thread
pool, one at a time per folder (a L{DeferredLock}); the thread part only
reads the index and returns a L{_Sync} describing the changes (stat results
included), which is applied on the reactor thread, after which listeners
are called.  So the index is only ever mutated on the reactor thread and
readers there never see half an update.  The thread part never touches the
clock's timers either: Twisted's reactor is not thread-safe.  Methods that
must run on the reactor thread call L{_reactorOnly}, which raises
L{ServerBug} in a store pool thread, so a breach fails loudly in the tests
instead of corrupting a timer queue in production.

Scale: opening a folder reads C{dovecot-uidlist} once and lists C{new/} and
C{cur/} without a C{stat} per file (sizes come from C{,S=}/C{,W=} in the
names; internal dates are read lazily).  Later refreshes read only what was
appended to the uidlist (same inode, larger size) and relist a directory
only when its mtime changed or inotify named a file the index does not
expect.
"""

from __future__ import annotations

import errno
import os
import sys
import stat as _stat
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger

from twisted_maillab.store import _fs, dovecot
from twisted_maillab.store.workers import inWorker
from twisted_maillab.store.errors import (
    MailboxNotFound,
    MessageVanished,
    ServerBug,
    StoreError,
    UnsafePath,
    fromOSError,
)

log = Logger()

TMP_MAX_AGE = 36 * 3600  # Maildir spec: tmp/ files untouched for 36 hours are garbage
_COPY_CHUNK = 256 * 1024


class Message:
    """
    One message of the index (read-only for callers).

    @ivar uid: the IMAP UID (from C{dovecot-uidlist}).
    @ivar base: the base file name (without C{:2,...}).
    @ivar info: the info part after C{:} (C{"2,RS"}) or L{None}.
    @ivar isNew: L{True} while the file is in C{new/} (\\Recent).
    @ivar size: octets on disk (from C{,S=} or a C{stat}), or L{None} until known.
    @ivar vsize: octets with CRLF line ends (C{,W=}), or L{None}.
    @ivar mtime: the internal date (file mtime), or L{None} until known.
    @ivar ext: uidlist extension fields of the record, kept verbatim.
    """

    # 7 slots and shared (interned) info strings: about 250 bytes per
    # message with the two index dicts, for 100,000-message folders.
    __slots__ = ("uid", "base", "info", "isNew", "_size", "mtime", "ext")

    def __init__(self, uid, base, info, isNew, ext=""):
        self.uid = uid
        self.base = base
        self.info = info
        self.isNew = isNew
        self._size = None
        self.mtime = None
        self.ext = ext

    @property
    def size(self):
        if self._size is None:
            # parsed on demand: opening a folder must not pay for it
            size, _ = dovecot.sizeFromName(self.base)
            if size is not None:
                self._size = size
        return self._size

    @size.setter
    def size(self, value):
        self._size = value

    @property
    def vsize(self):
        return dovecot.sizeFromName(self.base)[1]

    @property
    def filename(self) -> str:
        return self.base if self.info is None else f"{self.base}:{self.info}"

    @property
    def subdir(self) -> str:
        return "new" if self.isNew else "cur"

    @property
    def letters(self) -> str:
        return dovecot.infoLetters(self.info)

    def __repr__(self):
        return f"<Message uid={self.uid} {self.subdir}/{self.filename}>"


@dataclass
class _Sync:
    """
    Changes computed in a thread, applied on the reactor thread.
    """

    added: list = field(default_factory=list)  # Message
    updated: list = field(default_factory=list)  # (uid, info, isNew)
    removed: list = field(default_factory=list)  # uid
    pending: dict | None = None  # replaces Folder._pending when not None
    stats: list = field(default_factory=list)  # (Message, size, mtime) read by a stat
    pendingAdd: dict = field(default_factory=dict)
    header: dovecot.UidlistHeader | None = None
    uidlistState: dovecot.UidlistState | None = None
    keywords: dovecot.Keywords | None = None
    keywordsStamp: tuple | None = None
    stamps: tuple | None = None
    reset: bool = False
    result: object = None


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



def openFolderDirs(
    rootFd: int, dirName: str | None, name: str, owner, create: bool, subdirs=("cur", "new", "tmp"), keepRoot=True
) -> dict:
    """
    Thread: open a folder's directories with C{O_NOFOLLOW} all the way down
    from the Maildir root, creating C{cur/ new/ tmp/} (and a Maildir++
    folder's C{maildirfolder} file) if asked.  Used by open folders and by
    delivery transactions alike.

    @param rootFd: the Maildir root (INBOX).
    @param dirName: the Maildir++ directory (C{.Sent}), L{None} for INBOX.
    @param name: the folder name, for errors.
    @param subdirs: which of C{cur new tmp} to open (a delivery to INBOX
        needs only C{new} and C{tmp}: opening the Maildir root made all
        three).
    @param keepRoot: whether to return the folder directory as C{"root"}.
    @return: C{{"root", "cur", "new", "tmp"}} (as asked) to fds the caller
        closes.
    @raise MailboxNotFound: the folder, or one of its directories, is
        missing and C{create} is false.
    """
    fds = {}
    try:
        if dirName is None:
            fds["root"] = os.dup(rootFd) if keepRoot else rootFd
        elif create:
            fds["root"] = _fs.makeDir(dirName, rootFd, owner)
        else:
            try:
                fds["root"] = _fs.openDir(dirName, rootFd)
            except FileNotFoundError:
                raise MailboxNotFound(f"{name}: no such mailbox") from None
        for sub in subdirs:
            if create:
                fds[sub] = _fs.makeDir(sub, fds["root"], owner)
            else:
                try:
                    fds[sub] = _fs.openDir(sub, fds["root"])
                except FileNotFoundError:
                    raise MailboxNotFound(f"{name}: not a Maildir (no {sub}/)") from None
        if dirName is not None and create:
            # Maildir++: a folder carries an empty "maildirfolder" file
            try:
                os.close(_fs.createFile(dovecot.MAILDIRFOLDER, fds["root"], owner))
            except FileExistsError:
                pass
    except BaseException:
        for key, fd in fds.items():
            if fd != rootFd:
                os.close(fd)
        raise
    if not keepRoot:
        folderFd = fds.pop("root")
        if folderFd != rootFd:
            os.close(folderFd)
    return fds


class Folder:
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
        self._pending: dict[str, tuple[int, str]] = {}
        self.keywords = dovecot.Keywords()
        self._keywordsStamp = None
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

    def _reactorOnly(self) -> None:
        """
        Raise L{ServerBug} when called from a store pool thread: the caller
        mutates the index or uses the clock, which only the reactor thread
        may do.
        """
        if inWorker():
            raise ServerBug(f"folder {self.name}: reactor-only code ran in a store thread")

    # ------------------------------------------------------------------
    # Reading the index (reactor thread, no I/O)

    @property
    def uidValidity(self) -> int:
        return self.header.uidValidity

    @property
    def uidNext(self) -> int:
        last = self.uids()[-1] if self.messages else 0
        return max(self.header.nextUid, last + 1)

    @property
    def guid(self) -> str:
        return self.header.guid

    def __len__(self) -> int:
        return len(self.messages)

    def uids(self) -> list[int]:
        """
        All UIDs, ascending (the IMAP sequence order).
        """
        if not self._uidsSorted:
            self._uids.sort()
            self._uidsSorted = True
        return self._uids

    def message(self, uid: int) -> Message:
        """
        @raise MessageVanished: no such UID (expunged).
        """
        try:
            return self.messages[uid]
        except KeyError:
            raise MessageVanished(f"UID {uid} does not exist in {self.name}") from None

    def flags(self, uid: int) -> frozenset[str]:
        """
        The message's flags: C{\\Seen}... and keyword names (no C{\\Recent}:
        that is per session, see L{claimRecent}).
        """
        result = set()
        for letter in self.message(uid).letters:
            if letter in dovecot.SYSTEM_FLAGS:
                result.add(dovecot.SYSTEM_FLAGS[letter])
            elif letter in dovecot.KEYWORD_LETTERS:
                result.add(self.keywords.nameOf(letter))
        return frozenset(result)

    def recentUids(self) -> list[int]:
        """
        UIDs of messages still in C{new/} (nobody claimed them yet).
        """
        return sorted(self._newUids)

    def unseenCount(self) -> int:
        return sum(1 for m in self.messages.values() if "S" not in m.letters)

    def keywordNames(self) -> list[str]:
        """
        Keywords defined in this folder (for IMAP FLAGS/PERMANENTFLAGS).
        """
        return [name for _, name in sorted(self.keywords.names.items())]

    def pop3Uidl(self, uid: int) -> str:
        """
        The POP3 UIDL: Dovecot's default C{pop3_uidl_format = %08Xu%08Xv}
        (UID then UIDVALIDITY in hex; Dovecot 2.3 expands it with lower-case
        digits, C{000000016b0b7eeb}, as its pop3 process answers on the same
        Maildir), so switching between Dovecot and maillab does not make
        POP3 clients download everything again.
        A uidlist C{P} extension (a UIDL migrated from another server, as
        Dovecot keeps it) takes precedence.
        """
        message = self.message(uid)
        for part in message.ext.split():
            if part.startswith("P") and len(part) > 1:
                return part[1:]
        return f"{uid:08x}{self.uidValidity:08x}"

    def size(self, uid: int) -> int:
        """
        The message size in octets as stored (a C{stat} if the name has no
        C{,S=}).
        """
        message = self.message(uid)
        if message.size is None:
            self._statMessage(message)
        return message.size

    def internalDate(self, uid: int) -> float:
        """
        The internal date (the file's mtime, as Dovecot uses it), POSIX time.
        """
        message = self.message(uid)
        if message.mtime is None:
            self._statMessage(message)
        return message.mtime

    def _statMessage(self, message: Message) -> None:
        self._reactorOnly()
        try:
            st, relocated = self._findAndStat(message)
        except MessageVanished:
            self._scheduleRefresh(forceNew=True, forceCur=True)
            raise
        if relocated:
            self._scheduleRefresh(forceNew=True, forceCur=True)
        self._setStat(message, st.st_size, st.st_mtime)

    def _setStat(self, message: Message, size: int, mtime: float) -> None:
        self._reactorOnly()
        if message._size is None:
            message.size = size
        message.mtime = mtime

    def _findAndStat(self, message: Message):
        """
        Any thread: C{(stat result, relocated)} of the message's file,
        found by its base name if another program renamed it; touches
        nothing shared.

        @raise MessageVanished: no file has its base name any more.
        @raise UnsafePath: not a regular file of the account's.
        """
        where = (message.subdir, message.filename)
        relocated = False
        for attempt in range(2):
            try:
                st = os.stat(where[1], dir_fd=self._fds[where[0]], follow_symlinks=False)
            except FileNotFoundError:
                if attempt == 0:
                    found = self._relocate(message)
                    if found is not None:
                        where, relocated = found, True
                        continue
                raise MessageVanished(f"UID {message.uid} vanished from {self.name}") from None
            if not _stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{where[1]} is not a regular file")
            self.owner.check(st, where[1])
            return st, relocated

    def _relocate(self, message: Message):
        """
        The file was renamed by another process (flags changed, moved from
        new/ to cur/): find it by its base name.  The caller schedules a
        refresh (the index itself is only changed under the folder lock).
        Blocking; rare.

        @return: C{(subdir, filename)} or L{None}.
        """
        for subdir in ("cur", "new"):
            for name in os.listdir(self._fds[subdir]):
                if name.partition(":")[0] == message.base:
                    return subdir, name
        return None

    def _openFile(self, uid: int):
        """
        Blocking: C{(file, relocated)}.
        """
        message = self.message(uid)
        where = (message.subdir, message.filename)
        relocated = False
        for attempt in range(2):
            try:
                fd = _fs.openRegular(where[1], self._fds[where[0]], self.owner)
            except FileNotFoundError:
                if attempt == 0:
                    found = self._relocate(message)
                    if found is not None:
                        where, relocated = found, True
                        continue
                raise MessageVanished(f"UID {uid} was expunged from {self.name}") from None
            return os.fdopen(fd, "rb"), relocated

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

        def work():
            found = []
            for message in wanted:
                try:
                    st = os.stat(message.filename, dir_fd=self._fds[message.subdir], follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not _stat.S_ISREG(st.st_mode):
                    continue
                found.append((message, st.st_size, st.st_mtime))
            return found

        def apply(found):
            for message, size, mtime in found:
                self._setStat(message, size, mtime)

        return self.store.run(_mapErrors(work, self.name)).addCallback(apply)

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

    def _openWork(self, create: bool) -> None:
        """
        Thread: open the directory fds, creating C{cur/ new/ tmp/} if asked.
        """
        rootFd = self.mailboxes._rootFd(create=create)
        self._fds = openFolderDirs(rootFd, self.dirName, self.name, self.owner, create)

    def _cleanTmp(self, now: float) -> int:
        """
        Thread: remove C{tmp/} files older than 36 hours (Maildir spec);
        they are what a crash between write and rename leaves.
        """
        removed = 0
        tmpFd = self._fds["tmp"]
        for entry in os.scandir(tmpFd):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _stat.S_ISDIR(st.st_mode):
                continue
            if st.st_mtime < now - TMP_MAX_AGE and st.st_atime < now - TMP_MAX_AGE:
                try:
                    os.unlink(entry.name, dir_fd=tmpFd)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

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
        The folder was deleted or renamed (IMAP DELETE/RENAME, maybe by
        another session): sessions holding it are told to reselect, further
        operations fail with L{MailboxNotFound}, and the next
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
        if self._watch is not None:
            self._watch()
            self._watch = None
        if self._refreshCall is not None and self._refreshCall.active():
            self._refreshCall.cancel()
        self._publish("folderReset", None)
        if self._refs <= 0:
            self._reallyClose()

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
            if self._watch is not None:
                self._watch()
                self._watch = None
            if self._refreshCall is not None and self._refreshCall.active():
                self._refreshCall.cancel()
            self._lock.run(lambda: self._closeFds()).addBoth(lambda _: self.mailboxes._release())

    # ------------------------------------------------------------------
    # Refresh

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
        """
        if subdir is None:
            if name.startswith(dovecot.UIDLIST) or name.startswith(dovecot.KEYWORDS):
                self._scheduleRefresh()
            return
        base, info = dovecot.splitName(name)
        uid = self.byBase.get(base)
        message = self.messages.get(uid) if uid is not None else None
        matches = message is not None and message.subdir == subdir and message.filename == name
        if gone and not matches:
            return
        if not gone and matches:
            return
        self._scheduleRefresh(forceNew=subdir == "new", forceCur=subdir == "cur")

    def _locked(self, work, *args, origin=None):
        """
        Run C{work(*args)} in a thread under the folder lock, apply the
        returned L{_Sync}, publish, and fire with its C{result}.
        """
        if self._closed:
            return defer.fail(ServerBug(f"folder {self.name} is closed"))
        if self._defunct:
            return defer.fail(MailboxNotFound(f"{self.name} was deleted or renamed"))

        @defer.inlineCallbacks
        def run():
            sync = yield self.store.run(_mapErrors(work, self.name), *args)
            self._apply(sync, origin)
            return sync.result

        return self._lock.run(run)

    def _apply(self, sync: _Sync, origin, publish: bool = True) -> None:
        self._reactorOnly()
        for message, size, mtime in sync.stats:
            self._setStat(message, size, mtime)
        if sync.reset:
            self.messages.clear()
            self.byBase.clear()
            self._uids = []
            self._newUids = set()
        if sync.header is not None:
            self.header = sync.header
        if sync.uidlistState is not None:
            self._ustate = sync.uidlistState
        if sync.keywords is not None:
            self.keywords = sync.keywords
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
    # Thread side: the uidlist

    def _lockUidlist(self) -> dovecot.DotLock:
        return dovecot.DotLock(
            self._dirFd(),
            dovecot.UIDLIST,
            self.owner,
            staleTimeout=self.store.lockStaleTimeout,
            hostname=self.store.hostname,
        )

    def _readUidlist(self, state: dovecot.UidlistState):
        """
        Read what changed in the uidlist since C{state}.

        @return: C{(records, newState, reset)}: the records read (all of
            them when C{reset}), or C{(None, None, False)} if unchanged.
            A missing or corrupt file gives C{([], emptyState, True)}.
        """
        dirFd = self._dirFd()
        try:
            fd = _fs.openRegular(dovecot.UIDLIST, dirFd, self.owner)
        except FileNotFoundError:
            if state.ino == 0:
                return None, None, False
            return [], dovecot.UidlistState(), True
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino == state.ino and st.st_size == state.size and st.st_mtime_ns == state.mtimeNs:
                return None, None, False
            new = dovecot.UidlistState(ino=st.st_ino, size=st.st_size, mtimeNs=st.st_mtime_ns)
            incremental = st.st_ino == state.ino and st.st_size >= state.offset and state.offset > 0
            try:
                if incremental:
                    f.seek(state.offset)
                    data = f.read(st.st_size - state.offset)
                    # only whole lines: a writer may be mid-line
                    end = data.rfind(b"\n") + 1
                    data = data[:end]
                    new.header = dovecot.UidlistHeader(**vars(state.header))
                    records = dovecot.parseRecords(data, state.header.version, state.lastUid)
                    new.offset = state.offset + end
                    new.lines = state.lines + data.count(b"\n")
                else:
                    data = f.read(st.st_size)
                    end = data.rfind(b"\n") + 1
                    data = data[:end]
                    headerEnd = data.find(b"\n")
                    if headerEnd < 0:
                        raise dovecot.UidlistFormatError("no header line")
                    new.header = dovecot.parseHeader(data[:headerEnd])
                    records = dovecot.parseRecords(data[headerEnd + 1 :], new.header.version)
                    new.offset = end
                    new.lines = data.count(b"\n") - 1
            except (dovecot.UidlistFormatError, ValueError) as e:
                log.warn("{name}: broken dovecot-uidlist ({error}); it will be rebuilt", name=self.name, error=e)
                return [], dovecot.UidlistState(), True
        if records:
            new.lastUid = records[-1][0]
            if new.header.nextUid <= new.lastUid:
                new.header.nextUid = new.lastUid + 1
        else:
            new.lastUid = state.lastUid if incremental else 0
        return records, new, not incremental

    def _writeUidlist(self, state, header, newRecords, allRecords, recreate: bool):
        """
        Thread, uidlist lock held: append C{newRecords}, or rewrite the file
        with C{allRecords} (sorted C{(uid, ext, base)}).  Returns the new state.
        """
        dirFd = self._dirFd()
        fsync = self.store.fsync
        if not recreate:
            fd = os.open(dovecot.UIDLIST, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirFd)
            try:
                st = os.fstat(fd)
                if st.st_ino == state.ino and st.st_size == state.offset:
                    data = b"".join(dovecot.formatRecord(*r) for r in newRecords)
                    _fs.writeAll(fd, data)
                    if fsync:
                        os.fdatasync(fd)
                    st = os.fstat(fd)
                    return dovecot.UidlistState(
                        ino=st.st_ino,
                        size=st.st_size,
                        mtimeNs=st.st_mtime_ns,
                        offset=st.st_size,
                        lastUid=max(state.lastUid, newRecords[-1][0] if newRecords else 0),
                        lines=state.lines + len(newRecords),
                        header=header,
                    )
            finally:
                os.close(fd)
        # Rewrite: dovecot-uidlist.tmp then rename, under the dotlock, as
        # maildir_uidlist_recreate() does.
        body = [header.format()]
        body.extend(dovecot.formatRecord(*r) for r in allRecords)
        data = b"".join(body)
        tmp = dovecot.UIDLIST + ".tmp"
        try:
            os.unlink(tmp, dir_fd=dirFd)
        except FileNotFoundError:
            pass
        fd = _fs.createFile(tmp, dirFd, self.owner)
        try:
            _fs.writeAll(fd, data)
            if fsync:
                os.fdatasync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dovecot.UIDLIST, src_dir_fd=dirFd, dst_dir_fd=dirFd)
        return dovecot.UidlistState(
            ino=st.st_ino,
            size=st.st_size,
            mtimeNs=st.st_mtime_ns,
            offset=st.st_size,
            lastUid=allRecords[-1][0] if allRecords else 0,
            lines=len(allRecords),
            header=header,
        )

    def _readKeywords(self) -> dovecot.Keywords:
        return dovecot.Keywords.parse(_fs.readSmallFile(dovecot.KEYWORDS, self._dirFd(), self.owner))

    # ------------------------------------------------------------------
    # Thread side: synchronisation

    def _listDir(self, subdir: str) -> dict[str, str | None]:
        out = {}
        intern = _intern
        for name in os.listdir(self._fds[subdir]):
            if name[0] == ".":
                continue  # Maildir spec: dot files are not messages
            base, sep, info = name.partition(":")
            out[base] = intern(info) if sep else None
        return out

    def _syncWork(self, forceNew: bool, forceCur: bool, extra: dict | None, initial: bool = False) -> _Sync:
        """
        Thread: compare the index with the disk.

        @param extra: files this process just placed, C{{base: (isNew,
            info)}}, added without relisting.
        """
        sync = _Sync()
        newFd, curFd = self._fds["new"], self._fds["cur"]
        stampNew = os.fstat(newFd).st_mtime_ns
        stampCur = os.fstat(curFd).st_mtime_ns
        listNew = forceNew or stampNew != self._stamps[0]
        listCur = forceCur or stampCur != self._stamps[1]

        # 1. the uidlist, read without the lock (Dovecot does the same)
        records, ustate, reset = self._readUidlist(self._ustate)
        firstLoad = None
        header = self.header
        pending = dict(self._pending)
        byBase = self.byBase
        messages = self.messages
        if records is not None:
            if reset:
                sync.uidlistState = ustate if ustate.ino else dovecot.UidlistState()
                if ustate.ino and self.header.uidValidity and ustate.header.uidValidity != self.header.uidValidity:
                    # UIDVALIDITY changed under us: every UID is void
                    sync.reset = True
                    byBase, messages = {}, {}
                    listNew = listCur = True
                pending = {}
            else:
                sync.uidlistState = ustate
            if ustate.ino:
                header = dovecot.UidlistHeader(**vars(ustate.header))
                if header.uidValidity == self.header.uidValidity:
                    # the file's N lags behind appended records (Dovecot
                    # rewrites it only on recreate): UIDNEXT never goes back
                    header.nextUid = max(header.nextUid, self.header.nextUid, ustate.lastUid + 1)
                sync.header = header
            if not byBase:
                firstLoad = records  # matched directly against the listing below
            else:
                for record in records:
                    uid, ext, base = record
                    known = byBase.get(base)
                    if known is None:
                        pending[base] = record
                    elif known != uid:
                        log.warn(
                            "{name}: {base} changed UID {old} -> {new} in dovecot-uidlist",
                            name=self.name, base=base, old=known, new=uid,
                        )
                        sync.removed.append(known)
                        pending[base] = record
        sync.pending = pending

        # 2. the directories: {subdir: {base: info}}
        listings: dict[str, dict] = {}
        if listNew:
            listings["new"] = self._listDir("new")
        if listCur:
            listings["cur"] = self._listDir("cur")
        if len(listings) == 1:
            # a message missing from the listed directory may have moved to
            # the other one in the same clock tick: list it too
            (only,) = listings
            seen = listings[only]
            if any(m.subdir == only and m.base not in seen for m in messages.values()):
                other = "cur" if only == "new" else "new"
                listings[other] = self._listDir(other)
        sync.stamps = (
            stampNew if "new" in listings else self._stamps[0],
            stampCur if "cur" in listings else self._stamps[1],
        )
        listed = set(listings)
        if extra:
            for base, (isNew, info) in extra.items():
                listings.setdefault("new" if isNew else "cur", {})[base] = info
                listings.get("cur" if isNew else "new", {}).pop(base, None)
        newFiles = listings.get("new", {})
        curFiles = listings.get("cur", {})

        # 3. compare (nothing to do for directories that were not listed)
        if listed:
            if listed == {"new"} and messages is self.messages:
                # only new/ changed (a delivery): check just its messages
                candidates = ((uid, messages[uid]) for uid in list(self._newUids) if uid in messages)
            else:
                candidates = messages.items()
            for uid, message in candidates:
                if message.subdir in listed and message.base not in newFiles and message.base not in curFiles:
                    sync.removed.append(uid)
        unknown = []
        removedSet = set(sync.removed)
        updated = sync.updated
        added = sync.added
        if firstLoad is not None and len(listings) == 2:
            # opening a folder: one pass over the uidlist records, popping
            # their files from the listing (no intermediate dict of 100,000
            # pending records); what is left over are new files
            for base in newFiles.keys() & curFiles.keys():
                del newFiles[base]  # in both during a rename: cur/ wins
            missing = _MISSING
            for uid, ext, base in firstLoad:
                info = curFiles.pop(base, missing)
                if info is not missing:
                    added.append(Message(uid, base, info, False, ext))
                    continue
                info = newFiles.pop(base, missing)
                if info is not missing:
                    added.append(Message(uid, base, info, True, ext))
                else:
                    pending[base] = (uid, ext, base)  # expunged, or not yet visible
            firstLoad = None
        elif firstLoad is not None:
            for record in firstLoad:
                pending[record[2]] = record
        for isNew, found in ((False, curFiles), (True, newFiles)):
            for base, info in found.items():
                if isNew and base in curFiles:
                    continue  # in both during a rename: cur/ wins
                uid = byBase.get(base)
                if uid is not None and uid not in removedSet:
                    message = messages[uid]
                    if message.isNew is not isNew or message.info != info:
                        updated.append((uid, info, isNew))
                    continue
                record = pending.pop(base, None)
                if record is not None:
                    added.append(Message(record[0], base, info, isNew, record[1]))
                else:
                    unknown.append((base, isNew, info))

        # 4. new files need UIDs: lock, reread, assign, write
        needHeader = (
            header.uidValidity == 0
            or (initial and sync.uidlistState is None and self._ustate.ino == 0)
            or (sync.uidlistState is not None and sync.uidlistState.ino == 0)
        )
        if unknown or needHeader:
            self._assignUids(sync, unknown, pending, messages)
        if sync.keywords is None:
            # dovecot-keywords is replaced (rename) on change: its mtime and
            # inode tell us whether to reread it
            try:
                st = os.stat(dovecot.KEYWORDS, dir_fd=self._dirFd(), follow_symlinks=False)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._keywordsStamp or initial:
                sync.keywords = self._readKeywords()
                sync.keywordsStamp = stamp
        return sync

    def _assignUids(self, sync: _Sync, unknown, pending, messages) -> None:
        # records another process appended after our directory listing:
        # their files may be newer than the listing, so a rewrite keeps them
        fresh = []
        with self._lockUidlist():
            state = sync.uidlistState or self._ustate
            records, ustate, reset = self._readUidlist(state)
            if records is not None:
                if reset:
                    pending.clear()
                    state = ustate if ustate.ino else dovecot.UidlistState()
                else:
                    state = ustate
                sync.uidlistState = state
                for record in records:
                    if record[2] not in self.byBase:
                        pending[record[2]] = record
                        fresh.append(record)
            if state.ino:
                header = state.header
            elif self.header.uidValidity:
                # the uidlist vanished while we had the folder open: write
                # back what we know rather than starting a new UIDVALIDITY
                header = self.header
            else:
                header = dovecot.UidlistHeader()
            recreate = state.ino == 0 or header.version != 3 or not header.guid
            header = dovecot.UidlistHeader(**vars(header))
            if header.uidValidity == 0:
                header.uidValidity = dovecot.nextUidValidity(
                    self.mailboxes._rootFd(), self.owner, self.store.clock.seconds() or None
                )
            if not header.guid:
                header.guid = dovecot.newGuid()
            header.version = 3
            nextUid = max(header.nextUid, state.lastUid + 1)
            newRecords = []
            # Maildir names start with the delivery time: sorting them
            # as Dovecot does gives UIDs in arrival order, and the same
            # UIDs Dovecot would give.
            for base, isNew, info in sorted(unknown, key=lambda item: (dovecot.filenameSortKey(item[0]), item)):
                if base in pending:
                    uid, ext = pending.pop(base)[:2]
                else:
                    uid, ext = nextUid, ""
                    nextUid += 1
                    newRecords.append((uid, ext, base))
                sync.added.append(Message(uid, base, info, isNew, ext))
            header.nextUid = max(header.nextUid, nextUid)
            live = len(messages) + len(sync.added) - len(sync.removed)
            if not recreate and state.lines > 2 * live + 1000:
                recreate = True  # mostly expunged lines: compact, as Dovecot does
            if recreate:
                removed = set(sync.removed)
                allRecords = [
                    (m.uid, m.ext, m.base) for m in messages.values() if m.uid not in removed
                ]
                allRecords.extend((m.uid, m.ext, m.base) for m in sync.added)
                allRecords.extend(record for record in fresh if record[2] in pending)
                allRecords.sort()
                header.nextUid = max(header.nextUid, (allRecords[-1][0] + 1) if allRecords else 1)
                sync.uidlistState = self._writeUidlist(state, header, newRecords, allRecords, True)
            elif newRecords:
                sync.uidlistState = self._writeUidlist(state, header, newRecords, None, False)
                sync.uidlistState.header = dovecot.UidlistHeader(**vars(state.header))
                # the file header keeps its (lagging) N; ours is the truth
            sync.header = header

    # ------------------------------------------------------------------
    # Recent

    def claimRecent(self, origin=None):
        """
        Move every message of C{new/} to C{cur/} (Dovecot does this when a
        session sees new mail), making it non-recent for everybody else.

        @return: Deferred firing with the claimed UIDs: the caller's
            \\Recent set (RFC 3501 2.3.2: one session sees a message as recent).
        """
        return self._locked(self._claimWork, origin=origin)

    def _claimWork(self) -> _Sync:
        sync = _Sync()
        claimed = []
        newFd, curFd = self._fds["new"], self._fds["cur"]
        for uid in self.uids():
            message = self.messages[uid]
            if not message.isNew:
                continue
            info = dovecot.buildInfo(message.info, message.letters)
            target = f"{message.base}:{info}"
            try:
                os.rename(message.filename, target, src_dir_fd=newFd, dst_dir_fd=curFd)
            except FileNotFoundError:
                continue  # someone else claimed or expunged it; the refresh will say
            sync.updated.append((uid, info, False))
            claimed.append(uid)
        sync.result = claimed
        return sync

    # ------------------------------------------------------------------
    # Flags

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
        d = self._locked(self._flagsWork, list(uids), list(flags), mode, origin=origin)
        return d.addCallback(lambda done: {uid: self.flags(uid) for uid in done if uid in self.messages})

    def _letters(self, flags, keywords: dovecot.Keywords, allocate: bool) -> tuple[str, bool]:
        letters = []
        changed = False
        for flag in flags:
            if flag.startswith("\\"):
                letter = dovecot.FLAG_LETTERS.get(flag.lower())
                if letter:
                    letters.append(letter)
                continue  # \Recent and unknown system flags are not stored
            letter = keywords.letterOf(flag)
            if letter is None and allocate:
                letter = keywords.allocate(flag)
                changed = changed or letter is not None
            if letter is not None:
                letters.append(letter)
        return "".join(sorted(set(letters))), changed

    def _withKeywords(self, flags):
        """
        Thread: the letters for C{flags}, allocating new keywords under the
        uidlist lock and writing C{dovecot-keywords} as Dovecot does.
        """
        keywords = dovecot.Keywords(self.keywords.names)
        letters, _ = self._letters(flags, keywords, allocate=False)
        wanted = [f for f in flags if not f.startswith("\\")]
        if all(keywords.letterOf(f) is not None for f in wanted):
            return letters, None
        with self._lockUidlist():
            keywords = self._readKeywords()
            letters, changed = self._letters(flags, keywords, allocate=True)
            if changed:
                lock = dovecot.DotLock(self._dirFd(), dovecot.KEYWORDS, self.owner, hostname=self.store.hostname)
                try:
                    os.unlink(lock.lockName, dir_fd=self._dirFd())
                except FileNotFoundError:
                    pass
                lock.acquire()
                try:
                    lock.replaceWith(keywords.format())
                except BaseException:
                    lock.release()
                    raise
        return letters, keywords

    def _resync(self, sync: _Sync, missing) -> dict:
        """
        Thread: an operation found the files of C{missing} UIDs gone (another
        program renamed them to change flags, moved them from new/ to cur/,
        or expunged them).  Relist both directories, fold what changed into
        C{sync}, and say where each message still present is now.

        @return: C{{uid: (info, isNew)}} of the messages still present.
        """
        fresh = self._syncWork(True, True, None)
        _merge(sync, fresh)
        gone = set(fresh.removed)
        current = {uid: (info, isNew) for uid, info, isNew in fresh.updated}
        where = {}
        for uid in missing:
            message = self.messages.get(uid)
            if uid in gone or message is None:
                continue
            where[uid] = current.get(uid, (message.info, message.isNew))
        return where

    def _flagsWork(self, uids, flags, mode) -> _Sync:
        sync = _Sync()
        letters, keywords = self._withKeywords(flags)
        if keywords is not None:
            sync.keywords = keywords
        wanted = set(letters)
        result = {}
        missing = []
        for uid in uids:
            message = self.messages.get(uid)
            if message is None:
                continue
            current = set(message.letters)
            if mode == "replace":
                # keep letters we do not manage (unknown keywords stay)
                new = wanted | {c for c in current if c not in dovecot.SYSTEM_FLAGS and c not in dovecot.KEYWORD_LETTERS}
            elif mode == "add":
                new = current | wanted
            else:
                new = current - wanted
            info = dovecot.buildInfo(message.info, "".join(new))
            if info == message.info and not message.isNew:
                result[uid] = message
                continue
            try:
                os.rename(
                    message.filename,
                    f"{message.base}:{info}",
                    src_dir_fd=self._fds[message.subdir],
                    dst_dir_fd=self._fds["cur"],
                )
            except FileNotFoundError:
                missing.append(uid)
                continue
            sync.updated.append((uid, info, False))
            result[uid] = message
        if missing:
            # renamed or expunged by someone else: resync, then retry once
            for uid, (info0, isNew0) in self._resync(sync, missing).items():
                message = self.messages[uid]
                subdir = "new" if isNew0 else "cur"
                have = set(dovecot.infoLetters(info0))
                new = wanted if mode == "replace" else (have | wanted if mode == "add" else have - wanted)
                info = dovecot.buildInfo(info0, "".join(new))
                name0 = message.base if info0 is None else f"{message.base}:{info0}"
                try:
                    os.rename(name0, f"{message.base}:{info}", src_dir_fd=self._fds[subdir], dst_dir_fd=self._fds["cur"])
                except FileNotFoundError:
                    continue
                sync.updated.append((uid, info, False))
                result[uid] = message
        sync.result = result
        return sync

    # ------------------------------------------------------------------
    # Expunge

    def expunge(self, uids=None, origin=None):
        """
        Delete messages: the given UIDs, or (L{None}) every message flagged
        C{\\Deleted} (IMAP EXPUNGE / POP3 QUIT).

        @return: Deferred firing with the expunged UIDs.
        """
        return self._locked(self._expungeWork, None if uids is None else list(uids), origin=origin)

    def _expungeWork(self, uids) -> _Sync:
        sync = _Sync()
        if uids is None:
            uids = [uid for uid, m in self.messages.items() if "T" in m.letters]
        removedBytes = removedCount = 0
        missing = []
        for uid in sorted(uids):
            message = self.messages.get(uid)
            if message is None:
                continue
            size = message.size
            try:
                if size is None:
                    # a local: the index belongs to the reactor thread
                    size = os.stat(message.filename, dir_fd=self._fds[message.subdir], follow_symlinks=False).st_size
                os.unlink(message.filename, dir_fd=self._fds[message.subdir])
            except FileNotFoundError:
                missing.append(uid)
                continue
            sync.removed.append(uid)
            removedBytes += size
            removedCount += 1
        if missing:
            for uid, (info, isNew) in self._resync(sync, missing).items():
                message = self.messages[uid]
                name = message.base if info is None else f"{message.base}:{info}"
                subdirFd = self._fds["new" if isNew else "cur"]
                try:
                    size = message.size
                    if size is None:
                        size = os.stat(name, dir_fd=subdirFd, follow_symlinks=False).st_size
                    os.unlink(name, dir_fd=subdirFd)
                except FileNotFoundError:
                    continue
                sync.removed.append(uid)
                removedBytes += size
                removedCount += 1
        if removedCount:
            self.mailboxes._quotaUpdate(-removedBytes, -removedCount)
        sync.result = sorted(set(sync.removed))
        return sync

    # ------------------------------------------------------------------
    # Append, copy, move

    def append(self, source, flags=(), internalDate: float | None = None, origin=None):
        """
        IMAP APPEND: store a message read from C{source} (a binary file
        object, read in chunks, or L{bytes}).

        @param internalDate: POSIX time for the internal date (the file's
            mtime, as Dovecot reads it), default now.
        @return: Deferred firing with the new UID (for UIDPLUS APPENDUID).
        @raise QuotaExceeded: over the Maildir++ quota.
        """
        return self._locked(self._appendWork, source, list(flags), internalDate, origin=origin)

    def _appendWork(self, source, flags, internalDate) -> _Sync:
        letters, keywords = self._withKeywords(flags)
        unique = self.store.names.next()
        tmpFd = self._fds["tmp"]
        fd = _fs.createFile(unique, tmpFd, self.owner)
        size = vsize = 0
        previous = b""
        try:
            try:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    chunks = [bytes(source)]
                else:
                    chunks = iter(lambda: source.read(_COPY_CHUNK), b"")
                for chunk in chunks:
                    _fs.writeAll(fd, chunk)
                    size += len(chunk)
                    vsize += len(chunk) + _bareLFs(previous, chunk)
                    previous = chunk[-1:]
                self.mailboxes._quotaCheck(size, 1)
                if self.store.fsync:
                    os.fsync(fd)
                when = self.store.clock.seconds() if internalDate is None else internalDate
                if when:
                    os.utime(fd, (when, when))
            finally:
                os.close(fd)
            base = f"{unique},S={size},W={vsize}"
            isNew = not letters
            info = None if isNew else dovecot.buildInfo(None, letters)
            name = base if info is None else f"{base}:{info}"
            os.rename(unique, name, src_dir_fd=tmpFd, dst_dir_fd=self._fds["new" if isNew else "cur"])
        except BaseException:
            try:
                os.unlink(unique, dir_fd=tmpFd)
            except OSError:
                pass
            raise
        if self.store.fsync:
            os.fsync(self._fds["new" if isNew else "cur"])
        self.mailboxes._quotaUpdate(size, 1)
        sync = self._syncWork(False, False, {base: (isNew, info)})
        if keywords is not None:
            sync.keywords = keywords
        sync.result = next(m.uid for m in sync.added if m.base == base)
        return sync

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
            try:
                srcSync, dstSync, pairs = yield self.store.run(_mapErrors(self._copyWork, self.name), uids, target, move)
                self._apply(srcSync, origin)
                target._apply(dstSync, origin)
            finally:
                release()
            return pairs

        return run()

    def _copyWork(self, uids, target: "Folder", move: bool):
        srcSync = _Sync()
        names = []
        for uid in uids:
            message = self.messages.get(uid)
            if message is None:
                continue
            for letter in message.letters:
                if letter in dovecot.KEYWORD_LETTERS:
                    names.append(self.keywords.nameOf(letter))
        letterMap = {}
        if names:
            _, keywords = target._withKeywords(names)
            table = keywords or target.keywords
            for name in set(names):
                letterMap[name.lower()] = table.letterOf(name)
        else:
            keywords = None
        sizes = {}
        for uid in uids:
            message = self.messages.get(uid)
            if message is None:
                continue
            sizes[uid] = message.size
            if sizes[uid] is None and not move:
                # a local, not the index: it belongs to the reactor thread
                try:
                    sizes[uid] = self._findAndStat(message)[0].st_size
                except MessageVanished:
                    pass  # the copy below skips it
        if not move:
            self.mailboxes._quotaCheck(sum(size or 0 for size in sizes.values()), len(uids))
        extra = {}
        order = []
        copiedBytes = 0

        def copyOne(uid, message, info0, isNew0):
            letters = ""
            for letter in dovecot.infoLetters(info0):
                if letter in dovecot.KEYWORD_LETTERS:
                    mapped = letterMap.get(self.keywords.nameOf(letter).lower())
                    if mapped:
                        letters += mapped
                else:
                    letters += letter
            info = dovecot.buildInfo(info0, letters)
            unique = target.store.names.next()
            size, vsize = sizes.get(uid), message.vsize
            base = unique + (f",S={size}" if size is not None else "") + (f",W={vsize}" if vsize is not None else "")
            name = f"{base}:{info}"
            subdir = "new" if isNew0 else "cur"
            filename = message.base if info0 is None else f"{message.base}:{info0}"
            srcFd = self._fds[subdir]
            if move:
                try:
                    os.rename(filename, name, src_dir_fd=srcFd, dst_dir_fd=target._fds["cur"])
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    self._copyFile(subdir, filename, target, unique)
                    os.rename(unique, name, src_dir_fd=target._fds["tmp"], dst_dir_fd=target._fds["cur"])
                    os.unlink(filename, dir_fd=srcFd)
                srcSync.removed.append(uid)
            else:
                self._copyFile(subdir, filename, target, unique)
                os.rename(unique, name, src_dir_fd=target._fds["tmp"], dst_dir_fd=target._fds["cur"])
            extra[base] = (False, info)
            order.append((uid, base))
            return 0 if move else size or 0  # a move leaves the quota's total as it was

        missing = []
        for uid in uids:
            message = self.messages.get(uid)
            if message is None:
                continue
            try:
                copiedBytes += copyOne(uid, message, message.info, message.isNew)
            except FileNotFoundError:
                missing.append(uid)
        if missing:
            # renamed by another program (a flag change, new/ to cur/):
            # find the files again; those expunged meanwhile are skipped,
            # as RFC 3501 6.4.7 allows
            for uid, (info0, isNew0) in self._resync(srcSync, missing).items():
                try:
                    copiedBytes += copyOne(uid, self.messages[uid], info0, isNew0)
                except FileNotFoundError:
                    continue
            order.sort()
        if self.store.fsync and extra:
            os.fsync(target._fds["cur"])
        if copiedBytes:
            self.mailboxes._quotaUpdate(copiedBytes, len(order))
        dstSync = target._syncWork(False, False, extra)
        if keywords is not None:
            dstSync.keywords = keywords
        uidOf = {m.base: m.uid for m in dstSync.added}
        pairs = [(uid, uidOf[base]) for uid, base in order if base in uidOf]
        return srcSync, dstSync, pairs

    def _copyFile(self, subdir: str, filename: str, target: "Folder", unique: str) -> None:
        """
        Thread: C{target/tmp/unique} as a hard link to C{subdir/filename} or,
        when that is impossible (another file system, or the server must not
        link to files it does not own), as a byte copy.
        """
        srcFd = self._fds[subdir]
        try:
            os.link(filename, unique, src_dir_fd=srcFd, dst_dir_fd=target._fds["tmp"], follow_symlinks=False)
            st = os.stat(unique, dir_fd=target._fds["tmp"], follow_symlinks=False)
            if _stat.S_ISREG(st.st_mode):
                self.owner.check(st, filename)
                return
            os.unlink(unique, dir_fd=target._fds["tmp"])
            raise UnsafePath(f"{filename} is not a regular file")
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
        inFd = _fs.openRegular(filename, srcFd, self.owner)
        outFd = _fs.createFile(unique, target._fds["tmp"], target.owner)
        try:
            st = os.fstat(inFd)
            while True:
                chunk = os.read(inFd, _COPY_CHUNK)
                if not chunk:
                    break
                _fs.writeAll(outFd, chunk)
            os.utime(outFd, ns=(st.st_atime_ns, st.st_mtime_ns))
            if self.store.fsync:
                os.fsync(outFd)
        finally:
            os.close(inFd)
            os.close(outFd)

    # ------------------------------------------------------------------
    # POP3

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


def _intern(info: str) -> str:
    # the few distinct info strings ("2,S", "2,RS"...) are shared by all
    # messages instead of one string object each
    return sys.intern(info) if len(info) < 12 else info


_MISSING = object()


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


def _merge(sync: _Sync, fresh: _Sync) -> None:
    """
    Fold a resync done in the middle of an operation into its result: the
    resync's view comes first, the operation's own changes after it win.
    """
    sync.added = fresh.added + sync.added
    sync.updated = fresh.updated + sync.updated
    sync.removed = fresh.removed + sync.removed
    if fresh.pending is not None:
        sync.pending = fresh.pending
    for name in ("header", "uidlistState", "stamps"):
        value = getattr(fresh, name)
        if value is not None:
            setattr(sync, name, value)
    if fresh.keywords is not None and sync.keywords is None:
        sync.keywords = fresh.keywords
        sync.keywordsStamp = fresh.keywordsStamp
    sync.reset = sync.reset or fresh.reset


def _bareLFs(previous: bytes, chunk: bytes) -> int:
    """
    How many LF in C{chunk} are not preceded by CR (each becomes CRLF on the
    wire: Dovecot's "virtual size" C{,W=}).
    """
    count = chunk.count(b"\n") - chunk.count(b"\r\n")
    if chunk.startswith(b"\n") and previous == b"\r":
        count -= 1
    return count
