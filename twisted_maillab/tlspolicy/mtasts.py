"""
MTA-STS (RFC 8461) for the sending side: the C{_mta-sts} TXT record, the
policy fetched from C{https://mta-sts.<domain>/.well-known/mta-sts.txt}
with a verified certificate, and the policy cache.

The cache (RFC 8461 5.1) lives in memory and in
C{<state_directory>/mta-sts/<domain>.json} (C{id}, C{fetched}, the policy
text), so a restart does not forget a policy an attacker could then strip
by blocking the TXT lookup.  Disk reads and writes run in the runner's
thread pool.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates, Certificate
from twisted.logger import Logger
from twisted.names import dns
from twisted.web.client import Agent, ResponseDone
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_maillab.atomicwrite import replaceFile

__all__ = ["STSPolicy", "STSError", "parseRecord", "parsePolicy", "mxMatches", "PolicyFetcher", "STSCache"]

log = Logger(namespace="twisted_maillab.tlspolicy")

# RFC 8461 3.3: "senders SHOULD impose a limit on the maximum size of the
# response body" (64 KiB suggested); 3.2: max_age at most 31557600.
MAX_POLICY_SIZE = 64 * 1024
MAX_AGE_LIMIT = 31557600
FETCH_TIMEOUT = 60.0

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FILE_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+")


class STSError(Exception):
    """
    @ivar resultType: the RFC 8460 4.3.2.2 result type.
    """

    def __init__(self, resultType: str, reason: str):
        super().__init__(reason)
        self.resultType = resultType


@dataclass(frozen=True)
class STSPolicy:
    mode: str
    mx: tuple
    maxAge: int
    text: str

    def allows(self, host: str) -> bool:
        return any(mxMatches(pattern, host) for pattern in self.mx)

    def strings(self) -> list[str]:
        """
        The policy as RFC 8460 4.4's C{policy-string}: its lines.
        """
        return [line.strip() for line in self.text.splitlines() if line.strip()]


def parseRecord(texts: list[str]) -> str | None:
    """
    The policy id of the C{_mta-sts} TXT records (RFC 8461 3.1): exactly
    one record starting with C{v=STSv1}, else there is none.
    """
    found = [t for t in texts if t.startswith("v=STSv1")]
    if len(found) != 1:
        return None
    fields = {}
    for part in found[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    if fields.get("v") != "STSv1" or not _ID.fullmatch(fields.get("id", "")):
        return None
    return fields["id"]


def parsePolicy(text: str) -> STSPolicy:
    """
    RFC 8461 3.2: C{key: value} lines (LF or CRLF); unknown keys ignored.

    @raise STSError: C{sts-policy-invalid}.
    """
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    version = fields.get("version", [""])[0]
    mode = fields.get("mode", [""])[0]
    if version != "STSv1":
        raise STSError("sts-policy-invalid", f"version {version!r} is not STSv1")
    if mode not in ("enforce", "testing", "none"):
        raise STSError("sts-policy-invalid", f"mode {mode!r} is not enforce, testing or none")
    age = fields.get("max_age", [""])[0]
    if not age.isdigit() or len(age) > 10:
        raise STSError("sts-policy-invalid", f"max_age {age!r} is not a number of seconds")
    mx = tuple(value.lower().rstrip(".") for value in fields.get("mx", []))
    if mode != "none" and not mx:
        raise STSError("sts-policy-invalid", "no mx line")
    return STSPolicy(mode=mode, mx=mx, maxAge=min(int(age), MAX_AGE_LIMIT), text=text)


def mxMatches(pattern: str, host: str) -> bool:
    """
    RFC 8461 4.1: an MX pattern is a host name, or C{*.} and a domain that
    matches exactly one more leftmost label.
    """
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


class _LimitedBody(Protocol):
    def __init__(self, finished: defer.Deferred, limit: int):
        self.finished = finished
        self.limit = limit
        self.data = b""

    def dataReceived(self, data):
        self.data += data
        if len(self.data) > self.limit and not self.finished.called:
            self.finished.errback(STSError("sts-policy-invalid", f"policy larger than {self.limit} octets"))
            self.transport.stopProducing()

    def connectionLost(self, reason):
        if self.finished.called:
            return
        if reason.check(ResponseDone):
            self.finished.callback(self.data)
        else:
            self.finished.errback(STSError("sts-policy-fetch-error", f"policy fetch interrupted: {reason.value}"))


class _ResolvedTCP:
    """
    A client endpoint for a host name resolved with the queue's resolver
    (not the system's), A then AAAA.
    """

    def __init__(self, reactor, resolver, host: str, port: int, timeout: float):
        self.reactor, self.resolver, self.host, self.port, self.timeout = reactor, resolver, host, port, timeout

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))

    async def _connect(self, factory):
        for lookup, rtype, endpointClass in (
            (self.resolver.lookupAddress, dns.A, TCP4ClientEndpoint),
            (self.resolver.lookupIPV6Address, dns.AAAA, TCP6ClientEndpoint),
        ):
            try:
                answers, _, _ = await lookup(self.host)
            except Exception:
                continue
            for rr in answers:
                if rr.type != rtype:
                    continue
                address = rr.payload.dottedQuad() if rtype == dns.A else _ipv6(rr.payload.address)
                try:
                    return await endpointClass(self.reactor, address, self.port, timeout=self.timeout).connect(factory)
                except Exception:
                    continue
        raise STSError("sts-policy-fetch-error", f"cannot connect to {self.host}:{self.port}")


def _ipv6(packed: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, packed)


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor, resolver, trustRoot, timeout):
        self.reactor, self.resolver, self.trustRoot, self.timeout = reactor, resolver, trustRoot, timeout

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        # RFC 8461 3.3: the certificate must be valid for mta-sts.<domain>
        # and chain to a trusted root (RFC 6125).
        options = optionsForClientTLS(host, trustRoot=self.trustRoot)
        return wrapClientTLS(options, _ResolvedTCP(self.reactor, self.resolver, host, uri.port, self.timeout))


class PolicyFetcher:
    """
    Fetches C{https://mta-sts.<domain>/.well-known/mta-sts.txt} with
    C{twisted.web.client.Agent}: no redirects (RFC 8461 3.3), 200 only,
    C{text/plain}, at most L{MAX_POLICY_SIZE} octets, within
    L{FETCH_TIMEOUT} seconds.

    @param anchors: PEM trust anchors for the HTTPS certificate; empty:
        the platform's.
    @param port: the HTTPS port (443; tests use another).
    """

    def __init__(self, reactor, clock, anchors: list[bytes], port: int = 443, timeout: float = FETCH_TIMEOUT):
        from twisted.internet.ssl import platformTrust

        self.reactor = reactor
        self.clock = clock
        self.port = port
        self.timeout = timeout
        self.trustRoot = (
            trustRootFromCertificates([Certificate.loadPEM(pem) for pem in anchors]) if anchors else platformTrust()
        )

    def url(self, domain: str) -> bytes:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://mta-sts.{domain}{port}/.well-known/mta-sts.txt".encode("ascii")

    async def fetch(self, domain: str, resolver) -> STSPolicy:
        """
        @param resolver: resolves C{mta-sts.<domain>} (the queue's).
        @raise STSError: C{sts-policy-fetch-error}, C{sts-webpki-invalid}
            or C{sts-policy-invalid}.
        """
        d = defer.ensureDeferred(self._fetch(domain, resolver))
        d.addTimeout(self.timeout, self.clock)
        try:
            return await d
        except STSError:
            raise
        except defer.TimeoutError:
            raise STSError("sts-policy-fetch-error", f"policy fetch for {domain} timed out") from None
        except Exception as e:
            text = str(e)
            # Twisted's TLS failures (OpenSSL's "certificate verify
            # failed", service_identity's name mismatch) arrive wrapped.
            if "certificate" in text.lower() or "VerificationError" in text:
                raise STSError("sts-webpki-invalid", f"policy host certificate not valid: {text[:200]}") from None
            raise STSError("sts-policy-fetch-error", f"policy fetch for {domain} failed: {text[:200]}") from None

    async def _fetch(self, domain: str, resolver) -> STSPolicy:
        agent = Agent.usingEndpointFactory(
            self.reactor, _Endpoints(self.reactor, resolver, self.trustRoot, self.timeout)
        )
        response = await agent.request(b"GET", self.url(domain))
        if response.code != 200:
            response.deliverBody(Protocol())
            raise STSError("sts-policy-fetch-error", f"policy fetch for {domain}: HTTP {response.code}")
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0].split(b";")[0].strip().lower()
        if kind != b"text/plain":
            response.deliverBody(Protocol())
            raise STSError("sts-policy-invalid", f"policy for {domain} is {kind.decode('latin-1')!r}, not text/plain")
        finished = defer.Deferred()
        response.deliverBody(_LimitedBody(finished, MAX_POLICY_SIZE))
        body = await finished
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise STSError("sts-policy-invalid", f"policy for {domain} is not UTF-8") from None
        return parsePolicy(text)


@dataclass
class _Cached:
    id: str
    fetched: float
    policy: STSPolicy

    def fresh(self, now: float) -> bool:
        return now < self.fetched + self.policy.maxAge


class STSCache:
    """
    RFC 8461 5.1: policies by domain, in memory and in C{directory}, each
    valid C{max_age} seconds after it was fetched.
    """

    def __init__(self, directory: Path | None, runner, size: int = 10000):
        self.directory = Path(directory) if directory is not None else None
        self.runner = runner
        self.size = size
        # Bounded: one entry per destination domain (none for most).
        self._memory: dict[str, _Cached | None] = {}
        # One write at a time: two would share the temporary file.
        self._writing = defer.DeferredLock()

    def _onDisk(self, domain: str) -> bool:
        # The name comes from a recipient address: it becomes a file name
        # only when it is a plain host name.
        return self.directory is not None and _FILE_NAME.fullmatch(domain) is not None

    def _path(self, domain: str) -> Path:
        return self.directory / f"{domain}.json"

    def _remember(self, domain: str, entry) -> None:
        self._memory.pop(domain, None)
        if len(self._memory) >= self.size:
            self._memory.pop(next(iter(self._memory)))
        self._memory[domain] = entry

    def _read(self, domain: str):
        try:
            data = json.loads(self._path(domain).read_text(encoding="utf-8"))
            return _Cached(data["id"], float(data["fetched"]), parsePolicy(data["policy"]))
        except (OSError, ValueError, KeyError, TypeError, STSError):
            return None

    def _write(self, domain: str, entry: _Cached) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"id": entry.id, "fetched": entry.fetched, "policy": entry.policy.text}
        replaceFile(self._path(domain), json.dumps(data).encode("utf-8"), mode=0o600)

    async def get(self, domain: str) -> _Cached | None:
        if domain not in self._memory:
            found = await self.runner(self._read, domain) if self._onDisk(domain) else None
            self._remember(domain, found)
        return self._memory.get(domain)

    async def put(self, domain: str, entry: _Cached) -> None:
        self._remember(domain, entry)
        if self._onDisk(domain):
            try:
                await self._writing.run(self.runner, self._write, domain, entry)
            except OSError as e:
                log.warn("MTA-STS policy cache for {domain} not written: {error}", domain=domain, error=e)


class STSLookup:
    """
    The policy that applies to a domain now (RFC 8461 5.1): the TXT id
    compared with the cached policy's, a fetch when it changed or the
    cache is empty or expired, the cached policy when the fetch fails.
    """

    def __init__(self, fetcher: PolicyFetcher, cache: STSCache, clock):
        self.fetcher, self.cache, self.clock = fetcher, cache, clock

    async def _recordId(self, domain: str, resolver) -> str | None:
        """
        The id of the domain's C{_mta-sts} record, or L{None}: no record,
        or no answer (either way a cached policy still applies).
        """
        try:
            answers, _, _ = await resolver.lookupText(f"_mta-sts.{domain}")
        except Exception:
            return None
        texts = [b"".join(rr.payload.data).decode("utf-8", "replace") for rr in answers if rr.type == dns.TXT]
        return parseRecord(texts)

    async def policy(self, domain: str, resolver) -> tuple[STSPolicy | None, STSError | None]:
        """
        @param resolver: the queue's resolver.
        @return: the policy in force (or L{None}), and the error met while
            finding it (for TLS-RPT), or L{None}.
        """
        policyId = await self._recordId(domain, resolver)
        cached = await self.cache.get(domain)
        now = self.clock.seconds()
        if policyId is None:
            # No record (or no answer): a cached policy still applies until
            # it expires (RFC 8461 5.1), so blocking the TXT lookup does
            # not strip it.
            return (cached.policy if cached and cached.fresh(now) else None), None
        if cached is not None and cached.id == policyId and cached.fresh(now):
            return cached.policy, None
        try:
            fetched = await self.fetcher.fetch(domain, resolver)
        except STSError as e:
            log.info("MTA-STS policy of {domain}: {error}", domain=domain, error=str(e))
            return (cached.policy if cached and cached.fresh(now) else None), e
        await self.cache.put(domain, _Cached(policyId, now, fetched))
        return fetched, None
