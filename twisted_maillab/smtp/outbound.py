"""
The outbound queue and MX relay client: mail for other domains from
clients the relay restrictions permit (mynetworks, SASL) and alias targets
in other domains.

Why not Twisted's C{relaymanager}/C{relay}/C{ESMTPClient} (survey 2.2, 2.3):
the queue is Python 2 code that raises on Python 3, keeps pickles without
fsync, never retries (lazy C{map}), bounces on 4xx, and its MX calculator
has no AAAA, no RFC 7505 null MX and returns one host only; the client has
no DSN/SIZE parameters and mis-stuffs dots.  So:

  - Spool: C{<queue_directory>/<id>.eml} (the message as stored locally:
    LF line ends, our Received: first) and C{<id>.json} (envelope and
    per-recipient state).  Both are fsynced, the JSON is written by rename
    and the directory fsynced before the client gets its 250.
  - Per recipient state: pending, sent, or failed; 2xx marks sent, 5xx
    failed, 4xx and connection trouble leave it pending for a retry with
    exponential backoff (C{minimal_backoff_time} doubling up to
    C{maximal_backoff_time}), until C{maximal_queue_lifetime}.
  - Routing: MX records by preference (RFC 5321 5.1), the implicit MX
    (A/AAAA of the domain) when there is none, RFC 7505 null MX refused at
    once, every address (A and AAAA) of every MX tried in order.
  - Client: EHLO (HELO fallback), opportunistic STARTTLS (RFC 3207,
    RFC 7435: no certificate check), MAIL with SIZE/BODY/RET/ENVID and RCPT
    with NOTIFY/ORCPT when offered (RFC 1870, 6152, 3461), the body
    streamed from disk with CRLF and dot-stuffing.
  - Failures produce an RFC 3464 delivery status notification to the
    sender (none for the null sender, none when NOTIFY excludes FAILURE);
    a local sender gets it through local delivery.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import defer, error as ierror
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.names import dns, error as dnserror

from twisted_maillab.smtp.delivery import QueueIds
from twisted_maillab.smtp.queueadmin import QueueAdministration

__all__ = ["OutboundQueue", "SpoolWriter", "QueuedRecipient", "RelayClient"]

log = Logger(namespace="twisted_maillab.smtp")

READ_CHUNK = 64 * 1024
# Postfix's bounce_size_limit: larger originals are returned as headers only.
BOUNCE_SIZE_LIMIT = 50000
REPLY_LINE_LIMIT = 4096
REPLY_LINES_LIMIT = 100


@dataclass
class QueuedRecipient:
    address: str
    notify: list = field(default_factory=list)
    orcpt: str | None = None
    orcptType: str | None = None
    status: str = "pending"
    reply: str = ""
    remote: str = ""
    # RFC 3461 5.2.2: sent to a server without DSN while NOTIFY=SUCCESS.
    relayedNotice: bool = False


@dataclass
class QueuedMessage:
    queueId: str
    sender: str
    created: float
    size: int = 0
    lines: int = 0
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    attempts: int = 0
    recipients: list = field(default_factory=list)
    # maillab queue hold: kept in the spool, skipped by the scheduler.
    held: bool = False

    @classmethod
    def fromJSON(cls, data: dict) -> "QueuedMessage":
        recipients = [QueuedRecipient(**r) for r in data.pop("recipients", [])]
        return cls(recipients=recipients, **data)


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


# ---------------------------------------------------------------------------
# Spool files (thread side).


def _writeAll(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsyncDir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writeState(directory: Path, message: QueuedMessage) -> None:
    data = json.dumps(asdict(message), sort_keys=True).encode()
    tmp = directory / f"{message.queueId}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        _writeAll(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, directory / f"{message.queueId}.json")
    _fsyncDir(directory)


def _readState(directory: Path, queueId: str) -> QueuedMessage:
    with open(directory / f"{queueId}.json", "rb") as f:
        return QueuedMessage.fromJSON(json.loads(f.read(4 * 1024 * 1024)))


class SpoolWriter:
    """
    Streams one message into the queue; used by the local delivery next
    to the store transaction.  Writes run in order in the thread pool.
    """

    def __init__(self, queue: "OutboundQueue", message: QueuedMessage):
        self.queue = queue
        self.message = message
        self.path = queue.directory / f"{message.queueId}.eml"
        self._chain = queue.runner(self._open)
        self._fd = None
        self._failed = None
        self._done = False

    def _open(self):
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def _append(self, data):
        _writeAll(self._fd, data)

    def write(self, data: bytes) -> defer.Deferred:
        data = bytes(data)
        self.message.size += len(data)
        self.message.lines += data.count(b"\n")
        result = defer.Deferred()

        def run(_):
            return self.queue.runner(self._append, data)

        def done(value):
            result.callback(None)
            return value

        def failed(f):
            self._failed = f
            result.callback(None)
            return None

        self._chain.addCallback(run)
        self._chain.addCallbacks(done, failed)
        return result

    def _commitWork(self):
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        _writeState(self.queue.directory, self.message)

    def commit(self) -> defer.Deferred:
        """
        Make the message durable and schedule its first attempt.
        """
        self._done = True

        def run(_):
            if self._failed is not None:
                return self._failed
            return self.queue.runner(self._commitWork)

        self._chain.addCallback(run)
        self._chain.addCallback(lambda _: self.queue.schedule(self.message.queueId, 0))
        return self._step()

    def _step(self) -> defer.Deferred:
        # A fresh Deferred for the caller: awaiting the chain itself from
        # code that runs inside one of its callbacks (a coroutine resumed
        # by write()'s Deferred) would return its intermediate result at
        # once (Deferred.send's fast path), before this step ran.
        out = defer.Deferred()

        def passed(value):
            out.callback(value)
            return value

        def failed(f):
            # Handed to the caller; the chain goes on for abort().
            out.errback(f)
            return None

        self._chain.addCallbacks(passed, failed)
        return out

    def _abortWork(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def abort(self) -> defer.Deferred:
        if self._done:
            return defer.succeed(None)
        self._done = True
        self._chain.addBoth(lambda _: self.queue.runner(self._abortWork))
        self._chain.addErrback(lambda f: log.failure("queue abort failed", f))
        return self._step()


# ---------------------------------------------------------------------------
# The client.


class RelayClient(Protocol):
    """
    One SMTP client session, driven by L{OutboundQueue._session}.
    """

    def __init__(self):
        self._buffer = b""
        self._lines = []
        self._waiting = None
        self._replies = []
        self._lost = None
        self._paused = None

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        pass

    def dataReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            self._lines.append(line.decode("utf-8", "replace"))
            if len(self._lines) > REPLY_LINES_LIMIT:
                self.transport.loseConnection()
                return
            if line[3:4] != b"-":
                code = int(line[:3]) if line[:3].isdigit() else 0
                reply = (code, self._lines)
                self._lines = []
                if self._waiting is not None:
                    waiting, self._waiting = self._waiting, None
                    waiting.callback(reply)
                else:
                    self._replies.append(reply)
                    if len(self._replies) > REPLY_LINES_LIMIT:
                        # Replies nobody asked for: not an SMTP server.
                        self.transport.loseConnection()
                        return
        if len(self._buffer) > REPLY_LINE_LIMIT:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self._lost = reason
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(TemporaryFailure("connection lost"))
        self.resumeProducing()

    def reply(self) -> defer.Deferred:
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(TemporaryFailure("connection lost"))
        self._waiting = defer.Deferred()
        return self._waiting

    def command(self, line: str) -> defer.Deferred:
        self.transport.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    async def writeData(self, data: bytes):
        self.transport.write(data)
        if self._paused is not None:
            await self._paused


def stuff(chunk: bytes, atLineStart: bool) -> tuple[bytes, bool]:
    """
    Stored LF text -> wire text: CRLF line ends and RFC 5321 4.5.2 dot
    stuffing, across chunk boundaries.
    """
    if atLineStart and chunk.startswith(b"."):
        chunk = b"." + chunk
    chunk = chunk.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
    return chunk, chunk.endswith(b"\n")


# ---------------------------------------------------------------------------
# The queue.


class OutboundQueue(QueueAdministration):
    """
    @ivar directory: the spool directory.
    @ivar resolver: an L{twisted.internet.interfaces.IResolver} (MX, A, AAAA).
    @ivar port: the port of remote MTAs (25; tests use another).
    @ivar localDelivery: C{f(recipientAddress, messageBytes) -> Deferred},
        for bounces to local senders.
    """

    def __init__(
        self,
        directory: Path,
        *,
        reactor,
        clock,
        resolver,
        hostname: str,
        runner,
        port: int = 25,
        minBackoff: float = 300.0,
        maxBackoff: float = 4000.0,
        lifetime: float = 5 * 86400.0,
        connectTimeout: float = 30.0,
        commandTimeout: float = 300.0,
        tlsContext=None,
        localDelivery=None,
        isLocal=None,
        destinationConcurrency: int = 20,
        totalConcurrency: int = 100,
    ):
        self.directory = Path(directory)
        self.reactor = reactor
        self.clock = clock
        # Bounces get ids of their own, strictly increasing like queue ids:
        # two bounces in one microsecond (or under a test's fixed clock)
        # must never name the same spool file.
        self._bounceIds = QueueIds(clock)
        self.resolver = resolver
        self.hostname = hostname
        self.runner = runner
        self.port = port
        self.minBackoff = minBackoff
        self.maxBackoff = maxBackoff
        self.lifetime = lifetime
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.tlsContext = tlsContext
        self.localDelivery = localDelivery
        self.isLocal = isLocal or (lambda domain: False)
        self._timers: dict = {}
        self._running: set = set()
        # Postfix's default_destination_concurrency_limit and
        # default_process_limit: a burst of mail for one domain must not
        # open hundreds of connections to its MX.
        self.destinationConcurrency = destinationConcurrency
        self._destinations: dict[str, defer.DeferredSemaphore] = {}
        self._total = defer.DeferredSemaphore(totalConcurrency)

    def start(self) -> None:
        """
        Schedule every message left in the spool (after a restart).
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        entries = set(os.listdir(self.directory))
        for entry in sorted(entries):
            if entry.endswith(".json"):
                self.schedule(entry[: -len(".json")], 0)
            elif entry.endswith(".tmp") or (
                # A message whose commit never finished: the client got no
                # 250 for it, so it will send it again.
                entry.endswith(".eml") and entry[: -len(".eml")] + ".json" not in entries
            ):
                os.unlink(self.directory / entry)

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def writer(self, envelope, recipients) -> SpoolWriter:
        """
        A spool writer for C{recipients} (L{Recipient}s of other domains) of
        an envelope.
        """
        params = envelope.params
        message = QueuedMessage(
            queueId=envelope.queueId,
            sender=envelope.sender.address,
            created=self.clock.seconds(),
            body=params.body,
            smtputf8=params.smtputf8,
            ret=params.ret,
            envid=params.envid,
            recipients=[
                QueuedRecipient(
                    address=address,
                    notify=list(r.params.notify),
                    orcpt=r.params.orcpt,
                    orcptType=r.params.orcptType,
                )
                for r, address in recipients
            ],
        )
        return SpoolWriter(self, message)

    def _waitingFor(self, domain: str) -> list[str]:
        found = []
        for entry in os.listdir(self.directory):
            if not entry.endswith(".json"):
                continue
            queueId = entry[: -len(".json")]
            try:
                message = _readState(self.directory, queueId)
            except (OSError, ValueError):
                continue
            if any(
                r.status == "pending" and r.address.rpartition("@")[2].lower() == domain
                for r in message.recipients
            ):
                found.append(queueId)
        return found

    async def flushDomain(self, domain: str) -> int:
        """
        ETRN (RFC 1985): try now every message waiting for C{domain}.

        @return: how many messages were rescheduled.
        """
        found = await self.runner(self._waitingFor, domain.lower().rstrip("."))
        for queueId in found:
            self.schedule(queueId, 0)
        return len(found)

    def schedule(self, queueId: str, delay: float) -> None:
        timer = self._timers.get(queueId)
        if timer is not None and timer.active():
            timer.cancel()
        self._timers[queueId] = self.clock.callLater(delay, self._run, queueId)

    def _run(self, queueId: str):
        self._timers.pop(queueId, None)
        if queueId in self._running:
            return None
        self._running.add(queueId)
        d = self._total.run(lambda: defer.ensureDeferred(self.attempt(queueId)))

        def failed(f):
            # A bug or a broken spool file must not strand the message:
            # log it and try again later.
            log.failure("{queueId}: queue run failed", f, queueId=queueId)
            self.schedule(queueId, self.maxBackoff)

        d.addErrback(failed)
        d.addBoth(lambda _: self._running.discard(queueId))
        d.addBoth(lambda _: self._wakeAdmin(queueId))
        return d

    # -- one attempt -------------------------------------------------------

    async def attempt(self, queueId: str) -> None:
        """
        Try every pending recipient of one message once; then finish it
        (bounce the failures, delete the files) or schedule the next try.
        """
        try:
            message = await self.runner(_readState, self.directory, queueId)
        except FileNotFoundError:
            return
        if message.held:
            return
        message.attempts += 1
        groups: dict[str, list] = {}
        for recipient in message.recipients:
            if recipient.status == "pending":
                domain = recipient.address.rpartition("@")[2].lower()
                groups.setdefault(domain, []).append(recipient)
        for domain, recipients in groups.items():
            limit = self._destinations.get(domain)
            if limit is None:
                limit = self._destinations[domain] = defer.DeferredSemaphore(self.destinationConcurrency)
            await limit.run(lambda: defer.ensureDeferred(self._deliverDomain(message, domain, recipients)))
            if not limit.waiting and limit.tokens == limit.limit:
                self._destinations.pop(domain, None)
        relayed = [r for r in message.recipients if r.relayedNotice]
        if relayed:
            for r in relayed:
                r.relayedNotice = False
            await self.notifySuccess(message, relayed)
        pending = [r for r in message.recipients if r.status == "pending"]
        expired = self.clock.seconds() - message.created >= self.lifetime
        if pending and expired:
            for recipient in pending:
                recipient.status = "failed"
                recipient.reply = f"4.4.7 message expired in queue ({recipient.reply})"
            pending = []
        if pending:
            await self.runner(_writeState, self.directory, message)
            delay = min(self.maxBackoff, self.minBackoff * 2 ** (message.attempts - 1))
            log.info(
                "{queueId}: {n} recipient(s) deferred, next attempt in {delay:.0f}s",
                queueId=queueId,
                n=len(pending),
                delay=delay,
            )
            self.schedule(queueId, delay)
            return
        failed = [r for r in message.recipients if r.status == "failed"]
        if failed:
            await self._bounce(message, failed)
        await self.runner(self._remove, queueId)
        log.info("{queueId}: removed", queueId=queueId)

    def _remove(self, queueId: str) -> None:
        for suffix in (".json", ".eml"):
            try:
                os.unlink(self.directory / f"{queueId}{suffix}")
            except FileNotFoundError:
                pass
        _fsyncDir(self.directory)

    async def mxHosts(self, domain: str) -> list[str]:
        """
        The hosts to try for a domain, best first.

        @raise PermanentFailure: no such domain, or a null MX (RFC 7505).
        @raise TemporaryFailure: the DNS failed.
        """
        if domain.startswith("[") and domain.endswith("]"):
            literal = domain[1:-1]
            return [literal[5:] if literal.lower().startswith("ipv6:") else literal]
        try:
            answers, _, _ = await self.resolver.lookupMailExchange(domain)
        except dnserror.DNSNameError:
            raise PermanentFailure(f"5.1.2 domain {domain} does not exist") from None
        except Exception as e:
            raise TemporaryFailure(f"4.4.3 MX lookup for {domain} failed: {e}") from None
        records = [
            (rr.payload.preference, str(rr.payload.name).rstrip(".").lower())
            for rr in answers
            if rr.type == dns.MX
        ]
        if not records:
            # RFC 5321 5.1: the domain itself is the implicit MX.
            return [domain]
        if any(name == "" for _, name in records):
            raise PermanentFailure(f"5.1.10 {domain} accepts no mail (null MX)")
        random.shuffle(records)
        records.sort(key=lambda record: record[0])
        return [name for _, name in records]

    async def addresses(self, host: str) -> list[tuple[str, str]]:
        """
        C{[(family, address)]} of a host: its A then AAAA records.
        """
        if ":" in host:
            return [("6", host)]
        if host.replace(".", "").isdigit():
            return [("4", host)]
        found = []
        for lookup, family, rtype in (
            (self.resolver.lookupAddress, "4", dns.A),
            (self.resolver.lookupIPV6Address, "6", dns.AAAA),
        ):
            try:
                answers, _, _ = await lookup(host)
            except Exception:
                continue
            for rr in answers:
                if rr.type == rtype:
                    found.append((family, rr.payload.dottedQuad() if rtype == dns.A else _ipv6(rr.payload)))
        return found

    async def _deliverDomain(self, message, domain, recipients) -> None:
        try:
            hosts = await self.mxHosts(domain)
        except PermanentFailure as e:
            for r in recipients:
                r.status, r.reply = "failed", str(e)
            return
        except TemporaryFailure as e:
            for r in recipients:
                r.reply = str(e)
            return
        last = "4.4.1 no MX host answered"
        for host in hosts:
            for family, address in await self.addresses(host):
                try:
                    await self._session(message, host, family, address, recipients)
                    return
                except TemporaryFailure as e:
                    last = f"4.4.1 {host}[{address}]: {e}"
                    log.info("{queueId}: {reason}", queueId=message.queueId, reason=last)
                    continue
                except Exception:
                    log.failure(
                        "{queueId}: session with {host}[{address}] failed",
                        queueId=message.queueId,
                        host=host,
                        address=address,
                    )
                    last = f"4.4.2 {host}[{address}]: session failed"
                    continue
        for r in recipients:
            if r.status == "pending":
                r.reply = last

    async def _session(self, message, host, family, address, recipients) -> None:
        endpointClass = TCP6ClientEndpoint if family == "6" else TCP4ClientEndpoint
        endpoint = endpointClass(self.reactor, address, self.port, timeout=self.connectTimeout)
        try:
            client = await endpoint.connect(Factory.forProtocol(RelayClient))
        except (ierror.ConnectError, OSError, defer.CancelledError) as e:
            raise TemporaryFailure(f"connect failed: {e}") from None
        timer = self.clock.callLater(self.commandTimeout * 4, client.transport.abortConnection)
        try:
            await self._converse(client, message, host, address, recipients)
        finally:
            if timer.active():
                timer.cancel()
            client.transport.loseConnection()

    async def _converse(self, client, message, host, address, recipients) -> None:
        remote = f"{host}[{address}]"
        greeting = await client.reply()
        if greeting[0] != 220:
            raise TemporaryFailure(f"greeting: {greeting[1][-1]}")
        code, lines = await client.command(f"EHLO {self.hostname}")
        esmtp = code == 250
        if not esmtp:
            code, lines = await client.command(f"HELO {self.hostname}")
            if code != 250:
                raise TemporaryFailure(f"HELO: {lines[-1]}")
        extensions = {line[4:].split(" ", 1)[0].upper(): line[4:] for line in lines[1:]} if esmtp else {}
        if "STARTTLS" in extensions and self.tlsContext is not None:
            code, lines = await client.command("STARTTLS")
            if code == 220:
                client.transport.startTLS(self.tlsContext)
                code, lines = await client.command(f"EHLO {self.hostname}")
                if code != 250:
                    raise TemporaryFailure(f"EHLO after STARTTLS: {lines[-1]}")
                extensions = {line[4:].split(" ", 1)[0].upper(): line[4:] for line in lines[1:]}
        if message.smtputf8 and "SMTPUTF8" not in extensions:
            for r in recipients:
                r.status, r.reply, r.remote = "failed", "5.6.7 remote server does not support SMTPUTF8", remote
            await client.command("QUIT")
            return
        mail = f"MAIL FROM:<{message.sender}>"
        if "SIZE" in extensions:
            # RFC 1870: the size on the wire, where every LF becomes CRLF.
            mail += f" SIZE={message.size + message.lines}"
        if message.body == "8BITMIME" and "8BITMIME" in extensions:
            mail += " BODY=8BITMIME"
        if message.smtputf8:
            mail += " SMTPUTF8"
        dsn = "DSN" in extensions
        if dsn and message.ret:
            mail += f" RET={message.ret}"
        if dsn and message.envid:
            mail += f" ENVID={_xtext(message.envid)}"
        code, lines = await client.command(mail)
        if code >= 500:
            for r in recipients:
                r.status, r.reply, r.remote = "failed", lines[-1], remote
            await client.command("QUIT")
            return
        if code != 250:
            raise TemporaryFailure(f"MAIL: {lines[-1]}")
        accepted = []
        for r in recipients:
            rcpt = f"RCPT TO:<{r.address}>"
            if dsn and r.notify:
                rcpt += " NOTIFY=" + ",".join(r.notify)
            if dsn and r.orcpt:
                rcpt += f" ORCPT={r.orcptType or 'rfc822'};{_xtext(r.orcpt)}"
            code, lines = await client.command(rcpt)
            r.remote = remote
            if code in (250, 251):
                accepted.append(r)
            elif code >= 500:
                r.status, r.reply = "failed", lines[-1]
            else:
                r.reply = lines[-1]
        if not accepted:
            await client.command("QUIT")
            return
        code, lines = await client.command("DATA")
        if code != 354:
            for r in accepted:
                if code >= 500:
                    r.status = "failed"
                r.reply = lines[-1]
            await client.command("QUIT")
            return
        await self._sendBody(client, message)
        code, lines = await client.reply()
        for r in accepted:
            r.reply = lines[-1]
            if code == 250:
                r.status = "sent"
                r.relayedNotice = not dsn and "SUCCESS" in r.notify and bool(message.sender)
                log.info(
                    "{queueId}: to=<{to}>, relay={relay}, status=sent ({reply})",
                    queueId=message.queueId,
                    to=r.address,
                    relay=remote,
                    reply=lines[-1],
                )
            elif code >= 500:
                r.status = "failed"
        try:
            await client.command("QUIT")
        except TemporaryFailure:
            pass

    async def _sendBody(self, client, message) -> None:
        path = self.directory / f"{message.queueId}.eml"
        fd = await self.runner(os.open, path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            atLineStart = True
            ended = True
            while True:
                chunk = await self.runner(os.read, fd, READ_CHUNK)
                if not chunk:
                    break
                data, atLineStart = stuff(chunk, atLineStart)
                ended = data.endswith(b"\r\n")
                await client.writeData(data)
            await client.writeData((b"" if ended else b"\r\n") + b".\r\n")
        finally:
            await self.runner(os.close, fd)

    # -- bounces (RFC 3464) ------------------------------------------------

    async def _bounce(self, message: QueuedMessage, failed: list) -> None:
        for r in failed:
            log.warn(
                "{queueId}: to=<{to}>, relay={relay}, status=bounced ({reply})",
                queueId=message.queueId,
                to=r.address,
                relay=r.remote or "none",
                reply=r.reply,
            )
        wanted = [r for r in failed if not r.notify or "FAILURE" in r.notify]
        if not message.sender or not wanted:
            # RFC 5321 4.5.5: never a bounce for the null sender.
            return
        original = await self.runner(self._readOriginal, message.queueId)
        report = self.bounceMessage(message, wanted, original)
        await self.sendReport(message.queueId, message.sender, report)

    def _readOriginal(self, queueId: str) -> tuple[bytes, bool]:
        path = self.directory / f"{queueId}.eml"
        with open(path, "rb") as f:
            data = f.read(BOUNCE_SIZE_LIMIT + 1)
        if len(data) > BOUNCE_SIZE_LIMIT:
            return data.split(b"\n\n", 1)[0] + b"\n", False
        return data, True

    def bounceMessage(self, message: QueuedMessage, failed: list, original) -> bytes:
        data, whole = original
        if message.ret == "HDRS":
            data, whole = data.split(b"\n\n", 1)[0] + b"\n", False
        return self._report(message, [(r, "failed") for r in failed], data, whole)

    def _report(self, message: QueuedMessage, outcomes: list, data: bytes, whole: bool) -> bytes:
        return deliveryReport(
            self.hostname,
            self.clock.seconds(),
            message.queueId,
            message.sender,
            message.envid,
            message.created,
            outcomes,
            data,
            whole,
        )

    async def notifySuccess(self, message: QueuedMessage, recipients: list) -> None:
        """
        RFC 3461 5.2.2: NOTIFY=SUCCESS for a recipient handed to a server
        that does not offer DSN gets a "relayed" notice from us.
        """
        data, whole = await self.runner(self._readOriginal, message.queueId)
        if message.ret != "FULL" or not whole:
            data, whole = data.split(b"\n\n", 1)[0] + b"\n", False
        report = self._report(message, [(r, "relayed") for r in recipients], data, whole)
        await self.sendReport(message.queueId, message.sender, report)

    async def sendReport(self, queueId: str, sender: str, report: bytes) -> None:
        """
        Deliver a report to a sender: locally when its domain is ours,
        else through the queue with the null sender.
        """
        domain = sender.rpartition("@")[2].lower()
        try:
            if self.isLocal(domain) and self.localDelivery is not None:
                await self.localDelivery(sender, report)
            else:
                await self.enqueueBounce(sender, report)
        except Exception:
            log.failure("{queueId}: could not deliver the report", queueId=queueId)

    async def enqueueBounce(self, recipient: str, report: bytes) -> None:
        from twisted_maillab.smtp.envelope import MailParams, Mailbox, RcptParams

        class _Env:
            pass

        env = _Env()
        env.queueId = f"{self._bounceId()}"
        env.sender = Mailbox("", "")
        env.params = MailParams()

        class _R:
            params = RcptParams(notify=("NEVER",))

        writer = self.writer(env, [(_R(), recipient)])
        await writer.write(report)
        await writer.commit()

    def _bounceId(self) -> str:
        return "B" + self._bounceIds.next()


_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}
_TEXTS = {
    "failed": "Your message could not be delivered to one or more recipients:",
    "delivered": "Your message was delivered to the following recipients:",
    "relayed": "Your message was relayed to the following recipients; their mail "
    "system may not send a further notice:",
}


def deliveryReport(
    hostname: str,
    now: float,
    queueId: str,
    sender: str,
    envid: str | None,
    arrival: float,
    entries: list,
    original: bytes,
    whole: bool,
) -> bytes:
    """
    An RFC 3464 delivery status notification (multipart/report), LF line
    ends, addressed to C{sender}.

    @param entries: C{[(recipient, action)]}; a recipient has C{address},
        C{orcpt}, C{orcptType}, C{reply} and C{remote}; the action is
        C{failed}, C{delivered} or C{relayed} (all entries share one kind).
    @param whole: C{original} is the whole message (message/rfc822), else
        its header (text/rfc822-headers).
    """
    kind = entries[0][1]
    boundary = f"{queueId}.{int(now)}/{hostname}"
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    arrived = format_datetime(datetime.fromtimestamp(arrival, timezone.utc))
    human = "\n".join(f"<{r.address}>: {r.reply or 'ok'}" for r, _ in entries)
    blocks = []
    for r, action in entries:
        block = [f"Final-Recipient: rfc822; {r.address}"]
        if r.orcpt:
            block.append(f"Original-Recipient: {r.orcptType or 'rfc822'}; {r.orcpt}")
        if action == "failed":
            words = r.reply.split(" ", 2)
            enhanced = next((w for w in words if w[:1] in "45" and w.count(".") == 2), "5.0.0")
            status = "5" + enhanced[1:]
        else:
            status = "2.0.0"
        block += [f"Action: {action}", f"Status: {status}"]
        if r.remote:
            block.append(f"Remote-MTA: dns; {r.remote.split('[')[0]}")
            block.append(f"Diagnostic-Code: smtp; {r.reply}")
        elif r.reply:
            block.append(f"Diagnostic-Code: X-maillab; {r.reply}")
        blocks.append("\n".join(block))
    envidLine = f"Original-Envelope-Id: {envid}\n" if envid else ""
    text = (
        f"From: MAILER-DAEMON@{hostname} (Mail Delivery System)\n"
        f"To: <{sender}>\n"
        f"Subject: {_SUBJECTS[kind]}\n"
        f"Date: {date}\n"
        f"Message-ID: {make_msgid(domain=hostname)}\n"
        f"Auto-Submitted: auto-replied\n"
        f"MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n'
        f"\n"
        f"--{boundary}\n"
        f"Content-Type: text/plain; charset=utf-8\n"
        f"\n"
        f"This is the mail system at host {hostname}.\n\n"
        f"{_TEXTS[kind]}\n\n{human}\n"
        f"\n--{boundary}\n"
        f"Content-Type: message/delivery-status\n"
        f"\n"
        f"Reporting-MTA: dns; {hostname}\n"
        f"X-Maillab-Queue-ID: {queueId}\n"
        f"{envidLine}"
        f"Arrival-Date: {arrived}\n"
        f"\n" + "\n\n".join(blocks) + "\n"
        f"\n--{boundary}\n"
        f"Content-Type: {'message/rfc822' if whole else 'text/rfc822-headers'}\n"
        f"\n"
    ).encode("utf-8")
    return text + original + f"\n--{boundary}--\n".encode()


def _xtext(value: str) -> str:
    # RFC 3461 4: "+", "=" and characters outside 33..126 as +HH.
    out = []
    for byte in value.encode("utf-8"):
        if byte < 33 or byte > 126 or byte in (ord("+"), ord("=")):
            out.append(f"+{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _ipv6(payload) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, payload.address)
