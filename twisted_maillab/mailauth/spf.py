"""
SPF (RFC 7208) with pyspf, over our DNS (L{Lookup}).

pyspf is chosen because it implements the whole of RFC 7208 (macros,
include/redirect, the 10-lookup and 2-void-lookup limits of 4.6.4, exp=)
and its queries all go through one method, L{spf.query.dns}, which a
subclass can answer from another resolver: here the configured
C{[smtp] resolvers} with their timeout and cache, instead of pyspf's
module-level lookup on the system resolver.  checkdmarc's SPF code only
parses records (it does not evaluate a client address), and writing the
evaluation again would repeat what pyspf has tested for years.  pyspf
blocks on DNS: it runs in a pool thread only.
"""

from __future__ import annotations

import spf as pyspf

from twisted_maillab.mailauth.lookup import Lookup, TempError

__all__ = ["checkSPF"]


class _Query(pyspf.query):
    """
    A pyspf query whose DNS is L{Lookup}; pyspf's own bookkeeping (the
    lookup count of RFC 7208 4.6.4) is kept, only the transport differs.
    """

    def __init__(self, lookup: Lookup, *args, **kwargs):
        self._lookup = lookup
        super().__init__(*args, **kwargs)

    def dns(self, name, qtype, cnames=None, ignore_void=False):
        name = str(name).rstrip(".").lower()
        if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        if key in self.cache:
            return self.cache[key]
        try:
            records = self._lookup.query(name, qtype)
        except TempError as e:
            raise pyspf.TempError(f"DNS {e}") from None
        if qtype in ("A", "AAAA"):
            result = [r.address for r in records]
        elif qtype == "MX":
            result = [(r.preference, r.exchange.to_text(True)) for r in records]
        elif qtype == "PTR":
            result = [r.target.to_text(True) for r in records]
        elif qtype in ("TXT", "SPF"):
            result = [list(r.strings) for r in records]
        else:
            result = []
        self.cache[key] = result
        if not result and not ignore_void:
            # RFC 7208 4.6.4: at most two void lookups.
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result


def checkSPF(lookup: Lookup, ip: str, sender: str, helo: str, receiver: str) -> tuple[str, str, str]:
    """
    The SPF result of a client (RFC 7208 2.4): of the MAIL FROM identity,
    or of the HELO identity for the null sender (as
    C{postmaster@<helo>}).

    @return: C{(result, identity, explanation)}: result one of C{pass
        fail softfail neutral none temperror permerror}; identity
        C{"mailfrom"} or C{"helo"}.
    """
    if ip.startswith("::ffff:"):
        ip = ip[7:]
    identity = "mailfrom" if sender else "helo"
    if not sender:
        sender = f"postmaster@{helo}"
    try:
        query = _Query(lookup, i=ip, s=sender, h=helo or "unknown", receiver=receiver, querytime=lookup.timeout * 4)
        result, _code, explanation = query.check()
    except (ValueError, pyspf.SPFError) as e:
        return "permerror", identity, str(e)
    return result, identity, explanation
