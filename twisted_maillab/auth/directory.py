"""
The account directory: names and addresses -> L{Account}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from twisted.internet import defer
from zope.interface import implementer

from twisted_maillab.account import Account
from twisted_maillab.auth.names import MailLocation, UsernameRules
from twisted_maillab.auth.sources import Found
from twisted_maillab.interfaces import IAccountDirectory

__all__ = ["AccountDirectory"]


@implementer(IAccountDirectory)
class AccountDirectory:
    """
    Resolves login names and recipient addresses to accounts, with the
    username rules of L{twisted_maillab.auth.names}, over the sources of
    the configured checkers (in C{[auth] checkers} order: the first source
    that knows a name wins).

    @ivar rules: the L{UsernameRules}.
    @ivar mailLocation: the parsed C{[store] mail_location}.
    @ivar usersDirectory: where virtual users without a home field live:
        C{<state_directory>/users/<domain>/<name>}.
    """

    def __init__(
        self,
        rules: UsernameRules,
        sources: list,
        mailLocation: MailLocation,
        usersDirectory: Path,
        runner: Callable,
    ):
        self.rules = rules
        self.sources = list(sources)
        self.mailLocation = mailLocation
        self.usersDirectory = Path(usersDirectory)
        self.runner = runner

    @property
    def localDomains(self) -> tuple[str, ...]:
        return self.rules.localDomains

    def isLocalDomain(self, domain: str) -> bool:
        return self.rules.isLocalDomain(domain)

    def lookup(self, name: str) -> defer.Deferred:
        """
        The account a login name or avatar ID names (C{edouard},
        C{Edouard@DomaineEL.rt}), or L{None}.  A name containing the
        recipient delimiter names no account.

        @return: L{Deferred} firing with an L{Account} or L{None}.
        """
        key = self.rules.loginKey(name)
        if key is None:
            return defer.succeed(None)
        return self.runner(self.lookupKeysSync, [key])

    def lookupRecipient(self, address: str, delimiters: str | None = None) -> defer.Deferred:
        """
        The account mail for C{address} is delivered to, or L{None}: the
        whole local part first, then (when C{delimiters} is not empty) the
        part before the first delimiter (C{edouard+lists@...} -> C{edouard}).

        @param delimiters: characters, as Postfix's C{recipient_delimiter};
            L{None} uses C{[auth] recipient_delimiter}.
        @return: L{Deferred} firing with an L{Account} or L{None}.
        """
        keys = self.rules.recipientKeys(address, delimiters)
        if not keys:
            return defer.succeed(None)
        return self.runner(self.lookupKeysSync, keys)

    def lookupKeysSync(self, keys) -> Account | None:
        """
        Blocking lookup (runs in the pool): the first key any source knows.
        """
        for key in keys:
            for source in self.sources:
                found = source.find(key)
                if found is not None:
                    return self.account(found)
        return None

    def account(self, found: Found) -> Account:
        """
        Make the L{Account} for a source's entry: default home, Maildir.
        """
        domain = found.domain or (self.rules.primaryDomain if self.rules.localDomains else None)
        home = found.home
        if home is None:
            home = self.usersDirectory / (domain or "_") / found.local
            # A virtual user without a home field lives in maillab's own
            # state directory: maillab creates it, as Dovecot creates a
            # missing home for virtual users (the store never creates a
            # home, which for system users is the administrator's job).
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        maildir = self.mailLocation.expand(found.avatarId, found.local, domain, home)
        # Account.name is the local part (Account.address adds the domain);
        # the avatar ID of a domain-bound entry is local@domain.
        return Account(
            name=found.local,
            domain=domain,
            home=home,
            uid=found.uid,
            gid=found.gid,
            maildir=maildir,
        )
