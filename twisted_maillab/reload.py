"""
C{maillab reload}: ask the running daemon to reload its zones (and, as
later features add them, other reloadable data) by sending it SIGHUP, as
C{systemctl reload maillab} does through the unit's ExecReload.

The daemon is found the way it was started: its pid file is looked for
in the config's state directory (C{make run} writes C{var/maillab.pid}),
then in C{/run/maillab/maillab.pid} (the systemd unit's), then in
C{twistd.pid} in the current directory (twistd's default).  A pid whose
process is not a maillab daemon (a stale file) is never signalled.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from twisted_maillab.tap import DEFAULT_CONFIG

RUN_PIDFILE = "/run/maillab/maillab.pid"
TWISTD_PIDFILE = "twistd.pid"


def candidates(configPath: str) -> tuple[list[Path], str | None]:
    """
    The pid files to try, in order, and why the config's state directory
    is not among them (L{None} when it is).
    """
    from twisted_maillab.config import ConfigError, load

    found = []
    problem = None
    try:
        found.append(load(configPath).server.state_directory / "maillab.pid")
    except ConfigError as e:
        problem = str(e.errors[0])
    found += [Path(RUN_PIDFILE), Path(TWISTD_PIDFILE)]
    return found, problem


def isMaillab(pid: int) -> bool:
    """
    Whether process C{pid} runs twistd's maillab plugin (its command line,
    from /proc, names both).
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return any(w.endswith(b"twistd") for w in words) and b"maillab" in words


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="maillab reload", description=__doc__.strip().splitlines()[0]
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"the ini file the daemon runs (default {DEFAULT_CONFIG}); its state "
        "directory holds the pid file",
    )
    parser.add_argument(
        "--pidfile", default=None, help="the pid file twistd wrote (twistd --pidfile)"
    )
    args = parser.parse_args(argv)
    if args.pidfile is not None:
        paths, problem = [Path(args.pidfile)], None
    else:
        paths, problem = candidates(args.config)
    tried = []
    for path in paths:
        try:
            pid = int(path.read_text().strip())
        except FileNotFoundError:
            tried.append(f"{path}: no such file")
            continue
        except (OSError, ValueError) as e:
            tried.append(f"{path}: {getattr(e, 'strerror', None) or e}")
            continue
        if not isMaillab(pid):
            tried.append(f"{path}: process {pid} is not a running maillab daemon (stale pid file?)")
            continue
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as e:
            print(f"maillab reload: cannot signal process {pid}: {e.strerror}", file=sys.stderr)
            return 1
        print(f"maillab reload: sent SIGHUP to {pid} ({path})")
        return 0
    if problem is not None:
        tried.insert(0, problem)
    print("maillab reload: no running daemon found: " + "; ".join(tried), file=sys.stderr)
    return 1
