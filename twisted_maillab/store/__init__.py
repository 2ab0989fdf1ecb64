"""
The Maildir store: the only code that touches mail on disk.  SMTP local
delivery, POP3 and IMAP use it through L{makeStore}.

Layout and compatibility
========================
Maildir++ as Dovecot writes it: INBOX is C{account.maildir} itself
(C{cur/ new/ tmp/}), a folder C{Archive/2024} is C{.Archive.2024/} with an
empty C{maildirfolder} file, names are modified UTF-7 on disk.  Metadata is
Dovecot's: C{dovecot-uidlist} (version 3: C{V}, C{N}, C{G} header; records
with their extension fields kept), C{dovecot-keywords}, C{:2,} flags (D F R S
T, keyword letters a-z; P and other unknown letters are preserved, as
Dovecot does), the C{dovecot-uidlist.lock} dotlock (pid:host content, 120 s
stale timeout, dead-pid override), C{dovecot-uidvalidity}, the version 2
C{subscriptions} file and the Maildir++ C{maildirsize} quota file.  An
administrator can run Dovecot and maillab on the same Maildir, at the same
time, and clients keep their UIDs (tests/test_store_dovecot.py proves both
directions with Debian's Dovecot).

POP3 UIDL is Dovecot's default C{pop3_uidl_format = %08Xu%08Xv} (UID and
UIDVALIDITY in hex, lower-case digits as Dovecot 2.3 prints them), or the
uidlist C{P} extension when present.

\\Recent is C{new/} versus C{cur/}: a message is recent until a session
claims it (L{Folder.claimRecent} moves it to C{cur/}); messages written
straight to C{cur/} (APPEND with flags, COPY, MOVE) are recent until
claimed too (L{twisted_maillab.store.recent}).

Ownership: C{fchown} plus precautions, not C{setfsuid}
======================================================
When maillab runs as root for system users, files and directories it
creates in a user's Maildir are C{fchown}ed to C{account.uid}/C{account.gid}
right after creation, through the file descriptor (never by path), with
modes 0600/0700.  We chose this over C{setfsuid}/C{setfsgid} because the
file-system identity is per-thread on Linux: the store's operations run
both on the reactor thread (opening a message for FETCH) and in a thread
pool, and switching the identity of the reactor thread (or of a pool thread
shared with password hashing) for every operation is easy to get wrong, and
an exception between the switch and the switch back would leave a thread
running as a user.  The precautions that make root-with-fchown safe:

  - every path below the Maildir root is opened relative to a directory fd
    with C{O_NOFOLLOW} (C{O_DIRECTORY} for directories), so a symlink
    planted anywhere in the Maildir is refused (L{UnsafePath}), never
    followed;
  - new files are created with C{O_CREAT|O_EXCL|O_NOFOLLOW};
  - message files are opened C{O_NONBLOCK} and must be regular files
    (a FIFO cannot hang a thread) owned by the account's uid (a hard link to
    C{/etc/shadow} is refused);
  - the Maildir's parent directory is the administrator's choice and is
    resolved normally; the Maildir itself is opened with C{O_NOFOLLOW}.

A consequence to know: bytes are written as root before the C{fchown}, so
root's reserved blocks and not the user's file-system quota are charged
while a message is written; use the Maildir++ quota (C{quota_bytes}) to
limit users.  Without root, or for accounts without a uid, files belong to
the server's user.

Durability
==========
Delivery writes C{tmp/<unique>}, fsyncs it, renames it into C{new/} (the
commit point) and fsyncs C{new/}; concurrent deliveries to one folder share
that directory fsync (group commit).  An IMAP APPEND does the same (file,
rename into C{new/} or C{cur/}, directory fsync shared with the
deliveries), then appends its record to C{dovecot-uidlist} and
C{fdatasync}s it before the UID is returned.  All fsyncs run in the store's
thread pool, never on the reactor thread.
"""

from __future__ import annotations

from twisted_maillab.store.delivery import DeliveryTransaction, RecipientResult
from twisted_maillab.store.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxInUse,
    MailboxNotFound,
    MailboxReadOnly,
    MessageTooBigForQuota,
    MessageVanished,
    QuotaExceeded,
    ServerBug,
    StorageFull,
    StoreError,
    TransactionClosed,
    UnsafePath,
)
from twisted_maillab.store.folder import Folder, Message
from twisted_maillab.store.store import FolderInfo, Mailboxes, Store

__all__ = [
    "makeStore",
    "Store",
    "Mailboxes",
    "Folder",
    "FolderInfo",
    "Message",
    "DeliveryTransaction",
    "RecipientResult",
    "StoreError",
    "ServerBug",
    "QuotaExceeded",
    "MessageTooBigForQuota",
    "StorageFull",
    "MailboxReadOnly",
    "MailboxNotFound",
    "MailboxExists",
    "MailboxInUse",
    "InvalidMailboxName",
    "MessageVanished",
    "UnsafePath",
    "TransactionClosed",
]


def makeStore(config, reactor) -> Store:
    """
    Build the process's one store from the C{[store]} section.

    @param config: the whole L{twisted_maillab.config.Config}.
    @param reactor: the reactor (thread-pool callbacks, timers, inotify).
    @return: a L{Store}; call C{store.close()} at shutdown.
    """
    section = config.store
    special = (
        (section.drafts_folder, "\\Drafts"),
        (section.sent_folder, "\\Sent"),
        (section.trash_folder, "\\Trash"),
        (section.junk_folder, "\\Junk"),
        (section.archive_folder, "\\Archive"),
    )
    store = Store(
        reactor,
        threads=section.threads,
        fsync=section.fsync,
        rescanInterval=section.rescan_interval,
        quotaBytes=section.quota_bytes,
        quotaMessages=section.quota_messages,
        lockStaleTimeout=section.lock_stale_timeout,
        hostname=config.server.hostname,
        specialFolders=tuple((name, role) for name, role in special if name),
        autocreate=section.autocreate_folders,
        inotify=section.inotify,
        linger=section.index_linger,
    )
    reactor.addSystemEventTrigger("before", "shutdown", store.close)
    return store
