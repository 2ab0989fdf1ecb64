"""
Real IMAP clients against C{twistd maillab} over loopback sockets: mbsync
(apt C{isync}), curl, mutt (apt C{mutt}, in a C{tmux} pane), fetchmail,
offlineimap (PyPI C{offlineimap}) and Python's imaplib, over STARTTLS on
C{[imap]} and implicit TLS on C{[imaps]}, each verifying the server's
certificate.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial import unittest

from tests.imap_servers import PASSWORD, USER, IdleSession, Maillab
from tests.support import requireTool

BIN = Path(sys.executable).parent

MSG1 = b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: maillab one\r\n\r\nbody one\r\n"
MSG2 = b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: maillab two\r\n\r\nbody two\r\n"
MSG3 = b"From: edouard@domaineel.rt\r\nTo: anne@domaineel.rt\r\nSubject: maillab three\r\n\r\nbody three\r\n"
MSG4 = b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: maillab four\r\n\r\nbody four\r\n"


def run(testCase, argv, timeout=120, **kwargs) -> str:
    """
    Run a client; its output (stdout and stderr); the test fails with
    that output unless it exits with 0.
    """
    result = subprocess.run(argv, capture_output=True, timeout=timeout, **kwargs)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    testCase.assertEqual(result.returncode, 0, f"{argv[0]} failed:\n{output}")
    return output


def serverView(server, mailbox: str = "INBOX") -> dict[str, set[str]]:
    """
    Subject -> flags of every message of C{mailbox}, read over IMAPS.
    """
    client = server.imaps()
    try:
        typ, (count,) = client.select(mailbox, readonly=True)
        assert typ == "OK", typ
        if count == b"0":
            return {}
        typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        view = {}
        if typ == "OK" and data != [None]:
            for item in data:
                if isinstance(item, tuple):
                    flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                    subject = email.message_from_bytes(item[1])["Subject"]
                    view[subject] = set(flags) - {"\\Recent"}
        return view
    finally:
        client.logout()


def localView(maildir: Path) -> dict[str, str]:
    """
    Subject -> Maildir info flags (the letters after C{:2,}) of a local
    Maildir folder.
    """
    view = {}
    for sub in ("new", "cur"):
        for name in os.listdir(maildir / sub):
            with open(maildir / sub / name, "rb") as f:
                subject = email.message_from_binary_file(f)["Subject"]
            view[subject] = name.split(":2,", 1)[1] if ":2," in name else ""
    return view


class ClientTests:
    """
    The real clients' tests, written against any server of
    C{tests.imap_servers} (C{makeServer}).
    """

    makeServer = Maillab

    # -- mbsync --------------------------------------------------------------

    def test_mbsync(self):
        """
        mbsync (isync) syncs both ways over STARTTLS: the server's mail and
        folders reach the local Maildir; a flag set, a deletion and a new
        message made locally reach the server; then the server's new flag
        and new mail reach the local Maildir.
        """
        mbsync = requireTool("mbsync", "isync")
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        client = server.imaps()
        self.assertEqual(client.create("Work")[0], "OK")
        self.assertEqual(client.append("Work", None, None, MSG4)[0], "OK")
        client.logout()
        local = server.root / "local"
        local.mkdir()
        rc = server.root / "mbsyncrc"
        rc.write_text(
            f"""
IMAPAccount far
Host localhost
Port {server.port}
User {USER}
Pass "{PASSWORD}"
SSLType STARTTLS
CertificateFile {server.cert}

IMAPStore far
Account far

MaildirStore near
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel both
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
"""
        )
        sync = [mbsync, "-c", str(rc), "-a"]
        run(self, sync)
        self.assertEqual(localView(local / "INBOX"), {"maillab one": "", "maillab two": ""})
        self.assertEqual(localView(local / "Work"), {"maillab four": ""})

        # Locally: read "one", delete "two", write "three".
        inbox = local / "INBOX"
        for sub in ("new", "cur"):
            for name in os.listdir(inbox / sub):
                with open(inbox / sub / name, "rb") as f:
                    subject = email.message_from_binary_file(f)["Subject"]
                base = name.split(":2,", 1)[0]
                flag = {"maillab one": "S", "maillab two": "ST"}[subject]
                os.rename(inbox / sub / name, inbox / "cur" / f"{base}:2,{flag}")
        (inbox / "new" / f"{int(time.time())}.local1.host").write_bytes(MSG3)
        run(self, sync)
        self.assertEqual(serverView(server), {"maillab one": {"\\Seen"}, "maillab three": set()})
        self.assertEqual(localView(inbox), {"maillab one": "S", "maillab three": ""})

        # On the server: flag "three", deliver "four".
        client = server.imaps()
        client.select("INBOX")
        typ, (uids,) = client.uid("SEARCH", "SUBJECT", '"maillab three"')
        self.assertEqual(client.uid("STORE", uids.decode(), "+FLAGS", "(\\Flagged)")[0], "OK")
        client.logout()
        server.deliver(MSG4)
        run(self, sync)
        self.assertEqual(localView(inbox), {"maillab one": "S", "maillab three": "F", "maillab four": ""})

    # -- curl ----------------------------------------------------------------

    def curl(self, server, *args) -> str:
        curl = requireTool("curl", "curl")
        return run(
            self, [curl, "-sS", "--max-time", "60", "--cacert", server.cert, "-u", f"{USER}:{PASSWORD}", *args]
        )

    def test_curlSTARTTLS(self):
        """
        curl over C{imap://} with C{--ssl-reqd} upgrades with STARTTLS,
        then lists the folders, fetches a message by UID and examines INBOX.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        base = f"imap://127.0.0.1:{server.port}"
        listing = self.curl(server, "--ssl-reqd", "-v", f"{base}/")
        self.assertIn("STARTTLS", listing)
        self.assertRegex(listing, r"\* LIST \([^)]*\) \"/\" \"?INBOX\"?")
        message = self.curl(server, "--ssl-reqd", f"{base}/INBOX;UID=2")
        self.assertEqual(message.encode(), MSG2)
        examine = self.curl(server, "--ssl-reqd", f"{base}/", "-X", "EXAMINE INBOX")
        self.assertIn("* 2 EXISTS", examine)
        self.assertIn("[UIDNEXT 3]", examine)
        # EXAMINE is read-only: fetching "one" by UID over curl (BODY[])
        # set \Seen, nothing else did.
        self.curl(server, "--ssl-reqd", f"{base}/INBOX;UID=1")
        self.assertEqual(serverView(server), {"maillab one": {"\\Seen"}, "maillab two": {"\\Seen"}})

    def test_curlIMAPS(self):
        """
        curl over C{imaps://}: a listing, a message by UID and a section.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        base = f"imaps://127.0.0.1:{server.sport}"
        self.assertIn("INBOX", self.curl(server, f"{base}/"))
        self.assertEqual(self.curl(server, f"{base}/INBOX;UID=1").encode(), MSG1)
        self.assertEqual(self.curl(server, f"{base}/INBOX;UID=2;SECTION=TEXT").encode(), b"body two\r\n")

    def test_curlWrongPassword(self):
        """
        curl after STARTTLS with a wrong password: the LOGIN is refused
        and curl says so with its exit code 67 (login denied).
        """
        server = self.makeServer(self)
        curl = requireTool("curl", "curl")
        result = subprocess.run(
            [curl, "-sS", "--ssl-reqd", "--cacert", server.cert, "-u", f"{USER}:wrong",
             f"imap://127.0.0.1:{server.port}/"],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 67, result.stderr)

    # -- mutt ----------------------------------------------------------------

    def mutt(self, server, url: str, expected: list[str]) -> str:
        """
        Run mutt in a tmux pane on C{url} until its index shows every
        subject of C{expected}; the screen.
        """
        mutt = requireTool("mutt", "mutt")
        tmux = requireTool("tmux", "tmux")
        rc = server.root / "muttrc"
        rc.write_text(
            f'set folder = "{url.rsplit("/", 1)[0]}/"\n'
            f'set spoolfile = "{url}"\n'
            f'set imap_user = "{USER}"\n'
            f'set imap_pass = "{PASSWORD}"\n'
            f'set certificate_file = "{server.cert}"\n'
            f'set ssl_ca_certificates_file = "{server.cert}"\n'
            "set ssl_starttls = yes\n"
            "set ssl_force_tls = yes\n"
            "set imap_passive = no\n"
            "set header_cache = ''\n"
            "set message_cachedir = ''\n"
            "set mbox_type = Maildir\n"
            "set index_format = '%4C %Z %s'\n"
            "set sort = mailbox-order\n"
        )
        # A tmux server of its own per call: after "q" the previous one
        # exits, and a new session started on its socket while it does
        # fails ("server exited unexpectedly").
        self.tmuxServers = getattr(self, "tmuxServers", 0) + 1
        socketPath = str(server.root / f"tmux{self.tmuxServers}.sock")
        tmuxCmd = [tmux, "-S", socketPath]
        env = {**os.environ, "TERM": "xterm", "HOME": str(server.root)}
        run(
            self,
            [*tmuxCmd, "new-session", "-d", "-x", "160", "-y", "40", f"{mutt} -n -F {rc} -f '{url}'"],
            env=env,
        )
        self.addCleanup(subprocess.run, [*tmuxCmd, "kill-server"], capture_output=True)
        screen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmuxCmd, "capture-pane", "-p"], capture_output=True, env=env
            ).stdout.decode("utf-8", "replace")
            if all(subject in screen for subject in expected):
                break
            time.sleep(0.2)
        self.assertTrue(all(subject in screen for subject in expected), f"mutt's screen:\n{screen}")
        subprocess.run([*tmuxCmd, "send-keys", "q"], capture_output=True, env=env)
        return screen

    def test_mutt(self):
        """
        mutt reads INBOX over STARTTLS and a folder over IMAPS: its index
        shows the subjects, unread and read as the server flags them.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        client = server.imaps()
        client.create("Work")
        client.append("Work", "(\\Seen)", None, MSG3)
        client.logout()
        screen = self.mutt(server, f"imap://localhost:{server.port}/INBOX", ["maillab one", "maillab two"])
        self.assertRegex(screen, r"1 N +maillab one")
        self.assertRegex(screen, r"2 N +maillab two")
        screen = self.mutt(server, f"imaps://localhost:{server.sport}/Work", ["maillab three"])
        self.assertRegex(screen, r"1 +maillab three")

    # -- fetchmail -----------------------------------------------------------

    def fetchmail(self, server, options: str) -> tuple[str, bytes]:
        fetchmail = requireTool("fetchmail", "fetchmail")
        home = server.root / "fetchmail"
        home.mkdir(exist_ok=True)
        out = home / "out"
        rc = home / "rc"
        rc.write_text(
            "set no syslog\n"
            f"poll localhost service {server.port} protocol IMAP timeout 30\n"
            f'  user "{USER}" there with password "{PASSWORD}" is "root" here\n'
            f'  sslproto "TLS1.2+" sslcertfile {server.cert} sslcertck\n'
            f"  {options}\n"
            f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
        )
        rc.chmod(0o600)
        log = run(self, [fetchmail, "-f", str(rc), "-v", "--nodetach"], env={**os.environ, "FETCHMAILHOME": str(home)})
        return log, out.read_bytes()

    def test_fetchmailKeep(self):
        """
        fetchmail over IMAP (STARTTLS) with C{keep}: both messages are
        delivered to the mda; they stay on the server, marked \\Seen.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        log, mail = self.fetchmail(server, "keep")
        self.assertIn("IMAP> A0", log)
        self.assertIn("STARTTLS", log)
        self.assertIn(b"Subject: maillab one", mail)
        self.assertIn(b"Subject: maillab two", mail)
        self.assertEqual(serverView(server), {"maillab one": {"\\Seen"}, "maillab two": {"\\Seen"}})

    def test_fetchmailNoKeep(self):
        """
        fetchmail with C{nokeep} deletes and expunges what it delivered.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        log, mail = self.fetchmail(server, "nokeep")
        self.assertIn(b"body one", mail)
        self.assertIn(b"body two", mail)
        self.assertEqual(serverView(server), {})
        self.assertEqual([os.listdir(server.maildir / sub) for sub in ("new", "cur")], [[], []])

    # -- offlineimap ---------------------------------------------------------

    def test_offlineimap(self):
        """
        offlineimap (PyPI) syncs over IMAPS both ways: mail down, then a
        local flag and a local new message up.
        """
        offlineimap = str(BIN / "offlineimap")
        if not os.path.exists(offlineimap):
            raise AssertionError("offlineimap is not installed: pip install -e '.[test]'")
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        local = server.root / "oi"
        rc = server.root / "offlineimaprc"
        rc.write_text(
            f"""
[general]
accounts = test
metadata = {server.root}/oi-meta
ui = basic

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {server.sport}
ssl = yes
sslcacertfile = {server.cert}
remoteuser = {USER}
remotepass = {PASSWORD}
"""
        )
        sync = [offlineimap, "-c", str(rc), "-o", "-u", "basic"]
        run(self, sync, env={**os.environ, "HOME": str(server.root)})
        inbox = local / "INBOX"
        self.assertEqual(localView(inbox), {"maillab one": "", "maillab two": ""})
        for name in os.listdir(inbox / "cur") + os.listdir(inbox / "new"):
            sub = "cur" if (inbox / "cur" / name).exists() else "new"
            with open(inbox / sub / name, "rb") as f:
                if email.message_from_binary_file(f)["Subject"] == "maillab one":
                    os.rename(inbox / sub / name, inbox / "cur" / (name.split(":2,")[0] + ":2,FS"))
        (inbox / "new" / f"{int(time.time())}_0.1.host").write_bytes(MSG3)
        run(self, sync, env={**os.environ, "HOME": str(server.root)})
        self.assertEqual(
            serverView(server),
            {"maillab one": {"\\Seen", "\\Flagged"}, "maillab two": set(), "maillab three": set()},
        )

    # -- imaplib -------------------------------------------------------------

    def test_imaplibLogin(self):
        """
        imaplib logs in with LOGIN after STARTTLS and on IMAPS, and with
        AUTHENTICATE PLAIN; a wrong password is refused with NO.
        """
        server = self.makeServer(self)
        client = server.imap(login=False)
        self.assertIn("STARTTLS", client.capabilities)
        client.starttls(ssl_context=server.clientContext())
        self.assertEqual(client.login(USER, PASSWORD)[0], "OK")
        client.logout()
        client = server.imaps(login=False)
        self.assertEqual(
            client.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())[0], "OK"
        )
        self.assertEqual(client.state, "AUTH")
        client.logout()
        client = server.imaps(login=False)
        with self.assertRaises(client.error):
            client.login(USER, "wrong")
        client.logout()

    def test_imaplibSession(self):
        """
        SELECT, FETCH, STORE, SEARCH, APPEND, COPY, MOVE and EXPUNGE from
        imaplib, with the answers checked.
        """
        server = self.makeServer(self)
        server.deliver(MSG1, MSG2)
        client = server.imaps()
        typ, data = client.select("INBOX")
        self.assertEqual((typ, data), ("OK", [b"2"]))
        self.assertEqual(client.response("UIDVALIDITY")[1][0].isdigit(), True)
        self.assertEqual(client.response("UIDNEXT")[1], [b"3"])
        typ, data = client.fetch("1", "(UID RFC822.SIZE BODY[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], MSG1)
        self.assertIn(b"RFC822.SIZE %d" % len(MSG1), data[0][0])
        # A non-PEEK body fetch set \Seen (RFC 3501 6.4.5).
        typ, data = client.fetch("1", "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])
        typ, data = client.store("2", "+FLAGS", "(\\Flagged $Work)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"\\Flagged", data[0])
        self.assertIn(b"$Work", data[0])
        self.assertEqual(client.search(None, "UNSEEN"), ("OK", [b"2"]))
        self.assertEqual(client.search(None, "KEYWORD", "$Work"), ("OK", [b"2"]))
        self.assertEqual(client.search(None, "BODY", "one"), ("OK", [b"1"]))
        self.assertEqual(client.create("Projects")[0], "OK")
        typ, data = client.append("Projects", "(\\Seen)", None, MSG3)
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\[APPENDUID \d+ 1\]")
        typ, data = client.copy("1", "Projects")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\[COPYUID \d+ 1 2\]")
        typ, data = client._simple_command("MOVE", "2", "Projects")
        self.assertEqual(typ, "OK")
        self.assertEqual(client.select("INBOX"), ("OK", [b"1"]))
        self.assertEqual(client.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        typ, data = client.expunge()
        self.assertEqual((typ, data), ("OK", [b"1"]))
        client.logout()
        self.assertEqual(serverView(server), {})
        self.assertEqual(
            serverView(server, "Projects"),
            {"maillab one": {"\\Seen"}, "maillab two": {"\\Flagged", "$Work"}, "maillab three": {"\\Seen"}},
        )

    def test_idlePushesWithinASecond(self):
        """
        A session in IDLE (raw socket: imaplib has no IDLE before 3.14)
        hears another session's APPEND as EXISTS and its STORE as FETCH,
        each within a second; only DONE ends the IDLE.
        """
        server = self.makeServer(self)
        server.deliver(MSG1)
        idle = IdleSession(self, server)
        other = server.imaps()
        other.append("INBOX", None, None, MSG2)
        idle.expect(rb"^\* 2 EXISTS\r\n$")
        other.select("INBOX")
        other.store("1", "+FLAGS", "(\\Flagged)")
        idle.expect(rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged")
        other.logout()
        idle.done()


class MaillabClientTests(ClientTests, unittest.TestCase):
    """
    The real clients against C{twistd maillab}.
    """
