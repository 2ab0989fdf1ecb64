"""
The store object: per-account mailbox sets (L{Mailboxes}, in
L{twisted_maillab.store.mailboxes}), delivery transactions, the thread
pool, group commit of directory fsyncs, and the inotify watcher.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab import interfaces
from twisted_maillab.metrics import NULL_METRICS
from twisted_maillab.store import dovecot, quota as _quota
from twisted_maillab.store.delivery import CommitBatcher, DeliveryTransaction
from twisted_maillab.store.errors import StoreError
from twisted_maillab.store.firstlogin import FirstLogin
from twisted_maillab.store.mailboxes import FolderInfo, Mailboxes, _folderKey
from twisted_maillab.store.recent import RecentSet
from twisted_maillab.store.workers import WorkerPool

if TYPE_CHECKING:
    from twisted_maillab.store.folder import Folder

__all__ = ["DEFAULT_SPECIAL_FOLDERS", "DirectorySyncs", "FolderInfo", "Mailboxes", "Store"]

log = Logger()

# RFC 6154 special-use attributes of the folders created at first login.
DEFAULT_SPECIAL_FOLDERS = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


class DirectorySyncs:
    """
    Group commit of the directory fsync after C{rename} into C{new/}, done
    by the pool threads themselves: a thread that renamed a message waits
    for an fsync of C{new/} that started after its rename, and if none is
    running it runs one for everybody waiting.  N concurrent deliveries to
    one folder cost about two fsyncs, not N, and no reactor round trip
    (the reactor-side version cost every message two extra thread hops).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._folders: dict[object, _DirectorySync] = {}
        self.fsyncs = 0

    def sync(self, dirFd: int, key) -> None:
        """
        Thread: return once C{dirFd}'s directory is durably written as it
        was when this was called.

        @param key: what identifies the directory among the callers (its
            path: an fstat for device and inode would be one more system
            call).
        @raise OSError: the fsync that covered this call failed.
        """
        with self._lock:
            folder = self._folders.get(key)
            if folder is None:
                folder = self._folders[key] = _DirectorySync(self._lock)
            folder.users += 1
        try:
            ran, error = folder.sync(dirFd)
        finally:
            with self._lock:
                folder.users -= 1
                if not folder.users:
                    del self._folders[key]
        with self._lock:
            self.fsyncs += ran
        if error is not None:
            raise error


class _DirectorySync:
    def __init__(self, lock):
        self.users = 0
        self._changed = threading.Condition(lock)
        self._requested = 0  # tickets handed out
        self._completed = 0  # every ticket up to this one is covered
        self._running = False
        # failed batches: (first ticket, last ticket) -> error; dropped
        # with this object once no thread uses the folder
        self._errors: dict[tuple[int, int], OSError] = {}

    def sync(self, fd: int) -> tuple[int, OSError | None]:
        """
        @return: how many fsyncs this thread ran, and the error of the one
            that covered its ticket, if that failed.
        """
        ran = 0
        with self._changed:
            self._requested += 1
            ticket = self._requested
            while self._completed < ticket:
                if self._running:
                    self._changed.wait()
                    continue
                # Nobody is syncing: this fsync covers every rename made
                # before it starts, ours and the waiting threads'.
                self._running = True
                first, last = self._completed + 1, self._requested
                self._changed.release()
                error = None
                try:
                    os.fsync(fd)
                except OSError as e:
                    error = e
                finally:
                    self._changed.acquire()
                ran += 1
                self._running = False
                self._completed = last
                if error is not None:
                    self._errors[(first, last)] = error
                self._changed.notify_all()
            for (first, last), error in self._errors.items():
                if first <= ticket <= last:
                    return ran, error
        return ran, None


@implementer(interfaces.IMailStore)
class Store:
    """
    The Maildir store: one per process (see L{makeStore}).

    @param reactor: used for the thread pool's callbacks and, unless
        C{clock} is given, for timers.
    @param clock: an L{IReactorTime} for timers (rescans, debouncing,
        the time in unique names and tmp/ cleanup): L{task.Clock} in tests.
    @param runner: a callable C{runner(f, *args) -> Deferred}; by default
        the store's own bounded thread pool.
    """

    metrics = NULL_METRICS  # the service tree's Metrics (twisted_maillab.metrics)

    def __init__(
        self,
        reactor,
        *,
        clock=None,
        threads: int = 4,
        fsync: bool = True,
        rescanInterval: float = 60.0,
        quotaBytes: int = 0,
        quotaMessages: int = 0,
        lockStaleTimeout: float = dovecot.LOCK_STALE_TIMEOUT,
        hostname: str | None = None,
        specialFolders=DEFAULT_SPECIAL_FOLDERS,
        autocreate: bool = True,
        inotify: bool = True,
        linger: float = 0.0,
        runner=None,
    ):
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.linger = linger
        self._closing = False
        self.fsync = fsync
        self.rescanInterval = rescanInterval
        self.quota = _quota.QuotaLimits(quotaBytes, quotaMessages)
        self.lockStaleTimeout = lockStaleTimeout
        self.hostname = hostname or socket.gethostname()
        self.specialFolders = tuple(specialFolders)
        self.autocreate = autocreate
        #: C{firstLogin(account) -> Deferred}: what the realm calls at each
        #: successful login (see L{FirstLogin}).
        self.firstLogin = FirstLogin(self)
        self.names = dovecot.NameGenerator(self.clock, self.hostname)
        self._pool = None
        if runner is None:
            self._pool = WorkerPool(reactor, threads, "maillab-store")
            runner = self._runInPool
        self.run = runner
        self._mailboxes: dict[str, Mailboxes] = {}
        #: \\Recent outside new/, kept while the process runs
        self.recent = RecentSet()
        self.directorySyncs = DirectorySyncs()
        self.commits = CommitBatcher(self)
        self._inotify = None
        self._useInotify = inotify
        self._watches: dict[str, tuple] = {}
        self._rescan = None
        if rescanInterval:
            self._rescan = task.LoopingCall(self._rescanAll)
            self._rescan.clock = self.clock
            self._rescan.start(rescanInterval, now=False)

    def queuedJobs(self) -> int:
        """
        Jobs waiting for one of the store's threads (for C{/metrics}).
        """
        return self._pool.queued if self._pool is not None else 0

    def _runInPool(self, f, *args, **kwargs) -> defer.Deferred:
        # started on first use, not at construction: twistd builds the
        # service tree before it forks into the background
        if self._pool is None:
            return defer.fail(StoreError("the store is closed"))
        return self._pool.run(f, *args, **kwargs)

    # -- accounts -------------------------------------------------------

    def mailboxes(self, account) -> "Mailboxes":
        """
        The folders of one account (one object per Maildir, shared while
        it is in use).  An account's object lives while a folder of it is
        open, a delivery to it runs or a folder operation is under way,
        and the store's C{linger} seconds more; then its directory fds are
        closed and it is forgotten, so a server that has delivered to
        every account of a big site does not hold a descriptor for each.
        Ask for it again rather than keep it.
        """
        key = os.path.normpath(os.fspath(account.maildir))
        mailboxes = self._mailboxes.get(key)
        if mailboxes is None:
            mailboxes = self._mailboxes[key] = Mailboxes(self, account, key)
        return mailboxes

    def beginDelivery(self) -> DeliveryTransaction:
        """
        Start a delivery transaction (see L{DeliveryTransaction}).
        """
        return DeliveryTransaction(self)

    # -- change notification ---------------------------------------------

    def _delivered(self, mailboxes: "Mailboxes", folderName: str, filename: str) -> None:
        """
        A delivery committed: an open folder picks it up at once (IDLE
        sessions hear about it without waiting for inotify).
        """
        folder = mailboxes._open.get(_folderKey(folderName))
        if folder is not None:
            folder._scheduleRefresh(forceNew=True, delay=0)

    def _watchFolder(self, folder: Folder):
        """
        Watch C{new/}, C{cur/} and the folder directory with inotify (when
        available); returns a callable that stops watching.
        """
        if not self._useInotify:
            return None
        try:
            from twisted.internet import inotify
            from twisted.python.filepath import FilePath
        except ImportError:
            self._useInotify = False
            return None
        if self._inotify is None:
            try:
                self._inotify = inotify.INotify(self.reactor)
                self._inotify.startReading()
            except Exception as e:
                log.warn("inotify unavailable ({error}); relying on periodic rescans", error=e)
                self._useInotify = False
                self._inotify = None
                return None
        root = folder.mailboxes.path if folder.dirName is None else os.path.join(folder.mailboxes.path, folder.dirName)
        mask = (
            inotify.IN_CREATE
            | inotify.IN_MOVED_TO
            | inotify.IN_MOVED_FROM
            | inotify.IN_DELETE
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_DONT_FOLLOW
            | inotify.IN_ONLYDIR
        )
        paths = []
        for subdir in (None, "new", "cur"):
            path = root if subdir is None else os.path.join(root, subdir)

            def callback(ignored, filepath, eventMask, subdir=subdir):
                name = filepath.basename()
                if isinstance(name, bytes):
                    name = os.fsdecode(name)
                gone = bool(eventMask & (inotify.IN_MOVED_FROM | inotify.IN_DELETE))
                folder._inotifyEvent(subdir, name, gone)

            try:
                self._inotify.watch(FilePath(path), mask=mask, callbacks=[callback])
                paths.append(path)
            except Exception as e:
                log.warn("cannot watch {path} ({error})", path=path, error=e)

        def unwatch():
            for path in paths:
                try:
                    self._inotify.ignore(FilePath(path))
                except KeyError:
                    pass

        return unwatch

    def _rescanAll(self):
        """
        The periodic fallback: refresh every open folder (catches what
        inotify cannot see: NFS, a lost event, a full inotify queue).
        """
        for mailboxes in list(self._mailboxes.values()):
            for folder in list(mailboxes._open.values()):
                if not folder._closed:
                    folder.refresh().addErrback(
                        lambda f, name=folder.name: log.failure("rescan of {name} failed", f, name=name)
                    )

    # -- shutdown --------------------------------------------------------

    def close(self):
        """
        Stop timers, watchers and the thread pool.  Returns a Deferred.
        """
        self._closing = True
        if self._rescan is not None and self._rescan.running:
            self._rescan.stop()
        for mailboxes in list(self._mailboxes.values()):
            mailboxes._closeAll()
        if self._inotify is not None:
            self._inotify.loseConnection()
            self._inotify = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
        return defer.succeed(None)
