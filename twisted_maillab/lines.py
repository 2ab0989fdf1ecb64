"""
The command engine shared by the line protocols (SMTP, POP3, IMAP).

Every line protocol of the suite needs the same machinery under its
command handlers, and each of the Twisted classes it could inherit gets a
part of it wrong (C{LineOnlyReceiver} runs pipelined commands while an
earlier one is still pending and keeps lines split before STARTTLS;
C{LineReceiver}'s raw mode has no octet count).  L{CommandEngine} is that
machinery, once:

  - line splitting with a per-protocol limit (L{CommandEngine.maxLine},
    octets including the line end, RFC 5321 4.5.3.1.4 / RFC 2449 4 style);
    past it the protocol's C{lineTooLong} is called, the rest of the line
    is discarded and the session goes on, unless the protocol closes it;
    a line ends at LF (a CR before it is removed: SMTP and POP3 accept
    bare-LF clients) or, with C{lineEnd="crlf"}, only at CRLF;
  - raw mode: L{CommandEngine.readOctets} delivers exactly the next N
    octets (IMAP literals, RFC 3501 4.3 / RFC 7888) and
    L{CommandEngine.rawMode} delivers everything until the protocol calls
    L{CommandEngine.lineMode} (SMTP DATA, whose decoder finds the end);
  - ordered processing: a command handler returning a L{Deferred} holds
    further commands until it fires (RFC 2920 3.1, RFC 2449 6.6,
    RFC 3501 5.5), and the input held meanwhile is bounded: past
    L{INPUT_HIGH_WATER} octets the transport is paused (C{pauseProducing});
  - continuation lines: L{CommandEngine.readLine} gives the next line to
    the command in progress instead of the handler (SASL responses, IMAP
    C{DONE} after C{IDLE});
  - replies through L{twisted_maillab.sendnow.writeNow} (one C{send} per
    reply instead of a queued write and two C{epoll_ctl}s);
  - STARTTLS hygiene (RFC 3207 4.2, RFC 2595 3.1 / 4, RFC 3501 6.2.1):
    L{CommandEngine.startTLS} discards whatever the client sent after the
    STARTTLS/STLS line before the handshake (CVE-2011-0411 class);
  - an idle timeout on an injectable clock, reset on input, suspended while
    the server itself owes the client an answer, changed at any time with
    L{CommandEngine.setIdleTimeout} (SMTP DATA, IMAP before and after
    login, IDLE);
  - one SASL exchange (L{SASLExchange}) and one plaintext rule
    (L{plaintextAllowed}, from L{twisted_maillab.auth.sasl}).

Why an engine object the protocol owns rather than a C{Protocol} base
class: the protocols already have their own bases (C{POP3Server} mixes in
C{TimeoutMixin}, IMAP will want its own state machine), an engine keeps
the protocol's attribute namespace free of the engine's bookkeeping, and
the engine is tested alone against a small handler.  A protocol creates
one in C{connectionMade}, passes C{dataReceived} and C{connectionLost} on,
and provides L{ILineHandler}::

    @implementer(ILineHandler)
    class Server(Protocol):
        def connectionMade(self):
            self.engine = CommandEngine(self, clock=reactor, maxLine=8192,
                                        idleTimeout=1800, lineEnd="crlf")
            self.engine.makeConnection(self.transport)
            self.engine.write(b"* OK ready\r\n")

        def dataReceived(self, data):
            self.engine.dataReceived(data)

        def connectionLost(self, reason):
            self.engine.connectionLost()

        def lineReceived(self, line):
            # None when answered, or a Deferred: later commands wait.
            ...

A command reading an IMAP literal writes its continuation
(C{self.engine.write(b"+ Ready\r\n")}, not for C{{N+}}), then returns
C{self.engine.readOctets(n, sink)}; the rest of its command line is the
next line.  AUTHENTICATE returns
C{SASLExchange(self.engine, lambda c: b"+ " + c + b"\r\n").authenticate(
mechanism, initial)} with the login and its reply chained on.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from twisted_maillab.auth.sasl import SASLError, challengers, plaintextAllowed
from twisted_maillab.sendnow import writeNow

__all__ = [
    "CommandEngine",
    "ILineHandler",
    "INPUT_HIGH_WATER",
    "SASLExchange",
    "SASLCancelled",
    "SASLBadEncoding",
    "SASLUnsupported",
    "decodeBase64",
    "plaintextAllowed",
]

log = Logger(namespace="twisted_maillab.lines")

# Unprocessed (pipelined) input kept before the transport is paused.
INPUT_HIGH_WATER = 64 * 1024


class ILineHandler(Interface):
    """
    What a protocol gives its L{CommandEngine}.
    """

    def lineReceived(line: bytes):
        """
        One command line, without its line end.

        @return: L{None} when the command is answered, or a L{Deferred}
            that fires when it is: no further command line is delivered
            before then (lines and octets asked for with
            L{CommandEngine.readLine} and L{CommandEngine.readOctets} still
            are).
        """

    def lineTooLong():
        """
        A line longer than L{CommandEngine.maxLine} arrived; send the error
        reply.  Its octets are discarded up to the line end and the session
        goes on unless this calls L{CommandEngine.close}.
        """

    def timedOut():
        """
        The idle timeout expired while the server owed the client nothing;
        send the farewell reply and call L{CommandEngine.close}.
        """

    def commandFailed(failure):
        """
        A command's L{Deferred} failed (a bug, the handler should answer
        its own errors): log it and, unless L{CommandEngine.closed}, send
        a temporary error reply.  The session goes on.
        """


# How much of an over-long line is kept for the handler (IMAP answers with
# the command's tag, RFC 3501 7.1.3).
TOO_LONG_PREFIX = 64


class CommandEngine:
    """
    The input side and reply writer of one connection.  See the module
    docstring.

    @ivar handler: the L{ILineHandler}.
    @ivar transport: the connection's transport.
    @ivar maxLine: the longest line accepted, in octets including its line
        end; may be changed between commands.
    @ivar closed: L{close} was called or the connection was lost.
    """

    transport = None
    closed = False

    def __init__(
        self,
        handler,
        *,
        clock,
        maxLine: int,
        idleTimeout: float | None = None,
        lineEnd: str = "lf",
        highWater: int = INPUT_HIGH_WATER,
    ):
        """
        @param handler: an L{ILineHandler}.
        @param clock: an L{IReactorTime} (the reactor, or a L{task.Clock}).
        @param maxLine: see L{maxLine}.
        @param idleTimeout: seconds of client silence before
            C{handler.timedOut()}, or L{None} (none).  The timer starts in
            L{makeConnection}.
        @param lineEnd: C{"lf"}: a line ends at LF, a CR before it is
            removed; C{"crlf"}: only CRLF ends a line, a bare LF is part of
            it (for the protocol's parser to refuse).
        @param highWater: pipelined octets held before the transport is
            paused.
        """
        if lineEnd not in ("lf", "crlf"):
            raise ValueError(f"lineEnd must be 'lf' or 'crlf', not {lineEnd!r}")
        self.handler = handler
        self.clock = clock
        self.maxLine = maxLine
        # the start of the last over-long line, for lineTooLong
        self.tooLongPrefix = b""
        self._crlf = lineEnd == "crlf"
        self._highWater = highWater
        self._idle = idleTimeout
        self._timer = None
        self._input = bytearray()
        self._skipping = False
        self._processing = False
        # Pending command Deferreds (holding command lines), and how many
        # of them are waits on the client rather than on the server.
        self._waits = 0
        self._timedWaits = 0
        # pauseInput() calls not yet matched by resumeInput().
        self._holds = 0
        self._readingPaused = False
        self._lineWaiter: defer.Deferred | None = None
        # Raw mode: the sink, the octets still to deliver (None: until
        # lineMode()), and the Deferred of readOctets.
        self._sink: Callable[[bytes], object] | None = None
        self._rawLeft: int | None = None
        self._rawDone: defer.Deferred | None = None

    # -- connection -------------------------------------------------------

    def makeConnection(self, transport) -> None:
        """
        Attach to C{transport} (from the protocol's C{connectionMade}) and
        start the idle timer.
        """
        self.transport = transport
        self.resetTimeout()

    def connectionLost(self) -> None:
        """
        The connection is gone (from the protocol's C{connectionLost}):
        stop the timer and forget held input.  A pending L{readLine} or
        L{readOctets} Deferred never fires (the protocol learns of the loss
        here, and a failure would be logged as a command's bug).
        """
        self._shutdown()
        self._lineWaiter = None
        self._sink = self._rawLeft = self._rawDone = None

    def close(self) -> None:
        """
        Stop reading and hang up once the replies written so far are sent.
        """
        if self.closed:
            return
        self._shutdown()
        self.transport.loseConnection()

    def _shutdown(self) -> None:
        self.closed = True
        self._input.clear()
        self.setIdleTimeout(None)

    # -- output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Send a reply (complete lines with their CRLF), at once when the
        socket can take it (L{writeNow}).  Replies go out in the order
        they are written; commands are run one at a time, so that is
        command order.
        """
        writeNow(self.transport, data)

    # -- the idle timeout --------------------------------------------------

    @property
    def idleTimeout(self) -> float | None:
        """
        The idle timeout in use, in seconds, or L{None}.
        """
        return self._idle

    def setIdleTimeout(self, seconds: float | None) -> None:
        """
        Use C{seconds} from now on (L{None}: no timeout), and restart the
        timer with it.
        """
        self._idle = seconds
        if seconds is None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
        else:
            self.resetTimeout()

    def resetTimeout(self) -> None:
        """
        Restart the idle timer (input does this; a protocol streaming a
        long reply calls it as the client reads).
        """
        if self._idle is None or self.closed:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._idle)
        else:
            self._timer = self.clock.callLater(self._idle, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        if self.closed:
            return
        if self.serverBusy():
            # We owe the client an answer: its silence is not idleness.
            self.resetTimeout()
            return
        self.handler.timedOut()

    def serverBusy(self) -> bool:
        """
        Whether the server, not the client, is what the session waits for:
        a command's L{Deferred} is pending (not a L{wait} with
        C{timed=True}) and no L{readLine} or L{readOctets} is waiting for
        the client, or input is held by L{pauseInput}.
        """
        if self._holds:
            return True
        return (
            self._waits > self._timedWaits
            and self._lineWaiter is None
            and self._sink is None
        )

    # -- input ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Octets from the transport (from the protocol's C{dataReceived}).
        """
        if self.closed:
            return
        self.resetTimeout()
        if (
            self._sink is not None
            and self._rawLeft is None
            and not self._input
            and not self._holds
            and not self._processing
        ):
            # Raw mode with nothing held (SMTP DATA): no copy through the
            # buffer.  A lineMode() from the sink only queues its octets;
            # they are processed here, after the sink returned.
            self._processing = True
            try:
                self._sink(data)
            finally:
                self._processing = False
            if self._input:
                self._process()
            else:
                self._flowControl()
            return
        self._input += data
        self._process()

    def pendingInput(self) -> int:
        """
        The octets received and not yet delivered.
        """
        return len(self._input)

    def _process(self) -> None:
        if self._processing:
            # Re-entered from a handler or callback: the running loop
            # re-checks its conditions and carries on.
            return
        self._processing = True
        try:
            self._loop()
        finally:
            self._processing = False
        self._flowControl()

    def _loop(self) -> None:
        buf = self._input
        while buf and not self.closed and not self._holds and not self.transport.disconnecting:
            if self._sink is not None:
                self._deliverRaw()
                continue
            if self._waits and self._lineWaiter is None:
                break
            if self._crlf:
                end = buf.find(b"\r\n")
                size = end + 2
            else:
                end = buf.find(b"\n")
                size = end + 1
            if self._skipping:
                # The rest of an over-long line.
                if end < 0:
                    buf.clear()
                    break
                del buf[:size]
                self._skipping = False
                continue
            if end < 0:
                if len(buf) > self.maxLine:
                    self.tooLongPrefix = bytes(buf[:TOO_LONG_PREFIX])
                    buf.clear()
                    self._skipping = True
                    self.handler.lineTooLong()
                break
            if size > self.maxLine:
                self.tooLongPrefix = bytes(buf[:TOO_LONG_PREFIX])
                del buf[:size]
                self.handler.lineTooLong()
                continue
            line = bytes(buf[:end])
            del buf[:size]
            if not self._crlf and line.endswith(b"\r"):
                line = line[:-1]
            waiter = self._lineWaiter
            if waiter is not None:
                self._lineWaiter = None
                waiter.callback(line)
                continue
            result = self.handler.lineReceived(line)
            if result is not None:
                self.wait(result)

    def _deliverRaw(self) -> None:
        buf = self._input
        sink = self._sink
        left = self._rawLeft
        if left is None:
            data = bytes(buf)
            buf.clear()
            sink(data)
            return
        data = bytes(buf[:left])
        del buf[:left]
        left -= len(data)
        if left:
            self._rawLeft = left
            sink(data)
            return
        done = self._rawDone
        self._sink = self._rawLeft = self._rawDone = None
        sink(data)
        done.callback(None)

    def _flowControl(self) -> None:
        # Pipelined input beyond the bound waits in the kernel, not here;
        # input held by pauseInput() waits there too.
        pause = not self.closed and (self._holds > 0 or len(self._input) > self._highWater)
        if pause and not self._readingPaused:
            self._readingPaused = True
            self.transport.pauseProducing()
        elif not pause and self._readingPaused:
            self._readingPaused = False
            if not self.closed:
                self.transport.resumeProducing()

    # -- ordering -----------------------------------------------------------

    def wait(self, d: defer.Deferred, timed: bool = False) -> None:
        """
        Hold further command lines until C{d} fires (the handler's return
        value goes here by itself; a protocol calls this directly for work
        not started by a command line, such as the greeting's name lookup).
        A failure of C{d} goes to C{handler.commandFailed}.

        @param timed: the wait is on the client (a reply streamed to a
            client that reads slowly), so the idle timer keeps running;
            otherwise it is suspended until C{d} fires.
        """
        finished = []
        d.addErrback(self.handler.commandFailed)
        d.addBoth(finished.append)
        if finished:
            # Answered synchronously: the caller's loop carries on (no
            # recursion per pipelined command).
            return
        self._waits += 1
        if timed:
            self._timedWaits += 1

        def done(_):
            self._waits -= 1
            if timed:
                self._timedWaits -= 1
            if not self.closed:
                self.resetTimeout()
                self._process()

        d.addCallback(done)

    def pauseInput(self) -> None:
        """
        Deliver nothing (lines or raw octets) and pause the transport until
        the matching L{resumeInput}: the server is busy with what it
        received (SMTP's message writes to the store).
        """
        self._holds += 1
        self._flowControl()

    def resumeInput(self) -> None:
        """
        Undo one L{pauseInput}; the held input is processed when none is
        left.
        """
        self._holds -= 1
        if not self._holds and not self.closed:
            self._process()
        else:
            self._flowControl()

    def readLine(self) -> defer.Deferred:
        """
        The next line goes to the returned L{Deferred} instead of the
        handler, even while a command is pending (a SASL response, IMAP
        C{DONE}).  The idle timer runs meanwhile: it is the client's turn.
        The line limit applies as for commands: an over-long line goes to
        C{handler.lineTooLong} and the Deferred waits for the next one.
        """
        if self._lineWaiter is not None:
            raise RuntimeError("readLine() while another readLine() is pending")
        d = self._lineWaiter = defer.Deferred()
        self._process()
        return d

    def readOctets(self, count: int, sink: Callable[[bytes], object]) -> defer.Deferred:
        """
        Deliver exactly the next C{count} octets to C{sink}, in as many
        calls as they arrive in, then go back to lines (IMAP literals: the
        rest of the command line follows the literal).  Works while a
        command is pending, so a command can read its own literal.  A sink
        that cannot keep up (a store write) calls L{pauseInput} and, when
        it caught up, L{resumeInput}.

        @return: a L{Deferred} firing (after the last C{sink} call) when
            all C{count} octets were delivered.
        """
        if self._sink is not None:
            raise RuntimeError("readOctets() while raw mode is active")
        done = defer.Deferred()
        if count <= 0:
            done.callback(None)
            return done
        self._skipping = False
        self._sink, self._rawLeft, self._rawDone = sink, count, done
        self._process()
        return done

    def rawMode(self, sink: Callable[[bytes], object]) -> None:
        """
        Deliver every octet received from now on to C{sink} until the
        protocol calls L{lineMode} (SMTP DATA: the message decoder finds
        the end).
        """
        if self._sink is not None:
            raise RuntimeError("rawMode() while raw mode is active")
        self._skipping = False
        self._sink, self._rawLeft, self._rawDone = sink, None, None
        self._process()

    def lineMode(self, unconsumed: bytes = b"") -> None:
        """
        End L{rawMode}: C{unconsumed} (what the sink was given past its
        end) is read again as lines, ahead of anything received since.
        Called from the sink, the lines are processed after it returns, so
        the protocol may still L{wait} for the end of the data it received.
        """
        self._sink = self._rawLeft = self._rawDone = None
        if unconsumed:
            self._input[:0] = unconsumed
        self._process()

    # -- STARTTLS -------------------------------------------------------------

    def startTLS(self, contextFactory) -> int:
        """
        Discard the input not yet delivered and start TLS on the transport.
        Call it after writing the "go ahead" reply: what the client sent
        after the STARTTLS/STLS line came before the handshake, in the
        clear, and may be a man in the middle's (RFC 3207 4.2, RFC 2595
        3.1, RFC 3501 6.2.1).

        @return: how many octets were discarded (for the protocol's log).
        """
        discarded = len(self._input)
        self._input.clear()
        self._skipping = False
        self.transport.startTLS(contextFactory)
        return discarded


def decodeBase64(data: bytes) -> bytes | None:
    """
    Strict base64 (RFC 4648 4; RFC 4954 4, RFC 5034 4 and RFC 3501 6.2.2
    send SASL data so), or L{None} when C{data} is not.
    """
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


class SASLUnsupported(SASLError):
    """
    The client named a mechanism the portal does not offer.
    """


class SASLCancelled(SASLError):
    """
    The client answered a challenge with C{*} (RFC 4954 4, RFC 5034 4,
    RFC 3501 6.2.2).
    """


class SASLBadEncoding(SASLError):
    """
    The initial response or a continuation was not valid base64.
    """


class SASLExchange:
    """
    The challenge/response part of one SASL authentication (SMTP AUTH,
    POP3 AUTH, IMAP AUTHENTICATE), driven by the mechanisms' credential
    objects (L{twisted_maillab.auth.sasl.challengers}: C{getChallenge},
    C{setResponse}, C{moreChallenges}).

    The protocol supplies the continuation format (SMTP C{334 }, POP3 and
    IMAP C{+ }), then logs in through its portal with the credentials the
    exchange returns and sends its own final reply; every error is a
    distinct L{SASLError} subclass so it can send its own error reply.
    """

    def __init__(
        self,
        engine: CommandEngine,
        continuation: Callable[[bytes], bytes],
        mechanisms: dict | None = None,
    ):
        """
        @param engine: the connection's L{CommandEngine}.
        @param continuation: C{f(challenge)} -> the bytes to write for a
            server challenge (already base64-encoded, CRLF included), e.g.
            C{lambda c: b"334 " + c + b"\\r\\n"}.
        @param mechanisms: C{{name: credentials factory}}, names upper
            case; by default L{challengers}().
        """
        self.engine = engine
        self.continuation = continuation
        self.mechanisms = challengers() if mechanisms is None else mechanisms

    def authenticate(self, mechanism: bytes, initial: bytes | None = None) -> defer.Deferred:
        """
        Run the exchange.

        @param mechanism: as the client named it (any case).
        @param initial: the initial response as sent (base64, C{=} for an
            empty one: RFC 4954 4, RFC 5034 4, RFC 4959), or L{None}.
        @return: a L{Deferred} firing with the completed credentials
            (provide C{IUsernamePassword}), or failing with
            L{SASLUnsupported}, L{SASLBadEncoding} or L{SASLCancelled}.
        """
        return defer.ensureDeferred(self._run(mechanism, initial))

    async def _run(self, mechanism: bytes, initial: bytes | None):
        factory = self.mechanisms.get(bytes(mechanism).upper())
        if factory is None:
            raise SASLUnsupported(mechanism.decode("ascii", "replace"))
        credentials = factory()
        if initial is not None:
            decoded = b"" if initial == b"=" else decodeBase64(initial)
            if decoded is None:
                raise SASLBadEncoding("invalid base64 in the initial response")
            credentials.setResponse(decoded)
        while credentials.moreChallenges():
            challenge = base64.b64encode(credentials.getChallenge())
            self.engine.write(self.continuation(challenge))
            line = await self.engine.readLine()
            if line == b"*":
                raise SASLCancelled("authentication cancelled by the client")
            decoded = decodeBase64(line)
            if decoded is None:
                raise SASLBadEncoding("invalid base64 in a response")
            credentials.setResponse(decoded)
        return credentials
