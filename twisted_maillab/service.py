"""
The one place that composes the suite: config -> L{MultiService} of listeners.

Nothing is bound while the service tree is built: every endpoint, context
and zone is constructed first, so a bad config raises L{ConfigError} before
any socket exists; the listeners bind in C{privilegedStartService} (as root
under twistd, before privileges are shed).
"""

from __future__ import annotations

from functools import cached_property
from importlib import import_module

from twisted.application import service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from twisted_maillab import tls
from twisted_maillab.config import IMPLICIT_TLS, Config, ListenerSection
from twisted_maillab.systemd import NotifyService

log = Logger()

# Section name -> "module:callable" providing IServiceBuilder.  Imported only
# when the section is enabled, so an unused protocol costs nothing at start.
BUILDERS: dict[str, str] = {}
BUILDERS["dns"] = "twisted_maillab.dns.service:makeDNSService"
BUILDERS["pop3"] = "twisted_maillab.pop3.service:buildPOP3"
BUILDERS["pop3s"] = "twisted_maillab.pop3.service:buildPOP3S"
BUILDERS["smtp"] = "twisted_maillab.smtp.service:buildSMTP"
BUILDERS["submission"] = "twisted_maillab.smtp.service:buildSubmission"
BUILDERS["submissions"] = "twisted_maillab.smtp.service:buildSubmissions"


class ListenerService(service.Service):
    """
    Listen on one endpoint with one factory, log the address it bound, and
    make a failure to bind fail the start (twistd then exits non-zero).
    """

    def __init__(self, label: str, endpoint, factory):
        self.label = label
        self.endpoint = endpoint
        self.factory = factory
        self.port = None
        self._listening = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        if self._listening is None:
            self._listen()

    def _listen(self):
        failures = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._bound, failures.append)
        if failures:
            failures[0].raiseException()

    def _bound(self, port):
        self.port = port
        log.info(
            "{label} listening on {address}",
            label=self.label,
            address=_describe(port.getHost()),
        )
        return port

    def stopService(self):
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is None:
            return None
        listening.addCallback(lambda port: port.stopListening())
        listening.addErrback(lambda f: None)
        return listening


def _describe(address) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Resources:
    """
    What the protocol builders share, each built once on first use.

    @ivar config: the whole L{Config}.
    @ivar reactor: the reactor (a L{MemoryReactorClock} in unit tests).
    """

    def __init__(self, config: Config, reactor):
        self.config = config
        self.reactor = reactor

    @cached_property
    def tlsContext(self):
        """
        The server TLS context factory, or L{None} when [tls] has no
        certificate.
        """
        section = self.config.tls
        if section.configured and section.generate_self_signed:
            if tls.ensureSelfSigned(
                section.certificate, section.private_key, self.config.server.hostname
            ):
                log.info(
                    "created a self-signed certificate for {hostname} in {path}",
                    hostname=self.config.server.hostname,
                    path=str(section.certificate),
                )
        return tls.serverContextFactory(section, self.config.path)

    @cached_property
    def portal(self):
        """
        The one cred portal SMTP AUTH, POP3 and IMAP log in through
        (L{twisted_maillab.interfaces.IMailPortal}).
        """
        from twisted_maillab.auth import makePortal

        return makePortal(self.config, self.reactor)

    @cached_property
    def store(self):
        """
        The process's one Maildir store; it closes itself at reactor shutdown.
        """
        from twisted_maillab.store import makeStore

        return makeStore(self.config, self.reactor)

    def endpoint(self, section: ListenerSection, description: str):
        """
        Build the server endpoint for one C{listen} value.
        """
        try:
            return serverFromString(self.reactor, description)
        except Exception as e:
            raise self.config.error(
                section.name, "listen", f'"{description}" cannot be used: {e}'
            ) from None

    def listen(self, section: ListenerSection, factory) -> service.MultiService:
        """
        One L{ListenerService} per C{listen} value of C{section}.  Sections
        listed in L{IMPLICIT_TLS} get the [tls] context around the factory
        unless the endpoint is already C{ssl:}.
        """
        group = service.MultiService()
        for description in section.listen:
            wrapped = factory
            if section.name in IMPLICIT_TLS and not description.startswith("ssl:"):
                if self.tlsContext is None:
                    raise self.config.error(
                        section.name,
                        "listen",
                        "implicit TLS needs [tls] certificate and private_key",
                    )
                wrapped = tls.implicitTLSFactory(self.tlsContext, factory)
            ListenerService(
                section.name, self.endpoint(section, description), wrapped
            ).setServiceParent(group)
        return group


def builderFor(config: Config, name: str):
    """
    The builder for an enabled section, or a L{ConfigError} saying that this
    version has no such service.
    """
    target = BUILDERS.get(name)
    if target is None:
        raise config.error(
            name, "enabled", f"the {name} service is not implemented in this version"
        )
    module, attribute = target.split(":")
    return getattr(import_module(module), attribute)


def _prepareState(config: Config) -> None:
    directory = config.server.state_directory
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise config.error(
            "server", "state_directory", f"{directory}: cannot be created: {e.strerror}"
        ) from None


def _announceDemoAccounts(config: Config) -> None:
    """
    Development configs name demo users: create them on first start and
    print their passwords at every start (the seed's edouard and
    utilisateur), so `make run` is usable at once.
    """
    if not config.auth.demo_users:
        return
    from twisted_maillab.auth.demo import ensureDemoAccounts

    for address, password in ensureDemoAccounts(config):
        log.info(
            "demo account: {address} password: {password}",
            address=address,
            password=password,
        )


def makeService(config: Config, reactor=None) -> service.MultiService:
    """
    Build the whole suite from a parsed config; embed the result in another
    application's L{MultiService} with C{setServiceParent}.

    @param reactor: defaults to the global reactor.
    @raise ConfigError: before anything is bound.
    """
    if reactor is None:
        from twisted.internet import reactor
    sections = config.listeners()
    builders = [(section, builderFor(config, section.name)) for section in sections]
    resources = Resources(config, reactor)
    _prepareState(config)
    _announceDemoAccounts(config)
    # Load (or, for development, create) the certificate now: a bad pair is
    # a start-up error even if only STARTTLS would have used it.
    resources.tlsContext
    top = service.MultiService()
    top.setName("maillab")
    for section, build in builders:
        child = build(config, resources)
        child.setName(section.name)
        child.setServiceParent(top)
    backend = getattr(resources, "smtpBackend", None)
    if backend is not None:
        # maillab sendmail and maillab queue reach the daemon here.
        from twisted_maillab.smtp.localsubmit import buildLocalServices

        local = buildLocalServices(config, resources, backend)
        local.setName("local")
        local.setServiceParent(top)
    # Last, so READY=1 is sent only once every listener above has bound.
    notifier = NotifyService(reactor)
    notifier.setName("sd_notify")
    notifier.setServiceParent(top)
    return top
