"""
DANE for SMTP (RFC 7672): TLSA records at C{_25._tcp.<mx host>}, trusted
only when the resolver validated them (the AD bit of its answer, RFC 4035
3.2.3, RFC 6840 5.7), and matched against the certificate chain.

Why a query of our own: Twisted's C{client.Resolver} returns records
without the header of the answer, so the AD bit is lost, and it sends
queries with AD clear, to which a validating resolver may answer with AD
clear (RFC 6840 5.7).  L{queryWithAD} sends one query with AD set to the
server the queue's resolver uses (C{pickServer}) and returns the whole
answer L{twisted.names.dns.Message}.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.names import dns

from twisted_maillab.tlspolicy.certs import CertificateFailure, checkName, verifyChain

__all__ = ["TLSA", "TLSARecord", "queryWithAD", "lookupTLSA", "TLSAResult", "matchChain"]

TLSA = 52  # RFC 6698 7.1

# RFC 7672 3.1: only DANE-TA(2) and DANE-EE(3) are usable for SMTP.
DANE_TA = 2
DANE_EE = 3

# A DNS answer over UDP is at most 64 KiB; EDNS is not used, so 512 octets
# are expected, and a truncated answer is asked again over TCP.
_MAX_ANSWER = 65535


@dataclass(frozen=True)
class TLSARecord:
    usage: int
    selector: int
    matching: int
    data: bytes

    @property
    def usable(self) -> bool:
        # RFC 7672 3.1.3: PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP; RFC
        # 6698 2.1.2-2.1.3: selectors 0/1, matching types 0/1/2.
        return self.usage in (DANE_TA, DANE_EE) and self.selector in (0, 1) and self.matching in (0, 1, 2)

    def matches(self, certificate) -> bool:
        """
        @param certificate: a pyOpenSSL certificate.
        """
        cert = certificate.to_cryptography()
        if self.selector == 0:
            content = cert.public_bytes(serialization.Encoding.DER)
        else:
            content = cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        if self.matching == 1:
            content = hashlib.sha256(content).digest()
        elif self.matching == 2:
            content = hashlib.sha512(content).digest()
        return content == self.data

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"


@dataclass(frozen=True)
class TLSAResult:
    """
    @ivar records: the TLSA records found (empty: none, or not secure).
    @ivar secure: the answer had the AD bit.
    @ivar failure: why the lookup failed (RFC 7672 2.2: the delivery is
        deferred), or L{None}.
    """

    records: tuple = ()
    secure: bool = False
    failure: str | None = None


class _OneQuery(DatagramProtocol):
    def __init__(self, data: bytes, address, messageId: int, result: defer.Deferred):
        self.data = data
        self.address = address
        self.messageId = messageId
        self.result = result

    def startProtocol(self):
        self.transport.write(self.data, self.address)

    def datagramReceived(self, data, address):
        # Only the server asked, only our ID (RFC 5452 9.1).
        if address[:2] != self.address[:2] or self.result.called or len(data) > _MAX_ANSWER:
            return
        message = dns.Message()
        try:
            message.fromStr(data)
        except Exception:
            return
        if message.id != self.messageId or not message.answer:
            return
        self.result.callback(message)


class _OneTCPQuery(Protocol):
    """
    The same query over TCP (RFC 1035 4.2.2: a two-octet length before
    each message), after a truncated UDP answer (RFC 7766 5).
    """

    def __init__(self, data: bytes, messageId: int, result: defer.Deferred):
        self.data = data
        self.messageId = messageId
        self.result = result
        self.buffer = b""

    def connectionMade(self):
        self.transport.write(struct.pack("!H", len(self.data)) + self.data)

    def dataReceived(self, data):
        self.buffer += data
        if len(self.buffer) < 2:
            return
        (length,) = struct.unpack("!H", self.buffer[:2])
        if len(self.buffer) < 2 + length:
            return
        message = dns.Message()
        try:
            message.fromStr(self.buffer[2 : 2 + length])
        except Exception as e:
            self._fail(e)
            return
        if message.id != self.messageId:
            self._fail(ValueError("answer for another query"))
            return
        if not self.result.called:
            self.result.callback(message)
        self.transport.loseConnection()

    def _fail(self, reason):
        if not self.result.called:
            self.result.errback(reason)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.result.called:
            self.result.errback(ConnectionError("connection closed before the answer"))


def _query(name: str, rtype: int) -> tuple[int, bytes]:
    messageId = random.randint(0, 0xFFFF)
    query = dns.Message(messageId, recDes=1, authenticData=1)
    query.queries = [dns.Query(name, rtype, dns.IN)]
    return messageId, query.toStr()


async def queryTCPWithAD(reactor, clock, server: tuple[str, int], name: str, rtype: int, timeout: float = 10.0):
    """
    L{queryWithAD} over TCP.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
    from twisted.internet.protocol import Factory

    messageId, data = _query(name, rtype)
    result = defer.Deferred()
    host, port = server[:2]
    endpoint = (TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint)(reactor, host, port, timeout=timeout)
    protocol = await endpoint.connect(Factory.forProtocol(lambda: _OneTCPQuery(data, messageId, result)))
    timer = clock.callLater(timeout, lambda: result.called or result.errback(defer.TimeoutError(name)))
    try:
        return await result
    finally:
        if timer.active():
            timer.cancel()
        protocol.transport.loseConnection()


def queryWithAD(reactor, clock, server: tuple[str, int], name: str, rtype: int, timeout: float = 10.0):
    """
    One query with RD and AD set (RFC 6840 5.7: ask the validating
    resolver to say whether it validated) over UDP.

    @return: a Deferred firing with the answer L{dns.Message}, or failing
        with L{defer.TimeoutError}.
    """
    messageId, data = _query(name, rtype)
    result = defer.Deferred()
    host, port = server[:2]
    family = ":" in host
    protocol = _OneQuery(data, (host, port), messageId, result)
    listening = reactor.listenUDP(0, protocol, interface="::" if family else "")
    timer = clock.callLater(timeout, lambda: result.called or result.errback(defer.TimeoutError(name)))

    def done(value):
        if timer.active():
            timer.cancel()
        listening.stopListening()
        return value

    return result.addBoth(done)


async def _ask(reactor, clock, resolver, name: str, rtype: int):
    # Twisted's client.Resolver names its server; another IResolver gives
    # no way to ask for the AD bit.
    pickServer = getattr(resolver, "pickServer", None)
    server = pickServer() if pickServer is not None else None
    if server is None:
        raise LookupError("no name server to ask for the AD bit")
    message = await queryWithAD(reactor, clock, server, name, rtype)
    if message.trunc:
        # A full-certificate (selector 0, matching type 0) record set
        # does not fit 512 octets.
        message = await queryTCPWithAD(reactor, clock, server, name, rtype)
    return message


async def isSecure(reactor, clock, resolver, name: str, rtype: int) -> bool:
    """
    Whether the validating resolver says the C{rtype} records of C{name}
    (or their absence) are authentic: RFC 7672 2.2.1 uses the TLSA records
    of MX hosts only when the MX RRset itself is secure, else an attacker
    who forged it could name hosts of his own.
    """
    try:
        message = await _ask(reactor, clock, resolver, name, rtype)
    except Exception:
        return False
    return message.rCode in (dns.OK, dns.ENAME) and bool(message.authenticData)


async def lookupTLSA(reactor, clock, resolver, host: str, port: int = 25) -> TLSAResult:
    """
    The TLSA records of C{_<port>._tcp.<host>} (RFC 7672 2.2), with
    whether the resolver validated them.
    """
    name = f"_{port}._tcp.{host}"
    try:
        message = await _ask(reactor, clock, resolver, name, TLSA)
    except Exception as e:
        # DANE was promised (the resolver validates): defer.
        return TLSAResult(failure=f"TLSA lookup for {name} failed: {e.__class__.__name__}")
    if message.rCode == dns.ENAME:
        return TLSAResult(secure=bool(message.authenticData))
    if message.rCode != dns.OK:
        # SERVFAIL from a validating resolver: bogus or unreachable
        # (RFC 7672 2.2: the delivery is deferred).
        return TLSAResult(failure=f"TLSA lookup for {name} failed: rcode {message.rCode}")
    records = []
    for rr in message.answers:
        if rr.type != TLSA:
            continue
        data = rr.payload.data if isinstance(rr.payload, dns.UnknownRecord) else b""
        if len(data) < 4:
            return TLSAResult(failure=f"malformed TLSA record at {name}")
        records.append(TLSARecord(data[0], data[1], data[2], bytes(data[3:])))
    return TLSAResult(records=tuple(records), secure=bool(message.authenticData))


def matchChain(records, chain: list, hostnames: list[str]) -> None:
    """
    RFC 7672 3.1: the chain (pyOpenSSL certificates, leaf first)
    matches a usable record: a DANE-EE(3) record the leaf, with no name
    or expiry check (3.1.1); or a DANE-TA(2) record a certificate of the
    chain, from which the leaf then verifies, and the leaf's name is one
    of C{hostnames} (3.1.2, 3.2.2).

    @raise CertificateFailure: nothing matched.
    """
    if not chain:
        raise CertificateFailure("certificate-not-trusted", "no certificate presented")
    usable = [r for r in records if r.usable]
    leaf = chain[0]
    for record in usable:
        if record.usage == DANE_EE and record.matches(leaf):
            return
    last = None
    for record in usable:
        if record.usage != DANE_TA:
            continue
        for anchor in chain:
            if not record.matches(anchor):
                continue
            try:
                verifyChain(chain if anchor is not leaf else [leaf], [anchor])
                checkName(leaf, hostnames)
                return
            except CertificateFailure as e:
                last = e
    if last is not None:
        raise last
    raise CertificateFailure("certificate-not-trusted", "no TLSA record matches the certificate chain")


def spkiDigest(pem: bytes) -> bytes:
    """
    SHA-256 of the SubjectPublicKeyInfo of a PEM certificate: the data of a
    C{3 1 1} TLSA record (RFC 7671 5.1 recommends DANE-EE(3) SPKI(1)
    SHA2-256(1)).
    """
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, pem).to_cryptography()
    return hashlib.sha256(
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()
