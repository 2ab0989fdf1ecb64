"""
IMAP command syntax (RFC 3501 section 9, RFC 9051 section 9 and the
extensions the server offers): L{parseCommand} turns the bytes of one
complete command into a typed L{Command}; L{CommandAssembler} collects those
bytes from a connection's stream, literals included, and decides about
literal sizes before any octet of a literal is read.

Strings: a quoted string must be 7-bit (RFC 3501 C{QUOTED-CHAR}); 8-bit
octets are accepted in it, as UTF-8, only when the caller passes
C{utf8=True} (RFC 9051 / RFC 6855 C{UTF8=ACCEPT} sessions).  Literals may
carry any octet but NUL (RFC 3501 C{CHAR8}); C{literal8} (RFC 3516 C{~{N}})
may carry NUL too and is accepted for APPEND only.  Mailbox names are
decoded from modified UTF-7 (L{twisted_maillab.imap.mutf7}), or read as
UTF-8 when C{utf8=True}; C{INBOX} in any case is returned as C{"INBOX"}.

This module does no I/O and raises nothing but L{ParseError} and its
subclasses L{LineTooLong} and L{LiteralTooBig}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_maillab.imap.grammar import (
    parseCommand,
    parseDate,
    parseDateTime,
    parseFlag,
    parseSequenceSet,
    parseTaggedExt,
)
from twisted_maillab.imap.parsetypes import (
    MAX_NUMBER,
    MAX_NUMBER64,
    Append,
    AppendMessage,
    Authenticate,
    Command,
    Copy,
    Create,
    Enable,
    Fetch,
    FetchAtt,
    Id,
    LineTooLong,
    List,
    LiteralTooBig,
    Login,
    Mailbox,
    ParseError,
    Rename,
    Search,
    SearchKey,
    Section,
    Sequence,
    SequenceSet,
    Sort,
    Status,
    Store,
)

__all__ = [
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "LITERAL_MINUS_MAX",
    "Append",
    "AppendMessage",
    "Authenticate",
    "Command",
    "CommandAssembler",
    "Continuation",
    "Copy",
    "Create",
    "Enable",
    "Fetch",
    "FetchAtt",
    "Id",
    "Line",
    "LineTooLong",
    "List",
    "LiteralTooBig",
    "Login",
    "Mailbox",
    "ParseError",
    "Rename",
    "Search",
    "SearchKey",
    "Section",
    "Sequence",
    "SequenceSet",
    "Sort",
    "Status",
    "Store",
    "isDone",
    "parseCommand",
    "parseDate",
    "parseDateTime",
    "parseFlag",
    "parseSequenceSet",
    "parseTaggedExt",
]


# ---------------------------------------------------------------------------
# Assembling commands from a stream


@dataclass(frozen=True)
class Continuation:
    """
    A synchronising literal within the limits was announced: the server
    must now send a continuation request (C{+ Ready}); the assembler then
    reads the literal's L{size} octets.
    """

    tag: str | None
    size: int


@dataclass(frozen=True)
class Line:
    """
    A raw line, without its line end, returned once after
    L{CommandAssembler.expectLine}: a SASL response or the C{DONE} that
    ends IDLE (see L{isDone}).
    """

    data: bytes


def isDone(line: bytes) -> bool:
    """
    Whether a line ends IDLE (RFC 2177): exactly C{DONE}, in any case,
    with or without its line end.  Nothing else ends IDLE.
    """
    return line.rstrip(b"\r\n").upper() == b"DONE"


_LITERAL_AT_END = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n\Z")
_PREFIX = re.compile(rb'([^\x00-\x20\x7f(){%*"\\+\x80-\xff]+) ([A-Za-z]+)?')
LITERAL_MINUS_MAX = 4096  # RFC 7888 section 5: LITERAL- allows {N+} up to 4096 octets


class CommandAssembler:
    """
    Collect complete commands from a connection's bytes.

    Call L{feed} with what arrived, then L{nextEvent} until it returns
    L{None}; each event is a L{Command}, a L{Continuation} (send C{+}), a
    L{Line} (after L{expectLine}), or a L{ParseError} instance (returned,
    not raised: answer it and go on, or send BYE and close when its
    C{fatal} is true).  Events are produced one at a time, so the server
    can stop taking them while a command runs, switch to L{expectLine}
    after AUTHENTICATE or IDLE, and L{discard} what a client pipelined
    after STARTTLS.

    Limits: every line (the text between literals) is at most
    C{maxLineLength} octets; a literal is at most C{appendLimit} octets in
    APPEND and C{maxLiteralSize} elsewhere; literals of one APPEND total at
    most C{appendLimit} (so MULTIAPPEND is bounded too) and a whole
    other command at most C{maxCommandSize}.  Sizes are checked when the
    literal is announced, before any of its octets is read.

    Bare LF is accepted as a line end, as most servers do.  Empty lines
    are ignored.
    """

    def __init__(
        self,
        maxLineLength: int = 8192,
        maxLiteralSize: int = 65536,
        appendLimit: int = 50 * 1024 * 1024,
        maxCommandSize: int = 262144,
        literalPlus: str | None = "LITERAL+",
        utf8: bool = False,
    ):
        """
        @param literalPlus: C{"LITERAL+"} (RFC 7888: C{{N+}} of any size
            within the limits), C{"LITERAL-"} (up to 4096 octets) or
            L{None} (non-synchronising literals are refused, fatally).
        @param utf8: passed on to L{parseCommand}.
        """
        self.maxLineLength = maxLineLength
        self.maxLiteralSize = maxLiteralSize
        self.appendLimit = appendLimit
        self.maxCommandSize = maxCommandSize
        self.literalPlus = literalPlus
        self.utf8 = utf8
        self._buf = bytearray()
        self._parts = []
        self._size = 0
        self._literalBytes = 0
        self._literal = 0
        self._skipping = False
        self._line = False
        self._dead = False

    def feed(self, data: bytes) -> None:
        """
        Add bytes received from the client.
        """
        if not self._dead:
            self._buf += data

    def expectLine(self) -> None:
        """
        Return the next line as a L{Line} instead of parsing it as a
        command.
        """
        self._line = True

    def discard(self) -> None:
        """
        Drop everything received but not yet returned (after STARTTLS,
        RFC 3501 6.2.1 and the command-injection attack of RFC 3207's
        era), and any partly assembled command.
        """
        self._buf.clear()
        self._reset()
        self._skipping = False

    def pending(self) -> int:
        """
        @return: octets held: buffered input plus the command being
            assembled (for a bound on what one session may hold).
        """
        return len(self._buf) + self._size

    def _reset(self) -> None:
        self._parts = []
        self._size = 0
        self._literalBytes = 0
        self._literal = 0

    def _prefix(self, first: bytes):
        m = _PREFIX.match(first)
        if m is None:
            return None, None
        return m.group(1).decode("ascii"), (m.group(2) or b"").decode("ascii").upper() or None

    def nextEvent(self):
        """
        @return: the next event, or L{None} when more bytes are needed.
        """
        buf = self._buf
        while not self._dead:
            if self._literal:
                take = min(len(buf), self._literal)
                if not take:
                    return None
                self._parts.append(bytes(buf[:take]))
                del buf[:take]
                self._literal -= take
                continue
            end = buf.find(b"\n")
            if self._skipping:
                if end < 0:
                    buf.clear()
                    return None
                del buf[: end + 1]
                self._skipping = False
                continue
            if end < 0:
                if len(buf) <= self.maxLineLength:
                    return None
                return self._tooLong(bytes(buf[:64]), skip=True)
            if end + 1 > self.maxLineLength + 2:
                line = bytes(buf[:64])
                del buf[: end + 1]
                return self._tooLong(line, skip=False)
            line = bytes(buf[: end + 1])
            del buf[: end + 1]
            if self._line and not self._parts:
                self._line = False
                return Line(line.rstrip(b"\r\n"))
            if not self._parts and line in (b"\r\n", b"\n"):
                continue
            self._parts.append(line)
            self._size += len(line)
            m = _LITERAL_AT_END.search(line)
            if m is None:
                data = b"".join(self._parts)
                self._reset()
                try:
                    return parseCommand(data, self.utf8)
                except ParseError as e:
                    return e
            event = self._announce(m)
            if event is not None:
                return event

    def _tooLong(self, start: bytes, skip: bool):
        tag, _ = self._prefix(self._parts[0] if self._parts else start)
        self._reset()
        self._skipping = skip
        if skip:
            self._buf.clear()
        return LineTooLong(f"line longer than {self.maxLineLength} octets", tag)

    def _announce(self, m):
        digits, plus = m.group(1), bool(m.group(2))
        size = int(digits) if len(digits) <= 20 else MAX_NUMBER64 + 1
        tag, command = self._prefix(self._parts[0])
        if command == "APPEND":
            limit = self.appendLimit
            total = self._literalBytes + size
            totalLimit = self.appendLimit
        else:
            limit = self.maxLiteralSize
            total = self._size + size
            totalLimit = self.maxCommandSize
        error = None
        if plus and self.literalPlus is None:
            error = "non-synchronising literals are not supported"
        elif plus and self.literalPlus == "LITERAL-" and size > LITERAL_MINUS_MAX:
            error = f"LITERAL- allows {{N+}} up to {LITERAL_MINUS_MAX} octets (RFC 7888)"
        elif size > limit:
            error = f"literal of {size} octets is beyond the limit of {limit}"
        elif total > totalLimit:
            error = f"command of {total} octets is beyond the limit of {totalLimit}"
        if tag is None:
            # no command can come of it: refuse it at once rather than ask for its octets
            error = "literal in a line without a tag"
        if error is not None:
            self._reset()
            if tag is None:
                failure = ParseError(error)
                failure.fatal = plus
            else:
                failure = LiteralTooBig(error, tag, size, not plus, command)
            if failure.fatal:
                self._dead = True
                self._buf.clear()
            return failure
        self._literal = size
        self._literalBytes += size
        self._size += size
        if not plus:
            return Continuation(tag, size)
        return None
