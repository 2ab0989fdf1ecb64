"""
DKIM signing (RFC 6376, RFC 8463) of a message in the outbound spool,
thread side: the file is read, signed with the domain's rsa-sha256 and
ed25519-sha256 keys (two signatures, as RFC 8463 3 advises while
verifiers without ed25519 remain), and rewritten with the two
C{DKIM-Signature:} fields first, by rename, before the spool's state file
makes the message visible to the queue.

dkimpy needs the whole message in memory to sign it; the message is at
most C{message_size_limit}, and this runs in a pool thread, never on the
reactor.  The copy with the fields prepended is streamed in 64 KiB chunks.

dkimpy computes RSA signatures with Python's C{pow()} on 1024-bit halves:
about 7 ms each, during which the GIL is held, so the reactor thread
would stall that long twice per message.  L{rsaSign} gives dkimpy the
same RSASSA-PKCS1-v1_5 signature (RFC 8017 8.2.1: deterministic, the
output is identical octet for octet) from OpenSSL through
C{cryptography}, in about a millisecond.
"""

from __future__ import annotations

import os
import threading
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import dkim
from twisted.logger import Logger

from twisted_maillab.mailauth.keys import KeyStore

__all__ = ["Signer", "signingDomains", "fromDomains"]

log = Logger(namespace="twisted_maillab.mailauth")

CHUNK = 64 * 1024
# The header section read to find From: (RFC 5322 3.6.2).
HEADER_LIMIT = 1 << 20


_RSA_KEYS: dict = {}
_RSA_LOCK = threading.Lock()


def rsaSign(hash, private_key) -> bytes:
    """
    C{dkim.crypto.RSASSA_PKCS1_v1_5_sign} (same arguments, same result)
    with OpenSSL: C{hash} a hashlib object, C{private_key} the dict of
    dkimpy's C{parse_pem_private_key}.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    modulus = private_key["modulus"]
    with _RSA_LOCK:
        key = _RSA_KEYS.get(modulus)
    if key is None:
        numbers = rsa.RSAPrivateNumbers(
            p=private_key["prime1"],
            q=private_key["prime2"],
            d=private_key["privateExponent"],
            dmp1=private_key["exponent1"],
            dmq1=private_key["exponent2"],
            iqmp=private_key["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(private_key["publicExponent"], modulus),
        )
        # The consistency check of an RSA key costs about 200 ms with the
        # GIL held; these are the keys the KeyStore generated itself.
        key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
        with _RSA_LOCK:
            if len(_RSA_KEYS) > 64:
                _RSA_KEYS.clear()
            _RSA_KEYS[modulus] = key
    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}[hash.name]
    return key.sign(hash.digest(), padding.PKCS1v15(), Prehashed(algorithm))


# dkimpy looks the function up in its module at each signature.
dkim.RSASSA_PKCS1_v1_5_sign = rsaSign


def signingDomains(config) -> list[str]:
    """
    The domains we sign for and publish records of: C{[mailauth]
    dkim_domains}, else C{[server] domain} and C{[auth] local_domains}.
    """
    domains = config.mailauth.dkim_domains or config.mailDomains()
    seen = []
    for domain in domains:
        domain = domain.lower().rstrip(".")
        if domain not in seen:
            seen.append(domain)
    return seen


def fromDomains(header: bytes) -> list[str]:
    """
    The domains of the addresses of the C{From:} fields of a header
    section (LF or CRLF line ends).
    """
    message = BytesHeaderParser(policy=compat32).parsebytes(header)
    values = [str(v) for v in message.get_all("From", [])]
    return [address.rpartition("@")[2].lower().rstrip(".") for _, address in getaddresses(values) if "@" in address]


class Signer:
    """
    Signs spooled messages whose C{From:} is in one of our domains.

    @param keys: the L{KeyStore}.
    @param domains: the domains we sign for (L{signingDomains}).
    """

    def __init__(self, keys: KeyStore, domains):
        self.keys = keys
        self.domains = [d.lower().rstrip(".") for d in domains]

    def domainFor(self, domain: str) -> str | None:
        """
        The signing domain (d=) for a C{From:} domain: itself or its
        closest parent among ours, so that mail from a host name such as
        MAILER-DAEMON@smtp.example.org aligns (RFC 7489 3.1.1, relaxed).
        """
        best = None
        for ours in self.domains:
            if domain == ours or domain.endswith("." + ours):
                if best is None or len(ours) > len(best):
                    best = ours
        return best

    def signatures(self, message: bytes) -> bytes:
        """
        The C{DKIM-Signature:} fields for a message (LF line ends), empty
        when its From: is not ours.
        """
        header = message.split(b"\n\n", 1)[0][:HEADER_LIMIT]
        domains = fromDomains(header)
        if len(domains) != 1:
            return b""
        domain = self.domainFor(domains[0])
        if domain is None:
            return b""
        fields = []
        for key in self.keys.signingKeys(domain):
            fields.append(
                dkim.sign(
                    message,
                    key.selector.encode("ascii"),
                    domain.encode("ascii"),
                    key.private,
                    signature_algorithm=key.algorithm,
                    linesep=b"\n",
                )
            )
        return b"".join(fields)

    def signFile(self, path) -> bytes:
        """
        Sign the message in C{path} in place (thread side).

        @return: the fields added (empty: not signed).
        """
        with open(path, "rb") as f:
            message = f.read()
        added = self.signatures(message)
        if not added:
            return b""
        temporary = f"{os.fspath(path)}.dkim.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(added)
                for start in range(0, len(message), CHUNK):
                    out.write(message[start : start + CHUNK])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, path)
        return added
