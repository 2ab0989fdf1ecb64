"""
The outbound TLS policy and the TLS-RPT reporter built from C{[smtp]},
for L{twisted_maillab.smtp.service}.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer

from twisted_maillab.tlspolicy.certs import loadAnchors, trustStore
from twisted_maillab.tlspolicy.maps import PolicyMapError, loadPolicyMap
from twisted_maillab.tlspolicy.mtasts import PolicyFetcher, STSCache, STSLookup
from twisted_maillab.tlspolicy.policy import OutboundTLSPolicy
from twisted_maillab.tlspolicy.tlsrpt import Reporter, SessionRecorder

__all__ = ["buildOutboundPolicy", "buildReporter", "ReporterService"]


def buildOutboundPolicy(config, *, reactor, clock, runner, httpsPort: int = 443) -> OutboundTLSPolicy:
    """
    Read the policy table and the trust anchors (at start-up: blocking
    reads are fine before the reactor runs).

    @param httpsPort: the port MTA-STS policies are fetched from (443).
    @raise ConfigError: the table or the CA file is unusable.
    """
    smtp = config.smtp
    policyMap = None
    if smtp.smtp_tls_policy_maps is not None:
        try:
            policyMap = loadPolicyMap(smtp.smtp_tls_policy_maps)
        except PolicyMapError as e:
            raise config.error("smtp", "smtp_tls_policy_maps", str(e)) from None
    try:
        pems = trustStore(smtp.smtp_tls_ca_file)
        anchors = loadAnchors(pems)
    except Exception as e:
        raise config.error("smtp", "smtp_tls_ca_file", f"trust anchors unusable: {e}") from None
    if smtp.smtp_tls_ca_file is not None and not anchors:
        raise config.error("smtp", "smtp_tls_ca_file", f"{smtp.smtp_tls_ca_file}: no PEM certificate in the file")
    sts = None
    if smtp.smtp_mta_sts:
        fetcher = PolicyFetcher(reactor, clock, pems if smtp.smtp_tls_ca_file is not None else [], port=httpsPort)
        cache = STSCache(config.server.state_directory / "mta-sts", runner)
        sts = STSLookup(fetcher, cache, clock)
    return OutboundTLSPolicy(
        reactor=reactor,
        clock=clock,
        policyMap=policyMap,
        defaultLevel=smtp.smtp_tls_security_level,
        anchors=anchors,
        sts=sts,
        dnssec=smtp.smtp_dns_support_level == "dnssec",
        recorder=(
            SessionRecorder(clock, config.server.state_directory / "tlsrpt.json", runner)
            if smtp.smtp_tls_reporting
            else None
        ),
    )


def buildReporter(config, policy: OutboundTLSPolicy, queue, resolver, clock) -> Reporter | None:
    """
    The daily TLS-RPT sender, or L{None} when reporting is off.
    """
    if policy.recorder is None:
        return None
    domain = config.server.domain
    return Reporter(
        policy.recorder,
        resolver,
        lambda sender, recipients, data: defer.ensureDeferred(queue.enqueue(sender, recipients, data)),
        clock,
        submitter=domain,
        sender=f"postmaster@{domain}",
        contact=f"mailto:postmaster@{domain}",
    )


class ReporterService(Service):
    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def startService(self):
        super().startService()
        self.reporter.start()

    def stopService(self):
        super().stopService()
        # The counts are saved before the process ends.
        return self.reporter.stop()
