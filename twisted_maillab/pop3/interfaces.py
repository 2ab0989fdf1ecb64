"""
The seam between the POP3 protocol and the mail store.

The protocol module never touches a Maildir: after a login the realm hands
it an L{IPOP3Maildrop} for the account's INBOX (registered with
C{realm.registerAvatarFactory(IPOP3Maildrop, factory)}), and the protocol
asks that object for a snapshot, for message bytes and, at QUIT, to apply
the session's deletions.

This is our own interface rather than Twisted's C{twisted.mail.pop3.IMailbox}
because that one is synchronous (C{listMessages}, C{getMessage} return
values, not L{Deferred}s, so a 100,000-message INBOX would be listed on the
reactor thread), deletes at C{deleteMessage} time in every implementation
Twisted ships (a dropped session would lose mail, RFC 1939 section 6), and
has no notion of a per-mailbox session lock or of marking retrieved mail
seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import Attribute, Interface

# Declared with the store's seams (IMAP reads messages the same way);
# still importable from here.
from twisted_maillab.interfaces import IMessageReader

__all__ = ["IPOP3Maildrop", "IMessageReader", "MessageInfo"]


@dataclass(frozen=True)
class MessageInfo:
    """
    One message of a POP3 snapshot.

    @ivar uidl: the unique-id listing value (RFC 1939 section 7: 1 to 70
        characters in 0x21..0x7E), stable across sessions and restarts.
    @ivar size: the size in octets as RETR sends it (CRLF line endings,
        before dot-stuffing), which is what LIST and STAT report.
    """

    uidl: bytes
    size: int


class IPOP3Maildrop(Interface):
    """
    One POP3 session's view of an account's INBOX (RFC 1939 "maildrop").

    The protocol calls L{open} once the session lock is held, then works on
    the numbered snapshot it returned; message numbers passed to the other
    methods are 0-based indexes into that snapshot.
    """

    lockKey = Attribute(
        "Hashable identity of the mailbox: two sessions with equal keys may "
        "not run at once (RFC 2449 8.1.2 IN-USE)."
    )

    def open():
        """
        Take the snapshot of INBOX the session works on.

        @return: L{Deferred} firing with a sequence of L{MessageInfo}, in
            the order of the message numbers 1..n.
        """

    def openMessage(index):
        """
        @return: L{Deferred} firing with an L{IMessageReader} of the message
            as stored (LF or CRLF line endings), or failing with a
            L{twisted_maillab.store.errors.StoreError} (C{MessageVanished}
            when another program expunged it).
        """

    def retrieved(index):
        """
        The whole message was sent by RETR: leave C{new/} for C{cur/} (it
        is no longer recent for IMAP), as Dovecot does.

        @return: L{Deferred}; a failure is logged, never shown to the client.
        """

    def commit(deleted, seen):
        """
        The UPDATE state (RFC 1939 section 6): expunge the messages whose
        indexes are in C{deleted} and flag C{\\Seen} those in C{seen}.

        @param deleted: frozenset of indexes.
        @param seen: frozenset of indexes retrieved by RETR in this session.
        @return: L{Deferred} firing when done; fails with a StoreError when
            some deletions could not be made.
        """

    def logout():
        """
        The session is over (QUIT, timeout or dropped connection); release
        anything held.  Called exactly once.
        """
