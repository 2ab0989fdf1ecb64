"""
Helpers for tests of code that uses the store (POP3, IMAP, SMTP delivery,
or another application embedding maillab), in the spirit of
C{treq.testing}: a real Maildir in a temporary directory, driven without
threads so that every Deferred has fired when the call returns, and timers
on a L{task.Clock}.

    from twisted_maillab.store.testing import synchronousStore, temporaryAccount, deliverNow
    store = synchronousStore()
    account = temporaryAccount(self.mktemp())
    deliverNow(store, account, b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    folder = self.successResultOf(store.mailboxes(account).open())
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer, task

from twisted_maillab.account import Account
from twisted_maillab.store.store import Store

__all__ = ["synchronousStore", "temporaryAccount", "deliverNow"]


def _synchronous(f, *args, **kwargs):
    return defer.maybeDeferred(f, *args, **kwargs)


class _NoReactor:
    """
    Synchronous stores never call the reactor; this makes a mistake loud.
    """

    def __getattr__(self, name):
        raise AttributeError(f"a synchronous test store has no reactor ({name})")


def synchronousStore(clock: task.Clock | None = None, **kwargs) -> Store:
    """
    A L{Store} that runs its disk work inline (no thread pool) and its
    timers on C{clock} (a new L{task.Clock} by default, at the current
    time).  Deferreds it returns have already fired; inotify is off and the
    periodic rescan is off unless C{rescanInterval} is given.
    """
    if clock is None:
        import time

        clock = task.Clock()
        clock.advance(time.time())
    kwargs.setdefault("rescanInterval", 0)
    kwargs.setdefault("inotify", False)
    kwargs.setdefault("fsync", False)
    kwargs.setdefault("hostname", "test.invalid")
    return Store(_NoReactor(), clock=clock, runner=_synchronous, **kwargs)


def temporaryAccount(directory, name: str = "user", uid: int | None = None, gid: int | None = None) -> Account:
    """
    An L{Account} whose home is C{directory/name} (created) and whose
    Maildir is C{~/Maildir} (created on first delivery or open).
    """
    home = Path(directory) / name
    home.mkdir(parents=True, exist_ok=True)
    if uid is not None and os.geteuid() == 0:
        os.chown(home, uid, gid if gid is not None else -1)
    return Account(name, "example.org", home, uid, gid, home / "Maildir")


def deliverNow(store: Store, account: Account, message: bytes, folder: str = "INBOX", prependHeaders: bytes = b""):
    """
    Deliver C{message} through a real delivery transaction and return the
    L{RecipientResult} (raises its error if the delivery failed).
    """
    txn = store.beginDelivery()
    txn.addRecipient(account, folder, prependHeaders, create=True)
    txn.write(message)
    results = []
    txn.commit().addCallback(results.extend)
    if not results:
        raise RuntimeError("deliverNow needs a synchronous store (synchronousStore())")
    (result,) = results
    if result.error is not None:
        raise result.error
    return result
