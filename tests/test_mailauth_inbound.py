"""
The MX's checks inside a running maillab (the real builder, store and
SMTP server on loopback; smtplib as the client), with the DNS of the
checks answered by a table: the held message, Authentication-Results,
the removal of a client's field that claims our name, Junk delivery,
refusal, a DNS failure, and a message past verify_size_limit in bounded
memory.
"""

from __future__ import annotations

import os
import smtplib
import sys
import textwrap
import tracemalloc

from twisted.internet import defer, threads, utils
from twisted.trial import unittest

from tests.test_mailauth import FakeLookup
from tests.test_smtp_e2e import Server

FORGED = (
    b"From: Boss <boss@example.org>\r\n"
    b"To: edouard@domaineel.rt\r\n"
    b"Subject: urgent\r\n"
    b"Authentication-Results: smtp.domaineel.rt; dmarc=pass header.from=example.org\r\n"
    b"Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=boss@example.org\r\n"
    b"\r\n"
    b"Wire the money.\r\n"
)


class InboundTests(unittest.TestCase):
    timeout = 120

    def start(self, mailauth: str = "") -> Server:
        server = Server(self, smtpExtra="message_size_limit = 50M\n", mailauth=mailauth)
        self.lookup = FakeLookup({
            ("example.org", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 -all"'],
            ("_dmarc.example.org", "TXT"): ['"v=DMARC1; p=reject"'],
            ("lax.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
            ("_dmarc.lax.example", "TXT"): ['"v=DMARC1; p=quarantine"'],
        })
        server.resources.shared("smtp").delivery.inbound.lookup = self.lookup
        return server

    def send(self, server, sender, message, helo="client.example"):
        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo(helo)
                s.mail(sender)
                s.rcpt("edouard@domaineel.rt")
                return s.data(message)

        return threads.deferToThread(client)

    @defer.inlineCallbacks
    def test_rejectAtEndOfData(self):
        """
        DMARC p=reject, SPF not passing, no signature: 550 5.7.1 after the
        dot, nothing delivered.
        """
        server = self.start()
        reply = yield self.send(server, "boss@example.org", FORGED)
        self.assertEqual(reply, (550, b"5.7.1 Message rejected: DMARC policy of example.org (reject) not met"))
        self.assertEqual(server.messages("edouard"), [])

    @defer.inlineCallbacks
    def test_recordOnlyStripsForgedResults(self):
        """
        dmarc_reject_action = record: delivered to INBOX with our field;
        the client's field claiming our name is gone, another host's kept.
        """
        server = self.start("dmarc_reject_action = record\n")
        reply = yield self.send(server, "boss@example.org", FORGED)
        self.assertEqual(reply[0], 250, reply)
        [message] = server.messages("edouard")
        header = message.partition(b"\n\n")[0]
        self.assertEqual(header.count(b"Authentication-Results: smtp.domaineel.rt;"), 1)
        self.assertIn(b"\tdmarc=fail (p=REJECT dis=REJECT) header.from=example.org", header)
        self.assertNotIn(b"dmarc=pass", header)
        self.assertIn(b"Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=boss@example.org", header)
        # Our field sits with the delivery headers, above Received.
        lines = header.split(b"\n")
        self.assertEqual([line.split(b":")[0] for line in lines[:4]],
                         [b"Return-Path", b"X-Original-To", b"Delivered-To", b"Authentication-Results"])
        self.assertTrue(message.endswith(b"\n\nWire the money.\n"))

    @defer.inlineCallbacks
    def test_quarantineToJunk(self):
        server = self.start()
        message = FORGED.replace(b"boss@example.org", b"news@lax.example")
        # SPF passes for lax.example (127.0.0.1) but the From: domain is
        # not aligned with the MAIL FROM domain: DMARC fails.
        reply = yield self.send(server, "bounces@elsewhere.example", message)
        self.assertEqual(reply[0], 250, reply)
        self.assertEqual(server.messages("edouard"), [])
        [junk] = [p.read_bytes() for p in (server.maildir("edouard") / ".Junk" / "new").iterdir()]
        self.assertIn(b"dmarc=fail (p=QUARANTINE dis=QUARANTINE) header.from=lax.example", junk)

    @defer.inlineCallbacks
    def test_dnsFailureDelivers(self):
        """
        Every lookup fails: temperror everywhere, the message is delivered.
        """
        server = self.start()
        self.lookup.failing.update({"example.org", "_dmarc.example.org"})
        reply = yield self.send(server, "boss@example.org", FORGED)
        self.assertEqual(reply[0], 250, reply)
        [message] = server.messages("edouard")
        self.assertIn(b"spf=temperror smtp.mailfrom=boss@example.org", message)
        self.assertIn(b"dmarc=temperror", message)

    @defer.inlineCallbacks
    def test_brokenCheckStillDelivers(self):
        """
        The checks raising (a library's bug) cost the checks, never the
        message: delivered with temperrors, the failure logged.
        """
        server = self.start()

        def broken(*args, **kwargs):
            raise RuntimeError("a library bug")

        server.resources.shared("smtp").delivery.inbound.check = broken
        reply = yield self.send(server, "boss@example.org", FORGED)
        self.assertEqual(reply[0], 250, reply)
        [message] = server.messages("edouard")
        self.assertIn(b"spf=temperror smtp.mailfrom=boss@example.org;\n\tdkim=temperror;\n\tdmarc=temperror\n", message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_largeMessageBoundedMemory(self):
        """
        A 30 MiB signed message past verify_size_limit: held in a file,
        its signature reported as policy, delivered whole, the server's
        allocations below the message size.
        """
        server = self.start("verify_size_limit = 1M\n")
        size = 30 * 1024 * 1024
        script = textwrap.dedent(
            f"""\
            import smtplib
            line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\\r\\n"
            head = b"DKIM-Signature: v=1; a=rsa-sha256; d=lax.example; s=s1; h=from; bh=AAAA; b=QUJDREVGR0hJSktM\\r\\n"
            body = head + b"From: news@lax.example\\r\\nSubject: big\\r\\n\\r\\n" + line * ({size} // len(line))
            with smtplib.SMTP("127.0.0.1", {server.smtpPort}) as s:
                s.ehlo()
                s.mail("news@lax.example", ["SIZE=%d" % len(body)])
                s.rcpt("edouard@domaineel.rt")
                print(s.data(body))
            """
        )
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, ["-c", script], env=os.environ)
        peak = tracemalloc.get_traced_memory()[1] - before
        self.assertEqual(code, 0, err)
        self.assertIn(b"Ok: queued as", out)
        [path] = list((server.maildir("edouard") / "new").iterdir())
        header, _, text = path.read_bytes().partition(b"\n\n")
        self.assertIn(b"dkim=policy header.d=lax.example header.s=s1 header.a=rsa-sha256 header.b=QUJDREVG", header)
        self.assertIn(b"spf=pass smtp.mailfrom=news@lax.example", header)
        self.assertEqual(len(text), (size // 78) * 77)
        self.assertLess(peak, 24 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte message")
