"""
The account a login or a local recipient resolves to: what the realm hands
to the store and the protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Account:
    """
    One mailbox owner.

    @ivar name: the canonical account name (C{edouard}); the avatar ID the
        portal returns, without domain or recipient-delimiter extension.
    @ivar domain: the mail domain the account belongs to, or L{None}.
    @ivar home: the home directory.
    @ivar uid: the owner's numeric user id, or L{None} for virtual users
        stored as the server's own user.
    @ivar gid: the owner's numeric group id, or L{None}.
    @ivar maildir: the root of the account's Maildir (INBOX).
    """

    name: str
    domain: str | None
    home: Path
    uid: int | None
    gid: int | None
    maildir: Path

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}" if self.domain else self.name
