"""
Local delivery: one store transaction per message (all its recipients),
the headers Postfix's smtpd and local(8) add, and queue ids.

Line endings: messages are stored with LF line ends, as Postfix's
local(8) and Dovecot's LDA write Maildir files (Dovecot computes the
C{,W=} wire size from them).  The SMTP server turns each CRLF that ends a
line on the wire into LF after removing dot-stuffing, and a bare CR or LF
into LF too (C{smtpd_forbid_bare_newline = normal}); every other byte
(8-bit text, UTF-8) is stored exactly as received.
"""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.interfaces import ISMTPDelivery, ISMTPMessage
from twisted_maillab.smtp.envelope import SMTPReply
from twisted_maillab.smtp.headers import MissingHeaders, rfc5322Date

__all__ = ["QueueIds", "DeliveryRouter", "RoutedMessage", "receivedHeader", "headerValue"]

log = Logger(namespace="twisted_maillab.smtp")


class QueueIds:
    """
    Queue ids: the time in microseconds, in hex, made strictly increasing
    (two ids in the same microsecond take the next one), so they are
    unique within the process and over restarts while the clock moves
    forward, and sort by arrival.
    """

    def __init__(self, clock):
        self.clock = clock
        self._last = 0

    def next(self) -> str:
        value = max(int(self.clock.seconds() * 1_000_000), self._last + 1)
        self._last = value
        return f"{value:X}"


def formatDelay(seconds: float) -> str:
    """
    A delay as Postfix logs it: hundredths below one second (C{0.12}),
    tenths below ten (C{1.5}), whole seconds above (C{42}).
    """
    seconds = max(seconds, 0.0)
    if seconds >= 10:
        return f"{seconds:.0f}"
    if seconds >= 1:
        return f"{seconds:.1f}"
    return f"{seconds:.2f}"


_UNSAFE_HEADER_TEXT = re.compile(r"[\x00-\x1f\x7f()\\]")


def headerValue(text: str, limit: int = 255) -> str:
    """
    Client-supplied text (HELO name, login) made safe for a header
    comment: no control characters, parentheses or backslashes, bounded.
    """
    return _UNSAFE_HEADER_TEXT.sub("?", text[:limit]) or "unknown"


def receivedHeader(session, queueId: str, recipient: str | None, when: float) -> bytes:
    """
    The C{Received:} field Postfix's smtpd writes (RFC 5321 4.4), with the
    RFC 3848 protocol name (ESMTP, ESMTPS, ESMTPA, ESMTPSA; UTF8SMTP* under
    RFC 6531 3.7.3) and the TLS parameters::

        Received: from client.example (client.example [192.0.2.1])
        \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
        \t(Authenticated sender: edouard)
        \tby smtp.domaineel.rt (maillab) with ESMTPSA id 656A1B2C3D4E5F001
        \tfor <edouard@domaineel.rt>; Sun, 29 Nov 2026 01:30:00 +0000

    @param recipient: the recipient when the message has exactly one.
    """
    helo = headerValue(session.helo or "unknown")
    name = headerValue(session.reverseName or "unknown")
    host = session.host
    literal = f"IPv6:{host}" if ":" in host else host
    lines = [f"Received: from {helo} ({name} [{literal}])"]
    tls = session.tlsInfo()
    if tls is not None:
        version, cipher, bits = tls
        lines.append(f"\t(using {version} with cipher {cipher} ({bits}/{bits} bits))")
    if session.account is not None:
        lines.append(f"\t(Authenticated sender: {headerValue(session.authName or '')})")
    lines.append(f"\tby {session.hostname} (maillab) with {session.withProtocol()} id {queueId}")
    date = rfc5322Date(when)
    if recipient:
        lines.append(f"\tfor <{recipient}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


@implementer(ISMTPMessage)
class RoutedMessage:
    """
    The body of one message on its way to its recipients: the store's
    delivery transaction, the outbound queue's spool writer and the alias
    commands and files, written to as it arrives.

    It also reads the header section (at most C{headerLimit} octets) to
    apply C{reject_from_login_mismatch} for authenticated senders, and
    completes the header of submitted mail (L{MissingHeaders}).
    """

    def __init__(
        self, delivery, session, envelope, transaction, copies, checkFrom, spool=None, processes=(), missingHeaders=None
    ):
        self.delivery = delivery
        self.session = session
        self.envelope = envelope
        self.transaction = transaction
        self.copies = copies
        self.spool = spool
        self.processes = list(processes)
        self.checkFrom = checkFrom
        self.missingHeaders = missingHeaders
        self._header = bytearray()
        self._headerDone = False
        self._headerLimit = delivery.headerLimit
        self._finished = False

    def write(self, data: bytes):
        """
        Body bytes (LF line ends, dot-stuffing removed).

        @return: L{None} or a L{Deferred} for back-pressure.
        """
        if not self._headerDone:
            self._collectHeader(data)
        if self.missingHeaders is not None:
            data = self.missingHeaders.feed(data)
            if not data:
                return None
        return self._pass(data)

    def _pass(self, data: bytes):
        for _, _, process in self.processes:
            process.write(data)
        if self.spool is None and self.transaction is not None:
            return self.transaction.write(data)
        waits = []
        if self.spool is not None:
            waits.append(self.spool.write(data))
        if self.transaction is not None:
            waits.append(self.transaction.write(data))
        return defer.gatherResults(waits) if waits else None

    def _abortAll(self):
        if self.transaction is not None:
            self.transaction.abort()
        if self.spool is not None:
            self.spool.abort()
        for _, _, process in self.processes:
            process.abort()

    def _collectHeader(self, data: bytes) -> None:
        start = len(self._header)
        self._header += data[: self._headerLimit + 2 - start]
        # RFC 5322 2.1: the header section ends at the first empty line.
        end = self._header.find(b"\n\n", max(0, start - 1))
        if self._header.startswith(b"\n"):
            end = 0
        if end >= 0:
            del self._header[end + 1 :]
            self._headerDone = True
        elif len(self._header) > self._headerLimit:
            self._headerDone = True

    def fromHeaders(self) -> list[str]:
        """
        The values of the C{From:} fields in the header read so far.
        """
        return self.headerValues(b"from")

    def headerValues(self, wanted: bytes) -> list[str]:
        """
        The unfolded values of the fields named C{wanted} (lower case) in
        the header read so far (the first C{headerLimit} octets).
        """
        values = []
        current = None
        for line in bytes(self._header).split(b"\n"):
            if line[:1] in (b" ", b"\t") and current is not None:
                current.append(line)
                continue
            current = None
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == wanted:
                current = [value]
                values.append(current)
        return [b" ".join(v).decode("utf-8", "replace").strip() for v in values]

    def end(self) -> defer.Deferred:
        """
        The end of data: check, commit, and fire with the queue id.

        @return: L{Deferred} of the queue id, or failing with L{SMTPReply}.
        """
        self._finished = True
        # Postfix local(8): a message that already carries our
        # Delivered-To for a recipient is looping (RFC 5321 6.3).
        seen = {value.strip().lower() for value in self.headerValues(b"delivered-to")}
        for target, original in self.copies:
            if target.deliveredTo.lower() in seen:
                self._abortAll()
                return defer.fail(
                    SMTPReply(554, "5.4.6", f"<{target.deliveredTo}>: mail forwarding loop")
                )
        account = self.session.account
        if self.checkFrom and account is not None:
            if not self.delivery.policy.fromHeaderOwned(account, self.fromHeaders()):
                self._abortAll()
                return defer.fail(
                    SMTPReply(
                        553,
                        "5.7.1",
                        f"From: header rejected: not owned by user {self.session.authName}",
                    )
                )
        if self.missingHeaders is not None:
            rest = self.missingHeaders.finish()
            if rest:
                # Ordered before the commit by each writer; a write error
                # is reported by the commit.
                written = self._pass(rest)
                if isinstance(written, defer.Deferred):
                    written.addErrback(lambda f: None)
        if self.transaction is None:
            d = defer.succeed([])
        else:
            d = self.transaction.commit()
        d.addCallback(self._committed)
        if self.processes:
            d.addCallbacks(
                lambda queueId: defer.ensureDeferred(self._finishProcesses(queueId)),
                self._killProcesses,
            )
        if self.spool is not None:
            # Local copies first: if they fail the client retries the whole
            # message, so the queued copy must not exist.
            d.addErrback(lambda f: self.spool.abort().addBoth(lambda _: f))
            d.addCallback(lambda queueId: self.spool.commit().addCallback(lambda _: queueId))
            d.addErrback(self._spoolFailed)
        return d

    def _killProcesses(self, failure):
        for _, _, process in self.processes:
            process.abort()
        return failure

    async def _finishProcesses(self, queueId):
        """
        Close each command's or file writer's input and wait for it; one
        failure fails the message (temporary if any is temporary).
        """
        results = []
        for target, original, process in self.processes:
            ok, temporary, detail = await process.finish()
            results.append((ok, temporary, detail))
            if ok:
                self._logDelivery(target, original, "sent", "2.0.0", f"delivered to {target.kind}: {target.value}")
            elif temporary:
                self._logDelivery(target, original, "deferred", "4.3.0", detail)
            else:
                self._logDelivery(target, original, "rejected", "5.3.0", detail)
        failures = [r for r in results if not r[0]]
        if failures:
            temporary = [r for r in failures if r[1]]
            ok, isTemporary, detail = (temporary or failures)[0]
            if isTemporary:
                raise SMTPReply(451, "4.3.0", f"Error: {detail}")
            raise SMTPReply(550, "5.3.0", f"Error: {detail}")
        return queueId

    def _logDelivery(self, target, original: str, status: str, dsn: str, what: str) -> None:
        """
        The line Postfix's local(8) writes for one recipient::

            QUEUEID: to=<edouard@domaineel.rt>, orig_to=<root@domaineel.rt>,
            relay=local, delay=0.12, dsn=2.0.0, status=sent (delivered to maildir)

        C{delay} counts from MAIL FROM (Postfix: from the queue file's
        creation, which its smtpd does at MAIL).
        """
        arrival = self.envelope.arrival or self.delivery.clock.seconds()
        (log.info if status == "sent" else log.warn)(
            "{queueId}: to=<{to}>, orig_to=<{orig}>, relay=local, delay={delay}, dsn={dsn}, status={status} ({what})",
            queueId=self.envelope.queueId,
            to=target.deliveredTo,
            orig=original,
            delay=formatDelay(self.delivery.clock.seconds() - arrival),
            dsn=dsn,
            status=status,
            what=what,
        )

    def _spoolFailed(self, failure):
        if failure.check(SMTPReply):
            return failure
        log.failure("{queueId}: queue file write failed", failure, queueId=self.envelope.queueId)
        raise SMTPReply(451, "4.3.0", "Error: queue file write error")

    def _committed(self, results):
        queueId = self.envelope.queueId
        failures = [r for r in results if not r.ok]
        for result, (target, original) in zip(results, self.copies):
            if result.ok:
                self._logDelivery(target, original, "sent", "2.0.0", "delivered to maildir")
            else:
                from twisted_maillab.store.errors import MailboxNotFound

                error = result.error
                if isinstance(error, MailboxNotFound):
                    self._logDelivery(target, original, "deferred", "4.2.0", str(error))
                else:
                    status = "deferred" if error.temporary else "rejected"
                    self._logDelivery(target, original, status, error.enhancedCode, str(error))
        if not failures:
            self._successNotices(results)
        if failures:
            # One reply covers every recipient (RFC 5321 3.3): a temporary
            # failure anywhere makes the client retry the whole message (a
            # duplicate beats a loss); otherwise the first permanent error.
            temporary = [r for r in failures if r.error.temporary]
            error = (temporary or failures)[0].error
            from twisted_maillab.store.errors import MailboxNotFound

            if isinstance(error, MailboxNotFound):
                # The directory knows the user, so a missing Maildir or
                # home is the administrator's to fix: retry, never bounce
                # (Postfix's local(8) defers a missing home too).
                raise SMTPReply(451, "4.2.0", "mailbox unavailable, try again later")
            raise SMTPReply(error.smtpCode, error.enhancedCode, str(error))
        return queueId

    def _successNotices(self, results) -> None:
        """
        RFC 3461 5.2.2: a recipient delivered here with NOTIFY=SUCCESS gets
        a "delivered" notice, sent after the reply (it never delays the
        250).  The notice returns the message's header.
        """
        sender = self.envelope.sender.address
        if not sender:
            return
        wanted = {
            r.mailbox.address: r for r in self.envelope.recipients if "SUCCESS" in r.params.notify
        }
        entries = []
        for result, (target, original) in zip(results, self.copies):
            recipient = wanted.pop(original, None)
            if recipient is not None and result.ok:
                entries.append((_Notice(original, recipient.params), "delivered"))
        if entries:
            d = defer.ensureDeferred(self.delivery.sendNotice(self.envelope, entries, bytes(self._header)))
            d.addErrback(lambda f: log.failure("{queueId}: success notice failed", f, queueId=self.envelope.queueId))

    def abort(self):
        if not self._finished:
            self._finished = True
            self._abortAll()
        return None


class _Notice:
    # What deliveryReport reads from a recipient.
    def __init__(self, address, params):
        self.address = address
        self.orcpt = params.orcpt
        self.orcptType = params.orcptType
        self.reply = "250 2.0.0 delivered to mailbox"
        self.remote = ""


@implementer(ISMTPDelivery)
class DeliveryRouter:
    """
    Starts a L{RoutedMessage} for an accepted envelope: every recipient of
    it goes where the policy resolved it, a Maildir of the store, the
    outbound queue (another domain), an alias command or an mbox file.

    @ivar store: the store (C{beginDelivery()}).
    @ivar policy: the L{Policy} (for the From: check).
    @ivar clock: for the Received: date.
    """

    def __init__(
        self,
        store,
        policy,
        clock,
        headerLimit: int = 102400,
        checkFrom: bool = True,
        outbound=None,
        reactor=None,
        defaultPrivs: str = "nobody",
        commandTimeLimit: float = 1000.0,
        addMissingHeaders: bool = True,
    ):
        self.store = store
        self.policy = policy
        self.clock = clock
        self.headerLimit = headerLimit
        self.checkFrom = checkFrom
        self.outbound = outbound
        self.reactor = reactor
        self.defaultPrivs = defaultPrivs
        self.commandTimeLimit = commandTimeLimit
        self.addMissingHeaders = addMissingHeaders
        # twisted_maillab.mailauth.inbound.InboundAuth: the MX's checks.
        self.inbound = None

    def begin(self, session, envelope) -> RoutedMessage:
        """
        Open the transaction, add each local account once (the first
        recipient naming it decides its Delivered-To), write Received.

        @raise SMTPReply: from a store error.
        """
        from twisted_maillab.store.errors import StoreError

        copies = []
        remote = []
        processes = []
        seen = set()
        for recipient in envelope.recipients:
            for target in recipient.targets:
                if getattr(target, "process", False):
                    key = (target.kind, target.value)
                    if key not in seen:
                        seen.add(key)
                        processes.append((target, recipient.mailbox.address))
                    continue
                if getattr(target, "remote", False):
                    key = ("remote", target.deliveredTo.lower())
                    if key not in seen:
                        seen.add(key)
                        remote.append((recipient, target.deliveredTo))
                    continue
                key = getattr(target.account, "maildir", None) or target.account.name
                if key in seen:
                    continue
                seen.add(key)
                copies.append((target, recipient.mailbox.address))
        single = envelope.recipients[0].mailbox.address if len(envelope.recipients) == 1 else None
        now = self.clock.seconds()
        received = receivedHeader(session, envelope.queueId, single, now)
        missingHeaders = None
        if self.addMissingHeaders and self.isSubmission(session):
            missingHeaders = MissingHeaders(
                self.headerLimit, envelope.queueId, self.policy.hostname, envelope.sender.address, now
            )
        spool = None
        if remote:
            if self.outbound is None:
                raise SMTPReply(451, "4.3.0", "Error: no outbound queue")
            spool = self.outbound.writer(envelope, remote)
            spool.sign = self.isSubmission(session)
            spool.write(received)
        started = []
        try:
            from twisted_maillab.smtp.pipes import spawnTarget

            for target, original in processes:
                process = spawnTarget(
                    self.reactor,
                    self.clock,
                    target.kind,
                    target.value,
                    sender=envelope.sender.address,
                    recipient=target.deliveredTo,
                    original=original,
                    user=self.defaultPrivs,
                    timeLimit=self.commandTimeLimit,
                )
                process.write(self._prepend(envelope, target, original) + received)
                started.append((target, original, process))
        except (OSError, KeyError) as e:
            for _, _, process in started:
                process.abort()
            if spool is not None:
                spool.abort()
            log.failure("{queueId}: cannot start an alias command or file writer", queueId=envelope.queueId)
            raise SMTPReply(451, "4.3.0", f"Error: alias delivery unavailable ({e})") from None
        transaction = None
        checked = self.inbound is not None and self.inbound.applies(session)
        try:
            if copies or checked:
                # Held for the checks, which decide the folder and add
                # Authentication-Results, or straight to the store.
                transaction = self.inbound.begin(session, envelope) if checked else self.store.beginDelivery()
                for target, original in copies:
                    transaction.addRecipient(
                        target.account, prependHeaders=self._prepend(envelope, target, original)
                    )
                transaction.write(received)
        except StoreError as e:
            if spool is not None:
                spool.abort()
            for _, _, process in started:
                process.abort()
            raise SMTPReply(e.smtpCode, e.enhancedCode, str(e)) from None
        return RoutedMessage(
            self, session, envelope, transaction, copies, self.checkFrom, spool, started, missingHeaders
        )

    def isSubmission(self, session) -> bool:
        """
        Whether the client submits mail of its own (Postfix adds missing
        headers for C{local_header_rewrite_clients}: logged-in clients
        and C{mynetworks}; here also the submission listeners), as opposed
        to mail arriving at the MX from outside, which is never changed.
        """
        return (
            session.account is not None
            or session.listener in ("submission", "submissions")
            or self.policy.inMynetworks(session.host)
        )

    async def sendNotice(self, envelope, entries, header: bytes) -> None:
        """
        Build an RFC 3464 notice for C{entries} and deliver it to the
        envelope's sender (locally, or through the outbound queue).
        """
        from twisted_maillab.smtp.dsn import deliveryReport

        sender = envelope.sender.address
        report = deliveryReport(
            self.policy.hostname,
            self.clock.seconds(),
            envelope.queueId,
            sender,
            envelope.params.envid,
            self.clock.seconds(),
            entries,
            header,
            False,
        )
        if self.outbound is not None:
            await self.outbound.sendReport(envelope.queueId, sender, report)
        elif self.policy.isLocal(envelope.sender):
            await self.deliverLocal(sender, report)
        else:
            log.warn(
                "{queueId}: no outbound queue for the notice to <{sender}>",
                queueId=envelope.queueId,
                sender=sender,
            )

    def deliverLocal(self, address: str, data: bytes, sender: str = "") -> defer.Deferred:
        """
        Deliver a message the server made itself (a bounce) to a local
        address: aliases and the delimiter apply, LF line ends.

        @return: L{Deferred} firing when every copy is committed.
        """
        from twisted_maillab.smtp.envelope import Mailbox

        local, _, domain = address.rpartition("@")

        async def deliver():
            targets = await self.policy.resolveLocal(Mailbox(local, domain.lower()))
            transaction = self.store.beginDelivery()
            count = 0
            for target in targets:
                if target.account is None:
                    # Reports go to mailboxes only, never to commands,
                    # files or other domains through an alias.
                    continue
                count += 1
                transaction.addRecipient(
                    target.account,
                    prependHeaders=(
                        f"Return-Path: <{sender}>\nX-Original-To: {address}\n"
                        f"Delivered-To: {target.deliveredTo}\n"
                    ).encode("utf-8"),
                )
            if not count:
                transaction.abort()
                return
            transaction.write(data)
            results = await transaction.commit()
            for result in results:
                if not result.ok:
                    raise result.error

        return defer.ensureDeferred(deliver())

    def _prepend(self, envelope, target, original) -> bytes:
        # What Postfix's local(8) writes above the message (the seed).
        return (
            f"Return-Path: <{envelope.sender.address}>\n"
            f"X-Original-To: {original}\n"
            f"Delivered-To: {target.deliveredTo}\n"
        ).encode("utf-8")
