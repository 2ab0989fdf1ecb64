"""
End-to-end POP3: the real C{twistd maillab} with [pop3] (STLS) and [pop3s]
(implicit TLS) on 127.0.0.1, a passwd-file account, mail delivered through
the store's delivery transaction, and real clients: Python's poplib, curl
(apt package C{curl}) and fetchmail (apt package C{fetchmail}).
"""

from __future__ import annotations

import hashlib
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial import unittest

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import load

from tests.support import deliverOutOfProcess, freePort, readUntil, requireTool, stopProcess, sha512crypt, syncResult

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
PASSWORD = "Tr0ub4dor&3 x"

MSG1 = b"From: anne@domaineel.rt\nTo: edouard@domaineel.rt\nSubject: one\n\n.leading dot\nbody one\n"
MSG2 = b"From: anne@domaineel.rt\r\nSubject: two\r\n\r\nbody two\r\n"


class Server:
    """
    A twistd maillab subprocess with POP3 and POP3S, one account
    (C{edouard}), and an in-process store to deliver into its Maildir.
    """

    def __init__(self, testCase, pop3Extra: str = "", uid: int | None = None, smtp: bool = False):
        self.testCase = testCase
        owner = ""
        if uid is None:
            self.root = Path(testCase.mktemp()).resolve()
            self.root.mkdir(parents=True)
        else:
            # A system-like account (Dovecot refuses uid 0) whose files
            # Dovecot's processes can reach: trial's temporary directory
            # is mode 0700, so use one of our own.
            import tempfile

            self.root = Path(tempfile.mkdtemp(prefix="mlpop3-"))
            testCase.addCleanup(shutil.rmtree, self.root, True)
            self.root.chmod(0o755)
            home = self.root / "home" / "edouard"
            home.mkdir(parents=True)
            (self.root / "home").chmod(0o755)
            os.chown(home, uid, uid)
            home.chmod(0o700)
            owner = f":{uid}:{uid}::{home}"
        (self.root / "users").write_text(
            f"edouard:{{SHA512-CRYPT}}{sha512crypt(PASSWORD)}{owner}\n"
            f"anne:{{SHA512-CRYPT}}{sha512crypt('anne pw')}\n"
        )
        (self.root / "users").chmod(0o644)
        self.port = freePort()
        self.sport = freePort()
        self.smtpPort = freePort()
        smtpSection = ""
        if smtp:
            # The SMTP issue's delivery path: local delivery from mynetworks.
            smtpSection = (
                f"[smtp]\nenabled = yes\nlisten = tcp:{self.smtpPort}:interface=127.0.0.1\n"
                "myhostname = mail.domaineel.rt\nmydestination = $myhostname, domaineel.rt\n"
                "mynetworks = 127.0.0.0/8\n"
            )
        self.ini = self.root / "maillab.ini"
        self.ini.write_text(
            "[server]\nhostname = mail.domaineel.rt\ndomain = domaineel.rt\nstate_directory = var\n"
            "[tls]\ncertificate = var/tls/cert.pem\nprivate_key = var/tls/key.pem\n"
            "generate_self_signed = yes\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{self.port}:interface=127.0.0.1\n{pop3Extra}\n"
            f"[pop3s]\nenabled = yes\nlisten = tcp:{self.sport}:interface=127.0.0.1\n"
            + smtpSection
        )
        self.config = load(self.ini)
        portal = makePortal(self.config, Clock(), runner=runSynchronously)
        self.account = syncResult(portal.directory.lookup("edouard"))
        # The store never creates a home directory: the administrator does.
        for user in ("edouard", "anne"):
            Path(syncResult(portal.directory.lookup(user)).home).mkdir(parents=True, exist_ok=True)
        self.maildir = Path(self.account.maildir)
        self.process = None
        self.output = ""
        self.start()
        testCase.addCleanup(self.stop)

    @property
    def cert(self) -> str:
        return str(self.root / "var" / "tls" / "cert.pem")

    def start(self):
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        self.output = readUntil(
            self.process,
            [rf"pop3 listening on 127\.0\.0\.1:{self.port}\b", rf"pop3s listening on 127\.0\.0\.1:{self.sport}\b"],
        )
        # Keep reading the server's log while the test runs: a chatty run
        # would otherwise fill the pipe and stall the server in a write.
        self.drainer = threading.Thread(target=self._drain, args=(self.process,), daemon=True)
        self.drainer.start()

    def _drain(self, process):
        for chunk in iter(lambda: os.read(process.stdout.fileno(), 65536), b""):
            self.output += chunk.decode("utf-8", "replace")

    def stop(self):
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.drainer.join(timeout=30)
        process.stdout.close()

    def restart(self):
        self.stop()
        self.start()

    def deliver(self, *messages: bytes) -> list[str]:
        return deliverOutOfProcess(self.account, messages)

    def files(self) -> dict[str, list[str]]:
        return {sub: sorted(os.listdir(self.maildir / sub)) for sub in ("new", "cur")}

    def status(self, field: str) -> int:
        """
        VmRSS / VmHWM of the server process, in bytes.
        """
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def pop3(self) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.port, timeout=30)

    def pop3s(self) -> poplib.POP3_SSL:
        return poplib.POP3_SSL("127.0.0.1", self.sport, context=self.clientContext(), timeout=30)

    def clientContext(self) -> ssl.SSLContext:
        # Verify the server's (self-signed) certificate; it names
        # mail.domaineel.rt, not 127.0.0.1.
        context = ssl.create_default_context(cafile=self.cert)
        context.check_hostname = False
        return context


def login(client, user="edouard", password=PASSWORD):
    client.user(user)
    return client.pass_(password)


class PoplibTests(unittest.TestCase):
    def test_retrieveAndDeleteOnLoopback(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.pop3()
        self.assertIn(b"maillab", client.getwelcome())
        caps = client.capa()
        self.assertEqual(
            list(caps),
            ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL", "STLS"],
        )
        self.assertEqual(caps["SASL"], ["PLAIN", "LOGIN"])
        login(client)
        self.assertEqual(client.stat(), (2, len(MSG1) + MSG1.count(b"\n") + len(MSG2)))
        _, lines, _ = client.retr(1)
        self.assertEqual(b"\n".join(lines) + b"\n", MSG1)
        _, lines, _ = client.retr(2)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", MSG2)
        client.dele(1)
        self.assertEqual(client.stat()[0], 1)
        self.assertTrue(client.quit().startswith(b"+OK"))
        files = server.files()
        # message 1 deleted at QUIT; message 2 retrieved: in cur/ and \Seen
        self.assertEqual(files["new"], [])
        self.assertEqual(len(files["cur"]), 1)
        self.assertTrue(files["cur"][0].endswith(":2,S"), files)

    def test_loginBeforeSTLSRefused(self):
        """
        With plaintext_on_loopback = no the 127.0.0.1 listener behaves as a
        public one: no USER/SASL before TLS, and the refusal tells the
        client to use STLS.
        """
        server = Server(self, "plaintext_on_loopback = no")
        server.deliver(MSG1)
        client = server.pop3()
        caps = client.capa()
        self.assertNotIn("USER", caps)
        self.assertNotIn("SASL", caps)
        self.assertIn("STLS", caps)
        error = self.assertRaises(poplib.error_proto, client.user, "edouard")
        self.assertIn(b"-ERR [AUTH]", error.args[0])
        self.assertIn(b"use STLS", error.args[0])
        client.stls(server.clientContext())
        caps = client.capa()
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)
        login(client)
        self.assertEqual(client.stat()[0], 1)
        client.dele(1)
        client.quit()
        self.assertEqual(server.files(), {"new": [], "cur": []})

    def test_commandsPipelinedAfterSTLSDiscarded(self):
        """
        RFC 2595 3.1: commands sent after STLS in the same packet came
        before the handshake (possibly from a man in the middle) and are
        never run: over TLS the session is still unauthenticated.
        """
        server = Server(self)
        server.deliver(MSG1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            reader = raw.makefile("rb")
            self.assertTrue(reader.readline().startswith(b"+OK"))
            raw.sendall(b"STLS\r\nUSER edouard\r\nPASS " + PASSWORD.encode() + b"\r\nDELE 1\r\nQUIT\r\n")
            self.assertEqual(reader.readline(), b"+OK Begin TLS negotiation now.\r\n")
            with server.clientContext().wrap_socket(raw) as tls:
                secure = tls.makefile("rb")
                tls.sendall(b"STAT\r\nQUIT\r\n")
                self.assertEqual(secure.readline(), b"-ERR Command not valid in this state.\r\n")
                self.assertTrue(secure.readline().startswith(b"+OK Logging out"))
        self.assertEqual(len(server.files()["new"]), 1)

    def test_pop3s(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.pop3s()
        self.assertNotIn("STLS", client.capa())
        login(client)
        _, lines, _ = client.top(2, 0)
        self.assertEqual(lines, [b"From: anne@domaineel.rt", b"Subject: two", b""])
        client.dele(2)
        client.quit()
        self.assertEqual(len(server.files()["new"]), 1)

    def test_wrongPasswordResponseCode(self):
        server = Server(self)
        client = server.pop3()
        client.user("edouard")
        error = self.assertRaises(poplib.error_proto, client.pass_, "wrong")
        self.assertTrue(error.args[0].startswith(b"-ERR [AUTH]"), error.args)

    def test_uidlStableAndAgreesWithIMAPUids(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.pop3()
        login(client)
        first = client.uidl()[1]
        client.quit()
        uidlist = (server.maildir / "dovecot-uidlist").read_text().splitlines()
        validity = int(re.search(r"\bV(\d+)", uidlist[0]).group(1))
        uids = [int(line.split()[0]) for line in uidlist[1:]]
        self.assertEqual(
            first, [b"%d %08x%08x" % (n + 1, uid, validity) for n, uid in enumerate(uids)]
        )
        server.restart()
        server.deliver(MSG1)
        client = server.pop3()
        login(client)
        second = client.uidl()[1]
        client.quit()
        self.assertEqual(second[:2], first)
        self.assertEqual(len(second), 3)

    def test_inUse(self):
        server = Server(self)
        server.deliver(MSG1)
        first = server.pop3()
        login(first)
        second = server.pop3()
        second.user("edouard")
        error = self.assertRaises(poplib.error_proto, second.pass_, PASSWORD)
        self.assertEqual(error.args[0], b"-ERR [IN-USE] Mailbox is locked by another POP3 session.")
        # another user is not blocked
        other = server.pop3()
        login(other, "anne", "anne pw")
        other.quit()
        first.quit()
        login(second)
        self.assertEqual(second.stat()[0], 1)
        second.quit()

    def test_droppedConnectionDeletesNothing(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.pop3()
        login(client)
        client.dele(1)
        client.dele(2)
        client.sock.close()
        client.file.close()
        deadline = time.monotonic() + 10
        while True:
            again = server.pop3()
            try:
                login(again)
                break
            except poplib.error_proto as e:
                # the server may not have seen the close yet
                if b"IN-USE" not in e.args[0] or time.monotonic() > deadline:
                    raise
                again.close()
                time.sleep(0.1)
        self.assertEqual(again.stat()[0], 2)
        again.quit()
        self.assertEqual(len(server.files()["new"]) + len(server.files()["cur"]), 2)

    def test_retrievedMovesToCur(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        client = server.pop3()
        login(client)
        client.retr(1)
        deadline = time.monotonic() + 10
        while len(server.files()["cur"]) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        files = server.files()
        self.assertEqual((len(files["new"]), len(files["cur"])), (1, 1))
        # not \Seen before the session commits at QUIT
        self.assertFalse(files["cur"][0].endswith("S"), files)
        client.quit()
        self.assertTrue(server.files()["cur"][0].endswith(":2,S"))

    def test_20MBMessageStreamedWithoutMemoryGrowth(self):
        """
        RETR of a 20 MB message to a client that does not read for a while:
        the server reads the file only as fast as the socket drains (a push
        producer), so neither its RSS nor its peak RSS grows by anything
        like the message size.
        """
        self._bigRetrieval(tls=False)

    def test_20MBMessageOverPOP3S(self):
        """
        The same through the TLS layer (implicit TLS on the pop3s port),
        whose producer chain differs from a plain TCP transport's.
        """
        self._bigRetrieval(tls=True)

    def _bigRetrieval(self, tls: bool):
        server = Server(self)
        line = b"x" * 70 + b"\n"
        big = b"Subject: big\n\n" + line * (20 * 1024 * 1024 // len(line))
        expected = hashlib.sha256(big.replace(b"\n", b"\r\n")).hexdigest()
        server.deliver(big)
        del big
        if tls:
            raw = socket.create_connection(("127.0.0.1", server.sport), timeout=30)
            sock = server.clientContext().wrap_socket(raw)
        else:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"USER edouard\r\nPASS " + PASSWORD.encode() + b"\r\nSTAT\r\n")
        f.readline()
        self.assertTrue(f.readline().startswith(b"+OK Logged in"))
        size = int(f.readline().split()[2])
        rss0 = server.status("VmRSS")
        hwm0 = server.status("VmHWM")
        sock.sendall(b"RETR 1\r\n")
        time.sleep(2)  # the client is not reading
        rssStalled = server.status("VmRSS")
        self.assertTrue(f.readline().startswith(b"+OK %d octets" % size))
        digest = hashlib.sha256()
        received = 0
        while True:
            chunk = f.readline()
            if chunk == b".\r\n":
                break
            self.assertTrue(chunk, "connection closed mid-message")
            received += len(chunk)
            digest.update(chunk)
        hwm1 = server.status("VmHWM")
        sock.sendall(b"QUIT\r\n")
        f.readline()
        sock.close()
        self.assertEqual(received, size)
        self.assertEqual(digest.hexdigest(), expected)
        limit = 6 * 1024 * 1024
        self.assertLess(rssStalled - rss0, limit, (rss0, rssStalled))
        self.assertLess(hwm1 - hwm0, limit, (hwm0, hwm1))
        print(
            f"\n20 MB RETR ({'pop3s' if tls else 'pop3'}): server RSS {rss0 >> 10} kB before, "
            f"{rssStalled >> 10} kB with the client stalled; peak RSS {hwm0 >> 10} kB -> {hwm1 >> 10} kB"
        )


class CurlTests(unittest.TestCase):
    def curl(self, *args) -> subprocess.CompletedProcess:
        curl = requireTool("curl", "curl")
        return subprocess.run([curl, "-sS", "--max-time", "30", *args], capture_output=True, timeout=60)

    def test_pop3WithSTLS(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        url = f"pop3://edouard:{PASSWORD.replace(' ', '%20').replace('&', '%26')}@127.0.0.1:{server.port}/"
        tls = ["--ssl-reqd", "--cacert", server.cert, "--resolve", f"mail.domaineel.rt:{server.port}:127.0.0.1"]
        url = url.replace("127.0.0.1", "mail.domaineel.rt")
        listing = self.curl(*tls, url)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertEqual(
            listing.stdout, b"1 %d\r\n2 %d\r\n" % (len(MSG1) + MSG1.count(b"\n"), len(MSG2))
        )
        message = self.curl(*tls, url + "1")
        self.assertEqual(message.returncode, 0, message.stderr)
        self.assertEqual(message.stdout, MSG1.replace(b"\n", b"\r\n"))
        deleted = self.curl(*tls, "-X", "DELE", "-I", url + "1")
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        self.assertEqual(len(server.files()["new"]) + len(server.files()["cur"]), 1)

    def test_pop3s(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        url = f"pop3s://edouard:{PASSWORD.replace(' ', '%20').replace('&', '%26')}@mail.domaineel.rt:{server.sport}/"
        tls = ["--cacert", server.cert, "--resolve", f"mail.domaineel.rt:{server.sport}:127.0.0.1"]
        message = self.curl(*tls, url + "2")
        self.assertEqual(message.returncode, 0, message.stderr)
        self.assertEqual(message.stdout, MSG2)
        deleted = self.curl(*tls, "-X", "DELE", "-I", url + "2")
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        listing = self.curl(*tls, url)
        self.assertEqual(listing.stdout, b"1 %d\r\n" % (len(MSG1) + MSG1.count(b"\n")))

    def test_noPlaintextLoginBeforeSTLS(self):
        server = Server(self, "plaintext_on_loopback = no")
        server.deliver(MSG1)
        secret = PASSWORD.replace(" ", "%20").replace("&", "%26")
        # Without TLS nothing offers a plaintext login, so curl never sends
        # the password and gives up...
        result = self.curl("-v", f"pop3://edouard:{secret}@127.0.0.1:{server.port}/")
        self.assertEqual(result.returncode, 67, result.stderr)
        self.assertNotIn(b"> USER", result.stderr)
        self.assertNotIn(b"> AUTH", result.stderr)
        self.assertIn(b"< STLS", result.stderr)
        # ...and with STLS it logs in.
        result = self.curl(
            "-v", "--ssl-reqd", "--cacert", server.cert,
            "--resolve", f"mail.domaineel.rt:{server.port}:127.0.0.1",
            f"pop3://edouard:{secret}@mail.domaineel.rt:{server.port}/1",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"> STLS", result.stderr)
        self.assertEqual(result.stdout, MSG1.replace(b"\n", b"\r\n"))


class FetchmailTests(unittest.TestCase):
    def fetch(self, server, port: int, options: str) -> tuple[str, bytes]:
        fetchmail = requireTool("fetchmail", "fetchmail")
        home = server.root / "fetchmail"
        home.mkdir(exist_ok=True)
        out = home / "out"
        rc = home / "rc"
        rc.write_text(
            "set no syslog\n"
            f"poll 127.0.0.1 service {port} protocol pop3 timeout 30\n"
            f'  user "edouard" there with password "{PASSWORD}" is "root" here\n'
            f"  {options} sslcertfile {server.cert} no sslcertck\n"
            "  fetchall\n"
            f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
        )
        rc.chmod(0o600)
        result = subprocess.run(
            [fetchmail, "-f", str(rc), "-v", "--nodetach"],
            env={**os.environ, "FETCHMAILHOME": str(home)},
            capture_output=True,
            timeout=120,
        )
        log = (result.stdout + result.stderr).decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, log)
        return log, out.read_bytes()

    def test_stls(self):
        server = Server(self)
        server.deliver(MSG1, MSG2)
        log, mail = self.fetch(server, server.port, 'sslproto "TLS1.2+"')
        self.assertIn("POP3> STLS", log)
        self.assertIn("2 messages", log)
        self.assertIn(b"\n.leading dot\nbody one\n", mail.replace(b"\r\n", b"\n"))
        self.assertIn(b"Subject: two", mail)
        self.assertEqual(server.files(), {"new": [], "cur": []})

    def test_mailDeliveredBySMTP(self):
        """
        The whole path: smtplib hands a message to maillab's SMTP server,
        which delivers it to the Maildir; fetchmail picks it up over STLS
        and deletes it.
        """
        import smtplib

        server = Server(self, smtp=True)
        with smtplib.SMTP("127.0.0.1", server.smtpPort, timeout=30) as client:
            refused = client.sendmail(
                "anne@example.org", ["edouard@domaineel.rt"], b"Subject: by smtp\r\n\r\nhello\r\n"
            )
        self.assertEqual(refused, {})
        log, mail = self.fetch(server, server.port, 'sslproto "TLS1.2+"')
        self.assertIn("POP3> STLS", log)
        self.assertIn(b"Delivered-To: edouard@domaineel.rt", mail)
        self.assertIn(b"Subject: by smtp", mail)
        self.assertEqual(server.files(), {"new": [], "cur": []})

    def test_pop3s(self):
        server = Server(self)
        server.deliver(MSG1)
        log, mail = self.fetch(server, server.sport, "ssl")
        self.assertIn("1 message", log)
        self.assertIn(b"Subject: one", mail)
        self.assertEqual(server.files(), {"new": [], "cur": []})


class DovecotPOP3:
    """
    Debian's Dovecot serving POP3 on the same Maildir (userdb from the same
    passwd-file), with a private config; nothing of the system's touched.
    """

    def __init__(self, testCase, server: Server):
        self.binary = requireTool("dovecot", "dovecot-pop3d")
        if not os.path.exists("/usr/lib/dovecot/pop3"):
            raise AssertionError("Dovecot's pop3 is not installed: apt-get install -y dovecot-pop3d")
        # base_dir holds UNIX sockets: the trial temp path is too long for
        # sun_path, so use a short directory of our own.
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="mldc-"))
        self.dir.chmod(0o755)
        testCase.addCleanup(shutil.rmtree, self.dir, True)
        for sub in ("run", "state"):
            (self.dir / sub).mkdir(parents=True)
        self.port = freePort()
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(
            f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {server.root}/users
}}
userdb {{
  driver = passwd-file
  args = {server.root}/users
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
        )
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        testCase.addCleanup(self.stop)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"Dovecot did not start: {self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def stop(self):
        stopProcess(self.process)

    def uidl(self) -> list[bytes]:
        client = poplib.POP3("127.0.0.1", self.port, timeout=30)
        try:
            login(client)
        except poplib.error_proto:
            raise AssertionError(self.log())
        result = client.uidl()[1]
        client.quit()
        return result


class DovecotInteropTests(unittest.TestCase):
    """
    An administrator can switch between Dovecot and maillab on the same
    Maildir without POP3 clients downloading everything again: both give
    every message the same UIDL, whichever of them saw the mail first.
    """

    def maillabUidl(self, server) -> list[bytes]:
        client = server.pop3()
        login(client)
        result = client.uidl()[1]
        client.quit()
        return result

    def test_sameUIDLAsDovecot(self):
        # uid 8 is Debian's "mail" user: Dovecot refuses to run mail as root
        server = Server(self, uid=8)
        server.deliver(MSG1, MSG2)
        dovecot = DovecotPOP3(self, server)
        # Dovecot sees the mail first (and writes dovecot-uidlist)...
        first = dovecot.uidl()
        self.assertEqual(len(first), 2)
        self.assertEqual(self.maillabUidl(server), first)
        # ...then maillab sees new mail first.
        server.deliver(MSG1)
        mine = self.maillabUidl(server)
        self.assertEqual(len(mine), 3)
        self.assertEqual(dovecot.uidl(), mine)
