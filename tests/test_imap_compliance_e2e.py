"""
The points of tests.test_imap_compliance with Python's imaplib over a real
socket to C{twistd maillab}: \\Recent of APPENDed and COPYed messages
(RFC 3501 2.3.2), APPEND with a literal8 (RFC 3516, sent raw: imaplib
has no literal8), CREATE-SPECIAL-USE (RFC 6154 3, with Debian's Dovecot
on the same Maildir seeing the folder), ENABLE in the selected state
(RFC 5161 3) and RENAME of the selected mailbox.
"""

from __future__ import annotations

import imaplib
import re

from twisted.trial import unittest

from tests.imap_servers import Dovecot, Maillab

BINARY_MESSAGE = (
    b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\xff\xfe binary\r\n"
)


def raw(client: imaplib.IMAP4, line: bytes, literal: bytes | None = None):
    """
    Send C{line} (ending in C{~{N}} when C{literal} is given) as imaplib
    sends any command, wait for the continuation, send the literal, and
    return imaplib's C{(typ, data)}.
    """
    tag = client._new_tag()
    client.tagged_commands[tag] = None
    client.send(tag + b" " + line + b"\r\n")
    if literal is not None:
        continuation = client.readline()
        if not continuation.startswith(b"+"):
            raise AssertionError(continuation)
        client.send(literal + b"\r\n")
    return client._command_complete(line.split()[0].decode(), tag)


class ComplianceOverImaplibTests(unittest.TestCase):
    def setUp(self):
        self.server = Maillab(self)
        self.server.deliver(b"Subject: first\r\n\r\nbody\r\n")

    def client(self) -> imaplib.IMAP4:
        client = self.server.imap()
        self.addCleanup(client.shutdown)
        return client

    def test_recentOfAppendedAndCopiedMessages(self):
        a, b, c = self.client(), self.client(), self.client()
        self.assertEqual(a.create("Kept")[0], "OK")
        self.assertEqual(a.append("Kept", "(\\Seen)", None, b"Subject: x\r\n\r\nappended\r\n")[0], "OK")
        typ, data = a.status("Kept", "(MESSAGES RECENT)")
        self.assertEqual(data, [b"Kept (MESSAGES 1 RECENT 1)"])
        b.select("Kept")
        self.assertEqual(b.response("RECENT"), ("RECENT", [b"1"]))
        typ, data = b.fetch("1", "(FLAGS)")
        self.assertEqual(data, [b"1 (FLAGS (\\Seen \\Recent))"])
        # a COPY reaches b as recent, the session that has Kept selected
        a.select("INBOX")
        self.assertEqual(a.copy("1", "Kept")[0], "OK")
        b.noop()
        self.assertEqual(b.response("RECENT"), ("RECENT", [b"2"]))
        self.assertEqual(b.search(None, "RECENT"), ("OK", [b"1 2"]))
        self.assertEqual(b.search(None, "NEW"), ("OK", [b"2"]))
        # and for nobody else
        c.select("Kept")
        self.assertEqual(c.response("RECENT"), ("RECENT", [b"0"]))
        self.assertEqual(c.search(None, "OLD"), ("OK", [b"1 2"]))

    def test_binaryAppend(self):
        client = self.client()
        typ, caps = client.capability()
        self.assertIn(b"BINARY", caps[0].split())
        typ, data = raw(client, b"APPEND INBOX ~{%d}" % len(BINARY_MESSAGE), BINARY_MESSAGE)
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\A\[APPENDUID \d+ 2\] APPEND completed\Z")
        client.select("INBOX")
        typ, data = client.fetch("2", "(BINARY.PEEK[1] BINARY.SIZE[1])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], b"\x00\x01\x02\xff\xfe binary\r\n")
        self.assertIn(b"BINARY.SIZE[1] 14", data[1])
        typ, data = client.fetch("2", "(BODY.PEEK[1])")
        self.assertEqual(data[0][1], b"AAEC//4gYmluYXJ5DQo=\r\n")
        # non-synchronising literal8 (LITERAL+)
        typ, data = raw(client, b"APPEND INBOX ~{3+}\r\na\x00b")
        self.assertEqual(typ, "OK")
        typ, data = client.fetch("3", "(BINARY.PEEK[])")
        self.assertEqual(data[0][1], b"a\x00b")

    def test_createSpecialUseSeenByDovecot(self):
        client = self.client()
        typ, data = client._simple_command("CREATE", "Brouillons", "(USE (\\Drafts))")
        self.assertEqual(typ, "OK")
        typ, data = client.list('""', "Brouillons")
        self.assertEqual(data, [b'(\\HasNoChildren \\Drafts) "/" Brouillons'])
        typ, data = client._simple_command("CREATE", "Virtual", "(USE (\\All))")
        self.assertEqual((typ, data), ("NO", [b"[USEATTR] \\All is not supported"]))
        self.assertEqual(client.append("Brouillons", "(\\Draft)", None, b"Subject: draft\r\n\r\nx\r\n")[0], "OK")
        # Dovecot on the same Maildir sees an ordinary folder
        dovecot = Dovecot(self, root=self.server.root)
        other = dovecot.imap()
        self.addCleanup(other.shutdown)
        typ, data = other.list('""', "*")
        self.assertTrue(any(re.search(rb'"Brouillons"|\sBrouillons$', line) for line in data), data)
        typ, data = other.select("Brouillons")
        self.assertEqual((typ, data), ("OK", [b"1"]))
        typ, data = other.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertIn(b"\\Draft", data[0][0])
        self.assertEqual(data[0][1], b"Subject: draft\r\n\r\n")

    def test_enableAndRenameOfTheSelectedMailbox(self):
        client = self.client()
        self.assertEqual(client._simple_command("ENABLE", "CONDSTORE")[0], "OK")
        client.create("Box")
        client.append("Box", None, None, b"Subject: in box\r\n\r\nx\r\n")
        client.select("Box")
        # sent raw: imaplib itself refuses ENABLE in the selected state
        with self.assertRaises(imaplib.IMAP4.error) as caught:
            raw(client, b"ENABLE CONDSTORE")
        self.assertIn("Not allowed with a mailbox selected", str(caught.exception))
        self.assertEqual(client.rename("Box", "Renamed")[0], "OK")
        self.assertEqual(client.noop()[0], "OK")
        self.assertNotIn("BYE", client.untagged_responses)
        typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(data[0][1], b"Subject: in box\r\n\r\n")
        self.assertEqual(client.append("Renamed", None, None, b"Subject: two\r\n\r\ny\r\n")[0], "OK")
        self.assertEqual(client.noop()[0], "OK")
        self.assertEqual(client.search(None, "ALL"), ("OK", [b"1 2"]))
