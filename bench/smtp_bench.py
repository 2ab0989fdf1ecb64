#!/usr/bin/env python3
"""
SMTP delivery throughput: maillab against Postfix, same machine, same load.

    .venv/bin/python bench/smtp_bench.py [--messages 2000] [--size 4096]
                                         [--sessions 10] [--rounds 5]

maillab runs as etc/systemd/maillab.service runs it (twistd -n with the
JSON-lines logger; --logger twistd for twistd's own text log), its log
going to a file as Postfix's goes to its maillog_file.

Both servers listen on loopback high ports with their own configuration
in a temporary directory and deliver to a Maildir with fsync on (Postfix
always fsyncs its queue file and the Maildir file; maillab's [store]
fsync = yes).  Postfix is started with `postfix -c <dir> start` and
delivers through virtual(8) to <dir>/postfix-mail/bench/Maildir/ (run as root:
Postfix's master must).  `smtp-source` (Debian's postfix package) sends
the same number of messages of the same size over the same number of
parallel sessions to each.  The two servers take turns for --rounds
rounds (default 5), so a change in the machine's load hits both alike.
Reported per server: the median round's messages per second end to end
(from the first connection until every message is in new/) and until
smtp-source saw the last 250; then maillab / Postfix.  Each round also
reports the whole machine's busy CPU time per message and its idle share
(/proc/stat): equal CPU per message with one server leaving a core idle
says the gap is parallelism, not efficiency.

Every message is checked: the count in new/ equals the count sent, and
every stored body (after the header block) is byte for byte the one
Postfix stored for the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
USER = "bench"
DOMAIN = "domaineel.rt"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitPort(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port}")


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        raise SystemExit(f"{tool} is missing: apt-get install {package}")
    return path


def countNew(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir / "new"))
    except FileNotFoundError:
        return 0


def cpuTimes() -> tuple[float, float]:
    """
    The whole machine's busy and idle CPU seconds so far (/proc/stat): the
    load generator and the kernel's work count for both servers alike, so
    busy time per message compares their total cost.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / tick, idle / tick


def run(name, port, maildir, args, already: int = 0) -> dict:
    source = need("smtp-source", "postfix")
    command = [
        source, "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
        "-f", "sender@example.org", "-t", f"{USER}@{DOMAIN}", f"127.0.0.1:{port}",
    ]
    busy0, idle0 = cpuTimes()
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    accepted = time.monotonic()
    if result.returncode != 0:
        raise SystemExit(f"{name}: smtp-source failed: {result.stderr or result.stdout}")
    deadline = accepted + 120
    expected = already + args.messages
    while countNew(maildir) < expected and time.monotonic() < deadline:
        time.sleep(0.005)
    done = time.monotonic()
    busy1, idle1 = cpuTimes()
    stored = countNew(maildir)
    if stored != expected:
        raise SystemExit(f"{name}: {stored} of {expected} messages in {maildir}/new")
    return {
        "name": name,
        "accepted": args.messages / (accepted - start),
        "endToEnd": args.messages / (done - start),
        "seconds": done - start,
        "cpuPerMessage": (busy1 - busy0) / args.messages,
        "idle": (idle1 - idle0) / ((busy1 - busy0) + (idle1 - idle0)),
    }


def bodies(maildir: Path) -> set[bytes]:
    out = set()
    for entry in os.scandir(maildir / "new"):
        data = Path(entry.path).read_bytes()
        out.add(data.split(b"\n\n", 1)[1])
    return out


def loggerArgs(args) -> list[str]:
    return [] if args.logger == "twistd" else [f"--logger={args.logger}"]


def startMaillab(base: Path, args):
    port = freePort()
    state = base / "state"
    home = state / "users" / DOMAIN / USER
    home.mkdir(parents=True)
    (base / "passwd").write_text(f"{USER}:{{PLAIN}}bench::::::\n")
    ini = textwrap.dedent(
        f"""\
        [server]
        hostname = smtp.{DOMAIN}
        domain = {DOMAIN}
        state_directory = state

        [auth]
        checkers = passwd-file
        passwd_file = passwd

        [store]
        mail_location = maildir:~/Maildir
        fsync = yes
        threads = {args.store_threads}

        [smtp]
        enabled = yes
        listen = tcp:{port}:interface=127.0.0.1
        myhostname = smtp.{DOMAIN}
        mydestination = $myhostname, {DOMAIN}., localhost
        mynetworks = 127.0.0.0/8
        smtpd_peername_lookup = yes
        message_size_limit = 10240000
        """
    )
    (base / "maillab.ini").write_text(ini)
    log = open(base / "maillab.log", "w")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "twistd"), "-n", "--pidfile=", *loggerArgs(args),
            *args.twistd_args.split(), "maillab", "--config", str(base / "maillab.ini"),
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    waitPort(port)
    return process, port, home / "Maildir"


MASTER_CF = """\
{port}      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def startPostfix(base: Path, args):
    postfix = need("postfix", "postfix")
    port = freePort()
    conf = base / "postfix"
    conf.mkdir()
    mail = base / "postfix-mail"
    maildir = mail / USER / "Maildir"
    (maildir).mkdir(parents=True)
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir()
    shutil.chown(mail, "nobody", "nogroup")
    for path in mail.rglob("*"):
        shutil.chown(path, "nobody", "nogroup")
    (conf / "vmailbox").write_text(f"{USER}@{DOMAIN} {USER}/Maildir/\n")
    (conf / "main.cf").write_text(
        textwrap.dedent(
            f"""\
            compatibility_level = 3.6
            queue_directory = {base}/postfix-queue
            data_directory = {base}/postfix-data
            command_directory = /usr/sbin
            daemon_directory = /usr/lib/postfix/sbin
            shlib_directory = /usr/lib/postfix
            meta_directory = /etc/postfix
            mail_owner = postfix
            setgid_group = postdrop
            myhostname = smtp.{DOMAIN}
            mydomain = {DOMAIN}
            mydestination =
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            mynetworks = 127.0.0.0/8
            smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
            alias_maps =
            alias_database =
            local_recipient_maps =
            virtual_mailbox_domains = {DOMAIN}
            virtual_mailbox_base = {mail}
            virtual_mailbox_maps = texthash:{conf}/vmailbox
            virtual_uid_maps = static:65534
            virtual_gid_maps = static:65534
            virtual_minimum_uid = 100
            message_size_limit = 10240000
            maillog_file = {base}/postfix.log
            maillog_file_prefixes = {base}
            smtpd_banner = $myhostname ESMTP Postfix
            biff = no
            """
        )
    )
    (conf / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
    for d in ("postfix-queue", "postfix-data"):
        (base / d).mkdir()
    shutil.chown(base / "postfix-data", "postfix", "postfix")
    result = subprocess.run([postfix, "-c", str(conf), "start"], capture_output=True, text=True)
    if result.returncode != 0:
        log = (base / "postfix.log").read_text() if (base / "postfix.log").exists() else ""
        raise SystemExit(f"postfix start failed: {result.stderr}{result.stdout}{log[-2000:]}")
    waitPort(port)
    return conf, port, maildir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store-threads", type=int, default=4, help="maillab [store] threads")
    parser.add_argument(
        "--logger", default="twisted_maillab.logs.jsonStdout",
        help="maillab's twistd --logger; the default is etc/systemd/maillab.service's, "
        "'twistd' means twistd's own text log",
    )
    parser.add_argument(
        "--twistd-args", default="",
        help="extra twistd options for maillab, e.g. '--profile=out --profiler=cprofile --savestats'",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: Postfix's master needs it")
    base = Path(tempfile.mkdtemp(prefix="maillab-smtp-bench-"))
    os.chmod(base, 0o755)
    rounds = {"maillab": [], "postfix": []}
    process = conf = None
    try:
        process, port, maillabDir = startMaillab(base, args)
        conf, pport, postfixDir = startPostfix(base, args)
        # Alternate the two servers so a change in the machine's load (other
        # jobs on a shared box) hits both alike; report the median round.
        for index in range(args.rounds):
            rounds["maillab"].append(run("maillab", port, maillabDir, args, index * args.messages))
            rounds["postfix"].append(run("postfix", pport, postfixDir, args, index * args.messages))
        # Byte for byte: both servers stored the same bodies smtp-source sent.
        ours, theirs = bodies(maillabDir), bodies(postfixDir)
        if ours != theirs:
            raise SystemExit("maillab's stored bodies differ from Postfix's")
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        if conf is not None:
            subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True)
    print(
        f"smtp-source -s {args.sessions} -m {args.messages} -l {args.size}, {args.rounds} alternating rounds, "
        f"fsync on, delivery to Maildir, {os.cpu_count()} CPUs; maillab's log: {args.logger} "
        f"(to a file, as Postfix's maillog_file)"
    )
    medians = {}
    for name, results in rounds.items():
        results.sort(key=lambda r: r["endToEnd"])
        median = results[len(results) // 2]
        medians[name] = median
        each = ", ".join(f"{r['endToEnd']:.0f}" for r in rounds[name])
        print(
            f"  {name:8s} {median['endToEnd']:8.1f} msg/s end to end, median "
            f"({median['accepted']:.1f} msg/s accepted; rounds: {each}); "
            f"machine CPU {median['cpuPerMessage'] * 1000:.2f} ms/msg, {median['idle']:.0%} idle"
        )
    ratio = medians["maillab"]["endToEnd"] / medians["postfix"]["endToEnd"]
    print(f"  ratio maillab/postfix (end to end, medians): {ratio:.2f}")
    print(
        f"  every message stored ({countNew(maillabDir)} and {countNew(postfixDir)}), "
        f"bodies identical to Postfix's ({len(ours)} distinct)"
    )
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
