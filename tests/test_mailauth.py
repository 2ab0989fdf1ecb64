"""
Mail authentication units: DKIM keys (generation, rotation, modes),
signing and verification with dkimpy against the published records,
SPF/DKIM/DMARC checks over a fake DNS, the Authentication-Results field,
the published records, DMARC aggregate reports and the config keys.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import threading
import zipfile
from pathlib import Path

import authres
import authres.dmarc  # noqa: F401
import dkim
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from twisted.internet import defer
from twisted.trial import unittest

from twisted_maillab.config import ConfigError, loadString
from twisted_maillab.console import mailauth as console
from twisted_maillab.mailauth import checks, dmarc
from twisted_maillab.mailauth.keys import KeyStore
from twisted_maillab.mailauth.lookup import Lookup, TempError
from twisted_maillab.mailauth.publish import MailAuthPublisher, txtData
from twisted_maillab.mailauth.reports import parseReport, reportsIn
from twisted_maillab.mailauth.signing import Signer


class FakeLookup(Lookup):
    """
    L{Lookup} answering from a table: C{{(name, type): [rdata text]}};
    names in C{failing} time out.
    """

    def __init__(self, records=None, failing=()):
        self.records = {}
        self.failing = set(failing)
        self.timeout = 5.0
        self.queries = []
        for (name, rdtype), values in (records or {}).items():
            self.add(name, rdtype, *values)

    def add(self, name, rdtype, *values):
        self.records.setdefault((name.lower().rstrip("."), rdtype), []).extend(
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), v) for v in values
        )

    def query(self, name, rdtype):
        name = name.lower().rstrip(".")
        self.queries.append((name, rdtype))
        if name in self.failing:
            raise TempError(f"{rdtype} {name}: timed out")
        return list(self.records.get((name, rdtype), []))


def publishTo(lookup: FakeLookup, lines, origin="first.test."):
    """
    Add the master-file lines a publisher made to a FakeLookup (absolute
    owners, as MailAuthPublisher writes them).
    """
    for line in lines:
        owner, rest = line.split(None, 1)
        parts = rest.split(None, 3) if rest.split()[0].isdigit() else ["0"] + rest.split(None, 2)
        _, _, rdtype, data = parts
        lookup.add(owner if owner.endswith(".") else owner + "." + origin, rdtype, data)


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def configFor(base: Path, extra: str = "", mailauth: str = "") -> object:
    text = (
        f"[server]\nhostname = mx.first.test\ndomain = first.test\nstate_directory = {base}\n"
        f"[dns]\npublish_mail_records = yes\n{extra}\n[mailauth]\n{mailauth}\n"
    )
    return loadString(text, base / "maillab.ini")


MESSAGE = (
    b"From: Alice <alice@first.test>\n"
    b"To: bob@second.test\n"
    b"Subject: hello\n"
    b"Date: Wed, 02 Dec 2026 23:00:00 +0000\n"
    b"Message-ID: <1@first.test>\n"
    b"\n"
    b"Hello Bob.\n"
)


class KeyStoreTests(unittest.TestCase):
    def setUp(self):
        self.base = Path(self.mktemp())
        self.clock = Clock()
        self.store = KeyStore(self.base / "dkim", ttl=3600, grace=86400, now=self.clock)

    def test_firstKeysAre0600AndIdempotent(self):
        """
        The first ensure makes an rsa and an ed25519 key, files 0600 in a
        0700 directory; a second ensure returns the same generation.
        """
        first = self.store.ensure("First.Test")
        self.assertEqual(self.store.ensure("first.test"), first)
        self.assertEqual(len(self.store.generations("first.test")), 1)
        directory = self.base / "dkim" / "first.test"
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        for selector in first.selectors():
            for suffix in (".key", ".pub"):
                self.assertEqual(stat.S_IMODE(os.stat(directory / (selector + suffix)).st_mode), 0o600)
        keys = self.store.keys("first.test", first)
        self.assertEqual([k.keyType for k in keys], ["rsa", "ed25519"])
        self.assertTrue(keys[0].private.startswith(b"-----BEGIN RSA PRIVATE KEY-----"))
        # RSA 2048: a DER SubjectPublicKeyInfo of 294 octets.
        import base64

        self.assertEqual(len(base64.b64decode(keys[0].public)), 294)
        self.assertEqual(len(base64.b64decode(keys[1].public)), 32)

    def test_concurrentEnsureMakesOneGeneration(self):
        """
        Threads asking at once (the DNS publisher and the SMTP service)
        get one generation between them.
        """
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.store.ensure("first.test"))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(set(results)), 1)
        self.assertEqual(len(self.store.generations("first.test")), 1)

    def test_rotateRetiresAndExpires(self):
        """
        A rotation signs with the new generation; the old one is published
        until TTL + grace, then expires.
        """
        old = self.store.ensure("first.test")
        self.clock.now += 86400 * 2
        new = self.store.rotate("first.test")
        self.assertNotEqual(old.name, new.name)
        [retired, signing] = self.store.generations("first.test")
        self.assertEqual((self.store.state(retired), self.store.state(signing)), ("retired", "signing"))
        self.assertEqual(self.store.publishedUntil(retired), self.clock.now + 3600 + 86400)
        self.assertEqual([k.selector for k in self.store.signingKeys("first.test")], new.selectors())
        self.assertEqual(len(self.store.publishedKeys("first.test")), 4)
        self.clock.now += 3600 + 86400
        self.assertEqual(self.store.state(self.store.generations("first.test")[0]), "expired")
        self.assertEqual([k.selector for k in self.store.publishedKeys("first.test")], new.selectors())

    def test_twoRotationsInADay(self):
        self.store.ensure("first.test")
        second = self.store.rotate("first.test")
        third = self.store.rotate("first.test")
        self.assertEqual(len({g.name for g in self.store.generations("first.test")}), 3)
        self.assertNotEqual(second.name, third.name)

    def test_badDomain(self):
        self.assertRaises(ValueError, self.store.ensure, "../etc")


class SigningTests(unittest.TestCase):
    def setUp(self):
        self.base = Path(self.mktemp())
        self.base.mkdir()
        self.config = configFor(self.base)
        self.lookup = FakeLookup()
        self.publisher = MailAuthPublisher()

    def publish(self):
        self.lookup.records.clear()
        publishTo(self.lookup, self.publisher.records(self.config, "first.test."))

    def signer(self):
        from twisted_maillab.mailauth.factory import makeSigner

        return makeSigner(self.config)

    def test_signAndVerifyBothAlgorithms(self):
        """
        A message from our domain gets an rsa-sha256 and an ed25519-sha256
        signature that dkimpy verifies with the published keys.
        """
        path = self.base / "m.eml"
        path.write_bytes(b"Received: from x by y; Wed, 02 Dec 2026 23:00:00 +0000\n" + MESSAGE)
        added = self.signer().signFile(path)
        self.assertEqual(added.count(b"DKIM-Signature:"), 2)
        signed = path.read_bytes()
        self.assertTrue(signed.startswith(added))
        self.assertIn(b"a=rsa-sha256", added)
        self.assertIn(b"a=ed25519-sha256", added)
        self.publish()
        results = checks.checkDKIM(self.lookup, signed, 5)
        self.assertEqual([(r.result, r.domain, r.algorithm) for r in results], [
            ("pass", "first.test", "rsa-sha256"), ("pass", "first.test", "ed25519-sha256")])
        # Line ends as sent on the wire verify too.
        wire = signed.replace(b"\n", b"\r\n")
        self.assertTrue(dkim.verify(wire, dnsfunc=self.lookup.dkimTXT))

    def test_rsaSignIsDkimpys(self):
        """
        The OpenSSL signature given to dkimpy is octet for octet the one
        dkimpy's own code computes (RSASSA-PKCS1-v1_5 is deterministic).
        """
        import hashlib

        import dkim.crypto

        from twisted_maillab.mailauth.signing import rsaSign

        [rsa, _] = self.signer().keys.signingKeys("first.test")
        key = dkim.crypto.parse_pem_private_key(rsa.private)
        for name in ("sha256", "sha1"):
            digest = hashlib.new(name, b"a message")
            self.assertEqual(rsaSign(digest.copy(), key), dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest.copy(), key))

    def test_changedBodyFails(self):
        path = self.base / "m.eml"
        path.write_bytes(MESSAGE)
        self.signer().signFile(path)
        self.publish()
        tampered = path.read_bytes().replace(b"Hello Bob.", b"Hello Eve.")
        self.assertEqual([r.result for r in checks.checkDKIM(self.lookup, tampered, 5)], ["fail", "fail"])

    def test_subdomainSignsWithParent(self):
        """
        MAILER-DAEMON@mx.first.test (our bounces) is signed with d=first.test.
        """
        path = self.base / "m.eml"
        path.write_bytes(MESSAGE.replace(b"alice@first.test", b"MAILER-DAEMON@mx.first.test"))
        self.assertIn(b"d=first.test;", self.signer().signFile(path).replace(b"\n\t", b" ").replace(b" ", b""))

    def test_foreignFromNotSigned(self):
        path = self.base / "m.eml"
        original = MESSAGE.replace(b"alice@first.test", b"eve@elsewhere.test")
        path.write_bytes(original)
        self.assertEqual(self.signer().signFile(path), b"")
        self.assertEqual(path.read_bytes(), original)

    def test_rotationKeepsOldSignaturesVerifiable(self):
        """
        Mail signed before a rotation verifies while the retired keys are
        published; mail signed after uses the new selectors.
        """
        from twisted_maillab.mailauth.publish import keyStore

        signer = self.signer()
        before = self.base / "before.eml"
        before.write_bytes(MESSAGE)
        oldFields = signer.signFile(before)
        keyStore(self.config).rotate("first.test")
        after = self.base / "after.eml"
        after.write_bytes(MESSAGE)
        newFields = signer.signFile(after)
        self.assertEqual((oldFields.count(b"DKIM-Signature:"), newFields.count(b"DKIM-Signature:")), (2, 2))
        self.publish()
        for path in (before, after):
            self.assertEqual([r.result for r in checks.checkDKIM(self.lookup, path.read_bytes(), 5)], ["pass", "pass"])
        oldSelectors = {r.selector for r in checks.checkDKIM(self.lookup, before.read_bytes(), 5)}
        newSelectors = {r.selector for r in checks.checkDKIM(self.lookup, after.read_bytes(), 5)}
        self.assertFalse(oldSelectors & newSelectors)


class PublisherTests(unittest.TestCase):
    def test_records(self):
        """
        Keys at <selector>._domainkey, SPF and DMARC for each of our domains
        inside the zone; nothing for another zone.
        """
        base = Path(self.mktemp())
        base.mkdir()
        config = configFor(base, mailauth="dkim_domains = first.test sub.first.test other.test\n")
        lines = MailAuthPublisher().records(config, "first.test.")
        owners = [line.split()[0] for line in lines]
        self.assertEqual(sum(o.endswith("._domainkey.first.test.") for o in owners), 2)
        self.assertEqual(sum(o.endswith("._domainkey.sub.first.test.") for o in owners), 2)
        self.assertIn('first.test. IN TXT "v=spf1 mx -all"', lines)
        self.assertIn('_dmarc.first.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@first.test"', lines)
        self.assertFalse([o for o in owners if "other.test" in o])
        self.assertEqual(MailAuthPublisher().records(config, "unrelated.test."), [])
        rsa = [line for line in lines if "k=rsa" in line][0]
        self.assertIn(" 3600 IN TXT ", rsa)
        # An RSA 2048 record is longer than 255 octets: two strings.
        self.assertEqual(rsa.count('"'), 4)

    def test_noneAndUnsigned(self):
        base = Path(self.mktemp())
        base.mkdir()
        config = configFor(base, mailauth="spf_record = none\ndmarc_record = none\n")
        self.assertEqual(len(MailAuthPublisher().records(config, "first.test.")), 2)
        config = configFor(base, mailauth="dkim_sign = no\n")
        self.assertEqual([line.split()[0] for line in MailAuthPublisher().records(config, "first.test.")],
                         ["first.test.", "_dmarc.first.test."])

    def test_txtData(self):
        self.assertEqual(txtData("a" * 300), '"' + "a" * 255 + '" "' + "a" * 45 + '"')
        self.assertEqual(txtData('say "hi"'), '"say \\"hi\\""')

    def test_zoneLoad(self):
        """
        Through the seam: the zone served holds the records, the TXT
        strings joined back give the key record.
        """
        from twisted_maillab.dns.published import PublishingZoneSource
        from twisted_maillab.dns.service import FileZoneSource

        base = Path(self.mktemp()).resolve()
        base.mkdir()
        zone = base / "first.test.zone"
        zone.write_text(
            "$ORIGIN first.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
            "@ IN NS ns\nns IN A 127.0.0.1\n@ IN MX 10 mx\nmx IN A 127.0.0.1\n"
        )
        config = configFor(base, extra=f"zones = first.test:{zone}\n")
        source = PublishingZoneSource(FileZoneSource(config.dns.zones), config, [MailAuthPublisher()])
        [loaded] = source.load()
        from twisted_maillab.dns.answer import lookup as answer

        selector = KeyStore(base / "dkim").generations("first.test")[0].selectors()[0]
        name = tuple(label.encode() for label in f"{selector}._domainkey.first.test".split("."))
        from twisted_maillab.dns.answer import Zones

        result = answer(Zones([loaded]), name, 16)
        [(owner, rrset)] = result.answer
        self.assertEqual(rrset.ttl, 3600)
        [rdata] = rrset.rdatas
        # Two character-strings (RFC 1035 3.3.14: 255 octets each): the
        # wire form holds their lengths, the key record follows.
        wire = rdata.canonical()
        self.assertEqual(wire[0], 255)
        self.assertTrue(wire[1:].startswith(b"v=DKIM1; k=rsa; p=MIIB"))


class SPFTests(unittest.TestCase):
    def lookup(self):
        return FakeLookup({
            ("first.test", "TXT"): ['"v=spf1 mx include:inc.test -all"'],
            ("first.test", "MX"): ["10 mx.first.test."],
            ("mx.first.test", "A"): ["127.0.0.1"],
            ("inc.test", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 ~all"'],
        })

    def test_results(self):
        from twisted_maillab.mailauth.spf import checkSPF

        lookup = self.lookup()
        self.assertEqual(checkSPF(lookup, "127.0.0.1", "a@first.test", "mx.first.test", "r")[:2], ("pass", "mailfrom"))
        self.assertEqual(checkSPF(lookup, "::ffff:192.0.2.9", "a@first.test", "h", "r")[0], "pass")
        self.assertEqual(checkSPF(lookup, "127.0.0.2", "a@first.test", "h", "r")[0], "fail")
        self.assertEqual(checkSPF(lookup, "127.0.0.2", "a@none.test", "h", "r")[0], "none")
        # The null sender: the HELO identity.
        self.assertEqual(checkSPF(lookup, "127.0.0.1", "", "first.test", "r")[:2], ("pass", "helo"))

    def test_tempError(self):
        from twisted_maillab.mailauth.spf import checkSPF

        lookup = self.lookup()
        lookup.failing.add("first.test")
        self.assertEqual(checkSPF(lookup, "127.0.0.1", "a@first.test", "h", "r")[0], "temperror")

    def test_lookupLimit(self):
        """
        RFC 7208 4.6.4: more than 10 DNS-querying terms is a permerror.
        """
        from twisted_maillab.mailauth.spf import checkSPF

        lookup = FakeLookup({("loop.test", "TXT"): ['"v=spf1 ' + " ".join(f"a:h{i}.test" for i in range(12)) + ' -all"']})
        for i in range(12):
            lookup.add(f"h{i}.test", "A", "192.0.2.1")
        self.assertEqual(checkSPF(lookup, "127.0.0.9", "a@loop.test", "h", "r")[0], "permerror")


class DMARCTests(unittest.TestCase):
    def test_parseRecord(self):
        self.assertEqual(dmarc.parseRecord("v=DMARC1; p=reject; pct=50")["pct"], "50")
        self.assertIsNone(dmarc.parseRecord("v=spf1 -all"))
        self.assertIsNone(dmarc.parseRecord("p=reject; v=DMARC1"))

    def test_evaluate(self):
        lookup = FakeLookup({
            ("_dmarc.first.test", "TXT"): ['"v=DMARC1; p=reject; sp=quarantine"'],
            ("_dmarc.strict.test", "TXT"): ['"v=DMARC1; p=quarantine; adkim=s; aspf=s"'],
        })
        ev = dmarc.evaluate
        self.assertEqual(ev(lookup, "first.test", "pass", "first.test", []).result, "pass")
        # Relaxed: a subdomain's SPF or DKIM aligns with the organization.
        self.assertEqual(ev(lookup, "first.test", "fail", "x.test", ["mail.first.test"]).result, "pass")
        failed = ev(lookup, "first.test", "fail", "first.test", ["other.test"])
        self.assertEqual((failed.result, failed.policy, failed.disposition), ("fail", "reject", "reject"))
        # A subdomain without its own record: the organization's sp=.
        sub = ev(lookup, "news.first.test", "none", "", [])
        self.assertEqual((sub.result, sub.policy), ("fail", "quarantine"))
        self.assertEqual(ev(lookup, "strict.test", "pass", "mail.strict.test", []).result, "fail")
        self.assertEqual(ev(lookup, "none.test", "fail", "none.test", []).result, "none")
        lookup.failing.add("_dmarc.first.test")
        self.assertEqual(ev(lookup, "first.test", "pass", "first.test", []).result, "temperror")

    def test_pct(self):
        lookup = FakeLookup({("_dmarc.first.test", "TXT"): ['"v=DMARC1; p=reject; pct=10"']})
        inside = dmarc.evaluate(lookup, "first.test", "fail", "first.test", [], sample=lambda: 0.05)
        outside = dmarc.evaluate(lookup, "first.test", "fail", "first.test", [], sample=lambda: 0.5)
        self.assertEqual((inside.disposition, outside.disposition), ("reject", "quarantine"))


class ChecksTests(unittest.TestCase):
    """
    checkMessage's decisions and the Authentication-Results field.
    """

    def setUp(self):
        base = Path(self.mktemp())
        base.mkdir()
        self.config = configFor(base)
        self.lookup = FakeLookup({
            ("first.test", "MX"): ["10 mx.first.test."],
            ("mx.first.test", "A"): ["127.0.0.1"],
        })
        publishTo(self.lookup, MailAuthPublisher().records(self.config, "first.test."))
        from twisted_maillab.mailauth.factory import makeSigner

        path = base / "m.eml"
        path.write_bytes(MESSAGE)
        makeSigner(self.config).signFile(path)
        self.signed = path.read_bytes()

    def check(self, message, ip="127.0.0.1", sender="alice@first.test", settings=None):
        return checks.checkMessage(self.lookup, message, ip, "mx.first.test", sender, "mx.second.test",
                                   settings or self.config.mailauth)

    def test_allPass(self):
        results = self.check(self.signed)
        self.assertEqual((results.spf, [d.result for d in results.dkim], results.dmarc.result, results.action),
                         ("pass", ["pass", "pass"], "pass", "accept"))
        field = checks.resultsField("mx.second.test", results).decode()
        self.assertTrue(field.startswith("Authentication-Results: mx.second.test;\n\tspf=pass smtp.mailfrom=alice@first.test;"))
        parsed = authres.AuthenticationResultsHeader.parse(field.replace("\n\t", " ").strip())
        self.assertEqual(parsed.authserv_id, "mx.second.test")
        self.assertEqual([(r.method, r.result) for r in parsed.results],
                         [("spf", "pass"), ("dkim", "pass"), ("dkim", "pass"), ("dmarc", "pass")])
        self.assertIn("header.from=first.test", field)
        self.assertIn("header.d=first.test", field)

    def test_forgedQuarantine(self):
        """
        Unsigned, from an address the SPF record does not list: DMARC
        fails; p=quarantine (the default record) means Junk.
        """
        results = self.check(MESSAGE, ip="127.0.0.2")
        self.assertEqual((results.spf, results.dkim, results.dmarc.result, results.dmarc.policy, results.action),
                         ("fail", [], "fail", "quarantine", "junk"))
        field = checks.resultsField("mx.second.test", results).decode()
        self.assertIn("dkim=none", field)
        self.assertIn("dmarc=fail (p=QUARANTINE dis=QUARANTINE) header.from=first.test", field)

    def test_actions(self):
        import dataclasses

        settings = dataclasses.replace(self.config.mailauth, dmarc_quarantine_action="reject")
        self.assertEqual(self.check(MESSAGE, ip="127.0.0.2", settings=settings).action, "reject")
        settings = dataclasses.replace(self.config.mailauth, dmarc_quarantine_action="record")
        self.assertEqual(self.check(MESSAGE, ip="127.0.0.2", settings=settings).action, "accept")
        # SPF alone never rejects by default...
        other = MESSAGE.replace(b"alice@first.test", b"carol@nodmarc.test")
        self.assertEqual(self.check(other, ip="127.0.0.2").action, "accept")
        # ...unless asked.
        settings = dataclasses.replace(self.config.mailauth, spf_fail_action="reject")
        self.assertEqual(self.check(other, ip="127.0.0.2", settings=settings).action, "reject")

    def test_dnsFailureIsTemperror(self):
        self.lookup.failing.update({"first.test", "_dmarc.first.test"})
        self.lookup.failing.update(name for name, _ in list(self.lookup.records) if "_domainkey" in name)
        results = self.check(self.signed)
        self.assertEqual((results.spf, [d.result for d in results.dkim], results.dmarc.result, results.action),
                         ("temperror", ["temperror", "temperror"], "temperror", "accept"))

    def test_signaturesBounded(self):
        """
        Past MAX_SIGNATURES, signatures are not looked up: policy.
        """
        first = self.signed.split(b"DKIM-Signature:")[1]
        many = b"".join(b"DKIM-Signature:" + first for _ in range(checks.MAX_SIGNATURES + 2)) + MESSAGE
        results = checks.checkDKIM(self.lookup, many, 5)
        self.assertEqual([r.result for r in results], ["pass"] * checks.MAX_SIGNATURES + ["policy", "policy"])

    def test_malformedMessages(self):
        """
        Headers dkimpy cannot parse: a signature in them is a permerror,
        none is none; the field is still made.
        """
        for message, expected in (
            (b" leading continuation\nFrom: a@first.test\n\nx", []),
            (b"DKIM-Signature: v=1;\n.bad line\n\nx", ["permerror"]),
            (b"\xff\xfe\x00garbage", []),
            (b"", []),
        ):
            results = self.check(message)
            self.assertEqual([d.result for d in results.dkim], expected, message)
            self.assertTrue(checks.resultsField("mx.second.test", results).startswith(b"Authentication-Results: "))

    def test_stripOurResults(self):
        header = (
            b"Authentication-Results: mx.second.test; dkim=pass\n\theader.d=first.test\n"
            b"Authentication-Results: (comment) MX.Second.Test; spf=pass\n"
            b"Authentication-Results: other.example; spf=pass\n"
            b"Subject: x"
        )
        self.assertEqual(checks.stripOurResults(header, "mx.second.test"),
                         b"Authentication-Results: other.example; spf=pass\nSubject: x")


REPORT = b"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>example.net</org_name><email>r@example.net</email>
    <report_id>42</report_id><date_range><begin>1764633600</begin><end>1764720000</end></date_range>
  </report_metadata>
  <policy_published><domain>first.test</domain><p>quarantine</p><pct>100</pct></policy_published>
  <record><row><source_ip>127.0.0.1</source_ip><count>3</count>
    <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>first.test</header_from></identifiers></record>
  <record><row><source_ip>192.0.2.66</source_ip><count>2</count>
    <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>first.test</header_from></identifiers></record>
</feedback>
"""


class ReportTests(unittest.TestCase):
    def test_parse(self):
        report = parseReport(REPORT)
        self.assertEqual((report.org, report.reportId, report.domain, report.policy, report.total()),
                         ("example.net", "42", "first.test", "quarantine", 5))
        self.assertEqual([(r.source, r.count, r.disposition) for r in report.records],
                         [("127.0.0.1", 3, "none"), ("192.0.2.66", 2, "quarantine")])
        self.assertRaises(ValueError, parseReport, b"<html/>")
        self.assertRaises(ValueError, parseReport, b'<!DOCTYPE x [<!ENTITY a "b">]><feedback/>')

    def test_filesAndMaildir(self):
        """
        .xml, .gz, .zip files and a Maildir whose message has the report
        attached; a file that is not a report is named, not fatal.
        """
        from email.message import EmailMessage

        base = Path(self.mktemp())
        base.mkdir()
        (base / "r.xml").write_bytes(REPORT)
        (base / "r.xml.gz").write_bytes(gzip.compress(REPORT))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("r.xml", REPORT)
        (base / "r.zip").write_bytes(buffer.getvalue())
        (base / "junk.txt").write_bytes(b"not a report")
        maildir = base / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        message = EmailMessage()
        message["From"] = "noreply-dmarc@example.net"
        message["Subject"] = "Report Domain: first.test"
        message.set_content("report attached")
        message.add_attachment(gzip.compress(REPORT), maintype="application", subtype="gzip", filename="example.net!first.test!1!2.xml.gz")
        (maildir / "new" / "1.host").write_bytes(message.as_bytes())
        reports, problems = reportsIn([base / "r.xml", base / "r.xml.gz", base / "r.zip", maildir, base / "junk.txt"])
        self.assertEqual([r.total() for r in reports], [5, 5, 5, 5])
        self.assertEqual(len(problems), 0, problems)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(console.dmarc(["report", str(base / "r.xml"), str(maildir)], out, err), 0)
        self.assertIn("example.net report 42 for first.test (p=quarantine)", out.getvalue())
        self.assertIn("2 reports, 10 messages, 6 passed DMARC, 4 failed", out.getvalue())
        self.assertEqual(console.dmarc(["report", str(base / "missing.xml")], out, err), 1)
        self.assertIn("missing.xml", err.getvalue())


class ConsoleTests(unittest.TestCase):
    def test_showAndRotate(self):
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        (base / "maillab.ini").write_text(f"[server]\ndomain = first.test\nstate_directory = {base}\n")
        config = ["--config", str(base / "maillab.ini")]
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(console.dkim(["rotate", "--no-reload", "first.test"] + config, out, err), 0, err.getvalue())
        self.assertEqual(console.dkim(["rotate", "--no-reload", "first.test"] + config, out, err), 0)
        out = io.StringIO()
        self.assertEqual(console.dkim(["show", "--json"] + config, out, err), 0)
        import json

        rows = json.loads(out.getvalue())
        self.assertEqual(sorted(r["state"] for r in rows), ["retired", "retired", "signing", "signing"])
        self.assertEqual({r["algorithm"] for r in rows}, {"rsa-sha256", "ed25519-sha256"})
        err = io.StringIO()
        self.assertEqual(console.dkim(["rotate", "--no-reload", "other.test"] + config, io.StringIO(), err), 1)
        self.assertIn("not one of [mailauth] dkim_domains", err.getvalue())


class SeamTests(unittest.TestCase):
    def test_declaredInterfaces(self):
        """
        The publisher is an IRecordPublisher, the held delivery an
        IDeliveryTransaction (what the SMTP delivery writes to).
        """
        from zope.interface.verify import verifyObject

        from twisted_maillab.interfaces import IDeliveryTransaction, IRecordPublisher
        from twisted_maillab.mailauth.inbound import CheckedDelivery, InboundAuth

        verifyObject(IRecordPublisher, MailAuthPublisher())
        base = Path(self.mktemp())
        base.mkdir()
        auth = InboundAuth(FakeLookup(), configFor(base).mailauth, None, defer.maybeDeferred, "mx.first.test", "Junk", temporary=base)
        delivery = CheckedDelivery(auth, None, None)
        verifyObject(IDeliveryTransaction, delivery)
        delivery.abort()


class ConfigTests(unittest.TestCase):
    def test_resolvers(self):
        config = loadString("[smtp]\nresolvers = 127.0.0.1:10053 [::1]:5353 192.0.2.1\n")
        self.assertEqual(config.smtp.resolvers, (("127.0.0.1", 10053), ("::1", 5353), ("192.0.2.1", 53)))
        for bad, reason in (("ns.example:53", "is not an IP address"), ("127.0.0.1:99999", "is not a port")):
            with self.assertRaises(ConfigError) as e:
                loadString(f"[smtp]\nresolvers = {bad}\n", "x.ini")
            self.assertIn("x.ini [smtp] resolvers:", str(e.exception))
            self.assertIn(reason, str(e.exception))
            self.assertIn("(line 2)", str(e.exception))

    def test_mailauthChecks(self):
        for text, key in (
            ("dmarc_reject_action = bounce", "dmarc_reject_action"),
            ("spf_record = mx -all", "spf_record"),
            ("dmarc_record = p=reject", "dmarc_record"),
            ("dns_timeout = 0", "dns_timeout"),
        ):
            with self.assertRaises(ConfigError) as e:
                loadString(f"[mailauth]\n{text}\n", "x.ini")
            self.assertIn(f"[mailauth] {key}", str(e.exception))
