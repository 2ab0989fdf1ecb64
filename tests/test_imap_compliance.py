"""
Wire transcripts (StringTransport, synchronous store) for RFC points that
are easy to get subtly wrong: \\Recent for messages that never pass
through new/ (RFC 3501 2.3.2), and the session-state rules of ENABLE
(RFC 5161 3) and RENAME of the selected mailbox (RFC 3501 6.3.5).
"""

from __future__ import annotations

from twisted.trial import unittest

from twisted_maillab.store.mailboxes import SPECIAL_USE_FILE
from twisted_maillab.store.testing import deliverNow

from tests.imap_support import Harness


def deliver(h, message, folder="INBOX"):
    return deliverNow(h.store, h.account, message, folder)


class RecentOutsideNewTests(unittest.TestCase):
    """
    RFC 3501 2.3.2: "Message is 'recently' arrived in this mailbox.  This
    session is the first session to have been notified about this message;
    if the session is read-write, subsequent sessions will not see \\Recent
    set for this message."  A message APPENDed with flags or COPYed goes
    straight to cur/, and must be recent all the same, for one session.
    """

    def setUp(self):
        self.a = Harness(self)
        deliver(self.a, b"Subject: one\n\nx\n")
        self.a.login()
        self.assertIn(b"c1 OK", self.a.command(b"c1 CREATE Archive"))

    def other(self):
        h = Harness(self, store=self.a.store, account=self.a.account)
        h.login()
        return h

    def test_appendWithFlagsIsRecentForTheFirstSelect(self):
        a = self.a
        reply = a.send(b"a1 APPEND Archive (\\Seen) {11+}\r\nSubject: y\r\n\r\n")
        self.assertRegex(reply, rb"\Aa1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        # STATUS looks without claiming
        self.assertEqual(
            a.lines(b"s1 STATUS Archive (MESSAGES RECENT UNSEEN)"),
            [b"* STATUS Archive (MESSAGES 1 RECENT 1 UNSEEN 0)", b"s1 OK STATUS completed"],
        )
        b = self.other()
        self.assertIn(b"* 1 RECENT\r\n", b.command(b"s2 SELECT Archive"))
        self.assertEqual(b.lines(b"f1 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Seen \\Recent))", b"f1 OK FETCH completed"])
        self.assertEqual(b.lines(b"r1 SEARCH RECENT"), [b"* SEARCH 1", b"r1 OK SEARCH completed"])
        # NEW is RECENT UNSEEN, OLD is NOT RECENT (RFC 3501 6.4.4)
        self.assertEqual(b.lines(b"r2 SEARCH NEW"), [b"* SEARCH", b"r2 OK SEARCH completed"])
        self.assertEqual(b.lines(b"r3 SEARCH OLD"), [b"* SEARCH", b"r3 OK SEARCH completed"])
        # b claimed it: nobody else sees it as recent
        self.assertEqual(
            a.lines(b"s3 STATUS Archive (RECENT)"), [b"* STATUS Archive (RECENT 0)", b"s3 OK STATUS completed"]
        )
        self.assertIn(b"* 0 RECENT\r\n", a.command(b"s4 SELECT Archive"))
        self.assertEqual(a.lines(b"f2 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Seen))", b"f2 OK FETCH completed"])
        self.assertEqual(a.lines(b"r4 SEARCH OLD"), [b"* SEARCH 1", b"r4 OK SEARCH completed"])
        # still recent for b, for the rest of its session
        self.assertEqual(b.lines(b"f3 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Seen \\Recent))", b"f3 OK FETCH completed"])

    def test_copyIsRecentForTheSessionThatHasTheTargetSelected(self):
        a, b = self.a, self.other()
        self.assertIn(b"* 0 RECENT\r\n", b.command(b"s1 SELECT Archive"))
        a.command(b"s2 SELECT INBOX")
        self.assertRegex(a.command(b"c2 COPY 1 Archive"), rb"c2 OK \[COPYUID \d+ 1 1\] COPY completed\r\n\Z")
        self.assertEqual(b.lines(b"n1 NOOP"), [b"* 1 EXISTS", b"* 1 RECENT", b"n1 OK NOOP completed"])
        self.assertEqual(b.lines(b"f1 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Recent))", b"f1 OK FETCH completed"])
        self.assertEqual(b.lines(b"r1 SEARCH NEW"), [b"* SEARCH 1", b"r1 OK SEARCH completed"])
        c = self.other()
        self.assertIn(b"* 0 RECENT\r\n", c.command(b"s3 SELECT Archive"))
        self.assertEqual(c.lines(b"r2 SEARCH RECENT"), [b"* SEARCH", b"r2 OK SEARCH completed"])

    def test_idleSessionClaimsWhatIsPushed(self):
        # RFC 3501 2.3.2: the session that has the mailbox selected when
        # the message arrives, told at once in IDLE (RFC 2177)
        a, b = self.a, self.other()
        b.command(b"s1 SELECT Archive")
        self.assertEqual(b.command(b"i1 IDLE"), b"+ idling\r\n")
        a.send(b"a1 APPEND Archive (\\Seen) {11+}\r\nSubject: y\r\n\r\n")
        a.command(b"s2 SELECT INBOX")
        a.command(b"c1 COPY 1 Archive")
        b.clock.advance(0)
        # one push for both (IDLE pushes are coalesced)
        self.assertEqual(b.take(), b"* 2 EXISTS\r\n* 2 RECENT\r\n")
        self.assertEqual(b.command(b"done"), b"i1 OK IDLE terminated\r\n")
        self.assertEqual(
            a.lines(b"s3 STATUS Archive (MESSAGES RECENT)"),
            [b"* STATUS Archive (MESSAGES 2 RECENT 0)", b"s3 OK STATUS completed"],
        )

    def test_moveIsRecentInTheTarget(self):
        a = self.a
        a.command(b"s1 SELECT INBOX")
        a.command(b"f1 FETCH 1 FLAGS")
        self.assertIn(b"m1 OK", a.command(b"m1 MOVE 1 Archive"))
        b = self.other()
        self.assertIn(b"* 1 RECENT\r\n", b.command(b"s2 SELECT Archive"))

    def test_examineDoesNotClaim(self):
        a = self.a
        a.send(b"a1 APPEND Archive (\\Flagged) {11+}\r\nSubject: y\r\n\r\n")
        reply = a.command(b"e1 EXAMINE Archive")
        self.assertIn(b"* 1 RECENT\r\n", reply)
        self.assertEqual(a.lines(b"f1 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))", b"f1 OK FETCH completed"])
        b = self.other()
        self.assertIn(b"* 1 RECENT\r\n", b.command(b"s1 SELECT Archive"))
        c = self.other()
        self.assertIn(b"* 0 RECENT\r\n", c.command(b"s2 SELECT Archive"))

    def test_expungedRecentIsForgotten(self):
        a = self.a
        a.send(b"a1 APPEND Archive (\\Deleted) {11+}\r\nSubject: y\r\n\r\n")
        a.send(b"a2 APPEND Archive (\\Seen) {11+}\r\nSubject: z\r\n\r\n")
        folder = self.successResultOf(a.store.mailboxes(a.account).open("Archive"))
        self.addCleanup(folder.close)
        self.assertEqual(folder.recentUids(), [1, 2])
        self.successResultOf(folder.expunge())
        self.assertEqual(folder.recentUids(), [2])
        self.assertEqual(a.store.recent.peek(folder._recentKey, folder.uidValidity), {2})

    def test_renamedFolderKeepsRecent(self):
        a = self.a
        a.send(b"a1 APPEND Archive (\\Seen) {11+}\r\nSubject: y\r\n\r\n")
        self.assertIn(b"r1 OK", a.command(b"r1 RENAME Archive Old"))
        self.assertEqual(
            a.lines(b"s1 STATUS Old (RECENT)"), [b"* STATUS Old (RECENT 1)", b"s1 OK STATUS completed"]
        )
        self.assertIn(b"d1 OK", a.command(b"d1 DELETE Old"))
        self.assertIn(b"c1 OK", a.command(b"c1 CREATE Old"))
        self.assertEqual(
            a.lines(b"s2 STATUS Old (MESSAGES RECENT)"), [b"* STATUS Old (MESSAGES 0 RECENT 0)", b"s2 OK STATUS completed"]
        )

    def test_flagChangeBeforeAnySessionKeepsRecent(self):
        # another protocol (POP3, Twisted's IMAP seam) flags a message in
        # new/ before any IMAP session saw it: it moves to cur/, and stays
        # recent for the first session
        a = self.a
        folder = self.successResultOf(a.store.mailboxes(a.account).open("INBOX"))
        self.addCleanup(folder.close)
        self.successResultOf(folder.setFlags([1], ["\\Seen"], "add"))
        self.assertFalse(folder.message(1).isNew)
        self.assertIn(b"* 1 RECENT\r\n", a.command(b"s1 SELECT INBOX"))
        self.assertEqual(a.lines(b"f1 FETCH 1 FLAGS"), [b"* 1 FETCH (FLAGS (\\Seen \\Recent))", b"f1 OK FETCH completed"])

    def test_imaptestCopy(self):
        # Dovecot imaptest's "copy" script (failed before: the copies were
        # not recent for the session that had the target selected)
        a, b = self.a, self.other()
        a.command(b"s1 SELECT INBOX")
        for subject in (b"2", b"3", b"4", b"5"):
            a.send(b"a1 APPEND INBOX {11+}\r\nSubject: %s\r\n\r\n" % subject)
        self.assertIn(b"* 0 RECENT\r\n", b.command(b"s2 SELECT Archive"))
        a.command(b"t1 STORE 1 FLAGS (\\Seen)")
        a.command(b"t2 STORE 2 FLAGS (\\Answered \\Flagged)")
        a.command(b"t3 STORE 5 FLAGS (\\Flagged $keyword1 $keyword2)")
        self.assertIn(b"c1 OK [COPYUID", a.command(b"c1 COPY 1:2,4 Archive"))
        self.assertEqual(b.lines(b"n1 NOOP"), [b"* 3 EXISTS", b"* 3 RECENT", b"n1 OK NOOP completed"])
        self.assertEqual(
            b.lines(b"f1 FETCH 1:3 FLAGS"),
            [
                b"* 1 FETCH (FLAGS (\\Seen \\Recent))",
                b"* 2 FETCH (FLAGS (\\Answered \\Flagged \\Recent))",
                b"* 3 FETCH (FLAGS (\\Recent))",
                b"f1 OK FETCH completed",
            ],
        )
        b.command(b"t4 STORE 3 +FLAGS ($keyword1 $keyword2)")
        self.assertIn(b"c2 OK [COPYUID", a.command(b"c2 COPY 5 Archive"))
        self.assertEqual(b.lines(b"n2 NOOP"), [b"* 4 EXISTS", b"* 4 RECENT", b"n2 OK NOOP completed"])
        self.assertEqual(
            b.lines(b"f2 FETCH 4 FLAGS"),
            [b"* 4 FETCH (FLAGS (\\Flagged \\Recent $keyword1 $keyword2))", b"f2 OK FETCH completed"],
        )


class SessionStateTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(self)
        deliver(self.h, b"Subject: one\n\nx\n")
        self.h.login()

    def test_enableOnlyInTheAuthenticatedState(self):
        # RFC 5161 3: "The ENABLE command is only valid in the
        # authenticated state, before any mailbox is selected."
        h = self.h
        self.assertEqual(h.lines(b"e1 ENABLE CONDSTORE"), [b"* ENABLED", b"e1 OK ENABLE completed"])
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(h.lines(b"e2 ENABLE CONDSTORE"), [b"e2 BAD Not allowed with a mailbox selected"])
        h.command(b"u1 UNSELECT")
        self.assertEqual(h.lines(b"e3 ENABLE CONDSTORE"), [b"* ENABLED", b"e3 OK ENABLE completed"])

    def test_renameTheSelectedMailbox(self):
        # RFC 3501 6.3.5 does not end the session: it stays on the mailbox
        # under its new name, with the same UIDs
        h = self.h
        h.command(b"c1 CREATE Box")
        h.send(b"a1 APPEND Box {11+}\r\nSubject: y\r\n\r\n")
        h.command(b"s1 SELECT Box")
        self.assertEqual(h.lines(b"r1 RENAME Box Renamed"), [b"r1 OK RENAME completed"])
        self.assertEqual(h.lines(b"n1 NOOP"), [b"n1 OK NOOP completed"])
        self.assertEqual(h.lines(b"f1 UID FETCH 1 FLAGS"), [b"* 1 FETCH (UID 1 FLAGS (\\Recent))", b"f1 OK FETCH completed"])
        reply = h.send(b"a2 APPEND Renamed {11+}\r\nSubject: z\r\n\r\n")
        self.assertRegex(reply, rb"\A\* 2 EXISTS\r\n\* 2 RECENT\r\na2 OK \[APPENDUID \d+ 2\] APPEND completed\r\n\Z")
        self.assertEqual(h.lines(b"t1 STORE 2 +FLAGS (\\Flagged)"), [b"* 2 FETCH (FLAGS (\\Flagged \\Recent))", b"t1 OK STORE completed"])
        self.assertEqual(
            h.lines(b"s2 STATUS Renamed (MESSAGES)"), [b"* STATUS Renamed (MESSAGES 2)", b"s2 OK STATUS completed"]
        )
        self.assertEqual(h.lines(b"l1 LIST \"\" Box"), [b"l1 OK LIST completed"])
        # renaming it again, and a child with it
        h.command(b"c2 CREATE Renamed/Child")
        self.assertEqual(h.lines(b"r2 RENAME Renamed Again"), [b"r2 OK RENAME completed"])
        self.assertEqual(h.lines(b"f2 FETCH 1:* UID"), [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"f2 OK FETCH completed"])
        self.assertEqual(
            h.lines(b"l2 LIST \"\" Again*"),
            [b"* LIST (\\HasChildren) \"/\" Again", b"* LIST (\\HasNoChildren) \"/\" Again/Child", b"l2 OK LIST completed"],
        )
        # a deleted mailbox still ends the session (RFC 3501 7.1.5)
        other = Harness(self, store=h.store, account=h.account)
        other.login()
        self.assertEqual(other.lines(b"d1 DELETE Again"), [b"d1 OK DELETE completed"])
        self.assertEqual(h.lines(b"n2 NOOP")[0], b"* BYE The selected mailbox was deleted or renamed")


# imaptest's append-binary message: a binary part with a NUL and 8-bit octets
_BINARY_MESSAGE = (
    b"From: user@domain.org\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\nMime-Version: 1.0\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"\x00-\xe4\r\n\r\n"
)


class BinaryAppendTests(unittest.TestCase):
    """
    RFC 3516 4.3: APPEND takes a literal8 (C{~{N}}), which may carry NUL.
    The server stores binary parts base64-encoded: BINARY[] gives the
    octets back (in a literal8, RFC 3516 4.2), BODY[] never holds a NUL
    (RFC 3501 CHAR8) nor is it a literal8.
    """

    def setUp(self):
        self.h = Harness(self)
        self.h.login()

    def test_capability(self):
        self.assertIn(b" BINARY ", self.h.command(b"c1 CAPABILITY").split(b"\r\n")[0] + b" ")

    def test_imaptestAppendBinary(self):
        h = self.h
        reply = h.send(b"a1 APPEND INBOX ~{%d}\r\n" % len(_BINARY_MESSAGE))
        self.assertEqual(reply, b"+ Ready for literal data\r\n")
        self.assertRegex(h.send(_BINARY_MESSAGE + b"\r\n"), rb"\Aa1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(
            h.command(b"f1 FETCH 1 (BODY.PEEK[1])"),
            b"* 1 FETCH (BODY[1] {14}\r\nAC3kDQoNCg==\r\n)\r\nf1 OK FETCH completed\r\n",
        )
        self.assertEqual(
            h.command(b"f2 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])"),
            b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\x00-\xe4\r\n\r\n)\r\nf2 OK FETCH completed\r\n",
        )
        header = h.command(b"f3 FETCH 1 (BODY.PEEK[HEADER.FIELDS (CONTENT-TRANSFER-ENCODING)])")
        self.assertIn(b"Content-Transfer-Encoding: base64\r\n\r\n", header)

    def test_nonSynchronisingAndMultipart(self):
        h = self.h
        message = (
            b"Subject: m\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\ntext\r\n--b\r\nContent-Type: image/png\r\n\r\n"
            b"\x89PNG\x00\x00\r\n--b--\r\n"
        )
        reply = h.send(b"a1 APPEND INBOX (\\Seen) ~{%d+}\r\n%s\r\n" % (len(message), message))
        self.assertRegex(reply, rb"\Aa1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        h.command(b"s1 SELECT INBOX")
        # the text part is kept as it was; the part with NULs is base64
        self.assertEqual(
            h.lines(b"f1 FETCH 1 (BODY.PEEK[1] BINARY.PEEK[2] BODY.PEEK[2.MIME])"),
            [
                b"* 1 FETCH (BODY[1] {4}",
                b"text BINARY[2] ~{6}",
                b"\x89PNG\x00\x00 BODY[2.MIME] {62}",
                b"Content-Type: image/png",
                b"Content-Transfer-Encoding: base64",
                b"",
                b")",
                b"f1 OK FETCH completed",
            ],
        )

    def test_withoutBinaryPartsStoredAsSent(self):
        h = self.h
        message = b"Subject: plain\r\n\r\n8-bit \xe9t\xe9\r\n"
        h.send(b"a1 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(message), message))
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(
            h.command(b"f1 FETCH 1 BODY.PEEK[]"),
            b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\nf1 OK FETCH completed\r\n" % (len(message), message),
        )

    def test_bigLiteral8IsSpooledAndEncoded(self):
        h = self.h
        body = bytes(range(256)) * 1024  # 256 KiB with NULs: spooled
        message = b"Subject: big\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body
        self.assertEqual(h.send(b"a1 APPEND INBOX ~{%d}\r\n" % len(message)), b"+ Ready for literal data\r\n")
        self.assertRegex(h.send(message + b"\r\n"), rb"\Aa1 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(h.lines(b"f1 FETCH 1 BINARY.SIZE[1]"), [b"* 1 FETCH (BINARY.SIZE[1] %d)" % len(body), b"f1 OK FETCH completed"])
        reply = h.command(b"f2 FETCH 1 BINARY.PEEK[1]")
        self.assertEqual(reply, b"* 1 FETCH (BINARY[1] ~{%d}\r\n%s)\r\nf2 OK FETCH completed\r\n" % (len(body), body))
        self.assertNotIn(b"\x00", h.command(b"f3 FETCH 1 BODY.PEEK[]"))

    def test_limits(self):
        h = self.h
        h.proto.assembler.appendLimit = 100
        # RFC 7889: refused before any octet is read, no continuation
        self.assertEqual(
            h.lines(b"a1 APPEND INBOX ~{101}"), [b"a1 NO [TOOBIG] literal of 101 octets is beyond the limit of 100"]
        )
        # a literal8 within the limit still works after that
        self.assertRegex(h.send(b"a2 APPEND INBOX ~{3+}\r\na\x00b\r\n"), rb"\Aa2 OK \[APPENDUID \d+ 1\] APPEND completed\r\n\Z")
        # NUL needs a literal8 (RFC 3501 CHAR8)
        self.assertIn(b"a3 BAD", h.send(b"a3 APPEND INBOX {3+}\r\na\x00b\r\n"))
        # a literal8 outside APPEND is a syntax error (RFC 3516 4.3)
        self.assertIn(b"l1 BAD", h.send(b"l1 LIST \"\" ~{1+}\r\n*\r\n"))
        # a non-synchronising literal beyond the limit cannot be skipped:
        # the connection ends (RFC 7888 4, RFC 7889 4)
        self.assertEqual(
            h.send(b"a4 APPEND INBOX ~{101+}\r\n"), b"* BYE [TOOBIG] literal of 101 octets is beyond the limit of 100\r\n"
        )
        self.assertTrue(h.transport.disconnecting)

    def test_unknownTransferEncoding(self):
        # RFC 3516 4.2: BINARY of a part whose encoding the server cannot
        # decode is NO [UNKNOWN-CTE]; BODY still works
        h = self.h
        message = b"Subject: u\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n`\r\nend\r\n"
        h.send(b"a1 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(message), message))
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(h.lines(b"f1 FETCH 1 BINARY.PEEK[1]"), [b"f1 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"])
        self.assertEqual(h.lines(b"f2 FETCH 1 BINARY.SIZE[1]"), [b"f2 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"])
        self.assertIn(b"f3 OK", h.command(b"f3 FETCH 1 BODY.PEEK[1]"))


class CreateSpecialUseTests(unittest.TestCase):
    """
    RFC 6154 3 CREATE-SPECIAL-USE: C{CREATE name (USE (attr))} creates the
    mailbox with that role, kept in the folder (L{SPECIAL_USE_FILE}) and
    shown by LIST; a role that cannot be given is C{NO [USEATTR]} and
    nothing is created.
    """

    def setUp(self):
        self.h = Harness(self)
        self.h.store.specialFolders = (("Sent", "\\Sent"),)
        deliver(self.h, b"Subject: one\n\nx\n")  # the Maildir exists
        self.h.login()

    def test_capability(self):
        self.assertIn(b" CREATE-SPECIAL-USE ", self.h.command(b"c1 CAPABILITY").split(b"\r\n")[0] + b" ")

    def test_createWithRole(self):
        h = self.h
        # RFC 6154 5.2 example
        self.assertEqual(h.lines(b"t1 CREATE MySpecialArchive (USE (\\Archive))"), [b"t1 OK CREATE completed"])
        self.assertEqual(h.lines(b"t2 CREATE Brouillons (USE (\\drafts))"), [b"t2 OK CREATE completed"])
        self.assertEqual(
            h.lines(b'l1 LIST "" *'),
            [
                b'* LIST (\\HasNoChildren) "/" INBOX',
                b'* LIST (\\HasNoChildren \\Drafts) "/" Brouillons',
                b'* LIST (\\HasNoChildren \\Archive) "/" MySpecialArchive',
                b"l1 OK LIST completed",
            ],
        )
        self.assertEqual(
            h.lines(b'l2 LIST (SPECIAL-USE) "" *'),
            [
                b'* LIST (\\HasNoChildren \\Drafts) "/" Brouillons',
                b'* LIST (\\HasNoChildren \\Archive) "/" MySpecialArchive',
                b"l2 OK LIST completed",
            ],
        )
        folder = h.account.maildir / ".MySpecialArchive"
        self.assertEqual((folder / SPECIAL_USE_FILE).read_bytes(), b"\\Archive\n")
        self.assertTrue((folder / "cur").is_dir() and (folder / "maildirfolder").exists())
        # the role moves with the folder and goes with it
        self.assertEqual(h.lines(b"r1 RENAME MySpecialArchive Old"), [b"r1 OK RENAME completed"])
        self.assertEqual(
            h.lines(b'l3 LIST "" Old'), [b'* LIST (\\HasNoChildren \\Archive) "/" Old', b"l3 OK LIST completed"]
        )
        h.command(b"d1 DELETE Old")
        h.command(b"c1 CREATE Old")
        self.assertEqual(h.lines(b'l4 LIST "" Old'), [b'* LIST (\\HasNoChildren) "/" Old', b"l4 OK LIST completed"])

    def test_configuredRoleWins(self):
        h = self.h
        self.assertEqual(h.lines(b"c1 CREATE Sent (USE (\\Sent))"), [b"c1 OK CREATE completed"])
        self.assertFalse((h.account.maildir / ".Sent" / SPECIAL_USE_FILE).exists())
        self.assertEqual(h.lines(b"c2 CREATE Sent (USE (\\Trash))"), [b"c2 NO [USEATTR] The configuration makes Sent \\Sent"])
        # a role file another program left on a configured folder is ignored
        (h.account.maildir / ".Sent" / SPECIAL_USE_FILE).write_bytes(b"\\Trash\n")
        self.assertEqual(h.lines(b'l1 LIST "" Sent'), [b'* LIST (\\HasNoChildren \\Sent) "/" Sent', b"l1 OK LIST completed"])

    def test_unsupportedAttributes(self):
        h = self.h
        for tag, use in ((b"c1", b"\\All"), (b"c2", b"\\Flagged"), (b"c3", b"\\Important")):
            self.assertEqual(
                h.lines(tag + b" CREATE Virtual (USE (" + use + b"))"), [tag + b" NO [USEATTR] " + use + b" is not supported"]
            )
        self.assertEqual(h.lines(b"c4 CREATE Two (USE (\\Junk \\Trash))"), [b"c4 NO [USEATTR] One special-use attribute per mailbox"])
        self.assertEqual(h.lines(b"c5 CREATE Bad (USE (\\Inbox))")[0][:18], b"c5 NO [USEATTR] \\I")
        # nothing was created
        self.assertEqual(h.lines(b'l1 LIST "" *'), [b'* LIST (\\HasNoChildren) "/" INBOX', b"l1 OK LIST completed"])
        self.assertEqual(
            h.lines(b"c6 CREATE Brouillons (USE (\\Drafts))"), [b"c6 OK CREATE completed"]
        )
        self.assertEqual(h.lines(b"c7 CREATE Brouillons (USE (\\Drafts))"), [b"c7 NO [ALREADYEXISTS] Mailbox already exists"])


class QuotedPrintableBinaryTests(unittest.TestCase):
    """
    Dovecot imaptest's fetch-binary-mime-qp (failed before: trailing
    whitespace was kept and C{= } was not a soft line break).  RFC 2045
    6.7 rule 3: whitespace ending a line is deleted when decoding; rule 5:
    a final C{=} is a soft line break.
    """

    MESSAGE = (
        b'From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\n'
        b"Root MIME prologue\r\n\r\n--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo =\r\n=62\r\n"
        b"foo  \r\nbar=\r\n\r\nfoo_bar\r\n\r\n--foo bar--\r\n"
    )
    DECODED = b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n"

    def test_imaptestFetchBinaryMimeQP(self):
        h = Harness(self)
        h.login()
        h.send(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(self.MESSAGE), self.MESSAGE))
        h.command(b"s1 SELECT INBOX")
        self.assertEqual(h.lines(b"f1 FETCH 1 BINARY.SIZE[1]"), [b"* 1 FETCH (BINARY.SIZE[1] 65)", b"f1 OK FETCH completed"])
        self.assertEqual(
            h.command(b"f2 FETCH 1 BINARY.PEEK[1]"),
            # decoded content comes in a literal8, as Dovecot sends it
            b"* 1 FETCH (BINARY[1] ~{65}\r\n%s)\r\nf2 OK FETCH completed\r\n" % self.DECODED,
        )
        for start, count in ((0, 10), (10, 10), (20, 10), (15, 10), (40, 100)):
            piece = self.DECODED[start : start + count]
            self.assertEqual(
                h.command(b"f3 FETCH 1 BINARY.PEEK[1]<%d.%d>" % (start, count)),
                b"* 1 FETCH (BINARY[1]<%d> ~{%d}\r\n%s)\r\nf3 OK FETCH completed\r\n" % (start, len(piece), piece),
            )
