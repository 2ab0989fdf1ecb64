"""
BODY[section] and BINARY[section] contents of a parsed message (RFC 3501
6.4.5, RFC 3516 4.2): which bytes of the file, streamed in chunks of at
most L{structure.CHUNK} bytes with every bare LF sent as CRLF, and the
<start.count> partial applied to what is sent.  Blocks on file reads: run
in the store's thread pool.
"""

from __future__ import annotations

import re

from twisted_maillab.imap.mimedecode import IDENTITY_ENCODINGS, decoderFor
from twisted_maillab.imap.structure import CHUNK, SectionError

__all__ = ["Section", "BinarySection", "CompositeBinary", "resolve", "resolveBinary", "crlfChunks"]

_SUFFIXES = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
# Raw bytes read at once: with every byte a bare LF the CRLF output is
# twice as long and must still fit in CHUNK.
_RAW = CHUNK // 2
# The longest header block a HEADER.FIELDS answer reads.
_HEADER_LIMIT = 8 * 1024 * 1024


def _parseSpec(spec: str):
    text = spec.upper() if isinstance(spec, str) else spec.decode("ascii").upper()
    numbers = []
    rest = text
    while rest:
        head, dot, tail = rest.partition(".")
        if not head.isdigit():
            break
        if head.startswith("0"):
            raise SectionError(f"bad part number in section {spec!r}")
        numbers.append(int(head))
        rest = tail
        if not dot:
            break
    if rest and rest not in _SUFFIXES:
        raise SectionError(f"bad section {spec!r}")
    if rest == "MIME" and not numbers:
        raise SectionError("MIME needs a part number")
    return numbers, rest


def crlfChunks(f, ranges, partial=None):
    """
    Stream raw file C{ranges} (C{[(offset, length)]}) with bare LFs as
    CRLF, chunks of at most L{CHUNK} bytes, skipping C{partial[0]} bytes of
    the output and stopping after C{partial[1]} (RFC 3501 6.4.5 <partial>).
    """
    skip, left = (0, None) if partial is None else partial
    for offset, length in ranges:
        f.seek(offset)
        held = b""
        while length > 0 or held:
            raw = f.read(min(_RAW, length)) if length > 0 else b""
            if not raw:
                length = 0
            length -= len(raw)
            raw = held + raw
            held = b""
            if length > 0 and raw.endswith(b"\r"):
                # The LF after this CR comes with the next read.
                raw, held = raw[:-1], b"\r"
            out = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if skip:
                if skip >= len(out):
                    skip -= len(out)
                    continue
                out = out[skip:]
                skip = 0
            if left is not None:
                out = out[:left]
                left -= len(out)
            if out:
                for start in range(0, len(out), CHUNK):
                    yield out[start : start + CHUNK]
            if left == 0:
                return


class Section:
    """
    One BODY[section]: C{ranges} of the file (C{[(offset, length)]}) or
    synthesised C{data} (CRLF already), and C{size}, the octets L{chunks}
    yields without a partial.
    """

    __slots__ = ("ranges", "data", "size")

    def __init__(self, ranges=(), data=None, size=0):
        self.ranges = list(ranges)
        self.data = data
        self.size = size

    def sizeFor(self, partial=None) -> int:
        """
        Octets sent for C{partial=(start, count)} (RFC 3501 6.4.5: a
        start beyond the end sends an empty string).
        """
        if partial is None:
            return self.size
        start, count = partial
        return max(0, min(count, self.size - start))

    def chunks(self, f, partial=None):
        """
        The section's bytes, CRLF line ends, in chunks of at most
        L{CHUNK}; C{partial=(start, count)} as in BODY[...]<start.count>.
        """
        if self.data is not None:
            data = self.data
            if partial is not None:
                data = data[partial[0] : partial[0] + partial[1]]
            for start in range(0, len(data), CHUNK):
                yield data[start : start + CHUNK]
            return
        yield from crlfChunks(f, self.ranges, partial)


def _fieldBlocks(header: bytes):
    """
    Each header field of a block with its continuation lines, raw:
    C{(lower-cased name or None, bytes)}.
    """
    blocks: list[list] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and blocks:
            blocks[-1][1] += line
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t").lower() if colon > 0 else None
        blocks.append([name, line])
    return blocks


def _headerFields(f, part, fields, negate):
    f.seek(part.start)
    header = f.read(min(part.bodyStart - part.start, _HEADER_LIMIT))
    wanted = {(n.encode("ascii", "replace") if isinstance(n, str) else n).lower() for n in fields or ()}
    out = bytearray()
    for name, block in _fieldBlocks(header):
        # A line without a colon is no field: .FIELDS.NOT keeps it, and
        # an unterminated last line stays unterminated (Dovecot).
        if (name is not None and name in wanted) != negate:
            out += block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    hadBlank = header.endswith(b"\n\n") or header.endswith(b"\n\r\n") or header in (b"\n", b"\r\n")
    if hadBlank or not negate:
        # Dovecot ends a .FIELDS.NOT selection with the blank line only if
        # the header had one (a header running to the end of the file has
        # none); .FIELDS always gets it (RFC 3501 6.4.5).
        out += b"\r\n"
    return Section(data=bytes(out), size=len(out))


def _header(part):
    return Section([(part.start, part.headerEnd - part.start)], size=part.vHeader)


def _body(part):
    return Section([(part.bodyStart, part.end - part.bodyStart)], size=part.vBody)


def resolve(message, f, spec, fields=None) -> Section:
    numbers, suffix = _parseSpec(spec)
    if not numbers:
        root = message.root
        if suffix == "":
            return Section([(0, root.end)], size=message.size)
        target = root
    else:
        node = message.part(numbers)
        if node is None:
            return Section()
        if suffix == "":
            return _body(node)
        if suffix == "MIME":
            return _header(node)
        # HEADER and TEXT of a part are those of its encapsulated message.
        target = node.message
        if target is None:
            return Section()
    if suffix == "HEADER":
        return _header(target)
    if suffix == "TEXT":
        return _body(target)
    return _headerFields(f, target, fields, suffix == "HEADER.FIELDS.NOT")


class BinarySection:
    """
    One BINARY[section] (RFC 3516): the part's content decoded.  L{size}
    decodes the whole part once (BINARY.SIZE); L{chunks} streams it.
    """

    __slots__ = ("section", "encoding")

    def __init__(self, section: Section, encoding: bytes):
        self.section = section
        self.encoding = encoding

    def _decoded(self, f):
        decoder = decoderFor(self.encoding)
        qp = self.encoding == b"quoted-printable"
        for offset, length in self.section.ranges:
            f.seek(offset)
            while length > 0:
                raw = f.read(min(_RAW, length))
                if not raw:
                    break
                length -= len(raw)
                out = decoder.feed(raw)
                yield _crlf(out) if qp else out
        out = decoder.finish()
        if out:
            yield _crlf(out) if qp else out

    @property
    def decoded(self) -> bool:
        """
        Whether the content is decoded (not sent as stored): Dovecot then
        answers with a literal8 (RFC 3516 4.2), whatever the octets.
        """
        return self.encoding not in IDENTITY_ENCODINGS

    def size(self, f) -> int:
        """
        BINARY.SIZE: decodes the part when it is encoded.
        """
        if self.encoding in IDENTITY_ENCODINGS:
            return self.section.size
        return sum(len(chunk) for chunk in self._decoded(f))

    def chunks(self, f, partial=None):
        """
        The decoded content in chunks of at most L{CHUNK} bytes.
        """
        if self.encoding in IDENTITY_ENCODINGS:
            yield from self.section.chunks(f, partial)
            return
        yield from _window(self._decoded(f), partial)


class CompositeBinary:
    """
    BINARY[section] of a multipart or message/rfc822 part: its body with
    every base64 or quoted-printable leaf inside decoded and its
    Content-Transfer-Encoding field rewritten to C{binary}, as Dovecot
    sends it (RFC 3516 leaves this case open).
    """

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    def _pieces(self, f):
        cursor = self.node.bodyStart
        for leaf in _encodedLeaves(self.node):
            if leaf.start > cursor:
                yield from crlfChunks(f, [(cursor, leaf.start - cursor)])
            f.seek(leaf.start)
            header = _crlf(f.read(leaf.bodyStart - leaf.start))
            yield _CTE_FIELD.sub(b"Content-Transfer-Encoding: binary", header, count=1)
            yield from BinarySection(_body(leaf), leaf.encoding)._decoded(f)
            cursor = leaf.end
        if self.node.end > cursor:
            yield from crlfChunks(f, [(cursor, self.node.end - cursor)])

    @property
    def decoded(self) -> bool:
        """
        See L{BinarySection.decoded}: some leaf inside is decoded.
        """
        return next(_encodedLeaves(self.node), None) is not None

    def size(self, f) -> int:
        return sum(len(piece) for piece in self._pieces(f))

    def chunks(self, f, partial=None):
        yield from _window(self._pieces(f), partial)


_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*")


def _encodedLeaves(node):
    """
    The base64 and quoted-printable leaves below C{node}, in file order.
    """
    inner = node.children if node.children is not None else [node.message] if node.message is not None else []
    for child in inner:
        if child.children is not None or child.message is not None:
            yield from _encodedLeaves(child)
        elif child.encoding in (b"base64", b"quoted-printable"):
            yield child


def _window(pieces, partial):
    """
    C{pieces} cut to C{partial=(start, count)} and re-chunked to at most
    L{CHUNK} bytes.
    """
    skip, left = (0, None) if partial is None else partial
    for out in pieces:
        if skip:
            if skip >= len(out):
                skip -= len(out)
                continue
            out, skip = out[skip:], 0
        if left is not None:
            out = out[:left]
            left -= len(out)
        for start in range(0, len(out), CHUNK):
            yield out[start : start + CHUNK]
        if left == 0:
            return


def _crlf(data: bytes) -> bytes:
    # Quoted-printable text's hard line breaks are CRLF (RFC 2045 6.7 rule 4).
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def resolveBinary(message, spec) -> BinarySection:
    numbers, suffix = _parseSpec(spec)
    if suffix:
        raise SectionError(f"BINARY takes part numbers only, not {spec!r}")
    if not numbers:
        return BinarySection(Section([(0, message.root.end)], size=message.size), b"")
    node = message.part(numbers)
    if node is None:
        return BinarySection(Section(), b"")
    if node.children is not None or node.message is not None:
        return CompositeBinary(node)
    encoding = node.encoding
    decoderFor(encoding)  # raises UnknownCTE now, before anything is sent
    return BinarySection(_body(node), encoding)
