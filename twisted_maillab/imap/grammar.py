"""
The IMAP command grammar (RFC 3501 section 9, RFC 9051 section 9 and the
offered extensions' ABNF): a cursor over the octets of one complete command,
and one function per command that reads its arguments into the dataclasses
of L{twisted_maillab.imap.parsetypes}.  The public entry points are
re-exported by L{twisted_maillab.imap.parser}.

Its length (past 800 lines) is one grammar: every command's reader uses
the same cursor and the same productions (astring, sequence-set, search
key, fetch attribute); the types and the byte-stream assembly are already
in their own modules.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta, timezone

from twisted_maillab.imap import mutf7
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
    List,
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
_HEADER_LIST = re.compile(rb"\(([!#$&'+\-.0-9;<=>?@A-Z^_`a-z|~]+(?: [!#$&'+\-.0-9;<=>?@A-Z^_`a-z|~]+)*)\)")
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
    """
    A cursor over the octets of one command: each method reads one element
    of the grammar at C{pos} and moves past it, or raises L{ParseError}
    carrying the tag once it is known.
    """

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
            # The command is well formed (any astring is a syntactically
            # valid mailbox, RFC 3501 9); only no mailbox can have this
            # name, so the answer is NO, as Dovecot's.
            raise ParseError(f"bad mailbox name: {e}", self.tag, status="NO") from None
        if inbox and name.upper() == "INBOX":
            return "INBOX"
        return name

    def mailbox(self) -> str:
        return self.mailboxName(self.astring())

    def listMailbox(self) -> str:
        c = self.peek()
        raw = self.string() if c == 0x22 or c == 0x7B else self.match(_LIST_ATOM, "a mailbox pattern")
        try:
            return self.mailboxName(raw, inbox=False)
        except ParseError:
            # A pattern that is not modified UTF-7 matches no mailbox:
            # LIST answers OK with nothing for it (RFC 3501 6.3.8).
            return None

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
    if not raw:
        raise r.error("empty initial response (send '=' for an empty one, RFC 4959)")
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
        if "RECURSIVEMATCH" in selectOptions and not selectOptions - {"RECURSIVEMATCH", "REMOTE"}:
            raise r.error("RECURSIVEMATCH needs a selection option other than REMOTE (RFC 5258 3)")
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
            m = _HEADER_LIST.match(r.data, r.pos)
            if m is not None:  # the usual case, plain atoms: one regex instead of a call per name
                r.pos = m.end()
                fields = tuple(m.group(1).decode("ascii").upper().split(" "))
            else:
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
