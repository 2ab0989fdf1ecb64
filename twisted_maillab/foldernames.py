"""
Folder names as Maildir++ stores them: one directory per folder under the
Maildir root, levels joined by C{.}, each level in modified UTF-7 (RFC 3501
5.1.3), as Dovecot writes them.

A leaf module (standard library only): the configuration checks the names
it is given with the same rules the store applies, without importing the
store.
"""

from __future__ import annotations

import base64

__all__ = ["FolderNameError", "folderDirName", "folderNameFromDir", "mutf7Encode", "mutf7Decode"]


class FolderNameError(ValueError):
    """
    The name cannot be stored in Maildir++ (a C{.}, an empty level, a
    control character, an IMAP wildcard, too long...).
    """


def mutf7Encode(text: str) -> str:
    """
    Modified UTF-7 (RFC 3501 5.1.3): printable ASCII as itself (C{&} as
    C{&-}), everything else as C{&}base64-of-UTF-16BE C{-} with C{,}
    for C{/}.
    """
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in text:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def mutf7Decode(text: str) -> str:
    """
    The inverse of L{mutf7Encode}.

    @raise ValueError: (or C{UnicodeDecodeError}) not modified UTF-7.
    """
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = text.index("-", i)
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            chunk = chunk.replace(",", "/")
            chunk += "=" * (-len(chunk) % 4)
            out.append(base64.b64decode(chunk).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


def folderDirName(name: str, separator: str = "/") -> str:
    """
    The Maildir++ directory of a folder: C{"Archive/2024"} -> C{".Archive.2024"}.

    @raise FolderNameError: for names Maildir++ cannot hold.
    """
    if not name or name.upper() == "INBOX":
        raise FolderNameError("INBOX is the Maildir root")
    levels = name.split(separator)
    encoded = []
    for level in levels:
        if not level:
            raise FolderNameError(f"{name!r}: empty hierarchy level")
        if "." in level:
            # Maildir++ uses "." between levels (as Dovecot without
            # maildir_name_escape_char, which also refuses it)
            raise FolderNameError(f"{name!r}: '.' is not allowed in a folder name")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in level) or level in ("~",):
            raise FolderNameError(f"{name!r}: control characters are not allowed")
        if "%" in level or "*" in level:
            raise FolderNameError(f"{name!r}: IMAP wildcards are not allowed")
        encoded.append(mutf7Encode(level))
    dirName = "." + ".".join(encoded)
    if len(dirName.encode()) > 255:
        raise FolderNameError(f"{name!r}: name too long")
    return dirName


def folderNameFromDir(dirName: str, separator: str = "/") -> str | None:
    """
    The folder name of a Maildir++ directory, or L{None} if it is not one.
    """
    if not dirName.startswith(".") or dirName in (".", ".."):
        return None
    levels = dirName[1:].split(".")
    if any(not level for level in levels):
        return None
    try:
        return separator.join(mutf7Decode(level) for level in levels)
    except (ValueError, UnicodeDecodeError):
        return None
