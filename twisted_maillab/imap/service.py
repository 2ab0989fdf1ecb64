"""
Builders for the C{[imap]} (143, STARTTLS) and C{[imaps]} (993, implicit
TLS) sections: C{BUILDERS["imap"]} and C{BUILDERS["imaps"]} in
L{twisted_maillab.service}.

Both listeners share one backend per L{Resources}: the portal, the store,
the realm registrations of L{IIMAPAccount} and of Twisted's
C{imap4.IAccount} (the realm refuses a second registration), the
connection counters (the per-user and per-address limits count both ports
together), and the caches of header blocks (SEARCH, SORT) and of parsed
message structures (FETCH).
"""

from __future__ import annotations

from twisted_maillab.imap.account import IIMAPAccount, accountFactory
from twisted_maillab.imap.fetch import StructureCache
from twisted_maillab.imap.limits import ConnectionCounter
from twisted_maillab.imap.server import IMAPFactory
from twisted_maillab.imap.headercache import HeaderCache
from twisted_maillab.imap.twistedseam import registerTwistedAccount

__all__ = ["buildIMAP", "buildIMAPS"]


class _Backend:
    def __init__(self, resources):
        self.portal = resources.portal
        self.store = resources.store
        self.users = ConnectionCounter()
        self.addresses = ConnectionCounter()
        self.structures = StructureCache()
        self.headers = HeaderCache()
        self.portal.realm.registerAvatarFactory(IIMAPAccount, accountFactory(self.store))
        # Twisted's imap4.IAccount over the same store, for other Twisted
        # applications in the process (twisted.mail.imap4.IMAP4Server).
        registerTwistedAccount(self.portal.realm, self.store)


def _backend(resources) -> _Backend:
    return resources.shared("imap", lambda: _Backend(resources))


def _factory(section, resources, implicitTLS: bool) -> IMAPFactory:
    backend = _backend(resources)
    config = resources.config
    hostname = config.server.hostname
    appendLimit = section.append_limit or config.smtp.message_size_limit
    return IMAPFactory(
        backend.portal,
        clock=resources.reactor,
        store=backend.store,
        tlsContext=None if implicitTLS else resources.tlsContext,
        implicitTLS=implicitTLS,
        idleTimeout=section.idle_timeout,
        loginTimeout=section.login_timeout,
        maxLineLength=section.max_line_length,
        appendLimit=appendLimit,
        maxConnectionsPerUser=section.max_connections_per_user,
        maxConnectionsPerAddress=section.max_connections_per_address,
        plaintextOnLoopback=section.plaintext_on_loopback,
        greeting=hostname.encode("ascii", "replace") + b" maillab IMAP4rev1 ready",
        users=backend.users,
        addresses=backend.addresses,
        structures=backend.structures,
        headers=backend.headers,
    )


def buildIMAP(config, resources):
    """
    C{[imap]}: IMAP with STARTTLS when C{[tls]} has a certificate.
    """
    section = config.imap
    return resources.listen(section, _factory(section, resources, implicitTLS=False))


def buildIMAPS(config, resources):
    """
    C{[imaps]}: IMAP over implicit TLS (RFC 8314); L{Resources.listen}
    wraps the factory in TLS.
    """
    section = config.imaps
    return resources.listen(section, _factory(section, resources, implicitTLS=True))
