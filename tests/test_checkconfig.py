"""
Tests for C{maillab check-config}: every problem of a config on its own
line, exit status 1; C{ok} and 0 for the shipped configs.
"""

import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.test_twistd import BIN, REPO

MAILLAB = str(BIN / "maillab")


def checkConfig(*args):
    return subprocess.run(
        [MAILLAB, "check-config", *map(str, args)], capture_output=True, text=True, timeout=60
    )


class CheckConfigTests(unittest.TestCase):
    def test_shippedConfigsAreOk(self):
        for name in ("maillab.ini", "maillab.dev.ini"):
            result = checkConfig(REPO / "etc" / name)
            self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ok\n", ""))

    def test_everyErrorOneLineEach(self):
        ini = Path(self.mktemp()).resolve()
        ini.write_text(
            "[server]\nhostname =\n"
            "[smtp]\nenabled = yes\nlisten = tcp:2525:interface=127.0.0.1\n"
            "message_size_limit = 10X\nsmtpd_timeout = soon\n"
            "[pop3]\nenabled = yes\nlisten = tcp:2525\n    tcp:99999\n"
            "[pop3s]\nidle_timeout = 1m\n"
        )
        result = checkConfig(ini)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertEqual(
            result.stderr.splitlines(),
            [
                f"{ini} [server] hostname: must not be empty (line 2)",
                f'{ini} [smtp] message_size_limit: "10X" is not a size (line 6)',
                f'{ini} [smtp] smtpd_timeout: "soon" is not a duration (line 7)',
                f'{ini} [pop3] listen: "tcp:99999" cannot be used: port 99999 is out of range '
                "(0-65535) (line 10)",
                f"{ini} [pop3s] idle_timeout: RFC 1939 requires at least 10 minutes (600s) (line 13)",
            ],
        )

    def test_whatOnlyTheStartWouldFind(self):
        """
        Problems the daemon finds while building its services are reported
        too, without building anything: each error of each zone file, a key
        that does not match its certificate.
        """
        ini = Path(self.mktemp()).resolve()
        zone = REPO / "tests" / "dns_fixtures" / "seed-broken.zone"
        key = Path(self.mktemp()).resolve()
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(key)],
            check=True, capture_output=True,
        )
        ini.write_text(
            f"[server]\nstate_directory = {ini}.state\n"
            "[tls]\ncertificate = /etc/ssl/certs/ssl-cert-snakeoil.pem\n"
            f"private_key = {key}\n"
            f"[dns]\nenabled = yes\nlisten = tcp:5353:interface=127.0.0.1\nzones = x.test:{zone}\n"
        )
        result = checkConfig(ini)
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = result.stderr.splitlines()
        self.assertTrue(
            lines[0].startswith(f"{ini} [tls] private_key: {key} does not match the certificate"),
            lines[0],
        )
        self.assertTrue(lines[0].endswith("(line 5)"), lines[0])
        zoneLines = lines[1:]
        self.assertEqual(len(zoneLines), 3, lines)
        for line, number in zip(zoneLines, (2, 14, 15)):
            self.assertTrue(line.startswith(f"{ini} [dns] zones: zone x.test: {zone}:{number}: "), line)
            self.assertTrue(line.endswith("(line 9)"), line)
        self.assertFalse(Path(f"{ini}.state").exists())

    def test_missingFile(self):
        result = checkConfig("/nonexistent/maillab.ini")
        self.assertEqual((result.returncode, result.stderr), (1, "/nonexistent/maillab.ini: no such file\n"))
