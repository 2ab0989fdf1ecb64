"""
The records a folder's index is made of, and the result of thread-side
work (L{SyncResult}) that the reactor thread applies to it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from twisted_maillab.store import dovecot

__all__ = ["Message", "SyncResult"]


class Message:
    """
    One message of the index (read-only for callers).

    @ivar uid: the IMAP UID (from C{dovecot-uidlist}).
    @ivar base: the base file name (without C{:2,...}).
    @ivar info: the info part after C{:} (C{"2,RS"}) or L{None}.
    @ivar isNew: L{True} while the file is in C{new/} (\\Recent).
    @ivar size: octets on disk (from C{,S=} or a C{stat}), or L{None} until known.
    @ivar vsize: octets with CRLF line ends (C{,W=}), or L{None}.
    @ivar mtime: the internal date (file mtime), or L{None} until known.
    @ivar ext: uidlist extension fields of the record, kept verbatim.
    """

    # 7 slots and shared (interned) info strings: about 250 bytes per
    # message with the two index dicts, for 100,000-message folders.
    __slots__ = ("uid", "base", "info", "isNew", "_size", "mtime", "ext")

    def __init__(self, uid, base, info, isNew, ext=""):
        self.uid = uid
        self.base = base
        self.info = info
        self.isNew = isNew
        self._size = None
        self.mtime = None
        self.ext = ext

    @property
    def size(self):
        if self._size is None:
            # parsed on demand: opening a folder must not pay for it
            size, _ = dovecot.sizeFromName(self.base)
            if size is not None:
                self._size = size
        return self._size

    @size.setter
    def size(self, value):
        self._size = value

    @property
    def vsize(self):
        return dovecot.sizeFromName(self.base)[1]

    @property
    def filename(self) -> str:
        return self.base if self.info is None else f"{self.base}:{self.info}"

    @property
    def subdir(self) -> str:
        return "new" if self.isNew else "cur"

    @property
    def letters(self) -> str:
        return dovecot.infoLetters(self.info)

    def __repr__(self):
        return f"<Message uid={self.uid} {self.subdir}/{self.filename}>"


@dataclass
class SyncResult:
    """
    Changes computed in a thread, applied on the reactor thread.
    """

    added: list = field(default_factory=list)  # Message
    updated: list = field(default_factory=list)  # (uid, info, isNew)
    removed: list = field(default_factory=list)  # uid
    pending: dict | None = None  # replaces Folder._pending when not None
    stats: list = field(default_factory=list)  # (Message, size, mtime) read by a stat
    pendingAdd: dict = field(default_factory=dict)
    header: dovecot.UidlistHeader | None = None
    uidlistState: dovecot.UidlistState | None = None
    keywords: dovecot.Keywords | None = None
    keywordsStamp: tuple | None = None
    stamps: tuple | None = None
    reset: bool = False
    result: object = None


# The name the folder modules use.
_Sync = SyncResult


def _intern(info: str) -> str:
    # the few distinct info strings ("2,S", "2,RS"...) are shared by all
    # messages instead of one string object each
    return sys.intern(info) if len(info) < 12 else info


def _merge(sync: SyncResult, fresh: SyncResult) -> None:
    """
    Fold a resync done in the middle of an operation into its result: the
    resync's view comes first, the operation's own changes after it win.
    """
    sync.added = fresh.added + sync.added
    sync.updated = fresh.updated + sync.updated
    sync.removed = fresh.removed + sync.removed
    if fresh.pending is not None:
        sync.pending = fresh.pending
    for name in ("header", "uidlistState", "stamps"):
        value = getattr(fresh, name)
        if value is not None:
            setattr(sync, name, value)
    if fresh.keywords is not None and sync.keywords is None:
        sync.keywords = fresh.keywords
        sync.keywordsStamp = fresh.keywordsStamp
    sync.reset = sync.reset or fresh.reset


def _bareLFs(previous: bytes, chunk: bytes) -> int:
    """
    How many LF in C{chunk} are not preceded by CR (each becomes CRLF on the
    wire: Dovecot's "virtual size" C{,W=}).
    """
    count = chunk.count(b"\n") - chunk.count(b"\r\n")
    if chunk.startswith(b"\n") and previous == b"\r":
        count -= 1
    return count
