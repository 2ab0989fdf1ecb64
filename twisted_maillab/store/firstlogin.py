"""
What a successful login does to the account's Maildir before any session
uses it: create the Maildir and the special-use folders (RFC 6154) that
are missing and subscribe them, as Dovecot's C{auto = subscribe} mailboxes
(Debian's C{15-mailboxes.conf}) do at login.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["FirstLogin"]


class FirstLogin:
    """
    C{firstLogin(account) -> Deferred}: L{Mailboxes.ensureDefaults} in the
    store's thread pool, once per Maildir in this process.  Later logins to
    the same Maildir cost nothing (no thread round trip, no C{stat}); two
    logins arriving together share one run, so two threads never rewrite
    the C{subscriptions} file at once.  A failed run is forgotten, so the
    next login tries again.

    Reactor thread only.

    @param store: the L{twisted_maillab.store.Store}.
    """

    def __init__(self, store):
        self.store = store
        self._done: set[str] = set()
        self._running: dict[str, list[defer.Deferred]] = {}

    def __call__(self, account) -> defer.Deferred:
        """
        @return: Deferred firing with the folder names created (C{[]} when
            this Maildir was already prepared by this process).
        """
        key = os.path.normpath(os.fspath(account.maildir))
        if key in self._done:
            return defer.succeed([])
        waiters = self._running.get(key)
        if waiters is not None:
            d = defer.Deferred()
            waiters.append(d)
            return d
        waiters = self._running[key] = []

        def finished(result):
            del self._running[key]
            if not isinstance(result, Failure):
                self._done.add(key)
            for waiter in waiters:
                # the others created nothing themselves
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback([])
            return result

        return self.store.mailboxes(account).ensureDefaults().addBoth(finished)
