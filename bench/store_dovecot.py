"""
Start Dovecot's tools on a private config for benchmarks: C{doveadm -c
<config>} over one Maildir, no running Dovecot, no system config touched.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class DovecotTool:
    """
    @param maildir: the Maildir (INBOX) to point Dovecot at.
    @param uid: the owner uid Dovecot drops to (mail_uid).
    """

    def __init__(self, maildir: Path, uid: int, gid: int, user: str = "bench", home: Path | None = None):
        self.binary = shutil.which("doveadm")
        if self.binary is None:
            raise SystemExit("doveadm not found: apt-get install -y dovecot-imapd dovecot-pop3d")
        self.dir = Path(tempfile.mkdtemp(prefix="maillab-bench-dovecot-"))
        (self.dir / "run").mkdir()
        (self.dir / "state").mkdir()
        self.maildir = maildir
        self.user = user
        self.home = home or maildir.parent
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(
            f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
mail_location = maildir:{maildir}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
first_valid_gid = 0
ssl = no
namespace inbox {{
  inbox = yes
  separator = /
}}
"""
        )

    def timed(self, *args) -> tuple[float, int, str]:
        """
        Run doveadm; return (wall seconds, peak RSS in KiB, stdout).
        """
        env = {"USER": self.user, "HOME": str(self.home), "PATH": os.environ.get("PATH", "")}
        started = time.perf_counter()
        process = subprocess.Popen(
            [self.binary, "-c", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        out, err = process.communicate()
        # wait4 already happened inside communicate(); use the children's
        # rusage difference instead
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)}: {err.decode(errors='replace')}")
        return elapsed, _childPeak(), out.decode()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _childPeak() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
