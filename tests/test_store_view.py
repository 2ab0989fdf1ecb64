"""
Per-session views of a shared folder (twisted_maillab.store.view) and the
store's message reading helpers (twisted_maillab.store.reading).
"""

from __future__ import annotations

import io

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from twisted_maillab.interfaces import IFolderListener, IMessageReader
from twisted_maillab.store import MessageVanished
from twisted_maillab.store.reading import ThreadedReader, crlfSize, virtualSizes
from twisted_maillab.store.view import FolderView

from .test_store import chownTree, deliver, makeAccount, makeTestStore


class FolderViewTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        for i in range(5):
            yield deliver(self.store, self.account, b"Subject: %d\n\n" % i)
        mailboxes = self.store.mailboxes(self.account)
        self.a = FolderView((yield mailboxes.open()))
        self.b = FolderView((yield mailboxes.open()))
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)
        self.folder = self.a.folder
        self.assertIs(self.b.folder, self.folder)

    def test_provides(self):
        verifyObject(IFolderListener, self.a)

    def test_numbering(self):
        self.assertEqual(self.a.uids, [1, 2, 3, 4, 5])
        self.assertEqual(self.a.uidAt(2), 2)
        self.assertEqual(self.a.seqOf(5), 5)
        self.assertRaises(IndexError, self.a.uidAt, 6)
        self.assertRaises(IndexError, self.a.uidAt, 0)
        self.assertRaises(MessageVanished, self.a.seqOf, 9)
        self.assertFalse(self.a.pending)
        self.assertFalse(self.a.takeChanges())

    @defer.inlineCallbacks
    def test_anotherSessionsExpungeWaitsForThisOne(self):
        """
        B expunges 2 and 4: A's numbers stay until A takes the change,
        and then the EXPUNGE numbers are right for a client that applies
        them one after the other.
        """
        yield self.folder.expunge([2, 4], origin=self.b)
        self.b.expungedHere([2, 4])
        self.assertEqual(self.a.uids, [1, 2, 3, 4, 5])
        self.assertTrue(self.a.gone(4))
        self.assertFalse(self.a.gone(3))
        # RFC 3501 7.4.1: not during FETCH/STORE/SEARCH
        held = self.a.takeChanges(expunges=False)
        self.assertEqual(held.expunged, [])
        self.assertEqual(self.a.uids, [1, 2, 3, 4, 5])
        changes = self.a.takeChanges()
        self.assertEqual(changes.expunged, [4, 2])
        self.assertEqual(self.a.uids, [1, 3, 5])
        self.assertEqual(self.a.seqOf(5), 3)
        # the session that expunged hears it the same way
        self.assertEqual(self.b.takeChanges().expunged, [4, 2])
        self.assertFalse(self.a.pending)

    @defer.inlineCallbacks
    def test_deliveryAndFlags(self):
        yield self.folder.setFlags([3], ["\\Seen"], "add", origin=self.b)
        yield deliver(self.store, self.account, b"Subject: new\n\n")
        yield self.folder.refresh()
        self.assertEqual(len(self.a), 5)
        self.assertTrue(self.a.pending)
        changes = self.a.takeChanges()
        self.assertEqual(changes.exists, 6)
        self.assertEqual(changes.flagsChanged, [3])
        self.assertEqual(self.a.uids, [1, 2, 3, 4, 5, 6])
        # the origin of a flag change is not told of it
        self.assertEqual(self.b.takeChanges().flagsChanged, [])

    @defer.inlineCallbacks
    def test_addedThenExpungedBeforeTheSessionLooked(self):
        yield deliver(self.store, self.account, b"Subject: brief\n\n")
        yield self.folder.refresh()
        yield self.folder.expunge([6])
        changes = self.a.takeChanges(expunges=False)
        self.assertIsNone(changes.exists)
        self.assertEqual(self.a.uids, [1, 2, 3, 4, 5])
        self.assertEqual(self.a.takeChanges().expunged, [])

    @defer.inlineCallbacks
    def test_folderDeletedUnderTheSession(self):
        mailboxes = self.store.mailboxes(self.account)
        yield mailboxes.create("Work")
        view = FolderView((yield mailboxes.open("Work")))
        yield mailboxes.delete("Work")
        self.assertTrue(view.takeChanges().reset)
        view.close()
        self.assertTrue(view.folder is None)


class ReadingTests(unittest.TestCase):
    def test_crlfSize(self):
        for data, size in [
            (b"", 0),
            (b"a\n", 3),
            (b"a\r\n", 3),
            (b"a", 3),
            (b"a\nb", 6),
            (b"\r\n\n", 4),
        ]:
            self.assertEqual(crlfSize(io.BytesIO(data)), size, data)

    def test_crlfAcrossChunks(self):
        from twisted_maillab.store import reading

        self.patch(reading, "_COUNT_CHUNK", 2)
        self.assertEqual(crlfSize(io.BytesIO(b"a\r\nb\nc\r\n")), 9)

    @defer.inlineCallbacks
    def test_virtualSizesCountsOnlyWhatTheNameDoesNotSay(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account, b"Subject: x\n\nbody\n")
        (account.maildir / "new" / "1700000000.M1P1.other").write_bytes(b"a\nb\n")
        chownTree(account.maildir)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        opened = []
        realOpen = folder.openMessage
        self.patch(folder, "openMessage", lambda uid: (opened.append(uid), realOpen(uid))[1])
        [other] = [uid for uid in folder.uids() if folder.message(uid).base.endswith(".other")]
        [ours] = [uid for uid in folder.uids() if uid != other]
        sizes = yield virtualSizes(folder, folder.uids() + [99])
        self.assertEqual(sizes, {ours: len(b"Subject: x\r\n\r\nbody\r\n"), other: 6})
        self.assertEqual(opened, [other])

    @defer.inlineCallbacks
    def test_threadedReader(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        yield deliver(store, account, b"x" * 1000)
        folder = yield store.mailboxes(account).open()
        self.addCleanup(folder.close)
        reader = ThreadedReader(folder.openMessage(1), store.run)
        verifyObject(IMessageReader, reader)
        chunks = []
        while True:
            chunk = yield reader.read(300)
            if not chunk:
                break
            chunks.append(chunk)
        self.assertEqual([len(c) for c in chunks], [300, 300, 300, 100])
        reader.close()
        reader.close()
        yield self.assertFailure(reader.read(1), ValueError)
