"""
Mail authentication: DKIM signing of the mail we send (RFC 6376, RFC 8463),
SPF (RFC 7208), DKIM and DMARC (RFC 7489) checks of the mail the MX
receives, reported in an C{Authentication-Results:} field (RFC 8601), and
the DNS records that make them work, published from our own zones.

  - L{keys}: the signing keys in the state directory (generation, rotation);
  - L{signing}: signing a spooled message (thread side);
  - L{lookup}: the blocking DNS the libraries use, over C{[smtp] resolvers};
  - L{spf}, L{dmarc}, L{inbound}: the checks and what the MX does with them;
  - L{publish}: the C{IRecordPublisher} of the DKIM, SPF and DMARC records;
  - L{reports}: reading DMARC aggregate reports (C{maillab dmarc report}).

The libraries (dkimpy, pyspf) do blocking DNS: they only ever run in a
thread pool, with a DNS function of ours (L{lookup.Lookup}) that asks the
configured resolvers with a timeout and a cache.
"""
