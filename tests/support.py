"""
Helpers shared by the end-to-end tests: free ports, real tools that must
be installed (a missing one fails the test, never skips it), reading a
server subprocess's output, stopping it, and synchronous Deferred results.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time


# Every port freePort handed out in this process: the kernel may give the
# same ephemeral port to two binds in a row once the first is closed, and
# a test that picks several ports before starting its server (one per
# listener of a config) would then get two listeners on one port.
_handedOut: set[int] = set()


def freePort() -> int:
    """
    A port free for both TCP and UDP on 127.0.0.1 (DNS listens on both),
    never one this process was given before.
    """
    for _ in range(200):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if port in _handedOut:
                continue
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
        _handedOut.add(port)
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def requireTool(program: str, package: str) -> str:
    """
    The path of C{program} (also looked for in /usr/sbin, which is not on
    every PATH); the test FAILS naming the Debian package when it is missing.
    """
    path = shutil.which(program)
    if path is None and os.path.exists(f"/usr/sbin/{program}"):
        path = f"/usr/sbin/{program}"
    if path is None:
        raise AssertionError(f"{program} is not installed: apt-get install -y {package}")
    return path


def readUntil(process, patterns, timeout=60.0) -> str:
    """
    Read a subprocess's standard output until every regex in C{patterns}
    has matched.

    @return: everything read.
    @raise AssertionError: the process ended or the time ran out first.
    """
    output = ""
    deadline = time.monotonic() + timeout
    pending = list(patterns)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536).decode("utf-8", "replace")
            if not chunk:
                break
            output += chunk
            pending = [p for p in pending if not re.search(p, output)]
    if pending:
        raise AssertionError(f"never saw {pending!r} in:\n{output}")
    return output


def stopProcess(process, timeout: float = 30.0) -> None:
    """
    Stop a server subprocess as its init system would: SIGTERM, then
    SIGKILL if it is still there after C{timeout} seconds.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def syncResult(d):
    """
    The result of a Deferred that has already fired; a failure is raised.
    """
    results = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError("the Deferred did not fire synchronously")
    value = results[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def sha512crypt(password: str) -> str:
    """
    A C{{SHA512-CRYPT}} hash for a passwd-file account (openssl passwd -6).
    """
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def deliverOutOfProcess(account, messages, hostname: str = "mail.domaineel.rt") -> list[str]:
    """
    Deliver C{messages} into C{account}'s INBOX through a store of this
    (test) process, as another program would while a server runs: the
    store's transaction (tmp/ -> fsync -> new/), synchronously.

    @return: the file names delivered.
    """
    from twisted.internet import defer, reactor

    from twisted_maillab.store import Store

    store = Store(
        reactor,
        runner=lambda f, *a, **kw: defer.execute(f, *a, **kw),
        rescanInterval=0,
        inotify=False,
        hostname=hostname,
    )
    names = []
    try:
        for message in messages:
            txn = store.beginDelivery()
            txn.addRecipient(account)
            for start in range(0, len(message), 1 << 20):
                syncResult(txn.write(message[start : start + (1 << 20)]))
            (result,) = syncResult(txn.commit())
            assert result.ok, result.error
            names.append(result.filename)
    finally:
        store.close()
    return names
