"""
The store's bounded thread pool.

Twisted's C{ThreadPool} hands every job through a coordinator
(C{twisted._threads._team}), wraps it in the caller's log context and
builds several closures per call.  That Python runs under the GIL: on the
reactor thread when the job is queued and when its result comes back, and
on the worker between the job's system calls.  Every time the reactor
thread releases the GIL for a C{send} or C{recv}, a worker may take it and
run that bookkeeping while the reactor waits.  Profiling the SMTP bench
showed the reactor thread's C{send} taking 80 microseconds where the same
send in a bare Twisted server takes under 20: most of it was waiting for
the GIL.  This pool does the minimum: a queue, N threads, one
C{callFromThread} per result.
"""

from __future__ import annotations

import queue
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["WorkerPool"]

_STOP = object()


class WorkerPool:
    """
    C{size} threads, started on first use (twistd builds the service tree
    before it forks into the background).

    @param reactor: where results are delivered (C{callFromThread}).
    @param size: the most threads.
    @param name: the threads' name prefix.
    """

    def __init__(self, reactor, size: int, name: str):
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.reactor = reactor
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.stopped = False

    def run(self, f, *args, **kwargs) -> defer.Deferred:
        """
        Call C{f(*args, **kwargs)} in a pool thread.

        @return: a Deferred firing (in the reactor thread) with its result
            or failure.
        """
        if self.stopped:
            return defer.fail(RuntimeError(f"the {self.name} pool is stopped"))
        if not self._threads:
            # All at once, on first use: a thread blocked on the queue
            # costs nothing, and no bookkeeping per job decides when to
            # add one.
            for index in range(self.size):
                thread = threading.Thread(target=self._work, name=f"{self.name}-{index}", daemon=True)
                self._threads.append(thread)
                thread.start()
        d = defer.Deferred()
        self._jobs.put((d, f, args, kwargs))
        return d

    def _work(self) -> None:
        callFromThread = self.reactor.callFromThread
        jobs = self._jobs
        while True:
            item = jobs.get()
            if item is _STOP:
                return
            d, f, args, kwargs = item
            try:
                result = f(*args, **kwargs)
            except BaseException:
                callFromThread(d.errback, Failure())
            else:
                callFromThread(d.callback, result)
            # drop references before blocking on the queue again
            item = d = f = args = kwargs = result = None

    def stop(self) -> None:
        """
        Let queued jobs finish, then end every thread (blocks until they
        have: called at shutdown, when nothing else is waiting).
        """
        if self.stopped:
            return
        self.stopped = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
