"""
Delivery to aliases(5) C{|command} and C{/file} targets, when the
administrator enabled them (C{allow_alias_commands}, C{allow_alias_files}).

Both run as a child process under the C{default_privs} user (Postfix's
setting of the same name; C{nobody} by default) when maillab runs as root,
so a command or a file path in the aliases file never acts with root's
rights.  A command gets the message on standard input and the
environment Postfix's local(8) gives (C{SENDER}, C{RECIPIENT},
C{ORIGINAL_RECIPIENT}, C{HOME=/}, a fixed C{PATH}); a file gets the message
appended in mbox format by a short shell script (L{MBOX_APPEND}: flock,
mboxrd quoting, sync).  Exit status
0 is success, 75 (EX_TEMPFAIL) or a timeout is a temporary failure, any
other status a permanent one.
"""

from __future__ import annotations

import os
import pwd

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol

__all__ = ["ProcessTarget", "spawnTarget"]

EX_TEMPFAIL = 75

# Append stdin to the mbox file $1 for sender $2: a "From " line, the body
# with "From " at a line start quoted as ">From " (mboxrd), a blank line;
# under flock(1) (30 s, then EX_TEMPFAIL), fsynced with sync(1).  Opening
# the file fails with EX_CANTCREAT (73).  It runs as default_privs, so the
# kernel decides what may be written.
MBOX_APPEND = (
    'umask 077; exec 9>>"$1" || exit 73; '
    "flock -w 30 9 || exit 75; "
    '{ printf "From %s %s\\n" "$2" "$(LC_ALL=C date -u "+%a %b %e %H:%M:%S %Y")" && '
    "sed 's/^\\(>*From \\)/>\\1/' && echo; } >&9 || exit 75; "
    'sync "$1" || exit 75'
)


class ProcessTarget(ProcessProtocol):
    """
    One child process receiving one message on standard input.

    @ivar done: fires with C{(ok, temporary, detail)} when it exited.
    """

    def __init__(self, clock, timeLimit: float, label: str):
        self.clock = clock
        self.timeLimit = timeLimit
        self.label = label
        self.done = defer.Deferred()
        self._stderr = b""
        self._timer = None
        self._timedOut = False

    def connectionMade(self):
        self._timer = self.clock.callLater(self.timeLimit, self._kill)

    def _kill(self):
        self._timedOut = True
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass

    def outReceived(self, data):
        pass

    def errReceived(self, data):
        # Keep the end of what it said, for the log and the reply.
        self._stderr = (self._stderr + data)[-300:]

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def finish(self) -> defer.Deferred:
        self.transport.closeStdin()
        out = defer.Deferred()
        self.done.addBoth(lambda result: (out.callback(result), result)[1])
        return out

    def abort(self) -> None:
        self._kill()

    def processEnded(self, reason):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        code = getattr(reason.value, "exitCode", None)
        detail = self._stderr.decode("utf-8", "replace").strip().replace("\n", " ")
        if self._timedOut:
            self.done.callback((False, True, f"{self.label}: time limit exceeded"))
        elif code == 0:
            self.done.callback((True, False, ""))
        elif code == EX_TEMPFAIL:
            self.done.callback((False, True, f"{self.label}: temporary failure {detail}".strip()))
        else:
            self.done.callback((False, False, f"{self.label}: exit status {code} {detail}".strip()))


def _identity(user: str):
    if os.geteuid() != 0:
        # Not root: we can only be ourselves.
        return None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def spawnTarget(reactor, clock, kind: str, value: str, *, sender: str, recipient: str, original: str,
                user: str = "nobody", timeLimit: float = 1000.0) -> ProcessTarget:
    """
    Start the child for a C{command} or C{file} target.

    @raise KeyError: C{user} does not exist.
    """
    uid, gid = _identity(user)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/",
        "SHELL": "/bin/sh",
        "LOGNAME": user,
        "USER": user,
        "SENDER": sender,
        "RECIPIENT": recipient,
        "ORIGINAL_RECIPIENT": original,
    }
    if kind == "command":
        argv = ["/bin/sh", "-c", value]
        label = f"command {value!r}"
    else:
        # The path and sender are arguments, never part of the script text.
        argv = ["/bin/sh", "-c", MBOX_APPEND, "mboxappend", value, sender or "MAILER-DAEMON"]
        label = f"file {value!r}"
    target = ProcessTarget(clock, timeLimit, label)
    reactor.spawnProcess(target, argv[0], argv, env=env, path="/", uid=uid, gid=gid)
    return target
