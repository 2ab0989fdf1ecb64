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
        (b"BINARY.PEEK[1]", b"BINARY[1]"),
        (b"BINARY.PEEK[2]", b"BINARY[2]"),
        (b"BINARY.PEEK[1]<0.10>", b"BINARY[1]<0>"),
    ]

    # Where we knowingly differ: Dovecot answers BINARY.SIZE 0 for an
    # encapsulated message sent with a base64 or quoted-printable
    # Content-Transfer-Encoding (it does not decode message/rfc822); the
    # structure module decodes it, as RFC 3516 describes.
    DIFFERENT = {("rfc822base64.eml", b"BINARY.SIZE[1]"), ("rfc822qp.eml", b"BINARY.SIZE[1]")}

    def test_fixtures(self):
        names = sorted(p.name for p in FIXTURES.glob("*.eml"))
        messages = [(FIXTURES / name).read_bytes() for name in names]
        dovecot = DovecotIMAP(self, messages)
        h = Harness(self)
        for data in messages:
            deliver(h, data)
        h.select()
        # Dovecot numbers the files in its own order: match by content.
        byContent = {data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"): i for i, data in enumerate(messages)}
        theirSeq = {}
        for seq in range(1, len(names) + 1):
            content = dovecot.literal(seq, b"BODY.PEEK[]", b"BODY[]")
            index = byContent.get(content)
            if index is None and not content.endswith(b"\r\n"):
                index = byContent.get(content + b"\r\n")
            theirSeq[index] = seq
        self.assertEqual(sorted(theirSeq, key=lambda i: (i is None, i)), list(range(len(names))))
        # So does the store (UIDs follow the order it finds the files in).
        ourSeq = {}
        for seq in range(1, len(names) + 1):
            content = fetchValue(h.command(b"f FETCH %d BODY.PEEK[]" % seq), b"BODY[]")
            content = content[content.index(b"\r\n") + 2 :]
            index = byContent.get(content)
            if index is None:
                index = byContent.get(content + b"\r\n")
            ourSeq[index] = seq
        self.assertEqual(sorted(ourSeq, key=lambda i: (i is None, i)), list(range(len(names))))
        failures = []
        compared = 0
        for index, name in enumerate(names):
            seq = ourSeq[index]
            for item, responseName in self.ITEMS:
                if (name, item) in self.DIFFERENT:
                    continue
                theirs = dovecot._command(b"FETCH %d (%s)" % (theirSeq[index], item))
                if not theirs[1].split(b" ")[1] == b"OK":
                    continue
                mine = h.command(b"f FETCH %d (%s)" % (seq, item))
                try:
                    expected = fetchValue(theirs[0], responseName)
                except ValueError:
                    continue
                try:
                    got = fetchValue(mine, responseName)
                except ValueError:
                    got = mine
                compared += 1
                if got != expected:
                    failures.append(f"{name} {item!r}:\n  dovecot {expected!r}\n  maillab {got!r}")
        self.maxDiff = None
        self.assertEqual(failures, [])
        # Every fixture, and most items of each, were compared.
        self.assertGreater(compared, len(names) * 10)
