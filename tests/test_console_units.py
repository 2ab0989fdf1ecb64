"""
The console's parts without a daemon: the queue's administration methods
on a Clock, the control protocol over StringTransport, sendmail's command
line and message preparation, users list, and the socket-path check.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_maillab.config import ConfigError, loadString
from twisted_maillab.console import sendmail, users
from twisted_maillab.smtp import outbound, queueadmin, queuecontrol, spool
from twisted_maillab.smtp.outbound import OutboundQueue, QueuedMessage, QueuedRecipient


class BlockingResolver:
    """
    MX look-ups that wait until the test answers them.
    """

    def __init__(self):
        self.pending = []

    def lookupMailExchange(self, name):
        d = defer.Deferred()
        self.pending.append(d)
        return d


class QueueAdministrationTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.clock = task.Clock()
        self.resolver = BlockingResolver()
        self.queue = OutboundQueue(
            self.directory, reactor=None, clock=self.clock, resolver=self.resolver,
            hostname="smtp.domaineel.rt", runner=lambda f, *a: defer.maybeDeferred(f, *a),
            minBackoff=300,
        )
        for queueId in ("1A", "2B"):
            message = QueuedMessage(
                queueId=queueId, sender="admin@domaineel.rt", created=0.0, size=5,
                recipients=[QueuedRecipient(address=f"anne@remote{queueId}.test")],
            )
            (self.directory / f"{queueId}.eml").write_bytes(b"x: y\n\nbody\n")
            spool.writeState(self.directory, message)

    def state(self, queueId):
        return spool.readState(self.directory, queueId)

    def test_holdWaitsForARunningAttempt(self):
        """
        A hold that arrives while an attempt is running waits for it, so
        the attempt's own write of the JSON cannot undo the hold; the held
        message gets no retry timer.
        """
        self.queue._run("1A")
        self.assertIn("1A", self.queue._running)
        held = defer.ensureDeferred(self.queue.hold("1A"))
        self.assertNoResult(held)
        self.resolver.pending.pop().errback(RuntimeError("DNS down"))
        self.successResultOf(held)
        message = self.state("1A")
        self.assertEqual((message.held, message.attempts), (True, 1))
        self.assertNotIn("1A", self.queue._timers)
        # The scheduler skips it even when asked.
        self.queue.schedule("1A", 0)
        self.clock.advance(0)
        self.assertEqual(self.resolver.pending, [])
        self.assertEqual(self.state("1A").attempts, 1)

    def test_failedChangeKeepsTheMessageScheduled(self):
        """
        A change that cannot be written leaves the message on the
        scheduler (a retry that came due during it was skipped).
        """
        self.queue.schedule("1A", 10)
        self.clock.advance(5)

        def full(directory, message):
            self.clock.advance(10)  # the retry comes due meanwhile
            raise OSError(28, "No space left on device")

        self.patch(queueadmin, "writeState", full)
        self.failureResultOf(defer.ensureDeferred(self.queue.hold("1A")), OSError)
        self.assertEqual(self.queue._timers["1A"].getTime(), 15 + 300)
        self.assertFalse(self.state("1A").held)

    def test_releaseRequeueFlushDelete(self):
        self.successResultOf(defer.ensureDeferred(self.queue.hold("1A")))
        entries = self.successResultOf(defer.ensureDeferred(self.queue.listQueue()))
        self.assertEqual([(e["id"], e["held"]) for e in entries], [("1A", True), ("2B", False)])
        # flush skips the held message.
        self.assertEqual(self.successResultOf(defer.ensureDeferred(self.queue.flush())), 1)
        self.assertEqual(sorted(self.queue._timers), ["2B"])
        self.successResultOf(defer.ensureDeferred(self.queue.release("1A")))
        self.assertFalse(self.state("1A").held)
        self.assertEqual(self.queue._timers["1A"].getTime(), 0)
        data = self.state("2B")
        data.attempts = 4
        spool.writeState(self.directory, data)
        self.successResultOf(defer.ensureDeferred(self.queue.requeue("2B")))
        self.assertEqual(self.state("2B").attempts, 0)
        self.successResultOf(defer.ensureDeferred(self.queue.delete("1A")))
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), ["2B.eml", "2B.json"])
        self.assertNotIn("1A", self.queue._timers)
        for bad in ("1A", "../2B", "2B.json"):
            self.failureResultOf(defer.ensureDeferred(self.queue.delete(bad)), KeyError)
        self.failureResultOf(defer.ensureDeferred(self.queue.flush("1A")), KeyError)


class FakeHandle:
    pass


class ControlTransport(StringTransport):
    def getHandle(self):
        return FakeHandle()


class ControlProtocolTests(unittest.TestCase):
    def connect(self, credentials):
        self.patch(queuecontrol, "peerCredentials", lambda handle: credentials)
        protocol = queuecontrol.ControlProtocol()
        protocol.factory = type("F", (), {"queue": self.queue})()
        transport = ControlTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def setUp(self):
        self.queue = type("Q", (), {})()
        self.queue.listQueue = lambda: defer.succeed([{"id": "1A"}])

        def hold(queueId):
            raise KeyError(queueId)

        self.queue.hold = lambda queueId: defer.maybeDeferred(hold, queueId)

    def test_otherUsersRefused(self):
        """
        Only root and the daemon's own user are answered.
        """
        protocol, transport = self.connect((1234, 65534, 65534))
        self.assertTrue(transport.disconnecting)
        protocol, transport = self.connect(None)
        self.assertTrue(transport.disconnecting)

    def test_requestsAnsweredInOrder(self):
        protocol, transport = self.connect((1234, 0, 0))
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(
            b'{"command": "list"}\r\n{"command": "hold", "id": "9F"}\r\n{"command": "rm -rf"}\r\nnot json\r\n'
        )
        answers = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(
            answers,
            [
                {"ok": True, "result": [{"id": "1A"}]},
                {"ok": False, "error": "9F: no such message in the queue"},
                {"ok": False, "error": "unknown command 'rm -rf'"},
                {"ok": False, "error": "Expecting value: line 1 column 1 (char 0)"},
            ],
        )


class SendmailCommandLineTests(unittest.TestCase):
    def test_options(self):
        options = sendmail.parseArguments(
            ["-oi", "-fcron@x.rt", "-F", "Cron Daemon", "-odi", "-v", "a@x.rt", "--", "-b@x.rt"]
        )
        self.assertEqual(
            (options["i"], options["t"], options["f"], options["F"], options["recipients"]),
            (True, False, "cron@x.rt", "Cron Daemon", ["a@x.rt", "-b@x.rt"]),
        )
        options = sendmail.parseArguments(["-t", "-i", "-f", "root@x.rt", "-C", "/etc/m.ini"])
        self.assertEqual((options["t"], options["i"], options["f"], options["C"]), (True, True, "root@x.rt", "/etc/m.ini"))
        for bad in (["-f"], ["-bs"], ["-Z"]):
            self.assertRaises(sendmail.UsageError, sendmail.parseArguments, bad)

    def test_dotEndsWithoutI(self):
        self.assertEqual(sendmail._readInput(io.BytesIO(b"a\r\n.\r\nb\n"), True), b"a\n")
        self.assertEqual(sendmail._readInput(io.BytesIO(b"a\n.\nb\n"), False), b"a\n.\nb\n")
        self.assertEqual(sendmail._readInput(io.BytesIO(b"a\n."), True), b"a\n")

    def test_recipientsFromHeadersAndBccRemoved(self):
        options = sendmail.parseArguments(["-t", "-F", "Édouard", "x@y.rt"])
        message, recipients = sendmail.prepareMessage(
            b"To: A <a@x.rt>, b@x.rt\nCc: c@x.rt\nBcc: d@x.rt,\n  e@x.rt\nSubject: s\n\nBcc: body\n",
            options, "edouard@domaineel.rt",
        )
        self.assertEqual(recipients, ["x@y.rt", "a@x.rt", "b@x.rt", "c@x.rt", "d@x.rt", "e@x.rt"])
        header, body = message.split(b"\n\n", 1)
        self.assertNotIn(b"Bcc", header)
        self.assertNotIn(b"e@x.rt", header)
        self.assertEqual(body, b"Bcc: body\n")
        self.assertIn(b"\nFrom: =?utf-8?", header)
        self.assertIn(b"<edouard@domaineel.rt>", header)
        self.assertIn(b"\nDate: ", header)
        self.assertIn(b"\nMessage-ID: <", header)
        # Present fields are kept as they are; nothing is added twice.
        options = sendmail.parseArguments(["a@x.rt"])
        message, _ = sendmail.prepareMessage(
            b"From: me@x.rt\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@x>\n\nb\n", options, "s@x.rt"
        )
        self.assertEqual(message, b"From: me@x.rt\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@x>\n\nb\n")


class UsersListTests(unittest.TestCase):
    def test_passwdFileAndUnixUsersInRange(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        (directory / "users").write_text("anne:{PLAIN}x:5000:5000::/srv/anne\n# c\nbob@other.rt:{ARGON2ID}$a\n")
        (directory / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/bash\nedouard:x:1000:1000::/home/edouard:/bin/sh\n"
            "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nzoe:x:1001:1001::/home/zoe:/bin/sh\n"
        )
        config = loadString(
            f"[server]\ndomain = domaineel.rt\nstate_directory = {directory}/state\n"
            f"[auth]\ncheckers = passwd-file unix\npasswd_file = users\nunix_passwd = passwd\n"
            "local_domains = other.rt\n",
            directory / "maillab.ini",
        )
        self.assertEqual(
            [(u["user"], u["source"], u["uid"], u["scheme"]) for u in users.listUsers(config)],
            [
                ("anne", "passwd-file", 5000, "PLAIN"),
                ("bob@other.rt", "passwd-file", None, "ARGON2ID"),
                ("edouard", "unix", 1000, None),
                ("zoe", "unix", 1001, None),
            ],
        )


class SocketPathTests(unittest.TestCase):
    def test_tooLongRefused(self):
        e = self.assertRaises(
            ConfigError, loadString, f"[server]\nlocal_submission_socket = /{'x' * 120}\n", "/m.ini"
        )
        self.assertEqual((e.section, e.key), ("server", "local_submission_socket"))
