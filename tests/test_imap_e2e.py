"""
End-to-end IMAP: the real C{twistd maillab} with [imap] (STARTTLS) and
[imaps] (implicit TLS) on 127.0.0.1, a passwd-file account, and Python's
imaplib; and the two-session IDLE test: session A IDLEs while session B
sets a flag and expunges, an SMTP delivery lands and another process
renames a file on disk, and A is told of each within a second.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial import unittest

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import load

from tests.support import deliverOutOfProcess, freePort, readUntil, stopProcess, sha512crypt, syncResult

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
PASSWORD = "Tr0ub4dor&3 x"

MSG1 = b"From: anne@domaineel.rt\nTo: edouard@domaineel.rt\nSubject: one\n\nbody one\n"
MSG2 = b"From: bob@domaineel.rt\r\nSubject: two\r\n\r\nbody two\r\n"


class Server:
    """
    A twistd maillab subprocess with IMAP, IMAPS and SMTP, one account
    (C{edouard}), and an in-process store to deliver into its Maildir.
    """

    def __init__(self, testCase, imapExtra: str = ""):
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        (self.root / "users").write_text(f"edouard:{{SHA512-CRYPT}}{sha512crypt(PASSWORD)}\n")
        self.port, self.sport, self.smtpPort, self.popPort = freePort(), freePort(), freePort(), freePort()
        self.ini = self.root / "maillab.ini"
        self.ini.write_text(
            "[server]\nhostname = mail.domaineel.rt\ndomain = domaineel.rt\nstate_directory = var\n"
            "[tls]\ncertificate = var/tls/cert.pem\nprivate_key = var/tls/key.pem\n"
            "generate_self_signed = yes\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
            f"[imap]\nenabled = yes\nlisten = tcp:{self.port}:interface=127.0.0.1\n{imapExtra}\n"
            f"[imaps]\nenabled = yes\nlisten = tcp:{self.sport}:interface=127.0.0.1\n"
            f"[smtp]\nenabled = yes\nlisten = tcp:{self.smtpPort}:interface=127.0.0.1\n"
            "myhostname = mail.domaineel.rt\nmydestination = $myhostname, domaineel.rt\n"
            "mynetworks = 127.0.0.0/8\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{self.popPort}:interface=127.0.0.1\n"
        )
        self.config = load(self.ini)
        portal = makePortal(self.config, Clock(), runner=runSynchronously)
        self.account = syncResult(portal.directory.lookup("edouard"))
        Path(self.account.home).mkdir(parents=True, exist_ok=True)
        self.maildir = Path(self.account.maildir)
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        testCase.addCleanup(stopProcess, self.process)
        self.output = readUntil(
            self.process,
            [rf"imap listening on 127\.0\.0\.1:{self.port}\b", rf"imaps listening on 127\.0\.0\.1:{self.sport}\b",
             rf"smtp listening on 127\.0\.0\.1:{self.smtpPort}\b", rf"pop3 listening on 127\.0\.0\.1:{self.popPort}\b"],
        )

    def deliver(self, *messages: bytes) -> None:
        deliverOutOfProcess(self.account, messages)

    def clientContext(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.root / "var" / "tls" / "cert.pem"))
        context.check_hostname = False
        return context

    def imap(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=30)

    def imaps(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("127.0.0.1", self.sport, ssl_context=self.clientContext(), timeout=30)


class ImaplibTests(unittest.TestCase):
    def session(self, client):
        """
        The operations every client does, checked on the wire's results.
        """
        client.login("edouard", PASSWORD)
        typ, data = client.select("INBOX")
        self.assertEqual((typ, data), ("OK", [b"2"]))
        typ, data = client.fetch("1", "(BODY.PEEK[] FLAGS)")
        self.assertEqual(data[0][1], MSG1.replace(b"\n", b"\r\n"))
        typ, data = client.uid("FETCH", "1:*", "(RFC822.SIZE)")
        self.assertEqual(
            data, [b"1 (UID 1 RFC822.SIZE %d)" % (len(MSG1) + MSG1.count(b"\n")), b"2 (UID 2 RFC822.SIZE %d)" % len(MSG2)]
        )
        self.assertEqual(client.search(None, "SUBJECT", "two"), ("OK", [b"2"]))
        typ, data = client.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(typ, "OK")
        typ, data = client.append("INBOX", "(\\Seen)", None, b"Subject: three\r\n\r\nbody three\r\n")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"^\[APPENDUID \d+ 3\] APPEND completed$")
        self.assertEqual(client.expunge(), ("OK", [b"1"]))
        self.assertEqual(client.search(None, "ALL"), ("OK", [b"1 2"]))
        # A big APPEND goes through a spool file in the store's pool.
        big = b"Subject: big\r\n\r\n" + b"0123456789" * 300000 + b"\r\n"
        self.assertEqual(client.append("INBOX", None, None, big)[0], "OK")
        typ, data = client.fetch("3", "(BODY.PEEK[])")
        self.assertEqual(data[0][1], big)
        typ, data = client.list()
        self.assertIn(b'(\\HasNoChildren \\Sent) "/" Sent', data)
        self.assertEqual(client.logout()[0], "BYE")

    def test_startTLS(self):
        """
        With plaintext_on_loopback = no: LOGINDISABLED until STARTTLS.
        """
        server = Server(self, "plaintext_on_loopback = no")
        server.deliver(MSG1, MSG2)
        client = server.imap()
        self.assertIn("LOGINDISABLED", client.capabilities)
        self.assertIn("STARTTLS", client.capabilities)
        self.assertRaises(imaplib.IMAP4.error, client.login, "edouard", PASSWORD)
        client.starttls(server.clientContext())
        self.assertNotIn("LOGINDISABLED", client.capabilities)
        self.assertIn("AUTH=PLAIN", client.capabilities)
        self.session(client)

    def test_commandsPipelinedAfterSTARTTLSDiscarded(self):
        """
        RFC 3501 6.2.1: commands sent after STARTTLS in the same packet
        came before the handshake and are never run.
        """
        server = Server(self)
        server.deliver(MSG1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            reader = raw.makefile("rb")
            self.assertTrue(reader.readline().startswith(b"* OK"))
            raw.sendall(
                b"t1 STARTTLS\r\nt2 LOGIN edouard \"" + PASSWORD.encode() + b"\"\r\nt3 SELECT INBOX\r\n"
                b"t4 STORE 1 +FLAGS (\\Deleted)\r\nt5 EXPUNGE\r\n"
            )
            self.assertEqual(reader.readline(), b"t1 OK Begin TLS negotiation now\r\n")
            with server.clientContext().wrap_socket(raw) as tls:
                secure = tls.makefile("rb")
                tls.sendall(b"t6 SELECT INBOX\r\nt7 LOGOUT\r\n")
                self.assertEqual(secure.readline(), b"t6 BAD Log in first\r\n")
                self.assertEqual(secure.readline(), b"* BYE Logging out\r\n")
        self.assertEqual(len(os.listdir(server.maildir / "new")), 1)

    def test_imaps(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.imaps()
        self.assertNotIn("STARTTLS", client.capabilities)
        self.session(client)


def _readLine(sock, buffer: bytearray, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while b"\r\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"nothing within {timeout}s (have {bytes(buffer)!r})")
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise AssertionError("connection closed")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


class IdleTests(unittest.TestCase):
    def test_twoSessions(self):
        """
        A IDLEs; B sets a flag (A: FETCH), B expunges (A: EXPUNGE), an SMTP
        delivery lands (A: EXISTS), another process renames a file to give
        it a flag (A: FETCH), POP3's QUIT deletes one (A: EXPUNGE), each
        within a second; then only DONE ends the IDLE.
        """
        server = Server(self)
        server.deliver(MSG1, MSG2, MSG1)
        a = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.addCleanup(a.close)
        buf = bytearray()
        _readLine(a, buf, 10)
        a.sendall(b'a1 LOGIN edouard "' + PASSWORD.encode() + b'"\r\na2 SELECT INBOX\r\n')
        while not _readLine(a, buf, 10).startswith(b"a2 OK"):
            pass
        a.sendall(b"a3 IDLE\r\n")
        self.assertEqual(_readLine(a, buf, 10), b"+ idling")

        b = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
        b.login("edouard", PASSWORD)
        b.select("INBOX")
        b.store("2", "+FLAGS", "(\\Flagged)")
        self.assertEqual(_readLine(a, buf, 1.0), b"* 2 FETCH (FLAGS (\\Flagged \\Recent))")
        b.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(_readLine(a, buf, 1.0), b"* 1 FETCH (FLAGS (\\Deleted \\Recent))")
        b.expunge()
        self.assertEqual(_readLine(a, buf, 1.0), b"* 1 EXPUNGE")
        b.logout()

        smtp = smtplib.SMTP("127.0.0.1", server.smtpPort, timeout=30)
        smtp.sendmail("anne@domaineel.rt", ["edouard@domaineel.rt"], b"Subject: by smtp\r\n\r\nhello\r\n")
        smtp.quit()
        self.assertEqual(_readLine(a, buf, 1.0), b"* 3 EXISTS")
        # A claimed the other two at SELECT: they stay recent for it.
        self.assertEqual(_readLine(a, buf, 1.0), b"* 3 RECENT")

        # Another program (a shell) gives the first message \Seen by
        # renaming its file, as Maildir flag changes are made.
        names = sorted(os.listdir(server.maildir / "cur"))
        first = names[0]
        base = first.split(":2,")[0]
        letters = first.split(":2,")[1] if ":2," in first else ""
        subprocess.run(
            ["mv", str(server.maildir / "cur" / first), str(server.maildir / "cur" / (base + ":2," + "".join(sorted(letters + "S"))))],
            check=True,
        )
        line = _readLine(a, buf, 1.0)
        self.assertRegex(line, rb"^\* \d FETCH \(FLAGS \(.*\\Seen.*\)\)$")

        # POP3's QUIT deletes the first message.
        pop = poplib.POP3("127.0.0.1", server.popPort, timeout=30)
        pop.user("edouard")
        pop.pass_(PASSWORD)
        pop.dele(1)
        pop.quit()
        self.assertEqual(_readLine(a, buf, 1.0), b"* 1 EXPUNGE")

        a.sendall(b"nonsense\r\n")
        self.assertEqual(_readLine(a, buf, 5), b"* BAD Expected DONE")
        a.sendall(b"DONE\r\n")
        self.assertEqual(_readLine(a, buf, 5), b"a3 OK IDLE terminated")
