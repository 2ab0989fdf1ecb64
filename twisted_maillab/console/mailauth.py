"""
C{maillab dkim} (the DKIM keys: C{show}, C{rotate}) and C{maillab dmarc
report} (DMARC aggregate reports received), over
L{twisted_maillab.mailauth}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twisted_maillab.console import begin, printJSON, printTable

__all__ = ["dkim", "dmarc"]


def _when(seconds) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else ""


def dkim(argv: list[str], stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="maillab dkim", description="The DKIM signing keys.")
    parser.add_argument("--config", type=Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="every selector and its state")
    show.add_argument("domain", nargs="?")
    show.add_argument("--json", action="store_true")
    rotate = commands.add_parser("rotate", help="start a new key generation")
    rotate.add_argument("domain")
    rotate.add_argument("--no-reload", action="store_true", help="do not ask the daemon to reload its zones")
    for sub in (show, rotate):
        sub.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    started = begin(parser, argv, "maillab dkim", stdout, stderr)
    if isinstance(started, int):
        return started
    args, config = started
    from twisted_maillab.mailauth.publish import keyStore
    from twisted_maillab.mailauth.signing import signingDomains

    store = keyStore(config)
    domains = signingDomains(config)
    if args.domain is not None:
        domain = args.domain.lower().rstrip(".")
        if domain not in domains:
            print(f"maillab dkim: {domain} is not one of [mailauth] dkim_domains ({', '.join(domains)})", file=stderr)
            return 1
        domains = [domain]
    if args.command == "rotate":
        generation = store.rotate(domains[0])
        print(f"{domains[0]}: now signing with {', '.join(generation.selectors())}", file=stdout)
        if not args.no_reload:
            _reload(config, stdout)
        return 0
    rows = []
    for domain in domains:
        for generation in store.generations(domain):
            for key in store.keys(domain, generation):
                rows.append(
                    {
                        "domain": domain,
                        "selector": key.selector,
                        "algorithm": key.algorithm.decode(),
                        "state": store.state(generation),
                        "created": generation.created,
                        "published_until": store.publishedUntil(generation),
                        "record": f"{key.selector}._domainkey.{domain}",
                    }
                )
    if args.json:
        printJSON(rows, stdout)
    else:
        printTable(
            ["DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "CREATED", "PUBLISHED UNTIL"],
            [
                [r["domain"], r["selector"], r["algorithm"], r["state"], _when(r["created"]), _when(r["published_until"]) or "-"]
                for r in rows
            ],
            stdout,
        )
    return 0


def _reload(config, stdout) -> None:
    from twisted_maillab import reload

    try:
        status = reload.main(["--config", str(config.path)])
    except SystemExit as e:
        status = e.code
    if status:
        print("the daemon was not reloaded: the new selectors are published at its next start or reload", file=stdout)


def dmarc(argv: list[str], stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="maillab dmarc", description="DMARC aggregate reports.")
    parser.add_argument("--config", type=Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="summarize received aggregate reports")
    report.add_argument("paths", nargs="+", help="report files (.xml, .gz, .zip) or Maildir folders")
    report.add_argument("--json", action="store_true")
    report.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from twisted_maillab.mailauth.reports import reportsIn

    reports, problems = reportsIn(args.paths)
    for problem in problems:
        print(f"maillab dmarc: {problem}", file=stderr)
    if args.json:
        printJSON(
            [
                {
                    "org": r.org,
                    "report_id": r.reportId,
                    "begin": r.begin,
                    "end": r.end,
                    "domain": r.domain,
                    "policy": r.policy,
                    "messages": r.total(),
                    "records": [vars(x) for x in r.records],
                }
                for r in reports
            ],
            stdout,
        )
    else:
        for r in reports:
            print(
                f"{r.org} report {r.reportId} for {r.domain} (p={r.policy}), {_when(r.begin)} to {_when(r.end)}: "
                f"{r.total()} messages",
                file=stdout,
            )
            printTable(
                ["  SOURCE", "COUNT", "DKIM", "SPF", "DISPOSITION", "FROM"],
                [["  " + x.source, x.count, x.dkim, x.spf, x.disposition, x.headerFrom] for x in r.records],
                stdout,
            )
        passed = sum(x.count for r in reports for x in r.records if "pass" in (x.dkim, x.spf))
        total = sum(r.total() for r in reports)
        print(f"{len(reports)} reports, {total} messages, {passed} passed DMARC, {total - passed} failed", file=stdout)
    return 1 if problems and not reports else 0
