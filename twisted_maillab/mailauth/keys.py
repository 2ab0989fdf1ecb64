"""
The DKIM signing keys, in C{<state_directory>/dkim/<domain>/}: for each
generation an rsa-2048 key (RFC 6376 3.3.3 asks verifiers for up to 2048
bits) and an ed25519 key (RFC 8463), each under its own selector,
C{<generation>-rsa} and C{<generation>-ed25519}, and C{selectors.json},
the list of generations with their creation and retirement times.

Generation is idempotent and atomic: the DNS publisher (at a zone load)
and the SMTP service (at its first signature) may both ask for the keys
of a domain that has none, in threads of one process or in two processes
(C{maillab dkim rotate} beside the daemon), so every change is made under
an exclusive C{flock} of C{<domain>/.lock}, re-reads the state once it
holds the lock, and writes each file by rename (mode 0600).

Rotation (C{maillab dkim rotate}) starts a new generation and retires the
current one: its selectors stay published until the record's TTL plus
C{[mailauth] dkim_rotation_grace} have passed, so mail signed just before
the rotation still verifies wherever it is still in transit or queued.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from twisted_maillab.atomicwrite import replaceFile

__all__ = ["Generation", "KeyStore", "Key", "ALGORITHMS"]

# (selector suffix, DKIM k= tag, dkimpy signature_algorithm)
ALGORITHMS = (("rsa", "rsa", b"rsa-sha256"), ("ed25519", "ed25519", b"ed25519-sha256"))

STATE = "selectors.json"


@dataclass(frozen=True)
class Key:
    """
    One signing key: its selector, the C{k=} type, the algorithm dkimpy
    signs with, the private key as dkimpy reads it, and the public key
    record's C{p=} value.
    """

    selector: str
    keyType: str
    algorithm: bytes
    private: bytes
    public: str

    def record(self) -> str:
        """
        The key record (RFC 6376 3.6.1).
        """
        return f"v=DKIM1; k={self.keyType}; p={self.public}"


@dataclass(frozen=True)
class Generation:
    """
    One generation of keys of a domain.

    @ivar retired: when it was rotated out, or L{None} while it signs.
    """

    name: str
    created: float
    retired: float | None

    def selectors(self) -> list[str]:
        return [f"{self.name}-{suffix}" for suffix, _, _ in ALGORITHMS]


def _newRSA() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode("ascii")


def _newEd25519() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    # RFC 8463 4.2 / dkimpy: the 32-octet seed in base64.
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed) + b"\n", base64.b64encode(public).decode("ascii")


class KeyStore:
    """
    The keys of every domain we sign for (thread side: every method does
    blocking file I/O and key generation).

    @param directory: C{<state_directory>/dkim}.
    @param ttl: the published key records' TTL.
    @param grace: how long after C{ttl} a retired generation stays published.
    @param now: the wall clock (tests pass their own).
    """

    def __init__(self, directory: Path, ttl: float = 3600.0, grace: float = 172800.0, now=time.time):
        self.directory = Path(directory)
        self.ttl = ttl
        self.grace = grace
        self.now = now
        self._lock = threading.Lock()
        self._cache: dict[str, tuple] = {}

    # -- state --------------------------------------------------------------

    def _domainDir(self, domain: str) -> Path:
        domain = domain.lower().rstrip(".")
        if not domain or "/" in domain or domain.startswith("."):
            raise ValueError(f"not a domain: {domain!r}")
        return self.directory / domain

    def _read(self, path: Path) -> list[Generation]:
        try:
            with open(path / STATE, "rb") as f:
                data = json.loads(f.read(1 << 20))
        except FileNotFoundError:
            return []
        return [Generation(g["name"], g["created"], g.get("retired")) for g in data["generations"]]

    def _write(self, path: Path, generations: list[Generation]) -> None:
        data = {"generations": [g.__dict__ for g in generations]}
        replaceFile(path / STATE, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n", mode=0o600, owner=self._owner)

    def _owner(self, fd: int) -> None:
        # Made by root (maillab dkim rotate, check-config) for a daemon
        # that runs as the state directory's owner: give it the files.
        if os.geteuid() == 0:
            owner = os.stat(self.directory.parent)
            os.fchown(fd, owner.st_uid, owner.st_gid)

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._owner(fd)
        finally:
            os.close(fd)

    def _locked(self, path: Path):
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._mkdir(self.directory)
        self._mkdir(path)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._owner(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _unlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def generations(self, domain: str) -> list[Generation]:
        """
        The generations of C{domain}, oldest first (none before the first
        L{ensure}).
        """
        return self._read(self._domainDir(domain))

    def _newGeneration(self, path: Path, generations: list[Generation]) -> Generation:
        now = self.now()
        base = "ml" + time.strftime("%Y%m%d", time.gmtime(now))
        taken = {g.name for g in generations}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}n{n}"
        for (suffix, _, _), make in zip(ALGORITHMS, (_newRSA, _newEd25519)):
            private, public = make()
            replaceFile(path / f"{name}-{suffix}.key", private, mode=0o600, owner=self._owner)
            replaceFile(path / f"{name}-{suffix}.pub", public.encode() + b"\n", mode=0o600, owner=self._owner)
        return Generation(name, now, None)

    def ensure(self, domain: str) -> Generation:
        """
        The signing generation of C{domain}, created if it has none.
        """
        path = self._domainDir(domain)
        generations = self._read(path)
        if any(g.retired is None for g in generations):
            return [g for g in generations if g.retired is None][-1]
        fd = self._locked(path)
        try:
            # Another thread or process may have made it meanwhile.
            generations = self._read(path)
            active = [g for g in generations if g.retired is None]
            if active:
                return active[-1]
            generation = self._newGeneration(path, generations)
            self._write(path, generations + [generation])
            return generation
        finally:
            self._unlock(fd)

    def rotate(self, domain: str) -> Generation:
        """
        Start a new generation; the current one is retired (published
        until L{publishedUntil}).
        """
        path = self._domainDir(domain)
        fd = self._locked(path)
        try:
            generations = self._read(path)
            generation = self._newGeneration(path, generations)
            now = self.now()
            kept = [g if g.retired is not None else Generation(g.name, g.created, now) for g in generations]
            self._write(path, kept + [generation])
            return generation
        finally:
            self._unlock(fd)

    def publishedUntil(self, generation: Generation) -> float | None:
        """
        When a retired generation's records stop being published (L{None}:
        the signing one, always published).
        """
        if generation.retired is None:
            return None
        return generation.retired + self.ttl + self.grace

    def state(self, generation: Generation) -> str:
        """
        C{signing}, C{retired} (still published) or C{expired}.
        """
        until = self.publishedUntil(generation)
        if until is None:
            return "signing"
        return "retired" if self.now() < until else "expired"

    # -- keys ---------------------------------------------------------------

    def keys(self, domain: str, generation: Generation) -> list[Key]:
        path = self._domainDir(domain)
        keys = []
        for suffix, keyType, algorithm in ALGORITHMS:
            selector = f"{generation.name}-{suffix}"
            with open(path / f"{selector}.key", "rb") as f:
                private = f.read(65536)
            with open(path / f"{selector}.pub", "rb") as f:
                public = f.read(65536).decode("ascii").strip()
            keys.append(Key(selector, keyType, algorithm, private, public))
        return keys

    def signingKeys(self, domain: str) -> list[Key]:
        """
        The keys to sign with now (created at the first call), read again
        only when C{selectors.json} changes (a rotation by the console).
        """
        path = self._domainDir(domain)
        try:
            stamp = os.stat(path / STATE).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            cached = self._cache.get(domain)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        generation = self.ensure(domain)
        keys = self.keys(domain, generation)
        stamp = os.stat(path / STATE).st_mtime_ns
        with self._lock:
            self._cache[domain] = (stamp, keys)
        return keys

    def publishedKeys(self, domain: str) -> list[Key]:
        """
        Every key whose record is published now: the signing generation's
        (created if missing) and the retired ones within their TTL and grace.
        """
        self.ensure(domain)
        keys = []
        for generation in self.generations(domain):
            if self.state(generation) != "expired":
                keys += self.keys(domain, generation)
        return keys
