"""
The ESMTP server protocol (RFC 5321 with RFC 1870, 2034, 2920, 3207, 3461,
4954, 6152, 6531).

Why a protocol class of our own rather than a subclass of
C{twisted.mail.smtp.ESMTP}: Twisted's server is a
C{LineOnlyReceiver} that

  - executes pipelined commands while an asynchronous C{validateTo} is
    still running (out-of-order replies, then body lines run as commands);
  - buffers every line up to 16 KiB and, after an over-long body line,
    switches back to command mode and runs the rest of the body as
    commands (smuggling);
  - hands the message to C{IMessage.lineReceived} one line at a time and
    can only refuse an oversized body after reading it all;
  - keeps lines split before STARTTLS (CVE-2011-0411 injection) and keeps
    HELO/AUTH state across TLS (RFC 3207 4.2);
  - parses no MAIL/RCPT parameters and has no enhanced status codes.

Fixing each of those means replacing C{dataReceived}, the line splitter,
the DATA state and every command handler, so this module is one
C{Protocol} on L{twisted_maillab.lines.CommandEngine}: input is buffered
while a command's L{Deferred} is outstanding and processed in order when
it fires, so replies always come in command order (RFC 2920 3.1); DATA is
the engine's raw mode, the message text decoded by
L{twisted_maillab.smtp.data.MessageText}; AUTH is the engine's
L{twisted_maillab.lines.SASLExchange}.  Twisted's seams are
kept: the cred portal (SASL credentials from L{twisted_maillab.auth.sasl},
avatars asked for L{IMessageDelivery}), and delivery through
L{twisted_maillab.interfaces.ISMTPDelivery}, the streaming counterpart of
C{IMessageDelivery}/C{IMessage}.

Its length (past 800 lines) is one command handler per SMTP verb over one
session state; the message text, the envelope grammar, the session and
settings records and the missing-header rules are already in
L{twisted_maillab.smtp.data}, L{twisted_maillab.smtp.envelope},
L{twisted_maillab.smtp.session} and L{twisted_maillab.smtp.headers}.
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.mail.smtp import IMessageDelivery
from zope.interface import implementer

from twisted_maillab.auth.sasl import challengers
from twisted_maillab import lines
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.metrics import NULL_METRICS
from twisted_maillab.smtp.data import BARE_NEWLINE, MessageText
from twisted_maillab.smtp.envelope import Recipient, SMTPReply, parseMail, parseMailbox, parseRcpt
from twisted_maillab.smtp.session import Envelope, Session, Settings

__all__ = ["Settings", "Session", "Envelope", "ESMTPServer", "SMTPServerFactory"]

log = Logger(namespace="twisted_maillab.smtp")

# RFC 5321 4.5.3.1.4: 512 octets for a command line including CRLF.
COMMAND_LINE_LIMIT = 512
# RFC 3461 4 / RFC 1870: MAIL and RCPT may grow by their parameters
# (ORCPT up to 500, ENVID 100, SIZE and friends); RFC 4954 4: an AUTH
# command or response line may be 12288 octets.
MAIL_RCPT_LINE_LIMIT = 512 + 500 + 100
AUTH_LINE_LIMIT = 12288
# Unprocessed pipelined input kept before the transport is paused.
INPUT_HIGH_WATER = 64 * 1024
# Postfix's smtpd_hard_error_limit.
ERROR_LIMIT = 20
# The longest the greeting waits for the client's name (then "unknown").
NAME_LOOKUP_TIMEOUT = 10.0
# How many writes of message text (WRITE_CHUNK octets each) may be
# pending before the client is paused (memory per session: their sum).
WRITES_IN_FLIGHT = 4

COMMAND, DATA, AUTH = "COMMAND", "DATA", "AUTH"


def _continuation(challenge: bytes) -> bytes:
    # RFC 4954 4: a server challenge is "334 " and base64.
    return b"334 " + challenge + b"\r\n"


@implementer(IHandshakeListener, lines.ILineHandler)
class ESMTPServer(Protocol):
    """
    One SMTP connection.  See the module docstring for why this is not a
    C{twisted.mail.smtp.ESMTP} subclass.

    @ivar engine: the connection's L{lines.CommandEngine} (ordering, line limit,
        DATA as raw mode, STARTTLS discard, idle timeout).
    """

    engine: lines.CommandEngine | None = None

    def __init__(self, factory: "SMTPServerFactory"):
        self.factory = factory
        self.settings = factory.settings
        self.clock = factory.clock
        self._mode = COMMAND  # for the timeout log line
        self._writing = False
        self._inFlight = 0
        self._counted = False
        self._errors = 0
        self._commandCounts: dict[str, int] = {}  # for the disconnect line
        self.envelope: Envelope | None = None
        self.session: Session | None = None
        self._message = None
        self._logout = None
        self._text: MessageText | None = None  # in DATA

    @property
    def _closed(self) -> bool:
        return self.engine is None or self.engine.closed

    # -- connection -------------------------------------------------------

    def connectionMade(self):
        # The line limit is the longest any command may have (AUTH's);
        # each command's own limit is checked in _command.
        self.engine = lines.CommandEngine(self, clock=self.clock, maxLine=AUTH_LINE_LIMIT, highWater=INPUT_HIGH_WATER)
        self.engine.makeConnection(self.transport)
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "unknown").split("%", 1)[0]
        if host.lower().startswith("::ffff:") and "." in host:
            # An IPv4 client on a dual-stack socket: named as IPv4, as
            # Postfix does (mynetworks matches both forms anyway).
            host = host[7:]
        port = getattr(peer, "port", 0)
        self.session = Session(host, port, self.settings.hostname, self.settings.listener)
        if ISSLTransport.providedBy(self.transport):
            # Implicit TLS (submissions, RFC 8314).
            self._markTLS()
        if not self.factory.connectionOpened(host):
            log.warn(
                "{listener}: too many connections from {host}",
                listener=self.settings.listener,
                host=host,
            )
            self._reply(421, "4.7.0", f"{self.settings.hostname} Error: too many connections from {host}")
            self.engine.close()
            return
        self._counted = True
        # No "connect from" line: one log event costs the reactor thread
        # as much as parsing a whole command (a third of its time went to
        # logging in the SMTP bench).  The disconnect line says who it was
        # and what they did, as Postfix's does.
        self.engine.setIdleTimeout(self.settings.commandTimeout)
        if self.settings.peernameLookup and self.factory.resolveName is not None:
            # As Postfix's smtpd: the client's name is settled before the
            # greeting, so every log line and Received: of the session
            # name it the same way.  Input is held until then.
            lookup = self.factory.resolveName(host)
            timer = self.clock.callLater(NAME_LOOKUP_TIMEOUT, lookup.cancel)
            lookup.addErrback(lambda f: None)
            lookup.addCallback(self._greet, timer)
            self.engine.wait(lookup)
        else:
            self._greet(None)

    def _greet(self, name, timer=None):
        if timer is not None and timer.active():
            timer.cancel()
        if self._closed:
            return
        self.session.reverseName = name or None
        self._reply(220, None, self.settings.banner)

    def handshakeCompleted(self):
        """
        L{twisted.internet.interfaces.IHandshakeListener}: the TLS handshake
        (STARTTLS or implicit) is done; log it as Postfix's smtpd does.
        """
        if self._closed or self.session is None:
            return
        self._markTLS()
        version, cipher, bits = self.session.tlsInfo()
        log.info(
            "{listener}: Anonymous TLS connection established from {client}: "
            "{version} with cipher {cipher} ({bits}/{bits} bits)",
            listener=self.settings.listener,
            client=self.session.describe(),
            version=version,
            cipher=cipher,
            bits=bits,
        )

    def _markTLS(self):
        self.session.tls = True
        handle = None
        try:
            handle = self.transport.getHandle()
        except Exception:
            pass
        self.session.tlsHandle = handle

    def connectionLost(self, reason):
        if self.engine is not None:
            self.engine.connectionLost()
        self._abortMessage()
        if self._counted:
            self._counted = False
            self.factory.connectionClosed(self.session.host)
            counts = self._commandCounts
            log.info(
                "{listener}: disconnect from {client} {commands}",
                listener=self.settings.listener,
                client=self.session.describe(),
                commands=" ".join(f"{verb}={n}" for verb, n in counts.items())
                + f" commands={sum(counts.values())}",
            )
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    def dataReceived(self, data: bytes):
        self.engine.dataReceived(data)

    # -- lines.ILineHandler ---------------------------------------------------------

    def lineReceived(self, line: bytes):
        return self._command(line)

    def lineTooLong(self):
        # Never resynchronise inside an over-long line: what follows could
        # be body text posing as commands.  Reply and hang up (RFC 5321
        # 4.5.3.1.4 allows closing; Postfix does the same).
        self._reply(500, "5.5.2", "Error: line too long")
        self._close()

    def timedOut(self):
        # The engine calls this only when we owe the client nothing (no
        # command pending, no store write holding input).
        log.info(
            "{listener}: timeout after {mode} from {client}",
            listener=self.settings.listener,
            mode=self._mode,
            client=self.session.describe(),
        )
        self._reply(421, "4.4.2", f"{self.settings.hostname} Error: timeout exceeded")
        self._close()

    def commandFailed(self, failure):
        log.failure("SMTP command handler failed", failure)
        if not self._closed:
            self._reply(451, "4.3.0", "Error: internal error")

    # -- output ------------------------------------------------------------

    def _reply(self, code: int, enhanced: str | None, text: str | list[str]):
        """
        Send a reply; every reply but the greeting carries its enhanced
        status code (RFC 2034 3: codes on every line of the reply).
        """
        texts = text if isinstance(text, list) else [text]
        out = []
        for index, line in enumerate(texts):
            sep = "-" if index < len(texts) - 1 else " "
            body = f"{enhanced} {line}" if enhanced else line
            out.append(f"{code}{sep}{body}\r\n")
        self.engine.write("".join(out).encode("utf-8", "replace"))

    def _replyError(self, error: SMTPReply):
        self._reply(error.code, error.enhanced, error.text)

    def _close(self):
        self._abortMessage()
        self.engine.close()

    # -- commands ------------------------------------------------------------

    def _command(self, line: bytes):
        verb, _, rest = line.partition(b" ")
        name = verb.upper().decode("ascii", "replace")
        limit = COMMAND_LINE_LIMIT
        if name in ("MAIL", "RCPT"):
            limit = MAIL_RCPT_LINE_LIMIT
        elif name == "AUTH":
            limit = AUTH_LINE_LIMIT
        if len(line) + 2 > limit:
            self._reply(500, "5.5.2", "Error: line too long")
            self._error()
            return None
        handler = getattr(self, "do_" + name, None) if name.isalpha() else None
        verb = name.lower() if handler is not None else "unknown"
        self._commandCounts[verb] = self._commandCounts.get(verb, 0) + 1
        if handler is None:
            self._reply(502 if name in ("EXPN", "TURN", "BDAT") else 500, "5.5.2", "Error: command not recognized")
            self._error()
            return None
        if (
            self.settings.tlsRequired
            and not self.session.tls
            and name not in ("EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "QUIT", "HELP")
        ):
            self._reply(530, "5.7.0", "Must issue a STARTTLS command first")
            self._error()
            return None
        try:
            result = handler(rest.strip(b" "))
        except SMTPReply as e:
            self._replyError(e)
            if e.code >= 500:
                self._error()
            return None
        return result if isinstance(result, defer.Deferred) else None

    def _error(self):
        # Postfix's smtpd_hard_error_limit: a client that keeps erring is
        # not an MTA; hang up.
        self._errors += 1
        if self._errors >= ERROR_LIMIT and not self._closed:
            self._reply(421, "4.7.0", f"{self.settings.hostname} Error: too many errors")
            self._close()

    def _resetTransaction(self):
        self._abortMessage()
        self.envelope = None
        self.session.utf8 = False

    # -- commands ----------------------------------------------------------

    def extensions(self) -> list[str]:
        """
        The EHLO keywords, in the seed's Postfix order.
        """
        # RFC 1870 4: "SIZE 0" announces no fixed limit (message_size_limit = 0).
        ext = ["PIPELINING", f"SIZE {self.settings.sizeLimit}"]
        if self.settings.vrfy != "disabled":
            ext.append("VRFY")
        ext.append("ETRN")
        if self.factory.tlsContext is not None and not self.session.tls:
            ext.append("STARTTLS")
        mechanisms = self._mechanisms()
        if mechanisms:
            ext.append("AUTH " + " ".join(mechanisms))
        ext += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]
        return ext

    def _extensionNames(self) -> frozenset:
        if not self.session.esmtp:
            return frozenset()
        return frozenset(item.split(" ", 1)[0] for item in self.extensions()) | (
            {"AUTH"} if self._authOffered() else set()
        )

    def _authOffered(self) -> bool:
        return self.factory.portal is not None and (
            self.settings.authEnable or self.settings.requireAuth
        )

    def _mechanisms(self) -> list[str]:
        """
        The mechanisms EHLO advertises: exactly those AUTH would accept
        now.  A client that believed an advertisement refused later (530
        before STARTTLS on an encrypt listener) has already sent its
        password in clear.
        """
        if not self._authOffered() or self.session.account is not None:
            return []
        if self._authRefusal() is not None:
            return []
        return [name.decode("ascii") for name in challengers()]

    def _authRefusal(self) -> SMTPReply | None:
        """
        Why AUTH PLAIN/LOGIN may not be used on this connection yet, or
        L{None}: the one rule both EHLO and AUTH apply.
        """
        if self.settings.tlsRequired and not self.session.tls:
            # smtpd_tls_security_level = encrypt (RFC 3207 4).
            return SMTPReply(530, "5.7.0", "Must issue a STARTTLS command first")
        if self.settings.tlsAuthOnly and not self._plaintextAllowed():
            # RFC 4954 4: 538 when the mechanism needs an encrypted channel.
            return SMTPReply(538, "5.7.11", "Encryption required for requested authentication mechanism")
        return None

    def _plaintextAllowed(self) -> bool:
        return lines.plaintextAllowed(self.session.host, self.session.tls, onLoopback=self.settings.plaintextOnLoopback)

    def do_EHLO(self, rest: bytes):
        return self._hello(rest, esmtp=True)

    def do_HELO(self, rest: bytes):
        return self._hello(rest, esmtp=False)

    def _hello(self, rest, esmtp):
        verb = "EHLO" if esmtp else "HELO"
        if not rest:
            raise SMTPReply(501, "5.5.4", f"Syntax: {verb} hostname")
        # RFC 5321 4.1.4: EHLO/HELO also resets the transaction.
        self._resetTransaction()
        self.session.helo = rest.decode("utf-8", "replace")
        self.session.esmtp = esmtp
        if esmtp:
            self._reply(250, None, [self.settings.hostname] + self.extensions())
        else:
            self._reply(250, None, self.settings.hostname)

    def do_NOOP(self, rest):
        self._reply(250, "2.0.0", "Ok")

    def do_RSET(self, rest):
        if rest:
            raise SMTPReply(501, "5.5.4", "Syntax: RSET")
        self._resetTransaction()
        self._reply(250, "2.0.0", "Ok")

    def do_QUIT(self, rest):
        self._reply(221, "2.0.0", "Bye")
        self._close()

    def do_HELP(self, rest):
        self._reply(
            214,
            "2.0.0",
            [
                "Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA RSET VRFY ETRN NOOP HELP QUIT",
                "See RFC 5321",
            ],
        )

    def do_VRFY(self, rest):
        mode = self.settings.vrfy
        if mode == "disabled":
            raise SMTPReply(502, "5.5.1", "VRFY command is disabled")
        if not rest:
            raise SMTPReply(501, "5.5.4", "Syntax: VRFY address")
        if mode == "ambiguous":
            # RFC 5321 3.5.3: 252 when we will not say whether a user exists.
            self._reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
            return None
        text = rest[1:-1] if rest.startswith(b"<") and rest.endswith(b">") else rest
        mailbox = parseMailbox(text, "5.1.3", True, allowNull=False, allowPostmaster=True)
        policy = self.factory.policy
        if not policy.isLocal(mailbox):
            self._reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
            return None
        d = policy.checkRecipient(self.session, mailbox)
        d.addCallbacks(
            lambda targets: self._reply(250, "2.0.0", str(mailbox)),
            lambda f: self._replyError(f.trap(SMTPReply) and f.value),
        )
        return d

    def do_ETRN(self, rest):
        if not self.session.helo:
            raise SMTPReply(503, "5.5.1", "Error: send HELO/EHLO first")
        if not rest:
            raise SMTPReply(500, "5.5.4", "Syntax: ETRN domain")
        if self.envelope is not None:
            raise SMTPReply(503, "5.5.1", "Error: MAIL transaction in progress")
        node = rest.decode("utf-8", "replace")
        policy = self.factory.policy
        queue = policy.outbound
        if queue is None:
            # RFC 1985 4: nothing is queued for other hosts.
            self._reply(458, "4.3.0", f"Unable to queue messages for node {node}")
            return None
        if node.startswith(("@", "#")):
            raise SMTPReply(458, "4.3.0", f"Unable to queue messages for node {node}")
        if not (policy.inMynetworks(self.session.host) or self.session.account is not None):
            # Only clients that may relay can make us open connections.
            raise SMTPReply(459, "4.7.1", f"Node {node} not allowed: not authorized")
        d = defer.ensureDeferred(queue.flushDomain(node))

        def started(count):
            if count:
                self._reply(250, "2.0.0", f"Queuing for node {node} started")
            else:
                self._reply(251, "2.0.0", f"OK, no messages waiting for node {node}")

        d.addCallback(started)
        return d

    def do_STARTTLS(self, rest):
        if rest:
            raise SMTPReply(501, "5.5.4", "Syntax: STARTTLS")
        if self.session.tls:
            raise SMTPReply(503, "5.5.1", "Error: TLS already active")
        if self.factory.tlsContext is None:
            raise SMTPReply(454, "4.7.0", "TLS not available")
        if self.envelope is not None:
            raise SMTPReply(503, "5.5.1", "Error: MAIL transaction in progress")
        self._reply(220, "2.0.0", "Ready to start TLS")
        # RFC 3207 4.2 / CVE-2011-0411: anything pipelined after STARTTLS
        # was sent in plaintext and is discarded.
        discarded = self.engine.startTLS(self.factory.tlsContext)
        if discarded:
            log.warn(
                "{listener}: discarded {n} octets sent after STARTTLS by {client}",
                listener=self.settings.listener,
                n=discarded,
                client=self.session.describe(),
            )
        # RFC 3207 4.2: forget everything learnt before TLS.
        self._resetTransaction()
        self.session.helo = None
        self.session.esmtp = False
        self.session.account = None
        self.session.authName = None
        self._markTLS()

    # -- AUTH (RFC 4954) ---------------------------------------------------

    def do_AUTH(self, rest):
        if not self._authOffered():
            raise SMTPReply(503, "5.5.1", "Error: authentication not enabled")
        if not self.session.helo or not self.session.esmtp:
            raise SMTPReply(503, "5.5.1", "Error: send EHLO first")
        if self.session.account is not None:
            raise SMTPReply(503, "5.5.1", "Error: already authenticated")
        if self.envelope is not None:
            raise SMTPReply(503, "5.5.1", "Error: MAIL transaction in progress")
        if not rest:
            raise SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism")
        refusal = self._authRefusal()
        if refusal is not None:
            raise refusal
        parts = rest.split(b" ")
        if len(parts) > 2:
            raise SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        mechanism = parts[0].upper()
        # RFC 4954 4: the initial response ("=" for an empty one).
        initial = parts[1] if len(parts) == 2 else None
        self._mode = AUTH
        d = lines.SASLExchange(self.engine, _continuation).authenticate(mechanism, initial)
        d.addCallbacks(self._authLogin, self._authError, callbackArgs=(mechanism.decode("ascii"),))
        return d

    def _authError(self, failure):
        self._mode = COMMAND
        error = failure.trap(lines.SASLUnsupported, lines.SASLBadEncoding, lines.SASLCancelled)
        if error is lines.SASLUnsupported:
            self._reply(504, "5.5.4", "Unsupported authentication mechanism")
        elif error is lines.SASLBadEncoding:
            self._reply(501, "5.5.2", "Error: invalid base64 data")
        else:
            self._reply(501, "5.7.0", "Authentication aborted")
        self._error()

    def _authLogin(self, credentials, mechanism: str):
        self._mode = COMMAND
        self.session.authMechanism = mechanism
        portal = self.factory.portal
        if IMailPortal.providedBy(portal):
            # ours: the login is throttled and logged with the client's address
            d = portal.loginFrom(credentials, self.session.host, self.settings.listener, None, IMessageDelivery)
        else:
            d = portal.login(credentials, None, IMessageDelivery)
        d.addCallbacks(self._authSucceeded, self._authFailed, callbackArgs=(credentials,))
        return d

    def _authSucceeded(self, result, credentials):
        interface, avatar, logout = result
        if self._closed:
            logout()
            return
        # Twisted's IMessageDelivery says nothing of an account: avatars of
        # an embedding application's realm may have none.
        account = getattr(avatar, "account", None)
        if account is None:
            logout()
            self._reply(454, "4.7.0", "Temporary authentication failure")
            return
        self.session.account = account
        self.session.authName = credentials.username.decode("utf-8", "replace")
        self._logout = logout
        log.info(
            "{listener}: {client}: sasl_method={mechanism}, sasl_username={user}",
            listener=self.settings.listener,
            client=self.session.describe(),
            mechanism=self.session.authMechanism,
            user=self.session.authName,
        )
        self._reply(235, "2.7.0", "Authentication successful")

    def _authFailed(self, failure):
        if self._closed:
            return
        if failure.check(UnauthorizedLogin):
            self._reply(535, "5.7.8", "Error: authentication failed")
            self._error()
            return
        from twisted_maillab.auth import AuthenticationUnavailable

        if not failure.check(AuthenticationUnavailable):
            log.failure("SMTP AUTH error", failure)
        self._reply(454, "4.7.0", "Temporary authentication failure")

    # -- the transaction ---------------------------------------------------

    def do_MAIL(self, rest):
        if not self.session.helo:
            raise SMTPReply(503, "5.5.1", "Error: send HELO/EHLO first")
        if self.envelope is not None:
            raise SMTPReply(503, "5.5.1", "Error: nested MAIL command")
        if self.settings.requireAuth and self.session.account is None:
            raise SMTPReply(530, "5.7.0", "Authentication required")
        sender, params = parseMail(rest, self._extensionNames())
        if params.size is not None and self.settings.sizeLimit and params.size > self.settings.sizeLimit:
            # RFC 1870 6.2.
            raise SMTPReply(552, "5.3.4", "Message size exceeds fixed limit")
        account = self.session.account
        if (
            account is not None
            and self.settings.rejectSenderMismatch
            and not self.factory.policy.ownsAddress(account, sender.address)
        ):
            raise SMTPReply(
                553, "5.7.1", f"{sender}: Sender address rejected: not owned by user {self.session.authName}"
            )
        envelope = Envelope(sender, params, self.factory.queueIds.next(), arrival=self.clock.seconds())

        def accepted(_=None):
            self.envelope = envelope
            self.session.utf8 = params.smtputf8
            # Postfix's smtpd line for a new transaction; the sender and
            # size follow at the end of DATA ("from=<...>, size=N, nrcpt=N").
            log.info(
                "{queueId}: client={client}{auth}",
                queueId=envelope.queueId,
                client=self.session.describe(),
                auth=(
                    f", sasl_method={self.session.authMechanism}, sasl_username={self.session.authName}"
                    if account is not None
                    else ""
                ),
            )
            self._reply(250, "2.1.0", "Ok")

        def refused(failure):
            failure.trap(SMTPReply)
            self._replyError(failure.value)

        d = defer.maybeDeferred(self.factory.policy.checkSender, self.session, envelope)
        d.addCallbacks(accepted, refused)
        return d

    def do_RCPT(self, rest):
        if self.envelope is None:
            raise SMTPReply(503, "5.5.1", "Error: need MAIL command")
        if len(self.envelope.recipients) >= self.settings.maxRecipients:
            # RFC 5321 4.5.3.1.10.
            raise SMTPReply(452, "4.5.3", "Error: too many recipients")
        mailbox, params = parseRcpt(rest, self._extensionNames(), self.envelope.params.smtputf8)
        envelope = self.envelope
        d = self.factory.policy.checkRecipient(self.session, mailbox, envelope)

        def accepted(targets):
            if self.envelope is not envelope:
                return
            envelope.recipients.append(Recipient(mailbox, params, list(targets)))
            self._reply(250, "2.1.5", "Ok")

        def refused(failure):
            failure.trap(SMTPReply)
            error = failure.value
            self.factory.metrics.message("rejected", f"{error.code} {error.enhanced}".strip())
            log.info(
                "NOQUEUE: reject: RCPT from {client}: {reply}; from={sender} to={to} proto={proto} helo=<{helo}>",
                client=self.session.describe(),
                reply=str(error),
                sender=envelope.sender,
                to=mailbox,
                proto=self.session.withProtocol(),
                helo=self.session.helo,
            )
            self._replyError(error)
            if error.code >= 500:
                self._error()

        d.addCallbacks(accepted, refused)
        return d

    def do_DATA(self, rest):
        if rest:
            raise SMTPReply(501, "5.5.4", "Syntax: DATA")
        if self.envelope is None:
            raise SMTPReply(503, "5.5.1", "Error: need MAIL command")
        if not self.envelope.recipients:
            raise SMTPReply(554, "5.5.1", "Error: no valid recipients")
        d = defer.maybeDeferred(self.factory.delivery.begin, self.session, self.envelope)
        d.addCallbacks(self._dataStarted, self._dataRefused)
        return d

    def _dataRefused(self, failure):
        failure.trap(SMTPReply)
        self._replyError(failure.value)
        self._resetTransaction()

    def _dataStarted(self, message):
        if self._closed:
            message.abort()
            return
        self._message = message
        self._mode = DATA
        self._text = MessageText(self.settings.sizeLimit, self.settings.bareNewline, self._write, self._abortMessage)
        self.engine.setIdleTimeout(self.settings.dataTimeout)
        self._reply(354, None, "End data with <CR><LF>.<CR><LF>")
        # The text goes to MessageText as it arrives; it finds the end.
        self.engine.rawMode(self._dataChunk)

    # -- DATA ----------------------------------------------------------------

    def _dataChunk(self, data: bytes):
        remaining = self._text.feed(data)
        if remaining is not None:
            self._endOfData(remaining)

    def _write(self, data: bytes):
        """
        Hand message text (stored form, from L{MessageText}) to the store.
        """
        if self._message is None:
            return
        result = self._message.write(data)
        if isinstance(result, defer.Deferred) and not result.called:
            # Back-pressure: up to WRITES_IN_FLIGHT chunks may be on their
            # way to disk while we read on (network and disk overlap); then
            # read nothing more until the store caught up.
            self._inFlight += 1
            if self._inFlight >= WRITES_IN_FLIGHT and not self._writing:
                self._writing = True
                self.engine.pauseInput()

            def written(value):
                self._inFlight -= 1
                if self._writing and self._inFlight < WRITES_IN_FLIGHT:
                    self._writing = False
                    self.engine.resumeInput()
                return None

            result.addErrback(lambda f: None)
            result.addBoth(written)

    def _endOfData(self, remaining: bytes):
        self._mode = COMMAND
        text, self._text = self._text, None
        # What followed the final dot is commands again; the engine reads
        # them after this returns, so the wait below holds them.
        self.engine.lineMode(remaining)
        self.engine.setIdleTimeout(self.settings.commandTimeout)
        envelope = self.envelope
        if text.failure is not None:
            error = text.failure
            self._logRejectedMessage(envelope, error)
            self._replyError(error)
            self._resetTransaction()
            if error is BARE_NEWLINE:
                self._close()
            return
        message, self._message = self._message, None
        log.info(
            "{queueId}: from=<{sender}>, size={size}, nrcpt={n}",
            queueId=envelope.queueId,
            sender=envelope.sender.address,
            size=text.received,
            n=len(envelope.recipients),
        )
        d = defer.maybeDeferred(message.end)

        def done(queueId):
            self.factory.metrics.message("received", self.settings.listener)
            self._reply(250, "2.0.0", f"Ok: queued as {queueId}")

        def failed(failure):
            if failure.check(SMTPReply):
                error = failure.value
            else:
                log.failure("{queueId}: delivery failed", failure, queueId=envelope.queueId)
                error = SMTPReply(451, "4.3.0", "Error: queue file write error")
            self._logRejectedMessage(envelope, error)
            if not self._closed:
                self._replyError(error)

        d.addCallbacks(done, failed)
        d.addBoth(lambda _: self._resetTransaction())
        self.engine.wait(d)

    def _logRejectedMessage(self, envelope, error: SMTPReply) -> None:
        # Postfix's smtpd line for a message refused after the final dot
        # (it names the first recipient).
        self.factory.metrics.message("rejected", f"{error.code} {error.enhanced}".strip())
        log.warn(
            "{queueId}: reject: END-OF-MESSAGE from {client}: {reply}; from={sender} to={to} "
            "proto={proto} helo=<{helo}>",
            queueId=envelope.queueId,
            client=self.session.describe(),
            reply=str(error),
            sender=envelope.sender,
            to=envelope.recipients[0].mailbox,
            proto=self.session.withProtocol(),
            helo=self.session.helo,
        )

    def _abortMessage(self):
        message, self._message = self._message, None
        if message is not None:
            try:
                message.abort()
            except Exception:
                log.failure("aborting a message failed")


class SMTPServerFactory(ServerFactory):
    """
    Builds L{ESMTPServer}s for one listener and counts connections per
    client address.

    @ivar settings: the L{Settings}.
    @ivar policy: the L{twisted_maillab.smtp.policy.Policy}.
    @ivar delivery: an L{ISMTPDelivery}.
    @ivar portal: the L{IMailPortal} or L{None} (no AUTH).
    @ivar tlsContext: for STARTTLS, or L{None}.
    @ivar clock: timeouts (the reactor or a L{task.Clock}).
    @ivar queueIds: a L{twisted_maillab.smtp.delivery.QueueIds}.
    @ivar resolveName: C{f(ip) -> Deferred[str | None]} or L{None}.
    @ivar metrics: the service tree's L{twisted_maillab.metrics.Metrics}.
    """

    metrics = NULL_METRICS

    def __init__(
        self, settings, policy, delivery, *, portal=None, tlsContext=None, clock, queueIds, resolveName=None
    ):
        self.settings = settings
        self.policy = policy
        self.delivery = delivery
        self.portal = portal
        self.tlsContext = tlsContext
        self.clock = clock
        self.queueIds = queueIds
        self.resolveName = resolveName
        self.connections: dict[str, int] = {}

    def buildProtocol(self, addr):
        protocol = ESMTPServer(self)
        protocol.factory = self
        return protocol

    def connectionOpened(self, host: str) -> bool:
        limit = self.settings.maxConnectionsPerClient
        count = self.connections.get(host, 0)
        if limit and count >= limit:
            return False
        self.connections[host] = count + 1
        return True

    def connectionClosed(self, host: str) -> None:
        count = self.connections.get(host, 0) - 1
        if count <= 0:
            self.connections.pop(host, None)
        else:
            self.connections[host] = count
