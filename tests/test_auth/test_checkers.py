"""
Tests for the unix, pam and passwd-file checkers and their chain, with
fixture passwd/shadow files holding real hashes made at test time.
"""

import os
import time
import uuid
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial import unittest

from twisted_maillab.auth import checkers, hashing
from twisted_maillab.auth.names import UsernameRules
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.auth.sources import PasswdFileSource, UnixSource
from tests.auth_fixtures import SYSTEM_USERS, TODAY, mkpasswd, writeSystemFiles

RULES = UsernameRules(localDomains=("domaineel.rt", "alias.rt"))


_FILES = []


def systemFiles():
    """
    The passwd/shadow fixture, made once per run (mkpasswd is slow-ish).
    """
    if not _FILES:
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="maillab-auth-"))
        _FILES.append(writeSystemFiles(directory))
    return _FILES[0]


def _result(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred did not fire synchronously"
    return results[0]


class UnixCheckerTests(unittest.TestCase):
    def setUp(self):
        self.passwd, self.shadow = systemFiles()
        self.source = UnixSource(RULES, self.passwd, self.shadow, 1000, 59999)
        self.checker = checkers.UnixChecker(
            RULES, self.source, hashing.cryptBackend(), runner=runSynchronously
        )

    def assertAccepted(self, username, password, avatarId=None):
        result = _result(self.checker.requestAvatarId(UsernamePassword(username, password)))
        self.assertEqual(result, avatarId or username)

    def assertRefused(self, username, password, reason=None):
        result = _result(self.checker.requestAvatarId(UsernamePassword(username, password)))
        self.assertIsInstance(getattr(result, "value", None), UnauthorizedLogin, repr(result))
        if reason is not None:
            self.assertEqual(result.value.reason, reason)

    def test_everyHashMethod(self):
        """
        yescrypt, sha512-crypt, sha256-crypt, md5-crypt and bcrypt hashes
        made by mkpasswd verify; a wrong password does not.
        """
        for name in ("yes", "sha", "md5", "sha256", "blf"):
            password = SYSTEM_USERS[name][0]
            self.assertAccepted(name, password)
            self.assertRefused(name, password + "!", "bad password")

    def test_bytesCredentials(self):
        """
        Twisted's protocols hand over bytes.
        """
        self.assertAccepted(b"edouard", b"s3cret", "edouard")

    def test_domainAndCase(self):
        self.assertAccepted("edouard@domaineel.rt", "s3cret", "edouard")
        self.assertAccepted("Edouard@DomaineEL.RT.", "s3cret", "edouard")
        self.assertAccepted("edouard@alias.rt", "s3cret", "edouard")
        self.assertRefused("edouard@elsewhere.example", "s3cret", "invalid user name")

    def test_delimiterNeverPartOfLogin(self):
        self.assertRefused("edouard+lists", "s3cret", "invalid user name")
        self.assertRefused("edouard+lists@domaineel.rt", "s3cret", "invalid user name")

    def test_lockedStarredEmpty(self):
        self.assertRefused("locked", "locked-pass", "locked account")
        self.assertRefused("starred", "anything", "locked account")
        self.assertRefused("empty", "", "empty password")
        self.assertRefused("empty", "x", "empty password")

    def test_expiry(self):
        self.assertRefused("expired", "exp-pass", "expired account")
        self.assertRefused("aged", "aged-pass", "expired password")
        self.assertRefused("mustchange", "mc-pass", "password change required")
        self.assertAccepted("later", "later-pass")

    def test_expiryUsesInjectedClock(self):
        """
        The "later" account expires in 30 days: with the clock moved 31
        days ahead it is refused.
        """
        future = time.time() + 31 * 86400
        checker = checkers.UnixChecker(
            RULES, self.source, hashing.cryptBackend(), clock=lambda: future,
            runner=runSynchronously,
        )
        result = _result(checker.requestAvatarId(UsernamePassword("later", "later-pass")))
        self.assertEqual(result.value.reason, "expired account")

    def test_expiredOnlyAfterCorrectPassword(self):
        """
        A wrong password for an expired account is just a bad password:
        the account state is not revealed to someone without it.
        """
        self.assertRefused("expired", "nope", "bad password")

    def test_uidRange(self):
        """
        root, daemons and nobody never log in to mail.
        """
        self.assertRefused("root", "root-pass", "unknown user")
        self.assertRefused("daemon", "x", "unknown user")
        self.assertRefused("nobody", "nobody-pass", "unknown user")

    def test_oldStylePasswdHash(self):
        self.assertAccepted("oldstyle", "old-pass")

    def test_unknownUser(self):
        self.assertRefused("nosuchuser", "x", "unknown user")

    def test_fileChangesAreSeen(self):
        """
        A new shadow file (as passwd(1) writes it: rename) is read again.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        passwd, shadow = directory / "passwd", directory / "shadow"
        passwd.write_text("anne:x:1500:1500::/home/anne:/bin/sh\n")
        shadow.write_text(f"anne:{mkpasswd('sha512crypt', 'one')}:{TODAY - 1}:0:99999:7:::\n")
        source = UnixSource(RULES, passwd, shadow)
        checker = checkers.UnixChecker(RULES, source, runner=runSynchronously)
        self.assertEqual(_result(checker.requestAvatarId(UsernamePassword("anne", "one"))), "anne")
        replacement = directory / "shadow.new"
        replacement.write_text(f"anne:{mkpasswd('sha512crypt', 'two')}:{TODAY - 1}:0:99999:7:::\n")
        os.rename(replacement, shadow)
        self.assertIsInstance(
            _result(checker.requestAvatarId(UsernamePassword("anne", "one"))).value,
            UnauthorizedLogin,
        )
        self.assertEqual(_result(checker.requestAvatarId(UsernamePassword("anne", "two"))), "anne")

    def test_symlinkedFileRefused(self):
        """
        The files are opened with O_NOFOLLOW.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "passwd").symlink_to(self.passwd)
        source = UnixSource(RULES, directory / "passwd", self.shadow)
        self.assertRaises(OSError, source.find, ("edouard", None))


class PasswdFileCheckerTests(unittest.TestCase):
    def setUp(self):
        self.path = Path(self.mktemp())
        backend = hashing.cryptBackend()
        lines = [
            "# virtual users",
            "anne:" + hashing.makeHash(backend, "anne-pass", "ARGON2ID") + ":::::: ",
            "bob:" + hashing.makeHash(backend, "bob-pass", "SHA512-CRYPT") + ":5000:5000::/srv/bob",
            "carol:" + hashing.makeHash(backend, "carol-pass", "BLF-CRYPT"),
            "dave:{PLAIN}dave-pass",
            "erin:" + mkpasswd("yescrypt", "erin-pass"),
            "frank@alias.rt:{SHA512-CRYPT}" + mkpasswd("sha512crypt", "frank-alias"),
            "frank:{SHA512-CRYPT}" + mkpasswd("sha512crypt", "frank-main"),
            "locked:!{SHA512-CRYPT}" + mkpasswd("sha512crypt", "x"),
            "weird:{NTLM}0123456789abcdef",
            "broken line without password field",
            "badid:{PLAIN}x:notanumber",
        ]
        self.path.write_text("\n".join(lines) + "\n")
        self.source = PasswdFileSource(RULES, self.path)
        self.checker = checkers.PasswdFileChecker(RULES, self.source, backend, runner=runSynchronously)

    def check(self, username, password):
        return _result(self.checker.requestAvatarId(UsernamePassword(username, password)))

    def test_schemes(self):
        self.assertEqual(self.check("anne", "anne-pass"), "anne")
        self.assertEqual(self.check("bob", "bob-pass"), "bob")
        self.assertEqual(self.check("carol", "carol-pass"), "carol")
        self.assertEqual(self.check("dave", "dave-pass"), "dave")
        self.assertEqual(self.check("erin", "erin-pass"), "erin")
        for user in ("anne", "bob", "carol", "dave", "erin"):
            self.assertEqual(self.check(user, "wrong").value.reason, "bad password")

    def test_plainIsWarned(self):
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.check("dave", "dave-pass")
        self.assertTrue(
            any("{{PLAIN}}" in e.get("log_format", "") and "dave" in e.get("users", "")
                for e in events)
        )

    def test_domainBoundEntries(self):
        """
        An entry written C{user@domain} is that domain's; a bare entry
        serves every local domain that has no entry of its own.
        """
        self.assertEqual(self.check("frank@alias.rt", "frank-alias"), "frank@alias.rt")
        self.assertEqual(self.check("frank", "frank-main"), "frank")
        self.assertEqual(self.check("frank@domaineel.rt", "frank-main"), "frank")
        self.assertIsInstance(self.check("frank@alias.rt", "frank-main").value, UnauthorizedLogin)

    def test_refusals(self):
        self.assertEqual(self.check("locked", "x").value.reason, "locked account")
        self.assertIn("unsupported password scheme", self.check("weird", "x").value.reason)
        self.assertEqual(self.check("nobody", "x").value.reason, "unknown user")
        self.assertEqual(self.check("badid", "x").value.reason, "unknown user")

    def test_missingFileIsEmpty(self):
        source = PasswdFileSource(RULES, Path(self.mktemp()))
        checker = checkers.PasswdFileChecker(RULES, source, runner=runSynchronously)
        result = _result(checker.requestAvatarId(UsernamePassword("anne", "x")))
        self.assertEqual(result.value.reason, "unknown user")


class ChainTests(unittest.TestCase):
    def setUp(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        passwd, shadow = directory / "passwd", directory / "shadow"
        passwd.write_text(
            "anne:x:1500:1500::/home/anne:/bin/sh\nbob:x:1501:1501::/home/bob:/bin/sh\n"
        )
        shadow.write_text(
            f"anne:{mkpasswd('sha512crypt', 'unix-anne')}:{TODAY - 1}:0:99999:7:::\n"
            f"bob:{mkpasswd('sha512crypt', 'unix-bob')}:{TODAY - 1}:0:99999:7:::\n"
        )
        virtual = directory / "users"
        virtual.write_text("anne:{PLAIN}virtual-anne\ncarl:{PLAIN}virtual-carl\n")
        backend = hashing.cryptBackend()
        self.unix = checkers.UnixChecker(RULES, UnixSource(RULES, passwd, shadow), backend)
        self.file = checkers.PasswdFileChecker(RULES, PasswdFileSource(RULES, virtual), backend)
        self.chain = checkers.CheckerChain(
            RULES, [self.file, self.unix], backend, runner=runSynchronously
        )

    def check(self, credentials):
        return _result(self.chain.requestAvatarId(credentials))

    def test_triedInOrder(self):
        self.assertEqual(self.check(UsernamePassword("anne", "virtual-anne")), "anne")
        self.assertEqual(self.check(UsernamePassword("anne", "unix-anne")), "anne")
        self.assertEqual(self.check(UsernamePassword("carl", "virtual-carl")), "carl")
        self.assertEqual(self.check(UsernamePassword("bob", "unix-bob")), "bob")
        self.assertEqual(self.check(UsernamePassword("bob", "x")).value.reason, "bad password")
        self.assertEqual(self.check(UsernamePassword("zed", "x")).value.reason, "unknown user")

    def test_unknownUserCostsAHash(self):
        """
        An unknown user is verified against the first checker's dummy hash,
        in the passwd-file's scheme (ARGON2ID unless configured); one that
        only the second checker knows costs that checker's real hash.
        """
        calls = []
        for checker in (self.file, self.unix):
            checker.verifyDummy = lambda password, name=checker.name: calls.append(name)
        self.check(UsernamePassword("zed", "x"))
        self.assertEqual(calls, ["passwd-file"])
        self.check(UsernamePassword("bob", "x"))
        self.assertEqual(calls, ["passwd-file"])
        self.assertTrue(self.file.dummy().startswith("{ARGON2ID}$argon2id$"))

    def test_authzid(self):
        """
        RFC 4616: an authzid naming the same account is fine, another one
        is refused even with the right password.
        """
        from twisted_maillab.auth.sasl import PlainCredentials

        ok = PlainCredentials(b"anne@domaineel.rt\0anne\0unix-anne")
        self.assertEqual(self.check(ok), "anne")
        empty = PlainCredentials(b"\0anne\0unix-anne")
        self.assertEqual(self.check(empty), "anne")
        other = PlainCredentials(b"bob\0anne\0unix-anne")
        self.assertEqual(self.check(other).value.reason, "authorization identity differs")
        nobody = PlainCredentials(b"ghost\0anne\0unix-anne")
        self.assertEqual(self.check(nobody).value.reason, "authorization identity differs")

    def test_invalidUTF8(self):
        self.assertEqual(
            self.check(UsernamePassword(b"\xff\xfe", b"x")).value.reason, "invalid user name"
        )
        self.assertEqual(
            self.check(UsernamePassword(b"anne", b"\xff")).value.reason, "invalid user name"
        )


class FakePAM:
    """
    Stand-in for python-pam's module: records calls, accepts one password.
    """

    PAM_SUCCESS = 0
    PAM_AUTH_ERR = 7
    PAM_USER_UNKNOWN = 10
    PAM_ACCT_EXPIRED = 13

    def __init__(self, accounts):
        self.accounts = accounts
        self.calls = []
        fake = self

        class PamAuthenticator:
            def authenticate(self, username, password, service="login", resetcreds=True, **kw):
                fake.calls.append((username, password, service, resetcreds))
                expected = fake.accounts.get(username)
                if expected is None:
                    self.code, self.reason = fake.PAM_USER_UNKNOWN, "User not known"
                    return False
                if expected == "EXPIRED":
                    self.code, self.reason = fake.PAM_ACCT_EXPIRED, "User account has expired"
                    return False
                if password != expected:
                    self.code, self.reason = fake.PAM_AUTH_ERR, "Authentication failure"
                    return False
                self.code, self.reason = fake.PAM_SUCCESS, "Success"
                return True

        self.PamAuthenticator = PamAuthenticator


class PAMCheckerFakeTests(unittest.TestCase):
    """
    The PAM checker's logic with an injected fake module.
    """

    def setUp(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        passwd = directory / "passwd"
        passwd.write_text(
            "root:x:0:0::/root:/bin/sh\nanne:x:1500:1500::/home/anne:/bin/sh\n"
            "old:x:1501:1501::/home/old:/bin/sh\nghost:x:1502:1502::/home/ghost:/bin/sh\n"
        )
        self.pam = FakePAM({"anne": "pam-anne", "old": "EXPIRED", "root": "root"})
        self.checker = checkers.PAMChecker(
            RULES, UnixSource(RULES, passwd, directory / "shadow"), "maillab-test", self.pam,
            runner=runSynchronously,
        )

    def check(self, username, password):
        return _result(self.checker.requestAvatarId(UsernamePassword(username, password)))

    def test_accepts(self):
        self.assertEqual(self.check("Anne@domaineel.rt", "pam-anne"), "anne")
        self.assertEqual(self.pam.calls[-1], ("anne", "pam-anne", "maillab-test", False))

    def test_refusals(self):
        self.assertEqual(self.check("anne", "x").value.reason, "pam: Authentication failure")
        self.assertEqual(self.check("old", "x").value.reason, "pam: User account has expired")
        self.assertEqual(self.check("ghost", "x").value.reason, "unknown user (pam)")

    def test_outOfRangeNeverReachesPAM(self):
        """
        PAM never sees root's name; the failure runs PAM for a name no
        account has, so it costs PAM's time (and failure delay) too.
        """
        self.assertEqual(self.check("root", "root").value.reason, "unknown user")
        self.assertEqual(
            self.pam.calls, [(checkers.PAMChecker.UNKNOWN_NAME, "root", "maillab-test", False)]
        )

    def test_missingModuleNamesExtra(self):
        import builtins

        real = builtins.__import__

        def noPam(name, *args, **kwargs):
            if name == "pam":
                raise ImportError("no pam")
            return real(name, *args, **kwargs)

        self.patch(builtins, "__import__", noPam)
        e = self.assertRaises(ImportError, checkers.PAMChecker.loadPAM)
        self.assertIn("twisted-maillab[pam]", str(e))


def pwdfileService(testCase, directory: Path, passwords: dict) -> str:
    """
    A real PAM service for a test: a file in /etc/pam.d (removed at
    cleanup) using pam_pwdfile (Debian package libpam-pwdfile) on a
    password file of yescrypt hashes in C{directory}.

    @return: the service name.
    """
    candidates = ["/lib/x86_64-linux-gnu/security/pam_pwdfile.so",
                  "/usr/lib/x86_64-linux-gnu/security/pam_pwdfile.so",
                  "/lib/security/pam_pwdfile.so"]
    if not any(os.path.exists(c) for c in candidates):
        raise AssertionError("pam_pwdfile.so is missing: apt-get install libpam-pwdfile")
    if not os.access("/etc/pam.d", os.W_OK):
        raise AssertionError("this test writes a PAM service file: run it as root")
    pwdfile = directory / "pwdfile"
    pwdfile.write_text("".join(f"{name}:{mkpasswd('yescrypt', pw)}\n" for name, pw in passwords.items()))
    service = "maillab-test-" + uuid.uuid4().hex[:8]
    servicePath = Path("/etc/pam.d") / service
    servicePath.write_text(
        f"auth required pam_pwdfile.so pwdfile={pwdfile}\n"
        "account required pam_permit.so\n"
    )
    testCase.addCleanup(servicePath.unlink)
    return service


class PAMCheckerRealTests(unittest.TestCase):
    """
    The PAM checker through the real libpam and python-pam: a service file
    written in /etc/pam.d pointing at pam_pwdfile (Debian package
    libpam-pwdfile) with a password file holding a yescrypt hash.
    """

    def setUp(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        self.service = pwdfileService(self, directory, {"anne": "real-pam"})
        passwd = directory / "passwd"
        passwd.write_text("anne:x:1500:1500::/home/anne:/bin/sh\nroot:x:0:0::/root:/bin/sh\n")
        self.checker = checkers.PAMChecker(
            RULES, UnixSource(RULES, passwd, directory / "shadow"), self.service,
            checkers.PAMChecker.loadPAM(), runner=runSynchronously,
        )

    def test_realPAM(self):
        result = _result(self.checker.requestAvatarId(UsernamePassword("anne", "real-pam")))
        self.assertEqual(result, "anne")
        result = _result(self.checker.requestAvatarId(UsernamePassword("anne", "wrong")))
        self.assertIsInstance(result.value, UnauthorizedLogin)
        self.assertTrue(result.value.reason.startswith("pam: "), result.value.reason)

    def test_deferredInThreads(self):
        """
        Without a runner the check runs in a thread.
        """
        self.checker.runner = checkers._threadRunner
        d = self.checker.requestAvatarId(UsernamePassword("anne", "real-pam"))
        d.addCallback(self.assertEqual, "anne")
        return d


class StrcredPluginTests(unittest.TestCase):
    def test_pluginsFound(self):
        from twisted.cred import strcred

        types = {f.authType for f in strcred.findCheckerFactories()}
        self.assertTrue({"maillab-unix", "maillab-pam", "passwd-file"} <= types)

    def test_passwdFilePlugin(self):
        from twisted.cred import strcred

        path = Path(self.mktemp())
        path.write_text("anne:{SHA512-CRYPT}" + mkpasswd("sha512crypt", "pw") + "\n")
        checker = strcred.makeChecker(f"passwd-file:{path}:domains=example.org")
        checker.runner = runSynchronously
        self.assertEqual(_result(checker.requestAvatarId(UsernamePassword("anne@example.org", "pw"))), "anne")

    def test_unixPlugin(self):
        from twisted.cred import strcred

        directory = Path(self.mktemp())
        directory.mkdir()
        passwd, shadow = directory / "passwd", directory / "shadow"
        passwd.write_text("anne:x:1500:1500::/home/anne:/bin/sh\n")
        shadow.write_text(f"anne:{mkpasswd('yescrypt', 'pw')}:{TODAY - 1}:0:99999:7:::\n")
        checker = strcred.makeChecker(f"maillab-unix:passwd={passwd}:shadow={shadow}")
        checker.runner = runSynchronously
        self.assertEqual(_result(checker.requestAvatarId(UsernamePassword("anne", "pw"))), "anne")
        self.assertRaises(ValueError, strcred.makeChecker, "maillab-unix:bogus=1")
