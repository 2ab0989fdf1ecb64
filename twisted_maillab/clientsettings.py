"""
What a mail client needs to know to use this suite, derived from the
running config: the enabled listeners a client speaks to, the host name and
ports it reaches them on, their TLS kind and the login name form.

Mozilla autoconfig and Microsoft Autodiscover (C{[http]}) and the RFC 6186
SRV records (L{twisted_maillab.dns.servicerecords}) are all written from
L{clientServices}, so the documents and the DNS records describe the same
listeners and neither can advertise a port that is not served.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.endpoints import serverFromString

from twisted_maillab import listeners
from twisted_maillab.config import IMPLICIT_TLS, Config

__all__ = [
    "MailService",
    "clientServices",
    "publicHostname",
    "publicPort",
    "loginIsAddress",
    "loginName",
]

# Listener section -> protocol, in the order clients should prefer them:
# RFC 8314 3: implicit TLS before STARTTLS.
PROTOCOLS = (
    ("imaps", "imap"),
    ("imap", "imap"),
    ("pop3s", "pop3"),
    ("pop3", "pop3"),
    ("submissions", "smtp"),
    ("submission", "smtp"),
)


@dataclass(frozen=True)
class MailService:
    """
    One listener as a client sees it.

    @ivar listener: the config section (C{"imaps"}).
    @ivar protocol: C{"imap"}, C{"pop3"} or C{"smtp"}.
    @ivar hostname: the name the client connects to.
    @ivar port: the port it connects to.
    @ivar security: C{"SSL"} (implicit TLS), C{"STARTTLS"} or C{"plain"}
        (no C{[tls]} certificate: the listener offers no TLS at all), as
        Thunderbird's C{socketType} spells them.
    """

    listener: str
    protocol: str
    hostname: str
    port: int
    security: str


def publicHostname(config: Config) -> str:
    """
    The host name clients connect to: C{[server] public_hostname}, else
    C{[server] hostname}.
    """
    return (config.server.public_hostname or config.server.hostname).rstrip(".").lower()


def publicPort(config: Config, name: str) -> int | None:
    """
    The port clients reach listener C{name} on: its C{[server]
    public_ports} entry, else the port of its first C{listen} value, or
    L{None} when neither says one (a C{systemd:} or C{unix:} endpoint, port
    0).
    """
    for listener, port in config.server.public_ports:
        if listener == name:
            return port
    section = config.sections.get(name)
    for description in getattr(section, "listen", ()):
        try:
            address = listeners.resolve(serverFromString(None, description))
        except Exception:
            continue
        if address is not None and address.port:
            return address.port
    return None


def clientServices(config: Config) -> list[MailService]:
    """
    Every enabled listener a mail client uses, preferred first, with the
    host name and port clients reach it on.  A listener whose port cannot
    be told (see L{publicPort}) is left out.
    """
    hostname = publicHostname(config)
    tls = config.tls.configured
    found = []
    for name, protocol in PROTOCOLS:
        section = config.sections.get(name)
        if section is None or not section.enabled:
            continue
        port = publicPort(config, name)
        if port is None:
            continue
        if name in IMPLICIT_TLS:
            security = "SSL"
        else:
            security = "STARTTLS" if tls else "plain"
        found.append(MailService(name, protocol, hostname, port, security))
    return found


def loginIsAddress(config: Config) -> bool:
    """
    Whether clients log in with the whole address (else its local part):
    C{[http] login_name}, whose C{auto} follows C{[auth]}: virtual users of
    a passwd-file are addresses, system users (C{unix}, C{pam}) are the
    local part.  Both forms name the same account when the domain is a
    local one (README "Usernames"); this picks the one people expect.
    """
    choice = config.http.login_name
    if choice == "auto":
        return config.auth.checkers[0] == "passwd-file"
    return choice == "address"


def loginName(config: Config, address: str | None) -> str:
    """
    The login for C{address}, or Thunderbird's placeholder
    (C{%EMAILADDRESS%}, C{%EMAILLOCALPART%}) when no address is known.
    """
    if address is None:
        return "%EMAILADDRESS%" if loginIsAddress(config) else "%EMAILLOCALPART%"
    return address if loginIsAddress(config) else address.rpartition("@")[0]
