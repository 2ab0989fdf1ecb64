"""
The answers where maillab differed from NSD, one test per class, on
tests/dns_fixtures/hard.zone in-process (tests/test_dns_nsd.py runs the
same zone against NSD itself): a CNAME into a delegation, CNAME chains
and loops, ANY, DS at a cut, QCLASS *, NOTIFY, queries carrying records,
truncation after a CNAME.
"""

from __future__ import annotations

import os

from twisted.internet import task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from twisted_maillab.dns import names as N
from twisted_maillab.dns import wire
from twisted_maillab.dns.answer import Zones
from twisted_maillab.dns.server import NOTIFY_LOG_INTERVAL, DNSServer
from twisted_maillab.dns.zone import loadZone, parseOrigin

from tests.test_dns_support import FIXTURES, buildQuery, decode

HARD = os.path.join(FIXTURES, "hard.zone")


def owners(section, rtype=None):
    return sorted(owner for owner, t, *_ in section if rtype is None or t == rtype)


class HardZoneTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.server = DNSServer(Zones([loadZone(HARD, parseOrigin("hard.test"))]), clock=self.clock)

    def ask(self, qname, qtype, udp=True, **kw):
        return decode(self.server.respond(buildQuery(qname, qtype, **kw), "127.0.0.1", udp=udp)[0])

    def test_cnameIntoDelegationThenReferral(self):
        """
        RFC 1034 4.3.2 step 3.b after step 3.a: the CNAME, then the
        child's NS in authority and their glue in additional.
        """
        for qname in ("intosub.hard.test", "atsub.hard.test"):
            r = self.ask(qname, N.A, edns=1232)
            self.assertEqual(r["rcode"], wire.NOERROR)
            self.assertIn("aa", r["flags"])
            self.assertEqual([t for _, t, *_ in r["answerList"]], [N.CNAME])
            self.assertEqual(owners(r["authority"], N.NS), ["sub.hard.test."] * 3)
            self.assertEqual(set(owners(r["additional"])), {"ns.sub.hard.test.", "ns1.hard.test."})

    def test_longChainFollowedToTheEnd(self):
        r = self.ask("c1.hard.test", N.A, edns=1232)
        self.assertEqual(len(owners(r["answer"], N.CNAME)), 12)
        self.assertEqual(owners(r["answer"], N.A), ["mail.hard.test."])
        nodata = self.ask("c1.hard.test", N.MX, edns=1232)
        self.assertEqual(len(nodata["answer"]), 12)
        self.assertEqual([t for _, t, *_ in nodata["authority"]], [N.SOA])

    def test_loopsEnd(self):
        r = self.ask("loop1.hard.test", N.A)
        self.assertEqual(owners(r["answer"]), ["loop1.hard.test.", "loop2.hard.test.", "loop3.hard.test."])
        self.assertEqual(owners(self.ask("self.hard.test", N.A)["answer"]), ["self.hard.test."])

    def test_anyGetsAdditionalProcessing(self):
        r = self.ask("svc.hard.test", N.ANY, edns=1232)
        self.assertEqual([t for _, t, *_ in r["answerList"]], [N.MX])
        self.assertEqual({(o, t) for o, t, *_ in r["additional"]}, {("mail.hard.test.", N.A), ("mail.hard.test.", N.AAAA)})

    def test_dsAtDelegationAlone(self):
        r = self.ask("sub.hard.test", N.DS, edns=1232)
        self.assertIn("aa", r["flags"])
        self.assertEqual([t for _, t, *_ in r["answerList"]], [N.DS])
        self.assertEqual((r["authority"], r["additional"]), (frozenset(), frozenset()))

    def test_qclassAnyAnswersTheInData(self):
        """
        RFC 1035 3.2.5: QCLASS * matches IN; not authoritative, no apex NS
        or negative SOA (as NSD).
        """
        r = self.ask("hard.test", N.MX, qclass=N.ANY, edns=1232)
        self.assertEqual(r["rcode"], wire.NOERROR)
        self.assertNotIn("aa", r["flags"])
        self.assertEqual(r["question"][2], N.ANY)
        self.assertEqual({rclass for _, _, rclass, *_ in r["answer"]}, {N.IN})
        self.assertEqual(len(r["answer"]), 2)
        self.assertEqual(r["authority"], frozenset())
        self.assertEqual(set(owners(r["additional"])), {"mail.hard.test.", "mail2.hard.test."})
        self.assertEqual(r["opt"]["options"], b"")
        nx = self.ask("nothere.hard.test", N.A, qclass=N.ANY)
        self.assertEqual((nx["rcode"], nx["authority"]), (wire.NXDOMAIN, frozenset()))
        self.assertEqual(self.ask("mail.hard.test", N.A, qclass=3)["rcode"], wire.REFUSED)

    def test_notifyRefusedAndLogRateLimited(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(50):
            r = self.ask("hard.test", N.SOA, opcode=wire.OPCODE_NOTIFY, aa=True, edns=1232)
            self.assertEqual((r["opcode"], r["rcode"], r["question"]), (wire.OPCODE_NOTIFY, wire.REFUSED, None))
            self.assertIn("aa", r["flags"])
        lines = [formatEvent(e) for e in events if "NOTIFY" in formatEvent(e)]
        self.assertEqual(lines, ["refused 1 NOTIFY message(s) (last for hard.test. from 127.0.0.1): we are the zone's primary"])
        self.clock.advance(NOTIFY_LOG_INTERVAL)
        self.ask("hard.test", N.SOA, opcode=wire.OPCODE_NOTIFY)
        lines = [formatEvent(e) for e in events if "NOTIFY" in formatEvent(e)]
        self.assertEqual(len(lines), 2)
        self.assertIn("refused 50 NOTIFY", lines[1])
        self.assertEqual(self.server.notifiesRefused, 51)

    def test_recordsInAQueryAreFormerr(self):
        for kw in ({"answerA": b"\xc0\x00\x02\x01"}, {"authorityA": b"\xc0\x00\x02\x01"}):
            for udp in (True, False):
                r = self.ask("mail.hard.test", N.A, udp=udp, edns=1232, **kw)
                self.assertEqual((r["rcode"], r["question"], r["answer"]), (wire.FORMERR, None, frozenset()), kw)

    def test_truncationKeepsTheCNAME(self):
        r = self.ask("tomany.hard.test", N.A)
        self.assertIn("tc", r["flags"])
        self.assertEqual([t for _, t, *_ in r["answerList"]], [N.CNAME])
        alone = self.ask("many.hard.test", N.A)
        self.assertIn("tc", alone["flags"])
        self.assertEqual(alone["answer"], frozenset())
