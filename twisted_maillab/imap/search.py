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

Evaluation (L{Searcher.select}) runs over L{Columns}, the index data the
caller passes (flags, UIDs, sequence numbers, sizes, internal dates), a
key at a time over the messages still in question; only messages the
index keys could not decide are opened and read (blocking: run it in the
store's thread pool).  L{search} returns the matches as L{MessageData}.
Text keys match case-insensitively on decoded text: RFC 2047 words in
headers, quoted-printable and base64 bodies, body charsets, streaming the
file (a match may straddle chunks).
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from twisted_maillab.imap.messagetext import MessageContent, MessageGone

__all__ = [
    "And",
    "BadCharset",
    "Columns",
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

    The program is evaluated a key at a time over the list of messages
    still in question (set algebra, not a test per message): an C{AND}
    runs its index keys (flags, UIDs, sizes, dates) first and hands only
    their survivors to the keys that read headers, and those to the body
    keys; an C{OR} gives its right side only what the left did not take;
    a C{NOT} keeps what its key left out.  A big folder's SEARCH is then
    a few list comprehensions over its index, and a file is opened only
    for a message the index could not decide.

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
        self.program = _order(_compile(program, charset))
        self.maxUid = maxUid
        self.maxSeq = maxSeq
        self.needles: dict[str, set[str]] = {"BODY": set(), "TEXT": set()}
        self._collect(self.program)

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

    def select(self, columns: "Columns", openMessage) -> list[int]:
        """
        Blocking: the indexes into C{columns} of the matching messages,
        in order.  A message whose file cannot be opened (C{OSError} or
        any exception from C{openMessage(uid)}) when a key needs it is
        left out.
        """
        run = _Run(self, columns, openMessage)
        matched = run.evaluate(self.program, columns.present())
        if run.gone:
            matched = [i for i in matched if i not in run.gone]
        return matched


# The cost class of each key: index data, the header block, the whole
# message.  An AND evaluates its items in this order.
def _cost(node) -> int:
    if isinstance(node, Key):
        if node.name in ("BODY", "TEXT"):
            return 2
        return 1 if node.name in _CONTENT_KEYS else 0
    if isinstance(node, And):
        return max((_cost(item) for item in node.items), default=0)
    if isinstance(node, Or):
        return max(_cost(node.left), _cost(node.right))
    return _cost(node.item)


def _order(node):
    if isinstance(node, And):
        return And(tuple(sorted((_order(item) for item in node.items), key=_cost)))
    if isinstance(node, Or):
        left, right = _order(node.left), _order(node.right)
        return Or(left, right) if _cost(left) <= _cost(right) else Or(right, left)
    if isinstance(node, Not):
        return Not(_order(node.item))
    return node


_MISSING = object()


class _Run:
    """
    One evaluation of a L{Searcher}'s program over L{Columns}: the
    messages' contents are opened lazily, once each.
    """

    def __init__(self, searcher: Searcher, columns: "Columns", openMessage):
        self.searcher = searcher
        self.columns = columns
        self.openMessage = openMessage
        self.contents: dict[int, MessageContent] = {}
        self.gone: set[int] = set()

    def evaluate(self, node, candidates: list[int]) -> list[int]:
        if not candidates:
            return candidates
        if isinstance(node, And):
            for item in node.items:
                candidates = self.evaluate(item, candidates)
                if not candidates:
                    break
            return candidates
        if isinstance(node, Or):
            left = self.evaluate(node.left, candidates)
            if len(left) == len(candidates):
                return left
            taken = set(left)
            right = self.evaluate(node.right, [i for i in candidates if i not in taken])
            return sorted(left + right) if right else left
        if isinstance(node, Not):
            excluded = set(self.evaluate(node.item, candidates))
            return [i for i in candidates if i not in excluded]
        return self._key(node, candidates)

    def content(self, i: int) -> "MessageContent":
        content = self.contents.get(i)
        if content is None:
            content = self.contents[i] = MessageContent(self.openMessage, self.columns.uids[i], self.searcher.needles)
        return content

    def _withContent(self, candidates, test) -> list[int]:
        out = []
        for i in candidates:
            try:
                if test(self.content(i)):
                    out.append(i)
            except MessageGone:
                self.gone.add(i)
        return out

    def _header(self, key: tuple, needle: str, candidates: list[int]) -> list[int]:
        """
        The candidates whose C{key} field texts (see L{MessageContent.texts})
        hold C{needle}: from the opener's column of texts where it keeps
        one (a header cache), reading the rest.
        """
        textColumn = getattr(self.openMessage, "textColumn", None)
        if textColumn is None or "\0" in needle:
            return self._withContent(candidates, lambda content: content.headerContains(key[0], needle, key[1]))
        get, remember = textColumn(key).get, self.openMessage.rememberText
        uids = self.columns.uids
        out = []
        for i in candidates:
            text = get(uids[i], _MISSING)
            if text is _MISSING:
                try:
                    text = self.content(i).texts(*key)
                except MessageGone:
                    self.gone.add(i)
                    continue
                remember(uids[i], key, text)
            if text is not None and needle in text:
                out.append(i)
        return out

    def _key(self, key: Key, candidates: list[int]) -> list[int]:
        name, args = key.name, key.args
        columns = self.columns
        uids, flags = columns.uids, columns.flags
        if name == "ALL":
            return candidates
        if name in ("RECENT", "NEW", "OLD"):
            recent = columns.recent
            if name == "RECENT":
                return [i for i in candidates if uids[i] in recent]
            if name == "OLD":
                return [i for i in candidates if uids[i] not in recent]
            return [i for i in candidates if uids[i] in recent and "\\Seen" not in flags[i]]
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            if wanted:
                return [i for i in candidates if flag in flags[i]]
            return [i for i in candidates if flag not in flags[i]]
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword, wanted = args[0], name == "KEYWORD"
            return [i for i in candidates if (keyword in {f.lower() for f in flags[i]}) == wanted]
        if name in ("LARGER", "SMALLER"):
            sizes, limit = columns.sizes, args[0]
            if name == "LARGER":
                return [i for i in candidates if sizes.get(uids[i], 0) > limit]
            return [i for i in candidates if sizes.get(uids[i], 0) < limit]
        if name == "UID":
            largest, ranges = self.searcher.maxUid, args[0]
            return [i for i in candidates if _inSet(uids[i], ranges, largest)]
        if name == "SEQUENCE":
            largest, ranges, seq = self.searcher.maxSeq, args[0], columns.seq
            return [i for i in candidates if _inSet(seq(i), ranges, largest)]
        if name in ("BEFORE", "ON", "SINCE"):
            dates, wanted = columns.dates, args[0]
            return [i for i in candidates if _compareDate(name, _localDate(dates[i] if dates else 0.0), wanted)]
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            relation, wanted = name[4:], args[0]

            def sent(content):
                # No usable Date: as old as can be (Dovecot's choice: it
                # is SENTBEFORE any date).
                return _compareDate(relation, content.sentDate() or datetime.date(1970, 1, 1), wanted)

            return self._withContent(candidates, sent)
        if name in _HEADER_KEYS or name == "HEADER":
            if name == "HEADER":
                fieldName, needle, addresses = args[0], args[1], False
            else:
                fieldName, needle, addresses = _HEADER_KEYS[name], args[0], name != "SUBJECT"
            return self._header((fieldName, addresses), needle, candidates)
        if name in ("BODY", "TEXT"):
            needle = args[0]
            return self._withContent(candidates, lambda content: content.found(name, needle))
        raise ValueError(f"unknown search key {name}")


@dataclass(slots=True)
class Columns:
    """
    What the caller knows of a view's messages without opening them, a
    list per attribute in sequence order: a SEARCH over thousands of
    messages makes no object per message, only per match
    (L{Columns.row}).

    @ivar uids: the view's UIDs.
    @ivar flags: each message's flags (a frozenset), or L{None} for one
        expunged meanwhile (left out of every search).
    @ivar dates: POSIX internal dates, or L{None} when no key needs them;
        a L{None} entry leaves that message out.
    @ivar sizes: RFC822.SIZE by UID (0 when missing).
    @ivar recent: the UIDs the session has as \\Recent.
    @ivar seqs: the sequence numbers, or L{None} for 1, 2, 3...
    """

    uids: list
    flags: list
    dates: list | None = None
    sizes: dict = field(default_factory=dict)
    recent: frozenset = frozenset()
    seqs: list | None = None

    @classmethod
    def of(cls, messages) -> "Columns":
        """
        The columns of L{MessageData} rows (C{\\Recent} in their flags).
        """
        messages = list(messages)
        return cls(
            uids=[m.uid for m in messages],
            flags=[m.flags for m in messages],
            dates=[m.internalDate for m in messages],
            sizes={m.uid: m.size for m in messages},
            recent=frozenset(m.uid for m in messages if "\\Recent" in m.flags),
            seqs=[m.seq for m in messages],
        )

    def seq(self, i: int) -> int:
        return i + 1 if self.seqs is None else self.seqs[i]

    def present(self) -> list[int]:
        flags, dates = self.flags, self.dates
        if dates is None:
            return [i for i, f in enumerate(flags) if f is not None]
        return [i for i, f in enumerate(flags) if f is not None and dates[i] is not None]

    def row(self, i: int) -> MessageData:
        uid, flags = self.uids[i], self.flags[i]
        if uid in self.recent and "\\Recent" not in flags:
            flags = flags | {"\\Recent"}
        return MessageData(uid, self.seq(i), flags, self.dates[i] if self.dates else 0.0, self.sizes.get(uid, 0))


def _compareDate(name, date, wanted):
    if name == "BEFORE":
        return date < wanted
    if name == "ON":
        return date == wanted
    return date >= wanted


def search(program, messages, openMessage, charset: str = "US-ASCII", maxUid: int | None = None, maxSeq: int | None = None):
    """
    Blocking: the messages matching C{program}, as L{MessageData} in
    sequence order.  C{messages} is L{Columns} or L{MessageData} rows in
    sequence order; only those the index data cannot decide are opened
    with C{openMessage(uid) -> binary file} (closed after).  A message
    whose file is gone (C{OSError} or any exception from C{openMessage})
    when a key needs it is left out.

    @raise BadCharset: see L{Searcher}.
    """
    columns = messages if isinstance(messages, Columns) else Columns.of(messages)
    if maxUid is None:
        maxUid = max(columns.uids, default=0)
    if maxSeq is None:
        maxSeq = max((columns.seq(i) for i in range(len(columns.uids))), default=0)
    searcher = Searcher(program, charset, maxUid, maxSeq)
    return [columns.row(i) for i in searcher.select(columns, openMessage)]


from twisted_maillab.imap.sort import baseSubject, sort  # noqa: E402  (re-exported)
