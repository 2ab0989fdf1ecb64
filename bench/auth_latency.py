"""
bench/auth_latency.py: what concurrent yescrypt logins do to the reactor.

Runs the same burst of logins (real yescrypt passwd-file entries, the
check pool of [auth] check_threads threads) twice in one command: with the
libcrypt backend maillab uses (ctypes, GIL released during the hash) and
with the crypt-module backend (the stdlib `crypt` / `crypt-r` path, which
holds the GIL for the whole hash).  Meanwhile a 5 ms LoopingCall measures
how late the reactor runs its timers: that lateness is what every other
connection (SMTP data, IMAP IDLE) suffers during a login storm.

    .venv/bin/python bench/auth_latency.py [logins] [threads]
"""

import sys
import tempfile
import time
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer, task
from zope.interface import Interface

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.hashing import cryptBackend, makeHash
from twisted_maillab.config import loadString


class IBench(Interface):
    pass


def config(directory: Path, threads: int):
    return loadString(
        "[server]\ndomain = bench.example\n"
        f"state_directory = {directory}\n"
        f"[auth]\nchecks = passwd-file\npasswd_file = users\ncheck_threads = {threads}\n"
        "check_queue = 100000\nlockout_failures = 1000000\nuser_free_failures = 1000000\n".replace(
            "checks", "checkers"
        ),
        directory / "maillab.ini",
    )


@defer.inlineCallbacks
def run(reactor, backendName, directory, logins, threads):
    portal = makePortal(config(directory, threads), reactor, backend=cryptBackend(backendName))
    portal.realm.registerAvatarFactory(IBench, lambda account: account)
    lags = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lags.append(now - last[0] - 0.005)
        last[0] = now

    loop = task.LoopingCall(tick)
    loop.clock = reactor
    loop.start(0.005)
    start = time.perf_counter()
    yield defer.gatherResults(
        [
            portal.loginFrom(
                UsernamePassword(f"u{i % 8}", "bench-password"), f"127.0.0.{i % 200 + 1}",
                "bench", None, IBench,
            )
            for i in range(logins)
        ]
    )
    elapsed = time.perf_counter() - start
    loop.stop()
    portal.pool.stop()
    lags.sort()
    return {
        "rate": logins / elapsed,
        "p50": lags[len(lags) // 2] * 1000,
        "p99": lags[int(len(lags) * 0.99)] * 1000,
        "max": lags[-1] * 1000,
    }


@defer.inlineCallbacks
def main(reactor, logins="64", threads="2"):
    logins, threads = int(logins), int(threads)
    directory = Path(tempfile.mkdtemp(prefix="maillab-bench-"))
    backend = cryptBackend("libcrypt")
    (directory / "users").write_text(
        "".join(f"u{i}:" + makeHash(backend, "bench-password", "CRYPT") + "\n" for i in range(8))
    )
    module = "crypt_r" if sys.version_info >= (3, 13) else "crypt"
    results = {}
    for name in ("libcrypt", module):
        results[name] = yield run(reactor, name, directory, logins, threads)
    print(f"{logins} yescrypt logins, {threads} check threads, 5 ms reactor timer")
    for name, r in results.items():
        print(
            f"  {name:9s} {r['rate']:7.1f} logins/s   timer lateness p50 {r['p50']:6.2f} ms"
            f"  p99 {r['p99']:6.2f} ms  max {r['max']:6.2f} ms"
        )
    ours, peer = results["libcrypt"], results[module]
    print(
        f"  ratio libcrypt/{module}: rate x{ours['rate'] / peer['rate']:.2f}, "
        f"p99 lateness x{ours['p99'] / max(peer['p99'], 1e-6):.2f}"
    )


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
