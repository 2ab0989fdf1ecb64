"""
The IMAP4rev1 server protocol (RFC 3501, with the RFC 9051 behaviour
clients rely on): connection, command dispatch, the not-authenticated
state (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE) and the commands valid
in every state (NOOP, LOGOUT, ID), ENABLE and IDLE.

The other states' commands live beside it, one module per responsibility,
mixed into L{IMAPServer}: L{twisted_maillab.imap.session} (the selected
state over a L{FolderView}: SELECT, STORE, EXPUNGE, COPY/MOVE, SEARCH,
SORT, CLOSE), L{twisted_maillab.imap.fetch} (FETCH, streamed) and
L{twisted_maillab.imap.mailboxcmds} (LIST, LSUB, CREATE, DELETE, RENAME,
SUBSCRIBE, STATUS, NAMESPACE, APPEND); big APPEND literals are read into
files by L{twisted_maillab.imap.appendspool}; connection and output
bounds are L{twisted_maillab.imap.limits}.

Input: the suite's L{twisted_maillab.lines.CommandEngine} splits lines,
orders commands (a command's Deferred holds the next one), bounds what a
client may pipeline (the transport is paused past its high-water mark),
runs the idle timer and discards what was pipelined after STARTTLS; the
parser's L{CommandAssembler} is fed one line at a time and decides about
literals: a line ending in C{{N}} is answered with a continuation request
(or C{NO [TOOBIG]} before any octet is read) and the engine's
L{readOctets} delivers exactly the literal's octets, then the rest of the
command line follows.
"""

from __future__ import annotations

import re

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab import lines
from twisted_maillab.auth.pool import AuthenticationUnavailable
from twisted_maillab.auth.sasl import challengers
from twisted_maillab.sendnow import noDelay, quickAck
from twisted_maillab.imap import appendspool
from twisted_maillab.imap import response as R
from twisted_maillab.imap.account import IIMAPAccount
from twisted_maillab.imap.fetch import FetchCommands
from twisted_maillab.imap.limits import OUTPUT_BACKLOG, PUSH_BACKLOG, ConnectionCounter, outputBacklog
from twisted_maillab.imap.mailboxcmds import MailboxCommands
from twisted_maillab.imap.parser import (
    Command,
    CommandAssembler,
    Continuation,
    LiteralTooBig,
    ParseError,
    isDone,
)
from twisted_maillab.imap.session import SelectedCommands
from twisted_maillab.interfaces import IMailPortal

__all__ = ["IMAPServer", "IMAPFactory", "ConnectionCounter", "OUTPUT_BACKLOG", "PUSH_BACKLOG"]

CRLF = b"\r\n"

# RFC 9051 5.4: "the autologout timer ... MUST be of at least 30 minutes'
# duration" once logged in; before login a server may be quicker.
MINIMUM_IDLE_TIMEOUT = 1800.0
DEFAULT_IDLE_TIMEOUT = 1800.0
DEFAULT_LOGIN_TIMEOUT = 60.0
DEFAULT_MAX_LINE = 8192
DEFAULT_APPEND_LIMIT = 50 * 1024 * 1024

# Bad commands in a row before the connection is closed (Dovecot closes
# after 20 as well).
MAX_BAD_COMMANDS = 20
# A tag (RFC 3501 9: astring characters but "+") followed by a space.
_TAG = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ')
MAX_AUTH_FAILURES = 3

NOT_AUTHENTICATED = "not authenticated"
AUTHENTICATED = "authenticated"
SELECTED = "selected"
LOGOUT = "logout"

# The end of a line announcing a literal: {N}, {N+} or a literal8 ~{N}.
_LITERAL = re.compile(rb"~?\{(\d{1,20})\+?\}\Z")

# Sent with every ID reply (RFC 2971 3.3).
SERVER_ID = {"name": "maillab", "vendor": "twisted-maillab"}


class _Spooled:
    """
    A big APPEND literal of C{size} octets to read into a spool file.
    """

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size


def _peerHost(transport) -> str:
    peer = transport.getPeer()
    return getattr(peer, "host", None) or str(peer)


@implementer(lines.ILineHandler)
class IMAPServer(Protocol, SelectedCommands, FetchCommands, MailboxCommands):
    """
    One IMAP connection.

    @ivar state: one of the four RFC 3501 3 states.
    @ivar tls: the connection is encrypted (IMAPS, or after STARTTLS).
    @ivar avatar: the L{IIMAPAccount} once logged in.
    """

    log = Logger()
    engine: lines.CommandEngine | None = None
    # A FETCH literal is being streamed (see fetch.py).
    streaming = False
    _appendLiterals = None

    def __init__(self):
        self.state = NOT_AUTHENTICATED
        self.tls = False
        self.avatar = None
        self.closed = False
        self._logout = None
        self._badCommands = 0
        self._authFailures = 0
        self._addressKey = None
        self._userKey = None
        self._idling = False
        self.enabled: set[str] = set()
        SelectedCommands.__init__(self)

    # -- connection ------------------------------------------------------

    def connectionMade(self):
        factory = self.factory
        self.tls = bool(factory.implicitTLS)
        self.engine = lines.CommandEngine(
            self,
            clock=factory.clock,
            maxLine=factory.maxLineLength + 2,
            idleTimeout=factory.loginTimeout,
        )
        self.engine.makeConnection(self.transport)
        self.assembler = CommandAssembler(
            maxLineLength=factory.maxLineLength,
            appendLimit=factory.appendLimit,
            literalPlus="LITERAL+",
        )
        noDelay(self.transport)
        host = _peerHost(self.transport)
        if not factory.addresses.acquire(host, factory.maxConnectionsPerAddress):
            self.write(R.untaggedStatus(b"BYE", b"Too many connections from your address", R.LIMIT))
            self.engine.close()
            return
        self._addressKey = host
        portal = factory.portal
        if IMailPortal.providedBy(portal):
            # The auth package's MailPortal: throttling per address, and
            # the login log line fail2ban reads says proto=imap.
            portal = portal.forConnection(self.transport.getPeer(), "imap")
        self._portal = portal
        self.write(R.untaggedStatus(b"OK", factory.greeting, R.codeCapability(self.capabilities())))

    def connectionLost(self, reason=None):
        self.closed = True
        self.state = LOGOUT
        if self.engine is not None:
            self.engine.connectionLost()
        # The session's folder listener goes with the connection.
        self.closeMailbox()
        if self._addressKey is not None:
            self.factory.addresses.release(self._addressKey)
            self._addressKey = None
        if self._userKey is not None:
            self.factory.users.release(self._userKey)
            self._userKey = None
        logout, self._logout = self._logout, None
        if logout is not None:
            try:
                logout()
            except Exception:
                self.log.failure("imap: avatar logout failed")

    def write(self, data: bytes) -> None:
        # Nothing after a BYE: once the engine is closing, the connection
        # is over for the client too.
        if not self.closed and not self.engine.closed:
            self.engine.write(data)

    def timedOut(self):
        # RFC 3501 5.4 autologout; no BYE inside a literal being streamed.
        if not self.streaming:
            self.write(R.untaggedStatus(b"BYE", b"Autologout; idle for too long"))
        self.engine.close()

    def dataReceived(self, data: bytes):
        self.engine.dataReceived(data)

    def lineTooLong(self):
        # RFC 3501 7.1.3: a BAD for a command whose tag was read is tagged,
        # or the client waits for that tag's answer forever.
        tag = _TAG.match(self.engine.tooLongPrefix)
        self.write(R.tagged(tag and tag.group(1), b"BAD", b"Command line too long"))
        self.assembler.discard()
        self._badCommand()

    def commandFailed(self, failure):
        self.log.failure("imap: command failed", failure)
        if not self.closed:
            self.write(R.untaggedStatus(b"BAD", b"Internal server error"))

    def _badCommand(self):
        self._badCommands += 1
        if self._badCommands >= MAX_BAD_COMMANDS:
            self.write(R.untaggedStatus(b"BYE", b"Too many invalid commands"))
            self.engine.close()

    # -- assembling commands ---------------------------------------------

    def lineReceived(self, line: bytes):
        """
        One line from the engine: a whole command, or the first line of
        one with literals (then the rest is read here, the engine holding
        further commands until this one is answered).
        """
        # An authenticated APPEND's big literals are spooled to files
        # (appendspool): the literals of the command, in order, each a
        # file or None (read into memory by the assembler).
        self._appendLiterals = None
        if self.avatar is not None and appendspool.isAppend(line):
            self._appendLiterals = []
            self._appendTag = line.split(b" ", 1)[0]
            self._spooled = 0
        event = self._feed(line)
        if event is None:
            return None
        if isinstance(event, (int, _Spooled)):
            return defer.ensureDeferred(self._readLiterals(event))
        return self._dispatchEvent(event)

    def _feed(self, line: bytes):
        """
        Feed one line: a command or parse error event, an int (the size of
        a literal to read now into the assembler), a L{_Spooled} (the size
        of one to spool), or L{None} (nothing to do).
        """
        if self._appendLiterals is not None:
            announced = appendspool.announcedLiteral(line)
            if announced is not None and announced[0] >= appendspool.SPOOL_MIN:
                return self._spoolLiteral(line, *announced)
        self.assembler.feed(line + CRLF)
        event = self.assembler.nextEvent()
        if isinstance(event, Continuation):
            self.write(R.continuation(b"Ready for literal data"))
            size = event.size
        elif event is None and _LITERAL.search(line) is not None:
            # A non-synchronising literal (RFC 7888): its octets follow.
            size = int(_LITERAL.search(line).group(1))
        else:
            return event
        if self._appendLiterals is not None:
            self._appendLiterals.append(None)
        return size

    def _spoolLiteral(self, line: bytes, size: int, synchronising: bool):
        limit = self.factory.appendLimit
        if size > limit or self._spooled + size > limit:
            # RFC 7889: refused before any octet is read; a literal
            # already on its way (LITERAL+) cannot be skipped.
            self.assembler.discard()
            self._dropAppendLiterals()
            if not synchronising:
                self.write(R.untaggedStatus(b"BYE", f"literal of {size} octets is beyond the limit of {limit}"))
                self.engine.close()
                return None
            self.write(R.tagged(self._appendTag, b"NO", f"literal of {size} octets is beyond the limit of {limit}", R.TOOBIG))
            return None
        self._spooled += size
        self.assembler.feed(appendspool.withoutLiteral(line) + CRLF)
        event = self.assembler.nextEvent()
        if isinstance(event, Continuation):
            self.write(R.continuation(b"Ready for literal data"))
        elif event is not None:
            return event
        return _Spooled(size)

    async def _readLiterals(self, size):
        while True:
            if isinstance(size, _Spooled):
                spool = appendspool.Spool(self.avatar.store.run, self.engine)
                await self.engine.readOctets(size.size, spool.write)
                try:
                    self._appendLiterals.append(await spool.finish())
                except OSError as e:
                    self.log.error("imap: cannot spool an APPEND literal: {error}", error=e)
                    self._appendLiterals.append(e)
            else:
                await self.engine.readOctets(size, self.assembler.feed)
            # The rest of the command line may be stuck behind the
            # literal's delayed acknowledgement (see quickAck).
            quickAck(self.transport)
            line = await self.engine.readLine()
            event = self._feed(line)
            if isinstance(event, (int, _Spooled)):
                size = event
                continue
            if event is None:
                return None
            result = self._dispatchEvent(event)
            if isinstance(result, defer.Deferred):
                await result
            return None

    def appendSources(self, args) -> list:
        """
        What each message of an APPEND is stored from: its literal's
        bytes, or the spool file it was read into (see appendspool).

        @raise OSError: a spool could not be written.
        """
        literals = self._appendLiterals or []
        self._appendLiterals = None
        messages = args.messages
        slots = literals[len(literals) - len(messages) :] if len(literals) >= len(messages) else [None] * len(messages)
        sources = []
        for message, slot in zip(messages, slots):
            sources.append(message.data if slot is None else slot)
        for source in sources:
            if isinstance(source, OSError):
                for other in sources:
                    if hasattr(other, "close"):
                        other.close()
                raise source
        return sources

    def _dispatchEvent(self, event):
        if isinstance(event, ParseError):
            self._dropAppendLiterals()
            return self._parseError(event)
        self._badCommands = 0
        result = self.dispatch(event)
        if isinstance(result, defer.Deferred):
            return result.addBoth(self._dropAppendLiterals)
        self._dropAppendLiterals()
        return result

    def _dropAppendLiterals(self, result=None):
        """
        Close the spool files of an APPEND that did not take them (it was
        refused, or the command did not parse).
        """
        literals, self._appendLiterals = self._appendLiterals, None
        for literal in literals or ():
            if hasattr(literal, "close"):
                literal.close()
        return result

    def _parseError(self, error: ParseError):
        if isinstance(error, LiteralTooBig) and error.command == "APPEND" and not error.fatal:
            # RFC 7889: the literal was not read; the client goes on.
            self.write(R.tagged(error.tag, b"NO", error.message, R.TOOBIG))
            return None
        self.write(R.parseErrorResponse(error))
        if error.fatal:
            self.engine.close()
            return None
        self._badCommand()
        return None

    # -- dispatch ----------------------------------------------------------

    ANY = frozenset({NOT_AUTHENTICATED, AUTHENTICATED, SELECTED})
    AUTH = frozenset({AUTHENTICATED, SELECTED})
    SEL = frozenset({SELECTED})
    NOAUTH = frozenset({NOT_AUTHENTICATED})
    # RFC 5161 3: "The ENABLE command is only valid in the authenticated
    # state"; a client that sends it with a mailbox selected gets BAD.
    AUTHONLY = frozenset({AUTHENTICATED})

    COMMANDS = {
        "CAPABILITY": ANY,
        "NOOP": ANY,
        "LOGOUT": ANY,
        "ID": ANY,
        "STARTTLS": NOAUTH,
        "LOGIN": NOAUTH,
        "AUTHENTICATE": NOAUTH,
        "ENABLE": AUTHONLY,
        "SELECT": AUTH,
        "EXAMINE": AUTH,
        "CREATE": AUTH,
        "DELETE": AUTH,
        "RENAME": AUTH,
        "SUBSCRIBE": AUTH,
        "UNSUBSCRIBE": AUTH,
        "LIST": AUTH,
        "LSUB": AUTH,
        "STATUS": AUTH,
        "APPEND": AUTH,
        "NAMESPACE": AUTH,
        "IDLE": AUTH,
        "CHECK": SEL,
        "CLOSE": SEL,
        "UNSELECT": SEL,
        "EXPUNGE": SEL,
        "SEARCH": SEL,
        "SORT": SEL,
        "FETCH": SEL,
        "STORE": SEL,
        "COPY": SEL,
        "MOVE": SEL,
    }

    def dispatch(self, command: Command):
        states = self.COMMANDS.get(command.name)
        if states is None:
            self.write(R.tagged(command.tag, b"BAD", b"Unknown command"))
            self._badCommand()
            return None
        if self.state not in states:
            if self.state == NOT_AUTHENTICATED:
                text = b"Log in first"
            elif states is self.SEL:
                text = b"No mailbox selected"
            elif states is self.AUTHONLY:
                text = b"Not allowed with a mailbox selected"
            else:
                text = b"Already logged in"
            self.write(R.tagged(command.tag, b"BAD", text))
            return None
        handler = getattr(self, "do_" + command.name)
        if command.uid and self.view is not None:
            # RFC 3501 7.4.1: the UID commands may be told of expunges, so
            # they start from the folder as it is now.
            self.sendUpdates(expunges=True)
        try:
            result = handler(command)
        except Exception:
            # A bug in one command never drops the session.
            self.log.failure("imap: error in {command}", command=command.name)
            self.write(R.tagged(command.tag, b"NO", b"Internal server error", R.SERVERBUG))
            return None
        if isinstance(result, defer.Deferred):
            result.addErrback(self._commandError, command).addCallback(lambda _: self._outputRoom())
            if command.name == "FETCH":
                # A FETCH mostly waits on the client reading what it
                # streams: the idle timer keeps running (reset as it
                # reads), so a client that stops reading is logged out.
                self.engine.wait(result, timed=True)
                return None
            return result
        return self._outputRoom()

    def _outputRoom(self) -> None:
        """
        When the client lets answers pile up unread beyond
        L{OUTPUT_BACKLOG} (pipelining without reading), hold the next
        commands until they drained (the engine also stops reading past its
        input bound), so the memory one session can make the server hold
        stays bounded.  The wait is on the client: the idle timer runs.
        """
        if self.closed or outputBacklog(self.transport) <= OUTPUT_BACKLOG:
            return None
        d = defer.Deferred()

        def check():
            if self.closed or outputBacklog(self.transport) <= OUTPUT_BACKLOG // 2:
                d.callback(None)
            else:
                self.factory.clock.callLater(0.1, check)

        self.factory.clock.callLater(0.1, check)
        self.engine.wait(d, timed=True)
        return None

    def _commandError(self, failure, command):
        if self.closed:
            return None
        from twisted_maillab.store.errors import StoreError

        if failure.check(StoreError):
            error = failure.value
            if error.imapCode == "SERVERBUG" or error.imapCode is None:
                self.log.failure("imap: store error in {command}", failure, command=command.name)
            self.write(R.tagged(command.tag, b"NO", error.message, (error.imapCode or "SERVERBUG").encode("ascii")))
            return None
        self.log.failure("imap: error in {command}", failure, command=command.name)
        self.write(R.tagged(command.tag, b"NO", b"Internal server error", R.SERVERBUG))
        return None

    def ok(self, command: Command, text: bytes | None = None, code: bytes | None = None, head: bytes = b"") -> None:
        """
        The tagged OK, after the untagged updates the command may carry
        (RFC 3501 7: EXPUNGE only where 7.4.1 allows), in one write with
        C{head}, the command's own last untagged responses: one C{send}
        for a STORE or SEARCH answer, not three.
        """
        updates = self.pendingUpdates(expunges=self.expungesAllowed(command))
        tagged = R.tagged(command.tag, b"OK", text or command.name.encode("ascii") + b" completed", code)
        self.write(head + updates + tagged)

    def no(self, command: Command, text: bytes, code: bytes | None = None) -> None:
        self.write(R.tagged(command.tag, b"NO", text, code))

    def bad(self, command: Command, text: bytes) -> None:
        self.write(R.tagged(command.tag, b"BAD", text))

    # -- capabilities ------------------------------------------------------

    def plaintextAllowed(self) -> bool:
        """
        RFC 3501 6.2.3 / RFC 2595 2.2: passwords only over TLS, loopback
        counting as private when C{plaintext_on_loopback} says so.
        """
        return lines.plaintextAllowed(self.transport, self.tls, onLoopback=self.factory.plaintextOnLoopback)

    def canStartTLS(self) -> bool:
        return self.factory.tlsContext is not None and not self.tls

    def capabilities(self) -> list[bytes]:
        caps = [b"IMAP4rev1", b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE"]
        if self.state == NOT_AUTHENTICATED:
            if self.canStartTLS():
                caps.append(b"STARTTLS")
            if self.plaintextAllowed():
                caps += [b"AUTH=" + m for m in self.factory.mechanisms]
            else:
                caps.append(b"LOGINDISABLED")
            return caps
        caps += [
            b"NAMESPACE",
            b"UNSELECT",
            b"UIDPLUS",
            b"MOVE",
            b"CHILDREN",
            b"SPECIAL-USE",
            b"CREATE-SPECIAL-USE",
            b"LIST-EXTENDED",
            b"LIST-STATUS",
            b"ESEARCH",
            b"SORT",
            b"MULTIAPPEND",
            b"BINARY",
            b"STATUS=SIZE",
            b"APPENDLIMIT=%d" % self.factory.appendLimit,
        ]
        return caps

    def do_CAPABILITY(self, command):
        self.write(R.capability(self.capabilities()))
        self.ok(command)

    def do_NOOP(self, command):
        # RFC 3501 6.1.2: the poll for updates.
        self.ok(command)

    def do_CHECK(self, command):
        # RFC 3501 6.4.1: every change is already on disk.
        self.ok(command)

    def do_LOGOUT(self, command):
        self.write(R.untaggedStatus(b"BYE", b"Logging out"))
        self.write(R.tagged(command.tag, b"OK", b"LOGOUT completed"))
        self.state = LOGOUT
        self.closeMailbox()
        self.engine.close()

    def do_ID(self, command):
        # RFC 2971
        self.write(R.idResponse(SERVER_ID))
        self.ok(command)

    def do_ENABLE(self, command):
        # RFC 5161: none of the extensions ENABLE can turn on
        # (CONDSTORE, QRESYNC, UTF8=ACCEPT) is offered, so none is enabled.
        self.write(R.enabledResponse(()))
        self.ok(command)

    # -- STARTTLS ------------------------------------------------------------

    def do_STARTTLS(self, command):
        # RFC 3501 6.2.1
        if not self.canStartTLS():
            return self.bad(command, b"TLS is already active" if self.tls else b"STARTTLS is not available")
        self.write(R.tagged(command.tag, b"OK", b"Begin TLS negotiation now"))
        # What the client pipelined after STARTTLS came in the clear and
        # may be a man in the middle's: discarded (RFC 3501 6.2.1).
        self.engine.startTLS(self.factory.tlsContext)
        self.assembler.discard()
        self.tls = True

    # -- LOGIN / AUTHENTICATE ----------------------------------------------

    def _refusePlaintext(self, command) -> bool:
        if self.plaintextAllowed():
            return False
        # RFC 3501 6.2.3 LOGINDISABLED; RFC 5530 PRIVACYREQUIRED
        self.no(command, b"Plaintext authentication disallowed on non-secure connections; use STARTTLS first",
                R.PRIVACYREQUIRED)
        return True

    def do_LOGIN(self, command):
        if self._refusePlaintext(command):
            return None
        args = command.args
        return self._login(command, UsernamePassword(args.username, args.password))

    def do_AUTHENTICATE(self, command):
        mechanism = command.args.mechanism.encode("ascii").upper()
        if mechanism not in self.factory.mechanisms:
            return self.no(command, b"Unsupported authentication mechanism", b"CANNOT")
        if self._refusePlaintext(command):
            return None
        exchange = lines.SASLExchange(self.engine, lambda c: b"+ " + c + CRLF, self.factory.mechanisms)
        initial = command.args.initialResponse
        # The parser decoded SASL-IR (RFC 4959); the exchange wants base64.
        if initial is not None:
            import base64

            initial = base64.b64encode(initial) if initial else b"="
        d = exchange.authenticate(mechanism, initial)

        def failed(failure):
            error = failure.trap(lines.SASLBadEncoding, lines.SASLCancelled, lines.SASLUnsupported)
            if error is lines.SASLCancelled:
                self.bad(command, b"Authentication cancelled")
            elif error is lines.SASLBadEncoding:
                self.bad(command, b"Invalid base64 data")
            else:
                self.no(command, b"Unsupported authentication mechanism", b"CANNOT")

        return d.addCallbacks(lambda credentials: self._login(command, credentials), failed)

    def _login(self, command, credentials):
        if self._portal is None:
            self.no(command, b"No authentication configured", R.UNAVAILABLE)
            return None
        d = defer.maybeDeferred(self._portal.login, credentials, None, IIMAPAccount)
        return d.addCallbacks(self._loggedIn, self._loginFailed, callbackArgs=(command,), errbackArgs=(command,))

    def _loginFailed(self, failure, command):
        if self.closed:
            return
        if failure.check(UnauthorizedLogin):
            self.no(command, b"Authentication failed", R.AUTHENTICATIONFAILED)
            self._authFailures += 1
            if self._authFailures >= MAX_AUTH_FAILURES:
                self.write(R.untaggedStatus(b"BYE", b"Too many failed logins"))
                self.engine.close()
            return
        if not failure.check(AuthenticationUnavailable):
            self.log.failure("imap: login error", failure)
        self.no(command, b"Authentication temporarily unavailable, try again later", R.UNAVAILABLE)

    def _loggedIn(self, result, command):
        interface, avatar, logout = result
        if self.closed:
            logout()
            return
        key = avatar.userKey
        if not self.factory.users.acquire(key, self.factory.maxConnectionsPerUser):
            logout()
            self.write(R.untaggedStatus(b"BYE", b"Too many connections for this user", R.LIMIT))
            self.no(command, b"Maximum number of connections for this user reached", R.LIMIT)
            self.engine.close()
            return
        self._userKey = key
        self.avatar = avatar
        self._logout = logout
        self.state = AUTHENTICATED
        # RFC 9051 5.4: at least 30 minutes once logged in.
        self.engine.setIdleTimeout(self.factory.idleTimeout)
        self.write(R.tagged(command.tag, b"OK", b"Logged in", R.codeCapability(self.capabilities())))

    # -- IDLE (RFC 2177) -------------------------------------------------------

    def do_IDLE(self, command):
        return defer.ensureDeferred(self._idle(command))

    async def _idle(self, command):
        self.write(R.continuation(b"idling"))
        self._idling = True
        # IDLE refreshes the autologout timer (clients re-IDLE every 29
        # minutes, RFC 2177 3).
        self.engine.resetTimeout()
        try:
            self.sendUpdates(expunges=True)
            while True:
                line = await self.engine.readLine()
                if isDone(line):
                    break
                # RFC 2177: only DONE ends IDLE (Twisted's server ends it
                # on any line).
                self.write(R.untaggedStatus(b"BAD", b"Expected DONE"))
        finally:
            self._idling = False
        self.ok(command, b"IDLE terminated")

    def changesArrived(self) -> None:
        """
        The selected folder changed: push it at once while IDLE.
        """
        if self._idling and not self._pushScheduled:
            # Once the folder's whole change is applied (it notifies per
            # kind: expunged, flags, added).
            self._pushScheduled = True
            self.factory.clock.callLater(0, self._push)

    _pushScheduled = False

    def _push(self):
        self._pushScheduled = False
        if not self._idling or self.closed:
            return
        if outputBacklog(self.transport) > PUSH_BACKLOG:
            # The client is not reading: try again later.
            self._pushScheduled = True
            self.factory.clock.callLater(1, self._push)
            return
        self.sendUpdates(expunges=True)


class IMAPFactory(Factory):
    """
    Builds L{IMAPServer}s.

    @param portal: the cred portal; its realm must serve L{IIMAPAccount}.
    @param tlsContext: the context STARTTLS uses, or L{None}.
    @param implicitTLS: the listener wraps connections in TLS (IMAPS).
    """

    protocol = IMAPServer
    noisy = False

    def __init__(
        self,
        portal,
        *,
        clock,
        store=None,
        tlsContext=None,
        implicitTLS: bool = False,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        loginTimeout: float = DEFAULT_LOGIN_TIMEOUT,
        maxLineLength: int = DEFAULT_MAX_LINE,
        appendLimit: int = DEFAULT_APPEND_LIMIT,
        maxConnectionsPerUser: int = 0,
        maxConnectionsPerAddress: int = 0,
        plaintextOnLoopback: bool = True,
        greeting: bytes = b"maillab IMAP4rev1 ready",
        mechanisms: dict | None = None,
        users: ConnectionCounter | None = None,
        addresses: ConnectionCounter | None = None,
        structures=None,
        headers=None,
    ):
        from twisted_maillab.imap.fetch import StructureCache
        from twisted_maillab.imap.headercache import HeaderCache

        self.portal = portal
        self.clock = clock
        self.store = store
        self.tlsContext = tlsContext
        self.implicitTLS = implicitTLS
        self.idleTimeout = idleTimeout
        self.loginTimeout = loginTimeout
        self.maxLineLength = maxLineLength
        self.appendLimit = appendLimit
        self.maxConnectionsPerUser = maxConnectionsPerUser
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.plaintextOnLoopback = plaintextOnLoopback
        self.greeting = greeting
        self.mechanisms = challengers() if mechanisms is None else mechanisms
        self.users = users if users is not None else ConnectionCounter()
        self.addresses = addresses if addresses is not None else ConnectionCounter()
        self.structures = structures if structures is not None else StructureCache()
        self.headers = headers if headers is not None else HeaderCache()
