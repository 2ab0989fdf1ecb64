"""
Messages for L{twisted_maillab.imap.twistedseam}: what a FETCH or SEARCH
through Twisted's L{imap4.IMessage} reads of a message, read in the store's
pool (header blocks) or as CRLF text (bodies), and the search keys.
"""

from __future__ import annotations

import email.utils
import io
import re
from email.parser import BytesParser
from email.policy import compat32

from twisted.internet import defer
from twisted.mail import imap4
from zope.interface import implementer

from twisted_maillab.store.errors import MessageVanished, StoreError

__all__ = ["HEADER_LIMIT", "PARTS_LIMIT", "Matcher", "TwistedMessage", "readHeaders", "text"]

# The header block read per message for FETCH and SEARCH (a bigger one is
# served as a body without headers rather than held in memory).
HEADER_LIMIT = 256 * 1024

# A multipart message up to this size is parsed into its parts in the pool
# (BODYSTRUCTURE, BODY[1.2]); a bigger one is served as a single part.
PARTS_LIMIT = 4 * 1024 * 1024

# How many message files are open at once while their headers are read.
_BATCH = 64


def text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _Parts:
    """
    C{isMultipart}/C{getSubPart} over C{self.parts}: the L{_Part}s of a
    multipart message, or L{None}.
    """

    parts = None

    def isMultipart(self):
        return self.parts is not None

    def getSubPart(self, part):
        if self.parts is None:
            raise IndexError(part)
        return self.parts[part]


@implementer(imap4.IMessage, imap4.IMessageFile)
class TwistedMessage(_Parts):
    """
    One message as a FETCH sees it, with what was read in the pool.

    @ivar headers: C{[(name, value), ...]} of the header block, or L{None}
        when the message vanished.
    """

    def __init__(self, mailbox, uid, headers, bodyStart, size, headerSize=0, parts=None):
        self.mailbox = mailbox
        self.parts = parts
        self.uid = uid
        self.headers = headers
        self._bodyStart = bodyStart
        self._size = size
        self._headerSize = headerSize
        self._flags = ()

    def getUID(self):
        return self.uid

    def getFlags(self):
        folder = self.mailbox.folder
        if self.uid in folder.messages:
            self._flags = folder.flags(self.uid)
        return self.mailbox._flagsOf(self.uid, self._flags)

    def getInternalDate(self):
        folder = self.mailbox.folder
        try:
            when = folder.internalDate(self.uid)
        except MessageVanished:
            when = 0
        return email.utils.formatdate(when, usegmt=True)

    # -- IMessagePart -----------------------------------------------------

    def getHeaders(self, negate, *names):
        return _selectHeaders(self.headers or (), negate, names)

    def getBodyFile(self):
        return self._open(self._bodyStart, self._size - self._headerSize)

    def getSize(self):
        return self._size

    # -- IMessageFile -------------------------------------------------

    def open(self):
        return self._open(0, self._size)

    def _open(self, start: int, size: int):
        if self.headers is None:
            return _CRLFFile(None, 0, 0)
        try:
            f = self.mailbox.folder.openMessage(self.uid)
        except (MessageVanished, StoreError):
            return _CRLFFile(None, 0, 0)
        return _CRLFFile(f, start, max(size, 0))


@implementer(imap4.IMessagePart)
class _Part(_Parts):
    """
    One MIME part of a multipart message, parsed in the pool and held in
    memory (at most L{PARTS_LIMIT} octets per message).
    """

    def __init__(self, headers, body: bytes, parts):
        self.headers = headers
        self.body = body
        self.parts = parts

    def getHeaders(self, negate, *names):
        return _selectHeaders(self.headers, negate, names)

    def getBodyFile(self):
        return io.BytesIO(self.body)

    def getSize(self):
        return len(self.body)


def _selectHeaders(headers, negate, names) -> dict[str, str]:
    """
    L{imap4.IMessagePart.getHeaders} over C{[(name, value), ...]}: str keys
    (lower case) and str values, as Twisted's C{_formatHeaders} needs.
    """
    wanted = {text(n).lower() for n in names}
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if names and (key in wanted) == bool(negate):
            continue
        if key in out:
            # Twisted's dict holds one value per name; its _formatHeaders
            # splits a value on line ends, so the next field rides in the
            # same value and comes out as its own line.
            out[key] += "\r\n" + name + ": " + value
        else:
            out[key] = value
    return out


class _CRLFFile:
    """
    A message file read with bare LFs as CRLF and a CRLF after an
    unterminated last line (RFC 3501 2.1; the count L{crlfSize} makes), as
    much as Twisted's C{FileProducer} asks for: C{read}, C{tell} and the
    C{seek(0, 2)} it sizes the literal with.  C{size} is the converted
    size, known before reading.
    """

    CHUNK = 64 * 1024

    def __init__(self, f, start: int, size: int):
        self._file = f
        self._size = size
        self._pos = 0
        self._buffer = b""
        self._carry = b""
        self._last = b"\n"
        self._atEnd = False
        if f is not None:
            f.seek(start)

    def tell(self):
        return self._size if self._atEnd else self._pos

    def seek(self, offset, whence=0):
        # FileProducer sizes the literal with seek(0, 2), tell() and a seek
        # back to where it was; nothing else moves in this stream.
        if whence == 2 and offset == 0:
            self._atEnd = True
        elif whence == 0 and offset == self._pos and self._atEnd:
            self._atEnd = False
        else:
            raise OSError("a message is read from the start, once")
        return self.tell()

    def read(self, n=-1):
        while (n < 0 or len(self._buffer) < n) and self._file is not None:
            chunk = self._file.read(self.CHUNK)
            if not chunk:
                tail = self._carry
                if tail or self._last != b"\n":
                    tail += b"\r\n" if not tail.endswith(b"\n") else b""
                self._buffer += tail
                # A size from a wrong ,W= in the file name: the literal
                # must still carry the octets it announced (RFC 3501 4.3),
                # or the client reads the next response as message text.
                short = self._size - self._pos - len(self._buffer)
                if short > 0:
                    self._buffer += b" " * short
                self._carry = b""
                self._file.close()
                self._file = None
                break
            chunk = self._carry + chunk
            self._carry = b""
            if chunk.endswith(b"\r"):
                chunk, self._carry = chunk[:-1], b"\r"
            if chunk:
                self._last = chunk[-1:]
                self._buffer += chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if n < 0:
            n = len(self._buffer)
        # never more than the announced literal size
        out, self._buffer = self._buffer[: max(0, min(n, self._size - self._pos))], self._buffer[n:]
        self._pos += len(out)
        return out

    def __iter__(self):
        # Twisted's getLineCount (BODYSTRUCTURE of a text part) iterates
        # the body file for its lines.
        pending = b""
        while True:
            chunk = self.read(self.CHUNK)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.S)


def _parseHeaderBlock(f):
    """
    Thread: read the header block of an open message file.

    @return: C{(headers, bodyStart, headerSize)}: the fields as str pairs,
        the byte offset of the body, and the block's size with CRLF line
        ends (the blank line included).
    """
    data = f.read(HEADER_LIMIT)
    end = None
    for sep in (b"\n\n", b"\n\r\n"):
        i = data.find(sep)
        if i >= 0 and (end is None or i + len(sep) < end):
            end = i + len(sep)
    if data.startswith(b"\r\n"):
        end = 2
    elif data.startswith(b"\n"):
        end = 1
    if end is None:
        if len(data) < HEADER_LIMIT:
            end = len(data)  # only headers
        else:
            return [], 0, 0  # no header block we are willing to hold
    block = data[:end]
    headers: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n(?![ \t])", block):
        match = _FIELD.match(line)
        if match is None:
            continue
        headers.append((match.group(1).decode("ascii"), _fieldValue(match.group(2))))
    headerSize = len(block) + block.count(b"\n") - block.count(b"\r\n")
    if not block.endswith(b"\n"):
        headerSize += 2  # a message of headers only, unterminated (crlfSize)
    return headers, end, headerSize


def _fieldValue(raw: bytes) -> str:
    # ASCII only: Twisted's _formatHeaders encodes the values as ASCII
    value = raw.strip().decode("ascii", "replace").replace("\ufffd", "?")
    return re.sub(r"\r?\n", "\r\n", value)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _mimeParts(message):
    """
    Thread: the parts of a parsed multipart message as L{_Part}s, or
    L{None} for a single part.
    """
    if message.get_content_maintype() != "multipart" or not isinstance(message.get_payload(), list):
        return None
    out = []
    for sub in message.get_payload():
        headers = [(name, _fieldValue(value.encode("utf-8", "surrogateescape"))) for name, value in sub.items()]
        payload = sub.get_payload()
        if isinstance(payload, list):
            # a nested multipart's body is its parts; message/rfc822's is the message
            children = _mimeParts(sub)
            body = b"" if children is not None else b"".join(p.as_bytes() for p in payload)
        else:
            children, body = None, payload.encode("ascii", "surrogateescape")
        out.append(_Part(headers, _crlf(body), children))
    return out


def _readOne(f):
    headers, bodyStart, headerSize = _parseHeaderBlock(f)
    parts = None
    contentType = next((v for n, v in headers if n.lower() == "content-type"), "")
    if contentType.lstrip().lower().startswith("multipart/"):
        size = f.seek(0, 2)
        if size <= PARTS_LIMIT:
            f.seek(0)
            parts = _mimeParts(BytesParser(policy=compat32).parse(f))
    return headers, bodyStart, headerSize, parts


def _readAll(files) -> list:
    try:
        return [_readOne(f) for f in files]
    finally:
        for f in files:
            f.close()


@defer.inlineCallbacks
def readHeaders(folder, uids):
    """
    The header blocks of C{uids}, read in the store's pool a batch of
    files at a time (opened as L{virtualSizes} opens them).

    @return: Deferred firing with C{{uid: (headers, bodyStart, headerSize,
        parts)}} (C{parts}: the L{_Part}s of a multipart message, else
        L{None}); vanished messages are left out.
    """
    out = {}
    for start in range(0, len(uids), _BATCH):
        batch, files = [], []
        for uid in uids[start : start + _BATCH]:
            try:
                files.append(folder.openMessage(uid))
            except (MessageVanished, StoreError):
                continue
            batch.append(uid)
        parsed = yield folder.store.run(_readAll, files)
        out.update(zip(batch, parsed))
    return out


_FLAG_KEYS = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
}
_HEADER_KEYS = ("SUBJECT", "FROM", "TO", "CC", "BCC")
_SET = re.compile(rb"^[0-9*:,]+$")


class Matcher:
    """
    RFC 3501 6.4.4 search keys, as Twisted's C{arg_searchkeys} parses them
    (tokens, and lists for parentheses), over the store's index and the
    header blocks read in the pool.
    """

    def __init__(self, query, mailbox):
        self.query = list(query)
        self.mailbox = mailbox
        self.needsHeaders = self.needsSizes = False
        self._scan(self.query)
        uids = mailbox.view.uids
        self._lastUid = uids[-1] if uids else 0
        self._lastSeq = len(uids)

    def _scan(self, tokens):
        for token in tokens:
            if isinstance(token, list):
                self._scan(token)
            elif isinstance(token, bytes):
                key = token.upper()
                self.needsHeaders |= key in (b"HEADER",) + tuple(k.encode() for k in _HEADER_KEYS)
                self.needsSizes |= key in (b"LARGER", b"SMALLER")

    def match(self, seq, uid, head, size) -> bool:
        tokens = list(self.query)
        result = True
        while tokens:
            result = self._one(tokens, seq, uid, head, size) and result
        return result

    def _one(self, tokens, seq, uid, head, size) -> bool:
        token = tokens.pop(0)
        if isinstance(token, list):
            sub = list(token)
            result = True
            while sub:
                result = self._one(sub, seq, uid, head, size) and result
            return result
        key = token.decode("ascii", "replace").upper()
        flags = {f.lower() for f in self.mailbox.folder.flags(uid)}
        recent = uid in self.mailbox.recent
        if key == "ALL":
            return True
        if key in _FLAG_KEYS:
            return _FLAG_KEYS[key].lower() in flags
        if key.startswith("UN") and key[2:] in _FLAG_KEYS:
            return _FLAG_KEYS[key[2:]].lower() not in flags
        if key == "RECENT":
            return recent
        if key == "NEW":
            return recent and "\\seen" not in flags
        if key == "OLD":
            return not recent
        if key in ("KEYWORD", "UNKEYWORD"):
            present = text(tokens.pop(0)).lower() in flags
            return present if key == "KEYWORD" else not present
        if key in ("LARGER", "SMALLER"):
            limit = int(tokens.pop(0))
            return size is not None and (size > limit if key == "LARGER" else size < limit)
        if key == "UID":
            return uid in imap4.parseIdList(tokens.pop(0), self._lastUid)
        if key == "NOT":
            return not self._one(tokens, seq, uid, head, size)
        if key == "OR":
            first = self._one(tokens, seq, uid, head, size)
            second = self._one(tokens, seq, uid, head, size)
            return first or second
        if key in _HEADER_KEYS or key == "HEADER":
            field = key.lower() if key != "HEADER" else text(tokens.pop(0)).lower()
            needle = text(tokens.pop(0)).lower()
            values = [v.lower() for n, v in (head[0] if head else ()) if n.lower() == field]
            # RFC 3501 6.4.4: HEADER with an empty string matches any message with the field
            return any(needle in v for v in values)
        if _SET.match(token):
            return seq in imap4.parseIdList(token, self._lastSeq)
        raise imap4.IllegalQueryError(f"search key {key} is not supported here")
