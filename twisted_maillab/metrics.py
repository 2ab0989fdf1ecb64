"""
The suite's Prometheus instrumentation: one L{Metrics} per service tree,
served by C{[http]} at C{/metrics}.

Each tree gets its own L{CollectorRegistry}, never
C{prometheus_client.REGISTRY}: an application (or a test run) may build
several trees in one process, and a metric registered twice in one
registry is an error.  Code that counts holds a L{Metrics} (or
L{NULL_METRICS}, whose calls do nothing, when no tree gave it one) and calls
one of its event methods where the event happens; values that already
exist elsewhere (the queue's spool, the DNS rate limiter's drop counts,
thread-pool queues) are read when Prometheus scrapes, by the collectors
L{Metrics.watch} registers, so the code that owns them is not touched.

Metric names follow the Prometheus conventions (C{_total} counters,
C{_seconds} units); every name starts with C{maillab_}.
"""

from __future__ import annotations

import os
import time

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

__all__ = ["Metrics", "NullMetrics", "NULL_METRICS", "ReactorLagService"]

# RFC 1035 4.1.1 and RFC 6895 2.3: the response codes a server sends.
RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}

_LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, float("inf"))
_FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, float("inf"))
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, float("inf"))


class NullMetrics:
    """
    The event methods of L{Metrics}, recording nothing: what code that
    counts holds when no service tree gave it a L{Metrics}.
    """

    def connectionOpened(self, protocol: str) -> None:
        pass

    def connectionClosed(self, protocol: str) -> None:
        pass

    def login(self, protocol: str, result: str, delay: float = 0.0) -> None:
        pass

    def lockout(self, protocol: str) -> None:
        pass

    def message(self, event: str, reason: str = "") -> None:
        pass

    def deliveryLatency(self, seconds: float) -> None:
        pass

    def fsync(self, fd: int) -> None:
        """
        C{os.fsync(fd)}; L{Metrics} also times it.  Called in the store's
        threads.
        """
        os.fsync(fd)

    def reactorLag(self, seconds: float) -> None:
        pass

    def watch(self, kind: str, source) -> None:
        """
        See L{Metrics.watch}: nothing is read.
        """


NULL_METRICS = NullMetrics()


class Metrics(NullMetrics):
    """
    The metrics of one service tree.

    @ivar registry: what C{/metrics} renders.
    """

    def __init__(self):
        # Imported here, not with the module: the code that counts imports
        # this module for NULL_METRICS, and a tree that serves no /metrics
        # (no [http]) counts nothing (see twisted_maillab.service.Resources).
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry(auto_describe=True)
        self._connections = Counter(
            "maillab_connections", "Connections accepted, by listener", ["protocol"], registry=r
        )
        self._open = Gauge(
            "maillab_connections_open", "Connections open now, by listener", ["protocol"], registry=r
        )
        self._logins = Counter(
            "maillab_logins",
            "Login attempts by protocol and result (ok, failed, locked, unavailable, error)",
            ["protocol", "result"],
            registry=r,
        )
        self._delays = Counter(
            "maillab_login_throttle_delays",
            "Failed logins whose reply the throttle delayed",
            ["protocol"],
            registry=r,
        )
        self._delaySeconds = Counter(
            "maillab_login_throttle_delay_seconds",
            "Total delay the throttle added to failed logins",
            ["protocol"],
            registry=r,
        )
        self._lockouts = Counter(
            "maillab_login_lockouts", "Client addresses locked out", ["protocol"], registry=r
        )
        self._messages = Counter(
            "maillab_messages",
            "Messages by event (received, rejected, delivered, deferred, bounced) and reason",
            ["event", "reason"],
            registry=r,
        )
        self._latency = Histogram(
            "maillab_delivery_latency_seconds",
            "Time from arrival to a final outcome of a queued recipient (sent or bounced)",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self._fsync = Histogram(
            "maillab_store_fsync_seconds",
            "Duration of the store's message and directory fsyncs",
            registry=r,
            buckets=_FSYNC_BUCKETS,
        )
        self._lag = Histogram(
            "maillab_reactor_lag_seconds",
            "How late the reactor ran a timer (a busy or blocked reactor thread)",
            registry=r,
            buckets=_LAG_BUCKETS,
        )
        self._watched = _Watched()
        r.register(self._watched)

    # -- events

    def connectionOpened(self, protocol: str) -> None:
        self._connections.labels(protocol).inc()
        self._open.labels(protocol).inc()

    def connectionClosed(self, protocol: str) -> None:
        self._open.labels(protocol).dec()

    def login(self, protocol: str, result: str, delay: float = 0.0) -> None:
        """
        One login attempt's outcome, and the delay the throttle gave it.
        """
        self._logins.labels(protocol, result).inc()
        if delay > 0:
            self._delays.labels(protocol).inc()
            self._delaySeconds.labels(protocol).inc(delay)

    def lockout(self, protocol: str) -> None:
        self._lockouts.labels(protocol).inc()

    def message(self, event: str, reason: str = "") -> None:
        """
        A message (or, for delivered/deferred/bounced, a recipient of a
        queued message) reached C{event}; C{reason} is a short code such
        as an enhanced status code (RFC 3463), never free text, so the
        label set stays small.
        """
        self._messages.labels(event, reason).inc()

    def deliveryLatency(self, seconds: float) -> None:
        self._latency.observe(max(0.0, seconds))

    def fsync(self, fd: int) -> None:
        started = time.perf_counter()
        os.fsync(fd)
        # Prometheus metrics take a lock: safe from the store's threads.
        self._fsync.observe(time.perf_counter() - started)

    def reactorLag(self, seconds: float) -> None:
        self._lag.observe(max(0.0, seconds))

    # -- values read at scrape time

    def watch(self, kind: str, source) -> None:
        """
        Read C{source} at each scrape.  C{kind} is:
          - C{"dns"}: a L{twisted_maillab.dns.server.DNSServer} (its
            C{rcodes} counts and its rate limiter's drops and slips);
          - C{"queue"}: a callable returning C{(messages, oldestAgeSeconds)}
            of the outbound queue;
          - C{"pool:NAME"}: a callable returning the number of jobs
            waiting in thread pool NAME.
        """
        self._watched.sources.append((kind, source))


class _Watched:
    """
    A custom collector (C{prometheus_client}'s C{collect()} protocol) for
    the values L{Metrics.watch} names.
    """

    def __init__(self):
        self.sources: list = []

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        queries = CounterMetricFamily(
            "maillab_dns_queries", "DNS responses sent, by response code", labels=["rcode"]
        )
        limited = CounterMetricFamily(
            "maillab_dns_rrl", "UDP responses held back by rate limiting (drop, slip)", labels=["action"]
        )
        messages = GaugeMetricFamily("maillab_queue_messages", "Messages in the outbound queue")
        oldest = GaugeMetricFamily("maillab_queue_oldest_seconds", "Age of the oldest queued message")
        pools = GaugeMetricFamily(
            "maillab_pool_queue", "Jobs waiting for a thread, by pool", labels=["pool"]
        )
        for kind, source in self.sources:
            if kind == "dns":
                for code, count in enumerate(source.rcodes):
                    if count or code in (0, 3):
                        queries.add_metric([RCODES.get(code, str(code))], count)
                limiter = source.rateLimiter
                limited.add_metric(["drop"], limiter.dropped if limiter else 0)
                limited.add_metric(["slip"], limiter.slipped if limiter else 0)
            elif kind == "queue":
                count, age = source()
                messages.add_metric([], count)
                oldest.add_metric([], age)
            elif kind.startswith("pool:"):
                pools.add_metric([kind[5:]], source())
        for family in (queries, limited, messages, oldest, pools):
            if family.samples:
                yield family


class ReactorLagService(Service):
    """
    Measures how late the reactor runs a timer due every C{interval}
    seconds: the time the reactor thread spent on something else (a long
    callback, a blocking call that should be in a thread).

    @param clock: an L{IReactorTime} (a L{task.Clock} in tests).
    """

    def __init__(self, metrics: Metrics, clock, interval: float = 1.0):
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self._call = None
        self._due = None

    def startService(self):
        super().startService()
        self._call = LoopingCall(self._tick)
        self._call.clock = self.clock
        self._due = self.clock.seconds()
        self._call.start(self.interval, now=True)

    def _tick(self):
        now = self.clock.seconds()
        self.metrics.reactorLag(now - self._due)
        self._due = now + self.interval

    def stopService(self):
        super().stopService()
        if self._call is not None and self._call.running:
            self._call.stop()
        self._call = None
