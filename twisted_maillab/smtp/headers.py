"""
The header fields Postfix's cleanup(8) adds to submitted mail that lacks
them: C{Date:} (RFC 5322 3.6.1), C{Message-ID:} (3.6.4) and C{From:}
(3.6.2, from the envelope sender).  Both C{Date:} and C{From:} are
required by RFC 5322 3.6; C{Message-ID:} SHOULD be present, and RFC 6409
8.3 lets a submission server add it.

Only the header section is held back (until its end is seen, at most
C{header_size_limit} octets); the body streams through untouched.
"""

from __future__ import annotations

import email.utils
import re
from datetime import datetime, timezone

__all__ = ["MissingHeaders", "rfc5322Date"]

# RFC 5322 2.2 / 3.6.8: a field name is printable US-ASCII except ":",
# followed (after optional obsolete white space) by ":".
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_ADDED = (b"date", b"message-id", b"from")


def rfc5322Date(when: float) -> str:
    """
    C{when} as an RFC 5322 3.3 date-time in local time, as Postfix writes
    C{Date:} and C{Received:}.
    """
    return email.utils.format_datetime(datetime.fromtimestamp(when, timezone.utc).astimezone())


class MissingHeaders:
    """
    Streams message text (LF line ends) and adds C{Date:}, C{Message-ID:}
    and C{From:} at the end of the header section when it has none.

    The header section ends at the first empty line, or at the first line
    that is neither a field nor its continuation (the body then starts
    there, and an empty line is added to separate it).  A header section
    longer than C{limit} octets is passed on as it is: nothing is added.

    @ivar added: the field names added (lower case), once known.
    """

    def __init__(self, limit: int, queueId: str, hostname: str, sender: str, when: float):
        self.limit = limit
        self.queueId = queueId
        self.hostname = hostname
        self.sender = sender
        self.when = when
        self.added: list[str] = []
        self._held = bytearray()
        self._scanned = 0
        self._seen: set[bytes] = set()
        self._inField = False
        self._done = False

    def feed(self, data: bytes) -> bytes:
        """
        @return: the text to pass on now (possibly empty).
        """
        if self._done:
            return data
        self._held += data
        while True:
            end = self._held.find(b"\n", self._scanned)
            if end < 0:
                break
            line = self._held[self._scanned : end]
            if line[:1] in (b" ", b"\t") and self._inField:
                pass  # RFC 5322 2.2.3: a folded continuation
            else:
                match = _FIELD.match(line)
                if match is None:
                    # An empty line, or the body starting without one.
                    return self._release(self._scanned, separate=bool(line))
                self._seen.add(match.group(1).lower())
                self._inField = True
            self._scanned = end + 1
        if len(self._held) > self.limit:
            # Too big to look through: keep nothing back, add nothing.
            self._done = True
            held, self._held = bytes(self._held), bytearray()
            return held
        return b""

    def finish(self) -> bytes:
        """
        The end of the message: what is still held, with the fields added
        when the message was only a header section (or empty).
        """
        if self._done:
            return b""
        return self._release(len(self._held), separate=False)

    def _release(self, at: int, separate: bool) -> bytes:
        self._done = True
        held, self._held = bytes(self._held), bytearray()
        fields = self._fields()
        if separate and fields:
            fields += b"\n"
        return held[:at] + fields + held[at:]

    def _fields(self) -> bytes:
        lines = []
        if b"date" not in self._seen:
            lines.append(f"Date: {rfc5322Date(self.when)}")
            self.added.append("date")
        if b"message-id" not in self._seen:
            stamp = datetime.fromtimestamp(self.when, timezone.utc).strftime("%Y%m%d%H%M%S")
            lines.append(f"Message-ID: <{self.queueId}.{stamp}@{self.hostname}>")
            self.added.append("message-id")
        if b"from" not in self._seen:
            # Postfix's cleanup(8): the envelope sender, or MAILER-DAEMON
            # for the null sender.
            lines.append(f"From: {self.sender or 'MAILER-DAEMON@' + self.hostname}")
            self.added.append("from")
        return "".join(line + "\n" for line in lines).encode("utf-8")
