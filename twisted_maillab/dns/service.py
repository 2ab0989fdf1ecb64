"""
The C{[dns]} service: load the zones (refusing to start on a broken one),
serve them over UDP and TCP on each C{listen} address, reload on SIGHUP or
L{DNSService.reload}, and NOTIFY the secondaries.
"""

from __future__ import annotations

import gc
import os
import signal as _signal
import sys

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_maillab.dns import names as N
from twisted_maillab.interfaces import IZoneSource
from twisted_maillab.dns.answer import ResponseTable, Zones
from twisted_maillab.dns.server import (
    DNSDatagramProtocol,
    DNSServer,
    DNSStreamFactory,
    NotifySender,
    RateLimiter,
    _serialGreater,
)
from twisted_maillab.dns.zone import Zone, ZoneError, loadZone, parseOrigin

log = Logger()

__all__ = ["makeDNSService", "DNSService", "FileZoneSource", "loadZones"]


@implementer(IZoneSource)
class FileZoneSource:
    """
    Zones from BIND master files: the C{[dns] zones} key.

    @ivar specs: C{(origin, path)} of each zone.
    @ivar cacheDirectory: where zones are saved once parsed and read back
        while their files do not change (L{twisted_maillab.dns.zonecache}),
        or L{None}.
    """

    def __init__(self, specs, cacheDirectory=None):
        self.specs = tuple(specs)
        self.cacheDirectory = cacheDirectory

    def load(self, unsaved: list | None = None) -> list[Zone]:
        """
        The zones (see L{loadZones}).

        @param unsaved: when a list, the zones parsed (not read from their
            saved form) are added to it for the caller to save with
            L{saveZones}, instead of being saved here.
        """
        return loadZones(self.specs, self.cacheDirectory, unsaved)


def loadQuietly(load, freeze: bool = False):
    """
    Call C{load} (an L{IZoneSource}'s) with Python's cyclic garbage
    collector paused: while a large zone is read, each full collection
    would walk every object made so far, in the loading thread but
    holding the interpreter, and so the reactor thread.

    A reload freezes nothing (L{gc.freeze}): a zone's names are kept as
    bytes (L{twisted_maillab.dns.compact}), which the collector does not
    track, so a collection after a load of a million names walks about as
    much as before it; and what a freeze keeps out of every collection
    would include whatever else was alive at that moment (sessions of the
    other services), never collected if it later became cyclic garbage,
    at each reload.  At start-up (C{freeze}) what is alive is the
    modules, the configuration and the zones, there for good: frozen,
    the collections made while serving do not walk them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        zones = load()
        if freeze:
            gc.freeze()
        return zones
    finally:
        if enabled:
            gc.enable()


# From this many names on, the memory a start-up load freed is handed back
# to the system (L{returnFreedMemory}); below, it is not worth the call.
TRIM_NAMES = 50_000


def returnFreedMemory() -> None:
    """
    Hand the pages that loading freed back to the system, where the C
    library allows it (glibc's C{malloc_trim}).

    Reading a large zone grows and frees big blocks (the file's text, the
    names' dict as it resizes) that the allocator keeps inside its heap
    when other blocks lie above them: resident, but unused, a sixth of
    the process after a million names.  glibc gives them back only when
    asked, or by chance when a later large allocation in the same thread
    consolidates the heap.
    """
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return
    trim(0)


def loadZones(specs, cacheDirectory=None, unsaved: list | None = None) -> list[Zone]:
    """
    Load every C{(origin, path)}; blocking (run it in a thread once the
    reactor runs).

    @param cacheDirectory: where parsed zones are saved and read back while
        their files are unchanged, or L{None} to parse every time.
    @param unsaved: when a list, C{(cacheDirectory, zone)} of each zone
        to save is added to it instead of saving it (see L{saveZones}).
    @raise ZoneError: for the first zone with errors, naming file and lines.
    """
    zones = []
    for origin, path in specs:
        zone = _loadZone(path, parseOrigin(origin), cacheDirectory, unsaved)
        for warning in zone.warnings:
            log.warn("{finding}", finding=str(warning))
        zones.append(zone)
    return zones


def _loadZone(path, origin, cacheDirectory, unsaved=None) -> Zone:
    """
    One zone: its saved form when its files did not change, else parsed
    (and then saved, or added to C{unsaved}).
    """
    if cacheDirectory is None:
        return loadZone(path, origin)
    # Imported only when zones are saved: a server that does not save
    # them starts without it.
    from twisted_maillab.dns import zonecache

    zone = zonecache.load(cacheDirectory, path, origin)
    if zone is not None:
        log.info("dns: zone {zone} read from {cache} (its files did not change)", zone=N.toText(origin), cache=str(zonecache.cachePath(cacheDirectory, origin, path)))
        return zone
    zone = loadZone(path, origin)
    if unsaved is None:
        saveZones([(cacheDirectory, zone)])
    else:
        unsaved.append((cacheDirectory, zone))
    return zone


def saveZones(unsaved) -> None:
    """
    Save each C{(cacheDirectory, zone)} (L{twisted_maillab.dns.zonecache});
    blocking.  A zone that cannot be saved is logged and parsed again at
    the next start.
    """
    from twisted_maillab.dns import zonecache

    for cacheDirectory, zone in unsaved:
        try:
            os.makedirs(cacheDirectory, mode=0o700, exist_ok=True)
            zonecache.save(cacheDirectory, zone)
        except OSError as e:
            log.warn("dns: cannot save zone {zone} in {directory}: {error}", zone=N.toText(zone.origin), directory=str(cacheDirectory), error=e.strerror or str(e))


class _UDPAndTCP(service.Service):
    """
    One C{listen} value: TCP through the endpoint, UDP on the same address
    and port.  Both bind in C{privilegedStartService} (port 53 needs root).
    """

    def __init__(self, reactor, endpoint, host: str, port: int, tcpFactory, udpProtocol):
        self.reactor = reactor
        self.endpoint = endpoint
        self.host = host
        self.portNumber = port
        self.tcpFactory = tcpFactory
        self.udpProtocol = udpProtocol
        self.tcpPort = None
        self.udpPort = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        if self.tcpPort is None:
            self._listen()

    def _listen(self):
        failures = []
        ports = []
        self.endpoint.listen(self.tcpFactory).addCallbacks(ports.append, failures.append)
        if failures:
            failures[0].raiseException()
        self.tcpPort = ports[0]
        port = self.tcpPort.getHost().port
        try:
            # Queries are small (RFC 6891 sizes are for answers): a smaller
            # receive buffer makes every recvfrom cheaper.
            self.udpPort = self.reactor.listenUDP(port, self.udpProtocol, interface=self.host, maxPacketSize=4096)
        except Exception:
            self.tcpPort.stopListening()
            self.tcpPort = None
            raise
        where = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host or '*'}:{port}"
        log.info("dns listening on {address} (UDP and TCP)", address=where)

    @property
    def address(self):
        """
        C{(host, port)} actually bound (the port differs from the config's
        only when it was 0).
        """
        return (self.host or "127.0.0.1", self.tcpPort.getHost().port)

    def stopService(self):
        super().stopService()
        results = []
        if self.udpPort is not None:
            results.append(defer.maybeDeferred(self.udpPort.stopListening))
            self.udpPort = None
        if self.tcpPort is not None:
            results.append(defer.maybeDeferred(self.tcpPort.stopListening))
            self.tcpPort = None
        return defer.gatherResults(results)


class DNSService(service.MultiService):
    """
    The authoritative server for the configured zones.

    @ivar server: the L{DNSServer} answering queries.
    @ivar source: the L{IZoneSource} read again on reload (a
        L{FileZoneSource} when C{specs} are given).
    @ivar notifyTargets: C{(host, port)} of the secondaries (C{also_notify}).
    @ivar signals: the module used to install the SIGHUP handler
        (L{signal}; tests pass a fake).
    @ivar deferToThread: runs the blocking reload (zone reads) off the
        reactor thread.
    """

    def __init__(self, specs, zones: list[Zone], reactor, udpSize=1232, allowTransfer=(), notifyTargets=(), rateLimiter=None, signals=_signal, deferToThread=None, notifyInterval=2.0, notifyRetries=5):
        super().__init__()
        self.source = specs if IZoneSource.providedBy(specs) else FileZoneSource(specs)
        self.reactor = reactor
        self.udpSize = udpSize
        self.notifyTargets = tuple(notifyTargets)
        self.signals = signals
        self.server = DNSServer(Zones(zones), udpSize, allowTransfer, rateLimiter, clock=reactor)
        self.listeners: list[_UDPAndTCP] = []
        self._previousHandler = None
        self._reloading = None
        self._reloadWaiters: list = []
        self.notifyInterval = notifyInterval
        self.notifyRetries = notifyRetries
        self.lastNotify: defer.Deferred | None = None
        # Zones parsed at start-up and not yet saved (see L{saveZones}):
        # saved in a pool thread once the listeners are up, so a first
        # start answers without waiting for the write; C{saved} fires
        # when that is done.
        self.unsaved: list = []
        self.saved: defer.Deferred = defer.succeed(None)
        if deferToThread is None:

            def deferToThread(f, *args):
                return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        self.deferToThread = deferToThread

    def addListener(self, endpoint, host: str, port: int, tcpFactory) -> _UDPAndTCP:
        self.factories = getattr(self, "factories", set())
        self.factories.add(tcpFactory)
        listener = _UDPAndTCP(self.reactor, endpoint, host, port, tcpFactory, DNSDatagramProtocol(self.server))
        listener.setServiceParent(self)
        self.listeners.append(listener)
        return listener

    def startService(self):
        super().startService()
        try:
            self._previousHandler = self.signals.signal(self.signals.SIGHUP, self._sighup)
            self._installed = True
        except ValueError:
            # signal.signal works only in the main thread; an application
            # embedding us elsewhere can still call reload().
            log.warn("dns: not in the main thread, SIGHUP will not reload the zones")
        # BIND and NSD notify the secondaries when a zone is loaded.
        self.lastNotify = self.notify(list(self.server.zones))
        if self.unsaved:
            unsaved, self.unsaved = self.unsaved, []
            self.saved = self.deferToThread(saveZones, unsaved)
            self.saved.addErrback(lambda failure: log.failure("dns: saving the zones failed", failure))

    def stopService(self):
        if getattr(self, "_installed", False) and self.signals.getsignal(self.signals.SIGHUP) == self._sighup:
            previous = self._previousHandler
            self.signals.signal(self.signals.SIGHUP, previous if previous is not None else self.signals.SIG_DFL)
        self._previousHandler = None
        self._installed = False
        stopped = defer.maybeDeferred(super().stopService)
        closing = [factory.closeAll() for factory in getattr(self, "factories", ())]
        return defer.gatherResults([stopped] + closing)

    def _sighup(self, signum, frame):
        # Signal context: hand over to the reactor thread; chain to a
        # handler another service installed before us.
        self.reactor.callFromThread(self.reload)
        previous = self._previousHandler
        if callable(previous):
            previous(signum, frame)

    def reload(self) -> defer.Deferred:
        """
        Re-read every zone file.  A zone is replaced only when the new file
        loads without error and its SOA serial is higher (RFC 1982); on an
        error the old data keeps being served and the reason is logged.

        @return: a Deferred firing with the list of origins replaced.
        """
        if self._reloading is not None:
            # One reload at a time: a SIGHUP during a reload asks for one
            # more after it (the files may have changed again meanwhile).
            waiter = defer.Deferred()
            self._reloadWaiters.append(waiter)
            return waiter
        log.info("dns: reloading the zones")
        # Comparing a zone whose serial did not change with the one served
        # walks both: that too in the pool thread.
        d = self.deferToThread(_loadAndChoose, self.source.load, self.server.zones.byOrigin)
        d.addCallbacks(self._chosen, self._loadFailed)
        self._reloading = d

        def done(result):
            self._reloading = None
            waiters, self._reloadWaiters = self._reloadWaiters, []
            if waiters:

                def fire(again):
                    for waiter in waiters:
                        waiter.callback(again)

                self.reload().addCallback(fire)
            return result

        d.addBoth(done)
        return d

    def _loadFailed(self, failure: Failure):
        if failure.check(ZoneError):
            log.error("dns: reload failed, still serving the old data:\n{error}", error=str(failure.value))
        else:
            log.failure("dns: reload failed, still serving the old data", failure)
        return []

    def _chosen(self, choice):
        chosen, raised, unchanged = choice
        for zone, oldSerial in raised:
            if oldSerial is not None:
                log.info("dns: zone {zone} serial {old} -> {new}", zone=N.toText(zone.origin), old=oldSerial, new=zone.serial)
        for origin, serial in unchanged:
            log.warn(
                "dns: zone {zone} changed but its serial {serial} did not increase; keeping the old data",
                zone=N.toText(origin),
                serial=serial,
            )
        if not raised:
            return []
        raised = [zone for zone, _ in raised]
        zones = Zones(chosen)
        d = self.deferToThread(self._table, zones)

        def install(table):
            previous = self.server.state
            self.server.install(zones, table)
            # The old zones and table are freed in a pool thread, piece by
            # piece (see _release): freed whole, a large zone would hold
            # the interpreter, and so the reactor thread.
            self.deferToThread(_release, previous)
            del previous
            self.lastNotify = self.notify(raised)
            return [N.toText(z.origin) for z in raised]

        return d.addCallback(install)

    def _table(self, zones):
        table = ResponseTable(zones, self.udpSize)
        table.precompute()
        return table

    def notify(self, zones) -> defer.Deferred:
        """
        Send NOTIFY for each zone to every C{also_notify} target.
        """
        if not self.notifyTargets or not self.running:
            return defer.succeed({})
        senders = [
            NotifySender(self.reactor, zone, self.notifyTargets, self.notifyRetries, self.notifyInterval, self.udpSize).send()
            for zone in zones
        ]
        return defer.gatherResults(senders)


def _loadAndChoose(load, current: dict):
    """
    In a pool thread: load the zones (L{loadQuietly}) and L{_choose}.
    """
    return _choose(loadQuietly(load), current)


def _choose(newZones: list[Zone], current: dict):
    """
    Which zones to serve after a reload: a new zone replaces the one
    served only when its SOA serial is higher (RFC 1982).

    @return: C{(chosen, raised, unchanged)}: the zones to serve, the
        C{(new zone, old serial or None)} of those replaced or added (not
        the old zone: the reactor thread must not keep it alive, see
        L{_release}), and C{(origin, serial)} of the new zones that differ
        from the served ones without a higher serial (emptied, as every
        new zone not served).
    """
    chosen = []
    raised = []
    unchanged = []
    for zone in newZones:
        old = current.get(zone.originKey)
        if old is None or _serialGreater(zone.serial, old.serial):
            chosen.append(zone)
            raised.append((zone, None if old is None else old.serial))
            continue
        # Read from the same bytes (the digests of every file are equal):
        # the same zone, without comparing every record.
        if not (zone.sources and zone.sources == old.sources) and zone.fingerprint() != old.fingerprint():
            unchanged.append((zone.origin, zone.serial))
        chosen.append(old)
        # Not served: freed here an entry at a time (see _release).
        zone.nodes.release()
    return chosen, raised, unchanged


def _release(state) -> None:
    """
    Free the zones and table of C{state} (a replaced L{DNSServer.state})
    an entry at a time, in a pool thread: between two the reactor thread
    can take the interpreter, where freeing a dict of a million names in
    one go holds it for most of a second.

    Only what nothing else still uses is emptied (a zone kept by the new
    state because its serial did not change, a zone transfer in progress,
    a NOTIFY being sent): C{sys.getrefcount} tells, since every holder of
    a zone holds a reference to it.  The rest is freed by reference
    counting when its last user lets go.
    """
    zones, table = state
    del state
    retired = list(zones.byOrigin.values())
    zones.byOrigin.clear()
    del zones
    # The table's dicts: held by the table alone.
    for attribute in ("table", "permanent"):
        mapping = getattr(table, attribute)
        if sys.getrefcount(mapping) <= 3:  # the attribute, this name, the call
            while mapping:
                mapping.popitem()
        del mapping
    del table
    while retired:
        zone = retired.pop()
        if sys.getrefcount(zone) <= 2:  # this name and the call
            zone.nodes.release()
        del zone


def _hostPort(endpoint, description: str):
    if isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        host = endpoint._interface
        if not host:
            host = "::" if isinstance(endpoint, TCP6ServerEndpoint) else ""
        return host, endpoint._port
    raise ValueError(f'"{description}" is not a tcp: endpoint')


def makeDNSService(config, resources) -> DNSService:
    """
    The C{[dns]} builder (L{twisted_maillab.interfaces.IServiceBuilder}).

    @raise twisted_maillab.config.ConfigError: a zone does not load (the
        message names its file and lines) or a C{listen} value is unusable.
    """
    section = config.dns
    source = resources.zoneSource
    unsaved: list = []
    if isinstance(source, FileZoneSource):
        # Served as read (no generated records are added to them): saved
        # once the listeners are up.
        zones = loadQuietly(lambda: source.load(unsaved), freeze=True)
    else:
        zones = loadQuietly(source.load, freeze=True)
    if sum(len(zone.nodes) for zone in zones) >= TRIM_NAMES:
        returnFreedMemory()
    reactor = resources.reactor
    limiter = None
    if section.rate_limit:
        limiter = RateLimiter(
            reactor,
            section.rate_limit,
            section.rate_limit_slip,
            section.rate_limit_window,
            section.rate_limit_ipv4_prefix,
            section.rate_limit_ipv6_prefix,
        )
    dnsService = DNSService(
        source,
        zones,
        reactor,
        udpSize=section.max_udp_payload,
        allowTransfer=section.allow_transfer,
        notifyTargets=section.also_notify,
        rateLimiter=limiter,
    )
    dnsService.unsaved = unsaved
    factory = DNSStreamFactory(dnsService.server, reactor, section.tcp_idle_timeout, section.tcp_max_clients)
    resources.metrics.watch("dns", dnsService.server)
    for description in section.listen:
        endpoint = resources.endpoint(section, description)
        try:
            host, port = _hostPort(endpoint, description)
        except ValueError as e:
            raise config.error("dns", "listen", str(e)) from None
        dnsService.addListener(endpoint, host, port, factory)
    return dnsService
