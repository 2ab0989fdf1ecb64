"""
The C{[http]} resource tree (twisted.web) and the site that serves it.

L{buildResource} is the one function that assembles the tree; another
part of the suite (or an embedding application) adds a whole virtual host
by naming it in L{HOSTS}, the way L{twisted_maillab.service.BUILDERS}
names service builders (the MTA-STS policy host is registered so)::

    HOSTS["mta-sts"] = "twisted_maillab.tlspolicy.publish:policyHost"

A request whose C{Host} is C{mta-sts.<anything>} then goes to the
resource that callable returns (called once, as C{f(config, context)}
with the L{SiteContext}); every other host name (the server's own,
C{autoconfig.<domain>}, C{autodiscover.<domain>}, an address) gets the
mail tree:

  - C{/mail/config-v1.1.xml} and
    C{/.well-known/autoconfig/mail/config-v1.1.xml}: Mozilla autoconfig;
  - C{/autodiscover/autodiscover.xml} (any case): Autodiscover POX;
  - C{/metrics}: Prometheus text format, for C{[http] metrics_allow} only;
  - C{/healthz}: 200 C{ok}, or 503 naming each problem.

Every answer to a bad request is a 4xx with a one-line text body; a bug
is a 500 without a traceback (logged with one).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from twisted_maillab.addresses import inNetworks
from twisted_maillab.http import documents, health

__all__ = ["HOSTS", "SiteContext", "buildResource", "MailSite"]

log = Logger()

# First label of the Host header -> "module:callable"; the callable,
# called as f(config, context), returns the IResource for that host.
HOSTS: dict[str, str] = {}
HOSTS["mta-sts"] = "twisted_maillab.tlspolicy.publish:policyHost"

# RFC 5321 4.5.3.1.3: a path (so an address) is at most 256 octets.
MAX_ADDRESS = 320


@dataclass
class SiteContext:
    """
    What the resources need from the running suite.

    @ivar metrics: the tree's L{twisted_maillab.metrics.Metrics}.
    @ivar services: returns the whole service tree (for C{/healthz}), or
        L{None} before it is assembled.
    @ivar runner: C{runner(f, *args) -> Deferred}, C{f} run in a thread.
    """

    metrics: object
    services: Callable
    runner: Callable


def _plain(request, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (text + "\n").encode("utf-8")


def _finishAsync(request, d: defer.Deferred, what: str):
    """
    Finish C{request} with what C{d} fires with (C{(code, type, body)}),
    or a 500 when it fails; nothing when the client has gone.
    """
    gone = []
    request.notifyFinish().addErrback(lambda f: gone.append(True))

    def done(result):
        if gone:
            return
        code, contentType, body = result
        request.setResponseCode(code)
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"cache-control", b"no-store")
        request.write(body)
        request.finish()

    def failed(f):
        log.failure("http: {what} failed", f, what=what)
        if not gone:
            request.write(_plain(request, 500, "internal error"))
            request.finish()

    d.addCallbacks(done, failed)
    return server.NOT_DONE_YET


class AutoconfigResource(resource.Resource):
    """
    Mozilla autoconfig: C{GET ...config-v1.1.xml[?emailaddress=ADDRESS]}.
    The domain is the address's, else the one after C{autoconfig.} in the
    Host header, else C{[server] domain}.
    """

    isLeaf = True

    def __init__(self, config):
        super().__init__()
        self.config = config

    def render_GET(self, request):
        addresses = request.args.get(b"emailaddress", [])
        domain = None
        if addresses:
            raw = addresses[0]
            if len(raw) > MAX_ADDRESS:
                return _plain(request, 400, "emailaddress is too long")
            try:
                address = documents.checkAddress(self.config, raw.decode("utf-8"))
            except UnicodeDecodeError:
                return _plain(request, 400, "emailaddress is not UTF-8")
            except documents.BadRequest as e:
                return _plain(request, 400, f"emailaddress: {e}")
            except documents.UnknownDomain as e:
                return _plain(request, 404, str(e))
            domain = address.rpartition("@")[2]
        else:
            host = request.getRequestHostname().decode("ascii", "replace").lower().rstrip(".")
            if host.startswith("autoconfig."):
                candidate = host[len("autoconfig.") :]
                if candidate in self.config.mailDomains():
                    domain = candidate
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return documents.autoconfigDocument(self.config, domain)

    render_HEAD = render_GET


class AutodiscoverResource(resource.Resource):
    """
    Microsoft Autodiscover POX: C{POST} of an C{Autodiscover} request
    naming C{EMailAddress}.
    """

    isLeaf = True

    def __init__(self, config):
        super().__init__()
        self.config = config

    def render_POST(self, request):
        body = request.content.read()
        try:
            address = documents.checkAddress(self.config, documents.parseAutodiscoverRequest(body))
        except documents.BadRequest as e:
            return _plain(request, 400, str(e))
        except documents.UnknownDomain as e:
            return _plain(request, 404, str(e))
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return documents.autodiscoverDocument(self.config, address)


class MetricsResource(resource.Resource):
    """
    C{/metrics}: the tree's registry in Prometheus text format, to the
    C{[http] metrics_allow} networks only (403 to others).  The queue's
    size and age are read in a thread first.
    """

    isLeaf = True

    def __init__(self, config, context: SiteContext):
        super().__init__()
        self.config = config
        self.context = context
        self._queue = (0, 0.0)
        if health.queueDirectory(config) is not None:
            context.metrics.watch("queue", lambda: self._queue)

    def render_GET(self, request):
        client = request.getClientAddress()
        if not inNetworks(getattr(client, "host", None), self.config.http.metrics_allow):
            return _plain(request, 403, "metrics are not served to this address")

        async def render():
            try:
                self._queue = await self.context.runner(health.queueStats, health.queueDirectory(self.config))
            except OSError as e:
                log.warn("http: /metrics cannot read the queue: {error}", error=str(e))
            return 200, CONTENT_TYPE_LATEST.encode("ascii"), generate_latest(self.context.metrics.registry)

        return _finishAsync(request, defer.ensureDeferred(render()), "/metrics")


class HealthResource(resource.Resource):
    """
    C{/healthz}: 200 C{ok}, or 503 with one problem per line.
    """

    isLeaf = True

    def __init__(self, config, context: SiteContext):
        super().__init__()
        self.config = config
        self.context = context

    def render_GET(self, request):
        async def render():
            top = self.context.services()
            problems = await health.checkHealth(self.config, top, self.context.runner)
            if problems:
                return 503, b"text/plain; charset=utf-8", ("\n".join(problems) + "\n").encode()
            return 200, b"text/plain; charset=utf-8", b"ok\n"

        return _finishAsync(request, defer.ensureDeferred(render()), "/healthz")

    render_HEAD = render_GET


class _Folder(resource.Resource):
    """
    A path segment whose children are found without regard to case
    (Outlook asks for C{/Autodiscover/Autodiscover.xml}, others lower case).
    """

    def getChild(self, path, request):
        child = self.children.get(path.lower())
        if child is None:
            return resource.NoResource("no such resource")
        return child


class HostDispatch(resource.Resource):
    """
    The root: a request goes to C{hosts[label]} when its Host header is
    C{label.<domain>}, else to C{default}.
    """

    def __init__(self, default, hosts: dict):
        super().__init__()
        self.default = default
        self.hosts = hosts

    def pick(self, request):
        host = request.getRequestHostname().decode("ascii", "replace").lower().rstrip(".")
        label, dot, _ = host.partition(".")
        return self.hosts.get(label, self.default) if dot else self.default

    def getChildWithDefault(self, path, request):
        chosen = self.pick(request)
        if chosen.isLeaf:
            # Give the segment back: the leaf sees the whole path.
            request.prepath.pop()
            request.postpath.insert(0, path)
            return chosen
        return chosen.getChildWithDefault(path, request)

    def render(self, request):
        return self.pick(request).render(request)


def mailTree(config, context: SiteContext) -> resource.Resource:
    """
    The tree every host name gets unless L{HOSTS} names it.
    """
    root = _Folder()
    autoconfig = AutoconfigResource(config)
    mail = _Folder()
    mail.putChild(b"config-v1.1.xml", autoconfig)
    root.putChild(b"mail", mail)
    wellKnown = _Folder()
    root.putChild(b".well-known", wellKnown)
    wellKnownAutoconfig = _Folder()
    wellKnown.putChild(b"autoconfig", wellKnownAutoconfig)
    wellKnownAutoconfig.putChild(b"mail", mail)
    autodiscover = _Folder()
    autodiscover.putChild(b"autodiscover.xml", AutodiscoverResource(config))
    root.putChild(b"autodiscover", autodiscover)
    root.putChild(b"metrics", MetricsResource(config, context))
    root.putChild(b"healthz", HealthResource(config, context))
    return root


def buildResource(config, context: SiteContext, hosts: dict[str, str] | None = None) -> resource.Resource:
    """
    The whole C{[http]} tree: L{mailTree} behind a L{HostDispatch} with a
    resource per entry of C{hosts} (default L{HOSTS}).

    @raise ConfigError: a host's resource cannot be imported or built.
    """
    built = {}
    for label, target in (HOSTS if hosts is None else hosts).items():
        module, _, attribute = target.partition(":")
        try:
            built[label] = getattr(import_module(module), attribute)(config, context)
        except Exception as e:
            raise config.error("http", "enabled", f"the {label}. resource ({target}) failed to load: {e}") from e
    return HostDispatch(mailTree(config, context), built)


class BoundedRequest(server.Request):
    """
    A request whose body may be at most C{channel.site.maxRequestSize}
    octets: a longer one is answered 413 and its connection closed as
    soon as the excess is seen (the declared Content-Length, or the
    chunks as they come), so nothing more is buffered.
    """

    def gotLength(self, length):
        self._bodyLimit = self.channel.site.maxRequestSize
        self._bodyReceived = 0
        self._refused = False
        if length is not None and length > self._bodyLimit:
            self._refuse()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._bodyReceived += len(data)
        if self._bodyReceived > self._bodyLimit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self):
        # As HTTPChannel._respondToBadRequestAndDisconnect does for a
        # malformed request: the response, then close.
        self._refused = True
        self.channel.transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-type: text/plain\r\n"
            b"content-length: 23\r\nconnection: close\r\n\r\nrequest body too large\n"
        )
        self.channel.loseConnection()

    def process(self):
        if self._refused:
            return  # answered 413; the connection is closing
        super().process()


class MailSite(server.Site):
    """
    The C{[http]} site: bounded request bodies, an idle timeout, no
    tracebacks in responses.
    """

    requestFactory = BoundedRequest
    displayTracebacks = False

    def __init__(self, root, maxRequestSize: int, timeout: float, reactor=None):
        super().__init__(root, timeout=timeout or None, reactor=reactor)
        self.maxRequestSize = maxRequestSize
