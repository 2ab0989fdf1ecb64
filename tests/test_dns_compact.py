"""
The compact zone store (L{twisted_maillab.dns.compact}) and the reading
of plain record lines into it: a zone read that way answers, checks and
reports exactly as the same zone read record by record.
"""

from __future__ import annotations

from twisted.trial import unittest

from twisted_maillab.dns import names as N
from twisted_maillab.dns.answer import ResponseTable, Zones, lookup
from twisted_maillab.dns.compact import NodeMap
from twisted_maillab.dns.wire import Edns, encode
from twisted_maillab.dns.zone import Zone, _Parser, parseOrigin

ORIGIN = parseOrigin("example.org")

TEXT = """$TTL 300
@ SOA ns hostmaster 7 3600 600 86400 60
  NS ns
ns A 192.0.2.1
h1 A 192.0.2.10
h1 TXT "name one"
h1 MX 10 h2
h2 3600 IN A 192.0.2.11
  AAAA 2001:db8::11
h3 A 192.0.2.12
h3 A 192.0.2.13
h4 TXT bare words
h4 TXT "second"
h5.deep.sub A 192.0.2.14
h6.example.org. A 192.0.2.15
Upper A 192.0.2.16
h7 MX 5 nowhere
h8 A 192.0.2.300
h9 TXT "semi;colon"
h10 A 192.0.2.17 ; comment
h11 MX 70000 h1
h12 A 192.0.2.18
h12 86400 TXT "other ttl"
h12 TXT "second, first ttl kept"
h13 CNAME h1
h13 A 192.0.2.19
$ORIGIN sub.example.org.
s1 A 192.0.2.20
s1 MX 10 h1.example.org.
$ORIGIN other.net.
o1 A 192.0.2.21
"""


def read(text, fast):
    zone = Zone(ORIGIN, "test.zone")
    problems = []
    parser = _Parser(zone, problems, None)
    parser.fastLines = fast
    parser.parseText(text, "test.zone", ORIGIN)
    from twisted_maillab.dns.integrity import checkZone

    checkZone(zone, problems)
    return zone, problems


def dump(zone):
    out = []
    for key in zone.nodes:
        node = zone.nodes[key]
        for rtype, rrset in node.rrsets.items():
            out.append((key, N.toText(node.name), rtype, rrset.ttl, rrset.line, rrset.path, [r.wire() for r in rrset.rdatas], [r.target for r in rrset.rdatas]))
        if not node.rrsets:
            out.append((key, N.toText(node.name), "empty"))
    return out


class FastLinesTests(unittest.TestCase):
    def setUp(self):
        self.fast, self.fastProblems = read(TEXT, True)
        self.slow, self.slowProblems = read(TEXT, False)

    def test_mostNamesCompact(self):
        """
        Plain names are kept as bytes; the apex, a name written with
        capitals, a name with two records of a type or with a CNAME are
        L{Node}s.
        """
        entries = self.fast.nodes.entries
        compact = {N.toText(NodeMapKey(k)) for k, v in entries.items() if type(v) is bytes}
        self.assertIn("h1.example.org.", compact)
        self.assertIn("h2.example.org.", compact)
        self.assertIn("h5.deep.sub.example.org.", compact)
        self.assertIn("h6.example.org.", compact)
        self.assertIn("s1.sub.example.org.", compact)
        for name in ("example.org.", "h3.example.org.", "h4.example.org.", "h12.example.org.", "h13.example.org.", "upper.example.org."):
            self.assertNotIn(name, compact)
        self.assertFalse(any(type(v) is bytes for v in self.slow.nodes.entries.values()))

    def test_sameData(self):
        """
        Names, case, TTLs, lines, rdata, empty non-terminals and order are
        those of the zone read record by record.
        """
        self.assertEqual(dump(self.fast), dump(self.slow))

    def test_sameFindings(self):
        """
        Errors and warnings (bad address, out-of-range preference, MX
        without address, TTL mismatch, CNAME and other data, out of zone)
        are the same, in the same order.
        """
        self.assertEqual(self.fastProblems, self.slowProblems)
        reasons = " ".join(p.reason for p in self.fastProblems)
        for expected in ("192.0.2.300", "70000", "nowhere", "differs", "CNAME and other data", "out-of-zone"):
            self.assertIn(expected, reasons)

    def test_sameAnswers(self):
        """
        Every name and type gets the same response bytes.
        """
        fast = Zones([self.fast])
        slow = Zones([self.slow])
        names = list(self.slow.nodes) + [parseOrigin("nothere.example.org"), parseOrigin("x.h5.deep.sub.example.org")]
        for name in names:
            for qtype in (N.A, N.AAAA, N.MX, N.TXT, N.NS, N.SOA, N.CNAME, N.ANY):
                for edns in (None, Edns(1232, 0, False)):
                    ours = encode(name, qtype, N.IN, lookup(fast, name, qtype), edns, 1232, 1232)
                    theirs = encode(name, qtype, N.IN, lookup(slow, name, qtype), edns, 1232, 1232)
                    self.assertEqual(ours, theirs, (N.toText(name), qtype))

    def test_moreLinesIntoALoadedZone(self):
        """
        C{parseText} adds to a loaded zone: to compact names (a new type
        stays compact, a second record of a type makes a L{Node}), and
        L{Zone.setSerial} changes the served SOA serial.
        """
        zone = self.fast
        _Parser(zone, [], 300).parseText("h1 AAAA 2001:db8::1\nh2 A 192.0.2.99\nnew A 192.0.2.100\n", "generated", ORIGIN)
        self.assertEqual(set(zone.nodes[N.key(parseOrigin("h1.example.org"))].rrsets), {N.A, N.TXT, N.MX, N.AAAA})
        self.assertEqual(len(zone.nodes[N.key(parseOrigin("h2.example.org"))].rrsets[N.A].rdatas), 2)
        self.assertEqual(zone.nodes[N.key(parseOrigin("new.example.org"))].rrsets[N.A].path, "generated")
        zone.setSerial(2**32 + 5)
        self.assertEqual(zone.serial, 5)
        zone.setSerial(42)
        self.assertEqual(zone.serial, 42)
        table = ResponseTable(Zones([zone]), 1232)
        table.precompute()
        response = table.build(ORIGIN, N.SOA, N.IN, None, 512)[0]
        self.assertIn((42).to_bytes(4, "big") + (3600).to_bytes(4, "big"), response)


# Lines at the edges of the one-label fast case: Windows line ends, a
# record spanning lines before plain ones (their line numbers), $TTL and
# $ORIGIN changes between plain lines, TTLs at and above 2^31-1, a
# wildcard, labels of 63 and 64 octets, TXT strings of 255 and 256
# octets, MX data with a tab or two spaces, a preference past 65535, a
# duplicate, a last line without a newline.
EDGES = (
    "$TTL 300\r\n"
    "@ SOA ns hostmaster ( 7 3600\n 600 86400 60 )\n"
    "  NS ns\n"
    "ns A 192.0.2.1\r\n"
    "e1 A 192.0.2.2\n"
    "e1 TXT ( \"spans\"\n \"lines\" )\n"
    "e2 A 192.0.2.3\n"
    "$TTL 600\n"
    "e3 A 192.0.2.4\n"
    "e4 2147483647 A 192.0.2.5\n"
    "e5 2147483648 A 192.0.2.6\n"
    "* A 192.0.2.7\n"
    + "a" * 63 + " A 192.0.2.8\n"
    + "b" * 64 + " A 192.0.2.9\n"
    "e6 TXT \"" + "x" * 255 + "\"\n"
    "e7 TXT \"" + "y" * 256 + "\"\n"
    "e8 MX 10\te1\n"
    "e9 MX 10  e1\n"
    "e10 MX 65535 e1\n"
    "e11 MX 65536 e1\n"
    "e12 MX 010 e1\n"
    "e13 MX 10 @\n"
    "e14 A 192.0.2.10\n"
    "e14 A 192.0.2.10\n"
    "e15 TXT \"\"\n"
    "\t\n"
    "; comment\n"
    "$ORIGIN sub.example.org.\n"
    "e16 A 192.0.2.11\n"
    "$ORIGIN example.org.\n"
    "e17 A 192.0.2.12\n"
    "e18 A 192.0.2.13"
)


class FastLineEdgesTests(unittest.TestCase):
    def test_sameAsRecordByRecord(self):
        """
        The lines around the edges of the fast case give the zone, the
        findings (file and line) and the answers of the record-by-record
        reader.
        """
        fast, fastProblems = read(EDGES, True)
        slow, slowProblems = read(EDGES, False)
        self.assertEqual(dump(fast), dump(slow))
        self.assertEqual(fastProblems, slowProblems)
        self.assertEqual([p.line for p in fastProblems], [13, 16, 22, 24])
        self.assertIn(N.key(parseOrigin("e18.example.org")), fast.nodes)
        compact = {N.toText(NodeMapKey(k)) for k, v in fast.nodes.entries.items() if type(v) is bytes}
        self.assertIn("e3.example.org.", compact)
        self.assertEqual(fast.nodes[N.key(parseOrigin("e3.example.org"))].rrsets[N.A].ttl, 600)
        self.assertEqual(fast.nodes[N.key(parseOrigin("e18.example.org"))].rrsets[N.A].line, 34)

    def test_longZoneWithOtherLines(self):
        """
        A zone longer than one block of matched text, with lines the
        tokenizer reads among the plain ones (an alias, a record over two
        lines, a comment, a bad address), some across the blocks' ends,
        reads as record by record, with the same line numbers.
        """
        lines = ["$TTL 300", "@ SOA ns hostmaster 7 3600 600 86400 60", "  NS ns", "ns A 192.0.2.1"]
        lines += ["deleg NS ns.deleg", "ns.deleg A 192.0.2.50"]
        for i in range(6000):
            lines.append(f"n{i} A 10.0.{i >> 8}.{i & 255}")
            if i % 5 == 0:
                # To the next name, to one below the cut, to none.
                lines.append(f"n{i} MX 10 " + ("ns.deleg" if i % 15 == 0 else "missing" if i % 25 == 0 else f"n{i + 1}"))
            if i % 7 == 0:
                lines.append(f"c{i} CNAME n{i}")
            if i % 11 == 0:
                lines.append(f"n{i} TXT ( \"a\"\n  \"b\" )")
            if i % 13 == 0:
                lines.append(f"; {i}")
            if i % 997 == 0:
                lines.append(f"bad{i} A 10.0.0.256")
        text = "\n".join(lines) + "\n"
        self.assertGreater(len(text), 2 * 65536)
        fast, fastProblems = read(text, True)
        slow, slowProblems = read(text, False)
        self.assertEqual(dump(fast), dump(slow))
        self.assertEqual(fastProblems, slowProblems)
        self.assertEqual(len([p for p in fastProblems if p.severity == "error"]), 7)
        self.assertTrue(any("missing" in p.reason for p in fastProblems))


def NodeMapKey(wireKey):
    from twisted_maillab.dns.compact import wireToName

    return wireToName(wireKey)


class NodeMapTests(unittest.TestCase):
    def test_mapping(self):
        """
        A L{NodeMap} answers C{in}, C{[]}, C{get}, C{len} and iteration
        with name tuples, whatever a name is kept as.
        """
        zone, _ = read(TEXT, True)
        nodes = zone.nodes
        self.assertIsInstance(nodes, NodeMap)
        key = N.key(parseOrigin("h1.example.org"))
        self.assertIn(key, nodes)
        self.assertNotIn(N.key(parseOrigin("nothere.example.org")), nodes)
        self.assertIsNone(nodes.get(N.key(parseOrigin("nothere.example.org"))))
        self.assertEqual(nodes[key].name, key)
        self.assertEqual(len(list(nodes)), len(nodes))
        self.assertEqual(dict(nodes.items()).keys(), set(nodes))
        self.assertEqual(nodes.typesAt(key), [N.A, N.TXT, N.MX])
        self.assertIsNone(nodes.typesAt(N.key(parseOrigin("nothere.example.org"))))
        # Empty non-terminals above a compact name.
        self.assertEqual(nodes[N.key(parseOrigin("deep.sub.example.org"))].rrsets, {})
        nodes.release()
        self.assertEqual(len(nodes), 0)
