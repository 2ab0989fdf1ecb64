"""
Symlink-safe file operations on a user's Maildir.

Everything below the Maildir root is reached through directory file
descriptors with C{O_NOFOLLOW}: a user who replaces C{cur/} by a symlink to
C{/etc}, or a message file by a symlink, a FIFO or a hard link to a file they
do not own, gets an L{UnsafePath} error instead of making the server read or
write outside the Maildir.  See the package docstring for the ownership
model (C{fchown} plus precautions, not C{setfsuid}).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass

from twisted_maillab import atomicwrite
from twisted_maillab.atomicwrite import writeAll  # noqa: F401  (the store's modules use it from here)
from twisted_maillab.store.errors import UnsafePath, fromOSError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading must not hang the thread; the
# S_ISREG check right after refuses it.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class Owner:
    """
    Who files in a Maildir must belong to.

    @ivar uid: the owner's uid, or L{None} to leave files as the server's
        user (virtual users, or when not running as root).
    @ivar gid: the owner's gid, or L{None}.
    """

    uid: int | None = None
    gid: int | None = None

    @property
    def enforced(self) -> bool:
        """
        Whether we chown new files and check the owner of files we read:
        only as root, and only for accounts with a uid.
        """
        return self.uid is not None and os.geteuid() == 0

    def chown(self, fd: int) -> None:
        if self.enforced:
            os.fchown(fd, self.uid, self.gid if self.gid is not None else -1)

    def check(self, st: os.stat_result, what: str) -> None:
        """
        Refuse a file that the account does not own (a hard link to
        C{/etc/shadow} planted in C{cur/} would otherwise be served as root).
        """
        if self.enforced and st.st_uid != self.uid:
            raise UnsafePath(f"{what} is owned by uid {st.st_uid}, not {self.uid}")


def openDir(name: str, dirFd: int | None = None) -> int:
    """
    Open a directory without following a symlink in its last component.

    @raise UnsafePath: if C{name} is a symlink or not a directory.
    @raise OSError: other errors (ENOENT...).
    """
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dirFd)
    except OSError as e:
        if e.errno in (40, 20):  # ELOOP, ENOTDIR
            raise UnsafePath(f"{name} is a symlink or not a directory") from None
        raise


def makeDir(name: str, dirFd: int | None, owner: Owner, exist_ok: bool = True) -> int:
    """
    Create (or open) a 0700 directory owned by C{owner}; returns its fd.
    """
    if exist_ok:
        # Every delivery "creates" INBOX's cur/ new/ tmp/: open first, so
        # the usual case costs one open instead of a failing mkdir and an
        # open (strace: three EEXIST mkdirat per delivered message).
        try:
            return openDir(name, dirFd)
        except FileNotFoundError:
            pass
    try:
        os.mkdir(name, DIR_MODE, dir_fd=dirFd)
        created = True
    except FileExistsError:
        if not exist_ok:
            raise
        created = False  # another process made it meanwhile
    fd = openDir(name, dirFd)
    if created:
        _claim(fd, DIR_MODE, owner)
    return fd


_UMASK_UNKNOWN = object()
_umaskCache = _UMASK_UNKNOWN


def _umask() -> int | None:
    """
    The process umask, read without changing it (Linux 4.7+ shows it in
    /proc/self/status), or L{None} if unknown.  Read once, at the first
    file creation: by then twistd has applied --umask.
    """
    global _umaskCache
    if _umaskCache is _UMASK_UNKNOWN:
        _umaskCache = None
        try:
            with open("/proc/self/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Umask:"):
                        _umaskCache = int(line.split()[1], 8)
                        break
        except (OSError, ValueError):
            pass
    return _umaskCache


def _claim(fd: int, mode: int, owner: Owner) -> None:
    """
    Give a file or directory we just created exactly C{mode} and
    C{owner}; close C{fd} if that fails.
    """
    try:
        umask = _umask()
        if umask is None or umask & mode:
            # the umask took bits away: set exactly the mode we promise
            os.fchmod(fd, mode)
        owner.chown(fd)
    except BaseException:
        os.close(fd)
        raise


def createFile(name: str, dirFd: int, owner: Owner, mode: int = FILE_MODE) -> int:
    """
    Create a new file exclusively (never through a symlink), mode 0600,
    owned by C{owner}.  Returns a write-only fd.
    """
    fd = os.open(name, CREATE_FLAGS, mode, dir_fd=dirFd)
    _claim(fd, mode, owner)
    return fd


def openRegular(name: str, dirFd: int, owner: Owner) -> int:
    """
    Open an existing regular file for reading, refusing symlinks, FIFOs,
    devices and files not owned by the account.

    @return: a blocking read-only fd.
    @raise UnsafePath: for anything but a regular file of the owner.
    @raise OSError: ENOENT when the file is gone.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dirFd)
    except OSError as e:
        if e.errno == 40:  # ELOOP: a symlink
            raise UnsafePath(f"{name} is a symlink") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{name} is not a regular file")
        owner.check(st, name)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def readSmallFile(name: str, dirFd: int, owner: Owner, limit: int = 64 * 1024 * 1024) -> bytes | None:
    """
    Read a whole metadata file (uidlist, keywords, subscriptions), or
    L{None} if it does not exist.
    """
    try:
        fd = openRegular(name, dirFd, owner)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(f"{name} is larger than {limit} bytes")
    return data


def replaceFile(name: str, dirFd: int, owner: Owner, data: bytes, fsync: bool = True) -> None:
    """
    Atomically replace C{name} in C{dirFd} with C{data}, mode 0600, owned by
    the account (see L{twisted_maillab.atomicwrite.replaceFile}).
    """
    atomicwrite.replaceFile(name, data, dirFd=dirFd, mode=FILE_MODE, owner=owner.chown, fsync=fsync, syncDir=False)


def _ownDescription(dirFd: int) -> int:
    # os.listdir(fd) and os.scandir(fd) read through a dup() of fd, and a
    # dup shares the directory's read position (one open file description,
    # getdents(2)) with the fd and every other dup.  Two threads listing
    # the same fd at once (a folder refresh under its lock, a FETCH looking
    # for a renamed file outside it) would each get part of the directory,
    # starting where the other stopped: messages would look expunged.
    # Opening "." relative to the fd gives a description of our own.
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirFd)


def listNames(dirFd: int) -> list[str]:
    """
    Thread: the names in the directory C{dirFd}, complete even while other
    threads list the same fd (see L{_ownDescription}).
    """
    fd = _ownDescription(dirFd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def scanDir(dirFd: int):
    """
    Thread: C{with scanDir(fd) as entries:} L{os.scandir} of the directory
    C{dirFd} through a description of its own (see L{listNames}); the
    entries' C{stat()} works inside the block.
    """
    fd = _ownDescription(dirFd)
    try:
        with os.scandir(fd) as entries:
            yield entries
    finally:
        os.close(fd)


def removeTree(name: str, dirFd: int) -> None:
    """
    Remove a directory tree without following symlinks (a symlink inside
    is unlinked, never descended into).
    """
    fd = openDir(name, dirFd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                removeTree(entry.name, fd)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirFd)


def openPath(path, create: bool, owner: Owner, createParent: bool = True) -> int:
    """
    Open a Maildir root: its parent is resolved by the kernel (it is chosen
    by the administrator: C{/home/edouard}, C{/var/mail/example.org}), the
    Maildir itself is opened with C{O_NOFOLLOW} and created 0700 if asked.
    A missing parent is created (0755, like C{mkdir -p}) only when
    C{createParent}: never a user's home directory.
    """
    path = os.fspath(path)
    parent, name = os.path.split(path.rstrip("/"))
    if create and createParent and parent and not os.path.isdir(parent):
        # e.g. /var/mail/example.org for maildir:/var/mail/%d/%n; the
        # administrator's layout, so it is created like mkdir -p would.
        try:
            os.makedirs(parent, 0o755, exist_ok=True)
        except OSError as e:
            raise fromOSError(e, parent) from None
    try:
        parentFd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise fromOSError(e, parent) from None
    try:
        if create:
            return makeDir(name, parentFd, owner)
        return openDir(name, parentFd)
    finally:
        os.close(parentFd)
