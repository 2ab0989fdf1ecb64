"""
The SMTP server's log lines in Postfix's formats (smtpd and local(8)), so
that existing log tools read them: the client= and from= lines, SASL,
TLS, the local delivery lines, and one name for the client per session.
"""

from __future__ import annotations

import re
import smtplib

from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from tests.smtp_fixtures.fakes import AUTH_PLAIN, Harness
from tests.test_smtp import replies, send
from tests.test_smtp_e2e import Server, inThread, tlsContext
from twisted_maillab.smtp.delivery import formatDelay
from twisted_maillab.smtp.server import NAME_LOOKUP_TIMEOUT



def captureLines(testCase) -> list[str]:
    """
    The rendered lines the SMTP code logs from now on.
    """
    lines: list[str] = []

    def observer(event):
        if event.get("log_namespace", "").startswith("twisted_maillab.smtp"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    testCase.addCleanup(globalLogPublisher.removeObserver, observer)
    return lines


class LineTests(unittest.TestCase):
    def test_transaction(self):
        lines = captureLines(self)
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        queueId = proto.envelope.queueId
        h.clock.advance(0.12)
        send(proto, t, b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        proto.connectionLost(None)
        self.assertEqual(
            lines,
            [
                f"{queueId}: client=unknown[192.0.2.4]",
                f"{queueId}: from=<a@b.example>, size=18, nrcpt=1",
                f"{queueId}: to=<edouard@domaineel.rt>, orig_to=<edouard@domaineel.rt>, relay=local, "
                "delay=0.12, dsn=2.0.0, status=sent (delivered to maildir)",
                "smtp: disconnect from unknown[192.0.2.4] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
            ],
        )
        self.assertFalse([line for line in lines if "None" in line])

    def test_sizeParameterNeverLoggedAsNone(self):
        lines = captureLines(self)
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=120\r\nRSET\r\nMAIL FROM:<a@b.example>\r\n")
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertNotIn("size=", line)

    def test_saslLines(self):
        lines = captureLines(self)
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\n" + AUTH_PLAIN + b"MAIL FROM:<edouard@domaineel.rt>\r\n")
        self.assertEqual(
            lines,
            [
                "smtp: unknown[127.0.0.1]: sasl_method=PLAIN, sasl_username=edouard",
                f"{proto.envelope.queueId}: client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=edouard",
            ],
        )

    def test_tlsLine(self):
        lines = captureLines(self)
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\nSTARTTLS\r\n")
        proto.handshakeCompleted()
        self.assertEqual(
            lines,
            [
                "smtp: Anonymous TLS connection established from unknown[192.0.2.4]: "
                "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
            ],
        )

    def test_failedDeliveryLine(self):
        from twisted_maillab.store.errors import QuotaExceeded

        lines = captureLines(self)
        h = Harness()
        h.store.commitError = QuotaExceeded("quota exceeded")
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard+x@domaineel.rt>\r\nDATA\r\n")
        send(proto, t, b"hi\r\n.\r\n")
        [line] = [line for line in lines if ": to=<" in line]
        self.assertRegex(
            line,
            r"^[0-9A-F]+: to=<edouard\+x@domaineel\.rt>, orig_to=<edouard\+x@domaineel\.rt>, relay=local, "
            r"delay=0\.00, dsn=4\.2\.2, status=deferred \(.*quota.*\)$",
        )

    def test_rejectedMessageLines(self):
        lines = captureLines(self)
        h = Harness(sizeLimit=100)
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        first = proto.envelope.queueId
        send(proto, t, b"x" * 98 + b"\r\n" + b"y\r\n.\r\n")
        send(proto, t, AUTH_PLAIN + b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<admin@domaineel.rt>\r\nDATA\r\n")
        second = proto.envelope.queueId
        send(proto, t, b"From: admin@domaineel.rt\r\n\r\n.\r\n")
        self.assertEqual(
            [line for line in lines if "reject:" in line],
            [
                f"{first}: reject: END-OF-MESSAGE from unknown[127.0.0.1]: 552 5.3.4 Error: message file too big; "
                "from=<a@b.example> to=<edouard@domaineel.rt> proto=ESMTP helo=<c>",
                f"{second}: reject: END-OF-MESSAGE from unknown[127.0.0.1]: 553 5.7.1 From: header rejected: "
                "not owned by user edouard; from=<edouard@domaineel.rt> to=<admin@domaineel.rt> proto=ESMTPA helo=<c>",
            ],
        )

    def test_formatDelay(self):
        self.assertEqual(
            [formatDelay(d) for d in (0.0, 0.123, 1.26, 9.94, 12.4, 3600.2, -1)],
            ["0.00", "0.12", "1.3", "9.9", "12", "3600", "0.00"],
        )


class OneNameTests(unittest.TestCase):
    """
    The reverse lookup is settled before the greeting, so a late answer
    never renames the client halfway through the session.
    """

    def connect(self):
        lookups = []

        def resolveName(host):
            d = defer.Deferred()
            lookups.append((host, d))
            return d

        h = Harness()
        h.factory.resolveName = resolveName
        proto, t = h.connect("192.0.2.2")
        return h, proto, t, lookups

    SESSION = b"EHLO mx.remote.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@domaineel.rt>\r\nQUIT\r\n"

    def test_nameSettledBeforeGreeting(self):
        lines = captureLines(self)
        h, proto, t, [(host, d)] = self.connect()
        self.assertEqual(host, "192.0.2.2")
        # Nothing is answered, pipelined commands wait, until the name is known.
        proto.dataReceived(self.SESSION)
        self.assertEqual(t.value(), b"")
        d.callback("mx.remote.test")
        got = replies(t)
        self.assertEqual(got[0], "220 smtp.domaineel.rt ESMTP maillab")
        self.assertEqual(got[-1], "221 2.0.0 Bye")
        proto.connectionLost(None)
        clients = {m for line in lines for m in re.findall(r"[\w.-]+\[192\.0\.2\.2\]", line)}
        self.assertEqual(clients, {"mx.remote.test[192.0.2.2]"})
        self.assertEqual(len(lines), 3)  # client=, NOQUEUE: reject: RCPT, disconnect

    def test_lateAnswerIgnored(self):
        lines = captureLines(self)
        h, proto, t, [(host, d)] = self.connect()
        h.clock.advance(NAME_LOOKUP_TIMEOUT)
        self.assertEqual(replies(t), ["220 smtp.domaineel.rt ESMTP maillab"])
        send(proto, t, self.SESSION[:-6])
        d.callback("mx.remote.test")  # too late: the session is "unknown"
        send(proto, t, b"QUIT\r\n")
        proto.connectionLost(None)
        clients = {m for line in lines for m in re.findall(r"[\w.-]+\[192\.0\.2\.2\]", line)}
        self.assertEqual(clients, {"unknown[192.0.2.2]"})

    def test_failedLookupIsUnknown(self):
        h, proto, t, [(host, d)] = self.connect()
        d.errback(OSError("no PTR"))
        self.assertEqual(replies(t), ["220 smtp.domaineel.rt ESMTP maillab"])
        self.assertEqual(proto.session.describe(), "unknown[192.0.2.2]")


class ClientTests(unittest.TestCase):
    """
    smtplib with STARTTLS and AUTH into the real service: every line of
    the session, the TLS line with the real protocol and cipher.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_submissionSessionLog(self):
        server = Server(self)
        lines = captureLines(self)

        def client():
            with smtplib.SMTP("127.0.0.1", server.submissionPort) as s:
                s.starttls(context=tlsContext())
                s.login("edouard", "secret")
                return s.sendmail("edouard@domaineel.rt", ["root@domaineel.rt"], b"Subject: log\r\n\r\nhi\r\n")

        self.assertEqual((yield inThread(client)), {})
        # The disconnect line follows the client's QUIT.
        for _ in range(500):
            if any("disconnect from" in line for line in lines):
                break
            yield _sleep(0.02)
        text = "\n".join(lines)
        client = re.search(r"from (\S+\[127\.0\.0\.1\])", text).group(1)
        self.assertEqual(set(re.findall(r"[\w.-]+\[127\.0\.0\.1\]", text)), {client})
        self.assertRegex(
            text,
            rf"submission: Anonymous TLS connection established from {re.escape(client)}: "
            r"TLSv1\.[23] with cipher \S+ \((\d+)/\1 bits\)",
        )
        self.assertIn(f"submission: {client}: sasl_method=PLAIN, sasl_username=edouard", lines)
        [queueId] = re.findall(r"(\S+): client=" + re.escape(client) + ", sasl_method=PLAIN, sasl_username=edouard$", text, re.M)
        self.assertRegex(text, rf"(?m)^{queueId}: from=<edouard@domaineel\.rt>, size=\d+, nrcpt=1$")
        # root is an alias of edouard: to= is the mailbox, orig_to the RCPT.
        self.assertRegex(
            text,
            rf"(?m)^{queueId}: to=<edouard@smtp\.domaineel\.rt>, orig_to=<root@domaineel\.rt>, relay=local, "
            r"delay=\d+(\.\d+)?, dsn=2\.0\.0, status=sent \(delivered to maildir\)$",
        )
        self.assertRegex(
            text, rf"(?m)^submission: disconnect from {re.escape(client)} ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8$"
        )
        self.assertNotIn("None", text)

    @defer.inlineCallbacks
    def test_implicitTLSLine(self):
        server = Server(self)
        lines = captureLines(self)

        def client():
            with smtplib.SMTP_SSL("127.0.0.1", server.submissionsPort, context=tlsContext()) as s:
                return s.noop()

        self.assertEqual((yield inThread(client)), (250, b"2.0.0 Ok"))
        [line] = [line for line in lines if "TLS connection established" in line]
        self.assertRegex(
            line,
            r"^submissions: Anonymous TLS connection established from [\w.-]+\[127\.0\.0\.1\]: "
            r"TLSv1\.[23] with cipher \S+ \((\d+)/\1 bits\)$",
        )


def _sleep(seconds):
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)
