"""
C{maillab passwd}: add a user to a Dovecot passwd-file, or change a user's
password, with a strong hash.

    maillab passwd [--file FILE | --config INI] [--scheme SCHEME] [--force]
                   [--uid N] [--gid N] [--home DIR] USER

The password is read without echo, twice, from the terminal; when standard
input is not a terminal (scripts, tests) it is the first line of standard
input.  It must have at least [auth] minimum_password_length characters
(8 without --config) unless --force is given.  The passwd-file's directory
must exist: a mistyped path is refused rather than created.
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

__all__ = ["main", "addPasswordArguments", "passwdTarget", "setPassword", "userExists"]

DEFAULT_MINIMUM_LENGTH = 8

_USER = re.compile(r"[^\s:/\\@]{1,64}(@[A-Za-z0-9_.-]{1,255})?")


def addPasswordArguments(parser: argparse.ArgumentParser) -> None:
    """
    The options C{maillab passwd}, C{maillab users add} and C{maillab users
    passwd} share.
    """
    parser.add_argument(
        "--scheme", choices=WRITE_SCHEMES, type=str.upper,
        help="password scheme (default: [auth] password_scheme, or ARGON2ID)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="accept a password shorter than [auth] minimum_password_length",
    )
    parser.add_argument("--uid", type=int, help="numeric uid of the mail files' owner")
    parser.add_argument("--gid", type=int, help="numeric gid")
    parser.add_argument("--home", help="home directory (default: under the state directory)")
    parser.add_argument("user", help="user name, or user@domain for one domain only")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maillab passwd",
        description="Add a user to a passwd-file or change a user's password.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="the passwd-file to edit")
    source.add_argument(
        "--config", type=Path, help="take the [auth] passwd-file settings from this ini"
    )
    addPasswordArguments(parser)
    return parser


def _readPassword(stdin, stderr, prog: str) -> str | None:
    if stdin.isatty():
        first = getpass.getpass("New password: ", stream=stderr)
        second = getpass.getpass("Retype new password: ", stream=stderr)
        if first != second:
            print(f"{prog}: the passwords do not match", file=stderr)
            return None
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def passwdTarget(args, config, prog: str, stderr):
    """
    The passwd-file, scheme and minimum length to use: from C{--file}, or
    from the config's C{[auth]}.

    @return: C{(path, scheme, minimum)}, or an exit status after printing
        the error.
    """
    if config is None:
        if args.file is None:
            print(f"{prog}: give --file or --config", file=stderr)
            return 2
        return args.file, args.scheme, DEFAULT_MINIMUM_LENGTH
    path = config.auth.passwd_file
    if path is None:
        print(f"{prog}: {config.path} has no [auth] passwd_file", file=stderr)
        return 1
    return path, args.scheme or config.auth.password_scheme, config.auth.minimum_password_length


def setPassword(args, path: Path, scheme: str | None, minimum: int, prog: str,
                stdin, stdout, stderr, onlyNew: bool = False) -> int:
    """
    Read a password, check it and the target, and write the entry: what
    C{maillab passwd} and C{maillab users add/passwd} do.

    @param onlyNew: refuse an existing user (C{users add}).
    @return: the exit status.
    """
    if not _USER.fullmatch(args.user):
        print(f"{prog}: {args.user!r} is not a valid user name", file=stderr)
        return 2
    if args.home is not None and (":" in args.home or not args.home.startswith("/")):
        print(f"{prog}: --home must be an absolute path without ':'", file=stderr)
        return 2
    path = Path(path)
    if not path.parent.is_dir():
        # A typo in --file must not leave a new directory tree behind.
        print(f"{prog}: {path.parent}: no such directory", file=stderr)
        return 1
    existed = userExists(path, args.user)
    if onlyNew and existed:
        print(f"{prog}: {args.user} already exists in {path}", file=stderr)
        return 1
    password = _readPassword(stdin, stderr, prog)
    if password is None:
        return 1
    if not password:
        print(f"{prog}: empty password refused", file=stderr)
        return 1
    if len(password) < minimum and not args.force:
        print(
            f"{prog}: the password is shorter than {minimum} characters (--force to accept it)",
            file=stderr,
        )
        return 1
    try:
        hashed = makeHash(cryptBackend(), password, scheme or "ARGON2ID")
        updatePasswdFile(path, args.user, hashed, args.uid, args.gid, args.home)
    except (OSError, ValueError, ImportError) as e:
        print(f"{prog}: {e}", file=stderr)
        return 1
    action = "changed the password of" if existed else "added"
    print(f"{prog}: {action} {args.user} in {path}", file=stdout)
    return 0


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
    config = None
    if args.config is not None:
        from twisted_maillab.config import ConfigError, load

        try:
            config = load(args.config)
        except ConfigError as e:
            print(f"maillab passwd: {e}", file=stderr)
            return 1
    target = passwdTarget(args, config, "maillab passwd", stderr)
    if isinstance(target, int):
        return target
    return setPassword(args, *target, "maillab passwd", stdin, stdout, stderr)


def userExists(path: Path, user: str) -> bool:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0] == user for line in text.splitlines())
