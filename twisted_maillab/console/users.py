"""
C{maillab users}: the accounts that may log in and receive mail.

C{list} shows the passwd-file's users and, when the C{unix} or C{pam}
checker is on, the system users in C{[auth] first_valid_uid} ..
C{last_valid_uid}.  C{add}, C{delete} and C{passwd} edit the passwd-file
with the lock and the atomic replacement the daemon's own writes use; the
daemon reads the file again when it changes, so a new user can log in at
once, without a restart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twisted_maillab.auth.passwdfile import removeFromPasswdFile
from twisted_maillab.auth.passwdtool import addPasswordArguments, passwdTarget, setPassword, userExists
from twisted_maillab.console import begin, printJSON, printTable

__all__ = ["main", "listUsers"]

PROG = "maillab users"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="List, add and remove mail users.")
    parser.add_argument("--config", type=Path, help="the maillab ini (default /etc/maillab/maillab.ini)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="passwd-file users and system users in the uid range")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = commands.add_parser("add", help="add a passwd-file user (the password is read as by passwd)")
    addPasswordArguments(add)
    change = commands.add_parser("passwd", help="change a passwd-file user's password")
    addPasswordArguments(change)
    delete = commands.add_parser("delete", help="remove a passwd-file user (the Maildir is kept)")
    delete.add_argument("user")
    return parser


def listUsers(config) -> list[dict]:
    """
    Every account: C{user}, C{source} (C{passwd-file} or C{unix}),
    C{uid}, C{gid}, C{home} and C{scheme} (the password scheme, for
    passwd-file users).
    """
    from twisted_maillab.auth import usernameRules
    from twisted_maillab.auth.hashing import splitScheme
    from twisted_maillab.auth.passwdfile import CachedFile, parsePasswdFile
    from twisted_maillab.auth.sources import parsePasswd

    auth = config.auth
    rules = usernameRules(config)
    users = []
    if auth.passwd_file is not None:
        path = auth.passwd_file
        entries = CachedFile(path, lambda text: parsePasswdFile(text, rules, str(path))).get()
        for entry in sorted(entries.values(), key=lambda e: e.line):
            users.append(
                {
                    "user": entry.user,
                    "source": "passwd-file",
                    "uid": entry.uid,
                    "gid": entry.gid,
                    "home": entry.home,
                    "scheme": splitScheme(entry.password)[0],
                }
            )
    if "unix" in auth.checkers or "pam" in auth.checkers:
        records = CachedFile(auth.unix_passwd, lambda text: parsePasswd(text, rules)).get()
        for record in sorted(records.values(), key=lambda r: r.uid):
            if auth.first_valid_uid <= record.uid <= auth.last_valid_uid:
                users.append(
                    {
                        "user": record.name,
                        "source": "unix",
                        "uid": record.uid,
                        "gid": record.gid,
                        "home": record.home,
                        "scheme": None,
                    }
                )
    return users


def main(argv: list[str], stdin=None, stdout=None, stderr=None) -> int:
    """
    @return: 0, 1 on failure (no such user, unreadable file), 2 on a usage
        error, 78 on a bad config.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = begin(_parser(), argv, PROG, stdout, stderr)
    if isinstance(started, int):
        return started
    args, config = started
    if args.command == "list":
        try:
            users = listUsers(config)
        except OSError as e:
            print(f"{PROG}: {e}", file=stderr)
            return 1
        if args.json:
            printJSON(users, stdout)
        else:
            printTable(
                ["USER", "SOURCE", "UID", "GID", "HOME", "SCHEME"],
                [[u["user"], u["source"], u["uid"], u["gid"], u["home"], u["scheme"]] for u in users],
                stdout,
            )
        return 0
    args.file = None  # users always edits [auth] passwd_file
    if args.command == "delete":
        target = passwdTarget(argparse.Namespace(scheme=None, file=None), config, PROG, stderr)
        if isinstance(target, int):
            return target
        try:
            removed = removeFromPasswdFile(target[0], args.user)
        except (OSError, ValueError) as e:
            print(f"{PROG}: {e}", file=stderr)
            return 1
        if not removed:
            print(f"{PROG}: {args.user}: no such user in {target[0]}", file=stderr)
            return 1
        print(f"{PROG}: deleted {args.user} from {target[0]}", file=stdout)
        return 0
    target = passwdTarget(args, config, PROG, stderr)
    if isinstance(target, int):
        return target
    if args.command == "passwd" and not userExists(target[0], args.user):
        print(f"{PROG}: {args.user}: no such user in {target[0]} (use users add)", file=stderr)
        return 1
    return setPassword(
        args, *target, PROG, stdin, stdout, stderr, onlyNew=args.command == "add"
    )

