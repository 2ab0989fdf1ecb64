"""
Wire transcripts (StringTransport, synchronous store) for RFC points that
are easy to get subtly wrong: \\Recent for messages that never pass
through new/ (RFC 3501 2.3.2), and the session-state rules of ENABLE
(RFC 5161 3) and RENAME of the selected mailbox (RFC 3501 6.3.5).
"""

from __future__ import annotations

from twisted.trial import unittest

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
