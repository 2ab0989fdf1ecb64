"""
DMARC (RFC 7489): the policy record, identifier alignment and the result.

Written here rather than taken from a library: the evaluation is a few
rules over results we already have (SPF from pyspf, DKIM from dkimpy),
while the libraries that offer it (checkdmarc, authheaders) query DNS
themselves through the system resolver.  The organizational domain (RFC
7489 3.2) comes from the Public Suffix List of the C{publicsuffixlist}
package.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from twisted_maillab.mailauth.lookup import Lookup, TempError

__all__ = ["DMARCResult", "orgDomain", "parseRecord", "evaluate"]

@functools.lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    # Read once (the list ships with the package), on first use.
    return PublicSuffixList()


def orgDomain(domain: str) -> str:
    """
    The organizational domain (RFC 7489 3.2): the public suffix plus one
    label.
    """
    domain = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(domain) or domain


def parseRecord(text: str) -> dict | None:
    """
    A DMARC record's tags (RFC 7489 6.3), or L{None} when it is not one
    (6.6.3: records not starting with C{v=DMARC1} are ignored).
    """
    tags = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    return tags


@dataclass
class DMARCResult:
    """
    @ivar result: C{pass fail none temperror permerror}.
    @ivar policy: the policy that applies (C{none quarantine reject}) or
        L{None} without a record.
    @ivar disposition: what the policy asks for this message: C{none},
        C{quarantine} or C{reject} (C{none} when it passed or C{pct}
        sampled it out).
    """

    result: str
    fromDomain: str
    policy: str | None = None
    disposition: str = "none"


def _aligned(mode: str, identifier: str, fromDomain: str) -> bool:
    identifier = identifier.lower().rstrip(".")
    if mode == "s":
        return identifier == fromDomain
    return orgDomain(identifier) == orgDomain(fromDomain)


def _fetch(lookup: Lookup, domain: str) -> dict | None:
    records = [parseRecord(r.decode("utf-8", "replace")) for r in lookup.txt(f"_dmarc.{domain}")]
    records = [r for r in records if r is not None]
    # RFC 7489 6.6.3: more than one record is as none.
    return records[0] if len(records) == 1 else None


def evaluate(
    lookup: Lookup, fromDomain: str, spfResult: str, spfDomain: str, dkimPassed: list[str], sample=random.random
) -> DMARCResult:
    """
    RFC 7489 6.6: the policy of the From: domain (or of its organizational
    domain), and whether an aligned SPF or DKIM pass satisfies it.

    @param spfDomain: the domain SPF checked (MAIL FROM's, or HELO's).
    @param dkimPassed: the d= of every signature that verified.
    """
    fromDomain = fromDomain.lower().rstrip(".")
    try:
        record = _fetch(lookup, fromDomain)
        subdomain = False
        if record is None:
            org = orgDomain(fromDomain)
            if org != fromDomain:
                record = _fetch(lookup, org)
                subdomain = True
    except TempError:
        return DMARCResult("temperror", fromDomain)
    if record is None:
        return DMARCResult("none", fromDomain)
    policy = record.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        # RFC 7489 6.6.3: a record with an invalid p= is as none, unless
        # it has a valid rua (then p=none).
        if "rua" not in record:
            return DMARCResult("none", fromDomain)
        policy = "none"
    if subdomain and record.get("sp", "").lower() in ("none", "quarantine", "reject"):
        policy = record["sp"].lower()
    aspf = record.get("aspf", "r").lower()
    adkim = record.get("adkim", "r").lower()
    passed = (spfResult == "pass" and _aligned(aspf, spfDomain, fromDomain)) or any(
        _aligned(adkim, d, fromDomain) for d in dkimPassed
    )
    if passed:
        return DMARCResult("pass", fromDomain, policy)
    try:
        pct = max(0, min(100, int(record.get("pct", "100"))))
    except ValueError:
        pct = 100
    disposition = policy
    if pct < 100 and sample() * 100 >= pct:
        # RFC 7489 6.6.4: outside the sample, the next lesser policy.
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
    return DMARCResult("fail", fromDomain, policy, disposition)
