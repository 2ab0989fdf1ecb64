"""
The programs in examples/ run as an administrator would run them, each
driven by a real client over loopback: the embedding application (poplib
and its own status listener), the twisted.names server (dig, apt package
bind9-dnsutils), stock Twisted POP3 over our store (poplib).  The plugin
package examples/lmtp_plugin is run by tests/test_plugins.
"""

from __future__ import annotations

import poplib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial import unittest

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import load
from twisted_maillab.dns.answer import Zones
from twisted_maillab.dns.server import DNSServer
from twisted_maillab.dns.service import FileZoneSource
from twisted_maillab.pop3.maildrop import StoreMaildrop
from twisted_maillab.store import Store

from tests.support import deliverOutOfProcess, freePort, readUntil, requireTool, sha512crypt, stopProcess, syncResult

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ZONE = REPO / "etc" / "zones" / "domaineel.rt.zone"
MESSAGES = [b"Subject: one\n\nbody one\n", b"Subject: two\n\nbody two\n"]


class Site:
    """
    An ini file with one passwd-file account (edouard, password "pw"), its
    home, and two messages in its INBOX.
    """

    def __init__(self, testCase, sections: str = ""):
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        home = self.root / "home" / "edouard"
        home.mkdir(parents=True)
        (self.root / "users").write_text(f"edouard:{{SHA512-CRYPT}}{sha512crypt('pw')}::::{home}\n")
        self.ini = self.root / "maillab.ini"
        self.ini.write_text(
            "[server]\nhostname = mail.domaineel.rt\ndomain = domaineel.rt\nstate_directory = var\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n" + sections
        )
        self.config = load(self.ini)
        portal = makePortal(self.config, Clock(), runner=runSynchronously)
        self.account = syncResult(portal.directory.lookup("edouard"))
        deliverOutOfProcess(self.account, MESSAGES)
        self.maildir = Path(self.account.maildir)

    def run(self, testCase, argv, pattern) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        testCase.addCleanup(stopProcess, process)
        readUntil(process, [pattern])
        return process

    def uidls(self) -> list[bytes]:
        from twisted.internet import defer, reactor

        store = Store(reactor, runner=lambda f, *a, **kw: defer.execute(f, *a, **kw), rescanInterval=0, inotify=False)
        drop = StoreMaildrop(store, self.account)
        try:
            return [info.uidl for info in syncResult(drop.open())]
        finally:
            drop.logout()
            store.close()

    def files(self) -> int:
        return sum(1 for sub in ("new", "cur") for _ in (self.maildir / sub).iterdir())


def waitFor(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.05)


class EmbedTests(unittest.TestCase):
    def test_applicationEmbedsTheSuite(self):
        pop3Port, dnsPort, statusPort = freePort(), freePort(), freePort()
        site = Site(
            self,
            f"[pop3]\nenabled = yes\nlisten = tcp:{pop3Port}:interface=127.0.0.1\n"
            f"[dns]\nenabled = yes\nlisten = tcp:{dnsPort}:interface=127.0.0.1\nzones = domaineel.rt:{ZONE}\n",
        )
        process = site.run(
            self,
            [str(EXAMPLES / "embed.py"), "--config", str(site.ini), "--status", f"tcp:{statusPort}:interface=127.0.0.1"],
            r"application started",
        )
        with socket.create_connection(("127.0.0.1", statusPort), timeout=30) as status:
            line = status.makefile("rb").readline()
        self.assertEqual(line, b"maillab running: dns pop3 sd_notify\r\n")
        client = poplib.POP3("127.0.0.1", pop3Port, timeout=30)
        client.user("edouard")
        client.pass_("pw")
        self.assertEqual(client.stat()[0], 2)
        client.quit()
        dig = requireTool("dig", "bind9-dnsutils")
        answer = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(dnsPort), "+tcp", "+short", "MX", "domaineel.rt"],
            capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(answer.stdout.strip(), "10 smtp.domaineel.rt.")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)


class NamesServerTests(unittest.TestCase):
    def test_digAgainstTheTwistedNamesServer(self):
        dig = requireTool("dig", "bind9-dnsutils")
        port = freePort()
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "names_server.py"), "--port", str(port), f"domaineel.rt:{ZONE}"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.addCleanup(stopProcess, process)
        readUntil(process, [r"twisted\.names serving"])
        ours = DNSServer(Zones(FileZoneSource([("domaineel.rt", str(ZONE))]).load()), clock=Clock())
        for name, qtype in [("domaineel.rt", "MX"), ("smtp.domaineel.rt", "A"), ("domaineel.rt", "NS"), ("domaineel.rt", "SOA")]:
            got = subprocess.run(
                [dig, "@127.0.0.1", "-p", str(port), "+norec", "+noall", "+answer", qtype, name],
                capture_output=True, text=True, timeout=30,
            ).stdout
            query = dns.Message(id=1)
            query.queries = [dns.Query(name, getattr(dns, qtype))]
            (data,) = ours.respond(query.toStr(), "127.0.0.1", udp=True)
            expected = dns.Message()
            expected.fromStr(data)
            answers = [line.split() for line in got.splitlines() if line.strip()]
            self.assertEqual(len(answers), len(expected.answers), got)
            for fields, record in zip(answers, expected.answers):
                self.assertEqual(fields[0].rstrip(".").lower(), record.name.name.decode().lower())
                self.assertEqual((int(fields[1]), fields[3]), (record.ttl, dns.QUERY_TYPES[record.type]))
        flags = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(port), "+norec", "MX", "domaineel.rt"], capture_output=True, text=True, timeout=30
        ).stdout
        self.assertRegex(flags, r"flags: qr aa;")
        missing = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(port), "+norec", "A", "nx.domaineel.rt"], capture_output=True, text=True, timeout=30
        ).stdout
        self.assertIn("status: NXDOMAIN", missing)


class TwistedPOP3Tests(unittest.TestCase):
    def test_poplibAgainstStockTwistedPOP3(self):
        port = freePort()
        site = Site(self)
        uidls = site.uidls()
        site.run(
            self,
            [str(EXAMPLES / "twisted_pop3.py"), "--config", str(site.ini), "--listen", f"tcp:{port}:interface=127.0.0.1"],
            r"twisted\.mail\.pop3 listening on 127\.0\.0\.1:\d+",
        )
        client = poplib.POP3("127.0.0.1", port, timeout=30)
        client.user("edouard")
        self.assertTrue(client.pass_("pw").startswith(b"+OK"))
        listing = client.list()[1]
        self.assertEqual([int(line.split()[1]) for line in listing], [len(m.replace(b"\n", b"\r\n")) for m in MESSAGES])
        self.assertEqual(client.uidl()[1], [b"%d %s" % (n, u) for n, u in enumerate(uidls, 1)])
        self.assertEqual(client.retr(2)[1], [b"Subject: two", b"", b"body two"])
        client.dele(1)
        self.assertEqual(site.files(), 2)  # DELE deletes nothing before QUIT
        client.quit()
        waitFor(lambda: site.files() == 1)
        self.assertEqual(site.uidls(), uidls[1:])
