"""
The one place that composes the suite: config -> L{MultiService} of listeners.

Nothing is bound while the service tree is built: every endpoint, context
and zone is constructed first, so a bad config raises L{ConfigError} before
any socket exists; the listeners bind in C{privilegedStartService} (as root
under twistd, before privileges are shed).
"""

from __future__ import annotations

import errno
import sys
from functools import cached_property
from importlib import import_module

from twisted.application import service
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import ILoggingContext
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from twisted_maillab import listeners, tls
from twisted_maillab.config import (
    IMPLICIT_TLS,
    Config,
    ConfigError,
    ConfigErrors,
    ListenerSection,
)
from twisted_maillab.interfaces import IServiceBuilder
from twisted_maillab.plugins import PluginError, describe, discover, sectionClassOf
from twisted_maillab.systemd import NotifyService

log = Logger()

# Section name -> "module:callable" providing IServiceBuilder.  Imported only
# when the section is enabled, so an unused protocol costs nothing at start.
BUILDERS: dict[str, str] = {}
BUILDERS["dns"] = "twisted_maillab.dns.service:makeDNSService"
BUILDERS["http"] = "twisted_maillab.http.service:buildHTTP"
BUILDERS["imap"] = "twisted_maillab.imap.service:buildIMAP"
BUILDERS["imaps"] = "twisted_maillab.imap.service:buildIMAPS"
BUILDERS["pop3"] = "twisted_maillab.pop3.service:buildPOP3"
BUILDERS["pop3s"] = "twisted_maillab.pop3.service:buildPOP3S"
BUILDERS["smtp"] = "twisted_maillab.smtp.service:buildSMTP"
BUILDERS["submission"] = "twisted_maillab.smtp.service:buildSubmission"
BUILDERS["submissions"] = "twisted_maillab.smtp.service:buildSubmissions"


class ListenerService(service.Service):
    """
    Listen on one endpoint with one factory, log the address it bound, and
    make a failure to bind fail the start with a L{ConfigError} naming the
    section, key and endpoint.

    @ivar error: turns a reason into that L{ConfigError}.
    """

    def __init__(self, label: str, endpoint, factory, error=None):
        self.label = label
        self.endpoint = endpoint
        self.factory = factory
        self.error = error
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
            self._listening = None
            if self.error is None:
                failures[0].raiseException()
            raise self.error(cannotListen(failures[0].value)) from None

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


def cannotListen(error: Exception) -> str:
    """
    Why a listener could not bind, for an administrator: the errno's
    meaning and what usually causes it.
    """
    if isinstance(error, CannotListenError):
        where = listeners.Address(error.interface or "0.0.0.0", error.port)
        cause = error.socketError
    else:
        where, cause = None, error
    number = getattr(cause, "errno", None)
    if number == errno.EADDRINUSE:
        reason = "address already in use (another process, or another listener, has it)"
    elif number == errno.EACCES:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    elif number == errno.EADDRNOTAVAIL:
        reason = "no network interface of this host has that address"
    else:
        reason = getattr(cause, "strerror", None) or str(cause)
    return f"cannot listen on {where}: {reason}" if where else f"cannot listen: {reason}"


def bindListeners(top: service.MultiService, config: Config) -> None:
    """
    Bind every listener of a tree built by L{makeService} now, instead of
    in C{privilegedStartService}: C{twistd maillab} calls this before it
    writes its pid file, daemonizes or starts logging, so a port that
    cannot be bound ends the start like any other configuration error.

    @raise ConfigError: naming the section, C{listen}, the endpoint and why.
    """
    for child in top:
        try:
            child.privilegedStartService()
        except ConfigError:
            raise
        except Exception as e:
            # A section's own listeners ([dns] binds UDP beside TCP).
            raise _sectionBindError(config, child.name, e) from None


def _sectionBindError(config: Config, name: str, error: Exception) -> ConfigError:
    description = None
    if isinstance(error, CannotListenError):
        for candidate in getattr(config.sections.get(name), "listen", ()):
            try:
                address = listeners.resolve(serverFromString(None, candidate))
            except Exception:
                continue
            if address is not None and address.port == error.port:
                description = candidate
                break
    reason = cannotListen(error)
    if description is not None:
        reason = f'"{description}" {reason}'
    return config.error(name, "listen", reason, description)


def _describe(address) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SharedBackends:
    """
    Objects several builders share, built once by whichever needs one first
    (the three SMTP listeners' policy, delivery and outbound queue; the POP3
    listeners' session locks), and services that belong to the process
    rather than to a listener (the outbound queue's runner, the local
    sockets), which L{makeService} puts beside the listeners.
    """

    def shared(self, key: str, make=None):
        """
        The shared object C{key}, made with C{make()} the first time.

        @raise KeyError: C{key} was never made and no C{make} is given.
        """
        table = self.__dict__.setdefault("_shared", {})
        if key not in table:
            if make is None:
                raise KeyError(key)
            table[key] = make()
        return table[key]

    def addProcessService(self, name: str, child: service.IService) -> None:
        """
        A service of the whole process, started after the listeners.
        """
        child.setName(name)
        self.__dict__.setdefault("_processServices", []).append(child)

    def processServices(self) -> list:
        return list(self.__dict__.get("_processServices", ()))


class Resources(SharedBackends):
    """
    What the protocol builders share, each built once on first use.

    @ivar config: the whole L{Config}.
    @ivar reactor: the reactor (a L{MemoryReactorClock} in unit tests).
    """

    def __init__(self, config: Config, reactor, zoneSource=None):
        self.config = config
        self.reactor = reactor
        self._givenZoneSource = zoneSource

    @cached_property
    def zoneSource(self):
        """
        Where C{[dns]} gets its zones (L{twisted_maillab.interfaces.IZoneSource}):
        the one L{makeService} was given, else the C{[dns] zones} files;
        with the generated records when C{[dns] publish_mail_records} is on.
        """
        source = self._givenZoneSource
        if source is None:
            from twisted_maillab.dns.service import FileZoneSource

            section = self.config.dns
            cache = self.config.server.state_directory / "dns" if section.zone_cache else None
            source = FileZoneSource(section.zones, cache)
        if not self.config.dns.publish_mail_records:
            # The publishing machinery is not even imported.
            return source
        from twisted_maillab.dns.published import zoneSourceFor

        return zoneSourceFor(self.config, source)

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

        # Logins create the account's special-use folders (store.firstLogin).
        portal = makePortal(self.config, self.reactor, prepareAccount=self.store.firstLogin)
        portal.metrics = self.metrics
        return portal

    @cached_property
    def store(self):
        """
        The process's one Maildir store; it closes itself at reactor shutdown.
        """
        from twisted_maillab.store import makeStore

        store = makeStore(self.config, self.reactor)
        store.metrics = self.metrics
        return store

    @cached_property
    def metrics(self):
        """
        The tree's L{twisted_maillab.metrics.Metrics}, which C{[http]}
        serves at C{/metrics}; without C{[http]} nothing would read them,
        and the tree counts nothing (L{twisted_maillab.metrics.NULL_METRICS},
        which also spares it importing C{prometheus_client}).
        """
        from twisted_maillab.metrics import NULL_METRICS, Metrics

        if not self.config.http.enabled:
            return NULL_METRICS
        return Metrics()

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

    def listen(self, section: ListenerSection, factory, implicitTLS: bool | None = None) -> service.MultiService:
        """
        One L{ListenerService} per C{listen} value of C{section}.  Sections
        listed in L{IMPLICIT_TLS} (or any, when C{implicitTLS} is true) get
        the [tls] context around the factory unless the endpoint is already
        C{ssl:}.
        """
        if implicitTLS is None:
            implicitTLS = section.name in IMPLICIT_TLS
        group = service.MultiService()
        counting = CountingFactory(factory, section.name, self.metrics)
        for description in section.listen:
            wrapped = counting
            if implicitTLS and not description.startswith("ssl:"):
                if self.tlsContext is None:
                    raise self.config.error(
                        section.name,
                        "listen",
                        "implicit TLS needs [tls] certificate and private_key",
                    )
                wrapped = tls.implicitTLSFactory(self.tlsContext, counting)
            ListenerService(
                section.name,
                self.endpoint(section, description),
                wrapped,
                lambda reason, description=description: self.config.error(
                    section.name, "listen", f'"{description}" {reason}', description
                ),
            ).setServiceParent(group)
        return group


@implementer(ILoggingContext)
class CountingFactory:
    """
    A server factory that counts its connections in L{Metrics} by listener
    and otherwise is C{factory}: each protocol is C{factory}'s own (its
    C{factory} attribute is C{factory}), so the protocol code sees no
    wrapper (unlike L{twisted.protocols.policies.WrappingFactory}, whose
    wrapper transport would hide C{startTLS} and C{getHandle}).
    """

    def __init__(self, factory, label: str, metrics):
        self.factory = factory
        self.label = label
        self.metrics = metrics

    def __getattr__(self, name):
        # doStart, doStop and the factory's own attributes.
        return getattr(self.factory, name)

    def logPrefix(self):
        # Port logs "<prefix> starting on N": the wrapped factory's name.
        inner = self.factory
        return inner.logPrefix() if ILoggingContext.providedBy(inner) else inner.__class__.__name__

    def buildProtocol(self, addr):
        built = self.factory.buildProtocol(addr)
        if built is not None:
            self.metrics.connectionOpened(self.label)
            lost = built.connectionLost

            def connectionLost(reason, lost=lost):
                self.metrics.connectionClosed(self.label)
                return lost(reason)

            # An instance attribute: the protocol's class stays its own.
            built.connectionLost = connectionLost
        return built


@implementer(IPlugin, IServiceBuilder)
class SectionBuilder:
    """
    A builder named by C{"module:callable"}, imported only when its section
    is enabled, so an unused protocol costs nothing at start.  The shipped
    ones are registered as plugins (C{twisted/plugins/maillab_services.py})
    like a third party's L{twisted_maillab.plugins.ServicePlugin}; their
    sections are declared in L{twisted_maillab.config.SECTIONS}.
    """

    sectionClass = None
    after = ()

    def __init__(self, section: str, target: str):
        self.section = section
        self.target = target

    def __call__(self, config, resources):
        module, attribute = self.target.split(":")
        return getattr(import_module(module), attribute)(config, resources)

    def __repr__(self):
        return f"<SectionBuilder [{self.section}] {self.target}>"


# The table as this module made it, for twisted/plugins/maillab_services.py:
# a plugin module imported while a test has replaced BUILDERS would leave
# that replacement in the plugin cache.
SHIPPED_BUILDERS = BUILDERS


def defaultBuilders() -> list:
    """
    The shipped builders, one per section of L{BUILDERS}.
    """
    return [SectionBuilder(section, target) for section, target in BUILDERS.items()]


@implementer(IServiceBuilder)
class _PluginBuilder:
    """
    A third party's builder: its failures name the plugin on one line.
    """

    def __init__(self, plugin):
        """
        @raise PluginError: its section class is not usable.
        """
        self.plugin = plugin
        self.section = plugin.builder.section
        self.sectionClass = sectionClassOf(plugin)
        # IServiceBuilder.after, which a plugin may leave out: none.
        self.after = tuple(getattr(plugin.builder, "after", ()))

    def __call__(self, config, resources):
        try:
            built = self.plugin.builder(config, resources)
        except ConfigError:
            raise
        except Exception as e:
            raise PluginError(
                self.plugin.name, f"cannot build [{self.section}]: {describe(e)}"
            ) from None
        if not service.IService.providedBy(built):
            raise PluginError(
                self.plugin.name, f"its builder for [{self.section}] returned {built!r}, not a service"
            )
        return built

    def __repr__(self):
        return f"<plugin {self.plugin.name} [{self.section}]>"


def availableBuilders(package=None) -> list:
    """
    The shipped builders (L{BUILDERS}) and every service plugin's
    (L{twisted_maillab.plugins.discover}).

    @raise PluginError: a plugin module does not import, or a plugin is
        not usable (L{ConfigErrors} of them all when there are several).
    """
    found, problems = discover(package)
    builders = defaultBuilders()
    for plugin in found:
        try:
            builders.append(_PluginBuilder(plugin))
        except PluginError as e:
            problems.append(e)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)
    return builders


def builderFor(config: Config, name: str, builders=None):
    """
    The builder for an enabled section (the last of C{builders} for it;
    default: L{availableBuilders}), or a L{ConfigError} saying that this
    version has no such service.
    """
    found = None
    for builder in availableBuilders() if builders is None else builders:
        if not IServiceBuilder.providedBy(builder):
            raise TypeError(f"{builder!r} does not provide IServiceBuilder")
        if builder.section == name:
            found = builder
    if found is None:
        raise config.error(
            name, "enabled", f"the {name} service is not implemented in this version"
        )
    return found


def startOrder(config: Config, builders: list) -> list:
    """
    C{(section, builder)} pairs in start order: the order of
    L{Config.listeners} (the shipped sections, then the plugins'), except
    that a builder's C{after} sections (those that are enabled) start
    before it.  Services stop in the reverse order.

    @raise ConfigError: the C{after} declarations make a cycle.
    """
    pending = list(builders)
    enabled = {section.name for section, _ in pending}
    placed: list = []
    while pending:
        done = {section.name for section, _ in placed}
        for index, (section, builder) in enumerate(pending):
            waits = set(getattr(builder, "after", ())) & enabled
            if waits <= done:
                placed.append(pending.pop(index))
                break
        else:
            names = ", ".join(f"[{section.name}]" for section, _ in pending)
            raise config.error(
                pending[0][0].name, "enabled", f"the services {names} each wait for another to start"
            )
    return placed


def _prepareState(config: Config) -> None:
    directory = config.server.state_directory
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise config.error(
            "server", "state_directory", f"{directory}: cannot be created: {e.strerror}"
        ) from None


def _announceDemoAccounts(config: Config, terminal=None) -> None:
    """
    Development configs name demo users: create them on first start, and
    show their passwords at every start to the person who started maillab
    (C{make run}) without making them a log field that a JSON log, the
    journal or a log shipper would keep.  The log says where they are: the
    mode-0600 C{<state_directory>/demo-passwords}; a terminal on standard
    output also gets one C{demo account: ADDRESS password: PASSWORD} line
    each.

    @param terminal: the standard output to show them on when it is a
        terminal (default: the process's own, not twistd's log redirection).
    """
    if not config.auth.demo_users:
        return
    from twisted_maillab.auth.demo import demoPasswordsPath, ensureDemoAccounts

    accounts = ensureDemoAccounts(config)
    if not accounts:
        return
    log.info(
        "demo accounts {accounts}: passwords in {path}",
        accounts=" ".join(address for address, _ in accounts),
        path=str(demoPasswordsPath(config)),
    )
    terminal = sys.__stdout__ if terminal is None else terminal
    if terminal is not None and terminal.isatty():
        for address, password in accounts:
            terminal.write(f"demo account: {address} password: {password}\n")
        terminal.flush()


def makeService(config: Config, reactor=None, builders=None, zoneSource=None) -> service.MultiService:
    """
    Build the whole suite from a parsed config; embed the result in another
    application's L{MultiService} with C{setServiceParent}.

    @param reactor: defaults to the global reactor.
    @param builders: the L{IServiceBuilder}s to build enabled sections with
        (default L{availableBuilders}: the shipped ones and the service
        plugins); for a section named by several, the
        last wins, so an application can replace one shipped builder by
        appending its own to C{defaultBuilders()}, or serve a section of
        its own.
    @param zoneSource: an L{IZoneSource} for C{[dns]} instead of the zone
        files of its C{zones} key.
    @raise ConfigError: before anything is bound.
    """
    if reactor is None:
        from twisted.internet import reactor
    builders = availableBuilders() if builders is None else list(builders)
    sections = config.listeners()
    builders = startOrder(
        config, [(section, builderFor(config, section.name, builders)) for section in sections]
    )
    resources = Resources(config, reactor, zoneSource=zoneSource)
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
    for child in resources.processServices():
        child.setServiceParent(top)
    # Last, so READY=1 is sent only once every listener above has bound.
    notifier = NotifyService(reactor)
    notifier.setName("sd_notify")
    notifier.setServiceParent(top)
    return top
