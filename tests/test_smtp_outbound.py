"""
The outbound queue and relay client, against a real SMTP sink (maillab's
own protocol) on 127.0.0.1 and a fake DNS resolver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.internet import defer, reactor, task, threads
from twisted.names import dns, error as dnserror
from twisted.trial import unittest

from twisted_maillab.smtp.delivery import QueueIds
from twisted_maillab.smtp.envelope import Mailbox, MailParams, RcptParams, SMTPReply
from twisted_maillab.smtp.outbound import OutboundQueue
from twisted_maillab.smtp.relayclient import WireText
from twisted_maillab.smtp.server import Envelope, Recipient, Settings, SMTPServerFactory


class SinkMessage:
    def __init__(self, sink, envelope):
        self.sink, self.envelope, self.data = sink, envelope, b""

    def write(self, data):
        self.data += data

    def end(self):
        self.sink.received.append((self.envelope, self.data))
        return defer.succeed("REMOTE1")

    def abort(self):
        pass


class Sink:
    """
    A remote MX: accepts everything except bad@ (550) and later@ (450).
    """

    def __init__(self):
        self.received = []
        self.sessions = []

    def isLocal(self, mailbox):
        return True

    def ownsAddress(self, account, address):
        return True

    # a remote MX has no outbound queue and takes any sender
    outbound = None

    def checkSender(self, session, envelope):
        return None

    def checkRecipient(self, session, mailbox, envelope=None):
        if mailbox.local == "bad":
            return defer.fail(SMTPReply(550, "5.1.1", f"{mailbox}: User unknown"))
        if mailbox.local == "later" and self.deferLater:
            return defer.fail(SMTPReply(450, "4.2.1", f"{mailbox}: try later"))
        return defer.succeed([mailbox.address])

    deferLater = True

    def begin(self, session, envelope):
        self.sessions.append(session)
        return SinkMessage(self, envelope)


class FakeResolver:
    def __init__(self, mx, addresses):
        self.mx = mx
        self.addresses = addresses

    def lookupMailExchange(self, name):
        if name not in self.mx:
            return defer.fail(dnserror.DNSNameError(name))
        records = [
            dns.RRHeader(name, dns.MX, payload=dns.Record_MX(preference, host))
            for preference, host in self.mx[name]
        ]
        return defer.succeed((records, [], []))

    def lookupAddress(self, name):
        records = [dns.RRHeader(name, dns.A, payload=dns.Record_A(a)) for a in self.addresses.get(name, [])]
        if not records:
            return defer.fail(dnserror.DNSNameError(name))
        return defer.succeed((records, [], []))

    def lookupIPV6Address(self, name):
        return defer.fail(dnserror.DNSNameError(name))


def remoteMX(testCase, sink=None):
    """
    A remote MX on 127.0.0.1 (maillab's protocol over a L{Sink}), closed
    at the end of the test.

    @return: C{(sink, port)}.
    """
    sink = sink or Sink()
    clock = task.Clock()
    factory = SMTPServerFactory(
        Settings(hostname="mx.remote.test", banner="mx.remote.test ESMTP", peernameLookup=False),
        sink,
        sink,
        clock=clock,
        queueIds=QueueIds(clock),
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return sink, port


def runner(f, *args):
    return threads.deferToThread(f, *args)


class QueueTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.sink, self.port = remoteMX(self)
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.directory = Path(self.mktemp())
        self.resolver = FakeResolver(
            {
                "remote.test": [(20, "mx2.remote.test"), (10, "mx1.remote.test")],
                "nullmx.test": [(0, "")],
                "nomx.test": [],
            },
            {
                # mx1 is down (nothing listens on 127.0.0.2), mx2 answers.
                "mx1.remote.test": ["127.0.0.2"],
                "mx2.remote.test": ["127.0.0.1"],
                "nomx.test": ["127.0.0.1"],
            },
        )
        self.bounces = []
        self.queue = OutboundQueue(
            self.directory,
            reactor=reactor,
            clock=self.clock,
            resolver=self.resolver,
            hostname="smtp.domaineel.rt",
            runner=runner,
            port=self.port.getHost().port,
            connectTimeout=5,
            localDelivery=lambda address, data: defer.succeed(self.bounces.append((address, data))),
            isLocal=lambda domain: domain == "domaineel.rt",
        )
        self.queue.start()
        self.addCleanup(self.queue.stop)

    @defer.inlineCallbacks
    def enqueue(self, recipients, body=b"Subject: hi\n\nhello\n.dot\n", sender="edouard@domaineel.rt", **params):
        envelope = Envelope(Mailbox(*sender.split("@")) if sender else Mailbox("", ""), MailParams(**params), "Q1")
        pairs = [
            (Recipient(Mailbox(*address.split("@")), RcptParams(notify=notify, orcpt=orcpt, orcptType="rfc822" if orcpt else None)), address)
            for address, notify, orcpt in recipients
        ]
        writer = self.queue.writer(envelope, pairs)
        yield writer.write(body[:5])
        yield writer.write(body[5:])
        yield writer.commit()
        # The first attempt was scheduled at once on the (fake) clock; run
        # it here so the test can wait for it.
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [self.clock.seconds()])
        self.queue.stop()
        return "Q1"

    @defer.inlineCallbacks
    def drain(self, advance=0):
        """
        Move the clock by C{advance} and run every message the queue
        scheduled until then (the reports it queued), until none is due.
        """
        self.clock.rightNow += advance
        while True:
            now = self.clock.seconds()
            due = [queueId for queueId, timer in self.queue._timers.items() if timer.active() and timer.getTime() <= now]
            if not due:
                return
            for queueId in due:
                self.queue._timers.pop(queueId).cancel()
                yield self.queue._run(queueId)

    def state(self, queueId="Q1"):
        path = self.directory / f"{queueId}.json"
        return json.loads(path.read_text()) if path.exists() else None

    @defer.inlineCallbacks
    def test_mxFailoverDsnParametersAndBody(self):
        body = b"Subject: hi\n\n.leading dot\nline\n..two\n\xc3\xa9t\xc3\xa9\n"
        queueId = yield self.enqueue(
            [("friend@remote.test", ("SUCCESS", "FAILURE"), "friend@remote.test")],
            body=body,
            ret="HDRS",
            envid="env+1",
        )
        yield self.queue.attempt(queueId)
        [(envelope, data)] = self.sink.received
        # What the remote stored (LF, unstuffed) is exactly our spool file.
        self.assertEqual(data, body)
        self.assertEqual(envelope.sender.address, "edouard@domaineel.rt")
        self.assertEqual(envelope.params.size, len(body) + body.count(b"\n"))
        self.assertEqual((envelope.params.ret, envelope.params.envid), ("HDRS", "env+1"))
        [rcpt] = envelope.recipients
        self.assertEqual(rcpt.params.notify, ("SUCCESS", "FAILURE"))
        self.assertEqual(rcpt.params.orcpt, "friend@remote.test")
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(self.bounces, [])

    @defer.inlineCallbacks
    def test_permanentFailureBouncesToLocalSender(self):
        queueId = yield self.enqueue([("bad@remote.test", (), "bad@remote.test"), ("ok@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        self.assertEqual(len(self.sink.received), 1)
        [(address, report)] = self.bounces
        self.assertEqual(address, "edouard@domaineel.rt")
        text = report.decode()
        self.assertIn("Content-Type: multipart/report; report-type=delivery-status;", text)
        self.assertIn("Final-Recipient: rfc822; bad@remote.test", text)
        self.assertIn("Original-Recipient: rfc822; bad@remote.test", text)
        self.assertIn("Action: failed\nStatus: 5.1.1", text)
        self.assertIn("Diagnostic-Code: smtp; 550 5.1.1 <bad@remote.test>: User unknown", text)
        self.assertIn("Content-Type: message/rfc822\n\nSubject: hi\n\nhello\n", text)
        self.assertNotIn("ok@remote.test", text)
        self.assertEqual(os.listdir(self.directory), [])

    @defer.inlineCallbacks
    def test_temporaryFailureRetriesWithBackoff(self):
        queueId = yield self.enqueue([("later@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        state = self.state()
        self.assertEqual(state["recipients"][0]["status"], "pending")
        self.assertIn("450 4.2.1", state["recipients"][0]["reply"])
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 300)
        self.queue.stop()
        yield self.queue.attempt(queueId)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 600)
        self.queue.stop()
        self.sink.deferLater = False
        yield self.queue.attempt(queueId)
        self.assertEqual(len(self.sink.received), 1)
        self.assertIsNone(self.state())

    @defer.inlineCallbacks
    def test_expiryBounces(self):
        queueId = yield self.enqueue([("later@remote.test", ("FAILURE",), None)])
        self.clock.advance(5 * 86400)
        yield self.queue.attempt(queueId)
        yield self.drain()
        [(address, report)] = self.bounces
        self.assertIn(b"Status: 5.4.7", report)
        self.assertIn(b"message expired in queue", report)

    @defer.inlineCallbacks
    def test_nullMxAndNoDomain(self):
        queueId = yield self.enqueue([("a@nullmx.test", (), None), ("b@nowhere.test", (), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        [(address, report)] = self.bounces
        self.assertIn(b"Status: 5.1.10", report)
        self.assertIn(b"Status: 5.1.2", report)

    @defer.inlineCallbacks
    def test_implicitMxAndNotifyNever(self):
        queueId = yield self.enqueue([("c@nomx.test", (), None), ("bad@nomx.test", ("NEVER",), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        self.assertEqual(len(self.sink.received), 1)
        self.assertEqual(self.bounces, [])

    @defer.inlineCallbacks
    def test_bounceToRemoteSenderIsQueued(self):
        queueId = yield self.enqueue([("bad@remote.test", (), None)], sender="someone@elsewhere.test")
        yield self.queue.attempt(queueId)
        self.assertEqual(self.bounces, [])
        listing = os.listdir(self.directory)
        self.assertEqual(len([p for p in listing if p.endswith(".json")]), 1, listing)
        [state] = [p for p in listing if p.endswith(".json")]
        bounce = json.loads((self.directory / state).read_text())
        self.assertEqual(bounce["sender"], "")
        self.assertEqual([r["address"] for r in bounce["recipients"]], ["someone@elsewhere.test"])
        self.assertEqual(bounce["recipients"][0]["notify"], ["NEVER"])
        report = (self.directory / state.replace(".json", ".eml")).read_bytes()
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", report)

    @defer.inlineCallbacks
    def test_commitAwaitedFromACoroutineIsDurable(self):
        # enqueueBounce awaits write() then commit(): commit must not return
        # before the state file is renamed into place (a coroutine resumed
        # from inside the writer's callback chain once got the chain's
        # intermediate result at once).
        for _ in range(20):
            yield defer.ensureDeferred(self.queue.enqueueBounce("a@elsewhere.test", b"x" * 100))
            listing = os.listdir(self.directory)
            self.assertEqual([p for p in listing if p.endswith(".tmp")], [])
            self.assertEqual(
                sorted(p[:-5] for p in listing if p.endswith(".json")),
                sorted(p[:-4] for p in listing if p.endswith(".eml")),
            )

    @defer.inlineCallbacks
    def test_bouncesAtOneInstantGetDistinctIds(self):
        """
        Bounces created at the same instant (the clock does not move) each
        get their own spool file: ids once took 12 random bits after the
        microsecond and collided (EEXIST) now and then.
        """
        for _ in range(200):
            yield defer.ensureDeferred(self.queue.enqueueBounce("a@elsewhere.test", b"x"))
        states = [p for p in os.listdir(self.directory) if p.endswith(".json")]
        self.assertEqual(len(states), 200)

    @defer.inlineCallbacks
    def test_relayedNoticeWhenRemoteHasNoDSN(self):
        from twisted_maillab.smtp.server import ESMTPServer

        class NoDSN(ESMTPServer):
            def extensions(self):
                return [e for e in super().extensions() if e != "DSN"]

        factory = self.port.factory
        factory.buildProtocol = lambda addr: NoDSN(factory)
        queueId = yield self.enqueue([("friend@remote.test", ("SUCCESS",), None), ("other@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        [(envelope, data)] = self.sink.received
        # Without DSN on the remote, no NOTIFY/ORCPT is sent...
        self.assertEqual(envelope.recipients[0].params.notify, ())
        # ...and we report "relayed" ourselves (RFC 3461 5.2.2).
        [(address, report)] = self.bounces
        self.assertEqual(address, "edouard@domaineel.rt")
        self.assertIn(b"Subject: Successful Mail Delivery Report", report)
        self.assertIn(b"Final-Recipient: rfc822; friend@remote.test\nAction: relayed\nStatus: 2.0.0", report)
        self.assertNotIn(b"other@remote.test", report)

    @defer.inlineCallbacks
    def test_nullSenderNeverBouncedPostmasterNotified(self):
        """
        A null-sender message (a bounce) that fails is never reported to
        the null sender: the postmaster gets a double bounce, as Postfix.
        """
        queueId = yield self.enqueue([("bad@remote.test", (), None)], sender="")
        yield self.queue.attempt(queueId)
        yield self.drain()
        [(address, report)] = self.bounces
        self.assertEqual(address, "postmaster@domaineel.rt")
        self.assertIn(b"To: <postmaster@domaineel.rt>", report)
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", report)
        self.assertEqual(os.listdir(self.directory), [])

    @defer.inlineCallbacks
    def test_restartReschedules(self):
        yield self.enqueue([("later@remote.test", (), None)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.queue.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    @defer.inlineCallbacks
    def test_unfinishedCommitRemovedAtStart(self):
        self.queue.stop()
        (self.directory / "X1.eml").write_bytes(b"partial")
        (self.directory / "X2.json.tmp").write_bytes(b"{")
        self.queue.start()
        self.assertEqual(sorted(os.listdir(self.directory)), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        yield None

    @defer.inlineCallbacks
    def test_brokenSpoolIsRetriedNotStranded(self):
        queueId = yield self.enqueue([("friend@remote.test", (), None)])
        # A session that breaks (here: the body file vanished) defers the
        # recipient with the normal backoff.
        (self.directory / f"{queueId}.eml").unlink()
        yield self.queue._run(queueId)
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 300)
        self.assertIn("session failed", self.state()["recipients"][0]["reply"])
        # A run that breaks as a whole (unreadable state) is retried later.
        self.queue.stop()
        (self.directory / f"{queueId}.json").write_text("{not json")
        yield self.queue._run(queueId)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), self.queue.maxBackoff)

    @defer.inlineCallbacks
    def test_flushDomain(self):
        queueId = yield self.enqueue([("later@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        self.queue.stop()
        self.assertEqual((yield self.queue.flushDomain("other.test")), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((yield self.queue.flushDomain("Remote.Test.")), 1)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), self.clock.seconds())

    @defer.inlineCallbacks
    def test_flushDuringAnAttemptRunsAgainAfterIt(self):
        """
        A message scheduled now (ETRN, a flush) while its attempt runs is
        tried again right after that attempt, not dropped.
        """
        queueId = yield self.enqueue([("later@remote.test", (), None)])
        gate = defer.Deferred()
        deliver = self.queue._deliverDomain

        async def slow(message, domain, recipients):
            await gate
            await deliver(message, domain, recipients)

        self.queue._deliverDomain = slow
        # The flush's timer fires while the attempt runs...
        run = self.queue._run(queueId)
        self.queue.schedule(queueId, 0)
        self.clock.advance(0)
        gate.callback(None)
        yield run
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), self.clock.seconds())
        # ...or is still waiting when the attempt sets its backoff.
        self.queue.stop()
        gate = defer.Deferred()
        run = self.queue._run(queueId)
        self.queue.schedule(queueId, 0)
        gate.callback(None)
        yield run
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), self.clock.seconds())

    @defer.inlineCallbacks
    def test_destinationConcurrencyLimit(self):
        self.queue.destinationConcurrency = 2
        active = []
        peak = []
        release = []

        async def slow(message, domain, recipients):
            active.append(1)
            peak.append(len(active))
            gate = defer.Deferred()
            release.append(gate)
            await gate
            active.pop()
            for r in recipients:
                r.status = "sent"

        self.queue._deliverDomain = slow
        ids = []
        for n in range(5):
            envelope = Envelope(Mailbox("edouard", "domaineel.rt"), MailParams(), f"C{n}")
            writer = self.queue.writer(envelope, [(Recipient(Mailbox("x", "remote.test"), RcptParams()), "x@remote.test")])
            yield writer.write(b"x\n")
            yield writer.commit()
            ids.append(f"C{n}")
        self.queue.stop()
        runs = [self.queue._run(queueId) for queueId in ids]
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(release), 2)
        while release:
            release.pop(0).callback(None)
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield defer.gatherResults(runs)
        self.assertEqual(max(peak), 2)
        self.assertEqual(os.listdir(self.directory), [])

    def test_wireText(self):
        text = WireText()
        self.assertEqual(text.feed(b".a\nb\n."), b"..a\r\nb\r\n..")
        self.assertFalse(text.atLineStart)
        self.assertEqual(text.end(), b"\r\n.\r\n")
        text = WireText()
        self.assertEqual(text.feed(b"x\n"), b"x\r\n")
        self.assertEqual(text.feed(b".y\n"), b"..y\r\n")
        self.assertEqual(text.end(), b".\r\n")
        text = WireText()
        self.assertEqual(text.feed(b"x"), b"x")
        self.assertEqual(text.feed(b".y\n"), b".y\r\n")

    def logged(self):
        """
        The text of every event logged from now on.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        lines = []

        def observer(event):
            lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return lines

    @defer.inlineCallbacks
    def test_failedRecipientBouncedAtOnceOthersStayQueued(self):
        """
        A 5xx recipient is reported at the end of the attempt in which it
        failed while another recipient of the message stays deferred, and
        never reported again.
        """
        queueId = yield self.enqueue([("bad@remote.test", (), None), ("later@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        [(address, report)] = self.bounces
        self.assertEqual(address, "edouard@domaineel.rt")
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", report)
        self.assertNotIn(b"later@remote.test", report)
        bad, later = self.state()["recipients"]
        self.assertEqual((bad["status"], bad["reported"]), ("failed", True))
        self.assertEqual(later["status"], "pending")
        # Later attempts (still deferred, then delivered) report nothing more.
        for deliver in (False, True):
            self.sink.deferLater = not deliver
            self.queue.stop()
            yield self.queue.attempt(queueId)
            yield self.drain()
            self.assertEqual(len(self.bounces), 1)
        self.assertEqual(len(self.sink.received), 1)
        self.assertIsNone(self.state())

    @defer.inlineCallbacks
    def test_undeliverableBounceIsQueuedAndRetried(self):
        """
        A report whose local delivery fails (the sender's home does not
        exist yet) stays in the spool with the null sender and is retried
        with the normal backoff, never dropped.
        """
        from twisted_maillab.store.errors import MailboxNotFound

        logged = self.logged()
        homes = []

        def deliver(address, data):
            if not homes:
                return defer.fail(MailboxNotFound("/home/edouard/Maildir: no Maildir yet"))
            self.bounces.append((address, data))
            return defer.succeed(None)

        self.queue.localDelivery = deliver
        queueId = yield self.enqueue([("bad@remote.test", (), None)])
        yield self.queue.attempt(queueId)
        yield self.drain()
        self.assertIsNone(self.state(queueId))
        [name] = [p for p in os.listdir(self.directory) if p.endswith(".json")]
        bounceId = name[: -len(".json")]
        state = self.state(bounceId)
        self.assertEqual((state["sender"], state["kind"]), ("", "bounce"))
        [recipient] = state["recipients"]
        self.assertEqual((recipient["address"], recipient["status"]), ("edouard@domaineel.rt", "pending"))
        self.assertIn("no Maildir yet", recipient["reply"])
        self.assertIn(f"{queueId}: sender non-delivery notification: {bounceId}", logged)
        self.assertFalse([line for line in logged if "could not" in line], logged)
        self.assertIn(
            f"{bounceId}: to=<edouard@domaineel.rt>, relay=local, delay=0, delays=0/0/0/0, dsn=4.2.0, "
            "status=deferred (/home/edouard/Maildir: no Maildir yet)",
            logged,
        )
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), self.queue.minBackoff)
        homes.append("/home/edouard")
        yield self.drain(self.queue.minBackoff)
        [(address, report)] = self.bounces
        self.assertEqual(address, "edouard@domaineel.rt")
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", report)
        self.assertEqual(os.listdir(self.directory), [])

    @defer.inlineCallbacks
    def test_failedBounceGoesToPostmasterAndDoubleBounceIsDropped(self):
        """
        A bounce that fails permanently goes to the postmaster (never to
        the null sender); a double bounce that fails is logged and dropped.
        """
        logged = self.logged()
        self.queue.postmaster = "postmaster@elsewhere.test"
        queueId = yield self.enqueue([("bad@remote.test", (), None)], sender="bad@remote.test")
        yield self.queue.attempt(queueId)
        yield self.drain()
        # The bounce to bad@remote.test was refused (550), so was the double
        # bounce to the postmaster (no such domain), and nothing is left.
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(self.bounces, [])
        self.assertEqual(self.sink.received, [])
        bounced = [line.split(": to=")[1].split(",")[0] for line in logged if "status=bounced" in line]
        self.assertEqual(bounced, ["<bad@remote.test>", "<bad@remote.test>", "<postmaster@elsewhere.test>"])
        notices = [line for line in logged if "notification" in line]
        self.assertEqual(len(notices), 3, notices)
        self.assertIn("sender non-delivery notification", notices[0])
        self.assertIn("postmaster non-delivery notification", notices[1])
        self.assertIn("undeliverable postmaster notification discarded", notices[2])

    @defer.inlineCallbacks
    def test_unknownStateKeysAreKept(self):
        """
        Keys of <id>.json this version does not know (a newer field) are
        written back as they were when the queue rewrites the file.
        """
        queueId = yield self.enqueue([("later@remote.test", (), None)])
        path = self.directory / f"{queueId}.json"
        data = json.loads(path.read_text())
        data["futureField"] = True
        data["recipients"][0]["note"] = "x"
        path.write_text(json.dumps(data))
        yield self.queue.attempt(queueId)
        state = self.state()
        self.assertEqual(state["attempts"], 1)
        self.assertIs(state["futureField"], True)
        self.assertEqual(state["recipients"][0]["note"], "x")


class SpoolWriterTests(unittest.TestCase):
    def test_openDoneBeforeTheConstructorReturns(self):
        """
        The store's pool may run the writer's open before the runner call
        returns (a hot thread); the file descriptor it set must survive the
        rest of the constructor.  A synchronous runner makes that order
        certain.
        """
        from pathlib import Path
        from types import SimpleNamespace

        from twisted_maillab.smtp.spool import QueuedMessage, SpoolWriter

        directory = Path(self.mktemp())
        directory.mkdir()
        queue = SimpleNamespace(directory=directory, runner=lambda f, *args: defer.maybeDeferred(f, *args))
        writer = SpoolWriter(queue, QueuedMessage(queueId="4AB", sender="a@example.org", created=0.0))
        self.successResultOf(writer.write(b"Subject: x\r\n\r\nbody\r\n"))
        self.assertIsNone(writer._failed)
        self.assertEqual((directory / "4AB.eml").read_bytes(), b"Subject: x\r\n\r\nbody\r\n")
        writer.abort()
