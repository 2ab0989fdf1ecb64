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

import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from zope.interface import implementer

from twisted_maillab.auth.hashing import (
    CryptBackend,
    UnknownScheme,
    cryptBackend,
    dummyHash,
    dummyLike,
    hashCost,
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
    @ivar hashed: whether a password hash was computed to reach this
        outcome; when not (unknown name, locked account), the caller
        verifies a dummy hash so the failure costs the same time.
    """

    outcome: str
    reason: str = ""
    found: Found | None = None
    hashed: bool = True


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
    Shared C{requestAvatarId} over a blocking L{verify}, and the dummy
    hash that makes every failure cost one hash.

    A failed login must take the same time whatever the reason, or the
    reply time tells an attacker which names exist (110 ms for an argon2
    check against 2 ms for a name lookup).  So every failure that reached
    no real hash verifies a dummy hash of the scheme this checker's users
    have (L{makeDummy}).  The dummy is built once, in the check pool (the
    portal builds it when the reactor starts; otherwise the first check
    that needs it does).
    """

    credentialInterfaces = (IUsernamePassword,)
    name = ""

    def __init__(self, rules: UsernameRules, runner: Callable | None = None):
        self.rules = rules
        self.runner = runner or _threadRunner
        self._dummy: str | None = None
        self._dummyLock = threading.Lock()

    def verify(self, key: tuple[str, str | None], password: str) -> Verdict:
        raise NotImplementedError

    def makeDummy(self) -> str:
        """
        Blocking: a C{{SCHEME}hash} whose verification costs what this
        checker's check of a real account costs.
        """
        return dummyHash(self.backend)

    def dummy(self) -> str:
        """
        Blocking: the dummy hash, built on first use (threads asking
        meanwhile wait for that one).
        """
        with self._dummyLock:
            if self._dummy is None:
                self._dummy = self.makeDummy()
            return self._dummy

    def verifyDummy(self, password: str) -> None:
        """
        Blocking: spend the time of one real check, for a failure.
        """
        try:
            verifyScheme(self.backend, password, self.dummy())
        except UnknownScheme:
            pass

    def check(self, key, password: str) -> Verdict:
        """
        Blocking: L{verify}, plus the dummy hash for a failure that
        computed no hash.
        """
        verdict = self.verify(key, password)
        if verdict.outcome != OK and not verdict.hashed:
            self.verifyDummy(password)
            verdict = replace(verdict, hashed=True)
        return verdict

    def _refuseInvalid(self, password: str | None, reason: str):
        # An invalid name cannot exist, but its failure still costs a hash:
        # every failure takes the same time.
        def refuse():
            self.verifyDummy(password or "")
            raise LoginRefused(reason)

        return self.runner(refuse)

    def requestAvatarId(self, credentials):
        username = decodeCredential(credentials.username)
        password = decodeCredential(credentials.password)
        key = self.rules.loginKey(username) if username is not None else None
        if key is None or password is None:
            return self._refuseInvalid(password, "invalid user name")

        def check():
            verdict = self.check(key, password)
            if verdict.outcome != OK:
                raise LoginRefused(verdict.reason or verdict.outcome)
            return verdict.found.avatarId

        return self.runner(check)


def _today(clock: Callable[[], float]) -> int:
    return int(clock() // 86400)


def shadowDummy(source: UnixSource, backend: CryptBackend) -> str:
    """
    Blocking: the dummy hash for system users: the method and cost most
    common among the hashes of the users in the uid range (yescrypt
    C{$y$j9T}, sha512-crypt...), made by libcrypt from one of them, so an
    unknown name costs what a wrong password costs, whichever the system
    writes.  Without a readable hash: libcrypt's yescrypt, Debian's
    default (C{ENCRYPT_METHOD YESCRYPT} in login.defs).
    """
    try:
        shadow = source.shadow.get()
        records = list(source.passwd.get().values())
    except OSError:
        shadow, records = {}, []
    costs: Counter = Counter()
    examples: dict[str, str] = {}
    for record in records:
        if not source.firstUid <= record.uid <= source.lastUid:
            continue
        stored = record.password
        if stored == "x":
            entry = shadow.get(record.name)
            stored = entry.password if entry is not None else ""
        # A locked hash (!$6$...) still shows the method the system uses.
        stored = stored.lstrip("!")
        if stored.startswith("$"):
            cost = hashCost(stored)
            costs[cost] += 1
            examples.setdefault(cost, stored)
    for cost, _ in costs.most_common():
        dummy = dummyLike(backend, examples[cost])
        if dummy is not None:
            return "{CRYPT}" + dummy
    return dummyHash(backend, "CRYPT")


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

    def makeDummy(self) -> str:
        return shadowDummy(self.source, self.backend)

    def verify(self, key, password):
        found = self.source.find(key)
        if found is None:
            return Verdict(UNKNOWN, "unknown user", hashed=False)
        stored = found.password
        shadow = None
        if stored == "x":
            shadow = self.source.shadow.get().get(self._systemName(key))
            if shadow is None:
                return Verdict(REFUSED, "no shadow entry", found, hashed=False)
            stored = shadow.password
        if not stored:
            return Verdict(REFUSED, "empty password", found, hashed=False)
        if stored[0] in "!*":
            return Verdict(REFUSED, "locked account", found, hashed=False)
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
    @param backend: the L{CryptBackend} of the dummy hash (L{shadowDummy}).

    A name outside the passwd file or the uid range never reaches PAM under
    its own name.  Its failure must still cost what PAM spends on a wrong
    password, and that includes PAM's failure delay (pam_unix asks libpam
    for about 2 s unless C{nodelay}), so L{verifyDummy} verifies the dummy
    hash and then runs the PAM stack for L{UNKNOWN_NAME}, a name no account
    can have; its result is ignored.
    """

    name = "pam"

    #: The name PAM checks for a failure that reached no account; passwd(5)
    #: fields are separated by ":", so no system user is called this.
    UNKNOWN_NAME = "maillab:no-such-user"

    def __init__(
        self,
        rules: UsernameRules,
        source: UnixSource,
        service: str = "maillab",
        pamModule=None,
        runner: Callable | None = None,
        backend: CryptBackend | None = None,
    ):
        super().__init__(rules, runner)
        self.source = source
        self.service = service
        self._pam = pamModule
        self.backend = backend or cryptBackend()

    @staticmethod
    def loadPAM():
        try:
            import pam
        except ImportError:
            raise ImportError(
                "the pam checker needs python-pam: pip install 'twisted-maillab[pam]'"
            ) from None
        return pam

    def makeDummy(self) -> str:
        return shadowDummy(self.source, self.backend)

    def verifyDummy(self, password: str) -> None:
        super().verifyDummy(password)
        self._authenticate(self.UNKNOWN_NAME, password)

    def _authenticate(self, name: str, password: str):
        """
        Blocking: run the PAM stack; return the authenticator (its C{code}
        and C{reason} say why it failed) and whether it succeeded.
        """
        if self._pam is None:
            self._pam = self.loadPAM()
        authenticator = self._pam.PamAuthenticator()
        # resetcreds=False: a mail login establishes no credentials (Dovecot
        # calls pam_setcred only with session=yes).
        ok = authenticator.authenticate(name, password, service=self.service, resetcreds=False)
        return authenticator, ok

    def verify(self, key, password):
        record = self.source.record(key)
        if record is None:
            return Verdict(UNKNOWN, "unknown user", hashed=False)
        found = self.source.find(key)
        authenticator, ok = self._authenticate(record.name, password)
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

    @param scheme: C{[auth] password_scheme}, the scheme C{maillab passwd}
        writes the file's hashes in: the dummy hash's scheme.
    """

    name = "passwd-file"

    def __init__(
        self,
        rules: UsernameRules,
        source: PasswdFileSource,
        backend: CryptBackend | None = None,
        runner: Callable | None = None,
        scheme: str = "ARGON2ID",
    ):
        super().__init__(rules, runner)
        self.source = source
        self.backend = backend or cryptBackend()
        self.scheme = scheme

    def makeDummy(self) -> str:
        return dummyHash(self.backend, self.scheme)

    def verify(self, key, password):
        found = self.source.find(key)
        if found is None:
            return Verdict(UNKNOWN, "unknown user", hashed=False)
        if not found.password or found.password[0] in "!*":
            return Verdict(REFUSED, "locked account", found, hashed=False)
        try:
            ok = verifyScheme(self.backend, password, found.password)
        except UnknownScheme as e:
            return Verdict(REFUSED, str(e), found, hashed=False)
        return Verdict(OK if ok else BAD, "" if ok else "bad password", found)


@implementer(ICredentialsChecker)
class CheckerChain(_Checker):
    """
    The configured checkers tried in order (C{[auth] checkers}); the first
    that accepts the password wins.  A user known to no checker costs the
    first checker's dummy hash, a locked account the dummy of the checker
    that knows it, so that every failure costs the same time as "bad
    password" (no user enumeration by timing).

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

    def makeDummies(self) -> None:
        """
        Blocking: build every checker's dummy hash now (in the check pool,
        once the reactor runs), so that even the first failed login costs
        one hash and not two.
        """
        for checker in self.checkers:
            checker.dummy()

    def verifyDummy(self, password: str) -> None:
        if self.checkers:
            self.checkers[0].verifyDummy(password)
        else:
            super().verifyDummy(password)

    def verify(self, key, password):
        known = None
        for checker in self.checkers:
            verdict = checker.verify(key, password)
            if verdict.outcome == OK:
                return verdict
            if verdict.outcome != UNKNOWN and known is None:
                known, knownBy = verdict, checker
        if known is not None:
            if not known.hashed:
                knownBy.verifyDummy(password)
            return replace(known, hashed=True)
        self.verifyDummy(password)
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
            return self._refuseInvalid(password, "invalid user name")
        authzid = getattr(credentials, "authzid", None) or None
        if authzid is not None:
            authzid = decodeCredential(authzid)
            authzKey = self.rules.loginKey(authzid) if authzid else None
            if authzKey is None:
                return self._refuseInvalid(password, "invalid authorization identity")

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
