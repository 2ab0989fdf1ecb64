"""
Parse the ini file once into frozen, typed section objects.

Every section is a frozen dataclass whose fields are declared with L{option};
the option's parser turns the raw text into a typed value or raises
L{ValueError} with the reason.  L{load} reads the file, rejects unknown
sections and keys (a typo must never be ignored silently) and wraps every
failure in a L{ConfigError} that names the file, section, key, reason and
line, so C{twistd} can exit before binding anything.

Relative paths are resolved against the directory of the ini file, so a
config works the same whatever directory the daemon is started from.

The value parsers live in L{twisted_maillab.configvalues} and the reader
in L{twisted_maillab.configfile}; both are re-exported here.

Its length (past 800 lines) is the declaration of every section and key
with its default and help text, one after the other (mail authentication
and outbound TLS policy included): the configuration reference in code.
Splitting it by section would scatter that reference without separating
two responsibilities.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from twisted_maillab.foldernames import FolderNameError, folderDirName

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "Config",
    "load",
    "loadString",
    "option",
    "parseSize",
    "parseDuration",
    "parseBoolean",
]


class ConfigError(Exception):
    """
    A configuration file is unusable.

    Rendered as C{<file> [<section>] <key>: <reason> (line N)}, e.g.
    C{etc/maillab.ini [smtp] message_size_limit: "10X" is not a size (line 12)}.
    """

    def __init__(
        self,
        path: str | Path,
        section: str | None,
        key: str | None,
        reason: str,
        line: int | None = None,
    ):
        super().__init__(path, section, key, reason, line)
        self.path = str(path)
        self.section = section
        self.key = key
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        where = self.path
        if self.section is not None:
            where += f" [{self.section}]"
        if self.key is not None:
            where += f" {self.key}"
        text = f"{where}: {self.reason}"
        if self.line is not None:
            text += f" (line {self.line})"
        return text

    @property
    def errors(self) -> list[ConfigError]:
        """
        Every problem this stands for, each rendered as one line.
        """
        return [self]


class ConfigErrors(ConfigError):
    """
    Several problems found in one file: the reader checks every key before
    it gives up, so an administrator fixes them all in one go.  Its fields
    are the first problem's; C{str()} is one line per problem.
    """

    def __init__(self, errors: list[ConfigError]):
        errors = [each for error in errors for each in error.errors]
        first = errors[0]
        super().__init__(first.path, first.section, first.key, first.reason, first.line)
        self._errors = list(errors)

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self._errors)


from twisted_maillab.configvalues import (  # noqa: E402  (re-exported)
    _Context,
    parseBoolean,
    parseChoice,
    parseDuration,
    parseEndpoint,
    parseExistingFile,
    parseInteger,
    parseList,
    parseNetwork,
    parseNonEmpty,
    parsePath,
    parseSize,
    parseString,
)

# ---------------------------------------------------------------------------
# Declaring sections.

_REQUIRED = dataclasses.MISSING


def option(
    parse: Callable[[str, _Context], Any],
    default: Any = _REQUIRED,
    doc: str = "",
) -> Any:
    """
    Declare one key of a section.

    @param parse: turns the raw ini text into the typed value; raises
        L{ValueError} with the reason on bad input.
    @param default: the value when the key is absent; omit it to make the
        key required.
    @param doc: one line for the reference in README.rst.
    """
    metadata = {"parse": parse, "doc": doc}
    if default is _REQUIRED:
        return field(metadata=metadata)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples or frozen values as defaults")
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class Section:
    """
    Base of every section.  Subclasses may override L{check} to validate
    keys against each other; it raises L{ValueError} of C{(key, reason)}.
    """

    name: ClassVar[str] = ""

    def check(self) -> None:
        """
        Cross-key validation.  Raise L{SectionError} naming the key.
        """


class SectionError(ValueError):
    """
    Raised by L{Section.check}: C{key} is the key to blame.
    """

    def __init__(self, key: str, reason: str):
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ListenerSection(Section):
    """
    A protocol that listens: C{enabled} and one or more C{listen} endpoints.
    """

    enabled: bool = option(parseBoolean, False, "start this service")
    listen: tuple = option(
        parseList(parseEndpoint),
        (),
        "Twisted endpoint strings, separated by spaces or continuation lines",
    )

    def check(self) -> None:
        if self.enabled and not self.listen:
            raise SectionError("listen", "an enabled service needs at least one listen endpoint")


# ---------------------------------------------------------------------------
# The sections.  Each protocol's issue adds its keys to its class.


# The listeners a mail client configures (autoconfig, Autodiscover, RFC
# 6186 SRV records), and [http] itself.
CLIENT_LISTENERS = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")


def _parsePublicPort(raw: str, context: _Context | None = None) -> tuple[str, int]:
    name, sep, port = raw.strip().partition("=")
    name = name.strip().lower()
    if not sep or name not in CLIENT_LISTENERS:
        raise ValueError(
            f'"{raw}" is not LISTENER=PORT with LISTENER one of {", ".join(CLIENT_LISTENERS)}'
        )
    if not port.strip().isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'"{raw}": {port.strip()} is not a port (1-65535)')
    return name, int(port)


@dataclass(frozen=True, kw_only=True)
class ServerSection(Section):
    name = "server"
    hostname: str = option(parseNonEmpty, "localhost", "this host's name, in banners and Received:")
    domain: str = option(parseNonEmpty, "localdomain", "the mail domain served")
    state_directory: Path = option(
        parsePath, Path("/var/lib/maillab"), "where maillab keeps its own state"
    )
    local_submission_socket: Path | None = option(
        parsePath, None, "UNIX socket for maillab sendmail (default: <state_directory>/submit.sock)"
    )
    public_hostname: str = option(
        parseString,
        "",
        "the name mail clients connect to, in autoconfig and SRV records (default: hostname)",
    )
    public_ports: tuple = option(
        parseList(_parsePublicPort),
        (),
        "ports clients reach a listener on when NAT or a proxy changes them, as LISTENER=PORT "
        "(submission=587 imaps=993); default: the listen port",
    )

    def check(self) -> None:
        if self.public_hostname:
            try:
                _parseDomain(self.public_hostname)
            except ValueError as e:
                raise SectionError("public_hostname", str(e)) from None
        names = [name for name, _ in self.public_ports]
        if len(set(names)) != len(names):
            raise SectionError("public_ports", "a listener is named twice")
        path = self.local_submission_socket
        if path is not None and len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise SectionError(
                "local_submission_socket", f"{path} is longer than a UNIX socket path may be"
            )


# sockaddr_un holds 108 bytes with the terminating NUL (unix(7)).
UNIX_PATH_MAX = 107


@dataclass(frozen=True, kw_only=True)
class TLSSection(Section):
    name = "tls"
    certificate: Path | None = option(
        parsePath, None, "PEM certificate (chain after the leaf)"
    )
    private_key: Path | None = option(parsePath, None, "PEM private key")
    generate_self_signed: bool = option(
        parseBoolean,
        False,
        "create a self-signed pair at these paths on first start when missing",
    )
    minimum_version: str = option(
        parseChoice("1.2", "1.3"), "1.2", "lowest TLS version accepted"
    )

    def check(self) -> None:
        if (self.certificate is None) != (self.private_key is None):
            missing = "private_key" if self.private_key is None else "certificate"
            raise SectionError(missing, "certificate and private_key go together")
        if self.certificate is None or self.generate_self_signed:
            return
        for key in ("certificate", "private_key"):
            path = getattr(self, key)
            if not path.is_file():
                raise SectionError(key, f"{path}: no such file")

    @property
    def configured(self) -> bool:
        return self.certificate is not None


def _parseDomain(raw: str, context: _Context | None = None) -> str:
    value = raw.strip().rstrip(".").lower()
    if not value or not re.fullmatch(r"[a-z0-9_.-]+", value) or ".." in value:
        raise ValueError(f'"{raw}" is not a domain name')
    return value


def _parseUserName(raw: str, context: _Context | None = None) -> str:
    value = raw.strip()
    if not value or re.search(r"[\s:@/\\+]", value) or len(value) > 64:
        raise ValueError(f'"{raw}" is not a valid user name')
    return value


@dataclass(frozen=True, kw_only=True)
class AuthSection(Section):
    name = "auth"
    checkers: tuple = option(
        parseList(parseChoice("unix", "pam", "passwd-file")),
        ("unix",),
        "password checkers tried in order: unix, pam, passwd-file",
    )
    passwd_file: Path | None = option(
        parsePath, None, "Dovecot passwd-file of virtual users (needed by passwd-file and demo_users)"
    )
    unix_passwd: Path = option(parsePath, Path("/etc/passwd"), "passwd(5) file of system users")
    unix_shadow: Path = option(parsePath, Path("/etc/shadow"), "shadow(5) file of system users")
    first_valid_uid: int = option(
        parseInteger(0), 1000, "lowest uid of a system user who may log in"
    )
    last_valid_uid: int = option(
        parseInteger(0), 59999, "highest uid of a system user who may log in"
    )
    pam_service: str = option(parseNonEmpty, "maillab", "PAM service name (/etc/pam.d/<name>)")
    local_domains: tuple = option(
        parseList(_parseDomain), (), "more local domains besides [server] domain"
    )
    username_case: str = option(
        parseChoice("lower", "sensitive"),
        "lower",
        "lower: user names are case-insensitive; sensitive: compared exactly",
    )
    recipient_delimiter: str = option(
        parseString, "+", "characters that start an address extension (empty: none)"
    )
    password_scheme: str = option(
        parseChoice("ARGON2ID", "SHA512-CRYPT", "BLF-CRYPT", "CRYPT"),
        "ARGON2ID",
        "scheme maillab passwd and demo accounts write",
    )
    demo_users: tuple = option(
        parseList(_parseUserName), (), "create these passwd-file users with random passwords"
    )
    minimum_password_length: int = option(
        parseInteger(1, 1024), 8, "shortest password maillab passwd and users add accept"
    )
    check_threads: int = option(
        parseInteger(1, 64), 4, "threads running password checks (hashing, PAM)"
    )
    check_queue: int = option(
        parseInteger(1), 256, "checks waiting or running before logins fail temporarily"
    )
    throttle_window: float = option(
        parseDuration, 900.0, "how long a failed login counts against an address or user"
    )
    throttle_free_failures: int = option(
        parseInteger(0), 3, "failures from an address before its failures are delayed"
    )
    throttle_delay: float = option(parseDuration, 2.0, "first delay; doubles per failure")
    throttle_max_delay: float = option(parseDuration, 15.0, "longest delay of a failure reply")
    lockout_failures: int = option(
        parseInteger(1), 10, "failures from an address that lock it out"
    )
    lockout_duration: float = option(
        parseDuration, 900.0, "how long a locked-out address is refused"
    )
    user_free_failures: int = option(
        parseInteger(0), 5, "failures for one user (any address) before they are delayed"
    )
    throttle_ipv6_prefix: int = option(
        parseInteger(32, 128), 64, "IPv6 clients are throttled per network of this length"
    )
    throttle_exempt: tuple = option(
        parseList(parseNetwork), (), "networks never throttled"
    )
    throttle_parallel_checks: int = option(
        parseInteger(1, 64), 4, "checks one address may run at once; more wait their turn"
    )

    def check(self) -> None:
        if not self.checkers:
            raise SectionError("checkers", "name at least one checker")
        if len(set(self.checkers)) != len(self.checkers):
            raise SectionError("checkers", "a checker is listed twice")
        if "passwd-file" in self.checkers and self.passwd_file is None:
            raise SectionError("passwd_file", "the passwd-file checker needs passwd_file")
        if self.demo_users and self.passwd_file is None:
            raise SectionError("passwd_file", "demo_users are created in passwd_file")
        if self.demo_users and "passwd-file" not in self.checkers:
            raise SectionError("demo_users", "demo users need the passwd-file checker")
        if self.first_valid_uid > self.last_valid_uid:
            raise SectionError("last_valid_uid", "is below first_valid_uid")
        if self.throttle_max_delay < self.throttle_delay:
            raise SectionError("throttle_max_delay", "is below throttle_delay")
        if any(c.isalnum() or c in "@.:" or c.isspace() for c in self.recipient_delimiter):
            raise SectionError("recipient_delimiter", "use punctuation such as + or -")


@dataclass(frozen=True, kw_only=True)
class StoreSection(Section):
    name = "store"
    mail_location: str = option(
        parseNonEmpty,
        "maildir:~/Maildir",
        "Dovecot-style location: maildir:~/Maildir, maildir:/var/mail/%d/%n",
    )
    # The store issue adds its keys below (quota, rescan interval, ...).
    quota_bytes: int = option(
        parseSize, 0, "Maildir++ quota per account (whole Maildir) in bytes (512M, 2G); 0 = none"
    )
    quota_messages: int = option(
        parseInteger(minimum=0), 0, "Maildir++ quota per account (whole Maildir) in messages; 0 = none"
    )
    fsync: bool = option(
        parseBoolean, True, "fsync messages and directories before acknowledging"
    )
    threads: int = option(
        parseInteger(minimum=1, maximum=64), 4, "threads doing the store's disk I/O"
    )
    rescan_interval: float = option(
        parseDuration, 60.0, "periodic rescan of open folders (inotify fallback); 0 = off"
    )
    inotify: bool = option(
        parseBoolean, True, "watch open folders with inotify for other programs' changes"
    )
    lock_stale_timeout: float = option(
        parseDuration, 120.0, "age after which an unchanged dovecot-uidlist.lock is stale"
    )
    autocreate_folders: bool = option(
        parseBoolean, True, "create and subscribe the special-use folders at first login"
    )
    drafts_folder: str = option(parseString, "Drafts", "folder with the \\Drafts role")
    sent_folder: str = option(parseString, "Sent", "folder with the \\Sent role")
    trash_folder: str = option(parseString, "Trash", "folder with the \\Trash role")
    junk_folder: str = option(parseString, "Junk", "folder with the \\Junk role")
    archive_folder: str = option(parseString, "Archive", "folder with the \\Archive role")
    index_linger: float = option(
        parseDuration, 300.0, "keep a folder's index in memory this long after its last session"
    )

    def check(self) -> None:
        for key in ("drafts_folder", "sent_folder", "trash_folder", "junk_folder", "archive_folder"):
            value = getattr(self, key)
            if value:
                try:
                    folderDirName(value)
                except FolderNameError as e:
                    raise SectionError(key, str(e)) from None


@dataclass(frozen=True, kw_only=True)
class DNSSection(ListenerSection):
    """
    Authoritative DNS.  Each C{listen} value is a C{tcp:PORT[:interface=ADDR]}
    (or C{tcp6:}) endpoint; UDP is served on the same address and port.
    """

    name = "dns"

    def _parseZone(raw, context):
        # "ORIGIN:PATH", or "PATH" whose file name (minus .zone/.db) is the origin.
        text = raw.strip()
        origin, sep, path = text.partition(":")
        if not sep:
            path = text
            origin = re.sub(r"\.(zone|db)$", "", Path(text).name)
        origin = origin.strip().rstrip(".").lower()
        if not origin or not re.fullmatch(r"[a-z0-9_*-]+(\.[a-z0-9_*-]+)*", origin):
            raise ValueError(f'"{raw}": zone origin "{origin}" is not a domain name (write ORIGIN:PATH)')
        return (origin, parseExistingFile(path, context))

    def _parseNotifyTarget(raw, context):
        # "ADDRESS", "ADDRESS:PORT", "[IPV6]:PORT" (port 53 by default).
        import ipaddress

        text = raw.strip()
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?|([0-9A-Fa-f:]+)", text)
        if match is None:
            raise ValueError(f'"{raw}" is not ADDRESS[:PORT]')
        host = match.group(1) or match.group(3) or match.group(5)
        port = int(match.group(2) or match.group(4) or 53)
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f'"{raw}": {host} is not an IP address') from None
        if not 0 < port < 65536:
            raise ValueError(f'"{raw}": port {port} is out of range')
        return (host, port)

    zones: tuple = option(
        parseList(_parseZone),
        (),
        "zones served, as ORIGIN:PATH (BIND master files; PATH alone takes the origin from the file name)",
    )
    zone_cache: bool = option(
        parseBoolean,
        True,
        "save each parsed zone in <state_directory>/dns and read it back while its files are unchanged",
    )
    allow_transfer: tuple = option(
        parseList(parseNetwork), (), "networks allowed AXFR/IXFR over TCP (default: nobody)"
    )
    also_notify: tuple = option(
        parseList(_parseNotifyTarget),
        (),
        "secondaries sent a NOTIFY when a zone loads or its serial rises (ADDRESS[:PORT])",
    )
    max_udp_payload: int = option(
        parseInteger(512, 4096), 1232, "EDNS UDP payload size we advertise and send at most"
    )
    tcp_idle_timeout: float = option(
        parseDuration, 30.0, "close a TCP connection idle this long (0: never)"
    )
    tcp_max_clients: int = option(
        parseInteger(1, 100000), 100, "concurrent TCP connections accepted"
    )
    rate_limit: int = option(
        parseInteger(0, 1000000),
        0,
        "UDP responses per second per client prefix and answer (0: rate limiting off)",
    )
    rate_limit_slip: int = option(
        parseInteger(0, 10), 2, "every Nth limited response is sent empty with TC (0: drop all)"
    )
    rate_limit_window: float = option(
        parseDuration, 15.0, "how long a limited client's debt is remembered"
    )
    publish_mail_records: bool = option(
        parseBoolean,
        False,
        "add the records generated from this config (service SRV, mail authentication) to our zones",
    )
    rate_limit_ipv4_prefix: int = option(parseInteger(8, 32), 24, "IPv4 prefix length of a client")
    rate_limit_ipv6_prefix: int = option(parseInteger(16, 128), 56, "IPv6 prefix length of a client")

    def check(self) -> None:
        super().check()
        for description in self.listen:
            if not re.match(r"tcp6?:", description):
                raise SectionError(
                    "listen", f'"{description}": use tcp:PORT[:interface=ADDR]; UDP is served on the same port'
                )
        if self.enabled and not self.zones:
            raise SectionError("zones", "an enabled DNS service needs at least one zone")
        origins = [origin for origin, _ in self.zones]
        if len(set(origins)) != len(origins):
            raise SectionError("zones", "a zone is listed twice")


def _parsePolicyMapFile(raw: str, context: _Context) -> Path:
    # Checked line by line now, so a bad table stops the start with its
    # file and line; the queue reads it again when it is built.
    from twisted_maillab.tlspolicy.maps import PolicyMapError, loadPolicyMap

    path = parseExistingFile(raw, context)
    try:
        loadPolicyMap(path)
    except PolicyMapError as e:
        raise ValueError(str(e)) from None
    return path


_RELAY_RESTRICTIONS = (
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "defer_unauth_destination",
    "reject_unauth_destination",
)


def parseResolver(raw: str, context: _Context | None = None) -> tuple:
    """
    A DNS server as C{host:port}, C{[v6]:port}, or a bare address (port
    53): C{127.0.0.1:10053}, C{[::1]:53}, C{192.0.2.1}.
    """
    import ipaddress

    text = raw.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f'"{raw}" is not host:port')
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f'"{raw}": {host!r} is not an IP address') from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'"{raw}": {port!r} is not a port')
    return (address, int(port))


def parseDomain(raw: str, context: _Context | None = None) -> str:
    """
    A domain name (trailing dot allowed, as in Postfix's C{mydestination})
    or a C{$myhostname}/C{$mydomain} reference, kept for expansion.
    """
    value = raw.strip().lower()
    if value in ("$myhostname", "$mydomain"):
        return value
    name = value.rstrip(".")
    labels = name.split(".")
    if not name or any(
        not label or len(label) > 63 or not re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?", label)
        for label in labels
    ):
        raise ValueError(f'"{raw}" is not a domain name')
    return name


@dataclass(frozen=True, kw_only=True)
class SMTPSection(ListenerSection):
    """
    The MX listener and the Postfix policy knobs the seed's main.cf used,
    under the same names; [submission] and [submissions] share them.
    """

    name = "smtp"
    myhostname: str = option(
        parseString, "", "host name in the banner, EHLO and Received: (default: [server] hostname)"
    )
    mydestination: tuple = option(
        parseList(parseDomain),
        ("$myhostname", "localhost"),
        "domains delivered locally; $myhostname and $mydomain are expanded",
    )
    mynetworks: tuple = option(
        parseList(parseNetwork),
        (),
        "client networks allowed to relay (permit_mynetworks)",
    )
    smtpd_relay_restrictions: tuple = option(
        parseList(parseChoice(*_RELAY_RESTRICTIONS)),
        ("permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"),
        "relay policy, evaluated in order",
    )
    recipient_delimiter: str = option(
        parseString, "", "separates a user from an extension: edouard+lists@ -> edouard"
    )
    message_size_limit: int = option(parseSize, 10240000, "largest message accepted (SIZE)")
    alias_maps: Path | None = option(parsePath, None, "/etc/aliases-format file")
    # Postfix's names wherever Postfix has the knob.
    smtpd_banner: str = option(
        parseNonEmpty, "$myhostname ESMTP maillab", "text after 220 in the greeting"
    )
    smtpd_timeout: float = option(
        parseDuration, 300.0, "idle time allowed while waiting for a command (421 4.4.2)"
    )
    smtpd_data_timeout: float = option(
        parseDuration, 300.0, "idle time allowed between reads of the message text"
    )
    smtpd_recipient_limit: int = option(
        parseInteger(1), 1000, "recipients per message (452 4.5.3 beyond)"
    )
    smtpd_client_connection_count_limit: int = option(
        parseInteger(0),
        50,
        "simultaneous connections from one client address, per listener (0: no limit)",
    )
    smtpd_sasl_auth_enable: bool = option(
        parseBoolean, True, "offer AUTH on this listener (submission always does)"
    )
    smtpd_tls_auth_only: bool = option(
        parseBoolean, True, "offer AUTH PLAIN/LOGIN only over TLS (see plaintext_on_loopback)"
    )
    plaintext_on_loopback: bool = option(
        parseBoolean,
        True,
        "with smtpd_tls_auth_only, still allow AUTH without TLS from 127.0.0.0/8 and ::1 "
        "(say no behind a local TLS proxy, where every client looks local)",
    )
    smtpd_peername_lookup: bool = option(
        parseBoolean, True, "look up the client's name (forward-confirmed) for Received:"
    )
    vrfy_command: str = option(
        parseChoice("ambiguous", "verify", "disabled"),
        "ambiguous",
        "VRFY answers 252 (ambiguous), checks the recipient (verify) or 502 (disabled)",
    )
    reject_sender_login_mismatch: bool = option(
        parseBoolean,
        True,
        "an authenticated client may use only its own addresses as envelope sender",
    )
    reject_unauthenticated_sender_login_mismatch: bool = option(
        parseBoolean,
        True,
        "a client outside mynetworks that did not log in may not use a local user's address "
        "as envelope sender",
    )
    reject_from_login_mismatch: bool = option(
        parseBoolean,
        True,
        "an authenticated client may use only its own addresses in From:",
    )
    allow_alias_include: bool = option(
        parseBoolean, False, "expand :include: files in alias_maps (else refused and logged)"
    )
    allow_alias_commands: bool = option(
        parseBoolean, False, "deliver to |command alias targets, run as default_privs (else refused)"
    )
    allow_alias_files: bool = option(
        parseBoolean, False, "append to /file alias targets as default_privs, mbox format (else refused)"
    )
    default_privs: str = option(
        parseNonEmpty, "nobody", "the user alias commands and file writes run as (when maillab is root)"
    )
    command_time_limit: float = option(
        parseDuration, 1000.0, "time allowed to an alias command or file write"
    )
    smtpd_forbid_bare_newline: str = option(
        parseChoice("normal", "reject"),
        "normal",
        "a bare LF or CR in message text is stored as a line end (normal) or refuses the "
        "message with 521 and closes the connection (reject)",
    )
    submission_add_missing_headers: bool = option(
        parseBoolean,
        True,
        "add Date:, Message-ID: and From: (the envelope sender) when missing to mail from "
        "logged-in clients, mynetworks and the submission listeners (never to other MX mail)",
    )
    header_size_limit: int = option(
        parseSize, 102400, "header bytes inspected for the From: check and the added headers"
    )
    recipient_cache_ttl: float = option(
        parseDuration,
        10.0,
        "how long a recipient lookup (user exists or not) is reused; 0 disables the cache",
    )
    outbound_queue: bool = option(
        parseBoolean,
        True,
        "relay mail for other domains (permitted clients, alias targets) through a queue "
        "and MX lookups; no: such recipients get 451",
    )
    queue_directory: Path | None = option(
        parsePath, None, "the outbound spool (default: <state_directory>/queue)"
    )
    maximal_queue_lifetime: float = option(
        parseDuration, 5 * 86400.0, "how long undeliverable mail is retried before it bounces"
    )
    minimal_backoff_time: float = option(
        parseDuration, 300.0, "first retry delay; doubles per attempt"
    )
    maximal_backoff_time: float = option(parseDuration, 4000.0, "longest retry delay")
    smtp_connect_timeout: float = option(
        parseDuration, 30.0, "time allowed to connect to a remote MX"
    )
    relay_port: int = option(
        parseInteger(1, 65535), 25, "TCP port of remote MX hosts"
    )
    default_destination_concurrency_limit: int = option(
        parseInteger(1), 20, "parallel deliveries to one destination domain"
    )
    default_process_limit: int = option(
        parseInteger(1), 100, "parallel outbound delivery attempts in all"
    )
    double_bounce_recipient: str = option(
        parseString,
        "",
        "where a report that cannot be delivered is reported (Postfix's 2bounce_notice_recipient); "
        "default postmaster@<[server] domain>",
    )
    resolvers: tuple = option(
        parseList(parseResolver),
        (),
        "DNS servers (host:port) the outbound queue and the mail authentication checks ask; "
        "empty: /etc/resolv.conf",
    )
    # Outbound TLS policy (twisted_maillab.tlspolicy), Postfix's names.
    smtp_tls_security_level: str = option(
        parseChoice("none", "may", "encrypt", "verify"),
        "may",
        "TLS demanded of remote MX hosts without a tls_policy entry, DANE or MTA-STS policy: "
        "none, may (opportunistic), encrypt (TLS required), verify (TLS with a trusted "
        "certificate valid for the MX name)",
    )
    smtp_tls_policy_maps: Path | None = option(
        _parsePolicyMapFile, None, "file of 'domain level' lines overriding the level per destination"
    )
    smtp_tls_ca_file: Path | None = option(
        parseExistingFile,
        None,
        "PEM trust anchors for verify, MTA-STS certificates and policy fetches (default: the system's)",
    )
    smtp_dns_support_level: str = option(
        parseChoice("enabled", "dnssec"),
        "enabled",
        "dnssec: the resolver validates, so TLSA records it marks authentic (AD) are used (DANE)",
    )
    smtp_mta_sts: bool = option(
        parseBoolean, True, "apply the MTA-STS policies of destinations (RFC 8461)"
    )
    smtp_tls_reporting: bool = option(
        parseBoolean,
        True,
        "count TLS outcomes per DANE/MTA-STS policy and send daily TLS-RPT reports (RFC 8460)",
    )
    mta_sts_mode: str = option(
        parseChoice("none", "testing", "enforce"),
        "none",
        "our own MTA-STS policy; testing or enforce publish _mta-sts and serve the policy file",
    )
    mta_sts_mx: tuple = option(
        parseList(parseString), (), "MX patterns of our policy (default: the host name)"
    )
    mta_sts_max_age: float = option(
        parseDuration, 604800.0, "max_age of our MTA-STS policy (at most 31557600)"
    )
    tlsrpt_rua: tuple = option(
        parseList(parseString),
        (),
        "where others send TLS reports about us (mailto: URIs), published as _smtp._tls",
    )
    tlsa_publish: bool = option(
        parseBoolean, False, "publish TLSA 3 1 1 of the [tls] certificate at _25._tcp.<host name>"
    )

    def check(self) -> None:
        super().check()
        if len(self.recipient_delimiter) > 1:
            raise SectionError("recipient_delimiter", "must be a single character")
        if self.smtpd_timeout <= 0:
            raise SectionError("smtpd_timeout", "must be positive")
        if self.smtpd_data_timeout <= 0:
            raise SectionError("smtpd_data_timeout", "must be positive")
        if not 0 < self.mta_sts_max_age <= 31557600:
            raise SectionError("mta_sts_max_age", "RFC 8461 3.2: between 1 second and 31557600 (a year)")
        for pattern in self.mta_sts_mx:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", pattern):
                raise SectionError("mta_sts_mx", f'"{pattern}" is not a host name or *.domain pattern')
        for uri in self.tlsrpt_rua:
            if not re.fullmatch(r"(mailto:[^@,;\s]+@[^@,;\s]+|https://[^,;\s]+)", uri):
                raise SectionError("tlsrpt_rua", f'"{uri}" is not a mailto: or https: URI')


def _parseDMARCAction(raw: str, context: _Context | None = None) -> str:
    return parseChoice("reject", "junk", "record")(raw, context)


@dataclass(frozen=True, kw_only=True)
class MailAuthSection(Section):
    """
    C{[mailauth]}: DKIM signing of what we send, SPF/DKIM/DMARC checks of
    what the MX receives, and the records published for them
    (L{twisted_maillab.mailauth}).
    """

    name = "mailauth"
    dkim_sign: bool = option(
        parseBoolean, True, "DKIM-sign mail submitted by our users, the sendmail injector and bounces"
    )
    dkim_domains: tuple = option(
        parseList(_parseDomain), (), "domains we sign for and publish keys of; empty: [server] domain and [auth] local_domains"
    )
    dkim_record_ttl: float = option(
        parseDuration, 3600.0, "TTL of the published DKIM key records"
    )
    dkim_rotation_grace: float = option(
        parseDuration, 2 * 86400.0, "how long a rotated-out key stays published after its record's TTL"
    )
    inbound_checks: bool = option(
        parseBoolean, True, "check SPF, DKIM and DMARC of mail the MX ([smtp]) receives and add Authentication-Results"
    )
    dmarc_reject_action: str = option(
        _parseDMARCAction, "reject", "what a DMARC failure under p=reject does: reject (550 5.7.1), junk, record"
    )
    dmarc_quarantine_action: str = option(
        _parseDMARCAction, "junk", "what a DMARC failure under p=quarantine does: reject, junk (the Junk folder), record"
    )
    spf_fail_action: str = option(
        parseChoice("record", "reject"), "record", "what an SPF fail does by itself: record, or reject (550 5.7.23)"
    )
    dns_timeout: float = option(
        parseDuration, 5.0, "time allowed to each DNS query of the checks"
    )
    verify_size_limit: int = option(
        parseSize, 10240000, "largest message whose DKIM signatures are verified (held in memory to verify)"
    )
    spf_record: str = option(
        parseNonEmpty, "v=spf1 mx -all", "the SPF record published for each of our domains (none: not published)"
    )
    dmarc_record: str = option(
        parseString, "", "the DMARC record published at _dmarc; empty: v=DMARC1; p=quarantine; rua=mailto:<dmarc_rua>; none: not published"
    )
    dmarc_rua: str = option(
        parseNonEmpty, "postmaster", "local mailbox of the default record's rua= (aggregate reports); a bare name is in each domain"
    )

    def check(self) -> None:
        if self.dns_timeout <= 0:
            raise SectionError("dns_timeout", "must be positive")
        if self.spf_record != "none" and not self.spf_record.startswith("v=spf1"):
            raise SectionError("spf_record", "must start with v=spf1 (or be none)")
        if self.dmarc_record not in ("", "none") and not self.dmarc_record.replace(" ", "").startswith("v=DMARC1;"):
            raise SectionError("dmarc_record", "must start with v=DMARC1; (or be none)")


@dataclass(frozen=True, kw_only=True)
class SubmissionSection(ListenerSection):
    name = "submission"
    smtpd_tls_security_level: str = option(
        parseChoice("encrypt", "may"),
        "encrypt",
        "encrypt: STARTTLS before MAIL or AUTH (530 5.7.0); may: TLS optional",
    )
    require_authentication: bool = option(
        parseBoolean, True, "MAIL needs a successful AUTH first (530 5.7.0)"
    )


@dataclass(frozen=True, kw_only=True)
class SubmissionsSection(ListenerSection):
    name = "submissions"
    require_authentication: bool = option(
        parseBoolean, True, "MAIL needs a successful AUTH first (530 5.7.0)"
    )


@dataclass(frozen=True, kw_only=True)
class POP3Section(ListenerSection):
    name = "pop3"

    idle_timeout: float = option(
        parseDuration,
        600.0,
        "idle time before the autologout (RFC 1939: at least 10 minutes); nothing is deleted",
    )
    max_command_length: int = option(
        parseInteger(minimum=512, maximum=65536),
        2048,
        "longest command or SASL response line in octets, without CRLF",
    )
    plaintext_on_loopback: bool = option(
        parseBoolean,
        True,
        "allow USER/PASS and SASL PLAIN/LOGIN without TLS from 127.0.0.0/8 and ::1 "
        "(say no behind a local TLS proxy, where every client looks local)",
    )

    def check(self) -> None:
        super().check()
        # RFC 1939 3: "an inactivity autologout timer ... MUST be of at
        # least 10 minutes' duration".
        if self.idle_timeout < 600:
            raise SectionError("idle_timeout", "RFC 1939 requires at least 10 minutes (600s)")


@dataclass(frozen=True, kw_only=True)
class POP3SSection(POP3Section):
    name = "pop3s"


@dataclass(frozen=True, kw_only=True)
class IMAPSection(ListenerSection):
    name = "imap"

    idle_timeout: float = option(
        parseDuration,
        1800.0,
        "idle time before the autologout once logged in (RFC 9051: at least 30 minutes); "
        "IDLE restarts it",
    )
    login_timeout: float = option(
        parseDuration, 60.0, "idle time allowed before a successful login"
    )
    max_line_length: int = option(
        parseInteger(minimum=1024, maximum=1048576),
        # Dovecot's imap_max_line_length: clients send long UID sets and ID
        # lists (RFC 7162 3.2.7 asks for at least 8192)
        65536,
        "longest command line in octets, without CRLF and literals",
    )
    append_limit: int = option(
        parseSize,
        0,
        "largest message APPEND accepts (APPENDLIMIT); 0: [smtp] message_size_limit",
    )
    max_connections_per_user: int = option(
        parseInteger(minimum=0), 20, "IMAP connections one user may hold at once (0: no limit)"
    )
    max_connections_per_address: int = option(
        parseInteger(minimum=0), 50, "IMAP connections one client address may hold at once (0: no limit)"
    )
    plaintext_on_loopback: bool = option(
        parseBoolean,
        True,
        "allow LOGIN and AUTHENTICATE PLAIN/LOGIN without TLS from 127.0.0.0/8 and ::1 "
        "(say no behind a local TLS proxy, where every client looks local)",
    )

    def check(self) -> None:
        super().check()
        # RFC 9051 5.4: "the autologout timer ... MUST be of at least 30
        # minutes' duration".
        if self.idle_timeout < 1800:
            raise SectionError("idle_timeout", "RFC 9051 requires at least 30 minutes (1800s)")
        if self.login_timeout <= 0:
            raise SectionError("login_timeout", "must be positive")


@dataclass(frozen=True, kw_only=True)
class IMAPSSection(IMAPSection):
    name = "imaps"


@dataclass(frozen=True, kw_only=True)
class HTTPSection(ListenerSection):
    """
    Mail client autoconfiguration (Mozilla autoconfig, Microsoft
    Autodiscover), C{/metrics} and C{/healthz}.
    """

    name = "http"
    https: bool = option(
        parseBoolean, False, "serve HTTPS with the [tls] certificate on every listen value"
    )
    login_name: str = option(
        parseChoice("auto", "address", "local-part"),
        "auto",
        "the login clients are told to use: the whole address, its local part, or auto "
        "(address when passwd-file is the first [auth] checker, else local-part)",
    )
    display_name: str = option(
        parseString, "", "the provider name mail clients show (default: [server] domain)"
    )
    metrics_allow: tuple = option(
        parseList(parseNetwork),
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "networks allowed to read /metrics (others get 403)",
    )
    healthz_queue_age: float = option(
        parseDuration,
        86400.0,
        "/healthz reports the queue stuck when its oldest message is older (0: not checked)",
    )
    max_request_size: int = option(
        parseSize, 65536, "largest request body accepted (Autodiscover POST); larger gets 413"
    )
    request_timeout: float = option(
        parseDuration, 30.0, "close a connection idle this long"
    )


SECTIONS: Mapping[str, type[Section]] = {
    cls.name: cls
    for cls in (
        ServerSection,
        TLSSection,
        AuthSection,
        StoreSection,
        DNSSection,
        SMTPSection,
        SubmissionSection,
        SubmissionsSection,
        POP3Section,
        POP3SSection,
        IMAPSection,
        IMAPSSection,
        HTTPSection,
        MailAuthSection,
    )
}

# Listeners whose connections start with a TLS handshake (RFC 8314).
IMPLICIT_TLS = frozenset({"submissions", "pop3s", "imaps"})


@dataclass(frozen=True, kw_only=True)
class Config:
    """
    The whole configuration: one frozen section object per ini section
    (absent sections hold their defaults).

    @ivar path: the ini file this came from.
    """

    path: Path
    sections: Mapping[str, Section]

    def __getattr__(self, name: str) -> Section:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def mailDomains(self) -> list[str]:
        """
        The domains whose addresses are ours, the primary one first:
        C{[server] domain}, then C{[auth] local_domains}.
        """
        domains = [self.server.domain.rstrip(".").lower()]
        for domain in self.auth.local_domains:
            if domain not in domains:
                domains.append(domain)
        return domains

    def listeners(self) -> list[ListenerSection]:
        """
        The enabled listening sections, in file order of L{SECTIONS}.
        """
        return [
            section
            for section in self.sections.values()
            if isinstance(section, ListenerSection) and section.enabled
        ]

    def error(
        self, section: str, key: str | None, reason: str, value: str | None = None
    ) -> ConfigError:
        """
        A L{ConfigError} about a key of this config, with its line if known:
        the line holding C{value} when the key continues over several lines.
        """
        return ConfigError(self.path, section, key, reason, self._line(section, key, value))

    def _line(self, section: str, key: str | None, value: str | None = None) -> int | None:
        first = self._lines.get((section, key))
        if first is None or value is None:
            return first
        text = self._text
        # The key's line and its indented continuation lines.
        for number in range(first, len(text) + 1):
            line = text[number - 1]
            if number > first and (not line[:1].isspace() or not line.strip()):
                break
            if value in line:
                return number
        return first


def reference() -> str:
    """
    Every section and key with its default and description, as text; the
    README's reference is checked against it.
    """
    out = []
    for name, cls in SECTIONS.items():
        out.append(f"[{name}]")
        for spec in dataclasses.fields(cls):
            if not spec.init:
                continue
            default = "(required)" if spec.default is dataclasses.MISSING else spec.default
            out.append(f"  {spec.name} = {default!r}  {spec.metadata.get('doc', '')}")
    return "\n".join(out)


def load(path: str | Path, sections=None) -> "Config":
    """
    Read a configuration file: L{twisted_maillab.configfile.load}.
    """
    # The reader builds the classes of this module, so it imports this
    # module; importing it here, when called, keeps the two out of an
    # import cycle.
    from twisted_maillab import configfile

    return configfile.load(path, sections)


def loadString(text: str, path: str | Path = "<string>", sections=None) -> "Config":
    """
    Read configuration text: L{twisted_maillab.configfile.loadString}.
    """
    from twisted_maillab import configfile

    return configfile.loadString(text, path, sections)
