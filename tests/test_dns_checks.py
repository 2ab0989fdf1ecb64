"""
The zone loader's checks classified as BIND's: for every zone of the
corpus in C{tests/dns_fixtures/checks/} (one check each), our verdict
(loaded, or refused) equals C{named-checkzone}'s (apt package
C{bind9-utils}), and C{nsd-checkzone}'s verdict (package C{nsd}) is the
one recorded here, where NSD differs from BIND.  Warnings are printed with
C{file:line} by C{maillab checkzone} and logged by the server.
"""

from __future__ import annotations

import io
import os
import subprocess

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from twisted_maillab.dns.checkzone import main as checkzone
from twisted_maillab.dns.service import loadZones
from twisted_maillab.dns.zone import ZoneError, loadZone, parseOrigin

from tests.support import requireTool

CHECKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_fixtures", "checks")

LOAD, REFUSE = "load", "refuse"

# file -> (our verdict, the finding it exercises, its severity, nsd-checkzone's verdict)
CORPUS = {
    "ok": (LOAD, None, None, LOAD),
    "seed-defects-fixed": (LOAD, "sous.domaineel.rt/NS 'serveurdeux.domaineel.rt' has no address records", "warning", LOAD),
    "missing-glue": (LOAD, "has no REQUIRED GLUE address records", "warning", LOAD),
    "sibling-ns-no-address": (LOAD, "sub.example.org/NS 'other.example.org' has no address records", "warning", LOAD),
    "apex-ns-no-address": (REFUSE, "example.org/NS 'ns2.example.org' has no address records", "error", LOAD),
    "apex-ns-below-cut": (LOAD, "example.org/NS 'ns.sub.example.org' has no REQUIRED GLUE", "warning", LOAD),
    "cname-and-other": (REFUSE, "CNAME and other data (A)", "error", REFUSE),
    "cname-at-apex": (REFUSE, "CNAME and other data (SOA, NS)", "error", REFUSE),
    "two-cnames": (REFUSE, "more than one CNAME record", "error", REFUSE),
    "two-dnames": (REFUSE, "more than one DNAME record", "error", REFUSE),
    "ns-to-cname": (LOAD, "sub.example.org/NS 'alias.example.org' is a CNAME (illegal)", "warning", LOAD),
    "apex-ns-to-cname": (REFUSE, "example.org/NS 'alias.example.org' is a CNAME (illegal)", "error", LOAD),
    "mx-to-cname": (LOAD, "example.org/MX 'alias.example.org' is a CNAME (illegal)", "warning", LOAD),
    "srv-to-cname": (LOAD, "SRV 'alias.example.org' is a CNAME (illegal)", "warning", LOAD),
    "mx-no-address": (LOAD, "example.org/MX 'mail.example.org' has no address records", "warning", LOAD),
    "srv-no-address": (LOAD, "SRV 'sip.example.org' has no address records", "warning", LOAD),
    "missing-soa": (REFUSE, "has no SOA record", "error", REFUSE),
    "duplicate-soa": (REFUSE, "multiple SOA records", "error", REFUSE),
    "soa-not-at-apex": (REFUSE, "SOA record not at top of zone", "error", REFUSE),
    # NSD refuses out-of-zone data; BIND ignores it with a warning.
    "out-of-zone": (LOAD, "ignoring out-of-zone data", "warning", REFUSE),
    "ttl-above-31-bits": (LOAD, "TTL 2147483648 is above 2^31-1, using 0", "warning", LOAD),
    # NSD takes 2^32 modulo 2^32; BIND refuses it.
    "ttl-above-32-bits": (REFUSE, "does not fit in 32 bits", "error", LOAD),
    "ttl-mismatch": (LOAD, "TTL 600 differs from the set's 300", "warning", LOAD),
    "no-ttl-soa-minimum": (LOAD, "using SOA MINIMUM", "warning", LOAD),
    "no-ttl-at-all": (REFUSE, "no TTL specified", "error", LOAD),
    "hash-comment": (REFUSE, "'#' does not start a comment", "error", REFUSE),
    "bad-address": (REFUSE, "is not an IPv4 address", "error", REFUSE),
    "unknown-type": (REFUSE, "unknown RR type 'FOO'", "error", REFUSE),
    "class-ch": (REFUSE, "only class IN", "error", REFUSE),
    "unbalanced-parenthesis": (REFUSE, "'(' is never closed", "error", LOAD),
    "generic-bad-length": (REFUSE, "generic data has 3 octets", "error", LOAD),
    "include-missing": (REFUSE, "cannot read", "error", REFUSE),
    "data-below-dname": (REFUSE, "www.old.example.org.: data below the DNAME at old.example.org. (RFC 6672 2.3)", "error", REFUSE),
    "wildcard-ns": (REFUSE, "*.example.org.: NS owned by a wildcard (RFC 4592 4.2)", "error", LOAD),
}

# Where named-checkzone 9.18 is the one that disagrees with the RFC:
# file -> (its verdict, why ours is the RFC's).
BIND_DEVIATIONS = {
    "data-below-dname": (
        LOAD,
        "RFC 6672 2.3: resource records MUST NOT exist at any subdomain of a "
        "DNAME owner; named-checkzone loads them (they are never answered), "
        "nsd-checkzone refuses them, as we do.",
    ),
}


def origin(name: str) -> str:
    return "domaineel.rt" if name.startswith("seed") else "example.org"


def path(name: str) -> str:
    return os.path.join(CHECKS, name + ".zone")


def ours(name: str):
    """
    @return: C{(verdict, findings)}, findings as C{(severity, reason)}.
    """
    try:
        zone = loadZone(path(name), parseOrigin(origin(name)))
    except ZoneError as e:
        return REFUSE, [(p.severity, p.reason) for p in e.problems + e.warnings]
    return LOAD, [(p.severity, p.reason) for p in zone.warnings]


def tool(program: str, package: str, name: str) -> str:
    result = subprocess.run(
        [requireTool(program, package), origin(name), path(name)],
        capture_output=True,
        text=True,
        cwd=CHECKS,
    )
    return LOAD if result.returncode == 0 else REFUSE


class CorpusTests(unittest.TestCase):
    def test_corpusIsComplete(self):
        """
        Every fixture is in the table and exercises one check.
        """
        files = sorted(f[: -len(".zone")] for f in os.listdir(CHECKS) if f.endswith(".zone"))
        self.assertEqual(files, sorted(CORPUS))
        self.assertGreaterEqual(len(files), 12)

    def test_findings(self):
        for name, (verdict, finding, severity, _) in CORPUS.items():
            got, findings = ours(name)
            self.assertEqual(got, verdict, (name, findings))
            if finding is None:
                self.assertEqual(findings, [], name)
            else:
                self.assertIn(finding, " | ".join(r for _, r in findings), name)
                self.assertIn((severity, finding), [(s, finding) for s, r in findings if finding in r], name)

    def test_namedCheckzoneAgrees(self):
        disagreements = {
            name: (ours(name)[0], bind)
            for name in CORPUS
            if (bind := tool("named-checkzone", "bind9-utils", name))
            != (BIND_DEVIATIONS[name][0] if name in BIND_DEVIATIONS else ours(name)[0])
        }
        self.assertEqual(disagreements, {})
        for name in BIND_DEVIATIONS:
            # Still a deviation: ours differs from BIND's.
            self.assertNotEqual(ours(name)[0], BIND_DEVIATIONS[name][0], name)

    def test_nsdCheckzoneAsRecorded(self):
        disagreements = {
            name: (nsd, expected[3])
            for name, expected in CORPUS.items()
            if (nsd := tool("nsd-checkzone", "nsd", name)) != expected[3]
        }
        self.assertEqual(disagreements, {})


class WarningOutputTests(unittest.TestCase):
    """
    The seed's zone with its two defects fixed: served, with its two
    warnings shown as C{file:line: warning: reason}.
    """

    def test_checkzonePrintsWarnings(self):
        out, err = io.StringIO(), io.StringIO()
        code = checkzone(["domaineel.rt", path("seed-defects-fixed")], out, err)
        self.assertEqual(code, 0)
        self.assertEqual(out.getvalue(), "zone domaineel.rt: loaded serial 4\n")
        where = path("seed-defects-fixed")
        self.assertEqual(
            err.getvalue().splitlines(),
            [
                f"{where}:13: warning: sous.domaineel.rt/NS 'serveurdeux.domaineel.rt' has no address records (A or AAAA)",
                f"{where}:18: warning: domaineel.rt/MX 'smtp.domaineel.rt' is a CNAME (illegal)",
            ],
        )

    def test_serverLogsWarnings(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        (zone,) = loadZones([("domaineel.rt", path("seed-defects-fixed"))])
        self.assertEqual(zone.serial, 4)
        logged = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertIn(
            f"{path('seed-defects-fixed')}:13: warning: sous.domaineel.rt/NS 'serveurdeux.domaineel.rt' "
            "has no address records (A or AAAA)",
            logged,
        )
