"""
How a login name or a recipient address becomes an account key, and how a
Dovecot C{mail_location} becomes a Maildir path.

The username rules (README "Usernames"):

  1. A name is split at its last C{@} into a local part and a domain.  The
     domain is compared without case and without a trailing dot; it must
     be one of the local domains (C{[server] domain} plus C{[auth]
     local_domains}), otherwise the name belongs to no account.  So
     C{edouard} and C{edouard@domaineel.rt} are the same account.
  2. With C{username_case = lower} (the default, like Dovecot's C{%Lu} and
     Debian's adduser, which refuses upper case) the local part is folded
     to lower case; with C{sensitive} it is compared exactly.
  3. A login name containing the recipient delimiter (C{+}) belongs to no
     account: the delimiter is an addressing feature, never part of a
     login.  A recipient lookup asked to honour a delimiter first tries
     the whole local part (Postfix does so too, so a real account named
     C{a+b} still receives its mail) and then the part before the first
     delimiter character: C{edouard+lists@domaineel.rt} -> C{edouard}.
  4. Names are UTF-8, at most 64 octets of local part and 255 octets of
     domain (RFC 5321 4.5.3.1.1-2), with no control characters, spaces,
     C{:} (the passwd-file separator) or C{/}; anything else belongs to no
     account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["UsernameRules", "MailLocation", "parseMailLocation"]

# RFC 5321 4.5.3.1.1 and 4.5.3.1.2.
_MAX_LOCAL = 64
_MAX_DOMAIN = 255
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f:/\\]")


def normaliseDomain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


@dataclass(frozen=True)
class UsernameRules:
    """
    The rules above, for one configuration.

    @ivar localDomains: lower-case local domains; the first is the primary
        one (C{[server] domain}) that accounts without a domain belong to.
    @ivar caseSensitive: compare local parts exactly.
    @ivar delimiters: recipient delimiter characters (C{"+"}), or C{""}.
    """

    localDomains: tuple[str, ...]
    caseSensitive: bool = False
    delimiters: str = "+"

    @property
    def primaryDomain(self) -> str:
        return self.localDomains[0]

    def isLocalDomain(self, domain: str) -> bool:
        return normaliseDomain(domain) in self.localDomains

    def split(self, name: str) -> tuple[str, str | None] | None:
        """
        Split and check a name: C{(localPart, domainOrNone)} with the local
        part case-folded per the rules, or L{None} when the name is not a
        valid name of a local account (bad syntax, foreign domain).
        """
        if not isinstance(name, str) or not name:
            return None
        local, at, domain = name.rpartition("@")
        if not at:
            local, domain = name, None
        if not local or _FORBIDDEN.search(local) or "@" in local:
            return None
        if len(local.encode("utf-8")) > _MAX_LOCAL:
            return None
        if domain is not None:
            domain = normaliseDomain(domain)
            if not domain or len(domain) > _MAX_DOMAIN or _FORBIDDEN.search(domain):
                return None
            if domain not in self.localDomains:
                return None
        if not self.caseSensitive:
            local = local.lower()
        return local, domain

    def loginKey(self, name: str) -> tuple[str, str | None] | None:
        """
        The key a login name is looked up by, or L{None} when it can name no
        account (rule 3: a delimiter is never part of a login).
        """
        parts = self.split(name)
        if parts is None:
            return None
        if self.delimiters and any(c in parts[0] for c in self.delimiters):
            return None
        return parts

    def recipientKeys(self, address: str, delimiters: str | None = None) -> list[tuple[str, str | None]]:
        """
        The keys to try, in order, for a recipient address.

        @param delimiters: the recipient delimiter characters to strip (the
            SMTP server passes its own C{recipient_delimiter}); L{None}
            uses the configured ones, C{""} strips nothing.
        """
        parts = self.split(address)
        if parts is None:
            return []
        keys = [parts]
        delimiters = self.delimiters if delimiters is None else delimiters
        local, domain = parts
        cut = min((local.find(c) for c in delimiters if c in local), default=-1)
        if cut > 0:
            keys.append((local[:cut], domain))
        return keys

    def foldLocal(self, local: str) -> str:
        return local if self.caseSensitive else local.lower()


# ---------------------------------------------------------------------------
# Dovecot mail_location (doc.dovecot.org "Mail location"): FORMAT:PATH[:KEY=VALUE]...


@dataclass(frozen=True)
class MailLocation:
    """
    A parsed C{mail_location}.

    @ivar format: always C{maildir} in this version.
    @ivar template: the path with its C{~} and C{%} variables unexpanded.
    @ivar params: the C{KEY=VALUE} options after the path (C{LAYOUT=fs},
        C{INBOX=...}, C{INDEX=...}), for the store to interpret.
    """

    format: str
    template: str
    params: tuple[tuple[str, str], ...] = ()

    def expand(self, user: str, local: str, domain: str | None, home: Path) -> Path:
        """
        The Maildir of one account.

        Variables (Dovecot's): C{%u} the user (the avatar ID), C{%n} its
        local part, C{%d} its domain, C{%h} its home, C{%%} a percent sign;
        C{%Lx} lower-cases and C{%Ux} upper-cases variable C{x}.  A leading
        C{~} is the home directory.
        """
        values = {"u": user, "n": local, "d": domain or "", "h": str(home)}

        def substitute(match: re.Match) -> str:
            modifier, variable = match.group(1), match.group(2)
            if variable == "%":
                return "%"
            value = values[variable]
            if modifier == "L":
                value = value.lower()
            elif modifier == "U":
                value = value.upper()
            # A variable must not climb out of its directory: "..", "/" in a
            # user-controlled name are refused by UsernameRules already; this
            # is the second line of defence.
            if variable in "und" and (value in (".", "..") or "/" in value):
                raise ValueError(f"unsafe value {value!r} for %{variable}")
            return value

        path = _VARIABLE.sub(substitute, self.template)
        if path == "~":
            path = str(home)
        elif path.startswith("~/"):
            path = str(home) + path[1:]
        result = Path(path)
        if not result.is_absolute():
            raise ValueError(f"mail_location {self.template!r} does not give an absolute path")
        return result


_VARIABLE = re.compile(r"%([LU]?)([undh%])")
_ANY_VARIABLE = re.compile(r"%[LU]?(.)")


def parseMailLocation(text: str) -> MailLocation:
    """
    Parse C{maildir:~/Maildir} or C{maildir:/var/mail/%d/%n:LAYOUT=fs}.

    @raise ValueError: with the reason (unknown format or variable, relative
        path); the caller turns it into a L{ConfigError} on
        C{[store] mail_location}.
    """
    fmt, colon, rest = text.strip().partition(":")
    if not colon:
        raise ValueError(f'"{text}" has no format (write maildir:~/Maildir)')
    fmt = fmt.lower()
    if fmt != "maildir":
        raise ValueError(f'format "{fmt}" is not supported (only maildir)')
    parts = rest.split(":")
    template, params = parts[0], []
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f'"{part}" is not KEY=VALUE')
        params.append((key.upper(), value))
    if not template:
        raise ValueError("the path is empty")
    for match in _ANY_VARIABLE.finditer(template):
        if match.group(1) not in "undh%":
            raise ValueError(f'unknown variable "%{match.group(1)}" (use %u %n %d %h)')
    if not (template.startswith("/") or template.startswith("~") or template.startswith("%h")
            or template.startswith("%Lh")):
        raise ValueError(f'"{template}" is relative (start it with /, ~ or %h)')
    return MailLocation(fmt, template, tuple(params))
