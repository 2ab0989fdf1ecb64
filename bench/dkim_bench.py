"""
bench/dkim_bench.py: the cost of DKIM signing to the reactor.

Signs the same burst of 10 KB messages (rsa-sha256 and ed25519-sha256, the
two signatures maillab adds) in a thread pool twice in one command: with
maillab's signer (twisted_maillab.mailauth.signing: RSA through OpenSSL)
and with stock dkimpy (its RSA in Python's pow(), which holds the GIL).
Meanwhile a 5 ms LoopingCall measures how late the reactor runs its
timers, the delay every connection suffers while outbound mail is signed.
Each run's signatures are checked by dkimpy's verifier.

    .venv/bin/python bench/dkim_bench.py [messages] [threads]
"""

import sys
import tempfile
import time
from pathlib import Path

import dkim
import dkim.crypto
from twisted.internet import defer, task, threads

from twisted_maillab.mailauth import signing
from twisted_maillab.mailauth.keys import KeyStore

MESSAGE = (
    b"From: Alice <alice@bench.example>\nTo: bob@example.org\nSubject: bench\n"
    b"Date: Wed, 02 Dec 2026 23:00:00 +0000\nMessage-ID: <1@bench.example>\n\n"
    + b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\n" * 130
)


@defer.inlineCallbacks
def run(reactor, name, signer, keys, count, pool):
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
    semaphore = defer.DeferredSemaphore(pool)
    results = yield defer.gatherResults(
        [semaphore.run(threads.deferToThread, signer, MESSAGE) for _ in range(count)]
    )
    elapsed = time.perf_counter() - start
    loop.stop()
    records = {k.selector.encode(): k.record().encode() for k in keys}
    sample = results[0] + MESSAGE
    for index in range(2):
        ok = dkim.DKIM(sample).verify(idx=index, dnsfunc=lambda name, timeout=5: records[name.split(b".")[0]])
        assert ok, f"{name}: signature {index} does not verify"
    lags.sort()
    print(
        f"{name:>14}: {count / elapsed:7.1f} messages/s, reactor lateness median "
        f"{lags[len(lags) // 2] * 1000:5.2f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:6.2f} ms, "
        f"max {lags[-1] * 1000:6.2f} ms"
    )
    return count / elapsed, lags[int(len(lags) * 0.99)]


@defer.inlineCallbacks
def main(reactor, count=200, pool=4):
    directory = Path(tempfile.mkdtemp())
    store = KeyStore(directory / "dkim")
    store.ensure("bench.example")
    keys = store.signingKeys("bench.example")
    reactor.getThreadPool().adjustPoolsize(pool, pool)
    ours = signing.Signer(store, ["bench.example"]).signatures

    def stock(message):
        # dkimpy as shipped: its own RSA (the function signing replaces).
        fields = []
        for key in keys:
            if key.keyType == "rsa":
                saved, dkim.RSASSA_PKCS1_v1_5_sign = dkim.RSASSA_PKCS1_v1_5_sign, dkim.crypto.RSASSA_PKCS1_v1_5_sign
                try:
                    fields.append(dkim.sign(message, key.selector.encode(), b"bench.example", key.private,
                                            signature_algorithm=key.algorithm, linesep=b"\n"))
                finally:
                    dkim.RSASSA_PKCS1_v1_5_sign = saved
            else:
                fields.append(dkim.sign(message, key.selector.encode(), b"bench.example", key.private,
                                        signature_algorithm=key.algorithm, linesep=b"\n"))
        return b"".join(fields)

    print(f"{count} messages of {len(MESSAGE)} octets, {pool} signing threads, rsa-sha256 + ed25519-sha256 each")
    rate, p99 = yield run(reactor, "maillab", ours, keys, count, pool)
    stockRate, stockP99 = yield run(reactor, "stock dkimpy", stock, keys, count, pool)
    print(f"ratio maillab/stock dkimpy: {rate / stockRate:.2f}x messages/s, "
          f"reactor p99 lateness {p99 * 1000:.2f} ms against {stockP99 * 1000:.2f} ms")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    task.react(lambda reactor: main(reactor, *args))
