"""
Tests for the username rules, mail_location expansion, the account
directory and the realm.
"""

from pathlib import Path

from twisted.cred.checkers import ANONYMOUS
from twisted.cred.error import UnauthorizedLogin
from twisted.trial import unittest
from zope.interface import Interface, implementer

from twisted_maillab.account import Account
from twisted_maillab.auth import makePortal
from twisted_maillab.auth.names import UsernameRules, parseMailLocation
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.auth.realm import MailRealm
from twisted_maillab.config import ConfigError
from twisted_maillab.interfaces import IAccountDirectory, IMailPortal, IMailRealm
from tests.auth_fixtures import TODAY, makeConfig, mkpasswd


def _result(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred did not fire synchronously"
    return results[0]


class UsernameRulesTests(unittest.TestCase):
    rules = UsernameRules(localDomains=("domaineel.rt", "alias.rt"))

    def test_userAndLocalDomainAreTheSame(self):
        self.assertEqual(self.rules.loginKey("edouard"), ("edouard", None))
        self.assertEqual(self.rules.loginKey("edouard@domaineel.rt"), ("edouard", "domaineel.rt"))
        self.assertEqual(self.rules.loginKey("edouard@DOMAINEEL.RT."), ("edouard", "domaineel.rt"))

    def test_foreignDomain(self):
        self.assertIsNone(self.rules.loginKey("edouard@example.org"))
        self.assertEqual(self.rules.recipientKeys("edouard@example.org"), [])

    def test_case(self):
        self.assertEqual(self.rules.loginKey("EdOuArd"), ("edouard", None))
        sensitive = UsernameRules(("domaineel.rt",), caseSensitive=True)
        self.assertEqual(sensitive.loginKey("EdOuArd@DomaineEL.rt"), ("EdOuArd", "domaineel.rt"))

    def test_delimiter(self):
        self.assertIsNone(self.rules.loginKey("edouard+lists"))
        self.assertEqual(
            self.rules.recipientKeys("Edouard+Lists@domaineel.rt"),
            [("edouard+lists", "domaineel.rt"), ("edouard", "domaineel.rt")],
        )
        self.assertEqual(self.rules.recipientKeys("edouard+a+b"), [("edouard+a+b", None), ("edouard", None)])
        self.assertEqual(self.rules.recipientKeys("edouard+lists", ""), [("edouard+lists", None)])
        self.assertEqual(
            self.rules.recipientKeys("edouard-lists", "-+"), [("edouard-lists", None), ("edouard", None)]
        )
        # A leading delimiter leaves nothing to strip to.
        self.assertEqual(self.rules.recipientKeys("+x"), [("+x", None)])
        none = UsernameRules(("domaineel.rt",), delimiters="")
        self.assertEqual(none.loginKey("a+b"), ("a+b", None))

    def test_invalid(self):
        for name in ["", "@domaineel.rt", "a b", "a:b", "a/b", "..\\x", "a\nb", "x" * 65,
                     "a@", "a@b@domaineel.rt", None, b"bytes"]:
            self.assertIsNone(self.rules.loginKey(name), repr(name))
        self.assertEqual(self.rules.loginKey("x" * 64), ("x" * 64, None))
        self.assertEqual(self.rules.loginKey("éloïse"), ("éloïse", None))


class MailLocationTests(unittest.TestCase):
    def test_home(self):
        location = parseMailLocation("maildir:~/Maildir")
        self.assertEqual(
            location.expand("edouard", "edouard", "domaineel.rt", Path("/home/edouard")),
            Path("/home/edouard/Maildir"),
        )

    def test_variables(self):
        location = parseMailLocation("maildir:/var/mail/%d/%n:LAYOUT=fs")
        self.assertEqual(location.params, (("LAYOUT", "fs"),))
        self.assertEqual(
            location.expand("anne@alias.rt", "anne", "alias.rt", Path("/h")),
            Path("/var/mail/alias.rt/anne"),
        )
        location = parseMailLocation("maildir:%h/mail/%Lu/%%")
        self.assertEqual(
            location.expand("Anne", "anne", "d", Path("/h")), Path("/h/mail/anne/%")
        )

    def test_errors(self):
        for text, reason in [
            ("mbox:~/mail", "only maildir"),
            ("~/Maildir", "no format"),
            ("maildir:Maildir", "relative"),
            ("maildir:/var/mail/%x", "unknown variable"),
            ("maildir:", "empty"),
            ("maildir:/x:LAYOUT", "KEY=VALUE"),
        ]:
            e = self.assertRaises(ValueError, parseMailLocation, text)
            self.assertIn(reason, str(e), text)

    def test_unsafeValues(self):
        location = parseMailLocation("maildir:/var/mail/%d/%n")
        self.assertRaises(ValueError, location.expand, "..", "..", "d", Path("/h"))


class DirectoryTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        (self.directory / "passwd").write_text(
            "edouard:x:1500:1500::/home/edouard:/bin/bash\n"
            "root:x:0:0::/root:/bin/bash\n"
            "clash:x:1501:1501::/home/clash:/bin/bash\n"
        )
        (self.directory / "shadow").write_text(
            f"edouard:{mkpasswd('sha512crypt', 'unix')}:{TODAY}:0:99999:7:::\n"
        )
        (self.directory / "users").write_text(
            "anne:{PLAIN}a\n"
            "bob:{PLAIN}b:2000:2000::/srv/mail/bob\n"
            "carol@alias.rt:{PLAIN}c\n"
            "clash:{PLAIN}v\n"
            "edouard+x:{PLAIN}plus\n"
        )
        self.config = makeConfig(
            self.directory,
            auth="checkers = passwd-file unix\npasswd_file = users\n"
            "unix_passwd = passwd\nunix_shadow = shadow\nlocal_domains = alias.rt",
            store="mail_location = maildir:~/Maildir",
        )
        from twisted.internet.task import Clock

        self.portal = makePortal(self.config, Clock(), runner=runSynchronously)
        self.lookup = lambda name: _result(self.portal.directory.lookup(name))
        self.recipient = lambda address, d=None: _result(
            self.portal.directory.lookupRecipient(address, d)
        )

    def test_interfaces(self):
        from zope.interface.verify import verifyObject

        verifyObject(IMailPortal, self.portal)
        verifyObject(IMailPortal, self.portal.forConnection("192.0.2.1", "imap"))
        verifyObject(IMailRealm, self.portal.realm)
        verifyObject(IAccountDirectory, self.portal.directory)
        self.assertTrue(IMailPortal.providedBy(self.portal))
        self.assertTrue(IMailRealm.providedBy(self.portal.realm))
        self.assertTrue(IAccountDirectory.providedBy(self.portal.directory))
        self.assertEqual(self.portal.directory.localDomains, ("domaineel.rt", "alias.rt"))
        self.assertTrue(self.portal.directory.isLocalDomain("ALIAS.rt."))

    def test_virtualUser(self):
        account = self.lookup("anne")
        state = self.directory / "state"
        self.assertEqual(
            account,
            Account(
                name="anne",
                domain="domaineel.rt",
                home=state / "users" / "domaineel.rt" / "anne",
                uid=None,
                gid=None,
                maildir=state / "users" / "domaineel.rt" / "anne" / "Maildir",
            ),
        )
        self.assertEqual(self.lookup("ANNE@domaineel.rt"), account)
        self.assertEqual(self.lookup("anne@alias.rt"), account)
        self.assertIsNone(self.lookup("anne@example.org"))

    def test_defaultHomeIsCreated(self):
        """
        The default home of a virtual user is maillab's to create (mode
        0700), so the store can make the Maildir in it at first login or
        delivery; a home the passwd-file names is never created.
        """
        account = self.lookup("anne")
        self.assertTrue(account.home.is_dir())
        self.assertEqual(account.home.stat().st_mode & 0o777, 0o700)
        self.assertFalse(self.lookup("bob").home.exists())

    def test_fieldsFromLine(self):
        account = self.lookup("bob")
        self.assertEqual((account.uid, account.gid), (2000, 2000))
        self.assertEqual(account.maildir, Path("/srv/mail/bob/Maildir"))

    def test_domainBound(self):
        account = self.lookup("carol@alias.rt")
        self.assertEqual((account.name, account.domain), ("carol", "alias.rt"))
        self.assertEqual(account.address, "carol@alias.rt")
        self.assertIsNone(self.lookup("carol"))
        self.assertEqual(self.lookup(account.address), account)

    def test_systemUser(self):
        account = self.lookup("edouard@domaineel.rt")
        self.assertEqual(account.name, "edouard")
        self.assertEqual((account.home, account.uid, account.gid), (Path("/home/edouard"), 1500, 1500))
        self.assertEqual(account.maildir, Path("/home/edouard/Maildir"))
        self.assertIsNone(self.lookup("root"))

    def test_sourceOrder(self):
        """
        passwd-file is listed first, so its "clash" wins.
        """
        self.assertIsNone(self.lookup("clash").uid)

    def test_recipients(self):
        self.assertEqual(self.recipient("edouard+lists@domaineel.rt").name, "edouard")
        self.assertEqual(self.recipient("Edouard@Alias.RT").name, "edouard")
        self.assertIsNone(self.recipient("edouard+lists@domaineel.rt", ""))
        self.assertIsNone(self.recipient("nobody@domaineel.rt"))
        self.assertIsNone(self.recipient("edouard@example.org"))
        # An account whose name holds the delimiter still gets its mail,
        # but can never log in.
        self.assertEqual(self.recipient("edouard+x@domaineel.rt").name, "edouard+x")
        self.assertIsNone(self.lookup("edouard+x"))

    def test_mailLocationTemplate(self):
        config = makeConfig(
            self.directory,
            auth="checkers = passwd-file\npasswd_file = users\nlocal_domains = alias.rt",
            store="mail_location = maildir:/var/mail/%d/%n",
        )
        from twisted.internet.task import Clock

        portal = makePortal(config, Clock(), runner=runSynchronously)
        account = _result(portal.directory.lookup("carol@alias.rt"))
        self.assertEqual(account.maildir, Path("/var/mail/alias.rt/carol"))
        account = _result(portal.directory.lookup("anne"))
        self.assertEqual(account.maildir, Path("/var/mail/domaineel.rt/anne"))

    def test_badMailLocationIsConfigError(self):
        config = makeConfig(
            self.directory,
            auth="checkers = passwd-file\npasswd_file = users",
            store="mail_location = mbox:~/mail",
        )
        from twisted.internet.task import Clock

        e = self.assertRaises(ConfigError, makePortal, config, Clock(), runner=runSynchronously)
        self.assertEqual((e.section, e.key), ("store", "mail_location"))


class IDummy(Interface):
    pass


class IOther(Interface):
    pass


@implementer(IDummy)
class DummyAvatar:
    def __init__(self, account):
        self.account = account
        self.loggedOut = False

    def logout(self):
        self.loggedOut = True


class RealmTests(unittest.TestCase):
    def setUp(self):
        accounts = {
            "anne": Account("anne", "d", Path("/h/anne"), None, None, Path("/h/anne/Maildir"))
        }

        class Directory:
            def lookup(self, name):
                from twisted.internet import defer

                return defer.succeed(accounts.get(name))

        self.realm = MailRealm(Directory())

    def test_registeredFactory(self):
        self.realm.registerAvatarFactory(IDummy, DummyAvatar)
        interface, avatar, logout = _result(self.realm.requestAvatar("anne", None, IOther, IDummy))
        self.assertIs(interface, IDummy)
        self.assertEqual(avatar.account.maildir, Path("/h/anne/Maildir"))
        logout()
        self.assertTrue(avatar.loggedOut)

    def test_bytesAvatarId(self):
        self.realm.registerAvatarFactory(IDummy, DummyAvatar)
        self.assertEqual(_result(self.realm.requestAvatar(b"anne", None, IDummy))[1].account.name, "anne")

    def test_deferredFactoryAndNoLogout(self):
        from twisted.internet import defer

        self.realm.registerAvatarFactory(IOther, lambda account: defer.succeed(account.name))
        interface, avatar, logout = _result(self.realm.requestAvatar("anne", None, IOther))
        self.assertEqual((interface, avatar), (IOther, "anne"))
        logout()

    def test_noFactory(self):
        failure = _result(self.realm.requestAvatar("anne", None, IDummy))
        self.assertIsInstance(failure.value, NotImplementedError)

    def test_twice(self):
        self.realm.registerAvatarFactory(IDummy, DummyAvatar)
        self.assertRaises(ValueError, self.realm.registerAvatarFactory, IDummy, DummyAvatar)

    def test_vanishedAccount(self):
        self.realm.registerAvatarFactory(IDummy, DummyAvatar)
        failure = _result(self.realm.requestAvatar("gone", None, IDummy))
        self.assertIsInstance(failure.value, UnauthorizedLogin)

    def test_anonymous(self):
        self.realm.registerAnonymousFactory(IDummy, lambda: "anon")
        self.assertEqual(_result(self.realm.requestAvatar(ANONYMOUS, None, IDummy))[1], "anon")
        failure = _result(self.realm.requestAvatar(ANONYMOUS, None, IOther))
        self.assertIsInstance(failure.value, NotImplementedError)
