"""
Authoritative answers (RFC 1034 4.3.2, RFC 2308, RFC 4592, RFC 6891) from
loaded L{Zone}s, with the sections NSD puts in them, and the table of
precomputed responses the server sends from.
"""

from __future__ import annotations

import struct

from twisted_maillab.dns import compact
from twisted_maillab.dns import names as N
from twisted_maillab.dns import wire
from twisted_maillab.dns.names import Name, NameRef, Rdata, RRset
from twisted_maillab.dns.wire import Answer, Edns
from twisted_maillab.dns.zone import Zone, highestCut

# RFC 1034 4.3.2 step 3.a: CNAME chains are followed to their end inside
# the zone, as NSD does; a CNAME loop ends when a name comes back.  DNAME
# synthesis can make new names without end (a DNAME below its own target),
# so the whole chain is bounded too, far above any real chain.
MAX_CNAME_CHAIN = 64

# Types whose targets get A/AAAA in the additional section (RFC 1035 3.3.9,
# 3.3.11; RFC 2782), as NSD does.
_ADDITIONAL_TYPES = (N.MX, N.NS, N.SRV)

# Precomputed at load time for every name of a small zone, beside the
# types the name holds: what resolvers ask most.
COMMON_TYPES = (N.A, N.AAAA, N.MX, N.NS, N.SOA, N.TXT, N.CNAME, N.SRV)
# At most this many responses are built at load time (each costs about
# 700 bytes and 30 microseconds): a mail domain's zone is answered from
# the table at once, a large zone starts at the speed of its parse and
# its answers are built on first use into the bounded cache.
PRECOMPUTE_BUDGET = 20_000
# Responses built on first use kept at most (about 14 MB).
MAX_CACHED = 20_000


class Zones:
    """
    The zones served, found by longest matching origin.
    """

    def __init__(self, zones: list[Zone]):
        self.byOrigin = {zone.originKey: zone for zone in zones}
        self.depths = sorted({len(k) for k in self.byOrigin}, reverse=True)

    def find(self, nameKey: Name) -> Zone | None:
        """
        The zone of the closest enclosing origin, or L{None}.
        """
        for depth in self.depths:
            if depth <= len(nameKey):
                zone = self.byOrigin.get(nameKey[len(nameKey) - depth :])
                if zone is not None:
                    return zone
        return None

    def __iter__(self):
        return iter(self.byOrigin.values())


def _addresses(zone: Zone, target: Name, seen: set, out: list) -> None:
    targetKey = N.key(target)
    node = zone.nodes.get(targetKey)
    if node is None:
        return
    for rtype in (N.A, N.AAAA):
        rrset = node.rrsets.get(rtype)
        if rrset is not None and (targetKey, rtype) not in seen:
            seen.add((targetKey, rtype))
            out.append((rrset.owner, rrset))


def lookup(zones: Zones, qname: Name, qtype: int, anyClass: bool = False) -> Answer:
    """
    Answer C{qtype} for C{qname} (class IN) the way NSD 4 does.

    @param qname: the query name (any case).
    @param anyClass: the query's class is C{*} (RFC 1035 3.2.5): the IN
        data is answered, not authoritatively (an answer for every class
        cannot be authoritative for all of them), with
        neither the apex NS nor the negative SOA in authority, as NSD.
    """
    qkey = N.key(qname)
    zone = zones.find(qkey)
    if zone is None:
        # Not ours: REFUSED, no AA (NSD and BIND), EDE 20 (RFC 8914 4.21).
        result = Answer(wire.REFUSED, aa=False, kind=b"refused")
        result.ede = wire.EDE_NOT_AUTHORITATIVE
        return result
    result = Answer(wire.NOERROR, aa=True)
    apexNode = zone.nodes.get(zone.originKey)
    seen: set = set()
    owner = qname
    name = qkey
    chain = 0
    while True:
        cut = highestCut(zone, name)
        if cut is not None and not (cut == name and qtype == N.DS and chain == 0):
            # RFC 1034 4.3.2 step 3.b, also after a CNAME (the chain so far,
            # then the referral to the child that holds the rest; the AA
            # bit stays for the CNAMEs, RFC 1035 4.1.1).
            _referral(zone, cut, result)
            result.aa = bool(result.answer) and not anyClass
            return result
        if zone.dnames:
            found = _findDNAME(zone, name)
            if found is not None:
                # RFC 6672 3.2: the DNAME, then a CNAME synthesized from it
                # (TTL of the DNAME), then on with the new name.
                dnameKey, dname = found
                result.answer.append((dname.owner, dname))
                newName = tuple(owner[: len(owner) - len(dnameKey)]) + tuple(dname.rdatas[0].target)
                if len(N.toWire(newName)) > 255:
                    result.rcode = wire.YXDOMAIN
                    return result
                cname = RRset(owner, N.CNAME, dname.ttl)
                cname.rdatas = [Rdata([NameRef(newName, True)], target=newName)]
                result.answer.append((owner, cname))
                chain += 1
                newKey = N.key(newName)
                if not N.isSubdomain(newKey, zone.originKey) or chain > MAX_CNAME_CHAIN:
                    result.kind = N.toWire(dnameKey) + b"dname"
                    return result
                owner = newName
                name = newKey
                continue
        node = zone.nodes.get(name)
        if node is None:
            # RFC 4592 3.3.1: synthesized answers keep the query name as owner.
            node = _wildcard(zone, name)
            if node is None:
                # RFC 2308 2.1: NXDOMAIN with the SOA (RFC 6604: after a
                # CNAME the rcode is that of the last name).
                result.rcode = wire.NXDOMAIN
                result.kind = b"nx" + N.toWire(zone.originKey)
                if not anyClass:
                    result.authority = [(zone.origin, zone.negativeSOA())]
                else:
                    result.aa = False
                return result
        rrsets = node.rrsets
        if qtype == N.ANY:
            # RFC 8482 4.1: answer with one RRset; NSD picks the first
            # (the SOA at the apex).
            if not rrsets:
                return _nodata(zone, result, name, anyClass)
            first = rrsets.get(N.SOA) or next(iter(rrsets.values()))
            result.answer.append((owner, first))
            result.kind = b"any" + N.toWire(name)
            # Additional section processing as for that type (RFC 1035
            # 3.3.9, RFC 2782), without the apex NS (NSD).
            additional: list = []
            for _, rrset in result.answer:
                if rrset.rtype in _ADDITIONAL_TYPES:
                    for rdata in rrset.rdatas:
                        _addresses(zone, rdata.target, seen, additional)
            result.additional = _aFirst(additional)
            result.aa = not anyClass
            return result
        rrset = rrsets.get(qtype)
        if rrset is not None:
            result.answer.append((owner, rrset))
            seen.add((name, qtype))
            result.kind = N.toWire(name) + struct.pack("!H", qtype)
            if qtype == N.DS and name in zone.cuts:
                # The parent's DS at a cut (RFC 4035 3.1.4.1): NSD adds no
                # NS or addresses of the parent's apex to it.
                return result
            _positive(zone, None if anyClass else apexNode, result, seen, qtype, name)
            result.aa = not anyClass
            return result
        cname = rrsets.get(N.CNAME)
        if cname is not None:
            result.answer.append((owner, cname))
            seen.add((name, N.CNAME))
            target = cname.rdatas[0].target
            targetKey = N.key(target)
            chain += 1
            if not N.isSubdomain(targetKey, zone.originKey) or chain > MAX_CNAME_CHAIN or (targetKey, N.CNAME) in seen:
                result.aa = not anyClass
                # RFC 1034 4.3.2: out of this zone the resolver goes on.
                result.kind = N.toWire(name) + b"cname"
                return result
            owner = target
            name = targetKey
            continue
        return _nodata(zone, result, name, anyClass)


def _nodata(zone: Zone, result: Answer, name: Name, anyClass: bool = False) -> Answer:
    # RFC 2308 2.2: NODATA is NOERROR, no answer, SOA in authority.
    if anyClass:
        result.aa = False
    else:
        result.authority = [(zone.origin, zone.negativeSOA())]
    result.kind = b"nodata" + N.toWire(name)
    return result


def _positive(zone: Zone, apexNode, result: Answer, seen: set, qtype: int, name: Name) -> None:
    """
    NSD's positive answer: the apex NS in authority (unless the answer is
    that NS), then A/AAAA of MX/NS/SRV targets and of those NS hosts.
    """
    additional: list = []
    addSeen = set(seen)
    for _, rrset in result.answer:
        if rrset.rtype in _ADDITIONAL_TYPES:
            for rdata in rrset.rdatas:
                _addresses(zone, rdata.target, addSeen, additional)
    apexNS = apexNode.rrsets.get(N.NS) if apexNode is not None else None
    if apexNS is not None and not (qtype == N.NS and name == zone.originKey):
        result.authority = [(zone.origin, apexNS)]
        result.authorityRequired = False
        for rdata in apexNS.rdatas:
            _addresses(zone, rdata.target, addSeen, additional)
    result.additional = _aFirst(additional)


def _aFirst(additional: list) -> list:
    """
    Every A RRset before every AAAA RRset, otherwise in order: when the
    message is full, NSD has sent the IPv4 glue of all the hosts.
    """
    return [entry for entry in additional if entry[1].rtype == N.A] + [
        entry for entry in additional if entry[1].rtype != N.A
    ]


def _findDNAME(zone: Zone, nameKey: Name):
    """
    The highest DNAME strictly above C{nameKey} (RFC 6672 2.3: names
    below a DNAME owner are redirected, the owner itself is not).
    """
    depth = len(zone.originKey)
    for i in range(len(nameKey) - depth, 0, -1):
        candidate = nameKey[i:]
        if candidate in zone.dnames:
            return candidate, zone.nodes[candidate].rrsets[N.DNAME]
    return None


def _referral(zone: Zone, cut: Name, result: Answer) -> Answer:
    """
    RFC 1034 4.3.2 step 3.b: NS of the cut in authority, AA clear, glue
    (addresses of the NS hosts held in this zone) in additional.
    """
    node = zone.nodes[cut]
    ns = node.rrsets[N.NS]
    result.aa = False
    result.authority = [(ns.owner, ns)]
    result.authorityRequired = True
    additional: list = []
    seen: set = set()
    for rdata in ns.rdatas:
        _addresses(zone, rdata.target, seen, additional)
    result.additional = _aFirst(additional)
    result.kind = b"ref" + N.toWire(cut)
    return result


def _wildcard(zone: Zone, nameKey: Name):
    """
    RFC 4592 3.3.1: the source of synthesis is C{*} under the closest
    encloser (the longest existing ancestor, empty non-terminals count).
    """
    depth = len(zone.originKey)
    for i in range(1, len(nameKey) - depth + 1):
        encloser = nameKey[i:]
        if encloser in zone.nodes or encloser == zone.originKey:
            return zone.nodes.get((b"*",) + encloser)
    return None


# ---------------------------------------------------------------------------
# The response table.

_SHAPE_NONE = 0


def shapeKey(edns: Edns | None, limit: int) -> bytes:
    """
    The part of a response cache key that says how the response is shaped.
    """
    if edns is None:
        return struct.pack("!BH", 0, limit)
    return struct.pack("!BH", 2 if edns.do else 1, limit)


class ResponseTable:
    """
    Every response the server may send, as bytes with ID 0, RD/CD clear and
    the question name lower-cased.  Built at load time for every name and
    common type in the zones; filled on demand (bounded) for the rest.

    Keys: lower-cased question name in wire form + QTYPE + QCLASS + shape.
    Values: C{(response, kind, headers, tail)}: kind is what rate limiting
    counts; headers are bytes 2-11 of the response without and with the
    query's RD bit; tail follows the question name.
    """

    def __init__(self, zones: Zones, udpSize: int, maxCached: int = MAX_CACHED, budget: int = PRECOMPUTE_BUDGET):
        self.zones = zones
        self.udpSize = udpSize
        self.maxCached = maxCached
        self.table: dict[bytes, tuple[bytes, bytes]] = {}
        self.permanent: dict[bytes, tuple[bytes, bytes]] = {}
        self.dynamic = 0
        self.budget = budget

    def precompute(self) -> int:
        """
        Build the responses for every name, for the common query shapes
        (no EDNS over UDP, EDNS with and without DO at our size, TCP).

        @return: how many responses were built.
        """
        shapes = [
            (None, 512),
            (Edns(self.udpSize, 0, False), self.udpSize),
            (Edns(self.udpSize, 0, True), self.udpSize),
            (None, 65535),
            (Edns(self.udpSize, 0, False), 65535),
        ]
        count = 0
        names = sum(len(zone.nodes) for zone in self.zones)
        common: tuple = COMMON_TYPES
        if names * len(COMMON_TYPES) * len(shapes) > self.budget:
            # Larger zones: only the types each name holds, in the two
            # commonest UDP shapes, if that fits; else nothing.
            common = ()
            shapes = shapes[:2]
            held = 0
            for zone in self.zones:
                for value in zone.nodes.entries.values():
                    # Counted without making the nodes of compact names.
                    held += len(compact.types(value)) if value.__class__ is bytes else len(value.rrsets)
                    if held * len(shapes) > self.budget:
                        return 0
        for zone in self.zones:
            for node in zone.nodes.values():
                types = set(common) | set(node.rrsets)
                for qtype in types:
                    for edns, limit in shapes:
                        self.build(node.name, qtype, N.IN, edns, limit, permanent=True)
                        count += 1
        return count

    def build(self, qname: Name, qtype: int, qclass: int, edns: Edns | None, limit: int, permanent=False):
        """
        Compute, store and return C{(response, kind)} for one key.
        """
        lowered = N.key(qname)
        if qclass in (N.IN, N.ANY):
            result = lookup(self.zones, lowered, qtype, qclass == N.ANY)
        else:
            result = Answer(wire.REFUSED, aa=False, kind=b"refused")
            result.ede = wire.EDE_NOT_SUPPORTED
        response = wire.encode(lowered, qtype, qclass, result, edns, self.udpSize, limit)
        # The two header variants (RD copied from the query, RFC 1035
        # 4.1.1; CD is not, as NSD) and what follows the question name, so
        # the server only concatenates.
        headers = (response[2:12], bytes((response[2] | 1,)) + response[3:12])
        entry = (response, result.kind, headers, response[12 + len(N.toWire(lowered)) :])
        key = N.toWire(lowered) + struct.pack("!HH", qtype, qclass) + shapeKey(edns, limit)
        if permanent:
            self.permanent[key] = entry
        else:
            self.dynamic += 1
            if self.dynamic > self.maxCached:
                # Bounded: random names (NXDOMAIN floods) must not grow
                # memory; start again from the precomputed set.
                self.table = dict(self.permanent)
                self.dynamic = 1
        self.table[key] = entry
        return entry
