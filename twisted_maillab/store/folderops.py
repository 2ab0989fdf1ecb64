"""
The thread side of a folder's operations: claiming \\Recent, flags and
keywords, expunge, append, copy and move.  Mixed into
L{twisted_maillab.store.folder.Folder}, whose public methods of the same
names run these under the folder lock and apply their results.

Every operation renames or unlinks files another program (Dovecot, a MUA
writing the Maildir directly, another maillab) may have renamed a moment
before; each goes through L{FolderOperations._resync} on C{ENOENT}: relist,
find the message by its base name, retry once.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from typing import TYPE_CHECKING

from twisted_maillab.store import _fs, dovecot
from twisted_maillab.store.errors import MessageVanished, UnsafePath
from twisted_maillab.store.message import _bareLFs, _merge, _Sync

if TYPE_CHECKING:
    from twisted_maillab.store.folder import Folder

_COPY_CHUNK = 256 * 1024


class FolderOperations:
    """
    Thread-side work of the operations that change a folder.
    """

    # ------------------------------------------------------------------
    # Recent

    def _claimWork(self, uids) -> _Sync:
        sync = _Sync()
        claimed = []
        newFd, curFd = self._fds["new"], self._fds["cur"]
        before = None
        for uid in uids:
            message = self.messages.get(uid)
            if message is None or not message.isNew:
                continue
            if before is None:
                before = self._dirStamps()
            info = dovecot.buildInfo(message.info, message.letters)
            target = f"{message.base}:{info}"
            try:
                os.rename(message.filename, target, src_dir_fd=newFd, dst_dir_fd=curFd)
            except FileNotFoundError:
                continue  # someone else claimed or expunged it; the refresh will say
            sync.updated.append((uid, info, False))
            claimed.append(uid)
        if before is not None:
            sync.stamps = self._ownStamps(before, self._dirStamps())
        sync.result = claimed
        return sync

    # ------------------------------------------------------------------
    # Flags and keywords

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

    def _flagsWork(self, uids, flags, mode) -> _Sync:
        sync = _Sync()
        letters, keywords = self._withKeywords(flags)
        if keywords is not None:
            sync.keywords = keywords
        wanted = set(letters)
        result = {}
        missing = []
        before = self._dirStamps()
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
        if sync.stamps is None and sync.updated:
            # (after a resync its listing's stamps stand: see _ownStamps)
            sync.stamps = self._ownStamps(before, self._dirStamps())
        sync.result = result
        return sync

    # ------------------------------------------------------------------
    # Files another program renamed

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

    # ------------------------------------------------------------------
    # Expunge

    def _expungeWork(self, uids) -> _Sync:
        sync = _Sync()
        if uids is None:
            uids = [uid for uid, m in self.messages.items() if "T" in m.letters]
        removedBytes = removedCount = 0
        missing = []
        before = self._dirStamps()
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
        if sync.stamps is None and sync.removed:
            sync.stamps = self._ownStamps(before, self._dirStamps())
        if removedCount:
            self.mailboxes._quotaUpdate(-removedBytes, -removedCount)
        sync.result = sorted(set(sync.removed))
        return sync

    # ------------------------------------------------------------------
    # Append, copy, move

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
            before = self._dirStamps()
            os.rename(unique, name, src_dir_fd=tmpFd, dst_dir_fd=self._fds["new" if isNew else "cur"])
        except BaseException:
            try:
                os.unlink(unique, dir_fd=tmpFd)
            except OSError:
                pass
            raise
        if self.store.fsync:
            # group commit with deliveries into the same directory (their
            # key for new/: see DeliveryTransaction._newDirectories)
            key = (self.mailboxes.path, self.dirName) if isNew else (self.mailboxes.path, self.dirName, "cur")
            self.store.directorySyncs.sync(self._fds["new" if isNew else "cur"], key)
        self.mailboxes._quotaUpdate(size, 1)
        sync = self._syncWork(False, False, {base: (isNew, info)}, before=before)
        if keywords is not None:
            sync.keywords = keywords
        sync.result = next(m.uid for m in sync.added if m.base == base)
        return sync

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
