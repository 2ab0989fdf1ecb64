"""
TLS for every listener: one place loads the certificate and builds the
server context used by STARTTLS/STLS and by implicit-TLS listeners.

The context refuses anything older than TLS 1.2 (RFC 8996) and disables
TLS compression (CRIME); Twisted's L{CertificateOptions} already disables
compression and SSLv2/3, and C{raiseMinimumTo} sets the floor.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.ssl import TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory

from twisted_maillab.config import ConfigError, TLSSection

_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}


def _splitPEM(data: bytes, marker: bytes) -> list[bytes]:
    begin = b"-----BEGIN " + marker
    end = b"-----END " + marker
    blocks = []
    start = data.find(begin)
    while start != -1:
        stop = data.index(end, start)
        stop = data.index(b"-----", stop + len(end)) + 5
        blocks.append(data[start:stop])
        start = data.find(begin, stop)
    return blocks


def serverContextFactory(section: TLSSection, configPath: str | Path = "<config>"):
    """
    Build the server context factory from the [tls] section.

    @return: a L{CertificateOptions}, or L{None} when no certificate is
        configured (STARTTLS is then not offered).
    @raise ConfigError: the files cannot be read or do not match.
    """
    if not section.configured:
        return None
    try:
        certData = section.certificate.read_bytes()
        keyData = section.private_key.read_bytes()
    except OSError as e:
        key = "certificate" if e.filename == str(section.certificate) else "private_key"
        raise ConfigError(configPath, "tls", key, f"cannot be read: {e.strerror}")
    certs = _splitPEM(certData, b"CERTIFICATE")
    if not certs:
        raise ConfigError(
            configPath, "tls", "certificate", f"{section.certificate}: no PEM certificate in the file"
        )
    try:
        leaf = crypto.load_certificate(crypto.FILETYPE_PEM, certs[0])
        chain = [crypto.load_certificate(crypto.FILETYPE_PEM, c) for c in certs[1:]]
    except crypto.Error as e:
        raise ConfigError(configPath, "tls", "certificate", f"{section.certificate}: not a valid certificate: {e}")
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, keyData)
    except crypto.Error as e:
        raise ConfigError(configPath, "tls", "private_key", f"{section.private_key}: not a valid private key: {e}")
    try:
        options = ssl.CertificateOptions(
            privateKey=key,
            certificate=leaf,
            extraCertChain=chain,
            raiseMinimumTo=_VERSIONS[section.minimum_version],
        )
        # The context is built lazily; build it now so a key that does
        # not match its certificate stops the start, not the first client.
        options.getContext()
        return options
    except Exception as e:  # OpenSSL reports a key/cert mismatch here
        raise ConfigError(
            configPath, "tls", "private_key", f"{section.private_key} does not match the certificate: {e}"
        )


def implicitTLSFactory(contextFactory, wrappedFactory):
    """
    Wrap a protocol factory so that connections start with the TLS
    handshake (ports 465, 995, 993; RFC 8314).
    """
    return TLSMemoryBIOFactory(contextFactory, False, wrappedFactory)


def ensureSelfSigned(certificate: Path, privateKey: Path, hostname: str) -> bool:
    """
    Create a self-signed certificate for C{hostname} at these paths if either
    file is missing.  The key is written with mode 0600.

    @return: True if a new pair was written.
    """
    if certificate.exists() and privateKey.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    for path in (certificate, privateKey):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyBytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(privateKey, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(keyBytes)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True
