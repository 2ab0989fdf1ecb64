"""
Against the reference: NSD 4 (Debian's nsd package) on loopback.

- Differential: the same zone loaded in NSD and in maillab, the same
  queries (tests/dns_fixtures/queries.txt) sent to both, rcode, opcode,
  flags, OPT shape and each section compared as sets.
- Replication: NSD as a secondary of maillab receives the zone by AXFR,
  acknowledges our NOTIFY, and fetches again after a reload that raises
  the serial.

These tests FAIL (never skip) when nsd is missing: apt-get install -y nsd.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from twisted_maillab import config, service
from twisted_maillab.dns import names as N

from tests.support import freePort
from tests.test_dns_support import (
    FIXTURES,
    NSD,
    buildQuery,
    comparable,
    decode,
    queryFor,
    readQueryList,
    tcpQuery,
    udpQuery,
)
from tests.test_dns_service import seedText

# Differences where NSD is the one that is wrong, with the reason; every
# other query of the list must answer exactly as NSD does.
KNOWN_NSD_DEVIATIONS: dict = {
    ("domaineel.rt", "IXFR", ("ixfr=1",)): (
        "RFC 1995 2: an IXFR over UDP whose answer does not fit gets the "
        "server's SOA alone, so the client retries over TCP.  NSD 4.6.1 "
        "sends the first records of an AXFR that fit, without TC, which a "
        "client cannot tell from a complete answer.  We send the SOA.",
        lambda ours, theirs: [r[1] for r in ours["answer"]] == [N.SOA],
    ),
}

# The same for tests/dns_fixtures/hard-queries.txt.
HARD_DEVIATIONS: dict = {}


def startMaillab(testCase, zonePath: str, extra: str = "", origin: str = "domaineel.rt"):
    directory = os.path.abspath(testCase.mktemp())
    os.makedirs(directory)
    port = freePort()
    ini = os.path.join(directory, "maillab.ini")
    with open(ini, "w") as f:
        f.write(f"[dns]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\nzones = {origin}:{zonePath}\n" + extra)
    top = service.makeService(config.load(ini), reactor)
    top.privilegedStartService()
    top.startService()
    testCase.addCleanup(top.stopService)
    return top.getServiceNamed("dns"), port


def ask(port: int, name: str, typeText: str, options):
    """
    Blocking: one line of the query list, answered as comparable parts.
    """
    message, tcp = queryFor(name, typeText, options)
    if typeText.upper() == "AXFR" and tcp:
        messages = [decode(m) for m in tcpQuery(port, message, transfer=True)]
        # How the records are split into messages is each server's choice
        # (RFC 5936 2.2); what they are is not.
        return {
            "rcodes": frozenset(m["rcode"] for m in messages),
            "flags": frozenset(frozenset(m["flags"]) for m in messages),
            "records": frozenset(r for m in messages for r in m["answerList"]),
        }
    if tcp:
        return comparable(decode(tcpQuery(port, message)[0]))
    response = udpQuery(port, message)
    if response is None:
        return "no response"
    decoded = decode(response)
    return dict(comparable(decoded), questionCase=decoded["question"][0] if decoded["question"] else None)


@defer.inlineCallbacks
def differential(testCase, zoneFile: str, origin: str, queries, deviations: dict):
    """
    Load C{zoneFile} in NSD and in maillab, ask both every query and
    return the differences (one line each).  C{deviations} maps a query to
    C{(reason, check)}: C{check(ours, theirs)} is true while our answer is
    still the RFC's one where NSD's differs.
    """
    zonePath = os.path.join(FIXTURES, zoneFile)
    with open(zonePath) as f:
        nsd = NSD(testCase, {origin: f.read()})
    testCase.addCleanup(nsd.stop)
    yield threads.deferToThread(nsd.start, origin)
    _, port = startMaillab(testCase, zonePath, "allow_transfer = 127.0.0.0/8\n", origin=origin)

    def run():
        differences = []
        for name, typeText, options in queries:
            theirs = ask(nsd.port, name, typeText, options)
            ours = ask(port, name, typeText, options)
            if (name, typeText, options) in deviations:
                # Still a difference, and ours is the RFC's answer.
                _, check = deviations[(name, typeText, options)]
                if ours == theirs or not check(ours, theirs):
                    differences.append(f"{name} {typeText} {options}: documented deviation no longer holds: maillab={ours!r} nsd={theirs!r}")
                continue
            if ours != theirs:
                keys = sorted(set(ours) | set(theirs)) if isinstance(ours, dict) and isinstance(theirs, dict) else ["all"]
                detail = "; ".join(
                    f"{k}: maillab={ours.get(k)!r} nsd={theirs.get(k)!r}" for k in keys if isinstance(ours, dict) and ours.get(k) != theirs.get(k)
                ) or f"maillab={ours!r} nsd={theirs!r}"
                differences.append(f"{name} {typeText} {' '.join(options)}: {detail}")
        return differences

    return (yield threads.deferToThread(run))


class DifferentialTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_sameAnswersAsNSD(self):
        queries = readQueryList(os.path.join(FIXTURES, "queries.txt"))
        differences = yield differential(self, "full.zone", "domaineel.rt", queries, KNOWN_NSD_DEVIATIONS)
        self.assertEqual(differences, [], "\n".join(differences))
        self.assertGreater(len(queries), 60)

    @defer.inlineCallbacks
    def test_hardZoneSameAsNSD(self):
        """
        tests/dns_fixtures/hard.zone: CNAMEs into cuts, long chains and
        loops, ANY, DS at a cut, QCLASS ANY, NOTIFY, odd opcodes, queries
        carrying records, wildcards, ENT, DNAME, truncation; over UDP and
        TCP, with and without EDNS.
        """
        queries = readQueryList(os.path.join(FIXTURES, "hard-queries.txt"))
        differences = yield differential(self, "hard.zone", "hard.test", queries, HARD_DEVIATIONS)
        self.assertEqual(differences, [], "\n".join(differences))
        self.assertGreater(len(queries), 60)

    @defer.inlineCallbacks
    def test_seedZoneSameAsNSD(self):
        """
        The shipped etc/zones/domaineel.rt.zone answers as NSD for the seed's cases.
        """
        from tests.test_dns_service import SEED

        with open(SEED) as f:
            nsd = NSD(self, {"domaineel.rt": f.read()})
        self.addCleanup(nsd.stop)
        yield threads.deferToThread(nsd.start)
        _, port = startMaillab(self, SEED)
        cases = [("domaineel.rt", "MX", ()), ("smtp.domaineel.rt", "MX", ()), ("serveur.domaineel.rt", "AAAA", ()),
                 ("smtp.domaineel.rt", "A", ("noedns",)), ("www.sous.domaineel.rt", "A", ()), ("nothere.domaineel.rt", "MX", ())]

        def run():
            return [(ask(nsd.port, *c), ask(port, *c)) for c in cases]

        for theirs, ours in (yield threads.deferToThread(run)):
            self.assertEqual(ours, theirs)


class ParserAgreementTests(unittest.TestCase):
    """
    The zone parser reads tests/dns_fixtures/syntax.zone (every construct
    of RFC 1035 5.1 and BIND's extensions, with a $INCLUDE) into exactly
    the records NSD's parser reads: compared by AXFR from both.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_sameRecordsAsNSD(self):
        texts = {}
        for fileName in ("syntax.zone", "syntax.inc"):
            with open(os.path.join(FIXTURES, fileName)) as f:
                texts[fileName] = f.read()
        nsd = NSD(self, {"syntax.test": texts["syntax.zone"]}, files={"syntax.inc": texts["syntax.inc"]})
        self.addCleanup(nsd.stop)
        yield threads.deferToThread(nsd.start, "syntax.test")
        _, port = startMaillab(self, os.path.join(FIXTURES, "syntax.zone"), "allow_transfer = 127.0.0.0/8\n", origin="syntax.test")

        def transfer(p):
            messages = tcpQuery(p, buildQuery("syntax.test", N.AXFR), transfer=True)
            return sorted(r for m in messages for r in decode(m)["answerList"])

        theirs = yield threads.deferToThread(transfer, nsd.port)
        ours = yield threads.deferToThread(transfer, port)
        self.assertGreater(len(theirs), 30)
        self.assertEqual(ours, theirs)


class ReplicationTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def waitForSerial(self, nsd, serial, seconds=20):
        for _ in range(int(seconds / 0.2)):
            response = yield threads.deferToThread(udpQuery, nsd.port, buildQuery("domaineel.rt", N.SOA), 0.5)
            if response is not None:
                decoded = decode(response)
                soas = [r for r in decoded["answerList"] if r[1] == N.SOA]
                if decoded["rcode"] == 0 and soas and int.from_bytes(soas[0][4][2][:4], "big") == serial:
                    return decoded
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.fail(f"NSD never served serial {serial}:\n{nsd.logText()}")

    @defer.inlineCallbacks
    def test_nsdSecondaryFollowsNotify(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        zonePath = os.path.join(directory, "domaineel.rt.zone")
        with open(zonePath, "w") as f:
            f.write(seedText(4))
        ourPort = freePort()
        nsdPort = freePort()
        # NSD first: it asks us for the zone as soon as we are up.
        nsd = NSD(self, {"domaineel.rt": None}, port=nsdPort, secondaryOf=ourPort)
        self.addCleanup(nsd.stop)
        yield threads.deferToThread(nsd.start, None)
        ini = os.path.join(directory, "maillab.ini")
        with open(ini, "w") as f:
            f.write(
                f"[dns]\nenabled = yes\nlisten = tcp:{ourPort}:interface=127.0.0.1\n"
                f"zones = domaineel.rt:{zonePath}\nallow_transfer = 127.0.0.1/32\n"
                f"also_notify = 127.0.0.1:{nsdPort}\n"
            )
        top = service.makeService(config.load(ini), reactor)
        dns_ = top.getServiceNamed("dns")
        dns_.notifyInterval = 0.5
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)

        yield self.waitForSerial(nsd, 4)
        results = yield dns_.lastNotify
        # NSD acknowledged our NOTIFY for serial 4 (RFC 1996 4.7).
        self.assertEqual(results, [{("127.0.0.1", nsdPort): 0}])
        mx = yield threads.deferToThread(udpQuery, nsd.port, buildQuery("domaineel.rt", N.MX))
        self.assertEqual([r[4][1] for r in decode(mx)["answerList"]], ["smtp.domaineel.rt."])

        # A reload with a higher serial: the SOA's refresh is a week, so
        # only our NOTIFY makes NSD transfer again within seconds.
        with open(zonePath, "w") as f:
            f.write(seedText(5, "nouveau A 192.168.1.99\n"))
        replaced = yield dns_.reload()
        self.assertEqual(replaced, ["domaineel.rt."])
        results = yield dns_.lastNotify
        self.assertEqual(results, [{("127.0.0.1", nsdPort): 0}])
        yield self.waitForSerial(nsd, 5)
        answer = yield threads.deferToThread(udpQuery, nsd.port, buildQuery("nouveau.domaineel.rt", N.A))
        self.assertEqual([r[4] for r in decode(answer)["answerList"]], [bytes([192, 168, 1, 99])])
        # NSD's own log tells the story: each transfer follows our NOTIFY.
        log = nsd.logText()
        for serial in (4, 5):
            notified = log.find(f"notify for domaineel.rt. from 127.0.0.1 serial {serial}")
            updated = log.find(f"received update to serial {serial}")
            self.assertNotEqual(notified, -1, log)
            self.assertGreater(updated, -1, log)
