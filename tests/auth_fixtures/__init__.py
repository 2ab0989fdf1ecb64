"""
Helpers for the auth tests: real crypt(3) hashes made when the tests run,
passwd/shadow fixture files, and configs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from twisted_maillab.config import loadString


def mkpasswd(method: str, password: str) -> str:
    """
    A hash made by Debian's mkpasswd (package whois): an implementation
    independent of ours, so the tests verify hashes we did not write.
    """
    tool = shutil.which("mkpasswd")
    if tool is None:
        raise AssertionError("mkpasswd is missing: apt-get install whois")
    result = subprocess.run(
        [tool, "-m", method, "--stdin"], input=password, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


TODAY = int(time.time() // 86400)

# name -> (password, method, shadow fields after the hash)
SYSTEM_USERS = {
    "yes": ("yes-pass", "yescrypt", f"{TODAY - 10}:0:99999:7:::"),
    "sha": ("sha-pass", "sha512crypt", f"{TODAY - 10}:0:99999:7:::"),
    "md5": ("md5-pass", "md5crypt", f"{TODAY - 10}:0:99999:7:::"),
    "sha256": ("sha256-pass", "sha256crypt", f"{TODAY - 10}:0:99999:7:::"),
    "blf": ("blf-pass", "bcrypt", f"{TODAY - 10}:0:99999:7:::"),
    "edouard": ("s3cret", "yescrypt", f"{TODAY - 10}:0:99999:7:::"),
    # Account expired yesterday (shadow field 8).
    "expired": ("exp-pass", "sha512crypt", f"{TODAY - 10}:0:99999:7::{TODAY - 1}:"),
    # Password older than its maximum age (field 5).
    "aged": ("aged-pass", "sha512crypt", f"{TODAY - 100}:0:30:7:::"),
    # Must change the password at next login (last change 0).
    "mustchange": ("mc-pass", "sha512crypt", "0:0:99999:7:::"),
    # Account that expires in the future: fine.
    "later": ("later-pass", "sha512crypt", f"{TODAY - 10}:0:99999:7::{TODAY + 30}:"),
}


def writeSystemFiles(directory: Path) -> tuple[Path, Path]:
    """
    passwd and shadow files with real hashes for L{SYSTEM_USERS} plus
    locked, empty and out-of-range accounts.
    """
    passwd = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin"]
    shadow = [
        "root:" + mkpasswd("sha512crypt", "root-pass") + f":{TODAY}:0:99999:7:::",
        "daemon:*:19000:0:99999:7:::",
    ]
    uid = 1001
    for name, (password, method, rest) in SYSTEM_USERS.items():
        passwd.append(f"{name}:x:{uid}:{uid}:{name}:/home/{name}:/bin/bash")
        shadow.append(f"{name}:{mkpasswd(method, password)}:{rest}")
        uid += 1
    hashed = mkpasswd("sha512crypt", "locked-pass")
    passwd += [
        f"locked:x:{uid}:{uid}::/home/locked:/bin/bash",
        f"starred:x:{uid + 1}:{uid + 1}::/home/starred:/bin/bash",
        f"empty:x:{uid + 2}:{uid + 2}::/home/empty:/bin/bash",
        # Old-style: the hash in passwd itself, no shadow line.
        f"oldstyle:{mkpasswd('sha512crypt', 'old-pass')}:{uid + 3}:{uid + 3}::/home/oldstyle:/bin/sh",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    ]
    shadow += [
        f"locked:!{hashed}:{TODAY - 10}:0:99999:7:::",
        f"starred:*:{TODAY - 10}:0:99999:7:::",
        f"empty::{TODAY - 10}:0:99999:7:::",
        f"nobody:{mkpasswd('sha512crypt', 'nobody-pass')}:{TODAY}:0:99999:7:::",
    ]
    passwdPath = directory / "passwd"
    shadowPath = directory / "shadow"
    passwdPath.write_text("\n".join(passwd) + "\n")
    shadowPath.write_text("\n".join(shadow) + "\n")
    return passwdPath, shadowPath


def makeConfig(directory: Path, auth: str = "", store: str = "", server: str = ""):
    """
    A config rooted in C{directory} with C{[auth]} body C{auth}.
    """
    text = (
        "[server]\nhostname = smtp.domaineel.rt\ndomain = domaineel.rt\n"
        f"state_directory = {directory / 'state'}\n{server}\n"
        f"[auth]\n{auth}\n"
        f"[store]\n{store}\n"
    )
    return loadString(text, directory / "maillab.ini")
