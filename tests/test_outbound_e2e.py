"""
The outbound queue inside a running maillab (the real builder, store and
local delivery), relaying to a remote MX on 127.0.0.1 through smtplib.
"""

from __future__ import annotations

import json
import os
import smtplib

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from tests import test_smtp_e2e
from tests.test_smtp_outbound import FakeResolver, remoteMX


class BounceSpoolTests(unittest.TestCase):
    timeout = 60
    waitFor = test_smtp_e2e.OutboundTests.waitFor

    def start(self, smtpExtra=""):
        self.server = test_smtp_e2e.Server(self, smtpExtra=smtpExtra)
        self.sink, self.port = remoteMX(self)
        self.sink.deferLater = False
        self.queue = self.server.resources.shared("smtp").outbound
        self.queue.resolver = FakeResolver({"remote.test": [(10, "mx.remote.test")]}, {"mx.remote.test": ["127.0.0.1"]})
        self.queue.port = self.port.getHost().port

    def spool(self):
        return sorted(os.listdir(self.queue.directory))

    @defer.inlineCallbacks
    def test_bounceToSenderWithoutHomeWaitsInSpool(self):
        """
        The sender's home does not exist yet: its bounce stays queued (null
        sender, deferred) instead of being lost, and is delivered once the
        home exists.
        """
        self.start()
        # A user whose home (given in the passwd-file) is not made yet: the
        # store never creates a home, that is the administrator's job.
        home = self.server.base / "homes" / "edouard"
        passwd = self.server.base / "passwd"
        passwd.write_text(passwd.read_text().replace("edouard:{PLAIN}secret::::::", f"edouard:{{PLAIN}}secret::::{home}::"))

        def client():
            with smtplib.SMTP("127.0.0.1", self.server.smtpPort) as s:
                return s.sendmail("edouard@domaineel.rt", ["bad@remote.test"], b"Subject: lost\r\n\r\nx\r\n")

        self.assertEqual((yield threads.deferToThread(client)), {})

        def bounceDeferred():
            states = [name for name in self.spool() if name.endswith(".json")]
            if len(states) != 1 or not states[0].startswith("B"):
                return False
            state = json.loads((self.queue.directory / states[0]).read_text())
            return state["attempts"] == 1 and state["recipients"][0]["status"] == "pending"

        yield self.waitFor(bounceDeferred)
        [name] = [n for n in self.spool() if n.endswith(".json")]
        state = json.loads((self.queue.directory / name).read_text())
        self.assertEqual(state["sender"], "")
        self.assertEqual(state["recipients"][0]["address"], "edouard@domaineel.rt")
        self.assertEqual(self.spool(), [name[:-5] + ".eml", name])
        # The administrator creates the home; the next try delivers.
        home.mkdir(parents=True)
        self.queue.schedule(name[:-5], 0)
        yield self.waitFor(lambda: not self.spool())
        [bounce] = [p.read_bytes() for p in (home / "Maildir" / "new").iterdir()]
        self.assertIn(b"Return-Path: <>\n", bounce)
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", bounce)

    def test_doubleBounceRecipient(self):
        """
        [smtp] double_bounce_recipient: a bare name is in [server] domain;
        the default is the postmaster there.
        """
        self.assertEqual(test_smtp_e2e.Server(self).resources.shared("smtp").outbound.postmaster, "postmaster@domaineel.rt")
        server = test_smtp_e2e.Server(self, smtpExtra="double_bounce_recipient = admin\n")
        self.assertEqual(server.resources.shared("smtp").outbound.postmaster, "admin@domaineel.rt")
