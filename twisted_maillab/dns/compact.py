"""
The names of a zone, kept compactly: L{NodeMap}.

Most names of a large zone hold one or a few records of simple types (an
A, a TXT, an MX).  Kept as objects (a node, a dict of RRsets, an RRset, a
list, an Rdata per record, tuples of labels) a name costs about a dozen
Python objects: a zone of a million names took half a minute to build,
and freeing it after a reload held the interpreter for most of a second.

Here such a name is one C{bytes} value under one C{bytes} key (the
lower-cased name in wire form, RFC 1035 3.1): the records one after the
other, each a fixed header (type, TTL, line, file, length) and the rdata
in wire form.  Neither is tracked by Python's cyclic collector, and a
dict of a million of them is freed in two million deallocations instead
of twelve.  The L{Node} and L{RRset} objects the answering code walks are
made from it when a name is looked up (the response table keeps the
answers built from them).

Names with anything else (the apex, delegations, aliases, records of
other types, several records of one type, owners written with capitals)
keep their L{Node}, in the same dict.
"""

from __future__ import annotations

import struct

from twisted_maillab.dns import names as N
from twisted_maillab.dns.names import Name, NameRef, Node, Rdata, RRset

__all__ = ["NodeMap", "COMPACT_TYPES", "record", "records", "types"]

# type, TTL, line, index of the file in the zone's path list, rdata length
_HEADER = struct.Struct("!HIIHH")
HEADER_SIZE = _HEADER.size
packHeader = _HEADER.pack
unpackHeader = _HEADER.unpack_from

# The types a compact name may hold: their rdata is bytes, except the MX
# exchange (RFC 1035 3.3.9), a name at offset 2.
COMPACT_TYPES = frozenset((N.A, N.AAAA, N.TXT, N.MX))


def record(rtype: int, ttl: int, line: int, pathIndex: int, rdata: bytes) -> bytes:
    """
    One record of a compact name.
    """
    return packHeader(rtype, ttl, line, pathIndex, len(rdata)) + rdata


def records(blob: bytes):
    """
    The records of a compact name: C{(type, ttl, line, pathIndex, rdata)}.
    """
    offset = 0
    n = len(blob)
    unpack = _HEADER.unpack_from
    while offset < n:
        rtype, ttl, line, pathIndex, length = unpack(blob, offset)
        start = offset + HEADER_SIZE
        offset = start + length
        yield rtype, ttl, line, pathIndex, blob[start:offset]


def types(blob: bytes) -> list[int]:
    """
    The types a compact name holds, in file order.
    """
    out = []
    offset = 0
    n = len(blob)
    while offset < n:
        out.append(blob[offset] << 8 | blob[offset + 1])
        offset += HEADER_SIZE + (blob[offset + 12] << 8 | blob[offset + 13])
    return out


def wireToName(data: bytes, offset: int = 0) -> Name:
    """
    The labels of an uncompressed wire-form name (written by this module,
    so well formed).
    """
    labels = []
    length = data[offset]
    while length:
        labels.append(data[offset + 1 : offset + 1 + length])
        offset += 1 + length
        length = data[offset]
    return tuple(labels)


def toRdata(rtype: int, data: bytes) -> Rdata:
    """
    The L{Rdata} the master-file reader makes for these wire bytes.
    """
    if rtype == N.MX:
        exchange = wireToName(data, 2)
        return Rdata([data[:2], NameRef(exchange, True)], target=exchange)
    return Rdata([data])


class NodeMap:
    """
    Lookup key (a lower-cased name as a tuple of labels) -> L{Node}, as a
    dict would give it; compact names become a new L{Node} at each lookup.

    @ivar entries: lower-cased wire name -> L{Node} or compact C{bytes}.
    @ivar paths: the files records were read from (compact records keep
        an index into it).
    """

    __slots__ = ("entries", "paths")

    def __init__(self, paths: list[str]):
        self.entries: dict[bytes, Node | bytes] = {}
        self.paths = paths

    def node(self, wireKey: bytes, value) -> Node:
        """
        The L{Node} of one entry (made from its records when compact).
        """
        if value.__class__ is not bytes:
            return value
        owner = wireToName(wireKey)
        node = Node(owner)
        rrsets = node.rrsets
        paths = self.paths
        for rtype, ttl, line, pathIndex, data in records(value):
            rrset = rrsets.get(rtype)
            if rrset is None:
                rrset = rrsets[rtype] = RRset(owner, rtype, ttl, line, paths[pathIndex])
            rrset.rdatas.append(toRdata(rtype, data))
        return node

    def typesAt(self, key: Name) -> list[int] | None:
        """
        The types held at C{key} without making its L{Node}, or L{None}
        when the name does not exist.
        """
        value = self.entries.get(N.toWire(key))
        if value is None:
            return None
        if value.__class__ is bytes:
            return types(value)
        return list(value.rrsets)

    def materialize(self, wireKey: bytes) -> Node | None:
        """
        The stored L{Node} for C{wireKey}, made and stored from its compact
        records if needed, so records can be added to it.
        """
        value = self.entries.get(wireKey)
        if value is not None and value.__class__ is bytes:
            value = self.entries[wireKey] = self.node(wireKey, value)
        return value

    # The mapping interface (tuple keys).

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key) -> bool:
        return N.toWire(key) in self.entries

    def __getitem__(self, key) -> Node:
        wireKey = N.toWire(key)
        return self.node(wireKey, self.entries[wireKey])

    def get(self, key, default=None):
        wireKey = N.toWire(key)
        value = self.entries.get(wireKey)
        if value is None:
            return default
        if value.__class__ is bytes:
            return self.node(wireKey, value)
        return value

    def __setitem__(self, key, node: Node) -> None:
        self.entries[N.toWire(key)] = node

    def __iter__(self):
        for wireKey in self.entries:
            yield wireToName(wireKey)

    keys = __iter__

    def values(self):
        for wireKey, value in self.entries.items():
            yield self.node(wireKey, value)

    def items(self):
        for wireKey, value in self.entries.items():
            yield wireToName(wireKey), self.node(wireKey, value)

    def release(self) -> None:
        """
        Empty the map an entry at a time: the thread doing it can give up
        the interpreter between two (a dict freed whole is freed in one C
        call, which holds it throughout).
        """
        entries = self.entries
        popitem = entries.popitem
        while entries:
            popitem()
