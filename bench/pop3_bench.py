"""
POP3 benchmark: maillab's POP3 next to Dovecot's pop3 on the same Maildir,
in one run, with the same client (poplib over 127.0.0.1).

    .venv/bin/python bench/pop3_bench.py [--messages 1000] [--size 4096] [--rounds 5]

Phases (each timed over several rounds, best round kept):
  - session: connect, USER/PASS, STAT, UIDL, RETR of every message, QUIT
    (nothing deleted) on a mailbox of N small messages;
  - big: RETR of one 20 MB message.
It also checks that both servers give the same UIDL list for the same
Maildir (maillab uses Dovecot's default pop3_uidl_format %08Xu%08Xv).

Needs the Debian packages dovecot-core and dovecot-pop3d.
"""

from __future__ import annotations

import argparse
import os
import poplib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.task import Clock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted_maillab.auth import makePortal  # noqa: E402
from twisted_maillab.auth.pool import runSynchronously  # noqa: E402
from twisted_maillab.config import load  # noqa: E402
from twisted_maillab.store import Store  # noqa: E402

PASSWORD = "bench pw"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(d):
    out = []
    d.addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def waitPort(port: int, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def deliver(config, user: str, messages):
    portal = makePortal(config, Clock(), runner=runSynchronously)
    account = _result(portal.directory.lookup(user))
    # the store never creates a home: the administrator does
    Path(account.home).mkdir(parents=True, exist_ok=True)
    if account.uid is not None:
        os.chown(account.home, account.uid, account.gid)
    # fsync off: this is set-up, not what is measured
    store = Store(
        reactor, runner=lambda f, *a, **k: defer.execute(f, *a, **k), rescanInterval=0, inotify=False, fsync=False
    )
    try:
        for message in messages:
            txn = store.beginDelivery()
            txn.addRecipient(account)
            for start in range(0, len(message), 1 << 20):
                _result(txn.write(message[start : start + (1 << 20)]))
            (result,) = _result(txn.commit())
            assert result.ok, result.error
    finally:
        store.close()
    return account


def session(port: int, user: str, retrieve: bool = True) -> tuple[float, list[bytes], int]:
    started = time.perf_counter()
    client = poplib.POP3("127.0.0.1", port, timeout=120)
    client.user(user)
    client.pass_(PASSWORD)
    count, _ = client.stat()
    uidl = client.uidl()[1]
    octets = 0
    if retrieve:
        for n in range(1, count + 1):
            octets += client.retr(n)[2]
    client.quit()
    return time.perf_counter() - started, uidl, octets


def measure(port: int, user: str, rounds: int):
    best = None
    uidl = None
    for _ in range(rounds):
        elapsed, uidl, octets = session(port, user)
        best = elapsed if best is None else min(best, elapsed)
    return best, uidl, octets


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dovecot = shutil.which("dovecot")
    if dovecot is None or not os.path.exists("/usr/lib/dovecot/pop3"):
        raise SystemExit("Dovecot POP3 not found: apt-get install -y dovecot-core dovecot-pop3d")

    root = Path(tempfile.mkdtemp(prefix="maillab-pop3-bench-"))
    try:
        digest = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Owned by Debian's "mail" user (8): Dovecot refuses uid 0, and
        # maillab's store fchowns what it writes to the account's uid.
        uid = gid = 8
        (root / "users").write_text(
            "".join(
                f"{user}:{{SHA512-CRYPT}}{digest}:{uid}:{gid}::{root}/home/{user}\n"
                for user in ("bench", "big")
            )
        )
        (root / "mail").mkdir(mode=0o755)
        # Dovecot's auth process runs as the dovecot user and must read it.
        root.chmod(0o755)
        (root / "users").chmod(0o644)
        port, dport = freePort(), freePort()
        ini = root / "maillab.ini"
        ini.write_text(
            "[server]\nhostname = bench.test\ndomain = bench.test\nstate_directory = var\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            f"[store]\nmail_location = maildir:{root}/mail/%n\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
        )
        config = load(ini)
        line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n"
        body = line * max(1, args.size // len(line))
        print("delivering...", file=sys.stderr)
        deliver(config, "bench", [b"Subject: message %d\n\n" % i + body for i in range(args.messages)])
        deliver(config, "big", [b"Subject: big\n\n" + line * (20 * 1024 * 1024 // len(line))])

        print("measuring maillab...", file=sys.stderr)
        results = {}
        # -- maillab ------------------------------------------------------
        twistd = str(Path(sys.executable).parent / "twistd")
        process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "maillab", "--config", str(ini)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            waitPort(port)
            results["maillab"] = (measure(port, "bench", args.rounds), measure(port, "big", max(1, args.rounds // 2)))
            status = Path(f"/proc/{process.pid}/status").read_text()
            maillabPeak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)

        # -- Dovecot --------------------------------------------------------
        print("measuring dovecot...", file=sys.stderr)
        ddir = root / "dovecot"
        for sub in ("run", "state"):
            (ddir / sub).mkdir(parents=True)
        conf = ddir / "dovecot.conf"
        conf.write_text(
            f"""
base_dir = {ddir}/run
state_dir = {ddir}/state
log_path = {ddir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{root}/mail/%n
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {root}/users
}}
userdb {{
  driver = static
  args = uid=8 gid=8 home={root}/home/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {dport}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
        )
        process = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            waitPort(dport)
            try:
                results["dovecot"] = (measure(dport, "bench", args.rounds), measure(dport, "big", max(1, args.rounds // 2)))
            except Exception:
                print((ddir / "dovecot.log").read_text()[-3000:], file=sys.stderr)
                raise
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)

        (m_small, m_uidl, m_octets), (m_big, _, m_bigOctets) = results["maillab"]
        (d_small, d_uidl, d_octets), (d_big, _, d_bigOctets) = results["dovecot"]
        print(f"POP3 bench: {args.messages} messages of ~{len(body)} bytes, best of {args.rounds} rounds")
        print(f"{'':34}{'maillab':>12}{'dovecot':>12}{'ratio':>8}")
        print(
            f"{'session (login, UIDL, RETR all)':34}{m_small * 1000:>10.0f}ms{d_small * 1000:>10.0f}ms"
            f"{m_small / d_small:>8.2f}"
        )
        print(f"{'RETR one 20 MB message':34}{m_big * 1000:>10.0f}ms{d_big * 1000:>10.0f}ms{m_big / d_big:>8.2f}")
        print(f"maillab server peak RSS: {maillabPeak} kB")
        print(f"octets retrieved: maillab {m_octets} / {m_bigOctets}, dovecot {d_octets} / {d_bigOctets}")
        print(f"UIDL lists identical: {m_uidl == d_uidl} ({len(m_uidl)} messages)")
        if m_uidl != d_uidl:
            diff = [(a, b) for a, b in zip(m_uidl, d_uidl) if a != b]
            print(f"  first differences (maillab, dovecot): {diff[:3]}; lengths {len(m_uidl)} {len(d_uidl)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
