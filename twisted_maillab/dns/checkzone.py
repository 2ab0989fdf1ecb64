"""
C{maillab checkzone ORIGIN FILE}: check a zone file as the server would
load it, like BIND's C{named-checkzone}: every error and warning with its
file and line, then C{zone ORIGIN: loaded serial N} and exit 0, or exit 1.
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
        for warning in e.warnings:
            print(str(warning), file=err)
        for problem in e.problems:
            print(str(problem), file=err)
        print(f"zone {args.origin}: not loaded due to errors", file=err)
        return 1
    for warning in zone.warnings:
        print(str(warning), file=err)
    print(f"zone {args.origin}: loaded serial {zone.serial}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
