"""
The [imap]/[imaps] builders: one backend per process (the realm serves our
IIMAPAccount and Twisted's imap4.IAccount once), factories with the
section's keys, append_limit defaulting to [smtp] message_size_limit.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import task
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from twisted_maillab.auth.realm import MailRealm
from twisted_maillab.config import loadString
from twisted_maillab.imap import service
from twisted_maillab.imap.account import IIMAPAccount
from twisted_maillab.store.testing import synchronousStore, temporaryAccount


class Resources:
    def __init__(self, config):
        self.config = config
        self.reactor = task.Clock()
        self.portal = SimpleNamespace(realm=MailRealm(directory=None))
        self.store = synchronousStore()
        self.tlsContext = object()
        self.listened = []

    def shared(self, key, make):
        table = self.__dict__.setdefault("_shared", {})
        if key not in table:
            table[key] = make()
        return table[key]

    def listen(self, section, factory):
        self.listened.append((section.name, factory))
        return factory


class BuilderTests(unittest.TestCase):
    def test_bothListenersShareOneBackend(self):
        config = loadString(
            "[smtp]\nmessage_size_limit = 5M\n"
            "[imap]\nenabled = yes\nlisten = tcp:143\nmax_connections_per_user = 3\nlogin_timeout = 20s\n"
            "[imaps]\nenabled = yes\nlisten = tcp:993\nappend_limit = 1M\nplaintext_on_loopback = no\n"
        )
        resources = Resources(config)
        imap = service.buildIMAP(config, resources)
        imaps = service.buildIMAPS(config, resources)
        factories = resources.portal.realm._factories
        self.assertIn(IIMAPAccount, factories)
        self.assertIn(imap4.IAccount, factories)
        self.assertIs(imap.users, imaps.users)
        self.assertIs(imap.addresses, imaps.addresses)
        self.assertIs(imap.structures, imaps.structures)
        self.assertEqual(
            (imap.appendLimit, imap.maxConnectionsPerUser, imap.loginTimeout, imap.idleTimeout,
             imap.implicitTLS, imap.tlsContext is resources.tlsContext, imap.plaintextOnLoopback),
            (5 * 1024 * 1024, 3, 20.0, 1800.0, False, True, True),
        )
        account = temporaryAccount(self.mktemp())
        verifyObject(IIMAPAccount, factories[IIMAPAccount](account))
        self.assertEqual(
            (imaps.appendLimit, imaps.implicitTLS, imaps.tlsContext, imaps.plaintextOnLoopback),
            (1024 * 1024, True, None, False),
        )
