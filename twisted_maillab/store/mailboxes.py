"""
One account's folders: L{Mailboxes} opens, lists, creates, deletes,
renames and subscribes the Maildir++ folders under the account's Maildir,
keeps the directory fds that deliveries share, and lives while something
uses them (see L{Store.mailboxes}).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_maillab import interfaces
from twisted_maillab.store import _fs, dovecot, quota as _quota
from twisted_maillab.store.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    MessageTooBigForQuota,
    QuotaExceeded,
    StoreError,
    fromOSError,
)
from twisted_maillab.store.folder import Folder, openFolderDirs

if TYPE_CHECKING:
    from twisted_maillab.store.store import Store

__all__ = ["FolderInfo", "Mailboxes"]


@dataclass(frozen=True)
class FolderInfo:
    """
    One entry of L{Mailboxes.list}.

    @ivar name: the folder name (C{"/"} between levels).
    @ivar specialUse: the RFC 6154 attribute (C{"\\Sent"}) or L{None}.
    @ivar subscribed: listed in the C{subscriptions} file.
    @ivar hasChildren: other folders live below it (RFC 3348 CHILDREN).
    @ivar exists: L{False} for a parent that exists only because of its
        children (IMAP C{\\NonExistent}/C{\\Noselect}).
    """

    name: str
    specialUse: str | None
    subscribed: bool
    hasChildren: bool
    exists: bool = True


class _SharedDirs:
    """
    Directory fds shared by concurrent deliveries (see
    L{Mailboxes._acquireInboxDirs}).
    """

    __slots__ = ("fds", "users", "stale")

    def __init__(self, fds: dict):
        self.fds = fds
        self.users = 0
        self.stale = False

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


#: The file in a Maildir++ folder that keeps the special-use role a client
#: gave it at CREATE (RFC 6154 3): one line, e.g. C{\\Drafts}.  Dovecot
#: ignores it (its roles come from its configuration), and it moves and
#: goes with the folder's directory on RENAME and DELETE.
SPECIAL_USE_FILE = "maillab-special-use"

#: The roles a client may give a folder it creates: those of real
#: folders.  C{\\All} and C{\\Flagged} name virtual mailboxes, which the
#: store does not have.
CREATABLE_SPECIAL_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})


def _folderKey(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


@implementer(interfaces.IMailboxes)
class Mailboxes:
    """
    The folders of one account: Maildir++ layout under C{account.maildir}
    (INBOX is the root, C{Archive/2024} is C{.Archive.2024}), names in
    modified UTF-7 on disk as Dovecot stores them.

    Every method returns a Deferred (the work runs in the thread pool).
    """

    separator = "/"

    def __init__(self, store: Store, account, key: str | None = None):
        self.store = store
        self.account = account
        self._key = key
        self._users = 0  # reactor side: open folders, deliveries, operations
        self._retireCall = None
        self._retired = False
        self.path = os.fspath(account.maildir)
        self.owner = _fs.Owner(account.uid, account.gid)
        self._root = None
        self._inboxDirs: _SharedDirs | None = None
        self._dirsLock = threading.Lock()
        self._open: dict[str, Folder] = {}
        self._opening: dict[str, defer.Deferred] = {}

    @property
    def recentRoot(self) -> str:
        """
        The Maildir as the store's
        L{twisted_maillab.store.recent.RecentSet} keys it (however the
        account spells its path).
        """
        return os.path.normpath(self.path)

    # -- thread helpers --------------------------------------------------

    def _rootFd(self, create: bool = False) -> int:
        if self._root is None:
            try:
                parent = os.path.dirname(os.path.normpath(self.path))
                home = os.path.normpath(os.fspath(self.account.home)) if self.account.home else None
                fd = _fs.openPath(self.path, create=create, owner=self.owner, createParent=parent != home)
            except FileNotFoundError:
                raise MailboxNotFound(f"{self.path}: no Maildir yet") from None
            if create:
                for sub in ("cur", "new", "tmp"):
                    os.close(_fs.makeDir(sub, fd, self.owner))
            if self._root is None:
                self._root = fd
            else:
                os.close(fd)
        return self._root

    def _acquireInboxDirs(self) -> "_SharedDirs":
        """
        Thread: INBOX's C{tmp/} and C{new/}, kept open between deliveries
        (opening and closing them was four of the dozen system calls of a
        delivery, and every system call of a pool thread is a GIL hand-off
        with the reactor thread).  Give them back with
        L{_releaseInboxDirs}; never close them.
        """
        with self._dirsLock:
            dirs = self._inboxDirs
            if dirs is not None:
                dirs.users += 1
                return dirs
        fds = openFolderDirs(self._rootFd(create=True), None, "INBOX", self.owner, True, ("new", "tmp"), keepRoot=False)
        with self._dirsLock:
            if self._inboxDirs is None:
                self._inboxDirs = _SharedDirs(fds)
            else:
                # another thread opened them meanwhile
                for fd in fds.values():
                    os.close(fd)
            dirs = self._inboxDirs
            dirs.users += 1
        return dirs

    def _staleInboxDirs(self, dirs: "_SharedDirs") -> None:
        """
        A directory of C{dirs} was found deleted (an administrator replaced
        the Maildir, or a user replaced C{new/} by a symlink), or the store
        closes: the next delivery opens them afresh, with every check, and
        these close now if unused, else when their last user releases them.
        """
        with self._dirsLock:
            dirs.stale = True
            if self._inboxDirs is dirs:
                self._inboxDirs = None
            close = dirs.users == 0
        if close:
            dirs.close()

    def _releaseInboxDirs(self, dirs: "_SharedDirs") -> None:
        """
        Thread: done with C{dirs}.
        """
        with self._dirsLock:
            dirs.users -= 1
            close = dirs.stale and dirs.users == 0
        if close:
            dirs.close()

    def _quotaCheck(self, size: int, count: int) -> bool:
        """
        @return: whether a quota applies (so L{_quotaUpdate} has a
            C{maildirsize} to append to).
        @raise QuotaExceeded: or L{MessageTooBigForQuota}.
        """
        limits = self.store.quota
        if not limits.enabled:
            # per-user limit in the user's own maildirsize (maildirmake -q)
            limits = _quota.readLimits(self._rootFd(), self.owner)
            if limits is None:
                return False
        if limits.bytes and size > limits.bytes:
            raise MessageTooBigForQuota()
        used, messages = _quota.readUsage(self._rootFd(), self.owner, limits)
        if limits.bytes and used + size > limits.bytes:
            raise QuotaExceeded(f"mailbox is full ({used} of {limits.bytes} bytes used)")
        if limits.messages and messages + count > limits.messages:
            raise QuotaExceeded(f"mailbox is full ({messages} of {limits.messages} messages)")
        return True

    def _quotaUpdate(self, size: int, count: int) -> None:
        # appends only when a maildirsize exists (global or per-user quota)
        _quota.addUsage(self._rootFd(), size, count)

    def _thread(self, f, *args):
        def wrapped():
            try:
                return f(*args)
            except StoreError:
                raise
            except OSError as e:
                raise fromOSError(e, getattr(f, "__name__", "")) from e

        self._hold()
        return self.store.run(wrapped).addBoth(self._releasing)

    # -- lifetime (reactor thread) ----------------------------------------

    def _hold(self) -> None:
        """
        Someone uses the directory fds (an open folder, a delivery, an
        operation in the thread pool): keep them open until L{_release}.
        """
        self._users += 1
        if self._retireCall is not None and self._retireCall.active():
            self._retireCall.cancel()
        self._retireCall = None
        if self._retired and self._key is not None:
            # used again after it was forgotten (a caller that kept it)
            self._retired = False
            self.store._mailboxes.setdefault(self._key, self)

    def _release(self) -> None:
        self._users -= 1
        if self._users > 0 or self.store._closing:
            return
        linger = self.store.linger
        if linger:
            self._retireCall = self.store.clock.callLater(linger, self._retire)
        else:
            self._retire()

    def _releasing(self, result):
        self._release()
        return result

    def _retire(self) -> None:
        self._retireCall = None
        if self._users > 0:
            return
        if self._key is not None and self.store._mailboxes.get(self._key) is self:
            del self.store._mailboxes[self._key]
        self._retired = True
        self._closeFds()

    def _closeFds(self) -> None:
        if self._inboxDirs is not None:
            self._staleInboxDirs(self._inboxDirs)
        if self._root is not None:
            os.close(self._root)
            self._root = None

    # -- folders -----------------------------------------------------------

    def open(self, name: str = "INBOX", create: bool = False):
        """
        Open a folder (shared with the other sessions of this process).
        Give it back with C{folder.close()}.

        @param create: create it if missing (INBOX always is).
        @return: Deferred firing with the L{Folder}.
        @raise MailboxNotFound: (errback) it does not exist.
        """
        key = _folderKey(name)
        folder = self._open.get(key)
        if folder is not None:
            folder._reuse()
            return defer.succeed(folder)
        waiters = self._opening.get(key)
        if waiters is not None:
            d = defer.Deferred()
            waiters.append(d)
            return d
        try:
            dirName = None if key == "INBOX" else dovecot.folderDirName(name, self.separator)
        except InvalidMailboxName as e:
            return defer.fail(e)
        waiters = self._opening[key] = []
        folder = Folder(self.store, self, key, dirName)
        self._hold()  # until the folder is really closed (Folder._reallyClose)

        def opened(result):
            del self._opening[key]
            if isinstance(result, Failure):
                self._release()
                if isinstance(result.value, OSError):
                    result = Failure(fromOSError(result.value, f"open {name}"))
                for waiter in waiters:
                    waiter.errback(result)
                return result
            folder._refs += 1 + len(waiters)
            self._open[key] = folder
            for waiter in waiters:
                waiter.callback(folder)
            return folder

        return folder._open(create or key == "INBOX").addBoth(opened)

    def _forget(self, folder: Folder) -> None:
        if self._open.get(folder.name) is folder:
            del self._open[folder.name]

    def _closeAll(self) -> None:
        for folder in list(self._open.values()):
            folder._refs = 0
            folder._reallyClose()
        if self._retireCall is not None and self._retireCall.active():
            self._retireCall.cancel()
        self._closeFds()

    def _listWork(self):
        rootFd = self._rootFd()
        names = []
        created = {}
        configured = dict(self.store.specialFolders)
        # the root fd is shared by every session's LIST (see _fs.listNames)
        with _fs.scanDir(rootFd) as entries:
            dirs = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        for dirName in dirs:
            name = dovecot.folderNameFromDir(dirName, self.separator)
            if name is None or name.upper() == "INBOX":
                continue
            names.append(name)
            if name not in configured:
                role = self._readSpecialUse(dirName, rootFd)
                if role is not None:
                    created[name] = role
        subscribed = set(self._subscriptionsWork())
        return names, subscribed, created

    def _readSpecialUse(self, dirName: str, rootFd: int) -> str | None:
        """
        Thread: the role a client gave the folder at CREATE (RFC 6154 3),
        from its L{SPECIAL_USE_FILE}, or L{None}.
        """
        try:
            fd = _fs.openDir(dirName, rootFd)
        except OSError:
            return None
        try:
            data = _fs.readSmallFile(SPECIAL_USE_FILE, fd, self.owner, limit=1024)
        except (OSError, StoreError):
            return None  # unreadable or unsafe: no role, the folder still lists
        finally:
            os.close(fd)
        if data is None:
            return None
        role = data.decode("ascii", "replace").strip()
        return role if role in CREATABLE_SPECIAL_USES else None

    def list(self):
        """
        All folders, INBOX first, with special-use, subscription and
        children information (parents that exist only as a prefix of a
        child are listed with C{exists=False}).

        @return: Deferred firing with a list of L{FolderInfo}.
        """

        def build(result):
            names, subscribed, created = result
            existing = set(names)
            everything = set(existing)
            for name in names:
                parts = name.split(self.separator)
                for i in range(1, len(parts)):
                    everything.add(self.separator.join(parts[:i]))
            # a role from the configuration wins over one given at CREATE
            roles = {**created, **dict(self.store.specialFolders)}
            out = [FolderInfo("INBOX", None, "INBOX" in subscribed, False, True)]
            for name in sorted(everything, key=lambda n: n.lower()):
                prefix = name + self.separator
                children = any(other.startswith(prefix) for other in everything)
                out.append(FolderInfo(name, roles.get(name), name in subscribed, children, name in existing))
            return out

        return self._thread(self._listWork).addCallback(build)

    def _createWork(self, name: str, mustNotExist: bool, specialUse: str | None = None) -> None:
        rootFd = self._rootFd(create=True)
        dirName = dovecot.folderDirName(name, self.separator)
        try:
            os.mkdir(dirName, _fs.DIR_MODE, dir_fd=rootFd)
        except FileExistsError:
            if mustNotExist:
                raise MailboxExists(f"{name} already exists") from None
        fd = _fs.openDir(dirName, rootFd)
        try:
            os.fchmod(fd, _fs.DIR_MODE)
            self.owner.chown(fd)
            if specialUse is not None:
                # before the Maildir is complete: a crash leaves a folder
                # without cur/, which nobody lists as a mailbox with a
                # role it was not given
                _fs.replaceFile(SPECIAL_USE_FILE, fd, self.owner, specialUse.encode("ascii") + b"\n", self.store.fsync)
            for sub in ("cur", "new", "tmp"):
                os.close(_fs.makeDir(sub, fd, self.owner))
            try:
                os.close(_fs.createFile(dovecot.MAILDIRFOLDER, fd, self.owner))
            except FileExistsError:
                pass
        except BaseException:
            if specialUse is not None and mustNotExist:
                # RFC 6154 3: a mailbox whose role cannot be set is not created
                os.close(fd)
                fd = None
                _fs.removeTree(dirName, rootFd)
            raise
        finally:
            if fd is not None:
                os.close(fd)

    def create(self, name: str, specialUse: str | None = None):
        """
        Create a folder (IMAP CREATE).  Parents need not exist (Maildir++
        is flat).

        @param specialUse: a role for it (RFC 6154 3 CREATE-SPECIAL-USE),
            one of L{CREATABLE_SPECIAL_USES}, kept in the folder's
            L{SPECIAL_USE_FILE}; a role the configuration gives the name
            wins over it in L{list}.
        @raise MailboxExists: (errback) it exists.
        @raise InvalidMailboxName: (errback) Maildir++ cannot hold the name.
        @raise ValueError: (errback) C{specialUse} is not a role we keep.
        """
        if name.upper() == "INBOX":
            return defer.fail(MailboxExists("INBOX always exists"))
        if specialUse is not None and specialUse not in CREATABLE_SPECIAL_USES:
            return defer.fail(ValueError(f"{specialUse} cannot be given to a folder"))
        try:
            dovecot.folderDirName(name, self.separator)
        except InvalidMailboxName as e:
            return defer.fail(e)
        return self._thread(self._createWork, name, True, specialUse)

    def _deleteWork(self, name: str) -> None:
        rootFd = self._rootFd()
        dirName = dovecot.folderDirName(name, self.separator)
        try:
            os.close(_fs.openDir(dirName, rootFd))
        except FileNotFoundError:
            raise MailboxNotFound(f"{name}: no such mailbox") from None
        # Dovecot renames to a trash name first so a crash never leaves
        # a half-deleted folder that still looks like a mailbox.
        trash = f".DOVECOT-TRASHED.{self.store.names.next()}"
        os.rename(dirName, trash, src_dir_fd=rootFd, dst_dir_fd=rootFd)
        _fs.removeTree(trash, rootFd)

    def delete(self, name: str):
        """
        Delete a folder and its messages (IMAP DELETE).  Children stay.
        """
        key = _folderKey(name)
        if key == "INBOX":
            return defer.fail(StoreError("INBOX cannot be deleted"))

        def deleted(_):
            # only now: a failed DELETE leaves the sessions' folder alone
            folder = self._open.get(key)
            if folder is not None:
                folder._detach()
            self.store.recent.forget((self.recentRoot, key))
            # RFC 3501 6.3.6: the subscription stays (a client lists it as
            # \NonExistent and may create the mailbox again).

        return self._thread(self._deleteWork, name).addCallback(deleted)

    def _renameWork(self, old: str, new: str) -> None:
        rootFd = self._rootFd()
        oldDir = dovecot.folderDirName(old, self.separator)
        newDir = dovecot.folderDirName(new, self.separator)
        with _fs.scanDir(rootFd) as entries:
            existing = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        if oldDir not in existing:
            raise MailboxNotFound(f"{old}: no such mailbox")
        if newDir in existing:
            raise MailboxExists(f"{new} already exists")
        # Maildir++ hierarchy is in the names: rename the children too
        moves = [(oldDir, newDir)] + [
            (name, newDir + name[len(oldDir) :]) for name in existing if name.startswith(oldDir + ".")
        ]
        for source, target in moves:
            os.rename(source, target, src_dir_fd=rootFd, dst_dir_fd=rootFd)

    def _renameInboxWork(self, new: str) -> int:
        """
        RFC 3501 6.3.5: renaming INBOX moves its messages to the new folder
        and leaves INBOX empty.  The files keep their names (and flags); the
        new folder gives them UIDs when it is opened.
        """
        rootFd = self._rootFd()
        self._createWork(new, True)
        target = _fs.openDir(dovecot.folderDirName(new, self.separator), rootFd)
        moved = 0
        try:
            for sub in ("new", "cur"):
                src = _fs.openDir(sub, rootFd)
                dst = _fs.openDir(sub, target)
                try:
                    for name in os.listdir(src):
                        if name.startswith("."):
                            continue
                        try:
                            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
                            moved += 1
                        except FileNotFoundError:
                            pass
                    if self.store.fsync:
                        os.fsync(dst)
                finally:
                    os.close(src)
                    os.close(dst)
        finally:
            os.close(target)
        return moved

    def rename(self, old: str, new: str):
        """
        Rename a folder and its children (IMAP RENAME).  Renaming INBOX
        moves its messages into a new folder (RFC 3501 6.3.5).
        """
        if _folderKey(new) == "INBOX":
            return defer.fail(MailboxExists("INBOX always exists"))
        if _folderKey(old) == "INBOX":
            try:
                dovecot.folderDirName(new, self.separator)
            except InvalidMailboxName as e:
                return defer.fail(e)
            d = self._thread(self._renameInboxWork, new)

            def refreshInbox(moved):
                # the messages get new UIDs in the new folder
                self.store.recent.forget((self.recentRoot, "INBOX"))
                inbox = self._open.get("INBOX")
                if inbox is not None:
                    return inbox.refresh(full=True).addCallback(lambda _: moved)
                return moved

            return d.addCallback(refreshInbox)
        try:
            dovecot.folderDirName(new, self.separator)
        except InvalidMailboxName as e:
            return defer.fail(e)

        def resubscribe(_):
            # only now that the rename happened: open folders (and the
            # sessions that have them selected) follow their directories
            for key in list(self._open):
                if key == old or key.startswith(old + self.separator):
                    renamed = new + key[len(old) :]
                    self._open[key]._renamed(renamed, dovecot.folderDirName(renamed, self.separator))
            self.store.recent.rename(self.recentRoot, old, new, self.separator)

            def work():
                names = self._subscriptionsWork()
                changed = [
                    new + n[len(old) :] if (n == old or n.startswith(old + self.separator)) else n for n in names
                ]
                if changed != names:
                    self._writeSubscriptions(changed)

            return self._thread(work)

        return self._thread(self._renameWork, old, new).addCallback(resubscribe)

    # -- subscriptions -----------------------------------------------------

    def _subscriptionsWork(self):
        data = _fs.readSmallFile(dovecot.SUBSCRIPTIONS, self._rootFd(), self.owner)
        return dovecot.parseSubscriptions(data, self.separator)

    def _writeSubscriptions(self, names) -> None:
        rootFd = self._rootFd(create=True)
        lock = dovecot.DotLock(rootFd, dovecot.SUBSCRIPTIONS, self.owner, staleTimeout=30, hostname=self.store.hostname)
        lock.acquire()
        try:
            lock.replaceWith(dovecot.formatSubscriptions(names, self.separator))
        except BaseException:
            lock.release()
            raise

    def _subscribeWork(self, name: str, subscribe: bool) -> None:
        self._rootFd(create=True)
        names = self._subscriptionsWork()
        if subscribe and name not in names:
            self._writeSubscriptions(names + [name])
        elif not subscribe and name in names:
            self._writeSubscriptions([n for n in names if n != name])

    def _setSubscribed(self, name: str, subscribe: bool):
        if name.upper() == "INBOX":
            name = "INBOX"
        return self._thread(self._subscribeWork, name, subscribe)

    def subscribe(self, name: str):
        """
        Add to the C{subscriptions} file (IMAP SUBSCRIBE).
        """
        return self._setSubscribed(name, True)

    def unsubscribe(self, name: str):
        return self._setSubscribed(name, False)

    def subscriptions(self):
        """
        @return: Deferred firing with the subscribed names.
        """
        return self._thread(self._subscriptionsWork)

    # -- first login ----------------------------------------------------

    def _defaultsWork(self) -> list[str]:
        rootFd = self._rootFd(create=True)
        created = []
        for name, _ in self.store.specialFolders:
            dirName = dovecot.folderDirName(name, self.separator)
            try:
                os.stat(dirName, dir_fd=rootFd, follow_symlinks=False)
                continue
            except FileNotFoundError:
                pass
            self._createWork(name, False)
            created.append(name)
        if created:
            names = self._subscriptionsWork()
            wanted = [n for n in created if n not in names]
            if wanted:
                self._writeSubscriptions(names + wanted)
        return created

    def ensureDefaults(self):
        """
        At login: create the Maildir, INBOX and the special-use folders
        (Drafts, Sent, Trash, Junk, Archive) that are missing, and subscribe
        the ones created.  Does nothing when C{autocreate} is off.

        @return: Deferred firing with the names created.
        """
        if not self.store.autocreate:
            return self._thread(lambda: (self._rootFd(create=True), [])[1])
        return self._thread(self._defaultsWork)

    def specialUse(self, name: str) -> str | None:
        return dict(self.store.specialFolders).get(name)
