"""
Dovecot-compatible Maildir metadata: file names and C{:2,} flags,
C{dovecot-uidlist} (version 3), C{dovecot-keywords}, the
C{dovecot-uidlist.lock} dotlock, C{dovecot-uidvalidity}, the
C{subscriptions} file and Maildir++ folder names (modified UTF-7).

These are pure functions and small classes that work on bytes and directory
fds; the folder modules (L{twisted_maillab.store.foldersync}) call them from the store's thread pool.
The formats follow Dovecot 2.3 (src/lib-storage/index/maildir/,
src/lib/file-dotlock.c, src/lib-storage/mailbox-uidvalidity.c,
src/lib-storage/list/subscription-file.c) so Dovecot and maillab can work
on the same Maildir at the same time.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from twisted_maillab.store import _fs
from twisted_maillab import foldernames
from twisted_maillab.store.errors import InvalidMailboxName, MailboxInUse

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
UIDVALIDITY = "dovecot-uidvalidity"
SUBSCRIPTIONS = "subscriptions"
MAILDIRFOLDER = "maildirfolder"

# Maildir spec (cr.yp.to/proto/maildir.html) "info" semantics; Dovecot's
# maildir-filename-flags.c maps these letters and keeps any other letter.
SYSTEM_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
FLAG_LETTERS = {name.lower(): letter for letter, name in SYSTEM_FLAGS.items()}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # MAILDIR_MAX_KEYWORDS = 26

# Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT and KEYWORDS_LOCK_STALE_TIMEOUT.
LOCK_STALE_TIMEOUT = 120.0
# file-dotlock.c STALE_PID_CHECK_SECS: a younger lock's pid is not checked.
STALE_PID_CHECK_SECS = 2


# ---------------------------------------------------------------------------
# File names and flags


def splitName(filename: str) -> tuple[str, str | None]:
    """
    Split C{1700000000.M1P2.host,S=30:2,RS} into the base name (what the
    uidlist stores) and the info part (C{2,RS}), or L{None} without one.
    """
    index = filename.find(":")
    if index < 0:
        return filename, None
    return filename[:index], filename[index + 1 :]


def infoLetters(info: str | None) -> str:
    """
    The flag letters of a C{2,...} info part (empty for other infos).
    """
    if info is None or not info.startswith("2,"):
        return ""
    letters = info[2:]
    # a second flag set after another "," is not ours; keep it, ignore it
    comma = letters.find(",")
    return letters if comma < 0 else letters[:comma]


def buildInfo(oldInfo: str | None, letters: str) -> str:
    """
    The new C{2,} info: the given D/F/R/S/T and keyword letters, plus the
    unknown letters of C{oldInfo} (C{P} for example), sorted by ASCII code
    as Dovecot writes them.
    """
    old = infoLetters(oldInfo)
    keep = {c for c in old if c not in SYSTEM_FLAGS and c not in KEYWORD_LETTERS}
    chosen = "".join(sorted(set(letters) | keep))
    tail = ""
    if oldInfo is not None and oldInfo.startswith("2,"):
        comma = oldInfo.find(",", 2)
        if comma >= 0:
            tail = oldInfo[comma:]
    return "2," + chosen + tail


def sizeFromName(base: str) -> tuple[int | None, int | None]:
    """
    The C{,S=} (physical) and C{,W=} (CRLF, "virtual") sizes encoded in a
    base name, as Dovecot and Courier write them.
    """
    size = vsize = None
    for part in base.split(",")[1:]:
        if part.startswith("S="):
            try:
                size = int(part[2:])
            except ValueError:
                pass
        elif part.startswith("W="):
            try:
                vsize = int(part[2:])
            except ValueError:
                pass
    return size, vsize


class NameGenerator:
    """
    Unique Maildir names: C{<sec>.M<usec>P<pid>Q<n>.<host>} per the Maildir
    specification ("modern" form), the pid read at each call (a fork after
    start must not reuse the parent's), C{/} and C{:} in the host escaped
    as C{\\057} and C{\\072}.

    @param clock: anything with C{seconds()} (the reactor, L{task.Clock}).
    """

    def __init__(self, clock, hostname: str | None = None):
        self.clock = clock
        host = hostname or socket.gethostname()
        self.host = host.replace("/", "\\057").replace(":", "\\072")
        # next() is called from the store's threads: itertools.count is
        # atomic in CPython where "+= 1" is not
        self._counter = itertools.count(1)

    def next(self) -> str:
        counter = next(self._counter)
        now = self.clock.seconds()
        seconds = int(now)
        micro = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micro}P{os.getpid()}Q{counter}.{self.host}"


_SORT_NAME = re.compile(r"(\d*)(?:\.M(\d+))?")


def filenameSortKey(base: str) -> tuple:
    """
    The order in which Dovecot gives UIDs to new Maildir files
    (maildir_filename_sort_cmp): the leading seconds as a number, then the
    C{M<usec>} microseconds as a number, then the rest of the name.  Plain
    string order differs within one second: C{M95000} sorts after
    C{M102000}, and the two servers would number the same messages
    differently.
    """
    match = _SORT_NAME.match(base)
    seconds, micro = match.group(1), match.group(2)
    return (int(seconds) if seconds else -1, int(micro) if micro is not None else -1, base[match.end():])


# ---------------------------------------------------------------------------
# dovecot-keywords


class Keywords:
    """
    The folder's keyword table: letter C{a}..C{z} <-> name (C{dovecot-keywords}
    holds C{"<index> <name>"} lines; names compare case-insensitively).
    """

    def __init__(self, names: dict[int, str] | None = None):
        self.names: dict[int, str] = dict(names or {})

    @classmethod
    def parse(cls, data: bytes | None) -> "Keywords":
        names = {}
        for line in (data or b"").decode("utf-8", "replace").splitlines():
            index, sep, name = line.partition(" ")
            if not sep or not name:
                continue
            try:
                number = int(index)
            except ValueError:
                continue
            if 0 <= number < len(KEYWORD_LETTERS):
                names[number] = name
        return cls(names)

    def format(self) -> bytes:
        return "".join(f"{i} {n}\n" for i, n in sorted(self.names.items())).encode("utf-8")

    def nameOf(self, letter: str) -> str:
        index = KEYWORD_LETTERS.index(letter)
        # maildir-keywords.c: a letter without a name gets "unknown-N"
        return self.names.get(index, f"unknown-{index}")

    def letterOf(self, name: str) -> str | None:
        lowered = name.lower()
        for index, known in self.names.items():
            if known.lower() == lowered:
                return KEYWORD_LETTERS[index]
        return None

    def allocate(self, name: str) -> str | None:
        """
        The letter for C{name}, allocating a free one (the caller holds the
        uidlist lock and writes the file); L{None} when all 26 are used.
        """
        letter = self.letterOf(name)
        if letter is not None:
            return letter
        for index in range(len(KEYWORD_LETTERS)):
            if index not in self.names:
                self.names[index] = name
                return KEYWORD_LETTERS[index]
        return None


# ---------------------------------------------------------------------------
# dovecot-uidlist


@dataclass
class UidlistHeader:
    version: int = 3
    uidValidity: int = 0
    nextUid: int = 1
    guid: str = ""
    extra: str = ""  # unknown header fields, written back verbatim

    def format(self) -> bytes:
        text = f"3 V{self.uidValidity} N{self.nextUid} G{self.guid}"
        if self.extra:
            text += " " + self.extra
        return (text + "\n").encode("utf-8")


class UidlistFormatError(ValueError):
    pass


def parseHeader(line: bytes) -> UidlistHeader:
    text = line.decode("utf-8", "surrogateescape")
    if len(text) < 2 or not text[0].isdigit() or text[1] != " ":
        raise UidlistFormatError("invalid version number")
    version = int(text[0])
    header = UidlistHeader(version=version)
    if version == 1:
        fields = text[2:].split()
        if len(fields) < 2:
            raise UidlistFormatError("corrupted version 1 header")
        header.uidValidity, header.nextUid = int(fields[0]), int(fields[1])
    elif version == 3:
        extra = []
        for part in text[2:].split():
            key, value = part[0], part[1:]
            if key == "V":
                header.uidValidity = int(value)
            elif key == "N":
                header.nextUid = int(value)
            elif key == "G":
                header.guid = value
            else:
                extra.append(part)
        header.extra = " ".join(extra)
    else:
        raise UidlistFormatError(f"unsupported version {version}")
    if header.uidValidity == 0 or header.nextUid == 0:
        raise UidlistFormatError("broken header (uidvalidity or next uid is 0)")
    return header


def parseRecords(data: bytes, version: int, previousUid: int = 0):
    """
    Parse record lines C{<uid> [<key><value> ...] :<base>} (version 3) or
    C{<uid> <base>} (version 1).  Returns a list of C{(uid, ext, base)};
    C{ext} is the raw extension text (C{"G... W123"}), kept and written
    back unchanged.

    @raise UidlistFormatError: on a malformed line or UIDs out of order.
    """
    out = []
    append = out.append
    text = data.decode("utf-8", "surrogateescape")
    for line in text.split("\n"):
        if not line:
            continue
        uidText, sep, rest = line.partition(" ")
        if not sep or not uidText.isdigit():
            raise UidlistFormatError(f"invalid line {line[:80]!r}")
        uid = int(uidText)
        if uid <= previousUid:
            raise UidlistFormatError(f"UIDs not ordered ({uid} <= {previousUid})")
        previousUid = uid
        if version == 3:
            if rest[:1] == ":":
                ext, base = "", rest[1:]
            else:
                rest = rest.lstrip(" ")
                if rest[:1] == ":":
                    ext, base = "", rest[1:]
                else:
                    colon = rest.find(" :")
                    if colon < 0:
                        raise UidlistFormatError(f"no file name in {line[:80]!r}")
                    ext, base = rest[:colon], rest[colon + 2 :]
        else:
            ext, base = "", rest.lstrip(" ")
        if not base or "/" in base:
            raise UidlistFormatError(f"broken file name in {line[:80]!r}")
        append((uid, ext, base))
    return out


def formatRecord(uid: int, ext: str, base: str) -> bytes:
    text = f"{uid} {ext} :{base}\n" if ext else f"{uid} :{base}\n"
    return text.encode("utf-8", "surrogateescape")


def newGuid() -> str:
    """
    A mailbox GUID as Dovecot writes it in the uidlist header (32 hex).
    """
    return secrets.token_hex(16)


# ---------------------------------------------------------------------------
# dotlock


class DotLock:
    """
    Dovecot's dotlock (src/lib/file-dotlock.c), "excl" flavour: create
    C{<name>.lock} with C{O_EXCL} containing C{<pid>:<hostname>}.

    A lock is stale (and removed) when it names a dead pid on this host and
    is older than 2 s, or when neither it nor the protected file changed
    for C{staleTimeout} seconds.  Blocking: call it from a thread.

    @param clock: returns the current time (C{time.time}).
    @param sleep: sleeps (C{time.sleep}); injectable for tests.
    """

    def __init__(
        self,
        dirFd: int,
        name: str,
        owner: _fs.Owner,
        staleTimeout: float = LOCK_STALE_TIMEOUT,
        timeout: float | None = None,
        hostname: str | None = None,
        clock=time.time,
        sleep=time.sleep,
    ):
        self.dirFd = dirFd
        self.name = name
        self.lockName = name + ".lock"
        self.owner = owner
        self.staleTimeout = staleTimeout
        self.timeout = staleTimeout + 2 if timeout is None else timeout
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.sleep = sleep
        self._ino = None

    def _content(self) -> bytes:
        return f"{os.getpid()}:{self.hostname}".encode()

    def _tryCreate(self) -> bool:
        try:
            fd = _fs.createFile(self.lockName, self.dirFd, self.owner)
        except FileExistsError:
            return False
        try:
            _fs.writeAll(fd, self._content())
            self._ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        return True

    def _lockPid(self) -> int | None:
        try:
            fd = os.open(self.lockName, _fs.READ_FLAGS, dir_fd=self.dirFd)
        except OSError:
            return None
        try:
            data = os.read(fd, 512)
        finally:
            os.close(fd)
        pid, sep, host = data.decode("utf-8", "replace").strip().partition(":")
        if not sep or host != self.hostname:
            return None
        try:
            value = int(pid)
        except ValueError:
            return None
        return value if value > 0 else None

    def _stale(self, now: float) -> bool:
        try:
            st = os.stat(self.lockName, dir_fd=self.dirFd, follow_symlinks=False)
        except FileNotFoundError:
            return False  # gone: just retry the create
        lastChange = max(st.st_mtime, st.st_ctime)
        if st.st_mtime < now - STALE_PID_CHECK_SECS:
            pid = self._lockPid()
            if pid is not None and pid != os.getpid():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True  # its holder died
                except PermissionError:
                    pass  # alive, another user's process
                else:
                    return False
        try:
            protected = os.stat(self.name, dir_fd=self.dirFd, follow_symlinks=False)
            lastChange = max(lastChange, protected.st_mtime)
        except FileNotFoundError:
            pass
        return now > lastChange + self.staleTimeout

    def acquire(self) -> None:
        """
        @raise MailboxInUse: the lock stayed busy for C{timeout} seconds.
        """
        deadline = self.clock() + self.timeout
        wait = 0.01
        while True:
            if self._tryCreate():
                return
            now = self.clock()
            if self._stale(now):
                try:
                    os.unlink(self.lockName, dir_fd=self.dirFd)
                except FileNotFoundError:
                    pass
                continue
            if now >= deadline:
                raise MailboxInUse(f"{self.lockName} is held by another process")
            self.sleep(wait)
            wait = min(wait * 2, 0.2)

    def release(self) -> None:
        try:
            st = os.stat(self.lockName, dir_fd=self.dirFd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if st.st_ino == self._ino:  # never remove a lock someone else took over
            os.unlink(self.lockName, dir_fd=self.dirFd)

    def replaceWith(self, data: bytes) -> None:
        """
        Dovecot's C{file_dotlock_replace}: write C{data} as the lock file's
        content and rename it over the protected file (used for
        C{dovecot-keywords} and C{subscriptions}).
        """
        fd = os.open(self.lockName, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dirFd)
        try:
            _fs.writeAll(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self.lockName, self.name, src_dir_fd=self.dirFd, dst_dir_fd=self.dirFd)
        self._ino = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------------------
# dovecot-uidvalidity


def nextUidValidity(rootFd: int, owner: _fs.Owner, now: float | None = None) -> int:
    """
    Allocate the UIDVALIDITY of a new folder the way Dovecot does
    (mailbox-uidvalidity.c): the root's C{dovecot-uidvalidity} holds the
    last value in hex, a marker file C{dovecot-uidvalidity.<hex>} is renamed
    to the next value (atomic among processes), the first value is the time.
    """
    now = int(time.time() if now is None else now)
    current = None
    data = None
    try:
        data = _fs.readSmallFile(UIDVALIDITY, rootFd, owner, limit=64)
    except OSError:
        data = None
    if data:
        try:
            current = int(data.strip()[:8], 16)
        except ValueError:
            current = None
    if current is None:
        markers = []
        for name in _fs.listNames(rootFd):
            if name.startswith(UIDVALIDITY + "."):
                try:
                    markers.append(int(name[len(UIDVALIDITY) + 1 :], 16))
                except ValueError:
                    pass
        if markers:
            current = max(markers)
    if current is None:
        value = now
        try:
            os.close(_fs.createFile(f"{UIDVALIDITY}.{value:08x}", rootFd, owner, 0o444))
        except FileExistsError:
            pass
    else:
        value = current
        for _ in range(10):
            source = f"{UIDVALIDITY}.{value:08x}"
            value += 1
            try:
                os.rename(source, f"{UIDVALIDITY}.{value:08x}", src_dir_fd=rootFd, dst_dir_fd=rootFd)
                break
            except FileNotFoundError:
                continue  # raced with another process: try the next value
        else:
            value = max(now, value)
            try:
                os.close(_fs.createFile(f"{UIDVALIDITY}.{value:08x}", rootFd, owner, 0o444))
            except FileExistsError:
                pass
    _fs.replaceFile(UIDVALIDITY, rootFd, owner, f"{value:08x}".encode(), fsync=False)
    return value & 0xFFFFFFFF or 1


# ---------------------------------------------------------------------------
# subscriptions


V2_HEADER = b"V\t2\n\n"


def _tabEscape(text: str) -> str:
    # strescape.c str_append_tabescaped: \001 -> \0011, \t -> \001t, \n -> \001n, \r -> \001r
    return (
        text.replace("\x01", "\x011").replace("\t", "\x01t").replace("\n", "\x01n").replace("\r", "\x01r")
    )


def _tabUnescape(text: str) -> str:
    out = []
    i = 0
    table = {"1": "\x01", "t": "\t", "n": "\n", "r": "\r", "0": "\x00"}
    while i < len(text):
        c = text[i]
        if c == "\x01" and i + 1 < len(text):
            out.append(table.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parseSubscriptions(data: bytes | None, separator: str = "/") -> list[str]:
    """
    Names from a C{subscriptions} file: version 2 (C{V\\t2} header, levels
    separated by tabs) or the older one-name-per-line form.
    """
    if not data:
        return []
    if data.startswith(V2_HEADER):
        names = []
        for line in data[len(V2_HEADER) :].decode("utf-8", "replace").split("\n"):
            if line:
                names.append(separator.join(_tabUnescape(p) for p in line.split("\t")))
        return names
    return [
        line.replace(".", separator)
        for line in data.decode("utf-8", "replace").split("\n")
        if line
    ]


def formatSubscriptions(names, separator: str = "/") -> bytes:
    """
    Version 2, as Dovecot 2.3 writes a new file.
    """
    lines = ["\t".join(_tabEscape(p) for p in name.split(separator)) for name in names]
    return V2_HEADER + "".join(line + "\n" for line in lines).encode("utf-8")


# ---------------------------------------------------------------------------
# Folder names: Maildir++ directory names in modified UTF-7 (RFC 3501 5.1.3)


# The rules live in a leaf module the configuration shares; the store
# raises its own error class.
_mutf7Encode = foldernames.mutf7Encode
_mutf7Decode = foldernames.mutf7Decode
folderNameFromDir = foldernames.folderNameFromDir


def folderDirName(name: str, separator: str = "/") -> str:
    """
    The Maildir++ directory of a folder: C{"Archive/2024"} -> C{".Archive.2024"}.

    @raise InvalidMailboxName: for names Maildir++ cannot hold.
    """
    try:
        return foldernames.folderDirName(name, separator)
    except foldernames.FolderNameError as e:
        raise InvalidMailboxName(str(e)) from None


@dataclass
class UidlistState:
    """
    What a folder remembers about its C{dovecot-uidlist} file so the next
    refresh reads only appended lines (Dovecot's C{last_read_offset}).
    """

    ino: int = 0
    size: int = 0
    mtimeNs: int = 0
    offset: int = 0
    lastUid: int = 0
    lines: int = 0
    header: UidlistHeader = field(default_factory=UidlistHeader)
