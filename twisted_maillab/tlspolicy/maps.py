"""
The per-domain TLS policy table, in the form of Postfix's
C{smtp_tls_policy_maps} (a C{texthash} table): one C{domain level} per
line, C{#} comments and blank lines ignored.  A leading dot
(C{.example.org}) matches every subdomain of C{example.org}, as in
Postfix with C{parent_domain_matches_subdomains} off.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["LEVELS", "PolicyMapError", "PolicyMap", "parsePolicyMap", "loadPolicyMap"]

# Postfix's smtp_tls_security_level names.
LEVELS = ("none", "may", "encrypt", "verify")

_DOMAIN = re.compile(r"\.?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")


class PolicyMapError(ValueError):
    """
    A line of the table is unusable: rendered C{PATH line N: reason}.
    """

    def __init__(self, path, line: int, reason: str):
        super().__init__(f"{path} line {line}: {reason}" if line else f"{path}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class PolicyMap:
    """
    The table: exact domains, then C{.parent} entries from the closest
    parent up.
    """

    def __init__(self, entries: dict[str, str] | None = None):
        self.entries = dict(entries or {})

    def level(self, domain: str) -> str | None:
        """
        The level the table gives C{domain}, or L{None} when it says nothing.
        """
        domain = domain.lower().rstrip(".")
        if domain in self.entries:
            return self.entries[domain]
        labels = domain.split(".")
        for i in range(1, len(labels)):
            found = self.entries.get("." + ".".join(labels[i:]))
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self.entries)


def parsePolicyMap(text: str, path="<policy map>") -> PolicyMap:
    """
    @raise PolicyMapError: the first bad line, naming the file and line.
    """
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise PolicyMapError(path, number, f'"{line}": write one domain and one level ({", ".join(LEVELS)})')
        domain, level = fields[0].lower().rstrip("."), fields[1].lower()
        if not _DOMAIN.fullmatch(domain):
            raise PolicyMapError(path, number, f'"{fields[0]}" is not a domain name')
        if level not in LEVELS:
            raise PolicyMapError(path, number, f'"{fields[1]}" is not a TLS level ({", ".join(LEVELS)})')
        if domain in entries:
            raise PolicyMapError(path, number, f"{domain} is listed twice")
        entries[domain] = level
    return PolicyMap(entries)


def loadPolicyMap(path: Path) -> PolicyMap:
    """
    Read and parse the table (at start-up, before the reactor runs).

    @raise PolicyMapError: it cannot be read or a line is bad.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyMapError(path, 0, f"cannot be read: {getattr(e, 'strerror', None) or e}") from None
    return parsePolicyMap(text, path)
