"""
The mail service's own DNS records, published in our zones when C{[dns]
publish_mail_records} is on (L{twisted_maillab.dns.published}):

  - RFC 6186 and RFC 8314 SRV records, C{_submission._tcp},
    C{_submissions._tcp}, C{_imap._tcp}, C{_imaps._tcp}, C{_pop3._tcp} and
    C{_pop3s._tcp}, for each listener a client uses
    (L{twisted_maillab.clientsettings.clientServices});
  - for a service this config does not run, RFC 6186 3.4 (after RFC 2782):
    "a Target of '.' ... means that the service is decidedly not
    available at this domain", so C{0 0 0 .};
  - RFC 8314 5.1: implicit TLS is preferred to STARTTLS, so the implicit
    TLS records get the lower priority number (RFC 6186 3.4 lets a client
    compare priorities across the services);
  - when C{[http]} runs, the names Thunderbird (C{autoconfig.<domain>})
    and Outlook (C{autodiscover.<domain>}) look up, as aliases of the
    public host name, and, over HTTPS, C{_autodiscover._tcp} SRV
    ([MS-OXDSCLI] 3.1.5.2).

Only the zones of our mail domains get records (C{[server] domain} and
C{[auth] local_domains}).
"""

from __future__ import annotations

from zope.interface import implementer

from twisted_maillab.clientsettings import clientServices, publicHostname, publicPort
from twisted_maillab.interfaces import IRecordPublisher

__all__ = ["ServiceRecords", "SERVICES"]

# SRV service label -> listener section, in RFC 6186 / RFC 8314 order.
SERVICES = (
    ("_submission._tcp", "submission"),
    ("_submissions._tcp", "submissions"),
    ("_imap._tcp", "imap"),
    ("_imaps._tcp", "imaps"),
    ("_pop3._tcp", "pop3"),
    ("_pop3s._tcp", "pop3s"),
)

IMPLICIT_TLS_PRIORITY = 0
STARTTLS_PRIORITY = 10


@implementer(IRecordPublisher)
class ServiceRecords:
    """
    The L{IRecordPublisher} of the mail service's SRV and autoconfiguration
    records.
    """

    name = "mail service records (RFC 6186 SRV, autoconfig, autodiscover)"

    def records(self, config, origin: str) -> list[str]:
        if origin.rstrip(".") not in config.mailDomains():
            return []
        running = {service.listener: service for service in clientServices(config)}
        lines = []
        for label, listener in SERVICES:
            service = running.get(listener)
            if service is None:
                lines.append(f"{label} SRV 0 0 0 .")
                continue
            priority = IMPLICIT_TLS_PRIORITY if service.security == "SSL" else STARTTLS_PRIORITY
            lines.append(f"{label} SRV {priority} 1 {service.port} {service.hostname}.")
        http = config.http
        if http.enabled:
            host = publicHostname(config)
            for label in ("autoconfig", "autodiscover"):
                if f"{label}.{origin}" != f"{host}.":
                    lines.append(f"{label} CNAME {host}.")
            port = publicPort(config, "http")
            if http.https and port is not None:
                lines.append(f"_autodiscover._tcp SRV 0 1 {port} {host}.")
        return lines
