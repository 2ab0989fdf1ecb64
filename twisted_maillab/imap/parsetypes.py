"""
The typed values of the IMAP command parser: its errors, L{SequenceSet}
and one frozen dataclass per command's arguments.  Import them from
L{twisted_maillab.imap.parser}, which re-exports everything public here.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import datetime

MAX_NUMBER = 4294967295  # RFC 3501 "number": unsigned 32-bit
MAX_NUMBER64 = 9223372036854775807  # RFC 9051 "number64", used by partial fetches


class ParseError(Exception):
    """
    The client's command is not valid: answer C{tag BAD message} (or
    C{* BAD} when there is no tag), or the status and code given.

    @ivar tag: the command's tag as text, or L{None} if none could be read.
    @ivar message: a one-line human-readable explanation.
    @ivar status: C{"BAD"}, or C{"NO"} where the RFC wants a NO (BADCHARSET).
    @ivar code: a response code without brackets (C{"BADCHARSET (US-ASCII
        UTF-8)"}), or L{None}.
    @ivar fatal: if true the connection must be closed after C{* BYE}.
    """

    def __init__(self, message: str, tag: str | None = None, status: str = "BAD", code: str | None = None):
        Exception.__init__(self, message)
        self.message = message
        self.tag = tag
        self.status = status
        self.code = code
        self.fatal = False


class LineTooLong(ParseError):
    """
    A command line exceeded the assembler's C{maxLineLength}; its remainder
    up to the next line feed is discarded.
    """


class LiteralTooBig(ParseError):
    """
    A literal announced a size beyond the limit.

    A synchronising literal was not read (the client waits for a
    continuation it will not get): answer the tagged status (C{NO [TOOBIG]}
    for APPEND, C{BAD} otherwise) and go on.  A non-synchronising one
    (C{{N+}}) is already on its way, so L{fatal} is true: send
    C{* BYE} and close the connection.

    @ivar size: the announced size (possibly enormous).
    @ivar synchronising: whether the client waits for a continuation.
    @ivar command: the command name (C{"APPEND"}) if it was read.
    """

    def __init__(self, message, tag, size, synchronising, command):
        append = command == "APPEND"
        ParseError.__init__(self, message, tag, "NO" if append else "BAD", "TOOBIG" if append else None)
        self.size = size
        self.synchronising = synchronising
        self.command = command
        self.fatal = not synchronising


# ---------------------------------------------------------------------------
# Sequence sets


@dataclass(frozen=True)
class SequenceSet:
    """
    An RFC 3501 C{sequence-set} (C{1:*}, C{*:4}, C{2,4:7,9}).

    @ivar ranges: C{(low, high)} pairs as written, with L{None} for C{*};
        C{4:2} is kept as written and normalised by L{resolve}.
    """

    ranges: tuple

    @classmethod
    def fromValues(cls, values) -> SequenceSet:
        """
        The set of the given numbers, with runs compressed.

        @param values: an iterable of positive integers, in any order.
        @return: a L{SequenceSet} whose L{format} is e.g. C{b"1:3,5"}.
        """
        ranges = []
        for v in sorted(set(values)):
            if ranges and ranges[-1][1] == v - 1:
                ranges[-1][1] = v
            else:
                ranges.append([v, v])
        return cls(tuple((lo, hi) for lo, hi in ranges))

    def format(self) -> bytes:
        """
        @return: the wire form, C{b"1:3,5,7:*"}.
        """

        def one(v):
            return b"*" if v is None else b"%d" % v

        return b",".join(one(lo) if lo == hi else one(lo) + b":" + one(hi) for lo, hi in self.ranges)

    def usesStar(self) -> bool:
        """
        @return: whether C{*} occurs in the set.
        """
        return any(lo is None or hi is None for lo, hi in self.ranges)

    def resolve(self, maxValue: int) -> tuple:
        """
        Replace C{*} by C{maxValue}, order each range and merge overlaps.

        Nothing is materialised: C{1:4294967295} stays one pair.

        @param maxValue: the highest sequence number or UID in use (0 in an
            empty mailbox).
        @return: sorted, disjoint C{(low, high)} integer pairs.
        """
        pairs = []
        for lo, hi in self.ranges:
            lo = maxValue if lo is None else lo
            hi = maxValue if hi is None else hi
            pairs.append((lo, hi) if lo <= hi else (hi, lo))
        pairs.sort()
        merged = []
        for lo, hi in pairs:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def contains(self, value: int, maxValue: int) -> bool:
        """
        @return: whether C{value} is in the set once C{*} is C{maxValue}.
            (To test many values, L{select} is cheaper.)
        """
        for lo, hi in self.ranges:
            lo = maxValue if lo is None else lo
            hi = maxValue if hi is None else hi
            if lo <= value <= hi or hi <= value <= lo:
                return True
        return False

    def select(self, values, maxValue: int | None = None) -> list:
        """
        The members of a sorted list (a folder's UIDs, say), in order.

        As RFC 3501 6.4.8 wants for UID sets, C{*} is the largest value in
        use, so C{UID FETCH 900:*} names the last message even if its UID is
        below 900.  The cost is a bisection per range.

        @param values: ascending integers.
        @param maxValue: what C{*} stands for; by default C{values[-1]} (0
            for an empty list).
        @return: the values that are in the set, ascending.
        """
        if maxValue is None:
            maxValue = values[-1] if values else 0
        out = []
        for lo, hi in self.resolve(maxValue):
            out.extend(values[bisect.bisect_left(values, lo) : bisect.bisect_right(values, hi)])
        return out

    def iterate(self, maxValue: int):
        """
        Yield the members one by one, ascending, lazily.

        @param maxValue: what C{*} stands for.
        """
        for lo, hi in self.resolve(maxValue):
            yield from range(lo, hi + 1)

    def highest(self, maxValue: int) -> int:
        """
        @return: the largest member once C{*} is C{maxValue} (to check a
            sequence-number set against the mailbox size); 0 for an empty
            set.
        """
        resolved = self.resolve(maxValue)
        return resolved[-1][1] if resolved else 0


# ---------------------------------------------------------------------------
# Typed commands


@dataclass(frozen=True)
class Command:
    """
    One parsed command.

    @ivar tag: the tag, as text.
    @ivar name: the command name in upper case (C{"FETCH"}); for C{UID
        FETCH} the name is C{"FETCH"} and L{uid} is true.
    @ivar args: the typed arguments: L{None} for commands without any,
        else the command's dataclass (L{Fetch}, L{Search}...).
    @ivar uid: whether the command came with the C{UID} prefix.
    """

    tag: str
    name: str
    args: object = None
    uid: bool = False


@dataclass(frozen=True)
class Authenticate:
    """
    C{AUTHENTICATE mechanism [initial-response]} (RFC 3501 6.2.2, RFC 4959).

    @ivar mechanism: upper case (C{"PLAIN"}).
    @ivar initialResponse: the decoded SASL-IR octets (C{b""} for C{=}), or
        L{None} when the client sent none.
    """

    mechanism: str
    initialResponse: bytes | None = None


@dataclass(frozen=True)
class Login:
    """
    C{LOGIN user password}: both as the client sent the octets.
    """

    username: bytes
    password: bytes


@dataclass(frozen=True)
class Mailbox:
    """
    A command whose only argument is a mailbox (DELETE, SUBSCRIBE,
    UNSUBSCRIBE), or SELECT/EXAMINE with their parameters.

    @ivar mailbox: the decoded name (C{"INBOX"} for any case of inbox).
    @ivar parameters: SELECT/EXAMINE parameters (RFC 4466), as parsed by
        L{parseTaggedExt}: accepted and meant to be ignored.
    """

    mailbox: str
    parameters: tuple = ()


@dataclass(frozen=True)
class Create:
    """
    C{CREATE mailbox [(USE (\\Drafts ...))]} (RFC 6154).

    @ivar specialUse: canonical special-use flags (C{"\\\\Drafts"}).
    """

    mailbox: str
    specialUse: tuple = ()


@dataclass(frozen=True)
class Rename:
    """
    C{RENAME old new}.
    """

    old: str
    new: str


@dataclass(frozen=True)
class List:
    """
    C{LIST} (RFC 3501, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
    RFC 6154 SPECIAL-USE) and C{LSUB}.

    @ivar reference: the reference name, decoded.
    @ivar patterns: the mailbox patterns, decoded, wildcards kept.
    @ivar selectOptions: upper-case selection options (C{"SUBSCRIBED"},
        C{"REMOTE"}, C{"RECURSIVEMATCH"}, C{"SPECIAL-USE"}).
    @ivar returnOptions: upper-case return options (C{"SUBSCRIBED"},
        C{"CHILDREN"}, C{"SPECIAL-USE"}, C{"STATUS"}).
    @ivar statusItems: the C{RETURN (STATUS (...))} items, or L{None}.
    @ivar extended: whether the LIST-EXTENDED syntax was used (selection
        options, several patterns or return options), which changes what
        the reply must contain (RFC 5258 section 3).
    """

    reference: str
    patterns: tuple
    selectOptions: frozenset = frozenset()
    returnOptions: frozenset = frozenset()
    statusItems: tuple | None = None
    extended: bool = False


@dataclass(frozen=True)
class Status:
    """
    C{STATUS mailbox (items)}: upper-case item names.
    """

    mailbox: str
    items: tuple


@dataclass(frozen=True)
class AppendMessage:
    """
    One message of an APPEND (several with MULTIAPPEND, RFC 3502).

    @ivar flags: canonical flags (see L{parseFlag}).
    @ivar internalDate: an aware L{datetime}, or L{None}.
    @ivar data: the literal's octets.
    @ivar binary: whether it came as C{literal8} (RFC 3516).
    """

    flags: tuple
    internalDate: datetime | None
    data: bytes
    binary: bool = False


@dataclass(frozen=True)
class Append:
    """
    C{APPEND mailbox [flags] [date-time] literal ...}.

    @ivar messages: one L{AppendMessage} or more.
    """

    mailbox: str
    messages: tuple


@dataclass(frozen=True)
class SearchKey:
    """
    A node of a search program.

    C{key} is the RFC 3501 key in upper case; C{args} hold its typed
    arguments: C{AND} (a parenthesised list, or the top level) and C{OR}
    hold L{SearchKey}s, C{NOT} one; C{SEQUENCE} (a bare sequence set) and
    C{UID} a L{SequenceSet}; C{BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE}
    a L{datetime.date}; C{LARGER SMALLER} an int; C{KEYWORD UNKEYWORD} a
    flag; C{HEADER} the field name and the text; C{BCC BODY CC FROM SUBJECT
    TEXT TO} the text (str, decoded with the charset); the flag keys
    (C{SEEN}, C{NEW}...) and C{ALL} none.
    """

    key: str
    args: tuple = ()


@dataclass(frozen=True)
class Search:
    """
    C{SEARCH [RETURN (...)] [CHARSET x] keys} (RFC 3501, RFC 4731).

    @ivar charset: upper-case charset name, or L{None}.
    @ivar criteria: a L{SearchKey} (C{AND} of the top-level keys).
    @ivar returnOptions: L{None} for a plain SEARCH (answer C{* SEARCH}),
        else a tuple of C{"MIN" "MAX" "ALL" "COUNT"} (answer C{* ESEARCH});
        C{RETURN ()} means C{("ALL",)} (RFC 4731 section 3.1).
    """

    charset: str | None
    criteria: SearchKey
    returnOptions: tuple | None = None


@dataclass(frozen=True)
class Sort:
    """
    C{SORT (criteria) charset keys} (RFC 5256).

    @ivar criteria: C{(reverse, key)} pairs, key in upper case (C{"DATE"}).
    """

    criteria: tuple
    charset: str
    search: SearchKey


@dataclass(frozen=True)
class Section:
    """
    A body section specifier, C{[1.2.HEADER.FIELDS (From To)]}.

    @ivar part: part numbers, C{()} for the whole message.
    @ivar text: L{None}, C{"HEADER"}, C{"HEADER.FIELDS"},
        C{"HEADER.FIELDS.NOT"}, C{"TEXT"} or C{"MIME"}.
    @ivar fields: upper-case field names for C{HEADER.FIELDS(.NOT)}.
    """

    part: tuple = ()
    text: str | None = None
    fields: tuple = ()

    def format(self) -> bytes:
        """
        @return: the section as a FETCH response names it, C{b"1.HEADER"}.
        """
        bits = [b"%d" % p for p in self.part]
        if self.text:
            bits.append(self.text.encode("ascii"))
        out = b".".join(bits)
        if self.text and self.text.startswith("HEADER.FIELDS"):
            out += b" (" + b" ".join(_formatFieldName(f) for f in self.fields) + b")"
        return out


@dataclass(frozen=True)
class FetchAtt:
    """
    One FETCH item.

    @ivar name: C{"FLAGS" "UID" "INTERNALDATE" "RFC822.SIZE" "ENVELOPE"
        "BODYSTRUCTURE" "RFC822" "RFC822.HEADER" "RFC822.TEXT"}, C{"BODY"}
        (the structure when L{section} is None, else content),
        C{"BINARY"} or C{"BINARY.SIZE"} (RFC 3516).
    @ivar section: a L{Section} for BODY[...]/BINARY[...], else L{None}.
    @ivar partial: C{(origin, length)} from C{<o.n>}, or L{None}.
    @ivar peek: C{.PEEK} was given (no implicit \\Seen).
    """

    name: str
    section: Section | None = None
    partial: tuple | None = None
    peek: bool = False

    def responseName(self) -> bytes:
        """
        @return: the item's name in the FETCH response (RFC 3501 7.4.2):
            C{b"BODY[1.TEXT]<0>"} for C{BODY.PEEK[1.TEXT]<0.100>}.
        """
        if self.section is None:
            return self.name.encode("ascii")
        out = self.name.encode("ascii") + b"[" + self.section.format() + b"]"
        if self.partial is not None:
            out += b"<%d>" % self.partial[0]
        return out


@dataclass(frozen=True)
class Fetch:
    """
    C{FETCH set items}: macros are expanded (ALL, FAST, FULL).
    """

    sequenceSet: SequenceSet
    items: tuple


@dataclass(frozen=True)
class Store:
    """
    C{STORE set [+|-]FLAGS[.SILENT] flags}.

    @ivar mode: C{"+"}, C{"-"} or C{""} (replace).
    """

    sequenceSet: SequenceSet
    mode: str
    silent: bool
    flags: tuple


@dataclass(frozen=True)
class Copy:
    """
    C{COPY}/C{MOVE set mailbox}.
    """

    sequenceSet: SequenceSet
    mailbox: str


@dataclass(frozen=True)
class Sequence:
    """
    C{UID EXPUNGE set} (RFC 4315).
    """

    sequenceSet: SequenceSet


@dataclass(frozen=True)
class Id:
    """
    C{ID (...)} (RFC 2971): L{parameters} is a dict of str to str or
    L{None}, or L{None} for C{ID NIL}.
    """

    parameters: dict | None


@dataclass(frozen=True)
class Enable:
    """
    C{ENABLE cap ...} (RFC 5161): upper-case capability names.
    """

    capabilities: tuple


def _formatFieldName(name: str) -> bytes:
    data = name.encode("ascii")
    if data and _ATOM_OK.fullmatch(data):
        return data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


_ATOM_OK = re.compile(rb"[!#$&'+-Z^-z|}~]+")
