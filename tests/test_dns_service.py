"""
The [dns] service end to end: built from an ini file, queried over real
loopback UDP and TCP sockets with dig and the twisted.names client,
reloaded (method and SIGHUP), sending NOTIFY.
"""

from __future__ import annotations

import os
import shutil
import signal

from twisted.internet import defer, reactor, task, utils
from twisted.internet.protocol import DatagramProtocol
from twisted.names import client, dns
from twisted.trial import unittest

from twisted_maillab import config, service
from twisted_maillab.config import ConfigError
from twisted_maillab.dns import names as N
from twisted_maillab.dns.service import DNSService, _release

from tests.support import freePort, requireTool
from tests.test_dns_support import FIXTURES, ROOT, buildQuery, decode

SEED = os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone")


def seedText(serial=4, extra=""):
    with open(SEED) as f:
        text = f.read()
    return text.replace("4       ; Serial", f"{serial}       ; Serial") + extra


class _Base(unittest.TestCase):
    def startDNS(self, zoneText=None, extra="", zoneFile=None, configure=None):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.zonePath = zoneFile or os.path.join(self.directory, "domaineel.rt.zone")
        if zoneFile is None:
            with open(self.zonePath, "w") as f:
                f.write(zoneText or seedText())
        self.port = freePort()
        ini = os.path.join(self.directory, "maillab.ini")
        with open(ini, "w") as f:
            f.write(
                "[dns]\nenabled = yes\n"
                f"listen = tcp:{self.port}:interface=127.0.0.1\n"
                f"zones = domaineel.rt:{self.zonePath}\n" + extra
            )
        self.config = config.load(ini)
        self.top = service.makeService(self.config, reactor)
        self.dns = self.top.getServiceNamed("dns")
        if configure is not None:
            configure(self.dns)
        self.top.privilegedStartService()
        self.top.startService()
        self.addCleanup(self.top.stopService)
        return self.dns

    def resolver(self):
        return client.Resolver(servers=[("127.0.0.1", self.port)], reactor=reactor)

    def writeZone(self, text):
        with open(self.zonePath, "w") as f:
            f.write(text)

    @defer.inlineCallbacks
    def dig(self, *args):
        requireTool("dig", "bind9-dnsutils")
        out, err, code = yield utils.getProcessOutputAndValue(
            shutil.which("dig"), ("@127.0.0.1", "-p", str(self.port), "+norec", "+time=2", "+tries=1") + args
        )
        self.assertEqual(code, 0, err)
        return out.decode()


class EndToEndTests(_Base):
    @defer.inlineCallbacks
    def test_digSeedCases(self):
        self.startDNS()
        out = yield self.dig("MX", "domaineel.rt")
        self.assertIn("status: NOERROR", out)
        self.assertRegex(out, r"flags: qr aa;")
        self.assertRegex(out, r"domaineel\.rt\.\s+604800\s+IN\s+MX\s+10 smtp\.domaineel\.rt\.")
        out = yield self.dig("MX", "smtp.domaineel.rt")
        self.assertRegex(out, r"smtp\.domaineel\.rt\.\s+604800\s+IN\s+CNAME\s+serveur\.domaineel\.rt\.")
        self.assertRegex(out, r"AUTHORITY SECTION:\ndomaineel\.rt\.\s+604800\s+IN\s+SOA\s+serveur\.domaineel\.rt\. root\.domaineel\.rt\. 4 ")
        out = yield self.dig("AAAA", "serveur.domaineel.rt")
        self.assertIn("ANSWER: 0, AUTHORITY: 1", out)
        self.assertRegex(out, r"flags: qr aa;")
        out = yield self.dig("A", "www.sous.domaineel.rt")
        self.assertRegex(out, r"flags: qr;")
        self.assertRegex(out, r"sous\.domaineel\.rt\.\s+604800\s+IN\s+NS\s+serveurdeux\.domaineel\.rt\.")
        out = yield self.dig("A", "example.com")
        self.assertIn("status: REFUSED", out)

    @defer.inlineCallbacks
    def test_digOverTCPAndTruncationRetry(self):
        self.startDNS(seedText(extra="".join(f"many A 10.0.1.{i}\n" for i in range(1, 60))))
        out = yield self.dig("+tcp", "MX", "domaineel.rt")
        self.assertIn("(TCP)", out)
        self.assertIn("10 smtp.domaineel.rt.", out)
        # 59 A records do not fit 512 octets: TC, then dig retries by TCP.
        out = yield self.dig("+noedns", "A", "many.domaineel.rt")
        self.assertIn("Truncated, retrying in TCP mode", out)
        self.assertIn("ANSWER: 59", out)

    @defer.inlineCallbacks
    def test_twistedNamesClientUDPAndTCP(self):
        self.startDNS()
        resolver = self.resolver()
        answers, authority, additional = yield resolver.lookupMailExchange("domaineel.rt")
        self.assertEqual([(str(a.payload.name), a.payload.preference) for a in answers], [("smtp.domaineel.rt", 10)])
        message = yield resolver.queryTCP([dns.Query("serveur.domaineel.rt", dns.A)])
        self.assertTrue(message.auth)
        self.assertEqual([a.payload.dottedQuad() for a in message.answers], ["192.168.1.25"])
        from twisted.names.error import DomainError

        yield self.assertFailure(resolver.lookupAddress("nothere.domaineel.rt"), DomainError)

    @defer.inlineCallbacks
    def test_axfrWithDig(self):
        self.startDNS(extra="allow_transfer = 127.0.0.1/32\n")
        out = yield self.dig("AXFR", "domaineel.rt")
        self.assertEqual(out.count("\tSOA\t"), 2)
        self.assertIn("serveurdeux.domaineel.rt.", out)

    @defer.inlineCallbacks
    def test_axfrRefusedByDefault(self):
        self.startDNS()
        out = yield self.dig("AXFR", "domaineel.rt")
        self.assertIn("Transfer failed", out)


class StartupTests(unittest.TestCase):
    def test_brokenZoneStopsTheStart(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ini = os.path.join(directory, "maillab.ini")
        broken = os.path.join(FIXTURES, "seed-broken.zone")
        with open(ini, "w") as f:
            f.write(f"[dns]\nenabled = yes\nlisten = tcp:{freePort()}:interface=127.0.0.1\nzones = domaineel.rt:{broken}\n")
        error = self.assertRaises(ConfigError, service.makeService, config.load(ini), reactor)
        self.assertEqual(error.path, broken)
        self.assertEqual(error.line, 2)
        self.assertIn(f"{broken}:14:", str(error))

    def test_configKeys(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ini = os.path.join(directory, "m.ini")
        with open(ini, "w") as f:
            f.write(
                "[dns]\nenabled = yes\nlisten = tcp:5353:interface=127.0.0.1\n"
                f"zones = {SEED}\n"
                "allow_transfer = 127.0.0.1/32 [::1]/128\nalso_notify = 192.0.2.1 [2001:db8::1]:5300 127.0.0.1:5301\n"
                "rate_limit = 10\ntcp_idle_timeout = 1m\nmax_udp_payload = 1400\n"
            )
        section = config.load(ini).dns
        self.assertEqual(section.zones, (("domaineel.rt", __import__("pathlib").Path(SEED)),))
        self.assertEqual(section.also_notify, (("192.0.2.1", 53), ("2001:db8::1", 5300), ("127.0.0.1", 5301)))
        self.assertEqual((section.rate_limit, section.tcp_idle_timeout, section.max_udp_payload), (10, 60.0, 1400))

    def test_udpListenRejected(self):
        error = self.assertRaises(
            ConfigError, config.loadString, f"[dns]\nenabled = yes\nlisten = udp:53\nzones = {SEED}\n", "/x/m.ini"
        )
        self.assertEqual(error.key, "listen")

    def test_missingZoneFile(self):
        error = self.assertRaises(
            ConfigError, config.loadString, "[dns]\nenabled = yes\nlisten = tcp:53\nzones = x.org:/nonexistent.zone\n", "/x/m.ini"
        )
        self.assertEqual(error.key, "zones")


class ReloadTests(_Base):
    @defer.inlineCallbacks
    def serial(self):
        answers, _, _ = yield self.resolver().lookupAuthority("domaineel.rt")
        return answers[0].payload.serial

    @defer.inlineCallbacks
    def test_higherSerialReplaces(self):
        dns_ = self.startDNS()
        self.writeZone(seedText(5, "www A 192.168.1.80\n"))
        replaced = yield dns_.reload()
        self.assertEqual(replaced, ["domaineel.rt."])
        self.assertEqual((yield self.serial()), 5)
        answers, _, _ = yield self.resolver().lookupAddress("www.domaineel.rt")
        self.assertEqual(answers[0].payload.dottedQuad(), "192.168.1.80")

    @defer.inlineCallbacks
    def test_reloadDuringReloadRunsAgainAfter(self):
        dns_ = self.startDNS()
        pending = []
        released = []
        states = [dns_.server.state]

        def held(f, *args):
            if f is _release:
                # The replaced zones and table are dropped in the pool.
                released.append(args[0])
                return defer.succeed(None)
            # Run the "thread" work only when the test says so.
            d = defer.Deferred()
            pending.append((f, args, d))
            return d

        def release():
            f, args, d = pending.pop(0)
            d.callback(f(*args))

        dns_.deferToThread = held
        self.writeZone(seedText(5))
        first = dns_.reload()
        second = dns_.reload()
        release()  # the first reload reads serial 5
        # The second request was queued behind the first, not merged into
        # it: it reads the file again, after this change.
        self.writeZone(seedText(6))
        release()  # first: build the table
        self.assertEqual((yield first), ["domaineel.rt."])
        states.append(dns_.server.state)
        release()  # second: read serial 6
        release()  # second: build the table
        self.assertEqual((yield second), ["domaineel.rt."])
        self.assertEqual(pending, [])
        self.assertEqual([id(s) for s in released], [id(s) for s in states])
        self.assertEqual((yield self.serial()), 6)

    @defer.inlineCallbacks
    def test_sameSerialKeepsOldData(self):
        dns_ = self.startDNS()
        self.writeZone(seedText(4, "www A 192.168.1.80\n"))
        replaced = yield dns_.reload()
        self.assertEqual(replaced, [])
        response = decode(dns_.server.respond(buildQuery("www.domaineel.rt", N.A), "h", True)[0])
        self.assertEqual(response["rcode"], 3)

    @defer.inlineCallbacks
    def test_brokenReloadKeepsServingAndLogs(self):
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        dns_ = self.startDNS()
        with open(os.path.join(FIXTURES, "seed-broken.zone")) as f:
            self.writeZone(f.read())
        replaced = yield dns_.reload()
        self.assertEqual(replaced, [])
        self.assertEqual((yield self.serial()), 4)
        messages = [e.get("error", "") for e in events if "reload failed" in e.get("log_format", "")]
        self.assertEqual(len(messages), 1)
        self.assertIn(f"{self.zonePath}:2:", messages[0])
        self.assertIn(f"{self.zonePath}:14:", messages[0])

    @defer.inlineCallbacks
    def test_sighupReloads(self):
        dns_ = self.startDNS()
        self.assertEqual(signal.getsignal(signal.SIGHUP), dns_._sighup)
        self.writeZone(seedText(6))
        reloads = []
        original = dns_.reload

        def reload():
            d = original()
            reloads.append(d)
            return d

        dns_.reload = reload
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            if reloads:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(reloads), 1)
        yield reloads[0]
        self.assertEqual((yield self.serial()), 6)

    @defer.inlineCallbacks
    def test_signalHandlerRemovedAtStop(self):
        previous = signal.getsignal(signal.SIGHUP)
        dns_ = self.startDNS()
        self.assertEqual(signal.getsignal(signal.SIGHUP), dns_._sighup)
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), previous)
        yield self.top.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)


class SavedZoneTests(_Base):
    @defer.inlineCallbacks
    def test_savedOnceListening(self):
        """
        A zone parsed at start-up is saved after the listeners are up, in
        a pool thread (the first answer does not wait for the write):
        not when the service is built, but once it started.
        """
        from twisted_maillab.dns import zonecache
        from twisted_maillab.dns.zone import parseOrigin

        state = os.path.abspath(self.mktemp())
        saved = []

        def check(dns_):
            path = zonecache.cachePath(os.path.join(state, "dns"), parseOrigin("domaineel.rt"), self.zonePath)
            saved.append(os.path.exists(path))
            self.savedPath = path

        dns_ = self.startDNS(extra=f"[server]\nstate_directory = {state}\n", configure=check)
        self.assertEqual(saved, [False])
        yield dns_.saved
        self.assertTrue(os.path.exists(self.savedPath))

    @defer.inlineCallbacks
    def test_restartReadsSavedZoneNeverStale(self):
        """
        A start saves the parsed zone in the state directory; a restart
        with the file unchanged reads it (the saved file is not written
        again); an edit that keeps the file's size and modification time
        is served after the next start, not the saved data.
        """
        from twisted_maillab.dns import zonecache
        from twisted_maillab.dns.zone import parseOrigin

        state = os.path.abspath(self.mktemp())
        extra = f"[server]\nstate_directory = {state}\n"
        dns_ = self.startDNS(seedText(4, "www A 192.168.1.80\n"), extra=extra)
        # Saved in a pool thread once the listeners are up.
        yield dns_.saved
        saved = zonecache.cachePath(os.path.join(state, "dns"), parseOrigin("domaineel.rt"), self.zonePath)
        self.assertTrue(os.path.exists(saved))
        written = os.stat(saved).st_mtime_ns

        @defer.inlineCallbacks
        def www():
            answers, _, _ = yield self.resolver().lookupAddress("www.domaineel.rt")
            return [a.payload.dottedQuad() for a in answers if a.type == dns.A]

        self.assertEqual((yield www()), ["192.168.1.80"])
        yield self.top.stopService()
        self.startDNS(zoneFile=self.zonePath, extra=extra)
        self.assertEqual((yield www()), ["192.168.1.80"])
        self.assertEqual(os.stat(saved).st_mtime_ns, written)
        yield self.top.stopService()
        before = os.stat(self.zonePath)
        self.writeZone(seedText(4, "www A 192.168.1.81\n"))
        os.utime(self.zonePath, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.assertEqual(os.stat(self.zonePath).st_size, before.st_size)
        self.startDNS(zoneFile=self.zonePath, extra=extra)
        self.assertEqual((yield www()), ["192.168.1.81"])


class FakeSignals:
    SIGHUP = signal.SIGHUP
    SIG_DFL = signal.SIG_DFL

    def __init__(self):
        self.handlers = {signal.SIGHUP: "previous"}

    def signal(self, number, handler):
        old = self.handlers.get(number)
        self.handlers[number] = handler
        return old

    def getsignal(self, number):
        return self.handlers.get(number)


class _ThreadCalls:
    """
    Just enough reactor for the handler: records callFromThread.
    """

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append(f)


class SignalChainTests(unittest.TestCase):
    def test_chainsAndRestores(self):
        from twisted_maillab.dns.zone import loadZone, parseOrigin

        fake = _ThreadCalls()
        signals = FakeSignals()
        calls = []
        signals.handlers[signal.SIGHUP] = previous = lambda n, f: calls.append("previous")
        zone = loadZone(SEED, parseOrigin("domaineel.rt"))
        svc = DNSService([("domaineel.rt", SEED)], [zone], fake, signals=signals, deferToThread=lambda f, *a: defer.maybeDeferred(f, *a))
        svc.startService()
        handler = signals.handlers[signal.SIGHUP]
        self.assertIsNot(handler, previous)
        handler(signal.SIGHUP, None)
        # The reload runs in the reactor thread, not in the signal handler;
        # the handler installed before ours still runs.
        self.assertEqual(fake.calls, [svc.reload])
        self.assertEqual(calls, ["previous"])
        svc.stopService()
        self.assertIs(signals.handlers[signal.SIGHUP], previous)


class ZoneSourceTests(unittest.TestCase):
    def test_otherSourcesReload(self):
        """
        An embedding application gives its own IZoneSource; reload reads it.
        """
        from zope.interface import implementer
        from zope.interface.verify import verifyObject

        from twisted_maillab.dns.service import FileZoneSource
        from twisted_maillab.dns.zone import parseOrigin, parseZoneText
        from twisted_maillab.interfaces import IZoneSource

        verifyObject(IZoneSource, FileZoneSource([]))

        @implementer(IZoneSource)
        class Generated:
            serial = 1

            def load(self):
                text = f"$TTL 60\n@ SOA ns hm {self.serial} 1 1 1 1\n NS ns\nns A 192.0.2.{self.serial}\n"
                return [parseZoneText(text, parseOrigin("gen.test"))[0]]

        source = Generated()
        svc = DNSService(source, source.load(), _ThreadCalls(), signals=FakeSignals(), deferToThread=lambda f, *a: defer.maybeDeferred(f, *a))
        source.serial = 2
        replaced = self.successResultOf(svc.reload())
        self.assertEqual(replaced, ["gen.test."])
        answer = decode(svc.server.respond(buildQuery("ns.gen.test", N.A), "h", True)[0])
        self.assertEqual([r[4] for r in answer["answerList"]], [bytes([192, 0, 2, 2])])


    def test_loadWithoutCycleCollector(self):
        """
        The zones are read with the cyclic collector paused (its full
        walks over a large zone's objects would hold the reactor thread
        during a reload), and nothing is frozen after: a zone's names are
        bytes, which the collector does not track.
        """
        import gc

        from zope.interface import implementer

        from twisted_maillab.dns.zone import parseOrigin, parseZoneText
        from twisted_maillab.interfaces import IZoneSource

        seen = []

        @implementer(IZoneSource)
        class Generated:
            serial = 1

            def load(self):
                seen.append(gc.isenabled())
                names = "".join(f"h{i} A 192.0.2.{i % 250}\n" for i in range(2000))
                text = f"$TTL 60\n@ SOA ns hm {self.serial} 1 1 1 1\n NS ns\nns A 192.0.2.{self.serial}\n{names}"
                return [parseZoneText(text, parseOrigin("gen.test"))[0]]

        source = Generated()
        svc = DNSService(source, source.load(), _ThreadCalls(), signals=FakeSignals(), deferToThread=lambda f, *a: defer.maybeDeferred(f, *a))
        frozen = gc.get_freeze_count()
        source.serial = 2
        self.assertEqual(self.successResultOf(svc.reload()), ["gen.test."])
        self.assertEqual(seen, [True, False])
        self.assertTrue(gc.isenabled())
        self.assertEqual(gc.get_freeze_count(), frozen)
        zone = svc.server.zones.byOrigin[parseOrigin("gen.test")]
        entries = zone.nodes.entries
        self.assertEqual(sum(type(value) is bytes for value in entries.values()), 2001)
        self.assertFalse(any(gc.is_tracked(value) for value in entries.values() if type(value) is bytes))

    def test_startupFreezes(self):
        """
        The first load, at start-up, freezes what is alive (modules,
        configuration, zones: there for good), so the collections made
        while serving do not walk it; the collector runs again after.
        """
        import gc

        from twisted_maillab.dns.service import loadQuietly

        self.addCleanup(gc.unfreeze)
        gc.unfreeze()
        seen = []
        marker = object()
        loaded = loadQuietly(lambda: seen.append(gc.isenabled()) or [marker], freeze=True)
        self.assertEqual(loaded, [marker])
        self.assertEqual(seen, [False])
        self.assertTrue(gc.isenabled())
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertFalse(any(o is loaded for o in gc.get_objects()))

    def test_repeatedReloadsFreeTheOldZones(self):
        """
        Each reload frees the zone it replaces (emptied in a pool thread,
        an entry at a time): after many reloads the objects the collector
        tracks and the zones alive are as after one.
        """
        import gc
        import weakref

        from zope.interface import implementer

        from twisted_maillab.dns.zone import parseOrigin, parseZoneText
        from twisted_maillab.interfaces import IZoneSource

        @implementer(IZoneSource)
        class Generated:
            serial = 1

            def load(self):
                names = "".join(f"h{i} A 192.0.2.{i % 250}\nh{i} MX 10 h{i}\n" for i in range(500))
                text = f"$TTL 60\n@ SOA ns hm {self.serial} 1 1 1 1\n NS ns\nns A 192.0.2.1\nsub NS ns\n{names}"
                return [parseZoneText(text, parseOrigin("gen.test"))[0]]

        from twisted_maillab.dns.compact import NodeMap

        released = []
        release = NodeMap.release

        def recording(nodes):
            released.append(len(nodes))
            release(nodes)

        self.patch(NodeMap, "release", recording)
        source = Generated()
        svc = DNSService(source, source.load(), _ThreadCalls(), signals=FakeSignals(), deferToThread=lambda f, *a: defer.maybeDeferred(f, *a))
        replaced = []

        # A zone still in use (here by the test; a transfer in progress
        # would hold it the same way) is left whole.
        held = svc.server.zones.byOrigin[parseOrigin("gen.test")]
        source.serial += 1
        self.assertEqual(self.successResultOf(svc.reload()), ["gen.test."])
        self.assertEqual(released, [])
        self.assertEqual(len(held.nodes), 503)
        replaced.append(weakref.ref(held))
        del held

        def reload():
            replaced.append(weakref.ref(svc.server.zones.byOrigin[parseOrigin("gen.test")]))
            source.serial += 1
            self.assertEqual(self.successResultOf(svc.reload()), ["gen.test."])
            # The old zone was emptied an entry at a time, then freed.
            self.assertEqual(released[-1], 503)
            self.assertIsNone(replaced[-1]())

        from twisted_maillab.dns.names import Node, Rdata, RRset
        from twisted_maillab.dns.zone import Zone

        def model():
            # The zone objects the collector tracks (log events are not
            # counted: the test's log observer keeps them).
            counts = {}
            for o in gc.get_objects():
                if type(o) in (Node, Rdata, RRset, dict) or (type(o) is Zone and o.origin == parseOrigin("gen.test")):
                    counts[type(o).__name__] = counts.get(type(o).__name__, 0) + (type(o) is not dict or len(o) > 400)
            return counts

        for _ in range(3):
            reload()
        gc.collect()
        before = model()
        for _ in range(10):
            reload()
        gc.collect()
        self.assertEqual(model(), before)
        self.assertEqual(before["Zone"], 1)
        self.assertEqual(len(released), 13)
        self.assertEqual([ref for ref in replaced if ref() is not None], [])


class _Secondary(DatagramProtocol):
    """
    A fake secondary: records NOTIFYs and acknowledges them (RFC 1996 4.7).
    """

    def __init__(self, acknowledge=True):
        self.received = []
        self.acknowledge = acknowledge
        self.waiting = []

    def datagramReceived(self, data, addr):
        self.received.append(decode(data))
        if self.acknowledge:
            flags = int.from_bytes(data[2:4], "big") | 0x8000
            self.transport.write(data[:2] + flags.to_bytes(2, "big") + data[4:], addr)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


class NotifyTests(_Base):
    @defer.inlineCallbacks
    def test_notifyOnStartAndOnHigherSerial(self):
        secondary = _Secondary()
        port = reactor.listenUDP(0, secondary, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        dns_ = self.startDNS(extra=f"also_notify = 127.0.0.1:{port.getHost().port}\n")
        results = yield dns_.lastNotify
        self.assertEqual(results, [{("127.0.0.1", port.getHost().port): 0}])
        first = secondary.received[0]
        self.assertEqual(first["opcode"], 4)
        self.assertIn("aa", first["flags"])
        self.assertEqual(first["question"][0], (b"domaineel", b"rt"))
        self.assertEqual([r[1] for r in first["answerList"]], [N.SOA])
        self.writeZone(seedText(9))
        yield dns_.reload()
        yield dns_.lastNotify
        self.assertEqual(len(secondary.received), 2)
        soa = secondary.received[1]["answerList"][0][4]
        self.assertEqual(int.from_bytes(soa[2][:4], "big"), 9)

    @defer.inlineCallbacks
    def test_notifyRetriesThenGivesUp(self):
        secondary = _Secondary(acknowledge=False)
        port = reactor.listenUDP(0, secondary, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def quick(svc):
            svc.notifyInterval = 0.05
            svc.notifyRetries = 3

        dns_ = self.startDNS(extra=f"also_notify = 127.0.0.1:{port.getHost().port}\n", configure=quick)
        results = yield dns_.lastNotify
        self.assertEqual(results, [{("127.0.0.1", port.getHost().port): None}])
        self.assertEqual(len(secondary.received), 3)
