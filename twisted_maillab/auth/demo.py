"""
Demo accounts for the development config (C{[auth] demo_users}).
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from twisted_maillab.atomicwrite import replaceFile
from twisted_maillab.auth.hashing import cryptBackend, makeHash
from twisted_maillab.auth.passwdfile import _Locked, updatePasswdFile

__all__ = ["ensureDemoAccounts", "demoPasswordsPath"]


def demoPasswordsPath(config) -> Path:
    """
    Where the clear demo passwords are kept: C{<state_directory>/demo-passwords}.
    """
    return config.server.state_directory / "demo-passwords"


def _readClear(path: Path) -> dict[str, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        pairs = {}
        for line in f:
            user, _, password = line.rstrip("\n").partition(" ")
            if user and password:
                pairs[user] = password
        return pairs


def _writeClear(path: Path, pairs: dict[str, str]) -> None:
    replaceFile(path, "".join(f"{user} {password}\n" for user, password in pairs.items()).encode("utf-8"))


def _users(path: Path) -> set[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {
        line.split(":", 1)[0]
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }


# Letters and digits only: a password printed for a demo account is pasted
# into command lines (swaks -ap, curl -u), where a leading "-" reads as an
# option and "_" or "-" invite mistakes.  16 characters of 62 are 95 bits.
_ALPHABET = string.ascii_letters + string.digits


def newPassword(length: int = 16) -> str:
    """
    A random password of C{length} letters and digits.
    """
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def ensureDemoAccounts(config, backend=None) -> list[tuple[str, str]]:
    """
    Make sure every C{[auth] demo_users} name exists in the passwd-file.

    A missing user gets a random password (16 letters and digits, 95
    bits), stored hashed with C{[auth] password_scheme} in the
    passwd-file and in clear in C{<state_directory>/demo-passwords} (mode
    0600) so that later starts can print it again.  A user who already
    exists in the passwd-file but not in that file (an administrator set
    the password) is left alone and not returned.

    Blocking (hashing, fsync): call it at startup, before the reactor runs.

    @return: C{[(address, password)]} for the demo users whose password is
        known, in C{demo_users} order, e.g. C{("edouard@domaineel.rt",
        "Zq...")}.
    """
    auth = config.auth
    if not auth.demo_users:
        return []
    backend = backend or cryptBackend()
    state = config.server.state_directory
    state.mkdir(parents=True, exist_ok=True)
    clearPath = demoPasswordsPath(config)
    domain = config.server.domain.rstrip(".").lower()
    result = []
    with _Locked(clearPath):
        clear = _readClear(clearPath)
        changed = False
        existing = _users(auth.passwd_file)
        for user in auth.demo_users:
            created = False
            if user not in existing:
                password = clear.get(user) or newPassword()
                hashed = makeHash(backend, password, auth.password_scheme)
                created = updatePasswdFile(auth.passwd_file, user, hashed, onlyIfMissing=True)
            if created:
                clear[user] = password
                changed = True
            if user in clear:
                result.append((f"{user}@{domain}", clear[user]))
        if changed:
            _writeClear(clearPath, clear)
    return result
