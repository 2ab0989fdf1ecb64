"""
Certificate checks on a finished handshake: PKIX (RFC 5280, through
OpenSSL's C{X509_verify_cert}) against a trust store, and the reference
identity of RFC 6125 (through C{service_identity}, which Twisted's own
TLS client uses), with the result types of TLS-RPT (RFC 8460 4.3.2).
"""

from __future__ import annotations

import ssl as stdlibssl
from pathlib import Path

from OpenSSL import crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname

__all__ = ["CertificateFailure", "trustStore", "verifyChain", "checkName"]

# X509_V_ERR_CERT_HAS_EXPIRED / X509_V_ERR_CERT_NOT_YET_VALID
_EXPIRED = (10, 9)


class CertificateFailure(Exception):
    """
    @ivar resultType: the RFC 8460 4.3.2 result type.
    """

    def __init__(self, resultType: str, reason: str):
        super().__init__(reason)
        self.resultType = resultType


def trustStore(caFile: Path | None = None) -> list[bytes]:
    """
    The PEM certificates of the trust anchors: C{caFile}, else the
    system's default bundle.  Read once at start-up.
    """
    if caFile is None:
        paths = stdlibssl.get_default_verify_paths()
        caFile = paths.cafile or paths.openssl_cafile
        if not caFile or not Path(caFile).exists():
            return []
    data = Path(caFile).read_bytes()
    blocks = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = data.find(begin)
    while start != -1:
        stop = data.index(end, start) + len(end)
        blocks.append(data[start:stop])
        start = data.find(begin, stop)
    return blocks


def _store(anchors) -> crypto.X509Store:
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(anchor)
    return store


def verifyChain(chain: list, anchors: list) -> None:
    """
    PKIX: the leaf (C{chain[0]}, pyOpenSSL certificates as the peer sent
    them) chains to one of C{anchors} (pyOpenSSL certificates).

    @raise CertificateFailure: C{certificate-expired} or
        C{certificate-not-trusted}.
    """
    if not chain:
        raise CertificateFailure("certificate-not-trusted", "no certificate presented")
    context = crypto.X509StoreContext(_store(anchors), chain[0], chain[1:])
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as e:
        code = e.errors[0] if e.errors else None
        if code in _EXPIRED:
            raise CertificateFailure("certificate-expired", f"certificate expired or not yet valid: {e}") from None
        raise CertificateFailure("certificate-not-trusted", f"certificate not trusted: {e}") from None


def checkName(leaf, names: list[str]) -> None:
    """
    RFC 6125 6.4: the leaf (a pyOpenSSL certificate) is valid for one of
    C{names} (DNS-ID in subjectAltName, a wildcard in the leftmost label).

    @raise CertificateFailure: C{certificate-host-mismatch}.
    """
    certificate = leaf.to_cryptography()
    for name in names:
        try:
            verify_certificate_hostname(certificate, name)
            return
        except (VerificationError, ValueError):
            continue
        except Exception:
            # service_identity raises CertificateError for a certificate
            # without any DNS-ID.
            continue
    raise CertificateFailure("certificate-host-mismatch", f"certificate name does not match {' or '.join(names)}")


def loadAnchors(pems: list[bytes]) -> list:
    """
    pyOpenSSL certificates from PEM blocks.
    """
    return [crypto.load_certificate(crypto.FILETYPE_PEM, pem) for pem in pems]
