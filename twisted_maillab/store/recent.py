"""
\\Recent for messages that never pass through C{new/}.

RFC 3501 2.3.2: a message is recent for the first session that sees it in
its mailbox, and for no other.  The store's rule is "the file is in
C{new/}": delivery writes there and the session that claims a message
moves it to C{cur/} (L{Folder.claimRecent}), as Dovecot does.  But an
IMAP APPEND with flags, a COPY or a MOVE writes straight into C{cur/}
(the flags live in the file name, which only C{cur/} may carry), and a
STORE on an unclaimed message moves it there too; those messages still
have to be recent once.  L{RecentSet} remembers them: one set of UIDs per
folder, on the reactor thread (so exactly one session takes each
message), for the life of the process.

What it does not cover, by design:

  - a restart of maillab forgets the set: messages written to C{cur/} and
    not yet seen by a session lose \\Recent (those in C{new/} keep it, the
    file system being the record); nothing else is lost;
  - Dovecot on the same Maildir keeps its own \\Recent in its index
    (C{dovecot.index}, the first-recent-UID); it does not read this set,
    and maillab does not read its index.  A message both servers see for
    the first time may be recent in one session of each.  New mail in
    C{new/} is claimed by whichever server's session moves it first.
"""

from __future__ import annotations

__all__ = ["RecentSet"]


class RecentSet:
    """
    The unclaimed recent messages outside C{new/}, per folder, keyed by
    C{(maildir, folder name)} and tagged with the folder's UIDVALIDITY (a
    new UIDVALIDITY makes old UIDs meaningless).  Reactor thread only.
    """

    def __init__(self):
        self._folders: dict[tuple[str, str], tuple[int, set[int]]] = {}

    def _get(self, key, uidValidity: int) -> set[int]:
        entry = self._folders.get(key)
        if entry is None or entry[0] != uidValidity:
            self._folders.pop(key, None)
            return set()
        return entry[1]

    def add(self, key, uidValidity: int, uids) -> None:
        """
        Messages that arrived in C{cur/} unseen by any session.
        """
        uids = set(uids)
        if not uids:
            return
        current = self._get(key, uidValidity)
        self._folders[key] = (uidValidity, current | uids)

    def peek(self, key, uidValidity: int) -> frozenset[int]:
        """
        The unclaimed UIDs, left unclaimed (EXAMINE, STATUS).
        """
        return frozenset(self._get(key, uidValidity))

    def take(self, key, uidValidity: int, within=None) -> set[int]:
        """
        Claim: the unclaimed UIDs (those in C{within} if given), which
        nobody else will get.
        """
        current = self._get(key, uidValidity)
        taken = set(current) if within is None else current & set(within)
        if taken:
            rest = current - taken
            if rest:
                self._folders[key] = (uidValidity, rest)
            else:
                del self._folders[key]
        return taken

    def discard(self, key, uids) -> None:
        """
        Messages expunged.
        """
        entry = self._folders.get(key)
        if entry is not None:
            entry[1].difference_update(uids)
            if not entry[1]:
                del self._folders[key]

    def forget(self, key) -> None:
        """
        The folder was deleted.
        """
        self._folders.pop(key, None)

    def rename(self, maildir: str, old: str, new: str, separator: str) -> None:
        """
        The folder C{old} and its children are now C{new}: their messages
        keep their UIDs and so their \\Recent.
        """
        for key in list(self._folders):
            path, name = key
            if path == maildir and (name == old or name.startswith(old + separator)):
                self._folders[(path, new + name[len(old) :])] = self._folders.pop(key)
