"""
IMAP servers for the real-client tests, each a subprocess on 127.0.0.1
with a plain/STARTTLS port (C{port}) and an implicit-TLS port (C{sport}),
one account C{edouard} (uid 8, Debian's "mail" user: Dovecot refuses to
serve mail as root) whose Maildir is C{~/Maildir}, and a certificate for
C{mail.domaineel.rt} that clients verify:

  - L{Maillab}: C{twistd -n maillab} with C{[imap]} and C{[imaps]};
  - L{Dovecot}: Debian's Dovecot (C{dovecot-imapd}) with a throwaway
    config, optionally on another server's Maildir (the same passwd-file).

Both deliver through the store's delivery transaction (tmp/, fsync, new/).
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.task import Clock

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import load

from tests.support import deliverOutOfProcess, freePort, requireTool, sha512crypt, stopProcess, syncResult

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
HOSTNAME = "mail.domaineel.rt"
USER = "edouard"
PASSWORD = "Tr0ub4dor&3 x"
MAIL_UID = 8


def makeRoot(testCase) -> Path:
    """
    A directory tree Dovecot's unprivileged processes can walk (trial's
    temporary directory is mode 0700 and too deep for UNIX socket paths),
    with the passwd-file, a home for C{edouard} owned by uid 8 and a
    certificate for L{HOSTNAME}, C{localhost} and 127.0.0.1 (subjectAltName
    entries: mbsync, mutt, fetchmail and offlineimap check names only, so
    they connect to C{localhost}; curl and Python verify the address).
    """
    root = Path(tempfile.mkdtemp(prefix="mlimap-"))
    testCase.addCleanup(shutil.rmtree, root, True)
    root.chmod(0o755)
    home = root / "home" / USER
    home.mkdir(parents=True)
    (root / "home").chmod(0o755)
    os.chown(home, MAIL_UID, MAIL_UID)
    home.chmod(0o700)
    (root / "users").write_text(
        f"{USER}:{{SHA512-CRYPT}}{sha512crypt(PASSWORD)}:{MAIL_UID}:{MAIL_UID}::{home}\n"
    )
    (root / "users").chmod(0o644)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
            "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME},DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    (root / "key.pem").chmod(0o644)
    return root


class _Server:
    root: Path
    port: int
    sport: int

    @property
    def cert(self) -> str:
        return str(self.root / "cert.pem")

    @property
    def maildir(self) -> Path:
        return self.root / "home" / USER / "Maildir"

    def clientContext(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)

    def imap(self, login: bool = True) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        if login:
            client.login(USER, PASSWORD)
        return client

    def imaps(self, login: bool = True) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL("127.0.0.1", self.sport, ssl_context=self.clientContext(), timeout=30)
        if login:
            client.login(USER, PASSWORD)
        return client

    def deliver(self, *messages: bytes) -> list[str]:
        """
        Deliver through the store's transaction; the file names in new/.
        """
        portal = makePortal(_deliveryConfig(self.root), Clock(), runner=runSynchronously)
        return deliverOutOfProcess(syncResult(portal.directory.lookup(USER)), messages, HOSTNAME)


def _deliveryConfig(root: Path):
    ini = root / "deliver.ini"
    if not ini.exists():
        ini.write_text(
            f"[server]\nhostname = {HOSTNAME}\ndomain = domaineel.rt\nstate_directory = {root}/var\n"
            f"[auth]\ncheckers = passwd-file\npasswd_file = {root}/users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
        )
    return load(ini)


class Maillab(_Server):
    """
    C{twistd -n maillab} with IMAP (STARTTLS) and IMAPS on 127.0.0.1.
    """

    def __init__(self, testCase, root: Path | None = None, extra: str = "", smtp: bool = False):
        self.root = root or makeRoot(testCase)
        self.port = freePort()
        self.sport = freePort()
        self.smtpPort = freePort()
        smtpSection = ""
        if smtp:
            smtpSection = (
                f"[smtp]\nenabled = yes\nlisten = tcp:{self.smtpPort}:interface=127.0.0.1\n"
                f"myhostname = {HOSTNAME}\nmydestination = $myhostname, domaineel.rt\n"
                "mynetworks = 127.0.0.0/8\n"
            )
        self.ini = self.root / "maillab.ini"
        self.ini.write_text(
            f"[server]\nhostname = {HOSTNAME}\ndomain = domaineel.rt\nstate_directory = var\n"
            "[tls]\ncertificate = cert.pem\nprivate_key = key.pem\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
            f"[imap]\nenabled = yes\nlisten = tcp:{self.port}:interface=127.0.0.1\n{extra}\n"
            f"[imaps]\nenabled = yes\nlisten = tcp:{self.sport}:interface=127.0.0.1\n" + smtpSection
        )
        self.process = None
        self.output = ""
        self.start()
        testCase.addCleanup(self.stop)

    def start(self):
        # The log goes to a file, not a pipe: a pipe nobody reads while
        # the clients run would fill and block the server's logging.
        self.log = self.root / "twistd.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        patterns = [rf"imap listening on 127\.0\.0\.1:{self.port}\b", rf"imaps listening on 127\.0\.0\.1:{self.sport}\b"]
        deadline = time.monotonic() + 60
        while not all(re.search(p, self.output) for p in patterns):
            self.output = self.log.read_text(errors="replace")
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {patterns!r} in:\n{self.output}")
            time.sleep(0.05)

    def stop(self):
        process, self.process = self.process, None
        if process is not None:
            stopProcess(process)
        self.output = self.log.read_text(errors="replace")


class Dovecot(_Server):
    """
    Debian's Dovecot serving IMAP (STARTTLS) and IMAPS with a private
    config on the account of C{root} (a L{makeRoot} tree, possibly one a
    L{Maillab} also serves); nothing of the system's configuration touched.
    """

    def __init__(self, testCase, root: Path | None = None):
        self.binary = requireTool("dovecot", "dovecot-core")
        if not os.path.exists("/usr/lib/dovecot/imap"):
            raise AssertionError("Dovecot's imap is not installed: apt-get install -y dovecot-imapd")
        self.root = root or makeRoot(testCase)
        self.dir = Path(tempfile.mkdtemp(prefix="mldc-"))
        self.dir.chmod(0o755)
        testCase.addCleanup(shutil.rmtree, self.dir, True)
        for sub in ("run", "state"):
            (self.dir / sub).mkdir()
        self.port = freePort()
        self.sport = freePort()
        conf = self.dir / "dovecot.conf"
        conf.write_text(
            f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.root}/cert.pem
ssl_key = <{self.root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {self.root}/users
}}
userdb {{
  driver = passwd-file
  args = {self.root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.sport}
    ssl = yes
  }}
}}
"""
        )
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        testCase.addCleanup(self.stop)
        deadline = time.monotonic() + 30
        for port in (self.port, self.sport):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
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


class IdleSession:
    """
    A raw IMAPS session to a server, logged in with INBOX selected, that
    enters IDLE (imaplib has none before Python 3.14).
    """

    def __init__(self, testCase, server):
        self.testCase = testCase
        raw = socket.create_connection(("127.0.0.1", server.sport), timeout=10)
        self.conn = server.clientContext().wrap_socket(raw, server_hostname="127.0.0.1")
        testCase.addCleanup(self.conn.close)
        self.reader = self.conn.makefile("rb")
        self.reader.readline()
        self.command(b"a1", b'LOGIN %s "%s"' % (USER.encode(), PASSWORD.encode()))
        self.command(b"a2", b"SELECT INBOX")
        self.conn.sendall(b"a3 IDLE\r\n")
        line = self.reader.readline()
        testCase.assertTrue(line.startswith(b"+ "), line)

    def command(self, tag: bytes, line: bytes) -> list[bytes]:
        self.conn.sendall(tag + b" " + line + b"\r\n")
        lines = []
        while True:
            got = self.reader.readline()
            self.testCase.assertTrue(got, lines)
            lines.append(got)
            if got.startswith(tag + b" "):
                self.testCase.assertTrue(got.startswith(tag + b" OK"), lines)
                return lines

    def expect(self, pattern: bytes, within: float = 1.0) -> bytes:
        """
        The first pushed line matching C{pattern}, which must come within
        C{within} seconds (other untagged answers may come first).
        """
        deadline = time.monotonic() + within
        seen = []
        while time.monotonic() < deadline:
            self.conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                line = self.reader.readline()
            except (socket.timeout, ssl.SSLError):
                break
            seen.append(line)
            if re.search(pattern, line):
                return line
        self.testCase.fail(f"no {pattern!r} within {within} s: {seen!r}")

    def done(self):
        self.conn.settimeout(10)
        self.conn.sendall(b"DONE\r\n")
        while True:
            line = self.reader.readline()
            self.testCase.assertTrue(line)
            if line.startswith(b"a3 "):
                self.testCase.assertTrue(line.startswith(b"a3 OK"), line)
                break
        self.command(b"a4", b"LOGOUT")
