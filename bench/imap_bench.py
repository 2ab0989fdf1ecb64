"""
IMAP benchmark: maillab's IMAP next to Debian's Dovecot on copies of the
same Maildirs, in one run, with the same clients (imaplib over 127.0.0.1,
plain LOGIN: both allow it on loopback).

    .venv/bin/python bench/imap_bench.py [--messages 2000] [--users 4]
        [--clients 8] [--seconds 10] [--processes 2] [--phases short,long]

Each server is started by the bench on its own loopback ports with its own
config, then measured alone.  C{--clients} concurrent clients (threads
spread over C{--processes} client processes, so the client side is not
held to one core by the GIL) share C{--users} accounts of C{--messages}
messages each, for C{--seconds} per phase:

  - short sessions: connect, LOGIN, SELECT, FETCH the headers of 10
    messages, FETCH one body, LOGOUT; again and again;
  - long sessions: one LOGIN and SELECT per client, then rounds of FETCH
    headers (10 messages), FETCH bodies (3), STORE +FLAGS and -FLAGS,
    SEARCH, APPEND, STORE \\Deleted on what it appended and EXPUNGE;
    LOGOUT at the end.

It prints IMAP commands per second (each LOGIN, SELECT, FETCH, ... counts
one; short sessions also per session) for both servers and the ratio
maillab/dovecot, after checking that both give the same UIDs and
UIDVALIDITY on the same Maildir.  Dovecot runs with Debian's defaults
except the per-user connection limit (raised for the bench's clients).
Both keep their durable defaults, printed with the figures: maillab's
C{[store] fsync = yes} (an APPEND is answered OK once the message file,
its directory and C{dovecot-uidlist} are fsynced) and Dovecot's
C{mail_fsync = optimized} (the file and the directory).

Needs the Debian packages dovecot-core and dovecot-imapd.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import imaplib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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

# The script's directory is on sys.path: the POP3 bench's helpers.
from pop3_bench import _result, freePort, waitPort  # noqa: E402

PASSWORD = "bench pw"
# Debian's "mail" user: Dovecot refuses to serve mail as root.
MAIL_UID = 8
APPENDED = b"From: bench@bench.test\r\nTo: bench@bench.test\r\nSubject: appended\r\n\r\n" + b"appended body\r\n" * 20


def makeMessage(index: int, size: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    words = (b"alpha", b"bravo", b"charlie", b"delta", b"echo")
    return (
        b"From: sender%d@bench.test\r\nTo: bench@bench.test\r\nSubject: message %d %s\r\n"
        b"Date: Wed, 02 Dec 2026 12:%02d:00 +0000\r\nMessage-ID: <%d@bench.test>\r\n\r\n"
        % (index % 50, index, words[index % len(words)], index % 60, index)
    ) + line * max(1, size // len(line))


def deliver(config, users: list[str], messages: list[bytes]):
    """
    The store's delivery transaction into every user's Maildir (set-up,
    not measured: fsync off).
    """
    portal = makePortal(config, Clock(), runner=runSynchronously)
    store = Store(
        reactor, runner=lambda f, *a, **k: defer.execute(f, *a, **k), rescanInterval=0, inotify=False, fsync=False
    )
    try:
        for user in users:
            account = _result(portal.directory.lookup(user))
            Path(account.home).mkdir(parents=True, exist_ok=True)
            os.chown(account.home, MAIL_UID, MAIL_UID)
            for message in messages:
                txn = store.beginDelivery()
                txn.addRecipient(account)
                _result(txn.write(message))
                (result,) = _result(txn.commit())
                assert result.ok, result.error
    finally:
        store.close()


# -- the clients ---------------------------------------------------------------


def _login(port: int, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    client.login(user, PASSWORD)
    return client


def _check(answer):
    if answer[0] != "OK":
        raise RuntimeError(f"unexpected answer {answer!r}")
    return answer[1]


def _shortSessions(port: int, users: list[str], messages: int, until: float, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    commands = sessions = 0
    while time.monotonic() < until:
        client = _login(port, rng.choice(users))
        _check(client.select("INBOX"))
        first = rng.randint(1, messages - 10)
        _check(client.fetch(f"{first}:{first + 9}", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])"))
        _check(client.fetch(str(rng.randint(1, messages)), "(BODY.PEEK[])"))
        client.logout()
        commands += 5
        sessions += 1
    return commands, sessions


class _Timer:
    """
    Seconds spent per command name, and how many (the long sessions'
    table of mean latencies).
    """

    def __init__(self):
        self.spent: dict[str, list[float]] = {}

    def __call__(self, name: str, function, *args):
        started = time.perf_counter()
        answer = _check(function(*args))
        entry = self.spent.setdefault(name, [0.0, 0])
        entry[0] += time.perf_counter() - started
        entry[1] += 1
        return answer


def _longSession(port: int, user: str, messages: int, until: float, seed: int, timer: _Timer) -> tuple[int, int]:
    rng = random.Random(seed)
    client = _login(port, user)
    _check(client.select("INBOX"))
    commands = 2
    words = ("alpha", "bravo", "charlie", "delta", "echo")
    while time.monotonic() < until:
        first = rng.randint(1, messages - 10)
        timer("FETCH headers", client.fetch, f"{first}:{first + 9}", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
        for _ in range(3):
            timer("FETCH body", client.fetch, str(rng.randint(1, messages)), "(BODY.PEEK[])")
        seq = str(rng.randint(1, messages))
        timer("STORE", client.store, seq, "+FLAGS.SILENT", "(\\Flagged)")
        timer("STORE", client.store, seq, "-FLAGS.SILENT", "(\\Flagged)")
        timer("SEARCH", client.search, None, "SUBJECT", rng.choice(words), "UNFLAGGED")
        answer = timer("APPEND", client.append, "INBOX", "(\\Seen)", None, APPENDED)
        uid = re.search(rb"\[APPENDUID \d+ (\d+)\]", answer[0]).group(1).decode()
        timer("STORE", client.uid, "STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
        # Every \Deleted message is one a client appended: a plain
        # EXPUNGE (RFC 3501) may take another client's too, which is fine.
        timer("EXPUNGE", client.expunge)
        commands += 10
    client.logout()
    return commands + 1, 1


def _clientProcess(mode: str, port: int, users: list[str], messages: int, threads: int, until: float, seed: int):
    """
    One client process: C{threads} clients until C{until} (monotonic
    clock, shared by every process on Linux); (commands, sessions).
    """
    results = []
    errors = []
    timer = _Timer()

    def one(index: int):
        try:
            if mode == "short":
                results.append(_shortSessions(port, users, messages, until, seed * 1000 + index))
            else:
                user = users[(seed * threads + index) % len(users)]
                results.append(_longSession(port, user, messages, until, seed * 1000 + index, timer))
        except Exception as e:  # reported to the parent
            errors.append(f"{type(e).__name__}: {e}")

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    return sum(r[0] for r in results), sum(r[1] for r in results), timer.spent


def measure(mode: str, port: int, args, users: list[str]) -> tuple[float, float, dict]:
    """
    (commands/s, sessions/s, command name -> mean seconds) of
    C{args.clients} clients for C{args.seconds}.
    """
    perProcess = [args.clients // args.processes + (i < args.clients % args.processes) for i in range(args.processes)]
    started = time.monotonic()
    until = started + args.seconds
    with concurrent.futures.ProcessPoolExecutor(args.processes) as pool:
        futures = [
            pool.submit(_clientProcess, mode, port, users, args.messages, n, until, i)
            for i, n in enumerate(perProcess)
            if n
        ]
        totals = [f.result() for f in futures]
    elapsed = time.monotonic() - started
    spent: dict[str, list[float]] = {}
    for _, _, one in totals:
        for name, (seconds, count) in one.items():
            entry = spent.setdefault(name, [0.0, 0])
            entry[0] += seconds
            entry[1] += count
    means = {name: seconds / count for name, (seconds, count) in spent.items()}
    return sum(t[0] for t in totals) / elapsed, sum(t[1] for t in totals) / elapsed, means


def identity(port: int, user: str) -> tuple[bytes, list[bytes]]:
    """
    UIDVALIDITY and the UID list of a user's INBOX.
    """
    client = _login(port, user)
    _check(client.select("INBOX", readonly=True))
    validity = client.response("UIDVALIDITY")[1][0]
    uids = _check(client.uid("SEARCH", "ALL"))[0].split()
    client.logout()
    return validity, uids


# -- the servers ---------------------------------------------------------------


def dovecotConfig(ddir: Path, root: Path, port: int) -> Path:
    conf = ddir / "dovecot.conf"
    conf.write_text(
        f"""
base_dir = {ddir}/run
state_dir = {ddir}/state
log_path = {ddir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
    )
    return conf


def run(name: str, argv, port: int, cwd: Path, args, users: list[str], log: Path | None = None, opened=None):
    print(f"measuring {name}...", file=sys.stderr)
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waitPort(port)
        ident = identity(port, users[0])
        for user in users[1:]:
            identity(port, user)
        if opened is not None:
            opened()
        try:
            skipped = (float("nan"), float("nan"), {})
            short = measure("short", port, args, users) if "short" in args.phases else skipped
            long = measure("long", port, args, users) if "long" in args.phases else skipped
        except Exception:
            if log is not None and log.exists():
                print(log.read_text()[-3000:], file=sys.stderr)
            raise
        peak = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text()).group(1))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    return ident, short, long, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--phases", default="short,long", help="short, long or both (default): measure only these (to profile one)"
    )
    args = parser.parse_args()
    args.phases = set(args.phases.split(","))
    if not args.phases or not args.phases <= {"short", "long"}:
        raise SystemExit("--phases: short, long or short,long")
    if not 20 <= args.messages or not 1 <= args.clients <= 200 or not 1 <= args.seconds <= 600:
        raise SystemExit("--messages at least 20, --clients 1..200, --seconds 1..600")
    args.processes = max(1, min(args.processes, args.clients))
    dovecot = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if dovecot is None or not os.path.exists("/usr/lib/dovecot/imap"):
        raise SystemExit("Dovecot IMAP not found: apt-get install -y dovecot-core dovecot-imapd")

    root = Path(tempfile.mkdtemp(prefix="maillab-imap-bench-"))
    try:
        digest = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True, text=True, check=True
        ).stdout.strip()
        users = [f"bench{i}" for i in range(args.users)]
        # Dovecot's auth and mail processes run unprivileged: they must
        # reach the passwd-file and the homes.
        root.chmod(0o755)
        for tree in ("maillab", "dovecot"):
            (root / tree).mkdir(mode=0o755)
        for tree in ("maillab", "dovecot"):
            (root / tree / "users").write_text(
                "".join(
                    f"{user}:{{SHA512-CRYPT}}{digest}:{MAIL_UID}:{MAIL_UID}::{root}/{tree}/home/{user}\n"
                    for user in users
                )
            )
            (root / tree / "users").chmod(0o644)
        port, dport = freePort(), freePort()
        common = (
            "[server]\nhostname = bench.test\ndomain = bench.test\nstate_directory = var\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n"
        )
        ini = root / "maillab" / "maillab.ini"
        ini.write_text(
            common + f"[imap]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
            "max_connections_per_user = 0\nmax_connections_per_address = 0\n"
        )
        # Delivery needs the accounts and the store only.
        (root / "maillab" / "deliver.ini").write_text(common)
        config = load(root / "maillab" / "deliver.ini")
        print(f"delivering {args.users} x {args.messages} messages...", file=sys.stderr)
        deliver(config, users, [makeMessage(i, args.size) for i in range(args.messages)])
        (root / "maillab" / "home").chmod(0o755)

        def copy():
            # Once maillab has opened every INBOX (and written the
            # dovecot-uidlist Dovecot also keeps), before the measured
            # phases change them: Dovecot then serves the same UIDs.
            (root / "dovecot" / "home").mkdir(mode=0o755)
            for user in users:
                shutil.copytree(root / "maillab" / "home" / user, root / "dovecot" / "home" / user, symlinks=True)
            subprocess.run(["chown", "-R", f"{MAIL_UID}:{MAIL_UID}", str(root / "dovecot" / "home")], check=True)

        twistd = str(Path(sys.executable).parent / "twistd")
        results = {
            "maillab": run(
                "maillab",
                [twistd, "-n", "--pidfile=", "maillab", "--config", str(ini)],
                port,
                root / "maillab",
                args,
                users,
                opened=copy,
            )
        }
        ddir = root / "dovecot" / "conf"
        for sub in ("run", "state"):
            (ddir / sub).mkdir(parents=True)
        conf = dovecotConfig(ddir, root / "dovecot", dport)
        results["dovecot"] = run(
            "dovecot", [dovecot, "-F", "-c", str(conf)], dport, root, args, users, ddir / "dovecot.log"
        )

        mIdent, mShort, mLong, mPeak = results["maillab"]
        dIdent, dShort, dLong, _ = results["dovecot"]
        print(
            f"IMAP bench: {args.clients} clients in {args.processes} processes, {args.users} users x "
            f"{args.messages} messages of ~{args.size} bytes, {args.seconds:g} s per phase"
        )
        print(f"{'':40}{'maillab':>10}{'dovecot':>10}{'ratio':>8}")
        rows = [
            ("short sessions: sessions/s", mShort[1], dShort[1]),
            ("short sessions: commands/s", mShort[0], dShort[0]),
            ("long sessions: commands/s", mLong[0], dLong[0]),
        ]
        for label, mine, theirs in rows:
            print(f"{label:40}{mine:>10.1f}{theirs:>10.1f}{mine / theirs:>8.2f}")
        print("long sessions, mean latency per command (ms):")
        for name in mLong[2]:
            mine, theirs = mLong[2][name] * 1000, dLong[2].get(name, float("nan")) * 1000
            print(f"  {name:38}{mine:>10.1f}{theirs:>10.1f}{mine / theirs:>8.2f}")
        print(f"maillab server peak RSS: {mPeak} kB")
        mine = load(ini).store.fsync
        theirs = subprocess.run(
            ["doveconf", "-c", str(conf), "-h", "mail_fsync"], capture_output=True, text=True
        ).stdout.strip() or "unknown"
        print(f"durability (both on their defaults): maillab [store] fsync = {'yes' if mine else 'no'}, dovecot mail_fsync = {theirs}")
        print(
            f"same UIDVALIDITY and UIDs before the run: {mIdent == dIdent} "
            f"({len(mIdent[1])} / {len(dIdent[1])} messages)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
