"""
The SMTP envelope: reverse and forward paths and their ESMTP parameters,
parsed (never ignored) from C{MAIL FROM:} and C{RCPT TO:}.

Twisted's C{mail_re}/C{Address} reject UTF-8 local parts and drop every
parameter on the floor (C{twisted.mail.smtp.SMTP.do_MAIL}/C{do_RCPT}
match C{mail_re}/C{rcpt_re} and ignore the rest); this module parses
them per:

  - RFC 5321 4.1.2 (path syntax), 4.5.3.1 (size limits);
  - RFC 1870 (C{SIZE=}), RFC 6152 (C{BODY=7BIT|8BITMIME}), RFC 6531
    (C{SMTPUTF8}), RFC 3461 (C{RET=}, C{ENVID=}, C{NOTIFY=}, C{ORCPT=}),
    RFC 4954 5 (C{AUTH=} on MAIL, accepted and not trusted).

Errors are L{SMTPReply} exceptions carrying the reply to send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "SMTPReply",
    "Mailbox",
    "MailParams",
    "RcptParams",
    "parseMail",
    "parseRcpt",
    "xtextDecode",
]


class SMTPReply(Exception):
    """
    An SMTP reply to send instead of the normal one.

    @ivar code: the three-digit reply code.
    @ivar enhanced: the RFC 3463 enhanced status code (C{"5.1.1"}).
    @ivar text: the human-readable text.
    """

    def __init__(self, code: int, enhanced: str, text: str):
        super().__init__(code, enhanced, text)
        self.code = code
        self.enhanced = enhanced
        self.text = text

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


# RFC 5321 4.5.3.1.1-3: local part 64, domain 255, path 256 octets.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256

# RFC 5321 4.1.2 atext plus "." (Dot-string), and RFC 6531 3.3 UTF8-non-ascii.
_ATEXT = rb"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_STRING = re.compile(rb"[" + _ATEXT + rb"]+(\.[" + _ATEXT + rb"]+)*")
_DOT_STRING_UTF8 = re.compile(
    rb"[\x80-\xff" + _ATEXT + rb"]+(\.[\x80-\xff" + _ATEXT + rb"]+)*"
)
# qtextSMTP / quoted-pairSMTP (RFC 5321 4.1.2).
_QUOTED = re.compile(rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x20-\x7e])*"')
_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(_LABEL + rb"(?:\." + _LABEL + rb")*\.?")
_DOMAIN_UTF8 = re.compile(
    rb"[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]*[A-Za-z0-9\x80-\xff])?"
    rb"(?:\.[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]*[A-Za-z0-9\x80-\xff])?)*\.?"
)
_ADDRESS_LITERAL = re.compile(rb"\[[\x21-\x5a\x5e-\x7e]+\]")
# esmtp-keyword and esmtp-value (RFC 5321 4.1.2); RFC 6531 3.3 widens the
# value to UTF-8.
_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(rb"[\x21-\x3c\x3e-\x7e\x80-\xff]+")
# RFC 3461 4: xtext.
_XTEXT = re.compile(rb"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def xtextDecode(value: bytes) -> bytes:
    """
    Decode RFC 3461 4 xtext (C{+2B} is C{+}).
    """
    return re.sub(rb"\+([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value)


@dataclass(frozen=True)
class Mailbox:
    """
    A parsed mailbox: C{local@domain}, or the null reverse path, or the
    special C{<Postmaster>} recipient (RFC 5321 4.1.1.3).

    @ivar local: the local part as received (quotes kept), text.
    @ivar domain: the domain (lower case, without trailing dot), or C{""}.
    """

    local: str
    domain: str

    @property
    def null(self) -> bool:
        return not self.local and not self.domain

    @property
    def address(self) -> str:
        if self.null:
            return ""
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def bareLocal(self) -> str:
        """
        The local part without quoting (C{"a b"} -> C{a b}).
        """
        if len(self.local) >= 2 and self.local[0] == self.local[-1] == '"':
            return re.sub(r"\\(.)", r"\1", self.local[1:-1])
        return self.local

    def __str__(self) -> str:
        return f"<{self.address}>"


@dataclass
class MailParams:
    """
    The parameters of C{MAIL FROM:}.

    @ivar size: declared size (RFC 1870) or L{None}.
    @ivar body: C{"7BIT"} or C{"8BITMIME"} (RFC 6152) or L{None}.
    @ivar smtputf8: RFC 6531 C{SMTPUTF8} given.
    @ivar ret: RFC 3461 C{FULL}/C{HDRS} or L{None}.
    @ivar envid: RFC 3461 envelope id (decoded xtext) or L{None}.
    @ivar auth: RFC 4954 5 C{AUTH=} value (decoded) or L{None}.
    """

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None


@dataclass
class RcptParams:
    """
    The parameters of C{RCPT TO:} (RFC 3461 4.1, 4.2).

    @ivar notify: C{()} (absent), C{("NEVER",)} or a subset of SUCCESS,
        FAILURE, DELAY.
    @ivar orcptType: C{"rfc822"} or C{"utf-8"} or L{None}.
    @ivar orcpt: the decoded original recipient or L{None}.
    """

    notify: tuple = ()
    orcptType: str | None = None
    orcpt: str | None = None


@dataclass
class Recipient:
    """
    One accepted recipient of a transaction.

    @ivar mailbox: the RCPT address.
    @ivar params: its L{RcptParams}.
    @ivar targets: what the policy resolved it to (accounts, with the
        address written into Delivered-To).
    """

    mailbox: Mailbox
    params: RcptParams
    targets: list = field(default_factory=list)


def _splitPath(rest: bytes, keyword: bytes, code: str) -> tuple[bytes, bytes]:
    """
    Split C{FROM:<path> params} into the path (inside the brackets) and the
    parameter text.  Like Postfix (smtpd_strict_rfc821_envelopes = no) a
    space after the colon is tolerated; the brackets are required.
    """
    if rest[: len(keyword) + 1].upper() != keyword + b":":
        raise SMTPReply(501, "5.5.4", f"Syntax: {keyword.decode()}:<address>")
    rest = rest[len(keyword) + 1 :].lstrip(b" ")
    if not rest.startswith(b"<"):
        raise SMTPReply(501, code, "Bad address syntax: the address must be inside <>")
    end = _closingBracket(rest)
    if end < 0:
        raise SMTPReply(501, code, "Bad address syntax: missing >")
    path, params = rest[1:end], rest[end + 1 :]
    if params and not params.startswith(b" "):
        raise SMTPReply(501, code, "Bad address syntax after >")
    return path, params.strip(b" ")


def _closingBracket(text: bytes) -> int:
    # A quoted local part may contain ">".
    quoted = False
    escaped = False
    for index in range(1, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == 0x5C and quoted:
            escaped = True
        elif char == 0x22:
            quoted = not quoted
        elif char == 0x3E and not quoted:
            return index
    return -1


def parseMailbox(path: bytes, code: str, utf8: bool, allowNull: bool, allowPostmaster: bool) -> Mailbox:
    """
    Parse the text between C{<} and C{>}.

    @param code: the enhanced code for syntax errors (5.1.7 sender,
        5.1.3 recipient).
    @param utf8: the transaction declared SMTPUTF8.
    """
    if not path:
        if allowNull:
            return Mailbox("", "")
        raise SMTPReply(501, code, "Bad address syntax: empty address")
    if len(path) > MAX_PATH:
        raise SMTPReply(501, code, "Bad address syntax: path longer than 256 octets")
    # RFC 5321 4.1.2 / C.: a source route "@a,@b:" is accepted and ignored.
    if path.startswith(b"@"):
        colon = path.find(b":")
        if colon < 0:
            raise SMTPReply(501, code, "Bad address syntax: bad source route")
        path = path[colon + 1 :]
    if not utf8 and any(byte >= 0x80 for byte in path):
        # RFC 6531 3.4: non-ASCII addresses need the SMTPUTF8 parameter.
        raise SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    if allowPostmaster and path.lower() == b"postmaster":
        return Mailbox("postmaster", "")
    at = path.rfind(b"@")
    if at <= 0:
        raise SMTPReply(501, code, "Bad address syntax: need local@domain")
    local, domain = path[:at], path[at + 1 :]
    localRe = _DOT_STRING_UTF8 if utf8 else _DOT_STRING
    quotedRe = _QUOTED_UTF8 if utf8 else _QUOTED
    if not (localRe.fullmatch(local) or quotedRe.fullmatch(local)):
        raise SMTPReply(501, code, "Bad address syntax in the local part")
    if len(local) > MAX_LOCAL:
        raise SMTPReply(501, code, "Bad address syntax: local part longer than 64 octets")
    domainRe = _DOMAIN_UTF8 if utf8 else _DOMAIN
    if not (domainRe.fullmatch(domain) or _ADDRESS_LITERAL.fullmatch(domain)):
        raise SMTPReply(501, code, "Bad address syntax in the domain")
    if len(domain) > MAX_DOMAIN:
        raise SMTPReply(501, code, "Bad address syntax: domain longer than 255 octets")
    try:
        localText = local.decode("utf-8")
        domainText = domain.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPReply(501, code, "Bad address syntax: invalid UTF-8") from None
    return Mailbox(localText, domainText.rstrip(".").lower())


def _params(text: bytes) -> list[tuple[str, bytes | None]]:
    result = []
    seen = set()
    for item in text.split(b" "):
        if not item:
            continue
        key, eq, value = item.partition(b"=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            raise SMTPReply(501, "5.5.4", f"Bad parameter syntax: {item[:40].decode('ascii', 'replace')}")
        name = key.decode("ascii").upper()
        if name in seen:
            raise SMTPReply(501, "5.5.4", f"Duplicate parameter {name}")
        seen.add(name)
        result.append((name, value if eq else None))
    return result


def _needValue(name: str, value: bytes | None) -> bytes:
    if value is None:
        raise SMTPReply(501, "5.5.4", f"{name} needs a value")
    return value


def _xtextParam(name: str, value: bytes | None, limit: int) -> str:
    value = _needValue(name, value)
    if not _XTEXT.fullmatch(value) or len(value) > limit:
        raise SMTPReply(501, "5.5.4", f"Bad {name} value")
    return xtextDecode(value).decode("utf-8", "replace")


def parseMail(rest: bytes, extensions: frozenset) -> tuple[Mailbox, MailParams]:
    """
    Parse the argument of C{MAIL}.

    @param extensions: the EHLO keywords advertised for this session
        (parameters of extensions not offered are refused with 555).
    @raise SMTPReply: syntax (501), unknown parameter (555 5.5.4).
    """
    path, paramText = _splitPath(rest, b"FROM", "5.1.7")
    params = MailParams()
    for name, value in _params(paramText):
        if name == "SIZE" and "SIZE" in extensions:
            value = _needValue(name, value)
            if not value.isdigit() or len(value) > 20:
                raise SMTPReply(501, "5.5.4", "Bad SIZE value")
            params.size = int(value)
        elif name == "BODY" and "8BITMIME" in extensions:
            body = _needValue(name, value).upper()
            if body not in (b"7BIT", b"8BITMIME"):
                # BINARYMIME needs CHUNKING (RFC 3030), not offered.
                raise SMTPReply(501, "5.5.4", "Unsupported BODY type")
            params.body = body.decode()
        elif name == "SMTPUTF8" and "SMTPUTF8" in extensions:
            if value is not None:
                raise SMTPReply(501, "5.5.4", "SMTPUTF8 takes no value")
            params.smtputf8 = True
        elif name == "RET" and "DSN" in extensions:
            ret = _needValue(name, value).upper()
            if ret not in (b"FULL", b"HDRS"):
                raise SMTPReply(501, "5.5.4", "Bad RET value")
            params.ret = ret.decode()
        elif name == "ENVID" and "DSN" in extensions:
            # RFC 3461 4.4: at most 100 characters.
            params.envid = _xtextParam(name, value, 100)
        elif name == "AUTH" and "AUTH" in extensions:
            # RFC 4954 5: accepted; we never trust it from a client.
            params.auth = _xtextParam(name, value, 500)
        else:
            raise SMTPReply(555, "5.5.4", f"Unsupported option: {name}")
    mailbox = parseMailbox(path, "5.1.7", params.smtputf8, allowNull=True, allowPostmaster=False)
    return mailbox, params


_NOTIFY = {"SUCCESS", "FAILURE", "DELAY"}


def parseRcpt(rest: bytes, extensions: frozenset, utf8: bool) -> tuple[Mailbox, RcptParams]:
    """
    Parse the argument of C{RCPT}.

    @param utf8: the transaction's MAIL carried SMTPUTF8.
    @raise SMTPReply: syntax (501), unknown parameter (555 5.5.4).
    """
    path, paramText = _splitPath(rest, b"TO", "5.1.3")
    params = RcptParams()
    for name, value in _params(paramText):
        if name == "NOTIFY" and "DSN" in extensions:
            items = _needValue(name, value).decode("ascii", "replace").upper().split(",")
            if items == ["NEVER"]:
                params.notify = ("NEVER",)
            elif not items or not set(items) <= _NOTIFY or len(set(items)) != len(items):
                raise SMTPReply(501, "5.5.4", "Bad NOTIFY value")
            else:
                params.notify = tuple(items)
        elif name == "ORCPT" and "DSN" in extensions:
            value = _needValue(name, value)
            kind, semi, original = value.partition(b";")
            if not semi or not kind or not original or len(value) > 500:
                raise SMTPReply(501, "5.5.4", "Bad ORCPT value")
            kind = kind.decode("ascii", "replace").lower()
            if kind == "utf-8":
                # RFC 6533 3: utf-8-addr-xtext; \x{HEX} escapes kept as is.
                params.orcpt = original.decode("utf-8", "replace")
            else:
                if not _XTEXT.fullmatch(original):
                    raise SMTPReply(501, "5.5.4", "Bad ORCPT value")
                params.orcpt = xtextDecode(original).decode("utf-8", "replace")
            params.orcptType = kind
        else:
            raise SMTPReply(555, "5.5.4", f"Unsupported option: {name}")
    mailbox = parseMailbox(path, "5.1.3", utf8, allowNull=False, allowPostmaster=True)
    return mailbox, params
