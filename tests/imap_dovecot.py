"""
Debian's Dovecot (C{dovecot-imapd}) as the reference IMAP server for the
message-structure and SEARCH tests: its C{imap} binary runs pre-authenticated
on a temporary Maildir with a throwaway config (no daemon, no port: Python's
C{imaplib.IMAP4_stream} talks to it over a pipe), and raw FETCH/SEARCH
answers are read byte for byte.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

IMAP_BINARY = "/usr/lib/dovecot/imap"
# Debian's "mail" user: Dovecot refuses to serve mail as root.
MAIL_UID = 8


class DovecotIMAP:
    """
    One pre-authenticated Dovecot IMAP session on a Maildir holding
    C{messages} (a list of bytes), each delivered to C{cur/} with the
    given internal date (file mtime) when C{dates} is given.
    """

    def __init__(self, testCase, messages, dates=None, flags=None):
        if not os.path.exists(IMAP_BINARY):
            raise AssertionError("Dovecot's imap is not installed: apt-get install -y dovecot-imapd")
        # base_dir holds UNIX sockets: trial's temporary path can be too
        # long for sun_path, and must be reachable by the mail user.
        self.dir = Path(tempfile.mkdtemp(prefix="mlimap-"))
        testCase.addCleanup(shutil.rmtree, self.dir, True)
        self.dir.chmod(0o755)
        maildir = self.dir / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        base = int(time.time()) - 1000
        for index, data in enumerate(messages):
            info = (flags[index] if flags else "")
            path = maildir / "cur" / f"{base + index}.M{index}P1.maillab:2,{info}"
            path.write_bytes(data)
            if dates:
                os.utime(path, (dates[index], dates[index]))
        for root, dirs, files in os.walk(maildir):
            os.chown(root, MAIL_UID, MAIL_UID)
            for name in files:
                os.chown(os.path.join(root, name), MAIL_UID, MAIL_UID)
        for sub in ("run", "state"):
            (self.dir / sub).mkdir()
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(
            f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
mail_location = maildir:{maildir}
mail_uid = {MAIL_UID}
mail_gid = {MAIL_UID}
first_valid_uid = 1
first_valid_gid = 1
ssl = no
namespace inbox {{
  inbox = yes
  separator = /
}}
"""
        )
        env = {"USER": "mail", "HOME": str(self.dir), "PATH": os.environ.get("PATH", "")}
        old = os.environ.copy()
        os.environ.update(env)
        try:
            self.client = imaplib.IMAP4_stream(f"{IMAP_BINARY} -c {self.conf} 2>>{self.dir}/stderr.log")
        finally:
            os.environ.clear()
            os.environ.update(old)
        testCase.addCleanup(self.close)
        typ, _ = self.client.select("INBOX")
        if typ != "OK":
            raise AssertionError(f"Dovecot SELECT failed: {self.log()}")
        self._tag = 0

    def log(self) -> str:
        return "".join(
            (self.dir / name).read_text() for name in ("dovecot.log", "stderr.log") if (self.dir / name).exists()
        )

    def close(self):
        try:
            self.client.logout()
        except Exception:
            pass
        process = getattr(self.client, "process", None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def raw(self, command: bytes) -> bytes:
        """
        Send one command; the untagged responses, raw (literals inline).
        Fails the test unless the answer is OK.
        """
        out, tagged = self._command(command)
        if not tagged.split(b" ", 2)[1:2] == [b"OK"]:
            raise AssertionError(f"{command!r}: {tagged!r}")
        return out

    def rawTagged(self, command: bytes) -> bytes:
        """
        Send one command; its tagged answer line, whatever it says.
        """
        return self._command(command)[1]

    def _command(self, command: bytes):
        self._tag += 1
        tag = b"R%d" % self._tag
        self.client.send(tag + b" " + command + b"\r\n")
        out = bytearray()
        while True:
            line = self.client.readline()
            if not line:
                raise AssertionError(f"Dovecot closed the connection: {self.log()}")
            if line.startswith(tag + b" "):
                return bytes(out), line
            out += line
            match = re.search(rb"\{(\d+)\}\r\n$", line)
            if match:
                out += self.client.read(int(match.group(1)))

    def fetchItem(self, seq: int, item: bytes, name: bytes | None = None) -> bytes:
        """
        The raw value of one FETCH item (what follows C{name} and a space
        in the answer: a parenthesised list, string, literal or NIL).
        """
        answer = self.raw(b"FETCH %d (%s)" % (seq, item))
        name = (name or item) + b" "
        if name not in answer:
            raise AssertionError(f"no {name!r} in Dovecot's answer {answer!r}")
        start = answer.index(name) + len(name)
        return _value(answer, start)

    def literal(self, seq: int, item: bytes, name: bytes) -> bytes | None:
        """
        The string value of a FETCH item (a literal or quoted string), or
        C{None} for NIL.
        """
        value = self.fetchItem(seq, item, name)
        if value == b"NIL":
            return None
        if value.startswith(b'"'):
            return re.sub(rb"\\(.)", rb"\1", value[1:-1])
        return value[value.index(b"\r\n") + 2 :]


def _value(data: bytes, i: int) -> bytes:
    """
    One IMAP value starting at C{data[i]}, raw.
    """
    start = i
    if data[i : i + 2] == b"~{":
        # A literal8 (RFC 3516 4.2).
        i += 1
    c = data[i : i + 1]
    if c == b"{":
        end = data.index(b"}\r\n", i)
        size = int(data[i + 1 : end])
        return data[start : end + 3 + size]
    if c == b'"':
        i += 1
        while data[i : i + 1] != b'"':
            i += 2 if data[i : i + 1] == b"\\" else 1
        return data[start : i + 1]
    if c == b"(":
        depth = 0
        while True:
            c = data[i : i + 1]
            if c == b"(":
                depth += 1
                i += 1
            elif c == b")":
                depth -= 1
                i += 1
                if not depth:
                    return data[start:i]
            elif c in (b'"', b"{"):
                i += len(_value(data, i))
            else:
                i += 1
    match = re.compile(rb"[^ ()\r\n]+").match(data, i)
    return match.group(0)
