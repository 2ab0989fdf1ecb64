"""
The zone file parser (RFC 1035 5, RFC 3597, BIND extensions) and the
checks named-checkzone makes.
"""

from __future__ import annotations

import os
import struct

from twisted.trial import unittest

from twisted_maillab.config import ConfigError
from twisted_maillab.dns import names as N
from twisted_maillab.dns.zone import ZoneError, loadZone, parseOrigin, parseTTL, parseZoneText

from tests.test_dns_support import FIXTURES, ROOT

ORIGIN = parseOrigin("example.org")
HEAD = "$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n  NS ns\nns A 192.0.2.1\n"


def name(text):
    return N.key(parseOrigin(text))


def parse(text, origin=ORIGIN):
    zone, problems = parseZoneText(text, origin, "test.zone")
    return zone, [p for p in problems if p.severity == "error"], [p for p in problems if p.severity != "error"]


def rrset(zone, owner, rtype):
    return zone.nodes[name(owner)].rrsets[rtype]


class SyntaxTests(unittest.TestCase):
    def ok(self, text):
        zone, errors, warnings = parse(HEAD + text)
        self.assertEqual(errors, [], [str(e) for e in errors])
        return zone

    def test_originDirectiveAndAt(self):
        zone = self.ok("$ORIGIN sub.example.org.\n@ A 192.0.2.2\nwww A 192.0.2.3\n")
        self.assertIn(name("sub.example.org"), zone.nodes)
        self.assertIn(name("www.sub.example.org"), zone.nodes)

    def test_relativeOriginDirective(self):
        zone = self.ok("$ORIGIN sub\nx A 192.0.2.2\n")
        self.assertIn(name("x.sub.example.org"), zone.nodes)

    def test_relativeAndAbsoluteNamesInData(self):
        zone = self.ok("@ MX 10 mail\n@ MX 20 mx.other.net.\nalias CNAME www\nwww A 192.0.2.9\nmail A 192.0.2.8\n")
        targets = {N.toText(r.target) for r in rrset(zone, "example.org", N.MX).rdatas}
        self.assertEqual(targets, {"mail.example.org.", "mx.other.net."})
        self.assertEqual(rrset(zone, "alias.example.org", N.CNAME).rdatas[0].target, parseOrigin("www.example.org"))

    def test_ttlDirectiveWithUnits(self):
        zone, errors, _ = parse("$TTL 1h30m\n@ SOA ns hm 1 1h 10m 1w 1d\n NS ns\nns A 192.0.2.1\n")
        self.assertEqual(errors, [])
        self.assertEqual(rrset(zone, "ns.example.org", N.A).ttl, 5400)
        self.assertEqual(zone.soaField(2), 604800)
        self.assertEqual(parseTTL("2w1d"), 14 * 86400 + 86400)
        self.assertRaises(ValueError, parseTTL, "1x")

    def test_ownerInherited(self):
        zone = self.ok("host A 192.0.2.5\n      AAAA 2001:db8::5\n\tTXT \"x\"\n")
        node = zone.nodes[name("host.example.org")]
        self.assertEqual(set(node.rrsets), {N.A, N.AAAA, N.TXT})

    def test_ttlAndClassEitherOrder(self):
        zone = self.ok("a 60 IN A 192.0.2.1\nb IN 70 A 192.0.2.2\nc IN A 192.0.2.3\nd 80 A 192.0.2.4\ne A 192.0.2.5\n")
        ttls = {o: rrset(zone, o + ".example.org", N.A).ttl for o in "abcde"}
        self.assertEqual(ttls, {"a": 60, "b": 70, "c": 300, "d": 80, "e": 300})

    def test_lastExplicitTTLWithoutDollarTTL(self):
        zone, errors, warnings = parse("@ 100 SOA ns hm 1 2 3 4 5\n NS ns\nns A 192.0.2.1\n")
        self.assertEqual(errors, [])
        self.assertEqual(rrset(zone, "ns.example.org", N.A).ttl, 100)

    def test_soaMinimumAsDefaultTTL(self):
        # As named-checkzone: no $TTL and no TTL on the SOA -> MINIMUM is
        # the default; an explicit TTL applies to its own record only.
        zone, errors, warnings = parse("@ SOA ns hm 1 2 3 4 55\n NS ns\nns A 192.0.2.1\nb 70 A 192.0.2.2\nc A 192.0.2.3\n")
        self.assertEqual(errors, [])
        self.assertIn("SOA MINIMUM", warnings[0].reason)
        ttls = [rrset(zone, f"{o}.example.org", N.A).ttl for o in ("ns", "b", "c")]
        self.assertEqual(ttls, [55, 70, 55])

    def test_parenthesesAcrossLines(self):
        zone = self.ok("srv SRV ( 10\n  20 ; weight\n  443\n  target )\ntarget A 192.0.2.7\n")
        data = rrset(zone, "srv.example.org", N.SRV).rdatas[0].parts[0]
        self.assertEqual(struct.unpack("!3H", data), (10, 20, 443))

    def test_soaOnOneLineWithParentheses(self):
        zone, errors, _ = parse("$TTL 60\n@ SOA ns hm ( 7 1 2 3 4 )\n NS ns\nns A 192.0.2.1\n")
        self.assertEqual(errors, [])
        self.assertEqual(zone.serial, 7)
        self.assertEqual(zone.soaField(3), 4)

    def test_commentsNotInsideQuotes(self):
        zone = self.ok('t TXT "a;b" ; real comment\n')
        self.assertEqual(rrset(zone, "t.example.org", N.TXT).rdatas[0].parts[0], b"\x03a;b")

    def test_quotedEscapes(self):
        zone = self.ok('t TXT "say \\"hi\\"" "\\065\\066" "back\\\\slash"\n')
        self.assertEqual(rrset(zone, "t.example.org", N.TXT).rdatas[0].parts[0], b'\x08say "hi"\x02AB\x0aback\\slash')

    def test_dddEscapesInNames(self):
        zone = self.ok("a\\.b A 192.0.2.1\n\\065bc A 192.0.2.2\n")
        self.assertIn((b"a.b", b"example", b"org"), zone.nodes)
        self.assertIn((b"abc", b"example", b"org"), zone.nodes)

    def test_txtSeveralStringsAndLongSplit(self):
        long = "x" * 300
        zone = self.ok(f't TXT "one" two "{long}"\n')
        data = rrset(zone, "t.example.org", N.TXT).rdatas[0].parts[0]
        self.assertEqual(data, b"\x03one\x03two\xff" + b"x" * 255 + b"\x2d" + b"x" * 45)

    def test_allTypes(self):
        zone = self.ok(
            "a A 192.0.2.1\n"
            "a AAAA 2001:db8::1\n"
            "c CNAME a\n"
            "@ MX 5 a\n"
            "p PTR a\n"
            "_s._tcp SRV 1 2 3 a\n"
            "@ CAA 128 issue \"ca.example.net; account=1\"\n"
            "_443._tcp TLSA 3 1 1 ( AABB\n CCDD )\n"
            "n NAPTR 10 20 \"U\" \"E2U+sip\" \"!^.*$!sip:x@example.org!\" .\n"
            "d DNAME other.example.net.\n"
            "h HINFO \"cpu\" \"os\"\n"
            "k SSHFP 4 2 ABCDEF\n"
            "u TYPE65280 \\# 3 010203\n"
            "v A \\# 4 C0000202\n"
            "w TYPE1 \\# 4 C0000203\n"
        )
        caa = rrset(zone, "example.org", N.CAA).rdatas[0].parts[0]
        self.assertEqual(caa, b"\x80\x05issueca.example.net; account=1")
        self.assertEqual(rrset(zone, "_443._tcp.example.org", N.TLSA).rdatas[0].parts[0], b"\x03\x01\x01\xaa\xbb\xcc\xdd")
        self.assertEqual(rrset(zone, "u.example.org", 65280).rdatas[0].parts[0], b"\x01\x02\x03")
        self.assertEqual(rrset(zone, "v.example.org", N.A).rdatas[0].parts[0], bytes([192, 0, 2, 2]))
        self.assertEqual(rrset(zone, "w.example.org", N.A).rdatas[0].parts[0], bytes([192, 0, 2, 3]))
        naptr = rrset(zone, "n.example.org", N.NAPTR).rdatas[0]
        self.assertEqual(naptr.parts[0][:4], struct.pack("!2H", 10, 20))
        self.assertEqual(rrset(zone, "d.example.org", N.DNAME).rdatas[0].target, parseOrigin("other.example.net"))

    def test_include(self):
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "hosts.inc"), "w") as f:
            f.write("www A 192.0.2.80\n")
        with open(os.path.join(directory, "main.zone"), "w") as f:
            f.write(HEAD + "$INCLUDE hosts.inc sub\nafter A 192.0.2.81\n")
        zone = loadZone(os.path.join(directory, "main.zone"), ORIGIN)
        self.assertIn(name("www.sub.example.org"), zone.nodes)
        # RFC 1035 5.1: the origin reverts after the included file.
        self.assertIn(name("after.example.org"), zone.nodes)

    def test_includeErrorsNameTheIncludedFile(self):
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "bad.inc"), "w") as f:
            f.write("\nwww A 192.0.2.999\n")
        with open(os.path.join(directory, "main.zone"), "w") as f:
            f.write(HEAD + "$INCLUDE bad.inc\n")
        error = self.assertRaises(ZoneError, loadZone, os.path.join(directory, "main.zone"), ORIGIN)
        self.assertEqual(error.problems[0].path, os.path.join(directory, "bad.inc"))
        self.assertEqual(error.problems[0].line, 2)
        self.assertIn("not an IPv4 address", error.problems[0].reason)

    def test_utf8BytesKept(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write((HEAD + 't TXT "café" caf\\195\\169\n').encode("utf-8"))
        zone = loadZone(path, ORIGIN)
        self.assertEqual(rrset(zone, "t.example.org", N.TXT).rdatas[0].parts[0], b"\x05caf\xc3\xa9\x05caf\xc3\xa9")

    def test_duplicateRecordsMerged(self):
        zone = self.ok("a A 192.0.2.1\na A 192.0.2.1\nA.EXAMPLE.ORG. A 192.0.2.1\n")
        self.assertEqual(len(rrset(zone, "a.example.org", N.A).rdatas), 1)

    def test_emptyNonTerminals(self):
        zone = self.ok("a.b.c A 192.0.2.1\n")
        self.assertIn(name("b.c.example.org"), zone.nodes)
        self.assertEqual(zone.nodes[name("c.example.org")].rrsets, {})


class ErrorTests(unittest.TestCase):
    def errors(self, text):
        _, errors, _ = parse(text)
        return [(e.line, e.reason) for e in errors]

    def test_badLinesNamed(self):
        errors = self.errors(HEAD + "a A 192.0.2.300\nb AAAA nope\nc MX mail\nd BOGUS x\ne CNAME\n")
        self.assertEqual([line for line, _ in errors], [5, 6, 7, 8, 9])
        self.assertIn("not an IPv4 address", errors[0][1])
        self.assertIn("unknown RR type 'BOGUS'", errors[3][1])
        self.assertIn("missing data", errors[4][1])

    def test_hashIsNotAComment(self):
        errors = self.errors(HEAD + "a A 192.0.2.1 # web\n")
        self.assertEqual(errors[0][0], 5)
        self.assertIn("use ';'", errors[0][1])

    def test_unbalanced(self):
        self.assertIn("never closed", self.errors(HEAD + "a TXT ( \"x\"\n")[0][1])
        self.assertIn("unbalanced quotes", self.errors(HEAD + 'a TXT "x\n')[0][1])

    def test_badGeneric(self):
        self.assertIn("length says 5", self.errors(HEAD + "u TYPE999 \\# 5 0102\n")[0][1])

    def test_labelTooLong(self):
        self.assertIn("63", self.errors(HEAD + ("x" * 64) + " A 192.0.2.1\n")[0][1])

    def test_classOtherThanIN(self):
        self.assertIn("class IN", self.errors(HEAD + "a CH A 192.0.2.1\n")[0][1])


class CheckTests(unittest.TestCase):
    """
    named-checkzone's integrity checks.
    """

    def test_noSOA(self):
        _, errors, _ = parse("$TTL 1\n@ NS ns\nns A 192.0.2.1\n")
        self.assertIn("no SOA", errors[0].reason)

    def test_twoSOAs(self):
        _, errors, _ = parse(HEAD + "@ SOA ns2 hm 2 1 1 1 1\n")
        self.assertIn("multiple SOA", errors[0].reason)

    def test_soaNotAtApex(self):
        _, errors, _ = parse(HEAD + "sub SOA ns hm 1 1 1 1 1\n")
        self.assertIn("not at top of zone", errors[0].reason)

    def test_noApexNS(self):
        _, errors, _ = parse("$TTL 1\n@ SOA ns hm 1 1 1 1 1\n")
        self.assertIn("no NS records", errors[0].reason)

    def test_cnameAndOtherData(self):
        _, errors, _ = parse(HEAD + "www CNAME ns\nwww TXT \"x\"\n")
        self.assertIn("CNAME and other data", errors[0].reason)
        self.assertEqual(errors[0].line, 5)

    def test_mxToCnameWarns(self):
        zone, errors, warnings = parse(HEAD + "@ MX 10 alias\nalias CNAME ns\n")
        self.assertEqual(errors, [])
        self.assertIn("example.org/MX 'alias.example.org' is a CNAME (illegal)", warnings[0].reason)

    def test_nsToCnameWarns(self):
        _, errors, warnings = parse(HEAD + "  NS alias\nalias CNAME ns\n")
        self.assertEqual(errors, [])
        self.assertIn("is a CNAME", warnings[0].reason)

    def test_outOfZoneIgnoredWithWarning(self):
        zone, errors, warnings = parse(HEAD + "25.2.0.192.in-addr.arpa. PTR ns\n")
        self.assertEqual(errors, [])
        self.assertIn("out-of-zone", warnings[0].reason)
        self.assertNotIn(name("25.2.0.192.in-addr.arpa"), zone.nodes)

    def test_delegationWithoutGlueWarns(self):
        """
        named-checkzone logs a delegation's missing glue and loads the
        zone (tests/test_dns_checks.py compares with it).
        """
        _, errors, warnings = parse(HEAD + "sub NS ns.sub\n")
        self.assertEqual(errors, [])
        self.assertIn("REQUIRED GLUE", warnings[0].reason)
        _, errors, warnings = parse(HEAD + "sub NS ns.sub\nns.sub A 192.0.2.53\n")
        self.assertEqual((errors, warnings), ([], []))

    def test_inZoneNSNeedsAddress(self):
        """
        An in-zone server without an address: a warning for a delegation,
        an error for the apex (the zone's own servers).
        """
        _, errors, warnings = parse(HEAD + "sub NS host\n")
        self.assertEqual(errors, [])
        self.assertIn("has no address records", warnings[0].reason)
        _, errors, _ = parse(HEAD + "@ NS host\n")
        self.assertIn("has no address records", errors[0].reason)

    def test_outOfZoneNSFine(self):
        _, errors, _ = parse(HEAD + "sub NS ns.example.net.\n")
        self.assertEqual(errors, [])


class SeedZoneTests(unittest.TestCase):
    """
    The seed's own zone text (TP 2 section 1) and the corrected one in etc/.
    """

    def test_seedZoneRejectedAtBothDefects(self):
        path = os.path.join(FIXTURES, "seed-broken.zone")
        error = self.assertRaises(ZoneError, loadZone, path, parseOrigin("domaineel.rt"))
        self.assertIsInstance(error, ConfigError)
        lines = [p.line for p in error.problems]
        # Line 2: the SOA without RNAME; lines 14 and 15: '#' comments.
        self.assertEqual(lines, [2, 14, 15])
        self.assertIn("RNAME", error.problems[0].reason)
        self.assertIn("'#' does not start a comment", error.problems[1].reason)
        text = str(error)
        self.assertIn(f"{path}:2: SOA has 6 fields", text)
        self.assertIn(f"{path}:14: '#alias'", text)
        self.assertEqual(error.line, 2)

    def test_correctedZoneLoads(self):
        zone = loadZone(os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone"), parseOrigin("domaineel.rt"))
        self.assertEqual(zone.serial, 4)
        mx = zone.nodes[name("domaineel.rt")].rrsets[N.MX]
        self.assertEqual(N.toText(mx.rdatas[0].target), "smtp.domaineel.rt.")
        self.assertEqual(zone.cuts, {name("sous.domaineel.rt")})
        # The only finding is BIND's MX-to-CNAME warning.
        self.assertEqual(len(zone.warnings), 1)
        self.assertIn("is a CNAME", zone.warnings[0].reason)

    def test_fullFixtureLoads(self):
        zone = loadZone(os.path.join(FIXTURES, "full.zone"), parseOrigin("domaineel.rt"))
        self.assertEqual(zone.serial, 2026112901)
        self.assertEqual(zone.negativeSOA().ttl, 300)


class CheckzoneCommandTests(unittest.TestCase):
    """
    maillab checkzone ORIGIN FILE, the named-checkzone of this package.
    """

    def run_(self, *argv):
        import io

        from twisted_maillab.dns.checkzone import main

        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def test_goodZone(self):
        code, out, err = self.run_("domaineel.rt", os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone"))
        self.assertEqual(code, 0)
        self.assertEqual(out, "zone domaineel.rt: loaded serial 4\n")
        self.assertIn("is a CNAME (illegal)", err)

    def test_seedZone(self):
        path = os.path.join(FIXTURES, "seed-broken.zone")
        code, out, err = self.run_("domaineel.rt", path)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertIn(f"{path}:2: SOA has 6 fields", err)
        self.assertIn(f"{path}:14: '#alias'", err)
        self.assertIn(f"{path}:15: '#enregistrement'", err)
        self.assertTrue(err.endswith("zone domaineel.rt: not loaded due to errors\n"))
