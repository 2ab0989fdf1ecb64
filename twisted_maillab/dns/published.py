"""
Records generated from the configuration and served in our zones beside
what the zone files say, when C{[dns] publish_mail_records} is on: the
service SRV records of RFC 6186, DKIM keys, SPF, DMARC and the like.  The
suite is the domain's authoritative server, so the records that describe
its mail service are derived from the same config that makes them true
instead of being pasted by hand.

Each generator is an L{IRecordPublisher} named in L{PUBLISHERS}, the way
L{twisted_maillab.service.BUILDERS} names the service builders, and
imported only when publishing is on.

Two rules keep the zone file the administrator's:
  - a generated record never joins or replaces an RRset the file holds
    (same owner and type): that is an error naming the file's line and the
    publisher (L{twisted_maillab.dns.zone.addRecords});
  - the SOA comes from the file alone.

The served serial: secondaries transfer a zone only when its SOA serial
rises (RFC 1996 4.7, RFC 1982 arithmetic), so when the generated records
change and the file's serial does not, the served serial is raised above
the last one served.  The file's serial, a digest of the generated records
and the served serial are kept per zone in
C{<state_directory>/dns-published.json}, so a restart with a changed
config raises it too.  The administrator raising the file's serial past
the served one makes it the served serial again.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import import_module
from pathlib import Path

from twisted.logger import Logger
from zope.interface import implementer

from twisted_maillab.atomicwrite import replaceFile
from twisted_maillab.dns import names as N
from twisted_maillab.dns.integrity import checkZone
from twisted_maillab.dns.server import _serialGreater
from twisted_maillab.dns.zone import ZoneError, addRecords
from twisted_maillab.interfaces import IRecordPublisher, IZoneSource

log = Logger()

__all__ = ["PUBLISHERS", "DEFAULT_TTL", "PublishingZoneSource", "publishers", "servedSerial", "zoneSourceFor"]

# Name -> "module:callable"; the callable, called with no arguments,
# returns an IRecordPublisher provider.
PUBLISHERS: dict[str, str] = {}
PUBLISHERS["service records"] = "twisted_maillab.dns.servicerecords:ServiceRecords"
PUBLISHERS["mailauth"] = "twisted_maillab.mailauth.publish:MailAuthPublisher"
PUBLISHERS["tlspolicy"] = "twisted_maillab.tlspolicy.publish:TLSRecordPublisher"

# The TTL of a generated line that gives none.
DEFAULT_TTL = 3600

STATE_FILE = "dns-published.json"


def publishers(config, registry: dict[str, str] | None = None) -> list:
    """
    Import and build every publisher of C{registry} (default L{PUBLISHERS}).

    @raise ConfigError: one cannot be imported or built, naming it.
    """
    built = []
    for name, target in (PUBLISHERS if registry is None else registry).items():
        module, _, attribute = target.partition(":")
        try:
            publisher = getattr(import_module(module), attribute)()
        except Exception as e:
            raise config.error("dns", "publish_mail_records", f"record publisher {name} ({target}) failed to load: {e}") from e
        if not IRecordPublisher.providedBy(publisher):
            raise config.error("dns", "publish_mail_records", f"record publisher {name} ({target}) does not provide IRecordPublisher")
        built.append(publisher)
    return built


def servedSerial(previous: dict | None, fileSerial: int, digest: str) -> int:
    """
    The SOA serial to serve, given what was served last (C{{"file", "digest",
    "served"}} or L{None}), the file's serial now and the digest of the
    generated records now.
    """
    if previous is None:
        return fileSerial
    if previous.get("file") == fileSerial and previous.get("digest") == digest:
        return previous["served"]
    last = previous["served"]
    if _serialGreater(fileSerial, last):
        return fileSerial
    # RFC 1982 3.1: serial arithmetic wraps at 2^32.
    return (last + 1) % 2**32


@implementer(IZoneSource)
class PublishingZoneSource:
    """
    The zones of another L{IZoneSource} with every publisher's records
    added and the served serial applied.

    @ivar source: where the zones come from (files, or an embedding
        application's source).
    @ivar persist: whether to record the served serials; off for checks
        (C{maillab check-config}) that must not change state.
    """

    def __init__(self, source, config, publishers: list, persist: bool = True):
        self.source = source
        self.config = config
        self.publishers = list(publishers)
        self.persist = persist
        self.statePath = Path(config.server.state_directory) / STATE_FILE

    def load(self) -> list:
        zones = self.source.load()
        previous = self._readState()
        state = {}
        for zone in zones:
            origin = N.toText(zone.origin).lower()
            produced = []
            generated = []
            for publisher in self.publishers:
                try:
                    lines = [str(line) for line in publisher.records(self.config, origin)]
                except Exception as e:
                    raise self.config.error("dns", "publish_mail_records", f"zone {origin}: {publisher.name}: {e}") from e
                if not lines:
                    continue
                generated += addRecords(zone, "\n".join(lines) + "\n", f"<generated: {publisher.name}>", DEFAULT_TTL)
                produced += lines
            checks = []
            if produced:
                # The zone-wide checks again: a generated name can clash
                # with the file's (data below a delegation or a DNAME).
                checkZone(zone, checks)
            errors = [p for p in generated + checks if p.severity == "error"]
            if errors:
                raise ZoneError(zone.path, errors, origin)
            # The file's own warnings were logged when it was read.
            for warning in generated:
                log.warn("{finding}", finding=str(warning))
            zone.warnings = list(zone.warnings) + generated
            digest = hashlib.sha256("\n".join(sorted(produced)).encode()).hexdigest()
            fileSerial = zone.serial
            served = servedSerial(previous.get(origin), fileSerial, digest)
            if served != fileSerial:
                zone.setSerial(served)
            state[origin] = {"file": fileSerial, "digest": digest, "served": served}
        if self.persist and state != {k: previous.get(k) for k in state}:
            self._writeState({**previous, **state})
        return zones

    def _readState(self) -> dict:
        try:
            with open(self.statePath, "rb") as f:
                state = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            # Losing it costs only a serial that may not rise on the next
            # change; refusing to serve would cost the domain.
            log.warn("dns: ignoring {path}: {error}", path=str(self.statePath), error=str(e))
            return {}
        return state if isinstance(state, dict) else {}

    def _writeState(self, state: dict) -> None:
        os.makedirs(self.statePath.parent, exist_ok=True)
        replaceFile(self.statePath, json.dumps(state, indent=1, sort_keys=True).encode() + b"\n", mode=0o644)


def zoneSourceFor(config, source, persist: bool = True):
    """
    C{source}, with the generated records when C{[dns]
    publish_mail_records} is on.
    """
    if not config.dns.publish_mail_records:
        return source
    return PublishingZoneSource(source, config, publishers(config), persist)
