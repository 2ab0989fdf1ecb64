"""
Bounds on what IMAP clients can make the server hold: connections per
user and per address (shared by every IMAP listener of the process), and
the output a client has not read yet.
"""

from __future__ import annotations

__all__ = ["ConnectionCounter", "OUTPUT_BACKLOG", "PUSH_BACKLOG", "outputBacklog"]

# Output not yet sent to a client beyond which IDLE pushes wait (the
# changes stay coalesced in the session's view): a client that IDLEs and
# never reads cannot make the server hold more than this.
PUSH_BACKLOG = 256 * 1024
# Unsent output beyond which no further command is run.
OUTPUT_BACKLOG = 1024 * 1024


class ConnectionCounter:
    """
    Connections per key (a client address, a user), shared by every IMAP
    listener of a process.
    """

    def __init__(self):
        self._counts: dict = {}

    def acquire(self, key, limit: int) -> bool:
        """
        Count one more for C{key} unless C{limit} (0: none) is reached.
        """
        count = self._counts.get(key, 0)
        if limit and count >= limit:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key) -> None:
        count = self._counts.get(key, 0) - 1
        if count <= 0:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count

    def __getitem__(self, key) -> int:
        return self._counts.get(key, 0)


def outputBacklog(transport) -> int:
    """
    Octets written to C{transport} and not yet sent: Twisted's TCP
    transport keeps them in C{dataBuffer} (from C{offset}) and
    C{_tempDataBuffer}; a TLS transport writes to the TCP one under it.
    """
    total = 0
    for _ in range(3):
        if transport is None:
            break
        data = getattr(transport, "dataBuffer", None)
        if isinstance(data, (bytes, bytearray)):
            total += len(data) - getattr(transport, "offset", 0)
        total += getattr(transport, "_tempDataLen", 0) or 0
        transport = getattr(transport, "transport", None)
    return total
