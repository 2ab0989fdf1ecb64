"""
Service plugins: a throw-away plugin package (a directory on C{PYTHONPATH}
with a C{twisted/plugins/} module) adds a section and its service to the
real C{twistd maillab}; the example LMTP plugin is driven by Python's
C{smtplib.LMTP}; broken plugins stop the start with one line naming them.
Discovery itself is tested in-process by tests/test_plugin_discovery.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial import unittest


from tests.support import freePort, readUntil, sha512crypt, stopProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "lmtp_plugin"
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MAILLAB = str(BIN / "maillab")


def twistd(ini: Path, pluginDirectory: Path, *extra) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(ini), *extra]


def pluginEnvironment(pluginDirectory: Path) -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(pluginDirectory)] + [p for p in [environment.get("PYTHONPATH")] if p]
    )
    return environment


class Suite:
    """
    A directory holding an ini file, a passwd-file account C{edouard} and
    its home, and a copy of a plugin package.
    """

    def __init__(self, testCase, sections: str, plugin: Path | None = EXAMPLE):
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.plugins = self.root / "plugins"
        if plugin is not None:
            shutil.copytree(plugin, self.plugins, ignore=shutil.ignore_patterns("dropin.cache", "__pycache__"))
        else:
            (self.plugins / "twisted" / "plugins").mkdir(parents=True)
        self.home = self.root / "home" / "edouard"
        self.home.mkdir(parents=True)
        (self.root / "users").write_text(
            f"edouard:{{SHA512-CRYPT}}{sha512crypt('pw')}::::{self.home}\n"
        )
        self.ini = self.root / "maillab.ini"
        self.ini.write_text(
            "[server]\nhostname = mail.domaineel.rt\ndomain = domaineel.rt\nstate_directory = var\n"
            "[auth]\ncheckers = passwd-file\npasswd_file = users\n"
            "[store]\nmail_location = maildir:~/Maildir\n" + sections
        )
        self.environment = pluginEnvironment(self.plugins)

    def addPlugin(self, name: str, text: str) -> None:
        (self.plugins / "twisted" / "plugins" / f"{name}.py").write_text(textwrap.dedent(text))

    def run(self, argv) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, env=self.environment, cwd=self.root, capture_output=True, text=True, timeout=120
        )

    def start(self, testCase, pattern: str) -> str:
        process = subprocess.Popen(
            twistd(self.ini, self.plugins),
            env=self.environment,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        testCase.addCleanup(stopProcess, process)
        return readUntil(process, [pattern])


class LMTPPluginTests(unittest.TestCase):
    """
    The example plugin package, installed as a throw-away directory, adds
    C{[lmtp]} to the real twistd; smtplib.LMTP delivers through it.
    """

    def test_lmtpPluginDelivers(self):
        port = freePort()
        suite = Suite(
            self,
            f"[lmtp]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\nmessage_size_limit = 2K\n",
        )
        suite.start(self, rf"lmtp listening on 127\.0\.0\.1:{port}\b")
        client = smtplib.LMTP("127.0.0.1", port)
        self.addCleanup(client.close)
        code, capabilities = client.ehlo("postfix.example")
        self.assertEqual(code, 250)
        self.assertIn(b"SIZE 2048", capabilities)
        # smtplib.LMTP reads one reply after the data: one accepted recipient.
        refused = client.sendmail(
            "anne@example.org",
            ["edouard@domaineel.rt", "nobody@domaineel.rt"],
            b"Subject: over LMTP\r\n\r\n.dotted\r\nbody\r\n",
        )
        self.assertEqual(
            refused, {"nobody@domaineel.rt": (550, b"5.1.1 <nobody@domaineel.rt>: recipient unknown")}
        )
        # Too big: refused, nothing stored.
        with self.assertRaises(smtplib.SMTPDataError) as caught:
            client.sendmail("anne@example.org", ["edouard@domaineel.rt"], b"Subject: big\r\n\r\n" + b"x" * 3000)
        self.assertEqual(caught.exception.smtp_code, 552)
        client.quit()
        # RFC 2033 4.2: one reply per accepted recipient after the data, in
        # RCPT order, here two addresses of one account (one copy stored);
        # pipelined in one packet.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(
                b"LHLO postfix.example\r\nMAIL FROM:<>\r\nRCPT TO:<edouard@domaineel.rt>\r\n"
                b"RCPT TO:<edouard@domaineel.rt>\r\nDATA\r\n"
            )
            replies = b""
            while replies.count(b"\r\n") < 10:
                replies += raw.recv(4096)
            self.assertTrue(replies.endswith(b"354 end data with <CR><LF>.<CR><LF>\r\n"), replies)
            raw.sendall(b"Subject: two\r\n\r\ntwice\r\n.\r\nQUIT\r\n")
            while not replies.endswith(b"221 2.0.0 bye\r\n"):
                chunk = raw.recv(4096)
                self.assertTrue(chunk, replies)
                replies += chunk
        final = replies.split(b"354 end data with <CR><LF>.<CR><LF>\r\n")[1].splitlines()
        self.assertEqual(len(final), 3, final)
        for line in final[:2]:
            self.assertRegex(line, rb"^250 2\.0\.0 <edouard@domaineel\.rt> delivered to \S+$")
        self.assertEqual(final[0], final[1])
        stored = sorted(path.read_bytes() for path in (suite.home / "Maildir" / "new").iterdir())
        self.assertEqual(len(stored), 2, stored)
        (twice,) = [data for data in stored if data.endswith(b"Subject: two\n\ntwice\n")]
        (stored,) = [data for data in stored if data is not twice]
        self.assertTrue(stored.startswith(b"Return-Path: <anne@example.org>\nX-Original-To: edouard@domaineel.rt\n"))
        self.assertTrue(stored.endswith(b"Subject: over LMTP\n\n.dotted\nbody\n"), stored)
        self.assertEqual(list((suite.home / "Maildir" / "tmp").iterdir()), [])

    def test_pluginSectionIsCheckedLikeOurs(self):
        suite = Suite(self, "[lmtp]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\nmessage_size = 2K\n")
        result = suite.run(twistd(suite.ini, suite.plugins))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(
            f"maillab: {suite.ini} [lmtp] message_size: unknown key (known: enabled, listen, "
            "message_size_limit, timeout) (line 13)",
            result.stderr,
        )
        self.assertNotIn("listening on", result.stdout + result.stderr)
        # maillab check-config knows the plugin's section too.
        result = suite.run([MAILLAB, "check-config", str(suite.ini)])
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(f"{suite.ini} [lmtp] message_size: unknown key", result.stdout + result.stderr)
        suite.ini.write_text(suite.ini.read_text().replace("message_size =", "message_size_limit ="))
        result = suite.run([MAILLAB, "check-config", str(suite.ini)])
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "ok"), result.stderr)

    def test_withoutThePluginTheSectionIsUnknown(self):
        suite = Suite(self, "[lmtp]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n", plugin=None)
        result = suite.run(twistd(suite.ini, suite.plugins))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(f"maillab: {suite.ini} [lmtp]: unknown section (known: server,", result.stderr)


class BrokenPluginTests(unittest.TestCase):
    """
    A plugin that does not import, or whose builder raises, stops the start
    with one line naming it and exit status 1, before anything is bound.
    """

    def assertOneLine(self, result, line):
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        errors = [each for each in result.stderr.splitlines() if each.startswith("maillab: ")]
        self.assertEqual(errors, [line], result.stderr)
        self.assertNotIn("listening on", result.stdout + result.stderr)

    def test_pluginThatDoesNotImport(self):
        port = freePort()
        suite = Suite(self, f"[pop3]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n", plugin=None)
        suite.addPlugin(
            "maillab_broken",
            """
            from twisted_maillab.plugins import ServicePlugin
            import maillab_missing_dependency
            broken = ServicePlugin("broken", "x:Section", "x:build")
            """,
        )
        result = suite.run(twistd(suite.ini, suite.plugins))
        self.assertOneLine(
            result,
            "maillab: plugin twisted.plugins.maillab_broken: cannot be imported: "
            "ModuleNotFoundError: No module named 'maillab_missing_dependency'",
        )

    def test_pluginWhoseSectionClassDoesNotImport(self):
        suite = Suite(self, "[gopher]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n", plugin=None)
        suite.addPlugin(
            "maillab_gopher",
            """
            from twisted_maillab.plugins import ServicePlugin
            gopher = ServicePlugin("gopher", "gopher_missing:Section", "gopher_missing:build")
            """,
        )
        result = suite.run(twistd(suite.ini, suite.plugins))
        self.assertOneLine(
            result,
            "maillab: plugin twisted.plugins.maillab_gopher.gopher: its section class cannot be "
            "imported: ModuleNotFoundError: No module named 'gopher_missing'",
        )

    def test_pluginThatFailsToBuild(self):
        suite = Suite(self, "[gopher]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n", plugin=None)
        (suite.plugins / "gopher_service.py").write_text(
            textwrap.dedent(
                """
                from dataclasses import dataclass
                from twisted_maillab.config import ListenerSection

                @dataclass(frozen=True, kw_only=True)
                class GopherSection(ListenerSection):
                    name = "gopher"

                def build(config, resources):
                    raise RuntimeError("no gopher hole\\nhere")
                """
            )
        )
        suite.addPlugin(
            "maillab_gopher",
            """
            from twisted_maillab.plugins import ServicePlugin
            gopher = ServicePlugin("gopher", "gopher_service:GopherSection", "gopher_service:build")
            """,
        )
        result = suite.run(twistd(suite.ini, suite.plugins))
        self.assertOneLine(
            result,
            "maillab: plugin twisted.plugins.maillab_gopher.gopher: cannot build [gopher]: "
            "RuntimeError: no gopher hole here",
        )
