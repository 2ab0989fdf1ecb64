"""
The saved form of parsed zones (L{twisted_maillab.dns.zonecache}): read
back while the files are unchanged, never when any of them changed.
"""

from __future__ import annotations

import os
import pickle

from twisted.trial import unittest

from twisted_maillab.dns import names as N
from twisted_maillab.dns import zonecache
from twisted_maillab.dns.answer import Zones, lookup
from twisted_maillab.dns.service import FileZoneSource, loadZones
from twisted_maillab.dns.wire import encode
from twisted_maillab.dns.zone import ZoneError, loadZone, parseOrigin

ORIGIN = "example.org"

ZONE = """$TTL 300
@ SOA ns hostmaster {serial} 3600 600 86400 60
  NS ns
ns A 192.0.2.1
sub NS ns.sub
mail A 192.0.2.2
@ MX 10 mail
h1 A 192.0.2.10
h1 TXT "one"
h2 MX 10 nowhere
$INCLUDE more.zone
"""

MORE = "h3 A 192.0.2.30\n"


class ZoneCacheTests(unittest.TestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.cache = os.path.join(self.directory, "cache")
        self.path = os.path.join(self.directory, "example.org.zone")
        self.write(self.path, ZONE.format(serial=1))
        self.write(os.path.join(self.directory, "more.zone"), MORE)
        self.origin = parseOrigin(ORIGIN)

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def load(self):
        return loadZones([(ORIGIN, self.path)], self.cache)[0]

    def saved(self):
        return zonecache.load(self.cache, self.path, self.origin)

    def answer(self, zone, name, qtype):
        qname = parseOrigin(name)
        return encode(qname, qtype, N.IN, lookup(Zones([zone]), qname, qtype), None, 1232, 512)

    def test_savedAndReadBack(self):
        """
        The first load parses and saves; the next reads the saved zone,
        which answers, warns and delegates as the parsed one.
        """
        self.assertIsNone(self.saved())
        parsed = self.load()
        self.assertTrue(os.path.exists(zonecache.cachePath(self.cache, self.origin, self.path)))
        self.assertEqual(os.stat(zonecache.cachePath(self.cache, self.origin, self.path)).st_mode & 0o777, 0o600)
        saved = self.saved()
        self.assertIsNotNone(saved)
        self.assertEqual(saved.serial, 1)
        self.assertEqual(saved.warnings, parsed.warnings)
        self.assertIn("nowhere", " ".join(str(w) for w in saved.warnings))
        self.assertEqual(saved.cuts, {N.key(parseOrigin("sub.example.org"))})
        for name in ("example.org", "h1.example.org", "h2.example.org", "h3.example.org", "x.sub.example.org", "nothere.example.org"):
            for qtype in (N.A, N.MX, N.TXT, N.SOA, N.NS):
                self.assertEqual(self.answer(saved, name, qtype), self.answer(parsed, name, qtype))
        self.assertEqual([n for n in saved.nodes], [n for n in parsed.nodes])

    def test_editedFileNotServedStale(self):
        """
        An edit that keeps the file's size and modification time is still
        seen (the digest differs), and so is one of an included file.
        """
        self.load()
        stat = os.stat(self.path)
        self.write(self.path, ZONE.format(serial=2))
        os.utime(self.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        self.assertEqual(os.stat(self.path).st_size, stat.st_size)
        self.assertIsNone(self.saved())
        zone = self.load()
        self.assertEqual(zone.serial, 2)
        self.assertEqual(self.saved().serial, 2)
        self.write(os.path.join(self.directory, "more.zone"), "h3 A 192.0.2.31\n")
        self.assertIsNone(self.saved())
        zone = self.load()
        self.assertIn(bytes([192, 0, 2, 31]), self.answer(zone, "h3.example.org", N.A))
        self.assertIn(bytes([192, 0, 2, 31]), self.answer(self.saved(), "h3.example.org", N.A))

    def test_replacedFile(self):
        """
        A file replaced by another (a new inode, as editors and rename do)
        is parsed again.
        """
        self.load()
        other = self.path + ".new"
        self.write(other, ZONE.format(serial=3))
        os.rename(other, self.path)
        self.assertEqual(self.load().serial, 3)

    def test_brokenZoneNotSaved(self):
        """
        A zone with an error raises as without the cache, and nothing is
        saved; a saved zone whose file breaks is not used either.
        """
        self.load()
        self.write(self.path, ZONE.format(serial=4) + "bad A 300.1.1.1\n")
        error = self.assertRaises(ZoneError, self.load)
        self.assertIn("300.1.1.1", str(error))
        self.assertIsNone(self.saved())

    def test_unreadableSavedFormIgnored(self):
        """
        A truncated or foreign saved file is ignored and replaced.
        """
        self.load()
        target = zonecache.cachePath(self.cache, self.origin, self.path)
        data = open(target, "rb").read()
        with open(target, "wb") as f:
            f.write(data[: len(data) // 2])
        self.assertIsNone(self.saved())
        self.assertEqual(self.load().serial, 1)
        self.assertIsNotNone(self.saved())
        with open(target, "wb") as f:
            f.write(b"something else")
        self.assertIsNone(self.saved())

    def test_onlyModelClassesUnpickled(self):
        """
        The pickled part is read with only the zone model's classes.
        """
        self.assertRaises(pickle.UnpicklingError, zonecache._ModelUnpickler(__import__("io").BytesIO(pickle.dumps(os.system))).load)

    def test_sourceWithCache(self):
        """
        L{FileZoneSource} with a directory uses it; without, it parses.
        """
        FileZoneSource([(ORIGIN, self.path)], self.cache).load()
        self.assertIsNotNone(self.saved())
        other = os.path.join(self.directory, "other")
        FileZoneSource([(ORIGIN, self.path)]).load()
        self.assertFalse(os.path.exists(other))
        self.assertEqual(loadZone(self.path, self.origin).serial, 1)


class ChooseTests(unittest.TestCase):
    """
    What a reload keeps (L{twisted_maillab.dns.service._choose}).
    """

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "example.org.zone")
        with open(self.path, "w") as f:
            f.write(ZONE.format(serial=1))
        with open(os.path.join(self.directory, "more.zone"), "w") as f:
            f.write(MORE)
        self.old = loadZones([(ORIGIN, self.path)])[0]

    def test_sameFilesNotCompared(self):
        """
        A zone read from the same bytes is the same zone: the old one is
        kept without comparing records, and the new one is emptied.
        """
        from twisted_maillab.dns.service import _choose
        from twisted_maillab.dns.zone import Zone

        new = loadZones([(ORIGIN, self.path)])[0]
        self.patch(Zone, "fingerprint", lambda zone: self.fail("compared"))
        chosen, raised, unchanged = _choose([new], {self.old.originKey: self.old})
        self.assertEqual((chosen, raised, unchanged), ([self.old], [], []))
        self.assertEqual(len(new.nodes), 0)
        self.assertGreater(len(self.old.nodes), 0)

    def test_changedWithoutSerial(self):
        """
        Other contents under the same serial: the old zone stays, the new
        one is reported; a higher serial replaces it.
        """
        from twisted_maillab.dns.service import _choose

        with open(self.path, "a") as f:
            f.write("h9 A 192.0.2.99\n")
        new = loadZones([(ORIGIN, self.path)])[0]
        chosen, raised, unchanged = _choose([new], {self.old.originKey: self.old})
        self.assertEqual((chosen, raised, unchanged), ([self.old], [], [(self.old.origin, 1)]))
        with open(self.path, "w") as f:
            f.write(ZONE.format(serial=2))
        new = loadZones([(ORIGIN, self.path)])[0]
        chosen, raised, unchanged = _choose([new], {self.old.originKey: self.old})
        self.assertEqual((chosen, raised, unchanged), ([new], [(new, 1)], []))
