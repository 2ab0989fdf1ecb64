"""
L{IPOP3Maildrop} over the Maildir store (L{twisted_maillab.store}).

What a session sees and does, in store terms:

  - the snapshot is INBOX's index at login, in UID order (RFC 1939: the
    maildrop is fixed for the session; later deliveries wait for the next
    session);
  - UIDL is the store's L{Folder.pop3Uidl}: Dovecot's default
    C{pop3_uidl_format = %08Xu%08Xv} (which Dovecot 2.3 expands in
    lower-case hex) built from the IMAP UID and
    UIDVALIDITY (or a migrated uidlist C{P} value), so it is stable across
    sessions and restarts, agrees with IMAP, and does not change when an
    administrator switches between Dovecot and maillab;
  - sizes are C{,W=} virtual sizes (octets with CRLF line ends, what RETR
    sends), counted in the store's thread pool for files whose names lack
    C{,W=} (mail delivered by another program);
  - message bytes are read in the store's thread pool, one chunk at a time;
  - a completed RETR moves the file from C{new/} to C{cur/} at once (it is
    no longer \\Recent for IMAP, as with Dovecot); at QUIT the retrieved
    messages get C{\\Seen} (Dovecot's default C{pop3_no_flag_updates = no})
    and the deleted ones are expunged, in that order.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.pop3.interfaces import IPOP3Maildrop, MessageInfo
from twisted_maillab.store.errors import MessageVanished, StoreError
from twisted_maillab.store.reading import ThreadedReader, virtualSizes
from twisted_maillab.store.view import FolderView

__all__ = ["StoreMaildrop", "ThreadedReader", "maildropFactory"]

log = Logger()

@implementer(IPOP3Maildrop)
class StoreMaildrop:
    """
    One POP3 session on an account's INBOX in the store.

    @param store: the L{twisted_maillab.store.Store}.
    @param account: the L{twisted_maillab.account.Account}.
    """

    def __init__(self, store, account):
        self.store = store
        self.account = account
        # The same key the store uses for an account's Mailboxes: two
        # logins that reach the same Maildir (user, user@domain, an alias
        # login) share the lock.
        self.lockKey = ("maildir", os.path.normpath(os.fspath(account.maildir)))
        self.folder = None
        self.view = None
        self.uids: list[int] = []
        self._closed = False

    @defer.inlineCallbacks
    def open(self):
        mailboxes = self.store.mailboxes(self.account)
        folder = yield mailboxes.open("INBOX", create=True)
        if self._closed:
            folder.close()
            return []
        self.folder = folder
        # Pick up what changed on disk since the folder was last looked at
        # (another program, a delivery inotify has not reported yet).
        yield folder.refresh()
        # RFC 1939 4: the maildrop is fixed for the session, so the view's
        # changes are never taken; it is the numbering POP3 works on.
        self.view = FolderView(folder)
        uids = self.view.uids
        sizes = yield virtualSizes(folder, uids)
        snapshot = []
        self.uids = []
        for uid in uids:
            if uid not in sizes:
                continue  # vanished while we looked
            try:
                uidl = folder.pop3Uidl(uid)
            except MessageVanished:
                continue
            self.uids.append(uid)
            snapshot.append(MessageInfo(uidl.encode("ascii", "replace"), sizes[uid]))
        return snapshot

    def openMessage(self, index):
        try:
            f = self.folder.openMessage(self.uids[index])
        except StoreError:
            return defer.fail()
        return defer.succeed(ThreadedReader(f, self.store.run))

    def retrieved(self, index):
        # Claiming the message moves it new/ -> cur/ keeping its flags: it
        # is no longer \Recent for IMAP sessions (as with Dovecot's POP3).
        uid = self.uids[index]
        try:
            if not self.folder.message(uid).isNew:
                return defer.succeed(None)  # already in cur/: nothing to do
        except MessageVanished:
            return defer.succeed(None)
        return self.folder.claimRecent(within=[uid])

    @defer.inlineCallbacks
    def commit(self, deleted, seen):
        folder = self.folder
        toFlag = [self.uids[i] for i in sorted(seen) if i not in deleted]
        if toFlag:
            yield folder.setFlags(toFlag, ["\\Seen"], "add")
        if deleted:
            yield folder.expunge([self.uids[i] for i in sorted(deleted)])

    def logout(self):
        if self._closed:
            return
        self._closed = True
        view, self.view = self.view, None
        folder, self.folder = self.folder, None
        if view is not None:
            view.close()  # gives the folder back
        elif folder is not None:
            folder.close()


def maildropFactory(store):
    """
    The avatar factory to register with the realm for L{IPOP3Maildrop}.
    """
    return lambda account: StoreMaildrop(store, account)
