"""
SEARCH (RFC 3501 6.4.4) and SORT (RFC 5256) evaluation over a session's
messages.

The program is a small tree the command parser builds: L{And}, L{Or},
L{Not} and L{Key}.  A L{Key} is an RFC 3501 search key by name, upper
case, with its arguments:

  - no arguments: C{ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN
    UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN};
  - C{KEYWORD}/C{UNKEYWORD}: C{(flag,)} (str, any case);
  - C{BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE}: C{(datetime.date,)}
    or the wire text C{"1-Feb-1994"};
  - C{LARGER SMALLER}: C{(int,)};
  - C{UID} and C{SEQUENCE} (a bare sequence set): C{(set,)} where set is
    the wire text (C{"1:3,7,*"}, str or bytes) or a list of C{(low, high)}
    with C{None} for C{*};
  - C{FROM TO CC BCC SUBJECT BODY TEXT}: C{(string,)};
    C{HEADER}: C{(fieldname, string)}; strings are bytes in the SEARCH
    CHARSET (or str, already decoded).

Evaluation is split: L{Searcher.cheap} decides what it can from the index
data the caller passes (L{MessageData}: flags, UID, sequence number, size,
internal date) and returns the rest undecided; only those are opened and
read (L{Searcher.matchesContent}, blocking: run it in the store's thread
pool).  L{search} does both.  Text keys match case-insensitively on
decoded text: RFC 2047 words in headers, quoted-printable and base64
bodies, body charsets, streaming the file (a match may straddle chunks).
"""

from __future__ import annotations

import datetime
import email.utils
import time
from dataclasses import dataclass

from twisted_maillab.imap import mimeheader
from twisted_maillab.imap.mimedecode import UnknownCTE, decodeWords, decoderFor, textDecoder

__all__ = [
    "And",
    "BadCharset",
    "Key",
    "MessageData",
    "Not",
    "Or",
    "Searcher",
    "baseSubject",
    "parseSequenceSet",
    "search",
    "sort",
]

SEARCH_CHARSETS = ("UTF-8", "US-ASCII")
# The header block read for header keys and SORT (longer headers are cut).
_HEADER_LIMIT = 1024 * 1024
_READ = 64 * 1024


class BadCharset(ValueError):
    """
    A SEARCH CHARSET other than UTF-8 and US-ASCII: the protocol answers
    C{NO [BADCHARSET (UTF-8 US-ASCII)]} (RFC 3501 6.4.4).
    """


@dataclass(frozen=True)
class Key:
    name: str
    args: tuple = ()


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    left: object
    right: object


@dataclass(frozen=True)
class Not:
    item: object


@dataclass(slots=True)
class MessageData:
    """
    What the caller knows of one message without opening it.

    @ivar flags: system flags and keywords, C{\\Recent} included when
        the session has the message as recent.
    @ivar internalDate: POSIX time.
    @ivar size: RFC822.SIZE.
    """

    uid: int
    seq: int
    flags: frozenset = frozenset()
    internalDate: float = 0.0
    size: int = 0


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"FROM": b"from", "TO": b"to", "CC": b"cc", "BCC": b"bcc", "SUBJECT": b"subject"}
_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_CONTENT_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER", "BODY", "TEXT", "SENTBEFORE", "SENTON", "SENTSINCE"})


_ALL_KEYS = (
    frozenset(_FLAG_KEYS)
    | _CONTENT_KEYS
    | _DATE_KEYS
    | {"ALL", "NEW", "OLD", "KEYWORD", "UNKEYWORD", "LARGER", "SMALLER", "UID", "SEQUENCE"}
)


def parseSequenceSet(value) -> list[tuple]:
    """
    C{"1:3,7,*"} into C{[(1, 3), (7, 7), (None, None)]} (C{None} is C{*}).

    @raise ValueError: not a sequence set.
    """
    if isinstance(value, (list, tuple)):
        return [tuple(r) for r in value]
    if isinstance(value, bytes):
        value = value.decode("ascii")
    result = []
    for item in value.split(","):
        low, _, high = item.partition(":")
        ends = []
        for end in (low, high or low):
            if end == "*":
                ends.append(None)
            elif end.isdigit() and int(end) > 0:
                ends.append(int(end))
            else:
                raise ValueError(f"bad sequence set {value!r}")
        result.append(tuple(ends))
    return result


def _inSet(number: int, ranges, largest: int) -> bool:
    # RFC 3501 9: "*" is the largest number in use; a:b equals b:a.
    for low, high in ranges:
        low = largest if low is None else low
        high = largest if high is None else high
        if low > high:
            low, high = high, low
        if low <= number <= high:
            return True
    return False


def _decodeArg(value, charset: str) -> str:
    if isinstance(value, str):
        return value
    # 8-bit bytes under US-ASCII: read as UTF-8 rather than fail.
    return value.decode("utf-8", "replace")


def _compile(node, charset):
    """
    The program with string arguments decoded, sequence sets parsed and
    names upper-cased.
    """
    if isinstance(node, And):
        return And(tuple(_compile(item, charset) for item in node.items))
    if isinstance(node, Or):
        return Or(_compile(node.left, charset), _compile(node.right, charset))
    if isinstance(node, Not):
        return Not(_compile(node.item, charset))
    name = node.name.upper()
    args = tuple(node.args)
    if name not in _ALL_KEYS:
        raise ValueError(f"unknown search key {name}")
    if name in _DATE_KEYS and not isinstance(args[0], datetime.date):
        # The wire form, RFC 3501 9 date: "1-Feb-1994".
        text = args[0].decode("ascii") if isinstance(args[0], bytes) else args[0]
        args = (datetime.datetime.strptime(text.strip('"'), "%d-%b-%Y").date(),)
    if name in ("UID", "SEQUENCE"):
        args = (parseSequenceSet(args[0]),)
    elif name in _HEADER_KEYS or name in ("BODY", "TEXT"):
        args = (_decodeArg(args[0], charset).casefold(),)
    elif name == "HEADER":
        fieldName = args[0] if isinstance(args[0], str) else args[0].decode("ascii", "replace")
        args = (fieldName.lower().encode("ascii", "replace"), _decodeArg(args[1], charset).casefold())
    elif name in ("KEYWORD", "UNKEYWORD"):
        flag = args[0] if isinstance(args[0], str) else args[0].decode("utf-8", "replace")
        args = (flag.lower(),)
    return Key(name, args)


def _localDate(posix: float) -> datetime.date:
    # RFC 3501 6.4.4: INTERNALDATE compared by date, in the server's zone.
    return datetime.date(*time.localtime(posix)[:3])


class Searcher:
    """
    One compiled SEARCH program for one session's view of a folder.

    @param program: the L{And}/L{Or}/L{Not}/L{Key} tree.
    @param charset: the SEARCH CHARSET (default US-ASCII).
    @param maxUid: the largest UID in the mailbox (UID C{*}).
    @param maxSeq: the number of messages (C{*}).

    @raise BadCharset: C{charset} is neither UTF-8 nor US-ASCII.
    @raise ValueError: an unknown key, a malformed sequence set or date.
    """

    def __init__(self, program, charset: str = "US-ASCII", maxUid: int = 0, maxSeq: int = 0):
        charset = (charset or "US-ASCII").upper()
        if charset not in SEARCH_CHARSETS:
            raise BadCharset(charset)
        self.program = _compile(program, charset)
        self.maxUid = maxUid
        self.maxSeq = maxSeq
        self.needles: dict[str, set[str]] = {"BODY": set(), "TEXT": set()}
        self._collect(self.program)
        self._test = self._build(self.program)

    def _collect(self, node):
        if isinstance(node, And):
            for item in node.items:
                self._collect(item)
        elif isinstance(node, Or):
            self._collect(node.left)
            self._collect(node.right)
        elif isinstance(node, Not):
            self._collect(node.item)
        elif node.name in ("BODY", "TEXT"):
            self.needles[node.name].add(node.args[0])

    def cheap(self, messages):
        """
        Decide from index data alone.

        @return: C{(matched, undecided)}: lists of L{MessageData}.
        """
        matched, undecided = [], []
        test = self._test
        for message in messages:
            verdict = test(message, None)
            if verdict is None:
                undecided.append(message)
            elif verdict:
                matched.append(message)
        return matched, undecided

    def matchesContent(self, message: MessageData, f) -> bool:
        """
        Blocking: decide one message, reading its file C{f}.
        """
        content = _Content(f, self.needles)
        return bool(self._test(message, content))

    def _build(self, node):
        """
        The program as nested closures C{test(message, content)}, each
        three-valued without content (L{None} is "needs the file"): a
        SEARCH over a big folder runs it once or twice per message, so
        the tree is walked and each key's case decided once, here.
        """
        if isinstance(node, And):
            tests = [self._build(item) for item in node.items]

            def both(message, content):
                result = True
                for test in tests:
                    value = test(message, content)
                    if value is False:
                        return False
                    if value is None:
                        result = None
                return result

            return both
        if isinstance(node, Or):
            leftTest, rightTest = self._build(node.left), self._build(node.right)

            def either(message, content):
                left = leftTest(message, content)
                if left is True:
                    return True
                right = rightTest(message, content)
                if right is True:
                    return True
                return None if None in (left, right) else False

            return either
        if isinstance(node, Not):
            inner = self._build(node.item)

            def negation(message, content):
                value = inner(message, content)
                return None if value is None else not value

            return negation
        return self._keyTest(node)

    def _keyTest(self, key):
        name, args = key.name, key.args
        if name == "ALL":
            return lambda message, content: True
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            return lambda message, content: (flag in message.flags) == wanted
        if name == "NEW":
            return lambda message, content: "\\Recent" in message.flags and "\\Seen" not in message.flags
        if name == "OLD":
            return lambda message, content: "\\Recent" not in message.flags
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword, wanted = args[0], name == "KEYWORD"
            return lambda message, content: (keyword in {f.lower() for f in message.flags}) == wanted
        if name == "LARGER":
            return lambda message, content: message.size > args[0]
        if name == "SMALLER":
            return lambda message, content: message.size < args[0]
        if name == "UID":
            return lambda message, content: _inSet(message.uid, args[0], self.maxUid)
        if name == "SEQUENCE":
            return lambda message, content: _inSet(message.seq, args[0], self.maxSeq)
        if name in ("BEFORE", "ON", "SINCE"):
            return lambda message, content: _compareDate(name, _localDate(message.internalDate), args[0])
        if name not in _CONTENT_KEYS:
            raise ValueError(f"unknown search key {name}")
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):

            def sent(message, content):
                if content is None:
                    return None
                date = content.sentDate()
                if date is None:
                    # No usable Date: as old as can be (Dovecot's choice:
                    # it is SENTBEFORE any date).
                    date = datetime.date(1970, 1, 1)
                return _compareDate(name[4:], date, args[0])

            return sent
        if name in _HEADER_KEYS or name == "HEADER":
            if name == "HEADER":
                fieldName, needle, addresses = args[0], args[1], False
            else:
                fieldName, needle, addresses = _HEADER_KEYS[name], args[0], name != "SUBJECT"

            def header(message, content):
                if content is None:
                    return None
                return content.headerContains(fieldName, needle, addresses)

            return header

        def text(message, content):
            if content is None:
                return None
            return content.found(name, args[0])

        return text


def _compareDate(name, date, wanted):
    if name == "BEFORE":
        return date < wanted
    if name == "ON":
        return date == wanted
    return date >= wanted


def headerFields(f) -> list:
    """
    The parsed header fields of a message file: L{mimeheader.parseFields}
    of L{readHeader}, or what the file object already carries as
    C{headerFields} (a server's cache hands out such objects, so a
    repeated search parses nothing).
    """
    fields = getattr(f, "headerFields", None)
    if fields is not None:
        return fields
    return mimeheader.parseFields(readHeader(f))


def headerTexts(f) -> dict:
    """
    Where a search keeps the decoded, case-folded text of header fields
    it looked at (see L{_Content.texts}): the C{headerTexts} dict a
    cached message carries, shared by every search of that message, or
    a new one for this search alone.
    """
    texts = getattr(f, "headerTexts", None)
    return {} if texts is None else texts


def readHeader(f) -> bytes:
    """
    The header block of a message file (up to and with the blank line),
    at most 1 MiB.
    """
    f.seek(0)
    out = bytearray()
    while len(out) < _HEADER_LIMIT:
        line = f.readline(_READ)
        if not line:
            break
        out += line
        if line in (b"\n", b"\r\n"):
            break
    return bytes(out)


def _addressText(value: bytes) -> str:
    """
    An address field as its parsed addresses, C{name <mailbox@host>} each,
    case-folded: FROM, TO, CC and BCC keys also find an address written
    with comments or quoting in the header (C{<a (c)@ (c) b.org>}), as
    Dovecot does; RFC 3501 6.4.4 leaves the matching to the server.
    """
    out = []
    for displayName, _route, mailbox, host in mimeheader.parseAddresses(value) or ():
        address = f"{(mailbox or b'').decode('utf-8', 'replace')}@{(host or b'').decode('utf-8', 'replace')}"
        out.append(f"{decodeWords(displayName)} <{address}>" if displayName else address)
    return ", ".join(out).casefold()


class _Content:
    """
    A message file read lazily: its header fields once, its decoded text
    once (all BODY and TEXT needles in one pass).
    """

    def __init__(self, f, needles):
        self.f = f
        self.needles = needles
        self._fields = None
        self._texts = None
        self._found = None

    def fields(self):
        if self._fields is None:
            self._fields = headerFields(self.f)
        return self._fields

    def texts(self, name: bytes, addresses: bool) -> tuple:
        """
        The decoded, case-folded values of the C{name} fields (and, for
        address fields, their addresses as L{_addressText} writes them),
        decoded once per message: a server's header cache keeps them
        with the parsed fields, so a repeated SUBJECT or FROM search over
        a big folder is a substring test per message.
        """
        if self._texts is None:
            self._texts = headerTexts(self.f)
        key = (name, addresses)
        texts = self._texts.get(key)
        if texts is None:
            found = []
            for fieldName, value in self.fields():
                if fieldName != name:
                    continue
                found.append(decodeWords(mimeheader.unfold(value)).casefold())
                if addresses:
                    found.append(_addressText(value))
            texts = self._texts[key] = tuple(found)
        return texts

    def headerContains(self, name: bytes, needle: str, addresses: bool = False) -> bool:
        for text in self.texts(name, addresses):
            if needle in text:
                return True
        return False

    def sentDate(self):
        for fieldName, value in self.fields():
            if fieldName == b"date":
                parsed = email.utils.parsedate_tz(mimeheader.unfold(value).decode("ascii", "replace"))
                if parsed is None:
                    return None
                try:
                    # RFC 3501 6.4.4: the date in the header's own zone.
                    return datetime.date(*parsed[:3])
                except ValueError:
                    return None
        return None

    def found(self, name: str, needle: str) -> bool:
        if self._found is None:
            self._found = _scanText(self.f, self.needles)
        return needle in self._found[name]


def _scanText(f, needles):
    """
    Which BODY and TEXT needles occur in the decoded message: C{{"BODY":
    set, "TEXT": set}}.  BODY looks in the decoded text parts; TEXT in
    those and in every header block: the top one (RFC 3501 6.4.4), the
    parts' MIME headers and encapsulated messages' headers (as Dovecot
    does).
    """
    from twisted_maillab.imap.structure import parse

    found = {"BODY": set(), "TEXT": set()}
    if not needles["BODY"] and not needles["TEXT"]:
        return found
    message = parse(f)
    body = _Matcher(needles["BODY"])
    text = _Matcher(needles["TEXT"])
    for kind, piece in _texts(f, message.root):
        text.feed(piece)
        if kind == "body":
            body.feed(piece)
    found["BODY"] = body.found
    found["TEXT"] = text.found
    return found


class _Matcher:
    """
    Substring search of several needles over text fed in pieces; a match
    may straddle pieces (not a C{None} separator).
    """

    def __init__(self, needles):
        self.pending = set(needles)
        self.found = set()
        self.keep = max((len(n) for n in needles), default=1) - 1
        self.tail = ""

    def feed(self, text: str):
        if not self.pending:
            return
        if text is None:
            self.tail = ""
            return
        window = self.tail + text.casefold()
        for needle in list(self.pending):
            if needle in window:
                self.pending.discard(needle)
                self.found.add(needle)
        self.tail = window[-self.keep :] if self.keep else ""


def _headerText(f, part) -> str:
    f.seek(part.start)
    raw = f.read(min(part.headerEnd - part.start, _HEADER_LIMIT))
    # Folded lines are one line; separate lines stay apart.
    return decodeWords(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\n "))


def _texts(f, part):
    """
    C{("header" | "body", text)} pieces of a part in file order: its
    header block, then its decoded content; C{(kind, None)} between
    blocks (a match must not straddle two).
    """
    yield "header", None
    yield "header", _headerText(f, part)
    if part.children is not None:
        for child in part.children:
            yield from _texts(f, child)
        return
    if part.message is not None:
        yield from _texts(f, part.message)
        return
    if part.ctype.lower() not in (b"text", b"message"):
        # Attachments (images, archives) are not text to search (as in
        # Dovecot without a full-text index).
        return
    try:
        decoder = decoderFor(part.encoding)
    except UnknownCTE:
        # Undecodable content is not text either.
        return
    charset = None
    for name, value in part.params:
        if name.lower() == b"charset":
            charset = value
    text = textDecoder(charset)
    yield "body", None
    f.seek(part.bodyStart)
    left = part.end - part.bodyStart
    while left > 0:
        raw = f.read(min(_READ, left))
        if not raw:
            break
        left -= len(raw)
        yield "body", text.decode(decoder.feed(raw))
    yield "body", text.decode(decoder.finish(), final=True)


def search(program, messages, openMessage, charset: str = "US-ASCII", maxUid: int | None = None, maxSeq: int | None = None):
    """
    Blocking: the messages (L{MessageData}, in sequence order) matching
    C{program}; only those the index data cannot decide are opened with
    C{openMessage(uid) -> binary file} (closed after).  A message whose
    file is gone (C{OSError} or any exception from C{openMessage}) is
    left out.

    @raise BadCharset: see L{Searcher}.
    """
    messages = list(messages)
    if maxUid is None:
        maxUid = max((m.uid for m in messages), default=0)
    if maxSeq is None:
        maxSeq = max((m.seq for m in messages), default=0)
    searcher = Searcher(program, charset, maxUid, maxSeq)
    matched, undecided = searcher.cheap(messages)
    for message in undecided:
        try:
            f = openMessage(message.uid)
        except Exception:
            continue
        try:
            if searcher.matchesContent(message, f):
                matched.append(message)
        finally:
            f.close()
    matched.sort(key=lambda m: m.seq)
    return matched


from twisted_maillab.imap.sort import baseSubject, sort  # noqa: E402  (re-exported)
