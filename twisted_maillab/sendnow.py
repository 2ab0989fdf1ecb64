"""
Send a short reply at once instead of waiting for the next reactor turn.

Twisted's C{FileDescriptor.write} always queues: it appends to a buffer,
registers the socket for write readiness (an C{epoll_ctl}), and a later
reactor iteration sends the data and unregisters it (another
C{epoll_ctl}).  For a request/response protocol that answers each command
with one short line, that is two system calls and a full reactor
iteration per reply around the one C{send} that matters: profiling the
SMTP bench (smtp-source, one message per session, seven replies each)
put a third of the reactor thread's time there.

L{writeNow} sends directly when the transport is a plain TCP connection
with nothing queued, and hands anything it could not send (or any other
transport: TLS, a wrapper, a test's C{StringTransport}) to the ordinary
C{transport.write}, so ordering, buffering, producers and error handling
stay Twisted's.  It relies on C{twisted.internet.tcp.Connection}'s
buffer attributes; that dependency lives here only.
"""

from __future__ import annotations

import socket

from twisted.internet import tcp

__all__ = ["writeNow", "noDelay", "quickAck"]


def _idle(transport) -> bool:
    # Nothing queued and nothing that makes the transport special: a TLS
    # transport must encrypt, a closing one must not send after its FIN.
    return (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
    )


def writeNow(transport, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it immediately when possible.
    """
    if data and _idle(transport):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # EAGAIN, or an error the normal write path will report
            # through connectionLost.
            sent = 0
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)


def noDelay(transport) -> None:
    """
    Turn on C{TCP_NODELAY} where the transport has it: replies are
    complete writes, and without it a reply written in two parts waits for
    the client's delayed ACK (40 ms per reply).
    """
    setNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setNoDelay is not None:
        try:
            setNoDelay(True)
        except Exception:
            pass


def quickAck(transport) -> None:
    """
    Acknowledge what the connection received at once (Linux
    C{TCP_QUICKACK}), when the peer's next bytes are needed before we can
    answer.  A client that writes a literal and then its closing CRLF in
    two C{send}s (Python's imaplib does, for APPEND) has the CRLF held back
    by Nagle's algorithm (RFC 896) until the literal is acknowledged, and
    the kernel delays that acknowledgement (RFC 1122 4.2.3.2) by up to
    40 ms hoping to carry it on a reply that cannot come before the CRLF.
    Elsewhere (no such option, not a TCP socket) it does nothing.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    if not isinstance(transport, tcp.Connection):
        # TLS (twisted.protocols.tls.TLSMemoryBIOProtocol) over TCP
        transport = getattr(transport, "transport", None)
    sock = transport.socket if isinstance(transport, tcp.Connection) else None
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        pass
