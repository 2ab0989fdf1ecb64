"""
IMAP response formatting: the response lines of RFC 3501 section 6/7 and
the extensions' examples, byte for byte, and round trips through the
parser.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.trial import unittest

from twisted_maillab.imap import response as R
from twisted_maillab.imap.parser import (
    LineTooLong,
    LiteralTooBig,
    ParseError,
    SequenceSet,
    parseCommand,
    parseDateTime,
    parseSequenceSet,
)


class StatusLineTests(unittest.TestCase):
    def test_tagged(self):
        # RFC 3501 6.3.1 and 6.3.11
        self.assertEqual(R.tagged("A142", "OK", "SELECT completed", R.READ_WRITE), b"A142 OK [READ-WRITE] SELECT completed\r\n")
        self.assertEqual(R.tagged(b"A003", b"NO", "no such mailbox", R.TRYCREATE), b"A003 NO [TRYCREATE] no such mailbox\r\n")
        self.assertEqual(R.tagged("a1", "BAD", "Command unknown"), b"a1 BAD Command unknown\r\n")
        self.assertEqual(R.tagged(None, "BAD", "no tag"), b"* BAD no tag\r\n")

    def test_textCannotInject(self):
        # a line break in the text (from a client or a message) must not end the line
        line = R.tagged("a1", "NO", "bad\r\na2 OK fake\nx")
        self.assertEqual(line, b"a1 NO bad a2 OK fake x\r\n")
        self.assertEqual(R.untaggedStatus("OK", "x", R.code(b"ALERT", b"]\r\n* BYE")), b"* OK [ALERT   * BYE] x\r\n")
        self.assertEqual(R.continuation(b"a\r\nb"), b"+ a b\r\n")

    def test_emptyTextUsesStatus(self):
        self.assertEqual(R.tagged("a", "OK", b""), b"a OK OK\r\n")

    def test_untagged(self):
        # RFC 3501 6.3.1's SELECT reply lines
        self.assertEqual(R.untaggedStatus("OK", "Message 17 is first unseen", R.codeUnseen(17)), b"* OK [UNSEEN 17] Message 17 is first unseen\r\n")
        self.assertEqual(R.untaggedStatus(b"OK", "UIDs valid", R.codeUidValidity(3857529045)), b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n")
        self.assertEqual(R.untaggedStatus("OK", "Predicted next UID", R.codeUidNext(4392)), b"* OK [UIDNEXT 4392] Predicted next UID\r\n")
        self.assertEqual(
            R.untaggedStatus("OK", "Limited", R.codePermanentFlags(["\\Deleted", "\\Seen"])),
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        )
        self.assertEqual(R.codePermanentFlags([], keywordsAllowed=False), b"PERMANENTFLAGS ()")
        self.assertEqual(R.untaggedStatus("BYE", "Autologout; idle for too long"), b"* BYE Autologout; idle for too long\r\n")
        self.assertEqual(R.exists(172), b"* 172 EXISTS\r\n")
        self.assertEqual(R.recent(1), b"* 1 RECENT\r\n")
        self.assertEqual(R.expunge(3), b"* 3 EXPUNGE\r\n")
        self.assertEqual(R.flagsResponse(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]), b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n")
        self.assertEqual(R.untagged(b"OK IMAP4rev1 Service Ready"), b"* OK IMAP4rev1 Service Ready\r\n")

    def test_capability(self):
        caps = ["IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"]
        self.assertEqual(R.capability(caps), b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n")
        self.assertEqual(R.untaggedStatus("OK", "ready", R.codeCapability([b"IMAP4rev1", b"IDLE"])), b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")

    def test_uidplusCodes(self):
        # RFC 4315 section 3's examples
        self.assertEqual(R.tagged("A003", "OK", "APPEND completed", R.codeAppendUid(38505, 3955)), b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n")
        self.assertEqual(
            R.tagged("A004", "OK", "Done", R.codeCopyUid(38505, [304, 319, 320], [3956, 3957, 3958])),
            b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
        )
        self.assertEqual(R.codeAppendUid(1, [7, 8, 9]), b"APPENDUID 1 7:9")
        # the n-th source UID maps to the n-th target UID: unsorted lists stay in order
        self.assertEqual(R.codeCopyUid(1, [5, 6], [11, 10]), b"COPYUID 1 5:6 11,10")

    def test_otherCodes(self):
        self.assertEqual(R.tagged("a", "NO", "too big", R.TOOBIG), b"a NO [TOOBIG] too big\r\n")
        self.assertEqual(R.tagged("a", "NO", "gone", R.EXPUNGEISSUED), b"a NO [EXPUNGEISSUED] gone\r\n")
        self.assertEqual(R.untaggedStatus("OK", "read this", R.ALERT), b"* OK [ALERT] read this\r\n")
        self.assertEqual(R.tagged("a", "OK", "EXAMINE completed", R.READ_ONLY), b"a OK [READ-ONLY] EXAMINE completed\r\n")
        self.assertEqual(R.code(b"BADCHARSET", b"(US-ASCII UTF-8)"), b"BADCHARSET (US-ASCII UTF-8)")
        self.assertEqual(R.code(b"APPENDLIMIT", 1024), b"APPENDLIMIT 1024")

    def test_parseErrorResponse(self):
        self.assertEqual(R.parseErrorResponse(ParseError("unknown command X", "a1")), b"a1 BAD unknown command X\r\n")
        self.assertEqual(R.parseErrorResponse(ParseError("expected a tag", None)), b"* BAD expected a tag\r\n")
        self.assertEqual(
            R.parseErrorResponse(ParseError("charset x", "a", "NO", "BADCHARSET (US-ASCII UTF-8)")),
            b"a NO [BADCHARSET (US-ASCII UTF-8)] charset x\r\n",
        )
        self.assertEqual(R.parseErrorResponse(LineTooLong("too long", "a2")), b"a2 BAD too long\r\n")
        self.assertEqual(R.parseErrorResponse(LiteralTooBig("big", "a3", 10, True, "APPEND")), b"a3 NO [TOOBIG] big\r\n")
        self.assertEqual(R.parseErrorResponse(LiteralTooBig("big", "a4", 10, False, "APPEND")), b"* BYE [TOOBIG] big\r\n")
        self.assertEqual(R.parseErrorResponse(LiteralTooBig("big", "a5", 10, True, "LOGIN")), b"a5 BAD big\r\n")


class StringTests(unittest.TestCase):
    def test_astring(self):
        self.assertEqual(R.astring(b"fred"), b"fred")
        self.assertEqual(R.astring("a]b"), b'"a]b"')
        self.assertEqual(R.astring(b""), b'""')
        self.assertEqual(R.astring(b"nil"), b'"nil"')  # never read back as NIL
        self.assertEqual(R.astring(b"two words"), b'"two words"')
        self.assertEqual(R.astring(b'say "hi" \\o/'), b'"say \\"hi\\" \\\\o/"')
        self.assertEqual(R.astring(b"a%b"), b'"a%b"')

    def test_literalWhenNeeded(self):
        self.assertEqual(R.string(b"line\r\nbreak"), b"{11}\r\nline\r\nbreak")
        self.assertEqual(R.string("caf\xe9"), b"{5}\r\ncaf\xc3\xa9")
        self.assertEqual(R.string(b"nul\x00"), b"{4}\r\nnul\x00")
        self.assertEqual(R.string(b"x" * R.QUOTED_MAX), b'"' + b"x" * R.QUOTED_MAX + b'"')
        self.assertEqual(R.string(b"x" * (R.QUOTED_MAX + 1)), b"{1025}\r\n" + b"x" * 1025)
        self.assertEqual(R.literalPrefix(310), b"{310}\r\n")

    def test_nstring(self):
        self.assertEqual(R.nstring(None), b"NIL")
        self.assertEqual(R.nstring(b"NIL"), b'"NIL"')
        self.assertEqual(R.nstring(b""), b'""')

    def test_roundTrip(self):
        # whatever we format, our parser reads back the same octets
        for value in [b"fred", b"", b"nil", b'q"uo\\te', b"a b", b"line\r\nbreak", b"\xff\xfe", b"x" * 2000, b"(){%*]"]:
            command = parseCommand(b"a LOGIN " + R.astring(value) + b" " + R.string(value) + b"\r\n")
            self.assertEqual((command.args.username, command.args.password), (value, value), value)

    def test_mailbox(self):
        # RFC 3501 5.1.3's example, and INBOX's canonical spelling
        self.assertEqual(R.mailbox("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"), b"~peter/mail/&U,BTFw-/&ZeVnLIqe-")
        self.assertEqual(R.mailbox("inbox"), b"INBOX")
        self.assertEqual(R.mailbox("Tom & Jerry"), b'"Tom &- Jerry"')
        self.assertEqual(R.mailbox("Nil"), b'"Nil"')
        for name in ["Entw\xfcrfe", "a b/c", "\U0001f600", "x]y", "%"]:
            self.assertEqual(parseCommand(b"a SELECT " + R.mailbox(name) + b"\r\n").args.mailbox, name)


class DataFormatTests(unittest.TestCase):
    def test_flags(self):
        self.assertEqual(R.flags(["\\Seen", "$Forwarded"]), b"(\\Seen $Forwarded)")
        self.assertEqual(R.flags([]), b"()")
        self.assertEqual(R.formatList([b"a", b"(b)"]), b"(a (b))")

    def test_internalDate(self):
        pdt = timezone(timedelta(hours=-7))
        when = datetime(1996, 7, 17, 2, 44, 25, tzinfo=pdt)
        self.assertEqual(R.internalDate(when), b'"17-Jul-1996 02:44:25 -0700"')
        self.assertEqual(R.internalDate(datetime(2002, 8, 1, 2, 0, 0)), b'"01-Aug-2002 02:00:00 +0000"')
        self.assertEqual(R.internalDate(datetime(2002, 8, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))), b'"01-Aug-2002 00:00:00 +0530"')
        self.assertEqual(parseDateTime(R.internalDate(when)), when)
        # a timestamp is shown in local time, and names the same instant
        self.assertEqual(parseDateTime(R.internalDate(837596665.0)).timestamp(), 837596665.0)

    def test_sequenceSet(self):
        self.assertEqual(R.sequenceSet([1, 2, 3, 5]), b"1:3,5")
        self.assertEqual(R.sequenceSet([9, 3, 4, 1]), b"1,3:4,9")
        self.assertEqual(R.sequenceSet([7]), b"7")
        self.assertEqual(R.sequenceSet(SequenceSet(((1, None),))), b"1:*")
        self.assertEqual(list(parseSequenceSet(R.sequenceSet(range(1, 100000))).iterate(0))[-1], 99999)

    def test_fetch(self):
        # RFC 3501 6.4.6/7.4.2 shapes
        self.assertEqual(R.fetchResponse(2, [(b"FLAGS", R.flags(["\\Deleted", "\\Seen"]))]), b"* 2 FETCH (FLAGS (\\Deleted \\Seen))\r\n")
        att = parseCommand(b"a FETCH 12 (BODY.PEEK[HEADER.FIELDS (date)]<0.10>)").args.items[0]
        self.assertEqual(
            R.fetchResponse(12, [(b"UID", b"7"), (att.responseName(), R.string(b"Date: x\r\n\r\n")), (b"RFC822.SIZE", b"44827")]),
            b"* 12 FETCH (UID 7 BODY[HEADER.FIELDS (DATE)]<0> {11}\r\nDate: x\r\n\r\n RFC822.SIZE 44827)\r\n",
        )

    def test_search(self):
        self.assertEqual(R.searchResponse([2, 84, 882]), b"* SEARCH 2 84 882\r\n")
        # RFC 3501 7.2.5: the line is sent even when nothing matched
        self.assertEqual(R.searchResponse([]), b"* SEARCH\r\n")
        self.assertEqual(R.searchResponse([5, 3], command=b"SORT"), b"* SORT 5 3\r\n")

    def test_esearch(self):
        # RFC 4731 section 3.1's examples
        self.assertEqual(R.esearchResponse("A282", [2, 10, 11], ("MIN", "COUNT")), b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n')
        self.assertEqual(
            R.esearchResponse("A283", [2] + list(range(10, 1001)), ("MIN", "MAX", "ALL", "COUNT")),
            b'* ESEARCH (TAG "A283") MIN 2 MAX 1000 ALL 2,10:1000 COUNT 992\r\n',
        )
        self.assertEqual(R.esearchResponse("A284", [], ("MIN", "MAX", "ALL", "COUNT")), b'* ESEARCH (TAG "A284") COUNT 0\r\n')
        self.assertEqual(R.esearchResponse("A285", [], ("MIN",)), b'* ESEARCH (TAG "A285")\r\n')
        self.assertEqual(R.esearchResponse("A286", [3, 4], ("ALL",), uid=True), b'* ESEARCH (TAG "A286") UID ALL 3:4\r\n')

    def test_list(self):
        # RFC 3501 6.3.8, RFC 6154 5.1
        self.assertEqual(R.listResponse("blurdybloop", ["\\Noselect"]), b'* LIST (\\Noselect) "/" blurdybloop\r\n')
        self.assertEqual(R.listResponse("", ["\\Noselect"], "/"), b'* LIST (\\Noselect) "/" ""\r\n')
        self.assertEqual(R.listResponse("Sent", ["\\HasNoChildren", "\\Sent"]), b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n')
        self.assertEqual(R.listResponse("inbox", [], None, command=b"LSUB"), b"* LSUB () NIL INBOX\r\n")
        self.assertEqual(
            R.listResponse("Foo", ["\\Subscribed"], extended=b'("CHILDINFO" ("SUBSCRIBED"))'),
            b'* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        )

    def test_status(self):
        # RFC 3501 6.3.10
        self.assertEqual(
            R.statusResponse("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]),
            b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        )

    def test_idNamespaceEnabled(self):
        # RFC 2971 3.3, RFC 2342 5, RFC 5161 3.1
        self.assertEqual(R.idResponse({"name": "Cyrus", "version": "1.5", "os": None}), b'* ID ("name" "Cyrus" "version" "1.5" "os" NIL)\r\n')
        self.assertEqual(R.idResponse(None), b"* ID NIL\r\n")
        self.assertEqual(R.namespaceResponse(), b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        self.assertEqual(
            R.namespaceResponse([("", "/")], [("~", "/")], [("#shared/", "/"), ("#public/", None)]),
            b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" NIL))\r\n'.replace(b')(', b') ('),
        )
        self.assertEqual(R.enabledResponse(["CONDSTORE"]), b"* ENABLED CONDSTORE\r\n")
        self.assertEqual(R.enabledResponse([]), b"* ENABLED\r\n")
