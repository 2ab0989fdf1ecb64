"""
APPEND with a literal8 (RFC 3516 4.3): binary MIME parts stored as base64.

A message APPENDed as C{~{N}} may carry parts with
C{Content-Transfer-Encoding: binary} and NUL octets.  IMAP can only send
such content back in a literal8, and only for BINARY[]: a BODY[] literal
must not hold NUL (RFC 3501 C{CHAR8}), nor may BODY[] be a literal8.
Rather than refuse binary content (RFC 3516 4.3 allows a server that
cannot store it to answer C{NO [UNKNOWN-CTE]}), we do what Dovecot does:
each leaf part that is declared C{binary} or holds a NUL is stored
base64-encoded, with its C{Content-Transfer-Encoding} field rewritten.
BINARY[part] decodes it again, so the client gets back exactly the octets
it sent; BODY[part] is 7-bit base64 that any client can read.  Everything
else of the message is kept byte for byte.

Blocking (file reads and base64 of the whole part): run in the store's
thread pool.
"""

from __future__ import annotations

import base64
import io
import re
import tempfile

from twisted_maillab.imap import structure
from twisted_maillab.imap.appendspool import SPOOL_MIN

__all__ = ["storableBinary"]

_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
_CHUNK = 57 * 1024  # a multiple of 57 octets: 76 base64 characters a line
_SCAN = 64 * 1024


def _leaves(part):
    if part.children is not None:
        for child in part.children:
            yield from _leaves(child)
    elif part.message is not None:
        yield from _leaves(part.message)
    else:
        yield part


def _ranged(f, start: int, end: int, size: int):
    """
    The octets C{start} to C{end} of C{f} in chunks of at most C{size}
    (fewer if the file is shorter).
    """
    f.seek(start)
    left = end - start
    while left > 0:
        chunk = f.read(min(size, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _hasNul(f, start: int, end: int) -> bool:
    return any(b"\0" in chunk for chunk in _ranged(f, start, end, _SCAN))


def _copy(f, out, start: int, end: int) -> None:
    for chunk in _ranged(f, start, end, _SCAN):
        out.write(chunk)


def _newHeader(header: bytes) -> bytes:
    """
    A part's header block (with the blank line that ends it) declaring
    base64.
    """
    if _CTE_FIELD.search(header):
        return _CTE_FIELD.sub(b"Content-Transfer-Encoding: base64", header, count=1)
    for blank in (b"\r\n", b"\n"):
        if header == blank or header.endswith(blank + blank):
            return header[: len(header) - len(blank)] + b"Content-Transfer-Encoding: base64" + blank + blank
    return header


def _encode(f, out, start: int, end: int) -> None:
    for chunk in _ranged(f, start, end, _CHUNK):
        encoded = base64.b64encode(chunk)
        for i in range(0, len(encoded), 76):
            out.write(encoded[i : i + 76] + b"\r\n")


def storableBinary(source):
    """
    The message to store for an APPEND literal8.

    @param source: the literal: L{bytes} or a seekable binary file.
    @return: C{source} itself when no part needs encoding, else a new
        binary file positioned at 0 (the caller closes it).
    """
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    message = structure.parse(f)
    todo = [
        leaf
        for leaf in _leaves(message.root)
        if leaf.end > leaf.bodyStart
        and leaf.bodyStart == leaf.headerEnd  # a complete header block
        and (leaf.encoding == b"binary" or (leaf.encoding in (b"7bit", b"8bit") and _hasNul(f, leaf.bodyStart, leaf.end)))
    ]
    if not todo:
        f.seek(0)
        return source
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MIN, prefix="maillab-append-")
    try:
        cursor = 0
        for leaf in todo:
            _copy(f, out, cursor, leaf.start)
            f.seek(leaf.start)
            header = f.read(leaf.bodyStart - leaf.start)
            out.write(_newHeader(header))
            _encode(f, out, leaf.bodyStart, leaf.end)
            cursor = leaf.end
        f.seek(0, io.SEEK_END)
        _copy(f, out, cursor, f.tell())
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out
