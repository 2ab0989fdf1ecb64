"""
The presentation form of names, numbers and record data in master files
(RFC 1035 5.1, RFC 3597 5, and the RFC of each type): one reader per
record type, each taking the data tokens of a line and the origin and
returning the L{Rdata}, or raising C{ValueError} with the reason, which
L{twisted_maillab.dns.zone} reports with the file and line.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct

from twisted_maillab.dns import names as N
from twisted_maillab.dns.names import Name, NameRef, Rdata

MAX_UINT32 = 2**32 - 1  # a TTL or SOA timer field on the wire

_TTL_RE = re.compile(r"^(?:\d+|(?:\d+[smhdw])+)$", re.IGNORECASE)
_TTL_PART_RE = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLASSES = {"IN": N.IN, "CH": N.CH, "CS": 2, "HS": 4}


# ---------------------------------------------------------------------------
# Names, numbers, TTLs.


def _encodeText(text: str) -> bytes:
    # Files are decoded one character per byte (latin-1), so this gives the
    # file's bytes back; text given as str by a caller may hold any
    # character, which is then written in UTF-8.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def parseName(text: str, origin: Name | None) -> Name:
    """
    Parse a presentation-form name (RFC 1035 5.1): C{@} is the origin, a
    name without a trailing dot is relative to it, C{\\.} and C{\\DDD}
    escape bytes.

    @raise ValueError: with the reason.
    """
    if text == "@":
        if origin is None:
            raise ValueError("'@' used but no origin is known")
        return origin
    if text == ".":
        return ()
    if "\\" not in text:
        # Without escapes a dot always separates labels.
        absolute = text.endswith(".")
        labels = (text[:-1] if absolute else text).split(".")
        if "" in labels:
            raise ValueError(f"empty label in name {text!r}")
        return _checkedName(text, [_encodeText(label) for label in labels], absolute, origin)
    labels = []
    current = bytearray()
    i = 0
    absolute = False
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 3 < n + 0 and text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                value = int(text[i + 1 : i + 4])
                if value > 255:
                    raise ValueError(f"bad escape \\{text[i+1:i+4]} in name {text!r}")
                current.append(value)
                i += 4
                continue
            if i + 1 >= n:
                raise ValueError(f"name {text!r} ends with a lone backslash")
            current.extend(_encodeText(text[i + 1]))
            i += 2
            continue
        if c == ".":
            if not current:
                raise ValueError(f"empty label in name {text!r}")
            labels.append(bytes(current))
            current = bytearray()
            i += 1
            if i == n:
                absolute = True
            continue
        current.extend(_encodeText(c))
        i += 1
    if current:
        labels.append(bytes(current))
    return _checkedName(text, labels, absolute, origin)


def _checkedName(text: str, labels: list, absolute: bool, origin: Name | None) -> Name:
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"label longer than 63 octets in {text!r} (RFC 1035 2.3.4)")
    if not absolute:
        if origin is None:
            raise ValueError(f"relative name {text!r} but no origin is known")
        labels.extend(origin)
    name = tuple(labels)
    if len(N.toWire(name)) > 255:
        raise ValueError(f"name {text!r} is longer than 255 octets (RFC 1035 2.3.4)")
    return name


def parseOrigin(text: str) -> Name:
    """
    A zone origin from the configuration: always absolute.
    """
    text = text.strip()
    if not text.endswith("."):
        text += "."
    return parseName(text, None)


def parseTTL(text: str) -> int:
    """
    A TTL or SOA timer: seconds, or BIND units (C{1h30m}, C{2w}), at most
    2^32-1 (a record TTL above 2^31-1 is the caller's warning: see
    L{_Parser.recordTTL}).

    @raise ValueError: with the reason.
    """
    if not _TTL_RE.match(text):
        raise ValueError(f"{text!r} is not a TTL")
    total = sum(
        int(number) * _TTL_UNITS[unit.lower()] for number, unit in _TTL_PART_RE.findall(text)
    )
    if total > MAX_UINT32:
        raise ValueError(f"{text} does not fit in 32 bits (TTLs and SOA timers are 32-bit fields)")
    return total


def _int(text: str, bits: int, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    value = int(text)
    if value >= 1 << bits:
        raise ValueError(f"{what} {value} does not fit in {bits} bits")
    return value


def _hex(tokens: list, what: str) -> bytes:
    text = "".join(t.text for t in tokens)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} is not hexadecimal") from None


def _charString(token) -> list[bytes]:
    """
    A <character-string> (RFC 1035 3.3): bare tokens may carry escapes.
    Longer than 255 octets is split into several strings.
    """
    if token.quoted:
        data = _encodeText(token.text)
    else:
        data = _unescape(token.text)
    if not data:
        return [b""]
    return [data[i : i + 255] for i in range(0, len(data), 255)]


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                out.append(int(text[i + 1 : i + 4]) & 0xFF)
                i += 4
                continue
            out.extend(_encodeText(text[i + 1]))
            i += 2
            continue
        out.extend(_encodeText(c))
        i += 1
    return bytes(out)


def _cs(data: bytes) -> bytes:
    return bytes((len(data),)) + data


# ---------------------------------------------------------------------------
# Record data, per type.  Each takes the data tokens and the origin and
# returns an Rdata, or raises ValueError with the reason.


def _expect(tokens, count, usage):
    if len(tokens) < count:
        raise ValueError(f"missing data: expected {usage}")
    if len(tokens) > count:
        raise _extra(tokens[count], usage)


def _extra(token, usage: str) -> ValueError:
    if token.text.startswith("#") and not token.quoted:
        return ValueError(
            f"{token.text!r}: '#' does not start a comment in a zone file, "
            "use ';' (RFC 1035 5.1)"
        )
    return ValueError(f"extra text {token.text!r} after the data (expected {usage})")


def _rdA(tokens, origin):
    _expect(tokens, 1, "an IPv4 address")
    try:
        # inet_pton is as strict as ipaddress (four decimal octets, no
        # leading zeros) and ten times faster on a large zone.
        return Rdata([socket.inet_pton(socket.AF_INET, tokens[0].text)])
    except (OSError, ValueError):
        raise ValueError(f"{tokens[0].text!r} is not an IPv4 address") from None


def _rdAAAA(tokens, origin):
    _expect(tokens, 1, "an IPv6 address")
    try:
        return Rdata([ipaddress.IPv6Address(tokens[0].text).packed])
    except ValueError:
        raise ValueError(f"{tokens[0].text!r} is not an IPv6 address") from None


def _nameType(compress):
    def parse(tokens, origin):
        _expect(tokens, 1, "a domain name")
        name = parseName(tokens[0].text, origin)
        return Rdata([NameRef(name, compress)], target=name)

    return parse


def _rdMX(tokens, origin):
    _expect(tokens, 2, "PREFERENCE EXCHANGE")
    exchange = parseName(tokens[1].text, origin)
    return Rdata([struct.pack("!H", _int(tokens[0].text, 16, "preference")), NameRef(exchange, True)], target=exchange)


def _rdSOA(tokens, origin):
    usage = "MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM"
    if len(tokens) < 7:
        if len(tokens) == 6 and tokens[1].text.isdigit():
            raise ValueError(
                f"SOA has 6 fields, 7 are needed ({usage}): the RNAME (the "
                f"administrator's mailbox, e.g. root.{N.toText(origin) if origin else 'example.'}) "
                f"is missing after the MNAME {tokens[0].text!r}"
            )
        raise ValueError(f"SOA has {len(tokens)} fields, 7 are needed ({usage})")
    if len(tokens) > 7:
        raise _extra(tokens[7], usage)
    mname = parseName(tokens[0].text, origin)
    rname = parseName(tokens[1].text, origin)
    serial = _int(tokens[2].text, 32, "serial")
    times = [parseTTL(t.text) for t in tokens[3:7]]
    return Rdata([NameRef(mname, True), NameRef(rname, True), struct.pack("!5I", serial, *times)])


def _rdTXT(tokens, origin):
    if not tokens:
        raise ValueError("missing data: expected one or more strings")
    parts = []
    for token in tokens:
        if token.text.startswith("#") and not token.quoted and token is not tokens[0]:
            raise _extra(token, "quoted strings")
        parts.extend(_cs(piece) for piece in _charString(token))
    return Rdata([b"".join(parts)])


def _rdHINFO(tokens, origin):
    _expect(tokens, 2, "CPU OS")
    return Rdata([b"".join(_cs(_charString(t)[0]) for t in tokens)])


def _rdSRV(tokens, origin):
    _expect(tokens, 4, "PRIORITY WEIGHT PORT TARGET")
    target = parseName(tokens[3].text, origin)
    numbers = [_int(t.text, 16, what) for t, what in zip(tokens, ("priority", "weight", "port"))]
    # RFC 2782: the target is not compressed.
    return Rdata([struct.pack("!3H", *numbers), NameRef(target, False)], target=target)


def _rdNAPTR(tokens, origin):
    _expect(tokens, 6, "ORDER PREFERENCE FLAGS SERVICES REGEXP REPLACEMENT")
    head = struct.pack("!2H", _int(tokens[0].text, 16, "order"), _int(tokens[1].text, 16, "preference"))
    strings = b"".join(_cs(_charString(t)[0]) for t in tokens[2:5])
    return Rdata([head + strings, NameRef(parseName(tokens[5].text, origin), False)])


def _rdCAA(tokens, origin):
    _expect(tokens, 3, "FLAGS TAG VALUE")
    flags = _int(tokens[0].text, 8, "flags")
    tag = tokens[1].text.encode("ascii", "replace")
    if not re.fullmatch(rb"[A-Za-z0-9]{1,15}", tag):
        raise ValueError(f"CAA tag {tokens[1].text!r} must be 1-15 letters or digits (RFC 8659 4.1)")
    value = _encodeText(tokens[2].text) if tokens[2].quoted else _unescape(tokens[2].text)
    return Rdata([bytes((flags, len(tag))) + tag + value])


def _rdTLSA(tokens, origin):
    if len(tokens) < 4:
        raise ValueError("missing data: expected USAGE SELECTOR MATCHING-TYPE HEX")
    head = bytes(_int(t.text, 8, what) for t, what in zip(tokens, ("usage", "selector", "matching type")))
    return Rdata([head + _hex(tokens[3:], "certificate association data")])


def _rdSSHFP(tokens, origin):
    if len(tokens) < 3:
        raise ValueError("missing data: expected ALGORITHM TYPE HEX")
    head = bytes(_int(t.text, 8, what) for t, what in zip(tokens, ("algorithm", "fingerprint type")))
    return Rdata([head + _hex(tokens[2:], "fingerprint")])


def _rdDS(tokens, origin):
    if len(tokens) < 4:
        raise ValueError("missing data: expected KEYTAG ALGORITHM DIGEST-TYPE HEX")
    head = struct.pack(
        "!HBB",
        _int(tokens[0].text, 16, "key tag"),
        _int(tokens[1].text, 8, "algorithm"),
        _int(tokens[2].text, 8, "digest type"),
    )
    return Rdata([head + _hex(tokens[3:], "digest")])


RDATA_PARSERS = {
    N.A: _rdA,
    N.AAAA: _rdAAAA,
    N.NS: _nameType(True),
    N.CNAME: _nameType(True),
    N.PTR: _nameType(True),
    N.DNAME: _nameType(False),  # RFC 6672 2.5: not compressed
    N.MX: _rdMX,
    N.SOA: _rdSOA,
    N.TXT: _rdTXT,
    N.SPF: _rdTXT,
    N.HINFO: _rdHINFO,
    N.SRV: _rdSRV,
    N.NAPTR: _rdNAPTR,
    N.CAA: _rdCAA,
    N.TLSA: _rdTLSA,
    N.SSHFP: _rdSSHFP,
    N.DS: _rdDS,
}


def _rdUnknown(tokens):
    """
    RFC 3597 5: C{\\# LENGTH HEX...}.
    """
    if len(tokens) < 2:
        raise ValueError("generic data needs '\\# LENGTH HEX' (RFC 3597 5)")
    length = _int(tokens[1].text, 16, "length")
    data = _hex(tokens[2:], "generic data") if length else b""
    if len(data) != length:
        raise ValueError(f"generic data has {len(data)} octets, the length says {length} (RFC 3597 5)")
    return Rdata([data])


def _parseType(text: str) -> int | None:
    upper = text.upper()
    if upper in N.TYPE_NAMES:
        return N.TYPE_NAMES[upper]
    match = re.fullmatch(r"TYPE(\d{1,5})", upper)
    if match and int(match.group(1)) < 65536:
        return int(match.group(1))
    return None


def _parseClass(text: str) -> int | None:
    upper = text.upper()
    if upper in _CLASSES:
        return _CLASSES[upper]
    match = re.fullmatch(r"CLASS(\d{1,5})", upper)
    if match and int(match.group(1)) < 65536:
        return int(match.group(1))
    return None


def _fromGeneric(rtype, rdata):
    from twisted_maillab.dns.wire import readName

    data = rdata.parts[0]
    try:
        if rtype in (N.NS, N.CNAME, N.PTR, N.DNAME):
            name, end = readName(data, 0)
            if end != len(data):
                raise ValueError
            return Rdata([NameRef(name, rtype != N.DNAME)], target=name)
        if rtype == N.MX:
            name, end = readName(data, 2)
            if end != len(data):
                raise ValueError
            return Rdata([data[:2], NameRef(name, True)], target=name)
        if rtype == N.SRV:
            name, end = readName(data, 6)
            if end != len(data):
                raise ValueError
            return Rdata([data[:6], NameRef(name, False)], target=name)
        mname, end = readName(data, 0)
        rname, end = readName(data, end)
        if len(data) - end != 20:
            raise ValueError
        return Rdata([NameRef(mname, True), NameRef(rname, True), data[end:]])
    except (ValueError, IndexError):
        raise ValueError(f"generic data is not a valid {N.typeText(rtype)}") from None
