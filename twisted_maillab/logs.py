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

import json
import os
import sys

from twisted.logger import ILogObserver, LogLevel, eventAsText, formatEvent
from twisted.python.logfile import LogFile
from zope.interface import directlyProvides

DEFAULT_JSON_LOG = "/var/log/maillab/maillab.json"

_PLAIN = (str, int, float, bool, type(None))
# Objects Twisted would write as {"unpersistable": true}: left out.
_SKIPPED = frozenset({"log_logger", "log_source", "log_trace", "log_failure", "log_io", "log_legacy"})


def _render(event) -> str:
    """
    The event's message.  C{str.format_map} renders the common formats
    several times faster than Twisted's formatter; Twisted's own handles
    what it cannot (the C{{callable()}} syntax, errors).
    """
    format = event.get("log_format")
    if format is None:
        return formatEvent(event)
    try:
        return format.format_map(event)
    except Exception:
        return formatEvent(event)


def _minimumLevels():
    minimum = LogLevel.levelWithName(os.environ.get("MAILLAB_LOG_LEVEL", "info"))
    return frozenset(level for level in LogLevel.iterconstants() if level >= minimum)


def jsonLineObserver(write, flush=None):
    """
    One JSON object per event, written with C{write(str)}.

    Twisted's C{jsonFileLogObserver} re-parses every format string to
    "flatten" the event and encodes it through a generic object hook: 60
    microseconds per event, on the reactor thread, four times per SMTP
    message (measured with bench/smtp_bench.py's workload: logging was a
    quarter of the reactor thread's time).  This writes the same keys
    (C{log_format}, C{log_level} as its plain name, C{log_namespace},
    C{log_time}, the event's own fields, with values JSON cannot hold
    written as their C{str}) plus the rendered C{text}, and drops what
    Twisted writes as unpersistable.  Events below C{$MAILLAB_LOG_LEVEL}
    (default C{info}) are not written.
    """
    levels = _minimumLevels()
    dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode

    def observe(event):
        level = event.get("log_level")
        if level not in levels:
            return
        record = {}
        for key, value in event.items():
            if key in _SKIPPED:
                continue
            if key == "log_level":
                # The plain name ("info"), which jq, journald and fail2ban
                # match, not Twisted's serialized NamedConstant.
                record[key] = value.name
            elif isinstance(value, _PLAIN):
                record[key] = value
            else:
                record[key] = str(value)
        if "log_failure" in event:
            # the traceback belongs in the text
            record["text"] = eventAsText(event, includeTimestamp=False, includeSystem=False)
        else:
            record["text"] = _render(event)
        write(dumps(record) + "\n")
        if flush is not None:
            flush()

    # twistd wraps anything else as a legacy observer: a slower path that
    # also adds the legacy keys (message, system, format, isError)
    directlyProvides(observe, ILogObserver)
    return observe


def jsonStdout():
    """
    JSON lines on standard output (use with C{twistd -n} under systemd).
    """
    out = sys.stdout
    return jsonLineObserver(out.write, out.flush)


def jsonFile():
    """
    JSON lines in C{$MAILLAB_LOG} (default L{DEFAULT_JSON_LOG}), rotated at
    10 MB with 10 old files kept.  A missing directory is created, mode
    0750 (twistd starts logging before it switches user, so it belongs to
    the user that started it).  A file that cannot be opened ends the start
    with one line on stderr and exit status 1: twistd calls this before the
    daemon exists, and would otherwise print a traceback.
    """
    path = os.environ.get("MAILLAB_LOG", DEFAULT_JSON_LOG)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o750, exist_ok=True)
            os.chmod(directory, 0o750)  # the umask may have taken bits off
        logFile = LogFile.fromFullPath(path, rotateLength=10_000_000, maxRotatedFiles=10)
    except OSError as e:
        # makedirs says "File exists" when a file has the directory's name
        reason = f"{directory} is not a directory" if isinstance(e, FileExistsError) else e.strerror
        sys.stderr.write(f"maillab: cannot write the JSON log {path}: {reason or e}\n")
        raise SystemExit(1)
    return jsonLineObserver(logFile.write, logFile.flush)
