"""
The mail authentication objects of a running configuration, for the SMTP
backend (L{twisted_maillab.smtp.service}).
"""

from __future__ import annotations

from twisted_maillab.mailauth.inbound import InboundAuth
from twisted_maillab.mailauth.lookup import Lookup
from twisted_maillab.mailauth.publish import keyStore
from twisted_maillab.mailauth.signing import Signer, signingDomains

__all__ = ["makeSigner", "makeInbound"]


def makeSigner(config) -> Signer | None:
    """
    The outbound signer, or L{None} under C{dkim_sign = no}.
    """
    if not config.mailauth.dkim_sign:
        return None
    return Signer(keyStore(config), signingDomains(config))


def makeInbound(config, store, runner, hostname: str) -> InboundAuth | None:
    """
    The MX's checks, or L{None} under C{inbound_checks = no}.
    """
    settings = config.mailauth
    if not settings.inbound_checks:
        return None
    # Held messages are written under the state directory, not in /tmp,
    # which may be a tmpfs (memory) and too small for message_size_limit.
    held = config.server.state_directory / "held"
    try:
        held.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise config.error("server", "state_directory", f"{held}: cannot be created: {e.strerror}") from None
    return InboundAuth(
        Lookup(config.smtp.resolvers, settings.dns_timeout),
        settings,
        store,
        runner,
        authservId=hostname,
        junkFolder=config.store.junk_folder,
        temporary=held,
    )
