"""
The lab's DNS as the neighbour sees it: the seed's queries give the
seed's answers, and the seed's zone text is refused by C{maillab
checkzone} with its two defects named by line while the corrected zone is
served.
"""

from __future__ import annotations

import subprocess

from twisted.trial import unittest

from tests.e2e.lab import DOMAIN, MAILLAB, SEED_ZONE, Lab


class SeedQueriesTests(unittest.TestCase):
    def test_seedAnswers(self):
        """
        The queries of the seed's capture, from the neighbour through its
        resolv.conf: MX of the domain, MX/A/AAAA of the alias C{smtp}
        (answered through the CNAME, with the SOA when the target has no
        such record), AAAA of C{serveur}.
        """
        lab = Lab(self)
        a = lab.address.replace(".", r"\.")
        self.assertRegex(lab.dig("MX", DOMAIN), r"(?m)^domaineel\.rt\.\s+604800\s+IN\s+MX\s+10 smtp\.domaineel\.rt\.$")
        answer = lab.dig("MX", "smtp.domaineel.rt")
        self.assertIn("status: NOERROR", answer)
        self.assertRegex(answer, r"(?m)^smtp\.domaineel\.rt\.\s+604800\s+IN\s+CNAME\s+serveur\.domaineel\.rt\.$")
        self.assertRegex(answer, r"(?ms)AUTHORITY SECTION:\ndomaineel\.rt\.\s+\d+\s+IN\s+SOA\s+serveur\.domaineel\.rt\. root\.domaineel\.rt\. 4 ")
        answer = lab.dig("A", "smtp.domaineel.rt")
        self.assertRegex(answer, r"(?m)^smtp\.domaineel\.rt\.\s+604800\s+IN\s+CNAME\s+serveur\.domaineel\.rt\.$")
        self.assertRegex(answer, rf"(?m)^serveur\.domaineel\.rt\.\s+604800\s+IN\s+A\s+{a}$")
        self.assertIn("flags: qr aa", answer)
        for name in ("smtp.domaineel.rt", "serveur.domaineel.rt"):
            answer = lab.dig("AAAA", name)
            self.assertIn("status: NOERROR", answer)
            self.assertRegex(answer, r"(?m)^domaineel\.rt\.\s+\d+\s+IN\s+SOA\s+serveur\.domaineel\.rt\.")
            self.assertNotRegex(answer, r"(?m)^[^;].*\sIN\s+AAAA\s")
        self.assertRegex(lab.dig("NS", DOMAIN), r"(?m)^domaineel\.rt\.\s+604800\s+IN\s+NS\s+serveur\.domaineel\.rt\.$")
        # The delegation of "sous" as written: a referral, not an answer.
        answer = lab.dig("A", "www.sous.domaineel.rt")
        self.assertRegex(answer, r"(?m)^sous\.domaineel\.rt\.\s+604800\s+IN\s+NS\s+serveurdeux\.domaineel\.rt\.$")
        self.assertNotIn("flags: qr aa", answer)


class CheckzoneTests(unittest.TestCase):
    def checkzone(self, path):
        return subprocess.run([MAILLAB, "checkzone", DOMAIN, str(path)], capture_output=True, text=True, timeout=60)

    def test_seedZoneRefused(self):
        """
        The zone exactly as the lab wrote it is refused, naming the SOA
        without an RNAME (line 2) and the C{#} comments (lines 14 and 15).
        """
        result = self.checkzone(SEED_ZONE)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertRegex(output, r"(?m)^.*:2\b.*(RNAME|rname|SOA).*$")
        self.assertRegex(output, r"(?m)^.*:14\b.*'#'.*$")
        self.assertRegex(output, r"(?m)^.*:15\b.*'#'.*$")

    def test_correctedZoneServed(self):
        """
        The seed's zone with the two corrections passes checkzone and is
        the zone the lab's server answers from.
        """
        lab = Lab(self)
        result = self.checkzone(lab.root / "zone")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        a = lab.address.replace(".", r"\.")
        self.assertRegex(lab.dig("A", "serveur.domaineel.rt"), rf"(?m)^serveur\.domaineel\.rt\.\s+604800\s+IN\s+A\s+{a}$")
