"""
The records of mail authentication, generated for our zones when
C{[dns] publish_mail_records} is on: for each domain we sign for that the
zone holds, its DKIM keys at C{<selector>._domainkey} (RFC 6376 3.6.2.1;
the signing generation's and the retired ones still within their TTL and
grace), SPF at the domain (RFC 7208 3) and DMARC at C{_dmarc} (RFC 7489
6.1).  The keys are created here if the domain has none yet, so the zone
served at the first start already holds them.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted_maillab.interfaces import IRecordPublisher
from twisted_maillab.mailauth.keys import KeyStore
from twisted_maillab.mailauth.signing import signingDomains

__all__ = ["MailAuthPublisher", "txtData", "keyStore", "dmarcRecord"]


def txtData(text: str) -> str:
    """
    TXT rdata in master-file form: the text in character-strings of at
    most 255 octets (RFC 1035 3.3.14), each quoted.
    """
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    out = []
    for chunk in chunks:
        escaped = chunk.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{escaped}"')
    return " ".join(out)


def keyStore(config) -> KeyStore:
    """
    The L{KeyStore} of a configuration.
    """
    settings = config.mailauth
    return KeyStore(
        config.server.state_directory / "dkim", ttl=settings.dkim_record_ttl, grace=settings.dkim_rotation_grace
    )


def dmarcRecord(config, domain: str) -> str:
    """
    C{[mailauth] dmarc_record}, else C{p=quarantine} with aggregate
    reports to C{dmarc_rua} (RFC 7489 6.3).
    """
    settings = config.mailauth
    if settings.dmarc_record:
        return settings.dmarc_record
    rua = settings.dmarc_rua if "@" in settings.dmarc_rua else f"{settings.dmarc_rua}@{domain}"
    return f"v=DMARC1; p=quarantine; rua=mailto:{rua}"


@implementer(IRecordPublisher)
class MailAuthPublisher:
    name = "mail authentication (DKIM keys, SPF, DMARC)"

    def records(self, config, origin: str):
        zone = origin.lower().rstrip(".")
        store = keyStore(config)
        ttl = int(config.mailauth.dkim_record_ttl)
        lines = []
        for domain in signingDomains(config):
            if domain != zone and not domain.endswith("." + zone):
                continue
            owner = f"{domain}."
            if config.mailauth.dkim_sign:
                for key in store.publishedKeys(domain):
                    lines.append(f"{key.selector}._domainkey.{owner} {ttl} IN TXT {txtData(key.record())}")
            if config.mailauth.spf_record != "none":
                lines.append(f"{owner} IN TXT {txtData(config.mailauth.spf_record)}")
            if config.mailauth.dmarc_record != "none":
                lines.append(f"_dmarc.{owner} IN TXT {txtData(dmarcRecord(config, domain))}")
        return lines
