"""
Dovecot's passwd-file format, read and written.

One user per line, the fields of C{/etc/passwd} with the password in the
second field and Dovecot's additions (doc.dovecot.org "Passwd-file")::

    user:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields

Only the first two fields are required; empty uid/gid/home mean "the
server's own user" and "the default home under the state directory".  A
user field may hold a full address (C{anne@example.org}) to bind the entry
to one local domain; a bare name is valid in every local domain.  C{#}
starts a comment line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from twisted.logger import Logger

from twisted_maillab.atomicwrite import replaceFile
from twisted_maillab.auth.hashing import splitScheme
from twisted_maillab.auth.names import UsernameRules, normaliseDomain

log = Logger(namespace="twisted_maillab.auth")

__all__ = [
    "PasswdEntry", "parsePasswdFile", "CachedFile", "updatePasswdFile", "removeFromPasswdFile", "formatEntry",
]

# An administrator's file, but still bounded: a runaway file must not eat
# the daemon's memory (16 MiB is about 100,000 argon2 entries).
MAX_FILE_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class PasswdEntry:
    """
    One passwd-file line.

    @ivar user: the user field as written (C{edouard}, C{anne@example.org}).
    @ivar local: the folded local part (the account name).
    @ivar domain: the domain the entry is bound to, or L{None}.
    @ivar password: the password field (C{{SCHEME}value}).
    @ivar uid: numeric uid or L{None}.
    @ivar gid: numeric gid or L{None}.
    @ivar home: the home field or L{None}.
    @ivar extra: the extra fields, unparsed.
    @ivar line: the 1-based line number, for messages.
    """

    user: str
    local: str
    domain: str | None
    password: str
    uid: int | None
    gid: int | None
    home: str | None
    extra: str
    line: int


def _optionalInt(text: str, what: str, number: int) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"line {number}: {what} {text!r} is not a number")
    return int(text)


def parsePasswdFile(
    text: str, rules: UsernameRules, path: str = "<passwd-file>"
) -> dict[tuple[str, str | None], PasswdEntry]:
    """
    Parse passwd-file text into entries keyed like L{UsernameRules.split}.

    Lines that cannot be used are logged with their number and skipped
    (one bad line must not lock every user out); entries with C{{PLAIN}}
    passwords are accepted with a warning.
    """
    entries: dict[tuple[str, str | None], PasswdEntry] = {}
    plain = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":", 7)
        if len(fields) < 2:
            log.warn("{path} line {line}: no password field, ignored", path=path, line=number)
            continue
        fields += [""] * (8 - len(fields))
        user, password, uid, gid, _gecos, home, _shell, extra = fields
        local, at, domain = user.rpartition("@")
        if not at:
            local, domain = user, None
        try:
            if domain is not None:
                domain = normaliseDomain(domain)
            key = (rules.foldLocal(local), domain)
            entry = PasswdEntry(
                user=user,
                local=key[0],
                domain=domain,
                password=password,
                uid=_optionalInt(uid, "uid", number),
                gid=_optionalInt(gid, "gid", number),
                home=home or None,
                extra=extra,
                line=number,
            )
        except ValueError as e:
            log.warn("{path}: {reason}, ignored", path=path, reason=str(e))
            continue
        if not local:
            log.warn("{path} line {line}: empty user name, ignored", path=path, line=number)
            continue
        if key in entries:
            log.warn(
                "{path} line {line}: {user} is already defined on line {first}, ignored",
                path=path, line=number, user=user, first=entries[key].line,
            )
            continue
        if splitScheme(password)[0] in ("PLAIN", "CLEAR"):
            plain.append(user)
        entries[key] = entry
    if plain:
        log.warn(
            "{path}: {count} user(s) have {{PLAIN}} passwords ({users}); "
            "rehash them with 'maillab passwd'",
            path=path, count=len(plain), users=", ".join(plain[:10]),
        )
    return entries


T = TypeVar("T")


class CachedFile(Generic[T]):
    """
    A file parsed on first use and again whenever it changes (inode, size
    or mtime), so a C{maillab passwd} takes effect without a restart.
    Thread-safe: it is read from the check pool's threads.

    A missing file parses as empty text (no users), so a fresh install with
    C{passwd-file} configured starts before its first user is added.
    """

    def __init__(self, path: Path, parse: Callable[[str], T]):
        self.path = Path(path)
        self._parse = parse
        self._lock = threading.Lock()
        self._signature = None
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            try:
                st = os.stat(self.path)
                signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                signature = None
            if self._value is not None and signature == self._signature:
                return self._value
            text = self._read() if signature is not None else ""
            self._value = self._parse(text)
            self._signature = signature
            return self._value

    def _read(self) -> str:
        # O_NOFOLLOW: the file is read as root; a symlink planted in its
        # place must not make us read (and log lines of) another file.
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
            data = f.read(MAX_FILE_SIZE + 1)
        if len(data) > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, f"{self.path} is larger than {MAX_FILE_SIZE} bytes")
        return data.decode("utf-8", "replace")


def formatEntry(
    user: str,
    password: str,
    uid: int | None = None,
    gid: int | None = None,
    home: str | None = None,
    extra: str = "",
) -> str:
    """
    One passwd-file line (without newline).
    """
    for value in (user, password, home or ""):
        if ":" in value or "\n" in value:
            raise ValueError(f"{value!r} contains ':' or a newline")
    fields = [
        user,
        password,
        "" if uid is None else str(uid),
        "" if gid is None else str(gid),
        "",
        home or "",
        "",
        extra,
    ]
    while len(fields) > 2 and not fields[-1]:
        fields.pop()
    return ":".join(fields)


class _Locked:
    """
    An exclusive flock on C{<file>.lock}, so two C{maillab passwd} runs (or
    one and the daemon creating demo accounts) never lose an update.
    """

    def __init__(self, path: Path):
        self.path = Path(str(path) + ".lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def updatePasswdFile(
    path: Path,
    user: str,
    password: str,
    uid: int | None = None,
    gid: int | None = None,
    home: str | None = None,
    onlyIfMissing: bool = False,
) -> bool:
    """
    Add a user, or change an existing user's password (keeping its other
    fields unless new values are given), atomically: the new file is
    written beside the old one, fsynced, renamed over it, and the directory
    is fsynced.  A new file is created mode 0600; an existing file keeps
    its mode, owner and group.

    @param user: the user field, compared exactly (as written in the file).
    @param password: the complete password field, C{{SCHEME}hash}.
    @param onlyIfMissing: leave an existing entry untouched.
    @return: C{True} if the file was changed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _Locked(path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            lines, st = [], None
        else:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                lines = f.read(MAX_FILE_SIZE + 1).decode("utf-8").splitlines()
        for index, line in enumerate(lines):
            if line.lstrip().startswith("#"):
                continue
            fields = line.split(":", 7)
            if fields[0] != user:
                continue
            if onlyIfMissing:
                return False
            fields += [""] * (8 - len(fields))
            lines[index] = formatEntry(
                user,
                password,
                uid if uid is not None else (int(fields[2]) if fields[2].isdigit() else None),
                gid if gid is not None else (int(fields[3]) if fields[3].isdigit() else None),
                home if home is not None else (fields[5] or None),
                fields[7],
            )
            break
        else:
            lines.append(formatEntry(user, password, uid, gid, home))
        _replace(path, ("\n".join(lines) + "\n").encode("utf-8"), st)
        return True


def _replace(path: Path, data: bytes, st: os.stat_result | None) -> None:
    # a new file is 0600; an existing one keeps its mode and owner
    def keepOwner(fd: int) -> None:
        if st is not None:
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass

    replaceFile(path, data, mode=0o600 if st is None else stat.S_IMODE(st.st_mode), owner=keepOwner)


def removeFromPasswdFile(path: Path, user: str) -> bool:
    """
    Remove a user's line (the user field compared exactly), under the same
    lock and with the same atomic replacement as L{updatePasswdFile}.

    @return: C{True} if the user was there.
    """
    path = Path(path)
    with _Locked(path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            lines = f.read(MAX_FILE_SIZE + 1).decode("utf-8").splitlines()
        kept = [
            line for line in lines
            if line.lstrip().startswith("#") or line.split(":", 1)[0] != user
        ]
        if len(kept) == len(lines):
            return False
        _replace(path, ("\n".join(kept) + "\n" if kept else "").encode("utf-8"), st)
        return True
