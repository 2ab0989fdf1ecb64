"""
The seed's lab as two test hosts: a "server" running C{twistd maillab} on
the shipped C{etc/maillab.ini} (standard ports) and a "neighbour" whose
DNS is that server.

As root, each host is a network namespace joined by a veth pair with
addresses from 192.0.2.0/24 (TEST-NET-1, RFC 5737) and no other route, so
nothing leaves the two namespaces.  Without namespaces (not root), the
same lab runs on 127.0.0.1 with free ports, and the clients are given the
port of each listener; the output says which form ran
(C{MAILLAB_E2E_LOOPBACK=1} asks for the loopback form as root).  Setting
C{MAILLAB_E2E_REQUIRE_NETNS=1} (as C{.ci/run} does) makes the loopback
fallback a failure instead.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support import freePort, sha512crypt, stopProcess

REPOSITORY = Path(__file__).resolve().parents[2]
SHIPPED_INI = REPOSITORY / "etc" / "maillab.ini"
SEED_ZONE = Path(__file__).with_name("seed_zone.txt")
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MAILLAB = str(BIN / "maillab")

SERVER_ADDRESS = "192.0.2.1"
NEIGHBOUR_ADDRESS = "192.0.2.2"
DOMAIN = "domaineel.rt"
# utilisateur's password is the seed's ("a001 login utilisateur 1234").
PASSWORDS = {"edouard": "Ed0uard-lab-pw", "utilisateur": "1234"}

# The listeners of the shipped config, by section, with their standard port.
LISTENERS = {
    "smtp": 25, "submission": 587, "submissions": 465, "pop3": 110,
    "pop3s": 995, "imap": 143, "imaps": 993, "dns": 53, "http": 443,
}

_announced = set()


def correctedZone(address: str) -> str:
    """
    The seed's zone with its two defects corrected and C{serveur}'s
    address set to the server host's: the SOA gets an RNAME after its
    MNAME, and C{#} comments become C{;} comments (RFC 1035 section 5.1).
    """
    text = SEED_ZONE.read_text()
    text = text.replace("serveur.root.domaineel.rt.", "serveur.domaineel.rt. root.domaineel.rt.")
    text = text.replace("#", ";").replace("192.168.1.25", address)
    return text


def overrideIni(text: str, overrides: dict[str, dict[str, str]]) -> str:
    """
    C{text} (an ini file) with the keys of C{overrides} replaced: each
    section's overriding keys are written right after its header, and its
    own lines for those keys (with their continuation lines) are dropped.
    """
    out, section, skipping = [], None, False
    pending = {name: dict(keys) for name, keys in overrides.items()}
    for line in text.splitlines():
        header = re.match(r"\[([^\]]+)\]\s*$", line)
        if header:
            section, skipping = header.group(1), False
            out.append(line)
            out.extend(f"{key} = {value}" for key, value in pending.pop(section, {}).items())
            continue
        if skipping and line[:1] in (" ", "\t") and line.strip():
            continue
        skipping = False
        key = re.match(r"([A-Za-z_]+)\s*=", line)
        if key and section in overrides and key.group(1) in overrides[section]:
            skipping = True
            continue
        out.append(line)
    for name, keys in pending.items():
        out.append(f"[{name}]")
        out.extend(f"{key} = {value}" for key, value in keys.items())
    return "\n".join(out) + "\n"


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


class Lab:
    """
    The two hosts, the server's files under a temporary directory, and the
    running server.  Everything is torn down by the test case's cleanups,
    on failure too.
    """

    def __init__(self, testCase, start: bool = True):
        self.testCase = testCase
        self.root = Path(testCase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.process = None
        self.netns = self._makeHosts()
        form = ("network namespaces %s (server %s) and %s (neighbour %s)"
                % (self.serverNs, SERVER_ADDRESS, self.neighbourNs, NEIGHBOUR_ADDRESS)
                if self.netns else "loopback (127.0.0.1, free ports): " + self.why)
        if form.split()[0] not in _announced:
            _announced.add(form.split()[0])
            print(f"\ne2e lab form: {form}", file=sys.stderr)
        self.address = SERVER_ADDRESS if self.netns else "127.0.0.1"
        self.ports = dict(LISTENERS) if self.netns else {name: freePort() for name in LISTENERS}
        self._writeFiles()
        if start:
            self.start()

    # -- hosts

    def _makeHosts(self) -> bool:
        self.why = ""
        if os.environ.get("MAILLAB_E2E_LOOPBACK") == "1":
            self.why = "MAILLAB_E2E_LOOPBACK=1"
        elif os.geteuid() != 0 or shutil.which("ip") is None:
            self.why = "not root" if os.geteuid() != 0 else "no ip command (iproute2)"
        else:
            tag = secrets.token_hex(4)
            self.serverNs, self.neighbourNs = f"mlab-{tag}-srv", f"mlab-{tag}-nbr"
            self.testCase.addCleanup(self._destroyHosts)
            try:
                _ip("netns", "add", self.serverNs)
            except subprocess.CalledProcessError as e:
                self.why = e.stderr.decode().strip()
            else:
                self._wire(tag)
                return True
        if os.environ.get("MAILLAB_E2E_REQUIRE_NETNS") == "1":
            raise AssertionError(f"MAILLAB_E2E_REQUIRE_NETNS=1 but no network namespaces: {self.why}")
        return False

    def _wire(self, tag: str) -> None:
        _ip("netns", "add", self.neighbourNs)
        serverIf, neighbourIf = f"ml{tag}s", f"ml{tag}n"
        _ip("link", "add", serverIf, "type", "veth", "peer", "name", neighbourIf)
        for ns, interface, address in ((self.serverNs, serverIf, SERVER_ADDRESS),
                                       (self.neighbourNs, neighbourIf, NEIGHBOUR_ADDRESS)):
            _ip("link", "set", interface, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", interface)
            _ip("-n", ns, "link", "set", interface, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # ip netns exec bind-mounts /etc/netns/<name>/resolv.conf over
            # /etc/resolv.conf: both hosts ask the lab's DNS, never the
            # machine's resolver (the server's own PTR lookups included).
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {SERVER_ADDRESS}\n")

    def _destroyHosts(self) -> None:
        if self.process is not None:
            self.stop()
        for ns in (self.serverNs, self.neighbourNs):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)

    # -- the server's files

    def _writeFiles(self) -> None:
        root = self.root
        (root / "zone").write_text(correctedZone(self.address))
        (root / "aliases").write_text("postmaster: edouard\n")
        passwd, shadow = [], []
        today = (datetime.date.today() - datetime.date(1970, 1, 1)).days
        for uid, (user, password) in enumerate(PASSWORDS.items(), start=1000):
            home = root / "home" / user
            home.mkdir(parents=True)
            passwd.append(f"{user}:x:{uid}:{uid}:{user}:{home}:/bin/sh")
            shadow.append(f"{user}:{sha512crypt(password)}:{today}:0:99999:7:::")
        (root / "passwd").write_text("\n".join(passwd) + "\n")
        (root / "shadow").write_text("\n".join(shadow) + "\n")
        (root / "shadow").chmod(0o600)
        overrides = {
            "server": {"state_directory": str(root / "var")},
            "tls": {"certificate": str(root / "var/tls/cert.pem"), "private_key": str(root / "var/tls/key.pem"),
                    "generate_self_signed": "yes"},
            "auth": {"unix_passwd": str(root / "passwd"), "unix_shadow": str(root / "shadow")},
            "dns": {"zones": f"{DOMAIN}:{root / 'zone'}"},
            "smtp": {"alias_maps": str(root / "aliases")},
        }
        if not self.netns:
            for name, port in self.ports.items():
                overrides.setdefault(name, {})["listen"] = f"tcp:{port}:interface=127.0.0.1"
            # On loopback the neighbour is 127.0.0.1: it must be neither a
            # trusted network nor allowed plaintext logins, as 192.0.2.2 is.
            overrides["smtp"]["mynetworks"] = "192.0.2.0/24"
            for name in ("smtp", "pop3", "imap"):
                overrides[name]["plaintext_on_loopback"] = "no"
        self.ini = root / "maillab.ini"
        self.ini.write_text(overrideIni(SHIPPED_INI.read_text(), overrides))
        self.cert = root / "var/tls/cert.pem"

    def maildir(self, user: str) -> Path:
        return self.root / "home" / user / "Maildir"

    def messages(self, user: str) -> list[bytes]:
        """
        Every message in C{user}'s INBOX (new/ and cur/), sorted by file name.
        """
        found = []
        for sub in ("new", "cur"):
            folder = self.maildir(user) / sub
            if folder.is_dir():
                found.extend(sorted(folder.iterdir()))
        return [path.read_bytes() for path in found]

    # -- the server

    def onServer(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.serverNs, *argv] if self.netns else list(argv)

    def start(self) -> None:
        """
        Start the server and wait until every listener is bound.  Its
        output goes to C{twistd.log} (a file, not a pipe: a malformed-input
        pass makes more log than a pipe holds, and a full pipe would stop
        the server).
        """
        self.logFile = self.root / "twistd.log"
        offset = self.logFile.stat().st_size if self.logFile.exists() else 0
        with open(self.logFile, "ab") as output:
            self.process = subprocess.Popen(
                self.onServer([TWISTD, "-n", "--pidfile=", "maillab", "--config", str(self.ini)]),
                stdout=output, stderr=subprocess.STDOUT, cwd=self.root,
            )
        if not self.netns:
            self.testCase.addCleanup(self.stop)
        patterns = [rf"\b{name} listening on" for name in LISTENERS]

        def started():
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n{self.log(offset)}")
            return all(re.search(pattern, self.log(offset)) for pattern in patterns)

        self.waitFor(started, timeout=60, what=f"{patterns} in the server's log")

    def log(self, offset: int = 0) -> str:
        """
        The server's output (all of its runs) from C{offset}.
        """
        with open(self.logFile, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process is not None:
            stopProcess(self.process)
            self.process = None

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process = None

    # -- the neighbour

    def neighbourArgv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.neighbourNs, *argv] if self.netns else list(argv)

    def onNeighbour(self, argv: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """
        Run a client on the neighbour host; its output as text.
        """
        return subprocess.run(self.neighbourArgv(argv), capture_output=True, text=True, timeout=timeout, **kwargs)

    def dig(self, *query: str) -> str:
        """
        dig's answer from the neighbour, which uses the server as its DNS
        (resolv.conf in the namespace form; @127.0.0.1 -p on loopback).
        """
        where = [] if self.netns else ["@127.0.0.1", "-p", str(self.ports["dns"])]
        result = self.onNeighbour(["dig", "+norecurse", *where, *query], timeout=30)
        if result.returncode != 0:
            raise AssertionError(f"dig {query}: {result.stdout}{result.stderr}")
        return result.stdout

    def clientArgv(self, name: str, *args, onServer: bool = False) -> list[str]:
        """
        The command line running one of L{tests.e2e.clients}' clients on
        the neighbour host (from the repository's directory), or on the
        server host itself against its loopback address.
        """
        argv = [sys.executable, "-m", "tests.e2e.clients", name, "127.0.0.1" if onServer else self.address,
                *(str(self.ports[listener]) for listener in LISTENERS), *map(str, args)]
        return self.onServer(argv) if onServer else self.neighbourArgv(argv)

    def client(self, name: str, *args, timeout: float = 120, onServer: bool = False):
        """
        Run a client of L{tests.e2e.clients} to its end; the JSON it printed.
        """
        result = subprocess.run(self.clientArgv(name, *args, onServer=onServer), capture_output=True, text=True,
                                timeout=timeout, cwd=REPOSITORY)
        if result.returncode != 0:
            raise AssertionError(f"client {name} failed:\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def waitFor(self, predicate, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")
