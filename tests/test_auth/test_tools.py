"""
Tests for maillab passwd, the dev-config demo accounts, and the [auth]
configuration keys.
"""

import io
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.internet import task
from twisted.trial import unittest

from twisted_maillab.auth import ensureDemoAccounts, makePortal, passwdtool
from twisted_maillab.auth.hashing import cryptBackend, verifyScheme
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import ConfigError
from tests.auth_fixtures import makeConfig

ROOT = Path(__file__).resolve().parents[2]


def _entries(path):
    return {
        line.split(":", 1)[0]: line.split(":")
        for line in Path(path).read_text().splitlines()
        if line and not line.startswith("#")
    }


class Stdin(io.StringIO):
    def isatty(self):
        return False


class PasswdToolTests(unittest.TestCase):
    def setUp(self):
        self.path = Path(self.mktemp()).absolute()
        self.out, self.err = io.StringIO(), io.StringIO()

    def run_(self, argv, password="new-password\n"):
        return passwdtool.main(argv, stdin=Stdin(password), stdout=self.out, stderr=self.err)

    def test_addAndChange(self):
        self.assertEqual(self.run_(["--file", str(self.path), "anne"]), 0)
        self.assertIn("added anne", self.out.getvalue())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        fields = _entries(self.path)["anne"]
        self.assertTrue(fields[1].startswith("{ARGON2ID}$argon2id$"))
        self.assertTrue(verifyScheme(cryptBackend(), "new-password", fields[1]))
        # Keep the other fields and lines when changing the password.
        text = self.path.read_text().replace("\n", ":5000:5000::/srv/anne::extra=1\n", 1)
        self.path.write_text("# comment\nbob:{PLAIN}b\n" + text)
        os.chmod(self.path, 0o640)
        self.assertEqual(self.run_(["--file", str(self.path), "--scheme", "sha512-crypt", "anne"], "second-pw\n"), 0)
        self.assertIn("changed the password of anne", self.out.getvalue())
        lines = self.path.read_text().splitlines()
        self.assertEqual(lines[:2], ["# comment", "bob:{PLAIN}b"])
        fields = lines[2].split(":")
        self.assertEqual(fields[0], "anne")
        self.assertTrue(fields[1].startswith("{SHA512-CRYPT}$6$"))
        self.assertEqual(fields[2:], ["5000", "5000", "", "/srv/anne", "", "extra=1"])
        self.assertTrue(verifyScheme(cryptBackend(), "second-pw", fields[1]))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(list(self.path.parent.glob(".*.tmp")), [])

    def test_options(self):
        self.assertEqual(
            self.run_(["--file", str(self.path), "--uid", "5000", "--gid", "5001",
                       "--home", "/srv/mail/carol", "--scheme", "BLF-CRYPT", "carol@example.org"]),
            0,
        )
        fields = _entries(self.path)["carol@example.org"]
        self.assertTrue(fields[1].startswith("{BLF-CRYPT}$2y$"))
        self.assertEqual(fields[2:6], ["5000", "5001", "", "/srv/mail/carol"])

    def test_fromConfig(self):
        directory = self.path
        directory.mkdir()
        (directory / "maillab.ini").write_text(
            "[auth]\nchecks = passwd-file\n".replace("checks", "checkers")
            + "passwd_file = users\npassword_scheme = CRYPT\n"
        )
        self.assertEqual(self.run_(["--config", str(directory / "maillab.ini"), "dave"]), 0)
        self.assertTrue(_entries(directory / "users")["dave"][1].startswith("{CRYPT}$y$"))

    def test_refusals(self):
        self.assertEqual(self.run_(["--file", str(self.path), "anne"], ""), 1)
        self.assertIn("empty password", self.err.getvalue())
        for bad in ["a:b", "a b", "", "a/b"]:
            self.assertEqual(self.run_(["--file", str(self.path), bad]), 2)
        self.assertEqual(self.run_(["anne"]), 2)
        self.assertEqual(self.run_(["--file", str(self.path), "--home", "rel", "anne"]), 2)
        self.assertEqual(self.run_(["--file", str(self.path), "--scheme", "PLAIN", "anne"]), 2)
        self.assertFalse(self.path.exists())

    def test_missingDirectoryRefused(self):
        """
        A passwd-file in a directory that does not exist is refused with
        one line; no directory is created.
        """
        target = self.path / "typo" / "users"
        self.assertEqual(self.run_(["--file", str(target), "anne"]), 1)
        self.assertEqual(
            self.err.getvalue(), f"maillab passwd: {target.parent}: no such directory\n"
        )
        self.assertFalse(self.path.exists())

    def test_minimumLength(self):
        """
        A password shorter than 8 characters is refused unless --force;
        [auth] minimum_password_length changes the limit.
        """
        self.assertEqual(self.run_(["--file", str(self.path), "anne"], "x\n"), 1)
        self.assertEqual(
            self.err.getvalue(),
            "maillab passwd: the password is shorter than 8 characters (--force to accept it)\n",
        )
        self.assertFalse(self.path.exists())
        self.assertEqual(self.run_(["--file", str(self.path), "anne"], "1234567\n"), 1)
        self.assertEqual(self.run_(["--file", str(self.path), "anne"], "12345678\n"), 0)
        self.assertEqual(self.run_(["--file", str(self.path), "--force", "bob"], "x\n"), 0)
        self.assertTrue(verifyScheme(cryptBackend(), "x", _entries(self.path)["bob"][1]))
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ini = directory / "maillab.ini"
        ini.write_text(
            "[auth]\ncheckers = passwd-file\npasswd_file = users\nminimum_password_length = 12\n"
        )
        self.assertEqual(self.run_(["--config", str(ini), "carol"], "12345678901\n"), 1)
        self.assertIn("shorter than 12 characters", self.err.getvalue())
        self.assertEqual(self.run_(["--config", str(ini), "carol"], "123456789012\n"), 0)

    def test_consoleScriptFromPipe(self):
        """
        C{maillab passwd} through the console entry point, password on a pipe.
        """
        result = subprocess.run(
            [sys.executable, "-m", "twisted_maillab.cli", "passwd", "--file", str(self.path), "erin"],
            input="piped-pass\n", capture_output=True, text=True, cwd=ROOT,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(verifyScheme(cryptBackend(), "piped-pass", _entries(self.path)["erin"][1]))

    def test_terminalNoEcho(self):
        """
        On a terminal the password is asked twice, without echo.
        """
        master, slave = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "twisted_maillab.cli", "passwd", "--file", str(self.path), "fred"],
            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True,
        )
        os.close(slave)
        output = b""

        def readUntil(marker):
            nonlocal output
            deadline = time.monotonic() + 30
            while marker not in output and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    try:
                        output += os.read(master, 1024)
                    except OSError:
                        break
            self.assertIn(marker, output)

        try:
            readUntil(b"New password: ")
            os.write(master, b"tty-secret\n")
            readUntil(b"Retype new password: ")
            os.write(master, b"tty-secret\n")
            readUntil(b"added fred")
            self.assertEqual(process.wait(30), 0)
        finally:
            os.close(master)
            if process.poll() is None:
                process.kill()
        self.assertNotIn(b"tty-secret", output)
        self.assertTrue(verifyScheme(cryptBackend(), "tty-secret", _entries(self.path)["fred"][1]))


class DemoAccountTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.config = makeConfig(
            self.directory,
            auth="checkers = passwd-file\npasswd_file = var/passwd\ndemo_users = edouard utilisateur",
        )

    def test_createdOnceAndPrintedAgain(self):
        pairs = ensureDemoAccounts(self.config)
        self.assertEqual([a for a, p in pairs], ["edouard@domaineel.rt", "utilisateur@domaineel.rt"])
        passwords = [p for a, p in pairs]
        self.assertTrue(all(len(p) >= 16 for p in passwords))
        # Safe to paste into a command line (swaks -ap, curl -u).
        self.assertTrue(all(p.isalnum() and p.isascii() for p in passwords), passwords)
        self.assertNotEqual(passwords[0], passwords[1])
        clear = self.directory / "state" / "demo-passwords"
        self.assertEqual(stat.S_IMODE(os.stat(clear).st_mode), 0o600)
        entries = _entries(self.directory / "var" / "passwd")
        self.assertTrue(entries["edouard"][1].startswith("{ARGON2ID}"))
        self.assertNotIn(passwords[0], (self.directory / "var" / "passwd").read_text())
        # Later starts: same passwords, nothing rewritten.
        before = (self.directory / "var" / "passwd").read_text()
        self.assertEqual(ensureDemoAccounts(self.config), pairs)
        self.assertEqual((self.directory / "var" / "passwd").read_text(), before)
        # The accounts log in through the portal.
        portal = makePortal(self.config, task.Clock(), runner=runSynchronously)
        for address, password in pairs:
            d = portal.chain.requestAvatarId(UsernamePassword(address, password))
            self.assertEqual(d.result, address.split("@")[0])

    def test_existingUserLeftAlone(self):
        (self.directory / "var").mkdir()
        (self.directory / "var" / "passwd").write_text("edouard:{SHA512-CRYPT}$6$admin$set\n")
        pairs = ensureDemoAccounts(self.config)
        self.assertEqual([a for a, p in pairs], ["utilisateur@domaineel.rt"])
        self.assertIn("edouard:{SHA512-CRYPT}$6$admin$set", (self.directory / "var" / "passwd").read_text())

    def test_deletedUserRecreatedWithSamePassword(self):
        pairs = ensureDemoAccounts(self.config)
        (self.directory / "var" / "passwd").write_text("")
        self.assertEqual(ensureDemoAccounts(self.config), pairs)
        portal = makePortal(self.config, task.Clock(), runner=runSynchronously)
        d = portal.chain.requestAvatarId(UsernamePassword("edouard", pairs[0][1]))
        self.assertEqual(d.result, "edouard")

    def test_none(self):
        config = makeConfig(self.directory, auth="checkers = passwd-file\npasswd_file = p")
        self.assertEqual(ensureDemoAccounts(config), [])
        self.assertFalse((self.directory / "state").exists())


class ConfigTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()

    def assertConfigError(self, auth, key, reason):
        e = self.assertRaises(ConfigError, makeConfig, self.directory, auth)
        self.assertEqual((e.section, e.key), ("auth", key))
        self.assertIn(reason, e.reason)

    def test_defaults(self):
        auth = makeConfig(self.directory).auth
        self.assertEqual(auth.checkers, ("unix",))
        self.assertEqual(auth.unix_shadow, Path("/etc/shadow"))
        self.assertEqual((auth.lockout_failures, auth.lockout_duration), (10, 900.0))

    def test_values(self):
        auth = makeConfig(
            self.directory,
            "checkers = passwd-file, unix\npasswd_file = users\nlocal_domains = Alias.RT. other.rt\n"
            "throttle_delay = 1s\nthrottle_max_delay = 1m\nlockout_duration = 1h\n"
            "throttle_exempt = 10.0.0.0/8 [::1]/128",
        ).auth
        self.assertEqual(auth.checkers, ("passwd-file", "unix"))
        self.assertEqual(auth.passwd_file, self.directory / "users")
        self.assertEqual(auth.local_domains, ("alias.rt", "other.rt"))
        self.assertEqual((auth.throttle_delay, auth.throttle_max_delay, auth.lockout_duration),
                         (1.0, 60.0, 3600.0))
        self.assertEqual(len(auth.throttle_exempt), 2)

    def test_errors(self):
        self.assertConfigError("checkers = ldap", "checkers", "is not one of")
        self.assertConfigError("checkers = passwd-file", "passwd_file", "needs passwd_file")
        self.assertConfigError("checkers = unix unix", "checkers", "twice")
        self.assertConfigError("demo_users = a\npasswd_file = p", "demo_users", "passwd-file checker")
        self.assertConfigError("checkers = passwd-file\npasswd_file = p\ndemo_users = a:b", "demo_users", "not a valid")
        self.assertConfigError("first_valid_uid = 2000\nlast_valid_uid = 1000", "last_valid_uid", "below")
        self.assertConfigError("recipient_delimiter = a", "recipient_delimiter", "punctuation")
        self.assertConfigError("username_case = upper", "username_case", "is not one of")
        self.assertConfigError("throttle_ipv6_prefix = 8", "throttle_ipv6_prefix", "minimum")

    def test_pamMissingIsConfigError(self):
        import builtins

        real = builtins.__import__

        def noPam(name, *args, **kwargs):
            if name == "pam":
                raise ImportError("no pam")
            return real(name, *args, **kwargs)

        self.patch(builtins, "__import__", noPam)
        config = makeConfig(self.directory, "checkers = pam")
        e = self.assertRaises(ConfigError, makePortal, config, task.Clock())
        self.assertEqual((e.section, e.key), ("auth", "checkers"))
        self.assertIn("twisted-maillab[pam]", e.reason)

    def test_shippedConfigsLoad(self):
        """
        etc/maillab.ini and etc/maillab.dev.ini build a portal.
        """
        from twisted_maillab.config import load

        for name in ("maillab.ini", "maillab.dev.ini"):
            config = load(ROOT / "etc" / name)
            portal = makePortal(config, task.Clock(), runner=runSynchronously)
            self.assertIn(config.server.domain, portal.directory.localDomains)
