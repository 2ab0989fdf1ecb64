"""
Reading a folder's index on the reactor thread: UIDs, flags, \\Recent,
sizes, dates and POP3 UIDLs, with no I/O beyond a rare C{stat}.

A mixin of L{twisted_maillab.store.folder.Folder}, which holds the index
(C{messages}, C{header}, C{keywords}, C{_uids}, C{_newUids},
C{_claiming}, C{_flagsByInfo}) and changes it only in C{_apply}; what is
here only reads it (and memoises decoded flags).
"""

from __future__ import annotations

from twisted_maillab.store import dovecot
from twisted_maillab.store.errors import MessageVanished
from twisted_maillab.store.message import Message

__all__ = ["FolderIndex"]

# The most distinct info strings whose flags FolderIndex.flags() remembers.
_FLAGS_MEMO = 4096


class FolderIndex:
    """
    The read side of a L{twisted_maillab.store.folder.Folder}'s index.
    """


    @property
    def uidValidity(self) -> int:
        return self.header.uidValidity

    @property
    def uidNext(self) -> int:
        last = self.uids()[-1] if self.messages else 0
        return max(self.header.nextUid, last + 1)

    @property
    def guid(self) -> str:
        return self.header.guid

    def __len__(self) -> int:
        return len(self.messages)

    def uids(self) -> list[int]:
        """
        All UIDs, ascending (the IMAP sequence order).
        """
        if not self._uidsSorted:
            self._uids.sort()
            self._uidsSorted = True
        return self._uids

    def message(self, uid: int) -> Message:
        """
        @raise MessageVanished: no such UID (expunged).
        """
        try:
            return self.messages[uid]
        except KeyError:
            raise MessageVanished(f"UID {uid} does not exist in {self.name}") from None

    def flags(self, uid: int) -> frozenset[str]:
        """
        The message's flags: C{\\Seen}... and keyword names (no C{\\Recent}:
        that is per session, see L{claimRecent}).
        """
        info = self.message(uid).info
        # A folder's messages share a handful of info strings ("2,S",
        # "2,FS"...): SEARCH, EXPUNGE and STORE ask for the flags of every
        # message, so each distinct one is decoded once per keyword table.
        known = self._flagsByInfo.get(info)
        if known is not None:
            return known
        result = set()
        for letter in dovecot.infoLetters(info):
            if letter in dovecot.SYSTEM_FLAGS:
                result.add(dovecot.SYSTEM_FLAGS[letter])
            elif letter in dovecot.KEYWORD_LETTERS:
                result.add(self.keywords.nameOf(letter))
        result = frozenset(result)
        if len(self._flagsByInfo) >= _FLAGS_MEMO:
            self._flagsByInfo.clear()
        self._flagsByInfo[info] = result
        return result

    def flagsOfMany(self, uids) -> list:
        """
        L{flags} of each of C{uids}, L{None} for one that no longer
        exists: one call for a whole folder (SEARCH), not one per message.
        """
        messages = self.messages
        known = self._flagsByInfo
        out = []
        for uid in uids:
            message = messages.get(uid)
            if message is None:
                out.append(None)
                continue
            flags = known.get(message.info)
            out.append(self.flags(uid) if flags is None else flags)
        return out

    def uidsWithFlag(self, flag: str) -> list[int]:
        """
        The UIDs of the messages that have the system flag C{flag}
        (C{"\\Deleted"}: EXPUNGE), ascending.
        """
        letter = dovecot.FLAG_LETTERS[flag.lower()]
        has: dict = {}  # info string -> whether it holds the letter
        out = []
        for uid, message in self.messages.items():
            info = message.info
            found = has.get(info)
            if found is None:
                found = has[info] = letter in dovecot.infoLetters(info)
            if found:
                out.append(uid)
        out.sort()
        return out

    @property
    def _recentKey(self) -> tuple[str, str]:
        return (self.mailboxes.recentRoot, self.name)

    def recentUids(self) -> list[int]:
        """
        UIDs of the messages no session claimed yet: those in C{new/} and
        those that arrived in C{cur/} (see L{twisted_maillab.store.recent}).
        """
        self._claiming &= self._newUids
        others = self.store.recent.peek(self._recentKey, self.uidValidity)
        return sorted((self._newUids - self._claiming) | (others & self.messages.keys()))

    def unseenCount(self) -> int:
        return sum(1 for m in self.messages.values() if "S" not in m.letters)

    def keywordNames(self) -> list[str]:
        """
        Keywords defined in this folder (for IMAP FLAGS/PERMANENTFLAGS).
        """
        return [name for _, name in sorted(self.keywords.names.items())]

    def pop3Uidl(self, uid: int) -> str:
        """
        The POP3 UIDL: Dovecot's default C{pop3_uidl_format = %08Xu%08Xv}
        (UID then UIDVALIDITY in hex; Dovecot 2.3 expands it with lower-case
        digits, C{000000016b0b7eeb}, as its pop3 process answers on the same
        Maildir), so switching between Dovecot and maillab does not make
        POP3 clients download everything again.
        A uidlist C{P} extension (a UIDL migrated from another server, as
        Dovecot keeps it) takes precedence.
        """
        message = self.message(uid)
        for part in message.ext.split():
            if part.startswith("P") and len(part) > 1:
                return part[1:]
        return f"{uid:08x}{self.uidValidity:08x}"

    def size(self, uid: int) -> int:
        """
        The message size in octets as stored (a C{stat} if the name has no
        C{,S=}).
        """
        message = self.message(uid)
        if message.size is None:
            self._statMessage(message)
        return message.size

    def internalDate(self, uid: int) -> float:
        """
        The internal date (the file's mtime, as Dovecot uses it), POSIX time.
        """
        message = self.message(uid)
        if message.mtime is None:
            self._statMessage(message)
        return message.mtime

    def _statMessage(self, message: Message) -> None:
        self._reactorOnly()
        try:
            st, relocated = self._findAndStat(message)
        except MessageVanished:
            self._scheduleRefresh(forceNew=True, forceCur=True)
            raise
        if relocated:
            self._scheduleRefresh(forceNew=True, forceCur=True)
        self._setStat(message, st.st_size, st.st_mtime)

    def _setStat(self, message: Message, size: int, mtime: float) -> None:
        self._reactorOnly()
        if message._size is None:
            message.size = size
        message.mtime = mtime
