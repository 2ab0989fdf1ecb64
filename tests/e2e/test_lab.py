"""
The lab harness itself: a server that cannot start still leaves no
network namespace and no /etc/netns directory behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.e2e.lab import Lab


class Cleanups:
    """
    A stand-in test case that keeps the cleanups the lab registers, so
    the test can run them and look at what is left.
    """

    def __init__(self, testCase):
        self.testCase = testCase
        self.cleanups = []

    def mktemp(self):
        return self.testCase.mktemp()

    def addCleanup(self, function, *args):
        self.cleanups.append((function, args))

    def run(self):
        for function, args in reversed(self.cleanups):
            function(*args)


class CleanupTests(unittest.TestCase):
    def test_failedStartLeavesNothing(self):
        """
        A config the server refuses: start() fails with the server's
        error, and the lab's cleanups remove both namespaces (or, on
        loopback, leave no server running).
        """
        holder = Cleanups(self)
        self.addCleanup(holder.run)
        lab = Lab(holder, start=False)
        lab.ini.write_text(lab.ini.read_text().replace("[smtp]\n", "[smtp]\nno_such_key = 1\n", 1))
        error = self.assertRaises(AssertionError, lab.start)
        self.assertIn("no_such_key", str(error))
        if lab.netns:
            names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
            self.assertIn(lab.serverNs, names)
        holder.run()
        holder.cleanups.clear()
        self.assertIsNone(lab.process)
        if lab.netns:
            names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
            self.assertNotIn(lab.serverNs, names)
            self.assertNotIn(lab.neighbourNs, names)
            self.assertFalse(Path("/etc/netns", lab.serverNs).exists())
            self.assertFalse(Path("/etc/netns", lab.neighbourNs).exists())
