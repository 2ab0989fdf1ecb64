"""
Answer logic (RFC 1034 4.3.2, RFC 2308, RFC 4592, RFC 6891), the wire
encoding with truncation, the UDP/TCP protocols on in-memory transports,
zone transfers, NOTIFY and response rate limiting.
"""

from __future__ import annotations

import ipaddress
import os
import struct

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_maillab.dns import names as N
from twisted_maillab.dns import wire
from twisted_maillab.dns.answer import ResponseTable, Zones, lookup, shapeKey
from twisted_maillab.dns.server import (
    DNSDatagramProtocol,
    DNSServer,
    DNSStreamFactory,
    RateLimiter,
    _serialGreater,
    patch,
)
from twisted_maillab.dns.wire import Edns
from twisted_maillab.dns.zone import loadZone, parseOrigin

from tests.test_dns_support import FIXTURES, ROOT, buildQuery, decode

SEED = os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone")
FULL = os.path.join(FIXTURES, "full.zone")


def zonesFrom(path):
    return Zones([loadZone(path, parseOrigin("domaineel.rt"))])


def name(text):
    return N.key(parseOrigin(text))


def texts(section):
    return {(owner, N.typeText(rtype)) for owner, rtype, *_ in section}


class SeedAnswerTests(unittest.TestCase):
    """
    What the seed (TP 2) shows must hold, on the corrected zone.
    """

    def setUp(self):
        self.server = DNSServer(zonesFrom(SEED))

    def ask(self, qname, qtype, **kw):
        response = self.server.respond(buildQuery(qname, qtype, **kw), "127.0.0.1", udp=True)[0]
        return decode(response)

    def test_mxOfTheDomain(self):
        r = self.ask("domaineel.rt", N.MX)
        self.assertEqual(r["rcode"], wire.NOERROR)
        self.assertIn("aa", r["flags"])
        self.assertEqual({rd for *_, rd in r["answer"]}, {(b"\x00\x0a", "smtp.domaineel.rt.")})

    def test_mxOfTheCnameAnswersCnameAndSOA(self):
        r = self.ask("smtp.domaineel.rt", N.MX)
        self.assertEqual(texts(r["answer"]), {("smtp.domaineel.rt.", "CNAME")})
        self.assertEqual([rd for *_, rd in r["answer"]], [("serveur.domaineel.rt.",)])
        self.assertEqual(texts(r["authority"]), {("domaineel.rt.", "SOA")})
        self.assertIn("aa", r["flags"])

    def test_aaaaOfAnAOnlyNameIsNodataWithSOA(self):
        r = self.ask("serveur.domaineel.rt", N.AAAA)
        self.assertEqual((r["rcode"], r["answer"]), (wire.NOERROR, frozenset()))
        self.assertEqual(texts(r["authority"]), {("domaineel.rt.", "SOA")})
        self.assertIn("aa", r["flags"])

    def test_sousIsAReferralToServeurdeux(self):
        r = self.ask("www.sous.domaineel.rt", N.A)
        self.assertNotIn("aa", r["flags"])
        self.assertEqual(r["answer"], frozenset())
        self.assertEqual({rd for *_, rd in r["authority"]}, {("serveurdeux.domaineel.rt.",)})
        self.assertEqual(texts(r["additional"]), {("serveurdeux.domaineel.rt.", "A")})


class LookupTests(unittest.TestCase):
    def setUp(self):
        self.zones = zonesFrom(FULL)

    def look(self, qname, qtype):
        return lookup(self.zones, parseOrigin(qname), qtype)

    def owners(self, section):
        return [(N.toText(owner), rrset.rtype) for owner, rrset in section]

    def test_cnameChainFollowed(self):
        result = self.look("chain1.domaineel.rt", N.A)
        self.assertEqual(
            self.owners(result.answer),
            [("chain1.domaineel.rt.", N.CNAME), ("chain2.domaineel.rt.", N.CNAME), ("serveur.domaineel.rt.", N.A)],
        )

    def test_cnameOutOfZoneStops(self):
        result = self.look("outside.domaineel.rt", N.A)
        self.assertEqual(self.owners(result.answer), [("outside.domaineel.rt.", N.CNAME)])
        self.assertEqual(result.authority, [])

    def test_danglingCnameIsNXDOMAIN(self):
        # RFC 6604: the rcode is that of the last name of the chain.
        result = self.look("dangling.domaineel.rt", N.A)
        self.assertEqual(result.rcode, wire.NXDOMAIN)
        self.assertEqual(self.owners(result.answer), [("dangling.domaineel.rt.", N.CNAME)])

    def test_nxdomainNegativeTTL(self):
        result = self.look("nothere.domaineel.rt", N.A)
        self.assertEqual(result.rcode, wire.NXDOMAIN)
        self.assertTrue(result.aa)
        # RFC 2308 3: min(SOA TTL 3600, MINIMUM 300).
        self.assertEqual(result.authority[0][1].ttl, 300)

    def test_wildcardSynthesis(self):
        result = self.look("Anything.deeper.wild.domaineel.rt", N.A)
        self.assertEqual(self.owners(result.answer), [("Anything.deeper.wild.domaineel.rt.", N.A)])
        nodata = self.look("x.wild.domaineel.rt", N.MX)
        self.assertEqual((nodata.answer, self.owners(nodata.authority)), ([], [("domaineel.rt.", N.SOA)]))

    def test_wildcardDoesNotCoverExistingNames(self):
        # RFC 4592 2.2.2: the empty non-terminal "ent" blocks nothing here,
        # but an existing name never gets wildcard data.
        result = self.look("ent.domaineel.rt", N.A)
        self.assertEqual((result.rcode, result.answer), (wire.NOERROR, []))

    def test_wildcardCname(self):
        result = self.look("q.wildcname.domaineel.rt", N.A)
        self.assertEqual(self.owners(result.answer), [("q.wildcname.domaineel.rt.", N.CNAME), ("serveur.domaineel.rt.", N.A)])

    def test_dnameSubstitution(self):
        # RFC 6672 3.2: DNAME, synthesized CNAME, then the new name's data.
        result = self.look("x.olddomain.domaineel.rt", N.A)
        self.assertEqual(
            self.owners(result.answer),
            [("olddomain.domaineel.rt.", N.DNAME), ("x.olddomain.domaineel.rt.", N.CNAME), ("x.wild.domaineel.rt.", N.A)],
        )
        self.assertEqual(N.toText(result.answer[1][1].rdatas[0].target), "x.wild.domaineel.rt.")
        own = self.look("olddomain.domaineel.rt", N.DNAME)
        self.assertEqual(self.owners(own.answer), [("olddomain.domaineel.rt.", N.DNAME)])

    def test_dnameOverflowIsYXDOMAIN(self):
        from twisted_maillab.dns.zone import parseZoneText

        target = ".".join(["t" * 60] * 3) + ".example.net."
        text = f"$TTL 60\n@ SOA ns hm 1 1 1 1 1\n NS ns\nns A 192.0.2.1\nd DNAME {target}\n"
        zone, problems = parseZoneText(text, parseOrigin("example.org"))
        prefix = ".".join(["p" * 60] * 3)
        result = lookup(Zones([zone]), parseOrigin(f"{prefix}.d.example.org"), N.A)
        # RFC 6672 2.2: the substituted name would exceed 255 octets.
        self.assertEqual(result.rcode, wire.YXDOMAIN)

    def test_referralBelowCutWithGlue(self):
        result = self.look("ns.deleg2.domaineel.rt", N.A)
        self.assertFalse(result.aa)
        self.assertEqual(self.owners(result.authority), [("deleg2.domaineel.rt.", N.NS)])
        self.assertEqual({t for _, t in self.owners(result.additional)}, {N.A, N.AAAA})

    def test_dsAtCutAnsweredByParent(self):
        result = self.look("sous.domaineel.rt", N.DS)
        self.assertTrue(result.aa)
        self.assertEqual(self.owners(result.authority), [("domaineel.rt.", N.SOA)])

    def test_additionalForMXNSandSRV(self):
        result = self.look("domaineel.rt", N.MX)
        extra = set(self.owners(result.additional))
        self.assertIn(("mx2.domaineel.rt.", N.A), extra)
        self.assertIn(("serveur.domaineel.rt.", N.AAAA), extra)
        srv = self.look("_imap._tcp.domaineel.rt", N.SRV)
        self.assertIn(("serveur.domaineel.rt.", N.A), self.owners(srv.additional))

    def test_outsideEveryZoneRefused(self):
        result = self.look("example.com", N.A)
        self.assertEqual((result.rcode, result.aa, result.ede), (wire.REFUSED, False, wire.EDE_NOT_AUTHORITATIVE))

    def test_anyAnswersOneRRset(self):
        # RFC 8482 4.1.
        result = self.look("domaineel.rt", N.ANY)
        self.assertEqual(self.owners(result.answer), [("domaineel.rt.", N.SOA)])


class WireTests(unittest.TestCase):
    def setUp(self):
        self.server = DNSServer(zonesFrom(FULL))

    def ask(self, qname, qtype, udp=True, **kw):
        return decode(self.server.respond(buildQuery(qname, qtype, **kw), "127.0.0.1", udp=udp)[0])

    def test_ednsEchoedWithOurSize(self):
        r = self.ask("serveur.domaineel.rt", N.A, edns=4096, do=True)
        self.assertEqual((r["opt"]["size"], r["opt"]["do"], r["opt"]["version"]), (1232, True, 0))
        self.assertIsNone(self.ask("serveur.domaineel.rt", N.A)["opt"])

    def test_badVersion(self):
        r = self.ask("serveur.domaineel.rt", N.A, edns=1232, version=1)
        self.assertEqual(r["rcode"], wire.BADVERS)

    def test_truncatedOverUDP(self):
        r = self.ask("big.domaineel.rt", N.TXT)
        self.assertIn("tc", r["flags"])
        self.assertEqual((r["answer"], r["authority"]), (frozenset(), frozenset()))
        self.assertLessEqual(r["size"], 512)
        r = self.ask("big.domaineel.rt", N.TXT, edns=1232)
        self.assertNotIn("tc", r["flags"])
        self.assertEqual(len(r["answer"]), 4)
        r = self.ask("big.domaineel.rt", N.TXT, udp=False)
        self.assertNotIn("tc", r["flags"])

    def test_optionalSectionsDroppedWithoutTC(self):
        # RFC 2181 9: additional data that does not fit is left out.
        r = self.ask("big.domaineel.rt", N.TXT, edns=1000)
        self.assertNotIn("tc", r["flags"])
        self.assertEqual((len(r["answer"]), r["authority"], r["additional"]), (4, frozenset(), frozenset()))

    def test_queryCasePreserved(self):
        response = self.server.respond(buildQuery("SeRvEuR.DoMaInEeL.rt", N.A), "127.0.0.1", udp=True)[0]
        self.assertEqual(decode(response)["question"][0], (b"SeRvEuR", b"DoMaInEeL", b"rt"))
        self.assertIn(b"SeRvEuR", response)

    def test_idAndRDCopied(self):
        r = decode(self.server.respond(buildQuery("serveur.domaineel.rt", N.A, ident=777, rd=True), "h", udp=True)[0])
        self.assertEqual(r["id"], 777)
        self.assertIn("rd", r["flags"])
        self.assertNotIn("ra", r["flags"])

    def test_responsesNeverAnswered(self):
        query = bytearray(buildQuery("serveur.domaineel.rt", N.A))
        query[2] |= 0x80
        self.assertIsNone(self.server.respond(bytes(query), "h", udp=True))

    def test_formerrAndNotimp(self):
        self.assertEqual(decode(self.server.respond(b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "h", True)[0])["rcode"], wire.FORMERR)
        update = buildQuery("domaineel.rt", N.SOA, opcode=5)
        self.assertEqual(decode(self.server.respond(update, "h", True)[0])["rcode"], wire.NOTIMP)

    def test_chaosClassRefused(self):
        r = self.ask("version.bind", N.TXT, qclass=3)
        self.assertEqual(r["rcode"], wire.REFUSED)


class UDPProtocolTests(unittest.TestCase):
    def setUp(self):
        self.server = DNSServer(zonesFrom(FULL))
        self.protocol = DNSDatagramProtocol(self.server)
        self.sent = []
        self.protocol.transport = self
        self.protocol._sendto = lambda data, addr: self.sent.append((data, addr))

    def write(self, data, addr):
        self.sent.append((data, addr))

    def test_fastPathEqualsSlowPath(self):
        for edns in (None, 512, 1232, 4096):
            for qname in ("serveur.domaineel.rt", "SMTP.domaineel.rt", "nothere.domaineel.rt", "x.sous.domaineel.rt", "big.domaineel.rt"):
                for qtype in (N.A, N.TXT, N.MX):
                    query = buildQuery(qname, qtype, edns=edns, ident=99, rd=True)
                    slow = self.server.respond(query, "h", udp=True)[0]
                    self.sent = []
                    self.protocol.datagramReceived(query, ("127.0.0.1", 5000))
                    self.assertEqual(self.sent, [(slow, ("127.0.0.1", 5000))], (qname, qtype, edns))

    def test_reloadSwapsTheTable(self):
        query = buildQuery("serveur.domaineel.rt", N.A)
        self.protocol.datagramReceived(query, ("127.0.0.1", 1))
        self.server.install(zonesFrom(SEED))
        self.protocol.datagramReceived(query, ("127.0.0.1", 1))
        first, second = (decode(d) for d, _ in self.sent)
        self.assertEqual({rd for *_, rd in first["authority"] if isinstance(rd, tuple)}, {("serveur.domaineel.rt.",), ("ns2.example.net.",)})
        self.assertEqual({rd for *_, rd in second["authority"]}, {("serveur.domaineel.rt.",)})


class RateLimitTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.limiter = RateLimiter(self.clock, rate=5, slip=2, window=15)
        self.server = DNSServer(zonesFrom(SEED), rateLimiter=self.limiter)
        self.protocol = DNSDatagramProtocol(self.server)
        self.sent = []
        self.protocol.transport = self
        self.protocol._sendto = lambda data, addr: self.sent.append((data, addr))

    def write(self, data, addr):
        self.sent.append((data, addr))

    def flood(self, count, host="192.0.2.7", qname="domaineel.rt"):
        self.sent = []
        for _ in range(count):
            self.protocol.datagramReceived(buildQuery(qname, N.ANY), (host, 53))
        return [decode(d) for d, _ in self.sent]

    def test_limitsThenSlips(self):
        responses = self.flood(15)
        full = [r for r in responses if "tc" not in r["flags"]]
        slipped = [r for r in responses if "tc" in r["flags"]]
        self.assertEqual(len(full), 5)
        # Every 2nd limited response slips out empty with TC (10 limited).
        self.assertEqual(len(slipped), 5)
        self.assertTrue(all(r["answer"] == frozenset() for r in slipped))

    def test_creditReturnsWithTime(self):
        self.flood(20)
        self.clock.advance(1)
        responses = self.flood(5)
        # After a second of silence the debt is still being paid back.
        self.assertTrue(all("tc" in r["flags"] for r in responses))
        self.clock.advance(60)
        self.assertEqual([("tc" in r["flags"]) for r in self.flood(3)], [False, False, False])

    def test_perPrefix(self):
        self.flood(20, host="192.0.2.7")
        sameNet = self.flood(6, host="192.0.2.99")  # same /24: limited
        self.assertEqual([("tc" in r["flags"]) for r in sameNet], [True] * 3)
        otherNet = self.flood(5, host="198.51.100.1")  # other /24: not
        self.assertEqual([("tc" in r["flags"]) for r in otherNet], [False] * 5)

    def test_perAnswer(self):
        self.flood(20, qname="domaineel.rt")
        other = self.flood(5, qname="serveur.domaineel.rt")
        self.assertEqual([("tc" in r["flags"]) for r in other], [False] * 5)

    def test_ipv4MappedCountsAsIPv4(self):
        self.assertEqual(self.limiter.prefix("::ffff:192.0.2.7"), self.limiter.prefix("192.0.2.200"))

    def test_ipv6Prefix(self):
        self.assertEqual(self.limiter.prefix("2001:db8:0:ff::1"), self.limiter.prefix("2001:db8:0:0::2"))
        self.assertNotEqual(self.limiter.prefix("2001:db8:0:100::1"), self.limiter.prefix("2001:db8::1"))

    def test_offByDefault(self):
        self.assertIsNone(DNSServer(zonesFrom(SEED)).rateLimiter)


class TCPProtocolTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.server = DNSServer(zonesFrom(FULL), allowTransfer=[ipaddress.ip_network("127.0.0.0/8")])
        self.factory = DNSStreamFactory(self.server, self.clock, idleTimeout=10, maxClients=2)

    def connect(self, host="127.0.0.1"):
        from twisted.internet.address import IPv4Address

        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def pump(self):
        # Transfers go out a message per cooperator step, on the clock.
        for _ in range(200):
            self.clock.advance(0)

    def frames(self, data):
        out = []
        while data:
            length = int.from_bytes(data[:2], "big")
            out.append(decode(data[2 : 2 + length]))
            data = data[2 + length :]
        return out

    def framed(self, message):
        return len(message).to_bytes(2, "big") + message

    def test_pipelinedInOrder(self):
        protocol, transport = self.connect()
        stream = b"".join(self.framed(buildQuery(q, N.A, ident=i)) for i, q in enumerate(["serveur.domaineel.rt", "nothere.domaineel.rt", "many.domaineel.rt"]))
        # Delivered in odd pieces: a query split across segments.
        protocol.dataReceived(stream[:7])
        protocol.dataReceived(stream[7:40])
        protocol.dataReceived(stream[40:])
        responses = self.frames(transport.value())
        self.assertEqual([r["id"] for r in responses], [0, 1, 2])
        self.assertEqual([r["rcode"] for r in responses], [0, 3, 0])
        self.assertEqual(len(responses[2]["answerList"]), 36)  # no truncation over TCP

    def test_idleTimeout(self):
        protocol, transport = self.connect()
        self.clock.advance(9)
        protocol.dataReceived(self.framed(buildQuery("serveur.domaineel.rt", N.A)))
        self.clock.advance(9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)

    def test_backPressure(self):
        # A client that does not read makes the transport pause us; we
        # then stop reading its queries (RFC 7766 6.2.2).
        protocol, transport = self.connect()
        self.assertIs(transport.producer, protocol)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_manyQueriesInOneSegment(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"".join(self.framed(buildQuery("serveur.domaineel.rt", N.A, ident=i)) for i in range(500)))
        self.assertEqual([r["id"] for r in self.frames(transport.value())], list(range(500)))

    def test_connectionLimit(self):
        self.connect()
        self.connect()
        _, third = self.connect()
        self.assertTrue(third.disconnecting)

    def test_axfrAllowed(self):
        protocol, transport = self.connect("127.0.0.1")
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.AXFR)))
        self.pump()
        messages = self.frames(transport.value())
        records = [r for m in messages for r in m["answerList"]]
        self.assertEqual(records[0][1], N.SOA)
        self.assertEqual(records[-1][1], N.SOA)
        self.assertEqual(len(records), sum(len(r.rdatas) for r in self.server.zones.byOrigin[name("domaineel.rt")].rrsets()) + 1)
        self.assertTrue(all("aa" in m["flags"] for m in messages))

    def test_largeTransferIsIncrementalAndPipelinedQueriesWait(self):
        from twisted_maillab.dns.zone import parseZoneText

        text = "$TTL 60\n@ SOA ns hm 7 1 1 1 1\n NS ns\nns A 192.0.2.1\n" + "".join(
            f"host{i} TXT \"{'x' * 200}\"\n" for i in range(400)
        )
        zone, _ = parseZoneText(text, parseOrigin("big.test"))
        self.server.install(Zones([zone]))
        # One message per reactor turn (the default slices 10 ms of work),
        # each turn run by hand.
        turns = []

        class Turn:
            def __init__(self, f):
                self.f = f
                turns.append(self)

            def cancel(self):
                turns.remove(self)

        self.factory.cooperator = task.Cooperator(terminationPredicateFactory=lambda: (lambda: True), scheduler=Turn)
        protocol, transport = self.connect()
        protocol.dataReceived(self.framed(buildQuery("big.test", N.AXFR, ident=1)) + self.framed(buildQuery("ns.big.test", N.A, ident=2)))
        turns.pop(0).f()
        # One step of the cooperator: the reactor is not held for the zone.
        self.assertEqual(len(self.frames(transport.value())), 1)
        while turns:
            turns.pop(0).f()
        messages = self.frames(transport.value())
        self.assertGreater(len(messages), 4)
        self.assertEqual([m["id"] for m in messages[:-1]], [1] * (len(messages) - 1))
        self.assertEqual(sum(len(m["answerList"]) for m in messages[:-1]), 404)
        # The query pipelined behind the transfer is answered after it.
        self.assertEqual(messages[-1]["id"], 2)

    def test_transferStopsWhenClientLeaves(self):
        protocol, transport = self.connect()
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.AXFR)))
        self.assertIsNotNone(protocol.transfer)
        protocol.connectionLost(None)
        self.assertIsNone(protocol.transfer)
        self.pump()

    def test_axfrRefusedOutsideAllowTransfer(self):
        protocol, transport = self.connect("192.0.2.1")
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.AXFR)))
        self.assertEqual(self.frames(transport.value())[0]["rcode"], wire.REFUSED)

    def test_axfrNeverOverUDP(self):
        response = decode(self.server.respond(buildQuery("domaineel.rt", N.AXFR), "127.0.0.1", udp=True)[0])
        self.assertEqual(response["rcode"], wire.NOTIMP)

    def test_ixfrIsAFullTransferOrUpToDate(self):
        protocol, transport = self.connect()
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.IXFR, authoritySOA=1)))
        self.pump()
        records = [r for m in self.frames(transport.value()) for r in m["answerList"]]
        self.assertGreater(len(records), 10)
        transport.clear()
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.IXFR, authoritySOA=2026112901)))
        records = [r for m in self.frames(transport.value()) for r in m["answerList"]]
        self.assertEqual([r[1] for r in records], [N.SOA])

    def test_ixfrWithoutSOAIsFormerr(self):
        protocol, transport = self.connect()
        protocol.dataReceived(self.framed(buildQuery("domaineel.rt", N.IXFR)))
        self.assertEqual(self.frames(transport.value())[0]["rcode"], wire.FORMERR)

    def test_notifyForOurZone(self):
        # We are the primary: nobody may NOTIFY us (NSD: REFUSED).
        reply = decode(self.server.respond(buildQuery("domaineel.rt", N.SOA, opcode=4), "127.0.0.1", udp=True)[0])
        self.assertEqual((reply["opcode"], reply["rcode"]), (4, wire.REFUSED))
        other = decode(self.server.respond(buildQuery("example.com", N.SOA, opcode=4), "127.0.0.1", udp=True)[0])
        self.assertEqual(other["rcode"], wire.NOTAUTH)


class SerialTests(unittest.TestCase):
    def test_rfc1982(self):
        self.assertTrue(_serialGreater(5, 4))
        self.assertFalse(_serialGreater(4, 4))
        self.assertFalse(_serialGreater(3, 4))
        self.assertTrue(_serialGreater(1, 2**32 - 10))  # wrapped
        self.assertFalse(_serialGreater(2**32 - 10, 1))


class TableTests(unittest.TestCase):
    def test_precomputedForEveryName(self):
        zones = zonesFrom(SEED)
        table = ResponseTable(zones, 1232)
        count = table.precompute()
        self.assertGreater(count, 0)
        self.assertEqual(len(table.table), count)

    def test_dynamicEntriesBounded(self):
        table = ResponseTable(zonesFrom(SEED), 1232, maxCached=10)
        table.precompute()
        base = len(table.table)
        for i in range(50):
            table.build(parseOrigin(f"n{i}.domaineel.rt"), N.A, N.IN, None, 512)
        self.assertLessEqual(len(table.table), base + 10)

    def test_largeZoneBuiltOnFirstUse(self):
        """
        A zone past the precompute budget costs nothing at load; each
        answer is built on first use (the fast path misses, the slow path
        builds and stores it) and kept, bounded, for the next query.
        """
        from twisted_maillab.dns.zone import parseZoneText

        text = "$TTL 3600\n@ SOA ns1 hostmaster 1 7200 900 1209600 600\n@ NS ns1\nns1 A 192.0.2.1\n"
        text += "".join(f"h{i} A 10.0.{i >> 8}.{i & 255}\nh{i} MX 10 h{i + 1}\n" for i in range(6000))
        zone, problems = parseZoneText(text, parseOrigin("big.test"))
        self.assertEqual([p for p in problems if p.severity == "error"], [])
        zones = Zones([zone])
        table = ResponseTable(zones, 1232, maxCached=6)
        self.assertEqual(table.precompute(), 0)
        self.assertEqual(table.table, {})
        server = DNSServer(zones)
        server.install(zones, table)
        protocol = DNSDatagramProtocol(server)
        sent = []
        protocol._sendto = lambda data, addr: sent.append(data)
        protocol.transport = type("T", (), {"write": lambda self, data, addr: sent.append(data)})()
        for qname, qtype in (("h7.big.test", N.MX), ("H7.big.test", N.MX), ("h2999.big.test", N.A), ("nothere.big.test", N.A)):
            for edns in (None, 1232):
                query = buildQuery(qname, qtype, edns=edns)
                protocol.datagramReceived(query, ("127.0.0.1", 5))
                protocol.datagramReceived(query, ("127.0.0.1", 5))
                self.assertEqual(sent[-1], sent[-2])
                key = N.toWire(name(qname)) + struct.pack("!HH", qtype, N.IN) + shapeKey(Edns(1232, 0, False) if edns else None, 1232 if edns else 512)
                self.assertIn(key, table.table)
        first = decode(sent[0])
        self.assertEqual([r[4][1] for r in first["answerList"]], ["h8.big.test."])
        self.assertEqual({r[0] for r in first["additional"]}, {"h8.big.test.", "ns1.big.test."})
        self.assertEqual(decode(sent[-1])["rcode"], wire.NXDOMAIN)
        # Six distinct responses at most (h7 MX twice in each shape is one).
        self.assertLessEqual(len(table.table), 6)
