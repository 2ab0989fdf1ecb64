"""
A twisted.names server serving maillab's zones.

maillab's zone files (or any IZoneSource) are loaded and checked by
maillab's parser, and Twisted's own DNSServerFactory answers from them
through twisted_maillab.dns.twistedseam.ZoneAuthority, beside whatever
other authorities or resolvers the application chains::

    python examples/names_server.py --port 10053 domaineel.rt:etc/zones/domaineel.rt.zone
    dig @127.0.0.1 -p 10053 MX domaineel.rt
"""

import argparse
import sys

from twisted.internet import reactor
from twisted.names import dns, server
from twisted.python import log

from twisted_maillab.dns.service import FileZoneSource
from twisted_maillab.dns.twistedseam import ZoneAuthority


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=10053)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("zones", nargs="+", help="ORIGIN:FILE")
    args = parser.parse_args(argv)
    source = FileZoneSource([tuple(spec.split(":", 1)) for spec in args.zones])
    authority = ZoneAuthority.fromSource(source, reactor)
    factory = server.DNSServerFactory(authorities=[authority])
    udp = reactor.listenUDP(args.port, dns.DNSDatagramProtocol(factory), interface=args.interface)
    tcp = reactor.listenTCP(args.port, factory, interface=args.interface)
    log.startLogging(sys.stdout)
    print(f"twisted.names serving {', '.join(args.zones)} on {udp.getHost().host}:{tcp.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
