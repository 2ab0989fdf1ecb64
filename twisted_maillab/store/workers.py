"""
The store's bounded thread pool.

Two measurements shaped it (bench/smtp_bench.py, 10 sessions, fast disk):

  - Twisted's C{ThreadPool} hands every job through a coordinator
    (C{twisted._threads._team}) and wraps it in the caller's log context:
    Python that runs under the GIL, on the reactor thread when the job is
    queued and when its result comes back, and on the worker between the
    job's system calls.

  - Every system call a worker makes releases the GIL and takes it back;
    each time it takes it back while the reactor thread runs Python, one
    of them waits.  With four workers sharing the deliveries, the reactor
    thread's C{send()} took 83 microseconds (41 with one worker, under 20
    in a bare Twisted server) and the machine spent 2.5 ms of CPU per
    message against 1.7 with one worker: fewer busy threads, fewer
    hand-offs.

So jobs go to as few threads as keep up: one "hot" thread takes them in
turn while its current job is young; a further thread is woken (or
started, up to C{size}) only when every busy thread has been on its job
for longer than C{patience} seconds, which is what a slow disk's fsync
looks like.  A job therefore waits behind at most C{patience} of another
job's work before it gets a thread of its own, and on a disk whose fsync
takes 10 ms the pool still runs C{size} fsyncs at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.python.threadable import isInIOThread

__all__ = ["WorkerPool", "inWorker"]

# Set in each pool thread: reactor-only code asserts it is not running there
# (Twisted's reactor, and so every timer and Deferred callback chain, is not
# thread-safe; see twisted.internet.interfaces.IReactorThreads).
_threadState = threading.local()


def inWorker() -> bool:
    """
    Whether the calling thread is a L{WorkerPool} thread.
    """
    return getattr(_threadState, "worker", False)


class _Worker:
    __slots__ = ("thread", "wake", "since")

    def __init__(self):
        self.thread = None
        self.wake = threading.Event()
        self.since = 0.0  # when its current job started, if busy


class WorkerPool:
    """
    At most C{size} threads, started when needed (never at construction:
    twistd builds the service tree before it forks into the background).

    @param reactor: where results are delivered (C{callFromThread}) and
        the timer that re-examines a waiting job runs (C{callLater}).
    @param size: the most threads.
    @param name: the threads' name prefix.
    @param patience: how long a busy thread's job may have run before a
        waiting job gets another thread instead of waiting for it.
    @param clock: C{time.monotonic} unless a test gives another.
    """

    def __init__(self, reactor, size: int, name: str, patience: float = 0.002, clock=time.monotonic):
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.reactor = reactor
        self.size = size
        self.name = name
        self.patience = patience
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []  # a stack: the last to finish goes first
        self._busy: set[_Worker] = set()
        self._backlog: deque = deque()
        self._checkPending = False
        self._checkCall = None
        self.stopped = False

    @property
    def queued(self) -> int:
        """
        How many jobs wait for a thread.
        """
        return len(self._backlog)

    @property
    def threads(self) -> int:
        """
        How many threads have been started.
        """
        return len(self._workers)

    def run(self, f, *args, **kwargs) -> defer.Deferred:
        """
        Call C{f(*args, **kwargs)} in a pool thread.

        @return: a Deferred firing (in the reactor thread) with its result
            or failure.
        """
        if self.stopped:
            return defer.fail(RuntimeError(f"the {self.name} pool is stopped"))
        d = defer.Deferred()
        with self._lock:
            self._backlog.append((d, f, args, kwargs))
            action = self._dispatch()
        self._act(action)
        return d

    def _dispatch(self) -> list:
        """
        With the lock held: what to do about the backlog.  At most one
        more thread per pass; the next pass comes from the timer, after
        C{patience}, if jobs are still waiting by then.
        """
        actions = []
        if not self._backlog:
            return actions
        now = self._clock()
        waiting = len(self._backlog)
        if not any(now - w.since < self.patience for w in self._busy):
            # Nobody is working, or every busy thread has been on its job
            # for a while (a slow fsync): one more thread.
            if self._idle:
                worker = self._idle.pop()
                actions.append(worker)
            elif len(self._workers) < self.size:
                worker = _Worker()
                worker.thread = threading.Thread(
                    target=self._work, args=(worker,), name=f"{self.name}-{len(self._workers)}", daemon=True
                )
                self._workers.append(worker)
                actions.append(("start", worker))
            else:
                return actions  # every thread is busy: the backlog waits
            # Busy (and young) from now: jobs that arrive before it runs
            # wait for it rather than wake yet another thread.
            worker.since = now
            self._busy.add(worker)
            waiting -= 1
        if waiting and not self._checkPending:
            # look again once the young job is no longer young
            self._checkPending = True
            actions.append("check")
        return actions

    def _act(self, actions: list) -> None:
        for action in actions:
            if action == "check":
                if isInIOThread():
                    self._scheduleCheck()
                else:
                    # run() from another thread: timers belong to the reactor
                    self.reactor.callFromThread(self._scheduleCheck)
            elif isinstance(action, tuple):
                action[1].thread.start()
            else:
                action.wake.set()

    def _scheduleCheck(self) -> None:
        if not self.stopped:
            self._checkCall = self.reactor.callLater(self.patience, self._check)

    def _check(self) -> None:
        self._checkCall = None
        with self._lock:
            self._checkPending = False
            actions = [] if self.stopped else self._dispatch()
        self._act(actions)

    def _next(self, worker: _Worker):
        """
        The worker's next job, waiting for one; L{None} once stopped.
        """
        while True:
            with self._lock:
                if self._backlog:
                    worker.since = self._clock()
                    self._busy.add(worker)
                    return self._backlog.popleft()
                self._busy.discard(worker)
                if self.stopped:
                    return None
                worker.wake.clear()
                self._idle.append(worker)
            # run() and stop() take it off the idle stack before waking it
            worker.wake.wait()

    def _work(self, worker: _Worker) -> None:
        _threadState.worker = True
        callFromThread = self.reactor.callFromThread
        while True:
            job = self._next(worker)
            if job is None:
                return
            d, f, args, kwargs = job
            try:
                result = f(*args, **kwargs)
            except BaseException:
                callFromThread(d.errback, Failure())
            else:
                callFromThread(d.callback, result)
            # drop references before waiting for the next job
            job = d = f = args = kwargs = result = None

    def stop(self) -> None:
        """
        Let queued jobs finish, then end every thread (blocks until they
        have: called at shutdown, when nothing else is waiting).
        """
        if self.stopped:
            return
        if self._checkCall is not None and self._checkCall.active():
            self._checkCall.cancel()
        with self._lock:
            self.stopped = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.wake.set()
        for worker in list(self._workers):
            worker.thread.join()
