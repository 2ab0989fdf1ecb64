"""
APPENDs after the store's fast paths, read back by Debian's Dovecot
(C{doveadm}, as in test_store_dovecot): the records appended to an
existing C{dovecot-uidlist} (the file is appended to, not rewritten), the
flags of messages whose directory was not listed again after our own
renames, and expunged messages gone for Dovecot too.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.trial import unittest

from tests.test_store import makeAccount, makeTestStore
from tests.test_store_dovecot import Doveadm, message


class AppendedUidlistTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_dovecotReadsAppendedRecords(self):
        account = makeAccount(self)
        dove = Doveadm(self, account)
        store = makeTestStore(self)
        inbox = yield store.mailboxes(account).open()
        first = yield inbox.append(message(1), ["\\Seen"])
        uidlist = account.maildir / "dovecot-uidlist"
        before = os.stat(uidlist)
        lines = uidlist.read_bytes().count(b"\n")
        uids = [first]
        for i in range(2, 7):
            flags = ["\\Seen", "Work"] if i % 2 else []
            uids.append((yield inbox.append(message(i), flags)))
        yield inbox.setFlags([uids[1]], ["\\Flagged"], "add")
        yield inbox.setFlags([uids[2]], ["\\Deleted"], "add")
        yield inbox.expunge()
        yield inbox.claimRecent()
        after = os.stat(uidlist)
        ours = {uid: set(inbox.flags(uid)) for uid in inbox.uids()}
        validity, uidNext = inbox.uidValidity, inbox.uidNext
        inbox.close()
        yield store.close()

        # appended in place: same file, one line per new message
        self.assertEqual(after.st_ino, before.st_ino)
        self.assertEqual(uidlist.read_bytes().count(b"\n"), lines + 5)
        self.assertEqual(uids, [1, 2, 3, 4, 5, 6])
        self.assertEqual(
            ours,
            {1: {"\\Seen"}, 2: {"\\Flagged"}, 4: set(), 5: {"\\Seen", "Work"}, 6: set()},
        )
        status = dove.status("INBOX")
        self.assertEqual((status["uidvalidity"], status["uidnext"], status["messages"]), (validity, uidNext, 5))
        self.assertEqual(dove.flags("INBOX"), ours)
        body = dove.run("fetch", "text", "mailbox", "INBOX", "uid", "5")
        self.assertIn("Subject: message 5", body)
