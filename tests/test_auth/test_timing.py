"""
A failed login takes the same time whatever the reason (no user
enumeration by timing): an unknown name, a locked account or an invalid
name is checked against a dummy hash of the scheme a real account's check
would use.  Measured with the real hashers (argon2, yescrypt through
libcrypt), through the portal and end to end over POP3 on loopback.

The comparisons use medians of interleaved attempts and a ratio window of
0.5..2: wide enough for a loaded 2-core machine, while a name check
without a hash is 10 to 100 times faster than the hash (about 110 ms for
argon2 against 2 ms).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.trial import unittest
from zope.interface import Interface

from twisted_maillab.auth import checkers, hashing, makePortal
from twisted_maillab.auth.names import UsernameRules
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.auth.sources import UnixSource
from tests.auth_fixtures import TODAY, makeConfig, mkpasswd
from tests.test_auth.test_checkers import FakePAM, pwdfileService
from tests.test_pop3_e2e import Server

ROUNDS = 10
PAM_ROUNDS = 12
_log = Logger()
LOW, HIGH = 0.5, 2.0


class IThing(Interface):
    pass


def ratio(first: list[float], second: list[float]) -> float:
    """
    The ratio of the medians, logged (trial's test.log) with them.
    """
    value = statistics.median(first) / statistics.median(second)
    _log.info(
        "failure medians: {first:.1f} ms and {second:.1f} ms, ratio {ratio:.2f}",
        first=statistics.median(first) * 1000,
        second=statistics.median(second) * 1000,
        ratio=value,
    )
    return value


def unixFiles(directory: Path, method: str) -> tuple[Path, Path]:
    passwd, shadow = directory / "passwd", directory / "shadow"
    passwd.write_text(
        "anne:x:1500:1500::/home/anne:/bin/sh\n"
        "bob:x:1501:1501::/home/bob:/bin/sh\n"
        "locked:x:1502:1502::/home/locked:/bin/sh\n"
    )
    shadow.write_text(
        f"anne:{mkpasswd(method, 'anne-pass')}:{TODAY - 1}:0:99999:7:::\n"
        f"bob:{mkpasswd(method, 'bob-pass')}:{TODAY - 1}:0:99999:7:::\n"
        f"locked:!{mkpasswd(method, 'locked-pass')}:{TODAY - 1}:0:99999:7:::\n"
    )
    return passwd, shadow


class PortalTimingTests(unittest.TestCase):
    """
    Through L{makePortal} with its real check pool on the running reactor.
    """

    def portal(self, auth: str):
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        return directory, makePortal(
            makeConfig(directory, auth + "\nthrottle_exempt = 127.0.0.0/8\nuser_free_failures = 1000\n"), reactor
        )

    @defer.inlineCallbacks
    def timeFailures(self, portal, *usernames: str):
        """
        @return: for each name, its failure times (attempts interleaved,
            so machine load affects every name alike).
        """
        times = {name: [] for name in usernames}
        for round in range(ROUNDS):
            for name in usernames:
                login = name.replace("?", str(round))
                started = time.perf_counter()
                d = portal.loginFrom(UsernamePassword(login.encode(), b"wrong"), "127.0.0.1", "pop3", None, IThing)
                yield self.assertFailure(d, UnauthorizedLogin)
                times[name].append(time.perf_counter() - started)
        return [times[name] for name in usernames]

    @defer.inlineCallbacks
    def test_passwdFileArgon2(self):
        directory, portal = self.portal("checkers = passwd-file\npasswd_file = users\n")
        backend = hashing.cryptBackend()
        (directory / "users").write_text(
            "edouard:" + hashing.makeHash(backend, "s3cret", "ARGON2ID") + "\n"
            "stopped:!" + hashing.makeHash(backend, "s3cret", "ARGON2ID") + "\n"
        )
        bad, unknown, locked = yield self.timeFailures(portal, "edouard", "ghost?", "stopped")
        self.assertGreater(statistics.median(bad), 0.02)
        self.assertTrue(LOW <= ratio(bad, unknown) <= HIGH, (bad, unknown))
        self.assertTrue(LOW <= ratio(bad, locked) <= HIGH, (bad, locked))

    @defer.inlineCallbacks
    def test_unixYescrypt(self):
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        passwd, shadow = unixFiles(directory, "yescrypt")
        _, portal = self.portal(f"checkers = unix\nunix_passwd = {passwd}\nunix_shadow = {shadow}\n")
        bad, unknown, locked, invalid = yield self.timeFailures(
            portal, "anne", "ghost?", "locked", "no body?"
        )
        self.assertGreater(statistics.median(bad), 0.005)
        self.assertTrue(LOW <= ratio(bad, unknown) <= HIGH, (bad, unknown))
        self.assertTrue(LOW <= ratio(bad, locked) <= HIGH, (bad, locked))
        self.assertTrue(LOW <= ratio(bad, invalid) <= HIGH, (bad, invalid))


class DummySchemeTests(unittest.TestCase):
    """
    Which dummy each checker verifies (the hash a known user's check
    would cost), seen through a counting crypt backend.
    """

    def setUp(self):
        self.rules = UsernameRules(localDomains=("domaineel.rt",))
        self.calls = []
        real = hashing.cryptBackend()

        def counting(password, setting):
            self.calls.append(setting)
            return real.crypt(password, setting)

        self.backend = hashing.CryptBackend("counting", counting, real.gensalt)

    def unixSource(self, method):
        directory = Path(self.mktemp())
        directory.mkdir()
        return UnixSource(self.rules, *unixFiles(directory, method))

    def refusedUnknown(self, checker):
        chain = checkers.CheckerChain(self.rules, [checker], self.backend, runner=runSynchronously)
        results = []
        chain.requestAvatarId(UsernamePassword(b"ghost", b"x")).addErrback(results.append)
        self.assertEqual(results[0].value.reason, "unknown user")
        return self.calls[-1]

    def test_unixFollowsTheShadowMethod(self):
        for method, prefix in (("yescrypt", "$y$"), ("sha512crypt", "$6$")):
            checker = checkers.UnixChecker(self.rules, self.unixSource(method), self.backend)
            self.assertTrue(self.refusedUnknown(checker).startswith(prefix), (method, self.calls))

    def test_pamUsesTheShadowMethod(self):
        pam = FakePAM({})
        checker = checkers.PAMChecker(
            self.rules, self.unixSource("yescrypt"), pamModule=pam, backend=self.backend
        )
        self.assertTrue(self.refusedUnknown(checker).startswith("$y$"), self.calls)
        self.assertEqual([call[0] for call in pam.calls], [checkers.PAMChecker.UNKNOWN_NAME])


class PAMTimingTests(unittest.TestCase):
    """
    The PAM path with the real libpam: pam_pwdfile, like pam_unix, holds
    every failure for about 2 s (libpam's failure delay).  A name PAM is
    never asked about must take that long too.
    """

    @defer.inlineCallbacks
    def test_unknownNameCostsPAMsFailureDelay(self):
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        service = pwdfileService(self, directory, {"anne": "anne-pass"})
        (directory / "passwd").write_text("anne:x:1500:1500::/home/anne:/bin/sh\n")
        portal = makePortal(
            makeConfig(
                directory,
                f"checkers = pam\npam_service = {service}\nunix_passwd = passwd\n"
                "unix_shadow = shadow\nthrottle_exempt = 127.0.0.0/8\n"
                "user_free_failures = 1000\ncheck_threads = 12\nthrottle_parallel_checks = 12\n",
            ),
            reactor,
        )
        # All at once, so the test waits one failure delay, not twelve.
        names = ["anne", "ghost"] * (PAM_ROUNDS // 2)
        started = time.perf_counter()
        times = {"anne": [], "ghost": []}

        def failed(failure, name):
            failure.trap(UnauthorizedLogin)
            times[name].append(time.perf_counter() - started)

        yield defer.gatherResults(
            [
                portal.loginFrom(UsernamePassword(name.encode(), b"wrong"), "127.0.0.1", "pop3", None, IThing)
                .addCallbacks(lambda _: self.fail("logged in"), failed, errbackArgs=(name,))
                for name in names
            ]
        )
        bad, unknown = times["anne"], times["ghost"]
        self.assertGreater(statistics.median(bad), 0.5)
        self.assertTrue(LOW <= ratio(bad, unknown) <= HIGH, (bad, unknown))


class POP3TimingTests(unittest.TestCase):
    def test_pop3UnknownAndBadPasswordAlike(self):
        """
        End to end: C{twistd maillab}, argon2 passwd-file users, USER/PASS
        with poplib on 127.0.0.1; the PASS reply to a wrong password and
        to an unknown name take the same time from the first attempt.
        """
        server = Server(self)
        backend = hashing.cryptBackend()
        server.stop()
        (server.root / "users").write_text(
            "edouard:" + hashing.makeHash(backend, "s3cret", "ARGON2ID") + "\n"
        )
        server.ini.write_text(
            server.ini.read_text().replace("[auth]\n", "[auth]\nthrottle_exempt = 127.0.0.0/8\nuser_free_failures = 1000\n")
        )
        server.start()
        times = {"edouard": [], "ghost": []}
        for round in range(ROUNDS):
            for name in times:
                client = server.pop3()
                client.user(name if name == "edouard" else f"ghost{round}")
                started = time.perf_counter()
                self.assertRaises(Exception, client.pass_, "wrong")
                times[name].append(time.perf_counter() - started)
                client.close()
        bad, unknown = times["edouard"], times["ghost"]
        self.assertGreater(statistics.median(bad), 0.02)
        self.assertTrue(LOW <= ratio(bad, unknown) <= HIGH, (bad, unknown))
