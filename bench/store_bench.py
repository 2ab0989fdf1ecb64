"""
Benchmark: open and rescan a 100,000-message Maildir folder with maillab's
store and with Dovecot (doveadm) on the same folder, in one command.

    sudo .venv/bin/python bench/store_bench.py [--messages 100000] [--keep DIR]

Prints, for each step, maillab's time, Dovecot's time and the ratio, and
the memory per message of maillab's in-memory index (RSS growth / messages)
next to Dovecot's peak RSS for the same folder.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from twisted.internet import defer, task  # noqa: E402

from store_dovecot import DovecotTool  # noqa: E402
from twisted_maillab.account import Account  # noqa: E402
from twisted_maillab.store import Store  # noqa: E402

OWNER = 65534


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build(maildir: Path, count: int) -> None:
    """
    A realistic folder: 95% in cur/ with flags, 5% still in new/, ,S= and
    ,W= sizes in the names (as Dovecot and maillab write them).
    """
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    flags = ["", "S", "RS", "FS", "S", "Sa"]
    start = 1700000000
    for i in range(count):
        body = (
            b"From: sender%d@example.net\nTo: edouard@example.org\n"
            b"Subject: message %d\nMessage-ID: <%d@example.net>\n\nbody of message %d\n" % (i, i, i, i)
        )
        vsize = len(body) + body.count(b"\n")
        base = f"{start + i}.M{i % 1000000}P4242Q{i}.bench,S={len(body)},W={vsize}"
        if i >= count * 95 // 100:
            path = maildir / "new" / base
        else:
            path = maildir / "cur" / f"{base}:2,{flags[i % len(flags)]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body)
        os.close(fd)
    (maildir / "dovecot-keywords").write_text("0 $Label1\n")
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(maildir):
            os.chown(root, OWNER, OWNER)
            for name in files:
                os.chown(os.path.join(root, name), OWNER, OWNER)


def dropDovecotIndexes(maildir: Path) -> None:
    for name in os.listdir(maildir):
        if name.startswith("dovecot.index") or name.startswith("dovecot.list.index"):
            os.unlink(maildir / name)


OPEN_STORES = []


@defer.inlineCallbacks
def maillabOpen(reactor, account, clock_label):
    store = Store(reactor, rescanInterval=0, inotify=False, fsync=True)
    OPEN_STORES.append(store)
    gc.collect()
    before = rss()
    started = time.perf_counter()
    folder = yield store.mailboxes(account).open()
    elapsed = time.perf_counter() - started
    gc.collect()
    grown = rss() - before
    return store, folder, elapsed, grown


@defer.inlineCallbacks
def main(reactor, args):
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="maillab-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # Dovecot drops to the owner and must traverse it
    home = workdir / "bench"
    maildir = home / "Maildir"
    n = args.messages
    if not maildir.exists():
        print(f"building {n} messages in {maildir} ...", flush=True)
        started = time.perf_counter()
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, OWNER, OWNER) if os.geteuid() == 0 else None
        build(maildir, n)
        print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
    for sub in ("new", "cur"):
        for name in os.listdir(maildir / sub):
            if ".newmail" in name:  # left by an earlier --keep run
                os.unlink(maildir / sub / name)
    for name in ("dovecot-uidlist", "dovecot-uidvalidity"):
        if (maildir / name).exists():
            os.unlink(maildir / name)
    dropDovecotIndexes(maildir)
    account = Account("bench", None, home, OWNER, OWNER, maildir)
    # Dovecot's baseline RSS (empty mailbox), measured before any big run
    # because the children's peak RSS only grows
    empty = workdir / "empty"
    for sub in ("cur", "new", "tmp"):
        (empty / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for root, dirs, names in os.walk(empty):
            os.chown(root, OWNER, OWNER)
    baselineTool = DovecotTool(empty / "Maildir", OWNER, OWNER, user="bench", home=empty)
    _, baseline, _ = baselineTool.timed("mailbox", "status", "messages", "INBOX")
    baselineTool.cleanup()
    dove = DovecotTool(maildir, OWNER, OWNER, user="bench", home=home)
    rows = []

    def row(label, ours, theirs):
        rows.append((label, ours, theirs))
        ratio = ours / theirs if theirs else float("nan")
        print(f"{label:<52} maillab {ours * 1000:9.1f} ms   dovecot {theirs * 1000:9.1f} ms   ratio {ratio:6.2f}", flush=True)

    try:
        # 1. first open: no dovecot-uidlist, UIDs assigned to every file
        store, folder, first, grown = yield maillabOpen(reactor, account, "first")
        assert len(folder) == n, (len(folder), n)
        validity = folder.uidValidity
        folder.close()
        yield store.close()
        # Dovecot's first open of the same folder: it reads the uidlist
        # maillab wrote and builds its index from scratch
        theirFirst, peakFirst, out = dove.timed("mailbox", "status", "messages uidvalidity uidnext", "INBOX")
        assert f"messages={n}" in out and f"uidvalidity={validity}" in out, out
        row("first open (maillab assigns UIDs; dovecot builds index)", first, theirFirst)

        # 2. warm open: uidlist (maillab) / index (Dovecot) already there
        store, folder, warm, grown = yield maillabOpen(reactor, account, "warm")
        theirWarm, _, out = dove.timed("mailbox", "status", "messages uidvalidity uidnext", "INBOX")
        row("open with metadata present (SELECT)", warm, theirWarm)

        # 3. rescan without changes
        started = time.perf_counter()
        yield folder.refresh()
        ours = time.perf_counter() - started
        theirs, _, _ = dove.timed("mailbox", "status", "messages", "INBOX")
        row("rescan, nothing changed", ours, theirs)

        # 4. rescan after one new message arrived in new/
        name = f"{int(time.time())}.M1P1.newmail,S=20"
        path = maildir / "new" / name
        path.write_bytes(b"Subject: new\n\nhello\n")
        if os.geteuid() == 0:
            os.chown(path, OWNER, OWNER)
        # Dovecot distrusts a directory mtime from the current second and
        # rescans until it is older: let a couple of seconds pass, as in
        # real life between a delivery and the next command
        time.sleep(2.1)
        started = time.perf_counter()
        yield folder.refresh()
        ours = time.perf_counter() - started
        assert len(folder) == n + 1
        theirs, _, out = dove.timed("mailbox", "status", "messages", "INBOX")
        assert f"messages={n + 1}" in out, out
        row("rescan after one delivery by another program", ours, theirs)

        # 5. forced full rescan (relist cur/ and new/)
        started = time.perf_counter()
        yield folder.refresh(full=True)
        ours = time.perf_counter() - started
        theirs, _, _ = dove.timed("force-resync", "INBOX")
        row("full rescan (maillab relist / doveadm force-resync)", ours, theirs)

        # 6. a search touching every message's flags
        started = time.perf_counter()
        unseen = folder.unseenCount()
        ours = time.perf_counter() - started
        theirs, peak, out = dove.timed("search", "mailbox", "INBOX", "unseen")
        assert len([l for l in out.split("\n") if l]) == unseen, (unseen, out.count("\n"))
        row("count unseen (flags of every message)", ours, theirs)

        folder.close()
        yield store.close()
        # retained size of the index, measured exactly (tracemalloc), in a
        # fresh store: what one open 100k folder costs the server
        import tracemalloc

        tracemalloc.start()
        store, folder, _, _ = yield maillabOpen(reactor, account, "traced")
        retained, peakTraced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        perMessage = retained / n
        print()
        print(f"maillab index retained (tracemalloc): {retained / 1024 / 1024:.1f} MiB = {perMessage:.0f} bytes/message; "
              f"peak during open {peakTraced / 1024 / 1024:.1f} MiB; RSS growth at warm open {grown / n:.0f} bytes/message")
        print(f"maillab uidlist written: {(maildir / 'dovecot-uidlist').stat().st_size / 1024 / 1024:.1f} MiB")
        theirPerMessage = (peak - baseline) * 1024 / n
        print(f"dovecot peak RSS of one doveadm over the folder: {peak / 1024:.1f} MiB, "
              f"{baseline / 1024:.1f} MiB on an empty mailbox: {theirPerMessage:.0f} bytes/message")
        indexBytes = sum(
            (maildir / name).stat().st_size for name in os.listdir(maildir) if name.startswith("dovecot.index")
        )
        print(f"dovecot index files (mmap'd by every session): {indexBytes / 1024 / 1024:.1f} MiB "
              f"= {indexBytes / n:.0f} bytes/message")
        print(f"memory ratio maillab/dovecot-RSS-per-message: {perMessage / theirPerMessage:.2f}; "
              f"maillab/dovecot-index: {perMessage / (indexBytes / n):.2f}")
        print("note: dovecot times include starting one doveadm process (as each IMAP "
              "session is a process); maillab times are inside the running server")
        folder.close()
        yield store.close()
    finally:
        for store in OPEN_STORES:
            store.close()  # its thread pool would keep the process alive
        dove.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--keep", help="build/keep the Maildir in this directory")
    args = parser.parse_args()
    task.react(main, (args,))
