"""
Outbound TLS policy: what the outbound queue demands of a destination's
TLS before it hands over mail, and the records that tell other senders
what we demand of ourselves.

  - L{maps}: the operator's per-domain levels (Postfix's
    C{smtp_tls_policy_maps}: none, may, encrypt, verify).
  - L{mtasts}: MTA-STS (RFC 8461), the C{_mta-sts} TXT record and the
    policy fetched over HTTPS, cached in the state directory.
  - L{dane}: TLSA records (RFC 7672) read with the AD bit of a validating
    resolver's answer, and matched against the certificate chain.
  - L{certs}: PKIX verification and RFC 6125 name checks.
  - L{policy}: the decision for one domain and one MX host
    (L{policy.HostPolicy}), the only thing the queue and the SMTP client
    talk to.
  - L{tlsrpt}: TLS-RPT (RFC 8460) session counts and the daily report.
  - L{publish}: our own C{_mta-sts}, C{_smtp._tls} and TLSA records, and
    the MTA-STS policy file as a C{twisted.web} resource.

Why the certificate is checked after the handshake rather than by
OpenSSL during it: the same handshake serves every level (opportunistic,
DANE, PKIX), the failure is reported with the RFC 8460 result type, and
the session is closed with QUIT before any mail is sent, as Postfix does.
"""
