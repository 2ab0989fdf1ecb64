"""
The value types of the ini file: each parser takes the raw text (and the
L{_Context}) and returns the typed value or raises L{ValueError} whose
message is the complete reason.  L{twisted_maillab.config} declares each
key with one of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable


class _Context:
    """
    What a value parser may need besides the raw text.

    @ivar base: the directory relative paths are resolved against.
    """

    def __init__(self, base: Path):
        self.base = base


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)


def parseSize(raw: str, context: _Context | None = None) -> int:
    """
    Parse a byte count: C{10240000}, C{512K}, C{10M}, C{2G} (binary units,
    as Postfix and Dovecot read them).
    """
    match = _SIZE_RE.match(raw.strip())
    if match is None:
        raise ValueError(f'"{raw}" is not a size')
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)


def parseDuration(raw: str, context: _Context | None = None) -> float:
    """
    Parse a duration in seconds: C{300}, C{30s}, C{5m}, C{2h}, C{5d}, C{1w},
    or a sum such as C{1h30m}.
    """
    text = raw.strip().replace(" ", "")
    if not text:
        raise ValueError(f'"{raw}" is not a duration')
    total = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART_RE.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f'"{raw}" is not a duration')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        position = match.end()
    return total


_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def parseBoolean(raw: str, context: _Context | None = None) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f'"{raw}" is not a boolean (use yes or no)')


def parseString(raw: str, context: _Context | None = None) -> str:
    return raw.strip()


def parseNonEmpty(raw: str, context: _Context | None = None) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def parseInteger(
    minimum: int | None = None, maximum: int | None = None
) -> Callable[[str, _Context], int]:
    def parse(raw: str, context: _Context | None = None) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f'"{raw}" is not an integer') from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} is above the maximum {maximum}")
        return value

    return parse


def parseChoice(*choices: str) -> Callable[[str, _Context], str]:
    def parse(raw: str, context: _Context | None = None) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f'"{raw}" is not one of {", ".join(choices)}')
        return value

    return parse


def parsePath(raw: str, context: _Context) -> Path:
    """
    A filesystem path; C{~} is expanded and a relative path is taken
    relative to the directory of the ini file.
    """
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = context.base / path
    return Path(_normalise(path))


def _normalise(path: Path) -> str:
    # os.path.normpath without resolving symlinks: "etc/../var" -> "var".
    import os.path

    return os.path.normpath(str(path))


def parseExistingFile(raw: str, context: _Context) -> Path:
    path = parsePath(raw, context)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


_LIST_SPLIT_RE = re.compile(r"[\s,]+")


def parseList(item: Callable[[str, _Context], Any]) -> Callable[[str, _Context], tuple]:
    """
    A list of values separated by commas, spaces or continuation lines (as
    Postfix writes C{mydestination}); each element is parsed by C{item}.
    """

    def parse(raw: str, context: _Context) -> tuple:
        return tuple(
            item(element, context) for element in _LIST_SPLIT_RE.split(raw) if element
        )

    return parse


def parseEndpoint(raw: str, context: _Context | None = None) -> str:
    """
    A Twisted server endpoint string (C{tcp:25:interface=0.0.0.0},
    C{ssl:993:privateKey=...}, C{systemd:domain=INET:name=imap}).

    It is checked by building the endpoint with C{serverFromString} (which
    binds nothing) so syntax errors and unreadable C{ssl:} certificates are
    found before any listener starts; so are a port out of range and an
    interface that is neither an IP address nor a name that resolves
    (L{twisted_maillab.listeners.resolve}).  C{systemd:} descriptions are only
    checked for their syntax: the inherited sockets are looked up when the
    service is built, which is still before anything listens.
    """
    from twisted.internet.endpoints import serverFromString

    value = raw.strip()
    if value.startswith("systemd:"):
        params = dict(
            part.split("=", 1) for part in value.split(":")[1:] if "=" in part
        )
        if params.get("domain") not in ("INET", "INET6", "UNIX"):
            raise ValueError(
                f'"{raw}" is not a valid endpoint: systemd endpoints need '
                "domain=INET, INET6 or UNIX"
            )
        if "name" not in params and "index" not in params:
            raise ValueError(
                f'"{raw}" is not a valid endpoint: systemd endpoints need name= or index='
            )
        return value
    from twisted_maillab.listeners import resolve

    try:
        endpoint = serverFromString(None, value)
    except Exception as e:  # Twisted raises ValueError, KeyError, OSError...
        raise ValueError(f'"{raw}" is not a valid endpoint: {e}') from None
    try:
        resolve(endpoint)
    except ValueError as e:
        raise ValueError(f'"{raw}" cannot be used: {e}') from None
    return value


def parseNetwork(raw: str, context: _Context | None = None):
    """
    An IPv4 or IPv6 network as Postfix writes it in C{mynetworks}:
    C{127.0.0.0/8}, C{[::1]/128}, C{[::ffff:127.0.0.0]/104}.
    """
    import ipaddress

    text = raw.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\](/\d+)?", text)
    if bracketed:
        text = bracketed.group(1) + (bracketed.group(2) or "")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f'"{raw}" is not an IP network') from None
