"""
SMTP protocol, policy, aliases and envelope tests on StringTransport with
in-memory fakes (tests/smtp_fixtures/fakes.py).
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.smtp_fixtures.fakes import Harness, ImplicitTLSTransport
from twisted_maillab.smtp.aliases import AliasError, parseAliases
from twisted_maillab.smtp.envelope import SMTPReply, parseMail, parseRcpt
from twisted_maillab.smtp.policy import hostInNetworks

ALL = frozenset({"SIZE", "8BITMIME", "SMTPUTF8", "DSN", "AUTH", "PIPELINING"})


def replies(transport) -> list[str]:
    return transport.value().decode("utf-8").split("\r\n")[:-1]


def send(proto, transport, data: bytes) -> list[str]:
    transport.clear()
    proto.dataReceived(data)
    return replies(transport)


class SeedSessionTests(unittest.TestCase):
    """
    The session of the seed's Wireshark capture, and its stored result.
    """

    def test_seedSession(self):
        h = Harness()
        # The seed's server has edouard and utilisateur; admin is the user
        # on the client machine.
        del h.directory.accounts["admin"]
        proto, t = h.connect("192.168.1.4")
        self.assertEqual(replies(t), ["220 smtp.domaineel.rt ESMTP maillab"])
        self.assertEqual(
            send(proto, t, b"EHLO antenn04.univ-lr.fr\r\n"),
            [
                "250-smtp.domaineel.rt",
                "250-PIPELINING",
                "250-SIZE 10240000",
                "250-VRFY",
                "250-ETRN",
                "250-STARTTLS",
                "250-ENHANCEDSTATUSCODES",
                "250-8BITMIME",
                "250-DSN",
                "250 SMTPUTF8",
            ],
        )
        # Pipelined as the seed's client did.
        got = send(
            proto,
            t,
            b"MAIL FROM:<admin@localhost> SIZE=349\r\n"
            b"RCPT TO:<edouard@smtp.domaineel.rt> ORCPT=rfc822;edouard@smtp.domaineel.rt\r\n"
            b"DATA\r\n",
        )
        self.assertEqual(got, ["250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"])
        rcpt = proto.envelope.recipients[0]
        self.assertEqual(rcpt.params.orcpt, "edouard@smtp.domaineel.rt")
        self.assertEqual(rcpt.params.orcptType, "rfc822")
        self.assertEqual(proto.envelope.params.size, 349)
        queueId = proto.envelope.queueId
        got = send(proto, t, b"Subject: t\r\nFrom: admin@localhost\r\n\r\nsdgfd\r\n..dot\r\n.\r\nQUIT\r\n")
        self.assertEqual(got, [f"250 2.0.0 Ok: queued as {queueId}", "221 2.0.0 Bye"])
        self.assertTrue(t.disconnecting)
        [txn] = h.store.committed
        stored = txn.fileFor("edouard").decode()
        lines = stored.split("\n")
        self.assertEqual(lines[0], "Return-Path: <admin@localhost>")
        self.assertEqual(lines[1], "X-Original-To: edouard@smtp.domaineel.rt")
        self.assertEqual(lines[2], "Delivered-To: edouard@smtp.domaineel.rt")
        self.assertEqual(lines[3], "Received: from antenn04.univ-lr.fr (unknown [192.168.1.4])")
        self.assertEqual(lines[4], f"\tby smtp.domaineel.rt (maillab) with ESMTP id {queueId}")
        self.assertTrue(lines[5].startswith("\tfor <edouard@smtp.domaineel.rt>; "), lines[5])
        # LF line ends, dot-unstuffed, no CR anywhere.
        self.assertTrue(stored.endswith("Subject: t\nFrom: admin@localhost\n\nsdgfd\n.dot\n"))
        self.assertNotIn("\r", stored)

    def test_queueIdsUnique(self):
        h = Harness()
        ids = {h.factory.queueIds.next() for _ in range(5000)}
        self.assertEqual(len(ids), 5000)


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness()
        self.proto, self.t = self.h.connect()

    def ehlo(self):
        send(self.proto, self.t, b"EHLO client.example\r\n")

    def test_mailBeforeEhlo(self):
        self.assertEqual(
            send(self.proto, self.t, b"MAIL FROM:<a@b.example>\r\n"),
            ["503 5.5.1 Error: send HELO/EHLO first"],
        )

    def test_noopHelpRset(self):
        self.ehlo()
        got = send(self.proto, self.t, b"NOOP\r\nHELP\r\nRSET\r\n")
        self.assertEqual(got[0], "250 2.0.0 Ok")
        self.assertTrue(got[1].startswith("214-2.0.0 Commands:"))
        self.assertTrue(got[2].startswith("214 2.0.0 "))
        self.assertEqual(got[3], "250 2.0.0 Ok")

    def test_disconnectLineCountsCommands(self):
        """
        One log line per connection, at the end, naming the client and
        counting its commands the way Postfix's disconnect line does; no
        separate connect line.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        proto, t = self.h.connect("192.0.2.7")
        send(proto, t, b"EHLO client.example\r\nNOOP\r\nFOO\r\nNOOP\r\nQUIT\r\n")
        proto.connectionLost(None)
        lines = [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("twisted_maillab.smtp")]
        self.assertEqual(
            [line for line in lines if "connect from" in line],
            ["smtp: disconnect from unknown[192.0.2.7] ehlo=1 noop=2 unknown=1 quit=1 commands=5"],
        )

    def test_unknownCommand(self):
        self.assertEqual(send(self.proto, self.t, b"FOO\r\n"), ["500 5.5.2 Error: command not recognized"])

    def test_unknownParameter(self):
        self.ehlo()
        self.assertEqual(
            send(self.proto, self.t, b"MAIL FROM:<a@b.example> FOO=BAR\r\n"),
            ["555 5.5.4 Unsupported option: FOO"],
        )
        send(self.proto, self.t, b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            send(self.proto, self.t, b"RCPT TO:<edouard@domaineel.rt> XYZ\r\n"),
            ["555 5.5.4 Unsupported option: XYZ"],
        )

    def test_heloHasNoExtensions(self):
        send(self.proto, self.t, b"HELO client.example\r\n")
        self.assertEqual(
            send(self.proto, self.t, b"MAIL FROM:<a@b.example> SIZE=10\r\n"),
            ["555 5.5.4 Unsupported option: SIZE"],
        )

    def test_sizeAtMail(self):
        self.ehlo()
        self.assertEqual(
            send(self.proto, self.t, b"MAIL FROM:<a@b.example> SIZE=10240001\r\n"),
            ["552 5.3.4 Message size exceeds fixed limit"],
        )
        self.assertEqual(send(self.proto, self.t, b"MAIL FROM:<a@b.example> SIZE=10240000\r\n"), ["250 2.1.0 Ok"])

    def test_noSizeLimit(self):
        h = Harness(sizeLimit=0)
        proto, t = h.connect()
        self.assertIn("250-SIZE 0", send(proto, t, b"EHLO c\r\n"))
        got = send(proto, t, b"MAIL FROM:<a@b.example> SIZE=99999999999\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        self.assertEqual(got[0], "250 2.1.0 Ok")
        self.assertEqual(send(proto, t, b"x\r\n" * 1000 + b".\r\n")[0][:9], "250 2.0.0")

    def test_dsnAndBodyParameters(self):
        self.ehlo()
        send(
            self.proto,
            self.t,
            b"MAIL FROM:<a@b.example> BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 SMTPUTF8\r\n"
            b"RCPT TO:<edouard@domaineel.rt> NOTIFY=SUCCESS,FAILURE\r\n",
        )
        params = self.proto.envelope.params
        self.assertEqual((params.body, params.ret, params.envid, params.smtputf8), ("8BITMIME", "HDRS", "QQ+1", True))
        self.assertEqual(self.proto.envelope.recipients[0].params.notify, ("SUCCESS", "FAILURE"))

    def test_nestedMail(self):
        self.ehlo()
        send(self.proto, self.t, b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            send(self.proto, self.t, b"MAIL FROM:<a@b.example>\r\n"), ["503 5.5.1 Error: nested MAIL command"]
        )

    def test_dataWithoutRecipients(self):
        self.ehlo()
        send(self.proto, self.t, b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(send(self.proto, self.t, b"DATA\r\n"), ["554 5.5.1 Error: no valid recipients"])

    def test_tooManyRecipients(self):
        h = Harness(maxRecipients=2)
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        got = send(proto, t, b"RCPT TO:<edouard@domaineel.rt>\r\n" * 3)
        self.assertEqual(got, ["250 2.1.5 Ok", "250 2.1.5 Ok", "452 4.5.3 Error: too many recipients"])

    def test_vrfy(self):
        self.ehlo()
        self.assertEqual(
            send(self.proto, self.t, b"VRFY edouard\r\n"),
            ["252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"],
        )
        h = Harness(vrfy="verify")
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"VRFY <edouard@domaineel.rt>\r\n"), ["250 2.0.0 <edouard@domaineel.rt>"])
        self.assertEqual(send(proto, t, b"VRFY <nobody@domaineel.rt>\r\n")[0][:10], "550 5.1.1 ")
        h = Harness(vrfy="disabled")
        proto, t = h.connect()
        self.assertNotIn("250-VRFY", send(proto, t, b"EHLO c\r\n"))
        self.assertEqual(send(proto, t, b"VRFY edouard\r\n"), ["502 5.5.1 VRFY command is disabled"])

    def test_etrn(self):
        self.ehlo()
        self.assertEqual(
            send(self.proto, self.t, b"ETRN example.org\r\n"),
            ["458 4.3.0 Unable to queue messages for node example.org"],
        )

    def test_etrnWithQueue(self):
        h = Harness()

        class Queue:
            async def flushDomain(self, domain):
                return 2

        h.policy.outbound = Queue()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            send(proto, t, b"ETRN example.org\r\n"), ["459 4.7.1 Node example.org not allowed: not authorized"]
        )
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"ETRN example.org\r\n"), ["250 2.0.0 Queuing for node example.org started"])

    def test_errorLimit(self):
        got = send(self.proto, self.t, b"BAD\r\n" * 25)
        self.assertEqual(len(got), 21)
        self.assertEqual(got[-1], "421 4.7.0 smtp.domaineel.rt Error: too many errors")
        self.assertTrue(self.t.disconnecting)


class RecipientPolicyTests(unittest.TestCase):
    def session(self, host="192.0.2.4", **kw):
        h = Harness(**kw)
        proto, t = h.connect(host)
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        return h, proto, t

    def test_unknownLocalUser(self):
        h, proto, t = self.session()
        self.assertEqual(
            send(proto, t, b"RCPT TO:<nobody@domaineel.rt>\r\n"),
            ["550 5.1.1 <nobody@domaineel.rt>: Recipient address rejected: User unknown in local recipient table"],
        )

    def test_relayDeferredOutsideMynetworksIPv4(self):
        h, proto, t = self.session("192.0.2.4")
        self.assertEqual(
            send(proto, t, b"RCPT TO:<victim@example.org>\r\n"),
            ["454 4.7.1 <victim@example.org>: Relay access denied"],
        )

    def test_relayDeferredOutsideMynetworksIPv6(self):
        h, proto, t = self.session("2001:db8::7")
        self.assertEqual(
            send(proto, t, b"RCPT TO:<victim@example.org>\r\n"),
            ["454 4.7.1 <victim@example.org>: Relay access denied"],
        )

    def test_rejectUnauthDestination(self):
        h, proto, t = self.session(restrictions=("permit_mynetworks", "reject_unauth_destination"))
        self.assertEqual(
            send(proto, t, b"RCPT TO:<victim@example.org>\r\n"),
            ["554 5.7.1 <victim@example.org>: Relay access denied"],
        )

    def test_mynetworksMayRelayButNoQueueYet(self):
        for host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            h, proto, t = self.session(host)
            got = send(proto, t, b"RCPT TO:<friend@example.org>\r\n")
            self.assertEqual(got, ["451 4.3.0 <friend@example.org>: relaying to other domains is not available"])

    def test_mappedClientShownAsIPv4(self):
        h, proto, t = self.session("::ffff:192.0.2.8")
        self.assertEqual(proto.session.host, "192.0.2.8")
        send(proto, t, b"RCPT TO:<edouard@domaineel.rt>\r\nDATA\r\nx\r\n.\r\n")
        self.assertIn(b"(unknown [192.0.2.8])", h.store.committed[0].body)

    def test_mynetworksMatching(self):
        from twisted_maillab.config import parseNetwork

        nets = [parseNetwork(n) for n in ("127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128")]
        self.assertTrue(hostInNetworks("127.0.0.9", nets))
        self.assertTrue(hostInNetworks("::ffff:127.0.0.9", nets))
        self.assertTrue(hostInNetworks("::1", nets))
        self.assertFalse(hostInNetworks("::2", nets))
        self.assertFalse(hostInNetworks("192.0.2.1", nets))
        self.assertFalse(hostInNetworks("::ffff:192.0.2.1", nets))

    def test_directoryGetsWholeAddressForItsDomains(self):
        h, proto, t = self.session()
        h.directory.isLocalDomain = lambda domain: domain == "domaineel.rt"
        send(proto, t, b"RCPT TO:<Edouard@DomaineEL.rt>\r\nRCPT TO:<edouard@smtp.domaineel.rt>\r\n")
        self.assertEqual(h.directory.lookups, [("Edouard@domaineel.rt", "+"), ("edouard", "+")])

    def test_delimiter(self):
        h, proto, t = self.session()
        self.assertEqual(send(proto, t, b"RCPT TO:<edouard+lists@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        target = proto.envelope.recipients[0].targets[0]
        self.assertEqual(target.account.name, "edouard")
        self.assertEqual(target.deliveredTo, "edouard+lists@domaineel.rt")

    def test_aliases(self):
        aliases = parseAliases(
            "# comment\n"
            "postmaster: root\n"
            "root: edouard\n"
            "equipe: edouard,\n"
            "   utilisateur, admin\n"
            "prog: |/usr/bin/vacation\n"
            "fichier: /tmp/x\n"
            "inc: :include:/etc/passwd\n"
            "mixte: admin, |/bin/true\n"
        )
        h, proto, t = self.session(aliases=aliases)
        self.assertEqual(send(proto, t, b"RCPT TO:<postmaster>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual([x.account.name for x in proto.envelope.recipients[0].targets], ["edouard"])
        self.assertEqual(send(proto, t, b"RCPT TO:<equipe@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual(
            [x.account.name for x in proto.envelope.recipients[1].targets], ["edouard", "utilisateur", "admin"]
        )
        self.assertEqual(send(proto, t, b"RCPT TO:<equipe+x@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        for refused in (b"prog", b"fichier", b"inc"):
            got = send(proto, t, b"RCPT TO:<" + refused + b"@domaineel.rt>\r\n")
            self.assertEqual(got[0][:10], "550 5.1.1 ", refused)
        self.assertEqual(send(proto, t, b"RCPT TO:<mixte@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual([x.account.name for x in proto.envelope.recipients[-1].targets], ["admin"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_commandAndFileTargetsWhenEnabled(self):
        aliases = parseAliases('prog: "|/usr/bin/vacation x", /var/mail/x, edouard\n')
        h, proto, t = self.session(aliases=aliases)
        h.policy.allowCommands = True
        h.policy.allowFiles = True
        self.assertEqual(send(proto, t, b"RCPT TO:<prog@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual(
            [(x.kind, x.value) for x in proto.envelope.recipients[0].targets],
            [("command", "/usr/bin/vacation x"), ("file", "/var/mail/x"), ("account", "")],
        )

    def test_aliasLoop(self):
        aliases = parseAliases("a: b\nb: a\nedouard: edouard, admin\n")
        h, proto, t = self.session(aliases=aliases)
        self.assertEqual(send(proto, t, b"RCPT TO:<a@domaineel.rt>\r\n")[0][:4], "550 ")
        # An alias naming itself delivers to the account of that name.
        self.assertEqual(send(proto, t, b"RCPT TO:<edouard@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual([x.account.name for x in proto.envelope.recipients[0].targets], ["edouard", "admin"])

    def test_includeWhenEnabled(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# members\nutilisateur\nadmin, |/bin/false\n")
        aliases = parseAliases(f"liste: :include:{path}\n")
        h, proto, t = self.session(aliases=aliases, allowInclude=True)
        self.assertEqual(send(proto, t, b"RCPT TO:<liste@domaineel.rt>\r\n"), ["250 2.1.5 Ok"])
        self.assertEqual([x.account.name for x in proto.envelope.recipients[0].targets], ["utilisateur", "admin"])

    def test_pipelinedAsyncValidationRepliesInOrder(self):
        h = Harness()
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\n")
        h.directory.pending = []
        got = send(
            proto,
            t,
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\n"
            b"RCPT TO:<nobody@domaineel.rt>\r\nRCPT TO:<admin@domaineel.rt>\r\nDATA\r\n",
        )
        self.assertEqual(got, ["250 2.1.0 Ok"])
        t.clear()
        for _ in range(3):
            h.directory.release()
        got = replies(t)
        self.assertEqual(
            [line[:9] for line in got], ["250 2.1.5", "550 5.1.1", "250 2.1.5", "354 End d"]
        )
        got = send(proto, t, b"body\r\n.\r\n")
        self.assertTrue(got[0].startswith("250 2.0.0 Ok: queued as "))
        self.assertEqual(len(h.store.committed[0].recipients), 2)


class LimitTests(unittest.TestCase):
    def start(self, **kw):
        h = Harness(**kw)
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        t.clear()
        return h, proto, t

    def test_sizeDuringData(self):
        h, proto, t = self.start(sizeLimit=1000)
        got = send(proto, t, (b"x" * 98 + b"\r\n") * 30)
        self.assertEqual(got, [])
        # Nothing kept: the transaction was aborted, nothing is buffered.
        self.assertEqual(h.store.aborted, h.store.transactions)
        self.assertEqual(proto._text._out, [])
        got = send(proto, t, (b"y" * 98 + b"\r\n") * 1000 + b".\r\nNOOP\r\n")
        self.assertEqual(got, ["552 5.3.4 Error: message file too big", "250 2.0.0 Ok"])
        self.assertEqual(h.store.committed, [])

    def test_longBodyLineNeverBecomesCommands(self):
        h, proto, t = self.start()
        got = send(proto, t, b"a" * 5000 + b"\r\nRSET\r\nMAIL FROM:<evil@b.example>\r\nQUIT\r\n")
        self.assertEqual(got, [])
        self.assertFalse(t.disconnecting)
        got = send(proto, t, b".\r\n")
        self.assertEqual(got, ["500 5.5.2 Error: message line longer than 1000 octets"])
        self.assertEqual(h.store.committed, [])

    def test_longLineWithoutCRLFIsNotBuffered(self):
        h, proto, t = self.start()
        for _ in range(100):
            proto.dataReceived(b"z" * 65536)
        self.assertLess(len(proto._text._partial), 2)
        self.assertEqual(send(proto, t, b"\r\n.\r\n"), ["500 5.5.2 Error: message line longer than 1000 octets"])

    def test_998OctetLineAccepted(self):
        h, proto, t = self.start()
        got = send(proto, t, b"b" * 998 + b"\r\n.\r\n")
        self.assertTrue(got[0].startswith("250 2.0.0"))

    def test_longCommandLine(self):
        h = Harness()
        proto, t = h.connect()
        got = send(proto, t, b"NOOP " + b"x" * 600 + b"\r\n")
        self.assertEqual(got, ["500 5.5.2 Error: line too long"])
        got = send(proto, t, b"x" * 20000)
        self.assertEqual(got, ["500 5.5.2 Error: line too long"])
        self.assertTrue(t.disconnecting)

    def test_commandTimeout(self):
        h = Harness(commandTimeout=300)
        proto, t = h.connect()
        t.clear()
        h.clock.advance(299)
        self.assertFalse(t.disconnecting)
        proto.dataReceived(b"NOOP\r\n")
        h.clock.advance(299)
        self.assertFalse(t.disconnecting)
        h.clock.advance(2)
        self.assertEqual(replies(t)[-1], "421 4.4.2 smtp.domaineel.rt Error: timeout exceeded")
        self.assertTrue(t.disconnecting)

    def test_dataTimeoutAbortsMessage(self):
        h, proto, t = self.start(dataTimeout=60)
        proto.dataReceived(b"Subject: x\r\n")
        h.clock.advance(61)
        self.assertTrue(t.disconnecting)
        self.assertEqual(h.store.aborted, h.store.transactions)

    def test_connectionsPerClient(self):
        h = Harness(maxConnectionsPerClient=2)
        p1, t1 = h.connect("192.0.2.9")
        p2, t2 = h.connect("192.0.2.9")
        p3, t3 = h.connect("192.0.2.9")
        self.assertEqual(replies(t3), ["421 4.7.0 smtp.domaineel.rt Error: too many connections from 192.0.2.9"])
        self.assertTrue(t3.disconnecting)
        p4, t4 = h.connect("192.0.2.10")
        self.assertFalse(t4.disconnecting)
        p1.connectionLost(None)
        p5, t5 = h.connect("192.0.2.9")
        self.assertFalse(t5.disconnecting)

    def test_backPressure(self):
        h, proto, t = self.start()
        h.store.slowWrites = True
        block = (b"x" * 998 + b"\r\n") * 66
        # Up to WRITES_IN_FLIGHT 64 KiB writes overlap with reading...
        for _ in range(3):
            proto.dataReceived(block)
        self.assertEqual(len(h.store.pendingWrites), 3)
        self.assertFalse(proto._writing)
        self.assertEqual(t.producerState, "producing")
        # ...then the client is paused until the store catches up.
        proto.dataReceived(block)
        self.assertEqual(len(h.store.pendingWrites), 4)
        self.assertTrue(proto._writing)
        self.assertEqual(t.producerState, "paused")
        proto.dataReceived(block + b".\r\n")
        self.assertEqual(replies(t), [])
        self.assertEqual(len(h.store.pendingWrites), 4)
        # One write done: the buffered block is read and handed on (four
        # in flight again); the store's commit waits for all of them.
        h.store.pendingWrites.pop(0).callback(None)
        self.assertEqual(len(h.store.pendingWrites), 4)
        while h.store.pendingWrites:
            h.store.pendingWrites.pop(0).callback(None)
        self.assertEqual(t.producerState, "producing")
        self.assertTrue(replies(t)[0].startswith("250 2.0.0"))


class ByteExactTests(unittest.TestCase):
    SESSION = (
        b"EHLO c\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n"
    )
    BODY = (
        "Subject: caf\u00e9\r\n\r\n\u00e9t\u00e9 \u2603 \xff\r\n..leading\r\n..\r\n\r\n"
        "bare\nLF and bare\rCR\r\n..x\r\n"
    ).encode("utf-8") + b"\xfe\x80raw 8-bit\r\n"

    def deliver(self, chunks):
        h = Harness()
        proto, t = h.connect()
        for chunk in chunks:
            proto.dataReceived(chunk)
        self.assertIn("250 2.0.0 Ok: queued as", t.value().decode())
        body = h.store.committed[0].body
        return body[body.index(b"\n\tfor") :].split(b"\n", 2)[2]

    def test_eightBitPreservedAndUnstuffed(self):
        data = self.SESSION + self.BODY + b".\r\n"
        whole = self.deliver([data])
        expected = (
            self.BODY.replace(b"\r\n.", b"\r\n")
            .replace(b"\r\n", b"\n")
            .replace(b"\r", b"\n")
        )
        # Every other byte is kept; a bare LF or CR is stored as a line end
        # (smtpd_forbid_bare_newline = normal, tests/test_smtp_smuggling.py).
        self.assertEqual(whole, expected)
        self.assertIn("\u2603 \xff".encode("utf-8"), whole)
        self.assertIn(b"\xfe\x80raw", whole)
        self.assertIn(b"bare\nLF and bare\nCR\n", whole)

    def test_byteByByteSameAsWhole(self):
        data = self.SESSION + self.BODY + b".\r\n"
        whole = self.deliver([data])
        split = self.deliver([data[i : i + 1] for i in range(len(data))])
        self.assertEqual(whole, split)

    def test_bareLFDotDoesNotEndData(self):
        # SMTP smuggling: only CRLF . CRLF ends the message.
        h = Harness()
        proto, t = h.connect()
        got = send(
            proto,
            t,
            self.SESSION + b"one\n.\nMAIL FROM:<smuggled@b.example>\r\ntwo\r\n.\r\n",
        )
        self.assertEqual(got[-1][:9], "250 2.0.0")
        self.assertEqual(len([line for line in got if line.startswith("250 2.0.0")]), 1)
        self.assertIn(b"one\n.\nMAIL FROM:<smuggled@b.example>\ntwo\n", h.store.committed[0].body)


class TLSAndAuthTests(unittest.TestCase):
    def test_startTLSInjectionAndReset(self):
        h = Harness()
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\n")
        got = send(proto, t, b"STARTTLS\r\nMAIL FROM:<inj@b.example>\r\n")
        self.assertEqual(got, ["220 2.0.0 Ready to start TLS"])
        self.assertIsNotNone(t.tlsStarted)
        # State reset (RFC 3207 4.2): EHLO needed again.
        self.assertEqual(send(proto, t, b"MAIL FROM:<a@b.example>\r\n"), ["503 5.5.1 Error: send HELO/EHLO first"])
        got = send(proto, t, b"EHLO c\r\n")
        self.assertNotIn("250-STARTTLS", got)
        self.assertIn("250-AUTH PLAIN LOGIN", got)

    def test_noAuthBeforeTLSOnNetwork(self):
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        got = send(proto, t, b"EHLO c\r\n")
        self.assertFalse([line for line in got if "AUTH" in line])
        self.assertEqual(
            send(proto, t, b"AUTH PLAIN AGVkb3VhcmQAc2VjcmV0\r\n"),
            ["538 5.7.11 Encryption required for requested authentication mechanism"],
        )
        self.assertEqual(h.portal.logins, [])

    def test_authPlainOnLoopback(self):
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        got = send(proto, t, b"EHLO c\r\n")
        self.assertIn("250-AUTH PLAIN LOGIN", got)
        self.assertEqual(
            send(proto, t, b"AUTH PLAIN AGVkb3VhcmQAc2VjcmV0\r\n"), ["235 2.7.0 Authentication successful"]
        )
        self.assertEqual(h.portal.logins, [(b"edouard", "127.0.0.1", "smtp")])
        self.assertEqual(proto.session.withProtocol(), "ESMTPA")

    def test_authLoginAfterTLS(self):
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\nSTARTTLS\r\n")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"AUTH LOGIN\r\n"), ["334 VXNlcm5hbWU6"])
        self.assertEqual(send(proto, t, b"ZWRvdWFyZA==\r\n"), ["334 UGFzc3dvcmQ6"])
        self.assertEqual(send(proto, t, b"c2VjcmV0\r\n"), ["235 2.7.0 Authentication successful"])
        self.assertEqual(proto.session.withProtocol(), "ESMTPSA")
        send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<friend@example.org>\r\n")
        # permit_sasl_authenticated, but no outbound queue yet.
        self.assertEqual(replies(t)[-1][:9], "451 4.3.0")

    def test_authFailuresAndSyntax(self):
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"AUTH PLAIN AGVkb3VhcmQAd3Jvbmc=\r\n"), ["535 5.7.8 Error: authentication failed"])
        self.assertEqual(send(proto, t, b"AUTH\r\n"), ["501 5.5.4 Syntax: AUTH mechanism"])
        self.assertEqual(send(proto, t, b"AUTH CRAM-MD5\r\n"), ["504 5.5.4 Unsupported authentication mechanism"])
        self.assertEqual(send(proto, t, b"AUTH PLAIN !!!\r\n"), ["501 5.5.2 Error: invalid base64 data"])
        self.assertEqual(send(proto, t, b"AUTH PLAIN\r\n"), ["334 "])
        self.assertEqual(send(proto, t, b"*\r\n"), ["501 5.7.0 Authentication aborted"])
        self.assertEqual(send(proto, t, b"NOOP\r\n"), ["250 2.0.0 Ok"])

    def test_senderLoginMismatch(self):
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\nAUTH PLAIN AGVkb3VhcmQAc2VjcmV0\r\n")
        self.assertEqual(
            send(proto, t, b"MAIL FROM:<admin@domaineel.rt>\r\n"),
            ["553 5.7.1 <admin@domaineel.rt>: Sender address rejected: not owned by user edouard"],
        )
        self.assertEqual(send(proto, t, b"MAIL FROM:<Edouard+x@smtp.domaineel.rt>\r\n"), ["250 2.1.0 Ok"])
        send(proto, t, b"RCPT TO:<admin@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"From: Admin <admin@domaineel.rt>\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(got, ["553 5.7.1 From: header rejected: not owned by user edouard"])
        self.assertEqual(h.store.committed, [])
        send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<admin@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"From: Edouard <edouard@domaineel.rt>\r\nSubject: x\r\n\r\nFrom: admin@domaineel.rt\r\n.\r\n")
        self.assertTrue(got[0].startswith("250 2.0.0"))
        self.assertIn(b"(Authenticated sender: edouard)", h.store.committed[0].body)

    def test_unauthenticatedLocalSender(self):
        h = Harness()
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            send(proto, t, b"MAIL FROM:<Edouard+x@domaineel.rt>\r\n"),
            ["553 5.7.1 <Edouard+x@domaineel.rt>: Sender address rejected: not logged in"],
        )
        # No account owns it (the seed's admin@localhost was such a case).
        self.assertEqual(send(proto, t, b"MAIL FROM:<ghost@localhost>\r\n"), ["250 2.1.0 Ok"])
        send(proto, t, b"RSET\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<edouard@example.org>\r\n"), ["250 2.1.0 Ok"])
        # From mynetworks (the server's own mail command) it is allowed.
        proto, t = h.connect("127.0.0.1")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\n"), ["250 2.1.0 Ok"])
        h = Harness(rejectUnauthenticatedOwned=False)
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\n"), ["250 2.1.0 Ok"])

    def test_submissionRequiresTLSAndAuth(self):
        h = Harness(tlsRequired=True, requireAuth=True, listener="submission")
        proto, t = h.connect("192.0.2.4")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<a@b.example>\r\n"), ["530 5.7.0 Must issue a STARTTLS command first"])
        send(proto, t, b"STARTTLS\r\n")
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<a@b.example>\r\n"), ["530 5.7.0 Authentication required"])

    def test_implicitTLSReceived(self):
        h = Harness(tls=False, requireAuth=True, listener="submissions")
        proto, t = h.connect("192.0.2.4", transport=ImplicitTLSTransport)
        got = send(proto, t, b"EHLO c\r\n")
        self.assertNotIn("250-STARTTLS", got)
        self.assertIn("250-AUTH PLAIN LOGIN", got)
        send(proto, t, b"AUTH PLAIN AGVkb3VhcmQAc2VjcmV0\r\nMAIL FROM:<edouard@domaineel.rt>\r\n")
        got = send(proto, t, b"RCPT TO:<admin@domaineel.rt>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertTrue(got[-1].startswith("250 2.0.0"), got)
        body = h.store.committed[0].body.decode()
        self.assertIn("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))", body)
        self.assertIn("with ESMTPSA id", body)


class LoopTests(unittest.TestCase):
    def test_deliveredToLoop(self):
        h = Harness()
        proto, t = h.connect()
        send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"Delivered-To: Edouard@domaineel.rt\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(got, ["554 5.4.6 <edouard@domaineel.rt>: mail forwarding loop"])
        self.assertEqual(h.store.committed, [])
        # Only the header counts.
        send(proto, t, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"Subject: x\r\n\r\nDelivered-To: edouard@domaineel.rt\r\n.\r\n")
        self.assertEqual(got[0][:9], "250 2.0.0")


class SuccessNoticeTests(unittest.TestCase):
    def test_deliveredNoticeToLocalSender(self):
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        got = send(
            proto,
            t,
            b"EHLO c\r\nMAIL FROM:<edouard@domaineel.rt> ENVID=abc\r\n"
            b"RCPT TO:<utilisateur@domaineel.rt> NOTIFY=SUCCESS ORCPT=rfc822;Utilisateur@domaineel.rt\r\n"
            b"RCPT TO:<admin@domaineel.rt>\r\nDATA\r\nSubject: x\r\n\r\nsecret body\r\n.\r\n",
        )
        self.assertEqual(got[-1][:9], "250 2.0.0")
        message, notice = h.store.committed
        self.assertEqual([a.name for a, _ in notice.recipients], ["edouard"])
        text = notice.body.decode()
        self.assertIn("Subject: Successful Mail Delivery Report", text)
        self.assertIn("Original-Envelope-Id: abc", text)
        self.assertIn(
            "Final-Recipient: rfc822; utilisateur@domaineel.rt\n"
            "Original-Recipient: rfc822; Utilisateur@domaineel.rt\nAction: delivered\nStatus: 2.0.0",
            text,
        )
        self.assertNotIn("admin@domaineel.rt", text)
        self.assertIn("Content-Type: text/rfc822-headers\n\nSubject: x\n", text)
        self.assertNotIn("secret body", text)
        self.assertIn(b"Return-Path: <>\n", notice.fileFor("edouard"))

    def test_noNoticeWithoutSuccessOrForNullSender(self):
        h = Harness()
        proto, t = h.connect("127.0.0.1")
        send(
            proto,
            t,
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<utilisateur@domaineel.rt> NOTIFY=SUCCESS\r\n"
            b"DATA\r\nx\r\n.\r\nMAIL FROM:<edouard@domaineel.rt>\r\n"
            b"RCPT TO:<utilisateur@domaineel.rt> NOTIFY=FAILURE\r\nDATA\r\nx\r\n.\r\n",
        )
        self.assertEqual(len(h.store.committed), 2)


class StoreErrorTests(unittest.TestCase):
    def test_commitFailureIsReported(self):
        from twisted_maillab.store.errors import QuotaExceeded

        h = Harness()
        h.store.commitError = QuotaExceeded()
        proto, t = h.connect()
        got = send(
            proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\nx\r\n.\r\n"
        )
        self.assertEqual(got[-1], "452 4.2.2 mailbox is full (quota exceeded)")


    def test_missingMailboxIsTemporary(self):
        from twisted_maillab.store.errors import MailboxNotFound

        h = Harness()
        h.store.commitError = MailboxNotFound("/home/edouard/Maildir: no Maildir yet")
        proto, t = h.connect()
        got = send(
            proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<edouard@domaineel.rt>\r\nDATA\r\nx\r\n.\r\n"
        )
        self.assertEqual(got[-1], "451 4.2.0 mailbox unavailable, try again later")


class EnvelopeTests(unittest.TestCase):
    def test_paths(self):
        box, params = parseMail(b"FROM:<>", ALL)
        self.assertTrue(box.null)
        box, _ = parseMail(b"FROM: <@relay.example:User@Example.ORG.>", ALL)
        self.assertEqual((box.local, box.domain), ("User", "example.org"))
        box, _ = parseRcpt(b'TO:<"a b>c"@example.org>', ALL, False)
        self.assertEqual(box.bareLocal, "a b>c")
        box, _ = parseRcpt(b"TO:<Postmaster>", ALL, False)
        self.assertEqual(box.local, "postmaster")

    def test_errors(self):
        cases = [
            (b"FROM:a@b.example", 501),
            (b"FROM:<a@b.example", 501),
            (b"FROM:<a@@b>", 501),
            (b"FROM:<" + b"a" * 65 + b"@b.example>", 501),
            (b"FROM:<a@b.example> SIZE=abc", 501),
            (b"FROM:<a@b.example> BODY=BINARYMIME", 501),
            (b"FROM:<a@b.example> SIZE=1 SIZE=2", 501),
            (b"FROM:<a@b.example> RET=ALL", 501),
            (b"FROM:<a@b.example> X-FOO", 555),
        ]
        for text, code in cases:
            with self.assertRaises(SMTPReply, msg=text) as e:
                parseMail(text, ALL)
            self.assertEqual(e.exception.code, code, text)

    def test_utf8(self):
        address = "j\u00f6rg@b\u00fccher.example".encode()
        with self.assertRaises(SMTPReply) as e:
            parseMail(b"FROM:<" + address + b">", ALL)
        self.assertEqual((e.exception.code, e.exception.enhanced), (553, "5.6.7"))
        box, params = parseMail(b"FROM:<" + address + b"> SMTPUTF8", ALL)
        self.assertEqual(box.address, "j\u00f6rg@b\u00fccher.example")
        box, _ = parseRcpt(b"TO:<" + address + b">", ALL, True)
        self.assertEqual(box.local, "j\u00f6rg")

    def test_dsn(self):
        _, params = parseRcpt(b"TO:<a@b.example> NOTIFY=NEVER ORCPT=rfc822;a+2Bx@b.example", ALL, False)
        self.assertEqual((params.notify, params.orcpt), (("NEVER",), "a+x@b.example"))
        for bad in (b"NOTIFY=NEVER,SUCCESS", b"NOTIFY=SOMETIMES", b"ORCPT=rfc822", b"NOTIFY"):
            with self.assertRaises(SMTPReply):
                parseRcpt(b"TO:<a@b.example> " + bad, ALL, False)


class AliasFileTests(unittest.TestCase):
    def test_parse(self):
        table = parseAliases(
            '# c\n\npostmaster:    root\nRoot: edouard, "|/usr/bin/x y",\n\t/var/log/x, :include:/etc/l\n'
        )
        self.assertEqual([t.value for t in table.get("root")], ["edouard", "/usr/bin/x y", "/var/log/x", "/etc/l"])
        self.assertEqual([t.kind for t in table.get("ROOT")], ["address", "command", "file", "include"])

    def test_shippedFile(self):
        from pathlib import Path

        from twisted_maillab.smtp.aliases import loadAliases

        table = loadAliases(Path(__file__).parent.parent / "etc" / "aliases")
        self.assertEqual([t.value for t in table.get("postmaster")], ["root"])
        self.assertEqual([t.value for t in table.get("root")], ["edouard"])

    def test_errors(self):
        for text, line in (("  x\n", 1), ("a: b\nnocolon\n", 2), ("a: b\nA: c\n", 2), ("a:\n", 1)):
            with self.assertRaises(AliasError) as e:
                parseAliases(text, "f")
            self.assertEqual(e.exception.line, line, text)


class ConfigTests(unittest.TestCase):
    def test_keys(self):
        from twisted_maillab.config import ConfigError, loadString

        config = loadString(
            "[smtp]\nsmtpd_timeout = 5m\nsmtpd_recipient_limit = 10\nvrfy_command = disabled\n"
            "[submission]\nsmtpd_tls_security_level = may\n"
        )
        self.assertEqual(config.smtp.smtpd_timeout, 300)
        self.assertEqual(config.smtp.smtpd_recipient_limit, 10)
        self.assertEqual(config.submission.smtpd_tls_security_level, "may")
        with self.assertRaises(ConfigError) as e:
            loadString("[smtp]\nvrfy_command = maybe\n")
        self.assertEqual(e.exception.key, "vrfy_command")


class CacheTests(unittest.TestCase):
    def test_recipientCache(self):
        from twisted.internet import task

        from tests.smtp_fixtures.fakes import FakeDirectory
        from twisted_maillab.smtp.envelope import Mailbox
        from twisted_maillab.smtp.policy import Policy

        clock = task.Clock()
        directory = FakeDirectory()
        policy = Policy(
            hostname="h.example",
            destinations=frozenset({"domaineel.rt"}),
            directory=directory,
            clock=clock,
            cacheTTL=10,
        )

        class Session:
            host = "127.0.0.1"
            account = None

        for _ in range(3):
            self.successResultOf(policy.checkRecipient(Session(), Mailbox("edouard", "domaineel.rt")))
        self.failureResultOf(policy.checkRecipient(Session(), Mailbox("nobody", "domaineel.rt")), SMTPReply)
        self.failureResultOf(policy.checkRecipient(Session(), Mailbox("nobody", "domaineel.rt")), SMTPReply)
        self.assertEqual(len(directory.lookups), 2)
        clock.advance(11)
        self.successResultOf(policy.checkRecipient(Session(), Mailbox("Edouard", "domaineel.rt")))
        self.assertEqual(len(directory.lookups), 3)

    def test_nameCache(self):
        from twisted.internet import defer, task

        from twisted_maillab.smtp.service import NameCache

        clock = task.Clock()
        calls = []

        def lookup(host):
            d = defer.Deferred()
            calls.append((host, d))
            return d

        cache = NameCache(clock, ttl=60, lookup=lookup)
        first, second = cache("192.0.2.1"), cache("192.0.2.1")
        self.assertEqual(len(calls), 1)
        calls[0][1].callback("client.example")
        self.assertEqual(self.successResultOf(first), "client.example")
        self.assertEqual(self.successResultOf(second), "client.example")
        self.assertEqual(self.successResultOf(cache("192.0.2.1")), "client.example")
        self.assertEqual(len(calls), 1)
        clock.advance(61)
        cache("192.0.2.1")
        self.assertEqual(len(calls), 2)


class TwistedSeamTests(unittest.TestCase):
    """
    A plain Twisted IMessageDelivery/IMessage behind maillab's protocol.
    """

    def test_twistedDelivery(self):
        from twisted.internet import defer, task
        from twisted.mail import smtp
        from zope.interface import implementer

        from twisted_maillab.smtp.delivery import QueueIds
        from twisted_maillab.smtp.server import Settings, SMTPServerFactory
        from twisted_maillab.smtp.twistedseam import TwistedDelivery

        clock = task.Clock()
        delivered = []

        @implementer(smtp.IMessage)
        class Message:
            def __init__(self, user):
                self.user, self.lines = user, []

            def lineReceived(self, line):
                self.lines.append(line)

            def eomReceived(self):
                delivered.append((str(self.user.dest), self.lines))
                return defer.succeed(b"QID1")

            def connectionLost(self):
                pass

        @implementer(smtp.IMessageDelivery)
        class Delivery:
            def receivedHeader(self, helo, origin, recipients):
                return b"Received: from " + helo[0] + b" by test"

            def validateFrom(self, helo, origin):
                if origin.local == b"spammer":
                    raise smtp.SMTPBadSender(origin)
                return origin

            def validateTo(self, user):
                if user.dest.local == b"nobody":
                    raise smtp.SMTPBadRcpt(user)
                # Asynchronous, as the survey's pipelining experiment.
                return task.deferLater(clock, 0.05, lambda: (lambda: Message(user)))

        seam = TwistedDelivery(Delivery())
        factory = SMTPServerFactory(
            Settings(hostname="mx.example", banner="mx.example ESMTP"),
            seam,
            seam,
            clock=clock,
            queueIds=QueueIds(clock),
        )
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        proto = factory.buildProtocol(None)
        t = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 1))
        proto.makeConnection(t)
        send(proto, t, b"EHLO c\r\n")
        self.assertEqual(send(proto, t, b"MAIL FROM:<spammer@b.example>\r\n")[0][:4], "550 ")
        t.clear()
        proto.dataReceived(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<nobody@y.example>\r\n"
            b"RCPT TO:<z@y.example>\r\nDATA\r\n"
        )
        clock.advance(0.05)
        clock.advance(0.05)
        got = replies(t)
        self.assertEqual([line[:3] for line in got], ["250", "250", "550", "250", "354"])
        got = send(proto, t, b"Subject: s\r\n\r\n..dot\r\nend\r\n.\r\n")
        self.assertEqual(got, ["250 2.0.0 Ok: queued as QID1"])
        self.assertEqual(
            delivered,
            [
                ("x@y.example", [b"Received: from c by test", b"Subject: s", b"", b".dot", b"end"]),
                ("z@y.example", [b"Received: from c by test", b"Subject: s", b"", b".dot", b"end"]),
            ],
        )
