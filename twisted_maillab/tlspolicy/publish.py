"""
What we publish about our own outbound-facing mail service, from
C{[smtp]}: the MTA-STS record and policy file (RFC 8461 3), the TLS-RPT
record (RFC 8460 3) and a TLSA record for our MX (RFC 7672 3.1, 3 1 1:
the SHA-256 of the certificate's public key, which survives a renewal
with the same key).

The C{_mta-sts} id is a digest of the policy text, so it changes exactly
when the policy does (RFC 8461 3.1: senders refetch when it changes).
"""

from __future__ import annotations

import hashlib

from twisted.web.resource import NoResource, Resource
from zope.interface import implementer

from twisted_maillab.interfaces import IRecordPublisher

__all__ = ["policyText", "policyId", "TLSRecordPublisher", "MTASTSPolicyResource", "mtaStsResource", "mountMTASTS"]

POLICY_PATH = (b".well-known", b"mta-sts.txt")


def _hostname(config) -> str:
    return (config.smtp.myhostname or config.server.hostname).lower().rstrip(".")


def policyText(config) -> str | None:
    """
    Our MTA-STS policy file (RFC 8461 3.2, CRLF line ends), or L{None}
    when C{mta_sts_mode} is C{none}.
    """
    smtp = config.smtp
    if smtp.mta_sts_mode == "none":
        return None
    patterns = smtp.mta_sts_mx or (_hostname(config),)
    lines = ["version: STSv1", f"mode: {smtp.mta_sts_mode}"]
    lines += [f"mx: {pattern.lower().rstrip('.')}" for pattern in patterns]
    lines.append(f"max_age: {int(smtp.mta_sts_max_age)}")
    return "".join(line + "\r\n" for line in lines)


def policyId(text: str) -> str:
    # RFC 8461 3.1: 1-32 letters or digits.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def tlsaRecord(config) -> str | None:
    """
    C{3 1 1 <hex>} for the C{[tls]} certificate, or L{None} when
    C{tlsa_publish} is off or there is no certificate.
    """
    from twisted_maillab.tlspolicy.dane import spkiDigest

    if not config.smtp.tlsa_publish or not config.tls.configured:
        return None
    return f"3 1 1 {spkiDigest(config.tls.certificate.read_bytes()).hex()}"


@implementer(IRecordPublisher)
class TLSRecordPublisher:
    """
    C{_mta-sts} and C{_smtp._tls} TXT in each of our mail domains' zones,
    TLSA at C{_25._tcp.<our host name>} in the zone holding that name.
    """

    name = "MTA-STS, TLS-RPT and TLSA records"

    def records(self, config, origin):
        zone = origin.rstrip(".").lower()
        smtp = config.smtp
        out = []
        if zone in config.mailDomains():
            text = policyText(config)
            if text is not None:
                out.append(f'_mta-sts IN TXT "v=STSv1; id={policyId(text)}"')
            if smtp.tlsrpt_rua:
                out.append(f'_smtp._tls IN TXT "v=TLSRPTv1; rua={",".join(smtp.tlsrpt_rua)}"')
        host = _hostname(config)
        if host == zone or host.endswith("." + zone):
            # Blocking read of the certificate: publishers run in a thread.
            tlsa = tlsaRecord(config)
            if tlsa is not None:
                out.append(f"_25._tcp.{host}. IN TLSA {tlsa}")
        return out


class MTASTSPolicyResource(Resource):
    """
    The policy file at C{/.well-known/mta-sts.txt}, answered only for the
    host names C{mta-sts.<one of our domains>} (RFC 8461 3.3), as
    C{text/plain}.
    """

    isLeaf = True

    def __init__(self, config):
        super().__init__()
        self.text = policyText(config)
        self.hosts = {f"mta-sts.{domain}" for domain in config.mailDomains()}

    def render_GET(self, request):
        host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
        if host.startswith("["):
            host = host.split("]")[0] + "]"
        else:
            host = host.split(":")[0]
        if self.text is None or host.rstrip(".") not in self.hosts or request.postpath:
            return NoResource().render(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.text.encode("utf-8")

    render_HEAD = render_GET


def mtaStsResource(config) -> MTASTSPolicyResource:
    """
    The policy file resource for a config; mount it at
    C{/.well-known/mta-sts.txt} (L{mountMTASTS}).
    """
    return MTASTSPolicyResource(config)


def mountMTASTS(root: Resource, config) -> Resource:
    """
    Put the policy file at C{/.well-known/mta-sts.txt} under C{root}
    (creating C{.well-known} if C{root} has none).

    @return: C{root}.
    """
    wellKnown = root.children.get(POLICY_PATH[0])
    if wellKnown is None:
        wellKnown = Resource()
        root.putChild(POLICY_PATH[0], wellKnown)
    wellKnown.putChild(POLICY_PATH[1], mtaStsResource(config))
    return root


def policyHost(config, context) -> Resource:
    """
    The C{[http]} virtual host C{mta-sts.<domain>}
    (L{twisted_maillab.http.site.HOSTS}): the policy file and nothing else.
    """
    return mountMTASTS(Resource(), config)
