"""
Helpers for the DNS tests: a raw DNS client (blocking sockets, run in a
thread so the in-process server keeps answering), a message decoder that
makes responses comparable as sets, and an NSD runner.

Tools that are missing make the test FAIL with the apt package to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from twisted_maillab.dns import names as N
from twisted_maillab.dns import wire

from tests.support import freePort, requireTool

FIXTURES = os.path.join(os.path.dirname(__file__), "dns_fixtures")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TYPE_CODES = dict(N.TYPE_NAMES, MAILB=253, ANY=255, AXFR=252, IXFR=251)


def buildQuery(name: str, qtype: int, ident: int = 4242, edns=None, do=False, version=0, rd=False, opcode=0, qclass=1, authoritySOA=None, cd=False, options=b"", aa=False, answerA=None, authorityA=None) -> bytes:
    """
    A query message; C{edns} is the UDP size to advertise or L{None}.
    C{answerA} and C{authorityA} put an A record (4 octets) of the query
    name in the answer or authority section.
    """
    labels = tuple(label.encode() for label in name.rstrip(".").split(".") if label)
    flags = (opcode << 11) | (wire.RD if rd else 0) | (wire.CD if cd else 0) | (wire.AA if aa else 0)
    ar = 1 if edns is not None else 0
    ns = 1 if authoritySOA is not None or authorityA is not None else 0
    an = 1 if answerA is not None else 0
    out = struct.pack("!6H", ident, flags, 1, an, ns, ar) + N.toWire(labels) + struct.pack("!HH", qtype, qclass)
    for address in (answerA, authorityA):
        if address is not None:
            out += N.toWire(labels) + struct.pack("!HHIH", N.A, 1, 0, 4) + address
    if authoritySOA is not None:
        # RFC 1995 3: the client's SOA in the authority section of an IXFR.
        rdata = b"\x00\x00" + struct.pack("!5I", authoritySOA, 0, 0, 0, 0)
        out += N.toWire(labels) + struct.pack("!HHIH", N.SOA, 1, 0, len(rdata)) + rdata
    if edns is not None:
        out += b"\x00" + struct.pack("!HHIH", 41, edns, (version << 16) | (0x8000 if do else 0), len(options)) + options
    return out


def udpQuery(port: int, message: bytes, timeout: float = 2.0, host: str = "127.0.0.1") -> bytes | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(message, (host, port))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def _recvExactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def tcpQuery(port: int, message: bytes, timeout: float = 5.0, transfer: bool = False, host: str = "127.0.0.1") -> list[bytes]:
    """
    Send one query over TCP; return the response, or for a transfer every
    message until the closing SOA.
    """
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(struct.pack("!H", len(message)) + message)
        out = []
        soas = 0
        while True:
            length = struct.unpack("!H", _recvExactly(s, 2))[0]
            response = _recvExactly(s, length)
            out.append(response)
            if not transfer:
                return out
            decoded = decode(response)
            if decoded["rcode"] != 0:
                return out
            soas += sum(1 for r in decoded["answerList"] if r[1] == N.SOA)
            if soas >= 2 or (len(out) == 1 and soas == 1 and len(decoded["answerList"]) == 1):
                return out
    finally:
        s.close()


_NAME_FIELDS = {
    N.NS: "n",
    N.CNAME: "n",
    N.PTR: "n",
    N.DNAME: "n",
    N.MX: "2n",
    N.SOA: "nn20",
    N.SRV: "6n",
}


def _rdataText(data: bytes, offset: int, length: int, rtype: int):
    layout = _NAME_FIELDS.get(rtype)
    end = offset + length
    if rtype == N.NAPTR:
        # Names at the end, uncompressed: keep the bytes, lower-cased.
        return data[offset:end].lower()
    if layout is None:
        return data[offset:end]
    out = []
    position = offset
    i = 0
    while i < len(layout):
        ch = layout[i]
        if ch == "n":
            name, position = wire.readName(data, position)
            out.append(N.toText(N.key(name)))
            i += 1
        else:
            digits = ""
            while i < len(layout) and layout[i].isdigit():
                digits += layout[i]
                i += 1
            count = int(digits)
            out.append(data[position : position + count])
            position += count
    return tuple(out)


def decode(data: bytes) -> dict:
    """
    A response as comparable parts: header fields, the question (with its
    case), and each section as a frozenset of (owner, type, class, ttl,
    rdata) with names lower-cased and decompressed.
    """
    ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    offset = 12
    question = None
    for _ in range(qd):
        name, offset = wire.readName(data, offset)
        qtype, qclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        question = (name, qtype, qclass)
    sections = []
    opt = None
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            owner, offset = wire.readName(data, offset)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, offset)
            offset += 10
            if rtype == N.OPT:
                options = data[offset : offset + rdlen]
                opt = {"size": rclass, "extRcode": ttl >> 24, "version": (ttl >> 16) & 0xFF, "do": bool(ttl & 0x8000), "options": options}
            else:
                records.append((N.toText(N.key(owner)), rtype, rclass, ttl, _rdataText(data, offset, rdlen, rtype)))
            offset += rdlen
        sections.append(records)
    rcode = (flags & 0xF) | ((opt["extRcode"] << 4) if opt else 0)
    return {
        "id": ident,
        "rcode": rcode,
        "opcode": (flags >> 11) & 0xF,
        "flags": {name for name, bit in (("qr", wire.QR), ("aa", wire.AA), ("tc", wire.TC), ("rd", wire.RD), ("ra", 0x80), ("ad", 0x20), ("cd", wire.CD)) if flags & bit},
        "question": question,
        "answer": frozenset(sections[0]),
        "answerList": sections[0],
        "authority": frozenset(sections[1]),
        "additional": frozenset(sections[2]),
        "opt": opt,
        "size": len(data),
    }


def comparable(decoded: dict) -> dict:
    """
    What the differential test compares: rcode, opcode, flags, OPT shape
    and EDE codes, each section as a set.
    """
    opt = decoded["opt"]
    if opt is not None:
        opt = (opt["size"], opt["version"], opt["do"], _edeCodes(opt["options"]))
    return {
        "rcode": decoded["rcode"],
        "opcode": decoded["opcode"],
        "flags": frozenset(decoded["flags"]),
        "answer": decoded["answer"],
        "authority": decoded["authority"],
        "additional": decoded["additional"],
        "opt": opt,
    }


def _edeCodes(options: bytes):
    codes = []
    offset = 0
    while offset + 4 <= len(options):
        code, length = struct.unpack_from("!HH", options, offset)
        if code == 15 and length >= 2:
            codes.append(struct.unpack_from("!H", options, offset + 4)[0])
        offset += 4 + length
    return tuple(codes)


def readQueryList(path: str):
    """
    The query list: C{name type [options]} per line.
    """
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            out.append((parts[0], parts[1], tuple(parts[2:])))
    return out


def queryFor(name: str, typeText: str, options) -> tuple[bytes, bool]:
    """
    The message for one line of the query list and whether it goes by TCP.
    """
    qtype = TYPE_CODES.get(typeText.upper())
    if qtype is None:
        qtype = int(typeText[4:])
    edns = 1232
    do = False
    version = 0
    tcp = False
    rd = cd = False
    serial = None
    ednsOptions = b""
    qclass = N.IN
    opcode = 0
    aa = False
    answerA = authorityA = None
    for option in options:
        if option == "noedns":
            edns = None
        elif option.startswith("bufsize="):
            edns = int(option.split("=")[1])
        elif option == "do":
            do = True
        elif option == "tcp":
            tcp = True
        elif option == "edns1":
            version = 1
        elif option == "rd":
            rd = True
        elif option == "cd":
            cd = True
        elif option.startswith("ixfr="):
            serial = int(option.split("=")[1])
        elif option == "cookie":
            # RFC 7873 4: a client cookie; NSD 4.6 ignores it, as we do.
            ednsOptions += struct.pack("!HH", 10, 8) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
        elif option.startswith("class="):
            value = option.split("=")[1].upper()
            qclass = {"IN": 1, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}.get(value) or int(value)
        elif option.startswith("opcode="):
            opcode = int(option.split("=")[1])
        elif option == "notify":
            # RFC 1996 3.7: NOTIFY, AA set, the SOA question.
            opcode, aa = 4, True
        elif option == "ancount":
            answerA = b"\xc0\x00\x02\x01"
        elif option == "nscount":
            authorityA = b"\xc0\x00\x02\x01"
    message = buildQuery(
        name, qtype, edns=edns, do=do, version=version, rd=rd, cd=cd, authoritySOA=serial, options=ednsOptions,
        qclass=qclass, opcode=opcode, aa=aa, answerA=answerA, authorityA=authorityA,
    )
    return message, tcp


class NSD:
    """
    An NSD 4 process in the foreground (C{nsd -d}) with its own config,
    zones directory, pid file and no database, on 127.0.0.1:C{port}.
    """

    def __init__(self, testCase, zones: dict, port: int | None = None, extra: str = "", secondaryOf: int | None = None, files: dict | None = None):
        self.binary = requireTool("nsd", "nsd")
        self.directory = tempfile.mkdtemp(prefix="maillab-nsd-")
        self.port = port or freePort()
        self.process = None
        conf = [
            "server:",
            f"  ip-address: 127.0.0.1@{self.port}",
            '  username: ""',  # nsd 4.6: do not drop privileges (no chroot user)
            f'  zonesdir: "{self.directory}"',
            f'  pidfile: "{self.directory}/nsd.pid"',
            '  database: ""',
            f'  xfrdfile: "{self.directory}/xfrd.state"',
            f'  zonelistfile: "{self.directory}/zone.list"',
            f'  xfrdir: "{self.directory}"',
            "  server-count: 1",
            "  verbosity: 2",
            "  hide-version: yes",
            # Debian's NSD is built with RRL on (200 qps per /24): off, so
            # the benchmark and the tests measure answers, not the limiter.
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
            "remote-control:",
            "  control-enable: no",
        ]
        for fileName, text in (files or {}).items():
            with open(os.path.join(self.directory, fileName), "w") as f:
                f.write(text)
        for origin, text in zones.items():
            if text is not None:
                with open(os.path.join(self.directory, origin + ".zone"), "w") as f:
                    f.write(text)
            conf += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.zone"]
            if secondaryOf is not None:
                conf += ["  allow-notify: 127.0.0.1 NOKEY", f"  request-xfr: 127.0.0.1@{secondaryOf} NOKEY"]
            else:
                conf += ["  provide-xfr: 127.0.0.0/8 NOKEY"]
        conf.append(extra)
        self.conf = os.path.join(self.directory, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.log = os.path.join(self.directory, "nsd.log")

    def start(self, waitFor: str | None = "domaineel.rt") -> None:
        """
        Start and wait (blocking, so run it in a thread) until it answers.
        """
        self.process = subprocess.Popen(
            [self.binary, "-d", "-c", self.conf],
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nsd exited: {self.logText()}")
            response = udpQuery(self.port, buildQuery(waitFor or ".", N.SOA), timeout=0.3)
            if response is not None:
                return
        raise RuntimeError(f"nsd did not answer: {self.logText()}")

    def logText(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
