"""
Our IMAP server's FETCH answers for the structure fixtures are Debian's
Dovecot's (C{dovecot-imapd}), item by item, byte for byte, over the wire
(the structure module is compared alone in tests/test_imap_structure.py;
this checks what the server makes of it: literals, names, partials).
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from tests.imap_dovecot import DovecotIMAP
from tests.imap_support import Harness
from tests.test_imap_commands import deliver, fetchValue

FIXTURES = Path(__file__).parent / "imap_fixtures"


class FetchComparisonTests(unittest.TestCase):
    """
    FETCH answers of our server for the structure fixtures are Dovecot's,
    item by item, byte for byte.
    """

    ITEMS = [
        (b"ENVELOPE", b"ENVELOPE"),
        (b"BODYSTRUCTURE", b"BODYSTRUCTURE"),
        (b"BODY", b"BODY"),
        (b"RFC822.SIZE", b"RFC822.SIZE"),
        (b"BODY.PEEK[]", b"BODY[]"),
        (b"BODY.PEEK[HEADER]", b"BODY[HEADER]"),
        (b"BODY.PEEK[TEXT]", b"BODY[TEXT]"),
        (b"BODY.PEEK[1]", b"BODY[1]"),
        (b"BODY.PEEK[1.MIME]", b"BODY[1.MIME]"),
        (b"BODY.PEEK[2]", b"BODY[2]"),
        (b"BODY.PEEK[HEADER.FIELDS (From Subject)]", b"BODY[HEADER.FIELDS (From Subject)]"),
        (b"BODY.PEEK[HEADER.FIELDS.NOT (To)]", b"BODY[HEADER.FIELDS.NOT (To)]"),
        (b"BODY.PEEK[]<10.20>", b"BODY[]<10>"),
        (b"BINARY.SIZE[1]", b"BINARY.SIZE[1]"),
    ]

    def test_fixtures(self):
        names = sorted(p.name for p in FIXTURES.glob("*.eml"))
        messages = [(FIXTURES / name).read_bytes() for name in names]
        dovecot = DovecotIMAP(self, messages)
        h = Harness(self)
        for data in messages:
            deliver(h, data)
        h.select()
        failures = []
        for seq, name in enumerate(names, 1):
            for item, responseName in self.ITEMS:
                theirs = dovecot._command(b"FETCH %d (%s)" % (seq, item))
                if not theirs[1].split(b" ")[1] == b"OK":
                    continue
                mine = h.command(b"f FETCH %d (%s)" % (seq, item))
                try:
                    expected = fetchValue(theirs[0], responseName)
                except ValueError:
                    continue
                got = fetchValue(mine, responseName) if b" " + responseName + b" " in mine else mine
                if got != expected:
                    failures.append(f"{name} {item!r}:\n  dovecot {expected!r}\n  maillab {got!r}")
        self.assertEqual(failures, [])
