"""
Dovecot and maillab serving the same Maildir at the same time, as on a
machine moving from one to the other: each is just another program to the
other, and what one changes the other's IMAP clients see with the same
UIDs.
"""

from __future__ import annotations

import email
import re

from twisted.trial import unittest

from tests.imap_servers import Dovecot, IdleSession, Maillab

MSG1 = b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: first\r\n\r\nbody one\r\n"
MSG2 = b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: second\r\n\r\nbody two\r\n"
MSG3 = b"From: edouard@domaineel.rt\r\nTo: anne@domaineel.rt\r\nSubject: appended by maillab\r\n\r\nthree\r\n"


def uidsBySubject(client) -> dict[str, int]:
    typ, data = client.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    return {
        email.message_from_bytes(item[1])["Subject"]: int(re.search(rb"UID (\d+)", item[0]).group(1))
        for item in data
        if isinstance(item, tuple)
    }


class SameMaildirTests(unittest.TestCase):
    """
    C{twistd maillab} and Debian's Dovecot on one account's Maildir at once.
    """

    def setUp(self):
        self.maillab = Maillab(self)
        self.dovecot = Dovecot(self, root=self.maillab.root)
        self.maillab.deliver(MSG1, MSG2)

    def test_dovecotFlagPushedToMaillabIdle(self):
        """
        A flag set over Dovecot's IMAP (Dovecot renames the file) reaches a
        maillab session in IDLE as an untagged FETCH within a second.
        """
        idle = IdleSession(self, self.maillab)
        client = self.dovecot.imaps()
        client.select("INBOX")
        self.assertEqual(client.store("2", "+FLAGS", "(\\Flagged)")[0], "OK")
        line = idle.expect(rb"^\* 2 FETCH \(.*FLAGS \([^)]*\\Flagged")
        self.assertNotIn(b"\\Seen", line)
        client.logout()
        idle.done()

    def test_dovecotExpungeAndAppendPushedToMaillabIdle(self):
        """
        An expunge and an APPEND done through Dovecot reach a maillab
        session in IDLE as EXPUNGE and EXISTS within a second each.
        """
        idle = IdleSession(self, self.maillab)
        client = self.dovecot.imaps()
        client.select("INBOX")
        client.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(client.expunge()[0], "OK")
        idle.expect(rb"^\* 1 EXPUNGE\r\n$")
        self.assertEqual(client.append("INBOX", None, None, MSG3)[0], "OK")
        idle.expect(rb"^\* 2 EXISTS\r\n$")
        client.logout()
        idle.done()

    def test_maillabAppendSeenByDovecotWithSameUID(self):
        """
        A message maillab appends is seen by Dovecot with the UID maillab
        gave it in APPENDUID, the same UIDVALIDITY, and the same UIDs for
        the older messages.
        """
        client = self.maillab.imaps()
        client.select("INBOX")
        before = uidsBySubject(client)
        typ, data = client.append("INBOX", "(\\Seen)", None, MSG3)
        self.assertEqual(typ, "OK")
        uidvalidity, uid = map(int, re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0]).groups())
        client.logout()

        client = self.dovecot.imaps()
        client.select("INBOX")
        self.assertEqual(client.response("UIDVALIDITY")[1], [str(uidvalidity).encode()])
        self.assertEqual(uidsBySubject(client), {**before, "appended by maillab": uid})
        typ, data = client.uid("FETCH", str(uid), "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])
        client.logout()
