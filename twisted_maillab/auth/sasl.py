"""
SASL pieces shared by SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE.

  - L{PlainCredentials}: RFC 4616 PLAIN, including its authzid rule.
  - L{LoginCredentials}: the LOGIN mechanism (draft-murchison-sasl-login),
    with the C{Username:}/C{Password:} challenges clients expect.
  - L{plaintextAllowed}: plaintext mechanisms (and POP3 USER/PASS, IMAP
    LOGIN) only over TLS or from loopback (RFC 3501 6.2.3, RFC 2595 2.2,
    RFC 4954 4).

Both credential classes provide L{IUsernamePassword} (for the checkers) and
Twisted's L{IChallengeResponse} (for C{ESMTP.challengers} and
C{IMAP4Server.challengers}).  Twisted's protocols call C{setResponse}
without catching errors (ESMTP would drop the connection), so a malformed
response never raises there: it marks the credentials L{malformed} and
the login fails like a wrong password (and is throttled and logged).
"""

from __future__ import annotations


from twisted.cred.credentials import IUsernamePassword
from twisted.internet.interfaces import ISSLTransport
from twisted.mail.interfaces import IChallengeResponse
from zope.interface import implementer
from twisted_maillab.addresses import clientAddress

__all__ = [
    "SASLError",
    "parsePlain",
    "PlainCredentials",
    "LoginCredentials",
    "plaintextAllowed",
    "isLoopback",
    "mechanisms",
    "challengers",
]

# RFC 4616 2: "The authorization identity, authentication identity and
# password each up to 255 octets" is the SHOULD-support minimum; we accept
# exactly that much, which also bounds what reaches the checkers.
MAX_FIELD = 255


class SASLError(ValueError):
    """
    A malformed SASL response; the message is the reason.
    """


def parsePlain(response: bytes) -> tuple[str, str, str]:
    """
    Split a PLAIN response C{[authzid] NUL authcid NUL passwd}.

    @return: C{(authzid, authcid, password)}, C{authzid} empty when absent.
    @raise SASLError: not exactly two NULs, an empty authcid or password,
        a field over 255 octets, or text that is not UTF-8 (RFC 4616 2).
    """
    parts = bytes(response).split(b"\0")
    if len(parts) != 3:
        raise SASLError("PLAIN needs exactly authzid NUL authcid NUL password")
    if any(len(part) > MAX_FIELD for part in parts):
        raise SASLError("a PLAIN field is longer than 255 octets")
    authzid, authcid, password = parts
    if not authcid or not password:
        raise SASLError("empty PLAIN authentication identity or password")
    try:
        return authzid.decode("utf-8"), authcid.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError("PLAIN fields must be UTF-8") from None


@implementer(IUsernamePassword, IChallengeResponse)
class PlainCredentials:
    """
    RFC 4616 PLAIN.  A non-empty authzid is kept in L{authzid}; the
    checker chain refuses it unless it names the authenticated account
    itself (this server does no proxy authorization).

    @ivar malformed: the reason the response was unusable, or L{None}.
    """

    def __init__(self, response: bytes | None = None):
        self.username = b""
        self.password = b""
        self.authzid = ""
        self.malformed: str | None = None
        self._answered = False
        if response is not None:
            self.setResponse(response)

    def getChallenge(self) -> bytes:
        # RFC 4616 2: the server sends an empty challenge.
        return b""

    def setResponse(self, response: bytes) -> None:
        self._answered = True
        try:
            authzid, authcid, password = parsePlain(response)
        except SASLError as e:
            self.malformed = str(e)
            # An impossible username: fails in the checker, counted and
            # logged like any failure.
            self.username = b"\0malformed"
            self.password = b""
            return
        self.authzid = authzid
        self.username = authcid.encode("utf-8")
        self.password = password.encode("utf-8")

    def moreChallenges(self) -> bool:
        return not self._answered

    def checkPassword(self, password) -> bool:
        return False


@implementer(IUsernamePassword, IChallengeResponse)
class LoginCredentials:
    """
    The LOGIN mechanism: the server asks C{Username:} then C{Password:}
    (the strings Outlook, Thunderbird and swaks expect; Twisted sends
    C{User Name\\0}).  An initial response (SMTP C{AUTH LOGIN <b64>}) is
    the username.
    """

    challenges = (b"Username:", b"Password:")

    def __init__(self, initialResponse: bytes | None = None):
        self.username = b""
        self.password = b""
        self.malformed: str | None = None
        self._gotUsername = False
        self._done = False
        if initialResponse is not None:
            self.setResponse(initialResponse)

    def getChallenge(self) -> bytes:
        return self.challenges[1 if self._gotUsername else 0]

    def setResponse(self, response: bytes) -> None:
        response = bytes(response)
        if len(response) > MAX_FIELD:
            self.malformed = "LOGIN field longer than 255 octets"
            response = b"\0malformed"
        if not self._gotUsername:
            self.username = response
            self._gotUsername = True
        else:
            self.password = response
            self._done = True

    def moreChallenges(self) -> bool:
        return not self._done

    def checkPassword(self, password) -> bool:
        return False


def isLoopback(host: str) -> bool:
    """
    127.0.0.0/8, ::1 and their IPv4-mapped forms.
    """
    address = clientAddress(host)
    return address is not None and address.is_loopback


def plaintextAllowed(peer, secure: bool | None = None, onLoopback: bool = True) -> bool:
    """
    May a plaintext password (PLAIN, LOGIN, USER/PASS, IMAP LOGIN) be
    offered on this connection?  The one rule every protocol applies both
    where it advertises (EHLO, CAPA, CAPABILITY) and where it accepts, so
    nothing is advertised that would be refused.

    @param peer: the transport, its peer L{IAddress}, or a host string.
    @param secure: whether TLS is active; when L{None} and C{peer} is a
        transport, a transport providing L{ISSLTransport} counts as TLS.
    @param onLoopback: the listener's C{plaintext_on_loopback}: whether a
        loopback or UNIX-socket peer counts as private.
    @return: C{True} over TLS, or (with C{onLoopback}) from loopback or on
        a UNIX socket.
    """
    if secure is None:
        secure = ISSLTransport.providedBy(peer)
    if secure:
        return True
    if not onLoopback:
        return False
    if hasattr(peer, "getPeer"):
        peer = peer.getPeer()
    if isinstance(peer, bytes):
        peer = peer.decode("ascii", "replace")
    if isinstance(peer, str):
        return isLoopback(peer)
    host = getattr(peer, "host", None)
    if host is None:
        # UNIXAddress: a local socket never crosses a network.
        return hasattr(peer, "name")
    return isLoopback(host)


def mechanisms(peer, secure: bool | None = None) -> list[bytes]:
    """
    The SASL mechanisms to advertise: C{[b"PLAIN", b"LOGIN"]} when
    L{plaintextAllowed}, else none.
    """
    return [b"PLAIN", b"LOGIN"] if plaintextAllowed(peer, secure) else []


def challengers() -> dict[bytes, type]:
    """
    C{{mechanism: credentials factory}} in the shape Twisted's
    C{ESMTP.challengers} and C{IMAP4Server.challengers} take.
    """
    return {b"PLAIN": PlainCredentials, b"LOGIN": LoginCredentials}
