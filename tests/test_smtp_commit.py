"""
RFC 5321 4.1.1.4 and 6.1: the reply to the final dot takes responsibility
for the message, so the SMTP server says 250 only once the store's commit
has fired, never because enough time passed.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from .smtp_fixtures.fakes import FakeStore, FakeTransaction, Harness, Result


class HeldTransaction(FakeTransaction):
    def commit(self):
        self.state = "committing"
        d = defer.Deferred()
        self.store.heldCommits.append((d, self))
        return d


class HeldCommitStore(FakeStore):
    """
    A store whose commits fire only when the test says so.
    """

    def __init__(self):
        super().__init__()
        self.heldCommits = []

    def beginDelivery(self):
        t = HeldTransaction(self)
        self.transactions.append(t)
        return t


def replies(transport) -> list[str]:
    return transport.value().decode("utf-8").split("\r\n")[:-1]


class ReplyAfterCommitTests(unittest.TestCase):
    def start(self):
        h = Harness()
        h.store = h.delivery.store = HeldCommitStore()
        proto, t = h.connect()
        proto.dataReceived(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        t.clear()
        return h, proto, t

    def test_noReplyUntilTheCommitFires(self):
        h, proto, t = self.start()
        proto.dataReceived(b"Subject: held\r\n\r\nbody\r\n.\r\n")
        h.clock.advance(3600)  # time alone never makes the reply
        self.assertEqual(replies(t), [])
        [(d, transaction)] = h.store.heldCommits
        self.assertEqual(transaction.state, "committing")
        d.callback([Result(a) for a, _ in transaction.recipients])
        [reply] = replies(t)
        self.assertRegex(reply, r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")

    def test_failedCommitIsNeverA250(self):
        h, proto, t = self.start()
        proto.dataReceived(b"Subject: held\r\n\r\nbody\r\n.\r\n")
        [(d, transaction)] = h.store.heldCommits
        from twisted_maillab.store import StorageFull

        d.callback([Result(a, error=StorageFull("disk full")) for a, _ in transaction.recipients])
        [reply] = replies(t)
        self.assertTrue(reply.startswith("452"), reply)
