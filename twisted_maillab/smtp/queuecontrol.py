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
queue at once.  The console's side (the client, the lock, the socket
paths) is L{twisted_maillab.console.channel}, which imports no Twisted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from twisted_maillab.console.channel import lockQueue, peerCredentials

__all__ = ["COMMANDS", "ControlProtocol", "ControlService", "runCommand"]

log = Logger(namespace="twisted_maillab.smtp")

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
