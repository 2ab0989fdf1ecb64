"""
Streaming decoders for MIME content: base64 and quoted-printable
(RFC 2045 6.7, 6.8) a chunk at a time, RFC 2047 encoded words in header
values, and charsets to C{str}.  Used by BINARY (RFC 3516) and by SEARCH's
text keys; never raises on bad input (bad base64 characters are skipped,
bad C{=XX} escapes kept, unknown charsets decoded as Latin-1 fallback).
"""

from __future__ import annotations

import binascii
import codecs
import re

__all__ = ["IDENTITY_ENCODINGS", "UnknownCTE", "decoderFor", "decodeWords", "textDecoder"]

# Content-Transfer-Encodings whose content is the bytes themselves.
IDENTITY_ENCODINGS = frozenset({b"7bit", b"8bit", b"binary", b""})


class UnknownCTE(Exception):
    """
    A part's Content-Transfer-Encoding is not one we can decode: the
    protocol answers C{NO [UNKNOWN-CTE]} (RFC 3516 4.3).
    """


# Every byte that is not in the base64 alphabet (RFC 2045 6.8: ignored;
# the padding "=" too, the last quantum is padded again at the end).
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")))


class _Base64:
    def __init__(self):
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data.translate(None, _NOT_BASE64)
        usable = len(data) - len(data) % 4
        self._pending = data[usable:]
        return binascii.a2b_base64(data[:usable]) if usable else b""

    def finish(self) -> bytes:
        # A truncated last quantum: decode what fills whole bytes.
        data, self._pending = self._pending, b""
        if len(data) >= 2:
            return binascii.a2b_base64(data + b"=" * (4 - len(data)))
        return b""


def _qpLine(line: bytes, ended: bool) -> bytes:
    """
    One quoted-printable line, without its line end.  RFC 2045 6.7: the
    whitespace that ends a line is transport padding and is deleted (rule
    3), then a final C{=} is a soft line break (rule 5), even when padding
    followed it; a hard line break is CRLF in the decoded content.
    """
    line = line.rstrip(b" \t")
    if line.endswith(b"="):
        return binascii.a2b_qp(line[:-1])
    return binascii.a2b_qp(line) + (b"\r\n" if ended else b"")


class _QuotedPrintable:
    def __init__(self):
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        # Only whole lines: an escape or a soft break can straddle chunks.
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if not cut:
            return b""
        lines = data[: cut - 1].split(b"\n")
        return b"".join(_qpLine(line[:-1] if line.endswith(b"\r") else line, True) for line in lines)

    def finish(self) -> bytes:
        data, self._pending = self._pending, b""
        return _qpLine(data, False) if data else b""


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


def decoderFor(encoding: bytes | None):
    """
    A streaming decoder (C{feed(bytes) -> bytes}, C{finish() -> bytes}) for
    a Content-Transfer-Encoding value (any case, surrounding blanks).

    @raise UnknownCTE: an encoding other than 7bit, 8bit, binary, base64
        and quoted-printable.
    """
    name = (encoding or b"").strip().lower()
    if name in IDENTITY_ENCODINGS:
        return _Identity()
    if name == b"base64":
        return _Base64()
    if name == b"quoted-printable":
        return _QuotedPrintable()
    raise UnknownCTE(name.decode("ascii", "replace"))


def _codec(charset: str | None) -> str:
    try:
        return codecs.lookup(charset or "us-ascii").name
    except (LookupError, TypeError, ValueError):
        # An unknown charset: Latin-1 maps every byte, so nothing is lost
        # for ASCII searches.
        return "latin-1"


def textDecoder(charset: bytes | str | None):
    """
    An incremental decoder from a body's charset to C{str} (undecodable
    bytes replaced; US-ASCII read as UTF-8, since 8-bit text labelled
    US-ASCII is usually UTF-8).
    """
    if isinstance(charset, bytes):
        charset = charset.decode("ascii", "replace")
    name = _codec(charset)
    if name == "ascii":
        name = "utf-8"
    return codecs.getincrementaldecoder(name)(errors="replace")


_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BLANK_BETWEEN = re.compile(rb"(\?=)[ \t\r\n]+(=\?)")


def decodeWords(value: bytes) -> str:
    """
    A header value with RFC 2047 encoded words decoded; white space
    between adjacent encoded words dropped (RFC 2047 6.2); raw 8-bit bytes
    read as UTF-8 (undecodable bytes replaced).
    """
    value = _BLANK_BETWEEN.sub(rb"\1\2", value)
    out = []
    pos = 0
    for match in _WORD.finditer(value):
        out.append(value[pos : match.start()].decode("utf-8", "replace"))
        charset, kind, text = match.groups()
        charset = charset.split(b"*", 1)[0].decode("ascii", "replace")
        try:
            if kind in b"bB":
                raw = binascii.a2b_base64(text + b"=" * (-len(text) % 4))
            else:
                raw = binascii.a2b_qp(text.replace(b"_", b" "), header=True)
        except (binascii.Error, ValueError):
            out.append(match.group(0).decode("ascii", "replace"))
        else:
            out.append(raw.decode(_codec(charset), "replace"))
        pos = match.end()
    out.append(value[pos:].decode("utf-8", "replace"))
    return "".join(out)
