"""
The outbound TLS decision for one destination domain and each of its MX
hosts, from (highest first):

  1. the operator's table (C{smtp_tls_policy_maps}): an explicit level
     overrides DANE and MTA-STS, as in Postfix;
  2. DANE (RFC 7672), when the resolver is configured as validating
     (C{smtp_dns_support_level = dnssec}) and the host's TLSA records come
     with the AD bit; RFC 8461 2: MTA-STS never overrides a failing DANE
     check;
  3. MTA-STS (RFC 8461): C{enforce} keeps only the MX hosts its C{mx}
     patterns match and verifies their certificates; C{testing} checks and
     reports, and delivers whatever the result;
  4. C{smtp_tls_security_level} (default C{may}: opportunistic, RFC 7435).

A level that forbids plaintext is enforced by deferring (4.7.x), never by
sending in clear; each outcome is counted for TLS-RPT (RFC 8460) when the
domain has a DANE or MTA-STS policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.names import dns
from zope.interface import implementer

from twisted_maillab.interfaces import IOutboundTLSPolicy
from twisted_maillab.smtp.relayclient import TLSPolicyFailure
from twisted_maillab.tlspolicy.certs import CertificateFailure, checkName, verifyChain
from twisted_maillab.tlspolicy.dane import isSecure, lookupTLSA, matchChain
from twisted_maillab.tlspolicy.maps import PolicyMap
from twisted_maillab.tlspolicy.tlsrpt import PolicyKey

__all__ = ["OutboundTLSPolicy", "DomainPlan", "HostPolicy", "ServerNameIndication"]

log = Logger(namespace="twisted_maillab.tlspolicy")


@implementer(IOpenSSLClientConnectionCreator)
class ServerNameIndication:
    """
    A client TLS connection with the MX host name as C{server_name} (RFC
    6066 3; RFC 7672 8.1: a DANE client sends it, so a server with several
    certificates presents the one its TLSA records describe), on the
    context of the queue's C{CertificateOptions}.
    """

    def __init__(self, options, host: str):
        self.options = options
        self.host = host

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self.options.getContext(), None)
        connection.set_app_data(tlsProtocol)
        connection.set_tlsext_host_name(self.host.encode("idna"))
        return connection


@dataclass
class HostPolicy:
    """
    What one MX host's TLS must satisfy.

    @ivar level: C{none} (plaintext), C{may} (opportunistic), C{encrypt}
        (TLS, any certificate), C{verify} (a certificate chaining to a
        trust anchor, valid for the MX host name) or C{dane} (matching a
        TLSA record).
    @ivar enforced: a failure defers the delivery; else (MTA-STS
        C{testing}) it is only reported.
    @ivar source: where the level comes from, for replies and logs.
    """

    level: str = "may"
    enforced: bool = True
    source: str = "default"
    anchors: list = field(default_factory=list)
    tlsa: tuple = ()
    report: PolicyKey | None = None
    recorder: object = None

    @property
    def wantsTLS(self) -> bool:
        return self.level != "none"

    @property
    def requiresTLS(self) -> bool:
        return self.enforced and self.level in ("encrypt", "verify", "dane")

    def clientTLS(self, options, host: str):
        """
        What the STARTTLS handshake with C{host} uses: C{options} with SNI
        for a host name.
        """
        if ":" in host or host.replace(".", "").isdigit():
            return options
        return ServerNameIndication(options, host)

    def _record(self, resultType, host, address) -> None:
        if self.report is not None and self.recorder is not None:
            self.recorder.record(self.report, resultType, host, address)

    def noStartTLS(self, host: str, address: str) -> None:
        """
        The server did not offer STARTTLS (or refused it).

        @raise TLSPolicyFailure: TLS is required.
        """
        if self.level in ("encrypt", "verify", "dane"):
            self._record("starttls-not-supported", host, address)
        if self.requiresTLS:
            raise TLSPolicyFailure(
                f"4.7.4 TLS is required for {host} ({self.source}) but the server offers no STARTTLS",
                resultType="starttls-not-supported",
            )

    def handshakeFailed(self, host: str, address: str) -> bool:
        """
        The STARTTLS handshake failed.

        @return: whether a plaintext retry is allowed (when TLS is not
            required: C{may}, MTA-STS C{testing}).
        """
        if self.level in ("encrypt", "verify", "dane"):
            self._record("validation-failure", host, address)
        return not self.requiresTLS

    def checkPeer(self, connection, host: str, address: str) -> str:
        """
        Check the certificate of a finished handshake (a pyOpenSSL
        C{Connection}).

        @return: the trust word Postfix logs (C{Verified}, C{Untrusted},
            C{Anonymous}).
        @raise TLSPolicyFailure: the level is not met and is enforced.
        """
        chain = connection.get_peer_cert_chain() or []
        if self.level not in ("verify", "dane"):
            if self.level == "encrypt":
                self._record(None, host, address)
            return "Untrusted" if chain else "Anonymous"
        try:
            if self.level == "dane":
                # RFC 7672 3.2.2: the reference identifiers are the MX
                # host name (the TLSA base domain) and the next-hop domain
                # only for a non-MX destination; we use the host.
                matchChain(self.tlsa, chain, [host])
            else:
                verifyChain(chain, self.anchors)
                # RFC 8461 4.1: valid for the MX host name.
                checkName(chain[0], [host])
        except CertificateFailure as e:
            self._record(e.resultType, host, address)
            log.info(
                "{tlsLevel} certificate check of {host}[{address}] failed ({source}): {reason}",
                tlsLevel=self.level,
                host=host,
                address=address,
                source=self.source,
                reason=str(e),
            )
            if self.enforced:
                raise TLSPolicyFailure(
                    f"4.7.5 {host}[{address}]: {e} ({self.source})", resultType=e.resultType
                ) from None
            return "Untrusted"
        self._record(None, host, address)
        return "Verified"


class DomainPlan:
    """
    The MX hosts a domain may be delivered to and, host by host, the TLS
    they must offer.
    """

    def __init__(self, owner: "OutboundTLSPolicy", domain: str, hosts: list[str], base: HostPolicy, fixed: bool, resolver=None):
        self.owner = owner
        self.resolver = resolver
        # Whether the MX RRset is DNSSEC-secure (asked once, at the first
        # host): RFC 7672 2.2.1.
        self._mxSecure = None
        self.domain = domain
        self.hosts = hosts
        self.base = base
        self.fixed = fixed

    async def forHost(self, host: str) -> HostPolicy:
        """
        @raise TLSPolicyFailure: the host's TLSA lookup failed (RFC 7672
            2.2: defer rather than fall back to weaker security).
        """
        owner = self.owner
        if self.fixed or not owner.dnssec or host.replace(".", "").isdigit() or ":" in host:
            return self.base
        if self._mxSecure is None:
            # The MX RRset (or, for the implicit MX, its absence; RFC 7672
            # 2.2.2) must be secure for the hosts' TLSA records to count.
            self._mxSecure = await isSecure(owner.reactor, owner.clock, self.resolver, self.domain, dns.MX)
        if not self._mxSecure:
            return self.base
        result = await lookupTLSA(owner.reactor, owner.clock, self.resolver, host)
        if result.failure is not None:
            # RFC 8460 4.3.2.1: no valid answer from the validating resolver.
            if owner.recorder is not None:
                owner.recorder.record(PolicyKey(self.domain, "tlsa", (), host), "dnssec-invalid", host, None)
            raise TLSPolicyFailure(f"4.7.5 {host}: {result.failure} (DANE)", resultType="dnssec-invalid")
        if not result.secure or not result.records:
            return self.base
        key = PolicyKey(self.domain, "tlsa", tuple(r.text() for r in result.records), host)
        usable = tuple(r for r in result.records if r.usable)
        # RFC 7672 3.1.3: with no usable record, TLS is still mandatory,
        # without authentication.
        return HostPolicy(
            level="dane" if usable else "encrypt",
            source="DANE",
            tlsa=usable,
            report=key,
            recorder=owner.recorder,
        )


@implementer(IOutboundTLSPolicy)
class OutboundTLSPolicy:
    """
    @param policyMap: a L{PolicyMap}.
    @param defaultLevel: C{smtp_tls_security_level}.
    @param anchors: pyOpenSSL trust anchors for C{verify} and MTA-STS.
    @param sts: an L{twisted_maillab.tlspolicy.mtasts.STSLookup}, or
        L{None} to ignore MTA-STS.
    @param dnssec: the resolver validates: look TLSA records up.
    @param recorder: a L{twisted_maillab.tlspolicy.tlsrpt.SessionRecorder}
        or L{None}.
    """

    def __init__(
        self,
        *,
        reactor,
        clock,
        policyMap: PolicyMap | None = None,
        defaultLevel: str = "may",
        anchors: list | None = None,
        sts=None,
        dnssec: bool = False,
        recorder=None,
    ):
        self.reactor = reactor
        self.clock = clock
        self.policyMap = policyMap or PolicyMap()
        self.defaultLevel = defaultLevel
        self.anchors = anchors or []
        self.sts = sts
        self.dnssec = dnssec
        self.recorder = recorder

    async def forDomain(self, domain: str, hosts: list[str], resolver) -> DomainPlan:
        """
        @param hosts: the domain's MX hosts, best first.
        @param resolver: the queue's resolver (an C{IResolver}; for DANE,
            a C{twisted.names.client.Resolver}, whose C{pickServer} names
            the validating resolver to ask).
        @raise TLSPolicyFailure: MTA-STS C{enforce} allows none of them.
        """
        level = self.policyMap.level(domain)
        if level is not None:
            return DomainPlan(self, domain, hosts, HostPolicy(level=level, source="tls_policy", anchors=self.anchors), True, resolver)
        base = HostPolicy(level=self.defaultLevel, source="default", anchors=self.anchors)
        if self.sts is None or domain.startswith("["):
            return DomainPlan(self, domain, hosts, base, False, resolver)
        policy, error = await self.sts.policy(domain, resolver)
        if error is not None and self.recorder is not None:
            self.recorder.record(PolicyKey(domain, "no-policy-found", (), None), error.resultType, None, None)
        if policy is None or policy.mode == "none":
            return DomainPlan(self, domain, hosts, base, False, resolver)
        enforce = policy.mode == "enforce"
        key = PolicyKey(domain, "sts", tuple(policy.strings()), None)
        stsBase = HostPolicy(
            level="verify", enforced=enforce, source=f"MTA-STS {policy.mode}", anchors=self.anchors,
            report=key, recorder=self.recorder,
        )
        allowed = [host for host in hosts if policy.allows(host)]
        if len(allowed) < len(hosts):
            log.info(
                "MTA-STS {mode} policy of {domain} excludes {hosts}",
                mode=policy.mode,
                domain=domain,
                hosts=", ".join(h for h in hosts if h not in allowed),
            )
        if enforce:
            if not allowed:
                if self.recorder is not None:
                    for host in hosts:
                        self.recorder.record(key, "validation-failure", host, None)
                raise TLSPolicyFailure(
                    f"4.7.5 no MX host of {domain} matches its MTA-STS policy (mx: {', '.join(policy.mx)})",
                    resultType="validation-failure",
                )
            hosts = allowed
        return DomainPlan(self, domain, hosts, stsBase, False, resolver)
