"""
The C{[http]} builder: C{BUILDERS["http"]} in L{twisted_maillab.service}.
"""

from __future__ import annotations

from twisted.internet import threads
from twisted.internet.interfaces import IReactorThreads

from twisted_maillab.http.site import MailSite, SiteContext, buildResource
from twisted_maillab.metrics import ReactorLagService

__all__ = ["buildHTTP"]


def _threadRunner(reactor):
    def run(f, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run


def _watchPools(metrics, resources) -> None:
    # The thread pools whose queues show an overloaded process: the
    # reactor's (SMTP policy lookups, the queue's spool I/O), the store's
    # and the password checks'.
    reactor = resources.reactor
    if IReactorThreads.providedBy(reactor):
        metrics.watch("pool:reactor", lambda: reactor.getThreadPool().q.qsize())
    store = resources.store
    metrics.watch("pool:store", store.queuedJobs)
    checks = resources.portal.pool
    if checks is not None:
        # pending counts the checks running too: at most size of them.
        metrics.watch("pool:auth", lambda: max(0, checks.pending - checks.size))


def buildHTTP(config, resources):
    """
    C{[http]}: the site of L{buildResource} on every C{listen} value, in
    TLS with the C{[tls]} certificate when C{https = yes}; and the reactor
    lag measurement that C{/metrics} reports.
    """
    section = config.http
    if section.https and resources.tlsContext is None:
        raise config.error("http", "https", "HTTPS needs [tls] certificate and private_key")
    metrics = resources.metrics
    group = None

    def services():
        # The whole tree the builder's group was put in by makeService.
        return group.parent if group is not None else None

    context = SiteContext(metrics=metrics, services=services, runner=_threadRunner(resources.reactor))
    site = MailSite(
        buildResource(config, context),
        maxRequestSize=section.max_request_size,
        timeout=section.request_timeout,
        reactor=resources.reactor,
    )
    _watchPools(metrics, resources)
    group = resources.listen(section, site, implicitTLS=section.https)
    ReactorLagService(metrics, resources.reactor).setServiceParent(group)
    return group
