"""
Tests for the composition (L{twisted_maillab.service}), TLS contexts,
systemd notification, JSON logs and C{maillab reload}.
"""

import io
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

from twisted.application import service as tservice
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.logger import Logger, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest

from twisted_maillab import cli, logs, reload, service, systemd, tls
from twisted_maillab.config import ConfigError, loadString


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def buildEcho(config, resources):
    """
    A stand-in protocol builder: what the DNS, SMTP, POP3 and IMAP
    builders do, with an echo factory.
    """
    return resources.listen(config.pop3, protocol.Factory.forProtocol(Echo))


def buildImplicitTLSEcho(config, resources):
    return resources.listen(config.imaps, protocol.Factory.forProtocol(Echo))


class Collect(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if self.received.endswith(b"\n"):
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(self.received)


def parse(testCase, text, path="<string>"):
    """
    Parse a test config whose state lives in a temporary directory.
    """
    state = os.path.abspath(testCase.mktemp())
    if "[server]" in text:
        text = text.replace("[server]\n", f"[server]\nstate_directory = {state}\n", 1)
    else:
        text = f"[server]\nstate_directory = {state}\n" + text
    return loadString(text, path)


def capturedEvents(testCase):
    events = []
    globalLogPublisher.addObserver(events.append)
    testCase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


class ComposeTests(unittest.TestCase):
    def setUp(self):
        self.patch(
            service,
            "BUILDERS",
            {
                "pop3": f"{__name__}:buildEcho",
                "imaps": f"{__name__}:buildImplicitTLSEcho",
            },
        )

    def test_unimplementedServiceIsAConfigError(self):
        parsed = parse(self, "[imap]\nenabled = yes\nlisten = tcp:143\n", "etc/maillab.ini")
        e = self.assertRaises(ConfigError, service.makeService, parsed, MemoryReactorClock())
        self.assertEqual(
            str(e),
            "etc/maillab.ini [imap] enabled: the imap service is not implemented "
            "in this version (line 4)",
        )

    def test_disabledSectionsBuildNothing(self):
        memory = MemoryReactorClock()
        parsed = parse(self, "[imap]\nenabled = no\nlisten = tcp:143\n")
        top = service.makeService(parsed, memory)
        top.privilegedStartService()
        top.startService()
        self.assertEqual(memory.tcpServers, [])

    def test_everyListenValueIsBound(self):
        memory = MemoryReactorClock()
        parsed = parse(self, 
            "[pop3]\nenabled = yes\nlisten = tcp:1110:interface=127.0.0.1 tcp:1111\n"
        )
        top = service.makeService(parsed, memory)
        # Building binds nothing; starting does.
        self.assertEqual(memory.tcpServers, [])
        top.privilegedStartService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in memory.tcpServers],
            [(1110, "127.0.0.1"), (1111, "")],
        )
        self.assertIsNotNone(top.getServiceNamed("pop3"))

    def test_embeddedInAnotherApplicationServesAndLogs(self):
        """
        Another Twisted application embeds the suite with makeService and
        setServiceParent; each listener logs the address it bound.
        """
        events = capturedEvents(self)
        parent = tservice.MultiService()
        parsed = parse(self, "[pop3]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n")
        service.makeService(parsed).setServiceParent(parent)
        parent.startService()
        self.addCleanup(parent.stopService)
        listener = next(iter(parent.getServiceNamed("maillab").getServiceNamed("pop3")))
        port = listener.port.getHost().port
        messages = [e["log_format"].format(**e) for e in events if "label" in e]
        self.assertIn(f"pop3 listening on 127.0.0.1:{port}", messages)

        client = Collect()
        d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        d.addCallback(lambda p: p.transport.write(b"hello\n"))
        d.addCallback(lambda _: client.done)
        d.addCallback(self.assertEqual, b"hello\n")
        return d

    def test_bindFailureFailsTheStart(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        parsed = parse(self, f"[pop3]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n")
        top = service.makeService(parsed)
        e = self.assertRaises(ConfigError, top.privilegedStartService)
        self.assertEqual(
            str(e),
            f'{parsed.path} [pop3] listen: "tcp:{port}:interface=127.0.0.1" cannot listen on '
            f"127.0.0.1:{port}: address already in use (another process, or another "
            "listener, has it) (line 5)",
        )

    def test_implicitTLSNeedsACertificate(self):
        parsed = parse(self, "[imaps]\nenabled = yes\nlisten = tcp:993\n", "etc/x.ini")
        e = self.assertRaises(ConfigError, service.makeService, parsed, MemoryReactorClock())
        self.assertEqual(
            str(e),
            "etc/x.ini [imaps] listen: implicit TLS needs [tls] certificate and "
            "private_key (line 5)",
        )

    def test_implicitTLSListener(self):
        """
        An imaps listener speaks TLS first, with the [tls] certificate,
        TLS 1.2 or newer only.
        """
        directory = Path(self.mktemp()).resolve()
        parsed = parse(self, 
            "[server]\nhostname = smtp.domaineel.rt\n"
            f"[tls]\ncertificate = {directory}/cert.pem\nprivate_key = {directory}/key.pem\n"
            "generate_self_signed = yes\n"
            "[imaps]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n"
        )
        top = service.makeService(parsed)
        top.startService()
        self.addCleanup(top.stopService)
        listener = next(iter(top.getServiceNamed("imaps")))
        self.assertIsInstance(listener.factory, TLSMemoryBIOFactory)
        port = listener.port.getHost().port

        def handshake(maximum):
            context = ssl.create_default_context(cafile=str(directory / "cert.pem"))
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="smtp.domaineel.rt") as s:
                    s.sendall(b"ping\n")
                    return s.version(), s.recv(100)

        d = deferToThread(handshake, ssl.TLSVersion.TLSv1_3)
        d.addCallback(self.assertEqual, ("TLSv1.3", b"ping\n"))
        d.addCallback(lambda _: deferToThread(handshake, ssl.TLSVersion.TLSv1_2))
        d.addCallback(self.assertEqual, ("TLSv1.2", b"ping\n"))

        def oldVersionRefused(_):
            def tryOld():
                try:
                    handshake(ssl.TLSVersion.TLSv1_1)
                except (ssl.SSLError, ConnectionError) as e:
                    return e
                return None

            return deferToThread(tryOld)

        d.addCallback(oldVersionRefused)
        d.addCallback(lambda error: self.assertIsNotNone(error, "TLS 1.1 was accepted"))
        return d


class MetricsTests(unittest.TestCase):
    def test_countedOnlyWhenServed(self):
        """
        A tree with C{[http]}, which serves C{/metrics}, counts into a
        L{Metrics} of its own; one without counts into C{NULL_METRICS}
        (nothing would read the counts).
        """
        from twisted_maillab.metrics import NULL_METRICS, Metrics

        without = service.Resources(parse(self, "[pop3]\nenabled = yes\nlisten = tcp:110\n"), MemoryReactorClock())
        self.assertIs(without.metrics, NULL_METRICS)
        without.metrics.watch("dns", object())
        served = service.Resources(parse(self, "[http]\nenabled = yes\nlisten = tcp:8080\n"), MemoryReactorClock())
        self.assertIsInstance(served.metrics, Metrics)
        self.assertIsNot(served.metrics, NULL_METRICS)


class TLSTests(unittest.TestCase):
    def setUp(self):
        self.directory = Path(self.mktemp()).resolve()
        self.cert = self.directory / "cert.pem"
        self.key = self.directory / "key.pem"

    def section(self, cert=None, key=None):
        return loadString(
            f"[tls]\ncertificate = {cert or self.cert}\nprivate_key = {key or self.key}\n"
            "generate_self_signed = yes\n",
            "etc/maillab.ini",
        ).tls

    def test_selfSignedCreatedOnceWithPrivateKey(self):
        self.assertTrue(tls.ensureSelfSigned(self.cert, self.key, "smtp.domaineel.rt"))
        self.assertEqual(os.stat(self.key).st_mode & 0o777, 0o600)
        first = self.cert.read_bytes()
        self.assertFalse(tls.ensureSelfSigned(self.cert, self.key, "smtp.domaineel.rt"))
        self.assertEqual(self.cert.read_bytes(), first)
        options = tls.serverContextFactory(self.section())
        self.assertIsNotNone(options.getContext())

    def test_mismatchedKey(self):
        tls.ensureSelfSigned(self.cert, self.key, "a.example")
        other = self.directory / "other"
        tls.ensureSelfSigned(other / "cert.pem", other / "key.pem", "b.example")
        e = self.assertRaises(
            ConfigError, tls.serverContextFactory, self.section(key=other / "key.pem"),
            "etc/maillab.ini",
        )
        self.assertTrue(
            str(e).startswith(
                f"etc/maillab.ini [tls] private_key: {other}/key.pem does not match the certificate"
            ),
            str(e),
        )

    def test_notACertificate(self):
        self.directory.mkdir(parents=True)
        self.cert.write_text("hello\n")
        self.key.write_text("hello\n")
        e = self.assertRaises(
            ConfigError, tls.serverContextFactory, self.section(), "etc/maillab.ini"
        )
        self.assertEqual(
            str(e), f"etc/maillab.ini [tls] certificate: {self.cert}: no PEM certificate in the file"
        )

    def test_noCertificateMeansNoTLS(self):
        self.assertIsNone(tls.serverContextFactory(loadString("").tls))


class NotifyTests(unittest.TestCase):
    def test_readyAfterStart(self):
        path = os.path.abspath(self.mktemp())
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(path)
        self.addCleanup(listener.close)
        memory = MemoryReactorClock()
        notifier = systemd.NotifyService(memory, {"NOTIFY_SOCKET": path})
        notifier.startService()
        memory.run()
        self.assertEqual(listener.recv(100), b"READY=1\nSTATUS=maillab serving")
        notifier.stopService()
        self.assertEqual(listener.recv(100), b"STOPPING=1")

    def test_noSocketNoNotification(self):
        self.assertFalse(systemd.notify("READY=1", {}))


class JSONLogTests(unittest.TestCase):
    def test_jsonStdoutWritesOneObjectPerLine(self):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = logs.jsonStdout()
        log = Logger(namespace="maillab.test", observer=observer)
        log.info("{label} listening on {address}", label="smtp", address="127.0.0.1:25")
        log.debug("not shown at the default level")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        event = json.loads(lines[0])
        self.assertEqual(event["text"], "smtp listening on 127.0.0.1:25")
        self.assertEqual(event["log_namespace"], "maillab.test")
        self.assertEqual(event["log_level"], "info")

    def _observe(self, **environ):
        out = io.StringIO()
        self.patch(os, "environ", environ)
        return out, Logger(namespace="maillab.test", observer=logs.jsonLineObserver(out.write))

    def test_valuesJSONCannotHoldAreStrings(self):
        class Mailbox:
            def __str__(self):
                return "<edouard@domaineel.rt>"

        out, log = self._observe()
        log.info("from={sender} size={size}", sender=Mailbox(), size=4232)
        event = json.loads(out.getvalue())
        self.assertEqual(event["text"], "from=<edouard@domaineel.rt> size=4232")
        self.assertEqual((event["sender"], event["size"]), ("<edouard@domaineel.rt>", 4232))
        self.assertEqual(event["log_format"], "from={sender} size={size}")
        self.assertNotIn("log_logger", event)

    def test_twistedReadsItBack(self):
        from twisted.logger import LogLevel, eventsFromJSONLogFile

        out, log = self._observe()
        log.warn("disk {percent}% full", percent=97)
        (event,) = eventsFromJSONLogFile(io.StringIO(out.getvalue()), recordSeparator="")
        # A plain string, which LogLevel names back.
        self.assertIs(LogLevel.levelWithName(event["log_level"]), LogLevel.warn)
        self.assertEqual(event["percent"], 97)

    def test_callSyntaxAndBrokenFormats(self):
        """
        What str.format_map cannot render goes through Twisted's
        formatter: the {callable()} syntax, and a missing key is reported
        instead of raising.
        """
        out, log = self._observe()
        log.info("queue has {count()} messages", count=lambda: 3)
        log.info("missing {nothere}")
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        self.assertEqual(first["text"], "queue has 3 messages")
        self.assertIn("Unable to format event", second["text"])

    def test_failureTextCarriesTraceback(self):
        out, log = self._observe()
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("delivery failed")
        event = json.loads(out.getvalue())
        self.assertIn("delivery failed", event["text"])
        self.assertIn("ZeroDivisionError", event["text"])
        self.assertEqual(event["log_level"], "critical")

    def test_levelFromEnvironment(self):
        out, log = self._observe(MAILLAB_LOG_LEVEL="warn")
        log.info("quiet")
        log.error("loud")
        self.assertEqual([json.loads(l)["text"] for l in out.getvalue().splitlines()], ["loud"])

    def test_twistdTakesThemAsNewStyleObservers(self):
        """
        twistd wraps an observer that does not provide ILogObserver as a
        legacy one, which adds message/system/format/isError to every line.
        """
        from twisted import logger
        from twisted.application.app import AppLogger

        self.patch(sys, "stdout", io.StringIO())
        given = []
        self.patch(logger.globalLogBeginner, "beginLoggingTo", given.extend)
        self.patch(AppLogger, "_initialLog", lambda self: None)
        AppLogger({"logger": logs.jsonStdout}).start(None)
        (observer,) = given
        self.assertTrue(logger.ILogObserver.providedBy(observer))
        self.assertNotIsInstance(observer, logger.LegacyLogObserverWrapper)

    def test_jsonFileCreatesItsDirectory(self):
        """
        The default /var/log/maillab does not exist on a fresh machine: the
        directory is created, mode 0750 whatever the umask.
        """
        path = os.path.abspath(os.path.join(self.mktemp(), "log", "maillab", "maillab.json"))
        self.patch(os, "environ", {"MAILLAB_LOG": path})
        old = os.umask(0o002)
        try:
            observer = logs.jsonFile()
        finally:
            os.umask(old)
        Logger(observer=observer).info("started")
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o750)
        with open(path) as f:
            self.assertEqual(json.loads(f.readline())["log_level"], "info")

    def test_jsonFileThatCannotBeWrittenIsOneLine(self):
        blocker = os.path.abspath(self.mktemp())
        Path(blocker).write_text("a file where the directory should be\n")
        path = os.path.join(blocker, "maillab.json")
        self.patch(os, "environ", {"MAILLAB_LOG": path})
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        e = self.assertRaises(SystemExit, logs.jsonFile)
        self.assertEqual(e.code, 1)
        self.assertEqual(
            err.getvalue(), f"maillab: cannot write the JSON log {path}: {blocker} is not a directory\n"
        )

    def test_jsonFileHonoursEnvironment(self):
        path = os.path.abspath(self.mktemp())
        self.patch(os, "environ", {"MAILLAB_LOG": path})
        observer = logs.jsonFile()
        Logger(observer=observer).warn("disk {percent}% full", percent=97)
        with open(path) as f:
            self.assertEqual(json.loads(f.readline())["text"], "disk 97% full")


class ReloadCommandTests(unittest.TestCase):
    def test_staleProcessIsNotSignalled(self):
        """
        A pid file left by a crash may name an unrelated process by now.
        """
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        pidfile = self.mktemp()
        Path(pidfile).write_text(f"{child.pid}\n")
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(cli.main(["reload", "--pidfile", pidfile]), 1)
        self.assertEqual(
            err.getvalue(),
            f"maillab reload: no running daemon found: {pidfile}: process {child.pid} is not "
            "a running maillab daemon (stale pid file?)\n",
        )
        self.assertIsNone(child.poll())

    def test_pidfilesLookedFor(self):
        """
        Without --pidfile: the config's state directory, then the systemd
        unit's, then twistd's default in the current directory.
        """
        ini = Path(self.mktemp()).resolve()
        ini.write_text("[server]\nstate_directory = /srv/state\n")
        self.assertEqual(
            reload.candidates(str(ini)),
            (
                [Path("/srv/state/maillab.pid"), Path("/run/maillab/maillab.pid"), Path("twistd.pid")],
                None,
            ),
        )
        paths, problem = reload.candidates("/nonexistent/maillab.ini")
        self.assertEqual(paths, [Path("/run/maillab/maillab.pid"), Path("twistd.pid")])
        self.assertEqual(problem, "/nonexistent/maillab.ini: no such file")

    def test_missingPidfile(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(reload.main(["--pidfile", "/nonexistent/maillab.pid"]), 1)
        self.assertEqual(
            err.getvalue(),
            "maillab reload: no running daemon found: /nonexistent/maillab.pid: no such file\n",
        )

    def test_unknownCommand(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(cli.main(["frobnicate"]), 2)
        self.assertIn("maillab passwd", err.getvalue())
