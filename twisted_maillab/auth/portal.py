"""
The portal every protocol logs in through, with throttling and the
fail2ban log line.

How a protocol calls it (the API documented in
L{twisted_maillab.interfaces.IMailPortal})::

    # once per connection, in connectionMade or when the server factory
    # builds the protocol:
    self.portal = factory.portal.forConnection(self.transport.getPeer(), "imap")
    # then Twisted's own code (IMAP4Server.authenticateLogin, ESMTP's
    # state_AUTH, POP3.do_PASS) calls self.portal.login(creds, None, iface)
    # unchanged.

or directly: C{portal.loginFrom(credentials, peer, "pop3", mind, IMailbox)}.
"""

from __future__ import annotations

import re

from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.auth.checkers import LoginRefused, decodeCredential
from twisted_maillab.auth.pool import AuthenticationUnavailable
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.metrics import NULL_METRICS

__all__ = ["MailPortal", "ConnectionPortal", "hostOf", "quoteLogValue", "LOG_NAMESPACE"]

#: The logger namespace of the login lines (the fail2ban filter matches it).
LOG_NAMESPACE = "twisted_maillab.auth"

_log = Logger(namespace=LOG_NAMESPACE)

# Bound what an attacker can make us log per attempt.
_MAX_LOGGED_USER = 128
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]|[^\x00-\x7f]')


def quoteLogValue(value: str | None) -> str:
    """
    A client-supplied value as a double-quoted, escaped, bounded token:
    no newline, quote or control character can reach the log, so no one
    can forge a second log line or a fake C{rip=} inside a username.
    """
    if value is None:
        return '"-"'
    text = value[:_MAX_LOGGED_USER]

    def escape(match: re.Match) -> str:
        char = match.group(0)
        if char in '"\\':
            return "\\" + char
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    text = _UNSAFE.sub(escape, text)
    if len(value) > _MAX_LOGGED_USER:
        text += "..."
    return f'"{text}"'


def hostOf(peer) -> str:
    """
    The client's address as text from a transport, an L{IAddress}
    (C{IPv4Address}, C{IPv6Address}, C{UNIXAddress}) or a string; IPv6
    scope ids are dropped, IPv4-mapped IPv6 is shown as IPv4.
    """
    if peer is None:
        return "unknown"
    if hasattr(peer, "getPeer"):
        peer = peer.getPeer()
    if isinstance(peer, bytes):
        peer = peer.decode("ascii", "replace")
    if isinstance(peer, str):
        host = peer
    else:
        host = getattr(peer, "host", None)
        if host is None:
            return "unix" if hasattr(peer, "name") else "unknown"
    host = host.split("%", 1)[0]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host


@implementer(IMailPortal)
class MailPortal(Portal):
    """
    A L{Portal} whose logins are throttled and logged per client address.

    @ivar realm: the L{MailRealm}.
    @ivar directory: the L{AccountDirectory}.
    @ivar throttle: the L{Throttle}.
    @ivar clock: what delays are scheduled on (the reactor, or a Clock).
    @ivar parallelChecks: checks one client address may run at once.
    """

    # Not a class attribute: Logger.__get__ would rename the namespace to
    # the class's, and the fail2ban filter matches this one.
    log = property(lambda self: _log)
    metrics = NULL_METRICS  # the service tree's Metrics (twisted_maillab.metrics)

    def __init__(self, realm, checkers=(), *, directory, throttle, clock, rules, parallelChecks=4):
        super().__init__(realm, checkers)
        self.directory = directory
        self.throttle = throttle
        self.clock = clock
        self.rules = rules
        self.parallelChecks = parallelChecks
        self._gates: dict[str, defer.DeferredSemaphore] = {}

    def forConnection(self, peer, protocol: str) -> "ConnectionPortal":
        """
        A portal view for one connection whose C{login} carries the
        client's address and the protocol name; give it to Twisted's
        protocol classes as their C{portal}.
        """
        return ConnectionPortal(self, peer, protocol)

    def login(self, credentials, mind, *interfaces):
        """
        A login without a client address: throttled under the address
        C{unknown}, so a caller that forgets L{forConnection} is throttled
        collectively rather than not at all.
        """
        return self.loginFrom(credentials, None, "unknown", mind, *interfaces)

    def loginFrom(self, credentials, peer, protocol: str, mind, *interfaces):
        """
        Check credentials from one client and build the avatar.

        @param peer: the client: a transport, an L{IAddress} or a host string.
        @param protocol: C{smtp}, C{submission}, C{pop3}, C{imap}... (logged).
        @return: L{Deferred} of C{(interface, avatar, logout)}; fails with
            L{UnauthorizedLogin} (after the throttling delay) for a bad or
            locked-out login, L{AuthenticationUnavailable} when the check
            queue is full.
        """
        if not hasattr(credentials, "username"):
            # Anonymous and other password-less credentials: nothing to guess.
            return Portal.login(self, credentials, mind, *interfaces)
        host = hostOf(peer)
        username = decodeCredential(credentials.username)
        userKey = self._userKey(username)
        if self.throttle.lockedFor(host) > 0:
            self._logAttempt("locked", protocol, host, username, "address locked out", 0.0)
            return defer.fail(LoginRefused("address locked out"))
        # One address runs at most parallelChecks checks at once; the others
        # wait their turn and see a lockout that starts meanwhile, so N
        # parallel connections cannot have N guesses in flight past the
        # lockout threshold.  (A mail client opening 5 IMAP connections
        # waits one hash at most.)
        key = self.throttle.key(host)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = defer.DeferredSemaphore(self.parallelChecks)
        if len(gate.waiting) >= _MAX_WAITING:
            self._logAttempt("unavailable", protocol, host, username, "too many parallel attempts", 0.0)
            return defer.fail(AuthenticationUnavailable("too many parallel attempts"))
        malformed = getattr(credentials, "malformed", None)

        def check(_):
            if self.throttle.lockedFor(host) > 0:
                raise _AddressLocked("address locked out")
            if malformed:
                # A broken SASL exchange is a failed attempt like any other
                # (counted, delayed, logged) but is not worth a hash.
                raise LoginRefused(f"malformed SASL response: {malformed}")
            return Portal.login(self, credentials, mind, *interfaces)

        def release():
            # After the outcome is recorded (so the next waiting attempt
            # sees a lockout this one caused) and before any delay (which
            # holds no slot).
            gate.release()
            if gate.tokens == gate.limit and not gate.waiting and self._gates.get(key) is gate:
                del self._gates[key]

        def succeeded(result):
            self.throttle.succeeded(host, userKey)
            release()
            self._logAttempt("ok", protocol, host, username, "", 0.0)
            return result

        def failed(failure):
            try:
                return outcome(failure)
            finally:
                release()

        def outcome(failure):
            if failure.check(_AddressLocked):
                # Locked out while waiting for its turn: refused unchecked.
                self._logAttempt("locked", protocol, host, username, "address locked out", 0.0)
                raise LoginRefused("address locked out")
            if failure.check(UnauthorizedLogin):
                reason = getattr(failure.value, "reason", None) or str(failure.value) or "refused"
                delay, lockedNow = self.throttle.failed(host, userKey)
                self._logAttempt("failed", protocol, host, username, reason, delay)
                if lockedNow:
                    self.metrics.lockout(protocol)
                    self.log.warn(
                        "auth: lockout proto={protocol} rip={host} for={duration:.0f}s",
                        protocol=protocol,
                        host=host,
                        duration=self.throttle.policy.lockoutDuration,
                    )
                refusal = LoginRefused(reason)
                if delay <= 0:
                    raise refusal
                return task.deferLater(self.clock, delay, _raise, refusal)
            if failure.check(AuthenticationUnavailable):
                self._logAttempt("unavailable", protocol, host, username, "check queue full", 0.0)
            elif failure.check(UnhandledCredentials):
                self._logAttempt("error", protocol, host, username, "unhandled credentials", 0.0)
            else:
                self.log.failure(
                    "auth: error proto={protocol} rip={host}",
                    failure,
                    protocol=protocol,
                    host=host,
                )
            return failure

        d = gate.acquire()
        d.addCallback(check)
        return d.addCallbacks(succeeded, failed)

    def _userKey(self, username: str | None) -> str:
        if username is None:
            return "<invalid>"
        key = self.rules.loginKey(username)
        if key is None:
            return username[:_MAX_LOGGED_USER].lower()
        local, domain = key
        return f"{local}@{domain or (self.rules.primaryDomain if self.rules.localDomains else '')}"

    def _logAttempt(self, result, protocol, host, username, reason, delay):
        """
        The one line per attempt, in a fixed format (etc/fail2ban/filter.d/
        maillab.conf matches it)::

            auth: result=failed proto=imap rip=203.0.113.9 user="edouard" delay=2.0 reason="bad password"

        C{result} is C{ok}, C{failed}, C{locked} (refused unchecked: the
        address is locked out), C{unavailable} or C{error}.  The client's
        address comes before the client-supplied username, which is
        quoted and escaped.
        """
        protocol = re.sub(r"[^a-z0-9-]", "_", protocol.lower())[:16] or "unknown"
        self.metrics.login(protocol, result, delay)
        emit = self.log.info if result == "ok" else self.log.warn
        emit(
            "auth: result={result} proto={protocol} rip={host} user={user} "
            "delay={delay:.1f} reason={reason}",
            result=result,
            protocol=protocol,
            host=host,
            user=quoteLogValue(username),
            delay=delay,
            reason=quoteLogValue(reason or "-"),
            authResult=result,
            authUser=username,
            authAddress=host,
        )


class _AddressLocked(LoginRefused):
    """
    The address was locked out while its attempt waited for its turn.
    """


# Attempts from one address waiting for a check slot; more are refused
# (each waiting attempt holds a connection, which the protocols bound).
_MAX_WAITING = 64


def _raise(error):
    raise error


@implementer(IMailPortal)
class ConnectionPortal:
    """
    L{MailPortal} bound to one connection: C{login(credentials, mind,
    *interfaces)} is C{loginFrom(credentials, peer, protocol, ...)}.
    """

    def __init__(self, portal: MailPortal, peer, protocol: str):
        self.portal = portal
        self.peer = peer
        self.protocol = protocol

    def login(self, credentials, mind, *interfaces):
        return self.portal.loginFrom(credentials, self.peer, self.protocol, mind, *interfaces)

    def loginFrom(self, credentials, peer, protocol, mind, *interfaces):
        return self.portal.loginFrom(credentials, peer, protocol, mind, *interfaces)

    def forConnection(self, peer, protocol):
        return self.portal.forConnection(peer, protocol)

    def listCredentialsInterfaces(self):
        return self.portal.listCredentialsInterfaces()

    @property
    def realm(self):
        return self.portal.realm

    @property
    def directory(self):
        return self.portal.directory
