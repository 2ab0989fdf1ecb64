"""
The store's promises that the rest of the suite leans on without seeing
them: which thread touches the index, operations on files another program
renamed, folders deleted or renamed under other sessions, descriptors of
idle accounts, durability order, UID monotonicity and symlink refusal.
"""

from __future__ import annotations

import os
import stat
import threading
import time

from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.trial import unittest

from twisted_maillab.store import MailboxNotFound, MailboxExists, ServerBug, UnsafePath, dovecot
from twisted_maillab.store import delivery as _delivery
from twisted_maillab.store import workers

from .test_store import chownTree, deliver, files, makeAccount, makeTestStore


class HeldRunner:
    """
    A store runner that does each job in a real thread marked as a store
    worker, then holds its result until L{release}: between the two a test
    sees what the thread part did to shared objects before the reactor
    thread applied anything.
    """

    def __init__(self):
        self.held = []

    def __call__(self, f, *args, **kwargs):
        box = []

        def work():
            workers._threadState.worker = True
            try:
                box.append(f(*args, **kwargs))
            except BaseException:
                box.append(Failure())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        d = defer.Deferred()
        self.held.append((d, box[0]))
        return d

    def release(self):
        held, self.held = self.held, []
        for d, result in held:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


def _fdsUnder(*accounts) -> list[str]:
    """
    What this process has open under the accounts' home directories.
    """
    homes = tuple(str(account.home) for account in accounts)
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(homes):
            out.append(target)
    return out


class ThreadContractTests(unittest.TestCase):
    """
    Pool threads compute; only the reactor thread changes the index or
    uses the clock.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.mailboxes = self.store.mailboxes(self.account)
        maildir = self.account.maildir
        yield deliver(self.store, self.account)
        # messages written by another MTA: no ,S= in their names, so their
        # size is only known from a stat
        for i in range(2):
            (maildir / "new" / f"170000000{i}.M{i}P1.other").write_bytes(b"Subject: other %d\n\nx\n" % i)
        chownTree(maildir)
        self.folder = yield self.mailboxes.open()
        self.addCleanup(self.folder.close)

    @defer.inlineCallbacks
    def test_reactorOnlyMethodsRefuseStoreThreads(self):
        """
        The index's reactor-side methods raise L{ServerBug} in a store
        pool thread, so a breach of the contract fails the tests.
        """
        message = self.folder.message(self.folder.uids()[-1])
        for call in (
            lambda: self.folder._setStat(message, 1, 1.0),
            lambda: self.folder._scheduleRefresh(True, True),
            lambda: self.folder._publish("messagesAdded", None, [1]),
            lambda: self.folder._statMessage(message),
            lambda: self.folder._apply(self.folder._syncWork(False, False, None), None),
        ):
            yield self.assertFailure(self.store.run(call), ServerBug)
        self.assertIsNone(message.mtime)

    @defer.inlineCallbacks
    def test_prefetchAppliesOnTheReactorThread(self):
        """
        The thread part of C{prefetch} only stats; the internal dates and
        sizes land in the index when the reactor thread applies them.
        """
        others = [uid for uid in self.folder.uids() if self.folder.message(uid).base.endswith(".other")]
        self.assertEqual(len(others), 2)
        runner = HeldRunner()
        self.store.run = runner
        d = self.folder.prefetch(self.folder.uids())
        self.assertEqual(len(runner.held), 1)
        # the thread finished its stats; nothing shared has changed yet
        for uid in others:
            self.assertIsNone(self.folder.message(uid).mtime)
            self.assertIsNone(self.folder.message(uid)._size)
        runner.release()
        yield d
        for uid in others:
            self.assertIsNotNone(self.folder.message(uid).mtime)
            self.assertEqual(self.folder.message(uid).size, len(b"Subject: other 0\n\nx\n"))

    @defer.inlineCallbacks
    def test_copyOfUnsizedMessagesKeepsTheIndexForTheReactor(self):
        """
        COPY of messages whose size needs a stat: the copy works, and the
        thread part neither sets the index nor schedules a timer (it used
        to call the reactor-side stat, which did both).
        """
        yield self.mailboxes.create("Archive")
        target = yield self.mailboxes.open("Archive")
        self.addCleanup(target.close)
        others = [uid for uid in self.folder.uids() if self.folder.message(uid).base.endswith(".other")]
        pairs = yield self.folder.copyTo(others, target)
        self.assertEqual([source for source, _ in pairs], others)
        self.assertEqual(len(target.uids()), 2)
        for (_, copied), uid in zip(pairs, others):
            self.assertEqual(target.size(copied), self.folder.size(uid))

    @defer.inlineCallbacks
    def test_expungeOfUnsizedMessageLeavesTheIndexAlone(self):
        runner = HeldRunner()
        uid = next(u for u in self.folder.uids() if self.folder.message(u).base.endswith(".other"))
        message = self.folder.message(uid)
        self.store.run = runner
        d = self.folder.expunge([uid])
        self.assertEqual(len(runner.held), 1)
        self.assertIsNone(message._size)
        runner.release()
        self.assertEqual((yield d), [uid])


class RenamedByAnotherProgramTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.mailboxes = self.store.mailboxes(self.account)
        for i in range(3):
            yield deliver(self.store, self.account, b"Subject: %d\n\nbody %d\n" % (i, i))
        self.folder = yield self.mailboxes.open()
        self.addCleanup(self.folder.close)
        yield self.mailboxes.create("Archive")
        self.target = yield self.mailboxes.open("Archive")
        self.addCleanup(self.target.close)

    def _flagElsewhere(self, uid, letters):
        message = self.folder.message(uid)
        maildir = self.account.maildir
        os.rename(maildir / "new" / message.filename, maildir / "cur" / f"{message.base}:2,{letters}")

    @defer.inlineCallbacks
    def test_copyFindsRenamedMessage(self):
        """
        Another program (Dovecot, a MUA) renamed the file to change its
        flags just before COPY: the copy finds it and keeps the new flags.
        """
        self._flagElsewhere(2, "S")
        pairs = yield self.folder.copyTo([1, 2, 3], self.target)
        self.assertEqual([source for source, _ in pairs], [1, 2, 3])
        self.assertEqual(len(self.target.uids()), 3)
        copied = dict(pairs)[2]
        self.assertEqual(self.target.flags(copied), {"\\Seen"})
        with self.target.openMessage(copied) as f:
            self.assertIn(b"Subject: 1", f.read())
        # the resync the copy needed reached the source's index too
        self.assertEqual(self.folder.flags(2), {"\\Seen"})

    @defer.inlineCallbacks
    def test_moveFindsRenamedMessage(self):
        self._flagElsewhere(1, "F")
        pairs = yield self.folder.copyTo([1], self.target, move=True)
        self.assertEqual(len(pairs), 1)
        self.assertEqual(self.folder.uids(), [2, 3])
        self.assertEqual(self.target.flags(pairs[0][1]), {"\\Flagged"})

    @defer.inlineCallbacks
    def test_copySkipsExpungedMessage(self):
        message = self.folder.message(2)
        (self.account.maildir / "new" / message.filename).unlink()
        pairs = yield self.folder.copyTo([1, 2, 3], self.target)
        self.assertEqual([source for source, _ in pairs], [1, 3])
        self.assertEqual(self.folder.uids(), [1, 3])


class Listener:
    def __init__(self):
        self.resets = 0

    def folderReset(self, folder):
        self.resets += 1


class FolderUnderOtherSessionsTests(unittest.TestCase):
    """
    DELETE and RENAME of a folder another session has open.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.mailboxes = self.store.mailboxes(self.account)
        yield self.mailboxes.create("Archive")
        yield deliver(self.store, self.account, folder="Archive")
        self.held = yield self.mailboxes.open("Archive")
        self.listener = Listener()
        self.held.subscribe(self.listener)

    @defer.inlineCallbacks
    def test_failedRenameLeavesTheFolderAlone(self):
        yield self.mailboxes.create("Taken")
        yield self.assertFailure(self.mailboxes.rename("Archive", "Taken"), MailboxExists)
        self.assertEqual(self.listener.resets, 0)
        self.assertFalse(self.held._closed)
        # the other session goes on working
        yield self.held.setFlags([1], ["\\Seen"], "add")
        self.assertEqual(self.held.flags(1), {"\\Seen"})
        again = yield self.mailboxes.open("Archive")
        self.assertIs(again, self.held)
        again.close()
        self.held.close()

    @defer.inlineCallbacks
    def test_deleteDetachesWithoutClosingUnderTheHolder(self):
        yield self.mailboxes.delete("Archive")
        self.assertEqual(self.listener.resets, 1)
        # the holder's descriptors stay valid until it lets go
        self.assertFalse(self.held._closed)
        self.assertTrue(self.held._fds)
        fd = self.held._fds["cur"]
        self.assertTrue(stat.S_ISDIR(os.fstat(fd).st_mode))
        yield self.assertFailure(self.held.setFlags([1], ["\\Seen"], "add"), MailboxNotFound)
        self.held.close()
        self.assertTrue(self.held._closed)
        yield self.assertFailure(self.mailboxes.open("Archive"), MailboxNotFound)

    @defer.inlineCallbacks
    def test_renameMovesTheOpenFolder(self):
        # RFC 3501 6.3.5: the sessions holding the folder stay valid; the
        # open folder follows its directory under the new name
        yield self.mailboxes.rename("Archive", "Old")
        self.assertEqual(self.listener.resets, 0)
        self.assertEqual(self.held.name, "Old")
        renamed = yield self.mailboxes.open("Old")
        self.assertIs(renamed, self.held)
        self.assertEqual(renamed.uids(), [1])
        yield self.assertFailure(self.mailboxes.open("Archive"), MailboxNotFound)
        renamed.close()
        self.assertFalse(self.held._closed)
        self.held.close()
        self.assertTrue(self.held._closed)


class IdleAccountsTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_idleAccountsCloseTheirDescriptorsAfterTheLinger(self):
        clock = task.Clock()
        clock.advance(time.time())
        store = makeTestStore(self, clock=clock, linger=300)
        accounts = [makeAccount(self, name=f"user{i}") for i in range(5)]
        for account in accounts:
            yield deliver(store, account)
        self.assertEqual(len(store._mailboxes), 5)
        # the Maildir root, tmp/ and new/ of each account stay open
        self.assertEqual(len(_fdsUnder(*accounts)), 15)
        # a second delivery within the linger reuses the open descriptors
        kept = store.mailboxes(accounts[0])
        yield deliver(store, accounts[0])
        self.assertIs(store.mailboxes(accounts[0]), kept)
        clock.advance(301)
        self.assertEqual(store._mailboxes, {})
        self.assertEqual(_fdsUnder(*accounts), [])
        # and a later delivery still works
        yield deliver(store, accounts[1])
        self.assertEqual(len(files(accounts[1].maildir, "new")), 2)

    @defer.inlineCallbacks
    def test_openFolderKeepsItsAccount(self):
        clock = task.Clock()
        clock.advance(time.time())
        store = makeTestStore(self, clock=clock, linger=300)
        account = makeAccount(self)
        yield deliver(store, account)
        mailboxes = store.mailboxes(account)
        folder = yield mailboxes.open()
        clock.advance(1000)
        self.assertIs(store.mailboxes(account), mailboxes)
        self.assertIsNotNone(mailboxes._root)
        folder.close()
        clock.advance(301)  # the folder's linger
        clock.advance(301)  # then the account's
        self.assertNotIn(mailboxes, store._mailboxes.values())
        self.assertIsNone(mailboxes._root)


class DurabilityOrderTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_messageFileFsyncedBeforeItsRenameIntoNew(self):
        """
        A crash after the rename must never leave an empty or partial
        message in new/: the file's own data is fsynced before the rename
        (the directory fsync after it only makes the name durable).
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        events = []
        realFsync, realRename = os.fsync, os.rename

        def fsync(fd):
            events.append(("fsync-file" if stat.S_ISREG(os.fstat(fd).st_mode) else "fsync-dir", fd))
            return realFsync(fd)

        def rename(src, dst, *args, **kwargs):
            events.append(("rename", src))
            return realRename(src, dst, *args, **kwargs)

        self.patch(_delivery.os, "fsync", fsync)
        self.patch(_delivery.os, "rename", rename)
        result = yield deliver(store, account)
        self.assertIsNone(result.error)
        kinds = [kind for kind, _ in events]
        self.assertIn("rename", kinds)
        renameAt = kinds.index("rename")
        self.assertIn("fsync-file", kinds[:renameAt], kinds)
        self.assertIn("fsync-dir", kinds[renameAt:], kinds)


class UidMonotonicityTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_headerNextUidAboveLastRecordIsHonoured(self):
        """
        The uidlist header's next UID (C{N}) may be above the last record's
        UID (messages were expunged): a new message gets at least C{N}, and
        C{N} moves past it.
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()  # writes the uidlist
        folder.close()
        uidlist = account.maildir / dovecot.UIDLIST
        text = uidlist.read_text()
        header, _, rest = text.partition("\n")
        fields = header.split(" ")
        fields = [f if not f.startswith("N") else "N40" for f in fields]
        uidlist.write_text(" ".join(fields) + "\n" + rest)
        chownTree(account.maildir)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        self.assertEqual(folder.uids(), [1, 40])
        self.assertEqual(folder.uidNext, 41)
        # records are appended without rewriting the header, as Dovecot
        # does: the next UID is past both the header's and the last record's
        yield deliver(store, account)
        yield folder.refresh()
        self.assertEqual(folder.uids(), [1, 40, 41])

    @defer.inlineCallbacks
    def test_expungedHighestUidIsNeverReused(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        for _ in range(3):
            yield deliver(store, account)
        mailboxes = store.mailboxes(account)
        folder = yield mailboxes.open()
        yield folder.expunge([3])
        yield folder.refresh(full=True)  # rewrites the uidlist without record 3
        folder.close()
        yield deliver(store, account)
        folder = yield mailboxes.open()
        self.addCleanup(folder.close)
        self.assertEqual(folder.uids(), [1, 2, 4])


class MessageSymlinkTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_symlinkToTheAccountsOwnFileIsRefused(self):
        """
        A symlink planted as a message file is refused even when it points
        at a file the account itself owns (the owner check alone would let
        it through: the server would then read any file of the user's, or
        one the user can name, with its own privileges).
        """
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account)
        secret = account.home / "secret.txt"
        secret.write_bytes(b"Subject: not a message\n\nprivate\n")
        link = account.maildir / "new" / "1700000000.M1P1.planted"
        os.symlink(secret, link)
        chownTree(account.home)
        if os.geteuid() == 0:
            os.lchown(link, 65534, 65534)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        planted = [uid for uid in folder.uids() if folder.message(uid).base.endswith(".planted")]
        for uid in planted:
            self.assertRaises(UnsafePath, folder.openMessage, uid)
            yield self.assertFailure(folder.openMessageDeferred(uid), UnsafePath)
