"""
In-memory fakes for the SMTP protocol tests: account directory, store
transaction, portal, TLS-capable StringTransport.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer
from twisted.internet.interfaces import ISSLTransport

from twisted_maillab.account import Account
from twisted_maillab.interfaces import IMailPortal
from twisted_maillab.smtp.delivery import DeliveryRouter, QueueIds
from twisted_maillab.smtp.policy import Policy, expandDestinations
from twisted_maillab.smtp.server import Settings, SMTPServerFactory
from twisted_maillab.smtp.service import SMTPAvatar


# AUTH PLAIN for edouard/secret, the login FakePortal accepts (RFC 4616).
AUTH_PLAIN = b"AUTH PLAIN AGVkb3VhcmQAc2VjcmV0\r\n"


def account(name: str) -> Account:
    home = Path("/nonexistent") / name
    return Account(name=name, domain="domaineel.rt", home=home, uid=None, gid=None, maildir=home / "Maildir")


class FakeDirectory:
    """
    Accounts by name; C{pending} makes lookups wait for the test.
    """

    def __init__(self, names=("edouard", "utilisateur", "admin")):
        self.accounts = {name: account(name) for name in names}
        self.pending: list | None = None
        self.lookups = []

    def isLocalDomain(self, domain):
        # users are known by local part only, as with Postfix's local(8)
        return False

    def lookupRecipient(self, address, delimiters=None):
        self.lookups.append((address, delimiters))
        local = address.partition("@")[0].lower()
        found = self.accounts.get(local)
        if found is None and delimiters:
            for d in delimiters:
                if d in local:
                    found = self.accounts.get(local.split(d, 1)[0])
                    break
        if self.pending is not None:
            d = defer.Deferred()
            self.pending.append((d, found))
            return d
        return defer.succeed(found)

    def release(self):
        pending, self.pending = self.pending, []
        for d, value in pending:
            d.callback(value)


@dataclass
class Result:
    account: object
    folder: str = "INBOX"
    filename: str | None = "1.M1P1.test"
    error: object = None

    @property
    def ok(self):
        return self.error is None


class FakeTransaction:
    def __init__(self, store):
        self.store = store
        self.recipients = []
        self.chunks = []
        self.state = "open"

    def addRecipient(self, account, folder="INBOX", prependHeaders=b"", create=False):
        self.recipients.append((account, prependHeaders))

    def write(self, chunk):
        assert self.state == "open", self.state
        self.chunks.append(bytes(chunk))
        if self.store.slowWrites:
            d = defer.Deferred()
            self.store.pendingWrites.append(d)
            return d
        return defer.succeed(None)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def commit(self):
        self.state = "committed"
        self.store.committed.append(self)
        if self.store.commitError is not None:
            return defer.succeed([Result(a, error=self.store.commitError) for a, _ in self.recipients])
        return defer.succeed([Result(a) for a, _ in self.recipients])

    def abort(self):
        self.state = "aborted"
        self.store.aborted.append(self)
        return defer.succeed(None)

    def fileFor(self, name: str) -> bytes:
        for acct, prepend in self.recipients:
            if acct.name == name:
                return prepend + self.body
        raise KeyError(name)


class FakeStore:
    def __init__(self):
        self.transactions = []
        self.committed = []
        self.aborted = []
        self.slowWrites = False
        self.pendingWrites = []
        self.commitError = None

    def beginDelivery(self):
        t = FakeTransaction(self)
        self.transactions.append(t)
        return t


@implementer(IMailPortal)
class FakePortal:
    """
    edouard/secret logs in; the login is recorded with its address.
    """

    def __init__(self, directory):
        self.directory = directory
        self.logins = []

    def forConnection(self, peer, protocol):
        raise NotImplementedError("the SMTP server calls loginFrom")

    def loginFrom(self, credentials, peer, protocol, mind, *interfaces):
        self.logins.append((credentials.username, peer, protocol))
        name = credentials.username.decode("utf-8", "replace")
        if credentials.password == b"secret" and name in self.directory.accounts:
            return defer.succeed((interfaces[0], SMTPAvatar(self.directory.accounts[name]), lambda: None))
        return defer.fail(UnauthorizedLogin("bad password"))


class FakeHandle:
    def get_protocol_version_name(self):
        return "TLSv1.3"

    def get_cipher_name(self):
        return "TLS_AES_256_GCM_SHA384"

    def get_cipher_bits(self):
        return 256


class TLSStringTransport(StringTransport):
    """
    A StringTransport that records startTLS and then provides
    ISSLTransport.
    """

    tlsStarted = None

    def startTLS(self, context):
        self.tlsStarted = self.value()
        self.context = context

    def getHandle(self):
        return FakeHandle()


@implementer(ISSLTransport)
class ImplicitTLSTransport(TLSStringTransport):
    def getPeerCertificate(self):
        return None


class Harness:
    """
    One factory with fakes; C{connect()} gives a protocol on a transport.
    """

    def __init__(self, *, settings=None, aliases=None, networks=None, restrictions=None, tls=True, **kw):
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.directory = FakeDirectory()
        self.store = FakeStore()
        from twisted_maillab.config import parseNetwork

        if networks is None:
            networks = [parseNetwork(n) for n in ("127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128")]
        self.policy = Policy(
            hostname="smtp.domaineel.rt",
            destinations=expandDestinations(
                ("$myhostname", "domaineel.rt.", "localhost.localdomain", "localhost"),
                "smtp.domaineel.rt",
                "domaineel.rt",
            ),
            networks=networks,
            restrictions=restrictions
            or ("permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"),
            delimiter="+",
            aliases=aliases,
            directory=self.directory,
            allowInclude=kw.pop("allowInclude", False),
            rejectUnauthenticatedOwned=kw.pop("rejectUnauthenticatedOwned", True),
        )
        self.delivery = DeliveryRouter(self.store, self.policy, self.clock)
        self.portal = FakePortal(self.directory)
        self.settings = settings or Settings(
            hostname="smtp.domaineel.rt", banner="smtp.domaineel.rt ESMTP maillab", **kw
        )
        self.factory = SMTPServerFactory(
            self.settings,
            self.policy,
            self.delivery,
            portal=self.portal,
            tlsContext=object() if tls else None,
            clock=self.clock,
            queueIds=QueueIds(self.clock),
            resolveName=None,
        )

    def connect(self, host="192.0.2.4", transport=TLSStringTransport):
        if ":" in host:
            peer = IPv6Address("TCP", host, 40000)
            local = IPv6Address("TCP", "::1", 25)
        else:
            peer = IPv4Address("TCP", host, 40000)
            local = IPv4Address("TCP", "192.0.2.25", 25)
        proto = self.factory.buildProtocol(peer)
        t = transport(hostAddress=local, peerAddress=peer)
        proto.makeConnection(t)
        return proto, t
