"""
The selected state of an IMAP session (RFC 3501 6.3.1-6.3.2, 6.4): a
L{FolderView} of the shared folder gives the session its own sequence
numbers, and the folder's changes (other sessions, SMTP deliveries, POP3,
other programs seen through inotify) are queued in it until the session
reports them as untagged EXPUNGE / EXISTS / FETCH responses at the moments
RFC 3501 7.4.1 allows (never an EXPUNGE during FETCH, STORE or SEARCH by
sequence number), or at once while the client IDLEs.

Mixed into L{twisted_maillab.imap.server.IMAPServer}; uses its C{write},
C{ok}, C{no}, C{bad}, C{avatar}, C{state} and C{changesArrived}.
"""

from __future__ import annotations

import bisect

from twisted.internet import defer

from twisted_maillab.imap import response as R
from twisted_maillab.imap import search as S
from twisted_maillab.imap.parser import SearchKey
from twisted_maillab.store.errors import MailboxNotFound, MessageVanished, QuotaExceeded, StoreError
from twisted_maillab.store.reading import virtualSizes
from twisted_maillab.store.view import FolderView

__all__ = ["SelectedCommands", "SessionView", "SYSTEM_FLAGS", "sessionFlags"]

# The order Dovecot lists them in.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_FLAG_ORDER = {name: i for i, name in enumerate(SYSTEM_FLAGS + ("\\Recent",))}

# RFC 3501 7.4.1: no EXPUNGE while these run by sequence number.
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT"})


def sessionFlags(flags, recent: bool) -> list:
    """
    A message's flags as the session shows them: system flags first in
    a fixed order, then keywords, C{\\Recent} when the session has it.
    """
    names = sorted(flags, key=lambda f: (_FLAG_ORDER.get(f, 99), f))
    if recent:
        names.insert(len([f for f in names if f in _FLAG_ORDER]), "\\Recent")
    return names


class SessionView(FolderView):
    """
    A L{FolderView} that also tells its session a change arrived (so an
    IDLE session pushes it at once).
    """

    def __init__(self, folder, notify):
        self._notify = notify
        FolderView.__init__(self, folder)

    def messagesAdded(self, folder, uids) -> None:
        FolderView.messagesAdded(self, folder, uids)
        self._notify()

    def flagsChanged(self, folder, uids) -> None:
        FolderView.flagsChanged(self, folder, uids)
        self._notify()

    def messagesExpunged(self, folder, uids) -> None:
        FolderView.messagesExpunged(self, folder, uids)
        self._notify()

    def folderReset(self, folder) -> None:
        FolderView.folderReset(self, folder)
        self._notify()


def _toProgram(key: SearchKey):
    """
    The parser's search tree as L{twisted_maillab.imap.search} evaluates it.
    """
    name = key.key
    if name == "AND":
        return S.And(tuple(_toProgram(k) for k in key.args))
    if name == "OR":
        return S.Or(_toProgram(key.args[0]), _toProgram(key.args[1]))
    if name == "NOT":
        return S.Not(_toProgram(key.args[0]))
    if name in ("UID", "SEQUENCE"):
        return S.Key(name, (key.args[0].format().decode("ascii"),))
    return S.Key(name, tuple(key.args))


def _keyNames(key: SearchKey, out: set) -> set:
    out.add(key.key)
    for arg in key.args:
        if isinstance(arg, SearchKey):
            _keyNames(arg, out)
    return out


class SelectedCommands:
    """
    SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE, STORE, COPY, MOVE, SEARCH
    and SORT, and the untagged updates of the selected folder.
    """

    def __init__(self):
        self.view: SessionView | None = None
        self.readOnly = True
        self.recent: set[int] = set()
        self.announcedKeywords: set[str] = set()

    # -- the selected folder -------------------------------------------

    def closeMailbox(self) -> None:
        view, self.view = self.view, None
        self.recent = set()
        if view is not None:
            view.close()
        if self.state == "selected":
            self.state = "authenticated"

    def expungesAllowed(self, command) -> bool:
        return not (command.name in _NO_EXPUNGE and not command.uid)

    def keywordUpdate(self) -> bytes:
        """
        RFC 3501 7.2.6: a FETCH may show a keyword only after an untagged
        FLAGS listing it.  When keywords appeared since the client was last
        told (a STORE, another session, another program), the new FLAGS
        and PERMANENTFLAGS; else nothing.
        """
        view = self.view
        if view is None:
            return b""
        keywords = view.folder.keywordNames()
        if self.announcedKeywords.issuperset(keywords):
            return b""
        self.announcedKeywords = set(keywords)
        return self._flagLines(keywords)

    def _flagLines(self, keywords) -> bytes:
        flags = list(SYSTEM_FLAGS) + list(keywords)
        out = R.flagsResponse(flags)
        if self.readOnly:
            return out + R.untaggedStatus(b"OK", b"No permanent flags permitted", b"PERMANENTFLAGS ()")
        return out + R.untaggedStatus(b"OK", b"Flags permitted", R.codePermanentFlags(flags))

    def flagsOf(self, uid: int) -> list:
        return sessionFlags(self.view.folder.flags(uid), uid in self.recent)

    def sendUpdates(self, expunges: bool = True) -> None:
        """
        Report the folder's queued changes (RFC 3501 7: EXPUNGE, EXISTS,
        RECENT, FETCH FLAGS).
        """
        out = self.pendingUpdates(expunges)
        if out:
            self.write(out)

    def pendingUpdates(self, expunges: bool = True) -> bytes:
        """
        The untagged responses of L{sendUpdates}, for the caller to send
        with its own (one C{send} rather than two).  A mailbox deleted
        under the session is the exception: its BYE is sent here, and
        the session closed.
        """
        view = self.view
        if view is None or not view.pending:
            return b""
        changes = view.takeChanges(expunges=expunges)
        if changes.reset:
            # RFC 3501 7.1.5: the mailbox was deleted or renamed under the
            # session (or its UIDVALIDITY changed): it cannot go on.
            self.write(R.untaggedStatus(b"BYE", b"The selected mailbox was deleted or renamed"))
            self.closeMailbox()
            self.engine.close()
            return b""
        out = []
        for seq in changes.expunged:
            out.append(R.expunge(seq))
        if changes.expunged:
            self.recent = {uid for uid in self.recent if uid in view}
        if changes.exists is not None:
            folder = view.folder
            # the recent ones among those the session numbers (the recent
            # messages are few, the numbered ones may be many)
            new = {uid for uid in folder.recentUids() if uid in view and not view.gone(uid)}
            if not self.readOnly:
                # RFC 3501 2.3.2: this session is the one that sees them as
                # recent, claimed at once so no other session does (EXAMINE,
                # like STATUS, claims nothing)
                new = folder.takeRecent(new, origin=view)
            self.recent.update(new)
            out.append(R.exists(changes.exists))
            out.append(R.recent(len(self.recent)))
        if changes.flagsChanged:
            out.append(self.keywordUpdate())
        for uid in changes.flagsChanged:
            try:
                seq = view.seqOf(uid)
                flags = self.flagsOf(uid)
            except MessageVanished:
                continue
            out.append(R.fetchResponse(seq, [(b"FLAGS", R.flags(flags))]))
        return b"".join(out)

    def messages(self, command, sequenceSet) -> list | None:
        """
        The C{(seq, uid)} pairs a command names, in sequence order, or
        L{None} after answering BAD for sequence numbers beyond the
        mailbox (RFC 9051 6.4.4: a client error).
        """
        uids = self.view.uids
        if command.uid:
            selected = sequenceSet.select(uids)
            first = 0
            out = []
            for uid in selected:
                first = bisect.bisect_left(uids, uid, first)
                out.append((first + 1, uid))
            return out
        count = len(uids)
        if sequenceSet.highest(count) > count and not (count == 0 and sequenceSet.usesStar()):
            self.bad(command, b"Invalid message sequence number")
            return None
        out = []
        for lo, hi in sequenceSet.resolve(count):
            for seq in range(max(lo, 1), min(hi, count) + 1):
                out.append((seq, uids[seq - 1]))
        return out

    # -- SELECT / EXAMINE --------------------------------------------------

    def do_SELECT(self, command):
        return defer.ensureDeferred(self._select(command, readOnly=False))

    def do_EXAMINE(self, command):
        return defer.ensureDeferred(self._select(command, readOnly=True))

    async def _select(self, command, readOnly: bool):
        # RFC 3501 6.3.1: a SELECT first deselects the current mailbox,
        # even when it fails.
        self.closeMailbox()
        name = command.args.mailbox
        try:
            folder = await self.avatar.mailboxes.open(name)
        except (MailboxNotFound, StoreError) as e:
            if isinstance(e, MailboxNotFound) or e.imapCode == "NONEXISTENT":
                return self.no(command, b"Mailbox does not exist", R.NONEXISTENT)
            raise
        if self.closed:
            folder.close()
            return
        try:
            # What another program changed since the folder was last seen
            # (inotify reports it too, but a little later).
            await folder.refresh()
        except Exception:
            folder.close()
            raise
        if self.closed:
            folder.close()
            return
        view = SessionView(folder, self.changesArrived)
        if readOnly:
            recent = set(folder.recentUids())
        else:
            recent = set(await folder.claimRecent(origin=view))
        if self.closed:
            view.close()
            return
        self.view = view
        self.readOnly = readOnly
        self.recent = recent & set(view.uids)
        self.state = "selected"
        keywords = folder.keywordNames()
        self.announcedKeywords = set(keywords)
        flags = list(SYSTEM_FLAGS) + keywords
        out = [R.flagsResponse(flags), R.exists(len(view)), R.recent(len(self.recent))]
        for seq, uid in enumerate(view.uids, 1):
            try:
                if "\\Seen" not in folder.flags(uid):
                    out.append(R.untaggedStatus(b"OK", b"First unseen", R.codeUnseen(seq)))
                    break
            except MessageVanished:
                continue
        out.append(R.untaggedStatus(b"OK", b"UIDs valid", R.codeUidValidity(folder.uidValidity)))
        out.append(R.untaggedStatus(b"OK", b"Predicted next UID", R.codeUidNext(folder.uidNext)))
        if readOnly:
            out.append(R.untaggedStatus(b"OK", b"No permanent flags permitted", b"PERMANENTFLAGS ()"))
        else:
            out.append(R.untaggedStatus(b"OK", b"Flags permitted", R.codePermanentFlags(flags)))
        self.write(b"".join(out))
        verb = b"EXAMINE" if readOnly else b"SELECT"
        self.ok(command, verb + b" completed", R.READ_ONLY if readOnly else R.READ_WRITE)

    # -- CLOSE / UNSELECT / EXPUNGE ----------------------------------------

    def do_CLOSE(self, command):
        # RFC 3501 6.4.2: expunge silently, unless read-only.
        view = self.view
        if self.readOnly:
            self.closeMailbox()
            self.write(R.tagged(command.tag, b"OK", b"CLOSE completed"))
            return None
        d = view.folder.expunge(None, origin=view)

        def done(_):
            self.closeMailbox()
            self.write(R.tagged(command.tag, b"OK", b"CLOSE completed"))

        return d.addCallback(done)

    def do_UNSELECT(self, command):
        # RFC 3691
        self.closeMailbox()
        self.write(R.tagged(command.tag, b"OK", b"UNSELECT completed"))

    def do_EXPUNGE(self, command):
        if self.readOnly:
            return self.no(command, b"Mailbox is read-only", R.READ_ONLY)
        view = self.view
        folder = view.folder
        if command.uid:
            # RFC 4315 2.1 UID EXPUNGE: only these, and only if \Deleted.
            pairs = self.messages(command, command.args.sequenceSet)
            uids = []
            for _, uid in pairs:
                try:
                    if "\\Deleted" in folder.flags(uid):
                        uids.append(uid)
                except MessageVanished:
                    continue
            if not uids:
                return self.ok(command)
        else:
            uids = [uid for uid in folder.uidsWithFlag("\\Deleted") if uid in view and not view.gone(uid)]
        d = folder.expunge(uids, origin=view)

        def done(expunged):
            view.expungedHere(expunged)
            if self.view is view:
                self.ok(command)

        return d.addCallback(done)

    # -- STORE ----------------------------------------------------------------

    def do_STORE(self, command):
        if self.readOnly:
            return self.no(command, b"Mailbox is read-only", R.READ_ONLY)
        args = command.args
        pairs = self.messages(command, args.sequenceSet)
        if pairs is None:
            return None
        view = self.view
        # \Recent cannot be stored (RFC 3501 2.3.2).
        flags = [f for f in args.flags if f.lower() != "\\recent"]
        mode = {"+": "add", "-": "remove", "": "replace"}[args.mode]
        uids = [uid for _, uid in pairs if not view.gone(uid)]
        gone = len(uids) < len(pairs)
        if not uids:
            return self._storeDone(command, gone)
        d = view.folder.setFlags(uids, flags, mode, origin=view)

        def stored(result):
            if self.view is not view:
                return
            out = [self.keywordUpdate()]
            for seq, uid in pairs:
                if uid not in result:
                    continue  # expunged meanwhile
                if args.silent:
                    continue
                items = [(b"FLAGS", R.flags(sessionFlags(result[uid], uid in self.recent)))]
                if command.uid:
                    items.append((b"UID", b"%d" % uid))
                out.append(R.fetchResponse(seq, items))
            self._storeDone(command, gone or len(result) < len(uids), b"".join(out))

        return d.addCallback(stored)

    def _storeDone(self, command, gone: bool, head: bytes = b""):
        if gone and not command.uid:
            # RFC 5530 EXPUNGEISSUED: some messages were expunged by
            # someone else; the others were stored.
            return self.ok(command, b"Some messages were already expunged", R.EXPUNGEISSUED, head)
        self.ok(command, head=head)

    # -- COPY / MOVE ---------------------------------------------------------

    def do_COPY(self, command):
        return defer.ensureDeferred(self._copy(command, move=False))

    def do_MOVE(self, command):
        if self.readOnly:
            return self.no(command, b"Mailbox is read-only", R.READ_ONLY)
        return defer.ensureDeferred(self._copy(command, move=True))

    async def _copy(self, command, move: bool):
        args = command.args
        pairs = self.messages(command, args.sequenceSet)
        if pairs is None:
            return
        view = self.view
        uids = [uid for _, uid in pairs if not view.gone(uid)]
        try:
            target = await self.avatar.mailboxes.open(args.mailbox)
        except MailboxNotFound:
            # RFC 3501 6.4.7: the client may CREATE it and retry.
            return self.no(command, b"Mailbox does not exist", R.TRYCREATE)
        try:
            if not uids:
                return self.ok(command)
            if target is view.folder:
                mapping = await self._copyHere(view.folder, uids)
                if move:
                    # RFC 6851 3.3 allows a MOVE into the same mailbox: each
                    # message gets a new UID and the old one is expunged.
                    await view.folder.expunge([s for s, _ in mapping], origin=view)
            else:
                mapping = await view.folder.copyTo(uids, target, origin=view, move=move)
        except QuotaExceeded as e:
            return self.no(command, e.message.encode("utf-8"), R.OVERQUOTA)
        finally:
            target.close()
        if self.view is not view:
            return
        code = None
        if mapping:
            code = R.codeCopyUid(target.uidValidity, [s for s, _ in mapping], [t for _, t in mapping])
        if move:
            # RFC 6851 3.3: COPYUID goes in an untagged OK before the
            # EXPUNGEs.
            if code is not None:
                self.write(R.untaggedStatus(b"OK", b"Moved UIDs", code))
            view.expungedHere([s for s, _ in mapping])
            return self.ok(command, b"MOVE completed")
        self.ok(command, b"COPY completed", code)

    async def _copyHere(self, folder, uids):
        """
        COPY into the selected mailbox itself (the store's copyTo works
        between folders): append each message again.
        """
        mapping = []
        for uid in uids:
            try:
                f = await folder.openMessageDeferred(uid)
                flags = folder.flags(uid)
                date = folder.internalDate(uid)
            except MessageVanished:
                continue
            try:
                new = await folder.append(f, flags, date)
            finally:
                f.close()
            mapping.append((uid, new))
        return mapping

    # -- SEARCH / SORT ---------------------------------------------------------

    async def _messageData(self, program_names: set) -> S.Columns:
        """
        The L{S.Columns} of the view's messages, with dates and sizes only
        when the program needs them, read from the index here, on the
        reactor thread (the search then runs in the pool).
        """
        view = self.view
        folder = view.folder
        uids = list(view.uids)
        sizes = {}
        if program_names & {"LARGER", "SMALLER", "SIZE"}:
            sizes = await virtualSizes(folder, uids)
        # SORT DATE falls back to the INTERNALDATE where a message has no
        # usable Date: (RFC 5256 3), so it needs the dates too.
        needDates = bool(program_names & {"BEFORE", "ON", "SINCE", "ARRIVAL", "DATE"})
        if needDates:
            await folder.prefetch(uids)
        flagsList = folder.flagsOfMany(uids)
        dates = None
        if needDates:
            dates = []
            for uid, flags in zip(uids, flagsList):
                try:
                    dates.append(folder.internalDate(uid) if flags is not None else None)
                except MessageVanished:
                    dates.append(None)
        return S.Columns(uids, flagsList, dates, sizes, frozenset(self.recent))

    def do_SEARCH(self, command):
        return defer.ensureDeferred(self._search(command))

    async def _search(self, command):
        args = command.args
        view = self.view
        names = _keyNames(args.criteria, set())
        columns = await self._messageData(names)
        program = _toProgram(args.criteria)
        opener = self.factory.headers.opener(view.folder, names, _threadOpener(view.folder))
        lastUid = _lastUid(view)

        def work():
            searcher = S.Searcher(program, args.charset or "US-ASCII", lastUid, len(columns.uids))
            matched = searcher.select(columns, opener)
            if command.uid:
                return [columns.uids[i] for i in matched]
            return [i + 1 for i in matched]

        numbers = await self._runSearch(command, view, work)
        if numbers is None:
            return
        if args.returnOptions is not None:
            # RFC 4731 ESEARCH
            self.ok(command, head=R.esearchResponse(command.tag, numbers, args.returnOptions, uid=command.uid))
        else:
            self.ok(command, head=R.searchResponse(numbers))

    def do_SORT(self, command):
        return defer.ensureDeferred(self._sort(command))

    async def _sort(self, command):
        # RFC 5256
        args = command.args
        view = self.view
        words = []
        for reverse, key in args.criteria:
            if reverse:
                words.append("REVERSE")
            words.append(key)
        names = _keyNames(args.search, set()) | {key for _, key in args.criteria}
        columns = await self._messageData(names)
        program = _toProgram(args.search)
        opener = self.factory.headers.opener(view.folder, names, _threadOpener(view.folder))
        lastUid = _lastUid(view)

        def work():
            matched = S.search(program, columns, opener, args.charset or "US-ASCII", lastUid, len(columns.uids))
            return S.sort(words, matched, opener)

        ordered = await self._runSearch(command, view, work)
        if ordered is None:
            return
        self.write(R.searchResponse([m.uid if command.uid else m.seq for m in ordered], command=b"SORT"))
        self.ok(command)

    async def _runSearch(self, command, view, work):
        """
        Run a SEARCH or SORT program in the store's thread pool (it reads
        message files): its result, or L{None} once the error is answered
        or the session moved on.
        """
        try:
            result = await view.folder.store.run(work)
        except S.BadCharset:
            self.no(command, b"Unsupported charset", b"BADCHARSET (UTF-8 US-ASCII)")
            return None
        except ValueError as e:
            self.bad(command, str(e).encode("utf-8", "replace"))
            return None
        if self.view is not view:
            return None
        return result


def _lastUid(view) -> int:
    return view.uidAt(len(view)) if len(view) else 0


def _threadOpener(folder):
    """
    C{openMessage(uid) -> file} for code running in the store's thread
    pool: L{Folder.openMessageInThread}, telling the folder on the reactor
    thread when a file was found renamed or gone.
    """
    reactor = folder.store.reactor

    def openMessage(uid):
        try:
            f, relocated = folder.openMessageInThread(uid)
        except Exception:
            reactor.callFromThread(folder.filesMoved)
            raise
        if relocated:
            reactor.callFromThread(folder.filesMoved)
        return f

    return openMessage
