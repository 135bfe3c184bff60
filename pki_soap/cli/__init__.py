"""Command-line programs: the only place that reads argv, prints, or picks exit codes."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from typing import Any


class Commands:
    """The subcommands of a program, each listed on one line of its ``--help``.

    argparse's own listing breaks a long command name onto two lines and wraps long help to
    the terminal; this one is written here, one ``name  help`` line per command, and argparse's
    is hidden (``help=SUPPRESS`` on the subparsers).
    """

    def __init__(
        self,
        parser: argparse.ArgumentParser,
        usage: str,
        parents: Sequence[argparse.ArgumentParser] = (),
        **subparsers: Any,
    ) -> None:
        """Add the subparsers (``subparsers``: add_subparsers' options) and set ``usage``;
        each command takes the options of ``parents`` unless it names its own."""
        self.parser = parser
        self.parents = list(parents)
        self.subparsers = parser.add_subparsers(help=argparse.SUPPRESS, **subparsers)
        # Set after add_subparsers, which builds each command's "usage: prog command" from
        # the usage at that moment; the hidden COMMAND is missing from the default usage.
        parser.usage = usage
        self._lines: list[tuple[str, str]] = []

    def add(
        self, name: str, help: str, run: Callable[[argparse.Namespace], int], **options: Any
    ) -> argparse.ArgumentParser:
        """Add subcommand ``name``, run by ``run`` (the parsed arguments' ``run``).

        ``help`` is its line in the listing; its description (``COMMAND --help``) is the
        docstring of ``run``, else ``help`` as a sentence.
        """
        self._lines.append((name, help))
        options.setdefault("description", inspect.getdoc(run) or help[:1].upper() + help[1:] + ".")
        options.setdefault("parents", self.parents)
        parser: argparse.ArgumentParser = self.subparsers.add_parser(name, **options)
        parser.set_defaults(run=run)
        return parser

    @property
    def names(self) -> list[str]:
        """The names of the commands added so far."""
        return [name for name, _ in self._lines]

    def listing(self) -> str:
        """``commands:`` and one line per command, in the order they were added."""
        width = max(len(name) for name, _ in self._lines) + 2
        return "commands:\n" + "\n".join(f"  {name:<{width}}{text}" for name, text in self._lines)
