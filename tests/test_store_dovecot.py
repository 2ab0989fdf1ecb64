"""
Dovecot interoperability, both directions, with Debian's Dovecot
(C{apt-get install -y dovecot-imapd dovecot-pop3d}): C{doveadm} runs with
its own config (a static userdb, C{mail_location} pointing at the test's
Maildir) and must report the same UIDVALIDITY, UIDs, flags, keywords,
folders and subscriptions as maillab's store, whichever wrote them; and
both can work on the same Maildir at the same time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.test_store import Recorder, deliver, makeAccount, makeTestStore

APT_HINT = "doveadm not found: install Dovecot with `apt-get install -y dovecot-imapd dovecot-pop3d`"


class Doveadm:
    """
    Run C{doveadm} against one account's Maildir, as its owner, with a
    private config (no running Dovecot needed).
    """

    def __init__(self, testCase, account):
        self.binary = shutil.which("doveadm") or (
            "/usr/bin/doveadm" if os.path.exists("/usr/bin/doveadm") else None
        )
        if self.binary is None:
            testCase.fail(APT_HINT)
        self.account = account
        self.dir = Path(tempfile.mkdtemp(prefix="maillab-dovecot-"))
        testCase.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "run").mkdir()
        (self.dir / "state").mkdir()
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(
            f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
mail_location = maildir:{account.maildir}
mail_uid = {account.uid}
mail_gid = {account.gid}
first_valid_uid = 0
first_valid_gid = 0
ssl = no
namespace inbox {{
  inbox = yes
  separator = /
}}
"""
        )

    def run(self, *args, input: bytes | None = None) -> str:
        env = {"USER": self.account.name, "HOME": str(self.account.home), "PATH": os.environ.get("PATH", "")}
        process = subprocess.run(
            [self.binary, "-c", str(self.config), *args],
            input=input,
            capture_output=True,
            env=env,
            timeout=60,
        )
        if process.returncode != 0:
            raise AssertionError(
                f"doveadm {' '.join(args)} failed ({process.returncode}): "
                f"{process.stderr.decode(errors='replace')}"
            )
        return process.stdout.decode("utf-8")

    def table(self, *args) -> list[dict]:
        out = self.run("-f", "tab", *args)
        lines = [l for l in out.split("\n") if l]
        if not lines:
            return []
        keys = lines[0].split("\t")
        return [dict(zip(keys, line.split("\t"))) for line in lines[1:]]

    def status(self, mailbox: str) -> dict:
        (row,) = self.table("mailbox", "status", "uidvalidity uidnext messages", mailbox)
        return {k: int(v) for k, v in row.items() if v.isdigit()}

    def flags(self, mailbox: str) -> dict[int, set[str]]:
        rows = self.table("fetch", "uid flags", "mailbox", mailbox, "all")
        return {int(r["uid"]): set(r["flags"].split()) - {"\\Recent"} for r in rows}

    def pop3Uidls(self) -> list[str]:
        """
        UIDL as Dovecot's own pop3 process answers it (pre-authenticated,
        run directly as Dovecot's login process would exec it).
        """
        pop3 = "/usr/lib/dovecot/pop3"
        if not os.path.exists(pop3):
            raise AssertionError("no /usr/lib/dovecot/pop3: apt-get install -y dovecot-pop3d")
        env = {"USER": self.account.name, "HOME": str(self.account.home), "PATH": os.environ.get("PATH", "")}
        process = subprocess.run(
            [pop3, "-c", str(self.config)], input=b"UIDL\r\nQUIT\r\n", capture_output=True, env=env, timeout=60
        )
        lines = process.stdout.decode().split("\r\n")
        start = lines.index("+OK") if "+OK" in lines else 1
        out = []
        for line in lines[start + 1 :]:
            if line == ".":
                break
            out.append(line.split(" ", 1)[1])
        return out

    def mailboxes(self, subscribed=False) -> set[str]:
        args = ["mailbox", "list"] + (["-s"] if subscribed else [])
        return {line for line in self.run(*args).split("\n") if line}


def message(n: int) -> bytes:
    return b"From: sender@example.net\nTo: edouard@example.org\nSubject: message %d\n\nbody %d\n" % (n, n)


class MaillabToDovecotTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_dovecotReadsWhatMaillabWrote(self):
        account = makeAccount(self)
        dove = Doveadm(self, account)
        store = makeTestStore(self)
        for i in range(1, 4):
            result = yield deliver(store, account, message(i))
            self.assertTrue(result.ok)
        mailboxes = store.mailboxes(account)
        yield mailboxes.ensureDefaults()
        inbox = yield mailboxes.open()
        yield inbox.claimRecent()
        yield inbox.setFlags([1], ["\\Seen", "$Label1"], "add")
        yield inbox.setFlags([2], ["\\Flagged", "\\Answered", "Work"], "add")
        yield mailboxes.create("Archive/2024")
        yield mailboxes.create("Café")
        yield mailboxes.subscribe("Archive/2024")
        archive = yield mailboxes.open("Archive/2024")
        appended = yield archive.append(message(9), ["\\Seen", "Work"], 1600000000.0)
        uidls = [inbox.pop3Uidl(uid) for uid in inbox.uids()]
        ours = {
            "INBOX": (inbox.uidValidity, inbox.uidNext, {u: set(inbox.flags(u)) for u in inbox.uids()}),
            "Archive/2024": (archive.uidValidity, archive.uidNext, {u: set(archive.flags(u)) for u in archive.uids()}),
        }
        self.assertEqual(appended, 1)
        inbox.close()
        archive.close()
        yield store.close()

        for name, (validity, uidNext, flags) in ours.items():
            status = dove.status(name)
            self.assertEqual(status["uidvalidity"], validity, name)
            self.assertEqual(status["uidnext"], uidNext, name)
            self.assertEqual(status["messages"], len(flags), name)
            self.assertEqual(dove.flags(name), flags, name)
        self.assertEqual(
            dove.flags("INBOX"),
            {1: {"\\Seen", "$Label1"}, 2: {"\\Flagged", "\\Answered", "Work"}, 3: set()},
        )
        # POP3 clients see the same UIDLs from Dovecot as from maillab
        self.assertEqual(dove.pop3Uidls(), uidls)
        rows = dove.table("fetch", "uid date.received size.physical", "mailbox", "Archive/2024", "all")
        self.assertEqual(int(rows[0]["size.physical"]), len(message(9)))
        self.assertIn("2020-09-13", rows[0]["date.received"])
        body = dove.run("fetch", "text", "mailbox", "INBOX", "uid", "2")
        self.assertIn("Subject: message 2", body)
        self.assertTrue({"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Archive/2024", "Café"} <= dove.mailboxes())
        self.assertTrue({"Archive/2024", "Sent", "Trash"} <= dove.mailboxes(subscribed=True))
        self.assertNotIn("Café", dove.mailboxes(subscribed=True))


class DovecotToMaillabTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_maillabReadsWhatDovecotWrote(self):
        account = makeAccount(self)
        dove = Doveadm(self, account)
        for i in range(1, 5):
            dove.run("save", "-m", "INBOX", input=message(i))
        dove.run("flags", "add", "\\Seen $Forwarded Project", "mailbox", "INBOX", "uid", "1")
        dove.run("flags", "add", "\\Deleted \\Draft", "mailbox", "INBOX", "uid", "3")
        dove.run("expunge", "mailbox", "INBOX", "uid", "2")
        dove.run("mailbox", "create", "Lists/Twisted", "Été")
        dove.run("mailbox", "subscribe", "Lists/Twisted", "INBOX")
        dove.run("save", "-m", "Lists/Twisted", input=message(7))
        theirs = {"INBOX": dove.status("INBOX"), "Lists/Twisted": dove.status("Lists/Twisted")}
        theirFlags = {"INBOX": dove.flags("INBOX"), "Lists/Twisted": dove.flags("Lists/Twisted")}
        self.assertEqual(sorted(theirFlags["INBOX"]), [1, 3, 4])

        store = makeTestStore(self)
        mailboxes = store.mailboxes(account)
        for name in ("INBOX", "Lists/Twisted"):
            folder = yield mailboxes.open(name)
            self.addCleanup(folder.close)
            self.assertEqual(folder.uidValidity, theirs[name]["uidvalidity"], name)
            self.assertEqual(folder.uidNext, theirs[name]["uidnext"], name)
            self.assertEqual({u: set(folder.flags(u)) for u in folder.uids()}, theirFlags[name], name)
        inbox = yield mailboxes.open()
        self.addCleanup(inbox.close)
        self.assertEqual(inbox.flags(1), {"\\Seen", "$Forwarded", "Project"})
        with inbox.openMessage(4) as f:
            self.assertIn(b"Subject: message 4", f.read())
        listing = {info.name: info for info in (yield mailboxes.list())}
        self.assertTrue({"INBOX", "Lists", "Lists/Twisted", "Été"} <= set(listing))
        self.assertTrue(listing["Lists/Twisted"].subscribed)
        self.assertTrue(listing["INBOX"].subscribed)
        self.assertFalse(listing["Été"].subscribed)
        self.assertFalse(listing["Lists"].exists)


class SharedMaildirTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_bothAtOnce(self):
        """
        maillab keeps INBOX open (with inotify) while Dovecot saves and
        flags messages, and maillab delivers while Dovecot reads: UIDs
        never collide and each sees the other's flags.
        """
        account = makeAccount(self)
        dove = Doveadm(self, account)
        store = makeTestStore(self, inotify=True)
        yield deliver(store, account, message(1))
        inbox = yield store.mailboxes(account).open()
        self.addCleanup(inbox.close)
        recorder = Recorder()
        inbox.subscribe(recorder)

        waiting = recorder.next()
        dove.run("save", "-m", "INBOX", input=message(2))
        event = yield waiting
        self.assertEqual(event, ("added", [2]))
        self.assertEqual(dove.flags("INBOX"), {1: set(), 2: set()})

        result = yield deliver(store, account, message(3))
        self.assertTrue(result.ok)
        for _ in range(50):
            if 3 in inbox.uids():
                break
            yield recorder.next()
        self.assertEqual(inbox.uids(), [1, 2, 3])
        self.assertEqual(sorted(dove.flags("INBOX")), [1, 2, 3])

        yield inbox.setFlags([3], ["\\Seen", "FromMaillab"], "add")
        self.assertEqual(dove.flags("INBOX")[3], {"\\Seen", "FromMaillab"})

        dove.run("flags", "add", "\\Flagged FromDovecot", "mailbox", "INBOX", "uid", "1")
        for _ in range(50):
            if "FromDovecot" in inbox.flags(1):
                break
            yield recorder.next()
        self.assertEqual(inbox.flags(1), {"\\Flagged", "FromDovecot"})
        self.assertEqual(inbox.uidValidity, dove.status("INBOX")["uidvalidity"])
        self.assertEqual(inbox.uidNext, dove.status("INBOX")["uidnext"])


class SameSecondOrderTests(unittest.TestCase):
    """
    Two files delivered in the same second, their microseconds of
    different lengths (C{M95000} and C{M102000}): string order and time
    order differ, and both servers must number them by time.
    """

    # in time order, the reverse of their string order
    NAMES = ("1700000000.M95000P7Q1.other", "1700000000.M102000P7Q2.other")

    def place(self, account):
        new = account.maildir / "new"
        new.mkdir(parents=True, exist_ok=True)
        for sub in ("cur", "tmp"):
            (account.maildir / sub).mkdir(exist_ok=True)
        for index, name in enumerate(self.NAMES):
            (new / name).write_bytes(message(index + 1))
        if os.geteuid() == 0 and account.uid is not None:
            for path in [account.maildir, *account.maildir.rglob("*")]:
                os.chown(path, account.uid, account.gid)

    @defer.inlineCallbacks
    def test_maillabNumbersFirst(self):
        account = makeAccount(self)
        self.place(account)
        store = makeTestStore(self)
        inbox = yield store.mailboxes(account).open()
        self.assertEqual([inbox.message(uid).base for uid in inbox.uids()], list(self.NAMES))
        inbox.close()
        yield store.close()
        dove = Doveadm(self, account)
        self.assertIn("Subject: message 1", dove.run("fetch", "text", "mailbox", "INBOX", "uid", "1"))
        self.assertIn("Subject: message 2", dove.run("fetch", "text", "mailbox", "INBOX", "uid", "2"))

    @defer.inlineCallbacks
    def test_dovecotNumbersFirst(self):
        account = makeAccount(self)
        self.place(account)
        dove = Doveadm(self, account)
        body = dove.run("fetch", "text", "mailbox", "INBOX", "uid", "1")
        self.assertIn("Subject: message 1", body)
        store = makeTestStore(self)
        inbox = yield store.mailboxes(account).open()
        self.assertEqual([inbox.message(uid).base for uid in inbox.uids()], list(self.NAMES))
        inbox.close()

