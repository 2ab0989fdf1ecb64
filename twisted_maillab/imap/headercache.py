"""
The IMAP server's cache of parsed message headers, for SEARCH and SORT
programs that look at headers only (see L{HeaderCache}).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from twisted_maillab.imap import mimeheader
from twisted_maillab.imap import messagetext

__all__ = ["CachedOpener", "HeaderCache"]


# The search keys that read more than the header block (RFC 3501 6.4.4).
_BODY_KEYS = frozenset({"BODY", "TEXT"})


class _HeaderFile:
    """
    A message reduced to its header block: its parsed fields (see
    L{messagetext.headerFields}) and the decoded texts searches made of them (see
    L{messagetext.headerTexts}), shared with the cache entry.
    """

    __slots__ = ("headerFields", "headerTexts")

    def __init__(self, fields, texts):
        self.headerFields = fields
        self.headerTexts = texts

    def close(self) -> None:
        pass


class HeaderCache:
    """
    Parsed header fields of messages by (Maildir, folder, UIDVALIDITY,
    UID), for SEARCH and SORT programs that only look at headers: a
    repeated search neither reads a file (no system calls in the pool
    thread, each of which hands the GIL back and forth with the reactor
    thread) nor parses a header.  A Maildir file never changes under its
    UID, so entries need no invalidation.  The oldest entries are
    dropped first, bounded by the header octets they came from (a hit
    does not reorder them: a SEARCH over a big folder looks every
    message up, and with no bookkeeping per hit it is one dictionary
    lookup each, without the lock).  Used from the store's pool threads:
    changes are guarded by a lock.  An entry also keeps the decoded,
    case-folded text of the fields searches looked at, so the memory used
    is at most about twice C{limit}; the same strings are also indexed
    by field, folder and UID (L{CachedOpener.textColumn}).
    """

    def __init__(self, limit: int = 32 * 1024 * 1024):
        self.limit = limit
        self.size = 0
        self._entries: OrderedDict = OrderedDict()  # (prefix + (uid,)) -> entry, oldest first
        self._byFolder: dict = {}  # prefix -> {uid: entry}, the same entries
        # prefix -> {(field name, addresses): {uid: text}}, see CachedOpener
        self._columns: dict = {}
        self._lock = threading.Lock()

    def opener(self, folder, names: set, openFile):
        """
        C{openMessage(uid) -> file} for the pool: C{openFile} itself when
        the program reads bodies, else a L{CachedOpener} handing out files
        carrying just the cached header fields.
        """
        if names & _BODY_KEYS:
            return openFile
        return CachedOpener(self, (folder.mailboxes.path, folder.name, folder.uidValidity), openFile)

    def _column(self, prefix, key) -> dict:
        columns = self._columns.get(prefix)
        column = None if columns is None else columns.get(key)
        if column is None:
            with self._lock:
                column = self._columns.setdefault(prefix, {}).setdefault(key, {})
        return column

    def _put(self, prefix, uid, entry) -> None:
        key = prefix + (uid,)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= old[0]
            self._entries[key] = entry
            self._byFolder.setdefault(prefix, {})[uid] = entry
            self.size += entry[0]
            while self.size > self.limit and self._entries:
                dropKey, dropped = self._entries.popitem(last=False)
                self.size -= dropped[0]
                dropPrefix, dropUid = dropKey[:-1], dropKey[-1]
                entries = self._byFolder[dropPrefix]
                del entries[dropUid]
                columns = self._columns.get(dropPrefix, {})
                for column in columns.values():
                    column.pop(dropUid, None)
                if not entries:
                    del self._byFolder[dropPrefix]
                    columns.clear()


class CachedOpener:
    """
    C{openMessage(uid) -> file} over a L{HeaderCache} for one folder,
    which also offers the search (L{twisted_maillab.imap.search.Searcher}) the decoded texts of a
    field for the whole folder at once, as a dictionary by UID: a SUBJECT
    or FROM search repeated over thousands of messages is then one
    dictionary lookup and one substring test per message.
    """

    __slots__ = ("_cache", "_prefix", "_openFile")

    def __init__(self, cache: HeaderCache, prefix: tuple, openFile):
        self._cache = cache
        self._prefix = prefix
        self._openFile = openFile

    def __call__(self, uid: int) -> _HeaderFile:
        cache, prefix = self._cache, self._prefix
        entries = cache._byFolder.get(prefix)
        entry = None if entries is None else entries.get(uid)
        if entry is None:
            f = self._openFile(uid)
            try:
                header = messagetext.readHeader(f)
            finally:
                f.close()
            # the decoded texts a search adds to the entry's dict are
            # at most about the header's size again (see the limit)
            entry = (len(header), _HeaderFile(mimeheader.parseFields(header), {}))
            cache._put(prefix, uid, entry)
        return entry[1]

    def textColumn(self, key: tuple) -> dict:
        """
        C{{uid: text}} for C{key} (see L{messagetext.headerTexts}): the texts
        searches already decoded, of messages still in the cache.
        """
        return self._cache._column(self._prefix, key)

    def rememberText(self, uid: int, key: tuple, text: str) -> None:
        """
        Add a message's decoded text to its column, if the message is
        still cached (an entry dropped meanwhile takes its texts along).
        """
        entries = self._cache._byFolder.get(self._prefix)
        if entries is not None and uid in entries:
            self.textColumn(key)[uid] = text
