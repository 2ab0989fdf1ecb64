"""
The two autoconfiguration documents mail clients fetch, built from
L{twisted_maillab.clientsettings.clientServices}:

  - Mozilla's autoconfig, C{clientConfig version="1.1"}, as Thunderbird
    (desktop and Android, ex-K-9) and Evolution read it
    (wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat);
  - Microsoft's Autodiscover "POX" (plain old XML) exchange, as Outlook and
    Apple Mail use it ([MS-OXDSCLI] 2.2.3 request, 2.2.4 response, with
    the C{outlook/responseschema/2006a} response schema).

Parsing the Autodiscover request is the only place untrusted XML is read:
the body is bounded by the HTTP layer, and a document type declaration
(where entity expansion attacks live) is refused before the parser sees
it.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

from twisted_maillab.clientsettings import clientServices, loginName

__all__ = [
    "BadRequest",
    "UnknownDomain",
    "autoconfigDocument",
    "autodiscoverDocument",
    "parseAutodiscoverRequest",
    "checkAddress",
]

REQUEST_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

# RFC 5321 4.5.3.1.1-2: local part at most 64 octets, domain at most 255.
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\\\"]{1,64}@[A-Za-z0-9_.-]{1,255}")


class BadRequest(ValueError):
    """
    The request is malformed: HTTP 400 with this reason.
    """


class UnknownDomain(LookupError):
    """
    The address is not in one of our domains: HTTP 404.
    """


def checkAddress(config, address: str) -> str:
    """
    C{address}, checked: well formed and in one of L{Config.mailDomains}.

    @raise BadRequest: not an address.
    @raise UnknownDomain: not one of ours.
    """
    address = address.strip()
    if not _ADDRESS.fullmatch(address):
        raise BadRequest("not an email address")
    local, _, domain = address.rpartition("@")
    domain = domain.rstrip(".").lower()
    if domain not in config.mailDomains():
        raise UnknownDomain(f"{domain} is not a domain of this server")
    return f"{local}@{domain}"


def _text(parent, tag: str, value) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(value)
    return element


def autoconfigDocument(config, domain: str | None = None) -> bytes:
    """
    The C{config-v1.1.xml} for C{domain} (default C{[server] domain}):
    one C{incomingServer} per enabled IMAP/POP3 listener and one
    C{outgoingServer} per enabled submission listener, preferred first.
    The login is a placeholder Thunderbird fills in (C{%EMAILADDRESS%} or
    C{%EMAILLOCALPART%}).
    """
    domains = config.mailDomains()
    domain = domain or domains[0]
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    for name in [domain] + [d for d in domains if d != domain]:
        _text(provider, "domain", name)
    display = config.http.display_name or domain
    _text(provider, "displayName", display)
    _text(provider, "displayShortName", display.split(".")[0] if not config.http.display_name else display)
    for service in clientServices(config):
        tag = "outgoingServer" if service.protocol == "smtp" else "incomingServer"
        server = ET.SubElement(provider, tag, type=service.protocol)
        _text(server, "hostname", service.hostname)
        _text(server, "port", service.port)
        _text(server, "socketType", service.security)
        # Our SASL mechanisms are PLAIN and LOGIN (and USER/PASS, LOGIN):
        # the password travels inside TLS.
        _text(server, "authentication", "password-cleartext")
        _text(server, "username", loginName(config, None))
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def parseAutodiscoverRequest(body: bytes) -> str:
    """
    The C{EMailAddress} of an Autodiscover POX request.

    @raise BadRequest: not such a request (or a document type declaration).
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise BadRequest("document type declarations are not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise BadRequest(f"not XML: {e}") from None
    if root.tag not in (f"{{{REQUEST_SCHEMA}}}Autodiscover", "Autodiscover"):
        raise BadRequest("not an Autodiscover request")
    for element in root.iter():
        if element.tag.rpartition("}")[2] == "EMailAddress" and element.text:
            return element.text.strip()
    raise BadRequest("the request names no EMailAddress")


# [MS-OXDSCLI] 2.2.4.1.1.2.13.24: "SSL" is implicit TLS, "TLS" is STARTTLS.
_ENCRYPTION = {"SSL": "SSL", "STARTTLS": "TLS", "plain": "None"}


def autodiscoverDocument(config, address: str) -> bytes:
    """
    The Autodiscover POX response for C{address} (already checked by
    L{checkAddress}): one C{Protocol} per enabled IMAP, POP3 and
    submission listener, preferred first, with the login for that address.
    """
    # Plain tags with xmlns attributes: the default namespaces Microsoft's
    # own responses use, without ElementTree's ns0: prefixes.
    root = ET.Element("Autodiscover", xmlns=RESPONSE_SCHEMA)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_SCHEMA)
    account = ET.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for service in clientServices(config):
        protocol = ET.SubElement(account, "Protocol")
        _text(protocol, "Type", {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}[service.protocol])
        _text(protocol, "Server", service.hostname)
        _text(protocol, "Port", service.port)
        _text(protocol, "DomainRequired", "off")
        _text(protocol, "LoginName", loginName(config, address))
        _text(protocol, "SPA", "off")
        _text(protocol, "SSL", "off" if service.security == "plain" else "on")
        _text(protocol, "Encryption", _ENCRYPTION[service.security])
        _text(protocol, "AuthRequired", "on")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
