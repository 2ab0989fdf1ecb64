"""
Reading messages out of the store without blocking the reactor thread:
a chunked reader over the store's thread pool, and the virtual size
(octets with CRLF line ends, what POP3 RETR and IMAP RFC822.SIZE count).

Both protocols stream a message as the client reads it, so a 20 MB
message never sits in memory, and both count sizes the way Dovecot does
(its C{,W=} "virtual size"), so the numbers agree across servers.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from twisted_maillab.interfaces import IMessageReader
from twisted_maillab.store.errors import MessageVanished

__all__ = ["ThreadedReader", "crlfSize", "virtualSizes"]

# Counting CRLF sizes of files without ,W=: chunk read in the thread, and
# how many files are open at once while counting.
_COUNT_CHUNK = 256 * 1024
_COUNT_BATCH = 64


def crlfSize(f) -> int:
    """
    Thread: the size of an open binary file with every bare LF counted as
    CRLF (Dovecot's virtual size), and an unterminated last line counted
    with the CRLF a protocol adds to it (RFC 1939 3, RFC 3501 2.1).
    """
    size = 0
    previous = b""
    while True:
        chunk = f.read(_COUNT_CHUNK)
        if not chunk:
            break
        bare = chunk.count(b"\n") - chunk.count(b"\r\n")
        if chunk.startswith(b"\n") and previous.endswith(b"\r"):
            bare -= 1
        size += len(chunk) + bare
        previous = chunk[-1:]
    if previous and previous != b"\n":
        size += 2
    return size


def _countAll(files) -> list[int]:
    try:
        return [crlfSize(f) for f in files]
    finally:
        for f in files:
            f.close()


@defer.inlineCallbacks
def virtualSizes(folder, uids):
    """
    The virtual size of each message: from C{,W=} in its name, else
    counted in the store's thread pool, a batch of files at a time.
    Messages that vanished meanwhile are left out.

    @param folder: an open L{twisted_maillab.store.folder.Folder}.
    @return: Deferred firing with C{{uid: size}}.
    """
    sizes: dict[int, int] = {}
    missing = []
    for uid in uids:
        try:
            message = folder.message(uid)
        except MessageVanished:
            continue
        if message.vsize is not None:
            sizes[uid] = message.vsize
        else:
            missing.append(uid)
    for start in range(0, len(missing), _COUNT_BATCH):
        batch = []
        files = []
        for uid in missing[start : start + _COUNT_BATCH]:
            try:
                files.append(folder.openMessage(uid))
            except MessageVanished:
                continue
            batch.append(uid)
        counted = yield folder.store.run(_countAll, files)
        sizes.update(zip(batch, counted))
    return sizes


@implementer(IMessageReader)
class ThreadedReader:
    """
    An open message file read through the store's thread pool.

    @param f: a binary file object (from L{Folder.openMessage}).
    @param run: C{run(f, *args) -> Deferred} (the store's pool).
    """

    def __init__(self, f, run):
        self._file = f
        self._run = run
        self._pending = None
        self._closeWhenDone = False
        self._eof = False

    def read(self, size):
        if self._file is None:
            return defer.fail(ValueError("read from a closed message"))
        if self._eof:
            # A regular file's buffered read returns less than asked only
            # at its end: no thread round trip just to learn that.
            return defer.succeed(b"")
        d = self._pending = self._run(self._file.read, size)

        def done(result):
            self._pending = None
            if isinstance(result, bytes) and len(result) < size:
                self._eof = True
            if self._closeWhenDone:
                self._close()
            return result

        return d.addBoth(done)

    def close(self):
        # Never close the file under a read running in a thread.
        if self._pending is not None:
            self._closeWhenDone = True
            return
        self._close()

    def _close(self):
        f, self._file = self._file, None
        if f is not None:
            f.close()
