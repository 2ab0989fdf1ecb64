"""
What a search reads of a message file: its header fields and their
decoded, case-folded texts (RFC 2047 words, addresses), and the decoded
text of its parts (quoted-printable and base64 bodies, body charsets)
streamed in chunks, a match straddling two chunks included.  Blocking:
used from the store's thread pool by L{twisted_maillab.imap.search} and
L{twisted_maillab.imap.sort}.
"""

from __future__ import annotations

import datetime
import email.utils

from twisted_maillab.imap import mimeheader
from twisted_maillab.imap.mimedecode import UnknownCTE, decodeWords, decoderFor, textDecoder

__all__ = ["MessageContent", "MessageGone", "headerFields", "headerTexts", "readHeader"]

# The header block read for header keys and SORT (longer headers are cut).
_HEADER_LIMIT = 1024 * 1024
_READ = 64 * 1024
_MISSING = object()


class MessageGone(Exception):
    """
    The message's file could not be opened.
    """


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
    it looked at, by C{(field name, addresses)} (see L{MessageContent.texts}):
    the C{headerTexts} dict a cached message carries, shared by every
    search of that message, or a new one for this search alone.
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


class MessageContent:
    """
    A message read lazily: its header fields once, its decoded text once
    (all BODY and TEXT needles in one pass), the file open only while it
    is read (a search over thousands of messages holds no descriptors).

    @raise MessageGone: from any method, when the file cannot be opened.
    """

    __slots__ = ("openMessage", "uid", "needles", "_fields", "_texts", "_found")

    def __init__(self, openMessage, uid: int, needles):
        self.openMessage = openMessage
        self.uid = uid
        self.needles = needles
        self._fields = None
        self._texts = None
        self._found = None

    def _read(self, reader):
        try:
            f = self.openMessage(self.uid)
        except Exception:
            raise MessageGone(self.uid) from None
        try:
            if self._texts is None:
                self._texts = headerTexts(f)
            return reader(f)
        finally:
            f.close()

    def fields(self):
        if self._fields is None:
            self._fields = self._read(headerFields)
        return self._fields

    def texts(self, name: bytes, addresses: bool) -> str:
        """
        The decoded, case-folded values of the C{name} fields (and, for
        address fields, their addresses as L{_addressText} writes them),
        joined by NUL (which no search string holds, so no match spans
        two), or L{None} when the message has no such field (even an
        empty search string does not match it), decoded once per message: a server's header cache keeps
        them with the parsed fields, so a repeated SUBJECT or FROM search
        over a big folder is a substring test per message.
        """
        if self._texts is None:
            self.fields()
        key = (name, addresses)
        texts = self._texts.get(key, _MISSING)
        if texts is _MISSING:
            found = []
            for fieldName, value in self.fields():
                if fieldName != name:
                    continue
                found.append(decodeWords(mimeheader.unfold(value)).casefold())
                if addresses:
                    found.append(_addressText(value))
            texts = self._texts[key] = "\0".join(found) if found else None
        return texts

    def headerContains(self, name: bytes, needle: str, addresses: bool = False) -> bool:
        texts = self.texts(name, addresses)
        return texts is not None and needle in texts

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
            self._found = self._read(lambda f: _scanText(f, self.needles))
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
