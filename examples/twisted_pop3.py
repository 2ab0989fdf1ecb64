"""
Twisted's stock POP3 server (twisted.mail.pop3.POP3) serving maillab's
store through maillab's portal.

The config's [auth] and [store] say where the accounts and the Maildirs
are; the realm hands Twisted's pop3.IMailbox avatars out
(twisted_maillab.pop3.twistedseam.registerTwistedPOP3).  Twisted's POP3 has
no STLS: listen on loopback only::

    python examples/twisted_pop3.py --config etc/maillab.dev.ini --listen tcp:10111:interface=127.0.0.1
"""

import argparse
import sys

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import serverFromString
from twisted.mail import pop3
from twisted.python import log

from twisted_maillab.config import load
from twisted_maillab.pop3.maildrop import maildropFactory
from twisted_maillab.pop3.protocol import SessionLocks
from twisted_maillab.pop3.twistedseam import registerTwistedPOP3
from twisted_maillab.service import Resources


class StockPOP3Factory(protocol.ServerFactory):
    def __init__(self, portal):
        self.portal = portal

    def buildProtocol(self, addr):
        server = pop3.POP3()
        server.factory = self
        # Every login carries the client's address (throttling, fail2ban).
        server.portal = self.portal.forConnection(addr, "pop3")
        return server


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--listen", default="tcp:10111:interface=127.0.0.1")
    args = parser.parse_args(argv)
    resources = Resources(load(args.config), reactor)
    # One session per maildrop (RFC 1939 8), within this process.
    registerTwistedPOP3(resources.portal.realm, maildropFactory(resources.store), SessionLocks())
    log.startLogging(sys.stdout)

    def listening(port):
        print(f"twisted.mail.pop3 listening on {port.getHost().host}:{port.getHost().port}", flush=True)

    serverFromString(reactor, args.listen).listen(StockPOP3Factory(resources.portal)).addCallbacks(
        listening, lambda f: (f.printTraceback(), reactor.stop())
    )
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
