"""
C{[http]}: mail client autoconfiguration (Mozilla autoconfig, Microsoft
Autodiscover), Prometheus C{/metrics} and C{/healthz}, on twisted.web.

  - L{twisted_maillab.http.documents}: the XML documents;
  - L{twisted_maillab.http.site}: the resource tree (L{buildResource},
    extended per host name through L{twisted_maillab.http.site.HOSTS}) and
    the site;
  - L{twisted_maillab.http.health}: what C{/healthz} checks;
  - L{twisted_maillab.http.service}: the C{BUILDERS["http"]} builder.
"""
