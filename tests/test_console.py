"""
The administrator's console (maillab queue, users, sendmail, --help and
the man page) against a real twistd daemon on loopback ports, and on the
daemon's files when it does not run.
"""

from __future__ import annotations

import json
import os
import poplib
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from twisted.trial import unittest

from tests.support import freePort, stopProcess

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MAILLAB = str(BIN / "maillab")

PASSWD = "edouard:{PLAIN}secret-password\n"


class Daemon:
    """
    A maillab under the real twistd: SMTP and POP3 on free loopback ports,
    the outbound queue relaying to a closed loopback port.
    """

    def __init__(self, testCase):
        self.testCase = testCase
        # Short: a UNIX socket path holds at most 107 bytes, and trial's
        # temporary directories are longer.
        base = Path(tempfile.mkdtemp(prefix="maillab-console-"))
        testCase.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        self.base = base
        (base / "passwd").write_text(PASSWD)
        self.smtpPort, self.pop3Port, self.closedPort = freePort(), freePort(), freePort()
        # A directory every local user can search, for the submission socket.
        (base / "run").mkdir(mode=0o755)
        self.ini = base / "maillab.ini"
        self.ini.write_text(
            textwrap.dedent(
                f"""\
                [server]
                hostname = smtp.domaineel.rt
                domain = domaineel.rt
                state_directory = state
                local_submission_socket = run/submit.sock

                [auth]
                checkers = passwd-file
                passwd_file = passwd
                minimum_password_length = 10

                [store]
                mail_location = maildir:{base}/mail/%n/Maildir
                fsync = no

                [smtp]
                enabled = yes
                listen = tcp:{self.smtpPort}:interface=127.0.0.1
                myhostname = smtp.domaineel.rt
                mydestination = $myhostname, domaineel.rt, localhost
                mynetworks = 127.0.0.0/8
                smtpd_peername_lookup = no
                relay_port = {self.closedPort}
                minimal_backoff_time = 1h
                maximal_backoff_time = 2h
                smtp_connect_timeout = 5

                [pop3]
                enabled = yes
                listen = tcp:{self.pop3Port}:interface=127.0.0.1
                """
            )
        )
        self.process = None

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def queue(self) -> Path:
        return self.state / "queue"

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self) -> str:
        # The log goes to a file: a pipe nobody reads would fill up and
        # stop the daemon in its next log write.
        self.log = self.base / f"twistd-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
            )
        self.testCase.addCleanup(self.stop)
        self.waitFor(
            lambda: self.process.poll() is not None
            or all(re.search(p, self.output) for p in (r"control listening on", r"maillab ready")),
            "the daemon to start",
            60,
        )
        if self.process.poll() is not None:
            raise AssertionError(f"twistd exited:\n{self.output}")
        return self.output

    def stop(self):
        if self.process is not None:
            stopProcess(self.process)

    def maillab(self, *argv, input=None, user=None, program=MAILLAB):
        """
        Run the console script; C{user} runs it as that system user.
        """
        env = dict(os.environ, MAILLAB_CONFIG=str(self.ini))
        env.pop("PYTHONPATH", None)
        kwargs = {}
        if user is not None:
            entry = pwd.getpwnam(user)

            def drop():
                os.setgid(entry.pw_gid)
                os.setgroups([])
                os.setuid(entry.pw_uid)

            kwargs["preexec_fn"] = drop
        return subprocess.run(
            [program, *argv], input=input, capture_output=True, cwd="/", env=env, timeout=60, **kwargs
        )

    def relay(self, recipients, subject="queued"):
        """
        Relay a message for a remote domain through the MX port (the client
        is in mynetworks).
        """
        with smtplib.SMTP("127.0.0.1", self.smtpPort, timeout=10) as smtp:
            smtp.sendmail(
                "admin@localhost", recipients,
                f"From: admin@localhost\r\nSubject: {subject}\r\n\r\nbody line\r\n".encode(),
            )

    def waitFor(self, predicate, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def listQueue(self) -> list:
        result = self.maillab("queue", "list", "--json")
        self.testCase.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def states(self) -> dict:
        """
        The spool's JSON files: {id: state}.
        """
        return {
            p.stem: json.loads(p.read_text())
            for p in self.queue.glob("*.json")
        }


class QueueTests(unittest.TestCase):
    def test_queueCommandsReachTheRunningDaemon(self):
        """
        Mail for a remote host on a closed port waits in the queue; the
        console lists it with the last reply, and hold, release, flush and
        delete change what the running daemon does at once.
        """
        daemon = Daemon(self)
        daemon.start()
        self.assertEqual(os.stat(daemon.state / "control.sock").st_mode & 0o777, 0o600)
        daemon.relay(["anne@[127.0.0.1]"], "first")
        daemon.relay(["bob@[127.0.0.1]", "carl@[127.0.0.1]"], "second")
        # Both were tried once (connection refused) and are deferred.
        entries = daemon.waitFor(
            lambda: (lambda e: e if len(e) == 2 and all(m["attempts"] == 1 for m in e) else None)(
                daemon.listQueue()
            ),
            "two deferred messages",
        )
        first, second = entries
        self.assertEqual(first["sender"], "admin@localhost")
        self.assertEqual([r["address"] for r in second["recipients"]], ["bob@[127.0.0.1]", "carl@[127.0.0.1]"])
        self.assertEqual(first["recipients"][0]["status"], "pending")
        self.assertIn("Connection refused", first["recipients"][0]["reply"])
        self.assertIsNotNone(first["next_attempt"])
        table = daemon.maillab("queue", "list")
        self.assertEqual(table.returncode, 0, table.stderr)
        text = table.stdout.decode()
        self.assertRegex(text, rf"{first['id']}\s+\d+s\s+\d+\s+deferred\s+admin@localhost")
        self.assertIn("-> anne@[127.0.0.1] pending", text)
        self.assertIn("2 Requests.", text)
        # mailq, as a command and as the program's name.
        self.assertIn(first["id"], daemon.maillab("mailq").stdout.decode())
        mailq = daemon.base / "mailq"
        mailq.symlink_to(MAILLAB)
        self.assertIn(second["id"], daemon.maillab(program=str(mailq)).stdout.decode())

        # queue show: envelope, header and body.
        shown = daemon.maillab("queue", "show", first["id"])
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn(f"*** ENVELOPE RECORDS {first['id']} ***", shown.stdout.decode())
        self.assertIn("sender: admin@localhost", shown.stdout.decode())
        self.assertIn("Subject: first", shown.stdout.decode())
        self.assertIn("body line", shown.stdout.decode())
        shown = json.loads(daemon.maillab("queue", "show", "--json", second["id"]).stdout)
        self.assertEqual(shown["envelope"]["queueId"], second["id"])
        self.assertIn("Subject: second", shown["header"])
        self.assertEqual(shown["body"], "body line\n")
        missing = daemon.maillab("queue", "show", "ABC")
        self.assertEqual(
            (missing.returncode, missing.stderr.decode()),
            (1, "maillab queue: ABC: no such message in the queue\n"),
        )

        # hold: the daemon's flush leaves it alone, and it stays held.
        held = daemon.maillab("queue", "hold", first["id"])
        self.assertEqual(held.returncode, 0, held.stderr)
        self.assertTrue(daemon.states()[first["id"]]["held"])
        flushed = daemon.maillab("queue", "flush")
        self.assertEqual(flushed.returncode, 0, flushed.stderr)
        self.assertIn("1 message(s) scheduled", flushed.stdout.decode())
        daemon.waitFor(lambda: daemon.states()[second["id"]]["attempts"] == 2, "the flushed attempt")
        entries = {e["id"]: e for e in daemon.listQueue()}
        self.assertEqual(entries[first["id"]]["attempts"], 1)
        self.assertTrue(entries[first["id"]]["held"])
        self.assertIsNone(entries[first["id"]]["next_attempt"])
        # release: tried at once.
        self.assertEqual(daemon.maillab("queue", "release", first["id"]).returncode, 0)
        daemon.waitFor(lambda: daemon.states()[first["id"]]["attempts"] == 2, "the released attempt")
        self.assertFalse(daemon.states()[first["id"]]["held"])
        # flush DOMAIN (as ETRN) and requeue.
        flushed = daemon.maillab("queue", "flush", "[127.0.0.1]")
        self.assertIn("2 message(s) scheduled", flushed.stdout.decode())
        daemon.waitFor(lambda: daemon.states()[second["id"]]["attempts"] == 3, "the domain flush")
        self.assertEqual(daemon.maillab("queue", "requeue", second["id"]).returncode, 0)
        daemon.waitFor(lambda: daemon.states()[second["id"]]["attempts"] == 1, "the requeued attempt")

        # delete: gone from the spool and the daemon, no bounce.
        deleted = daemon.maillab("queue", "delete", first["id"])
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        self.assertFalse((daemon.queue / f"{first['id']}.eml").exists())
        missing = daemon.maillab("queue", "hold", first["id"])
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(
            missing.stderr.decode(), f"maillab queue: {first['id']}: no such message in the queue\n"
        )
        deleted = daemon.maillab("queue", "delete", "--all-deferred")
        self.assertIn("deleted 1 deferred message(s)", deleted.stdout.decode())
        self.assertEqual(daemon.listQueue(), [])
        self.assertEqual(sorted(p.name for p in daemon.queue.iterdir()), ["queue.lock"])
        self.assertFalse(list((daemon.base / "mail").glob("*/Maildir/new/*")))
        daemon.stop()
        self.assertIn(f"{first['id']}: held by the administrator", daemon.output)
        self.assertIn(f"{first['id']}: deleted by the administrator", daemon.output)

    def test_withoutTheDaemon(self):
        """
        With no daemon, queue commands work on the spool files under the
        queue lock; a held message stays held when the daemon starts;
        flush says the daemon is needed (75).
        """
        daemon = Daemon(self)
        daemon.start()
        daemon.relay(["anne@[127.0.0.1]"])
        daemon.relay(["bob@[127.0.0.1]"])
        entry, other = daemon.waitFor(
            lambda: (lambda e: e if len(e) == 2 and all(m["attempts"] == 1 for m in e) else None)(
                daemon.listQueue()
            ),
            "two deferred messages",
        )
        daemon.stop()
        held = daemon.maillab("queue", "hold", entry["id"])
        self.assertEqual(held.returncode, 0, held.stderr)
        self.assertIn("(the daemon is not running)", held.stdout.decode())
        self.assertTrue(daemon.states()[entry["id"]]["held"])
        listed = daemon.listQueue()
        self.assertEqual(
            [(e["id"], e["held"]) for e in listed], [(entry["id"], True), (other["id"], False)]
        )
        flushed = daemon.maillab("queue", "flush")
        self.assertEqual(flushed.returncode, 75)
        self.assertIn("daemon is not running", flushed.stderr.decode())
        # The restarted daemon tries the spool at once, except the held
        # message.
        daemon.start()
        daemon.waitFor(lambda: daemon.states()[other["id"]]["attempts"] == 2, "the restart's attempt")
        daemon.stop()
        self.assertEqual(daemon.states()[entry["id"]]["attempts"], 1)
        # While the queue lock is held by someone else, nothing is changed.
        from twisted_maillab.console.channel import lockQueue

        lock = lockQueue(daemon.queue)
        try:
            refused = daemon.maillab("queue", "release", entry["id"])
        finally:
            os.close(lock)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("holds the queue lock", refused.stderr.decode())
        self.assertTrue(daemon.states()[entry["id"]]["held"])
        deleted = daemon.maillab("queue", "delete", entry["id"])
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        self.assertEqual([p.stem for p in daemon.queue.glob("*.json")], [other["id"]])


class UsersTests(unittest.TestCase):
    def test_addedUserLogsInWithoutRestart(self):
        """
        maillab users add while the daemon runs: the new user logs in over
        POP3 at once; users delete locks them out again.
        """
        daemon = Daemon(self)
        daemon.start()
        short = daemon.maillab("users", "add", "anne", input=b"short\n")
        self.assertEqual(short.returncode, 1)
        self.assertIn("shorter than 10 characters", short.stderr.decode())
        added = daemon.maillab("users", "add", "anne", input=b"anne-password\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        again = daemon.maillab("users", "add", "anne", input=b"anne-password\n")
        self.assertEqual(again.returncode, 1)
        self.assertIn("anne already exists", again.stderr.decode())
        client = poplib.POP3("127.0.0.1", daemon.pop3Port, timeout=10)
        client.user("anne")
        self.assertTrue(client.pass_("anne-password").startswith(b"+OK"))
        client.quit()
        listed = json.loads(daemon.maillab("users", "list", "--json").stdout)
        self.assertEqual(
            [(u["user"], u["source"], u["scheme"]) for u in listed],
            [("edouard", "passwd-file", "PLAIN"), ("anne", "passwd-file", "ARGON2ID")],
        )
        changed = daemon.maillab("users", "passwd", "anne", input=b"another-password\n")
        self.assertEqual(changed.returncode, 0, changed.stderr)
        deleted = daemon.maillab("users", "delete", "anne")
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        self.assertEqual(daemon.maillab("users", "delete", "anne").returncode, 1)
        client = poplib.POP3("127.0.0.1", daemon.pop3Port, timeout=10)
        client.user("anne")
        self.assertRaises(poplib.error_proto, client.pass_, "another-password")
        client.close()
        self.assertEqual((daemon.base / "passwd").read_text(), PASSWD)


class SendmailTests(unittest.TestCase):
    def delivered(self, daemon, user: str) -> list[bytes]:
        return daemon.waitFor(
            lambda: [p.read_bytes() for p in sorted((daemon.base / "mail" / user / "Maildir" / "new").glob("*"))]
            if (daemon.base / "mail" / user / "Maildir" / "new").is_dir() else None,
            f"mail for {user}",
        )

    def submitAs(self, daemon, user: str, sender: str, message: bytes) -> int:
        """
        Submit as another system user: a forked child drops to C{user} and
        runs maillab sendmail's client on the socket (the virtualenv's
        interpreter may not be readable by that user, so not a new process).

        @return: its exit status.
        """
        from twisted_maillab.console import sendmail

        entry = pwd.getpwnam(user)
        path = str(daemon.base / "run" / "submit.sock")
        pid = os.fork()
        if pid == 0:
            status = 70
            try:
                os.setgid(entry.pw_gid)
                os.setgroups([])
                os.setuid(entry.pw_uid)
                with open(os.devnull, "w") as quiet:
                    client = sendmail._UnixSMTP(path, timeout=30, local_hostname="localhost")
                    status = sendmail._submit(client, sender, ["edouard@domaineel.rt"], message, quiet)
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def test_sendmailDeliversLocally(self):
        """
        maillab sendmail hands the message to the daemon's local submission
        socket: it lands in the recipient's Maildir with the caller as
        Return-Path; -t takes To/Cc/Bcc and strips Bcc; a user who is not
        root cannot choose the sender; run as "sendmail" it is the same.
        """
        daemon = Daemon(self)
        daemon.start()
        self.assertEqual(os.stat(daemon.base / "run" / "submit.sock").st_mode & 0o777, 0o666)
        sent = daemon.maillab(
            "sendmail", "-oi", "-f", "cron@domaineel.rt", "edouard@domaineel.rt",
            input="Subject: from cron\n\n.\nline after a dot\nd\u00e9j\u00e0 vu\n".encode(),
        )
        self.assertEqual(sent.returncode, 0, sent.stderr)
        (message,) = self.delivered(daemon, "edouard")
        self.assertTrue(message.startswith(b"Return-Path: <cron@domaineel.rt>\n"), message[:200])
        self.assertIn(b"Subject: from cron\n", message)
        self.assertIn("\n.\nline after a dot\nd\u00e9j\u00e0 vu\n".encode(), message)
        for field in (b"\nFrom: cron@domaineel.rt\n", b"\nDate: ", b"\nMessage-ID: <"):
            self.assertIn(field, message)

        # An 8-bit body is declared (RFC 6152), so a relay keeps saying so.
        sent = daemon.maillab("sendmail", "far@[127.0.0.1]", input="Subject: x\n\nd\u00e9j\u00e0\n".encode())
        self.assertEqual(sent.returncode, 0, sent.stderr)
        (queued,) = daemon.states().values()
        self.assertEqual((queued["body"], queued["sender"]), ("8BITMIME", "root@domaineel.rt"))

        # -t, as the program "sendmail"; Bcc: is gone from what is stored.
        link = daemon.base / "sendmail"
        link.symlink_to(MAILLAB)
        sent = daemon.maillab(
            "-t", program=str(link),
            input=b"To: nobody-here@domaineel.rt\nBcc: edouard@domaineel.rt\nSubject: blind\n\nhello\n",
        )
        self.assertEqual(sent.returncode, 67, sent.stderr)
        self.assertIn(b"<nobody-here@domaineel.rt> refused: 550", sent.stderr)
        messages = daemon.waitFor(lambda: (lambda m: m if len(m) == 2 else None)(self.delivered(daemon, "edouard")),
                                  "the -t message")
        blind = [m for m in messages if b"Subject: blind" in m][0]
        self.assertNotIn(b"Bcc:", blind)
        self.assertIn(b"To: nobody-here@domaineel.rt", blind)
        self.assertTrue(blind.startswith(b"Return-Path: <root@domaineel.rt>\n"), blind[:200])

        # A user who is not root: the sender is theirs, -f another is refused.
        self.assertEqual(self.submitAs(daemon, "nobody", "nobody@domaineel.rt", b"Subject: mine\n\nx\n"), 0)
        messages = daemon.waitFor(lambda: (lambda m: m if len(m) == 3 else None)(self.delivered(daemon, "edouard")),
                                  "nobody's message")
        mine = [m for m in messages if b"Subject: mine" in m][0]
        self.assertTrue(mine.startswith(b"Return-Path: <nobody@domaineel.rt>\n"), mine[:200])
        self.assertIn(b"(Authenticated sender: nobody)", mine)
        self.assertEqual(self.submitAs(daemon, "nobody", "edouard@domaineel.rt", b"x\n"), 77)

        # The daemon down: EX_TEMPFAIL, nothing lost silently.
        daemon.stop()
        down = daemon.maillab("sendmail", "edouard@domaineel.rt", input=b"x\n")
        self.assertEqual(down.returncode, 75)
        self.assertIn(b"the maillab daemon is not running", down.stderr)
