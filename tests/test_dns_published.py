"""
Records generated from the config (L{twisted_maillab.dns.published}):
added to the zones served, never mixed with the file's RRsets, and
raising the served serial when they change, across reloads and restarts.
"""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor
from twisted.names import client, dns
from twisted.trial import unittest
from zope.interface import implementer

from twisted_maillab import config, service
from twisted_maillab.checkconfig import problems as checkProblems
from twisted_maillab.config import ConfigError
from twisted_maillab.dns import published
from twisted_maillab.dns.published import PublishingZoneSource, servedSerial
from twisted_maillab.dns.service import FileZoneSource
from twisted_maillab.dns.zone import ZoneError
from twisted_maillab.interfaces import IRecordPublisher

from tests.support import freePort
from tests.test_dns_service import seedText


@implementer(IRecordPublisher)
class LinesPublisher:
    """
    Publishes whatever its class attribute C{lines} holds for domaineel.rt.
    """

    name = "test records"
    lines = ["_imaps._tcp 3600 IN SRV 0 1 993 smtp.domaineel.rt."]

    def records(self, config, origin):
        if origin != "domaineel.rt.":
            return []
        return list(self.lines)


@implementer(IRecordPublisher)
class BrokenPublisher:
    name = "broken records"

    def records(self, config, origin):
        raise RuntimeError("no key file")


class ServedSerialTests(unittest.TestCase):
    def test_firstLoadServesTheFileSerial(self):
        self.assertEqual(servedSerial(None, 7, "a"), 7)

    def test_nothingChangedKeepsTheServedSerial(self):
        self.assertEqual(servedSerial({"file": 7, "digest": "a", "served": 9}, 7, "a"), 9)

    def test_generatedChangeRaisesAboveTheLastServed(self):
        self.assertEqual(servedSerial({"file": 7, "digest": "a", "served": 9}, 7, "b"), 10)

    def test_fileSerialPastTheServedOneWins(self):
        self.assertEqual(servedSerial({"file": 7, "digest": "a", "served": 9}, 2026120201, "a"), 2026120201)

    def test_fileSerialRaisedButNotPastTheServedOne(self):
        self.assertEqual(servedSerial({"file": 7, "digest": "a", "served": 9}, 8, "a"), 10)

    def test_wrapsAt2To32(self):
        # RFC 1982: 0 follows 2^32-1.
        self.assertEqual(servedSerial({"file": 2**32 - 2, "digest": "a", "served": 2**32 - 1}, 2**32 - 2, "b"), 0)
        # And 7 is past 2^32-1 in serial arithmetic.
        self.assertEqual(servedSerial({"file": 2**32 - 2, "digest": "a", "served": 2**32 - 1}, 7, "a"), 7)


class _ZoneDirectory(unittest.TestCase):
    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.zonePath = os.path.join(self.directory, "domaineel.rt.zone")
        self.writeZone(seedText())
        self.patch(LinesPublisher, "lines", list(LinesPublisher.lines))
        self.patch(published, "PUBLISHERS", {"test": f"{__name__}:LinesPublisher"})

    def writeZone(self, text):
        with open(self.zonePath, "w") as f:
            f.write(text)

    def ini(self, extra="", publish="yes", port=53):
        path = os.path.join(self.directory, "maillab.ini")
        with open(path, "w") as f:
            f.write(
                f"[server]\nstate_directory = {self.directory}/state\n"
                "[dns]\nenabled = yes\n"
                f"listen = tcp:{port}:interface=127.0.0.1\n"
                f"zones = domaineel.rt:{self.zonePath}\n"
                f"publish_mail_records = {publish}\n" + extra
            )
        return config.load(path)

    def load(self, **kwargs):
        conf = self.ini()
        source = PublishingZoneSource(FileZoneSource(conf.dns.zones), conf, published.publishers(conf), **kwargs)
        return source.load()[0]

    def state(self):
        with open(os.path.join(self.directory, "state", published.STATE_FILE)) as f:
            return json.load(f)


class PublishingZoneSourceTests(_ZoneDirectory):
    def test_recordsAdded(self):
        zone = self.load()
        key = (b"_imaps", b"_tcp", b"domaineel", b"rt")
        rrset = zone.nodes[key].rrsets[dns.SRV]
        self.assertEqual(rrset.ttl, 3600)
        self.assertEqual(rrset.path, "<generated: test records>")
        # An empty non-terminal for the generated name's parent, as for a file's.
        self.assertIn(key[1:], zone.nodes)

    def test_lineWithoutTTLGetsTheDefault(self):
        LinesPublisher.lines = ["_pop3s._tcp SRV 0 1 995 smtp.domaineel.rt."]
        zone = self.load()
        rrset = zone.nodes[(b"_pop3s", b"_tcp", b"domaineel", b"rt")].rrsets[dns.SRV]
        self.assertEqual(rrset.ttl, published.DEFAULT_TTL)

    def test_clashWithTheFileNamesBoth(self):
        self.writeZone(seedText(extra="_imaps._tcp SRV 0 1 993 serveur.domaineel.rt.\n"))
        lineNumber = len(seedText().splitlines()) + 1
        error = self.assertRaises(ZoneError, self.load)
        [problem] = error.problems
        self.assertEqual((problem.path, problem.line), (self.zonePath, lineNumber))
        self.assertIn("_imaps._tcp.domaineel.rt. SRV is written here and also generated by <generated: test records>", problem.reason)

    def test_sameOwnerOtherTypeIsFine(self):
        self.writeZone(seedText(extra="_dmarc TXT \"v=DMARC1; p=none\"\n"))
        LinesPublisher.lines = ['_dmarc CAA 0 issue "ca.example"']
        zone = self.load()
        self.assertEqual(set(zone.nodes[(b"_dmarc", b"domaineel", b"rt")].rrsets), {dns.TXT, 257})

    def test_generatedCNAMEBesideFileDataIsAnError(self):
        # The zone-wide checks run again on the merged zone.
        LinesPublisher.lines = ["serveur CNAME smtp.domaineel.rt."]
        error = self.assertRaises(ZoneError, self.load)
        self.assertTrue(any("CNAME" in p.reason for p in error.problems), error.problems)

    def test_aliasInTheFileWins(self):
        """
        A generated record at a name the file makes a CNAME is left out
        with a warning (RFC 1034 3.6.2): a shipped config's host name may
        be an alias of the server's name in the zone.
        """
        LinesPublisher.lines = ['smtp TXT "v=spf1 mx -all"', "_imaps._tcp SRV 0 1 993 serveur.domaineel.rt."]
        zone = self.load()
        node = zone.nodes[(b"smtp", b"domaineel", b"rt")]
        self.assertEqual(set(node.rrsets), {dns.CNAME})
        self.assertIn(dns.SRV, zone.nodes[(b"_imaps", b"_tcp", b"domaineel", b"rt")].rrsets)
        [warning] = [w for w in zone.warnings if "not published" in w.reason]
        self.assertEqual((warning.path, warning.line), ("<generated: test records>", 1))
        self.assertIn("makes the name an alias (CNAME)", warning.reason)

    def test_outOfZoneIsAnError(self):
        LinesPublisher.lines = ["www.example.com. A 192.0.2.1"]
        error = self.assertRaises(ZoneError, self.load)
        self.assertIn("out-of-zone data (www.example.com.)", str(error))

    def test_generatedSOAIsAnError(self):
        LinesPublisher.lines = ["sub SOA a. b. 1 2 3 4 5"]
        error = self.assertRaises(ZoneError, self.load)
        self.assertIn("only the zone file gives the SOA", str(error))

    def test_syntaxErrorNamesThePublisherAndLine(self):
        LinesPublisher.lines = ["_a._tcp SRV 0 1 993 x.domaineel.rt.", "_b._tcp SRV nonsense"]
        error = self.assertRaises(ZoneError, self.load)
        [problem] = error.problems
        self.assertEqual((problem.path, problem.line), ("<generated: test records>", 2))

    def test_publisherFailureNamesIt(self):
        self.patch(published, "PUBLISHERS", {"broken": f"{__name__}:BrokenPublisher"})
        error = self.assertRaises(ConfigError, self.load)
        self.assertIn("broken records: no key file", str(error))
        self.assertEqual((error.section, error.key), ("dns", "publish_mail_records"))

    def test_unimportablePublisherNamesIt(self):
        self.patch(published, "PUBLISHERS", {"gone": "twisted_maillab.nosuchmodule:Thing"})
        conf = self.ini()
        error = self.assertRaises(ConfigError, published.publishers, conf)
        self.assertIn("record publisher gone (twisted_maillab.nosuchmodule:Thing) failed to load", str(error))

    def test_servedSerialRisesWhenGeneratedRecordsChange(self):
        self.assertEqual(self.load().serial, 4)
        self.assertEqual(self.state()["domaineel.rt."]["served"], 4)
        # Same records: same serial (a restart changes nothing).
        self.assertEqual(self.load().serial, 4)
        LinesPublisher.lines = ["_imaps._tcp 3600 IN SRV 0 1 993 serveur.domaineel.rt."]
        self.assertEqual(self.load().serial, 5)
        # Persisted: a later start with the same records serves 5 again.
        self.assertEqual(self.load().serial, 5)
        # The administrator's serial past it wins.
        self.writeZone(seedText(serial=2026120201))
        self.assertEqual(self.load().serial, 2026120201)

    def test_checksDoNotPersist(self):
        self.load(persist=False)
        self.assertFalse(os.path.exists(os.path.join(self.directory, "state", published.STATE_FILE)))

    def test_offByDefault(self):
        conf = self.ini(publish="no")
        source = FileZoneSource(conf.dns.zones)
        self.assertIs(published.zoneSourceFor(conf, source), source)

    def test_checkConfigReportsAClash(self):
        self.writeZone(seedText(extra="_imaps._tcp SRV 0 1 993 serveur.domaineel.rt.\n"))
        found = checkProblems(self.ini())
        self.assertEqual(len(found), 1)
        self.assertIn("also generated by <generated: test records>", str(found[0]))
        self.assertFalse(os.path.exists(os.path.join(self.directory, "state", published.STATE_FILE)))


class ServedTests(_ZoneDirectory):
    """
    Over real sockets: the generated records answered, the served serial
    in the SOA, and a reload after the generated records changed installs
    the new zone.
    """

    def start(self):
        self.port = freePort()
        conf = self.ini(port=self.port)
        self.top = service.makeService(conf, reactor)
        self.top.privilegedStartService()
        self.top.startService()
        self.addCleanup(self.top.stopService)
        self.resolver = client.Resolver(servers=[("127.0.0.1", self.port)], reactor=reactor)
        return self.top.getServiceNamed("dns")

    @defer.inlineCallbacks
    def test_answeredAndReloaded(self):
        dnsService = self.start()
        answers, _, _ = yield self.resolver.lookupService("_imaps._tcp.domaineel.rt")
        self.assertEqual([(str(a.payload.target), a.payload.port) for a in answers], [("smtp.domaineel.rt", 993)])
        self.assertTrue(answers[0].auth)
        LinesPublisher.lines = ["_imaps._tcp 3600 IN SRV 0 1 10993 smtp.domaineel.rt."]
        replaced = yield dnsService.reload()
        self.assertEqual(replaced, ["domaineel.rt."])
        answers, _, _ = yield self.resolver.lookupService("_imaps._tcp.domaineel.rt")
        self.assertEqual([a.payload.port for a in answers], [10993])
        soa, _, _ = yield self.resolver.lookupAuthority("domaineel.rt")
        self.assertEqual(soa[0].payload.serial, 5)
