"""
The daemon's control channel for C{maillab queue}: a UNIX socket
(C{<state_directory>/control.sock}, mode 0600) that takes one JSON request
per line and answers one JSON line, so a hold, release, flush or delete
reaches the running queue at once, without a restart.

Requests are C{{"command": NAME, "id": ID}} (C{id} where the command takes
one; C{flush} takes an optional C{target}); answers are C{{"ok": true,
"result": ...}} or C{{"ok": false, "error": TEXT}}.  Only root and the
daemon's own user may talk to it: the kernel's peer credentials
(C{SO_PEERCRED}, socket(7)) are checked besides the file mode.

The daemon also holds C{queue.lock} in the queue directory (C{flock}) for
as long as it runs: a console command that finds no daemon takes that lock
before it edits the spool files itself, so the two never work on the
queue at once.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import time
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

__all__ = [
    "COMMANDS",
    "ControlError",
    "ControlProtocol",
    "ControlService",
    "DaemonNotRunning",
    "ask",
    "lockQueue",
    "peerCredentials",
]

log = Logger(namespace="twisted_maillab.smtp")

LOCK_NAME = "queue.lock"
SOCKET_NAME = "control.sock"

# command -> (OutboundQueue method, takes an id)
COMMANDS = {
    "list": ("listQueue", False),
    "hold": ("hold", True),
    "release": ("release", True),
    "requeue": ("requeue", True),
    "delete": ("delete", True),
    "delete-deferred": ("deleteDeferred", False),
    "flush": ("flush", False),
}


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


async def runCommand(queue, request: dict):
    """
    Run one control request against an L{OutboundQueue}.

    @return: the result (JSON-serialisable).
    @raise KeyError: the message named does not exist.
    @raise ValueError: a malformed request.
    """
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    name = request.get("command")
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}")
    method, takesId = COMMANDS[name]
    call = getattr(queue, method)
    if takesId:
        queueId = request.get("id")
        if not isinstance(queueId, str):
            raise ValueError(f"{name} needs an id")
        return await call(queueId)
    if name == "flush":
        target = request.get("target")
        if target is not None and not isinstance(target, str):
            raise ValueError("flush target must be a string")
        return await call(target)
    return await call()


class ControlProtocol(LineOnlyReceiver):
    """
    One console connection: JSON request lines in, JSON answer lines out,
    in order.
    """

    MAX_LENGTH = 4096

    def connectionMade(self):
        credentials = peerCredentials(self.transport.getHandle())
        allowed = (0, os.geteuid())
        if credentials is None or credentials[1] not in allowed:
            log.warn(
                "control socket: refused a client with credentials {credentials}",
                credentials=credentials,
            )
            self.transport.loseConnection()
            return
        self._chain = defer.succeed(None)

    def lineReceived(self, line: bytes):
        self._chain.addCallback(lambda _: defer.ensureDeferred(self._answer(line)))

    async def _answer(self, line: bytes):
        try:
            request = json.loads(line)
            result = await runCommand(self.factory.queue, request)
            answer = {"ok": True, "result": result}
        except KeyError as e:
            answer = {"ok": False, "error": f"{e.args[0]}: no such message in the queue"}
        except ValueError as e:
            answer = {"ok": False, "error": str(e)}
        except Exception as e:
            log.failure("control request {line!r} failed", line=line[:200])
            answer = {"ok": False, "error": f"internal error: {e}"}
        self.sendLine(json.dumps(answer).encode())

    def lineLengthExceeded(self, line):
        self.sendLine(json.dumps({"ok": False, "error": "request too long"}).encode())
        self.transport.loseConnection()


class ControlService(Service):
    """
    Holds the queue lock and listens on the control socket for as long as
    the daemon runs.  Both happen in C{startService}, after twistd has
    dropped privileges, so the socket belongs to the daemon's user.
    """

    def __init__(self, reactor, queue, socketPath: Path):
        self.reactor = reactor
        self.queue = queue
        self.socketPath = Path(socketPath)
        self._lock = None
        self._port = None

    def startService(self):
        super().startService()
        self.queue.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = lockQueue(self.queue.directory, wait=5.0)
        if self._lock is None:
            raise RuntimeError(
                f"{self.queue.directory} is in use by another process (another maillab?)"
            )
        factory = Factory.forProtocol(ControlProtocol)
        factory.queue = self.queue
        endpoint = UNIXServerEndpoint(self.reactor, str(self.socketPath), mode=0o600, wantPID=True)
        d = endpoint.listen(factory)
        failures = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port):
        self._port = port
        log.info("control listening on {path}", path=str(self.socketPath))

    def stopService(self):
        super().stopService()
        port, self._port = self._port, None
        lock, self._lock = self._lock, None
        d = defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)

        def unlock(_):
            if lock is not None:
                os.close(lock)

        d.addBoth(unlock)
        return d


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
