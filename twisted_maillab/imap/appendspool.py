"""
APPEND literals written to a temporary file as they arrive instead of
being collected in memory by the command assembler.

The parser's L{CommandAssembler} keeps every literal of a command in
memory; for APPEND that is up to C{append_limit} octets (tens of MiB) per
session.  A big APPEND literal is therefore read by the server itself: the
line announcing it is given to the assembler with an empty literal in its
place (C{{N}} becomes C{{0}}, so the assembler still parses flags, date and
MULTIAPPEND), and the N octets go to a L{Spool}, written in the store's
thread pool while the connection's input is paused.  When the command is
parsed, each message's data is replaced by its spool, which the store's
C{Folder.append} reads in chunks.
"""

from __future__ import annotations

import re
import tempfile

from twisted.internet import defer

__all__ = ["SPOOL_MIN", "Spool", "announcedLiteral", "isAppend", "withoutLiteral"]

# Literals from this size on are spooled (smaller ones stay in memory).
SPOOL_MIN = 64 * 1024
# Octets collected before a write to the file is started.
_WRITE_SIZE = 256 * 1024

_LITERAL = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\Z")
_APPEND = re.compile(rb"[^ ]+ APPEND ", re.IGNORECASE)


def isAppend(line: bytes) -> bool:
    """
    Whether a command's first line is an APPEND.
    """
    return _APPEND.match(line) is not None


def announcedLiteral(line: bytes):
    """
    C{(size, synchronising)} of the literal a line ends with, or L{None}.
    """
    m = _LITERAL.search(line)
    if m is None:
        return None
    return int(m.group(2)), not m.group(3)


def withoutLiteral(line: bytes) -> bytes:
    """
    The line with its literal announced as empty: C{{0}}, C{{0+}}, C{~{0}}.
    """
    return _LITERAL.sub(lambda m: m.group(1) + b"{0" + m.group(3) + b"}", line)


class Spool:
    """
    One literal's octets in an anonymous temporary file.

    @param run: the store's C{run(f, *args) -> Deferred} (thread pool).
    @param engine: the connection's L{twisted_maillab.lines.CommandEngine}
        (its input is paused while a write runs).
    """

    def __init__(self, run, engine):
        self._run = run
        self._engine = engine
        self._buffer = bytearray()
        self._writing: defer.Deferred | None = None
        self._failure = None
        self.file = None
        self.size = 0

    def write(self, data: bytes) -> None:
        """
        The engine's sink: octets of the literal.
        """
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= _WRITE_SIZE and self._writing is None:
            self._flush()

    def _flush(self) -> defer.Deferred:
        data = bytes(self._buffer)
        self._buffer.clear()
        self._engine.pauseInput()
        d = self._writing = self._run(self._writeWork, data)

        def done(result):
            self._writing = None
            self._engine.resumeInput()
            return result

        def failed(failure):
            self._failure = failure

        return d.addErrback(failed).addBoth(done)

    def _writeWork(self, data: bytes) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="maillab-append-")
        self.file.write(data)

    async def finish(self):
        """
        Everything written: the file, positioned at its start.

        @raise OSError: it could not be written (a full /tmp).
        """
        if self._writing is not None:
            await self._writing
        if self._buffer or self.file is None:
            await self._flush()
        if self._failure is not None:
            self.close()
            self._failure.raiseException()
        await self._run(self.file.seek, 0)
        return self.file

    def close(self) -> None:
        f, self.file = self.file, None
        if f is not None:
            f.close()
