"""
The outbound queue and MX relay client: mail for other domains from
clients the relay restrictions permit (mynetworks, SASL) and alias targets
in other domains.

Why not Twisted's C{relaymanager}/C{relay}/C{ESMTPClient}:
the queue is Python 2 code that raises on Python 3, keeps pickles without
fsync, never retries (lazy C{map}), bounces on 4xx, and its MX calculator
has no AAAA, no RFC 7505 null MX and returns one host only; the client has
no DSN/SIZE parameters and mis-stuffs dots.  So:

  - Spool (L{twisted_maillab.smtp.spool}): C{<id>.eml} and C{<id>.json}
    per message, durable before the client gets its 250.
  - Per recipient state: pending, sent, or failed; 2xx marks sent, 5xx
    failed, 4xx and connection trouble leave it pending for a retry with
    exponential backoff (C{minimal_backoff_time} doubling up to
    C{maximal_backoff_time}), until C{maximal_queue_lifetime}.
  - Routing: MX records by preference (RFC 5321 5.1), the implicit MX
    (A/AAAA of the domain) when there is none, RFC 7505 null MX refused at
    once, every address (A and AAAA) of every MX tried in order.
  - Client (L{twisted_maillab.smtp.relayclient}): EHLO (HELO fallback),
    opportunistic STARTTLS (RFC 3207, RFC 7435: no certificate check; a
    failed handshake is retried once in plaintext, as Postfix's
    C{smtp_tls_security_level = may}), MAIL with SIZE/BODY/RET/ENVID and
    RCPT with NOTIFY/ORCPT when offered (RFC 1870, 6152, 3461), the body
    streamed from disk with every line end as CRLF and dot-stuffing.
  - Failures produce an RFC 3464 delivery status notification
    (L{twisted_maillab.smtp.dsn}) at the end of the attempt in which the
    recipient failed (none when NOTIFY excludes FAILURE).  A report is
    queued mail with the null sender, delivered locally when it is for
    one of our domains, retried like any mail.  A null-sender message
    that fails is reported to the postmaster (a double bounce), never to
    the null sender (RFC 5321 4.5.5); a failed double bounce is dropped.
  - Log lines are Postfix's (qmgr, smtp, bounce), so its log tools work.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from twisted.internet import defer, error as ierror
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.names import dns, error as dnserror

from twisted_maillab.metrics import NULL_METRICS
from twisted_maillab.smtp.delivery import QueueIds
from twisted_maillab.smtp.dsn import deliveryReport
from twisted_maillab.smtp.envelope import SMTPReply
from twisted_maillab.smtp.relayclient import (
    Conversation,
    PermanentFailure,
    RelayClient,
    TemporaryFailure,
    TLSHandshakeFailure,
    TLSPolicyFailure,
)
from twisted_maillab.smtp.spool import (
    QueuedMessage,
    QueuedRecipient,
    SpoolWriter,
    readState,
    removeMessage,
    writeState,
)
from twisted_maillab.store.errors import MailboxNotFound, StoreError
from twisted_maillab.smtp.queueadmin import QueueAdministration

# deliveryReport and the spool classes are imported from here by other
# modules.
__all__ = ["OutboundQueue", "SpoolWriter", "QueuedRecipient", "RelayClient", "deliveryReport"]

log = Logger(namespace="twisted_maillab.smtp")

# Postfix's bounce_size_limit: larger originals are returned as headers only.
BOUNCE_SIZE_LIMIT = 50000


# ---------------------------------------------------------------------------
# The queue.


class OutboundQueue(QueueAdministration):
    """
    @ivar directory: the spool directory.
    @ivar resolver: an L{twisted.internet.interfaces.IResolver} (MX, A, AAAA).
    @ivar port: the port of remote MTAs (25; tests use another).
    @ivar localDelivery: C{f(recipientAddress, messageBytes) -> Deferred},
        for queued reports to local senders (and the postmaster); it fails
        with an L{SMTPReply} or a L{StoreError}.
    @ivar postmaster: where double bounces go (Postfix's
        C{2bounce_notice_recipient}).

    The queue owns the spool's scheduling: L{schedule} (one timer per
    message), L{_run} (concurrency, errors) and L{attempt} (one pass over a
    message, then L{writeState} or L{removeMessage}).
    """

    metrics = NULL_METRICS  # the service tree's Metrics (twisted_maillab.metrics)

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
        postmaster: str | None = None,
        signer=None,
        tlsPolicy=None,
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
        # The per-destination TLS policy (an IOutboundTLSPolicy); None:
        # opportunistic TLS everywhere (RFC 7435).
        self.tlsPolicy = tlsPolicy
        self.localDelivery = localDelivery
        self.isLocal = isLocal or (lambda domain: False)
        # Postfix's $mydomain: the host name without its first label.
        self.postmaster = postmaster or f"postmaster@{hostname.partition('.')[2] or hostname}"
        self._timers: dict = {}
        self._running: set = set()
        self._again: set = set()
        # Postfix's default_destination_concurrency_limit and
        # default_process_limit: a burst of mail for one domain must not
        # open hundreds of connections to its MX.
        self.destinationConcurrency = destinationConcurrency
        self._destinations: dict[str, defer.DeferredSemaphore] = {}
        self._total = defer.DeferredSemaphore(totalConcurrency)
        # DKIM (twisted_maillab.mailauth.signing.Signer), applied by the
        # spool writer to the messages that ask for it.
        self.signer = signer

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
                message = readState(self.directory, queueId)
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
        """
        Try C{queueId} in C{delay} seconds, or sooner if it is already due
        sooner: a flush (ETRN) asked for while an attempt runs is not
        postponed by the backoff that attempt sets at its end.
        """
        when = self.clock.seconds() + delay
        timer = self._timers.get(queueId)
        if timer is not None and timer.active():
            if timer.getTime() <= when:
                return
            timer.cancel()
        self._timers[queueId] = self.clock.callLater(delay, self._run, queueId)

    def _run(self, queueId: str):
        self._timers.pop(queueId, None)
        if queueId in self._running:
            # A flush (ETRN) while an attempt runs: that attempt may have
            # read the state before the flush was asked for, so run again
            # once it is over instead of dropping the request (the attempt
            # cancelled no timer of its own yet, and will set its backoff).
            self._again.add(queueId)
            return None
        self._running.add(queueId)
        d = self._total.run(lambda: defer.ensureDeferred(self.attempt(queueId)))

        def failed(f):
            # A bug or a broken spool file must not strand the message:
            # log it and try again later.
            log.failure("{queueId}: queue run failed", f, queueId=queueId)
            self.schedule(queueId, self.maxBackoff)

        def finished(_):
            self._running.discard(queueId)
            # an administrator's hold/delete/... waiting for this attempt
            self._wakeAdmin(queueId)
            if queueId in self._again:
                self._again.discard(queueId)
                self.schedule(queueId, 0)

        d.addErrback(failed)
        d.addBoth(finished)
        return d

    # -- one attempt -------------------------------------------------------

    async def attempt(self, queueId: str) -> None:
        """
        Try every pending recipient of one message once; report the
        recipients that failed in this attempt; then delete the message
        when no recipient is left pending, else schedule the next try.
        """
        try:
            message = await self.runner(readState, self.directory, queueId)
        except FileNotFoundError:
            return
        if message.held:
            return
        now = self.clock.seconds()
        message.attempts += 1
        if not message.activated:
            message.activated = now
        # Postfix's qmgr line, as the message enters the active queue.
        log.info(
            "{queueId}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)",
            queueId=queueId,
            sender=message.sender,
            size=message.size,
            nrcpt=len(message.recipients),
        )
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
        if pending and self.clock.seconds() - message.created >= self.lifetime:
            log.info(
                "{queueId}: from=<{sender}>, status=expired, returned to sender",
                queueId=queueId,
                sender=message.sender,
            )
            now = self.clock.seconds()
            for recipient in pending:
                recipient.status = "failed"
                recipient.reply = f"4.4.7 message expired in queue ({recipient.reply})"
                recipient.command = ""
                self._logRecipient(message, recipient, now, None, now, relay="none")
            pending = []
        # A recipient that failed is reported now, even while others stay
        # queued for days (Postfix does the same); "reported" keeps it from
        # being reported again at a later attempt.
        failed = [r for r in message.recipients if r.status == "failed" and not r.reported]
        if failed:
            try:
                await self._bounce(message, failed)
            except Exception:
                # The report could not be queued (a full disk): keep the
                # message, and the failures unreported, for the next try.
                log.failure("{queueId}: could not queue the report; will retry", queueId=queueId)
            else:
                for r in failed:
                    r.reported = True
        unreported = any(r.status == "failed" and not r.reported for r in message.recipients)
        if pending or unreported:
            await self.runner(writeState, self.directory, message)
            delay = min(self.maxBackoff, self.minBackoff * 2 ** (message.attempts - 1))
            log.info(
                "{queueId}: {n} recipient(s) deferred, next attempt in {delay:.0f}s",
                queueId=queueId,
                n=len(pending),
                delay=delay,
            )
            self.schedule(queueId, delay)
            return
        await self.runner(removeMessage, self.directory, queueId)
        log.info("{queueId}: removed", queueId=queueId)

    def _logRecipient(self, message, r, start: float, mailAt, end: float, relay: str | None = None) -> None:
        """
        Postfix's smtp(8)/local(8) line for one recipient's outcome in this
        attempt: C{to=<r>, relay=host[addr]:port, delay, delays=a/b/c/d,
        dsn, status=sent|deferred|bounced (reason)}.  a: before the queue
        took the message up; b: in the queue (deferrals included); c:
        connection setup (DNS, connect, greeting, EHLO, TLS); d: the
        transaction.
        """
        status = {"sent": "sent", "failed": "bounced"}.get(r.status, "deferred")
        a = max(0.0, message.activated - message.created)
        b = max(0.0, start - message.created - a)
        c = max(0.0, (mailAt if mailAt is not None else end) - start)
        d = max(0.0, end - mailAt) if mailAt is not None else 0.0
        if relay is None:
            relay = f"{r.remote}:{self.port}" if r.remote else "none"
        self.metrics.message({"sent": "delivered"}.get(status, status), _dsnCode(status, r.reply))
        if status != "deferred":
            self.metrics.deliveryLatency(end - message.created)
        log.info(
            "{queueId}: to=<{to}>, relay={relay}, delay={delay}, delays={delays}, dsn={dsn}, status={status} ({reason})",
            queueId=message.queueId,
            to=r.address,
            relay=relay,
            delay=_seconds(end - message.created),
            delays="/".join(_seconds(x) for x in (a, b, c, d)),
            dsn=_dsnCode(status, r.reply),
            status=status,
            reason=_reason(r),
        )

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
        start = self.clock.seconds()
        if self.isLocal(domain) and self.localDelivery is not None:
            # Reports to our own senders and the postmaster.
            await self._deliverLocal(message, recipients, start)
            return
        timing = _Timing()
        try:
            hosts = await self.mxHosts(domain)
        except PermanentFailure as e:
            for r in recipients:
                r.status, r.reply, r.remote, r.command = "failed", str(e), "", ""
        except TemporaryFailure as e:
            for r in recipients:
                r.reply, r.remote, r.command = str(e), "", ""
        else:
            plan = None
            if self.tlsPolicy is not None:
                try:
                    plan = await self.tlsPolicy.forDomain(domain, hosts, self.resolver)
                except TLSPolicyFailure as e:
                    hosts = []
                    for r in recipients:
                        r.reply, r.remote, r.command = str(e), "", ""
                else:
                    hosts = plan.hosts
            if hosts:
                await self._tryHosts(message, hosts, recipients, timing, plan)
        end = self.clock.seconds()
        for r in recipients:
            self._logRecipient(message, r, start, timing.mailAt, end)

    async def _tryHosts(self, message, hosts, recipients, timing, plan=None) -> None:
        """
        Every address of every MX in turn, until one session settles the
        recipients (RFC 5321 5.1); a failed TLS handshake is retried once
        in plaintext on the same address (RFC 7435, Postfix's
        C{smtp_tls_security_level = may}) unless the host's TLS policy
        (C{plan}, a L{twisted_maillab.tlspolicy.policy.DomainPlan})
        requires TLS: its failures defer, as another host's may.
        """
        last = ("4.4.1 no MX host answered", "", "")
        for host in hosts:
            hostPolicy = None
            if plan is not None:
                try:
                    hostPolicy = await plan.forHost(host)
                except TLSPolicyFailure as e:
                    last = (str(e), "", "")
                    continue
            for family, address in await self.addresses(host):
                remote = f"{host}[{address}]"
                useTLS = hostPolicy is None or hostPolicy.wantsTLS
                while True:
                    pending = [r for r in recipients if r.status == "pending"]
                    try:
                        await self._session(message, host, family, address, pending, timing, useTLS, hostPolicy)
                        return
                    except TLSPolicyFailure as e:
                        last = (str(e), remote, "")
                        break
                    except TLSHandshakeFailure as e:
                        last = (f"4.7.5 {remote}: TLS handshake failed: {e}", remote, "")
                        if not useTLS:
                            break
                        if hostPolicy is not None and not hostPolicy.handshakeFailed(host, address):
                            break
                        log.info(
                            "{queueId}: TLS handshake failed with {remote}: {reason}; retrying in plaintext",
                            queueId=message.queueId,
                            remote=remote,
                            reason=str(e),
                        )
                        useTLS = False
                    except TemporaryFailure as e:
                        if e.command:
                            last = (str(e), remote, e.command)
                        elif _ENHANCED.match(str(e)):
                            last = (str(e), "", "")
                        else:
                            last = (f"4.4.2 {remote}: {e}", remote, "")
                        break
                    except Exception:
                        log.failure(
                            "{queueId}: session with {remote} failed",
                            queueId=message.queueId,
                            remote=remote,
                        )
                        last = (f"4.4.2 {remote}: session failed", remote, "")
                        break
        for r in recipients:
            if r.status == "pending":
                r.reply, r.remote, r.command = last

    async def _session(self, message, host, family, address, recipients, timing, useTLS=True, hostPolicy=None) -> None:
        endpointClass = TCP6ClientEndpoint if family == "6" else TCP4ClientEndpoint
        endpoint = endpointClass(self.reactor, address, self.port, timeout=self.connectTimeout)
        try:
            client = await endpoint.connect(Factory.forProtocol(RelayClient))
        except (ierror.ConnectError, OSError, defer.CancelledError) as e:
            raise TemporaryFailure(f"4.4.1 connect to {host}[{address}]:{self.port}: {e}") from None
        timer = self.clock.callLater(self.commandTimeout * 4, client.transport.abortConnection)
        tlsContext = self.tlsContext if useTLS else None
        if tlsContext is not None and hostPolicy is not None:
            tlsContext = hostPolicy.clientTLS(tlsContext, host)
        conversation = Conversation(
            client,
            message,
            host=host,
            address=address,
            port=self.port,
            hostname=self.hostname,
            tlsContext=tlsContext,
            bodyPath=self.directory / f"{message.queueId}.eml",
            runner=self.runner,
            clock=self.clock,
            # The plaintext retry after a failed handshake happens only
            # where TLS is not required (may, MTA-STS testing): no check.
            tlsPolicy=hostPolicy if useTLS else None,
        )
        try:
            await conversation.run(recipients)
        finally:
            if conversation.mailAt is not None:
                timing.mailAt = conversation.mailAt
            if timer.active():
                timer.cancel()
            client.transport.loseConnection()

    async def _deliverLocal(self, message, recipients, start) -> None:
        data = await self.runner(self._readAll, message.queueId)
        for r in recipients:
            r.remote, r.command = "", ""
            try:
                await self.localDelivery(r.address, data)
            except MailboxNotFound as e:
                # The directory knows the user: a home or Maildir that does
                # not exist yet is the administrator's to fix, so retry
                # (Postfix's local(8) defers a missing home too).
                r.reply = f"4.2.0 {e}"
            except StoreError as e:
                r.reply = e.smtpReply()
                if not e.temporary:
                    r.status = "failed"
            except SMTPReply as e:
                r.reply = str(e)
                if not e.temporary:
                    r.status = "failed"
            except Exception as e:
                log.failure("{queueId}: local delivery to {to} failed", queueId=message.queueId, to=r.address)
                r.reply = f"4.3.0 local delivery failed: {e.__class__.__name__}"
            else:
                r.status, r.reply = "sent", "delivered to maildir"
            self._logRecipient(message, r, start, start, self.clock.seconds(), relay="local")

    def _readAll(self, queueId: str) -> bytes:
        with open(self.directory / f"{queueId}.eml", "rb") as f:
            return f.read()

    # -- bounces (RFC 3464) ------------------------------------------------

    async def _bounce(self, message: QueuedMessage, failed: list) -> None:
        """
        Report recipients that failed: to the sender; for a null sender
        (a report itself, RFC 5321 4.5.5: never answered) to the postmaster
        as a double bounce; an undeliverable double bounce is dropped.

        @raise Exception: the report could not be queued.
        """
        if message.kind == "2bounce":
            log.warn("{queueId}: undeliverable postmaster notification discarded", queueId=message.queueId)
            return
        if not message.sender:
            original = await self.runner(self._readOriginal, message.queueId)
            report = self.bounceMessage(message, failed, original, to=self.postmaster)
            await self._queueReport(message.queueId, self.postmaster, report, "2bounce")
            return
        wanted = [r for r in failed if not r.notify or "FAILURE" in r.notify]
        if not wanted:
            return
        original = await self.runner(self._readOriginal, message.queueId)
        report = self.bounceMessage(message, wanted, original)
        await self._queueReport(message.queueId, message.sender, report, "bounce")

    def _readOriginal(self, queueId: str) -> tuple[bytes, bool]:
        path = self.directory / f"{queueId}.eml"
        with open(path, "rb") as f:
            data = f.read(BOUNCE_SIZE_LIMIT + 1)
        if len(data) > BOUNCE_SIZE_LIMIT:
            return data.split(b"\n\n", 1)[0] + b"\n", False
        return data, True

    def bounceMessage(self, message: QueuedMessage, failed: list, original, to: str | None = None) -> bytes:
        data, whole = original
        if message.ret == "HDRS":
            data, whole = data.split(b"\n\n", 1)[0] + b"\n", False
        return self._report(message, [(r, "failed") for r in failed], data, whole, to)

    def _report(self, message: QueuedMessage, outcomes: list, data: bytes, whole: bool, to=None) -> bytes:
        return deliveryReport(
            self.hostname,
            self.clock.seconds(),
            message.queueId,
            to or message.sender,
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
        Queue a delivery status notice for a sender (with the null sender,
        in this spool, retried like any mail); failures are logged.
        """
        try:
            await self._queueReport(queueId, sender, report, "notice")
        except Exception:
            log.failure("{queueId}: could not queue the report", queueId=queueId)

    async def _queueReport(self, queueId: str, to: str, report: bytes, what: str) -> None:
        reportId = await self.enqueueBounce(to, report, kind="2bounce" if what == "2bounce" else "bounce")
        # Postfix's bounce(8) line, under the original message's id.
        log.info("{queueId}: {notice}: {reportId}", queueId=queueId, notice=_NOTICES[what], reportId=reportId)

    async def enqueueBounce(self, recipient: str, report: bytes, kind: str = "bounce") -> str:
        """
        Spool a report to C{recipient} with the null sender.

        @return: its queue id.
        """
        message = QueuedMessage(
            queueId=self._bounceId(),
            sender="",
            created=self.clock.seconds(),
            body=None if report.isascii() else "8BITMIME",
            kind=kind,
            # NEVER: a report is never answered by another (RFC 3461 5.2).
            recipients=[QueuedRecipient(address=recipient, notify=["NEVER"])],
        )
        writer = SpoolWriter(self, message)
        # Our own reports are signed like our users' mail.
        writer.sign = True
        await writer.write(report)
        await writer.commit()
        return message.queueId

    async def enqueue(self, sender: str, recipients: list[str], data: bytes) -> str:
        """
        Spool a message we make ourselves (a TLS-RPT report) from
        C{sender} to C{recipients}, delivered like relayed mail.

        @return: its queue id.
        """
        message = QueuedMessage(
            # B: made by us, like bounces (the queue console lists B ids).
            queueId=self._bounceId(),
            sender=sender,
            created=self.clock.seconds(),
            body=None if data.isascii() else "8BITMIME",
            recipients=[QueuedRecipient(address=address) for address in recipients],
        )
        writer = SpoolWriter(self, message)
        await writer.write(data)
        await writer.commit()
        return message.queueId

    def _bounceId(self) -> str:
        return "B" + self._bounceIds.next()


_NOTICES = {
    "bounce": "sender non-delivery notification",
    "2bounce": "postmaster non-delivery notification",
    "notice": "sender delivery status notification",
}

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_REPLY = re.compile(r"[245]\d\d[ -]")


class _Timing:
    # When the session for a domain sent MAIL (Postfix's delays c/d).
    mailAt = None


def _seconds(value: float) -> str:
    """
    A delay as Postfix logs it: two significant digits below 10 seconds,
    whole seconds above, no trailing zeros (C{0.25}, C{1.2}, C{40}, C{0}).
    """
    if value >= 10:
        return f"{value:.0f}"
    text = f"{value:.1f}" if value >= 1 else f"{value:.2f}"
    return text.rstrip("0").rstrip(".") or "0"


def _dsnCode(status: str, reply: str) -> str:
    found = _ENHANCED.search(reply)
    first = {"sent": "2", "bounced": "5"}.get(status, "4")
    if found is None:
        return f"{first}.0.0"
    # An expired deferral (4.4.7) is reported as a failure (5.4.7).
    return f"{first}.{found.group(2)}.{found.group(3)}"


def _reason(r) -> str:
    # Postfix quotes a remote's refusal with who said it and to what; a
    # success is the reply alone.
    if r.status != "sent" and r.remote and r.command and _REPLY.match(r.reply):
        return f"host {r.remote} said: {r.reply} (in reply to {r.command} command)"
    found = _ENHANCED.match(r.reply)
    return r.reply[found.end():] if found else r.reply


def _ipv6(payload) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, payload.address)
