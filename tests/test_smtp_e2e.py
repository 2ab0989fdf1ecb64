"""
End-to-end SMTP tests: the real service (config -> builders -> real auth
portal with a passwd-file, real Maildir store with fsync) on loopback
sockets, driven by Python's smtplib, raw sockets and swaks.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import ssl
import stat
import sys
import textwrap
import tracemalloc
from pathlib import Path

from twisted.internet import defer, reactor, task, threads, utils
from twisted.trial import unittest

from twisted_maillab.config import loadString
from twisted.application.service import MultiService

from twisted_maillab.service import Resources, builderFor

PASSWD = "edouard:{PLAIN}secret::::::\nutilisateur:{PLAIN}motdepasse::::::\nadmin:{PLAIN}adminpw::::::\n"
ALIASES = textwrap.dedent(
    """\
    # the seed's /etc/aliases, plus a list
    postmaster:    root
    root: edouard
    equipe: edouard,
        utilisateur
    ext: friend@remote.test
    """
)


class Server:
    """
    A running maillab with [smtp] and [submission] on ephemeral loopback
    ports.
    """

    def __init__(self, testCase, smtpExtra: str = "", mynetworks="127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
                 restrictions="permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
                 aliases: str = "", mailauth: str = "inbound_checks = no\n"):
        base = Path(testCase.mktemp()).resolve()
        base.mkdir(parents=True)
        self.base = base
        (base / "passwd").write_text(PASSWD)
        (base / "aliases").write_text(ALIASES + aliases)
        ini = textwrap.dedent(
            f"""\
            [server]
            hostname = smtp.domaineel.rt
            domain = domaineel.rt
            state_directory = state

            [tls]
            certificate = state/cert.pem
            private_key = state/key.pem
            generate_self_signed = yes

            [auth]
            checkers = passwd-file
            passwd_file = passwd

            [store]
            mail_location = maildir:~/Maildir

            [smtp]
            enabled = yes
            listen = tcp:0:interface=127.0.0.1
                tcp6:0:interface=\\:\\:1
            myhostname = smtp.domaineel.rt
            mydestination = $myhostname, domaineel.rt., localhost.localdomain, localhost
            mynetworks = {mynetworks}
            smtpd_relay_restrictions = {restrictions}
            recipient_delimiter = +
            alias_maps = aliases
            """
        ) + textwrap.dedent(smtpExtra) + textwrap.dedent(
            """
            [mailauth]
            # By default no DNS queries for SPF, DKIM and DMARC: these
            # tests are about SMTP itself (tests/test_mailauth_inbound.py
            # gives its own [mailauth]).
            """
        ) + textwrap.dedent(mailauth) + textwrap.dedent(
            """
            [submission]
            enabled = yes
            listen = tcp:0:interface=127.0.0.1

            [submissions]
            enabled = yes
            listen = tcp:0:interface=127.0.0.1
            """
        )
        (base / "maillab.ini").write_text(ini)
        self.config = loadString(ini, base / "maillab.ini")
        # What makeService does, keeping the Resources so the store can be
        # closed after the test.
        (base / "state").mkdir(mode=0o700)
        # Home directories exist, as useradd -m makes them; the store
        # creates the Maildir inside (see the report: a missing home is a
        # permanent MailboxNotFound).
        for user in ("edouard", "utilisateur", "admin"):
            (base / "state" / "users" / "domaineel.rt" / user).mkdir(parents=True)
        self.resources = Resources(self.config, reactor)
        self.service = MultiService()
        for name in ("smtp", "submission", "submissions"):
            child = builderFor(self.config, name)(self.config, self.resources)
            child.setName(name)
            child.setServiceParent(self.service)
        for child in self.resources.processServices():
            child.setServiceParent(self.service)
        self.service.privilegedStartService()
        self.service.startService()
        testCase.addCleanup(self.stop)
        self.ports = {}
        for name in ("smtp", "submission", "submissions"):
            group = self.service.getServiceNamed(name)
            self.ports[name] = [child.port.getHost().port for child in group if hasattr(child, "port")]

    @defer.inlineCallbacks
    def stop(self):
        yield self.service.stopService()
        store = getattr(self.resources, "store", None)
        if store is not None:
            yield store.close()

    @property
    def smtpPort(self) -> int:
        return self.ports["smtp"][0]

    @property
    def smtp6Port(self) -> int:
        return self.ports["smtp"][1]

    @property
    def submissionPort(self) -> int:
        return self.ports["submission"][0]

    @property
    def submissionsPort(self) -> int:
        return self.ports["submissions"][0]

    def maildir(self, user: str) -> Path:
        return self.base / "state" / "users" / "domaineel.rt" / user / "Maildir"

    def messages(self, user: str) -> list[bytes]:
        new = self.maildir(user) / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]


def tlsContext():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def inThread(f, *args):
    return threads.deferToThread(f, *args)


def rawSession(port, chunks, host="127.0.0.1", expect=None):
    """
    Send raw chunks and read until C{expect} replies (lines without "-")
    arrived; returns the reply lines.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect((host, port))
        data = b""
        lines = []

        def read(n):
            nonlocal data
            while sum(1 for line in lines if line[3:4] == " ") < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                *complete, data = data.split(b"\r\n")
                lines.extend(line.decode() for line in complete)

        def finals():
            return sum(1 for line in lines if line[3:4] == " ")

        read(1)
        for chunk, waitFor in chunks:
            s.sendall(chunk)
            read(finals() + waitFor)
        return lines


class SMTPLibTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.server = Server(self)

    @defer.inlineCallbacks
    def test_seedSession(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort, local_hostname="antenn04.univ-lr.fr") as s:
                code, banner = s.ehlo()
                features = dict(s.esmtp_features)
                s.mail("admin@localhost", ["SIZE=349"])
                rcpt = s.rcpt("edouard@smtp.domaineel.rt", ["ORCPT=rfc822;edouard@smtp.domaineel.rt"])
                data = s.data(b"To: <edouard@smtp.domaineel.rt>\r\nSubject: t\r\nFrom: admin@localhost\r\n\r\nsdgfd\r\n")
                return features, rcpt, data

        features, rcpt, data = yield inThread(client)
        self.assertEqual(features["size"], "10240000")
        for keyword in ("pipelining", "vrfy", "etrn", "starttls", "enhancedstatuscodes", "8bitmime", "dsn", "smtputf8"):
            self.assertIn(keyword, features)
        self.assertEqual(rcpt, (250, b"2.1.5 Ok"))
        self.assertEqual(data[0], 250)
        self.assertTrue(data[1].startswith(b"2.0.0 Ok: queued as "), data)
        queueId = data[1].split()[-1].decode()
        [path] = list((server.maildir("edouard") / "new").iterdir())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        text = path.read_text()
        lines = text.split("\n")
        self.assertEqual(lines[:3], [
            "Return-Path: <admin@localhost>",
            "X-Original-To: edouard@smtp.domaineel.rt",
            "Delivered-To: edouard@smtp.domaineel.rt",
        ])
        self.assertRegex(lines[3], r"^Received: from antenn04\.univ-lr\.fr \((localhost|unknown) \[127\.0\.0\.1\]\)$")
        self.assertEqual(lines[4], f"\tby smtp.domaineel.rt (maillab) with ESMTP id {queueId}")
        self.assertTrue(lines[5].startswith("\tfor <edouard@smtp.domaineel.rt>; "))
        # From 127.0.0.1 (mynetworks): Date: and Message-ID: were missing
        # and are added at the end of the header (From: was there).
        self.assertRegex(
            text,
            r"\nFrom: admin@localhost\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n"
            rf"Message-ID: <{queueId}\.\d{{14}}@smtp\.domaineel\.rt>\n\nsdgfd\n$",
        )

    @defer.inlineCallbacks
    def test_startTLSAuthPlainAndLoginOnSubmission(self):
        server = self.server

        def client(mechanism, user, password, sender, to):
            with smtplib.SMTP("127.0.0.1", server.submissionPort) as s:
                s.ehlo("client.example")
                beforeTLS = s.mail(sender)
                s.rset()
                s.starttls(context=tlsContext())
                s.ehlo("client.example")
                auth = s.esmtp_features.get("auth")
                s.user, s.password = user, password
                result = s.auth(mechanism, getattr(s, "auth_" + mechanism.lower()))
                refused = s.sendmail(sender, [to], f"From: {sender}\r\nSubject: via {mechanism}\r\n\r\nhi\r\n")
                return beforeTLS, auth, result, refused

        before, auth, result, refused = yield inThread(
            client, "PLAIN", "edouard", "secret", "edouard@domaineel.rt", "utilisateur@domaineel.rt"
        )
        self.assertEqual(before, (530, b"5.7.0 Must issue a STARTTLS command first"))
        self.assertEqual(auth.strip(), "PLAIN LOGIN")
        self.assertEqual(result, (235, b"2.7.0 Authentication successful"))
        self.assertEqual(refused, {})
        before, auth, result, refused = yield inThread(
            client, "LOGIN", "utilisateur@domaineel.rt", "motdepasse", "utilisateur@domaineel.rt", "edouard@domaineel.rt"
        )
        self.assertEqual(result, (235, b"2.7.0 Authentication successful"))
        [toUser] = server.messages("utilisateur")
        self.assertIn(b"with ESMTPSA id", toUser)
        self.assertRegex(toUser.decode(), r"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)")
        self.assertIn(b"(Authenticated sender: edouard)", toUser)
        [toEdouard] = server.messages("edouard")
        self.assertIn(b"(Authenticated sender: utilisateur@domaineel.rt)", toEdouard)

    @defer.inlineCallbacks
    def test_implicitTLSSubmissions(self):
        server = self.server

        def client():
            with smtplib.SMTP_SSL("127.0.0.1", server.submissionsPort, context=tlsContext()) as s:
                s.ehlo("client.example")
                features = dict(s.esmtp_features)
                unauthenticated = s.mail("edouard@domaineel.rt")
                s.rset()
                s.login("edouard", "secret")
                refused = s.sendmail("edouard@domaineel.rt", ["utilisateur@domaineel.rt"], b"Subject: 465\r\n\r\nhi\r\n")
                return features, unauthenticated, refused

        features, unauthenticated, refused = yield inThread(client)
        self.assertNotIn("starttls", features)
        self.assertEqual(features["auth"].strip(), "PLAIN LOGIN")
        self.assertEqual(unauthenticated, (530, b"5.7.0 Authentication required"))
        self.assertEqual(refused, {})
        [stored] = server.messages("utilisateur")
        self.assertIn(b"with ESMTPSA id", stored)
        self.assertRegex(stored.decode(), r"\(using TLSv1\.[23] with cipher")

    @defer.inlineCallbacks
    def test_senderMismatchRefused(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.submissionPort) as s:
                s.starttls(context=tlsContext())
                s.login("edouard", "secret")
                other = s.mail("admin@domaineel.rt")
                s.rset()
                # His own name at a foreign domain is not his address.
                foreign = s.mail("edouard@example.org")
                s.rset()
                s.mail("edouard@domaineel.rt")
                s.rcpt("utilisateur@domaineel.rt")
                header = s.data(b"From: Admin <admin@domaineel.rt>\r\n\r\nforged\r\n")
                s.mail("edouard@domaineel.rt")
                s.rcpt("utilisateur@domaineel.rt")
                foreignHeader = s.data(b"From: <edouard@example.org>\r\n\r\nforged\r\n")
                return other, foreign, header, foreignHeader

        other, foreign, header, foreignHeader = yield inThread(client)
        self.assertEqual(other[0], 553)
        self.assertIn(b"5.7.1 <admin@domaineel.rt>: Sender address rejected: not owned by user edouard", other[1])
        self.assertEqual(foreign, (553, b"5.7.1 <edouard@example.org>: Sender address rejected: not owned by user edouard"))
        self.assertEqual(header, (553, b"5.7.1 From: header rejected: not owned by user edouard"))
        self.assertEqual(foreignHeader, header)
        self.assertEqual(server.messages("utilisateur"), [])
        # Nothing queued either (a glob of a missing directory is empty).
        self.assertEqual(list((server.base / "state" / "queue").glob("*.eml")), [])

    @defer.inlineCallbacks
    def test_aliasesAndDelimiter(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail(
                    "someone@example.org",
                    ["postmaster@domaineel.rt", "edouard+lists@smtp.domaineel.rt", "equipe@domaineel.rt"],
                    b"Subject: aliases\r\n\r\nbody\r\n",
                )

        refused = yield inThread(client)
        self.assertEqual(refused, {})
        # One copy per account per message (Postfix's duplicate filter).
        [forEdouard] = server.messages("edouard")
        self.assertIn(b"X-Original-To: postmaster@domaineel.rt\nDelivered-To: edouard@smtp.domaineel.rt\n", forEdouard)
        [forUser] = server.messages("utilisateur")
        self.assertIn(b"X-Original-To: equipe@domaineel.rt\nDelivered-To: utilisateur@smtp.domaineel.rt\n", forUser)

        def plus():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail("someone@example.org", ["edouard+lists@domaineel.rt"], b"Subject: plus\r\n\r\nx\r\n")

        yield inThread(plus)
        second = [m for m in server.messages("edouard") if b"Subject: plus" in m]
        self.assertEqual(len(second), 1)
        self.assertIn(b"Delivered-To: edouard+lists@domaineel.rt\n", second[0])

    @defer.inlineCallbacks
    def test_unknownUserRejectedAtRcpt(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                s.mail("a@example.org")
                return s.rcpt("nobody@domaineel.rt")

        code, text = yield inThread(client)
        self.assertEqual(code, 550)
        self.assertTrue(text.startswith(b"5.1.1 <nobody@domaineel.rt>"))

    @defer.inlineCallbacks
    def test_sizeLimitAtMail(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                return s.mail("a@example.org", ["SIZE=10240001"])

        self.assertEqual((yield inThread(client)), (552, b"5.3.4 Message size exceeds fixed limit"))

    @defer.inlineCallbacks
    def test_pipelinedTransactions(self):
        server = self.server
        one = (
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<edouard@domaineel.rt>\r\n"
            b"RCPT TO:<nobody@domaineel.rt>\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n"
        )
        lines = yield inThread(
            rawSession,
            server.smtpPort,
            [
                (b"EHLO c\r\n", 1),
                (one, 5),
                (b"Subject: one\r\n\r\n1\r\n.\r\n" + b"MAIL FROM:<b@example.org>\r\nRCPT TO:<admin@domaineel.rt>\r\nDATA\r\n", 4),
                (b"Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n", 2),
            ],
        )
        finals = [line for line in lines if line[3:4] == " "]
        self.assertEqual(
            [line[:9] for line in finals],
            ["220 smtp.", "250 SMTPU", "250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 End d",
             "250 2.0.0", "250 2.1.0", "250 2.1.5", "354 End d", "250 2.0.0", "221 2.0.0"],
        )
        self.assertEqual(len(server.messages("edouard")), 1)
        self.assertEqual(len(server.messages("utilisateur")), 1)
        self.assertEqual(len(server.messages("admin")), 1)

    @defer.inlineCallbacks
    def test_commandsPipelinedAfterSTARTTLSDiscarded(self):
        """
        RFC 3207 4.2: a command sent after STARTTLS in the same packet
        (before the handshake, so possibly a man in the middle's) is never
        run: over TLS the session starts afresh, and a MAIL FROM is not
        "nested" behind the injected one.
        """

        def session():
            with socket.create_connection(("127.0.0.1", self.server.smtpPort), timeout=30) as raw:
                reader = raw.makefile("rb")

                def reply(stream):
                    lines = []
                    while True:
                        line = stream.readline()
                        lines.append(line.rstrip(b"\r\n").decode())
                        if line[3:4] != b"-":
                            return lines

                reply(reader)
                raw.sendall(b"EHLO c\r\n")
                reply(reader)
                raw.sendall(b"STARTTLS\r\nMAIL FROM:<inj@example.org>\r\n")
                started = reply(reader)
                with tlsContext().wrap_socket(raw, server_hostname="smtp.domaineel.rt") as tls:
                    secure = tls.makefile("rb")
                    tls.sendall(b"EHLO c\r\n")
                    ehlo = reply(secure)
                    tls.sendall(b"MAIL FROM:<a@example.org>\r\nQUIT\r\n")
                    return started, ehlo, reply(secure), reply(secure)

        started, ehlo, mail, quit = yield inThread(session)
        self.assertEqual(started, ["220 2.0.0 Ready to start TLS"])
        self.assertEqual(ehlo[0], "250-smtp.domaineel.rt")
        self.assertEqual(mail, ["250 2.1.0 Ok"])
        self.assertEqual(quit, ["221 2.0.0 Bye"])

    @defer.inlineCallbacks
    def test_eightBitBodyByteForByte(self):
        server = self.server
        # A complete header, so that nothing is added (mynetworks client).
        body = (
            "From: a@example.org\r\nDate: Wed, 2 Dec 2026 18:00:00 +0000\r\nMessage-ID: <8bit@example.org>\r\n"
            "Subject: =?utf-8?q?=C3=A9t=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n\u00e9t\u00e9 \u2603 \U0001F600\r\n"
        ).encode() + bytes(range(0x80, 0x100)) + b"\r\n..stuffed\r\n\ttab\r\n"
        yield inThread(
            rawSession,
            server.smtpPort,
            [(b"EHLO c\r\nMAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n", 4),
             (body + b".\r\n", 1)],
        )
        [stored] = server.messages("edouard")
        expected = body.replace(b"\r\n..", b"\r\n.").replace(b"\r\n", b"\n")
        self.assertTrue(stored.endswith(expected))
        self.assertEqual(stored[stored.index(b"From: a@example.org") :], expected)

    @defer.inlineCallbacks
    def test_smtputf8(self):
        server = self.server
        sender = "j\u00f6rg@b\u00fccher.example"

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail(
                    sender,
                    ["edouard@domaineel.rt"],
                    f"From: {sender}\r\nSubject: \u00e9t\u00e9\r\n\r\nna\u00efve\r\n".encode(),
                    mail_options=["SMTPUTF8", "BODY=8BITMIME"],
                )

        self.assertEqual((yield inThread(client)), {})
        [stored] = server.messages("edouard")
        text = stored.decode("utf-8")
        self.assertTrue(text.startswith(f"Return-Path: <{sender}>\n"))
        self.assertIn("with UTF8SMTP id", text)
        self.assertRegex(text, "\nSubject: \u00e9t\u00e9\nDate: [^\n]+\nMessage-ID: <[^\n]+>\n\nna\u00efve\n$")

    @defer.inlineCallbacks
    def test_vrfyNoopHelp(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.verify("edouard"), s.noop(), s.help()

        vrfy, noop, help = yield inThread(client)
        self.assertEqual(vrfy[0], 252)
        self.assertEqual(noop, (250, b"2.0.0 Ok"))
        self.assertIn(b"Commands:", help)


class RelayTests(unittest.TestCase):
    """
    An unauthenticated client outside mynetworks, on IPv4 and IPv6.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_openRelayRefused(self):
        server = Server(self, mynetworks="192.0.2.0/24")

        def client(host, port):
            with smtplib.SMTP(host, port) as s:
                s.ehlo()
                s.mail("spammer@example.com")
                refused = s.rcpt("victim@example.org")
                local = s.rcpt("edouard@domaineel.rt")
                return refused, local

        for host, port in (("127.0.0.1", server.smtpPort), ("::1", server.smtp6Port)):
            refused, local = yield inThread(client, host, port)
            self.assertEqual(refused, (454, b"4.7.1 <victim@example.org>: Relay access denied"), host)
            self.assertEqual(local, (250, b"2.1.5 Ok"), host)

    @defer.inlineCallbacks
    def test_forgedLocalSenderRefused(self):
        server = Server(self, mynetworks="192.0.2.0/24")

        def client():
            with smtplib.SMTP("::1", server.smtp6Port) as s:
                s.ehlo()
                forged = s.mail("edouard@domaineel.rt")
                s.rset()
                stranger = s.mail("admin@localhost.localdomain")
                return forged, stranger

        forged, stranger = yield inThread(client)
        self.assertEqual(forged, (553, b"5.7.1 <edouard@domaineel.rt>: Sender address rejected: not logged in"))
        # admin is an account here: the same rule applies in every local domain.
        self.assertEqual(stranger[0], 553)

    @defer.inlineCallbacks
    def test_rejectUnauthDestination(self):
        server = Server(
            self,
            mynetworks="192.0.2.0/24",
            restrictions="permit_mynetworks permit_sasl_authenticated reject_unauth_destination",
        )

        def client():
            with smtplib.SMTP("::1", server.smtp6Port) as s:
                s.ehlo()
                s.mail("spammer@example.com")
                return s.rcpt("victim@example.org")

        self.assertEqual((yield inThread(client)), (554, b"5.7.1 <victim@example.org>: Relay access denied"))

    @defer.inlineCallbacks
    def test_authRefusedBeforeTLS(self):
        server = Server(self, mynetworks="192.0.2.0/24", smtpExtra="plaintext_on_loopback = no\n")

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                offered = s.has_extn("auth")
                code = s.docmd("AUTH PLAIN AGVkb3VhcmQAc2VjcmV0")
                s.starttls(context=tlsContext())
                s.ehlo()
                afterTLS = s.esmtp_features.get("auth")
                s.login("edouard", "secret")
                s.mail("edouard@domaineel.rt")
                relayed = s.rcpt("friend@example.org")
                return offered, code, afterTLS, relayed

        offered, code, afterTLS, relayed = yield inThread(client)
        self.assertFalse(offered)
        self.assertEqual(code, (538, b"5.7.11 Encryption required for requested authentication mechanism"))
        self.assertEqual(afterTLS.strip(), "PLAIN LOGIN")
        # permit_sasl_authenticated lets it through (to the outbound queue).
        self.assertEqual(relayed[0], 250)


class SizeTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_sizeLimitDuringData(self):
        server = Server(self, smtpExtra="message_size_limit = 100000\n")

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                s.mail("a@example.org")
                s.rcpt("edouard@domaineel.rt")
                result = s.data(b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 3000)
                return result, s.noop()

        result, noop = yield inThread(client)
        self.assertEqual(result, (552, b"5.3.4 Error: message file too big"))
        self.assertEqual(noop[0], 250)
        self.assertEqual(server.messages("edouard"), [])
        tmp = server.maildir("edouard") / "tmp"
        self.assertEqual(list(tmp.iterdir()) if tmp.is_dir() else [], [])

    @defer.inlineCallbacks
    def test_thirtyMegabytesInBoundedMemory(self):
        server = Server(self, smtpExtra="message_size_limit = 50M\n")
        size = 30 * 1024 * 1024
        # The client runs in its own process so only the server's memory is
        # measured here.
        script = textwrap.dedent(
            f"""\
            import smtplib, sys
            line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\\r\\n"
            body = b"Subject: big\\r\\n\\r\\n" + line * ({size} // len(line))
            with smtplib.SMTP("127.0.0.1", {server.smtpPort}) as s:
                s.ehlo()
                code, text = s.mail("a@example.org", ["SIZE=%d" % len(body)])
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
        line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\n"
        # Every byte stored, each CRLF as LF.
        header, _, text = path.read_bytes().partition(b"\n\n")
        self.assertEqual(text, line * (size // 78))
        # The header was held back and completed; the body streamed.
        self.assertRegex(header, rb"\nSubject: big\nDate: [^\n]+\nMessage-ID: <[^\n]+>\nFrom: a@example.org$")
        # Streamed in 64 KiB pieces: the server's Python allocations stay
        # below the message size.  The bound is not tighter because the
        # passwd-file source reads its file with f.read(16 MiB + 1), which
        # allocates a transient 16 MiB buffer per recipient lookup (reported
        # to auth); a server that buffered the message would peak above
        # 30 MiB.
        self.assertLess(peak, 24 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte message")


class OutboundTests(unittest.TestCase):
    """
    Relayed mail through the real builder's queue to a remote MX (maillab's
    protocol with a recording sink) found through a fake resolver.
    """

    timeout = 60

    def setUp(self):
        from tests.test_smtp_outbound import FakeResolver, Sink
        from twisted.internet import task as _task
        from twisted_maillab.smtp.delivery import QueueIds
        from twisted_maillab.smtp.server import Settings, SMTPServerFactory

        self.server = Server(self)
        self.sink = Sink()
        self.sink.deferLater = False
        clock = _task.Clock()
        factory = SMTPServerFactory(
            Settings(hostname="mx.remote.test", banner="mx.remote.test ESMTP", peernameLookup=False),
            self.sink,
            self.sink,
            # The remote MX offers STARTTLS: the queue's client uses it.
            tlsContext=self.server.resources.tlsContext,
            clock=clock,
            queueIds=QueueIds(clock),
        )
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        queue = self.server.resources.shared("smtp").outbound
        queue.resolver = FakeResolver({"remote.test": [(10, "mx.remote.test")]}, {"mx.remote.test": ["127.0.0.1"]})
        queue.port = self.port.getHost().port

    @defer.inlineCallbacks
    def waitFor(self, condition):
        for _ in range(500):
            if condition():
                return
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.fail("timed out")

    @defer.inlineCallbacks
    def test_relayFromMynetworksAndAlias(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail(
                    "someone@example.org",
                    ["friend@remote.test", "ext@domaineel.rt", "edouard@domaineel.rt"],
                    "Subject: relay\r\n\r\nbody \u00e9\r\n..dot\r\n".encode(),
                )

        self.assertEqual((yield inThread(client)), {})
        yield self.waitFor(lambda: self.sink.received)
        [(envelope, data)] = self.sink.received
        self.assertTrue(self.sink.sessions[0].tls)
        # One copy for the remote address, even though the alias named it too.
        self.assertEqual([r.mailbox.address for r in envelope.recipients], ["friend@remote.test"])
        self.assertTrue(data.startswith(b"Received: from "))
        # smtplib stuffs dots itself, so the content line is "..dot".
        self.assertTrue(data.endswith("\nFrom: someone@example.org\n\nbody \u00e9\n..dot\n".encode()))
        self.assertIn(b"\nSubject: relay\nDate: ", data)
        [local] = server.messages("edouard")
        self.assertEqual(local.split(b"Received: ", 1)[1], data.split(b"Received: ", 1)[1])
        queue = server.resources.shared("smtp").outbound
        yield self.waitFor(lambda: not os.listdir(queue.directory))

    @defer.inlineCallbacks
    def test_etrn(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                return s.docmd("ETRN", "remote.test")

        self.assertEqual((yield inThread(client)), (251, b"2.0.0 OK, no messages waiting for node remote.test"))

    @defer.inlineCallbacks
    def test_bounceReachesLocalSender(self):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                return s.sendmail("edouard@domaineel.rt", ["bad@remote.test"], b"Subject: lost\r\n\r\nx\r\n")

        self.assertEqual((yield inThread(client)), {})
        # The spool is emptied only after the bounce is committed.
        queue = server.resources.shared("smtp").outbound
        yield self.waitFor(lambda: not os.listdir(queue.directory))
        [bounce] = server.messages("edouard")
        self.assertIn(b"Return-Path: <>\n", bounce)
        self.assertIn(b"Subject: Undelivered Mail Returned to Sender", bounce)
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", bounce)
        self.assertIn(b"Subject: lost", bounce)


class AliasProgramTests(unittest.TestCase):
    """
    |command and /file alias targets, enabled, run as default_privs.
    """

    timeout = 60

    def setUp(self):
        import pwd

        self.out = Path(self.mktemp()).resolve()
        self.out.mkdir(parents=True)
        # default_privs (nobody) must be able to write here.
        os.chmod(self.out, 0o777)
        os.chmod(self.out.parent, 0o755)
        self.nobody = pwd.getpwnam("nobody").pw_uid
        self.server = Server(
            self,
            smtpExtra="allow_alias_commands = yes\nallow_alias_files = yes\ncommand_time_limit = 20\n",
            aliases=(
                f'prog: "|cat > {self.out}/prog.txt; echo $RECIPIENT $SENDER $(id -u) >> {self.out}/prog.txt"\n'
                f"mbox: {self.out}/mbox, edouard\n"
                f'later: "|exit 75"\n'
                f'broken: "|echo oops >&2; exit 3"\n'
            ),
        )

    def send(self, to, body=b"Subject: pipe\r\n\r\nFrom the start\r\nbody\r\n"):
        server = self.server

        def client():
            with smtplib.SMTP("127.0.0.1", server.smtpPort) as s:
                s.ehlo()
                s.mail("someone@example.org")
                s.rcpt(to)
                try:
                    return s.data(body)
                except smtplib.SMTPDataError as e:
                    return e.smtp_code, e.smtp_error

        return inThread(client)

    @defer.inlineCallbacks
    def test_command(self):
        from tests.test_smtp_logs import captureLines

        lines = captureLines(self)
        code, text = yield self.send("prog@domaineel.rt")
        self.assertEqual(code, 250, text)
        [line] = [line for line in lines if ": to=<" in line]
        self.assertRegex(
            line,
            r"^\w+: to=<prog@smtp\.domaineel\.rt>, orig_to=<prog@domaineel\.rt>, relay=local, delay=[\d.]+, "
            r"dsn=2\.0\.0, status=sent \(delivered to command: .+\)$",
        )
        data = (self.out / "prog.txt").read_bytes()
        self.assertTrue(data.startswith(b"Return-Path: <someone@example.org>\nX-Original-To: prog@domaineel.rt\n"))
        # The missing From: was added from the envelope (mynetworks client).
        self.assertIn(b"\nSubject: pipe\nDate: ", data)
        self.assertIn(b"\nFrom: someone@example.org\n\nFrom the start\nbody\n", data)
        # RECIPIENT, SENDER, and the uid it ran as (nobody when we are root).
        expectedUid = self.nobody if os.geteuid() == 0 else os.geteuid()
        self.assertTrue(data.endswith(f"prog@smtp.domaineel.rt someone@example.org {expectedUid}\n".encode()))

    @defer.inlineCallbacks
    def test_fileAndMailboxTogether(self):
        code, text = yield self.send("mbox@domaineel.rt")
        self.assertEqual(code, 250, text)
        mbox = (self.out / "mbox").read_bytes()
        self.assertTrue(mbox.startswith(b"From someone@example.org "))
        self.assertIn(b"\n\n>From the start\nbody\n\n", mbox)
        if os.geteuid() == 0:
            self.assertEqual((self.out / "mbox").stat().st_uid, self.nobody)
        self.assertEqual(len(self.server.messages("edouard")), 1)

    @defer.inlineCallbacks
    def test_exitStatus(self):
        code, text = yield self.send("later@domaineel.rt")
        self.assertEqual(code, 451)
        code, text = yield self.send("broken@domaineel.rt")
        self.assertEqual(code, 550)
        self.assertIn(b"exit status 3 oops", text)


def swaks() -> str:
    path = shutil.which("swaks")
    if path is None:
        raise AssertionError("swaks is not installed: apt-get install swaks (Debian package swaks)")
    return path


class SwaksTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.server = Server(self)

    def run_(self, *args):
        return utils.getProcessOutputAndValue(swaks(), [str(a) for a in args], env=os.environ)

    @defer.inlineCallbacks
    def test_seedSessionWithSwaks(self):
        server = self.server
        out, err, code = yield self.run_(
            "--server", "127.0.0.1", "--port", server.smtpPort, "--helo", "antenn04.univ-lr.fr",
            "--from", "admin@localhost", "--to", "edouard@smtp.domaineel.rt",
            "--header", "Subject: t", "--body", "sdgfd",
        )
        self.assertEqual(code, 0, out + err)
        self.assertRegex(out.decode(), r"<-  250 2\.0\.0 Ok: queued as [0-9A-F]+")
        self.assertIn(b"<-  221 2.0.0 Bye", out)
        [stored] = server.messages("edouard")
        self.assertIn(b"Delivered-To: edouard@smtp.domaineel.rt\n", stored)

    @defer.inlineCallbacks
    def test_swaksTLSAuthAndPipelining(self):
        server = self.server
        for mechanism in ("PLAIN", "LOGIN"):
            out, err, code = yield self.run_(
                "--server", "127.0.0.1", "--port", server.submissionPort, "-tls",
                "--auth", mechanism, "--auth-user", "edouard", "--auth-password", "secret",
                "--from", "edouard@domaineel.rt", "--to", "utilisateur@domaineel.rt", "--pipeline",
                "--header", f"Subject: swaks {mechanism}",
            )
            self.assertEqual(code, 0, out + err)
            self.assertIn(b"235 2.7.0 Authentication successful", out)
        self.assertEqual(len(server.messages("utilisateur")), 2)

    @defer.inlineCallbacks
    def test_swaksRelayRefusedIPv6(self):
        server = Server(self, mynetworks="192.0.2.0/24")
        out, err, code = yield self.run_(
            "--server", "::1", "--port", server.smtp6Port, "-6",
            "--from", "spammer@example.com", "--to", "victim@example.org",
        )
        self.assertNotEqual(code, 0)
        self.assertIn(b"454 4.7.1 <victim@example.org>: Relay access denied", out)
