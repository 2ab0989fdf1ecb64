"""
IMAP command parser: the example commands of RFC 3501 section 6, RFC 9051
and the extensions' RFCs, the grammar's corners (RFC 3501 section 9),
sequence sets, modified UTF-7, and hostile input, which must only ever
raise the parser's own errors.
"""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime, timedelta, timezone

from twisted.trial import unittest

from twisted_maillab.imap import mutf7
from twisted_maillab.imap.parser import (
    Append,
    AppendMessage,
    Authenticate,
    Command,
    CommandAssembler,
    Continuation,
    Copy,
    Create,
    Enable,
    Fetch,
    FetchAtt,
    Id,
    Line,
    LineTooLong,
    List,
    LiteralTooBig,
    Login,
    Mailbox,
    ParseError,
    Rename,
    Search,
    SearchKey,
    Section,
    Sequence,
    SequenceSet,
    Sort,
    Status,
    Store,
    isDone,
    parseCommand,
    parseDate,
    parseDateTime,
    parseFlag,
    parseSequenceSet,
    parseTaggedExt,
)

MESSAGE_310 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
PDT = timezone(timedelta(hours=-7))


def S(*ranges):
    return SequenceSet(tuple(ranges))


def K(key, *args):
    return SearchKey(key, args)


def AND(*keys):
    return SearchKey("AND", keys)


class ParserTestCase(unittest.TestCase):
    def parses(self, data, tag, name, args=None, uid=False, **kw):
        command = parseCommand(data, **kw)
        self.assertEqual(command, Command(tag, name, args, uid))
        return command

    def fails(self, data, tag=None, contains=None, **kw):
        with self.assertRaises(ParseError) as caught:
            parseCommand(data, **kw)
        self.assertEqual(caught.exception.tag, tag)
        if contains:
            self.assertIn(contains, caught.exception.message)
        return caught.exception


class RFC3501ExamplesTests(ParserTestCase):
    """
    Every client command of RFC 3501 section 6's examples.
    """

    def test_anyState(self):
        self.parses(b"abcd CAPABILITY\r\n", "abcd", "CAPABILITY")
        self.parses(b"a002 NOOP\r\n", "a002", "NOOP")
        self.parses(b"A023 LOGOUT\r\n", "A023", "LOGOUT")

    def test_notAuthenticated(self):
        self.parses(b"a001 STARTTLS\r\n", "a001", "STARTTLS")
        self.parses(b"A001 AUTHENTICATE GSSAPI\r\n", "A001", "AUTHENTICATE", Authenticate("GSSAPI"))
        self.parses(b"a001 LOGIN SMITH SESAME\r\n", "a001", "LOGIN", Login(b"SMITH", b"SESAME"))

    def test_select(self):
        self.parses(b"A142 SELECT INBOX\r\n", "A142", "SELECT", Mailbox("INBOX"))
        self.parses(b"A932 EXAMINE blurdybloop\r\n", "A932", "EXAMINE", Mailbox("blurdybloop"))

    def test_createDeleteRename(self):
        self.parses(b"A003 CREATE owatagusiam/\r\n", "A003", "CREATE", Create("owatagusiam/"))
        self.parses(b"A004 CREATE owatagusiam/blurdybloop\r\n", "A004", "CREATE", Create("owatagusiam/blurdybloop"))
        self.parses(b"A683 DELETE blurdybloop\r\n", "A683", "DELETE", Mailbox("blurdybloop"))
        self.parses(b"A685 DELETE foo/bar\r\n", "A685", "DELETE", Mailbox("foo/bar"))
        self.parses(b"A683 RENAME blurdybloop sarasota\r\n", "A683", "RENAME", Rename("blurdybloop", "sarasota"))
        self.parses(b"A685 RENAME foo zowie\r\n", "A685", "RENAME", Rename("foo", "zowie"))

    def test_subscriptions(self):
        self.parses(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n", "A002", "SUBSCRIBE", Mailbox("#news.comp.mail.mime"))
        self.parses(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", "A002", "UNSUBSCRIBE", Mailbox("#news.comp.mail.mime"))

    def test_list(self):
        self.parses(b'A101 LIST "" ""\r\n', "A101", "LIST", List("", ("",)))
        self.parses(b'A102 LIST #news.comp.mail.misc ""\r\n', "A102", "LIST", List("#news.comp.mail.misc", ("",)))
        self.parses(b'A103 LIST /usr/staff/jones ""\r\n', "A103", "LIST", List("/usr/staff/jones", ("",)))
        self.parses(b"A202 LIST ~/Mail/ %\r\n", "A202", "LIST", List("~/Mail/", ("%",)))
        self.parses(b'A682 LIST "" *\r\n', "A682", "LIST", List("", ("*",)))

    def test_lsub(self):
        self.parses(b'A002 LSUB "#news." "comp.mail.*"\r\n', "A002", "LSUB", List("#news.", ("comp.mail.*",)))
        self.parses(b'A003 LSUB "#news." "comp.%"\r\n', "A003", "LSUB", List("#news.", ("comp.%",)))

    def test_status(self):
        self.parses(
            b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
            "A042",
            "STATUS",
            Status("blurdybloop", ("UIDNEXT", "MESSAGES")),
        )

    def test_append(self):
        data = b"A003 APPEND saved-messages (\\Seen) {310}\r\n" + MESSAGE_310 + b"\r\n"
        self.assertEqual(len(MESSAGE_310), 310)
        self.parses(data, "A003", "APPEND", Append("saved-messages", (AppendMessage(("\\Seen",), None, MESSAGE_310),)))

    def test_selectedState(self):
        for line, tag, name in [
            (b"FXXZ CHECK", "FXXZ", "CHECK"),
            (b"A341 CLOSE", "A341", "CLOSE"),
            (b"A202 EXPUNGE", "A202", "EXPUNGE"),
        ]:
            self.parses(line + b"\r\n", tag, name)

    def test_search(self):
        self.parses(
            b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
            "A282",
            "SEARCH",
            Search(None, AND(K("FLAGGED"), K("SINCE", date(1994, 2, 1)), K("NOT", K("FROM", "Smith")))),
        )
        self.parses(
            b'A283 SEARCH TEXT "string not in mailbox"\r\n',
            "A283",
            "SEARCH",
            Search(None, AND(K("TEXT", "string not in mailbox"))),
        )
        self.parses(
            b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n",
            "A284",
            "SEARCH",
            Search("UTF-8", AND(K("TEXT", "XXXXXX"))),
        )

    def test_fetch(self):
        self.parses(
            b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
            "A654",
            "FETCH",
            Fetch(S((2, 4)), (FetchAtt("FLAGS"), FetchAtt("BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM"))))),
        )

    def test_store(self):
        self.parses(b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", "A003", "STORE", Store(S((2, 4)), "+", False, ("\\Deleted",)))

    def test_copy(self):
        self.parses(b"A003 COPY 2:4 MEETING\r\n", "A003", "COPY", Copy(S((2, 4)), "MEETING"))

    def test_uid(self):
        self.parses(
            b"A999 UID FETCH 4827313:4828442 FLAGS\r\n",
            "A999",
            "FETCH",
            Fetch(S((4827313, 4828442)), (FetchAtt("FLAGS"),)),
            uid=True,
        )

    def test_unknownCommand(self):
        # RFC 3501 6.5.1: an X command the server does not know is BAD
        self.fails(b"a442 XPIG-LATIN\r\n", "a442", "unknown command XPIG-LATIN")


class ExtensionExamplesTests(ParserTestCase):
    """
    The examples of RFC 9051 and of the extensions the server offers.
    """

    def test_saslIR(self):
        # RFC 4959 section 4
        self.parses(
            b"a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
            "a01",
            "AUTHENTICATE",
            Authenticate("PLAIN", b"test\x00test\x00test"),
        )
        self.parses(b"a02 AUTHENTICATE PLAIN =\r\n", "a02", "AUTHENTICATE", Authenticate("PLAIN", b""))
        self.fails(b"a03 AUTHENTICATE PLAIN dGVzd=AB\r\n", "a03")
        self.fails(b"a04 AUTHENTICATE PLAIN dGVzdA\r\n", "a04", "base64")
        self.fails(b"a05 AUTHENTICATE PLAIN \r\n", "a05", "empty")
        self.fails(b"a06 AUTHENTICATE PLAIN =x\r\n", "a06")

    def test_literalPlus(self):
        # RFC 7888 section 4
        self.parses(b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n", "A001", "LOGIN", Login(b"FRED FOOBAR", b"fat man"))

    def test_selectParameters(self):
        # RFC 7162 section 3.2.5 / 3.2.5.2: accepted, for the server to ignore
        self.parses(b"a SELECT INBOX (CONDSTORE)\r\n", "a", "SELECT", Mailbox("INBOX", (b"CONDSTORE",)))
        command = self.parses(
            b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
            "A02",
            "SELECT",
            Mailbox("INBOX", (b"QRESYNC", (b"67890007", b"20050715194045000", b"41,43:211,214:541"))),
        )
        self.assertEqual(command.args.mailbox, "INBOX")
        self.fails(b"a SELECT INBOX (CONDSTORE\r\n", "a")

    def test_createSpecialUse(self):
        # RFC 6154 section 5.2
        self.parses(b"t1 CREATE MySpecialArchive (USE (\\Archive))\r\n", "t1", "CREATE", Create("MySpecialArchive", ("\\Archive",)))
        self.parses(b"t2 CREATE Drafts (USE (\\drafts \\SENT))\r\n", "t2", "CREATE", Create("Drafts", ("\\Drafts", "\\Sent")))
        error = self.fails(b"t3 CREATE x (USE (\\Inbox))\r\n", "t3")
        self.assertEqual((error.status, error.code), ("NO", "USEATTR"))
        self.fails(b"t4 CREATE x (COLOR red)\r\n", "t4", "USE")

    def test_listExtended(self):
        # RFC 5258 section 5, RFC 5819 section 5, RFC 6154 section 5
        cases = [
            (b'A02 LIST (SUBSCRIBED) "" "*"', List("", ("*",), frozenset({"SUBSCRIBED"}), extended=True)),
            (b'A03 LIST () "" "%" RETURN (CHILDREN)', List("", ("%",), returnOptions=frozenset({"CHILDREN"}), extended=True)),
            (
                b'A05 LIST (REMOTE SUBSCRIBED) "/" "*"',
                List("/", ("*",), frozenset({"REMOTE", "SUBSCRIBED"}), extended=True),
            ),
            (
                b'A06 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
                List("", ("%",), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}), extended=True),
            ),
            (b'A07 LIST "" ("INBOX" "Drafts" "Sent/%")', List("", ("INBOX", "Drafts", "Sent/%"), extended=True)),
            (
                b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
                List("", ("%",), returnOptions=frozenset({"STATUS"}), statusItems=("MESSAGES", "UNSEEN"), extended=True),
            ),
            (b't1 LIST "" "%" RETURN (SPECIAL-USE)', List("", ("%",), returnOptions=frozenset({"SPECIAL-USE"}), extended=True)),
            (b't3 LIST (SPECIAL-USE) "" "*"', List("", ("*",), frozenset({"SPECIAL-USE"}), extended=True)),
        ]
        for line, args in cases:
            command = parseCommand(line + b"\r\n")
            self.assertEqual(command.args, args, line)

    def test_listExtendedErrors(self):
        # RFC 5258 3.1: unknown options and a lone RECURSIVEMATCH are BAD
        self.fails(b'a LIST (BOGUS) "" "*"\r\n', "a", "BOGUS")
        self.fails(b'a LIST (RECURSIVEMATCH) "" "*"\r\n', "a", "RECURSIVEMATCH")
        self.fails(b'a LIST (REMOTE RECURSIVEMATCH) "" "*"\r\n', "a", "RECURSIVEMATCH")
        self.fails(b'a LIST "" "*" RETURN (BOGUS)\r\n', "a", "BOGUS")
        self.fails(b'a LIST "" "*" RETURN (STATUS (FOO))\r\n', "a", "FOO")
        self.fails(b'a LIST "" "*" ALSO (CHILDREN)\r\n', "a", "RETURN")

    def test_esearch(self):
        # RFC 4731 section 3.1 and RFC 9051 6.4.4
        self.parses(
            b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
            "A282",
            "SEARCH",
            Search(None, AND(K("FLAGGED"), K("SINCE", date(1994, 2, 1)), K("NOT", K("FROM", "Smith"))), ("MIN", "COUNT")),
        )
        self.parses(b"A283 SEARCH RETURN () FLAGGED\r\n", "A283", "SEARCH", Search(None, AND(K("FLAGGED")), ("ALL",)))
        self.parses(
            b"A284 UID SEARCH RETURN (MIN MAX ALL) CHARSET US-ASCII 1:5000\r\n",
            "A284",
            "SEARCH",
            Search("US-ASCII", AND(K("SEQUENCE", S((1, 5000)))), ("MIN", "MAX", "ALL")),
            uid=True,
        )
        self.fails(b"A285 SEARCH RETURN (SAVE) ALL\r\n", "A285", "SAVE")

    def test_sort(self):
        # RFC 5256 section 3
        self.parses(
            b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
            "A282",
            "SORT",
            Sort(((False, "SUBJECT"),), "UTF-8", AND(K("SINCE", date(1994, 2, 1)))),
        )
        self.parses(
            b"C283 UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n",
            "C283",
            "SORT",
            Sort(((False, "SUBJECT"), (True, "DATE")), "UTF-8", AND(K("ALL"))),
            uid=True,
        )
        self.parses(
            b'D283 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"\r\n',
            "D283",
            "SORT",
            Sort(((False, "SUBJECT"),), "US-ASCII", AND(K("TEXT", "not in mailbox"))),
        )
        self.fails(b"a SORT () UTF-8 ALL\r\n", "a")
        self.fails(b"a SORT (NAME) UTF-8 ALL\r\n", "a", "NAME")
        self.fails(b"a SORT (DATE) ALL\r\n", "a")

    def test_uidplusMoveUnselect(self):
        # RFC 4315 2.1, RFC 6851 4.4, RFC 3691 3
        self.parses(b"A003 UID EXPUNGE 3000:3002\r\n", "A003", "EXPUNGE", Sequence(S((3000, 3002))), uid=True)
        self.parses(b"a UID MOVE 42:69 foo\r\n", "a", "MOVE", Copy(S((42, 69)), "foo"), uid=True)
        self.parses(b"a MOVE 1:* Trash\r\n", "a", "MOVE", Copy(S((1, None)), "Trash"))
        self.parses(b"A342 UNSELECT\r\n", "A342", "UNSELECT")
        self.fails(b"a UID EXPUNGE\r\n", "a")
        self.fails(b"a UID NOOP\r\n", "a", "UID NOOP")

    def test_idle(self):
        # RFC 2177 section 3
        self.parses(b"A002 IDLE\r\n", "A002", "IDLE")
        self.assertTrue(isDone(b"DONE\r\n"))
        self.assertTrue(isDone(b"done"))
        for line in (b"DONE NOW\r\n", b"A003 NOOP\r\n", b"\r\n", b"DON", b" DONE"):
            self.assertFalse(isDone(line), line)

    def test_id(self):
        # RFC 2971 section 3.3
        self.parses(
            b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")\r\n',
            "a023",
            "ID",
            Id({"name": "sodr", "version": "19.34", "vendor": "Pink Floyd Music Limited"}),
        )
        self.parses(b"a024 ID NIL\r\n", "a024", "ID", Id(None))
        self.parses(b'a025 ID ("os" NIL)\r\n', "a025", "ID", Id({"os": None}))
        self.fails(b'a026 ID ("name")\r\n', "a026")
        self.fails(b"a027 ID\r\n", "a027")

    def test_enableNamespace(self):
        # RFC 5161 3.1, RFC 2342 5
        self.parses(b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n", "t2", "ENABLE", Enable(("CONDSTORE", "X-GOOD-IDEA")))
        self.parses(b"a ENABLE utf8=accept\r\n", "a", "ENABLE", Enable(("UTF8=ACCEPT",)))
        self.fails(b"t3 ENABLE\r\n", "t3")
        self.parses(b"A001 NAMESPACE\r\n", "A001", "NAMESPACE")

    def test_multiappend(self):
        # RFC 3502 section 6
        second = b"Subject: two\r\n\r\nbody\r\n"
        data = (
            b"A003 APPEND saved-messages (\\Seen) {310}\r\n"
            + MESSAGE_310
            + b' (\\Seen) " 1-Aug-2002 22:00:00 +0200" {%d}\r\n' % len(second)
            + second
            + b"\r\n"
        )
        when = datetime(2002, 8, 1, 22, 0, 0, tzinfo=timezone(timedelta(hours=2)))
        self.parses(
            data,
            "A003",
            "APPEND",
            Append("saved-messages", (AppendMessage(("\\Seen",), None, MESSAGE_310), AppendMessage(("\\Seen",), when, second))),
        )

    def test_appendVariants(self):
        # RFC 9051 6.3.12: flags and date are both optional; literal8 is RFC 3516's
        self.parses(b"a APPEND INBOX {3}\r\nabc\r\n", "a", "APPEND", Append("INBOX", (AppendMessage((), None, b"abc"),)))
        when = datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT)
        self.parses(
            b'a APPEND Drafts "17-Jul-1996 02:44:25 -0700" {3+}\r\nabc\r\n',
            "a",
            "APPEND",
            Append("Drafts", (AppendMessage((), when, b"abc"),)),
        )
        self.parses(
            b"a APPEND Drafts () ~{4}\r\na\x00bc\r\n", "a", "APPEND", Append("Drafts", (AppendMessage((), None, b"a\x00bc", True),))
        )
        self.fails(b"a APPEND Drafts {4}\r\na\x00bc\r\n", "a", "NUL")
        self.fails(b"a APPEND Drafts (\\Seen)\r\n", "a")
        self.fails(b"a APPEND Drafts\r\n", "a", "literal")
        self.fails(b'a APPEND Drafts "message"\r\n', "a", "date-time")


class RFC9051ExamplesTests(ParserTestCase):
    """
    RFC 9051's examples beyond RFC 3501's.
    """

    def test_status(self):
        self.parses(
            b"A043 STATUS blurdybloop (MESSAGES SIZE DELETED UNSEEN UIDVALIDITY RECENT)\r\n",
            "A043",
            "STATUS",
            Status("blurdybloop", ("MESSAGES", "SIZE", "DELETED", "UNSEEN", "UIDVALIDITY", "RECENT")),
        )
        self.fails(b"A044 STATUS blurdybloop ()\r\n", "A044")
        self.fails(b"A045 STATUS blurdybloop (HIGHESTMODSEQ)\r\n", "A045", "HIGHESTMODSEQ")

    def test_search(self):
        privet = "\u041f\u0440\u0438\u0432\u0435\u0442"
        raw = privet.encode("utf-8")
        self.assertEqual(len(raw), 12)
        self.parses(
            b"A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
            "A283",
            "SEARCH",
            Search(None, AND(K("FLAGGED"), K("SINCE", date(1994, 2, 1)), K("NOT", K("FROM", "Smith"))), ("ALL",)),
        )
        self.parses(b"A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n" + raw + b"\r\n", "A285", "SEARCH", Search("UTF-8", AND(K("TEXT", privet))))
        self.parses(b"A286 SEARCH CHARSET UTF-8 TEXT {12+}\r\n" + raw + b"\r\n", "A286", "SEARCH", Search("UTF-8", AND(K("TEXT", privet))))

    def test_list(self):
        self.parses(
            b'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)\r\n',
            "A04",
            "LIST",
            List("", ("%",), frozenset({"REMOTE"}), frozenset({"CHILDREN"}), extended=True),
        )
        self.parses(b'A03 LIST () "" "%" RETURN ()\r\n', "A03", "LIST", List("", ("%",), extended=True))

    def test_idleAndNamespace(self):
        self.parses(b"A001 NAMESPACE\r\n", "A001", "NAMESPACE")
        self.parses(b"A002 IDLE\r\n", "A002", "IDLE")


class FetchTests(ParserTestCase):
    def items(self, text):
        return parseCommand(b"a FETCH 1 " + text + b"\r\n").args.items

    def test_macros(self):
        names = lambda text: [i.name for i in self.items(text)]  # noqa: E731
        self.assertEqual(names(b"ALL"), ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"])
        self.assertEqual(names(b"fast"), ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])
        self.assertEqual(names(b"FULL"), ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"])
        # macros are not fetch-atts: they cannot appear in a list
        self.fails(b"a FETCH 1 (ALL)\r\n", "a", "ALL")

    def test_simpleItems(self):
        for name in "FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT".split():
            self.assertEqual(self.items(name.lower().encode()), (FetchAtt(name),))

    def test_sections(self):
        cases = {
            b"BODY[]": FetchAtt("BODY", Section()),
            b"BODY.PEEK[]": FetchAtt("BODY", Section(), peek=True),
            b"BODY[HEADER]": FetchAtt("BODY", Section((), "HEADER")),
            b"body[text]": FetchAtt("BODY", Section((), "TEXT")),
            b"BODY[1]": FetchAtt("BODY", Section((1,))),
            b"BODY[1.2.3]": FetchAtt("BODY", Section((1, 2, 3))),
            b"BODY[3.HEADER]": FetchAtt("BODY", Section((3,), "HEADER")),
            b"BODY[4.2.TEXT]": FetchAtt("BODY", Section((4, 2), "TEXT")),
            b"BODY[4.2.MIME]": FetchAtt("BODY", Section((4, 2), "MIME")),
            b"BODY[HEADER.FIELDS.NOT (Received X-Spam)]": FetchAtt("BODY", Section((), "HEADER.FIELDS.NOT", ("RECEIVED", "X-SPAM"))),
            b'BODY.PEEK[2.HEADER.FIELDS ("Subject" {2}\r\nTo)]': FetchAtt("BODY", Section((2,), "HEADER.FIELDS", ("SUBJECT", "TO")), peek=True),
            b"BODY[]<0.2048>": FetchAtt("BODY", Section(), (0, 2048)),
            b"BODY.PEEK[TEXT]<100.99999999999>": FetchAtt("BODY", Section((), "TEXT"), (100, 99999999999), True),
            b"BINARY[]": FetchAtt("BINARY", Section()),
            b"BINARY.PEEK[1.2]<0.100>": FetchAtt("BINARY", Section((1, 2)), (0, 100), True),
            b"BINARY.SIZE[1]": FetchAtt("BINARY.SIZE", Section((1,)), peek=True),
        }
        for text, att in cases.items():
            self.assertEqual(self.items(text), (att,), text)

    def test_list(self):
        items = self.items(b"(FLAGS UID BODY.PEEK[HEADER.FIELDS (From To Subject)]<0.2048> RFC822.SIZE)")
        self.assertEqual(
            items,
            (
                FetchAtt("FLAGS"),
                FetchAtt("UID"),
                FetchAtt("BODY", Section((), "HEADER.FIELDS", ("FROM", "TO", "SUBJECT")), (0, 2048), True),
                FetchAtt("RFC822.SIZE"),
            ),
        )

    def test_responseName(self):
        # RFC 3501 7.4.2: the reply names BODY[...] (never .PEEK) and only the origin of a partial
        self.assertEqual(self.items(b"BODY.PEEK[1.TEXT]<0.100>")[0].responseName(), b"BODY[1.TEXT]<0>")
        self.assertEqual(
            self.items(b"BODY[HEADER.FIELDS (Date From)]")[0].responseName(), b"BODY[HEADER.FIELDS (DATE FROM)]"
        )
        self.assertEqual(self.items(b"BINARY.SIZE[2]")[0].responseName(), b"BINARY.SIZE[2]")
        self.assertEqual(self.items(b"rfc822.size")[0].responseName(), b"RFC822.SIZE")
        self.assertEqual(self.items(b"BODY[]")[0].responseName(), b"BODY[]")

    def test_errors(self):
        for text in [
            b"BODY[MIME]",  # MIME needs a part (RFC 3501 section-text)
            b"BODY[0]",
            b"BODY[1.]",
            b"BODY[HEADER.FIELDS]",
            b"BODY[HEADER.FIELDS ()]",
            b"BODY[HEADER.FIELDS (From]",
            b"BODY[1.BOGUS]",
            b"BODY[]<0.0>",
            b"BODY[]<0>",
            b"BODY[]<1.99999999999999999999>",
            b"BODY[",
            b"BINARY[HEADER]",  # section-binary is part numbers only (RFC 3516)
            b"BINARY[1.TEXT]",
            b"BINARY.SIZE[1]<0.10>",
            b"FLAGS[]",
            b"RFC822.BOGUS",
            b"()",
            b"(FLAGS",
            b"(FLAGS))",
            b"(FLAGS  UID)",
            b"",
        ]:
            self.fails(b"a FETCH 1 " + text + b"\r\n", "a")
        self.fails(b"a FETCH FLAGS\r\n", "a")

    def test_uidFetch(self):
        command = parseCommand(b"a UID FETCH 1:* (FLAGS)\r\n")
        self.assertEqual((command.name, command.uid, command.args.sequenceSet), ("FETCH", True, S((1, None))))


class StoreTests(ParserTestCase):
    def test_modes(self):
        cases = {
            b"FLAGS (\\Seen)": ("", False, ("\\Seen",)),
            b"+FLAGS (\\Deleted \\Flagged)": ("+", False, ("\\Deleted", "\\Flagged")),
            b"-FLAGS.SILENT (\\seen)": ("-", True, ("\\Seen",)),
            b"flags.silent ()": ("", True, ()),
            b"+FLAGS \\Answered": ("+", False, ("\\Answered",)),
            b"+FLAGS \\Answered $Forwarded Junk": ("+", False, ("\\Answered", "$Forwarded", "Junk")),
        }
        for text, (mode, silent, flags) in cases.items():
            command = parseCommand(b"a STORE 1,3 " + text + b"\r\n")
            self.assertEqual(command.args, Store(S((1, 1), (3, 3)), mode, silent, flags), text)

    def test_errors(self):
        for text in [b"FLAG (\\Seen)", b"*FLAGS (\\Seen)", b"+FLAGS.LOUD (\\Seen)", b"+FLAGS", b"+FLAGS (\\)", b"+FLAGS (a", b"+FLAGS (\\Seen) x("]:
            self.fails(b"a STORE 1 " + text + b"\r\n", "a")

    def test_parseFlag(self):
        self.assertEqual(parseFlag(b"\\SEEN"), "\\Seen")
        self.assertEqual(parseFlag(b"\\answered"), "\\Answered")
        self.assertEqual(parseFlag(b"\\Recent"), "\\Recent")
        self.assertEqual(parseFlag(b"\\X-Ext"), "\\X-Ext")
        self.assertEqual(parseFlag(b"$MDNSent"), "$MDNSent")
        for bad in (b"\\", b"a b", b"a(", b"\\\\x", b"\xe9t\xe9", b""):
            self.assertRaises(ParseError, parseFlag, bad)


class SearchTests(ParserTestCase):
    def criteria(self, text, **kw):
        return parseCommand(b"a SEARCH " + text + b"\r\n", **kw).args.criteria

    def test_everyKey(self):
        # RFC 3501 section 6.4.4, each key and its argument type
        cases = {
            b"ALL": K("ALL"),
            b"ANSWERED": K("ANSWERED"),
            b"BCC bob": K("BCC", "bob"),
            b"BEFORE 1-Feb-1994": K("BEFORE", date(1994, 2, 1)),
            b'BODY "a b"': K("BODY", "a b"),
            b"CC {3}\r\nx y": K("CC", "x y"),
            b"DELETED": K("DELETED"),
            b"DRAFT": K("DRAFT"),
            b"FLAGGED": K("FLAGGED"),
            b"FROM Smith": K("FROM", "Smith"),
            b"HEADER Message-ID <x@y>": K("HEADER", "Message-ID", "<x@y>"),
            b'HEADER X-Spam ""': K("HEADER", "X-Spam", ""),
            b"KEYWORD $Forwarded": K("KEYWORD", "$Forwarded"),
            b"LARGER 4294967295": K("LARGER", 4294967295),
            b"NEW": K("NEW"),
            b"NOT SEEN": K("NOT", K("SEEN")),
            b"OLD": K("OLD"),
            b'ON "01-Jan-2000"': K("ON", date(2000, 1, 1)),
            b"OR SEEN FLAGGED": K("OR", K("SEEN"), K("FLAGGED")),
            b"RECENT": K("RECENT"),
            b"SEEN": K("SEEN"),
            b"SENTBEFORE 31-Dec-1999": K("SENTBEFORE", date(1999, 12, 31)),
            b"SENTON 29-feb-2024": K("SENTON", date(2024, 2, 29)),
            b"SENTSINCE 1-Jan-1970": K("SENTSINCE", date(1970, 1, 1)),
            b"SINCE 1-Feb-1994": K("SINCE", date(1994, 2, 1)),
            b"SMALLER 0": K("SMALLER", 0),
            b"SUBJECT hello": K("SUBJECT", "hello"),
            b"TEXT x": K("TEXT", "x"),
            b"TO y": K("TO", "y"),
            b"UID 1:*": K("UID", S((1, None))),
            b"UNANSWERED": K("UNANSWERED"),
            b"UNDELETED": K("UNDELETED"),
            b"UNDRAFT": K("UNDRAFT"),
            b"UNFLAGGED": K("UNFLAGGED"),
            b"UNKEYWORD Junk": K("UNKEYWORD", "Junk"),
            b"UNSEEN": K("UNSEEN"),
            b"2,4:7,9,12:*": K("SEQUENCE", S((2, 2), (4, 7), (9, 9), (12, None))),
            b"*": K("SEQUENCE", S((None, None))),
        }
        for text, key in cases.items():
            self.assertEqual(self.criteria(text), AND(key), text)
            word, space, rest = text.partition(b" ")
            self.assertEqual(self.criteria(word.lower() + space + rest), AND(key), text)

    def test_nesting(self):
        self.assertEqual(
            self.criteria(b"OR (SEEN FROM a) NOT (OR 1:3 UID 7) LARGER 40"),
            AND(
                K("OR", AND(K("SEEN"), K("FROM", "a")), K("NOT", K("OR", K("SEQUENCE", S((1, 3))), K("UID", S((7, 7)))))),
                K("LARGER", 40),
            ),
        )
        # a top-level parenthesised list is the same conjunction
        self.assertEqual(self.criteria(b"((SEEN))"), AND(K("SEEN")))
        self.assertEqual(self.criteria(b"(SEEN DRAFT)"), AND(K("SEEN"), K("DRAFT")))

    def test_charsets(self):
        self.assertEqual(parseCommand(b"a SEARCH CHARSET utf-8 TEXT {5}\r\n\xc3\xa9t\xc3\xa9\r\n").args.criteria, AND(K("TEXT", "\xe9t\xe9")))
        # without CHARSET, clients send UTF-8: accepted in literals
        self.assertEqual(self.criteria(b"SUBJECT {2}\r\n\xc3\xa9"), AND(K("SUBJECT", "\xe9")))
        error = self.fails(b"a SEARCH CHARSET KOI8-R TEXT x\r\n", "a")
        self.assertEqual((error.status, error.code), ("NO", "BADCHARSET (US-ASCII UTF-8)"))
        self.fails(b"a SEARCH CHARSET US-ASCII TEXT {2}\r\n\xc3\xa9\r\n", "a", "US-ASCII")
        self.fails(b"a SEARCH CHARSET UTF-8 TEXT {1}\r\n\xff\r\n", "a", "UTF-8")
        self.fails(b"a SEARCH CHARSET UTF-8\r\n", "a")

    def test_errors(self):
        for text in [
            b"",
            b"BOGUS",
            b"FROM",
            b"OR SEEN",
            b"NOT",
            b"(SEEN",
            b"SEEN)",
            b"()",
            b"BEFORE 30-Feb-1994",
            b"BEFORE 1-Foo-1994",
            b"BEFORE 1994-02-01",
            b'ON "1-Feb-1994',
            b"LARGER -1",
            b"LARGER 4294967296",
            b"LARGER 99999999999999999999999999",
            b"UID 0",
            b"0:3",
            b"1:4294967296",
            b"KEYWORD \\Seen(",
            b"HEADER Subject",
            b"SEEN  DRAFT",
            b"SEEN ",
            b"RETURN (MIN) CHARSET",
        ]:
            self.fails(b"a SEARCH " + text + b"\r\n", "a")

    def test_depthBounded(self):
        # deep nesting is refused with a ParseError, not a RecursionError
        for text in [b"(" * 5000 + b"ALL" + b")" * 5000, b"NOT " * 5000 + b"ALL", b"OR ALL " * 5000 + b"ALL"]:
            self.fails(b"a SEARCH " + text + b"\r\n", "a", "nested")
        self.assertEqual(self.criteria(b"(" * 30 + b"SEEN" + b")" * 30), AND(K("SEEN")))


class StringAndMailboxTests(ParserTestCase):
    def test_quotedEscapes(self):
        self.parses(b'a LOGIN "fr\\"ed" "a\\\\b"\r\n', "a", "LOGIN", Login(b'fr"ed', b"a\\b"))
        self.parses(b'a LOGIN "" ""\r\n', "a", "LOGIN", Login(b"", b""))
        self.fails(b'a LOGIN "fr\\ed" x\r\n', "a")
        self.fails(b'a LOGIN "fred x\r\n', "a")

    def test_eightBitQuoted(self):
        # refused in quoted strings per RFC 3501 QUOTED-CHAR, accepted as UTF-8 with UTF8=ACCEPT
        self.fails(b'a LOGIN "j\xc3\xb6rg" x\r\n', "a", "8-bit")
        self.parses(b'a LOGIN "j\xc3\xb6rg" x\r\n', "a", "LOGIN", Login("j\xf6rg".encode(), b"x"), utf8=True)
        self.fails(b'a SELECT "Entw\xc3\xbcrfe"\r\n', "a")
        self.parses(b'a SELECT "Entw\xc3\xbcrfe"\r\n', "a", "SELECT", Mailbox("Entw\xfcrfe"), utf8=True)
        self.fails(b'a SELECT "Entw\xfcrfe"\r\n', "a", "mailbox", utf8=True)

    def test_literals(self):
        self.parses(b"a LOGIN {4}\r\nfred {0}\r\n\r\n", "a", "LOGIN", Login(b"fred", b""))
        self.parses(b"a LOGIN {4}\nfred x\n", "a", "LOGIN", Login(b"fred", b"x"))
        self.fails(b"a LOGIN {9}\r\nfred\r\n", "a", "truncated")
        self.fails(b"a LOGIN {4}fred x\r\n", "a")
        self.fails(b"a LOGIN {-4}\r\nfred x\r\n", "a")
        self.fails(b"a LOGIN {1}\r\n\x00 x\r\n", "a", "NUL")
        self.fails(b"a LOGIN ~{4}\r\nfred x\r\n", "a", "literal8")
        self.fails(b"a LOGIN {99999999999}\r\nfred x\r\n", "a", "truncated")
        self.fails(b"a LOGIN {" + b"9" * 5000 + b"}\r\nfred x\r\n", "a", "truncated")

    def test_mutf7Vector(self):
        # RFC 3501 5.1.3's example
        self.parses(
            b"a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n", "a", "SELECT", Mailbox("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e")
        )
        self.parses(b'a CREATE "Tom &- Jerry"\r\n', "a", "CREATE", Create("Tom & Jerry"))
        self.parses(b"a CREATE Entw&APw-rfe\r\n", "a", "CREATE", Create("Entw\xfcrfe"))
        for bad in [b"&", b"a&b", b"&AGE-", b"&U,BTFw", b"&U-", b"&2D3-", b"&U,BT-"]:
            error = self.fails(b'a CREATE "' + bad + b'"\r\n', "a", "mailbox")
            self.assertNotIn("\n", error.message)

    def test_mutf7Module(self):
        name = "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"
        self.assertEqual(mutf7.encode(name), b"~peter/mail/&U,BTFw-/&ZeVnLIqe-")
        self.assertEqual(mutf7.decode(mutf7.encode(name)), name)
        for text in ["&", "a&b&", "\U0001f600 mail", "Entw\xfcrfe", "\x7f\x01", "\u00e9/\u00e8"]:
            self.assertEqual(mutf7.decode(mutf7.encode(text)), text)
        self.assertRaises(mutf7.InvalidModifiedUTF7, mutf7.decode, b"\xc3\xa9")
        self.assertRaises(mutf7.InvalidModifiedUTF7, mutf7.decode, b"tab\there")

    def test_inbox(self):
        # RFC 3501 5.1: INBOX is case-insensitive, other names are not
        for spelling in (b"INBOX", b"inbox", b"InBoX", b'"Inbox"', b"{5}\r\ninBOX"):
            self.assertEqual(parseCommand(b"a SELECT " + spelling + b"\r\n").args.mailbox, "INBOX")
        self.assertEqual(parseCommand(b"a SELECT inbox/Sub\r\n").args.mailbox, "inbox/Sub")
        self.assertEqual(parseCommand(b"a SELECT Inboxes\r\n").args.mailbox, "Inboxes")
        self.assertEqual(parseCommand(b"a RENAME inbox Old\r\n").args, Rename("INBOX", "Old"))
        self.assertEqual(parseCommand(b"a COPY 1 inbox\r\n").args.mailbox, "INBOX")

    def test_listPatterns(self):
        # list-char allows wildcards and "]"; the reference is not a pattern
        self.assertEqual(parseCommand(b"a LIST foo] %/*]x\r\n").args.patterns, ("%/*]x",))
        self.assertEqual(parseCommand(b"a LIST {1}\r\n/ {3}\r\n%/*\r\n").args, List("/", ("%/*",)))
        self.fails(b"a LIST % *\r\n", "a")
        self.fails(b"a LIST\r\n", "a")

    def test_tags(self):
        # tag = 1*<any ASTRING-CHAR except "+">; "]" is allowed
        self.assertEqual(parseCommand(b"a]1 NOOP\r\n").tag, "a]1")
        self.assertEqual(parseCommand(b"0001.x-Y NOOP\r\n").tag, "0001.x-Y")
        for line in (b"a+1 NOOP\r\n", b"* NOOP\r\n", b"(a NOOP\r\n", b'"a" NOOP\r\n', b" NOOP\r\n", b"\r\n"):
            self.fails(line, None)

    def test_commandCase(self):
        self.assertEqual(parseCommand(b"a uid fetch 1 flags\r\n").name, "FETCH")
        self.assertEqual(parseCommand(b"a Capability").name, "CAPABILITY")

    def test_lineEnd(self):
        for line in (b"a NOOP", b"a NOOP\n", b"a NOOP\r\n"):
            self.parses(line, "a", "NOOP")
        for line in (b"a NOOP x\r\n", b"a NOOP\r\n\r\n", b"a NOOP\rx", b"a  NOOP\r\n", b"a NOOP\r\nb NOOP\r\n"):
            self.fails(line, "a")


class DateTests(unittest.TestCase):
    def test_dateTime(self):
        # RFC 3501 date-time, including date-day-fixed's leading space
        self.assertEqual(parseDateTime(b'"17-Jul-1996 02:44:25 -0700"'), datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT))
        self.assertEqual(parseDateTime(b'" 1-aug-2002 22:00:00 +0200"'), datetime(2002, 8, 1, 20, 0, tzinfo=timezone.utc))
        self.assertEqual(parseDateTime(b'"01-Aug-2002 22:00:00 +0000"').utcoffset(), timedelta(0))
        for bad in [
            b"17-Jul-1996 02:44:25 -0700",
            b'"17-Jul-1996 02:44:25"',
            b'"32-Jul-1996 02:44:25 -0700"',
            b'"17-Jux-1996 02:44:25 -0700"',
            b'"17-Jul-1996 24:44:25 -0700"',
            b'"17-Jul-1996 02:44:25 -0760"',
            b'"17-Jul-1996 02:44:25 0700"',
            b'"17-Jul-96 02:44:25 -0700"',
        ]:
            self.assertRaises(ParseError, parseDateTime, bad)

    def test_date(self):
        self.assertEqual(parseDate(b"1-Feb-1994"), date(1994, 2, 1))
        self.assertEqual(parseDate(b'"01-FEB-1994"'), date(1994, 2, 1))
        for bad in (b"1-Feb-94", b"100-Feb-1994", b'"1-Feb-1994', b"1-Feb-1994 ", b"29-Feb-2023"):
            self.assertRaises(ParseError, parseDate, bad)


class SequenceSetTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(parseSequenceSet(b"1:*"), S((1, None)))
        self.assertEqual(parseSequenceSet(b"*:4"), S((None, 4)))
        self.assertEqual(parseSequenceSet(b"2,4:7,9"), S((2, 2), (4, 7), (9, 9)))
        self.assertEqual(parseSequenceSet(b"4294967295"), S((4294967295, 4294967295)))
        for bad in (b"0", b"1:0", b"4294967296", b"1,", b",1", b"1::2", b"1:2:3", b"$", b"", b"a", b"1 2", b"99999999999999999999999"):
            self.assertRaises(ParseError, parseSequenceSet, bad)

    def test_resolveNormalises(self):
        # RFC 3501 9: "4:2" and "2:4" are the same set; "*" is the largest value
        self.assertEqual(parseSequenceSet(b"4:2").resolve(10), ((2, 4),))
        self.assertEqual(parseSequenceSet(b"*:4").resolve(10), ((4, 10),))
        self.assertEqual(parseSequenceSet(b"9,1:3,2:5,7").resolve(10), ((1, 5), (7, 7), (9, 9)))
        self.assertEqual(parseSequenceSet(b"8:*").resolve(3), ((3, 8),))
        self.assertEqual(parseSequenceSet(b"*").resolve(0), ((0, 0),))

    def test_bounded(self):
        # 1:4294967295 is two numbers, never four thousand million
        huge = parseSequenceSet(b"1:4294967295")
        self.assertEqual(huge.resolve(5), ((1, 4294967295),))
        self.assertTrue(huge.contains(4294967295, 5))
        self.assertEqual(huge.select([3, 9, 4000000000]), [3, 9, 4000000000])
        self.assertEqual(list(itertools.islice(huge.iterate(5), 3)), [1, 2, 3])
        self.assertEqual(huge.highest(5), 4294967295)
        self.assertEqual(SequenceSet.fromValues([]).highest(5), 0)

    def test_membership(self):
        s = parseSequenceSet(b"2,4:7,9,12:*")
        members = [n for n in range(1, 20) if s.contains(n, 15)]
        self.assertEqual(members, [2, 4, 5, 6, 7, 9, 12, 13, 14, 15])
        self.assertEqual(list(s.iterate(15)), members)
        self.assertTrue(s.usesStar())
        self.assertFalse(parseSequenceSet(b"1:3").usesStar())
        reversed_ = parseSequenceSet(b"7:4,*:14")
        self.assertEqual([n for n in range(1, 20) if reversed_.contains(n, 12)], [4, 5, 6, 7, 12, 13, 14])

    def test_selectUids(self):
        uids = [3, 5, 8, 13, 21, 34]
        self.assertEqual(parseSequenceSet(b"1:*").select(uids), uids)
        self.assertEqual(parseSequenceSet(b"6:20").select(uids), [8, 13])
        self.assertEqual(parseSequenceSet(b"20:6").select(uids), [8, 13])
        # RFC 3501 6.4.8: "UID 100:*" still names the last message when all UIDs are lower
        self.assertEqual(parseSequenceSet(b"100:*").select(uids), [34])
        self.assertEqual(parseSequenceSet(b"*").select(uids), [34])
        self.assertEqual(parseSequenceSet(b"*").select([]), [])
        self.assertEqual(parseSequenceSet(b"1,1,1:3").select(uids), [3])

    def test_formatRoundTrip(self):
        self.assertEqual(SequenceSet.fromValues([5, 1, 2, 3, 7, 8, 3]).format(), b"1:3,5,7:8")
        self.assertEqual(SequenceSet.fromValues([]).format(), b"")
        for text in (b"1:*", b"*:4", b"2,4:7,9", b"*", b"4:2"):
            self.assertEqual(parseSequenceSet(text).format(), text)
        rng = random.Random(3501)
        for _ in range(50):
            values = set(rng.sample(range(1, 200), rng.randint(1, 60)))
            s = SequenceSet.fromValues(values)
            self.assertEqual(set(parseSequenceSet(s.format()).iterate(0)), values)


class TaggedExtTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(parseTaggedExt(b'(a "b c" (1 2 (x)) {1}\r\nz)'), (b"a", b"b c", (b"1", b"2", (b"x",)), b"z"))
        self.assertEqual(parseTaggedExt(b"()"), ())
        for bad in (b"a", b"(a", b"(a))", b"(" * 100 + b")" * 100):
            self.assertRaises(ParseError, parseTaggedExt, bad)


VALID = [
    b"a1 FETCH 1:* (FLAGS UID BODY.PEEK[HEADER.FIELDS (From To)]<0.2048>)\r\n",
    b'a2 SEARCH OR (SEEN FROM "x") NOT UID 5:*\r\n',
    b'a3 APPEND INBOX (\\Seen) "17-Jul-1996 02:44:25 -0700" {5}\r\nhello\r\n',
    b'a4 LIST (SUBSCRIBED) "" ("INBOX" "%") RETURN (STATUS (MESSAGES))\r\n',
    b"a5 STORE 2:4 +FLAGS.SILENT (\\Deleted $Junk)\r\n",
    b'a6 LOGIN {4}\r\nfred "secret"\r\n',
]


class HostileInputTests(unittest.TestCase):
    """
    Truncated, binary and enormous input: only ParseError, with the tag when
    one was read.
    """

    def assertOnlyParseError(self, data, **kw):
        try:
            parseCommand(data, **kw)
        except ParseError as e:
            self.assertIsInstance(e.message, str)
            self.assertNotIn("\n", e.message)
            return e
        return None

    def test_truncated(self):
        for command in VALID:
            for end in range(len(command) - 2):
                error = self.assertOnlyParseError(command[:end])
                if error is not None and end > command.index(b" "):
                    self.assertEqual(error.tag, command[: command.index(b" ")].decode())

    def test_randomBytes(self):
        rng = random.Random(9051)
        for _ in range(3000):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
            self.assertOnlyParseError(b"t1 " + data)
            self.assertOnlyParseError(data, utf8=True)

    def test_mutated(self):
        # flip, drop and insert octets in valid commands
        rng = random.Random(3501)
        for _ in range(3000):
            data = bytearray(rng.choice(VALID))
            i = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[i] = rng.choice(b'(){}[]<>"\\ *%:.,~+\x00\xff0123456789')
            elif op == 1:
                del data[i]
            else:
                data.insert(i, rng.randrange(256))
            self.assertOnlyParseError(bytes(data))

    def test_specificHostile(self):
        for data, tag in [
            (b"a FETCH 99999999999999999999999999999:3 FLAGS\r\n", "a"),
            (b"a FETCH 1 BODY[99999999999999999999]\r\n", "a"),
            (b"a FETCH 1 BODY[]<99999999999999999999999.1>\r\n", "a"),
            (b"a APPEND INBOX {99999999999}\r\nabc\r\n", "a"),
            (b"a STORE 1 +FLAGS ((\\Seen)\r\n", "a"),
            (b"a LIST ((((( \"\" *\r\n", "a"),
            (b"a SELECT (\r\n", "a"),
            (b"a LOGIN \x00 \x00\r\n", "a"),
            (b"\x00\x00\x00\x00", None),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", None),  # a TLS ClientHello on the plain port
            (b"GET / HTTP/1.1\r\n", "GET"),
            (b"a" * 100000 + b" NOOP x", "a" * 100000),
        ]:
            error = self.assertOnlyParseError(data)
            self.assertIsNotNone(error, data[:40])
            self.assertEqual(error.tag, tag)


class AssemblerTests(unittest.TestCase):
    def drain(self, assembler):
        events = []
        while (event := assembler.nextEvent()) is not None:
            events.append(event)
        return events

    def test_completeCommands(self):
        a = CommandAssembler()
        a.feed(b"a1 NOOP\r\na2 CAPA")
        self.assertEqual(self.drain(a), [Command("a1", "NOOP")])
        a.feed(b"BILITY\r\n\r\n\na3 LOGOUT\n")
        # empty lines between commands are ignored
        self.assertEqual(self.drain(a), [Command("a2", "CAPABILITY"), Command("a3", "LOGOUT")])
        self.assertEqual(a.pending(), 0)

    def test_synchronisingLiteral(self):
        a = CommandAssembler()
        a.feed(b"a1 LOGIN {4}\r\n")
        self.assertEqual(self.drain(a), [Continuation("a1", 4)])
        a.feed(b"fr")
        self.assertEqual(self.drain(a), [])
        self.assertEqual(a.pending(), 18)
        a.feed(b"ed {6}\r\n")
        self.assertEqual(self.drain(a), [Continuation("a1", 6)])
        a.feed(b"se\r\nt\n\r\n")
        self.assertEqual(self.drain(a), [Command("a1", "LOGIN", Login(b"fred", b"se\r\nt\n"))])

    def test_nonSynchronisingLiteral(self):
        a = CommandAssembler()
        a.feed(b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n")
        self.assertEqual(self.drain(a), [Command("A001", "LOGIN", Login(b"FRED FOOBAR", b"fat man"))])

    def test_byteByByte(self):
        stream = b"".join(VALID) + b"a7 IDLE\r\n"
        whole = CommandAssembler(literalPlus="LITERAL+")
        whole.feed(stream)
        expected = [e for e in self.drain(whole) if not isinstance(e, Continuation)]
        self.assertEqual(len(expected), len(VALID) + 1)
        self.assertTrue(all(isinstance(e, Command) for e in expected))
        a = CommandAssembler()
        got = []
        for i in range(len(stream)):
            a.feed(stream[i : i + 1])
            got.extend(e for e in self.drain(a) if not isinstance(e, Continuation))
        self.assertEqual(got, expected)

    def test_appendTooBigSynchronising(self):
        # refused before any octet is read; the client sends no literal and goes on
        a = CommandAssembler(appendLimit=1000)
        a.feed(b"a1 APPEND INBOX (\\Seen) {1001}\r\na2 NOOP\r\n")
        events = self.drain(a)
        self.assertEqual(len(events), 2)
        error = events[0]
        self.assertIsInstance(error, LiteralTooBig)
        self.assertEqual((error.tag, error.status, error.code, error.fatal, error.size), ("a1", "NO", "TOOBIG", False, 1001))
        self.assertEqual(events[1], Command("a2", "NOOP"))

    def test_appendHugeAnnouncement(self):
        a = CommandAssembler(appendLimit=1000)
        a.feed(b"a1 UID APPEND x {99999999999}\r\n")  # not a UID command: refused as an ordinary literal
        error = a.nextEvent()
        self.assertEqual((type(error), error.status, error.code, error.fatal), (LiteralTooBig, "BAD", None, False))
        a.feed(b"a2 APPEND x {" + b"9" * 500 + b"}\r\n")
        error = a.nextEvent()
        self.assertEqual((error.tag, error.code, error.fatal), ("a2", "TOOBIG", False))
        self.assertGreater(error.size, 10**18)

    def test_appendWithinLimit(self):
        a = CommandAssembler(appendLimit=1000)
        a.feed(b"a1 APPEND INBOX {1000}\r\n")
        self.assertEqual(self.drain(a), [Continuation("a1", 1000)])
        a.feed(b"x" * 1000 + b"\r\n")
        [command] = self.drain(a)
        self.assertEqual(command.args.messages[0].data, b"x" * 1000)

    def test_nonSynchronisingTooBigIsFatal(self):
        # its octets are already coming: BYE and close (nothing more is parsed)
        a = CommandAssembler(appendLimit=1000)
        a.feed(b"a1 APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\na2 NOOP\r\n")
        [error] = self.drain(a)
        self.assertIsInstance(error, LiteralTooBig)
        self.assertTrue(error.fatal)
        self.assertEqual(error.tag, "a1")
        a.feed(b"a3 NOOP\r\n")
        self.assertEqual(self.drain(a), [])
        self.assertEqual(a.pending(), 0)

    def test_literalMinus(self):
        # RFC 7888 5: LITERAL- allows {N+} up to 4096 octets
        a = CommandAssembler(literalPlus="LITERAL-", maxLiteralSize=10000)
        a.feed(b"a1 LOGIN {4096+}\r\n" + b"u" * 4096 + b" x\r\n")
        [command] = self.drain(a)
        self.assertEqual(command.args.username, b"u" * 4096)
        a.feed(b"a2 LOGIN {4097+}\r\n")
        [error] = self.drain(a)
        self.assertTrue(error.fatal)
        self.assertIn("4096", error.message)

    def test_noLiteralPlus(self):
        a = CommandAssembler(literalPlus=None)
        a.feed(b"a1 LOGIN {4+}\r\nfred x\r\n")
        [error] = self.drain(a)
        self.assertIsInstance(error, LiteralTooBig)
        self.assertTrue(error.fatal)

    def test_otherLiteralsBounded(self):
        a = CommandAssembler(maxLiteralSize=100)
        a.feed(b"a1 LOGIN {101}\r\na2 NOOP\r\n")
        error, command = self.drain(a)
        self.assertEqual((error.tag, error.status, error.code, error.fatal), ("a1", "BAD", None, False))
        self.assertEqual(command, Command("a2", "NOOP"))

    def test_commandSizeBounded(self):
        # many small literals cannot add up beyond maxCommandSize
        a = CommandAssembler(maxLiteralSize=100, maxCommandSize=1000)
        a.feed(b"a1 SEARCH TEXT {100+}\r\n" + b"x" * 100)
        for _ in range(8):
            a.feed(b" TEXT {100+}\r\n" + b"x" * 100)
        a.feed(b" TEXT {100+}\r\n")
        [error] = self.drain(a)
        self.assertIsInstance(error, LiteralTooBig)
        self.assertIn("command of", error.message)

    def test_multiappendBounded(self):
        a = CommandAssembler(appendLimit=1000)
        a.feed(b"a1 APPEND INBOX {600}\r\n")
        self.assertEqual(self.drain(a), [Continuation("a1", 600)])
        a.feed(b"x" * 600 + b" {600}\r\n")
        [error] = self.drain(a)
        self.assertEqual((error.code, error.fatal), ("TOOBIG", False))

    def test_lineTooLong(self):
        a = CommandAssembler(maxLineLength=100)
        a.feed(b"a1 LOGIN " + b"x" * 200)
        [error] = self.drain(a)
        self.assertIsInstance(error, LineTooLong)
        self.assertEqual(error.tag, "a1")
        self.assertEqual(a.pending(), 0)
        # the rest of that line is skipped, whatever it contains, and the session goes on
        a.feed(b"y" * 5000 + b" {5}\r\na2 NOOP\r\n")
        self.assertEqual(self.drain(a), [Command("a2", "NOOP")])
        a.feed(b"a3 " + b"z" * 150 + b"\r\na4 NOOP\r\n")
        error, command = self.drain(a)
        self.assertEqual((type(error), error.tag, command), (LineTooLong, "a3", Command("a4", "NOOP")))
        a.feed(b"\xff" * 101)
        [error] = self.drain(a)
        self.assertIsNone(error.tag)

    def test_lineAfterLiteralBounded(self):
        a = CommandAssembler(maxLineLength=100)
        a.feed(b"a1 LOGIN {2+}\r\nab " + b"p" * 200 + b"\r\na2 NOOP\r\n")
        error, command = self.drain(a)
        self.assertEqual((type(error), error.tag), (LineTooLong, "a1"))
        self.assertEqual(command, Command("a2", "NOOP"))

    def test_literalWithoutTag(self):
        # "+" is never sent for a line that cannot become a command
        a = CommandAssembler()
        a.feed(b"{5}\r\n* x {3}\r\na1 NOOP\r\n")
        e1, e2, command = self.drain(a)
        self.assertEqual((type(e1), e1.tag, e1.fatal, type(e2), e2.tag), (ParseError, None, False, ParseError, None))
        self.assertEqual(command, Command("a1", "NOOP"))
        # a non-synchronising one is on its way: its octets must not be read as commands
        a.feed(b"(x {11+}\r\na2 DELETE x\r\n")
        [error] = self.drain(a)
        self.assertTrue(error.fatal)
        self.assertEqual(a.pending(), 0)

    def test_parseErrorsAreEvents(self):
        a = CommandAssembler()
        a.feed(b"a1 FETCH 0 FLAGS\r\n\x00\x01\x02\r\na3 NOOP\r\n")
        e1, e2, command = self.drain(a)
        self.assertEqual((type(e1), e1.tag), (ParseError, "a1"))
        self.assertEqual((type(e2), e2.tag), (ParseError, None))
        self.assertEqual(command, Command("a3", "NOOP"))

    def test_expectLine(self):
        # IDLE: the next line is handed over raw; only DONE ends IDLE
        a = CommandAssembler()
        a.feed(b"a1 IDLE\r\nNOOP {5}\r\nDONE\r\na2 NOOP\r\n")
        self.assertEqual(a.nextEvent(), Command("a1", "IDLE"))
        a.expectLine()
        line = a.nextEvent()
        self.assertEqual(line, Line(b"NOOP {5}"))
        self.assertFalse(isDone(line.data))
        a.expectLine()
        line = a.nextEvent()
        self.assertTrue(isDone(line.data))
        self.assertEqual(self.drain(a), [Command("a2", "NOOP")])

    def test_expectLineAuthenticate(self):
        a = CommandAssembler()
        a.feed(b"a1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(a.nextEvent(), Command("a1", "AUTHENTICATE", Authenticate("PLAIN")))
        a.expectLine()
        self.assertIsNone(a.nextEvent())
        a.feed(b"AGZyZWQAcHc=\r\n")
        self.assertEqual(a.nextEvent(), Line(b"AGZyZWQAcHc="))

    def test_discard(self):
        # STARTTLS: what was pipelined after it in the same packet is dropped
        a = CommandAssembler()
        a.feed(b"t1 STARTTLS\r\nt9 CAPABILITY\r\nt10 LOGIN {3}\r\n")
        self.assertEqual(a.nextEvent(), Command("t1", "STARTTLS"))
        a.discard()
        self.assertEqual(self.drain(a), [])
        a.feed(b"t2 CAPABILITY\r\n")
        self.assertEqual(self.drain(a), [Command("t2", "CAPABILITY")])

    def test_utf8(self):
        a = CommandAssembler(utf8=True)
        a.feed(b'a SELECT "Entw\xc3\xbcrfe"\r\n')
        self.assertEqual(a.nextEvent().args.mailbox, "Entw\xfcrfe")

    def test_randomStream(self):
        # garbage between valid commands never stops the stream or raises
        rng = random.Random(2177)
        a = CommandAssembler(maxLineLength=200, appendLimit=2000, maxLiteralSize=300)
        commands = 0
        for _ in range(400):
            if rng.random() < 0.5:
                chunk = rng.choice(VALID)
            else:
                chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            a.feed(chunk)
            for event in self.drain(a):
                self.assertIsInstance(event, (Command, Continuation, ParseError))
                if isinstance(event, ParseError) and event.fatal:
                    a = CommandAssembler(maxLineLength=200, appendLimit=2000, maxLiteralSize=300)
                commands += isinstance(event, Command)
        self.assertGreater(commands, 20)
