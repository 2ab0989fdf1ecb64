"""
Tests for the portal: throttling (the issue's "Done when" items), the
fail2ban log line and filter, the bounded check pool, SASL, and a slow
checker that must not block a concurrent connection.
"""

import base64
import shutil
import subprocess
import threading
from pathlib import Path

from twisted.cred.credentials import Anonymous, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, formatEventAsClassicLogText, globalLogPublisher
from twisted.mail import imap4, smtp
from twisted.trial import unittest
from zope.interface import Interface, implementer

from twisted_maillab.auth import AuthenticationUnavailable, makePortal, sasl
from twisted_maillab.auth.hashing import cryptBackend, makeHash
from twisted_maillab.auth.pool import CheckPool, runSynchronously
from twisted_maillab.auth.portal import hostOf, quoteLogValue
from twisted_maillab.auth.throttle import Throttle, ThrottlePolicy, addressKey
from tests.auth_fixtures import makeConfig

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "etc" / "fail2ban" / "filter.d" / "maillab.conf"


class IDummy(Interface):
    pass


@implementer(IDummy)
class DummyAvatar:
    def __init__(self, account):
        self.account = account


def writeUsers(directory: Path) -> Path:
    backend = cryptBackend()
    path = directory / "users"
    path.write_text(
        "edouard:" + makeHash(backend, "s3cret", "SHA512-CRYPT") + "\n"
        "anne:" + makeHash(backend, "anne-pass", "SHA512-CRYPT") + "\n"
    )
    return path


class LogCapture:
    def __init__(self, testCase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def authLines(self):
        return [
            formatEvent(e) for e in self.events
            if e.get("log_namespace") == "twisted_maillab.auth"
            and e.get("log_format", "").startswith("auth: result=")
        ]


class ThrottleTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.throttle = Throttle(ThrottlePolicy(), self.clock)

    def test_growingDelays(self):
        delays = [self.throttle.failed("192.0.2.1", f"u{i}@d")[0] for i in range(9)]
        self.assertEqual(delays, [0, 0, 0, 2, 4, 8, 15, 15, 15])

    def test_lockoutAndExpiry(self):
        for i in range(9):
            self.assertEqual(self.throttle.failed("192.0.2.1", "u@d")[1], False)
        self.assertEqual(self.throttle.failed("192.0.2.1", "u@d")[1], True)
        self.assertEqual(self.throttle.lockedFor("192.0.2.1"), 900)
        self.assertEqual(self.throttle.lockedFor("192.0.2.2"), 0)
        self.clock.advance(899)
        self.assertEqual(self.throttle.lockedFor("192.0.2.1"), 1)
        self.clock.advance(1)
        self.assertEqual(self.throttle.lockedFor("192.0.2.1"), 0)

    def test_window(self):
        for i in range(5):
            self.throttle.failed("192.0.2.1", "a@d")
        self.clock.advance(901)
        self.assertEqual(self.throttle.failed("192.0.2.1", "b@d")[0], 0)

    def test_userNeverLockedOut(self):
        for i in range(50):
            delay, locked = self.throttle.failed(f"198.51.100.{i}", "victim@d")
            self.assertFalse(locked)
        self.assertEqual(delay, 15)
        self.assertEqual(self.throttle.lockedFor("198.51.100.60"), 0)

    def test_addressKeys(self):
        self.assertEqual(addressKey("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(addressKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(addressKey("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6/128")
        self.assertEqual(addressKey("fe80::1%eth0"), "fe80::/64")
        self.assertEqual(addressKey(None), "unknown")
        self.assertEqual(addressKey("unix"), "unix")

    def test_ipv6SharesPrefix(self):
        """
        One host gets a whole /64: rotating through it does not escape.
        """
        for i in range(10):
            self.throttle.failed(f"2001:db8::{i + 1:x}", "u@d")
        self.assertGreater(self.throttle.lockedFor("2001:db8::ffff"), 0)
        self.assertEqual(self.throttle.lockedFor("2001:db8:0:1::1"), 0)

    def test_exempt(self):
        throttle = Throttle(ThrottlePolicy(exempt=("10.0.0.0/8",)), self.clock)
        for i in range(20):
            throttle.failed("10.1.2.3", f"u{i}@d")
        self.assertEqual(throttle.lockedFor("10.1.2.3"), 0)

    def test_bounded(self):
        throttle = Throttle(ThrottlePolicy(maxTracked=100), self.clock)
        for i in range(1000):
            throttle.failed(f"10.0.{i // 256}.{i % 256}", f"u{i}")
        self.assertEqual(len(throttle._addresses), 100)
        self.assertEqual(len(throttle._users), 100)

    def test_successForgivesOwnTypos(self):
        for i in range(3):
            self.throttle.failed("192.0.2.1", "a@d")
        self.throttle.failed("192.0.2.1", "b@d")
        self.throttle.succeeded("192.0.2.1", "a@d")
        self.assertEqual(len(self.throttle._addresses["192.0.2.1"].times), 1)


class PortalTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        writeUsers(self.directory)
        self.config = makeConfig(
            self.directory, auth="checkers = passwd-file\npasswd_file = users"
        )
        self.clock = task.Clock()
        self.portal = makePortal(self.config, self.clock, runner=runSynchronously)
        self.portal.realm.registerAvatarFactory(IDummy, DummyAvatar)
        self.checks = []
        verify = self.portal.chain.verify

        def counting(key, password):
            self.checks.append(key)
            return verify(key, password)

        self.portal.chain.verify = counting
        self.logs = LogCapture(self)

    def login(self, user, password, host, proto="imap"):
        return self.portal.loginFrom(UsernamePassword(user, password), host, proto, None, IDummy)

    def settle(self, d):
        """
        Fire C{d} by advancing the clock; return (seconds waited, result).
        """
        results = []
        d.addBoth(results.append)
        waited = 0.0
        while not results:
            calls = self.clock.getDelayedCalls()
            self.assertTrue(calls, "nothing scheduled and the login is pending")
            step = min(c.getTime() for c in calls) - self.clock.seconds()
            self.clock.advance(step)
            waited += step
        return waited, results[0]

    def test_twentyWrongPasswordsSlowerThenRefused(self):
        """
        The issue's test: 20 wrong passwords from one address get slower and
        then refused (without being checked), while the right password from
        another address still logs in at once.
        """
        attacker = "203.0.113.9"
        waits, reasons = [], []
        for i in range(20):
            checked = len(self.checks)
            waited, result = self.settle(self.login("edouard", f"guess{i}", attacker))
            self.assertIsInstance(result.value, UnauthorizedLogin)
            waits.append(waited)
            reasons.append((result.value.reason, len(self.checks) > checked))

            # Meanwhile the owner, elsewhere, logs in at once.
            d = self.login("edouard", "s3cret", "198.51.100.20")
            self.assertTrue(d.called, f"delayed after {i + 1} attacker failures")
            self.assertIs(d.result[0], IDummy)
            self.assertEqual(d.result[1].account.address, "edouard@domaineel.rt")

        # Slower: no delay for the first three, then growing.
        self.assertEqual(waits[:3], [0, 0, 0])
        self.assertEqual(waits[3:7], [2, 4, 8, 15])
        self.assertTrue(all(b >= a for a, b in zip(waits[:10], waits[1:10])))
        # Then refused: the 10th failure locks the address out; later
        # attempts are refused at once and never reach the checker.
        self.assertEqual(reasons[:10], [("bad password", True)] * 10)
        self.assertEqual(reasons[10:], [("address locked out", False)] * 10)
        self.assertEqual(waits[10:], [0] * 10)
        # Even the right password is refused from the locked-out address.
        waited, result = self.settle(self.login("edouard", "s3cret", attacker))
        self.assertEqual(result.value.reason, "address locked out")
        # ... until the lockout ends.
        self.clock.advance(900)
        d = self.login("edouard", "s3cret", attacker)
        self.assertTrue(d.called)
        self.assertIs(d.result[0], IDummy)

    def test_userSpreadOverAddressesSlowedNeverLocked(self):
        """
        Failures for one user from many addresses are delayed and logged,
        but the user is not locked out: the right password still works at
        once from any address.
        """
        waits = []
        for i in range(30):
            waited, result = self.settle(self.login("edouard", "wrong", f"198.51.100.{i}"))
            self.assertEqual(result.value.reason, "bad password")
            waits.append(waited)
        self.assertEqual(waits[:5], [0] * 5)
        self.assertEqual(waits[5:9], [2, 4, 8, 15])
        for host in ("198.51.100.0", "198.51.100.29", "192.0.2.200"):
            d = self.login("edouard", "s3cret", host)
            self.assertTrue(d.called)
            self.assertIs(d.result[0], IDummy)
        failed = [line for line in self.logs.authLines() if "result=failed" in line]
        self.assertEqual(len(failed), 30)

    def test_rightPasswordNeverDelayed(self):
        """
        After delayed failures, the right password from the same (not
        locked-out) address is answered at once.
        """
        for i in range(6):
            self.settle(self.login("edouard", "wrong", "192.0.2.7"))
        d = self.login("edouard", "s3cret", "192.0.2.7")
        self.assertTrue(d.called)
        self.assertIs(d.result[0], IDummy)

    def test_sameUserDifferentForms(self):
        """
        user and user@domain (and case) count as one user for throttling.
        """
        names = ["edouard", "EDOUARD", "edouard@domaineel.rt", "Edouard@DomaineEL.rt",
                 "edouard", "edouard"]
        for i, name in enumerate(names):
            waited, _ = self.settle(self.login(name, "wrong", f"192.0.2.{i + 1}"))
        # The sixth failure for the one user (user_free_failures = 5).
        self.assertEqual(waited, 2)

    def test_logLines(self):
        self.settle(self.login("edouard", "wrong", IPv4Address("TCP", "192.0.2.1", 4000), "pop3"))
        self.login("edouard", "s3cret", IPv6Address("TCP", "::1", 4000), "smtp")
        self.settle(self.login('x"\nrip=6.6.6.6', "wrong", "192.0.2.1"))
        self.assertEqual(
            self.logs.authLines(),
            [
                'auth: result=failed proto=pop3 rip=192.0.2.1 user="edouard" delay=0.0 reason="bad password"',
                'auth: result=ok proto=smtp rip=::1 user="edouard" delay=0.0 reason="-"',
                'auth: result=failed proto=imap rip=192.0.2.1 user="x\\"\\x0arip=6.6.6.6" delay=0.0 reason="invalid user name"',
            ],
        )
        event = [e for e in self.logs.events if e.get("authResult") == "ok"][0]
        self.assertEqual((event["authUser"], event["authAddress"]), ("edouard", "::1"))

    def test_fail2banFilter(self):
        """
        The shipped filter matches failed and locked attempts, with the
        right address, in the lines twistd writes; never successes, and
        never an address smuggled in a user name.
        """
        tool = shutil.which("fail2ban-regex")
        if tool is None:
            raise AssertionError("fail2ban-regex is missing: apt-get install fail2ban")
        for i in range(11):
            self.settle(self.login("edouard", "wrong", "203.0.113.9"))
        self.settle(self.login('evil" rip=6.6.6.6 x', "wrong", "2001:db8::7"))
        self.login("edouard", "s3cret", "198.51.100.1")
        log = Path(self.mktemp())
        log.write_text(
            "".join(
                formatEventAsClassicLogText(e) for e in self.logs.events
                if e.get("log_namespace") == "twisted_maillab.auth"
            )
        )
        result = subprocess.run(
            [tool, "--print-all-matched", "--print-no-missed", str(log), str(FILTER)],
            capture_output=True, text=True, check=True,
        )
        self.assertIn("Lines: 14 lines, 0 ignored, 12 matched, 2 missed", result.stdout)
        self.assertIn("203.0.113.9", result.stdout)
        self.assertIn("2001:db8::7", result.stdout)
        matched = result.stdout.split("Lines:")[0]
        self.assertNotIn("6.6.6.6  ", matched)
        self.assertNotIn("198.51.100.1", matched)

    def test_forConnection(self):
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.55", 1234))
        view = self.portal.forConnection(transport, "imap")
        self.settle(view.login(UsernamePassword("edouard", "nope"), None, IDummy))
        d = view.login(UsernamePassword("anne", "anne-pass"), None, IDummy)
        self.assertEqual(d.result[1].account.name, "anne")
        self.assertIn("proto=imap rip=192.0.2.55 ", self.logs.authLines()[0])
        self.assertIs(view.realm, self.portal.realm)
        self.assertIs(view.directory, self.portal.directory)

    def test_addresslessLoginSharesUnknown(self):
        self.settle(self.portal.login(UsernamePassword("edouard", "nope"), None, IDummy))
        self.assertIn("rip=unknown ", self.logs.authLines()[0])

    def test_anonymousUnthrottled(self):
        from twisted.cred.checkers import AllowAnonymousAccess

        self.portal.registerChecker(AllowAnonymousAccess())
        self.portal.realm.registerAnonymousFactory(IDummy, lambda: "anonymous avatar")
        d = self.portal.loginFrom(Anonymous(), "192.0.2.1", "smtp", None, IDummy)
        self.assertEqual(d.result[1], "anonymous avatar")
        self.assertEqual(self.logs.authLines(), [])

    def test_queueFull(self):
        class Full:
            def __call__(self, f, *a):
                return defer.fail(AuthenticationUnavailable("authentication queue is full"))

        self.portal.chain.runner = Full()
        result = self.settle(self.login("edouard", "s3cret", "192.0.2.1"))[1]
        self.assertIsInstance(result.value, AuthenticationUnavailable)
        self.assertIn("result=unavailable", self.logs.authLines()[0])
        # Not counted as a failure.
        self.assertEqual(self.portal.throttle.lockedFor("192.0.2.1"), 0)
        self.assertNotIn("192.0.2.1", self.portal.throttle._addresses)

    def test_hostOf(self):
        self.assertEqual(hostOf(IPv6Address("TCP", "::ffff:192.0.2.1", 1)), "192.0.2.1")
        self.assertEqual(hostOf(IPv6Address("TCP", "fe80::1%eth0", 1)), "fe80::1")
        self.assertEqual(hostOf(UNIXAddress(b"/run/x")), "unix")
        self.assertEqual(hostOf(None), "unknown")
        self.assertEqual(hostOf(b"192.0.2.1"), "192.0.2.1")

    def test_quoteLogValue(self):
        self.assertEqual(quoteLogValue("é\x00"), '"\\xe9\\x00"')
        self.assertEqual(quoteLogValue("a" * 200), '"' + "a" * 128 + '..."')


class CheckPoolTests(unittest.TestCase):
    def test_bounded(self):
        """
        At most maxQueued checks wait or run; more fail at once.
        """
        pool = CheckPool(reactor, size=1, maxQueued=2)
        self.addCleanup(pool.stop)
        release = threading.Event()
        first = pool(release.wait, 10)
        second = pool(lambda: "second")
        third = pool(lambda: "third")
        self.failureResultOf(third, AuthenticationUnavailable)
        release.set()
        return defer.gatherResults([first, second]).addCallback(
            self.assertEqual, [True, "second"]
        )


class SASLTests(unittest.TestCase):
    def test_parsePlain(self):
        self.assertEqual(sasl.parsePlain(b"\0anne\0pw"), ("", "anne", "pw"))
        self.assertEqual(sasl.parsePlain(b"az\0anne\0p\xc3\xa9"), ("az", "anne", "pé"))
        for bad in [b"anne\0pw", b"\0\0pw", b"\0anne\0", b"a\0b\0c\0d", b"\0" + b"a" * 256 + b"\0pw",
                    b"\0\xff\0pw"]:
            self.assertRaises(sasl.SASLError, sasl.parsePlain, bad)

    def test_plainCredentials(self):
        credentials = sasl.PlainCredentials()
        self.assertEqual(credentials.getChallenge(), b"")
        self.assertTrue(credentials.moreChallenges())
        credentials.setResponse(b"\0anne\0pw")
        self.assertFalse(credentials.moreChallenges())
        self.assertEqual((credentials.username, credentials.password, credentials.authzid),
                         (b"anne", b"pw", ""))
        bad = sasl.PlainCredentials(b"garbage")
        self.assertIsNotNone(bad.malformed)
        self.assertFalse(bad.moreChallenges())

    def test_loginCredentials(self):
        credentials = sasl.LoginCredentials()
        self.assertEqual(credentials.getChallenge(), b"Username:")
        credentials.setResponse(b"anne")
        self.assertTrue(credentials.moreChallenges())
        self.assertEqual(credentials.getChallenge(), b"Password:")
        credentials.setResponse(b"pw")
        self.assertFalse(credentials.moreChallenges())
        self.assertEqual((credentials.username, credentials.password), (b"anne", b"pw"))
        initial = sasl.LoginCredentials(b"anne")
        self.assertEqual(initial.getChallenge(), b"Password:")

    def test_plaintextAllowed(self):
        self.assertTrue(sasl.plaintextAllowed("127.0.0.1", False))
        self.assertTrue(sasl.plaintextAllowed("127.8.9.10", False))
        self.assertTrue(sasl.plaintextAllowed("::1", False))
        self.assertTrue(sasl.plaintextAllowed("::ffff:127.0.0.1", False))
        self.assertFalse(sasl.plaintextAllowed("192.0.2.1", False))
        self.assertFalse(sasl.plaintextAllowed("::ffff:192.0.2.1", False))
        self.assertTrue(sasl.plaintextAllowed("192.0.2.1", True))
        self.assertTrue(sasl.plaintextAllowed(UNIXAddress(b"/run/s"), False))
        self.assertFalse(sasl.plaintextAllowed(IPv4Address("TCP", "192.0.2.1", 1), False))
        remote = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 1))
        local = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
        self.assertFalse(sasl.plaintextAllowed(remote))
        self.assertTrue(sasl.plaintextAllowed(local))
        self.assertEqual(sasl.mechanisms(remote), [])
        self.assertEqual(sasl.mechanisms(remote, True), [b"PLAIN", b"LOGIN"])


class TwistedProtocolsTests(unittest.TestCase):
    """
    Twisted's own ESMTP, unchanged, with our challengers and a
    per-connection portal.
    """

    def setUp(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        writeUsers(directory)
        config = makeConfig(directory, auth="checkers = passwd-file\npasswd_file = users")
        self.clock = task.Clock()
        self.portal = makePortal(config, self.clock, runner=runSynchronously)

        @implementer(smtp.IMessageDelivery)
        class Delivery:
            def __init__(self, account):
                self.account = account

        self.portal.realm.registerAvatarFactory(smtp.IMessageDelivery, Delivery)
        self.logs = LogCapture(self)

    def session(self, host):
        server = smtp.ESMTP(chal=sasl.challengers())
        server.callLater = self.clock.callLater
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
        server.makeConnection(transport)
        server.portal = self.portal.forConnection(transport, "submission")
        server.dataReceived(b"EHLO client\r\n")
        transport.clear()
        return server, transport

    def test_authPlain(self):
        server, transport = self.session("127.0.0.1")
        server.dataReceived(b"AUTH PLAIN " + base64.b64encode(b"\0edouard\0s3cret") + b"\r\n")
        self.assertTrue(transport.value().startswith(b"235 "), transport.value())
        self.assertEqual(server.delivery.account.name, "edouard")

    def test_authLogin(self):
        server, transport = self.session("127.0.0.1")
        server.dataReceived(b"AUTH LOGIN\r\n")
        self.assertEqual(transport.value(), b"334 " + base64.b64encode(b"Username:") + b"\r\n")
        transport.clear()
        server.dataReceived(base64.b64encode(b"anne") + b"\r\n")
        self.assertEqual(transport.value(), b"334 " + base64.b64encode(b"Password:") + b"\r\n")
        transport.clear()
        server.dataReceived(base64.b64encode(b"anne-pass") + b"\r\n")
        self.assertTrue(transport.value().startswith(b"235 "), transport.value())

    def test_wrongPasswordDelayedThen535(self):
        server, transport = self.session("192.0.2.9")
        for i in range(4):
            transport.clear()
            server.dataReceived(b"AUTH PLAIN " + base64.b64encode(b"\0edouard\0bad") + b"\r\n")
        # The fourth failure is held for the throttle delay.
        self.assertEqual(transport.value(), b"")
        self.clock.advance(2)
        self.assertTrue(transport.value().startswith(b"535 "), transport.value())
        self.assertIn("proto=submission rip=192.0.2.9 ", self.logs.authLines()[-1])

    def test_malformedPlainIsAFailureNotACrash(self):
        server, transport = self.session("127.0.0.1")
        server.dataReceived(b"AUTH PLAIN " + base64.b64encode(b"no-nuls-here") + b"\r\n")
        self.assertTrue(transport.value().startswith(b"535 "), transport.value())
        self.assertFalse(transport.disconnecting)
        self.assertIn('reason="malformed SASL response: PLAIN needs exactly', self.logs.authLines()[-1])


class SlowCheckerTests(unittest.TestCase):
    """
    A slow check (a long yescrypt, a PAM module waiting on a network
    service) runs in the pool: another connection logs in meanwhile.  Real
    reactor, real loopback sockets, Twisted's IMAP4 server and client.
    """

    def setUp(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        writeUsers(directory)
        config = makeConfig(
            directory, auth="checkers = passwd-file\npasswd_file = users\ncheck_threads = 2"
        )
        self.portal = makePortal(config, reactor)
        self.addCleanup(self.portal.pool.stop)
        self.portal.realm.registerAvatarFactory(
            imap4.IAccount, lambda account: imap4.MemoryAccount(account.name)
        )
        self.release = threading.Event()
        self.addCleanup(self.release.set)
        checker = self.portal.chain.checkers[0]
        verify = checker.verify

        def slowForEdouard(key, password):
            if key[0] == "edouard":
                # Blocks its pool thread, as a slow hash or PAM would.
                self.release.wait(30)
            return verify(key, password)

        checker.verify = slowForEdouard
        portal = self.portal

        self.closed = []
        closed = self.closed

        class Server(imap4.IMAP4Server):
            # No idle timers left in the reactor after the test.
            timeOut = None
            POSTAUTH_TIMEOUT = None

            def connectionMade(self):
                self.portal = portal.forConnection(self.transport, "imap")
                self.lost = defer.Deferred()
                closed.append(self.lost)
                super().connectionMade()

            def connectionLost(self, reason):
                super().connectionLost(reason)
                self.lost.callback(None)

        factory = protocol.Factory.forProtocol(Server)
        return endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        ).addCallback(self._listening)

    def _listening(self, port):
        self.port = port
        self.addCleanup(lambda: defer.gatherResults(self.closed))
        self.addCleanup(port.stopListening)

    @defer.inlineCallbacks
    def connect(self):
        client = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port),
            imap4.IMAP4Client(),
        )
        self.addCleanup(client.transport.loseConnection)
        return client

    @defer.inlineCallbacks
    def test_concurrentLogin(self):
        slowClient = yield self.connect()
        fastClient = yield self.connect()
        slowDone = []
        slow = slowClient.login(b"edouard", b"s3cret")
        slow.addBoth(lambda result: slowDone.append(result) or result)
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(slowDone, [])
        # The other connection logs in while the first check blocks its thread.
        yield fastClient.login(b"anne", b"anne-pass")
        self.assertEqual(slowDone, [])
        self.release.set()
        yield slow
        self.assertEqual(len(slowDone), 1)


class ParallelAttemptsTests(unittest.TestCase):
    """
    Parallel connections from one address cannot push many guesses past
    the lockout threshold: at most throttle_parallel_checks checks run at
    once, and waiting attempts see a lockout that started meanwhile.
    """

    def setUp(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        writeUsers(directory)
        config = makeConfig(
            directory,
            auth="checkers = passwd-file\npasswd_file = users\nthrottle_parallel_checks = 3",
        )
        self.clock = task.Clock()
        self.pending = []
        self.running = 0
        self.most = 0

        def manualRunner(f, *args):
            # A check that finishes when the test says so.
            d = defer.Deferred()
            self.running += 1
            self.most = max(self.most, self.running)

            def finish():
                self.running -= 1
                try:
                    d.callback(f(*args))
                except Exception:
                    d.errback()

            self.pending.append(finish)
            return d

        self.portal = makePortal(config, self.clock, runner=manualRunner)
        self.portal.realm.registerAvatarFactory(IDummy, DummyAvatar)
        self.portal.directory.runner = runSynchronously
        self.logs = LogCapture(self)

    def test_parallelGuessesBounded(self):
        attempts = [
            self.portal.loginFrom(UsernamePassword("edouard", f"g{i}"), "203.0.113.9", "imap", None, IDummy)
            for i in range(30)
        ]
        checks = 0
        while self.pending:
            self.pending.pop(0)()
            checks += 1
            self.clock.advance(60)
        self.assertEqual(self.most, 3)
        # 10 failures lock the address out; at most 2 more were in flight
        # (without the per-address gate all 30 would be checked).
        self.assertLessEqual(checks, 12)
        results = []
        for d in attempts:
            d.addErrback(lambda f: results.append(f.value.reason))
        self.assertEqual(len(results), 30)
        self.assertEqual(results.count("address locked out"), 30 - checks)
        lines = self.logs.authLines()
        self.assertEqual(sum("result=locked" in line for line in lines), 30 - checks)
        self.assertEqual(self.portal._gates, {})

    def test_otherAddressesNotHeldUp(self):
        for i in range(5):
            self.portal.loginFrom(UsernamePassword("edouard", "x"), "203.0.113.9", "imap", None, IDummy)
        self.assertEqual(self.running, 3)
        d = self.portal.loginFrom(UsernamePassword("anne", "anne-pass"), "198.51.100.1", "imap", None, IDummy)
        self.assertEqual(self.running, 4)
        self.pending[-1]()
        self.assertEqual(d.result[1].account.name, "anne")
