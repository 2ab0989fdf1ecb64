"""
Tests for twisted_maillab.auth.hashing: every crypt(3) backend against real
hashes made by mkpasswd, Dovecot schemes, and the GIL-free libcrypt path.
"""

import sys
import threading
import time

from twisted.trial import unittest

from twisted_maillab.auth import hashing
from tests.auth_fixtures import mkpasswd

METHODS = ["yescrypt", "sha512crypt", "sha256crypt", "md5crypt", "bcrypt"]


class BackendTests(unittest.TestCase):
    def test_moduleNameFollowsPythonVersion(self):
        """
        Python 3.13 removed crypt: the crypt-r package takes its place.
        """
        self.assertEqual(hashing.cryptModuleName((3, 11)), "crypt")
        self.assertEqual(hashing.cryptModuleName((3, 12, 4)), "crypt")
        self.assertEqual(hashing.cryptModuleName((3, 13)), "crypt_r")
        self.assertEqual(hashing.cryptModuleName((3, 14, 0)), "crypt_r")
        self.assertEqual(
            hashing.cryptModuleName(), "crypt_r" if sys.version_info >= (3, 13) else "crypt"
        )

    def _checkBackend(self, backend):
        for method in METHODS:
            password = f"pw-{method}-é"
            stored = mkpasswd(method, password)
            self.assertTrue(
                hashing.verifyCrypt(backend, password, stored), f"{backend.name} {method}"
            )
            self.assertFalse(
                hashing.verifyCrypt(backend, password + "x", stored), f"{backend.name} {method}"
            )

    def test_libcrypt(self):
        backend = hashing.cryptBackend("libcrypt")
        self.assertEqual(backend.name, "libcrypt")
        self._checkBackend(backend)

    def test_moduleForThisPython(self):
        """
        The module path for the running Python: stdlib crypt before 3.13,
        crypt-r from 3.13 on (also run under a real 3.13, see the report).
        """
        backend = hashing.cryptBackend(hashing.cryptModuleName())
        self.assertEqual(backend.name, "crypt" if sys.version_info < (3, 13) else "crypt_r")
        self._checkBackend(backend)

    def test_forcedCryptR(self):
        """
        The Python 3.13+ path, forced: the crypt-r package verifies the same
        hashes and makes sha512/bcrypt salts through its mksalt.
        """
        backend = hashing.cryptBackend("crypt_r")
        self.assertEqual(backend.name, "crypt_r")
        import crypt_r

        self.assertIs(sys.modules["crypt_r"], crypt_r)
        self._checkBackend(backend)
        for scheme in ("SHA512-CRYPT", "BLF-CRYPT"):
            stored = hashing.makeHash(backend, "secret", scheme)
            self.assertTrue(hashing.verifyScheme(backend, "secret", stored))

    def test_autoPrefersLibcrypt(self):
        self.assertEqual(hashing.cryptBackend().name, "libcrypt")

    def test_autoFallsBackToModule(self):
        """
        Without a loadable libcrypt, C{auto} uses the module for this Python.
        """
        def broken():
            raise OSError("no libcrypt")

        self.patch(hashing, "_libcryptBackend", broken)
        self.assertEqual(hashing.cryptBackend().name, hashing.cryptModuleName())
        self.assertRaises(ImportError, hashing.cryptBackend, "libcrypt")

    def test_missingCryptRNamesPackage(self):
        def missing(name):
            raise ImportError(name)

        self.patch(hashing.importlib, "import_module", missing)
        e = self.assertRaises(ImportError, hashing.cryptBackend, "crypt_r")
        self.assertIn("pip install crypt-r", str(e))

    def test_lockedAndEmptyNeverVerify(self):
        backend = hashing.cryptBackend()
        stored = mkpasswd("sha512crypt", "pw")
        self.assertFalse(hashing.verifyCrypt(backend, "pw", "!" + stored))
        self.assertFalse(hashing.verifyCrypt(backend, "pw", "*"))
        self.assertFalse(hashing.verifyCrypt(backend, "", ""))
        self.assertFalse(hashing.verifyCrypt(backend, "pw", "garbage"))

    def test_libcryptReleasesTheGIL(self):
        """
        A yescrypt in another thread does not hold the GIL: the calling
        thread keeps running while it is computed.  (Measured against the
        crypt module, which holds the GIL for the whole hash.)
        """
        backend = hashing.cryptBackend("libcrypt")
        stored = mkpasswd("yescrypt", "pw")
        start = time.perf_counter()
        backend.crypt("pw", stored)
        one = time.perf_counter() - start
        stop = threading.Event()

        def worker():
            while not stop.is_set():
                backend.crypt("pw", stored)

        thread = threading.Thread(target=worker)
        thread.start()
        try:
            ticks = 0
            end = time.perf_counter() + max(one * 10, 0.2)
            while time.perf_counter() < end:
                time.sleep(0)
                ticks += 1
        finally:
            stop.set()
            thread.join()
        # Holding the GIL, the loop would run about once per hash (~10).
        self.assertGreater(ticks, 1000)


class SchemeTests(unittest.TestCase):
    def setUp(self):
        self.backend = hashing.cryptBackend()

    def test_splitScheme(self):
        self.assertEqual(hashing.splitScheme("{SHA512-CRYPT}$6$x"), ("SHA512-CRYPT", "$6$x"))
        self.assertEqual(hashing.splitScheme("{plain}pw"), ("PLAIN", "pw"))
        self.assertEqual(hashing.splitScheme("$y$abc"), ("CRYPT", "$y$abc"))

    def test_writeAndVerifyEveryScheme(self):
        for scheme in hashing.WRITE_SCHEMES:
            stored = hashing.makeHash(self.backend, "correct horse", scheme)
            self.assertTrue(stored.startswith("{" + scheme + "}"), stored)
            self.assertTrue(hashing.verifyScheme(self.backend, "correct horse", stored), scheme)
            self.assertFalse(hashing.verifyScheme(self.backend, "wrong horse", stored), scheme)

    def test_writtenPrefixes(self):
        self.assertIn("}$argon2id$", hashing.makeHash(self.backend, "x", "ARGON2ID"))
        self.assertIn("}$6$", hashing.makeHash(self.backend, "x", "SHA512-CRYPT"))
        self.assertIn("}$2y$", hashing.makeHash(self.backend, "x", "BLF-CRYPT"))
        self.assertIn("}$y$", hashing.makeHash(self.backend, "x", "CRYPT"))

    def test_dovecotStyleValues(self):
        """
        Values as doveadm pw writes them: crypt strings under their scheme
        names, and a bare crypt string (default scheme CRYPT).
        """
        for scheme, method in [
            ("SHA512-CRYPT", "sha512crypt"),
            ("SHA256-CRYPT", "sha256crypt"),
            ("MD5-CRYPT", "md5crypt"),
            ("BLF-CRYPT", "bcrypt"),
            ("CRYPT", "yescrypt"),
        ]:
            stored = "{" + scheme + "}" + mkpasswd(method, "pw")
            self.assertTrue(hashing.verifyScheme(self.backend, "pw", stored), scheme)
            self.assertFalse(hashing.verifyScheme(self.backend, "pW", stored), scheme)
        self.assertTrue(hashing.verifyScheme(self.backend, "pw", mkpasswd("yescrypt", "pw")))

    def test_argon2FromLibrary(self):
        import argon2

        stored = "{ARGON2ID}" + argon2.PasswordHasher().hash("pw")
        self.assertTrue(hashing.verifyScheme(self.backend, "pw", stored))
        self.assertFalse(hashing.verifyScheme(self.backend, "px", stored))
        self.assertFalse(hashing.verifyScheme(self.backend, "pw", "{ARGON2ID}$argon2id$junk"))

    def test_plain(self):
        self.assertTrue(hashing.verifyScheme(self.backend, "pw", "{PLAIN}pw"))
        self.assertFalse(hashing.verifyScheme(self.backend, "pw ", "{PLAIN}pw"))
        self.assertTrue(hashing.verifyScheme(self.backend, "pw", "{CLEAR}pw"))

    def test_unknownScheme(self):
        self.assertRaises(
            hashing.UnknownScheme, hashing.verifyScheme, self.backend, "pw", "{CRAM-MD5}abcd"
        )

    def test_bcryptFallbackWhenLibcryptLacksIt(self):
        """
        A libc without bcrypt (musl) falls back to the bcrypt package.
        """
        real = self.backend

        def noBcrypt(password, setting):
            return None if setting.startswith("$2") else real.crypt(password, setting)

        backend = hashing.CryptBackend("nobcrypt", noBcrypt, real.gensalt)
        stored = "{BLF-CRYPT}" + mkpasswd("bcrypt", "pw").replace("$2b$", "$2y$")
        self.assertTrue(hashing.verifyScheme(backend, "pw", stored))
        self.assertFalse(hashing.verifyScheme(backend, "pq", stored))


class DovecotInteropTests(unittest.TestCase):
    """
    Our passwd-file hashes and Dovecot's are interchangeable: checked with
    Dovecot's own doveadm pw (package dovecot-core).
    """

    def setUp(self):
        import shutil

        self.doveadm = shutil.which("doveadm")
        if self.doveadm is None:
            raise AssertionError("doveadm is missing: apt-get install dovecot-core")
        self.backend = hashing.cryptBackend()

    def doveadm_(self, *args):
        import subprocess

        return subprocess.run([self.doveadm, "pw", *args], capture_output=True, text=True)

    def test_dovecotVerifiesOurs(self):
        for scheme in hashing.WRITE_SCHEMES:
            stored = hashing.makeHash(self.backend, "inter-op", scheme)
            self.assertEqual(self.doveadm_("-t", stored, "-p", "inter-op").returncode, 0, stored)
            self.assertNotEqual(self.doveadm_("-t", stored, "-p", "inter-oq").returncode, 0, stored)

    def test_weVerifyDovecots(self):
        for scheme in ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "ARGON2ID",
                       "ARGON2I", "CRYPT", "PLAIN"):
            result = self.doveadm_("-s", scheme, "-p", "from-dovecot")
            self.assertEqual(result.returncode, 0, result.stderr)
            stored = result.stdout.strip()
            self.assertTrue(stored.startswith("{" + scheme + "}"), stored)
            self.assertTrue(hashing.verifyScheme(self.backend, "from-dovecot", stored), stored)
            self.assertFalse(hashing.verifyScheme(self.backend, "from-dovecoT", stored), stored)

    def test_bcryptCost(self):
        """
        libxcrypt's default bcrypt cost (5) is raised to 12.
        """
        self.assertIn("}$2y$12$", hashing.makeHash(self.backend, "x", "BLF-CRYPT"))
