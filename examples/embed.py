"""
An application embedding the whole maillab suite in its own service tree.

The application has a service of its own (here a one-line status listener
that names the suite's running services) and adds maillab's service tree,
built by twisted_maillab.service.makeService from an ini file, under the
same parent: one process, one reactor, started and stopped together::

    python examples/embed.py --config etc/maillab.dev.ini --status tcp:10080:interface=127.0.0.1
"""

import argparse
import sys

from twisted.application import service, strports
from twisted.internet import protocol, reactor
from twisted.python import log

from twisted_maillab.config import ConfigError, load
from twisted_maillab.service import bindListeners, makeService


class Status(protocol.Protocol):
    def connectionMade(self):
        suite = self.factory.suite
        names = " ".join(child.name for child in suite if child.running)
        self.transport.write(f"maillab running: {names}\r\n".encode())
        self.transport.loseConnection()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--status", default="tcp:10080:interface=127.0.0.1")
    args = parser.parse_args(argv)
    log.startLogging(sys.stdout)
    application = service.MultiService()
    try:
        config = load(args.config)
        suite = makeService(config, reactor)
        # Bind now: a port in use is a one-line error, as under twistd.
        bindListeners(suite, config)
    except ConfigError as e:
        for each in e.errors:
            sys.stderr.write(f"embed: {each}\n")
        raise SystemExit(1)
    suite.setServiceParent(application)
    factory = protocol.Factory.forProtocol(Status)
    factory.suite = suite
    strports.service(args.status, factory).setServiceParent(application)
    application.startService()
    # The reactor stops on SIGTERM and SIGINT; the tree stops with it.
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    print("application started", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
