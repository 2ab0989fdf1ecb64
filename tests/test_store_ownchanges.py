"""
The store after its own changes: a folder does not list its directories
again after its own renames (STORE, APPEND, EXPUNGE, \\Recent claims),
still sees what another program changed, judges inotify events that
arrive while its operation is in flight against the applied result, and
decodes flags once per info string without serving stale keyword names.
"""

from __future__ import annotations

import os
import time

from twisted.internet import defer, task
from twisted.trial import unittest

from tests.test_store import chownTree, deliver, makeAccount, makeTestStore


class _Listings:
    """
    Counts the directory listings a folder makes (its thread side calls
    C{_listDir}).
    """

    def __init__(self, folder):
        self.subdirs: list[str] = []
        original = folder._listDir

        def listDir(subdir):
            self.subdirs.append(subdir)
            return original(subdir)

        folder._listDir = listDir


def _touchLater(path) -> None:
    # Another program's change, with a directory mtime that surely
    # differs from the one the folder listed (timestamps are coarse).
    later = time.time() + 5
    os.utime(path, (later, later))


class OwnChangesTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.store = makeTestStore(self, inotify=False, clock=self.clock)
        for i in range(3):
            yield deliver(self.store, self.account, b"Subject: %d\n\nbody %d\n" % (i, i))
        self.folder = yield self.store.mailboxes(self.account).open()
        self.addCleanup(self.folder.close)
        yield self.folder.claimRecent()
        yield self.folder.refresh(full=True)
        self.listings = _Listings(self.folder)

    @defer.inlineCallbacks
    def test_flagsThenRefreshListsNothing(self):
        yield self.folder.setFlags([1, 2], ["\\Seen"], "add")
        yield self.folder.refresh()
        self.assertEqual(self.listings.subdirs, [])
        self.assertEqual(self.folder.flags(1), {"\\Seen"})

    @defer.inlineCallbacks
    def test_appendThenRefreshListsNothing(self):
        uid = yield self.folder.append(b"Subject: appended\r\n\r\nx\r\n", ["\\Seen"])
        self.assertEqual(uid, 4)
        uid = yield self.folder.append(b"Subject: recent\r\n\r\ny\r\n")
        self.assertEqual(uid, 5)
        yield self.folder.expunge([4])
        yield self.folder.claimRecent()
        yield self.folder.refresh()
        self.assertEqual(self.listings.subdirs, [])
        self.assertEqual(self.folder.uids(), [1, 2, 3, 5])
        # what the index says is what is on disk
        yield self.folder.refresh(full=True)
        self.assertEqual(self.folder.uids(), [1, 2, 3, 5])
        names = sorted(os.listdir(self.account.maildir / "cur"))
        self.assertEqual(sorted(self.folder.message(uid).filename for uid in [1, 2, 3, 5]), names)

    @defer.inlineCallbacks
    def test_otherProgramBeforeOwnChangeIsSeen(self):
        """
        A file another program put in C{cur/} before our own rename there
        is found by the next refresh: the directory had changed since our
        listing, so our rename does not make its new mtime ours.
        """
        cur = self.account.maildir / "cur"
        (cur / "1800000000.M1P1.mta:2,F").write_bytes(b"Subject: external\n\n")
        chownTree(cur)
        _touchLater(cur)
        yield self.folder.setFlags([1], ["\\Seen"], "add")
        yield self.folder.refresh()
        self.assertEqual(self.listings.subdirs, ["cur"])
        self.assertEqual(self.folder.uids(), [1, 2, 3, 4])
        self.assertEqual(self.folder.flags(4), {"\\Flagged"})

    @defer.inlineCallbacks
    def test_otherProgramBeforeAppendIsSeen(self):
        new = self.account.maildir / "new"
        (new / "1800000000.M2P1.mta").write_bytes(b"Subject: external\n\n")
        chownTree(new)
        _touchLater(new)
        uid = yield self.folder.append(b"Subject: appended\r\n\r\nx\r\n")
        # both need UIDs now; Maildir name order gives the external file
        # (delivered "earlier") the first one
        self.assertEqual(sorted(self.folder.uids()), [1, 2, 3, 4, 5])
        self.assertIn(uid, (4, 5))
        self.assertEqual(self.listings.subdirs, ["new"])

    @defer.inlineCallbacks
    def test_eventsDuringOperationJudgedAfterIt(self):
        """
        Our own rename's inotify events may arrive before its result is
        applied: judged then, they would look foreign (the old name still
        in the index, the new one unknown) and cost a forced relisting.
        They are held until the result is applied; a foreign name among
        them still schedules a refresh.
        """
        message = self.folder.message(1)
        oldName = message.filename
        d = self.folder.setFlags([1], ["\\Flagged"], "add")
        # the thread job is in flight
        self.assertTrue(self.folder._working)
        newName = f"{message.base}:2,F"
        self.folder._inotifyEvent("cur", oldName, True)
        self.folder._inotifyEvent("cur", newName, False)
        yield d
        self.assertEqual(self.folder.message(1).filename, newName)
        self.assertIsNone(self.folder._refreshCall)

        d = self.folder.setFlags([2], ["\\Flagged"], "add")
        self.folder._inotifyEvent("cur", "1800000000.M3P1.mta:2,S", False)
        self.assertIsNone(self.folder._refreshCall)
        yield d
        self.assertTrue(self.folder._refreshCall.active())
        self.assertTrue(self.folder._forceCur)

    def test_metadataEventsInFolderDirectory(self):
        """
        Of the folder directory's events, a change of the uidlist or the
        keywords, or the uidlist's dotlock going away, call for a refresh;
        a lock appearing or a rewrite's temporary file do not.
        """
        for name in ("dovecot-uidlist.lock", "dovecot-keywords.lock", "dovecot-uidlist.tmp", "subscriptions"):
            self.folder._inotifyEvent(None, name, False)
        for name in ("dovecot-keywords.lock", "dovecot-uidlist.tmp"):
            self.folder._inotifyEvent(None, name, True)
        self.assertIsNone(self.folder._refreshCall)
        for name, gone in (("dovecot-uidlist", False), ("dovecot-keywords", False), ("dovecot-uidlist.lock", True)):
            self.folder._inotifyEvent(None, name, gone)
            self.assertTrue(self.folder._refreshCall.active(), name)
            self.folder._refreshCall.cancel()

    @defer.inlineCallbacks
    def test_flagsFollowKeywordTable(self):
        """
        Flags are decoded once per info string; a keyword table another
        program rewrote gives the new names at once.
        """
        yield self.folder.setFlags([1, 2], ["Work"], "add")
        self.assertEqual(self.folder.flags(1), {"Work"})
        self.assertIs(self.folder.flags(1), self.folder.flags(2))
        keywords = self.account.maildir / "dovecot-keywords"
        keywords.write_bytes(b"0 Home\n")
        chownTree(self.account.maildir)
        _touchLater(keywords)
        yield self.folder.refresh()
        self.assertEqual(self.folder.flags(1), {"Home"})
        self.assertEqual(self.folder.flags(3), frozenset())

    @defer.inlineCallbacks
    def test_flagsOfManyAndUidsWithFlag(self):
        yield self.folder.setFlags([1, 3], ["\\Deleted"], "add")
        yield self.folder.setFlags([3], ["\\Seen"], "add")
        self.assertEqual(self.folder.uidsWithFlag("\\Deleted"), [1, 3])
        self.assertEqual(self.folder.uidsWithFlag("\\seen"), [3])
        self.assertEqual(self.folder.uidsWithFlag("\\Flagged"), [])
        yield self.folder.expunge([1])
        self.assertEqual(
            self.folder.flagsOfMany([1, 2, 3]), [None, frozenset(), frozenset({"\\Deleted", "\\Seen"})]
        )
        self.assertEqual(self.folder.uidsWithFlag("\\Deleted"), [3])


class AppendDurabilityTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_appendedMessageIsDurableBeforeItsUid(self):
        """
        With C{fsync} on, an APPEND's UID comes after the message file,
        the directory it was renamed into and C{dovecot-uidlist} were
        synced; the message is in the Maildir once the pool is stopped.
        """
        account = makeAccount(self)
        store = makeTestStore(self, inotify=False, fsync=True)
        yield deliver(store, account)
        folder = yield store.mailboxes(account).open()
        synced = []
        realFsync, realFdatasync = os.fsync, os.fdatasync

        def fsync(fd):
            synced.append(os.fstat(fd).st_ino)
            realFsync(fd)

        def fdatasync(fd):
            synced.append(os.fstat(fd).st_ino)
            realFdatasync(fd)

        self.patch(os, "fsync", fsync)
        self.patch(os, "fdatasync", fdatasync)
        groupCommits = store.directorySyncs.fsyncs
        uid = yield folder.append(b"Subject: durable\r\n\r\nx\r\n", ["\\Seen"])
        # the directory fsync is the deliveries' group commit
        self.assertEqual(store.directorySyncs.fsyncs, groupCommits + 1)
        name = folder.message(uid).filename
        folder.close()
        yield store.close()
        path = account.maildir / "cur" / name
        self.assertEqual(path.read_bytes(), b"Subject: durable\r\n\r\nx\r\n")
        for inode in (path, account.maildir / "cur", account.maildir / "dovecot-uidlist"):
            self.assertIn(os.stat(inode).st_ino, synced, inode)
        records = (account.maildir / "dovecot-uidlist").read_text().splitlines()
        self.assertTrue(any(line.startswith(f"{uid} ") and line.endswith(name.partition(":")[0]) for line in records))
