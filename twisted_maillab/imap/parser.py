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

import base64
import binascii
import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from twisted_maillab.imap import mutf7

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
        """
        for lo, hi in self.resolve(maxValue):
            if lo <= value <= hi:
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
            sequence-number set against the mailbox size).
        """
        return self.resolve(maxValue)[-1][1]


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


# ---------------------------------------------------------------------------
# The grammar: a cursor over the bytes of one command.

_TAG = re.compile(rb'[^\x00-\x20\x7f(){%*"\\+\x80-\xff]+')
_ATOM = re.compile(rb'[^\x00-\x20\x7f(){%*"\\\]\x80-\xff]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f(){%*"\\\x80-\xff]+')
_LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f(){"\\\x80-\xff]+')
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{(\d+)(\+?)\}\r?\n")
_NUMBER = re.compile(rb"\d+")
_SEQ = re.compile(rb"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_STORE_ITEM = re.compile(rb"[+-]?[A-Za-z.]+")
_SECTION_PART = re.compile(rb"\d+(?:\.\d+)*")
_SECTION_TEXT = re.compile(rb"(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)(?=[\] ])", re.I)
_PARTIAL = re.compile(rb"<(\d+)\.(\d+)>")
_DATE = re.compile(rb'(")?(\d{1,2})-([A-Za-z]{3})-(\d{4})(?(1)")')
_DATE_TIME = re.compile(rb'"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"')
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_MONTHS = {m: i + 1 for i, m in enumerate(b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_SYSTEM_FLAGS = {f.upper(): f.decode() for f in rb"\Answered \Flagged \Deleted \Seen \Draft \Recent".split()}
_SPECIAL_USE = {f.upper(): f for f in r"\All \Archive \Drafts \Flagged \Junk \Sent \Trash \Important".split()}
_STATUS_ITEMS = frozenset("MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED".split())
_SORT_KEYS = frozenset("ARRIVAL CC DATE FROM SIZE SUBJECT TO".split())
_CHARSETS = ("US-ASCII", "UTF-8")
_MAX_DEPTH = 32  # nesting of parentheses and NOT/OR, so no input can exhaust Python's stack

# Search keys and their arguments: s text, d date, n number, f keyword,
# k key, K two keys, u sequence set, h header name and text.
_SEARCH_KEYS = dict.fromkeys(
    "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN".split(), ""
)
_SEARCH_KEYS.update(dict.fromkeys("BCC BODY CC FROM SUBJECT TEXT TO".split(), "s"))
_SEARCH_KEYS.update(dict.fromkeys("BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE".split(), "d"))
_SEARCH_KEYS.update({"LARGER": "n", "SMALLER": "n", "KEYWORD": "f", "UNKEYWORD": "f", "NOT": "k", "OR": "K"})
_SEARCH_KEYS.update({"UID": "u", "HEADER": "h"})


class _Reader:
    __slots__ = ("data", "pos", "tag", "utf8", "depth")

    def __init__(self, data: bytes, utf8: bool):
        self.data = data
        self.pos = 0
        self.tag = None
        self.utf8 = utf8
        self.depth = 0

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.tag)

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def match(self, regex, what: str) -> bytes:
        m = regex.match(self.data, self.pos)
        if m is None:
            raise self.error(f"expected {what} at octet {self.pos}")
        self.pos = m.end()
        return m.group()

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error(f"expected a space at octet {self.pos}")
        self.pos += 1

    def char(self, c: int, what: str) -> None:
        if self.peek() != c:
            raise self.error(f"expected {what} at octet {self.pos}")
        self.pos += 1

    def end(self) -> None:
        rest = self.data[self.pos :]
        if rest not in (b"", b"\r\n", b"\n"):
            raise self.error(f"unexpected data at octet {self.pos}")

    def atom(self) -> bytes:
        return self.match(_ATOM, "an atom")

    def keyword(self) -> str:
        return self.match(_ATOM, "a keyword").decode("ascii").upper()

    def number(self, low: int = 0, high: int = MAX_NUMBER) -> int:
        digits = self.match(_NUMBER, "a number")
        if len(digits) > 20 or not low <= int(digits) <= high:
            raise self.error(f"number out of range at octet {self.pos - len(digits)}")
        return int(digits)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error("too deeply nested")

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.data, self.pos)
        if m is None:
            raise self.error(f"bad quoted string at octet {self.pos}")
        value = m.group(1)
        if b"\\" in value:
            value = _QUOTED_ESCAPE.sub(rb"\1", value)
        if not value.isascii() and not self.utf8:
            raise self.error("8-bit octets in a quoted string (use a literal)")
        if b"\x00" in value:
            raise self.error("NUL in a quoted string")
        self.pos = m.end()
        return value

    def literal(self, binary: bool = False) -> tuple:
        m = _LITERAL.match(self.data, self.pos)
        if m is None:
            raise self.error(f"bad literal at octet {self.pos}")
        if m.group(1) and not binary:
            raise self.error("literal8 is only accepted in APPEND")
        size = int(m.group(2)) if len(m.group(2)) <= 20 else MAX_NUMBER64 + 1
        start = m.end()
        if start + size > len(self.data):
            raise self.error("truncated literal")
        value = self.data[start : start + size]
        if not m.group(1) and b"\x00" in value:
            raise self.error("NUL in a literal (RFC 3501 CHAR8)")
        self.pos = start + size
        return value, bool(m.group(1))

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B or c == 0x7E:
            return self.literal()[0]
        raise self.error(f"expected a string at octet {self.pos}")

    def astring(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B or (c == 0x7E and self.data[self.pos + 1 : self.pos + 2] == b"{"):
            return self.string()
        return self.match(_ASTRING_ATOM, "an astring")

    def nstring(self):
        if self.data[self.pos : self.pos + 3].upper() == b"NIL" and _ATOM.match(self.data, self.pos).end() == self.pos + 3:
            self.pos += 3
            return None
        return self.string()

    def text(self, raw: bytes, charset: str | None) -> str:
        try:
            return raw.decode("ascii" if charset == "US-ASCII" else "utf-8")
        except UnicodeDecodeError:
            raise self.error(f"text is not valid {charset or 'UTF-8'}") from None

    def mailboxName(self, raw: bytes, inbox: bool = True) -> str:
        try:
            name = raw.decode("utf-8") if self.utf8 and not raw.isascii() else mutf7.decode(raw)
        except (mutf7.InvalidModifiedUTF7, UnicodeDecodeError) as e:
            raise self.error(f"bad mailbox name: {e}") from None
        if inbox and name.upper() == "INBOX":
            return "INBOX"
        return name

    def mailbox(self) -> str:
        return self.mailboxName(self.astring())

    def listMailbox(self) -> str:
        c = self.peek()
        raw = self.string() if c == 0x22 or c == 0x7B else self.match(_LIST_ATOM, "a mailbox pattern")
        return self.mailboxName(raw, inbox=False)

    def sequenceSet(self) -> SequenceSet:
        text = self.match(_SEQ, "a sequence set")
        ranges = []
        for item in text.split(b","):
            lo, _, hi = item.partition(b":")
            lo = self.seqNumber(lo)
            ranges.append((lo, self.seqNumber(hi) if hi else lo))
        return SequenceSet(tuple(ranges))

    def seqNumber(self, raw: bytes):
        """
        A sequence number, part number or C{*} (L{None}): 1 to 4294967295.
        """
        if raw == b"*":
            return None
        if len(raw) > 10 or not 1 <= int(raw) <= MAX_NUMBER:
            raise self.error("sequence number out of range (1 to 4294967295)")
        return int(raw)

    def parenthesised(self, item) -> list:
        """
        C{"(" [item *(SP item)] ")"}: call C{item()} for each element.
        """
        self.char(0x28, "'('")
        out = []
        if self.peek() != 0x29:
            out.append(item())
            while self.peek() == 0x20:
                self.pos += 1
                out.append(item())
        self.char(0x29, "')'")
        return out

    def flag(self) -> str:
        if self.peek() == 0x5C:
            self.pos += 1
            return parseFlag(b"\\" + self.atom())
        return parseFlag(self.atom())

    def flagList(self) -> tuple:
        return tuple(self.parenthesised(self.flag))

    def date(self):
        m = _DATE.match(self.data, self.pos)
        month = _MONTHS.get(m.group(3).upper()) if m else None
        try:
            value = datetime(int(m.group(4)), month, int(m.group(2))).date()
        except (TypeError, ValueError, AttributeError):
            raise self.error(f"bad date at octet {self.pos}") from None
        self.pos = m.end()
        return value

    def dateTime(self) -> datetime:
        m = _DATE_TIME.match(self.data, self.pos)
        if m is None:
            raise self.error(f"bad date-time at octet {self.pos}")
        value = parseDateTime(m.group(), self.tag)
        self.pos = m.end()
        return value

    def taggedExt(self):
        c = self.peek()
        if c == 0x28:
            self.enter()
            value = tuple(self.parenthesised(self.taggedExt))
            self.depth -= 1
            return value
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self.match(_ASTRING_ATOM, "a parameter")


def parseFlag(raw: bytes) -> str:
    """
    A flag as the store names it: system flags in their canonical case
    (C{b"\\\\SEEN"} -> C{"\\\\Seen"}), other C{\\\\atom} extensions and
    keywords as sent.

    @raise ParseError: if C{raw} is not a flag.
    """
    if raw[:1] == b"\\":
        body = raw[1:]
        if not _ATOM.fullmatch(body):
            raise ParseError(f"bad flag {raw[:40]!r}")
        return _SYSTEM_FLAGS.get(raw.upper()) or raw.decode("ascii")
    if not _ATOM.fullmatch(raw):
        raise ParseError(f"bad flag {raw[:40]!r}")
    return raw.decode("ascii")


def parseDateTime(raw: bytes, tag: str | None = None) -> datetime:
    """
    An RFC 3501 C{date-time}, quotes included: C{b'"17-Jul-1996 02:44:25
    -0700"'} (a day may be written C{" 7"}, C{"07"} or C{"7"}).

    @return: an aware L{datetime}.
    @raise ParseError: if it is not one, or names an impossible date.
    """
    m = _DATE_TIME.fullmatch(raw)
    month = _MONTHS.get(m.group(2).upper()) if m else None
    try:
        day, year, hour, minute, second = (int(m.group(i)) for i in (1, 3, 4, 5, 6))
        zh, zm = int(m.group(8)), int(m.group(9))
        if zm > 59:
            raise ValueError(zm)
        offset = timedelta(hours=zh, minutes=zm) * (-1 if m.group(7) == b"-" else 1)
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except (TypeError, ValueError, AttributeError):
        raise ParseError(f"bad date-time {raw[:40]!r}", tag) from None


def parseDate(raw: bytes):
    """
    An RFC 3501 C{date} (C{1-Feb-1994}, optionally quoted).

    @return: a L{datetime.date}.
    @raise ParseError: if it is not one.
    """
    r = _Reader(raw, False)
    value = r.date()
    if r.pos != len(raw):
        raise ParseError(f"bad date {raw[:40]!r}")
    return value


def parseSequenceSet(raw: bytes) -> SequenceSet:
    """
    An RFC 3501 C{sequence-set} (C{b"2,4:7,9,12:*"}).

    @raise ParseError: if it is not one, or a number is 0 or above
        4294967295.
    """
    r = _Reader(raw, False)
    value = r.sequenceSet()
    if r.pos != len(raw):
        raise ParseError(f"bad sequence set {raw[:40]!r}")
    return value


def parseTaggedExt(raw: bytes) -> tuple:
    """
    A parenthesised RFC 4466 parameter list (as SELECT takes:
    C{b"(QRESYNC (67890007 20050715194045000 41,43:211))"}), as nested
    tuples of the octets of each atom or string; the server ignores
    what it does not offer.

    @raise ParseError: if the parentheses or strings are malformed.
    """
    r = _Reader(raw, False)
    value = r.taggedExt()
    if not isinstance(value, tuple) or r.pos != len(raw):
        raise ParseError("bad parameter list")
    return value


# ---------------------------------------------------------------------------
# Commands: each handler reads the arguments after the command name.


def _authenticate(r):
    r.sp()
    mechanism = r.keyword()
    if r.peek() != 0x20:
        return Authenticate(mechanism)
    r.sp()
    if r.peek() == 0x3D and r.pos + 1 == len(r.data.rstrip(b"\r\n")):  # "=" is an empty response (RFC 4959)
        r.pos += 1
        return Authenticate(mechanism, b"")
    raw = r.match(_BASE64, "base64")
    try:
        return Authenticate(mechanism, base64.b64decode(raw, validate=True))
    except binascii.Error:
        raise r.error("bad base64 in the initial response") from None


def _login(r):
    r.sp()
    user = r.astring()
    r.sp()
    return Login(user, r.astring())


def _select(r):
    r.sp()
    name = r.mailbox()
    params = ()
    if r.peek() == 0x20:
        r.sp()
        r.enter()
        params = tuple(r.parenthesised(r.taggedExt))
    return Mailbox(name, params)


def _mailboxOnly(r):
    r.sp()
    return Mailbox(r.mailbox())


def _create(r):
    r.sp()
    name = r.mailbox()
    uses = []
    if r.peek() == 0x20:
        r.sp()

        def param():
            if r.keyword() != "USE":
                raise r.error("the only CREATE parameter is USE (RFC 6154)")
            r.sp()
            for flag in r.flagList():
                if flag.upper() not in _SPECIAL_USE:
                    raise ParseError(f"{flag} is not a special-use attribute", r.tag, "NO", "USEATTR")
                uses.append(_SPECIAL_USE[flag.upper()])

        r.parenthesised(param)
    return Create(name, tuple(uses))


def _rename(r):
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


def _list(r):
    r.sp()
    selectOptions = set()
    extended = False
    if r.peek() == 0x28:
        extended = True
        for option in r.parenthesised(r.keyword):
            if option not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
                raise r.error(f"unknown LIST selection option {option}")
            selectOptions.add(option)
        if "RECURSIVEMATCH" in selectOptions and len(selectOptions) == 1:
            raise r.error("RECURSIVEMATCH needs another selection option (RFC 5258 3.1)")
        r.sp()
    reference = r.mailboxName(r.astring(), inbox=False)
    r.sp()
    if r.peek() == 0x28:
        extended = True
        patterns = tuple(r.parenthesised(r.listMailbox))
    else:
        patterns = (r.listMailbox(),)
    returnOptions = set()
    statusItems = None
    if r.peek() == 0x20:
        r.sp()
        if r.keyword() != "RETURN":
            raise r.error("expected RETURN")
        r.sp()
        extended = True

        def option():
            nonlocal statusItems
            name = r.keyword()
            if name == "STATUS":
                r.sp()
                statusItems = _statusItems(r)
            elif name not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
                raise r.error(f"unknown LIST return option {name}")
            returnOptions.add(name)

        r.parenthesised(option)
    return List(reference, patterns, frozenset(selectOptions), frozenset(returnOptions), statusItems, extended)


def _lsub(r):
    r.sp()
    reference = r.mailboxName(r.astring(), inbox=False)
    r.sp()
    return List(reference, (r.listMailbox(),))


def _statusItems(r):
    items = tuple(r.parenthesised(r.keyword))
    for item in items:
        if item not in _STATUS_ITEMS:
            raise r.error(f"unknown STATUS item {item}")
    if not items:
        raise r.error("STATUS needs at least one item")
    return items


def _status(r):
    r.sp()
    name = r.mailbox()
    r.sp()
    return Status(name, _statusItems(r))


def _append(r):
    r.sp()
    name = r.mailbox()
    messages = []
    while r.peek() == 0x20:
        r.sp()
        flags = ()
        date = None
        if r.peek() == 0x28:
            flags = r.flagList()
            r.sp()
        if r.peek() == 0x22:
            date = r.dateTime()
            r.sp()
        data, binary = r.literal(binary=True)
        messages.append(AppendMessage(flags, date, data, binary))
    if not messages:
        raise r.error("APPEND needs a message literal")
    return Append(name, tuple(messages))


def _charset(r):
    raw = r.astring()
    charset = raw.decode("ascii", "replace").upper()
    if charset not in _CHARSETS:
        raise ParseError(f"charset {charset[:40]} is not supported", r.tag, "NO", "BADCHARSET (US-ASCII UTF-8)")
    return charset


def _searchKeys(r, charset):
    """
    One or more search keys: their conjunction, as C{AND}.
    """
    keys = [_searchKey(r, charset)]
    while r.peek() == 0x20:
        r.pos += 1
        keys.append(_searchKey(r, charset))
    return keys[0] if len(keys) == 1 and keys[0].key == "AND" else SearchKey("AND", tuple(keys))


def _searchKey(r, charset):
    c = r.peek()
    if c == 0x28:
        r.enter()
        r.pos += 1
        key = _searchKeys(r, charset)
        if len(key.args) == 1:  # "(SEEN)" is just SEEN
            key = key.args[0]
        r.char(0x29, "')'")
        r.depth -= 1
        return key
    if 0x30 <= c <= 0x39 or c == 0x2A:
        return SearchKey("SEQUENCE", (r.sequenceSet(),))
    name = r.keyword()
    spec = _SEARCH_KEYS.get(name)
    if spec is None:
        raise r.error(f"unknown search key {name[:40]}")
    if not spec:
        return SearchKey(name)
    r.sp()
    if spec == "s":
        return SearchKey(name, (r.text(r.astring(), charset),))
    if spec == "d":
        return SearchKey(name, (r.date(),))
    if spec == "n":
        return SearchKey(name, (r.number(),))
    if spec == "f":
        return SearchKey(name, (parseFlag(r.atom()),))
    if spec == "u":
        return SearchKey(name, (r.sequenceSet(),))
    if spec == "h":
        field = r.text(r.astring(), "US-ASCII")
        r.sp()
        return SearchKey(name, (field, r.text(r.astring(), charset)))
    r.enter()
    first = _searchKey(r, charset)
    if spec == "K":
        r.sp()
        first = (first, _searchKey(r, charset))
    else:
        first = (first,)
    r.depth -= 1
    return SearchKey(name, first)


def _search(r):
    r.sp()
    returnOptions = None
    charset = None
    start = r.pos
    word = r.keyword() if r.peek() not in (0x28, 0x2A) and not 0x30 <= r.peek() <= 0x39 else None
    if word == "RETURN":
        r.sp()
        returnOptions = tuple(r.parenthesised(r.keyword)) or ("ALL",)
        for option in returnOptions:
            if option not in ("MIN", "MAX", "ALL", "COUNT"):
                raise r.error(f"unknown SEARCH return option {option[:40]} (RFC 4731)")
        r.sp()
        start = r.pos
        word = r.keyword() if r.peek() not in (0x28, 0x2A) and not 0x30 <= r.peek() <= 0x39 else None
    if word == "CHARSET":
        r.sp()
        charset = _charset(r)
        r.sp()
    else:
        r.pos = start
    return Search(charset, _searchKeys(r, charset), returnOptions)


def _sort(r):
    r.sp()

    def criterion():
        name = r.keyword()
        reverse = name == "REVERSE"
        if reverse:
            r.sp()
            name = r.keyword()
        if name not in _SORT_KEYS:
            raise r.error(f"unknown sort key {name[:40]}")
        return (reverse, name)

    criteria = tuple(r.parenthesised(criterion))
    if not criteria:
        raise r.error("SORT needs at least one criterion")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Sort(criteria, charset, _searchKeys(r, charset))


_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_SIMPLE = {
    name: FetchAtt(name)
    for name in "FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT".split()
}
_FETCH_SECTIONED = {
    "BODY": ("BODY", False),
    "BODY.PEEK": ("BODY", True),
    "BINARY": ("BINARY", False),
    "BINARY.PEEK": ("BINARY", True),
    "BINARY.SIZE": ("BINARY.SIZE", True),
}


def _fetchAtt(r):
    name = r.match(_FETCH_NAME, "a fetch item").decode("ascii").upper()
    if r.peek() != 0x5B:
        att = _FETCH_SIMPLE.get(name)
        if att is None:
            raise r.error(f"unknown fetch item {name[:40]}")
        return att
    if name not in _FETCH_SECTIONED:
        raise r.error(f"{name[:40]} takes no section")
    name, peek = _FETCH_SECTIONED[name]
    r.pos += 1
    part = ()
    text = None
    fields = ()
    if r.peek() != 0x5D:
        if 0x30 <= r.peek() <= 0x39:
            part = tuple(r.seqNumber(p) for p in r.match(_SECTION_PART, "a part number").split(b"."))
            if r.peek() == 0x2E and name == "BODY":
                r.pos += 1
                text = r.match(_SECTION_TEXT, "a section text").decode("ascii").upper()
        elif name == "BODY":
            text = r.match(_SECTION_TEXT, "a section text").decode("ascii").upper()
            if text == "MIME":
                raise r.error("MIME needs a part number")
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            r.sp()
            fields = tuple(f.upper() for f in r.parenthesised(lambda: r.text(r.astring(), "US-ASCII")))
            if not fields:
                raise r.error("HEADER.FIELDS needs at least one field name")
    r.char(0x5D, "']'")
    partial = None
    if r.peek() == 0x3C and name != "BINARY.SIZE":
        m = _PARTIAL.match(r.data, r.pos)
        if m is None or len(m.group(1)) > 19 or len(m.group(2)) > 19:
            raise r.error(f"bad partial at octet {r.pos}")
        origin, length = int(m.group(1)), int(m.group(2))
        if length == 0 or origin > MAX_NUMBER64 or length > MAX_NUMBER64:
            raise r.error("partial length must be 1 or more")
        r.pos = m.end()
        partial = (origin, length)
    return FetchAtt(name, Section(part, text, fields), partial, peek)


def _fetch(r):
    r.sp()
    sequenceSet = r.sequenceSet()
    r.sp()
    if r.peek() == 0x28:
        items = r.parenthesised(lambda: _fetchAtt(r))
        if not items:
            raise r.error("FETCH needs at least one item")
    else:
        start = r.pos
        macro = _FETCH_MACROS.get(r.match(_FETCH_NAME, "a fetch item").decode("ascii").upper())
        if macro is not None and r.peek() != 0x5B:
            items = [_FETCH_SIMPLE[n] for n in macro]
        else:
            r.pos = start
            items = [_fetchAtt(r)]
    return Fetch(sequenceSet, tuple(items))


def _store(r):
    r.sp()
    sequenceSet = r.sequenceSet()
    r.sp()
    item = r.match(_STORE_ITEM, "[+|-]FLAGS[.SILENT]").decode("ascii").upper()
    mode = item[0] if item[0] in "+-" else ""
    item = item.lstrip("+-")
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise r.error(f"STORE item must be [+|-]FLAGS[.SILENT], not {item[:40]}")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flagList()
    else:
        flags = [r.flag()]
        while r.peek() == 0x20:
            r.pos += 1
            flags.append(r.flag())
    return Store(sequenceSet, mode, item.endswith(".SILENT"), tuple(flags))


def _copy(r):
    r.sp()
    sequenceSet = r.sequenceSet()
    r.sp()
    return Copy(sequenceSet, r.mailbox())


def _uidExpunge(r):
    r.sp()
    return Sequence(r.sequenceSet())


def _id(r):
    r.sp()
    if r.peek() != 0x28:
        if r.keyword() != "NIL":
            raise r.error("ID takes a parameter list or NIL")
        return Id(None)
    params = {}

    def pair():
        key = r.string().decode("utf-8", "replace")
        r.sp()
        value = r.nstring()
        params[key] = None if value is None else value.decode("utf-8", "replace")

    r.parenthesised(pair)
    return Id(params)


def _enable(r):
    caps = []
    while r.peek() == 0x20:
        r.pos += 1
        caps.append(r.keyword())
    if not caps:
        raise r.error("ENABLE needs a capability")
    return Enable(tuple(caps))


def _none(r):
    return None


_COMMANDS = {
    "CAPABILITY": _none,
    "NOOP": _none,
    "LOGOUT": _none,
    "STARTTLS": _none,
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailboxOnly,
    "RENAME": _rename,
    "SUBSCRIBE": _mailboxOnly,
    "UNSUBSCRIBE": _mailboxOnly,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _none,
    "CLOSE": _none,
    "UNSELECT": _none,
    "EXPUNGE": _none,
    "SEARCH": _search,
    "SORT": _sort,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "IDLE": _none,
    "ID": _id,
    "ENABLE": _enable,
    "NAMESPACE": _none,
}
_UID_COMMANDS = {"COPY": _copy, "MOVE": _copy, "FETCH": _fetch, "SEARCH": _search, "STORE": _store, "EXPUNGE": _uidExpunge, "SORT": _sort}


def parseCommand(data: bytes, utf8: bool = False) -> Command:
    """
    Parse one complete command: its line, with any literals inline as the
    client sent them (C{b"a1 LOGIN {4}\\r\\nfred {3+}\\r\\npw1\\r\\n"}); the
    final CRLF may be present or not.

    @param utf8: accept UTF-8 in quoted strings and mailbox names (RFC
        9051 / UTF8=ACCEPT); otherwise 8-bit octets must come as literals.
    @return: a L{Command}.
    @raise ParseError: with the tag when one could be read.
    """
    r = _Reader(data, utf8)
    try:
        tag = r.match(_TAG, "a tag").decode("ascii")
        r.sp()  # "a+1 NOOP": the tag is not "a"
        r.tag = tag
        name = r.keyword()
        uid = name == "UID"
        if uid:
            r.sp()
            name = r.keyword()
            handler = _UID_COMMANDS.get(name)
        else:
            handler = _COMMANDS.get(name)
        if handler is None:
            raise r.error(f"unknown command {'UID ' if uid else ''}{name[:40]}")
        args = handler(r)
        r.end()
    except ParseError as e:
        if e.tag is None:
            e.tag = r.tag
        raise
    except (ValueError, IndexError) as e:  # a defect here must still reach the client as BAD
        raise ParseError(f"malformed command ({type(e).__name__})", r.tag) from None
    return Command(r.tag, name, args, uid)


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
_PREFIX = re.compile(rb'([^\x00-\x20\x7f(){%*"\\+\x80-\xff]+) +(?:UID +)?([A-Za-z]+)?')
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
        if error is not None:
            self._reset()
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
