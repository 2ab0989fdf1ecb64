"""
The store through Twisted's own IMAP interfaces
(L{twisted_maillab.imap.twistedseam}): the adapters over a synchronous
store, Twisted's server driven over a L{StringTransport}, and Twisted's
stock L{imap4.IMAP4Server} on a real 127.0.0.1 socket with a portal from
our C{auth} package, driven by Python's imaplib.
"""

from __future__ import annotations

import imaplib
import io
import os
from pathlib import Path

from twisted.internet import defer, protocol, reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from twisted_maillab.auth import makePortal
from twisted_maillab.auth.hashing import cryptBackend, makeHash
from twisted_maillab.auth.pool import runSynchronously
from twisted_maillab.imap.twistedseam import (
    SeamIMAP4Server,
    TwistedAccount,
    TwistedMailbox,
    TwistedMessage,
    registerTwistedAccount,
)
from twisted_maillab.store import Store
from twisted_maillab.store.testing import deliverNow, synchronousStore, temporaryAccount

from tests.auth_fixtures import makeConfig
from tests.support import syncResult

MSG1 = b"From: anne@domaineel.rt\nTo: edouard@domaineel.rt\nSubject: one\nReceived: by a\nReceived: by b\n\nbody one\n"
MSG2 = b"From: bob@domaineel.rt\r\nSubject: two\r\n\r\nbody two\r\nno final newline"


def crlf(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def maildirNames(maildir: Path, sub: str = "cur") -> list[str]:
    return sorted(os.listdir(maildir / sub))


class AdapterTests(unittest.TestCase):
    """
    The adapters over a synchronous store (every Deferred has fired when
    the call returns).
    """

    def setUp(self):
        self.store = synchronousStore()
        self.user = temporaryAccount(self.mktemp())
        deliverNow(self.store, self.user, MSG1)
        deliverNow(self.store, self.user, MSG2)
        self.account = TwistedAccount(self.store, self.user)
        self.addCleanup(self.account.logout)

    def select(self, name="INBOX", rw=1) -> TwistedMailbox:
        return syncResult(self.account.select(name, rw))

    def fetch(self, mailbox, spec=b"1:*", uid=False):
        return syncResult(mailbox.fetch(imap4.parseIdList(spec), uid))

    def test_interfaces(self):
        """
        Each adapter provides the Twisted interfaces it declares, with
        their methods and signatures.
        """
        mailbox = self.select()
        ((seq, message),) = self.fetch(mailbox, b"1")
        self.assertIsInstance(message, TwistedMessage)
        self.assertTrue(verifyObject(imap4.IAccount, self.account))
        self.assertTrue(verifyObject(imap4.INamespacePresenter, self.account))
        for interface in (
            imap4.IMailbox,
            imap4.IMailboxInfo,
            imap4.ISearchableMailbox,
            imap4.IMessageCopier,
            imap4.ICloseableMailbox,
        ):
            self.assertTrue(verifyObject(interface, mailbox))
        for interface in (imap4.IMessage, imap4.IMessagePart, imap4.IMessageFile):
            self.assertTrue(verifyObject(interface, message))

    def test_selectClaimsRecent(self):
        """
        SELECT (rw=1) claims \\Recent; EXAMINE and STATUS (rw=0) and APPEND
        (no rw) do not, so the selecting session keeps it.
        """
        examined = self.select(rw=0)
        self.assertEqual(examined.getRecentCount(), 2)
        appendTarget = syncResult(self.account.select("INBOX"))
        self.assertTrue(appendTarget.isWriteable())
        selected = self.select()
        self.assertEqual(selected.getRecentCount(), 2)
        self.assertEqual(self.select().getRecentCount(), 0)
        self.assertEqual(selected.getFlags()[:6], ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"])

    def test_missingMailbox(self):
        """
        Twisted's "no such mailbox" is L{None} from C{select}.
        """
        self.assertIsNone(syncResult(self.account.select("Nope", 1)))

    def test_fetchHeadersBodyAndSize(self):
        """
        FETCH reads headers, CRLF bodies and virtual sizes; repeated fields
        survive Twisted's one-value-per-name header dict.
        """
        mailbox = self.select()
        (_, m1), (_, m2) = self.fetch(mailbox)
        self.assertEqual(m1.getHeaders(False, "subject"), {"subject": "one"})
        self.assertEqual(
            imap4._formatHeaders(m1.getHeaders(False, "received")), b"Received: by a\r\nReceived: by b\r\n"
        )
        self.assertNotIn("subject", m1.getHeaders(True, "Subject"))
        self.assertEqual(m1.getSize(), len(crlf(MSG1)))
        # the delivery's ,W= counts no CRLF after an unterminated last line
        self.assertEqual(m2.getSize(), len(crlf(MSG2)) - 2)
        for message, raw in ((m1, MSG1), (m2, MSG2)):
            whole = crlf(raw)[: message.getSize()]
            self.assertEqual(message.open().read(), whole)
            body = whole.split(b"\r\n\r\n", 1)[1]
            f = message.getBodyFile()
            self.assertEqual(imap4.FileProducer(f)._size(), len(body))
            self.assertEqual(f.read(), body)
        self.assertEqual(m2.getInternalDate()[-3:], "GMT")

    def test_crlfChunkBoundary(self):
        """
        A CR at the end of one read and its LF at the start of the next
        stay one CRLF.
        """
        from twisted_maillab.imap import twistedseammessage

        self.patch(twistedseammessage._CRLFFile, "CHUNK", 5)  # the first read ends in its CR
        deliverNow(self.store, self.user, b"S: x\r\n\r\nab\r\ncd\nef\r\r\n")
        mailbox = self.select()
        ((_, message),) = self.fetch(mailbox, b"3")
        self.assertEqual(message.open().read(), b"S: x\r\n\r\nab\r\ncd\r\nef\r\r\n")

    def test_literalKeepsItsSize(self):
        """
        The reader yields exactly the announced size: the CRLF it adds at
        the end is not lost when it overshoots a read, and a size from a
        wrong C{,W=} is padded rather than leaving the literal short.
        """
        from twisted_maillab.imap.twistedseammessage import _CRLFFile

        source = io.BytesIO(b"abc\nde")
        f = _CRLFFile(source, 0, 9)
        self.assertEqual([f.read(8), f.read(8), f.read(8)], [b"abc\r\nde\r", b"\n", b""])
        f = _CRLFFile(io.BytesIO(b"abc\n"), 0, 8)
        self.assertEqual(f.read(), b"abc\r\n   ")

    def test_storeFlagsAndKeywords(self):
        """
        STORE reaches the Maildir: system flags as C{:2,} letters, keywords
        through C{dovecot-keywords}; \\Recent is not stored.
        """
        mailbox = self.select()
        result = syncResult(mailbox.store(imap4.parseIdList(b"1"), ["\\Seen", "$Important", "\\Recent"], 1, False))
        self.assertEqual(result, {1: ["$Important", "\\Seen", "\\Recent"]})
        names = maildirNames(Path(self.user.maildir))
        self.assertTrue(any(n.endswith(":2,Sa") for n in names), names)
        self.assertIn("0 $Important", (Path(self.user.maildir) / "dovecot-keywords").read_text())
        syncResult(mailbox.store(imap4.parseIdList(b"2"), [b"\\Flagged"], 0, True))
        self.assertIn("\\Flagged", self.fetch(mailbox, b"2", uid=True)[0][1].getFlags())

    def test_hugeSets(self):
        """
        Sets are matched against the session's messages, not enumerated:
        a client's C{1:4294967295} costs no more than C{1:*}.
        """
        mailbox = self.select()
        for uid in (False, True):
            self.assertEqual([seq for seq, _ in self.fetch(mailbox, b"2:4294967295", uid)], [2])
            self.assertEqual([seq for seq, _ in self.fetch(mailbox, b"*", uid)], [2])

    def test_readOnly(self):
        """
        An EXAMINEd mailbox refuses STORE and EXPUNGE.
        """
        mailbox = self.select(rw=0)
        self.failureResultOf(mailbox.store(imap4.parseIdList(b"1"), ["\\Seen"], 1, False), imap4.ReadOnlyMailbox)
        self.failureResultOf(mailbox.expunge(), imap4.ReadOnlyMailbox)

    def test_otherSessionsChanges(self):
        """
        A delivery and another session's flag change reach the listener
        as newMessages and flagsChanged; another session's expunge waits
        for this session's EXPUNGE, whose answer reports it.
        """
        calls = []

        class Listener:
            def newMessages(self, exists, recent):
                calls.append(("new", exists))

            def flagsChanged(self, flags):
                calls.append(("flags", flags))

        first = self.select()
        first.addListener(Listener())
        other = TwistedAccount(self.store, self.user)
        second = syncResult(other.select("INBOX", 1))
        syncResult(second.store(imap4.parseIdList(b"1"), ["\\Flagged"], 1, False))
        self.assertEqual(calls, [("flags", {1: ["\\Flagged", "\\Recent"]})])
        deliverNow(self.store, self.user, b"Subject: three\n\nthree\n")
        self.store.clock.advance(1)  # the store's refresh after a delivery
        self.assertEqual(calls[-1], ("new", 3))
        syncResult(second.store(imap4.parseIdList(b"1"), ["\\Deleted"], 1, False))
        self.assertEqual(syncResult(second.expunge()), [1])
        self.assertEqual(first.getMessageCount(), 3)  # RFC 3501 7.4.1: numbers kept
        syncResult(first.store(imap4.parseIdList(b"3"), ["\\Deleted"], 1, False))
        self.assertEqual(syncResult(first.expunge()), [3, 1])
        self.assertEqual(first.getMessageCount(), 1)
        other.logout()

    def test_searchKeys(self):
        mailbox = self.select()
        syncResult(mailbox.store(imap4.parseIdList(b"2"), ["\\Seen"], 1, False))
        search = lambda q: syncResult(mailbox.search(imap4.IMAP4Server().arg_searchkeys(q)[0], uid=0))
        self.assertEqual(search(b"UNSEEN"), [1])
        self.assertEqual(search(b"SUBJECT two"), [2])
        self.assertEqual(search(b"OR SUBJECT one SEEN"), [1, 2])
        self.assertEqual(search(b"NOT FROM anne UID 1:*"), [2])
        self.assertEqual(search(b"2:*"), [2])
        self.assertEqual(search(b"LARGER 100"), [1])
        self.failureResultOf(mailbox.search([b"BODY", b"x"], uid=0), imap4.IllegalQueryError)

    def test_copyAndAppend(self):
        """
        COPY links the file with its flags; APPEND stores flags and the
        internal date, and the Deferred fires with the new UID.
        """
        source = self.select()
        syncResult(source.store(imap4.parseIdList(b"1"), ["\\Answered"], 1, False))
        ((_, message),) = self.fetch(source, b"1")
        target = syncResult(self.account.select("Archive"))
        self.assertIsNone(target)
        self.account.create("Archive")
        target = syncResult(self.account.select("Archive"))
        (_, other), = self.fetch(source, b"2")
        # Twisted's COPY: one copy() per message on the same mailbox
        self.assertEqual(syncResult(target.copy(message)), 1)
        self.assertEqual(syncResult(target.copy(other)), 2)
        self.store.clock.advance(0)
        archive = Path(self.user.maildir) / ".Archive"
        self.assertTrue(maildirNames(archive)[0].endswith(":2,R"))
        # Twisted's server opens a mailbox per APPEND or COPY and never
        # closes it: it gave its folder back itself
        self.assertEqual(target.folder._listeners, [])
        self.assertNotIn(target, self.account._mailboxes)
        target = syncResult(self.account.select("Archive"))
        appended = target.addMessage(io.BytesIO(b"S: a\n\nx\n"), ["\\Draft"], "01-Jan-2020 00:00:00 +0000")
        uid = syncResult(appended)
        self.assertEqual(uid, 3)
        self.assertEqual(target.getMessageCount(), 3)
        drafts = [n for n in maildirNames(archive) if n.endswith(":2,D")]
        self.assertEqual(len(drafts), 1)
        self.assertEqual(os.stat(archive / "cur" / drafts[0]).st_mtime, 1577836800)

    def test_accountOperations(self):
        """
        CREATE, SUBSCRIBE, LIST/LSUB, RENAME and DELETE through the account;
        names the store cannot hold are refused at once.
        """
        self.assertTrue(self.account.create("Lists/twisted"))
        self.account.subscribe("Lists/twisted")
        listed = syncResult(self.account.listMailboxes("", "*"))
        byName = {name: info.getFlags() for name, info in listed}
        self.assertEqual(byName["Lists"], ["\\HasChildren", "\\Noselect"])
        self.assertEqual(byName["Lists/twisted"], ["\\HasNoChildren"])
        self.assertEqual([n for n, _ in syncResult(self.account.listMailboxes("Lists", "%"))], ["Lists/twisted"])
        self.assertTrue(self.account.isSubscribed("Lists/twisted"))
        self.account.rename("Lists/twisted", "Old")
        self.account.delete("Old")
        self.assertNotIn("Old", [n for n, _ in syncResult(self.account.listMailboxes("", "*"))])
        self.assertRaises(imap4.MailboxException, self.account.create, "INBOX")
        self.assertRaises(imap4.MailboxException, self.account.create, "bad/../name")
        self.assertEqual(self.account.getPersonalNamespaces(), [["", "/"]])

    def test_logoutClosesEverything(self):
        """
        The realm's logout callable gives back every folder the session
        holds (Twisted's server never removes its listener).
        """
        mailbox = self.select()
        folder = mailbox.folder
        mailbox.addListener(object())
        syncResult(self.account.select("INBOX", 0))
        self.assertEqual(len(folder._listeners), 4)
        self.account.logout()
        self.assertEqual(folder._listeners, [])
        self.assertEqual(mailbox.listeners, [])


def _synchronousScheduler(iterator):
    """
    Twisted's C{iterateInReactor} without the reactor: run the server's
    FETCH writer to the end, waiting on the Deferreds it yields.
    """
    done = defer.Deferred()

    def go(_=None):
        for step in iterator:
            if isinstance(step, defer.Deferred):
                step.addCallback(go)
                return
        done.callback(None)

    go()
    return done


class ServerTranscriptTests(unittest.TestCase):
    """
    Twisted's server over a L{StringTransport}, logged in as our account.
    """

    def setUp(self):
        self.store = synchronousStore()
        self.user = temporaryAccount(self.mktemp())
        deliverNow(self.store, self.user, MSG1)

    def server(self, cls):
        server = cls(scheduler=_synchronousScheduler)
        server.timeOut = None
        transport = StringTransport()
        server.makeConnection(transport)
        server.setTimeout(None)
        server.account = TwistedAccount(self.store, self.user)
        server.state = "auth"
        self.addCleanup(server.account.logout)
        transport.clear()
        return server, transport

    def send(self, server, transport, line: bytes) -> bytes:
        transport.clear()
        server.dataReceived(line)
        # Twisted's FileProducer is a pull producer: pull until it is done
        while transport.producer is not None:
            transport.producer.resumeProducing()
        return transport.value()

    def test_appendWithoutFlags(self):
        """
        Twisted's stock server answers APPEND without a flag list with BAD
        (it iterates None); L{SeamIMAP4Server} stores the message.
        """
        stock, out = self.server(imap4.IMAP4Server)
        self.assertIn(b"+ Ready", self.send(stock, out, b"a1 APPEND INBOX {9}\r\n"))
        self.assertIn(b"a1 BAD Server error", self.send(stock, out, b"S: x\r\n\r\nx\r\n"))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        fixed, out = self.server(SeamIMAP4Server)
        self.send(fixed, out, b"a1 APPEND INBOX {9}\r\n")
        self.assertIn(b"a1 OK APPEND complete", self.send(fixed, out, b"S: x\r\n\r\nx\r\n"))
        maildir = Path(self.user.maildir)
        self.assertEqual(len(maildirNames(maildir, "cur") + maildirNames(maildir, "new")), 2)

    def test_appendTryCreate(self):
        """
        APPEND to a missing folder: Twisted's stock server answers BAD (it
        passes a str where bytes are needed); L{SeamIMAP4Server} answers
        RFC 3501's NO [TRYCREATE], so clients create the folder and retry.
        """
        stock, out = self.server(imap4.IMAP4Server)
        self.send(stock, out, b"a1 APPEND Nope {9}\r\n")
        self.assertIn(b"a1 BAD Server error", self.send(stock, out, b"S: x\r\n\r\nx\r\n"))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        fixed, out = self.server(SeamIMAP4Server)
        self.send(fixed, out, b"a1 APPEND Nope (\\Seen) {9}\r\n")
        self.assertEqual(self.send(fixed, out, b"S: x\r\n\r\nx\r\n"), b"a1 NO [TRYCREATE] No such mailbox\r\n")

    def test_bodyStructure(self):
        """
        BODYSTRUCTURE of a text message counts its lines (Twisted iterates
        the body file); a multipart message has its MIME parts, and
        BODY[n] is a part's body with CRLF line ends.
        """
        plain = b"Subject: x\nContent-Type: text/plain; charset=utf-8\n\nline1\nline2\n"
        deliverNow(self.store, self.user, plain)
        deliverNow(
            self.store,
            self.user,
            b"Subject: y\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
            b"--b\nContent-Type: text/html\n\n<p>a\nb</p>\n--b--\n",
        )
        server, out = self.server(SeamIMAP4Server)
        self.send(server, out, b"a1 SELECT INBOX\r\n")
        reply = self.send(server, out, b"a2 FETCH 2 BODYSTRUCTURE\r\n")
        # (Twisted's getBodyStructure gives the whole message's size as the body's)
        self.assertIn(b'(BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL NIL %d 2 ' % len(crlf(plain)), reply)
        reply = self.send(server, out, b"a3 FETCH 3 (BODYSTRUCTURE BODY[2])\r\n")
        self.assertIn(
            b'BODYSTRUCTURE (("text" "plain" NIL NIL NIL NIL 2 1 NIL NIL NIL NIL) '
            b'("text" "html" NIL NIL NIL NIL 11 2 NIL NIL NIL NIL) "mixed" ("boundary" "b")',
            reply,
        )
        self.assertIn(b"BODY[2] {11}\r\n<p>a\r\nb</p>)", reply)

    def test_selectFetchTranscript(self):
        server, out = self.server(SeamIMAP4Server)
        inbox = syncResult(self.store.mailboxes(self.user).open())
        self.addCleanup(inbox.close)
        reply = self.send(server, out, b"a1 SELECT INBOX\r\n")
        self.assertIn(b"* 1 EXISTS\r\n* 1 RECENT\r\n", reply)
        self.assertIn(b"* OK [UIDVALIDITY %d]\r\n" % inbox.uidValidity, reply)
        self.assertIn(b"a1 OK [READ-WRITE] SELECT successful", reply)
        reply = self.send(server, out, b"a2 FETCH 1 (UID RFC822.SIZE BODY[HEADER.FIELDS (SUBJECT)] BODY[TEXT])\r\n")
        self.assertIn(b"UID 1 RFC822.SIZE %d" % len(crlf(MSG1)), reply)
        # Twisted's _formatHeaders: field names title-cased, no blank line
        self.assertIn(b"BODY[HEADER.FIELDS (Subject)] {14}\r\nSubject: one\r\n BODY", reply)
        self.assertIn(b"BODY[TEXT] {10}\r\nbody one\r\n)", reply)
        self.assertIn(b"a2 OK FETCH completed", reply)
        out.clear()
        deliverNow(self.store, self.user, MSG2)
        self.store.clock.advance(1)  # the store's refresh after a delivery
        self.assertEqual(out.value(), b"* 2 EXISTS\r\n")


class EndToEndTests(unittest.TestCase):
    """
    Twisted's stock server (with the APPEND wrapper) on 127.0.0.1, our
    portal and a threaded store on a temporary Maildir; imaplib runs in a
    thread while the reactor serves it.
    """

    def setUp(self):
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        backend = cryptBackend()
        (directory / "users").write_text("edouard:" + makeHash(backend, "s3cret", "SHA512-CRYPT") + "\n")
        config = makeConfig(
            directory,
            auth="checkers = passwd-file\npasswd_file = users",
            store=f"mail_location = maildir:{directory}/mail/%u",
        )
        self.portal = makePortal(config, task.Clock(), runner=runSynchronously)
        self.store = Store(reactor, threads=2, fsync=False, rescanInterval=0, inotify=False, hostname="test.invalid")
        self.addCleanup(self.store.close)
        registerTwistedAccount(self.portal.realm, self.store)
        self.user = syncResult(self.portal.directory.lookup("edouard"))
        self.maildir = Path(self.user.maildir)
        self.lost = []

        test = self

        class Server(SeamIMAP4Server):
            def connectionLost(self, reason):
                super().connectionLost(reason)
                test.lost.append(self)

        factory = protocol.ServerFactory()
        factory.protocol = Server

        def build(addr):
            server = Server()
            server.portal = self.portal
            server.factory = factory
            return server

        factory.buildProtocol = build
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def deliver(self, message: bytes):
        """
        A delivery through the store, done when the open folder (if any)
        has told its sessions.
        """

        @defer.inlineCallbacks
        def run():
            txn = self.store.beginDelivery()
            txn.addRecipient(self.user, "INBOX", b"", create=True)
            txn.write(message)
            (result,) = yield txn.commit()
            self.assertIsNone(result.error)
            folder = yield self.store.mailboxes(self.user).open()
            yield folder.refresh()
            folder.close()

        return threads.blockingCallFromThread(reactor, run)

    @defer.inlineCallbacks
    def test_imaplibSession(self):
        yield threads.deferToThread(self.deliver, MSG1)
        yield threads.deferToThread(self.deliver, MSG2)
        port = self.port.getHost().port
        seen = {}

        def client():
            m = imaplib.IMAP4("127.0.0.1", port)
            try:
                seen["login"] = m.login("edouard", "s3cret")
                seen["list"] = m.list()
                # a copy: imaplib keeps appending to the list it returned
                typ, data = m.select("INBOX")
                seen["select"] = (typ, list(data))
                seen["uidvalidity"] = m.response("UIDVALIDITY")
                seen["fetch"] = m.fetch("1:2", "(FLAGS UID RFC822.SIZE BODY[] BODY[HEADER])")
                seen["store"] = m.store("1", "+FLAGS", "(\\Seen $Important)")
                seen["append-flags"] = m.append("INBOX", "(\\Flagged)", None, b"Subject: a\r\n\r\nflagged\r\n")
                seen["append-bare"] = m.append("INBOX", None, None, b"Subject: b\r\n\r\nbare\r\n")
                m.response("EXISTS")
                seen["copy"] = m.copy("1:2", "Archive")
                seen["status"] = m.status("Archive", "(MESSAGES UIDNEXT UNSEEN)")
                seen["search"] = m.search(None, "UNSEEN")
                seen["uid-search"] = m.uid("SEARCH", "SUBJECT", "b")
                seen["lsub"] = m.lsub()
                # a second session's change reaches this one as EXISTS
                self.deliver(b"Subject: pushed\r\n\r\nfrom elsewhere\r\n")
                seen["noop"] = m.noop()
                seen["exists"] = m.response("EXISTS")
                # and another IMAP session's flag change as FETCH FLAGS
                other = imaplib.IMAP4("127.0.0.1", port)
                other.login("edouard", "s3cret")
                other.select("INBOX")
                other.store("3", "+FLAGS", "(\\Answered)")
                other.logout()
                m.noop()
                seen["pushed-flags"] = m.response("FETCH")
                seen["deleted"] = m.store("2", "+FLAGS.SILENT", "(\\Deleted)")
                seen["expunge"] = m.expunge()
                seen["after"] = m.fetch("1:*", "(UID)")
                seen["logout"] = m.logout()
            finally:
                if m.state != "LOGOUT":
                    m.shutdown()

        yield threads.deferToThread(client)
        self.assertEqual(seen["login"][0], "OK")
        listed = b" ".join(seen["list"][1])
        for name in (b"INBOX", b"Archive", b"Sent", b"Drafts"):
            self.assertIn(b'"/" "' + name + b'"', listed)
        self.assertEqual(seen["select"], ("OK", [b"2"]))
        folder = yield self.store.mailboxes(self.user).open()
        self.addCleanup(folder.close)
        self.assertEqual(seen["uidvalidity"], ("UIDVALIDITY", [b"%d" % folder.uidValidity]))
        fetched = seen["fetch"][1]
        first = fetched[0][0]
        self.assertIn(b"FLAGS (\\Recent) UID 1 RFC822.SIZE %d" % len(crlf(MSG1)), first)
        self.assertEqual(fetched[0][1], crlf(MSG1))
        self.assertEqual(fetched[1][1], b"From: anne@domaineel.rt\r\nTo: edouard@domaineel.rt\r\nSubject: one\r\n"
                         b"Received: by a\r\nReceived: by b\r\n")
        self.assertEqual(fetched[3][1], crlf(MSG2)[:-2])
        self.assertEqual(seen["store"], ("OK", [b"1 (FLAGS ($Important \\Seen \\Recent))"]))
        self.assertEqual(seen["append-flags"][0], "OK")
        self.assertEqual(seen["append-bare"][0], "OK")
        self.assertEqual(seen["copy"][0], "OK")
        self.assertEqual(seen["status"], ("OK", [b"Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 1)"]))
        self.assertEqual(seen["search"], ("OK", [b"2 3 4"]))
        self.assertEqual(seen["uid-search"], ("OK", [b"4"]))
        self.assertIn(b'"/" "Sent"', b" ".join(seen["lsub"][1]))
        self.assertEqual(seen["exists"], ("EXISTS", [b"5"]))
        # (message 3 came after this SELECT: the other session claimed its \\Recent)
        self.assertEqual(seen["pushed-flags"], ("FETCH", [b"3 (FLAGS (\\Answered \\Flagged))"]))
        self.assertEqual(seen["expunge"], ("OK", [b"2"]))
        self.assertEqual([line.split(b" (")[1] for line in seen["after"][1]],
                         [b"UID 1)", b"UID 3)", b"UID 4)", b"UID 5)"])
        self.assertEqual(seen["logout"][0], "BYE")
        # the Maildir: flags as letters, keywords in dovecot-keywords
        names = maildirNames(self.maildir, "cur") + maildirNames(self.maildir, "new")
        self.assertEqual(len(names), 4)
        self.assertTrue(any(n.endswith(":2,Sa") for n in names), names)
        self.assertTrue(any(n.endswith(":2,FR") for n in names), names)
        self.assertIn("0 $Important", (self.maildir / "dovecot-keywords").read_text())
        archive = self.maildir / ".Archive"
        self.assertEqual(len(maildirNames(archive, "cur") + maildirNames(archive, "new")), 2)
        # the session's listeners went away with the connection
        while not self.lost:
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(folder._listeners, [])
