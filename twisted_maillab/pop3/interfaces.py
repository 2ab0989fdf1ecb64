"""
The seam between the POP3 protocol and the mail store (declared with the
other seams in L{twisted_maillab.interfaces}; importable from here).

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

from twisted_maillab.interfaces import IMessageReader, IPOP3Maildrop, MessageInfo

__all__ = ["IPOP3Maildrop", "IMessageReader", "MessageInfo"]
