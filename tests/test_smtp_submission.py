"""
Submission behaviour seen from a client: what EHLO advertises against
what AUTH then does (every listener and TLS/AUTH setting), and the
sender and From: ownership rules for authenticated users.  Protocol
tests on StringTransport, then a real client (smtplib) on loopback.
"""

from __future__ import annotations

import itertools
import smtplib

from twisted.internet import defer
from twisted.trial import unittest

from tests.smtp_fixtures.fakes import AUTH_PLAIN, Harness, ImplicitTLSTransport, TLSStringTransport
from tests.test_smtp import send
from tests.test_smtp_e2e import Server, inThread, tlsContext
from twisted_maillab.config import loadString
from twisted_maillab.smtp.service import listenerSettings



def yesNo(value: bool) -> str:
    return "yes" if value else "no"


def advertisedAuth(lines: list[str]) -> str | None:
    for line in lines:
        if line[4:9] == "AUTH ":
            return line[9:]
    return None


class AuthAdvertisementTests(unittest.TestCase):
    """
    EHLO's AUTH line matches what AUTH then does, for every listener, TLS
    security level, smtpd_tls_auth_only, plaintext_on_loopback,
    smtpd_sasl_auth_enable and client address, before and after STARTTLS.
    """

    def session(self, listener, level, authOnly, loopback, saslEnable, host, startTLS):
        config = loadString(
            f"[smtp]\nsmtpd_tls_auth_only = {yesNo(authOnly)}\n"
            f"plaintext_on_loopback = {yesNo(loopback)}\n"
            f"smtpd_sasl_auth_enable = {yesNo(saslEnable)}\n"
            f"[submission]\nsmtpd_tls_security_level = {level}\n"
        )
        settings = listenerSettings(config, listener, "smtp.domaineel.rt")
        implicit = listener == "submissions"
        h = Harness(settings=settings, tls=not implicit)
        proto, t = h.connect(host, transport=ImplicitTLSTransport if implicit else TLSStringTransport)
        if startTLS:
            send(proto, t, b"EHLO c\r\n")
            self.assertEqual(send(proto, t, b"STARTTLS\r\n"), ["220 2.0.0 Ready to start TLS"])
        offered = advertisedAuth(send(proto, t, b"EHLO c\r\n"))
        reply = send(proto, t, AUTH_PLAIN)
        return offered, reply, h.portal.logins

    def test_ehloAdvertisesExactlyWhatAuthAccepts(self):
        mismatches = []
        accepted = []
        combinations = itertools.product(
            ("smtp", "submission", "submissions"),
            ("encrypt", "may"),
            (True, False),
            (True, False),
            (True, False),
            ("127.0.0.1", "::1", "192.0.2.4", "2001:db8::4"),
            (False, True),
        )
        count = 0
        for combination in combinations:
            listener, level, authOnly, loopback, saslEnable, host, startTLS = combination
            if startTLS and listener == "submissions":
                continue  # implicit TLS: no STARTTLS to issue
            count += 1
            offered, reply, logins = self.session(*combination)
            succeeded = reply == ["235 2.7.0 Authentication successful"]
            if offered is not None and (offered != "PLAIN LOGIN" or not succeeded):
                mismatches.append((combination, "advertised, then", reply))
            if offered is None and (succeeded or logins):
                # Not advertised: the password must never be checked.
                mismatches.append((combination, "not advertised, then", reply, logins))
            if succeeded:
                accepted.append(combination)
        self.assertEqual(mismatches, [])
        self.assertEqual(count, 320)
        # The reported case: submission with encrypt on loopback, before
        # STARTTLS, advertises nothing (AUTH would get 530).
        self.assertNotIn(("submission", "encrypt", True, True, True, "127.0.0.1", False), accepted)
        self.assertIn(("submission", "encrypt", True, True, True, "127.0.0.1", True), accepted)
        # Plaintext on loopback where the level allows it; never on a
        # public address without TLS while smtpd_tls_auth_only holds.
        self.assertIn(("submission", "may", True, True, True, "::1", False), accepted)
        self.assertIn(("smtp", "may", True, True, True, "127.0.0.1", False), accepted)
        self.assertNotIn(("smtp", "may", True, True, True, "192.0.2.4", False), accepted)
        self.assertNotIn(("smtp", "may", True, False, True, "127.0.0.1", False), accepted)
        self.assertIn(("smtp", "may", False, False, True, "192.0.2.4", False), accepted)
        # smtpd_sasl_auth_enable = no: no AUTH on port 25, even over TLS;
        # the submission listeners always offer it.
        self.assertNotIn(("smtp", "may", True, True, False, "192.0.2.4", True), accepted)
        self.assertIn(("submission", "may", True, True, False, "192.0.2.4", True), accepted)
        self.assertIn(("submissions", "may", True, True, False, "192.0.2.4", False), accepted)

    def test_authOnEncryptListenerBeforeTLS(self):
        offered, reply, logins = self.session("submission", "encrypt", True, True, True, "127.0.0.1", False)
        self.assertIsNone(offered)
        self.assertEqual(reply, ["530 5.7.0 Must issue a STARTTLS command first"])
        self.assertEqual(logins, [])


class AuthAdvertisementClientTests(unittest.TestCase):
    """
    smtplib believes EHLO: on the submission listener (encrypt) from
    loopback it refuses to send the password before STARTTLS.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_smtplibNeverSendsPasswordBeforeStartTLS(self):
        server = Server(self)

        def client():
            with smtplib.SMTP("127.0.0.1", server.submissionPort) as s:
                s.ehlo("client.example")
                before = s.esmtp_features.get("auth")
                try:
                    s.login("edouard", "secret")
                except smtplib.SMTPNotSupportedError:
                    refused = True
                else:
                    refused = False
                s.starttls(context=tlsContext())
                s.ehlo("client.example")
                after = s.esmtp_features.get("auth")
                return before, refused, after, s.login("edouard", "secret")

        before, refused, after, login = yield inThread(client)
        self.assertIsNone(before)
        self.assertTrue(refused)
        self.assertEqual(after.strip(), "PLAIN LOGIN")
        self.assertEqual(login, (235, b"2.7.0 Authentication successful"))


class LoginMismatchTests(unittest.TestCase):
    """
    reject_sender_login_mismatch and reject_from_login_mismatch: a user's
    own name at a foreign domain is not their address.
    """

    def authenticated(self, **kw):
        h = Harness(**kw)
        proto, t = h.connect("127.0.0.1")
        self.assertEqual(send(proto, t, b"EHLO c\r\n" + AUTH_PLAIN)[-1], "235 2.7.0 Authentication successful")
        return h, proto, t

    def test_ownNameAtForeignDomainAsSender(self):
        h, proto, t = self.authenticated()
        self.assertEqual(
            send(proto, t, b"MAIL FROM:<edouard@example.org>\r\n"),
            ["553 5.7.1 <edouard@example.org>: Sender address rejected: not owned by user edouard"],
        )
        self.assertEqual(
            send(proto, t, b"MAIL FROM:<edouard+tag@example.org>\r\n")[0][:9], "553 5.7.1"
        )
        self.assertEqual(send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\n"), ["250 2.1.0 Ok"])
        # Off: the envelope is not checked.
        h, proto, t = self.authenticated(rejectSenderMismatch=False)
        self.assertEqual(send(proto, t, b"MAIL FROM:<edouard@example.org>\r\n"), ["250 2.1.0 Ok"])

    def test_ownNameAtForeignDomainInFrom(self):
        h, proto, t = self.authenticated()
        for header in (
            b"From: Edouard <edouard@example.org>\r\n",
            b"From: edouard@domaineel.rt, edouard@example.org\r\n",
            b"From: =?utf-8?q?=C3=89douard?=\r\n <edouard@example.org>\r\n",
        ):
            send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n")
            got = send(proto, t, header + b"Subject: x\r\n\r\nhi\r\n.\r\n")
            self.assertEqual(got, ["553 5.7.1 From: header rejected: not owned by user edouard"], header)
        self.assertEqual(h.store.committed, [])
        self.assertEqual(len(h.store.aborted), 3)
        send(proto, t, b"MAIL FROM:<edouard@domaineel.rt>\r\nRCPT TO:<utilisateur@domaineel.rt>\r\nDATA\r\n")
        got = send(proto, t, b"From: Edouard <edouard@domaineel.rt>\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(got[0][:9], "250 2.0.0")

