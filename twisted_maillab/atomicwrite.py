"""
Replacing a small file so that a crash leaves either the old contents or
the new, never a mix or nothing: write a temporary file beside it, fsync
it, rename it over the old name (rename(2) is atomic within a directory),
then fsync the directory so the rename itself is on disk.

One implementation for every such file of the suite: the queue's state
files, the passwd-file, the demo passwords and the store's small Maildir
files (C{dovecot-uidvalidity}, C{maildirsize}).  Thread side: it blocks on
fsync, so callers run it in a thread pool.
"""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["replaceFile", "syncDirectory", "writeAll"]

# Exclusive and never through a symlink: a planted link at the temporary
# name cannot redirect the write.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def writeAll(fd: int, data) -> None:
    """
    C{os.write} until everything is written (it may write less).
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def syncDirectory(path=None, *, dirFd: int | None = None) -> None:
    """
    fsync a directory (by path, or an open C{dirFd}), making the names
    created, renamed or removed in it durable.
    """
    if dirFd is not None:
        os.fsync(dirFd)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replaceFile(
    name,
    data: bytes,
    *,
    dirFd: int | None = None,
    mode: int = 0o600,
    owner: Callable[[int], None] | None = None,
    fsync: bool = True,
    syncDir: bool = True,
) -> None:
    """
    Atomically replace the file C{name} with C{data}.

    @param name: a path, or a name in the directory C{dirFd}.
    @param mode: the file's mode, set exactly (whatever the umask).
    @param owner: called with the new file's fd before it is written, to
        give it its owner (C{fchown}).
    @param fsync: fsync the data before the rename.  Without it only the
        atomicity holds (a crash may leave an empty file).
    @param syncDir: fsync the directory after the rename.
    """
    name = os.fspath(name)
    directory, base = ("", name) if dirFd is not None else os.path.split(name)
    temporary = os.path.join(directory, f"{base}.tmp.{os.getpid()}")
    try:
        # left behind by a writer that crashed
        os.unlink(temporary, dir_fd=dirFd)
    except FileNotFoundError:
        pass
    fd = os.open(temporary, _CREATE, mode, dir_fd=dirFd)
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                owner(fd)
            writeAll(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=dirFd, dst_dir_fd=dirFd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=dirFd)
        except FileNotFoundError:
            pass
        raise
    if syncDir:
        syncDirectory(directory or ".", dirFd=dirFd)
