"""
The SMTP client side of the outbound queue: L{RelayClient}, one session's
line protocol (replies, flow control); L{Conversation}, the dialogue with a
remote MX for one message and some of its recipients; and L{WireText}, the
wire form of a spooled message.

Why not Twisted's C{ESMTPClient}: it has no DSN/SIZE parameters, and its
C{transformChunk} turns LF into CRLF without dot-stuffing the first line
or across chunks, and passes bare CR through.
"""

from __future__ import annotations

import os
import re

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "RelayClient",
    "Conversation",
    "WireText",
    "TemporaryFailure",
    "PermanentFailure",
    "TLSHandshakeFailure",
    "TLSPolicyFailure",
    "xtext",
]

log = Logger(namespace="twisted_maillab.smtp")

READ_CHUNK = 64 * 1024
REPLY_LINE_LIMIT = 4096
REPLY_LINES_LIMIT = 100


class TemporaryFailure(Exception):
    """
    @ivar command: the command the remote's reply answered (for the log's
        "in reply to" and the DSN), or L{None} when there was no reply.
    """

    def __init__(self, text: str, command: str | None = None):
        super().__init__(text)
        self.command = command


class PermanentFailure(Exception):
    pass


class TLSHandshakeFailure(TemporaryFailure):
    """
    The remote MX accepted STARTTLS but the handshake failed; at the
    opportunistic level (RFC 7435) the queue retries it in plaintext.
    """


class TLSPolicyFailure(TemporaryFailure):
    """
    The destination's TLS policy (L{twisted_maillab.tlspolicy}) is not
    met: the delivery is deferred (4.7.x), never made in plaintext.

    @ivar resultType: the TLS-RPT result type (RFC 8460 4.3).
    """

    def __init__(self, text: str, resultType: str = "validation-failure"):
        super().__init__(text)
        self.resultType = resultType


@implementer(IHandshakeListener)
class RelayClient(Protocol):
    """
    One SMTP client session's line protocol, driven by L{Conversation}.

    @ivar tlsEstablished: the STARTTLS handshake completed
        (L{IHandshakeListener}, called by Twisted's TLS layer).
    """

    def __init__(self):
        self.tlsEstablished = False
        self._buffer = b""
        self._lines = []
        self._waiting = None
        self._replies = []
        self._lost = None
        self._paused = None

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        pass

    def dataReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            self._lines.append(line.decode("utf-8", "replace"))
            if len(self._lines) > REPLY_LINES_LIMIT:
                self.transport.loseConnection()
                return
            if line[3:4] != b"-":
                code = int(line[:3]) if line[:3].isdigit() else 0
                reply = (code, self._lines)
                self._lines = []
                if self._waiting is not None:
                    waiting, self._waiting = self._waiting, None
                    waiting.callback(reply)
                else:
                    self._replies.append(reply)
                    if len(self._replies) > REPLY_LINES_LIMIT:
                        # Replies nobody asked for: not an SMTP server.
                        self.transport.loseConnection()
                        return
        if len(self._buffer) > REPLY_LINE_LIMIT:
            self.transport.loseConnection()

    def discardPlaintext(self) -> None:
        """
        Forget what the server sent after its reply to STARTTLS: RFC 3207
        6, anything received before the handshake may have been injected
        by an attacker on the path.
        """
        self._buffer = b""
        self._lines = []
        self._replies = []

    def handshakeCompleted(self):
        self.tlsEstablished = True

    def lostReason(self) -> str:
        """
        Why the connection was lost, in one line: OpenSSL's reasons for a
        failed handshake (C{SSL.Error} carries C{[(lib, func, reason)]}).
        """
        if self._lost is None:
            return "connection lost"
        value = self._lost.value
        if isinstance(value, SSL.Error) and value.args and isinstance(value.args[0], list):
            reasons = [str(entry[-1]) for entry in value.args[0] if isinstance(entry, tuple) and entry]
            if reasons:
                return ", ".join(reasons)
        return str(value) or value.__class__.__name__

    def connectionLost(self, reason):
        self._lost = reason
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(TemporaryFailure("connection lost"))
        self.resumeProducing()

    def reply(self) -> defer.Deferred:
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(TemporaryFailure("connection lost"))
        self._waiting = defer.Deferred()
        return self._waiting

    def command(self, line: str) -> defer.Deferred:
        self.transport.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    async def writeData(self, data: bytes):
        self.transport.write(data)
        if self._paused is not None:
            await self._paused


def _extensions(lines: list[str]) -> dict[str, str]:
    return {line[4:].split(" ", 1)[0].upper(): line[4:] for line in lines[1:]}


class Conversation:
    """
    One SMTP session with one remote MX address for one message and the
    recipients of one domain (RFC 5321 3.3): it records each recipient's
    outcome on the L{QueuedRecipient} (2xx sent, 5xx failed, 4xx left
    pending with the reply) and raises L{TemporaryFailure} when the
    session as a whole failed before any recipient was settled.

    @ivar mailAt: when MAIL was sent (connection setup, DNS, EHLO and TLS
        are done; Postfix's delays c/d split), or L{None}.
    @ivar tls: the STARTTLS result, C{(trust, version, cipher, bits)}, or
        L{None} for plaintext.
    @ivar tlsPolicy: the host's L{twisted_maillab.tlspolicy.policy.HostPolicy}
        (what TLS it must offer, and the certificate check), or L{None}
        for opportunistic TLS without any check.
    """

    def __init__(
        self, client, message, *, host, address, port, hostname, tlsContext, bodyPath, runner, clock, tlsPolicy=None
    ):
        self.client = client
        self.message = message
        self.remote = f"{host}[{address}]"
        self.host = host
        self.address = address
        self.tlsPolicy = tlsPolicy
        self.port = port
        self.hostname = hostname
        self.tlsContext = tlsContext
        self.bodyPath = bodyPath
        self.runner = runner
        self.clock = clock
        self.mailAt = None
        self.tls = None

    async def run(self, recipients: list) -> None:
        client, message, remote = self.client, self.message, self.remote
        greeting = await client.reply()
        if greeting[0] != 220:
            raise TemporaryFailure(greeting[1][-1], "initial greeting")
        code, lines = await client.command(f"EHLO {self.hostname}")
        esmtp = code == 250
        if not esmtp:
            code, lines = await client.command(f"HELO {self.hostname}")
            if code != 250:
                raise TemporaryFailure(lines[-1], "HELO")
        extensions = _extensions(lines) if esmtp else {}
        if "STARTTLS" in extensions and self.tlsContext is not None:
            extensions = await self._startTLS(extensions)
        if self.tls is None and self.tlsPolicy is not None:
            try:
                self.tlsPolicy.noStartTLS(self.host, self.address)
            except TemporaryFailure:
                # RFC 3207 4.1: a client that requires TLS and cannot have
                # it quits before MAIL; nothing goes in clear.
                await self._quit()
                raise
        if message.smtputf8 and "SMTPUTF8" not in extensions:
            for r in recipients:
                r.status, r.reply, r.remote = "failed", "5.6.7 remote server does not support SMTPUTF8", remote
            await self._quit()
            return
        mail = f"MAIL FROM:<{message.sender}>"
        if "SIZE" in extensions:
            # RFC 1870: the size on the wire, with every line end CRLF.
            mail += f" SIZE={message.size + message.lines}"
        if message.body == "8BITMIME" and "8BITMIME" in extensions:
            mail += " BODY=8BITMIME"
        if message.smtputf8:
            mail += " SMTPUTF8"
        dsn = "DSN" in extensions
        if dsn and message.ret:
            mail += f" RET={message.ret}"
        if dsn and message.envid:
            mail += f" ENVID={xtext(message.envid)}"
        self.mailAt = self.clock.seconds()
        code, lines = await client.command(mail)
        if code >= 500:
            # RFC 5321 3.3: the sender is refused, so is every recipient
            # of this transaction.
            self._settle(recipients, "failed", lines[-1], "MAIL FROM")
            await self._quit()
            return
        if code != 250:
            # Another MX may take it; else every recipient is deferred.
            raise TemporaryFailure(lines[-1], "MAIL FROM")
        accepted = []
        for r in recipients:
            rcpt = f"RCPT TO:<{r.address}>"
            if dsn and r.notify:
                rcpt += " NOTIFY=" + ",".join(r.notify)
            if dsn and r.orcpt:
                rcpt += f" ORCPT={r.orcptType or 'rfc822'};{xtext(r.orcpt)}"
            code, lines = await client.command(rcpt)
            if code in (250, 251):
                accepted.append(r)
            else:
                self._settle([r], "failed" if code >= 500 else "pending", lines[-1], "RCPT TO")
        if not accepted:
            await self._quit()
            return
        code, lines = await client.command("DATA")
        if code != 354:
            self._settle(accepted, "failed" if code >= 500 else "pending", lines[-1], "DATA")
            await self._quit()
            return
        await self._sendBody()
        code, lines = await client.reply()
        if code == 250:
            self._settle(accepted, "sent", lines[-1], "end of DATA")
            for r in accepted:
                # RFC 3461 5.2.2: NOTIFY=SUCCESS handed to a server without
                # DSN gets a "relayed" notice from us.
                r.relayedNotice = not dsn and "SUCCESS" in r.notify and bool(message.sender)
        else:
            self._settle(accepted, "failed" if code >= 500 else "pending", lines[-1], "end of DATA")
        await self._quit()

    def _settle(self, recipients, status, reply, command) -> None:
        for r in recipients:
            r.status, r.reply, r.remote, r.command = status, reply, self.remote, command

    async def _startTLS(self, extensions: dict) -> dict:
        client = self.client
        code, lines = await client.command("STARTTLS")
        if code != 220:
            # RFC 3207 4: the session goes on in plaintext.
            return extensions
        client.discardPlaintext()
        client.transport.startTLS(self.tlsContext)
        try:
            code, lines = await client.command(f"EHLO {self.hostname}")
        except TemporaryFailure:
            if not client.tlsEstablished:
                raise TLSHandshakeFailure(client.lostReason()) from None
            raise
        if code != 250:
            raise TemporaryFailure(lines[-1], "EHLO")
        self.tls = _tlsDetails(client.transport)
        if self.tlsPolicy is not None:
            try:
                trust = self.tlsPolicy.checkPeer(client.transport.getHandle(), self.host, self.address)
            except TemporaryFailure:
                await self._quit()
                raise
            self.tls = (trust,) + self.tls[1:]
        trust, version, cipher, bits = self.tls
        # Postfix's smtp(8) line; "Untrusted": the opportunistic level
        # checks no certificate (RFC 7435); "Verified": the policy's check
        # passed.
        log.info(
            "{trust} TLS connection established to {remote}:{port}: {version} with cipher {cipher} ({bits}/{bits} bits)",
            trust=trust,
            remote=self.remote,
            port=self.port,
            version=version,
            cipher=cipher,
            bits=bits,
        )
        return _extensions(lines)

    async def _quit(self) -> None:
        # A server may close after its reply; every outcome is settled.
        try:
            await self.client.command("QUIT")
        except TemporaryFailure:
            pass

    async def _sendBody(self) -> None:
        fd = await self.runner(os.open, self.bodyPath, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            text = WireText()
            while True:
                chunk = await self.runner(os.read, fd, READ_CHUNK)
                if not chunk:
                    break
                await self.client.writeData(text.feed(chunk))
            await self.client.writeData(text.end())
        finally:
            await self.runner(os.close, fd)


def _tlsDetails(transport) -> tuple[str, str, str, int]:
    connection = transport.getHandle()
    trust = "Anonymous" if connection.get_peer_certificate() is None else "Untrusted"
    return (
        trust,
        connection.get_protocol_version_name(),
        connection.get_cipher_name(),
        connection.get_cipher_bits(),
    )


_LINE_END = re.compile(rb"\r\n|\r|\n")


class WireText:
    """
    Spooled text -> DATA text: every line end (CRLF, bare LF, bare CR) as
    CRLF and RFC 5321 4.5.2 dot-stuffing, across chunk boundaries, so the
    remote sees exactly one end of data (RFC 5321 4.1.1.4 forbids bare CR
    and LF, and a server that takes one of them as a line end would see a
    smuggled "<LF>.<LF>" as the end of data).
    """

    def __init__(self):
        self.atLineStart = True
        # The last chunk ended in CR: an LF opening the next one belongs
        # to that line end.
        self._afterCR = False

    def feed(self, chunk: bytes) -> bytes:
        if self._afterCR and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if not chunk:
            return b""
        self._afterCR = chunk.endswith(b"\r")
        if b"\r" in chunk and chunk.count(b"\r") == chunk.count(b"\r\n"):
            # CRLF text without a bare CR: as LF text.
            chunk = chunk.replace(b"\r\n", b"\n")
        if b"\r" not in chunk:
            # The common case (the spool has LF line ends), at C speed.
            out = chunk.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
            if self.atLineStart and out.startswith(b"."):
                out = b"." + out
            self.atLineStart = out.endswith(b"\n")
            return out
        lines = _LINE_END.split(chunk)
        for i, line in enumerate(lines):
            if line.startswith(b".") and (i or self.atLineStart):
                lines[i] = b"." + line
        self.atLineStart = lines[-1] == b""
        return b"\r\n".join(lines)

    def end(self) -> bytes:
        """
        The end of data, after a line end if the text lacked a last one.
        """
        return (b"" if self.atLineStart else b"\r\n") + b".\r\n"


def xtext(value: str) -> str:
    # RFC 3461 4: "+", "=" and characters outside 33..126 as +HH.
    out = []
    for byte in value.encode("utf-8"):
        if byte < 33 or byte > 126 or byte in (ord("+"), ord("=")):
            out.append(f"+{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)
