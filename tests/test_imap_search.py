"""
Tests for L{twisted_maillab.imap.search} and L{twisted_maillab.imap.sort}:
SEARCH and SORT over the fixture corpus give the same messages as
Debian's Dovecot for the same Maildir (flags, internal dates, sizes,
header and body text keys), plus unit tests of the pieces.
"""

from __future__ import annotations

import calendar
import datetime
import io
import re

from twisted.trial import unittest

from tests.imap_dovecot import DovecotIMAP
from tests.test_imap_structure import corpus, crlf
from twisted_maillab.imap import messagetext
from twisted_maillab.imap import search as S
from twisted_maillab.imap.search import And, BadCharset, Key, MessageData, Not, Or, Searcher
from twisted_maillab.imap.sort import baseSubject, parseCriteria, sort
from twisted_maillab.imap.structure import parse

# Maildir info letters (Dovecot's) and internal dates given to fixtures.
FLAGS = {"plain.eml": "S", "mixed.eml": "FS", "rfc822.eml": "R", "groups.eml": "T", "folded.eml": "DS"}
_LETTERS = {"S": "\\Seen", "F": "\\Flagged", "R": "\\Answered", "T": "\\Deleted", "D": "\\Draft"}


def internalDate(index: int) -> float:
    # Noon UTC on consecutive days from 25 Nov 2026: far from midnight in
    # any zone the tests run in.
    return calendar.timegm((2026, 11, 25 + index, 12, 0, 0)) if index < 6 else calendar.timegm(
        (2026, 12, index - 5, 12, 0, 0)
    )


def date(text: str) -> datetime.date:
    return datetime.datetime.strptime(text, "%d-%b-%Y").date()


# (wire text for Dovecot, our program).
QUERIES = [
    ("ALL", Key("ALL")),
    ("SEEN", Key("SEEN")),
    ("UNSEEN", Key("UNSEEN")),
    ("FLAGGED", Key("FLAGGED")),
    ("ANSWERED", Key("ANSWERED")),
    ("DELETED", Key("DELETED")),
    ("UNDELETED DRAFT", And((Key("UNDELETED"), Key("DRAFT")))),
    ("NEW", Key("NEW")),
    ("OLD", Key("OLD")),
    ("RECENT", Key("RECENT")),
    ("LARGER 500", Key("LARGER", (500,))),
    ("SMALLER 300", Key("SMALLER", (300,))),
    ("UID 2:4,*", Key("UID", ("2:4,*",))),
    ("1,3:5,*", Key("SEQUENCE", ("1,3:5,*",))),
    ("7:5", Key("SEQUENCE", ([(7, 5)],))),
    ("BEFORE 28-Nov-2026", Key("BEFORE", (date("28-Nov-2026"),))),
    ("ON 28-Nov-2026", Key("ON", (date("28-Nov-2026"),))),
    ("SINCE 3-Dec-2026", Key("SINCE", (date("3-Dec-2026"),))),
    ("SENTBEFORE 2-Dec-2026", Key("SENTBEFORE", (date("2-Dec-2026"),))),
    ("SENTON 1-Dec-2026", Key("SENTON", (date("1-Dec-2026"),))),
    ("SENTSINCE 3-Dec-2026", Key("SENTSINCE", (date("3-Dec-2026"),))),
    ("FROM example.org", Key("FROM", (b"example.org",))),
    ('FROM "alice example"', Key("FROM", (b"alice example",))),
    ("TO bob", Key("TO", (b"bob",))),
    ("CC DAVE", Key("CC", (b"DAVE",))),
    ("BCC eve", Key("BCC", (b"eve",))),
    ("SUBJECT original", Key("SUBJECT", (b"original",))),
    ("SUBJECT understand", Key("SUBJECT", (b"understand",))),
    ("HEADER Message-ID <orig", Key("HEADER", (b"Message-ID", b"<orig"))),
    ('HEADER X-Absent ""', Key("HEADER", (b"X-Absent", b""))),
    ('HEADER content-type ""', Key("HEADER", (b"content-type", b""))),
    ("BODY needle", Key("BODY", (b"needle",))),
    ('BODY "soft broken"', Key("BODY", (b"soft broken",))),
    ("BODY HELLO", Key("BODY", (b"HELLO",))),
    ("BODY subject", Key("BODY", (b"subject",))),
    ("TEXT subject", Key("TEXT", (b"subject",))),
    ("TEXT AAECAwQFBgcICQoLDA0ODxAR", Key("TEXT", (b"AAECAwQFBgcICQoLDA0ODxAR",))),
    ("BODY uuencode", Key("BODY", (b"uuencode",))),
    # TEXT reads every header block (MIME part headers, encapsulated
    # messages' headers), BODY only decoded text parts.
    ("TEXT html-part", Key("TEXT", (b"html-part",))),
    ('TEXT "the HTML version"', Key("TEXT", (b"the HTML version",))),
    ("TEXT data.bin", Key("TEXT", (b"data.bin",))),
    ("BODY data.bin", Key("BODY", (b"data.bin",))),
    ("TEXT iso-8859-1", Key("TEXT", (b"iso-8859-1",))),
    ("TEXT from", Key("TEXT", (b"from",))),
    ("BODY from", Key("BODY", (b"from",))),
    ("BODY content-type", Key("BODY", (b"content-type",))),
    ("TEXT hello", Key("TEXT", (b"hello",))),
    ("BODY begin", Key("BODY", (b"begin",))),
    ("OR SEEN FLAGGED", Or(Key("SEEN"), Key("FLAGGED"))),
    ("NOT SEEN", Not(Key("SEEN"))),
    (
        "(OR FROM alice NOT SUBJECT group) LARGER 100",
        And((Or(Key("FROM", (b"alice",)), Not(Key("SUBJECT", (b"group",)))), Key("LARGER", (100,)))),
    ),
    ("NOT (BODY hello OR SEEN TO bob)", Not(And((Key("BODY", (b"hello",)), Or(Key("SEEN"), Key("TO", (b"bob",))))))),
]
UTF8_QUERIES = [
    ("SUBJECT café", Key("SUBJECT", ("café".encode(),))),
    ("SUBJECT CAFÉ", Key("SUBJECT", ("CAFÉ".encode(),))),
    ("BODY crème", Key("BODY", ("crème".encode(),))),
    ("BODY grüße", Key("BODY", ("grüße".encode(),))),
    ("BODY ünïcödé", Key("BODY", ("ünïcödé".encode(),))),
    ("FROM müller", Key("FROM", ("müller".encode(),))),
    ("TEXT köln", Key("TEXT", ("köln".encode(),))),
]
SORTS = [
    "ARRIVAL",
    "REVERSE ARRIVAL",
    "SIZE",
    "REVERSE SIZE",
    "DATE",
    "REVERSE DATE",
    "FROM",
    "TO",
    "CC",
    "SUBJECT",
    "REVERSE SUBJECT SIZE",
    "FROM REVERSE DATE",
]


class DovecotSearchTests(unittest.TestCase):
    """
    SEARCH and SORT answer what Dovecot answers for the same Maildir.
    """

    def setUp(self):
        messages = corpus()
        self.names = list(messages)
        self.data = [messages[name] for name in self.names]
        dates = [internalDate(i) for i in range(len(self.names))]
        flags = [FLAGS.get(name, "") for name in self.names]
        self.dovecot = DovecotIMAP(self, self.data, dates=dates, flags=flags)
        byContent = {crlf(data): i for i, data in enumerate(self.data)}
        uids = re.findall(rb"\* (\d+) FETCH \(UID (\d+)", self.dovecot.raw(b"FETCH 1:* (UID)"))
        self.messages = []
        self.files = {}
        for seq, uid in uids:
            seq, uid = int(seq), int(uid)
            index = byContent[self.dovecot.literal(seq, b"BODY.PEEK[]", b"BODY[]")]
            data = self.data[index]
            self.files[uid] = data
            letters = flags[index]
            self.messages.append(
                MessageData(
                    uid=uid,
                    seq=seq,
                    flags=frozenset({_LETTERS[c] for c in letters} | {"\\Recent"}),
                    internalDate=dates[index],
                    size=parse(io.BytesIO(data)).size,
                )
            )
        self.opened = []

    def openMessage(self, uid):
        self.opened.append(uid)
        return io.BytesIO(self.files[uid])

    def dovecotSearch(self, query: bytes) -> list[int]:
        answer = self.dovecot.raw(b"SEARCH " + query)
        return [int(n) for n in re.search(rb"\* SEARCH([ 0-9]*)", answer).group(1).split()]

    def compare(self, queries, charset, opener=None):
        failures = []
        for wire, program in queries:
            prefix = b"CHARSET UTF-8 " if charset == "UTF-8" else b""
            # 8-bit strings go as LITERAL+ literals.
            query = re.sub(rb"\S*[\x80-\xff]\S*", lambda m: b"{%d+}\r\n%s" % (len(m.group(0)), m.group(0)), wire.encode())
            theirs = self.dovecotSearch(prefix + query)
            openMessage = self.openMessage if opener is None else opener(program)
            mine = [m.seq for m in S.search(program, self.messages, openMessage, charset=charset)]
            if theirs != mine:
                failures.append(f"SEARCH {wire}: dovecot {theirs}, maillab {mine}")
        if failures:
            self.fail("\n".join(failures))

    def test_searchKeys(self):
        self.compare(QUERIES, "US-ASCII")

    def test_searchKeysThroughHeaderCache(self):
        """
        The same answers through the IMAP server's header cache, whose
        columns of decoded texts the search reads instead of each
        message: once filling it, once from it.
        """
        from twisted_maillab.imap.headercache import HeaderCache

        def keyNames(node) -> set:
            if isinstance(node, And):
                return set().union(*(keyNames(item) for item in node.items))
            if isinstance(node, Or):
                return keyNames(node.left) | keyNames(node.right)
            if isinstance(node, Not):
                return keyNames(node.item)
            return {node.name.upper()}

        class Folder:
            class mailboxes:
                path = "/maildir"

            name = "INBOX"
            uidValidity = 1

        cache = HeaderCache()

        def opener(program):
            return cache.opener(Folder, keyNames(program), self.openMessage)

        self.compare(QUERIES, "US-ASCII", opener)
        self.assertTrue(cache._columns)
        del self.opened[:]
        self.compare(QUERIES + UTF8_QUERIES, "UTF-8", opener)

    def test_searchUTF8(self):
        """
        Decoded text: RFC 2047 subjects, quoted-printable and base64
        bodies, Latin-1 text, 8-bit headers; case-insensitive beyond ASCII.
        """
        self.compare(UTF8_QUERIES, "UTF-8")

    def test_sort(self):
        failures = []
        for criteria in SORTS:
            answer = self.dovecot.raw(b"SORT (" + criteria.encode() + b") UTF-8 ALL")
            theirs = [int(n) for n in re.search(rb"\* SORT([ 0-9]*)", answer).group(1).split()]
            mine = [m.seq for m in sort(criteria.split(), self.messages, self.openMessage)]
            if theirs != mine:
                failures.append(f"SORT ({criteria}):\n  dovecot {theirs}\n  maillab {mine}")
        if failures:
            self.fail("\n".join(failures))

    def test_cheapKeysOpenNothing(self):
        """
        Flags, UIDs, sizes and internal dates are decided from the index
        data: no file is opened; a text key opens only what the cheap
        keys left.
        """
        S.search(And((Key("SEEN"), Key("LARGER", (100,)), Key("SINCE", (date("1-Nov-2026"),)))), self.messages, self.openMessage)
        self.assertEqual(self.opened, [])
        S.search(And((Key("FLAGGED"), Key("BODY", (b"x",)))), self.messages, self.openMessage)
        self.assertEqual(len(self.opened), 1)


class SearcherTests(unittest.TestCase):
    def test_badCharset(self):
        """
        Only UTF-8 and US-ASCII are search charsets (NO [BADCHARSET]).
        """
        self.assertRaises(BadCharset, Searcher, Key("ALL"), "ISO-8859-1")
        Searcher(Key("ALL"), "utf-8")

    def test_badPrograms(self):
        """
        Unknown keys and malformed sets or dates are refused when the
        program is compiled, before any message is looked at.
        """
        self.assertRaises(ValueError, Searcher, Key("MODSEQ", (1,)))
        self.assertRaises(ValueError, Searcher, Not(Key("UID", ("1:x",))))
        self.assertRaises(ValueError, Searcher, Key("SINCE", ("31-Foo-2026",)))
        inside = MessageData(uid=1, seq=1, internalDate=internalDate(3))
        self.assertEqual(S.search(Key("ON", (b"28-Nov-2026",)), [inside], self.fail), [inside])

    def test_keywordsAndStar(self):
        """
        Keywords match case-insensitively; C{*} is the largest UID or
        sequence number, and C{n:*} includes it even when n is larger.
        """
        messages = [
            MessageData(uid=10, seq=1, flags=frozenset({"$Junk"})),
            MessageData(uid=20, seq=2, flags=frozenset({"\\Seen"})),
        ]
        nothing = lambda uid: self.fail("opened")
        self.assertEqual(S.search(Key("KEYWORD", (b"$junk",)), messages, nothing), messages[:1])
        self.assertEqual(S.search(Key("UNKEYWORD", ("$JUNK",)), messages, nothing), messages[1:])
        self.assertEqual(S.search(Key("UID", ("*",)), messages, nothing), messages[1:])
        self.assertEqual(S.search(Key("UID", ("30:*",)), messages, nothing), messages[1:])
        self.assertEqual(S.search(Key("SEQUENCE", ("2:*",)), messages, nothing), messages[1:])
        self.assertEqual(S.search(And((Key("NEW"),)), messages, nothing), [])

    def test_matchAcrossChunks(self):
        """
        A body match straddling two 64 KiB reads is found.
        """
        body = b"x" * (messagetext._READ - 3) + b"needle" + b"\n"
        messages = [MessageData(uid=1, seq=1)]
        program = Key("BODY", (b"NEEDLE",))
        found = S.search(program, messages, lambda uid: io.BytesIO(b"Subject: s\n\n" + body))
        self.assertEqual(found, messages)
        broken = body.replace(b"needle", b"needl\n")
        self.assertEqual(S.search(program, messages, lambda uid: io.BytesIO(b"Subject: s\n\n" + broken)), [])

    def test_base64AcrossChunks(self):
        """
        Base64 text is decoded across reads before matching.
        """
        import base64

        text = ("é" * 40000 + "needle" + "é" * 10).encode()
        data = b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(text)
        messages = [MessageData(uid=1, seq=1)]
        found = S.search(Key("BODY", ("ÉNEEDLE".encode(),)), messages, lambda uid: io.BytesIO(data), charset="UTF-8")
        self.assertEqual(found, messages)

    def test_vanishedMessageLeftOut(self):
        def gone(uid):
            raise FileNotFoundError(uid)

        messages = [MessageData(uid=1, seq=1)]
        self.assertEqual(S.search(Key("BODY", (b"x",)), messages, gone), [])


class SortTests(unittest.TestCase):
    def test_baseSubject(self):
        """
        RFC 5256 2.1 examples and edge cases.
        """
        cases = {
            "Re: hello": "hello",
            "RE: Re: re: hello": "hello",
            "Fwd: [list] Re: hello (fwd)": "hello",
            "[fwd: Re: hello]": "hello",
            "[list] hello": "hello",
            "[only a blob]": "[only a blob]",
            "Re:   spaced\t out  ": "spaced out",
            "Fw: x (fwd) (fwd)": "x",
            "Re [blob]: hi": "hi",
            "": "",
        }
        for subject, base in cases.items():
            self.assertEqual(baseSubject(subject), base, subject)
        self.assertEqual(baseSubject(b"Re: =?UTF-8?Q?Caf=C3=A9?="), "Café")

    def test_criteria(self):
        self.assertEqual(parseCriteria(["reverse", "DATE", "SUBJECT"]), [("DATE", True), ("SUBJECT", False)])
        self.assertRaises(ValueError, parseCriteria, ["REVERSE"])
        self.assertRaises(ValueError, parseCriteria, ["THREAD"])
