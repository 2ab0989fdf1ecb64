"""
Service plugin discovery in-process: a package of the test's own stands for
C{twisted.plugins}; the section classes, the checks on them, the start
order and makeService building a plugin's service.  tests/test_plugins
starts the real twistd with throw-away plugin packages.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

from twisted.application import service as appservice
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from zope.interface.verify import verifyObject

from twisted_maillab import plugins, service
from twisted_maillab.interfaces import IServiceBuilder
from twisted_maillab.config import ConfigError, loadString


class PluginPackage:
    """
    A package of this test process used as the plugin package (in place of
    C{twisted.plugins}), with the modules the test writes into it.
    """

    def __init__(self, testCase):
        root = Path(testCase.mktemp()).resolve()
        self.name = f"maillab_test_plugins_{abs(hash(root))}"
        self.directory = root / self.name
        self.directory.mkdir(parents=True)
        (self.directory / "__init__.py").write_text("")
        sys.path.insert(0, str(root))
        testCase.addCleanup(sys.path.remove, str(root))
        testCase.addCleanup(self._forget)

    def _forget(self):
        for name in list(sys.modules):
            if name == self.name or name.startswith(self.name + "."):
                del sys.modules[name]

    def add(self, module: str, text: str) -> None:
        (self.directory / f"{module}.py").write_text(textwrap.dedent(text))
        importlib.invalidate_caches()

    @property
    def package(self):
        return importlib.import_module(self.name)


SECTION_MODULE = """
from dataclasses import dataclass
from twisted.application import service
from twisted_maillab.config import ListenerSection, option, parseInteger
from twisted_maillab.plugins import ServicePlugin

@dataclass(frozen=True, kw_only=True)
class FingerSection(ListenerSection):
    name = "finger"
    depth: int = option(parseInteger(1, 9), 1, "how deep")

@dataclass(frozen=True, kw_only=True)
class WrongName(ListenerSection):
    name = "other"

class Built(service.Service):
    def __init__(self, config, resources):
        self.depth = config.finger.depth
        self.store = resources.shared("finger", lambda: object())

finger = ServicePlugin("finger", __name__ + ":FingerSection", __name__ + ":Built", after=("pop3",))
"""


class DiscoveryTests(unittest.TestCase):
    def test_foundWithItsSectionInStartOrder(self):
        plugins_ = PluginPackage(self)
        plugins_.add("finger", SECTION_MODULE)
        found, problems = plugins.discover(plugins_.package)
        self.assertEqual((problems, [p.name for p in found]), ([], [f"{plugins_.name}.finger.finger"]))
        sections = plugins.pluginSections(plugins_.package)
        self.assertEqual(list(sections), ["finger"])
        text = (
            "[finger]\nenabled = yes\nlisten = tcp:79\ndepth = 3\n"
            "[pop3]\nenabled = yes\nlisten = tcp:110\n"
        )
        from twisted_maillab.config import SECTIONS

        config = loadString(text, "etc/x.ini", {**SECTIONS, **sections})
        self.assertEqual(config.finger.depth, 3)
        bad = self.assertRaises(
            ConfigError, loadString, text.replace("depth = 3", "depth = 30"), "etc/x.ini", {**SECTIONS, **sections}
        )
        self.assertEqual(str(bad), "etc/x.ini [finger] depth: 30 is above the maximum 9 (line 4)")

        builders = [
            b for b in service.availableBuilders(plugins_.package) if b.section in ("finger",)
        ] + [service.SectionBuilder("pop3", f"{__name__}:buildNothing")]
        for builder in builders + [found[0].builder]:
            self.assertTrue(verifyObject(IServiceBuilder, builder))
        self.assertIs(builders[0].sectionClass, sections["finger"])
        pairs = [(config.finger, service.builderFor(config, "finger", builders))]
        pairs.append((config.pop3, builders[-1]))
        # [finger] is first in the file, but starts after [pop3].
        self.assertEqual([s.name for s, _ in service.startOrder(config, pairs)], ["pop3", "finger"])

    def test_sectionClassMustBeAListenerSectionOfItsName(self):
        plugins_ = PluginPackage(self)
        plugins_.add(
            "wrong",
            SECTION_MODULE.replace('__name__ + ":FingerSection"', '__name__ + ":WrongName"'),
        )
        e = self.assertRaises(plugins.PluginError, plugins.pluginSections, plugins_.package)
        self.assertEqual(
            str(e), f"plugin {plugins_.name}.wrong.finger: its section class is named [other], not [finger]"
        )

    def test_shippedSectionCannotBeTaken(self):
        plugins_ = PluginPackage(self)
        plugins_.add(
            "dns",
            SECTION_MODULE.replace('name = "finger"', 'name = "dns"').replace(
                'ServicePlugin("finger"', 'ServicePlugin("dns"'
            ),
        )
        e = self.assertRaises(plugins.PluginError, service.availableBuilders, plugins_.package)
        self.assertEqual(str(e), f"plugin {plugins_.name}.dns.finger: [dns] is a section of maillab itself")

    def test_twoPluginsOneSection(self):
        plugins_ = PluginPackage(self)
        plugins_.add("a", SECTION_MODULE)
        plugins_.add("b", SECTION_MODULE)
        e = self.assertRaises(plugins.PluginError, plugins.pluginSections, plugins_.package)
        self.assertEqual(
            str(e), f"plugin {plugins_.name}.b.finger: [finger] is already added by {plugins_.name}.a.finger"
        )

    def test_cycleInStartOrder(self):
        config = loadString("[pop3]\nenabled = yes\nlisten = tcp:110\n[imap]\nenabled = yes\nlisten = tcp:143\n")

        class Waits:
            def __init__(self, after):
                self.after = after

        e = self.assertRaises(
            ConfigError,
            service.startOrder,
            config,
            [(config.pop3, Waits(("imap",))), (config.imap, Waits(("pop3",)))],
        )
        self.assertIn("the services [pop3], [imap] each wait for another to start", str(e))

    def test_shippedBuildersAreRegisteredAsPlugins(self):
        from twisted.plugin import getPlugins

        from twisted_maillab.interfaces import IServiceBuilder

        shipped = {
            (b.section, b.target) for b in getPlugins(IServiceBuilder) if isinstance(b, service.SectionBuilder)
        }
        self.assertEqual(shipped, set(service.BUILDERS.items()))

    def test_makeServiceBuildsAPluginService(self):
        plugins_ = PluginPackage(self)
        plugins_.add("finger", SECTION_MODULE)
        from twisted_maillab.config import SECTIONS

        root = Path(self.mktemp()).resolve()
        config = loadString(
            f"[server]\nstate_directory = {root}\n[finger]\nenabled = yes\nlisten = tcp:79\ndepth = 2\n",
            "etc/x.ini",
            {**SECTIONS, **plugins.pluginSections(plugins_.package)},
        )
        top = service.makeService(
            config, MemoryReactorClock(), builders=service.availableBuilders(plugins_.package)
        )
        built = top.getServiceNamed("finger")
        self.assertEqual(built.depth, 2)
        self.assertIsInstance(built, appservice.Service)


def buildNothing(config, resources):
    return appservice.MultiService()
