"""
The checkers as L{twisted.cred.strcred} plugins, so any Twisted
application taking C{--auth} can use them::

    twistd ... --auth maillab-unix:passwd=/etc/passwd:shadow=/etc/shadow
    twistd ... --auth maillab-pam:service=dovecot
    twistd ... --auth passwd-file:/etc/dovecot/users

Options are C{key=value} pairs separated by C{:}; a name given as
C{user@domain} needs C{domains=example.org,example.net}.
"""

from __future__ import annotations

from pathlib import Path

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import ICheckerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer

from twisted_maillab.auth.checkers import PAMChecker, PasswdFileChecker, UnixChecker
from twisted_maillab.auth.names import UsernameRules
from twisted_maillab.auth.sources import PasswdFileSource, UnixSource

__all__ = ["UnixCheckerFactory", "PAMCheckerFactory", "PasswdFileCheckerFactory"]


def _options(argstring: str, allowed: set[str]) -> dict[str, str]:
    options = {}
    for part in filter(None, argstring.split(":")):
        key, eq, value = part.partition("=")
        if not eq or key not in allowed:
            raise ValueError(
                f"unknown option {part!r} (known: {', '.join(sorted(allowed))})"
            )
        options[key] = value
    return options


def _rules(options: dict[str, str]) -> UsernameRules:
    domains = tuple(d.strip().lower() for d in options.get("domains", "").split(",") if d.strip())
    return UsernameRules(
        localDomains=domains,
        caseSensitive=options.get("case", "lower") == "sensitive",
        delimiters=options.get("delimiter", "+"),
    )


_COMMON = {"domains", "case", "delimiter"}



def _unixSource(options: dict, rules, shadow: str) -> UnixSource:
    """
    The system-user source the unix and PAM factories share.
    """
    return UnixSource(
        rules,
        Path(options.get("passwd", "/etc/passwd")),
        Path(shadow),
        int(options.get("first_uid", 1000)),
        int(options.get("last_uid", 59999)),
    )

@implementer(ICheckerFactory, IPlugin)
class UnixCheckerFactory:
    authType = "maillab-unix"
    authHelp = (
        "System users from passwd/shadow files, verified with libcrypt "
        "(yescrypt, sha512-crypt, bcrypt, md5-crypt); works on Python 3.13+."
    )
    argStringFormat = "passwd=/etc/passwd:shadow=/etc/shadow:first_uid=1000:last_uid=59999"
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> UnixChecker:
        options = _options(argstring, _COMMON | {"passwd", "shadow", "first_uid", "last_uid"})
        rules = _rules(options)
        return UnixChecker(rules, _unixSource(options, rules, options.get("shadow", "/etc/shadow")))


@implementer(ICheckerFactory, IPlugin)
class PAMCheckerFactory:
    authType = "maillab-pam"
    authHelp = "System users through PAM (needs python-pam)."
    argStringFormat = "service=maillab:passwd=/etc/passwd:first_uid=1000:last_uid=59999"
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> PAMChecker:
        options = _options(argstring, _COMMON | {"service", "passwd", "first_uid", "last_uid"})
        rules = _rules(options)
        source = _unixSource(options, rules, "/etc/shadow")
        return PAMChecker(rules, source, options.get("service", "maillab"), PAMChecker.loadPAM())


@implementer(ICheckerFactory, IPlugin)
class PasswdFileCheckerFactory:
    authType = "passwd-file"
    authHelp = (
        "Virtual users from a Dovecot passwd-file ({SHA512-CRYPT}, {BLF-CRYPT}, "
        "{ARGON2ID}, {CRYPT}, {PLAIN})."
    )
    argStringFormat = "/path/to/passwd-file[:domains=example.org]"
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> PasswdFileChecker:
        path, _, rest = argstring.partition(":")
        if not path:
            raise ValueError("give the passwd-file path: passwd-file:/etc/dovecot/users")
        options = _options(rest, _COMMON)
        rules = _rules(options)
        return PasswdFileChecker(rules, PasswdFileSource(rules, Path(path)))


unixCheckerFactory = UnixCheckerFactory()
pamCheckerFactory = PAMCheckerFactory()
passwdFileCheckerFactory = PasswdFileCheckerFactory()
