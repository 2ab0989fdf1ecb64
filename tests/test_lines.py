"""
twisted_maillab.lines: the command engine under a small handler, over
L{StringTransport} and L{task.Clock}.
"""

from __future__ import annotations

import base64

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_maillab.auth.sasl import LoginCredentials, PlainCredentials
from twisted_maillab.lines import (
    CommandEngine,
    ILineHandler,
    SASLBadEncoding,
    SASLCancelled,
    SASLExchange,
    SASLUnsupported,
    decodeBase64,
    plaintextAllowed,
)


class TLSStringTransport(StringTransport):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tlsStarted = []

    def startTLS(self, contextFactory):
        self.tlsStarted.append(contextFactory)


@implementer(ILineHandler)
class Handler:
    """
    Records what the engine delivers; a line C{wait} returns a pending
    Deferred (in L{pending}), C{fail} a failed one, C{close} closes.
    """

    def __init__(self):
        self.lines = []
        self.tooLong = 0
        self.timeouts = 0
        self.failures = []
        self.pending = []
        self.engine = None

    def lineReceived(self, line):
        self.lines.append(line)
        self.engine.write(b"R " + line + b"\r\n")
        if line == b"wait":
            d = defer.Deferred()
            self.pending.append(d)
            return d
        if line == b"fail":
            return defer.fail(ValueError("handler bug"))
        if line == b"close":
            self.engine.close()
        return None

    def lineTooLong(self):
        self.tooLong += 1
        self.engine.write(b"E too long\r\n")

    def timedOut(self):
        self.timeouts += 1
        self.engine.close()

    def commandFailed(self, failure):
        self.failures.append(failure)
        self.engine.write(b"E internal\r\n")


class EngineTestCase(unittest.TestCase):
    maxLine = 20
    lineEnd = "lf"

    def setUp(self):
        self.clock = task.Clock()
        self.handler = Handler()
        self.engine = CommandEngine(
            self.handler,
            clock=self.clock,
            maxLine=self.maxLine,
            idleTimeout=60.0,
            lineEnd=self.lineEnd,
            highWater=100,
        )
        self.handler.engine = self.engine
        self.transport = TLSStringTransport()
        self.engine.makeConnection(self.transport)

    def feed(self, data: bytes):
        self.engine.dataReceived(data)


class LineTests(EngineTestCase):
    def test_interface(self):
        self.assertTrue(verifyObject(ILineHandler, self.handler))

    def test_lfAndCRLF(self):
        """
        LF ends a line and a CR before it is removed; lines split across
        reads are joined.
        """
        self.feed(b"one\r\ntwo\nthr")
        self.feed(b"ee\r")
        self.feed(b"\n")
        self.assertEqual(self.handler.lines, [b"one", b"two", b"three"])
        self.assertEqual(self.transport.value(), b"R one\r\nR two\r\nR three\r\n")

    def test_limitCountsTheLineEnd(self):
        """
        L{CommandEngine.maxLine} counts the line end: 18 octets and CRLF
        fit in 20, 19 and CRLF do not.
        """
        self.feed(b"x" * 18 + b"\r\n")
        self.assertEqual(self.handler.lines, [b"x" * 18])
        self.feed(b"y" * 19 + b"\r\n")
        self.assertEqual(self.handler.tooLong, 1)
        self.assertEqual(self.handler.lines, [b"x" * 18])

    def test_tooLongCompleteLineSessionGoesOn(self):
        """
        An over-long line gets the protocol's error; the next line is a
        command again.
        """
        self.feed(b"a" * 30 + b"\r\nnext\r\n")
        self.assertEqual(self.handler.tooLong, 1)
        self.assertEqual(self.handler.lines, [b"next"])
        self.assertEqual(self.transport.value(), b"E too long\r\nR next\r\n")

    def test_tooLongPartialLineDiscardedToItsEnd(self):
        """
        An unterminated line past the limit is reported once, as soon as it
        is over; the rest of it, in later reads, is discarded up to its
        line end, never run as a command.
        """
        self.feed(b"a" * 25)
        self.assertEqual(self.handler.tooLong, 1)
        self.feed(b"QUIT and more")
        self.feed(b"\r\nnext\r\n")
        self.assertEqual(self.handler.tooLong, 1)
        self.assertEqual(self.handler.lines, [b"next"])

    def test_limitChangeable(self):
        self.engine.maxLine = 100
        self.feed(b"a" * 50 + b"\r\n")
        self.assertEqual(self.handler.lines, [b"a" * 50])

    def test_closeStopsProcessing(self):
        """
        Nothing pipelined after a command that closes is run.
        """
        self.feed(b"close\r\nafter\r\n")
        self.assertEqual(self.handler.lines, [b"close"])
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.engine.closed)
        self.feed(b"late\r\n")
        self.assertEqual(self.handler.lines, [b"close"])


class CRLFOnlyTests(EngineTestCase):
    lineEnd = "crlf"

    def test_bareLFStaysInTheLine(self):
        """
        With C{lineEnd="crlf"} only CRLF ends a line; a bare LF is part of
        it for the protocol to judge.
        """
        self.feed(b"a\nb\r\nc\r\n")
        self.assertEqual(self.handler.lines, [b"a\nb", b"c"])

    def test_badLineEnd(self):
        self.assertRaises(ValueError, CommandEngine, Handler(), clock=self.clock, maxLine=10, lineEnd="cr")


class OrderingTests(EngineTestCase):
    def test_pipelinedCommandsWait(self):
        """
        While a command's Deferred is pending, later lines are held; they
        run, in order, when it fires, and the replies come in command
        order.
        """
        self.feed(b"wait\r\nsecond\r\nthird\r\n")
        self.assertEqual(self.handler.lines, [b"wait"])
        self.assertEqual(self.engine.pendingInput(), len(b"second\r\nthird\r\n"))
        self.engine.write(b"W done\r\n")
        self.handler.pending[0].callback(None)
        self.assertEqual(self.handler.lines, [b"wait", b"second", b"third"])
        self.assertEqual(self.transport.value(), b"R wait\r\nW done\r\nR second\r\nR third\r\n")

    def test_synchronousDeferred(self):
        """
        An already-fired Deferred holds nothing.
        """
        self.handler.lineReceived = lambda line: (self.handler.lines.append(line), defer.succeed(None))[1]
        self.feed(b"a\r\nb\r\n")
        self.assertEqual(self.handler.lines, [b"a", b"b"])

    def test_failedCommand(self):
        """
        A failing command Deferred goes to C{commandFailed}; the session
        goes on.
        """
        self.feed(b"fail\r\nafter\r\n")
        self.assertEqual(len(self.handler.failures), 1)
        self.handler.failures[0].trap(ValueError)
        self.assertEqual(self.handler.lines, [b"fail", b"after"])

    def test_backPressure(self):
        """
        Input held while a command is pending pauses the transport past the
        high-water mark and resumes it once processed.
        """
        self.feed(b"wait\r\n")
        self.feed(b"x\r\n" * 40)
        self.assertEqual(self.transport.producerState, "paused")
        self.handler.pending[0].callback(None)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.handler.lines), 41)

    def test_noPauseBelowHighWater(self):
        self.feed(b"wait\r\n")
        self.feed(b"x\r\n" * 10)
        self.assertEqual(self.transport.producerState, "producing")

    def test_pauseInput(self):
        """
        L{CommandEngine.pauseInput} holds every delivery and pauses the
        transport until L{CommandEngine.resumeInput}.
        """
        self.engine.pauseInput()
        self.assertEqual(self.transport.producerState, "paused")
        self.feed(b"a\r\n")
        self.assertEqual(self.handler.lines, [])
        self.engine.resumeInput()
        self.assertEqual(self.handler.lines, [b"a"])
        self.assertEqual(self.transport.producerState, "producing")

    def test_waitForNonCommand(self):
        """
        L{CommandEngine.wait} holds commands for work no line started (a
        greeting's name lookup).
        """
        lookup = defer.Deferred()
        self.engine.wait(lookup)
        self.feed(b"early\r\n")
        self.assertEqual(self.handler.lines, [])
        lookup.callback("name")
        self.assertEqual(self.handler.lines, [b"early"])


class ContinuationTests(EngineTestCase):
    def test_readLineWhileCommandPending(self):
        """
        L{CommandEngine.readLine} gets the next line even though the
        command that asked is still pending; later lines wait for it.
        """
        got = []
        command = defer.Deferred()

        def handler(line):
            self.handler.lines.append(line)
            if line == b"AUTH":
                self.engine.write(b"+ go\r\n")
                self.engine.readLine().addCallback(got.append)
                return command
            return None

        self.handler.lineReceived = handler
        self.feed(b"AUTH\r\nresponse\r\nNEXT\r\n")
        self.assertEqual(got, [b"response"])
        self.assertEqual(self.handler.lines, [b"AUTH"])
        command.callback(None)
        self.assertEqual(self.handler.lines, [b"AUTH", b"NEXT"])

    def test_readLineLater(self):
        """
        A line that arrives after readLine() was called goes to it.
        """
        d = self.engine.readLine()
        got = []
        d.addCallback(got.append)
        self.assertEqual(got, [])
        self.feed(b"DONE\r\nnext\r\n")
        self.assertEqual(got, [b"DONE"])
        self.assertEqual(self.handler.lines, [b"next"])

    def test_readLineTooLong(self):
        """
        An over-long continuation goes to lineTooLong; the reader gets the
        next line.
        """
        got = []
        self.engine.readLine().addCallback(got.append)
        self.feed(b"z" * 30 + b"\r\n*\r\n")
        self.assertEqual(self.handler.tooLong, 1)
        self.assertEqual(got, [b"*"])

    def test_readLineTwice(self):
        self.engine.readLine()
        self.assertRaises(RuntimeError, self.engine.readLine)


class RawModeTests(EngineTestCase):
    maxLine = 40

    def literalHandler(self, chunks, after=None):
        """
        A handler that reads an IMAP-style literal C{{N}} at the end of a
        line, sending a continuation first, then the rest of the command.
        """

        def handler(line):
            self.handler.lines.append(line)
            if line.endswith(b"}"):
                count = int(line[line.rindex(b"{") + 1 : -1])
                self.engine.write(b"+ Ready\r\n")
                d = self.engine.readOctets(count, chunks.append)
                if after is not None:
                    d.addCallback(after.append)
                return d
            return None

        return handler

    def test_literalAcrossReads(self):
        """
        readOctets delivers exactly N octets, whatever the reads, then the
        rest of the command line is a line again.
        """
        chunks, done = [], []
        self.handler.lineReceived = self.literalHandler(chunks, done)
        self.feed(b"A1 APPEND INBOX {10}\r\n")
        self.assertEqual(self.transport.value(), b"+ Ready\r\n")
        self.feed(b"0123")
        self.assertEqual(done, [])
        self.feed(b"456789 FLAGS\r\nA2 NOOP\r\n")
        self.assertEqual(b"".join(chunks), b"0123456789")
        self.assertEqual(done, [None])
        self.assertEqual(self.handler.lines, [b"A1 APPEND INBOX {10}", b" FLAGS", b"A2 NOOP"])

    def test_literalIgnoresLineLimit(self):
        """
        A literal is octets, not a line: CR, LF and its length do not
        matter.
        """
        chunks = []
        self.handler.lineReceived = self.literalHandler(chunks)
        self.feed(b"X {40}\r\n" + b"\r\n" * 20 + b"\r\n")
        self.assertEqual(b"".join(chunks), b"\r\n" * 20)
        self.assertEqual(self.handler.tooLong, 0)
        self.assertEqual(self.handler.lines, [b"X {40}", b""])

    def test_literalPipelined(self):
        """
        A literal sent with the line in one read (C{{N+}}, RFC 7888) is
        delivered the same way.
        """
        chunks = []
        self.handler.lineReceived = self.literalHandler(chunks)
        self.feed(b"X {3}\r\nabc\r\n")
        self.assertEqual(chunks, [b"abc"])

    def test_literalSinkBackPressure(self):
        """
        A sink that pauses input gets nothing more, and the transport is
        paused, until it resumes.
        """
        chunks = []

        def sink(data):
            chunks.append(data)
            if len(chunks) == 1:
                self.engine.pauseInput()

        self.engine.readOctets(6, sink)
        self.feed(b"abc")
        self.feed(b"def\r\nNOOP\r\n")
        self.assertEqual(chunks, [b"abc"])
        self.assertEqual(self.transport.producerState, "paused")
        self.engine.resumeInput()
        self.assertEqual(chunks, [b"abc", b"def"])
        self.assertEqual(self.handler.lines, [b"", b"NOOP"])
        self.assertEqual(self.transport.producerState, "producing")

    def test_emptyLiteral(self):
        d = self.engine.readOctets(0, self.fail)
        self.assertIsNone(self.successResultOf(d))

    def test_rawModeUntilLineMode(self):
        """
        rawMode delivers everything until the sink calls lineMode with the
        octets past its end, which are then read as lines.
        """
        got = []

        def sink(data):
            got.append(data)
            end = b"".join(got).find(b".\r\n")
            if end >= 0:
                whole = b"".join(got)
                self.engine.lineMode(whole[end + 3 :])

        self.engine.rawMode(sink)
        self.feed(b"body line\r\nwait\r\n")
        self.assertEqual(self.handler.lines, [])
        self.feed(b".\r\nQUIT\r\n")
        self.assertEqual(self.handler.lines, [b"QUIT"])

    def test_rawModeAfterPendingCommand(self):
        """
        Input buffered before raw mode started (pipelined after DATA) goes
        to the sink.
        """
        got = []

        def handler(line):
            self.handler.lines.append(line)
            if line == b"DATA":
                d = defer.Deferred()
                self.handler.pending.append(d)
                d.addCallback(lambda _: self.engine.rawMode(got.append))
                return d
            return None

        self.handler.lineReceived = handler
        self.feed(b"DATA\r\nbody\r\n")
        self.assertEqual(got, [])
        self.handler.pending[0].callback(None)
        self.assertEqual(got, [b"body\r\n"])

    def test_rawModeTwice(self):
        self.engine.rawMode(lambda data: None)
        self.assertRaises(RuntimeError, self.engine.rawMode, lambda data: None)
        self.assertRaises(RuntimeError, self.engine.readOctets, 3, lambda data: None)


class StartTLSTests(EngineTestCase):
    def test_discardsPipelinedInput(self):
        """
        Everything received after the STARTTLS line in the same read is
        discarded when TLS starts (RFC 3207 4.2).
        """
        discarded = []

        def handler(line):
            self.handler.lines.append(line)
            if line == b"STARTTLS":
                self.engine.write(b"220 go\r\n")
                discarded.append(self.engine.startTLS("context"))
            return None

        self.handler.lineReceived = handler
        self.feed(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x>\r\n")
        self.assertEqual(self.transport.tlsStarted, ["context"])
        self.assertEqual(discarded, [len(b"RSET\r\nMAIL FROM:<x>\r\n")])
        self.assertEqual(self.handler.lines, [b"STARTTLS"])
        self.feed(b"EHLO again\r\n")
        self.assertEqual(self.handler.lines, [b"STARTTLS", b"EHLO again"])


class TimeoutTests(EngineTestCase):
    def test_idle(self):
        self.clock.advance(59)
        self.assertEqual(self.handler.timeouts, 0)
        self.clock.advance(1)
        self.assertEqual(self.handler.timeouts, 1)
        self.assertTrue(self.transport.disconnecting)

    def test_resetOnInput(self):
        self.clock.advance(50)
        self.feed(b"partial")
        self.clock.advance(50)
        self.assertEqual(self.handler.timeouts, 0)
        self.clock.advance(10)
        self.assertEqual(self.handler.timeouts, 1)

    def test_suspendedWhileServerBusy(self):
        """
        While a command's Deferred is pending the client is not idle.
        """
        self.feed(b"wait\r\n")
        self.clock.advance(200)
        self.assertEqual(self.handler.timeouts, 0)
        self.handler.pending[0].callback(None)
        self.clock.advance(59)
        self.assertEqual(self.handler.timeouts, 0)
        self.clock.advance(1)
        self.assertEqual(self.handler.timeouts, 1)

    def test_suspendedWhileInputPaused(self):
        self.engine.pauseInput()
        self.clock.advance(200)
        self.assertEqual(self.handler.timeouts, 0)
        self.engine.resumeInput()
        self.clock.advance(60)
        self.assertEqual(self.handler.timeouts, 1)

    def test_timedWaitKeepsRunning(self):
        """
        A C{timed} wait (a reply streamed to a slow reader) does not stop
        the clock.
        """
        self.engine.wait(defer.Deferred(), timed=True)
        self.clock.advance(60)
        self.assertEqual(self.handler.timeouts, 1)

    def test_runsWhileClientOwesContinuation(self):
        """
        A pending command waiting on readLine is the client's turn.
        """

        def handler(line):
            self.engine.readLine()
            return defer.Deferred()

        self.handler.lineReceived = handler
        self.feed(b"AUTH\r\n")
        self.clock.advance(60)
        self.assertEqual(self.handler.timeouts, 1)

    def test_setIdleTimeout(self):
        """
        The value can change at any time (IMAP after login, SMTP DATA) and
        restarts the timer; L{None} stops it.
        """
        self.engine.setIdleTimeout(10)
        self.assertEqual(self.engine.idleTimeout, 10)
        self.clock.advance(10)
        self.assertEqual(self.handler.timeouts, 1)

    def test_noTimeout(self):
        self.engine.setIdleTimeout(None)
        self.clock.advance(10000)
        self.assertEqual(self.handler.timeouts, 0)

    def test_connectionLostStopsTimer(self):
        self.engine.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SASLTests(EngineTestCase):
    maxLine = 12288

    def setUp(self):
        super().setUp()
        self.exchange = SASLExchange(self.engine, lambda c: b"+ " + c + b"\r\n")
        self.handler.lineReceived = self.command
        self.results = []

    def command(self, line):
        mechanism, _, initial = line.partition(b" ")
        d = self.exchange.authenticate(mechanism, initial or None)
        d.addBoth(self.results.append)
        return d

    def b64(self, data):
        return base64.b64encode(data)

    def test_plainInitialResponse(self):
        self.feed(b"plain " + self.b64(b"\0anne\0secret") + b"\r\n")
        (credentials,) = self.results
        self.assertIsInstance(credentials, PlainCredentials)
        self.assertEqual((credentials.username, credentials.password), (b"anne", b"secret"))
        self.assertEqual(self.transport.value(), b"")

    def test_plainContinuation(self):
        """
        Without an initial response PLAIN sends an empty challenge in the
        protocol's continuation format.
        """
        self.feed(b"PLAIN\r\n")
        self.assertEqual(self.transport.value(), b"+ \r\n")
        self.assertEqual(self.results, [])
        self.feed(self.b64(b"\0anne\0secret") + b"\r\n")
        self.assertEqual(self.results[0].username, b"anne")

    def test_login(self):
        self.feed(b"LOGIN\r\n")
        self.assertEqual(self.transport.value(), b"+ " + self.b64(b"Username:") + b"\r\n")
        self.transport.clear()
        self.feed(self.b64(b"anne") + b"\r\n")
        self.assertEqual(self.transport.value(), b"+ " + self.b64(b"Password:") + b"\r\n")
        self.feed(self.b64(b"secret") + b"\r\n")
        (credentials,) = self.results
        self.assertIsInstance(credentials, LoginCredentials)
        self.assertEqual((credentials.username, credentials.password), (b"anne", b"secret"))

    def test_loginInitialResponse(self):
        self.feed(b"LOGIN " + self.b64(b"anne") + b"\r\n")
        self.assertEqual(self.transport.value(), b"+ " + self.b64(b"Password:") + b"\r\n")

    def test_emptyInitialResponse(self):
        """
        C{=} is an empty initial response (a malformed PLAIN, not a
        continuation).
        """
        self.feed(b"PLAIN =\r\n")
        (credentials,) = self.results
        self.assertIsNotNone(credentials.malformed)
        self.assertEqual(self.transport.value(), b"")

    def test_cancel(self):
        self.feed(b"PLAIN\r\n*\r\nNEXT\r\n")
        self.results[0].trap(SASLCancelled)
        # The line after the cancel is a command again.
        self.results[1].trap(SASLUnsupported)
        self.assertEqual(str(self.results[1].value), "NEXT")

    def test_badBase64Initial(self):
        self.feed(b"PLAIN !!!\r\n")
        self.results[0].trap(SASLBadEncoding)

    def test_badBase64Continuation(self):
        self.feed(b"LOGIN\r\nnot base64!\r\n")
        self.results[0].trap(SASLBadEncoding)

    def test_unsupported(self):
        self.feed(b"CRAM-MD5\r\n")
        self.results[0].trap(SASLUnsupported)
        self.assertEqual(self.transport.value(), b"")

    def test_mechanismsFromCaller(self):
        exchange = SASLExchange(self.engine, lambda c: c, {b"LOGIN": LoginCredentials})
        self.failureResultOf(exchange.authenticate(b"PLAIN", b"="), SASLUnsupported)

    def test_decodeBase64(self):
        self.assertEqual(decodeBase64(b"YQ=="), b"a")
        self.assertIsNone(decodeBase64(b"YQ"))
        self.assertIsNone(decodeBase64(b"Y Q=="))


class PlaintextRuleTests(unittest.TestCase):
    def test_loopback(self):
        self.assertTrue(plaintextAllowed("127.0.0.1", False))
        self.assertTrue(plaintextAllowed("::ffff:127.0.0.1", False))
        self.assertFalse(plaintextAllowed("192.0.2.1", False))

    def test_tls(self):
        self.assertTrue(plaintextAllowed("192.0.2.1", True))
        self.assertTrue(plaintextAllowed("192.0.2.1", True, onLoopback=False))

    def test_loopbackSettingOff(self):
        """
        C{plaintext_on_loopback = no}: only TLS counts.
        """
        self.assertFalse(plaintextAllowed("127.0.0.1", False, onLoopback=False))
