"""
Composition through declared seams: every class that implements one of
L{twisted_maillab.interfaces} says so and passes C{verifyObject}, and
L{twisted_maillab.service.makeService} takes builders and a zone source
from an embedding application.
"""

from __future__ import annotations

import os

from twisted.application import service as tservice
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_maillab import interfaces, service
from twisted_maillab.dns.service import DNSService, FileZoneSource
from twisted_maillab.pop3.maildrop import StoreMaildrop
from twisted_maillab.store.reading import ThreadedReader
from twisted_maillab.store.view import FolderView

from .smtp_fixtures.fakes import Harness
from .test_service import parse
from .test_store import deliver, makeAccount, makeTestStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone")


class DeclaredInterfacesTests(unittest.TestCase):
    """
    C{verifyObject} on the real implementation of each seam.
    """

    @defer.inlineCallbacks
    def test_store(self):
        account = makeAccount(self)
        store = makeTestStore(self)
        verifyObject(interfaces.IMailStore, store)
        transaction = store.beginDelivery()
        verifyObject(interfaces.IDeliveryTransaction, transaction)
        yield transaction.abort()
        yield deliver(store, account)
        mailboxes = store.mailboxes(account)
        verifyObject(interfaces.IMailboxes, mailboxes)
        folder = yield mailboxes.open()
        self.addCleanup(folder.close)
        verifyObject(interfaces.IFolder, folder)
        view = FolderView((yield mailboxes.open()))
        self.addCleanup(view.close)
        verifyObject(interfaces.IFolderListener, view)
        reader = ThreadedReader(folder.openMessage(1), store.run)
        self.addCleanup(reader.close)
        verifyObject(interfaces.IMessageReader, reader)
        verifyObject(interfaces.IPOP3Maildrop, StoreMaildrop(store, account))

    def test_smtp(self):
        h = Harness()
        verifyObject(interfaces.ISMTPDelivery, h.delivery)

    def test_zoneSourceAndBuilders(self):
        verifyObject(interfaces.IZoneSource, FileZoneSource([]))
        for builder in service.defaultBuilders():
            verifyObject(interfaces.IServiceBuilder, builder)
        self.assertEqual(
            sorted(b.section for b in service.defaultBuilders()), sorted(service.BUILDERS)
        )


@implementer(interfaces.IServiceBuilder)
class NamedService:
    """
    An embedding application's builder: a plain named service.
    """

    def __init__(self, section):
        self.section = section
        self.built = []

    def __call__(self, config, resources):
        self.built.append(resources)
        return tservice.Service()


@implementer(interfaces.IZoneSource)
class CountingZoneSource:
    def __init__(self, path):
        self.inner = FileZoneSource([("domaineel.rt", path)])
        self.loads = 0

    def load(self):
        self.loads += 1
        return self.inner.load()


class MakeServiceSeamsTests(unittest.TestCase):
    def test_applicationBuilderReplacesTheShippedOne(self):
        parsed = parse(self, "[pop3]\nenabled = yes\nlisten = tcp:1110:interface=127.0.0.1\n")
        mine = NamedService("pop3")
        top = service.makeService(parsed, MemoryReactorClock(), builders=service.defaultBuilders() + [mine])
        self.assertEqual(len(mine.built), 1)
        self.assertIsInstance(mine.built[0], service.Resources)
        self.assertIs(type(top.getServiceNamed("pop3")), tservice.Service)

    def test_onlyProvidersOfIServiceBuilder(self):
        parsed = parse(self, "[pop3]\nenabled = yes\nlisten = tcp:1110:interface=127.0.0.1\n")
        self.assertRaises(TypeError, service.makeService, parsed, MemoryReactorClock(), builders=[lambda c, r: None])

    def test_zoneSourceFromTheApplication(self):
        parsed = parse(
            self,
            f"[dns]\nenabled = yes\nlisten = tcp:10053:interface=127.0.0.1\nzones = domaineel.rt:{SEED}\n",
        )
        source = CountingZoneSource(SEED)
        top = service.makeService(parsed, MemoryReactorClock(), zoneSource=source)
        dns = top.getServiceNamed("dns")
        self.assertIsInstance(dns, DNSService)
        self.assertIs(dns.source, source)
        self.assertEqual(source.loads, 1)
        self.assertEqual(len(source.inner.load()), 1)

    def test_queueIsAProcessServiceNotAListenersChild(self):
        """
        The outbound queue runs once per process, named on its own, whichever
        SMTP listeners are enabled; no listener group carries it.
        """
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        parsed = parse(
            self,
            f"[tls]\ncertificate = {directory}/cert.pem\nprivate_key = {directory}/key.pem\n"
            "generate_self_signed = yes\n"
            "[submissions]\nenabled = yes\nlisten = tcp:10465:interface=127.0.0.1\n"
            "[smtp]\nenabled = yes\nlisten = tcp:10025:interface=127.0.0.1\n",
        )
        top = service.makeService(parsed, MemoryReactorClock())
        queue = top.getServiceNamed("outbound-queue")
        self.assertIs(queue.parent, top)
        for name in ("smtp", "submissions"):
            self.assertNotIn("outbound-queue", [child.name for child in top.getServiceNamed(name)])
        self.assertIs(top.getServiceNamed("local").parent, top)
