"""
C{maillab check-config [FILE]}: check a configuration before a start or a
restart, as C{postfix check} or C{named-checkconf -z} do.

Prints every problem, each on one line as
C{file [section] key: reason (line N)}, and exits 1; or prints C{ok} and
exits 0.  Besides what the config reader refuses (every key is checked), it
checks what the daemon only finds while it builds its services, without
creating or binding anything: sections this version does not implement,
the [tls] certificate and key (unless they are generated on first start),
and every [dns] zone file.
"""

from __future__ import annotations

import argparse
import sys

from twisted_maillab.config import Config, ConfigError, load
from twisted_maillab.tap import DEFAULT_CONFIG


def problems(config: Config) -> list[ConfigError]:
    """
    What L{twisted_maillab.service.makeService} would refuse in a config
    the reader accepted, found without side effects.
    """
    from twisted_maillab import tls
    from twisted_maillab.service import availableBuilders, builderFor

    found: list[ConfigError] = []
    try:
        # The shipped builders and the service plugins' (a broken plugin
        # stops a start: it is a problem here too).
        builders = availableBuilders()
    except ConfigError as e:
        found.extend(e.errors)
        builders = None
    for section in config.listeners() if builders is not None else ():
        try:
            builderFor(config, section.name, builders)
        except ConfigError as e:
            found.append(e)
    if config.http.enabled and config.http.https and not config.tls.configured:
        found.append(config.error("http", "https", "HTTPS needs [tls] certificate and private_key"))
    section = config.tls
    if section.configured and not section.generate_self_signed:
        try:
            tls.serverContextFactory(section, config.path)
        except ConfigError as e:
            found.append(config.error("tls", e.key, e.reason))
    if config.dns.enabled:
        from twisted_maillab.dns.service import loadZones

        for origin, path in config.dns.zones:
            try:
                loadZones([(origin, path)])
            except ConfigError as e:
                # A ZoneError lists each of the zone file's errors.
                for problem in getattr(e, "problems", None) or [e.reason]:
                    found.append(
                        config.error("dns", "zones", f"zone {origin}: {problem}", str(path))
                    )
        if not found and config.dns.publish_mail_records:
            from twisted_maillab.dns.published import zoneSourceFor
            from twisted_maillab.dns.service import FileZoneSource

            try:
                # Checking must not raise the served serials.
                zoneSourceFor(config, FileZoneSource(config.dns.zones), persist=False).load()
            except ConfigError as e:
                for problem in getattr(e, "problems", None) or [e.reason]:
                    found.append(config.error("dns", "publish_mail_records", str(problem)))
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="maillab check-config", description=__doc__.strip().splitlines()[0]
    )
    parser.add_argument(
        "config", nargs="?", default=DEFAULT_CONFIG, help=f"the ini file (default {DEFAULT_CONFIG})"
    )
    args = parser.parse_args(argv)
    try:
        errors = problems(load(args.config))
    except ConfigError as e:
        errors = e.errors
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    print("ok")
    return 0
