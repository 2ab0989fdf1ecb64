"""
Where accounts come from: the system's passwd/shadow files and Dovecot
passwd-files.  Sources are blocking (they read files) and are only called
from the check pool's threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted_maillab.auth.names import UsernameRules
from twisted_maillab.auth.passwdfile import CachedFile, PasswdEntry, parsePasswdFile

__all__ = [
    "Found",
    "PasswdRecord",
    "ShadowRecord",
    "UnixSource",
    "PasswdFileSource",
    "parsePasswd",
    "parseShadow",
]


@dataclass(frozen=True)
class Found:
    """
    What a source knows of one account, before the mail location is applied.

    @ivar avatarId: the portal's avatar ID: the local part, or
        C{local@domain} for a passwd-file entry bound to one domain.
    @ivar password: the stored password field (crypt string or
        C{{SCHEME}value}); C{"x"} when it lives in the shadow file.
    """

    avatarId: str
    local: str
    domain: str | None
    home: Path | None
    uid: int | None
    gid: int | None
    password: str


@dataclass(frozen=True)
class PasswdRecord:
    name: str
    password: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class ShadowRecord:
    """
    One shadow(5) line; day counts are days since 1970-01-01, L{None} when
    the field is empty.
    """

    name: str
    password: str
    lastChange: int | None
    minimum: int | None
    maximum: int | None
    warn: int | None
    inactive: int | None
    expire: int | None


def _days(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parsePasswd(text: str, rules: UsernameRules) -> dict[str, PasswdRecord]:
    """
    passwd(5) lines keyed by folded name; malformed lines are skipped.
    """
    records: dict[str, PasswdRecord] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        record = PasswdRecord(
            fields[0], fields[1], int(fields[2]), int(fields[3]), fields[4], fields[5], fields[6]
        )
        records.setdefault(rules.foldLocal(record.name), record)
    return records


def parseShadow(text: str) -> dict[str, ShadowRecord]:
    """
    shadow(5) lines keyed by exact name; malformed lines are skipped.
    """
    records: dict[str, ShadowRecord] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 8:
            continue
        records.setdefault(
            fields[0],
            ShadowRecord(fields[0], fields[1], *(_days(f) for f in fields[2:8])),
        )
    return records


class UnixSource:
    """
    System users from a passwd file, limited to a uid range (Dovecot's
    C{first_valid_uid}/C{last_valid_uid}) so that root, daemons and
    C{nobody} never log in to mail.
    """

    def __init__(
        self,
        rules: UsernameRules,
        passwdPath: Path = Path("/etc/passwd"),
        shadowPath: Path = Path("/etc/shadow"),
        firstUid: int = 1000,
        lastUid: int = 59999,
    ):
        self.rules = rules
        self.passwd = CachedFile(Path(passwdPath), lambda text: parsePasswd(text, rules))
        self.shadow = CachedFile(Path(shadowPath), parseShadow)
        self.firstUid = firstUid
        self.lastUid = lastUid

    def record(self, key: tuple[str, str | None]) -> PasswdRecord | None:
        record = self.passwd.get().get(key[0])
        if record is None or not (self.firstUid <= record.uid <= self.lastUid):
            return None
        return record

    def find(self, key: tuple[str, str | None]) -> Found | None:
        record = self.record(key)
        if record is None:
            return None
        return Found(
            avatarId=self.rules.foldLocal(record.name),
            local=self.rules.foldLocal(record.name),
            domain=None,
            home=Path(record.home) if record.home else None,
            uid=record.uid,
            gid=record.gid,
            password=record.password,
        )


class PasswdFileSource:
    """
    Virtual users from a Dovecot passwd-file.

    Lookup order for a key C{(local, domain)}: an entry bound to that
    domain, then an unbound entry; for C{(local, None)}: an unbound entry,
    then one bound to the primary domain.
    """

    def __init__(self, rules: UsernameRules, path: Path):
        self.rules = rules
        self.path = Path(path)
        self.file = CachedFile(self.path, lambda text: parsePasswdFile(text, rules, str(path)))

    def entry(self, key: tuple[str, str | None]) -> PasswdEntry | None:
        entries = self.file.get()
        local, domain = key
        if domain is None:
            candidates = [(local, None)]
            if self.rules.localDomains:
                candidates.append((local, self.rules.primaryDomain))
        else:
            candidates = [(local, domain), (local, None)]
        for candidate in candidates:
            entry = entries.get(candidate)
            if entry is not None:
                return entry
        return None

    def find(self, key: tuple[str, str | None]) -> Found | None:
        entry = self.entry(key)
        if entry is None:
            return None
        return Found(
            avatarId=f"{entry.local}@{entry.domain}" if entry.domain else entry.local,
            local=entry.local,
            domain=entry.domain,
            home=Path(entry.home) if entry.home else None,
            uid=entry.uid,
            gid=entry.gid,
            password=entry.password,
        )
