"""
What the SMTP server knows about a listener (L{Settings}), a connection
(L{Session}) and a mail transaction (L{Envelope}); the policy and the
delivery get these, never the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted_maillab.smtp.envelope import Mailbox, MailParams

__all__ = ["Settings", "Session", "Envelope"]


@dataclass(frozen=True)
class Settings:
    """
    What one listener was configured with (from [smtp] and, for the
    submission listeners, their own section).
    """

    hostname: str
    banner: str
    listener: str = "smtp"
    sizeLimit: int = 10240000
    commandTimeout: float = 300.0
    dataTimeout: float = 300.0
    maxRecipients: int = 1000
    maxConnectionsPerClient: int = 50
    authEnable: bool = True
    tlsAuthOnly: bool = True
    plaintextOnLoopback: bool = True
    tlsRequired: bool = False
    requireAuth: bool = False
    vrfy: str = "ambiguous"
    rejectSenderMismatch: bool = True
    peernameLookup: bool = True
    bareNewline: str = "normal"


class Session:
    """
    What the server knows about one connection (passed to the policy and
    the delivery).

    @ivar host: the client's IP address (text).
    @ivar helo: the HELO/EHLO argument or L{None}.
    @ivar esmtp: EHLO (not HELO) was used.
    @ivar account: the authenticated L{Account} or L{None}.
    @ivar authName: the login name used.
    @ivar reverseName: the client's verified name, or L{None}.
    @ivar utf8: the current transaction uses SMTPUTF8.
    """

    def __init__(self, host: str, port: int, hostname: str, listener: str):
        self.host = host
        self.port = port
        self.hostname = hostname
        self.listener = listener
        self.helo: str | None = None
        self.esmtp = False
        self.tls = False
        self.tlsHandle = None
        self.account = None
        self.authName: str | None = None
        self.authMechanism: str | None = None
        self.reverseName: str | None = None
        self.utf8 = False

    def tlsInfo(self):
        """
        C{(version, cipher, bits)} of the TLS connection, or L{None}.
        """
        if not self.tls:
            return None
        handle = self.tlsHandle
        try:
            return (
                handle.get_protocol_version_name(),
                handle.get_cipher_name(),
                handle.get_cipher_bits(),
            )
        except Exception:
            return ("TLS", "unknown", 0)

    def withProtocol(self) -> str:
        """
        The RFC 3848 / RFC 6531 3.7.3 "with" keyword for Received:.
        """
        base = ("UTF8SMTP" if self.utf8 else "ESMTP") if self.esmtp else "SMTP"
        if self.tls:
            base += "S"
        if self.account is not None:
            base += "A"
        return base

    def describe(self) -> str:
        return f"{self.reverseName or 'unknown'}[{self.host}]"


@dataclass
class Envelope:
    """
    One mail transaction.
    """

    sender: Mailbox
    params: MailParams
    queueId: str
    recipients: list = field(default_factory=list)
    arrival: float = 0.0
