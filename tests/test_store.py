"""
Tests for twisted_maillab.store: delivery transaction, names, modes,
ownership, symlink attacks, uidlist round-trip, events, quota, folders.
Dovecot interoperability is in test_store_dovecot.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from twisted_maillab import config as _config
from twisted_maillab.account import Account
from twisted_maillab.store import (
    InvalidMailboxName,
    MailboxExists,
    MailboxInUse,
    MailboxNotFound,
    MailboxReadOnly,
    MessageTooBigForQuota,
    MessageVanished,
    QuotaExceeded,
    StorageFull,
    Store,
    UnsafePath,
    makeStore,
)
from twisted_maillab.store import dovecot, errors
from twisted_maillab.store.message import _bareLFs
from twisted_maillab.store.store import DirectorySyncs

NOBODY = 65534


def makeAccount(testCase, uid=NOBODY, gid=NOBODY, name="edouard") -> Account:
    base = Path(tempfile.mkdtemp(prefix="maillab-store-"))
    testCase.addCleanup(shutil.rmtree, base, True)
    os.chmod(base, 0o755)
    home = base / name
    home.mkdir()
    if uid is not None and os.geteuid() == 0:
        os.chown(home, uid, gid)
    return Account(name, "example.org", home, uid, gid, home / "Maildir")


def chownTree(path: Path, uid=NOBODY, gid=NOBODY) -> None:
    """
    Files a test writes directly (as another program would) belong to the
    mailbox owner, as they would in real life.
    """
    if os.geteuid() != 0:
        return
    for root, dirs, names in os.walk(path):
        os.chown(root, uid, gid)
        for name in names:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def makeTestStore(testCase, **kw) -> Store:
    kw.setdefault("rescanInterval", 0)
    kw.setdefault("hostname", "mx.example.org")
    store = Store(reactor, **kw)
    testCase.addCleanup(store.close)
    return store


class Recorder:
    """
    A folder listener that records events and lets a test wait for one.
    """

    def __init__(self):
        self.events = []
        self._waiting = []

    def _record(self, kind, uids):
        self.events.append((kind, list(uids)))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback((kind, list(uids)))

    def messagesAdded(self, folder, uids):
        self._record("added", uids)

    def flagsChanged(self, folder, uids):
        self._record("flags", uids)

    def messagesExpunged(self, folder, uids):
        self._record("expunged", uids)

    def next(self, timeout=10.0):
        d = defer.Deferred()
        self._waiting.append(d)
        return d.addTimeout(timeout, reactor)


@defer.inlineCallbacks
def deliver(store, account, body=b"Subject: test\n\nhello\n", folder="INBOX", prepend=b""):
    txn = store.beginDelivery()
    txn.addRecipient(account, folder, prepend)
    txn.write(body)
    results = yield txn.commit()
    return results[0]


def files(path: Path, sub: str) -> list[str]:
    return sorted(os.listdir(path / sub))


# ---------------------------------------------------------------------------


class DeliveryTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_deliveryLandsInNewWithNameSizeModesAndOwner(self):
        """
        A committed delivery is one file in new/: a Maildir unique name with
        ,S= and ,W= sizes, mode 0600, owned by the account; directories 0700.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        body = b"From: a@example.net\nSubject: hi\n\nbody line\n"
        prepend = b"Return-Path: <a@example.net>\nDelivered-To: edouard@example.org\n"
        result = yield deliver(store, account, body, prepend=prepend)
        self.assertTrue(result.ok)
        maildir = account.maildir
        self.assertEqual(files(maildir, "new"), [result.filename])
        self.assertEqual(files(maildir, "tmp"), [])
        self.assertEqual(files(maildir, "cur"), [])
        name = result.filename
        size = len(prepend) + len(body)
        vsize = size + (prepend + body).count(b"\n")
        self.assertRegex(
            name,
            r"^\d+\.M\d+P%dQ\d+\.mx\.example\.org,S=%d,W=%d$" % (os.getpid(), size, vsize),
        )
        path = maildir / "new" / name
        self.assertEqual(path.read_bytes(), prepend + body)
        st = path.stat()
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        for directory in (maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
            self.assertEqual(stat.S_IMODE(directory.stat().st_mode), 0o700, directory)
        if os.geteuid() == 0:
            self.assertEqual((st.st_uid, st.st_gid), (NOBODY, NOBODY))
            self.assertEqual(maildir.stat().st_uid, NOBODY)

    @defer.inlineCallbacks
    def test_multipleRecipientsGetTheirOwnHeaders(self):
        """
        Each recipient's file starts with its own prepended headers followed
        by the same streamed body (written in many chunks, over 64 KiB).
        """
        alice = makeAccount(self, name="alice")
        bob = makeAccount(self, name="bob")
        store = makeTestStore(self)
        txn = store.beginDelivery()
        txn.addRecipient(alice, prependHeaders=b"Delivered-To: alice@example.org\r\n")
        txn.addRecipient(bob, prependHeaders=b"Delivered-To: bob@example.org\r\n")
        chunks = [b"Subject: big\r\n\r\n"] + [b"%06d " % i + b"x" * 90 + b"\r\n" for i in range(3000)]
        for chunk in chunks:
            txn.write(chunk)
        results = yield txn.commit()
        self.assertEqual([r.ok for r in results], [True, True])
        body = b"".join(chunks)
        for account, result in ((alice, results[0]), (bob, results[1])):
            data = (account.maildir / "new" / result.filename).read_bytes()
            self.assertEqual(data, b"Delivered-To: %s@example.org\r\n" % account.name.encode() + body)
            # CRLF input: the virtual size equals the size
            self.assertIn(",S=%d,W=%d" % (len(data), len(data)), result.filename)

    @defer.inlineCallbacks
    def test_abortLeavesNothing(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        txn = store.beginDelivery()
        txn.addRecipient(account)
        yield txn.write(b"x" * (200 * 1024))
        self.assertEqual(len(files(account.maildir, "tmp")), 1)
        yield txn.abort()
        for sub in ("new", "cur", "tmp"):
            self.assertEqual(files(account.maildir, sub), [])
        self.assertRaises(errors.TransactionClosed, txn.write, b"more")

    @defer.inlineCallbacks
    def test_missingFolderIsAPerRecipientError(self):
        """
        One recipient's failure does not affect the others.
        """
        alice = makeAccount(self, name="alice")
        bob = makeAccount(self, name="bob")
        store = makeTestStore(self)
        txn = store.beginDelivery()
        txn.addRecipient(alice, folder="Nope")
        txn.addRecipient(bob)
        txn.write(b"Subject: x\n\ny\n")
        results = yield txn.commit()
        self.assertIsInstance(results[0].error, MailboxNotFound)
        self.assertTrue(results[1].ok)
        self.assertEqual(len(files(bob.maildir, "new")), 1)
        self.assertEqual(files(alice.maildir, "new"), [])

    def test_killBetweenWriteAndRenameLeavesNothingVisible(self):
        """
        A process killed after writing the body but before commit leaves a
        tmp/ file only: new/ and cur/ stay empty, the store sees no message,
        and tmp/ is cleaned once the file is 36 hours old.
        """
        account = makeAccount(self)
        child = textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            from twisted.internet import reactor, defer
            from twisted_maillab.account import Account
            from twisted_maillab.store import Store
            account = Account("edouard", None, Path({str(account.home)!r}), {NOBODY}, {NOBODY},
                              Path({str(account.maildir)!r}))
            store = Store(reactor, rescanInterval=0)
            @defer.inlineCallbacks
            def go():
                txn = store.beginDelivery()
                txn.addRecipient(account, prependHeaders=b"Delivered-To: edouard\\n")
                for i in range(10):
                    yield txn.write(b"line %d " % i + b"y" * 70000 + b"\\n")
                sys.stdout.write("READY\\n"); sys.stdout.flush()
                # commit never comes: the parent kills us here
            reactor.callWhenRunning(go)
            reactor.run()
            """
        )
        process = subprocess.Popen(
            [sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=os.getcwd()
        )
        try:
            line = process.stdout.readline()
            self.assertEqual(line, b"READY\n")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
        maildir = account.maildir
        self.assertEqual(files(maildir, "new"), [])
        self.assertEqual(files(maildir, "cur"), [])
        leftovers = files(maildir, "tmp")
        self.assertEqual(len(leftovers), 1)
        self.assertGreater((maildir / "tmp" / leftovers[0]).stat().st_size, 700000)

        @defer.inlineCallbacks
        def check():
            clock = task.Clock()
            clock.advance(time.time())
            store = makeTestStore(self, clock=clock)
            folder = yield store.mailboxes(account).open("INBOX")
            self.assertEqual(len(folder), 0)
            self.assertEqual(len(files(maildir, "tmp")), 1)  # young: kept
            folder.close()
            yield folder._lock.run(lambda: None)
            clock.advance(36 * 3600 + 60)
            store2 = makeTestStore(self, clock=clock)
            folder = yield store2.mailboxes(account).open("INBOX")
            self.assertEqual(files(maildir, "tmp"), [])
            self.assertEqual(len(folder), 0)
            folder.close()

        return check()

    def test_uniqueNames(self):
        clock = task.Clock()
        clock.advance(1700000000.25)
        names = dovecot.NameGenerator(clock, "host/with:colon")
        a, b = names.next(), names.next()
        self.assertNotEqual(a, b)
        self.assertEqual(a, f"1700000000.M250000P{os.getpid()}Q1.host\\057with\\072colon")
        self.assertTrue(b.endswith("Q2.host\\057with\\072colon"))

    def test_virtualSizeAcrossChunks(self):
        self.assertEqual(_bareLFs(b"", b"a\nb\r\nc\n"), 2)
        self.assertEqual(_bareLFs(b"\r", b"\nx"), 0)
        self.assertEqual(_bareLFs(b"x", b"\nx"), 1)

    @defer.inlineCallbacks
    def test_groupCommitSharesDirectoryFsync(self):
        """
        Concurrent deliveries to one folder share directory fsyncs: while
        one runs, the deliveries that renamed meanwhile wait for the next.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account)  # creates the Maildir
        realFsync = os.fsync
        directories = []

        def slowDirectoryFsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                directories.append(fd)
                time.sleep(0.05)
            return realFsync(fd)

        self.patch(os, "fsync", slowDirectoryFsync)
        before = store.directorySyncs.fsyncs
        deliveries = [deliver(store, account, b"Subject: %d\n\n" % i) for i in range(20)]
        results = yield defer.gatherResults(deliveries)
        self.assertTrue(all(r.ok for r in results))
        self.assertEqual(len(files(account.maildir, "new")), 21)
        ran = store.directorySyncs.fsyncs - before
        self.assertEqual(ran, len(directories))
        self.assertGreaterEqual(ran, 1)
        # commits gathered in batches, each batch one fsync of new/
        self.assertLessEqual(ran, 10)
        self.assertLess(store.commits.batches, 21)

    @defer.inlineCallbacks
    def test_batchedCommitsFailAlone(self):
        """
        In one batch, a transaction that fails (its recipient's quota is
        full) fails alone; the others are delivered, each new/ is fsynced
        once.
        """
        full = makeAccount(self, name="full")
        fine = makeAccount(self, name="fine")
        store = makeTestStore(self)
        yield deliver(store, full)
        (full.maildir / "maildirsize").write_text("100S\n")
        if os.geteuid() == 0:
            os.chown(full.maildir / "maildirsize", NOBODY, NOBODY)
        realFsync = os.fsync
        directories = []

        def countingFsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                directories.append(os.fstat(fd).st_ino)
            return realFsync(fd)

        self.patch(os, "fsync", countingFsync)
        batches = store.commits.batches
        # Hold the pool's thread so that the four commits gather behind it
        # in one batch (and no second thread joins meanwhile).
        store._pool.patience = 60
        release = threading.Event()
        self.addCleanup(release.set)
        blocked = store.run(release.wait, 10)
        deliveries = [deliver(store, full, b"Subject: big\n\n" + b"x" * 500)] + [
            deliver(store, fine, b"Subject: %d\n\n" % i) for i in range(3)
        ]
        release.set()
        yield blocked
        results = yield defer.gatherResults(deliveries)
        self.assertIsInstance(results[0].error, QuotaExceeded)
        self.assertTrue(all(r.ok for r in results[1:]))
        self.assertEqual(store.commits.batches, batches + 1)
        self.assertEqual(directories, [os.stat(fine.maildir / "new").st_ino])
        self.assertEqual(len(files(fine.maildir, "new")), 3)
        self.assertEqual(files(full.maildir, "tmp"), [])


class CreateFileModeTests(unittest.TestCase):
    """
    New files are exactly 0600 whatever the umask: the fchmod that fixes a
    umask which took bits away is skipped only when it would change nothing.
    """

    def setUp(self):
        from twisted_maillab.store import _fs

        self.fs = _fs
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, self.fd)

    def create(self, umask):
        previous = os.umask(umask)
        self.patch(self.fs, "_umaskCache", self.fs._UMASK_UNKNOWN)
        try:
            self.assertEqual(self.fs._umask(), umask)
            os.close(self.fs.createFile("m", self.fd, self.fs.Owner()))
        finally:
            os.umask(previous)
        return stat.S_IMODE(os.stat("m", dir_fd=self.fd).st_mode)

    def test_umaskTakingOwnerBits(self):
        self.assertEqual(self.create(0o277), 0o600)

    def test_ordinaryUmask(self):
        self.assertEqual(self.create(0o022), 0o600)


class DirectorySyncsTests(unittest.TestCase):
    """
    The thread-side group commit, driven by real threads.
    """

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, self.fd)
        self.syncs = DirectorySyncs()
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        realFsync = os.fsync

        def blockingFirstFsync(fd):
            self.calls += 1
            if self.calls == 1:
                self.started.set()
                self.release.wait(10)
                if self.failFirst:
                    raise OSError(errno.EIO, "I/O error")
            return realFsync(fd)

        self.failFirst = False
        self.patch(os, "fsync", blockingFirstFsync)

    def _callers(self, count):
        """
        One caller whose fsync blocks, then C{count} more that arrive while
        it runs; returns each caller's outcome (None or the error).
        """
        outcomes = {}

        def call(name):
            try:
                self.syncs.sync(self.fd, self.dir)
                outcomes[name] = None
            except OSError as e:
                outcomes[name] = e

        first = threading.Thread(target=call, args=("first",))
        first.start()
        self.assertTrue(self.started.wait(10))
        later = [threading.Thread(target=call, args=(i,)) for i in range(count)]
        for t in later:
            t.start()
        deadline = time.monotonic() + 10
        while self.syncs._folders and list(self.syncs._folders.values())[0].users < count + 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.001)
        self.release.set()
        for t in [first] + later:
            t.join(10)
        return outcomes

    def test_callersDuringAnFsyncShareTheNextOne(self):
        outcomes = self._callers(5)
        self.assertEqual(outcomes, {"first": None, 0: None, 1: None, 2: None, 3: None, 4: None})
        # the blocked one, then one for the five that renamed during it
        self.assertEqual(self.syncs.fsyncs, 2)
        self.assertEqual(self.calls, 2)
        self.assertEqual(self.syncs._folders, {})

    def test_errorReachesOnlyTheCallersItCovered(self):
        """
        A failed fsync fails the callers it covered; those that arrived
        during it are covered by the next one, which succeeds.
        """
        self.failFirst = True
        outcomes = self._callers(3)
        self.assertEqual(outcomes["first"].errno, errno.EIO)
        self.assertEqual([outcomes[i] for i in range(3)], [None, None, None])
        self.assertEqual(self.syncs.fsyncs, 2)


class ErrorTests(unittest.TestCase):
    def test_errorCodes(self):
        e = QuotaExceeded()
        self.assertTrue(e.temporary)
        self.assertEqual((e.smtpCode, e.enhancedCode, e.imapCode), (452, "4.2.2", "OVERQUOTA"))
        self.assertEqual(e.smtpReply(), "452 4.2.2 mailbox is full (quota exceeded)")
        self.assertEqual(StorageFull().imapCode, "OVERQUOTA")
        self.assertEqual(StorageFull().enhancedCode, "4.3.1")
        self.assertFalse(MessageTooBigForQuota().temporary)
        self.assertEqual(MessageTooBigForQuota().smtpCode, 552)
        self.assertEqual(errors.ServerBug().imapCode, "SERVERBUG")
        self.assertEqual(MailboxReadOnly().imapCode, "NOPERM")

    def test_fromOSError(self):
        cases = {
            errno.ENOSPC: StorageFull,
            errno.EDQUOT: QuotaExceeded,
            errno.EACCES: MailboxReadOnly,
            errno.EROFS: MailboxReadOnly,
            errno.ELOOP: UnsafePath,
            errno.EIO: errors.ServerBug,
        }
        for code, cls in cases.items():
            self.assertIsInstance(errors.fromOSError(OSError(code, os.strerror(code))), cls)

    @defer.inlineCallbacks
    def test_diskFullDuringDelivery(self):
        """
        ENOSPC while writing the body fails that recipient with StorageFull
        (SMTP 452 4.3.1) and leaves no file behind.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        from twisted_maillab.store import _fs

        original = _fs.writeAll
        calls = []

        def full(fd, data):
            calls.append(len(data))
            if b"body" in data:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(fd, data)

        self.patch(_fs, "writeAll", full)
        txn = store.beginDelivery()
        txn.addRecipient(account, prependHeaders=b"X: y\n")
        txn.write(b"Subject: x\n\nbody\n")
        (result,) = yield txn.commit()
        self.assertIsInstance(result.error, StorageFull)
        self.assertEqual(result.error.smtpReply()[:9], "452 4.3.1")
        for sub in ("new", "cur", "tmp"):
            self.assertEqual(files(account.maildir, sub), [])

    @defer.inlineCallbacks
    def test_readOnlyFolder(self):
        """
        A folder that cannot be written (EROFS/EACCES on rename) gives
        MailboxReadOnly to the delivery.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account)
        original = os.rename

        def readOnly(src, dst, **kw):
            raise OSError(errno.EROFS, "Read-only file system")

        self.patch(os, "rename", readOnly)
        result = yield deliver(store, account)
        self.patch(os, "rename", original)
        self.assertIsInstance(result.error, MailboxReadOnly)
        self.assertEqual(files(account.maildir, "tmp"), [])
        self.assertEqual(len(files(account.maildir, "new")), 1)


class SymlinkTests(unittest.TestCase):
    """
    A user who plants symlinks, FIFOs or hard links in their own Maildir
    cannot make the server read or write outside it.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.outside = Path(tempfile.mkdtemp(prefix="maillab-outside-"))
        self.addCleanup(shutil.rmtree, self.outside, True)
        yield deliver(self.store, self.account)

    @defer.inlineCallbacks
    def test_newIsSymlink(self):
        maildir = self.account.maildir
        shutil.rmtree(maildir / "new")
        os.symlink(self.outside, maildir / "new")
        result = yield deliver(self.store, self.account)
        self.assertIsInstance(result.error, UnsafePath)
        self.assertEqual(os.listdir(self.outside), [])

    @defer.inlineCallbacks
    def test_newReplacedBySymlinkAfterADelivery(self):
        """
        INBOX's tmp/ and new/ stay open between deliveries; a new/ that
        was replaced meanwhile is noticed (the kept one is deleted), opened
        afresh with every check, and refused as a symlink.  Nothing lands
        outside, nothing stays in tmp/.
        """
        maildir = self.account.maildir
        first = yield deliver(self.store, self.account)
        self.assertTrue(first.ok)
        shutil.rmtree(maildir / "new")
        os.symlink(self.outside, maildir / "new")
        result = yield deliver(self.store, self.account)
        self.assertIsInstance(result.error, UnsafePath)
        self.assertEqual(os.listdir(self.outside), [])
        self.assertEqual(os.listdir(maildir / "tmp"), [])

    @defer.inlineCallbacks
    def test_newRecreatedAfterADelivery(self):
        """
        An administrator who recreates new/ gets the next message in it.
        """
        maildir = self.account.maildir
        yield deliver(self.store, self.account)
        shutil.rmtree(maildir / "new")
        (maildir / "new").mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(maildir / "new", NOBODY, NOBODY)
        result = yield deliver(self.store, self.account)
        self.assertTrue(result.ok, result.error)
        self.assertEqual(os.listdir(maildir / "new"), [result.filename])
        # and the one after that goes through the kept directories
        again = yield deliver(self.store, self.account)
        self.assertEqual(sorted(os.listdir(maildir / "new")), sorted([result.filename, again.filename]))

    @defer.inlineCallbacks
    def test_tmpRecreatedAfterADelivery(self):
        maildir = self.account.maildir
        yield deliver(self.store, self.account)
        shutil.rmtree(maildir / "tmp")
        (maildir / "tmp").mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(maildir / "tmp", NOBODY, NOBODY)
        result = yield deliver(self.store, self.account)
        self.assertTrue(result.ok, result.error)

    @defer.inlineCallbacks
    def test_maildirIsSymlink(self):
        account = makeAccount(self, name="mallory")
        os.symlink(self.outside, account.maildir)
        result = yield deliver(self.store, account)
        self.assertIsInstance(result.error, UnsafePath)
        self.assertEqual(os.listdir(self.outside), [])

    @defer.inlineCallbacks
    def test_folderIsSymlink(self):
        maildir = self.account.maildir
        for sub in ("cur", "new", "tmp"):
            (self.outside / sub).mkdir()
        os.symlink(self.outside, maildir / ".Evil")
        yield self.assertFailure(self.store.mailboxes(self.account).open("Evil"), UnsafePath)
        result = yield deliver(self.store, self.account, folder="Evil")
        self.assertIsInstance(result.error, UnsafePath)
        self.assertEqual(os.listdir(self.outside / "new"), [])

    @defer.inlineCallbacks
    def test_messageSymlinkFifoAndForeignHardlink(self):
        """
        Opening a message that was replaced by a symlink to a secret, by a
        FIFO (which would block a reader forever) or by a hard link to a
        root-owned file is refused.
        """
        secret = self.outside / "secret"
        secret.write_bytes(b"root:secret-hash\n")
        os.chmod(secret, 0o600)
        folder = yield self.store.mailboxes(self.account).open()
        self.addCleanup(folder.close)
        (uid,) = folder.uids()
        message = folder.message(uid)
        path = self.account.maildir / "new" / message.filename
        path.unlink()
        os.symlink(secret, path)
        self.assertRaises(UnsafePath, folder.openMessage, uid)
        path.unlink()
        os.mkfifo(path)
        started = time.monotonic()
        self.assertRaises(UnsafePath, folder.openMessage, uid)
        self.assertLess(time.monotonic() - started, 5)
        path.unlink()
        if os.geteuid() == 0:
            os.link(secret, path)
            self.assertRaises(UnsafePath, folder.openMessage, uid)

    @defer.inlineCallbacks
    def test_uidlistSymlinkNotFollowed(self):
        target = self.outside / "target"
        target.write_bytes(b"do not touch\n")
        os.symlink(target, self.account.maildir / "dovecot-uidlist")
        yield self.assertFailure(self.store.mailboxes(self.account).open(), UnsafePath)
        self.assertEqual(target.read_bytes(), b"do not touch\n")


class UidlistTests(unittest.TestCase):
    SAMPLE = (
        b"3 V1700000000 N5 G0123456789abcdef0123456789abcdef X1\n"
        b"1 :1700000001.M1P1.host,S=10\n"
        b"2 W120 G00aa :1700000002.M1P1.host\n"
        b"4 P0000abcd :1700000004.M1P1.host,S=20,W=21\n"
    )

    def test_parseAndFormatRoundTrip(self):
        header_line, _, rest = self.SAMPLE.partition(b"\n")
        header = dovecot.parseHeader(header_line)
        self.assertEqual((header.uidValidity, header.nextUid, header.guid, header.extra),
                         (1700000000, 5, "0123456789abcdef0123456789abcdef", "X1"))
        records = list(dovecot.parseRecords(rest, 3))
        self.assertEqual(records[1], (2, "W120 G00aa", "1700000002.M1P1.host"))
        out = header.format() + b"".join(dovecot.formatRecord(*r) for r in records)
        self.assertEqual(out, self.SAMPLE)

    def test_version1(self):
        header = dovecot.parseHeader(b"1 1700000000 3")
        self.assertEqual((header.version, header.uidValidity, header.nextUid), (1, 1700000000, 3))
        self.assertEqual(list(dovecot.parseRecords(b"1 a.b.c\n2 d.e.f\n", 1)), [(1, "", "a.b.c"), (2, "", "d.e.f")])

    def test_rejectsDisorder(self):
        with self.assertRaises(dovecot.UidlistFormatError):
            list(dovecot.parseRecords(b"2 :a\n1 :b\n", 3))
        with self.assertRaises(dovecot.UidlistFormatError):
            list(dovecot.parseRecords(b"1 :a/b\n", 3))

    @defer.inlineCallbacks
    def test_storeKeepsExtensionsAndUids(self):
        """
        Opening a Maildir with an existing uidlist keeps its UIDs,
        UIDVALIDITY, GUID and extension fields, assigns new UIDs from N,
        and the POP3 UIDL comes from a P extension when present.
        """
        account = makeAccount(self)
        maildir = account.maildir
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        (maildir / "cur" / "1700000001.M1P1.host,S=10:2,S").write_bytes(b"0123456789")
        (maildir / "cur" / "1700000002.M1P1.host:2,").write_bytes(b"x")
        (maildir / "new" / "1700000004.M1P1.host,S=20,W=21").write_bytes(b"y" * 20)
        (maildir / "new" / "1700000009.M1P1.host").write_bytes(b"new one")
        (maildir / "dovecot-uidlist").write_bytes(self.SAMPLE)
        chownTree(maildir)
        store = makeTestStore(self)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        self.assertEqual(folder.uidValidity, 1700000000)
        self.assertEqual(folder.guid, "0123456789abcdef0123456789abcdef")
        self.assertEqual(folder.uids(), [1, 2, 4, 5])
        self.assertEqual(folder.flags(1), {"\\Seen"})
        self.assertEqual(folder.pop3Uidl(4), "0000abcd")
        self.assertEqual(folder.pop3Uidl(1), "00000001%08x" % 1700000000)
        self.assertEqual(folder.uidNext, 6)
        data = (maildir / "dovecot-uidlist").read_bytes()
        self.assertTrue(data.startswith(self.SAMPLE))  # appended, not rewritten
        self.assertTrue(data.endswith(b"5 :1700000009.M1P1.host\n"))

    @defer.inlineCallbacks
    def test_otherProcessAppendsAreReadIncrementally(self):
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        self.assertEqual(folder.uids(), [1])
        # another program (Dovecot) delivers and assigns UID 7
        name = "1800000000.M5P5.other,S=3"
        (account.maildir / "new" / name).write_bytes(b"abc")
        with open(account.maildir / "dovecot-uidlist", "ab") as f:
            f.write(b"7 :" + name.encode() + b"\n")
        recorder = Recorder()
        folder.subscribe(recorder)
        yield folder.refresh()
        self.assertEqual(folder.uids(), [1, 7])
        self.assertEqual(recorder.events, [("added", [7])])
        self.assertEqual(folder.uidNext, 8)

    @defer.inlineCallbacks
    def test_uidvalidityAndUidsPersistAcrossRestarts(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        for i in range(3):
            yield deliver(store, account, b"Subject: %d\n\n" % i)
        folder = yield store.mailboxes(account).open()
        validity, uids = folder.uidValidity, list(folder.uids())
        folder.close()
        yield store.close()
        store2 = makeTestStore(self)
        folder = yield store2.mailboxes(account).open()
        self.addCleanup(folder.close)
        self.assertEqual((folder.uidValidity, folder.uids()), (validity, uids))
        self.assertEqual(uids, [1, 2, 3])

    def test_dotlockStaleDeadPid(self):
        """
        A dovecot-uidlist.lock left by a dead process on this host is
        overridden; one held by a live process makes us wait and fail with
        MailboxInUse.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, fd)
        owner = dovecot._fs.Owner()
        dead = subprocess.Popen(["true"])
        dead.wait()
        lockPath = Path(directory, "dovecot-uidlist.lock")
        lockPath.write_text(f"{dead.pid}:testhost")
        old = time.time() - 10
        os.utime(lockPath, (old, old))
        lock = dovecot.DotLock(fd, "dovecot-uidlist", owner, hostname="testhost")
        lock.acquire()
        self.assertEqual(lockPath.read_text(), f"{os.getpid()}:testhost")
        lock.release()
        self.assertFalse(lockPath.exists())
        # a live holder (pid 1) on our host, fresh: busy until the timeout
        lockPath.write_text("1:testhost")
        now = [time.time()]
        lock = dovecot.DotLock(
            fd, "dovecot-uidlist", owner, staleTimeout=120, timeout=3,
            hostname="testhost", clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + 1),
        )
        self.assertRaises(MailboxInUse, lock.acquire)
        # after the stale timeout without changes it is overridden
        lock = dovecot.DotLock(
            fd, "dovecot-uidlist", owner, staleTimeout=120, timeout=200,
            hostname="otherhost", clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + 10),
        )
        lock.acquire()
        self.assertEqual(lockPath.read_text(), f"{os.getpid()}:otherhost")
        lock.release()


class FolderTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.mailboxes = self.store.mailboxes(self.account)
        for i in range(3):
            yield deliver(self.store, self.account, b"Subject: %d\n\nbody %d\n" % (i, i))
        self.folder = yield self.mailboxes.open()
        self.addCleanup(self.folder.close)

    @defer.inlineCallbacks
    def test_recentClaim(self):
        self.assertEqual(self.folder.recentUids(), [1, 2, 3])
        claimed = yield self.folder.claimRecent()
        self.assertEqual(claimed, [1, 2, 3])
        self.assertEqual(self.folder.recentUids(), [])
        self.assertEqual(files(self.account.maildir, "new"), [])
        self.assertTrue(all(n.endswith(":2,") for n in files(self.account.maildir, "cur")))
        again = yield self.folder.claimRecent()
        self.assertEqual(again, [])

    @defer.inlineCallbacks
    def test_flagsAndKeywords(self):
        result = yield self.folder.setFlags([1, 2], ["\\Seen", "\\Flagged", "$Label1", "Work"], "add")
        self.assertEqual(set(result), {1, 2})
        self.assertEqual(self.folder.flags(1), {"\\Seen", "\\Flagged", "$Label1", "Work"})
        yield self.folder.setFlags([2], ["Work", "\\Flagged"], "remove")
        self.assertEqual(self.folder.flags(2), {"\\Seen", "$Label1"})
        yield self.folder.setFlags([3], ["\\Answered", "\\Draft", "\\Deleted", "\\Recent"], "replace")
        self.assertEqual(self.folder.flags(3), {"\\Answered", "\\Draft", "\\Deleted"})
        names = files(self.account.maildir, "cur")
        self.assertTrue(any(n.endswith(":2,FSab") for n in names), names)
        self.assertTrue(any(n.endswith(":2,Sa") for n in names), names)
        self.assertTrue(any(n.endswith(":2,DRT") for n in names), names)
        self.assertEqual((self.account.maildir / "dovecot-keywords").read_bytes(), b"0 $Label1\n1 Work\n")
        self.assertEqual(self.folder.keywordNames(), ["$Label1", "Work"])

    @defer.inlineCallbacks
    def test_unknownFlagLettersPreserved(self):
        """
        C{P} (passed) and other letters Dovecot does not map survive flag
        changes.
        """
        yield self.folder.claimRecent()
        message = self.folder.message(1)
        cur = self.account.maildir / "cur"
        os.rename(cur / message.filename, cur / (message.base + ":2,PS"))
        yield self.folder.refresh()
        self.assertEqual(self.folder.flags(1), {"\\Seen"})
        yield self.folder.setFlags([1], ["\\Flagged"], "replace")
        self.assertTrue((cur / (message.base + ":2,FP")).exists())

    @defer.inlineCallbacks
    def test_expungeDeleted(self):
        yield self.folder.setFlags([2], ["\\Deleted"], "add")
        expunged = yield self.folder.expunge()
        self.assertEqual(expunged, [2])
        self.assertEqual(self.folder.uids(), [1, 3])
        self.assertEqual(len(files(self.account.maildir, "new")) + len(files(self.account.maildir, "cur")), 2)
        self.assertRaises(MessageVanished, self.folder.message, 2)

    @defer.inlineCallbacks
    def test_appendWithFlagsAndDate(self):
        uid = yield self.folder.append(b"Subject: appended\n\nhi\n", ["\\Seen", "Important"], 1600000000.0)
        self.assertEqual(uid, 4)
        self.assertEqual(self.folder.flags(uid), {"\\Seen", "Important"})
        self.assertEqual(self.folder.internalDate(uid), 1600000000.0)
        with self.folder.openMessage(uid) as f:
            self.assertEqual(f.read(), b"Subject: appended\n\nhi\n")
        self.assertEqual(self.folder.size(uid), 22)
        self.assertEqual(self.folder.uidNext, 5)

    @defer.inlineCallbacks
    def test_copyAndMoveReturnNewUids(self):
        yield self.mailboxes.create("Archive")
        target = yield self.mailboxes.open("Archive")
        self.addCleanup(target.close)
        yield self.folder.setFlags([1], ["\\Seen", "Tag"], "add")
        pairs = yield self.folder.copyTo([1, 2], target)
        self.assertEqual(pairs, [(1, 1), (2, 2)])
        self.assertEqual(target.flags(1), {"\\Seen", "Tag"})
        self.assertEqual(self.folder.uids(), [1, 2, 3])
        with target.openMessage(1) as a, self.folder.openMessage(1) as b:
            self.assertEqual(a.read(), b.read())
        pairs = yield self.folder.copyTo([3], target, move=True)
        self.assertEqual(pairs, [(3, 3)])
        self.assertEqual(self.folder.uids(), [1, 2])
        self.assertEqual(target.uids(), [1, 2, 3])

    @defer.inlineCallbacks
    def test_pop3Snapshot(self):
        snapshot = self.folder.snapshot()
        self.assertEqual([uid for uid, _, _ in snapshot], [1, 2, 3])
        for uid, size, uidl in snapshot:
            self.assertEqual(uidl, "%08x%08x" % (uid, self.folder.uidValidity))
            with self.folder.openMessage(uid) as f:
                self.assertEqual(len(f.read()), size)
        # RETR marks seen (moves to cur/), QUIT deletes a set
        yield self.folder.setFlags([1], ["\\Seen"], "add")
        self.assertFalse(self.folder.message(1).isNew)
        yield self.folder.expunge([1, 3])
        self.assertEqual(self.folder.uids(), [2])

    @defer.inlineCallbacks
    def test_setFlagsAfterExternalRename(self):
        """
        Another program changed a message's flags (renamed its file) and
        delivered a new one: STORE still works, keeps the other program's
        flag, and the resync it needed also brings the new message in.
        """
        message = self.folder.message(1)
        maildir = self.account.maildir
        os.rename(maildir / "new" / message.filename, maildir / "cur" / (message.base + ":2,S"))
        (maildir / "new" / "1900000000.M1P1.other").write_bytes(b"Subject: other\n\n")
        chownTree(maildir)
        result = yield self.folder.setFlags([1], ["\\Flagged"], "add")
        self.assertEqual(result, {1: {"\\Seen", "\\Flagged"}})
        self.assertTrue((maildir / "cur" / (message.base + ":2,FS")).exists())
        self.assertEqual(self.folder.uids(), [1, 2, 3, 4])

    @defer.inlineCallbacks
    def test_prefetchAndDeferredOpen(self):
        """
        Internal dates are read in the pool for many messages at once, and
        a message renamed by another program can be opened without listing
        the directory on the reactor thread.
        """
        yield self.folder.append(b"Subject: dated\n\n", [], 1500000000.0)
        self.assertIsNone(self.folder.message(4).mtime)
        yield self.folder.prefetch(self.folder.uids())
        self.assertEqual(self.folder.message(4).mtime, 1500000000.0)
        self.assertTrue(all(self.folder.message(u).mtime for u in self.folder.uids()))
        message = self.folder.message(2)
        maildir = self.account.maildir
        os.rename(maildir / "new" / message.filename, maildir / "cur" / (message.base + ":2,S"))
        f = yield self.folder.openMessageDeferred(2)
        with f:
            self.assertIn(b"Subject: 1", f.read())
        (maildir / "cur" / (message.base + ":2,S")).unlink()
        yield self.assertFailure(self.folder.openMessageDeferred(2), MessageVanished)

    @defer.inlineCallbacks
    def test_vanishedFileFoundAfterExternalRename(self):
        """
        Another program renamed the file (flags changed): open still works.
        """
        message = self.folder.message(1)
        maildir = self.account.maildir
        os.rename(maildir / "new" / message.filename, maildir / "cur" / (message.base + ":2,S"))
        with self.folder.openMessage(1) as f:
            self.assertIn(b"Subject: 0", f.read())
        (maildir / "cur" / (message.base + ":2,S")).unlink()
        self.assertRaises(MessageVanished, self.folder.openMessage, 1)
        yield self.folder.refresh(full=True)
        self.assertEqual(self.folder.uids(), [2, 3])


class EventTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_deliveryNotifiesOpenFolderAtOnce(self):
        """
        An IDLE-ing session (a listener of the open INBOX) hears about an
        SMTP delivery as soon as it is committed.
        """
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        recorder = Recorder()
        folder.subscribe(recorder)
        waiting = recorder.next()
        yield deliver(store, account)
        event = yield waiting
        self.assertEqual(event, ("added", [1]))

    @defer.inlineCallbacks
    def test_flagsAndExpungeEventsSkipOrigin(self):
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        mine, other = Recorder(), Recorder()
        folder.subscribe(mine)
        folder.subscribe(other)
        yield folder.setFlags([1], ["\\Seen"], "add", origin=mine)
        yield folder.expunge([1], origin=mine)
        self.assertEqual(mine.events, [])
        self.assertEqual(other.events, [("flags", [1]), ("expunged", [1])])

    @defer.inlineCallbacks
    def test_inotifySeesOtherPrograms(self):
        """
        A file dropped into new/ by another program, or a flag rename in
        cur/, reaches listeners through inotify without any polling.
        """
        account = makeAccount(self)
        store = makeTestStore(self, inotify=True)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        recorder = Recorder()
        folder.subscribe(recorder)
        waiting = recorder.next()
        tmp = account.maildir / "tmp" / "1800000000.M1P1.mta"
        tmp.write_bytes(b"Subject: external\n\n")
        os.rename(tmp, account.maildir / "new" / "1800000000.M1P1.mta")
        event = yield waiting
        self.assertEqual(event, ("added", [2]))
        waiting = recorder.next()
        name = folder.message(1).filename
        os.rename(account.maildir / "new" / name, account.maildir / "cur" / (name + ":2,S"))
        event = yield waiting
        self.assertEqual(event, ("flags", [1]))
        self.assertEqual(folder.flags(1), {"\\Seen"})

    @defer.inlineCallbacks
    def test_periodicRescanFallback(self):
        """
        Without inotify, the periodic rescan (on the injected clock) finds
        external changes.
        """
        account = makeAccount(self)
        clock = task.Clock()
        clock.advance(time.time())
        store = makeTestStore(self, inotify=False, rescanInterval=30, clock=clock)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        recorder = Recorder()
        folder.subscribe(recorder)
        (account.maildir / "new" / "1800000000.M1P1.mta").write_bytes(b"x")
        # make sure the directory mtime differs from the one we saw
        future = time.time() + 5
        os.utime(account.maildir / "new", (future, future))
        waiting = recorder.next()
        clock.advance(29)
        self.assertEqual(recorder.events, [])
        clock.advance(1)
        event = yield waiting
        self.assertEqual(event, ("added", [2]))


class QuotaTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_quotaExceededIsTemporaryAndMaildirsizeKept(self):
        account = makeAccount(self)
        store = makeTestStore(self, quotaBytes=1000, quotaMessages=3)
        body = b"Subject: q\n\n" + b"x" * 300 + b"\n"
        for i in range(3):
            result = yield deliver(store, account, body)
            self.assertTrue(result.ok, result.error)
        result = yield deliver(store, account, body)
        self.assertIsInstance(result.error, QuotaExceeded)
        self.assertTrue(result.error.temporary)
        self.assertEqual(result.error.smtpCode, 452)
        self.assertEqual(len(files(account.maildir, "new")), 3)
        self.assertEqual(files(account.maildir, "tmp"), [])
        text = (account.maildir / "maildirsize").read_text().splitlines()
        self.assertEqual(text[0], "1000S,3C")
        total = sum(int(l.split()[0]) for l in text[1:])
        count = sum(int(l.split()[1]) for l in text[1:])
        self.assertEqual((total, count), (3 * len(body), 3))
        # expunge frees space
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        yield folder.expunge([1])
        result = yield deliver(store, account, body)
        self.assertTrue(result.ok)
        big = yield deliver(store, account, b"x" * 2000)
        self.assertIsInstance(big.error, MessageTooBigForQuota)
        self.assertFalse(big.error.temporary)

    @defer.inlineCallbacks
    def test_appendOverQuota(self):
        account = makeAccount(self)
        store = makeTestStore(self, quotaBytes=100)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        yield folder.append(b"x" * 60)
        yield self.assertFailure(folder.append(b"y" * 60), QuotaExceeded)
        self.assertEqual(len(folder), 1)
        self.assertEqual(files(account.maildir, "tmp"), [])


class MailboxesTests(unittest.TestCase):
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.mailboxes = self.store.mailboxes(self.account)

    @defer.inlineCallbacks
    def test_defaultsAtFirstLogin(self):
        created = yield self.mailboxes.ensureDefaults()
        self.assertEqual(created, ["Drafts", "Sent", "Trash", "Junk", "Archive"])
        listing = yield self.mailboxes.list()
        roles = {info.name: info.specialUse for info in listing}
        self.assertEqual(
            roles,
            {"INBOX": None, "Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash",
             "Junk": "\\Junk", "Archive": "\\Archive"},
        )
        self.assertTrue(all(info.subscribed for info in listing if info.name != "INBOX"))
        self.assertTrue((self.account.maildir / ".Sent" / "maildirfolder").exists())
        again = yield self.mailboxes.ensureDefaults()
        self.assertEqual(again, [])

    @defer.inlineCallbacks
    def test_createRenameDeleteSubscribe(self):
        yield self.mailboxes.ensureDefaults()
        yield self.mailboxes.create("Projects/2024")
        yield self.mailboxes.create("Café")
        self.assertTrue((self.account.maildir / ".Projects.2024" / "cur").is_dir())
        self.assertTrue((self.account.maildir / ".Caf&AOk-").is_dir())
        yield self.assertFailure(self.mailboxes.create("Café"), MailboxExists)
        yield self.assertFailure(self.mailboxes.create("a.b"), InvalidMailboxName)
        yield self.mailboxes.subscribe("Projects/2024")
        listing = {i.name: i for i in (yield self.mailboxes.list())}
        self.assertFalse(listing["Projects"].exists)
        self.assertTrue(listing["Projects"].hasChildren)
        self.assertTrue(listing["Projects/2024"].subscribed)
        self.assertIn("Café", listing)
        yield self.mailboxes.create("Projects")
        yield self.mailboxes.rename("Projects", "Work")
        listing = {i.name: i for i in (yield self.mailboxes.list())}
        self.assertIn("Work/2024", listing)
        self.assertNotIn("Projects/2024", listing)
        self.assertTrue(listing["Work/2024"].subscribed)
        yield self.mailboxes.delete("Work/2024")
        listing = {i.name: i for i in (yield self.mailboxes.list())}
        self.assertNotIn("Work/2024", listing)
        # RFC 3501 6.3.6: DELETE never removes a subscription by itself
        self.assertIn("Work/2024", (yield self.mailboxes.subscriptions()))
        yield self.assertFailure(self.mailboxes.open("Work/2024"), MailboxNotFound)
        self.assertFalse(any(n.startswith(".DOVECOT-TRASHED") for n in os.listdir(self.account.maildir)))

    def test_subscriptionsFormat(self):
        data = dovecot.formatSubscriptions(["Sent", "Archive/2024", "Tab\there"])
        self.assertEqual(data, b"V\t2\n\nSent\nArchive\t2024\nTab\x01there\n")
        self.assertEqual(dovecot.parseSubscriptions(data), ["Sent", "Archive/2024", "Tab\there"])
        self.assertEqual(dovecot.parseSubscriptions(b"Sent\nArchive.2024\n"), ["Sent", "Archive/2024"])

    def test_folderNames(self):
        self.assertEqual(dovecot.folderDirName("Archive/2024"), ".Archive.2024")
        self.assertEqual(dovecot.folderDirName("Café & co"), ".Caf&AOk- &- co")
        self.assertEqual(dovecot.folderNameFromDir(".Caf&AOk- &- co"), "Café & co")
        self.assertEqual(dovecot.folderNameFromDir(".日本語"[:1] + dovecot._mutf7Encode("日本語")), "日本語")
        for bad in ("", "a//b", "/a", "a.b", "x\x01", "a*"):
            self.assertRaises(InvalidMailboxName, dovecot.folderDirName, bad)


class ConfigTests(unittest.TestCase):
    def test_makeStoreFromConfig(self):
        cfg = _config.loadString(
            "[store]\nquota_bytes = 10M\nquota_messages = 500\nfsync = no\nthreads = 2\n"
            "rescan_interval = 5m\nsent_folder = Sent Items\njunk_folder =\nindex_linger = 1m\n"
        )
        store = makeStore(cfg, reactor)
        self.addCleanup(store.close)
        self.assertEqual((store.quota.bytes, store.quota.messages), (10 * 1024 * 1024, 500))
        self.assertFalse(store.fsync)
        self.assertEqual(store.rescanInterval, 300)
        self.assertEqual(store.linger, 60)
        self.assertIn(("Sent Items", "\\Sent"), store.specialFolders)
        self.assertNotIn("\\Junk", [role for _, role in store.specialFolders])

    def test_badFolderNameRejected(self):
        with self.assertRaises(_config.ConfigError) as e:
            _config.loadString("[store]\nsent_folder = Sent.Items\n")
        self.assertEqual((e.exception.section, e.exception.key), ("store", "sent_folder"))


class ScaleAndLifecycleTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_openDoesNotStatMessages(self):
        """
        Opening (SELECT) a folder reads the uidlist and lists new/ and cur/
        but never stats or opens a message file; sizes come from ,S=.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        for i in range(50):
            yield deliver(store, account, b"Subject: %d\n\n" % i)
        first = yield store.mailboxes(account).open()
        first.close()
        yield store.close()
        store = makeTestStore(self)
        touched = []
        realStat, realOpen = os.stat, os.open

        def stat(path, *a, **kw):
            touched.append(("stat", str(path)))
            return realStat(path, *a, **kw)

        def open_(path, *a, **kw):
            touched.append(("open", str(path)))
            return realOpen(path, *a, **kw)

        self.patch(os, "stat", stat)
        self.patch(os, "open", open_)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        messages = [c for c in touched if ".mx.example.org" in c[1]]
        self.assertEqual(messages, [])
        self.assertEqual(len(folder), 50)
        self.assertEqual(sum(folder.size(uid) for uid in folder.uids()), sum(len(b"Subject: %d\n\n" % i) for i in range(50)))

    @defer.inlineCallbacks
    def test_lingerKeepsIndexThenCloses(self):
        account = makeAccount(self)
        clock = task.Clock()
        clock.advance(time.time())
        store = makeTestStore(self, clock=clock, linger=300)
        yield deliver(store, account)
        mailboxes = store.mailboxes(account)
        folder = yield mailboxes.open()
        folder.close()
        again = yield mailboxes.open()
        self.assertIs(again, folder)
        again.close()
        clock.advance(299)
        self.assertFalse(folder._closed)
        clock.advance(2)
        self.assertTrue(folder._closed)
        fresh = yield mailboxes.open()
        self.assertIsNot(fresh, folder)
        self.assertEqual(fresh.uids(), [1])
        fresh.close()

    @defer.inlineCallbacks
    def test_renameInbox(self):
        """
        RFC 3501 6.3.5: RENAME INBOX moves its messages to the new folder
        and leaves INBOX empty.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        for i in range(3):
            yield deliver(store, account, b"Subject: %d\n\n" % i)
        mailboxes = store.mailboxes(account)
        inbox = yield mailboxes.open()
        self.addCleanup(inbox.close)
        yield inbox.setFlags([2], ["\\Seen"], "add")
        recorder = Recorder()
        inbox.subscribe(recorder)
        moved = yield mailboxes.rename("INBOX", "Old Mail")
        self.assertEqual(moved, 3)
        self.assertEqual(len(inbox), 0)
        self.assertEqual(recorder.events, [("expunged", [1, 2, 3])])
        old = yield mailboxes.open("Old Mail")
        self.addCleanup(old.close)
        self.assertEqual(len(old), 3)
        self.assertEqual(sum(1 for u in old.uids() if "\\Seen" in old.flags(u)), 1)

    @defer.inlineCallbacks
    def test_uidlistDeletedWhileOpenKeepsUidvalidity(self):
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        validity = folder.uidValidity
        (account.maildir / "dovecot-uidlist").unlink()
        yield folder.refresh()
        self.assertEqual(folder.uidValidity, validity)
        text = (account.maildir / "dovecot-uidlist").read_text()
        self.assertTrue(text.startswith(f"3 V{validity} "), text)
        self.assertIn("1 :", text)

    @defer.inlineCallbacks
    def test_homeIsNeverCreated(self):
        """
        Delivery creates ~/Maildir but not a missing home directory.
        """
        account = makeAccount(self)
        shutil.rmtree(account.home)
        result = yield deliver(makeTestStore(self), account)
        self.assertIsInstance(result.error, MailboxNotFound)
        self.assertFalse(account.home.exists())

    @defer.inlineCallbacks
    def test_appendStreamsFromFile(self):
        """
        APPEND reads its source in bounded chunks, never read() whole.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        sizes = []

        class Source:
            def __init__(self, data):
                self.data = data
                self.pos = 0

            def read(self, n=-1):
                sizes.append(n)
                chunk = self.data[self.pos : self.pos + n]
                self.pos += len(chunk)
                return chunk

        data = b"Subject: big\n\n" + b"z" * (3 * 1024 * 1024)
        uid = yield folder.append(Source(data))
        self.assertTrue(all(0 < n <= 1024 * 1024 for n in sizes), sizes)
        with folder.openMessage(uid) as f:
            self.assertEqual(f.read(), data)

    def test_uniqueNamesAcrossThreads(self):
        import threading

        names = dovecot.NameGenerator(task.Clock(), "h")
        out = []

        def work():
            out.extend(names.next() for _ in range(2000))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(set(out)), 8000)


class TestingHelpersTests(unittest.TestCase):
    def test_synchronousStore(self):
        """
        The public testing helpers give a real Maildir whose Deferreds fire
        at once (for protocol tests on StringTransport).
        """
        from twisted_maillab.store.testing import deliverNow, synchronousStore, temporaryAccount

        store = synchronousStore()
        self.addCleanup(store.close)
        account = temporaryAccount(self.mktemp())
        result = deliverNow(store, account, b"Subject: hi\r\n\r\nbody\r\n")
        self.assertTrue((account.maildir / "new" / result.filename).exists())
        folder = self.successResultOf(store.mailboxes(account).open())
        recorder = Recorder()
        folder.subscribe(recorder)
        deliverNow(store, account, b"Subject: two\r\n\r\n")
        store.clock.advance(0)
        self.assertEqual(recorder.events, [("added", [2])])
        self.assertEqual(self.successResultOf(folder.setFlags([1], ["\\Seen"], "add")), {1: {"\\Seen"}})
        self.assertEqual(folder.flags(1), {"\\Seen"})
        folder.close()


class UidNextTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_uidnextNeverGoesBack(self):
        """
        RFC 3501 2.3.1.1: UIDNEXT must not decrease.  The uidlist header's
        N lags behind appended records; after the highest message is
        expunged and the file is reread, UIDNEXT still covers it.
        """
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        yield deliver(store, account)
        yield deliver(store, account)
        yield folder.refresh()
        self.assertEqual(folder.uids(), [1, 2, 3])
        header = (account.maildir / "dovecot-uidlist").read_text().split("\n")[0]
        self.assertIn(" N2 ", header)  # lagging, as Dovecot leaves it
        yield folder.expunge([3])
        later = time.time() + 3
        os.utime(account.maildir / "dovecot-uidlist", (later, later))
        yield folder.refresh()
        self.assertEqual(folder.uidNext, 4)
        result = yield deliver(store, account)
        self.assertTrue(result.ok)
        yield folder.refresh()
        self.assertEqual(folder.uids(), [1, 2, 4])


class OSErrorMappingTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_folderOperationsRaiseStoreErrors(self):
        """
        A disk error inside a folder operation reaches the protocol as a
        StoreError with its IMAP code, not as a bare OSError.
        """
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)

        def full(*args, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")

        realRename = os.rename
        self.patch(os, "rename", full)
        failure = yield self.assertFailure(folder.setFlags([1], ["\\Seen"], "add"), StorageFull)
        self.assertEqual(failure.imapCode, "OVERQUOTA")
        self.patch(os, "rename", realRename)
        yield store.mailboxes(account).create("Other")
        other = yield store.mailboxes(account).open("Other")
        self.addCleanup(other.close)

        def readOnly(*args, **kw):
            raise OSError(errno.EROFS, "Read-only file system")

        self.patch(os, "link", readOnly)
        yield self.assertFailure(folder.copyTo([1], other), MailboxReadOnly)


class PerUserQuotaTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_maildirmakeQuotaAppliesToThatUserOnly(self):
        """
        Without a global quota, a limit written by the administrator into
        one user's maildirsize (Courier's maildirmake -q) applies to that
        user; others are unlimited.
        """
        limited = makeAccount(self, name="limited")
        free = makeAccount(self, name="free")
        store = makeTestStore(self)
        yield deliver(store, limited)
        (limited.maildir / "maildirsize").write_text("300S,10C\n")
        chownTree(limited.maildir)
        body = b"Subject: q\n\n" + b"x" * 100 + b"\n"
        ok = yield deliver(store, limited, body)
        self.assertTrue(ok.ok)
        over = yield deliver(store, limited, body + b"y" * 100)
        self.assertIsInstance(over.error, QuotaExceeded)
        big = yield deliver(store, free, b"z" * 5000)
        self.assertTrue(big.ok)
        self.assertFalse((free.maildir / "maildirsize").exists())
        lines = (limited.maildir / "maildirsize").read_text().splitlines()
        self.assertEqual(lines[0], "300S,10C")
        # recalculated from the folders: the first message counts too
        used = sum(int(l.split()[0]) for l in lines[1:])
        self.assertEqual(used, len(b"Subject: test\n\nhello\n") + len(body))


class TwoServersTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_twoStoresOnOneMaildirNeverDuplicateUids(self):
        """
        Two independent stores (as two server processes would; only the
        dovecot-uidlist.lock dotlock is shared) deliver and refresh the same
        folder concurrently: every message gets one UID, the same in both.
        """
        account = makeAccount(self)
        storeA = makeTestStore(self, inotify=False)
        storeB = makeTestStore(self, inotify=False)
        yield deliver(storeA, account)
        folderA = yield storeA.mailboxes(account).open()
        folderB = yield storeB.mailboxes(account).open()
        self.addCleanup(folderA.close)
        self.addCleanup(folderB.close)
        work = []
        for i in range(30):
            store, folder = (storeA, folderA) if i % 2 else (storeB, folderB)
            work.append(deliver(store, account, b"Subject: %d\n\n" % i))
            work.append(folder.refresh(full=bool(i % 3 == 0)))
        yield defer.gatherResults(work)
        yield folderA.refresh(full=True)
        yield folderB.refresh(full=True)
        self.assertEqual(len(folderA), 31)
        self.assertEqual(folderA.uids(), folderB.uids())
        self.assertEqual(folderA.uids(), list(range(1, 32)))
        self.assertEqual(
            {uid: folderA.message(uid).base for uid in folderA.uids()},
            {uid: folderB.message(uid).base for uid in folderB.uids()},
        )
        records = (account.maildir / "dovecot-uidlist").read_text().splitlines()[1:]
        bases = [line.split(":", 1)[1] for line in records]
        self.assertEqual(len(bases), len(set(bases)))
