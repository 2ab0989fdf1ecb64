"""
Parsing header fields the way IMAP reports them: header blocks into
fields, C{Content-*} values into type and parameters (RFC 2045 5.1,
RFC 2183), address lists with groups into ENVELOPE addresses (RFC 3501
7.4.2, RFC 5322 3.4), and the ENVELOPE itself.

Values stay raw bytes: RFC 3501 7.4.2 says encoded words (RFC 2047) are
passed through encoded, and 8-bit header bytes are sent as they are.
Nothing here raises on malformed input: a broken field gives C{None}
(NIL) or a best-effort value, as Dovecot does.
"""

from __future__ import annotations

__all__ = [
    "parseFields",
    "unfold",
    "parseContentType",
    "parseParams",
    "parseAddresses",
    "envelopeFromFields",
    "ENVELOPE_FIELDS",
]

# Header fields ENVELOPE reads (RFC 3501 7.4.2), lower-cased.
ENVELOPE_FIELDS = (
    b"date",
    b"subject",
    b"from",
    b"sender",
    b"reply-to",
    b"to",
    b"cc",
    b"bcc",
    b"in-reply-to",
    b"message-id",
)

_WSP = b" \t"


class AddressList(list):
    """
    An ENVELOPE address list: RFC 3501 9 writes its addresses without a
    space between (C{"(" 1*address ")"}).
    """


class Literal(bytes):
    """
    A value that was folded over several lines in the header: Dovecot
    sends such values as literals, and so does the formatter.
    """


def parseFields(header: bytes) -> list[tuple[bytes, bytes]]:
    """
    Split a header block (line ends LF or CRLF, the blank line included or
    not) into C{(lower-cased name, raw value)} pairs in order.  The value
    keeps its folding line breaks; lines without a colon are ignored, and
    continuation lines before any field are dropped.
    """
    fields: list[list] = []
    lines = header.split(b"\n")
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if line.endswith(b"\r") and index < last:
            # A CR before the LF is the line end; a CR cut off by the end
            # of the file is part of the value.
            line = line[:-1]
        if not line:
            # Only the blank line ends a header; a split gives a last ""
            # after a final LF too.
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1] += b"\r\n" + line
            continue
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].rstrip(_WSP)
        if not name or any(c <= 32 or c >= 127 for c in name):
            continue
        fields.append([name.lower(), line[colon + 1 :]])
    return [(name, value) for name, value in fields]


def unfold(value: bytes) -> bytes:
    """
    A field value as ENVELOPE sends it: folding CRLFs removed (RFC 5322
    2.2.3), leading white space stripped (trailing kept, as Dovecot
    does).  A folded value comes back as a L{Literal} (as Dovecot sends
    it).
    """
    if value.endswith(b"\r"):
        # A CR cut off by the end of the file (see parseFields).
        value = value[:-1]
    if b"\n" not in value:
        return value.lstrip(_WSP)
    return Literal(value.replace(b"\r\n", b"").replace(b"\n", b"").lstrip(_WSP))


def forHumans(value: bytes) -> bytes:
    """
    A value meant to be read (ENVELOPE's subject) as Dovecot sends it:
    line breaks and NULs dropped, tabs as spaces, white space runs as one
    space, no leading or trailing space; a L{Literal} when that changed
    anything.
    """
    # The white space after the colon is not part of the value.
    value = value.lstrip(_WSP)
    text = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
    collapsed = b" ".join(part for part in text.replace(b"\t", b" ").split(b" ") if part)
    return collapsed if collapsed == value else Literal(collapsed)


def _tokens(value: bytes):
    """
    RFC 5322 3.2 lexical tokens of a structured field: C{("atom", bytes)},
    C{("quoted", bytes)} (unescaped), C{("comment", bytes)} (C{"open-quote"}
    and C{"open-comment"} when unterminated),
    C{("literal", bytes)} (a C{[domain literal]} with brackets) and
    C{("special", char)}.  Unterminated quotes and comments end at the end.
    """
    i = 0
    n = len(value)
    specials = b'()<>[]:;@\\,."'
    while i < n:
        c = value[i : i + 1]
        if c in b" \t\r\n":
            i += 1
        elif c == b'"':
            i += 1
            out = bytearray()
            while i < n and value[i : i + 1] != b'"':
                if value[i : i + 1] == b"\\" and i + 1 < n:
                    i += 1
                if value[i : i + 1] not in (b"\r", b"\n"):
                    out += value[i : i + 1]
                i += 1
            # An unterminated quote runs to the end of the value.
            yield ("quoted" if i < n else "open-quote", bytes(out))
            i += 1
        elif c == b"(":
            depth = 1
            i += 1
            out = bytearray()
            while i < n and depth:
                d = value[i : i + 1]
                if d == b"\\" and i + 1 < n:
                    i += 1
                    out += value[i : i + 1]
                elif d == b"(":
                    depth += 1
                    out += d
                elif d == b")":
                    depth -= 1
                    if depth:
                        out += d
                elif d not in (b"\r", b"\n"):
                    out += d
                i += 1
            yield ("comment" if not depth else "open-comment", bytes(out))
        elif c == b"[":
            end = value.find(b"]", i)
            end = n if end < 0 else end + 1
            yield ("literal", value[i:end])
            i = end
        elif c in specials:
            yield ("special", c)
            i += 1
        else:
            start = i
            while i < n and value[i : i + 1] not in specials and value[i : i + 1] not in b" \t\r\n":
                i += 1
            yield ("atom", value[start:i])


def parseParams(text: bytes) -> list[tuple[bytes, bytes]]:
    """
    C{; name=value} parameters (RFC 2045 5.1), values unquoted, names as
    written.  A parameter without C{=} or with an empty name is skipped.
    """
    params = []
    i = 0
    n = len(text)
    while i < n:
        semi = text.find(b";", i)
        if semi < 0:
            break
        i = semi + 1
        while i < n and text[i : i + 1] in b" \t\r\n":
            i += 1
        start = i
        while i < n and text[i : i + 1] not in b'=; \t\r\n"':
            i += 1
        name = text[start:i]
        while i < n and text[i : i + 1] in b" \t\r\n":
            i += 1
        if i >= n or text[i : i + 1] != b"=" or not name:
            continue
        i += 1
        while i < n and text[i : i + 1] in b" \t\r\n":
            i += 1
        if text[i : i + 1] == b'"':
            i += 1
            out = bytearray()
            while i < n and text[i : i + 1] != b'"':
                if text[i : i + 1] == b"\\" and i + 1 < n:
                    i += 1
                if text[i : i + 1] not in b"\r\n":
                    out += text[i : i + 1]
                i += 1
            if i >= n:
                # An unterminated quoted value is dropped (Dovecot).
                break
            i += 1
            params.append((name, bytes(out)))
        else:
            start = i
            while i < n and text[i : i + 1] not in b"; \t\r\n":
                i += 1
            params.append((name, text[start:i]))
    return params


_TSPECIALS = b' \t()<>@,;:\\"/[]?='


def _token(value: bytes, i: int) -> int:
    # The end of an RFC 2045 5.1 token starting at i.
    while i < len(value) and value[i] > 32 and value[i] != 127 and value[i : i + 1] not in _TSPECIALS:
        i += 1
    return i


def parseContentType(value: bytes | None):
    """
    C{Content-Type} into C{(type, subtype, params)} as Dovecot reads it;
    C{None} if the field is missing.  A type without C{/subtype} keeps
    its type with an empty subtype (bare C{multipart} becomes
    application/octet-stream: it cannot be parsed as one); anything else
    malformed gives empty type and subtype and no parameters.
    """
    if value is None:
        return None
    value = unfold(value).strip(_WSP + b"\r\n")
    end = _token(value, 0)
    ctype = value[:end]
    rest = value[end:]
    if not rest.strip(_WSP):
        if ctype.lower() == b"multipart":
            return b"application", b"octet-stream", []
        return ctype, b"", []
    if not ctype:
        return b"", b"", []
    if rest[:1] == b"/":
        subEnd = _token(rest, 1)
        subtype = rest[1:subEnd]
        rest = rest[subEnd:]
        if not subtype:
            return b"", b"", []
    else:
        subtype = b""
    if rest.strip(_WSP) and rest.lstrip(_WSP)[:1] != b";":
        return b"", b"", []
    return ctype, subtype, parseParams(rest)


def parseDisposition(value: bytes | None):
    """
    C{Content-Disposition} (RFC 2183) into C{(type, params)} or C{None}.
    """
    if value is None:
        return None
    value = unfold(value)
    semi = value.find(b";")
    kind = (value if semi < 0 else value[:semi]).strip(_WSP)
    if not kind:
        return None
    return kind, parseParams(value[semi:] if semi >= 0 else b"")


def parseLanguage(value: bytes | None):
    """
    C{Content-Language} (RFC 3282): a list of language tags or C{None}.
    """
    if value is None:
        return None
    tags = [t.strip(_WSP) for t in unfold(value).split(b",")]
    tags = [t for t in tags if t]
    return tags or None


def _phrase(words: list[bytes]) -> bytes | None:
    return b" ".join(words) if words else None


def parseAddresses(value: bytes | None):
    """
    An address list (RFC 5322 3.4) as ENVELOPE addresses: a list of
    C{[name, adl, mailbox, host]} (C{None} for NIL), with group syntax as
    C{[None, None, groupname, None]} ... C{[None, None, None, None]}
    (RFC 3501 7.4.2).  C{None} if the field is missing or holds no
    address.
    """
    if value is None:
        return None
    result = AddressList()
    tokens = list(_tokens(value))
    i = 0
    n = len(tokens)
    inGroup = False

    def mailboxFrom(start, end, phrase, comment):
        # tokens[start:end] hold addr-spec or "<...>" forms.
        route = None
        local = []
        domain = []
        j = start
        part = local
        while j < end:
            kind, text = tokens[j]
            if kind == "special" and text == b"@":
                part = domain
            elif kind == "special" and text == b"." and part is local:
                local.append(b".")
            elif kind == "special" and text == b"." and part is domain:
                domain.append(b".")
            elif kind in ("atom", "literal", "quoted", "open-quote"):
                part.append(text)
            j += 1
        # Dovecot's placeholders for an address without a mailbox or
        # domain (RFC 3501 7.4.2 has NIL host only for group syntax).
        mailbox = b"".join(local) or b"MISSING_MAILBOX"
        host = b"".join(domain)
        if not host or (host[:1] != b"[" and (host.startswith(b".") or host.endswith(b".") or b".." in host)):
            # Not a dot-atom (RFC 5322 3.4.1): no usable domain.
            host = b"MISSING_DOMAIN"
        name = _phrase(phrase)
        if name is None and comment is not None:
            name = comment
        return [name, route, mailbox, host]

    while i < n:
        # One mailbox, group start, or group end.
        start = i
        comment = None
        angle = None
        while i < n:
            kind, text = tokens[i]
            if kind == "special" and text in (b",", b";"):
                break
            if kind == "special" and text == b":" and angle is None:
                break
            if kind == "special" and text == b"<":
                angle = i
                close = i + 1
                while close < n and tokens[close] != ("special", b">"):
                    close += 1
                i = min(close + 1, n)
                continue
            if kind == "comment" and i > start and tokens[i - 1][0] != "comment":
                # A comment after the address names it ("a@b (Name)").
                comment = bytes(unfold(text)) or comment
            i += 1
        end = i
        separator = tokens[i][1] if i < n else None
        if separator == b":":
            words = [t for k, t in tokens[start:end] if k in ("atom", "quoted")]
            result.append([None, None, b" ".join(words), None])
            inGroup = True
            i += 1
            continue
        if angle is not None:
            close = angle + 1
            while close < end and tokens[close] != ("special", b">"):
                close += 1
            # An obsolete route "@a,@b:" before the addr-spec (RFC 5322 4.4).
            inner = angle + 1
            route = None
            for k in range(angle + 1, close):
                if tokens[k] == ("special", b":"):
                    route = b"".join(t for _, t in tokens[angle + 1 : k])
                    inner = k + 1
            address = mailboxFrom(inner, close, _joinPhrase(tokens[start:angle]), None)
            address[1] = route
            if close >= end:
                # No closing ">": Dovecot's marker for the broken address.
                address[3] = b"SYNTAX_ERROR"
            result.append(address)
        elif any(kind.startswith("open-") for kind, _ in tokens[start:end]):
            # Cut off inside a quoted string or comment: nothing usable.
            result.append([None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"])
        elif _isBarePhrase(tokens[start:end]):
            # Words without an address ("Original S"): Dovecot makes them
            # the name of a missing mailbox.
            words = [t for k, t in tokens[start:end] if k in ("atom", "quoted")]
            result.append([b" ".join(words), None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"])
        elif any(kind != "comment" for kind, _ in tokens[start:end]):
            result.append(mailboxFrom(start, end, [], comment))
        if separator == b";":
            if inGroup:
                result.append([None, None, None, None])
                inGroup = False
        i += 1
    if inGroup:
        result.append([None, None, None, None])
    return result or None


def _isBarePhrase(tokens) -> bool:
    """
    Whether tokens without C{<...>} are a phrase rather than an
    addr-spec: no C{@} and several words in a row.
    """
    if any(token == ("special", b"@") for token in tokens):
        return False
    words = [kind for kind, _ in tokens if kind != "comment"]
    return any(a != "special" and b != "special" for a, b in zip(words, words[1:]))


def _joinPhrase(tokens) -> list[bytes]:
    """
    A display name's words as one value: atoms and quoted strings joined
    by single spaces, dots kept (the obsolete phrase of RFC 5322 4.1).
    """
    words: list[bytes] = []
    for kind, text in tokens:
        if kind in ("atom", "quoted"):
            words.append(text)
        elif kind == "special" and text == b"." and words:
            words[-1] += b"."
    return words


def envelopeFromFields(fields: dict[bytes, bytes]) -> list:
    """
    The ENVELOPE (RFC 3501 7.4.2) of a message whose header fields are
    C{fields} (lower-cased name to raw value, the first occurrence):
    C{[date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
    message-id]}, strings as bytes, NIL as C{None}; sender and reply-to
    default to from.
    """

    def text(name):
        value = fields.get(name)
        return None if value is None else unfold(value)

    subject = fields.get(b"subject")

    sender = parseAddresses(fields.get(b"from"))
    return [
        text(b"date"),
        None if subject is None else forHumans(subject),
        sender,
        parseAddresses(fields.get(b"sender")) or sender,
        parseAddresses(fields.get(b"reply-to")) or sender,
        parseAddresses(fields.get(b"to")),
        parseAddresses(fields.get(b"cc")),
        parseAddresses(fields.get(b"bcc")),
        text(b"in-reply-to"),
        text(b"message-id"),
    ]
