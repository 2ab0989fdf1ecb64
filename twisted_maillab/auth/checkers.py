"""
The password checkers: C{unix} (passwd + shadow files and libcrypt), C{pam}
(python-pam) and C{passwd-file} (Dovecot's format), and the chain that
tries the configured ones in order.

Every checker is an L{ICredentialsChecker} for L{IUsernamePassword} usable
on its own (other Twisted applications get them through the strcred
plugins in C{twisted/plugins/maillab_cred.py}).  The work itself -- file
reads, hashing, PAM -- is the blocking L{verify} method, which the portal
runs in its bounded thread pool; C{requestAvatarId} runs it through the
checker's C{runner} (C{deferToThread} unless one is given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from zope.interface import implementer

from twisted_maillab.auth.hashing import (
    CryptBackend,
    UnknownScheme,
    cryptBackend,
    dummyHash,
    verifyCrypt,
    verifyScheme,
)
from twisted_maillab.auth.names import UsernameRules
from twisted_maillab.auth.sources import Found, PasswdFileSource, UnixSource

__all__ = [
    "Verdict",
    "UnixChecker",
    "PAMChecker",
    "PasswdFileChecker",
    "CheckerChain",
    "LoginRefused",
    "decodeCredential",
]

OK = "ok"
UNKNOWN = "unknown"
BAD = "bad"
REFUSED = "refused"


class LoginRefused(UnauthorizedLogin):
    """
    An L{UnauthorizedLogin} that says why, for the log line (never for the
    client: every failure looks the same on the wire).

    @ivar reason: short text: C{bad password}, C{unknown user}, C{locked
        account}, C{expired account}, C{address locked out}...
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verdict:
    """
    The outcome of one blocking check.

    @ivar outcome: C{ok}, C{unknown} (this checker has no such user),
        C{bad} (wrong password) or C{refused} (right or wrong, the account
        may not log in: locked, expired, unsupported scheme).
    @ivar found: the account data when the user is known.
    """

    outcome: str
    reason: str = ""
    found: Found | None = None


def decodeCredential(value) -> str | None:
    """
    A username or password from the wire as text: bytes must be UTF-8
    (RFC 4616 2), anything else is refused as L{None}.
    """
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        return None


def _threadRunner(f, *args):
    from twisted.internet import threads

    return threads.deferToThread(f, *args)


class _Checker:
    """
    Shared C{requestAvatarId} over a blocking L{verify}.
    """

    credentialInterfaces = (IUsernamePassword,)
    name = ""

    def __init__(self, rules: UsernameRules, runner: Callable | None = None):
        self.rules = rules
        self.runner = runner or _threadRunner

    def verify(self, key: tuple[str, str | None], password: str) -> Verdict:
        raise NotImplementedError

    def requestAvatarId(self, credentials):
        username = decodeCredential(credentials.username)
        password = decodeCredential(credentials.password)
        key = self.rules.loginKey(username) if username is not None else None
        if key is None or password is None:
            return defer.fail(LoginRefused("invalid user name"))

        def check():
            verdict = self.verify(key, password)
            if verdict.outcome != OK:
                raise LoginRefused(verdict.reason or verdict.outcome)
            return verdict.found.avatarId

        return self.runner(check)


def _today(clock: Callable[[], float]) -> int:
    return int(clock() // 86400)


def shadowVerdict(record, today: int) -> str | None:
    """
    Why a shadow(5) entry may not log in today, or L{None}: the rules
    pam_unix applies (passverify.c C{check_shadow_expiry}).
    """
    if record.expire is not None and record.expire >= 0 and today >= record.expire:
        return "expired account"
    if record.lastChange == 0:
        # shadow(5): 0 = the user must change the password at next login,
        # which a mail client cannot do.
        return "password change required"
    if (
        record.lastChange is not None
        and record.maximum is not None
        and record.maximum >= 0
    ):
        if (
            record.inactive is not None
            and record.inactive >= 0
            and today > record.lastChange + record.maximum + record.inactive
        ):
            return "expired password (inactive)"
        if today > record.lastChange + record.maximum:
            return "expired password"
    return None


@implementer(ICredentialsChecker)
class UnixChecker(_Checker):
    """
    System users: the passwd file gives the account (within the uid
    range), the shadow file (or the passwd field when it is not C{x}) gives
    the crypt(3) hash, verified with the system's libcrypt.

    Refused: locked hashes (C{!...}, C{*...}), empty passwords, and the
    shadow expiry rules of L{shadowVerdict}.  Reading C{/etc/shadow} needs
    root or the C{shadow} group; there is no C{seteuid} dance (Twisted's
    C{cred_unix} does one, and it fails after a privilege drop).

    @param clock: C{() -> seconds since the epoch}, for the expiry fields.
    """

    name = "unix"

    def __init__(
        self,
        rules: UsernameRules,
        source: UnixSource,
        backend: CryptBackend | None = None,
        clock: Callable[[], float] = time.time,
        runner: Callable | None = None,
    ):
        super().__init__(rules, runner)
        self.source = source
        self.backend = backend or cryptBackend()
        self.clock = clock

    def verify(self, key, password):
        found = self.source.find(key)
        if found is None:
            return Verdict(UNKNOWN, "unknown user")
        stored = found.password
        shadow = None
        if stored == "x":
            shadow = self.source.shadow.get().get(self._systemName(key))
            if shadow is None:
                return Verdict(REFUSED, "no shadow entry", found)
            stored = shadow.password
        if not stored:
            return Verdict(REFUSED, "empty password", found)
        if stored[0] in "!*":
            return Verdict(REFUSED, "locked account", found)
        if not verifyCrypt(self.backend, password, stored):
            return Verdict(BAD, "bad password", found)
        if shadow is not None:
            why = shadowVerdict(shadow, _today(self.clock))
            if why is not None:
                return Verdict(REFUSED, why, found)
        return Verdict(OK, "", found)

    def _systemName(self, key) -> str:
        record = self.source.record(key)
        return record.name if record is not None else key[0]


@implementer(ICredentialsChecker)
class PAMChecker(_Checker):
    """
    System users through PAM (python-pam), as Dovecot's C{passdb pam}: the
    account must exist in the passwd file within the uid range (so PAM is
    never asked about root or daemons), then C{pam_authenticate} and
    C{pam_acct_mgmt} run under the configured service name.

    @param pamModule: the C{pam} module (injectable for tests); imported
        on first use when L{None}.
    """

    name = "pam"

    def __init__(
        self,
        rules: UsernameRules,
        source: UnixSource,
        service: str = "maillab",
        pamModule=None,
        runner: Callable | None = None,
    ):
        super().__init__(rules, runner)
        self.source = source
        self.service = service
        self._pam = pamModule

    @staticmethod
    def loadPAM():
        try:
            import pam
        except ImportError:
            raise ImportError(
                "the pam checker needs python-pam: pip install 'twisted-maillab[pam]'"
            ) from None
        return pam

    def verify(self, key, password):
        record = self.source.record(key)
        if record is None:
            return Verdict(UNKNOWN, "unknown user")
        found = self.source.find(key)
        if self._pam is None:
            self._pam = self.loadPAM()
        authenticator = self._pam.PamAuthenticator()
        # resetcreds=False: a mail login establishes no credentials (Dovecot
        # calls pam_setcred only with session=yes).
        ok = authenticator.authenticate(
            record.name, password, service=self.service, resetcreds=False
        )
        if ok:
            return Verdict(OK, "", found)
        code = getattr(authenticator, "code", None)
        reason = getattr(authenticator, "reason", "") or "pam failure"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if code == getattr(self._pam, "PAM_USER_UNKNOWN", object()):
            return Verdict(UNKNOWN, "unknown user (pam)")
        if code in (
            getattr(self._pam, "PAM_ACCT_EXPIRED", object()),
            getattr(self._pam, "PAM_NEW_AUTHTOK_REQD", object()),
            getattr(self._pam, "PAM_PERM_DENIED", object()),
        ):
            return Verdict(REFUSED, f"pam: {reason}", found)
        return Verdict(BAD, f"pam: {reason}", found)


@implementer(ICredentialsChecker)
class PasswdFileChecker(_Checker):
    """
    Virtual users from a Dovecot passwd-file: C{{SHA512-CRYPT}},
    C{{SHA256-CRYPT}}, C{{MD5-CRYPT}}, C{{BLF-CRYPT}}, C{{CRYPT}} (any
    libcrypt method, yescrypt included), C{{ARGON2ID}}/C{{ARGON2I}}
    (argon2-cffi) and C{{PLAIN}} (warned about when the file is read); a
    password without a scheme is a crypt(3) string.
    """

    name = "passwd-file"

    def __init__(
        self,
        rules: UsernameRules,
        source: PasswdFileSource,
        backend: CryptBackend | None = None,
        runner: Callable | None = None,
    ):
        super().__init__(rules, runner)
        self.source = source
        self.backend = backend or cryptBackend()

    def verify(self, key, password):
        found = self.source.find(key)
        if found is None:
            return Verdict(UNKNOWN, "unknown user")
        if not found.password or found.password[0] in "!*":
            return Verdict(REFUSED, "locked account", found)
        try:
            ok = verifyScheme(self.backend, password, found.password)
        except UnknownScheme as e:
            return Verdict(REFUSED, str(e), found)
        return Verdict(OK if ok else BAD, "" if ok else "bad password", found)


@implementer(ICredentialsChecker)
class CheckerChain(_Checker):
    """
    The configured checkers tried in order (C{[auth] checkers}); the first
    that accepts the password wins.  A user known to no checker is checked
    against a dummy hash so that "unknown user" costs the same time as
    "bad password" (no user enumeration by timing).

    Also enforces RFC 4616 authorization identities: credentials with a
    non-empty C{authzid} that names another account are refused (this
    server does not let one user act as another).
    """

    name = "chain"

    def __init__(
        self,
        rules: UsernameRules,
        checkers: list,
        backend: CryptBackend | None = None,
        runner: Callable | None = None,
    ):
        super().__init__(rules, runner)
        self.checkers = list(checkers)
        self.backend = backend or cryptBackend()
        self._dummy: str | None = None

    def verify(self, key, password):
        known = None
        for checker in self.checkers:
            verdict = checker.verify(key, password)
            if verdict.outcome == OK:
                return verdict
            if verdict.outcome != UNKNOWN and known is None:
                known = verdict
        if known is not None:
            return known
        if self._dummy is None:
            self._dummy = dummyHash(self.backend)
        verifyCrypt(self.backend, password, self._dummy[len("{SHA512-CRYPT}"):])
        return Verdict(UNKNOWN, "unknown user")

    def find(self, key) -> Found | None:
        """
        The account a key names, from the first checker's source that knows it.
        """
        for checker in self.checkers:
            found = checker.source.find(key)
            if found is not None:
                return found
        return None

    def requestAvatarId(self, credentials):
        username = decodeCredential(credentials.username)
        password = decodeCredential(credentials.password)
        key = self.rules.loginKey(username) if username is not None else None
        if key is None or password is None:
            return defer.fail(LoginRefused("invalid user name"))
        authzid = getattr(credentials, "authzid", None) or None
        if authzid is not None:
            authzid = decodeCredential(authzid)
            authzKey = self.rules.loginKey(authzid) if authzid else None
            if authzKey is None:
                return defer.fail(LoginRefused("invalid authorization identity"))

        def check():
            verdict = self.verify(key, password)
            if verdict.outcome != OK:
                raise LoginRefused(verdict.reason or verdict.outcome)
            if authzid is not None:
                # RFC 4616 2: the authzid may name only the authenticated
                # account itself (no proxy authorization here).
                other = self.find(authzKey)
                if other is None or other.avatarId != verdict.found.avatarId:
                    raise LoginRefused("authorization identity differs")
            return verdict.found.avatarId

        return self.runner(check)
