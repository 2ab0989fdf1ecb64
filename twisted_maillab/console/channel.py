"""
The console's side of the daemon's local channels, without Twisted (a
console command starts in a fraction of the time): where the sockets are,
the queue lock, the control client, and the kernel's peer credentials.

The daemon's side is L{twisted_maillab.smtp.queuecontrol} (the control
socket) and L{twisted_maillab.smtp.localsubmit} (local submission).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import struct
import time
from pathlib import Path

__all__ = [
    "ControlError",
    "DaemonNotRunning",
    "QUEUE_ID",
    "ask",
    "controlSocket",
    "lockQueue",
    "peerCredentials",
    "submissionSocket",
]

LOCK_NAME = "queue.lock"
SOCKET_NAME = "control.sock"

# Queue ids are QueueIds' hex (bounces: "B" + hex); anything else is not a
# spool file name (no path separators, no dots).
QUEUE_ID = re.compile(r"B?[0-9A-F]{1,32}")


def submissionSocket(config) -> Path:
    """
    Where the local submission socket is.
    """
    return config.server.local_submission_socket or config.server.state_directory / "submit.sock"


def controlSocket(config) -> Path:
    """
    Where the control socket is.
    """
    return config.server.state_directory / SOCKET_NAME


def peerCredentials(sock) -> tuple[int, int, int] | None:
    """
    C{(pid, uid, gid)} of the process at the other end of a UNIX socket
    (Linux C{SO_PEERCRED}), or L{None} where the kernel does not say.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", data)


def lockQueue(directory: Path, wait: float = 0.0) -> int | None:
    """
    Take the queue lock (C{flock} on C{<directory>/queue.lock}).

    @param wait: seconds to keep trying while another process holds it.
    @return: the open descriptor (closing it releases the lock), or
        L{None} if another process holds it.
    """
    fd = os.open(
        Path(directory) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            return None
        # Only while a console command edits the spool (milliseconds).
        time.sleep(0.05)


class DaemonNotRunning(Exception):
    """
    Nothing listens on the control socket.
    """


class ControlError(Exception):
    """
    The daemon refused a request; the argument is its one-line reason.
    """


def ask(socketPath: Path, request: dict, timeout: float = 60.0):
    """
    Send one request to the daemon's control socket and wait for its
    answer (the console side; plain blocking sockets).

    @return: the result.
    @raise DaemonNotRunning: nothing listens there.
    @raise ControlError: the daemon refused the request.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(socketPath))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise DaemonNotRunning(str(e)) from None
        client.sendall(json.dumps(request).encode() + b"\r\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                raise ControlError("the daemon closed the control connection")
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "refused"))
    return answer["result"]
