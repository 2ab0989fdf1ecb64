"""
Exceptions raised by the store.

Every exception carries what a protocol needs to answer without knowing
the store's internals (the maddy C{exterrors} idea):

  - C{temporary}: L{True} when retrying later may succeed (SMTP 4xx);
  - C{smtpCode} and C{enhancedCode}: the suggested SMTP reply
    (RFC 5321 4.2, RFC 3463 enhanced status codes);
  - C{imapCode}: the suggested IMAP response code (RFC 5530), e.g.
    C{OVERQUOTA}, C{SERVERBUG}, C{NONEXISTENT}.

The SMTP server answers C{f"{e.smtpCode} {e.enhancedCode} {e}"}; the IMAP
server answers C{f"NO [{e.imapCode}] {e}"}.
"""

from __future__ import annotations

import errno as _errno


class StoreError(Exception):
    """
    Base class: something the store could not do.

    @ivar temporary: whether a retry may succeed.
    @ivar smtpCode: suggested SMTP reply code (int).
    @ivar enhancedCode: suggested RFC 3463 code (str, C{"4.3.0"}).
    @ivar imapCode: suggested RFC 5530 response code (str) or L{None}.
    """

    temporary = True
    smtpCode = 451
    enhancedCode = "4.3.0"
    imapCode: str | None = "SERVERBUG"
    defaultMessage = "internal mail store error"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.defaultMessage)

    @property
    def message(self) -> str:
        return self.args[0]

    def smtpReply(self) -> str:
        """
        The reply line text, C{"452 4.2.2 mailbox full"}.
        """
        return f"{self.smtpCode} {self.enhancedCode} {self.message}"


class ServerBug(StoreError):
    """
    An unexpected I/O error (EIO, a corrupt file we could not repair...).
    """


class QuotaExceeded(StoreError):
    """
    The recipient's Maildir++ quota (or the file system quota, EDQUOT)
    would be exceeded.  RFC 3463 X.2.2 "mailbox full"; temporary, as
    Postfix and Dovecot LDA treat it by default.
    """

    smtpCode = 452
    enhancedCode = "4.2.2"
    imapCode = "OVERQUOTA"
    defaultMessage = "mailbox is full (quota exceeded)"


class MessageTooBigForQuota(QuotaExceeded):
    """
    The message alone is larger than the whole quota: retrying cannot help.
    RFC 3463 5.2.2 / RFC 5321 552.
    """

    temporary = False
    smtpCode = 552
    enhancedCode = "5.2.2"
    defaultMessage = "message is larger than the mailbox quota"


class StorageFull(StoreError):
    """
    The file system is full (ENOSPC).  RFC 3463 X.3.1 "mail system full";
    RFC 5321 452 "insufficient system storage"; IMAP answers
    C{NO [OVERQUOTA]} as Dovecot does for ENOSPC.
    """

    smtpCode = 452
    enhancedCode = "4.3.1"
    imapCode = "OVERQUOTA"
    defaultMessage = "mail system full (no space left on device)"


class MailboxReadOnly(StoreError):
    """
    The folder cannot be written (EACCES, EPERM, EROFS).  Temporary for
    SMTP (the administrator can fix permissions; RFC 3463 X.2.0), C{NOPERM}
    for IMAP.
    """

    smtpCode = 450
    enhancedCode = "4.2.0"
    imapCode = "NOPERM"
    defaultMessage = "mailbox is read-only"


class UnsafePath(StoreError):
    """
    A symlink, FIFO, device or foreign-owned file was found where the store
    expected its own directory or message file.  The store refuses to
    follow it; the mail stays where it is until an administrator looks.
    """

    smtpCode = 450
    enhancedCode = "4.2.0"
    imapCode = "SERVERBUG"
    defaultMessage = "unsafe file in mailbox (symlink or special file)"


class MailboxNotFound(StoreError):
    """
    The folder does not exist.  IMAP C{NO [NONEXISTENT]} (or TRYCREATE for
    APPEND/COPY, the IMAP layer decides); SMTP 550 5.1.1.
    """

    temporary = False
    smtpCode = 550
    enhancedCode = "5.1.1"
    imapCode = "NONEXISTENT"
    defaultMessage = "no such mailbox"


class MailboxExists(StoreError):
    temporary = False
    smtpCode = 550
    enhancedCode = "5.2.0"
    imapCode = "ALREADYEXISTS"
    defaultMessage = "mailbox already exists"


class InvalidMailboxName(StoreError):
    """
    The name cannot be stored in Maildir++ (a C{.}, an empty level, a
    control character, too long...).
    """

    temporary = False
    smtpCode = 553
    enhancedCode = "5.1.3"
    imapCode = "CANNOT"
    defaultMessage = "invalid mailbox name"


class MailboxInUse(StoreError):
    """
    The C{dovecot-uidlist.lock} could not be taken before the timeout.
    """

    smtpCode = 451
    enhancedCode = "4.3.0"
    imapCode = "INUSE"
    defaultMessage = "mailbox is locked by another process, try again"


class MessageVanished(StoreError):
    """
    The message was expunged by another process meanwhile (RFC 5530
    EXPUNGEISSUED).
    """

    temporary = False
    smtpCode = 550
    enhancedCode = "5.2.0"
    imapCode = "EXPUNGEISSUED"
    defaultMessage = "message was expunged"


class TransactionClosed(StoreError):
    """
    A delivery transaction was used after commit or abort.
    """

    defaultMessage = "delivery transaction already finished"


def fromOSError(error: OSError, what: str = "") -> StoreError:
    """
    Map an L{OSError} from a file operation to the store exception a
    protocol can report.

    @param what: a short description of the operation for the message.
    """
    detail = f"{what}: {error.strerror or error}" if what else (error.strerror or str(error))
    code = error.errno
    if code == _errno.ENOSPC:
        return StorageFull(f"mail system full ({detail})")
    if code == _errno.EDQUOT:
        return QuotaExceeded(f"disk quota exceeded ({detail})")
    if code in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        return MailboxReadOnly(f"mailbox is read-only ({detail})")
    if code in (_errno.ELOOP, _errno.ENOTDIR, _errno.ENXIO):
        return UnsafePath(f"unsafe file in mailbox ({detail})")
    if code == _errno.ENOENT:
        return MailboxNotFound(f"no such mailbox or file ({detail})")
    return ServerBug(f"mail store I/O error ({detail})")
