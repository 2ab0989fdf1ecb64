"""
Unit tests of the outbound TLS policy: the tls_policy table, MTA-STS
records, policies and cache, TLS-RPT records and counts, and what we
publish.  No sockets: fake resolvers, task.Clock.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer, task
from twisted.names import dns, error as dnserror
from twisted.trial import unittest

from twisted_maillab import config as configmodule
from twisted_maillab.config import ConfigError
from twisted_maillab.smtp.relayclient import TLSPolicyFailure
from twisted_maillab.tlspolicy.dane import TLSARecord, spkiDigest
from twisted_maillab.tlspolicy.maps import PolicyMapError, parsePolicyMap
from twisted_maillab.tlspolicy.mtasts import STSCache, STSError, STSLookup, mxMatches, parsePolicy, parseRecord
from twisted_maillab.tlspolicy.policy import HostPolicy, OutboundTLSPolicy
from twisted_maillab.tlspolicy.publish import TLSRecordPublisher, policyId, policyText
from twisted_maillab.tlspolicy.tlsrpt import PolicyKey, Reporter, SessionRecorder, buildReport, parseRUA

from tests.tlspolicy_support import issue


def syncRunner(f, *args):
    return defer.maybeDeferred(f, *args)


class PolicyMapTests(unittest.TestCase):
    def test_levelsAndParentDomains(self):
        table = parsePolicyMap("# comment\nexample.org encrypt\n.example.org verify  # subdomains\n\nbank.test  none\n")
        self.assertEqual(table.level("example.org"), "encrypt")
        self.assertEqual(table.level("MX.Example.org."), "verify")
        self.assertEqual(table.level("a.b.example.org"), "verify")
        self.assertEqual(table.level("bank.test"), "none")
        self.assertIsNone(table.level("other.test"))

    def test_errorsNameFileAndLine(self):
        for text, reason in (
            ("example.org encrypt\nexample.net secure\n", 'line 2: "secure" is not a TLS level (none, may, encrypt, verify)'),
            ("example.org\n", 'line 1: "example.org": write one domain and one level'),
            ("exa mple.org may x\n", "line 1"),
            ("ex!ample.org may\n", 'line 1: "ex!ample.org" is not a domain name'),
            ("a.org may\nA.org. none\n", "line 2: a.org is listed twice"),
        ):
            with self.assertRaises(PolicyMapError) as caught:
                parsePolicyMap(text, "/etc/maillab/tls_policy")
            self.assertIn(f"/etc/maillab/tls_policy {reason}", str(caught.exception))

    def test_configErrorNamesKeyFileAndLine(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        table = directory / "tls_policy"
        table.write_text("example.org verify\nexample.net sometimes\n")
        with self.assertRaises(ConfigError) as caught:
            configmodule.loadString(f"[smtp]\n\nsmtp_tls_policy_maps = {table}\n", "maillab.ini")
        self.assertEqual(
            str(caught.exception),
            f'maillab.ini [smtp] smtp_tls_policy_maps: {table} line 2: "sometimes" is not a TLS level '
            "(none, may, encrypt, verify) (line 3)",
        )

    def test_configChecksPublishedValues(self):
        for text, key in (
            ("mta_sts_max_age = 0\n", "mta_sts_max_age"),
            ("mta_sts_mx = mx..example.org\n", "mta_sts_mx"),
            ("tlsrpt_rua = tls@example.org\n", "tlsrpt_rua"),
            ("smtp_tls_security_level = dane\n", "smtp_tls_security_level"),
        ):
            with self.assertRaises(ConfigError) as caught:
                configmodule.loadString("[smtp]\n" + text, "maillab.ini")
            self.assertEqual(caught.exception.key, key)


class MTASTSTextTests(unittest.TestCase):
    def test_record(self):
        self.assertEqual(parseRecord(["v=STSv1; id=20160831085700Z;"]), "20160831085700Z")
        self.assertEqual(parseRecord(["other", "v=STSv1;id=abc"]), "abc")
        # RFC 8461 3.1: two records, or a bad id, is no record.
        self.assertIsNone(parseRecord(["v=STSv1; id=a", "v=STSv1; id=b"]))
        self.assertIsNone(parseRecord(["v=STSv1; id=not-alnum"]))
        self.assertIsNone(parseRecord(["v=STSv1"]))

    def test_policy(self):
        policy = parsePolicy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n")
        self.assertEqual((policy.mode, policy.mx, policy.maxAge), ("enforce", ("mail.example.com", "*.example.net"), 86400))
        self.assertTrue(policy.allows("mail.example.com"))
        self.assertTrue(policy.allows("mx1.example.net"))
        self.assertFalse(policy.allows("a.b.example.net"))
        self.assertFalse(policy.allows("example.net"))
        for text in (
            "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: soon\n",
        ):
            with self.assertRaises(STSError) as caught:
                parsePolicy(text)
            self.assertEqual(caught.exception.resultType, "sts-policy-invalid")

    def test_maxAgeCapped(self):
        self.assertEqual(parsePolicy("version: STSv1\nmode: testing\nmx: a\nmax_age: 9999999999\n").maxAge, 31557600)

    def test_mxPatterns(self):
        self.assertTrue(mxMatches("*.example.com", "MX1.example.com."))
        self.assertFalse(mxMatches("*.example.com", "example.com"))
        self.assertTrue(mxMatches("mail.example.com", "mail.example.com"))
        self.assertFalse(mxMatches("mail.example.com", "mail2.example.com"))


class FakeTXT:
    def __init__(self, records):
        self.records = records
        self.asked = []

    def lookupText(self, name):
        self.asked.append(name)
        value = self.records.get(name)
        if value is None:
            return defer.fail(dnserror.DNSNameError(name))
        if isinstance(value, Exception):
            return defer.fail(value)
        return defer.succeed(([dns.RRHeader(name, dns.TXT, payload=dns.Record_TXT(v.encode())) for v in value], [], []))


class FakeFetcher:
    def __init__(self):
        self.policies = {}
        self.fetched = []

    async def fetch(self, domain, resolver):
        self.fetched.append(domain)
        result = self.policies[domain]
        if isinstance(result, Exception):
            raise result
        return result


POLICY = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 1000\n"


class STSLookupTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.resolver = FakeTXT({"_mta-sts.example.org": ["v=STSv1; id=one"]})
        self.fetcher = FakeFetcher()
        self.fetcher.policies["example.org"] = parsePolicy(POLICY)
        self.directory = Path(self.mktemp())
        self.lookup = STSLookup(self.fetcher, STSCache(self.directory, syncRunner), self.clock)

    def policy(self, lookup=None):
        return self.successResultOf(defer.ensureDeferred((lookup or self.lookup).policy("example.org", self.resolver)))

    def test_cachedUntilIdChangesOrExpires(self):
        policy, error = self.policy()
        self.assertEqual((policy.mode, error), ("enforce", None))
        self.policy()
        self.assertEqual(self.fetcher.fetched, ["example.org"])
        # A new id: fetched again (RFC 8461 5.1).
        self.resolver.records["_mta-sts.example.org"] = ["v=STSv1; id=two"]
        self.policy()
        self.assertEqual(len(self.fetcher.fetched), 2)
        # Expired (max_age 1000): fetched again even with the same id.
        self.clock.advance(1001)
        self.policy()
        self.assertEqual(len(self.fetcher.fetched), 3)

    def test_cacheSurvivesRecordLossFetchFailureAndRestart(self):
        self.policy()
        # The TXT record blocked or removed: the cached policy applies.
        del self.resolver.records["_mta-sts.example.org"]
        self.assertEqual(self.policy()[0].mode, "enforce")
        # A new id but the fetch fails: the cached policy, and the error.
        self.resolver.records["_mta-sts.example.org"] = ["v=STSv1; id=two"]
        self.fetcher.policies["example.org"] = STSError("sts-policy-fetch-error", "refused")
        policy, error = self.policy()
        self.assertEqual((policy.mode, error.resultType), ("enforce", "sts-policy-fetch-error"))
        # A restart reads the state directory.
        again = STSLookup(self.fetcher, STSCache(self.directory, syncRunner), self.clock)
        self.assertEqual(self.policy(again)[0].mx, ("mx.example.org",))
        self.assertEqual(oct((self.directory / "example.org.json").stat().st_mode & 0o777), "0o600")
        # Expired and unfetchable: no policy.
        self.clock.advance(1001)
        self.assertIsNone(self.policy()[0])


class STSCacheTests(unittest.TestCase):
    def test_boundedAndOnlyPlainNamesOnDisk(self):
        directory = Path(self.mktemp())
        cache = STSCache(directory, syncRunner, size=2)
        policy = parsePolicy(POLICY)
        from twisted_maillab.tlspolicy.mtasts import _Cached

        for domain in ("a.example", "b.example", "c.example", "../../x.example", "UPPER.example"):
            self.successResultOf(defer.ensureDeferred(cache.put(domain, _Cached("1", 0.0, policy))))
        self.assertEqual(list(cache._memory), ["../../x.example", "UPPER.example"])
        self.assertEqual(sorted(p.name for p in directory.iterdir()), ["a.example.json", "b.example.json", "c.example.json"])


class FakeSTS:
    def __init__(self, text):
        self.text = text

    async def policy(self, domain, resolver):
        return (parsePolicy(self.text) if self.text else None), None


class DomainPolicyTests(unittest.TestCase):
    def make(self, text=None, table=""):
        self.recorder = SessionRecorder(task.Clock())
        return OutboundTLSPolicy(
            reactor=None, clock=task.Clock(), policyMap=parsePolicyMap(table),
            sts=FakeSTS(text), recorder=self.recorder,
        )

    def plan(self, policy, hosts):
        return defer.ensureDeferred(policy.forDomain("example.org", hosts, None))

    def test_enforceKeepsMatchingHostsOnly(self):
        plan = self.successResultOf(self.plan(self.make(POLICY), ["mx.example.org", "backup.other.net"]))
        self.assertEqual(plan.hosts, ["mx.example.org"])
        self.assertEqual((plan.base.level, plan.base.enforced, plan.base.source), ("verify", True, "MTA-STS enforce"))

    def test_enforceWithoutMatchingHostDefers(self):
        failure = self.failureResultOf(self.plan(self.make(POLICY), ["backup.other.net"]), TLSPolicyFailure)
        self.assertEqual(
            str(failure.value), "4.7.5 no MX host of example.org matches its MTA-STS policy (mx: mx.example.org)"
        )
        [counts] = self.recorder.days[0].values()
        self.assertEqual(counts.failure, 1)

    def test_testingKeepsEveryHost(self):
        plan = self.successResultOf(self.plan(self.make(POLICY.replace("enforce", "testing")), ["a.net", "mx.example.org"]))
        self.assertEqual(plan.hosts, ["a.net", "mx.example.org"])
        self.assertFalse(plan.base.enforced)

    def test_tableOverridesMTASTS(self):
        plan = self.successResultOf(self.plan(self.make(POLICY, "example.org may\n"), ["other.net"]))
        self.assertEqual((plan.hosts, plan.base.level, plan.base.source), (["other.net"], "may", "tls_policy"))

    def test_hostPolicyLevels(self):
        self.assertRaises(TLSPolicyFailure, HostPolicy(level="encrypt").noStartTLS, "mx", "192.0.2.1")
        HostPolicy(level="may").noStartTLS("mx", "192.0.2.1")
        HostPolicy(level="verify", enforced=False).noStartTLS("mx", "192.0.2.1")
        self.assertTrue(HostPolicy(level="may").handshakeFailed("mx", "192.0.2.1"))
        self.assertTrue(HostPolicy(level="verify", enforced=False).handshakeFailed("mx", "192.0.2.1"))
        self.assertFalse(HostPolicy(level="encrypt").handshakeFailed("mx", "192.0.2.1"))
        self.assertFalse(HostPolicy(level="none").wantsTLS)


class TLSARecordTests(unittest.TestCase):
    def test_matchingTypes(self):
        from OpenSSL import crypto

        cert = issue(["mx.example.org"])
        leaf = crypto.load_certificate(crypto.FILETYPE_PEM, cert.certPEM)
        self.assertTrue(TLSARecord(3, 1, 1, spkiDigest(cert.certPEM)).matches(leaf))
        self.assertFalse(TLSARecord(3, 1, 1, spkiDigest(issue(["x"]).certPEM)).matches(leaf))
        self.assertTrue(TLSARecord(3, 0, 0, leaf.to_cryptography().public_bytes(Encoding.DER)).matches(leaf))
        self.assertFalse(TLSARecord(1, 1, 1, b"").usable)
        self.assertTrue(TLSARecord(2, 0, 2, b"").usable)


class DANEChainTests(unittest.TestCase):
    def setUp(self):
        from OpenSSL import crypto

        def load(issued):
            return crypto.load_certificate(crypto.FILETYPE_PEM, issued.certPEM)

        self.load = load
        self.ca = issue(["TA"], ca=True)
        self.caCert = load(self.ca)
        import hashlib

        self.ta = TLSARecord(2, 0, 1, hashlib.sha256(self.caCert.to_cryptography().public_bytes(Encoding.DER)).digest())

    def test_trustAnchorMatchAndName(self):
        from twisted_maillab.tlspolicy.certs import CertificateFailure
        from twisted_maillab.tlspolicy.dane import matchChain

        leaf = self.load(issue(["mx.example.org"], self.ca))
        matchChain([self.ta], [leaf, self.caCert], ["mx.example.org"])
        # RFC 7672 3.2.2: DANE-TA checks the name...
        with self.assertRaises(CertificateFailure) as caught:
            matchChain([self.ta], [leaf, self.caCert], ["other.example.org"])
        self.assertEqual(caught.exception.resultType, "certificate-host-mismatch")
        # ...and the leaf must be issued under the anchor.
        stranger = self.load(issue(["mx.example.org"], issue(["other"], ca=True)))
        with self.assertRaises(CertificateFailure):
            matchChain([self.ta], [stranger, self.caCert], ["mx.example.org"])
        # The anchor absent from the chain: no match.
        with self.assertRaises(CertificateFailure):
            matchChain([self.ta], [leaf], ["mx.example.org"])

    def test_endEntityIgnoresNameAndCA(self):
        from twisted_maillab.tlspolicy.dane import matchChain

        issued = issue(["anything.test"])
        matchChain([TLSARecord(3, 1, 1, spkiDigest(issued.certPEM))], [self.load(issued)], ["mx.example.org"])


class TLSRPTTests(unittest.TestCase):
    def test_rua(self):
        self.assertEqual(
            parseRUA(["v=TLSRPTv1; rua=mailto:tls@example.org,https://r.example.org/x,mailto:tls%2Brpt@example.org"]),
            ["tls@example.org", "tls+rpt@example.org"],
        )
        self.assertEqual(parseRUA(["v=TLSRPTv1; rua=mailto:a@x", "v=TLSRPTv1; rua=mailto:b@x"]), [])
        self.assertEqual(parseRUA(["v=spf1 -all"]), [])

    def test_countsPerDayAndPolicy(self):
        clock = task.Clock()
        clock.advance(86400 * 3 + 10)
        recorder = SessionRecorder(clock)
        sts = PolicyKey("example.org", "sts", ("version: STSv1", "mode: enforce"), None)
        tlsa = PolicyKey("example.org", "tlsa", ("3 1 1 ab",), "mx.example.org")
        recorder.record(sts, None, "mx.example.org", "192.0.2.1")
        recorder.record(sts, "certificate-expired", "mx.example.org", "192.0.2.1")
        recorder.record(sts, "certificate-expired", "mx.example.org", "192.0.2.1")
        recorder.record(tlsa, "starttls-not-supported", "mx.example.org", "192.0.2.2")
        self.assertEqual(recorder.finishedDays(), [])
        clock.advance(86400)
        self.assertEqual(recorder.finishedDays(), [3])
        [(domain, policies)] = recorder.take(3).items()
        report = buildReport("domaineel.rt", "mailto:postmaster@domaineel.rt", "id1", 3, policies)
        self.assertEqual(report["date-range"], {"start-datetime": "1970-01-04T00:00:00Z", "end-datetime": "1970-01-04T23:59:59Z"})
        first, second = report["policies"]
        self.assertEqual(first["policy"]["policy-type"], "sts")
        self.assertEqual(first["summary"], {"total-successful-session-count": 1, "total-failure-session-count": 2})
        self.assertEqual(first["failure-details"][0]["result-type"], "certificate-expired")
        self.assertEqual(second["policy"]["mx-host"], "mx.example.org")
        self.assertEqual(second["failure-details"][0]["receiving-ip"], "192.0.2.2")
        self.assertEqual(recorder.days, {})

    def test_countsSurviveARestart(self):
        clock = task.Clock()
        clock.advance(86400 * 5)
        path = Path(self.mktemp()).absolute() / "state" / "tlsrpt.json"
        recorder = SessionRecorder(clock, path, syncRunner, saveDelay=60)
        key = PolicyKey("example.org", "tlsa", ("3 1 1 ab",), "mx.example.org")
        recorder.record(key, None, "mx.example.org", "192.0.2.1")
        recorder.record(key, "certificate-not-trusted", "mx.example.org", "192.0.2.1")
        self.assertFalse(path.exists())
        # Saved once, a while after the first change.
        clock.advance(60)
        self.assertTrue(path.exists())
        self.assertEqual(oct(path.stat().st_mode & 0o777), "0o600")
        self.assertEqual(clock.getDelayedCalls(), [])
        again = SessionRecorder(clock, path, syncRunner)
        self.successResultOf(defer.ensureDeferred(again.load()))
        counts = again.days[5][key]
        self.assertEqual((counts.success, counts.failure), (1, 1))
        self.assertEqual(counts.details, {("certificate-not-trusted", "mx.example.org", "192.0.2.1"): 1})
        # A missing file is no counts.
        empty = SessionRecorder(clock, path.parent / "none.json", syncRunner)
        self.successResultOf(defer.ensureDeferred(empty.load()))
        self.assertEqual(empty.days, {})

    def test_timerAfterMidnightUTC(self):
        clock = task.Clock()
        clock.advance(86400 * 10 + 3600)
        recorder = SessionRecorder(clock)
        recorder.record(PolicyKey("example.org", "sts", (), None), None, "mx", "192.0.2.1")
        sent = []
        reporter = Reporter(
            recorder,
            FakeTXT({"_smtp._tls.example.org": ["v=TLSRPTv1; rua=mailto:tls@example.org"]}),
            lambda sender, to, data: defer.succeed(sent.append((sender, to, data))),
            clock,
            submitter="domaineel.rt",
            sender="postmaster@domaineel.rt",
            contact="mailto:postmaster@domaineel.rt",
        )
        reporter.start()
        clock.advance(86400 - 3600 + 299)
        self.assertEqual(sent, [])
        clock.advance(1)
        self.assertEqual([(s, t) for s, t, _ in sent], [("postmaster@domaineel.rt", ["tls@example.org"])])
        # One timer at a time, re-armed for the next day.
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        reporter.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class PublishTests(unittest.TestCase):
    def config(self, extra="", tls=""):
        return configmodule.loadString(
            "[server]\ndomain = example.org\nhostname = mx.example.org\n[auth]\nlocal_domains = example.net\n"
            + tls + "[smtp]\n" + extra
        )

    def test_recordsAndPolicyId(self):
        publisher = TLSRecordPublisher()
        self.assertEqual(list(publisher.records(self.config(), "example.org.")), [])
        enforce = self.config("mta_sts_mode = enforce\ntlsrpt_rua = mailto:tls@example.org\n")
        records = list(publisher.records(enforce, "example.org."))
        text = policyText(enforce)
        self.assertEqual(text, "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 604800\r\n")
        self.assertEqual(
            records,
            [f'_mta-sts IN TXT "v=STSv1; id={policyId(text)}"', '_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tls@example.org"'],
        )
        self.assertEqual(len(list(publisher.records(enforce, "example.net."))), 2)
        self.assertEqual(list(publisher.records(enforce, "other.test.")), [])
        # The id changes when, and only when, the policy text does.
        testing = self.config("mta_sts_mode = testing\n")
        self.assertNotEqual(policyId(policyText(testing)), policyId(text))
        self.assertEqual(policyId(policyText(self.config("mta_sts_mode = enforce\n"))), policyId(text))
        self.assertNotEqual(policyId(policyText(self.config("mta_sts_mode = enforce\nmta_sts_max_age = 86400\n"))), policyId(text))

    def test_tlsaOfOurCertificate(self):
        directory = Path(self.mktemp()).absolute()
        cert, key = issue(["mx.example.org"]).write(directory, "mx")
        config = self.config("tlsa_publish = yes\n", f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n")
        records = list(TLSRecordPublisher().records(config, "example.org."))
        self.assertEqual(records, [f"_25._tcp.mx.example.org. IN TLSA 3 1 1 {spkiDigest(cert.read_bytes()).hex()}"])
        self.assertEqual(list(TLSRecordPublisher().records(config, "example.net.")), [])


class CompositionTests(unittest.TestCase):
    """
    The queue built from a config gets the policy, and the TLS-RPT timer
    runs as a process service on the reactor.
    """

    def build(self, extra=""):
        from twisted.internet.testing import MemoryReactorClock
        from zope.interface.verify import verifyObject

        from twisted_maillab import service
        from twisted_maillab.interfaces import IOutboundTLSPolicy

        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        table = directory / "tls_policy"
        table.write_text("bank.example verify\n")
        parsed = configmodule.loadString(
            f"[server]\ndomain = example.org\nstate_directory = {directory}\n"
            "[smtp]\nenabled = yes\nlisten = tcp:10025:interface=127.0.0.1\n"
            f"smtp_tls_policy_maps = {table}\nsmtp_tls_security_level = encrypt\n" + extra
        )
        reactor = MemoryReactorClock()
        top = service.makeService(parsed, reactor)
        queue = top.getServiceNamed("outbound-queue").queue
        verifyObject(IOutboundTLSPolicy, queue.tlsPolicy)
        return top, queue, reactor

    def test_policyAndReporter(self):
        top, queue, reactor = self.build()
        self.assertEqual(queue.tlsPolicy.policyMap.level("bank.example"), "verify")
        self.assertEqual(queue.tlsPolicy.defaultLevel, "encrypt")
        self.assertFalse(queue.tlsPolicy.dnssec)
        reporter = top.getServiceNamed("tls-reports").reporter
        self.assertEqual(reporter.recorder.path.name, "tlsrpt.json")
        reporter.recorder.runner = syncRunner
        reactor.advance(86400 * 20 + 7)
        reporter.start()
        due = 86400 * 21 + 300
        self.assertEqual([c.getTime() for c in reactor.getDelayedCalls() if c.getTime() == due], [due])
        reporter.stop()
        self.assertEqual([c for c in reactor.getDelayedCalls() if c.getTime() == due], [])

    def test_reportingOff(self):
        top, queue, reactor = self.build("smtp_tls_reporting = no\nsmtp_dns_support_level = dnssec\n")
        self.assertNotIn("tls-reports", [child.name for child in top])
        self.assertIsNone(queue.tlsPolicy.recorder)
        self.assertTrue(queue.tlsPolicy.dnssec)
