"""
bench/imap_structure.py: how long parsing a message's MIME structure takes
(the work behind a first FETCH BODYSTRUCTURE), and streaming its biggest
part (BODY[2]) and decoding it (BINARY[2]).

Two messages: a 100 KB multipart (text, HTML, a base64 attachment, a
forwarded message) and a 30 MB one (a base64 attachment), both with LF
line ends as Maildir stores them.  Prints the best of a few runs, and
beside the parse the time Debian's Dovecot (dovecot-imapd) takes for its
first FETCH BODYSTRUCTURE of the same file (it parses then; a fresh
Maildir each run, so nothing is cached).

    .venv/bin/python bench/imap_structure.py [runs]
"""

import base64
import os
import sys
import tempfile
import time
from pathlib import Path

# The Dovecot session helper lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.imap_dovecot import DovecotIMAP  # noqa: E402

from twisted_maillab.imap.structure import parse, sectionChunks  # noqa: E402


def multipart(attachment: int) -> bytes:
    blob = base64.encodebytes(os.urandom(attachment))
    text = b"Hello,\n\nsome text that goes on for a while.\n" * 40
    return (
        b"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: bench\n"
        b"Date: Wed, 2 Dec 2026 09:15:00 +0000\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\n'
        b"Content-Type: multipart/alternative; boundary=inner\n\n--inner\n"
        b"Content-Type: text/plain; charset=utf-8\n\n" + text + b"--inner\nContent-Type: text/html\n\n<p>"
        + text + b"</p>\n--inner--\n--outer\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + blob + b"--outer\nContent-Type: message/rfc822\n\n"
        b"From: c@example.org\nSubject: inner\n\n" + text + b"--outer--\n"
    )


def best(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


class _Cleanups:
    def __init__(self):
        self.calls = []

    def addCleanup(self, function, *args):
        self.calls.append((function, args))

    def run(self):
        for function, args in reversed(self.calls):
            function(*args)


def dovecotFirstFetch(data: bytes) -> float:
    cleanups = _Cleanups()
    try:
        dovecot = DovecotIMAP(cleanups, [data])
        start = time.perf_counter()
        dovecot.raw(b"FETCH 1 (BODYSTRUCTURE)")
        return time.perf_counter() - start
    finally:
        cleanups.run()


def main(runs=5):
    for label, data in (("100 KB multipart", multipart(64 * 1024)), ("30 MB message", multipart(22 * 1024 * 1024))):
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            f.seek(0)
            parseTime = best(lambda: parse(f), runs)
            message = parse(f)
            streamTime = best(lambda: sum(map(len, sectionChunks(f, message, "2"))), runs)
            binaryTime = best(lambda: sum(map(len, message.binary("2").chunks(f))), runs)
            dovecotTime = min(dovecotFirstFetch(data) for _ in range(runs))
            print(
                f"{label} ({len(data) / 1e6:.2f} MB on disk, {message.size / 1e6:.2f} MB as IMAP counts): "
                f"parse {parseTime * 1000:.1f} ms (Dovecot's first FETCH BODYSTRUCTURE {dovecotTime * 1000:.1f} ms), "
                f"BODY[2] stream {streamTime * 1000:.1f} ms, "
                f"BINARY[2] decode {binaryTime * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
