"""
The zone-wide checks of BIND's C{named-checkzone} (its "integrity
checks"), made once a zone file is parsed, each an error (the zone is
refused) or a warning (logged, the zone is served) as C{named-checkzone}
9.18 classifies it, except data below a DNAME, which the RFC forbids and
C{nsd-checkzone} refuses but C{named-checkzone} loads.  C{tests/test_dns_checks.py} runs C{named-checkzone}
and C{nsd-checkzone} on one zone per check and compares the verdicts.

Syntax errors, TTL and out-of-zone findings are made while parsing
(L{twisted_maillab.dns.zone}).
"""

from __future__ import annotations

from twisted_maillab.dns import compact
from twisted_maillab.dns import names as N
from twisted_maillab.dns.zone import Problem, Zone, highestCut

__all__ = ["checkZone"]


def checkZone(zone: Zone, problems: list[Problem]) -> None:
    """
    Add the findings of BIND's zone integrity checks to C{problems}.

    Compact names (L{twisted_maillab.dns.compact}) hold only A, AAAA, TXT
    and one MX each, so of these checks only the MX target's and the one
    for data below a DNAME concern them; they are made on the compact
    records without making L{Node}s of the whole zone.
    """
    apexKey = zone.originKey
    apex = zone.nodes.get(apexKey)
    path = zone.path
    entries = zone.nodes.entries
    if apex is None or N.SOA not in apex.rrsets:
        problems.append(Problem(path, 0, f"zone {N.toText(zone.origin)} has no SOA record at its apex"))
    elif len(apex.rrsets[N.SOA].rdatas) > 1:
        problems.append(Problem(path, apex.rrsets[N.SOA].line, "multiple SOA records at the apex (exactly one is allowed)"))
    if apex is None or N.NS not in apex.rrsets:
        problems.append(Problem(path, 0, f"zone {N.toText(zone.origin)} has no NS records at its apex"))
    # One pass over the names (a comprehension: the cheapest walk of a
    # million entries) picks what the checks below look at: the names kept
    # as nodes, and the compact names that may hold an MX (the only
    # compact type with a target), in the zone's order, so that findings
    # come in the order of the names.
    mx = b"\x00\x0f"
    checked = [(wireKey, value) for wireKey, value in entries.items() if value.__class__ is not bytes or mx in value]
    for _, node in checked:
        if node.__class__ is bytes:
            continue
        nodeKey = N.key(node.name)
        if nodeKey != apexKey and N.SOA in node.rrsets:
            rr = node.rrsets[N.SOA]
            problems.append(Problem(rr.path, rr.line, f"SOA record not at top of zone ({N.toText(node.name)})"))
        if N.NS in node.rrsets and nodeKey != apexKey:
            zone.cuts.add(nodeKey)
        if N.DNAME in node.rrsets:
            zone.dnames.add(nodeKey)
            if len(node.rrsets[N.DNAME].rdatas) > 1:
                rr = node.rrsets[N.DNAME]
                problems.append(Problem(rr.path, rr.line, f"{N.toText(node.name)}: more than one DNAME record (RFC 6672 2.4)"))
        cname = node.rrsets.get(N.CNAME)
        if cname is not None:
            if len(node.rrsets) > 1:
                others = ", ".join(N.typeText(t) for t in node.rrsets if t != N.CNAME)
                problems.append(Problem(cname.path, cname.line, f"{N.toText(node.name)}: CNAME and other data ({others}) (RFC 1034 3.6.2)"))
            if len(cname.rdatas) > 1:
                problems.append(Problem(cname.path, cname.line, f"{N.toText(node.name)}: more than one CNAME record"))
    paths = zone.paths
    cuts = zone.cuts
    dnames = zone.dnames
    MX, A, AAAA, CNAME = N.MX, N.A, N.AAAA, N.CNAME
    headerSize = compact.HEADER_SIZE
    unpackHeader = compact.unpackHeader
    # Below a DNAME every name is checked (RFC 6672 2.3).
    for wireKey, value in entries.items() if dnames else checked:
        if value.__class__ is bytes:
            if dnames:
                _belowDNAME(zone, problems, zone.nodes.node(wireKey, value))
            if mx not in value:
                continue
            # The records' headers walked in place (see compact.records).
            offset = 0
            n = len(value)
            while offset < n:
                start = offset + headerSize
                end = start + (value[offset + 12] << 8 | value[offset + 13])
                if value[offset] << 8 | value[offset + 1] == MX:
                    if not cuts:
                        # The common case, found without making names: the
                        # exchange exists (lower-cased wire form is its
                        # key) and has an address.
                        held = entries.get(value[start + 2 : end].lower())
                        if held is not None:
                            if held.__class__ is bytes:
                                # A compact name holds no CNAME: an
                                # address first is enough.
                                if held[0] == 0 and (held[1] == A or held[1] == AAAA):
                                    offset = end
                                    continue
                                held = compact.types(held)
                            else:
                                held = held.rrsets
                            if (A in held or AAAA in held) and CNAME not in held:
                                offset = end
                                continue
                    _, _, line, pathIndex, _ = unpackHeader(value, offset)
                    target = compact.wireToName(value, start + 2)
                    _checkTarget(zone, problems, compact.wireToName(wireKey), MX, target, paths[pathIndex], line)
                offset = end
            continue
        node = value
        nodeKey = N.key(node.name)
        if nodeKey[:1] == (b"*",) and N.NS in node.rrsets:
            # RFC 4592 4.2: an NS RRset owned by a wildcard would delegate
            # every name it synthesizes, which a cut cannot be (RFC 1034
            # 4.2.1); named-checkzone refuses it ("invalid NS owner name").
            rr = node.rrsets[N.NS]
            problems.append(Problem(rr.path, rr.line, f"{N.toText(node.name)}: NS owned by a wildcard (RFC 4592 4.2)"))
        if zone.dnames:
            _belowDNAME(zone, problems, node)
        for rtype in (N.NS, N.MX, N.SRV):
            rrset = node.rrsets.get(rtype)
            if rrset is None:
                continue
            for rdata in rrset.rdatas:
                _checkTarget(zone, problems, node.name, rtype, rdata.target, rrset.path, rrset.line)


def _belowDNAME(zone: Zone, problems: list[Problem], node) -> None:
    # RFC 6672 2.3: no records at any name below a DNAME owner (they
    # could never be reached); nsd-checkzone refuses them.
    if not node.rrsets:
        return
    nodeKey = N.key(node.name)
    for i in range(1, len(nodeKey) - len(zone.originKey) + 1):
        if nodeKey[i:] in zone.dnames:
            rr = next(iter(node.rrsets.values()))
            problems.append(Problem(rr.path, rr.line, f"{N.toText(node.name)}: data below the DNAME at {N.toText(nodeKey[i:])} (RFC 6672 2.3)"))
            break


def _checkTarget(zone: Zone, problems: list[Problem], owner, rtype: int, target, path: str, line: int) -> None:
    """
    The checks of one NS, MX or SRV target.
    """
    apexKey = zone.originKey
    nodeKey = N.key(owner)
    targetKey = N.key(target)
    if rtype == N.SRV and target == ():
        return  # RFC 2782: "." means no service
    if not N.isSubdomain(targetKey, apexKey):
        return
    # Severities as named-checkzone 9.18 gives them: only the apex NS set
    # can stop the load (the zone's own servers must be reachable); a
    # delegation's NS, MX and SRV targets are warnings (check-mx-cname,
    # check-srv-cname, and the glue checks, which named-checkzone logs and
    # loads).  tests/test_dns_checks.py compares every case with
    # named-checkzone and nsd-checkzone.
    apexNS = rtype == N.NS and nodeKey == apexKey
    below = highestCut(zone, targetKey)
    targetTypes = zone.nodes.typesAt(targetKey) or ()
    if (N.A in targetTypes or N.AAAA in targetTypes) and not (below is None and N.CNAME in targetTypes):
        return
    what = f"{N.toText(owner).rstrip('.')}/{N.typeText(rtype)} '{N.toText(target).rstrip('.')}'"
    if below is None and N.CNAME in targetTypes:
        severity = "error" if apexNS else "warning"
        problems.append(Problem(path, line, f"{what} is a CNAME (illegal)", severity))
        return
    if N.A in targetTypes or N.AAAA in targetTypes:
        return
    if rtype == N.NS and below is not None:
        # Below a cut the data is glue, not the zone's: BIND does not
        # count it as authoritative data for the apex either, so even an
        # apex NS only warns.
        problems.append(Problem(path, line, f"{what} has no REQUIRED GLUE address records (A or AAAA)", "warning"))
    elif below is None:
        severity = "error" if apexNS else "warning"
        problems.append(Problem(path, line, f"{what} has no address records (A or AAAA)", severity))
