"""
The relay client against a scripted remote MX on 127.0.0.1: replies
chosen per command, the exact bytes received recorded, STARTTLS with a
real handshake or a broken one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from twisted.internet import defer, reactor, ssl, task
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from tests.test_smtp_outbound import FakeResolver, runner
from twisted_maillab.smtp import relayclient
from twisted_maillab.smtp.envelope import Mailbox, MailParams, RcptParams
from twisted_maillab.smtp.outbound import OutboundQueue
from twisted_maillab.smtp.server import Envelope, Recipient

_serverTLS = []


def serverTLS():
    """
    A TLS server context with a self-signed certificate (made once).
    """
    if not _serverTLS:
        key = ssl.KeyPair.generate(size=2048)
        _serverTLS.append(key.selfSignedCert(1, CN="mx.remote.test").options())
    return _serverTLS[0]


class ScriptedMX(Protocol):
    """
    One session of a remote MX.  C{factory.script} maps a verb (C{MAIL},
    C{RCPT}, C{DATA}, C{END} for the final dot) to its reply, or a list of
    replies taken one per session; a reply ending in C{"!close"} closes
    the connection after it.  C{factory.starttls}: C{None} (not offered),
    C{"tls"} (a real handshake) or C{"broken"} (non-TLS bytes answer the
    ClientHello).
    """

    def connectionMade(self):
        self.factory.sessions.append(self)
        self.index = len(self.factory.sessions) - 1
        self.commands = []
        self.messages = []
        self.buffer = b""
        self.mode = "command"
        self.tls = False
        self.send("220 mx.remote.test ESMTP scripted")

    def send(self, reply):
        close = reply.endswith("!close")
        self.transport.write(reply.removesuffix("!close").encode() + b"\r\n")
        if close:
            self.transport.loseConnection()

    def reply(self, verb, default):
        reply = self.factory.script.get(verb, default)
        if isinstance(reply, list):
            reply = reply[min(self.index, len(reply) - 1)]
        return reply

    def dataReceived(self, data):
        if self.mode == "broken":
            # The client's ClientHello, answered with something that is not
            # TLS (a broken middlebox or server).
            self.transport.write(b"421 this is not TLS\r\n" * 4)
            self.transport.loseConnection()
            return
        self.buffer += data
        while True:
            if self.mode == "data":
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.messages.append(self.buffer[: end + 5])
                self.buffer = self.buffer[end + 5 :]
                self.mode = "command"
                self.send(self.reply("END", "250 2.0.0 Ok: queued as R1"))
                continue
            if b"\r\n" not in self.buffer:
                return
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.commands.append(line)
            verb = re.split(rb"[ :]", line, maxsplit=1)[0].upper().decode()
            if verb == "EHLO":
                offer = self.factory.starttls is not None and not self.tls
                self.send("250-mx.remote.test\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-DSN\r\n"
                          + ("250-STARTTLS\r\n" if offer else "") + "250 ENHANCEDSTATUSCODES")
            elif verb == "STARTTLS":
                self.send("220 2.0.0 Ready to start TLS")
                if self.factory.starttls == "inject":
                    # Plaintext after the 220, as an attacker on the path
                    # could add it.
                    self.send("250 injected")
                if self.factory.starttls in ("tls", "inject"):
                    self.transport.startTLS(serverTLS())
                    self.tls = True
                else:
                    self.mode = "broken"
                    return
            elif verb == "DATA":
                reply = self.reply("DATA", "354 End data with <CR><LF>.<CR><LF>")
                self.send(reply)
                if reply.startswith("354"):
                    self.mode = "data"
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye!close")
                return
            else:
                self.send(self.reply(verb, "250 2.0.0 Ok"))


class RelayTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.mx = Factory.forProtocol(ScriptedMX)
        self.mx.sessions = []
        self.mx.script = {}
        self.mx.starttls = None
        self.port = reactor.listenTCP(0, self.mx, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.directory = Path(self.mktemp())
        self.bounces = []
        self.queue = OutboundQueue(
            self.directory,
            reactor=reactor,
            clock=self.clock,
            resolver=FakeResolver(
                {"remote.test": [(10, "mx.remote.test")], "two.test": [(10, "mx1.two.test"), (20, "mx2.two.test")]},
                {"mx.remote.test": ["127.0.0.1"], "mx1.two.test": ["127.0.0.1"], "mx2.two.test": ["127.0.0.1"]},
            ),
            hostname="smtp.domaineel.rt",
            runner=runner,
            port=self.port.getHost().port,
            connectTimeout=5,
            tlsContext=ssl.CertificateOptions(),
            localDelivery=lambda address, data: defer.succeed(self.bounces.append((address, data))),
            isLocal=lambda domain: domain == "domaineel.rt",
        )
        self.queue.start()
        self.addCleanup(self.queue.stop)
        self.logged = []
        observer = lambda event: self.logged.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    @defer.inlineCallbacks
    def relay(self, body=b"Subject: hi\n\nhello\n", recipients=("a@remote.test",), queueId="Q1"):
        """
        Spool a message and run one attempt, then the reports it queued.
        """
        envelope = Envelope(Mailbox("edouard", "domaineel.rt"), MailParams(), queueId)
        pairs = [(Recipient(Mailbox(*r.split("@")), RcptParams()), r) for r in recipients]
        writer = self.queue.writer(envelope, pairs)
        yield writer.write(body)
        yield writer.commit()
        self.queue.stop()
        yield self.queue.attempt(queueId)
        for name in sorted(os.listdir(self.directory)):
            if name.startswith("B") and name.endswith(".json"):
                self.queue.stop()
                yield self.queue.attempt(name[: -len(".json")])

    def state(self):
        path = self.directory / "Q1.json"
        return json.loads(path.read_text()) if path.exists() else None

    def lines(self, pattern):
        return [line for line in self.logged if re.search(pattern, line)]

    def received(self):
        return [message for session in self.mx.sessions for message in session.messages]

    # -- what goes on the wire ---------------------------------------------

    VARIANTS = (b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n")
    SMUGGLED = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@remote.test>\nDATA\rsmuggled\n"
    # Every line end CRLF, the lone dot stuffed: the second "envelope" is
    # body text, and the only end of data is ours.
    WIRE = (
        b"Subject: smuggle\r\n\r\nbefore\r\n..\r\n"
        b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@remote.test>\r\nDATA\r\nsmuggled\r\n.\r\n"
    )

    @defer.inlineCallbacks
    def checkWire(self):
        for n, variant in enumerate(self.VARIANTS):
            self.mx.sessions = []
            body = b"Subject: smuggle\n\nbefore" + variant + self.SMUGGLED
            yield self.relay(body, queueId=f"W{n}")
            [session] = self.mx.sessions
            self.assertEqual(session.messages, [self.WIRE], variant)
            # One transaction: after the end of data only QUIT.
            self.assertEqual(session.commands[-2:], [b"DATA", b"QUIT"], variant)
            [mail] = [c for c in session.commands if c.startswith(b"MAIL")]
            # RFC 1870 SIZE, never less than the CRLF text (without the
            # stuffed dot and the end of data).
            size = int(mail.rpartition(b"SIZE=")[2])
            self.assertGreaterEqual(size, len(self.WIRE) - len(b".") - len(b".\r\n"), variant)
            self.assertLessEqual(size, len(self.WIRE) + 2, variant)
            self.assertEqual(os.listdir(self.directory), [])

    def test_lineEndsOnTheWire(self):
        """
        Bare LF, bare CR and CRLF in a spooled message all reach the remote
        MX as CRLF, dot-stuffed: "<LF>.<LF>" and its variants never end the
        data early (SMTP smuggling).
        """
        return self.checkWire()

    def test_lineEndsOnTheWireAcrossChunks(self):
        """
        The same when every byte is read on its own, so a CR and its LF
        arrive in different chunks.
        """
        self.patch(relayclient, "READ_CHUNK", 1)
        return self.checkWire()

    def test_wireTextAtEverySplit(self):
        for variant in self.VARIANTS:
            body = b"Subject: smuggle\n\nbefore" + variant + self.SMUGGLED
            for cut in range(len(body) + 1):
                for cut2 in range(cut, min(cut + 3, len(body)) + 1):
                    text = relayclient.WireText()
                    out = text.feed(body[:cut]) + text.feed(body[cut:cut2]) + text.feed(body[cut2:]) + text.end()
                    self.assertEqual(out, self.WIRE, (variant, cut, cut2))

    # -- replies to MAIL and to the final dot ------------------------------

    @defer.inlineCallbacks
    def test_mail4xxDefersEveryRecipient(self):
        self.mx.script["MAIL"] = "451 4.3.0 try later"
        yield self.relay(recipients=("a@remote.test", "b@remote.test"))
        state = self.state()
        for r in state["recipients"]:
            self.assertEqual((r["status"], r["reply"], r["command"]), ("pending", "451 4.3.0 try later", "MAIL FROM"))
        self.assertEqual(self.received(), [])
        self.assertEqual(self.bounces, [])
        port = self.port.getHost().port
        self.assertEqual(
            self.lines(r"to=<a@remote.test>"),
            [
                f"Q1: to=<a@remote.test>, relay=mx.remote.test[127.0.0.1]:{port}, delay=0, delays=0/0/0/0, "
                "dsn=4.3.0, status=deferred (host mx.remote.test[127.0.0.1] said: 451 4.3.0 try later "
                "(in reply to MAIL FROM command))"
            ],
        )

    @defer.inlineCallbacks
    def test_endOfData4xxDefersEveryRecipient(self):
        self.mx.script["END"] = "452 4.3.1 Insufficient system storage"
        yield self.relay(recipients=("a@remote.test", "b@remote.test"))
        for r in self.state()["recipients"]:
            self.assertEqual((r["status"], r["command"]), ("pending", "end of DATA"))
            self.assertEqual(r["reply"], "452 4.3.1 Insufficient system storage")
        self.assertEqual(self.bounces, [])
        self.assertEqual(len(self.lines(r"dsn=4\.3\.1, status=deferred .*\(in reply to end of DATA command\)\)$")), 2)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), self.queue.minBackoff)

    @defer.inlineCallbacks
    def test_mail5xxBouncesEveryRecipientOnce(self):
        """
        A 5xx to MAIL FROM bounces every recipient of the session, even
        when the server then closes the connection: the next MX is not
        tried (it would deliver mail already bounced).
        """
        self.mx.script["MAIL"] = ["550 5.7.1 sender rejected!close", "250 2.0.0 Ok"]
        yield self.relay(recipients=("a@two.test", "b@two.test"))
        self.assertEqual(len(self.mx.sessions), 1)
        self.assertEqual(self.received(), [])
        [(address, report)] = self.bounces
        self.assertEqual(address, "edouard@domaineel.rt")
        self.assertIn(b"Final-Recipient: rfc822; a@two.test\nAction: failed\nStatus: 5.7.1", report)
        self.assertIn(b"Final-Recipient: rfc822; b@two.test\nAction: failed\nStatus: 5.7.1", report)
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.7.1 sender rejected", report)
        self.assertIsNone(self.state())
        self.assertEqual(len(self.lines(r"dsn=5\.7\.1, status=bounced \(host mx1\.two\.test\[127\.0\.0\.1\] said: 550 5\.7\.1 sender rejected \(in reply to MAIL FROM command\)\)")), 2)

    @defer.inlineCallbacks
    def test_endOfData5xxBouncesEveryRecipient(self):
        self.mx.script["END"] = "554 5.6.0 content rejected"
        yield self.relay(recipients=("a@remote.test", "b@remote.test"))
        [(address, report)] = self.bounces
        self.assertIn(b"Final-Recipient: rfc822; a@remote.test\nAction: failed\nStatus: 5.6.0", report)
        self.assertIn(b"Final-Recipient: rfc822; b@remote.test\nAction: failed\nStatus: 5.6.0", report)
        self.assertIsNone(self.state())

    # -- STARTTLS -----------------------------------------------------------

    @defer.inlineCallbacks
    def test_tlsHandshakeFailureRetriedInPlaintext(self):
        self.mx.starttls = "broken"
        yield self.relay()
        first, second = self.mx.sessions
        self.assertIn(b"STARTTLS", first.commands)
        self.assertNotIn(b"STARTTLS", second.commands)
        self.assertEqual(len(second.messages), 1)
        self.assertIsNone(self.state())
        [line] = self.lines("TLS handshake failed")
        self.assertRegex(line, r"^Q1: TLS handshake failed with mx\.remote\.test\[127\.0\.0\.1\]: .+; retrying in plaintext$")
        self.assertEqual(self.lines("TLS connection established"), [])

    @defer.inlineCallbacks
    def test_plaintextAfterStarttlsReplyDiscarded(self):
        """
        A reply that arrives in plaintext after "220 Ready to start TLS"
        is not taken for the answer to the EHLO sent over TLS.
        """
        self.mx.starttls = "inject"
        body = b"Subject: hi\n\nhello\n"
        yield self.relay(body)
        [session] = self.mx.sessions
        self.assertTrue(session.tls)
        # SIZE is used: the extensions are the real EHLO reply's.
        self.assertIn(b"MAIL FROM:<edouard@domaineel.rt> SIZE=%d" % (len(body) + 3), session.commands)
        self.assertEqual(len(session.messages), 1)
        self.assertIsNone(self.state())

    @defer.inlineCallbacks
    def test_tlsAndPostfixLogLines(self):
        self.mx.starttls = "tls"
        body = b"Subject: hi\n\nhello\n"
        yield self.relay(body)
        [session] = self.mx.sessions
        self.assertTrue(session.tls)
        self.assertEqual(len(session.messages), 1)
        port = self.port.getHost().port
        [tls] = self.lines("TLS connection established")
        self.assertRegex(
            tls,
            rf"^Untrusted TLS connection established to mx\.remote\.test\[127\.0\.0\.1\]:{port}: "
            r"TLSv1\.[23] with cipher \S+ \((\d+)/\1 bits\)$",
        )
        self.assertIn(f"Q1: from=<edouard@domaineel.rt>, size={len(body)}, nrcpt=1 (queue active)", self.logged)
        self.assertIn(
            f"Q1: to=<a@remote.test>, relay=mx.remote.test[127.0.0.1]:{port}, delay=0, delays=0/0/0/0, "
            "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as R1)",
            self.logged,
        )
        self.assertEqual(self.logged[-1], "Q1: removed")
