"""
Our zones and twisted.names both ways: L{ZoneAuthority} behind Twisted's
own C{DNSServerFactory} answers the shipped zone as our server does, and
our server serves a zone read by Twisted's C{BindAuthority}
(L{AuthorityZoneSource}) as it serves the same zone from its file.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.names import authority, dns, server
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from twisted_maillab.dns.answer import Zones
from twisted_maillab.dns.server import DNSServer
from twisted_maillab.dns.service import FileZoneSource
from twisted_maillab.dns.twistedseam import AuthorityZoneSource, ZoneAuthority
from twisted_maillab.interfaces import IZoneSource

from twisted.internet.interfaces import IResolver

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "etc" / "zones" / "domaineel.rt.zone"
TYPES = (dns.A, dns.AAAA, dns.MX, dns.NS, dns.SOA, dns.TXT, dns.CNAME, dns.SRV, dns.PTR, dns.ALL_RECORDS)


def queries(zoneText: str, origin: str = "domaineel.rt") -> list[tuple[bytes, int]]:
    """
    Every owner name the zone text mentions, a name below each, names
    that do not exist and one outside the zone, with each of L{TYPES}.
    """
    names = {origin, f"nx.{origin}", f"a.b.nx.{origin}", "example.org", f"host.sous.{origin}"}
    for line in zoneText.splitlines():
        match = re.match(r"^([A-Za-z0-9.-]+)\s", line)
        if match and not line.startswith("$"):
            owner = match.group(1)
            owner = owner.rstrip(".") if owner.endswith(".") else f"{owner}.{origin}"
            names.update({owner, f"below.{owner}"})
    return [(name.encode(), qtype) for name in sorted(names) for qtype in TYPES]


def records(section) -> list:
    return sorted((r.name.name.lower(), r.type, r.cls, r.ttl, r.payload.__class__.__name__, repr(r.payload)) for r in section)


def ours(server: DNSServer, name: bytes, qtype: int) -> dns.Message:
    query = dns.Message(id=7, recDes=0)
    query.queries = [dns.Query(name, qtype, dns.IN)]
    (data,) = server.respond(query.toStr(), "127.0.0.1", udp=False)
    response = dns.Message()
    response.fromStr(data)
    return response


class _Capture:
    """
    What C{DNSServerFactory} sends, instead of a datagram protocol.
    """

    def __init__(self):
        self.messages = []

    def writeMessage(self, message, address):
        self.messages.append(message)


def twistedAnswer(factory: server.DNSServerFactory, name: bytes, qtype: int) -> dns.Message:
    query = dns.Message(id=7, recDes=0)
    query.queries = [dns.Query(name, qtype, dns.IN)]
    # What DNSDatagramProtocol sets on each message it reads.
    query.timeReceived = time.time()
    capture = _Capture()
    factory.handleQuery(query, capture, ("127.0.0.1", 53))
    (message,) = capture.messages
    # As it goes on the wire.
    response = dns.Message()
    response.fromStr(message.toStr())
    return response


class ZoneAuthorityTests(unittest.TestCase):
    def setUp(self):
        self.zones = FileZoneSource([("domaineel.rt", str(SHIPPED))]).load()
        self.ours = DNSServer(Zones(self.zones), clock=Clock())
        self.authority = ZoneAuthority(self.zones, Clock())
        self.factory = server.DNSServerFactory(authorities=[self.authority])

    def test_isAnIResolver(self):
        self.assertTrue(verifyObject(IResolver, self.authority))

    def test_answersAsOurServerOnTheShippedZone(self):
        """
        For every name of the shipped zone and each common type: the same
        rcode and the same records in each section, as far as
        twisted.names can express them (the module docstring says what it
        cannot: NXDOMAIN's SOA, REFUSED, AA without answers).
        """
        compared = {"NOERROR": 0, "NXDOMAIN": 0, "REFUSED": 0}
        for name, qtype in queries(SHIPPED.read_text()):
            mine = ours(self.ours, name, qtype)
            theirs = twistedAnswer(self.factory, name, qtype)
            where = (name, dns.QUERY_TYPES.get(qtype, qtype))
            if mine.rCode == dns.OK:
                compared["NOERROR"] += 1
                self.assertEqual(theirs.rCode, dns.OK, where)
                self.assertEqual(records(theirs.answers), records(mine.answers), where)
                self.assertEqual(records(theirs.authority), records(mine.authority), where)
                self.assertEqual(records(theirs.additional), records(mine.additional), where)
                if mine.answers:
                    self.assertEqual(theirs.auth, mine.auth, where)
            elif mine.rCode == dns.ENAME:
                compared["NXDOMAIN"] += 1
                self.assertEqual((theirs.rCode, theirs.answers), (dns.ENAME, []), where)
            else:
                compared["REFUSED"] += 1
                self.assertEqual(mine.rCode, dns.EREFUSED, where)
                # Not our zone: the authority declines (DomainError), and
                # the factory alone has nobody else to ask.
                self.assertEqual(theirs.rCode, dns.ENAME, where)
        self.assertGreater(compared["NOERROR"], 40, compared)
        self.assertGreater(compared["NXDOMAIN"], 5, compared)
        self.assertGreater(compared["REFUSED"], 5, compared)

    def test_cnameChainAndReferral(self):
        response = twistedAnswer(self.factory, b"smtp.domaineel.rt", dns.A)
        self.assertEqual(
            [(r.name.name, r.type) for r in response.answers],
            [(b"smtp.domaineel.rt", dns.CNAME), (b"serveur.domaineel.rt", dns.A)],
        )
        self.assertTrue(response.auth)
        referral = twistedAnswer(self.factory, b"www.sous.domaineel.rt", dns.A)
        self.assertEqual(
            ([], [(r.name.name, r.type) for r in referral.authority]),
            (referral.answers, [(b"sous.domaineel.rt", dns.NS)]),
        )

    def test_sharesARunningServersZones(self):
        authority = ZoneAuthority(self.ours)
        self.assertIs(authority.server, self.ours)
        self.assertEqual(self.successResultOf(authority.lookupMailExchange(b"domaineel.rt"))[0][0].payload.preference, 10)


class AuthorityZoneSourceTests(unittest.TestCase):
    def bindAuthority(self, text: str) -> authority.BindAuthority:
        # BindAuthority takes its origin from the file's name.
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "domaineel.rt"
        path.write_text(text)
        return authority.BindAuthority(os.fsencode(path))

    def absoluteShippedZone(self) -> str:
        # Twisted's BindAuthority leaves relative names in RDATA unqualified
        # ("MX 10 smtp" becomes "smtp."): the shipped zone, written with
        # absolute names, means the same and reads the same in both.
        text = SHIPPED.read_text()
        text = text.replace("NS  serveurdeux\n", "NS  serveurdeux.domaineel.rt.\n")
        text = text.replace("CNAME   serveur ", "CNAME   serveur.domaineel.rt. ")
        text = text.replace("MX      10 smtp ", "MX      10 smtp.domaineel.rt. ")
        return text

    def test_ourServerServesATwistedAuthority(self):
        text = self.absoluteShippedZone()
        source = AuthorityZoneSource([self.bindAuthority(text)])
        self.assertTrue(verifyObject(IZoneSource, source))
        fromTwisted = DNSServer(Zones(source.load()), clock=Clock())
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "zone").write_text(text)
        fromFile = DNSServer(Zones(FileZoneSource([("domaineel.rt", str(directory / "zone"))]).load()), clock=Clock())
        compared = 0
        for name, qtype in queries(text):
            mine, theirs = ours(fromFile, name, qtype), ours(fromTwisted, name, qtype)
            where = (name, qtype)
            self.assertEqual((theirs.rCode, theirs.auth), (mine.rCode, mine.auth), where)
            for section in ("answers", "authority", "additional"):
                self.assertEqual(records(getattr(theirs, section)), records(getattr(mine, section)), where)
            compared += 1
        self.assertGreater(compared, 100)

    def test_throughTheDNSServiceBuilder(self):
        """
        makeService's C{zoneSource}: the [dns] service serves it.
        """
        from twisted.internet.testing import MemoryReactorClock

        from twisted_maillab import service
        from twisted_maillab.config import loadString

        root = Path(self.mktemp()).resolve()
        config = loadString(
            f"[server]\nstate_directory = {root}\n[dns]\nenabled = yes\nlisten = tcp:53\n"
            f"zones = domaineel.rt:{SHIPPED}\n"
        )
        # A zone the file does not have: served from the authority.
        text = self.absoluteShippedZone().replace("192.168.1.25", "192.0.2.25")
        source = AuthorityZoneSource([self.bindAuthority(text)])
        top = service.makeService(config, MemoryReactorClock(), zoneSource=source)
        dnsService = top.getServiceNamed("dns")
        authority_ = ZoneAuthority(dnsService.server)
        answers = self.successResultOf(authority_.lookupAddress(b"serveur.domaineel.rt"))[0]
        self.assertEqual([r.payload.dottedQuad() for r in answers], ["192.0.2.25"])
