"""
The shipped fail2ban filter against what a real maillab run logs: failed
logins over POP3 and SMTP AUTH, in the JSON lines the systemd unit writes
(as fail2ban's journal backend presents them, and as a JSON log file) and
in twistd's text log file.  C{fail2ban-regex} must find each failure, with
its client's address, and nothing else.
"""

import poplib
import re
import signal
import smtplib
import socket
import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.support import readUntil, requireTool
from tests.test_twistd import REPO, TWISTD, devConfigCopy

FILTER = REPO / "etc" / "fail2ban" / "filter.d" / "maillab.conf"


def loopbackV6Port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def fail2banRegex(testCase, log: Path) -> tuple[list[str], str]:
    """
    The addresses C{fail2ban-regex} finds in C{log} with the shipped
    filter, in order, and its summary line.
    """
    tool = requireTool("fail2ban-regex", "fail2ban")
    ips = subprocess.run(
        [tool, "-o", "ip", str(log), str(FILTER)],
        capture_output=True, text=True, timeout=120,
    )
    testCase.assertEqual(ips.returncode, 0, ips.stderr)
    summary = subprocess.run(
        [tool, "--print-no-missed", str(log), str(FILTER)],
        capture_output=True, text=True, timeout=120,
    )
    (lines,) = re.findall(r"^Lines: .*$", summary.stdout, re.M)
    return ips.stdout.split(), lines


class Fail2banTests(unittest.TestCase):
    def runLab(self, *twistdOptions) -> tuple[str, Path]:
        """
        Start the dev config (POP3 also on ::1) with C{twistdOptions}, fail
        three POP3 logins from ::1 and two SMTP AUTH logins from 127.0.0.1,
        log in once successfully, stop.

        @return: standard output and the lab's root directory.
        """
        ini, ports = devConfigCopy(self)
        v6 = loopbackV6Port()
        text = ini.read_text()
        pop3 = f"listen = tcp:{ports['pop3']}:interface=127.0.0.1\n"
        ini.write_text(text.replace(pop3, pop3 + f"    tcp6:{v6}:interface=\\:\\:1\n", 1))
        root = ini.parent.parent
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", *twistdOptions, "maillab", "--config", str(ini)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        if twistdOptions[0].startswith("--logfile="):
            output = ""
            logfile = Path(twistdOptions[0].split("=", 1)[1])
            self.waitFor(lambda: logfile.exists() and "maillab ready" in logfile.read_text())
        else:
            output = readUntil(process, [r"maillab ready"])
        passwords = dict(
            line.split(" ", 1) for line in (root / "var" / "demo-passwords").read_text().splitlines()
        )
        client = poplib.POP3("::1", v6, timeout=30)
        for attempt in range(3):
            client.user("edouard@domaineel.rt")
            self.assertRaises(poplib.error_proto, client.pass_, f"wrong{attempt}")
        client.close()
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
            smtp.ehlo("client.example")
            # One AUTH PLAIN each (smtplib's login() would try LOGIN after it).
            smtp.user = "utilisateur@domaineel.rt"
            for attempt in range(2):
                smtp.password = f"bad{attempt}"
                self.assertRaises(smtplib.SMTPAuthenticationError, smtp.auth, "PLAIN", smtp.auth_plain)
        client = poplib.POP3("127.0.0.1", ports["pop3"], timeout=30)
        client.user("utilisateur@domaineel.rt")
        client.pass_(passwords["utilisateur"])
        client.quit()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        return output + rest.decode(), root

    def waitFor(self, condition, timeout=60):
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail("timed out")
            time.sleep(0.1)

    EXPECTED = ["::1", "::1", "::1", "127.0.0.1", "127.0.0.1"]

    def test_journalAndJSONFile(self):
        """
        The unit as shipped: --logger=twisted_maillab.logs.jsonStdout, one
        JSON line per event on standard output, which journald stores as
        the entry's MESSAGE; fail2ban's systemd backend matches
        C{HOSTNAME IDENTIFIER[PID]: MESSAGE}.  The same lines as a file
        (--logger=twisted_maillab.logs.jsonFile) match too.
        """
        output, root = self.runLab("--logger=twisted_maillab.logs.jsonStdout")
        jsonLines = [line for line in output.splitlines() if line.startswith("{")]
        self.assertGreater(len(jsonLines), 10)
        journal = root / "journal.txt"
        journal.write_text("".join(f"mail.example twistd[4242]: {line}\n" for line in jsonLines))
        plain = root / "maillab.json"
        plain.write_text("".join(line + "\n" for line in jsonLines))
        for log in (journal, plain):
            ips, summary = fail2banRegex(self, log)
            self.assertEqual(ips, self.EXPECTED, log.read_text())
            self.assertRegex(summary, rf"^Lines: {len(jsonLines)} lines, 0 ignored, 5 matched, ")

    def test_twistdTextLogFile(self):
        log = Path(self.mktemp()).resolve()
        self.runLab(f"--logfile={log}")
        ips, summary = fail2banRegex(self, log)
        self.assertEqual(ips, self.EXPECTED, log.read_text())
        self.assertRegex(summary, r"^Lines: \d+ lines, 0 ignored, 5 matched, ")


class JailTests(unittest.TestCase):
    def test_jailAsFail2banReadsIt(self):
        """
        fail2ban-client loads the shipped jail and filter into a copy of
        Debian's /etc/fail2ban: [maillab] reads the unit's journal entries
        with both failregexes; the log-file jail is there, disabled.
        """
        import shutil

        client = requireTool("fail2ban-client", "fail2ban")
        conf = Path(self.mktemp()).resolve()
        shutil.copytree("/etc/fail2ban", conf)
        for old in (conf / "jail.d").iterdir():
            old.unlink()
        shutil.copy(REPO / "etc" / "fail2ban" / "jail.d" / "maillab.conf", conf / "jail.d")
        shutil.copy(FILTER, conf / "filter.d")
        test = subprocess.run([client, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=120)
        self.assertEqual(test.returncode, 0, test.stdout + test.stderr)
        dump = subprocess.run([client, "-c", str(conf), "-d"], capture_output=True, text=True, timeout=120)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertIn("['add', 'maillab', 'systemd']", dump.stdout)
        self.assertIn("['set', 'maillab', 'addjournalmatch', '_SYSTEMD_UNIT=maillab.service']", dump.stdout)
        self.assertIn("\"log_namespace\": \"twisted_maillab\\\\.auth\"", dump.stdout)
        self.assertIn("['start', 'maillab']", dump.stdout)
        self.assertNotIn("'maillab-logfile'", dump.stdout)

    def test_dualStackClientBannedAsIPv4(self):
        """
        etc/maillab.ini listens on [::] for both families: an IPv4 client's
        failure is logged from ::ffff:a.b.c.d, which fail2ban bans as the
        IPv4 address its firewall action can block.
        """
        import io

        from twisted.logger import Logger

        from twisted_maillab import logs

        out = io.StringIO()
        log = Logger(namespace="twisted_maillab.auth", observer=logs.jsonLineObserver(out.write))
        log.warn(
            "auth: result={result} proto={protocol} rip={host} user={user} delay={delay:.1f} "
            "reason={reason}",
            result="failed", protocol="smtp", host="::ffff:203.0.113.9", user='"edouard"',
            delay=0.0, reason='"bad password"',
        )
        path = Path(self.mktemp())
        path.write_text(f"mail.example twistd[4242]: {out.getvalue()}")
        ips, _ = fail2banRegex(self, path)
        self.assertEqual(ips, ["203.0.113.9"])
