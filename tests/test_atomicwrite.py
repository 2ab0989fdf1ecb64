"""
twisted_maillab.atomicwrite: the one way the suite replaces a small file.
"""

from __future__ import annotations

import os
import stat

from twisted.trial import unittest

from twisted_maillab import atomicwrite
from twisted_maillab.atomicwrite import replaceFile


class ReplaceFileTests(unittest.TestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.path = os.path.join(self.directory, "state.json")

    def test_replacesWithExactModeAndLeavesNoTemporary(self):
        with open(self.path, "wb") as f:
            f.write(b"old")
        old = os.umask(0o077)
        self.addCleanup(os.umask, old)
        replaceFile(self.path, b"new", mode=0o640)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_orderIsFileFsyncRenameDirectoryFsync(self):
        events = []
        realFsync, realRename = os.fsync, os.rename

        def fsync(fd):
            events.append("dir-fsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file-fsync")
            realFsync(fd)

        def rename(*args, **kwargs):
            events.append("rename")
            realRename(*args, **kwargs)

        self.patch(atomicwrite.os, "fsync", fsync)
        self.patch(atomicwrite.os, "rename", rename)
        replaceFile(self.path, b"data")
        self.assertEqual(events, ["file-fsync", "rename", "dir-fsync"])

    def test_failedWriteKeepsTheOldFile(self):
        with open(self.path, "wb") as f:
            f.write(b"old")

        def full(fd, data):
            raise OSError(28, "No space left on device")

        self.patch(atomicwrite.os, "write", full)
        self.assertRaises(OSError, replaceFile, self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_staleTemporaryAndPlantedSymlink(self):
        """
        A temporary left by a crashed writer, or a symlink planted at its
        name, is removed, never written through.
        """
        target = os.path.join(self.directory, "victim")
        with open(target, "wb") as f:
            f.write(b"untouched")
        os.symlink(target, f"{self.path}.tmp.{os.getpid()}")
        replaceFile(self.path, b"data")
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"untouched")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"data")

    def test_inADirectoryByFdWithOwner(self):
        owned = []
        dirFd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, dirFd)
        replaceFile("maildirsize", b"0S\n", dirFd=dirFd, owner=owned.append, fsync=False, syncDir=False)
        self.assertEqual(len(owned), 1)
        with open(os.path.join(self.directory, "maildirsize"), "rb") as f:
            self.assertEqual(f.read(), b"0S\n")
