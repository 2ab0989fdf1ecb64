"""
POP3 over the real Maildir store and the real portal, in process: the
L{StoreMaildrop} adapter and the pop3/pop3s builders' shared backend,
with synchronous runners (no threads) and StringTransport.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_maillab.service import SharedBackends
from twisted_maillab.auth import makePortal
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.config import ConfigError, loadString
from twisted_maillab.pop3 import service as pop3service
from twisted_maillab.pop3.interfaces import IPOP3Maildrop
from twisted_maillab.pop3.maildrop import StoreMaildrop
from twisted_maillab.store.reading import crlfSize
from twisted_maillab.store import MessageVanished, Store

from tests.support import syncResult

MSG1 = b"Subject: one\n\nbody one\n"
MSG2 = b"Subject: two\r\n\r\nbody two\r\n"
FOREIGN = b"Subject: foreign\n\nwritten by another MDA\nno newline at end"


def _sync(f, *args, **kwargs):
    return defer.execute(f, *args, **kwargs)


def makeConfig(root: Path, pop3: str = "", pop3s: str = ""):
    digest = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input="pw", capture_output=True, text=True, check=True
    ).stdout.strip()
    (root / "users").write_text(f"edouard:{{SHA512-CRYPT}}{digest}\n")
    return loadString(
        "[server]\nhostname = mail.test\ndomain = domaineel.rt\nstate_directory = var\n"
        "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
        "[store]\nmail_location = maildir:~/Maildir\n"
        f"[pop3]\nenabled = yes\nlisten = tcp:1110\n{pop3}\n"
        f"[pop3s]\nenabled = yes\nlisten = tcp:1995\n{pop3s}\n",
        root / "maillab.ini",
    )


class Fixture:
    def __init__(self, testCase):
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.config = makeConfig(self.root)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.portal = makePortal(self.config, self.clock, runner=runSynchronously)
        self.account = syncResult(self.portal.directory.lookup("edouard"))
        # The store never creates a home directory: the administrator does.
        Path(self.account.home).mkdir(parents=True, exist_ok=True)
        self.store = Store(
            self.clock, clock=self.clock, runner=_sync, rescanInterval=0, inotify=False, hostname="mail.test"
        )
        testCase.addCleanup(self.store.close)
        self.maildir = Path(self.account.maildir)

    def deliver(self, *messages):
        for message in messages:
            txn = self.store.beginDelivery()
            txn.addRecipient(self.account)
            syncResult(txn.write(message))
            (result,) = syncResult(txn.commit())
            assert result.ok, result.error

    def files(self):
        return {sub: sorted(os.listdir(self.maildir / sub)) for sub in ("new", "cur")}


class CrlfSizeTests(unittest.TestCase):
    def test_sizes(self):
        import io

        for data, size in [
            (b"a\nb\n", 6),
            (b"a\r\nb\r\n", 6),
            (b"a\nb", 6),
            (b"", 0),
            (b"a\r", 3 + 1),  # lone CR kept, then CRLF for the unterminated line
        ]:
            self.assertEqual(crlfSize(io.BytesIO(data)), size, data)


class StoreMaildropTests(unittest.TestCase):
    def setUp(self):
        self.f = Fixture(self)
        self.f.deliver(MSG1, MSG2)
        # a file another program put in new/, without ,S= or ,W=
        self.f.maildir.joinpath("new", "1900000000.M1P1.other").write_bytes(FOREIGN)
        self.drop = StoreMaildrop(self.f.store, self.f.account)
        self.snapshot = syncResult(self.drop.open())

    def tearDown(self):
        self.drop.logout()

    def test_snapshotSizesAreCRLFOctets(self):
        self.assertEqual(
            [m.size for m in self.snapshot],
            [len(MSG1) + MSG1.count(b"\n"), len(MSG2), len(FOREIGN) + FOREIGN.count(b"\n") + 2],
        )

    def test_uidlIsDovecotFormatOfIMAPUid(self):
        folder = self.drop.folder
        self.assertEqual(
            [m.uidl for m in self.snapshot],
            [b"%08x%08x" % (uid, folder.uidValidity) for uid in folder.uids()],
        )
        # a second session (after a restart: a new store) sees the same
        self.drop.logout()
        store = Store(self.f.clock, clock=self.f.clock, runner=_sync, rescanInterval=0, inotify=False)
        self.addCleanup(store.close)
        again = StoreMaildrop(store, self.f.account)
        self.assertEqual([m.uidl for m in syncResult(again.open())], [m.uidl for m in self.snapshot])
        again.logout()

    def test_readInChunks(self):
        reader = syncResult(self.drop.openMessage(2))
        chunks = []
        while True:
            chunk = syncResult(reader.read(7))
            if not chunk:
                break
            self.assertLessEqual(len(chunk), 7)
            chunks.append(chunk)
        reader.close()
        self.assertEqual(b"".join(chunks), FOREIGN)

    def test_vanished(self):
        for name in os.listdir(self.f.maildir / "new"):
            os.unlink(self.f.maildir / "new" / name)
        self.assertIsInstance(_failure(self.drop.openMessage(0)), MessageVanished)

    def test_retrievedMovesToCurWithoutSeen(self):
        syncResult(self.drop.retrieved(0))
        files = self.f.files()
        self.assertEqual(len(files["new"]), 2)
        self.assertEqual(len(files["cur"]), 1)
        self.assertTrue(files["cur"][0].endswith(":2,"), files)
        # no longer recent for IMAP (the POP3 session claimed it)
        self.assertEqual(len(self.drop.folder.recentUids()), 2)

    def test_commit(self):
        syncResult(self.drop.commit(frozenset({0}), frozenset({0, 1})))
        files = self.f.files()
        self.assertEqual(files["new"], ["1900000000.M1P1.other"])
        self.assertEqual(len(files["cur"]), 1)
        self.assertTrue(files["cur"][0].endswith(":2,S"))
        self.assertEqual(len(self.drop.folder), 2)

    def test_lockKeySharedBySessionsOfOneMaildir(self):
        other = StoreMaildrop(self.f.store, self.f.account)
        self.assertEqual(other.lockKey, self.drop.lockKey)


def _failure(d):
    results = []
    d.addBoth(results.append)
    return results[0].value


class Resources(SharedBackends):
    """
    The part of L{twisted_maillab.service.Resources} the builders use,
    with synchronous portal and store.
    """

    def __init__(self, f):
        self.config = f.config
        self.reactor = f.clock
        self.tlsContext = object()
        self.portal = f.portal
        self.store = f.store


class BuilderTests(unittest.TestCase):
    def setUp(self):
        self.f = Fixture(self)
        self.f.deliver(MSG1, MSG2)
        self.resources = Resources(self.f)

    def connect(self, factory, host="127.0.0.1"):
        peer = IPv4Address("TCP", host, 5000)
        transport = StringTransport(peerAddress=peer)
        proto = factory.buildProtocol(peer)
        proto.makeConnection(transport)
        transport.clear()
        return proto, transport

    def test_sharedBackend(self):
        plain = pop3service._factory(self.f.config.pop3, self.resources, implicitTLS=False)
        implicit = pop3service._factory(self.f.config.pop3s, self.resources, implicitTLS=True)
        # one realm registration, one lock table for both listeners
        self.assertIs(plain.locks, implicit.locks)
        self.assertIs(plain.portal, implicit.portal)
        self.assertIsNone(implicit.tlsContext)
        self.assertTrue(implicit.implicitTLS)
        self.assertIsNotNone(plain.tlsContext)
        a, ta = self.connect(plain)
        b, tb = self.connect(implicit)
        a.dataReceived(b"AUTH PLAIN " + base64.b64encode(b"\0edouard\0pw") + b"\r\n")
        self.assertTrue(ta.value().startswith(b"+OK Logged in, 2 messages"), ta.value())
        b.dataReceived(b"USER edouard@domaineel.rt\r\nPASS pw\r\n")
        self.assertTrue(tb.value().endswith(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"))
        ta.clear()
        a.dataReceived(b"RETR 2\r\nDELE 1\r\nQUIT\r\n")
        self.assertTrue(ta.value().endswith(b"+OK Logging out, 1 messages deleted.\r\n"), ta.value())
        a.connectionLost(None)
        files = self.f.files()
        self.assertEqual(files["new"], [])
        self.assertEqual(len(files["cur"]), 1)
        self.assertTrue(files["cur"][0].endswith(":2,S"))
        tb.clear()
        b.dataReceived(b"USER edouard@domaineel.rt\r\nPASS pw\r\nSTAT\r\n")
        self.assertTrue(tb.value().endswith(b"+OK 1 %d\r\n" % len(MSG2)), tb.value())

    def test_realmServesMaildrop(self):
        pop3service._backend(self.resources)
        result = syncResult(self.f.portal.realm.requestAvatar("edouard", None, IPOP3Maildrop))
        self.assertIsInstance(result[1], StoreMaildrop)

    def test_timeoutFromConfig(self):
        factory = pop3service._factory(self.f.config.pop3, self.resources, implicitTLS=False)
        proto, transport = self.connect(factory)
        self.f.clock.advance(599)
        self.assertFalse(transport.disconnecting)
        self.f.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_plaintextOnLoopbackNo(self):
        config = makeConfig(self.f.root, pop3="plaintext_on_loopback = no")
        factory = pop3service._factory(config.pop3, self.resources, implicitTLS=False)
        proto, transport = self.connect(factory)
        proto.dataReceived(b"USER edouard\r\n")
        self.assertEqual(
            transport.value(),
            b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS first.\r\n",
        )


class ConfigTests(unittest.TestCase):
    def test_defaults(self):
        config = makeConfig(Path(self.mktemp()).resolve().parent)
        self.assertEqual(config.pop3.idle_timeout, 600)
        self.assertEqual(config.pop3.max_command_length, 2048)
        self.assertTrue(config.pop3s.plaintext_on_loopback)

    def test_timeoutBelowRFCMinimum(self):
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        e = self.assertRaises(ConfigError, makeConfig, root, pop3s="idle_timeout = 5m")
        self.assertEqual((e.section, e.key), ("pop3s", "idle_timeout"))
        self.assertIn("RFC 1939", e.reason)

    def test_commandLengthBounds(self):
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        e = self.assertRaises(ConfigError, makeConfig, root, pop3="max_command_length = 100")
        self.assertEqual(e.key, "max_command_length")
        config = makeConfig(root, pop3="idle_timeout = 30m\nmax_command_length = 4096")
        self.assertEqual(config.pop3.idle_timeout, 1800)
        self.assertEqual(config.pop3.max_command_length, 4096)
