"""
Authentication for every protocol: one L{twisted.cred} portal with the
C{unix}, C{pam} and C{passwd-file} checkers, brute-force throttling, the
realm that hands out per-protocol avatars, the account directory, SASL
helpers, and the dev-config demo accounts.

Entry points:

  - L{makePortal}C{(config, reactor)} -> L{MailPortal} (provides
    L{IMailPortal}); C{portal.realm} (L{MailRealm}), C{portal.directory}
    (L{AccountDirectory}), C{portal.throttle}.
  - L{ensureDemoAccounts}C{(config)} -> C{[(address, password)]}.
  - L{twisted_maillab.auth.sasl}: C{PlainCredentials}, C{LoginCredentials},
    C{plaintextAllowed}.
"""

from __future__ import annotations

from twisted.logger import Logger

from twisted_maillab.auth.checkers import (
    CheckerChain,
    LoginRefused,
    PAMChecker,
    PasswdFileChecker,
    UnixChecker,
)
from twisted_maillab.auth.demo import ensureDemoAccounts
from twisted_maillab.auth.directory import AccountDirectory
from twisted_maillab.auth.hashing import cryptBackend
from twisted_maillab.auth.names import UsernameRules, parseMailLocation
from twisted_maillab.auth.pool import AuthenticationUnavailable, CheckPool
from twisted_maillab.auth.portal import ConnectionPortal, MailPortal
from twisted_maillab.auth.realm import MailRealm
from twisted_maillab.auth.sources import PasswdFileSource, UnixSource
from twisted_maillab.auth.throttle import Throttle, ThrottlePolicy

_log = Logger()

__all__ = [
    "makePortal",
    "makeDirectory",
    "ensureDemoAccounts",
    "usernameRules",
    "MailPortal",
    "ConnectionPortal",
    "MailRealm",
    "AccountDirectory",
    "AuthenticationUnavailable",
    "LoginRefused",
]


def usernameRules(config) -> UsernameRules:
    """
    The L{UsernameRules} of a config: local domains are C{[server] domain}
    then C{[auth] local_domains}.
    """
    auth = config.auth
    return UsernameRules(
        localDomains=tuple(config.mailDomains()),
        caseSensitive=auth.username_case == "sensitive",
        delimiters=auth.recipient_delimiter,
    )


def _build(config, runner, clock, pamModule=None, backend=None):
    auth = config.auth
    rules = usernameRules(config)
    try:
        location = parseMailLocation(config.store.mail_location)
    except ValueError as e:
        raise config.error("store", "mail_location", str(e)) from None
    if backend is None:
        try:
            backend = cryptBackend()
        except ImportError as e:
            raise config.error("auth", "checkers", str(e)) from None
    unix = None
    if "unix" in auth.checkers or "pam" in auth.checkers:
        unix = UnixSource(
            rules, auth.unix_passwd, auth.unix_shadow, auth.first_valid_uid, auth.last_valid_uid
        )
    checkers = []
    for name in auth.checkers:
        if name == "unix":
            checkers.append(UnixChecker(rules, unix, backend, clock=clock.seconds, runner=runner))
        elif name == "pam":
            if pamModule is None:
                try:
                    pamModule = PAMChecker.loadPAM()
                except ImportError as e:
                    raise config.error("auth", "checkers", str(e)) from None
            checkers.append(
                PAMChecker(rules, unix, auth.pam_service, pamModule, runner=runner, backend=backend)
            )
        elif name == "passwd-file":
            source = PasswdFileSource(rules, auth.passwd_file)
            checkers.append(
                PasswdFileChecker(rules, source, backend, runner=runner, scheme=auth.password_scheme)
            )
    sources = []
    for checker in checkers:
        if checker.source not in sources:
            sources.append(checker.source)
    directory = AccountDirectory(
        rules, sources, location, config.server.state_directory / "users", runner
    )
    return rules, backend, checkers, directory


def makeDirectory(config, reactor, runner=None) -> AccountDirectory:
    """
    Only the account directory (for tools that resolve addresses without
    logging anyone in).
    """
    if runner is None:
        runner = CheckPool(reactor, config.auth.check_threads, config.auth.check_queue)
    return _build(config, runner, reactor)[3]


def makePortal(
    config, reactor, runner=None, pamModule=None, backend=None, prepareAccount=None
) -> MailPortal:
    """
    Build the portal SMTP AUTH, POP3 and IMAP share.

    @param config: the whole L{twisted_maillab.config.Config}.
    @param reactor: provides C{seconds}/C{callLater} (throttling delays,
        expiry dates) and threads (the check pool); a
        L{twisted.internet.task.Clock} works when C{runner} is given.
    @param runner: C{runner(f, *args) -> Deferred} that runs blocking
        checks; default a L{CheckPool} of C{[auth] check_threads} threads.
        Tests pass L{twisted_maillab.auth.pool.runSynchronously}.
    @param pamModule: a stand-in for python-pam's C{pam} module (tests).
    @param backend: a L{twisted_maillab.auth.hashing.CryptBackend}.
    @param prepareAccount: C{prepareAccount(account) -> Deferred}, run at
        each successful login before the avatar is built (the store's
        C{firstLogin}: see L{MailRealm}).
    @return: a L{MailPortal}: call C{forConnection(peer, protocol)} per
        connection (see L{twisted_maillab.interfaces.IMailPortal}); its
        C{realm} takes the protocols' avatar factories and its
        C{directory} resolves recipients.
    @raise twisted_maillab.config.ConfigError: a bad C{mail_location}, or
        a checker whose library is missing.
    """
    auth = config.auth
    pool = None
    if runner is None:
        pool = runner = CheckPool(reactor, auth.check_threads, auth.check_queue)
    rules, backend, checkers, directory = _build(config, runner, reactor, pamModule, backend)
    chain = CheckerChain(rules, checkers, backend, runner=runner)
    realm = MailRealm(directory, prepareAccount)
    throttle = Throttle(
        ThrottlePolicy(
            window=auth.throttle_window,
            freeFailures=auth.throttle_free_failures,
            delay=auth.throttle_delay,
            maxDelay=auth.throttle_max_delay,
            lockoutFailures=auth.lockout_failures,
            lockoutDuration=auth.lockout_duration,
            userFreeFailures=auth.user_free_failures,
            ipv6Prefix=auth.throttle_ipv6_prefix,
            exempt=tuple(str(n) for n in auth.throttle_exempt),
        ),
        reactor,
    )
    portal = MailPortal(
        realm,
        [chain],
        directory=directory,
        throttle=throttle,
        clock=reactor,
        rules=rules,
        parallelChecks=auth.throttle_parallel_checks,
    )
    portal.pool = pool
    portal.chain = chain
    if pool is not None:
        # The dummy hashes (see CheckerChain.makeDummies) are made in the
        # pool once the reactor runs: not while twistd builds the service
        # tree, before it forks.
        reactor.callWhenRunning(_makeDummies, pool, chain)
    return portal


def _makeDummies(pool: CheckPool, chain: CheckerChain) -> None:
    pool(chain.makeDummies).addErrback(
        lambda f: _log.failure("cannot make the dummy password hashes", f)
    )
