"""
A folder's directory listings stay complete while another thread lists the
same directory fd.

C{os.listdir(fd)} reads through a C{dup} of C{fd}, which shares the read
position (one open file description) with C{fd} and every other C{dup}: a
FETCH or SEARCH that looks for a renamed message file in the store's pool
(outside the folder lock) and a refresh under the lock, listing C{cur/} at
the same moment, each got part of the directory.  The refresh then took the
messages it did not see for expunged: sessions were told EXPUNGE for
messages still on disk (RFC 3501 7.4.1 makes that final), their message
count dropped and a FETCH of a number they had been given was refused, and
the files came back with new UIDs.  Here the other thread's listing is
held half-way (an C{os.scandir} iterator on the shared fd that has read its
first batch), which is the state the race leaves the fd in, so the tests
are deterministic.
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from twisted_maillab.store import _fs
from twisted_maillab.store.testing import synchronousStore, temporaryAccount

# Enough names that a listing takes several getdents(2) calls (glibc reads
# 32 KiB at a time, a few hundred of these names).
_COUNT = 1500


def _name(i: int) -> str:
    return f"{1700000000 + i}.M{i:06d}P4242Q{i}.other.example.org,S=64,W=66"


class _Expunges:
    """
    A folder listener recording what the folder reported expunged.
    """

    def __init__(self):
        self.uids: list[int] = []

    def messagesExpunged(self, folder, uids) -> None:
        self.uids.extend(uids)


class HalfReadFd:
    """
    Another thread's listing of C{fd}, stopped after its first batch.
    """

    def __init__(self, testCase, fd: int):
        self.entries = os.scandir(fd)
        testCase.addCleanup(self.entries.close)
        next(self.entries)


class ListNamesTests(unittest.TestCase):
    def setUp(self):
        self.path = self.mktemp()
        os.mkdir(self.path)
        for i in range(_COUNT):
            with open(os.path.join(self.path, _name(i)), "wb"):
                pass
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, self.fd)

    def test_completeWhileSharedFdIsHalfRead(self):
        """
        L{_fs.listNames} returns every name even when the fd's shared
        position is in the middle of the directory.
        """
        HalfReadFd(self, self.fd)
        self.assertEqual(len(_fs.listNames(self.fd)), _COUNT)

    def test_scanDirCompleteWhileSharedFdIsHalfRead(self):
        """
        L{_fs.scanDir} too, and its entries can be stat'ed inside the block.
        """
        HalfReadFd(self, self.fd)
        with _fs.scanDir(self.fd) as entries:
            sizes = [entry.stat(follow_symlinks=False).st_size for entry in entries]
        self.assertEqual(sizes, [0] * _COUNT)

    def test_sharedFdIsNotMoved(self):
        """
        Listing leaves the other reader's position alone: it goes on
        where it stopped and, with its first batch, sees every name once.
        """
        reader = HalfReadFd(self, self.fd)
        _fs.listNames(self.fd)
        rest = [entry.name for entry in reader.entries]
        self.assertEqual(len(rest) + 1, _COUNT)


def openFolderOf(testCase: unittest.TestCase, count: int, body: bytes) -> None:
    """
    Give C{testCase} an open INBOX (C{store}, C{account}, C{folder},
    C{cur}) of C{count} seen messages of C{body} in C{cur/}, indexed
    (C{uids}), whose expunges are recorded in C{expunges}.
    """
    testCase.store = synchronousStore()
    testCase.addCleanup(testCase.store.close)
    testCase.account = temporaryAccount(testCase.mktemp())
    testCase.folder = testCase.successResultOf(testCase.store.mailboxes(testCase.account).open())
    testCase.addCleanup(testCase.folder.close)
    testCase.cur = testCase.account.maildir / "cur"
    for i in range(count):
        (testCase.cur / f"{_name(i)}:2,S").write_bytes(body)
    testCase.successResultOf(testCase.folder.refresh(full=True))
    testCase.uids = list(testCase.folder.uids())
    testCase.assertEqual(len(testCase.uids), count)
    testCase.expunges = _Expunges()
    testCase.folder.subscribe(testCase.expunges)


class FolderListingTests(unittest.TestCase):
    def setUp(self):
        openFolderOf(self, _COUNT, b"Subject: x\r\n\r\n" + b"y" * 48 + b"\r\n")

    def test_refreshWhileAnotherListingIsHalfWay(self):
        """
        A refresh that lists C{cur/} while another thread's listing of the
        same fd is half-way sees every message: nothing is reported
        expunged and no message gets a new UID.
        """
        HalfReadFd(self, self.folder._fds["cur"])
        self.successResultOf(self.folder.refresh(full=True))
        self.assertEqual(self.expunges.uids, [])
        self.assertEqual(self.folder.uids(), self.uids)

    def test_findRenamedWhileAnotherListingIsHalfWay(self):
        """
        Opening a message another program renamed (the FETCH path in the
        pool, outside the folder lock) finds it while a listing of the same
        fd is half-way, and the refresh it asks for expunges nothing.
        """
        cur = self.account.maildir / "cur"
        # a name another listing's first batch returns: the half-read fd
        # has gone past it
        with os.scandir(cur) as entries:
            first = next(entries).name
        base = first.partition(":")[0]
        uid = self.folder.byBase[base]
        # the index knows the file as flagged; then another program
        # renames it back (its flags changed)
        os.rename(cur / first, cur / f"{base}:2,FS")
        self.successResultOf(self.folder.refresh(full=True))
        self.assertEqual(self.folder.flags(uid), {"\\Seen", "\\Flagged"})
        os.rename(cur / f"{base}:2,FS", cur / first)
        HalfReadFd(self, self.folder._fds["cur"])
        f, relocated = self.folder.openMessageInThread(uid)
        f.close()
        self.assertTrue(relocated)
        self.folder.filesMoved()
        self.store.clock.advance(1)
        self.assertEqual(self.expunges.uids, [])
        self.assertEqual(self.folder.uids(), self.uids)
        self.assertEqual(self.folder.flags(uid), {"\\Seen"})


class RenamedDuringListingTests(unittest.TestCase):
    """
    readdir(3) may skip an entry renamed while the directory is read
    (POSIX leaves it unspecified, and Linux does skip one that moves to a
    slot already read): another program's flag change or move during our
    listing must not look like an expunge.  The listing is made to miss
    the file the way the race does: the other program renames it between
    our listing's batches, and the listing returns neither name.
    """

    def setUp(self):
        openFolderOf(self, 3, b"Subject: x\r\n\r\ny\r\n")

    def missOnce(self, rename, hidden):
        """
        The next listing of C{cur/}: C{rename()} runs (another program)
        and the listing leaves out every name of C{hidden} (bases).
        """
        real = _fs.listNames
        calls = []
        cur = self.folder._fds["cur"]

        def listNames(fd):
            names = real(fd)
            if fd == cur and not calls:
                calls.append(fd)
                rename()
                return [n for n in names if n.partition(":")[0] not in hidden]
            return real(fd)

        self.patch(_fs, "listNames", listNames)
        return calls

    def test_flagChangeDuringListing(self):
        """
        A file renamed in C{cur/} (Dovecot setting a flag) while C{cur/}
        is listed keeps its UID and gets its new flags; nothing expunged.
        """
        base = _name(1)
        uid = self.folder.byBase[base]
        calls = self.missOnce(lambda: os.rename(self.cur / f"{base}:2,S", self.cur / f"{base}:2,FS"), {base})
        self.successResultOf(self.folder.refresh(full=True))
        self.assertTrue(calls)
        self.assertEqual(self.expunges.uids, [])
        self.assertEqual(self.folder.uids(), self.uids)
        self.assertEqual(self.folder.flags(uid), {"\\Seen", "\\Flagged"})

    def test_realExpungeStillSeen(self):
        """
        A file really removed by another program is still an expunge.
        """
        base = _name(0)
        uid = self.folder.byBase[base]
        self.missOnce(lambda: os.unlink(self.cur / f"{base}:2,S"), {base})
        self.successResultOf(self.folder.refresh(full=True))
        self.assertEqual(self.expunges.uids, [uid])
        self.assertEqual(self.folder.uids(), [u for u in self.uids if u != uid])
