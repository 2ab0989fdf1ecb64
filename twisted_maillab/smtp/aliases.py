"""
Local aliases from an C{/etc/aliases}-format file (aliases(5) as Postfix's
C{postalias} reads it).

  - C{name: value, value, ...}; a line starting with whitespace continues
    the previous one; C{#} starts a comment line; blank lines are ignored.
  - A name or a value may be double-quoted (C{"|/usr/bin/x y"}).
  - Values are local names, addresses, C{:include:/path}, C{/path} (append
    to a file) or C{|command}.  Delivery to commands and files is never
    done by maillab: those targets are refused with a logged reason, and
    C{:include:} files are read only when C{allow_alias_include} is set,
    with the same syntax as a value list.
  - Names are compared without case (Postfix folds them); a duplicate name
    is an error, as it is for C{postalias}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AliasError", "Aliases", "AliasTarget", "parseAliases", "loadAliases", "splitValues"]


class AliasError(ValueError):
    """
    The file cannot be used: C{path}, C{line} and the reason.
    """

    def __init__(self, path, line: int | None, reason: str):
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class AliasTarget:
    """
    One value of an alias.

    @ivar kind: C{"address"} (a local name or an address), C{"include"},
        C{"file"} or C{"command"}.
    @ivar value: the name, address, path or command.
    """

    kind: str
    value: str


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def splitValues(text: str) -> list[str]:
    """
    Split a value list at commas outside double quotes.
    """
    values, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == "," and not quoted:
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return [value.strip() for value in values if value.strip()]


def _target(value: str) -> AliasTarget:
    raw = _unquote(value)
    if raw.lower().startswith(":include:"):
        return AliasTarget("include", raw[len(":include:") :].strip())
    if raw.startswith("|"):
        return AliasTarget("command", raw[1:].strip())
    if raw.startswith("/"):
        return AliasTarget("file", raw)
    return AliasTarget("address", raw)


class Aliases:
    """
    A parsed alias table: lower-case name -> list of L{AliasTarget}.
    """

    def __init__(self, table: dict[str, list[AliasTarget]], path=None):
        self.table = table
        self.path = path

    def get(self, name: str) -> list[AliasTarget] | None:
        return self.table.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.table

    def __len__(self) -> int:
        return len(self.table)


def parseAliases(text: str, path="<aliases>") -> Aliases:
    """
    Parse the text of an aliases file.

    @raise AliasError: a line without C{:}, an empty name, a continuation
        before any entry, or a duplicate name.
    """
    entries: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if not entries:
                raise AliasError(path, number, "continuation line before any alias")
            start, previous = entries[-1]
            entries[-1] = (start, previous + " " + line.strip())
            continue
        entries.append((number, line))
    table: dict[str, list[AliasTarget]] = {}
    for number, entry in entries:
        match = re.match(r'\s*("(?:[^"\\]|\\.)*"|[^:\s]+)\s*:(.*)$', entry)
        if match is None:
            raise AliasError(path, number, "expected 'name: value, ...'")
        name = _unquote(match.group(1)).lower()
        if not name:
            raise AliasError(path, number, "empty alias name")
        if name in table:
            raise AliasError(path, number, f"duplicate alias {name!r}")
        values = splitValues(match.group(2))
        if not values:
            raise AliasError(path, number, f"alias {name!r} has no value")
        table[name] = [_target(value) for value in values]
    return Aliases(table, path)


def loadAliases(path: Path) -> Aliases:
    """
    Read and parse an aliases file.

    @raise AliasError: unreadable or malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise AliasError(path, None, f"cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise AliasError(path, None, "is not UTF-8 text") from None
    return parseAliases(text, path)


def readInclude(path: str, limit: int = 1024 * 1024) -> list[AliasTarget]:
    """
    Read a C{:include:} file: addresses separated by commas or newlines,
    C{#} comment lines.  Blocking; callers run it in a thread.
    """
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path}: larger than {limit} octets")
    text = data.decode("utf-8", "replace")
    values = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        values.extend(splitValues(line))
    return [_target(value) for value in values]
