"""
The seed's Postfix policy: C{mydestination}, C{mynetworks},
C{smtpd_relay_restrictions}, C{alias_maps}, C{recipient_delimiter}, and
C{reject_sender_login_mismatch} for authenticated clients.

The protocol asks this module one question per command and gets either
an answer or an L{SMTPReply} to send; it knows no files or accounts.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

from twisted_maillab.smtp.aliases import Aliases, readInclude
from twisted_maillab.smtp.envelope import Mailbox, SMTPReply
from twisted_maillab.addresses import inNetworks

__all__ = ["Target", "Policy", "expandDestinations", "hostInNetworks"]

log = Logger(namespace="twisted_maillab.smtp")

# aliases(5) expansion depth; Postfix's local_recursion_limit is 1000
# but a sane alias file nests a few levels.
MAX_ALIAS_DEPTH = 20
# Postfix's local expansion limit per alias: protects against huge lists.
MAX_ALIAS_TARGETS = 1000
# Entries of the recipient lookup cache.
MAX_CACHE = 10000


@dataclass(frozen=True)
class Target:
    """
    Where one recipient's copy goes.

    @ivar account: the L{twisted_maillab.account.Account}.
    @ivar deliveredTo: the address written into C{Delivered-To:}.
    """

    account: object
    deliveredTo: str
    kind: str = "account"
    value: str = ""

    @property
    def remote(self) -> bool:
        """
        A recipient in another domain, for the outbound queue.
        """
        return self.kind == "remote"

    @property
    def process(self) -> bool:
        """
        An aliases(5) C{|command} or C{/file} target (when enabled).
        """
        return self.kind in ("command", "file")


def expandDestinations(mydestination, myhostname: str, mydomain: str) -> frozenset:
    """
    Expand C{$myhostname}/C{$mydomain} in C{mydestination}.
    """
    result = set()
    for item in mydestination:
        if item == "$myhostname":
            item = myhostname
        elif item == "$mydomain":
            item = mydomain
        result.add(item.rstrip(".").lower())
    return frozenset(result)


# The seed's mynetworks matching: an IPv4-mapped client (::ffff:127.0.0.1 on
# a dual-stack socket) matches both [::ffff:127.0.0.0]/104 and 127.0.0.0/8.
hostInNetworks = inNetworks


class Policy:
    """
    Recipient and sender decisions for one listener.

    @ivar hostname: C{myhostname}.
    @ivar destinations: the expanded C{mydestination} (lower case).
    @ivar networks: C{mynetworks}.
    @ivar restrictions: C{smtpd_relay_restrictions}, evaluated in order.
    @ivar delimiter: C{recipient_delimiter} (C{""} for none).
    @ivar aliases: the L{Aliases} table or L{None}.
    @ivar directory: the account directory (C{lookupRecipient}).
    @ivar outbound: the outbound queue, or L{None} while there is none
        (relayed recipients then get a 451).
    """

    def __init__(
        self,
        *,
        hostname: str,
        destinations: frozenset,
        networks=(),
        restrictions=("permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"),
        delimiter: str = "",
        aliases: Aliases | None = None,
        directory,
        allowInclude: bool = False,
        allowCommands: bool = False,
        allowFiles: bool = False,
        runner=None,
        outbound=None,
        clock=None,
        cacheTTL: float = 0.0,
        rejectUnauthenticatedOwned: bool = False,
    ):
        self.hostname = hostname
        self.destinations = destinations
        self.networks = tuple(networks)
        self.restrictions = tuple(restrictions)
        self.delimiter = delimiter
        self.aliases = aliases
        self.directory = directory
        self.allowInclude = allowInclude
        self.allowCommands = allowCommands
        self.allowFiles = allowFiles
        self.runner = runner or _callInline
        self.outbound = outbound
        self.clock = clock
        self.rejectUnauthenticatedOwned = rejectUnauthenticatedOwned
        self.cacheTTL = cacheTTL if clock is not None else 0.0
        self._cache: dict[str, tuple[float, object]] = {}

    # -- where mail goes --------------------------------------------------

    def isLocal(self, mailbox: Mailbox) -> bool:
        """
        Whether the recipient's domain is in C{mydestination} (the special
        C{<postmaster>} with no domain is local, RFC 5321 4.5.1).
        """
        return mailbox.domain == "" or mailbox.domain in self.destinations

    def inMynetworks(self, host: str) -> bool:
        return hostInNetworks(host, self.networks)

    def checkRelay(self, session, mailbox: Mailbox) -> None:
        """
        Evaluate C{smtpd_relay_restrictions} in order, as Postfix does.

        @raise SMTPReply: 454 4.7.1 (C{defer_unauth_destination}) or 554
            5.7.1 (C{reject_unauth_destination}) for a non-local domain.
        """
        local = self.isLocal(mailbox)
        for restriction in self.restrictions:
            if restriction == "permit_mynetworks" and self.inMynetworks(session.host):
                return
            if restriction == "permit_sasl_authenticated" and session.account is not None:
                return
            if restriction == "defer_unauth_destination" and not local:
                raise SMTPReply(454, "4.7.1", f"{mailbox}: Relay access denied")
            if restriction == "reject_unauth_destination" and not local:
                raise SMTPReply(554, "5.7.1", f"{mailbox}: Relay access denied")

    def checkRecipient(self, session, mailbox: Mailbox, envelope=None) -> defer.Deferred:
        """
        Decide a C{RCPT TO}.

        @param envelope: the transaction (unused here; other policies may
            look at the sender).

        @return: L{Deferred} firing with the list of L{Target}s, or failing
            with L{SMTPReply}: relay denied, 550 5.1.1 unknown local user
            (RFC 5321 3.3: reject at RCPT time, never bounce later), 451
            for a permitted remote recipient while there is no outbound
            queue.
        """
        try:
            self.checkRelay(session, mailbox)
        except SMTPReply:
            return defer.fail()
        if not self.isLocal(mailbox):
            if self.outbound is None:
                return defer.fail(self._remote(mailbox))
            return defer.succeed([Target(None, mailbox.address, "remote")])
        return defer.ensureDeferred(self.resolveLocal(mailbox))

    def _remote(self, mailbox: Mailbox) -> SMTPReply:
        # Without an outbound queue ([smtp] outbound_queue = no) a relayed
        # recipient is a temporary failure, never a silent drop.
        return SMTPReply(
            451, "4.3.0", f"{mailbox}: relaying to other domains is not available"
        )

    async def resolveLocal(self, mailbox: Mailbox) -> list[Target]:
        """
        Expand aliases and the recipient delimiter down to accounts.

        @raise SMTPReply: 550 5.1.1 when nothing deliverable remains.
        """
        local = mailbox.bareLocal
        domain = mailbox.domain or self.hostname
        targets: list[Target] = []
        await self._expand(local, domain, 0, set(), targets, mailbox)
        if not targets:
            raise SMTPReply(
                550,
                "5.1.1",
                f"{mailbox}: Recipient address rejected: User unknown in local recipient table",
            )
        return targets

    async def _expand(self, local, domain, depth, seen, targets, original):
        if depth > MAX_ALIAS_DEPTH:
            raise SMTPReply(550, "5.4.6", f"{original}: alias expansion loop")
        key = local.lower()
        entry = None
        if self.aliases is not None and key not in seen:
            entry = self.aliases.get(key)
            if entry is None and self.delimiter and self.delimiter in key:
                base = key.split(self.delimiter, 1)[0]
                if base and base not in seen:
                    entry = self.aliases.get(base)
                    if entry is not None:
                        key = base
        if entry is None:
            account = await self._lookupAccount(local, domain)
            if account is not None:
                if not any(t.account == account for t in targets):
                    targets.append(Target(account, f"{local}@{domain}"))
            return
        seen = seen | {key}
        for target in entry:
            if len(targets) >= MAX_ALIAS_TARGETS:
                raise SMTPReply(552, "5.5.3", f"{original}: alias expands to too many recipients")
            await self._expandTarget(target, domain, depth, seen, targets, original, key)

    def _directoryName(self, local: str, domain: str) -> str:
        # The whole address when the directory knows the domain (so a
        # passwd-file user bound to one domain is found), else the local
        # part: every mydestination domain reaches the same local users,
        # as with Postfix's local(8).
        if domain and self.directory.isLocalDomain(domain):
            return f"{local}@{domain}"
        return local

    async def _lookupAccount(self, local: str, domain: str = ""):
        """
        The account for a recipient, through a short-lived cache (like
        Postfix's proxymap/in-memory tables): a burst of mail for one user
        costs one directory lookup (a thread hop and a file read) per
        C{cacheTTL} seconds instead of one per RCPT.
        """
        name = self._directoryName(local, domain)
        if not self.cacheTTL:
            return await self.directory.lookupRecipient(name, self.delimiter)
        key = name.lower()
        now = self.clock.seconds()
        entry = self._cache.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        account = await self.directory.lookupRecipient(name, self.delimiter)
        if len(self._cache) >= MAX_CACHE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (now + self.cacheTTL, account)
        return account

    async def _expandTarget(self, target, domain, depth, seen, targets, original, name):
        if target.kind == "address":
            value = target.value
            local, at, targetDomain = value.rpartition("@")
            if not at:
                local, targetDomain = value, self.hostname
            targetDomain = targetDomain.rstrip(".").lower()
            if targetDomain not in self.destinations:
                if self.outbound is None:
                    raise self._remote(Mailbox(local, targetDomain))
                address = f"{local}@{targetDomain}"
                if not any(t.deliveredTo == address for t in targets if t.remote):
                    targets.append(Target(None, address, "remote"))
                return
            await self._expand(local, targetDomain if at else self.hostname, depth + 1, seen, targets, original)
        elif target.kind == "include" and self.allowInclude:
            try:
                included = await self.runner(readInclude, target.value)
            except OSError as e:
                log.warn(
                    "alias {name}: cannot read :include:{path}: {error}",
                    name=name,
                    path=target.value,
                    error=str(e),
                )
                raise SMTPReply(451, "4.3.0", f"{original}: alias include file unavailable") from None
            for item in included:
                if item.kind == "include":
                    log.warn("alias {name}: nested :include: refused", name=name)
                    continue
                await self._expandTarget(item, domain, depth + 1, seen, targets, original, name)
        elif (target.kind == "command" and self.allowCommands) or (
            target.kind == "file" and self.allowFiles
        ):
            # Run as default_privs by the delivery (twisted_maillab.smtp.pipes).
            if not any(t.kind == target.kind and t.value == target.value for t in targets):
                targets.append(Target(None, f"{name}@{self.hostname}", target.kind, target.value))
        else:
            # aliases(5) command, file and include targets that are not
            # enabled: maillab never runs commands or writes files unasked.
            log.warn(
                "alias {name}: {kind} target {value!r} refused (not enabled in maillab)",
                name=name,
                kind=target.kind,
                value=target.value,
            )

    # -- who may send as whom ---------------------------------------------

    def checkSender(self, session, envelope) -> defer.Deferred:
        """
        Postfix's C{reject_unauthenticated_sender_login_mismatch}: a client
        that did not log in, and is not in C{mynetworks}, may not use an
        address that belongs to a local account as envelope sender (no one
        sends as C{edouard@...} without his password).  Addresses of no
        account (C{admin@localhost} in the seed) pass.

        @return: L{Deferred} firing with L{None}, or failing with
            L{SMTPReply} 553 5.7.1.
        """
        sender = envelope.sender
        if (
            not self.rejectUnauthenticatedOwned
            or session.account is not None
            or sender.null
            or not self.isLocal(sender)
            or self.inMynetworks(session.host)
        ):
            return defer.succeed(None)
        local = sender.bareLocal
        if self.delimiter and self.delimiter in local:
            local = local.split(self.delimiter, 1)[0]

        async def check():
            account = await self._lookupAccount(local, sender.domain)
            if account is not None:
                raise SMTPReply(553, "5.7.1", f"{sender}: Sender address rejected: not logged in")

        return defer.ensureDeferred(check())

    def ownsAddress(self, account, address: str) -> bool:
        """
        Whether an authenticated account may use C{address} as sender
        (Postfix's C{reject_sender_login_mismatch}): its own name in any
        local domain (or its own domain), with or without a delimiter
        extension.  The null sender is always allowed.
        """
        if not address:
            return True
        local, at, domain = address.rpartition("@")
        if not at:
            return False
        domain = domain.rstrip(".").lower()
        accountLocal, _, accountDomain = account.name.partition("@")
        accountDomain = (accountDomain or account.domain or "").lower()
        if domain not in self.destinations and domain != accountDomain:
            return False
        local = local.strip('"').lower()
        if self.delimiter and self.delimiter in local:
            local = local.split(self.delimiter, 1)[0]
        return local == accountLocal.lower()

    def fromHeaderOwned(self, account, headerValues) -> bool:
        """
        Whether every address of the C{From:} headers belongs to the
        account (a message without From: is accepted: there is nothing
        to impersonate).
        """
        for name, address in email.utils.getaddresses(headerValues):
            if not address or not self.ownsAddress(account, address):
                return False
        return True


def _callInline(f, *args):
    return defer.maybeDeferred(f, *args)
