"""
Domain names as tuples of labels, and the record data model.

A name is a tuple of C{bytes} labels in the case they were written, without
the root label: C{(b"smtp", b"domaineel", b"rt")}.  Comparisons use the
lower-cased key (RFC 4343: DNS names compare case-insensitively, case is
preserved in data).
"""

from __future__ import annotations

from typing import NamedTuple

Name = tuple  # tuple[bytes, ...]

# RR type numbers (RFC 1035 3.2.2, and the RFCs named beside each).
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
HINFO = 13
MX = 15
TXT = 16
AAAA = 28  # RFC 3596
SRV = 33  # RFC 2782
NAPTR = 35  # RFC 3403
DNAME = 39  # RFC 6672
OPT = 41  # RFC 6891
DS = 43  # RFC 4034
SSHFP = 44  # RFC 4255
TLSA = 52  # RFC 6698
SPF = 99  # RFC 7208 (obsolete, still served)
IXFR = 251  # RFC 1995
AXFR = 252
ANY = 255  # RFC 8482
CAA = 257  # RFC 8659

IN = 1
CH = 3
CLASS_ANY = 255

TYPE_NAMES = {
    "A": A,
    "NS": NS,
    "CNAME": CNAME,
    "SOA": SOA,
    "PTR": PTR,
    "HINFO": HINFO,
    "MX": MX,
    "TXT": TXT,
    "AAAA": AAAA,
    "SRV": SRV,
    "NAPTR": NAPTR,
    "DNAME": DNAME,
    "DS": DS,
    "SSHFP": SSHFP,
    "TLSA": TLSA,
    "SPF": SPF,
    "CAA": CAA,
}
TYPE_MNEMONICS = {number: text for text, number in TYPE_NAMES.items()}
# Meta-types, for messages only: they never appear in a zone file.
TYPE_MNEMONICS.update({OPT: "OPT", IXFR: "IXFR", AXFR: "AXFR", ANY: "ANY"})


def typeText(rtype: int) -> str:
    """
    The mnemonic of a type, or C{TYPEnnn} (RFC 3597 5).
    """
    return TYPE_MNEMONICS.get(rtype, f"TYPE{rtype}")


def key(name: Name) -> Name:
    """
    The case-folded form of C{name} used for lookups (RFC 4343).
    """
    return tuple(label.lower() for label in name)


def toWire(name: Name) -> bytes:
    """
    Uncompressed wire form (RFC 1035 3.1).
    """
    return b"".join(bytes((len(label),)) + label for label in name) + b"\x00"


def _escapeLabel(label: bytes) -> str:
    out = []
    for byte in label:
        char = chr(byte)
        if char in '.;\\"()@$ ':
            out.append("\\" + char)
        elif 0x21 <= byte <= 0x7E:
            out.append(char)
        else:
            out.append("\\%03d" % byte)
    return "".join(out)


def toText(name: Name) -> str:
    """
    Presentation form with the trailing dot (RFC 1035 5.1 escapes).
    """
    if not name:
        return "."
    return ".".join(_escapeLabel(label) for label in name) + "."


def isSubdomain(name: Name, parent: Name) -> bool:
    """
    Whether C{name} (a key) is C{parent} (a key) or below it.
    """
    return len(name) >= len(parent) and name[len(name) - len(parent):] == parent


class NameRef(NamedTuple):
    """
    A domain name inside record data.

    @ivar name: the labels.
    @ivar compress: whether RFC 1035 4.1.4 compression may be used; only for
        the types RFC 3597 4 lists as well-known (NS, CNAME, SOA, PTR, MX).
    """

    name: Name
    compress: bool


class Rdata:
    """
    One record's data: a sequence of C{bytes} and L{NameRef} parts.

    @ivar parts: the wire pieces in order.
    @ivar target: the name additional-section processing follows (MX
        exchange, NS host, SRV target, CNAME/DNAME target), or L{None}.
    """

    __slots__ = ("parts", "target", "_canonical")

    def __init__(self, parts, target: Name | None = None):
        self.parts = tuple(parts)
        self.target = target
        self._canonical = b"".join(
            toWire(key(part.name)) if isinstance(part, NameRef) else part
            for part in self.parts
        )

    def canonical(self) -> bytes:
        """
        Uncompressed wire form with lower-cased names: duplicates compare
        equal (RFC 2181 5: an RRset holds no duplicate records).
        """
        return self._canonical

    def wire(self) -> bytes:
        """
        Uncompressed wire form preserving case.
        """
        return b"".join(
            toWire(part.name) if isinstance(part, NameRef) else part
            for part in self.parts
        )

    def __eq__(self, other):
        return isinstance(other, Rdata) and self._canonical == other._canonical

    def __hash__(self):
        return hash(self._canonical)

    def __repr__(self):
        return f"Rdata({self.parts!r})"


class RRset:
    """
    The records of one owner and type (RFC 2181 5).

    @ivar owner: the owner name as first written.
    @ivar rtype: the type number.
    @ivar ttl: one TTL for the whole set (RFC 2181 5.2).
    @ivar rdatas: the L{Rdata} list, in file order, without duplicates.
    @ivar line: where the first record was read, for messages.
    @ivar path: the file it was read from.
    """

    __slots__ = ("owner", "rtype", "ttl", "rdatas", "line", "path")

    def __init__(self, owner: Name, rtype: int, ttl: int, line: int = 0, path: str = ""):
        self.owner = owner
        self.rtype = rtype
        self.ttl = ttl
        self.rdatas: list[Rdata] = []
        self.line = line
        self.path = path

    def withTTL(self, ttl: int) -> "RRset":
        copy = RRset(self.owner, self.rtype, ttl, self.line, self.path)
        copy.rdatas = self.rdatas
        return copy

    def withOwner(self, owner: Name) -> "RRset":
        copy = RRset(owner, self.rtype, self.ttl, self.line, self.path)
        copy.rdatas = self.rdatas
        return copy

    def __repr__(self):
        return f"RRset({toText(self.owner)} {self.ttl} {typeText(self.rtype)} x{len(self.rdatas)})"


class Node:
    """
    One name of a zone: its RRsets by type, in the order first read.
    """

    __slots__ = ("name", "rrsets")

    def __init__(self, name: Name):
        self.name = name
        self.rrsets: dict[int, RRset] = {}
