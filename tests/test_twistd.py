"""
End-to-end: the real C{twistd} runs the plugin with the shipped configs,
and the plugin is found from an installed wheel.
"""

import os
import imaplib
import poplib
import smtplib
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from twisted.names import dns
from twisted.trial import unittest

from tests.support import freePort, readUntil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")


def devConfigCopy(testCase) -> tuple[Path, dict]:
    """
    Copy etc/ to a temporary directory and move every listener of the dev
    config to a free port.

    @return: the copied dev ini and {section: port} of enabled listeners.
    """
    root = Path(testCase.mktemp()).resolve()
    shutil.copytree(REPO / "etc", root / "etc")
    ini = root / "etc" / "maillab.dev.ini"
    ports = {}
    lines = []
    section = None
    enabled = set()
    for line in ini.read_text().splitlines():
        header = re.match(r"\[(\w+)\]", line)
        if header:
            section = header.group(1)
        if re.match(r"enabled\s*=\s*yes", line):
            enabled.add(section)
        match = re.match(r"(listen\s*=\s*\w+:)(\d+)(.*)", line)
        if match:
            ports[section] = freePort()
            line = f"{match.group(1)}{ports[section]}{match.group(3)}"
        lines.append(line)
    ini.write_text("\n".join(lines) + "\n")
    return ini, {name: port for name, port in ports.items() if name in enabled}


class TwistdTests(unittest.TestCase):
    def test_helpListsPlugin(self):
        result = subprocess.run(
            [TWISTD, "--help"], capture_output=True, text=True, cwd="/", timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"\n\s+maillab\s+Mail suite for one domain")

    def runDev(self, ini, ports, whileRunning=lambda output: None) -> str:
        """
        Start twistd on the dev config, wait for every listener, check
        each accepts a connection, call C{whileRunning(output so far)},
        stop it with SIGTERM.

        @return: everything it printed.
        """
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ini.parent.parent,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        expected = [rf"{name} listening on 127\.0\.0\.1:{port}\b" for name, port in ports.items()]
        output = readUntil(process, expected + [r"maillab ready"])
        for name, port in ports.items():
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        whileRunning(output)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output += rest.decode()
        # twistd ends a SIGTERM shutdown by re-raising the signal, so that
        # its parent (systemd) sees how it ended; that is a clean stop.
        self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
        self.assertIn("Main loop terminated", output)
        return output

    def test_devConfigStartsAndStops(self):
        """
        The embedded default starts on free ports, creates its state (the
        state directory, a self-signed certificate, the seed's two demo
        users with random passwords printed at every start), logs every
        listener it bound, and stops cleanly on SIGTERM.
        """
        ini, ports = devConfigCopy(self)

        var = ini.parent.parent / "var"

        def demoPasswords():
            # Kept in clear, for the developer, in a 0600 file of the state
            # directory; the log names the file.
            return dict(line.split(" ", 1) for line in (var / "demo-passwords").read_text().splitlines())

        def useTheLab(output):
            # The demo password opens edouard's (new) mailbox.
            password = demoPasswords()["edouard"]
            # The seed's "mail edouard@smtp.domaineel.rt" from the same host.
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
                smtp.ehlo("antenn04.univ-lr.fr")
                self.assertIn("pipelining", smtp.esmtp_features)
                self.assertEqual(smtp.esmtp_features["size"], "10240000")
                refused = smtp.sendmail(
                    "admin@localhost",
                    ["edouard@smtp.domaineel.rt"],
                    b"Subject: t\r\nFrom: admin@localhost\r\n\r\nsdgfd\r\n",
                )
                self.assertEqual(refused, {})
            client = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
            client.user("edouard@domaineel.rt")
            self.assertTrue(client.pass_(password).startswith(b"+OK"))
            self.assertEqual(client.stat()[0], 1)
            lines = client.retr(1)[1]
            client.quit()
            self.assertIn(b"X-Original-To: edouard@smtp.domaineel.rt", lines)
            self.assertIn(b"Delivered-To: edouard@smtp.domaineel.rt", lines)
            self.assertEqual(lines[-1], b"sdgfd")
            # The seed's telnet session over IMAP (now \\Seen, after RETR).
            imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10)
            imap.login("edouard@domaineel.rt", password)
            self.assertEqual(imap.select("INBOX"), ("OK", [b"1"]))
            typ, data = imap.fetch("1", "(BODY[HEADER])")
            self.assertIn(b"Delivered-To: edouard@smtp.domaineel.rt", data[0][1])
            imap.logout()
            # dig @127.0.0.1 -p <port> MX domaineel.rt answers as in the seed.
            query = dns.Message(id=4321, recDes=False)
            query.addQuery(b"domaineel.rt", dns.MX)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.settimeout(10)
                udp.sendto(query.toStr(), ("127.0.0.1", ports["dns"]))
                answer = dns.Message()
                answer.fromStr(udp.recv(4096))
            self.assertEqual((answer.id, answer.auth, answer.rCode), (4321, 1, dns.OK))
            self.assertEqual(
                [(r.payload.preference, r.payload.name.name) for r in answer.answers],
                [(10, b"smtp.domaineel.rt")],
            )

        output = self.runDev(ini, ports, useTheLab)
        self.assertTrue((var / "tls" / "cert.pem").is_file(), output)
        self.assertEqual(os.stat(var / "tls" / "key.pem").st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(var).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(var / "demo-passwords").st_mode & 0o777, 0o600)
        passwords = demoPasswords()
        self.assertEqual(sorted(passwords), ["edouard", "utilisateur"])
        self.assertIn(
            "demo accounts edouard@domaineel.rt utilisateur@domaineel.rt: passwords in "
            f"{var / 'demo-passwords'}",
            output,
        )
        self.assertEqual(len(set(passwords.values())), 2)
        for password in passwords.values():
            self.assertGreaterEqual(len(password), 12)
            # Not a terminal: the passwords are in no output, hence no log.
            self.assertNotIn(password, output)
        # A second start keeps the accounts and their passwords.
        again = self.runDev(ini, ports)
        self.assertIn("demo accounts edouard@domaineel.rt utilisateur@domaineel.rt", again)
        self.assertEqual(demoPasswords(), passwords)

    def test_badConfigExitsBeforeBinding(self):
        port = freePort()
        ini = Path(self.mktemp()).resolve()
        ini.write_text(
            f"[server]\nstate_directory = {ini}.state\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
            "[smtp]\nmessage_size_limit = 10X\n"
        )
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(ini)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            f'maillab: {ini} [smtp] message_size_limit: "10X" is not a size (line 7)', result.stderr
        )
        self.assertFalse(Path(f"{ini}.state").exists())

    def test_builderErrorExitsBeforeBinding(self):
        """
        A problem only a service builder finds ([http] https without a
        [tls] certificate) ends the start before anything is bound.
        """
        ini = Path(self.mktemp()).resolve()
        ini.write_text(
            f"[server]\nstate_directory = {ini}.state\n"
            "[http]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\nhttps = yes\n"
        )
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(ini)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(
            f"maillab: {ini} [http] https: HTTPS needs [tls] certificate and private_key (line 6)",
            result.stderr,
        )
        self.assertNotIn("listening on", result.stdout + result.stderr)


class WheelTests(unittest.TestCase):
    def test_pluginFoundFromInstalledWheel(self):
        """
        A wheel holds the plugin and never twisted/__init__.py; installed
        alone (without the source tree on sys.path) twistd finds it.
        """
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(REPO)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(build.returncode, 0, build.stderr)
        (wheel,) = work.glob("twisted_maillab-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/maillab.py", names)
        self.assertIn("twisted_maillab/config.py", names)
        for forbidden in ("twisted/__init__.py", "twisted/plugins/__init__.py"):
            self.assertNotIn(forbidden, names)
        self.assertFalse([n for n in names if "dropin.cache" in n or n.startswith("tests/")])

        # A bare environment: its own venv, which sees the dependencies of
        # ours through a .pth line (lines in it do not process our
        # editable-install .pth, so the source tree stays off sys.path).
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        Path(site, "maillab-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
            capture_output=True, text=True, timeout=300,
        )
        self.assertEqual(install.returncode, 0, install.stderr)
        probe = subprocess.run(
            [
                str(python),
                "-c",
                "import sys, twisted_maillab\n"
                "from twisted.plugin import getPlugins\n"
                "from twisted.application.service import IServiceMaker\n"
                "makers = {p.tapname: p for p in getPlugins(IServiceMaker)}\n"
                "import twisted.plugins.maillab as plugin\n"
                "print(twisted_maillab.__file__)\nprint(plugin.__file__)\n"
                "print(makers['maillab'].description)\n"
                "print(any(p.rstrip('/') == %r for p in sys.path))\n" % str(REPO),
            ],
            capture_output=True, text=True, cwd=str(work), timeout=120,
            # trial -j puts the checkout on PYTHONPATH for its workers
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        self.assertEqual(probe.returncode, 0, probe.stderr)
        package, plugin, description, repoOnPath = probe.stdout.splitlines()
        self.assertTrue(package.startswith(site), package)
        self.assertTrue(plugin.startswith(site), plugin)
        self.assertTrue(description.startswith("Mail suite for one domain"))
        self.assertEqual(repoOnPath, "False")
