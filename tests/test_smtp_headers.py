"""
Date:, Message-ID: and From: added to submitted mail that lacks them
(submission_add_missing_headers), never to mail reaching the MX from
outside: the streaming header reader, who gets the fields, and the real
service with smtplib (Maildir sizes, the outbound spool).
"""

from __future__ import annotations

import json
import re
import smtplib

from twisted.internet import defer
from twisted.trial import unittest

from tests.smtp_fixtures.fakes import AUTH_PLAIN, Harness, ImplicitTLSTransport
from tests.test_smtp import send
from tests.test_smtp_e2e import Server, inThread, tlsContext
from twisted_maillab.config import loadString
from twisted_maillab.smtp.headers import MissingHeaders, rfc5322Date

WHEN = 1_700_000_000.0
ADDED = (
    b"Date: " + rfc5322Date(WHEN).encode() + b"\n"
    b"Message-ID: <QID.20231114221320@smtp.example>\n"
    b"From: edouard@domaineel.rt\n"
)


def fix(chunks, limit=1000, sender="edouard@domaineel.rt"):
    headers = MissingHeaders(limit, "QID", "smtp.example", sender, WHEN)
    out = [headers.feed(chunk) for chunk in chunks]
    return b"".join(out) + headers.finish(), out, headers


class MissingHeadersTests(unittest.TestCase):
    def test_addedAtTheEndOfTheHeader(self):
        got, _, headers = fix([b"Subject: x\nTo: a@b\n\nbody\n"])
        self.assertEqual(got, b"Subject: x\nTo: a@b\n" + ADDED + b"\nbody\n")
        self.assertEqual(headers.added, ["date", "message-id", "from"])

    def test_presentFieldsKept(self):
        text = (
            b"FROM: Edouard\n <edouard@domaineel.rt>\nmessage-id: <a@b>\nDate : Tue, 1 Dec 2026 10:00:00 +0100\n"
            b"\nDate: not a header\n"
        )
        got, _, headers = fix([text])
        self.assertEqual(got, text)
        self.assertEqual(headers.added, [])
        got, _, _ = fix([b"Subject: x\n\tfolded Date: no\nFrom: a@b\n\nx\n"])
        self.assertIn(b"\nDate: ", got)
        self.assertNotIn(b"\nFrom: edouard", got)

    def test_bodyWithoutHeader(self):
        # The body's first line is no field: the fields and an empty line
        # go before it.
        self.assertEqual(fix([b"hello world\n"])[0], ADDED + b"\nhello world\n")
        self.assertEqual(fix([b"\nhello\n"])[0], ADDED + b"\nhello\n")
        # Only a header, or nothing at all.
        self.assertEqual(fix([b"Subject: x\n"])[0], b"Subject: x\n" + ADDED)
        self.assertEqual(fix([])[0], ADDED)

    def test_nullSender(self):
        got, _, _ = fix([b"Subject: x\n\n"], sender="")
        self.assertIn(b"\nFrom: MAILER-DAEMON@smtp.example\n", got)

    def test_onlyTheHeaderIsHeld(self):
        text = b"Subject: x\nTo: a@b\n\n" + b"line\n" * 1000
        whole, _, _ = fix([text])
        pieces, out, _ = fix([text[i : i + 7] for i in range(0, len(text), 7)])
        self.assertEqual(pieces, whole)
        # Once the empty line is seen, every chunk passes straight on.
        first = next(i for i, chunk in enumerate(out) if chunk)
        self.assertEqual(first, len(b"Subject: x\nTo: a@b\n\n") // 7)
        self.assertTrue(all(out[first + 1 :]))

    def test_longHeaderPassedAsItIs(self):
        text = b"".join(b"X-Long-%d: %s\n" % (i, b"v" * 60) for i in range(40)) + b"\nbody\n"
        got, out, headers = fix([text[:1500], text[1500:]])
        self.assertEqual(got, text)
        self.assertEqual(out[0], text[:1500])
        self.assertEqual(headers.added, [])


class WhoGetsFieldsTests(unittest.TestCase):
    """
    Submitted mail (logged in, mynetworks, the submission listeners) is
    completed; mail reaching the MX from outside is stored as sent.
    """

    TEXT = b"Subject: x\r\n\r\nhello\r\n.\r\n"

    def deliver(self, host="192.0.2.4", login=False, transport=None, sender=b"edouard@domaineel.rt", **kw):
        h = Harness(**kw)
        proto, t = h.connect(host, **({"transport": transport} if transport else {}))
        send(proto, t, b"EHLO c\r\n")
        if login:
            if transport is None:
                send(proto, t, b"STARTTLS\r\n")
                send(proto, t, b"EHLO c\r\n")
            self.assertEqual(send(proto, t, AUTH_PLAIN), ["235 2.7.0 Authentication successful"])
        send(proto, t, b"MAIL FROM:<" + sender + b">\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n")
        queueId = proto.envelope.queueId
        got = send(proto, t, self.TEXT)
        self.assertEqual(got[-1], f"250 2.0.0 Ok: queued as {queueId}")
        body = h.store.committed[0].body
        return body[body.index(b"Subject: x") :], queueId

    def test_mxFromOutsideUntouched(self):
        self.assertEqual(self.deliver(sender=b"someone@example.org")[0], b"Subject: x\n\nhello\n")

    def test_submitted(self):
        stamp = "20231114221320"  # Harness clock: 1700000000
        date = rfc5322Date(1_700_000_000).encode()
        for kw in (
            {"host": "127.0.0.1"},  # mynetworks
            {"host": "::1"},
            {"login": True},  # port 25, logged in after STARTTLS
            {"login": True, "listener": "submission", "tlsRequired": True, "requireAuth": True},
            {"login": True, "listener": "submissions", "requireAuth": True, "tls": False,
             "transport": ImplicitTLSTransport},
        ):
            got, queueId = self.deliver(**kw)
            self.assertEqual(
                got,
                b"Subject: x\nDate: " + date + b"\nMessage-ID: <" + f"{queueId}.{stamp}".encode()
                + b"@smtp.domaineel.rt>\nFrom: edouard@domaineel.rt\n\nhello\n",
                kw,
            )

    def test_submissionListenerWithoutLogin(self):
        got, _ = self.deliver(listener="submission", sender=b"someone@example.org")
        self.assertIn(b"\nFrom: someone@example.org\n\nhello\n", got)

    def test_off(self):
        h = Harness()
        h.delivery.addMissingHeaders = False
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        self.assertEqual(send(proto, t, self.TEXT)[0][:9], "250 2.0.0")
        self.assertTrue(h.store.committed[0].body.endswith(b"\nSubject: x\n\nhello\n"))
        self.assertTrue(loadString("[smtp]\n").smtp.submission_add_missing_headers)
        self.assertFalse(
            loadString("[smtp]\nsubmission_add_missing_headers = no\n").smtp.submission_add_missing_headers
        )

    def test_streamsAndSizeLimitCountsClientText(self):
        # The body reaches the store before the final dot, and a message
        # of exactly message_size_limit octets is accepted although the
        # added fields make the stored copy larger.
        h = Harness(sizeLimit=2000)
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        head = b"Subject: s\r\n\r\n"
        send(proto, t, head[:-2])
        [txn] = h.store.transactions
        # The header is held back until its end is seen...
        self.assertNotIn(b"Subject: s", txn.body)
        send(proto, t, head[-2:])
        line = b"x" * 98 + b"\r\n"
        body = line * ((2000 - len(head)) // len(line))
        body += b"y" * (2000 - len(head) - len(body) - 2) + b"\r\n"
        self.assertEqual(len(head + body), 2000)
        self.assertTrue(txn.body.endswith(b"\nSubject: s\nDate: " + rfc5322Date(1_700_000_000).encode()
                                          + b"\nMessage-ID: <" + proto.envelope.queueId.encode()
                                          + b".20231114221320@smtp.domaineel.rt>\nFrom: a@b.example\n\n"))
        # ...then the body streams on.
        send(proto, t, body[:500])
        self.assertTrue(txn.body.endswith(b"\nFrom: a@b.example\n\n" + body[:500].replace(b"\r\n", b"\n")))
        got = send(proto, t, body[500:] + b".\r\n")
        self.assertEqual(got[0][:9], "250 2.0.0")
        self.assertEqual(proto.factory.settings.sizeLimit, 2000)
        self.assertIn(b"\nMessage-ID: <", txn.body)
        send(proto, t, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        self.assertEqual(send(proto, t, head + body + b"z\r\n.\r\n"), ["552 5.3.4 Error: message file too big"])

    def test_fromCheckedBeforeAnythingAdded(self):
        # reject_from_login_mismatch still sees the client's own From:.
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\n" + AUTH_PLAIN)
        send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"From: admin@domaineel.rt\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(got, ["553 5.7.1 From: header rejected: not owned by user edouard"])
        self.assertEqual(h.store.committed, [])


class ClientTests(unittest.TestCase):
    """
    smtplib into the real service: the Maildir copy, its ,S= size, the
    outbound spool copy, and MX mail from outside left alone.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_submissionCompletedEverywhere(self):
        server = Server(self)
        queue = server.resources.shared("smtp").outbound
        scheduled = []
        queue.schedule = lambda queueId, delay: scheduled.append(queueId)

        def client():
            with smtplib.SMTP_SSL("127.0.0.1", server.submissionsPort, context=tlsContext()) as s:
                s.login("edouard", "secret")
                return s.sendmail(
                    "edouard@domaineel.rt",
                    ["utilisateur@domaineel.rt", "friend@remote.test"],
                    b"Subject: no date\r\n\r\nhello\r\n",
                )

        self.assertEqual((yield inThread(client)), {})
        [queueId] = scheduled
        [path] = list((server.maildir("utilisateur") / "new").iterdir())
        stored = path.read_bytes()
        self.assertEqual(int(re.search(r",S=(\d+)", path.name).group(1)), len(stored))
        self.assertRegex(
            stored.decode(),
            r"\nSubject: no date\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n"
            rf"Message-ID: <{queueId}\.\d{{14}}@smtp\.domaineel\.rt>\nFrom: edouard@domaineel\.rt\n\nhello\n$",
        )
        spooled = (queue.directory / f"{queueId}.eml").read_bytes()
        self.assertEqual(spooled.split(b"\nSubject: ", 1)[1], stored.split(b"\nSubject: ", 1)[1])
        # The queue's size (its SIZE= to the next hop, RFC 1870) and line
        # count include the added fields.
        state = json.loads((queue.directory / f"{queueId}.json").read_bytes())
        self.assertEqual((state["size"], state["lines"]), (len(spooled), spooled.count(b"\n")))

    @defer.inlineCallbacks
    def test_mxFromOutsideUntouched(self):
        # Loopback is not in mynetworks here: port 25 without a login is
        # mail from the outside.
        server = Server(self, mynetworks="192.0.2.0/24")

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail("someone@example.org", ["edouard@domaineel.rt"], b"Subject: mx\r\n\r\nhello\r\n")

        self.assertEqual((yield inThread(client)), {})
        [stored] = server.messages("edouard")
        self.assertTrue(stored.endswith(b"\n\tfor <edouard@domaineel.rt>; " + stored.split(b"; ", 1)[1].split(b"\n")[0]
                                        + b"\nSubject: mx\n\nhello\n"))
        self.assertNotIn(b"Message-ID:", stored)
