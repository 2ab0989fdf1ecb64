"""
C{maillab doctor DOMAIN}: check from outside, through a resolver, what a
mail domain needs, and say what to fix:

  - MX records (RFC 5321 5.1), whose targets are not aliases (RFC 2181
    10.3) and have A/AAAA records;
  - for each MX address: a PTR record whose name resolves back to it
    (forward-confirmed reverse DNS, which receivers check), an SMTP
    banner, STARTTLS (RFC 3207) and a certificate naming the MX host;
  - the RFC 6186 / RFC 8314 SRV records of the client services, each
    target reachable on its port;
  - Mozilla autoconfig at C{autoconfig.DOMAIN} (HTTPS, else HTTP)
    returning a C{clientConfig}.

It is a client like any other on the network: it asks the system's
resolver (or C{--nameserver}) and connects to what the records name, so it
finds what a sender or a mail client would find.  Each step prints a
progress line on standard error while it waits; the report goes to
standard output, or as JSON with C{--json}.  Exit status 0 when nothing
is an error, 1 otherwise, 2 on a usage error.

Blocking I/O is fine here: this is a command-line program, not the
daemon's reactor.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import ssl
import sys
from dataclasses import asdict, dataclass
from xml.etree import ElementTree as ET

import dns.exception
import dns.resolver
import dns.reversename

__all__ = ["main", "Doctor", "Finding"]

PROG = "maillab doctor"
TIMEOUT = 10.0
# Bounded reads: a banner line, an autoconfig document.
MAX_LINE = 4096
MAX_DOCUMENT = 1024 * 1024

SRV_SERVICES = (
    ("_submissions._tcp", "submissions", True),
    ("_submission._tcp", "submission", False),
    ("_imaps._tcp", "imaps", True),
    ("_imap._tcp", "imap", False),
    ("_pop3s._tcp", "pop3s", True),
    ("_pop3._tcp", "pop3", False),
)


@dataclass
class Finding:
    """
    One result: C{status} is C{ok}, C{warning} or C{error}; C{fix} says
    what to change when it is not C{ok}.
    """

    check: str
    subject: str
    status: str
    detail: str
    fix: str = ""


class Doctor:
    """
    The checks of one run.

    @param nameserver: C{(address, port)} to ask instead of the system's
        resolver (resolv.conf).
    @param smtpPort: the port MX hosts are tried on (25).
    @param httpPort: the port autoconfig is fetched on (default: 443 for
        HTTPS, then 80 for HTTP).
    @param progress: called with a line before each network wait.
    """

    def __init__(self, domain: str, nameserver=None, smtpPort: int = 25, httpPort: int | None = None,
                 progress=None, timeout: float = TIMEOUT):
        self.domain = domain.strip().rstrip(".").lower()
        self.smtpPort = smtpPort
        self.httpPort = httpPort
        self.timeout = timeout
        self.progress = progress or (lambda line: None)
        if nameserver is None:
            self.resolver = dns.resolver.Resolver()
        else:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [nameserver[0]]
            self.resolver.port = nameserver[1]
        self.resolver.lifetime = timeout
        self.findings: list[Finding] = []

    def add(self, check, subject, status, detail, fix=""):
        self.findings.append(Finding(check, subject, status, detail, fix))

    # -- DNS

    def query(self, name: str, rtype: str) -> list:
        self.progress(f"asking {rtype} {name}")
        try:
            return list(self.resolver.resolve(name, rtype, raise_on_no_answer=False))
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as e:
            raise LookupError(f"{rtype} {name}: {e.__class__.__name__}: {e}") from None

    def isAlias(self, name: str) -> str | None:
        try:
            answer = self.resolver.resolve(name, "CNAME", raise_on_no_answer=False)
        except dns.exception.DNSException:
            return None
        for record in answer:
            return record.target.to_text()
        return None

    def addresses(self, name: str) -> list[str]:
        found = []
        for rtype in ("A", "AAAA"):
            found += [record.address for record in self.query(name, rtype)]
        return found

    # -- the checks

    def run(self) -> list[Finding]:
        for step in (self.checkMX, self.checkSRV, self.checkAutoconfig):
            try:
                step()
            except LookupError as e:
                self.add(step.__name__[5:], self.domain, "error", f"DNS lookup failed: {e}",
                         "check that the domain's name servers answer (dig +trace)")
        return self.findings

    def checkMX(self) -> None:
        records = sorted(self.query(self.domain, "MX"), key=lambda r: r.preference)
        if not records:
            self.add("MX", self.domain, "error", "no MX record",
                     f"add one: {self.domain}. IN MX 10 <mail host>. (RFC 5321 5.1)")
            return
        self.add("MX", self.domain, "ok", ", ".join(f"{r.preference} {r.exchange}" for r in records))
        for record in records:
            host = record.exchange.to_text().rstrip(".").lower()
            alias = self.isAlias(host)
            if alias:
                self.add("MX", host, "warning", f"the MX target is an alias (CNAME to {alias})",
                         f"point the MX at {alias.rstrip('.')} itself (RFC 2181 10.3)")
            addresses = self.addresses(host)
            if not addresses:
                self.add("A/AAAA", host, "error", "no A or AAAA record", f"add an address record for {host}")
                continue
            self.add("A/AAAA", host, "ok", " ".join(addresses))
            for address in addresses:
                self.checkPTR(host, address)
                self.checkSMTP(host, address)

    def checkPTR(self, host: str, address: str) -> None:
        reverse = dns.reversename.from_address(address).to_text()
        names = [r.target.to_text().rstrip(".").lower() for r in self.query(reverse, "PTR")]
        if not names:
            self.add("PTR", address, "warning", "no PTR record",
                     f"ask whoever owns {address} for a PTR record naming {host}: receivers distrust "
                     "senders without reverse DNS")
            return
        confirmed = [name for name in names if address in self.addresses(name)]
        if not confirmed:
            self.add("PTR", address, "warning", f"PTR names {', '.join(names)}, which does not resolve back to {address}",
                     f"make the PTR name {host} (forward-confirmed reverse DNS)")
        elif host not in confirmed:
            self.add("PTR", address, "warning", f"PTR names {', '.join(confirmed)}, not the MX name {host}",
                     f"make the PTR name {host}, or the MX point at {confirmed[0]}")
        else:
            self.add("PTR", address, "ok", host)

    def checkSMTP(self, host: str, address: str) -> None:
        where = f"{host} [{address}]:{self.smtpPort}"
        self.progress(f"connecting to SMTP {where}")
        try:
            with socket.create_connection((address, self.smtpPort), timeout=self.timeout) as sock:
                reader = sock.makefile("rb")
                banner = _reply(reader)
                if not banner.startswith("220"):
                    self.add("SMTP", where, "error", f"banner: {banner}", "the server must greet with 220")
                    return
                bannerName = banner[4:].split(" ", 1)[0].lower()
                if bannerName != host:
                    self.add("SMTP banner", where, "warning", f"the banner names {bannerName}, not {host}",
                             f"set [smtp] myhostname (or [server] hostname) to {host}")
                else:
                    self.add("SMTP banner", where, "ok", banner)
                sock.sendall(b"EHLO maillab-doctor.invalid\r\n")
                ehlo = _reply(reader)
                if "STARTTLS" not in ehlo.upper():
                    self.add("STARTTLS", where, "error", "STARTTLS is not offered",
                             "configure [tls] certificate and private_key")
                    return
                sock.sendall(b"STARTTLS\r\n")
                answer = _reply(reader)
                if not answer.startswith("220"):
                    self.add("STARTTLS", where, "error", f"STARTTLS refused: {answer}", "")
                    return
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
                    version = tls.version()
                    tls.sendall(b"QUIT\r\n")
        except (OSError, ValueError) as e:
            self.add("SMTP", where, "error", f"cannot talk SMTP: {e}", f"check that port {self.smtpPort} is open to the Internet")
            return
        names = _certificateNames(der)
        if any(_nameMatches(pattern, host) for pattern in names):
            self.add("certificate", where, "ok", f"{version}, names {', '.join(names)}")
        else:
            self.add("certificate", where, "error", f"the certificate names {', '.join(names) or 'nothing'}, not {host}",
                     f"get a certificate for {host} ([tls] certificate)")

    def checkSRV(self) -> None:
        anyFound = False
        for label, name, implicitTLS in SRV_SERVICES:
            owner = f"{label}.{self.domain}"
            records = self.query(owner, "SRV")
            if not records:
                continue
            anyFound = True
            for record in records:
                target = record.target.to_text()
                if target == ".":
                    self.add("SRV", owner, "ok", "not offered (target \".\", RFC 6186 3.4)")
                    continue
                self.checkReachable("SRV", owner, target.rstrip("."), record.port, implicitTLS,
                                    f"priority {record.priority} weight {record.weight} port {record.port} {target}")
        if not anyFound:
            self.add("SRV", self.domain, "warning", "no RFC 6186 SRV records",
                     "set [dns] publish_mail_records = yes (or add _imaps._tcp, _submissions._tcp ... "
                     "records) so clients find the servers from the address alone")

    def checkReachable(self, check, subject, host, port, implicitTLS, detail) -> None:
        addresses = self.addresses(host)
        if not addresses:
            self.add(check, subject, "error", f"{detail}: {host} has no address", f"add an A or AAAA record for {host}")
            return
        self.progress(f"connecting to {host} [{addresses[0]}]:{port}")
        try:
            with socket.create_connection((addresses[0], port), timeout=self.timeout) as sock:
                if implicitTLS:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    with context.wrap_socket(sock, server_hostname=host) as tls:
                        greeting = _reply(tls.makefile("rb"))
                else:
                    greeting = _reply(sock.makefile("rb"))
        except (OSError, ValueError) as e:
            self.add(check, subject, "error", f"{detail}: cannot connect: {e}",
                     f"open port {port} on {host}, or remove the record")
            return
        self.add(check, subject, "ok", f"{detail}: {greeting[:60]}")

    def checkAutoconfig(self) -> None:
        host = f"autoconfig.{self.domain}"
        addresses = self.addresses(host)
        if not addresses:
            self.add("autoconfig", host, "warning", "no address for the autoconfig name",
                     "enable [http] and [dns] publish_mail_records, or add the name")
            return
        path = f"/mail/config-v1.1.xml?emailaddress=postmaster%40{self.domain}"
        attempts = [("https", self.httpPort or 443), ("http", self.httpPort or 80)]
        errors = []
        for scheme, port in attempts:
            self.progress(f"fetching {scheme}://{host}:{port}{path}")
            try:
                status, body, trusted = _fetch(addresses[0], port, host, path, scheme == "https", self.timeout)
            except (OSError, ValueError) as e:
                errors.append(f"{scheme} port {port}: {e}")
                continue
            if status != 200:
                errors.append(f"{scheme} port {port}: HTTP {status}")
                continue
            try:
                root = ET.fromstring(body)
            except ET.ParseError as e:
                self.add("autoconfig", host, "error", f"{scheme}: not XML: {e}", "")
                return
            servers = [e.findtext("hostname") for e in root.iter() if e.tag in ("incomingServer", "outgoingServer")]
            if root.tag != "clientConfig" or not servers:
                self.add("autoconfig", host, "error", f"{scheme}: not a clientConfig with servers", "")
                return
            detail = f"{scheme} port {port}: {len(servers)} server(s)"
            if scheme == "https" and not trusted:
                self.add("autoconfig", host, "warning", detail + ", certificate not trusted",
                         f"get a certificate naming {host} from a public CA")
            else:
                self.add("autoconfig", host, "ok", detail)
            return
        self.add("autoconfig", host, "error", "; ".join(errors), "enable [http] (https = yes with a certificate)")


def _reply(reader) -> str:
    """
    One SMTP (or POP3/IMAP greeting) reply, its lines joined; bounded.
    """
    lines = []
    while True:
        line = reader.readline(MAX_LINE)
        if not line:
            raise ValueError("connection closed")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(text)
        if len(text) < 4 or text[3] != "-" or len(lines) > 100:
            return "\n".join(lines)


def _certificateNames(der: bytes) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_der_x509_certificate(der)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [name.lower() for name in extension.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _nameMatches(pattern: str, host: str) -> bool:
    # RFC 6125 6.4.3: a wildcard only as the whole left-most label.
    if pattern.startswith("*."):
        return "." in host and host.split(".", 1)[1] == pattern[2:]
    return pattern == host


def _fetch(address, port, host, path, https, timeout):
    """
    C{GET path} with C{Host: host} from C{address}; C{(status, body,
    certificate trusted)}.
    """
    sock = socket.create_connection((address, port), timeout=timeout)
    trusted = False
    try:
        if https:
            try:
                verifying = ssl.create_default_context()
                sock = verifying.wrap_socket(sock, server_hostname=host)
                trusted = True
            except ssl.SSLCertVerificationError:
                sock.close()
                sock = socket.create_connection((address, port), timeout=timeout)
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=host)
        hostHeader = host if port in (80, 443) else f"{host}:{port}"
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {hostHeader}\r\nUser-Agent: maillab-doctor\r\n\r\n".encode())
        data = b""
        while len(data) <= MAX_DOCUMENT:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ValueError("not an HTTP response")
    return int(status[1]), body, trusted


def _nameserver(text: str):
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        port = int(port)
    ipaddress.ip_address(host)
    return host, port


def _parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("domain", help="the mail domain, e.g. domaineel.rt")
    parser.add_argument("--json", action="store_true", help="the findings as JSON")
    parser.add_argument("--nameserver", type=_nameserver, metavar="ADDRESS[:PORT]",
                        help="ask this server instead of the system's resolver")
    parser.add_argument("--smtp-port", type=int, default=25, help="port of the MX hosts (25)")
    parser.add_argument("--http-port", type=int, default=None,
                        help="port of autoconfig (default 443 for HTTPS, 80 for HTTP)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per network step")
    return parser


_MARKS = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  "}


def report(domain: str, findings: list[Finding]) -> str:
    """
    The readable report: one line per finding, its fix below it, and a
    summary.
    """
    lines = [f"maillab doctor: {domain}"]
    for f in findings:
        lines.append(f"{_MARKS[f.status]} {f.check:<12} {f.subject}: {f.detail}")
        if f.fix and f.status != "ok":
            lines.append(f"        fix: {f.fix}")
    errors = sum(f.status == "error" for f in findings)
    warnings = sum(f.status == "warning" for f in findings)
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + "\n"


def main(argv: list[str], stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    doctor = Doctor(args.domain, args.nameserver, args.smtp_port, args.http_port,
                    progress=lambda line: print(f"{PROG}: {line} ...", file=stderr, flush=True),
                    timeout=args.timeout)
    findings = doctor.run()
    if args.json:
        json.dump({"domain": doctor.domain, "findings": [asdict(f) for f in findings]}, stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write(report(doctor.domain, findings))
    return 1 if any(f.status == "error" for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
