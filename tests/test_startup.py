"""
End-to-end: what an administrator sees when C{twistd maillab} cannot
start.  Every failure is one line naming the file, section, key and
endpoint, with exit status 1, and never a traceback; checked through real
C{twistd} subprocesses.
"""

import os
import socket
import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.support import freePort
from tests.test_twistd import REPO, TWISTD



def runTwistd(testCase, text: str, withoutBindCapability: bool = False, pidfile: str = ""):
    """
    Write C{text} as an ini file and start C{twistd -n maillab} on it
    (without C{CAP_NET_BIND_SERVICE} when asked, through util-linux's
    setpriv: what a unit with C{User=} and no such capability gets).

    @return: the ini path and the finished process.
    """
    directory = Path(testCase.mktemp()).resolve()
    directory.mkdir(parents=True)
    ini = directory / "maillab.ini"
    ini.write_text(text.replace("STATE", str(directory / "state")))
    command = [TWISTD, "-n", f"--pidfile={pidfile}", "maillab", "--config", str(ini)]
    if withoutBindCapability:
        # Dropped from the bounding set, the capability is gone from the
        # process after exec even as root; a switch to another user would
        # also need an interpreter that user can read (not one under a
        # 0700 home, as pyenv's are).
        command = ["setpriv", "--bounding-set=-net_bind_service"] + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=directory)
    return ini, result


class BindFailureTests(unittest.TestCase):
    def assertOneLine(self, result, line):
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(result.stderr, f"maillab: {line}\n")
        self.assertNotIn("Traceback", result.stdout)
        self.assertNotIn("listening on", result.stdout)

    def busy(self, kind=socket.SOCK_STREAM) -> int:
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        self.addCleanup(sock.close)
        return sock.getsockname()[1]

    def test_portInUse(self):
        """
        A port another process holds: nothing is started, no pid file is
        left behind.
        """
        port = self.busy()
        pidfile = os.path.abspath(self.mktemp())
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:0:interface=127.0.0.1\n"
            f"    tcp:{port}:interface=127.0.0.1\n",
            pidfile=pidfile,
        )
        self.assertOneLine(
            result,
            f'{ini} [pop3] listen: "tcp:{port}:interface=127.0.0.1" cannot listen on '
            f"127.0.0.1:{port}: address already in use (another process, or another "
            "listener, has it) (line 6)",
        )
        self.assertFalse(os.path.exists(pidfile))

    def test_dnsUDPPortInUse(self):
        """
        [dns] binds UDP beside TCP: a UDP port in use is reported the same way.
        """
        port = self.busy(socket.SOCK_DGRAM)
        zone = REPO / "etc" / "zones" / "domaineel.rt.zone"
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            f"[dns]\nenabled = yes\nzones = domaineel.rt:{zone}\n"
            f"listen = tcp:{port}:interface=127.0.0.1\n",
        )
        self.assertOneLine(
            result,
            f'{ini} [dns] listen: "tcp:{port}:interface=127.0.0.1" cannot listen on '
            f"127.0.0.1:{port}: address already in use (another process, or another "
            "listener, has it) (line 6)",
        )

    def test_privilegedPortWithoutPermission(self):
        """
        Port 110 without CAP_NET_BIND_SERVICE (as when the unit's User= is
        set without that capability).
        """
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            "[pop3]\nenabled = yes\nlisten = tcp:110:interface=127.0.0.1\n",
            withoutBindCapability=True,
        )
        self.assertOneLine(
            result,
            f'{ini} [pop3] listen: "tcp:110:interface=127.0.0.1" cannot listen on '
            "127.0.0.1:110: permission denied (ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE) (line 5)",
        )

    def test_portOutOfRange(self):
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            "[smtp]\nenabled = yes\nlisten = tcp:70000:interface=127.0.0.1\n",
        )
        self.assertOneLine(
            result,
            f'{ini} [smtp] listen: "tcp:70000:interface=127.0.0.1" cannot be used: '
            "port 70000 is out of range (0-65535) (line 5)",
        )
        self.assertFalse((ini.parent / "state").exists())

    def test_interfaceThatDoesNotResolve(self):
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            f"[smtp]\nenabled = yes\nlisten = tcp:{freePort()}:interface=mx.invalid\n",
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertRegex(
            result.stderr,
            rf'\Amaillab: {ini} \[smtp\] listen: "tcp:\d+:interface=mx.invalid" cannot be '
            r"used: interface 'mx.invalid' is not an IP address and does not resolve "
            r"\([^\n]+\) \(line 5\)\n\Z",
        )

    def test_everyErrorOnItsOwnLine(self):
        port = freePort()
        ini, result = runTwistd(
            self,
            "[server]\nstate_directory = STATE\n"
            f"[smtp]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
            "message_size_limit = 10X\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{port}\n",
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(
            result.stderr.splitlines(),
            [
                f'maillab: {ini} [smtp] message_size_limit: "10X" is not a size (line 6)',
                f'maillab: {ini} [pop3] listen: "tcp:{port}" would bind 0.0.0.0:{port}, already '
                f'taken by [smtp] listen "tcp:{port}:interface=127.0.0.1" (line 5): the '
                "wildcard address takes every address of its port (line 9)",
            ],
        )


class DemoPasswordTests(unittest.TestCase):
    def test_terminalSeesThemJSONLogDoesNot(self):
        """
        C{make run} in a terminal: the person sees each demo account's
        password on the terminal, while the JSON log (the journal's copy
        under systemd) carries no password in any field.
        """
        import json
        import pty
        import re
        import select
        import signal
        import time

        from tests.test_twistd import devConfigCopy

        ini, ports = devConfigCopy(self)
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "--logger=twisted_maillab.logs.jsonStdout",
             "maillab", "--config", str(ini)],
            stdout=slave,
            stderr=subprocess.PIPE,
            cwd=ini.parent.parent,
        )
        os.close(slave)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        output = b""
        deadline = time.monotonic() + 60
        while b'"text": "maillab ready"' not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                output += os.read(master, 65536)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        text = output.decode().replace("\r\n", "\n")
        passwords = dict(
            line.split(" ", 1)
            for line in (ini.parent.parent / "var" / "demo-passwords").read_text().splitlines()
        )
        shown = dict(re.findall(r"^demo account: (\w+)@domaineel\.rt password: (\S+)$", text, re.M))
        self.assertEqual(shown, passwords, text)
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        self.assertIn("maillab ready", [event["text"] for event in events])
        (announce,) = [e for e in events if e["text"].startswith("demo accounts ")]
        self.assertEqual(announce["accounts"], "edouard@domaineel.rt utilisateur@domaineel.rt")
        for event in events:
            for password in passwords.values():
                self.assertNotIn(password, json.dumps(event))


class ReloadTests(unittest.TestCase):
    def test_reloadsTheDaemonMakeRunStarted(self):
        """
        The daemon started by the Makefile's C{run} recipe writes its pid
        file in the state directory, where C{maillab reload --config}
        finds it (from any directory); the daemon then reloads its zones.
        """
        import shlex
        import signal

        from tests.support import readUntil
        from tests.test_twistd import devConfigCopy

        (recipe,) = [
            line.strip()
            for line in (REPO / "Makefile").read_text().split("\nrun:")[1].split("\n\n")[0].splitlines()
            if "twistd" in line
        ]
        command = shlex.split(recipe.replace("$(BIN)", str(Path(TWISTD).parent)))
        ini, ports = devConfigCopy(self)
        root = ini.parent.parent
        (root / "var").mkdir()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=root
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        readUntil(process, [r"maillab ready"])
        pid = (root / "var" / "maillab.pid").read_text().strip()
        self.assertEqual(pid, str(process.pid))
        elsewhere = Path(self.mktemp()).resolve()
        elsewhere.mkdir()
        result = subprocess.run(
            [str(Path(TWISTD).parent / "maillab"), "reload", "--config", str(ini)],
            capture_output=True, text=True, cwd=elsewhere, timeout=60,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, f"maillab reload: sent SIGHUP to {pid} ({root / 'var' / 'maillab.pid'})\n", ""),
        )
        readUntil(process, [r"dns: reloading the zones"])
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        self.assertFalse((root / "var" / "maillab.pid").exists())


class ProductionConfigTests(unittest.TestCase):
    def test_shippedProductionConfigStartsAndServes(self):
        """
        etc/maillab.ini, changed only in its ports, its listening addresses
        (0.0.0.0 -> 127.0.0.1, :: -> ::1: the tests use loopback only) and
        its state directory, with the same listener shapes: it starts,
        every enabled listener logs the address it bound, SMTP answers EHLO
        over IPv6, DNS answers dig over IPv4, POP3 and the implicit-TLS
        listeners answer.
        """
        import re
        import shutil
        import signal
        import smtplib
        import ssl

        from tests.support import readUntil, requireTool
        from tests.test_fail2ban import loopbackV6Port

        from twisted_maillab.config import load

        # As shipped, on its real addresses: no two listeners collide
        # (this machine's net.ipv6.bindv6only is read, Debian's 0 here).
        load(REPO / "etc" / "maillab.ini")
        root = Path(self.mktemp()).resolve()
        shutil.copytree(REPO / "etc", root / "etc")
        ini = root / "etc" / "maillab.ini"
        original = ini.read_text()
        bound = {}  # section -> [(family, port)]
        section = None
        lines = []
        for line in original.splitlines():
            header = re.match(r"\[(\w+)\]", line)
            if header:
                section = header.group(1)
            endpoint = re.fullmatch(r"(listen = |    )(tcp6?):(\d+):interface=(0\.0\.0\.0|\\:\\:)", line)
            if endpoint:
                lead, kind, _, interface = endpoint.groups()
                v6 = interface == "\\:\\:"
                port = loopbackV6Port() if v6 else freePort()
                bound.setdefault(section, []).append(("::1" if v6 else "127.0.0.1", port))
                address = "\\:\\:1" if v6 else "127.0.0.1"
                line = f"{lead}{kind}:{port}:interface={address}"
            elif line.startswith("state_directory = "):
                line = f"state_directory = {root / 'state'}"
            elif line == "alias_maps = /etc/aliases":
                # A path like the others: a fresh machine without an MTA
                # has no /etc/aliases (Debian's MTA packages create it).
                aliases = root / "aliases"
                system = Path("/etc/aliases")
                aliases.write_text(system.read_text() if system.exists() else "postmaster: root\n")
                line = f"alias_maps = {aliases}"
            lines.append(line)
        ini.write_text("\n".join(lines) + "\n")
        changed = [
            (a, b) for a, b in zip(original.splitlines(), lines) if a != b
        ]
        # Nothing else changed: one line per endpoint, the state directory
        # and the alias file.
        self.assertEqual(len(changed), sum(map(len, bound.values())) + 2)
        enabled = {"dns", "smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http"}
        self.assertTrue(enabled <= set(bound), bound)
        # The shipped shapes: IPv6 (dual-stack) for the SMTP listeners.
        self.assertEqual([family for family, _ in bound["smtp"]], ["::1"])

        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())

        def where(host, port):
            return re.escape(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

        expected = [
            rf"{name} listening on {where(host, port)}\b"
            for name in enabled
            for host, port in bound[name]
        ]
        output = readUntil(process, expected + [r"maillab ready"])

        (smtpHost, smtpPort), = bound["smtp"]
        with smtplib.SMTP(smtpHost, smtpPort, timeout=30) as smtp:
            code, banner = smtp.ehlo("antenn04.univ-lr.fr")
            self.assertEqual(code, 250)
            self.assertTrue(banner.startswith(b"smtp.domaineel.rt"), banner)
            self.assertIn("starttls", smtp.esmtp_features)
        (dnsHost, dnsPort), = bound["dns"]
        dig = requireTool("dig", "bind9-dnsutils")
        answer = subprocess.run(
            [dig, f"@{dnsHost}", "-p", str(dnsPort), "+short", "+norec", "MX", "domaineel.rt"],
            capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(answer.stdout, "10 smtp.domaineel.rt.\n", answer.stderr)
        (popHost, popPort), = bound["pop3"]
        with socket.create_connection((popHost, popPort), timeout=30) as pop:
            self.assertTrue(pop.recv(512).startswith(b"+OK"))
        (imapHost, imapPort), = bound["imap"]
        with socket.create_connection((imapHost, imapPort), timeout=30) as imap:
            greeting = imap.recv(512)
            self.assertTrue(greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting)
            self.assertIn(b" STARTTLS", greeting)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        for name, greeting in (("submissions", b"220 "), ("pop3s", b"+OK"), ("imaps", b"* OK ")):
            (host, port), = bound[name]
            with socket.create_connection((host, port), timeout=30) as raw:
                with context.wrap_socket(raw) as tls:
                    self.assertTrue(tls.recv(512).startswith(greeting), name)
        # [http] over HTTPS: autoconfig names the listeners as bound here.
        import urllib.request

        (httpHost, httpPort), = bound["http"]
        url = f"https://[{httpHost}]:{httpPort}/mail/config-v1.1.xml" if ":" in httpHost else f"https://{httpHost}:{httpPort}/mail/config-v1.1.xml"
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            document = response.read().decode()
        (imapsHost, imapsPort), = bound["imaps"]
        self.assertIn(f"<port>{imapsPort}</port>", document)
        self.assertIn("<hostname>smtp.domaineel.rt</hostname>", document)
        # [dns] publish_mail_records: the SRV record of the same listener.
        answer = subprocess.run(
            [dig, f"@{dnsHost}", "-p", str(dnsPort), "+short", "+norec", "SRV", "_imaps._tcp.domaineel.rt"],
            capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(answer.stdout, f"0 1 {imapsPort} smtp.domaineel.rt.\n", answer.stderr)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output += rest.decode()
        self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
        self.assertNotIn("Traceback", output)


class JSONFileLoggerTests(unittest.TestCase):
    def runWithJSONFile(self, path: Path):
        port = freePort()
        ini = Path(self.mktemp()).resolve()
        ini.write_text(
            f"[server]\nstate_directory = {ini}.state\n"
            f"[pop3]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\n"
        )
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "--logger=twisted_maillab.logs.jsonFile",
             "maillab", "--config", str(ini)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MAILLAB_LOG": str(path)},
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process, port

    def test_missingLogDirectoryIsCreated(self):
        import json
        import signal
        import time

        path = Path(self.mktemp()).resolve() / "log" / "maillab" / "maillab.json"
        process, port = self.runWithJSONFile(path)
        deadline = time.monotonic() + 60
        while not (path.exists() and "maillab ready" in path.read_text()):
            if process.poll() is not None:
                self.fail(process.stderr.read())
            self.assertLess(time.monotonic(), deadline, "maillab never logged ready")
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        self.assertEqual(path.parent.stat().st_mode & 0o777, 0o750)
        events = [json.loads(line) for line in path.read_text().splitlines()]
        ready = [e for e in events if e["text"] == "maillab ready"]
        self.assertEqual(ready[0]["log_level"], "info")

    def test_unwritableLogIsOneLine(self):
        blocker = Path(self.mktemp()).resolve()
        blocker.write_text("not a directory\n")
        process, _ = self.runWithJSONFile(blocker / "maillab.json")
        out, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1, out + err)
        self.assertEqual(
            err, f"maillab: cannot write the JSON log {blocker}/maillab.json: {blocker} is not a directory\n"
        )
