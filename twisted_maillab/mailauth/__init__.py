"""
Mail authentication: DKIM signing of the mail we send (RFC 6376, RFC 8463),
SPF (RFC 7208), DKIM and DMARC (RFC 7489) checks of the mail the MX
receives, reported in an C{Authentication-Results:} field (RFC 8601), and
the DNS records that make them work, published from our own zones.

  - L{keys}: the signing keys in the state directory (generation, rotation);
  - L{signing}: signing a spooled message (thread side);
  - L{lookup}: the blocking DNS the libraries use, over C{[smtp] resolvers};
  - L{spf}, L{dmarc}, L{checks}: the checks of one message and the
    C{Authentication-Results:} field;
  - L{inbound}: what the MX does with them (held delivery, Junk, refusal);
  - L{publish}: the C{IRecordPublisher} of the DKIM, SPF and DMARC records;
  - L{reports}: reading DMARC aggregate reports (C{maillab dmarc report});
  - L{factory}: these objects for a running configuration.

The libraries (dkimpy, pyspf) do blocking DNS: they only ever run in a
thread pool, with a DNS function of ours (L{lookup.Lookup}) that asks the
configured resolvers with a timeout and a cache.
"""
