"""
The package's layering: no import cycle between its modules, and the
configuration, which every part reads, depends on none of the parts.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

import twisted_maillab

PACKAGE = Path(twisted_maillab.__file__).parent


def moduleImports() -> dict[str, set[str]]:
    """
    Each module of the package -> the package modules it imports at module
    level (imports inside functions, and under C{if TYPE_CHECKING}, do not
    run at import time).
    """
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("twisted_maillab",) + path.relative_to(PACKAGE).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    deps.add(candidate if candidate in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components of more than one module (Tarjan).
    """
    index, low, stack, onStack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        onStack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in onStack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                onStack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class LayeringTests(unittest.TestCase):
    def test_cyclesAreFound(self):
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])

    def test_noImportCycle(self):
        graph = moduleImports()
        self.assertIn("twisted_maillab.store.folder", graph)
        self.assertIn("twisted_maillab.store.foldersync", graph["twisted_maillab.store.folder"])
        self.assertEqual(cycles(graph), [])

    def test_configImportsNoPart(self):
        """
        Reading a configuration (as C{maillab check-config} and the plugin
        do first), its checks included, loads none of the protocol, store or
        DNS packages.
        """
        code = (
            "import sys, twisted_maillab.config as c\n"
            "c.loadString('[server]\\nhostname = mx.example.org\\ndomain = example.org\\n'\n"
            "             '[store]\\nsent_folder = Sent Items\\ndrafts_folder = Brouillons\\n')\n"
            "parts = ('store', 'smtp', 'pop3', 'imap', 'dns', 'auth')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2][-1] in parts and m.startswith('twisted_maillab.')))\n"
        )
        env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)
