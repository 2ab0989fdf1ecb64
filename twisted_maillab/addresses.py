"""
Client addresses as every protocol sees them.

A dual-stack listener (C{tcp6:...:interface=::}) reports IPv4 clients as
IPv4-mapped IPv6 (C{::ffff:192.0.2.1}, RFC 4291 2.5.5.2), and a link-local
IPv6 peer may carry a scope (C{fe80::1%eth0}); policy (relay networks,
loopback trust, throttling, transfer ACLs, rate limiting) must treat those
as the addresses they stand for.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def clientAddress(host: str | None):
    """
    The IP address of a peer's host string, IPv4-mapped addresses unmapped
    and any scope dropped.

    @return: an L{ipaddress.IPv4Address} or L{ipaddress.IPv6Address}, or
        L{None} when C{host} is not an IP address (a UNIX socket, C{unknown}).
    """
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _candidates(host: str | None) -> tuple:
    # Parsing costs more than matching; clients reconnect from the same
    # few addresses, so the parse is cached (addresses are immutable).
    address = clientAddress(host)
    if address is None:
        return ()
    if address.version == 4:
        return (address, ipaddress.IPv6Address("::ffff:" + str(address)))
    return (address,)


def inNetworks(host: str | None, networks) -> bool:
    """
    Whether a client is in one of C{networks}.  An IPv4 client matches both
    IPv4 networks and IPv4-mapped IPv6 ones (Postfix's
    C{[::ffff:127.0.0.0]/104}), whichever form the socket reported.
    """
    candidates = _candidates(host)
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )
