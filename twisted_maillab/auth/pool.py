"""
The bounded thread pool slow checks (hashing, PAM, file reads) run in.
"""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

__all__ = ["CheckPool", "AuthenticationUnavailable", "runSynchronously"]


class AuthenticationUnavailable(Exception):
    """
    Too many checks are queued: the login is answered with a temporary
    failure (SMTP 454, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) instead
    of queueing without bound.
    """


class CheckPool:
    """
    A L{ThreadPool} of at most C{size} threads, started on first use and
    stopped when the reactor shuts down, with at most C{maxQueued} calls
    waiting or running.
    """

    def __init__(self, reactor, size: int = 4, maxQueued: int = 256, name: str = "maillab-auth"):
        self.reactor = reactor
        self.size = size
        self.maxQueued = maxQueued
        self.name = name
        self.pending = 0
        self._pool: ThreadPool | None = None

    def _start(self) -> ThreadPool:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.size, name=self.name)
            self._pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return self._pool

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def __call__(self, f, *args, **kwargs) -> defer.Deferred:
        """
        Run C{f(*args, **kwargs)} in the pool.

        @return: L{Deferred} of its result; fails with
            L{AuthenticationUnavailable} when the queue is full.
        """
        if self.pending >= self.maxQueued:
            return defer.fail(AuthenticationUnavailable("authentication queue is full"))
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self._start(), f, *args, **kwargs)

        def done(result):
            self.pending -= 1
            return result

        return d.addBoth(done)


def runSynchronously(f, *args, **kwargs) -> defer.Deferred:
    """
    A runner that calls C{f} at once on the calling thread: for tests with
    L{task.Clock} and for tools that have no reactor running.
    """
    return defer.execute(f, *args, **kwargs)
