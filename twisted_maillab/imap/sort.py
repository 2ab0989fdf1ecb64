"""
SORT (RFC 5256): ordering messages by ARRIVAL, CC, DATE, FROM, SIZE,
SUBJECT and TO, each optionally REVERSE, with the base subject of section
2.1 and the i;ascii-casemap comparator (RFC 4790 9.2).  Only the header
block of a message is read, and only when a header key is asked for.
Blocking: run in the store's thread pool.
"""

from __future__ import annotations

import email.utils
import re

from twisted_maillab.imap import mimeheader
from twisted_maillab.imap.mimedecode import decodeWords

__all__ = ["SORT_KEYS", "baseSubject", "parseCriteria", "sort"]

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO"})
_HEADER_KEYS = frozenset({"CC", "DATE", "FROM", "SUBJECT", "TO"})

_TRAILER = re.compile(r"(?:\s*\(fwd\))+\s*$|\s+$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\]\s*"
_REFWD = re.compile(r"^(?:" + _BLOB + r")*(?:re|fwd?)\s*(?:" + _BLOB + r")?:\s*", re.IGNORECASE)
_LEADING_BLOB = re.compile(r"^" + _BLOB)
_FWD_WRAP = re.compile(r"^\[fwd:(.*)\]$", re.IGNORECASE | re.DOTALL)


def baseSubject(subject) -> str:
    """
    The base subject (RFC 5256 2.1): encoded words decoded, white space
    runs as one space, then trailers C{(fwd)}, leaders C{Re:} C{Fw:}
    C{Fwd:} with their C{[blob]}s, leading blobs and C{[fwd: ...]}
    wrappers removed until none is left.
    """
    if isinstance(subject, bytes):
        subject = decodeWords(mimeheader.unfold(subject))
    text = re.sub(r"\s+", " ", subject)
    while True:
        # (2) trailers.
        text = _TRAILER.sub("", text)
        # (3)-(4) leaders and blobs, until neither applies.
        while True:
            before = text
            text = text.lstrip(" ")
            text = _REFWD.sub("", text, count=1)
            blob = _LEADING_BLOB.match(text)
            if blob and text[blob.end() :]:
                text = text[blob.end() :]
            if text == before:
                break
        # (5) a [fwd: ...] wrapper.
        wrapped = _FWD_WRAP.match(text)
        if not wrapped:
            return text
        text = wrapped.group(1)


def _casemap(text: str) -> bytes:
    # i;ascii-casemap: octets compared with ASCII letters upper-cased.
    return text.encode("utf-8", "replace").upper()


def parseCriteria(criteria) -> list[tuple[str, bool]]:
    """
    C{["REVERSE", "DATE", "SUBJECT"]} into C{[("DATE", True), ("SUBJECT",
    False)]}.

    @raise ValueError: an unknown key, or REVERSE at the end.
    """
    result = []
    reverse = False
    for word in criteria:
        word = word.decode("ascii") if isinstance(word, bytes) else word
        word = word.upper()
        if word == "REVERSE":
            reverse = not reverse
            continue
        if word not in SORT_KEYS:
            raise ValueError(f"unknown sort key {word}")
        result.append((word, reverse))
        reverse = False
    if reverse or not result:
        raise ValueError("sort criteria end with REVERSE or are empty")
    return result


def _firstMailbox(value) -> bytes:
    addresses = mimeheader.parseAddresses(value)
    # RFC 5256 3 "the addr-mailbox of the first address": a group's name
    # counts (it is the first address's mailbox in ENVELOPE), as in Dovecot.
    if not addresses:
        return b""
    return addresses[0][2] or b""


def _sentDate(value, fallback: float) -> float:
    if value is not None:
        parsed = email.utils.parsedate_tz(mimeheader.unfold(value).decode("ascii", "replace"))
        if parsed is not None:
            try:
                return float(email.utils.mktime_tz(parsed))
            except (OverflowError, ValueError):
                pass
    # RFC 5256 3: no usable Date: the INTERNALDATE is the sent date.
    return fallback


def _keyFunction(name, headers):
    if name == "ARRIVAL":
        return lambda m: m.internalDate
    if name == "SIZE":
        return lambda m: m.size
    field = {"CC": b"cc", "FROM": b"from", "TO": b"to", "SUBJECT": b"subject", "DATE": b"date"}[name]
    if name == "DATE":
        return lambda m: _sentDate(headers(m).get(field), m.internalDate)
    if name == "SUBJECT":
        return lambda m: _casemap(baseSubject(headers(m).get(field, b"")))
    return lambda m: _firstMailbox(headers(m).get(field)).upper()


def sort(criteria, messages, openMessage):
    """
    Blocking: C{messages} (L{search.MessageData}) ordered by C{criteria}
    (wire words, see L{parseCriteria}); equal messages stay in sequence
    order (RFC 5256 3).  Files are opened with C{openMessage(uid)} only
    for header keys, once each; an unreadable message sorts as if its
    header were empty.
    """
    from twisted_maillab.imap.messagetext import headerFields

    keys = parseCriteria(criteria)
    cache: dict[int, dict[bytes, bytes]] = {}

    def headers(message):
        if message.uid not in cache:
            fields: dict[bytes, bytes] = {}
            try:
                f = openMessage(message.uid)
            except Exception:
                f = None
            if f is not None:
                try:
                    for name, value in headerFields(f):
                        fields.setdefault(name, value)
                finally:
                    f.close()
            cache[message.uid] = fields
        return cache[message.uid]

    ordered = sorted(messages, key=lambda m: m.seq)
    # Stable sorts from the last key to the first; Python's reverse sort
    # keeps equal elements in order, so ties stay in sequence order.
    for name, reverse in reversed(keys):
        ordered.sort(key=_keyFunction(name, headers), reverse=reverse)
    return ordered
