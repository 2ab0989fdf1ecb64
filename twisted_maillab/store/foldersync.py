"""
The thread side of a folder: reading and writing C{dovecot-uidlist} and
C{dovecot-keywords}, listing C{new/} and C{cur/}, and opening message files
safely.  Mixed into L{twisted_maillab.store.folder.Folder}.

Every method here runs in the store's thread pool under the folder's lock
(or, for opening a message, touches only the file system).  While the lock
is held the reactor thread does not change the index, so these methods may
read it; they never change it or the clock: they return a L{SyncResult}
that the reactor thread applies (L{Folder._apply}).
"""

from __future__ import annotations

import os
import stat as _stat

from twisted.logger import Logger

from twisted_maillab.store import _fs, dovecot
from twisted_maillab.store.errors import MailboxNotFound, MessageVanished, UnsafePath
from twisted_maillab.store.message import Message, _intern, _Sync

log = Logger()

TMP_MAX_AGE = 36 * 3600  # Maildir spec: tmp/ files untouched for 36 hours are garbage

_MISSING = object()


def openFolderDirs(
    rootFd: int, dirName: str | None, name: str, owner, create: bool, subdirs=("cur", "new", "tmp"), keepRoot=True
) -> dict:
    """
    Thread: open a folder's directories with C{O_NOFOLLOW} all the way down
    from the Maildir root, creating C{cur/ new/ tmp/} (and a Maildir++
    folder's C{maildirfolder} file) if asked.  Used by open folders and by
    delivery transactions alike.

    @param rootFd: the Maildir root (INBOX).
    @param dirName: the Maildir++ directory (C{.Sent}), L{None} for INBOX.
    @param name: the folder name, for errors.
    @param subdirs: which of C{cur new tmp} to open (a delivery to INBOX
        needs only C{new} and C{tmp}: opening the Maildir root made all
        three).
    @param keepRoot: whether to return the folder directory as C{"root"}.
    @return: C{{"root", "cur", "new", "tmp"}} (as asked) to fds the caller
        closes.
    @raise MailboxNotFound: the folder, or one of its directories, is
        missing and C{create} is false.
    """
    fds = {}
    try:
        if dirName is None:
            fds["root"] = os.dup(rootFd) if keepRoot else rootFd
        elif create:
            fds["root"] = _fs.makeDir(dirName, rootFd, owner)
        else:
            try:
                fds["root"] = _fs.openDir(dirName, rootFd)
            except FileNotFoundError:
                raise MailboxNotFound(f"{name}: no such mailbox") from None
        for sub in subdirs:
            if create:
                fds[sub] = _fs.makeDir(sub, fds["root"], owner)
            else:
                try:
                    fds[sub] = _fs.openDir(sub, fds["root"])
                except FileNotFoundError:
                    raise MailboxNotFound(f"{name}: not a Maildir (no {sub}/)") from None
        if dirName is not None and create:
            # Maildir++: a folder carries an empty "maildirfolder" file
            try:
                os.close(_fs.createFile(dovecot.MAILDIRFOLDER, fds["root"], owner))
            except FileExistsError:
                pass
    except BaseException:
        for key, fd in fds.items():
            if fd != rootFd:
                os.close(fd)
        raise
    if not keepRoot:
        folderFd = fds.pop("root")
        if folderFd != rootFd:
            os.close(folderFd)
    return fds


class FolderSync:
    """
    Thread-side disk work of a folder: the uidlist, the directories and
    the message files.
    """

    # ------------------------------------------------------------------
    # Files

    def _openWork(self, create: bool) -> None:
        """
        Thread: open the directory fds, creating C{cur/ new/ tmp/} if asked.
        """
        rootFd = self.mailboxes._rootFd(create=create)
        self._fds = openFolderDirs(rootFd, self.dirName, self.name, self.owner, create)

    def _cleanTmp(self, now: float) -> int:
        """
        Thread: remove C{tmp/} files older than 36 hours (Maildir spec);
        they are what a crash between write and rename leaves.
        """
        removed = 0
        tmpFd = self._fds["tmp"]
        with _fs.scanDir(tmpFd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if _stat.S_ISDIR(st.st_mode):
                    continue
                if st.st_mtime < now - TMP_MAX_AGE and st.st_atime < now - TMP_MAX_AGE:
                    try:
                        os.unlink(entry.name, dir_fd=tmpFd)
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def _findAndStat(self, message: Message):
        """
        Any thread: C{(stat result, relocated)} of the message's file,
        found by its base name if another program renamed it; touches
        nothing shared.

        @raise MessageVanished: no file has its base name any more.
        @raise UnsafePath: not a regular file of the account's.
        """
        def statRegular(subdir, filename):
            st = os.stat(filename, dir_fd=self._fds[subdir], follow_symlinks=False)
            if not _stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{filename} is not a regular file")
            self.owner.check(st, filename)
            return st

        return self._relocating(message, statRegular, f"UID {message.uid} vanished from {self.name}")

    def _relocating(self, message: Message, action, vanished: str):
        """
        Any thread: C{(action(subdir, filename), relocated)}, where a
        C{FileNotFoundError} from C{action} makes it look for the file by its
        base name (another program renamed it) and try once more.

        @raise MessageVanished: with C{vanished}, no file has the base name.
        """
        where = (message.subdir, message.filename)
        for attempt in range(2):
            try:
                return action(*where), attempt > 0
            except FileNotFoundError:
                found = self._relocate(message) if attempt == 0 else None
                if found is None:
                    raise MessageVanished(vanished) from None
                where = found
        raise AssertionError("unreachable")

    def _relocate(self, message: Message):
        """
        The file was renamed by another process (flags changed, moved from
        new/ to cur/): find it by its base name.  The caller schedules a
        refresh (the index itself is only changed under the folder lock).
        Blocking; rare.

        @return: C{(subdir, filename)} or L{None}.
        """
        for subdir in ("cur", "new"):
            for name in _fs.listNames(self._fds[subdir]):
                if name.partition(":")[0] == message.base:
                    return subdir, name
        return None

    def _openFile(self, uid: int):
        """
        Blocking: C{(file, relocated)}.
        """
        message = self.message(uid)

        def openRegular(subdir, filename):
            return os.fdopen(_fs.openRegular(filename, self._fds[subdir], self.owner), "rb")

        return self._relocating(message, openRegular, f"UID {uid} was expunged from {self.name}")

    def _statMany(self, messages) -> list:
        """
        Thread: C{[(message, size, mtime), ...]} for those of C{messages}
        still there as regular files (vanished ones are left to the next
        refresh).
        """
        found = []
        for message in messages:
            try:
                st = os.stat(message.filename, dir_fd=self._fds[message.subdir], follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not _stat.S_ISREG(st.st_mode):
                continue
            found.append((message, st.st_size, st.st_mtime))
        return found

    # ------------------------------------------------------------------
    # The uidlist and keywords


    def _lockUidlist(self) -> dovecot.DotLock:
        return dovecot.DotLock(
            self._dirFd(),
            dovecot.UIDLIST,
            self.owner,
            staleTimeout=self.store.lockStaleTimeout,
            hostname=self.store.hostname,
        )

    def _readUidlist(self, state: dovecot.UidlistState):
        """
        Read what changed in the uidlist since C{state}.

        @return: C{(records, newState, reset)}: the records read (all of
            them when C{reset}), or C{(None, None, False)} if unchanged.
            A missing or corrupt file gives C{([], emptyState, True)}.
        """
        dirFd = self._dirFd()
        try:
            fd = _fs.openRegular(dovecot.UIDLIST, dirFd, self.owner)
        except FileNotFoundError:
            if state.ino == 0:
                return None, None, False
            return [], dovecot.UidlistState(), True
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino == state.ino and st.st_size == state.size and st.st_mtime_ns == state.mtimeNs:
                return None, None, False
            new = dovecot.UidlistState(ino=st.st_ino, size=st.st_size, mtimeNs=st.st_mtime_ns)
            incremental = st.st_ino == state.ino and st.st_size >= state.offset and state.offset > 0
            try:
                if incremental:
                    f.seek(state.offset)
                    data = f.read(st.st_size - state.offset)
                    # only whole lines: a writer may be mid-line
                    end = data.rfind(b"\n") + 1
                    data = data[:end]
                    new.header = dovecot.UidlistHeader(**vars(state.header))
                    records = dovecot.parseRecords(data, state.header.version, state.lastUid)
                    new.offset = state.offset + end
                    new.lines = state.lines + data.count(b"\n")
                else:
                    data = f.read(st.st_size)
                    end = data.rfind(b"\n") + 1
                    data = data[:end]
                    headerEnd = data.find(b"\n")
                    if headerEnd < 0:
                        raise dovecot.UidlistFormatError("no header line")
                    new.header = dovecot.parseHeader(data[:headerEnd])
                    records = dovecot.parseRecords(data[headerEnd + 1 :], new.header.version)
                    new.offset = end
                    new.lines = data.count(b"\n") - 1
            except (dovecot.UidlistFormatError, ValueError) as e:
                log.warn("{name}: broken dovecot-uidlist ({error}); it will be rebuilt", name=self.name, error=e)
                return [], dovecot.UidlistState(), True
        if records:
            new.lastUid = records[-1][0]
            if new.header.nextUid <= new.lastUid:
                new.header.nextUid = new.lastUid + 1
        else:
            new.lastUid = state.lastUid if incremental else 0
        return records, new, not incremental

    def _writeUidlist(self, state, header, newRecords, allRecords, recreate: bool):
        """
        Thread, uidlist lock held: append C{newRecords}, or rewrite the file
        with C{allRecords} (sorted C{(uid, ext, base)}).  Returns the new state.
        """
        dirFd = self._dirFd()
        fsync = self.store.fsync
        if not recreate:
            fd = os.open(dovecot.UIDLIST, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirFd)
            try:
                st = os.fstat(fd)
                if st.st_ino == state.ino and st.st_size == state.offset:
                    data = b"".join(dovecot.formatRecord(*r) for r in newRecords)
                    _fs.writeAll(fd, data)
                    if fsync:
                        os.fdatasync(fd)
                    st = os.fstat(fd)
                    return dovecot.UidlistState(
                        ino=st.st_ino,
                        size=st.st_size,
                        mtimeNs=st.st_mtime_ns,
                        offset=st.st_size,
                        lastUid=max(state.lastUid, newRecords[-1][0] if newRecords else 0),
                        lines=state.lines + len(newRecords),
                        header=header,
                    )
            finally:
                os.close(fd)
        # Rewrite: dovecot-uidlist.tmp then rename, under the dotlock, as
        # maildir_uidlist_recreate() does.
        body = [header.format()]
        body.extend(dovecot.formatRecord(*r) for r in allRecords)
        data = b"".join(body)
        tmp = dovecot.UIDLIST + ".tmp"
        try:
            os.unlink(tmp, dir_fd=dirFd)
        except FileNotFoundError:
            pass
        fd = _fs.createFile(tmp, dirFd, self.owner)
        try:
            _fs.writeAll(fd, data)
            if fsync:
                os.fdatasync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dovecot.UIDLIST, src_dir_fd=dirFd, dst_dir_fd=dirFd)
        return dovecot.UidlistState(
            ino=st.st_ino,
            size=st.st_size,
            mtimeNs=st.st_mtime_ns,
            offset=st.st_size,
            lastUid=allRecords[-1][0] if allRecords else 0,
            lines=len(allRecords),
            header=header,
        )

    def _readKeywords(self) -> dovecot.Keywords:
        return dovecot.Keywords.parse(_fs.readSmallFile(dovecot.KEYWORDS, self._dirFd(), self.owner))

    # ------------------------------------------------------------------
    # Synchronisation with the directories


    def _listDir(self, subdir: str) -> dict[str, str | None]:
        out = {}
        intern = _intern
        # not os.listdir(fd): FETCH and SEARCH list the same fds outside
        # the folder lock when a file was renamed (see _fs.listNames)
        for name in _fs.listNames(self._fds[subdir]):
            if name[0] == ".":
                continue  # Maildir spec: dot files are not messages
            base, sep, info = name.partition(":")
            out[base] = intern(info) if sep else None
        return out

    def _confirmGone(self, gone: list, messages, newFiles: dict, curFiles: dict) -> list:
        """
        Thread: the UIDs of C{gone} whose files a second listing of both
        directories does not find either.  readdir(3) may skip an entry
        renamed while the directory is read (POSIX leaves it unspecified):
        another program's flag change (C{cur/} to C{cur/}) or move (C{new/}
        to C{cur/}) during our listing would otherwise be taken for an
        expunge, and a message its client still has would vanish from
        ours.  A file found again goes into the listing C{newFiles} or
        C{curFiles} (where it is now).  Only listings that miss a file
        pay for this, and a message expunged by a session of this process
        never does (it leaves the index before any listing).
        """
        again = (("new", self._listDir("new")), ("cur", self._listDir("cur")))
        confirmed = []
        for uid in gone:
            base = messages[uid].base
            for subdir, found in again:
                if base in found:
                    (newFiles if subdir == "new" else curFiles)[base] = found[base]
                    break
            else:
                confirmed.append(uid)
        return confirmed

    def _dirStamps(self) -> tuple:
        """
        Thread: the modification times (ns) of C{new/} and C{cur/}.
        """
        return os.fstat(self._fds["new"]).st_mtime_ns, os.fstat(self._fds["cur"]).st_mtime_ns

    def _ownStamps(self, before: tuple, after: tuple) -> tuple:
        """
        Thread: the directory stamps the index matches once an operation's
        own renames and unlinks are applied.  A directory whose mtime was
        still the one of our last listing just before them (C{before})
        changed only by them, so its new mtime (C{after}) is ours and the
        next refresh need not list it (thousands of names, in Python, for
        every STORE or APPEND otherwise).  A directory that had changed
        keeps the old stamp and is listed next time.  Another program's
        change in the same instant is reported by inotify, which forces a
        listing, or by the periodic rescan.
        """
        return tuple(now if was == seen else seen for was, seen, now in zip(before, self._stamps, after))

    def _syncWork(
        self, forceNew: bool, forceCur: bool, extra: dict | None, initial: bool = False, before: tuple | None = None
    ) -> _Sync:
        """
        Thread: compare the index with the disk.

        @param extra: files this process just placed, C{{base: (isNew,
            info)}}, added without relisting.
        @param before: the directory stamps just before this process
            placed them (see L{_ownStamps}).
        """
        sync = _Sync()
        stampNew, stampCur = self._dirStamps()
        listed = self._stamps if before is None else self._ownStamps(before, (stampNew, stampCur))
        listNew = forceNew or stampNew != listed[0]
        listCur = forceCur or stampCur != listed[1]

        # 1. the uidlist, read without the lock (Dovecot does the same)
        records, ustate, reset = self._readUidlist(self._ustate)
        firstLoad = None
        header = self.header
        pending = dict(self._pending)
        byBase = self.byBase
        messages = self.messages
        if records is not None:
            if reset:
                sync.uidlistState = ustate if ustate.ino else dovecot.UidlistState()
                if ustate.ino and self.header.uidValidity and ustate.header.uidValidity != self.header.uidValidity:
                    # UIDVALIDITY changed under us: every UID is void
                    sync.reset = True
                    byBase, messages = {}, {}
                    listNew = listCur = True
                pending = {}
            else:
                sync.uidlistState = ustate
            if ustate.ino:
                header = dovecot.UidlistHeader(**vars(ustate.header))
                if header.uidValidity == self.header.uidValidity:
                    # the file's N lags behind appended records (Dovecot
                    # rewrites it only on recreate): UIDNEXT never goes back
                    header.nextUid = max(header.nextUid, self.header.nextUid, ustate.lastUid + 1)
                sync.header = header
            if not byBase:
                firstLoad = records  # matched directly against the listing below
            else:
                for record in records:
                    uid, ext, base = record
                    known = byBase.get(base)
                    if known is None:
                        pending[base] = record
                    elif known != uid:
                        log.warn(
                            "{name}: {base} changed UID {old} -> {new} in dovecot-uidlist",
                            name=self.name, base=base, old=known, new=uid,
                        )
                        sync.removed.append(known)
                        pending[base] = record
        sync.pending = pending

        # 2. the directories: {subdir: {base: info}}
        listings: dict[str, dict] = {}
        if listNew:
            listings["new"] = self._listDir("new")
        if listCur:
            listings["cur"] = self._listDir("cur")
        if len(listings) == 1:
            # a message missing from the listed directory may have moved to
            # the other one in the same clock tick: list it too
            (only,) = listings
            seen = listings[only]
            if any(m.subdir == only and m.base not in seen for m in messages.values()):
                other = "cur" if only == "new" else "new"
                listings[other] = self._listDir(other)
        sync.stamps = (
            stampNew if "new" in listings else listed[0],
            stampCur if "cur" in listings else listed[1],
        )
        listed = set(listings)
        if extra:
            for base, (isNew, info) in extra.items():
                listings.setdefault("new" if isNew else "cur", {})[base] = info
                listings.get("cur" if isNew else "new", {}).pop(base, None)
        newFiles = listings.get("new", {})
        curFiles = listings.get("cur", {})

        # 3. compare (nothing to do for directories that were not listed)
        if listed:
            if listed == {"new"} and messages is self.messages:
                # only new/ changed (a delivery): check just its messages
                candidates = ((uid, messages[uid]) for uid in list(self._newUids) if uid in messages)
            else:
                candidates = messages.items()
            gone = [
                uid
                for uid, message in candidates
                if message.subdir in listed and message.base not in newFiles and message.base not in curFiles
            ]
            if gone:
                gone = self._confirmGone(gone, messages, newFiles, curFiles)
            sync.removed.extend(gone)
        unknown = []
        removedSet = set(sync.removed)
        updated = sync.updated
        added = sync.added
        if firstLoad is not None and len(listings) == 2:
            # opening a folder: one pass over the uidlist records, popping
            # their files from the listing (no intermediate dict of 100,000
            # pending records); what is left over are new files
            for base in newFiles.keys() & curFiles.keys():
                del newFiles[base]  # in both during a rename: cur/ wins
            missing = _MISSING
            for uid, ext, base in firstLoad:
                info = curFiles.pop(base, missing)
                if info is not missing:
                    added.append(Message(uid, base, info, False, ext))
                    continue
                info = newFiles.pop(base, missing)
                if info is not missing:
                    added.append(Message(uid, base, info, True, ext))
                else:
                    pending[base] = (uid, ext, base)  # expunged, or not yet visible
            firstLoad = None
        elif firstLoad is not None:
            for record in firstLoad:
                pending[record[2]] = record
        for isNew, found in ((False, curFiles), (True, newFiles)):
            for base, info in found.items():
                if isNew and base in curFiles:
                    continue  # in both during a rename: cur/ wins
                uid = byBase.get(base)
                if uid is not None and uid not in removedSet:
                    message = messages[uid]
                    if message.isNew is not isNew or message.info != info:
                        updated.append((uid, info, isNew))
                    continue
                record = pending.pop(base, None)
                if record is not None:
                    added.append(Message(record[0], base, info, isNew, record[1]))
                else:
                    unknown.append((base, isNew, info))

        # 4. new files need UIDs: lock, reread, assign, write
        needHeader = (
            header.uidValidity == 0
            or (initial and sync.uidlistState is None and self._ustate.ino == 0)
            or (sync.uidlistState is not None and sync.uidlistState.ino == 0)
        )
        if unknown or needHeader:
            self._assignUids(sync, unknown, pending, messages)
        if sync.keywords is None:
            # dovecot-keywords is replaced (rename) on change: its mtime and
            # inode tell us whether to reread it
            try:
                st = os.stat(dovecot.KEYWORDS, dir_fd=self._dirFd(), follow_symlinks=False)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._keywordsStamp or initial:
                sync.keywords = self._readKeywords()
                sync.keywordsStamp = stamp
        return sync

    def _assignUids(self, sync: _Sync, unknown, pending, messages) -> None:
        # records another process appended after our directory listing:
        # their files may be newer than the listing, so a rewrite keeps them
        fresh = []
        with self._lockUidlist():
            state = sync.uidlistState or self._ustate
            records, ustate, reset = self._readUidlist(state)
            if records is not None:
                if reset:
                    pending.clear()
                    state = ustate if ustate.ino else dovecot.UidlistState()
                else:
                    state = ustate
                sync.uidlistState = state
                for record in records:
                    if record[2] not in self.byBase:
                        pending[record[2]] = record
                        fresh.append(record)
            if state.ino:
                header = state.header
            elif self.header.uidValidity:
                # the uidlist vanished while we had the folder open: write
                # back what we know rather than starting a new UIDVALIDITY
                header = self.header
            else:
                header = dovecot.UidlistHeader()
            recreate = state.ino == 0 or header.version != 3 or not header.guid
            header = dovecot.UidlistHeader(**vars(header))
            if header.uidValidity == 0:
                header.uidValidity = dovecot.nextUidValidity(
                    self.mailboxes._rootFd(), self.owner, self.store.clock.seconds() or None
                )
            if not header.guid:
                header.guid = dovecot.newGuid()
            header.version = 3
            nextUid = max(header.nextUid, state.lastUid + 1)
            newRecords = []
            # Maildir names start with the delivery time: sorting them
            # as Dovecot does gives UIDs in arrival order, and the same
            # UIDs Dovecot would give.
            for base, isNew, info in sorted(unknown, key=lambda item: (dovecot.filenameSortKey(item[0]), item)):
                if base in pending:
                    uid, ext = pending.pop(base)[:2]
                else:
                    uid, ext = nextUid, ""
                    nextUid += 1
                    newRecords.append((uid, ext, base))
                sync.added.append(Message(uid, base, info, isNew, ext))
            header.nextUid = max(header.nextUid, nextUid)
            live = len(messages) + len(sync.added) - len(sync.removed)
            if not recreate and state.lines > 2 * live + 1000:
                recreate = True  # mostly expunged lines: compact, as Dovecot does
            if recreate:
                removed = set(sync.removed)
                allRecords = [
                    (m.uid, m.ext, m.base) for m in messages.values() if m.uid not in removed
                ]
                allRecords.extend((m.uid, m.ext, m.base) for m in sync.added)
                allRecords.extend(record for record in fresh if record[2] in pending)
                allRecords.sort()
                header.nextUid = max(header.nextUid, (allRecords[-1][0] + 1) if allRecords else 1)
                sync.uidlistState = self._writeUidlist(state, header, newRecords, allRecords, True)
            elif newRecords:
                sync.uidlistState = self._writeUidlist(state, header, newRecords, None, False)
                sync.uidlistState.header = dovecot.UidlistHeader(**vars(state.header))
                # the file header keeps its (lagging) N; ours is the truth
            sync.header = header
