"""
Reading an ini file into a L{Config}: every key is checked before the file
is refused, and each problem is one L{ConfigError} naming the file,
section, key, reason and line (L{ConfigErrors} when there are several).
L{twisted_maillab.config} re-exports L{load} and L{loadString}.
"""

from __future__ import annotations

import configparser
import dataclasses
import re
from pathlib import Path
from typing import Any

from twisted_maillab.config import (
    SECTIONS,
    Config,
    ConfigError,
    ConfigErrors,
    Section,
    SectionError,
)
from twisted_maillab.configvalues import _Context


def _keyLines(text: str, path: Path) -> tuple[dict[tuple[str, str | None], int], list[ConfigError]]:
    """
    Map C{(section, key)} (and C{(section, None)}) to 1-based line numbers,
    because configparser keeps no positions; and report sections and keys
    given twice (configparser, non-strict, would keep the last one quietly).
    """
    lines: dict[tuple[str, str | None], int] = {}
    errors = []
    section = None
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]*)\]", line)
        if header:
            section = header.group(1).strip()
            if (section, None) in lines:
                errors.append(ConfigError(path, section, None, "section appears twice", number))
            lines.setdefault((section, None), number)
            continue
        if section is None or not line.strip() or line[0].isspace():
            continue
        if line.lstrip()[0] in "#;":
            continue
        key = re.match(r"([^=:]+?)\s*[=:]", line)
        if key:
            name = key.group(1).strip().lower()
            if (section, name) in lines:
                errors.append(
                    ConfigError(
                        path,
                        section,
                        name,
                        "key appears twice in the section (list several values in one key)",
                        number,
                    )
                )
            lines.setdefault((section, name), number)
    return lines, errors


def loadString(text: str, path: str | Path = "<string>", sections=None) -> Config:
    """
    Parse ini text; C{path} names it in errors and anchors relative paths.

    The sections known are L{SECTIONS} and, when the text has a section
    that is not one of them, those added by service plugins
    (L{twisted_maillab.plugins.pluginSections}), or C{sections} (name ->
    L{Section} class) when given.

    Every key is checked before anything is refused: each unknown section
    or key, each bad value, each section's first cross-key problem and
    each pair of listeners that would bind the same address is one error.

    @raise ConfigError: one problem (L{ConfigErrors} when there are
        several; its C{errors} lists them, C{str()} is one line each).
    """
    path = Path(path)
    lines, errors = _keyLines(text, path)
    parser = configparser.ConfigParser(
        interpolation=None,
        # "#" and ";" start comments only at the beginning of a line, so
        # values may contain them (endpoint strings, Postfix syntax).
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        empty_lines_in_values=False,
        default_section="\0no default section",
        # Duplicates are reported by _keyLines, with the others.
        strict=False,
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(path, None, None, "a key appears before any [section] header", e.lineno)
    except configparser.ParsingError as e:
        # configparser reads on past a bad line and lists them all.
        for lineno, _ in e.errors:
            bad = text.splitlines()[lineno - 1].strip()
            errors.append(ConfigError(path, None, None, f"cannot parse line {bad!r}", lineno))

    known = _knownSections(parser.sections()) if sections is None else sections
    context = _Context(path.parent.resolve() if path.parent else Path.cwd())
    sections: dict[str, Section] = {}
    for name in parser.sections():
        if name not in known:
            errors.append(
                ConfigError(
                    path,
                    name,
                    None,
                    "unknown section (known: " + ", ".join(known) + ")",
                    lines.get((name, None)),
                )
            )
    # (section, listen values) of every enabled listener, even in a section
    # refused for another key: a bad key elsewhere hides no collision.
    listening: list[tuple[str, tuple]] = []
    for name, cls in known.items():
        raw = dict(parser.items(name)) if parser.has_section(name) else {}
        values: dict[str, Any] = {}
        section = _buildSection(cls, raw, path, lines, context, errors, values)
        if section is not None:
            sections[name] = section
        if values.get("enabled") and values.get("listen"):
            listening.append((name, values["listen"]))
    config = Config(path=path, sections=sections)
    object.__setattr__(config, "_lines", lines)
    object.__setattr__(config, "_text", text.splitlines())
    errors.extend(_listenerCollisions(config, listening))
    errors.sort(key=lambda e: e.line or 0)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return config


def _knownSections(names) -> dict:
    """
    L{SECTIONS}, and the plugins' sections when C{names} has others: a
    plugin is only looked for (and imported) when the file names its
    section.

    @raise twisted_maillab.plugins.PluginError: a plugin cannot be used.
    """
    if all(name in SECTIONS for name in names):
        return dict(SECTIONS)
    from twisted_maillab.plugins import pluginSections

    return {**SECTIONS, **pluginSections()}


def _listenerCollisions(
    config: Config, listening: list[tuple[str, tuple]], dualStack: bool | None = None
) -> list[ConfigError]:
    """
    One error for each listener that would bind an address and port another
    enabled listener of this config already takes, in any section (C{[dns]}
    binds UDP beside TCP on the same address, so it collides the same way).
    """
    from twisted.internet.endpoints import serverFromString

    from twisted_maillab import listeners

    if dualStack is None:
        dualStack = listeners.dualStack()
    seen: list[tuple[str, str, listeners.Address]] = []
    errors = []
    for name, listen in listening:
        for description in listen:
            try:
                address = listeners.resolve(serverFromString(None, description))
            except Exception:  # already reported by parseEndpoint
                continue
            if address is None:
                continue
            for otherSection, otherDescription, other in seen:
                why = listeners.overlap(other, address, dualStack)
                if why is None:
                    continue
                otherLine = config._line(otherSection, "listen", otherDescription)
                errors.append(
                    config.error(
                        name,
                        "listen",
                        f'"{description}" would bind {address}, already taken by [{otherSection}] '
                        f'listen "{otherDescription}" (line {otherLine}): {why}',
                        description,
                    )
                )
                break
            seen.append((name, description, address))
    return errors


def _buildSection(cls, raw, path, lines, context, errors, values) -> Section | None:
    """
    The section built from its raw values, or L{None} after appending to
    C{errors} one L{ConfigError} per unknown key and bad value (the
    cross-key L{Section.check} only runs on values that all parsed).
    C{values} receives the values that parsed.
    """
    name = cls.name
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    failed = len(errors)
    for key in raw:
        if key not in fields:
            errors.append(
                ConfigError(
                    path,
                    name,
                    key,
                    "unknown key (known: " + ", ".join(sorted(fields)) + ")",
                    lines.get((name, key)),
                )
            )
    for key, spec in fields.items():
        if key not in raw:
            if spec.default is dataclasses.MISSING:
                errors.append(
                    ConfigError(path, name, key, "required key is missing", lines.get((name, None)))
                )
            continue
        try:
            values[key] = spec.metadata["parse"](raw[key], context)
        except ValueError as e:
            errors.append(ConfigError(path, name, key, str(e), lines.get((name, key))))
    if len(errors) > failed:
        return None
    section = cls(**values)
    try:
        section.check()
    except SectionError as e:
        errors.append(
            ConfigError(
                path, name, e.key, e.reason, lines.get((name, e.key), lines.get((name, None)))
            )
        )
        return None
    return section


def load(path: str | Path, sections=None) -> Config:
    """
    Read and parse an ini file.

    @raise ConfigError: the file is missing or unreadable, or any value is bad.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, None, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, None, f"cannot be read: {e}") from None
    return loadString(text, path, sections)
