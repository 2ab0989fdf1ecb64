"""
sendnow.writeNow over real loopback sockets.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_maillab.sendnow import writeNow


class Recorder(protocol.Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)


class WriteNowTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        factory = protocol.ServerFactory.forProtocol(Recorder)
        factory.connected = defer.Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(self.client.close)
        self.client.settimeout(5)
        self.server = yield factory.connected
        self.addCleanup(self.server.transport.abortConnection)

    def read(self, count):
        data = b""
        while len(data) < count:
            chunk = self.client.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def test_sentBeforeTheReactorRunsAgain(self):
        """
        On an idle TCP transport the data is in the kernel when writeNow
        returns: nothing is left for the reactor to write.
        """
        writeNow(self.server.transport, b"250 2.0.0 Ok\r\n")
        self.assertEqual(self.server.transport._tempDataBuffer, [])
        # read synchronously, without letting the reactor turn
        self.assertEqual(self.read(14), b"250 2.0.0 Ok\r\n")

    @defer.inlineCallbacks
    def test_queuedDataStaysFirst(self):
        """
        With data already queued, writeNow queues behind it: order holds.
        """
        self.server.transport.write(b"first ")
        writeNow(self.server.transport, b"second")
        self.assertEqual(self.server.transport._tempDataBuffer, [b"first ", b"second"])
        d = defer.Deferred()
        reactor.callLater(0.05, d.callback, None)
        yield d
        self.assertEqual(self.read(12), b"first second")

    def test_closingTransportIsLeftToTwisted(self):
        """
        After loseConnection nothing is sent directly: Twisted decides
        what still goes out before its FIN.
        """
        transport = self.server.transport
        transport.loseConnection()
        writeNow(transport, b"late")
        self.assertEqual(transport._tempDataBuffer, [b"late"])

    def test_otherTransportsUseWrite(self):
        transport = StringTransport()
        writeNow(transport, b"221 2.0.0 Bye\r\n")
        self.assertEqual(transport.value(), b"221 2.0.0 Bye\r\n")
