"""
The DNS the mail authentication libraries use, thread side: dkimpy's
C{dnsfunc} and pyspf's queries go to the servers of C{[smtp] resolvers}
(else those of /etc/resolv.conf), with a per-query timeout and a cache.

dnspython is used here rather than Twisted's resolver because dkimpy and
pyspf call DNS synchronously from the pool thread that runs them: a
synchronous, thread-safe resolver with its own TTL cache (C{LRUCache})
avoids a round trip through the reactor for every query.  The outbound
queue uses Twisted's resolver on the same servers (L{twistedResolver}).
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

__all__ = ["Lookup", "TempError", "twistedResolver"]


class TempError(Exception):
    """
    A DNS query failed (timeout, SERVFAIL, no server answered): the check
    that needed it is a C{temperror} (RFC 7208 2.6.6, RFC 7489 6.6.3).
    """


class Lookup:
    """
    Blocking, cached DNS queries for the checks; safe to share between
    threads (dnspython's resolver and L{dns.resolver.LRUCache} are).

    @param servers: C{(address, port)} pairs; empty: /etc/resolv.conf.
    @param timeout: seconds allowed to one query (all its tries).
    """

    def __init__(self, servers=(), timeout: float = 5.0, cacheSize: int = 10000):
        try:
            resolver = dns.resolver.Resolver(configure=not servers)
        except dns.resolver.NoResolverConfiguration:
            # No /etc/resolv.conf: every query is a temperror, never a
            # failure to start.
            resolver = dns.resolver.Resolver(configure=False)
        if servers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in servers]
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        resolver.cache = dns.resolver.LRUCache(cacheSize)
        self.resolver = resolver
        self.timeout = timeout

    def query(self, name: str, rdtype: str) -> list:
        """
        The records of one type at C{name} (CNAMEs followed), an empty
        list for NXDOMAIN or no data.

        @raise TempError: the query failed.
        """
        try:
            answer = self.resolver.resolve(
                dns.name.from_text(name), rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as e:
            raise TempError(f"{rdtype} {name}: {e}") from None
        except (dns.exception.DNSException, UnicodeError, ValueError) as e:
            # A name that is not a DNS name (too long, bad label) has no
            # records (RFC 7208 4.3's "malformed" is the caller's).
            if isinstance(e, (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel, UnicodeError, ValueError)):
                return []
            raise TempError(f"{rdtype} {name}: {e}") from None
        return list(answer.rrset or [])

    def txt(self, name: str) -> list[bytes]:
        """
        Each TXT record at C{name}, its character-strings joined (RFC 7208
        3.3, RFC 6376 3.6.2.2).
        """
        return [b"".join(record.strings) for record in self.query(name, "TXT")]

    def dkimTXT(self, name, timeout=5):
        """
        dkimpy's C{dnsfunc}: the key record at C{name} or L{None}.
        """
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        records = self.txt(name)
        return records[0] if records else None


def twistedResolver(servers, reactor):
    """
    Twisted's resolver on C{[smtp] resolvers} (C{servers}, C{(address,
    port)} pairs), or on /etc/resolv.conf when there are none.
    """
    from twisted.names import client

    if servers:
        return client.Resolver(servers=list(servers), reactor=reactor)
    return client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)
