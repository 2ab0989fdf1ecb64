"""
What C{maillab queue} does to the outbound queue, as methods of
L{twisted_maillab.smtp.outbound.OutboundQueue} (this class is its base):
list, hold, release, flush, requeue and delete, with Postfix's meanings
(C{postqueue -p/-f}, C{postsuper -h/-H/-r/-d}).

Each operation owns the message while it works: it waits for a running
attempt to end and marks the message running itself, so an attempt never
rewrites the C{<id>.json} with a state it read before the change, and no
attempt starts meanwhile.  A held message stays held over restarts (the
C{held} field of its JSON); the scheduler skips it.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from twisted_maillab.console.channel import QUEUE_ID
from twisted_maillab.smtp.spool import readState, removeMessage, writeState

__all__ = ["QueueAdministration", "readAllStates"]

log = Logger(namespace="twisted_maillab.smtp")


class QueueAdministration:
    """
    Mixed into L{OutboundQueue}: uses its C{directory}, C{runner},
    C{clock}, C{_timers}, C{_running}, C{schedule} and C{flushDomain}.
    """

    async def _administer(self, queueId: str, work):
        if not QUEUE_ID.fullmatch(queueId):
            raise KeyError(queueId)
        while queueId in self._running:
            waiter = defer.Deferred()
            self._adminWaiters.setdefault(queueId, []).append(waiter)
            await waiter
        self._running.add(queueId)
        try:
            return await work()
        except KeyError:
            raise
        except Exception:
            # The spool could not be changed (a full disk): a retry that
            # came due meanwhile was skipped, so keep the message scheduled.
            if queueId not in self._timers:
                self.schedule(queueId, self.minBackoff)
            raise
        finally:
            self._running.discard(queueId)
            self._wakeAdmin(queueId)

    def _wakeAdmin(self, queueId: str) -> None:
        for waiter in self._adminWaiters.pop(queueId, []):
            waiter.callback(None)

    @property
    def _adminWaiters(self) -> dict:
        # Created on first use, so that __init__ stays as it is.
        return self.__dict__.setdefault("_adminWaitersByID", {})

    async def _change(self, queueId: str, edit):
        """
        Read a message's state, C{edit(message)}, write it back.

        @raise KeyError: no such message.
        """

        async def work():
            try:
                message = await self.runner(readState, self.directory, queueId)
            except FileNotFoundError:
                raise KeyError(queueId) from None
            edit(message)
            await self.runner(writeState, self.directory, message)
            return message

        return await self._administer(queueId, work)

    def _cancel(self, queueId: str) -> None:
        timer = self._timers.pop(queueId, None)
        if timer is not None and timer.active():
            timer.cancel()

    async def hold(self, queueId: str) -> None:
        """
        Keep a message in the spool without trying it (C{postsuper -h}),
        over restarts, until L{release}.
        """
        await self._change(queueId, lambda m: setattr(m, "held", True))
        self._cancel(queueId)
        log.info("{queueId}: held by the administrator", queueId=queueId)

    async def release(self, queueId: str) -> None:
        """
        Release a held message and try it now (C{postsuper -H}).
        """
        await self._change(queueId, lambda m: setattr(m, "held", False))
        self.schedule(queueId, 0)
        log.info("{queueId}: released by the administrator", queueId=queueId)

    async def requeue(self, queueId: str) -> None:
        """
        Start a message's retries over (C{postsuper -r}): attempts and the
        backoff are reset, a held message is released, and it is tried now.
        Its queue lifetime still counts from its arrival.
        """

        def edit(message):
            message.held = False
            message.attempts = 0

        await self._change(queueId, edit)
        self.schedule(queueId, 0)
        log.info("{queueId}: requeued by the administrator", queueId=queueId)

    async def delete(self, queueId: str) -> None:
        """
        Remove a message without a bounce (C{postsuper -d}).

        @raise KeyError: no such message.
        """

        async def work():
            exists = await self.runner(os.path.exists, self.directory / f"{queueId}.json")
            if not exists:
                raise KeyError(queueId)
            self._cancel(queueId)
            await self.runner(removeMessage, self.directory, queueId)

        await self._administer(queueId, work)
        log.info("{queueId}: deleted by the administrator", queueId=queueId)

    async def deleteDeferred(self) -> list[str]:
        """
        Delete every message that has been tried and still waits (Postfix's
        C{postsuper -d ALL deferred}).

        @return: the ids deleted.
        """
        deleted = []
        for entry in await self.listQueue():
            if entry["attempts"] and not entry["held"]:
                try:
                    await self.delete(entry["id"])
                except KeyError:
                    continue
                deleted.append(entry["id"])
        return deleted

    async def flush(self, target: str | None = None) -> int:
        """
        Try now one message (an id), every message waiting for a domain
        (as ETRN), or every message that is not held (C{postqueue -f}).

        @return: how many messages were scheduled.
        @raise KeyError: C{target} looks like a queue id that is not queued.
        """
        if target is None:
            ids = [e["id"] for e in await self.listQueue() if not e["held"]]
        elif QUEUE_ID.fullmatch(target) and "." not in target:
            state = await self.runner(_readStateOrNone, self.directory, target)
            if state is None:
                raise KeyError(target)
            ids = [] if state.held else [target]
        else:
            return await self.flushDomain(target)
        for queueId in ids:
            self.schedule(queueId, 0)
        return len(ids)

    async def listQueue(self) -> list[dict]:
        """
        Every queued message, oldest first: id, arrival, size, sender,
        attempts, held, whether an attempt is running, the next attempt's
        time (or L{None}) and each recipient's state and last reply.
        """
        messages = await self.runner(readAllStates, self.directory)
        now = self.clock.seconds()
        entries = []
        for message in messages:
            timer = self._timers.get(message.queueId)
            entries.append(
                {
                    "id": message.queueId,
                    "arrival": message.created,
                    "age": max(0.0, now - message.created),
                    "size": message.size,
                    "sender": message.sender,
                    "attempts": message.attempts,
                    "held": message.held,
                    "active": message.queueId in self._running,
                    "next_attempt": timer.getTime() if timer is not None and timer.active() else None,
                    "recipients": [
                        {"address": r.address, "status": r.status, "reply": r.reply, "remote": r.remote}
                        for r in message.recipients
                    ],
                }
            )
        return entries


def _readStateOrNone(directory: Path, queueId: str):
    try:
        return readState(directory, queueId)
    except FileNotFoundError:
        return None


def readAllStates(directory: Path) -> list:
    messages = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".json") and QUEUE_ID.fullmatch(entry[: -len(".json")]):
            try:
                messages.append(readState(directory, entry[: -len(".json")]))
            except (OSError, ValueError, TypeError):
                # Gone meanwhile, or being rewritten: not listed this time.
                continue
    messages.sort(key=lambda m: (m.created, m.queueId))
    return messages


