"""
The administrator's console behind the C{maillab} command: C{queue},
C{users} and C{sendmail} (see L{twisted_maillab.cli} for the command list).

Shared here: finding and loading the configuration, printing a table (or
the same rows as JSON with C{--json}), and the sendmail-style exit codes
(sysexits.h).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_CONFIG", "loadConfig", "begin", "printTable", "printJSON", "Exit"]

DEFAULT_CONFIG = Path("/etc/maillab/maillab.ini")


class Exit:
    """
    sysexits.h: the exit codes sendmail and Postfix's commands use.
    """

    OK = 0
    USAGE = 64
    DATAERR = 65
    NOUSER = 67
    UNAVAILABLE = 69
    SOFTWARE = 70
    OSERR = 71
    IOERR = 74
    TEMPFAIL = 75
    NOPERM = 77
    CONFIG = 78


def configPath(given: Path | None) -> Path:
    """
    C{--config}, else C{$MAILLAB_CONFIG}, else L{DEFAULT_CONFIG}.
    """
    if given is not None:
        return Path(given)
    return Path(os.environ.get("MAILLAB_CONFIG") or DEFAULT_CONFIG)


def loadConfig(given: Path | None, prog: str, stderr=None):
    """
    The parsed configuration, or L{None} after printing its one-line error.
    """
    from twisted_maillab.config import ConfigError, load

    stderr = stderr or sys.stderr
    path = configPath(given)
    try:
        return load(path)
    except ConfigError as e:
        print(f"{prog}: {e}", file=stderr)
    except OSError as e:
        print(f"{prog}: {path}: {e.strerror}", file=stderr)
    return None


def begin(parser, argv: list[str], prog: str, stdout, stderr):
    """
    Parse a command's arguments (argparse's output on the given streams)
    and load the configuration its C{--config} names.

    @return: C{(args, config)}, or the exit status: 0 after C{--help}, 2
        on a usage error, 78 when the configuration cannot be loaded.
    """
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    config = loadConfig(args.config, prog, stderr)
    if config is None:
        return Exit.CONFIG
    return args, config


def printJSON(value, stdout=None) -> None:
    json.dump(value, stdout or sys.stdout, indent=2, sort_keys=True)
    (stdout or sys.stdout).write("\n")


def printTable(headings: list[str], rows: list[list], stdout=None) -> None:
    """
    Columns padded to their widest cell; the last column is not padded.
    """
    stdout = stdout or sys.stdout
    cells = [[str(h) for h in headings]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headings))]
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths[:-1]))
        print((line + "  " + row[-1]).rstrip() if len(row) > 1 else row[0], file=stdout)


def humanAge(seconds: float) -> str:
    """
    C{45s}, C{12m}, C{3h05m}, C{2d04h}.
    """
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
