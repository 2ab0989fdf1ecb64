"""
Read BIND master files (RFC 1035 5, RFC 3597, BIND 9 extensions) into a
L{Zone}, and make the checks C{named-checkzone} makes (the zone-wide ones
are in L{twisted_maillab.dns.integrity}).

Every problem names the file, the line and the reason.  Parsing goes on
after an error so one run reports every broken line; any error makes
L{loadZone} raise L{ZoneError} and nothing of the file is served.

The tokenizer, the directives and the zone model are here; the readers
of names, TTLs and each type's data are in L{twisted_maillab.dns.rdata},
the checks that look at the whole zone in
L{twisted_maillab.dns.integrity}.  Most lines of a large zone (a plain
A, AAAA, TXT or MX record) are read without tokens into the compact
store of L{twisted_maillab.dns.compact}; any other line, and any of those
that is not plain after all, goes through the tokenizer and the full
reader, which report what is wrong with it.

Its length (past 800 lines) is the master-file reader: the tokenizer, the
fast path for plain lines and the directives share the parser's state
(origin, last owner, TTLs) and its error reporting; the zone model they
fill is the rest.  The pieces that stand alone are already out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from twisted_maillab.config import ConfigError
from twisted_maillab.dns import names as N
from twisted_maillab.dns import compact
from twisted_maillab.dns.names import Name, Node, Rdata, RRset
from twisted_maillab.dns.rdata import (  # noqa: F401 (parseName, parseTTL: part of this module's API)
    MAX_UINT32,
    RDATA_PARSERS,
    _TTL_RE,
    _extra,
    _fromGeneric,
    _parseClass,
    _parseType,
    _rdUnknown,
    parseName,
    parseOrigin,
    parseTTL,
)

__all__ = ["ZoneError", "Problem", "Zone", "loadZone", "addRecords", "parseZoneText", "parseOrigin", "highestCut"]

# Bounds: a zone file is data from an administrator, but a typo must not
# exhaust memory or recurse forever.
MAX_INCLUDE_DEPTH = 8
MAX_TTL = 2**31 - 1  # RFC 2181 8


@dataclass(frozen=True)
class Problem:
    """
    One finding: C{severity} is C{"error"} or C{"warning"}.
    """

    path: str
    line: int
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        prefix = "" if self.severity == "error" else "warning: "
        return f"{where}: {prefix}{self.reason}"


class ZoneError(ConfigError):
    """
    A zone file cannot be served.  C{problems} holds every error found (the
    first one's line is C{line}); C{str()} gives one C{file:line: reason}
    per error, as C{named-checkzone} prints them.
    """

    def __init__(self, path, problems: list[Problem], origin: str = ""):
        self.problems = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity != "error"]
        first = self.problems[0] if self.problems else Problem(str(path), 0, "unknown error")
        reason = "; ".join(
            (f"line {p.line}: {p.reason}" if p.line else p.reason) for p in self.problems
        )
        super().__init__(path, "dns", "zones", f"zone {origin} not loaded: {reason}", first.line or None)
        self.origin = origin

    def __str__(self) -> str:
        lines = [f"zone {self.origin}: not loaded, {len(self.problems)} error(s):"]
        lines.extend("  " + str(p) for p in self.problems)
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Tokens.


@dataclass
class Token:
    text: str  # raw text for bare tokens, decoded (latin-1 of bytes) for quoted
    quoted: bool
    line: int


_TTL_RE = re.compile(r"^(?:\d+|(?:\d+[smhdw])+)$", re.IGNORECASE)


class _Entry:
    """
    One logical line: its tokens (parentheses already joined) and whether
    it began with whitespace (RFC 1035 5.1: owner is the previous one).
    """

    __slots__ = ("line", "blankOwner", "tokens", "end", "nextLine")

    def __init__(self, line, blankOwner, tokens, end=0, nextLine=0):
        self.line = line
        self.blankOwner = blankOwner
        self.tokens = tokens
        # Where the text after this entry starts: offset and line number.
        self.end = end
        self.nextLine = nextLine


_SPECIAL = re.compile(r'[;()"\\]')


# The commonest line of a large zone: an owner in lower case (or a blank),
# an optional decimal TTL, class IN, a type a name can hold compactly and
# simple data, nothing else (no comment, parenthesis, escape or quote
# inside a string).  L{_Parser} reads such lines without making tokens;
# any line it declines goes through the tokenizer and the full reader.
# Such a line fills groups 1 to 5 (the owner: one label, or more; TTL,
# type, data); any other line group 6, so that C{findall} over whole lines
# gives one item per line.
_EVERY_LINE = re.compile(
    # The commonest line of a large zone, a one-label owner's A record with
    # the default TTL, as an alternative of its own: matched first and in
    # fewer steps than the general form, which follows.
    r"(?:([-a-z0-9_]{1,63})[ \t]+A[ \t]+([0-9.]{7,15})[ \t\r]*\n)|"
    r"(?:(?:([-a-z0-9_*]{1,63})(?=[ \t])|([-a-z0-9_*][-a-z0-9_.*]*)|(?=[ \t]))[ \t]+(?:([0-9]+)[ \t]+)?(?:IN[ \t]+)?(A|AAAA|MX|TXT)[ \t]+"
    r'([^\s;()"\\]+(?:[ \t]+[^\s;()"\\]+)*|"[^"\\\n]*")[ \t\r]*|([^\n]*))(?:\n|\Z)'
)


# The most characters of zone text matched in one call (whole lines).
_BLOCK = 65536

# An A record of a compact name (see L{twisted_maillab.dns.compact}):
# its header and address packed in one call.
_A_RECORD = struct.Struct("!HIIHH4s")
assert _A_RECORD.size == compact.HEADER_SIZE + 4


def _tokenize(text: str, path: str, problems: list[Problem], start: int = 0, firstLine: int = 1):
    """
    Split master-file text into L{_Entry} objects (RFC 1035 5.1): C{;}
    starts a comment outside quotes, C{( )} join lines, C{"..."} is one
    token with C{\\X} and C{\\DDD} escapes.

    @param start: the offset to start at (the start of line C{firstLine}).
    """
    tokens: list[Token] = []
    blankOwner = False
    entryLine = 0
    paren = 0
    parenLine = 0
    line = firstLine
    atLineStart = True
    i = start
    n = len(text)
    while i < n:
        if atLineStart and paren == 0 and not tokens:
            # Most lines of a large zone hold no comment, quote,
            # parenthesis or escape: split them whole, much faster than a
            # character at a time (the same tokens).
            end = text.find("\n", i)
            if end == -1:
                end = n
            whole = text[i:end]
            if not _SPECIAL.search(whole):
                parts = whole.split()
                if parts:
                    yield _Entry(line, whole[:1] in " \t\r", [Token(part, False, line) for part in parts], end + 1, line + 1)
                line += 1
                i = end + 1
                continue
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            atLineStart = True
            if paren == 0 and tokens:
                yield _Entry(entryLine, blankOwner, tokens, i, line)
                tokens = []
            continue
        if c in " \t\r":
            if atLineStart and paren == 0 and not tokens:
                blankOwner = True
            atLineStart = False
            i += 1
            continue
        if atLineStart and paren == 0 and not tokens:
            blankOwner = False
        atLineStart = False
        if c == ";":
            end = text.find("\n", i)
            i = n if end == -1 else end
            continue
        if not tokens:
            entryLine = line
        if c == "(":
            if paren == 0:
                parenLine = line
            paren += 1
            i += 1
            continue
        if c == ")":
            if paren == 0:
                problems.append(Problem(path, line, "')' without a matching '('"))
            else:
                paren -= 1
            i += 1
            continue
        if c == '"':
            start = line
            i += 1
            out = []
            closed = False
            while i < n:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                        value = int(text[i + 1 : i + 4])
                        if value > 255:
                            problems.append(Problem(path, line, f"bad escape \\{text[i+1:i+4]} (above 255)"))
                        out.append(chr(value & 0xFF))
                        i += 4
                    else:
                        out.append(text[i + 1])
                        if text[i + 1] == "\n":
                            line += 1
                        i += 2
                    continue
                if c == '"':
                    closed = True
                    i += 1
                    break
                if c == "\n":
                    break
                out.append(c)
                i += 1
            if not closed:
                problems.append(Problem(path, start, "unbalanced quotes"))
            tokens.append(Token("".join(out), True, start))
            continue
        start = i
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                i += 2
                continue
            if c in " \t\r\n;()\"":
                break
            i += 1
        tokens.append(Token(text[start:i], False, line))
    if paren:
        problems.append(Problem(path, parenLine, "'(' is never closed"))
    if tokens:
        yield _Entry(entryLine, blankOwner, tokens, n + 1, line)


# ---------------------------------------------------------------------------
# The zone.


class Zone:
    """
    The data of one zone.

    @ivar origin: the apex name.
    @ivar nodes: lookup key -> L{Node}, including empty non-terminals
        (RFC 4592 2.2.2), which have no RRsets: a
        L{twisted_maillab.dns.compact.NodeMap}, which keeps most names of
        a large zone as bytes.
    @ivar cuts: keys of delegation points (NS below the apex).
    @ivar path: the main file.
    @ivar warnings: L{Problem}s that did not stop the load.
    """

    def __init__(self, origin: Name, path: str):
        self.origin = origin
        self.originKey = N.key(origin)
        self.path = path
        # Files records were read from (compact records keep an index).
        self.paths: list[str] = []
        # (path, size, mtime_ns, inode, sha256) of each file as it was
        # read by loadZone (see twisted_maillab.dns.zonecache).
        self.sources: list[tuple] = []
        self.nodes = compact.NodeMap(self.paths)
        self.cuts: set[Name] = set()
        self.dnames: set[Name] = set()
        self.warnings: list[Problem] = []
        # One bytes object per distinct label: a large zone repeats its
        # origin's labels in every name (and a lower-case owner is its own
        # lookup key).
        self._labels: dict[bytes, bytes] = {}

    @property
    def soa(self) -> RRset:
        return self.nodes[self.originKey].rrsets[N.SOA]

    @property
    def serial(self) -> int:
        return struct.unpack("!I", self.soa.rdatas[0].parts[2][:4])[0]

    def soaField(self, index: int) -> int:
        """
        REFRESH=0 RETRY=1 EXPIRE=2 MINIMUM=3 of the SOA.
        """
        return struct.unpack("!5I", self.soa.rdatas[0].parts[2])[1 + index]

    def negativeSOA(self) -> RRset:
        """
        The SOA for negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308 3).
        """
        soa = self.soa
        return soa.withTTL(min(soa.ttl, self.soaField(3)))

    def rrsets(self):
        """
        Every RRset, SOA first, then by name in file order.
        """
        apex = self.nodes[self.originKey]
        yield apex.rrsets[N.SOA]
        for node in self.nodes.values():
            for rtype, rrset in node.rrsets.items():
                if node is apex and rtype == N.SOA:
                    continue
                yield rrset

    def fingerprint(self) -> frozenset:
        """
        The zone's content, to tell whether a reload changed anything.
        """
        return frozenset(
            (N.key(r.owner), r.rtype, r.ttl, d.canonical()) for r in self.rrsets() for d in r.rdatas
        )

    def setSerial(self, serial: int) -> None:
        """
        Serve C{serial} in the SOA (RFC 1035 3.3.13) from now on, e.g. once
        generated records were added with L{_Parser.parseText}.
        """
        soa = self.soa
        old = soa.rdatas[0]
        timers = struct.pack("!I", serial & MAX_UINT32) + old.parts[2][4:]
        soa.rdatas[0] = Rdata(old.parts[:2] + (timers,), old.target)

    def pathIndex(self, path: str) -> int:
        """
        The index of C{path} in L{paths}, added if new.
        """
        try:
            return self.paths.index(path)
        except ValueError:
            self.paths.append(path)
            return len(self.paths) - 1

    def _addParents(self, wireKey: bytes, owner: Name, ownerKey: Name) -> None:
        # Empty non-terminals exist (RFC 4592 2.2.2), so queries for them
        # answer NODATA, not NXDOMAIN.
        entries = self.nodes.entries
        offset = 0
        for i in range(1, len(ownerKey) - len(self.originKey)):
            offset += len(ownerKey[i - 1]) + 1
            parent = wireKey[offset:]
            if parent not in entries:
                entries[parent] = Node(owner[i:])

    def addCompact(self, wireKey: bytes, name: Name | None, rtype: int, ttl: int, line: int, pathIndex: int, data: bytes) -> bool:
        """
        Add one record to a compact name (see L{twisted_maillab.dns.compact}):
        C{wireKey} is the lower-cased owner in wire form, C{name} its labels
        when it may need empty non-terminals above it.

        @return: whether it was added; when not (the name is a L{Node}, or
            already holds this type, so duplicates and TTLs must be
            checked), the caller adds it with L{add}.
        """
        entries = self.nodes.entries
        value = entries.get(wireKey)
        if value is None:
            entries[wireKey] = compact.packHeader(rtype, ttl, line, pathIndex, len(data)) + data
            if name is not None and len(name) > len(self.originKey) + 1:
                self._addParents(wireKey, name, name)
            return True
        if value.__class__ is bytes and rtype not in compact.types(value):
            entries[wireKey] = value + compact.packHeader(rtype, ttl, line, pathIndex, len(data)) + data
            return True
        return False

    def add(self, owner: Name, rtype: int, ttl: int, rdata: Rdata, path: str, line: int, problems):
        labels = self._labels
        ownerKey = tuple([labels.setdefault(label, label) for label in N.key(owner)])
        owner = ownerKey if owner == ownerKey else tuple([labels.setdefault(label, label) for label in owner])
        wireKey = N.toWire(ownerKey)
        node = self.nodes.materialize(wireKey)
        if node is None:
            node = self.nodes.entries[wireKey] = Node(owner)
            self._addParents(wireKey, owner, ownerKey)
        rrset = node.rrsets.get(rtype)
        if rrset is None:
            rrset = node.rrsets[rtype] = RRset(owner, rtype, ttl, line, path)
        elif rrset.ttl != ttl:
            # RFC 2181 5.2: one TTL per RRset; BIND keeps the first.
            problems.append(
                Problem(path, line, f"{N.toText(owner)} {N.typeText(rtype)}: TTL {ttl} differs from the set's {rrset.ttl}, using {rrset.ttl}", "warning")
            )
        if rdata not in rrset.rdatas:
            rrset.rdatas.append(rdata)


class _Parser:
    # Whether lines of the _EVERY_LINE form are stored compactly (tests
    # compare with the zone read without).
    fastLines = True

    def __init__(self, zone: Zone, problems: list[Problem], defaultTTL: int | None):
        self.zone = zone
        self.problems = problems
        self.defaultTTL = defaultTTL
        self.lastTTL: int | None = None
        # (path, size, mtime_ns, inode, sha256) of each file read, as it
        # was read: what a saved form of the zone depends on.
        self.sources: list[tuple] = []

    def error(self, path, line, reason):
        self.problems.append(Problem(path, line, reason))

    def recordTTL(self, text: str, path: str, line: int) -> int:
        """
        A record's TTL or C{$TTL}.  RFC 2181 8: a value with the top bit
        set is treated as 0; BIND (C{> MAXTTL, setting TTL to 0}) and NSD
        load the zone, so it is a warning.
        """
        ttl = parseTTL(text)
        if ttl > MAX_TTL:
            self.problems.append(
                Problem(path, line, f"TTL {text} is above 2^31-1, using 0 (RFC 2181 8)", "warning")
            )
            return 0
        return ttl

    def parseFile(self, path: Path, origin: Name, depth: int, includedFrom=None):
        try:
            with open(path, "rb") as f:
                raw = f.read()
                stat = os.fstat(f.fileno())
        except OSError as e:
            where = includedFrom or (str(path), 0)
            self.error(where[0], where[1], f"cannot read {path}: {e.strerror or e}")
            return
        self.sources.append((str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, hashlib.sha256(raw).hexdigest()))
        # One character per byte: data (TXT, escapes) comes out byte-exact.
        text = raw.decode("latin-1")
        del raw  # a large zone's bytes need not stay beside its text
        self.parseText(text, str(path), origin, depth)

    def parseText(self, text: str, path: str, origin: Name, depth: int = 0):
        """
        Read master-file text into the zone (which may already hold
        records: they are added to).
        """
        # The previous owner (RFC 1035 5.1: a blank owner repeats it), as
        # labels, or as the wire key of a compact name.
        last: list = [None]
        current = [origin]
        for entry in self._entries(text, path, current, last):
            tokens = entry.tokens
            first = tokens[0]
            if not entry.blankOwner and not first.quoted and first.text.startswith("$"):
                directive = first.text.upper()
                args = tokens[1:]
                try:
                    if directive == "$ORIGIN":
                        if len(args) != 1:
                            raise ValueError("$ORIGIN takes one name")
                        origin = current[0] = parseName(args[0].text, origin)
                    elif directive == "$TTL":
                        if len(args) != 1:
                            raise ValueError("$TTL takes one TTL")
                        self.defaultTTL = self.recordTTL(args[0].text, path, entry.line)
                    elif directive == "$INCLUDE":
                        if not 1 <= len(args) <= 2:
                            raise ValueError("$INCLUDE takes a file name and an optional origin")
                        if depth >= MAX_INCLUDE_DEPTH:
                            raise ValueError(f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}")
                        target = Path(args[0].text)
                        if not target.is_absolute():
                            target = Path(path).parent / target
                        includeOrigin = parseName(args[1].text, origin) if len(args) == 2 else origin
                        # RFC 1035 5.1: the origin reverts after the include.
                        self.parseFile(target, includeOrigin, depth + 1, (path, entry.line))
                    elif directive == "$GENERATE":
                        raise ValueError("$GENERATE is not supported")
                    else:
                        raise ValueError(f"unknown directive {first.text}")
                except ValueError as e:
                    self.error(path, entry.line, str(e))
                continue
            lastOwner = last[0]
            if lastOwner.__class__ is bytes:
                lastOwner = compact.wireToName(lastOwner)
            try:
                last[0] = self.parseRecord(entry, path, origin, lastOwner)
            except ValueError as e:
                self.error(path, entry.line, str(e))

    def _entries(self, text: str, path: str, current: list, last: list):
        """
        The entries of C{text} for L{parseText} to read, less the lines
        of L{_EVERY_LINE} form, which are stored here, line by line, when
        they can be (see L{_fastReader}); from any other line on, the
        tokenizer makes the next entry (which may span lines).

        The lines are matched a block of text at a time by L{_EVERY_LINE}
        (no list of the file's lines is made, and no call holds the
        interpreter for long during a reload).  The commonest of them (an
        owner of one label under the zone's origin, an A, a quoted TXT or
        an MX to such a label) are stored in the loop itself; the other
        plain lines by L{_fastReader}; the rest by the tokenizer, after
        which the matching starts again where its entry ended.
        """
        if not self.fastLines:
            yield from _tokenize(text, path, self.problems)
            return
        read = self._fastReader(path, current, last)
        zone = self.zone
        zoneKey = zone.originKey
        entries = zone.nodes.entries
        setdefault = entries.setdefault
        pathIndex = zone.pathIndex(path)
        packHeader = compact.packHeader
        packA = _A_RECORD.pack
        A = N.A
        types = compact.types
        inet_pton = socket.inet_pton
        AF_INET = socket.AF_INET
        TXT, MX = N.TXT, N.MX
        lengths = [chr(i) for i in range(256)]
        findall = _EVERY_LINE.findall
        find = text.find
        position = 0  # where the next line starts in the text
        line = 0  # the number of the line before it
        end = len(text)
        # Lines are matched a block at a time (findall, up to L{_BLOCK}
        # characters, whole lines): faster than a match object per line,
        # and no match holds the interpreter for long during a reload.
        # After a line the tokenizer read, the blocks start small and
        # double, so a zone of many such lines is not matched twice over.
        block = 256
        while position < end:
            # The origin changes only through a $ORIGIN line and the
            # default TTL through a $TTL line, which the tokenizer reads:
            # between two, the loop below may build the wire form of a
            # one-label owner itself when the origin is the zone's (no
            # empty non-terminal can lie between the two).
            origin = current[0]
            originWire = N.toWire(origin) if origin == zoneKey else None
            defaultTTL = self.defaultTTL
            resume = -1
            while position < end:
                stop = find("\n", position + block)
                stop = end if stop == -1 else stop + 1
                block = min(block * 2, _BLOCK)
                lines = findall(text, position, stop)
                # The last is the empty match at the block's end.
                lines.pop()
                first = line  # the number of the line before the block
                for aLabel, aAddress, label, dotted, ttlText, typeText, data, other in lines:
                    line += 1
                    if aLabel:
                        label, typeText, data = aLabel, "A", aAddress
                    if typeText == "A" and label and not ttlText and originWire is not None:
                        # The commonest line of all, in as few steps as can be;
                        # anything unusual (no default TTL, a bad address, a
                        # name seen before) is left to the general case below.
                        try:
                            blob = packA(A, defaultTTL, line, pathIndex, 4, inet_pton(AF_INET, data))
                        except (OSError, ValueError, struct.error):
                            pass
                        else:
                            wireKey = (lengths[len(label)] + label).encode("latin-1") + originWire
                            if setdefault(wireKey, blob) is blob:
                                last[0] = wireKey
                                continue
                    if not typeText:
                        if not other or other.isspace() or other.lstrip()[0] == ";":
                            continue
                        resume = line - first - 1
                        break
                    if label and originWire is not None:
                        if not ttlText:
                            ttl = defaultTTL
                        else:
                            ttl = int(ttlText)
                            if ttl > MAX_TTL:
                                ttl = None
                        blob = None
                        if ttl is None:
                            pass
                        elif typeText == "A":
                            try:
                                blob = packA(A, ttl, line, pathIndex, 4, inet_pton(AF_INET, data))
                            except (OSError, ValueError):
                                pass
                        elif typeText == "TXT":
                            if data[0] == '"' and len(data) < 258:
                                rdata = (lengths[len(data) - 2] + data[1:-1]).encode("latin-1")
                                blob = packHeader(TXT, ttl, line, pathIndex, len(rdata)) + rdata
                        elif typeText == "MX":
                            preference, _, exchange = data.partition(" ")
                            if (
                                preference.isdigit() and preference.isascii() and len(preference) < 6 and int(preference) <= 0xFFFF
                                and exchange.isalnum() and exchange.isascii() and len(exchange) < 64
                            ):
                                rdata = int(preference).to_bytes(2, "big") + (lengths[len(exchange)] + exchange).encode("latin-1") + originWire
                                blob = packHeader(MX, ttl, line, pathIndex, len(rdata)) + rdata
                        if blob is not None:
                            wireKey = (lengths[len(label)] + label).encode("latin-1") + originWire
                            value = setdefault(wireKey, blob)
                            if value is not blob:
                                # What addCompact does, without the call.
                                if value.__class__ is bytes and blob[0] << 8 | blob[1] not in types(value):
                                    entries[wireKey] = value + blob
                                else:
                                    blob = None
                            if blob is not None:
                                if ttlText:
                                    self.lastTTL = ttl
                                last[0] = wireKey
                                continue
                    if read((label, dotted, ttlText, typeText, data, other), line):
                        continue
                    resume = line - first - 1
                    break
                if resume >= 0:
                    # Where that line starts: each of the lines before it
                    # in the block ends with its newline.
                    for _ in range(resume):
                        position = find("\n", position) + 1
                    break
                position = stop
            if resume < 0:
                return
            block = 256
            for entry in _tokenize(text, path, self.problems, position, line):
                yield entry
                break
            else:
                return
            position = entry.end
            line = entry.nextLine - 1

    def _fastReader(self, path: str, current: list, last: list):
        """
        The reader of L{_EVERY_LINE} lines for L{_tokenize}: it stores the
        record compactly and returns true, or returns false (the line is
        then read by L{parseRecord}, which reports what is wrong with it,
        or the name is not one a compact entry can hold).
        """
        zone = self.zone
        pathIndex = zone.pathIndex(path)
        zoneKey = zone.originKey
        depth = len(zoneKey)
        addCompact = zone.addCompact
        entries = zone.nodes.entries
        packHeader = compact.packHeader
        inet_pton = socket.inet_pton
        AF_INET = socket.AF_INET
        # The origin names are relative to, and its wire form when names
        # below it may be compact (lower case, inside the zone).
        relative: list = [None, None]

        def read(groups, line: int) -> bool:
            # The groups as findall gives them: "" for one that took no part.
            label, dotted, ttlText, typeText, data, _ = groups
            owner = label or dotted or None
            ttlText = ttlText or None
            origin = current[0]
            name = None
            if owner is None:
                wireKey = last[0]
                if wireKey.__class__ is not bytes:
                    return False
            elif "." not in owner:
                if relative[0] is not origin:
                    relative[0] = origin
                    inside = origin == N.key(origin) and N.isSubdomain(origin, zoneKey)
                    relative[1] = N.toWire(origin) if inside else None
                originWire = relative[1]
                if originWire is None or len(owner) > 63:
                    return False
                wireKey = (chr(len(owner)) + owner).encode("latin-1") + originWire
                if len(wireKey) > 255:
                    return False
                if len(origin) != depth:
                    name = (wireKey[1 : len(owner) + 1],) + origin
            else:
                try:
                    name = parseName(owner, origin)
                except ValueError:
                    return False
                if len(name) <= depth or name[len(name) - depth :] != zoneKey or name != N.key(name):
                    return False
                wireKey = N.toWire(name)
            if ttlText is None:
                ttl = self.defaultTTL
                if ttl is None:
                    ttl = self.lastTTL
                    if ttl is None:
                        return False
            else:
                ttl = int(ttlText)
                if ttl > MAX_TTL:
                    return False
            if typeText == "A":
                try:
                    rdata = inet_pton(AF_INET, data)
                except (OSError, ValueError):
                    return False
                rtype = N.A
            elif typeText == "TXT":
                if data[0] == '"':
                    pieces = [data[1:-1]]
                else:
                    pieces = data.split()
                    if any(piece[0] == "#" for piece in pieces):
                        return False
                strings = [piece.encode("latin-1") for piece in pieces]
                if any(len(string) > 255 for string in strings):
                    return False
                rdata = b"".join(bytes((len(string),)) + string for string in strings)
                rtype = N.TXT
            elif typeText == "MX":
                fields = data.split()
                if len(fields) != 2 or not fields[0].isascii() or not fields[0].isdigit() or fields[1][0] == "#":
                    return False
                preference = int(fields[0])
                if preference > 0xFFFF:
                    return False
                try:
                    exchange = parseName(fields[1], origin)
                except ValueError:
                    return False
                rdata = struct.pack("!H", preference) + N.toWire(exchange)
                rtype = N.MX
            else:
                try:
                    rdata = ipaddress.IPv6Address(data).packed
                except ValueError:
                    return False
                rtype = N.AAAA
            if wireKey not in entries:
                # A new name: what addCompact does first, without the call.
                entries[wireKey] = packHeader(rtype, ttl, line, pathIndex, len(rdata)) + rdata
                if name is not None and len(name) > depth + 1:
                    zone._addParents(wireKey, name, name)
            elif not addCompact(wireKey, name, rtype, ttl, line, pathIndex, rdata):
                return False
            if ttlText is not None:
                self.lastTTL = ttl
            last[0] = wireKey
            return True

        return read

    def parseRecord(self, entry: _Entry, path: str, origin: Name, lastOwner):
        tokens = list(entry.tokens)
        if entry.blankOwner:
            if lastOwner is None:
                raise ValueError("no owner name: the first record must not start with a blank")
            owner = lastOwner
        else:
            first = tokens.pop(0)
            if first.text.startswith("#"):
                raise ValueError(
                    f"{first.text!r}: '#' does not start a comment in a zone file, use ';' (RFC 1035 5.1)"
                )
            owner = parseName(first.text, origin)
        ttl = None
        rclass = None
        while tokens and not tokens[0].quoted:
            text = tokens[0].text
            if ttl is None and _TTL_RE.match(text):
                ttl = self.recordTTL(text, path, entry.line)
            elif rclass is None and _parseClass(text) is not None and _parseType(text) is None:
                rclass = _parseClass(text)
            else:
                break
            tokens.pop(0)
        if not tokens:
            raise ValueError("missing type")
        typeToken = tokens.pop(0)
        rtype = _parseType(typeToken.text)
        if rtype is None:
            if typeToken.text.startswith("#"):
                raise _extra(typeToken, "a type")
            raise ValueError(f"unknown RR type {typeToken.text!r}")
        if rclass is not None and rclass != N.IN:
            raise ValueError("only class IN is served")
        if rtype in (N.OPT, N.AXFR, N.IXFR, N.ANY, 250, 253, 254):
            raise ValueError(f"{typeToken.text} is a meta-type and cannot appear in a zone (RFC 6895 3.1)")
        if tokens and tokens[0].text == "\\#" and not tokens[0].quoted:
            rdata = _rdUnknown(tokens)
            if rtype in (N.NS, N.CNAME, N.PTR, N.DNAME, N.MX, N.SOA, N.SRV):
                # Known types given generically: reparse so names are usable.
                rdata = _fromGeneric(rtype, rdata)
        else:
            parser = RDATA_PARSERS.get(rtype)
            if parser is None:
                raise ValueError(f"type {typeToken.text} must be written in RFC 3597 form '\\# LENGTH HEX'")
            rdata = parser(tokens, origin)
        if ttl is None:
            if self.defaultTTL is not None:
                ttl = self.defaultTTL
            elif self.lastTTL is not None:
                ttl = self.lastTTL
            elif rtype == N.SOA:
                # BIND: without $TTL the SOA's MINIMUM becomes the default
                # for every record that gives no TTL.
                ttl = self.defaultTTL = struct.unpack("!5I", rdata.parts[2])[4]
                self.problems.append(Problem(path, entry.line, "no TTL specified; using SOA MINIMUM instead", "warning"))
            else:
                raise ValueError("no TTL specified and no $TTL before this record")
        else:
            self.lastTTL = ttl
        ownerKey = N.key(owner)
        if not N.isSubdomain(ownerKey, self.zone.originKey):
            # BIND ignores out-of-zone data with a warning and loads the rest.
            self.problems.append(
                Problem(path, entry.line, f"ignoring out-of-zone data ({N.toText(owner)})", "warning")
            )
            return owner
        self.zone.add(owner, rtype, ttl, rdata, path, entry.line, self.problems)
        return owner


def highestCut(zone: Zone, nameKey: Name) -> Name | None:
    """
    The highest delegation point at or above C{nameKey}, if any (the
    answer logic and the load-time glue check both need it).
    """
    if not zone.cuts:
        return None
    depth = len(zone.originKey)
    for i in range(len(nameKey) - depth - 1, -1, -1):
        candidate = nameKey[i:]
        if candidate in zone.cuts:
            return candidate
    return None


def parseZoneText(text: str, origin: Name, path: str = "<zone>", defaultTTL: int | None = None) -> tuple[Zone, list[Problem]]:
    """
    Parse and check zone text; return the zone and every problem (errors
    and warnings).  The caller decides what errors mean.
    """
    from twisted_maillab.dns.integrity import checkZone  # it imports this module

    zone = Zone(origin, path)
    problems: list[Problem] = []
    parser = _Parser(zone, problems, defaultTTL)
    parser.parseText(text, path, origin)
    checkZone(zone, problems)
    zone.warnings = [p for p in problems if p.severity != "error"]
    return zone, problems


def addRecords(zone: Zone, text: str, path: str, defaultTTL: int) -> list[Problem]:
    """
    Parse master-file C{text} from another source than the zone's files
    (C{path} names it in messages) into the loaded C{zone}.  A record whose
    owner and type the zone already has is an error naming the zone file's
    line: merging the two into one RRset (RFC 2181 5) would let generated
    data change what the administrator wrote, or the reverse.  Names
    outside the zone and SOA records are errors too; a record at a name the
    zone makes an alias (CNAME) is left out with a warning.

    @return: every problem; the zone must not be served if one is an error.
    """
    scratch = Zone(zone.origin, path)
    problems: list[Problem] = []
    _Parser(scratch, problems, defaultTTL).parseText(text, path, zone.origin)
    # The parser only warns about names outside the zone, as BIND does for
    # a file; a generator producing them is broken.
    problems = [
        Problem(p.path, p.line, p.reason.replace("ignoring ", "", 1)) if p.reason.startswith("ignoring out-of-zone") else p
        for p in problems
    ]
    for key, node in scratch.nodes.items():
        existing = zone.nodes.get(key)
        for rtype, rrset in node.rrsets.items():
            owned = existing.rrsets.get(rtype) if existing is not None else None
            where = f"{N.toText(rrset.owner)} {N.typeText(rtype)}"
            if owned is not None:
                problems.append(
                    Problem(owned.path, owned.line, f"{where} is written here and also generated by {path} (line {rrset.line}); remove one")
                )
            elif rtype == N.SOA:
                problems.append(Problem(path, rrset.line, f"{where}: only the zone file gives the SOA"))
            elif existing is not None and N.CNAME in existing.rrsets:
                # The file makes the name an alias, which holds no other
                # data (RFC 1034 3.6.2); a query for the generated type
                # follows the alias, so the record is not lost but moot.
                alias = existing.rrsets[N.CNAME]
                problems.append(
                    Problem(path, rrset.line, f"{where} not published: {alias.path} line {alias.line} makes the name an alias (CNAME)", "warning")
                )
            else:
                for rdata in rrset.rdatas:
                    zone.add(rrset.owner, rtype, rrset.ttl, rdata, path, rrset.line, problems)
    return problems


def loadZone(path: str | Path, origin: Name) -> Zone:
    """
    Read, parse and check one zone file (blocking: call it in a thread
    from the reactor).

    @raise ZoneError: naming each broken line.
    """
    from twisted_maillab.dns.integrity import checkZone  # it imports this module

    zone = Zone(origin, str(path))
    problems: list[Problem] = []
    parser = _Parser(zone, problems, None)
    parser.parseFile(Path(path), origin, 0, (str(path), 0))
    zone.sources = parser.sources
    if not any(p.severity == "error" for p in problems):
        checkZone(zone, problems)
    zone.warnings = [p for p in problems if p.severity != "error"]
    if any(p.severity == "error" for p in problems):
        # Emptied an entry at a time: the traceback would keep the zone
        # alive until the reactor thread drops it, and freed whole there a
        # large zone holds it (see twisted_maillab.dns.service._release).
        zone.nodes.release()
        raise ZoneError(path, problems, N.toText(origin))
    return zone
