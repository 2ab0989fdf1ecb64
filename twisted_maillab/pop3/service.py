"""
Builders for the C{[pop3]} (110, STLS) and C{[pop3s]} (995, implicit TLS)
sections: C{BUILDERS["pop3"]} and C{BUILDERS["pop3s"]} in
L{twisted_maillab.service}.

Both listeners share one backend per L{Resources}: the portal, the store,
the realm registration of L{IPOP3Maildrop} (the realm refuses a second
registration) and the L{SessionLocks}, so a session on 995 and one on 110
cannot hold the same mailbox at once.
"""

from __future__ import annotations

from twisted_maillab.pop3.interfaces import IPOP3Maildrop
from twisted_maillab.pop3.maildrop import maildropFactory
from twisted_maillab.pop3.protocol import POP3Factory, SessionLocks

__all__ = ["buildPOP3", "buildPOP3S"]


class _Backend:
    def __init__(self, resources):
        self.portal = resources.portal
        self.store = resources.store
        self.locks = SessionLocks()
        try:
            self.portal.realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.store))
        except ValueError:
            pass  # registered by an embedding application: use theirs


def _backend(resources) -> _Backend:
    return resources.shared("pop3", lambda: _Backend(resources))


def _factory(section, resources, implicitTLS: bool) -> POP3Factory:
    backend = _backend(resources)
    hostname = resources.config.server.hostname
    return POP3Factory(
        backend.portal,
        clock=resources.reactor,
        # POP3S connections are already encrypted; STLS is for port 110.
        tlsContext=None if implicitTLS else resources.tlsContext,
        implicitTLS=implicitTLS,
        locks=backend.locks,
        timeout=section.idle_timeout,
        maxLineLength=section.max_command_length,
        greeting=hostname.encode("ascii", "replace") + b" maillab POP3 ready.",
        plaintextOnLoopback=section.plaintext_on_loopback,
    )


def buildPOP3(config, resources):
    """
    C{[pop3]}: POP3 with STLS when C{[tls]} has a certificate.
    """
    section = config.pop3
    return resources.listen(section, _factory(section, resources, implicitTLS=False))


def buildPOP3S(config, resources):
    """
    C{[pop3s]}: POP3 over implicit TLS (RFC 8314); L{Resources.listen}
    wraps the factory in TLS.
    """
    section = config.pop3s
    return resources.listen(section, _factory(section, resources, implicitTLS=True))
