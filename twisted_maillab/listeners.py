"""
What address a C{listen} endpoint string will bind, found when the config
is read: the port range, the interface (an IP literal or a name that
resolves), and whether two listeners of the process would take the same
address and port.

Twisted's C{tcp:}, C{tcp6:} and C{ssl:} server endpoints all end in
C{reactor.listenTCP}, whose L{twisted.internet.tcp.Port} picks the address
family from the interface alone: an IPv6 literal binds an C{AF_INET6}
socket, anything else an C{AF_INET} one (a name is resolved by C{bind} as
IPv4).  C{tcp6:} only changes the default interface to C{::}.  The same
holds for L{twisted.internet.udp.Port}, which C{[dns]} binds beside TCP.

Twisted never sets C{IPV6_V6ONLY}, so on Linux with
C{net.ipv6.bindv6only = 0} (the default, Debian's too) a socket bound to
C{::} also takes every IPv4 address of its port: C{tcp:25:interface=0.0.0.0}
beside C{tcp6:25:interface=\\:\\:} fails with "Address already in use".
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

BINDV6ONLY = "/proc/sys/net/ipv6/bindv6only"


@dataclass(frozen=True)
class Address:
    """
    Where one endpoint binds: C{host} is an IP address string (a name is
    resolved), C{port} the port number (0: any free port).
    """

    host: str
    port: int

    @property
    def ip(self):
        return ipaddress.ip_address(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _interface(endpoint) -> tuple[str, int] | None:
    # TCP4ServerEndpoint, TCP6ServerEndpoint and SSL4ServerEndpoint keep
    # the values they pass to listenTCP/listenSSL in _interface and _port.
    from twisted.internet.endpoints import (
        SSL4ServerEndpoint,
        TCP4ServerEndpoint,
        TCP6ServerEndpoint,
    )

    if isinstance(endpoint, TCP6ServerEndpoint):
        return endpoint._interface or "::", endpoint._port
    if isinstance(endpoint, (TCP4ServerEndpoint, SSL4ServerEndpoint)):
        return endpoint._interface or "0.0.0.0", endpoint._port
    return None


def resolve(endpoint) -> Address | None:
    """
    The address a server endpoint built by C{serverFromString} will bind,
    or L{None} for endpoints that bind no IP address (C{unix:},
    C{systemd:}).

    @raise ValueError: the port is out of range, or the interface is
        neither an IP address nor a name that resolves.
    """
    found = _interface(endpoint)
    if found is None:
        return None
    interface, port = found
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    try:
        return Address(str(ipaddress.ip_address(interface)), port)
    except ValueError:
        pass
    try:
        # What socket.bind does with a name on the AF_INET socket Twisted
        # opens for a non-IPv6 interface: the first IPv4 address.
        infos = socket.getaddrinfo(interface, port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise ValueError(
            f"interface {interface!r} is not an IP address and does not resolve ({reason})"
        ) from None
    return Address(infos[0][4][0], port)


def dualStack(path: str = BINDV6ONLY) -> bool:
    """
    Whether a socket bound to C{::} also takes IPv4 (Linux's
    C{net.ipv6.bindv6only} is 0, or unreadable: assume the default).
    """
    try:
        with open(path) as f:
            return f.read().strip() == "0"
    except OSError:
        return True


def _mappedV4(ip):
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def overlap(a: Address, b: Address, dualStack: bool = True) -> str | None:
    """
    Why binding C{a} and C{b} in one process fails, or L{None} if both can
    be bound.  Port 0 never collides (the kernel picks a free port).
    Linux refuses a second listening socket on a port when either address
    is the wildcard of the other's family, even with C{SO_REUSEADDR}.
    """
    if a.port != b.port or a.port == 0:
        return None
    x, y = _mappedV4(a.ip), _mappedV4(b.ip)
    if x == y:
        return "the same address and port"
    if x.version == y.version:
        if x.is_unspecified or y.is_unspecified:
            return "the wildcard address takes every address of its port"
        return None
    if dualStack:
        wildcard, v4 = (x, y) if x.version == 6 else (y, x)
        if wildcard.is_unspecified:
            why = "[::] also takes IPv4 (net.ipv6.bindv6only = 0)"
            return f"{why}; list only the tcp6 one" if v4.is_unspecified else why
    return None
