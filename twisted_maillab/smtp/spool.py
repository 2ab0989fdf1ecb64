"""
The outbound spool: one message is C{<id>.eml} (the message as stored
locally: LF line ends, our Received: first) and C{<id>.json} (the envelope
and each recipient's state, L{QueuedMessage}).  Both are fsynced, the JSON
is written by rename and the directory fsynced before the client gets its
250.

Only L{writeState} writes a state file and only L{readState} reads one; the
queue (L{twisted_maillab.smtp.outbound.OutboundQueue}) decides when.
Unknown keys in a state file are kept (L{QueuedMessage.extra}) and written
back, so a newer field survives an older reader.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from twisted_maillab.atomicwrite import replaceFile, syncDirectory, writeAll

if TYPE_CHECKING:
    from twisted_maillab.smtp.outbound import OutboundQueue

__all__ = ["QueuedRecipient", "QueuedMessage", "SpoolWriter", "readState", "writeState", "removeMessage"]

log = Logger(namespace="twisted_maillab.smtp")

# The largest state file read: a message has at most smtpd_recipient_limit
# recipients, each a few hundred bytes.
STATE_LIMIT = 4 * 1024 * 1024


def _known(cls, data: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass
class QueuedRecipient:
    address: str
    notify: list = field(default_factory=list)
    orcpt: str | None = None
    orcptType: str | None = None
    # pending, sent or failed.
    status: str = "pending"
    # The last reply (or reason) and who gave it: C{host[address]}, and the
    # command it answered (C{RCPT TO}), empty when no server answered.
    reply: str = ""
    remote: str = ""
    command: str = ""
    # A failed recipient's report was queued (or none was wanted): it is
    # reported once, at the end of the attempt in which it failed.
    reported: bool = False
    # RFC 3461 5.2.2: sent to a server without DSN while NOTIFY=SUCCESS.
    relayedNotice: bool = False
    # Keys of the state file this version does not know, written back as
    # they were.
    extra: dict = field(default_factory=dict)

    @classmethod
    def fromJSON(cls, data: dict) -> "QueuedRecipient":
        known, extra = _known(cls, data)
        known.pop("extra", None)
        return cls(extra=extra, **known)

    def toJSON(self) -> dict:
        data = asdict(self)
        return {**data.pop("extra"), **data}


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
    # When the queue first took the message up (Postfix's delays "a" ends).
    activated: float = 0.0
    # "" for mail, "bounce" for a report we made (null sender), "2bounce"
    # for a report about an undeliverable null-sender message, sent to the
    # postmaster; an undeliverable 2bounce is dropped.
    kind: str = ""
    # maillab queue hold: kept in the spool, skipped by the scheduler.
    held: bool = False
    recipients: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def fromJSON(cls, data: dict) -> "QueuedMessage":
        known, extra = _known(cls, data)
        known.pop("extra", None)
        recipients = [QueuedRecipient.fromJSON(r) for r in known.pop("recipients", [])]
        return cls(recipients=recipients, extra=extra, **known)

    def toJSON(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "recipients")}
        data["recipients"] = [r.toJSON() for r in self.recipients]
        return {**self.extra, **data}


def writeState(directory: Path, message: QueuedMessage) -> None:
    """
    Replace C{<id>.json} atomically and durably (thread side).
    """
    data = json.dumps(message.toJSON(), sort_keys=True).encode()
    replaceFile(directory / f"{message.queueId}.json", data)


def readState(directory: Path, queueId: str) -> QueuedMessage:
    """
    C{<id>.json} (thread side).

    @raise FileNotFoundError: no such message.
    @raise ValueError: a broken state file.
    """
    with open(directory / f"{queueId}.json", "rb") as f:
        return QueuedMessage.fromJSON(json.loads(f.read(STATE_LIMIT)))


def removeMessage(directory: Path, queueId: str) -> None:
    """
    Delete both files of a message, durably (thread side).
    """
    for suffix in (".json", ".eml"):
        try:
            os.unlink(directory / f"{queueId}{suffix}")
        except FileNotFoundError:
            pass
    syncDirectory(directory)


class SpoolWriter:
    """
    Streams one message into the queue; used by the local delivery next
    to the store transaction.  Writes run in order in the thread pool.
    """

    def __init__(self, queue: "OutboundQueue", message: QueuedMessage):
        self.queue = queue
        self.message = message
        self.path = queue.directory / f"{message.queueId}.eml"
        self._fd = None
        self._failed = None
        self._done = False
        # DKIM-sign at commit (mail of our users, our reports).
        self.sign = False
        # last: a pool thread may run _open (and set _fd) before the
        # runner returns
        self._chain = queue.runner(self._open)

    def _open(self):
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def _append(self, data):
        writeAll(self._fd, data)

    def write(self, data: bytes) -> defer.Deferred:
        data = bytes(data)
        self.message.size += len(data)
        # "lines" is what the wire adds to the size (RFC 1870 SIZE): a CR
        # for every LF and an LF for every bare CR.  A CRLF (or one split
        # across writes) counts one byte too many, which an estimate may.
        self.message.lines += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
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
        if self.sign and self.queue.signer is not None:
            self._signWork()
        writeState(self.queue.directory, self.message)

    def _signWork(self):
        # Before the state file exists the queue never reads the .eml, so
        # replacing it here is invisible to it.
        try:
            added = self.queue.signer.signFile(self.path)
        except Exception:
            # Unsigned mail still goes: losing it would be worse.
            log.failure("{queueId}: DKIM signing failed", queueId=self.message.queueId)
            return
        self.message.size += len(added)
        self.message.lines += added.count(b"\n")

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


