"""
The avatar our IMAP server asks the realm for: L{IIMAPAccount}.

Our own interface rather than Twisted's C{imap4.IAccount} (which the realm
also serves, for other Twisted applications, through
L{twisted_maillab.imap.twistedseam}): the server works on the store's
L{Mailboxes} and L{FolderView}s directly, with Deferreds everywhere, and
needs the account's identity for the per-user connection limit.
"""

from __future__ import annotations

import os

from zope.interface import Attribute, Interface, implementer

__all__ = ["IIMAPAccount", "IMAPAccount", "accountFactory"]


class IIMAPAccount(Interface):
    """
    One logged-in IMAP user.
    """

    account = Attribute("The L{twisted_maillab.account.Account}.")
    mailboxes = Attribute("The account's L{twisted_maillab.store.Mailboxes}.")
    userKey = Attribute(
        "Hashable identity of the Maildir: logins that reach the same Maildir "
        "(user, user@domain, an alias) count as one user for connection limits."
    )

    def logout():
        """
        The session is over; called once by the realm's logout.
        """


@implementer(IIMAPAccount)
class IMAPAccount:
    def __init__(self, store, account):
        self.store = store
        self.account = account
        self.userKey = ("maildir", os.path.normpath(os.fspath(account.maildir)))

    @property
    def mailboxes(self):
        # Asked of the store each time, never kept: an account's Mailboxes
        # is forgotten when idle, and a session holding a retired one would
        # open folders of its own, which the other sessions' changes (a
        # COPY into the folder they have selected) never reach.
        return self.store.mailboxes(self.account)

    def logout(self):
        pass


def accountFactory(store):
    """
    The avatar factory to register with the realm for L{IIMAPAccount}.
    (The realm's C{prepareAccount}, the store's first-login hook, has
    created the Maildir and its special-use folders before it is called.)
    """
    return lambda account: IMAPAccount(store, account)
