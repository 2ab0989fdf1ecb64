"""
The SMTP client side of the outbound queue: L{RelayClient}, one session's
line protocol (replies, flow control), and the wire form of a spooled
message (L{stuff}).

Why not Twisted's C{ESMTPClient}: it has no DSN/SIZE parameters, and its
C{transformChunk} turns LF into CRLF without dot-stuffing the first line
or across chunks.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.protocol import Protocol

__all__ = ["RelayClient", "stuff", "TemporaryFailure", "PermanentFailure", "xtext"]

REPLY_LINE_LIMIT = 4096
REPLY_LINES_LIMIT = 100


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class RelayClient(Protocol):
    """
    One SMTP client session, driven by L{OutboundQueue._session}.
    """

    def __init__(self):
        self._buffer = b""
        self._lines = []
        self._waiting = None
        self._replies = []
        self._lost = None
        self._paused = None

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        pass

    def dataReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            self._lines.append(line.decode("utf-8", "replace"))
            if len(self._lines) > REPLY_LINES_LIMIT:
                self.transport.loseConnection()
                return
            if line[3:4] != b"-":
                code = int(line[:3]) if line[:3].isdigit() else 0
                reply = (code, self._lines)
                self._lines = []
                if self._waiting is not None:
                    waiting, self._waiting = self._waiting, None
                    waiting.callback(reply)
                else:
                    self._replies.append(reply)
                    if len(self._replies) > REPLY_LINES_LIMIT:
                        # Replies nobody asked for: not an SMTP server.
                        self.transport.loseConnection()
                        return
        if len(self._buffer) > REPLY_LINE_LIMIT:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self._lost = reason
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(TemporaryFailure("connection lost"))
        self.resumeProducing()

    def reply(self) -> defer.Deferred:
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(TemporaryFailure("connection lost"))
        self._waiting = defer.Deferred()
        return self._waiting

    def command(self, line: str) -> defer.Deferred:
        self.transport.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    async def writeData(self, data: bytes):
        self.transport.write(data)
        if self._paused is not None:
            await self._paused


def stuff(chunk: bytes, atLineStart: bool) -> tuple[bytes, bool]:
    """
    Stored LF text -> wire text: CRLF line ends and RFC 5321 4.5.2 dot
    stuffing, across chunk boundaries.
    """
    if atLineStart and chunk.startswith(b"."):
        chunk = b"." + chunk
    chunk = chunk.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
    return chunk, chunk.endswith(b"\n")

def xtext(value: str) -> str:
    # RFC 3461 4: "+", "=" and characters outside 33..126 as +HH.
    out = []
    for byte in value.encode("utf-8"):
        if byte < 33 or byte > 126 or byte in (ord("+"), ord("=")):
            out.append(f"+{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)
