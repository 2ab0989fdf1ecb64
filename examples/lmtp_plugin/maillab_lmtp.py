"""
An LMTP listener (RFC 2033) as a maillab service plugin: C{[lmtp]}.

It accepts mail from a mail transfer agent that already did the SMTP part
(Postfix's C{lmtp} client: C{mailbox_transport = lmtp:inet:127.0.0.1:2424}
or C{virtual_transport}) and delivers it into the store through the
store's delivery transaction (tmp/, fsync, rename into new/), the one the
SMTP server uses, then answers once per recipient (RFC 2033 4.2).

LMTP has no authentication: listen on loopback or a UNIX socket only.

Run it (the plugin package, this directory, must be on C{PYTHONPATH})::

    PYTHONPATH=examples/lmtp_plugin twistd -n maillab --config lmtp.ini

with an ini file holding::

    [lmtp]
    enabled = yes
    listen = tcp:2424:interface=127.0.0.1
    message_size_limit = 10M
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.config import ListenerSection, option, parseDuration, parseSize
from twisted_maillab.lines import CommandEngine, ILineHandler
from twisted_maillab.store.errors import StoreError

log = Logger()


@dataclass(frozen=True, kw_only=True)
class LMTPSection(ListenerSection):
    name = "lmtp"
    message_size_limit: int = option(parseSize, 10240000, "largest message accepted, in octets")
    timeout: float = option(parseDuration, 300.0, "idle time before the connection is closed")


# RFC 5321 4.5.3.1.4 / 4.5.3.1.6: 512-octet command lines, 1000-octet text
# lines; a little more is accepted, never an unbounded line.
MAX_LINE = 4096
MAX_RECIPIENTS = 1000


def _address(argument: bytes, verb: bytes) -> str | None:
    """
    The address of C{MAIL FROM:<a>} or C{RCPT TO:<a>} (ESMTP parameters
    after it are ignored), or L{None} when the syntax is wrong.
    """
    if not argument.upper().startswith(verb):
        return None
    rest = argument[len(verb) :].strip()
    if not rest.startswith(b"<") or b">" not in rest:
        return None
    try:
        return rest[1 : rest.index(b">")].decode("utf-8")
    except UnicodeDecodeError:
        return None


@implementer(ILineHandler)
class LMTPServer(Protocol):
    """
    One LMTP session: LHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
    """

    def __init__(self, factory):
        self.factory = factory
        self.greeted = False
        self._reset()

    def _reset(self):
        self.sender = None
        self.recipients: list[tuple[str, object]] = []
        self.transaction = None
        self.size = 0
        self.tooBig = False
        self.inData = False

    def connectionMade(self):
        self.engine = CommandEngine(
            self, clock=self.factory.clock, maxLine=MAX_LINE, idleTimeout=self.factory.section.timeout
        )
        self.engine.makeConnection(self.transport)
        self.reply(220, f"{self.factory.hostname} LMTP maillab ready")

    def dataReceived(self, data):
        self.engine.dataReceived(data)

    def connectionLost(self, reason=None):
        self.engine.connectionLost()
        if self.transaction is not None:
            self.transaction.abort()
            self.transaction = None

    def reply(self, code: int, text: str) -> None:
        self.engine.write(f"{code} {text}\r\n".encode("utf-8"))

    # ILineHandler

    def lineTooLong(self):
        if self.inData:
            # The message is refused at its end (RFC 5322 2.1.1).
            self.tooBig = True
            return
        self.reply(500, "5.5.2 line too long")

    def timedOut(self):
        self.reply(421, "4.4.2 idle timeout")
        self.engine.close()

    def commandFailed(self, failure):
        log.failure("LMTP command failed", failure)
        if not self.engine.closed:
            self.reply(451, "4.3.0 internal error")

    def lineReceived(self, line: bytes):
        if self.inData:
            return self._dataLine(line)
        verb, _, argument = line.partition(b" ")
        handler = getattr(self, "do_" + verb.upper().decode("ascii", "replace"), None)
        if handler is None:
            self.reply(500, "5.5.1 command not recognized")
            return None
        return handler(argument.strip())

    # commands

    def do_LHLO(self, argument):
        if not argument:
            self.reply(501, "5.5.4 LHLO needs a host name")
            return
        self.greeted = True
        self._reset()
        limit = self.factory.section.message_size_limit
        self.engine.write(
            f"250-{self.factory.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
            f"250-ENHANCEDSTATUSCODES\r\n250 SIZE {limit}\r\n".encode("ascii")
        )

    def do_MAIL(self, argument):
        if not self.greeted:
            self.reply(503, "5.5.1 LHLO first")
            return
        if self.sender is not None:
            self.reply(503, "5.5.1 nested MAIL command")
            return
        sender = _address(argument, b"FROM:")
        if sender is None:
            self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
            return
        self.sender = sender
        self.reply(250, "2.1.0 ok")

    def do_RCPT(self, argument):
        if self.sender is None:
            self.reply(503, "5.5.1 MAIL first")
            return None
        address = _address(argument, b"TO:")
        if address is None or "@" not in address:
            self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
            return None
        if len(self.recipients) >= MAX_RECIPIENTS:
            self.reply(452, "4.5.3 too many recipients")
            return None

        def found(account):
            if account is None:
                self.reply(550, f"5.1.1 <{address}>: recipient unknown")
            else:
                self.recipients.append((address, account))
                self.reply(250, "2.1.5 ok")

        return self.factory.directory.lookupRecipient(address).addCallback(found)

    def do_DATA(self, argument):
        if not self.recipients:
            self.reply(503, "5.5.1 no valid recipients")
            return None
        try:
            self.transaction = self.factory.store.beginDelivery()
            accounts = []
            for address, account in self.recipients:
                if account not in accounts:
                    accounts.append(account)
                    self.transaction.addRecipient(
                        account,
                        prependHeaders=(
                            f"Return-Path: <{self.sender}>\nX-Original-To: {address}\n"
                            f"Delivered-To: {address}\n"
                        ).encode("utf-8"),
                    )
            peer = self.transport.getPeer()
            stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(self.factory.clock.seconds()))
            self.transaction.write(
                f"Received: from {getattr(peer, 'host', 'local')} by {self.factory.hostname}"
                f" with LMTP; {stamp}\n".encode("utf-8")
            )
        except StoreError as e:
            self.transaction = None
            self.reply(e.smtpCode, f"{e.enhancedCode} {e}")
            return None
        self.inData = True
        self.reply(354, "end data with <CR><LF>.<CR><LF>")
        return None

    def _dataLine(self, line: bytes):
        if line == b".":
            self.inData = False
            return self._finish()
        if line.startswith(b"."):
            line = line[1:]  # RFC 5321 4.5.2 transparency
        self.size += len(line) + 2
        if self.size > self.factory.section.message_size_limit:
            self.tooBig = True
        if self.tooBig:
            return None
        # Stored with LF line ends, as the SMTP server stores mail.
        return self.transaction.write(line + b"\n")

    @defer.inlineCallbacks
    def _finish(self):
        transaction, self.transaction = self.transaction, None
        recipients = self.recipients
        if self.tooBig:
            yield transaction.abort()
            for _ in recipients:
                self.reply(552, "5.3.4 message too big")
            self._reset()
            return
        try:
            results = yield transaction.commit()
        except StoreError as e:
            results = [None] * len(recipients)
            error = e
        else:
            error = None
        # RFC 2033 4.2: one reply per accepted recipient, in RCPT order
        # (the transaction has one result per distinct account).
        for address, account in recipients:
            result = next((r for r in results if r is not None and r.account == account), None)
            if result is not None and result.ok:
                self.reply(250, f"2.0.0 <{address}> delivered to {result.filename}")
            else:
                failure = error if result is None else result.error
                self.reply(failure.smtpCode, f"{failure.enhancedCode} <{address}> {failure}")
        self._reset()

    def do_RSET(self, argument):
        self._reset()
        self.reply(250, "2.0.0 ok")

    def do_NOOP(self, argument):
        self.reply(250, "2.0.0 ok")

    def do_QUIT(self, argument):
        self.reply(221, "2.0.0 bye")
        self.engine.close()


class LMTPFactory(Factory):
    def __init__(self, section, hostname, directory, store, clock):
        self.section = section
        self.hostname = hostname
        self.directory = directory
        self.store = store
        self.clock = clock

    def buildProtocol(self, addr):
        return LMTPServer(self)


def buildLMTP(config, resources):
    """
    The C{[lmtp]} service: the suite's account directory (through its
    portal) and store, one listener per C{listen} value.
    """
    factory = LMTPFactory(
        config.lmtp,
        config.server.hostname,
        resources.portal.directory,
        resources.store,
        resources.reactor,
    )
    return resources.listen(config.lmtp, factory)
