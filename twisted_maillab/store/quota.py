"""
Maildir++ quota (C{maildirsize}), as Courier, Dovecot's C{maildir} quota
backend and maildrop read it.

The file at the Maildir root starts with the limits (C{"10485760S,1000C"})
followed by C{"<bytes> <count>"} lines, one per change (negative on
expunge), appended with C{O_APPEND}.  The sum of the lines is the usage.
The file is recalculated from the folders when missing, when the limits
changed, or when it grew past 5120 bytes (the Maildir++ rule).

Limits come from C{[store] quota_bytes/quota_messages} for every account;
when those are 0, a limit the administrator wrote into one user's
C{maildirsize} (Courier's C{maildirmake -q}) applies to that user only.
"""

from __future__ import annotations

import os
import stat as _stat
from dataclasses import dataclass

from twisted_maillab.store import _fs, dovecot

MAILDIRSIZE = "maildirsize"
RECALC_SIZE = 5120


@dataclass(frozen=True)
class QuotaLimits:
    """
    @ivar bytes: the byte limit, 0 for none.
    @ivar messages: the message-count limit, 0 for none.
    """

    bytes: int = 0
    messages: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.bytes or self.messages)

    def header(self) -> str:
        parts = []
        if self.bytes:
            parts.append(f"{self.bytes}S")
        if self.messages:
            parts.append(f"{self.messages}C")
        return ",".join(parts)


def parseLimits(line: str) -> QuotaLimits | None:
    """
    The limits of a C{maildirsize} first line (C{"10485760S,1000C"}).
    """
    size = count = 0
    for part in line.strip().split(","):
        if part.endswith("S") and part[:-1].isdigit():
            size = int(part[:-1])
        elif part.endswith("C") and part[:-1].isdigit():
            count = int(part[:-1])
    limits = QuotaLimits(size, count)
    return limits if limits.enabled else None


def readLimits(rootFd: int, owner: _fs.Owner) -> QuotaLimits | None:
    """
    A per-user quota set by the administrator in the Maildir's own
    C{maildirsize} (Courier's C{maildirmake -q 500000000S ~/Maildir}), or
    L{None}.
    """
    data = _fs.readSmallFile(MAILDIRSIZE, rootFd, owner, limit=1024 * 1024)
    if not data:
        return None
    return parseLimits(data.decode("ascii", "replace").split("\n", 1)[0])


def scanUsage(rootFd: int) -> tuple[int, int]:
    """
    Sum the messages of INBOX and every Maildir++ folder (sizes from
    C{,S=} when present, else C{lstat}).  Blocking.
    """
    total = count = 0

    def folder(dirFd):
        nonlocal total, count
        for sub in ("cur", "new"):
            try:
                fd = _fs.openDir(sub, dirFd)
            except (FileNotFoundError, OSError):
                continue
            try:
                for entry in os.scandir(fd):
                    if entry.name.startswith("."):
                        continue
                    base, _ = dovecot.splitName(entry.name)
                    size, _ = dovecot.sizeFromName(base)
                    if size is None:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if not _stat.S_ISREG(st.st_mode):
                            continue
                        size = st.st_size
                    total += size
                    count += 1
            finally:
                os.close(fd)

    folder(rootFd)
    with _fs.scanDir(rootFd) as entries:
        dirs = [
            e.name
            for e in entries
            if e.name.startswith(".") and e.name not in (".", "..") and e.is_dir(follow_symlinks=False)
        ]
    for name in dirs:
        try:
            fd = _fs.openDir(name, rootFd)
        except OSError:
            continue
        try:
            folder(fd)
        finally:
            os.close(fd)
    return total, count


def readUsage(rootFd: int, owner: _fs.Owner, limits: QuotaLimits) -> tuple[int, int]:
    """
    Current usage from C{maildirsize}, recalculating it when needed.
    Blocking; call from a thread.
    """
    data = _fs.readSmallFile(MAILDIRSIZE, rootFd, owner, limit=1024 * 1024)
    if data is not None and len(data) <= RECALC_SIZE:
        lines = data.decode("ascii", "replace").split("\n")
        # a header alone (maildirmake -q) has no usage yet: recalculate
        if len(lines) > 1 and lines[1].strip() and lines[0].strip() == limits.header():
            total = count = 0
            try:
                for line in lines[1:]:
                    if line.strip():
                        b, c = line.split()
                        total += int(b)
                        count += int(c)
                return total, count
            except ValueError:
                pass  # corrupt: recalculate
    total, count = scanUsage(rootFd)
    text = f"{limits.header()}\n{total:12d} {count:12d}\n"
    _fs.replaceFile(MAILDIRSIZE, rootFd, owner, text.encode("ascii"), fsync=False)
    return total, count


def addUsage(rootFd: int, deltaBytes: int, deltaCount: int) -> None:
    """
    Append a change line (nothing if the file does not exist: the next
    read recalculates).
    """
    try:
        fd = os.open(MAILDIRSIZE, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rootFd)
    except FileNotFoundError:
        return
    try:
        _fs.writeAll(fd, f"{deltaBytes} {deltaCount}\n".encode("ascii"))
    finally:
        os.close(fd)
