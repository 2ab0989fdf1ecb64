"""
Mail authentication between two real maillab daemons (twistd) on
loopback: each is authoritative for its own domain on its own DNS port,
resolves through the other's DNS (C{[smtp] resolvers}) and relays to the
other's MX port (C{[smtp] relay_port}).  Mail submitted on the first
(smtplib, STARTTLS, AUTH) arrives at the second DKIM-signed with
C{spf=pass dkim=pass dmarc=pass}; forged mail (swaks from 127.0.0.2) gets
C{dmarc=fail} and the configured action; a key rotation keeps the older
signatures verifiable; dkimpy's own C{dkimverify} program, dig and
checkdmarc, all pointed at the first's DNS, agree with what is published
and signed.
"""

from __future__ import annotations

import email
import json
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from twisted.trial import unittest

from tests.support import freePort, readUntil, requireTool, stopProcess

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MAILLAB = str(BIN / "maillab")

ZONE = """\
$ORIGIN {domain}.
$TTL 300
@ IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300
@ IN NS ns.{domain}.
ns IN A 127.0.0.1
@ IN MX 10 mx.{domain}.
mx IN A 127.0.0.1
"""

# A domain of the first's DNS whose DMARC policy is p=reject.
STRICT = """\
$ORIGIN strict.test.
$TTL 300
@ IN SOA ns.first.test. hostmaster.first.test. 1 3600 600 86400 300
@ IN NS ns.first.test.
@ IN MX 10 mx.first.test.
@ IN TXT "v=spf1 mx -all"
_dmarc IN TXT "v=DMARC1; p=reject"
"""


class Instance:
    """
    One maillab daemon for C{domain}, with the user C{user} (password
    C{secret}).
    """

    def __init__(self, testCase, name: str, domain: str, user: str):
        self.testCase = testCase
        self.domain = domain
        self.user = user
        self.base = Path(testCase.mktemp()).resolve() / name
        self.base.mkdir(parents=True)
        self.home = self.base / "home" / user
        self.home.mkdir(parents=True)
        (self.base / "passwd").write_text(f"{user}:{{PLAIN}}secret::::{self.home}::\n")
        (self.base / "zones").mkdir()
        (self.base / "zones" / f"{domain}.zone").write_text(ZONE.format(domain=domain))
        self.dnsPort, self.smtpPort, self.submissionPort = freePort(), freePort(), freePort()
        # A UNIX socket path has at most 107 bytes: trial's is longer.
        self.sockets = tempfile.mkdtemp(prefix="ml-")
        testCase.addCleanup(shutil.rmtree, self.sockets, True)
        self.process = None

    def configure(self, other: "Instance", extraZones: str = "", mailauth: str = "") -> None:
        ini = textwrap.dedent(
            f"""\
            [server]
            hostname = mx.{self.domain}
            domain = {self.domain}
            state_directory = state
            local_submission_socket = {self.sockets}/submit.sock

            [tls]
            certificate = state/cert.pem
            private_key = state/key.pem
            generate_self_signed = yes

            [auth]
            checkers = passwd-file
            passwd_file = passwd

            [store]
            mail_location = maildir:~/Maildir
            fsync = no

            [dns]
            enabled = yes
            listen = tcp:{self.dnsPort}:interface=127.0.0.1
            zones = {self.domain}:zones/{self.domain}.zone {extraZones}
            publish_mail_records = yes

            [smtp]
            enabled = yes
            listen = tcp:{self.smtpPort}:interface=127.0.0.1
            myhostname = mx.{self.domain}
            mydestination = $myhostname, {self.domain}
            mynetworks = 127.0.0.1/32
            resolvers = 127.0.0.1:{other.dnsPort}
            relay_port = {other.smtpPort}
            minimal_backoff_time = 1s

            [submission]
            enabled = yes
            listen = tcp:{self.submissionPort}:interface=127.0.0.1

            [mailauth]
            """
        ) + textwrap.dedent(mailauth)
        self.ini = self.base / "maillab.ini"
        self.ini.write_text(ini)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [TWISTD, "-n", f"--pidfile={self.base / 'state' / 'maillab.pid'}", "maillab", "--config", str(self.ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )
        self.testCase.addCleanup(stopProcess, self.process)
        self.output = readUntil(self.process, [r"maillab ready"], timeout=120)

    def maillab(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([MAILLAB, *args, "--config", str(self.ini)], capture_output=True, text=True, timeout=120)

    def dig(self, name: str, rdtype: str = "TXT") -> list[str]:
        dig = requireTool("dig", "bind9-dnsutils")
        result = subprocess.run(
            [dig, "+short", "+norec", "-p", str(self.dnsPort), "@127.0.0.1", rdtype, name],
            capture_output=True, text=True, timeout=30,
        )
        return [line for line in result.stdout.splitlines() if line]

    def selectors(self) -> list[dict]:
        result = self.maillab("dkim", "show", "--json")
        self.testCase.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def waitForMail(self, folder: str, count: int, timeout: float = 60.0) -> list[bytes]:
        directory = self.home / "Maildir" / ("new" if folder == "INBOX" else f".{folder}/new")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = sorted(directory.glob("*")) if directory.is_dir() else []
            if len(files) >= count:
                return [f.read_bytes() for f in sorted(files, key=lambda f: f.stat().st_mtime_ns)]
            time.sleep(0.2)
        log = self.drain()
        raise AssertionError(f"{count} messages never arrived in {directory}; log:\n{log}")

    def drain(self) -> str:
        import os
        import select

        while self.process is not None and select.select([self.process.stdout], [], [], 0)[0]:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            self.output += chunk.decode("utf-8", "replace")
        return self.output


def unfolded(message: bytes, name: str) -> list[str]:
    parsed = email.message_from_bytes(message)
    return [re.sub(r"\s+", " ", str(v)) for v in parsed.get_all(name, [])]


class TwoDomainsTests(unittest.TestCase):
    timeout = 600

    def setUp(self):
        self.first = Instance(self, "first", "first.test", "alice")
        self.second = Instance(self, "second", "second.test", "bob")
        (self.first.base / "zones" / "strict.test.zone").write_text(STRICT)
        self.first.configure(self.second, extraZones="strict.test:zones/strict.test.zone")
        self.second.configure(self.first)
        self.first.start()
        self.second.start()

    def submit(self, subject: str) -> None:
        message = (
            f"From: Alice <alice@first.test>\r\nTo: bob@second.test\r\nSubject: {subject}\r\n\r\n"
            f"Hello Bob, this is {subject}.\r\n"
        ).encode()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.first.submissionPort, timeout=60) as client:
            client.starttls(context=context)
            client.login("alice", "secret")
            self.assertEqual(client.sendmail("alice@first.test", ["bob@second.test"], message), {})

    def dkimverify(self, message: bytes) -> subprocess.CompletedProcess:
        """
        dkimpy's dkimverify program (its main()), with dnspython's default
        resolver pointed at the first's DNS.
        """
        program = (
            "import sys, dns.resolver, dns.nameserver\n"
            "r = dns.resolver.Resolver(configure=False)\n"
            f"r.nameservers = [dns.nameserver.Do53Nameserver('127.0.0.1', {self.first.dnsPort})]\n"
            "dns.resolver.default_resolver = r\n"
            "from dkim.dkimverify import main\n"
            "sys.argv = ['dkimverify']\n"
            "main()\n"
        )
        return subprocess.run([sys.executable, "-c", program], input=message, capture_output=True, timeout=60)

    def swaks(self, sender: str, header: str = "") -> subprocess.CompletedProcess:
        swaks = requireTool("swaks", "swaks")
        command = [
            swaks, "--server", f"127.0.0.1:{self.second.smtpPort}", "--local-interface", "127.0.0.2",
            "--ehlo", "elsewhere.example", "--from", sender, "--to", "bob@second.test",
            "--h-From", f"<{sender}>", "--h-Subject", "forged", "--body", "Pay this invoice.",
        ]
        if header:
            command += ["--add-header", header]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def test_twoDomains(self):
        first, second = self.first, self.second
        # -- what the first publishes, through its own DNS ---------------
        rows = first.selectors()
        self.assertEqual(sorted((r["algorithm"], r["state"]) for r in rows),
                         [("ed25519-sha256", "signing"), ("rsa-sha256", "signing")])
        rsa = [r for r in rows if r["algorithm"] == "rsa-sha256"][0]
        [record] = first.dig(rsa["record"])
        # dig prints the character-strings: a 2048-bit key needs two.
        self.assertRegex(record, r'^"v=DKIM1; k=rsa; p=MIIB[A-Za-z0-9+/]+" "[A-Za-z0-9+/=]+"$')
        self.assertEqual(first.dig("first.test"), ['"v=spf1 mx -all"'])
        self.assertEqual(first.dig("_dmarc.first.test"), ['"v=DMARC1; p=quarantine; rua=mailto:postmaster@first.test"'])
        self.independentChecks()

        # -- a message submitted on the first arrives signed, all pass ---
        self.submit("message one")
        [one] = second.waitForMail("INBOX", 1)
        signatures = unfolded(one, "DKIM-Signature")
        self.assertEqual(len(signatures), 2)
        self.assertTrue(all(" d=first.test;" in s for s in signatures), signatures)
        [results] = unfolded(one, "Authentication-Results")
        self.assertTrue(results.startswith("mx.second.test;"), results)
        self.assertRegex(results, r"; spf=pass smtp\.mailfrom=alice@first\.test;")
        self.assertEqual(results.count("dkim=pass header.d=first.test"), 2, results)
        self.assertRegex(results, r"; dmarc=pass \(p=QUARANTINE dis=NONE\) header\.from=first\.test")
        verified = self.dkimverify(one)
        self.assertEqual((verified.returncode, verified.stdout.strip()), (0, b"signature ok"), verified.stderr)

        # -- forged from elsewhere: dmarc=fail, p=quarantine -> Junk -----
        forged = self.swaks("alice@first.test", header="Authentication-Results: mx.second.test; dmarc=pass")
        self.assertEqual(forged.returncode, 0, forged.stdout + forged.stderr)
        [junk] = second.waitForMail("Junk", 1)
        [results] = unfolded(junk, "Authentication-Results")
        self.assertRegex(results, r"^mx\.second\.test; spf=fail smtp\.mailfrom=alice@first\.test; dkim=none; "
                                  r"dmarc=fail \(p=QUARANTINE dis=QUARANTINE\) header\.from=first\.test$")
        self.assertIn(b"Pay this invoice.", junk)
        # p=reject: refused at the end of DATA (dmarc_reject_action = reject).
        strict = self.swaks("ceo@strict.test")
        self.assertNotEqual(strict.returncode, 0)
        self.assertRegex(strict.stdout, r"<\*\* +550 5\.7\.1 Message rejected: DMARC policy of strict\.test \(reject\) not met")
        self.assertEqual(len(second.waitForMail("INBOX", 1)), 1)

        # -- rotation: new selectors sign, old signatures still verify ---
        rotated = first.maillab("dkim", "rotate", "first.test")
        self.assertEqual(rotated.returncode, 0, rotated.stderr)
        states = sorted((r["selector"], r["state"]) for r in first.selectors())
        self.assertEqual([s for _, s in states].count("retired"), 2, states)
        newSelectors = {s for s, state in states if state == "signing"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(first.dig(f"{s}._domainkey.first.test") for s in newSelectors):
            time.sleep(0.2)
        for selector, _ in states:
            self.assertEqual(len(first.dig(f"{selector}._domainkey.first.test")), 1, selector)
        self.submit("message two")
        one, two = second.waitForMail("INBOX", 2)
        self.assertTrue(all(re.search(r" s=(\S+);", s).group(1) in newSelectors for s in unfolded(two, "DKIM-Signature")))
        [results] = unfolded(two, "Authentication-Results")
        self.assertEqual(results.count("dkim=pass"), 2, results)
        for message in (one, two):
            verified = self.dkimverify(message)
            self.assertEqual((verified.returncode, verified.stdout.strip()), (0, b"signature ok"), verified.stderr)

        # -- the sendmail injector's mail is signed too --------------------
        sent = subprocess.run(
            [MAILLAB, "sendmail", "-C", str(first.ini), "-f", "alice@first.test", "-i", "bob@second.test"],
            input=b"From: alice@first.test\nTo: bob@second.test\nSubject: from cron\n\nnightly job done\n",
            capture_output=True, timeout=120,
        )
        self.assertEqual(sent.returncode, 0, sent.stderr)
        one, two, three = second.waitForMail("INBOX", 3)
        self.assertIn(b"Subject: from cron", three)
        [results] = unfolded(three, "Authentication-Results")
        self.assertEqual(results.count("dkim=pass header.d=first.test"), 2, results)
        self.assertIn("dmarc=pass", results)

        # -- a bounce from the first is signed too -----------------------
        self.bounce()

    def independentChecks(self):
        """
        checkdmarc (its own SPF and DMARC parsers, over dnspython) reads
        the published records through the first's DNS and finds them valid.
        """
        import dns.nameserver
        from checkdmarc.dmarc import check_dmarc
        from checkdmarc.spf import check_spf

        nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", self.first.dnsPort)]
        spf = check_spf("first.test", nameservers=nameservers, timeout=5)
        self.assertTrue(spf["valid"], spf)
        self.assertEqual(spf["record"], "v=spf1 mx -all")
        dmarc = check_dmarc("first.test", nameservers=nameservers, timeout=5, ignore_unrelated_records=True)
        self.assertTrue(dmarc["valid"], dmarc)
        self.assertEqual(dmarc["tags"]["p"]["value"], "quarantine")

    def bounce(self):
        """
        Mail for a user the second does not have is refused there; the
        first's bounce to alice (MAILER-DAEMON@mx.first.test) is signed
        with d=first.test.
        """
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.first.submissionPort, timeout=60) as client:
            client.starttls(context=context)
            client.login("alice", "secret")
            client.sendmail("alice@first.test", ["nobody@second.test"], b"From: alice@first.test\r\nSubject: lost\r\n\r\nx\r\n")
        [report] = self.first.waitForMail("INBOX", 1)
        self.assertIn(b"From: MAILER-DAEMON@mx.first.test", report)
        signatures = unfolded(report, "DKIM-Signature")
        self.assertEqual(len(signatures), 2, report[:2000])
        self.assertTrue(all(" d=first.test;" in s for s in signatures))
