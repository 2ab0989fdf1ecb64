"""
The text of one DATA command (RFC 5321 4.1.1.4), decoded as it arrives:
the end marker, dot-stuffing, line and size limits, and bare line ends.

Only CRLF . CRLF ends a message.  A bare LF or CR never does, and is never
stored as such either (Postfix 3.9's C{smtpd_forbid_bare_newline}): a
next hop that took one for a line end could find a second message inside
this one (SMTP smuggling).  Text leaves in the stored form (LF line ends)
in chunks of about L{WRITE_CHUNK} octets; nothing beyond one partial line
is buffered.
"""

from __future__ import annotations

from typing import Callable

from twisted_maillab.smtp.envelope import SMTPReply

__all__ = ["MessageText", "BARE_NEWLINE", "TEXT_LINE_LIMIT", "WRITE_CHUNK"]

# RFC 5321 4.5.3.1.6: 1000 octets for a text line including CRLF.
TEXT_LINE_LIMIT = 1000
# Body bytes handed to the store per write.
WRITE_CHUNK = 64 * 1024
# Postfix 3.9's reply under smtpd_forbid_bare_newline = reject, after
# which the connection is closed.
BARE_NEWLINE = SMTPReply(521, "5.5.2", "Error: bare <CR> or <LF> received")
LINE_TOO_LONG = SMTPReply(500, "5.5.2", "Error: message line longer than 1000 octets")
TOO_BIG = SMTPReply(552, "5.3.4", "Error: message file too big")


class MessageText:
    """
    One message's text on its way from the client to the store.

    @ivar received: octets of text read so far, as sent (CRLF counted as
        two, the end marker not counted): what C{message_size_limit} and
        the C{size=} log field measure.
    @ivar failure: the L{SMTPReply} to send after the final dot instead
        of accepting the message, or L{None}.  Once set, nothing more is
        written; the rest of the text is read and discarded.
    """

    def __init__(
        self,
        sizeLimit: int,
        bareNewline: str,
        write: Callable[[bytes], None],
        failed: Callable[[], None],
    ):
        """
        @param sizeLimit: C{message_size_limit} (0: none).
        @param bareNewline: C{smtpd_forbid_bare_newline}, C{"normal"} or
            C{"reject"}.
        @param write: called with each chunk of text in stored form.
        @param failed: called once, when the message first fails.
        """
        self.sizeLimit = sizeLimit
        self.bareNewline = bareNewline
        self.write = write
        self.failed = failed
        self.received = 0
        self.failure: SMTPReply | None = None
        self._partial = b""
        self._midLine = False
        self._out: list[bytes] = []
        self._outSize = 0

    def feed(self, data: bytes) -> bytes | None:
        """
        Consume text: split at CRLF only, remove dot-stuffing (RFC 5321
        4.5.2), check the limits, pass lines on.

        @return: L{None} while the text goes on; after the final dot, the
            octets that followed it (the client's next commands).
        """
        buf = self._partial + data if self._partial else data
        start = 0
        midLine = self._midLine
        while True:
            last = buf.rfind(b"\r\n", start)
            if last < 0:
                break
            if not midLine and buf.startswith(b".", start):
                # A line starting with a dot: the end marker or stuffing.
                end = buf.find(b"\r\n", start)
                if end == start + 1:
                    self._flush()
                    self._partial = b""
                    return buf[end + 2 :]
                self._lines([buf[start + 1 : end]])
                start = end + 2
                continue
            # Every complete line up to the next dot-line goes in one block.
            dot = buf.find(b"\r\n.", start, last)
            stop = last if dot < 0 else dot
            self._lines(buf[start:stop].split(b"\r\n"))
            midLine = False
            start = stop + 2
        tail = buf[start:]
        if len(tail) >= TEXT_LINE_LIMIT:
            # A bare LF or CR ends a line as stored (normal): pass on the
            # text up to the last one (not a final CR, which may start a
            # CRLF split across reads), so a client sending bare LFs is
            # not held to 1000 octets per CRLF.  The rest continues the
            # same SMTP line (no dot-line can start it: midLine).
            cut = max(tail.rfind(b"\n"), tail.rfind(b"\r", 0, len(tail) - 1)) + 1
            if cut and len(tail) - cut < TEXT_LINE_LIMIT and self.bareNewline == "normal":
                self.received += cut
                self._text(tail[:cut], 0, cut)
                tail = tail[cut:]
            else:
                self._bareCheck(tail[:-1] if tail.endswith(b"\r") else tail)
                self._fail(LINE_TOO_LONG)
                # Keep only a possible CR of a CRLF split across reads.
                self.received += len(tail)
                tail = tail[-1:] if tail.endswith(b"\r") else b""
                self._checkSize()
            midLine = True
        self._partial = tail
        self._midLine = midLine
        self._flush()
        return None

    def _fail(self, error: SMTPReply) -> None:
        if self.failure is None:
            self.failure = error
            self._out = []
            self._outSize = 0
            self.failed()

    def _lines(self, lines: list[bytes]) -> None:
        self.received += sum(map(len, lines)) + 2 * len(lines)
        longest = max(map(len, lines))
        lines.append(b"")
        self._text(b"\n".join(lines), len(lines) - 1, longest)

    def _text(self, chunk: bytes, lineEnds: int, longest: int) -> None:
        """
        Text in stored form: C{lineEnds} of the LFs of C{chunk} were CRLF
        on the wire; any other LF and every CR were bare.  C{normal}
        stores a bare one as a line end, C{reject} fails the message.
        """
        bare = self._bareCheck(chunk, lineEnds)
        if self.failure is None:
            if bare:
                chunk = chunk.replace(b"\r", b"\n")
                if longest > TEXT_LINE_LIMIT - 2:
                    longest = max(map(len, chunk.split(b"\n")))
            # RFC 5321 4.5.3.1.6: at most 998 octets before CRLF.
            if longest > TEXT_LINE_LIMIT - 2:
                self._fail(LINE_TOO_LONG)
                return
        self._checkSize()
        if self.failure is None:
            self._out.append(chunk)
            self._outSize += len(chunk)
            if self._outSize >= WRITE_CHUNK:
                self._flush()

    def _bareCheck(self, chunk: bytes, lineEnds: int = 0) -> bool:
        """
        Whether C{chunk} holds a bare CR or LF; under C{reject} that fails
        the message (and takes precedence over any other failure: the
        connection is closed after the reply).
        """
        bare = b"\r" in chunk or chunk.count(b"\n") != lineEnds
        if bare and self.bareNewline == "reject" and self.failure is not BARE_NEWLINE:
            self.failure = None
            self._fail(BARE_NEWLINE)
        return bare

    def _checkSize(self) -> None:
        if self.sizeLimit and self.received > self.sizeLimit and (
            self.failure is None or self.failure.code not in (TOO_BIG.code, BARE_NEWLINE.code)
        ):
            # RFC 1870 6.3: refuse at the end of data; nothing more is kept.
            self.failure = None
            self._fail(TOO_BIG)

    def _flush(self) -> None:
        out, self._out = self._out, []
        self._outSize = 0
        if out and self.failure is None:
            self.write(b"".join(out))
