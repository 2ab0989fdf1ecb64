"""
End-to-end C{[http]}, published records, C{maillab zone show} and
C{maillab doctor}: the real C{twistd maillab} on 127.0.0.1 free ports with
DNS (its zone and a reverse zone for 127.0.0.1), SMTP, submission, IMAPS
and HTTP, and real clients: urllib, smtplib, imaplib, C{dig} (apt package
C{bind9-dnsutils}), dnspython and the C{maillab} command itself.
"""

from __future__ import annotations

import imaplib
import json
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from xml.etree import ElementTree as ET

import dns.resolver
from twisted.trial import unittest

from tests.support import freePort, readUntil, requireTool, sha512crypt, stopProcess
from tests.test_http import thunderbirdEntries
from twisted_maillab.http import documents

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MAILLAB = str(BIN / "maillab")
PASSWORD = "correct horse battery"

ZONE = """$TTL 300
@    SOA ns hostmaster 2026120201 3600 600 86400 300
@    NS  ns
ns   A   127.0.0.1
mail A   127.0.0.1
@    MX  10 mail
"""
REVERSE = """$TTL 300
@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ NS ns.example.test.
1 PTR mail.example.test.
"""


class Suite:
    """
    A twistd maillab with the listeners a mail client uses, its zone
    and its reverse zone.
    """

    def __init__(self, root: Path):
        self.root = root
        self.ports = {name: freePort() for name in ("dns", "smtp", "submission", "imaps", "http")}
        (root / "users").write_text(f"anne:{{SHA512-CRYPT}}{sha512crypt(PASSWORD)}::::{root}/home/anne\n")
        (root / "home" / "anne").mkdir(parents=True)
        (root / "example.test.zone").write_text(ZONE)
        (root / "reverse.zone").write_text(REVERSE)
        p = self.ports
        self.ini = root / "maillab.ini"
        self.ini.write_text(
            "[server]\nhostname = mail.example.test\ndomain = example.test\nstate_directory = var\n"
            "[tls]\ncertificate = var/tls/cert.pem\nprivate_key = var/tls/key.pem\ngenerate_self_signed = yes\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
            f"[dns]\nenabled = yes\nlisten = tcp:{p['dns']}:interface=127.0.0.1\n"
            "zones = example.test:example.test.zone 0.0.127.in-addr.arpa:reverse.zone\n"
            "allow_transfer = 127.0.0.0/8\npublish_mail_records = yes\n"
            f"[smtp]\nenabled = yes\nlisten = tcp:{p['smtp']}:interface=127.0.0.1\n"
            "myhostname = mail.example.test\nmydestination = $myhostname, example.test\nmynetworks = 127.0.0.0/8\n"
            "smtpd_peername_lookup = no\n"
            f"[submission]\nenabled = yes\nlisten = tcp:{p['submission']}:interface=127.0.0.1\n"
            f"[imaps]\nenabled = yes\nlisten = tcp:{p['imaps']}:interface=127.0.0.1\n"
            f"[http]\nenabled = yes\nlisten = tcp:{p['http']}:interface=127.0.0.1\n"
        )
        self.start()

    def start(self):
        p = self.ports
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.root,
        )
        self.output = readUntil(
            self.process, [rf"{name} listening on 127\.0\.0\.1:{port}\b" for name, port in p.items()] + [r"maillab ready"]
        )
        # Keep reading the log: a full pipe would stop the server.
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        for line in self.process.stdout:
            self.output += line.decode("utf-8", "replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['http']}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def dig(self, *query) -> str:
        dig = requireTool("dig", "bind9-dnsutils")
        result = subprocess.run([dig, "@127.0.0.1", "-p", str(self.ports["dns"]), "+norec", *query],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def maillab(self, *argv, timeout=120) -> subprocess.CompletedProcess:
        return subprocess.run([MAILLAB, *argv], capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def stop(self):
        stopProcess(self.process)


class HTTPEndToEndTests(unittest.TestCase):
    def setUp(self):
        root = Path(self.mktemp()).resolve()
        root.mkdir(parents=True)
        self.suite = Suite(root)
        self.addCleanup(self.suite.stop)

    def expectedServers(self):
        p = self.suite.ports
        return [
            ("incomingServer", "imap", "mail.example.test", str(p["imaps"]), "SSL", "%EMAILADDRESS%"),
            ("outgoingServer", "smtp", "mail.example.test", str(p["submission"]), "STARTTLS", "%EMAILADDRESS%"),
        ]

    def test_autoconfig(self):
        """
        Both autoconfig paths, fetched over HTTP, list exactly the enabled
        client listeners as the config has them, in a form Thunderbird
        reads.
        """
        for path in ("/mail/config-v1.1.xml?emailaddress=anne%40example.test",
                     "/.well-known/autoconfig/mail/config-v1.1.xml"):
            code, document = self.suite.get(path)
            self.assertEqual(code, 200, document)
            entries = thunderbirdEntries(document)
            self.assertEqual(
                [(e["tag"], e["type"], e["hostname"], e["port"], e["socketType"], e["username"]) for e in entries],
                self.expectedServers(),
            )
        self.assertEqual(self.suite.get("/mail/config-v1.1.xml?emailaddress=anne%40elsewhere.test")[0], 404)
        self.assertEqual(self.suite.get("/mail/config-v1.1.xml?emailaddress=%3Cscript%3E")[0], 400)

    def test_autodiscover(self):
        request = (
            f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{documents.REQUEST_SCHEMA}"><Request>'
            "<EMailAddress>anne@example.test</EMailAddress>"
            f"<AcceptableResponseSchema>{documents.OUTLOOK_SCHEMA}</AcceptableResponseSchema>"
            "</Request></Autodiscover>"
        ).encode()
        post = urllib.request.Request(self.suite.url("/autodiscover/autodiscover.xml"), data=request,
                                      headers={"Content-Type": "text/xml"})
        with urllib.request.urlopen(post, timeout=30) as response:
            root = ET.fromstring(response.read())
        o = f"{{{documents.OUTLOOK_SCHEMA}}}"
        protocols = [(p.findtext(o + "Type"), p.findtext(o + "Port"), p.findtext(o + "Encryption"),
                      p.findtext(o + "LoginName")) for p in root.iter(o + "Protocol")]
        p = self.suite.ports
        self.assertEqual(protocols, [("IMAP", str(p["imaps"]), "SSL", "anne@example.test"),
                                     ("SMTP", str(p["submission"]), "TLS", "anne@example.test")])
        oversized = urllib.request.Request(self.suite.url("/autodiscover/autodiscover.xml"), data=b"x" * 200000)
        with self.assertRaises((urllib.error.HTTPError, ConnectionError, urllib.error.URLError)) as caught:
            urllib.request.urlopen(oversized, timeout=30)
        if isinstance(caught.exception, urllib.error.HTTPError):
            self.assertEqual(caught.exception.code, 413)

    def test_srvRecords(self):
        """
        dig and dnspython read the RFC 6186 records the zone publishes.
        """
        p = self.suite.ports
        answer = self.suite.dig("+short", "SRV", "_imaps._tcp.example.test")
        self.assertEqual(answer, f"0 1 {p['imaps']} mail.example.test.\n")
        self.assertEqual(self.suite.dig("+short", "SRV", "_pop3s._tcp.example.test"), "0 0 0 .\n")
        self.assertEqual(self.suite.dig("+short", "CNAME", "autoconfig.example.test"), "mail.example.test.\n")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = p["dns"]
        records = {
            name: [(r.priority, r.weight, r.port, r.target.to_text()) for r in resolver.resolve(f"{name}.example.test", "SRV")]
            for name in ("_submission._tcp", "_submissions._tcp", "_imap._tcp", "_imaps._tcp", "_pop3._tcp", "_pop3s._tcp")
        }
        self.assertEqual(records, {
            "_submission._tcp": [(10, 1, p["submission"], "mail.example.test.")],
            "_submissions._tcp": [(0, 0, 0, ".")],
            "_imap._tcp": [(0, 0, 0, ".")],
            "_imaps._tcp": [(0, 1, p["imaps"], "mail.example.test.")],
            "_pop3._tcp": [(0, 0, 0, ".")],
            "_pop3s._tcp": [(0, 0, 0, ".")],
        })

    def test_zoneShowIsTheTransfer(self):
        """
        maillab zone show prints the records an AXFR of the running server
        returns, the served serial included.
        """
        shown = self.suite.maillab("zone", "--config", str(self.suite.ini), "show", "example.test")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        axfr = self.suite.dig("AXFR", "example.test")

        def records(text):
            return sorted(tuple(line.split()) for line in text.splitlines() if line.strip() and not line.startswith((";", "$")))

        transferred = records(axfr)
        # An AXFR ends with the SOA again (RFC 5936 2.2).
        soa = [r for r in transferred if r[3] == "SOA"]
        self.assertEqual(len(soa), 2)
        transferred.remove(soa[0])
        self.assertEqual(records(shown.stdout), transferred)
        self.assertIn(("_imaps._tcp.example.test.", "3600", "IN", "SRV", "0", "1", str(self.suite.ports["imaps"]),
                       "mail.example.test."), transferred)

    def test_metricsMove(self):
        """
        After an SMTP delivery, a failed IMAP login and a DNS query, the
        counters of each have moved.
        """
        def scrape():
            code, text = self.suite.get("/metrics")
            self.assertEqual(code, 200)
            values = {}
            for line in text.decode().splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            return values

        before = scrape()
        with smtplib.SMTP("127.0.0.1", self.suite.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("someone@example.org", ["anne@example.test"], b"Subject: metrics\r\n\r\nhello\r\n")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.suite.ports["imaps"], ssl_context=context, timeout=30)
        with self.assertRaises(imaplib.IMAP4.error):
            imap.login("anne@example.test", "wrong password")
        imap.logout()
        self.suite.dig("+short", "MX", "example.test")
        after = scrape()

        def moved(name):
            return after.get(name, 0.0) - before.get(name, 0.0)

        self.assertEqual(moved('maillab_messages_total{event="received",reason="smtp"}'), 1)
        self.assertGreaterEqual(moved("maillab_store_fsync_seconds_count"), 1)
        self.assertEqual(moved('maillab_logins_total{protocol="imap",result="failed"}'), 1)
        self.assertGreaterEqual(moved('maillab_dns_queries_total{rcode="NOERROR"}'), 1)
        self.assertEqual(moved('maillab_connections_total{protocol="smtp"}'), 1)
        self.assertEqual(moved('maillab_connections_total{protocol="imaps"}'), 1)
        self.assertGreater(after["maillab_reactor_lag_seconds_count"], 0)

    def test_configChangeRaisesSerial(self):
        """
        A restart with a config whose listeners changed serves the new SRV
        record under a higher SOA serial than the file's, and zone show
        agrees.
        """
        def serial():
            return int(self.suite.dig("+short", "SOA", "example.test").split()[2])

        self.assertEqual(serial(), 2026120201)
        self.suite.stop()
        newPort = freePort()
        text = self.suite.ini.read_text()
        self.suite.ini.write_text(text.replace(f"tcp:{self.suite.ports['imaps']}:", f"tcp:{newPort}:"))
        self.suite.ports["imaps"] = newPort
        self.suite.start()
        self.assertEqual(serial(), 2026120202)
        self.assertEqual(self.suite.dig("+short", "SRV", "_imaps._tcp.example.test"), f"0 1 {newPort} mail.example.test.\n")
        shown = self.suite.maillab("zone", "--config", str(self.suite.ini), "show", "example.test")
        self.assertIn("\tSOA\tns.example.test. hostmaster.example.test. 2026120202 ", shown.stdout)

    def test_healthz(self):
        self.assertEqual(self.suite.get("/healthz"), (200, b"ok\n"))

    def test_doctor(self):
        """
        maillab doctor, pointed at the suite's DNS, finds every check of a
        healthy domain passing, with progress on standard error.
        """
        p = self.suite.ports
        argv = ["doctor", "example.test", "--nameserver", f"127.0.0.1:{p['dns']}", "--smtp-port", str(p["smtp"]),
                "--http-port", str(p["http"]), "--timeout", "20"]
        result = self.suite.maillab(*argv, "--json")
        report = json.loads(result.stdout)
        statuses = {(f["check"], f["subject"]): (f["status"], f["detail"]) for f in report["findings"]}
        self.assertEqual(result.returncode, 0, json.dumps(report, indent=1))
        self.assertEqual(statuses[("MX", "example.test")], ("ok", "10 mail.example.test."))
        self.assertEqual(statuses[("A/AAAA", "mail.example.test")], ("ok", "127.0.0.1"))
        self.assertEqual(statuses[("PTR", "127.0.0.1")], ("ok", "mail.example.test"))
        where = f"mail.example.test [127.0.0.1]:{p['smtp']}"
        self.assertEqual(statuses[("SMTP banner", where)][0], "ok")
        self.assertEqual(statuses[("certificate", where)][0], "ok")
        self.assertIn("names mail.example.test", statuses[("certificate", where)][1])
        self.assertEqual(statuses[("SRV", "_imaps._tcp.example.test")][0], "ok")
        self.assertIn("* OK", statuses[("SRV", "_imaps._tcp.example.test")][1])
        self.assertEqual(statuses[("SRV", "_submission._tcp.example.test")][0], "ok")
        self.assertEqual(statuses[("SRV", "_pop3._tcp.example.test")], ("ok", 'not offered (target ".", RFC 6186 3.4)'))
        self.assertEqual(statuses[("autoconfig", "autoconfig.example.test")], ("ok", f"http port {p['http']}: 2 server(s)"))
        self.assertIn("maillab doctor: asking MX example.test ...", result.stderr)
        text = self.suite.maillab(*argv)
        self.assertEqual(text.returncode, 0, text.stdout + text.stderr)
        self.assertRegex(text.stdout, r"(?m)^ok +MX +example\.test: 10 mail\.example\.test\.$")
        self.assertTrue(text.stdout.endswith("0 error(s), 0 warning(s)\n"), text.stdout)

    def test_doctorReportsWhatToFix(self):
        """
        A domain the server does not serve: every check fails, each with
        what to do, and the exit status is 1.
        """
        p = self.suite.ports
        result = self.suite.maillab("doctor", "elsewhere.test", "--nameserver", f"127.0.0.1:{p['dns']}",
                                    "--smtp-port", str(p["smtp"]), "--timeout", "5")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"(?m)^ERROR +MX +elsewhere\.test: ")
        self.assertRegex(result.stdout, r"(?m)^        fix: ")
        self.assertTrue(re.search(r"\d+ error\(s\)", result.stdout))
