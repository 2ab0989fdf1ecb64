"""
The shipped systemd units: C{systemd-analyze verify} accepts them, the
service starts on a host without the optional writable paths, and every
description says what this version serves.
"""

import configparser
import re
import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.support import requireTool
from tests.test_twistd import BIN, REPO, TWISTD

UNITS = REPO / "etc" / "systemd"


def unitSettings(path: Path) -> dict[str, dict[str, list[str]]]:
    """
    A unit file as {section: {key: [values in order]}}, continuation lines
    (a trailing backslash) joined, comments dropped: systemd.syntax(7).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


class UnitTests(unittest.TestCase):
    def test_systemdAnalyzeVerify(self):
        """
        systemd's own checker, on the units as shipped except ExecStart's
        install location (/opt/maillab/venv), which is this test's venv.
        """
        analyze = requireTool("systemd-analyze", "systemd")
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        for name in ("maillab.service", "maillab.socket"):
            text = (UNITS / name).read_text().replace("/opt/maillab/venv/bin/", f"{BIN}/")
            (work / name).write_text(text)
        result = subprocess.run(
            [analyze, "verify", str(work / "maillab.service"), str(work / "maillab.socket")],
            capture_output=True, text=True, timeout=120,
        )
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))

    def test_startsWithoutOptionalPaths(self):
        """
        ProtectSystem=strict with ReadWritePaths= of a directory that does
        not exist stops the unit (namespace setup fails): every such path
        is optional ("-"), and maillab's own directories are systemd's to
        create.
        """
        service = unitSettings(UNITS / "maillab.service")["Service"]
        for value in service.get("ReadWritePaths", []):
            for path in value.split():
                self.assertTrue(path.startswith("-"), f"ReadWritePaths={path} is not optional")
        self.assertEqual(service["StateDirectory"], ["maillab"])
        self.assertEqual(service["LogsDirectory"], ["maillab"])
        self.assertEqual(service["RuntimeDirectory"], ["maillab"])
        (execStart,) = service["ExecStart"]
        # The pid file is in RuntimeDirectory (where maillab reload looks).
        self.assertIn("--pidfile=/run/maillab/maillab.pid", execStart.split())
        self.assertIn("--config /etc/maillab/maillab.ini", execStart)


class DescriptionTests(unittest.TestCase):
    """
    The unit, twistd --help, setup.cfg and README say what this version
    serves: DNS, SMTP with submission, POP3 and IMAP.
    """

    def assertServes(self, where, text):
        text = " ".join(text.split())
        for protocol in ("DNS", "SMTP", "submission", "POP3", "IMAP"):
            self.assertIn(protocol, text, f"{where}: {text!r}")
        self.assertNotIn("not implemented", text, f"{where}: {text!r}")

    def test_descriptions(self):
        (unit,) = unitSettings(UNITS / "maillab.service")["Unit"]["Description"]
        self.assertServes("maillab.service", unit)
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        self.assertServes("setup.cfg", setup["metadata"]["description"])
        readme = (REPO / "README.rst").read_text().split("\n\n")[1]
        self.assertServes("README.rst", readme)
        helped = subprocess.run(
            [TWISTD, "--help"], capture_output=True, text=True, cwd="/", timeout=60
        ).stdout
        (plugin,) = re.findall(r"\n\s+maillab\s+(.+?)(?=\n\s{4}\S|\n\n|\Z)", helped, re.S)
        self.assertServes("twistd --help", plugin)
        options = subprocess.run(
            [TWISTD, "maillab", "--help"], capture_output=True, text=True, cwd="/", timeout=60
        ).stdout
        self.assertServes("twistd maillab --help", options)
