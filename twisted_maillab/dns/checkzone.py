"""
C{maillab checkzone ORIGIN FILE}: check a zone file as the server would
load it, like BIND's C{named-checkzone}: every error and warning with its
file and line, then C{zone ORIGIN: loaded serial N} and exit 0, or exit 1.
What is an error and what only a warning is what C{named-checkzone}
decides (see L{twisted_maillab.dns.integrity}).
"""

from __future__ import annotations

import argparse
import sys

from twisted_maillab.dns.zone import ZoneError, loadZone, parseOrigin


def main(argv: list[str], out=None, err=None) -> int:
    """
    @param argv: C{[ORIGIN, FILE]}.
    @return: 0 when the zone would be served, 1 when it would not.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="maillab checkzone", description=__doc__.strip().splitlines()[0])
    parser.add_argument("origin", help="the zone's name, e.g. domaineel.rt")
    parser.add_argument("file", help="the BIND master file")
    args = parser.parse_args(argv)
    try:
        origin = parseOrigin(args.origin)
    except ValueError as e:
        print(f"maillab checkzone: {e}", file=err)
        return 2
    try:
        zone = loadZone(args.file, origin)
    except ZoneError as e:
        _printFindings(e.warnings, err)
        _printFindings(e.problems, err)
        print(f"zone {args.origin}: not loaded due to errors", file=err)
        return 1
    # Warnings do not stop the load (as named-checkzone's): the zone is
    # served, and the server logs the same lines.
    _printFindings(zone.warnings, err)
    print(f"zone {args.origin}: loaded serial {zone.serial}", file=out)
    return 0


def _printFindings(findings, err) -> None:
    # In file order, whichever check found them.
    for finding in sorted(findings, key=lambda p: (p.path, p.line)):
        print(str(finding), file=err)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
