"""
The outbound TLS policy over real loopback sockets: a remote maillab DNS
publishing its MTA-STS, TLS-RPT and TLSA records, a UDP proxy in front of
it that sets the AD bit (our server does not validate), the MTA-STS
policy served by our own resource over HTTPS with a test CA, and remote
MX hosts (maillab's SMTP protocol) with various certificates; the queue
resolves through C{twisted.names.client.Resolver} pointed at the proxy.
"""

from __future__ import annotations

import email
import gzip
import json
from pathlib import Path

from twisted.internet import defer, reactor, task, threads
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.logger import globalLogPublisher
from twisted.names import client, dns
from twisted.trial import unittest
from twisted.web.server import Site

from twisted_maillab import config as configmodule, service
from twisted_maillab.smtp.delivery import QueueIds
from twisted_maillab.smtp.envelope import Mailbox, MailParams, RcptParams
from twisted_maillab.smtp.outbound import OutboundQueue
from twisted_maillab.smtp.server import Envelope, Recipient, Settings, SMTPServerFactory
from twisted_maillab.tlspolicy.dane import TLSA
from twisted_maillab.tlspolicy.publish import policyId, policyText
from twisted_maillab.tlspolicy.wiring import buildOutboundPolicy, buildReporter

from tests.support import freePort
from tests.test_smtp_outbound import Sink
from tests.tlspolicy_support import issue

ZONE = """$ORIGIN remote.test.
$TTL 300
@       IN SOA ns.remote.test. root.remote.test. ( 1 3600 600 86400 300 )
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 10 mx
mx      IN A 127.0.0.1
mta-sts IN A 127.0.0.1
"""


class ADProxy(DatagramProtocol):
    """
    A stand-in for a validating resolver: forwards queries to the
    authoritative server and, when C{setAD}, sets the AD bit (RFC 4035
    3.2.3) in its answers.  Records the AD bit of each TLSA query.
    """

    def __init__(self, upstream):
        self.upstream = upstream
        self.setAD = True
        # Query types whose answers get no AD (an unsigned RRset).
        self.insecureTypes = set()
        self.pending = {}
        self.tlsaQueriesWithAD = []

    def datagramReceived(self, data, address):
        if address == self.upstream:
            client, qtype = self.pending.pop(data[:2], (None, None))
            if client is not None:
                if self.setAD and qtype not in self.insecureTypes:
                    data = data[:3] + bytes([data[3] | 0x20]) + data[4:]
                self.transport.write(data, client)
            return
        query = dns.Message()
        query.fromStr(data)
        if query.queries and query.queries[0].type == TLSA:
            self.tlsaQueriesWithAD.append(bool(query.authenticData))
        self.pending[data[:2]] = (address, query.queries[0].type if query.queries else None)
        self.transport.write(data, self.upstream)


class _TCPProxyUpstream(Protocol):
    def __init__(self, downstream):
        self.downstream = downstream
        self.first = True

    def connectionMade(self):
        self.downstream.upstreamReady(self)

    def dataReceived(self, data):
        if self.first and len(data) >= 5:
            # The header follows the two-octet length: set AD.
            data = data[:5] + bytes([data[5] | 0x20]) + data[6:] if len(data) > 5 else data
            self.first = False
        self.downstream.transport.write(data)

    def connectionLost(self, reason):
        self.downstream.transport.loseConnection()


class TCPADProxy(Protocol):
    """
    L{ADProxy} over TCP (one answer per connection, as our client asks).
    """

    def connectionMade(self):
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory

        self.pending = b""
        self.upstream = None
        self.transport.pauseProducing()
        host, port = self.factory.upstream
        TCP4ClientEndpoint(reactor, host, port).connect(Factory.forProtocol(lambda: _TCPProxyUpstream(self)))

    def upstreamReady(self, upstream):
        self.upstream = upstream
        self.transport.resumeProducing()

    def dataReceived(self, data):
        query = dns.Message()
        try:
            query.fromStr(data[2:])
            self.factory.queries.append((query.queries[0].type, bool(query.authenticData)))
        except Exception:
            pass
        self.upstream.transport.write(data)

    def connectionLost(self, reason):
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


def runner(f, *args):
    return threads.deferToThread(f, *args)


class OutboundTLSPolicyTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)
        self.ca = issue(["maillab test CA"], ca=True)
        self.caFile, _ = self.ca.write(self.dir, "ca")
        # The certificate the remote's TLSA record is made from.
        self.published = issue(["mx.remote.test"])
        self.publishedCert, self.publishedKey = self.published.write(self.dir, "published")
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.logged = []
        observer = lambda event: self.logged.append(event)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    # -- the remote side ---------------------------------------------------

    def startRemote(self, mode="enforce", tlsa=True, setAD=True, httpsIssuer=None, zoneExtra=""):
        """
        The remote domain's maillab DNS (publishing its records), the AD
        proxy in front of it and the MTA-STS policy over HTTPS.
        """
        zonePath = self.dir / "remote.test.zone"
        zonePath.write_text(ZONE + zoneExtra)
        port = freePort()
        ini = self.dir / "remote.ini"
        ini.write_text(
            "[server]\ndomain = remote.test\nhostname = mx.remote.test\n"
            f"state_directory = {self.dir / 'remote-state'}\n"
            f"[tls]\ncertificate = {self.publishedCert}\nprivate_key = {self.publishedKey}\n"
            f"[dns]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
            f"zones = remote.test:{zonePath}\npublish_mail_records = yes\n"
            f"[smtp]\nmta_sts_mode = {mode}\nmta_sts_mx = mx.remote.test\n"
            "tlsrpt_rua = mailto:tlsrpt@remote.test\n"
            f"tlsa_publish = {'yes' if tlsa else 'no'}\n"
        )
        self.remoteConfig = configmodule.load(ini)
        top = service.makeService(self.remoteConfig, reactor)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        self.proxy = ADProxy(("127.0.0.1", port))
        self.proxy.setAD = setAD
        # One port for UDP and TCP, as a resolver's.
        proxyPort = reactor.listenUDP(freePort(), self.proxy, interface="127.0.0.1")
        self.addCleanup(proxyPort.stopListening)
        from twisted.internet.protocol import Factory

        self.tcpProxy = Factory.forProtocol(TCPADProxy)
        self.tcpProxy.upstream = ("127.0.0.1", port)
        self.tcpProxy.queries = []
        tcpPort = reactor.listenTCP(proxyPort.getHost().port, self.tcpProxy, interface="127.0.0.1")
        self.addCleanup(tcpPort.stopListening)
        self.resolver = client.Resolver(servers=[("127.0.0.1", proxyPort.getHost().port)], reactor=reactor)
        # The policy file, served by our resource with a certificate of
        # the test CA for mta-sts.remote.test.
        https = issue(["mta-sts.remote.test"], httpsIssuer or self.ca)
        site = Site(mtaStsResourceTree(self.remoteConfig))
        self.httpsPort = reactor.listenSSL(0, site, https.serverOptions(), interface="127.0.0.1")
        self.addCleanup(self.httpsPort.stopListening)

    def startMX(self, certificate=None):
        """
        The remote MX on 127.0.0.1 (STARTTLS with C{certificate}, or none).
        """
        self.sink = Sink()
        self.serverNames = []
        options = None
        if certificate is not None:
            options = certificate.serverOptions()
            options.getContext().set_tlsext_servername_callback(
                lambda connection: self.serverNames.append(connection.get_servername())
            )
        clock = task.Clock()
        self.mxFactory = SMTPServerFactory(
            Settings(hostname="mx.remote.test", banner="mx.remote.test ESMTP", peernameLookup=False),
            self.sink,
            self.sink,
            clock=clock,
            queueIds=QueueIds(clock),
            tlsContext=options,
        )
        port = reactor.listenTCP(0, self.mxFactory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    # -- our side ----------------------------------------------------------

    def makeQueue(self, mxPort, extra=""):
        ini = self.dir / "ours.ini"
        ini.write_text(
            "[server]\ndomain = domaineel.rt\nhostname = smtp.domaineel.rt\n"
            f"state_directory = {self.dir / 'state'}\n"
            f"[smtp]\nsmtp_tls_ca_file = {self.caFile}\n" + (extra or "smtp_dns_support_level = dnssec\n")
        )
        self.config = configmodule.load(ini)
        self.policy = buildOutboundPolicy(
            self.config,
            reactor=reactor,
            clock=self.clock,
            runner=runner,
            httpsPort=self.httpsPort.getHost().port,
        )
        from twisted.internet import ssl

        self.queue = OutboundQueue(
            self.dir / "queue",
            reactor=reactor,
            clock=self.clock,
            resolver=self.resolver,
            hostname="smtp.domaineel.rt",
            runner=runner,
            port=mxPort,
            connectTimeout=5,
            tlsContext=ssl.CertificateOptions(),
            localDelivery=lambda address, data: defer.succeed(None),
            isLocal=lambda domain: domain == "domaineel.rt",
            tlsPolicy=self.policy,
        )
        self.queue.start()
        self.addCleanup(self.queue.stop)

    @defer.inlineCallbacks
    def send(self, queueId="A1"):
        """
        Queue one message for friend@remote.test and run one attempt.

        @return: the recipient's entry in the queue listing, or L{None}
            when the message left the queue.
        """
        envelope = Envelope(Mailbox("edouard", "domaineel.rt"), MailParams(), queueId)
        writer = self.queue.writer(envelope, [(Recipient(Mailbox("friend", "remote.test"), RcptParams()), "friend@remote.test")])
        yield writer.write(b"Subject: hi\n\nhello\n")
        yield writer.commit()
        self.queue._timers.pop(queueId).cancel()
        yield self.queue._run(queueId)
        listing = yield defer.ensureDeferred(self.queue.listQueue())
        for entry in listing:
            if entry["id"] == queueId:
                return entry["recipients"][0]
        return None

    def logText(self):
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) for e in self.logged)

    # -- MTA-STS -------------------------------------------------------------

    @defer.inlineCallbacks
    def test_mtaStsEnforceRefusesSelfSignedCertificate(self):
        self.startRemote(mode="enforce", tlsa=False)
        self.makeQueue(self.startMX(issue(["mx.remote.test"])))
        recipient = yield self.send()
        self.assertEqual(recipient["status"], "pending")
        self.assertTrue(recipient["reply"].startswith("4.7.5 mx.remote.test[127.0.0.1]: certificate not trusted"), recipient)
        self.assertIn("(MTA-STS enforce)", recipient["reply"])
        self.assertEqual(self.sink.received, [])
        self.assertIn("status=deferred (mx.remote.test[127.0.0.1]: certificate not trusted", self.logText())
        # RFC 8461 5.1: the policy is cached in the state directory.
        cached = json.loads((self.dir / "state" / "mta-sts" / "remote.test.json").read_text())
        self.assertEqual(cached["id"], policyId(policyText(self.remoteConfig)))
        self.assertIn("mode: enforce", cached["policy"])

    @defer.inlineCallbacks
    def test_mtaStsEnforceDeliversToVerifiedMX(self):
        self.startRemote(mode="enforce", tlsa=False)
        self.makeQueue(self.startMX(issue(["mx.remote.test"], self.ca)))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        self.assertIn("Verified TLS connection established to mx.remote.test[127.0.0.1]", self.logText())
        # RFC 6066 3: the MX name was sent as server_name.
        self.assertEqual(self.serverNames, [b"mx.remote.test"])

    @defer.inlineCallbacks
    def test_mtaStsTestingOnlyReports(self):
        self.startRemote(mode="testing", tlsa=False)
        self.makeQueue(self.startMX(issue(["mx.remote.test"])))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        [(key, counts)] = self.policy.recorder.days[int(self.clock.seconds() // 86400)].items()
        self.assertEqual((key.type, counts.success, counts.failure), ("sts", 0, 1))
        self.assertIn("mode: testing", key.strings)

    @defer.inlineCallbacks
    def test_mtaStsPolicyFromUntrustedHostIsNotUsed(self):
        # RFC 8461 3.3: the policy host's certificate must be valid; a
        # policy served under another CA is not one, so nothing is
        # enforced (and the failure is counted for TLS-RPT).
        self.startRemote(mode="enforce", tlsa=False, httpsIssuer=issue(["other CA"], ca=True))
        self.makeQueue(self.startMX(issue(["mx.remote.test"])))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        self.assertFalse((self.dir / "state" / "mta-sts" / "remote.test.json").exists())
        [(key, counts)] = self.policy.recorder.days[int(self.clock.seconds() // 86400)].items()
        self.assertEqual((key.type, counts.failure), ("no-policy-found", 1))
        self.assertEqual([detail[0] for detail in counts.details], ["sts-webpki-invalid"])

    # -- DANE ----------------------------------------------------------------

    @defer.inlineCallbacks
    def test_daneMismatchDefers(self):
        self.startRemote(mode="none", tlsa=True)
        # A CA-signed certificate with the right name: PKIX would pass,
        # but the TLSA record names another key.
        self.makeQueue(self.startMX(issue(["mx.remote.test"], self.ca)))
        recipient = yield self.send()
        self.assertEqual(recipient["status"], "pending")
        self.assertTrue(recipient["reply"].startswith("4.7.5 mx.remote.test[127.0.0.1]: no TLSA record matches"), recipient)
        self.assertIn("(DANE)", recipient["reply"])
        self.assertEqual(self.sink.received, [])
        # RFC 6840 5.7: the query asked the resolver for the AD bit.
        self.assertEqual(self.proxy.tlsaQueriesWithAD, [True])

    @defer.inlineCallbacks
    def test_daneMatchDelivers(self):
        # DANE-EE(3) needs no CA and no name (RFC 7672 3.1.1): the
        # self-signed certificate the TLSA record was made from is
        # accepted, even though MTA-STS enforce would refuse it (RFC 8461
        # 2: DANE takes precedence).
        self.startRemote(mode="enforce", tlsa=True)
        self.makeQueue(self.startMX(self.published))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        self.assertIn("Verified TLS connection established", self.logText())

    @defer.inlineCallbacks
    def test_daneLargeTLSASetAskedAgainOverTCP(self):
        # Two full-certificate records (3 0 0) do not fit a 512-octet UDP
        # answer: the truncated answer is asked again over TCP.
        from cryptography.hazmat.primitives.serialization import Encoding

        der = lambda issued: issued.cert.public_bytes(Encoding.DER).hex()
        extra = "".join(f"_25._tcp.mx IN TLSA 3 0 0 {der(c)}\n" for c in (issue(["old.remote.test"]), self.published))
        self.startRemote(mode="none", tlsa=False, zoneExtra=extra)
        self.makeQueue(self.startMX(self.published))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        self.assertEqual(self.proxy.tlsaQueriesWithAD, [True])
        self.assertEqual(self.tcpProxy.queries, [(TLSA, True)])
        self.assertIn("Verified TLS connection established", self.logText())

    @defer.inlineCallbacks
    def test_tlsaWithoutADBitIsIgnored(self):
        # The same mismatching TLSA record, in an answer without AD: not
        # DNSSEC-validated, so not used (RFC 7672 2.2); opportunistic TLS.
        self.startRemote(mode="none", tlsa=True, setAD=False)
        self.makeQueue(self.startMX(issue(["mx.remote.test"], self.ca)))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)

    @defer.inlineCallbacks
    def test_daneNotUsedWhenTheMXRecordsAreInsecure(self):
        # RFC 7672 2.2.1: with an unsigned MX RRset the hosts could be
        # forged, so their (secure) TLSA records are not used.
        self.startRemote(mode="none", tlsa=True)
        self.proxy.insecureTypes.add(dns.MX)
        self.makeQueue(self.startMX(issue(["mx.remote.test"], self.ca)))
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(len(self.sink.received), 1)
        self.assertEqual(self.proxy.tlsaQueriesWithAD, [])

    @defer.inlineCallbacks
    def test_daneNotUsedWithoutDnssecSupport(self):
        self.startRemote(mode="none", tlsa=True)
        self.makeQueue(self.startMX(issue(["mx.remote.test"], self.ca)), "smtp_dns_support_level = enabled\n")
        recipient = yield self.send()
        self.assertIsNone(recipient)
        self.assertEqual(self.proxy.tlsaQueriesWithAD, [])

    # -- the tls_policy table --------------------------------------------------

    @defer.inlineCallbacks
    def test_encryptDefersPlaintextOnlyMX(self):
        self.startRemote(mode="none", tlsa=False)
        table = self.dir / "tls_policy"
        table.write_text("# destination  level\nremote.test   encrypt\n")
        self.makeQueue(self.startMX(None), f"smtp_dns_support_level = dnssec\nsmtp_tls_policy_maps = {table}\n")
        recipient = yield self.send()
        self.assertEqual(recipient["status"], "pending")
        self.assertEqual(
            recipient["reply"],
            "4.7.4 TLS is required for mx.remote.test (tls_policy) but the server offers no STARTTLS",
        )
        self.assertEqual(self.sink.received, [])
        # Without the table the same MX gets the mail in plaintext.
        self.makeQueue(self.startMX(None))
        recipient = yield self.send("A2")
        self.assertIsNone(recipient)

    @defer.inlineCallbacks
    def test_verifyFailsOnWrongName(self):
        self.startRemote(mode="none", tlsa=False)
        table = self.dir / "tls_policy"
        table.write_text(".test verify\n")
        self.makeQueue(self.startMX(issue(["wrong.remote.test"], self.ca)), f"smtp_dns_support_level = dnssec\nsmtp_tls_policy_maps = {table}\n")
        recipient = yield self.send()
        self.assertEqual(recipient["status"], "pending")
        self.assertEqual(
            recipient["reply"],
            "4.7.5 mx.remote.test[127.0.0.1]: certificate name does not match mx.remote.test (tls_policy)",
        )
        self.assertEqual(self.sink.received, [])

    # -- what the remote publishes -------------------------------------------

    @defer.inlineCallbacks
    def test_publishedRecordsAndPolicyFileOverHTTPS(self):
        from twisted.internet import utils

        from twisted_maillab.tlspolicy.dane import lookupTLSA, spkiDigest
        from tests.support import requireTool

        self.startRemote(mode="enforce", tlsa=True)
        answers, _, _ = yield self.resolver.lookupText("_mta-sts.remote.test")
        text = policyText(self.remoteConfig)
        self.assertEqual([b"".join(rr.payload.data) for rr in answers], [f"v=STSv1; id={policyId(text)}".encode()])
        answers, _, _ = yield self.resolver.lookupText("_smtp._tls.remote.test")
        self.assertEqual([b"".join(rr.payload.data) for rr in answers], [b"v=TLSRPTv1; rua=mailto:tlsrpt@remote.test"])
        result = yield defer.ensureDeferred(lookupTLSA(reactor, reactor, self.resolver, "mx.remote.test"))
        self.assertTrue(result.secure)
        self.assertEqual([r.text() for r in result.records], [f"3 1 1 {spkiDigest(self.published.certPEM).hex()}"])
        # The policy file, fetched by curl as any MTA-STS sender would.
        curl = requireTool("curl", "curl")
        port = self.httpsPort.getHost().port
        out, err, code = yield utils.getProcessOutputAndValue(
            curl,
            ("-sS", "-D", "-", "--cacert", str(self.caFile), "--resolve", f"mta-sts.remote.test:{port}:127.0.0.1",
             f"https://mta-sts.remote.test:{port}/.well-known/mta-sts.txt"),
        )
        self.assertEqual(code, 0, err)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b"HTTP/1.1 200", head)
        self.assertIn(b"content-type: text/plain", head.lower())
        self.assertEqual(body.decode(), text)
        # Only for the mta-sts names of our domains.
        out, err, code = yield utils.getProcessOutputAndValue(
            curl, ("-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{port}/.well-known/mta-sts.txt")
        )
        self.assertEqual(out, b"404")

    # -- TLS-RPT -------------------------------------------------------------

    @defer.inlineCallbacks
    def test_tlsrptDailyReport(self):
        self.startRemote(mode="enforce", tlsa=False)
        self.makeQueue(self.startMX(issue(["mx.remote.test"])))
        reporter = buildReporter(self.config, self.policy, self.queue, self.resolver, self.clock)
        reporter.start()
        self.addCleanup(reporter.stop)
        # Two refused sessions (a self-signed certificate), then one good.
        recipient = yield self.send("A1")
        self.assertEqual(recipient["status"], "pending")
        recipient = yield self.send("A2")
        self.assertEqual(recipient["status"], "pending")
        self.mxFactory.tlsContext = issue(["mx.remote.test"], self.ca).serverOptions()
        recipient = yield self.send("A3")
        self.assertIsNone(recipient)
        self.assertEqual(list(self.queue.directory.glob("B*.eml")), [])
        # After midnight UTC the day's report is queued, once.
        self.queue.stop()
        day = int(self.clock.seconds() // 86400)
        self.clock.advance((day + 1) * 86400 + 300 - self.clock.seconds())
        yield reporter.lastRun
        [path] = list(self.queue.directory.glob("B*.eml"))
        state = json.loads(path.with_suffix(".json").read_text())
        self.assertEqual(state["sender"], "postmaster@domaineel.rt")
        self.assertEqual([r["address"] for r in state["recipients"]], ["tlsrpt@remote.test"])
        message = email.message_from_bytes(path.read_bytes())
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "tlsrpt")
        self.assertEqual(message["TLS-Report-Domain"], "remote.test")
        self.assertEqual(message["TLS-Report-Submitter"], "domaineel.rt")
        [attachment] = [p for p in message.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        self.assertRegex(attachment.get_filename(), r"^domaineel\.rt!remote\.test!\d+!\d+!.+\.json\.gz$")
        report = json.loads(gzip.decompress(attachment.get_payload(decode=True)))
        self.assertEqual(report["organization-name"], "domaineel.rt")
        self.assertEqual(report["date-range"]["start-datetime"][11:], "00:00:00Z")
        [policy] = report["policies"]
        self.assertEqual(policy["policy"]["policy-type"], "sts")
        self.assertEqual(policy["policy"]["policy-domain"], "remote.test")
        self.assertEqual(policy["policy"]["policy-string"], policyText(self.remoteConfig).splitlines())
        self.assertEqual(
            policy["summary"], {"total-successful-session-count": 1, "total-failure-session-count": 2}
        )
        self.assertEqual(
            policy["failure-details"],
            [
                {
                    "result-type": "certificate-not-trusted",
                    "failed-session-count": 2,
                    "receiving-mx-hostname": "mx.remote.test",
                    "receiving-ip": "127.0.0.1",
                }
            ],
        )
        # The next day has nothing to report (the queue is not run: the
        # report is not delivered here).
        self.queue.stop()
        self.clock.advance(86400)
        yield reporter.lastRun
        self.assertEqual(len(list(self.queue.directory.glob("B*.eml"))), 1)


def mtaStsResourceTree(config):
    from twisted.web.resource import Resource

    from twisted_maillab.tlspolicy.publish import mountMTASTS

    return mountMTASTS(Resource(), config)
