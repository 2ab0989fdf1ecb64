"""
C{maillab queue}: the outbound queue, as Postfix's C{mailq}, C{postqueue}
and C{postsuper} show and change it.

When the daemon runs, every command goes through its control socket
(L{twisted_maillab.smtp.queuecontrol}), so a change takes effect in the
running queue at once.  When it does not, the command takes the queue
lock the daemon holds while it runs and works on the spool files itself;
C{flush} then has nothing to flush with and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from twisted_maillab.console import Exit, begin, humanAge, printJSON, printTable
from twisted_maillab.console.channel import (
    QUEUE_ID,
    ControlError,
    DaemonNotRunning,
    ask,
    controlSocket,
    lockQueue,
)

__all__ = ["main", "mailq", "queueDirectory"]


def queueDirectory(config) -> Path:
    """
    The spool directory the daemon's outbound queue uses.
    """
    return config.smtp.queue_directory or (config.server.state_directory / "queue")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Show and change the outbound queue (mail for other domains).",
    )
    parser.add_argument("--config", type=Path, help="the maillab ini (default /etc/maillab/maillab.ini)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="every queued message with its recipients' state")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = commands.add_parser("show", help="one message: envelope, header and body (postcat -q)")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON")
    flush = commands.add_parser("flush", help="try now: every message, one ID, or one DOMAIN")
    flush.add_argument("target", nargs="?", metavar="ID|DOMAIN")
    for name, text in (
        ("hold", "keep a message without trying it (over restarts)"),
        ("release", "release a held message and try it now"),
        ("requeue", "start a message's retries over and try it now"),
    ):
        commands.add_parser(name, help=text).add_argument("id")
    delete = commands.add_parser("delete", help="remove a message (no bounce is sent)")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?")
    which.add_argument("--all-deferred", action="store_true", help="every message already tried")
    return parser


def _offline(config, request: dict):
    """
    Run a request on the spool files, without the daemon, under its lock.

    @raise ControlError: the lock is held (a daemon that does not answer).
    """
    # Twisted only here: the other commands start faster without it.
    from twisted.internet import defer, task
    from twisted.python.failure import Failure

    from twisted_maillab.smtp.outbound import OutboundQueue
    from twisted_maillab.smtp.queuecontrol import runCommand

    directory = queueDirectory(config)
    if not directory.is_dir():
        if request["command"] == "list":
            return []
        raise ControlError(f"{directory}: no queue directory")
    lock = lockQueue(directory)
    if lock is None:
        raise ControlError(
            f"the daemon holds the queue lock but does not answer on {controlSocket(config)}"
        )
    try:
        queue = OutboundQueue(
            directory, reactor=None, clock=task.Clock(), resolver=None,
            hostname=config.server.hostname, runner=lambda f, *args: defer.maybeDeferred(f, *args),
        )
        # Every step runs synchronously (the runner calls at once, the
        # Clock is never advanced), so the Deferred has fired when ensureDeferred returns.
        results = []
        defer.ensureDeferred(runCommand(queue, request)).addBoth(results.append)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]
    finally:
        os.close(lock)


def request(config, message: dict):
    """
    Send a request to the running daemon, or run it on the files when no
    daemon runs.

    @return: C{(result, live)}; C{live} says the daemon ran it.
    """
    try:
        return ask(controlSocket(config), message), True
    except DaemonNotRunning:
        pass
    if message["command"] == "flush":
        raise DaemonNotRunning("the daemon is not running; queued mail is tried when it starts")
    return _offline(config, message), False


def _state(entry: dict) -> str:
    if entry["held"]:
        return "held"
    if entry["active"]:
        return "active"
    return "deferred" if entry["attempts"] else "new"


def printQueue(entries: list[dict], stdout) -> None:
    rows = []
    for entry in entries:
        rows.append([entry["id"], humanAge(entry["age"]), entry["size"], _state(entry), entry["sender"] or "<>"])
        for r in entry["recipients"]:
            reply = f"  ({r['reply']})" if r["reply"] else ""
            rows.append(["", "", "", "", f"  -> {r['address']} {r['status']}{reply}"])
    if not entries:
        print("Mail queue is empty", file=stdout)
        return
    printTable(["ID", "AGE", "SIZE", "STATE", "SENDER / RECIPIENTS"], rows, stdout)
    total = sum(e["size"] for e in entries)
    print(f"-- {(total + 1023) // 1024} Kbytes in {len(entries)} Request{'s' if len(entries) != 1 else ''}.",
          file=stdout)


def show(config, queueId: str, asJSON: bool, stdout, stderr) -> int:
    """
    Print one message as C{postcat -q} does: envelope records, then the
    message (header and body).
    """
    from twisted_maillab.smtp.spool import readState

    if not QUEUE_ID.fullmatch(queueId):
        print(f"maillab queue: {queueId!r} is not a queue id", file=stderr)
        return 2
    directory = queueDirectory(config)
    try:
        message = readState(directory, queueId)
        with open(directory / f"{queueId}.eml", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        print(f"maillab queue: {queueId}: no such message in the queue", file=stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"maillab queue: {queueId}: {e}", file=stderr)
        return 1
    header, _, body = data.partition(b"\n\n")
    text = header.decode("utf-8", "replace")
    if asJSON:
        from dataclasses import asdict

        printJSON(
            {
                "envelope": asdict(message),
                "header": text,
                "body": body.decode("utf-8", "replace"),
            },
            stdout,
        )
        return 0
    arrival = datetime.fromtimestamp(message.created).strftime("%a %b %d %H:%M:%S %Y")
    print(f"*** ENVELOPE RECORDS {queueId} ***", file=stdout)
    print(f"message_size: {message.size}", file=stdout)
    print(f"message_arrival_time: {arrival}", file=stdout)
    print(f"sender: {message.sender}", file=stdout)
    print(f"attempts: {message.attempts}{'  (held)' if message.held else ''}", file=stdout)
    for r in message.recipients:
        print(f"recipient: {r.address}  {r.status}{'  ' + r.reply if r.reply else ''}", file=stdout)
    print(f"*** MESSAGE CONTENTS {queueId} ***", file=stdout)
    print(text, file=stdout)
    print("", file=stdout)
    stdout.write(body.decode("utf-8", "replace"))
    if body and not body.endswith(b"\n"):
        stdout.write("\n")
    print(f"*** MESSAGE FILE END {queueId} ***", file=stdout)
    return 0


def main(argv: list[str], stdout=None, stderr=None, prog: str = "maillab queue") -> int:
    """
    @return: 0, 1 when the message or queue is not there, 2 on a usage
        error, 75 when C{flush} finds no daemon, 78 on a bad config.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = begin(_parser(prog), argv, prog, stdout, stderr)
    if isinstance(started, int):
        return started
    return _execute(*started, prog, stdout, stderr)


def _execute(args, config, prog: str, stdout, stderr) -> int:
    if args.command == "show":
        return show(config, args.id, args.json, stdout, stderr)
    if args.command == "delete":
        message = {"command": "delete-deferred"} if args.all_deferred else {"command": "delete", "id": args.id}
    elif args.command == "flush":
        message = {"command": "flush", "target": args.target}
    elif args.command == "list":
        message = {"command": "list"}
    else:
        message = {"command": args.command, "id": args.id}
    try:
        result, live = request(config, message)
    except DaemonNotRunning as e:
        print(f"{prog}: {e}", file=stderr)
        return Exit.TEMPFAIL
    except KeyError as e:
        print(f"{prog}: {e.args[0]}: no such message in the queue", file=stderr)
        return 1
    except (ControlError, ValueError, OSError) as e:
        print(f"{prog}: {e}", file=stderr)
        return 1
    if args.command == "list":
        if args.json:
            printJSON(result, stdout)
        else:
            printQueue(result, stdout)
        return 0
    print(f"{prog}: {_done(args, result, live)}", file=stdout)
    return 0


def _done(args, result, live: bool) -> str:
    later = "" if live else " (the daemon is not running)"
    if args.command == "flush":
        return f"{result} message(s) scheduled for delivery now"
    if args.command == "delete" and args.all_deferred:
        return f"deleted {len(result)} deferred message(s){later}"
    verb = {"hold": "held", "release": "released", "requeue": "requeued", "delete": "deleted"}[args.command]
    return f"{verb} {args.id}{later}"


def mailq(argv: list[str], stdout=None, stderr=None) -> int:
    """
    C{maillab mailq [--config F] [--json]}, and the program run as
    C{mailq}: C{queue list}.
    """
    parser = argparse.ArgumentParser(prog="mailq", description="List the outbound queue (queue list).")
    parser.add_argument("--config", type=Path, help="the maillab ini (default /etc/maillab/maillab.ini)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = begin(parser, argv, "mailq", stdout, stderr)
    if isinstance(started, int):
        return started
    args, config = started
    args.command = "list"
    return _execute(args, config, "mailq", stdout, stderr)
