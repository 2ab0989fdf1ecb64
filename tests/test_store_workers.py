"""
The store's WorkerPool, with real threads and the real reactor.
"""

from __future__ import annotations

import threading

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from twisted_maillab.store.workers import WorkerPool


class WorkerPoolTests(unittest.TestCase):
    def setUp(self):
        self.pool = self.makePool(patience=0)

    def makePool(self, patience):
        pool = WorkerPool(reactor, 3, "test-pool", patience=patience)
        self.addCleanup(pool.stop)
        return pool

    @defer.inlineCallbacks
    def test_resultArrivesInTheReactorThread(self):
        seen = []

        def job(a, b=0):
            seen.append(threading.current_thread())
            return a + b

        d = self.pool.run(job, 2, b=3)
        callbackThreads = []
        d.addCallback(lambda r: callbackThreads.append(threading.current_thread()) or r)
        self.assertEqual((yield d), 5)
        self.assertIsNot(seen[0], threading.current_thread())
        self.assertTrue(seen[0].name.startswith("test-pool-"))
        self.assertIs(callbackThreads[0], threading.current_thread())

    @defer.inlineCallbacks
    def test_exceptionBecomesFailure(self):
        def job():
            raise OSError(28, "No space left on device")

        with self.assertRaises(OSError) as caught:
            yield self.pool.run(job)
        self.assertEqual(caught.exception.errno, 28)

    @defer.inlineCallbacks
    def test_boundedAndConcurrent(self):
        """
        Jobs run concurrently on at most C{size} threads.
        """
        release = threading.Event()
        running = []
        lock = threading.Lock()
        peak = []

        def job():
            with lock:
                running.append(1)
                peak.append(len(running))
            release.wait(10)
            with lock:
                running.pop()
            return threading.current_thread().name

        ds = [self.pool.run(job) for _ in range(7)]
        # let the three threads pick up three jobs
        for _ in range(200):
            if len(running) == 3:
                break
            yield deferLater(0.01)
        self.assertEqual(len(running), 3)
        release.set()
        names = yield defer.gatherResults(ds)
        self.assertEqual(max(peak), 3)
        self.assertEqual(len(set(names)), 3)

    @defer.inlineCallbacks
    def test_stopFinishesQueuedJobsThenRefuses(self):
        done = []
        ds = [self.pool.run(done.append, i) for i in range(5)]
        self.pool.stop()
        self.assertEqual(sorted(done), [0, 1, 2, 3, 4])
        yield defer.gatherResults(ds)
        self.assertTrue(all(not w.thread.is_alive() for w in self.pool._workers))
        with self.assertRaises(RuntimeError):
            yield self.pool.run(done.append, 5)

    @defer.inlineCallbacks
    def test_quickJobsStayOnOneThread(self):
        """
        While the busy thread's job is young, new jobs wait for it instead
        of waking more threads (each extra thread taking the GIL back
        after its system calls costs the reactor thread).
        """
        pool = self.makePool(patience=60)
        names = yield defer.gatherResults(
            [pool.run(lambda: threading.current_thread().name) for _ in range(20)]
        )
        self.assertEqual(pool.threads, 1)
        self.assertEqual(set(names), {"test-pool-0"})

    @defer.inlineCallbacks
    def test_slowJobGetsCompany(self):
        """
        A job waiting behind one that has run longer than the patience
        gets a thread of its own (a slow disk's fsync must not serialise
        every delivery).
        """
        pool = self.makePool(patience=0.01)
        release = threading.Event()
        self.addCleanup(release.set)
        slow = pool.run(release.wait, 10)
        quick = pool.run(lambda: threading.current_thread().name)
        name = yield quick
        self.assertFalse(slow.called)
        self.assertEqual(name, "test-pool-1")
        release.set()
        self.assertTrue((yield slow))


def deferLater(seconds):
    return task.deferLater(reactor, seconds, lambda: None)
