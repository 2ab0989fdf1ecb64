"""
A loaded zone saved in the state directory, read back instead of the
master file while the file has not changed (as NSD's former C{nsd.db}):
the start of a server with a zone of a million names goes from the
parse's seconds to the fraction of a second this file takes to read.

The saved form is keyed by every file the zone was read from (the main
file and its C{$INCLUDE}s): path, size, modification time in nanoseconds,
inode and SHA-256 of the contents, as they were when read.  Every use
compares all five with the files as they are now (the digest by reading
them again), so an edit, even one that keeps size and time, or a file
replaced by another, makes the zone parsed and saved again: stale data is
never served.  Only zones that loaded without error are saved; their
warnings are saved with them and logged again at each load.

The file holds C{marshal} data (the compact names, in chunks small enough
that reading one does not hold the interpreter for long during a reload)
and a C{pickle} of the few L{Node} objects, read with an unpickler that
accepts only the zone model's classes.  The chunks come first, each
written as soon as it is made (the whole zone is never held twice in
memory), then the header that lists them, then the header's length.  It
is maillab's own file in its own state directory (mode 0600); a file that
does not read back (another version, truncated) is ignored and replaced.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import pickle
import threading
from pathlib import Path

from twisted_maillab.atomicwrite import writeAll
from twisted_maillab.dns import names as N
from twisted_maillab.dns.zone import Zone

__all__ = ["load", "save", "cachePath"]

MAGIC = b"maillab zone 2\n"
# Names per marshal chunk: reading one takes a few milliseconds.
CHUNK = 10_000

_ALLOWED = {
    ("twisted_maillab.dns.names", "Node"),
    ("twisted_maillab.dns.names", "RRset"),
    ("twisted_maillab.dns.names", "Rdata"),
    ("twisted_maillab.dns.names", "NameRef"),
    ("twisted_maillab.dns.zone", "Problem"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a zone")
        return super().find_class(module, name)


def cachePath(directory, origin, path) -> Path:
    """
    Where the zone C{origin} read from C{path} is saved.
    """
    name = hashlib.sha256(f"{N.toText(origin)}\0{os.path.abspath(path)}".encode("utf-8", "surrogateescape")).hexdigest()
    return Path(directory) / f"{name[:32]}.zone"


def _fresh(sources) -> bool:
    """
    Whether every file is as it was when the zone was read.
    """
    for path, size, mtime, inode, digest in sources:
        try:
            stat = os.stat(path)
            if (stat.st_size, stat.st_mtime_ns, stat.st_ino) != (size, mtime, inode):
                return False
            with open(path, "rb") as f:
                # hashlib releases the interpreter while it hashes.
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    return False
        except OSError:
            return False
    return True


def save(directory, zone: Zone) -> Path:
    """
    Save C{zone} (loaded by L{twisted_maillab.dns.zone.loadZone}, without
    error) in C{directory}.  Blocking: call it in a thread.

    @raise OSError: when it cannot be written.
    """
    target = cachePath(directory, zone.origin, zone.path)
    # Named by process and thread: the save after a start (once the
    # listeners are up) and a reload's may run at once in two pool
    # threads.  The later replace wins; if that is the older zone, its
    # sources no longer match the files and it is never read.
    temporary = f"{target}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        # Written piece by piece (os.write lets other threads run).
        writeAll(fd, MAGIC)
        entries = zone.nodes.entries
        nodes = []
        nodeKeys = []
        lengths = []

        def flush(chunk: dict) -> None:
            data = marshal.dumps(chunk)
            writeAll(fd, data)
            lengths.append(len(data))

        chunk: dict = {}
        for key, value in entries.items():
            if value.__class__ is not bytes:
                nodeKeys.append(key)
                nodes.append(value)
                value = 0
            chunk[key] = value
            if len(chunk) >= CHUNK:
                flush(chunk)
                chunk = {}
        if chunk:
            flush(chunk)
        chunk = None
        model = pickle.dumps((zone.origin, zone.path, zone.paths, nodeKeys, nodes, zone.cuts, zone.dnames, zone.warnings), 5)
        header = marshal.dumps((list(zone.sources), model, lengths))
        writeAll(fd, header + len(header).to_bytes(8, "big"))
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, target)
    return target


def load(directory, path, origin) -> Zone | None:
    """
    The zone saved for C{origin} and C{path} in C{directory}, or L{None}
    when there is none, it does not read back, or any of its files
    changed.  Blocking: call it in a thread.
    """
    target = cachePath(directory, origin, path)
    try:
        with open(target, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(MAGIC):
        return None
    view = memoryview(data)
    try:
        headerEnd = len(data) - 8
        headerStart = headerEnd - int.from_bytes(view[headerEnd:], "big")
        if headerStart < len(MAGIC):
            return None
        sources, model, lengths = marshal.loads(view[headerStart:headerEnd])
        chunks = []
        end = len(MAGIC)
        for length in lengths:
            chunks.append(view[end : end + length])
            end += length
        if end != headerStart:
            return None
        if not sources or sources[0][0] != str(Path(path)) or not _fresh(sources):
            return None
        savedOrigin, savedPath, paths, nodeKeys, nodes, cuts, dnames, warnings = _ModelUnpickler(io.BytesIO(model)).load()
    except (ValueError, EOFError, TypeError, pickle.UnpicklingError, AttributeError):
        return None
    if N.key(savedOrigin) != N.key(origin) or savedPath != str(path):
        return None
    zone = Zone(origin, str(path))
    zone.paths[:] = paths
    entries = zone.nodes.entries
    while chunks:
        entries.update(marshal.loads(chunks.pop(0)))
    for key, node in zip(nodeKeys, nodes):
        entries[key] = node
    zone.cuts = cuts
    zone.dnames = dnames
    zone.warnings = warnings
    zone.sources = [tuple(source) for source in sources]
    return zone
