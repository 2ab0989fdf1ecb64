"""
A stored message on its way to a POP3 client (RFC 1939 3): the multi-line
encoding (L{MessageEncoder}: CRLF line ends, dot-stuffing, TOP's line
count) and the push producer that streams it (L{_MessageStreamer}) without
ever holding the whole message.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["MessageEncoder", "CHUNK_SIZE"]

CRLF = b"\r\n"

# Reading the message: the chunk handed to the store's reader, and the
# longest stretch without a newline we keep before sending it on.
CHUNK_SIZE = 64 * 1024
_MAX_CARRY = 64 * 1024


class MessageEncoder:
    """
    Turn stored message bytes, fed in arbitrary chunks, into the POP3
    multi-line body: CRLF line endings whatever the stored ending (LF in
    most Maildirs, CRLF in some) and a dot stuffed before every line that
    starts with one, the first line included (RFC 1939 3).

    With C{bodyLines} set (TOP), only the header, the blank line and that
    many body lines are produced (RFC 1939 7 TOP).

    @ivar done: C{True} once TOP has produced all it should.
    """

    def __init__(self, bodyLines: int | None = None):
        self.bodyLines = bodyLines
        self.done = False
        self._carry = b""
        self._atLineStart = True
        self._inBody = False
        self._linesLeft = bodyLines

    def feed(self, data: bytes) -> bytes:
        """
        @return: the encoded bytes ready to send (possibly empty).
        """
        if self.done:
            return b""
        data = self._carry + data
        self._carry = b""
        if self.bodyLines is not None:
            return self._feedLines(data)
        last = data.rfind(b"\n")
        if last < 0:
            return self._partial(data)
        region, rest = data[: last + 1], data[last + 1 :]
        # C speed for the bulk: normalise to LF, then to CRLF (a lone CR
        # elsewhere is kept as it is), then stuff dots after every newline.
        region = region.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        region = region.replace(b"\n.", b"\n..")
        if self._atLineStart and region.startswith(b"."):
            region = b"." + region
        self._atLineStart = True
        return region + self._partial(rest)

    def _partial(self, rest: bytes) -> bytes:
        """
        Keep an unterminated tail for the next chunk, unless it is so long
        that keeping it would let one line without newlines fill memory.
        """
        if len(rest) <= _MAX_CARRY:
            self._carry = rest
            return b""
        # Keep a trailing CR: it may be the first half of a CRLF.
        keep = b"\r" if rest.endswith(b"\r") else b""
        if keep:
            rest = rest[:-1]
        self._carry = keep
        if self._atLineStart and rest.startswith(b"."):
            rest = b"." + rest
        self._atLineStart = False
        return rest

    def _feedLines(self, data: bytes) -> bytes:
        out = []
        position = 0
        while not self.done:
            newline = data.find(b"\n", position)
            if newline < 0:
                break
            line = data[position:newline]
            position = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            self._emitLine(line, out)
        if not self.done:
            # A partial line sent on early (longer than the carry limit)
            # is counted as one line when its newline arrives.
            out.append(self._partial(data[position:]))
        return b"".join(out)

    def _emitLine(self, line: bytes, out: list) -> None:
        if self._inBody:
            if self._linesLeft <= 0:
                self.done = True
                return
            self._linesLeft -= 1
        elif self._atLineStart and line == b"":
            # RFC 1939 7 TOP: the headers, the blank line separating them
            # from the body, then n lines of the body.
            self._inBody = True
        if self._atLineStart and line.startswith(b"."):
            out.append(b".")
        out.append(line)
        out.append(CRLF)
        self._atLineStart = True
        if self._inBody and self._linesLeft <= 0:
            self.done = True

    def finish(self) -> bytes:
        """
        The end of the stored message: the last line, terminated with CRLF
        even if the file did not end with a newline.
        """
        if self.done:
            return b""
        tail = self._carry
        self._carry = b""
        self.done = True
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        if not tail:
            return b"" if self._atLineStart else CRLF
        if self.bodyLines is not None and self._inBody and self._linesLeft <= 0:
            return b"" if self._atLineStart else CRLF
        if self._atLineStart and tail.startswith(b"."):
            tail = b"." + tail
        return tail + CRLF


@implementer(IPushProducer)
class _MessageStreamer:
    """
    Send one message to the transport as a push producer: a chunk is read
    from the store only while the transport wants more, so a slow client
    holds at most the transport's buffer and one chunk, never the message.

    @ivar done: L{Deferred} firing when the terminating dot was written,
        failing if the message could not be read to the end.
    """

    def __init__(self, transport, reader, encoder: MessageEncoder, onProgress, chunkSize=CHUNK_SIZE, prefix=b""):
        self.transport = transport
        # The "+OK" line goes out with the first chunk: one write instead
        # of a tiny segment first, and a read error before it can still be
        # answered with -ERR.
        self.prefix = prefix
        self.started = not prefix
        self.reader = reader
        self.encoder = encoder
        self.onProgress = onProgress
        self.chunkSize = chunkSize
        self.done = defer.Deferred()
        self._paused = False
        self._reading = False
        self._pumping = False
        self._finished = False

    def start(self):
        self.transport.registerProducer(self, True)
        self._pump()
        return self.done

    def _pump(self):
        # A reader whose Deferreds fire at once would recurse once per
        # chunk; loop instead.
        if self._pumping:
            return
        self._pumping = True
        try:
            while not (self._paused or self._reading or self._finished):
                self._reading = True
                # maybeDeferred: a reader raising at once is a failure too,
                # so the producer is always unregistered.
                defer.maybeDeferred(self.reader.read, self.chunkSize).addCallbacks(
                    self._gotChunk, self._failed
                )
        finally:
            self._pumping = False

    def _gotChunk(self, data: bytes):
        self._reading = False
        if self._finished:
            return
        if not data:
            self._finish(self._first(self.encoder.finish() + b"." + CRLF))
            return
        out = self._first(self.encoder.feed(data))
        if self.encoder.done:
            self._finish(out + b"." + CRLF)
            return
        if out:
            self.transport.write(out)
            self.onProgress()
        self._pump()

    def _first(self, out: bytes) -> bytes:
        if not self.started:
            self.started = True
            out = self.prefix + out
        return out

    def _finish(self, tail: bytes):
        self._finished = True
        self.reader.close()
        self.transport.write(tail)
        self.transport.unregisterProducer()
        self.onProgress()
        self.done.callback(None)

    def _failed(self, failure):
        self._reading = False
        if self._finished:
            return
        self._finished = True
        self.reader.close()
        self.transport.unregisterProducer()
        self.done.errback(failure)

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._pump()

    def stopProducing(self):
        # The connection is gone.
        if not self._finished:
            self._finished = True
            self.reader.close()
            self.done.errback(Failure(ConnectionError("connection lost while sending a message")))
