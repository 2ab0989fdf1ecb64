"""
IMAP response formatting (RFC 3501 section 7 and 9, RFC 9051): status
lines with response codes, strings quoted or sent as literals, lists, flags,
dates, sequence sets and the untagged data responses the server sends.

Every function returns bytes ready for the transport.  Text a response
carries (a status line's human-readable part, a response code's argument)
has CR and LF replaced by spaces, so nothing a client or a message supplied
can end a line early and inject a response.  Large literals (message
bodies) are not this module's business: the server streams them after
L{literalPrefix}.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from twisted_maillab.imap import mutf7
from twisted_maillab.imap.parser import SequenceSet

CRLF = b"\r\n"
QUOTED_MAX = 1024  # longer strings go as literals: some clients cap quoted strings
_ATOM = re.compile(rb'[^\x00-\x20\x7f(){%*"\\\]\x80-\xff]+')
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_LINE_BREAK = re.compile(rb"[\r\n]+")
_MONTHS = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

# Response codes without arguments (RFC 3501 7.1, RFC 5530, RFC 4315, RFC 7889)
ALERT = b"ALERT"
PARSE = b"PARSE"
READ_ONLY = b"READ-ONLY"
READ_WRITE = b"READ-WRITE"
TRYCREATE = b"TRYCREATE"
TOOBIG = b"TOOBIG"
EXPUNGEISSUED = b"EXPUNGEISSUED"
NONEXISTENT = b"NONEXISTENT"
ALREADYEXISTS = b"ALREADYEXISTS"
AUTHENTICATIONFAILED = b"AUTHENTICATIONFAILED"
UNAVAILABLE = b"UNAVAILABLE"
PRIVACYREQUIRED = b"PRIVACYREQUIRED"
LIMIT = b"LIMIT"
OVERQUOTA = b"OVERQUOTA"
INUSE = b"INUSE"
CANNOT = b"CANNOT"
SERVERBUG = b"SERVERBUG"
CLIENTBUG = b"CLIENTBUG"
NOPERM = b"NOPERM"
CLOSED = b"CLOSED"


def _text(text) -> bytes:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return _LINE_BREAK.sub(b" ", text)


def _num(value: int) -> bytes:
    return b"%d" % value


# ---------------------------------------------------------------------------
# Strings and lists


def literalPrefix(size: int) -> bytes:
    """
    @return: the C{{size}\\r\\n} that precedes a literal's octets.
    """
    return b"{%d}\r\n" % size


def quoted(data: bytes) -> bytes:
    """
    A quoted string, C{\\} and C{"} escaped.  The caller must know the data
    is quotable (no NUL, CR, LF or 8-bit octet); use L{string} otherwise.
    """
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(data) -> bytes:
    """
    An RFC 3501 C{string}: quoted when it can be (7-bit, no CR, LF or NUL,
    at most L{QUOTED_MAX} octets), else a literal.

    @param data: bytes, or str (sent as UTF-8).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) <= QUOTED_MAX and _QUOTABLE.fullmatch(data):
        return quoted(data)
    return literalPrefix(len(data)) + data


def astring(data) -> bytes:
    """
    An RFC 3501 C{astring}: a bare atom when the data is one (and is not
    C{NIL}, which a client could read as nil), else L{string}.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _ATOM.fullmatch(data) and data.upper() != b"NIL":
        return data
    return string(data)


def nstring(data) -> bytes:
    """
    An RFC 3501 C{nstring}: C{NIL} for L{None}, else L{string}.
    """
    return b"NIL" if data is None else string(data)


def mailbox(name: str) -> bytes:
    """
    A mailbox name for a response: modified UTF-7 (RFC 3501 5.1.3) as an
    astring; C{INBOX} in any case is sent as C{INBOX}.
    """
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(mutf7.encode(name))


def formatList(items) -> bytes:
    """
    A parenthesised list of already formatted items: C{(a b c)}.
    """
    return b"(" + b" ".join(items) + b")"


def flags(names) -> bytes:
    """
    A flag list: C{(\\Seen $Forwarded)}.

    @param names: flags as str (the store's names) or bytes.
    """
    return formatList(n.encode("ascii") if isinstance(n, str) else n for n in names)


def sequenceSet(values) -> bytes:
    """
    A sequence set with runs compressed: C{[1, 2, 3, 5]} -> C{b"1:3,5"}.

    @param values: positive integers, in any order; a L{SequenceSet} is
        formatted as it is.
    """
    if isinstance(values, SequenceSet):
        return values.format()
    return SequenceSet.fromValues(values).format()


def internalDate(when) -> bytes:
    """
    An RFC 3501 C{date-time}, quoted: C{"17-Jul-1996 02:44:25 -0700"}.

    @param when: an aware L{datetime} (its own offset is used), a naive
        one (taken as UTC), or seconds since the epoch (shown in the
        server's local time zone, as Dovecot does).
    """
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, timezone.utc).astimezone()
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    offset = int(when.utcoffset().total_seconds()) // 60
    sign = b"-" if offset < 0 else b"+"
    offset = abs(offset)
    return b'"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        when.day,
        _MONTHS[when.month - 1],
        when.year,
        when.hour,
        when.minute,
        when.second,
        sign,
        offset // 60,
        offset % 60,
    )


# ---------------------------------------------------------------------------
# Status responses


def code(name: bytes, *args) -> bytes:
    """
    A response code's text, without brackets: C{code(b"UIDNEXT", 4392)}
    -> C{b"UIDNEXT 4392"}.

    @param args: ints, bytes (sent as they are, line breaks removed) or
        str (UTF-8).
    """
    parts = [name]
    for arg in args:
        parts.append(_num(arg) if isinstance(arg, int) else _text(arg).replace(b"]", b" "))
    return b" ".join(parts)


def codeUidValidity(value: int) -> bytes:
    """
    @return: C{UIDVALIDITY n}.
    """
    return code(b"UIDVALIDITY", value)


def codeUidNext(value: int) -> bytes:
    """
    @return: C{UIDNEXT n}.
    """
    return code(b"UIDNEXT", value)


def codeUnseen(seq: int) -> bytes:
    """
    @return: C{UNSEEN n}, the first unseen message's sequence number.
    """
    return code(b"UNSEEN", seq)


def codePermanentFlags(names, keywordsAllowed: bool = True) -> bytes:
    """
    @return: C{PERMANENTFLAGS (\\Answered ... \\*)}; C{\\*} when clients may
        create keywords.
    """
    names = list(names) + ([b"\\*"] if keywordsAllowed else [])
    return b"PERMANENTFLAGS " + flags(names)


def codeCapability(capabilities) -> bytes:
    """
    @return: C{CAPABILITY IMAP4rev1 ...} (the caller puts IMAP4rev1
        first).
    """
    return b"CAPABILITY " + b" ".join(c.encode("ascii") if isinstance(c, str) else c for c in capabilities)


def codeAppendUid(uidValidity: int, uids) -> bytes:
    """
    @return: C{APPENDUID validity uid-set} (RFC 4315).
    @param uids: the new message's UID, or UIDs for MULTIAPPEND.
    """
    if isinstance(uids, int):
        uids = [uids]
    return b"APPENDUID %d %s" % (uidValidity, sequenceSet(uids))


def codeCopyUid(uidValidity: int, sourceUids, targetUids) -> bytes:
    """
    @return: C{COPYUID validity source-set target-set} (RFC 4315).

    The two sets are written in the order given, without sorting or
    compression (RFC 4315 3: the n-th source UID maps to the n-th target UID,
    so each list must be in the same order: ascending source UIDs).
    """
    return b"COPYUID %d %s %s" % (uidValidity, _uidList(sourceUids), _uidList(targetUids))


def _uidList(uids) -> bytes:
    uids = list(uids)
    if uids == sorted(uids):
        return sequenceSet(uids)
    return b",".join(_num(u) for u in uids)


def _status(head: bytes, status, text, respCode) -> bytes:
    status = status.encode("ascii") if isinstance(status, str) else status
    out = head + b" " + status
    if respCode:
        out += b" [" + _text(respCode) + b"]"
    return out + b" " + (_text(text) or status) + CRLF


def tagged(tag, status, text, respCode=None) -> bytes:
    """
    A tagged status response: C{a1 OK [READ-WRITE] SELECT completed}.

    @param tag: the command's tag (str or bytes); L{None} gives C{*}
        (an untagged BAD when the tag could not be read).
    @param status: C{OK}, C{NO} or C{BAD}.
    @param text: human-readable text (line breaks become spaces).
    @param respCode: a response code without brackets, or L{None}.
    """
    if tag is None:
        head = b"*"
    else:
        head = tag.encode("ascii") if isinstance(tag, str) else tag
    return _status(head, status, text, respCode)


def untaggedStatus(status, text, respCode=None) -> bytes:
    """
    An untagged status response: C{* OK [UIDNEXT 4392] Predicted next UID},
    C{* BYE Autologout}, C{* PREAUTH ...}.
    """
    return _status(b"*", status, text, respCode)


def untagged(data: bytes) -> bytes:
    """
    C{* data\\r\\n}: for data responses built by the caller.
    """
    return b"* " + data + CRLF


def continuation(text=b"Ready") -> bytes:
    """
    A continuation request: C{+ Ready}, or C{+ base64} for a SASL
    challenge (pass C{b""} for an empty challenge, C{+ }).
    """
    return b"+ " + _text(text) + CRLF


def parseErrorResponse(error) -> bytes:
    """
    The response for a L{ParseError} from the parser: the tagged (or
    untagged, without a tag) status and code it carries, or C{* BYE} when
    the error is fatal.
    """
    if error.fatal:
        return untaggedStatus(b"BYE", error.message, error.code.encode("ascii") if error.code else None)
    return tagged(error.tag, error.status, error.message, error.code.encode("ascii") if error.code else None)


# ---------------------------------------------------------------------------
# Data responses


def exists(count: int) -> bytes:
    """
    @return: C{* n EXISTS}.
    """
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    """
    @return: C{* n RECENT}.
    """
    return b"* %d RECENT\r\n" % count


def expunge(seq: int) -> bytes:
    """
    @return: C{* n EXPUNGE}.
    """
    return b"* %d EXPUNGE\r\n" % seq


def flagsResponse(names) -> bytes:
    """
    @return: C{* FLAGS (...)}, the flags a mailbox defines.
    """
    return b"* FLAGS " + flags(names) + CRLF


def capability(capabilities) -> bytes:
    """
    @return: C{* CAPABILITY IMAP4rev1 ...}.
    """
    return b"* " + codeCapability(capabilities) + CRLF


def fetchResponse(seq: int, items) -> bytes:
    """
    C{* seq FETCH (name value ...)}.

    @param items: C{(name, value)} pairs of bytes already formatted
        (C{(b"FLAGS", flags(...))}, C{(b"UID", b"7")},
        C{(att.responseName(), string(data))}).
    """
    return b"* %d FETCH (" % seq + b" ".join(name + b" " + value for name, value in items) + b")\r\n"


def listResponse(name: str, attributes=(), delimiter: str | None = "/", command: bytes = b"LIST", extended=None) -> bytes:
    """
    C{* LIST (\\HasNoChildren) "/" INBOX} (also LSUB with C{command}).

    @param attributes: name attributes, str or bytes (C{"\\\\Sent"}).
    @param delimiter: the hierarchy delimiter, or L{None} for NIL.
    @param extended: formatted extended items (RFC 5258 C{mbox-list-extended}
        such as C{b'("CHILDINFO" ("SUBSCRIBED"))'}), or L{None}.
    """
    delim = b"NIL" if delimiter is None else quoted(delimiter.encode("ascii"))
    out = b"* " + command + b" " + flags(attributes) + b" " + delim + b" " + mailbox(name)
    if extended:
        out += b" " + extended
    return out + CRLF


def statusResponse(name: str, items) -> bytes:
    """
    C{* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)}.

    @param items: C{(name, number)} pairs, names str or bytes.
    """
    body = b" ".join((k.encode("ascii") if isinstance(k, str) else k) + b" " + _num(v) for k, v in items)
    return b"* STATUS " + mailbox(name) + b" (" + body + b")\r\n"


def searchResponse(numbers, command: bytes = b"SEARCH") -> bytes:
    """
    C{* SEARCH 2 84 882}, or C{* SEARCH} when nothing matched (RFC 3501
    7.2.5 wants the line even then); C{command=b"SORT"} for SORT.
    """
    return b" ".join([b"* " + command] + [_num(n) for n in numbers]) + CRLF


def esearchResponse(tag, numbers, options, uid: bool = False) -> bytes:
    """
    C{* ESEARCH (TAG "a1") UID MIN 2 COUNT 3} (RFC 4731 3.1).

    @param numbers: the matching sequence numbers or UIDs, ascending.
    @param options: the requested return options (C{"MIN" "MAX" "ALL"
        "COUNT"}); MIN, MAX and ALL are left out when nothing matched.
    """
    tag = tag.encode("ascii") if isinstance(tag, str) else tag
    out = [b"* ESEARCH (TAG " + quoted(tag) + b")"]
    if uid:
        out.append(b"UID")
    numbers = list(numbers)
    if numbers:
        if "MIN" in options:
            out.append(b"MIN %d" % numbers[0])
        if "MAX" in options:
            out.append(b"MAX %d" % numbers[-1])
        if "ALL" in options:
            out.append(b"ALL " + sequenceSet(numbers))
    if "COUNT" in options:
        out.append(b"COUNT %d" % len(numbers))
    return b" ".join(out) + CRLF


def idResponse(parameters) -> bytes:
    """
    C{* ID ("name" "maillab" ...)} (RFC 2971), or C{* ID NIL}.

    @param parameters: a mapping of str to str or L{None}, or L{None}.
    """
    if not parameters:
        return b"* ID NIL\r\n"
    return b"* ID " + formatList(string(k) + b" " + nstring(v) for k, v in parameters.items()) + CRLF


def namespaceResponse(personal=(("", "/"),), other=None, shared=None) -> bytes:
    """
    C{* NAMESPACE (("" "/")) NIL NIL} (RFC 2342).

    @param personal: C{(prefix, delimiter)} pairs, or L{None}; likewise
        C{other} (other users') and C{shared}.
    """

    def one(spaces):
        if not spaces:
            return b"NIL"
        return formatList(
            b"(" + string(mutf7.encode(p)) + b" " + (b"NIL" if d is None else quoted(d.encode())) + b")" for p, d in spaces
        )

    return b"* NAMESPACE " + one(personal) + b" " + one(other) + b" " + one(shared) + CRLF


def enabledResponse(capabilities) -> bytes:
    """
    C{* ENABLED cap ...} (RFC 5161).
    """
    return b" ".join([b"* ENABLED"] + [c.encode("ascii") if isinstance(c, str) else c for c in capabilities]) + CRLF

