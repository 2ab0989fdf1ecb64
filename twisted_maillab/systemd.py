"""
systemd readiness notification (sd_notify(3)); Twisted has none.

The service unit uses C{Type=notify}: systemd considers maillab started
only once every listener is bound, so units ordered after it (and socket
clients) never see connection refused during start-up.
"""

from __future__ import annotations

import os
import socket

from twisted.application import service
from twisted.logger import Logger

log = Logger()


def notify(state: str, environ=os.environ) -> bool:
    """
    Send C{state} (e.g. C{"READY=1"}) to C{$NOTIFY_SOCKET}.

    @return: True if a notification socket was configured and written to.
    """
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(state.encode("utf-8"))
    return True


class NotifyService(service.Service):
    """
    Added last to the top service: its C{startService} runs after every
    listener has bound, so READY=1 means ready.
    """

    def __init__(self, reactor, environ=os.environ):
        self.reactor = reactor
        self.environ = environ

    def startService(self):
        super().startService()
        self.reactor.callWhenRunning(self._ready)

    def _ready(self):
        # The reactor is running (its signal handlers are installed): from
        # here on SIGTERM is a clean shutdown.
        log.info("maillab ready")
        notify("READY=1\nSTATUS=maillab serving", self.environ)

    def stopService(self):
        notify("STOPPING=1", self.environ)
        return super().stopService()
