"""
The checks of one received message, thread side: SPF of the client,
every DKIM signature, DMARC of the From: domain, and the
C{Authentication-Results:} field (RFC 8601) that reports them, built with
the C{authres} package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import authres
import authres.dkim_b
import authres.dmarc  # noqa: F401  (registers the dmarc method)
import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from twisted_maillab.mailauth.dmarc import DMARCResult, evaluate
from twisted_maillab.mailauth.lookup import Lookup, TempError
from twisted_maillab.mailauth.signing import HEADER_LIMIT, fromDomains
from twisted_maillab.mailauth.spf import checkSPF

__all__ = ["Results", "checkMessage", "resultsField", "stripOurResults", "MAX_SIGNATURES"]

# Signatures verified per message, each costing a key lookup (RFC 6376
# 6.1: a verifier MAY limit them); the others are reported as "policy".
MAX_SIGNATURES = 8


@dataclass
class DKIMResult:
    result: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    b: str = ""
    reason: str = ""


@dataclass
class Results:
    """
    What the checks found.

    @ivar action: C{accept}, C{junk} or C{reject}, from the policy knobs.
    """

    spf: str
    spfIdentity: str
    spfDomain: str
    helo: str
    mailfrom: str
    dkim: list = field(default_factory=list)
    dmarc: DMARCResult | None = None
    action: str = "accept"
    reason: str = ""

    @classmethod
    def failed(cls, sender: str, helo: str) -> "Results":
        """
        What to report when the checks themselves failed: temperrors,
        and the message accepted (RFC 7489 6.6.3: no disposition).
        """
        return cls(
            "temperror",
            "mailfrom" if sender else "helo",
            sender.rpartition("@")[2],
            helo,
            sender,
            dkim=[DKIMResult("temperror")],
            dmarc=DMARCResult("temperror", ""),
        )


def _signatureTags(value: bytes) -> dict:
    try:
        return parse_tag_value(re.sub(rb"\s+", b"", value))
    except (InvalidTagValueList, ValueError):
        return {}


def _signatureValues(message: bytes) -> list[bytes]:
    verifier = dkim.DKIM(message)
    return [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]


def _described(value: bytes) -> dict:
    tags = _signatureTags(value)
    return dict(
        domain=tags.get(b"d", b"").decode("ascii", "replace").lower(),
        selector=tags.get(b"s", b"").decode("ascii", "replace"),
        algorithm=tags.get(b"a", b"").decode("ascii", "replace"),
        b=tags.get(b"b", b"").decode("ascii", "replace")[:8],
    )


def checkDKIM(lookup: Lookup, message: bytes, timeout: float) -> list[DKIMResult]:
    """
    Verify every C{DKIM-Signature} (RFC 6376 6.1), each on its own.
    """
    results = []
    try:
        values = _signatureValues(message)
    except (dkim.DKIMException, IndexError, ValueError) as e:
        # A header section dkimpy cannot parse (RFC 5322 2.2 field syntax;
        # a first line that is a continuation raises IndexError there):
        # any signature in it is unusable.
        header = message.partition(b"\n\n")[0].lower()
        return [DKIMResult("permerror", reason=str(e))] if b"dkim-signature" in header else []
    for index, value in enumerate(values):
        if index >= MAX_SIGNATURES:
            results.append(DKIMResult("policy", reason="too many signatures", **_described(value)))
            continue
        one = DKIMResult("fail", **_described(value))
        try:
            verifier = dkim.DKIM(message, minkey=1024, timeout=timeout)
            ok = verifier.verify(idx=index, dnsfunc=lookup.dkimTXT)
            one.result = "pass" if ok else "fail"
        except (TempError, dkim.DnsTimeoutError) as e:
            one.result, one.reason = "temperror", str(e)
        except dkim.ValidationError as e:
            # RFC 6376 3.7: a body hash that differs fails the signature;
            # a signature that cannot be checked (syntax, algorithm) is a
            # permerror (RFC 8601 2.7.1).
            one.result = "fail" if "body hash mismatch" in str(e) else "permerror"
            one.reason = str(e)
        except (dkim.KeyFormatError, dkim.MessageFormatError, dkim.ParameterError) as e:
            one.result, one.reason = "permerror", str(e)
        except dkim.DKIMException as e:
            one.result, one.reason = "neutral", str(e)
        results.append(one)
    return results


def checkMessage(
    lookup: Lookup,
    message: bytes,
    ip: str,
    helo: str,
    sender: str,
    receiver: str,
    settings,
    tooLarge: bool = False,
) -> Results:
    """
    Run the checks and decide (thread side).

    @param settings: the C{[mailauth]} section (actions, timeout).
    @param tooLarge: C{message} is only the header of a message past
        C{verify_size_limit}: its signatures are not verified (RFC 8601
        2.7.1 C{policy}).
    """
    spfResult, identity, _ = checkSPF(lookup, ip, sender, helo, receiver)
    spfDomain = sender.rpartition("@")[2].lower() if sender else (helo or "").lower()
    results = Results(spfResult, identity, spfDomain, helo or "", sender)
    if tooLarge:
        try:
            values = _signatureValues(message)
        except (dkim.DKIMException, IndexError, ValueError):
            values = []
        results.dkim = [DKIMResult("policy", reason="message too large to verify", **_described(value)) for value in values]
    else:
        results.dkim = checkDKIM(lookup, message, settings.dns_timeout)
    header = message.split(b"\n\n", 1)[0][:HEADER_LIMIT]
    domains = fromDomains(header)
    if len(set(domains)) == 1:
        passed = [d.domain for d in results.dkim if d.result == "pass"]
        results.dmarc = evaluate(lookup, domains[0], spfResult, spfDomain, passed)
    elif domains:
        # RFC 7489 6.6.1: several From: domains cannot be evaluated.
        results.dmarc = DMARCResult("permerror", domains[0])
    dmarc = results.dmarc
    if dmarc is not None and dmarc.result == "fail" and dmarc.disposition in ("reject", "quarantine"):
        action = settings.dmarc_reject_action if dmarc.disposition == "reject" else settings.dmarc_quarantine_action
        results.action = {"reject": "reject", "junk": "junk", "record": "accept"}[action]
        results.reason = f"DMARC policy of {dmarc.fromDomain} ({dmarc.policy}) not met"
    if results.action == "accept" and spfResult == "fail" and settings.spf_fail_action == "reject":
        results.action = "reject"
        results.reason = f"SPF of {spfDomain} does not permit {ip}"
    return results


def resultsField(authservId: str, results: Results) -> bytes:
    """
    The C{Authentication-Results:} field (RFC 8601 2.2), LF line ends.
    """
    methods = []
    if results.spfIdentity == "mailfrom":
        methods.append(authres.SPFAuthenticationResult(result=results.spf, smtp_mailfrom=results.mailfrom))
    else:
        methods.append(authres.SPFAuthenticationResult(result=results.spf, smtp_helo=results.helo or "unknown"))
    if not results.dkim:
        methods.append(authres.DKIMAuthenticationResult(result="none"))
    for one in results.dkim:
        # RFC 6008: header.b tells two signatures of one domain apart.
        method = authres.dkim_b.DKIMAuthenticationResult(result=one.result, header_d=one.domain or None)
        if one.selector:
            method.header_s = one.selector
        if one.algorithm:
            method.header_a = one.algorithm
        if one.b:
            method.header_b = one.b
        methods.append(method)
    if results.dmarc is not None and results.dmarc.fromDomain:
        comment = f"p={results.dmarc.policy.upper()} dis={results.dmarc.disposition.upper()}" if results.dmarc.policy else None
        methods.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=results.dmarc.result, result_comment=comment, header_from=results.dmarc.fromDomain
            )
        )
    else:
        result = results.dmarc.result if results.dmarc is not None else "none"
        methods.append(authres.dmarc.DMARCAuthenticationResult(result=result))
    text = str(authres.AuthenticationResultsHeader(authserv_id=authservId, results=methods))
    # One method per line (RFC 8601 2.2 allows folding after each ";").
    text = text.replace("; ", ";\n\t")
    return (text + "\n").encode("utf-8", "replace")


_AUTHSERV = re.compile(rb"^\s*(?:\([^)]*\)\s*)*([^\s;()]+)")


def stripOurResults(header: bytes, authservId: str) -> bytes:
    """
    A header section (LF line ends) without the C{Authentication-Results:}
    fields that claim C{authservId} (RFC 8601 5: a client's field claiming
    to be ours is removed, not trusted).
    """
    ours = authservId.lower().encode("utf-8")
    out = []
    dropping = False
    for line in header.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            match = _AUTHSERV.match(value)
            dropping = bool(match) and match.group(1).lower() == ours
        else:
            dropping = False
        if not dropping:
            out.append(line)
    return b"\n".join(out)
