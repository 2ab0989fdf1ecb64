"""
The C{maillab} console script: administration commands beside the daemon
(C{maillab --help} lists them; L{twisted_maillab.console.manual} holds
their text).  Run under the name C{sendmail} or C{mailq} (a symbolic link
to the script), it is C{maillab sendmail} or C{maillab mailq}.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

# Sub-command -> "module:function(argv) -> exit status"; imported on use.
COMMANDS = {
    "queue": "twisted_maillab.console.queue:main",
    "mailq": "twisted_maillab.console.queue:mailq",
    "users": "twisted_maillab.console.users:main",
    "passwd": "twisted_maillab.auth.passwdtool:main",
    "sendmail": "twisted_maillab.console.sendmail:main",
    "reload": "twisted_maillab.reload:main",
    "checkzone": "twisted_maillab.dns.checkzone:main",
    "check-config": "twisted_maillab.checkconfig:main",
    "zone": "twisted_maillab.console.zone:main",
    "doctor": "twisted_maillab.console.doctor:main",
    "dkim": "twisted_maillab.console.mailauth:dkim",
    "dmarc": "twisted_maillab.console.mailauth:dmarc",
}

# Program names that are a command of their own (argv[0]).
ALIASES = {"sendmail": "sendmail", "mailq": "mailq"}


def _run(name: str, argv: list[str]) -> int:
    module, function = COMMANDS[name].split(":")
    return getattr(import_module(module), function)(argv)


def main(argv: list[str] | None = None, program: str | None = None) -> int:
    program = os.path.basename(program if program is not None else sys.argv[0])
    argv = sys.argv[1:] if argv is None else argv
    if program in ALIASES:
        return _run(ALIASES[program], argv)
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        from twisted_maillab.console.manual import helpText

        sys.stdout.write(helpText(COMMANDS))
        return 0
    if argv[:1] in (["-V"], ["--version"]):
        from twisted_maillab.console.manual import version

        print(f"maillab {version()}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        from twisted_maillab.console.manual import helpText

        if argv:
            print(f"maillab: unknown command {argv[0]!r}", file=sys.stderr)
        sys.stderr.write(helpText(COMMANDS))
        return 2
    return _run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
