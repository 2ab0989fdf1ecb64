"""
Builders for C{[smtp]} (MX, port 25), C{[submission]} (587, STARTTLS) and
C{[submissions]} (465, implicit TLS): C{BUILDERS["smtp"]},
C{BUILDERS["submission"]} and C{BUILDERS["submissions"]} in
L{twisted_maillab.service}.  The three listeners share the policy keys of
C{[smtp]} and one backend per L{Resources} (portal, store, aliases).
"""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.mail.smtp import IMessageDelivery
from zope.interface import implementer

from twisted_maillab.smtp.aliases import AliasError, loadAliases
from twisted_maillab.smtp.delivery import DeliveryRouter, QueueIds
from twisted_maillab.smtp.policy import Policy, expandDestinations
from twisted_maillab.smtp.server import Settings, SMTPServerFactory

__all__ = [
    "buildSMTP",
    "buildSubmission",
    "buildSubmissions",
    "SMTPAvatar",
    "resolveName",
    "listenerSettings",
]

log = Logger(namespace="twisted_maillab.smtp")


@implementer(IMessageDelivery)
class SMTPAvatar:
    """
    What an SMTP AUTH login asking for L{IMessageDelivery} gets from the
    realm: the account.  The session's own policy decides what it may do
    (the listener's relay rules, sender ownership); Twisted's
    C{IMessageDelivery} methods are provided for other Twisted SMTP servers
    using the same portal: they accept any sender the account owns and
    refuse to deliver (this avatar is an identity, not a delivery agent).

    @ivar account: the L{twisted_maillab.account.Account}.
    """

    def __init__(self, account):
        self.account = account

    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        from twisted.mail.smtp import SMTPBadRcpt

        raise SMTPBadRcpt(user, 550, b"5.3.0 Delivery through this avatar is not supported")


class NameCache:
    """
    Recent results of L{resolveName}, so a client that opens many
    connections (a relay, a bulk sender) costs one lookup per C{ttl}
    rather than one thread hop per connection.  Bounded: the oldest entry
    goes when C{size} is reached.
    """

    def __init__(self, reactor, ttl: float = 300.0, size: int = 4096, lookup=None):
        self.reactor = reactor
        self.ttl = ttl
        self.size = size
        self.lookup = lookup or (lambda host: resolveName(reactor, host))
        self._entries: dict[str, tuple[float, str | None]] = {}
        self._pending: dict[str, defer.Deferred] = {}

    def __call__(self, host: str) -> defer.Deferred:
        now = self.reactor.seconds()
        entry = self._entries.get(host)
        if entry is not None and entry[0] > now:
            return defer.succeed(entry[1])
        pending = self._pending.get(host)
        if pending is None:
            pending = self._pending[host] = self.lookup(host)
            pending.addBoth(self._store, host)
        result = defer.Deferred()
        pending.addBoth(lambda value: (result.callback(value), value)[1])
        return result

    def _store(self, value, host):
        self._pending.pop(host, None)
        if isinstance(value, str) or value is None:
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[host] = (self.reactor.seconds() + self.ttl, value)
            return value
        return None


def _reactorPoolRunner(reactor):
    """
    C{runner(f, *args) -> Deferred} in the reactor's thread pool, for the
    blocking look-ups of the policy and the outbound queue.
    """
    return lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)


def resolveName(reactor, host: str) -> defer.Deferred:
    """
    The client's name, forward-confirmed as Postfix does: the PTR name is
    used only if it resolves back to the address, else L{None}
    ("unknown" in Received:).  Runs in the reactor's thread pool.
    """

    def lookup():
        try:
            name = socket.getnameinfo((host, 0), socket.NI_NAMEREQD)[0]
            addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
        except (OSError, UnicodeError):
            return None
        plain = host[7:] if host.startswith("::ffff:") else host
        return name if (host in addresses or plain in addresses) else None

    return _reactorPoolRunner(reactor)(lookup)


class _Backend:
    """
    What the three SMTP listeners share.
    """

    def __init__(self, config, resources):
        smtp = config.smtp
        self.portal = resources.portal
        self.store = resources.store
        try:
            self.portal.realm.registerAvatarFactory(IMessageDelivery, SMTPAvatar)
        except ValueError:
            pass  # registered by an embedding application: use theirs
        aliases = None
        if smtp.alias_maps is not None:
            try:
                aliases = loadAliases(smtp.alias_maps)
            except AliasError as e:
                raise config.error("smtp", "alias_maps", str(e)) from None
        if smtp.allow_alias_commands or smtp.allow_alias_files:
            import pwd

            try:
                pwd.getpwnam(smtp.default_privs)
            except KeyError:
                raise config.error("smtp", "default_privs", f"no such user {smtp.default_privs!r}") from None
        self.hostname = smtp.myhostname or config.server.hostname
        reactor = resources.reactor
        self.policy = Policy(
            hostname=self.hostname,
            destinations=expandDestinations(smtp.mydestination, self.hostname, config.server.domain),
            networks=smtp.mynetworks,
            restrictions=smtp.smtpd_relay_restrictions,
            delimiter=smtp.recipient_delimiter,
            aliases=aliases,
            directory=self.portal.directory,
            allowInclude=smtp.allow_alias_include,
            allowCommands=smtp.allow_alias_commands,
            allowFiles=smtp.allow_alias_files,
            runner=_reactorPoolRunner(reactor),
            clock=reactor,
            cacheTTL=smtp.recipient_cache_ttl,
            rejectUnauthenticatedOwned=smtp.reject_unauthenticated_sender_login_mismatch,
        )
        self.delivery = DeliveryRouter(
            self.store,
            self.policy,
            reactor,
            headerLimit=smtp.header_size_limit,
            checkFrom=smtp.reject_from_login_mismatch,
            reactor=reactor,
            defaultPrivs=smtp.default_privs,
            commandTimeLimit=smtp.command_time_limit,
            addMissingHeaders=smtp.submission_add_missing_headers,
        )
        self.queueIds = QueueIds(reactor)
        from twisted_maillab.mailauth.factory import makeInbound

        # SPF, DKIM and DMARC of mail the MX receives.
        self.delivery.inbound = makeInbound(config, self.store, _reactorPoolRunner(reactor), self.hostname)
        self.outbound = None
        self.tlsReporter = None
        if smtp.outbound_queue:
            self.outbound = self._makeQueue(config, resources)
            self.outbound.metrics = resources.metrics
            self.policy.outbound = self.outbound
            self.delivery.outbound = self.outbound
        self.names = NameCache(reactor)


    def _makeQueue(self, config, resources):
        from twisted.internet import ssl

        from twisted_maillab.mailauth.lookup import twistedResolver
        from twisted_maillab.mailauth.factory import makeSigner
        from twisted_maillab.smtp.outbound import OutboundQueue
        from twisted_maillab.tlspolicy.wiring import buildOutboundPolicy, buildReporter

        smtp = config.smtp
        reactor = resources.reactor
        directory = smtp.queue_directory or (config.server.state_directory / "queue")
        resolver = _LazyResolver(lambda: twistedResolver(smtp.resolvers, reactor))
        runner = _reactorPoolRunner(reactor)
        tlsPolicy = buildOutboundPolicy(config, reactor=reactor, clock=reactor, runner=runner)
        queue = OutboundQueue(
            directory,
            reactor=reactor,
            clock=reactor,
            resolver=resolver,
            hostname=self.hostname,
            runner=_reactorPoolRunner(reactor),
            port=smtp.relay_port,
            minBackoff=smtp.minimal_backoff_time,
            maxBackoff=smtp.maximal_backoff_time,
            lifetime=smtp.maximal_queue_lifetime,
            connectTimeout=smtp.smtp_connect_timeout,
            commandTimeout=smtp.smtpd_timeout,
            # RFC 7435 opportunistic TLS: encrypt when offered, no
            # certificate check (MX certificates are rarely verifiable).
            tlsContext=ssl.CertificateOptions(),
            localDelivery=lambda address, data: self.delivery.deliverLocal(address, data),
            isLocal=lambda domain: domain in self.policy.destinations,
            destinationConcurrency=smtp.default_destination_concurrency_limit,
            totalConcurrency=smtp.default_process_limit,
            postmaster=_qualify(smtp.double_bounce_recipient or "postmaster", config.server.domain),
            signer=makeSigner(config),
            tlsPolicy=tlsPolicy,
        )
        self.tlsReporter = buildReporter(config, tlsPolicy, queue, resolver, reactor)
        return queue


def _qualify(address: str, domain: str) -> str:
    # Postfix's $myorigin rule: a bare local part is in our domain.
    return address if "@" in address else f"{address}@{domain}"


class _LazyResolver:
    """
    The resolver of C{[smtp] resolvers} (or the system's), built at the
    first lookup (the system's re-reads resolv.conf on a timer from then
    on).
    """

    def __init__(self, make):
        self._make = make
        self._resolver = None

    def __getattr__(self, name):
        if self._resolver is None:
            self._resolver = self._make()
        return getattr(self._resolver, name)


class QueueService(Service):
    """
    Runs the outbound queue: reschedules the spool at start, stops the
    timers at shutdown.
    """

    def __init__(self, queue):
        self.queue = queue

    def startService(self):
        super().startService()
        self.queue.start()

    def stopService(self):
        super().stopService()
        self.queue.stop()


def _backend(config, resources) -> _Backend:
    def make():
        backend = _Backend(config, resources)
        if backend.outbound is not None:
            # One queue per process, whichever SMTP listeners are enabled.
            resources.addProcessService("outbound-queue", QueueService(backend.outbound))
        if backend.tlsReporter is not None:
            from twisted_maillab.tlspolicy.wiring import ReporterService

            resources.addProcessService("tls-reports", ReporterService(backend.tlsReporter))
        # maillab sendmail and maillab queue reach the daemon here.
        from twisted_maillab.smtp.localsubmit import buildLocalServices

        resources.addProcessService("local", buildLocalServices(config, resources, backend))
        return backend

    return resources.shared("smtp", make)


def listenerSettings(config, name: str, hostname: str) -> Settings:
    """
    The L{Settings} of listener C{name} (C{"smtp"}, C{"submission"} or
    C{"submissions"}): the C{[smtp]} keys plus the listener's own section.
    """
    smtp = config.smtp
    section = getattr(config, name)
    return Settings(
        hostname=hostname,
        banner=smtp.smtpd_banner.replace("$myhostname", hostname),
        listener=name,
        sizeLimit=smtp.message_size_limit,
        commandTimeout=smtp.smtpd_timeout,
        dataTimeout=smtp.smtpd_data_timeout,
        maxRecipients=smtp.smtpd_recipient_limit,
        maxConnectionsPerClient=smtp.smtpd_client_connection_count_limit,
        authEnable=True if name != "smtp" else smtp.smtpd_sasl_auth_enable,
        tlsAuthOnly=smtp.smtpd_tls_auth_only,
        plaintextOnLoopback=smtp.plaintext_on_loopback,
        tlsRequired=name == "submission" and section.smtpd_tls_security_level == "encrypt",
        requireAuth=name != "smtp" and section.require_authentication,
        vrfy=smtp.vrfy_command,
        rejectSenderMismatch=smtp.reject_sender_login_mismatch,
        peernameLookup=smtp.smtpd_peername_lookup,
        bareNewline=smtp.smtpd_forbid_bare_newline,
    )


def _build(config, resources, name: str):
    backend = _backend(config, resources)
    section = getattr(config, name)
    settings = listenerSettings(config, name, backend.hostname)
    if settings.tlsRequired and resources.tlsContext is None:
        raise config.error(name, "smtpd_tls_security_level", "encrypt needs [tls] certificate and private_key")
    reactor = resources.reactor
    factory = SMTPServerFactory(
        settings,
        backend.policy,
        backend.delivery,
        portal=backend.portal,
        # Implicit TLS (465) is wrapped by Resources.listen: no STARTTLS.
        tlsContext=None if name == "submissions" else resources.tlsContext,
        clock=reactor,
        queueIds=backend.queueIds,
        resolveName=backend.names,
    )
    factory.metrics = resources.metrics
    return resources.listen(section, factory)


def buildSMTP(config, resources):
    """
    The MX listener (C{[smtp]}).
    """
    return _build(config, resources, "smtp")


def buildSubmission(config, resources):
    """
    Message submission with STARTTLS (C{[submission]}, RFC 6409).
    """
    return _build(config, resources, "submission")


def buildSubmissions(config, resources):
    """
    Message submission over implicit TLS (C{[submissions]}, RFC 8314).
    """
    return _build(config, resources, "submissions")
