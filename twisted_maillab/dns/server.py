"""
The authoritative server: UDP and TCP protocols over one L{DNSServer}
that answers from precomputed responses, zone transfers (RFC 5936,
RFC 1995), NOTIFY (RFC 1996) and response rate limiting.
"""

from __future__ import annotations

import random
import struct

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from twisted_maillab.dns import names as N
from twisted_maillab.dns import wire
from twisted_maillab.dns.answer import ResponseTable, Zones, lookup, shapeKey
from twisted_maillab.dns.names import RRset
from twisted_maillab.dns.wire import Answer, Edns, FormatError
from twisted_maillab.addresses import clientAddress, inNetworks

log = Logger()

# RFC 5936 2.2: a transfer is a series of messages; NSD fills them to
# about 16 KB, which keeps each one far below the 65535 TCP limit.
AXFR_MESSAGE_SIZE = 16384
TCP_MAX_MESSAGE = 65535
# Seconds between two log lines about refused NOTIFY messages.
NOTIFY_LOG_INTERVAL = 60.0


def _serialGreater(a: int, b: int) -> bool:
    """
    RFC 1982 3.2 serial number arithmetic: whether C{a} > C{b}.
    """
    return a != b and ((a < b and b - a > 2**31) or (a > b and a - b < 2**31))


class RateLimiter:
    """
    Response rate limiting per client prefix for UDP (the scheme of BIND's
    RRL): each (prefix, response kind) account earns C{rate} credits per
    second up to C{rate}; a response costs one.  Without credit the
    response is dropped, except every C{slip}-th which goes out empty with
    TC so a real client retries over TCP (where no spoofing is possible).

    @param clock: an L{IReactorTime} (a L{task.Clock} in tests).
    """

    def __init__(self, clock, rate: int, slip: int = 2, window: float = 15.0, ipv4Prefix: int = 24, ipv6Prefix: int = 56, maxEntries: int = 100_000):
        self.clock = clock
        self.rate = float(rate)
        self.slip = slip
        self.window = window
        self.ipv4Shift = 32 - ipv4Prefix
        self.ipv6Shift = 128 - ipv6Prefix
        self.maxEntries = maxEntries
        self.accounts: dict = {}
        self.dropped = 0
        self.slipped = 0
        self._lastLog = float("-inf")

    def prefix(self, host: str) -> int:
        address = clientAddress(host)
        if address is None:
            raise ValueError(f"{host!r} is not an IP address")
        if address.version == 4:
            return int(address) >> self.ipv4Shift
        return (1 << 128) | (int(address) >> self.ipv6Shift)

    def check(self, host: str, kind: bytes) -> str:
        """
        @return: C{"send"}, C{"slip"} (send a truncated empty response) or
            C{"drop"}.
        """
        now = self.clock.seconds()
        accountKey = (self.prefix(host), kind)
        account = self.accounts.get(accountKey)
        if account is None:
            if len(self.accounts) >= self.maxEntries:
                self._expire(now)
            account = self.accounts[accountKey] = [self.rate, now, 0]
        else:
            account[0] = min(self.rate, account[0] + (now - account[1]) * self.rate)
            account[1] = now
        account[0] -= 1
        if account[0] >= 0:
            return "send"
        # Debt is bounded so a client that stops is forgiven after the window.
        account[0] = max(account[0], -self.rate * self.window)
        account[2] += 1
        if account[2] == 1 and now - self._lastLog >= 1.0:
            # At most one line a second: a spoofed flood from many prefixes
            # must not turn into a flood of log lines.
            self._lastLog = now
            log.info("rate limiting responses to {prefix} ({kind!r})", prefix=host, kind=kind[:40])
        if self.slip and account[2] % self.slip == 0:
            self.slipped += 1
            return "slip"
        self.dropped += 1
        return "drop"

    def _expire(self, now: float) -> None:
        stale = [k for k, v in self.accounts.items() if now - v[1] > self.window]
        for k in stale:
            del self.accounts[k]
        if len(self.accounts) >= self.maxEntries:
            self.accounts.clear()


class DNSServer:
    """
    Protocol-independent core: holds the current zones and response table
    and turns query bytes into response bytes.

    @ivar zones: the L{Zones} served; replaced whole on reload.
    @ivar responses: the L{ResponseTable} for those zones.
    @ivar clock: an L{IReactorTime}, for rate-limiting log lines.
    @ivar notifiesRefused: NOTIFY messages refused since start.
    """

    def __init__(self, zones: Zones, udpSize: int = 1232, allowTransfer=(), rateLimiter: RateLimiter | None = None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.notifiesRefused = 0
        self._notifiesLogged = 0
        self._lastNotifyLog = float("-inf")
        self.udpSize = udpSize
        self.allowTransfer = tuple(allowTransfer)
        self.rateLimiter = rateLimiter
        self.rcodes = [0] * 16  # responses sent per RCODE (header's low 4 bits), for /metrics
        self.install(zones)

    def install(self, zones: Zones, responses: ResponseTable | None = None) -> None:
        """
        Start answering from C{zones} (atomically: one attribute swap).
        """
        if responses is None:
            responses = ResponseTable(zones, self.udpSize)
            responses.precompute()
        self.state = (zones, responses)

    @property
    def zones(self) -> Zones:
        return self.state[0]

    @property
    def responses(self) -> ResponseTable:
        return self.state[1]

    def transferAllowed(self, host: str) -> bool:
        """
        Whether C{host} is in C{allow_transfer} (RFC 5936 6: access control
        is the operator's; the default is nobody).
        """
        return inNetworks(host, self.allowTransfer)

    def respond(self, data: bytes, host: str, udp: bool):
        """
        Answer one message that the fast path did not.

        @return: a list of response messages, a L{Transfer} (TCP only) to
            send message by message, or L{None} to send nothing.
        """
        if len(data) < 12 or data[2] & 0x80:
            return None  # RFC 1035 4.1.1: never answer a response
        ident, flags = struct.unpack_from("!HH", data)
        opcode = (flags >> 11) & 0xF
        try:
            q = wire.parseQuery(data)
        except FormatError:
            return [wire.headerOnly(ident, flags, wire.FORMERR)]
        if opcode == wire.OPCODE_NOTIFY:
            return [self.notifyReceived(q, flags, host)]
        if opcode != wire.OPCODE_QUERY:
            return [wire.headerOnly(ident, flags, wire.NOTIMP)]
        an, ns = struct.unpack_from("!HH", data, 6)
        if an or (ns and not (q.qtype == N.IXFR and ns == 1)):
            # RFC 1035 4.1.2-4.1.3: a query asks, it carries no answer or
            # authority records; only IXFR puts the client's SOA in
            # authority (RFC 1995 3).  FORMERR, as NSD.
            return [wire.headerOnly(ident, flags, wire.FORMERR)]
        edns = q.edns
        if edns is not None and edns.version != 0:
            # RFC 6891 6.1.3: BADVERS, with our version (0) in the OPT.
            return [wire.encode(q.name, q.qtype, q.qclass, Answer(wire.BADVERS, aa=False), Edns(edns.size, 0, edns.do), self.udpSize, 65535, ident, flags)]
        limit = self.limitFor(edns) if udp else TCP_MAX_MESSAGE
        if q.qtype in (N.AXFR, N.IXFR) and q.qclass == N.IN:
            return self.transfer(data, q, host, udp, limit)
        responses = self.responses
        if _plainQuestion(q):
            key = N.toWire(N.key(q.name)) + struct.pack("!HH", q.qtype, q.qclass) + shapeKey(edns, limit)
            entry = responses.table.get(key) or responses.build(q.name, q.qtype, q.qclass, edns, limit)
            return [patch(entry[0], data, q.nameEnd - 1)]
        # A compressed question name: answer without the stored table.
        if q.qclass in (N.IN, N.ANY):
            result = lookup(responses.zones, q.name, q.qtype, q.qclass == N.ANY)
        else:
            result = Answer(wire.REFUSED, aa=False)
            result.ede = wire.EDE_NOT_SUPPORTED
        return [wire.encode(q.name, q.qtype, q.qclass, result, edns, self.udpSize, limit, ident, flags)]

    def limitFor(self, edns: Edns | None) -> int:
        """
        The largest UDP response: 512 without EDNS (RFC 1035 4.2.1), else
        the client's size bounded by ours (RFC 6891 6.2.5), never below 512.
        """
        if edns is None:
            return 512
        return min(max(edns.size, 512), self.udpSize)

    def notifyReceived(self, q, flags: int, host: str) -> bytes:
        """
        A NOTIFY (RFC 1996) for a zone we serve comes from no configured
        primary (we are the primary of every zone): REFUSED, header only
        with the query's AA, as NSD answers a NOTIFY it does not allow
        (RFC 1996 3.10 lets a secondary ignore an unknown sender).  Logged
        at most once a L{NOTIFY_LOG_INTERVAL}, with the count since: anyone
        can send NOTIFYs, a line per message would be a log flood.
        """
        zone = self.zones.byOrigin.get(N.key(q.name))
        if zone is None or q.qclass != N.IN:
            result = Answer(wire.NOTAUTH, aa=False)
            result.opcode = wire.OPCODE_NOTIFY
            return wire.encode(q.name, q.qtype, q.qclass, result, q.edns, self.udpSize, 65535, q.id, flags)
        self.notifiesRefused += 1
        now = self.clock.seconds()
        if now - self._lastNotifyLog >= NOTIFY_LOG_INTERVAL:
            self._lastNotifyLog = now
            log.info(
                "refused {count} NOTIFY message(s) (last for {zone} from {host}): we are the zone's primary",
                count=self.notifiesRefused - self._notifiesLogged, zone=N.toText(q.name), host=host,
            )
            self._notifiesLogged = self.notifiesRefused
        return wire.headerOnly(q.id, flags, wire.REFUSED, flags & wire.AA)

    def transfer(self, data: bytes, q, host: str, udp: bool, limit: int):
        """
        AXFR (RFC 5936) and IXFR (RFC 1995), over TCP, to C{allow_transfer}.
        """
        zone = self.zones.byOrigin.get(N.key(q.name))
        allowed = self.transferAllowed(host)
        if udp and q.qtype == N.AXFR:
            # RFC 5936 4.2: AXFR is TCP only; NSD answers NOTIMP.
            return [wire.encode(q.name, q.qtype, q.qclass, Answer(wire.NOTIMP, aa=False), q.edns, self.udpSize, limit, q.id, q.flags)]
        if zone is None or not allowed:
            if zone is not None:
                log.info("refused {type} of {zone} to {host}: not in allow_transfer", type=N.typeText(q.qtype), zone=N.toText(zone.origin), host=host)
            result = Answer(wire.REFUSED, aa=False)
            if zone is None:
                result.ede = wire.EDE_NOT_AUTHORITATIVE
            return [wire.encode(q.name, q.qtype, q.qclass, result, q.edns, self.udpSize, limit, q.id, q.flags)]
        soa = zone.soa
        if q.qtype == N.IXFR:
            clientSerial = _ixfrSerial(data)
            if clientSerial is None:
                # RFC 1995 3: the query carries the client's SOA; NSD too
                # answers FORMERR without it.
                return [wire.headerOnly(q.id, q.flags, wire.FORMERR)]
            if udp or not _serialGreater(zone.serial, clientSerial):
                # RFC 1995 2 and 4: up to date, or over UDP: our SOA only,
                # which makes the client fall back to TCP/AXFR.
                result = Answer(wire.NOERROR, aa=True)
                result.answer = [(zone.origin, soa)]
                return [wire.encode(q.name, q.qtype, q.qclass, result, q.edns, self.udpSize, limit, q.id, q.flags)]
        log.info("{type} of {zone} serial {serial} to {host}", type=N.typeText(q.qtype), zone=N.toText(zone.origin), serial=zone.serial, host=host)
        # RFC 1995 4: without history an IXFR is answered as an AXFR.
        return Transfer(zone, q.name, q.qtype, q.id, q.flags)


def _plainQuestion(q) -> bool:
    """
    Whether the question name was written without compression, so a
    stored response can be patched with it.
    """
    return q.nameEnd - 12 == len(N.toWire(q.name))


def _ixfrSerial(data: bytes) -> int | None:
    """
    The client's serial from the SOA in an IXFR query's authority section.
    """
    try:
        _, offset = wire.readName(data, 12)
        offset += 4
        ns = struct.unpack_from("!H", data, 8)[0]
        if ns < 1:
            return None
        _, offset = wire.readName(data, offset)
        rtype = struct.unpack_from("!H", data, offset)[0]
        if rtype != N.SOA:
            return None
        offset += 10
        _, offset = wire.readName(data, offset)
        _, offset = wire.readName(data, offset)
        return struct.unpack_from("!I", data, offset)[0]
    except (ValueError, IndexError, struct.error):
        return None


def patch(template: bytes, data: bytes, nameEnd: int) -> bytes:
    """
    A stored response for this query: its ID and RD copied (RFC 1035
    4.1.1; NSD 4.6 does not copy CD) and its question name as the client
    wrote it (names compressed against it keep the client's case, as NSD).
    """
    return (
        data[:2]
        + bytes((template[2] | (data[2] & 0x01),))
        + template[3:12]
        + data[12 : nameEnd + 1]
        + template[nameEnd + 1 :]
    )


class Transfer:
    """
    A zone transfer as a lazy series of messages: SOA, every other record,
    SOA (RFC 5936 2.2), each message filled to about L{AXFR_MESSAGE_SIZE}.
    Iterating encodes one message per step, so a large zone is sent a
    message at a time without holding the reactor.
    """

    def __init__(self, zone, qname, qtype: int, ident: int, flags: int):
        self.zone = zone
        self.qname = qname
        self.qtype = qtype
        self.ident = ident
        self.flags = flags

    def _records(self):
        soa = self.zone.soa
        yield soa.owner, soa
        for rrset in self.zone.rrsets():
            if rrset.rtype == N.SOA and N.key(rrset.owner) == self.zone.originKey:
                continue
            for rdata in rrset.rdatas:
                single = RRset(rrset.owner, rrset.rtype, rrset.ttl)
                single.rdatas = [rdata]
                yield rrset.owner, single
        yield soa.owner, soa

    def __iter__(self):
        batch: list = []
        size = 0
        for owner, rrset in self._records():
            estimate = len(N.toWire(owner)) + 10 + len(rrset.rdatas[0].wire())
            if batch and size + estimate > AXFR_MESSAGE_SIZE:
                yield self._encode(batch)
                batch, size = [], 0
            batch.append((owner, rrset))
            size += estimate
        if batch:
            yield self._encode(batch)

    def _encode(self, batch) -> bytes:
        result = Answer(wire.NOERROR, aa=True)
        result.answer = batch
        return wire.encode(self.qname, self.qtype, N.IN, result, None, 512, TCP_MAX_MESSAGE, self.ident, self.flags)


def axfrMessages(zone, qname, qtype: int, ident: int, flags: int) -> list[bytes]:
    """
    Every message of a transfer at once (see L{Transfer}).
    """
    return list(Transfer(zone, qname, qtype, ident, flags))


def fastKey(data: bytes, udpSize: int, tcp: bool = False):
    """
    The response-table key of a plain query, without decoding it: QUERY
    opcode, QR clear, one question written without compression, no answer
    or authority records, at most one OPT of version 0.  Zone transfers
    are never plain.

    @return: C{(key, offset of the name's terminating zero)} or L{None}.
    """
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None
    i = 12
    try:
        while True:
            length = data[i]
            if length == 0:
                break
            if length > 63:
                return None
            i += length + 1
        if data[i + 1] == 0 and data[i + 2] in (251, 252):
            return None
    except IndexError:
        return None
    ar = data[10:12]
    if ar == b"\x00\x00":
        if n != i + 5:
            return None
        shape = b"\x00\xff\xff" if tcp else b"\x00\x02\x00"
    elif ar == b"\x00\x01" and n >= i + 16:
        o = i + 5
        if data[o : o + 3] != b"\x00\x00\x29" or data[o + 6] != 0 or n != o + 11 + (data[o + 9] << 8 | data[o + 10]):
            return None
        if tcp:
            limit = 65535
        else:
            size = data[o + 3] << 8 | data[o + 4]
            limit = udpSize
            if size < limit:
                limit = 512 if size < 512 else size
        shape = bytes((2 if data[o + 7] & 0x80 else 1, limit >> 8, limit & 0xFF))
    else:
        return None
    return data[12 : i + 1].lower() + data[i + 1 : i + 5] + shape, i


class DNSDatagramProtocol(DatagramProtocol):
    """
    UDP: answer from the response table without decoding the message when
    it is a plain query (one question, no compression, at most an OPT).
    """

    noisy = False

    def __init__(self, server: DNSServer):
        self.server = server

    def startProtocol(self):
        # Write straight to the socket: udp.Port.write re-validates the
        # address on every datagram, a third of the cost of an answer.
        self._sendto = self.transport.socket.sendto

    def datagramReceived(self, data: bytes, addr) -> None:
        n = len(data)
        if n > 16 and not data[2] & 0xF8 and data[4:10] == b"\x00\x01\x00\x00\x00\x00":
            ar = data[10:12]
            if ar == b"\x00\x00":
                # The question fills the message: no need to walk labels, a
                # malformed name cannot equal a key of the table.
                qend = n - 4
                shape = b"\x00\x02\x00"
            elif ar == b"\x00\x01" and data[n - 11 : n - 8] == b"\x00\x00\x29" and data[n - 2 :] == b"\x00\x00" and data[n - 5] == 0:
                # OPT without options at the end (RFC 6891 6.1.2).
                qend = n - 15
                size = data[n - 8] << 8 | data[n - 7]
                limit = self.server.udpSize
                if size < limit:
                    limit = 512 if size < 512 else size
                shape = bytes((2 if data[n - 4] & 0x80 else 1, limit >> 8, limit & 0xFF))
            else:
                found = fastKey(data, self.server.udpSize)
                if found is None:
                    return self._slow(data, addr)
                qend = found[1] + 1
                shape = found[0][-3:]
            entry = self.server.state[1].table.get(data[12:qend].lower() + data[qend : qend + 4] + shape)
            if entry is not None:
                limiter = self.server.rateLimiter
                if limiter is not None:
                    verdict = limiter.check(addr[0], entry[1])
                    if verdict != "send":
                        if verdict == "slip":
                            self.transport.write(_slipped(data, qend - 1), addr)
                        return
                self.server.rcodes[entry[2][0][1] & 15] += 1
                try:
                    self._sendto(data[:2] + entry[2][data[2] & 1] + data[12:qend] + entry[3], addr)
                except OSError:
                    pass  # UDP: a full socket buffer drops the answer, as the network may
                return
        self._slow(data, addr)

    def _slow(self, data: bytes, addr) -> None:
        try:
            responses = self.server.respond(data, addr[0], udp=True)
        except Exception:
            log.failure("answering a UDP query from {host}", host=addr[0])
            return
        if not responses:
            return
        limiter = self.server.rateLimiter
        if limiter is not None:
            # Account it like the stored response it just became, if any.
            found = fastKey(data, self.server.udpSize)
            entry = self.server.state[1].table.get(found[0]) if found else None
            verdict = limiter.check(addr[0], entry[1] if entry else b"other")
            if verdict == "drop":
                return
            if verdict == "slip":
                self.transport.write(_slipped(data, None), addr)
                return
        self.server.rcodes[responses[0][3] & 15] += 1
        self.transport.write(responses[0], addr)


def _slipped(data: bytes, nameEnd: int | None) -> bytes:
    """
    An empty TC response (RFC 1035 4.2.1 / BIND RRL "slip"): a real
    client retries over TCP.
    """
    if nameEnd is None:
        try:
            _, nameEnd = wire.readName(data, 12)
            nameEnd -= 1
        except (ValueError, IndexError):
            return wire.headerOnly(struct.unpack_from("!H", data)[0], 0, 0)
    flags = wire.QR | wire.TC | (struct.unpack_from("!H", data, 2)[0] & wire.RD)
    return data[:2] + struct.pack("!5H", flags, 1, 0, 0, 0) + data[12 : nameEnd + 5]


class DNSStreamProtocol(Protocol):
    """
    DNS over TCP (RFC 1035 4.2.2, RFC 7766): two-octet length prefix,
    pipelined queries answered in order, an idle timeout (RFC 7766 6.2.3).
    """

    def __init__(self, factory: "DNSStreamFactory"):
        self.factory = factory
        self.buffer = b""
        self.timeoutCall = None
        self.transfer = None

    def connectionMade(self):
        factory = self.factory
        if factory.connections >= factory.maxClients:
            log.warn("too many TCP clients ({n}); closing a new one", n=factory.connections)
            self.transport.loseConnection()
            self.counted = False
            return
        self.counted = True
        factory.connections += 1
        factory.protocols.add(self)
        self.peerHost = getattr(self.transport.getPeer(), "host", "")
        self.transport.registerProducer(self, True)
        self._resetTimeout()

    def _resetTimeout(self):
        if self.factory.idleTimeout <= 0:
            return
        if self.timeoutCall is not None and self.timeoutCall.active():
            self.timeoutCall.reset(self.factory.idleTimeout)
        else:
            self.timeoutCall = self.factory.clock.callLater(self.factory.idleTimeout, self._timedOut)

    def _timedOut(self):
        self.timeoutCall = None
        self.transport.loseConnection()

    def dataReceived(self, data: bytes):
        if not getattr(self, "counted", False):
            return
        self._resetTimeout()
        if self.transfer is not None:
            # RFC 7766 6.2.1.1: pipelined queries after a transfer are
            # answered after it, in order.
            self.buffer += data
            return
        buffer = self.buffer + data if self.buffer else data
        server = self.factory.server
        table = server.state[1].table
        out = []
        position = 0
        size = len(buffer)
        # Walk the buffer by offset: re-slicing it per message would copy
        # the rest of a large pipelined segment once per query.
        while size - position >= 2:
            end = position + 2 + ((buffer[position] << 8) | buffer[position + 1])
            if end > size:
                break
            message = buffer[position + 2 : end]
            position = end
            found = fastKey(message, 0, True)
            if found is not None:
                entry = table.get(found[0])
                if entry is not None:
                    i = found[1]
                    server.rcodes[entry[2][0][1] & 15] += 1
                    out.append(struct.pack("!H", len(entry[0])))
                    out.append(message[:2] + entry[2][message[2] & 1] + message[12 : i + 1] + entry[3])
                    continue
            try:
                responses = server.respond(message, self.peerHost, udp=False)
            except Exception:
                log.failure("answering a TCP query from {host}", host=self.peerHost)
                self.transport.loseConnection()
                return
            if isinstance(responses, Transfer):
                # Send what came before, then the transfer a message per
                # reactor turn; queries pipelined after it wait for it.
                self.buffer = buffer[position:]
                if out:
                    self.transport.write(b"".join(out))
                self._startTransfer(responses)
                return
            for response in responses or ():
                server.rcodes[response[3] & 15] += 1
                out.append(struct.pack("!H", len(response)))
                out.append(response)
        self.buffer = buffer[position:]
        if out:
            self.transport.write(b"".join(out))

    def _startTransfer(self, transfer: Transfer) -> None:
        def send():
            for message in transfer:
                if self.transport is None or self.transport.disconnecting:
                    return
                self.transport.write(struct.pack("!H", len(message)) + message)
                self._resetTimeout()
                yield None

        self.transfer = self.factory.cooperator.cooperate(send())
        self.transfer.whenDone().addBoth(self._transferDone)

    def _transferDone(self, result):
        self.transfer = None
        if self.buffer and self.transport is not None and not self.transport.disconnecting:
            self.dataReceived(b"")

    # Back-pressure (RFC 7766 6.2.2 lets a server stop reading): a client
    # that pipelines queries without reading the answers fills our send
    # buffer; the transport then pauses us and we stop reading from it.
    def pauseProducing(self):
        self.transport.pauseProducing()
        if self.transfer is not None:
            self.transfer.pause()

    def resumeProducing(self):
        self.transport.resumeProducing()
        if self.transfer is not None:
            self.transfer.resume()

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        if getattr(self, "counted", False):
            self.factory.connections -= 1
            self.counted = False
        self.factory.protocols.discard(self)
        if self.transfer is not None:
            transfer, self.transfer = self.transfer, None
            try:
                transfer.stop()
            except Exception:  # already finished
                pass
        waiting, self.factory.closing = self.factory.closing, []
        if self.factory.protocols:
            self.factory.closing = waiting
        else:
            for d in waiting:
                d.callback(None)
        if self.timeoutCall is not None and self.timeoutCall.active():
            self.timeoutCall.cancel()
        self.timeoutCall = None


class DNSStreamFactory(Factory):
    """
    @ivar clock: for idle timeouts.
    @ivar idleTimeout: seconds without a query before closing (0: never).
    @ivar maxClients: concurrent connections accepted.
    """

    noisy = False

    def __init__(self, server: DNSServer, clock, idleTimeout: float = 30.0, maxClients: int = 100, cooperator=None):
        self.server = server
        # Zone transfers are sent one message per step of this cooperator.
        if cooperator is None:
            from twisted.internet import task

            cooperator = task.Cooperator(scheduler=lambda f: clock.callLater(0, f))
        self.cooperator = cooperator
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxClients = maxClients
        self.connections = 0
        self.protocols: set = set()
        self.closing: list = []

    def closeAll(self) -> defer.Deferred:
        """
        Close every open connection (at shutdown); fires when all are gone.
        """
        if not self.protocols:
            return defer.succeed(None)
        d = defer.Deferred()
        self.closing.append(d)
        for protocol in list(self.protocols):
            protocol.transport.loseConnection()
        return d

    def buildProtocol(self, addr):
        protocol = DNSStreamProtocol(self)
        protocol.factory = self
        return protocol


class _NotifyProtocol(DatagramProtocol):
    noisy = False

    def __init__(self, sender, target):
        self.sender = sender
        self.target = target

    def datagramReceived(self, data, addr):
        self.sender._reply(self.target, data, addr)


class NotifySender:
    """
    Send NOTIFY (RFC 1996 3) for one zone to each secondary, retrying every
    C{interval} seconds up to C{retries} times until it replies (3.6).

    @ivar results: target -> response code, or L{None} when it never replied.
    """

    def __init__(self, reactor, zone, targets, retries: int = 5, interval: float = 2.0, udpSize: int = 1232):
        self.reactor = reactor
        self.zone = zone
        self.targets = list(targets)
        self.retries = retries
        self.interval = interval
        self.udpSize = udpSize
        self.results: dict = {}
        self._pending: dict = {}

    def send(self) -> defer.Deferred:
        """
        @return: a Deferred firing with L{results} when every target has
            replied or run out of retries.
        """
        deferreds = []
        for target in self.targets:
            host, port = target
            ident = random.randrange(1, 65536)
            result = Answer(wire.NOERROR, aa=True)
            result.opcode = wire.OPCODE_NOTIFY
            soa = self.zone.soa
            # RFC 1996 3.7: the SOA may ride in the answer section.
            result.answer = [(self.zone.origin, soa)]
            message = wire.encode(self.zone.origin, N.SOA, N.IN, result, None, 512, 512, ident, 0)
            message = message[:2] + struct.pack("!H", (wire.OPCODE_NOTIFY << 11) | wire.AA) + message[4:]
            protocol = _NotifyProtocol(self, target)
            interface = "::" if ":" in host else "0.0.0.0"
            port_ = self.reactor.listenUDP(0, protocol, interface=interface)
            d = defer.Deferred()
            state = {"ident": ident, "message": message, "port": port_, "tries": 0, "deferred": d, "call": None, "protocol": protocol}
            self._pending[target] = state
            self._attempt(target)
            deferreds.append(d)
        return defer.gatherResults(deferreds).addCallback(lambda _: self.results)

    def _attempt(self, target):
        state = self._pending.get(target)
        if state is None:
            return
        if state["tries"] >= self.retries:
            log.warn("NOTIFY for {zone} to {target}: no reply after {n} tries", zone=N.toText(self.zone.origin), target=_hostPort(target), n=state["tries"])
            self._finish(target, None)
            return
        state["tries"] += 1
        try:
            state["protocol"].transport.write(state["message"], target)
        except Exception as e:  # unreachable network on loopback-only hosts
            log.warn("NOTIFY to {target} failed: {error}", target=_hostPort(target), error=e)
        state["call"] = self.reactor.callLater(self.interval, self._attempt, target)

    def _reply(self, target, data, addr):
        state = self._pending.get(target)
        if state is None or len(data) < 12:
            return
        ident, flags = struct.unpack_from("!HH", data)
        if ident != state["ident"] or not flags & wire.QR or (flags >> 11) & 0xF != wire.OPCODE_NOTIFY:
            return
        rcode = flags & 0xF
        log.info("NOTIFY for {zone} serial {serial} acknowledged by {target} (rcode {rcode})", zone=N.toText(self.zone.origin), serial=self.zone.serial, target=_hostPort(target), rcode=rcode)
        self._finish(target, rcode)

    def _finish(self, target, rcode):
        state = self._pending.pop(target, None)
        if state is None:
            return
        self.results[target] = rcode
        if state["call"] is not None and state["call"].active():
            state["call"].cancel()
        state["port"].stopListening()
        state["deferred"].callback(rcode)


def _hostPort(target) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
