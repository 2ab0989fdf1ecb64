"""
C{maillab passwd}: add a user to a Dovecot passwd-file, or change a user's
password, with a strong hash.

    maillab passwd [--file FILE | --config INI] [--scheme SCHEME]
                   [--uid N] [--gid N] [--home DIR] USER

The password is read without echo, twice, from the terminal; when standard
input is not a terminal (scripts, tests) it is the first line of standard
input.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import re
import sys
from pathlib import Path

from twisted_maillab.auth.hashing import WRITE_SCHEMES, cryptBackend, makeHash
from twisted_maillab.auth.passwdfile import updatePasswdFile

__all__ = ["main"]

_USER = re.compile(r"[^\s:/\\@]{1,64}(@[A-Za-z0-9_.-]{1,255})?")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maillab passwd",
        description="Add a user to a passwd-file or change a user's password.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="the passwd-file to edit")
    source.add_argument(
        "--config", type=Path, help="take [auth] passwd_file and password_scheme from this ini"
    )
    parser.add_argument(
        "--scheme", choices=WRITE_SCHEMES, type=str.upper,
        help="password scheme (default: [auth] password_scheme, or ARGON2ID)",
    )
    parser.add_argument("--uid", type=int, help="numeric uid of the mail files' owner")
    parser.add_argument("--gid", type=int, help="numeric gid")
    parser.add_argument("--home", help="home directory (default: under the state directory)")
    parser.add_argument("user", help="user name, or user@domain for one domain only")
    return parser


def _readPassword(stdin, stderr) -> str | None:
    if stdin.isatty():
        first = getpass.getpass("New password: ", stream=stderr)
        second = getpass.getpass("Retype new password: ", stream=stderr)
        if first != second:
            print("maillab passwd: the passwords do not match", file=stderr)
            return None
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def main(argv: list[str], stdin=None, stdout=None, stderr=None) -> int:
    """
    Run the command.

    @return: 0 on success, 1 on failure, 2 on a usage error.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = _parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    scheme = args.scheme
    path = args.file
    if args.config is not None:
        from twisted_maillab.config import ConfigError, load

        try:
            config = load(args.config)
        except ConfigError as e:
            print(f"maillab passwd: {e}", file=stderr)
            return 1
        path = config.auth.passwd_file
        if path is None:
            print(f"maillab passwd: {args.config} has no [auth] passwd_file", file=stderr)
            return 1
        scheme = scheme or config.auth.password_scheme
    if path is None:
        print("maillab passwd: give --file or --config", file=stderr)
        return 2
    if not _USER.fullmatch(args.user):
        print(f"maillab passwd: {args.user!r} is not a valid user name", file=stderr)
        return 2
    if args.home is not None and (":" in args.home or not args.home.startswith("/")):
        print("maillab passwd: --home must be an absolute path without ':'", file=stderr)
        return 2
    password = _readPassword(stdin, stderr)
    if password is None:
        return 1
    if not password:
        print("maillab passwd: empty password refused", file=stderr)
        return 1
    try:
        hashed = makeHash(cryptBackend(), password, scheme or "ARGON2ID")
        existed = _exists(path, args.user)
        updatePasswdFile(path, args.user, hashed, args.uid, args.gid, args.home)
    except (OSError, ValueError, ImportError) as e:
        print(f"maillab passwd: {e}", file=stderr)
        return 1
    action = "changed the password of" if existed else "added"
    print(f"maillab passwd: {action} {args.user} in {path}", file=stdout)
    return 0


def _exists(path: Path, user: str) -> bool:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0] == user for line in text.splitlines())
