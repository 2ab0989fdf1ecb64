"""
The special-use folders (RFC 6154) created at an account's first login:
through the realm (L{MailRealm.prepareAccount}) and the store's
L{FirstLogin}, and end to end with a POP3 login over a real socket.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import Interface

from twisted_maillab.auth.realm import MailRealm
from twisted_maillab.store import dovecot
from twisted_maillab.store.store import Mailboxes

from tests.test_pop3_e2e import Server, login
from tests.test_store_dovecot import Doveadm
from tests.test_store import makeAccount, makeTestStore

FOLDERS = [".Archive", ".Drafts", ".Junk", ".Sent", ".Trash"]


class IThing(Interface):
    pass


class Directory:
    def __init__(self, account):
        self.account = account

    def lookup(self, avatarId):
        return defer.succeed(self.account if avatarId == self.account.name else None)


def folders(maildir) -> list[str]:
    return sorted(name for name in os.listdir(maildir) if name.startswith("."))


class FirstLoginTests(unittest.TestCase):
    def setUp(self):
        self.account = makeAccount(self)
        self.store = makeTestStore(self)
        self.runs = 0
        # on the class: the store forgets an idle account's Mailboxes
        ensure = Mailboxes.ensureDefaults

        def counted(mailboxes):
            self.runs += 1
            return ensure(mailboxes)

        self.patch(Mailboxes, "ensureDefaults", counted)
        self.realm = MailRealm(Directory(self.account), self.store.firstLogin)
        self.realm.registerAvatarFactory(IThing, lambda account: object())

    @defer.inlineCallbacks
    def test_createdAtLoginOnce(self):
        """
        The first login creates the folders in the store's pool; later
        logins in this process do no disk work at all.
        """
        self.assertFalse(os.path.exists(self.account.maildir))
        yield self.realm.requestAvatar("edouard", None, IThing)
        self.assertEqual(folders(self.account.maildir), FOLDERS)
        os.rename(self.account.maildir / ".Junk", self.account.maildir / "junk-moved")
        yield self.realm.requestAvatar("edouard", None, IThing)
        self.assertEqual(self.runs, 1)
        self.assertNotIn(".Junk", folders(self.account.maildir))

    @defer.inlineCallbacks
    def test_concurrentLoginsShareOneRun(self):
        first = self.realm.requestAvatar("edouard", None, IThing)
        second = self.realm.requestAvatar("edouard", None, IThing)
        yield defer.gatherResults([first, second])
        self.assertEqual(self.runs, 1)
        self.assertEqual(folders(self.account.maildir), FOLDERS)

    @defer.inlineCallbacks
    def test_failureLoggedLoginGoesOn(self):
        """
        A Maildir that cannot be prepared does not refuse the login, is
        logged, and is tried again at the next login.
        """
        # A file where the Maildir should be (root ignores permissions).
        self.account.maildir.write_bytes(b"")
        result = yield self.realm.requestAvatar("edouard", None, IThing)
        self.assertIs(result[0], IThing)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.account.maildir.unlink()
        yield self.realm.requestAvatar("edouard", None, IThing)
        self.assertEqual(self.runs, 2)
        self.assertEqual(folders(self.account.maildir), FOLDERS)


class POP3FirstLoginTests(unittest.TestCase):
    def test_pop3LoginCreatesFolders(self):
        """
        A POP3 login over a real socket to C{twistd maillab} leaves the
        Maildir++ folders Dovecot's default special-use names would have,
        each a Maildir with C{maildirfolder}, subscribed in Dovecot's
        version-2 C{subscriptions} file; a failed login creates nothing.
        """
        server = Server(self)
        client = server.pop3()
        client.user("edouard")
        self.assertRaises(Exception, client.pass_, "wrong")
        client.quit()
        self.assertFalse(server.maildir.exists())
        client = server.pop3()
        login(client)
        self.assertEqual(client.stat(), (0, 0))
        client.quit()
        self.assertEqual(folders(server.maildir), FOLDERS)
        for name in FOLDERS:
            for sub in ("cur", "new", "tmp"):
                self.assertTrue((server.maildir / name / sub).is_dir())
            self.assertTrue((server.maildir / name / "maildirfolder").is_file())
        subscriptions = (server.maildir / "subscriptions").read_bytes()
        self.assertEqual(
            subscriptions,
            dovecot.V2_HEADER + b"Drafts\nSent\nTrash\nJunk\nArchive\n",
        )

    def test_dovecotSeesThem(self):
        """
        Dovecot, on the same Maildir after the POP3 login, lists the five
        folders and has them subscribed.
        """
        # uid 8 is Debian's "mail" user: Dovecot refuses to run mail as root
        server = Server(self, uid=8)
        client = server.pop3()
        login(client)
        client.quit()
        dove = Doveadm(self, server.account)
        special = {"Drafts", "Sent", "Trash", "Junk", "Archive"}
        self.assertEqual(dove.mailboxes(), special | {"INBOX"})
        self.assertEqual(dove.mailboxes(subscribed=True), special)
