"""
The text of C{maillab --help} and of the C{maillab(8)} man page, from one
source: L{SECTIONS}.  C{python -m twisted_maillab.console.manual} prints
the man page (C{man/maillab.8} is its output, checked in and installed as
C{share/man/man8/maillab.8}; a test keeps the two equal).
"""

from __future__ import annotations

import sys
from importlib import import_module

__all__ = ["SECTIONS", "helpText", "manPage", "version"]

SUMMARY = "administer the maillab mail suite (queue, users, sendmail, zones)"

DESCRIPTION = (
    "maillab is the administration command of the maillab daemon (twistd maillab), "
    "which serves authoritative DNS, SMTP with submission, POP3 and IMAP over Maildir in one "
    "process.  Each command reads the daemon's configuration (--config, else "
    "$MAILLAB_CONFIG, else /etc/maillab/maillab.ini) and works on the running daemon's "
    "files with the daemon's own locking.  Commands that print a table print the same "
    "rows as JSON with --json.  Run \"maillab COMMAND --help\" for a command's options."
)

# (command, synopsis, explanation); a command of cli.COMMANDS missing here
# is listed with the first line of its module's docstring.
SECTIONS = [
    ("queue", "queue list [--json]",
     "List the outbound queue (mail for other domains): each message's id, age, size, "
     "state (new, deferred, active, held) and sender, then each recipient with its state "
     "and the last reply of the remote server.  \"maillab mailq\" and the program run as "
     "mailq do the same."),
    ("queue", "queue show ID [--json]",
     "Print one queued message as postcat -q does: its envelope records, then its header "
     "and body."),
    ("queue", "queue flush [ID|DOMAIN]",
     "Try now every message that is not held, one message, or every message waiting for a "
     "domain (as the SMTP command ETRN DOMAIN does).  It needs the running daemon; "
     "without it the exit status is 75."),
    ("queue", "queue hold ID",
     "Keep a message in the queue without trying it, over restarts, until it is released."),
    ("queue", "queue release ID",
     "Release a held message and try it now."),
    ("queue", "queue requeue ID",
     "Start a message's retries over: its attempt count and backoff are reset and it is "
     "tried now.  Its queue lifetime still counts from its arrival."),
    ("queue", "queue delete ID | --all-deferred",
     "Remove one message, or every message that has already been tried, without a bounce."),
    ("mailq", "mailq [--json]", "The same as queue list."),
    ("users", "users list [--json]",
     "List the passwd-file users and, when the unix or pam checker is on, the system users "
     "whose uid is between [auth] first_valid_uid and last_valid_uid."),
    ("users", "users add [--scheme S] [--force] [--uid N] [--gid N] [--home DIR] USER",
     "Add a passwd-file user.  The password is read twice without echo from a terminal, "
     "else as the first line of standard input; it must have at least [auth] "
     "minimum_password_length characters unless --force is given.  The user can log in "
     "at once, without a restart."),
    ("users", "users passwd [--scheme S] [--force] USER",
     "Change a passwd-file user's password, as users add reads it."),
    ("users", "users delete USER",
     "Remove a passwd-file user.  The Maildir is kept."),
    ("passwd", "passwd [--config FILE | --file FILE] [--force] [--scheme S] USER",
     "Add a user to a passwd-file or change their password, also on a passwd-file that "
     "no configuration names.  The file's directory must exist."),
    ("sendmail", "sendmail [-t] [-i] [-oi] [-f SENDER] [-F NAME] [-C CONFIG] [RCPT ...]",
     "Send the message on standard input through the running daemon's local submission "
     "socket ([server] local_submission_socket), as cron and scripts expect of sendmail.  "
     "The sender is the calling user; only root and the daemon's user may set another "
     "with -f.  -t also takes the recipients from To:, Cc: and Bcc: and removes Bcc:.  "
     "The program run as sendmail (a symbolic link to maillab) does the same.  Exit "
     "status as sendmail's: 75 when the daemon is not running, 67 when a recipient is "
     "refused, 77 when the sender is not allowed."),
    ("reload", "reload [--pidfile FILE]",
     "Send SIGHUP to the running daemon, which reloads its DNS zones."),
    ("dkim", "dkim show [DOMAIN] [--json]",
     "List the DKIM selectors of every domain we sign for (or one): algorithm, state "
     "(signing, retired while still published, expired), creation time and the time a "
     "retired selector leaves the zone."),
    ("dkim", "dkim rotate [--no-reload] DOMAIN",
     "Start a new DKIM key generation for a domain; the old selectors stay published "
     "for [mailauth] dkim_record_ttl plus dkim_rotation_grace.  The running daemon is "
     "asked to reload its zones, which publishes the new keys."),
    ("dmarc", "dmarc report [--json] FILE|MAILDIR ...",
     "Summarize DMARC aggregate reports (XML, .gz or .zip, as files or as attachments of "
     "the messages of a Maildir folder): reporter, period and policy, then each source "
     "address with its count, DKIM and SPF results and disposition."),
    ("checkzone", "checkzone ORIGIN FILE",
     "Check a zone file as [dns] would load it: every error and warning with its line; "
     "exit status 0 when it would be served."),
    ("zone", "zone show ORIGIN",
     "Print a zone as the DNS service serves it, as a master file: the zone file's records "
     "and those generated from the configuration ([dns] publish_mail_records), with the "
     "served SOA serial.  It is what dig axfr of the daemon returns once it has loaded the "
     "current files; nothing is changed."),
    ("doctor", "doctor DOMAIN [--json] [--nameserver ADDRESS[:PORT]] [--smtp-port N] [--http-port N]",
     "Check from outside, through the system's resolver (or --nameserver), what a mail "
     "domain needs: MX records and their addresses, PTR records that resolve back, each MX "
     "host's SMTP banner, STARTTLS and certificate names, the RFC 6186 SRV records with "
     "each target reachable, and autoconfig.  Prints what to fix, progress on standard "
     "error while it waits; exit status 1 when something is an error."),
]

EXIT_STATUS = (
    "0 on success; 1 when the thing named does not exist or cannot be changed; 2 on a "
    "usage error; 75 (EX_TEMPFAIL) when the command needs the "
    "running daemon and it does not answer; 78 (EX_CONFIG) when the configuration "
    "cannot be read.  sendmail uses the other sysexits.h codes as sendmail(8) does."
)

FILES = [
    ("/etc/maillab/maillab.ini", "the configuration."),
    ("<state_directory>/control.sock",
     "the daemon's control socket (mode 0600), which maillab queue uses."),
    ("<state_directory>/submit.sock", "the local submission socket maillab sendmail uses."),
    ("<queue_directory>/ID.eml, ID.json",
     "a queued message and its envelope; queue.lock is held by the running daemon."),
]


def version() -> str:
    try:
        from importlib.metadata import version as installed

        return installed("twisted-maillab")
    except Exception:
        return "unknown"


def _sections(commands: dict) -> list[tuple[str, str, str]]:
    documented = {name for name, _, _ in SECTIONS}
    sections = [s for s in SECTIONS if s[0] in commands]
    for name, target in commands.items():
        if name not in documented:
            module = import_module(target.split(":")[0])
            first = (module.__doc__ or name).strip().split("\n\n")[0]
            sections.append((name, name, _plain(" ".join(first.split()))))
    return sections


def _plain(text: str) -> str:
    # Module docstrings are epytext: C{x} and L{x} become x.
    import re

    return re.sub(r"[CLIB]\{([^}]*)\}", r"\1", text)


def _wrap(text: str, indent: int, width: int = 79) -> str:
    import textwrap

    return textwrap.fill(
        text, width, initial_indent=" " * indent, subsequent_indent=" " * indent,
        break_on_hyphens=False,
    )


def helpText(commands: dict) -> str:
    """
    C{maillab --help}.
    """
    lines = [
        "usage: maillab [--version] [--help] COMMAND [ARGS]",
        "",
        _wrap(DESCRIPTION, 0),
        "",
        "Commands:",
    ]
    for _, synopsis, explanation in _sections(commands):
        lines.append(f"  maillab {synopsis}")
        lines.append(_wrap(explanation, 6))
    lines += ["", "Exit status:", _wrap(EXIT_STATUS, 2), "", "See maillab(8) and README.rst."]
    return "\n".join(lines) + "\n"


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    # A line starting with . or ' would be a request.
    return "\\&" + text if text[:1] in (".", "'") else text


def manPage(commands: dict) -> str:
    """
    The maillab(8) page in man(7) macros.
    """
    out = [
        '.TH MAILLAB 8 "" "twisted-maillab" "System Administration"',
        ".SH NAME",
        f"maillab \\- {_roff(SUMMARY)}",
        ".SH SYNOPSIS",
        ".B maillab",
        "[\\-\\-version] [\\-\\-help]",
        ".I command",
        "[\\fIargs\\fR]",
        ".SH DESCRIPTION",
        _roff(DESCRIPTION),
        ".SH COMMANDS",
    ]
    for _, synopsis, explanation in _sections(commands):
        out += [".TP", f".B maillab {_roff(synopsis)}", _roff(explanation)]
    out += [".SH EXIT STATUS", _roff(EXIT_STATUS), ".SH FILES"]
    for name, text in FILES:
        out += [".TP", f".I {_roff(name)}", _roff(text)]
    out += [
        ".SH SEE ALSO",
        ".BR twistd (1),",
        ".BR sendmail (8),",
        ".BR mailq (1),",
        ".BR postsuper (1)",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    from twisted_maillab.cli import COMMANDS

    sys.stdout.write(manPage(COMMANDS))
