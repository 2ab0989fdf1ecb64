"""
What the MX does with mail from outside (C{[smtp]}, not logged in) while
C{[mailauth] inbound_checks} is on: the checks need the whole message
(DKIM's body hash, DMARC's From:), and their result decides the folder
(Junk) and adds a header field above the message, so the local copies
cannot be written to the store while the text arrives.

L{CheckedDelivery} takes the place of the store's delivery transaction
for such a message: the text goes to an anonymous temporary file (in the
pool, in order); at the end of DATA the checks run in the pool
(L{checks.checkMessage}); then the message is refused (C{550 5.7.1}) or
the store transaction is opened with the C{Authentication-Results:} field
(RFC 8601) among each recipient's own header lines, in INBOX or in the
\\Junk folder, and the file is streamed into it in 64 KiB chunks, without
the client's C{Authentication-Results:} fields that claim our name (RFC
8601 5).  Copies for the outbound queue and alias commands get the text
as it arrives, unchanged.
"""

from __future__ import annotations

import os
import tempfile

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.interfaces import IDeliveryTransaction

from twisted_maillab.mailauth.checks import Results, checkMessage, resultsField, stripOurResults
from twisted_maillab.mailauth.lookup import Lookup
from twisted_maillab.mailauth.signing import HEADER_LIMIT
from twisted_maillab.smtp.envelope import SMTPReply

__all__ = ["InboundAuth", "CheckedDelivery"]

log = Logger(namespace="twisted_maillab.mailauth")

CHUNK = 64 * 1024


class InboundAuth:
    """
    The MX's checks: shared by every connection of the process.

    @param lookup: the L{Lookup} (thread side DNS).
    @param settings: the C{[mailauth]} section.
    @param store: the store (C{beginDelivery()}).
    @param runner: C{runner(f, *args) -> Deferred} in a thread pool.
    @param authservId: our name in the field (RFC 8601 2.5).
    @param junkFolder: the store's \\Junk folder (empty: INBOX).
    @param check: C{checkMessage}'s signature, for tests.
    """

    def __init__(self, lookup: Lookup, settings, store, runner, authservId: str, junkFolder: str, temporary=None, check=checkMessage):
        self.lookup = lookup
        self.settings = settings
        self.store = store
        self.runner = runner
        self.authservId = authservId
        self.junkFolder = junkFolder
        self.temporary = temporary
        self.check = check

    def applies(self, session) -> bool:
        """
        Mail from outside: the MX listener, no login.
        """
        return session.listener == "smtp" and session.account is None

    def begin(self, session, envelope) -> "CheckedDelivery":
        return CheckedDelivery(self, session, envelope)


@implementer(IDeliveryTransaction)
class CheckedDelivery:
    """
    One message held for the checks, then delivered (the store's
    C{IDeliveryTransaction} contract as L{RoutedMessage} uses it).
    """

    def __init__(self, auth: InboundAuth, session, envelope):
        self.auth = auth
        self.session = session
        self.envelope = envelope
        self._recipients: list[tuple] = []
        self._file = None
        self._failed = None
        self._transaction = None
        self._done = False
        self._chain = auth.runner(self._open)

    def _open(self):
        directory = os.fspath(self.auth.temporary) if self.auth.temporary is not None else None
        self._file = tempfile.TemporaryFile(dir=directory)

    def addRecipient(self, account, folder: str = "INBOX", prependHeaders: bytes = b"", create: bool = False) -> None:
        self._recipients.append((account, folder, prependHeaders, create))

    def write(self, chunk: bytes) -> defer.Deferred:
        data = bytes(chunk)
        done = defer.Deferred()

        def run(_):
            return self.auth.runner(self._file.write, data)

        def failed(f):
            self._failed = f
            return None

        self._chain.addCallback(run)
        self._chain.addErrback(failed)
        self._chain.addBoth(lambda value: (done.callback(None), value)[1])
        return done

    def commit(self) -> defer.Deferred:
        self._done = True
        out = defer.Deferred()
        self._chain.addCallback(lambda _: defer.ensureDeferred(self._deliver()))
        self._chain.addCallbacks(out.callback, out.errback)
        self._chain.addBoth(lambda _: self.auth.runner(self._close))
        return out

    def _readAll(self) -> bytes:
        self._file.seek(0)
        return self._file.read()

    def _check(self):
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > self.auth.settings.verify_size_limit:
            # dkimpy verifies from memory: past the limit only the header
            # is read (its signatures are reported as "policy").
            self._file.seek(0)
            message = self._file.read(HEADER_LIMIT).partition(b"\n\n")[0] + b"\n\n"
            tooLarge = True
        else:
            message = self._readAll()
            tooLarge = False
        return self.auth.check(
            self.auth.lookup,
            message,
            self.session.host,
            self.session.helo or "",
            self.envelope.sender.address,
            self.auth.authservId,
            self.auth.settings,
            tooLarge=tooLarge,
        )

    def _read(self, first: bool) -> bytes:
        if first:
            self._file.seek(0)
            data = self._file.read(HEADER_LIMIT)
            header, separator, rest = data.partition(b"\n\n")
            return stripOurResults(header, self.auth.authservId) + separator + rest
        return self._file.read(CHUNK)

    async def _deliver(self):
        if self._failed is not None:
            log.failure("{queueId}: holding the message failed", self._failed, queueId=self.envelope.queueId)
            raise SMTPReply(451, "4.3.0", "Error: temporary file write error")
        try:
            results = await self.auth.runner(self._check)
        except Exception:
            # A library's bug must cost the checks, never the message.
            log.failure("{queueId}: authentication checks failed", queueId=self.envelope.queueId)
            results = Results.failed(self.envelope.sender.address, self.session.helo or "")
        dmarc = results.dmarc
        log.info(
            "{queueId}: authentication: spf={spf} dkim={dkim} dmarc={dmarc} action={action}",
            queueId=self.envelope.queueId,
            spf=results.spf,
            dkim=",".join(d.result for d in results.dkim) or "none",
            dmarc=dmarc.result if dmarc is not None else "none",
            action=results.action,
        )
        if results.action == "reject":
            # RFC 7489 10.3 / RFC 7208 8.4: refused at the end of DATA.
            code = "5.7.23" if dmarc is None or dmarc.result != "fail" else "5.7.1"
            raise SMTPReply(550, code, f"Message rejected: {results.reason}")
        if not self._recipients:
            return []
        field = resultsField(self.auth.authservId, results)
        from twisted_maillab.store.errors import StoreError

        junk = results.action == "junk" and self.auth.junkFolder
        transaction = self._transaction = self.auth.store.beginDelivery()
        try:
            for account, folder, prepend, create in self._recipients:
                if junk:
                    folder, create = self.auth.junkFolder, True
                transaction.addRecipient(account, folder=folder, prependHeaders=prepend + field, create=create)
        except StoreError as e:
            transaction.abort()
            raise SMTPReply(e.smtpCode, e.enhancedCode, str(e)) from None
        first = True
        while True:
            chunk = await self.auth.runner(self._read, first)
            first = False
            if not chunk:
                break
            written = transaction.write(chunk)
            if isinstance(written, defer.Deferred):
                await written
        return await transaction.commit()

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def abort(self) -> defer.Deferred:
        if self._done:
            if self._transaction is not None:
                return self._transaction.abort()
            return defer.succeed(None)
        self._done = True
        self._chain.addBoth(lambda _: self.auth.runner(self._close))
        return defer.succeed(None)
