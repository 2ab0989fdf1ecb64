"""
Service plugins: the L{IServiceBuilder}s other packages add, found the way
twistd finds C{maillab} itself, with L{twisted.plugin.getCache} over
C{twisted.plugins}.

A plugin is a module in a C{twisted/plugins/} directory on C{sys.path}
(never with an C{__init__.py}) holding an object that provides both
L{twisted.plugin.IPlugin} and L{IServiceBuilder}; L{ServicePlugin} is such
an object made from two C{"module:attribute"} names, so the plugin module
stays one line and imports nothing heavy (C{twistd} imports every plugin
module that offers a service maker, for any command)::

    # mypackage's twisted/plugins/maillab_lmtp.py
    from twisted_maillab.plugins import ServicePlugin

    lmtp = ServicePlugin(
        "lmtp", "mypackage.lmtp:LMTPSection", "mypackage.lmtp:buildLMTP"
    )

The section class is a L{twisted_maillab.config.ListenerSection} subclass
(C{enabled}, C{listen}, then the plugin's own L{option}s), so the config
reader checks C{[lmtp]} as it checks ours: unknown keys are errors naming
file, section, key and line.

L{twisted.plugin.getPlugins} logs and skips a plugin module that does not
import.  maillab cannot tell whether such a module meant to add a section
that the ini file enables, and a suite started without it would be started
half-configured: L{discover} reports every plugin module that does not
import as a L{PluginError}, one line naming it, and the start stops.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from importlib import import_module

from twisted.plugin import IPlugin, getCache
from twisted.python.modules import getModule
from zope.interface import implementer

from twisted_maillab.config import SECTIONS, ConfigError, ListenerSection
from twisted_maillab.interfaces import IServiceBuilder

__all__ = ["PluginError", "ServicePlugin", "Plugin", "discover", "pluginSections"]


class PluginError(ConfigError):
    """
    A plugin cannot be used: C{plugin NAME: REASON} on one line.

    @ivar plugin: the plugin's dotted name (C{twisted.plugins.module.name},
        or the module's when it does not import).
    """

    def __init__(self, plugin: str, reason: str):
        super().__init__(plugin, None, None, reason)
        self.plugin = plugin

    def __str__(self) -> str:
        return f"plugin {self.plugin}: {self.reason}"


def describe(error: BaseException) -> str:
    """
    An exception as one line: its class and message.
    """
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _named(target: str):
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


@implementer(IPlugin, IServiceBuilder)
class ServicePlugin:
    """
    A service plugin named by C{"module:attribute"} strings, imported when
    maillab first needs them (the section class when it reads a config that
    has the section, the builder when the section is enabled).

    @ivar section: the ini section name.
    @ivar after: sections whose services start before this one (and stop
        after it); the plugin's own services otherwise start after every
        shipped listener, in the order of the ini file.
    """

    def __init__(self, section: str, sectionClass: str, build: str, after: tuple = ()):
        self.section = section
        self._sectionClass = sectionClass
        self._build = build
        self.after = tuple(after)

    @property
    def sectionClass(self):
        return _named(self._sectionClass)

    def __call__(self, config, resources):
        return _named(self._build)(config, resources)

    def __repr__(self):
        return f"<ServicePlugin [{self.section}] {self._build}>"


@dataclass(frozen=True)
class Plugin:
    """
    A discovered service builder and the dotted name it is reported by.
    """

    name: str
    builder: object


def _pluginsPackage():
    import twisted.plugins

    return twisted.plugins


# The shipped builders' plugin module.  maillab takes its own builders from
# twisted_maillab.service.BUILDERS, the table that module is generated from:
# a plugin cache is only refreshed when the plugin module's file changes.
SHIPPED = "twisted.plugins.maillab_services"


def _brokenModules(package) -> list[tuple[str, BaseException]]:
    """
    The plugin modules that do not import, with their error, found by
    importing the ones L{getCache} would import: those its C{dropin.cache}
    does not list, or lists from before the module's file last changed
    (its rule).  Up-to-date modules are not imported, as with getCache.
    """
    buckets: dict = {}
    for module in getModule(package.__name__).iterModules():
        buckets.setdefault(module.filePath.parent(), []).append(module)
    broken = []
    for directory, modules in buckets.items():
        cachePath = directory.child("dropin.cache")
        try:
            cachedAt = cachePath.getModificationTime()
            with cachePath.open("r") as f:
                cached = pickle.load(f)
        except BaseException:
            cached, cachedAt = {}, 0
        for module in modules:
            key = module.name.rpartition(".")[2]
            if key in cached and module.filePath.getModificationTime() < cachedAt:
                continue
            try:
                module.load()
            except BaseException as e:
                broken.append((module.name, e))
    return broken


def discover(package=None) -> tuple[list[Plugin], list[PluginError]]:
    """
    Every L{IServiceBuilder} plugin below C{package} (default
    C{twisted.plugins}) except the shipped ones (L{SHIPPED}), and a
    L{PluginError} for each plugin module that does not import and each
    plugin that is not a usable builder.

    Plugins are listed by module name, then by their name in the module,
    so the order does not depend on the order of C{sys.path}.
    """
    if package is None:
        package = _pluginsPackage()
    problems = [
        PluginError(name, f"cannot be imported: {describe(error)}")
        for name, error in _brokenModules(package)
    ]
    if problems:
        # getCache would log each one's traceback again; the start stops.
        return [], problems
    cache = getCache(package)
    found = []
    for key in sorted(cache):
        dropin = cache[key]
        if dropin.moduleName == SHIPPED:
            continue
        for cached in sorted(dropin.plugins, key=lambda p: p.name):
            if not any(i.isOrExtends(IServiceBuilder) for i in cached.provided):
                continue
            name = f"{dropin.moduleName}.{cached.name}"
            try:
                builder = cached.load()
            except BaseException as e:
                problems.append(PluginError(name, f"cannot be imported: {describe(e)}"))
                continue
            if not IServiceBuilder.providedBy(builder):
                problems.append(PluginError(name, "does not provide IServiceBuilder"))
                continue
            found.append(Plugin(name, builder))
    return found, problems


def sectionClassOf(plugin: Plugin):
    """
    The plugin's section class, checked.

    @raise PluginError: the plugin names a section of maillab's own, or its
        class does not import, or is not a L{ListenerSection} named like
        the plugin's section.
    """
    builder = plugin.builder
    if builder.section in SECTIONS:
        raise PluginError(plugin.name, f"[{builder.section}] is a section of maillab itself")
    try:
        cls = builder.sectionClass
    except AttributeError:
        cls = None
    except BaseException as e:
        raise PluginError(plugin.name, f"its section class cannot be imported: {describe(e)}") from None
    if cls is None:
        raise PluginError(plugin.name, f"[{builder.section}] has no section class")
    if not (isinstance(cls, type) and issubclass(cls, ListenerSection)):
        raise PluginError(plugin.name, f"its section class {cls!r} is not a ListenerSection")
    if cls.name != builder.section:
        raise PluginError(
            plugin.name, f"its section class is named [{cls.name}], not [{builder.section}]"
        )
    return cls


def pluginSections(package=None) -> dict:
    """
    The sections plugins add: name -> section class.

    @raise PluginError: any plugin problem (L{ConfigErrors} of them all
        when there are several).
    """
    from twisted_maillab.config import ConfigErrors

    found, problems = discover(package)
    sections: dict = {}
    owners: dict = {}
    for plugin in found:
        try:
            cls = sectionClassOf(plugin)
        except PluginError as e:
            problems.append(e)
            continue
        name = cls.name
        if name in owners:
            problems.append(PluginError(plugin.name, f"[{name}] is already added by {owners[name]}"))
            continue
        owners[name] = plugin.name
        sections[name] = cls
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)
    return sections
