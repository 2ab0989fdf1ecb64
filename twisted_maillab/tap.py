"""
C{twistd maillab --config FILE}: options and the service maker.
"""

from __future__ import annotations

import sys

from twisted.application.service import MultiService
from twisted.python import usage

from twisted_maillab.config import ConfigError, load

DEFAULT_CONFIG = "/etc/maillab/maillab.ini"


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Serve authoritative DNS, SMTP (MX and submission), POP3 and IMAP "
        "over Maildir for one domain, as configured in an ini file (see "
        "README.rst)."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "The maillab ini file."],
    ]

    def postOptions(self):
        # Parsing here, before twistd daemonizes or binds anything; one line
        # on stderr and status 1 (a UsageError would bury the reason under
        # the option summary on stdout).
        try:
            self["parsed"] = load(self["config"])
        except ConfigError as e:
            _exit(e)


class _Bound(MultiService):
    """
    The suite, its listeners already bound by L{makeService}: twistd's
    C{privilegedStartService} has nothing left to do.
    """

    def privilegedStartService(self):
        pass


def makeService(options):
    from twisted_maillab.service import bindListeners, makeService as compose

    try:
        top = compose(options["parsed"])
        # Bound here, while twistd still runs as the user who started it
        # and before it daemonizes, writes its pid file or takes stdout
        # for its log: a port in use or refused is one line on stderr and
        # exit status 1, as any configuration error, not a traceback.
        bindListeners(top, options["parsed"])
        bound = _Bound()
        top.setServiceParent(bound)
        return bound
    except ConfigError as e:
        # Errors only found while building (a zone that does not load, a
        # missing inherited socket) are still config errors: nothing is
        # bound yet, so exit cleanly with the message.
        _exit(e)


def _exit(error: ConfigError):
    """
    Every problem on its own line on stderr, then exit status 1.
    """
    for each in error.errors:
        sys.stderr.write(f"maillab: {each}\n")
    raise SystemExit(1)
