"""
Unit tests of C{[http]} (L{twisted_maillab.http}), the metrics seam
(L{twisted_maillab.metrics}), the client settings both read, the published
service records (L{twisted_maillab.dns.servicerecords}) and C{maillab zone
show}: documents checked element by element against the config, the site
driven over an in-memory HTTP channel (L{StringTransport}), timers on
L{MemoryReactorClock}.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from prometheus_client import generate_latest
from twisted.application import service as tservice
from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from twisted_maillab import clientsettings
from twisted_maillab.config import ConfigError, loadString
from twisted_maillab.dns.servicerecords import ServiceRecords
from twisted_maillab.http import documents, health
from twisted_maillab.http.site import MailSite, SiteContext, buildResource
from twisted_maillab.metrics import NULL_METRICS, Metrics, ReactorLagService
from twisted_maillab.service import CountingFactory, ListenerService

BASE = (
    "[server]\nhostname = mail.example.org\ndomain = example.org\nstate_directory = {state}\n"
    "[auth]\nchecker = unix\nlocal_domains = example.net\n"
)

# What Thunderbird's autoconfig reader accepts (comm-central
# mailnews/base/prefs/content/accountcreation, readFromXML.sys.mjs and
# the clientConfig 1.1 format): per server, these children and values.
THUNDERBIRD_SOCKET_TYPES = {"plain", "SSL", "STARTTLS"}
THUNDERBIRD_AUTHENTICATION = {
    "password-cleartext", "plain", "password-encrypted", "secure", "GSSAPI", "NTLM",
    "OAuth2", "none", "client-IP-address", "TLS-client-cert",
}
THUNDERBIRD_SERVER_CHILDREN = {"hostname", "port", "socketType", "authentication", "username"}


def thunderbirdEntries(document: bytes) -> list[dict]:
    """
    The servers of a clientConfig 1.1 document as Thunderbird reads them;
    fails on anything its reader would refuse.
    """
    root = ET.fromstring(document)
    assert root.tag == "clientConfig" and root.get("version") == "1.1", root.attrib
    (provider,) = root.findall("emailProvider")
    assert provider.get("id"), "emailProvider needs an id"
    assert provider.findall("domain"), "emailProvider needs a domain"
    assert provider.findtext("displayName"), "displayName"
    entries = []
    for element in provider:
        if element.tag not in ("incomingServer", "outgoingServer"):
            assert element.tag in ("domain", "displayName", "displayShortName"), element.tag
            continue
        kind = element.get("type")
        assert kind in (("imap", "pop3") if element.tag == "incomingServer" else ("smtp",)), kind
        children = {child.tag: child.text for child in element}
        assert set(children) == THUNDERBIRD_SERVER_CHILDREN, children
        assert children["socketType"] in THUNDERBIRD_SOCKET_TYPES, children
        assert children["authentication"] in THUNDERBIRD_AUTHENTICATION, children
        assert 0 < int(children["port"]) < 65536
        entries.append(dict(children, type=kind, tag=element.tag))
    return entries


def configText(testCase, extra: str = "", tls: bool = True) -> str:
    state = Path(testCase.mktemp()).resolve()
    state.mkdir(parents=True)
    text = BASE.replace("checker = unix", "checkers = unix").format(state=state)
    if tls:
        text += (
            f"[tls]\ncertificate = {state}/cert.pem\nprivate_key = {state}/key.pem\n"
            "generate_self_signed = yes\n"
        )
    return text + extra


LISTENERS = (
    "[imap]\nenabled = yes\nlisten = tcp:1143:interface=127.0.0.1\n"
    "[imaps]\nenabled = yes\nlisten = tcp:1993:interface=127.0.0.1\n"
    "[submission]\nenabled = yes\nlisten = tcp:1587:interface=127.0.0.1\n"
    "[pop3s]\nenabled = no\nlisten = tcp:1995:interface=127.0.0.1\n"
    "[http]\nenabled = yes\nlisten = tcp:1080:interface=127.0.0.1\n"
)


def syncRunner(f, *args):
    return defer.maybeDeferred(f, *args)


class ClientSettingsTests(unittest.TestCase):
    def test_enabledListenersOnly(self):
        """
        Exactly the enabled client listeners, implicit TLS first, with the
        port of their first listen value and their TLS kind.
        """
        config = loadString(configText(self, LISTENERS))
        self.assertEqual(
            [(s.listener, s.protocol, s.hostname, s.port, s.security) for s in clientsettings.clientServices(config)],
            [
                ("imaps", "imap", "mail.example.org", 1993, "SSL"),
                ("imap", "imap", "mail.example.org", 1143, "STARTTLS"),
                ("submission", "smtp", "mail.example.org", 1587, "STARTTLS"),
            ],
        )

    def test_publicOverrides(self):
        """
        public_hostname and public_ports are what clients are told.
        """
        extra = "[server]\n"  # merged below: the test edits the [server] block
        text = configText(self, LISTENERS).replace(
            "domain = example.org\n",
            "domain = example.org\npublic_hostname = imap.example.org.\npublic_ports = imaps=993 submission=587\n",
        )
        del extra
        config = loadString(text)
        self.assertEqual(
            [(s.hostname, s.port) for s in clientsettings.clientServices(config)],
            [("imap.example.org", 993), ("imap.example.org", 1143), ("imap.example.org", 587)],
        )

    def test_noTLSMeansPlain(self):
        config = loadString(configText(self, LISTENERS.replace("[imaps]\nenabled = yes", "[imaps]\nenabled = no"), tls=False))
        self.assertEqual([s.security for s in clientsettings.clientServices(config)], ["plain", "plain"])

    def test_badPublicPorts(self):
        for value, reason in (
            ("smtp=25", '"smtp=25" is not LISTENER=PORT with LISTENER one of'),
            ("imaps=0", '"imaps=0": 0 is not a port (1-65535)'),
            ("imaps=993 imaps=994", "a listener is named twice"),
        ):
            text = configText(self).replace("domain = example.org\n", f"domain = example.org\npublic_ports = {value}\n")
            e = self.assertRaises(ConfigError, loadString, text, "m.ini")
            self.assertIn(f"m.ini [server] public_ports: {reason}", str(e))

    def test_badPublicHostname(self):
        text = configText(self).replace("domain = example.org\n", "domain = example.org\npublic_hostname = not a name\n")
        e = self.assertRaises(ConfigError, loadString, text, "m.ini")
        self.assertIn('m.ini [server] public_hostname: "not a name" is not a domain name', str(e))

    def test_httpsNeedsCertificate(self):
        """
        check-config reports [http] https without a [tls] certificate, as
        the start would.
        """
        from twisted_maillab.checkconfig import problems

        config = loadString(configText(self, LISTENERS + "https = yes\n", tls=False), "m.ini")
        self.assertEqual(
            [str(p) for p in problems(config)],
            ["m.ini [http] https: HTTPS needs [tls] certificate and private_key (line 23)"],
        )

    def test_loginName(self):
        """
        auto follows [auth]: system users log in with the local part,
        passwd-file users with the address; login_name overrides.
        """
        unix = loadString(configText(self, LISTENERS))
        self.assertEqual(clientsettings.loginName(unix, None), "%EMAILLOCALPART%")
        self.assertEqual(clientsettings.loginName(unix, "anne@example.org"), "anne")
        virtual = loadString(
            configText(self, LISTENERS).replace("checkers = unix", f"checkers = passwd-file\npasswd_file = {self.mktemp()}")
        )
        self.assertEqual(clientsettings.loginName(virtual, None), "%EMAILADDRESS%")
        self.assertEqual(clientsettings.loginName(virtual, "anne@example.org"), "anne@example.org")
        forced = loadString(configText(self, LISTENERS + "login_name = address\n"))
        self.assertEqual(clientsettings.loginName(forced, None), "%EMAILADDRESS%")


class DocumentTests(unittest.TestCase):
    def setUp(self):
        self.config = loadString(configText(self, LISTENERS))

    def test_autoconfigMatchesConfig(self):
        """
        One Thunderbird-valid server element per enabled listener.
        """
        entries = thunderbirdEntries(documents.autoconfigDocument(self.config))
        self.assertEqual(
            [(e["tag"], e["type"], e["hostname"], e["port"], e["socketType"], e["username"]) for e in entries],
            [
                ("incomingServer", "imap", "mail.example.org", "1993", "SSL", "%EMAILLOCALPART%"),
                ("incomingServer", "imap", "mail.example.org", "1143", "STARTTLS", "%EMAILLOCALPART%"),
                ("outgoingServer", "smtp", "mail.example.org", "1587", "STARTTLS", "%EMAILLOCALPART%"),
            ],
        )
        root = ET.fromstring(documents.autoconfigDocument(self.config, "example.net"))
        provider = root.find("emailProvider")
        self.assertEqual(provider.get("id"), "example.net")
        self.assertEqual([d.text for d in provider.findall("domain")], ["example.net", "example.org"])

    def test_autodiscoverResponse(self):
        body = documents.autodiscoverDocument(self.config, "anne@example.org")
        ns = {"a": documents.RESPONSE_SCHEMA, "o": documents.OUTLOOK_SCHEMA}
        root = ET.fromstring(body)
        self.assertEqual(root.tag, f"{{{documents.RESPONSE_SCHEMA}}}Autodiscover")
        account = root.find("o:Response/o:Account", ns)
        self.assertEqual(account.findtext("o:AccountType", namespaces=ns), "email")
        self.assertEqual(account.findtext("o:Action", namespaces=ns), "settings")
        protocols = [
            {child.tag.rpartition("}")[2]: child.text for child in p} for p in account.findall("o:Protocol", ns)
        ]
        self.assertEqual(
            [(p["Type"], p["Server"], p["Port"], p["SSL"], p["Encryption"], p["LoginName"]) for p in protocols],
            [
                ("IMAP", "mail.example.org", "1993", "on", "SSL", "anne"),
                ("IMAP", "mail.example.org", "1143", "on", "TLS", "anne"),
                ("SMTP", "mail.example.org", "1587", "on", "TLS", "anne"),
            ],
        )

    def test_parseRequest(self):
        request = (
            f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{documents.REQUEST_SCHEMA}">'
            "<Request><EMailAddress>anne@example.org</EMailAddress>"
            f"<AcceptableResponseSchema>{documents.OUTLOOK_SCHEMA}</AcceptableResponseSchema>"
            "</Request></Autodiscover>"
        ).encode()
        self.assertEqual(documents.parseAutodiscoverRequest(request), "anne@example.org")
        for bad, reason in (
            (b"", "not XML"),
            (b"\x00\xff garbage", "not XML"),
            (b"<Other/>", "not an Autodiscover request"),
            (b"<Autodiscover><Request/></Autodiscover>", "names no EMailAddress"),
            (b'<!DOCTYPE a [<!ENTITY x "y">]><Autodiscover/>', "document type declarations"),
        ):
            e = self.assertRaises(documents.BadRequest, documents.parseAutodiscoverRequest, bad)
            self.assertIn(reason, str(e))

    def test_checkAddress(self):
        self.assertEqual(documents.checkAddress(self.config, "Anne@Example.NET."), "Anne@example.net")
        self.assertRaises(documents.UnknownDomain, documents.checkAddress, self.config, "anne@example.com")
        for bad in ("anne", "@example.org", "a b@example.org", "x" * 65 + "@example.org"):
            self.assertRaises(documents.BadRequest, documents.checkAddress, self.config, bad)


class FakeTree(tservice.MultiService):
    pass


def exchange(site, data: bytes, peer=None) -> bytes:
    """
    Send C{data} on a new in-memory connection to C{site}; what it wrote.
    """
    peer = peer or IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return transport.value()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body(response: bytes) -> bytes:
    head, _, rest = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        return out
    return rest


class SiteTests(unittest.TestCase):
    def setUp(self):
        self.config = loadString(configText(self, LISTENERS + "max_request_size = 2K\n"))
        self.metrics = Metrics()
        self.tree = FakeTree()
        self.context = SiteContext(metrics=self.metrics, services=lambda: self.tree, runner=syncRunner)
        self.reactor = MemoryReactorClock()
        self.site = MailSite(buildResource(self.config, self.context, hosts={}), 2048, 30, reactor=self.reactor)

    def get(self, path: str, host: str = "mail.example.org", peer=None) -> bytes:
        return exchange(self.site, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), peer)

    def post(self, path: str, data: bytes, headers: str = "") -> bytes:
        return exchange(
            self.site,
            f"POST {path} HTTP/1.1\r\nHost: autodiscover.example.org\r\nContent-Length: {len(data)}\r\n{headers}\r\n".encode()
            + data,
        )

    def test_autoconfigPaths(self):
        for path in ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml",
                     "/mail/config-v1.1.xml?emailaddress=anne%40example.org"):
            response = self.get(path)
            self.assertEqual(status(response), 200, response)
            self.assertIn(b"text/xml", response)
            self.assertEqual(len(thunderbirdEntries(body(response))), 3)

    def test_autoconfigDomainFromHost(self):
        response = self.get("/mail/config-v1.1.xml", host="autoconfig.example.net")
        self.assertEqual(ET.fromstring(body(response)).find("emailProvider").get("id"), "example.net")

    def test_autoconfigBadRequests(self):
        self.assertEqual(status(self.get("/mail/config-v1.1.xml?emailaddress=anne%40example.com")), 404)
        self.assertEqual(status(self.get("/mail/config-v1.1.xml?emailaddress=garbage")), 400)
        self.assertEqual(status(self.get("/mail/config-v1.1.xml?emailaddress=%ff%fe%40example.org")), 400)
        self.assertEqual(status(self.get("/mail/config-v1.1.xml?emailaddress=" + "a" * 400)), 400)
        self.assertEqual(status(self.get("/nothing/here")), 404)

    def test_autodiscover(self):
        request = (
            f'<Autodiscover xmlns="{documents.REQUEST_SCHEMA}"><Request>'
            "<EMailAddress>anne@example.org</EMailAddress></Request></Autodiscover>"
        ).encode()
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
            response = self.post(path, request)
            self.assertEqual(status(response), 200, response)
            self.assertIn(b"<LoginName>anne</LoginName>", body(response))
        self.assertEqual(status(self.post("/autodiscover/autodiscover.xml", b"<x")), 400)
        self.assertEqual(status(self.post("/autodiscover/autodiscover.xml", request.replace(b"example.org", b"example.com"))), 404)
        self.assertEqual(status(self.get("/autodiscover/autodiscover.xml")), 405)

    def test_oversizedBodyRefused(self):
        """
        A declared or chunked body over max_request_size gets 413 and the
        connection closes; nothing is rendered.
        """
        response = exchange(
            self.site,
            b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000,
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 413 "), response)
        self.assertEqual(response.count(b"HTTP/1.1"), 1)
        chunk = b"800\r\n" + b"a" * 0x800 + b"\r\n"
        response = exchange(
            self.site,
            b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 413 "), response)
        self.assertEqual(response.count(b"HTTP/1.1"), 1)

    def test_malformedRequestLine(self):
        response = exchange(self.site, b"\x16\x03\x01 not http at all\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response)

    def test_metricsAllowList(self):
        self.metrics.login("imap", "failed", 2.0)
        response = self.get("/metrics")
        self.assertEqual(status(response), 200)
        self.assertIn(b'maillab_logins_total{protocol="imap",result="failed"} 1.0', body(response))
        self.assertIn(b'maillab_login_throttle_delays_total{protocol="imap"} 1.0', body(response))
        self.assertEqual(status(self.get("/metrics", peer=IPv4Address("TCP", "192.0.2.9", 1))), 403)
        self.assertEqual(status(self.get("/metrics", peer=IPv6Address("TCP", "::1", 1))), 200)
        self.assertEqual(status(self.get("/metrics", peer=IPv6Address("TCP", "::ffff:127.0.0.1", 1))), 200)

    def test_healthy(self):
        response = self.get("/healthz")
        self.assertEqual((status(response), body(response)), (200, b"ok\n"))

    def test_unhealthyNamesProblems(self):
        """
        A listener that is not bound and a state directory that cannot be
        written each get a line of the 503.
        """
        group = tservice.MultiService()
        group.setName("imap")
        group.setServiceParent(self.tree)
        ListenerService("imap", None, None).setServiceParent(group)
        # A file where the state directory should be: not writable, for
        # root too.
        state = self.config.server.state_directory
        state.rmdir()
        state.write_bytes(b"")
        response = self.get("/healthz")
        self.assertEqual(status(response), 503)
        self.assertEqual(
            body(response).decode().splitlines(),
            [
                "imap: not listening",
                f"store: cannot write in {state}: Not a directory",
                f"queue: cannot read {state}/queue: Not a directory",
            ],
        )

    def test_hostDispatch(self):
        """
        A resource named in hosts gets every request for label.<domain>.
        """
        from twisted.web.static import Data

        leaf = Data(b"version: STSv1\n", "text/plain")
        leaf.isLeaf = True
        site = MailSite(buildResource(self.config, self.context, hosts={"mta-sts": "tests.test_http:_policy"}), 2048, 30,
                        reactor=self.reactor)
        response = exchange(site, b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n")
        self.assertEqual(body(response), b"version: STSv1\n")
        response = exchange(site, b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n")
        self.assertEqual(body(response), b"version: STSv1\n")
        response = exchange(site, b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: mail.example.org\r\n\r\n")
        self.assertEqual(status(response), 200)
        self.assertIn(b"clientConfig", response)

    def test_badHostResource(self):
        e = self.assertRaises(ConfigError, buildResource, self.config, self.context, {"mta-sts": "no.such.module:x"})
        self.assertIn("[http] enabled: the mta-sts. resource (no.such.module:x) failed to load", str(e))


class ShippedHostsTests(unittest.TestCase):
    """
    The virtual hosts the suite itself registers in L{HOSTS}.
    """

    def site(self, smtp: str):
        config = loadString(configText(self, LISTENERS + "[smtp]\n" + smtp))
        context = SiteContext(metrics=Metrics(), services=lambda: FakeTree(), runner=syncRunner)
        return MailSite(buildResource(config, context), 2048, 30, reactor=MemoryReactorClock())

    def test_mtaStsPolicy(self):
        """
        RFC 8461 3.3: the policy at https://mta-sts.<domain>/.well-known/mta-sts.txt.
        """
        site = self.site("mta_sts_mode = enforce\nmta_sts_mx = mail.example.org\n")
        response = exchange(site, b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n")
        self.assertEqual(status(response), 200, response)
        lines = body(response).decode().splitlines()
        self.assertEqual(lines[0], "version: STSv1")
        self.assertIn("mode: enforce", lines)
        self.assertIn("mx: mail.example.org", lines)
        # Other host names keep the mail tree; no policy there.
        response = exchange(site, b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mail.example.org\r\n\r\n")
        self.assertEqual(status(response), 404)

    def test_noPolicyNoFile(self):
        site = self.site("mta_sts_mode = none\n")
        response = exchange(site, b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n")
        self.assertEqual(status(response), 404)


def _policy(config, context):
    from twisted.web.static import Data

    leaf = Data(b"version: STSv1\n", "text/plain")
    leaf.isLeaf = True
    return leaf


class HealthTests(unittest.TestCase):
    def test_queueStats(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        now = time.time()
        for name, age in (("a", 10), ("b", 500)):
            (directory / f"{name}.eml").write_bytes(b"x")
            (directory / f"{name}.json").write_bytes(b"{}")
            os.utime(directory / f"{name}.eml", (now - age, now - age))
        count, age = health.queueStats(directory, now)
        self.assertEqual(count, 2)
        self.assertAlmostEqual(age, 500, delta=1)
        self.assertEqual(health.queueStats(directory / "missing", now), (0, 0.0))

    def test_stuckQueue(self):
        text = configText(self, "[smtp]\nenabled = yes\nlisten = tcp:1025:interface=127.0.0.1\n"
                          "[http]\nenabled = yes\nlisten = tcp:1080:interface=127.0.0.1\nhealthz_queue_age = 1m\n")
        config = loadString(text)
        queue = health.queueDirectory(config)
        queue.mkdir(parents=True)
        (queue / "m.eml").write_bytes(b"x")
        os.utime(queue / "m.eml", (time.time() - 3600,) * 2)
        problems = self.successResultOf(defer.ensureDeferred(health.checkHealth(config, FakeTree(), syncRunner)))
        self.assertEqual(len(problems), 1)
        self.assertRegex(problems[0], r"^queue: oldest of 1 message\(s\) is 36\d\ds old \(limit 60s\)$")


class MetricsTests(unittest.TestCase):
    def text(self, metrics) -> str:
        return generate_latest(metrics.registry).decode()

    def test_eventsCounted(self):
        metrics = Metrics()
        metrics.connectionOpened("smtp")
        metrics.connectionOpened("smtp")
        metrics.connectionClosed("smtp")
        metrics.lockout("pop3")
        metrics.message("received", "smtp")
        metrics.message("rejected", "550 5.1.1")
        metrics.message("bounced", "5.0.0")
        metrics.deliveryLatency(3.0)
        text = self.text(metrics)
        for line in (
            'maillab_connections_total{protocol="smtp"} 2.0',
            'maillab_connections_open{protocol="smtp"} 1.0',
            'maillab_login_lockouts_total{protocol="pop3"} 1.0',
            'maillab_messages_total{event="received",reason="smtp"} 1.0',
            'maillab_messages_total{event="rejected",reason="550 5.1.1"} 1.0',
            'maillab_messages_total{event="bounced",reason="5.0.0"} 1.0',
            'maillab_delivery_latency_seconds_bucket{le="5.0"} 1.0',
        ):
            self.assertIn(line, text)

    def test_registryPerTree(self):
        """
        Two trees in one process count apart (no global registry).
        """
        one, two = Metrics(), Metrics()
        one.message("received", "smtp")
        self.assertIn('maillab_messages_total{event="received",reason="smtp"} 1.0', self.text(one))
        self.assertNotIn("maillab_messages_total{", self.text(two))

    def test_fsyncTimed(self):
        metrics = Metrics()
        path = Path(self.mktemp())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        self.addCleanup(os.close, fd)
        metrics.fsync(fd)
        NULL_METRICS.fsync(fd)
        self.assertIn("maillab_store_fsync_seconds_count 1.0", self.text(metrics))
        closed = os.open(path, os.O_RDONLY)
        os.close(closed)
        self.assertRaises(OSError, NULL_METRICS.fsync, closed)

    def test_watched(self):
        class Limiter:
            dropped, slipped = 4, 2

        class Server:
            rcodes = [0] * 16
            rateLimiter = Limiter()

        server = Server()
        server.rcodes[0], server.rcodes[5] = 7, 1
        metrics = Metrics()
        metrics.watch("dns", server)
        metrics.watch("queue", lambda: (3, 42.0))
        metrics.watch("pool:store", lambda: 5)
        text = self.text(metrics)
        for line in (
            'maillab_dns_queries_total{rcode="NOERROR"} 7.0',
            'maillab_dns_queries_total{rcode="REFUSED"} 1.0',
            'maillab_dns_rrl_total{action="drop"} 4.0',
            'maillab_dns_rrl_total{action="slip"} 2.0',
            "maillab_queue_messages 3.0",
            "maillab_queue_oldest_seconds 42.0",
            'maillab_pool_queue{pool="store"} 5.0',
        ):
            self.assertIn(line, text)

    def test_reactorLag(self):
        clock = MemoryReactorClock()
        metrics = Metrics()
        lag = ReactorLagService(metrics, clock, interval=1.0)
        lag.startService()
        clock.advance(1.0)
        clock.advance(1.5)  # the next tick ran 0.5 s late
        lag.stopService()
        text = self.text(metrics)
        self.assertIn("maillab_reactor_lag_seconds_count 3.0", text)
        self.assertIn("maillab_reactor_lag_seconds_sum 0.5", text)
        self.assertFalse(clock.getDelayedCalls())

    def test_countingFactory(self):
        """
        Connections are counted by listener; the protocol is the wrapped
        factory's own, with its own factory attribute.
        """
        metrics = Metrics()
        inner = protocol.Factory.forProtocol(protocol.Protocol)
        counting = CountingFactory(inner, "imap", metrics)
        built = counting.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertIs(built.factory, inner)
        self.assertEqual(counting.logPrefix(), "Factory")
        built.makeConnection(StringTransport())
        self.assertIn('maillab_connections_open{protocol="imap"} 1.0', self.text(metrics))
        built.connectionLost(None)
        self.assertIn('maillab_connections_open{protocol="imap"} 0.0', self.text(metrics))
        self.assertIn('maillab_connections_total{protocol="imap"} 1.0', self.text(metrics))


class ServiceRecordTests(unittest.TestCase):
    def test_records(self):
        """
        RFC 6186 SRV per service (disabled ones as "0 0 0 ."), implicit TLS
        preferred, the autoconfig names while [http] runs; nothing for a
        zone that is not a mail domain.
        """
        config = loadString(configText(self, LISTENERS.replace("listen = tcp:1080:", "https = yes\nlisten = tcp:1443:")))
        records = ServiceRecords().records(config, "example.org.")
        self.assertEqual(
            records,
            [
                "_submission._tcp SRV 10 1 1587 mail.example.org.",
                "_submissions._tcp SRV 0 0 0 .",
                "_imap._tcp SRV 10 1 1143 mail.example.org.",
                "_imaps._tcp SRV 0 1 1993 mail.example.org.",
                "_pop3._tcp SRV 0 0 0 .",
                "_pop3s._tcp SRV 0 0 0 .",
                "autoconfig CNAME mail.example.org.",
                "autodiscover CNAME mail.example.org.",
                "_autodiscover._tcp SRV 0 1 1443 mail.example.org.",
            ],
        )
        self.assertEqual(ServiceRecords().records(config, "example.com."), [])
        self.assertEqual(len(ServiceRecords().records(config, "example.net.")), 9)

    def test_withoutHTTP(self):
        config = loadString(configText(self, LISTENERS.replace("[http]\nenabled = yes", "[http]\nenabled = no")))
        records = ServiceRecords().records(config, "example.org.")
        self.assertFalse([r for r in records if "autoconfig" in r or "autodiscover" in r])

    def test_zoneShow(self):
        """
        maillab zone show: the file's records and the generated ones, in
        master-file form, as the zone source loads them.
        """
        from twisted_maillab.console import zone as zonecommand

        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        (directory / "z.zone").write_text(
            "$TTL 300\n@ SOA ns hostmaster 7 3600 600 86400 300\n@ NS ns\nns A 192.0.2.1\n"
            "mail A 192.0.2.2\n@ MX 10 mail\n"
        )
        ini = directory / "m.ini"
        ini.write_text(
            configText(self, LISTENERS)
            + f"[dns]\nenabled = yes\nlisten = tcp:1053:interface=127.0.0.1\nzones = example.org:{directory}/z.zone\n"
            "publish_mail_records = yes\n"
        )
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(zonecommand.main(["--config", str(ini), "show", "example.org"], out, err), 0, err.getvalue())
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "$ORIGIN example.org.")
        self.assertEqual(lines[1], "example.org.\t300\tIN\tSOA\tns.example.org. hostmaster.example.org. 7 3600 600 86400 300")
        self.assertIn("example.org.\t300\tIN\tMX\t10 mail.example.org.", lines)
        self.assertIn("_imaps._tcp.example.org.\t3600\tIN\tSRV\t0 1 1993 mail.example.org.", lines)
        self.assertIn("_pop3._tcp.example.org.\t3600\tIN\tSRV\t0 0 0 .", lines)
        self.assertFalse((Path(loadString(ini.read_text()).server.state_directory) / "dns-published.json").exists())
        err = io.StringIO()
        self.assertEqual(zonecommand.main(["--config", str(ini), "show", "example.com"], io.StringIO(), err), 1)
        self.assertEqual(err.getvalue(), "maillab zone: example.com is not a zone of [dns] zones (served: example.org)\n")


class BuilderTests(unittest.TestCase):
    def build(self, extra: str):
        from twisted_maillab.service import makeService

        config = loadString(configText(self, extra))
        return makeService(config, reactor=MemoryReactorClock())

    def listeners(self, top) -> list:
        return [child for child in top.getServiceNamed("http") if isinstance(child, ListenerService)]

    def test_https(self):
        """
        https = yes: the site behind the [tls] certificate, its
        connections counted under "http".
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        top = self.build("[http]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\nhttps = yes\n")
        (listener,) = self.listeners(top)
        self.assertIsInstance(listener.factory, TLSMemoryBIOFactory)
        counting = listener.factory.wrappedFactory
        self.assertIsInstance(counting, CountingFactory)
        self.assertEqual(counting.label, "http")
        self.assertIsInstance(counting.factory, MailSite)
        self.assertTrue([child for child in top.getServiceNamed("http") if isinstance(child, ReactorLagService)])

    def test_plain(self):
        top = self.build("[http]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n")
        (listener,) = self.listeners(top)
        self.assertIsInstance(listener.factory, CountingFactory)
        self.assertIsInstance(listener.factory.factory, MailSite)
