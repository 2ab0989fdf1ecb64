"""
C{maillab reload}: ask the running daemon to reload its zones (and, as
later features add them, other reloadable data) by sending it SIGHUP, as
C{systemctl reload maillab} does through the unit's ExecReload.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maillab reload", description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--pidfile",
        default="/run/maillab/maillab.pid",
        help="the pid file twistd wrote (twistd --pidfile)",
    )
    args = parser.parse_args(argv)
    try:
        with open(args.pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        print(f"maillab reload: cannot read pid from {args.pidfile}: {e}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as e:
        print(f"maillab reload: cannot signal process {pid}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"maillab reload: sent SIGHUP to {pid}")
    return 0
