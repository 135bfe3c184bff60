"""Command-line programs: the only place that reads argv, prints, or picks exit codes."""

from __future__ import annotations

import argparse
from typing import Any


class Commands:
    """The subcommands of a program, each listed on one line of its ``--help``.

    argparse's own listing breaks a long command name onto two lines and wraps long help to
    the terminal; this one is written here, one ``name  help`` line per command, and argparse's
    is hidden (``help=SUPPRESS`` on the subparsers).
    """

    def __init__(self, parser: argparse.ArgumentParser, usage: str, **subparsers: Any) -> None:
        """Add the subparsers (``subparsers``: add_subparsers' options) and set ``usage``."""
        self.parser = parser
        self.subparsers = parser.add_subparsers(help=argparse.SUPPRESS, **subparsers)
        # Set after add_subparsers, which builds each command's "usage: prog command" from
        # the usage at that moment; the hidden COMMAND is missing from the default usage.
        parser.usage = usage
        self._lines: list[tuple[str, str]] = []

    def add(self, name: str, help: str, **options: Any) -> argparse.ArgumentParser:
        """Add subcommand ``name``; ``help`` is its line in the listing and its description."""
        self._lines.append((name, help))
        options.setdefault("description", help[:1].upper() + help[1:] + ".")
        parser: argparse.ArgumentParser = self.subparsers.add_parser(name, **options)
        return parser

    @property
    def names(self) -> list[str]:
        """The names of the commands added so far."""
        return [name for name, _ in self._lines]

    def listing(self) -> str:
        """``commands:`` and one line per command, in the order they were added."""
        width = max(len(name) for name, _ in self._lines) + 2
        return "commands:\n" + "\n".join(f"  {name:<{width}}{text}" for name, text in self._lines)
