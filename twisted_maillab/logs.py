"""
Log observers for C{twistd --logger=...}: twistd calls the named object
with no arguments (twisted/application/app.py, AppLogger.start), so each
factory here takes none.

    twistd -n --logger=twisted_maillab.logs.jsonStdout maillab ...
    MAILLAB_LOG=/var/log/maillab/maillab.json \\
        twistd --logger=twisted_maillab.logs.jsonFile maillab ...

Both write one JSON object per line (C{recordSeparator=""}, not RFC 7464's
RS), which is what journald, Vector, Filebeat and C{jq} read; events are
C{twisted.logger} events, so C{log_format}, C{log_level}, C{log_namespace}
and C{log_time} are always present, plus the event's own fields.
"""

from __future__ import annotations

import os
import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    jsonFileLogObserver,
)
from twisted.python.logfile import LogFile

DEFAULT_JSON_LOG = "/var/log/maillab/maillab.json"


def _withText(observer):
    """
    Add the rendered message as C{text}, so a log shipper needs no
    knowledge of Twisted's format strings.
    """

    def observe(event):
        event = dict(event)
        event.setdefault("text", formatEvent(event))
        observer(event)

    return observe


def _levelFilter(observer):
    level = LogLevel.levelWithName(os.environ.get("MAILLAB_LOG_LEVEL", "info"))
    return FilteringLogObserver(
        observer, [LogLevelFilterPredicate(defaultLogLevel=level)]
    )


def jsonStdout():
    """
    JSON lines on standard output (use with C{twistd -n} under systemd).
    """
    return _levelFilter(_withText(jsonFileLogObserver(sys.stdout, recordSeparator="")))


def jsonFile():
    """
    JSON lines in C{$MAILLAB_LOG} (default L{DEFAULT_JSON_LOG}), rotated at
    10 MB with 10 old files kept.
    """
    path = os.environ.get("MAILLAB_LOG", DEFAULT_JSON_LOG)
    logFile = LogFile.fromFullPath(path, rotateLength=10_000_000, maxRotatedFiles=10)
    return _levelFilter(_withText(jsonFileLogObserver(logFile, recordSeparator="")))
