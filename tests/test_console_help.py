"""
maillab --help, --version, every command's --help, and the maillab(8) page
built from the same text.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from twisted_maillab import cli
from twisted_maillab.console import manual

REPO = Path(__file__).resolve().parent.parent
MAILLAB = str(Path(sys.executable).parent / "maillab")
EPYTEXT = re.compile(r"\b[CLIBU]\{")


def run(*argv, env=None):
    return subprocess.run(
        [MAILLAB, *argv], capture_output=True, text=True, timeout=60, cwd="/",
        env=dict(os.environ, **(env or {})),
    )


class HelpTests(unittest.TestCase):
    def test_helpNamesEveryCommand(self):
        """
        maillab --help lists every command with a whole-sentence
        explanation and no epytext markup.
        """
        result = run("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        text = result.stdout
        self.assertTrue(text.startswith("usage: maillab [--version] [--help] COMMAND [ARGS]\n"))
        for name in cli.COMMANDS:
            self.assertRegex(text, rf"\n  maillab {re.escape(name)}\b", name)
        self.assertNotRegex(text, EPYTEXT)
        for _, _, explanation in manual._sections(cli.COMMANDS):
            self.assertTrue(explanation.endswith("."), explanation)
        self.assertEqual(run("help").stdout, text)

    def test_undocumentedCommandStillListed(self):
        """
        A command added to COMMANDS without an entry in the manual is
        listed with its module's first paragraph, without markup.
        """
        commands = dict(cli.COMMANDS, extra="twisted_maillab.reload:main")
        text = manual.helpText(commands)
        self.assertIn("  maillab extra\n      maillab reload: ask the running daemon", text)
        self.assertNotRegex(text, EPYTEXT)

    def test_version(self):
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        result = run("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, f"maillab {setup['metadata']['version']}\n")

    def test_commandHelp(self):
        """
        The console's commands have their own --help, exit 0, no markup.
        """
        for argv in (["queue"], ["users"], ["passwd"], ["mailq"]):
            result = run(*argv, "--help")
            self.assertEqual(result.returncode, 0, (argv, result.stderr))
            self.assertIn("usage:", result.stdout)
            self.assertNotRegex(result.stdout, EPYTEXT)
        result = run("sendmail", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("usage: sendmail [-t] [-i]"))

    def test_unknownCommand(self):
        result = run("frobnicate")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr, "maillab: unknown command 'frobnicate'\n" + manual.helpText(cli.COMMANDS)
        )
        bare = run()
        self.assertEqual((bare.returncode, bare.stdout, bare.stderr), (2, "", manual.helpText(cli.COMMANDS)))


class ManPageTests(unittest.TestCase):
    page = REPO / "man" / "maillab.8"

    def test_checkedInPageIsCurrent(self):
        """
        man/maillab.8 is what the manual module renders now (regenerate:
        python -m twisted_maillab.console.manual > man/maillab.8).
        """
        self.assertEqual(
            self.page.read_text(), manual.manPage(cli.COMMANDS),
            "man/maillab.8 is out of date: python -m twisted_maillab.console.manual > man/maillab.8",
        )

    def test_installedWithThePackage(self):
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        self.assertEqual(setup["options.data_files"]["share/man/man8"].strip(), "man/maillab.8")

    def test_rendersAndNamesEveryCommand(self):
        """
        groff finds nothing to warn about, and man(1) renders every command.
        """
        check = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(self.page)],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual((check.returncode, check.stderr), (0, ""))
        shown = subprocess.run(
            ["man", "-l", str(self.page)], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, MANWIDTH="200", MANPAGER="cat", PAGER="cat"),
        )
        self.assertEqual(shown.returncode, 0, shown.stderr)
        text = re.sub(".\b", "", shown.stdout)
        self.assertIn("maillab - administer the maillab mail suite", text)
        for name in cli.COMMANDS:
            self.assertRegex(text, rf"\bmaillab {re.escape(name)}\b", name)
        self.assertNotRegex(text, EPYTEXT)
