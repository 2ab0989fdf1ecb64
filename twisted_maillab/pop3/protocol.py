"""
The POP3 server protocol: RFC 1939 (POP3), RFC 2449 (CAPA, response codes,
PIPELINING), RFC 2595 (STLS), RFC 3206 (SYS and AUTH codes), RFC 5034 (SASL
AUTH with initial response).

Why one class of our own instead of a subclass of
L{twisted.mail.pop3.POP3}: almost every part of that class needs replacing.
Its CAPA advertises C{PIPELINE} (no client knows it)
and three joke capabilities; it has no STLS; its AUTH can only do
CRAM-MD5-shaped mechanisms, so PLAIN and LOGIN cannot work, and has no
initial response; APOP compares str with bytes on Python 3 and never
succeeds; STAT and LIST count deleted messages; an error whose arguments are
str raises TypeError inside the error path and drops the connection
(C{DELE abc}); C{RETR} converts LF to CRLF with C{replace} (so CRLF-stored
mail goes out as CR CR LF) and does not dot-stuff a leading dot on the first
line; its C{IMailbox} is synchronous and deletes immediately.  Keeping the
class would mean overriding every command and its line parser; what is kept
from Twisted is the transport and the cred portal.  The command machinery
(order, line limit, back-pressure, STLS discard, idle timer, the SASL
exchange) is the suite's L{twisted_maillab.lines.CommandEngine}.

Protocol rules implemented here, each tagged at its line:

  - greeting, states AUTHORIZATION / TRANSACTION / UPDATE (RFC 1939 3);
  - USER/PASS (RFC 1939 7), AUTH with SASL PLAIN and LOGIN and the initial
    response (RFC 5034 4), both only on TLS or loopback (RFC 2595 2.2);
  - STLS with the pipelined-input discard (RFC 2595 4, CVE-2011-0411 class);
  - CAPA exactly C{TOP UIDL RESP-CODES AUTH-RESP-CODE PIPELINING USER
    SASL PLAIN LOGIN STLS}, each only where usable (RFC 2449 5, 6);
  - response codes C{[AUTH]}, C{[SYS/TEMP]}, C{[SYS/PERM]}, C{[IN-USE]}
    (RFC 2449 8, RFC 3206 4, 5; RFC 5034 6 AUTH-RESP-CODE);
  - one session per maildrop (RFC 1939 8 "exclusive-access lock");
  - deletions only at QUIT in the UPDATE state; timeout and dropped
    connection delete nothing (RFC 1939 3, 6);
  - RETR/TOP streamed with CRLF and dot-stuffing (RFC 1939 3) through a
    push producer, never holding the whole message;
  - idle timeout of at least 10 minutes (RFC 1939 3) and a bounded command
    line.
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.auth.pool import AuthenticationUnavailable
from twisted_maillab.auth.sasl import challengers
from twisted_maillab import lines
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.sendnow import noDelay
from twisted_maillab.pop3.interfaces import IPOP3Maildrop
from twisted_maillab.pop3.streaming import CRLF, MessageEncoder, _MessageStreamer
from twisted_maillab.store.errors import MessageVanished

__all__ = ["POP3Server", "POP3Factory", "SessionLocks", "MessageEncoder"]

# RFC 1939 3: "an inactivity autologout timer ... MUST be of at least 10
# minutes' duration".
MINIMUM_TIMEOUT = 600.0
DEFAULT_TIMEOUT = 600.0

# RFC 2449 4: command lines are at most 255 octets, but RFC 5034 4 lets an
# AUTH initial response and the SASL responses be longer ("MUST NOT limit
# ... to less than ... 255 octets" is the floor), so the default leaves
# room for a PLAIN response with three 255-octet fields in base64.
DEFAULT_MAX_LINE = 2048

# A client that keeps sending unknown or invalid commands is disconnected,
# as Dovecot does after 20 (pop3-client "Too many bad commands").
MAX_BAD_COMMANDS = 20

# Failed logins on one connection before it is closed; the portal's
# throttling still counts every attempt per address.
MAX_AUTH_FAILURES = 3

# RFC 1939 7: UIDL values are 1..70 characters of 0x21..0x7E; usernames
# are bounded so a client cannot make us carry a huge one.
_MAX_USERNAME = 255

AUTHORIZATION = "AUTHORIZATION"
TRANSACTION = "TRANSACTION"
UPDATE = "UPDATE"


class SessionLocks:
    """
    The set of maildrops that have a POP3 session (RFC 1939 8: a server
    "SHOULD" acquire an exclusive-access lock on the maildrop; RFC 2449 8.1.2
    names the refusal C{[IN-USE]}).  One object is shared by every POP3 and
    POP3S listener of a server.
    """

    def __init__(self):
        self._held: set = set()

    def acquire(self, key) -> bool:
        """
        @return: C{True} if the lock was free and is now held.
        """
        if key in self._held:
            return False
        self._held.add(key)
        return True

    def release(self, key) -> None:
        self._held.discard(key)

    def __contains__(self, key) -> bool:
        return key in self._held


def _isTemporary(failure) -> bool:
    return bool(getattr(failure.value, "temporary", True))


def _continuation(challenge: bytes) -> bytes:
    # RFC 5034 4: a server challenge is "+ " and base64.
    return b"+ " + challenge + CRLF


@implementer(lines.ILineHandler)
class POP3Server(Protocol):
    """
    One POP3 connection, on a L{lines.CommandEngine} (command order, line limit,
    back-pressure, STLS discard, the idle timeout).

    @ivar factory: the L{POP3Factory} (portal, TLS context, locks, limits).
    @ivar state: C{"AUTHORIZATION"}, C{"TRANSACTION"} or C{"UPDATE"}.
    @ivar tls: whether the connection is encrypted (POP3S, or after STLS).
    @ivar engine: the connection's L{lines.CommandEngine}.
    """

    log = Logger()
    engine: lines.CommandEngine | None = None

    def __init__(self):
        self.state = AUTHORIZATION
        self.tls = False
        self.maildrop = None
        self.messages = ()
        self.deleted: set[int] = set()
        self.seen: set[int] = set()
        self._user: bytes | None = None
        self._badCommands = 0
        self._authFailures = 0
        self._lockKey = None
        self._streamer = None
        self._portal = None
        self._logout = None
        self._closed = False

    # -- connection --------------------------------------------------

    def connectionMade(self):
        factory = self.factory
        self.tls = bool(factory.implicitTLS)
        # maxLineLength does not count the CRLF; the engine's limit does.
        self.engine = lines.CommandEngine(
            self, clock=factory.clock, maxLine=factory.maxLineLength + 2, idleTimeout=factory.timeout
        )
        self.engine.makeConnection(self.transport)
        noDelay(self.transport)
        portal = factory.portal
        if IMailPortal.providedBy(portal):
            # The auth package's MailPortal: the client address and the
            # protocol name go with every login (throttling, fail2ban line).
            portal = portal.forConnection(self.transport.getPeer(), "pop3")
        self._portal = portal
        self.sendLine(b"+OK " + factory.greeting)

    def connectionLost(self, reason=None):
        # RFC 1939 6: a session that ends without QUIT (dropped, timed out)
        # does not enter UPDATE, so nothing is deleted.
        self._closed = True
        if self.engine is not None:
            self.engine.connectionLost()
        self._endSession()

    def timedOut(self):
        # RFC 1939 3: the autologout timer ends the session without UPDATE.
        self.sendLine(b"-ERR [SYS/PERM] Disconnected for inactivity.")
        self.engine.close()

    def _endSession(self):
        self.maildrop = None
        logout, self._logout = self._logout, None
        key, self._lockKey = self._lockKey, None
        if key is not None:
            self.factory.locks.release(key)
        if logout is not None:
            try:
                logout()
            except Exception:
                self.log.failure("pop3: maildrop logout failed")

    def sendLine(self, line: bytes):
        self.engine.write(line + CRLF)

    def _ok(self, text: bytes = b""):
        self.sendLine(b"+OK " + text if text else b"+OK")

    def _err(self, text: bytes):
        self.sendLine(b"-ERR " + text)

    # -- input (lines.ILineHandler) ----------------------------------

    def dataReceived(self, data: bytes):
        self.engine.dataReceived(data)

    def lineTooLong(self):
        self._err(b"Command line too long.")
        self._badCommand()

    def _badCommand(self):
        self._badCommands += 1
        if self._badCommands >= MAX_BAD_COMMANDS:
            self._err(b"Too many bad commands, closing.")
            self.transport.loseConnection()

    def commandFailed(self, failure):
        # A bug in a command's asynchronous part: answer it, keep the
        # session (and never leave the client waiting for a reply).
        self.log.failure("pop3: command failed", failure)
        if not self._closed:
            self._err(b"[SYS/TEMP] Internal server error.")

    def lineReceived(self, line: bytes):
        """
        One command.  The engine holds the next one while the L{Deferred}
        returned is pending, so replies go out in command order (RFC 2449
        6.6 PIPELINING).
        """
        command, _, argument = line.partition(b" ")
        handler = getattr(self, "do_" + command.upper().decode("ascii", "replace"), None)
        allowed = {
            AUTHORIZATION: self.AUTHORIZATION_COMMANDS,
            TRANSACTION: self.TRANSACTION_COMMANDS,
        }.get(self.state, ())
        name = command.upper()
        if handler is None or name not in allowed:
            if name in self.AUTHORIZATION_COMMANDS + self.TRANSACTION_COMMANDS:
                self._err(b"Command not valid in this state.")
            else:
                self._err(b"Unknown command.")
            return self._badCommand()
        try:
            result = handler(argument)
        except Exception:
            # Never drop the connection for a bug in one command (the
            # failure Twisted's POP3 has with str exception arguments).
            self.log.failure("pop3: error in {command}", command=name)
            self._err(b"[SYS/TEMP] Internal server error.")
            return None
        if not isinstance(result, defer.Deferred):
            return None
        if name in (b"RETR", b"TOP"):
            # Streaming waits on the client reading: RFC 1939 3's
            # autologout timer keeps running (reset as it reads).
            self.engine.wait(result, timed=True)
            return None
        return result

    AUTHORIZATION_COMMANDS = (b"CAPA", b"QUIT", b"NOOP", b"USER", b"PASS", b"AUTH", b"STLS", b"APOP")
    TRANSACTION_COMMANDS = (
        b"CAPA", b"QUIT", b"NOOP", b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET",
    )

    # -- capabilities ----------------------------------------------------

    def canStartTLS(self) -> bool:
        return self.factory.tlsContext is not None and not self.tls

    def plaintextAllowed(self) -> bool:
        """
        RFC 2595 2.2: plaintext passwords only over TLS; loopback and UNIX
        sockets count as private.
        """
        return lines.plaintextAllowed(self.transport, self.tls, onLoopback=self.factory.plaintextOnLoopback)

    def capabilities(self) -> list[bytes]:
        """
        The CAPA lines.  RFC 2449 5: capabilities available in the
        AUTHORIZATION state are announced in both states, so the list
        depends on the connection, not on the state.
        """
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.plaintextAllowed():
            caps += [b"USER", b" ".join([b"SASL", *self.factory.mechanisms])]
        if self.canStartTLS():
            caps.append(b"STLS")
        return caps

    def do_CAPA(self, argument):
        # RFC 2449 5
        self._ok(b"Capability list follows")
        self._multiline(self.capabilities())

    def _multiline(self, items):
        self.engine.write(b"".join(item + CRLF for item in items) + b"." + CRLF)

    def do_NOOP(self, argument):
        self._ok()

    # -- STLS --------------------------------------------------------------

    def do_STLS(self, argument):
        # RFC 2595 4
        if self.tls:
            return self._err(b"TLS is already active.")
        if self.factory.tlsContext is None:
            return self._err(b"STLS is not available.")
        if argument:
            return self._err(b"STLS takes no argument.")
        self._user = None
        self._ok(b"Begin TLS negotiation now.")
        # Anything the client pipelined after STLS was sent in the clear
        # and could have been injected by a man in the middle: discard it
        # (the STARTTLS injection class, CVE-2011-0411).
        self.engine.startTLS(self.factory.tlsContext)
        self.tls = True

    # -- USER / PASS -------------------------------------------------------

    def _refusePlaintext(self) -> bool:
        if self.plaintextAllowed():
            return False
        # RFC 3206 4 [AUTH]; RFC 2595 2.2: tell the client what to do.
        if self.canStartTLS():
            self._err(b"[AUTH] Plaintext authentication disallowed on non-secure connections; use STLS first.")
        else:
            self._err(b"[AUTH] Plaintext authentication disallowed on non-secure connections.")
        return True

    def do_USER(self, argument):
        # RFC 1939 7 USER
        if self._refusePlaintext():
            return
        if not argument or len(argument) > _MAX_USERNAME:
            return self._err(b"Invalid user name.")
        self._user = argument
        self._ok()

    def do_PASS(self, argument):
        # RFC 1939 7 PASS; the password is the rest of the line, spaces
        # included (RFC 1939 says the argument "may contain spaces" in
        # practice; every client sends it verbatim).
        if self._refusePlaintext():
            return
        if self._user is None:
            return self._err(b"USER first.")
        user, self._user = self._user, None
        from twisted.cred.credentials import UsernamePassword

        return self._login(UsernamePassword(user, argument))

    def do_APOP(self, argument):
        # RFC 1939 7 APOP needs the plaintext secret on the server; our
        # checkers hold only hashes, so it is not offered (no timestamp in
        # the greeting, RFC 1939 7).
        self._err(b"APOP is not supported.")
        self._badCommand()

    # -- AUTH (RFC 5034) ---------------------------------------------------

    def do_AUTH(self, argument):
        if not argument:
            # Pre-RFC 5034 clients (RFC 1734 era, Outlook) send a bare AUTH
            # to list mechanisms; answer as Dovecot does.
            self._ok()
            self._multiline(list(self.factory.mechanisms) if self.plaintextAllowed() else [])
            return
        mechanism, _, initial = argument.partition(b" ")
        mechanism = mechanism.upper()
        if mechanism not in self.factory.mechanisms:
            return self._err(b"Unsupported authentication mechanism.")
        if self._refusePlaintext():
            return
        exchange = lines.SASLExchange(self.engine, _continuation, self.factory.mechanisms)
        # RFC 5034 4: the initial response ("=" for an empty one).
        d = exchange.authenticate(mechanism, initial or None)
        return d.addCallbacks(self._login, self._saslFailed)

    def _saslFailed(self, failure):
        error = failure.trap(lines.SASLBadEncoding, lines.SASLCancelled, lines.SASLUnsupported)
        if error is lines.SASLCancelled:
            # RFC 5034 4: the client cancels the exchange.
            self._err(b"Authentication aborted.")
        elif error is lines.SASLBadEncoding:
            self._err(b"Invalid base64 data in continued response.")
        else:
            self._err(b"Unsupported authentication mechanism.")

    # -- login and the session lock ----------------------------------------

    def _login(self, credentials):
        if self._portal is None:
            self._err(b"[SYS/PERM] No authentication configured.")
            return None
        d = defer.maybeDeferred(self._portal.login, credentials, None, IPOP3Maildrop)
        d.addCallbacks(self._loggedIn, self._loginFailed)
        return d

    def _loginFailed(self, failure):
        if self._closed:
            return
        if failure.check(UnauthorizedLogin):
            # RFC 3206 5 / RFC 5034 6: [AUTH] means the credentials.
            self._err(b"[AUTH] Authentication failed.")
            self._authFailures += 1
            if self._authFailures >= MAX_AUTH_FAILURES:
                self.transport.loseConnection()
            return
        if failure.check(NotImplementedError):
            self.log.failure("pop3: realm has no POP3 avatar", failure)
            self._err(b"[SYS/PERM] POP3 is not available for this account.")
            return
        # AuthenticationUnavailable (the check queue is full) and any other
        # error: the server's problem, retry later (RFC 3206 4 SYS/TEMP).
        if not failure.check(AuthenticationUnavailable):
            self.log.failure("pop3: login error", failure)
        self._err(b"[SYS/TEMP] Authentication temporarily unavailable, try again later.")

    def _loggedIn(self, result):
        interface, maildrop, logout = result
        if self._closed:
            logout()
            return
        key = maildrop.lockKey
        if not self.factory.locks.acquire(key):
            logout()
            # RFC 2449 8.1.2 IN-USE
            self._err(b"[IN-USE] Mailbox is locked by another POP3 session.")
            return
        self._lockKey = key
        self.maildrop = maildrop
        self._logout = logout
        d = defer.maybeDeferred(maildrop.open)

        def opened(messages):
            if self._closed:
                return
            messages = tuple(messages)
            count = len(messages)
            size = sum(info.size for info in messages)
            self.messages = messages
            self.deleted = set()
            self.seen = set()
            self.state = TRANSACTION
            self._ok(b"Logged in, %d messages (%d octets)." % (count, size))

        def failed(failure):
            self.log.failure("pop3: cannot open the maildrop", failure)
            self._endSession()
            if not self._closed:
                code = b"[SYS/TEMP]" if _isTemporary(failure) else b"[SYS/PERM]"
                self._err(code + b" Cannot open the mailbox.")

        # failed() also catches a bad snapshot raising in opened(): the
        # lock is released and the client may try again.
        return d.addCallback(opened).addErrback(failed)

    # -- TRANSACTION -------------------------------------------------------

    def _stat(self):
        count = size = 0
        for index, info in enumerate(self.messages):
            if index not in self.deleted:
                count += 1
                size += info.size
        return count, size

    def _message(self, argument: bytes):
        """
        The 0-based index for a message-number argument, or L{None} after
        sending the error (RFC 1939 5: deleted messages are not valid).
        """
        text = argument.strip()
        if not text.isdigit() or len(text) > 10:
            self._err(b"Invalid message number.")
            return None
        index = int(text) - 1
        if index < 0 or index >= len(self.messages):
            self._err(b"No such message.")
            return None
        if index in self.deleted:
            self._err(b"Message %d is deleted." % (index + 1))
            return None
        return index

    def do_STAT(self, argument):
        # RFC 1939 5 STAT: deleted messages are not counted.
        self._ok(b"%d %d" % self._stat())

    def do_LIST(self, argument):
        # RFC 1939 5 LIST
        if argument.strip():
            index = self._message(argument)
            if index is not None:
                self._ok(b"%d %d" % (index + 1, self.messages[index].size))
            return
        count, size = self._stat()
        self._ok(b"%d messages (%d octets)" % (count, size))
        self._multiline(
            b"%d %d" % (i + 1, info.size)
            for i, info in enumerate(self.messages)
            if i not in self.deleted
        )

    def do_UIDL(self, argument):
        # RFC 1939 7 UIDL
        if argument.strip():
            index = self._message(argument)
            if index is not None:
                self._ok(b"%d %s" % (index + 1, self.messages[index].uidl))
            return
        self._ok()
        self._multiline(
            b"%d %s" % (i + 1, info.uidl)
            for i, info in enumerate(self.messages)
            if i not in self.deleted
        )

    def do_DELE(self, argument):
        # RFC 1939 5 DELE: only marked here; removed at QUIT.
        index = self._message(argument)
        if index is None:
            return
        self.deleted.add(index)
        self._ok(b"Marked to be deleted.")

    def do_RSET(self, argument):
        # RFC 1939 5 RSET
        self.deleted.clear()
        count, size = self._stat()
        self._ok(b"%d messages (%d octets)" % (count, size))

    def do_RETR(self, argument):
        # RFC 1939 5 RETR
        index = self._message(argument)
        if index is None:
            return None
        return self._send(index, None, b"%d octets" % self.messages[index].size)

    def do_TOP(self, argument):
        # RFC 1939 7 TOP msg n
        parts = argument.split()
        if len(parts) != 2 or not parts[1].isdigit() or len(parts[1]) > 10:
            return self._err(b"Usage: TOP <message> <lines>.")
        index = self._message(parts[0])
        if index is None:
            return None
        return self._send(index, int(parts[1]), b"Top of message follows.")

    def _send(self, index: int, bodyLines, okText: bytes):
        d = defer.maybeDeferred(self.maildrop.openMessage, index)

        def opened(reader):
            if self._closed:
                reader.close()
                return
            streamer = self._streamer = _MessageStreamer(
                self.transport,
                reader,
                MessageEncoder(bodyLines),
                self.engine.resetTimeout,
                prefix=b"+OK " + okText + CRLF,
            )
            return streamer.start().addCallbacks(sent, broken, errbackArgs=(streamer,))

        def sent(_):
            self._streamer = None
            if bodyLines is None and self.maildrop is not None:
                self.seen.add(index)
                defer.maybeDeferred(self.maildrop.retrieved, index).addErrback(
                    lambda f: self.log.failure("pop3: moving a retrieved message to cur/ failed", f)
                )

        def broken(failure, streamer):
            self._streamer = None
            if failure.check(ConnectionError) or self._closed:
                return  # the client went away mid-message
            if not streamer.started:
                # Nothing sent yet: an ordinary error reply.
                return cannotOpen(failure)
            # The +OK is out and part of the message with it: there is no
            # way to report an error inside a multi-line reply, so the
            # connection is closed (without UPDATE: nothing is deleted).
            self.log.failure("pop3: reading message {n} failed", failure, n=index + 1)
            self.transport.loseConnection()

        def cannotOpen(failure):
            if self._closed:
                return
            if failure.check(MessageVanished):
                self._err(b"Message %d was removed by another program." % (index + 1))
                return
            self.log.failure("pop3: opening message {n} failed", failure, n=index + 1)
            code = b"[SYS/TEMP]" if _isTemporary(failure) else b"[SYS/PERM]"
            self._err(code + b" Cannot read the message.")

        return d.addCallbacks(opened, cannotOpen)

    # -- QUIT and UPDATE -----------------------------------------------------

    def do_QUIT(self, argument):
        if self.state != TRANSACTION:
            self._ok(b"Logging out.")
            self.transport.loseConnection()
            return None
        # RFC 1939 6: the UPDATE state, the only place deletions happen.
        self.state = UPDATE
        d = defer.maybeDeferred(
            self.maildrop.commit, frozenset(self.deleted), frozenset(self.seen)
        )

        def done(_):
            self._ok(b"Logging out, %d messages deleted." % len(self.deleted))

        def failed(failure):
            self.log.failure("pop3: UPDATE failed", failure)
            # RFC 1939 6 "-ERR some deleted messages not removed"
            self._err(b"[SYS/TEMP] Some deleted messages not removed.")

        def close(_):
            self._endSession()
            self.transport.loseConnection()

        return d.addCallbacks(done, failed).addBoth(close)


class POP3Factory(Factory):
    """
    Builds L{POP3Server}s.

    @param portal: the cred portal (C{MailPortal}); its realm must serve
        L{IPOP3Maildrop}.
    @param tlsContext: the context STLS uses, or L{None} (STLS not offered).
    @param implicitTLS: the listener wraps connections in TLS (POP3S).
    @param locks: the L{SessionLocks} shared by every POP3 listener.
    @param clock: the reactor or a L{task.Clock}, for the idle timeout.
    @param timeout: idle seconds before autologout.
    @param maxLineLength: longest command line accepted, without CRLF.
    """

    protocol = POP3Server
    noisy = False

    def __init__(
        self,
        portal,
        *,
        clock,
        tlsContext=None,
        implicitTLS: bool = False,
        locks: SessionLocks | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        maxLineLength: int = DEFAULT_MAX_LINE,
        greeting: bytes = b"maillab POP3 ready.",
        plaintextOnLoopback: bool = True,
        mechanisms: dict | None = None,
    ):
        self.portal = portal
        self.clock = clock
        self.tlsContext = tlsContext
        self.implicitTLS = implicitTLS
        self.locks = locks if locks is not None else SessionLocks()
        self.timeout = timeout
        self.maxLineLength = maxLineLength
        self.greeting = greeting
        self.plaintextOnLoopback = plaintextOnLoopback
        self.mechanisms = challengers() if mechanisms is None else mechanisms
