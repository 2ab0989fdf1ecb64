"""
Mail from the neighbour, as in the seed: swaks finds the server by MX
(through the CNAME) and delivers on port 25; the message is in
C{~edouard/Maildir/new/} with the seed's headers; curl (IMAP), mutt
(IMAP) and fetchmail (POP3) read it.  Then SASL: relaying to an outside
domain is refused until the neighbour logs in on 587 after STARTTLS, and
a logged-in user cannot send as another.
"""

from __future__ import annotations

import os
import re

from twisted.trial import unittest

from tests.e2e.lab import PASSWORDS, Lab
from tests.support import requireTool

SUBJECT = "t"
BODY = "sdgfd"


def swaksArgs(lab, *args):
    """
    swaks with the seed's envelope; on loopback it is given the server's
    address and port, in the namespace form it looks up the MX itself.
    """
    requireTool("swaks", "swaks")
    where = [] if lab.netns else ["--server", f"{lab.address}:{lab.ports['smtp']}"]
    return ["swaks", "--helo", "antenn04.univ-lr.fr", "--from", "admin@localhost", *where, *args]


class DeliveryTests(unittest.TestCase):
    def send(self, lab, to="edouard@smtp.domaineel.rt"):
        result = lab.onNeighbour(swaksArgs(
            lab, "--to", to, "--header", f"Subject: {SUBJECT}", "--body", BODY,
            "--header", "X-Mailer: mail (GNU Mailutils 2.99.98)"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_swaksByMX(self):
        """
        swaks with no --server resolves the MX of smtp.domaineel.rt (a
        CNAME to serveur), connects to port 25 of the server host, and the
        message lands in edouard's Maildir/new with the seed's headers.
        """
        lab = Lab(self)
        transcript = self.send(lab)
        if lab.netns:
            self.assertIn(f"=== Trying smtp.domaineel.rt:25", transcript)
            self.assertIn(f"=== Connected to smtp.domaineel.rt", transcript)
        self.assertRegex(transcript, r"<-  250 2\.0\.0 Ok: queued as \w+")
        new = sorted((lab.maildir("edouard") / "new").iterdir())
        self.assertEqual(len(new), 1)
        # A Maildir unique name: time.unique.host (the seed's host was its own)
        self.assertRegex(new[0].name, r"^\d+\.\S+\.smtp\.domaineel\.rt(,|$)")
        message = new[0].read_text()
        head, _, body = message.partition("\n\n")
        head += "\n"
        self.assertRegex(head, r"^Return-Path: <admin@localhost>\n")
        self.assertIn("\nX-Original-To: edouard@smtp.domaineel.rt\n", head)
        self.assertIn("\nDelivered-To: edouard@", head)
        peer = re.escape(lab.address if not lab.netns else "192.0.2.2")
        self.assertRegex(
            head, rf"\nReceived: from antenn04\.univ-lr\.fr \(\S+ \[{peer}\]\)\n\s+by smtp\.domaineel\.rt "
                  rf"\(maillab\) with ESMTP id \w+\n\s+for <edouard@smtp\.domaineel\.rt>; ")
        self.assertIn(f"\nSubject: {SUBJECT}\n", head)
        self.assertIn("\nX-Mailer: mail (GNU Mailutils 2.99.98)\n", head)
        self.assertEqual(body.strip(), BODY)

    def test_swaksByDomainMX(self):
        """
        Mail to the domain itself, which has no address record: swaks
        can only reach the server through the MX (10 smtp.domaineel.rt).
        """
        lab = Lab(self)
        transcript = self.send(lab, to="utilisateur@domaineel.rt")
        if lab.netns:
            self.assertIn("=== Trying smtp.domaineel.rt:25", transcript)
        self.assertRegex(transcript, r"<-  250 2\.0\.0 Ok: queued as \w+")
        (message,) = lab.messages("utilisateur")
        self.assertIn(b"\nDelivered-To: utilisateur@domaineel.rt\n", message)

    def test_readers(self):
        """
        The delivered message read back from the neighbour by curl over
        IMAP (STARTTLS), by mutt over IMAP (STARTTLS) and by fetchmail
        over POP3 (STLS), which deletes it.
        """
        lab = Lab(self)
        self.send(lab)
        password = PASSWORDS["edouard"]
        requireTool("curl", "curl")
        imap = f"imap://{lab.address}:{lab.ports['imap']}/INBOX;UID=1"
        result = lab.onNeighbour(["curl", "-sS", "--ssl-reqd", "--cacert", str(lab.cert), "-k",
                                  "-u", f"edouard:{password}", imap])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"\nSubject: {SUBJECT}\n", result.stdout)
        self.assertTrue(result.stdout.rstrip().endswith(BODY), result.stdout)

        self.assertIn(f"Subject: {SUBJECT}\n", self.mutt(lab, password))

        fetched = self.fetchmail(lab, password)
        self.assertIn(f"Subject: {SUBJECT}", fetched)
        self.assertIn(BODY, fetched)
        self.assertEqual(lab.messages("edouard"), [])

    def mutt(self, lab, password):
        """
        mutt in batch mode under script(1) (it wants a terminal): open the
        INBOX over IMAP with STARTTLS required, copy message 1 to a file,
        quit.
        """
        requireTool("mutt", "mutt")
        home = lab.root / "mutt"
        home.mkdir()
        out = home / "saved"
        rc = home / "muttrc"
        rc.write_text(
            f"set folder=imap://edouard@{lab.address}:{lab.ports['imap']}/\n"
            f"set imap_pass=\"{password}\"\nset ssl_starttls=yes\nset ssl_force_tls=yes\n"
            f"set certificate_file={lab.cert}\nset ssl_verify_host=no\nset ssl_verify_dates=no\n"
            "set confirmappend=no\nset confirmcreate=no\nset mbox_type=mbox\nset header_cache=\n"
            "set delete=no\nset move=no\nset timeout=5\n"
            f"push '<copy-message>{out}<enter><quit>'\n"
        )
        result = lab.onNeighbour(
            ["script", "-qec", f"mutt -n -F {rc} -f =INBOX", "/dev/null"],
            env={**os.environ, "HOME": str(home), "TERM": "xterm"}, timeout=60)
        self.assertTrue(out.exists(), result.stdout + result.stderr)
        return out.read_text()

    def fetchmail(self, lab, password):
        requireTool("fetchmail", "fetchmail")
        home = lab.root / "fetchmail"
        home.mkdir()
        out = home / "out"
        rc = home / "rc"
        rc.write_text(
            "set no syslog\n"
            f"poll {lab.address} service {lab.ports['pop3']} protocol pop3 timeout 30\n"
            f'  user "edouard" there with password "{password}" is "root" here\n'
            f"  sslproto 'TLS1.2+' sslcertfile {lab.cert} no sslcertck\n"
            "  fetchall\n"
            f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
        )
        rc.chmod(0o600)
        result = lab.onNeighbour(["fetchmail", "-f", str(rc), "-v", "--nodetach"],
                                 env={**os.environ, "FETCHMAILHOME": str(home)}, timeout=120)
        log = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, log)
        self.assertIn("POP3> STLS", log)
        return out.read_text()


class RelayTests(unittest.TestCase):
    def swaks(self, lab, port, *args):
        result = lab.onNeighbour(["swaks", "--helo", "antenn04.univ-lr.fr", "--server",
                                  f"{lab.address}:{lab.ports[port]}", "--to", "ami@example.org", *args])
        return result.returncode, result.stdout + result.stderr

    def test_relayOnlyAfterLogin(self):
        """
        The seed's SASL section: the neighbour is not in mynetworks, so
        mail for an outside domain is refused on 25 and, without a login,
        on 587; after STARTTLS and AUTH on 587 it is queued; a logged-in
        user cannot send as another local user.
        """
        lab = Lab(self)
        password = PASSWORDS["edouard"]
        status, transcript = self.swaks(lab, "smtp", "--from", "voisin@antenn04.univ-lr.fr")
        self.assertNotEqual(status, 0, transcript)
        self.assertRegex(transcript, r"<\*\* +454 4\.7\.1 <ami@example\.org>: Relay access denied")
        self.assertNotIn("queued as", transcript)
        # Nor may it claim a local user's address without logging in.
        status, transcript = self.swaks(lab, "smtp", "--from", "edouard@domaineel.rt")
        self.assertNotEqual(status, 0, transcript)
        self.assertRegex(transcript, r"<\*\* +553 5\.7\.1 <edouard@domaineel\.rt>: Sender address rejected: not logged in")

        status, transcript = self.swaks(lab, "submission", "-tls", "--from", "edouard@domaineel.rt")
        self.assertNotEqual(status, 0, transcript)
        self.assertRegex(transcript, r"<~\* +530 5\.7\.0 Authentication required")
        self.assertNotIn("queued as", transcript)

        status, transcript = self.swaks(lab, "submission", "-tls", "-au", "edouard", "-ap", password,
                                        "--from", "edouard@domaineel.rt")
        self.assertEqual(status, 0, transcript)
        self.assertIn("<-  220 2.0.0 Ready to start TLS", transcript)
        self.assertRegex(transcript, r"<~  235 2\.7\.0 Authentication successful")
        self.assertRegex(transcript, r"<~  250 2\.0\.0 Ok: queued as \w+")

        status, transcript = self.swaks(lab, "submission", "-tls", "-au", "edouard", "-ap", password,
                                        "--from", "utilisateur@domaineel.rt")
        self.assertNotEqual(status, 0, transcript)
        self.assertRegex(transcript, r"<~\* +553 5\.7\.1 <utilisateur@domaineel\.rt>: Sender address rejected: not owned by user edouard")
        self.assertNotIn("queued as", transcript)


class SeedSessionTests(unittest.TestCase):
    def test_telnetSessionOnTheServer(self):
        """
        The seed's sections 3 and 4: edouard sends from his mail client
        (the neighbour, submission with STARTTLS and a login) to
        utilisateur, and the seed's telnet session on the server's own
        port 143 (in clear, allowed on loopback) logs in as utilisateur
        and reads the message's structure and header.
        """
        lab = Lab(self)
        result = lab.onNeighbour([
            "swaks", "--server", f"{lab.address}:{lab.ports['submission']}", "-tls",
            "-au", "edouard", "-ap", PASSWORDS["edouard"], "--helo", "edouardMSI-pc",
            "--from", "edouard@domaineel.rt", "--to", "utilisateur@smtp.domaineel.rt",
            "--header", "Subject: Test", "--header", "From: Edouard <edouard@domaineel.rt>",
            "--add-header", "Content-Type: text/plain", "--add-header", "Mime-Version: 1.0",
            "--add-header", "Content-Transfer-Encoding: 7bit", "--body", "Test"])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        seen = lab.client("seedimap", "utilisateur", PASSWORDS["utilisateur"], "no" if lab.netns else "yes",
                          onServer=True)
        self.assertRegex(seen["greeting"], r"^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] ")
        self.assertRegex(seen["a001"], r"(?m)^a001 OK ")
        self.assertIn("* 1 EXISTS\r\n", seen["a003"])
        self.assertIn("* OK [UIDNEXT 2]", seen["a003"])
        self.assertRegex(seen["a003"], r"\* OK \[UIDVALIDITY \d+\]")
        self.assertRegex(seen["a003"], r"(?m)^a003 OK \[READ-WRITE\] ")
        self.assertRegex(seen["a004"], r'^\* 1 FETCH \(BODY \("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" \d+ \d+\)\)\r\n')
        header = seen["a005"]
        self.assertRegex(header, r"^\* 1 FETCH \((FLAGS \(\\Seen\) )?BODY\[HEADER\] \{\d+\}\r\n")
        self.assertIn("\r\nDelivered-To: utilisateur@smtp.domaineel.rt\r\n", header)
        self.assertIn("\r\nSubject: Test\r\n", header)
        self.assertIn("\r\nFrom: Edouard <edouard@domaineel.rt>\r\n", header)
        self.assertRegex(header, r"(?m)^a005 OK ")
        self.assertRegex(seen["a006"], r"(?m)^\* BYE ")
