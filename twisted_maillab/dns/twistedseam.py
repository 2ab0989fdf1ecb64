"""
Our zones and C{twisted.names}, both ways.

  - L{ZoneAuthority}: an L{IResolver} authority over loaded zones, so
    C{twisted.names.server.DNSServerFactory(authorities=[ZoneAuthority(...)])}
    (or a C{ResolverChain}) serves them.  Each lookup goes through our
    server's public entry point, L{DNSServer.respond}: a query message in,
    response bytes out, decoded by C{twisted.names.dns.Message} into the
    C{RRHeader}s an authority returns.  So it answers as our server does,
    as far as C{twisted.names} can express it: the records of the three
    sections, NXDOMAIN as C{AuthoritativeDomainError}.  What it cannot
    express: the SOA in the authority section of an NXDOMAIN (an authority
    fails with no records), REFUSED for a name outside our zones (it fails
    with C{DomainError}, so a resolver chain asks its next resolver, and
    C{DNSServerFactory} answers NXDOMAIN), and the AA flag of a response
    without answer records (the factory sets AA from the answers' C{auth}).
  - L{AuthorityZoneSource}: an L{IZoneSource} from C{twisted.names}
    authority objects (C{FileAuthority} and its subclasses
    C{BindAuthority}, C{PySourceAuthority}): their records are written out
    as master-file text in RFC 3597 generic form (each record's own wire
    encoding, so no type is lost in a conversion of ours) and parsed and
    checked by our zone parser, like a zone file.
"""

from __future__ import annotations

import secrets
from io import BytesIO

from twisted.internet import defer
from twisted.names import common, dns
from twisted.names.error import DomainError
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_maillab.interfaces import IZoneSource

__all__ = ["ZoneAuthority", "AuthorityZoneSource", "authorityZoneText"]


class ZoneAuthority(common.ResolverBase):
    """
    A C{twisted.names} authority answering from our zones.

    @ivar server: the L{twisted_maillab.dns.server.DNSServer} answering.
    """

    def __init__(self, zones, clock=None):
        """
        @param zones: a list of L{twisted_maillab.dns.zone.Zone} (for
            example from an L{IZoneSource}'s C{load()}), or a running
            L{twisted_maillab.dns.server.DNSServer} to share its zones
            (and their reloads).
        @param clock: the L{IReactorTime} of a new server's log rate limit.
        """
        super().__init__()
        from twisted_maillab.dns.answer import Zones
        from twisted_maillab.dns.server import DNSServer

        if isinstance(zones, DNSServer):
            self.server = zones
        else:
            if clock is None:
                from twisted.internet import reactor as clock
            self.server = DNSServer(Zones(list(zones)), clock=clock)

    @classmethod
    def fromSource(cls, source, clock=None) -> "ZoneAuthority":
        """
        The zones of an L{IZoneSource} (blocking: it reads them).
        """
        return cls(IZoneSource(source).load(), clock)

    def _lookup(self, name, cls, type, timeout=None):
        query = dns.Message(id=secrets.randbelow(0x10000), recDes=0)
        query.queries = [dns.Query(name, type, cls)]
        # As over TCP: no truncation, and a transfer (AXFR) is refused
        # unless allowed, as our server refuses it.
        replies = self.server.respond(query.toStr(), "127.0.0.1", udp=False)
        if not isinstance(replies, list) or len(replies) != 1:
            return defer.fail(Failure(DomainError(name)))
        response = dns.Message()
        response.fromStr(replies[0])
        if response.rCode == dns.ENAME:
            return defer.fail(Failure(dns.AuthoritativeDomainError(name)))
        if response.rCode != dns.OK:
            # REFUSED: not one of our zones.
            return defer.fail(Failure(DomainError(name)))
        sections = (response.answers, response.authority, response.additional)
        for section in sections:
            for record in section:
                record.auth = bool(response.auth)
        return defer.succeed(sections)


def _generic(record: dns.RRHeader) -> str:
    """
    One record as a master-file line in RFC 3597 section 5 generic form.
    """
    payload = BytesIO()
    record.payload.encode(payload, None)
    data = payload.getvalue()
    owner = record.name.name.decode("ascii") or "."
    if not owner.endswith("."):
        owner += "."
    return f"{owner} {record.ttl} CLASS{record.cls} TYPE{record.type} \\# {len(data)} {data.hex() or ''}".rstrip()


def authorityZoneText(authority) -> tuple[str, str]:
    """
    The origin and master-file text of a C{twisted.names} C{FileAuthority}.

    @return: C{(origin, text)}.
    """
    origin, soa = authority.soa
    origin = origin.decode("ascii") if isinstance(origin, bytes) else str(origin)
    lines = []
    # The SOA first: the zone's apex record.
    lines.append(_generic(dns.RRHeader(origin, dns.SOA, dns.IN, soa.ttl or 0, soa)))
    for owner, records in sorted(authority.records.items()):
        for payload in records:
            if payload.TYPE == dns.SOA:
                continue
            ttl = payload.ttl if payload.ttl is not None else soa.minimum
            lines.append(_generic(dns.RRHeader(owner, payload.TYPE, dns.IN, ttl, payload)))
    return origin, "\n".join(lines) + "\n"


@implementer(IZoneSource)
class AuthorityZoneSource:
    """
    Zones from C{twisted.names} authorities (L{IZoneSource}), for our
    server to serve.
    """

    def __init__(self, authorities):
        self.authorities = list(authorities)

    def load(self):
        from twisted_maillab.dns.zone import ZoneError, parseOrigin, parseZoneText

        zones = []
        for authority in self.authorities:
            origin, text = authorityZoneText(authority)
            where = f"<{type(authority).__name__} {origin}>"
            zone, problems = parseZoneText(text, parseOrigin(origin), where)
            if any(p.severity == "error" for p in problems):
                raise ZoneError(where, problems, origin)
            zones.append(zone)
        return zones
