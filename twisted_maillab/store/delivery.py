"""
Transactional delivery into Maildir (the maddy C{DeliveryTarget} contract).

    txn = store.beginDelivery()
    txn.addRecipient(account, folder="INBOX", prependHeaders=b"Delivered-To: ...\\r\\n")
    txn.write(chunk)            # as many times as needed; streamed to disk
    results = await txn.commit()  # one RecipientResult per recipient
    # or txn.abort()

Each recipient gets its own file in its folder's C{tmp/} (its own
C{Return-Path}/C{Delivered-To} lines first, then the shared body), written
in the store's thread pool.  C{commit} fsyncs each file, checks the quota,
renames it into C{new/} (atomic: the message appears whole or not at all)
and fsyncs C{new/}, sharing that directory fsync with every other delivery
to the same folder that is waiting at the same moment (group commit).  A
crash before the rename leaves only a C{tmp/} file, removed after 36 hours.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_maillab.interfaces import IDeliveryTransaction

from twisted_maillab.store import _fs, dovecot
from twisted_maillab.store.foldersync import openFolderDirs
from twisted_maillab.store.message import _bareLFs
from twisted_maillab.store.errors import (
    StoreError,
    TransactionClosed,
    fromOSError,
)

log = Logger()

FLUSH_SIZE = 64 * 1024


@dataclass
class RecipientResult:
    """
    The outcome for one recipient.

    @ivar account: the L{Account}.
    @ivar folder: the folder name.
    @ivar filename: the file name in C{new/} on success.
    @ivar error: the L{StoreError} on failure, else L{None}.
    """

    account: object
    folder: str
    filename: str | None = None
    error: StoreError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Recipient:
    def __init__(self, account, folder, prepend, create):
        self.account = account
        self.folder = folder
        self.prepend = bytes(prepend)
        self.create = create
        self.mailboxes = None
        self.dirName = None
        self.fds = None  # {"tmp", "new"} (and "cur" for another folder)
        self.shared = None  # INBOX's, lent by the Mailboxes
        self.fd = None
        self.unique = None
        self.error: StoreError | None = None
        self.filename = None
        self.written = 0


@implementer(IDeliveryTransaction)
class DeliveryTransaction:
    """
    One message for one or more recipients.  Created by
    L{Store.beginDelivery}; use from the reactor thread.
    """

    def __init__(self, store):
        self.store = store
        self._recipients: list[_Recipient] = []
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._vsize = 0
        self._last = b""
        self._started = False
        self._state = "open"
        self._chain = defer.succeed(None)
        self._released = False

    @property
    def size(self) -> int:
        """
        Body octets written so far.
        """
        return self._size

    def addRecipient(self, account, folder: str = "INBOX", prependHeaders: bytes = b"", create: bool = False) -> None:
        """
        Add a recipient before the first L{write}.

        @param account: the L{twisted_maillab.account.Account}.
        @param folder: C{"INBOX"} or a folder name (C{"Junk"}).
        @param prependHeaders: header lines for this recipient only
            (C{Return-Path}, C{Delivered-To}...), CRLF or LF terminated as
            the body is.
        @param create: create a missing folder (INBOX is always created).
        @raise InvalidMailboxName: an impossible folder name.
        """
        self._checkOpen()
        if self._started:
            raise StoreError("recipients must be added before the body is written")
        recipient = _Recipient(account, folder, prependHeaders, create)
        recipient.mailboxes = self.store.mailboxes(account)
        # held until the transaction ends, so the store keeps its fds open
        recipient.mailboxes._hold()
        if folder.upper() != "INBOX":
            recipient.dirName = dovecot.folderDirName(folder, recipient.mailboxes.separator)
        self._recipients.append(recipient)

    def _checkOpen(self) -> None:
        if self._state != "open":
            raise TransactionClosed()

    def write(self, chunk: bytes):
        """
        Append body data.  Buffered up to 64 KiB, then written by the thread
        pool, in order.

        @return: a Deferred firing when the data reached the files (use it
            for back-pressure; ignoring it is safe).
        """
        self._checkOpen()
        if not chunk:
            return defer.succeed(None)
        chunk = bytes(chunk)
        self._size += len(chunk)
        self._vsize += len(chunk) + _bareLFs(self._last, chunk)
        self._last = chunk[-1:]
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= FLUSH_SIZE:
            return self._flush()
        return defer.succeed(None)

    def _flush(self):
        data = b"".join(self._buffer)
        self._buffer = []
        self._buffered = 0
        first = not self._started
        self._started = True

        def work(_):
            return self.store.run(self._writeWork, data, first)

        self._chain.addCallback(work)
        result = defer.Deferred()

        def done(value):
            result.callback(None)
            return value

        def failed(f):
            result.errback(f)
            return f

        self._chain.addCallbacks(done, failed)
        result.addErrback(lambda f: None)  # the error is reported by commit
        return result

    # -- thread side --------------------------------------------------

    def _openRecipient(self, r: _Recipient) -> None:
        mailboxes = r.mailboxes
        r.unique = self.store.names.next()
        if r.dirName is None:
            # INBOX: the Mailboxes keep its tmp/ and new/ open
            r.shared = mailboxes._acquireInboxDirs()
            r.fds = r.shared.fds
            try:
                r.fd = _fs.createFile(r.unique, r.fds["tmp"], mailboxes.owner)
            except FileNotFoundError:
                # tmp/ was deleted since it was opened: open afresh
                self._refreshShared(r)
                r.fd = _fs.createFile(r.unique, r.fds["tmp"], mailboxes.owner)
            return
        # INBOX is always created (opening the root does it); another
        # folder only when asked.
        rootFd = mailboxes._rootFd(create=True)
        fds = openFolderDirs(rootFd, r.dirName, r.folder, mailboxes.owner, r.create, keepRoot=False)
        try:
            r.fd = _fs.createFile(r.unique, fds["tmp"], mailboxes.owner)
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        r.fds = fds

    def _refreshShared(self, r: _Recipient) -> None:
        # The stale pair stays ours until the fresh one is open: if opening
        # fails (new/ is now a symlink), _discard still reaches our tmp/
        # file through it.
        stale = r.shared
        r.mailboxes._staleInboxDirs(stale)
        fresh = r.mailboxes._acquireInboxDirs()
        r.shared, r.fds = fresh, fresh.fds
        r.mailboxes._releaseInboxDirs(stale)

    def _fail(self, r: _Recipient, error: BaseException) -> None:
        if isinstance(error, StoreError):
            r.error = error
        elif isinstance(error, OSError):
            r.error = fromOSError(error, f"delivery to {r.account.name}/{r.folder}")
        else:
            raise error
        self._discard(r)

    def _discard(self, r: _Recipient) -> None:
        if r.fd is not None:
            os.close(r.fd)
            r.fd = None
        if r.unique is not None and r.fds is not None:
            try:
                os.unlink(r.unique, dir_fd=r.fds["tmp"])
            except OSError:
                pass
            r.unique = None

    def _closeFds(self, r: _Recipient) -> None:
        if r.shared is not None:
            shared, r.shared, r.fds = r.shared, None, None
            r.mailboxes._releaseInboxDirs(shared)
        elif r.fds:
            for fd in r.fds.values():
                os.close(fd)
            r.fds = None

    def _writeWork(self, data: bytes, first: bool) -> None:
        for r in self._recipients:
            if r.error is not None:
                continue
            try:
                if first:
                    self._openRecipient(r)
                    # this recipient's header lines and the body in one
                    # write (every system call here is a GIL hand-off
                    # with the reactor thread)
                    _fs.writeAll(r.fd, r.prepend + data if r.prepend else data)
                    r.written += len(r.prepend) + len(data)
                else:
                    _fs.writeAll(r.fd, data)
                    r.written += len(data)
            except (OSError, StoreError) as e:
                self._fail(r, e)

    def _commitWork(self) -> None:
        """
        Thread: fsync, quota, rename into new/ for each recipient.  The
        directory fsync happens afterwards in L{DirectorySyncs}.
        """
        for r in self._recipients:
            if r.error is not None:
                continue
            try:
                if self.store.fsync:
                    self.store.metrics.fsync(r.fd)  # os.fsync, timed for /metrics
                os.close(r.fd)
                r.fd = None
                vsize = self._vsize + len(r.prepend) + _prependBareLFs(r.prepend)
                quota = r.mailboxes._quotaCheck(r.written, 1)
                base = f"{r.unique},S={r.written},W={vsize}"
                # the rename is the commit point: new/ only ever holds
                # complete, fsynced messages
                try:
                    os.rename(r.unique, base, src_dir_fd=r.fds["tmp"], dst_dir_fd=r.fds["new"])
                except FileNotFoundError:
                    if r.shared is None:
                        raise
                    # new/ was deleted (or replaced) since it was opened:
                    # open both afresh, with every check, and try again
                    self._refreshShared(r)
                    os.rename(r.unique, base, src_dir_fd=r.fds["tmp"], dst_dir_fd=r.fds["new"])
                r.unique = None
                r.filename = base
                if quota:
                    r.mailboxes._quotaUpdate(r.written, 1)
            except (OSError, StoreError) as e:
                self._fail(r, e)

    def _finishWork(self, data: bytes, first: bool) -> None:
        """
        Thread: write the last data and commit every recipient.  The
        directory fsyncs and closing the fds follow in L{CommitBatcher},
        once for every transaction of the batch.
        """
        self._writeWork(data, first)
        self._commitWork()

    def _newDirectories(self) -> dict:
        """
        Thread: C{new/} of every recipient that committed, by path.
        """
        return {
            (r.mailboxes.path, r.dirName): r.fds["new"]
            for r in self._recipients
            if r.error is None and r.fds is not None
        }

    def _abortWork(self) -> None:
        for r in self._recipients:
            self._discard(r)
            self._closeFds(r)

    # -- reactor side -------------------------------------------------

    @defer.inlineCallbacks
    def _commit(self):
        # The rest of the body, fsync, rename, directory fsync and closing
        # the fds happen in one pool job, shared with the other commits
        # waiting at that moment (CommitBatcher): each thread hop costs the
        # reactor thread a Deferred round trip, and for a message under
        # FLUSH_SIZE this is the only hop.
        data = b"".join(self._buffer)
        self._buffer = []
        self._buffered = 0
        first = not self._started
        self._started = True
        try:
            try:
                try:
                    yield self._chain
                except BaseException:
                    yield self.store.run(self._abortWork)
                    raise
                syncErrors = yield self.store.commits.submit(self, data, first)
            finally:
                self._state = "done"
            for error in syncErrors:
                # The message is in new/ and its file is fsynced; only the
                # rename's durability is in doubt.  Deferring it now would
                # deliver it twice, so it is logged for the administrator.
                log.error("directory fsync failed: {error}", error=error)
            out = []
            for r in self._recipients:
                out.append(RecipientResult(r.account, r.folder, r.filename, r.error))
                if r.error is None:
                    self.store._delivered(r.mailboxes, r.folder, r.filename)
            return out
        finally:
            self._releaseMailboxes()

    def _releaseMailboxes(self) -> None:
        if self._released:
            return
        self._released = True
        for r in self._recipients:
            r.mailboxes._release()

    def commit(self):
        """
        Make the message visible to every recipient that did not fail.

        @return: a Deferred firing with a list of L{RecipientResult}, one per
            L{addRecipient}, in order.  The SMTP server replies 250 only
            after it fired; a recipient with C{error} gets its
            C{error.smtpCode} (or the whole message is deferred).
        """
        self._checkOpen()
        self._state = "committing"
        return self._commit()

    def abort(self):
        """
        Discard the message (unlink the C{tmp/} files).

        @return: a Deferred firing when done.
        """
        if self._state != "open":
            return defer.succeed(None)
        self._state = "aborted"
        self._buffer = []
        d = self._chain
        d.addBoth(lambda _: self.store.run(self._abortWork))
        d.addErrback(lambda f: log.failure("abort failed", f))
        d.addBoth(lambda _: self._releaseMailboxes())
        return d


class CommitBatcher:
    """
    Group commit of delivery transactions.

    A commit is queued; one pool job takes every commit queued when it
    starts running, writes and renames each message, fsyncs each C{new/}
    directory once for all of them, closes everything and reports back
    with one thread hop.  While the store's busy thread is on a batch,
    the next commits gather for the next one (the pool wakes a second
    thread only for a slow job, see L{WorkerPool}): under load a
    directory fsync, a reactor wake-up and the pool's bookkeeping are
    shared by several messages, and each is a GIL hand-off less for the
    reactor thread.
    """

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._pending: list = []
        self._scheduled = False  # a drain job is queued and not yet started
        self.batches = 0  # how many drain jobs ran (for tests and curiosity)

    def submit(self, transaction: DeliveryTransaction, data: bytes, first: bool) -> defer.Deferred:
        """
        @return: a Deferred firing with the list of directory fsync errors
            for C{transaction}, or failing if its commit raised.
        """
        d = defer.Deferred()
        with self._lock:
            self._pending.append((transaction, data, first, d))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.store.run(self._drain).addCallbacks(self._deliver, self._drainFailed)
        return d

    def _drain(self) -> list:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        self.batches += 1
        try:
            return self._commitBatch(batch)
        except BaseException:
            # a bug, not a disk error: every commit of the batch hears of it
            failure = Failure()
            return [(d, failure) for transaction, data, first, d in batch]

    def _commitBatch(self, batch: list) -> list:
        outcomes = []  # per transaction: its Failure, or the new/ it committed into
        directories = {}
        for transaction, data, first, d in batch:
            try:
                transaction._finishWork(data, first)
            except BaseException:
                outcomes.append(Failure())
            else:
                committed = transaction._newDirectories()
                outcomes.append(committed)
                directories.update(committed)
        errors = {}
        if self.store.fsync:
            for key, fd in directories.items():
                try:
                    # still grouped with batches running on other threads
                    self.store.directorySyncs.sync(fd, key)
                except OSError as e:
                    errors[key] = e
        results = []
        for (transaction, data, first, d), outcome in zip(batch, outcomes):
            try:
                transaction._abortWork()
            except BaseException:
                if not isinstance(outcome, Failure):
                    outcome = Failure()
            if isinstance(outcome, Failure):
                results.append((d, outcome))
            else:
                results.append((d, [errors[key] for key in outcome if key in errors]))
        return results

    def _deliver(self, results: list) -> None:
        for d, result in results:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def _drainFailed(self, failure: Failure) -> None:
        # The job never ran (the store is closing): fail what it would
        # have taken.
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for transaction, data, first, d in batch:
            d.errback(failure)


def _prependBareLFs(data: bytes) -> int:
    return data.count(b"\n") - data.count(b"\r\n")
