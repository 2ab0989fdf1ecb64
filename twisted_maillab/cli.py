"""
The C{maillab} console script: administration commands beside the daemon.

    maillab passwd [--file F] USER      add or change a passwd-file user
    maillab reload [--pidfile F]        ask the running daemon to reload (SIGHUP)
    maillab checkzone ORIGIN FILE       check a zone file as [dns] would load it
    maillab check-config [FILE]         every error of a config, one line each
"""

from __future__ import annotations

import sys
from importlib import import_module

# Sub-command -> "module:function(argv) -> exit status"; imported on use.
COMMANDS = {
    "passwd": "twisted_maillab.auth.passwdtool:main",
    "reload": "twisted_maillab.reload:main",
    "checkzone": "twisted_maillab.dns.checkzone:main",
    "check-config": "twisted_maillab.checkconfig:main",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, function = COMMANDS[argv[0]].split(":")
    return getattr(import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
