"""
The MIME structure of a stored message, for FETCH: ENVELOPE, BODY and
BODYSTRUCTURE (RFC 3501 7.4.2), BODY[section]<partial> (RFC 3501 6.4.5)
and BINARY[section] / BINARY.SIZE (RFC 3516).

L{parse} reads a message file once, streaming it, and keeps only what the
answers need: per part its offsets in the file, its sizes and line counts
as IMAP counts them (every line end as CRLF, like Dovecot's virtual size)
and the few header fields BODYSTRUCTURE and ENVELOPE report.  The parsed
L{Message} holds no body bytes, so a server can cache one per message.
Section contents are then read from the file again by range and streamed
in bounded chunks with bare LFs turned into CRLF on the way.

Everything here blocks on file reads: run it in the store's thread pool,
never on the reactor thread.  Nothing raises on bad MIME (missing or
broken boundaries, bad parameters, unknown encodings): the structure is
then what Dovecot reports for the same bytes, which the tests check byte
for byte against Debian's Dovecot.

Using it from a server (all in the store's thread pool)::

    f = folder.openMessage(uid)
    message = parse(f)                      # cache per (folder, uid)
    render(message.envelope())              # ENVELOPE value, IMAP syntax
    render(message.bodystructure())         # BODYSTRUCTURE (False: BODY)
    message.size                            # RFC822.SIZE (= len(BODY[]))
    section = message.section(f, "1.2.MIME")   # or "HEADER.FIELDS", [b"From"]
    section.sizeFor((0, 100))               # the literal's length
    for chunk in section.chunks(f, (0, 100)):   # <0.100>, CRLF, <= 64 KiB
        ...
    binary = message.binary("2")            # raises UnknownCTE
    binary.size(f); binary.chunks(f, None)  # BINARY.SIZE, BINARY[2]

A missing part gives an empty section (send C{""}); a malformed section
raises L{SectionError} (answer BAD).
"""

from __future__ import annotations

from twisted_maillab.imap import mimeheader
from twisted_maillab.imap.mimedecode import UnknownCTE

__all__ = [
    "CHUNK",
    "Message",
    "Multipart",
    "Part",
    "SectionError",
    "UnknownCTE",
    "parse",
    "render",
    "sectionChunks",
    "sectionSize",
]

# Chunks streamed to the caller are at most this many bytes.
CHUNK = 64 * 1024
# Header text kept per part for parsing (longer headers are counted, not
# kept: a hostile 30 MB header block must not sit in memory).
_HEADER_KEEP = 64 * 1024
_READ = 256 * 1024
# The header fields each part keeps (BODYSTRUCTURE's and ENVELOPE's).
_MIME_FIELDS = frozenset(
    {
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-disposition",
        b"content-language",
        b"content-location",
        b"content-md5",
    }
)
_KEEP_FIELDS = _MIME_FIELDS | frozenset(mimeheader.ENVELOPE_FIELDS)


class SectionError(ValueError):
    """
    A section specification that is not valid RFC 3501 syntax.
    """


class _Lines:
    """
    A file's lines (LF-terminated, the LF included), with running counts:
    raw offset, virtual offset (bare LF counted as CRLF) and LFs.  Lines
    longer than L{CHUNK} come in pieces (never splitting a CRLF);
    C{atStart} says whether the peeked piece begins a line.
    """

    __slots__ = ("_f", "_buf", "_pos", "_eof", "offset", "voffset", "lfs", "lastTerm", "atStart", "_next", "_nextStart")

    def __init__(self, f):
        self._f = f
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.offset = 0
        self.voffset = 0
        self.lfs = 0
        # The terminator of the last consumed line: b"", b"\n" or b"\r\n".
        self.lastTerm = b""
        self.atStart = True
        self._next = None
        self._nextStart = True

    def peek(self):
        if self._next is not None:
            return self._next
        while True:
            buf = self._buf
            nl = buf.find(b"\n", self._pos)
            if nl >= 0 and nl - self._pos < CHUNK:
                line = buf[self._pos : nl + 1]
                break
            if len(buf) - self._pos >= CHUNK or (self._eof and self._pos < len(buf)):
                end = min(self._pos + CHUNK, len(buf))
                if buf[end - 1 : end] == b"\r" and end - self._pos > 1:
                    end -= 1
                line = buf[self._pos : end]
                break
            if self._eof:
                return None
            self._refill()
        self._next = line
        return line

    def skip(self, delimiters: bool):
        """
        Consume whole lines in bulk up to the next line starting with
        C{--} (with C{delimiters}) or to the end: a body's lines need
        counting, not looking at one by one.
        """
        if self._next is not None:
            return
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos < 2 and not self._eof:
                self._refill()
                continue
            if self.atStart and delimiters and buf.startswith(b"--", pos):
                return
            found = buf.find(b"\n--", pos) if delimiters else -1
            end = found + 1 if found >= 0 else buf.rfind(b"\n", pos) + 1
            if end > pos:
                region = buf[pos:end]
                lfs = region.count(b"\n")
                self.lfs += lfs
                self.offset += len(region)
                # The region starts at a line start, so no CRLF straddles it.
                self.voffset += len(region) + lfs - region.count(b"\r\n")
                self.lastTerm = b"\r\n" if region.endswith(b"\r\n") else b"\n"
                self.atStart = True
                self._pos = end
            if found >= 0 or self._eof:
                return
            if end <= pos and len(buf) - pos >= CHUNK:
                # One long line: let peek() cut it into pieces.
                return
            self._refill()

    def _refill(self):
        data = self._f.read(_READ)
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        if not data:
            self._eof = True

    def advance(self):
        line = self._next
        self._next = None
        self._pos += len(line)
        self.offset += len(line)
        self.atStart = line.endswith(b"\n")
        if self.atStart:
            self.lfs += 1
            if line.endswith(b"\r\n"):
                self.voffset += len(line)
                self.lastTerm = b"\r\n"
            else:
                self.voffset += len(line) + 1
                self.lastTerm = b"\n"
        else:
            self.voffset += len(line)
            self.lastTerm = b""


def _boundaryOf(line: bytes, boundaries: list[bytes]):
    """
    Which enclosing boundary a line is a delimiter of (RFC 2046 5.1.1),
    innermost first: C{(index, isClose)}, or C{None}.
    """
    for index in range(len(boundaries) - 1, -1, -1):
        b = boundaries[index]
        if line.startswith(b, 2):
            rest = line[2 + len(b) :]
            return index, rest.startswith(b"--")
    return None


def _isDelimiter(lines: _Lines, line: bytes, boundaries: list[bytes]) -> bool:
    """
    Whether the peeked C{line} starts a delimiter of an enclosing
    multipart (only whole lines can).
    """
    return bool(boundaries) and lines.atStart and line[:2] == b"--" and _boundaryOf(line, boundaries) is not None


class Part:
    """
    One MIME entity of a message: where it is in the file, its sizes as
    IMAP counts them, its MIME fields; C{children} for a multipart,
    C{message} (the encapsulated L{Part}) for message/rfc822.

    Offsets: C{start} (the header), C{headerEnd} (before C{bodyStart}
    only when a delimiter cut the header short), C{bodyStart}, C{end}
    (raw file offsets); C{vHeader} and C{vBody} virtual sizes; C{hLines} and
    C{lines}: LFs in the header and the body.
    """

    __slots__ = (
        "start",
        "headerEnd",
        "bodyStart",
        "end",
        "vHeader",
        "vBody",
        "hLines",
        "lines",
        "fields",
        "ctype",
        "subtype",
        "params",
        "children",
        "message",
        "isMessage",
    )

    def __init__(self):
        self.children = None
        self.message = None
        self.fields = {}

    @property
    def isMultipart(self) -> bool:
        return self.children is not None

    @property
    def isRFC822(self) -> bool:
        return self.message is not None

    @property
    def encoding(self) -> bytes:
        value = self.fields.get(b"content-transfer-encoding")
        return (mimeheader.unfold(value).strip() or b"7bit").lower() if value is not None else b"7bit"


def _parsePart(lines: _Lines, boundaries: list[bytes], isMessage: bool, digest: bool) -> Part:
    part = Part()
    part.isMessage = isMessage
    part.start = lines.offset
    vStart = lines.voffset
    lfStart = lines.lfs
    header = bytearray()
    blank = False
    while True:
        line = lines.peek()
        if line is None:
            break
        if _isDelimiter(lines, line, boundaries):
            break
        wasStart = lines.atStart
        lines.advance()
        if wasStart and line in (b"\n", b"\r\n"):
            blank = True
            break
        if len(header) < _HEADER_KEEP:
            header += line
    part.bodyStart = part.headerEnd = lines.offset
    part.vHeader = lines.voffset - vStart
    part.hLines = lines.lfs - lfStart
    if not blank and lines.peek() is not None:
        if lines.offset > part.start and lines.lastTerm:
            # A header cut short by a delimiter: its last line end belongs
            # to the delimiter, so HEADER and MIME leave it out (Dovecot).
            part.headerEnd -= len(lines.lastTerm)
            part.vHeader -= 2
            part.hLines -= 1
    fields = {}
    # Only a message (the top or an encapsulated one) needs ENVELOPE's.
    keep = _KEEP_FIELDS if isMessage else _MIME_FIELDS
    for name, value in mimeheader.parseFields(bytes(header)):
        if name in keep and name not in fields:
            fields[name] = value
    part.fields = fields
    contentType = mimeheader.parseContentType(fields.get(b"content-type"))
    if contentType is None:
        if digest:
            contentType = (b"message", b"rfc822", [])
        else:
            contentType = (b"text", b"plain", [(b"charset", b"us-ascii")])
    part.ctype, part.subtype, part.params = contentType
    ctype = part.ctype.lower()
    subtype = part.subtype.lower()
    vBody = lines.voffset
    lfBody = lines.lfs
    boundary = None
    floor = None
    if ctype == b"multipart":
        for name, value in part.params:
            if name.lower() == b"boundary":
                boundary = value
                break
    if ctype == b"multipart" and subtype:
        # Without a boundary the parts cannot be found: Dovecot reports one
        # empty text/plain part and skips the body.
        part.children = []
    if boundary is not None:
        inner = boundaries + [boundary]
        mine = len(inner) - 1
        childDigest = subtype == b"digest"
        # Preamble, then parts until the close delimiter, then epilogue:
        # all end at an enclosing boundary or at the end of the file.
        state = "preamble"
        while True:
            lines.skip(True)
            line = lines.peek()
            if line is None:
                break
            found = _boundaryOf(line, inner) if lines.atStart and line[:2] == b"--" else None
            if found is None:
                lines.advance()
                continue
            index, close = found
            if index != mine:
                break
            if state == "epilogue":
                if _boundaryOf(line, boundaries) is not None:
                    # An enclosing multipart with the same boundary ends
                    # here (Dovecot checks the outer ones after a close).
                    break
                lines.advance()
                continue
            lines.advance()
            if not lines.lastTerm and lines.peek() is None:
                # A delimiter cut off by the end of the file ends the last
                # part but starts none (Dovecot).
                break
            if close:
                state = "epilogue"
                # The close delimiter's own line end stays in the part
                # even when an outer delimiter follows at once (Dovecot).
                floor = (lines.offset, lines.voffset, lines.lfs)
                continue
            state = "parts"
            part.children.append(_parsePart(lines, inner, False, childDigest))
    elif ctype == b"message" and subtype == b"rfc822":
        inner = part.message = _parsePart(lines, boundaries, True, False)
        # The encapsulated header keeps a line end that a delimiter right
        # after it would take (a header without its blank line).
        cut = inner.bodyStart != inner.headerEnd
        floor = (inner.bodyStart, vBody + inner.vHeader + 2 * cut, lfBody + inner.hLines + cut)
    else:
        while True:
            lines.skip(bool(boundaries))
            line = lines.peek()
            if line is None:
                break
            if _isDelimiter(lines, line, boundaries):
                break
            lines.advance()
    # The line end before a delimiter belongs to the delimiter (RFC 2046
    # 5.1.1); at the end of the file nothing is taken off.
    end = lines.offset
    vEnd = lines.voffset
    lfEnd = lines.lfs
    if lines.peek() is not None and lines.lastTerm:
        end -= len(lines.lastTerm)
        vEnd -= 2
        lfEnd -= 1
    if floor is not None and end < floor[0]:
        end, vEnd, lfEnd = floor
    if end < part.bodyStart:
        end, vEnd, lfEnd = part.bodyStart, vBody, lfBody
    part.end = end
    part.vBody = vEnd - vBody
    part.lines = lfEnd - lfBody
    return part


def parse(f) -> "Message":
    """
    Parse a message file (binary, seekable, at any position: it is read
    from offset 0).  Blocks: call in a thread.
    """
    f.seek(0)
    lines = _Lines(f)
    root = _parsePart(lines, [], True, False)
    return Message(root, lines.voffset)


class Multipart(list):
    """
    A multipart BODY/BODYSTRUCTURE: C{[child, ..., subtype, *extension]}
    where the leading children are themselves bodies; RFC 3501 9 writes
    them without a space between (C{body-type-mpart = 1*body SP subtype}),
    which L{render} does.
    """


def _nilParams(params):
    if not params:
        return None
    flat = []
    for name, value in params:
        flat += [name, value]
    return flat


def _disposition(part):
    value = mimeheader.parseDisposition(part.fields.get(b"content-disposition"))
    if value is None:
        return None
    return [value[0], _nilParams(value[1])]


def _language(part):
    return mimeheader.parseLanguage(part.fields.get(b"content-language"))


def _text(part, name):
    value = part.fields.get(name)
    return None if value is None else mimeheader.unfold(value)


def _bodyOf(part: Part, extended: bool):
    if part.children is not None:
        children = part.children or [_emptyPart()]
        out = Multipart(_bodyOf(child, extended) for child in children)
        out.append(part.subtype)
        if extended:
            out += [_nilParams(part.params), _disposition(part), _language(part), _text(part, b"content-location")]
        return out
    encoding = part.fields.get(b"content-transfer-encoding")
    params = part.params
    if part.ctype.lower() == b"text" and not any(name.lower() == b"charset" for name, _ in params):
        # RFC 2045 5.2's default charset, which Dovecot reports.
        params = params + [(b"charset", b"us-ascii")]
    out = [
        part.ctype,
        part.subtype,
        _nilParams(params),
        _text(part, b"content-id"),
        _text(part, b"content-description"),
        mimeheader.unfold(encoding).strip() or b"7bit" if encoding is not None else b"7bit",
        part.vBody,
    ]
    if part.message is not None:
        # Dovecot writes the type of an encapsulated message in lower case.
        out[:2] = [b"message", b"rfc822"]
        out += [mimeheader.envelopeFromFields(part.message.fields), _bodyOf(part.message, extended), part.lines]
    elif part.ctype.lower() == b"text":
        out.append(part.lines)
    if extended:
        out += [_text(part, b"content-md5"), _disposition(part), _language(part), _text(part, b"content-location")]
    return out


def _plainAscii(part) -> bool:
    if part.children is not None or part.message is not None:
        return False
    if (part.ctype.lower(), part.subtype.lower()) != (b"text", b"plain"):
        return False
    if any((n.lower(), v.lower()) != (b"charset", b"us-ascii") for n, v in part.params):
        return False
    if part.encoding != b"7bit":
        return False
    return not any(name in part.fields for name in (b"content-id", b"content-description"))


def _emptyPart():
    part = Part()
    part.ctype, part.subtype, part.params = b"text", b"plain", [(b"charset", b"us-ascii")]
    part.vBody = part.lines = 0
    return part


class Message:
    """
    A parsed message: L{envelope}, L{bodystructure}, L{section} and
    L{binary}.  Holds offsets and a few header fields, never body bytes.

    @ivar root: the top L{Part}.
    @ivar size: RFC822.SIZE, the whole message with CRLF line ends.
    """

    __slots__ = ("root", "size")

    def __init__(self, root: Part, size: int):
        self.root = root
        self.size = size

    def envelope(self) -> list:
        """
        ENVELOPE: see L{mimeheader.envelopeFromFields}.
        """
        return mimeheader.envelopeFromFields(self.root.fields)

    def bodystructure(self, extended: bool = True):
        """
        BODYSTRUCTURE (C{extended=True}) or BODY (C{False}): nested lists
        of bytes / int / C{None} (NIL), L{Multipart} for multiparts; write
        them with L{render}.
        """
        if not extended and _plainAscii(self.root):
            # Dovecot answers BODY for plain US-ASCII text from a cache
            # flag, in canonical lower case.
            return [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", self.root.vBody, self.root.lines]
        return _bodyOf(self.root, extended)

    def part(self, numbers) -> Part | None:
        """
        The part numbered C{numbers} (RFC 3501 6.4.5: C{[1, 2]} for
        "1.2"), or C{None} if there is none.  Part 1 of a non-multipart
        message is its body.
        """
        node = self.root
        # body: node was reached as a single-part message's part 1 (its
        # body), whose only subparts are an encapsulated message's.
        body = None
        for n in numbers:
            if node.children is not None and body is None:
                kids, body = node.children, False
            elif body is None and node is self.root:
                kids, body = [node], True
            elif node.message is not None:
                inner = node.message
                if inner.children is not None:
                    kids, body = inner.children, False
                else:
                    kids, body = [inner], True
            elif body:
                return None
            else:
                # Dovecot lets a leaf inside a multipart be its own part 1
                # (once).
                kids, body = [node], True
            if not 1 <= n <= len(kids):
                return None
            node = kids[n - 1]
            if not body:
                body = None
        return node

    def section(self, f, spec: str, fields=None) -> "Section":
        """
        What BODY[spec] sends.  C{spec} is RFC 3501's section text without
        brackets or field list: C{""}, C{"HEADER"}, C{"HEADER.FIELDS"},
        C{"HEADER.FIELDS.NOT"}, C{"TEXT"}, C{"1.2"}, C{"1.2.MIME"},
        C{"3.HEADER"}...; C{fields} the header field names (bytes or str)
        for the C{.FIELDS} forms.  A part that does not exist gives an
        empty section (Dovecot sends C{""}).  Reads the file only for the
        C{HEADER.FIELDS} forms.

        @raise SectionError: C{spec} is not a section.
        """
        from twisted_maillab.imap.sections import resolve

        return resolve(self, f, spec, fields)

    def binary(self, spec: str) -> "BinarySection":
        """
        What BINARY[spec] sends (RFC 3516): C{spec} is C{""} or part
        numbers; the part's content with its transfer encoding undone.

        @raise UnknownCTE: the part's encoding is unknown (answer
            C{NO [UNKNOWN-CTE]}).
        @raise SectionError: C{spec} is not part numbers.
        """
        from twisted_maillab.imap.sections import resolveBinary

        return resolveBinary(self, spec)


def render(value) -> bytes:
    """
    IMAP syntax for a structure from L{Message.envelope} or
    L{Message.bodystructure}: C{None} as NIL, int as a number, bytes as a
    quoted string (a literal when it holds 8-bit bytes, CR, LF or NUL),
    lists parenthesised.
    """
    out = bytearray()
    _render(value, out)
    return bytes(out)


def _render(value, out):
    if value is None:
        out += b"NIL"
    elif isinstance(value, int):
        out += b"%d" % value
    elif isinstance(value, bytes):
        # Dovecot sends a literal for quotes and backslashes too, and for
        # values that were folded; any IMAP parser reads both forms.
        if isinstance(value, mimeheader.Literal) or any(c >= 0x80 or c in (0, 10, 13, 34, 92) for c in value):
            out += b"{%d}\r\n" % len(value) + value
        else:
            out += b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    elif isinstance(value, mimeheader.AddressList):
        out += b"("
        for item in value:
            _render(item, out)
        out += b")"
    elif isinstance(value, Multipart):
        out += b"("
        rest = False
        for item in value:
            if isinstance(item, list) and not rest:
                _render(item, out)
                continue
            out += b" "
            rest = True
            _render(item, out)
        out += b")"
    else:
        out += b"("
        for i, item in enumerate(value):
            if i:
                out += b" "
            _render(item, out)
        out += b")"


def sectionChunks(f, message: Message, spec: str, fields=None, partial=None):
    """
    BODY[spec]<partial> of C{message} (parsed from C{f}) in CRLF chunks of
    at most L{CHUNK} bytes: L{Message.section} then its C{chunks}.
    """
    return message.section(f, spec, fields).chunks(f, partial)


def sectionSize(f, message: Message, spec: str, fields=None, partial=None) -> int:
    """
    The octets L{sectionChunks} yields; reads nothing but a header for
    the C{HEADER.FIELDS} forms.
    """
    return message.section(f, spec, fields).sizeFor(partial)
