"""
One session's view of a shared folder.

A L{Folder} is shared by every session of the process; its index changes
the moment anyone (a delivery, another session, another program) changes
the disk.  A session cannot follow it that closely: IMAP message sequence
numbers change only when the server tells the client (RFC 3501 2.3.1.2:
an EXPUNGE response renumbers, EXISTS announces new messages), and must
not change at all while a FETCH, STORE or SEARCH runs (RFC 3501 7.4.1).
POP3 goes further: the maildrop is fixed for the whole session (RFC 1939
section 4).

So each session holds a L{FolderView}: its own list of UIDs in sequence
order, and the folder's changes queued until the session takes them with
L{FolderView.takeChanges} at a point where its protocol allows them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from zope.interface import implementer

from twisted_maillab.interfaces import IFolderListener
from twisted_maillab.store.errors import MessageVanished

__all__ = ["FolderView", "ViewChanges"]


@dataclass
class ViewChanges:
    """
    What a session must tell its client, in this order.

    @ivar expunged: sequence numbers of expunged messages, each relative
        to the view as it was after the previous one was removed (exactly
        what a run of IMAP C{EXPUNGE} responses says: highest first, so
        every number is still the one the client knows).
    @ivar exists: the new message count when messages were added, else
        L{None}.
    @ivar flagsChanged: UIDs still in the view whose flags changed.
    @ivar reset: the folder was deleted, renamed or got a new UIDVALIDITY:
        the session must reselect (IMAP closes it with C{BYE} or
        C{NO [CLOSED]}).
    """

    expunged: list = field(default_factory=list)
    exists: int | None = None
    flagsChanged: list = field(default_factory=list)
    reset: bool = False

    def __bool__(self) -> bool:
        return bool(self.expunged or self.exists is not None or self.flagsChanged or self.reset)


@implementer(IFolderListener)
class FolderView:
    """
    A session's sequence numbers over a shared folder, moved only by
    L{takeChanges}.  Reactor thread only, as the folder is.

    @param folder: an open L{Folder}; the view subscribes to it and gives
        it back (C{folder.close()}) on L{close}.
    """

    def __init__(self, folder):
        self.folder = folder
        self._uids: list[int] = sorted(folder.uids())
        self._known = set(self._uids)
        self._added: set[int] = set()
        self._expunged: set[int] = set()
        self._flagged: set[int] = set()
        self._reset = False
        folder.subscribe(self)

    # -- the session's numbering ------------------------------------------

    def __len__(self) -> int:
        return len(self._uids)

    def __contains__(self, uid: int) -> bool:
        """
        Whether the session numbers C{uid} (without copying L{uids}).
        """
        return uid in self._known

    @property
    def uids(self) -> list[int]:
        """
        The UIDs in sequence order (message 1 first).  A copy.
        """
        return list(self._uids)

    def uidAt(self, seq: int) -> int:
        """
        @param seq: a 1-based message sequence number.
        @raise IndexError: no such message in this view.
        """
        if not 1 <= seq <= len(self._uids):
            raise IndexError(f"no message {seq}")
        return self._uids[seq - 1]

    def seqOf(self, uid: int) -> int:
        """
        @raise MessageVanished: C{uid} is not in this view.
        """
        i = bisect.bisect_left(self._uids, uid)
        if i == len(self._uids) or self._uids[i] != uid:
            raise MessageVanished(f"UID {uid} is not in this session's view")
        return i + 1

    def gone(self, uid: int) -> bool:
        """
        Whether a message the session still numbers was expunged from the
        folder (its expunge waits for L{takeChanges}); reading it fails.
        """
        return uid in self._expunged or uid not in self.folder.messages

    @property
    def pending(self) -> bool:
        """
        Whether L{takeChanges} has something to report.
        """
        return bool(self._reset or self._expunged or self._flagged or self._newUids())

    # -- IFolderListener ----------------------------------------------------

    def messagesAdded(self, folder, uids) -> None:
        self._added.update(uids)

    def flagsChanged(self, folder, uids) -> None:
        self._flagged.update(uids)

    def messagesExpunged(self, folder, uids) -> None:
        self._expunged.update(uids)

    def folderReset(self, folder) -> None:
        self._reset = True

    def expungedHere(self, uids) -> None:
        """
        The session expunged these itself (the folder does not tell the
        change's origin): queue them like anyone else's.
        """
        self._expunged.update(uids)

    # -- applying -----------------------------------------------------------

    def _newUids(self) -> list[int]:
        messages = self.folder.messages
        return sorted(uid for uid in self._added if uid not in self._known and uid in messages)

    def takeChanges(self, expunges: bool = True) -> ViewChanges:
        """
        Apply what the folder reported since the last call and say what
        the client must be told.

        @param expunges: L{False} while a command runs that must not see
            expunges (RFC 3501 7.4.1: FETCH, STORE, SEARCH by sequence
            number): they stay queued and the gone messages keep their
            numbers.
        """
        changes = ViewChanges(reset=self._reset)
        if expunges and self._expunged:
            gone = self._expunged & self._known
            for uid in sorted(gone, reverse=True):
                seq = self.seqOf(uid)
                del self._uids[seq - 1]
                changes.expunged.append(seq)
            self._known -= gone
            self._flagged -= gone
            self._added -= self._expunged
            self._expunged.clear()
        new = self._newUids()
        if new:
            for uid in new:
                bisect.insort(self._uids, uid)
            self._known.update(new)
            changes.exists = len(self._uids)
        self._added.clear()
        # flag changes of new messages need no report: the client fetches them
        changes.flagsChanged = sorted(uid for uid in self._flagged if uid in self._known and uid not in new)
        self._flagged.clear()
        return changes

    def close(self) -> None:
        """
        Stop listening and give the folder back.
        """
        folder, self.folder = self.folder, None
        if folder is not None:
            folder.unsubscribe(self)
            folder.close()
