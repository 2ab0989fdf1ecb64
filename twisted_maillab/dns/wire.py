"""
DNS messages on the wire (RFC 1035 4): parse the question and the EDNS OPT
record of a query, and encode responses with name compression and
truncation as NSD does it.

Responses are built once per (name, type, EDNS shape) and kept as bytes;
the server only patches the ID, the RD/CD bits and the query name's case.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from twisted_maillab.dns import names as N
from twisted_maillab.dns.names import Name, NameRef, RRset

# Header bits (RFC 1035 4.1.1; RFC 4035 3.2 for AD/CD).
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
CD = 0x0010

OPCODE_QUERY = 0
OPCODE_NOTIFY = 4  # RFC 1996

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
YXDOMAIN = 6  # RFC 6672 2.2: DNAME substitution overflows
NOTAUTH = 9
BADVERS = 16  # RFC 6891 9: extended, needs OPT

EDE_NOT_AUTHORITATIVE = 20  # RFC 8914 4.21
EDE_NOT_SUPPORTED = 21  # RFC 8914 4.22

MAX_POINTER = 0x3FFF


def readName(data: bytes, offset: int, allowPointers: bool = True) -> tuple[Name, int]:
    """
    Read a possibly compressed name (RFC 1035 4.1.4).

    @return: the labels and the offset after the name in the original data.
    @raise ValueError: on a malformed name or a pointer loop.
    """
    labels = []
    end = None
    jumps = 0
    total = 1
    while True:
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            if not allowPointers:
                raise ValueError("compression pointer")
            pointer = ((length & 0x3F) << 8) | data[offset + 1]
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 64 or pointer >= offset:
                raise ValueError("compression pointer loop")
            offset = pointer
            continue
        if length & 0xC0:
            raise ValueError("unknown label type")
        label = data[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise ValueError("truncated name")
        total += length + 1
        if total > 255:
            raise ValueError("name longer than 255 octets")
        labels.append(label)
        offset += 1 + length
    return tuple(labels), (end if end is not None else offset)


class Edns(NamedTuple):
    """
    What a query's OPT record asked for (RFC 6891 6.1.2).
    """

    size: int
    version: int
    do: bool


class Question(NamedTuple):
    """
    A parsed query: ID, flags, the question and its end offset, EDNS.
    """

    id: int
    flags: int
    name: Name
    nameEnd: int
    qtype: int
    qclass: int
    edns: Edns | None


class FormatError(ValueError):
    """
    The message is not a well-formed query; C{id} and C{flags} let the
    server answer FORMERR when they could be read.
    """


def parseQuery(data: bytes) -> Question:
    """
    Parse a query with exactly one question and at most an OPT record in
    the additional section.

    @raise FormatError: the message must be answered with FORMERR.
    """
    if len(data) < 12:
        raise FormatError("short header")
    ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    if qd != 1:
        raise FormatError("QDCOUNT is not 1")
    try:
        name, offset = readName(data, 12)
        qtype, qclass = struct.unpack_from("!HH", data, offset)
    except (ValueError, IndexError, struct.error):
        raise FormatError("bad question") from None
    nameEnd = offset
    offset += 4
    edns = None
    try:
        for _ in range(an + ns):
            _, offset = readName(data, offset)
            rdlen = struct.unpack_from("!H", data, offset + 8)[0]
            offset += 10 + rdlen
        for _ in range(ar):
            owner, offset = readName(data, offset)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, offset)
            offset += 10 + rdlen
            if offset > len(data):
                raise FormatError("truncated record")
            if rtype == N.OPT:
                # RFC 6891 6.1.1: one OPT, owner is the root.
                if edns is not None or owner != ():
                    raise FormatError("bad or second OPT record")
                edns = Edns(rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    except (ValueError, IndexError, struct.error):
        raise FormatError("bad record") from None
    return Question(ident, flags, name, nameEnd, qtype, qclass, edns)


def optRecord(size: int, do: bool, extendedRcode: int = 0, options: bytes = b"") -> bytes:
    """
    Our OPT pseudo-record (RFC 6891 6.1.2): our UDP payload size, version
    0, the DO bit echoed (RFC 3225 3).
    """
    ttl = (extendedRcode << 24) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", N.OPT, size, ttl, len(options)) + options


def edeOption(code: int) -> bytes:
    """
    An Extended DNS Error option (RFC 8914 2) without text.
    """
    return struct.pack("!HHH", 15, 2, code)


class _Encoder:
    """
    Appends names and records to a message, compressing names against
    every name already written (RFC 1035 4.1.4), case-insensitively as
    NSD and BIND do.
    """

    def __init__(self, header: bytes):
        self.buffer = bytearray(header)
        self.offsets: dict[Name, int] = {}

    def name(self, name: Name, compress: bool = True) -> None:
        keyName = N.key(name)
        buffer = self.buffer
        for i in range(len(name)):
            suffix = keyName[i:]
            if compress:
                pointer = self.offsets.get(suffix)
                if pointer is not None:
                    buffer += struct.pack("!H", 0xC000 | pointer)
                    return
            if len(buffer) <= MAX_POINTER and suffix not in self.offsets:
                self.offsets[suffix] = len(buffer)
            label = name[i]
            buffer.append(len(label))
            buffer += label
        buffer.append(0)

    def rrset(self, owner: Name, rrset: RRset) -> int:
        """
        Append every record of C{rrset} under C{owner}; return the count.
        """
        fixed = struct.pack("!HHI", rrset.rtype, N.IN, rrset.ttl)
        for rdata in rrset.rdatas:
            self.name(owner)
            self.buffer += fixed
            lengthAt = len(self.buffer)
            self.buffer += b"\x00\x00"
            for part in rdata.parts:
                if isinstance(part, NameRef):
                    self.name(part.name, part.compress)
                else:
                    self.buffer += part
            struct.pack_into("!H", self.buffer, lengthAt, len(self.buffer) - lengthAt - 2)
        return len(rrset.rdatas)

    def mark(self):
        return len(self.buffer), dict(self.offsets)

    def rollback(self, mark):
        del self.buffer[mark[0] :]
        self.offsets = mark[1]


class Answer:
    """
    The outcome of a lookup, before encoding.

    @ivar rcode: the response code (possibly extended, e.g. L{BADVERS}).
    @ivar aa: authoritative answer bit.
    @ivar answer: list of C{(owner, RRset)}.
    @ivar authority: list of C{(owner, RRset)}.
    @ivar authorityRequired: whether authority records must fit (negative
        answers and referrals) or may be dropped (NS of positive answers).
    @ivar additional: list of C{(owner, RRset)}, dropped when they do not fit.
    @ivar ede: an RFC 8914 info code to attach, or L{None}.
    @ivar kind: what response rate limiting accounts this answer under.
    """

    __slots__ = ("rcode", "aa", "answer", "authority", "authorityRequired", "additional", "ede", "kind", "opcode", "noQuestion")

    def __init__(self, rcode=NOERROR, aa=True, kind=b""):
        self.rcode = rcode
        self.aa = aa
        self.answer: list = []
        self.authority: list = []
        self.authorityRequired = True
        self.additional: list = []
        self.ede = None
        self.kind = kind
        self.opcode = OPCODE_QUERY
        self.noQuestion = False


def encode(
    question: Name,
    qtype: int,
    qclass: int,
    answer: Answer,
    edns: Edns | None,
    ourSize: int,
    limit: int,
    ident: int = 0,
    flags: int = 0,
) -> bytes:
    """
    Encode a response.

    @param question: the query name (its case is what the client sees).
    @param edns: the query's EDNS, or L{None} for a query without OPT.
    @param ourSize: our UDP payload size, advertised in our OPT.
    @param limit: the largest message allowed (RFC 6891 6.2.5 / RFC 1035
        4.2.1 over UDP, 65535 over TCP).  When the answer or a required
        authority RRset does not fit, the message is the header, question
        and OPT with TC set, as NSD sends it; additional RRsets and the NS
        of a positive answer are left out silently (RFC 2181 9).
    @param flags: the query's flags; RD is copied (NSD leaves CD clear).
    """
    rcode = answer.rcode
    hflags = QR | (answer.opcode << 11) | (flags & RD) | (rcode & 0xF)
    if answer.aa:
        hflags |= AA
    opt = b""
    if edns is not None:
        opt = optRecord(ourSize, edns.do, rcode >> 4, edeOption(answer.ede) if answer.ede is not None else b"")
    room = limit - len(opt)
    qdcount = 0 if answer.noQuestion else 1
    enc = _Encoder(struct.pack("!6H", ident, hflags, qdcount, 0, 0, 0))
    if qdcount:
        enc.name(question)
        enc.buffer += struct.pack("!HH", qtype, qclass)
    afterQuestion = enc.mark()
    counts = [0, 0, 0]
    truncated = keepAnswer = False
    full = False
    for owner, rrset in answer.answer:
        mark = enc.mark()
        added = enc.rrset(owner, rrset)
        if len(enc.buffer) > room:
            # RFC 2181 9: TC, with the whole RRsets that fit before (a
            # CNAME before the set it leads to), as NSD sends them.
            enc.rollback(mark)
            truncated = keepAnswer = True
            break
        counts[0] += added
    if not truncated:
        for owner, rrset in answer.authority:
            mark = enc.mark()
            added = enc.rrset(owner, rrset)
            if len(enc.buffer) > room:
                enc.rollback(mark)
                if answer.authorityRequired:
                    truncated = True
                else:
                    # NSD stops at the first RRset that does not fit.
                    full = True
                break
            counts[1] += added
    if not truncated and not full:
        for owner, rrset in answer.additional:
            mark = enc.mark()
            added = enc.rrset(owner, rrset)
            if len(enc.buffer) > room:
                enc.rollback(mark)
                break
            counts[2] += added
    if truncated:
        if not keepAnswer:
            enc.rollback(afterQuestion)
            counts = [0, 0, 0]
        hflags |= TC
    message = enc.buffer
    struct.pack_into("!H", message, 2, hflags)
    struct.pack_into("!HHH", message, 6, counts[0], counts[1], counts[2] + (1 if opt else 0))
    message += opt
    return bytes(message)


def headerOnly(ident: int, flags: int, rcode: int, extra: int = 0) -> bytes:
    """
    A response with no question, as NSD sends NOTIMP and FORMERR when the
    question cannot be trusted; C{extra} flags are set too.
    """
    opcode = flags & 0x7800
    return struct.pack("!6H", ident, QR | opcode | (flags & RD) | extra | rcode, 0, 0, 0, 0)
