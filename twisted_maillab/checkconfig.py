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
        from twisted_maillab.dns.published import zoneSourceFor
        from twisted_maillab.dns.service import FileZoneSource
        from twisted_maillab.dns.zone import ZoneError

        for origin, path in config.dns.zones:
            try:
                # Each zone as it would be served, with the generated
                # records; checking must not raise the served serials.
                zoneSourceFor(config, FileZoneSource([(origin, path)]), persist=False).load()
            except ZoneError as e:
                # Each error of the file, and of the generated records.
                for problem in e.problems or [e.reason]:
                    found.append(
                        config.error("dns", "zones", f"zone {origin}: {problem}", str(path))
                    )
            except ConfigError as e:
                # A record publisher failed: the error names it.
                found.append(e)
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
