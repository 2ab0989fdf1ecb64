"""
Brute-force throttling in front of every checker.

Policy (README "Throttling"):

  - Failures are remembered for C{throttle_window}, per client address
    (an IPv6 address counts as its C{/64} by default: one host gets a
    whole /64) and per username.
  - After C{throttle_free_failures} failures from an address, each further
    failure is answered only after a delay that starts at
    C{throttle_delay} and doubles per failure up to C{throttle_max_delay}.
  - At C{lockout_failures} failures the address is locked out for
    C{lockout_duration}: its attempts are refused at once without checking
    the password, the right one included.
  - Failures for one username (from any addresses) delay the failure
    replies the same way after C{user_free_failures}, but never lock the
    user out: that would let anyone deny a user their mail.
  - A correct password from an address that is not locked out is never
    delayed: the delay is applied to failure replies only.  A success
    forgives that address's earlier failures for the same user (typos).
  - C{throttle_exempt} networks are never throttled (a webmail front end
    on the same host, say).

Everything runs on the reactor thread with an injectable clock; memory is
bounded by C{max_tracked} addresses and users (the oldest are forgotten).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass
from twisted_maillab.addresses import clientAddress, inNetworks

__all__ = ["ThrottlePolicy", "Throttle", "addressKey"]


@dataclass(frozen=True)
class ThrottlePolicy:
    window: float = 900.0
    freeFailures: int = 3
    delay: float = 2.0
    maxDelay: float = 15.0
    lockoutFailures: int = 10
    lockoutDuration: float = 900.0
    userFreeFailures: int = 5
    ipv6Prefix: int = 64
    exempt: tuple = ()
    maxTracked: int = 100_000

    def delayFor(self, failures: int, free: int) -> float:
        """
        The delay before the reply to the C{failures}-th failure.
        """
        if failures <= free:
            return 0.0
        return min(self.delay * 2 ** (failures - free - 1), self.maxDelay)


def addressKey(host: str | None, ipv6Prefix: int = 64) -> str:
    """
    The throttling key of a client address: the IPv4 address (IPv4-mapped
    IPv6 included), the IPv6 network of C{ipv6Prefix} bits, or the text
    itself for non-IP peers (C{unix}, C{unknown}).
    """
    if not host:
        return "unknown"
    address = clientAddress(host)
    if address is None:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{ipv6Prefix}", strict=False))
    return str(address)


class _Failures:
    __slots__ = ("times", "lockedUntil")

    def __init__(self):
        # (time, username key) per failure, oldest first.
        self.times: deque = deque()
        self.lockedUntil = 0.0


class Throttle:
    """
    The state behind the policy.  C{clock} provides C{seconds()}
    (L{twisted.internet.task.Clock} in tests, the reactor in production).
    """

    def __init__(self, policy: ThrottlePolicy, clock):
        self.policy = policy
        self.clock = clock
        self._addresses: OrderedDict[str, _Failures] = OrderedDict()
        self._users: OrderedDict[str, _Failures] = OrderedDict()
        self._exempt = tuple(ipaddress.ip_network(n) for n in policy.exempt)

    def key(self, host: str | None) -> str:
        return addressKey(host, self.policy.ipv6Prefix)

    def exempt(self, host: str | None) -> bool:
        return bool(self._exempt) and inNetworks(host, self._exempt)

    def _entry(self, table: OrderedDict, key: str, create: bool) -> _Failures | None:
        now = self.clock.seconds()
        entry = table.get(key)
        if entry is not None:
            horizon = now - self.policy.window
            while entry.times and entry.times[0][0] <= horizon:
                entry.times.popleft()
            if not entry.times and entry.lockedUntil <= now and not create:
                del table[key]
                return None
            table.move_to_end(key)
            return entry
        if not create:
            return None
        entry = table[key] = _Failures()
        while len(table) > self.policy.maxTracked:
            table.popitem(last=False)
        return entry

    def lockedFor(self, host: str | None) -> float:
        """
        Seconds the address stays locked out, 0 when it is not.
        """
        if self.exempt(host):
            return 0.0
        entry = self._entry(self._addresses, self.key(host), False)
        if entry is None:
            return 0.0
        return max(0.0, entry.lockedUntil - self.clock.seconds())

    def failed(self, host: str | None, user: str) -> tuple[float, bool]:
        """
        Record a failure.

        @return: C{(delay, lockedNow)}: how long to hold the failure reply,
            and whether this failure started a lockout of the address.
        """
        now = self.clock.seconds()
        policy = self.policy
        userEntry = self._entry(self._users, user, True)
        userEntry.times.append((now, ""))
        userDelay = policy.delayFor(len(userEntry.times), policy.userFreeFailures)
        if self.exempt(host):
            return userDelay, False
        entry = self._entry(self._addresses, self.key(host), True)
        entry.times.append((now, user))
        count = len(entry.times)
        lockedNow = False
        if count >= policy.lockoutFailures and entry.lockedUntil <= now:
            entry.lockedUntil = now + policy.lockoutDuration
            # The lockout replaces the counted failures: when it ends the
            # address starts again with a clean slate (delays included).
            entry.times.clear()
            lockedNow = True
        addressDelay = policy.delayFor(count, policy.freeFailures)
        return max(addressDelay, userDelay), lockedNow

    def succeeded(self, host: str | None, user: str) -> None:
        """
        Record a success: forget the address's failures for this user.
        """
        entry = self._entry(self._addresses, self.key(host), False)
        if entry is not None:
            entry.times = deque(t for t in entry.times if t[1] != user)
