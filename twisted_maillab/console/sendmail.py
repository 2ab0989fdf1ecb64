"""
C{maillab sendmail}: the C{sendmail} command line that cron, scripts and
MUAs expect, handing the message to the running daemon over its local
submission socket (C{[server] local_submission_socket}).  Run as
C{sendmail} (a symlink to the C{maillab} script) it behaves the same.

    sendmail [-t] [-i] [-oi] [-f sender] [-F name] [-C config] [rcpt ...]

The daemon knows the caller from the socket's peer credentials: the
envelope sender is the caller's address (C{user@[server] domain}); only
root and the daemon's user may give another with C{-f}.  Exit codes are
sendmail's (sysexits.h): 0 sent, 64 usage, 65 bad message, 67 a
recipient refused, 69 refused otherwise, 75 temporary failure (the daemon
is down), 77 sender not allowed, 78 bad configuration.
"""

from __future__ import annotations

import email.utils
import os
import pwd
import smtplib
import socket
import sys
from email.parser import BytesHeaderParser
from email.policy import compat32

from twisted_maillab.console import Exit, loadConfig

__all__ = ["main", "parseArguments", "prepareMessage"]

PROG = "sendmail"
# The daemon's message_size_limit applies; this bounds what is read first.
MAX_INPUT = 256 * 1024 * 1024

USAGE = """usage: sendmail [-t] [-i] [-oi] [-f sender] [-F name] [-C config] [recipient ...]

Send the message on standard input through the running maillab daemon.

  -t          take recipients from To:, Cc: and Bcc: too; Bcc: is removed
  -i, -oi     a line with a single dot does not end the message
  -f SENDER   envelope sender (root and the daemon's user only)
  -F NAME     full name for a From: header added when there is none
  -C CONFIG   the maillab ini (default $MAILLAB_CONFIG or /etc/maillab/maillab.ini)
  -oXX, -bm, -v, -odi, -odb, -U, -N ...  accepted and ignored, as Postfix does
"""


class UsageError(Exception):
    pass


def parseArguments(argv: list[str]) -> dict:
    """
    sendmail's options, which getopt-style parsers mishandle (C{-oi},
    C{-fsender}, C{-f sender}, C{-F "A Name"}).
    """
    options = {"t": False, "i": False, "f": None, "F": None, "C": None, "recipients": []}
    arguments = list(argv)
    while arguments:
        argument = arguments.pop(0)
        if argument == "--":
            options["recipients"] += arguments
            break
        if argument in ("-h", "--help"):
            raise UsageError(None)
        if not argument.startswith("-") or argument == "-":
            options["recipients"].append(argument)
            continue
        flag, value = argument[1:2], argument[2:]
        if flag in ("f", "F", "C", "r", "N", "R", "V", "X", "B", "L", "q", "O"):
            if not value:
                if not arguments:
                    raise UsageError(f"option -{flag} needs a value")
                value = arguments.pop(0)
            if flag == "r":
                flag = "f"
            if flag in ("f", "F", "C"):
                options[flag] = value
            continue
        if flag == "o":
            if value == "i":
                options["i"] = True
            continue
        if flag == "b":
            if value not in ("m", ""):
                raise UsageError(f"-b{value} is not supported (only -bm, the default)")
            continue
        if flag == "t" and not value:
            options["t"] = True
            continue
        if flag == "i" and not value:
            options["i"] = True
            continue
        if flag in ("v", "U", "d", "G", "n", "m", "e", "A"):
            continue
        raise UsageError(f"unknown option {argument}")
    return options


def _readInput(stdin, dotEnds: bool) -> bytes:
    data = stdin.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise ValueError("the message is larger than maillab sendmail reads")
    data = data.replace(b"\r\n", b"\n")
    if dotEnds:
        # Without -i, a line holding one "." ends the message (sendmail(8)).
        if data.startswith(b".\n") or data == b".":
            return b""
        end = data.find(b"\n.\n")
        if end < 0 and data.endswith(b"\n."):
            end = len(data) - 2
        if end >= 0:
            data = data[: end + 1]
    return data


def prepareMessage(data: bytes, options: dict, sender: str) -> tuple[bytes, list[str]]:
    """
    The message as submitted and its recipients: C{-t} adds To:, Cc: and
    Bcc: and removes Bcc:; From:, Date: and Message-ID: are added when
    missing, as Postfix's cleanup does for local submissions.
    """
    header, separator, body = data.partition(b"\n\n")
    if not separator and not header.strip():
        header = b""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(header + b"\n\n")
    recipients = list(options["recipients"])
    lines = header.split(b"\n") if header else []
    if options["t"]:
        for name in ("To", "Cc", "Bcc"):
            for _, address in email.utils.getaddresses(parsed.get_all(name, [])):
                if address:
                    recipients.append(address)
        lines = _withoutField(lines, b"bcc")
    names = {line.split(b":", 1)[0].strip().lower() for line in lines if line[:1] not in (b" ", b"\t")}
    added = []
    if b"from" not in names:
        added.append(f"From: {email.utils.formataddr((options['F'] or '', sender))}")
    if b"date" not in names:
        added.append(f"Date: {email.utils.formatdate(localtime=True)}")
    if b"message-id" not in names:
        added.append(f"Message-ID: {email.utils.make_msgid(domain=sender.rpartition('@')[2] or None)}")
    lines += [line.encode("utf-8") for line in added]
    seen = set()
    unique = [r for r in recipients if not (r.lower() in seen or seen.add(r.lower()))]
    return b"\n".join(lines) + b"\n\n" + body, unique


def _withoutField(lines: list[bytes], name: bytes) -> list[bytes]:
    kept, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == name
        if not skipping:
            kept.append(line)
    return kept


class _UnixSMTP(smtplib.SMTP):
    """
    smtplib over a UNIX socket (as C{smtplib.LMTP} does, but with EHLO).
    """

    def connect(self, host="localhost", port=0, source_address=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.file = None
        try:
            self.sock.connect(host)
        except OSError:
            self.sock.close()
            self.sock = None
            raise
        code, message = self.getreply()
        return code, message


def _exitFor(code: int, stage: str) -> int:
    if 400 <= code < 500:
        return Exit.TEMPFAIL
    if stage == "rcpt":
        return Exit.NOUSER
    if stage == "mail" and code == 553:
        return Exit.NOPERM
    if code == 552 or code == 554 and stage == "data":
        return Exit.DATAERR
    return Exit.UNAVAILABLE


def main(argv: list[str], stdin=None, stdout=None, stderr=None) -> int:
    stdin = stdin or sys.stdin.buffer
    stderr = stderr or sys.stderr
    try:
        options = parseArguments(argv)
    except UsageError as e:
        if e.args[0] is None:
            print(USAGE, end="", file=stdout or sys.stdout)
            return 0
        print(f"{PROG}: {e.args[0]}", file=stderr)
        print(USAGE.splitlines()[0], file=stderr)
        return Exit.USAGE
    from pathlib import Path

    from twisted_maillab.console.channel import submissionSocket

    config = loadConfig(Path(options["C"]) if options["C"] else None, PROG, stderr)
    if config is None:
        return Exit.CONFIG
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        print(f"{PROG}: uid {os.getuid()} has no user name", file=stderr)
        return Exit.NOUSER
    sender = options["f"] if options["f"] is not None else f"{user}@{config.server.domain}"
    if sender in ("<>", "<", ">"):
        sender = ""
    try:
        data = _readInput(stdin, dotEnds=not options["i"])
    except (OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=stderr)
        return Exit.IOERR
    message, recipients = prepareMessage(data, options, sender or f"{user}@{config.server.domain}")
    if not recipients:
        print(f"{PROG}: no recipients (give them as arguments, or -t)", file=stderr)
        return Exit.USAGE
    path = submissionSocket(config)
    try:
        # local_hostname: smtplib would otherwise resolve our own name.
        client = _UnixSMTP(str(path), timeout=300, local_hostname="localhost")
    except smtplib.SMTPException as e:
        print(f"{PROG}: the daemon refused the connection: {e}", file=stderr)
        return Exit.TEMPFAIL
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"{PROG}: the maillab daemon is not running ({path}); try again later", file=stderr)
        return Exit.TEMPFAIL
    except OSError as e:
        print(f"{PROG}: {path}: {e.strerror or e}", file=stderr)
        return Exit.TEMPFAIL
    return _submit(client, sender, recipients, message, stderr)


def _submit(client, sender: str, recipients: list[str], message: bytes, stderr) -> int:
    try:
        with client:
            client.ehlo()
            # RFC 6152: an 8-bit body (UTF-8 text from a script) is declared.
            eightBit = not message.isascii() and client.has_extn("8bitmime")
            code, reply = client.mail(sender, ["BODY=8BITMIME"] if eightBit else [])
            if code != 250:
                print(f"{PROG}: sender <{sender}> refused: {code} {reply.decode('utf-8', 'replace')}", file=stderr)
                return _exitFor(code, "mail")
            worst = Exit.OK
            accepted = 0
            for recipient in recipients:
                code, reply = client.rcpt(recipient)
                if code in (250, 251):
                    accepted += 1
                    continue
                print(f"{PROG}: <{recipient}> refused: {code} {reply.decode('utf-8', 'replace')}", file=stderr)
                worst = worst or _exitFor(code, "rcpt")
            if not accepted:
                return worst
            # smtplib's data() stuffs dots, at CRLF line starts only.
            code, reply = client.data(message.replace(b"\n", b"\r\n"))
            if code != 250:
                print(f"{PROG}: message refused: {code} {reply.decode('utf-8', 'replace')}", file=stderr)
                return _exitFor(code, "data")
            return worst
    except smtplib.SMTPServerDisconnected:
        print(f"{PROG}: the daemon closed the connection; try again later", file=stderr)
        return Exit.TEMPFAIL
    except smtplib.SMTPResponseException as e:
        print(f"{PROG}: {e.smtp_code} {e.smtp_error.decode('utf-8', 'replace')}", file=stderr)
        return _exitFor(e.smtp_code, "data")
    except OSError as e:
        print(f"{PROG}: {e}", file=stderr)
        return Exit.TEMPFAIL
