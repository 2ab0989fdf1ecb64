"""
What C{/healthz} checks, and the outbound queue's size and age that
C{/metrics} also reports.

  - every listener of the service tree is bound (a C{ListenerService}
    holds its port, C{[dns]}'s listeners their TCP and UDP ports);
  - the store's disk is writable: a file is written, fsynced and removed
    in the state directory, in a thread (the reactor thread never waits
    on a disk);
  - the outbound queue is not stuck: its oldest message is younger than
    C{[http] healthz_queue_age}.

Each check returns a list of problems, one short line each; no problem is
healthy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet import defer

__all__ = ["listenerProblems", "storeProblems", "queueDirectory", "queueStats", "checkHealth"]


def listenerProblems(top) -> list[str]:
    """
    The listeners of service tree C{top} that are not bound now.
    """
    from twisted_maillab.service import ListenerService

    problems = []

    def walk(parent, section):
        for child in parent:
            name = section or child.name
            if isinstance(child, ListenerService):
                if child.port is None:
                    problems.append(f"{name}: not listening")
            elif _isDNSListener(child):
                if child.tcpPort is None or child.udpPort is None:
                    problems.append(f"{name}: not listening")
            elif isinstance(child, MultiService):
                walk(child, name)

    walk(top, None)
    return problems


def _isDNSListener(child) -> bool:
    # Imported only when the tree has a [dns] section (its module is
    # loaded then anyway).
    import sys

    module = sys.modules.get("twisted_maillab.dns.service")
    return module is not None and isinstance(child, module._UDPAndTCP)


def storeProblems(directory: Path) -> list[str]:
    """
    Thread: write, fsync and remove a file in C{directory}.
    """
    path = Path(directory) / f".healthz-{os.getpid()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"healthz\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as e:
        return [f"store: cannot write in {directory}: {e.strerror}"]
    return []


def queueDirectory(config) -> Path | None:
    """
    The outbound spool, or L{None} when no queue runs.
    """
    smtp = config.smtp
    running = any(config.sections[name].enabled for name in ("smtp", "submission", "submissions"))
    if not (running and smtp.outbound_queue):
        return None
    return smtp.queue_directory or (config.server.state_directory / "queue")


def queueStats(directory: Path | None, now: float | None = None) -> tuple[int, float]:
    """
    Thread: the number of messages in the spool and the age in seconds of
    the oldest (each message is C{ID.eml}, written once at arrival, beside
    its C{ID.json} state; see L{twisted_maillab.smtp.spool}).

    @raise OSError: the spool cannot be read (a missing one is empty).
    """
    if directory is None:
        return 0, 0.0
    now = time.time() if now is None else now
    count, oldest = 0, now
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        return 0, 0.0
    with entries:
        for entry in entries:
            if entry.name.endswith(".eml"):
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # delivered meanwhile
                count += 1
                oldest = min(oldest, mtime)
    return count, max(0.0, now - oldest)


async def checkHealth(config, top, runner) -> list[str]:
    """
    Every problem of the running suite.

    @param top: the service tree.
    @param runner: C{runner(f, *args) -> Deferred} running C{f} in a thread.
    """
    problems = listenerProblems(top)
    problems += await runner(storeProblems, config.server.state_directory)
    limit = config.http.healthz_queue_age
    directory = queueDirectory(config)
    if limit and directory is not None:
        try:
            count, age = await runner(queueStats, directory)
        except OSError as e:
            problems.append(f"queue: cannot read {directory}: {e.strerror}")
            return problems
        if count and age > limit:
            problems.append(f"queue: oldest of {count} message(s) is {age:.0f}s old (limit {limit:.0f}s)")
    return problems


def deferredHealth(config, top, runner) -> defer.Deferred:
    return defer.ensureDeferred(checkHealth(config, top, runner))
