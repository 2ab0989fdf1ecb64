"""
Tests for L{twisted_maillab.config}: typed parsing and the exact error
messages an administrator sees.
"""

import dataclasses
import ipaddress
import os
import re
from pathlib import Path

from twisted.trial import unittest

from twisted_maillab import config
from twisted_maillab.config import ConfigError, load, loadString

REPO = Path(__file__).resolve().parent.parent


def errorOf(testCase, text, path="etc/maillab.ini"):
    return str(testCase.assertRaises(ConfigError, loadString, text, path))


def errorLinesOf(testCase, text, path="etc/maillab.ini"):
    """
    Each problem reported for C{text}, rendered.
    """
    return [str(one) for one in testCase.assertRaises(ConfigError, loadString, text, path).errors]


class ValueParserTests(unittest.TestCase):
    def test_sizes(self):
        self.assertEqual(config.parseSize("10240000"), 10240000)
        self.assertEqual(config.parseSize("512K"), 512 * 1024)
        self.assertEqual(config.parseSize("10M"), 10 * 1024 * 1024)
        self.assertEqual(config.parseSize("2g"), 2 * 1024**3)
        self.assertEqual(config.parseSize("10MB"), 10 * 1024 * 1024)
        for bad in ("10X", "", "-1", "1.5M", "M"):
            self.assertRaises(ValueError, config.parseSize, bad)

    def test_durations(self):
        self.assertEqual(config.parseDuration("300"), 300)
        self.assertEqual(config.parseDuration("30s"), 30)
        self.assertEqual(config.parseDuration("5m"), 300)
        self.assertEqual(config.parseDuration("2h"), 7200)
        self.assertEqual(config.parseDuration("5d"), 5 * 86400)
        self.assertEqual(config.parseDuration("1w"), 604800)
        self.assertEqual(config.parseDuration("1h30m"), 5400)
        self.assertEqual(config.parseDuration("0.5s"), 0.5)
        for bad in ("5y", "", "h", "5 days", "-1"):
            self.assertRaises(ValueError, config.parseDuration, bad)

    def test_booleans(self):
        for raw in ("yes", "True", "on", "1"):
            self.assertIs(config.parseBoolean(raw), True)
        for raw in ("no", "false", "OFF", "0"):
            self.assertIs(config.parseBoolean(raw), False)
        self.assertRaises(ValueError, config.parseBoolean, "maybe")

    def test_networksAsPostfixWritesThem(self):
        self.assertEqual(
            config.parseNetwork("[::ffff:127.0.0.0]/104"),
            ipaddress.ip_network("::ffff:127.0.0.0/104"),
        )
        self.assertEqual(config.parseNetwork("[::1]/128"), ipaddress.ip_network("::1/128"))
        self.assertEqual(config.parseNetwork("127.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))
        self.assertRaises(ValueError, config.parseNetwork, "127.0.0.300/8")

    def test_endpoints(self):
        self.assertEqual(
            config.parseEndpoint("tcp:25:interface=0.0.0.0"), "tcp:25:interface=0.0.0.0"
        )
        self.assertEqual(
            config.parseEndpoint("systemd:domain=INET:name=imap"),
            "systemd:domain=INET:name=imap",
        )
        for bad in ("tcp:abc", "nonsense:25", "systemd:domain=IPX:name=x", "systemd:domain=INET"):
            self.assertRaises(ValueError, config.parseEndpoint, bad)


class LoadTests(unittest.TestCase):
    def test_missingFile(self):
        missing = self.mktemp()
        e = self.assertRaises(ConfigError, load, missing)
        self.assertEqual(str(e), f"{missing}: no such file")

    def test_unknownSection(self):
        self.assertEqual(
            errorOf(self, "[server]\nhostname = a\n\n[smtpd]\nenabled = yes\n"),
            "etc/maillab.ini [smtpd]: unknown section (known: "
            + ", ".join(config.SECTIONS)
            + ") (line 4)",
        )

    def test_unknownKey(self):
        message = errorOf(self, "[smtp]\nenabled = no\nmessage_size_limt = 10M\n")
        self.assertTrue(
            message.startswith("etc/maillab.ini [smtp] message_size_limt: unknown key (known: "),
            message,
        )
        self.assertTrue(message.endswith(") (line 3)"), message)

    def test_badSize(self):
        self.assertEqual(
            errorOf(self, "[smtp]\n\nmessage_size_limit = 10X\n"),
            'etc/maillab.ini [smtp] message_size_limit: "10X" is not a size (line 3)',
        )

    def test_badEndpoint(self):
        self.assertEqual(
            errorOf(self, "[imap]\nenabled = yes\nlisten = tcp:143\n  tcp:notaport\n"),
            'etc/maillab.ini [imap] listen: "tcp:notaport" is not a valid endpoint: '
            "invalid literal for int() with base 10: 'notaport' (line 3)",
        )

    def test_unknownEndpointType(self):
        self.assertEqual(
            errorOf(self, "[imap]\nlisten = carrier-pigeon:143\n"),
            'etc/maillab.ini [imap] listen: "carrier-pigeon:143" is not a valid endpoint: '
            "Unknown endpoint type: 'carrier-pigeon' (line 2)",
        )

    def test_missingCertificate(self):
        cert = os.path.abspath(self.mktemp())
        key = os.path.abspath(self.mktemp())
        Path(key).write_text("k")
        self.assertEqual(
            errorOf(self, f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n"),
            f"etc/maillab.ini [tls] certificate: {cert}: no such file (line 2)",
        )

    def test_certificateWithoutKey(self):
        self.assertEqual(
            errorOf(self, "[tls]\ncertificate = /etc/hostname\n"),
            "etc/maillab.ini [tls] private_key: certificate and private_key go together (line 1)",
        )

    def test_keyBeforeSection(self):
        self.assertEqual(
            errorOf(self, "hostname = a\n[server]\n"),
            "etc/maillab.ini: a key appears before any [section] header (line 1)",
        )

    def test_duplicateKey(self):
        self.assertEqual(
            errorOf(self, "[smtp]\nlisten = tcp:25\nlisten = tcp:26\n"),
            "etc/maillab.ini [smtp] listen: key appears twice in the section "
            "(list several values in one key) (line 3)",
        )

    def test_duplicateSection(self):
        self.assertEqual(
            errorOf(self, "[smtp]\n[pop3]\n[smtp]\n"),
            "etc/maillab.ini [smtp]: section appears twice (line 3)",
        )

    def test_unparsableLine(self):
        self.assertEqual(
            errorOf(self, "[smtp]\nthis line has no equals sign\n"),
            "etc/maillab.ini: cannot parse line 'this line has no equals sign' (line 2)",
        )

    def test_enabledWithoutListen(self):
        self.assertEqual(
            errorOf(self, "[pop3]\nenabled = yes\n"),
            "etc/maillab.ini [pop3] listen: an enabled service needs at least one "
            "listen endpoint (line 1)",
        )

    def test_badBoolean(self):
        self.assertEqual(
            errorOf(self, "[pop3]\nenabled = sometimes\n"),
            'etc/maillab.ini [pop3] enabled: "sometimes" is not a boolean (use yes or no) (line 2)',
        )

    def test_badDomainInMydestination(self):
        self.assertEqual(
            errorOf(self, "[smtp]\nmydestination = $myhostname, bad..domain\n"),
            'etc/maillab.ini [smtp] mydestination: "bad..domain" is not a domain name (line 2)',
        )

    def test_typedValues(self):
        parsed = loadString(
            "[server]\nhostname = smtp.example\nstate_directory = ../var\n"
            "[smtp]\nenabled = yes\nlisten = tcp:25:interface=0.0.0.0\n"
            "    tcp6:25:interface=\\:\\:1\n"
            "mydestination = $myhostname, domaineel.rt., localhost\n"
            "mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n"
            "message_size_limit = 10M\nrecipient_delimiter = +\n",
            "/srv/maillab/etc/maillab.ini",
        )
        self.assertEqual(parsed.server.hostname, "smtp.example")
        # Relative paths are anchored at the ini file's directory.
        self.assertEqual(parsed.server.state_directory, Path("/srv/maillab/var"))
        self.assertEqual(
            parsed.smtp.listen, ("tcp:25:interface=0.0.0.0", "tcp6:25:interface=\\:\\:1")
        )
        self.assertEqual(parsed.smtp.mydestination, ("$myhostname", "domaineel.rt", "localhost"))
        self.assertEqual(len(parsed.smtp.mynetworks), 3)
        self.assertEqual(parsed.smtp.message_size_limit, 10 * 1024 * 1024)
        self.assertEqual(parsed.listeners(), [parsed.smtp])
        # Absent sections hold their defaults.
        self.assertEqual(parsed.pop3.enabled, False)

    def test_imapKeys(self):
        """
        [imap]/[imaps]: typed keys, RFC 9051's 30-minute floor for the
        idle timeout, defaults.
        """
        parsed = loadString(
            "[imap]\nenabled = yes\nlisten = tcp:143\nidle_timeout = 45m\nlogin_timeout = 30s\n"
            "max_line_length = 16384\nappend_limit = 20M\nmax_connections_per_user = 5\n"
            "max_connections_per_address = 7\nplaintext_on_loopback = no\n"
        )
        imap = parsed.imap
        self.assertEqual(
            (imap.idle_timeout, imap.login_timeout, imap.max_line_length, imap.append_limit,
             imap.max_connections_per_user, imap.max_connections_per_address, imap.plaintext_on_loopback),
            (2700.0, 30.0, 16384, 20 * 1024 * 1024, 5, 7, False),
        )
        self.assertEqual((parsed.imaps.idle_timeout, parsed.imaps.append_limit), (1800.0, 0))
        self.assertIn(
            "[imaps] idle_timeout: RFC 9051 requires at least 30 minutes (1800s)",
            errorOf(self, "[imaps]\nidle_timeout = 29m\n"),
        )

    def test_frozen(self):
        parsed = loadString("[server]\nhostname = a\n")
        self.assertRaises(
            dataclasses.FrozenInstanceError, setattr, parsed.server, "hostname", "b"
        )

    def test_valuesMayContainHashAndSemicolon(self):
        # Endpoint strings and Postfix values may contain these; only a
        # whole-line comment is a comment.
        parsed = loadString("# comment\n; another\n[server]\nhostname = a#b;c\n")
        self.assertEqual(parsed.server.hostname, "a#b;c")


class ShippedConfigTests(unittest.TestCase):
    """
    The configs in etc/ load, and carry the seed's setup.
    """

    def test_production(self):
        if not Path("/etc/ssl/certs/ssl-cert-snakeoil.pem").exists():
            self.fail("the snakeoil pair is missing: apt-get install ssl-cert")
        parsed = load(REPO / "etc" / "maillab.ini")
        self.assertEqual(parsed.server.domain, "domaineel.rt")
        self.assertEqual(parsed.smtp.myhostname, "smtp.domaineel.rt")
        self.assertEqual(
            parsed.smtp.mydestination,
            ("$myhostname", "domaineel.rt", "localhost.localdomain", "localhost"),
        )
        self.assertEqual(
            list(parsed.smtp.mynetworks),
            [
                ipaddress.ip_network("127.0.0.0/8"),
                ipaddress.ip_network("::ffff:127.0.0.0/104"),
                ipaddress.ip_network("::1/128"),
            ],
        )
        self.assertEqual(
            parsed.smtp.smtpd_relay_restrictions,
            ("permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"),
        )
        self.assertEqual(parsed.smtp.recipient_delimiter, "+")
        self.assertEqual(parsed.smtp.message_size_limit, 10240000)
        self.assertEqual(parsed.store.mail_location, "maildir:~/Maildir")
        self.assertEqual(
            parsed.tls.certificate, Path("/etc/ssl/certs/ssl-cert-snakeoil.pem")
        )
        self.assertEqual((parsed.imap.enabled, parsed.imap.listen), (True, ("tcp:143:interface=0.0.0.0",)))
        self.assertEqual((parsed.imaps.enabled, parsed.imaps.listen), (True, ("tcp:993:interface=0.0.0.0",)))

    def test_development(self):
        parsed = load(REPO / "etc" / "maillab.dev.ini")
        self.assertEqual(parsed.server.state_directory, REPO / "var")
        for section in parsed.sections.values():
            for description in getattr(section, "listen", ()):
                self.assertIn(":interface=127.0.0.1", description)

    def test_everyKeyDocumented(self):
        """
        README.rst documents every key under its section's heading (the keys
        every listener shares under "Listening sections").
        """
        readme = (REPO / "README.rst").read_text()
        blocks = {}
        headings = []
        for line in readme.splitlines():
            if line == "Listening sections":
                headings = ["listening"]
            elif re.fullmatch(r"``\[\w+\]``( and ``\[\w+\]``)*", line):
                headings = re.findall(r"\[(\w+)\]", line)
            else:
                for heading in headings:
                    blocks[heading] = blocks.get(heading, "") + line + "\n"
                continue
            for heading in headings:
                blocks.setdefault(heading, "")
        shared = {spec.name for spec in dataclasses.fields(config.ListenerSection)}
        missing = []
        for name, cls in config.SECTIONS.items():
            for spec in dataclasses.fields(cls):
                block = blocks.get("listening" if spec.name in shared else name, "")
                if spec.init and f"``{spec.name}``" not in block:
                    missing.append(f"[{name}] {spec.name}")
        self.assertEqual(missing, [])


class EveryErrorTests(unittest.TestCase):
    """
    The reader checks every key before refusing a file, and reports each
    problem as its own line.
    """

    def test_everyProblemIsReported(self):
        text = (
            "[server]\nhostname =\n"
            "[smtp]\nmessage_size_limit = 10X\nsmtpd_timeout = soon\nlisten = tcp:25\n"
            "listen = tcp:26\n"
            "[pop3]\nenabled = perhaps\nfrobnicate = 1\n"
            "[imapd]\n"
            "this line has no equals sign\n"
        )
        e = self.assertRaises(ConfigError, loadString, text, "etc/maillab.ini")
        self.assertEqual(
            [str(one) for one in e.errors],
            [
                "etc/maillab.ini [server] hostname: must not be empty (line 2)",
                'etc/maillab.ini [smtp] message_size_limit: "10X" is not a size (line 4)',
                'etc/maillab.ini [smtp] smtpd_timeout: "soon" is not a duration (line 5)',
                "etc/maillab.ini [smtp] listen: key appears twice in the section "
                "(list several values in one key) (line 7)",
                'etc/maillab.ini [pop3] enabled: "perhaps" is not a boolean (use yes or no) (line 9)',
                str(e.errors[5]),
                str(e.errors[6]),
                "etc/maillab.ini: cannot parse line 'this line has no equals sign' (line 12)",
            ],
        )
        self.assertTrue(str(e.errors[5]).startswith("etc/maillab.ini [pop3] frobnicate: unknown key"))
        self.assertTrue(str(e.errors[6]).startswith("etc/maillab.ini [imapd]: unknown section"))
        self.assertEqual(str(e), "\n".join(str(one) for one in e.errors))
        self.assertIsInstance(e, config.ConfigErrors)
        # The first problem's fields, for callers that look at one.
        self.assertEqual((e.section, e.key, e.line), ("server", "hostname", 2))

    def test_oneProblemIsAPlainConfigError(self):
        e = self.assertRaises(ConfigError, loadString, "[smtp]\nmessage_size_limit = 1X\n")
        self.assertNotIsInstance(e, config.ConfigErrors)
        self.assertEqual(e.errors, [e])


class ListenerAddressTests(unittest.TestCase):
    """
    Endpoints are checked when the config is read: the port range, the
    interface, and two listeners that would bind one address and port.
    """

    def test_portOutOfRange(self):
        self.assertEqual(
            errorOf(self, "[pop3]\nenabled = yes\nlisten = tcp:99999:interface=127.0.0.1\n"),
            'etc/maillab.ini [pop3] listen: "tcp:99999:interface=127.0.0.1" cannot be used: '
            "port 99999 is out of range (0-65535) (line 3)",
        )

    def test_interfaceThatDoesNotResolve(self):
        message = errorOf(
            self, "[smtp]\nenabled = yes\nlisten = tcp:25:interface=no-such-host.invalid\n"
        )
        self.assertTrue(
            message.startswith(
                'etc/maillab.ini [smtp] listen: "tcp:25:interface=no-such-host.invalid" cannot '
                "be used: interface 'no-such-host.invalid' is not an IP address and does not "
                "resolve ("
            ),
            message,
        )
        self.assertTrue(message.endswith(") (line 3)"), message)

    def test_interfaceNameThatResolves(self):
        parsed = loadString("[smtp]\nenabled = yes\nlisten = tcp:25:interface=localhost\n")
        self.assertEqual(parsed.smtp.listen, ("tcp:25:interface=localhost",))

    def test_dualStackWildcardTakesIPv4(self):
        """
        The shape the production file used to have: [::] and 0.0.0.0 on one
        port cannot both be bound while net.ipv6.bindv6only = 0; with 1
        (each socket one family) they can.
        """
        from twisted_maillab import listeners

        text = (
            "[smtp]\nenabled = yes\nlisten = tcp:25:interface=0.0.0.0\n"
            "    tcp6:25:interface=\\:\\:\n"
        )
        self.patch(listeners, "dualStack", lambda path=None: True)
        self.assertEqual(
            errorOf(self, text),
            'etc/maillab.ini [smtp] listen: "tcp6:25:interface=\\:\\:" would bind [::]:25, '
            'already taken by [smtp] listen "tcp:25:interface=0.0.0.0" (line 3): '
            "[::] also takes IPv4 (net.ipv6.bindv6only = 0); list only the tcp6 one (line 4)",
        )
        self.patch(listeners, "dualStack", lambda path=None: False)
        self.assertEqual(len(loadString(text).smtp.listen), 2)

    def test_collisionsNameBothListeners(self):
        from twisted_maillab import listeners

        self.patch(listeners, "dualStack", lambda path=None: True)
        text = (
            "[dns]\nenabled = yes\nzones = d.test:" + str(REPO / "etc/zones/domaineel.rt.zone") + "\n"
            "listen = tcp:2053:interface=127.0.0.1\n"
            "[smtp]\nenabled = yes\nlisten = tcp:2525:interface=0.0.0.0\n"
            "    tcp6:2525:interface=\\:\\:\n"
            "[pop3]\nenabled = yes\nlisten = tcp:2053\n"
            "    tcp:2525:interface=127.0.0.1\n"
            "[pop3s]\nenabled = no\nlisten = tcp:2525\n"
        )
        self.assertEqual(
            errorLinesOf(self, text),
            [
                'etc/maillab.ini [smtp] listen: "tcp6:2525:interface=\\:\\:" would bind [::]:2525, '
                'already taken by [smtp] listen "tcp:2525:interface=0.0.0.0" (line 7): '
                "[::] also takes IPv4 (net.ipv6.bindv6only = 0); list only the tcp6 one (line 8)",
                'etc/maillab.ini [pop3] listen: "tcp:2053" would bind 0.0.0.0:2053, already taken '
                'by [dns] listen "tcp:2053:interface=127.0.0.1" (line 4): the wildcard address '
                "takes every address of its port (line 11)",
                'etc/maillab.ini [pop3] listen: "tcp:2525:interface=127.0.0.1" would bind '
                '127.0.0.1:2525, already taken by [smtp] listen "tcp:2525:interface=0.0.0.0" '
                "(line 7): the wildcard address takes every address of its port (line 12)",
            ],
        )

    def test_overlap(self):
        from twisted_maillab.listeners import Address, overlap

        def clash(a, b, dualStack=True):
            return overlap(Address(*a), Address(*b), dualStack) is not None

        self.assertTrue(clash(("0.0.0.0", 25), ("::", 25)))
        self.assertFalse(clash(("0.0.0.0", 25), ("::", 25), dualStack=False))
        self.assertTrue(clash(("127.0.0.1", 25), ("::", 25)))
        self.assertTrue(clash(("::1", 25), ("::", 25), dualStack=False))
        self.assertTrue(clash(("127.0.0.1", 53), ("::ffff:127.0.0.1", 53), dualStack=False))
        self.assertFalse(clash(("127.0.0.1", 25), ("::1", 25)))
        self.assertFalse(clash(("0.0.0.0", 25), ("::1", 25)))
        self.assertFalse(clash(("0.0.0.0", 25), ("0.0.0.0", 26)))
        self.assertFalse(clash(("127.0.0.1", 0), ("127.0.0.1", 0)))
        # Only a 0.0.0.0 beside [::] is redundant; a specific address is not.
        self.assertEqual(
            overlap(Address("127.0.0.1", 25), Address("::", 25)),
            "[::] also takes IPv4 (net.ipv6.bindv6only = 0)",
        )

    def test_bindv6onlyIsRead(self):
        from twisted_maillab.listeners import dualStack

        sysctl = self.mktemp()
        Path(sysctl).write_text("1\n")
        self.assertFalse(dualStack(sysctl))
        Path(sysctl).write_text("0\n")
        self.assertTrue(dualStack(sysctl))
        self.assertTrue(dualStack(sysctl + ".missing"))
