"""
C{maillab zone show ORIGIN}: print a zone as the DNS service serves it,
the zone file's records and those generated from the configuration
(C{[dns] publish_mail_records}), with the served SOA serial, as a master
file (RFC 1035 5.1) that C{dig axfr} of the running server matches.

The zone is loaded as the daemon loads it (the same files, the same
publishers, the served serial from C{<state_directory>/dns-published.json})
without changing any state: it is what the daemon serves once it has
loaded the current files (at its start or its last C{maillab reload}).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from twisted_maillab.config import ConfigError
from twisted_maillab.console import begin
from twisted_maillab.dns import names as N

__all__ = ["main", "masterFile"]

PROG = "maillab zone"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", type=Path, help="the daemon's ini file")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print a zone as served")
    show.add_argument("origin", help="the zone's name, e.g. domaineel.rt")
    return parser


def masterFile(zone) -> str:
    """
    C{zone} in master-file form: C{$ORIGIN}, then the SOA, then every
    other record, one per line with absolute names, TTL and class (the
    order of a zone transfer, RFC 5936 2.2).
    """
    lines = [f"$ORIGIN {N.toText(zone.origin)}"]
    soa = zone.soa

    def record(rrset, rdata):
        wire = rdata.wire()
        text = dns.rdata.from_wire(dns.rdataclass.IN, rrset.rtype, wire, 0, len(wire)).to_text()
        lines.append(f"{N.toText(rrset.owner)}\t{rrset.ttl}\tIN\t{dns.rdatatype.to_text(rrset.rtype)}\t{text}")

    record(soa, soa.rdatas[0])
    for rrset in zone.rrsets():
        if rrset.rtype == N.SOA and N.key(rrset.owner) == zone.originKey:
            continue
        for rdata in rrset.rdatas:
            record(rrset, rdata)
    return "\n".join(lines) + "\n"


def main(argv: list[str], stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = begin(_parser(), argv, PROG, stdout, stderr)
    if isinstance(started, int):
        return started
    args, config = started
    from twisted_maillab.dns.published import zoneSourceFor
    from twisted_maillab.dns.service import FileZoneSource

    origin = args.origin.strip().rstrip(".").lower()
    specs = [(name, path) for name, path in config.dns.zones if name == origin]
    if not specs:
        served = ", ".join(name for name, _ in config.dns.zones) or "none"
        print(f"{PROG}: {origin} is not a zone of [dns] zones (served: {served})", file=stderr)
        return 1
    try:
        # persist=False: showing a zone must not raise its served serial.
        zones = zoneSourceFor(config, FileZoneSource(specs), persist=False).load()
    except ConfigError as e:
        print(f"{PROG}: {e}", file=stderr)
        return 1
    stdout.write(masterFile(zones[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
