"""
The one realm: an avatar ID -> the L{Account} -> the avatar for whichever
protocol interface the login asked for.
"""

from __future__ import annotations

from typing import Callable

from twisted.cred.checkers import ANONYMOUS
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer
from zope.interface.interface import InterfaceClass

from twisted_maillab.interfaces import IMailRealm

__all__ = ["MailRealm"]

log = Logger()


def _noLogout() -> None:
    pass


@implementer(IRealm, IMailRealm)
class MailRealm:
    """
    Hands out per-protocol avatars for one account.

    The protocols register their factories when their services are built
    (SMTP C{IMessageDelivery}, POP3 C{IMailbox}, IMAP C{IAccount}); this
    module knows none of them.  A factory is called with the L{Account}
    and returns the avatar or a L{Deferred} of it; if the avatar has a
    callable C{logout} attribute it is called when the session ends (the
    third element of the login result).

    @ivar directory: the L{IAccountDirectory} avatar IDs are resolved with.
    @ivar prepareAccount: L{None}, or C{prepareAccount(account) -> Deferred}
        run after each successful login before the avatar is built: the
        store's C{firstLogin}, which creates the Maildir and its
        special-use folders.  Its failure is logged and does not refuse the
        login (the session then reports the store's own error, if any).
    """

    def __init__(self, directory, prepareAccount: Callable | None = None):
        self.directory = directory
        self.prepareAccount = prepareAccount
        self._factories: dict = {}
        self._anonymous: dict = {}

    def registerAvatarFactory(self, interface: InterfaceClass, factory: Callable) -> None:
        """
        Serve logins asking for C{interface} with C{factory(account)}.

        @raise ValueError: a factory is already registered for it.
        """
        if interface in self._factories:
            raise ValueError(f"an avatar factory for {interface.__name__} is already registered")
        self._factories[interface] = factory

    def registerAnonymousFactory(self, interface: InterfaceClass, factory: Callable) -> None:
        """
        Serve anonymous logins (avatar ID L{ANONYMOUS}, e.g. SMTP's
        C{validateFrom} for a client that did not authenticate) asking for
        C{interface} with C{factory()}.
        """
        if interface in self._anonymous:
            raise ValueError(f"an anonymous factory for {interface.__name__} is already registered")
        self._anonymous[interface] = factory

    def requestAvatar(self, avatarId, mind, *interfaces):
        """
        @return: L{Deferred} of C{(interface, avatar, logout)} for the first
            of C{interfaces} with a factory.
        @raise NotImplementedError: no factory for any of C{interfaces}
            (Twisted's convention; the portal reports it as an error).
        """
        if avatarId is ANONYMOUS:
            for interface in interfaces:
                if interface in self._anonymous:
                    return defer.maybeDeferred(self._anonymous[interface]).addCallback(
                        self._result, interface
                    )
            return defer.fail(NotImplementedError("no anonymous avatar for " + _names(interfaces)))
        for interface in interfaces:
            if interface in self._factories:
                break
        else:
            return defer.fail(NotImplementedError("no avatar factory for " + _names(interfaces)))
        factory = self._factories[interface]
        if isinstance(avatarId, bytes):
            avatarId = avatarId.decode("utf-8")
        d = self.directory.lookup(avatarId)

        def prepare(account):
            if account is None:
                # The account vanished between the check and now.
                raise UnauthorizedLogin(f"no account for {avatarId!r}")
            if self.prepareAccount is None:
                return account
            prepared = defer.maybeDeferred(self.prepareAccount, account)

            def failed(failure):
                log.failure("cannot prepare the Maildir of {avatarId}", failure, avatarId=avatarId)

            prepared.addErrback(failed)
            return prepared.addCallback(lambda _: account)

        d.addCallback(prepare)
        d.addCallback(factory)
        d.addCallback(self._result, interface)
        return d

    @staticmethod
    def _result(avatar, interface):
        logout = getattr(avatar, "logout", None)
        return (interface, avatar, logout if callable(logout) else _noLogout)


def _names(interfaces) -> str:
    return ", ".join(getattr(i, "__name__", repr(i)) for i in interfaces) or "no interface"
