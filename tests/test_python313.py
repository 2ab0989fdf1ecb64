"""
Python 3.11 and newer, 3.13 included: no module of the package imports a
module that Python 3.12 or 3.13 removed (PEP 594 and friends) unless the
import is guarded by C{except ImportError} (a fallback for older Pythons).
"""

import ast
from pathlib import Path

from twisted.trial import unittest

PACKAGE = Path(__file__).resolve().parent.parent / "twisted_maillab"
PLUGINS = Path(__file__).resolve().parent.parent / "twisted" / "plugins"

# Removed in 3.12 (asynchat, asyncore, distutils, imp, smtpd) and 3.13
# (PEP 594's "dead batteries").
REMOVED = {
    "aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt",
    "distutils", "imghdr", "imp", "lib2to3", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "smtpd", "sndhdr", "spwd", "sunau", "telnetlib", "uu",
    "xdrlib",
}


def _guarded(node, parents) -> bool:
    for parent in parents:
        if isinstance(parent, ast.Try):
            for handler in parent.handlers:
                names = []
                if isinstance(handler.type, ast.Name):
                    names = [handler.type.id]
                elif isinstance(handler.type, ast.Tuple):
                    names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
                if {"ImportError", "ModuleNotFoundError"} & set(names) and node in ast.walk(
                    ast.Module(body=parent.body, type_ignores=[])
                ):
                    return True
    return False


def removedImports(source: str) -> list[tuple[int, str]]:
    """
    The unguarded imports of removed modules in C{source}: C{(line, module)}.
    """
    found = []

    def visit(node, parents):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in REMOVED and not _guarded(node, parents):
                found.append((node.lineno, module))
        for child in ast.iter_child_nodes(node):
            visit(child, parents + [node])

    visit(ast.parse(source), [])
    return found


class RemovedModulesTests(unittest.TestCase):
    def test_detector(self):
        """
        The check finds a plain import and accepts a guarded fallback.
        """
        self.assertEqual(removedImports("import crypt\nfrom spwd import getspnam\n"),
                         [(1, "crypt"), (2, "spwd")])
        self.assertEqual(
            removedImports("try:\n    import crypt\nexcept ImportError:\n    crypt = None\n"),
            [],
        )
        self.assertEqual(
            removedImports("try:\n    import crypt\nexcept KeyError:\n    pass\n"), [(2, "crypt")]
        )

    def test_noRemovedModuleImported(self):
        offenders = []
        for path in sorted(PACKAGE.rglob("*.py")) + sorted(PLUGINS.glob("maillab*.py")):
            for line, module in removedImports(path.read_text()):
                offenders.append(f"{path}:{line}: import {module}")
        self.assertEqual(offenders, [])
