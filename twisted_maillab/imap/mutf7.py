"""
Modified UTF-7 mailbox names (RFC 3501 section 5.1.3).

Encoding is the store's (Maildir++ directory names use the same
encoding); decoding here is strict, because it reads what a client sent:
a name that is not valid modified UTF-7 is refused rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii

from twisted_maillab.foldernames import mutf7Encode as _mutf7Encode


class InvalidModifiedUTF7(ValueError):
    """
    The bytes are not valid modified UTF-7 (RFC 3501 5.1.3).
    """


def encode(name: str) -> bytes:
    """
    Encode a mailbox name for the wire.

    @param name: the mailbox name as text.
    @return: its modified UTF-7 form, printable US-ASCII only
        (C{"Entwürfe"} -> C{b"Entw&APw-rfe"}).
    """
    return _mutf7Encode(name).encode("ascii")


def decode(data: bytes) -> str:
    """
    Decode a modified UTF-7 mailbox name.

    RFC 3501 5.1.3 rules are enforced: only printable US-ASCII outside the
    shifted runs, C{&-} for C{&}, base64 with C{,} for C{/}, no padding,
    an even number of UTF-16 octets with paired surrogates, and no
    printable US-ASCII character encoded in base64 (the RFC says it
    "MUST NOT" be, so such a name has no canonical form).

    @param data: the name as the client sent it.
    @return: the name as text.
    @raise InvalidModifiedUTF7: for anything else.
    """
    if b"&" not in data:
        for byte in data:
            if not 0x20 <= byte <= 0x7E:
                raise InvalidModifiedUTF7("mailbox name has a character outside printable US-ASCII")
        return data.decode("ascii")
    out = []
    i = 0
    n = len(data)
    while i < n:
        byte = data[i]
        if not 0x20 <= byte <= 0x7E:
            raise InvalidModifiedUTF7("mailbox name has a character outside printable US-ASCII")
        if byte != 0x26:  # "&"
            out.append(chr(byte))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise InvalidModifiedUTF7("unterminated '&' shift in mailbox name")
        chunk = data[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if len(chunk) % 4 == 1 or not _B64.issuperset(chunk):
            raise InvalidModifiedUTF7("bad base64 in mailbox name")
        try:
            raw = base64.b64decode(chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4), validate=True)
        except binascii.Error:
            raise InvalidModifiedUTF7("bad base64 in mailbox name") from None
        if len(raw) % 2:
            raise InvalidModifiedUTF7("odd number of UTF-16 octets in mailbox name")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError:
            raise InvalidModifiedUTF7("unpaired UTF-16 surrogate in mailbox name") from None
        if any(0x20 <= ord(c) <= 0x7E for c in text):
            raise InvalidModifiedUTF7("printable US-ASCII encoded in base64 in mailbox name")
        out.append(text)
    return "".join(out)


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
